/* cuda_tp_overlap.cu — tensor-parallel sums of prefill steps overlapped with the products: each
 * request's (unit's) rows of the o or down partial are summed over the ranks as soon as its GEMM
 * is done, by the copy engines over NVLink on a second stream, while the next units' GEMMs run;
 * the residual add + norm of a unit runs when the next product reaches that unit.
 *
 * PROTOCOL (announced sum number s, the same on every rank; unit u = rows [r0, r0 + m), cut into
 * n chunks of c = ceil(m / n) rows, chunk k owned by rank k):
 *   stream:    product of u -> event E0[u] -> flag P[r][u] = s
 *   copies:    (a stream for each peer q) wait E0[u], P[q][u] >= s; copy chunk r of q's
 *              partial (their y) into staging
 *   tp_stream: wait E0[u] and those copies; G[chunk r] = sum of the ranks' chunk r in rank order
 *              (k_ovl_sum: the arithmetic of k_sum_ranks); flag S[r][u] = s
 *   copies:    wait S[q][u] >= s; copy q's summed chunk q from their G into ours
 *   tp_stream: wait those copies -> event E1[u]
 *   stream:    (the next product's unit u) wait E1[u]; x += G, out = norm(x) on u's rows.
 * (NY_TP_OVL_STREAMS=0 queues the copies on tp_stream too: same bits, 4.744 s against 4.713 for
 * the 70B prefill below.)
 * Each element is summed once, in rank order, by its chunk's owner: bit-identical to the NCCL
 * and peer-to-peer sums (cuda_tp.cu) whatever the units, chunks or timing.
 * WITH THE NORM (tp_sum_announce_norm, which names the add + norm to come): tp_stream's kernel
 * also adds the chunk's sum to x and norms its rows (k_ovl_sum_norm: the bf16 shadow ob and,
 * unless the next product alone reads it, out = y), and the copies gather the peers' chunks of
 * x, ob and out instead of G; the next product's unit u then only waits for E1[u]. Each row is
 * normed once, by its chunk's owner, with the norm kernel's arithmetic: the same bits.
 * X_NEXT (the caller's promise that x is read next by the add + norm of the next such sum): the
 * copies skip x. Each rank's chunks of x stay current on it alone (xlag), which is all the next
 * sum's kernel reads; a sum without x_next (the step's last) gathers x whole again. Anything
 * else in the overlap that reads x (an announce that does not continue the chain, the plain sum
 * call, a norm recomputed from x) first copies the peers' chunks of each unit once its sum has
 * landed (xsync): a peer writes its chunk again only in its next sum of the unit, which waits
 * for our next product of it, queued after that copy.
 *
 * HAZARDS: a peer copies our partial y[u] before it sets S[q][u], and E1[u] waits for every S:
 * so nothing of ours overwrites y[u] (the norm's out, the next product; with the norm, the
 * gathered chunks of out) before every peer has read it; our own chunk of y is read and then
 * normed in place by our kernel alone. Our G chunk r is read by the peers before they set their E1[u] and rewritten only by
 * our next sum of unit u, which waits on their next product of u (after their norm of u). The
 * buffers travel by pointer, published at a host barrier at each announce (the ranks' threads
 * meet there); G and staging grow only after a barrier at which every rank's streams are idle.
 *
 * FLAGS live in pinned host memory and are set and awaited by stream memory operations
 * (cuStreamWriteValue32 / cuStreamWaitValue32: no SM polls). tp_abort sets them all to INT_MAX
 * (the waits compare cyclically), so a stream waiting on a peer that never comes drains;
 * cuda_tp_ovl_close repeats that until every stream is idle.
 *
 * HOST ORDER: a rank queues its wait on a peer's flag only after the peer's thread has queued
 * the write of it (host tickets, ovl_tick). So every queued wait is met by work already on a
 * GPU, whatever the threads do next: a thread blocked in a call that waits for its device to
 * go idle (cudaFree, a kernel's lazy module load) cannot hold up a peer's stream that holds up
 * its own device. Without this, 4 ranks hung on their first steps. */
#include <cuda.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sched.h>
#include <string.h>
#include <time.h>

#include "cuda_int.cuh"
#include "cuda_norm.cuh"

typedef CUresult (*ovl_value_fn)(CUstream, CUdeviceptr, cuuint32_t, unsigned int);
static ovl_value_fn ovl_write32, ovl_wait32;

/* A/B timing knobs, read once: NY_TP_OVL_BLOCKS, the sum kernel's most blocks (default 1024);
 * NY_TP_OVL_PRIO=0, the sums' streams at the default priority instead of the highest. */
static int ovl_prio(void)
{
    static int v = -1;
    return cuda_env_on("NY_TP_OVL_PRIO", &v);
}

/* Steps whose units average fewer floats of the product than this sum whole (NY_TP_OVL_MIN,
 * a count of floats, changes it: the tests take small steps): the 8B shape at tp 4, 4 requests
 * of 512 rows (2 Mi floats a unit), prefilled in 0.056 s overlapped against 0.037 (4 x H100). */
static size_t ovl_min_floats(void)
{
    static long v = -1;
    return (size_t)cuda_env_long("NY_TP_OVL_MIN", &v, 4L << 20);
}

/* Whether tp_sum_announce_norm runs the add + norm of rows dim wide with the sums: from
 * NY_TP_OVL_NORM_DIM (default 0: any width) on, unless NY_TP_OVL_NORM=0 (A/B timing; the same
 * bits either way). It gathers the shadow, x unless lagged (x_next) and out unless left to the
 * next product: 2 to 10 bytes an element, against the sums' 4. On 4 x H100, 32 x 2,000 x 24
 * through the scheduler at tp 4: the 70B shape (8,192 wide) in 4.95 s against 5.29 for the sums
 * alone (5.17 with x gathered); the 8B shape (4,096) in 0.704 s against 0.805 (0.960 with x
 * gathered: its sums' copies are the longer part of a unit). */
static int ovl_norm_wanted(int dim)
{
    static int v = -1;
    static long min_dim = -1;
    return cuda_env_on("NY_TP_OVL_NORM", &v) &&
           dim >= cuda_env_long("NY_TP_OVL_NORM_DIM", &min_dim, 0);
}

