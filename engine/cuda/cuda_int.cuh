/* cuda_int.cuh — private to engine/cuda/: the CUDA backend's objects (buffers, KV cache, the
 * backend instance), the error-check macros and the launchers each op-family .cu file provides.
 * Included only by .cu files (it includes CUDA headers). */
#ifndef NY_ENGINE_CUDA_INT_CUH
#define NY_ENGINE_CUDA_INT_CUH

#include <cublasLt.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <stdint.h>

#include "engine_backend_int.h"

/* ---- error checks: every API return code, and the last error after each launch ---------------- */
#define CU_CHECK(be, call, what)                                                                  \
    do {                                                                                          \
        cudaError_t e_ = (call);                                                                  \
        if (e_ != cudaSuccess)                                                                    \
            return cuda_fail((be), err, __FILE__, __LINE__, what, cudaGetErrorString(e_));        \
    } while (0)
#define CU_LAUNCHED(be, what) CU_CHECK(be, cudaGetLastError(), what)

/* Programmatic dependent launch (sm_90). A kernel started by cuda_launch may begin while the
 * kernel before it on the stream is finishing: it must call pdl_wait() before it reads or writes
 * anything an earlier kernel touches (reading weights before it is allowed: that is the point —
 * the decode GEMMs start streaming their weights during the previous kernel's tail), and calls
 * pdl_trigger() once it no longer needs its SM slots to itself so the next kernel can start.
 * pdl_wait() returns once every earlier kernel has completed and its writes are visible, so no
 * result depends on the overlap. Both are no-ops for a kernel launched without the attribute.
 * The attribute is set for steps of at most cuda_pdl_max_rows() rows: CUDA_PDL_MAX_ROWS (measured
 * on an H100, 8B shape: decode at batch 1 and 4 gains 6-7%, at batch 16 it lost 11% with the
 * kernels of the time), NY_PDL_ROWS=N for A/B timing, none with NY_PDL=0. */
#define CUDA_PDL_MAX_ROWS 8
__device__ __forceinline__ static void pdl_wait(void)
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;\n" ::: "memory");
#endif
}
__device__ __forceinline__ static void pdl_trigger(void)
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
#endif
}
int cuda_pdl_max_rows(void);

/* A launch under programmatic dependent launch where rows allow it; cluster > 0: in clusters of
 * that many blocks along x (sm_90; grid.x a multiple of it). */
template <typename... KArgs, typename... Args>
static inline cudaError_t cuda_launch_cl(void (*kernel)(KArgs...), dim3 grid, dim3 block,
                                         size_t shm, cudaStream_t st, int rows, int cluster,
                                         Args... args)
{
    cudaLaunchAttribute attr[2];
    attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr[0].val.programmaticStreamSerializationAllowed =
        rows <= cuda_pdl_max_rows();
    attr[1].id = cudaLaunchAttributeClusterDimension;
    attr[1].val.clusterDim.x = (unsigned)cluster;
    attr[1].val.clusterDim.y = 1;
    attr[1].val.clusterDim.z = 1;
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = grid;
    cfg.blockDim = block;
    cfg.dynamicSmemBytes = shm;
    cfg.stream = st;
    cfg.attrs = attr;
    cfg.numAttrs = cluster > 0 ? 2 : 1;
    return cudaLaunchKernelEx(&cfg, kernel, static_cast<KArgs>(args)...);
}
template <typename... KArgs, typename... Args>
static inline cudaError_t cuda_launch(void (*kernel)(KArgs...), dim3 grid, dim3 block, size_t shm,
                                      cudaStream_t st, int rows, Args... args)
{
    return cuda_launch_cl(kernel, grid, block, shm, st, rows, 0, args...);
}
/* Launch through cuda_launch and return NY_E_DEVICE (poisoning be) if the launch fails. */
#define CU_LAUNCH(be, what, kernel, grid, block, shm, ...)                                         \
    CU_CHECK(be, cuda_launch(kernel, grid, block, shm, (be)->stream, (be)->n_rows, __VA_ARGS__), \
             what)
#define CUBLAS_CHECK(be, call, what)                                                              \
    do {                                                                                          \
        cublasStatus_t s_ = (call);                                                               \
        if (s_ != CUBLAS_STATUS_SUCCESS)                                                          \
            return cuda_fail((be), err, __FILE__, __LINE__, what, cublasLtGetStatusString(s_));   \
    } while (0)

/* Weight storage on the device. */
enum cuda_wtype { CUDA_W_NONE = 0, CUDA_W_BF16 = 1, CUDA_W_F32 = 2 };

