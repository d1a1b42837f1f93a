/* cuda_mma.cuh — the tensor-core building blocks shared by the GEMM and attention kernels:
 * one mma.sync m16n8k16 (bf16 operands, fp32 accumulators in place), fp32 pairs rounded to a
 * packed bf16x2 operand register, 8 consecutive fp32 (32-byte aligned) as an operand's 4
 * registers, and the skinny scheme's row pointers, k-block step and warp-order tile sum. One
 * definition, so every kernel rounds, multiplies and sums the same way. */
#ifndef NY_CUDA_MMA_CUH
#define NY_CUDA_MMA_CUH

#include <cuda_bf16.h>
#include <stdint.h>

__device__ __forceinline__ static void cuda_mma_bf16(float *d, uint32_t a0, uint32_t a1,
                                                     uint32_t a2, uint32_t a3, uint32_t b0,
                                                     uint32_t b1)
{
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
                 "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

__device__ __forceinline__ static uint32_t cuda_pack_bf16x2(float lo, float hi)
{
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<uint32_t *>(&v);
}

__device__ __forceinline__ static uint4 cuda_load_x8(const float *p)
{
    float4 a = *reinterpret_cast<const float4 *>(p), b = *reinterpret_cast<const float4 *>(p + 4);
    return make_uint4(cuda_pack_bf16x2(a.x, a.y), cuda_pack_bf16x2(a.z, a.w),
                      cuda_pack_bf16x2(b.x, b.y), cuda_pack_bf16x2(b.z, b.w));
}

/* ---- the skinny scheme's per-lane pieces (k_skinny, k_skinny_ring, k_skinny_wide) ---------------
 * A block computes an 8-column tile for MT 16-row tiles; lane (g = lane / 4, t = lane % 4) of a
 * warp feeds rows g and g + 8 of each row tile with the 8 k at 32·b + 8·t of k-block b. */

/* This lane's X row pointers (at its 8·t offset), NULL past row M; in_idx NULL = identity. */
template <int MT>
__device__ __forceinline__ static void cuda_tile_rows(const float *(&xr)[MT][2], const float *X,
                                                      const int *in_idx, int m0, int M, int K,
                                                      int g, int t)
{
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
#pragma unroll
        for (int h = 0; h < 2; h++) {
            int r = m0 + mt * 16 + g + 8 * h;
            xr[mt][h] = r < M ? X + (size_t)(in_idx ? in_idx[r] : r) * K + t * 8 : NULL;
        }
}

/* acc[nt] += one k-block's two mma steps for each of NT 8-column tiles: X fragments x0 (row g)
 * and x1 (row g + 8) of one row tile, this lane's 16 bytes of W of each tile. */
template <int NT>
__device__ __forceinline__ static void cuda_tile_mma(float (*acc)[4], uint4 x0, uint4 x1,
                                                     const uint4 *w)
{
#pragma unroll
    for (int nt = 0; nt < NT; nt++) {
        cuda_mma_bf16(acc[nt], x0.x, x1.x, x0.y, x1.y, w[nt].x, w[nt].y);
        cuda_mma_bf16(acc[nt], x0.z, x1.z, x0.w, x1.w, w[nt].z, w[nt].w);
    }
}

/* acc[mt·NT + nt] += the products of k-block b (k = 32·b + 8·t; zeros past K or past the rows)
 * with this lane's 16 bytes of W of each of NT column tiles: two mma steps per pair. */
template <int MT, int NT>
__device__ __forceinline__ static void cuda_tile_kblock(float (&acc)[MT * NT][4],
                                                        const float *const (&xr)[MT][2], int b,
                                                        int k, int K, const uint4 (&w)[NT])
{
#pragma unroll
    for (int mt = 0; mt < MT; mt++) {
        uint4 x0 = make_uint4(0, 0, 0, 0), x1 = make_uint4(0, 0, 0, 0);
        if (k < K && xr[mt][0])
            x0 = cuda_load_x8(xr[mt][0] + (size_t)b * 32);
        if (k < K && xr[mt][1])
            x1 = cuda_load_x8(xr[mt][1] + (size_t)b * 32);
        cuda_tile_mma<NT>(&acc[mt * NT], x0, x1, w);
    }
}

/* Element e (< MT·128) of a block's tile: the W warps' partials red[w][mt][l][j] summed in warp
 * order; *row and *col its place in the tile (rows 0..16·MT-1, columns 0..7). */
template <int MT, int W>
__device__ __forceinline__ static float cuda_tile_sum(const float (*red)[MT][32][4], int e,
                                                      int *row, int *col)
{
    int mt = e / 128, l = (e / 4) % 32, j = e % 4;
    float s = 0.0f;
    for (int w = 0; w < W; w++)
        s += red[w][mt][l][j];
    *row = mt * 16 + l / 4 + (j >= 2 ? 8 : 0);
    *col = 2 * (l % 4) + (j & 1);
    return s;
}

/* Y[out_idx ? out_idx[row] : row][col] = alpha · s (+ beta · Y when beta != 0). */
__device__ __forceinline__ static void cuda_store_y(float *Y, int ldy, const int *out_idx, int row,
                                                    int col, float alpha, float s, float beta)
{
    float *yp = Y + (size_t)(out_idx ? out_idx[row] : row) * ldy + col;
    float v = alpha * s;
    if (beta != 0.0f)
        v += beta * *yp;
    *yp = v;
}

#endif
