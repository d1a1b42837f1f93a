/* model_load.c — open a Hugging Face Llama checkpoint: config, safetensors (checked tensor by
 * tensor against the config), upload of every weight to the chosen backend. */
#include <string.h>
#include <unistd.h>

#include "engine_model_int.h"

static const char *const proj_names[ENGINE_N_PROJ] = {"q_proj", "k_proj", "v_proj", "o_proj",
                                                      "gate_proj", "up_proj", "down_proj"};

const char *engine_proj_name(enum engine_proj p)
{
    return proj_names[p];
}

const char *engine_proj_module(enum engine_proj p)
{
    static const char *const mods[ENGINE_N_PROJ] = {
        "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
        "mlp.gate_proj",    "mlp.up_proj",      "mlp.down_proj"};
    return mods[p];
}

void engine_proj_shape(const struct engine_config *c, enum engine_proj p, int *out, int *in)
{
    int qd = c->n_heads * c->head_dim, kvd = c->n_kv_heads * c->head_dim;
    switch (p) {
    case ENGINE_Q: *out = qd, *in = c->hidden; break;
    case ENGINE_K:
    case ENGINE_V: *out = kvd, *in = c->hidden; break;
    case ENGINE_O: *out = c->hidden, *in = qd; break;
    case ENGINE_GATE:
    case ENGINE_UP: *out = c->intermediate, *in = c->hidden; break;
    default: *out = c->hidden, *in = c->intermediate; break;
    }
}

/* Find and check the weight `name` [rows, cols] (cols == 0: a 1-D weight of rows) and upload
 * this rank's block of it (rows [row0, +nrows) and columns [col0, +ncols); nrows == 0: whole). */
static int upload_part(struct engine_model *m, const char *name, int rows, int cols, int row0,
                       int nrows, int col0, int ncols, struct engine_buf **out,
                       struct ny_err *err)
{
    const struct engine_tensor *t;
    int rc = engine_st_get(m->st, name, (uint64_t)rows, (uint64_t)cols, &t, err);
    if (rc != NY_OK)
        return rc;
    size_t R = cols ? (size_t)rows : 1, C = cols ? (size_t)cols : (size_t)rows;
    if (nrows == 0)
        row0 = 0, nrows = (int)R, col0 = 0, ncols = (int)C;
    rc = engine_upload_block(m, t->dtype, t->data, R, C, row0, nrows, col0, ncols, out, err);
    if (rc != NY_OK)
        ny_err_prefix(err, "%s: tensor '%s': ", t->file, name);
    return rc;
}

static int upload(struct engine_model *m, const char *name, int rows, int cols,
                  struct engine_buf **out, struct ny_err *err)
{
    return upload_part(m, name, rows, cols, 0, 0, 0, 0, out, err);
}

static int load_layer(struct engine_model *m, int l, struct ny_err *err)
{
    const struct engine_config *c = &m->cfg;
    struct engine_layer *L = &m->layers[l];
    char name[160];
    snprintf(name, sizeof name, "model.layers.%d.input_layernorm.weight", l);
    int rc = upload(m, name, c->hidden, 0, &L->in_norm, err);
    snprintf(name, sizeof name, "model.layers.%d.post_attention_layernorm.weight", l);
    if (rc == NY_OK)
        rc = upload(m, name, c->hidden, 0, &L->post_norm, err);
    for (int p = 0; p < ENGINE_N_PROJ && rc == NY_OK; p++) {
        int out, in, r0, nr, c0, nc;
        engine_proj_shape(c, (enum engine_proj)p, &out, &in);
        engine_proj_block(m, (enum engine_proj)p, 0, 0, &r0, &nr, &c0, &nc);
        snprintf(name, sizeof name, "model.layers.%d.%s.weight", l,
                 engine_proj_module((enum engine_proj)p));
        rc = upload_part(m, name, out, in, r0, nr, c0, nc, &L->w[p], err);
    }
    return rc;
}

