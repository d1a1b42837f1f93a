/* cuda_att_prefill.cu — prefill attention: each request that brings >= 2 rows to the step
 * attends over its slot's cache (bf16, head_dim 64 or 128) by a flash-style kernel on the tensor
 * cores (cuda_attention.cu stores the step's k/v rows first and runs the other rows' splits). */
#include <math.h>

#include "cuda_att.cuh"

/* ---- flash-style attention on the tensor cores ----------------------------------------------
 * For the rows of a request that brings >= 2 rows to the step (bf16 KV cache, head_dim 64 or
 * 128). One block of 4 warps per (64·MT query rows, q head, request); each warp owns MT tiles of
 * 16 rows (MT = 2 for head_dim 128, 1 for 64: FA_MT). Key tiles of 64 (= one KV page) in order
 * from position 0: S = Q·Kᵀ and O += P·V by mma.sync
 * m16n8k16 (bf16 operands, fp32 accumulators), an online softmax in fp32 per row with the row
 * max and sum combined across a row's 4 lanes by a fixed xor tree. A row's arithmetic depends
 * only on its own position: tiles past its causal limit that its block needs for other rows are
 * fully masked, and such a tile leaves m, l and O bit-for-bit unchanged (alpha = 1, p = 0).
 * The exponentials run without branches (p = expf(s - m) also for masked s = -inf: exactly +0)
 * and a tile wholly at or before a row tile's first row skips the mask; neither changes a bit.
 * With two row tiles a warp (70B shape, head_dim 128), each K/V fragment read from shared memory
 * feeds both tiles' mma and their chains interleave; Q, rounded to bf16, waits in shared memory
 * and its fragments are read per k-step. A warp skips a key tile past its last row (such a tile
 * leaves its rows bit-for-bit unchanged). On 4 x H100, 70B tp 4, 32 x 2,000 x 24 through the
 * scheduler: 4.892 and 4.919 s against 4.935 and 4.943 with one row tile a warp (Q in registers,
 * 168 registers, 3 blocks an SM; LoRA r64 5.528 against 5.564); the kernel alone is no faster
 * (ncu, real clocks, 2 requests of the card share: 205-217 us against 209-218, both issuing on
 * 36% of cycles, now with 8 warps an SM instead of 12): the saving is the skipped tiles. */
#define FA_KEYS 64
/* bytes of a [FA_KEYS][D + 8] bf16 tile (rows padded by 16 bytes: ldmatrix without conflicts) */
#define FA_TILE_BYTES(D) (FA_KEYS * ((D) + 8) * 2)

/* Copy a key tile into the stage whose K tile starts at shared address dst (V: one tile on) by
 * cp.async, 16 bytes a copy (the caller commits and waits). This thread copies column chunk
 * threadIdx.x % (D/8) of tile rows threadIdx.x / (D/8) + i·128/(D/8): kg and vg point at the
 * first of them in global memory, step is 128/(D/8) rows there, and a row i·128/(D/8) <= lim
 * further on exists (later rows are zero-filled: no byte is read, and their addresses stay in
 * the tile's page, which is mapped: a tile is copied only when its first position exists). */
template <int D>
__device__ __forceinline__ static void fa_load_tile(unsigned dst, const __nv_bfloat16 *kg,
                                                    const __nv_bfloat16 *vg, size_t step, int lim)
{
    constexpr int rows = 128 / (D / 8); /* tile rows a pass of the block covers */
#pragma unroll
    for (int it = 0; it < FA_KEYS / rows; it++) {
        unsigned dk = dst + it * rows * (D + 8) * 2, dv = dk + FA_TILE_BYTES(D);
        int n = it * rows <= lim ? 16 : 0;
        asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dk),
                     "l"(kg + it * step), "r"(n)
                     : "memory");
        asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dv),
                     "l"(vg + it * step), "r"(n)
                     : "memory");
    }
}

