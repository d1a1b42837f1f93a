/* cuda_gemm.cu — matmul with unmerged LoRA: Y = X · Wᵀ (+ scale · (X · Aᵀ) · Bᵀ per adapter).
 *
 * Three paths, chosen only by the weight's shape and dtype and by the request's own row count,
 * never by the rest of the batch (the determinism contract of engine_backend_int.h):
 *   - prefill unit (a request contributing >= 2 rows, bf16 weight, in % 8 == 0): cuBLASLt, bf16
 *     operands, fp32 accumulate and output, the heuristic's first algorithm among those with no
 *     split-K reduction (CUBLASLT_REDUCTION_SCHEME_NONE), planned for exactly that request's
 *     M = rows; operands staged at aligned addresses so the plan never depends on where the
 *     request sits in the batch;
 *   - skinny rows (decode rows, the final-logits rows): our own tensor-core kernel, 8 output
 *     columns per block, K split over 8 warps in fixed 32-wide blocks, each warp's partial summed
 *     in k order and the 8 warps summed in warp order: a row's result never depends on the other
 *     rows (each mma row is independent) nor on how many rows there are; the products of one
 *     input (q, k, v; gate, up; their LoRA A or B matrices) share one launch;
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
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
#pragma unroll
        for (int h = 0; h < 2; h++) {
            int r = m0 + mt * 16 + g + 8 * h;
            xr[mt][h] = r < M ? pt.X + (size_t)(in_idx ? in_idx[r] : r) * K + t * 8 : NULL;
        }
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
#pragma unroll
            for (int mt = 0; mt < MT; mt++) {
                uint4 x0 = make_uint4(0, 0, 0, 0), x1 = make_uint4(0, 0, 0, 0);
                if (k < K && xr[mt][0])
                    x0 = cuda_load_x8(xr[mt][0] + (size_t)b * 32);
                if (k < K && xr[mt][1])
                    x1 = cuda_load_x8(xr[mt][1] + (size_t)b * 32);
                cuda_mma_bf16(acc[mt], x0.x, x1.x, x0.y, x1.y, wv[u].x, wv[u].y);
                cuda_mma_bf16(acc[mt], x0.z, x1.z, x0.w, x1.w, wv[u].z, wv[u].w);
            }
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
        int mt = e / 128, l = (e / 4) % 32, j = e % 4;
        float s = 0.0f;
        for (int w = 0; w < SK_WARPS; w++)
            s += red[w][mt][l][j];
        int row = m0 + mt * 16 + l / 4 + (j >= 2 ? 8 : 0);
        int col = n0 + 2 * (l % 4) + (j & 1);
        if (row < M && col < N) {
            float *yp = pt.Y + (size_t)(out_idx ? out_idx[row] : row) * pt.ldy + col;
            float v = pt.alpha * s;
            if (beta != 0.0f)
                v += beta * *yp;
            *yp = v;
        }
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
    __shared__ float red[SK_WARPS][32][4];
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
    const float *xr[2];
#pragma unroll
    for (int h = 0; h < 2; h++) {
        int r = m0 + g + 8 * h;
        xr[h] = r < M ? pt.X + (size_t)(in_idx ? in_idx[r] : r) * K + t * 8 : NULL;
    }
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
        red[warp][lane][j] = acc[j];
    __syncthreads();
    /* each output element: the 8 warps' partials summed in warp order */
    if (threadIdx.x < 128) {
        int e = threadIdx.x, l = e / 4, j = e % 4;
        float s = 0.0f;
        for (int w = 0; w < SK_WARPS; w++)
            s += red[w][l][j];
        int row = m0 + l / 4 + (j >= 2 ? 8 : 0);
        int col = n0 + 2 * (l % 4) + (j & 1);
        if (row < M && col < N) {
            float *yp = pt.Y + (size_t)(out_idx ? out_idx[row] : row) * pt.ldy + col;
            float v = pt.alpha * s;
            if (beta != 0.0f)
                v += beta * *yp;
            *yp = v;
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

static int skinny_ok(const struct engine_buf *w) { return w->wtype == CUDA_W_BF16 && w->cols % 8 == 0; }

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

/* The ring kernel's dynamic shared memory above 48 KB, allowed once per device. */
static void sk_ring_attr(struct engine_backend *be, const void *fn, size_t shm)
{
    static int done[64]; /* per device; ranks' threads touch only their own device's entry */
    if (be->device >= 0 && be->device < 64 &&
        !__atomic_load_n(&done[be->device], __ATOMIC_ACQUIRE)) {
        cudaFuncSetAttribute(fn, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)shm);
        __atomic_store_n(&done[be->device], 1, __ATOMIC_RELEASE);
    }
}

/* One skinny launch: rows [row0, row0 + 16·MT·grid.y) below M of every part. */
static void skinny_launch(struct engine_backend *be, int mt, const struct sk_parts &P, int tiles,
                          int passes, const int *in_idx, int row0, int M, const int *out_idx,
                          float beta)
{
    int pf, v = skinny_variant(&pf);
    if (v == 9) /* the default: by the launch's row count */
        v = M - row0 <= SK_RING_ROWS ? 4 : 2;
    dim3 grid((unsigned)tiles, (unsigned)passes), tb(SK_WARPS * 32);
    cudaStream_t st = be->stream;
#define SK_GO(MT_, U_, PF_, MINB_)                                                                \
    cuda_launch(k_skinny<MT_, U_, PF_, MINB_>, grid, tb, 0, st, P, in_idx, row0, M, out_idx, beta)
    if (mt == 1 && v >= 4) {
        size_t shm = (size_t)SK_WARPS * 32 * 16 * (v == 4 ? 8 : 16);
        if (v == 4) {
            cuda_launch(k_skinny_ring<8>, grid, tb, shm, st, P, in_idx, row0, M, out_idx, beta);
        } else {
            sk_ring_attr(be, (const void *)k_skinny_ring<16>, shm);
            cuda_launch(k_skinny_ring<16>, grid, tb, shm, st, P, in_idx, row0, M, out_idx, beta);
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
}

/* A product of gemm_rows_multi: Y[out_idx[i], :] = alpha · X[in_idx[i], :] · Wᵀ (+ beta · Y). */
struct gemm_part {
    const float *X;
    const struct engine_buf *w;
    int K, N;
    float *Y;
    int ldy;
    float alpha;
};

/* Rows in_idx[i] of each part's X -> rows out_idx[i] of its Y, i < n (device lists, NULL =
 * identity), the parts in as few launches as the kernels allow (bit-identical to one call per
 * part). */
static int gemm_rows_multi(struct engine_backend *be, const struct gemm_part *gp, int n_parts,
                           const int *in_idx, int n, const int *out_idx, float beta,
                           struct ny_err *err)
{
    if (n <= 0 || n_parts <= 0)
        return NY_OK;
    int all_skinny = n_parts <= SK_MAX_PARTS;
    for (int i = 0; i < n_parts; i++)
        all_skinny = all_skinny && skinny_ok(gp[i].w);
    if (!all_skinny) {
        for (int i = 0; i < n_parts; i++) {
            const struct gemm_part *q = &gp[i];
            dim3 grid((unsigned)((q->N + 7) / 8), (unsigned)n);
            if (skinny_ok(q->w)) {
                int rc = gemm_rows_multi(be, q, 1, in_idx, n, out_idx, beta, err);
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
        skinny_launch(be, 4, P, tiles, full, in_idx, 0, full * 64, out_idx, beta);
        CU_LAUNCHED(be, "skinny GEMM kernel");
    }
    if (rest) {
        skinny_launch(be, (rest + 15) / 16, P, tiles, 1, in_idx, full * 64, n, out_idx, beta);
        CU_LAUNCHED(be, "skinny GEMM kernel");
    }
    return NY_OK;
}

/* Rows in_idx[i] of X (fp32, width K) -> rows out_idx[i] of Y (width ldy), i < n; index arrays
 * are device arrays (NULL = identity). */
static int gemm_rows(struct engine_backend *be, const float *X, const int *in_idx, int n, int K,
                     const struct engine_buf *w, int N, const int *out_idx, float *Y, int ldy,
                     float alpha, float beta, struct ny_err *err)
{
    struct gemm_part p = {X, w, K, N, Y, ldy, alpha};
    return gemm_rows_multi(be, &p, 1, in_idx, n, out_idx, beta, err);
}

/* ---- cuBLASLt plans --------------------------------------------------------------------------- */
void cuda_gemm_plans_free(struct engine_backend *be)
{
    for (int i = 0; i < be->n_plans; i++) {
        struct cuda_gemm_plan *p = &be->plans[i];
        cublasLtMatrixLayoutDestroy(p->la);
        cublasLtMatrixLayoutDestroy(p->lb);
        cublasLtMatrixLayoutDestroy(p->lc);
        cublasLtMatmulDescDestroy(p->op);
    }
    be->n_plans = 0;
}

/* The plan of D[m, n] = X[m, k] · W[n, k]ᵀ (bf16 in, fp32 out); batch > 1: batch independent
 * products over consecutive k-slices of rows of length ld (X and W), D slices [batch][m][n]. */
static int plan_get(struct engine_backend *be, int m, int n, int k, int batch, int ld,
                    struct cuda_gemm_plan **out, struct ny_err *err)
{
    for (int i = 0; i < be->n_plans; i++)
        if (be->plans[i].m == m && be->plans[i].n == n && be->plans[i].k == k &&
            be->plans[i].batch == batch && be->plans[i].ld == ld) {
            *out = &be->plans[i];
            return NY_OK;
        }
    if (be->n_plans == CUDA_GEMM_PLANS) /* full: start over (plans are cheap to rebuild) */
        cuda_gemm_plans_free(be);
    struct cuda_gemm_plan *p = &be->plans[be->n_plans];
    memset(p, 0, sizeof *p);
    cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
    /* Column-major view: D[n, m] = W[k, n]ᵀ · X[k, m]  (row-major Y[m, n] = X · Wᵀ). */
    CUBLAS_CHECK(be, cublasLtMatmulDescCreate(&p->op, CUBLAS_COMPUTE_32F, CUDA_R_32F), "desc");
    CUBLAS_CHECK(be, cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSA, &ta,
                                                    sizeof ta), "transa");
    CUBLAS_CHECK(be, cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSB, &tb,
                                                    sizeof tb), "transb");
    CUBLAS_CHECK(be, cublasLtMatrixLayoutCreate(&p->la, CUDA_R_16BF, k, n, ld), "layout A");
    CUBLAS_CHECK(be, cublasLtMatrixLayoutCreate(&p->lb, CUDA_R_16BF, k, m, ld), "layout B");
    CUBLAS_CHECK(be, cublasLtMatrixLayoutCreate(&p->lc, CUDA_R_32F, n, m, n), "layout C");
    if (batch > 1) {
        int32_t bc = batch;
        int64_t sa = k, sc = (int64_t)m * n;
        cublasLtMatrixLayout_t ls[3] = {p->la, p->lb, p->lc};
        int64_t st[3] = {sa, sa, sc};
        for (int i = 0; i < 3; i++) {
            CUBLAS_CHECK(be, cublasLtMatrixLayoutSetAttribute(
                                 ls[i], CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &bc, sizeof bc),
                         "batch count");
            CUBLAS_CHECK(be, cublasLtMatrixLayoutSetAttribute(
                                 ls[i], CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &st[i],
                                 sizeof st[i]),
                         "batch stride");
        }
    }
    cublasLtMatmulPreference_t pref;
    CUBLAS_CHECK(be, cublasLtMatmulPreferenceCreate(&pref), "preference");
    uint32_t red = CUBLASLT_REDUCTION_SCHEME_NONE, al = 16;
    uint64_t ws = be->lt_ws_size;
    cublasStatus_t s = cublasLtMatmulPreferenceSetAttribute(
        pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws);
    if (s == CUBLAS_STATUS_SUCCESS)
        s = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_REDUCTION_SCHEME_MASK,
                                                 &red, sizeof red);
    const cublasLtMatmulPreferenceAttributes_t aligns[4] = {
        CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
        CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES};
    for (int i = 0; i < 4 && s == CUBLAS_STATUS_SUCCESS; i++)
        s = cublasLtMatmulPreferenceSetAttribute(pref, aligns[i], &al, sizeof al);
    cublasLtMatmulHeuristicResult_t res;
    int got = 0;
    if (s == CUBLAS_STATUS_SUCCESS)
        s = cublasLtMatmulAlgoGetHeuristic(be->lt, p->op, p->la, p->lb, p->lc, p->lc, pref, 1,
                                           &res, &got);
    cublasLtMatmulPreferenceDestroy(pref);
    if (s == CUBLAS_STATUS_SUCCESS && got < 1)
        s = CUBLAS_STATUS_NOT_SUPPORTED;
    if (s != CUBLAS_STATUS_SUCCESS) {
        cublasLtMatrixLayoutDestroy(p->la);
        cublasLtMatrixLayoutDestroy(p->lb);
        cublasLtMatrixLayoutDestroy(p->lc);
        cublasLtMatmulDescDestroy(p->op);
        return cuda_fail(be, err, __FILE__, __LINE__, "cuBLASLt heuristic",
                         cublasLtGetStatusString(s));
    }
    p->algo = res.algo;
    p->m = m;
    p->n = n;
    p->k = k;
    p->batch = batch;
    p->ld = ld;
    be->n_plans++;
    *out = p;
    return NY_OK;
}

/* Y[m, :] = alpha · Xb[m, :] · Wᵀ + beta · Y[m, :] for the m contiguous rows of one request;
 * Xb bf16 staged at an aligned address. Y is staged when its address is not 16-byte aligned. */
static int gemm_unit(struct engine_backend *be, const __nv_bfloat16 *xb, int m, int K,
                     const struct engine_buf *w, int N, float *Y, float alpha, float beta,
                     struct ny_err *err)
{
    struct cuda_gemm_plan *p = NULL;
    int rc = plan_get(be, m, N, K, 1, K, &p, err);
    if (rc)
        return rc;
    float *D = Y;
    size_t bytes = (size_t)m * N * sizeof(float);
    if (((uintptr_t)Y & 15) != 0) {
        void *st;
        rc = cuda_scratch(be, 3, bytes, &st, err);
        if (rc)
            return rc;
        D = (float *)st;
        if (beta != 0.0f)
            CU_CHECK(be, cudaMemcpyAsync(D, Y, bytes, cudaMemcpyDeviceToDevice, be->stream),
                     "stage C");
    }
    CUBLAS_CHECK(be, cublasLtMatmul(be->lt, p->op, &alpha, w->d, p->la, xb, p->lb, &beta, D,
                                    p->lc, D, p->lc, &p->algo, be->lt_ws, be->lt_ws_size,
                                    be->stream), "cublasLtMatmul");
    if (D != Y)
        CU_CHECK(be, cudaMemcpyAsync(Y, D, bytes, cudaMemcpyDeviceToDevice, be->stream),
                 "unstage D");
    return NY_OK;
}

/* ---- split-K for long, narrow products (a LoRA A matrix of down: K = 14,336, N = rank) -------
 * cuBLASLt without a split-K reduction gives such a product only a few tiles (m/64 · 1) to run
 * on. So K is cut in fixed slices (the slice length a function of K alone), the slices' products
 * run as one strided batch, and a kernel sums them in slice order: a row's arithmetic still
 * depends only on its own values and the shapes. */
static int splitk_slice(int K, int N)
{
    if (K <= 4096 || N > 256)
        return 0;
    for (int s = 2048; s >= 256; s /= 2)
        if (K % s == 0 && K / s >= 2)
            return s;
    return 0;
}

__global__ static void k_sum_slices(const float *c, int slices, size_t n, float *y)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        float s = c[i];
        for (int j = 1; j < slices; j++)
            s += c[(size_t)j * n + i];
        y[i] = s;
    }
}

