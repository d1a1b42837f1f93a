/* cuda_bench.c — `nyxaudit bench`: a Llama-3-shaped decoder with random bf16 weights made on the
 * device (no files), driven through the CUDA backend's ops table exactly as the forward pass
 * drives it, on a workload of P prompts x L prompt tokens x N new tokens decoded greedily in
 * groups of B requests. Prints prefill tokens/s, decode ms per step, achieved TB/s and TFLOP/s
 * against the card's copy bandwidth and bf16 GEMM rate measured by the same run, and the peak
 * device memory. Plain C: no CUDA header here. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine.h"
#include "engine_backend_int.h"
#include "engine_cuda.h"

#define OPS engine_cuda_ops
enum { W_Q, W_K, W_V, W_O, W_G, W_U, W_D, W_N };

struct bench_layer {
    struct engine_buf *w[W_N], *ln1, *ln2;
    struct engine_buf *la[W_N], *lb[W_N];
};

struct bench {
    const struct engine_bench_opts *o;
    struct engine_backend *be;
    struct bench_layer *layers;
    struct engine_buf *embed, *norm, *head;
    struct engine_buf *x, *h, *q, *k, *v, *a, *o_, *g, *u, *logits;
    struct engine_kv *kv;
    float inv_freq[256];
    size_t mem_peak;
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int mem_sample(struct bench *b, struct ny_err *err)
{
    size_t used;
    int rc = engine_cuda_mem_used(b->be, &used, err);
    if (!rc && used > b->mem_peak)
        b->mem_peak = used;
    return rc;
}

static int proj_dims(const struct engine_bench_opts *o, int i, int *out, int *in)
{
    int hd = o->head_dim, H = o->hidden, F = o->intermediate;
    int dims[W_N][2] = {{o->heads * hd, H}, {o->kv_heads * hd, H}, {o->kv_heads * hd, H},
                        {H, o->heads * hd}, {F, H},  {F, H},  {H, F}};
    *out = dims[i][0];
    *in = dims[i][1];
    return 0;
}

static int make_weights(struct bench *b, struct ny_err *err)
{
    const struct engine_bench_opts *o = b->o;
    uint64_t seed = o->seed * 1000003u + 1;
    int rc = engine_cuda_weight_random(b->be, (size_t)o->vocab, (size_t)o->hidden, seed++, 0.5f,
                                       &b->embed, err);
    if (!rc)
        rc = engine_cuda_weight_random(b->be, (size_t)o->vocab, (size_t)o->hidden, seed++,
                                       0.02f, &b->head, err);
    if (!rc)
        rc = engine_cuda_weight_random(b->be, 1, (size_t)o->hidden, seed++, 1.0f, &b->norm, err);
    b->layers = ny_calloc((size_t)o->layers, sizeof *b->layers);
    if (!rc && !b->layers)
        rc = NY_ERR(err, NY_E_NOMEM, "bench: out of memory");
    for (int l = 0; !rc && l < o->layers; l++) {
        struct bench_layer *L = &b->layers[l];
        for (int i = 0; !rc && i < W_N; i++) {
            int out, in;
            proj_dims(o, i, &out, &in);
            /* uniform(-s, s) with s = sqrt(3 / in): unit-variance outputs for unit inputs */
            rc = engine_cuda_weight_random(b->be, (size_t)out, (size_t)in, seed++,
                                           sqrtf(3.0f / (float)in), &L->w[i], err);
            if (!rc && o->lora_rank > 0)
                rc = engine_cuda_weight_random(b->be, (size_t)o->lora_rank, (size_t)in, seed++,
                                               sqrtf(3.0f / (float)in), &L->la[i], err);
            if (!rc && o->lora_rank > 0)
                rc = engine_cuda_weight_random(b->be, (size_t)out, (size_t)o->lora_rank,
                                               seed++, 0.01f, &L->lb[i], err);
        }
        if (!rc)
            rc = engine_cuda_weight_random(b->be, 1, (size_t)o->hidden, seed++, 1.0f, &L->ln1,
                                           err);
        if (!rc)
            rc = engine_cuda_weight_random(b->be, 1, (size_t)o->hidden, seed++, 1.0f, &L->ln2,
                                           err);
    }
    return rc;
}

