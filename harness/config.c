/* config.c — the audit configuration: the built-in demo configuration, the JSON file format
 * (README.md, "Configuration"), path resolution and validation. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

/* The demo configuration; checkpoint paths resolve against the demo root (see demo_root). */
static const char demo_config[] =
    "{\"checkpoints\": ["
    " {\"label\": \"V16\", \"model\": \"@DEMO@/v16\", \"baseline\": true},"
    " {\"label\": \"V17\", \"model\": \"@DEMO@/v16\", \"adapter\": \"@DEMO@/v17\"},"
    " {\"label\": \"Epoch-1\", \"model\": \"@DEMO@/v16\", \"adapter\": \"@DEMO@/epoch1\"}],"
    " \"gates\": ["
    " {\"name\": \"icd_recall_floor\", \"kind\": \"floor\", \"checkpoint\": \"V17\","
    "  \"metric\": \"icd_recall\", \"min\": 0.85, \"on\": \"ci_low\"},"
    " {\"name\": \"cpt_exact_no_regression\", \"kind\": \"no_regression\","
    "  \"checkpoint\": \"V17\", \"metric\": \"cpt_exact\", \"margin\": 0.02, \"alpha\": 0.05},"
    " {\"name\": \"icd_invalid_ceiling\", \"kind\": \"ceiling\", \"checkpoint\": \"V17\","
    "  \"metric\": \"icd_invalid\", \"max\": 0.02}]}";

static const char *const metric_names[] = {
    "cpt_exact", "cpt_primary", "modifier_exact", "icd_exact", "icd_any_overlap",
    "icd_root_overlap", "icd_recall", "icd_precision", "all_three_exact", "icd_micro_precision",
    "icd_micro_recall", "icd_micro_f1", NULL};
/* Binary metrics: the ones with a paired comparison (delta, Newcombe interval, McNemar p). */
static const char *const binary_metric_names[] = {
    "cpt_exact", "cpt_primary", "modifier_exact", "icd_exact", "icd_any_overlap",
    "icd_root_overlap", "all_three_exact", NULL};
static const char *const rate_names[] = {"icd_invalid", "icd_nonbillable", "cpt_invalid",
                                         "modifier_invalid", "format_error_rate", NULL};

static int in_list(const char *const *list, const char *s)
{
    for (size_t i = 0; list[i]; i++)
        if (!strcmp(list[i], s))
            return 1;
    return 0;
}

void harness_config_init(struct harness_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
}

static void gate_fini(struct harness_gate_spec *g)
{
    ny_free(g->name);
    ny_free(g->checkpoint);
    ny_free(g->metric);
}

static void checkpoint_fini(struct harness_checkpoint *c)
{
    ny_free(c->label);
    ny_free(c->model);
    ny_free(c->adapter);
    ny_free(c->model_path);
    ny_free(c->adapter_path);
}

void harness_config_fini(struct harness_config *cfg)
{
    if (!cfg)
        return;
    for (size_t i = 0; i < cfg->n_checkpoints; i++)
        checkpoint_fini(&cfg->checkpoints[i]);
    for (size_t i = 0; i < cfg->n_gates; i++)
        gate_fini(&cfg->gates[i]);
    ny_free(cfg->checkpoints);
    ny_free(cfg->gates);
    ny_free(cfg->source);
    ny_free(cfg->root);
    ny_free(cfg->dataset);
    ny_free(cfg->dataset_path);
    ny_free(cfg->split);
    ny_free(cfg->codeset_release);
    ny_free(cfg->codeset_db);
    ny_free(cfg->device);
    ny_free(cfg->out_dir);
    ny_free(cfg->run_store);
    memset(cfg, 0, sizeof *cfg);
}

/* root/p unless p is absolute. */
static char *resolve(const char *root, const char *p)
{
    if (p[0] == '/' || !root || !root[0])
        return ny_strdup(p);
    return ny_path_join(root, p);
}

/* Replace *slot with a copy of s; NY_E_NOMEM on failure. */
static int set_str(char **slot, const char *s)
{
    char *d = s ? ny_strdup(s) : NULL;
    if (s && !d)
        return NY_E_NOMEM;
    ny_free(*slot);
    *slot = d;
    return NY_OK;
}

/* Refuse members not in `allowed`, so a typo ("max_new_token") is an error, not a silent
 * default. */