/* Whether x_next leaves x lagged: yes unless NY_TP_OVL_XLAG=0 (A/B timing; the same bits). */
static int ovl_xlag_wanted(void)
{
    static int v = -1;
    return cuda_env_on("NY_TP_OVL_XLAG", &v);
}

/* Whether sums overlap: yes unless NY_TP_OVERLAP=0 (A/B timing and checks). */
static int ovl_wanted(void)
{
    static int v = -1;
    return cuda_env_on("NY_TP_OVERLAP", &v);
}

static unsigned *flag_at(const struct engine_tp *g, int kind, int rank, int u)
{
    return g->ovl_flags + ((size_t)kind * CUDA_TP_MAX + (size_t)rank) * CUDA_OVL_UNITS + u;
}

static int flag_op(struct engine_backend *be, cudaStream_t st, unsigned *f, unsigned v, int wait,
                   struct ny_err *err)
{
    CUresult r = wait ? ovl_wait32((CUstream)st, (CUdeviceptr)f, v, CU_STREAM_WAIT_VALUE_GEQ)
                      : ovl_write32((CUstream)st, (CUdeviceptr)f, v, 0);
    if (r != CUDA_SUCCESS) {
        char d[64];
        snprintf(d, sizeof d, "CUresult %d", (int)r);
        return cuda_fail(be, err, __FILE__, __LINE__, wait ? "flag wait" : "flag write", d);
    }
    return NY_OK;
}

/* out[e] = ((p[0][e] + p[1][e]) + p[2][e]) + ..., n terms, e < len4 (float4 groups). */
struct ovl_ptrs {
    const float4 *p[CUDA_TP_MAX];
};
__global__ static void k_ovl_sum(struct ovl_ptrs P, int n, size_t len4, float4 *out)
{
    for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < len4;
         e += (size_t)gridDim.x * blockDim.x) {
        float4 a = P.p[0][e];
        for (int k = 1; k < n; k++) {
            const float4 b = P.p[k][e];
            a.x = __fadd_rn(a.x, b.x);
            a.y = __fadd_rn(a.y, b.y);
            a.z = __fadd_rn(a.z, b.z);
            a.w = __fadd_rn(a.w, b.w);
        }
        out[e] = a;
    }
}

/* tp_sum_announce_norm: the rows of this rank's chunk (a block a row): the ranks' partials summed
 * as k_ovl_sum sums them, then k_rmsnorm_v's residual add and norm (x += sum; out, when given,
 * and ob = norm(x)·w) — the bits of the sum followed by the deferred add + norm. P: the chunk's
 * first row of each rank's partial; x, out, ob: the chunk's first row. out may be P's own rank's
 * partial (each element is read before the row's norm writes it). */
template <typename W>
__global__ __launch_bounds__(NORM_THREADS) static void k_ovl_sum_norm(struct ovl_ptrs P, int n,
                                                                      int dim, float *x,
                                                                      const W *w, float eps,
                                                                      float *out,
                                                                      __nv_bfloat16 *ob)
{
    __shared__ float sh[NORM_THREADS / 32];
    const int n4 = dim / 4;
    const size_t r4 = (size_t)blockIdx.x * n4;
    float wv[NORM_V][4];
    norm_load_w(w, n4, wv);
    float4 *xr = reinterpret_cast<float4 *>(x) + r4;
    float4 v[NORM_V];
    norm_add_row(v, xr, n4, [&](int i) {
        float4 b = P.p[0][r4 + i];
#pragma unroll
        for (int k = 1; k < CUDA_TP_MAX; k++) /* constant indices: P stays in parameter space */
            if (k < n) {
                const float4 c = P.p[k][r4 + i];
                b = make_float4(__fadd_rn(b.x, c.x), __fadd_rn(b.y, c.y), __fadd_rn(b.z, c.z),
                                __fadd_rn(b.w, c.w));
            }
        return b;
    });
    norm_row_v(v, wv, n4, dim, eps, out ? reinterpret_cast<float4 *>(out) + r4 : nullptr,
               ob + (size_t)blockIdx.x * dim, sh);
}

/* ---- NY_TP_OVL_TRACE=1: where a step's time goes --------------------------------------------
 * Per traced sum and unit, four device timestamps (%globaltimer, ns): [0] the next product
 * reaches the unit and [1] goes on after waiting for its sum (the difference: time the stream
 * stalled on the sum), [2] the unit's sum done on tp_stream, [3] the unit's product done. Rank 0
 * prints a summary when the next step begins and at close. Timing only: the stamps are 1-thread
 * kernels on the streams, nothing else changes. */
__global__ static void k_stamp(unsigned long long *p)
{
    unsigned long long t;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
    *p = t;
}

static int trace_on(void)
{
    static long v = -1;
    return (int)cuda_env_long("NY_TP_OVL_TRACE", &v, 0);
}

static void stamp(struct engine_backend *be, cudaStream_t st, int k, int u, int slot)
{
    if (be->ovl_tr && k >= 0 && k < CUDA_OVL_TRACE_SUMS)
        k_stamp<<<1, 1, 0, st>>>(be->ovl_tr + ((size_t)k * CUDA_OVL_UNITS + u) * 4 + slot);
}

