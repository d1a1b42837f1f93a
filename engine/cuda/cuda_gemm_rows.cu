/* cuda_gemm_rows.cu — the products of decode rows and the final-logits rows (cuda_gemm.cu has
 * the prefill path and the op entry points):
 *   - skinny rows: our own tensor-core kernel, 8 output columns per block, K split over 8 warps
 *     in fixed 32-wide blocks, each warp's partial summed in k order and the 8 warps summed in
 *     warp order: a row's result never depends on the other rows (each mma row is independent)
 *     nor on how many rows there are; the products of one input share one launch, each part
 *     with its own rows (q, k, v and their LoRA A matrices over each adapter's rows; the B
 *     matrices of every adapter group, on a kernel of a warp a tile: k_skinny_short);
 *   - generic (fp32 weights, or shapes the others refuse): one warp per output element, lanes
 *     strided over k, a fixed xor-shuffle tree.
 */
#include <stdlib.h>
#include <string.h>

#include "cuda_skinny.cuh"

/* This lane's 16 bytes of W for the k-blocks b0 + u·SK_WARPS, u < U (zeros past the end). */
template <int U>
__device__ __forceinline__ static void load_w(uint4 (&wv)[U], const __nv_bfloat16 *wp, int b0,
                                              int nb, int K, int t, bool ok)
{
#pragma unroll
    for (int u = 0; u < U; u++) {
        int b = b0 + u * SK_WARPS, k = b * 32 + t * 8;
        wv[u] = make_uint4(0, 0, 0, 0);
        if (ok && b < nb && k < K)
            wv[u] = __ldg((const uint4 *)(wp + (size_t)b * 32));
    }
}

/* For each part, rows m of [row0 + 16·MT·blockIdx.y, +16·MT) below the part's M:
 * Y[out_idx[m], n] = alpha · Σ_k bf16(X[in_idx[m], k]) W[n, k] + beta · Y[..] (the part's index
 * lists; NULL: identity). X fp32 [., K] (rounded to bf16 as it is read); W bf16 [N, K]; K % 8 == 0.
 * Lane (g = lane / 4, t = lane % 4) of warp w loads 8 consecutive k of W row n0 + g at
 * 32·b + 8·t and the same 8 k of X rows g and g + 8, for the k-blocks b = w, w + 8, ... in
 * order; the mma's logical k slots are a permutation of those physical k, applied identically to
 * A and B, so the product is the plain dot product. The 8 warps' partials are summed in warp
 * order. That is the whole arithmetic of an element: it does not depend on MT, on the unroll
 * depth U, on the load pipelining PF (the next U loads issued before the current ones are
 * multiplied) or on the occupancy bound MINB, which only change the schedule. */
template <int MT, int U, int PF, int MINB>
__global__ __launch_bounds__(SK_WARPS * 32, MINB) static void k_skinny(const struct sk_parts P,
                                                                       int row0, float beta)
{
    __shared__ float red[SK_WARPS][MT][32][4];
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
    const struct sk_part pt = sk_select(P);
    const int K = pt.K, N = pt.N, M = pt.M;
    const int n0 = ((int)blockIdx.x - pt.tile0) * SK_COLS, m0 = row0 + blockIdx.y * 16 * MT;
    if (m0 >= M) /* past this part's rows (the whole block) */
        return;
    const int nb = (K + 31) / 32;
    const bool wrow_ok = n0 + g < N;
    const __nv_bfloat16 *wp = pt.W + (size_t)(wrow_ok ? n0 + g : 0) * K + t * 8;
    const int step = SK_WARPS * U;
    uint4 wv[U], wn[PF ? U : 1];
    if (PF) /* weights only: before the previous kernel's results are waited for */
        load_w<U>(wv, wp, warp, nb, K, t, wrow_ok);
    pdl_wait();
    const float *xr[MT][2];
    cuda_tile_rows<MT>(xr, pt.X, pt.in_idx, m0, M, K, g, t);
    float acc[MT][4];
#pragma unroll
    for (int i = 0; i < MT; i++)
        acc[i][0] = acc[i][1] = acc[i][2] = acc[i][3] = 0.0f;
    for (int b0 = warp; b0 < nb; b0 += step) {
        if (PF)
            load_w<PF ? U : 1>(wn, wp, b0 + step, nb, K, t, wrow_ok);
        else
            load_w<U>(wv, wp, b0, nb, K, t, wrow_ok);
#pragma unroll
        for (int u = 0; u < U; u++) {
            int b = b0 + u * SK_WARPS, k = b * 32 + t * 8;
            if (b >= nb)
                break;
            const uint4 w1[1] = {wv[u]};
            cuda_tile_kblock<MT, 1>(acc, xr, b, k, K, w1);
        }
        if (PF)
#pragma unroll
            for (int u = 0; u < U; u++)
                wv[u] = wn[PF ? u : 0];
    }
    pdl_trigger();
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
#pragma unroll
        for (int j = 0; j < 4; j++)
            red[warp][mt][lane][j] = acc[mt][j];
    __syncthreads();
    /* each output element: the 8 warps' partials summed in warp order */
    for (int e = threadIdx.x; e < MT * 32 * 4; e += SK_WARPS * 32) {
        int row, col;
        float s = cuda_tile_sum<MT, SK_WARPS>(red, e, &row, &col);
        if (m0 + row < M && n0 + col < N)
            cuda_store_y(pt.Y, pt.ldy, pt.out_idx, m0 + row, n0 + col, pt.alpha, s, beta);
    }
}

