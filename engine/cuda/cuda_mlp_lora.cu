/* cuda_mlp_lora.cu — the staging of down's input for a prefill unit whose gate and up carry an
 * adapter: bf16(silu(g) · u) with g = G + sg · (Tg · Bgᵀ) and u = U + su · (Tu · Buᵀ), where G and
 * U are the base products (fp32, from cuBLASLt) and Tg, Tu the unit's bf16(x · Aᵀ) rows. The
 * LoRA terms are added where the swiglu reads them instead of being written as fp32 products and
 * read back by the base GEMMs (2 × 117 MB a layer each way at 2,048 rows of the 8B shape).
 * A row's arithmetic depends only on its own values: each output element's LoRA term is one
 * mma chain over the rank in k order (mma.sync m16n8k16, bf16 operands, fp32 accumulate), then
 * fl(G + fl(sg · term)), then k_swiglu's expression. */
#include <math.h>

#include "cuda_int.cuh"
#include "cuda_mma.cuh"

#define SL_COLS 64 /* a block: 64 columns (8 mma tiles) of 64 rows, 16 rows a warp */
#define SL_ROWS 64

/* 16 bytes global -> shared (cp.async; zeros when !ok, the source address still valid) */
__device__ __forceinline__ static void sl_cp16(void *dst, const void *src, bool ok)
{
    unsigned a = (unsigned)__cvta_generic_to_shared(dst);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(a), "l"(src),
                 "r"(ok ? 16 : 0)
                 : "memory");
}

__device__ __forceinline__ static uint32_t sl_ld2(const __nv_bfloat16 *p)
{
    return *reinterpret_cast<const uint32_t *>(p);
}

/* Shared memory of a block: first the T and B tiles (rows padded by 16 bytes: the fragment loads
 * hit 32 banks), then, once the mma chains are done, the scaled LoRA terms [2][64][72] fp32 (the
 * epilogue reads them row-contiguously, as it reads G and U). */
template <int R> struct sl_smem {
    union {
        struct {
            __nv_bfloat16 b[2][SL_COLS][R + 8], t[2][SL_ROWS][R + 8];
        } in;
        float term[2][SL_ROWS][SL_COLS + 8];
    };
};

/* A block's 64 x 64 tile: T and B tiles copied into shared memory (cp.async); each warp runs its
 * 16 rows' mma chains (R / 16 steps, k in order) and the terms fl(s · chain) go to shared memory;
 * then each thread loads its 8 float4 of G and of U (a warp reads 2 rows of 256 contiguous bytes
 * each) and finishes them: fl(G + term), k_swiglu's expression, 4 bf16. */