/* The summary of the traced sums of the step (rank 0; waits for the device). */
static void trace_report(struct engine_backend *be)
{
    const int n = be->ovl_tr_n < CUDA_OVL_TRACE_SUMS ? be->ovl_tr_n : CUDA_OVL_TRACE_SUMS;
    be->ovl_tr_n = 0;
    if (!be->ovl_tr || n == 0 || be->tp_rank != 0 || cudaDeviceSynchronize() != cudaSuccess)
        return;
    size_t cnt = (size_t)n * CUDA_OVL_UNITS * 4;
    unsigned long long *h = (unsigned long long *)ny_malloc(cnt * sizeof *h);
    if (!h || cudaMemcpy(h, be->ovl_tr, cnt * sizeof *h, cudaMemcpyDeviceToHost) != cudaSuccess) {
        ny_free(h);
        return;
    }
    const int units = be->sets.units_n;
    double stall[2] = {0, 0}, lat[2] = {0, 0}, last[2] = {0, 0};
    for (int k = 0; k < n; k++)
        for (int u = 0; u < units; u++) {
            const unsigned long long *t = h + ((size_t)k * CUDA_OVL_UNITS + u) * 4;
            if (!t[0] || !t[1] || !t[2] || !t[3])
                continue;
            stall[k & 1] += (double)(t[1] - t[0]) / 1e6;
            lat[k & 1] += (double)(long long)(t[2] - t[3]) / 1e6;
            if (u == units - 1)
                last[k & 1] += (double)(t[1] - t[0]) / 1e6;
        }
    ny_log_info("cuda tp overlap trace: %d sums of %d units; the next product stalled %.2f ms on "
                "the o sums (%.2f at their last units), %.2f ms on the down sums (%.2f); a unit's "
                "sum took %.3f ms (o) and %.3f ms (down) after its product on average",
                n, units, stall[0], last[0], stall[1], last[1],
                lat[0] / ((n + 1) / 2 * (double)units), lat[1] / (n / 2 * (double)units + 1e-9));
    ny_free(h);
    /* on the stream and waited for (a plain cudaMemset would not order the stamps after it) */
    if (cudaMemsetAsync(be->ovl_tr, 0, (size_t)CUDA_OVL_TRACE_SUMS * CUDA_OVL_UNITS * 4 *
                        sizeof *h, be->stream) != cudaSuccess ||
        cudaStreamSynchronize(be->stream) != cudaSuccess)
        (void)cudaGetLastError(); /* a diagnostic: its next report may be off, nothing else */
}

/* NY_TP_OVERLAP_DEBUG=1: a thread prints every rank's state and first flags every 2 s. */
static volatile int dbg_stop;
static pthread_t dbg_thread;
static int dbg_on;
static void *dbg_main(void *arg)
{
    struct engine_tp *g = (struct engine_tp *)arg;
    while (!dbg_stop) {
        struct timespec ts = {2, 0};
        nanosleep(&ts, NULL);
        for (int i = 0; i < g->n && !dbg_stop; i++) {
            struct engine_backend *be = g->bes[i];
            fprintf(stderr, "ovl-dbg rank %d: seq %u bar %lu arrive %lu units %d pend %d y %p P", i,
                    be->ovl_seq, be->ovl_bar, g->ovl_arrive[i], be->ovl_units, be->pend,
                    (const void *)be->ovl_y);
            for (int u = 0; u < 6; u++)
                fprintf(stderr, " %u", g->ovl_flags[(size_t)i * CUDA_OVL_UNITS + u]);
            fprintf(stderr, " S");
            for (int u = 0; u < 6; u++)
                fprintf(stderr, " %u",
                        g->ovl_flags[((size_t)CUDA_TP_MAX + i) * CUDA_OVL_UNITS + u]);
            fprintf(stderr, "\n");
        }
    }
    return NULL;
}

static void ovl_release_flags(struct engine_tp *g)
{
    size_t n = (size_t)2 * CUDA_TP_MAX * CUDA_OVL_UNITS;
    for (size_t i = 0; i < n; i++)
        __atomic_store_n(&g->ovl_flags[i], (unsigned)INT_MAX, __ATOMIC_RELEASE);
}

void cuda_tp_ovl_abort(struct engine_tp *g)
{
    if (g && g->ovl_flags)
        ovl_release_flags(g);
}

/* Whether the stream memory operations work on be's device: a write then a wait on a flag. */
static int ovl_probe(struct engine_backend *be, unsigned *f)
{
    *f = 0;
    if (ovl_write32((CUstream)be->tp_stream, (CUdeviceptr)f, 7, 0) != CUDA_SUCCESS ||
        ovl_wait32((CUstream)be->tp_stream, (CUdeviceptr)f, 7, CU_STREAM_WAIT_VALUE_GEQ) !=
            CUDA_SUCCESS ||
        cudaStreamSynchronize(be->tp_stream) != cudaSuccess) {
        (void)cudaGetLastError();
        return 0;
    }
    int ok = __atomic_load_n(f, __ATOMIC_ACQUIRE) == 7;
    *f = 0;
    return ok;
}

