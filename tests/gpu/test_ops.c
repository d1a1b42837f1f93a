/* test_ops.c — the CUDA backend's primitives against the CPU reference backend on fresh random
 * inputs (fp32 weights: 1e-5 relative; bf16 weights: 1e-2 relative, the bf16 rounding of
 * activations the GPU does and the CPU does not), argmax ties and NaN, and batch invariance of
 * matmul (with LoRA) and attention: a request's rows are bit-identical alone and inside batches;
 * the fused ops (matmul_multi, add_rmsnorm, rope_qk, swiglu_matmul, mlp) against the separate
 * calls, and the bf16 shadow of a norm's or the attention's output against a copy of it.
 * Exits 77 (SKIP) without the CUDA backend or a device. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "engine.h"
#include "engine_backend_int.h"

static const struct engine_backend_ops *G, *C; /* GPU, CPU */
static struct engine_backend *gbe, *cbe;
static uint64_t rng = 0x12345678abcdefull;

static float frand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)((rng >> 40) * (1.0 / 16777216.0)) * 2.0f - 1.0f;
}

static float *rand_vec(size_t n, float scale)
{
    float *v = malloc(n * sizeof *v);
    assert_non_null(v);
    for (size_t i = 0; i < n; i++)
        v[i] = frand() * scale;
    return v;
}

/* bf16 bytes (round to nearest even) of fp32 values, and those values back in fp32 */
static uint16_t *to_bf16(const float *v, size_t n)
{
    uint16_t *h = malloc(n * 2);
    assert_non_null(h);
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &v[i], 4);
        u += 0x7fff + ((u >> 16) & 1);
        h[i] = (uint16_t)(u >> 16);
    }
    return h;
}

#define OK(call)                                                                                  \
    do {                                                                                          \
        struct ny_err e_;                                                                         \
        ny_err_init(&e_);                                                                         \
        int rc_ = (call);                                                                         \
        if (rc_)                                                                                  \
            fail_msg("%s: %s", #call, e_.msg);                                                    \
    } while (0)
#define E (&e_)

/* The same weight on both backends. */
struct wpair {
    struct engine_buf *g, *c;
};
static struct wpair weight(enum engine_dtype dt, const float *v, size_t rows, size_t cols)
{
    struct wpair w;
    uint16_t *b = dt == ENGINE_DTYPE_BF16 ? to_bf16(v, rows * cols) : NULL;
    const void *src = b ? (const void *)b : (const void *)v;
    OK(G->weight_upload(gbe, dt, src, rows, cols, &w.g, E));
    OK(C->weight_upload(cbe, dt, src, rows, cols, &w.c, E));
    free(b);
    return w;
}
static void wfree(struct wpair w)
{
    G->buf_free(gbe, w.g);
    C->buf_free(cbe, w.c);
}
static struct wpair act(const float *v, size_t n)
{
    struct wpair a;
    OK(G->buf_alloc(gbe, n, &a.g, E));
    OK(C->buf_alloc(cbe, n, &a.c, E));
    if (v) {
        OK(G->buf_write(gbe, a.g, 0, v, n, E));
        OK(C->buf_write(cbe, a.c, 0, v, n, E));
    }
    return a;
}

static double rel_err(const float *a, const float *ref, size_t n)
{
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        if (isnan(a[i]))
            return INFINITY;
        num += ((double)a[i] - ref[i]) * ((double)a[i] - ref[i]);
        den += (double)ref[i] * ref[i];
    }
    return sqrt(num / (den > 0 ? den : 1));
}

/* Read n floats of a pair; return the relative error of the GPU against the CPU. */
/* FNV-1a of the n floats of a GPU buffer. */
static uint64_t gpu_fnv(struct engine_buf *b, size_t n)
{
    float *g = malloc(n * 4);
    assert_non_null(g);
    OK(G->buf_read(gbe, b, 0, g, n, E));
    uint64_t h = 1469598103934665603ull;
    const unsigned char *p = (const unsigned char *)g;
    for (size_t i = 0; i < n * 4; i++)
        h = (h ^ p[i]) * 1099511628211ull;
    free(g);
    return h;
}

static double compare(struct wpair a, size_t n)
{
    float *g = malloc(n * 4), *c = malloc(n * 4);
    assert_non_null(g);
    assert_non_null(c);
    for (size_t i = 0; i < n; i++)
        g[i] = NAN; /* poison: every element must be written */
    OK(G->buf_read(gbe, a.g, 0, g, n, E));
    OK(C->buf_read(cbe, a.c, 0, c, n, E));
    double r = rel_err(g, c, n);
    free(g);
    free(c);
    return r;
}

/* A batch of n_seqs requests with the given row counts, positions and adapters. */
struct tbatch {
    int start[129], slot[128], pos0[128], adapter[128];
    struct engine_batch b;
};
static void make_batch(struct tbatch *t, int n, const int *rows, const int *pos0, const int *ad)
{
    assert_true(n <= 128);
    t->start[0] = 0;
    for (int s = 0; s < n; s++) {
        t->start[s + 1] = t->start[s] + rows[s];
        t->slot[s] = s;
        t->pos0[s] = pos0 ? pos0[s] : 0;
        t->adapter[s] = ad ? ad[s] : -1;
    }
    t->b.n_rows = t->start[n];
    t->b.n_seqs = n;
    t->b.seq_start = t->start;
    t->b.seq_slot = t->slot;
    t->b.seq_pos0 = t->pos0;
    t->b.seq_adapter = t->adapter;
}
static void both_step(struct tbatch *t)
{
    OK(G->step_begin(gbe, &t->b, E));
    OK(C->step_begin(cbe, &t->b, E));
}

static void test_elementwise(void **state)
{
    (void)state;
    int rows[3] = {5, 1, 2}, pos0[3] = {0, 7, 3}, dim = 96, nh = 3, hd = 32;
    struct tbatch t;
    make_batch(&t, 3, rows, pos0, NULL);
    both_step(&t);
    int nr = t.b.n_rows;
    /* embed (bf16 and f32 tables) */
    for (int dt = 0; dt < 2; dt++) {
        float *tab = rand_vec(50 * (size_t)dim, 1.0f);
        struct wpair w = weight(dt ? ENGINE_DTYPE_BF16 : ENGINE_DTYPE_F32, tab, 50, dim);
        int32_t ids[8] = {3, 49, 0, 7, 7, 12, 33, 1};
        struct wpair o = act(NULL, (size_t)nr * dim);
        OK(G->embed(gbe, w.g, ids, dim, o.g, E));
        OK(C->embed(cbe, w.c, ids, dim, o.c, E));
        assert_true(compare(o, (size_t)nr * dim) == 0.0);
        wfree(w);
        wfree(o);
        free(tab);
    }
    /* rmsnorm, swiglu, add, rope */
    float *xv = rand_vec((size_t)nr * dim, 3.0f), *wv = rand_vec(dim, 1.0f);
    float *yv = rand_vec((size_t)nr * dim, 3.0f);
    struct wpair x = act(xv, (size_t)nr * dim), y = act(yv, (size_t)nr * dim);
    struct wpair o = act(NULL, (size_t)nr * dim), nw = weight(ENGINE_DTYPE_F32, wv, 1, dim);
    OK(G->rmsnorm(gbe, x.g, nw.g, dim, 1e-5f, o.g, E));
    OK(C->rmsnorm(cbe, x.c, nw.c, dim, 1e-5f, o.c, E));
    assert_true(compare(o, (size_t)nr * dim) < 1e-6);
    OK(G->swiglu(gbe, x.g, y.g, dim, o.g, E));
    OK(C->swiglu(cbe, x.c, y.c, dim, o.c, E));
    assert_true(compare(o, (size_t)nr * dim) < 1e-6);
    OK(G->add(gbe, x.g, y.g, dim, E));
    OK(C->add(cbe, x.c, y.c, dim, E));
    assert_true(compare(x, (size_t)nr * dim) == 0.0);
    float inv[16];
    for (int i = 0; i < hd / 2; i++)
        inv[i] = powf(10000.0f, -2.0f * i / hd);
    OK(G->rope(gbe, y.g, nh, hd, inv, 1.0f, E));
    OK(C->rope(cbe, y.c, nh, hd, inv, 1.0f, E));
    assert_true(compare(y, (size_t)nr * dim) < 1e-6);
    wfree(x);
    wfree(y);
    wfree(o);
    wfree(nw);
    free(xv);
    free(yv);
    free(wv);
}