/* The max of this lane's 16 scores of a row (j0 = 0: row g, j0 = 2: row g + 8) by a pairwise
 * tree. fmaxf is exact and returns the non-NaN operand, so the order of the operands changes at
 * most the sign of a zero max (no result depends on it: s - (±0) = s for s != 0 and expf(±0) = 1)
 * or gives NaN for a lane whose scores are all NaN where a -inf seed gave -inf (fmaxf(m, NaN) = m
 * in the combination that follows). */
__device__ __forceinline__ static float fa_row_max(const float (*sc)[4], int j0)
{
    float m[FA_KEYS / 8];
#pragma unroll
    for (int nt = 0; nt < FA_KEYS / 8; nt++)
        m[nt] = fmaxf(sc[nt][j0], sc[nt][j0 + 1]);
#pragma unroll
    for (int w = FA_KEYS / 16; w >= 1; w /= 2)
#pragma unroll
        for (int i = 0; i < w; i++)
            m[i] = fmaxf(m[i], m[i + w]);
    return m[0];
}

/* One key tile's online softmax for a warp's 16-row tile (lane rows g and g + 8: a, b), in place
 * on the tile's scores sc: scale them; where mask (the tile reaches past the row tile's first
 * position) set a key past its row to -inf (lim_a, lim_b: the row's position less the tile's
 * first key and 2t, this lane's first column); update the rows' max (ma, mb) and sum (la, lb);
 * turn sc into p; rescale o. */
template <int D>
__device__ __forceinline__ static void fa_softmax(float (*sc)[4], float (*o)[4], float &ma,
                                                  float &mb, float &la, float &lb, float scale,
                                                  bool mask, int lim_a, int lim_b)
{
    /* scale; the causal mask only where a key of the tile is past the row tile's first row (a
     * tile wholly at or before it keeps every score: the same values as with the mask) */
#pragma unroll
    for (int nt = 0; nt < FA_KEYS / 8; nt++)
#pragma unroll
        for (int j = 0; j < 4; j++)
            sc[nt][j] = sc[nt][j] * scale;
    if (mask) {
        /* key nt·8 + 2t + (j & 1) of the tile is past the row's position */
#pragma unroll
        for (int nt = 0; nt < FA_KEYS / 8; nt++)
#pragma unroll
            for (int j = 0; j < 4; j++)
                if (nt * 8 + (j & 1) > (j < 2 ? lim_a : lim_b))
                    sc[nt][j] = -INFINITY;
    }
    /* tile max per row */
    float mxa = fa_row_max(sc, 0), mxb = fa_row_max(sc, 2);
    mxa = fmaxf(mxa, __shfl_xor_sync(0xffffffffu, mxa, 1));
    mxa = fmaxf(mxa, __shfl_xor_sync(0xffffffffu, mxa, 2));
    mxb = fmaxf(mxb, __shfl_xor_sync(0xffffffffu, mxb, 1));
    mxb = fmaxf(mxb, __shfl_xor_sync(0xffffffffu, mxb, 2));
    float na = fmaxf(ma, mxa), nb = fmaxf(mb, mxb);
    /* Rows with nothing unmasked yet (na = -inf) keep alpha 1 and p 0. Branch-free: such a
     * row's scores are all -inf (or NaN), so subtracting za = 0 in place of na gives
     * expf(-inf) = +0 (NaN: NaN), as does any masked score s = -inf against a finite or
     * +inf max; every other s - za, ma - za is s - na, ma - na as before. */
    const float za = na == -INFINITY ? 0.0f : na, zb = nb == -INFINITY ? 0.0f : nb;
    const float ea = expf(ma - za), eb = expf(mb - zb);
    const float aa = na == -INFINITY ? 1.0f : ea, ab = nb == -INFINITY ? 1.0f : eb;
    /* row sums in key order; they start at the first p, not 0 + p (the same: p >= +0) */
    float sa = 0.0f, sb = 0.0f;
#pragma unroll
    for (int nt = 0; nt < FA_KEYS / 8; nt++)
#pragma unroll
        for (int j = 0; j < 4; j++) {
            float p = expf(sc[nt][j] - (j < 2 ? za : zb));
            sc[nt][j] = p;
            if (j < 2)
                sa = nt == 0 && j == 0 ? p : sa + p;
            else
                sb = nt == 0 && j == 2 ? p : sb + p;
        }
    sa += __shfl_xor_sync(0xffffffffu, sa, 1);
    sa += __shfl_xor_sync(0xffffffffu, sa, 2);
    sb += __shfl_xor_sync(0xffffffffu, sb, 1);
    sb += __shfl_xor_sync(0xffffffffu, sb, 2);
    la = la * aa + sa;
    lb = lb * ab + sb;
    ma = na;
    mb = nb;
    /* x·1 = x bit for bit: skipped when no row of the warp has a new max */
    if (!__all_sync(0xffffffffu, aa == 1.0f && ab == 1.0f)) {
#pragma unroll
        for (int dt = 0; dt < D / 8; dt++) {
            o[dt][0] *= aa;
            o[dt][1] *= aa;
            o[dt][2] *= ab;
            o[dt][3] *= ab;
        }
    }
}