/* The one-tile launch with a deeper, register-free load pipeline: each lane streams its own
 * 16-byte pieces of W through a private ring of S slots in shared memory (cp.async, S k-blocks
 * in flight per warp at all times), so a warp never stalls between batches of loads. The
 * arithmetic is k_skinny's exactly (same chains, same order, same final sum). */
template <int S, int NT>
__global__ __launch_bounds__(SK_WARPS * 32) static void k_skinny_ring(const struct sk_parts P,
                                                                      int row0, float beta)
{
    extern __shared__ uint4 sk_ring[]; /* [SK_WARPS][S][NT][32] */
    __shared__ float red[SK_WARPS][NT][32][4];
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
    struct sk_part pt;
    int m0, n0;
    const __nv_bfloat16 *wp[NT];
    bool ok[NT];
    if (!sk_wide_begin<1, NT>(P, row0, pt, m0, n0, wp, ok)) /* past this part's rows */
        return;
    const int K = pt.K, M = pt.M, nb = (K + 31) / 32;
    const int jn = nb > warp ? (nb - warp + SK_WARPS - 1) / SK_WARPS : 0;
    uint4 *ring = sk_ring + (size_t)warp * S * NT * 32 + lane;
    const unsigned ring_s = (unsigned)__cvta_generic_to_shared(ring);
    /* k-block j of this warp's, tile nt, into slot j % S (zeros past the end) */
    auto fetch = [&](int j) {
        const int b = warp + j * SK_WARPS, slot = j % S;
#pragma unroll
        for (int nt = 0; nt < NT; nt++) {
            bool on = j < jn && ok[nt] && b * 32 + t * 8 < K;
            sk_cp16(ring_s + (slot * NT + nt) * 32 * 16,
                    on ? (const void *)(wp[nt] + (size_t)b * 32) : (const void *)wp[nt], on);
        }
        asm volatile("cp.async.commit_group;\n" ::: "memory");
    };
#pragma unroll
    for (int j = 0; j < S; j++)
        fetch(j);
    /* the ring's first S k-blocks are in flight: now wait for the previous kernel */
    pdl_wait();
    const float *xr2[1][2];
    cuda_tile_rows<1>(xr2, pt.X, pt.in_idx, m0, M, K, g, t);
    const float *const *xr = xr2[0];
    float acc[NT][4];
#pragma unroll
    for (int nt = 0; nt < NT; nt++)
        acc[nt][0] = acc[nt][1] = acc[nt][2] = acc[nt][3] = 0.0f;
    for (int j = 0; j < jn; j++) {
        const int b = warp + j * SK_WARPS, k = b * 32 + t * 8, slot = j % S;
        uint4 x0 = make_uint4(0, 0, 0, 0), x1 = make_uint4(0, 0, 0, 0);
        if (k < K && xr[0])
            x0 = cuda_load_x8(xr[0] + (size_t)b * 32);
        if (k < K && xr[1])
            x1 = cuda_load_x8(xr[1] + (size_t)b * 32);
        asm volatile("cp.async.wait_group %0;\n" ::"n"(S - 1) : "memory");
        uint4 wv[NT];
#pragma unroll
        for (int nt = 0; nt < NT; nt++)
            wv[nt] = ring[(slot * NT + nt) * 32];
        cuda_tile_mma<NT>(acc, x0, x1, wv);
        fetch(j + S);
    }
    asm volatile("cp.async.wait_group 0;\n" ::: "memory");
    pdl_trigger();
    sk_wide_store<1, NT>(red, acc, pt, m0, n0, beta);
}

