/* cuda_tp.cu — tensor parallelism over NCCL (built only with NY_HAVE_NCCL): the group
 * (tp_create/tp_abort/tp_destroy), the deterministic all-reduce and the vocabulary-sharded argmax.
 * Small sums go peer to peer where the devices allow it (cuda_tp_p2p.cu, same arithmetic).
 *
 * SUMS: NCCL only moves bytes here (AllGather, Send/Recv); it never adds. Element e of an
 * all-reduce is ((p0[e] + p1[e]) + p2[e]) + ... in fp32, rank order, computed by k_sum_ranks on
 * whichever rank owns e's chunk. So the result does not depend on the row count, the chunking,
 * the transport, or the NCCL algorithm, protocol and channel settings pinned in tp_pin_env (those
 * are pinned for reproducible timing and for safety on shared machines, not for the values).
 *
 * THREADS: tp_create runs on one thread; afterwards rank i is driven by its own thread, which alone
 * touches comm i (including ncclCommAbort, see cuda_stream_wait). tp_abort only sets an atomic
 * flag; tp_destroy runs on one thread after the ranks' last op. */
#include <nccl.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_int.cuh"

/* All-reduces of at most this many floats (rows * dim) gather every rank's partials whole; larger
 * ones go chunked (all-to-all of chunks, reduce a chunk, gather the reduced chunks). */
#define TP_SMALL_FLOATS ((size_t)64 * 1024)
/* Floats per peer of the connection warm-up in tp_create. */
#define TP_WARM_FLOATS ((size_t)1 << 20)

#define COMM(be) ((ncclComm_t)(be)->tp_comm)

/* An NCCL failure poisons this rank and aborts the group, so that peers waiting on it return.
 * A non-sticky CUDA status NCCL may leave as the thread's last error (a "not ready" of a query)
 * is cleared, so that the next launch check (CU_LAUNCHED) does not take it for its own. */
#define NC_CHECK(be, call, what)                                                                  \
    do {                                                                                          \
        ncclResult_t r_ = (call);                                                                 \
        (void)cudaGetLastError();                                                                 \
        if (r_ != ncclSuccess) {                                                                  \
            __atomic_store_n(&(be)->tp->aborted, 1, __ATOMIC_RELEASE);                            \
            return cuda_fail((be), err, __FILE__, __LINE__, what, ncclGetErrorString(r_));        \
        }                                                                                         \
    } while (0)

void cuda_tp_abort_own(struct engine_backend *be)
{
    if (!be->tp_comm || be->tp_comm_aborted)
        return;
    cudaSetDevice(be->device);
    ncclCommAbort(COMM(be));
    (void)cudaGetLastError(); /* see NC_CHECK */
    be->tp_comm_aborted = 1;
}

/* Pin NCCL's choices before its first communicator reads the environment. NVLink multicast (NVLS)
 * stays off whatever the user set: it must never be used on the shared machines. The others keep
 * a user's value (overwrite 0); they change speed only, never our sums (see SUMS above). */
static void tp_pin_env(void)
{
    setenv("NCCL_NVLS_ENABLE", "0", 1);
    setenv("NCCL_ALGO", "Ring", 0);
    /* LL for the small gathers of decoding (latency), Simple for prefill's large transfers:
     * NCCL picks by size from this fixed set, the same way every run */
    setenv("NCCL_PROTO", "LL,Simple", 0);
    setenv("NCCL_MIN_NCHANNELS", "32", 0);
    setenv("NCCL_MAX_NCHANNELS", "32", 0);
    /* one launch per thread, no cross-thread launch barrier (a stuck peer must not block us) */
    setenv("NCCL_LAUNCH_MODE", "PARALLEL", 0);
    ny_log_info("cuda tp: NCCL_NVLS_ENABLE=%s NCCL_ALGO=%s NCCL_PROTO=%s NCCL_MIN_NCHANNELS=%s "
                "NCCL_MAX_NCHANNELS=%s NCCL_LAUNCH_MODE=%s",
                getenv("NCCL_NVLS_ENABLE"), getenv("NCCL_ALGO"), getenv("NCCL_PROTO"),
                getenv("NCCL_MIN_NCHANNELS"), getenv("NCCL_MAX_NCHANNELS"),
                getenv("NCCL_LAUNCH_MODE"));
}