/* A device buffer: an fp32 activation buffer (wtype NONE) or an uploaded weight [rows, cols]. */
struct engine_buf {
    void *d;
    size_t n;        /* elements */
    int wtype;       /* enum cuda_wtype */
    size_t rows, cols;
};

/* Paged KV cache: pages of CUDA_KV_PAGE tokens from one pool per layer; each slot maps its
 * logical pages to pool pages through a block table (host copy + device copy). */
#define CUDA_KV_PAGE 64
struct engine_kv {
    struct engine_kv_shape shape;
    int bf16;             /* 1: bf16 keys/values, 0: fp32 */
    int pages_per_slot;   /* ceil(max_tokens / CUDA_KV_PAGE) */
    int n_pages;          /* pool size (pages per layer) */
    void *k, *v;          /* [n_layers][n_pages][CUDA_KV_PAGE][n_kv_heads][head_dim] */
    int *table_h;         /* [n_slots][pages_per_slot], -1 = unmapped */
    int *table_d;
    int *free_pages;      /* stack of free pool pages */
    int n_free;
    int table_dirty;
};

/* Cached cuBLASLt plan for one GEMM shape (bf16 x bf16 -> fp32, no split-K). */
struct cuda_gemm_plan {
    int m, n, k, accumulate;
    int batch, ld; /* split-K plans: batch slices of k along rows of length ld; else 1 and k */
    int ldx;       /* X's row length (ld, or wider: a slice of stacked LoRA rows) */
    cublasLtMatmulDesc_t op;
    cublasLtMatrixLayout_t la, lb, lc;
    cublasLtMatmulAlgo_t algo;
};
#define CUDA_GEMM_PLANS 64

/* The LoRA A matrices of one adapter over the parts of one input (q, k, v; gate, up) copied once
 * into one [n·rank, K] bf16 matrix, so that a prefill unit's A products are one GEMM
 * (cuda_gemm.cu). An entry goes when any of its sources is freed (cuda_astack_drop). */
struct cuda_astack {
    const void *src[ENGINE_MATMUL_MAX_PARTS];
    int n, rank, K;
    void *d;
};

/* Device row lists of the current step (offsets into engine_backend.sets_d), built once by
 * step_begin so that a GEMM never uploads indices (a pageable upload can stall the stream). */
#define CUDA_MAX_ADAPTERS 64
struct cuda_step_sets {
    int single_all_off, single_all_n;   /* rows of one-row requests (decode rows) */
    int n_adapters;                     /* 1 + the largest adapter index in the step */
    int single_off[CUDA_MAX_ADAPTERS], single_n[CUDA_MAX_ADAPTERS]; /* those rows, by adapter */
    int all_off[CUDA_MAX_ADAPTERS], all_n[CUDA_MAX_ADAPTERS];       /* all rows, by adapter */
    int units_off, units_n, units_max_len; /* requests of >= 2 rows: {row0, len, slot, pos0} */
};

/* A tensor-parallel group (cuda_tp.cu): n instances, rank i = bes[i]. `aborted` is read and set
 * with __atomic builtins from any thread (tp_abort); each rank's NCCL communicator lives in its
 * instance and only that rank's thread touches it (see cuda_stream_wait). */
#define CUDA_TP_MAX 16
/* Sums of at most CUDA_TP_P2P_FLOATS floats go peer to peer when p2p is set (cuda_tp_p2p.cu):
 * each rank's mailboxes [2][n][CUDA_TP_P2P_FLOATS] floats and flags [n][P2P_BLOCKS_MAX] on its
 * device, abort_word in pinned host memory mapped into every device (set by tp_abort). */
#define CUDA_TP_P2P_FLOATS (256 * 1024)
#define P2P_BLOCKS_MAX 128
/* The decode steps' sums (at most CUDA_TP_LL_FLOATS floats: 8 rows of 8,192) travel with their
 * epoch in each 8-byte word instead (cuda_tp_p2p.cu, LL): rank k's ll[k] [2][n][CUDA_TP_LL_FLOATS]
 * words. */
