/* cuda_att.cuh — what the attention kernels share (cuda_attention.cu: the kv store, the decode
 * split kernel, its combine and the flash prefill; cuda_att_decode.cu: the decode split kernel on
 * the tensor cores): the KV pool's addressing and rounding, the split length, ldmatrix. */
#ifndef NY_CUDA_ATT_CUH
#define NY_CUDA_ATT_CUH

#include "cuda_int.cuh"
#include "cuda_mma.cuh"

/* Decode attends over a row's positions in splits of ATT_SPLIT (a split's partials: the
 * workspace of cuda_attention.cu's decode section, combined in split order). */
#define ATT_SPLIT 32

/* A cache element's value of v (kv_store's rounding; the pointer only picks the type). */
__device__ __forceinline__ static float kv_round(float v, const float *) { return v; }
__device__ __forceinline__ static __nv_bfloat16 kv_round(float v, const __nv_bfloat16 *)
{
    return __float2bfloat16_rn(v);
}

/* Offset of (layer, token pos of slot, kv head h, dim 0) in the pool. */
__device__ __forceinline__ static size_t kv_off(const int *table, int pps, int n_pages, int layer,
                                                int slot, int pos, int nkv, int D, int h)
{
    int page = table[slot * pps + pos / CUDA_KV_PAGE];
    return ((((size_t)layer * n_pages + page) * CUDA_KV_PAGE + pos % CUDA_KV_PAGE) * nkv + h) *
           (size_t)D;
}

/* Four 8x8 bf16 matrices from shared memory (lanes 8j .. 8j + 7 give matrix j's row addresses);
 * lane (g, t) receives row g, columns 2t, 2t + 1 of each (TRANS: of each one transposed). */
template <bool TRANS>
__device__ __forceinline__ static void cuda_ldsm_x4(unsigned addr, uint32_t &r0, uint32_t &r1,
                                                    uint32_t &r2, uint32_t &r3)
{
    if (TRANS)
        asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                     : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)
                     : "r"(addr));
    else
        asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                     : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)
                     : "r"(addr));
}

/* The decode partials of rows z0 .. z0 + c - 1 of the row list (NULL: identity) over a bf16
 * cache on the tensor cores (cuda_att_decode.cu): k_att_partial's inputs and workspace. Returns
 * 1 once launched, 0 when it does not take the shape (an fp32 cache, head_dim other than 64 and
 * 128, groups of fewer than 8 q heads, or NY_ATT_TC=0: the caller runs k_att_partial), < 0 on
 * error. */
int cuda_att_partial_tc(struct engine_backend *be, const struct engine_kv *kv, int layer,
                        const float *q, const int *list, int n_heads, float scale,
                        int max_splits, float *acc, float *ml, int z0, unsigned c,
                        const float *knew, const float *vnew, struct ny_err *err);

/* The flash prefill (cuda_att_prefill.cu) of the step's units (requests of >= 2 rows) over a
 * bf16 cache, head_dim 64 or 128 (their k/v rows stored already): out [rows][n_heads · D] and,
 * when ob is given, its bf16 shadow. */
int cuda_flash_prefill(struct engine_backend *be, const struct engine_kv *kv, int layer,
                       const float *q, int n_heads, float scale, float *out, __nv_bfloat16 *ob,
                       struct ny_err *err);

#endif
