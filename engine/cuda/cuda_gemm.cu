/* cuda_gemm.cu — matmul with unmerged LoRA: Y = X · Wᵀ (+ scale · (X · Aᵀ) · Bᵀ per adapter).
 *
 * Three paths, chosen only by the weight's shape and dtype and by the request's own row count,
 * never by the rest of the batch (the determinism contract of engine_backend_int.h):
 *   - prefill unit (a request contributing >= 2 rows, bf16 weight, in % 8 == 0): cuBLASLt, bf16
 *     operands, fp32 accumulate and output, the heuristic's first algorithm among those with no
 *     split-K reduction (CUBLASLT_REDUCTION_SCHEME_NONE), planned for exactly that request's
 *     M = rows; operands staged at aligned addresses so the plan never depends on where the
 *     request sits in the batch;
 *   - skinny rows (decode rows, the final-logits rows) and generic (fp32 weights, or shapes the
 *     others refuse): cuda_gemm_rows.cu.
 */
#include <stdlib.h>
#include <string.h>

#include "cuda_int.cuh"

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

/* The plan of D[m, n] = X[m, k] · W[n, k]ᵀ (bf16 in, fp32 out), rows of W ld long and of X ldx;
 * batch > 1: batch independent products over consecutive k-slices of rows of length ld (X and W),
 * D slices [batch][m][n]. */
static int plan_get(struct engine_backend *be, int m, int n, int k, int batch, int ld, int ldx,
                    struct cuda_gemm_plan **out, struct ny_err *err)
{
    for (int i = 0; i < be->n_plans; i++)
        if (be->plans[i].m == m && be->plans[i].n == n && be->plans[i].k == k &&
            be->plans[i].batch == batch && be->plans[i].ld == ld && be->plans[i].ldx == ldx) {
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
    CUBLAS_CHECK(be, cublasLtMatrixLayoutCreate(&p->lb, CUDA_R_16BF, k, m, ldx), "layout B");
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
    p->ldx = ldx;
    be->n_plans++;
    *out = p;
    return NY_OK;
}

/* Y[m, :] = alpha · Xb[m, :] · Wᵀ + beta · Y[m, :] for the m contiguous rows of one request;
 * Xb bf16 staged at an aligned address. Y is staged when its address is not 16-byte aligned. */
static int gemm_unit_ldx(struct engine_backend *be, const __nv_bfloat16 *xb, int ldx, int m,
                         int K, const struct engine_buf *w, int N, float *Y, float alpha,
                         float beta, struct ny_err *err)
{
    struct cuda_gemm_plan *p = NULL;
    int rc = plan_get(be, m, N, K, 1, K, ldx, &p, err);
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

static int gemm_unit(struct engine_backend *be, const __nv_bfloat16 *xb, int m, int K,
                     const struct engine_buf *w, int N, float *Y, float alpha, float beta,
                     struct ny_err *err)
{
    return gemm_unit_ldx(be, xb, K, m, K, w, N, Y, alpha, beta, err);
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

/* y (fp32) and/or yb (bf16, rounded as k_rows_to_bf16 rounds) = the slices summed in order. */
__global__ static void k_sum_slices(const float *c, int slices, size_t n, float *y,
                                    __nv_bfloat16 *yb)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        float s = c[i];
        for (int j = 1; j < slices; j++)
            s += c[(size_t)j * n + i];
        if (y)
            y[i] = s;
        if (yb)
            yb[i] = __float2bfloat16_rn(s);
    }
}

/* Y[m, N] = Xb[m, K] · Wᵀ (beta 0) through split_k slices of length slice, into Y (fp32) and/or
 * Yb (bf16: the product's staging for the next GEMM, without a kernel of its own). */
static int gemm_unit_splitk(struct engine_backend *be, const __nv_bfloat16 *xb, int m, int K,
                            const struct engine_buf *w, int N, int slice, float *Y,
                            __nv_bfloat16 *Yb, struct ny_err *err)
{
    int S = K / slice;
    struct cuda_gemm_plan *p = NULL;
    int rc = plan_get(be, m, N, slice, S, K, K, &p, err);
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
    k_sum_slices<<<blocks, 256, 0, be->stream>>>((const float *)c, S, n, Y, Yb);
    CU_LAUNCHED(be, "split-K sum kernel");
    return NY_OK;
}

int cuda_gemm_bf16(struct engine_backend *be, const __nv_bfloat16 *xb, int m, int K,
                   const struct engine_buf *w, int N, float *Y, float alpha, float beta,
                   struct ny_err *err)
{
    return gemm_unit(be, xb, m, K, w, N, Y, alpha, beta, err);
}

static int unit_ok(const struct engine_buf *w) { return cuda_skinny_ok(w); }

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
    /* u = X · Aᵀ (fp32), then Y = scale · bf16(u) · Bᵀ; a split-K A product with a bf16 B
     * writes bf16(u) alone */
    void *u, *ub = NULL;
    int R = lt->rank, rc = cuda_scratch(be, 1, (size_t)m * R * sizeof(float), &u, err);
    int slice = splitk_slice(K, R), direct = unit_ok(lt->a) && slice && unit_ok(lt->b);
    if (!rc && unit_ok(lt->b))
        rc = cuda_scratch(be, 2, (size_t)m * R * 2, &ub, err);
    if (!rc && unit_ok(lt->a) && slice)
        rc = gemm_unit_splitk(be, xb, m, K, lt->a, R, slice, direct ? NULL : (float *)u,
                              direct ? (__nv_bfloat16 *)ub : NULL, err);
    else if (!rc && unit_ok(lt->a))
        rc = gemm_unit(be, xb, m, K, lt->a, R, (float *)u, 1.0f, 0.0f, err);
    else if (!rc)
        rc = cuda_gemm_rows(be, X + (size_t)r0 * K, NULL, m, K, lt->a, R, NULL, (float *)u, R, 1.0f,
                       0.0f, err);
    if (rc)
        return rc;
    if (unit_ok(lt->b)) {
        if (!direct)
            rc = cuda_rows_to_bf16(be, (const float *)u, NULL, m, R, (__nv_bfloat16 *)ub, err);
        if (!rc)
            rc = gemm_unit(be, (const __nv_bfloat16 *)ub, m, R, lt->b, N, Yr, lt->scale, 0.0f,
                           err);
    } else {
        rc = cuda_gemm_rows(be, (const float *)u, NULL, m, R, lt->b, N, NULL, Yr, N, lt->scale, 0.0f,
                       err);
    }
    return rc ? rc : gemm_unit(be, xb, m, K, w, N, Yr, 1.0f, 1.0f, err);
}