static int make_buffers(struct bench *b, int max_rows, struct ny_err *err)
{
    const struct engine_bench_opts *o = b->o;
    size_t r = (size_t)max_rows;
    size_t qd = (size_t)o->heads * o->head_dim, kd = (size_t)o->kv_heads * o->head_dim;
    struct {
        struct engine_buf **p;
        size_t n;
    } bufs[] = {{&b->x, r * o->hidden}, {&b->h, r * o->hidden}, {&b->q, r * qd},
                {&b->k, r * kd},        {&b->v, r * kd},        {&b->a, r * qd},
                {&b->o_, r * o->hidden}, {&b->g, r * o->intermediate},
                {&b->u, r * o->intermediate}, {&b->logits, (size_t)o->batch * o->vocab}};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) {
        int rc = OPS.buf_alloc(b->be, bufs[i].n, bufs[i].p, err);
        if (rc)
            return rc;
    }
    struct engine_kv_shape sh = {o->layers, o->kv_heads, o->head_dim, o->batch,
                                 o->prompt_len + o->new_tokens};
    return OPS.kv_create(b->be, &sh, &b->kv, err);
}

static int linear(struct bench *b, struct bench_layer *L, int i, struct engine_buf *x,
                  struct engine_buf *y, struct ny_err *err)
{
    int out, in;
    proj_dims(b->o, i, &out, &in);
    struct engine_lora_term lt = {L->la[i], L->lb[i], b->o->lora_rank, 2.0f};
    return OPS.matmul(b->be, x, in, L->w[i], out, b->o->lora_rank > 0 ? &lt : NULL,
                      b->o->lora_rank > 0 ? 1 : 0, NULL, 0, y, err);
}

/* One forward step over the current batch: ids in, next ids out (of the rows `last`). */
static int forward(struct bench *b, const int32_t *ids, const int *last, int n_last,
                   int32_t *next, struct ny_err *err)
{
    const struct engine_bench_opts *o = b->o;
    int H = o->hidden, rc = OPS.embed(b->be, b->embed, ids, H, b->x, err);
    float scale = 1.0f / sqrtf((float)o->head_dim);
    for (int l = 0; !rc && l < o->layers; l++) {
        struct bench_layer *L = &b->layers[l];
        rc = OPS.rmsnorm(b->be, b->x, L->ln1, H, 1e-5f, b->h, err);
        if (!rc)
            rc = linear(b, L, W_Q, b->h, b->q, err);
        if (!rc)
            rc = linear(b, L, W_K, b->h, b->k, err);
        if (!rc)
            rc = linear(b, L, W_V, b->h, b->v, err);
        if (!rc)
            rc = OPS.rope(b->be, b->q, o->heads, o->head_dim, b->inv_freq, 1.0f, err);
        if (!rc)
            rc = OPS.rope(b->be, b->k, o->kv_heads, o->head_dim, b->inv_freq, 1.0f, err);
        if (!rc)
            rc = OPS.attention(b->be, b->kv, l, b->q, b->k, b->v, o->heads, scale, b->a, err);
        if (!rc)
            rc = linear(b, L, W_O, b->a, b->o_, err);
        if (!rc)
            rc = OPS.add(b->be, b->x, b->o_, H, err);
        if (!rc)
            rc = OPS.rmsnorm(b->be, b->x, L->ln2, H, 1e-5f, b->h, err);
        if (!rc)
            rc = linear(b, L, W_G, b->h, b->g, err);
        if (!rc)
            rc = linear(b, L, W_U, b->h, b->u, err);
        if (!rc)
            rc = OPS.swiglu(b->be, b->g, b->u, o->intermediate, b->g, err);
        if (!rc)
            rc = linear(b, L, W_D, b->g, b->o_, err);
        if (!rc)
            rc = OPS.add(b->be, b->x, b->o_, H, err);
    }
    if (!rc)
        rc = OPS.rmsnorm(b->be, b->x, b->norm, H, 1e-5f, b->h, err);
    if (!rc)
        rc = OPS.matmul(b->be, b->h, H, b->head, o->vocab, NULL, 0, last, n_last, b->logits, err);
    if (!rc)
        rc = OPS.argmax(b->be, b->logits, n_last, o->vocab, next, err);
    return rc;
}

