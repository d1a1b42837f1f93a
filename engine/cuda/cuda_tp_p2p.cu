/* cuda_tp_p2p.cu — peer-to-peer sums of small all-reduces (a decode step's rows): one kernel a
 * sum, no NCCL call, and the sum fused with the residual add and the next RMSNorm. Built with
 * cuda_tp.cu (NY_HAVE_NCCL) and used by it when every pair of the group's devices has peer
 * access; NY_TP_P2P=0 keeps every sum on NCCL (A/B timing).
 *
 * SUMS: the same as cuda_tp.cu's: element e is ((p0[e] + p1[e]) + p2[e]) + ... in fp32, rank
 * order, on every rank, so the result is bit-identical to the NCCL path's and independent of the
 * row count and the block split.
 *
 * PROTOCOL (epoch = this rank's count of peer-to-peer sums so far + 1, the same on every rank
 * since all ranks issue the same collectives): a block stores its part of this rank's partial
 * into slot r (r = this rank) of every rank's mailbox of parity epoch % 2 (its own included;
 * peers' over NVLink), then, after a block barrier, writes epoch into its flag on every rank
 * (flags[k][r][slot], a system-scope release store). A block that sums waits until the flags of
 * the slots it reads reach epoch from every rank (acquire loads), then adds the n slots in rank
 * order. Why two mailboxes are enough: rank k reaches epoch e + 1 (and writes mailbox
 * (e + 1) % 2) only after its kernel e saw every flag of this rank's kernel e; this rank's kernel
 * e - 1, the last reader of that mailbox, has finished by then (stream order). So a rank is at
 * most one epoch ahead, and a wait compares (int)(flag - epoch) >= 0.
 * Both kernels trigger their dependents at once (every block is resident when the next kernel
 * may launch, so a waiting block never starves a peer's) and wait for the kernel before them
 * (programmatic dependent launch) before touching its output.
 *
 * ABORT: the waiting threads also poll the group's abort word (pinned host memory mapped into
 * every device), which tp_abort sets: the kernel then returns at once and the host side reports
 * the abort (cuda_stream_wait). A wait of more than P2P_TIMEOUT_NS without an abort traps (the
 * device reports a launch failure and the instance is poisoned) instead of hanging. */
#include <stdlib.h>
#include <string.h>

#include "cuda_int.cuh"
#include "cuda_norm.cuh"
#include "engine_cuda.h"

#define P2P_THREADS 256
/* Elements a block owns until the grid is full (P2P_BLOCKS_MAX blocks): the stores to the peers
 * go out from more SMs at once. Measured on 4 x H100 (70B shape, tp 4, batch 1: 8,192 floats a
 * sum; one call): 2,048 -> 11.1 us a sum, 8,192 -> 28.1, NCCL 13.5; 512 -> 9.8 (with a variant
 * of the flag stores), 6.5-6.9 in the later calls' benchmarks. */
#define P2P_PER 512
/* Blocks a row of the fused sum + add + norm kernel (see fused_split). Measured on 4 x H100 (70B,
 * tp 4, batch 1, before PDL; ms a decode step): 1 -> 17.83, 2 -> 17.61, 4 -> 17.48, 8 -> 17.39,
 * 16 -> 17.40. */
#define P2P_SPLIT 8
#define P2P_TIMEOUT_NS 120000000000ull
/* The LL words take the decode steps of at most LL_ROWS rows, and an LL wait naps LL_NAP_NS
 * between polls. Measured on 4 x H100 (70B shape, tp 4; ms a decode step, the flag protocol
 * alternating in the same call): batch 1 16.24, 16.65, 16.01, 15.91 against 16.51, 16.85,
 * 16.26, 16.19 (and 16.23, 16.15, 16.04 against 16.24, 16.08, 16.27); batch 2 19.09, 19.18
 * against 19.33, 19.14; batch 4 21.59, 20.58 against 20.51, 20.38; batch 8 without a nap 34.04,
 * 26.02 against 22.65, 24.05 (traced: 245 us a sum against 11; likely 128 blocks' polls of the
 * words slowing the peers' writes to them), with a 50 ns nap 25.35, a 200 ns nap 22.96; batch 1
 * with a 200 ns nap 16.16 (no nap: 16.16, 16.16 against 16.69, 16.34). On 4 x H200 at batch 1,
 * no nap: 13.07, 12.85 against 13.46, 13.49. */
#define LL_ROWS 2
#define LL_NAP_NS 200

/* The peers' addresses a kernel needs, by value. */
struct p2p_peers {
    float *mail[CUDA_TP_MAX];        /* rank k's mailboxes: [2][n][CUDA_TP_P2P_FLOATS] */
    unsigned *flag[CUDA_TP_MAX];     /* rank k's flags: [n][P2P_BLOCKS_MAX] */
    unsigned long long *ll[CUDA_TP_MAX]; /* rank k's LL words: [2][n][CUDA_TP_LL_FLOATS] */
};

__device__ __forceinline__ static unsigned p2p_ld_acquire(const unsigned *p)
{
    unsigned v;
    asm volatile("ld.acquire.sys.global.u32 %0, [%1];\n" : "=r"(v) : "l"(p) : "memory");
    return v;
}

__device__ __forceinline__ static void p2p_st_release(unsigned *p, unsigned v)
{
    asm volatile("st.release.sys.global.u32 [%0], %1;\n" ::"l"(p), "r"(v) : "memory");
}

__device__ __forceinline__ static unsigned long long p2p_clock_ns(void)
{
    unsigned long long t;
    asm volatile("mov.u64 %0, %%globaltimer;\n" : "=l"(t));
    return t;
}

/* Step 2 of the protocol, after the block's stores and a barrier: flag `slot` of this rank on
 * every rank, by a system-scope release store (cumulative: it orders the block's stores, seen by
 * this thread through the barrier, before the flag). */
