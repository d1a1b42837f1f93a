/* test_determinism_many.c — (suite 'slow') 64 prompts of 1..120 tokens on a random model, with
 * adapters absent: each decoded alone on 1 thread, then inside batches of 7, 32 and 64 requests
 * in shuffled orders on 4 threads; ids and first logits must be bitwise identical. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "engine.h"
#include "engine_testutil.h"

#define N 64
#define MAX_NEW 16

static int32_t ids[N][120];
static struct engine_request reqs[N];
static struct engine_result ref[N];

static struct engine_model *open_model(const char *dir, int threads)
{
    struct engine_model *m;
    struct engine_model_opts o = {.threads = threads};
    struct ny_err err;
    if (engine_model_open(dir, &o, &m, &err) != NY_OK)
        fail_msg("%s", err.msg);
    return m;
}

static void gen(struct engine_model *m, const struct engine_request *r, size_t n, int batch,
                struct engine_result *res)
{
    struct engine_gen_opts o = {.max_new_tokens = MAX_NEW, .ignore_eos = 1, .first_logits = 1,
                                .max_batch = batch};
    struct ny_err err;
    if (engine_generate(m, r, n, &o, res, &err) != NY_OK)
        fail_msg("%s", err.msg);
}

static void test_many(void **state)
{
    (void)state;
    const char *d = tu_tmpdir();
    char dir[256];
    snprintf(dir, sizeof dir, "%s", d);
    struct tu_shape s = {.hidden = 128, .intermediate = 352, .layers = 2, .heads = 4,
                         .kv_heads = 2, .vocab = 1000};
    assert_int_equal(tu_write_random_model(dir, &s, 5), 0);
    uint32_t rng = 99;
    for (int i = 0; i < N; i++) {
        rng = rng * 1664525u + 1013904223u;
        size_t len = 1 + (rng >> 8) % 120;
        for (size_t k = 0; k < len; k++) {
            rng = rng * 1664525u + 1013904223u;
            ids[i][k] = (int32_t)((rng >> 8) % 1000);
        }
        reqs[i] = (struct engine_request){ids[i], len, -1};
    }
    struct engine_model *m1 = open_model(dir, 1), *m4 = open_model(dir, 4);
    for (int i = 0; i < N; i++)
        gen(m1, &reqs[i], 1, 1, &ref[i]);
    const int batches[3] = {7, 32, 64};
    for (int b = 0; b < 3; b++) {
        int perm[N];
        for (int i = 0; i < N; i++)
            perm[i] = i;
        for (int i = N - 1; i > 0; i--) { /* Fisher-Yates with a fixed generator */
            rng = rng * 1664525u + 1013904223u;
            int j = (int)((rng >> 8) % (uint32_t)(i + 1)), t = perm[i];
            perm[i] = perm[j];
            perm[j] = t;
        }
        struct engine_request shuffled[N];
        struct engine_result res[N];
        for (int i = 0; i < N; i++)
            shuffled[i] = reqs[perm[i]];
        gen(m4, shuffled, N, batches[b], res);
        for (int i = 0; i < N; i++) {
            const struct engine_result *a = &ref[perm[i]], *r = &res[i];
            if (a->n_output != r->n_output ||
                memcmp(a->output_ids, r->output_ids, a->n_output * sizeof(int32_t)) ||
                memcmp(a->first_logits, r->first_logits, 1000 * sizeof(float)))
                fail_msg("request %d differs in a batch of %d", perm[i], batches[b]);
            engine_result_fini(&res[i]);
        }
    }
    for (int i = 0; i < N; i++)
        engine_result_fini(&ref[i]);
    engine_model_close(m1);
    engine_model_close(m4);
    tu_rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_many)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
