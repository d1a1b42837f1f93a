/* cuda_att_decode.cu — decode attention's split partials on the tensor cores (bf16 KV cache,
 * head_dim 64 or 128): the same splits, workspace and combine as cuda_attention.cu's
 * k_att_partial, with S = Q·Kᵀ and Σ_j p_j·V_j by mma.sync m16n8k16 (bf16 operands, fp32
 * accumulators) in place of fp32 dot products. One warp a split: a block of ATD_WARPS warps takes
 * ATD_WARPS consecutive splits of one (kv head, row). The mma's 16 rows are the kv head's group of
 * q heads (8 <= G <= 16; rows past G are zero and never stored), its columns the split's 32 positions
 * (S) and then the head's D dimensions (O). Per split and head: s_j = scale · Σ_d bf16(q_d)·K_jd
 * (the mma's k order), m = max_j s_j (a lane's 8 positions in order, then xor 1, 2), p_j =
 * expf(s_j - m), l = Σ_j p_j (the same order), acc_d = Σ_j bf16(p_j)·V_jd (the mma's order).
 * Each depends only on the row's own q and cache: batch-invariant; q and p are rounded to bf16
 * as the flash prefill rounds them (the fp32 kernel keeps them fp32). */
#include "cuda_att.cuh"

#define ATD_WARPS 4
/* Groups of fewer q heads keep the fp32 kernel: the mma's 16 rows would be mostly padding. On
 * 4 x H100 (same call, NY_ATT_TC=0 as the baseline): the 70B card (8 heads a group) decodes at
 * batch 32 in 27.2 ms a step against 28.7, at batch 1 in 16.25 against 16.51; the 8B shape (4 a
 * group, one GPU) at batch 1 in 6.58-6.63 against 6.42-6.44. */
#define ATD_MIN_GROUP 8

/* 16 bytes from global src into shared dst by cp.async; zeros when !on (no byte read). */
__device__ __forceinline__ static void atd_cp16(unsigned dst, const void *src, bool on)
{
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src),
                 "r"(on ? 16 : 0)
                 : "memory");
}

/* Shared memory of a block: each warp's K and V tiles [ATT_SPLIT][D + 8] bf16 (rows padded by 16
 * bytes: ldmatrix without bank conflicts). */
static size_t atd_smem_bytes(int D) { return (size_t)ATD_WARPS * 2 * ATT_SPLIT * (D + 8) * 2; }

/* See the file comment. Fold (knew != NULL, decode-only steps): the split holding the row's own
 * position takes it from the fp32 k and v rows, rounded as the kv store rounds them, and stores it
 * into the cache; every other split holds positions of earlier steps only and copies them before
 * the wait for the previous kernel — k_att_partial's protocol. */