__device__ __forceinline__ static void p2p_signal(int n, int rank, int slot, unsigned epoch,
                                                  const struct p2p_peers &pp)
{
    if (threadIdx.x < n)
        p2p_st_release(pp.flag[threadIdx.x] + (size_t)rank * P2P_BLOCKS_MAX + slot, epoch);
}

/* Step 3: wait until flags slot0 .. slot0 + ns - 1 of every rank reach epoch in this rank's
 * memory (n·ns <= blockDim.x threads poll one each). Returns nonzero (to every thread) on an
 * abort. */
__device__ __forceinline__ static int p2p_wait(int n, int rank, int slot0, int ns,
                                               unsigned epoch, const struct p2p_peers &pp,
                                               const volatile int *abort_word)
{
    __shared__ int aborted;
    if (threadIdx.x == 0)
        aborted = 0;
    __syncthreads();
    if (threadIdx.x < n * ns) {
        const int k = threadIdx.x / ns, sl = slot0 + threadIdx.x % ns;
        const unsigned *f = pp.flag[rank] + (size_t)k * P2P_BLOCKS_MAX + sl;
        unsigned long long t0 = 0;
        for (unsigned it = 0; (int)(p2p_ld_acquire(f) - epoch) < 0; it++) {
            if ((it & 255u) == 255u) {
                if (*abort_word) {
                    aborted = 1;
                    break;
                }
                const unsigned long long t = p2p_clock_ns();
                if (!t0)
                    t0 = t;
                else if (t - t0 > P2P_TIMEOUT_NS)
                    __trap();
            }
        }
    }
    __syncthreads();
    return aborted;
}

__global__ __launch_bounds__(P2P_THREADS) static void k_p2p_sum(float *x, size_t count, int n,
                                                                int rank, unsigned epoch,
                                                                struct p2p_peers pp,
                                                                const volatile int *abort_word)
{
    pdl_trigger(); /* every block is resident from here: the next kernel may launch */
    const size_t per = (count + gridDim.x - 1) / gridDim.x;
    const size_t e0 = (size_t)blockIdx.x * per, e1 = e0 + per < count ? e0 + per : count;
    const size_t box = (size_t)(epoch & 1u) * n * CUDA_TP_P2P_FLOATS;
    pdl_wait();
    /* 1. this block's elements into slot `rank` of every rank's mailbox */
    for (size_t e = e0 + threadIdx.x; e < e1; e += P2P_THREADS) {
        const float v = x[e];
        for (int k = 0; k < n; k++)
            __stcg(pp.mail[k] + box + (size_t)rank * CUDA_TP_P2P_FLOATS + e, v);
    }
    __syncthreads();
    p2p_signal(n, rank, blockIdx.x, epoch, pp);
    if (p2p_wait(n, rank, blockIdx.x, 1, epoch, pp, abort_word))
        return;
    /* 4. the sum in rank order (L2 loads: the mailbox was written over NVLink) */
    const float *mb = pp.mail[rank] + box;
    for (size_t e = e0 + threadIdx.x; e < e1; e += P2P_THREADS) {
        float acc = __ldcg(mb + e);
        for (int k = 1; k < n; k++)
            acc = __fadd_rn(acc, __ldcg(mb + (size_t)k * CUDA_TP_P2P_FLOATS + e));
        x[e] = acc;
    }
}

/* Groups [g0, g1) of 4 floats of the row at h + r0, this thread's share, into slot `rank` of
 * every rank's mailbox (box: the epoch's parity). */
__device__ __forceinline__ static void p2p_send_groups(const float *h, size_t r0, int g0, int g1,
                                                       size_t box, int n, int rank,
                                                       const struct p2p_peers &pp)
{
    const float4 *hr = reinterpret_cast<const float4 *>(h + r0);
    for (int i = g0 + threadIdx.x; i < g1; i += NORM_THREADS) {
        const float4 hv = hr[i];
        for (int k = 0; k < n; k++)
            __stcg(reinterpret_cast<float4 *>(pp.mail[k] + box +
                                              (size_t)rank * CUDA_TP_P2P_FLOATS + r0) + i,
                   hv);
    }
}

/* Group i of the n ranks' slots at mb (this rank's mailbox, row offset included), added in rank
 * order as k_p2p_sum adds (L2 loads: the slots were written over NVLink). */
__device__ __forceinline__ static float4 p2p_rank_sum4(const float *mb, int i, int n)
{
    float4 b = __ldcg(reinterpret_cast<const float4 *>(mb) + i);
    for (int k = 1; k < n; k++) {
        const float4 t =
            __ldcg(reinterpret_cast<const float4 *>(mb + (size_t)k * CUDA_TP_P2P_FLOATS) + i);
        b = make_float4(__fadd_rn(b.x, t.x), __fadd_rn(b.y, t.y), __fadd_rn(b.z, t.z),
                        __fadd_rn(b.w, t.w));
    }
    return b;
}

/* The sum of h's rows over the ranks fused with the residual add and the norm: split blocks
 * a row (grid rows·split, NORM_THREADS threads, NORM_V_FITS(dim)). Block s of a row sends the
 * s-th slice of its 4-wide groups to the mailboxes and flags slot row·split + s; block 0 then
 * waits for the row's split flags of every rank, adds the ranks' rows in rank order (as
 * k_p2p_sum adds), adds that to x as add_rmsnorm adds y, writes x back and runs norm_row_v:
 * bit-identical to tp_allreduce then add_rmsnorm. out may be h (a row's h is read before block
 * 0's wait, which every block of the row signals after its reads); x is neither. ob: the bf16
 * shadow of out (norm_row_v rounds the floats it stores to out), or NULL. */
