/* model_forward.c — the Llama forward pass, written once against the backend ops table: one step
 * turns a batch of rows (prompts and/or single decode tokens, grouped by request) into the logits
 * of each request's last row. Shapes: R rows, H hidden, Q = heads·head_dim, K = kv_heads·hd,
 * F intermediate, V vocab, S requests in the step — Q, K, F and V being this rank's shares under
 * tensor parallelism (model_tp.c), with one sum over the ranks after o and one after down. */
#include <math.h>
#include <string.h>

#include "engine_model_int.h"

static void fwd_free_bufs(struct engine_fwd *f)
{
    struct engine_buf **b[] = {&f->x, &f->h, &f->q, &f->k, &f->v, &f->att, &f->g, &f->u};
    for (size_t i = 0; i < sizeof b / sizeof b[0]; i++) {
        f->m->ops->buf_free(f->m->be, *b[i]);
        *b[i] = NULL;
    }
    f->cap_rows = 0;
}

/* Make the activation buffers hold `rows` rows and the logits `seqs` rows. */
static int fwd_reserve(struct engine_fwd *f, int rows, int seqs, struct ny_err *err)
{
    const struct engine_config *c = &f->m->cfg;
    const struct engine_backend_ops *ops = f->m->ops;
    int rc = NY_OK;
    if (rows > f->cap_rows) {
        fwd_free_bufs(f);
        size_t r = (size_t)rows, qd = (size_t)f->m->l_heads * c->head_dim;
        size_t kvd = (size_t)f->m->l_kv_heads * c->head_dim;
        struct {
            struct engine_buf **b;
            size_t w;
        } want[] = {{&f->x, (size_t)c->hidden}, {&f->h, (size_t)c->hidden}, {&f->q, qd},
                    {&f->k, kvd},  {&f->v, kvd}, {&f->att, qd},
                    {&f->g, (size_t)f->m->l_ff}, {&f->u, (size_t)f->m->l_ff}};
        for (size_t i = 0; i < sizeof want / sizeof want[0] && rc == NY_OK; i++)
            rc = ops->buf_alloc(f->m->be, r * want[i].w, want[i].b, err);
        if (rc != NY_OK) {
            fwd_free_bufs(f);
            return rc;
        }
        f->cap_rows = rows;
    }
    if (seqs > f->cap_seqs) {
        ops->buf_free(f->m->be, f->logits);
        f->logits = NULL;
        f->cap_seqs = 0;
        rc = ops->buf_alloc(f->m->be, (size_t)seqs * f->m->l_vocab, &f->logits, err);
        if (rc != NY_OK)
            return rc;
        int *lr = ny_reallocarray(f->last_rows, (size_t)seqs, sizeof *lr);
        if (!lr)
            return NY_ERR(err, NY_E_NOMEM, "out of memory");
        f->last_rows = lr;
        f->cap_seqs = seqs;
    }
    return NY_OK;
}

int engine_fwd_init(struct engine_fwd *f, struct engine_model *m, const struct engine_kv_shape *kvs,
                    struct ny_err *err)
{
    memset(f, 0, sizeof *f);
    f->m = m;
    return m->ops->kv_create(m->be, kvs, &f->kv, err);
}

void engine_fwd_fini(struct engine_fwd *f)
{
    if (!f->m)
        return;
    fwd_free_bufs(f);
    f->m->ops->buf_free(f->m->be, f->logits);
    f->m->ops->kv_destroy(f->m->be, f->kv);
    ny_free(f->last_rows);
    memset(f, 0, sizeof *f);
}

/* y = W·x (+ the LoRA terms of projection p of layer l). */
static int proj(struct engine_fwd *f, int l, enum engine_proj p, const struct engine_buf *x,
                struct engine_buf *y, struct ny_err *err)
{
    struct engine_model *m = f->m;
    const struct engine_layer *L = &m->layers[l];
    int out, in;
    engine_proj_shape_local(m, p, &out, &in);
    return m->ops->matmul(m->be, x, in, L->w[p], out, L->lora[p], L->lora[p] ? m->n_adapters : 0,
                          NULL, 0, y, err);
}

