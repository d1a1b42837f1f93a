/* cuda_norm.cu — RMSNorm and the fused residual add + RMSNorm: one block per row; each thread
 * sums its strided elements in index order, then a fixed tree (warp shuffles, then warps in
 * order) combines them (for widths up to 8192 that are multiples of 4, each thread's elements are
 * 4-wide groups i, i + 256, ...). The order depends only on the row width, never on the batch, so
 * a row's result is batch-invariant. rmsnorm and add_rmsnorm run the same kernels (y == NULL: no
 * add), so the fused op is bit-identical to add() followed by rmsnorm() by construction. */
#include "cuda_int.cuh"
#include "cuda_norm.cuh"

/* y != NULL (add_rmsnorm): x[i] = x[i] + y[i] in fp32 first (what the add op does), written back,
 * then the norm of the updated row. Each element of x, y and out is touched by one thread only,
 * y before out, so out may alias y. x is written only when y != NULL. */
template <typename W>
__global__ static void k_rmsnorm(float *x, const float *y, const W *w, int dim, float eps,
                                 float *out)
{
    pdl_trigger();
    pdl_wait();
    __shared__ float sh[NORM_THREADS / 32];
    float *xr = x + (size_t)blockIdx.x * dim;
    float *outr = out + (size_t)blockIdx.x * dim;
    if (y) {
        const float *yr = y + (size_t)blockIdx.x * dim;
        for (int i = threadIdx.x; i < dim; i += NORM_THREADS)
            xr[i] = xr[i] + yr[i];
    }
    float s = 0.0f;
    for (int i = threadIdx.x; i < dim; i += NORM_THREADS)
        s += xr[i] * xr[i];
    float tot = block_sum(s, sh);
    float inv = 1.0f / sqrtf(tot / (float)dim + eps);
    for (int i = threadIdx.x; i < dim; i += NORM_THREADS)
        outr[i] = xr[i] * inv * (float)w[i];
}

/* dim % 4 == 0 and dim <= NORM_THREADS * 4 * NORM_V: the row is read once into registers with
 * 16-byte loads (y added and x written back when y != NULL); then norm_row_v. */
template <typename W>
__global__ static void k_rmsnorm_v(float *x, const float *y, const W *w, int dim, float eps,
                                   float *out, __nv_bfloat16 *outb)
{
    pdl_trigger();
    const int n4 = dim / 4;
    float wv[NORM_V][4]; /* the norm weight (no kernel writes it): read before the wait */
    norm_load_w(w, n4, wv);
    pdl_wait();
    __shared__ float sh[NORM_THREADS / 32];
    float4 *xr = reinterpret_cast<float4 *>(x + (size_t)blockIdx.x * dim);
    const float4 *yr =
        y ? reinterpret_cast<const float4 *>(y + (size_t)blockIdx.x * dim) : nullptr;
    float4 v[NORM_V];
#pragma unroll
    for (int u = 0; u < NORM_V; u++) {
        int i = threadIdx.x + u * NORM_THREADS;
        v[u] = i < n4 ? xr[i] : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
        if (y && i < n4) {
            float4 b = yr[i];
            v[u] = make_float4(v[u].x + b.x, v[u].y + b.y, v[u].z + b.z, v[u].w + b.w);
            xr[i] = v[u];
        }
    }
    norm_row_v(v, wv, n4, dim, eps,
               out ? reinterpret_cast<float4 *>(out + (size_t)blockIdx.x * dim) : nullptr,
               outb ? outb + (size_t)blockIdx.x * dim : nullptr, sh);
}

/* Checks shared by both ops; n_rows rows of width dim in x, y (if given) and out. */
static int norm_check(struct engine_backend *be, const char *op, const struct engine_buf *x,
                      const struct engine_buf *y, const struct engine_buf *w, int dim,
                      const struct engine_buf *out, struct ny_err *err)
{
    size_t n = (size_t)be->n_rows * dim;
    if (dim <= 0 || n > x->n || n > out->n || (y && n > y->n) || w->n != (size_t)dim ||
        w->wtype == CUDA_W_NONE)
        return NY_ERR(err, NY_E_INVALID, "cuda %s: dim %d, weight of %zu, %d rows", op, dim,
                      w->n, be->n_rows);
    return NY_OK;
}