template <typename W>
__global__ __launch_bounds__(NORM_THREADS) static void k_p2p_sum_add_norm(
    float *x, const float *h, const W *w, int dim, float eps, float *out, __nv_bfloat16 *ob,
    int n, int rank, unsigned epoch, int split, struct p2p_peers pp,
    const volatile int *abort_word)
{
    pdl_trigger(); /* every block is resident from here: the next kernel may launch */
    __shared__ float sh[NORM_THREADS / 32];
    const int n4 = dim / 4, row = blockIdx.x / split, part = blockIdx.x % split;
    const size_t box = (size_t)(epoch & 1u) * n * CUDA_TP_P2P_FLOATS, r0 = (size_t)row * dim;
    float wv[NORM_V][4];
    if (part == 0) /* the norm weight (no kernel writes it): read before the wait */
        norm_load_w(w, n4, wv);
    pdl_wait();
    const int gs = (n4 + split - 1) / split;
    p2p_send_groups(h, r0, part * gs, min(n4, (part + 1) * gs), box, n, rank, pp);
    __syncthreads();
    p2p_signal(n, rank, blockIdx.x, epoch, pp);
    if (part != 0 || p2p_wait(n, rank, row * split, split, epoch, pp, abort_word))
        return;
    const float *mb = pp.mail[rank] + box + r0;
    float4 *xr = reinterpret_cast<float4 *>(x + r0);
    float4 v[NORM_V];
    norm_add_row(v, xr, n4, [&](int i) { return p2p_rank_sum4(mb, i, n); });
    norm_row_v(v, wv, n4, dim, eps, reinterpret_cast<float4 *>(out + r0), ob ? ob + r0 : nullptr,
               sh);
}

/* The end of the last-block kernels, after this block added its slice of the row's sum to x
 * (xr: the row of x): the row's last block to finish (a counter a row, arrive[row], back to 0 by
 * that block; the counter only picks the block) reads the whole row of x back and runs
 * norm_row_v. Each block's fence before it arrives makes its slice visible to the last one. */
__device__ __forceinline__ static void p2p_last_norm(float4 *xr, int *arrive, int row, int split,
                                                     int n4, int dim, float eps,
                                                     const float (&wv)[NORM_V][4], float4 *outr,
                                                     __nv_bfloat16 *outb, float *sh)
{
    __shared__ int last;
    __threadfence();
    __syncthreads();
    if (threadIdx.x == 0) {
        last = atomicAdd(arrive + row, 1) == split - 1;
        if (last)
            arrive[row] = 0;
    }
    __syncthreads();
    if (!last)
        return;
    __threadfence();
    float4 v[NORM_V];
#pragma unroll
    for (int u = 0; u < NORM_V; u++) {
        const int i = threadIdx.x + u * NORM_THREADS;
        v[u] = i < n4 ? __ldcg(xr + i) : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    }
    norm_row_v(v, wv, n4, dim, eps, outr, outb, sh);
}

/* ---- LL: the decode steps' sums without flags ------------------------------------------------
 * A word is 8 bytes: a float's bits in the low half and the sum's epoch in the high half. A
 * sender stores 2 words at a time (st.volatile .v2.u64: each 8-byte element is single-copy
 * atomic), a receiver loads them until both carry its epoch: the float arrives with its own
 * flag, so no fence, no flag store and no second trip over NVLink stand between a send and the
 * sum. The mailboxes alternate by epoch parity as the flag protocol's do (same argument: a rank
 * is at most one epoch ahead); a word left from an older sum carries an older epoch. */
__device__ __forceinline__ static void ll_put2(unsigned long long *p, float a, float b,
                                               unsigned epoch)
{
    const unsigned long long e = (unsigned long long)epoch << 32;
    asm volatile("st.volatile.global.v2.u64 [%0], {%1, %2};\n" ::"l"(p),
                 "l"(e | __float_as_uint(a)), "l"(e | __float_as_uint(b))
                 : "memory");
}

/* The 4 floats at word p once all 4 carry epoch; nonzero on an abort (the group's abort word).
 * A wait of more than P2P_TIMEOUT_NS traps, as p2p_wait does. */
__device__ __forceinline__ static int ll_get4(const unsigned long long *p, unsigned epoch,
                                              float4 &v, const volatile int *abort_word)
{
    unsigned long long t0 = 0;
    for (unsigned it = 0;; it++) {
        unsigned long long a, b, c, d;
        asm volatile("ld.volatile.global.v2.u64 {%0, %1}, [%2];\n"
                     : "=l"(a), "=l"(b)
                     : "l"(p)
                     : "memory");
        asm volatile("ld.volatile.global.v2.u64 {%0, %1}, [%2];\n"
                     : "=l"(c), "=l"(d)
                     : "l"(p + 2)
                     : "memory");
        if ((unsigned)(a >> 32) == epoch && (unsigned)(b >> 32) == epoch &&
            (unsigned)(c >> 32) == epoch && (unsigned)(d >> 32) == epoch) {
            v = make_float4(__uint_as_float((unsigned)a), __uint_as_float((unsigned)b),
                            __uint_as_float((unsigned)c), __uint_as_float((unsigned)d));
            return 0;
        }
        __nanosleep(LL_NAP_NS);
        if ((it & 255u) == 255u) {
            if (*abort_word)
                return 1;
            const unsigned long long t = p2p_clock_ns();
            if (!t0)
                t0 = t;
            else if (t - t0 > P2P_TIMEOUT_NS)
                __trap();
        }
    }
}

/* Slice [g0, g1) of the row at r0 of h: sent to every rank, the ranks' slices added in rank
 * order (p2p_rank_sum4's arithmetic) and the sum of group i passed to fin(i, sum), by the flag
 * protocol; nonzero (to every thread) on an abort. */