#define CUDA_TP_LL_FLOATS (8 * 8192)
/* Most prefill units (requests) of a step whose sums overlap the products (cuda_tp_overlap.cu). */
#define CUDA_OVL_UNITS 128
struct engine_tp {
    int n;
    int aborted;
    struct engine_backend *bes[CUDA_TP_MAX];
    int p2p;
    float *mail[CUDA_TP_MAX];
    unsigned *flags[CUDA_TP_MAX];
    int *arrive[CUDA_TP_MAX]; /* rank k's row counters of the last-block norm: [P2P_BLOCKS_MAX] */
    unsigned long long *ll[CUDA_TP_MAX];
    int clu; /* the decode steps' fused sums end in a cluster's norm (cuda_tp_p2p.cu) */
    int *abort_word;
    /* Overlapped prefill sums (cuda_tp_overlap.cu), set up where p2p is: ovl = 1 when the
     * stream memory operations work. ovl_flags: pinned host words mapped into every device,
     * [2][CUDA_TP_MAX][CUDA_OVL_UNITS] (0: rank's product of a unit done, 1: rank's chunk of the
     * unit summed), holding the number of the last sum that reached that point (tp_abort sets
     * them all to INT_MAX: the waits compare cyclically). ovl_arrive[k]: the last barrier rank k
     * reached (atomics); ovl_pub: the buffers rank k published there (barrier number mod 4). */
    int ovl;
    unsigned *ovl_flags;
    unsigned long ovl_arrive[CUDA_TP_MAX];
    /* ovl_tick[0][k], [1][k]: the units rank k's thread has queued the flag write of, products
     * (P) and chunk sums (S), counted over all sums (atomics): a rank queues a wait on a peer's
     * flag only once the peer has queued its write (see cuda_tp_overlap.cu, HOST ORDER) */
    unsigned long ovl_tick[2][CUDA_TP_MAX];
    struct {
        const float *h, *G;
        float *x;
        __nv_bfloat16 *ob;
    } ovl_pub[CUDA_TP_MAX][4];
};

/* A grid's y and z sizes are at most 65,535: kernels with a block row a row of the step take
 * gridDim.y = cuda_grid_rows(n) and stride over the rest. */
#define CUDA_GRID_YZ_MAX 65535
static inline unsigned cuda_grid_rows(int n)
{
    return (unsigned)(n < CUDA_GRID_YZ_MAX ? (n > 0 ? n : 1) : CUDA_GRID_YZ_MAX);
}

/* Scratch areas (cuda_scratch): 0..3 belong to the GEMM path, CUDA_SCRATCH_TP to the
 * tensor-parallel collectives, CUDA_SCRATCH_ARGMAX to argmax's chunk candidates. */
#define CUDA_SCRATCH_TP 4
#define CUDA_SCRATCH_ARGMAX 5
#define CUDA_SCRATCH_MLP 6    /* the mlp op's deferred LoRA rows (cuda_gemm.cu) */
#define CUDA_SCRATCH_SHADOW 7 /* the bf16 shadow of a norm's or attention's output */
#define CUDA_SCRATCH_ATT 8    /* the split attention's partials (cuda_attention.cu) */
#define CUDA_SCRATCH_OVL 9    /* the overlapped sums' G and staging (cuda_tp_overlap.cu) */
#define CUDA_SCRATCH_XB 10    /* decode rows' X staged in bf16 (cuda_gemm_rows_xb.cu) */
#define CUDA_N_SCRATCH 11