static void test_argmax(void **state)
{
    (void)state;
    int rows[1] = {4};
    struct tbatch t;
    make_batch(&t, 1, rows, NULL, NULL);
    both_step(&t);
    int V = 70000;
    float *l = rand_vec(4 * (size_t)V, 5.0f);
    l[0 * V + 100] = 9.0f; /* ties: the lowest id wins */
    l[0 * V + 60000] = 9.0f;
    l[0 * V + 30000] = 9.0f;
    l[1 * V + 5] = NAN; /* NaN never wins */
    l[1 * V + 6] = 8.5f;
    for (int j = 0; j < V; j++) /* all equal: id 0 */
        l[2 * V + j] = -1.0f;
    l[3 * V + V - 1] = 50.0f;
    struct wpair a = act(l, 4 * (size_t)V);
    int32_t g[4], c[4];
    OK(G->argmax(gbe, a.g, 4, V, g, E));
    OK(C->argmax(cbe, a.c, 4, V, c, E));
    assert_int_equal(g[0], 100);
    assert_int_equal(g[1], 6);
    assert_int_equal(g[2], 0);
    assert_int_equal(g[3], V - 1);
    for (int i = 0; i < 4; i++)
        assert_int_equal(g[i], c[i]);
    wfree(a);
    free(l);
}

/* matmul against the CPU for fp32 and bf16 weights, prefill units and decode rows, LoRA on some
 * requests, and the rows subset. */
static void test_matmul(void **state)
{
    (void)state;
    /* 7168 x 72: the LoRA A product of a prefill unit takes the split-K path */
    int shapes[][2] = {{64, 48}, {256, 136}, {4096, 1024}, {136, 256}, {72, 40}, {7168, 72}};
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++)
        for (int dt = 0; dt < 2; dt++) {
            int K = shapes[si][0], N = shapes[si][1], R = 8;
            int rows[5] = {7, 1, 1, 3, 1}, ad[5] = {0, 0, -1, 1, 1};
            struct tbatch t;
            make_batch(&t, 5, rows, NULL, ad);
            both_step(&t);
            int nr = t.b.n_rows;
            enum engine_dtype d = dt ? ENGINE_DTYPE_BF16 : ENGINE_DTYPE_F32;
            float *wv = rand_vec((size_t)N * K, 0.05f), *xv = rand_vec((size_t)nr * K, 1.0f);
            float *av = rand_vec((size_t)R * K, 0.05f), *bv = rand_vec((size_t)N * R, 0.05f);
            float *a2 = rand_vec((size_t)R * K, 0.05f), *b2 = rand_vec((size_t)N * R, 0.05f);
            struct wpair w = weight(d, wv, N, K), la = weight(d, av, R, K);
            struct wpair lb = weight(d, bv, N, R), la2 = weight(d, a2, R, K);
            struct wpair lb2 = weight(d, b2, N, R);
            struct wpair x = act(xv, (size_t)nr * K), y = act(NULL, (size_t)nr * N);
            struct engine_lora_term lg[2] = {{la.g, lb.g, R, 2.0f}, {la2.g, lb2.g, R, 0.5f}};
            struct engine_lora_term lc[2] = {{la.c, lb.c, R, 2.0f}, {la2.c, lb2.c, R, 0.5f}};
            double tol = dt ? 1e-2 : 1e-5;
            OK(G->matmul(gbe, x.g, K, w.g, N, lg, 2, NULL, 0, y.g, E));
            OK(C->matmul(cbe, x.c, K, w.c, N, lc, 2, NULL, 0, y.c, E));
            double r = compare(y, (size_t)nr * N);
            print_message("matmul %dx%d %s: rel err %.2e\n", K, N, dt ? "bf16" : "f32", r);
            assert_true(r < tol);
            int sel[3] = {6, 12, 7};
            OK(G->matmul(gbe, x.g, K, w.g, N, lg, 2, sel, 3, y.g, E));
            OK(C->matmul(cbe, x.c, K, w.c, N, lc, 2, sel, 3, y.c, E));
            assert_true(compare(y, 3 * (size_t)N) < tol);
            wfree(w), wfree(la), wfree(lb), wfree(la2), wfree(lb2), wfree(x), wfree(y);
            free(wv), free(xv), free(av), free(bv), free(a2), free(b2);
        }
}

/* matmul_multi (q, k, v-like parts of one input, LoRA on two of them, one fp32 part in the last
 * case) gives every part bit-identical to its own matmul call: prefill units, decode rows (64+
 * of them: two skinny passes) and two adapters in one step. */
static void test_matmul_multi(void **state)
{
    (void)state;
    assert_non_null(G->matmul_multi);
    int K = 1024, R = 16, N[3] = {512, 128, 136};
    int rows[80], ad[80];
    for (int i = 0; i < 80; i++)
        rows[i] = i % 9 == 0 ? 5 : 1, ad[i] = i % 3 == 0 ? -1 : i % 3 - 1;
    for (int f32 = 0; f32 < 2; f32++) {
        struct tbatch t;
        make_batch(&t, 80, rows, NULL, ad);
        OK(G->step_begin(gbe, &t.b, E));
        int nr = t.b.n_rows;
        float *xv = rand_vec((size_t)nr * K, 1.0f);
        struct engine_buf *x, *ys[3], *yr[3];
        struct wpair w[3], la[3][2], lb[3][2];
        struct engine_lora_term lt[3][2];
        struct engine_matmul_part parts[3];
        OK(G->buf_alloc(gbe, (size_t)nr * K, &x, E));
        OK(G->buf_write(gbe, x, 0, xv, (size_t)nr * K, E));
        for (int p = 0; p < 3; p++) {
            enum engine_dtype d = f32 && p == 2 ? ENGINE_DTYPE_F32 : ENGINE_DTYPE_BF16;
            float *wv = rand_vec((size_t)N[p] * K, 0.05f);
            w[p] = weight(d, wv, N[p], K);
            free(wv);
            for (int a = 0; a < 2; a++) {
                float *av = rand_vec((size_t)R * K, 0.05f), *bv = rand_vec((size_t)N[p] * R, 0.05f);
                la[p][a] = weight(d, av, R, K);
                lb[p][a] = weight(d, bv, N[p], R);
                lt[p][a] = (struct engine_lora_term){la[p][a].g, lb[p][a].g, R, 0.5f + p + a};
                free(av), free(bv);
            }
            OK(G->buf_alloc(gbe, (size_t)nr * N[p], &ys[p], E));
            OK(G->buf_alloc(gbe, (size_t)nr * N[p], &yr[p], E));
            parts[p] = (struct engine_matmul_part){w[p].g, N[p], p == 1 ? NULL : lt[p], ys[p]};
        }
        OK(G->matmul_multi(gbe, x, K, parts, 3, 2, E));
        for (int p = 0; p < 3; p++) {
            OK(G->matmul(gbe, x, K, w[p].g, N[p], p == 1 ? NULL : lt[p], p == 1 ? 0 : 2, NULL, 0,
                         yr[p], E));
            size_t n = (size_t)nr * N[p];
            float *a = malloc(n * 4), *b = malloc(n * 4);
            assert_non_null(a);
            assert_non_null(b);
            OK(G->buf_read(gbe, ys[p], 0, a, n, E));
            OK(G->buf_read(gbe, yr[p], 0, b, n, E));
            assert_memory_equal(a, b, n * 4);
            free(a), free(b);
            G->buf_free(gbe, ys[p]), G->buf_free(gbe, yr[p]), wfree(w[p]);
            for (int q = 0; q < 2; q++)
                wfree(la[p][q]), wfree(lb[p][q]);
        }
        G->buf_free(gbe, x);
        free(xv);
    }
}