/* out[e] = ((S[e] + S[stride + e]) + S[2 stride + e]) + ..., n terms, e < len: rank order. */
__global__ static void k_sum_ranks(const float *S, int n, size_t stride, size_t len, float *out)
{
    for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < len;
         e += (size_t)gridDim.x * blockDim.x) {
        float acc = S[e];
        for (int k = 1; k < n; k++)
            acc = __fadd_rn(acc, S[(size_t)k * stride + e]);
        out[e] = acc;
    }
}

static int pairs_host(struct engine_backend *be, size_t n, struct ny_err *err);

static unsigned grid_for(size_t n)
{
    size_t b = (n + 255) / 256;
    return (unsigned)(b < 4096 ? (b ? b : 1) : 4096);
}

/* Run one AllGather and one all-to-all Send/Recv on every communicator from this thread, so
 * that NCCL connects its rings and peer channels now: later, a rank entering a collective only
 * enqueues work and never blocks on the host waiting for a peer (which an abort could not end). */
static int tp_warmup(struct engine_tp *g, struct ny_err *err)
{
    int n = g->n;
    const size_t c = TP_WARM_FLOATS;
    float *buf[CUDA_TP_MAX];
    for (int i = 0; i < n; i++) {
        struct engine_backend *be = g->bes[i];
        CU_CHECK(be, cudaSetDevice(be->device), "cudaSetDevice");
        void *p;
        int rc = cuda_scratch(be, CUDA_SCRATCH_TP, 2 * (size_t)n * c * sizeof(float), &p, err);
        if (rc)
            return rc;
        buf[i] = (float *)p;
        CU_CHECK(be, cudaMemsetAsync(p, 0, 2 * (size_t)n * c * sizeof(float), be->stream),
                 "warm-up memset");
    }
    for (int round = 0; round < 3; round++) {
        ncclResult_t r = ncclGroupStart(), r2;
        for (int i = 0; r == ncclSuccess && i < n; i++) {
            struct engine_backend *be = g->bes[i];
            if (round == 0) /* small gather: 1 float per rank */
                r = ncclAllGather(buf[i] + (size_t)n * c + i, buf[i] + (size_t)n * c, 1,
                                  ncclFloat, COMM(be), be->stream);
            else if (round == 1) /* large gather */
                r = ncclAllGather(buf[i] + (size_t)i * c, buf[i], c, ncclFloat, COMM(be),
                                  be->stream);
            else
                for (int k = 0; r == ncclSuccess && k < n; k++)
                    if (k != i) {
                        r = ncclSend(buf[i] + (size_t)k * c, c, ncclFloat, k, COMM(be),
                                     be->stream);
                        if (r == ncclSuccess)
                            r = ncclRecv(buf[i] + (size_t)(n + k) * c, c, ncclFloat, k,
                                         COMM(be), be->stream);
                    }
        }
        r2 = ncclGroupEnd();
        (void)cudaGetLastError(); /* see NC_CHECK */
        if (r == ncclSuccess)
            r = r2;
        if (r != ncclSuccess)
            return NY_ERR(err, NY_E_DEVICE, "nccl: warm-up round %d: %s", round,
                          ncclGetErrorString(r));
    }
    for (int i = 0; i < n; i++) {
        CU_CHECK(g->bes[i], cudaSetDevice(g->bes[i]->device), "cudaSetDevice");
        int rc = cuda_stream_wait(g->bes[i], "tensor-parallel warm-up", err);
        if (!rc) /* pinned argmax room now, not between collectives */
            rc = pairs_host(g->bes[i], 256, err);
        if (rc)
            return rc;
    }
    return NY_OK;
}

static void tp_unjoin(struct engine_tp *g, int abort_comms)
{
    for (int i = 0; i < g->n; i++) {
        struct engine_backend *be = g->bes[i];
        if (be->tp_comm && !be->tp_comm_aborted) {
            cudaSetDevice(be->device);
            if (abort_comms)
                ncclCommAbort(COMM(be));
            else
                ncclCommDestroy(COMM(be));
            (void)cudaGetLastError(); /* see NC_CHECK */
        }
        be->tp = NULL;
        be->tp_comm = NULL;
        be->tp_comm_aborted = 0;
        be->tp_rank = 0;
        be->tp_n = 0;
    }
}