struct engine_backend {
    int device;
    int failed;                   /* set after a device failure: the engine is poisoned */
    /* tensor parallelism (cuda_tp.cu): NULL tp = not in a group */
    struct engine_tp *tp;
    int tp_rank, tp_n;
    void *tp_comm;                /* ncclComm_t (void * so this header needs no nccl.h) */
    int tp_comm_aborted;          /* ncclCommAbort done on tp_comm (by this rank's thread) */
    unsigned tp_epoch;            /* peer-to-peer sums issued (cuda_tp_p2p.cu) */
    unsigned tp_ll;               /* of them, sums by LL words */
    unsigned tp_clu;              /* of them, sums ending in a cluster's norm */
    void *tp_pairs_h;             /* pinned host copy of the gathered argmax pairs */
    size_t tp_pairs_cap;          /* pairs it holds */
    cudaStream_t stream;
    cublasLtHandle_t lt;
    void *lt_ws;                  /* cuBLASLt workspace */
    size_t lt_ws_size;
    struct cuda_gemm_plan plans[CUDA_GEMM_PLANS];
    int n_plans;
    struct cuda_astack *astack;   /* stacked LoRA A matrices (cuda_gemm.cu) */
    int n_astack, astack_cap;
    int n_bf16_weights;
    /* the current step (copied from step_begin) */
    int n_rows, n_seqs;
    int *seq_start_h, *seq_adapter_h, *seq_slot_h, *seq_pos0_h; /* host copies */
    int *row_slot_d, *row_pos_d;  /* per row, device */
    size_t row_slot_cap, row_pos_cap;
    struct cuda_step_sets sets;
    int *sets_d;
    size_t sets_cap;
    /* scratch: grown on demand, device */
    void *scratch[CUDA_N_SCRATCH];
    size_t scratch_size[CUDA_N_SCRATCH];
    int32_t *ids_d;
    size_t ids_cap;
    int *idx_d;                   /* row index lists for gathers */
    size_t idx_cap;
    float *inv_freq_d;
    float inv_freq_h[512];
    int inv_freq_n;
    /* The bf16 shadow: an (add_)rmsnorm of a step with prefill units, and the flash attention,
     * also write their output rounded to bf16 (scratch CUDA_SCRATCH_SHADOW), which the next
     * matmul reading that buffer takes as its units' staged input; in a step of decode rows
     * alone (at least cuda_skinny_xb_rows() of them) the norms, the tensor-parallel sum + norm
     * kernels and swiglu_matmul's in-place SwiGLU write it for the skinny launches that stage
     * X. shadow_src: the fp32 buffer it mirrors (NULL: none), of rows shadow_dim wide. Every op
     * but the matmul family clears it, as does a matmul writing the mirrored buffer, a buffer
     * write or free, step_begin and tp_allreduce. */
    const void *shadow_src;
    const __nv_bfloat16 *shadow_d; /* its rows */
    int shadow_dim;
    /* Overlapped prefill sums (cuda_tp_overlap.cu; see its header comment for the protocol).
     * tp_stream: the sums' copies and rank-order sums (highest priority). ovl_ev[0][u]: unit u's
     * product done (stream), ovl_ev[1][u]: unit u's sum complete here (tp_stream). */
    cudaStream_t tp_stream;
    cudaEvent_t ovl_ev[2][CUDA_OVL_UNITS];
    /* the copies from each peer (slot k: the k-th other rank) on their own streams, so that
     * several copy engines run at once; events reused unit after unit (each wait is queued
     * right after its record) */
    cudaStream_t ovl_cs[CUDA_TP_MAX];
    cudaEvent_t ovl_evc[CUDA_TP_MAX], ovl_evd[CUDA_TP_MAX], ovl_evs;
    unsigned ovl_seq;             /* overlapped sums announced (the flags' values) */
    unsigned long ovl_bar;        /* barriers passed (ovl_arrive) */
    unsigned ovl_taken;           /* sums that went overlapped (engine_cuda_tp_overlapped) */
    unsigned long ovl_tick;       /* units queued (g->ovl_tick) */
    const float *ovl_y;           /* the announced product's output; NULL: none armed */
    int ovl_dim;                  /* its width */
    int ovl_units;                /* > 0: the product ran, its units' sums are queued (active) */
    const float *ovl_peer_h[CUDA_TP_MAX], *ovl_peer_G[CUDA_TP_MAX];
    float *ovl_G, *ovl_stage;     /* the sums [n_rows, dim]; the peers' chunks of a unit */
    /* the add + norm of an overlapped tp_allreduce_add_rmsnorm, deferred to the next op: the
     * next matmul reading out runs it unit by unit as each unit's sum lands (pend_units units) */
    int pend, pend_units, pend_dim;
    float *pend_x, *pend_out;
    const struct engine_buf *pend_w;
    float pend_eps;
    __nv_bfloat16 *pend_ob;       /* the bf16 shadow room, or NULL */
    /* engine_backend_ops.last_read: the buffer the next op's product reads last (hint_next),
     * moved to hint_cur while that op runs (NULL: none) */
    const void *hint_next, *hint_cur;
    /* tp_sum_announce_norm: the armed sum's add + norm (x, weight nw, eps) runs with each unit's
     * sum on the rank's own chunk (ovl_norm), and the ranks gather x, the bf16 shadow ovl_ob and,
     * unless ovl_ntrans (the norm's out is read by the next product alone), the fp32 out instead
     * of the sums; pend_done: the deferred add + norm ran so (the next product only waits) */
    int ovl_norm, ovl_ntrans, pend_done, pend_trans;
    float *ovl_nx;
    const struct engine_buf *ovl_nw;
    float ovl_neps;
    __nv_bfloat16 *ovl_ob;
    float *ovl_peer_x[CUDA_TP_MAX];
    __nv_bfloat16 *ovl_peer_ob[CUDA_TP_MAX];
    /* tp_sum_announce_norm's x_next (ovl_xnext for the armed sum): the ranks do not gather x.
     * xlag: x's rows (xlag_x, xlag_dim wide) are current only on their chunks' owners since the
     * step's last such sum, until cuda_tp_ovl_xsync copies the peers' chunks (from xlag_peer_x)
     * or the step ends */
    int ovl_xnext, xlag, xlag_dim;
    float *xlag_x;
    float *xlag_peer_x[CUDA_TP_MAX];
    /* NY_TP_OVL_TRACE=1: device timestamps [CUDA_OVL_TRACE_SUMS][CUDA_OVL_UNITS][4] of the
     * step's overlapped sums (cuda_tp_overlap.cu), ovl_tr_n sums so far, pend_tr the pending
     * one's index (-1: not traced) */
    unsigned long long *ovl_tr;
    int ovl_tr_n, pend_tr;
};
#define CUDA_OVL_TRACE_SUMS 256

