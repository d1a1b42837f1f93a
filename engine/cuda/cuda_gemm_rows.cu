/* cuda_gemm_rows.cu — the products of decode rows and the final-logits rows (cuda_gemm.cu has
 * the prefill path and the op entry points):
 *   - skinny rows: our own tensor-core kernel, 8 output columns per block, K split over 8 warps
 *     in fixed 32-wide blocks, each warp's partial summed in k order and the 8 warps summed in
 *     warp order: a row's result never depends on the other rows (each mma row is independent)
 *     nor on how many rows there are; the products of one input (q, k, v; gate, up; their LoRA A
 *     or B matrices) share one launch; narrow, long weights go to cuda_gemm_split.cu;
 *   - generic (fp32 weights, or shapes the others refuse): one warp per output element, lanes
 *     strided over k, a fixed xor-shuffle tree.
 */
#include <stdlib.h>
#include <string.h>

#include "cuda_int.cuh"
#include "cuda_mma.cuh"

/* ---- skinny tensor-core kernel ---------------------------------------------------------------- */
#define SK_WARPS 8
#define SK_COLS 8

/* One launch serves up to SK_MAX_PARTS independent products that share the row lists (q, k and v
 * of one input; gate and up; the LoRA A or B matrices of those): blocks [tile0, next tile0) of the
 * grid's x belong to part p. A part's arithmetic is exactly that of a launch of its own. */
#define SK_MAX_PARTS 3
struct sk_part {
    const float *X;
    const __nv_bfloat16 *W;
    float *Y;
    int K, N, ldy, tile0;
    float alpha;
};
struct sk_parts {
    struct sk_part p[SK_MAX_PARTS];
    int n;
};

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

/* For each part, rows m of [row0 + 16·MT·blockIdx.y, +16·MT) below M:
 * Y[out_idx[m], n] = alpha · Σ_k bf16(X[in_idx[m], k]) W[n, k] + beta · Y[..] (index lists NULL:
 * identity). X fp32 [., K] (rounded to bf16 as it is read); W bf16 [N, K]; K % 8 == 0.
 * Lane (g = lane / 4, t = lane % 4) of warp w loads 8 consecutive k of W row n0 + g at
 * 32·b + 8·t and the same 8 k of X rows g and g + 8, for the k-blocks b = w, w + 8, ... in
 * order; the mma's logical k slots are a permutation of those physical k, applied identically to
 * A and B, so the product is the plain dot product. The 8 warps' partials are summed in warp
 * order. That is the whole arithmetic of an element: it does not depend on MT, on the unroll
 * depth U, on the load pipelining PF (the next U loads issued before the current ones are
 * multiplied) or on the occupancy bound MINB, which only change the schedule. */
template <int MT, int U, int PF, int MINB>
__global__ __launch_bounds__(SK_WARPS * 32, MINB) static void k_skinny(
    const struct sk_parts P, const int *__restrict__ in_idx, int row0, int M,
    const int *__restrict__ out_idx, float beta)
{
    __shared__ float red[SK_WARPS][MT][32][4];
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
    struct sk_part pt = P.p[0];
#pragma unroll
    for (int i = 1; i < SK_MAX_PARTS; i++)
        if (i < P.n && (int)blockIdx.x >= P.p[i].tile0)
            pt = P.p[i];
    const int K = pt.K, N = pt.N;
    const int n0 = ((int)blockIdx.x - pt.tile0) * SK_COLS, m0 = row0 + blockIdx.y * 16 * MT;
    const int nb = (K + 31) / 32;
    const bool wrow_ok = n0 + g < N;
    const __nv_bfloat16 *wp = pt.W + (size_t)(wrow_ok ? n0 + g : 0) * K + t * 8;
    const int step = SK_WARPS * U;
    uint4 wv[U], wn[PF ? U : 1];
    if (PF) /* weights only: before the previous kernel's results are waited for */
        load_w<U>(wv, wp, warp, nb, K, t, wrow_ok);
    pdl_wait();
    const float *xr[MT][2];
    cuda_tile_rows<MT>(xr, pt.X, in_idx, m0, M, K, g, t);
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
            cuda_tile_kblock<MT>(acc, xr, b, k, K, wv[u]);
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
            cuda_store_y(pt.Y, pt.ldy, out_idx, m0 + row, n0 + col, pt.alpha, s, beta);
    }
}

