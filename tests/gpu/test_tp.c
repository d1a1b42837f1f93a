/* test_tp.c — the CUDA backend's tensor-parallel ops over NCCL, one host thread per rank as the
 * engine drives them: tp_allreduce bit-identical to the host sum in rank order on every transport
 * (peer to peer; NCCL: gathered partials, chunked all-to-all with and without padding; each group
 * size runs once with peer-to-peer sums and once under NY_TP_P2P=0) and batch invariant (a row
 * alone equals the same row among 2048), tp_allreduce_add_rmsnorm bit-identical to tp_allreduce
 * then add_rmsnorm (one-kernel and fallback shapes), tp_argmax over uneven vocabulary shards
 * (global max in the last shard, ties across shards to the lowest id, NaN rows), tp_abort
 * releasing a rank blocked on the stream (NY_E_STATE, no hang; on both transports and with an
 * overlapped sum), tp_sum_announce's overlapped prefill sums bit-identical to the plain ones
 * (a chain of two, as the forward pass makes them), and weight_random blocks equal to the slices
 * of the whole matrix. Groups of 2 devices, and of 4
 * where present. Every case prints a line.
 * Exits 77 (SKIP) with fewer than 2 CUDA devices or without NCCL in the build. */
#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "engine.h"
#include "engine_backend_int.h"
#include "engine_cuda.h"

#if NY_HAVE_CUDA && NY_HAVE_NCCL

#define MAX_RANKS 4

static const struct engine_backend_ops *G;
static struct engine_backend *bes[MAX_RANKS];
static struct engine_tp *grp;
static int n_ranks;
static size_t p2p_floats; /* the group's peer-to-peer limit (0: NCCL only) */
static int ll_rows;       /* the most decode rows whose fused sums go by LL words (0: none) */
static int clu;           /* whether the decode rows' fused sums end in a cluster's norm */
static uint64_t rng = 0x9e3779b97f4a7c15ull;
static volatile const char *phase = "start";

static void on_alarm(int sig)
{
    (void)sig;
    const char *p = (const char *)phase;
    static const char m[] = "\nTIMEOUT (hang) in phase: ";
    ssize_t w = write(2, m, sizeof m - 1);
    w = write(2, p, strlen(p));
    w = write(2, "\n", 1);
    (void)w;
    _exit(1);
}