/* The projections ps[0..n) of layer l of the same input x into ys: one matmul_multi call when
 * the backend has it (bit-identical to separate calls), else one matmul each. */
static int proj_multi(struct engine_fwd *f, int l, const enum engine_proj *ps, int n,
                      const struct engine_buf *x, struct engine_buf *const *ys, struct ny_err *err)
{
    struct engine_model *m = f->m;
    if (!m->ops->matmul_multi || n > ENGINE_MATMUL_MAX_PARTS) {
        for (int i = 0; i < n; i++) {
            int rc = proj(f, l, ps[i], x, ys[i], err);
            if (rc)
                return rc;
        }
        return NY_OK;
    }
    const struct engine_layer *L = &m->layers[l];
    struct engine_matmul_part parts[ENGINE_MATMUL_MAX_PARTS];
    int in = 0;
    for (int i = 0; i < n; i++) {
        engine_proj_shape_local(m, ps[i], &parts[i].out, &in);
        parts[i].w = L->w[ps[i]];
        parts[i].lora = L->lora[ps[i]];
        parts[i].y = ys[i];
    }
    return m->ops->matmul_multi(m->be, x, in, parts, n, m->n_adapters, err);
}

/* Under tensor parallelism h holds this rank's partial o or down product (LoRA term included):
 * the sum over ranks, in rank order, makes the full one on every rank. */
static int tp_sum(struct engine_fwd *f, struct engine_buf *h, struct ny_err *err)
{
    struct engine_model *m = f->m;
    return m->tp > 1 ? m->ops->tp_allreduce(m->be, h, m->cfg.hidden, err) : NY_OK;
}

/* Under tensor parallelism, before the o or down product into h: its sum over the ranks may
 * start as the product's rows are done, and with it the residual add and the norm by w that
 * tp_sum_add_norm makes next (bit-identical); last: h (that norm's output) is read by the next
 * product alone; x_next: x is read next by the add + norm of the next announced sum (the
 * layer's down after its o, the next layer's o after a down). */
static int tp_announce(struct engine_fwd *f, struct engine_buf *h, const struct engine_buf *w,
                       int last, int x_next, struct ny_err *err)
{
    struct engine_model *m = f->m;
    const struct engine_backend_ops *ops = m->ops;
    if (m->tp < 2)
        return NY_OK;
    if (ops->tp_sum_announce_norm && ops->tp_allreduce_add_rmsnorm)
        return ops->tp_sum_announce_norm(m->be, h, m->cfg.hidden, f->x, w, m->cfg.rms_eps,
                                         last && ops->matmul_multi, x_next, err);
    return ops->tp_sum_announce ? ops->tp_sum_announce(m->be, h, m->cfg.hidden, err) : NY_OK;
}

/* x += h (the residual), then h = norm(x) with weight w: one add_rmsnorm call when the backend
 * has it (bit-identical), else add then rmsnorm. */
static int add_norm(struct engine_fwd *f, const struct engine_buf *w, struct ny_err *err)
{
    struct engine_model *m = f->m;
    const struct engine_config *c = &m->cfg;
    if (m->ops->add_rmsnorm)
        return m->ops->add_rmsnorm(m->be, f->x, f->h, w, c->hidden, c->rms_eps, f->h, err);
    int rc = m->ops->add(m->be, f->x, f->h, c->hidden, err);
    return rc ? rc : m->ops->rmsnorm(m->be, f->x, w, c->hidden, c->rms_eps, f->h, err);
}

/* Under tensor parallelism, the sum of the partials in h, then add_norm: one call when the
 * backend has it (bit-identical). */
static int tp_sum_add_norm(struct engine_fwd *f, const struct engine_buf *w, struct ny_err *err)
{
    struct engine_model *m = f->m;
    const struct engine_config *c = &m->cfg;
    if (m->tp > 1 && m->ops->tp_allreduce_add_rmsnorm)
        return m->ops->tp_allreduce_add_rmsnorm(m->be, f->x, f->h, w, c->hidden, c->rms_eps,
                                                f->h, err);
    int rc = tp_sum(f, f->h, err);
    return rc ? rc : add_norm(f, w, err);
}