/* ---- stacked LoRA A matrices ----------------------------------------------------------------- */
void cuda_astack_drop(struct engine_backend *be, const void *d)
{
    for (int i = 0; i < be->n_astack;) {
        struct cuda_astack *e = &be->astack[i];
        int hit = !d;
        for (int p = 0; p < e->n; p++)
            hit |= e->src[p] == d;
        if (!hit) {
            i++;
            continue;
        }
        cudaFree(e->d);
        *e = be->astack[--be->n_astack];
    }
    if (!d) {
        ny_free(be->astack);
        be->astack = NULL;
        be->astack_cap = 0;
    }
}

/* The [n·R, K] stack of the A matrices src[0..n) (each [R, K] bf16), built on first use. */
static int astack_get(struct engine_backend *be, const void *const *src, int n, int R, int K,
                      const __nv_bfloat16 **out, struct ny_err *err)
{
    for (int i = 0; i < be->n_astack; i++) {
        const struct cuda_astack *e = &be->astack[i];
        if (e->n == n && e->rank == R && e->K == K && !memcmp(e->src, src, n * sizeof *src)) {
            *out = (const __nv_bfloat16 *)e->d;
            return NY_OK;
        }
    }
    if (be->n_astack == be->astack_cap) {
        int cap = be->astack_cap ? 2 * be->astack_cap : 64;
        void *g = ny_reallocarray(be->astack, (size_t)cap, sizeof *be->astack);
        if (!g)
            return NY_ERR(err, NY_E_NOMEM, "cuda: out of memory (stacked LoRA A)");
        be->astack = (struct cuda_astack *)g;
        be->astack_cap = cap;
    }
    struct cuda_astack *e = &be->astack[be->n_astack];
    memset(e, 0, sizeof *e);
    size_t one = (size_t)R * K * 2;
    CU_CHECK(be, cudaMalloc(&e->d, one * n), "cudaMalloc stacked LoRA A");
    for (int p = 0; p < n; p++) {
        e->src[p] = src[p];
        cudaError_t ce = cudaMemcpyAsync((char *)e->d + one * p, src[p], one,
                                         cudaMemcpyDeviceToDevice, be->stream);
        if (ce != cudaSuccess) {
            cudaFree(e->d);
            return cuda_fail(be, err, __FILE__, __LINE__, "stack LoRA A", cudaGetErrorString(ce));
        }
    }
    e->n = n;
    e->rank = R;
    e->K = K;
    be->n_astack++;
    *out = (const __nv_bfloat16 *)e->d;
    return NY_OK;
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
    /* the mlp op's deferred gate and up LoRA terms (NULL tdef: none). The gate/up job writes each
     * prefill unit's bf16(X·Aᵀ) of part p at tdef + (2·row + p)·trank (stacked_unit), its base
     * products without the term; the down job (U set) stages such units through
     * cuda_swiglu_lora_rows with the B matrices and scales of dlora[0] (gate) and dlora[1] (up). */
    __nv_bfloat16 *tdef;
    int trank;
    const struct engine_lora_term *dlora[2];
    int tdef_in; /* 0: the gate/up job (writes tdef), 1: the down job (reads it) */
};