/* The raw X floats of k-block b (zeros past K or the rows), for XPF below, and their bf16 pack
 * (cuda_load_x8's rounding of the same floats). */
template <int MT>
__device__ __forceinline__ static void load_x_raw(float4 (&xa)[MT][2][2],
                                                  const float *const (&xr)[MT][2], int b, int nb,
                                                  int K, int t)
{
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
#pragma unroll
        for (int h = 0; h < 2; h++) {
            xa[mt][h][0] = xa[mt][h][1] = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
            if (b < nb && b * 32 + t * 8 < K && xr[mt][h]) { /* zeros past K or the rows */
                const float4 *p = reinterpret_cast<const float4 *>(xr[mt][h] + (size_t)b * 32);
                xa[mt][h][0] = p[0];
                xa[mt][h][1] = p[1];
            }
        }
}

__device__ __forceinline__ static uint4 pack_x8(const float4 (&a)[2])
{
    return make_uint4(cuda_pack_bf16x2(a[0].x, a[0].y), cuda_pack_bf16x2(a[0].z, a[0].w),
                      cuda_pack_bf16x2(a[1].x, a[1].y), cuda_pack_bf16x2(a[1].z, a[1].w));
}

/* Wide tiles, for steps of more rows: a block computes NT 8-column tiles, each warp feeding all NT
 * from one load (and one bf16 rounding) of its X fragments. Every block reads its rows of X whole
 * (fp32, from L2): at 16 rows that is 4 times the bytes of an 8-column tile's W, so k_skinny's
 * launches move mostly X; NT tiles a block divide that by NT (launches of 48+ rows take
 * cuda_gemm_rows_xb.cu instead: X staged in bf16 once, W and X through a cp.async ring). The
 * arithmetic of an element is k_skinny's exactly (its warp's k-blocks in order, two mma steps
 * each, warps summed in order).
 *
 * XPF (U 1, for one or two row tiles): the X fragments of the next k-block load along with its W
 * (X and W both a step ahead). At 16 rows a warp's X loads (L2 hits) otherwise stall every
 * step, and the wide launches have few warps an SM to hide that. Either way the arithmetic is
 * k_skinny's exactly (the same floats packed the same way, the same mma order). */