int cuda_tp_ovl_open(struct engine_tp *g, struct ny_err *err)
{
    g->ovl = 0;
    if (!g->p2p || !ovl_wanted()) {
        ny_log_info("cuda tp: prefill sums not overlapped (%s)",
                    g->p2p ? "NY_TP_OVERLAP=0" : "no peer-to-peer sums");
        return NY_OK;
    }
    cudaDriverEntryPointQueryResult q1, q2;
    if (cudaGetDriverEntryPointByVersion("cuStreamWriteValue32", (void **)&ovl_write32, 12000,
                                         cudaEnableDefault, &q1) != cudaSuccess ||
        cudaGetDriverEntryPointByVersion("cuStreamWaitValue32", (void **)&ovl_wait32, 12000,
                                         cudaEnableDefault, &q2) != cudaSuccess ||
        q1 != cudaDriverEntryPointSuccess || q2 != cudaDriverEntryPointSuccess) {
        (void)cudaGetLastError();
        ny_log_info("cuda tp: no stream memory operations: prefill sums not overlapped");
        return NY_OK;
    }
    const size_t bytes = (size_t)2 * CUDA_TP_MAX * CUDA_OVL_UNITS * sizeof(unsigned);
    if (cudaHostAlloc((void **)&g->ovl_flags, bytes,
                      cudaHostAllocMapped | cudaHostAllocPortable) != cudaSuccess) {
        (void)cudaGetLastError();
        g->ovl_flags = NULL;
        return NY_ERR(err, NY_E_DEVICE, "cuda tp: cudaHostAlloc of the overlap flags failed");
    }
    memset(g->ovl_flags, 0, bytes);
    int least = 0, greatest = 0;
    for (int i = 0; i < g->n; i++) {
        struct engine_backend *be = g->bes[i];
        CU_CHECK(be, cudaSetDevice(be->device), "cudaSetDevice");
        CU_CHECK(be, cudaDeviceGetStreamPriorityRange(&least, &greatest), "stream priorities");
        if (!ovl_prio())
            greatest = 0;
        CU_CHECK(be, cudaStreamCreateWithPriority(&be->tp_stream, cudaStreamNonBlocking, greatest),
                 "sums stream");
        for (int k = 0; k < 2; k++)
            for (int u = 0; u < CUDA_OVL_UNITS; u++)
                CU_CHECK(be, cudaEventCreateWithFlags(&be->ovl_ev[k][u], cudaEventDisableTiming),
                         "overlap event");
        for (int k = 0; k + 1 < g->n; k++) {
            CU_CHECK(be, cudaStreamCreateWithPriority(&be->ovl_cs[k], cudaStreamNonBlocking,
                                                      greatest), "copy stream");
            CU_CHECK(be, cudaEventCreateWithFlags(&be->ovl_evc[k], cudaEventDisableTiming),
                     "overlap event");
            CU_CHECK(be, cudaEventCreateWithFlags(&be->ovl_evd[k], cudaEventDisableTiming),
                     "overlap event");
        }
        CU_CHECK(be, cudaEventCreateWithFlags(&be->ovl_evs, cudaEventDisableTiming),
                 "overlap event");
        be->ovl_seq = 0;
        be->ovl_bar = 0;
        be->ovl_tick = 0;
        g->ovl_arrive[i] = 0;
        g->ovl_tick[0][i] = g->ovl_tick[1][i] = 0;
        /* load the kernels of the sums now, not lazily while a peer waits */
        cudaFuncAttributes fa;
        CU_CHECK(be, cudaFuncGetAttributes(&fa, k_ovl_sum), "sum kernel load");
        CU_CHECK(be, cudaFuncGetAttributes(&fa, k_stamp), "stamp kernel load");
        be->ovl_tr_n = 0;
        be->pend_tr = -1;
        if (trace_on()) {
            const size_t tb = (size_t)CUDA_OVL_TRACE_SUMS * CUDA_OVL_UNITS * 4 * 8;
            CU_CHECK(be, cudaMalloc((void **)&be->ovl_tr, tb), "trace room");
            CU_CHECK(be, cudaMemsetAsync(be->ovl_tr, 0, tb, be->stream), "trace room");
            CU_CHECK(be, cudaStreamSynchronize(be->stream), "trace room");
        }
        if (!ovl_probe(be, g->ovl_flags)) {
            ny_log_info("cuda tp: device %d: stream memory operations failed: prefill sums not "
                        "overlapped", be->device);
            return NY_OK;
        }
    }
    g->ovl = 1;
    const char *dbg = getenv("NY_TP_OVERLAP_DEBUG");
    if (dbg && dbg[0] == '1') {
        dbg_stop = 0;
        dbg_on = pthread_create(&dbg_thread, NULL, dbg_main, g) == 0;
    }
    ny_log_info("cuda tp: prefill sums overlapped with the products (up to %d requests a step)",
                CUDA_OVL_UNITS);
    return NY_OK;
}

static int streams_idle(struct engine_backend *be)
{
    cudaSetDevice(be->device);
    int idle = cudaStreamQuery(be->stream) != cudaErrorNotReady &&
               (!be->tp_stream || cudaStreamQuery(be->tp_stream) != cudaErrorNotReady);
    for (int k = 0; k < CUDA_TP_MAX && idle; k++)
        idle = !be->ovl_cs[k] || cudaStreamQuery(be->ovl_cs[k]) != cudaErrorNotReady;
    (void)cudaGetLastError();
    return idle;
}

/* After the ranks' last op: wait (up to 60 s; re-releasing the flags after an abort, since a
 * queued write may lower one) until every stream is idle, then free. */
void cuda_tp_ovl_close(struct engine_tp *g)
{
    if (dbg_on) {
        dbg_stop = 1;
        pthread_join(dbg_thread, NULL);
        dbg_on = 0;
    }
    for (int it = 0; it < 3000000; it++) {
        int idle = 1;
        for (int i = 0; i < g->n && idle; i++)
            idle = streams_idle(g->bes[i]);
        if (idle)
            break;
        if (g->ovl_flags && __atomic_load_n(&g->aborted, __ATOMIC_ACQUIRE))
            ovl_release_flags(g);
        struct timespec ts = {0, 20000};
        nanosleep(&ts, NULL);
    }
    for (int i = 0; i < g->n; i++) {
        struct engine_backend *be = g->bes[i];
        cudaSetDevice(be->device);
        for (int k = 0; k < 2; k++)
            for (int u = 0; u < CUDA_OVL_UNITS; u++)
                if (be->ovl_ev[k][u]) {
                    cudaEventDestroy(be->ovl_ev[k][u]);
                    be->ovl_ev[k][u] = NULL;
                }
        if (be->tp_stream)
            cudaStreamDestroy(be->tp_stream);
        be->tp_stream = NULL;
        for (int k = 0; k < CUDA_TP_MAX; k++) {
            if (be->ovl_cs[k])
                cudaStreamDestroy(be->ovl_cs[k]);
            if (be->ovl_evc[k])
                cudaEventDestroy(be->ovl_evc[k]);
            if (be->ovl_evd[k])
                cudaEventDestroy(be->ovl_evd[k]);
            be->ovl_cs[k] = NULL;
            be->ovl_evc[k] = be->ovl_evd[k] = NULL;
        }
        if (be->ovl_evs)
            cudaEventDestroy(be->ovl_evs);
        be->ovl_evs = NULL;
        trace_report(be);
        cudaFree(be->ovl_tr);
        be->ovl_tr = NULL;
        be->ovl_y = NULL;
        be->ovl_units = 0;
        be->pend = 0;
        (void)cudaGetLastError();
    }
    cudaFreeHost(g->ovl_flags);
    g->ovl_flags = NULL;
    g->ovl = 0;
}