/* h (a norm's output) is read by the next call alone, a product of all its parts at once
 * (engine_backend_ops.last_read); without matmul_multi the parts are separate calls: no hint. */
static void last_read_h(struct engine_fwd *f)
{
    struct engine_model *m = f->m;
    if (m->ops->last_read && m->ops->matmul_multi)
        m->ops->last_read(m->be, f->h);
}

/* Rotary embedding of q [R, Q] and k [R, K]: one rope_qk call when the backend has it
 * (bit-identical), else one rope each. */
static int fwd_rope(struct engine_fwd *f, struct ny_err *err)
{
    struct engine_model *m = f->m;
    int hd = m->cfg.head_dim;
    if (m->ops->rope_qk)
        return m->ops->rope_qk(m->be, f->q, m->l_heads, f->k, m->l_kv_heads, hd, m->inv_freq,
                               1.0f, err);
    int rc = m->ops->rope(m->be, f->q, m->l_heads, hd, m->inv_freq, 1.0f, err);
    return rc ? rc : m->ops->rope(m->be, f->k, m->l_kv_heads, hd, m->inv_freq, 1.0f, err);
}

/* h = (silu(g) ⊙ u)·Wdᵀ (+ down's LoRA terms), this rank's partial under tensor parallelism: one
 * swiglu_matmul call when the backend has it (bit-identical; g's prefill rows are left
 * unspecified, and nothing reads g again before the next layer's gate projection rewrites it),
 * else swiglu into g then the down projection. */
static int mlp_down(struct engine_fwd *f, int l, struct ny_err *err)
{
    struct engine_model *m = f->m;
    const struct engine_layer *L = &m->layers[l];
    if (!m->ops->swiglu_matmul) {
        int rc = m->ops->swiglu(m->be, f->g, f->u, m->l_ff, f->g, err);
        return rc ? rc : proj(f, l, ENGINE_DOWN, f->g, f->h, err);
    }
    int out, in;
    engine_proj_shape_local(m, ENGINE_DOWN, &out, &in);
    return m->ops->swiglu_matmul(m->be, f->g, f->u, in, L->w[ENGINE_DOWN], out,
                                 L->lora[ENGINE_DOWN],
                                 L->lora[ENGINE_DOWN] ? m->n_adapters : 0, f->h, err);
}

/* h = the MLP of layer l on h (this rank's partial under tensor parallelism): one mlp call when
 * the backend has it (the gate and up LoRA terms of prefill rows possibly rounded where the
 * swiglu reads them), else the gate and up products then mlp_down. */
static int mlp(struct engine_fwd *f, int l, const enum engine_proj *gu,
               struct engine_buf *const *gu_out, struct ny_err *err)
{
    struct engine_model *m = f->m;
    if (!m->ops->mlp || !m->ops->matmul_multi) {
        int rc = proj_multi(f, l, gu, 2, f->h, gu_out, err);
        return rc ? rc : mlp_down(f, l, err);
    }
    const struct engine_layer *L = &m->layers[l];
    struct engine_matmul_part parts[2];
    int in = 0, out, ff;
    for (int i = 0; i < 2; i++) {
        engine_proj_shape_local(m, gu[i], &parts[i].out, &in);
        parts[i].w = L->w[gu[i]];
        parts[i].lora = L->lora[gu[i]];
        parts[i].y = gu_out[i];
    }
    engine_proj_shape_local(m, ENGINE_DOWN, &out, &ff);
    return m->ops->mlp(m->be, f->h, in, parts, m->n_adapters, ff, L->w[ENGINE_DOWN], out,
                       L->lora[ENGINE_DOWN], f->h, err);
}

/* One decoder layer on f->x [R, H], in place (this rank's heads and MLP columns). On entry f->h
 * holds norm(x) with this layer's input norm; on return it holds norm(x) with next_norm (the next
 * layer's input norm, or the final norm after the last layer): each residual add is fused with
 * the norm that follows it. */
