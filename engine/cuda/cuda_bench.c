/* cuda_bench.c — `nyxaudit bench`: a Llama-3-shaped model with random bf16 weights made on the
 * device (engine_model_open_random: no files), on one GPU or tensor parallel over several, driven
 * through the real forward pass (engine_fwd_next) on a workload of P prompts x L prompt tokens x N
 * new tokens decoded greedily in groups of B requests: each group is one prefill step of its B
 * prompts, then N - 1 decode steps. Prints prefill tokens/s, decode ms per step, achieved TB/s and
 * TFLOP/s against the card's copy bandwidth and bf16 GEMM rate measured by the same run, the
 * all-reduce share of a decode step under tensor parallelism, and the peak device memory. Plain
 * C: no CUDA header here. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine.h"
#include "engine_cuda.h"
#include "engine_model_int.h"

#define BENCH_MAX_BATCH 1024
#define BENCH_AR_REPS 200

struct bench_times {
    double prefill_s, decode_s;
    long decode_steps, decode_rows;
    double kv_bytes;   /* KV bytes read over all decode steps (all ranks) */
    double ar_us;      /* one tp_allreduce of a decode step's rows, microseconds */
    double ar_pre_us;  /* one tp_allreduce of a (full) prefill step's rows, microseconds */
};

