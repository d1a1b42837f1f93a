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

#define ATT_SPLIT 64
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

/* Partial results (z = the row's index in the row list): ws[((z * n_heads + head) * max_splits + split) * (D + 2) + {0: m, 1: l, 2..}]
 * Keys and values of the split are staged through shared memory ATT_TILE positions at a time
 * (one page lookup per tile, 16-byte-friendly coalesced loads); every sum runs in a fixed order.
 * Dynamic shared memory: q [G][D], scores [G][ATT_SPLIT], tile [ATT_TILE][D + 1]. */
#define ATT_TILE 32
#define ATT_EPT 32 /* accumulators per thread: G * D <= ATT_EPT * ATT_THREADS */

/* Stage cnt positions x D of one kv head into tile [ATT_TILE][D + 1] (fp32). All of a thread's
 * 16-byte loads are issued before the first is used (one memory round trip per tile). */
template <typename T>
__device__ static void load_tile(const T *base, int cnt, int nkvD, int D, float *tile)
{
    constexpr int VEC = 16 / sizeof(T);
    constexpr int NV = ATT_TILE * ATT_MAX_DIM / VEC / ATT_THREADS;
    if (D % VEC) {
        for (int i = threadIdx.x; i < cnt * D; i += ATT_THREADS)
            tile[(i / D) * (D + 1) + i % D] = kv_load(base + (size_t)(i / D) * nkvD + i % D);
        return;
    }
    const int per_row = D / VEC, total = cnt * per_row;
    uint4 v[NV];
#pragma unroll
    for (int u = 0; u < NV; u++) {
        int i = threadIdx.x + u * ATT_THREADS;
        if (i < total)
            v[u] = *reinterpret_cast<const uint4 *>(base + (size_t)(i / per_row) * nkvD +
                                                    (i % per_row) * VEC);
    }
#pragma unroll
    for (int u = 0; u < NV; u++) {
        int i = threadIdx.x + u * ATT_THREADS;
        if (i < total) {
            const T *e = reinterpret_cast<const T *>(&v[u]);
            float *dst = tile + (i / per_row) * (D + 1) + (i % per_row) * VEC;
#pragma unroll
            for (int k = 0; k < VEC; k++)
                dst[k] = kv_load(e + k);
        }
    }
}