/* Whether a unit's LoRA A products of one adapter over several parts run as one GEMM: yes unless
 * NY_LORA_STACK=0 (A/B timing; the results are bit-identical either way). The mlp op's deferred
 * terms always do. */
static int lora_stack(void)
{
    static int v = -1;
    return cuda_env_on("NY_LORA_STACK", &v);
}

/* The parts of j with a term of adapter a on the unit path (A and B), all of the rank of the
 * first such part (*R): their indices into idx, their count returned (0 when stacking is off). */
static int stack_parts(const struct mm_job *j, int a, int *idx, int *R)
{
    int n = 0;
    if ((!lora_stack() && !(j->tdef && !j->tdef_in)) || a < 0 || a >= j->n_lora)
        return 0;
    for (int p = 0; p < j->n_parts; p++) {
        const struct engine_lora_term *lt = j->lora[p] ? &j->lora[p][a] : NULL;
        if (!lt || !lt->a || !unit_ok(lt->a) || !unit_ok(lt->b) || (n && lt->rank != *R))
            continue;
        *R = lt->rank;
        idx[n++] = p;
    }
    return n;
}

/* The parts idx[0..ns) of a unit (rows [r0, r0 + m), staged in xb), adapter a, all of rank R:
 * u = X · [A_0; A_1; ...]ᵀ as one GEMM over the stacked A matrices, bf16(u) staged once, then
 * each part as matmul_unit does it (its B product from its slice of the staged rows, then the
 * base product adding itself) — or, for the mlp op's gate/up job, bf16(u) kept in tdef and the
 * base products alone. */
static int stacked_unit(struct engine_backend *be, const struct mm_job *j,
                        const __nv_bfloat16 *xb, int r0, int m, int a, const int *idx, int ns,
                        int R, struct ny_err *err)
{
    const void *src[ENGINE_MATMUL_MAX_PARTS];
    for (int i = 0; i < ns; i++)
        src[i] = j->lora[idx[i]][a].a->d;
    const __nv_bfloat16 *as = NULL;
    int K = j->K, NR = ns * R, rc = astack_get(be, src, ns, R, K, &as, err);
    struct engine_buf aw;
    memset(&aw, 0, sizeof aw);
    aw.d = (void *)as;
    aw.wtype = CUDA_W_BF16;
    aw.rows = (size_t)NR;
    aw.cols = (size_t)K;
    aw.n = aw.rows * aw.cols;
    void *u = NULL, *ub = NULL;
    const int defer = j->tdef && !j->tdef_in, slice = splitk_slice(K, NR);
    if (defer)
        ub = j->tdef + (size_t)r0 * NR;
    else if (!rc)
        rc = cuda_scratch(be, 2, (size_t)m * NR * 2, &ub, err);
    /* split K: the slices' sum writes bf16(u) itself */
    if (!rc && slice)
        rc = gemm_unit_splitk(be, xb, m, K, &aw, NR, slice, NULL, (__nv_bfloat16 *)ub, err);
    else if (!rc && !(rc = cuda_scratch(be, 1, (size_t)m * NR * sizeof(float), &u, err)) &&
             !(rc = gemm_unit(be, xb, m, K, &aw, NR, (float *)u, 1.0f, 0.0f, err)))
        rc = cuda_rows_to_bf16(be, (const float *)u, NULL, m, NR, (__nv_bfloat16 *)ub, err);
    for (int i = 0; i < ns && !rc; i++) {
        const int p = idx[i], N = j->N[p];
        const struct engine_lora_term *lt = &j->lora[p][a];
        float *Yr = j->Y[p] + (size_t)r0 * N;
        if (!defer)
            rc = gemm_unit_ldx(be, (const __nv_bfloat16 *)ub + (size_t)i * R, NR, m, R, lt->b, N,
                               Yr, lt->scale, 0.0f, err);
        if (!rc)
            rc = gemm_unit(be, xb, m, K, j->w[p], N, Yr, 1.0f, defer ? 0.0f : 1.0f, err);
    }
    return rc;
}

