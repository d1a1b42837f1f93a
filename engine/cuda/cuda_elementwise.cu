/* cuda_elementwise.cu — the row-wise element ops: embedding gather, SwiGLU (also fused with the
 * bf16 staging of its output), residual add, the fp32 -> bf16 row staging used by the GEMMs, and
 * random bf16 weights for `nyxaudit bench`.
 * Each output element is computed from its own inputs only (no reductions). */
#include <stdint.h>
#include <string.h>

#include "cuda_int.cuh"
#include "engine_cuda.h"

__global__ static void k_embed_bf16(const __nv_bfloat16 *table, const int32_t *ids, int n,
                                    int dim, float *out)
{
    for (int r = blockIdx.y; r < n; r += gridDim.y) {
        const __nv_bfloat16 *src = table + (size_t)ids[r] * dim;
        for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < dim; i += gridDim.x * blockDim.x)
            out[(size_t)r * dim + i] = __bfloat162float(src[i]);
    }
}

__global__ static void k_embed_f32(const float *table, const int32_t *ids, int n, int dim,
                                   float *out)
{
    for (int r = blockIdx.y; r < n; r += gridDim.y) {
        const float *src = table + (size_t)ids[r] * dim;
        for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < dim; i += gridDim.x * blockDim.x)
            out[(size_t)r * dim + i] = src[i];
    }
}

int cuda_op_embed(struct engine_backend *be, const struct engine_buf *table, const int32_t *ids,
                  int dim, struct engine_buf *out, struct ny_err *err)
{
    int n = be->n_rows;
    if (table->wtype == CUDA_W_NONE || (size_t)dim != table->cols ||
        (size_t)n * dim > out->n)
        return NY_ERR(err, NY_E_INVALID, "cuda embed: table %zu x %zu, dim %d, %d rows",
                      table->rows, table->cols, dim, n);
    for (int r = 0; r < n; r++)
        if (ids[r] < 0 || (size_t)ids[r] >= table->rows)
            return NY_ERR(err, NY_E_RANGE, "cuda embed: id %d outside vocabulary %zu", ids[r],
                          table->rows);
    if (n == 0)
        return NY_OK;
    int rc = cuda_upload_ints(be, (int **)&be->ids_d, &be->ids_cap, ids, (size_t)n, err);
    if (rc)
        return rc;
    dim3 grid((unsigned)((dim + 255) / 256 < 16 ? (dim + 255) / 256 : 16), cuda_grid_rows(n));
    if (table->wtype == CUDA_W_BF16)
        k_embed_bf16<<<grid, 256, 0, be->stream>>>((const __nv_bfloat16 *)table->d, be->ids_d,
                                                   n, dim, (float *)out->d);
    else
        k_embed_f32<<<grid, 256, 0, be->stream>>>((const float *)table->d, be->ids_d, n, dim,
                                                  (float *)out->d);
    CU_LAUNCHED(be, "embed kernel");
    return NY_OK;
}

/* silu(x)·u, the one expression of every SwiGLU kernel here */
__device__ __forceinline__ static float swiglu1(float x, float u)
{
    return x / (1.0f + expf(-x)) * u;
}

/* v = silu(g[i]) · u[i] in fp32, stored to out[i] (fp32) and/or outb[i] (bf16, round to nearest
 * even as k_rows_to_bf16 rounds); NULL: not stored. One kernel for the swiglu op and for the
 * fused staging of swiglu_matmul, so v is the same machine arithmetic in both: the bf16 value is
 * exactly what staging the swiglu op's output gives. out may alias g. The first 4·n4 elements go
 * four at a time (16-byte loads and stores: more bytes in flight; the caller passes n4 = 0 where
 * the pointers are not aligned for it), the rest one at a time: the same v either way. */
