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
 *     rows (each mma row is independent) nor on how many rows there are;
 *   - generic (fp32 weights, or shapes the others refuse): one warp per output element, lanes
 *     strided over k, a fixed xor-shuffle tree.
 */
#include <stdlib.h>
#include <string.h>

#include "cuda_int.cuh"

/* ---- skinny tensor-core kernel ---------------------------------------------------------------- */
#define SK_WARPS 8
#define SK_COLS 8
/* k-blocks in flight per warp: deeper for one row tile, where registers allow it */
#define SK_UNROLL (MT == 1 ? 8 : 4)

__device__ __forceinline__ static void mma_bf16(float *d, uint32_t a0, uint32_t a1, uint32_t a2,
                                                uint32_t a3, uint32_t b0, uint32_t b1)
{
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
                 "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

__device__ __forceinline__ static uint32_t pack_bf16x2(float lo, float hi)
{
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<uint32_t *>(&v);
}

/* 8 consecutive fp32 (32-byte aligned) rounded to bf16, packed as the mma operand wants them. */
__device__ __forceinline__ static uint4 load_x8(const float *p)
{
    float4 a = *reinterpret_cast<const float4 *>(p), b = *reinterpret_cast<const float4 *>(p + 4);
    return make_uint4(pack_bf16x2(a.x, a.y), pack_bf16x2(a.z, a.w), pack_bf16x2(b.x, b.y),
                      pack_bf16x2(b.z, b.w));
}

/* This lane's 16 bytes of W for the k-blocks b0 + u·SK_WARPS, u < SK_UNROLL (zeros past the end). */
__device__ __forceinline__ static void load_w(uint4 (&wv)[8], const __nv_bfloat16 *wp, int b0,
                                              int nb, int K, int t, bool ok, int unroll)
{
#pragma unroll
    for (int u = 0; u < 8; u++) {
        if (u >= unroll)
            break;
        int b = b0 + u * SK_WARPS, k = b * 32 + t * 8;
        wv[u] = make_uint4(0, 0, 0, 0);
        if (ok && b < nb && k < K)
            wv[u] = __ldg((const uint4 *)(wp + (size_t)b * 32));
    }
}

/* Y[out_idx[m], n] = alpha · Σ_k bf16(X[in_idx[m], k]) W[n, k] + beta · Y[..] for m < M (this
 * pass: rows m0 .. m0 + 16·MT). X fp32 [., K] (rounded to bf16 as it is read); W bf16 [N, K];
 * K % 8 == 0. Lane (g = lane / 4, t = lane % 4) loads 8 consecutive k of W row n0 + g at
 * 32·b + 8·t and the same 8 k of X rows g and g + 8; the mma's logical k slots are a permutation
 * of those physical k, applied identically to A and B, so the product is the plain dot product.
 * PF = 1: the next batch of W loads is issued before the current one is multiplied (software
 * pipelining: the loads stay in flight across iterations); the arithmetic and its order are
 * exactly those of PF = 0. */
template <int MT, int PF>
__global__ __launch_bounds__(SK_WARPS * 32) static void k_skinny(
    const float *__restrict__ X, const int *__restrict__ in_idx, int M, int K,
    const __nv_bfloat16 *__restrict__ W, int N, const int *__restrict__ out_idx, float *Y,
    int ldy, float alpha, float beta)
{
    __shared__ float red[SK_WARPS][MT][32][4];
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
    const int n0 = blockIdx.x * SK_COLS, m0 = blockIdx.y * 16 * MT;
    const int nb = (K + 31) / 32;
    const bool wrow_ok = n0 + g < N;
    const __nv_bfloat16 *wp = W + (size_t)(wrow_ok ? n0 + g : 0) * K + t * 8;
    const float *xr[MT][2];
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
#pragma unroll
        for (int h = 0; h < 2; h++) {
            int r = m0 + mt * 16 + g + 8 * h;
            xr[mt][h] = r < M ? X + (size_t)(in_idx ? in_idx[r] : r) * K + t * 8 : NULL;
        }
    float acc[MT][4];
#pragma unroll
    for (int i = 0; i < MT; i++)
        acc[i][0] = acc[i][1] = acc[i][2] = acc[i][3] = 0.0f;
    const int step = SK_WARPS * SK_UNROLL;
    uint4 wv[8], wn[8];
    if (PF)
        load_w(wv, wp, warp, nb, K, t, wrow_ok, SK_UNROLL);
    for (int b0 = warp; b0 < nb; b0 += step) {
        if (PF)
            load_w(wn, wp, b0 + step, nb, K, t, wrow_ok, SK_UNROLL);
        else
            load_w(wv, wp, b0, nb, K, t, wrow_ok, SK_UNROLL);
#pragma unroll
        for (int u = 0; u < SK_UNROLL; u++) {
            int b = b0 + u * SK_WARPS, k = b * 32 + t * 8;
            if (b >= nb)
                break;
#pragma unroll
            for (int mt = 0; mt < MT; mt++) {
                uint4 x0 = make_uint4(0, 0, 0, 0), x1 = make_uint4(0, 0, 0, 0);
                if (k < K && xr[mt][0])
                    x0 = load_x8(xr[mt][0] + (size_t)b * 32);
                if (k < K && xr[mt][1])
                    x1 = load_x8(xr[mt][1] + (size_t)b * 32);
                mma_bf16(acc[mt], x0.x, x1.x, x0.y, x1.y, wv[u].x, wv[u].y);
                mma_bf16(acc[mt], x0.z, x1.z, x0.w, x1.w, wv[u].z, wv[u].w);
            }
        }
        if (PF)
#pragma unroll
            for (int u = 0; u < 8; u++)
                wv[u] = wn[u];
    }
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
            float *yp = Y + (size_t)(out_idx ? out_idx[row] : row) * ldy + col;
            float v = alpha * s;
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

/* Software pipelining of the skinny kernel's weight loads: on unless NY_SKINNY_PF=0 (kept for A/B
 * timing; both give bit-identical results). */
static int skinny_pf(void)
{
    static int v = -1; /* ranks' threads may race here: they all store the same value */
    int r = __atomic_load_n(&v, __ATOMIC_RELAXED);
    if (r < 0) {
        const char *e = getenv("NY_SKINNY_PF");
        r = !(e && e[0] == '0');
        __atomic_store_n(&v, r, __ATOMIC_RELAXED);
    }
    return r;
}

/* Rows in_idx[i] of X (fp32, width K) -> rows out_idx[i] of Y (width ldy), i < n; index arrays
 * are device arrays (NULL = identity). */
static int gemm_rows(struct engine_backend *be, const float *X, const int *in_idx, int n, int K,
                     const struct engine_buf *w, int N, const int *out_idx, float *Y, int ldy,
                     float alpha, float beta, struct ny_err *err)
{
    if (n <= 0)
        return NY_OK;
    if (!skinny_ok(w)) {
        dim3 grid((unsigned)((N + 7) / 8), (unsigned)n);
        if (w->wtype == CUDA_W_BF16)
            k_generic<__nv_bfloat16><<<grid, 256, 0, be->stream>>>(
                X, in_idx, n, K, (const __nv_bfloat16 *)w->d, N, out_idx, Y, ldy, alpha, beta);
        else
            k_generic<float><<<grid, 256, 0, be->stream>>>(X, in_idx, n, K, (const float *)w->d,
                                                           N, out_idx, Y, ldy, alpha, beta);
        CU_LAUNCHED(be, "generic GEMM kernel");
        return NY_OK;
    }
    const __nv_bfloat16 *wp = (const __nv_bfloat16 *)w->d;
    unsigned gx = (unsigned)((N + SK_COLS - 1) / SK_COLS);
    /* Passes of 64 rows; the last pass uses the smallest tile count that covers it. The tile
     * count changes no row's arithmetic, nor does the pipelining (skinny_pf). */
    int full = n / 64, rest = n - full * 64, pf = skinny_pf();
#define SK_LAUNCH(MT_, grid_, ...)                                                                \
    do {                                                                                          \
        if (pf)                                                                                   \
            k_skinny<MT_, 1><<<grid_, SK_WARPS * 32, 0, be->stream>>>(__VA_ARGS__);              \
        else                                                                                      \
            k_skinny<MT_, 0><<<grid_, SK_WARPS * 32, 0, be->stream>>>(__VA_ARGS__);              \
    } while (0)
    if (full) {
        SK_LAUNCH(4, dim3(gx, (unsigned)full), X, in_idx, full * 64, K, wp, N, out_idx, Y, ldy,
                  alpha, beta);
        CU_LAUNCHED(be, "skinny GEMM kernel");
    }
    if (rest) {
        const float *xr = in_idx ? X : X + (size_t)full * 64 * K;
        const int *ii = in_idx ? in_idx + full * 64 : NULL;
        const int *oi = out_idx ? out_idx + full * 64 : NULL;
        float *yr = out_idx ? Y : Y + (size_t)full * 64 * ldy;
        int mt = (rest + 15) / 16;
        dim3 grid(gx, 1);
        if (mt == 1)
            SK_LAUNCH(1, grid, xr, ii, rest, K, wp, N, oi, yr, ldy, alpha, beta);
        else if (mt == 2)
            SK_LAUNCH(2, grid, xr, ii, rest, K, wp, N, oi, yr, ldy, alpha, beta);
        else if (mt == 3)
            SK_LAUNCH(3, grid, xr, ii, rest, K, wp, N, oi, yr, ldy, alpha, beta);
        else
            SK_LAUNCH(4, grid, xr, ii, rest, K, wp, N, oi, yr, ldy, alpha, beta);
        CU_LAUNCHED(be, "skinny GEMM kernel");
    }
#undef SK_LAUNCH
    return NY_OK;
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

static int plan_get(struct engine_backend *be, int m, int n, int k, struct cuda_gemm_plan **out,
                    struct ny_err *err)
{
    for (int i = 0; i < be->n_plans; i++)
        if (be->plans[i].m == m && be->plans[i].n == n && be->plans[i].k == k) {
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
    CUBLAS_CHECK(be, cublasLtMatrixLayoutCreate(&p->la, CUDA_R_16BF, k, n, k), "layout A");
    CUBLAS_CHECK(be, cublasLtMatrixLayoutCreate(&p->lb, CUDA_R_16BF, k, m, k), "layout B");
    CUBLAS_CHECK(be, cublasLtMatrixLayoutCreate(&p->lc, CUDA_R_32F, n, m, n), "layout C");
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
    int rc = plan_get(be, m, N, K, &p, err);
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

int cuda_gemm_bf16(struct engine_backend *be, const __nv_bfloat16 *xb, int m, int K,
                   const struct engine_buf *w, int N, float *Y, float alpha, float beta,
                   struct ny_err *err)
{
    return gemm_unit(be, xb, m, K, w, N, Y, alpha, beta, err);
}

static int unit_ok(const struct engine_buf *w) { return skinny_ok(w); }

/* One request's rows [r0, r0 + m) through the prefill path (base + its adapter). */
static int matmul_unit(struct engine_backend *be, const float *X, int r0, int m, int K,
                       const struct engine_buf *w, int N, const struct engine_lora_term *lt,
                       float *Y, struct ny_err *err)
{
    void *xb;
    int rc = cuda_scratch(be, 0, (size_t)m * K * 2, &xb, err);
    if (!rc)
        rc = cuda_rows_to_bf16(be, X + (size_t)r0 * K, NULL, m, K, (__nv_bfloat16 *)xb, err);
    if (!rc)
        rc = gemm_unit(be, (const __nv_bfloat16 *)xb, m, K, w, N, Y + (size_t)r0 * N, 1.0f, 0.0f,
                       err);
    if (rc || !lt)
        return rc;
    /* u = X · Aᵀ (fp32), then Y += scale · bf16(u) · Bᵀ */
    void *u, *ub;
    int R = lt->rank;
    rc = cuda_scratch(be, 1, (size_t)m * R * sizeof(float), &u, err);
    if (!rc && unit_ok(lt->a))
        rc = gemm_unit(be, (const __nv_bfloat16 *)xb, m, K, lt->a, R, (float *)u, 1.0f, 0.0f,
                       err);
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
            rc = gemm_unit(be, (const __nv_bfloat16 *)ub, m, R, lt->b, N, Y + (size_t)r0 * N,
                           lt->scale, 1.0f, err);
        return rc;
    }
    return gemm_rows(be, (const float *)u, NULL, m, R, lt->b, N, NULL, Y + (size_t)r0 * N, N,
                     lt->scale, 1.0f, err);
}

/* Base GEMM over n rows (input rows in_d, output rows out_d; device lists, NULL = identity),
 * then each adapter's LoRA term over its group (group lists from grp(a, &in, &out, &n)). */
struct lora_groups {
    const int *in_d[64], *out_d[64];
    int n[64];
};

static int lora_rows(struct engine_backend *be, const float *X, int K, int N,
                     const struct engine_lora_term *lt, const int *in_d, const int *out_d, int g,
                     float *Y, struct ny_err *err)
{
    void *u;
    int R = lt->rank;
    int rc = cuda_scratch(be, 1, (size_t)g * R * sizeof(float), &u, err);
    if (!rc)
        rc = gemm_rows(be, X, in_d, g, K, lt->a, R, NULL, (float *)u, R, 1.0f, 0.0f, err);
    if (!rc)
        rc = gemm_rows(be, (const float *)u, NULL, g, R, lt->b, N, out_d, Y, N, lt->scale, 1.0f,
                       err);
    return rc;
}

static int matmul_rows(struct engine_backend *be, const float *X, const int *in_d,
                       const int *out_d, int n, int K, const struct engine_buf *w, int N,
                       const struct engine_lora_term *lora, int n_lora,
                       const struct lora_groups *lg, float *Y, struct ny_err *err)
{
    int rc = gemm_rows(be, X, in_d, n, K, w, N, out_d, Y, N, 1.0f, 0.0f, err);
    for (int a = 0; !rc && a < n_lora && a < 64; a++)
        if (lora[a].a && lg->n[a] > 0)
            rc = lora_rows(be, X, K, N, &lora[a], lg->in_d[a], lg->out_d[a], lg->n[a], Y, err);
    return rc;
}

/* The rows subset (final logits): input rows rows[i] -> output row i, grouped by adapter. */
static int matmul_selected(struct engine_backend *be, const float *X, int K,
                           const struct engine_buf *w, int N, const struct engine_lora_term *lora,
                           int n_lora, const int *rows, int n, float *Y, struct ny_err *err)
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
    for (int a = 0; a < n_lora && !rc; a++) {
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
    for (int a = 0; a < n_lora && !rc; a++) {
        lg.in_d[a] = be->idx_d + off[a];
        lg.out_d[a] = be->idx_d + off[a] + lg.n[a];
    }
    if (!rc)
        rc = matmul_rows(be, X, be->idx_d, NULL, n, K, w, N, lora, n_lora, &lg, Y, err);
    ny_free(row_ad);
    return rc;
}

int cuda_op_matmul(struct engine_backend *be, const struct engine_buf *x, int in,
                   const struct engine_buf *w, int out, const struct engine_lora_term *lora,
                   int n_lora, const int *rows, int n_out_rows, struct engine_buf *y,
                   struct ny_err *err)
{
    int nr = be->n_rows;
    if (w->wtype == CUDA_W_NONE || w->rows != (size_t)out || w->cols != (size_t)in ||
        (size_t)nr * in > x->n || (size_t)(rows ? n_out_rows : nr) * out > y->n ||
        (rows && n_out_rows < 0) || n_lora > 64)
        return NY_ERR(err, NY_E_INVALID, "cuda matmul: weight %zu x %zu for %d -> %d, %d rows",
                      w->rows, w->cols, in, out, rows ? n_out_rows : nr);
    for (int a = 0; a < n_lora; a++)
        if (lora[a].a && (lora[a].rank <= 0 || !lora[a].b ||
                          lora[a].a->rows != (size_t)lora[a].rank ||
                          lora[a].a->cols != (size_t)in || lora[a].b->rows != (size_t)out ||
                          lora[a].b->cols != (size_t)lora[a].rank))
            return NY_ERR(err, NY_E_INVALID, "cuda matmul: LoRA %d does not fit %d -> %d", a, in,
                          out);
    const float *X = (const float *)x->d;
    float *Y = (float *)y->d;
    struct lora_groups lg;
    memset(&lg, 0, sizeof lg);
    if (rows) /* the final-logits rows: lists built here, one upload */
        return matmul_selected(be, X, in, w, out, lora, n_lora, rows, n_out_rows, Y, err);
    const struct cuda_step_sets *ss = &be->sets;
    if (!unit_ok(w)) { /* every row through the generic path, identity lists */
        for (int a = 0; a < n_lora && a < ss->n_adapters; a++) {
            lg.in_d[a] = lg.out_d[a] = be->sets_d + ss->all_off[a];
            lg.n[a] = ss->all_n[a];
        }
        return matmul_rows(be, X, NULL, NULL, nr, in, w, out, lora, n_lora, &lg, Y, err);
    }
    int rc = NY_OK;
    for (int s = 0; s < be->n_seqs && !rc; s++) {
        int r0 = be->seq_start_h[s], m = be->seq_start_h[s + 1] - r0;
        int a = be->seq_adapter_h[s];
        if (m >= 2) /* a prefill unit of its own */
            rc = matmul_unit(be, X, r0, m, in, w, out,
                             a >= 0 && a < n_lora && lora[a].a ? &lora[a] : NULL, Y, err);
    }
    if (rc || ss->single_all_n == 0)
        return rc;
    for (int a = 0; a < n_lora && a < ss->n_adapters; a++) {
        lg.in_d[a] = lg.out_d[a] = be->sets_d + ss->single_off[a];
        lg.n[a] = ss->single_n[a];
    }
    const int *sd = be->sets_d + ss->single_all_off;
    return matmul_rows(be, X, sd, sd, ss->single_all_n, in, w, out, lora, n_lora, &lg, Y, err);
}