/* Weight bytes read by one decode step, and the linear-layer parameter count. */
static double linear_params(const struct engine_bench_opts *o)
{
    double p = 0;
    for (int i = 0; i < W_N; i++) {
        int out, in;
        proj_dims(o, i, &out, &in);
        p += (double)out * in;
        if (o->lora_rank > 0)
            p += (double)o->lora_rank * (in + out);
    }
    return p * o->layers;
}

struct bench_times {
    double prefill_s, decode_s;
    long decode_steps, decode_rows;
    double kv_bytes; /* KV bytes read over all decode steps */
};

static int run_group(struct bench *b, int n, struct bench_times *t, struct ny_err *err)
{
    const struct engine_bench_opts *o = b->o;
    int L = o->prompt_len, rows[1024 + 1], slot[1024], pos0[1024], ad[1024], last[1024];
    int32_t *ids = ny_malloc((size_t)n * L * sizeof *ids), next[1024];
    if (!ids)
        return NY_ERR(err, NY_E_NOMEM, "bench: out of memory");
    for (int i = 0; i < n * L; i++)
        ids[i] = (int32_t)((i * 7919u + 13u) % (unsigned)o->vocab);
    rows[0] = 0;
    for (int s = 0; s < n; s++) {
        rows[s + 1] = rows[s] + L;
        slot[s] = s;
        pos0[s] = 0;
        ad[s] = o->lora_rank > 0 ? 0 : -1;
        last[s] = rows[s + 1] - 1;
    }
    struct engine_batch bt = {n * L, n, rows, slot, pos0, ad};
    int rc = NY_OK;
    for (int s = 0; s < n && !rc; s++)
        rc = OPS.kv_slot_reset(b->be, b->kv, s, err);
    double t0 = now_s();
    if (!rc)
        rc = OPS.step_begin(b->be, &bt, err);
    if (!rc)
        rc = forward(b, ids, last, n, next, err);
    if (!rc)
        rc = engine_cuda_sync(b->be, err);
    t->prefill_s += now_s() - t0;
    if (!rc)
        rc = mem_sample(b, err);
    double t1 = now_s();
    for (int step = 1; step < o->new_tokens && !rc; step++) {
        for (int s = 0; s < n; s++) {
            rows[s + 1] = s + 1;
            pos0[s] = L + step - 1;
            last[s] = s;
        }
        struct engine_batch bd = {n, n, rows, slot, pos0, ad};
        rc = OPS.step_begin(b->be, &bd, err);
        if (!rc)
            rc = forward(b, next, last, n, next, err);
        t->decode_steps++;
        t->decode_rows += n;
        t->kv_bytes += (double)n * (L + step) * o->layers * 2.0 * o->kv_heads * o->head_dim * 2;
    }
    if (!rc)
        rc = engine_cuda_sync(b->be, err);
    t->decode_s += now_s() - t1;
    ny_free(ids);
    return rc;
}

static void bench_free(struct bench *b)
{
    if (!b->be)
        return;
    if (b->layers)
        for (int l = 0; l < b->o->layers; l++) {
            struct bench_layer *L = &b->layers[l];
            for (int i = 0; i < W_N; i++) {
                OPS.buf_free(b->be, L->w[i]);
                OPS.buf_free(b->be, L->la[i]);
                OPS.buf_free(b->be, L->lb[i]);
            }
            OPS.buf_free(b->be, L->ln1);
            OPS.buf_free(b->be, L->ln2);
        }
    ny_free(b->layers);
    struct engine_buf *bufs[] = {b->embed, b->norm, b->head, b->x, b->h, b->q, b->k,
                                 b->v,     b->a,    b->o_,   b->g, b->u, b->logits};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        OPS.buf_free(b->be, bufs[i]);
    OPS.kv_destroy(b->be, b->kv);
    OPS.destroy(b->be);
}