/* n floats of two GPU buffers are bit-identical. */
static void assert_gpu_equal(struct engine_buf *a, struct engine_buf *b, size_t n)
{
    float *ha = malloc(n * 4), *hb = malloc(n * 4);
    assert_non_null(ha);
    assert_non_null(hb);
    OK(G->buf_read(gbe, a, 0, ha, n, E));
    OK(G->buf_read(gbe, b, 0, hb, n, E));
    assert_memory_equal(ha, hb, n * 4);
    free(ha), free(hb);
}

/* A GPU buffer of n floats holding v[0..n), or all `fill` when v is NULL. */
static struct engine_buf *gbuf(const float *v, size_t n, float fill)
{
    struct engine_buf *b;
    float *f = NULL;
    OK(G->buf_alloc(gbe, n, &b, E));
    if (!v) {
        f = malloc(n * 4);
        assert_non_null(f);
        for (size_t i = 0; i < n; i++)
            f[i] = fill;
        v = f;
    }
    OK(G->buf_write(gbe, b, 0, v, n, E));
    free(f);
    return b;
}

/* add_rmsnorm gives x and out bit-identical to add then rmsnorm, for the vector kernel (4096, 72)
 * and the strided one (70), bf16 and f32 norm weights, prefill units and decode rows, out apart
 * from y and out aliasing y (as the forward calls it). */
static void test_add_rmsnorm(void **state)
{
    (void)state;
    assert_non_null(G->add_rmsnorm);
    int rows[4] = {5, 1, 3, 1}, pos0[4] = {0, 40, 0, 7}, dims[3] = {4096, 72, 70};
    struct tbatch t;
    make_batch(&t, 4, rows, pos0, NULL);
    OK(G->step_begin(gbe, &t.b, E));
    int nr = t.b.n_rows;
    for (int di = 0; di < 3; di++)
        for (int bf = 0; bf < 2; bf++) {
            int dim = dims[di];
            size_t n = (size_t)nr * dim;
            float *xv = rand_vec(n, 2.0f), *yv = rand_vec(n, 2.0f), *wv = rand_vec(dim, 1.5f);
            struct wpair w = weight(bf ? ENGINE_DTYPE_BF16 : ENGINE_DTYPE_F32, wv, 1, dim);
            /* separate calls: xs += ys; os = norm(xs) */
            struct engine_buf *xs = gbuf(xv, n, 0), *ys = gbuf(yv, n, 0), *os = gbuf(NULL, n, 0);
            OK(G->add(gbe, xs, ys, dim, E));
            OK(G->rmsnorm(gbe, xs, w.g, dim, 1e-5f, os, E));
            /* fused, out apart (poisoned with NaN: every element must be written) */
            struct engine_buf *xf = gbuf(xv, n, 0), *yf = gbuf(yv, n, 0);
            struct engine_buf *of = gbuf(NULL, n, NAN);
            OK(G->add_rmsnorm(gbe, xf, yf, w.g, dim, 1e-5f, of, E));
            assert_gpu_equal(xf, xs, n);
            assert_gpu_equal(of, os, n);
            assert_gpu_equal(yf, ys, n); /* y untouched */
            /* fused, out = y */
            OK(G->buf_write(gbe, xf, 0, xv, n, E));
            OK(G->add_rmsnorm(gbe, xf, yf, w.g, dim, 1e-5f, yf, E));
            assert_gpu_equal(xf, xs, n);
            assert_gpu_equal(yf, os, n);
            G->buf_free(gbe, xs), G->buf_free(gbe, ys), G->buf_free(gbe, os);
            G->buf_free(gbe, xf), G->buf_free(gbe, yf), G->buf_free(gbe, of);
            wfree(w);
            free(xv), free(yv), free(wv);
        }
    /* x aliasing out is refused */
    struct ny_err e;
    ny_err_init(&e);
    float wv1[70];
    for (int i = 0; i < 70; i++)
        wv1[i] = 1.0f;
    struct wpair w = weight(ENGINE_DTYPE_F32, wv1, 1, 70);
    struct engine_buf *x = gbuf(NULL, (size_t)nr * 70, 1.0f);
    struct engine_buf *y = gbuf(NULL, (size_t)nr * 70, 1.0f);
    assert_int_equal(G->add_rmsnorm(gbe, x, y, w.g, 70, 1e-5f, x, &e), NY_E_INVALID);
    assert_true(e.msg[0] != '\0');
    G->buf_free(gbe, x), G->buf_free(gbe, y);
    wfree(w);
}

/* swiglu_matmul against swiglu then matmul on a copy of gate, ff -> out (down-like): y
 * bit-identical, up untouched, and gate's rows of one-row requests bit-identical to swiglu's.
 * One step of prefill units (37 and 5 rows) and 70+ decode rows, two adapters and base requests;
 * decode: 80 decode rows alone (the SwiGLU also writes the bf16 shadow of gate, which the staged
 * launches read; 2: all of adapter 0). wf32 / lf32: the weight / its LoRA matrices fp32 (else
 * bf16). */
static void run_swiglu_matmul(int ff, int wf32, int lf32, int decode)
{
    int out = 264, R = 16, rows[80], ad[80];
    for (int i = 0; i < 80; i++)
        rows[i] = i % 9 == 0 && !decode ? 5 : 1, ad[i] = decode == 2 ? 0 : (i + i / 9) % 3 - 1;
    rows[0] = decode ? 1 : 37;
    struct tbatch t;
    make_batch(&t, 80, rows, NULL, ad);
    OK(G->step_begin(gbe, &t.b, E));
    int nr = t.b.n_rows;
    size_t ng = (size_t)nr * ff, ny = (size_t)nr * out;
    float *gv = rand_vec(ng, 3.0f), *uv = rand_vec(ng, 2.0f);
    float *wv = rand_vec((size_t)out * ff, 0.05f);
    struct wpair w = weight(wf32 ? ENGINE_DTYPE_F32 : ENGINE_DTYPE_BF16, wv, out, ff), la[2], lb[2];
    struct engine_lora_term lt[2];
    for (int a = 0; a < 2; a++) {
        float *av = rand_vec((size_t)R * ff, 0.05f), *bv = rand_vec((size_t)out * R, 0.05f);
        enum engine_dtype d = lf32 ? ENGINE_DTYPE_F32 : ENGINE_DTYPE_BF16;
        la[a] = weight(d, av, R, ff);
        lb[a] = weight(d, bv, out, R);
        lt[a] = (struct engine_lora_term){la[a].g, lb[a].g, R, 0.5f + 1.5f * a};
        free(av), free(bv);
    }
    /* separate calls: gs = swiglu(gs, us); ys = gs · Wᵀ (+ LoRA) */
    struct engine_buf *gs = gbuf(gv, ng, 0), *us = gbuf(uv, ng, 0), *ys = gbuf(NULL, ny, 0);
    OK(G->swiglu(gbe, gs, us, ff, gs, E));
    OK(G->matmul(gbe, gs, ff, w.g, out, lt, 2, NULL, 0, ys, E));
    /* fused, y poisoned with NaN: every element must be written */
    struct engine_buf *gf = gbuf(gv, ng, 0), *uf = gbuf(uv, ng, 0), *yf = gbuf(NULL, ny, NAN);
    OK(G->swiglu_matmul(gbe, gf, uf, ff, w.g, out, lt, 2, yf, E));
    assert_gpu_equal(yf, ys, ny);
    assert_gpu_equal(uf, us, ng);
    float *a = malloc(ng * 4), *b = malloc(ng * 4);
    assert_non_null(a);
    assert_non_null(b);
    OK(G->buf_read(gbe, gf, 0, a, ng, E));
    OK(G->buf_read(gbe, gs, 0, b, ng, E));
    for (int s = 0; s < 80; s++)
        if (rows[s] == 1)
            assert_memory_equal(a + (size_t)t.start[s] * ff, b + (size_t)t.start[s] * ff,
                                (size_t)ff * 4);
    free(a), free(b);
    G->buf_free(gbe, gs), G->buf_free(gbe, us), G->buf_free(gbe, ys);
    G->buf_free(gbe, gf), G->buf_free(gbe, uf), G->buf_free(gbe, yf);
    wfree(w);
    for (int q = 0; q < 2; q++)
        wfree(la[q]), wfree(lb[q]);
    free(gv), free(uv), free(wv);
}