template <int R>
__global__ __launch_bounds__(128, 4) static void k_swiglu_lora(
    const float *G, const float *U, int m, int ff, const __nv_bfloat16 *Tg,
    const __nv_bfloat16 *Tu, int ldt, const __nv_bfloat16 *Bg, const __nv_bfloat16 *Bu, float sg,
    float su, __nv_bfloat16 *out)
{
    constexpr int CPR = R / 8, V = SL_ROWS * SL_COLS / 4 / 128; /* float4s a thread */
    __shared__ __align__(16) sl_smem<R> sm;
    pdl_trigger();
    pdl_wait();
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
    const int n0 = blockIdx.x * SL_COLS, m0 = blockIdx.y * SL_ROWS;
    for (int i = threadIdx.x; i < 2 * 64 * CPR; i += 128) {
        const int s = i / (64 * CPR), r = (i / CPR) % 64, c = (i % CPR) * 8;
        const int n = n0 + r < ff ? n0 + r : ff - 1, row = m0 + r < m ? m0 + r : m - 1;
        sl_cp16(&sm.in.b[s][r][c], (s ? Bu : Bg) + (size_t)n * R + c, n0 + r < ff);
        sl_cp16(&sm.in.t[s][r][c], (s ? Tu : Tg) + (size_t)row * ldt + c, m0 + r < m);
    }
    asm volatile("cp.async.commit_group;\n" ::: "memory");
    asm volatile("cp.async.wait_group 0;\n" ::: "memory");
    __syncthreads();
    float ag[8][4], au[8][4];
#pragma unroll
    for (int nt = 0; nt < 8; nt++)
#pragma unroll
        for (int j = 0; j < 4; j++)
            ag[nt][j] = au[nt][j] = 0.0f;
    const int wa = warp * 16 + g;
#pragma unroll
    for (int ks = 0; ks < R; ks += 16) {
        const int k0 = ks + 2 * t, k1 = k0 + 8;
        uint32_t a[2][4];
#pragma unroll
        for (int s = 0; s < 2; s++) {
            a[s][0] = sl_ld2(&sm.in.t[s][wa][k0]);
            a[s][1] = sl_ld2(&sm.in.t[s][wa + 8][k0]);
            a[s][2] = sl_ld2(&sm.in.t[s][wa][k1]);
            a[s][3] = sl_ld2(&sm.in.t[s][wa + 8][k1]);
        }
#pragma unroll
        for (int nt = 0; nt < 8; nt++) {
            const int n = nt * 8 + g;
            cuda_mma_bf16(ag[nt], a[0][0], a[0][1], a[0][2], a[0][3], sl_ld2(&sm.in.b[0][n][k0]),
                          sl_ld2(&sm.in.b[0][n][k1]));
            cuda_mma_bf16(au[nt], a[1][0], a[1][1], a[1][2], a[1][3], sl_ld2(&sm.in.b[1][n][k0]),
                          sl_ld2(&sm.in.b[1][n][k1]));
        }
    }
    __syncthreads(); /* every warp is done with the T and B tiles: their space takes the terms */
#pragma unroll
    for (int nt = 0; nt < 8; nt++)
#pragma unroll
        for (int h = 0; h < 2; h++) {
            const int c = nt * 8 + 2 * t;
            *reinterpret_cast<float2 *>(&sm.term[0][wa + 8 * h][c]) =
                make_float2(__fmul_rn(sg, ag[nt][2 * h]), __fmul_rn(sg, ag[nt][2 * h + 1]));
            *reinterpret_cast<float2 *>(&sm.term[1][wa + 8 * h][c]) =
                make_float2(__fmul_rn(su, au[nt][2 * h]), __fmul_rn(su, au[nt][2 * h + 1]));
        }
    /* G and U (after the mma chains: fewer registers, 4 blocks an SM; loaded before them at 2
     * blocks an SM, or 4 with spills, measured slower) */
    float4 gv[V], uv[V];
    const bool vec = ff % 4 == 0;
#pragma unroll
    for (int i = 0; i < V; i++) {
        const int e = threadIdx.x + 128 * i, row = m0 + e / 16, col = n0 + (e % 16) * 4;
        gv[i] = uv[i] = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
        if (row < m && vec && col < ff) {
            gv[i] = *reinterpret_cast<const float4 *>(G + (size_t)row * ff + col);
            uv[i] = *reinterpret_cast<const float4 *>(U + (size_t)row * ff + col);
        } else if (row < m) { /* ff % 4 != 0: element by element */
            float *gp = &gv[i].x, *up = &uv[i].x;
            for (int c = 0; c < 4 && col + c < ff; c++) {
                gp[c] = G[(size_t)row * ff + col + c];
                up[c] = U[(size_t)row * ff + col + c];
            }
        }
    }
    __syncthreads();
#pragma unroll
    for (int i = 0; i < V; i++) {
        const int e = threadIdx.x + 128 * i, r = e / 16, c = (e % 16) * 4;
        const int row = m0 + r, col = n0 + c;
        if (row >= m || col >= ff)
            continue;
        const float4 lg = *reinterpret_cast<const float4 *>(&sm.term[0][r][c]);
        const float4 lu = *reinterpret_cast<const float4 *>(&sm.term[1][r][c]);
        const float gs[4] = {gv[i].x, gv[i].y, gv[i].z, gv[i].w};
        const float us[4] = {uv[i].x, uv[i].y, uv[i].z, uv[i].w};
        const float tg[4] = {lg.x, lg.y, lg.z, lg.w}, tu[4] = {lu.x, lu.y, lu.z, lu.w};
        float v[4];
#pragma unroll
        for (int q = 0; q < 4; q++) {
            const float x = __fadd_rn(gs[q], tg[q]), y = __fadd_rn(us[q], tu[q]);
            v[q] = x / (1.0f + expf(-x)) * y; /* k_swiglu's expression */
        }
        __nv_bfloat16 *o = out + (size_t)row * ff + col;
        if (vec) {
            __nv_bfloat162 p2[2] = {__floats2bfloat162_rn(v[0], v[1]),
                                    __floats2bfloat162_rn(v[2], v[3])};
            *reinterpret_cast<uint2 *>(o) = *reinterpret_cast<const uint2 *>(p2);
        } else {
            for (int q = 0; q < 4 && col + q < ff; q++)
                o[q] = __float2bfloat16_rn(v[q]);
        }
    }
}

int cuda_swiglu_lora_rows(struct engine_backend *be, const float *g, const float *u, int m,
                          int ff, const __nv_bfloat16 *tg, const __nv_bfloat16 *tu, int ldt,
                          int rank, const __nv_bfloat16 *bg, const __nv_bfloat16 *bu, float sg,
                          float su, __nv_bfloat16 *outb, struct ny_err *err)
{
    if (m <= 0 || ff <= 0)
        return NY_OK;
    if (ff % 2 || (rank != 16 && rank != 32 && rank != 64) || ldt < rank || ldt % 8 ||
        (m + SL_ROWS - 1) / SL_ROWS > CUDA_GRID_YZ_MAX)
        return NY_ERR(err, NY_E_INVALID, "cuda swiglu LoRA staging: %d rows x %d, rank %d", m, ff,
                      rank);
    dim3 grid((unsigned)((ff + SL_COLS - 1) / SL_COLS), (unsigned)((m + SL_ROWS - 1) / SL_ROWS));
#define SL_GO(R_)                                                                                 \
    CU_LAUNCH(be, "swiglu LoRA staging kernel", k_swiglu_lora<R_>, grid, dim3(128), 0, g, u, m,  \
              ff, tg, tu, ldt, bg, bu, sg, su, outb)
    if (rank == 16)
        SL_GO(16);
    else if (rank == 32)
        SL_GO(32);
    else
        SL_GO(64);
#undef SL_GO
    return NY_OK;
}
