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

/* Find, check and upload one weight [rows, cols] (cols == 0: a 1-D weight of rows). */
static int upload(struct engine_model *m, const char *name, int rows, int cols,
                  struct engine_buf **out, struct ny_err *err)
{
    const struct engine_tensor *t;
    int rc = engine_st_get(m->st, name, (uint64_t)rows, (uint64_t)cols, &t, err);
    if (rc != NY_OK)
        return rc;
    rc = m->ops->weight_upload(m->be, t->dtype, t->data, cols ? (size_t)rows : 1,
                               cols ? (size_t)cols : (size_t)rows, out, err);
    if (rc != NY_OK)
        ny_err_prefix(err, "%s: tensor '%s': ", t->file, name);
    return rc;
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
        int out, in;
        engine_proj_shape(c, (enum engine_proj)p, &out, &in);
        snprintf(name, sizeof name, "model.layers.%d.%s.weight", l,
                 engine_proj_module((enum engine_proj)p));
        rc = upload(m, name, out, in, &L->w[p], err);
    }
    return rc;
}

static int load_weights(struct engine_model *m, struct ny_err *err)
{
    const struct engine_config *c = &m->cfg;
    int rc = upload(m, "model.embed_tokens.weight", c->vocab, c->hidden, &m->embed, err);
    if (rc == NY_OK)
        rc = upload(m, "model.norm.weight", c->hidden, 0, &m->final_norm, err);
    if (rc == NY_OK && c->tie_embeddings)
        m->lm_head = m->embed;
    else if (rc == NY_OK)
        rc = upload(m, "lm_head.weight", c->vocab, c->hidden, &m->lm_head, err);
    for (int l = 0; l < c->n_layers && rc == NY_OK; l++)
        rc = load_layer(m, l, err);
    return rc;
}

int engine_model_open(const char *dir, const struct engine_model_opts *opts,
                      struct engine_model **out, struct ny_err *err)
{
    struct engine_model_opts o = {0};
    if (opts)
        o = *opts;
    if (o.threads <= 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        o.threads = n < 1 ? 1 : n > 256 ? 256 : (int)n;
    }
    if (o.tp > 1 && (!o.device || strcmp(o.device, "cuda") != 0))
        return NY_ERR(err, NY_E_INVALID, "--tp %d needs --device cuda", o.tp);
    const struct engine_backend_ops *ops;
    int rc = engine_backend_find(o.device, &ops, err);
    if (rc != NY_OK)
        return rc;
    if (o.tp > 1) /* never ignored silently: no backend splits a model over GPUs yet */
        return NY_ERR(err, NY_E_UNSUPPORTED, "--tp %d: tensor parallelism is not available in "
                      "the %s backend", o.tp, ops->name);
    struct engine_model *m = ny_calloc(1, sizeof *m);
    if (!m || !(m->dir = ny_strdup(dir))) {
        ny_free(m);
        return NY_ERR(err, NY_E_NOMEM, "out of memory");
    }
    m->ops = ops;
    m->n_threads = o.threads;
    rc = engine_config_load(dir, &m->cfg, err);
    if (rc == NY_OK)
        rc = engine_st_open_dir(dir, NULL, &m->st, err);
    if (rc == NY_OK)
        rc = ops->create(o.threads, o.gpu, &m->be, err);
    if (rc == NY_OK) {
        m->layers = ny_calloc((size_t)m->cfg.n_layers, sizeof *m->layers);
        m->inv_freq = ny_calloc((size_t)m->cfg.head_dim / 2, sizeof(float));
        if (!m->layers || !m->inv_freq)
            rc = NY_ERR(err, NY_E_NOMEM, "out of memory");
    }
    if (rc == NY_OK)
        rc = load_weights(m, err);
    if (rc != NY_OK) {
        engine_model_close(m);
        return rc;
    }
    engine_config_inv_freq(&m->cfg, m->inv_freq);
    *out = m;
    return NY_OK;
}

void engine_model_close(struct engine_model *m)
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
    for (int a = 0; a < m->n_adapters; a++) {
        ny_free(m->adapters[a].name);
        ny_free(m->adapters[a].dir);
    }
    ny_free(m->adapters);
    ny_free(m->layers);
    ny_free(m->inv_freq);
    engine_st_close(m->st);
    ny_free(m->dir);
    ny_free(m);
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
}
