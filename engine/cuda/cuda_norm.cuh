/* cuda_norm.cuh — the device side of RMSNorm that kernels outside cuda_norm.cu share (the
 * tensor-parallel sum fused with the residual add and the norm, cuda_tp_p2p.cu): one block of
 * NORM_THREADS threads a row, the fixed-order block sum, and the vectorised row tail, so that a
 * fused kernel's norm is the same code, hence the same bits, as k_rmsnorm_v's. */
#ifndef NY_CUDA_NORM_CUH
#define NY_CUDA_NORM_CUH

#include "cuda_int.cuh"

#define NORM_THREADS 256

/* Fixed-order block sum over NORM_THREADS threads; every thread gets the total. */
__device__ __forceinline__ static float block_sum(float v, float *sh)
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

/* Widths the vectorised kernels take: dim % 4 == 0, dim <= NORM_THREADS * 4 * NORM_V; a thread
 * holds the 4-wide groups i = threadIdx.x + u·NORM_THREADS, u < NORM_V. */
#define NORM_V 8
#define NORM_V_FITS(dim) ((dim) % 4 == 0 && (dim) <= NORM_THREADS * 4 * NORM_V)

/* The weights of group i of the row (0 past n4 groups). */
template <typename W>
__device__ __forceinline__ static void norm_load_w4(const W *w, int i, int n4, float (&wv)[4])
{
#pragma unroll
    for (int c = 0; c < 4; c++)
        wv[c] = i < n4 ? (float)w[4 * i + c] : 0.0f;
}

/* This thread's weights of the row (0 past n4 groups). */
template <typename W>
__device__ __forceinline__ static void norm_load_w(const W *w, int n4, float (&wv)[NORM_V][4])
{
#pragma unroll
    for (int u = 0; u < NORM_V; u++)
        norm_load_w4(w, threadIdx.x + u * NORM_THREADS, n4, wv[u]);
}

/* The residual add of one group i of the row at xr: x + b (the add op's arithmetic), written back
 * to x and returned. */
__device__ __forceinline__ static float4 norm_add4(float4 *xr, int i, const float4 &b)
{
    const float4 a = xr[i], v = make_float4(a.x + b.x, a.y + b.y, a.z + b.z, a.w + b.w);
    xr[i] = v;
    return v;
}

/* The residual add of the fused sum + norm kernels: this thread's groups i of the row at xr,
 * v = norm_add4(sum_at(i)) (zeros past n4), for norm_row_v. */
template <typename F>
__device__ __forceinline__ static void norm_add_row(float4 (&v)[NORM_V], float4 *xr, int n4,
                                                    F sum_at)
{
#pragma unroll
    for (int u = 0; u < NORM_V; u++) {
        const int i = threadIdx.x + u * NORM_THREADS;
        v[u] = i < n4 ? norm_add4(xr, i, sum_at(i)) : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    }
}

/* One 4-wide group's term of the sum of squares (norm_row_v adds them in index order), its
 * roundings spelled out: fma(w, w, fma(z, z, fma(x, x, y·y))). Written as a plain expression,
 * which of x·x and y·y the compiler fuses into the first fma differs from kernel to kernel (it
 * did between k_rmsnorm_v and a kernel holding the same floats in other registers), and with it
 * the last bit of some rows' norms; this is the choice k_rmsnorm_v's PTX had. */
__device__ __forceinline__ static float norm_sq4(const float4 &v)
{
    return __fmaf_rn(v.w, v.w, __fmaf_rn(v.z, v.z, __fmaf_rn(v.x, v.x, __fmul_rn(v.y, v.y))));
}

/* Group i of the row's output: v · inv · w into outr (if given) and, when outb is given, the same
 * floats rounded to bf16 as cuda_rows_to_bf16 rounds them (the bf16 shadow). */
__device__ __forceinline__ static void norm_out4(const float4 &v, float inv, const float (&w)[4],
                                                 int i, float4 *outr, __nv_bfloat16 *outb)
{
    const float4 o =
        make_float4(v.x * inv * w[0], v.y * inv * w[1], v.z * inv * w[2], v.w * inv * w[3]);
    if (outr)
        outr[i] = o;
    if (outb) {
        const __nv_bfloat162 p2[2] = {__floats2bfloat162_rn(o.x, o.y),
                                      __floats2bfloat162_rn(o.z, o.w)};
        reinterpret_cast<uint2 *>(outb)[i] = *reinterpret_cast<const uint2 *>(p2);
    }
}

/* The norm's scale from the row's sum of squares tot. */
__device__ __forceinline__ static float norm_inv(float tot, int dim, float eps)
{
    return 1.0f / sqrtf(tot / (float)dim + eps);
}

/* The norm of a row whose values this thread holds in v (zeros past n4 groups): the sum of
 * squares over its values in index order, the fixed block tree, then norm_out4 for each group.
 * outr and outb point at the row (outr NULL: the shadow alone). */
__device__ __forceinline__ static void norm_row_v(const float4 (&v)[NORM_V],
                                                  const float (&wv)[NORM_V][4], int n4, int dim,
                                                  float eps, float4 *outr, __nv_bfloat16 *outb,
                                                  float *sh)
{
    float s = 0.0f;
#pragma unroll
    for (int u = 0; u < NORM_V; u++)
        s += norm_sq4(v[u]);
    const float inv = norm_inv(block_sum(s, sh), dim, eps);
#pragma unroll
    for (int u = 0; u < NORM_V; u++) {
        int i = threadIdx.x + u * NORM_THREADS;
        if (i < n4)
            norm_out4(v[u], inv, wv[u], i, outr, outb);
    }
}

#endif
