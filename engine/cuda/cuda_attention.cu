/* cuda_attention.cu — causal grouped-query attention over the paged KV cache.
 *
 * A step first stores its k/v rows at their slots and positions (pages of CUDA_KV_PAGE tokens,
 * bf16 or fp32), then every q row attends over positions 0..pos of its slot in fixed splits of
 * ATT_SPLIT positions: one block per (split, kv head, row) computes, for the kv head's group of
 * q heads, the split's max, sum of exponentials and weighted value sum (dot products over d in
 * order, max and sum over the split's positions by fixed xor shuffle trees, value sums over
 * positions in order); a second kernel combines the splits in split order.
 * The number of splits depends only on the row's own position, so a row's result never depends
 * on the rest of the batch. Softmax in fp32 with max subtraction; expf/sqrtf are the precise ones.
 * Over a bf16 cache with head_dim 64 or 128 and groups of 8 to 16 q heads the splits run on the
 * tensor cores instead (cuda_att_decode.cu: q and p rounded to bf16 as the flash prefill rounds
 * them).
 */
#include <math.h>

#include "cuda_att.cuh"

__device__ __forceinline__ static float kv_load(const float *p) { return *p; }
__device__ __forceinline__ static float kv_load(const __nv_bfloat16 *p) { return __bfloat162float(*p); }
__device__ __forceinline__ static void kv_store(float *p, float v) { *p = v; }
__device__ __forceinline__ static void kv_store(__nv_bfloat16 *p, float v) { *p = __float2bfloat16_rn(v); }
template <typename T>
__global__ static void k_kv_store(const float *k, const float *v, const int *row_slot,
                                  const int *row_pos, const int *table, int pps, int n_pages,
                                  int layer, int nkv, int D, T *K, T *V)
{
    pdl_trigger();
    pdl_wait();
    /* block (r, y): heads [y·hpb, (y + 1)·hpb) of row r (decode: a head a block; prefill: a row
     * a block, so that 2,048 rows are not 16,384 tiny blocks) */
    const int r = blockIdx.x, hpb = (nkv + gridDim.y - 1) / gridDim.y, h0 = blockIdx.y * hpb;
    const int nh = min(hpb, nkv - h0);
    for (int e = threadIdx.x; e < nh * D; e += blockDim.x) {
        int h = h0 + e / D, d = e % D;
        size_t o = kv_off(table, pps, n_pages, layer, row_slot[r], row_pos[r], nkv, D, h);
        kv_store(K + o + d, k[((size_t)r * nkv + h) * D + d]);
        kv_store(V + o + d, v[((size_t)r * nkv + h) * D + d]);
    }
}

/* ---- decode: one block per (split of ATT_SPLIT positions, kv head, row) -----------------------
 * Workspace (z = the row's index in the row list, hd = z * n_heads + head):
 *   acc [hd][max_splits][D]: the split's value sums Σ_j p_j · V_j;
 *   ml  [hd][max_splits][2]: the split's score max m and Σ_j p_j (p_j = expf(s_j - m)).
 * A split lies within one KV page (ATT_SPLIT divides CUDA_KV_PAGE): one table lookup. The block
 * copies q of the kv head's group and the split's K and V rows into shared memory at once (16-byte
 * cp.async, one memory round trip), then lane j of each warp scores position j for the warp's
 * heads (d in order), takes the softmax partials of a head by fixed xor trees in that warp, and
 * each thread sums p_j · V[j][d] over j in order for its (head, d) outputs. */
#define ATT_THREADS 128
#define ATT_WARPS (ATT_THREADS / 32)
#define ATT_MAX_GROUP 16
#define ATT_MAX_DIM 256

static_assert(CUDA_KV_PAGE % ATT_SPLIT == 0, "a split must lie within one KV page");
static_assert(ATT_SPLIT == 32, "a split's positions are a warp's lanes");

/* Elements of T in a 16-byte vector; K rows in shared memory are padded by one vector so that
 * lanes reading different rows hit different banks. */
template <typename T> struct att_vec {
    static constexpr int n = 16 / (int)sizeof(T);
};

/* Dynamic shared memory of k_att_partial: K [ATT_SPLIT][D + VEC], V [ATT_SPLIT][D] in T,
 * q [G][D] and p [G][ATT_SPLIT] in fp32. Every part's size is a multiple of 16 bytes but q's. */
static size_t att_smem_bytes(int G, int D, size_t tsize)
{
    size_t vec = 16 / tsize;
    return ATT_SPLIT * (2 * (size_t)D + vec) * tsize + (size_t)G * D * 4 +
           (size_t)G * ATT_SPLIT * 4;
}