/* Y[m, N] = Xb[m, K] · Wᵀ (beta 0) through split_k slices of length slice. */
static int gemm_unit_splitk(struct engine_backend *be, const __nv_bfloat16 *xb, int m, int K,
                            const struct engine_buf *w, int N, int slice, float *Y,
                            struct ny_err *err)
{
    int S = K / slice;
    struct cuda_gemm_plan *p = NULL;
    int rc = plan_get(be, m, N, slice, S, K, &p, err);
    void *c;
    if (!rc)
        rc = cuda_scratch(be, 3, (size_t)S * m * N * sizeof(float), &c, err);
    if (rc)
        return rc;
    float one = 1.0f, zero = 0.0f;
    CUBLAS_CHECK(be, cublasLtMatmul(be->lt, p->op, &one, w->d, p->la, xb, p->lb, &zero, c, p->lc,
                                    c, p->lc, &p->algo, be->lt_ws, be->lt_ws_size, be->stream),
                 "cublasLtMatmul (split K)");
    size_t n = (size_t)m * N;
    unsigned blocks = (unsigned)((n + 255) / 256 < 1024 ? (n + 255) / 256 : 1024);
    k_sum_slices<<<blocks, 256, 0, be->stream>>>((const float *)c, S, n, Y);
    CU_LAUNCHED(be, "split-K sum kernel");
    return NY_OK;
}

