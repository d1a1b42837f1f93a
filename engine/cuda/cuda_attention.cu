/* cuda_attention.cu — causal grouped-query attention over the paged KV cache.
 *
 * A step first stores its k/v rows at their slots and positions (pages of CUDA_KV_PAGE tokens,
 * bf16 or fp32), then every q row attends over positions 0..pos of its slot in fixed splits of
 * ATT_SPLIT positions: one block per (split, kv head, row) computes, for the kv head's group of
 * q heads, the split's max, sum of exponentials and weighted value sum (positions in order,
 * dot products by a fixed shuffle tree); a second kernel combines the splits in split order.
 * The number of splits depends only on the row's own position, so a row's result never depends
 * on the rest of the batch. Softmax in fp32 with max subtraction; expf/sqrtf are the precise ones.
 */
#include <math.h>

#include "cuda_int.cuh"

#define ATT_SPLIT 256
#define ATT_THREADS 128
#define ATT_MAX_GROUP 16
#define ATT_MAX_DIM 256

__device__ __forceinline__ static float kv_load(const float *p) { return *p; }
__device__ __forceinline__ static float kv_load(const __nv_bfloat16 *p) { return __bfloat162float(*p); }
__device__ __forceinline__ static void kv_store(float *p, float v) { *p = v; }
__device__ __forceinline__ static void kv_store(__nv_bfloat16 *p, float v) { *p = __float2bfloat16_rn(v); }

/* Offset of (layer, token pos of slot, kv head h, dim 0) in the pool. */
__device__ __forceinline__ static size_t kv_off(const int *table, int pps, int n_pages, int layer,
                                                int slot, int pos, int nkv, int D, int h)
{
    int page = table[slot * pps + pos / CUDA_KV_PAGE];
    return ((((size_t)layer * n_pages + page) * CUDA_KV_PAGE + pos % CUDA_KV_PAGE) * nkv + h) *
           (size_t)D;
}

template <typename T>
__global__ static void k_kv_store(const float *k, const float *v, const int *row_slot,
                                  const int *row_pos, const int *table, int pps, int n_pages,
                                  int layer, int nkv, int D, T *K, T *V)
{
    int r = blockIdx.x, h = blockIdx.y;
    size_t o = kv_off(table, pps, n_pages, layer, row_slot[r], row_pos[r], nkv, D, h);
    for (int d = threadIdx.x; d < D; d += blockDim.x) {
        kv_store(K + o + d, k[((size_t)r * nkv + h) * D + d]);
        kv_store(V + o + d, v[((size_t)r * nkv + h) * D + d]);
    }
}