/* 16 bytes global -> shared without a register stop (sm_80+: cp.async; else a plain copy). */
__device__ __forceinline__ static void att_cp16(void *dst, const void *src)
{
#if __CUDA_ARCH__ >= 800
    unsigned a = (unsigned)__cvta_generic_to_shared(dst);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(a), "l"(src) : "memory");
#else
    *reinterpret_cast<uint4 *>(dst) = *reinterpret_cast<const uint4 *>(src);
#endif
}

__device__ __forceinline__ static void att_cp_wait(void)
{
#if __CUDA_ARCH__ >= 800
    asm volatile("cp.async.commit_group;\ncp.async.wait_group 0;\n" ::: "memory");
#endif
}

/* Issue the copy of cnt rows of D elements (source row stride sstride, destination dstride). */
template <typename T>
__device__ static void att_stage(T *dst, int dstride, const T *src, size_t sstride, int cnt, int D)
{
    constexpr int VEC = att_vec<T>::n;
    if (D % VEC) {
        for (int i = threadIdx.x; i < cnt * D; i += ATT_THREADS)
            dst[(i / D) * dstride + i % D] = src[(size_t)(i / D) * sstride + i % D];
        return;
    }
    const int per = D / VEC;
    for (int i = threadIdx.x; i < cnt * per; i += ATT_THREADS) {
        int j = i / per, c = (i % per) * VEC;
        att_cp16(dst + j * dstride + c, src + (size_t)j * sstride + c);
    }
}

/* The floats of a 16-byte vector of K (the pointer only picks the type). */
__device__ __forceinline__ static void att_unpack(uint4 u, float *f, const float *)
{
    f[0] = __uint_as_float(u.x), f[1] = __uint_as_float(u.y);
    f[2] = __uint_as_float(u.z), f[3] = __uint_as_float(u.w);
}
__device__ __forceinline__ static void att_unpack(uint4 u, float *f, const __nv_bfloat16 *)
{
    const __nv_bfloat162 *p = reinterpret_cast<const __nv_bfloat162 *>(&u);
#pragma unroll
    for (int i = 0; i < 4; i++) {
        float2 t = __bfloat1622float2(p[i]);
        f[2 * i] = t.x, f[2 * i + 1] = t.y;
    }
}

/* Scores and softmax partials. Warp w takes heads g = w, w + ATT_WARPS, ...; lane j position j:
 * s = scale · Σ_d q_g[d] K_j[d] (d in order, VEC at a time), m = max_j s_j, p_j = expf(s_j - m),
 * l = Σ_j p_j (xor trees 16, 8, 4, 2, 1). p goes to ps [G][ATT_SPLIT], (m, l) of head g to
 * ml[g * mstride]. */
template <typename T>
__device__ static void att_scores(const float *qs, const T *ks, int kstride, int G, int D,
                                  int cnt, float scale, float *ps, float *ml, size_t mstride)
{
    constexpr int VEC = att_vec<T>::n, NG = ATT_MAX_GROUP / ATT_WARPS;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    float s[NG];
#pragma unroll
    for (int k = 0; k < NG; k++)
        s[k] = 0.0f;
    if (lane < cnt) {
        const T *kr = ks + lane * kstride;
        if (D % VEC == 0) {
#pragma unroll 4
            for (int c = 0; c < D; c += VEC) {
                float kf[8];
                att_unpack(*reinterpret_cast<const uint4 *>(kr + c), kf, kr);
#pragma unroll
                for (int k = 0; k < NG; k++) {
                    if (warp + k * ATT_WARPS >= G)
                        break;
                    const float4 *q4 = reinterpret_cast<const float4 *>(
                        qs + (warp + k * ATT_WARPS) * D + c);
                    float t = 0.0f;
#pragma unroll
                    for (int e = 0; e < VEC / 4; e++) {
                        float4 qv = q4[e];
                        t += qv.x * kf[4 * e] + qv.y * kf[4 * e + 1] + qv.z * kf[4 * e + 2] +
                             qv.w * kf[4 * e + 3];
                    }
                    s[k] += t;
                }
            }
        } else {
            for (int d = 0; d < D; d++) {
                float kf = kv_load(kr + d);
#pragma unroll
                for (int k = 0; k < NG; k++)
                    if (warp + k * ATT_WARPS < G)
                        s[k] += qs[(warp + k * ATT_WARPS) * D + d] * kf;
            }
        }
    }
#pragma unroll
    for (int k = 0; k < NG; k++) {
        const int g = warp + k * ATT_WARPS;
        if (g >= G)
            break;
        float x = lane < cnt ? scale * s[k] : -INFINITY, m = x;
        for (int o = 16; o > 0; o >>= 1)
            m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, o));
        float p = lane < cnt ? expf(x - m) : 0.0f, l = p;
        for (int o = 16; o > 0; o >>= 1)
            l += __shfl_xor_sync(0xffffffffu, l, o);
        ps[g * ATT_SPLIT + lane] = p;
        if (lane == 0) {
            ml[g * mstride] = m;
            ml[g * mstride + 1] = l;
        }
    }
}