int cuda_gemm_bf16(struct engine_backend *be, const __nv_bfloat16 *xb, int m, int K,
                   const struct engine_buf *w, int N, float *Y, float alpha, float beta,
                   struct ny_err *err)
{
    return gemm_unit(be, xb, m, K, w, N, Y, alpha, beta, err);
}

static int unit_ok(const struct engine_buf *w) { return skinny_ok(w); }

/* One request's rows [r0, r0 + m) through the prefill path (base + its adapter); xb holds those
 * rows of X in bf16 (staged once for all the products of one input). With an adapter the LoRA
 * term goes first, Y = scale · bf16(X · Aᵀ) · Bᵀ (a write-only product of K = rank), and the base
 * product adds itself, Y = X · Wᵀ + Y: the fp32 Y is read back inside a compute-bound GEMM
 * instead of a bandwidth-bound one. */
static int matmul_unit(struct engine_backend *be, const float *X, const __nv_bfloat16 *xb,
                       int r0, int m, int K, const struct engine_buf *w, int N,
                       const struct engine_lora_term *lt, float *Y, struct ny_err *err)
{
    float *Yr = Y + (size_t)r0 * N;
    if (!lt)
        return gemm_unit(be, xb, m, K, w, N, Yr, 1.0f, 0.0f, err);
    /* u = X · Aᵀ (fp32), then Y = scale · bf16(u) · Bᵀ */
    void *u, *ub;
    int R = lt->rank, rc = cuda_scratch(be, 1, (size_t)m * R * sizeof(float), &u, err);
    int slice = splitk_slice(K, R);
    if (!rc && unit_ok(lt->a) && slice)
        rc = gemm_unit_splitk(be, xb, m, K, lt->a, R, slice, (float *)u, err);
    else if (!rc && unit_ok(lt->a))
        rc = gemm_unit(be, xb, m, K, lt->a, R, (float *)u, 1.0f, 0.0f, err);
    else if (!rc)
        rc = gemm_rows(be, X + (size_t)r0 * K, NULL, m, K, lt->a, R, NULL, (float *)u, R, 1.0f,
                       0.0f, err);
    if (rc)
        return rc;
    if (unit_ok(lt->b)) {
        rc = cuda_scratch(be, 2, (size_t)m * R * 2, &ub, err);
        if (!rc)
            rc = cuda_rows_to_bf16(be, (const float *)u, NULL, m, R, (__nv_bfloat16 *)ub, err);
        if (!rc)
            rc = gemm_unit(be, (const __nv_bfloat16 *)ub, m, R, lt->b, N, Yr, lt->scale, 0.0f,
                           err);
    } else {
        rc = gemm_rows(be, (const float *)u, NULL, m, R, lt->b, N, NULL, Yr, N, lt->scale, 0.0f,
                       err);
    }
    return rc ? rc : gemm_unit(be, xb, m, K, w, N, Yr, 1.0f, 1.0f, err);
}