int cuda_tp_create(struct engine_backend *const *bes, int n, struct engine_tp **out,
                   struct ny_err *err)
{
    if (n < 2 || n > CUDA_TP_MAX)
        return NY_ERR(err, NY_E_INVALID, "cuda tp: a group of %d instances (2 to %d)", n,
                      CUDA_TP_MAX);
    int devs[CUDA_TP_MAX];
    for (int i = 0; i < n; i++) {
        if (!bes[i])
            return NY_ERR(err, NY_E_INVALID, "cuda tp: instance %d is NULL", i);
        if (bes[i]->failed || bes[i]->tp)
            return NY_ERR(err, NY_E_STATE, "cuda tp: instance %d is %s", i,
                          bes[i]->failed ? "poisoned" : "already in a group");
        devs[i] = bes[i]->device;
        for (int k = 0; k < i; k++)
            if (devs[k] == devs[i])
                return NY_ERR(err, NY_E_INVALID, "cuda tp: ranks %d and %d share device %d", k,
                              i, devs[i]);
    }
    struct engine_tp *g = (struct engine_tp *)ny_calloc(1, sizeof *g);
    if (!g)
        return NY_ERR(err, NY_E_NOMEM, "cuda tp: out of memory");
    tp_pin_env();
    ncclComm_t comms[CUDA_TP_MAX];
    ncclResult_t r = ncclCommInitAll(comms, n, devs);
    (void)cudaGetLastError(); /* see NC_CHECK */
    if (r != ncclSuccess) {
        ny_free(g);
        return NY_ERR(err, NY_E_DEVICE, "nccl: ncclCommInitAll over %d devices: %s", n,
                      ncclGetErrorString(r));
    }
    g->n = n;
    for (int i = 0; i < n; i++) {
        g->bes[i] = bes[i];
        bes[i]->tp = g;
        bes[i]->tp_rank = i;
        bes[i]->tp_n = n;
        bes[i]->tp_comm = comms[i];
        bes[i]->tp_comm_aborted = 0;
    }
    int rc = tp_warmup(g, err);
    if (!rc)
        rc = cuda_tp_p2p_open(g, err);
    if (!rc)
        rc = cuda_tp_ovl_open(g, err);
    if (rc) {
        cuda_tp_ovl_close(g);
        cuda_tp_p2p_close(g);
        tp_unjoin(g, 1);
        ny_free(g);
        return rc;
    }
    int v = 0;
    ncclGetVersion(&v);
    ny_log_info("cuda tp: group of %d ranks (NCCL %d.%d.%d), rank 0 on device %d", n, v / 10000,
                (v / 100) % 100, v % 100, devs[0]);
    *out = g;
    return NY_OK;
}

void cuda_tp_abort(struct engine_tp *g)
{
    if (g) {
        __atomic_store_n(&g->aborted, 1, __ATOMIC_RELEASE);
        cuda_tp_p2p_abort(g); /* ends sum kernels waiting for a peer */
        cuda_tp_ovl_abort(g); /* and streams waiting on a peer's flag */
    }
}

/* After an abort the remaining communicators are aborted too (a rank that never waited may still
 * have a collective stuck on its stream; aborting ends it); otherwise they are destroyed. */
void cuda_tp_destroy(struct engine_tp *g)
{
    if (!g)
        return;
    cuda_tp_ovl_close(g);
    cuda_tp_p2p_close(g);
    tp_unjoin(g, __atomic_load_n(&g->aborted, __ATOMIC_ACQUIRE));
    ny_free(g);
}

/* Common entry of the collectives: in a live group, on the rank's device. */
static int tp_enter(struct engine_backend *be, const char *what, struct ny_err *err)
{
    be->hint_next = NULL; /* last_read: the hint was for the next op, this one */
    if (!be->tp)
        return NY_ERR(err, NY_E_STATE, "cuda: %s outside a tensor-parallel group", what);
    if (be->failed)
        return NY_ERR(err, NY_E_STATE, "cuda: the backend failed earlier and is poisoned");
    if (__atomic_load_n(&be->tp->aborted, __ATOMIC_ACQUIRE)) {
        cuda_tp_abort_own(be);
        be->failed = 1;
        return NY_ERR(err, NY_E_STATE, "cuda: %s: tensor-parallel group aborted", what);
    }
    CU_CHECK(be, cudaSetDevice(be->device), "cudaSetDevice");
    return NY_OK;
}