/* W consecutive elements of a V row as floats (W = 4: one 8- or 16-byte load). */
template <int W>
__device__ __forceinline__ static void att_ldv(const float *p, float *f)
{
    if (W == 4) {
        float4 v = *reinterpret_cast<const float4 *>(p);
        f[0] = v.x, f[1] = v.y, f[2] = v.z, f[3] = v.w;
    } else {
        f[0] = *p;
    }
}
template <int W>
__device__ __forceinline__ static void att_ldv(const __nv_bfloat16 *p, float *f)
{
    if (W == 4) {
        uint2 u = *reinterpret_cast<const uint2 *>(p);
        float2 a = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162 *>(&u.x));
        float2 b = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162 *>(&u.y));
        f[0] = a.x, f[1] = a.y, f[2] = b.x, f[3] = b.y;
    } else {
        f[0] = __bfloat162float(*p);
    }
}

/* acc[g * astride + d] = Σ_j p[g][j] · V[j][d], j = 0..cnt-1 in order; a thread takes W
 * consecutive d of one head at a time. */
template <typename T, int W>
__device__ static void att_values(const float *ps, const T *vs, int G, int D, int cnt,
                                  float *acc, size_t astride)
{
    const int per = D / W;
    for (int u = threadIdx.x; u < G * per; u += ATT_THREADS) {
        const int g = u / per, d = (u % per) * W;
        const float *pg = ps + g * ATT_SPLIT;
        float a[W];
#pragma unroll
        for (int e = 0; e < W; e++)
            a[e] = 0.0f;
#pragma unroll 8
        for (int j = 0; j < cnt; j++) {
            float v[W], p = pg[j];
            att_ldv<W>(vs + j * D + d, v);
#pragma unroll
            for (int e = 0; e < W; e++)
                a[e] += p * v[e];
        }
        float *o = acc + g * astride + d;
        if (W == 4)
            *reinterpret_cast<float4 *>(o) = make_float4(a[0], a[1], a[2], a[3]);
        else
            o[0] = a[0];
    }
}

/* Fold (decode-only steps: every request brings one row): the kv store is done here instead of
 * by k_kv_store. The split holding the row's own position takes that position's K and V from the
 * fp32 k and v rows (knew, vnew [row][nkv][D]), rounded as k_kv_store rounds them, into shared
 * memory and into the cache; every other split holds only positions stored by earlier steps, so
 * it copies its K and V before waiting for the previous kernel. Same values, same arithmetic. */
template <typename T>
__global__ __launch_bounds__(ATT_THREADS) static void k_att_partial(
    const float *q, const int *rows, const int *row_slot, const int *row_pos, const int *table,
    int pps, int n_pages, int layer, int n_heads, int nkv, int D, float scale, T *K, T *V,
    int max_splits, float *ws_acc, float *ws_ml, int z0, const float *knew, const float *vnew)
{
    pdl_trigger();
    extern __shared__ __align__(16) unsigned char att_smem[];
    constexpr int VEC = att_vec<T>::n;
    const int split = blockIdx.x, h = blockIdx.y, z = z0 + blockIdx.z, r = rows ? rows[z] : z;
    const int G = n_heads / nkv, pos = row_pos[r], len = pos + 1, j0 = split * ATT_SPLIT;
    /* read before the exit test (one dependent load less): every launched split's table entry
     * exists, j0 being at most the step's largest position */
    const size_t o = kv_off(table, pps, n_pages, layer, row_slot[r], j0, nkv, D, h);
    if (j0 >= len) {
        pdl_wait();
        return;
    }
    const int cnt = len - j0 < ATT_SPLIT ? len - j0 : ATT_SPLIT, kstride = D + VEC;
    T *ks = reinterpret_cast<T *>(att_smem), *vs = ks + ATT_SPLIT * kstride;
    float *qs = reinterpret_cast<float *>(vs + ATT_SPLIT * D), *ps = qs + G * D;
    const bool own = knew && j0 + cnt == len; /* fold: this split holds the row's position */
    const size_t kvs = (size_t)nkv * D;
    if (knew && !own) { /* positions of earlier steps only */
        att_stage(ks, kstride, K + o, kvs, cnt, D);
        att_stage(vs, D, V + o, kvs, cnt, D);
    }
    pdl_wait();
    /* every copy of the block in flight at once: q of the group, then the split's K and V */
    const float *qg = q + ((size_t)r * n_heads + (size_t)h * G) * D;
    if (D % 4 == 0) {
        for (int i = threadIdx.x; i < G * D / 4; i += ATT_THREADS)
            att_cp16(qs + 4 * i, qg + 4 * i);
    } else {
        for (int i = threadIdx.x; i < G * D; i += ATT_THREADS)
            qs[i] = qg[i];
    }
    if (!knew) {
        att_stage(ks, kstride, K + o, kvs, cnt, D);
        att_stage(vs, D, V + o, kvs, cnt, D);
    } else if (own) { /* the earlier positions by copy, the row's own from k and v */
        att_stage(ks, kstride, K + o, kvs, cnt - 1, D);
        att_stage(vs, D, V + o, kvs, cnt - 1, D);
        const size_t src = ((size_t)r * nkv + h) * D, dst = o + (size_t)(cnt - 1) * kvs;
        T *kr = ks + (cnt - 1) * kstride, *vr = vs + (cnt - 1) * D;
        for (int d = threadIdx.x; d < D; d += ATT_THREADS) {
            const T kt = kv_round(knew[src + d], K), vt = kv_round(vnew[src + d], V);
            kr[d] = kt;
            vr[d] = vt;
            K[dst + d] = kt;
            V[dst + d] = vt;
        }
    }
    att_cp_wait();
    __syncthreads();
    const size_t hd = (size_t)z * n_heads + (size_t)h * G; /* the group's first head */
    att_scores(qs, ks, kstride, G, D, cnt, scale, ps, ws_ml + (hd * max_splits + split) * 2,
               (size_t)max_splits * 2);
    __syncthreads();
    float *acc = ws_acc + (hd * max_splits + split) * D;
    if (D % 4 == 0)
        att_values<T, 4>(ps, vs, G, D, cnt, acc, (size_t)max_splits * D);
    else
        att_values<T, 1>(ps, vs, G, D, cnt, acc, (size_t)max_splits * D);
}