static int check_keys(json_t *obj, const char *const *allowed, const char *what,
                      struct ny_err *err)
{
    const char *key;
    json_t *v;
    json_object_foreach(obj, key, v) {
        (void)v;
        if (!in_list(allowed, key))
            return NY_ERR(err, NY_E_INVALID, "%s: unknown field \"%s\"", what, key);
    }
    return NY_OK;
}

static int get_object(json_t *obj, const char *key, json_t **out, const char *what,
                      struct ny_err *err)
{
    json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v)) {
        *out = NULL;
        return NY_OK;
    }
    if (!json_is_object(v))
        return NY_ERR(err, NY_E_FORMAT, "%s: field \"%s\" must be an object", what, key);
    *out = v;
    return NY_OK;
}

/* Optional string member into *slot (resolved against root when `path` is set). */
static int opt_str(json_t *obj, const char *key, char **slot, const char *root, int path,
                   const char *what, struct ny_err *err)
{
    const char *s;
    int rc = ny_json_get_string(obj, key, 0, &s, what, err);
    if (rc == NY_E_NOTFOUND)
        return NY_OK;
    if (rc)
        return rc;
    if (!s[0])
        return NY_ERR(err, NY_E_INVALID, "%s: field \"%s\" is empty", what, key);
    char *d = path ? resolve(root, s) : ny_strdup(s);
    if (!d)
        return NY_E_NOMEM;
    ny_free(*slot);
    *slot = d;
    return NY_OK;
}

static int opt_int(json_t *obj, const char *key, int64_t *slot, int64_t lo, int64_t hi,
                   const char *what, struct ny_err *err)
{
    int64_t v;
    int rc = ny_json_get_int(obj, key, 0, &v, what, err);
    if (rc == NY_E_NOTFOUND)
        return NY_OK;
    if (rc)
        return rc;
    if (v < lo || v > hi)
        return NY_ERR(err, NY_E_RANGE, "%s: field \"%s\" = %lld is outside [%lld, %lld]", what,
                      key, (long long)v, (long long)lo, (long long)hi);
    *slot = v;
    return NY_OK;
}

static int opt_real(json_t *obj, const char *key, double *slot, double lo, double hi,
                    const char *what, struct ny_err *err)
{
    json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v))
        return NY_OK;
    if (!json_is_number(v))
        return NY_ERR(err, NY_E_FORMAT, "%s: field \"%s\" must be a number", what, key);
    double d = json_number_value(v);
    if (!(d >= lo && d <= hi))
        return NY_ERR(err, NY_E_RANGE, "%s: field \"%s\" = %g is outside [%g, %g]", what, key, d,
                      lo, hi);
    *slot = d;
    return NY_OK;
}

static int opt_bool(json_t *obj, const char *key, int *slot, const char *what,
                    struct ny_err *err)
{
    int b;
    int rc = ny_json_get_bool(obj, key, 0, &b, what, err);
    if (rc == NY_E_NOTFOUND)
        return NY_OK;
    if (rc)
        return rc;
    *slot = b;
    return NY_OK;
}

static int parse_checkpoint(json_t *o, const char *root, size_t idx, struct harness_checkpoint *c,
                            const char *file, struct ny_err *err)
{
    char what[256];
    snprintf(what, sizeof what, "%s: checkpoints[%zu]", file, idx);
    if (!json_is_object(o))
        return NY_ERR(err, NY_E_FORMAT, "%s must be an object", what);
    static const char *const keys[] = {"label", "model", "adapter", "baseline", NULL};
    int rc = check_keys(o, keys, what, err);
    const char *label, *model;
    if (!rc)
        rc = ny_json_get_string(o, "label", 1, &label, what, err);
    if (!rc)
        rc = ny_json_get_string(o, "model", 1, &model, what, err);
    if (rc)
        return rc;
    if (!label[0] || strlen(label) > 64 || strpbrk(label, "[]\"<>&\n\r\t"))
        return NY_ERR(err, NY_E_INVALID,
                      "%s: \"label\" must be 1 to 64 characters without []\"<>& or controls",
                      what);
    if (!model[0])
        return NY_ERR(err, NY_E_INVALID, "%s: field \"model\" is empty", what);
    c->label = ny_strdup(label);
    c->model = ny_strdup(model);
    c->model_path = resolve(root, model);
    if (!c->label || !c->model || !c->model_path)
        return NY_E_NOMEM;
    const char *adapter;
    rc = ny_json_get_string(o, "adapter", 0, &adapter, what, err);
    if (rc == NY_OK) {
        if (!adapter[0])
            return NY_ERR(err, NY_E_INVALID, "%s: field \"adapter\" is empty", what);
        c->adapter = ny_strdup(adapter);
        c->adapter_path = resolve(root, adapter);
        if (!c->adapter || !c->adapter_path)
            return NY_E_NOMEM;
    } else if (rc != NY_E_NOTFOUND) {
        return rc;
    }
    return opt_bool(o, "baseline", &c->baseline, what, err);
}