template <typename F>
__device__ __forceinline__ static int p2p_slice_flags(const float *h, size_t r0, int g0, int g1,
                                                      int n, int rank, unsigned epoch,
                                                      const struct p2p_peers &pp,
                                                      const volatile int *abort_word, F fin)
{
    const size_t box = (size_t)(epoch & 1u) * n * CUDA_TP_P2P_FLOATS;
    p2p_send_groups(h, r0, g0, g1, box, n, rank, pp);
    __syncthreads();
    p2p_signal(n, rank, blockIdx.x, epoch, pp);
    if (p2p_wait(n, rank, blockIdx.x, 1, epoch, pp, abort_word))
        return 1;
    const float *mb = pp.mail[rank] + box + r0;
    for (int i = g0 + threadIdx.x; i < g1; i += NORM_THREADS)
        fin(i, p2p_rank_sum4(mb, i, n));
    return 0;
}

/* The same by LL words: the same floats added in the same order. */
template <typename F>
__device__ __forceinline__ static int p2p_slice_ll(const float *h, size_t r0, int g0, int g1,
                                                   int n, int rank, unsigned epoch,
                                                   const struct p2p_peers &pp,
                                                   const volatile int *abort_word, F fin)
{
    __shared__ int aborted;
    if (threadIdx.x == 0)
        aborted = 0;
    const size_t box = (size_t)(epoch & 1u) * n * CUDA_TP_LL_FLOATS;
    const float4 *hr = reinterpret_cast<const float4 *>(h + r0);
    for (int i = g0 + threadIdx.x; i < g1; i += NORM_THREADS) {
        const float4 hv = hr[i];
        for (int k = 0; k < n; k++) {
            unsigned long long *p =
                pp.ll[k] + box + (size_t)rank * CUDA_TP_LL_FLOATS + r0 + 4 * (size_t)i;
            ll_put2(p, hv.x, hv.y, epoch);
            ll_put2(p + 2, hv.z, hv.w, epoch);
        }
    }
    __syncthreads(); /* aborted is 0 before any thread may set it */
    const unsigned long long *mb = pp.ll[rank] + box + r0;
    for (int i = g0 + threadIdx.x; i < g1; i += NORM_THREADS) {
        float4 b, t;
        int ab = ll_get4(mb + 4 * (size_t)i, epoch, b, abort_word);
        for (int k = 1; k < n && !ab; k++) {
            ab = ll_get4(mb + (size_t)k * CUDA_TP_LL_FLOATS + 4 * (size_t)i, epoch, t,
                         abort_word);
            b = make_float4(__fadd_rn(b.x, t.x), __fadd_rn(b.y, t.y), __fadd_rn(b.z, t.z),
                            __fadd_rn(b.w, t.w));
        }
        if (ab) {
            aborted = 1;
            break;
        }
        fin(i, b);
    }
    __syncthreads();
    return aborted;
}

/* The same op for a step of few rows (the decode steps that take programmatic dependent launch):
 * split blocks a row (grid rows·split, NORM_THREADS threads, NORM_V_FITS(dim)), each of which
 * sends its slice of the row's h, waits for that slice from every rank, adds the ranks in rank
 * order and the sum to x (the arithmetic of k_p2p_sum_add_norm) and writes its slice of x, by the
 * flag protocol or (LL) by LL words; the row's last block to finish runs the norm
 * (p2p_last_norm). The sums go out of split blocks at once, and the norm needs no launch of its
 * own. out may be h (every block of the row has read its slice of h before the last one writes
 * out); x is neither. ob: as k_p2p_sum_add_norm's. */
template <typename W, bool LL>
__global__ __launch_bounds__(NORM_THREADS) static void k_p2p_sum_add_norm_last(
    float *x, const float *h, const W *w, int dim, float eps, float *out, __nv_bfloat16 *ob,
    int n, int rank, unsigned epoch, int split, int *arrive, struct p2p_peers pp,
    const volatile int *abort_word)
{
    pdl_trigger(); /* every block is resident from here: the next kernel may launch */
    __shared__ float sh[NORM_THREADS / 32];
    const int n4 = dim / 4, row = blockIdx.x / split, part = blockIdx.x % split;
    const size_t r0 = (size_t)row * dim;
    float wv[NORM_V][4];
    norm_load_w(w, n4, wv); /* any block may be the row's last: all read the weight, early */
    pdl_wait();
    const int gs = (n4 + split - 1) / split, g0 = part * gs, g1 = min(n4, g0 + gs);
    float4 *xr = reinterpret_cast<float4 *>(x + r0);
    auto fin = [&](int i, const float4 &b) { (void)norm_add4(xr, i, b); };
    if (LL ? p2p_slice_ll(h, r0, g0, g1, n, rank, epoch, pp, abort_word, fin)
           : p2p_slice_flags(h, r0, g0, g1, n, rank, epoch, pp, abort_word, fin))
        return;
    p2p_last_norm(xr, arrive, row, split, n4, dim, eps, wv, reinterpret_cast<float4 *>(out + r0),
                  ob ? ob + r0 : nullptr, sh);
}

