/* model_adapter.c — PEFT LoRA adapters (adapter_config.json + adapter_model.safetensors) over a
 * loaded base: checked against the config and the base shapes, attached unmerged (per request)
 * or merged into the base weights in fp32. */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>
#include <jansson.h>
#include <pcre2.h>

#include "engine_model_int.h"

#define ADAPTER_MAX_CONFIG ((size_t)4 << 20)

struct adapter_cfg {
    json_t *root;        /* owns everything below */
    const char *path;
    int r;
    double alpha;
    int rslora;
    json_t *targets;     /* string (regex) or array of names */
    json_t *rank_pattern, *alpha_pattern, *layers;
};

/* 1 when `pattern` matches subject under PEFT's rule: re.match(rf"(.*\.)?({pattern})$") (anchored
 * at the start) or re.fullmatch(pattern) when full; -1 when the pattern does not compile. */
static int re_match(const char *pattern, const char *subject, int full)
{
    char buf[512];
    if (snprintf(buf, sizeof buf, full ? "(?:%s)\\z" : "(.*\\.)?(%s)\\z", pattern) >=
        (int)sizeof buf)
        return -1;
    int ec;
    PCRE2_SIZE eo;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)buf, PCRE2_ZERO_TERMINATED, PCRE2_ANCHORED, &ec,
                                   &eo, NULL);
    if (!re)
        return -1;
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(re, NULL);
    int rc = md ? pcre2_match(re, (PCRE2_SPTR)subject, strlen(subject), 0, 0, md, NULL) : -1;
    pcre2_match_data_free(md);
    pcre2_code_free(re);
    return rc >= 0 ? 1 : 0;
}

static int is_target(const struct adapter_cfg *c, const char *module, int layer)
{
    int hit = 0;
    if (json_is_string(c->targets)) {
        const char *t = json_string_value(c->targets);
        hit = !strcmp(t, "all-linear") || re_match(t, module, 1) == 1;
    } else {
        size_t i;
        json_t *v;
        json_array_foreach(c->targets, i, v)
        {
            const char *t = json_string_value(v);
            size_t lt = strlen(t), lm = strlen(module);
            if (!strcmp(t, module) || (lm > lt && module[lm - lt - 1] == '.' &&
                                       !strcmp(module + lm - lt, t)))
                hit = 1;
        }
    }
    if (!hit || !c->layers || json_is_null(c->layers))
        return hit;
    if (json_is_integer(c->layers))
        return json_integer_value(c->layers) == layer;
    size_t i;
    json_t *v;
    json_array_foreach(c->layers, i, v) if (json_integer_value(v) == layer) return 1;
    return 0;
}

/* rank_pattern / alpha_pattern lookup: the first key matching the module, else dflt. */
static double pattern_value(json_t *pat, const char *module, double dflt)
{
    const char *key;
    json_t *v;
    if (!json_is_object(pat))
        return dflt;
    json_object_foreach(pat, key, v) if (re_match(key, module, 0) == 1) return json_number_value(v);
    return dflt;
}

static int refuse(json_t *root, const char *path, struct ny_err *err)
{
    json_t *v;
    if ((v = json_object_get(root, "peft_type")) && json_is_string(v) &&
        strcmp(json_string_value(v), "LORA") != 0)
        return NY_ERR(err, NY_E_UNSUPPORTED, "%s: peft_type \"%s\" is not supported (LORA)", path,
                      json_string_value(v));
    if ((v = json_object_get(root, "use_dora")) && json_is_true(v))
        return NY_ERR(err, NY_E_UNSUPPORTED, "%s: DoRA adapters (use_dora: true) are not "
                      "supported", path);
    if ((v = json_object_get(root, "modules_to_save")) && !json_is_null(v) &&
        !(json_is_array(v) && json_array_size(v) == 0))
        return NY_ERR(err, NY_E_UNSUPPORTED, "%s: modules_to_save is not supported (the adapter "
                      "would replace whole modules)", path);
    if ((v = json_object_get(root, "bias")) && json_is_string(v) &&
        strcmp(json_string_value(v), "none") != 0)
        return NY_ERR(err, NY_E_UNSUPPORTED, "%s: bias \"%s\" is not supported (none)", path,
                      json_string_value(v));
    if ((v = json_object_get(root, "lora_bias")) && json_is_true(v))
        return NY_ERR(err, NY_E_UNSUPPORTED, "%s: lora_bias is not supported", path);
    if ((v = json_object_get(root, "exclude_modules")) && !json_is_null(v))
        return NY_ERR(err, NY_E_UNSUPPORTED, "%s: exclude_modules is not supported", path);
    return NY_OK;
}