/* A 16-row tile's outputs for this lane (rows a and b = a + 8, where they exist: in[0], in[1]):
 * O / l, and its bf16 shadow when outb is given (the same floats rounded as cuda_rows_to_bf16
 * rounds them); oa: row a's first element of the lane, ostep: row b's distance from it. */
template <int D>
__device__ __forceinline__ static void fa_store(const float (*o)[4], float la, float lb,
                                                const bool (&in)[2], size_t oa, size_t ostep,
                                                float *out, __nv_bfloat16 *outb)
{
#pragma unroll
    for (int h = 0; h < 2; h++) {
        if (!in[h])
            continue;
        const float l = h ? lb : la;
        const size_t e = oa + (h ? ostep : 0);
#pragma unroll
        for (int dt = 0; dt < D / 8; dt++) {
            const float v0 = o[dt][2 * h] / l, v1 = o[dt][2 * h + 1] / l;
            out[e + dt * 8] = v0;
            out[e + dt * 8 + 1] = v1;
            if (outb)
                *reinterpret_cast<__nv_bfloat162 *>(outb + e + dt * 8) =
                    __floats2bfloat162_rn(v0, v1);
        }
    }
}

/* Row tiles a warp for head_dim D. */
#define FA_MT(D) ((D) == 128 ? 2 : 1)
/* Dynamic shared memory of k_flash_prefill<D>: two stages of K and V tiles, then Q
 * [64·MT][D + 8] bf16. */
#define FA_SMEM(D) ((size_t)2 * 2 * FA_TILE_BYTES(D) + (size_t)64 * FA_MT(D) * ((D) + 8) * 2)
/* Blocks an SM must hold at once (the register cap: 255 for two row tiles, 128 for one) */
#define FA_MIN_BLOCKS(D) (FA_MT(D) == 2 ? 2 : 4)

/* S = Q·Kᵀ for the warp's MT row tiles and the key tile's 8 groups of 8 keys, k-step by k-step
 * (each sc[m][nt] sums its k-steps in order). qa: this lane's ldmatrix address of its first row
 * tile's Q, &qs[lane % 8 + ((lane / 8) % 2)·8][(lane / 16)·8] (tile m 16·m rows on); ka: of the
 * K tile, &ks[lane % 8 + (lane / 16)·8][((lane / 8) % 2)·8]. Matrix j of an x4 ldmatrix of K
 * (rows: keys (nt + j / 2)·8 .. + 7, columns 16·kk + (j % 2)·8 .. + 7, nt even) gives lane (g, t)
 * its row g, columns 2t, 2t + 1: the b0, b1 of key group nt, then of nt + 1. */
