/* cpu_attention.c — the CPU KV cache (one contiguous region per slot and layer) and causal
 * grouped-query attention over it: per (request, query head, block of 64 rows) two sgemms and a
 * causal softmax. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

#include "cpu_int.h"

/* Query rows per attention task: a request's rows are cut into blocks of this many rows counted
 * from its own first row, so the partition never depends on the batch or the thread count. */
#define ATTN_ROW_BLOCK 64

static size_t kv_off(const struct engine_kv *kv, int slot, int layer, int pos)
{
    const struct engine_kv_shape *s = &kv->shape;
    return (((size_t)slot * s->n_layers + layer) * s->max_tokens + pos) * kv->kvdim;
}

int cpu_kv_create(struct engine_backend *be, const struct engine_kv_shape *shape,
                  struct engine_kv **out, struct ny_err *err)
{
    if (shape->n_layers < 1 || shape->n_kv_heads < 1 || shape->head_dim < 1 ||
        shape->n_slots < 1 || shape->max_tokens < 1)
        return NY_ERR(err, NY_E_INVALID, "cpu: KV cache shape has a zero or negative size");
    size_t kvdim, n;
    if (ny_mul_overflow((size_t)shape->n_kv_heads, (size_t)shape->head_dim, &kvdim) ||
        ny_mul_overflow(kvdim, (size_t)shape->max_tokens, &n) ||
        ny_mul_overflow(n, (size_t)shape->n_layers, &n) ||
        ny_mul_overflow(n, (size_t)shape->n_slots, &n) || ny_mul_overflow(n, sizeof(float), &n))
        return NY_ERR(err, NY_E_RANGE, "cpu: KV cache size overflows");
    size_t scratch;
    if (ny_mul_overflow((size_t)shape->max_tokens, ATTN_ROW_BLOCK, &scratch))
        return NY_ERR(err, NY_E_RANGE, "cpu: attention scratch overflows");
    int rc = cpu_scratch_reserve(be, scratch, err);
    if (rc != NY_OK)
        return rc;
    struct engine_kv *kv = ny_calloc(1, sizeof *kv);
    if (kv) {
        kv->k = ny_malloc(n);
        kv->v = ny_malloc(n);
        kv->len = ny_calloc((size_t)shape->n_slots, sizeof *kv->len);
    }
    if (!kv || !kv->k || !kv->v || !kv->len) {
        cpu_kv_destroy(be, kv);
        return NY_ERR(err, NY_E_NOMEM, "cpu: out of memory for a KV cache of %zu bytes (x2)", n);
    }
    kv->shape = *shape;
    kv->kvdim = kvdim;
    *out = kv;
    return NY_OK;
}

void cpu_kv_destroy(struct engine_backend *be, struct engine_kv *kv)
{
    (void)be;
    if (!kv)
        return;
    ny_free(kv->k);
    ny_free(kv->v);
    ny_free(kv->len);
    ny_free(kv);
}

int cpu_kv_slot_reset(struct engine_backend *be, struct engine_kv *kv, int slot,
                      struct ny_err *err)
{
    (void)be;
    if (slot < 0 || slot >= kv->shape.n_slots)
        return NY_ERR(err, NY_E_INTERNAL, "cpu: KV slot %d out of range", slot);
    kv->len[slot] = 0;
    return NY_OK;
}

struct attn_ctx {
    struct engine_backend *be;
    struct engine_kv *kv;
    int layer, n_heads, group;
    float scale;
    const float *q;
    float *out;
    const int *task_seq;   /* [n_seqs + 1] first task of each request */
};

/* One (request, query head, block of up to ATTN_ROW_BLOCK rows):
 *   S = scale · Q_blk · K[0..T)ᵀ (one sgemm), causal softmax per row, O_blk = P · V[0..T). */
