/* test_parity.c — the CPU engine against transformers + PEFT (golden/parity/, made by
 * make_fixtures.py): identical greedy ids and first-step logits within 1e-4 relative error
 * (max |ours - ref| / max |ref|), for the base and for each adapter, all requests of a fixture
 * in one call with their adapters mixed; and the merged mode of the first adapter. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "engine.h"
#include "parity_run.h"

#define REL_TOL 1e-4

/* Every (run, prompt) pair of expected.json in one engine_generate call on the CPU, over tp
 * tensor-parallel ranks (1: none; the CPU backend shards exactly as the GPUs do). merge_first:
 * open a model with the first adapter merged and check only that adapter's run. */
static void run_fixture_tp(const char *name, int tp, int merge_first)
{
    struct parity_outcome o;
    parity_run(name, "cpu", 2 * tp, tp, merge_first, &o);
    if (o.id_mismatch)
        fail_msg("%s", o.first_mismatch);
    if (!(o.worst_rel <= REL_TOL))
        fail_msg("%s%s (tp %d) request %zu: first logits relative error %.3g > %g", name,
                 merge_first ? " (merged)" : "", tp, o.worst_index, o.worst_rel, REL_TOL);
}

static void run_fixture(const char *name, int merge_first)
{
    run_fixture_tp(name, 1, merge_first);
}

static void test_gqa_llama3_f32(void **s)
{
    (void)s;
    run_fixture("gqa_llama3_f32", 0);
}

static void test_gqa_llama3_f32_merged(void **s)
{
    (void)s;
    run_fixture("gqa_llama3_f32", 1);
}

static void test_tied_mha_bf16(void **s)
{
    (void)s;
    run_fixture("tied_mha_bf16", 0);
}

static void test_sharded_f16(void **s)
{
    (void)s;
    run_fixture("sharded_f16", 0);
}

/* Tensor parallel (Megatron shards, LoRA A/B split, vocabulary-sharded argmax): 2 ranks split
 * the 2 key/value heads, 4 ranks share each between two; the tied fixture's 3 heads take 3. */
static void test_tp_gqa(void **s)
{
    (void)s;
    run_fixture_tp("gqa_llama3_f32", 2, 0);
    run_fixture_tp("gqa_llama3_f32", 4, 0);
}

static void test_tp_merged(void **s)
{
    (void)s;
    run_fixture_tp("gqa_llama3_f32", 2, 1);
}

static void test_tp_sharded_tied(void **s)
{
    (void)s;
    run_fixture_tp("sharded_f16", 4, 0);
    run_fixture_tp("tied_mha_bf16", 3, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gqa_llama3_f32),
        cmocka_unit_test(test_gqa_llama3_f32_merged),
        cmocka_unit_test(test_tied_mha_bf16),
        cmocka_unit_test(test_sharded_f16),
        cmocka_unit_test(test_tp_gqa),
        cmocka_unit_test(test_tp_merged),
        cmocka_unit_test(test_tp_sharded_tied),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