template <int D, int MT>
__device__ __forceinline__ static void fa_scores(float (*sc)[FA_KEYS / 8][4], unsigned qa,
                                                 unsigned ka)
{
#pragma unroll
    for (int m = 0; m < MT; m++)
#pragma unroll
        for (int nt = 0; nt < FA_KEYS / 8; nt++)
            sc[m][nt][0] = sc[m][nt][1] = sc[m][nt][2] = sc[m][nt][3] = 0.0f;
#pragma unroll
    for (int kk = 0; kk < D / 16; kk++) {
        uint32_t a[MT][4];
#pragma unroll
        for (int m = 0; m < MT; m++)
            cuda_ldsm_x4<false>(qa + (m * 16 * (D + 8) + kk * 16) * 2, a[m][0], a[m][1],
                                a[m][2], a[m][3]);
#pragma unroll
        for (int nt = 0; nt < FA_KEYS / 8; nt += 2) {
            uint32_t b0, b1, b2, b3;
            cuda_ldsm_x4<false>(ka + (nt * 8 * (D + 8) + kk * 16) * 2, b0, b1, b2, b3);
#pragma unroll
            for (int m = 0; m < MT; m++) {
                cuda_mma_bf16(sc[m][nt], a[m][0], a[m][1], a[m][2], a[m][3], b0, b1);
                cuda_mma_bf16(sc[m][nt + 1], a[m][0], a[m][1], a[m][2], a[m][3], b2, b3);
            }
        }
    }
}

/* P of a row tile as the A fragments of P·V, 16 keys a k-step (bf16, round to nearest). */
__device__ __forceinline__ static void fa_pack(uint32_t (*a)[4], const float (*p)[4])
{
#pragma unroll
    for (int kk = 0; kk < FA_KEYS / 16; kk++) {
        a[kk][0] = cuda_pack_bf16x2(p[2 * kk][0], p[2 * kk][1]);
        a[kk][1] = cuda_pack_bf16x2(p[2 * kk][2], p[2 * kk][3]);
        a[kk][2] = cuda_pack_bf16x2(p[2 * kk + 1][0], p[2 * kk + 1][1]);
        a[kk][3] = cuda_pack_bf16x2(p[2 * kk + 1][2], p[2 * kk + 1][3]);
    }
}

/* O += P·V for the MT row tiles, 16 keys per k-step; va: this lane's ldmatrix address in the V
 * tile, &vs[lane % 8 + ((lane / 8) % 2)·8][(lane / 16)·8] (B fragments of V[16 keys][d: dt·8 ..
 * dt·8 + 15], transposed by ldmatrix: b0 = V[kk·16 + 2t, +1][dt·8 + g], b1 = 8 keys further). */
template <int D, int MT>
__device__ __forceinline__ static void fa_pv(float (*o)[D / 8][4],
                                             const uint32_t (*a)[FA_KEYS / 16][4], unsigned va)
{
#pragma unroll
    for (int kk = 0; kk < FA_KEYS / 16; kk++)
#pragma unroll
        for (int dt = 0; dt < D / 8; dt += 2) {
            uint32_t b0, b1, b2, b3;
            cuda_ldsm_x4<true>(va + (kk * 16 * (D + 8) + dt * 8) * 2, b0, b1, b2, b3);
#pragma unroll
            for (int m = 0; m < MT; m++) {
                cuda_mma_bf16(o[m][dt], a[m][kk][0], a[m][kk][1], a[m][kk][2], a[m][kk][3], b0,
                              b1);
                cuda_mma_bf16(o[m][dt + 1], a[m][kk][0], a[m][kk][1], a[m][kk][2], a[m][kk][3],
                              b2, b3);
            }
        }
}