template <typename T>
__global__ __launch_bounds__(ATT_THREADS) static void k_att_partial(
    const float *q, const int *rows, const int *row_slot, const int *row_pos, const int *table,
    int pps, int n_pages, int layer, int n_heads, int nkv, int D, float scale, const T *K,
    const T *V, int max_splits, float *ws)
{
    extern __shared__ float smem[];
    __shared__ float red[ATT_THREADS / 32];
    const int split = blockIdx.x, h = blockIdx.y, z = blockIdx.z, r = rows ? rows[z] : z;
    const int G = n_heads / nkv, len = row_pos[r] + 1, j0 = split * ATT_SPLIT;
    if (j0 >= len)
        return;
    float *qs = smem, *ps = smem + G * D, *tile = ps + G * ATT_SPLIT;
    const int n = len - j0 < ATT_SPLIT ? len - j0 : ATT_SPLIT;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, slot = row_slot[r];
    const int nkvD = nkv * D;
    for (int i = threadIdx.x; i < G * D; i += ATT_THREADS)
        qs[i] = q[((size_t)r * n_heads + h * G) * D + i];
    /* pass 1: scores, tile by tile; (g, j) pairs over threads, d in order */
    for (int sub = 0; sub < n; sub += ATT_TILE) {
        int cnt = n - sub < ATT_TILE ? n - sub : ATT_TILE;
        __syncthreads();
        load_tile(K + kv_off(table, pps, n_pages, layer, slot, j0 + sub, nkv, D, h), cnt, nkvD, D,
                  tile);
        __syncthreads();
        for (int pr = threadIdx.x; pr < G * cnt; pr += ATT_THREADS) {
            int g = pr / cnt, jj = pr % cnt;
            const float *qg = qs + g * D, *kt = tile + jj * (D + 1);
            float s = 0.0f;
            for (int d = 0; d < D; d++)
                s += qg[d] * kt[d];
            ps[g * ATT_SPLIT + sub + jj] = scale * s;
        }
    }
    __syncthreads();
    float *base = ws + (((size_t)z * n_heads + h * G) * max_splits + split) * (D + 2);
    /* pass 2: per head, max then sum of exponentials by fixed trees */
    for (int g = 0; g < G; g++) {
        float *pg = ps + g * ATT_SPLIT;
        float m = -INFINITY;
        for (int j = threadIdx.x; j < n; j += ATT_THREADS)
            m = fmaxf(m, pg[j]);
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
            float e = expf(pg[j] - m);
            pg[j] = e;
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
    /* pass 3: weighted values, tile by tile; each (g, d) accumulates positions in order */
    float acc[ATT_EPT];
#pragma unroll
    for (int i = 0; i < ATT_EPT; i++)
        acc[i] = 0.0f;
    for (int sub = 0; sub < n; sub += ATT_TILE) {
        int cnt = n - sub < ATT_TILE ? n - sub : ATT_TILE;
        __syncthreads();
        load_tile(V + kv_off(table, pps, n_pages, layer, slot, j0 + sub, nkv, D, h), cnt, nkvD, D,
                  tile);
        __syncthreads();
#pragma unroll
        for (int i = 0; i < ATT_EPT; i++) {
            int e = threadIdx.x + i * ATT_THREADS;
            if (e < G * D) {
                int g = e / D, d = e % D;
                const float *pg = ps + g * ATT_SPLIT + sub;
                float a = acc[i];
                for (int jj = 0; jj < cnt; jj++)
                    a += pg[jj] * tile[jj * (D + 1) + d];
                acc[i] = a;
            }
        }
    }
#pragma unroll
    for (int i = 0; i < ATT_EPT; i++) {
        int e = threadIdx.x + i * ATT_THREADS;
        if (e < G * D)
            base[(size_t)(e / D) * max_splits * (D + 2) + 2 + e % D] = acc[i];
    }
}

/* Combine a row's splits in split order. Dynamic shared memory: 2 * max_splits floats. */
__global__ static void k_att_combine(const float *ws, const int *rows, const int *row_pos,
                                     int n_heads, int D, int max_splits, float *out)
{
    extern __shared__ float wsh[]; /* [0, ns): split weights; [ns, 2 ns): split maxima */
    int head = blockIdx.x, z = blockIdx.y, r = rows ? rows[z] : z;
    int ns = (row_pos[r] + ATT_SPLIT) / ATT_SPLIT; /* ceil((pos + 1) / ATT_SPLIT) */
    const float *b = ws + ((size_t)z * n_heads + head) * max_splits * (D + 2);
    float *ms = wsh + ns;
    for (int s = threadIdx.x; s < ns; s += blockDim.x)
        ms[s] = b[(size_t)s * (D + 2)];
    __syncthreads();
    float M = -INFINITY;
    for (int s = 0; s < ns; s++)
        M = fmaxf(M, ms[s]);
    for (int s = threadIdx.x; s < ns; s += blockDim.x)
        wsh[s] = expf(ms[s] - M);
    __syncthreads();
    float L = 0.0f;
    for (int s = 0; s < ns; s++)
        L += wsh[s] * b[(size_t)s * (D + 2) + 1];
    for (int d = threadIdx.x; d < D; d += blockDim.x) {
        float a = 0.0f;
        for (int s = 0; s < ns; s++)
            a += wsh[s] * b[(size_t)s * (D + 2) + 2 + d];
        out[((size_t)r * n_heads + head) * D + d] = a / L;
    }
}

/* ---- prefill: flash-style attention on the tensor cores --------------------------------------
 * For the rows of a request that brings >= 2 rows to the step (bf16 KV cache, head_dim 64 or
 * 128). One block of 4 warps per (64 query rows, q head, request); each warp owns 16 rows. Key
 * tiles of 64 (= one KV page) in order from position 0: S = Q·Kᵀ and O += P·V by mma.sync
 * m16n8k16 (bf16 operands, fp32 accumulators), an online softmax in fp32 per row with the row
 * max and sum combined across a row's 4 lanes by a fixed xor tree. A row's arithmetic depends
 * only on its own position: tiles past its causal limit that its block needs for other rows are
 * fully masked, and such a tile leaves m, l and O bit-for-bit unchanged (alpha = 1, p = 0). */
#define FA_ROWS 64
#define FA_KEYS 64

__device__ __forceinline__ static uint32_t fa_pack(float lo, float hi)
{
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<uint32_t *>(&v);
}

__device__ __forceinline__ static void fa_mma(float *d, uint32_t a0, uint32_t a1, uint32_t a2,
                                              uint32_t a3, uint32_t b0, uint32_t b1)
{
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
                 "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

template <int D>
__global__ __launch_bounds__(128) static void k_flash_prefill(
    const float *q, const int *units, const int *table, int pps, int n_pages, int layer,
    int n_heads, int nkv, float scale, const __nv_bfloat16 *K, const __nv_bfloat16 *V,
    float *out)
{
    __shared__ __align__(16) __nv_bfloat16 ks[FA_KEYS][D + 8];
    __shared__ __align__(16) __nv_bfloat16 vt[D][FA_KEYS + 8];
    const int *u = units + 4 * blockIdx.z;
    const int row0 = u[0], len = u[1], slot = u[2], pos0 = u[3];
    const int qt = blockIdx.x, hq = blockIdx.y, hk = hq / (n_heads / nkv);
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
        qa[kk][0] = ra < len ? fa_pack(qpa[d], qpa[d + 1]) : 0u;
        qa[kk][1] = rb < len ? fa_pack(qpb[d], qpb[d + 1]) : 0u;
        qa[kk][2] = ra < len ? fa_pack(qpa[d + 8], qpa[d + 9]) : 0u;
        qa[kk][3] = rb < len ? fa_pack(qpb[d + 8], qpb[d + 9]) : 0u;
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
    const size_t tok = (size_t)nkv * D;
    for (int kt = 0; kt < n_tiles; kt++) {
        __syncthreads();
        int page = table[slot * pps + kt];
        size_t base = (((size_t)layer * n_pages + page) * CUDA_KV_PAGE) * tok + (size_t)hk * D;
#pragma unroll
        for (int it = 0; it < FA_KEYS * D / 8 / 128; it++) {
            int idx = threadIdx.x + it * 128, key = idx / (D / 8), c = idx % (D / 8);
            uint4 kv4 = make_uint4(0, 0, 0, 0), vv4 = make_uint4(0, 0, 0, 0);
            if (kt * FA_KEYS + key <= max_pos) {
                kv4 = *reinterpret_cast<const uint4 *>(K + base + key * tok + c * 8);
                vv4 = *reinterpret_cast<const uint4 *>(V + base + key * tok + c * 8);
            }
            *reinterpret_cast<uint4 *>(&ks[key][c * 8]) = kv4;
            const __nv_bfloat16 *vb = reinterpret_cast<const __nv_bfloat16 *>(&vv4);
#pragma unroll
            for (int e = 0; e < 8; e++)
                vt[c * 8 + e][key] = vb[e];
        }
        __syncthreads();
        /* S = Q Kᵀ for 8 groups of 8 keys */
        float sc[FA_KEYS / 8][4];
#pragma unroll
        for (int nt = 0; nt < FA_KEYS / 8; nt++) {
            sc[nt][0] = sc[nt][1] = sc[nt][2] = sc[nt][3] = 0.0f;
#pragma unroll
            for (int kk = 0; kk < D / 16; kk++) {
                uint32_t b0 = *reinterpret_cast<const uint32_t *>(&ks[nt * 8 + g][kk * 16 + 2 * t]);
                uint32_t b1 =
                    *reinterpret_cast<const uint32_t *>(&ks[nt * 8 + g][kk * 16 + 2 * t + 8]);
                fa_mma(sc[nt], qa[kk][0], qa[kk][1], qa[kk][2], qa[kk][3], b0, b1);
            }
        }
        /* scale, causal mask, tile max per row */
        float mxa = -INFINITY, mxb = -INFINITY;
#pragma unroll
        for (int nt = 0; nt < FA_KEYS / 8; nt++)
#pragma unroll
            for (int j = 0; j < 4; j++) {
                int kp = kt * FA_KEYS + nt * 8 + 2 * t + (j & 1);
                int qp = j < 2 ? qpos_a : qpos_b;
                float v = kp <= qp ? sc[nt][j] * scale : -INFINITY;
                sc[nt][j] = v;
                if (j < 2)
                    mxa = fmaxf(mxa, v);
                else
                    mxb = fmaxf(mxb, v);
            }
        mxa = fmaxf(mxa, __shfl_xor_sync(0xffffffffu, mxa, 1));
        mxa = fmaxf(mxa, __shfl_xor_sync(0xffffffffu, mxa, 2));
        mxb = fmaxf(mxb, __shfl_xor_sync(0xffffffffu, mxb, 1));
        mxb = fmaxf(mxb, __shfl_xor_sync(0xffffffffu, mxb, 2));
        float na = fmaxf(ma, mxa), nb = fmaxf(mb, mxb);
        /* rows with nothing unmasked yet keep alpha 1 and p 0 */
        float aa = na == -INFINITY ? 1.0f : expf(ma - na);
        float ab = nb == -INFINITY ? 1.0f : expf(mb - nb);
        float sa = 0.0f, sb = 0.0f;
#pragma unroll
        for (int nt = 0; nt < FA_KEYS / 8; nt++)
#pragma unroll
            for (int j = 0; j < 4; j++) {
                float m = j < 2 ? na : nb;
                float p = sc[nt][j] == -INFINITY ? 0.0f : expf(sc[nt][j] - m);
                sc[nt][j] = p;
                if (j < 2)
                    sa += p;
                else
                    sb += p;
            }
        sa += __shfl_xor_sync(0xffffffffu, sa, 1);
        sa += __shfl_xor_sync(0xffffffffu, sa, 2);
        sb += __shfl_xor_sync(0xffffffffu, sb, 1);
        sb += __shfl_xor_sync(0xffffffffu, sb, 2);
        la = la * aa + sa;
        lb = lb * ab + sb;
        ma = na;
        mb = nb;
#pragma unroll
        for (int dt = 0; dt < D / 8; dt++) {
            o[dt][0] *= aa;
            o[dt][1] *= aa;
            o[dt][2] *= ab;
            o[dt][3] *= ab;
        }
        /* O += P V, 16 keys per step */
#pragma unroll
        for (int kk = 0; kk < FA_KEYS / 16; kk++) {
            uint32_t a0 = fa_pack(sc[2 * kk][0], sc[2 * kk][1]);
            uint32_t a1 = fa_pack(sc[2 * kk][2], sc[2 * kk][3]);
            uint32_t a2 = fa_pack(sc[2 * kk + 1][0], sc[2 * kk + 1][1]);
            uint32_t a3 = fa_pack(sc[2 * kk + 1][2], sc[2 * kk + 1][3]);
#pragma unroll
            for (int dt = 0; dt < D / 8; dt++) {
                uint32_t b0 = *reinterpret_cast<const uint32_t *>(&vt[dt * 8 + g][kk * 16 + 2 * t]);
                uint32_t b1 =
                    *reinterpret_cast<const uint32_t *>(&vt[dt * 8 + g][kk * 16 + 2 * t + 8]);
                fa_mma(o[dt], a0, a1, a2, a3, b0, b1);
            }
        }
    }
#pragma unroll
    for (int dt = 0; dt < D / 8; dt++) {
        int d = dt * 8 + 2 * t;
        if (ra < len) {
            float *op = out + ((size_t)(row0 + ra) * n_heads + hq) * D + d;
            op[0] = o[dt][0] / la;
            op[1] = o[dt][1] / la;
        }
        if (rb < len) {
            float *op = out + ((size_t)(row0 + rb) * n_heads + hq) * D + d;
            op[0] = o[dt][2] / lb;
            op[1] = o[dt][3] / lb;
        }
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
        (n_heads / nkv) * D > ATT_EPT * ATT_THREADS ||
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
    size_t wsz = (size_t)(n_split_rows ? n_split_rows : 1) * n_heads * max_splits * (D + 2) *
                 sizeof(float);
    if (be->attn_ws_size < wsz) {
        int rc = cuda_stream_wait(be, "sync before workspace growth", err);
        if (rc)
            return rc;
        cudaFree(be->attn_ws);
        be->attn_ws = NULL;
        be->attn_ws_size = 0;
        CU_CHECK(be, cudaMalloc((void **)&be->attn_ws, wsz), "cudaMalloc attention workspace");
        be->attn_ws_size = wsz;
    }
    size_t shm = ((size_t)(n_heads / nkv) * (D + ATT_SPLIT) + (size_t)ATT_TILE * (D + 1)) * 4;
    if (shm > 48 * 1024) {
        CU_CHECK(be, cudaFuncSetAttribute(k_att_partial<float>,
                                          cudaFuncAttributeMaxDynamicSharedMemorySize, (int)shm),
                 "attention shared memory");
        CU_CHECK(be, cudaFuncSetAttribute(k_att_partial<__nv_bfloat16>,
                                          cudaFuncAttributeMaxDynamicSharedMemorySize, (int)shm),
                 "attention shared memory");
    }
    dim3 gs((unsigned)nr, (unsigned)nkv);
    dim3 gp((unsigned)max_splits, (unsigned)nkv, (unsigned)n_split_rows);
    int tb = D < 128 ? 64 : 128;
    const float *qd = (const float *)q->d;
    float *od = (float *)out->d;
    if (kv->bf16) {
        const __nv_bfloat16 *Kc = (const __nv_bfloat16 *)kv->k, *Vc = (const __nv_bfloat16 *)kv->v;
        k_kv_store<__nv_bfloat16><<<gs, tb, 0, be->stream>>>(
            (const float *)k->d, (const float *)v->d, be->row_slot_d, be->row_pos_d, kv->table_d,
            kv->pages_per_slot, kv->n_pages, layer, nkv, D, (__nv_bfloat16 *)kv->k,
            (__nv_bfloat16 *)kv->v);
        CU_LAUNCHED(be, "kv store kernel");
        if (flash) {
            dim3 gf((unsigned)((ss->units_max_len + FA_ROWS - 1) / FA_ROWS), (unsigned)n_heads,
                    (unsigned)ss->units_n);
            const int *units = be->sets_d + ss->units_off;
            if (D == 128)
                k_flash_prefill<128><<<gf, 128, 0, be->stream>>>(
                    qd, units, kv->table_d, kv->pages_per_slot, kv->n_pages, layer, n_heads, nkv,
                    scale, Kc, Vc, od);
            else
                k_flash_prefill<64><<<gf, 128, 0, be->stream>>>(
                    qd, units, kv->table_d, kv->pages_per_slot, kv->n_pages, layer, n_heads, nkv,
                    scale, Kc, Vc, od);
            CU_LAUNCHED(be, "flash prefill kernel");
        }
        if (n_split_rows)
            k_att_partial<__nv_bfloat16><<<gp, ATT_THREADS, shm, be->stream>>>(
                qd, list, be->row_slot_d, be->row_pos_d, kv->table_d, kv->pages_per_slot,
                kv->n_pages, layer, n_heads, nkv, D, scale, Kc, Vc, max_splits, be->attn_ws);
    } else {
        k_kv_store<float><<<gs, tb, 0, be->stream>>>(
            (const float *)k->d, (const float *)v->d, be->row_slot_d, be->row_pos_d, kv->table_d,
            kv->pages_per_slot, kv->n_pages, layer, nkv, D, (float *)kv->k, (float *)kv->v);
        CU_LAUNCHED(be, "kv store kernel");
        k_att_partial<float><<<gp, ATT_THREADS, shm, be->stream>>>(
            qd, list, be->row_slot_d, be->row_pos_d, kv->table_d, kv->pages_per_slot,
            kv->n_pages, layer, n_heads, nkv, D, scale, (const float *)kv->k,
            (const float *)kv->v, max_splits, be->attn_ws);
    }
    if (!n_split_rows)
        return NY_OK;
    CU_LAUNCHED(be, "attention kernel");
    k_att_combine<<<dim3((unsigned)n_heads, (unsigned)n_split_rows), tb,
                    (size_t)(max_splits * 2 + 8) * sizeof(float), be->stream>>>(
        be->attn_ws, list, be->row_pos_d, n_heads, D, max_splits, od);
    CU_LAUNCHED(be, "attention combine kernel");
    return NY_OK;
}