/* count <= TP_SMALL_FLOATS: gather all partials [n][count], sum them into x. */
static int allreduce_small(struct engine_backend *be, float *x, size_t count, struct ny_err *err)
{
    int n = be->tp_n;
    void *s;
    int rc = cuda_scratch(be, CUDA_SCRATCH_TP, (size_t)n * count * sizeof(float), &s, err);
    if (rc)
        return rc;
    NC_CHECK(be, ncclAllGather(x, s, count, ncclFloat, COMM(be), be->stream), "allgather");
    k_sum_ranks<<<grid_for(count), 256, 0, be->stream>>>((const float *)s, n, count, count, x);
    CU_LAUNCHED(be, "tp sum kernel");
    return NY_OK;
}

/* Larger: chunk j = [j c, min((j + 1) c, count)) with c = ceil(count / n). Rank r gathers every
 * rank's chunk r (all-to-all), sums it in rank order, and the reduced chunks are gathered back:
 * in place into x when n divides count, else through scratch. */
static int allreduce_large(struct engine_backend *be, float *x, size_t count, struct ny_err *err)
{
    int n = be->tp_n, r = be->tp_rank;
    size_t c = (count + (size_t)n - 1) / (size_t)n;
    int in_place = c * (size_t)n == count;
    size_t len_r = count - (size_t)r * c < c ? count - (size_t)r * c : c;
    void *s;
    size_t floats = in_place ? (size_t)n * c : (size_t)(2 * n + 1) * c;
    int rc = cuda_scratch(be, CUDA_SCRATCH_TP, floats * sizeof(float), &s, err);
    if (rc)
        return rc;
    float *R = (float *)s;                 /* [n][c]: every rank's chunk r */
    float *G = R + (size_t)n * c;          /* [c] the reduced chunk (not in place) */
    float *T = G + c;                      /* [n][c] the gathered reduced chunks (not in place) */
    CU_CHECK(be, cudaMemcpyAsync(R + (size_t)r * c, x + (size_t)r * c, len_r * sizeof(float),
                                 cudaMemcpyDeviceToDevice, be->stream), "own chunk");
    ncclResult_t res = ncclGroupStart(), r2;
    for (int k = 0; res == ncclSuccess && k < n; k++) {
        if (k == r)
            continue;
        size_t len_k = count - (size_t)k * c < c ? count - (size_t)k * c : c;
        res = ncclSend(x + (size_t)k * c, len_k, ncclFloat, k, COMM(be), be->stream);
        if (res == ncclSuccess)
            res = ncclRecv(R + (size_t)k * c, len_r, ncclFloat, k, COMM(be), be->stream);
    }
    r2 = ncclGroupEnd();
    NC_CHECK(be, res != ncclSuccess ? res : r2, "all-to-all of chunks");
    float *dst = in_place ? x + (size_t)r * c : G;
    k_sum_ranks<<<grid_for(len_r), 256, 0, be->stream>>>(R, n, c, len_r, dst);
    CU_LAUNCHED(be, "tp sum kernel");
    if (in_place) {
        NC_CHECK(be, ncclAllGather(dst, x, c, ncclFloat, COMM(be), be->stream), "allgather");
        return NY_OK;
    }
    /* the padding of the last chunk (c - len_r floats of G) is gathered but never copied to x */
    NC_CHECK(be, ncclAllGather(G, T, c, ncclFloat, COMM(be), be->stream), "allgather");
    CU_CHECK(be, cudaMemcpyAsync(x, T, count * sizeof(float), cudaMemcpyDeviceToDevice,
                                 be->stream), "copy back");
    return NY_OK;
}

int cuda_tp_allreduce(struct engine_backend *be, struct engine_buf *x, int dim,
                      struct ny_err *err)
{
    be->shadow_src = NULL; /* x changes in place */
    int rc = tp_enter(be, "tp_allreduce", err);
    if (rc)
        return rc;
    size_t count = (size_t)be->n_rows * (size_t)(dim > 0 ? dim : 0);
    if (dim <= 0 || x->wtype != CUDA_W_NONE || count > x->n)
        return NY_ERR(err, NY_E_RANGE, "cuda tp_allreduce: %d rows x %d outside the buffer",
                      be->n_rows, dim);
    if (count == 0)
        return NY_OK;
    rc = cuda_tp_ovl_allreduce(be, x, err); /* an overlapped product: its sums are done */
    if (rc)
        return rc < 0 ? rc : NY_OK;
    if (be->tp->p2p && count <= CUDA_TP_P2P_FLOATS)
        return cuda_tp_p2p_sum(be, (float *)x->d, count, err);
    if (count <= TP_SMALL_FLOATS)
        return allreduce_small(be, (float *)x->d, count, err);
    return allreduce_large(be, (float *)x->d, count, err);
}