static void test_swiglu_matmul(void **state)
{
    (void)state;
    assert_non_null(G->swiglu_matmul);
    run_swiglu_matmul(1024, 0, 0, 0);
    run_swiglu_matmul(136, 0, 0, 0);
    run_swiglu_matmul(5120, 0, 0, 0); /* the units' LoRA A by split-K */
    run_swiglu_matmul(130, 0, 0, 0);  /* in % 8 != 0: no unit path, all rows through swiglu */
    run_swiglu_matmul(1024, 0, 1, 0); /* fp32 LoRA A of a unit reads the fp32 gate rows */
    run_swiglu_matmul(1024, 1, 1, 0); /* fp32 weight */
    run_swiglu_matmul(1024, 0, 0, 1); /* decode rows alone: through the shadow of gate */
    run_swiglu_matmul(1024, 0, 0, 2); /* one adapter on every row: its A products read it too */
    run_swiglu_matmul(1024, 0, 1, 1); /* fp32 LoRA A: the generic kernel reads the fp32 rows */
    run_swiglu_matmul(130, 0, 0, 1);  /* in % 8 != 0: the generic kernel, no shadow read */
    /* y aliasing gate or up is refused */
    int rows[2] = {3, 1};
    struct tbatch t;
    make_batch(&t, 2, rows, NULL, NULL);
    OK(G->step_begin(gbe, &t.b, E));
    float *wv = rand_vec(64 * 64, 0.1f);
    struct wpair w = weight(ENGINE_DTYPE_BF16, wv, 64, 64);
    struct engine_buf *g = gbuf(NULL, 4 * 64, 1.0f), *u = gbuf(NULL, 4 * 64, 1.0f);
    struct ny_err e;
    ny_err_init(&e);
    assert_int_equal(G->swiglu_matmul(gbe, g, u, 64, w.g, 64, NULL, 0, g, &e), NY_E_INVALID);
    assert_true(e.msg[0] != '\0');
    ny_err_init(&e);
    assert_int_equal(G->swiglu_matmul(gbe, g, u, 64, w.g, 64, NULL, 0, u, &e), NY_E_INVALID);
    G->buf_free(gbe, g), G->buf_free(gbe, u);
    wfree(w);
    free(wv);
}

/* The mlp op against matmul_multi(gate, up) then swiglu_matmul on the GPU and against the CPU's
 * matmuls and swiglu: rows of decode requests and of base prefill requests bit-identical to the
 * two calls', prefill rows with an adapter (their gate and up LoRA terms added where the swiglu
 * reads them) within 1e-3 of them, every row within the bf16 tolerance of the CPU. Prefill units
 * of 37 and 5 rows, decode rows, two adapters (ranks r0, r1; unequal ranks take the two calls)
 * and base requests. */
static void run_mlp(int K, int ff, int r0, int r1)
{
    int out = 264, rows[40], ad[40], rk[2] = {r0, r1};
    for (int i = 0; i < 40; i++)
        rows[i] = i % 9 == 0 ? 5 : 1, ad[i] = (i + i / 9) % 3 - 1;
    rows[0] = 37;
    struct tbatch t;
    make_batch(&t, 40, rows, NULL, ad);
    both_step(&t);
    int nr = t.b.n_rows;
    float *xv = rand_vec((size_t)nr * K, 1.0f);
    struct wpair w[3], la[3][2], lb[3][2];
    struct engine_lora_term lg[3][2], lc[3][2];
    const int wo[3] = {ff, ff, out}, wi[3] = {K, K, ff};
    for (int p = 0; p < 3; p++) {
        float *wv = rand_vec((size_t)wo[p] * wi[p], 0.05f);
        w[p] = weight(ENGINE_DTYPE_BF16, wv, wo[p], wi[p]);
        free(wv);
        for (int a = 0; a < 2; a++) {
            float *av = rand_vec((size_t)rk[a] * wi[p], 0.05f);
            float *bv = rand_vec((size_t)wo[p] * rk[a], 0.05f);
            la[p][a] = weight(ENGINE_DTYPE_BF16, av, rk[a], wi[p]);
            lb[p][a] = weight(ENGINE_DTYPE_BF16, bv, wo[p], rk[a]);
            lg[p][a] = (struct engine_lora_term){la[p][a].g, lb[p][a].g, rk[a], 0.5f + p + a};
            lc[p][a] = (struct engine_lora_term){la[p][a].c, lb[p][a].c, rk[a], 0.5f + p + a};
            free(av), free(bv);
        }
    }
    struct wpair x = act(xv, (size_t)nr * K), g = act(NULL, (size_t)nr * ff);
    struct wpair u = act(NULL, (size_t)nr * ff), y = act(NULL, (size_t)nr * out);
    /* the two calls on the GPU into gs, us, ys */
    struct engine_buf *gs = gbuf(NULL, (size_t)nr * ff, 0), *us = gbuf(NULL, (size_t)nr * ff, 0);
    struct engine_buf *ys = gbuf(NULL, (size_t)nr * out, 0);
    struct engine_matmul_part ps[2] = {{w[0].g, ff, lg[0], gs}, {w[1].g, ff, lg[1], us}};
    OK(G->matmul_multi(gbe, x.g, K, ps, 2, 2, E));
    OK(G->swiglu_matmul(gbe, gs, us, ff, w[2].g, out, lg[2], 2, ys, E));
    /* the op, y poisoned with NaN: every element must be written */
    struct engine_buf *yf = gbuf(NULL, (size_t)nr * out, NAN);
    struct engine_matmul_part pf[2] = {{w[0].g, ff, lg[0], g.g}, {w[1].g, ff, lg[1], u.g}};
    OK(G->mlp(gbe, x.g, K, pf, 2, ff, w[2].g, out, lg[2], yf, E));
    /* the CPU: gate, up, swiglu, down */
    OK(C->matmul(cbe, x.c, K, w[0].c, ff, lc[0], 2, NULL, 0, g.c, E));
    OK(C->matmul(cbe, x.c, K, w[1].c, ff, lc[1], 2, NULL, 0, u.c, E));
    OK(C->swiglu(cbe, g.c, u.c, ff, g.c, E));
    OK(C->matmul(cbe, g.c, ff, w[2].c, out, lc[2], 2, NULL, 0, y.c, E));
    size_t ny = (size_t)nr * out;
    float *a = malloc(ny * 4), *b = malloc(ny * 4), *c = malloc(ny * 4);
    assert_non_null(a);
    assert_non_null(b);
    assert_non_null(c);
    OK(G->buf_read(gbe, yf, 0, a, ny, E));
    OK(G->buf_read(gbe, ys, 0, b, ny, E));
    OK(C->buf_read(cbe, y.c, 0, c, ny, E));
    double worst = 0;
    for (int s = 0; s < 40; s++) {
        size_t o = (size_t)t.start[s] * out, n = (size_t)rows[s] * out;
        if (rows[s] == 1 || ad[s] < 0 || r0 != r1) {
            assert_memory_equal(a + o, b + o, n * 4);
        } else {
            double r = rel_err(a + o, b + o, n);
            worst = r > worst ? r : worst;
            assert_true(r < 1e-3);
        }
        assert_true(rel_err(a + o, c + o, n) < 1e-2);
    }
    print_message("mlp %d -> %d -> %d, ranks %d/%d: prefill rows with an adapter within %.2e of "
                  "the two calls\n", K, ff, out, r0, r1, worst);
    free(a), free(b), free(c);
    G->buf_free(gbe, gs), G->buf_free(gbe, us), G->buf_free(gbe, ys), G->buf_free(gbe, yf);
    wfree(x), wfree(g), wfree(u), wfree(y);
    for (int p = 0; p < 3; p++) {
        wfree(w[p]);
        for (int q = 0; q < 2; q++)
            wfree(la[p][q]), wfree(lb[p][q]);
    }
    free(xv);
}

