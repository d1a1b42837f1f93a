/* model_config.c — config.json of the Llama family and generation_config.json: sizes, RoPE
 * (default, linear, llama3; legacy "rope_scaling" + "rope_theta" or transformers 5
 * "rope_parameters"), tied embeddings, BOS and EOS ids (an integer or a list). */
#include <math.h>
#include <string.h>

#include <jansson.h>

#include "engine_model_int.h"

#define CFG_MAX_FILE ((size_t)4 << 20)
#define CFG_MAX_DIM (1 << 20)    /* any size above this is refused as hostile */
#define CFG_MAX_VOCAB (1 << 24)

static int cfg_int(json_t *o, const char *key, int required, int lo, int hi, int *out,
                   const char *what, struct ny_err *err)
{
    int64_t v;
    int rc = ny_json_get_int(o, key, required, &v, what, err);
    if (rc != NY_OK)
        return rc;
    if (v < lo || v > hi)
        return NY_ERR(err, NY_E_RANGE, "%s: field \"%s\" = %lld is outside %d..%d", what, key,
                      (long long)v, lo, hi);
    *out = (int)v;
    return NY_OK;
}

static int cfg_real(json_t *o, const char *key, int required, double *out, const char *what,
                    struct ny_err *err)
{
    int rc = ny_json_get_real(o, key, required, out, what, err);
    if (rc == NY_OK && (!isfinite(*out) || *out <= 0))
        return NY_ERR(err, NY_E_RANGE, "%s: field \"%s\" must be a positive number", what, key);
    return rc;
}

/* eos_token_id: an integer or a list of integers; adds them to cfg (deduplicated). */
static int cfg_add_eos(json_t *o, const char *what, struct engine_config *cfg, struct ny_err *err)
{
    json_t *v = json_object_get(o, "eos_token_id");
    if (!v || json_is_null(v))
        return NY_OK;
    size_t n = json_is_array(v) ? json_array_size(v) : 1;
    for (size_t i = 0; i < n; i++) {
        json_t *e = json_is_array(v) ? json_array_get(v, i) : v;
        if (!json_is_integer(e) || json_integer_value(e) < 0 || json_integer_value(e) >= INT32_MAX)
            return NY_ERR(err, NY_E_FORMAT,
                          "%s: field \"eos_token_id\" must be a token id or a list of them", what);
        int id = (int)json_integer_value(e), dup = 0;
        for (int k = 0; k < cfg->n_eos; k++)
            dup |= cfg->eos_ids[k] == id;
        if (dup)
            continue;
        if (cfg->n_eos == ENGINE_MAX_EOS)
            return NY_ERR(err, NY_E_RANGE, "%s: more than %d eos ids", what, ENGINE_MAX_EOS);
        cfg->eos_ids[cfg->n_eos++] = id;
    }
    return NY_OK;
}

/* rope_scaling / rope_parameters: null, default, linear or llama3. */
static int cfg_rope(json_t *root, const char *what, struct engine_config *cfg, struct ny_err *err)
{
    json_t *rp = json_object_get(root, "rope_parameters");
    json_t *rs = rp && !json_is_null(rp) ? rp : json_object_get(root, "rope_scaling");
    cfg->rope_theta = 10000.0;
    int rc = cfg_real(root, "rope_theta", 0, &cfg->rope_theta, what, err);
    if (rc != NY_OK && rc != NY_E_NOTFOUND)
        return rc;
    if (!rs || json_is_null(rs))
        return NY_OK;
    if (!json_is_object(rs))
        return NY_ERR(err, NY_E_FORMAT, "%s: \"rope_scaling\" must be an object or null", what);
    rc = cfg_real(rs, "rope_theta", 0, &cfg->rope_theta, what, err);
    if (rc != NY_OK && rc != NY_E_NOTFOUND)
        return rc;
    const char *type = NULL;
    rc = ny_json_get_string(rs, "rope_type", 0, &type, what, err);
    if (rc == NY_E_NOTFOUND)
        rc = ny_json_get_string(rs, "type", 0, &type, what, err);
    if (rc != NY_OK && rc != NY_E_NOTFOUND)
        return rc;
    if (!type || !strcmp(type, "default"))
        return NY_OK;
    if (!strcmp(type, "linear")) {
        cfg->rope_llama3 = 2;
        return cfg_real(rs, "factor", 1, &cfg->rope_factor, what, err);
    }
    if (strcmp(type, "llama3") != 0)
        return NY_ERR(err, NY_E_UNSUPPORTED, "%s: rope type \"%s\" is not supported "
                      "(default, linear, llama3)", what, type);
    cfg->rope_llama3 = 1;
    if ((rc = cfg_real(rs, "factor", 1, &cfg->rope_factor, what, err)) ||
        (rc = cfg_real(rs, "low_freq_factor", 1, &cfg->rope_low_freq, what, err)) ||
        (rc = cfg_real(rs, "high_freq_factor", 1, &cfg->rope_high_freq, what, err)) ||
        (rc = cfg_int(rs, "original_max_position_embeddings", 1, 1, INT32_MAX,
                      &cfg->rope_orig_max_pos, what, err)))
        return rc;
    if (cfg->rope_high_freq == cfg->rope_low_freq)
        return NY_ERR(err, NY_E_RANGE, "%s: llama3 rope needs high_freq_factor != low_freq_factor",
                      what);
    return NY_OK;
}