template <int D>
__global__ __launch_bounds__(ATD_WARPS * 32) static void k_att_partial_tc(
    const float *q, const int *rows, const int *row_slot, const int *row_pos, const int *table,
    int pps, int n_pages, int layer, int n_heads, int nkv, float scale, __nv_bfloat16 *K,
    __nv_bfloat16 *V, int max_splits, float *ws_acc, float *ws_ml, int z0, const float *knew,
    const float *vnew)
{
    pdl_trigger();
    extern __shared__ __align__(16) unsigned char atd_smem[];
    constexpr int KS = D + 8;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
    const int split = blockIdx.x * ATD_WARPS + warp, h = blockIdx.y, z = z0 + blockIdx.z;
    const int r = rows ? rows[z] : z;
    const int G = n_heads / nkv, len = row_pos[r] + 1, j0 = split * ATT_SPLIT;
    if (j0 >= len) { /* past the row's positions (the whole warp; no block barrier follows) */
        pdl_wait();
        return;
    }
    const int cnt = len - j0 < ATT_SPLIT ? len - j0 : ATT_SPLIT;
    __nv_bfloat16 *ks = reinterpret_cast<__nv_bfloat16 *>(atd_smem) + warp * 2 * ATT_SPLIT * KS;
    __nv_bfloat16 *vs = ks + ATT_SPLIT * KS;
    const unsigned sk = (unsigned)__cvta_generic_to_shared(ks);
    const unsigned sv = (unsigned)__cvta_generic_to_shared(vs);
    const size_t o = kv_off(table, pps, n_pages, layer, row_slot[r], j0, nkv, D, h);
    const size_t kvs = (size_t)nkv * D;
    const bool own = knew && j0 + cnt == len; /* fold: this split holds the row's position */
    /* positions [0, n) copied, the rest of the tile zero (but position skip, written by hand) */
    auto stage = [&](int n, int skip) {
        constexpr int per = D / 8; /* 16-byte chunks a row */
        for (int i = lane; i < ATT_SPLIT * per; i += 32) {
            const int j = i / per, c = (i % per) * 8;
            if (j == skip)
                continue;
            const bool on = j < n;
            const size_t src = on ? o + j * kvs + c : o;
            atd_cp16(sk + (j * KS + c) * 2, K + src, on);
            atd_cp16(sv + (j * KS + c) * 2, V + src, on);
        }
    };
    if (knew && !own)
        stage(cnt, -1);
    pdl_wait();
    if (!knew) {
        stage(cnt, -1);
    } else if (own) { /* the earlier positions by copy, the row's own from k and v */
        stage(cnt - 1, cnt - 1);
        const size_t src = ((size_t)r * nkv + h) * D, dst = o + (size_t)(cnt - 1) * kvs;
        for (int d = lane; d < D; d += 32) {
            const __nv_bfloat16 kt = kv_round(knew[src + d], K), vt = kv_round(vnew[src + d], V);
            ks[(cnt - 1) * KS + d] = kt;
            vs[(cnt - 1) * KS + d] = vt;
            K[dst + d] = kt;
            V[dst + d] = vt;
        }
    }
    /* Q fragments (rows: the group's heads), bf16, while the copies fly */
    const float *qg = q + ((size_t)r * n_heads + (size_t)h * G) * D;
    const float *qa_p = g < G ? qg + (size_t)g * D : nullptr;
    const float *qb_p = g + 8 < G ? qg + (size_t)(g + 8) * D : nullptr;
    uint32_t qa[D / 16][4];
#pragma unroll
    for (int kk = 0; kk < D / 16; kk++) {
        const int d = kk * 16 + 2 * t;
        qa[kk][0] = qa_p ? cuda_pack_bf16x2(qa_p[d], qa_p[d + 1]) : 0u;
        qa[kk][1] = qb_p ? cuda_pack_bf16x2(qb_p[d], qb_p[d + 1]) : 0u;
        qa[kk][2] = qa_p ? cuda_pack_bf16x2(qa_p[d + 8], qa_p[d + 9]) : 0u;
        qa[kk][3] = qb_p ? cuda_pack_bf16x2(qb_p[d + 8], qb_p[d + 9]) : 0u;
    }
    asm volatile("cp.async.commit_group;\ncp.async.wait_group 0;\n" ::: "memory");
    __syncwarp();
    /* S: 4 tiles of 8 positions, k-step by k-step (cuda_attention.cu's fa_scores scheme) */
    float sc[ATT_SPLIT / 8][4];
#pragma unroll
    for (int nt = 0; nt < ATT_SPLIT / 8; nt++)
        sc[nt][0] = sc[nt][1] = sc[nt][2] = sc[nt][3] = 0.0f;
    const unsigned ka = sk + ((lane % 8 + lane / 16 * 8) * KS + (lane / 8) % 2 * 8) * 2;
#pragma unroll
    for (int kk = 0; kk < D / 16; kk++)
#pragma unroll
        for (int nt = 0; nt < ATT_SPLIT / 8; nt += 2) {
            uint32_t b0, b1, b2, b3;
            cuda_ldsm_x4<false>(ka + (nt * 8 * KS + kk * 16) * 2, b0, b1, b2, b3);
            cuda_mma_bf16(sc[nt], qa[kk][0], qa[kk][1], qa[kk][2], qa[kk][3], b0, b1);
            cuda_mma_bf16(sc[nt + 1], qa[kk][0], qa[kk][1], qa[kk][2], qa[kk][3], b2, b3);
        }
    /* softmax partials of rows g (j < 2) and g + 8 (j >= 2): position nt·8 + 2t + (j & 1) */
    float ma = -INFINITY, mb = -INFINITY;
#pragma unroll
    for (int nt = 0; nt < ATT_SPLIT / 8; nt++)
#pragma unroll
        for (int j = 0; j < 4; j++) {
            const float x = nt * 8 + 2 * t + (j & 1) < cnt ? scale * sc[nt][j] : -INFINITY;
            sc[nt][j] = x;
            if (j < 2)
                ma = fmaxf(ma, x);
            else
                mb = fmaxf(mb, x);
        }
    ma = fmaxf(ma, __shfl_xor_sync(0xffffffffu, ma, 1));
    ma = fmaxf(ma, __shfl_xor_sync(0xffffffffu, ma, 2));
    mb = fmaxf(mb, __shfl_xor_sync(0xffffffffu, mb, 1));
    mb = fmaxf(mb, __shfl_xor_sync(0xffffffffu, mb, 2));
    float la = 0.0f, lb = 0.0f;
#pragma unroll
    for (int nt = 0; nt < ATT_SPLIT / 8; nt++)
#pragma unroll
        for (int j = 0; j < 4; j++) {
            const float p = expf(sc[nt][j] - (j < 2 ? ma : mb)); /* masked: expf(-inf) = +0 */
            sc[nt][j] = p;
            if (j < 2)
                la += p;
            else
                lb += p;
        }
    la += __shfl_xor_sync(0xffffffffu, la, 1);
    la += __shfl_xor_sync(0xffffffffu, la, 2);
    lb += __shfl_xor_sync(0xffffffffu, lb, 1);
    lb += __shfl_xor_sync(0xffffffffu, lb, 2);
    /* O = P·V, 16 positions a k-step (fa_pv's scheme) */
    float ov[D / 8][4];
#pragma unroll
    for (int i = 0; i < D / 8; i++)
        ov[i][0] = ov[i][1] = ov[i][2] = ov[i][3] = 0.0f;
    const unsigned va = sv + ((lane % 8 + (lane / 8) % 2 * 8) * KS + (lane / 16) * 8) * 2;
#pragma unroll
    for (int kk = 0; kk < ATT_SPLIT / 16; kk++) {
        const uint32_t a0 = cuda_pack_bf16x2(sc[2 * kk][0], sc[2 * kk][1]);
        const uint32_t a1 = cuda_pack_bf16x2(sc[2 * kk][2], sc[2 * kk][3]);
        const uint32_t a2 = cuda_pack_bf16x2(sc[2 * kk + 1][0], sc[2 * kk + 1][1]);
        const uint32_t a3 = cuda_pack_bf16x2(sc[2 * kk + 1][2], sc[2 * kk + 1][3]);
#pragma unroll
        for (int dt = 0; dt < D / 8; dt += 2) {
            uint32_t b0, b1, b2, b3;
            cuda_ldsm_x4<true>(va + (kk * 16 * KS + dt * 8) * 2, b0, b1, b2, b3);
            cuda_mma_bf16(ov[dt], a0, a1, a2, a3, b0, b1);
            cuda_mma_bf16(ov[dt + 1], a0, a1, a2, a3, b2, b3);
        }
    }
    /* the partials of heads g and g + 8 of the group (k_att_partial's workspace layout) */
    const size_t hd = (size_t)z * n_heads + (size_t)h * G;
#pragma unroll
    for (int half = 0; half < 2; half++) {
        const int head = g + 8 * half;
        if (head >= G)
            continue;
        const size_t e = (hd + head) * max_splits + split;
        float *acc = ws_acc + e * D + 2 * t;
#pragma unroll
        for (int dt = 0; dt < D / 8; dt++)
            *reinterpret_cast<float2 *>(acc + dt * 8) =
                make_float2(ov[dt][2 * half], ov[dt][2 * half + 1]);
        if (t == 0)
            *reinterpret_cast<float2 *>(ws_ml + e * 2) =
                half ? make_float2(mb, lb) : make_float2(ma, la);
    }
}

