/* cuda_gemm_split.cu — decode rows through narrow, long weights (the LoRA A matrices: N = rank,
 * K = the hidden or intermediate size) by a fixed split of K.
 *
 * The skinny kernel gives such a product only N / 8 blocks (8 for a rank-64 A matrix), each
 * streaming all of K: a few SMs busy, the step waiting on their loads. Here K is cut in slices of
 * SPL_SLICE (a constant): block (tile, pass, slice) runs the skinny kernel's scheme over its
 * slice only (warp w takes k-blocks w, w + 8, ... of the slice in order on the tensor cores, the
 * 8 warps' partials summed in warp order) into a workspace, and a second kernel sums a row's
 * slices in slice order. The slice length, the warp split and both orders depend only on K, so a
 * row's result never depends on the other rows nor on how many there are (the determinism
 * contract of engine_backend_int.h); it differs in its last bits from the one-block scheme,
 * which is why the choice between the two is made by the weight's shape alone
 * (cuda_split_wanted). */
#include "cuda_int.cuh"
#include "cuda_mma.cuh"

#define SPL_WARPS 8
#define SPL_SLICE 1024                 /* k per slice: 32 k-blocks, 4 per warp */
#define SPL_KB (SPL_SLICE / 32 / SPL_WARPS)

int cuda_split_wanted(int K, int N) { return N <= 256 && K >= 2048 && K % 8 == 0; }

/* The parts of one launch (same rows, same K): blocks [tile0[p], tile0[p + 1]) are part p's. */
struct spl_parts {
    const float *X[CUDA_SPLIT_PARTS];
    const __nv_bfloat16 *W[CUDA_SPLIT_PARTS];
    float *Y[CUDA_SPLIT_PARTS];
    int N[CUDA_SPLIT_PARTS], ldy[CUDA_SPLIT_PARTS], tile0[CUDA_SPLIT_PARTS + 1];
    float alpha[CUDA_SPLIT_PARTS];
    int n;
};

/* Part p's fields for a block of tile `tile` (selected by unrolled compares, so that the
 * parameter arrays are never indexed at run time and stay in the constant bank). */
struct spl_sel {
    const float *X;
    const __nv_bfloat16 *W;
    float *Y;
    int N, ldy, tile0;
    float alpha;
};
__device__ __forceinline__ static struct spl_sel spl_part(const struct spl_parts &P, int tile)
{
    struct spl_sel s = {P.X[0], P.W[0], P.Y[0], P.N[0], P.ldy[0], P.tile0[0], P.alpha[0]};
#pragma unroll
    for (int i = 1; i < CUDA_SPLIT_PARTS; i++)
        if (i < P.n && tile >= P.tile0[i])
            s = {P.X[i], P.W[i], P.Y[i], P.N[i], P.ldy[i], P.tile0[i], P.alpha[i]};
    return s;
}

/* Partials of rows [16·MT·blockIdx.y, +16·MT) below M, tile blockIdx.x, slice blockIdx.z:
 * ws[(slice · M + row) · cols + tile · 8 + c] (cols = all parts' tiles · 8). */
template <int MT>
__global__ __launch_bounds__(SPL_WARPS * 32) static void k_split_part(
    const struct spl_parts P, const int *__restrict__ in_idx, int M, int K, int cols, float *ws)
{
    __shared__ float red[SPL_WARPS][MT][32][4];
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
    const int tile = blockIdx.x, slice = blockIdx.z;
    const struct spl_sel sp = spl_part(P, tile);
    const int n0 = (tile - sp.tile0) * 8, m0 = blockIdx.y * 16 * MT, N = sp.N;
    const int nb = (K + 31) / 32, b_end = min(nb, (slice + 1) * (SPL_SLICE / 32));
    const bool wrow_ok = n0 + g < N;
    const __nv_bfloat16 *wp = sp.W + (size_t)(wrow_ok ? n0 + g : 0) * K + t * 8;
    uint4 wv[SPL_KB]; /* weights only: loaded before the previous kernel is waited for */
#pragma unroll
    for (int u = 0; u < SPL_KB; u++) {
        int b = slice * (SPL_SLICE / 32) + warp + u * SPL_WARPS, k = b * 32 + t * 8;
        wv[u] = make_uint4(0, 0, 0, 0);
        if (wrow_ok && b < b_end && k < K)
            wv[u] = __ldg((const uint4 *)(wp + (size_t)b * 32));
    }
    pdl_wait();
    const float *xr[MT][2];
    cuda_tile_rows<MT>(xr, sp.X, in_idx, m0, M, K, g, t);
    float acc[MT][4];
#pragma unroll
    for (int i = 0; i < MT; i++)
        acc[i][0] = acc[i][1] = acc[i][2] = acc[i][3] = 0.0f;
#pragma unroll
    for (int u = 0; u < SPL_KB; u++) {
        int b = slice * (SPL_SLICE / 32) + warp + u * SPL_WARPS, k = b * 32 + t * 8;
        if (b >= b_end)
            break;
        cuda_tile_kblock<MT>(acc, xr, b, k, K, wv[u]);
    }
    pdl_trigger();
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
#pragma unroll
        for (int j = 0; j < 4; j++)
            red[warp][mt][lane][j] = acc[mt][j];
    __syncthreads();
    for (int e = threadIdx.x; e < MT * 32 * 4; e += SPL_WARPS * 32) {
        int row, col;
        float s = cuda_tile_sum<MT, SPL_WARPS>(red, e, &row, &col);
        if (m0 + row < M && n0 + col < N)
            ws[((size_t)slice * M + m0 + row) * cols + tile * 8 + col] = s;
    }
}