/* ---- the cluster's norm ----------------------------------------------------------------------
 * The same op for a step of few rows, its norm without a last block: a row's blocks form a
 * cluster (sm_90) of ceil(n4 / NORM_THREADS) blocks, and thread t of the cluster's block u owns
 * group u·NORM_THREADS + t of the row, which is norm_row_v's v[u] of thread t. Each block sends
 * and sums its groups (p2p_slice_ll or p2p_slice_flags, one group a thread) and adds them to x;
 * each thread puts its group's norm_sq4 in shared memory; after a cluster barrier every block
 * reads thread t's terms of the cluster's blocks in order u (distributed shared memory): exactly
 * norm_row_v's s of thread t (the terms past the row are the zeros it adds), so every block
 * runs the same block_sum and the same norm_inv, and writes its own groups by norm_out4. Same
 * bits as the last-block kernel (norm_sq4 spells out its roundings: the first version's plain
 * expression was fused differently here and changed the last bit of some rows' norms), without
 * its fences, row counter, and one block re-reading and norming the whole row. Measured on 4 x
 * H100 (70B shape, tp 4; ms a decode step, the last-block kernel alternating in the same call,
 * the ids equal): batch 8 21.77, 21.75 against 24.47, 23.09 (another call: 21.87 against
 * 25.22); batch 4 19.70 against 20.04; batch 1 15.99, 16.16, 15.99 against 15.99, 16.21,
 * 16.19 (traced: the sum after o 8.18 us against 8.54, after down 12.49 against 11.31). A probe
 * of the add + norm alone on one H100 (a chain of 400 under PDL): 2.22 us a kernel against 3.42
 * for 16 blocks and a last block, 3.12 for one block. */
__device__ __forceinline__ static void clu_arrive(void)
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("barrier.cluster.arrive.release.aligned;\n" ::: "memory");
#endif
}
__device__ __forceinline__ static void clu_wait(void)
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("barrier.cluster.wait.acquire.aligned;\n" ::: "memory");
#endif
}
/* This block's rank u in its cluster and the cluster's block count n. */
__device__ __forceinline__ static void clu_place(unsigned &u, unsigned &n)
{
    u = 0;
    n = 1;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("mov.u32 %0, %%cluster_ctarank;\n"
                 "mov.u32 %1, %%cluster_nctarank;\n"
                 : "=r"(u), "=r"(n));
#endif
}
/* The float at p (this block's shared memory) in block r of the cluster. */
__device__ __forceinline__ static float clu_load(const float *p, unsigned r)
{
    float v = 0.0f;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    unsigned a = (unsigned)__cvta_generic_to_shared(p), ra;
    asm volatile("mapa.shared::cluster.u32 %0, %1, %2;\n" : "=r"(ra) : "r"(a), "r"(r));
    asm volatile("ld.shared::cluster.f32 %0, [%1];\n" : "=f"(v) : "r"(ra) : "memory");
#endif
    return v;
}

template <typename W, bool LL>
__global__ __launch_bounds__(NORM_THREADS) static void k_p2p_sum_add_norm_clu(
    float *x, const float *h, const W *w, int dim, float eps, float *out, __nv_bfloat16 *ob,
    int n, int rank, unsigned epoch, struct p2p_peers pp, const volatile int *abort_word)
{
    pdl_trigger(); /* every block is resident from here: the next kernel may launch */
    __shared__ float sh[NORM_THREADS / 32], sq[NORM_THREADS];
    unsigned u, split;
    clu_place(u, split);
    const int n4 = dim / 4, row = blockIdx.x / split, g0 = (int)u * NORM_THREADS;
    const int i = g0 + threadIdx.x, g1 = min(n4, g0 + NORM_THREADS);
    const size_t r0 = (size_t)row * dim;
    float wv[4];
    norm_load_w4(w, i, n4, wv); /* the norm weight (no kernel writes it): read before the wait */
    pdl_wait();
    float4 *xr = reinterpret_cast<float4 *>(x + r0);
    float4 v = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    auto fin = [&](int j, const float4 &b) { v = norm_add4(xr, j, b); };
    const int ab = LL ? p2p_slice_ll(h, r0, g0, g1, n, rank, epoch, pp, abort_word, fin)
                      : p2p_slice_flags(h, r0, g0, g1, n, rank, epoch, pp, abort_word, fin);
    /* on an abort every block still passes both cluster barriers, then leaves */
    sq[threadIdx.x] = ab ? 0.0f : norm_sq4(v);
    clu_arrive();
    clu_wait();
    float s = 0.0f;
    for (unsigned r = 0; r < split; r++)
        s += clu_load(sq + threadIdx.x, r);
    clu_arrive(); /* done with the peers' sq; the wait below keeps ours until they are */
    const float inv = norm_inv(block_sum(s, sh), dim, eps);
    if (!ab && i < n4)
        norm_out4(v, inv, wv, i, reinterpret_cast<float4 *>(out + r0), ob ? ob + r0 : nullptr);
    clu_wait();
}

/* Whether a new group's sums may go peer to peer: yes unless NY_TP_P2P=0 (read at each
 * tp_create, so that one process can compare the two transports). */
static int p2p_wanted(void)
{
    int v = -1;
    return cuda_env_on("NY_TP_P2P", &v);
}

/* Whether a new group's decode-step sums take the LL words: yes unless NY_TP_LL=0 (read at each
 * tp_create, for A/B timing in one process; the flag protocol gives the same bits). */
static int ll_wanted(void)
{
    int v = -1;
    return cuda_env_on("NY_TP_LL", &v);
}

/* Whether the current device can hold a cluster of NORM_V blocks of kernel k at once. */
template <typename K> static int clu_fits(K k)
{
    cudaLaunchAttribute attr[1];
    attr[0].id = cudaLaunchAttributeClusterDimension;
    attr[0].val.clusterDim.x = NORM_V;
    attr[0].val.clusterDim.y = 1;
    attr[0].val.clusterDim.z = 1;
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = dim3(NORM_V);
    cfg.blockDim = dim3(NORM_THREADS);
    cfg.attrs = attr;
    cfg.numAttrs = 1;
    int n = 0;
    if (cudaOccupancyMaxActiveClusters(&n, k, &cfg) != cudaSuccess) {
        (void)cudaGetLastError();
        return 0;
    }
    return n > 0;
}

/* Whether a new group's decode-step sums end in a cluster's norm: yes unless NY_TP_CLUSTER=0
 * (read at each tp_create, for A/B timing; the last-block kernel gives the same bits) and where
 * every device launches clusters and holds one of the widest (an 8,192-float row's) of every
 * variant of the kernel. */