/* The products of one matmul call (a single projection, or the parts of matmul_multi). */
struct mm_job {
    const struct engine_buf *w[ENGINE_MATMUL_MAX_PARTS];
    const struct engine_lora_term *lora[ENGINE_MATMUL_MAX_PARTS];
    float *Y[ENGINE_MATMUL_MAX_PARTS];
    int N[ENGINE_MATMUL_MAX_PARTS];
    int n_parts, n_lora, K;
    const float *X;
    /* swiglu_matmul: X (a writable buffer) holds the gate and U the up rows; the job's input is
     * silu(X)·U, each row computed where a path reads it (see matmul_all). NULL: X is the input. */
    const float *U;
};

/* Row groups by adapter (device lists; group a: in_d[a], out_d[a], n[a] rows). */
struct lora_groups {
    const int *in_d[64], *out_d[64];
    int n[64];
};

/* The LoRA terms of adapter a over its g rows: u_p = X · A_pᵀ for every part (one launch), then
 * Y_p += scale_p · u_p · B_pᵀ (one launch). */
static int lora_rows(struct engine_backend *be, const struct mm_job *j, int a, const int *in_d,
                     const int *out_d, int g, struct ny_err *err)
{
    struct gemm_part pa[ENGINE_MATMUL_MAX_PARTS], pb[ENGINE_MATMUL_MAX_PARTS];
    int np = 0;
    size_t need = 0;
    for (int p = 0; p < j->n_parts; p++)
        if (j->lora[p] && j->lora[p][a].a)
            need += (size_t)g * j->lora[p][a].rank;
    if (need == 0)
        return NY_OK;
    void *u;
    int rc = cuda_scratch(be, 1, need * sizeof(float), &u, err);
    if (rc)
        return rc;
    float *up = (float *)u;
    for (int p = 0; p < j->n_parts; p++) {
        if (!j->lora[p] || !j->lora[p][a].a)
            continue;
        const struct engine_lora_term *lt = &j->lora[p][a];
        int R = lt->rank;
        pa[np] = {j->X, lt->a, j->K, R, up, R, 1.0f};
        pb[np] = {up, lt->b, R, j->N[p], j->Y[p], j->N[p], lt->scale};
        up += (size_t)g * R;
        np++;
    }
    rc = gemm_rows_multi(be, pa, np, in_d, g, NULL, 0.0f, err);
    if (!rc)
        rc = gemm_rows_multi(be, pb, np, NULL, g, out_d, 1.0f, err);
    return rc;
}