template <int MT, int NT, int U, bool XPF>
__global__ __launch_bounds__(SK_WARPS * 32, 2) static void k_skinny_wide(const struct sk_parts P,
                                                                         int row0, float beta)
{
    static_assert(!XPF || U == 1, "the X prefetch runs one k-block a step");
    __shared__ float red[SK_WARPS][MT * NT][32][4];
    const int warp = threadIdx.x / 32, g = (threadIdx.x % 32) / 4, t = threadIdx.x % 4;
    struct sk_part pt;
    int m0, n0;
    const __nv_bfloat16 *wp[NT];
    bool ok[NT];
    if (!sk_wide_begin<MT, NT>(P, row0, pt, m0, n0, wp, ok)) /* past this part's rows */
        return;
    const int K = pt.K, M = pt.M;
    const int nb = (K + 31) / 32, step = SK_WARPS * U;
    uint4 wv[U][NT], wn[U][NT];
    load_w_wide<U, NT>(wv, wp, warp, nb, K, t, ok); /* weights only: before the wait */
    pdl_wait();
    const float *xr[MT][2];
    cuda_tile_rows<MT>(xr, pt.X, pt.in_idx, m0, M, K, g, t);
    float4 xa[XPF ? MT : 1][2][2], xn[XPF ? MT : 1][2][2];
    if constexpr (XPF)
        load_x_raw<MT>(xa, xr, warp, nb, K, t);
    float acc[MT * NT][4];
#pragma unroll
    for (int i = 0; i < MT * NT; i++)
        acc[i][0] = acc[i][1] = acc[i][2] = acc[i][3] = 0.0f;
    for (int b0 = warp; b0 < nb; b0 += step) {
        load_w_wide<U, NT>(wn, wp, b0 + step, nb, K, t, ok);
        if constexpr (XPF) {
            load_x_raw<MT>(xn, xr, b0 + step, nb, K, t);
#pragma unroll
            for (int mt = 0; mt < MT; mt++)
                cuda_tile_mma<NT>(&acc[mt * NT], pack_x8(xa[mt][0]), pack_x8(xa[mt][1]), wv[0]);
#pragma unroll
            for (int mt = 0; mt < MT; mt++)
#pragma unroll
                for (int h = 0; h < 2; h++)
                    xa[mt][h][0] = xn[mt][h][0], xa[mt][h][1] = xn[mt][h][1];
        } else {
#pragma unroll
            for (int u = 0; u < U; u++) {
                int b = b0 + u * SK_WARPS, k = b * 32 + t * 8;
                if (b >= nb)
                    break;
                cuda_tile_kblock<MT, NT>(acc, xr, b, k, K, wv[u]);
            }
        }
#pragma unroll
        for (int u = 0; u < U; u++)
#pragma unroll
            for (int nt = 0; nt < NT; nt++)
                wv[u][nt] = wn[u][nt];
    }
    pdl_trigger();
    sk_wide_store<MT, NT>(red, acc, pt, m0, n0, beta);
}

/* Short products (K <= SK_SHORT_K: the LoRA B matrices, K = rank): k_skinny's 8 warps would each
 * own at most one k-block, most of them none, so a block is all start-up and reduction. Here a
 * warp owns a whole 8-column tile: it computes every k-block's partial (two mma steps from zero,
 * as warp b of k_skinny does for k-block b) and sums the 8 partials in warp order itself (zeros
 * for the warps k_skinny would leave without a k-block), for MT row tiles. Same arithmetic as
 * k_skinny's, bit for bit. SK_SHORT_WARPS tiles a block. */
#define SK_SHORT_WARPS 4
template <int MT>
__global__ __launch_bounds__(SK_SHORT_WARPS * 32) static void k_skinny_short(
    const struct sk_parts P, int row0, float beta)
{
    constexpr int NB = SK_SHORT_K / 32;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
    const struct sk_part pt = sk_select(P);
    const int K = pt.K, N = pt.N, M = pt.M, nb = (K + 31) / 32;
    const int n0 = (((int)blockIdx.x - pt.tile0) * SK_SHORT_WARPS + warp) * SK_COLS;
    const int m0 = row0 + blockIdx.y * 16 * MT;
    const bool live = m0 < M && n0 < N, wrow_ok = n0 + g < N;
    uint4 wv[NB];
    const __nv_bfloat16 *wp = pt.W + (size_t)(wrow_ok ? n0 + g : 0) * K + t * 8;
#pragma unroll
    for (int b = 0; b < NB; b++) { /* weights only: before the wait */
        wv[b] = make_uint4(0, 0, 0, 0);
        if (live && wrow_ok && b < nb && b * 32 + t * 8 < K)
            wv[b] = __ldg((const uint4 *)(wp + (size_t)b * 32));
    }
    pdl_wait();
    if (!live)
        return;
    const float *xr[MT][2];
    cuda_tile_rows<MT>(xr, pt.X, pt.in_idx, m0, M, K, g, t);
    pdl_trigger();
#pragma unroll
    for (int mt = 0; mt < MT; mt++) {
        if (m0 + mt * 16 >= M)
            break;
        float acc[SK_WARPS][4];
#pragma unroll
        for (int w = 0; w < SK_WARPS; w++) {
            acc[w][0] = acc[w][1] = acc[w][2] = acc[w][3] = 0.0f;
            if (w < NB && w < nb) {
                const float *const xm[1][2] = {{xr[mt][0], xr[mt][1]}};
                float a1[1][4] = {{0.0f, 0.0f, 0.0f, 0.0f}};
                const uint4 w1[1] = {wv[w < NB ? w : 0]};
                cuda_tile_kblock<1, 1>(a1, xm, w, w * 32 + t * 8, K, w1);
                acc[w][0] = a1[0][0], acc[w][1] = a1[0][1], acc[w][2] = a1[0][2];
                acc[w][3] = a1[0][3];
            }
        }
#pragma unroll
        for (int j = 0; j < 4; j++) {
            float s = 0.0f; /* cuda_tile_sum's order */
#pragma unroll
            for (int w = 0; w < SK_WARPS; w++)
                s += acc[w][j];
            const int row = mt * 16 + g + (j >= 2 ? 8 : 0), col = 2 * t + (j & 1);
            if (m0 + row < M && n0 + col < N)
                cuda_store_y(pt.Y, pt.ldy, pt.out_idx, m0 + row, n0 + col, pt.alpha, s, beta);
        }
    }
}