__global__ static void k_swiglu(const float *g, const float *u, size_t n, size_t n4, float *out,
                                __nv_bfloat16 *outb)
{
    pdl_trigger();
    pdl_wait();
    const size_t id = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    const size_t stride = (size_t)gridDim.x * blockDim.x;
    for (size_t i = id; i < n4; i += stride) {
        const float4 x = reinterpret_cast<const float4 *>(g)[i];
        const float4 y = reinterpret_cast<const float4 *>(u)[i];
        const float4 v = make_float4(swiglu1(x.x, y.x), swiglu1(x.y, y.y), swiglu1(x.z, y.z),
                                     swiglu1(x.w, y.w));
        if (out)
            reinterpret_cast<float4 *>(out)[i] = v;
        if (outb) {
            __nv_bfloat162 lo = __floats2bfloat162_rn(v.x, v.y);
            __nv_bfloat162 hi = __floats2bfloat162_rn(v.z, v.w);
            reinterpret_cast<uint2 *>(outb)[i] = make_uint2(*reinterpret_cast<uint32_t *>(&lo),
                                                            *reinterpret_cast<uint32_t *>(&hi));
        }
    }
    for (size_t i = 4 * n4 + id; i < n; i += stride) {
        const float v = swiglu1(g[i], u[i]);
        if (out)
            out[i] = v;
        if (outb)
            outb[i] = __float2bfloat16_rn(v);
    }
}

static unsigned grid_for(size_t n)
{
    size_t b = (n + 255) / 256;
    return (unsigned)(b < 4096 ? (b ? b : 1) : 4096);
}

int cuda_op_swiglu(struct engine_backend *be, const struct engine_buf *gate,
                   const struct engine_buf *up, int ff, struct engine_buf *out,
                   struct ny_err *err)
{
    size_t n = (size_t)be->n_rows * ff;
    if (n > gate->n || n > up->n || n > out->n)
        return NY_ERR(err, NY_E_RANGE, "cuda swiglu: %d rows x %d outside the buffers",
                      be->n_rows, ff);
    if (n == 0)
        return NY_OK;
    return cuda_swiglu_rows(be, (const float *)gate->d, (const float *)up->d, be->n_rows, ff,
                            (float *)out->d, NULL, err);
}

int cuda_swiglu_rows(struct engine_backend *be, const float *g, const float *u, int n, int cols,
                     float *out, __nv_bfloat16 *outb, struct ny_err *err)
{
    size_t e = (size_t)(n > 0 ? n : 0) * (size_t)(cols > 0 ? cols : 0);
    if (e == 0 || (!out && !outb))
        return NY_OK;
    const uintptr_t al = (uintptr_t)g | (uintptr_t)u | (uintptr_t)out;
    const size_t e4 = al % 16 == 0 && (uintptr_t)outb % 8 == 0 ? e / 4 : 0;
    CU_LAUNCH(be, outb ? "swiglu staging kernel" : "swiglu kernel", k_swiglu,
              grid_for(e4 ? e4 : e), dim3(256), 0, g, u, e, e4, out, outb);
    return NY_OK;
}

__global__ static void k_add(float *x, const float *y, size_t n)
{
    pdl_trigger();
    pdl_wait();
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        x[i] += y[i];
}

int cuda_op_add(struct engine_backend *be, struct engine_buf *x, const struct engine_buf *y,
                int dim, struct ny_err *err)
{
    size_t n = (size_t)be->n_rows * dim;
    if (n > x->n || n > y->n)
        return NY_ERR(err, NY_E_RANGE, "cuda add: %d rows x %d outside the buffers", be->n_rows,
                      dim);
    if (n == 0)
        return NY_OK;
    CU_LAUNCH(be, "add kernel", k_add, grid_for(n), dim3(256), 0, (float *)x->d,
              (const float *)y->d, n);
    return NY_OK;
}

__global__ static void k_rows_to_bf16(const float *src, const int *idx, int n, int cols,
                                      __nv_bfloat16 *dst)
{
    pdl_trigger();
    pdl_wait();
    for (int i = blockIdx.y; i < n; i += gridDim.y) {
        const float *s = src + (size_t)(idx ? idx[i] : i) * cols;
        for (int c = blockIdx.x * blockDim.x + threadIdx.x; c < cols; c += gridDim.x * blockDim.x)
            dst[(size_t)i * cols + c] = __float2bfloat16_rn(s[c]);
    }
}

int cuda_rows_to_bf16(struct engine_backend *be, const float *src, const int *idx_d, int n,
                      int cols, __nv_bfloat16 *dst, struct ny_err *err)
{
    if (n <= 0)
        return NY_OK;
    int bx = (cols + 1023) / 1024; /* a few blocks a row, each a grid-stride share of it */
    dim3 grid((unsigned)(bx < 4 ? bx : 4), cuda_grid_rows(n));
    CU_LAUNCH(be, "bf16 staging kernel", k_rows_to_bf16, grid, dim3(256), 0, src, idx_d, n, cols,
              dst);
    return NY_OK;
}