static int clu_wanted(const struct engine_tp *g)
{
    int v = -1;
    if (!cuda_env_on("NY_TP_CLUSTER", &v))
        return 0;
    for (int i = 0; i < g->n; i++) {
        int ok = 0;
        if (cudaSetDevice(g->bes[i]->device) != cudaSuccess ||
            cudaDeviceGetAttribute(&ok, cudaDevAttrClusterLaunch, g->bes[i]->device) !=
                cudaSuccess ||
            !ok || !clu_fits(k_p2p_sum_add_norm_clu<float, false>) ||
            !clu_fits(k_p2p_sum_add_norm_clu<float, true>) ||
            !clu_fits(k_p2p_sum_add_norm_clu<__nv_bfloat16, false>) ||
            !clu_fits(k_p2p_sum_add_norm_clu<__nv_bfloat16, true>)) {
            (void)cudaGetLastError();
            ny_log_info("cuda tp: device %d: no clusters of %d blocks; the decode sums' norms by "
                        "a last block", g->bes[i]->device, NORM_V);
            return 0;
        }
    }
    return 1;
}

int cuda_tp_p2p_open(struct engine_tp *g, struct ny_err *err)
{
    g->p2p = 0;
    g->clu = 0;
    if (!p2p_wanted()) {
        ny_log_info("cuda tp: peer-to-peer sums off (NY_TP_P2P=0): every sum over NCCL");
        return NY_OK;
    }
    for (int i = 0; i < g->n; i++)
        for (int k = 0; k < g->n; k++) {
            int ok = 0;
            if (i != k && (cudaDeviceCanAccessPeer(&ok, g->bes[i]->device, g->bes[k]->device) !=
                               cudaSuccess ||
                           !ok)) {
                (void)cudaGetLastError();
                ny_log_info("cuda tp: device %d cannot access device %d: every sum over NCCL",
                            g->bes[i]->device, g->bes[k]->device);
                return NY_OK;
            }
        }
    /* peer access for every pair (a device may reach a limited number of peers): where it
     * cannot be enabled, the sums stay on NCCL */
    for (int i = 0; i < g->n; i++) {
        CU_CHECK(g->bes[i], cudaSetDevice(g->bes[i]->device), "cudaSetDevice");
        for (int k = 0; k < g->n; k++) {
            if (k == i)
                continue;
            cudaError_t e = cudaDeviceEnablePeerAccess(g->bes[k]->device, 0);
            (void)cudaGetLastError();
            if (e != cudaSuccess && e != cudaErrorPeerAccessAlreadyEnabled) {
                ny_log_info("cuda tp: device %d: peer access to device %d: %s; every sum over "
                            "NCCL", g->bes[i]->device, g->bes[k]->device, cudaGetErrorString(e));
                return NY_OK;
            }
        }
    }
    if (cudaHostAlloc((void **)&g->abort_word, sizeof(int),
                      cudaHostAllocMapped | cudaHostAllocPortable) != cudaSuccess) {
        (void)cudaGetLastError();
        g->abort_word = NULL;
        return NY_ERR(err, NY_E_DEVICE, "cuda tp: cudaHostAlloc of the abort word failed");
    }
    *(volatile int *)g->abort_word = 0;
    const size_t mail = (size_t)2 * g->n * CUDA_TP_P2P_FLOATS * sizeof(float);
    const size_t flags = (size_t)g->n * P2P_BLOCKS_MAX * sizeof(unsigned);
    const size_t arrive = (size_t)P2P_BLOCKS_MAX * sizeof(int);
    const size_t ll = ll_wanted() ? (size_t)2 * g->n * CUDA_TP_LL_FLOATS * 8 : 0;
    for (int i = 0; i < g->n; i++) {
        struct engine_backend *be = g->bes[i];
        CU_CHECK(be, cudaSetDevice(be->device), "cudaSetDevice");
        CU_CHECK(be, cudaMalloc((void **)&g->mail[i], mail), "p2p mailbox");
        CU_CHECK(be, cudaMalloc((void **)&g->flags[i], flags), "p2p flags");
        CU_CHECK(be, cudaMemset(g->flags[i], 0, flags), "p2p flags");
        CU_CHECK(be, cudaMalloc((void **)&g->arrive[i], arrive), "p2p row counters");
        CU_CHECK(be, cudaMemset(g->arrive[i], 0, arrive), "p2p row counters");
        if (ll) { /* epoch 0 in every word: no sum's (epochs start at 1) */
            CU_CHECK(be, cudaMalloc((void **)&g->ll[i], ll), "p2p LL mailbox");
            CU_CHECK(be, cudaMemset(g->ll[i], 0, ll), "p2p LL mailbox");
        }
        be->tp_epoch = 0;
    }
    for (int i = 0; i < g->n; i++) {
        CU_CHECK(g->bes[i], cudaSetDevice(g->bes[i]->device), "cudaSetDevice");
        CU_CHECK(g->bes[i], cudaDeviceSynchronize(), "p2p set-up");
    }
    g->p2p = 1;
    g->clu = clu_wanted(g);
    ny_log_info("cuda tp: peer-to-peer sums up to %d floats (%.1f MiB of mailboxes a rank)%s%s",
                CUDA_TP_P2P_FLOATS, (double)(mail + ll) / (1024.0 * 1024.0),
                ll ? "; decode steps' sums by LL words" : "; LL words off (NY_TP_LL=0)",
                g->clu ? ", normed by clusters" : ", normed by a last block");
    return NY_OK;
}

/* Every rank's kernels are done (tp_destroy runs after the ranks' last op, or after an abort,
 * which ends the kernels through the abort word). */
