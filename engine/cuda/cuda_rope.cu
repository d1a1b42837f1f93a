/* cuda_rope.cu — rotary embedding in place, Hugging Face rotate_half pairing (i, i + half); the
 * angle (float)pos * inv_freq[i] and its cos/sin in fp32 (precise cosf/sinf, no fast math). */
#include <string.h>

#include "cuda_int.cuh"

__global__ static void k_rope(float *x, const int *pos, int n_heads, int head_dim,
                              const float *inv_freq, float af)
{
    int r = blockIdx.x, h = blockIdx.y, half = head_dim / 2;
    float *v = x + ((size_t)r * n_heads + h) * head_dim;
    float p = (float)pos[r];
    for (int i = threadIdx.x; i < half; i += blockDim.x) {
        float a = p * inv_freq[i];
        float c = cosf(a) * af, s = sinf(a) * af;
        float x1 = v[i], x2 = v[i + half];
        v[i] = x1 * c - x2 * s;
        v[i + half] = x2 * c + x1 * s;
    }
}

int cuda_op_rope(struct engine_backend *be, struct engine_buf *x, int n_heads, int head_dim,
                 const float *inv_freq, float attn_factor, struct ny_err *err)
{
    int half = head_dim / 2;
    if (head_dim <= 0 || head_dim % 2 || half > 512 || n_heads <= 0 ||
        (size_t)be->n_rows * n_heads * head_dim > x->n)
        return NY_ERR(err, NY_E_INVALID, "cuda rope: %d heads x %d outside the buffer", n_heads,
                      head_dim);
    if (be->n_rows == 0)
        return NY_OK;
    if (!be->inv_freq_d)
        CU_CHECK(be, cudaMalloc((void **)&be->inv_freq_d, 512 * sizeof(float)), "cudaMalloc");
    if (be->inv_freq_n != half || memcmp(be->inv_freq_h, inv_freq, half * sizeof(float))) {
        memcpy(be->inv_freq_h, inv_freq, half * sizeof(float));
        be->inv_freq_n = half;
        CU_CHECK(be, cudaMemcpyAsync(be->inv_freq_d, be->inv_freq_h, half * sizeof(float),
                                     cudaMemcpyHostToDevice, be->stream), "upload inv_freq");
    }
    dim3 grid((unsigned)be->n_rows, (unsigned)n_heads);
    k_rope<<<grid, half < 128 ? 64 : 128, 0, be->stream>>>((float *)x->d, be->row_pos_d, n_heads,
                                                           head_dim, be->inv_freq_d, attn_factor);
    CU_LAUNCHED(be, "rope kernel");
    return NY_OK;
}