static uint64_t next(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

/* uniform in [-1, 1) times 2^[-10, 10]: magnitudes differ, so the order of a sum shows in its bits */
static float frand_wide(void)
{
    float u = (float)((next() >> 40) * (1.0 / 16777216.0)) * 2.0f - 1.0f;
    return ldexpf(u, (int)(next() % 21) - 10);
}

/* ---- one thread per rank --------------------------------------------------------------------- */
enum job {
    JOB_ALLREDUCE,
    JOB_ARGMAX,
    JOB_ABORT_WAIT,
    JOB_ABORT_CALL,
    JOB_FUSED,
    JOB_OVERLAP,
    JOB_OVL_ABORT_WAIT,
    JOB_OVL_ABORT_CALL,
};

struct rank {
    struct engine_backend *be;
    int rank;
    enum job job;
    /* allreduce: in [rows * dim] -> out [rows * dim] */
    int rows, dim;
    const float *in;
    float *out;
    /* fused (tp_allreduce_add_rmsnorm against the two calls): residual xin [rows * dim], the
     * same on every rank, partials in; fused x and out into out and out2, the two calls' into
     * out3 and out4; decode = one request a row (else one request of all rows); prod [3][rows *
     * FUSED_PN]: out·Wᵀ after each (through the bf16 shadow of out where the step has one), then
     * that of a copy of out */
    const float *xin;
    float *out2, *out3, *out4, *prod;
    int decode;
    /* overlap: requests of req[0..n_req) rows; variant 0: the fused sums, 1: the first through
     * tp_allreduce and add_rmsnorm, 2: the fused sums with last_read before g's product, 3: the
     * fused sums announced with their norms (tp_sum_announce_norm; the first with x_next), 4:
     * variant 3 reading x after the first sum call (into out: [2 passes][rows*dim]), 5: variant
     * 3 reading x after g's product (rc2: pass 0's answer, refused while x lags); lora:
     * a rank-16 term on the first product (adapter 0); res: [2 passes][x rows*dim, h rows*dim,
     * g rows*OVL_FF]; ovl[pass]: sums overlapped */
    const int *req;
    int n_req, variant, lora;
    float *res;
    unsigned ovl[2];
    /* argmax: logits [n, vocab_local] of ids [vocab_off, vocab_off + vocab_local) */
    int n, vocab_local, vocab_off;
    int32_t ids[64];
    /* result */
    int rc, rc2;
    char msg[512];
};

static int step(struct engine_backend *be, int rows, struct ny_err *err)
{
    static const int slot[1] = {0}, pos0[1] = {0}, adapter[1] = {-1};
    int start[2] = {0, rows};
    struct engine_batch b = {rows, 1, start, slot, pos0, adapter};
    return G->step_begin(be, &b, err);
}

/* step_begin(rows), write the partials, all-reduce, read back. */
static int do_allreduce(struct rank *r, struct ny_err *err)
{
    size_t cnt = (size_t)r->rows * r->dim;
    struct engine_buf *x = NULL;
    int rc = step(r->be, r->rows, err);
    if (!rc)
        rc = G->buf_alloc(r->be, cnt, &x, err);
    if (!rc)
        rc = G->buf_write(r->be, x, 0, r->in, cnt, err);
    if (!rc)
        rc = G->tp_allreduce(r->be, x, r->dim, err);
    if (!rc)
        rc = G->buf_read(r->be, x, 0, r->out, cnt, err);
    G->buf_free(r->be, x);
    return rc;
}

/* A step of rows one-row requests (decode rows: slots 0..rows-1, position 0). */
static int step_decode(struct engine_backend *be, int rows, struct ny_err *err)
{
    static int start[257], slot[256], pos0[256], adapter[256];
    if (rows > 256)
        return NY_ERR(err, NY_E_RANGE, "test: %d decode rows", rows);
    for (int i = 0; i <= rows; i++) {
        start[i] = i;
        if (i < rows)
            slot[i] = i, pos0[i] = 0, adapter[i] = -1;
    }
    struct engine_batch b = {rows, rows, start, slot, pos0, adapter};
    return G->step_begin(be, &b, err);
}

#define FUSED_PN 64 /* columns of the product reading the norm's out (do_fused) */

/* out·Wᵀ (wp: [FUSED_PN, dim]) of the step's rows into y, read back into p. */
static int fused_product(struct rank *r, struct engine_buf *h, struct engine_buf *wp,
                         struct engine_buf *y, float *p, struct ny_err *err)
{
    int rc = G->matmul(r->be, h, r->dim, wp, FUSED_PN, NULL, 0, NULL, 0, y, err);
    return rc ? rc : G->buf_read(r->be, y, 0, p, (size_t)r->rows * FUSED_PN, err);
}

/* The fused sum + add + norm, then the same inputs through tp_allreduce and add_rmsnorm, each
 * followed by a product reading out (its bf16 shadow, in a decode step of enough rows); then
 * the product of a copy of out (a buffer write: no shadow, X staged from the fp32 rows). */
static int do_fused(struct rank *r, struct ny_err *err)
{
    size_t cnt = (size_t)r->rows * r->dim, np = (size_t)r->rows * FUSED_PN;
    const float eps = 1e-5f;
    struct engine_buf *x = NULL, *h = NULL, *w = NULL, *wp = NULL, *y = NULL;
    int rc = r->decode ? step_decode(r->be, r->rows, err) : step(r->be, r->rows, err);
    if (!rc)
        rc = G->buf_alloc(r->be, cnt, &x, err);
    if (!rc)
        rc = G->buf_alloc(r->be, cnt, &h, err);
    if (!rc)
        rc = G->buf_alloc(r->be, np, &y, err);
    if (!rc)
        rc = G->weight_random(r->be, 1, (size_t)r->dim, 0, 0, (size_t)r->dim, 99, 1.0f, &w, err);
    if (!rc)
        rc = G->weight_random(r->be, FUSED_PN, (size_t)r->dim, 0, 0, (size_t)r->dim, 7, 0.05f,
                              &wp, err);
    for (int pass = 0; pass < 2 && !rc; pass++) {
        rc = G->buf_write(r->be, x, 0, r->xin, cnt, err);
        if (!rc)
            rc = G->buf_write(r->be, h, 0, r->in, cnt, err);
        if (!rc && pass == 0)
            rc = G->tp_allreduce_add_rmsnorm(r->be, x, h, w, r->dim, eps, h, err);
        if (!rc && pass == 1) {
            rc = G->tp_allreduce(r->be, h, r->dim, err);
            if (!rc)
                rc = G->add_rmsnorm(r->be, x, h, w, r->dim, eps, h, err);
        }
        if (!rc)
            rc = fused_product(r, h, wp, y, r->prod + pass * np, err);
        if (!rc)
            rc = G->buf_read(r->be, x, 0, pass ? r->out3 : r->out, cnt, err);
        if (!rc)
            rc = G->buf_read(r->be, h, 0, pass ? r->out4 : r->out2, cnt, err);
    }
    if (!rc)
        rc = G->buf_write(r->be, h, 0, r->out4, cnt, err);
    if (!rc)
        rc = fused_product(r, h, wp, y, r->prod + 2 * np, err);
    G->buf_free(r->be, x);
    G->buf_free(r->be, h);
    G->buf_free(r->be, y);
    G->buf_free(r->be, w);
    G->buf_free(r->be, wp);
    return rc;
}

/* A step of one-row requests, then the fused sum + add + norm of their rows (the decode steps'
 * kernel: LL words unless NY_TP_LL=0), then out read back: what a rank does whose peer never
 * comes (test_abort). */
static int do_abort_fused(struct rank *r, struct ny_err *err)
{
    size_t cnt = (size_t)r->rows * r->dim;
    struct engine_buf *x = NULL, *h = NULL, *w = NULL;
    int rc = step_decode(r->be, r->rows, err);
    if (!rc)
        rc = G->buf_alloc(r->be, cnt, &x, err);
    if (!rc)
        rc = G->buf_alloc(r->be, cnt, &h, err);
    if (!rc)
        rc = G->weight_random(r->be, 1, (size_t)r->dim, 0, 0, (size_t)r->dim, 99, 1.0f, &w, err);
    if (!rc)
        rc = G->buf_write(r->be, h, 0, r->in, cnt, err);
    if (!rc)
        rc = G->tp_allreduce_add_rmsnorm(r->be, x, h, w, r->dim, 1e-5f, h, err);
    if (!rc)
        rc = G->buf_read(r->be, h, 0, r->out, cnt, err);
    G->buf_free(r->be, x);
    G->buf_free(r->be, h);
    G->buf_free(r->be, w);
    return rc;
}

/* A step of the requests req[0..n) (slots 0.., position 0, adapters 0, -1, 0, -1, ...). */
static int step_requests(struct engine_backend *be, const int *req, int n, struct ny_err *err)
{
    static int start[17], slot[16], pos0[16], adapter[16];
    if (n > 16)
        return NY_ERR(err, NY_E_RANGE, "test: %d requests", n);
    start[0] = 0;
    for (int i = 0; i < n; i++) {
        start[i + 1] = start[i] + req[i];
        slot[i] = i, pos0[i] = 0, adapter[i] = i % 2 ? -1 : 0;
    }
    struct engine_batch b = {start[n], n, start, slot, pos0, adapter};
    return G->step_begin(be, &b, err);
}

#define OVL_K 256   /* the first product's input width */
#define OVL_FF 512  /* the middle product's output width */
/* Two sums in a chain as the forward pass makes them: h = a·W1ᵀ (+ LoRA), sum + add + norm;
 * g = h·W2ᵀ (reads the norm's out; variant 2: announced as h's last reader, last_read); h =
 * g·W3ᵀ, sum + add + norm; then x, h and g read back. Variant 1 sums by tp_allreduce and
 * add_rmsnorm. Pass 0 announces each sum (tp_sum_announce; variant 3: tp_sum_announce_norm, the
 * first's h read by g's product alone), pass 1 does not. Partials differ by
 * rank (W1 and W3 seeded by rank); x's residual and the norms are the same on every rank. */
/* Pass 0's announce of the product into h: variants 3 to 5 with the norm by w that follows
 * (last: h is then read by the next product alone, and x by the next announced sum alone). */
static int overlap_announce(struct rank *r, struct engine_buf *h, struct engine_buf *x,
                            const struct engine_buf *w, int last, struct ny_err *err)
{
    if (r->variant >= 3)
        return G->tp_sum_announce_norm(r->be, h, r->dim, x, w, 1e-5f, last, last, err);
    return G->tp_sum_announce(r->be, h, r->dim, err);
}

static int do_overlap(struct rank *r, struct ny_err *err)
{
    const int dim = r->dim, rows = r->rows, rk = r->rank;
    const float eps = 1e-5f;
    struct engine_buf *a = NULL, *x = NULL, *h = NULL, *g = NULL, *w1 = NULL, *w2 = NULL,
                      *w3 = NULL, *n1 = NULL, *n2 = NULL, *la = NULL, *lb = NULL;
    int rc = step_requests(r->be, r->req, r->n_req, err);
    struct {
        struct engine_buf **b;
        size_t n;
    } bufs[] = {{&a, (size_t)rows * OVL_K}, {&x, (size_t)rows * dim}, {&h, (size_t)rows * dim},
                {&g, (size_t)rows * OVL_FF}};
    for (size_t i = 0; i < 4 && !rc; i++)
        rc = G->buf_alloc(r->be, bufs[i].n, bufs[i].b, err);
    struct {
        struct engine_buf **b;
        size_t rows, cols;
        uint64_t seed;
    } ws[] = {{&w1, dim, OVL_K, 100 + rk}, {&w2, OVL_FF, dim, 200},  {&w3, dim, OVL_FF, 300 + rk},
              {&n1, 1, dim, 11},           {&n2, 1, dim, 12},        {&la, 16, OVL_K, 400 + rk},
              {&lb, dim, 16, 500 + rk}};
    for (size_t i = 0; i < 7 && !rc; i++)
        rc = G->weight_random(r->be, ws[i].rows, ws[i].cols, 0, 0, ws[i].cols, ws[i].seed,
                              i < 3 ? 0.0625f : 1.0f, ws[i].b, err);
    struct engine_lora_term lt = {la, lb, 16, 0.5f};
    const struct engine_lora_term *lora = r->lora ? &lt : NULL;
    for (int pass = 0; pass < 2 && !rc; pass++) {
        float *o = r->res + (size_t)pass * rows * (2 * dim + OVL_FF);
        unsigned before = engine_cuda_tp_overlapped(r->be);
        rc = step_requests(r->be, r->req, r->n_req, err);
        if (!rc)
            rc = G->buf_write(r->be, a, 0, r->in, (size_t)rows * OVL_K, err);
        if (!rc)
            rc = G->buf_write(r->be, x, 0, r->xin, (size_t)rows * dim, err);
        if (!rc && pass == 0)
            rc = overlap_announce(r, h, x, n1, 1, err);
        if (!rc)
            rc = G->matmul(r->be, a, OVL_K, w1, dim, lora, lora ? 1 : 0, NULL, 0, h, err);
        if (!rc && r->variant == 1) {
            rc = G->tp_allreduce(r->be, h, dim, err);
            if (!rc)
                rc = G->add_rmsnorm(r->be, x, h, n1, dim, eps, h, err);
        } else if (!rc) {
            rc = G->tp_allreduce_add_rmsnorm(r->be, x, h, n1, dim, eps, h, err);
        }
        if (!rc && r->variant == 4) /* x gathered for the read: the chain goes on without lag */
            rc = G->buf_read(r->be, x, 0, r->out + (size_t)pass * rows * dim, (size_t)rows * dim,
                             err);
        if (!rc && pass == 0)
            rc = overlap_announce(r, h, x, n2, 0, err);
        if (!rc && r->variant == 2) /* g's product reads h last: its rows may stay unwritten */
            G->last_read(r->be, h);
        if (!rc)
            rc = G->matmul(r->be, h, dim, w2, OVL_FF, NULL, 0, NULL, 0, g, err);
        if (!rc && r->variant == 5 && pass == 0) { /* x lags here: refused, nothing disturbed */
            struct ny_err e2;
            ny_err_init(&e2);
            r->rc2 = G->buf_read(r->be, x, 0, r->out, (size_t)rows * dim, &e2);
        }
        if (!rc)
            rc = G->matmul(r->be, g, OVL_FF, w3, dim, NULL, 0, NULL, 0, h, err);
        if (!rc)
            rc = G->tp_allreduce_add_rmsnorm(r->be, x, h, n2, dim, eps, h, err);
        if (!rc)
            rc = G->buf_read(r->be, x, 0, o, (size_t)rows * dim, err);
        if (!rc)
            rc = G->buf_read(r->be, h, 0, o + (size_t)rows * dim, (size_t)rows * dim, err);
        if (!rc)
            rc = G->buf_read(r->be, g, 0, o + (size_t)2 * rows * dim, (size_t)rows * OVL_FF, err);
        r->ovl[pass] = engine_cuda_tp_overlapped(r->be) - before;
    }
    struct engine_buf *all[] = {a, x, h, g, w1, w2, w3, n1, n2, la, lb};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        G->buf_free(r->be, all[i]);
    return rc;
}

/* test_ovl_abort's step: two prefill requests, large enough for the overlap. */
static const int ovl_abort_req[2] = {400, 300};
#define OVL_ABORT_ROWS 700

/* Announces and makes its product, whose sums wait for a peer that never makes its own. */
static int do_ovl_abort_wait(struct rank *r, struct ny_err *err)
{
    struct engine_buf *a = NULL, *h = NULL, *w = NULL;
    int rc = step_requests(r->be, ovl_abort_req, 2, err);
    if (!rc)
        rc = G->buf_alloc(r->be, (size_t)OVL_ABORT_ROWS * OVL_K, &a, err);
    if (!rc)
        rc = G->buf_alloc(r->be, (size_t)OVL_ABORT_ROWS * r->dim, &h, err);
    if (!rc)
        rc = G->weight_random(r->be, r->dim, OVL_K, 0, 0, OVL_K, 5, 0.1f, &w, err);
    if (!rc)
        rc = G->tp_sum_announce(r->be, h, r->dim, err);
    if (!rc)
        rc = G->matmul(r->be, a, OVL_K, w, r->dim, NULL, 0, NULL, 0, h, err);
    if (!rc) /* waits for the sums: the peer's flags never come */
        rc = G->tp_allreduce(r->be, h, r->dim, err);
    if (!rc)
        rc = G->buf_read(r->be, h, 0, r->out, (size_t)r->dim, err);
    G->buf_free(r->be, a);
    G->buf_free(r->be, h);
    G->buf_free(r->be, w);
    return rc;
}

/* Announces, then aborts instead of making the product. */
static int do_ovl_abort_call(struct rank *r, struct ny_err *err)
{
    struct engine_buf *h = NULL;
    struct timespec ts = {0, 300 * 1000 * 1000};
    int rc = step_requests(r->be, ovl_abort_req, 2, err);
    if (!rc)
        rc = G->buf_alloc(r->be, (size_t)OVL_ABORT_ROWS * r->dim, &h, err);
    if (!rc)
        rc = G->tp_sum_announce(r->be, h, r->dim, err);
    if (!rc) {
        nanosleep(&ts, NULL);
        G->tp_abort(grp);
        rc = G->tp_allreduce(r->be, h, r->dim, err); /* must refuse at once */
        nanosleep(&ts, NULL); /* the peer's released copies read h: free it after them */
    }
    G->buf_free(r->be, h);
    return rc;
}

static int do_argmax(struct rank *r, struct ny_err *err)
{
    size_t cnt = (size_t)r->n * r->vocab_local;
    struct engine_buf *x = NULL;
    int rc = G->buf_alloc(r->be, cnt, &x, err);
    if (!rc)
        rc = G->buf_write(r->be, x, 0, r->in, cnt, err);
    if (!rc)
        rc = G->tp_argmax(r->be, x, r->n, r->vocab_local, r->vocab_off, r->ids, err);
    G->buf_free(r->be, x);
    return rc;
}

static void *rank_main(void *arg)
{
    struct rank *r = arg;
    struct ny_err err;
    ny_err_init(&err);
    switch (r->job) {
    case JOB_ALLREDUCE:
        r->rc = do_allreduce(r, &err);
        break;
    case JOB_ARGMAX:
        r->rc = do_argmax(r, &err);
        break;
    case JOB_FUSED:
        r->rc = do_fused(r, &err);
        break;
    case JOB_OVERLAP:
        r->rc = do_overlap(r, &err);
        break;
    case JOB_OVL_ABORT_WAIT:
        r->rc = do_ovl_abort_wait(r, &err);
        break;
    case JOB_OVL_ABORT_CALL:
        r->rc = do_ovl_abort_call(r, &err);
        break;
    case JOB_ABORT_WAIT: /* enters the collective; its peer never does */
        r->rc = r->decode ? do_abort_fused(r, &err) : do_allreduce(r, &err);
        break;
    case JOB_ABORT_CALL: { /* fails instead: let the peer block first, abort, then try to enter */
        struct engine_buf *x = NULL;
        struct timespec ts = {0, 300 * 1000 * 1000};
        r->rc = G->buf_alloc(r->be, (size_t)r->rows * r->dim, &x, &err);
        if (r->rc)
            break;
        nanosleep(&ts, NULL);
        G->tp_abort(grp);
        r->rc = G->tp_allreduce(r->be, x, r->dim, &err); /* must refuse at once */
        G->buf_free(r->be, x);
        break;
    }
    }
    snprintf(r->msg, sizeof r->msg, "%s", r->rc ? err.msg : "");
    return NULL;
}

static void run_ranks(struct rank *rs, int n)
{
    pthread_t t[MAX_RANKS];
    for (int i = 0; i < n; i++)
        assert_int_equal(pthread_create(&t[i], NULL, rank_main, &rs[i]), 0);
    for (int i = 0; i < n; i++)
        pthread_join(t[i], NULL);
}

/* Whether rank r's job failed (then says so, naming the case). */
static int rank_failed(const struct rank *r, const char *what)
{
    if (r->rc)
        printf("  %s tp=%d rows=%d dim=%d: rank %d failed: %s\n", what, n_ranks, r->rows, r->dim,
               r->rank, r->msg);
    return r->rc != 0;
}

/* ---- groups ------------------------------------------------------------------------------------ */
static int group_open(int n, struct ny_err *err)
{
    for (int i = 0; i < n; i++) {
        int rc = G->create(1, i, &bes[i], err);
        if (rc)
            return rc;
    }
    n_ranks = n;
    int rc = G->tp_create(bes, n, &grp, err);
    p2p_floats = rc ? 0 : engine_cuda_tp_p2p_floats(grp);
    ll_rows = rc ? 0 : engine_cuda_tp_ll_rows(grp);
    clu = rc ? 0 : engine_cuda_tp_cluster(grp);
    return rc;
}

static void group_close(void)
{
    G->tp_destroy(grp);
    grp = NULL;
    for (int i = 0; i < n_ranks; i++) {
        G->destroy(bes[i]);
        bes[i] = NULL;
    }
    n_ranks = 0;
}

/* ---- tp_allreduce ------------------------------------------------------------------------------ */
/* All ranks all-reduce rows x dim random partials; every rank's result must equal, bit for bit,
 * the host sum in rank order. Returns the result of rank 0 (caller frees) and the partials. */
static float *allreduce_case(int rows, int dim, float **parts_out)
{
    size_t cnt = (size_t)rows * dim;
    float *parts = malloc((size_t)n_ranks * cnt * sizeof(float));
    float *outs = malloc((size_t)n_ranks * cnt * sizeof(float));
    float *want = malloc(cnt * sizeof(float));
    assert_non_null(parts);
    assert_non_null(outs);
    assert_non_null(want);
    if (parts_out && *parts_out) /* caller's partials */
        memcpy(parts, *parts_out, (size_t)n_ranks * cnt * sizeof(float));
    else
        for (size_t i = 0; i < (size_t)n_ranks * cnt; i++)
            parts[i] = frand_wide();
    for (size_t e = 0; e < cnt; e++) {
        float acc = parts[e];
        for (int k = 1; k < n_ranks; k++)
            acc += parts[(size_t)k * cnt + e];
        want[e] = acc;
    }
    struct rank rs[MAX_RANKS];
    memset(rs, 0, sizeof rs);
    for (int k = 0; k < n_ranks; k++) {
        rs[k].be = bes[k];
        rs[k].rank = k;
        rs[k].job = JOB_ALLREDUCE;
        rs[k].rows = rows;
        rs[k].dim = dim;
        rs[k].in = parts + (size_t)k * cnt;
        rs[k].out = outs + (size_t)k * cnt;
        memset(rs[k].out, 0xff, cnt * sizeof(float)); /* NaN: every element must be written */
    }
    phase = "tp_allreduce";
    run_ranks(rs, n_ranks);
    int bad_total = 0;
    for (int k = 0; k < n_ranks; k++) {
        if (rank_failed(&rs[k], "allreduce")) {
            bad_total++;
            continue;
        }
        size_t bad = 0, first = 0;
        for (size_t e = 0; e < cnt; e++)
            if (memcmp(&rs[k].out[e], &want[e], sizeof(float)) != 0 && bad++ == 0)
                first = e;
        printf("  allreduce tp=%d rows=%d dim=%d (%zu floats, %s): rank %d %s", n_ranks, rows,
               dim, cnt,
               cnt <= p2p_floats ? "peer to peer"
                                 : cnt <= 65536 ? "gathered"
                                                : (cnt % n_ranks ? "chunked, padded" : "chunked"),
               k, bad ? "MISMATCH" : "bit-identical");
        if (bad)
            printf(" (%zu elements, first %zu: got %.9g want %.9g)", bad, first,
                   rs[k].out[first], want[first]);
        printf("\n");
        bad_total += bad != 0;
    }
    float *r0 = malloc(cnt * sizeof(float));
    assert_non_null(r0);
    memcpy(r0, outs, cnt * sizeof(float));
    if (parts_out && !*parts_out)
        *parts_out = parts;
    else
        free(parts);
    free(outs);
    free(want);
    assert_int_equal(bad_total, 0);
    return r0;
}

static void test_allreduce(void **state)
{
    (void)state;
    static const int shapes[][2] = {
        {1, 96},     {3, 96},    {1, 65536}, /* gathered (<= 64 Ki floats) */
        {1, 65537},  {2047, 97},             /* chunked, last chunk padded (odd count) */
        {2048, 96},  {2048, 1024},           /* chunked, n divides the count */
        {256, 1024}, {1, 262145},            /* peer to peer's limit; chunked past it */
    };
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
        free(allreduce_case(shapes[i][0], shapes[i][1], NULL));
}

/* Batch invariance: row j of a 2048-row all-reduce equals the same partials reduced alone. */
static void test_allreduce_invariance(void **state)
{
    (void)state;
    const int rows = 2048, dim = 96, rows_checked[] = {0, 1234, 2047};
    size_t cnt = (size_t)rows * dim;
    float *parts = NULL;
    float *big = allreduce_case(rows, dim, &parts);
    for (size_t t = 0; t < sizeof rows_checked / sizeof rows_checked[0]; t++) {
        int j = rows_checked[t];
        float *one = malloc((size_t)n_ranks * dim * sizeof(float));
        assert_non_null(one);
        for (int k = 0; k < n_ranks; k++)
            memcpy(one + (size_t)k * dim, parts + (size_t)k * cnt + (size_t)j * dim,
                   (size_t)dim * sizeof(float));
        float *small = allreduce_case(1, dim, &one);
        int same = memcmp(small, big + (size_t)j * dim, (size_t)dim * sizeof(float)) == 0;
        printf("  invariance tp=%d: row %d alone vs in a %d-row step: %s\n", n_ranks, j, rows,
               same ? "bit-identical" : "DIFFERENT");
        assert_true(same);
        free(small);
        free(one);
    }
    free(big);
    free(parts);
}

/* ---- tp_allreduce_add_rmsnorm ---------------------------------------------------------------- */
/* Where two arrays of cnt floats of rows of width dim first differ (printed, naming what). */
static void print_first_diff(const char *what, const float *a, const float *b, size_t cnt,
                             int dim)
{
    for (size_t i = 0; i < cnt; i++)
        if (memcmp(a + i, b + i, sizeof(float))) {
            printf("    %s first differs at row %zu, element %zu: %.9g against %.9g\n", what,
                   i / (size_t)dim, i % (size_t)dim, a[i], b[i]);
            return;
        }
}

/* On every rank: the fused op's x and out equal, bit for bit, tp_allreduce then add_rmsnorm on the
 * same inputs, and every rank's equal rank 0's; a product reading out after either equals, bit
 * for bit, the product of a copy of out (decode steps of 32+ rows read the bf16 shadow the norm
 * kernels write: k_p2p_sum_add_norm's, cuda_norm_all's). Shapes: decode rows that take one
 * kernel (peer to peer, widths of the vectorised norm: 9 to 128 rows on k_p2p_sum_add_norm; 1
 * to 8 rows on the cluster kernel (counted: exactly those cases) where the group has it, else
 * on the last-block kernel, whose row counters are reused case after case; their sums by LL
 * words up to the group's ll_rows rows (counted): 8 blocks (a cluster) or 16 a row of 8,192,
 * 2 or 4 a row of 2,048, one block a row of 96), and ones that run the two ops (a prefill
 * request, 200 rows, a width of 8,200). */
static void test_fused(void **state)
{
    (void)state;
    static const int cases[][4] = { /* rows, dim, decode rows, one kernel (with p2p) */
        {32, 8192, 1, 1}, {9, 4096, 1, 1}, {128, 96, 1, 1}, {12, 8192, 1, 1}, /* block 0 */
        {48, 1024, 1, 1},
        {1, 8192, 1, 1},  {8, 8192, 1, 1}, {3, 4096, 1, 1}, {1, 96, 1, 1},    /* last block */
        {5, 2048, 1, 1},  {1, 8192, 1, 1}, {2, 8192, 1, 1}, {2, 96, 1, 1},
        {6, 96, 0, 0},    {200, 96, 1, 0}, {20, 8200, 1, 0}, /* two ops */
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        const int rows = cases[c][0], dim = cases[c][1];
        size_t cnt = (size_t)rows * dim, np = (size_t)rows * FUSED_PN;
        float *xin = malloc(cnt * sizeof(float));
        float *parts = malloc((size_t)n_ranks * cnt * sizeof(float));
        float *res = malloc((size_t)4 * n_ranks * cnt * sizeof(float));
        float *prod = malloc((size_t)3 * n_ranks * np * sizeof(float));
        assert_non_null(xin);
        assert_non_null(parts);
        assert_non_null(res);
        assert_non_null(prod);
        for (size_t i = 0; i < cnt; i++)
            xin[i] = frand_wide();
        for (size_t i = 0; i < (size_t)n_ranks * cnt; i++)
            parts[i] = frand_wide();
        struct rank rs[MAX_RANKS];
        memset(rs, 0, sizeof rs);
        for (int k = 0; k < n_ranks; k++) {
            float *o = res + (size_t)4 * k * cnt;
            rs[k] = (struct rank){.be = bes[k], .rank = k, .job = JOB_FUSED, .rows = rows,
                                  .dim = dim, .in = parts + (size_t)k * cnt, .xin = xin,
                                  .out = o, .out2 = o + cnt, .out3 = o + 2 * cnt,
                                  .out4 = o + 3 * cnt, .decode = cases[c][2],
                                  .prod = prod + (size_t)3 * k * np};
        }
        unsigned ll0[MAX_RANKS], clu0[MAX_RANKS];
        for (int k = 0; k < n_ranks; k++) {
            ll0[k] = engine_cuda_tp_ll_sums(bes[k]);
            clu0[k] = engine_cuda_tp_cluster_sums(bes[k]);
        }
        phase = "tp_allreduce_add_rmsnorm";
        run_ranks(rs, n_ranks);
        /* the fused op of pass 0 by LL words exactly where the group takes them */
        const int one = cases[c][2] && cases[c][3] && p2p_floats;
        const unsigned ll_want = one && rows <= ll_rows ? 1 : 0;
        const unsigned clu_want = one && clu && rows <= 8 ? 1 : 0; /* cuda_pdl_max_rows() */
        int bad = 0;
        for (int k = 0; k < n_ranks; k++) {
            const unsigned nl = engine_cuda_tp_ll_sums(bes[k]) - ll0[k];
            const unsigned nc = engine_cuda_tp_cluster_sums(bes[k]) - clu0[k];
            if ((nl != ll_want || nc != clu_want) && ++bad)
                printf("  fused tp=%d rows=%d dim=%d: rank %d made %u sums by LL words and %u "
                       "normed by a cluster, not %u and %u\n", n_ranks, rows, dim, k, nl, nc,
                       ll_want, clu_want);
        }
        for (int k = 0; k < n_ranks; k++) {
            if (rank_failed(&rs[k], "fused") && ++bad) /* a failed rank counts once */
                continue;
            int same = memcmp(rs[k].out, rs[k].out3, cnt * sizeof(float)) == 0 &&
                       memcmp(rs[k].out2, rs[k].out4, cnt * sizeof(float)) == 0;
            int as0 = memcmp(rs[k].out, rs[0].out, 2 * cnt * sizeof(float)) == 0;
            const float *p = rs[k].prod;
            int prods = memcmp(p, p + 2 * np, np * sizeof(float)) == 0 &&
                        memcmp(p + np, p + 2 * np, np * sizeof(float)) == 0;
            bad += !same || !as0 || !prods;
            if (k == 0 || !same || !as0 || !prods)
                printf("  fused tp=%d rows=%d dim=%d (%s, %s): rank %d x and out %s the two "
                       "calls'%s; products of out %s that of a copy\n", n_ranks, rows, dim,
                       cases[c][2] ? "decode rows" : "prefill",
                       ll_want && clu_want ? "one kernel, LL words, cluster"
                       : ll_want           ? "one kernel, LL words"
                       : clu_want          ? "one kernel, cluster"
                       : one               ? "one kernel"
                                           : "two ops", k,
                       same ? "bit-identical to" : "DIFFER from",
                       as0 ? "" : "; DIFFER from rank 0's",
                       prods ? "bit-identical to" : "DIFFER from");
            if (!same) {
                print_first_diff("x", rs[k].out, rs[k].out3, cnt, dim);
                print_first_diff("out", rs[k].out2, rs[k].out4, cnt, dim);
            }
        }
        free(xin);
        free(parts);
        free(res);
        free(prod);
        assert_int_equal(bad, 0);
    }
}

/* ---- tp_sum_announce ------------------------------------------------------------------------- */
/* Overlapped sums: do_overlap's chain with and without tp_sum_announce gives bit-identical x, h
 * and g on every rank, x the same on every rank; both sums overlap where the step allows it (the
 * group sums peer to peer, prefill requests only, more than the peer-to-peer limit of floats),
 * none where it does not (a decode row in the step, a small step). Requests of 2 to 517 rows,
 * whose chunks of ceil(rows / n) rows leave some ranks empty. */
static void test_overlap(void **state)
{
    (void)state;
    static const int r5[] = {300, 2, 517, 64, 3}, r1[] = {700}, rmix[] = {300, 1, 517},
                     rsmall[] = {40, 30};
    const char *nv = getenv("NY_TP_OVL_NORM"); /* 0: the norms never run with the sums */
    const int norm_on = !nv || strcmp(nv, "0") != 0;
    static const struct {
        const int *req;
        int n, variant, lora, dim, expect;
    } cases[] = {
        {r5, 5, 0, 0, 1024, 2}, {r5, 5, 0, 1, 1024, 2}, {r5, 5, 1, 1, 1024, 2},
        {r1, 1, 0, 0, 1024, 2}, {rmix, 3, 0, 1, 1024, 0}, {rsmall, 2, 0, 0, 1024, 0},
        {r5, 5, 0, 0, 1000, 2}, {r5, 5, 0, 0, 1002, 0}, /* a width the overlap does not take */
        {r5, 5, 2, 0, 1024, 2}, {r5, 5, 2, 1, 1024, 2}, {rmix, 3, 2, 1, 1024, 0},
        {r5, 5, 3, 0, 1024, 2}, {r5, 5, 3, 1, 1024, 2}, {r1, 1, 3, 0, 1024, 2},
        {rmix, 3, 3, 1, 1024, 0}, {r5, 5, 3, 0, 1000, 2}, {r5, 5, 4, 1, 1024, 2},
        {r1, 1, 4, 0, 1024, 2},   {r5, 5, 5, 0, 1024, 2}, {rmix, 3, 5, 0, 1024, 0},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        int rows = 0;
        for (int i = 0; i < cases[c].n; i++)
            rows += cases[c].req[i];
        const int dim = cases[c].dim;
        const size_t per = (size_t)rows * (2 * dim + OVL_FF), nx = (size_t)rows * dim;
        float *xin = malloc(nx * sizeof(float));
        float *ain = malloc((size_t)n_ranks * rows * OVL_K * sizeof(float));
        float *res = malloc((size_t)n_ranks * 2 * per * sizeof(float));
        float *mid = malloc((size_t)n_ranks * 2 * nx * sizeof(float)); /* variants 4 and 5 */
        assert_non_null(mid);
        assert_non_null(xin);
        assert_non_null(ain);
        assert_non_null(res);
        for (size_t i = 0; i < nx; i++)
            xin[i] = frand_wide();
        for (size_t i = 0; i < (size_t)n_ranks * rows * OVL_K; i++)
            ain[i] = frand_wide() * 0.01f;
        struct rank rs[MAX_RANKS];
        memset(rs, 0, sizeof rs);
        for (int k = 0; k < n_ranks; k++)
            rs[k] = (struct rank){.be = bes[k], .rank = k, .job = JOB_OVERLAP, .rows = rows,
                                  .dim = dim, .in = ain + (size_t)k * rows * OVL_K, .xin = xin,
                                  .req = cases[c].req, .n_req = cases[c].n,
                                  .variant = cases[c].variant, .lora = cases[c].lora,
                                  .res = res + (size_t)k * 2 * per,
                                  .out = mid + (size_t)k * 2 * nx};
        phase = "tp_sum_announce";
        run_ranks(rs, n_ranks);
        const unsigned expect = p2p_floats ? (unsigned)cases[c].expect : 0;
        int bad = 0;
        for (int k = 0; k < n_ranks; k++) {
            if (rank_failed(&rs[k], "overlap") && ++bad)
                continue;
            const float *p0 = rs[k].res, *p1 = rs[k].res + per;
            int same = memcmp(p0, p1, per * sizeof(float)) == 0;
            int as0 = memcmp(p0, rs[0].res, nx * sizeof(float)) == 0;
            int nan = 0;
            for (size_t e = 0; e < per; e++)
                nan += p0[e] != p0[e];
            /* variant 4: x read between the sums, as without them; 5: the read refused exactly
             * where x lags (both sums overlapped with their norms) */
            const int v = cases[c].variant;
            int mid_ok = v != 4 || !memcmp(rs[k].out, rs[k].out + nx, nx * sizeof(float));
            int want2 = v == 5 && expect && norm_on ? NY_E_STATE : 0;
            mid_ok &= v != 5 || rs[k].rc2 == want2;
            bad += !same || !as0 || nan || rs[k].ovl[0] != expect || rs[k].ovl[1] != 0 ||
                   !mid_ok;
            if (k == 0 || !same || !as0 || nan || rs[k].ovl[0] != expect || !mid_ok)
                printf("  overlap tp=%d requests=%d rows=%d dim=%d%s%s: rank %d, %u of 2 sums "
                       "overlapped (want %u); x, h, g %s the sums without it%s%s%s\n", n_ranks,
                       cases[c].n, rows, dim,
                       v == 1   ? " (tp_allreduce)"
                       : v == 2 ? " (last_read)"
                       : v == 3 ? " (tp_sum_announce_norm, x_next)"
                       : v == 4 ? " (x_next, x read between the sums)"
                       : v == 5 ? " (x_next, x read while it lags)"
                                : "",
                       cases[c].lora ? " LoRA" : "", k, rs[k].ovl[0], expect,
                       same ? "bit-identical to" : "DIFFER from",
                       as0 ? "" : "; x DIFFERS from rank 0's", nan ? "; NaN" : "",
                       mid_ok ? "" : v == 4 ? "; x between the sums DIFFERS"
                                            : "; the read of the lagging x not refused");
        }
        free(mid);
        free(xin);
        free(ain);
        free(res);
        assert_int_equal(bad, 0);
    }
}

/* ---- tp_argmax --------------------------------------------------------------------------------- */
#define AM_ROWS 6
#define AM_VOCAB 1003

/* the host rule: ties to the lowest id, NaN never wins, all NaN -> 0 */
static int32_t host_argmax(const float *row, int vocab)
{
    int bj = -1;
    for (int j = 0; j < vocab; j++)
        if (!isnan(row[j]) && (bj < 0 || row[j] > row[bj]))
            bj = j;
    return bj < 0 ? 0 : bj;
}

static void test_argmax(void **state)
{
    (void)state;
    /* uneven shards: ceil(V / n) each, the last one smaller */
    int per = (AM_VOCAB + n_ranks - 1) / n_ranks, last_off = per * (n_ranks - 1);
    static float l[AM_ROWS][AM_VOCAB];
    for (int i = 0; i < AM_ROWS; i++)
        for (int j = 0; j < AM_VOCAB; j++)
            l[i][j] = frand_wide();
    const char *what[AM_ROWS] = {"max in the last shard", "tie across shards", "all NaN",
                                 "first shard all NaN", "-inf row, NaN at id 0",
                                 "tie inside the last shard"};
    l[0][AM_VOCAB - 3] = 5000.0f;                            /* last shard */
    l[1][7] = l[1][per + 1] = l[1][AM_VOCAB - 1] = 4000.0f;  /* id 7 must win */
    for (int j = 0; j < AM_VOCAB; j++)
        l[2][j] = NAN;
    for (int j = 0; j < per; j++)
        l[3][j] = NAN;
    l[3][per + 5] = 3000.0f;
    for (int j = 0; j < AM_VOCAB; j++)
        l[4][j] = -INFINITY;
    l[4][0] = NAN; /* id 1 wins */
    l[5][last_off + 2] = l[5][last_off + 1] = 6000.0f;
    l[5][last_off] = NAN;
    struct rank rs[MAX_RANKS];
    float *shard[MAX_RANKS];
    memset(rs, 0, sizeof rs);
    for (int k = 0; k < n_ranks; k++) {
        int off = k * per, vl = k == n_ranks - 1 ? AM_VOCAB - off : per;
        shard[k] = malloc((size_t)AM_ROWS * vl * sizeof(float));
        assert_non_null(shard[k]);
        for (int i = 0; i < AM_ROWS; i++)
            memcpy(shard[k] + (size_t)i * vl, &l[i][off], (size_t)vl * sizeof(float));
        rs[k].be = bes[k];
        rs[k].rank = k;
        rs[k].job = JOB_ARGMAX;
        rs[k].in = shard[k];
        rs[k].n = AM_ROWS;
        rs[k].vocab_local = vl;
        rs[k].vocab_off = off;
        for (int i = 0; i < AM_ROWS; i++)
            rs[k].ids[i] = -7;
    }
    phase = "tp_argmax";
    run_ranks(rs, n_ranks);
    int bad = 0;
    for (int i = 0; i < AM_ROWS; i++) {
        int32_t want = host_argmax(l[i], AM_VOCAB);
        printf("  argmax tp=%d shards of %d (last %d), row %d (%s): want %d, got", n_ranks, per,
               AM_VOCAB - last_off, i, what[i], want);
        for (int k = 0; k < n_ranks; k++) {
            if (rs[k].rc)
                printf(" [rank %d failed: %s]", k, rs[k].msg);
            else
                printf(" %d", rs[k].ids[i]);
            bad += rs[k].rc != 0 || rs[k].ids[i] != want;
        }
        printf("\n");
    }
    for (int k = 0; k < n_ranks; k++)
        free(shard[k]);
    assert_int_equal(host_argmax(l[1], AM_VOCAB), 7); /* the test's own premises */
    assert_int_equal(host_argmax(l[4], AM_VOCAB), 1);
    assert_int_equal(host_argmax(l[5], AM_VOCAB), last_off + 1);
    assert_int_equal(bad, 0);
}

/* ---- weight_random ------------------------------------------------------------------------------ */
static void test_weight_random(void **state)
{
    (void)state;
    struct engine_backend *be = bes[0];
    struct engine_buf *whole = NULL, *blk = NULL, *old = NULL, *bad = NULL;
    struct ny_err err;
    ny_err_init(&err);
    float w[6 * 10], b[4 * 6], o[6 * 10];
    phase = "weight_random";
    assert_int_equal(G->weight_random(be, 6, 10, 0, 0, 10, 42, 0.5f, &whole, &err), 0);
    assert_int_equal(G->weight_random(be, 4, 6, 2, 3, 10, 42, 0.5f, &blk, &err), 0);
    assert_int_equal(engine_cuda_weight_random(be, 6, 10, 42, 0.5f, &old, &err), 0);
    assert_int_equal(engine_cuda_weight_read(be, whole, w, &err), 0);
    assert_int_equal(engine_cuda_weight_read(be, blk, b, &err), 0);
    assert_int_equal(engine_cuda_weight_read(be, old, o, &err), 0);
    int diff = 0, distinct = 0, in_range = 1;
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 6; j++)
            diff += memcmp(&b[i * 6 + j], &w[(2 + i) * 10 + 3 + j], sizeof(float)) != 0;
    for (int e = 0; e < 60; e++) {
        distinct += w[e] != w[0];
        in_range &= w[e] >= -0.5f && w[e] <= 0.5f; /* bf16 rounding may reach 0.5 */
    }
    int same_old = memcmp(w, o, sizeof w) == 0;
    printf("  weight_random: [4, 6] block at (2, 3) of width 10: %d of 24 differ from the whole "
           "matrix; engine_cuda_weight_random %s; %d of 60 differ from element 0; range %s\n",
           diff, same_old ? "identical" : "DIFFERENT", distinct, in_range ? "ok" : "BAD");
    assert_int_equal(diff, 0);
    assert_true(same_old);
    assert_true(distinct > 50);
    assert_true(in_range);
    assert_int_equal(G->weight_random(be, 4, 8, 0, 3, 10, 42, 0.5f, &bad, &err), NY_E_RANGE);
    assert_null(bad);
    G->buf_free(be, whole);
    G->buf_free(be, blk);
    G->buf_free(be, old);
}