/* Base products over n rows (input rows in_d, output rows out_d; device lists, NULL =
 * identity), then each adapter's LoRA terms over its group. */
static int matmul_rows(struct engine_backend *be, const struct mm_job *j, const int *in_d,
                       const int *out_d, int n, const struct lora_groups *lg, struct ny_err *err)
{
    struct gemm_part gp[ENGINE_MATMUL_MAX_PARTS];
    for (int p = 0; p < j->n_parts; p++)
        gp[p] = {j->X, j->w[p], j->K, j->N[p], j->Y[p], j->N[p], 1.0f};
    int rc = gemm_rows_multi(be, gp, j->n_parts, in_d, n, out_d, 0.0f, err);
    for (int a = 0; !rc && a < j->n_lora && a < 64; a++)
        if (lg->n[a] > 0)
            rc = lora_rows(be, j, a, lg->in_d[a], lg->out_d[a], lg->n[a], err);
    return rc;
}

/* The rows subset (final logits): input rows rows[i] -> output row i, grouped by adapter. */
static int matmul_selected(struct engine_backend *be, const struct mm_job *j, const int *rows,
                           int n, struct ny_err *err)
{
    if (n == 0)
        return NY_OK;
    int *row_ad = (int *)ny_malloc((size_t)(be->n_rows + 3 * n + 1) * sizeof(int));
    if (!row_ad)
        return NY_ERR(err, NY_E_NOMEM, "cuda: out of memory");
    int *h = row_ad + be->n_rows, rc = NY_OK;
    for (int s = 0; s < be->n_seqs; s++)
        for (int r = be->seq_start_h[s]; r < be->seq_start_h[s + 1]; r++)
            row_ad[r] = be->seq_adapter_h[s];
    struct lora_groups lg;
    memset(&lg, 0, sizeof lg);
    int off[64], used = n;
    for (int i = 0; i < n && !rc; i++) {
        if (rows[i] < 0 || rows[i] >= be->n_rows)
            rc = NY_ERR(err, NY_E_RANGE, "cuda matmul: row %d of %d", rows[i], be->n_rows);
        else
            h[i] = rows[i];
    }
    for (int a = 0; a < j->n_lora && !rc; a++) {
        off[a] = used;
        for (int i = 0; i < n; i++)
            if (row_ad[rows[i]] == a)
                h[used++] = rows[i];
        lg.n[a] = used - off[a];
        for (int i = 0; i < n; i++)
            if (row_ad[rows[i]] == a)
                h[used++] = i;
    }
    if (!rc)
        rc = cuda_upload_ints(be, &be->idx_d, &be->idx_cap, h, (size_t)used, err);
    for (int a = 0; a < j->n_lora && !rc; a++) {
        lg.in_d[a] = be->idx_d + off[a];
        lg.out_d[a] = be->idx_d + off[a] + lg.n[a];
    }
    if (!rc)
        rc = matmul_rows(be, j, be->idx_d, NULL, n, &lg, err);
    ny_free(row_ad);
    return rc;
}

