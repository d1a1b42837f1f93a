/* cuda_gemm_rows_xb.cu — skinny products of many decode rows (32+ in a launch) with X staged in
 * bf16 once. The wide kernel of cuda_gemm_rows.cu reads every block's rows of X whole, in fp32,
 * from L2, and beyond 2 row tiles without a load pipeline; here the staging kernel rounds X once
 * and each lane streams its W and X pieces through a cp.async ring. The arithmetic of an element
 * is k_skinny's exactly: the same floats rounded to bf16 the same way (round to nearest even), the
 * same mma steps in the same order, the warps summed in warp order; so a row's bits do not depend
 * on which path its step takes (test_ops: test_matmul_invariance, 1 to 71 decode rows).
 * Every block re-reads its rows of X (from L2) for its own columns: with MT row tiles and NT
 * column tiles, X moves 2·MT/NT times the bytes of W, so the tiles a block are as wide as the
 * grid allows (xb_shape).
 */
#include <limits.h>
#include <stdlib.h>

#include "cuda_skinny.cuh"

/* Launches of at least this many rows stage X (NY_SKINNY_XB_ROWS=N; 0: never). Measured on
 * 4 x H100 (same calls, ids identical): the 70B shape at tp 4 decodes at batch 64 in 48.4 ms a
 * step against 58.5-66.2 unstaged; with 4 column tiles a block at 2 row tiles (below), at batch
 * 32 in 26.67 against 27.13 and at batch 24 in 25.06 against 24.85; the 8B shape on one H100 at
 * batch 32 in 10.89 against 11.00 and at batch 24 in 9.94 against 9.86. */
#define XB_MIN_ROWS 32
/* Narrow launches (fewer columns than this: the wide kernel's blocks would take one 8-column
 * tile each and read X whole in fp32, ncu: L1-bound) stage X from XB_NARROW_ROWS rows on
 * (NY_SKINNY_XB_NARROW=0: not). ncu, the 70B card's q/k/v at 32 rows (2,560 columns, K 8,192,
 * one H100, real clocks): 28.7 us staged against 49.3; the wider launches of that step gained
 * nothing (gate/up 112 against 116, o 22.9 against 22.0) or lost (down 61 against 55). */
#define XB_NARROW_COLS 4096
#define XB_NARROW_ROWS 17
/* Tiles a block (NT) halve while the launch would have fewer blocks than this
 * (NY_SKINNY_XB_BLOCKS=N). */
#define XB_MIN_BLOCKS 128

int cuda_skinny_xb_rows(void)
{
    static long v = -1;
    const long r = cuda_env_long("NY_SKINNY_XB_ROWS", &v, XB_MIN_ROWS);
    return r < INT_MAX ? (int)r : INT_MAX;
}

int cuda_skinny_xb_wanted(int rows, int kmax, int cols)
{
    static int narrow = -1;
    const int min_rows = cuda_skinny_xb_rows();
    if (min_rows <= 0 || kmax <= SK_SHORT_K)
        return 0;
    return rows >= min_rows || (rows >= XB_NARROW_ROWS && cols < XB_NARROW_COLS &&
                                cuda_env_on("NY_SKINNY_XB_NARROW", &narrow));
}

/* MT row tiles x NT column tiles a block. Each lane streams its own 16-byte pieces — of W (NT
 * a k-block) and of the staged X (2·MT) — through a private ring of S slots in shared memory
 * (cp.async: S k-blocks in flight per warp at all times), as k_skinny_ring does for W alone at
 * one row tile (the wide kernel has no load pipeline beyond 2 row tiles: a warp waits for each
 * k-block's loads in turn). Past 8 tiles a block (NT 8: 162-246 registers, one block an SM) the
 * warps' partials are summed through the ring's shared memory once every warp is done with it;
 * the sum is the same, in warp order. */