/* Partial results: ws[((r * n_heads + head) * max_splits + split) * (D + 2) + {0: m, 1: l, 2..}] */
template <typename T>
__global__ __launch_bounds__(ATT_THREADS) static void k_att_partial(
    const float *q, const int *row_slot, const int *row_pos, const int *table, int pps,
    int n_pages, int layer, int n_heads, int nkv, int D, float scale, const T *K, const T *V,
    int max_splits, float *ws)
{
    __shared__ float qs[ATT_MAX_GROUP * ATT_MAX_DIM];
    __shared__ float ps[ATT_MAX_GROUP][ATT_SPLIT];
    __shared__ float red[ATT_THREADS / 32];
    const int split = blockIdx.x, h = blockIdx.y, r = blockIdx.z;
    const int G = n_heads / nkv, len = row_pos[r] + 1, j0 = split * ATT_SPLIT;
    if (j0 >= len)
        return;
    const int n = len - j0 < ATT_SPLIT ? len - j0 : ATT_SPLIT;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, slot = row_slot[r];
    for (int i = threadIdx.x; i < G * D; i += ATT_THREADS)
        qs[i] = q[((size_t)r * n_heads + h * G) * D + i];
    __syncthreads();
    /* scores: warp w takes positions w, w + 4, ...; lanes over d in order, then a shuffle tree */
    for (int j = warp; j < n; j += ATT_THREADS / 32) {
        const T *kp = K + kv_off(table, pps, n_pages, layer, slot, j0 + j, nkv, D, h);
        for (int g = 0; g < G; g++) {
            float s = 0.0f;
            for (int d = lane; d < D; d += 32)
                s += qs[g * D + d] * kv_load(kp + d);
            for (int o = 16; o > 0; o >>= 1)
                s += __shfl_xor_sync(0xffffffffu, s, o);
            if (lane == 0)
                ps[g][j] = scale * s;
        }
    }
    __syncthreads();
    float *base = ws + (((size_t)r * n_heads + h * G) * max_splits + split) * (D + 2);
    for (int g = 0; g < G; g++) {
        /* max then sum of exp over the split, each by a fixed tree */
        float m = -INFINITY;
        for (int j = threadIdx.x; j < n; j += ATT_THREADS)
            m = fmaxf(m, ps[g][j]);
        for (int o = 16; o > 0; o >>= 1)
            m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, o));
        if (lane == 0)
            red[warp] = m;
        __syncthreads();
        m = red[0];
        for (int w = 1; w < ATT_THREADS / 32; w++)
            m = fmaxf(m, red[w]);
        __syncthreads();
        float l = 0.0f;
        for (int j = threadIdx.x; j < n; j += ATT_THREADS) {
            float e = expf(ps[g][j] - m);
            ps[g][j] = e;
            l += e;
        }
        for (int o = 16; o > 0; o >>= 1)
            l += __shfl_xor_sync(0xffffffffu, l, o);
        if (lane == 0)
            red[warp] = l;
        __syncthreads();
        l = 0.0f;
        for (int w = 0; w < ATT_THREADS / 32; w++)
            l += red[w];
        __syncthreads();
        if (threadIdx.x == 0) {
            float *b = base + (size_t)g * max_splits * (D + 2);
            b[0] = m;
            b[1] = l;
        }
    }
    __syncthreads();
    /* weighted values: each (g, d) summed over the split's positions in order */
    for (int e = threadIdx.x; e < G * D; e += ATT_THREADS) {
        int g = e / D, d = e % D;
        float acc = 0.0f;
        for (int j = 0; j < n; j++)
            acc += ps[g][j] *
                   kv_load(V + kv_off(table, pps, n_pages, layer, slot, j0 + j, nkv, D, h) + d);
        base[(size_t)g * max_splits * (D + 2) + 2 + d] = acc;
    }
}

__global__ static void k_att_combine(const float *ws, const int *row_pos, int n_heads, int D,
                                     int max_splits, float *out)
{
    int head = blockIdx.x, r = blockIdx.y;
    int ns = (row_pos[r] + ATT_SPLIT) / ATT_SPLIT; /* ceil((pos + 1) / ATT_SPLIT) */
    const float *b = ws + ((size_t)r * n_heads + head) * max_splits * (D + 2);
    float M = -INFINITY;
    for (int s = 0; s < ns; s++)
        M = fmaxf(M, b[(size_t)s * (D + 2)]);
    float L = 0.0f;
    for (int s = 0; s < ns; s++)
        L += expf(b[(size_t)s * (D + 2)] - M) * b[(size_t)s * (D + 2) + 1];
    for (int d = threadIdx.x; d < D; d += blockDim.x) {
        float a = 0.0f;
        for (int s = 0; s < ns; s++)
            a += expf(b[(size_t)s * (D + 2)] - M) * b[(size_t)s * (D + 2) + 2 + d];
        out[((size_t)r * n_heads + head) * D + d] = a / L;
    }
}