/* Fields that would change the computation and that we do not implement. */
static int cfg_refuse(json_t *root, const char *what, struct ny_err *err)
{
    const char *s;
    int b, rc;
    if ((rc = ny_json_get_string(root, "model_type", 0, &s, what, err)) == NY_OK &&
        strcmp(s, "llama") != 0)
        return NY_ERR(err, NY_E_UNSUPPORTED, "%s: model_type \"%s\" is not supported (llama)",
                      what, s);
    if (rc != NY_OK && rc != NY_E_NOTFOUND)
        return rc;
    if ((rc = ny_json_get_string(root, "hidden_act", 0, &s, what, err)) == NY_OK &&
        strcmp(s, "silu") != 0)
        return NY_ERR(err, NY_E_UNSUPPORTED, "%s: hidden_act \"%s\" is not supported (silu)",
                      what, s);
    if (rc != NY_OK && rc != NY_E_NOTFOUND)
        return rc;
    const char *flags[] = {"attention_bias", "mlp_bias"};
    for (int i = 0; i < 2; i++) {
        if ((rc = ny_json_get_bool(root, flags[i], 0, &b, what, err)) == NY_OK && b)
            return NY_ERR(err, NY_E_UNSUPPORTED, "%s: \"%s\": true is not supported", what,
                          flags[i]);
        if (rc != NY_OK && rc != NY_E_NOTFOUND)
            return rc;
    }
    return NY_OK;
}

static int cfg_sizes(json_t *root, const char *what, struct engine_config *c, struct ny_err *err)
{
    int rc;
    if ((rc = cfg_int(root, "hidden_size", 1, 1, CFG_MAX_DIM, &c->hidden, what, err)) ||
        (rc = cfg_int(root, "intermediate_size", 1, 1, CFG_MAX_DIM, &c->intermediate, what,
                      err)) ||
        (rc = cfg_int(root, "num_hidden_layers", 1, 1, 4096, &c->n_layers, what, err)) ||
        (rc = cfg_int(root, "num_attention_heads", 1, 1, 4096, &c->n_heads, what, err)) ||
        (rc = cfg_int(root, "vocab_size", 1, 1, CFG_MAX_VOCAB, &c->vocab, what, err)))
        return rc;
    c->n_kv_heads = c->n_heads;
    c->head_dim = c->hidden / c->n_heads;
    c->max_pos = 2048;
    c->bos_id = -1;
    if ((rc = cfg_int(root, "num_key_value_heads", 0, 1, 4096, &c->n_kv_heads, what, err)) &&
        rc != NY_E_NOTFOUND)
        return rc;
    json_t *hd = json_object_get(root, "head_dim");
    if (hd && !json_is_null(hd) &&
        (rc = cfg_int(root, "head_dim", 1, 2, 65536, &c->head_dim, what, err)))
        return rc;
    if ((rc = cfg_int(root, "max_position_embeddings", 0, 1, INT32_MAX, &c->max_pos, what, err)) &&
        rc != NY_E_NOTFOUND)
        return rc;
    json_t *bos = json_object_get(root, "bos_token_id");
    if (bos && !json_is_null(bos) &&
        (rc = cfg_int(root, "bos_token_id", 1, 0, INT32_MAX - 1, &c->bos_id, what, err)))
        return rc;
    if (c->head_dim < 2 || c->head_dim % 2 || c->n_heads % c->n_kv_heads)
        return NY_ERR(err, NY_E_FORMAT, "%s: head_dim %d must be even and num_attention_heads "
                      "(%d) a multiple of num_key_value_heads (%d)", what, c->head_dim,
                      c->n_heads, c->n_kv_heads);
    return NY_OK;
}