/* Combine a row's splits in split order: M = max_s m_s, w_s = expf(m_s - M),
 * out[d] = (Σ_s w_s · acc_s[d]) / Σ_s w_s · l_s. One block per (head, row, blockDim.x d's), a
 * thread per d; the first ATT_COMB_UNROLL value sums are loaded along with the maxima.
 * Dynamic shared memory: 2 * max_splits floats. */
#define ATT_COMB_UNROLL 32
__global__ static void k_att_combine(const float *ws_acc, const float *ws_ml, const int *rows,
                                     const int *row_pos, int n_heads, int D, int max_splits,
                                     float *out, int z0)
{
    pdl_trigger();
    pdl_wait();
    extern __shared__ float wsh[]; /* [0, ns): split maxima, then weights; [ns, 2 ns): sums */
    const int head = blockIdx.x, z = z0 + blockIdx.y, r = rows ? rows[z] : z;
    const int d = blockIdx.z * blockDim.x + threadIdx.x, dd = d < D ? d : D - 1;
    const int ns = row_pos[r] / ATT_SPLIT + 1; /* ceil((pos + 1) / ATT_SPLIT) */
    const size_t hd = (size_t)z * n_heads + head;
    const float2 *ml = reinterpret_cast<const float2 *>(ws_ml) + hd * max_splits;
    const float *ad = ws_acc + hd * max_splits * D + dd;
    float v[ATT_COMB_UNROLL]; /* a chunk of splits: all loads in flight, then the sums in order */
#pragma unroll
    for (int k = 0; k < ATT_COMB_UNROLL; k++)
        v[k] = ad[(size_t)min(k, ns - 1) * D]; /* unconditional: no branches */
    for (int s = threadIdx.x; s < ns; s += blockDim.x) {
        float2 t = ml[s];
        wsh[s] = t.x;
        wsh[ns + s] = t.y;
    }
    __syncthreads();
    float M = -INFINITY;
    for (int s = 0; s < ns; s++)
        M = fmaxf(M, wsh[s]);
    __syncthreads();
    for (int s = threadIdx.x; s < ns; s += blockDim.x)
        wsh[s] = expf(wsh[s] - M);
    __syncthreads();
    float L = 0.0f, a = 0.0f;
    for (int s = 0; s < ns; s++)
        L += wsh[s] * wsh[ns + s];
    for (int s0 = 0; s0 < ns; s0 += ATT_COMB_UNROLL) {
        if (s0 > 0) {
#pragma unroll
            for (int k = 0; k < ATT_COMB_UNROLL; k++)
                v[k] = ad[(size_t)min(s0 + k, ns - 1) * D];
        }
#pragma unroll
        for (int k = 0; k < ATT_COMB_UNROLL; k++)
            if (s0 + k < ns)
                a += wsh[s0 + k] * v[k];
    }
    if (d < D)
        out[((size_t)r * n_heads + head) * D + d] = a / L;
}