template <int S, int MT, int NT>
__global__ __launch_bounds__(SK_WARPS * 32) static void k_skinny_xb(const struct sk_parts P,
                                                                    int row0, float beta)
{
    constexpr int PC = NT + 2 * MT; /* pieces a slot */
    /* more than 8 tiles a block: the warps' partials go where the ring was (dynamic shared
     * memory, xb_smem's size), static shared memory holding at most 48 KB */
    constexpr bool RED_RING = MT * NT > 8;
    extern __shared__ uint4 xb_ring[]; /* [SK_WARPS][S][PC][32] */
    __shared__ float4 red_st[RED_RING ? 1 : SK_WARPS * MT * NT * 32];
    typedef float red_t[MT * NT][32][4];
    red_t *red = reinterpret_cast<red_t *>(RED_RING ? (void *)xb_ring : (void *)red_st);
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
    struct sk_part pt;
    int m0, n0;
    const __nv_bfloat16 *wp[NT];
    bool ok[NT];
    if (!sk_wide_begin<MT, NT>(P, row0, pt, m0, n0, wp, ok)) /* past this part's rows */
        return;
    const int K = pt.K, M = pt.M, nb = (K + 31) / 32;
    const int jn = nb > warp ? (nb - warp + SK_WARPS - 1) / SK_WARPS : 0;
    uint4 *ring = xb_ring + (size_t)warp * S * PC * 32 + lane;
    const unsigned ring_s = (unsigned)__cvta_generic_to_shared(ring);
    const __nv_bfloat16 *xr[MT][2]; /* this lane's X rows at its 8·t offset (NULL past M) */
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
#pragma unroll
        for (int h = 0; h < 2; h++) {
            const int r = m0 + mt * 16 + g + 8 * h;
            xr[mt][h] = r < M ? pt.Xb + (size_t)r * K + t * 8 : NULL;
        }
    /* k-block j of this warp's into slot j % S: its W pieces and its X pieces (zeros past the
     * end, past K or past the rows) */
    auto fetch = [&](int j) {
        const int b = warp + j * SK_WARPS, slot = j % S;
        const bool in = j < jn && b * 32 + t * 8 < K;
#pragma unroll
        for (int nt = 0; nt < NT; nt++) {
            const bool on = in && ok[nt];
            sk_cp16(ring_s + (slot * PC + nt) * 32 * 16,
                    on ? (const void *)(wp[nt] + (size_t)b * 32) : (const void *)wp[nt], on);
        }
#pragma unroll
        for (int mt = 0; mt < MT; mt++)
#pragma unroll
            for (int h = 0; h < 2; h++) {
                const bool on = in && xr[mt][h];
                sk_cp16(ring_s + (slot * PC + NT + 2 * mt + h) * 32 * 16,
                        on ? (const void *)(xr[mt][h] + (size_t)b * 32) : (const void *)wp[0], on);
            }
        asm volatile("cp.async.commit_group;\n" ::: "memory");
    };
    pdl_wait(); /* X is the previous kernels' output (launches of this many rows are not under
                 * programmatic dependent launch by default: nothing to win before the wait) */
#pragma unroll
    for (int j = 0; j < S; j++)
        fetch(j);
    float acc[MT * NT][4];
#pragma unroll
    for (int i = 0; i < MT * NT; i++)
        acc[i][0] = acc[i][1] = acc[i][2] = acc[i][3] = 0.0f;
    for (int j = 0; j < jn; j++) {
        const int slot = j % S;
        asm volatile("cp.async.wait_group %0;\n" ::"n"(S - 1) : "memory"); /* slot j's group */
        uint4 wv[NT], xa[MT][2];
#pragma unroll
        for (int nt = 0; nt < NT; nt++)
            wv[nt] = ring[(slot * PC + nt) * 32];
#pragma unroll
        for (int mt = 0; mt < MT; mt++)
#pragma unroll
            for (int h = 0; h < 2; h++)
                xa[mt][h] = ring[(slot * PC + NT + 2 * mt + h) * 32];
#pragma unroll
        for (int mt = 0; mt < MT; mt++)
            cuda_tile_mma<NT>(&acc[mt * NT], xa[mt][0], xa[mt][1], wv);
        fetch(j + S);
    }
    asm volatile("cp.async.wait_group 0;\n" ::: "memory");
    pdl_trigger();
    if (RED_RING) /* every warp is done with its ring */
        __syncthreads();
    sk_wide_store<MT, NT>(red, acc, pt, m0, n0, beta);
}