int cuda_shadow_room(struct engine_backend *be, int dim, __nv_bfloat16 **out,
                     struct ny_err *err)
{
    static int on = -1;
    void *sb = NULL;
    *out = NULL;
    /* read by the prefill units' staging (unit_stage) and, in a step of decode rows alone, by
     * the skinny launches that stage X (cuda_skinny_xb_stage): those of at least
     * cuda_skinny_xb_rows() rows */
    const int xb = cuda_skinny_xb_rows();
    const int wanted = be->sets.units_n > 0 || (xb > 0 && be->n_rows >= xb);
    if (!wanted || !cuda_env_on("NY_SHADOW", &on))
        return NY_OK;
    int rc = cuda_scratch(be, CUDA_SCRATCH_SHADOW, (size_t)be->n_rows * dim * 2, &sb, err);
    *out = (__nv_bfloat16 *)sb;
    return rc;
}

int cuda_norm_rows(struct engine_backend *be, int r0, int m, float *x, const float *y,
                   const struct engine_buf *w, int dim, float eps, float *out, __nv_bfloat16 *ob,
                   struct ny_err *err)
{
    if (m <= 0)
        return NY_OK;
    const size_t off = (size_t)r0 * dim;
    x += off;
    out = out ? out + off : NULL;
    y = y ? y + off : NULL;
    ob = ob ? ob + off : NULL;
    const __nv_bfloat16 *wb = (const __nv_bfloat16 *)w->d;
    const float *wf = (const float *)w->d;
    bool bf = w->wtype == CUDA_W_BF16;
    const char *what = y ? "add_rmsnorm kernel" : "rmsnorm kernel";
    dim3 grid((unsigned)m), tb(NORM_THREADS);
    if (!out && !(ob && NORM_V_FITS(dim))) /* x and the shadow only: the vectorised kernel */
        return NY_ERR(err, NY_E_INVALID, "cuda norm: no output for %d-wide rows", dim);
    if (dim % 4 == 0 && dim <= NORM_THREADS * 4 * NORM_V) {
        if (bf)
            CU_LAUNCH(be, what, k_rmsnorm_v<__nv_bfloat16>, grid, tb, 0, x, y, wb, dim, eps, out,
                      ob);
        else
            CU_LAUNCH(be, what, k_rmsnorm_v<float>, grid, tb, 0, x, y, wf, dim, eps, out, ob);
    } else if (bf) {
        CU_LAUNCH(be, what, k_rmsnorm<__nv_bfloat16>, grid, tb, 0, x, y, wb, dim, eps, out);
    } else {
        CU_LAUNCH(be, what, k_rmsnorm<float>, grid, tb, 0, x, y, wf, dim, eps, out);
    }
    return NY_OK;
}

/* One launch over the step's rows; where cuda_shadow_room gives room (a step with prefill units,
 * or of enough decode rows) also the bf16 shadow of out for the GEMMs' staging (the vectorised
 * kernel only). */
int cuda_norm_all(struct engine_backend *be, float *x, const float *y, const struct engine_buf *w,
                  int dim, float eps, float *out, struct ny_err *err)
{
    if (be->n_rows == 0)
        return NY_OK;
    __nv_bfloat16 *ob = NULL;
    const int vec = dim % 4 == 0 && dim <= NORM_THREADS * 4 * NORM_V;
    int rc = vec ? cuda_shadow_room(be, dim, &ob, err) : NY_OK;
    if (!rc)
        rc = cuda_norm_rows(be, 0, be->n_rows, x, y, w, dim, eps, out, ob, err);
    if (!rc && vec)
        cuda_shadow_mark(be, ob, out, dim);
    return rc;
}

int cuda_op_rmsnorm(struct engine_backend *be, const struct engine_buf *x,
                    const struct engine_buf *w, int dim, float eps, struct engine_buf *out,
                    struct ny_err *err)
{
    int rc = norm_check(be, "rmsnorm", x, NULL, w, dim, out, err);
    if (rc)
        return rc;
    /* x is only read (the kernel writes x only when given y) */
    return cuda_norm_all(be, (float *)x->d, NULL, w, dim, eps, (float *)out->d, err);
}

int cuda_op_add_rmsnorm(struct engine_backend *be, struct engine_buf *x,
                        const struct engine_buf *y, const struct engine_buf *w, int dim,
                        float eps, struct engine_buf *out, struct ny_err *err)
{
    int rc = norm_check(be, "add_rmsnorm", x, y, w, dim, out, err);
    if (rc)
        return rc;
    if (x->d == y->d || x->d == out->d)
        return NY_ERR(err, NY_E_INVALID, "cuda add_rmsnorm: x may not alias y or out");
    return cuda_norm_all(be, (float *)x->d, (const float *)y->d, w, dim, eps, (float *)out->d,
                         err);
}