/* ---- tp_abort ------------------------------------------------------------------------------------ */
/* Rank 0 enters tp_allreduce then waits in buf_read; rank 1 calls tp_abort instead of entering,
 * then tries to: both must return NY_E_STATE, rank 0 without hanging. */
static int abort_decode; /* test_abort's rank 0: 0 tp_allreduce, 1 the fused op on decode rows */

static void test_abort(void **state)
{
    (void)state;
    const int rows = abort_decode ? 1 : 3, dim = abort_decode ? 1024 : 96;
    float *in = malloc((size_t)2 * rows * dim * sizeof(float));
    float *out = malloc((size_t)2 * rows * dim * sizeof(float));
    assert_non_null(in);
    assert_non_null(out);
    for (int i = 0; i < 2 * rows * dim; i++)
        in[i] = frand_wide();
    struct rank rs[2];
    memset(rs, 0, sizeof rs);
    for (int k = 0; k < 2; k++) {
        rs[k].be = bes[k];
        rs[k].rank = k;
        rs[k].job = k == 0 ? JOB_ABORT_WAIT : JOB_ABORT_CALL;
        rs[k].decode = abort_decode;
        rs[k].rows = rows;
        rs[k].dim = dim;
        rs[k].in = in + (size_t)k * rows * dim;
        rs[k].out = out + (size_t)k * rows * dim;
    }
    phase = abort_decode ? "tp_abort (rank 0 blocked in the decode rows' fused sum + buf_read)"
                         : "tp_abort (rank 0 blocked in tp_allreduce + buf_read)";
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    run_ranks(rs, 2);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double s = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    printf("  abort: rank 0 returned %d (%s), rank 1 (entering after its abort) returned %d "
           "(%s), %.2f s\n", rs[0].rc, rs[0].msg, rs[1].rc, rs[1].msg, s);
    assert_int_equal(rs[0].rc, NY_E_STATE);
    assert_non_null(strstr(rs[0].msg, "aborted"));
    assert_int_equal(rs[1].rc, NY_E_STATE);
    if (abort_decode && ll_rows) /* rank 0 waited on LL words */
        assert_int_equal(engine_cuda_tp_ll_sums(bes[0]), 1);
    if (abort_decode) /* in a cluster kernel where the group has them */
        assert_int_equal(engine_cuda_tp_cluster_sums(bes[0]), clu ? 1 : 0);
    phase = "tp_destroy after abort";
    free(in);
    free(out);
}

