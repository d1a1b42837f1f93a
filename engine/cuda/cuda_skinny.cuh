/* cuda_skinny.cuh — the skinny tensor-core scheme's shared pieces (cuda_gemm_rows.cu's kernels
 * and cuda_gemm_rows_xb.cu's): a launch's parts, the block's part, wide tiles' W loads and the
 * warp-order store. One definition, so every skinny kernel computes an element the same way. */
#ifndef NY_CUDA_SKINNY_CUH
#define NY_CUDA_SKINNY_CUH

#include "cuda_int.cuh"
#include "cuda_mma.cuh"

#define SK_WARPS 8
#define SK_COLS 8

/* One launch serves up to SK_MAX_PARTS independent products, each over its own rows (rows
 * in_idx[i] of X -> rows out_idx[i] of Y, i < M; NULL lists = identity): blocks [tile0, next
 * tile0) of the grid's x belong to part p, and a block whose row tile starts at or past its
 * part's M leaves at once. A part's arithmetic is exactly that of a launch of its own. */
#define SK_MAX_PARTS 8
#define SK_SHORT_K 256 /* products of K <= this: k_skinny_short */
struct sk_part {
    const float *X;
    const __nv_bfloat16 *Xb; /* X's rows staged in bf16 (row i: X row in_idx[i]), or NULL */
    const __nv_bfloat16 *W;
    float *Y;
    const int *in_idx, *out_idx;
    int K, N, ldy, tile0, M;
    float alpha;
};
struct sk_parts {
    struct sk_part p[SK_MAX_PARTS];
    int n;
};

/* The part block column blockIdx.x belongs to. */
__device__ __forceinline__ static struct sk_part sk_select(const struct sk_parts &P)
{
    struct sk_part pt = P.p[0];
#pragma unroll
    for (int i = 1; i < SK_MAX_PARTS; i++)
        if (i < P.n && (int)blockIdx.x >= P.p[i].tile0)
            pt = P.p[i];
    return pt;
}

/* Wide tiles (a block computes NT 8-column tiles): this lane's 16 bytes of W of each tile for the
 * k-blocks b0 + u·SK_WARPS, u < U (zeros past the end or past N). */
template <int U, int NT>
__device__ __forceinline__ static void load_w_wide(uint4 (&wv)[U][NT],
                                                   const __nv_bfloat16 *const (&wp)[NT], int b0,
                                                   int nb, int K, int t, const bool (&ok)[NT])
{
#pragma unroll
    for (int u = 0; u < U; u++)
#pragma unroll
        for (int nt = 0; nt < NT; nt++) {
            int b = b0 + u * SK_WARPS, k = b * 32 + t * 8;
            wv[u][nt] = make_uint4(0, 0, 0, 0);
            if (ok[nt] && b < nb && k < K)
                wv[u][nt] = __ldg((const uint4 *)(wp[nt] + (size_t)b * 32));
        }
}

/* A wide block's part, first row m0 and column n0, and this lane's W row (row g of each of the
 * NT tiles) with whether it exists; false when the block is past its part's rows. */
template <int MT, int NT>
__device__ __forceinline__ static bool sk_wide_begin(const struct sk_parts &P, int row0,
                                                     struct sk_part &pt, int &m0, int &n0,
                                                     const __nv_bfloat16 *(&wp)[NT],
                                                     bool (&ok)[NT])
{
    const int g = (threadIdx.x % 32) / 4, t = threadIdx.x % 4;
    pt = sk_select(P);
    n0 = ((int)blockIdx.x - pt.tile0) * SK_COLS * NT;
    m0 = row0 + blockIdx.y * 16 * MT;
#pragma unroll
    for (int nt = 0; nt < NT; nt++) {
        ok[nt] = n0 + nt * SK_COLS + g < pt.N;
        wp[nt] = pt.W + (size_t)(ok[nt] ? n0 + nt * SK_COLS + g : 0) * pt.K + t * 8;
    }
    return m0 < pt.M;
}

/* The wide kernels' end: each element of the MT x NT tiles the 8 warps' partials summed in warp
 * order (through red), stored. */
template <int MT, int NT>
__device__ __forceinline__ static void sk_wide_store(float (*red)[MT * NT][32][4],
                                                     const float (&acc)[MT * NT][4],
                                                     const struct sk_part &pt, int m0, int n0,
                                                     float beta)
{
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
#pragma unroll
    for (int i = 0; i < MT * NT; i++)
#pragma unroll
        for (int j = 0; j < 4; j++)
            red[warp][i][lane][j] = acc[i][j];
    __syncthreads();
    for (int e = threadIdx.x; e < MT * NT * 128; e += SK_WARPS * 32) {
        int row, col, i = e / 128, mt = i / NT, nt = i % NT;
        float s = cuda_tile_sum<MT * NT, SK_WARPS>(red, e, &row, &col);
        row += (mt - i) * 16; /* tile_sum's row counts the tiles i; ours are (mt, nt) */
        col += nt * SK_COLS;
        if (m0 + row < pt.M && n0 + col < pt.N)
            cuda_store_y(pt.Y, pt.ldy, pt.out_idx, m0 + row, n0 + col, pt.alpha, s, beta);
    }
}

/* Each part's first block column for blocks of `cols` output columns; the grid's width. */
static inline int sk_tiles(struct sk_parts &P, int cols)
{
    int tiles = 0;
    for (int i = 0; i < P.n; i++) {
        P.p[i].tile0 = tiles;
        tiles += (P.p[i].N + cols - 1) / cols;
    }
    return tiles;
}

/* 16 bytes from global src into shared dst, asynchronously (cp.async); zeros when !ok. */
__device__ __forceinline__ static void sk_cp16(unsigned dst, const void *src, bool ok)
{
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src),
                 "r"(ok ? 16 : 0)
                 : "memory");
}

/* Whether a launch of `rows` rows, deepest product kmax and `cols` columns in all reads its X
 * staged in bf16 (cuda_gemm_rows_xb.cu); stage the parts' X or take the bf16 shadow where it
 * mirrors a part's X (sets each part's Xb); launch the staged kernel. */
int cuda_skinny_xb_wanted(int rows, int kmax, int cols);
int cuda_skinny_xb_stage(struct engine_backend *be, struct sk_parts &P, struct ny_err *err);
int cuda_skinny_xb_launch(struct engine_backend *be, int mt, struct sk_parts &P, int passes,
                          int row0, float beta, struct ny_err *err);

#endif