static int fwd_layer(struct engine_fwd *f, int l, const struct engine_buf *next_norm,
                     struct ny_err *err)
{
    struct engine_model *m = f->m;
    const struct engine_backend_ops *ops = m->ops;
    const struct engine_config *c = &m->cfg;
    const struct engine_layer *L = &m->layers[l];
    struct engine_backend *be = m->be;
    static const enum engine_proj qkv[3] = {ENGINE_Q, ENGINE_K, ENGINE_V};
    static const enum engine_proj gu[2] = {ENGINE_GATE, ENGINE_UP};
    struct engine_buf *const qkv_out[3] = {f->q, f->k, f->v}, *const gu_out[2] = {f->g, f->u};
    int rc;
    /* attention block: (h = norm(x) on entry); q,k,v = h·Wᵀ; rope; att; x += att·Woᵀ;
     * h = post_norm(x) */
    last_read_h(f);
    if ((rc = proj_multi(f, l, qkv, 3, f->h, qkv_out, err)) || (rc = fwd_rope(f, err)) ||
        (rc = ops->attention(be, f->kv, l, f->q, f->k, f->v, m->l_heads,
                             1.0f / sqrtf((float)c->head_dim), f->att, err)) ||
        (rc = tp_announce(f, f->h, L->post_norm, 1, 1, err)) ||
        (rc = proj(f, l, ENGINE_O, f->att, f->h, err)) ||
        (rc = tp_sum_add_norm(f, L->post_norm, err)))
        return rc;
    /* MLP block: x += (silu(h·Wgᵀ) ⊙ h·Wuᵀ)·Wdᵀ; h = next_norm(x) */
    /* a layer follows: its q/k/v product alone reads h, and its o sum's add + norm x next */
    const int more = l + 1 < c->n_layers;
    if ((rc = tp_announce(f, f->h, next_norm, more, more, err)))
        return rc;
    last_read_h(f);
    if ((rc = mlp(f, l, gu, gu_out, err)) ||
        (rc = tp_sum_add_norm(f, next_norm, err)))
        return rc;
    return NY_OK;
}

int engine_fwd_step(struct engine_fwd *f, const struct engine_batch *b, const int32_t *ids,
                    struct ny_err *err)
{
    struct engine_model *m = f->m;
    const struct engine_backend_ops *ops = m->ops;
    const struct engine_config *c = &m->cfg;
    int rc = fwd_reserve(f, b->n_rows, b->n_seqs, err);
    if (rc != NY_OK)
        return rc;
    for (int s = 0; s < b->n_seqs; s++)
        f->last_rows[s] = b->seq_start[s + 1] - 1;
    /* x = embed(ids); h = norm(x) with layer 0's input norm (the final norm if no layers) */
    const struct engine_buf *norm0 = c->n_layers > 0 ? m->layers[0].in_norm : m->final_norm;
    if ((rc = ops->step_begin(m->be, b, err)) ||
        (rc = ops->embed(m->be, m->embed, ids, c->hidden, f->x, err)) ||
        (rc = ops->rmsnorm(m->be, f->x, norm0, c->hidden, c->rms_eps, f->h, err)))
        return rc;
    for (int l = 0; l < c->n_layers; l++) {
        const struct engine_buf *next =
            l + 1 < c->n_layers ? m->layers[l + 1].in_norm : m->final_norm;
        if ((rc = fwd_layer(f, l, next, err)) != NY_OK)
            return rc;
    }
    /* logits of each request's last row: h (= final_norm(x))·W_lmᵀ (this rank's vocabulary
     * shard) */
    return ops->matmul(m->be, f->h, c->hidden, m->lm_head, m->l_vocab, NULL, 0, f->last_rows,
                       b->n_seqs, f->logits, err);
}

int engine_fwd_next(struct engine_fwd *f, const struct engine_batch *b, const int32_t *ids,
                    int32_t *next, struct ny_err *err)
{
    struct engine_model *m = f->m;
    int rc = engine_fwd_step(f, b, ids, err);
    if (rc != NY_OK)
        return rc;
    if (m->tp > 1)
        return m->ops->tp_argmax(m->be, f->logits, b->n_seqs, m->l_vocab, m->vocab_off, next,
                                 err);
    return m->ops->argmax(m->be, f->logits, b->n_seqs, m->l_vocab, next, err);
}