/* The same with an overlapped sum: rank 0 announces and makes its product, whose first unit's
 * sum waits for rank 1's; rank 1 announces, then aborts instead of making its product. Both
 * return NY_E_STATE, rank 0 without hanging. */
static void test_ovl_abort(void **state)
{
    (void)state;
    struct rank rs[2];
    float out[1024];
    memset(rs, 0, sizeof rs);
    for (int k = 0; k < 2; k++)
        rs[k] = (struct rank){.be = bes[k], .rank = k, .dim = 1024, .out = out,
                              .job = k == 0 ? JOB_OVL_ABORT_WAIT : JOB_OVL_ABORT_CALL};
    phase = "tp_abort with an overlapped sum";
    run_ranks(rs, 2);
    printf("  overlap abort: rank 0 returned %d (%s), rank 1 returned %d (%s)\n", rs[0].rc,
           rs[0].msg, rs[1].rc, rs[1].msg);
    assert_int_equal(rs[0].rc, NY_E_STATE);
    assert_non_null(strstr(rs[0].msg, "aborted"));
    assert_int_equal(rs[1].rc, NY_E_STATE);
    phase = "tp_destroy after an overlapped abort";
}

/* A group of n ranks; p2p = 0: NY_TP_P2P=0 (every sum over NCCL, only the sums tested), 1: the
 * default, which must sum peer to peer on these machines (NVLink or PCIe peer access), 2: peer
 * to peer with NY_TP_LL=0 (the decode rows' fused sums by the flag protocol: test_fused alone),
 * 3: peer to peer with NY_TP_CLUSTER=0 (their norm by a last block: test_fused alone). */