static int parse_checkpoints(json_t *arr, const char *root, struct harness_config *cfg,
                             const char *file, struct ny_err *err)
{
    if (!json_is_array(arr) || json_array_size(arr) == 0 || json_array_size(arr) > 16)
        return NY_ERR(err, NY_E_FORMAT, "%s: \"checkpoints\" must be an array of 1 to 16 objects",
                      file);
    size_t n = json_array_size(arr);
    struct harness_checkpoint *cs = ny_calloc(n, sizeof *cs);
    if (!cs)
        return NY_E_NOMEM;
    int rc = NY_OK;
    for (size_t i = 0; i < n && !rc; i++)
        rc = parse_checkpoint(json_array_get(arr, i), root, i, &cs[i], file, err);
    if (rc) {
        for (size_t i = 0; i < n; i++)
            checkpoint_fini(&cs[i]);
        ny_free(cs);
        return rc;
    }
    for (size_t i = 0; i < cfg->n_checkpoints; i++)
        checkpoint_fini(&cfg->checkpoints[i]);
    ny_free(cfg->checkpoints);
    cfg->checkpoints = cs;
    cfg->n_checkpoints = n;
    return NY_OK;
}

static int gate_kind(const char *s, int *kind)
{
    static const char *const kinds[] = {"floor", "no_regression", "ceiling"};
    for (int i = 0; i < 3; i++)
        if (!strcmp(s, kinds[i])) {
            *kind = i;
            return 0;
        }
    return -1;
}

static int parse_gate_rule(json_t *o, struct harness_gate_spec *g, const char *what,
                           struct ny_err *err)
{
    const char *s;
    int rc;
    if (g->kind == HARNESS_GATE_FLOOR) {
        static const char *const keys[] = {"name", "kind", "checkpoint", "metric", "min", "on",
                                           NULL};
        if ((rc = check_keys(o, keys, what, err)))
            return rc;
        if (!json_is_number(json_object_get(o, "min")))
            return NY_ERR(err, NY_E_FORMAT, "%s: a floor needs a number \"min\"", what);
        if ((rc = opt_real(o, "min", &g->threshold, 0.0, 1.0, what, err)))
            return rc;
        rc = ny_json_get_string(o, "on", 0, &s, what, err);
        if (rc == NY_OK && strcmp(s, "value") && strcmp(s, "ci_low"))
            return NY_ERR(err, NY_E_INVALID, "%s: \"on\" must be \"value\" or \"ci_low\"", what);
        if (rc && rc != NY_E_NOTFOUND)
            return rc;
        g->on_ci_low = rc == NY_OK && !strcmp(s, "ci_low");
    } else if (g->kind == HARNESS_GATE_CEILING) {
        static const char *const keys[] = {"name", "kind", "checkpoint", "metric", "max", NULL};
        if ((rc = check_keys(o, keys, what, err)))
            return rc;
        if (!json_is_number(json_object_get(o, "max")))
            return NY_ERR(err, NY_E_FORMAT, "%s: a ceiling needs a number \"max\"", what);
        if ((rc = opt_real(o, "max", &g->threshold, 0.0, 1.0, what, err)))
            return rc;
    } else {
        static const char *const keys[] = {"name", "kind", "checkpoint", "metric", "margin",
                                           "alpha", "test", NULL};
        if ((rc = check_keys(o, keys, what, err)))
            return rc;
        g->alpha = 0.05;
        if ((rc = opt_real(o, "margin", &g->margin, 0.0, 1.0, what, err)) ||
            (rc = opt_real(o, "alpha", &g->alpha, 1e-12, 0.5, what, err)))
            return rc;
        rc = ny_json_get_string(o, "test", 0, &s, what, err);
        if (rc == NY_OK && strcmp(s, "mcnemar") && strcmp(s, "ci"))
            return NY_ERR(err, NY_E_INVALID, "%s: \"test\" must be \"mcnemar\" or \"ci\"", what);
        if (rc && rc != NY_E_NOTFOUND)
            return rc;
        g->use_ci = rc == NY_OK && !strcmp(s, "ci");
    }
    return NY_OK;
}

