/* test_determinism.c — a request's ids and first logits are bit-identical whatever the thread
 * count, the other requests in the call (their number, order, lengths and adapters) and the batch
 * size; on a random model with several matmul column blocks and on the LoRA fixture. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "engine.h"
#include "engine_testutil.h"

#define MAX_NEW 12

struct run_out {
    int32_t ids[MAX_NEW];
    size_t n;
    float *logits;
};

static void generate(struct engine_model *m, const struct engine_request *reqs, size_t n,
                     int max_batch, struct run_out *out)
{
    struct engine_result *res = calloc(n, sizeof *res);
    struct engine_gen_opts o = {.max_new_tokens = MAX_NEW, .ignore_eos = 1, .first_logits = 1,
                                .max_batch = max_batch};
    struct ny_err err;
    ny_err_init(&err);
    int rc = engine_generate(m, reqs, n, &o, res, &err);
    if (rc != NY_OK)
        fail_msg("generate: %s", err.msg);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(res[i].n_output, MAX_NEW);
        memcpy(out[i].ids, res[i].output_ids, MAX_NEW * sizeof(int32_t));
        out[i].n = res[i].n_output;
        out[i].logits = res[i].first_logits;
        res[i].first_logits = NULL;
        engine_result_fini(&res[i]);
    }
    free(res);
}

static void assert_same(const struct run_out *a, const struct run_out *b, int vocab,
                        const char *what)
{
    if (a->n != b->n || memcmp(a->ids, b->ids, a->n * sizeof(int32_t)) != 0)
        fail_msg("%s: ids differ", what);
    if (memcmp(a->logits, b->logits, (size_t)vocab * sizeof(float)) != 0)
        fail_msg("%s: first logits differ bitwise", what);
}

static struct engine_model *open_model(const char *dir, int threads)
{
    struct engine_model *m;
    struct engine_model_opts o = {.device = "cpu", .threads = threads};
    struct ny_err err;
    ny_err_init(&err);
    if (engine_model_open(dir, &o, &m, &err) != NY_OK)
        fail_msg("open %s: %s", dir, err.msg);
    return m;
}

/* Requests: lengths 1..150 so single-row (gemv) and multi-row (gemm) matmuls and attention over
 * one or several 64-row blocks all run. */
#define N_REQ 7
static int32_t prompt_ids[N_REQ][160];
static const size_t prompt_len[N_REQ] = {1, 9, 150, 2, 70, 1, 33};

static void make_requests(struct engine_request *r, int vocab, int n_adapters)
{
    uint32_t s = 12345;
    for (int i = 0; i < N_REQ; i++) {
        for (size_t k = 0; k < prompt_len[i]; k++) {
            s = s * 1103515245u + 12345u;
            prompt_ids[i][k] = (int32_t)((s >> 8) % (uint32_t)vocab);
        }
        r[i] = (struct engine_request){prompt_ids[i], prompt_len[i],
                                       n_adapters ? (i % (n_adapters + 1)) - 1 : -1};
    }
}

/* Reference: each request alone on 1 thread; then all together on 3 threads in reverse order
 * with several batch sizes; then pairs. Every result must match its reference bitwise. */
static void check_invariance(const char *dir, const char **adapters, int n_adapters)
{
    struct engine_model *m1 = open_model(dir, 1), *m3 = open_model(dir, 3);
    struct ny_err err;
    ny_err_init(&err);
    for (int a = 0; a < n_adapters; a++) {
        char path[1200];
        snprintf(path, sizeof path, "%s/adapter_%s", dir, adapters[a]);
        assert_int_equal(engine_model_adapter_add(m1, adapters[a], path, 0, NULL, &err), NY_OK);
        assert_int_equal(engine_model_adapter_add(m3, adapters[a], path, 0, NULL, &err), NY_OK);
    }
    struct engine_model_info info;
    engine_model_info_get(m1, &info);
    struct engine_request reqs[N_REQ], rev[N_REQ];
    make_requests(reqs, info.vocab_size, n_adapters);
    struct run_out ref[N_REQ], all[N_REQ];
    for (int i = 0; i < N_REQ; i++)
        generate(m1, &reqs[i], 1, 1, &ref[i]);
    for (int i = 0; i < N_REQ; i++)
        rev[i] = reqs[N_REQ - 1 - i];
    const int batches[] = {N_REQ, 3, 1};
    for (size_t b = 0; b < sizeof batches / sizeof batches[0]; b++) {
        generate(m3, rev, N_REQ, batches[b], all);
        for (int i = 0; i < N_REQ; i++) {
            char what[96];
            snprintf(what, sizeof what, "%s: request %d in a batch of %d on 3 threads", dir, i,
                     batches[b]);
            assert_same(&ref[i], &all[N_REQ - 1 - i], info.vocab_size, what);
            free(all[N_REQ - 1 - i].logits);
        }
    }
    for (int i = 0; i < N_REQ; i++)
        free(ref[i].logits);
    engine_model_close(m1);
    engine_model_close(m3);
}

static void test_random_model(void **state)
{
    (void)state;
    const char *d = tu_tmpdir();
    assert_non_null(d);
    char dir[256];
    snprintf(dir, sizeof dir, "%s", d);
    /* 200 output features and a 700-token vocab: several fixed column blocks, a ragged last one */
    struct tu_shape s = {.hidden = 96, .intermediate = 200, .layers = 2, .heads = 6,
                         .kv_heads = 2, .vocab = 700};
    assert_int_equal(tu_write_random_model(dir, &s, 7), 0);
    check_invariance(dir, NULL, 0);
    tu_rmdir(dir);
}

static void test_lora_fixture(void **state)
{
    (void)state;
    const char *src = getenv("NY_SOURCE_DIR");
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/golden/parity/gqa_llama3_f32", src ? src : ".");
    const char *adapters[] = {"plain", "rslora"};
    check_invariance(dir, adapters, 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_random_model),
        cmocka_unit_test(test_lora_fixture),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