static void test_mlp(void **state)
{
    (void)state;
    assert_non_null(G->mlp);
    run_mlp(512, 1024, 64, 64);
    run_mlp(5120, 136, 16, 16); /* the units' LoRA A by split-K; ff not a multiple of 64 */
    run_mlp(512, 1024, 16, 32); /* unequal ranks: the two calls */
}

/* y = h·Wᵀ on the GPU into y (allocated beforehand: a buffer write would drop the shadow);
 * returns its n = rows·N floats (caller frees). */
static float *gpu_product(struct engine_buf *h, int K, struct engine_buf *w, int N, int nr,
                          struct engine_buf *y)
{
    float *v = malloc((size_t)nr * N * 4);
    assert_non_null(v);
    OK(G->matmul(gbe, h, K, w, N, NULL, 0, NULL, 0, y, E));
    OK(G->buf_read(gbe, y, 0, v, (size_t)nr * N, E));
    return v;
}

/* The bf16 shadow of a norm's output (the staged GEMM input of a step's prefill units, and of a
 * decode step's skinny launches of 32+ rows): a matmul reading the norm's output gives the bits
 * of one reading a copy of it; after the output is rewritten (a buffer write, a matmul writing
 * it), the next matmul reads the new values. A step of the requests rows[0..n). */
static void run_norm_shadow(const int *rows, int n_req)
{
    int K = 1024, N = 264;
    struct tbatch t;
    make_batch(&t, n_req, rows, NULL, NULL);
    OK(G->step_begin(gbe, &t.b, E));
    int nr = t.b.n_rows;
    size_t n = (size_t)nr * K;
    float *xv = rand_vec(n, 2.0f), *yv = rand_vec(n, 1.0f), *nv = rand_vec((size_t)K, 1.0f);
    float *wv = rand_vec((size_t)N * K, 0.05f), *hv = malloc(n * 4);
    assert_non_null(hv);
    struct wpair wn = weight(ENGINE_DTYPE_BF16, nv, 1, K), w = weight(ENGINE_DTYPE_BF16, wv, N, K);
    struct engine_buf *x = gbuf(xv, n, 0), *y = gbuf(yv, n, 0), *h = gbuf(NULL, n, 0);
    struct engine_buf *hc = gbuf(NULL, n, 0), *ya = gbuf(NULL, (size_t)nr * N, NAN);
    struct engine_buf *yb = gbuf(NULL, (size_t)nr * N, NAN);
    for (int add = 0; add < 2; add++) {
        if (add)
            OK(G->add_rmsnorm(gbe, x, y, wn.g, K, 1e-5f, h, E));
        else
            OK(G->rmsnorm(gbe, x, wn.g, K, 1e-5f, h, E));
        float *a = gpu_product(h, K, w.g, N, nr, ya); /* through the shadow */
        OK(G->buf_read(gbe, h, 0, hv, n, E));
        OK(G->buf_write(gbe, hc, 0, hv, n, E));
        float *b = gpu_product(hc, K, w.g, N, nr, yb);
        assert_memory_equal(a, b, (size_t)nr * N * 4);
        free(a), free(b);
    }
    /* rewritten by a buffer write: the new values */
    OK(G->buf_write(gbe, hc, 0, yv, n, E));
    OK(G->rmsnorm(gbe, x, wn.g, K, 1e-5f, h, E));
    OK(G->buf_write(gbe, h, 0, yv, n, E));
    float *a = gpu_product(h, K, w.g, N, nr, ya), *b = gpu_product(hc, K, w.g, N, nr, yb);
    assert_memory_equal(a, b, (size_t)nr * N * 4);
    free(a), free(b);
    /* rewritten by a matmul (K x K weight): the new values */
    float *sv = rand_vec((size_t)K * K, 0.05f);
    struct wpair sq = weight(ENGINE_DTYPE_BF16, sv, K, K);
    OK(G->rmsnorm(gbe, x, wn.g, K, 1e-5f, h, E));
    OK(G->matmul(gbe, y, K, sq.g, K, NULL, 0, NULL, 0, h, E));
    a = gpu_product(h, K, w.g, N, nr, ya); /* before any buffer write */
    OK(G->buf_read(gbe, h, 0, hv, n, E));
    OK(G->buf_write(gbe, hc, 0, hv, n, E));
    b = gpu_product(hc, K, w.g, N, nr, yb);
    assert_memory_equal(a, b, (size_t)nr * N * 4);
    free(a), free(b);
    G->buf_free(gbe, x), G->buf_free(gbe, y), G->buf_free(gbe, h), G->buf_free(gbe, hc);
    G->buf_free(gbe, ya), G->buf_free(gbe, yb);
    wfree(wn), wfree(w), wfree(sq);
    free(xv), free(yv), free(nv), free(wv), free(hv), free(sv);
}

static void test_norm_shadow(void **state)
{
    (void)state;
    int rows[40] = {37, 1, 5};
    run_norm_shadow(rows, 3); /* prefill units and a decode row */
    for (int i = 0; i < 40; i++)
        rows[i] = 1;
    run_norm_shadow(rows, 40); /* decode rows alone: the skinny launches stage X */
}

/* rope_qk gives q and k bit-identical to one rope call each (head_dim 128 with 32/8 heads, 64
 * with 16/2; rows at nonzero positions), and matches the CPU. */
static void test_rope_qk(void **state)
{
    (void)state;
    assert_non_null(G->rope_qk);
    int shapes[2][3] = {{128, 32, 8}, {64, 16, 2}};
    int rows[4] = {4, 1, 1, 3}, pos0[4] = {0, 17, 300, 9};
    struct tbatch t;
    make_batch(&t, 4, rows, pos0, NULL);
    both_step(&t);
    int nr = t.b.n_rows;
    for (int si = 0; si < 2; si++) {
        int hd = shapes[si][0], nq = shapes[si][1], nk = shapes[si][2];
        float inv[64];
        for (int i = 0; i < hd / 2; i++)
            inv[i] = powf(500000.0f, -2.0f * (float)i / (float)hd);
        size_t qn = (size_t)nr * nq * hd, kn = (size_t)nr * nk * hd;
        float *qv = rand_vec(qn, 2.0f), *kv = rand_vec(kn, 2.0f);
        struct engine_buf *qs = gbuf(qv, qn, 0), *ks = gbuf(kv, kn, 0);
        struct engine_buf *qf = gbuf(qv, qn, 0), *kf = gbuf(kv, kn, 0);
        OK(G->rope(gbe, qs, nq, hd, inv, 1.0f, E));
        OK(G->rope(gbe, ks, nk, hd, inv, 1.0f, E));
        OK(G->rope_qk(gbe, qf, nq, kf, nk, hd, inv, 1.0f, E));
        assert_gpu_equal(qf, qs, qn);
        assert_gpu_equal(kf, ks, kn);
        struct wpair kc = {kf, NULL}; /* k against the CPU's rope */
        OK(C->buf_alloc(cbe, kn, &kc.c, E));
        OK(C->buf_write(cbe, kc.c, 0, kv, kn, E));
        OK(C->rope(cbe, kc.c, nk, hd, inv, 1.0f, E));
        assert_true(compare(kc, kn) < 1e-6);
        C->buf_free(cbe, kc.c);
        G->buf_free(gbe, qs), G->buf_free(gbe, ks), G->buf_free(gbe, qf), G->buf_free(gbe, kf);
        free(qv), free(kv);
    }
}