static int parse_gate(json_t *o, size_t idx, struct harness_gate_spec *g, const char *file,
                      struct ny_err *err)
{
    char what[256];
    snprintf(what, sizeof what, "%s: gates[%zu]", file, idx);
    if (!json_is_object(o))
        return NY_ERR(err, NY_E_FORMAT, "%s must be an object", what);
    const char *name, *kind, *metric, *ckpt = NULL;
    int rc;
    if ((rc = ny_json_get_string(o, "name", 1, &name, what, err)) ||
        (rc = ny_json_get_string(o, "kind", 1, &kind, what, err)) ||
        (rc = ny_json_get_string(o, "metric", 1, &metric, what, err)))
        return rc;
    rc = ny_json_get_string(o, "checkpoint", 0, &ckpt, what, err);
    if (rc && rc != NY_E_NOTFOUND)
        return rc;
    if (gate_kind(kind, &g->kind))
        return NY_ERR(err, NY_E_INVALID,
                      "%s: \"kind\" must be \"floor\", \"no_regression\" or \"ceiling\", not "
                      "\"%s\"", what, kind);
    if (!name[0] || strlen(name) > 64)
        return NY_ERR(err, NY_E_INVALID, "%s: \"name\" must be 1 to 64 characters", what);
    g->name = ny_strdup(name);
    g->metric = ny_strdup(metric);
    g->checkpoint = ckpt ? ny_strdup(ckpt) : NULL;
    if (!g->name || !g->metric || (ckpt && !g->checkpoint))
        return NY_E_NOMEM;
    return parse_gate_rule(o, g, what, err);
}

static int parse_gates(json_t *arr, struct harness_config *cfg, const char *file,
                       struct ny_err *err)
{
    if (!json_is_array(arr) || json_array_size(arr) > 256)
        return NY_ERR(err, NY_E_FORMAT, "%s: \"gates\" must be an array (at most 256)", file);
    size_t n = json_array_size(arr);
    struct harness_gate_spec *gs = n ? ny_calloc(n, sizeof *gs) : NULL;
    if (n && !gs)
        return NY_E_NOMEM;
    int rc = NY_OK;
    for (size_t i = 0; i < n && !rc; i++)
        rc = parse_gate(json_array_get(arr, i), i, &gs[i], file, err);
    if (rc) {
        for (size_t i = 0; i < n; i++)
            gate_fini(&gs[i]);
        ny_free(gs);
        return rc;
    }
    for (size_t i = 0; i < cfg->n_gates; i++)
        gate_fini(&cfg->gates[i]);
    ny_free(cfg->gates);
    cfg->gates = gs;
    cfg->n_gates = n;
    return NY_OK;
}

