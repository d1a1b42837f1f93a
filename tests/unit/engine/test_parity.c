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

/* Every (run, prompt) pair of expected.json in one engine_generate call on the CPU. merge_first:
 * open a model with the first adapter merged and check only that adapter's run. */
static void run_fixture(const char *name, int merge_first)
{
    struct parity_outcome o;
    parity_run(name, "cpu", 2, merge_first, &o);
    if (o.id_mismatch)
        fail_msg("%s", o.first_mismatch);
    if (!(o.worst_rel <= REL_TOL))
        fail_msg("%s%s request %zu: first logits relative error %.3g > %g", name,
                 merge_first ? " (merged)" : "", o.worst_index, o.worst_rel, REL_TOL);
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gqa_llama3_f32),
        cmocka_unit_test(test_gqa_llama3_f32_merged),
        cmocka_unit_test(test_tied_mha_bf16),
        cmocka_unit_test(test_sharded_f16),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
