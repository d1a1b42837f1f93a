/* test_model.c — the whole engine on the CUDA backend (engine_model_open with device "cuda"):
 *  - parity with transformers on golden/parity/: F32 and F16 files (kept fp32 on the GPU):
 *    identical greedy ids and first-step logits within 1e-4 (max |ours - ref| / max |ref|), the
 *    CPU's own tolerance; BF16 files (bf16 GEMM operands on the GPU): first-step logits within
 *    BF16_TOL, ids reported;
 *  - batch invariance: 64 prompts generated alone and inside batches of 7, 32 and 64 in shuffled
 *    orders give bit-identical ids and first-step logits (a bf16 model, so the cuBLASLt prefill
 *    units and the skinny decode kernel are both exercised);
 *  - the same at tensor parallel 2 and 4 (and 3 for the 3-head fixture) where the GPUs exist.
 * Exits 77 (SKIP) without the CUDA backend or a device. */
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
#include "engine_testutil.h"
#include "parity_run.h"

#define F32_TOL 1e-4
#define BF16_TOL 3e-2

static int n_devices;

/* tp > 1: tensor parallel over GPUs 0..tp-1 (skipped, with a message, when fewer are present). */
static void run_fixture_tp(const char *name, int tp, int merge_first)
{
    if (tp > n_devices) {
        print_message("%s tp %d: skipped (%d GPUs)\n", name, tp, n_devices);
        return;
    }
    struct parity_outcome o;
    parity_run(name, "cuda", 0, tp, merge_first, &o);
    double tol = o.bf16 ? BF16_TOL : F32_TOL;
    if (!(o.worst_rel <= tol))
        fail_msg("%s (tp %d) request %zu: first logits relative error %.3g", name, tp,
                 o.worst_index, o.worst_rel);
    print_message("%s%s on cuda, tp %d: %zu requests, worst logits error %.3g, %d id sequences "
                  "differ from transformers\n", name, merge_first ? " (merged)" : "", tp, o.n,
                  o.worst_rel, o.id_mismatch);
    if (!o.bf16 && o.id_mismatch)
        fail_msg("%s", o.first_mismatch);
}

static void run_fixture(const char *name, int merge_first)
{
    run_fixture_tp(name, 1, merge_first);
}

static void test_gqa_llama3_f32(void **s) { (void)s; run_fixture("gqa_llama3_f32", 0); }
static void test_gqa_llama3_f32_merged(void **s) { (void)s; run_fixture("gqa_llama3_f32", 1); }
static void test_sharded_f16(void **s) { (void)s; run_fixture("sharded_f16", 0); }
static void test_tied_mha_bf16(void **s) { (void)s; run_fixture("tied_mha_bf16", 0); }

/* tensor parallel over NCCL: the same tolerances as one GPU */
static void test_tp_fixtures(void **s)
{
    (void)s;
    run_fixture_tp("gqa_llama3_f32", 2, 0);
    run_fixture_tp("gqa_llama3_f32", 4, 0);
    run_fixture_tp("gqa_llama3_f32", 2, 1);
    run_fixture_tp("sharded_f16", 2, 0);
    run_fixture_tp("sharded_f16", 4, 0);
    run_fixture_tp("tied_mha_bf16", 3, 0);
}

/* ---- batch invariance ------------------------------------------------------------------------- */
#define NP 64
#define NEW 6

static void gen(struct engine_model *m, const struct engine_request *r, size_t n, int max_batch,
                struct engine_result *out)
{
    struct ny_err err;
    ny_err_init(&err);
    struct engine_gen_opts go = {.max_new_tokens = NEW, .ignore_eos = 1, .first_logits = 1,
                                 .max_batch = max_batch};
    if (engine_generate(m, r, n, &go, out, &err) != NY_OK)
        fail_msg("generate: %s", err.msg);
}