/* The o projection of attention output o (n rows of width K) right after the attention op (the
 * flash kernel's bf16 shadow feeds the prefill units' staging) is bit-identical to that of a
 * copy of o. */
static void check_att_shadow(struct engine_buf *o, int n, int K)
{
    const int N = 72;
    size_t no = (size_t)n * K, ny = (size_t)n * N;
    float *wv = rand_vec((size_t)N * K, 0.05f), *ov = malloc(no * 4);
    float *a = malloc(ny * 4), *b = malloc(ny * 4);
    assert_non_null(ov);
    assert_non_null(a);
    assert_non_null(b);
    struct engine_buf *w, *ya, *yb, *oc;
    uint16_t *wb = to_bf16(wv, (size_t)N * K);
    OK(G->weight_upload(gbe, ENGINE_DTYPE_BF16, wb, N, K, &w, E));
    OK(G->buf_alloc(gbe, ny, &ya, E));
    OK(G->buf_alloc(gbe, ny, &yb, E));
    OK(G->buf_alloc(gbe, no, &oc, E));
    OK(G->matmul(gbe, o, K, w, N, NULL, 0, NULL, 0, ya, E)); /* first: through the shadow */
    OK(G->buf_read(gbe, o, 0, ov, no, E));
    OK(G->buf_write(gbe, oc, 0, ov, no, E));
    OK(G->matmul(gbe, oc, K, w, N, NULL, 0, NULL, 0, yb, E));
    OK(G->buf_read(gbe, ya, 0, a, ny, E));
    OK(G->buf_read(gbe, yb, 0, b, ny, E));
    assert_memory_equal(a, b, ny * 4);
    G->buf_free(gbe, w), G->buf_free(gbe, ya), G->buf_free(gbe, yb), G->buf_free(gbe, oc);
    free(wv), free(ov), free(a), free(b), free(wb);
}

/* Attention: prefill of two requests, then a decode step of three, against the CPU. */
static void run_attention(int nh, int nkv, int hd, int plen, enum engine_dtype dt)
{
    struct engine_kv_shape sh = {2, nkv, hd, 3, plen + 8};
    struct engine_kv *kg, *kc;
    /* the GPU picks its KV dtype from the weights it holds: upload one of dtype dt first */
    float one = 1.0f;
    struct wpair dummy = weight(dt, &one, 1, 1);
    OK(G->kv_create(gbe, &sh, &kg, E));
    OK(C->kv_create(cbe, &sh, &kc, E));
    int rows1[3] = {plen, 3, 1};
    int rows2[3] = {1, 1, 1}, pos2[3] = {plen, 3, 1};
    int rows3[3] = {5, 1, 2}, pos3[3] = {plen + 1, 4, 2}; /* a chunk continuing a prefill */
    for (int step = 0; step < 3; step++) {
        struct tbatch t;
        make_batch(&t, 3, step == 0 ? rows1 : step == 1 ? rows2 : rows3,
                   step == 0 ? NULL : step == 1 ? pos2 : pos3, NULL);
        both_step(&t);
        int nr = t.b.n_rows;
        for (int layer = 0; layer < 2; layer++) {
            float *qv = rand_vec((size_t)nr * nh * hd, 1.0f);
            float *kv = rand_vec((size_t)nr * nkv * hd, 1.0f);
            float *vv = rand_vec((size_t)nr * nkv * hd, 1.0f);
            struct wpair q = act(qv, (size_t)nr * nh * hd), k = act(kv, (size_t)nr * nkv * hd);
            struct wpair v = act(vv, (size_t)nr * nkv * hd), o = act(NULL, (size_t)nr * nh * hd);
            float sc = 1.0f / sqrtf((float)hd);
            OK(G->attention(gbe, kg, layer, q.g, k.g, v.g, nh, sc, o.g, E));
            if (layer == 0)
                check_att_shadow(o.g, nr, nh * hd);
            OK(C->attention(cbe, kc, layer, q.c, k.c, v.c, nh, sc, o.c, E));
            double r = compare(o, (size_t)nr * nh * hd);
            /* the output's bits, to compare two builds of the kernels (same inputs: the test
             * order and seeds are fixed) */
            print_message("attention %d/%d heads x %d, %d tokens, step %d layer %d: %.2e "
                          "(GPU bits %016llx)\n", nh, nkv, hd, plen, step, layer, r,
                          (unsigned long long)gpu_fnv(o.g, (size_t)nr * nh * hd));
            assert_true(r < (dt == ENGINE_DTYPE_BF16 ? 1e-2 : 1e-5));
            wfree(q), wfree(k), wfree(v), wfree(o);
            free(qv), free(kv), free(vv);
        }
    }
    G->kv_destroy(gbe, kg);
    C->kv_destroy(cbe, kc);
    wfree(dummy);
}

static void test_attention(void **state)
{
    (void)state;
    run_attention(4, 2, 16, 9, ENGINE_DTYPE_F32);
    run_attention(32, 8, 128, 600, ENGINE_DTYPE_F32);
    /* bf16 cache: prefill rows on the flash kernel, decode rows' splits on the tensor cores
     * (head_dim 64 and 128, groups of 8 and 16 q heads) or the fp32 kernel (groups of 4, head_dim
     * 16) */
    run_attention(32, 8, 128, 600, ENGINE_DTYPE_BF16);
    run_attention(8, 1, 64, 130, ENGINE_DTYPE_BF16);
    run_attention(16, 1, 128, 70, ENGINE_DTYPE_BF16);
    run_attention(4, 2, 16, 9, ENGINE_DTYPE_BF16);
}

/* Request A (prefill of 7 rows, then one decode row) with adapter 0 and request B (decode, base)
 * give bit-identical matmul rows alone and inside batches of other requests, at other offsets. */
static void inv_matmul_once(int K, int N, int pos_a, const int *rows, const int *ad, int n,
                            const float *xa, const float *xb, struct engine_buf *w,
                            const struct engine_lora_term *l, int n_lora, float *ya, float *yb)
{
    struct tbatch t;
    make_batch(&t, n, rows, NULL, ad);
    OK(G->step_begin(gbe, &t.b, E));
    int nr = t.b.n_rows;
    float *x = rand_vec((size_t)nr * K, 1.0f); /* the other requests: random rows */
    /* request 0 of rows[] sizes is "a" at index pos_a; the last request is "b" when rows of b
     * (1) are given after a */
    memcpy(x + (size_t)t.start[pos_a] * K, xa, (size_t)rows[pos_a] * K * 4);
    memcpy(x + (size_t)t.start[n - 1] * K, xb, (size_t)K * 4);
    struct engine_buf *xg, *yg;
    OK(G->buf_alloc(gbe, (size_t)nr * K, &xg, E));
    OK(G->buf_alloc(gbe, (size_t)nr * N, &yg, E));
    OK(G->buf_write(gbe, xg, 0, x, (size_t)nr * K, E));
    OK(G->matmul(gbe, xg, K, w, N, l, n_lora, NULL, 0, yg, E));
    OK(G->buf_read(gbe, yg, (size_t)t.start[pos_a] * N, ya, (size_t)rows[pos_a] * N, E));
    OK(G->buf_read(gbe, yg, (size_t)t.start[n - 1] * N, yb, (size_t)N, E));
    G->buf_free(gbe, xg);
    G->buf_free(gbe, yg);
    free(x);
}

/* Request b (the last, one decode row) has adapter adb (-1: the base); the other requests take
 * adapters -1, 0 and 1 (two adapters of ranks 16 and 8); N output columns. */