static int adapter_cfg_load(const char *path, struct adapter_cfg *c, struct ny_err *err)
{
    memset(c, 0, sizeof *c);
    c->path = path;
    int rc = ny_json_load_file(path, ADAPTER_MAX_CONFIG, &c->root, err);
    if (rc != NY_OK)
        return rc;
    json_t *root = c->root;
    int64_t r;
    if (!json_is_object(root))
        return NY_ERR(err, NY_E_FORMAT, "%s: not a JSON object", path);
    if ((rc = refuse(root, path, err)) || (rc = ny_json_get_int(root, "r", 1, &r, path, err)) ||
        (rc = ny_json_get_real(root, "lora_alpha", 1, &c->alpha, path, err)))
        return rc;
    if (r < 1 || r > 65536)
        return NY_ERR(err, NY_E_RANGE, "%s: r = %lld is outside 1..65536", path, (long long)r);
    c->r = (int)r;
    int fifo = 0;
    if ((rc = ny_json_get_bool(root, "use_rslora", 0, &c->rslora, path, err)) &&
        rc != NY_E_NOTFOUND)
        return rc;
    if ((rc = ny_json_get_bool(root, "fan_in_fan_out", 0, &fifo, path, err)) &&
        rc != NY_E_NOTFOUND)
        return rc;
    if (fifo) /* PEFT itself resets it to false for nn.Linear targets, as Llama's are */
        ny_log_warn("%s: fan_in_fan_out is true but Llama's projections are nn.Linear; ignored "
                    "as PEFT does", path);
    c->targets = json_object_get(root, "target_modules");
    int list_ok = json_is_array(c->targets);
    for (size_t i = 0; list_ok && i < json_array_size(c->targets); i++)
        list_ok = json_is_string(json_array_get(c->targets, i));
    if (!json_is_string(c->targets) && !list_ok)
        return NY_ERR(err, NY_E_FORMAT, "%s: \"target_modules\" must be a string or a list of "
                      "strings", path);
    c->rank_pattern = json_object_get(root, "rank_pattern");
    c->alpha_pattern = json_object_get(root, "alpha_pattern");
    const char *pn[2] = {"rank_pattern", "alpha_pattern"};
    json_t *pv[2] = {c->rank_pattern, c->alpha_pattern};
    for (int k = 0; k < 2; k++) {
        if (pv[k] && !json_is_null(pv[k]) && !json_is_object(pv[k]))
            return NY_ERR(err, NY_E_FORMAT, "%s: \"%s\" must be an object", path, pn[k]);
        const char *key;
        json_t *v;
        json_object_foreach(pv[k], key, v) if (!(k ? json_is_number(v) : json_is_integer(v)) ||
                                               json_number_value(v) <= 0 ||
                                               re_match(key, "x", 0) < 0) return NY_ERR(
            err, NY_E_FORMAT, "%s: %s[\"%s\"] must be a positive %s with a valid pattern", path,
            pn[k], key, k ? "number" : "integer");
    }
    c->layers = json_object_get(root, "layers_to_transform");
    return NY_OK;
}

/* Parse "base_model.model.model.layers.N.<module>.lora_X.weight". */
static int parse_name(const char *name, int n_layers, int *layer, int *proj, int *is_b)
{
    const char *pre = "base_model.model.model.layers.";
    size_t lp = strlen(pre);
    if (strncmp(name, pre, lp) != 0)
        return -1;
    char *end;
    long l = strtol(name + lp, &end, 10);
    if (end == name + lp || *end != '.' || l < 0 || l >= n_layers)
        return -1;
    for (int p = 0; p < ENGINE_N_PROJ; p++) {
        const char *mod = engine_proj_module((enum engine_proj)p);
        size_t lm = strlen(mod);
        if (!strncmp(end + 1, mod, lm)) {
            const char *rest = end + 1 + lm;
            if (strcmp(rest, ".lora_A.weight") && strcmp(rest, ".lora_B.weight"))
                return -1;
            *layer = (int)l;
            *proj = p;
            *is_b = rest[6] == 'B';
            return 0;
        }
    }
    return -1;
}

