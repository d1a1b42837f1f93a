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
                                     float *out, __nv_bfloat16 *outb, int z0)
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
    if (d < D) {
        const float y = a / L;
        out[((size_t)r * n_heads + head) * D + d] = y;
        if (outb) /* the bf16 shadow: y rounded as cuda_rows_to_bf16 rounds it */
            outb[((size_t)r * n_heads + head) * D + d] = __float2bfloat16_rn(y);
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
    /* every row of the step here: out's bf16 shadow too, where the step's products stage from
     * one (cuda_shadow_room: none for the steps that do not) */
    __nv_bfloat16 *ob = NULL;
    if (!list && n == be->n_rows && (rc = cuda_shadow_room(be, n_heads * D, &ob, err)))
        return rc;
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
                  ml, list, be->row_pos_d, n_heads, D, max_splits, out, ob, z0);
    }
    cuda_shadow_mark(be, ob, out, n_heads * D);
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
        if (!kn)
            CU_LAUNCH(be, "kv store kernel", k_kv_store<__nv_bfloat16>, gs, dim3(tb), 0,
                      (const float *)k->d, (const float *)v->d, be->row_slot_d, be->row_pos_d,
                      kv->table_d, kv->pages_per_slot, kv->n_pages, layer, nkv, D,
                      (__nv_bfloat16 *)kv->k, (__nv_bfloat16 *)kv->v);
        if (flash) {
            /* the bf16 shadow of out for the o projection's staging (its units are these rows) */
            __nv_bfloat16 *ob;
            int rc = cuda_shadow_room(be, n_heads * D, &ob, err);
            if (!rc)
                rc = cuda_flash_prefill(be, kv, layer, qd, n_heads, scale, od, ob, err);
            if (rc)
                return rc;
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