void cuda_tp_p2p_close(struct engine_tp *g)
{
    for (int i = 0; i < g->n; i++) {
        if (!g->mail[i] && !g->flags[i] && !g->arrive[i] && !g->ll[i])
            continue;
        cudaSetDevice(g->bes[i]->device);
        cudaDeviceSynchronize();
        cudaFree(g->mail[i]);
        cudaFree(g->flags[i]);
        cudaFree(g->arrive[i]);
        cudaFree(g->ll[i]);
        g->ll[i] = NULL;
        g->mail[i] = NULL;
        g->flags[i] = NULL;
        g->arrive[i] = NULL;
        (void)cudaGetLastError();
    }
    if (g->abort_word)
        cudaFreeHost(g->abort_word);
    g->abort_word = NULL;
    g->p2p = 0;
}

void cuda_tp_p2p_abort(struct engine_tp *g)
{
    if (g->abort_word)
        __atomic_store_n(g->abort_word, 1, __ATOMIC_RELEASE);
}

/* The group's addresses for a kernel, by value, and the rank's next epoch (be->tp_epoch). */
static struct p2p_peers p2p_next(struct engine_backend *be)
{
    const struct engine_tp *g = be->tp;
    struct p2p_peers pp;
    memset(&pp, 0, sizeof pp);
    for (int k = 0; k < g->n; k++) {
        pp.mail[k] = g->mail[k];
        pp.flag[k] = g->flags[k];
        pp.ll[k] = g->ll[k];
    }
    be->tp_epoch++;
    return pp;
}

int cuda_tp_p2p_sum(struct engine_backend *be, float *x, size_t count, struct ny_err *err)
{
    struct engine_tp *g = be->tp;
    if (count > CUDA_TP_P2P_FLOATS)
        return NY_ERR(err, NY_E_RANGE, "cuda tp: a peer-to-peer sum of %zu floats (at most %d)",
                      count, CUDA_TP_P2P_FLOATS);
    const struct p2p_peers pp = p2p_next(be);
    size_t blocks = (count + P2P_PER - 1) / P2P_PER;
    if (blocks > P2P_BLOCKS_MAX)
        blocks = P2P_BLOCKS_MAX;
    CU_LAUNCH(be, "tp peer-to-peer sum kernel", k_p2p_sum, dim3((unsigned)blocks),
              dim3(P2P_THREADS), 0, x, count, g->n, be->tp_rank, be->tp_epoch, pp,
              (const volatile int *)g->abort_word);
    return NY_OK;
}

extern "C" int engine_cuda_tp_ll_rows(const struct engine_tp *g)
{
    return g && g->p2p && g->ll[0] ? LL_ROWS : 0;
}

extern "C" unsigned engine_cuda_tp_ll_sums(const struct engine_backend *be)
{
    return be ? be->tp_ll : 0;
}

extern "C" int engine_cuda_tp_cluster(const struct engine_tp *g)
{
    return g && g->p2p && g->clu;
}

extern "C" unsigned engine_cuda_tp_cluster_sums(const struct engine_backend *be)
{
    return be ? be->tp_clu : 0;
}

extern "C" size_t engine_cuda_tp_p2p_floats(const struct engine_tp *g)
{
    return g && g->p2p ? (size_t)CUDA_TP_P2P_FLOATS : 0;
}

/* Which fused kernel a step's sum of width dim takes: 0 none (the two ops), 1
 * k_p2p_sum_add_norm (more than cuda_pdl_max_rows() rows: steps launched without programmatic
 * dependent launch), 2 k_p2p_sum_add_norm_clu or k_p2p_sum_add_norm_last (fewer rows, where
 * block 0 doing the sum and the norm alone lost to the two kernels under PDL). Measured on
 * 4 x H100, 70B shape, tp 4 (ms a decode step, same call): batch 1: the two kernels 16.62,
 * k_p2p_sum_add_norm 17.23 (NCCL 18.01); later calls: k_p2p_sum_add_norm_last 16.48-16.70, the
 * two kernels 17.00-17.13; batch 32: the two kernels 29.59, fused 25.60 (NCCL 28.40).
 * NY_TP_FUSED=0: none (A/B timing); every choice gives the same bits. */
static int fused_kind(const struct engine_backend *be, int dim)
{
    static int on = -1;
    if (!be->tp->p2p || be->n_rows > P2P_BLOCKS_MAX || !NORM_V_FITS(dim) ||
        (size_t)be->n_rows * dim > CUDA_TP_P2P_FLOATS || be->sets.units_n != 0 ||
        !cuda_env_on("NY_TP_FUSED", &on))
        return 0;
    return be->n_rows > cuda_pdl_max_rows() ? 1 : 2;
}

/* Blocks a row of k_p2p_sum_add_norm_last: P2P_PER elements a block, at most P2P_BLOCKS_MAX
 * flags a step. */
static int last_split(const struct engine_backend *be, int dim)
{
    int s = (dim + P2P_PER - 1) / P2P_PER;
    if (s > P2P_BLOCKS_MAX / be->n_rows)
        s = P2P_BLOCKS_MAX / be->n_rows;
    return s > 0 ? s : 1;
}

/* Blocks a row of the fused kernel: P2P_SPLIT, at most P2P_BLOCKS_MAX flags a step and
 * NORM_THREADS polling threads. */
static int fused_split(const struct engine_backend *be)
{
    int s = P2P_SPLIT;
    if (s > P2P_BLOCKS_MAX / be->n_rows)
        s = P2P_BLOCKS_MAX / be->n_rows;
    if (s > NORM_THREADS / be->tp_n)
        s = NORM_THREADS / be->tp_n;
    return s > 0 ? s : 1;
}

/* The kernel of a step of few rows on norm weights of W, by LL words (ll) or the flag protocol:
 * the cluster kernel (clu) or the last-block one, split blocks a row. */