/* This rank's weights: embedding and norms whole, lm_head rows of its vocabulary shard. */
static int load_weights(struct engine_model *m, void *ctx, struct ny_err *err)
{
    (void)ctx;
    const struct engine_config *c = &m->cfg;
    int rc = upload(m, "model.embed_tokens.weight", c->vocab, c->hidden, &m->embed, err);
    if (rc == NY_OK)
        rc = upload(m, "model.norm.weight", c->hidden, 0, &m->final_norm, err);
    const char *head = c->tie_embeddings ? "model.embed_tokens.weight" : "lm_head.weight";
    if (rc == NY_OK && c->tie_embeddings && m->tp == 1)
        m->lm_head = m->embed;
    else if (rc == NY_OK)
        rc = upload_part(m, head, c->vocab, c->hidden, m->vocab_off, m->l_vocab, 0, c->hidden,
                         &m->lm_head, err);
    for (int l = 0; l < c->n_layers && rc == NY_OK; l++)
        rc = load_layer(m, l, err);
    return rc;
}

/* What every rank needs once m->cfg, ops and n_threads are set: its shard sizes, its backend
 * instance on GPU gpu (ignored by the CPU), the layer table and the RoPE frequencies. */
static int rank_start(struct engine_model *m, int tp, int rank, int gpu, struct ny_err *err)
{
    int rc = engine_tp_shard_sizes(m, tp, rank, err);
    if (rc == NY_OK)
        rc = m->ops->create(m->n_threads, gpu, &m->be, err);
    if (rc == NY_OK) {
        m->layers = ny_calloc((size_t)m->cfg.n_layers, sizeof *m->layers);
        m->inv_freq = ny_calloc((size_t)m->cfg.head_dim / 2, sizeof(float));
        if (!m->layers || !m->inv_freq)
            rc = NY_ERR(err, NY_E_NOMEM, "out of memory");
    }
    if (rc == NY_OK)
        engine_config_inv_freq(&m->cfg, m->inv_freq);
    return rc;
}

/* A rank instance beside the lead: the lead's configuration, its own backend on GPU gpu + k. */
static int rank_new(struct engine_model *lead, int k, const struct engine_model_opts *o,
                    struct engine_model **out, struct ny_err *err)
{
    struct engine_model *r = ny_calloc(1, sizeof *r);
    if (!r)
        return NY_ERR(err, NY_E_NOMEM, "out of memory");
    r->cfg = lead->cfg;
    r->ops = lead->ops;
    r->st = lead->st; /* borrowed: only the lead closes it */
    r->n_threads = lead->n_threads;
    *out = r; /* closed by the lead even when half made */
    return rank_start(r, lead->tp, k, o->gpu + k, err);
}

/* The ranks 1..tp-1 and the group (the lead's backend exists already). */
static int tp_setup(struct engine_model *m, const struct engine_model_opts *o, struct ny_err *err)
{
    m->ranks = ny_calloc((size_t)m->tp, sizeof *m->ranks);
    if (!m->ranks)
        return NY_ERR(err, NY_E_NOMEM, "out of memory");
    m->ranks[0] = m;
    int rc = NY_OK;
    for (int k = 1; k < m->tp && rc == NY_OK; k++)
        rc = rank_new(m, k, o, &m->ranks[k], err);
    if (rc != NY_OK)
        return rc;
    struct engine_backend **bes = ny_calloc((size_t)m->tp, sizeof *bes);
    if (!bes)
        return NY_ERR(err, NY_E_NOMEM, "out of memory");
    for (int k = 0; k < m->tp; k++)
        bes[k] = m->ranks[k]->be;
    rc = m->ops->tp_create(bes, m->tp, &m->group, err);
    ny_free(bes);
    return rc;
}