static int run_size(int n, int p2p)
{
    if (p2p == 2)
        setenv("NY_TP_LL", "0", 1);
    else
        unsetenv("NY_TP_LL");
    if (p2p == 3)
        setenv("NY_TP_CLUSTER", "0", 1);
    else
        unsetenv("NY_TP_CLUSTER");
    struct ny_err err;
    ny_err_init(&err);
    char ph[64];
    snprintf(ph, sizeof ph, "tp_create of %d", n);
    phase = ph;
    alarm(240);
    if (p2p)
        unsetenv("NY_TP_P2P");
    else
        setenv("NY_TP_P2P", "0", 1);
    if (group_open(n, &err)) {
        printf("group of %d: %s\n", n, err.msg);
        group_close();
        return 1;
    }
    printf("group of %d ranks ready, peer-to-peer sums up to %zu floats\n", n, p2p_floats);
    if (!p2p && p2p_floats > 0) { /* NY_TP_P2P=0 must turn them off */
        printf("group of %d: peer-to-peer sums on under NY_TP_P2P=0\n", n);
        group_close();
        return 1;
    }
    if (p2p && !p2p_floats) /* devices without peer access: NCCL is all there is */
        printf("group of %d: no peer access between the devices, every sum over NCCL\n", n);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_allreduce),
        cmocka_unit_test(test_allreduce_invariance),
        cmocka_unit_test(test_fused),
        cmocka_unit_test(test_overlap),
        cmocka_unit_test(test_argmax),
        cmocka_unit_test(test_weight_random),
    };
    const struct CMUnitTest sum_tests[] = {
        cmocka_unit_test(test_allreduce),
        cmocka_unit_test(test_allreduce_invariance),
        cmocka_unit_test(test_fused),
        cmocka_unit_test(test_overlap),
    };
    const struct CMUnitTest fused_tests[] = {cmocka_unit_test(test_fused)};
    char name[32];
    snprintf(name, sizeof name, "tp%d%s", n,
             p2p == 3 ? "-lastblock" : p2p == 2 ? "-flags" : p2p ? "" : "-nccl");
    int rc = 1;
    if (p2p == 3 && clu) /* NY_TP_CLUSTER=0 must turn them off */
        printf("group of %d: cluster norms on under NY_TP_CLUSTER=0\n", n);
    else
        rc = p2p >= 2 ? cmocka_run_group_tests_name(name, fused_tests, NULL, NULL)
             : p2p    ? cmocka_run_group_tests_name(name, tests, NULL, NULL)
                      : cmocka_run_group_tests_name(name, sum_tests, NULL, NULL);
    unsetenv("NY_TP_LL");
    unsetenv("NY_TP_CLUSTER");
    phase = "tp_destroy";
    group_close();
    alarm(0);
    return rc;
}