template <typename W>
static int launch_last(struct engine_backend *be, bool ll, bool clu, const char *what,
                       unsigned grid, float *x, const float *h, const W *w, int dim, float eps,
                       float *out, __nv_bfloat16 *ob, int split, int *ar,
                       const struct p2p_peers &pp, const volatile int *aw, struct ny_err *err)
{
    const int n = be->tp->n;
    if (clu) {
        auto k = ll ? k_p2p_sum_add_norm_clu<W, true> : k_p2p_sum_add_norm_clu<W, false>;
        CU_CHECK(be, cuda_launch_cl(k, dim3(grid), dim3(NORM_THREADS), 0, be->stream,
                                    be->n_rows, split, x, h, w, dim, eps, out, ob, n,
                                    be->tp_rank, be->tp_epoch, pp, aw),
                 what);
        return NY_OK;
    }
    auto k = ll ? k_p2p_sum_add_norm_last<W, true> : k_p2p_sum_add_norm_last<W, false>;
    CU_LAUNCH(be, what, k, dim3(grid), dim3(NORM_THREADS), 0, x, h, w, dim, eps, out, ob, n,
              be->tp_rank, be->tp_epoch, split, ar, pp, aw);
    return NY_OK;
}

int cuda_tp_p2p_add_norm(struct engine_backend *be, struct engine_buf *x, struct engine_buf *h,
                         const struct engine_buf *w, int dim, float eps, struct engine_buf *out,
                         struct ny_err *err)
{
    size_t count = (size_t)be->n_rows * (size_t)(dim > 0 ? dim : 0);
    if (dim <= 0 || count > x->n || count > h->n || count > out->n || w->n != (size_t)dim ||
        w->wtype == CUDA_W_NONE || x->wtype != CUDA_W_NONE || h->wtype != CUDA_W_NONE)
        return NY_ERR(err, NY_E_INVALID, "cuda tp_allreduce_add_rmsnorm: dim %d, weight of %zu, "
                      "%d rows", dim, w->n, be->n_rows);
    if (x->d == h->d || x->d == out->d)
        return NY_ERR(err, NY_E_INVALID, "cuda tp_allreduce_add_rmsnorm: x may not alias h or "
                      "out");
    const int kind = fused_kind(be, dim);
    if (!kind) { /* the two ops */
        int rc = cuda_tp_allreduce(be, h, dim, err);
        return rc ? rc : cuda_op_add_rmsnorm(be, x, h, w, dim, eps, out, err);
    }
    if (count == 0)
        return NY_OK;
    /* the bf16 shadow of out where the step's products read it (the caller dropped the last) */
    __nv_bfloat16 *ob = NULL;
    int rc = cuda_shadow_room(be, dim, &ob, err);
    if (rc)
        return rc;
    struct engine_tp *g = be->tp;
    const struct p2p_peers pp = p2p_next(be);
    const volatile int *aw = (const volatile int *)g->abort_word;
    if (kind == 2) {
        /* a cluster of ceil(n4 / NORM_THREADS) <= NORM_V blocks a row where the step's flags
         * suffice (more rows than 8 here only under NY_PDL_ROWS), else last_split's */
        const int cs = (dim / 4 + NORM_THREADS - 1) / NORM_THREADS;
        const int clu = g->clu && be->n_rows * cs <= P2P_BLOCKS_MAX;
        const int split = clu ? cs : last_split(be, dim);
        const unsigned grid = (unsigned)(be->n_rows * split);
        int *ar = g->arrive[be->tp_rank];
        const int ll =
            g->ll[be->tp_rank] && count <= CUDA_TP_LL_FLOATS && be->n_rows <= LL_ROWS;
        be->tp_ll += ll;
        be->tp_clu += clu;
        static const char *const whats[2][2] = {
            {"tp peer-to-peer sum + add + rmsnorm kernel (last block)",
             "tp peer-to-peer sum + add + rmsnorm kernel (LL, last block)"},
            {"tp peer-to-peer sum + add + rmsnorm kernel (cluster)",
             "tp peer-to-peer sum + add + rmsnorm kernel (LL, cluster)"}};
        const char *what = whats[clu][ll];
        rc = w->wtype == CUDA_W_BF16
                 ? launch_last(be, ll, clu, what, grid, (float *)x->d, (const float *)h->d,
                               (const __nv_bfloat16 *)w->d, dim, eps, (float *)out->d, ob, split,
                               ar, pp, aw, err)
                 : launch_last(be, ll, clu, what, grid, (float *)x->d, (const float *)h->d,
                               (const float *)w->d, dim, eps, (float *)out->d, ob, split, ar, pp,
                               aw, err);
        if (rc)
            return rc;
        cuda_shadow_mark(be, ob, out->d, dim);
        return NY_OK;
    }
    const int split = fused_split(be);
    const unsigned grid = (unsigned)(be->n_rows * split);
    const char *what = "tp peer-to-peer sum + add + rmsnorm kernel";
    if (w->wtype == CUDA_W_BF16)
        CU_LAUNCH(be, what, k_p2p_sum_add_norm<__nv_bfloat16>, dim3(grid), dim3(NORM_THREADS),
                  0, (float *)x->d, (const float *)h->d, (const __nv_bfloat16 *)w->d, dim, eps,
                  (float *)out->d, ob, g->n, be->tp_rank, be->tp_epoch, split, pp, aw);
    else
        CU_LAUNCH(be, what, k_p2p_sum_add_norm<float>, dim3(grid), dim3(NORM_THREADS), 0,
                  (float *)x->d, (const float *)h->d, (const float *)w->d, dim, eps,
                  (float *)out->d, ob, g->n, be->tp_rank, be->tp_epoch, split, pp, aw);
    cuda_shadow_mark(be, ob, out->d, dim);
    return NY_OK;
}