static void run_matmul_invariance(int K, int adb, int N)
{
    int R = 16, R2 = 8;
    float *wv = rand_vec((size_t)N * K, 0.05f), *av = rand_vec((size_t)R * K, 0.05f);
    float *bv = rand_vec((size_t)N * R, 0.05f), *av2 = rand_vec((size_t)R2 * K, 0.05f);
    float *bv2 = rand_vec((size_t)N * R2, 0.05f);
    struct wpair w = weight(ENGINE_DTYPE_BF16, wv, N, K), la = weight(ENGINE_DTYPE_BF16, av, R, K);
    struct wpair lb = weight(ENGINE_DTYPE_BF16, bv, N, R);
    struct wpair la2 = weight(ENGINE_DTYPE_BF16, av2, R2, K);
    struct wpair lb2 = weight(ENGINE_DTYPE_BF16, bv2, N, R2);
    struct engine_lora_term l[2] = {{la.g, lb.g, R, 2.0f}, {la2.g, lb2.g, R2, 0.5f}};
    float *xa = rand_vec(7 * (size_t)K, 1.0f), *xb = rand_vec((size_t)K, 1.0f);
    float *ya0 = malloc(7 * (size_t)N * 4), *yb0 = malloc((size_t)N * 4);
    float *ya = malloc(7 * (size_t)N * 4), *yb = malloc((size_t)N * 4);
    int r0[2] = {7, 1}, a0[2] = {0, adb};
    inv_matmul_once(K, N, 0, r0, a0, 2, xa, xb, w.g, l, 2, ya0, yb0);
    /* b alone, then beside one other decode row (the steps of batch-1 and batch-2 decode, their
     * launches under programmatic dependent launch): still identical */
    int r1[2] = {1, 1}, a1[2] = {0, adb};
    inv_matmul_once(K, N, 0, r1 + 1, a1 + 1, 1, xb, xb, w.g, l, 2, yb, yb);
    assert_memory_equal(yb, yb0, (size_t)N * 4);
    memset(yb, 0, (size_t)N * 4);
    inv_matmul_once(K, N, 0, r1, a1, 2, xa, xb, w.g, l, 2, ya, yb);
    assert_memory_equal(yb, yb0, (size_t)N * 4);
    /* inside larger batches: other prefills and decode rows before and after, other adapters */
    for (int trial = 0; trial < 4; trial++) {
        int rows[40], ad[40], n = 3 + 9 * trial, pos_a = 1 + trial * 3;
        for (int i = 0; i < n; i++) {
            rows[i] = (i % 3 == 0) ? 2 + i % 5 : 1;
            ad[i] = i % 3 - 1;
        }
        rows[pos_a] = 7;
        ad[pos_a] = 0;
        rows[n - 1] = 1;
        ad[n - 1] = adb;
        inv_matmul_once(K, N, pos_a, rows, ad, n, xa, xb, w.g, l, 2, ya, yb);
        assert_memory_equal(ya, ya0, 7 * (size_t)N * 4);
        assert_memory_equal(yb, yb0, (size_t)N * 4);
    }
    /* 15 to 64 decode rows (one pass of 1 to 4 row tiles; X staged in bf16 from 17 rows on for
     * fewer than 4,096 columns, from 32 for more, from 16 under NY_SKINNY_XB_ROWS=16): row b
     * identical to its step of 1 decode row (not staged) */
    int rows[71], ad[71];
    const int nds[] = {15, 16, 17, 32, 33, 40, 64};
    for (size_t k = 0; k < sizeof nds / sizeof nds[0]; k++) {
        for (int i = 0; i <= nds[k]; i++)
            rows[i] = 1, ad[i] = i % 3 - 1;
        rows[0] = 7;
        ad[0] = 0;
        ad[nds[k]] = adb;
        inv_matmul_once(K, N, 0, rows, ad, nds[k] + 1, xa, xb, w.g, l, 2, ya, yb);
        assert_memory_equal(ya, ya0, 7 * (size_t)N * 4);
        assert_memory_equal(yb, yb0, (size_t)N * 4);
    }
    /* 70 decode rows in one step (two skinny passes): row b still identical */
    for (int i = 0; i < 71; i++)
        rows[i] = 1, ad[i] = i % 3 - 1;
    rows[0] = 7;
    ad[0] = 0;
    ad[70] = adb;
    inv_matmul_once(K, N, 0, rows, ad, 71, xa, xb, w.g, l, 2, ya, yb);
    assert_memory_equal(ya, ya0, 7 * (size_t)N * 4);
    assert_memory_equal(yb, yb0, (size_t)N * 4);
    /* every row with adapter adb (one group covering all rows) */
    for (int i = 0; i < 71; i++)
        ad[i] = i ? adb : 0;
    inv_matmul_once(K, N, 0, rows, ad, 71, xa, xb, w.g, l, 2, ya, yb);
    assert_memory_equal(ya, ya0, 7 * (size_t)N * 4);
    assert_memory_equal(yb, yb0, (size_t)N * 4);
    wfree(w), wfree(la), wfree(lb), wfree(la2), wfree(lb2);
    free(wv), free(av), free(bv), free(av2), free(bv2), free(xa), free(xb), free(ya0), free(yb0);
    free(ya), free(yb);
}

/* Decode rows' LoRA A products ride in the base product's launch, over each adapter's rows:
 * K 1024 and K 4096 (the prefill units' LoRA A takes split-K from K 4096 on), K 1000, and
 * 4,104 columns. */
static void test_matmul_invariance(void **state)
{
    (void)state;
    run_matmul_invariance(1024, 0, 1002);
    run_matmul_invariance(4096, 1, 1002);
    run_matmul_invariance(4096, -1, 1002);
    run_matmul_invariance(1000, 0, 1002); /* K not a multiple of 32: zeros past K */
    run_matmul_invariance(2048, 1, 4104); /* wide enough for 2 and 4 column tiles a block */
}

/* Attention of request A (prefill 300 rows, then decode) is bit-identical whether it runs alone
 * in slot 0 or in slot 2 beside two other requests. */
static void run_attention_invariance(int nh, int nkv, int hd, int L)
{
    float one = 1.0f;
    struct wpair dummy = weight(ENGINE_DTYPE_BF16, &one, 1, 1); /* bf16 KV */
    size_t qa = (size_t)(L + 1) * nh * hd, ka = (size_t)(L + 1) * nkv * hd;
    float *q = rand_vec(qa, 1.0f), *k = rand_vec(ka, 1.0f), *v = rand_vec(ka, 1.0f);
    float *out[2];
    for (int mode = 0; mode < 2; mode++) {
        struct engine_kv_shape sh = {1, nkv, hd, 3, L + 4};
        struct engine_kv *kv;
        OK(G->kv_create(gbe, &sh, &kv, E));
        out[mode] = malloc(qa * 4);
        for (int step = 0; step < 2; step++) {
            int nself = step ? 1 : L, n = mode ? 3 : 1, rows[3], pos0[3];
            int self = mode ? 2 : 0;
            for (int i = 0; i < n; i++)
                rows[i] = step ? 1 : 5 + i, pos0[i] = step ? 5 + i : 0;
            rows[self] = nself;
            pos0[self] = step ? L : 0;
            struct tbatch t;
            make_batch(&t, n, rows, pos0, NULL);
            if (mode) { /* other slots */
                t.slot[0] = 1, t.slot[1] = 0, t.slot[2] = 2;
            }
            OK(G->step_begin(gbe, &t.b, E));
            int nr = t.b.n_rows, r0 = t.start[self];
            float *bq = rand_vec((size_t)nr * nh * hd, 1.0f);
            float *bk = rand_vec((size_t)nr * nkv * hd, 1.0f);
            float *bvv = rand_vec((size_t)nr * nkv * hd, 1.0f);
            size_t off = step ? (size_t)L : 0;
            memcpy(bq + (size_t)r0 * nh * hd, q + off * nh * hd, (size_t)nself * nh * hd * 4);
            memcpy(bk + (size_t)r0 * nkv * hd, k + off * nkv * hd, (size_t)nself * nkv * hd * 4);
            memcpy(bvv + (size_t)r0 * nkv * hd, v + off * nkv * hd, (size_t)nself * nkv * hd * 4);
            struct engine_buf *gq, *gk, *gv, *go;
            OK(G->buf_alloc(gbe, (size_t)nr * nh * hd, &gq, E));
            OK(G->buf_alloc(gbe, (size_t)nr * nkv * hd, &gk, E));
            OK(G->buf_alloc(gbe, (size_t)nr * nkv * hd, &gv, E));
            OK(G->buf_alloc(gbe, (size_t)nr * nh * hd, &go, E));
            OK(G->buf_write(gbe, gq, 0, bq, (size_t)nr * nh * hd, E));
            OK(G->buf_write(gbe, gk, 0, bk, (size_t)nr * nkv * hd, E));
            OK(G->buf_write(gbe, gv, 0, bvv, (size_t)nr * nkv * hd, E));
            OK(G->attention(gbe, kv, 0, gq, gk, gv, nh, 0.125f, go, E));
            OK(G->buf_read(gbe, go, (size_t)r0 * nh * hd, out[mode] + off * nh * hd,
                           (size_t)nself * nh * hd, E));
            G->buf_free(gbe, gq), G->buf_free(gbe, gk), G->buf_free(gbe, gv);
            G->buf_free(gbe, go);
            free(bq), free(bk), free(bvv);
        }
        G->kv_destroy(gbe, kv);
    }
    assert_memory_equal(out[0], out[1], qa * 4);
    free(out[0]), free(out[1]), free(q), free(k), free(v);
    wfree(dummy);
}