int main(void)
{
    struct ny_err err;
    ny_err_init(&err);
    int n = 0;
    if (engine_device_count(&n, &err) != NY_OK || n < 2) {
        printf("SKIP: %s\n", err.msg[0] ? err.msg : "fewer than 2 CUDA devices");
        return 77;
    }
    if (engine_backend_find("cuda", &G, &err) || !G->tp_create) {
        printf("SKIP: %s\n", err.msg[0] ? err.msg : "no tensor parallelism in this build");
        return 77;
    }
    signal(SIGALRM, on_alarm);
    setvbuf(stdout, NULL, _IONBF, 0);
    setenv("NY_TP_OVL_MIN", "0", 1); /* overlap the small steps of test_overlap too */
    printf("%d CUDA devices\n", n);
    int rc = run_size(2, 1) | run_size(2, 0);
    if (n >= 4)
        rc |= run_size(4, 1) | run_size(4, 0) | run_size(4, 2) | run_size(4, 3);
    else
        rc |= run_size(2, 2) | run_size(2, 3);
    if (n < 4)
        printf("group of 4: not run (%d devices)\n", n);
    /* the abort poisons its group: a fresh one for each transport, and for the overlap, last */
    for (int t = 3; t >= 0; t--) {
        const int p2p = t > 0;
        abort_decode = t == 3; /* rank 0 blocked in the decode rows' fused sum (LL words) */
        phase = "tp_create for the abort test";
        alarm(120);
        if (p2p)
            unsetenv("NY_TP_P2P");
        else
            setenv("NY_TP_P2P", "0", 1);
        if (group_open(2, &err)) {
            printf("group of 2 (abort): %s\n", err.msg);
            group_close();
            return 1;
        }
        printf("abort test%s, peer-to-peer sums up to %zu floats\n",
               t == 3 ? " (decode rows' fused sum)" : t == 2 ? " (overlapped sum)" : "",
               p2p_floats);
        const struct CMUnitTest abort_tests[] = {cmocka_unit_test(test_abort)};
        const struct CMUnitTest ovl_tests[] = {cmocka_unit_test(test_ovl_abort)};
        if (t == 2 && !p2p_floats)
            printf("no peer access: no overlapped sums to abort\n");
        else if (t == 2)
            rc |= cmocka_run_group_tests_name("tp_abort-overlap", ovl_tests, NULL, NULL);
        else
            rc |= cmocka_run_group_tests_name(t == 3 ? "tp_abort-decode"
                                              : p2p  ? "tp_abort"
                                                     : "tp_abort-nccl",
                                              abort_tests, NULL, NULL);
        group_close();
        alarm(0);
    }
    unsetenv("NY_TP_P2P");
    return rc ? 1 : 0;
}

#else

int main(void)
{
    printf("SKIP: built without %s\n", NY_HAVE_CUDA ? "NCCL" : "the CUDA backend");
    return 77;
}

#endif