/* ---- prefill: flash-style attention on the tensor cores --------------------------------------
 * For the rows of a request that brings >= 2 rows to the step (bf16 KV cache, head_dim 64 or
 * 128). One block of 4 warps per (64 query rows, q head, request); each warp owns 16 rows. Key
 * tiles of 64 (= one KV page) in order from position 0: S = Q·Kᵀ and O += P·V by mma.sync
 * m16n8k16 (bf16 operands, fp32 accumulators), an online softmax in fp32 per row with the row
 * max and sum combined across a row's 4 lanes by a fixed xor tree. A row's arithmetic depends
 * only on its own position: tiles past its causal limit that its block needs for other rows are
 * fully masked, and such a tile leaves m, l and O bit-for-bit unchanged (alpha = 1, p = 0).
 * The exponentials run without branches (p = expf(s - m) also for masked s = -inf: exactly +0)
 * and a tile wholly at or before the warp's first row skips the mask; neither changes a bit. */
#define FA_ROWS 64
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

/* S = Q·Kᵀ for the tile's 8 groups of 8 keys, k-step by k-step (each sc[nt] sums its k-steps in
 * order); ka: this lane's ldmatrix address in the K tile, &ks[lane % 8 + (lane / 16)·8][
 * ((lane / 8) % 2)·8]. Matrix j of an x4 ldmatrix (rows: keys (nt + j / 2)·8 .. + 7, columns
 * 16·kk + (j % 2)·8 .. + 7, nt even) gives lane (g, t) its row g, columns 2t, 2t + 1: the b0, b1
 * of key group nt, then of nt + 1, the same words the mma B fragment read one by one. */
template <int D>
__device__ __forceinline__ static void fa_scores(float (*sc)[4], const uint32_t (*qa)[4],
                                                 unsigned ka)
{
#pragma unroll
    for (int nt = 0; nt < FA_KEYS / 8; nt++)
        sc[nt][0] = sc[nt][1] = sc[nt][2] = sc[nt][3] = 0.0f;
#pragma unroll
    for (int kk = 0; kk < D / 16; kk++)
#pragma unroll
        for (int nt = 0; nt < FA_KEYS / 8; nt += 2) {
            uint32_t b0, b1, b2, b3;
            cuda_ldsm_x4<false>(ka + (nt * 8 * (D + 8) + kk * 16) * 2, b0, b1, b2, b3);
            cuda_mma_bf16(sc[nt], qa[kk][0], qa[kk][1], qa[kk][2], qa[kk][3], b0, b1);
            cuda_mma_bf16(sc[nt + 1], qa[kk][0], qa[kk][1], qa[kk][2], qa[kk][3], b2, b3);
        }
}

/* O += P·V, 16 keys per step; va: this lane's ldmatrix address in the V tile,
 * &vs[lane % 8 + ((lane / 8) % 2)·8][(lane / 16)·8]. */
