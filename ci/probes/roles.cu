/* roles.cu — probe: does a decode layer get faster when the products and the latency-bound
 * kernels run on SMs of their own, so that the next product's weights stream while the small
 * kernels run?
 * One GPU's share of a 70B tp-4 decode layer, modelled as plain weight reads (q/k/v 42 MB, o 33.5,
 * gate + up 235, down 117: k_prod) and the small kernels between them (rope, attention, combine,
 * swiglu: k_tiny and k_att; each sum: k_sum with a spin of 7 or 10 µs standing for the wait on
 * the other GPUs), 10 layers a pass (4.5 GB, past the L2), 5 passes timed:
 *   one stream  every kernel on one stream under PDL (the engine's way); a product copies its
 *               first PF KB a block into shared memory before griddepcontrol.wait
 *   split       green contexts: the products on one SM partition (PDL from product to product),
 *               the small kernels on the other; each side waits for the other through counters;
 *               a product copies its first PF KB a block while its input is being made
 *   products only  the reads alone: the floor of each arrangement
 * Printed: µs a layer. */
#include "probe.cuh"

#define PT 512
/* A product: the block's even share of n16 vectors, the first pf of them copied to shared memory
 * (cp.async) before the wait (PDL, or wcnt >= wtarget), the rest read after it. */
__global__ void __launch_bounds__(PT, 2)
    k_prod(const uint4 *w, size_t n16, int pf, const unsigned *wcnt, unsigned wtarget,
           unsigned *sig, int trig_early, unsigned *sink)
{
    extern __shared__ uint4 buf[];
    if (trig_early)
        gd_trig();
    const size_t per = (n16 + gridDim.x - 1) / gridDim.x, b = blockIdx.x * per;
    const size_t e = b + per < n16 ? b + per : n16;
    const size_t pe = b + pf < e ? b + pf : e;
    const unsigned sb = (unsigned)__cvta_generic_to_shared(buf);
    for (size_t i = b + threadIdx.x; i < pe; i += PT)
        asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(sb + (unsigned)(i - b) * 16),
                     "l"(w + i)
                     : "memory");
    asm volatile("cp.async.commit_group;" ::: "memory");
    wait_in(wcnt, wtarget);
    unsigned acc = 0;
    asm volatile("cp.async.wait_all;" ::: "memory");
    for (size_t i = b + threadIdx.x; i < pe; i += PT) {
        uint4 v = buf[i - b];
        acc ^= v.x ^ v.y ^ v.z ^ v.w;
    }
    size_t i = pe + threadIdx.x;
    for (; i + 7 * PT < e; i += 8 * PT) {
        uint4 v[8];
#pragma unroll
        for (int u = 0; u < 8; u++)
            v[u] = ldnc(w + i + u * PT);
#pragma unroll
        for (int u = 0; u < 8; u++)
            acc ^= v[u].x ^ v[u].y ^ v[u].z ^ v[u].w;
    }
    for (; i < e; i += PT) {
        uint4 v = ldnc(w + i);
        acc ^= v.x ^ v.y ^ v.z ^ v.w;
    }
    if (!trig_early)
        gd_trig();
    if (acc == 0x12345678u)
        sink[0] = acc;
    signal_out(sig);
}

#define LAYERS 10
#define REPS 5
static const size_t PBYTES[4] = {(size_t)42 << 20, 33554432, (size_t)235 << 20,
                                 (size_t)117 << 20}; /* q/k/v, o, gate + up, down */

struct env {
    uint4 *w, *kv;
    float *x, *h, *wn, *out, *y2;
    unsigned *cnt, *sink;
    size_t woff[LAYERS][4];
};

/* One pass of LAYERS layers: the products on sP (pgrid blocks, pf vectors a block before the
 * wait), the small kernels on sL (sP: one stream, PDL; NULL: none). cnt: this pass's counters,
 * each sync point its own, zeroed. */