/* ---- generic kernel --------------------------------------------------------------------------- */
template <typename WT>
__global__ static void k_generic(const float *X, const int *in_idx, int M, int K, const WT *W,
                                 int N, const int *out_idx, float *Y, int ldy, float alpha,
                                 float beta)
{
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    int n = blockIdx.x * 8 + warp;
    if (n >= N)
        return;
    for (int m = blockIdx.y; m < M; m += gridDim.y) {
        const float *x = X + (size_t)(in_idx ? in_idx[m] : m) * K;
        const WT *w = W + (size_t)n * K;
        float s = 0.0f;
        for (int k = lane; k < K; k += 32)
            s += x[k] * (float)w[k];
        for (int o = 16; o > 0; o >>= 1)
            s += __shfl_xor_sync(0xffffffffu, s, o);
        if (lane == 0) {
            float *yp = Y + (size_t)(out_idx ? out_idx[m] : m) * ldy + n;
            float v = alpha * s;
            if (beta != 0.0f)
                v += beta * *yp;
            *yp = v;
        }
    }
}

int cuda_skinny_ok(const struct engine_buf *w)
{
    return w->wtype == CUDA_W_BF16 && w->cols % 8 == 0;
}

/* The schedule of a skinny launch. By default: products of K <= SK_SHORT_K (the LoRA B matrices)
 * take k_skinny_short (a warp a tile; NY_SKINNY_SHORT=0: the schedules below); up to
 * SK_RING_ROWS rows the ring kernel (k_skinny_ring<8, 1>) where the launch is no deeper than
 * ring_k() (2,048: the ring holds all of a lane's W before the wait) or has too few columns for
 * 2 wide tiles a block (the 70B card's q, k, v), else wide tiles (k_skinny_wide, X prefetched:
 * 32 columns a block up to 32 rows, 16 beyond). NY_SKINNY_V forces one for A/B timing; for
 * one-tile (<= 16 rows) launches: 0 (U 8, pipelined, no occupancy bound: the first version), 1
 * (U 8, not pipelined, 4 blocks an SM), 2 (U 4, pipelined, 4 blocks an SM), 3 (U 4, pipelined, 3
 * blocks an SM), 4 (ring of 8), 5 (ring of 16 pieces a lane over up to 4 tiles: fewer tiles where
 * that leaves under 256 blocks); 6 wide tiles at any row count (X prefetched up to 2 row tiles),
 * 7 no wide tiles (passes of 2-4 row tiles: U 4, pipelined unless NY_SKINNY_PF=0), 8 wide tiles
 * without the X prefetch. All give bit-identical results (one arithmetic), so the choice may
 * follow the row count and the shapes. */
#define SK_RING_ROWS 8
static int env_int(const char *name, int dflt)
{
    const char *e = getenv(name);
    return e && e[0] >= '0' && e[0] <= '9' && !e[1] ? e[0] - '0' : dflt;
}