int cuda_op_attention(struct engine_backend *be, struct engine_kv *kv, int layer,
                      const struct engine_buf *q, const struct engine_buf *k,
                      const struct engine_buf *v, int n_heads, float scale,
                      struct engine_buf *out, struct ny_err *err)
{
    const struct engine_kv_shape *sh = &kv->shape;
    int nr = be->n_rows, nkv = sh->n_kv_heads, D = sh->head_dim;
    if (layer < 0 || layer >= sh->n_layers || n_heads <= 0 || n_heads % nkv ||
        n_heads / nkv > ATT_MAX_GROUP || D > ATT_MAX_DIM ||
        (size_t)nr * n_heads * D > q->n || (size_t)nr * n_heads * D > out->n ||
        (size_t)nr * nkv * D > k->n || (size_t)nr * nkv * D > v->n)
        return NY_ERR(err, NY_E_INVALID,
                      "cuda attention: %d heads over %d kv heads of %d (layer %d) unsupported",
                      n_heads, nkv, D, layer);
    if (nr == 0)
        return NY_OK;
    int rc = cuda_kv_map_step(be, kv, err);
    if (rc)
        return rc;
    int max_splits = 1;
    for (int s = 0; s < be->n_seqs; s++) {
        int last = be->seq_pos0_h[s] + (be->seq_start_h[s + 1] - be->seq_start_h[s]) - 1;
        int ns = last / ATT_SPLIT + 1;
        if (be->seq_start_h[s + 1] > be->seq_start_h[s] && ns > max_splits)
            max_splits = ns;
    }
    size_t wsz = (size_t)nr * n_heads * max_splits * (D + 2) * sizeof(float);
    if (be->attn_ws_size < wsz) {
        CU_CHECK(be, cudaStreamSynchronize(be->stream), "sync before workspace growth");
        cudaFree(be->attn_ws);
        be->attn_ws = NULL;
        be->attn_ws_size = 0;
        CU_CHECK(be, cudaMalloc((void **)&be->attn_ws, wsz), "cudaMalloc attention workspace");
        be->attn_ws_size = wsz;
    }
    dim3 gs((unsigned)nr, (unsigned)nkv);
    dim3 gp((unsigned)max_splits, (unsigned)nkv, (unsigned)nr);
    int tb = D < 128 ? 64 : 128;
    if (kv->bf16) {
        k_kv_store<__nv_bfloat16><<<gs, tb, 0, be->stream>>>(
            (const float *)k->d, (const float *)v->d, be->row_slot_d, be->row_pos_d, kv->table_d,
            kv->pages_per_slot, kv->n_pages, layer, nkv, D, (__nv_bfloat16 *)kv->k,
            (__nv_bfloat16 *)kv->v);
        CU_LAUNCHED(be, "kv store kernel");
        k_att_partial<__nv_bfloat16><<<gp, ATT_THREADS, 0, be->stream>>>(
            (const float *)q->d, be->row_slot_d, be->row_pos_d, kv->table_d, kv->pages_per_slot,
            kv->n_pages, layer, n_heads, nkv, D, scale, (const __nv_bfloat16 *)kv->k,
            (const __nv_bfloat16 *)kv->v, max_splits, be->attn_ws);
    } else {
        k_kv_store<float><<<gs, tb, 0, be->stream>>>(
            (const float *)k->d, (const float *)v->d, be->row_slot_d, be->row_pos_d, kv->table_d,
            kv->pages_per_slot, kv->n_pages, layer, nkv, D, (float *)kv->k, (float *)kv->v);
        CU_LAUNCHED(be, "kv store kernel");
        k_att_partial<float><<<gp, ATT_THREADS, 0, be->stream>>>(
            (const float *)q->d, be->row_slot_d, be->row_pos_d, kv->table_d, kv->pages_per_slot,
            kv->n_pages, layer, n_heads, nkv, D, scale, (const float *)kv->k,
            (const float *)kv->v, max_splits, be->attn_ws);
    }
    CU_LAUNCHED(be, "attention kernel");
    k_att_combine<<<dim3((unsigned)n_heads, (unsigned)nr), tb, 0, be->stream>>>(
        be->attn_ws, be->row_pos_d, n_heads, D, max_splits, (float *)out->d);
    CU_LAUNCHED(be, "attention combine kernel");
    return NY_OK;
}