/* The one-tile launch with a deeper, register-free load pipeline: each lane streams its own
 * 16-byte pieces of W through a private ring of S slots in shared memory (cp.async, S k-blocks
 * in flight per warp at all times), so a warp never stalls between batches of loads. The
 * arithmetic is k_skinny's exactly (same chains, same order, same final sum). */
__device__ __forceinline__ static void sk_cp16(unsigned dst, const void *src, bool ok)
{
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src),
                 "r"(ok ? 16 : 0)
                 : "memory");
}

template <int S>
__global__ __launch_bounds__(SK_WARPS * 32) static void k_skinny_ring(
    const struct sk_parts P, const int *__restrict__ in_idx, int row0, int M,
    const int *__restrict__ out_idx, float beta)
{
    extern __shared__ uint4 sk_ring[]; /* [SK_WARPS][S][32] */
    __shared__ float red[SK_WARPS][1][32][4];
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
    struct sk_part pt = P.p[0];
#pragma unroll
    for (int i = 1; i < SK_MAX_PARTS; i++)
        if (i < P.n && (int)blockIdx.x >= P.p[i].tile0)
            pt = P.p[i];
    const int K = pt.K, N = pt.N;
    const int n0 = ((int)blockIdx.x - pt.tile0) * SK_COLS, m0 = row0 + blockIdx.y * 16;
    const int nb = (K + 31) / 32;
    const int jn = nb > warp ? (nb - warp + SK_WARPS - 1) / SK_WARPS : 0;
    const bool wrow_ok = n0 + g < N;
    const __nv_bfloat16 *wp = pt.W + (size_t)(wrow_ok ? n0 + g : 0) * K + t * 8;
    uint4 *ring = sk_ring + (size_t)warp * S * 32 + lane;
    const unsigned ring_s = (unsigned)__cvta_generic_to_shared(ring);
#pragma unroll
    for (int j = 0; j < S; j++) {
        int b = warp + j * SK_WARPS;
        bool ok = j < jn && wrow_ok && b * 32 + t * 8 < K;
        sk_cp16(ring_s + j * 32 * 16, ok ? (const void *)(wp + (size_t)b * 32) : (const void *)wp,
                ok);
        asm volatile("cp.async.commit_group;\n" ::: "memory");
    }
    /* the ring's first S weight pieces are in flight: now wait for the previous kernel */
    pdl_wait();
    const float *xr2[1][2];
    cuda_tile_rows<1>(xr2, pt.X, in_idx, m0, M, K, g, t);
    const float *const *xr = xr2[0];
    float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    for (int j = 0; j < jn; j++) {
        const int b = warp + j * SK_WARPS, k = b * 32 + t * 8, slot = j % S;
        uint4 x0 = make_uint4(0, 0, 0, 0), x1 = make_uint4(0, 0, 0, 0);
        if (k < K && xr[0])
            x0 = cuda_load_x8(xr[0] + (size_t)b * 32);
        if (k < K && xr[1])
            x1 = cuda_load_x8(xr[1] + (size_t)b * 32);
        asm volatile("cp.async.wait_group %0;\n" ::"n"(S - 1) : "memory");
        uint4 wv = ring[slot * 32];
        cuda_mma_bf16(acc, x0.x, x1.x, x0.y, x1.y, wv.x, wv.y);
        cuda_mma_bf16(acc, x0.z, x1.z, x0.w, x1.w, wv.z, wv.w);
        const int jj = j + S, bb = warp + jj * SK_WARPS;
        const bool ok = jj < jn && wrow_ok && bb * 32 + t * 8 < K;
        sk_cp16(ring_s + slot * 32 * 16,
                ok ? (const void *)(wp + (size_t)bb * 32) : (const void *)wp, ok);
        asm volatile("cp.async.commit_group;\n" ::: "memory");
    }
    asm volatile("cp.async.wait_group 0;\n" ::: "memory");
    pdl_trigger();
#pragma unroll
    for (int j = 0; j < 4; j++)
        red[warp][0][lane][j] = acc[j];
    __syncthreads();
    /* each output element: the 8 warps' partials summed in warp order */
    if (threadIdx.x < 128) {
        int row, col;
        float s = cuda_tile_sum<1, SK_WARPS>(red, threadIdx.x, &row, &col);
        if (m0 + row < M && n0 + col < N)
            cuda_store_y(pt.Y, pt.ldy, out_idx, m0 + row, n0 + col, pt.alpha, s, beta);
    }
}