static int skinny_variant(int *pf)
{
    static int v = -1, p = -1; /* ranks' threads may race here: they all store the same values */
    int r = __atomic_load_n(&v, __ATOMIC_RELAXED);
    if (r < 0) {
        __atomic_store_n(&p, env_int("NY_SKINNY_PF", 1) != 0, __ATOMIC_RELAXED);
        r = env_int("NY_SKINNY_V", 9);
        __atomic_store_n(&v, r > 8 ? 9 : r, __ATOMIC_RELAXED);
        r = __atomic_load_n(&v, __ATOMIC_RELAXED);
    }
    *pf = __atomic_load_n(&p, __ATOMIC_RELAXED);
    return r;
}

/* Whether short products take k_skinny_short: yes unless NY_SKINNY_SHORT=0 (A/B timing; the
 * results are bit-identical either way). */
static int skinny_short(void)
{
    static int v = -1;
    return cuda_env_on("NY_SKINNY_SHORT", &v);
}

/* The depth up to which launches of <= SK_RING_ROWS rows take the ring kernel: 2,048, or
 * NY_SKINNY_RK=d: d·1,024 (A/B timing; every schedule gives the same bits). */
static int ring_k(void)
{
    static int v = -1; /* ranks' threads may race here: they all store the same value */
    int r = __atomic_load_n(&v, __ATOMIC_RELAXED);
    if (r < 0) {
        r = env_int("NY_SKINNY_RK", 2) * 1024;
        __atomic_store_n(&v, r, __ATOMIC_RELAXED);
    }
    return r;
}

/* One skinny launch: rows [row0, row0 + 16·MT·grid.y) of every part (below the part's own
 * count); `rows` (the most rows left to any part from row0) picks the schedule, and with it the
 * columns a block computes (the parts' first tiles are set here). */