/* Rows [r0, r0 + m) of request s (adapter a), a prefill unit, staged in bf16 in scratch 0 (*xb)
 * for all the parts' products. A swiglu_matmul job (j->U) stages bf16(silu(X)·U) straight from
 * the gate and up rows, the bits staging the swiglu op's fp32 output would give (same kernel), and
 * writes no fp32 product, unless a LoRA A of adapter a is off the unit path: that product reads
 * the fp32 X rows (matmul_unit), so they get silu(X)·U in place as the swiglu op writes it. */
static int unit_stage(struct engine_backend *be, const struct mm_job *j, int r0, int m, int a,
                      void **xb, struct ny_err *err)
{
    int rc = cuda_scratch(be, 0, (size_t)m * j->K * 2, xb, err);
    const float *x = j->X + (size_t)r0 * j->K;
    if (rc)
        return rc;
    if (!j->U)
        return cuda_rows_to_bf16(be, x, NULL, m, j->K, (__nv_bfloat16 *)*xb, err);
    int f32 = 0;
    for (int p = 0; p < j->n_parts; p++)
        if (a >= 0 && a < j->n_lora && j->lora[p] && j->lora[p][a].a)
            f32 |= !unit_ok(j->lora[p][a].a);
    return cuda_swiglu_rows(be, x, j->U + (size_t)r0 * j->K, m, j->K, f32 ? (float *)x : NULL,
                            (__nv_bfloat16 *)*xb, err);
}

/* A swiglu_matmul job: X = silu(X)·U in place (fp32, the swiglu op's kernel) on the rows of the
 * one-row requests (decode rows), each maximal run of consecutive such rows in one launch. */