/* Whether decode splits over a bf16 cache run here: yes unless NY_ATT_TC=0 (A/B; the fp32
 * kernel's arithmetic, q and p kept in fp32). */
static int att_tc(void)
{
    static int v = -1;
    return cuda_env_on("NY_ATT_TC", &v);
}

int cuda_att_partial_tc(struct engine_backend *be, const struct engine_kv *kv, int layer,
                        const float *q, const int *list, int n_heads, float scale,
                        int max_splits, float *acc, float *ml, int z0, unsigned c,
                        const float *knew, const float *vnew, struct ny_err *err)
{
    const int nkv = kv->shape.n_kv_heads, D = kv->shape.head_dim;
    const int G = n_heads / nkv;
    if (!kv->bf16 || (D != 64 && D != 128) || G < ATD_MIN_GROUP || G > 16 || !att_tc())
        return 0;
    const size_t shm = atd_smem_bytes(D);
    static int allowed[2][CUDA_MAX_DEVICES];
    const void *fn = D == 128 ? (const void *)k_att_partial_tc<128>
                              : (const void *)k_att_partial_tc<64>;
    int rc = cuda_smem_allow(be, fn, shm, allowed[D == 128], err);
    if (rc)
        return rc;
    dim3 grid((unsigned)((max_splits + ATD_WARPS - 1) / ATD_WARPS), (unsigned)nkv, c);
    __nv_bfloat16 *Kc = (__nv_bfloat16 *)kv->k, *Vc = (__nv_bfloat16 *)kv->v;
    if (D == 128)
        CU_LAUNCH(be, "attention kernel (tensor cores)", k_att_partial_tc<128>, grid,
                  dim3(ATD_WARPS * 32), shm, q, list, be->row_slot_d, be->row_pos_d, kv->table_d,
                  kv->pages_per_slot, kv->n_pages, layer, n_heads, nkv, scale, Kc, Vc,
                  max_splits, acc, ml, z0, knew, vnew);
    else
        CU_LAUNCH(be, "attention kernel (tensor cores)", k_att_partial_tc<64>, grid,
                  dim3(ATD_WARPS * 32), shm, q, list, be->row_slot_d, be->row_pos_d, kv->table_d,
                  kv->pages_per_slot, kv->n_pages, layer, n_heads, nkv, scale, Kc, Vc,
                  max_splits, acc, ml, z0, knew, vnew);
    return 1;
}
