/* test_tp.c — tensor parallelism on the CPU backend (the same sharding and forward pass as on the
 * GPUs): a random model (engine_model_open_random) at tp 1, 2 and 4 gives the same ids and
 * first logits within fp32 rounding, and at a given tp bit-identical ones run to run and whatever
 * the batch; LoRA under tp; an uneven vocabulary split; tp sizes that do not fit are refused;
 * the collectives sum in rank order and an aborted group never leaves a rank waiting. */
#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "engine.h"
#include "engine_model_int.h"

#define NEW 8
#define NREQ 6
#define VOCAB 301 /* tp 4: shards of 76, 76, 76 and 73 ids */

static const struct engine_config cfg = {
    .hidden = 64, .intermediate = 96, .n_layers = 2, .n_heads = 4, .n_kv_heads = 2,
    .head_dim = 16, .vocab = VOCAB, .max_pos = 4096, .rms_eps = 1e-5f, .rope_theta = 500000.0,
    .bos_id = -1};

struct outs {
    int32_t ids[NREQ][NEW];
    float *logits[NREQ];
};

static struct engine_model *open_tp(int tp, int lora)
{
    struct engine_model *m;
    struct engine_model_opts o = {.device = "cpu", .threads = 2 * tp, .tp = tp};
    struct ny_err err;
    ny_err_init(&err);
    if (engine_model_open_random(&cfg, &o, 7, lora, &m, &err) != NY_OK)
        fail_msg("tp %d: %s", tp, err.msg);
    return m;
}

/* Requests i = 0..NREQ-1 of length 3 + 5i (ids from i), odd ones with the adapter when there is
 * one; `only` >= 0 runs that request alone. */
static void run(struct engine_model *m, int only, int max_batch, struct outs *o)
{
    static int32_t ids[NREQ][40];
    struct engine_request reqs[NREQ];
    size_t n = 0;
    struct engine_model_info info;
    engine_model_info_get(m, &info);
    for (int i = 0; i < NREQ; i++) {
        for (int k = 0; k < 40; k++)
            ids[i][k] = (int32_t)((i * 37 + k * 11 + 5) % VOCAB);
        if (only < 0 || only == i)
            reqs[n++] = (struct engine_request){ids[i], (size_t)(3 + 5 * i),
                                                info.n_adapters > 0 && i % 2 ? 0 : -1};
    }
    struct engine_result res[NREQ];
    struct engine_gen_opts go = {.max_new_tokens = NEW, .ignore_eos = 1, .first_logits = 1,
                                 .max_batch = max_batch};
    struct ny_err err;
    ny_err_init(&err);
    if (engine_generate(m, reqs, n, &go, res, &err) != NY_OK)
        fail_msg("generate: %s", err.msg);
    for (size_t j = 0; j < n; j++) {
        int i = only < 0 ? (int)j : only;
        assert_int_equal(res[j].n_output, NEW);
        memcpy(o->ids[i], res[j].output_ids, sizeof o->ids[i]);
        o->logits[i] = res[j].first_logits;
        res[j].first_logits = NULL;
        engine_result_fini(&res[j]);
    }
}

static void outs_free(struct outs *o)
{
    for (int i = 0; i < NREQ; i++) {
        ny_free(o->logits[i]);
        o->logits[i] = NULL;
    }
}

static double rel_err(const float *a, const float *b)
{
    double md = 0, mr = 0;
    for (int j = 0; j < VOCAB; j++) {
        md = fmax(md, fabs((double)a[j] - b[j]));
        mr = fmax(mr, fabs((double)b[j]));
    }
    return md / mr;
}

static void against_tp1(int lora)
{
    struct outs ref, got;
    memset(&ref, 0, sizeof ref);
    struct engine_model *m = open_tp(1, lora);
    run(m, -1, 3, &ref);
    engine_model_close(m);
    for (int tp = 2; tp <= 4; tp += 2) {
        memset(&got, 0, sizeof got);
        m = open_tp(tp, lora);
        struct engine_model_info info;
        engine_model_info_get(m, &info);
        assert_int_equal(info.tp, tp);
        assert_int_equal(info.vocab_size, VOCAB);
        run(m, -1, 3, &got);
        engine_model_close(m);
        for (int i = 0; i < NREQ; i++) {
            double e = rel_err(got.logits[i], ref.logits[i]);
            if (!(e < 1e-5))
                fail_msg("tp %d lora %d request %d: first logits differ from tp 1 by %.3g", tp,
                         lora, i, e);
            if (memcmp(got.ids[i], ref.ids[i], sizeof ref.ids[i]))
                fail_msg("tp %d lora %d request %d: ids differ from tp 1", tp, lora, i);
        }
        outs_free(&got);
    }
    outs_free(&ref);
}

static void test_tp_matches_tp1(void **s)
{
    (void)s;
    against_tp1(0);
}

static void test_tp_matches_tp1_lora(void **s)
{
    (void)s;
    against_tp1(4);
}

/* At tp 2: run to run, alone or in any batch, bit for bit. */
static void test_tp_batch_invariant(void **s)
{
    (void)s;
    struct engine_model *m = open_tp(2, 4);
    struct outs all, again, alone;
    memset(&all, 0, sizeof all);
    memset(&again, 0, sizeof again);
    memset(&alone, 0, sizeof alone);
    run(m, -1, 6, &all);
    run(m, -1, 2, &again);
    for (int i = 0; i < NREQ; i++)
        run(m, i, 1, &alone);
    for (int i = 0; i < NREQ; i++) {
        assert_memory_equal(all.ids[i], again.ids[i], sizeof all.ids[i]);
        assert_memory_equal(all.ids[i], alone.ids[i], sizeof all.ids[i]);
        assert_memory_equal(all.logits[i], again.logits[i], VOCAB * sizeof(float));
        assert_memory_equal(all.logits[i], alone.logits[i], VOCAB * sizeof(float));
    }
    outs_free(&all);
    outs_free(&again);
    outs_free(&alone);
    engine_model_close(m);
}