/* Row groups by adapter (device lists; group a: in_d[a], out_d[a], n[a] rows). */
struct lora_groups {
    const int *in_d[64], *out_d[64];
    int n[64];
};

/* Base products over n rows (input rows in_d, output rows out_d; device lists, NULL =
 * identity), with each adapter's LoRA A products over its group's rows in the same launch
 * (u = X · Aᵀ, compact per group), then every group's B products in one launch
 * (Y += scale · u · Bᵀ): two launches for any number of adapters (SK_MAX_PARTS allowing). */
#define MM_ROW_PARTS (ENGINE_MATMUL_MAX_PARTS * 65)
static int matmul_rows(struct engine_backend *be, const struct mm_job *j, const int *in_d,
                       const int *out_d, int n, const struct lora_groups *lg, struct ny_err *err)
{
    struct cuda_gemm_part pa[MM_ROW_PARTS], pb[MM_ROW_PARTS];
    int na = 0, nb = 0;
    for (int p = 0; p < j->n_parts; p++)
        pa[na++] = {j->X, j->w[p], j->K, j->N[p], j->Y[p], j->N[p], 1.0f, in_d, out_d, n};
    size_t need = 0;
    for (int a = 0; a < j->n_lora && a < 64; a++)
        for (int p = 0; p < j->n_parts && lg->n[a] > 0; p++)
            if (j->lora[p] && j->lora[p][a].a)
                need += (size_t)lg->n[a] * j->lora[p][a].rank;
    float *up = NULL;
    if (need) {
        void *u;
        int rc = cuda_scratch(be, 1, need * sizeof(float), &u, err);
        if (rc)
            return rc;
        up = (float *)u;
    }
    for (int a = 0; a < j->n_lora && a < 64; a++)
        for (int p = 0; p < j->n_parts && lg->n[a] > 0; p++) {
            if (!j->lora[p] || !j->lora[p][a].a)
                continue;
            const struct engine_lora_term *lt = &j->lora[p][a];
            int R = lt->rank, g = lg->n[a];
            /* a group of every row lists them as the base does (both in row order): its A
             * products then share the base's bf16 staging of X (cuda_skinny_xb_stage) */
            const int *ain = g == n ? in_d : lg->in_d[a];
            pa[na++] = {j->X, lt->a, j->K, R, up, R, 1.0f, ain, NULL, g};
            pb[nb++] = {up, lt->b, R, j->N[p], j->Y[p], j->N[p], lt->scale, NULL, lg->out_d[a], g};
            up += (size_t)g * R;
        }
    int rc = cuda_gemm_rows_multi(be, pa, na, 0.0f, err);
    return rc || !nb ? rc : cuda_gemm_rows_multi(be, pb, nb, 1.0f, err);
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
    const float *x = j->X + (size_t)r0 * j->K;
    if (!j->U && be->shadow_src == j->X && be->shadow_dim == j->K) { /* the bf16 shadow */
        *xb = (__nv_bfloat16 *)be->shadow_d + (size_t)r0 * j->K;
        return NY_OK;
    }
    int rc = cuda_scratch(be, 0, (size_t)m * j->K * 2, xb, err);
    if (rc)
        return rc;
    if (!j->U)
        return cuda_rows_to_bf16(be, x, NULL, m, j->K, (__nv_bfloat16 *)*xb, err);
    if (j->tdef_in && a >= 0 && a < j->n_lora && j->dlora[0][a].a) { /* the mlp op's terms */
        const struct engine_lora_term *lg = &j->dlora[0][a], *lu = &j->dlora[1][a];
        const __nv_bfloat16 *tg = j->tdef + (size_t)r0 * 2 * j->trank;
        return cuda_swiglu_lora_rows(be, x, j->U + (size_t)r0 * j->K, m, j->K, tg, tg + j->trank,
                                     2 * j->trank, j->trank,
                                     (const __nv_bfloat16 *)lg->b->d,
                                     (const __nv_bfloat16 *)lu->b->d, lg->scale, lu->scale,
                                     (__nv_bfloat16 *)*xb, err);
    }
    int f32 = 0;
    for (int p = 0; p < j->n_parts; p++)
        if (a >= 0 && a < j->n_lora && j->lora[p] && j->lora[p][a].a)
            f32 |= !unit_ok(j->lora[p][a].a);
    return cuda_swiglu_rows(be, x, j->U + (size_t)r0 * j->K, m, j->K, f32 ? (float *)x : NULL,
                            (__nv_bfloat16 *)*xb, err);
}