/* ---- generic kernel --------------------------------------------------------------------------- */
template <typename WT>
__global__ static void k_generic(const float *X, const int *in_idx, int M, int K, const WT *W,
                                 int N, const int *out_idx, float *Y, int ldy, float alpha,
                                 float beta)
{
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    int n = blockIdx.x * 8 + warp, m = blockIdx.y;
    if (n >= N || m >= M)
        return;
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

int cuda_skinny_ok(const struct engine_buf *w)
{
    return w->wtype == CUDA_W_BF16 && w->cols % 8 == 0;
}

/* The schedule of a one-tile (<= 16 rows) skinny launch. By default: up to SK_RING_ROWS rows the
 * ring kernel (k_skinny_ring<8>), else U 4 pipelined at 4 blocks an SM. NY_SKINNY_V forces one
 * for A/B timing: 0 (U 8, pipelined, no occupancy bound: the first version), 1 (U 8, not
 * pipelined, 4 blocks an SM), 2 (U 4, pipelined, 4 blocks an SM), 3 (U 4, pipelined, 3 blocks an
 * SM), 4 (ring of 8), 5 (ring of 16). All give bit-identical results (one arithmetic), so the
 * choice may follow the row count. Passes of 2-4 tiles pipeline unless NY_SKINNY_PF=0. */
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
        __atomic_store_n(&v, r > 5 ? 9 : r, __ATOMIC_RELAXED);
        r = __atomic_load_n(&v, __ATOMIC_RELAXED);
    }
    *pf = __atomic_load_n(&p, __ATOMIC_RELAXED);
    return r;
}