template <int D>
__global__ __launch_bounds__(128, FA_MIN_BLOCKS(D)) static void k_flash_prefill(
    const float *q, const int *units, const int *table, int pps, int n_pages, int layer,
    int n_heads, int nkv, float scale, const __nv_bfloat16 *K, const __nv_bfloat16 *V,
    float *out, __nv_bfloat16 *outb)
{
    constexpr int MT = FA_MT(D), ROWS = 64 * MT;
    /* [stage][K: 0, V: 1][key][D + 8]: tile kt + 1 loads (cp.async) while tile kt is multiplied;
     * then Q [ROWS][D + 8] */
    extern __shared__ __align__(16) unsigned char fa_smem[];
    const int *u = units + 4 * blockIdx.z;
    const int row0 = u[0], len = u[1], slot = u[2], pos0 = u[3];
    /* the longest q tiles (most key tiles) first, so that they do not trail the grid */
    const int qt = gridDim.x - 1 - blockIdx.x, hq = blockIdx.y, hk = hq / (n_heads / nkv);
    if (qt * ROWS >= len)
        return;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
    const int i0 = qt * ROWS + warp * 16 * MT; /* this warp's first row (within the request) */
    const int warp_last = min(i0 + 16 * MT - 1, len - 1); /* < i0: no row of the request */
    /* Q rows in bf16 (rows past len: zeros), a warp a row at a time, 4 floats a lane */
    __nv_bfloat16 *qs = reinterpret_cast<__nv_bfloat16 *>(fa_smem + 4 * FA_TILE_BYTES(D));
    for (int r = warp; r < ROWS; r += 4) {
        const int row = qt * ROWS + r;
        const float *qp = q + ((size_t)(row0 + row) * n_heads + hq) * D;
        for (int c = lane * 4; c < D; c += 128) {
            float4 v = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
            if (row < len)
                v = *reinterpret_cast<const float4 *>(qp + c);
            *reinterpret_cast<uint2 *>(qs + r * (D + 8) + c) =
                make_uint2(cuda_pack_bf16x2(v.x, v.y), cuda_pack_bf16x2(v.z, v.w));
        }
    }
    float o[MT][D / 8][4];
#pragma unroll
    for (int m = 0; m < MT; m++)
#pragma unroll
        for (int i = 0; i < D / 8; i++)
            o[m][i][0] = o[m][i][1] = o[m][i][2] = o[m][i][3] = 0.0f;
    float ma[MT], mb[MT], la[MT], lb[MT];
#pragma unroll
    for (int m = 0; m < MT; m++)
        ma[m] = mb[m] = -INFINITY, la[m] = lb[m] = 0.0f;
    const int last_row = min(qt * ROWS + ROWS - 1, len - 1);
    const int max_pos = pos0 + len - 1; /* the last position written this step */
    const int n_tiles = (pos0 + last_row) / FA_KEYS + 1;
    /* per-thread addresses, fixed for the kernel: the tile copy's row and chunk, the global
     * offset of its first 16 bytes in page 0 of the layer, its shared address in stage 0, the K
     * and V ldmatrix addresses in stage 0 and the Q one */
    const int ld_row = threadIdx.x / (D / 8), ld_c = threadIdx.x % (D / 8);
    const size_t tok = (size_t)nkv * D, page_elems = (size_t)CUDA_KV_PAGE * tok;
    const size_t ld_off = (size_t)layer * n_pages * page_elems + (size_t)hk * D + ld_row * tok +
                          ld_c * 8;
    const size_t ld_step = (size_t)(128 / (D / 8)) * tok;
    const unsigned smem = (unsigned)__cvta_generic_to_shared(fa_smem);
    const unsigned ld_dst = smem + (ld_row * (D + 8) + ld_c * 8) * 2;
    const unsigned ka = smem + ((lane % 8 + lane / 16 * 8) * (D + 8) + (lane / 8) % 2 * 8) * 2;
    const unsigned va = smem + FA_TILE_BYTES(D) +
                        ((lane % 8 + (lane / 8) % 2 * 8) * (D + 8) + (lane / 16) * 8) * 2;
    const unsigned qa =
        smem + 4 * FA_TILE_BYTES(D) +
        ((warp * 16 * MT + lane % 8 + (lane / 8) % 2 * 8) * (D + 8) + (lane / 16) * 8) * 2;
    const int *pages = table + slot * pps;
    size_t off = ld_off + (size_t)pages[0] * page_elems;
    fa_load_tile<D>(ld_dst, K + off, V + off, ld_step, max_pos - ld_row);
    asm volatile("cp.async.commit_group;\n" ::: "memory");
    int page_next = n_tiles > 1 ? pages[1] : 0; /* read a tile ahead of its copy */
    for (int kt = 0; kt < n_tiles; kt++) {
        const unsigned stage = (kt & 1) * 2 * FA_TILE_BYTES(D);
        /* one barrier a tile (the first also publishes Q): tile kt is in (its copy was the only
         * one in flight) and every warp is done with tile kt - 1, whose stage tile kt + 1 then
         * fills */
        asm volatile("cp.async.wait_group 0;\n" ::: "memory");
        __syncthreads();
        if (kt + 1 < n_tiles) {
            off = ld_off + (size_t)page_next * page_elems;
            fa_load_tile<D>(ld_dst + (2 * FA_TILE_BYTES(D) - stage), K + off, V + off, ld_step,
                            max_pos - (kt + 1) * FA_KEYS - ld_row);
            asm volatile("cp.async.commit_group;\n" ::: "memory");
            if (kt + 2 < n_tiles)
                page_next = pages[kt + 2];
        }
        if (i0 >= len || kt * FA_KEYS > pos0 + warp_last) /* no row of the warp changes */
            continue;
        float sc[MT][FA_KEYS / 8][4];
        fa_scores<D, MT>(sc, qa, ka + stage);
        uint32_t pa[MT][FA_KEYS / 16][4];
#pragma unroll
        for (int m = 0; m < MT; m++) {
            const int lim = pos0 + i0 + 16 * m + g - kt * FA_KEYS - 2 * t; /* row a's limit */
            fa_softmax<D>(sc[m], o[m], ma[m], mb[m], la[m], lb[m], scale,
                          kt * FA_KEYS + FA_KEYS - 1 > pos0 + i0 + 16 * m, lim, lim + 8);
            fa_pack(pa[m], sc[m]);
        }
        fa_pv<D, MT>(o, pa, va + stage);
    }
    /* row b's output is 8 rows of n_heads·D past row a's */
#pragma unroll
    for (int m = 0; m < MT; m++) {
        const int ra = i0 + 16 * m + g;
        const bool in[2] = {ra < len, ra + 8 < len};
        fa_store<D>(o[m], la[m], lb[m], in, ((size_t)(row0 + ra) * n_heads + hq) * D + 2 * t,
                    8 * (size_t)n_heads * D, out, outb);
    }
}