int engine_config_parse(const char *text, size_t len, const char *what, struct engine_config *out,
                        struct ny_err *err)
{
    json_t *root;
    int rc = ny_json_load_buf(text, len, what, &root, err);
    if (rc != NY_OK)
        return rc;
    struct engine_config c;
    memset(&c, 0, sizeof c);
    double eps = 1e-6;
    if (!json_is_object(root))
        rc = NY_ERR(err, NY_E_FORMAT, "%s: not a JSON object", what);
    if (rc == NY_OK)
        rc = cfg_refuse(root, what, err);
    if (rc == NY_OK)
        rc = cfg_sizes(root, what, &c, err);
    if (rc == NY_OK && (rc = cfg_real(root, "rms_norm_eps", 0, &eps, what, err)) == NY_E_NOTFOUND)
        rc = NY_OK;
    if (rc == NY_OK)
        rc = cfg_rope(root, what, &c, err);
    if (rc == NY_OK &&
        (rc = ny_json_get_bool(root, "tie_word_embeddings", 0, &c.tie_embeddings, what, err)) ==
            NY_E_NOTFOUND)
        rc = NY_OK;
    if (rc == NY_OK)
        rc = cfg_add_eos(root, what, &c, err);
    json_decref(root);
    if (rc != NY_OK)
        return rc;
    c.rms_eps = (float)eps;
    *out = c;
    return NY_OK;
}

int engine_config_parse_generation(const char *text, size_t len, const char *what,
                                   struct engine_config *cfg, struct ny_err *err)
{
    json_t *root;
    int rc = ny_json_load_buf(text, len, what, &root, err);
    if (rc != NY_OK)
        return rc;
    struct engine_config c = *cfg;
    if (!json_is_object(root))
        rc = NY_ERR(err, NY_E_FORMAT, "%s: not a JSON object", what);
    else
        rc = cfg_add_eos(root, what, &c, err);
    json_decref(root);
    if (rc == NY_OK)
        *cfg = c;
    return rc;
}

int engine_config_load(const char *dir, struct engine_config *out, struct ny_err *err)
{
    char *path = ny_path_join(dir, "config.json");
    char *gpath = ny_path_join(dir, "generation_config.json");
    char *text = NULL;
    size_t len;
    struct engine_config c;
    int rc = !path || !gpath ? NY_ERR(err, NY_E_NOMEM, "out of memory")
                             : ny_file_read(path, CFG_MAX_FILE, &text, &len, err);
    if (rc == NY_OK)
        rc = engine_config_parse(text, len, path, &c, err);
    ny_free(text);
    text = NULL;
    if (rc == NY_OK && ny_file_exists(gpath)) {
        rc = ny_file_read(gpath, CFG_MAX_FILE, &text, &len, err);
        if (rc == NY_OK)
            rc = engine_config_parse_generation(text, len, gpath, &c, err);
        ny_free(text);
    }
    ny_free(path);
    ny_free(gpath);
    if (rc == NY_OK)
        *out = c;
    return rc;
}

void engine_config_inv_freq(const struct engine_config *cfg, float *inv)
{
    int half = cfg->head_dim / 2;
    float base = (float)cfg->rope_theta;
    for (int i = 0; i < half; i++)
        inv[i] = 1.0f / powf(base, (float)(2 * i) / (float)cfg->head_dim);
    if (cfg->rope_llama3 == 2) {
        for (int i = 0; i < half; i++)
            inv[i] = inv[i] / (float)cfg->rope_factor;
        return;
    }
    if (cfg->rope_llama3 != 1)
        return;
    float factor = (float)cfg->rope_factor, lo = (float)cfg->rope_low_freq;
    float hi = (float)cfg->rope_high_freq, old = (float)cfg->rope_orig_max_pos;
    float lo_wl = (float)((double)cfg->rope_orig_max_pos / cfg->rope_low_freq);
    float hi_wl = (float)((double)cfg->rope_orig_max_pos / cfg->rope_high_freq);
    for (int i = 0; i < half; i++) {
        float wl = (float)(2.0 * M_PI) / inv[i];
        float f = wl > lo_wl ? inv[i] / factor : inv[i];
        if (!(wl < hi_wl) && !(wl > lo_wl)) {
            float smooth = (old / wl - lo) / (hi - lo);
            f = (1.0f - smooth) * f / factor + smooth * f;
        }
        inv[i] = f;
    }
}