/* ---- random weights for the benchmark: uniform in [-scale, scale), from (seed, index) -------- */
__device__ static uint64_t splitmix64(uint64_t z)
{
    z += 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* w[i, j] (i < rows, j < cols) = element (row0 + i, col0 + j) of a virtual matrix of width
 * full_cols: drawn from (seed, (row0 + i) * full_cols + col0 + j) alone. */
__global__ static void k_random_bf16(__nv_bfloat16 *w, size_t rows, size_t cols, size_t row0,
                                     size_t col0, size_t full_cols, uint64_t seed, float scale)
{
    size_t n = rows * cols;
    for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < n;
         e += (size_t)gridDim.x * blockDim.x) {
        size_t i = e / cols, j = e - i * cols;
        uint64_t g = (uint64_t)(row0 + i) * full_cols + col0 + j;
        uint64_t h = splitmix64(seed * 0x100000001b3ull + g);
        float u = (float)(h >> 40) * (1.0f / 16777216.0f); /* [0, 1) */
        w[e] = __float2bfloat16_rn((2.0f * u - 1.0f) * scale);
    }
}

int cuda_op_weight_random(struct engine_backend *be, size_t rows, size_t cols, size_t row0,
                          size_t col0, size_t full_cols, uint64_t seed, float scale,
                          struct engine_buf **out, struct ny_err *err)
{
    size_t n, end;
    if (ny_mul_overflow(rows, cols, &n) || n == 0 || n > SIZE_MAX / 2 || col0 > full_cols ||
        cols > full_cols - col0 || row0 > SIZE_MAX - rows ||
        ny_mul_overflow(row0 + rows, full_cols, &end))
        return NY_ERR(err, NY_E_RANGE,
                      "cuda: random weight block %zu x %zu at (%zu, %zu) of width %zu", rows, cols,
                      row0, col0, full_cols);
    struct engine_buf *b = (struct engine_buf *)ny_calloc(1, sizeof *b);
    if (!b)
        return NY_ERR(err, NY_E_NOMEM, "cuda: out of memory");
    cudaError_t e = cudaMalloc(&b->d, n * 2);
    if (e != cudaSuccess) {
        ny_free(b);
        return NY_ERR(err, NY_E_DEVICE, "cuda: cannot allocate a %zu x %zu weight: %s", rows,
                      cols, cudaGetErrorString(e));
    }
    b->n = n;
    b->wtype = CUDA_W_BF16;
    b->rows = rows;
    b->cols = cols;
    k_random_bf16<<<4096, 256, 0, be->stream>>>((__nv_bfloat16 *)b->d, rows, cols, row0, col0,
                                                full_cols, seed, scale);
    e = cudaGetLastError();
    if (e != cudaSuccess) {
        cudaFree(b->d);
        ny_free(b);
        return cuda_fail(be, err, __FILE__, __LINE__, "random weight kernel",
                         cudaGetErrorString(e));
    }
    be->n_bf16_weights++;
    *out = b;
    return NY_OK;
}

/* The whole matrix: the block at (0, 0) of width cols (same values as before the op existed). */
extern "C" int engine_cuda_weight_random(struct engine_backend *be, size_t rows, size_t cols,
                                         uint64_t seed, float scale, struct engine_buf **out,
                                         struct ny_err *err)
{
    return engine_cuda_ops.weight_random(be, rows, cols, 0, 0, cols, seed, scale, out, err);
}

/* Test helper: a weight's values in fp32 (bf16 widened exactly). */
extern "C" int engine_cuda_weight_read(struct engine_backend *be, const struct engine_buf *w,
                                       float *dst, struct ny_err *err)
{
    if (w->wtype == CUDA_W_NONE)
        return NY_ERR(err, NY_E_INVALID, "cuda: weight_read of an activation buffer");
    CU_CHECK(be, cudaSetDevice(be->device), "cudaSetDevice");
    if (w->wtype == CUDA_W_F32)
        return cuda_read_host(be, dst, w->d, w->n * sizeof(float), "weight read", err);
    uint16_t *h = (uint16_t *)ny_malloc(w->n * 2);
    if (!h)
        return NY_ERR(err, NY_E_NOMEM, "cuda: out of memory");
    int rc = cuda_read_host(be, h, w->d, w->n * 2, "weight read", err);
    for (size_t i = 0; rc == NY_OK && i < w->n; i++) {
        uint32_t u = (uint32_t)h[i] << 16;
        memcpy(&dst[i], &u, 4);
    }
    ny_free(h);
    return rc;
}