int cuda_tp_allreduce_add_rmsnorm(struct engine_backend *be, struct engine_buf *x,
                                  struct engine_buf *h, const struct engine_buf *w, int dim,
                                  float eps, struct engine_buf *out, struct ny_err *err)
{
    be->shadow_src = NULL; /* h and out change (the add + norm below may mirror out anew) */
    int rc = tp_enter(be, "tp_allreduce_add_rmsnorm", err);
    if (!rc) /* an overlapped product: the add + norm is left to the next op */
        rc = cuda_tp_ovl_defer_norm(be, x, h, w, dim, eps, out, err);
    if (rc)
        return rc < 0 ? rc : NY_OK;
    return cuda_tp_p2p_add_norm(be, x, h, w, dim, eps, out, err);
}

/* Pinned host room for n pairs (see the prototype above). */
static int pairs_host(struct engine_backend *be, size_t n, struct ny_err *err)
{
    if (be->tp_pairs_cap >= n)
        return NY_OK;
    /* page-locking memory may wait on the device: drain this rank's stream first, abort-aware */
    int rc = cuda_stream_wait(be, "sync before pinned growth", err);
    if (rc)
        return rc;
    cudaFreeHost(be->tp_pairs_h);
    be->tp_pairs_h = NULL;
    be->tp_pairs_cap = 0;
    size_t want = n < 256 ? 256 : n * 2;
    CU_CHECK(be, cudaMallocHost(&be->tp_pairs_h, want * sizeof(struct cuda_am_pair)),
             "cudaMallocHost");
    be->tp_pairs_cap = want;
    return NY_OK;
}

int cuda_tp_argmax(struct engine_backend *be, const struct engine_buf *logits, int n,
                   int vocab_local, int vocab_off, int32_t *ids, struct ny_err *err)
{
    int rc = tp_enter(be, "tp_argmax", err);
    if (!rc && cuda_ovl_busy(be))
        rc = cuda_tp_ovl_settle(be, err);
    if (rc)
        return rc;
    if (n < 0 || vocab_local <= 0 || vocab_off < 0 || vocab_off > INT32_MAX - vocab_local ||
        logits->wtype != CUDA_W_NONE || (size_t)n * vocab_local > logits->n)
        return NY_ERR(err, NY_E_RANGE, "cuda tp_argmax: %d rows x %d (ids from %d) outside the "
                      "buffer", n, vocab_local, vocab_off);
    if (n == 0)
        return NY_OK;
    int tp = be->tp_n, r = be->tp_rank;
    size_t total = (size_t)tp * n;
    void *s;
    rc = cuda_scratch(be, CUDA_SCRATCH_TP, total * sizeof(struct cuda_am_pair), &s, err);
    if (!rc)
        rc = pairs_host(be, total, err);
    if (rc)
        return rc;
    struct cuda_am_pair *all = (struct cuda_am_pair *)s; /* [tp][n], rank r's row at r n */
    rc = cuda_argmax_pairs(be, (const float *)logits->d, n, vocab_local, vocab_off,
                           all + (size_t)r * n, err);
    if (rc)
        return rc;
    /* the pairs travel as raw 32-bit words: a copy, no arithmetic */
    NC_CHECK(be, ncclAllGather(all + (size_t)r * n, all, 2 * (size_t)n, ncclInt32, COMM(be),
                               be->stream), "allgather of argmax candidates");
    struct cuda_am_pair *h = (struct cuda_am_pair *)be->tp_pairs_h;
    rc = cuda_read_host(be, h, all, total * sizeof *h, "tp_argmax read-back", err);
    if (rc)
        return rc;
    for (int i = 0; i < n; i++) {
        float bv = 0.0f;
        int bj = -1;
        for (int k = 0; k < tp; k++) {
            const struct cuda_am_pair *p = &h[(size_t)k * n + i];
            if (cuda_am_better(p->v, p->j, bv, bj)) {
                bv = p->v;
                bj = p->j;
            }
        }
        ids[i] = bj < 0 ? 0 : bj;
    }
    return NY_OK;
}