struct bench {
    const struct engine_bench_opts *o;
    struct engine_model *m;
    struct bench_times t;            /* rank 0's clock (the collectives keep ranks in step) */
    size_t mem_peak[ENGINE_MAX_TP];  /* per rank */
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int mem_sample(struct bench *b, struct engine_model *rm, struct ny_err *err)
{
    size_t used;
    int rc = engine_cuda_mem_used(rm->be, &used, err);
    if (!rc && used > b->mem_peak[rm->rank])
        b->mem_peak[rm->rank] = used;
    return rc;
}

/* Token k of prompt p: the prompts depend on p alone (groups and --generate make the same). */
static int32_t prompt_token(int p, int k, int vocab)
{
    return (int32_t)(((unsigned)p * 7919u + (unsigned)k * 104729u + 13u) % (unsigned)vocab);
}

/* One group of n prompts starting at prompt p0: prefill step, then new_tokens - 1 decode steps.
 * t == NULL: warm-up, not timed. */
static int run_group(struct bench *b, struct engine_model *rm, struct engine_fwd *f, int p0,
                     int n, struct bench_times *t, struct ny_err *err)
{
    const struct engine_bench_opts *o = b->o;
    int L = o->prompt_len, rows[BENCH_MAX_BATCH + 1], slot[BENCH_MAX_BATCH];
    int pos0[BENCH_MAX_BATCH], ad[BENCH_MAX_BATCH];
    int32_t *ids = ny_malloc((size_t)n * L * sizeof *ids), next[BENCH_MAX_BATCH];
    if (!ids)
        return NY_ERR(err, NY_E_NOMEM, "bench: out of memory");
    for (int i = 0; i < n * L; i++)
        ids[i] = prompt_token(p0 + i / L, i % L, o->vocab);
    rows[0] = 0;
    for (int s = 0; s < n; s++) {
        rows[s + 1] = rows[s] + L;
        slot[s] = s;
        pos0[s] = 0;
        ad[s] = o->lora_rank > 0 ? 0 : -1;
    }
    int rc = NY_OK;
    for (int s = 0; s < n && !rc; s++)
        rc = rm->ops->kv_slot_reset(rm->be, f->kv, s, err);
    struct engine_batch bt = {n * L, n, rows, slot, pos0, ad};
    double t0 = now_s();
    if (!rc)
        rc = engine_fwd_next(f, &bt, ids, next, err); /* its argmax waits for the device */
    if (t)
        t->prefill_s += now_s() - t0;
    if (!rc)
        rc = mem_sample(b, rm, err);
    for (int s = 0; s < n && o->ids && t && rm->rank == 0; s++)
        o->ids[(size_t)(p0 + s) * o->new_tokens] = next[s];
    double t1 = now_s();
    for (int step = 1; step < o->new_tokens && !rc; step++) {
        for (int s = 0; s < n; s++) {
            rows[s + 1] = s + 1;
            pos0[s] = L + step - 1;
        }
        struct engine_batch bd = {n, n, rows, slot, pos0, ad};
        rc = engine_fwd_next(f, &bd, next, next, err);
        for (int s = 0; !rc && s < n && o->ids && t && rm->rank == 0; s++)
            o->ids[(size_t)(p0 + s) * o->new_tokens + step] = next[s];
        if (t) {
            t->decode_steps++;
            t->decode_rows += n;
            t->kv_bytes += (double)n * (L + step) * o->layers * 2.0 * o->kv_heads * o->head_dim * 2;
        }
    }
    if (t)
        t->decode_s += now_s() - t1;
    ny_free(ids);
    return rc;
}

/* Microseconds of one tp_allreduce of the rows x hidden of a step of n requests of len rows each
 * (decode: len 1; prefill: the prompt length), over reps sums after a warm-up. */
static int time_allreduce(struct bench *b, struct engine_model *rm, struct engine_fwd *f, int n,
                          int len, int reps, double *us, struct ny_err *err)
{
    int rows[BENCH_MAX_BATCH + 1], slot[BENCH_MAX_BATCH], zero[BENCH_MAX_BATCH];
    int none[BENCH_MAX_BATCH];
    for (int s = 0; s <= n; s++)
        rows[s] = s * len;
    for (int s = 0; s < n; s++)
        slot[s] = len > 1 ? s : 0, zero[s] = 0, none[s] = -1;
    struct engine_batch bd = {n * len, n, rows, slot, zero, none};
    int rc = rm->ops->step_begin(rm->be, &bd, err);
    for (int i = 0; i < (reps > 10 ? 10 : 2) && !rc; i++) /* warm-up */
        rc = rm->ops->tp_allreduce(rm->be, f->h, b->o->hidden, err);
    if (!rc)
        rc = engine_cuda_sync(rm->be, err);
    double t0 = now_s();
    for (int i = 0; i < reps && !rc; i++)
        rc = rm->ops->tp_allreduce(rm->be, f->h, b->o->hidden, err);
    if (!rc)
        rc = engine_cuda_sync(rm->be, err);
    *us = (now_s() - t0) * 1e6 / reps;
    return rc;
}

/* Every rank's whole run (a thread each): warm-up group, the timed groups, then the all-reduce
 * timing. Rank 0 keeps the clock. */
static int bench_rank(struct engine_model *rm, void *ctx, struct ny_err *err)
{
    struct bench *b = ctx;
    const struct engine_bench_opts *o = b->o;
    int group = o->batch < o->prompts ? o->batch : o->prompts;
    struct engine_kv_shape kvs = {o->layers, rm->l_kv_heads, o->head_dim, group,
                                  o->prompt_len + o->new_tokens};
    struct engine_fwd f;
    int rc = engine_fwd_init(&f, rm, &kvs, err);
    if (rc)
        return rc;
    struct bench_times mine;
    memset(&mine, 0, sizeof mine);
    rc = run_group(b, rm, &f, 0, group, NULL, err); /* plans, module load: not timed */
    for (int p = 0; !rc && p < o->prompts; p += group)
        rc = run_group(b, rm, &f, p, o->prompts - p < group ? o->prompts - p : group, &mine, err);
    if (!rc && rm->tp > 1)
        rc = time_allreduce(b, rm, &f, group, 1, BENCH_AR_REPS, &mine.ar_us, err);
    if (!rc && rm->tp > 1) /* a full group's prefill step */
        rc = time_allreduce(b, rm, &f, group, o->prompt_len, 5, &mine.ar_pre_us, err);
    if (!rc)
        rc = mem_sample(b, rm, err);
    if (rm->rank == 0)
        b->t = mine;
    engine_fwd_fini(&f);
    return rc;
}

/* The workload through engine_generate, as nyxaudit's runs decode (its scheduler: prompts admitted
 * while slots and the step's row budget last, max_batch = batch), after an untimed call on the
 * first group (plans, module loads). The same prompts as the groups' (run_group). */
static int bench_generate(struct bench *b, FILE *out, struct ny_err *err)
{
    const struct engine_bench_opts *o = b->o;
    const int P = o->prompts, L = o->prompt_len;
    int32_t *ids = ny_malloc((size_t)P * L * sizeof *ids);
    struct engine_request *reqs = ny_calloc((size_t)P, sizeof *reqs);
    struct engine_result *res = ny_calloc((size_t)P, sizeof *res);
    int rc = ids && reqs && res ? NY_OK : NY_ERR(err, NY_E_NOMEM, "bench: out of memory");
    for (size_t i = 0; !rc && i < (size_t)P * L; i++)
        ids[i] = prompt_token((int)(i / L), (int)(i % L), o->vocab);
    for (int p = 0; !rc && p < P; p++)
        reqs[p] = (struct engine_request){ids + (size_t)p * L, (size_t)L,
                                          o->lora_rank > 0 ? 0 : -1};
    struct engine_gen_opts go = {.max_new_tokens = o->new_tokens, .ignore_eos = 1,
                                 .max_batch = o->batch};
    int warm = o->batch < P ? o->batch : P;
    if (!rc)
        rc = engine_generate(b->m, reqs, (size_t)warm, &go, res, err);
    for (int p = 0; p < warm && res; p++)
        engine_result_fini(&res[p]);
    double t0 = now_s();
    if (!rc)
        rc = engine_generate(b->m, reqs, (size_t)P, &go, res, err);
    double t = now_s() - t0;
    for (int p = 0; !rc && p < P; p++) {
        if (res[p].n_output != (size_t)o->new_tokens)
            rc = NY_ERR(err, NY_E_INTERNAL, "bench: request %d: %zu ids, not %d", p,
                        res[p].n_output, o->new_tokens);
        for (int k = 0; !rc && o->ids && k < o->new_tokens; k++)
            o->ids[(size_t)p * o->new_tokens + k] = res[p].output_ids[k];
    }
    if (!rc)
        fprintf(out, "generate (the scheduler of nyxaudit runs, max_batch %d): %d prompts x %d "
                "tokens x %d new in %.3f s = %.0f prompt tokens/s\n", o->batch, P, L,
                o->new_tokens, t, (double)P * L / t);
    for (int p = 0; p < P && res; p++)
        engine_result_fini(&res[p]);
    ny_free(res);
    ny_free(reqs);
    ny_free(ids);
    return rc;
}

static void print_peaks(const struct engine_bench_opts *o, double copy, double gemm, FILE *out)
{
    fprintf(out, "card peaks (measured now, GPU %d): copy %.2f TB/s, bf16 GEMM %.1f TFLOP/s%s\n",
            o->device, copy / 1e12, gemm / 1e12, o->tp > 1 ? " (per card)" : "");
}

/* Linear-layer parameters of the whole model (all ranks), LoRA of rank R included. */
static double linear_params(const struct engine_config *c, int R)
{
    double p = 0;
    for (int q = 0; q < ENGINE_N_PROJ; q++) {
        int out, in;
        engine_proj_shape(c, (enum engine_proj)q, &out, &in);
        p += (double)out * in + (R > 0 ? (double)R * (in + out) : 0.0);
    }
    return p * c->n_layers;
}

static void report(struct bench *b, double copy, double gemm, FILE *out)
{
    const struct engine_bench_opts *o = b->o;
    const struct bench_times *t = &b->t;
    int tp = o->tp > 1 ? o->tp : 1;
    double P = linear_params(&b->m->cfg, o->lora_rank), emb = (double)o->vocab * o->hidden;
    double tokens = (double)o->prompts * o->prompt_len;
    /* prefill FLOPs: linear layers + causal attention (QKᵀ and PV over L(L+1)/2 pairs) */
    double att = 4.0 * o->heads * o->head_dim * (o->prompt_len * (o->prompt_len + 1.0) / 2.0) *
                 o->layers * o->prompts;
    double pf = 2.0 * P * tokens + att + 2.0 * emb * o->prompts;
    double step_ms = t->decode_steps ? t->decode_s * 1e3 / t->decode_steps : 0;
    /* bytes one decode step reads over all cards: linear weights, lm_head, norms (+ KV) */
    double wbytes = 2.0 * (P + emb + o->layers * 2.0 * o->hidden + o->hidden);
    double dbytes = t->decode_steps ? (wbytes * t->decode_steps + t->kv_bytes) : 0;
    print_peaks(o, copy, gemm, out);
    fprintf(out, "prefill: %.0f tokens in %.3f s = %.0f tokens/s, %.1f TFLOP/s (%.0f%% of %d x "
            "GEMM)\n", tokens, t->prefill_s, tokens / t->prefill_s, pf / t->prefill_s / 1e12,
            100.0 * pf / t->prefill_s / (gemm * tp), tp);
    if (t->decode_steps)
        fprintf(out,
                "decode: %ld steps at batch %d: %.3f ms/step, %.0f tokens/s, %.2f TB/s "
                "(%.0f%% of %d x copy; floor %.3f ms/step)\n",
                t->decode_steps, o->batch < o->prompts ? o->batch : o->prompts, step_ms,
                t->decode_rows / t->decode_s, dbytes / t->decode_s / 1e12,
                100.0 * dbytes / t->decode_s / (copy * tp), tp,
                dbytes / t->decode_steps / (copy * tp) * 1e3);
    if (tp > 1 && t->decode_steps)
        fprintf(out, "all-reduce: %.1f us per sum of a decode step's rows; %d per step = %.3f ms "
                "= %.0f%% of a decode step\n", t->ar_us, 2 * o->layers,
                2 * o->layers * t->ar_us / 1e3, 100.0 * 2 * o->layers * t->ar_us / 1e3 / step_ms);
    if (tp > 1) {
        int group = o->batch < o->prompts ? o->batch : o->prompts;
        long steps = (o->prompts + group - 1) / group, sums = steps * 2L * o->layers;
        fprintf(out, "prefill all-reduce: %.2f ms per sum of a %d-row prefill step; %ld sums = "
                "%.3f s = %.0f%% of the prefill\n", t->ar_pre_us / 1e3, group * o->prompt_len,
                sums, sums * t->ar_pre_us / 1e6, 100.0 * sums * t->ar_pre_us / 1e6 / t->prefill_s);
    }
    size_t peak = 0;
    for (int k = 0; k < tp; k++)
        peak = b->mem_peak[k] > peak ? b->mem_peak[k] : peak;
    fprintf(out, "total: %.3f s; peak device memory %.2f GiB%s; weights %.2f GiB\n",
            t->prefill_s + t->decode_s, peak / 1073741824.0, tp > 1 ? " (fullest card)" : "",
            (wbytes + 2.0 * emb) / 1073741824.0);
}

static int bench_check(const struct engine_bench_opts *o, struct ny_err *err)
{
    if (o->hidden <= 0 || o->layers <= 0 || o->heads <= 0 || o->kv_heads <= 0 ||
        o->heads % o->kv_heads || o->head_dim <= 0 || o->head_dim > 256 || o->head_dim % 2 ||
        o->vocab <= 0 || o->intermediate <= 0 || o->prompts <= 0 || o->prompt_len <= 0 ||
        o->new_tokens <= 0 || o->batch <= 0 || o->batch > BENCH_MAX_BATCH || o->lora_rank < 0 ||
        o->tp < 0 || o->tp > ENGINE_MAX_TP)
        return NY_ERR(err, NY_E_INVALID, "bench: invalid shape or workload");
    return NY_OK;
}

int engine_bench_run(const struct engine_bench_opts *o, FILE *out, struct ny_err *err)
{
    int rc = bench_check(o, err);
    if (rc)
        return rc;
    /* the card's ceilings, on the first GPU, before the model takes its memory */
    struct engine_backend *pb;
    double copy = 0, gemm = 0;
    if ((rc = engine_cuda_ops.create(1, o->device, &pb, err)))
        return rc;
    rc = engine_cuda_peaks(pb, &copy, &gemm, err);
    engine_cuda_ops.destroy(pb);
    if (rc)
        return rc;
    struct engine_config cfg = {.hidden = o->hidden, .intermediate = o->intermediate,
                                .n_layers = o->layers, .n_heads = o->heads,
                                .n_kv_heads = o->kv_heads, .head_dim = o->head_dim,
                                .vocab = o->vocab, .max_pos = o->prompt_len + o->new_tokens,
                                .rms_eps = 1e-5f, .rope_theta = 500000.0, .bos_id = -1};
    struct engine_model_opts mo = {.device = "cuda", .threads = 1, .tp = o->tp, .gpu = o->device};
    struct bench b;
    memset(&b, 0, sizeof b);
    b.o = o;
    double t0 = now_s();
    if ((rc = engine_model_open_random(&cfg, &mo, o->seed, o->lora_rank, &b.m, err)))
        return rc;
    fprintf(out, "model made on %d GPU%s in %.1f s\n", o->tp > 1 ? o->tp : 1,
            o->tp > 1 ? "s" : "", now_s() - t0);
    if (o->via_generate) {
        print_peaks(o, copy, gemm, out);
        rc = bench_generate(&b, out, err);
    } else {
        rc = engine_tp_run(b.m, bench_rank, &b, err);
        if (!rc)
            report(&b, copy, gemm, out);
    }
    engine_model_close(b.m);
    return rc;
}