/* Y[out_idx[row], col] = alpha · Σ_slices (in order) + beta · Y, one thread per element. */
__global__ static void k_split_sum(const struct spl_parts P, const float *ws, int slices, int M,
                                   int cols, const int *__restrict__ out_idx, float beta)
{
    pdl_trigger();
    pdl_wait();
    size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (i >= (size_t)M * cols)
        return;
    int row = (int)(i / cols), cg = (int)(i % cols), tile = cg / 8;
    const struct spl_sel sp = spl_part(P, tile);
    int col = (tile - sp.tile0) * 8 + cg % 8;
    if (col >= sp.N)
        return;
    float s = ws[i];
    for (int sl = 1; sl < slices; sl++)
        s += ws[(size_t)sl * M * cols + i];
    cuda_store_y(sp.Y, sp.ldy, out_idx, row, col, sp.alpha, s, beta);
}

int cuda_gemm_split(struct engine_backend *be, const struct cuda_split_part *parts, int n_parts,
                    int K, const int *in_idx, int n, const int *out_idx, float beta,
                    struct ny_err *err)
{
    if (n <= 0 || n_parts <= 0)
        return NY_OK;
    if (n_parts > CUDA_SPLIT_PARTS)
        return NY_ERR(err, NY_E_INTERNAL, "cuda split GEMM: %d parts", n_parts);
    struct spl_parts P;
    memset(&P, 0, sizeof P);
    int tiles = 0;
    for (int i = 0; i < n_parts; i++) {
        P.X[i] = parts[i].X;
        P.W[i] = (const __nv_bfloat16 *)parts[i].w->d;
        P.Y[i] = parts[i].Y;
        P.N[i] = parts[i].N;
        P.ldy[i] = parts[i].ldy;
        P.alpha[i] = parts[i].alpha;
        P.tile0[i] = tiles;
        tiles += (parts[i].N + 7) / 8;
    }
    P.tile0[n_parts] = tiles;
    P.n = n_parts;
    int slices = (K + SPL_SLICE - 1) / SPL_SLICE, cols = tiles * 8;
    void *ws;
    int rc = cuda_scratch(be, CUDA_SCRATCH_SPLIT, (size_t)slices * n * cols * sizeof(float), &ws,
                          err);
    if (rc)
        return rc;
    /* passes of 64 rows, then the smallest tile count covering the rest (the same scheme for
     * every row: only the schedule differs) */
    for (int r0 = 0; r0 < n; r0 += 64) {
        int m = n - r0 < 64 ? n - r0 : 64, mt = (m + 15) / 16;
        const int *ii = in_idx ? in_idx + r0 : NULL;
        float *w = (float *)ws;
        /* rows r0.. of this pass write their own block of the workspace: index rows from r0 */
        dim3 grid((unsigned)tiles, 1, (unsigned)slices);
        struct spl_parts Q = P;
        for (int i = 0; i < n_parts; i++)
            if (!in_idx)
                Q.X[i] = P.X[i] + (size_t)r0 * K;
        float *wr = w + (size_t)r0 * cols * slices;
        void (*kern)(const struct spl_parts, const int *, int, int, int, float *) =
            mt == 1 ? k_split_part<1> : mt == 2 ? k_split_part<2> : mt == 3 ? k_split_part<3>
                                                                            : k_split_part<4>;
        CU_LAUNCH(be, "split GEMM kernel", kern, grid, dim3(SPL_WARPS * 32), 0, Q, ii, m, K, cols,
                  wr);
        size_t total = (size_t)m * cols;
        const int *oi = out_idx ? out_idx + r0 : NULL;
        struct spl_parts Z = P;
        for (int i = 0; i < n_parts; i++)
            if (!out_idx)
                Z.Y[i] = P.Y[i] + (size_t)r0 * P.ldy[i];
        CU_LAUNCH(be, "split GEMM sum kernel", k_split_sum, dim3((unsigned)((total + 255) / 256)),
                  dim3(256), 0, Z, (const float *)wr, slices, m, cols, oi, beta);
    }
    return NY_OK;
}