/* Record a device failure (poisons the backend) and return NY_E_DEVICE. */
int cuda_fail(struct engine_backend *be, struct ny_err *err, const char *file, int line,
              const char *what, const char *detail);

/* Let kernel fn use bytes of dynamic shared memory (above 48 KB it must be allowed), once per
 * device: done is the caller's static flags, CUDA_MAX_DEVICES of them (a rank's thread touches
 * only its own device's flag). */
#define CUDA_MAX_DEVICES 64
static inline int cuda_smem_allow(struct engine_backend *be, const void *fn, size_t bytes,
                                  int *done, struct ny_err *err)
{
    int mine = be->device >= 0 && be->device < CUDA_MAX_DEVICES;
    if (mine && __atomic_load_n(&done[be->device], __ATOMIC_ACQUIRE))
        return NY_OK;
    CU_CHECK(be, cudaFuncSetAttribute(fn, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes),
             "kernel shared memory size");
    if (mine)
        __atomic_store_n(&done[be->device], 1, __ATOMIC_RELEASE);
    return NY_OK;
}

/* Wait until the stream's queued work is done. A grouped instance (be->tp) polls instead of
 * blocking and watches the group's abort flag: on abort it aborts its own communicator, poisons
 * the instance and returns NY_E_STATE "tensor-parallel group aborted". `what` names the wait in
 * error messages. Every host wait on be->stream in engine/cuda/ goes through here. */
int cuda_stream_wait(struct engine_backend *be, const char *what, struct ny_err *err);
/* Copy bytes from the device to pageable host memory on be->stream and wait for it (abort-aware:
 * a grouped instance drains the stream first, since a pageable copy blocks the host thread). */
int cuda_read_host(struct engine_backend *be, void *dst, const void *src, size_t bytes,
                   const char *what, struct ny_err *err);
#if NY_HAVE_NCCL
/* cuda_tp.cu: abort this rank's communicator (its own thread only) once; marks tp_comm_aborted. */
void cuda_tp_abort_own(struct engine_backend *be);
/* cuda_tp_p2p.cu: set up the peer-to-peer sums of a group (p2p stays 0 where a pair of devices
 * has no peer access or NY_TP_P2P=0), release them (after the ranks' last op), end waiting sum
 * kernels (any thread), and sum count <= CUDA_TP_P2P_FLOATS floats of x over the group. */
int cuda_tp_p2p_open(struct engine_tp *g, struct ny_err *err);
void cuda_tp_p2p_close(struct engine_tp *g);
void cuda_tp_p2p_abort(struct engine_tp *g);
int cuda_tp_p2p_sum(struct engine_backend *be, float *x, size_t count, struct ny_err *err);
/* cuda_tp.cu's all-reduce of h (width dim, the step's rows), then add_rmsnorm(x, h, w, dim, eps,
 * out): one kernel when the sum goes peer to peer and fits (rows <= P2P_BLOCKS_MAX, a width the
 * vectorised norm takes, no prefill unit), else the two ops. Bit-identical either way; either
 * writes the bf16 shadow of out where cuda_shadow_room gives room (the caller dropped the shadow
 * before). On the rank's device, in a live group. */
int cuda_tp_p2p_add_norm(struct engine_backend *be, struct engine_buf *x, struct engine_buf *h,
                         const struct engine_buf *w, int dim, float eps, struct engine_buf *out,
                         struct ny_err *err);
/* cuda_tp.cu: the tensor-parallel ops of the ops table (engine_backend_int.h). */
int cuda_tp_create(struct engine_backend *const *bes, int n, struct engine_tp **out,
                   struct ny_err *err);
void cuda_tp_abort(struct engine_tp *g);
void cuda_tp_destroy(struct engine_tp *g);
int cuda_tp_allreduce(struct engine_backend *be, struct engine_buf *x, int dim,
                      struct ny_err *err);
int cuda_tp_argmax(struct engine_backend *be, const struct engine_buf *logits, int n,
                   int vocab_local, int vocab_off, int32_t *ids, struct ny_err *err);
int cuda_tp_allreduce_add_rmsnorm(struct engine_backend *be, struct engine_buf *x,
                                  struct engine_buf *h, const struct engine_buf *w, int dim,
                                  float eps, struct engine_buf *out, struct ny_err *err);