static int swiglu_singles(struct engine_backend *be, const struct mm_job *j, struct ny_err *err)
{
    int rc = NY_OK, run0 = 0;
    for (int s = 0; s <= be->n_seqs && !rc; s++) {
        int r0 = be->seq_start_h[s];
        if (s < be->n_seqs && be->seq_start_h[s + 1] - r0 < 2)
            continue; /* a one-row request: extends the run */
        if (r0 > run0) {
            float *g = (float *)j->X + (size_t)run0 * j->K;
            rc = cuda_swiglu_rows(be, g, j->U + (size_t)run0 * j->K, r0 - run0, j->K, g, NULL,
                                  err);
        }
        if (s < be->n_seqs)
            run0 = be->seq_start_h[s + 1];
    }
    return rc;
}

/* Every row of the step: prefill units by cuBLASLt (the unit's rows staged in bf16 once for all
 * parts), decode rows by the skinny kernel, all parts in one launch. A swiglu_matmul job (j->U)
 * makes its input where it is read: staged units from the gate and up rows (unit_stage), decode
 * rows in place (swiglu_singles); a part off the unit path reads every row: all rows in place. */
static int matmul_all(struct engine_backend *be, const struct mm_job *j, struct ny_err *err)
{
    const struct cuda_step_sets *ss = &be->sets;
    struct lora_groups lg;
    memset(&lg, 0, sizeof lg);
    int units = 0;
    for (int p = 0; p < j->n_parts; p++)
        units += unit_ok(j->w[p]);
    if (j->U && units < j->n_parts) { /* the swiglu op on all rows, then a plain job */
        struct mm_job plain = *j;
        plain.U = NULL;
        int rc = cuda_swiglu_rows(be, j->X, j->U, be->n_rows, j->K, (float *)j->X, NULL, err);
        return rc ? rc : matmul_all(be, &plain, err);
    }
    if (units > 0 && units < j->n_parts) { /* each kind of part on its own paths */
        struct mm_job sub[2];
        memset(sub, 0, sizeof sub);
        for (int p = 0; p < j->n_parts; p++) {
            struct mm_job *q = &sub[unit_ok(j->w[p])];
            q->w[q->n_parts] = j->w[p];
            q->lora[q->n_parts] = j->lora[p];
            q->Y[q->n_parts] = j->Y[p];
            q->N[q->n_parts++] = j->N[p];
        }
        for (int i = 0; i < 2; i++) {
            sub[i].n_lora = j->n_lora;
            sub[i].K = j->K;
            sub[i].X = j->X;
            int rc = matmul_all(be, &sub[i], err);
            if (rc)
                return rc;
        }
        return NY_OK;
    }
    if (!units) { /* every row through the generic path, identity lists */
        for (int a = 0; a < j->n_lora && a < ss->n_adapters; a++) {
            lg.in_d[a] = lg.out_d[a] = be->sets_d + ss->all_off[a];
            lg.n[a] = ss->all_n[a];
        }
        return matmul_rows(be, j, NULL, NULL, be->n_rows, &lg, err);
    }
    int rc = NY_OK;
    for (int s = 0; s < be->n_seqs && !rc; s++) {
        int r0 = be->seq_start_h[s], m = be->seq_start_h[s + 1] - r0;
        int a = be->seq_adapter_h[s];
        if (m < 2) /* a decode row: below */
            continue;
        void *xb;
        rc = unit_stage(be, j, r0, m, a, &xb, err);
        for (int p = 0; p < j->n_parts && !rc; p++) {
            const struct engine_lora_term *lt =
                a >= 0 && a < j->n_lora && j->lora[p] && j->lora[p][a].a ? &j->lora[p][a] : NULL;
            rc = matmul_unit(be, j->X, (const __nv_bfloat16 *)xb, r0, m, j->K, j->w[p], j->N[p],
                             lt, j->Y[p], err);
        }
    }
    if (rc || ss->single_all_n == 0)
        return rc;
    if (j->U && (rc = swiglu_singles(be, j, err)))
        return rc;
    for (int a = 0; a < j->n_lora && a < ss->n_adapters; a++) {
        lg.in_d[a] = lg.out_d[a] = be->sets_d + ss->single_off[a];
        lg.n[a] = ss->single_n[a];
    }
    const int *sd = be->sets_d + ss->single_all_off;
    return matmul_rows(be, j, sd, sd, ss->single_all_n, &lg, err);
}