static int parse_sections(json_t *obj, const char *root, struct harness_config *cfg,
                          const char *file, struct ny_err *err)
{
    json_t *ds = NULL, *cs = NULL, *pr = NULL, *dec = NULL, *eng = NULL, *out = NULL;
    char what[256];
    int rc;
    if ((rc = get_object(obj, "dataset", &ds, file, err)) ||
        (rc = get_object(obj, "codeset", &cs, file, err)) ||
        (rc = get_object(obj, "prompt", &pr, file, err)) ||
        (rc = get_object(obj, "decoding", &dec, file, err)) ||
        (rc = get_object(obj, "engine", &eng, file, err)) ||
        (rc = get_object(obj, "output", &out, file, err)))
        return rc;
    if (ds) {
        static const char *const k[] = {"store", "split", "n", "seed", NULL};
        snprintf(what, sizeof what, "%s: dataset", file);
        int64_t seed = (int64_t)cfg->seed;
        if ((rc = check_keys(ds, k, what, err)) ||
            (rc = opt_str(ds, "store", &cfg->dataset, root, 0, what, err)) ||
            (rc = opt_str(ds, "split", &cfg->split, root, 0, what, err)) ||
            (rc = opt_int(ds, "n", &cfg->n, 1, 10000000, what, err)) ||
            (rc = opt_int(ds, "seed", &seed, 0, INT64_MAX, what, err)))
            return rc;
        cfg->seed = (uint64_t)seed;
        ny_free(cfg->dataset_path);
        cfg->dataset_path = strcmp(cfg->dataset, "demo") ? resolve(root, cfg->dataset) : NULL;
        if (strcmp(cfg->dataset, "demo") && !cfg->dataset_path)
            return NY_E_NOMEM;
    }
    if (cs) {
        static const char *const k[] = {"release", "db", NULL};
        snprintf(what, sizeof what, "%s: codeset", file);
        if ((rc = check_keys(cs, k, what, err)) ||
            (rc = opt_str(cs, "release", &cfg->codeset_release, root, 0, what, err)) ||
            (rc = opt_str(cs, "db", &cfg->codeset_db, root, 1, what, err)))
            return rc;
    }
    if (pr) {
        static const char *const k[] = {"few_shot", "max_prompt_tokens", "token_counter", NULL};
        snprintf(what, sizeof what, "%s: prompt", file);
        const char *tc = NULL;
        rc = ny_json_get_string(pr, "token_counter", 0, &tc, what, err);
        if (rc && rc != NY_E_NOTFOUND)
            return rc;
        if (tc && strcmp(tc, "tokenizer") && strcmp(tc, "estimate"))
            return NY_ERR(err, NY_E_INVALID, "%s: \"token_counter\" must be \"tokenizer\" or "
                          "\"estimate\"", what);
        if (tc)
            cfg->count_tokenizer = !strcmp(tc, "tokenizer");
        if ((rc = check_keys(pr, k, what, err)) ||
            (rc = opt_int(pr, "few_shot", &cfg->few_shot, 0, 64, what, err)) ||
            (rc = opt_int(pr, "max_prompt_tokens", &cfg->max_prompt_tokens, 0, 1 << 20, what,
                          err)))
            return rc;
    }
    if (dec) {
        static const char *const k[] = {"max_new_tokens", NULL};
        snprintf(what, sizeof what, "%s: decoding", file);
        if ((rc = check_keys(dec, k, what, err)) ||
            (rc = opt_int(dec, "max_new_tokens", &cfg->max_new_tokens, 1, 4096, what, err)))
            return rc;
    }
    if (eng) {
        static const char *const k[] = {"device", "tp", "threads", "batch", NULL};
        snprintf(what, sizeof what, "%s: engine", file);
        if ((rc = check_keys(eng, k, what, err)) ||
            (rc = opt_str(eng, "device", &cfg->device, root, 0, what, err)) ||
            (rc = opt_int(eng, "tp", &cfg->tp, 1, 64, what, err)) ||
            (rc = opt_int(eng, "threads", &cfg->threads, 0, 1024, what, err)) ||
            (rc = opt_int(eng, "batch", &cfg->batch, 1, HARNESS_DECODE_BATCH, what, err)))
            return rc;
    }
    if (out) {
        static const char *const k[] = {"dir", "run_store", "allow_report_text", NULL};
        snprintf(what, sizeof what, "%s: output", file);
        if ((rc = check_keys(out, k, what, err)) ||
            (rc = opt_str(out, "dir", &cfg->out_dir, root, 1, what, err)) ||
            (rc = opt_str(out, "run_store", &cfg->run_store, root, 1, what, err)) ||
            (rc = opt_bool(out, "allow_report_text", &cfg->allow_report_text, what, err)))
            return rc;
    }
    return NY_OK;
}

static int parse_into(json_t *obj, const char *root, const char *file, struct harness_config *cfg,
                      struct ny_err *err)
{
    if (!json_is_object(obj))
        return NY_ERR(err, NY_E_FORMAT, "%s: the configuration must be a JSON object", file);
    static const char *const keys[] = {"checkpoints", "dataset", "codeset", "prompt", "decoding",
                                       "engine", "gates", "output", "comment", NULL};
    int rc = check_keys(obj, keys, file, err);
    if (rc)
        return rc;
    json_t *v = json_object_get(obj, "checkpoints");
    if (v && (rc = parse_checkpoints(v, root, cfg, file, err)))
        return rc;
    json_t *g = json_object_get(obj, "gates");
    if (v && !g) { /* the demo gates name the demo labels: own checkpoints, own gates */
        for (size_t i = 0; i < cfg->n_gates; i++)
            gate_fini(&cfg->gates[i]);
        ny_free(cfg->gates);
        cfg->gates = NULL;
        cfg->n_gates = 0;
    }
    if (g && (rc = parse_gates(g, cfg, file, err)))
        return rc;
    if ((rc = parse_sections(obj, root, cfg, file, err)))
        return rc;
    if (set_str(&cfg->source, file) || set_str(&cfg->root, root))
        return NY_E_NOMEM;
    return NY_OK;
}