static int skinny_launch(struct engine_backend *be, int mt, struct sk_parts &P, int passes,
                         int row0, int rows, float beta, struct ny_err *err)
{
    int pf, v = skinny_variant(&pf), kmax = 0, cols = 0;
    for (int i = 0; i < P.n; i++) {
        kmax = P.p[i].K > kmax ? P.p[i].K : kmax;
        cols += P.p[i].N;
    }
    cudaStream_t st = be->stream;
    if (kmax <= SK_SHORT_K && skinny_short()) { /* a warp a tile, SK_SHORT_WARPS tiles a block */
        const int tiles = sk_tiles(P, SK_COLS * SK_SHORT_WARPS);
        dim3 grid((unsigned)tiles, (unsigned)passes), tb(SK_SHORT_WARPS * 32);
#define SK_SHORT(MT_) cuda_launch(k_skinny_short<MT_>, grid, tb, 0, st, be->n_rows, P, row0, beta)
        mt == 1 ? SK_SHORT(1) : mt == 2 ? SK_SHORT(2) : mt == 3 ? SK_SHORT(3) : SK_SHORT(4);
#undef SK_SHORT
        CU_LAUNCHED(be, "skinny GEMM kernel (short)");
        return NY_OK;
    }
    /* 8-column tiles a wide block: 4 (2 from 3 row tiles on), fewer while that leaves under 256
     * blocks (down's 4,096 columns, the 70B card's k and v) — except for short products (the LoRA
     * B matrices, K = rank), whose blocks are all start-up and finish */
    int wide_nt = mt == 1 ? 4 : 2;
    while (wide_nt > 1 && cols / (SK_COLS * wide_nt) < 256 && kmax > SK_SHORT_K)
        wide_nt /= 2;
    /* the default: up to SK_RING_ROWS rows the ring kernel where a launch has too few columns
     * for 2 tiles a block or is no deeper than ring_k() (the ring holds that much of a lane's W
     * in flight before the wait: all of it at K <= 2,048), else wide tiles (X prefetched); more
     * rows: wide tiles */
    if (v == 9)
        v = rows > SK_RING_ROWS || kmax <= SK_SHORT_K || (wide_nt > 1 && kmax > ring_k()) ? 6 : 4;
    int nt = v != 6 && v != 8 && !(v == 5 && mt == 1) ? 1
             : mt == 1 || (v == 8 && mt == 2) ? 4 : 2;
    while (nt > 1 && cols / (SK_COLS * nt) < 256 && kmax > SK_SHORT_K)
        nt /= 2;
    const int tiles = sk_tiles(P, SK_COLS * nt);
    dim3 grid((unsigned)tiles, (unsigned)passes), tb(SK_WARPS * 32);
#define SK_GO(MT_, U_, PF_, MINB_)                                                                \
    cuda_launch(k_skinny<MT_, U_, PF_, MINB_>, grid, tb, 0, st, be->n_rows, P, row0, beta)
#define SK_WIDE(MT_, NT_, U_)                                                                     \
    cuda_launch(k_skinny_wide<MT_, NT_, U_, false>, grid, tb, 0, st, be->n_rows, P, row0, beta)
#define SK_WPF(MT_, NT_)                                                                          \
    cuda_launch(k_skinny_wide<MT_, NT_, 1, true>, grid, tb, 0, st, be->n_rows, P, row0, beta)
    if (v == 6 && mt <= 2) { /* X prefetched with W */
        if (mt == 1)
            nt == 4 ? SK_WPF(1, 4) : nt == 2 ? SK_WPF(1, 2) : SK_WPF(1, 1);
        else
            nt == 2 ? SK_WPF(2, 2) : SK_WPF(2, 1);
    } else if (v == 6 || v == 8) {
        if (mt == 1)
            nt == 4 ? SK_WIDE(1, 4, 2) : nt == 2 ? SK_WIDE(1, 2, 2) : SK_WIDE(1, 1, 2);
        else if (mt == 2)
            nt == 4 ? SK_WIDE(2, 4, 1) : nt == 2 ? SK_WIDE(2, 2, 1) : SK_WIDE(2, 1, 1);
        else if (nt == 1)
            mt == 3 ? SK_WIDE(3, 1, 1) : SK_WIDE(4, 1, 1);
        else
            mt == 3 ? SK_WIDE(3, 2, 1) : SK_WIDE(4, 2, 1);
    } else if (mt == 1 && v >= 4 && v <= 5) {
        /* 4: 8 k-blocks a lane in flight, one tile; 5: 16 pieces a lane over nt tiles */
        size_t shm = (size_t)SK_WARPS * 32 * 16 * (v == 4 ? 8 : 16);
        if (v == 4) {
            cuda_launch(k_skinny_ring<8, 1>, grid, tb, shm, st, be->n_rows, P, row0, beta);
        } else {
            static int allowed[3][CUDA_MAX_DEVICES];
            int w = nt == 4 ? 2 : nt == 2 ? 1 : 0;
            const void *fn = w == 2   ? (const void *)k_skinny_ring<4, 4>
                             : w == 1 ? (const void *)k_skinny_ring<8, 2>
                                      : (const void *)k_skinny_ring<16, 1>;
            int rc = cuda_smem_allow(be, fn, shm, allowed[w], err);
            if (rc)
                return rc;
            if (w == 2)
                cuda_launch(k_skinny_ring<4, 4>, grid, tb, shm, st, be->n_rows, P, row0, beta);
            else if (w == 1)
                cuda_launch(k_skinny_ring<8, 2>, grid, tb, shm, st, be->n_rows, P, row0, beta);
            else
                cuda_launch(k_skinny_ring<16, 1>, grid, tb, shm, st, be->n_rows, P, row0, beta);
        }
    } else if (mt == 1) {
        if (v == 0 || v == 7)
            SK_GO(1, 8, 1, 1);
        else if (v == 1)
            SK_GO(1, 8, 0, 4);
        else if (v == 2)
            SK_GO(1, 4, 1, 4);
        else
            SK_GO(1, 4, 1, 3);
    } else if (mt == 2) {
        if (pf)
            SK_GO(2, 4, 1, 1);
        else
            SK_GO(2, 4, 0, 1);
    } else if (mt == 3) {
        if (pf)
            SK_GO(3, 4, 1, 1);
        else
            SK_GO(3, 4, 0, 1);
    } else {
        if (pf)
            SK_GO(4, 4, 1, 1);
        else
            SK_GO(4, 4, 0, 1);
    }
#undef SK_GO
#undef SK_WIDE
#undef SK_WPF
    CU_LAUNCHED(be, "skinny GEMM kernel");
    return NY_OK;
}