static void report(struct bench *b, const struct bench_times *t, double copy, double gemm,
                   FILE *out)
{
    const struct engine_bench_opts *o = b->o;
    double P = linear_params(o), emb = (double)o->vocab * o->hidden;
    double tokens = (double)o->prompts * o->prompt_len;
    /* prefill FLOPs: linear layers + causal attention (QKᵀ and PV over L(L+1)/2 pairs) */
    double att = 4.0 * o->heads * o->head_dim * (o->prompt_len * (o->prompt_len + 1.0) / 2.0) *
                 o->layers * o->prompts;
    double pf = 2.0 * P * tokens + att + 2.0 * emb * o->prompts;
    double step_ms = t->decode_steps ? t->decode_s * 1e3 / t->decode_steps : 0;
    double wbytes = 2.0 * (P + emb + o->layers * 2.0 * o->hidden + o->hidden);
    double dbytes = t->decode_steps ? (wbytes * t->decode_steps + t->kv_bytes) : 0;
    fprintf(out, "card peaks (measured now): copy %.2f TB/s, bf16 GEMM %.1f TFLOP/s\n",
            copy / 1e12, gemm / 1e12);
    fprintf(out, "prefill: %.0f tokens in %.3f s = %.0f tokens/s, %.1f TFLOP/s (%.0f%% of GEMM)\n",
            tokens, t->prefill_s, tokens / t->prefill_s, pf / t->prefill_s / 1e12,
            100.0 * pf / t->prefill_s / gemm);
    if (t->decode_steps)
        fprintf(out,
                "decode: %ld steps at batch %d: %.3f ms/step, %.0f tokens/s, %.2f TB/s "
                "(%.0f%% of copy; floor %.3f ms/step)\n",
                t->decode_steps, o->batch < o->prompts ? o->batch : o->prompts, step_ms,
                t->decode_rows / t->decode_s, dbytes / t->decode_s / 1e12,
                100.0 * dbytes / t->decode_s / copy, dbytes / t->decode_steps / copy * 1e3);
    fprintf(out, "total: %.3f s; peak device memory %.2f GiB; weights %.2f GiB\n",
            t->prefill_s + t->decode_s, b->mem_peak / 1073741824.0, wbytes / 1073741824.0);
}

int engine_bench_run(const struct engine_bench_opts *o, FILE *out, struct ny_err *err)
{
    if (o->hidden <= 0 || o->layers <= 0 || o->heads <= 0 || o->kv_heads <= 0 ||
        o->heads % o->kv_heads || o->head_dim <= 0 || o->head_dim > 512 || o->head_dim % 2 ||
        o->vocab <= 0 || o->intermediate <= 0 || o->prompts <= 0 || o->prompt_len <= 0 ||
        o->new_tokens <= 0 || o->batch <= 0 || o->batch > 1024 || o->lora_rank < 0)
        return NY_ERR(err, NY_E_INVALID, "bench: invalid shape or workload");
    struct bench b;
    memset(&b, 0, sizeof b);
    b.o = o;
    for (int i = 0; i < o->head_dim / 2; i++)
        b.inv_freq[i] = powf(500000.0f, -2.0f * i / o->head_dim);
    int rc = OPS.create(1, o->device, &b.be, err);
    double copy = 0, gemm = 0;
    if (!rc)
        rc = engine_cuda_peaks(b.be, &copy, &gemm, err);
    if (!rc)
        rc = make_weights(&b, err);
    int group = o->batch < o->prompts ? o->batch : o->prompts;
    if (!rc)
        rc = make_buffers(&b, group * o->prompt_len, err);
    if (!rc)
        rc = engine_cuda_sync(b.be, err);
    if (!rc)
        rc = mem_sample(&b, err);
    /* warm-up: one short group (plans, module load), not timed */
    struct bench_times warm, t;
    memset(&warm, 0, sizeof warm);
    memset(&t, 0, sizeof t);
    if (!rc)
        rc = run_group(&b, group, &warm, err);
    for (int p = 0; !rc && p < o->prompts; p += group)
        rc = run_group(&b, o->prompts - p < group ? o->prompts - p : group, &t, err);
    if (!rc)
        report(&b, &t, copy, gemm, out);
    bench_free(&b);
    return rc;
}