/* Dynamic shared memory of k_skinny_xb<S, MT, NT>: the ring, or the partials where larger. */
static size_t xb_smem(int S, int mt, int nt)
{
    const size_t ring = (size_t)SK_WARPS * S * (nt + 2 * mt) * 32 * sizeof(uint4);
    const size_t red = (size_t)SK_WARPS * mt * nt * 32 * 4 * sizeof(float);
    return mt * nt > 8 && red > ring ? red : ring;
}

/* Whether part a reads X through the bf16 shadow (cuda_int.cuh) instead of staging it: its X is
 * the mirrored buffer at the shadow's width, read in row order (no list) over rows the shadow
 * holds. Only in a step of decode rows alone, where every producer of the shadow writes all of
 * its rows (in a step with prefill units the attention's covers the units' rows only). Row i of
 * the shadow is bf16(X row i), the staging's rounding of the same floats: the same bits. */
static int xb_shadowed(const struct engine_backend *be, const struct sk_part *a)
{
    return a->X == be->shadow_src && !a->in_idx && a->K == be->shadow_dim &&
           a->M <= be->n_rows && be->sets.units_n == 0;
}

/* Each distinct X of the parts (same X, row list, rows and width) staged once, in scratch
 * CUDA_SCRATCH_XB, or read from the bf16 shadow where it mirrors X (xb_shadowed); every part's
 * Xb set. */
int cuda_skinny_xb_stage(struct engine_backend *be, struct sk_parts &P, struct ny_err *err)
{
    size_t off[SK_MAX_PARTS], total = 0;
    int src[SK_MAX_PARTS];
    for (int i = 0; i < P.n; i++) {
        const struct sk_part *a = &P.p[i];
        src[i] = i;
        for (int j = 0; j < i && src[i] == i; j++) {
            const struct sk_part *b = &P.p[j];
            if (a->X == b->X && a->in_idx == b->in_idx && a->M == b->M && a->K == b->K)
                src[i] = j;
        }
        off[i] = total;
        if (src[i] == i && !xb_shadowed(be, a))
            total += (size_t)a->M * a->K; /* K % 8 == 0: every row 16-byte aligned */
    }
    void *base = NULL;
    int rc = total ? cuda_scratch(be, CUDA_SCRATCH_XB, total * sizeof(__nv_bfloat16), &base, err)
                   : NY_OK;
    for (int i = 0; i < P.n && !rc; i++) {
        struct sk_part *a = &P.p[i];
        if (src[i] != i) {
            a->Xb = P.p[src[i]].Xb;
            continue;
        }
        if (xb_shadowed(be, a)) {
            a->Xb = be->shadow_d;
            continue;
        }
        __nv_bfloat16 *dst = (__nv_bfloat16 *)base + off[i];
        rc = cuda_rows_to_bf16(be, a->X, a->in_idx, a->M, a->K, dst, err);
        a->Xb = dst;
    }
    return rc;
}