/* Publish words[our rank] = t, then wait until every rank's word is >= t (abort-aware). */
static int meet(struct engine_backend *be, unsigned long *words, unsigned long t,
                struct ny_err *err)
{
    struct engine_tp *g = be->tp;
    __atomic_store_n(&words[be->tp_rank], t, __ATOMIC_RELEASE);
    for (int q = 0; q < be->tp_n; q++)
        for (unsigned long it = 0; __atomic_load_n(&words[q], __ATOMIC_ACQUIRE) < t; it++) {
            if (__atomic_load_n(&g->aborted, __ATOMIC_ACQUIRE)) {
                be->failed = 1;
                return NY_ERR(err, NY_E_STATE, "cuda: overlapped tp sum: tensor-parallel group "
                              "aborted");
            }
            if (it > 1000) {
                struct timespec ts = {0, 2000};
                nanosleep(&ts, NULL);
            } else {
                sched_yield();
            }
        }
    return NY_OK;
}

/* The ranks' threads meet, publishing h and G (and, for tp_sum_announce_norm, be->ovl_nx and
 * be->ovl_ob) first. */
static int ovl_barrier(struct engine_backend *be, const float *h, const float *G,
                       struct ny_err *err)
{
    struct engine_tp *g = be->tp;
    const unsigned long b = ++be->ovl_bar;
    g->ovl_pub[be->tp_rank][b & 3].h = h;
    g->ovl_pub[be->tp_rank][b & 3].G = G;
    g->ovl_pub[be->tp_rank][b & 3].x = h ? be->ovl_nx : NULL;
    g->ovl_pub[be->tp_rank][b & 3].ob = h ? be->ovl_ob : NULL;
    int rc = meet(be, g->ovl_arrive, b, err);
    if (rc)
        return rc;
    for (int q = 0; q < be->tp_n; q++) {
        be->ovl_peer_h[q] = g->ovl_pub[q][b & 3].h;
        be->ovl_peer_G[q] = g->ovl_pub[q][b & 3].G;
        be->ovl_peer_x[q] = g->ovl_pub[q][b & 3].x;
        be->ovl_peer_ob[q] = g->ovl_pub[q][b & 3].ob;
    }
    return NY_OK;
}

/* The stream waits for everything queued on tp_stream. */
static int join_tp_stream(struct engine_backend *be, struct ny_err *err)
{
    if (!be->tp_stream)
        return NY_OK;
    CU_CHECK(be, cudaEventRecord(be->ovl_ev[1][0], be->tp_stream), "sums join");
    CU_CHECK(be, cudaStreamWaitEvent(be->stream, be->ovl_ev[1][0], 0), "sums join wait");
    return NY_OK;
}

/* Rows [*a, *a + *len) of chunk k of a unit of m rows from r0. */
static void chunk_rows(int r0, int m, int n, int k, size_t *a, size_t *len)
{
    const int c = (m + n - 1) / n, lo = k * c < m ? k * c : m, hi = lo + c < m ? lo + c : m;
    *a = (size_t)(r0 + lo);
    *len = (size_t)(hi - lo);
}

/* x lagged (xlag): the peers' chunks of unit u (rows [r0, r0 + m)) copied into ours on the
 * stream, once the unit's last sum has landed here (every peer's kernel wrote its chunk). */
static int xlag_unit(struct engine_backend *be, int u, int r0, int m, struct ny_err *err)
{
    const int n = be->tp_n, r = be->tp_rank, dim = be->xlag_dim;
    CU_CHECK(be, cudaStreamWaitEvent(be->stream, be->ovl_ev[1][u], 0), "x gather wait");
    for (int q = 0; q < n; q++) {
        size_t a, len;
        chunk_rows(r0, m, n, q, &a, &len);
        if (q == r || !len)
            continue;
        CU_CHECK(be, cudaMemcpyPeerAsync(be->xlag_x + a * dim, be->device,
                                         be->xlag_peer_x[q] + a * dim, be->tp->bes[q]->device,
                                         len * dim * sizeof(float), be->stream),
                 "x gather: peer's chunk");
    }
    return NY_OK;
}

/* x current on every row again: each unit's peers' chunks copied (nothing when not lagged). */
static int xsync(struct engine_backend *be, struct ny_err *err)
{
    if (!be->xlag)
        return NY_OK;
    be->xlag = 0;
    for (int s = 0, u = 0; s < be->n_seqs; s++) {
        const int r0 = be->seq_start_h[s], m = be->seq_start_h[s + 1] - r0;
        if (m < 2) /* a one-row request: never a unit */
            continue;
        int rc = xlag_unit(be, u++, r0, m, err);
        if (rc)
            return rc;
    }
    return NY_OK;
}

int cuda_tp_ovl_xcheck(struct engine_backend *be, const void *d, struct ny_err *err)
{
    if (!be->xlag || !d || d != (const void *)be->xlag_x)
        return NY_OK;
    return NY_ERR(err, NY_E_STATE, "cuda: x read while its rows are current only on their "
                  "ranks (tp_sum_announce_norm's x_next promised no such read)");
}

/* Both announce ops: nx NULL for tp_sum_announce, else tp_sum_announce_norm's x, w, eps,
 * whether the norm's out is read by the next product alone (trans) and x_next. */