/* Checked tensors of one adapter: A and B for each (layer, projection) it targets. */
struct adapter_plan {
    const struct engine_tensor **a, **b; /* [n_layers * ENGINE_N_PROJ], NULL when not targeted */
    float *scale;
};

static int plan_tensors(struct engine_model *m, const struct adapter_cfg *c,
                        const struct engine_st *st, struct adapter_plan *pl, struct ny_err *err)
{
    const struct engine_config *cfg = &m->cfg;
    for (size_t i = 0; i < engine_st_count(st); i++) {
        const struct engine_tensor *t = engine_st_at(st, i);
        int l, p, is_b;
        if (parse_name(t->name, cfg->n_layers, &l, &p, &is_b) != 0)
            return NY_ERR(err, NY_E_UNSUPPORTED,
                          "%s: tensor '%s' is not a lora_A/lora_B weight of a projection of "
                          "this %d-layer model",
                          t->file, t->name, cfg->n_layers);
        (is_b ? pl->b : pl->a)[l * ENGINE_N_PROJ + p] = t;
    }
    for (int l = 0; l < cfg->n_layers; l++) {
        for (int p = 0; p < ENGINE_N_PROJ; p++) {
            char mod[128];
            snprintf(mod, sizeof mod, "model.layers.%d.%s", l, engine_proj_module(p));
            int k = l * ENGINE_N_PROJ + p, tgt = is_target(c, mod, l);
            const struct engine_tensor *a = pl->a[k], *b = pl->b[k];
            if (!tgt && (a || b))
                return NY_ERR(err, NY_E_FORMAT, "%s: tensor for %s but target_modules of %s "
                              "does not name it", (a ? a : b)->file, mod, c->path);
            if (!tgt)
                continue;
            if (!a || !b)
                return NY_ERR(err, NY_E_NOTFOUND, "adapter: tensor '%s.lora_%c.weight' is missing "
                              "(target module without weights)", mod, a ? 'B' : 'A');
            double r = pattern_value(c->rank_pattern, mod, c->r);
            double alpha = pattern_value(c->alpha_pattern, mod, c->alpha);
            int out, in;
            engine_proj_shape(cfg, p, &out, &in);
            if (a->ndim != 2 || b->ndim != 2 || a->shape[0] != (uint64_t)r ||
                a->shape[1] != (uint64_t)in || b->shape[0] != (uint64_t)out ||
                b->shape[1] != (uint64_t)r)
                return NY_ERR(err, NY_E_FORMAT,
                              "%s: %s: lora_A is [%llu, %llu] and lora_B [%llu, %llu]; expected "
                              "[%d, %d] and [%d, %d] (rank %d from %s)",
                              a->file, mod, (unsigned long long)a->shape[0],
                              (unsigned long long)(a->ndim > 1 ? a->shape[1] : 0),
                              (unsigned long long)b->shape[0],
                              (unsigned long long)(b->ndim > 1 ? b->shape[1] : 0), (int)r, in, out,
                              (int)r, (int)r, c->path);
            pl->scale[k] = (float)(c->rslora ? alpha / sqrt(r) : alpha / r);
        }
    }
    return NY_OK;
}

