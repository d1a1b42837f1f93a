/* cpu_attention.c — the CPU KV cache (one contiguous region per slot and layer) and causal
 * grouped-query attention over it; one task per (request, query head), rows in order. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_int.h"

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
    int rc = cpu_scratch_reserve(be, (size_t)shape->max_tokens, err);
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
};

static void attn_task(void *vctx, int task, int thread)
{
    struct attn_ctx *c = vctx;
    const struct engine_batch *b = c->be->batch;
    int s = task / c->n_heads, h = task % c->n_heads;
    int hd = c->kv->shape.head_dim, kvh = h / c->group;
    int slot = b->seq_slot[s];
    float *sc = cpu_scratch(c->be, thread);
    for (int r = b->seq_start[s]; r < b->seq_start[s + 1]; r++) {
        int pos = b->seq_pos0[s] + (r - b->seq_start[s]);
        const float *q = c->q + (size_t)r * c->n_heads * hd + (size_t)h * hd;
        float *o = c->out + (size_t)r * c->n_heads * hd + (size_t)h * hd;
        const float *kbase = c->kv->k + kv_off(c->kv, slot, c->layer, 0) + (size_t)kvh * hd;
        const float *vbase = c->kv->v + kv_off(c->kv, slot, c->layer, 0) + (size_t)kvh * hd;
        float mx = -INFINITY;
        for (int t = 0; t <= pos; t++) {
            const float *k = kbase + (size_t)t * c->kv->kvdim;
            float d = 0.0f;
            for (int i = 0; i < hd; i++)
                d += q[i] * k[i];
            sc[t] = d * c->scale;
            if (sc[t] > mx)
                mx = sc[t];
        }
        float sum = 0.0f;
        for (int t = 0; t <= pos; t++) {
            sc[t] = expf(sc[t] - mx);
            sum += sc[t];
        }
        for (int i = 0; i < hd; i++)
            o[i] = 0.0f;
        for (int t = 0; t <= pos; t++) {
            const float *v = vbase + (size_t)t * c->kv->kvdim;
            float p = sc[t] / sum;
            for (int i = 0; i < hd; i++)
                o[i] += p * v[i];
        }
    }
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
    struct attn_ctx c = {.be = be, .kv = kv, .layer = layer, .n_heads = n_heads,
                         .group = n_heads / sh->n_kv_heads, .scale = scale, .q = q->data,
                         .out = out->data};
    cpu_pool_run(be->pool, b->n_seqs * n_heads, attn_task, &c);
    return NY_OK;
}