/* Scalar defaults shared by the demo configuration and files. */
static int set_defaults(struct harness_config *cfg)
{
    cfg->n = 500;
    cfg->seed = 0;
    cfg->max_new_tokens = 48;
    cfg->max_prompt_tokens = 0;
    cfg->few_shot = -1;
    cfg->tp = 1;
    cfg->threads = 0;
    cfg->batch = 16;
    if (set_str(&cfg->dataset, "demo") || set_str(&cfg->split, "heldout") ||
        set_str(&cfg->codeset_release, "demo") || set_str(&cfg->device, "cpu") ||
        set_str(&cfg->out_dir, "nyxaudit-out"))
        return NY_E_NOMEM;
    return NY_OK;
}

/* Where the demo checkpoints live: $NYXAUDIT_DEMO_DIR, else golden/demo in the source tree. */
static void demo_root(const char **root, const char **prefix)
{
    const char *d = getenv("NYXAUDIT_DEMO_DIR");
    if (d && d[0]) {
        *root = d;
        *prefix = "";
    } else {
        *root = NY_SOURCE_DIR;
        *prefix = "golden/demo/";
    }
}

int harness_config_default(struct harness_config *cfg, struct ny_err *err)
{
    const char *root, *prefix;
    demo_root(&root, &prefix);
    char *abs = root[0] == '/' ? NULL : realpath(root, NULL); /* a relative NYXAUDIT_DEMO_DIR */
    if (abs)
        root = abs;
    struct ny_buf b;
    ny_buf_init(&b);
    for (const char *p = demo_config; *p;) {
        const char *at = strstr(p, "@DEMO@/");
        size_t n = at ? (size_t)(at - p) : strlen(p);
        ny_buf_append(&b, p, n);
        if (!at)
            break;
        ny_buf_puts(&b, prefix);
        p = at + strlen("@DEMO@/");
    }
    json_t *obj = NULL;
    int rc = b.failed ? NY_ERR(err, NY_E_NOMEM, "out of memory building the demo configuration")
                      : ny_json_load_buf(b.data, b.len, "built-in demo configuration", &obj, err);
    ny_buf_fini(&b);
    if (rc) {
        free(abs);
        return rc;
    }
    struct harness_config tmp;
    harness_config_init(&tmp);
    rc = set_defaults(&tmp);
    if (!rc)
        rc = parse_into(obj, root, "built-in demo configuration", &tmp, err);
    json_decref(obj);
    free(abs);
    if (rc) {
        harness_config_fini(&tmp);
        return rc;
    }
    *cfg = tmp;
    return NY_OK;
}

int harness_config_parse(struct json_t *obj, const char *root, const char *what,
                         struct harness_config *cfg, struct ny_err *err)
{
    struct harness_config tmp;
    int rc = harness_config_default(&tmp, err);
    if (rc)
        return rc;
    rc = parse_into(obj, root, what, &tmp, err);
    if (!rc)
        rc = harness_config_validate(&tmp, err);
    if (rc) {
        harness_config_fini(&tmp);
        return rc;
    }
    *cfg = tmp;
    return NY_OK;
}

int harness_config_load(const char *path, struct harness_config *cfg, struct ny_err *err)
{
    json_t *obj;
    int rc = ny_json_load_file(path, 1 << 20, &obj, err);
    if (rc) {
        if (rc == NY_E_IO)
            rc = NY_E_NOTFOUND; /* a missing or unreadable --config is invalid input */
        return rc;
    }
    char *dir = ny_strdup(path);
    if (!dir) {
        json_decref(obj);
        return NY_E_NOMEM;
    }
    char *slash = strrchr(dir, '/');
    if (slash)
        slash[slash == dir ? 1 : 0] = '\0';
    else
        strcpy(dir, ".");
    /* An absolute root, so that the manifest's relative paths can be found again by verify from
     * any working directory. */
    char *abs = realpath(dir, NULL);
    rc = harness_config_parse(obj, abs ? abs : dir, path, cfg, err);
    free(abs);
    ny_free(dir);
    json_decref(obj);
    return rc;
}

