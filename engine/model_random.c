/* model_random.c — a model with random weights made on the device (the benchmark's: no files,
 * 70B shapes in seconds), sharded exactly as model_load.c shards a checkpoint. Each tensor is a
 * virtual full matrix drawn from (seed, tensor number, element index), and a rank makes only its
 * block of it, so one seed gives the same logical model at every tp (TP parity checks). */
#include <math.h>
#include <string.h>

#include "engine_model_int.h"

struct rnd_ctx {
    uint64_t seed;
    int lora_rank;
};

/* The block (r0, nr, c0, nc) of tensor number t [*, cols], uniform in [-scale, scale). */
static int rnd(struct engine_model *m, const struct rnd_ctx *c, int t, int r0, int nr, int c0,
               int nc, int cols, float scale, struct engine_buf **out, struct ny_err *err)
{
    return m->ops->weight_random(m->be, (size_t)nr, (size_t)nc, (size_t)r0, (size_t)c0,
                                 (size_t)cols, c->seed * 1000003u + (uint64_t)t, scale, out,
                                 err);
}

static int rnd_proj(struct engine_model *m, const struct rnd_ctx *c, int l, int p,
                    struct ny_err *err)
{
    struct engine_layer *L = &m->layers[l];
    int out, in, r0, nr, c0, nc, t = 16 + (l * ENGINE_N_PROJ + p) * 3, R = c->lora_rank;
    engine_proj_shape(&m->cfg, (enum engine_proj)p, &out, &in);
    engine_proj_block(m, (enum engine_proj)p, 0, 0, &r0, &nr, &c0, &nc);
    /* uniform(-s, s) with s = sqrt(3 / in): unit-variance outputs for unit inputs */
    float s = sqrtf(3.0f / (float)in);
    int rc = rnd(m, c, t, r0, nr, c0, nc, in, s, &L->w[p], err);
    if (rc != NY_OK || R <= 0)
        return rc;
    if (!(L->lora[p] = ny_calloc(ENGINE_MAX_ADAPTERS, sizeof *L->lora[p])))
        return NY_ERR(err, NY_E_NOMEM, "out of memory");
    struct engine_lora_term *lt = &L->lora[p][0];
    lt->rank = R;
    lt->scale = 2.0f;
    engine_proj_block(m, (enum engine_proj)p, 'A', R, &r0, &nr, &c0, &nc);
    rc = rnd(m, c, t + 1, r0, nr, c0, nc, in, s, &lt->a, err);
    engine_proj_block(m, (enum engine_proj)p, 'B', R, &r0, &nr, &c0, &nc);
    if (rc == NY_OK)
        rc = rnd(m, c, t + 2, r0, nr, c0, nc, R, 0.01f, &lt->b, err);
    return rc;
}

static int rnd_weights(struct engine_model *m, void *vctx, struct ny_err *err)
{
    const struct rnd_ctx *c = vctx;
    const struct engine_config *g = &m->cfg;
    int H = g->hidden;
    int rc = rnd(m, c, 0, 0, g->vocab, 0, H, H, 0.5f, &m->embed, err);
    if (rc == NY_OK)
        rc = rnd(m, c, 1, m->vocab_off, m->l_vocab, 0, H, H, 0.02f, &m->lm_head, err);
    if (rc == NY_OK)
        rc = rnd(m, c, 2, 0, 1, 0, H, H, 1.0f, &m->final_norm, err);
    for (int l = 0; l < g->n_layers && rc == NY_OK; l++) {
        struct engine_layer *L = &m->layers[l];
        int t = 16 + g->n_layers * ENGINE_N_PROJ * 3 + 2 * l;
        rc = rnd(m, c, t, 0, 1, 0, H, H, 1.0f, &L->in_norm, err);
        if (rc == NY_OK)
            rc = rnd(m, c, t + 1, 0, 1, 0, H, H, 1.0f, &L->post_norm, err);
        for (int p = 0; p < ENGINE_N_PROJ && rc == NY_OK; p++)
            rc = rnd_proj(m, c, l, p, err);
    }
    if (rc == NY_OK && c->lora_rank > 0)
        m->n_adapters = 1;
    return rc;
}

int engine_model_open_random(const struct engine_config *cfg, const struct engine_model_opts *o,
                             uint64_t seed, int lora_rank, struct engine_model **out,
                             struct ny_err *err)
{
    const struct engine_backend_ops *ops;
    int rc = engine_backend_find(o ? o->device : NULL, &ops, err);
    if (rc != NY_OK)
        return rc;
    if (!ops->weight_random)
        return NY_ERR(err, NY_E_UNSUPPORTED, "the %s backend cannot make random weights",
                      ops->name);
    if (lora_rank < 0)
        return NY_ERR(err, NY_E_INVALID, "LoRA rank %d", lora_rank);
    struct engine_model *m;
    struct rnd_ctx c = {seed, lora_rank};
    if ((rc = engine_model_start(NULL, cfg, o, &m, err)) != NY_OK)
        return rc;
    if (lora_rank > 0) {
        m->adapters = ny_calloc(1, sizeof *m->adapters);
        if (!m->adapters || !(m->adapters[0].name = ny_strdup("random")) ||
            !(m->adapters[0].dir = ny_strdup("(random weights)")))
            rc = NY_ERR(err, NY_E_NOMEM, "out of memory");
        else
            m->n_adapters = 1;
    }
    if (rc == NY_OK)
        rc = engine_tp_run(m, rnd_weights, &c, err);
    if (rc != NY_OK) {
        engine_model_close(m);
        return rc;
    }
    *out = m;
    return NY_OK;
}