int engine_model_start(const char *dir, const struct engine_config *cfg,
                       const struct engine_model_opts *opts, struct engine_model **out,
                       struct ny_err *err)
{
    struct engine_model_opts o = {0};
    if (opts)
        o = *opts;
    if (o.threads <= 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        o.threads = n < 1 ? 1 : n > 256 ? 256 : (int)n;
    }
    const struct engine_backend_ops *ops;
    int rc = engine_backend_find(o.device, &ops, err);
    if (rc != NY_OK)
        return rc;
    if (o.tp > 1 && !ops->tp_create)
        return NY_ERR(err, NY_E_UNSUPPORTED, "--tp %d: tensor parallelism is not available in "
                      "the %s backend%s", o.tp, ops->name,
                      strcmp(ops->name, "cuda") ? "" : " (this build has no NCCL)");
    if (o.tp > ENGINE_MAX_TP)
        return NY_ERR(err, NY_E_INVALID, "--tp %d: at most %d ranks", o.tp, ENGINE_MAX_TP);
    struct engine_model *m = ny_calloc(1, sizeof *m);
    if (!m || !(m->dir = ny_strdup(dir ? dir : "(random weights)"))) {
        ny_free(m);
        return NY_ERR(err, NY_E_NOMEM, "out of memory");
    }
    m->ops = ops;
    /* CPU ranks share the cores */
    m->n_threads = o.tp > 1 && o.threads >= o.tp ? o.threads / o.tp : o.threads;
    if (cfg)
        m->cfg = *cfg;
    else
        rc = engine_config_load(dir, &m->cfg, err);
    if (rc == NY_OK && dir)
        rc = engine_st_open_dir(dir, NULL, &m->st, err);
    if (rc == NY_OK)
        rc = rank_start(m, o.tp > 1 ? o.tp : 1, 0, o.gpu, err);
    if (rc == NY_OK && m->tp > 1)
        rc = tp_setup(m, &o, err);
    if (rc != NY_OK) {
        engine_model_close(m);
        return rc;
    }
    *out = m;
    return NY_OK;
}

int engine_model_open(const char *dir, const struct engine_model_opts *opts,
                      struct engine_model **out, struct ny_err *err)
{
    struct engine_model *m;
    int rc = engine_model_start(dir, NULL, opts, &m, err);
    if (rc == NY_OK && (rc = engine_tp_run(m, load_weights, NULL, err)) != NY_OK)
        engine_model_close(m);
    if (rc == NY_OK)
        *out = m;
    return rc;
}

static void model_free(struct engine_model *m)
{
    if (!m)
        return;
    if (m->be) {
        for (int l = 0; m->layers && l < m->cfg.n_layers; l++) {
            struct engine_layer *L = &m->layers[l];
            m->ops->buf_free(m->be, L->in_norm);
            m->ops->buf_free(m->be, L->post_norm);
            for (int p = 0; p < ENGINE_N_PROJ; p++) {
                m->ops->buf_free(m->be, L->w[p]);
                for (int a = 0; L->lora[p] && a < ENGINE_MAX_ADAPTERS; a++) {
                    m->ops->buf_free(m->be, L->lora[p][a].a);
                    m->ops->buf_free(m->be, L->lora[p][a].b);
                }
                ny_free(L->lora[p]);
            }
        }
        if (m->lm_head != m->embed)
            m->ops->buf_free(m->be, m->lm_head);
        m->ops->buf_free(m->be, m->embed);
        m->ops->buf_free(m->be, m->final_norm);
        m->ops->destroy(m->be);
    }
    for (int a = 0; m->adapters && a < m->n_adapters; a++) {
        ny_free(m->adapters[a].name);
        ny_free(m->adapters[a].dir);
    }
    ny_free(m->adapters);
    ny_free(m->layers);
    ny_free(m->inv_freq);
    if (m->rank == 0)
        engine_st_close(m->st);
    ny_free(m->dir);
    ny_free(m);
}

void engine_model_close(struct engine_model *m)
{
    if (!m)
        return;
    /* the group goes first: it may hold resources of every rank's device */
    if (m->group)
        m->ops->tp_destroy(m->group);
    for (int k = 1; m->ranks && k < m->tp; k++)
        model_free(m->ranks[k]);
    ny_free(m->ranks);
    model_free(m);
}

void engine_model_info_get(const struct engine_model *m, struct engine_model_info *out)
{
    const struct engine_config *c = &m->cfg;
    memset(out, 0, sizeof *out);
    out->vocab_size = c->vocab;
    out->hidden_size = c->hidden;
    out->n_layers = c->n_layers;
    out->n_heads = c->n_heads;
    out->n_kv_heads = c->n_kv_heads;
    out->head_dim = c->head_dim;
    out->intermediate_size = c->intermediate;
    out->max_position_embeddings = c->max_pos;
    out->bos_id = c->bos_id;
    out->n_eos = c->n_eos;
    out->eos_ids = c->eos_ids;
    out->n_adapters = m->n_adapters;
    out->device = m->ops->name;
    out->threads = m->n_threads;
    out->tp = m->tp;
}