static void batch_invariance(int tp)
{
    if (tp > n_devices) {
        print_message("batch invariance tp %d: skipped (%d GPUs)\n", tp, n_devices);
        return;
    }
    const char *tmp = tu_tmpdir();
    assert_non_null(tmp);
    struct tu_shape sh = {.hidden = 256, .intermediate = 512, .layers = 2, .heads = 8,
                          .kv_heads = 2, .vocab = 1000, .tied = 0, .bf16 = 1};
    assert_int_equal(tu_write_random_model(tmp, &sh, 42), 0);
    struct engine_model *m;
    struct ny_err err;
    ny_err_init(&err);
    struct engine_model_opts o = {.device = "cuda", .tp = tp};
    if (engine_model_open(tmp, &o, &m, &err) != NY_OK)
        fail_msg("tp %d: %s", tp, err.msg);
    static int32_t ids[NP][300];
    struct engine_request reqs[NP];
    uint64_t x = 0x9e3779b97f4a7c15ull;
    for (int i = 0; i < NP; i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        size_t len = 1 + (size_t)((x >> 33) % (i % 8 == 0 ? 280 : 40));
        for (size_t k = 0; k < len; k++) {
            x = x * 6364136223846793005ull + 1442695040888963407ull;
            ids[i][k] = (int32_t)((x >> 33) % 1000);
        }
        reqs[i] = (struct engine_request){ids[i], len, -1};
    }
    static struct engine_result alone[NP], mixed[NP];
    for (int i = 0; i < NP; i++)
        gen(m, &reqs[i], 1, 1, &alone[i]);
    const int batches[3] = {7, 32, 64};
    for (int b = 0; b < 3; b++) {
        int perm[NP];
        for (int i = 0; i < NP; i++)
            perm[i] = i;
        for (int i = NP - 1; i > 0; i--) { /* seeded shuffle, a different one per batch size */
            x = x * 6364136223846793005ull + 1442695040888963407ull;
            int j = (int)((x >> 33) % (uint64_t)(i + 1)), t = perm[i];
            perm[i] = perm[j];
            perm[j] = t;
        }
        struct engine_request sh_reqs[NP];
        for (int i = 0; i < NP; i++)
            sh_reqs[i] = reqs[perm[i]];
        gen(m, sh_reqs, NP, batches[b], mixed);
        for (int i = 0; i < NP; i++) {
            const struct engine_result *a = &alone[perm[i]], *g = &mixed[i];
            assert_int_equal(a->n_output, g->n_output);
            assert_memory_equal(a->output_ids, g->output_ids, a->n_output * sizeof(int32_t));
            if (memcmp(a->first_logits, g->first_logits, 1000 * sizeof(float)))
                fail_msg("tp %d, batch %d: prompt %d's first logits differ from alone", tp,
                         batches[b], perm[i]);
            engine_result_fini(&mixed[i]);
        }
        print_message("tp %d, batch %d (shuffled): 64 prompts bit-identical to alone\n", tp,
                      batches[b]);
    }
    for (int i = 0; i < NP; i++)
        engine_result_fini(&alone[i]);
    engine_model_close(m);
    tu_rmdir(tmp);
}

static void test_batch_invariance(void **s)
{
    (void)s;
    batch_invariance(1);
}

static void test_tp_batch_invariance(void **s)
{
    (void)s;
    batch_invariance(2);
    batch_invariance(4);
}

int main(void)
{
    struct ny_err err;
    ny_err_init(&err);
    int n = 0;
    if (engine_device_count(&n, &err) != NY_OK || n == 0) {
        printf("SKIP: %s\n", err.msg[0] ? err.msg : "no CUDA device");
        return 77;
    }
    n_devices = n;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gqa_llama3_f32),   cmocka_unit_test(test_gqa_llama3_f32_merged),
        cmocka_unit_test(test_sharded_f16),      cmocka_unit_test(test_tied_mha_bf16),
        cmocka_unit_test(test_batch_invariance), cmocka_unit_test(test_tp_fixtures),
        cmocka_unit_test(test_tp_batch_invariance),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
