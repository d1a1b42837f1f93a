/* test_model.c — the whole engine on the CUDA backend (engine_model_open with device "cuda"):
 *  - parity with transformers on golden/parity/: F32 and F16 files (kept fp32 on the GPU):
 *    identical greedy ids and first-step logits within 1e-4 (max |ours - ref| / max |ref|), the
 *    CPU's own tolerance; BF16 files (bf16 GEMM operands on the GPU): first-step logits within
 *    BF16_TOL, ids reported;
 *  - batch invariance: 64 prompts generated alone and inside batches of 7, 32 and 64 in shuffled
 *    orders give bit-identical ids and first-step logits (a bf16 model, so the cuBLASLt prefill
 *    units and the skinny decode kernel are both exercised).
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

#define F32_TOL 1e-4
#define BF16_TOL 3e-2

static double max_rel(const float *got, json_t *ref, int vocab)
{
    double maxref = 0, maxdiff = 0;
    assert_int_equal(json_array_size(ref), vocab);
    for (int j = 0; j < vocab; j++) {
        double r = json_number_value(json_array_get(ref, (size_t)j));
        maxref = fmax(maxref, fabs(r));
        maxdiff = fmax(maxdiff, fabs((double)got[j] - r));
    }
    return maxdiff / maxref;
}

static void run_fixture(const char *name, int merge_first)
{
    const char *src = getenv("NY_SOURCE_DIR");
    char dir[1024], path[1200];
    snprintf(dir, sizeof dir, "%s/golden/parity/%s", src ? src : ".", name);
    snprintf(path, sizeof path, "%s/expected.json", dir);
    json_t *exp;
    struct ny_err err;
    ny_err_init(&err);
    assert_int_equal(ny_json_load_file(path, 64 << 20, &exp, &err), NY_OK);
    int bf16 = !strcmp(json_string_value(json_object_get(exp, "dtype")), "bfloat16");
    json_t *prompts = json_object_get(exp, "prompts"), *runs = json_object_get(exp, "runs");
    int max_new = (int)json_integer_value(json_object_get(exp, "max_new_tokens"));
    struct engine_model *m;
    struct engine_model_opts o = {.device = "cuda"};
    if (engine_model_open(dir, &o, &m, &err) != NY_OK)
        fail_msg("%s: %s", name, err.msg);
    struct engine_model_info info;
    engine_model_info_get(m, &info);
    assert_string_equal(info.device, "cuda");
    size_t np = json_array_size(prompts), nr = json_array_size(runs), n = 0;
    struct engine_request *reqs = calloc(np * nr, sizeof *reqs);
    json_t **want = calloc(np * nr, sizeof *want);
    int32_t *ids = calloc(np * nr * 64, sizeof *ids);
    for (size_t r = 0; r < nr; r++) {
        json_t *run = json_array_get(runs, r), *an = json_object_get(run, "adapter");
        int idx = -1;
        if (merge_first && (!json_is_string(an) || r != 1))
            continue;
        if (json_is_string(an)) {
            snprintf(path, sizeof path, "%s/adapter_%s", dir, json_string_value(an));
            if (engine_model_adapter_add(m, json_string_value(an), path, merge_first, &idx,
                                         &err) != NY_OK)
                fail_msg("%s: %s", name, err.msg);
        }
        for (size_t p = 0; p < np; p++) {
            json_t *pr = json_array_get(prompts, p);
            int32_t *dst = ids + n * 64;
            for (size_t k = 0; k < json_array_size(pr) && k < 64; k++)
                dst[k] = (int32_t)json_integer_value(json_array_get(pr, k));
            reqs[n] = (struct engine_request){dst, json_array_size(pr), idx};
            want[n++] = json_array_get(json_object_get(run, "outputs"), p);
        }
    }
    struct engine_result *res = calloc(n, sizeof *res);
    struct engine_gen_opts go = {.max_new_tokens = max_new, .first_logits = 1, .max_batch = 5};
    if (engine_generate(m, reqs, n, &go, res, &err) != NY_OK)
        fail_msg("%s: %s", name, err.msg);
    int id_mismatch = 0;
    double worst = 0;
    for (size_t i = 0; i < n; i++) {
        json_t *wid = json_object_get(want[i], "output_ids");
        int same = res[i].n_output == json_array_size(wid);
        for (size_t k = 0; same && k < res[i].n_output; k++)
            same = res[i].output_ids[k] == json_integer_value(json_array_get(wid, k));
        id_mismatch += !same;
        double e = max_rel(res[i].first_logits, json_object_get(want[i], "first_logits"),
                           info.vocab_size);
        worst = fmax(worst, e);
        if (!(e <= (bf16 ? BF16_TOL : F32_TOL)))
            fail_msg("%s request %zu: first logits relative error %.3g", name, i, e);
        engine_result_fini(&res[i]);
    }
    print_message("%s%s on cuda: %zu requests, worst logits error %.3g, %d id sequences differ "
                  "from transformers\n", name, merge_first ? " (merged)" : "", n, worst,
                  id_mismatch);
    if (!bf16)
        assert_int_equal(id_mismatch, 0);
    engine_model_close(m);
    json_decref(exp);
    free(res);
    free(reqs);
    free(want);
    free(ids);
}

static void test_gqa_llama3_f32(void **s) { (void)s; run_fixture("gqa_llama3_f32", 0); }
static void test_gqa_llama3_f32_merged(void **s) { (void)s; run_fixture("gqa_llama3_f32", 1); }
static void test_sharded_f16(void **s) { (void)s; run_fixture("sharded_f16", 0); }
static void test_tied_mha_bf16(void **s) { (void)s; run_fixture("tied_mha_bf16", 0); }

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

static void test_batch_invariance(void **s)
{
    (void)s;
    const char *tmp = tu_tmpdir();
    assert_non_null(tmp);
    struct tu_shape sh = {.hidden = 256, .intermediate = 512, .layers = 2, .heads = 8,
                          .kv_heads = 2, .vocab = 1000, .tied = 0, .bf16 = 1};
    assert_int_equal(tu_write_random_model(tmp, &sh, 42), 0);
    struct engine_model *m;
    struct ny_err err;
    ny_err_init(&err);
    struct engine_model_opts o = {.device = "cuda"};
    if (engine_model_open(tmp, &o, &m, &err) != NY_OK)
        fail_msg("%s", err.msg);
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
                fail_msg("batch %d: prompt %d's first logits differ from alone", batches[b],
                         perm[i]);
            engine_result_fini(&mixed[i]);
        }
        print_message("batch %d (shuffled): 64 prompts bit-identical to alone\n", batches[b]);
    }
    for (int i = 0; i < NP; i++)
        engine_result_fini(&alone[i]);
    engine_model_close(m);
    tu_rmdir(tmp);
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
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gqa_llama3_f32),   cmocka_unit_test(test_gqa_llama3_f32_merged),
        cmocka_unit_test(test_sharded_f16),      cmocka_unit_test(test_tied_mha_bf16),
        cmocka_unit_test(test_batch_invariance),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