static void pass(const env &E, cudaStream_t sP, cudaStream_t sL, int pgrid, int pf,
                 unsigned *cnt)
{
    const bool only = sL == NULL, split = !only && sP != sL;
    const size_t smem = (size_t)pf * 16;
    float4 *x = (float4 *)E.x, *out = (float4 *)E.out, *y2 = (float4 *)E.y2;
    const float4 *h = (const float4 *)E.h;
    const float *wn = (const float *)E.wn;
    const unsigned *none = NULL;
    int k = 0;
    unsigned *prev = NULL; /* the counter the next product waits for (split) */
    unsigned prev_target = 0;
    for (int l = 0; l < LAYERS; l++)
        for (int p = 0; p < 4; p++) {
            unsigned *pc = split ? cnt + k++ : NULL, *lc = split ? cnt + k++ : NULL;
            launch_pdl(k_prod, pgrid, PT, smem, sP, (const uint4 *)(E.w + E.woff[l][p]),
                       PBYTES[p] / 16, pf, (const unsigned *)prev, prev_target, pc, split ? 1 : 0,
                       E.sink);
            if (only)
                continue;
            /* the small kernels after product p: the first waits for it (split), the last
             * signals the next product */
            const unsigned pg = (unsigned)pgrid;
            if (p == 0) { /* rope, attention, combine */
                launch_pdl(k_tiny, 16, NT, 0, sL, (const float4 *)out, h, y2,
                           (const unsigned *)pc, pg, (unsigned *)NULL);
                launch_pdl(k_att, 34, NT, 0, sL, (const uint4 *)E.kv, (l * 4 + k) % 128,
                           (const float4 *)y2, h, out, none, 0u, (unsigned *)NULL);
                launch_pdl(k_tiny, 16, NT, 0, sL, (const float4 *)out, h, y2, none, 0u, lc);
                prev_target = 16;
            } else if (p == 2) { /* swiglu */
                launch_pdl(k_tiny, 16, NT, 0, sL, (const float4 *)out, h, y2,
                           (const unsigned *)pc, pg, lc);
                prev_target = 16;
            } else { /* the sums: after o (7 µs waiting on the others), after down (10 µs) */
                launch_pdl(k_sum, 8, NT, 0, sL, x, h, wn, out, p == 1 ? 7000 : 10000,
                           (const unsigned *)pc, pg, lc);
                prev_target = 8;
            }
            prev = lc;
        }
}

static float run(const env &E, cudaStream_t sP, cudaStream_t sL, int pgrid, int pf)
{
    const int slots = LAYERS * 8;
    CK(cudaMemset(E.cnt, 0, sizeof(unsigned) * slots * (REPS + 1)));
    CK(cudaDeviceSynchronize());
    pass(E, sP, sL, pgrid, pf, E.cnt); /* warm-up */
    CK(cudaDeviceSynchronize());
    cudaEvent_t e0, e1, j;
    CK(cudaEventCreate(&e0));
    CK(cudaEventCreate(&e1));
    CK(cudaEventCreate(&j));
    CK(cudaEventRecord(e0, sP));
    if (sL && sL != sP)
        CK(cudaStreamWaitEvent(sL, e0));
    for (int r = 1; r <= REPS; r++)
        pass(E, sP, sL, pgrid, pf, E.cnt + r * slots);
    if (sL && sL != sP) {
        CK(cudaEventRecord(j, sL));
        CK(cudaStreamWaitEvent(sP, j));
    }
    CK(cudaEventRecord(e1, sP));
    CK(cudaDeviceSynchronize());
    CK(cudaGetLastError());
    float ms;
    CK(cudaEventElapsedTime(&ms, e0, e1));
    return ms * 1000 / REPS / LAYERS;
}

int main()
{
    env E;
    size_t tot = 0;
    for (int l = 0; l < LAYERS; l++)
        for (int p = 0; p < 4; p++) {
            E.woff[l][p] = tot / 16;
            tot += PBYTES[p];
        }
    CK(cudaMalloc(&E.w, tot));
    CK(cudaMemset(E.w, 0x3c, tot));
    CK(cudaMalloc(&E.kv, (size_t)256 << 20));
    CK(cudaMemset(E.kv, 0x3c, (size_t)256 << 20));
    float **f[] = {&E.x, &E.h, &E.wn, &E.out, &E.y2};
    for (auto p : f) {
        CK(cudaMalloc(p, 8192 * 4));
        CK(cudaMemset(*p, 0, 8192 * 4));
    }
    CK(cudaMalloc(&E.cnt, sizeof(unsigned) * LAYERS * 8 * (REPS + 1)));
    CK(cudaMalloc(&E.sink, 4));
    CK(cudaFuncSetAttribute(k_prod, cudaFuncAttributeMaxDynamicSharedMemorySize, 110 * 1024));
    cudaStream_t s;
    CK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    printf("%.2f GB of weights a pass (%d layers)\n", tot / 1e9, LAYERS);
    const int pfs[] = {256, 2048, 6144}; /* vectors a block: 4, 32, 96 KB */
    for (int pf : pfs)
        printf("one stream, 264 product blocks, prefetch %3d KB a block: %7.1f us a layer\n",
               pf / 64, run(E, s, s, 264, pf));
    printf("products only, one stream, 264 blocks, prefetch 4 KB: %7.1f us a layer\n",
           run(E, s, NULL, 264, 256));
    const unsigned sizes[] = {16, 24};
    for (unsigned nA : sizes) {
        CUstream sA, sB;
        unsigned na, nb;
        green_split(nA, &sA, &sB, &na, &nb);
        const int pg = 2 * (int)nb;
        for (int pf : pfs)
            printf("split %u/%u, %d product blocks, prefetch %3d KB a block: %7.1f us a layer\n",
                   na, nb, pg, pf / 64, run(E, (cudaStream_t)sB, (cudaStream_t)sA, pg, pf));
        printf("products only on %u SMs, %d blocks, prefetch 4 KB: %7.1f us a layer\n", nb, pg,
               run(E, (cudaStream_t)sB, NULL, pg, 256));
    }
    return 0;
}