static void test_tp_refused(void **s)
{
    (void)s;
    struct engine_model *m = NULL;
    struct ny_err err;
    ny_err_init(&err);
    struct engine_model_opts o = {.device = "cpu", .threads = 3, .tp = 3}; /* 4 heads */
    assert_int_equal(engine_model_open_random(&cfg, &o, 1, 0, &m, &err), NY_E_UNSUPPORTED);
    assert_non_null(strstr(err.msg, "--tp 3 does not fit this model"));
    assert_null(m);
    o.tp = 16;
    assert_int_equal(engine_model_open_random(&cfg, &o, 1, 0, &m, &err), NY_E_INVALID);
    assert_non_null(strstr(err.msg, "at most 8"));
}

/* ---- the collectives directly ---- */
struct rank_job {
    struct engine_backend *be;
    struct engine_buf *x;
    int rank, abort_instead;
    struct engine_tp *g;
    int rc;
    float sum[12];
    int32_t ids[3];
};

static const int starts[2] = {0, 3};
static const int zero = 0, none = -1;
static const struct engine_batch batch3 = {3, 1, starts, &zero, &zero, &none};

static void *rank_main(void *arg)
{
    struct rank_job *j = arg;
    struct ny_err err;
    ny_err_init(&err);
    if (j->abort_instead) {
        usleep(20000); /* let the other rank block first */
        engine_cpu_ops.tp_abort(j->g);
        j->rc = NY_E_STATE;
        return NULL;
    }
    j->rc = engine_cpu_ops.step_begin(j->be, &batch3, &err);
    if (!j->rc)
        j->rc = engine_cpu_ops.tp_allreduce(j->be, j->x, 4, &err);
    if (!j->rc)
        j->rc = engine_cpu_ops.buf_read(j->be, j->x, 0, j->sum, 12, &err);
    if (!j->rc) /* logits [3, 2] per rank: global ids rank*2 + k */
        j->rc = engine_cpu_ops.tp_argmax(j->be, j->x, 3, 2, 2 * j->rank, j->ids, &err);
    return NULL;
}

static void collectives(int n, int abort_rank, struct rank_job *jobs)
{
    struct engine_backend *bes[3];
    struct ny_err err;
    ny_err_init(&err);
    for (int k = 0; k < n; k++)
        assert_int_equal(engine_cpu_ops.create(1, 0, &bes[k], &err), NY_OK);
    struct engine_tp *g;
    assert_int_equal(engine_cpu_ops.tp_create(bes, n, &g, &err), NY_OK);
    pthread_t th[3];
    for (int k = 0; k < n; k++) {
        jobs[k].be = bes[k];
        jobs[k].rank = k;
        jobs[k].g = g;
        jobs[k].abort_instead = k == abort_rank;
        assert_int_equal(engine_cpu_ops.buf_alloc(bes[k], 12, &jobs[k].x, &err), NY_OK);
        float v[12];
        for (int e = 0; e < 12; e++) /* 1e8 and 1: the sum order shows in the result */
            v[e] = k == 0 ? 1e8f : k == 1 ? (e % 2 ? -1e8f : 1.0f) : 1.0f;
        assert_int_equal(engine_cpu_ops.buf_write(bes[k], jobs[k].x, 0, v, 12, &err), NY_OK);
        assert_int_equal(pthread_create(&th[k], NULL, rank_main, &jobs[k]), 0);
    }
    for (int k = 0; k < n; k++)
        pthread_join(th[k], NULL);
    engine_cpu_ops.tp_destroy(g);
    for (int k = 0; k < n; k++) {
        engine_cpu_ops.buf_free(bes[k], jobs[k].x);
        engine_cpu_ops.destroy(bes[k]);
    }
}

static void test_collectives(void **s)
{
    (void)s;
    struct rank_job jobs[3];
    memset(jobs, 0, sizeof jobs);
    alarm(20); /* a hang fails the test */
    collectives(3, -1, jobs);
    /* rank order: even e: (1e8 + 1) + 1 = 1e8 in fp32; odd e: (1e8 - 1e8) + 1 = 1 (another
     * order, (1e8 + 1) - 1e8, would give 0). */
    for (int k = 0; k < 3; k++) {
        assert_int_equal(jobs[k].rc, NY_OK);
        for (int e = 0; e < 12; e++)
            assert_true(jobs[k].sum[e] == (e % 2 ? 1.0f : 1e8f));
    }
    /* tp_argmax reads each rank's first 6 sums as logits [3 rows, 2 ids]: every shard holds
     * {1e8, 1}, so the global tie on 1e8 goes to the lowest id, 0. */
    for (int k = 0; k < 3; k++)
        for (int r = 0; r < 3; r++)
            assert_int_equal(jobs[k].ids[r], 0);
    alarm(0);
}

static void test_collectives_abort(void **s)
{
    (void)s;
    struct rank_job jobs[3];
    memset(jobs, 0, sizeof jobs);
    alarm(20);
    collectives(3, 2, jobs);
    assert_int_equal(jobs[0].rc, NY_E_STATE);
    assert_int_equal(jobs[1].rc, NY_E_STATE);
    alarm(0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tp_matches_tp1),
        cmocka_unit_test(test_tp_matches_tp1_lora),
        cmocka_unit_test(test_tp_batch_invariant),
        cmocka_unit_test(test_tp_refused),
        cmocka_unit_test(test_collectives),
        cmocka_unit_test(test_collectives_abort),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