/* Whether unit rows of adapter a read X only through their bf16 staging: every LoRA A matrix of
 * a on the unit path (matmul_unit and stacked_unit read the fp32 rows otherwise). */
static int unit_staged_only(const struct mm_job *j, int a)
{
    for (int p = 0; p < j->n_parts && a >= 0 && a < j->n_lora; p++)
        if (j->lora[p] && j->lora[p][a].a && !unit_ok(j->lora[p][a].a))
            return 0;
    return 1;
}

/* A swiglu_matmul job: X = silu(X)·U in place (fp32, the swiglu op's kernel) on the rows of the
 * one-row requests (decode rows), each maximal run of consecutive such rows in one launch. A run
 * of every row (a step of decode rows alone) also writes the bf16 shadow of X where there is
 * room (the same kernel rounds the same floats it stores: the staging's bits). */
static int swiglu_singles(struct engine_backend *be, const struct mm_job *j, struct ny_err *err)
{
    int rc = NY_OK, run0 = 0;
    for (int s = 0; s <= be->n_seqs && !rc; s++) {
        int r0 = be->seq_start_h[s];
        if (s < be->n_seqs && be->seq_start_h[s + 1] - r0 < 2)
            continue; /* a one-row request: extends the run */
        if (r0 > run0) {
            float *g = (float *)j->X + (size_t)run0 * j->K;
            __nv_bfloat16 *ob = NULL;
            const int whole = run0 == 0 && r0 == be->n_rows;
            if (whole)
                rc = cuda_shadow_room(be, j->K, &ob, err);
            if (!rc)
                rc = cuda_swiglu_rows(be, g, j->U + (size_t)run0 * j->K, r0 - run0, j->K, g, ob,
                                      err);
            if (!rc && whole)
                cuda_shadow_mark(be, ob, g, j->K);
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
    /* overlapped tp sums (cuda_tp_overlap.cu): this job may run a pending add + norm unit by
     * unit (consume: it reads the norm's out on the unit path), or queue each unit's sum as the
     * unit is done (produce: the announced product); anything else waits for them first */
    const int on_units = units == j->n_parts && ss->single_all_n == 0;
    int consume = be->pend && !j->U && on_units && j->X == be->pend_out &&
                  j->K == be->pend_dim && ss->units_n == be->pend_units;
    if ((be->pend && !consume) || be->ovl_units) {
        int rc = cuda_tp_ovl_settle(be, err);
        if (rc)
            return rc;
        consume = consume && be->pend;
    }
    const int produce = be->ovl_y && !be->ovl_units && on_units && j->n_parts == 1 &&
                        j->Y[0] == be->ovl_y && j->N[0] == be->ovl_dim;
    if (consume)
        cuda_shadow_mark(be, be->pend_ob, be->pend_out, be->pend_dim);
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
    int rc = NY_OK, u = 0;
    for (int s = 0; s < be->n_seqs && !rc; s++) {
        int r0 = be->seq_start_h[s], m = be->seq_start_h[s + 1] - r0;
        int a = be->seq_adapter_h[s];
        if (m < 2) /* a decode row: below */
            continue;
        void *xb;
        int idx[ENGINE_MATMUL_MAX_PARTS], R = 0, ns = 0;
        if (consume) /* the norm's fp32 rows too, unless this job is their last reader */
            rc = cuda_tp_ovl_norm_unit(be, u, r0, m,
                                       (be->hint_cur == j->X || be->pend_trans) &&
                                           unit_staged_only(j, a),
                                       err);
        if (!rc)
            rc = unit_stage(be, j, r0, m, a, &xb, err);
        if (!rc && (ns = stack_parts(j, a, idx, &R)) >= 2)
            rc = stacked_unit(be, j, (const __nv_bfloat16 *)xb, r0, m, a, idx, ns, R, err);
        for (int p = 0; p < j->n_parts && !rc; p++) {
            const struct engine_lora_term *lt =
                a >= 0 && a < j->n_lora && j->lora[p] && j->lora[p][a].a ? &j->lora[p][a] : NULL;
            if (ns >= 2 && lt && lt->rank == R && unit_ok(lt->a) && unit_ok(lt->b))
                continue; /* done by stacked_unit */
            rc = matmul_unit(be, j->X, (const __nv_bfloat16 *)xb, r0, m, j->K, j->w[p], j->N[p],
                             lt, j->Y[p], err);
        }
        if (!rc && produce)
            rc = cuda_tp_ovl_unit(be, u, r0, m, err);
        u++;
    }
    if (consume && !rc)
        be->pend = 0;
    if (produce && !rc)
        be->ovl_units = u;
    if (rc || ss->single_all_n == 0)
        return rc;
    if (j->U && (rc = swiglu_singles(be, j, err)))
        return rc;
    for (int a = 0; a < j->n_lora && a < ss->n_adapters; a++) {
        lg.in_d[a] = lg.out_d[a] = be->sets_d + ss->single_off[a];
        lg.n[a] = ss->single_n[a];
    }
    /* every row a decode row: the list is 0..n-1, passed as identity (the launches that stage X
     * may then read the bf16 shadow of X: cuda_skinny_xb_stage) */
    const int *sd = ss->single_all_n == be->n_rows ? NULL : be->sets_d + ss->single_all_off;
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

/* A one-part job: X [n_rows, K] (fp32) times w [N, K] with its LoRA terms into Y. */
static void mm_job_one(struct mm_job *j, const struct engine_buf *x, int K,
                       const struct engine_buf *w, int N, const struct engine_lora_term *lora,
                       int n_lora, struct engine_buf *y)
{
    memset(j, 0, sizeof *j);
    j->w[0] = w;
    j->lora[0] = n_lora > 0 ? lora : NULL;
    j->Y[0] = (float *)y->d;
    j->N[0] = N;
    j->n_parts = 1;
    j->n_lora = j->lora[0] ? n_lora : 0;
    j->K = K;
    j->X = (const float *)x->d;
}

/* An op is about to write y: the bf16 shadow of y, if it is one, goes stale (the op's own
 * reads of its input happen before it writes y, as the ops are ordered on the stream). */
static void shadow_written(struct engine_backend *be, const struct engine_buf *y)
{
    if (be->shadow_src == y->d)
        be->shadow_src = NULL;
}

int cuda_op_matmul(struct engine_backend *be, const struct engine_buf *x, int in,
                   const struct engine_buf *w, int out, const struct engine_lora_term *lora,
                   int n_lora, const int *rows, int n_out_rows, struct engine_buf *y,
                   struct ny_err *err)
{
    int rc = matmul_check(be, x, in, w, out, lora, n_lora, rows, n_out_rows, y, err);
    if (!rc && rows && cuda_ovl_busy(be)) /* the rows path: overlapped sums done first */
        rc = cuda_tp_ovl_settle(be, err);
    if (rc)
        return rc;
    struct mm_job j;
    mm_job_one(&j, x, in, w, out, lora, n_lora, y);
    shadow_written(be, y);
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
        shadow_written(be, q->y);
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
    mm_job_one(&j, gate, ff, w, out, lora, n_lora, y);
    j.U = (const float *)up->d;
    return be->n_rows ? matmul_all(be, &j, err) : NY_OK;
}

/* Whether the mlp op defers the gate and up LoRA terms of prefill units to the swiglu staging:
 * yes unless NY_MLP_DEFER=0 (A/B timing and checks). */
static int mlp_defer(void)
{
    static int v = -1;
    return cuda_env_on("NY_MLP_DEFER", &v);
}

/* The rank of the gate and up LoRA terms the mlp op can defer (every adapter with a term on one
 * has one on the other, all of the same rank: 16, 32 or 64; every matrix on the unit path,
 * and down's A on it too), else 0: the op makes the two calls. */
static int mlp_defer_rank(const struct engine_matmul_part *gu, int n_lora, int ff,
                          const struct engine_buf *w, const struct engine_lora_term *lora)
{
    if (!mlp_defer() || n_lora <= 0 || !gu[0].lora || !gu[1].lora || !unit_ok(gu[0].w) ||
        !unit_ok(gu[1].w) || !unit_ok(w) || gu[0].out != ff || gu[1].out != ff || ff % 2)
        return 0;
    int R = 0;
    for (int a = 0; a < n_lora; a++) {
        const struct engine_lora_term *g = &gu[0].lora[a], *u = &gu[1].lora[a];
        if (!g->a && !u->a)
            continue;
        const int r = g->rank;
        if (!g->a || !u->a || r != u->rank || (r != 16 && r != 32 && r != 64) || (R && r != R) ||
            !unit_ok(g->a) || !unit_ok(u->a) || !unit_ok(g->b) || !unit_ok(u->b) ||
            (lora && lora[a].a && !unit_ok(lora[a].a)))
            return 0;
        R = g->rank;
    }
    return R;
}

int cuda_op_mlp(struct engine_backend *be, const struct engine_buf *x, int in,
                const struct engine_matmul_part *gu, int n_lora, int ff,
                const struct engine_buf *w, int out, const struct engine_lora_term *lora,
                struct engine_buf *y, struct ny_err *err)
{
    int R = mlp_defer_rank(gu, n_lora, ff, w, lora), rc;
    if (!R) {
        rc = cuda_op_matmul_multi(be, x, in, gu, 2, n_lora, err);
        shadow_written(be, y);
        return rc ? rc : cuda_op_swiglu_matmul(be, gu[0].y, gu[1].y, ff, w, out, lora, n_lora, y,
                                               err);
    }
    for (int p = 0; p < 2; p++)
        if ((rc = matmul_check(be, x, in, gu[p].w, gu[p].out, gu[p].lora, n_lora, NULL, 0,
                               gu[p].y, err)))
            return rc;
    if ((rc = matmul_check(be, gu[0].y, ff, w, out, lora, n_lora, NULL, 0, y, err)))
        return rc;
    if (y->d == gu[0].y->d || y->d == gu[1].y->d)
        return NY_ERR(err, NY_E_INVALID, "cuda mlp: y may not alias gate or up");
    shadow_written(be, gu[0].y);
    shadow_written(be, gu[1].y);
    if (!be->n_rows)
        return NY_OK;
    void *t;
    if ((rc = cuda_scratch(be, CUDA_SCRATCH_MLP, (size_t)2 * be->n_rows * R * 2, &t, err)))
        return rc;
    struct mm_job j;
    memset(&j, 0, sizeof j);
    for (int p = 0; p < 2; p++) {
        j.w[p] = gu[p].w;
        j.lora[p] = gu[p].lora;
        j.Y[p] = (float *)gu[p].y->d;
        j.N[p] = ff;
    }
    j.n_parts = 2;
    j.n_lora = n_lora;
    j.K = in;
    j.X = (const float *)x->d;
    j.tdef = (__nv_bfloat16 *)t;
    j.trank = R;
    if ((rc = matmul_all(be, &j, err)))
        return rc;
    struct mm_job d;
    mm_job_one(&d, gu[0].y, ff, w, out, lora, n_lora, y);
    d.U = (const float *)gu[1].y->d;
    d.tdef = (__nv_bfloat16 *)t;
    d.trank = R;
    d.dlora[0] = gu[0].lora;
    d.dlora[1] = gu[1].lora;
    d.tdef_in = 1;
    rc = matmul_all(be, &d, err); /* reads gate and up, not x: y may be x */
    shadow_written(be, y);
    return rc;
}