static int ovl_announce(struct engine_backend *be, const struct engine_buf *y, int dim,
                        struct engine_buf *nx, const struct engine_buf *nw, float eps, int trans,
                        int x_next, struct ny_err *err)
{
    be->hint_next = NULL; /* last_read: the hint was for the next op, this one */
    be->ovl_norm = 0;
    if (be->failed)
        return NY_ERR(err, NY_E_STATE, "cuda: the backend failed earlier and is poisoned");
    CU_CHECK(be, cudaSetDevice(be->device), "cudaSetDevice");
    struct engine_tp *g = be->tp;
    if (be->ovl_units) { /* an earlier product never summed: keep its results, wait for them */
        int rc = cuda_tp_ovl_settle(be, err);
        if (rc)
            return rc;
        be->ovl_units = 0;
    }
    be->ovl_y = NULL;
    const struct cuda_step_sets *ss = &be->sets;
    const size_t count = (size_t)be->n_rows * (size_t)(dim > 0 ? dim : 0);
    /* the same answer on every rank: the step, the group and the environment are shared */
    const int accept = g && g->ovl && y && y->wtype == CUDA_W_NONE && dim > 0 && dim % 4 == 0 &&
                       count <= y->n && count > CUDA_TP_P2P_FLOATS && !ss->single_all_n &&
                       ss->units_n >= 1 && count / (size_t)ss->units_n >= ovl_min_floats() &&
                       ss->units_n <= CUDA_OVL_UNITS && be->ovl_seq < INT_MAX - 1;
    /* the norm with the sums: the vectorised norm's widths, x distinct from y and as large */
    const int norm = accept && nx && ovl_norm_wanted(dim) && NORM_V_FITS(dim) &&
                     nx->d != y->d && nx->wtype == CUDA_W_NONE && count <= nx->n && nw &&
                     nw->n == (size_t)dim && nw->wtype != CUDA_W_NONE;
    int rc;
    /* x lagged (x_next): only the add + norm of a sum that continues the chain may find it so */
    if (be->xlag && !(norm && (float *)nx->d == be->xlag_x && dim == be->xlag_dim) &&
        (rc = xsync(be, err)))
        return rc;
    if (!accept)
        return NY_OK;
    if (__atomic_load_n(&g->aborted, __ATOMIC_ACQUIRE)) {
        be->failed = 1;
        return NY_ERR(err, NY_E_STATE, "cuda: tp_sum_announce: tensor-parallel group aborted");
    }
    const int n = be->tp_n;
    const size_t cmax = ((size_t)ss->units_max_len + n - 1) / n;
    const size_t need = (count + (size_t)(n - 1) * cmax * dim) * sizeof(float) +
                        (norm ? count * sizeof(__nv_bfloat16) : 0);
    if (be->scratch_size[CUDA_SCRATCH_OVL] < need) {
        /* growth moves G, which peers read: every rank idle first (the same need on each) */
        if ((rc = cuda_tp_ovl_settle(be, err)) || (rc = join_tp_stream(be, err)) ||
            (rc = cuda_stream_wait(be, "sync before the sums' scratch growth", err)) ||
            (rc = ovl_barrier(be, NULL, NULL, err)))
            return rc;
    }
    void *s;
    if ((rc = cuda_scratch(be, CUDA_SCRATCH_OVL, need, &s, err)))
        return rc;
    be->ovl_G = (float *)s;
    be->ovl_stage = be->ovl_G + count;
    be->ovl_ob = norm ? (__nv_bfloat16 *)(be->ovl_stage + (size_t)(n - 1) * cmax * dim) : NULL;
    be->ovl_nx = norm ? (float *)nx->d : NULL;
    if ((rc = ovl_barrier(be, (const float *)y->d, be->ovl_G, err)))
        return rc;
    be->ovl_seq++;
    be->ovl_y = (const float *)y->d;
    be->ovl_dim = dim;
    be->ovl_norm = norm;
    be->ovl_nw = nw;
    be->ovl_neps = eps;
    be->ovl_ntrans = trans;
    /* x_next: the sums leave x lagged (without it they gather x whole again: xlag ends when
     * they are queued, cuda_tp_ovl_defer_norm) */
    be->ovl_xnext = norm && x_next && ovl_xlag_wanted();
    if (be->ovl_xnext) {
        be->xlag = 1;
        be->xlag_x = be->ovl_nx;
        be->xlag_dim = dim;
        memcpy(be->xlag_peer_x, be->ovl_peer_x, sizeof be->xlag_peer_x);
    }
    return NY_OK;
}

int cuda_tp_sum_announce(struct engine_backend *be, const struct engine_buf *y, int dim,
                         struct ny_err *err)
{
    return ovl_announce(be, y, dim, NULL, NULL, 0.0f, 0, 0, err);
}

int cuda_tp_sum_announce_norm(struct engine_backend *be, const struct engine_buf *y, int dim,
                              struct engine_buf *x, const struct engine_buf *w, float eps,
                              int out_last_read, int x_next, struct ny_err *err)
{
    return ovl_announce(be, y, dim, x, w, eps, out_last_read, x_next, err);
}

/* Copies from each peer on its own stream (default) or all on tp_stream (NY_TP_OVL_STREAMS=0:
 * A/B timing; the same bits). */
static int ovl_streams(void)
{
    static int v = -1;
    return cuda_env_on("NY_TP_OVL_STREAMS", &v);
}