/* One skinny launch: rows [row0, row0 + 16·MT·grid.y) below M of every part. */
static int skinny_launch(struct engine_backend *be, int mt, const struct sk_parts &P, int tiles,
                         int passes, const int *in_idx, int row0, int M, const int *out_idx,
                         float beta, struct ny_err *err)
{
    int pf, v = skinny_variant(&pf);
    if (v == 9) /* the default: by the launch's row count */
        v = M - row0 <= SK_RING_ROWS ? 4 : 2;
    dim3 grid((unsigned)tiles, (unsigned)passes), tb(SK_WARPS * 32);
    cudaStream_t st = be->stream;
#define SK_GO(MT_, U_, PF_, MINB_)                                                                \
    cuda_launch(k_skinny<MT_, U_, PF_, MINB_>, grid, tb, 0, st, be->n_rows, P, in_idx, row0, M,  \
                out_idx, beta)
    if (mt == 1 && v >= 4) {
        size_t shm = (size_t)SK_WARPS * 32 * 16 * (v == 4 ? 8 : 16);
        if (v == 4) {
            cuda_launch(k_skinny_ring<8>, grid, tb, shm, st, be->n_rows, P, in_idx, row0, M,
                        out_idx, beta);
        } else {
            static int allowed[CUDA_MAX_DEVICES];
            int rc = cuda_smem_allow(be, (const void *)k_skinny_ring<16>, shm, allowed, err);
            if (rc)
                return rc;
            cuda_launch(k_skinny_ring<16>, grid, tb, shm, st, be->n_rows, P, in_idx, row0, M,
                        out_idx, beta);
        }
    } else if (mt == 1) {
        if (v == 0)
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
    CU_LAUNCHED(be, "skinny GEMM kernel");
    return NY_OK;
}

/* Rows in_idx[i] of each part's X -> rows out_idx[i] of its Y, i < n (device lists, NULL =
 * identity), the parts in as few launches as the kernels allow (bit-identical to one call per
 * part). */
int cuda_gemm_rows_multi(struct engine_backend *be, const struct cuda_gemm_part *gp, int n_parts,
                           const int *in_idx, int n, const int *out_idx, float beta,
                           struct ny_err *err)
{
    if (n <= 0 || n_parts <= 0)
        return NY_OK;
    int all_skinny = n_parts <= SK_MAX_PARTS;
    for (int i = 0; i < n_parts; i++)
        all_skinny = all_skinny && cuda_skinny_ok(gp[i].w);
    if (!all_skinny) {
        for (int i = 0; i < n_parts; i++) {
            const struct cuda_gemm_part *q = &gp[i];
            dim3 grid((unsigned)((q->N + 7) / 8), (unsigned)n);
            if (cuda_skinny_ok(q->w)) {
                int rc = cuda_gemm_rows_multi(be, q, 1, in_idx, n, out_idx, beta, err);
                if (rc)
                    return rc;
                continue;
            }
            if (q->w->wtype == CUDA_W_BF16)
                k_generic<__nv_bfloat16><<<grid, 256, 0, be->stream>>>(
                    q->X, in_idx, n, q->K, (const __nv_bfloat16 *)q->w->d, q->N, out_idx, q->Y,
                    q->ldy, q->alpha, beta);
            else
                k_generic<float><<<grid, 256, 0, be->stream>>>(
                    q->X, in_idx, n, q->K, (const float *)q->w->d, q->N, out_idx, q->Y, q->ldy,
                    q->alpha, beta);
            CU_LAUNCHED(be, "generic GEMM kernel");
        }
        return NY_OK;
    }
    int split = n_parts <= CUDA_SPLIT_PARTS;
    for (int i = 0; i < n_parts; i++)
        split = split && gp[i].K == gp[0].K && cuda_split_wanted(gp[i].K, gp[i].N);
    if (split) { /* narrow, long weights (LoRA A): K split over blocks, by shape alone */
        struct cuda_split_part sp[CUDA_SPLIT_PARTS];
        for (int i = 0; i < n_parts; i++)
            sp[i] = {gp[i].X, gp[i].w, gp[i].Y, gp[i].N, gp[i].ldy, gp[i].alpha};
        return cuda_gemm_split(be, sp, n_parts, gp[0].K, in_idx, n, out_idx, beta, err);
    }
    struct sk_parts P;
    memset(&P, 0, sizeof P);
    int tiles = 0;
    for (int i = 0; i < n_parts; i++) {
        P.p[i].X = gp[i].X;
        P.p[i].W = (const __nv_bfloat16 *)gp[i].w->d;
        P.p[i].Y = gp[i].Y;
        P.p[i].K = gp[i].K;
        P.p[i].N = gp[i].N;
        P.p[i].ldy = gp[i].ldy;
        P.p[i].alpha = gp[i].alpha;
        P.p[i].tile0 = tiles;
        tiles += (gp[i].N + SK_COLS - 1) / SK_COLS;
    }
    P.n = n_parts;
    /* Passes of 64 rows; the last pass uses the smallest tile count that covers it. */
    int full = n / 64, rest = n - full * 64;
    if (full) {
        int rc = skinny_launch(be, 4, P, tiles, full, in_idx, 0, full * 64, out_idx, beta, err);
        if (rc)
            return rc;
    }
    if (rest) {
        return skinny_launch(be, (rest + 15) / 16, P, tiles, 1, in_idx, full * 64, n, out_idx,
                             beta, err);
    }
    return NY_OK;
}

/* Rows in_idx[i] of X (fp32, width K) -> rows out_idx[i] of Y (width ldy), i < n; index arrays
 * are device arrays (NULL = identity). */
int cuda_gemm_rows(struct engine_backend *be, const float *X, const int *in_idx, int n, int K,
                     const struct engine_buf *w, int N, const int *out_idx, float *Y, int ldy,
                     float alpha, float beta, struct ny_err *err)
{
    struct cuda_gemm_part p = {X, w, K, N, Y, ldy, alpha};
    return cuda_gemm_rows_multi(be, &p, 1, in_idx, n, out_idx, beta, err);
}
