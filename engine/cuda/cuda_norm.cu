/* cuda_norm.cu — RMSNorm: one block per row; each thread sums its strided elements in index
 * order, then a fixed tree (warp shuffles, then warps in order) combines them (for widths up to
 * 8192 that are multiples of 4, each thread's elements are 4-wide groups i, i + 256, ...). The order depends
 * only on the row width, never on the batch, so a row's result is batch-invariant. */
#include "cuda_int.cuh"

#define NORM_THREADS 256

/* Fixed-order block sum over NORM_THREADS threads; every thread gets the total. */
__device__ static float block_sum(float v, float *sh)
{
    for (int o = 16; o > 0; o >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, o);
    int w = threadIdx.x / 32, l = threadIdx.x % 32;
    if (l == 0)
        sh[w] = v;
    __syncthreads();
    float t = 0.0f;
    for (int i = 0; i < NORM_THREADS / 32; i++)
        t += sh[i];
    __syncthreads();
    return t;
}

template <typename W>
__global__ static void k_rmsnorm(const float *x, const W *w, int dim, float eps, float *out)
{
    __shared__ float sh[NORM_THREADS / 32];
    const float *xr = x + (size_t)blockIdx.x * dim;
    float *yr = out + (size_t)blockIdx.x * dim;
    float s = 0.0f;
    for (int i = threadIdx.x; i < dim; i += NORM_THREADS)
        s += xr[i] * xr[i];
    float tot = block_sum(s, sh);
    float inv = 1.0f / sqrtf(tot / (float)dim + eps);
    for (int i = threadIdx.x; i < dim; i += NORM_THREADS)
        yr[i] = xr[i] * inv * (float)w[i];
}

/* dim % 4 == 0 and dim <= NORM_THREADS * 4 * NORM_V: the row is read once into registers with
 * 16-byte loads; the sum of squares runs over each thread's values in index order, then the same
 * fixed tree. */
#define NORM_V 8
template <typename W>
__global__ static void k_rmsnorm_v(const float *x, const W *w, int dim, float eps, float *out)
{
    __shared__ float sh[NORM_THREADS / 32];
    const float4 *xr = reinterpret_cast<const float4 *>(x + (size_t)blockIdx.x * dim);
    float4 *yr = reinterpret_cast<float4 *>(out + (size_t)blockIdx.x * dim);
    const int n4 = dim / 4;
    float4 v[NORM_V];
#pragma unroll
    for (int u = 0; u < NORM_V; u++) {
        int i = threadIdx.x + u * NORM_THREADS;
        v[u] = i < n4 ? xr[i] : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    }
    float s = 0.0f;
#pragma unroll
    for (int u = 0; u < NORM_V; u++)
        s += v[u].x * v[u].x + v[u].y * v[u].y + v[u].z * v[u].z + v[u].w * v[u].w;
    float tot = block_sum(s, sh);
    float inv = 1.0f / sqrtf(tot / (float)dim + eps);
#pragma unroll
    for (int u = 0; u < NORM_V; u++) {
        int i = threadIdx.x + u * NORM_THREADS;
        if (i < n4) {
            const W *wp = w + 4 * i;
            yr[i] = make_float4(v[u].x * inv * (float)wp[0], v[u].y * inv * (float)wp[1],
                                v[u].z * inv * (float)wp[2], v[u].w * inv * (float)wp[3]);
        }
    }
}

int cuda_op_rmsnorm(struct engine_backend *be, const struct engine_buf *x,
                    const struct engine_buf *w, int dim, float eps, struct engine_buf *out,
                    struct ny_err *err)
{
    size_t n = (size_t)be->n_rows * dim;
    if (n > x->n || n > out->n || w->n != (size_t)dim || w->wtype == CUDA_W_NONE)
        return NY_ERR(err, NY_E_INVALID, "cuda rmsnorm: dim %d, weight of %zu, %d rows", dim,
                      w->n, be->n_rows);
    if (be->n_rows == 0)
        return NY_OK;
    if (dim % 4 == 0 && dim <= NORM_THREADS * 4 * NORM_V) {
        if (w->wtype == CUDA_W_BF16)
            k_rmsnorm_v<__nv_bfloat16><<<be->n_rows, NORM_THREADS, 0, be->stream>>>(
                (const float *)x->d, (const __nv_bfloat16 *)w->d, dim, eps, (float *)out->d);
        else
            k_rmsnorm_v<float><<<be->n_rows, NORM_THREADS, 0, be->stream>>>(
                (const float *)x->d, (const float *)w->d, dim, eps, (float *)out->d);
    } else if (w->wtype == CUDA_W_BF16)
        k_rmsnorm<__nv_bfloat16><<<be->n_rows, NORM_THREADS, 0, be->stream>>>(
            (const float *)x->d, (const __nv_bfloat16 *)w->d, dim, eps, (float *)out->d);
    else
        k_rmsnorm<float><<<be->n_rows, NORM_THREADS, 0, be->stream>>>(
            (const float *)x->d, (const float *)w->d, dim, eps, (float *)out->d);
    CU_LAUNCHED(be, "rmsnorm kernel");
    return NY_OK;
}