#endif
/* Device scratch area i (0..CUDA_N_SCRATCH-1) of at least bytes bytes; contents undefined. */
int cuda_scratch(struct engine_backend *be, int i, size_t bytes, void **out, struct ny_err *err);
/* Device copy of the host int array a[0..n) in a reusable buffer (*slot, *cap); a == NULL only
 * grows the buffer. */
int cuda_upload_ints(struct engine_backend *be, int **slot, size_t *cap, const int *a, size_t n,
                     struct ny_err *err);

/* ---- overlapped prefill sums (cuda_tp_overlap.cu) ------------------------------------------ */
/* Set up / release a group's overlapped sums (after cuda_tp_p2p_open; g->ovl stays 0 where p2p
 * is off or the stream memory operations fail) and release streams waiting on a peer (any
 * thread, after tp_abort). */
int cuda_tp_ovl_open(struct engine_tp *g, struct ny_err *err);
void cuda_tp_ovl_close(struct engine_tp *g);
void cuda_tp_ovl_abort(struct engine_tp *g);
/* The tp_sum_announce op (engine_backend_int.h): arms the overlap for the next product writing y
 * when the step allows it (prefill units only, more than CUDA_TP_P2P_FLOATS floats). */
int cuda_tp_sum_announce(struct engine_backend *be, const struct engine_buf *y, int dim,
                         struct ny_err *err);
/* The tp_sum_announce_norm op: the same, with the add + norm of the announced
 * tp_allreduce_add_rmsnorm run beside each unit's sum (NY_TP_OVL_NORM=0: as tp_sum_announce). */
int cuda_tp_sum_announce_norm(struct engine_backend *be, const struct engine_buf *y, int dim,
                              struct engine_buf *x, const struct engine_buf *w, float eps,
                              int out_last_read, int x_next, struct ny_err *err);
/* matmul_all: unit u (rows [r0, r0 + m)) of the armed product is final on the stream: queue its
 * sum on tp_stream. */
int cuda_tp_ovl_unit(struct engine_backend *be, int u, int r0, int m, struct ny_err *err);
/* tp_allreduce(x): 1 when x is the active overlapped product (its sums are now copied into x),
 * 0 when the caller must sum, < 0 on error. */
int cuda_tp_ovl_allreduce(struct engine_backend *be, struct engine_buf *x, struct ny_err *err);
/* tp_allreduce_add_rmsnorm: 1 when h is the active overlapped product and the add + norm is
 * deferred (pend), 0 when the caller must do it, < 0 on error. */
int cuda_tp_ovl_defer_norm(struct engine_backend *be, struct engine_buf *x, struct engine_buf *h,
                           const struct engine_buf *w, int dim, float eps, struct engine_buf *out,
                           struct ny_err *err);
/* matmul_all, reading the pending norm's out: the add + norm of unit u's rows once its sum is
 * here, before the unit's products; shadow_only: the rows' fp32 out left unwritten (only their
 * bf16 shadow is read: engine_backend_ops.last_read). */
int cuda_tp_ovl_norm_unit(struct engine_backend *be, int u, int r0, int m, int shadow_only,
                          struct ny_err *err);
/* Any other op: run the pending add + norm on every row and make the stream wait for an active
 * product's sums. step_begin and destroy: cuda_tp_ovl_drop (the wait, no norm: a failed step). */
int cuda_tp_ovl_settle(struct engine_backend *be, struct ny_err *err);
int cuda_tp_ovl_drop(struct engine_backend *be, struct ny_err *err);
/* An op other than the overlapped chain's reads buffer d: NY_E_STATE when d is x with rows
 * current only on their owners (tp_sum_announce_norm's x_next promised no such read). */
int cuda_tp_ovl_xcheck(struct engine_backend *be, const void *d, struct ny_err *err);
static inline int cuda_ovl_busy(const struct engine_backend *be)
{
    return be->pend || be->ovl_units;
}

/* cuda_norm.cu: add_rmsnorm (y != NULL) or rmsnorm of rows [r0, r0 + m) of raw buffers (x, y,
 * out [n_rows, dim]; NULL: x and ob only), ob the bf16 shadow room or NULL; cuda_norm_all:
 * every row of the step,
 * the shadow handled as the ops do. The kernels of the ops: bit-identical rows. */
int cuda_norm_rows(struct engine_backend *be, int r0, int m, float *x, const float *y,
                   const struct engine_buf *w, int dim, float eps, float *out, __nv_bfloat16 *ob,
                   struct ny_err *err);
int cuda_norm_all(struct engine_backend *be, float *x, const float *y, const struct engine_buf *w,
                  int dim, float eps, float *out, struct ny_err *err);