/* Column tiles a block (nt) and ring slots (s) of a launch of mt row tiles: 8 tiles from 2 row
 * tiles on (a ring of 2 slots: 96-128 KB), 4 at one (4 slots); halved while the launch would have
 * fewer than XB_MIN_BLOCKS blocks. NY_SKINNY_XB_WIDE=0: session 11's tiles (4 up to 2 row tiles,
 * 2 beyond; NY_SKINNY_XB_NT2=2: 2 at 2 row tiles), rings of 3 or 4 slots. The wider tiles halve
 * or quarter the X traffic. ncu (real clocks, one H100, the 70B card share, µs a layer): at 64
 * rows gate/up 171 -> 103, down 95 -> 54, o 35 -> 20 (q/k/v keep 2 tiles: 160 blocks), lm_head
 * 362 -> 217; at 32 rows gate/up 101 -> 89, down 51 -> 46, o 19 -> 17. 70B tp 4 through the
 * scheduler (4 x H100, same calls, ids identical): 64 x 2,000 x 24 at batch 64 in 9.394 s
 * against 9.536, with a rank-64 LoRA 10.383 against 10.574; decode at batch 32 24.43 ms a step
 * against 25.40. 2 x H200, one GPU: the card share's 20 layers decode at batch 64 in 6.62 ms a
 * step against 9.15, at batch 32 in 4.81 against 5.32; the 8B shape at batch 32 in 11.51 against
 * 11.67 (on one H100: 13.03 against 12.80, 8 new tokens). A ring of 3 slots at 2 row tiles
 * (one block an SM either way) decoded the 70B at batch 32 in 24.86 ms. */
static void xb_shape(int mt, int cols, int passes, int *nt_out, int *s_out)
{
    static long mb = -1, nt2 = -1, wide = -1;
    const long min_blocks = cuda_env_long("NY_SKINNY_XB_BLOCKS", &mb, XB_MIN_BLOCKS);
    int nt = mt == 1 ? 4 : 8;
    if (!cuda_env_long("NY_SKINNY_XB_WIDE", &wide, 1)) /* session 11's tiles */
        nt = mt == 1 || (mt == 2 && cuda_env_long("NY_SKINNY_XB_NT2", &nt2, 4) == 4) ? 4 : 2;
    while (nt > 1 && (long)cols / (SK_COLS * nt) * passes < min_blocks)
        nt /= 2;
    *nt_out = nt;
    *s_out = nt == 8 ? 2 : mt == 1 || (mt == 2 && nt < 4) ? 4 : 3;
}

int cuda_skinny_xb_launch(struct engine_backend *be, int mt, struct sk_parts &P, int passes,
                          int row0, float beta, struct ny_err *err)
{
    int cols = 0, nt, S;
    for (int i = 0; i < P.n; i++)
        cols += P.p[i].N;
    xb_shape(mt, cols, passes, &nt, &S);
    const int tiles = sk_tiles(P, SK_COLS * nt);
    dim3 grid((unsigned)tiles, (unsigned)passes), tb(SK_WARPS * 32);
    const size_t shm = xb_smem(S, mt, nt);
    static int allowed[4][4][CUDA_MAX_DEVICES];
    const int ni = nt == 8 ? 3 : nt == 4 ? 2 : nt == 2 ? 1 : 0;
    const void *fn;
    void (*k)(const struct sk_parts, int, float);
#define XB_K(S_, MT_, NT_) (k = k_skinny_xb<S_, MT_, NT_>, fn = (const void *)k)
    if (mt == 1)
        nt == 4 ? XB_K(4, 1, 4) : nt == 2 ? XB_K(4, 1, 2) : XB_K(4, 1, 1);
    else if (mt == 2)
        nt == 8 ? XB_K(2, 2, 8) : nt == 4 ? XB_K(3, 2, 4) : nt == 2 ? XB_K(4, 2, 2)
                                                            : XB_K(4, 2, 1);
    else if (mt == 3)
        nt == 8 ? XB_K(2, 3, 8) : nt == 4 ? XB_K(3, 3, 4) : nt == 2 ? XB_K(3, 3, 2)
                                                            : XB_K(3, 3, 1);
    else
        nt == 8 ? XB_K(2, 4, 8) : nt == 4 ? XB_K(3, 4, 4) : nt == 2 ? XB_K(3, 4, 2)
                                                            : XB_K(3, 4, 1);
#undef XB_K
    int rc = cuda_smem_allow(be, fn, shm, allowed[mt - 1][ni], err);
    if (rc)
        return rc;
    CU_CHECK(be, cuda_launch(k, grid, tb, shm, be->stream, be->n_rows, P, row0, beta),
             "skinny GEMM kernel (staged X)");
    return NY_OK;
}