/* Shape checks of one product of x [n_rows, in] by w [out, in] with its LoRA terms into y. */
static int matmul_check(struct engine_backend *be, const struct engine_buf *x, int in,
                        const struct engine_buf *w, int out, const struct engine_lora_term *lora,
                        int n_lora, const int *rows, int n_out_rows, const struct engine_buf *y,
                        struct ny_err *err)
{
    int nr = be->n_rows;
    if (!w || !y || w->wtype == CUDA_W_NONE || w->rows != (size_t)out ||
        w->cols != (size_t)in || (size_t)nr * in > x->n ||
        (size_t)(rows ? n_out_rows : nr) * out > y->n || (rows && n_out_rows < 0) ||
        n_lora > 64)
        return NY_ERR(err, NY_E_INVALID, "cuda matmul: weight %zu x %zu for %d -> %d, %d rows",
                      w ? w->rows : 0, w ? w->cols : 0, in, out, rows ? n_out_rows : nr);
    for (int a = 0; lora && a < n_lora; a++)
        if (lora[a].a && (lora[a].rank <= 0 || !lora[a].b ||
                          lora[a].a->rows != (size_t)lora[a].rank ||
                          lora[a].a->cols != (size_t)in || lora[a].b->rows != (size_t)out ||
                          lora[a].b->cols != (size_t)lora[a].rank))
            return NY_ERR(err, NY_E_INVALID, "cuda matmul: LoRA %d does not fit %d -> %d", a, in,
                          out);
    return NY_OK;
}

int cuda_op_matmul(struct engine_backend *be, const struct engine_buf *x, int in,
                   const struct engine_buf *w, int out, const struct engine_lora_term *lora,
                   int n_lora, const int *rows, int n_out_rows, struct engine_buf *y,
                   struct ny_err *err)
{
    int rc = matmul_check(be, x, in, w, out, lora, n_lora, rows, n_out_rows, y, err);
    if (rc)
        return rc;
    struct mm_job j;
    memset(&j, 0, sizeof j);
    j.w[0] = w;
    j.lora[0] = n_lora > 0 ? lora : NULL;
    j.Y[0] = (float *)y->d;
    j.N[0] = out;
    j.n_parts = 1;
    j.n_lora = j.lora[0] ? n_lora : 0;
    j.K = in;
    j.X = (const float *)x->d;
    if (rows) /* the final-logits rows: lists built here, one upload */
        return matmul_selected(be, &j, rows, n_out_rows, err);
    return be->n_rows ? matmul_all(be, &j, err) : NY_OK;
}

int cuda_op_matmul_multi(struct engine_backend *be, const struct engine_buf *x, int in,
                         const struct engine_matmul_part *parts, int n_parts, int n_lora,
                         struct ny_err *err)
{
    if (n_parts < 1 || n_parts > ENGINE_MATMUL_MAX_PARTS)
        return NY_ERR(err, NY_E_INVALID, "cuda matmul: %d parts (1..%d)", n_parts,
                      ENGINE_MATMUL_MAX_PARTS);
    struct mm_job j;
    memset(&j, 0, sizeof j);
    for (int p = 0; p < n_parts; p++) {
        const struct engine_matmul_part *q = &parts[p];
        int rc = matmul_check(be, x, in, q->w, q->out, q->lora, q->lora ? n_lora : 0, NULL, 0,
                              q->y, err);
        if (rc)
            return rc;
        j.w[p] = q->w;
        j.lora[p] = n_lora > 0 ? q->lora : NULL;
        j.Y[p] = (float *)q->y->d;
        j.N[p] = q->out;
    }
    j.n_parts = n_parts;
    j.n_lora = n_lora > 0 ? n_lora : 0;
    j.K = in;
    j.X = (const float *)x->d;
    return be->n_rows ? matmul_all(be, &j, err) : NY_OK;
}

int cuda_op_swiglu_matmul(struct engine_backend *be, struct engine_buf *gate,
                          const struct engine_buf *up, int ff, const struct engine_buf *w, int out,
                          const struct engine_lora_term *lora, int n_lora, struct engine_buf *y,
                          struct ny_err *err)
{
    int rc = matmul_check(be, gate, ff, w, out, lora, n_lora, NULL, 0, y, err);
    if (rc)
        return rc;
    if (!up || (size_t)be->n_rows * ff > up->n)
        return NY_ERR(err, NY_E_RANGE, "cuda swiglu_matmul: %d rows x %d outside the up buffer",
                      be->n_rows, ff);
    if (y == gate || y == up || y->d == gate->d || y->d == up->d)
        return NY_ERR(err, NY_E_INVALID, "cuda swiglu_matmul: y may not alias gate or up");
    struct mm_job j;
    memset(&j, 0, sizeof j);
    j.w[0] = w;
    j.lora[0] = n_lora > 0 ? lora : NULL;
    j.Y[0] = (float *)y->d;
    j.N[0] = out;
    j.n_parts = 1;
    j.n_lora = j.lora[0] ? n_lora : 0;
    j.K = ff;
    j.X = (const float *)gate->d;
    j.U = (const float *)up->d;
    return be->n_rows ? matmul_all(be, &j, err) : NY_OK;
}