static void attn_task(void *vctx, int task, int thread)
{
    struct attn_ctx *c = vctx;
    const struct engine_batch *b = c->be->batch;
    int s = 0;
    while (c->task_seq[s + 1] <= task)
        s++;
    int local = task - c->task_seq[s], h = local % c->n_heads, blk = local / c->n_heads;
    int hd = c->kv->shape.head_dim, kvh = h / c->group, qd = c->n_heads * hd;
    int kvdim = (int)c->kv->kvdim;
    int r0 = b->seq_start[s] + blk * ATTN_ROW_BLOCK;
    int rows = b->seq_start[s + 1] - r0 < ATTN_ROW_BLOCK ? b->seq_start[s + 1] - r0
                                                         : ATTN_ROW_BLOCK;
    int p0 = b->seq_pos0[s] + (r0 - b->seq_start[s]); /* position of the block's first row */
    int T = p0 + rows;                                /* keys the block's last row sees */
    float *sc = cpu_scratch(c->be, thread);           /* [rows, T] */
    const float *kb = c->kv->k + kv_off(c->kv, b->seq_slot[s], c->layer, 0) + (size_t)kvh * hd;
    const float *vb = c->kv->v + kv_off(c->kv, b->seq_slot[s], c->layer, 0) + (size_t)kvh * hd;
    const float *q = c->q + (size_t)r0 * qd + (size_t)h * hd;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, T, hd, c->scale, q, qd, kb, kvdim,
                0.0f, sc, T);
    for (int i = 0; i < rows; i++) {
        float *row = sc + (size_t)i * T;
        int last = p0 + i; /* causal: keys 0..last */
        float mx = -INFINITY, sum = 0.0f;
        for (int t = 0; t <= last; t++)
            mx = row[t] > mx ? row[t] : mx;
        for (int t = 0; t <= last; t++) {
            row[t] = expf(row[t] - mx);
            sum += row[t];
        }
        float inv = 1.0f / sum;
        for (int t = 0; t <= last; t++)
            row[t] *= inv;
        for (int t = last + 1; t < T; t++)
            row[t] = 0.0f;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, hd, T, 1.0f, sc, T, vb, kvdim,
                0.0f, c->out + (size_t)r0 * qd + (size_t)h * hd, qd);
}

int cpu_attention(struct engine_backend *be, struct engine_kv *kv, int layer,
                  const struct engine_buf *q, const struct engine_buf *k,
                  const struct engine_buf *v, int n_heads, float scale, struct engine_buf *out,
                  struct ny_err *err)
{
    const struct engine_batch *b = be->batch;
    const struct engine_kv_shape *sh = &kv->shape;
    if (layer < 0 || layer >= sh->n_layers || n_heads % sh->n_kv_heads != 0)
        return NY_ERR(err, NY_E_INTERNAL, "cpu: attention layer %d / heads %d invalid", layer,
                      n_heads);
    for (int s = 0; s < b->n_seqs; s++) {
        int slot = b->seq_slot[s], L = b->seq_start[s + 1] - b->seq_start[s];
        if (slot < 0 || slot >= sh->n_slots)
            return NY_ERR(err, NY_E_INTERNAL, "cpu: KV slot %d out of range", slot);
        if (b->seq_pos0[s] < 0 || b->seq_pos0[s] > sh->max_tokens - L)
            return NY_ERR(err, NY_E_RANGE, "request needs %d tokens of context; the KV cache "
                          "holds %d", b->seq_pos0[s] + L, sh->max_tokens);
        for (int i = 0; i < L; i++) {
            size_t off = kv_off(kv, slot, layer, b->seq_pos0[s] + i);
            size_t row = (size_t)(b->seq_start[s] + i) * kv->kvdim;
            memcpy(kv->k + off, k->data + row, kv->kvdim * sizeof(float));
            memcpy(kv->v + off, v->data + row, kv->kvdim * sizeof(float));
        }
        if (layer == 0)
            kv->len[slot] = b->seq_pos0[s] + L;
    }
    int rc = cpu_grow((void **)&be->work, &be->work_cap, (size_t)b->n_seqs + 1, sizeof(int), err);
    if (rc != NY_OK)
        return rc;
    int *task_seq = be->work, n_tasks = 0;
    double work = 0;
    for (int s = 0; s < b->n_seqs; s++) {
        int L = b->seq_start[s + 1] - b->seq_start[s];
        work += 2.0 * L * (b->seq_pos0[s] + L) * sh->head_dim * n_heads;
        task_seq[s] = n_tasks;
        n_tasks += n_heads * ((L + ATTN_ROW_BLOCK - 1) / ATTN_ROW_BLOCK);
    }
    task_seq[b->n_seqs] = n_tasks;
    struct attn_ctx c = {.be = be, .kv = kv, .layer = layer, .n_heads = n_heads,
                         .group = n_heads / sh->n_kv_heads, .scale = scale, .q = q->data,
                         .out = out->data, .task_seq = task_seq};
    cpu_pool_run(be->pool, n_tasks, attn_task, &c, work);
    return NY_OK;
}