/* W += scale · B·A for one projection, in fp32, then re-upload W. */
static int merge_one(struct engine_model *m, int l, int p, const struct engine_tensor *ta,
                     const struct engine_tensor *tb, float scale, struct ny_err *err)
{
    int out, in, r = (int)ta->shape[0];
    engine_proj_shape(&m->cfg, p, &out, &in);
    char name[160];
    snprintf(name, sizeof name, "model.layers.%d.%s.weight", l, engine_proj_module(p));
    const struct engine_tensor *tw = engine_st_find(m->st, name);
    size_t nw = (size_t)out * (size_t)in;
    float *w = ny_malloc(nw * sizeof *w), *ba = ny_malloc(nw * sizeof *ba);
    float *a = ny_malloc((size_t)r * in * sizeof *a), *b = ny_malloc((size_t)out * r * sizeof *b);
    int rc = NY_OK;
    if (!tw)
        rc = NY_ERR(err, NY_E_INTERNAL, "base tensor '%s' vanished", name);
    else if (!w || !ba || !a || !b)
        rc = NY_ERR(err, NY_E_NOMEM, "out of memory merging %s", name);
    if (rc == NY_OK) {
        engine_dtype_to_f32(tw->dtype, tw->data, w, nw);
        engine_dtype_to_f32(ta->dtype, ta->data, a, (size_t)r * in);
        engine_dtype_to_f32(tb->dtype, tb->data, b, (size_t)out * r);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, out, in, r, 1.0f, b, r, a, in,
                    0.0f, ba, in);
        for (size_t i = 0; i < nw; i++)
            w[i] += ba[i] * scale;
        struct engine_buf *nb;
        /* every rank takes its block of the merged weight */
        for (int k = 0; k < m->tp && rc == NY_OK; k++) {
            struct engine_model *rm = m->tp > 1 ? m->ranks[k] : m;
            int r0, nr, c0, nc;
            engine_proj_block(rm, p, 0, 0, &r0, &nr, &c0, &nc);
            rc = engine_upload_block(rm, ENGINE_DTYPE_F32, w, (size_t)out, (size_t)in, r0, nr, c0,
                                     nc, &nb, err);
            if (rc == NY_OK) {
                rm->ops->buf_free(rm->be, rm->layers[l].w[p]);
                rm->layers[l].w[p] = nb;
            }
        }
    }
    ny_free(w);
    ny_free(ba);
    ny_free(a);
    ny_free(b);
    return rc;
}

/* This rank's blocks of one projection's A and B (see engine_proj_block). */
static int attach_term(struct engine_model *rm, int l, int p, const struct engine_tensor *a,
                       const struct engine_tensor *b, float scale, int idx, struct ny_err *err)
{
    struct engine_lora_term *t = &rm->layers[l].lora[p][idx];
    int r = (int)a->shape[0], r0, nr, c0, nc;
    engine_proj_block(rm, p, 'A', r, &r0, &nr, &c0, &nc);
    int rc = engine_upload_block(rm, a->dtype, a->data, a->shape[0], a->shape[1], r0, nr, c0, nc,
                                 &t->a, err);
    engine_proj_block(rm, p, 'B', r, &r0, &nr, &c0, &nc);
    if (rc == NY_OK)
        rc = engine_upload_block(rm, b->dtype, b->data, b->shape[0], b->shape[1], r0, nr, c0, nc,
                                 &t->b, err);
    t->rank = r;
    t->scale = scale;
    return rc;
}

/* Upload the planned tensors as adapter `idx` (unmerged; on every rank, each its blocks) or fold
 * them into the base (merged). */
static int attach(struct engine_model *m, const struct adapter_plan *pl, int idx, int merge,
                  struct ny_err *err)
{
    int rc = NY_OK;
    for (int k = 0; k < m->tp; k++) {
        struct engine_model *rm = m->tp > 1 ? m->ranks[k] : m;
        for (int l = 0; l < m->cfg.n_layers; l++) {
            for (int p = 0; p < ENGINE_N_PROJ; p++) {
                struct engine_layer *L = &rm->layers[l];
                if (!L->lora[p])
                    L->lora[p] = ny_calloc(ENGINE_MAX_ADAPTERS, sizeof *L->lora[p]);
                if (!L->lora[p])
                    return NY_ERR(err, NY_E_NOMEM, "out of memory attaching an adapter");
            }
        }
    }
    for (int l = 0; l < m->cfg.n_layers && rc == NY_OK; l++) {
        for (int p = 0; p < ENGINE_N_PROJ && rc == NY_OK; p++) {
            int k = l * ENGINE_N_PROJ + p;
            const struct engine_tensor *a = pl->a[k], *b = pl->b[k];
            if (!a)
                continue;
            if (merge) {
                rc = merge_one(m, l, p, a, b, pl->scale[k], err);
                continue;
            }
            for (int q = 0; q < m->tp && rc == NY_OK; q++)
                rc = attach_term(m->tp > 1 ? m->ranks[q] : m, l, p, a, b, pl->scale[k], idx,
                                 err);
        }
    }
    return rc;
}