int cuda_tp_ovl_unit(struct engine_backend *be, int u, int r0, int m, struct ny_err *err)
{
    struct engine_tp *g = be->tp;
    const int n = be->tp_n, r = be->tp_rank, dim = be->ovl_dim, many = ovl_streams();
    const unsigned s = be->ovl_seq;
    const size_t cmax = ((size_t)be->sets.units_max_len + n - 1) / n;
    cudaStream_t ts = be->tp_stream;
    int rc;
    stamp(be, be->stream, be->ovl_tr_n, u, 3);
    CU_CHECK(be, cudaEventRecord(be->ovl_ev[0][u], be->stream), "product event");
    const unsigned long t = ++be->ovl_tick;
    if ((rc = flag_op(be, be->stream, flag_at(g, 0, r, u), s, 0, err)) ||
        (rc = meet(be, g->ovl_tick[0], t, err)))
        return rc;
    CU_CHECK(be, cudaStreamWaitEvent(ts, be->ovl_ev[0][u], 0), "product wait");
    size_t a, len;
    chunk_rows(r0, m, n, r, &a, &len);
    struct ovl_ptrs P;
    for (int q = 0, k = 0; q < n; q++) {
        if (q == r) {
            P.p[q] = (const float4 *)(be->ovl_y + a * dim);
            continue;
        }
        /* slot k's stream: after the product (G and staging are free again) and after the last
         * unit's sum kernel (it read the staging) */
        cudaStream_t cs = many ? be->ovl_cs[k] : ts;
        float *st = be->ovl_stage + (size_t)k * cmax * dim;
        P.p[q] = (const float4 *)st;
        if (many) {
            CU_CHECK(be, cudaStreamWaitEvent(cs, be->ovl_ev[0][u], 0), "product wait");
            CU_CHECK(be, cudaStreamWaitEvent(cs, be->ovl_evs, 0), "staging wait");
        }
        if ((rc = flag_op(be, cs, flag_at(g, 0, q, u), s, 1, err)))
            return rc;
        if (len)
            CU_CHECK(be, cudaMemcpyPeerAsync(st, be->device, be->ovl_peer_h[q] + a * dim,
                                             g->bes[q]->device, len * dim * sizeof(float), cs),
                     "sum: peer's chunk");
        if (many) {
            CU_CHECK(be, cudaEventRecord(be->ovl_evc[k], cs), "copy event");
            CU_CHECK(be, cudaStreamWaitEvent(ts, be->ovl_evc[k], 0), "copy wait");
        }
        k++;
    }
    if (len && be->ovl_norm) { /* the chunk's rows summed, added to x and normed */
        float *out = be->ovl_ntrans ? NULL : (float *)be->ovl_y + a * dim;
        const struct engine_buf *w = be->ovl_nw;
        if (w->wtype == CUDA_W_BF16)
            k_ovl_sum_norm<__nv_bfloat16><<<(unsigned)len, NORM_THREADS, 0, ts>>>(
                P, n, dim, be->ovl_nx + a * dim, (const __nv_bfloat16 *)w->d, be->ovl_neps, out,
                be->ovl_ob + a * dim);
        else
            k_ovl_sum_norm<float><<<(unsigned)len, NORM_THREADS, 0, ts>>>(
                P, n, dim, be->ovl_nx + a * dim, (const float *)w->d, be->ovl_neps, out,
                be->ovl_ob + a * dim);
        CU_LAUNCHED(be, "overlapped sum + norm kernel");
    } else if (len) {
        const size_t len4 = len * dim / 4;
        static long most = -1;
        const size_t cap = (size_t)cuda_env_long("NY_TP_OVL_BLOCKS", &most, 1024);
        size_t blocks = (len4 + 255) / 256;
        k_ovl_sum<<<(unsigned)(blocks < cap ? blocks : (cap ? cap : 1)), 256, 0, ts>>>(
            P, n, len4, (float4 *)(be->ovl_G + a * dim));
        CU_LAUNCHED(be, "overlapped sum kernel");
    }
    CU_CHECK(be, cudaEventRecord(be->ovl_evs, ts), "sum kernel event");
    if ((rc = flag_op(be, ts, flag_at(g, 1, r, u), s, 0, err)) ||
        (rc = meet(be, g->ovl_tick[1], t, err)))
        return rc;
    for (int q = 0, k = 0; q < n; q++) {
        if (q == r)
            continue;
        cudaStream_t cs = many ? be->ovl_cs[k] : ts;
        if ((rc = flag_op(be, cs, flag_at(g, 1, q, u), s, 1, err)))
            return rc;
        chunk_rows(r0, m, n, q, &a, &len);
        const int dq = g->bes[q]->device;
        if (len && be->ovl_norm) { /* the peer's chunk of x (unless lagged), shadow, out */
            if (!be->ovl_xnext)
                CU_CHECK(be, cudaMemcpyPeerAsync(be->ovl_nx + a * dim, be->device,
                                                 be->ovl_peer_x[q] + a * dim, dq,
                                                 len * dim * sizeof(float), cs),
                         "sum: peer's chunk of x");
            CU_CHECK(be, cudaMemcpyPeerAsync(be->ovl_ob + a * dim, be->device,
                                             be->ovl_peer_ob[q] + a * dim, dq,
                                             len * dim * sizeof(__nv_bfloat16), cs),
                     "sum: peer's chunk of the shadow");
            if (!be->ovl_ntrans)
                CU_CHECK(be, cudaMemcpyPeerAsync((float *)be->ovl_y + a * dim, be->device,
                                                 be->ovl_peer_h[q] + a * dim, dq,
                                                 len * dim * sizeof(float), cs),
                         "sum: peer's chunk of the norm");
        } else if (len) {
            CU_CHECK(be, cudaMemcpyPeerAsync(be->ovl_G + a * dim, be->device,
                                             be->ovl_peer_G[q] + a * dim, dq,
                                             len * dim * sizeof(float), cs),
                     "sum: peer's summed chunk");
        }
        if (many) {
            CU_CHECK(be, cudaEventRecord(be->ovl_evd[k], cs), "copy event");
            CU_CHECK(be, cudaStreamWaitEvent(ts, be->ovl_evd[k], 0), "copy wait");
        }
        k++;
    }
    CU_CHECK(be, cudaEventRecord(be->ovl_ev[1][u], ts), "sum event");
    stamp(be, ts, be->ovl_tr_n, u, 2);
    return NY_OK;
}

/* The stream waits for the last unit's sum (tp_stream is in order: all of them). */
static int wait_sums(struct engine_backend *be, int units, struct ny_err *err)
{
    CU_CHECK(be, cudaStreamWaitEvent(be->stream, be->ovl_ev[1][units - 1], 0), "sums wait");
    return NY_OK;
}

int cuda_tp_ovl_allreduce(struct engine_backend *be, struct engine_buf *x, struct ny_err *err)
{
    int rc = cuda_tp_ovl_settle(be, err); /* a pending norm first; waits for active sums */
    if (rc || !be->ovl_units)
        return rc;
    const int match = (const float *)x->d == be->ovl_y;
    const size_t count = (size_t)be->n_rows * be->ovl_dim;
    be->ovl_units = 0;
    be->ovl_y = NULL;
    if (be->ovl_norm) { /* the units summed with their norms: x changed, not a plain sum */
        be->ovl_norm = 0;
        be->failed = 1;
        return NY_ERR(err, NY_E_STATE, "cuda: tp_allreduce after tp_sum_announce_norm");
    }
    if (!match)
        return 0;
    CU_CHECK(be, cudaMemcpyAsync(x->d, be->ovl_G, count * sizeof(float),
                                 cudaMemcpyDeviceToDevice, be->stream), "sums copy");
    be->ovl_taken++;
    return 1;
}