/* ---- op families (one .cu each) --------------------------------------------------------------- */
int cuda_op_embed(struct engine_backend *be, const struct engine_buf *table, const int32_t *ids,
                  int dim, struct engine_buf *out, struct ny_err *err);
int cuda_op_rmsnorm(struct engine_backend *be, const struct engine_buf *x,
                    const struct engine_buf *w, int dim, float eps, struct engine_buf *out,
                    struct ny_err *err);
int cuda_op_rope(struct engine_backend *be, struct engine_buf *x, int n_heads, int head_dim,
                 const float *inv_freq, float attn_factor, struct ny_err *err);
int cuda_op_swiglu(struct engine_backend *be, const struct engine_buf *gate,
                   const struct engine_buf *up, int ff, struct engine_buf *out,
                   struct ny_err *err);
int cuda_op_add(struct engine_backend *be, struct engine_buf *x, const struct engine_buf *y,
                int dim, struct ny_err *err);
int cuda_op_add_rmsnorm(struct engine_backend *be, struct engine_buf *x,
                        const struct engine_buf *y, const struct engine_buf *w, int dim,
                        float eps, struct engine_buf *out, struct ny_err *err);
int cuda_op_rope_qk(struct engine_backend *be, struct engine_buf *q, int n_q_heads,
                    struct engine_buf *k, int n_k_heads, int head_dim, const float *inv_freq,
                    float attn_factor, struct ny_err *err);
int cuda_op_argmax(struct engine_backend *be, const struct engine_buf *logits, int n, int vocab,
                   int32_t *ids, struct ny_err *err);
/* One argmax candidate: the best value of a row (or of a rank's shard of it) and its global id;
 * j = -1: no candidate (all NaN). 8 bytes, gathered verbatim across ranks. */
struct cuda_am_pair {
    float v;
    int32_t j;
};
/* Rule of argmax: is (v, j) better than the best (bv, bj) so far? NaN never wins, bj < 0 is no
 * candidate, ties go to the lowest id. Host and device. */
__host__ __device__ static inline bool cuda_am_better(float v, int j, float bv, int bj)
{
    if (v != v || j < 0)
        return false;
    if (bj < 0)
        return true;
    return v > bv || (v == bv && j < bj);
}
/* pairs[i] = best of logits[i, 0..vocab) with ids offset by id_off, i < n (device, on be->stream). */
int cuda_argmax_pairs(struct engine_backend *be, const float *logits, int n, int vocab,
                      int id_off, struct cuda_am_pair *pairs_d, struct ny_err *err);
/* The random weight op (cuda_elementwise.cu), see engine_backend_ops.weight_random. */
int cuda_op_weight_random(struct engine_backend *be, size_t rows, size_t cols, size_t row0,
                          size_t col0, size_t full_cols, uint64_t seed, float scale,
                          struct engine_buf **out, struct ny_err *err);
int cuda_op_matmul(struct engine_backend *be, const struct engine_buf *x, int in,
                   const struct engine_buf *w, int out, const struct engine_lora_term *lora,
                   int n_lora, const int *rows, int n_out_rows, struct engine_buf *y,
                   struct ny_err *err);
int cuda_op_matmul_multi(struct engine_backend *be, const struct engine_buf *x, int in,
                         const struct engine_matmul_part *parts, int n_parts, int n_lora,
                         struct ny_err *err);
int cuda_op_swiglu_matmul(struct engine_backend *be, struct engine_buf *gate,
                          const struct engine_buf *up, int ff, const struct engine_buf *w, int out,
                          const struct engine_lora_term *lora, int n_lora, struct engine_buf *y,
                          struct ny_err *err);
int cuda_op_mlp(struct engine_backend *be, const struct engine_buf *x, int in,
                const struct engine_matmul_part *gu, int n_lora, int ff,
                const struct engine_buf *w, int out, const struct engine_lora_term *lora,
                struct engine_buf *y, struct ny_err *err);
int cuda_op_attention(struct engine_backend *be, struct engine_kv *kv, int layer,
                      const struct engine_buf *q, const struct engine_buf *k,
                      const struct engine_buf *v, int n_heads, float scale,
                      struct engine_buf *out, struct ny_err *err);
void cuda_gemm_plans_free(struct engine_backend *be);
/* Room for the bf16 shadow of the step's rows at width dim (cuda_norm.cu): *out NULL when the
 * step has no prefill units and fewer than cuda_skinny_xb_rows() rows (none of its products
 * would read it), or NY_SHADOW=0 (A/B timing; the same bits either way). */