int cuda_flash_prefill(struct engine_backend *be, const struct engine_kv *kv, int layer,
                       const float *q, int n_heads, float scale, float *out, __nv_bfloat16 *ob,
                       struct ny_err *err)
{
    const struct cuda_step_sets *ss = &be->sets;
    const int nkv = kv->shape.n_kv_heads, D = kv->shape.head_dim;
    if (D != 64 && D != 128)
        return NY_ERR(err, NY_E_INVALID, "cuda flash prefill: head_dim %d", D);
    const int rows = 64 * FA_MT(D);
    dim3 grid((unsigned)((ss->units_max_len + rows - 1) / rows), (unsigned)n_heads,
              (unsigned)ss->units_n);
    const int *units = be->sets_d + ss->units_off;
    const __nv_bfloat16 *Kc = (const __nv_bfloat16 *)kv->k, *Vc = (const __nv_bfloat16 *)kv->v;
    static int allowed[2][CUDA_MAX_DEVICES]; /* stages beyond 48 KB */
    auto k = D == 128 ? k_flash_prefill<128> : k_flash_prefill<64>;
    const size_t shm = D == 128 ? FA_SMEM(128) : FA_SMEM(64);
    int rc = cuda_smem_allow(be, (const void *)k, shm, allowed[D == 128], err);
    if (rc)
        return rc;
    /* without the dependent-launch attribute: the kernel never waits for the one before */
    k<<<grid, 128, shm, be->stream>>>(q, units, kv->table_d, kv->pages_per_slot, kv->n_pages,
                                      layer, n_heads, nkv, scale, Kc, Vc, out, ob);
    CU_LAUNCHED(be, "flash prefill kernel");
    return NY_OK;
}