const struct harness_checkpoint *harness_config_baseline(const struct harness_config *cfg)
{
    for (size_t i = 0; i < cfg->n_checkpoints; i++)
        if (cfg->checkpoints[i].baseline)
            return &cfg->checkpoints[i];
    return NULL;
}

static const struct harness_checkpoint *find_label(const struct harness_config *cfg,
                                                   const char *label)
{
    for (size_t i = 0; i < cfg->n_checkpoints; i++)
        if (!strcmp(cfg->checkpoints[i].label, label))
            return &cfg->checkpoints[i];
    return NULL;
}

static int validate_gate(const struct harness_config *cfg, const struct harness_gate_spec *g,
                         struct ny_err *err)
{
    const char *src = cfg->source ? cfg->source : "configuration";
    if (g->checkpoint) {
        const struct harness_checkpoint *c = find_label(cfg, g->checkpoint);
        if (!c)
            return NY_ERR(err, NY_E_INVALID, "%s: gate \"%s\" names checkpoint \"%s\", which is "
                          "not configured", src, g->name, g->checkpoint);
        if (g->kind == HARNESS_GATE_NO_REGRESSION && c->baseline)
            return NY_ERR(err, NY_E_INVALID, "%s: gate \"%s\" compares the baseline \"%s\" with "
                          "itself", src, g->name, g->checkpoint);
    }
    if (g->kind == HARNESS_GATE_NO_REGRESSION && !in_list(binary_metric_names, g->metric))
        return NY_ERR(err, NY_E_INVALID, "%s: gate \"%s\": no_regression needs a binary metric "
                      "with a paired test (cpt_exact, cpt_primary, modifier_exact, icd_exact, "
                      "icd_any_overlap, icd_root_overlap, all_three_exact), not \"%s\"", src,
                      g->name, g->metric);
    if (g->kind == HARNESS_GATE_FLOOR && !in_list(metric_names, g->metric))
        return NY_ERR(err, NY_E_INVALID, "%s: gate \"%s\": unknown metric \"%s\"", src, g->name,
                      g->metric);
    if (g->kind == HARNESS_GATE_CEILING && !in_list(metric_names, g->metric) &&
        !in_list(rate_names, g->metric))
        return NY_ERR(err, NY_E_INVALID, "%s: gate \"%s\": unknown metric or rate \"%s\"", src,
                      g->name, g->metric);
    return NY_OK;
}

int harness_config_validate(const struct harness_config *cfg, struct ny_err *err)
{
    const char *src = cfg->source ? cfg->source : "configuration";
    if (cfg->n_checkpoints == 0)
        return NY_ERR(err, NY_E_INVALID, "%s: no checkpoints configured", src);
    int baselines = 0;
    for (size_t i = 0; i < cfg->n_checkpoints; i++) {
        baselines += cfg->checkpoints[i].baseline != 0;
        for (size_t j = 0; j < i; j++)
            if (!strcmp(cfg->checkpoints[i].label, cfg->checkpoints[j].label))
                return NY_ERR(err, NY_E_INVALID, "%s: checkpoint label \"%s\" appears twice",
                              src, cfg->checkpoints[i].label);
    }
    if (baselines != 1)
        return NY_ERR(err, NY_E_INVALID, "%s: exactly one checkpoint must have \"baseline\": "
                      "true (found %d)", src, baselines);
    for (size_t i = 0; i < cfg->n_gates; i++) {
        int rc = validate_gate(cfg, &cfg->gates[i], err);
        if (rc)
            return rc;
        for (size_t j = 0; j < i; j++)
            if (!strcmp(cfg->gates[i].name, cfg->gates[j].name))
                return NY_ERR(err, NY_E_INVALID, "%s: gate name \"%s\" appears twice", src,
                              cfg->gates[i].name);
    }
    if (cfg->n < 1)
        return NY_ERR(err, NY_E_INVALID, "%s: n must be at least 1", src);
    if (strcmp(cfg->device, "cpu") && strcmp(cfg->device, "cuda"))
        return NY_ERR(err, NY_E_INVALID, "%s: device must be \"cpu\" or \"cuda\", not \"%s\"",
                      src, cfg->device);
    if (cfg->tp < 1 || cfg->tp > 8)
        return NY_ERR(err, NY_E_INVALID, "%s: tensor-parallel size %lld is outside 1..8", src,
                      (long long)cfg->tp);
    if (!cfg->split || !cfg->split[0])
        return NY_ERR(err, NY_E_INVALID, "%s: dataset split is empty", src);
    return NY_OK;
}