/* A part of fp32 weights (or a bf16 shape the skinny kernel refuses): the generic kernel. */
static int generic_part(struct engine_backend *be, const struct cuda_gemm_part *q, float beta)
{
    dim3 grid((unsigned)((q->N + 7) / 8), cuda_grid_rows(q->n));
    if (q->w->wtype == CUDA_W_BF16)
        k_generic<__nv_bfloat16><<<grid, 256, 0, be->stream>>>(
            q->X, q->in_idx, q->n, q->K, (const __nv_bfloat16 *)q->w->d, q->N, q->out_idx, q->Y,
            q->ldy, q->alpha, beta);
    else
        k_generic<float><<<grid, 256, 0, be->stream>>>(q->X, q->in_idx, q->n, q->K,
                                                        (const float *)q->w->d, q->N, q->out_idx,
                                                        q->Y, q->ldy, q->alpha, beta);
    return NY_OK;
}

/* Each part's rows (its own lists), the skinny parts in as few launches as SK_MAX_PARTS allows:
 * bit-identical to one call per part. */
int cuda_gemm_rows_multi(struct engine_backend *be, const struct cuda_gemm_part *gp, int n_parts,
                         float beta, struct ny_err *err)
{
    struct sk_parts P;
    memset(&P, 0, sizeof P);
    int nmax = 0;
    for (int i = 0; i <= n_parts; i++) {
        if (i == n_parts || P.n == SK_MAX_PARTS) { /* launch what is gathered */
            int full = nmax / 64, rest = nmax - full * 64, rc = NY_OK, kmax = 0, cols = 0;
            for (int k = 0; k < P.n; k++) {
                kmax = P.p[k].K > kmax ? P.p[k].K : kmax;
                cols += P.p[k].N;
            }
            if (P.n && cuda_skinny_xb_wanted(nmax, kmax, cols)) { /* X staged in bf16 once */
                rc = cuda_skinny_xb_stage(be, P, err);
                if (!rc && full)
                    rc = cuda_skinny_xb_launch(be, 4, P, full, 0, beta, err);
                if (!rc && rest)
                    rc = cuda_skinny_xb_launch(be, (rest + 15) / 16, P, 1, full * 64, beta, err);
                full = rest = 0;
            }
            if (P.n && full && !rc)
                rc = skinny_launch(be, 4, P, full, 0, nmax, beta, err);
            if (P.n && rest && !rc) /* the last pass: the fewest row tiles that cover it */
                rc = skinny_launch(be, (rest + 15) / 16, P, 1, full * 64, rest, beta, err);
            if (rc)
                return rc;
            memset(&P, 0, sizeof P);
            nmax = 0;
            if (i == n_parts)
                break;
        }
        const struct cuda_gemm_part *q = &gp[i];
        if (q->n <= 0)
            continue;
        if (!cuda_skinny_ok(q->w)) {
            generic_part(be, q, beta);
            CU_LAUNCHED(be, "generic GEMM kernel");
            continue;
        }
        struct sk_part *sp = &P.p[P.n++];
        *sp = {q->X, NULL, (const __nv_bfloat16 *)q->w->d, q->Y, q->in_idx, q->out_idx,
               q->K, q->N, q->ldy, 0, q->n, q->alpha};
        nmax = q->n > nmax ? q->n : nmax;
    }
    return NY_OK;
}

/* Rows in_idx[i] of X (fp32, width K) -> rows out_idx[i] of Y (width ldy), i < n; index arrays
 * are device arrays (NULL = identity). */
int cuda_gemm_rows(struct engine_backend *be, const float *X, const int *in_idx, int n, int K,
                   const struct engine_buf *w, int N, const int *out_idx, float *Y, int ldy,
                   float alpha, float beta, struct ny_err *err)
{
    struct cuda_gemm_part p = {X, w, K, N, Y, ldy, alpha, in_idx, out_idx, n};
    return cuda_gemm_rows_multi(be, &p, 1, beta, err);
}