int cuda_shadow_room(struct engine_backend *be, int dim, __nv_bfloat16 **out,
                     struct ny_err *err);
/* After the launch that filled the room ob: the shadow now mirrors the fp32 buffer src. */
static inline void cuda_shadow_mark(struct engine_backend *be, const __nv_bfloat16 *ob,
                                    const void *src, int dim)
{
    if (ob) {
        be->shadow_src = src;
        be->shadow_d = ob;
        be->shadow_dim = dim;
    }
}
/* An on/off switch for A/B timing: on unless environment variable name is "0"; read once into
 * *cache (-1 before; ranks' threads may race there: they all store the same value). */
int cuda_env_on(const char *name, int *cache);
/* A number >= 0 from environment variable name (decimal), dflt when unset or not one; read once
 * into *cache the same way. */
long cuda_env_long(const char *name, long *cache, long dflt);
/* Drop the stacked A matrices built from device pointer d (it is being freed); NULL: all. */
void cuda_astack_drop(struct engine_backend *be, const void *d);
/* Map KV pages for every row of the current step and upload the block table when it changed. */
int cuda_kv_map_step(struct engine_backend *be, struct engine_kv *kv, struct ny_err *err);

/* Y[m, :] = alpha · Xb[m, :] · Wᵀ + beta · Y[m, :] through cuBLASLt (the prefill path). */
int cuda_gemm_bf16(struct engine_backend *be, const __nv_bfloat16 *xb, int m, int K,
                   const struct engine_buf *w, int N, float *Y, float alpha, float beta,
                   struct ny_err *err);

/* fp32 -> bf16 copy of rows: dst[i, :] = src[idx ? idx[i] : i, :] (width cols), i < n. */
int cuda_rows_to_bf16(struct engine_backend *be, const float *src, const int *idx_d, int n,
                      int cols, __nv_bfloat16 *dst, struct ny_err *err);

/* Decode and logits rows (cuda_gemm_rows.cu): for each part, rows in_idx[i] of X (fp32, width
 * K) -> rows out_idx[i] of Y (width ldy), Y = alpha · X · Wᵀ (+ beta · Y), i < n (the part's own
 * device lists, NULL = identity), in as few launches as the kernels allow (bit-identical to a
 * call per part). cuda_skinny_ok: whether W takes the tensor-core kernels (bf16, K % 8 == 0). */
struct cuda_gemm_part {
    const float *X;
    const struct engine_buf *w;
    int K, N;
    float *Y;
    int ldy;
    float alpha;
    const int *in_idx, *out_idx;
    int n;
};
int cuda_skinny_ok(const struct engine_buf *w);
/* The rows from which a skinny launch of any width (K > SK_SHORT_K) stages X in bf16
 * (cuda_gemm_rows_xb.cu: XB_MIN_ROWS, or NY_SKINNY_XB_ROWS=N); 0: none does. */
int cuda_skinny_xb_rows(void);
int cuda_gemm_rows_multi(struct engine_backend *be, const struct cuda_gemm_part *gp, int n_parts,
                         float beta, struct ny_err *err);
int cuda_gemm_rows(struct engine_backend *be, const float *X, const int *in_idx, int n, int K,
                   const struct engine_buf *w, int N, const int *out_idx, float *Y, int ldy,
                   float alpha, float beta, struct ny_err *err);

/* SwiGLU of n contiguous rows of width cols (cuda_elementwise.cu, the swiglu op's own kernel):
 * v = silu(g) · u per element in fp32, stored to out (fp32, may alias g) and/or outb (bf16,
 * rounded as cuda_rows_to_bf16 rounds: the same bits as staging the fp32 out); NULL: not stored. */
int cuda_swiglu_rows(struct engine_backend *be, const float *g, const float *u, int n, int cols,
                     float *out, __nv_bfloat16 *outb, struct ny_err *err);

/* Down's bf16 input for m contiguous prefill rows whose gate and up carry an adapter
 * (cuda_mlp_lora.cu): outb = bf16(silu(g + sg · tg·bgᵀ) · (u + su · tu·buᵀ)); g, u fp32 [m, ff]
 * (the base products), tg, tu bf16 [m, rank] in rows ldt apart (ldt % 8 == 0), bg, bu bf16
 * [ff, rank]; rank 16, 32 or 64; ff even. */
int cuda_swiglu_lora_rows(struct engine_backend *be, const float *g, const float *u, int m,
                          int ff, const __nv_bfloat16 *tg, const __nv_bfloat16 *tu, int ldt,
                          int rank, const __nv_bfloat16 *bg, const __nv_bfloat16 *bu, float sg,
                          float su, __nv_bfloat16 *outb, struct ny_err *err);

#endif