template <int D>
__device__ __forceinline__ static void fa_pv(float (*o)[4], const float (*p)[4], unsigned va)
{
#pragma unroll
    for (int kk = 0; kk < FA_KEYS / 16; kk++) {
        uint32_t a0 = cuda_pack_bf16x2(p[2 * kk][0], p[2 * kk][1]);
        uint32_t a1 = cuda_pack_bf16x2(p[2 * kk][2], p[2 * kk][3]);
        uint32_t a2 = cuda_pack_bf16x2(p[2 * kk + 1][0], p[2 * kk + 1][1]);
        uint32_t a3 = cuda_pack_bf16x2(p[2 * kk + 1][2], p[2 * kk + 1][3]);
#pragma unroll
        for (int dt = 0; dt < D / 8; dt += 2) {
            /* B fragments of V[16 keys][d: dt·8 .. dt·8 + 15], transposed by ldmatrix:
             * b0 = V[kk·16 + 2t, +1][dt·8 + g], b1 = the same 8 keys further */
            uint32_t b0, b1, b2, b3;
            cuda_ldsm_x4<true>(va + (kk * 16 * (D + 8) + dt * 8) * 2, b0, b1, b2, b3);
            cuda_mma_bf16(o[dt], a0, a1, a2, a3, b0, b1);
            cuda_mma_bf16(o[dt + 1], a0, a1, a2, a3, b2, b3);
        }
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

/* Dynamic shared memory of k_flash_prefill<D>: two stages of K and V tiles. */
#define FA_SMEM(D) ((size_t)2 * 2 * FA_TILE_BYTES(D))
/* Blocks an SM must hold at once: the register cap that lets it (168 for D = 128: 3 x 68 KB of
 * stages fit; 128 for D = 64) holds without spills, and more warps hide more of the latency of
 * the serial parts of a tile (max and sum trees, shuffles, barriers). */
#define FA_MIN_BLOCKS(D) ((D) == 128 ? 3 : 4)

template <int D>
__global__ __launch_bounds__(128, FA_MIN_BLOCKS(D)) static void k_flash_prefill(
    const float *q, const int *units, const int *table, int pps, int n_pages, int layer,
    int n_heads, int nkv, float scale, const __nv_bfloat16 *K, const __nv_bfloat16 *V,
    float *out, __nv_bfloat16 *outb)
{
    /* [stage][K: 0, V: 1][key][D + 8]: tile kt + 1 loads (cp.async) while tile kt is multiplied */
    extern __shared__ __align__(16) unsigned char fa_smem[];
    const int *u = units + 4 * blockIdx.z;
    const int row0 = u[0], len = u[1], slot = u[2], pos0 = u[3];
    /* the longest q tiles (most key tiles) first, so that they do not trail the grid */
    const int qt = gridDim.x - 1 - blockIdx.x, hq = blockIdx.y, hk = hq / (n_heads / nkv);
    if (qt * FA_ROWS >= len)
        return;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
    const int i0 = qt * FA_ROWS + warp * 16; /* this warp's first row (within the request) */
    const int ra = i0 + g, rb = i0 + g + 8;
    /* Q fragments, bf16 */
    uint32_t qa[D / 16][4];
    const float *qpa = q + ((size_t)(row0 + ra) * n_heads + hq) * D;
    const float *qpb = q + ((size_t)(row0 + rb) * n_heads + hq) * D;
#pragma unroll
    for (int kk = 0; kk < D / 16; kk++) {
        int d = kk * 16 + 2 * t;
        qa[kk][0] = ra < len ? cuda_pack_bf16x2(qpa[d], qpa[d + 1]) : 0u;
        qa[kk][1] = rb < len ? cuda_pack_bf16x2(qpb[d], qpb[d + 1]) : 0u;
        qa[kk][2] = ra < len ? cuda_pack_bf16x2(qpa[d + 8], qpa[d + 9]) : 0u;
        qa[kk][3] = rb < len ? cuda_pack_bf16x2(qpb[d + 8], qpb[d + 9]) : 0u;
    }
    float o[D / 8][4];
#pragma unroll
    for (int i = 0; i < D / 8; i++)
        o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.0f;
    float ma = -INFINITY, mb = -INFINITY, la = 0.0f, lb = 0.0f;
    const int last_row = min(qt * FA_ROWS + FA_ROWS - 1, len - 1);
    const int max_pos = pos0 + len - 1; /* the last position written this step */
    const int n_tiles = (pos0 + last_row) / FA_KEYS + 1;
    const int qpos_a = pos0 + ra, qpos_b = pos0 + rb;
    /* per-thread addresses, fixed for the kernel: the tile copy's row and chunk, the global
     * offset of its first 16 bytes in page 0 of the layer, its shared address in stage 0, and
     * the K and V ldmatrix addresses in stage 0 */
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
    const int *pages = table + slot * pps;
    size_t off = ld_off + (size_t)pages[0] * page_elems;
    fa_load_tile<D>(ld_dst, K + off, V + off, ld_step, max_pos - ld_row);
    asm volatile("cp.async.commit_group;\n" ::: "memory");
    int page_next = n_tiles > 1 ? pages[1] : 0; /* read a tile ahead of its copy */
    for (int kt = 0; kt < n_tiles; kt++) {
        const unsigned stage = (kt & 1) * 2 * FA_TILE_BYTES(D);
        /* one barrier a tile: tile kt is in (its copy was the only one in flight) and every
         * warp is done with tile kt - 1, whose stage tile kt + 1 then fills */
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
        float sc[FA_KEYS / 8][4];
        fa_scores<D>(sc, qa, ka + stage);
        /* scale; the causal mask only where a key of the tile is past the warp's first row (a
         * tile wholly at or before it keeps every score: the same values as with the mask) */
#pragma unroll
        for (int nt = 0; nt < FA_KEYS / 8; nt++)
#pragma unroll
            for (int j = 0; j < 4; j++)
                sc[nt][j] = sc[nt][j] * scale;
        if (kt * FA_KEYS + FA_KEYS - 1 > pos0 + i0) {
            /* key kt·64 + nt·8 + 2t + (j & 1) is past row position qpos */
            const int lim_a = qpos_a - kt * FA_KEYS - 2 * t, lim_b = qpos_b - kt * FA_KEYS - 2 * t;
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
        fa_pv<D>(o, sc, va + stage);
    }
    /* row rb's output is 8 rows of n_heads·D past row ra's; outb (the bf16 shadow, when given):
     * the same floats rounded as cuda_rows_to_bf16 rounds them */
    const size_t oa = ((size_t)(row0 + ra) * n_heads + hq) * D + 2 * t;
    const size_t ob = oa + 8 * (size_t)n_heads * D;
#pragma unroll
    for (int dt = 0; dt < D / 8; dt++) {
        if (ra < len) {
            const float v0 = o[dt][0] / la, v1 = o[dt][1] / la;
            out[oa + dt * 8] = v0;
            out[oa + dt * 8 + 1] = v1;
            if (outb)
                *reinterpret_cast<__nv_bfloat162 *>(outb + oa + dt * 8) =
                    __floats2bfloat162_rn(v0, v1);
        }
        if (rb < len) {
            const float v2 = o[dt][2] / lb, v3 = o[dt][3] / lb;
            out[ob + dt * 8] = v2;
            out[ob + dt * 8 + 1] = v3;
            if (outb)
                *reinterpret_cast<__nv_bfloat162 *>(outb + ob + dt * 8) =
                    __floats2bfloat162_rn(v2, v3);
        }
    }
}

/* Whether decode-only steps fold the kv store into the split kernel: yes unless NY_ATT_FOLD=0
 * (A/B timing; the results are bit-identical either way). */
static int att_fold(void)
{
    static int v = -1;
    return cuda_env_on("NY_ATT_FOLD", &v);
}

/* The split path's workspace for n rows: acc, then ml from a 16-byte boundary (see the decode
 * section); grown on demand. */
static int att_workspace(struct engine_backend *be, int n, int n_heads, int D, int max_splits,
                         float **acc, float **ml, struct ny_err *err)
{
    size_t hs = (size_t)n * n_heads * max_splits, acc_n = (hs * D + 3) / 4 * 4;
    void *ws;
    int rc = cuda_scratch(be, CUDA_SCRATCH_ATT, (acc_n + hs * 2) * sizeof(float), &ws, err);
    if (rc)
        return rc;
    *acc = (float *)ws;
    *ml = (float *)ws + acc_n;
    return NY_OK;
}

/* Split path for n rows (list: their indices, NULL = rows 0..n-1) over a cache of T. */
template <typename T>
static int att_split(struct engine_backend *be, const struct engine_kv *kv, int layer,
                     const float *q, const int *list, int n, int n_heads, float scale,
                     int max_splits, const float *knew, const float *vnew, float *out,
                     struct ny_err *err)
{
    const int nkv = kv->shape.n_kv_heads, D = kv->shape.head_dim;
    float *acc, *ml;
    int rc = att_workspace(be, n, n_heads, D, max_splits, &acc, &ml, err);
    if (rc)
        return rc;
    size_t shm = att_smem_bytes(n_heads / nkv, D, sizeof(T));
    if (shm > 48 * 1024)
        CU_CHECK(be, cudaFuncSetAttribute(k_att_partial<T>,
                                          cudaFuncAttributeMaxDynamicSharedMemorySize, (int)shm),
                 "attention shared memory");
    size_t cshm = (size_t)max_splits * 2 * sizeof(float);
    if (cshm > 48 * 1024)
        CU_CHECK(be, cudaFuncSetAttribute(k_att_combine,
                                          cudaFuncAttributeMaxDynamicSharedMemorySize, (int)cshm),
                 "attention combine shared memory");
    const int tb = D < 128 ? 64 : 128;
    /* rows z0 .. z0 + c - 1 a launch pair (a grid's y and z hold at most 65,535) */
    for (int z0 = 0; z0 < n; z0 += CUDA_GRID_YZ_MAX) {
        unsigned c = cuda_grid_rows(n - z0);
        rc = cuda_att_partial_tc(be, kv, layer, q, list, n_heads, scale, max_splits, acc, ml, z0,
                                 c, knew, vnew, err);
        if (rc < 0)
            return rc;
        if (!rc) /* the tensor cores did not take it: the fp32 kernel */
            CU_LAUNCH(be, "attention kernel", k_att_partial<T>,
                      dim3((unsigned)max_splits, (unsigned)nkv, c), dim3(ATT_THREADS), shm, q,
                      list, be->row_slot_d, be->row_pos_d, kv->table_d, kv->pages_per_slot,
                      kv->n_pages, layer, n_heads, nkv, D, scale, (T *)kv->k, (T *)kv->v,
                      max_splits, acc, ml, z0, knew, vnew);
        CU_LAUNCH(be, "attention combine kernel", k_att_combine,
                  dim3((unsigned)n_heads, c, (unsigned)((D + tb - 1) / tb)), dim3(tb), cshm, acc,
                  ml, list, be->row_pos_d, n_heads, D, max_splits, out, z0);
    }
    return NY_OK;
}

int cuda_op_attention(struct engine_backend *be, struct engine_kv *kv, int layer,
                      const struct engine_buf *q, const struct engine_buf *k,
                      const struct engine_buf *v, int n_heads, float scale,
                      struct engine_buf *out, struct ny_err *err)
{
    const struct engine_kv_shape *sh = &kv->shape;
    int nr = be->n_rows, nkv = sh->n_kv_heads, D = sh->head_dim;
    if (layer < 0 || layer >= sh->n_layers || n_heads <= 0 || nkv <= 0 || n_heads % nkv ||
        n_heads / nkv > ATT_MAX_GROUP || D <= 0 || D > ATT_MAX_DIM ||
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
    const struct cuda_step_sets *ss = &be->sets;
    /* Prefill rows (requests of >= 2 rows) take the tensor-core kernel when the cache is bf16
     * and head_dim is 64 or 128; every other row takes the split kernel. */
    int flash = kv->bf16 && (D == 64 || D == 128) && ss->units_n > 0;
    const int *list = flash ? be->sets_d + ss->single_all_off : NULL;
    int n_split_rows = flash ? ss->single_all_n : nr;
    int max_splits = 1;
    for (int s = 0; s < be->n_seqs; s++) {
        int len = be->seq_start_h[s + 1] - be->seq_start_h[s];
        int ns = (be->seq_pos0_h[s] + len - 1) / ATT_SPLIT + 1;
        if (len > 0 && (!flash || len == 1) && ns > max_splits)
            max_splits = ns;
    }
    dim3 gs((unsigned)nr, (unsigned)(nr <= 64 ? nkv : 1));
    int tb = nr <= 64 ? (D < 128 ? 64 : 128) : 256;
    const float *qd = (const float *)q->d;
    float *od = (float *)out->d;
    /* a step of one-row requests only: the split kernel stores k and v itself (fold) */
    const float *kn = NULL, *vn = NULL;
    if (ss->single_all_n == nr && att_fold()) {
        kn = (const float *)k->d;
        vn = (const float *)v->d;
    }
    if (kv->bf16) {
        const __nv_bfloat16 *Kc = (const __nv_bfloat16 *)kv->k, *Vc = (const __nv_bfloat16 *)kv->v;
        if (!kn)
            CU_LAUNCH(be, "kv store kernel", k_kv_store<__nv_bfloat16>, gs, dim3(tb), 0,
                      (const float *)k->d, (const float *)v->d, be->row_slot_d, be->row_pos_d,
                      kv->table_d, kv->pages_per_slot, kv->n_pages, layer, nkv, D,
                      (__nv_bfloat16 *)kv->k, (__nv_bfloat16 *)kv->v);
        if (flash) {
            dim3 gf((unsigned)((ss->units_max_len + FA_ROWS - 1) / FA_ROWS), (unsigned)n_heads,
                    (unsigned)ss->units_n);
            const int *units = be->sets_d + ss->units_off;
            static int allowed[CUDA_MAX_DEVICES]; /* 128-dim stages exceed 48 KB */
            int rc = cuda_smem_allow(be, (const void *)k_flash_prefill<128>, FA_SMEM(128),
                                     allowed, err);
            if (rc)
                return rc;
            /* the bf16 shadow of out for the o projection's staging (its units are these rows) */
            __nv_bfloat16 *ob;
            if ((rc = cuda_shadow_room(be, n_heads * D, &ob, err)))
                return rc;
            if (D == 128)
                k_flash_prefill<128><<<gf, 128, FA_SMEM(128), be->stream>>>(
                    qd, units, kv->table_d, kv->pages_per_slot, kv->n_pages, layer, n_heads, nkv,
                    scale, Kc, Vc, od, ob);
            else
                k_flash_prefill<64><<<gf, 128, FA_SMEM(64), be->stream>>>(
                    qd, units, kv->table_d, kv->pages_per_slot, kv->n_pages, layer, n_heads, nkv,
                    scale, Kc, Vc, od, ob);
            CU_LAUNCHED(be, "flash prefill kernel");
            cuda_shadow_mark(be, ob, od, n_heads * D);
        }
        if (!n_split_rows)
            return NY_OK;
        return att_split<__nv_bfloat16>(be, kv, layer, qd, list, n_split_rows, n_heads, scale,
                                        max_splits, kn, vn, od, err);
    }
    if (!kn) {
        k_kv_store<float><<<gs, tb, 0, be->stream>>>(
            (const float *)k->d, (const float *)v->d, be->row_slot_d, be->row_pos_d, kv->table_d,
            kv->pages_per_slot, kv->n_pages, layer, nkv, D, (float *)kv->k, (float *)kv->v);
        CU_LAUNCHED(be, "kv store kernel");
    }
    return att_split<float>(be, kv, layer, qd, list, nr, n_heads, scale, max_splits, kn, vn, od,
                            err);
}