/* groups of 4 q heads (the fp32 split kernel) and of 8 (its tensor-core version) */
static void test_attention_invariance(void **state)
{
    (void)state;
    run_attention_invariance(8, 2, 64, 300);
    run_attention_invariance(16, 2, 64, 300);
}

/* Bad shapes, ids, slots and positions are errors with a message, before any launch. */
static void expect_err(int rc, int code, const struct ny_err *e, const char *what)
{
    if (rc != code)
        fail_msg("%s: got %d, expected %d", what, rc, code);
    assert_true(e->msg[0] != '\0');
}

/* A step of more rows than a grid's y size holds (65,535): embed, the generic (fp32) and the
 * prefill-unit (bf16, staged) matmul paths against the CPU. */
static void test_many_rows(void **state)
{
    (void)state;
    int rows[2] = {70000, 1}, K = 16, N = 8;
    struct tbatch t;
    make_batch(&t, 2, rows, NULL, NULL);
    both_step(&t);
    int nr = t.b.n_rows;
    int32_t *ids = malloc((size_t)nr * sizeof *ids);
    assert_non_null(ids);
    for (int i = 0; i < nr; i++)
        ids[i] = (int32_t)((i * 7919u) % 50u);
    float *tab = rand_vec(50 * (size_t)K, 1.0f), *wv = rand_vec((size_t)N * K, 0.5f);
    for (int dt = 0; dt < 2; dt++) {
        enum engine_dtype d = dt ? ENGINE_DTYPE_BF16 : ENGINE_DTYPE_F32;
        struct wpair e = weight(d, tab, 50, K), w = weight(d, wv, N, K);
        struct wpair x = act(NULL, (size_t)nr * K), y = act(NULL, (size_t)nr * N);
        OK(G->embed(gbe, e.g, ids, K, x.g, E));
        OK(C->embed(cbe, e.c, ids, K, x.c, E));
        assert_true(compare(x, (size_t)nr * K) == 0.0);
        OK(G->matmul(gbe, x.g, K, w.g, N, NULL, 0, NULL, 0, y.g, E));
        OK(C->matmul(cbe, x.c, K, w.c, N, NULL, 0, NULL, 0, y.c, E));
        assert_true(compare(y, (size_t)nr * N) < (dt ? 1e-2 : 1e-5));
        wfree(e), wfree(w), wfree(x), wfree(y);
    }
    free(ids), free(tab), free(wv);
}

static void test_errors(void **state)
{
    (void)state;
    struct ny_err e;
    ny_err_init(&e);
    int rows[2] = {2, 1};
    struct tbatch t;
    make_batch(&t, 2, rows, NULL, NULL);
    OK(G->step_begin(gbe, &t.b, E));
    float *wv = rand_vec(48 * 64, 0.1f);
    struct engine_buf *w, *x, *y;
    OK(G->weight_upload(gbe, ENGINE_DTYPE_BF16, wv, 48, 32, &w, E)); /* bytes of 48 x 32 bf16 */
    OK(G->buf_alloc(gbe, 3 * 64, &x, E));
    OK(G->buf_alloc(gbe, 3 * 64, &y, E));
    expect_err(G->matmul(gbe, x, 33, w, 48, NULL, 0, NULL, 0, y, &e), NY_E_INVALID, &e,
               "matmul with the wrong input width");
    int bad_row = 3;
    expect_err(G->matmul(gbe, x, 32, w, 48, NULL, 0, &bad_row, 1, y, &e), NY_E_RANGE, &e,
               "matmul of a row outside the batch");
    int32_t ids[3] = {0, 48, 1};
    expect_err(G->embed(gbe, w, ids, 32, y, &e), NY_E_RANGE, &e, "embed of an id >= vocab");
    int32_t am[1];
    expect_err(G->argmax(gbe, y, 4, 64, am, &e), NY_E_RANGE, &e, "argmax past the buffer");
    struct engine_kv_shape sh = {1, 1, 16, 2, 4};
    struct engine_kv *kv;
    OK(G->kv_create(gbe, &sh, &kv, E));
    expect_err(G->kv_slot_reset(gbe, kv, 2, &e), NY_E_RANGE, &e, "reset of slot 2 of 2");
    int pos0[2] = {3, 0}; /* request 0 would write positions 3 and 4 of 4 */
    make_batch(&t, 2, rows, pos0, NULL);
    OK(G->step_begin(gbe, &t.b, E));
    expect_err(G->attention(gbe, kv, 0, x, x, x, 1, 0.25f, y, &e), NY_E_RANGE, &e,
               "attention past max_tokens");
    expect_err(G->attention(gbe, kv, 1, x, x, x, 1, 0.25f, y, &e), NY_E_INVALID, &e,
               "attention of layer 1 of 1");
    t.start[1] = 3;
    t.start[2] = 2; /* a negative row count */
    t.b.n_rows = 2;
    expect_err(G->step_begin(gbe, &t.b, &e), NY_E_INVALID, &e, "inconsistent batch");
    G->kv_destroy(gbe, kv);
    G->buf_free(gbe, w);
    G->buf_free(gbe, x);
    G->buf_free(gbe, y);
    free(wv);
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
    if (engine_backend_find("cuda", &G, &err) || engine_backend_find("cpu", &C, &err) ||
        G->create(1, 0, &gbe, &err) || C->create(4, 0, &cbe, &err)) {
        printf("backends: %s\n", err.msg);
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_elementwise),
        cmocka_unit_test(test_argmax),
        cmocka_unit_test(test_matmul),
        cmocka_unit_test(test_matmul_multi),
        cmocka_unit_test(test_add_rmsnorm),
        cmocka_unit_test(test_rope_qk),
        cmocka_unit_test(test_swiglu_matmul),
        cmocka_unit_test(test_mlp),
        cmocka_unit_test(test_norm_shadow),
        cmocka_unit_test(test_attention),
        cmocka_unit_test(test_matmul_invariance),
        cmocka_unit_test(test_attention_invariance),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_many_rows),
    };
    /* NY_TEST_FILTER: a cmocka name pattern (* and ?), the matching tests alone (a sanitizer
     * run of the attention tests: "test_attention*") */
    const char *flt = getenv("NY_TEST_FILTER");
    if (flt && *flt)
        cmocka_set_test_filter(flt);
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    G->destroy(gbe);
    C->destroy(cbe);
    return rc;
}