/* The armed product's sums become the pending add + norm (done: it runs with the sums, trans:
 * its out left to the next product). */
static void pend_arm(struct engine_backend *be, struct engine_buf *x, const struct engine_buf *w,
                     int dim, float eps, struct engine_buf *out, __nv_bfloat16 *ob, int done,
                     int trans)
{
    be->ovl_taken++;
    be->pend_tr = be->ovl_tr ? be->ovl_tr_n++ : -1;
    be->pend = 1;
    be->pend_done = done;
    be->pend_trans = trans;
    be->pend_units = be->ovl_units;
    be->pend_dim = dim;
    be->pend_x = (float *)x->d;
    be->pend_out = (float *)out->d;
    be->pend_w = w;
    be->pend_eps = eps;
    be->pend_ob = ob;
    be->ovl_units = 0;
    be->ovl_y = NULL;
}

int cuda_tp_ovl_defer_norm(struct engine_backend *be, struct engine_buf *x, struct engine_buf *h,
                           const struct engine_buf *w, int dim, float eps, struct engine_buf *out,
                           struct ny_err *err)
{
    int rc;
    if (be->pend && (rc = cuda_tp_ovl_settle(be, err)))
        return rc;
    /* x lagged: only the announced call below may find it so (anything else reads all of x) */
    if (!(be->ovl_norm && be->ovl_units) && (rc = xsync(be, err)))
        return rc;
    /* the add + norm ran with the sums (tp_sum_announce_norm): only the announced call fits (no
     * unit summed: x is as it was, the plain handling below) */
    if (be->ovl_norm && be->ovl_units) {
        be->ovl_norm = 0;
        if ((const float *)h->d != be->ovl_y || dim != be->ovl_dim ||
            (float *)x->d != be->ovl_nx || w != be->ovl_nw || eps != be->ovl_neps ||
            out->d != h->d) {
            be->failed = 1;
            return NY_ERR(err, NY_E_STATE, "cuda: tp_allreduce_add_rmsnorm differs from its "
                          "tp_sum_announce_norm");
        }
        pend_arm(be, x, w, dim, eps, out, be->ovl_ob, 1, be->ovl_ntrans);
        if (!be->ovl_xnext) /* every unit's sum gathers x: current once they land */
            be->xlag = 0;
        return 1;
    }
    be->ovl_norm = 0;
    if (!be->ovl_units || (const float *)h->d != be->ovl_y || dim != be->ovl_dim) {
        if (be->ovl_units && (rc = cuda_tp_ovl_settle(be, err)))
            return rc;
        be->ovl_units = 0;
        be->ovl_y = NULL;
        return 0;
    }
    const size_t count = (size_t)be->n_rows * dim;
    if (x->d == h->d || x->d == out->d || count > x->n || count > out->n ||
        w->n != (size_t)dim || w->wtype == CUDA_W_NONE) { /* the caller's checks report it */
        rc = cuda_tp_ovl_settle(be, err); /* the peers' copies of h done; h: this rank's partial */
        be->ovl_units = 0;
        be->ovl_y = NULL;
        return rc;
    }
    __nv_bfloat16 *ob = NULL; /* the shadow, as the vectorised norm writes it */
    if (dim <= NORM_THREADS * 4 * NORM_V && (rc = cuda_shadow_room(be, dim, &ob, err)))
        return rc;
    pend_arm(be, x, w, dim, eps, out, ob, 0, 0);
    return 1;
}

int cuda_tp_ovl_norm_unit(struct engine_backend *be, int u, int r0, int m, int shadow_only,
                          struct ny_err *err)
{
    stamp(be, be->stream, be->pend_tr, u, 0);
    CU_CHECK(be, cudaStreamWaitEvent(be->stream, be->ovl_ev[1][u], 0), "unit sum wait");
    stamp(be, be->stream, be->pend_tr, u, 1);
    if (be->pend_done) { /* x (unless lagged), the shadow and out (unless trans) gathered */
        if (!be->pend_trans || shadow_only)
            return NY_OK;
        /* out's rows after all: the norm of the new x, the unit's rows of x gathered first */
        int rc = be->xlag ? xlag_unit(be, u, r0, m, err) : NY_OK;
        return rc ? rc
                  : cuda_norm_rows(be, r0, m, be->pend_x, NULL, be->pend_w, be->pend_dim,
                                   be->pend_eps, be->pend_out, NULL, err);
    }
    return cuda_norm_rows(be, r0, m, be->pend_x, be->ovl_G, be->pend_w, be->pend_dim,
                          be->pend_eps, shadow_only && be->pend_ob ? NULL : be->pend_out,
                          be->pend_ob, err);
}

int cuda_tp_ovl_settle(struct engine_backend *be, struct ny_err *err)
{
    int rc;
    if (be->pend) {
        be->pend = 0;
        if ((rc = wait_sums(be, be->pend_units, err)))
            return rc;
        /* with the sums (pend_done) the norm ran already, but for out's rows left to the next
         * product (pend_trans), which an op reading them fp32 gets here: the norm of the new x */
        const float *add = be->pend_done ? NULL : be->ovl_G;
        if ((!be->pend_done || be->pend_trans) &&
            ((rc = xsync(be, err)) ||
             (rc = cuda_norm_all(be, be->pend_x, add, be->pend_w, be->pend_dim, be->pend_eps,
                                 be->pend_out, err))))
            return rc;
    }
    return be->ovl_units ? wait_sums(be, be->ovl_units, err) : NY_OK;
}

int cuda_tp_ovl_drop(struct engine_backend *be, struct ny_err *err)
{
    be->pend = 0;
    be->ovl_norm = 0;
    be->xlag = 0; /* the step is over: x's lagged rows stay as they are */
    be->ovl_units = 0;
    be->ovl_y = NULL;
    int rc = join_tp_stream(be, err);
    if (be->ovl_tr)
        trace_report(be); /* the step before this one */
    return rc;
}

extern "C" unsigned engine_cuda_tp_overlapped(const struct engine_backend *be)
{
    return be ? be->ovl_taken : 0;
}
