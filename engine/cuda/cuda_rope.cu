/* cuda_rope.cu — rotary embedding in place, Hugging Face rotate_half pairing (i, i + half); the
 * angle (float)pos * inv_freq[i] and its cos/sin in fp32 (precise cosf/sinf, no fast math). rope
 * and rope_qk launch the same kernel (rope with no second tensor), so rope_qk is bit-identical to
 * two rope calls by construction. */
#include <string.h>

#include "cuda_int.cuh"

/* Block (r, y): row r's angles (float)pos * inv_freq[i] and their cos/sin once, into shared
 * memory, then every pair (i, i + half) of its share of the row's heads: heads [y·hpb, +hpb) of
 * the n_a heads of a followed by the n_b heads of b (each value as computed per head: the same
 * cosf/sinf of the same angle, the same products; the grid only shares out the work). */
__global__ static void k_rope(float *a, int n_a, float *b, int n_b, const int *pos, int head_dim,
                              const float *inv_freq, float af)
{
    __shared__ float cs[512], sn[512];
    pdl_trigger();
    pdl_wait();
    const int r = blockIdx.x, half = head_dim / 2;
    const float p = (float)pos[r];
    for (int i = threadIdx.x; i < half; i += blockDim.x) {
        float an = p * inv_freq[i];
        cs[i] = cosf(an) * af;
        sn[i] = sinf(an) * af;
    }
    __syncthreads();
    const int nt = n_a + n_b, hpb = (nt + gridDim.y - 1) / gridDim.y, h0 = blockIdx.y * hpb;
    const int total = min(hpb, nt - h0) * half;
    for (int e = threadIdx.x; e < total; e += blockDim.x) {
        int h = h0 + e / half, i = e % half;
        float *v = h < n_a ? a + ((size_t)r * n_a + h) * head_dim
                           : b + ((size_t)r * n_b + (h - n_a)) * head_dim;
        float c = cs[i], s = sn[i], x1 = v[i], x2 = v[i + half];
        v[i] = x1 * c - x2 * s;
        v[i + half] = x2 * c + x1 * s;
    }
}

/* Checks the shape of one tensor of n_heads heads of head_dim in buffer x. */
static int rope_check(struct engine_backend *be, const char *op, const struct engine_buf *x,
                      int n_heads, int head_dim, struct ny_err *err)
{
    if (head_dim <= 0 || head_dim % 2 || head_dim / 2 > 512 || n_heads <= 0 ||
        n_heads > 32767 || (size_t)be->n_rows * n_heads * head_dim > x->n)
        return NY_ERR(err, NY_E_INVALID, "cuda %s: %d heads x %d outside the buffer", op,
                      n_heads, head_dim);
    return NY_OK;
}

/* Rotate a's n_a heads and b's n_b heads (b NULL, n_b 0: a only) of every row in one launch. */
static int rope_launch(struct engine_backend *be, float *a, int n_a, float *b, int n_b,
                       int head_dim, const float *inv_freq, float attn_factor, const char *what,
                       struct ny_err *err)
{
    int half = head_dim / 2;
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
    /* decode steps (few rows): a block a head, as wide as the work; prefill: a block a row */
    int few = be->n_rows <= 64;
    dim3 grid((unsigned)be->n_rows, (unsigned)(few ? n_a + n_b : 1));
    CU_LAUNCH(be, what, k_rope, grid, dim3(few ? (half < 128 ? 64 : 128) : 256), 0, a, n_a, b,
              n_b, be->row_pos_d, head_dim, be->inv_freq_d, attn_factor);
    return NY_OK;
}

int cuda_op_rope(struct engine_backend *be, struct engine_buf *x, int n_heads, int head_dim,
                 const float *inv_freq, float attn_factor, struct ny_err *err)
{
    int rc = rope_check(be, "rope", x, n_heads, head_dim, err);
    return rc ? rc
              : rope_launch(be, (float *)x->d, n_heads, NULL, 0, head_dim, inv_freq, attn_factor,
                            "rope kernel", err);
}

int cuda_op_rope_qk(struct engine_backend *be, struct engine_buf *q, int n_q_heads,
                    struct engine_buf *k, int n_k_heads, int head_dim, const float *inv_freq,
                    float attn_factor, struct ny_err *err)
{
    int rc = rope_check(be, "rope_qk (q)", q, n_q_heads, head_dim, err);
    if (!rc)
        rc = rope_check(be, "rope_qk (k)", k, n_k_heads, head_dim, err);
    if (rc)
        return rc;
    if (q->d == k->d)
        return NY_ERR(err, NY_E_INVALID, "cuda rope_qk: q and k are the same buffer");
    return rope_launch(be, (float *)q->d, n_q_heads, (float *)k->d, n_k_heads, head_dim,
                       inv_freq, attn_factor, "rope_qk kernel", err);
}