static int adapter_check_args(struct engine_model *m, const char *name, int merge,
                              struct ny_err *err)
{
    if (m->poisoned)
        return NY_ERR(err, NY_E_STATE, "the model is unusable after an earlier failure");
    if (!name || !*name)
        return NY_ERR(err, NY_E_INVALID, "an adapter needs a non-empty name");
    if (engine_model_adapter_find(m, name) >= 0)
        return NY_ERR(err, NY_E_INVALID, "adapter name '%s' is used twice", name);
    if (m->n_adapters >= ENGINE_MAX_ADAPTERS)
        return NY_ERR(err, NY_E_RANGE, "at most %d adapters per model", ENGINE_MAX_ADAPTERS);
    for (int i = 0; merge && i < m->n_adapters; i++)
        if (m->adapters[i].merged)
            return NY_ERR(err, NY_E_INVALID, "only one adapter can be merged into the base "
                          "('%s' already is)", m->adapters[i].name);
    return NY_OK;
}

int engine_model_adapter_add(struct engine_model *m, const char *name, const char *dir,
                             int merge, int *index, struct ny_err *err)
{
    int rc = adapter_check_args(m, name, merge, err);
    if (rc != NY_OK)
        return rc;
    char *cpath = ny_path_join(dir, "adapter_config.json");
    char *wpath = ny_path_join(dir, "adapter_model.safetensors");
    size_t nk = (size_t)m->cfg.n_layers * ENGINE_N_PROJ;
    struct adapter_plan pl = {ny_calloc(nk, sizeof *pl.a), ny_calloc(nk, sizeof *pl.b),
                              ny_calloc(nk, sizeof *pl.scale)};
    struct engine_adapter *ad = ny_reallocarray(m->adapters, (size_t)m->n_adapters + 1,
                                                sizeof *ad);
    if (ad)
        m->adapters = ad;
    struct adapter_cfg c = {0};
    struct engine_st *st = NULL;
    if (!cpath || !wpath || !pl.a || !pl.b || !pl.scale || !ad)
        rc = NY_ERR(err, NY_E_NOMEM, "out of memory");
    if (rc == NY_OK)
        rc = adapter_cfg_load(cpath, &c, err);
    if (rc == NY_OK)
        rc = engine_st_open_file(wpath, &st, err);
    if (rc == NY_OK)
        rc = plan_tensors(m, &c, st, &pl, err);
    int idx = m->n_adapters;
    if (rc == NY_OK) {
        rc = attach(m, &pl, idx, merge, err);
        if (rc != NY_OK)
            m->poisoned = 1; /* half attached or half merged: refuse further use */
        m->adapters[idx].name = ny_strdup(name);
        m->adapters[idx].dir = ny_strdup(dir);
        m->adapters[idx].merged = merge;
        m->n_adapters++;
        for (int k = 1; k < m->tp; k++) /* the ranks' forward passes count the adapters too */
            m->ranks[k]->n_adapters = m->n_adapters;
        if (rc == NY_OK && (!m->adapters[idx].name || !m->adapters[idx].dir))
            rc = NY_ERR(err, NY_E_NOMEM, "out of memory");
    }
    if (rc != NY_OK)
        ny_err_prefix(err, "adapter '%s': ", name);
    else if (index)
        *index = merge ? -1 : idx;
    engine_st_close(st);
    json_decref(c.root);
    ny_free(pl.a);
    ny_free(pl.b);
    ny_free(pl.scale);
    ny_free(cpath);
    ny_free(wpath);
    return rc;
}

int engine_model_adapter_find(const struct engine_model *m, const char *name)
{
    for (int i = 0; i < m->n_adapters; i++)
        if (m->adapters[i].name && !strcmp(m->adapters[i].name, name))
            return i;
    return -1;
}
