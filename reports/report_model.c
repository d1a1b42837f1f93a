/* report_model.c — validates a results object (harness/RESULTS.md) and builds the borrowed view
 * (struct rp_doc) that the PDF and HTML writers print from. */
#include <math.h>
#include <string.h>

#include "report_int.h"

/* ---- typed member access with the field path in every message --------------------------------- */

static const char *jtype(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a real number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    default: return "null";
    }
}

/* Member `key` of obj; NULL (and, when required, an error) when missing or null. */
static const json_t *member(const json_t *obj, const char *path, const char *key, int required,
                            int *rc, struct ny_err *err)
{
    const json_t *v = json_object_get(obj, key);
    if (v && !json_is_null(v))
        return v;
    if (required)
        *rc = NY_ERR(err, NY_E_FORMAT, "results: %s.%s: missing", path, key);
    return NULL;
}

static int want(const json_t *v, int type_ok, const char *what, const char *path, const char *key,
                struct ny_err *err)
{
    if (type_ok)
        return 0;
    return NY_ERR(err, NY_E_FORMAT, "results: %s.%s: expected %s, found %s", path, key, what,
                  jtype(v));
}

static int get_str(const json_t *obj, const char *path, const char *key, int required,
                   const char **out, struct ny_err *err)
{
    int rc = 0;
    const json_t *v = member(obj, path, key, required, &rc, err);
    if (!v)
        return rc;
    if ((rc = want(v, json_is_string(v), "a string", path, key, err)))
        return rc;
    *out = json_string_value(v);
    return 0;
}

static int get_int(const json_t *obj, const char *path, const char *key, int64_t *out,
                   struct ny_err *err)
{
    int rc = 0;
    const json_t *v = member(obj, path, key, 1, &rc, err);
    if (!v)
        return rc;
    if ((rc = want(v, json_is_integer(v), "an integer", path, key, err)))
        return rc;
    *out = (int64_t)json_integer_value(v);
    return 0;
}

static int get_num(const json_t *obj, const char *path, const char *key, double *out,
                   struct ny_err *err)
{
    int rc = 0;
    const json_t *v = member(obj, path, key, 1, &rc, err);
    if (!v)
        return rc;
    if ((rc = want(v, json_is_number(v), "a number", path, key, err)))
        return rc;
    *out = json_number_value(v);
    if (!isfinite(*out))
        return NY_ERR(err, NY_E_FORMAT, "results: %s.%s: not a finite number", path, key);
    return 0;
}

static int get_typed(const json_t *obj, const char *path, const char *key, int required,
                     json_type type, const json_t **out, struct ny_err *err)
{
    int rc = 0;
    const json_t *v = member(obj, path, key, required, &rc, err);
    if (!v)
        return rc;
    const char *what = type == JSON_OBJECT ? "an object" : "an array";
    if ((rc = want(v, json_typeof(v) == type, what, path, key, err)))
        return rc;
    *out = v;
    return 0;
}

/* ci95: [lo, hi] with lo <= hi. */
static int get_ci(const json_t *obj, const char *path, const char *key, int required, double *lo,
                  double *hi, int *has, struct ny_err *err)
{
    int rc = 0;
    *has = 0;
    const json_t *v = member(obj, path, key, required, &rc, err);
    if (!v)
        return rc;
    if (!json_is_array(v) || json_array_size(v) != 2 || !json_is_number(json_array_get(v, 0)) ||
        !json_is_number(json_array_get(v, 1)))
        return NY_ERR(err, NY_E_FORMAT, "results: %s.%s: expected an array of 2 numbers", path,
                      key);
    *lo = json_number_value(json_array_get(v, 0));
    *hi = json_number_value(json_array_get(v, 1));
    if (!isfinite(*lo) || !isfinite(*hi) || *lo > *hi)
        return NY_ERR(err, NY_E_FORMAT, "results: %s.%s: interval [%g, %g] is not ordered", path,
                      key, *lo, *hi);
    *has = 1;
    return 0;
}

#define TRY(x)                                                                                     \
    do {                                                                                           \
        int rc_ = (x);                                                                             \
        if (rc_)                                                                                   \
            return rc_;                                                                            \
    } while (0)

/* ---- sections ---------------------------------------------------------------------------------- */

static int load_run(struct rp_doc *d, struct ny_err *err)
{
    const json_t *run = NULL;
    TRY(get_typed(d->root, "results", "run", 1, JSON_OBJECT, &run, err));
    const char *p = "results.run";
    TRY(get_str(run, p, "id", 1, &d->run_id, err));
    TRY(get_str(run, p, "started", 1, &d->started, err));
    TRY(get_str(run, p, "finished", 0, &d->finished, err));
    TRY(get_str(run, p, "dataset", 1, &d->dataset, err));
    TRY(get_str(run, p, "split", 1, &d->split, err));
    TRY(get_str(run, p, "release", 1, &d->release, err));
    TRY(get_int(run, p, "n", &d->n, err));
    TRY(get_int(run, p, "seed", &d->seed, err));
    const json_t *a = json_object_get(run, "allow_report_text");
    if (!a)
        return NY_ERR(err, NY_E_FORMAT, "results: %s.allow_report_text: missing", p);
    TRY(want(a, json_is_boolean(a), "a boolean", p, "allow_report_text", err));
    d->allow_text = json_is_true(a);
    return 0;
}

static int load_checkpoints(struct rp_doc *d, struct ny_err *err)
{
    const json_t *arr = NULL;
    TRY(get_typed(d->root, "results", "checkpoints", 1, JSON_ARRAY, &arr, err));
    d->nck = json_array_size(arr);
    if (d->nck == 0)
        return NY_ERR(err, NY_E_FORMAT, "results: results.checkpoints: empty");
    if (d->nck > 64)
        return NY_ERR(err, NY_E_FORMAT, "results: results.checkpoints: %zu checkpoints (max 64)",
                      d->nck);
    d->ck = ny_calloc(d->nck, sizeof *d->ck);
    if (!d->ck)
        return NY_ERR(err, NY_E_NOMEM, "results: out of memory");
    size_t nbase = 0;
    for (size_t i = 0; i < d->nck; i++) {
        char p[64];
        snprintf(p, sizeof p, "results.checkpoints[%zu]", i);
        const json_t *c = json_array_get(arr, i);
        if (!json_is_object(c))
            return NY_ERR(err, NY_E_FORMAT, "results: %s: expected an object, found %s", p,
                          jtype(c));
        struct rp_ckpt *k = &d->ck[i];
        TRY(get_str(c, p, "label", 1, &k->label, err));
        if (!k->label[0])
            return NY_ERR(err, NY_E_FORMAT, "results: %s.label: empty", p);
        TRY(get_str(c, p, "model", 1, &k->model, err));
        TRY(get_str(c, p, "adapter", 0, &k->adapter, err));
        const json_t *b = json_object_get(c, "baseline");
        if (!b)
            return NY_ERR(err, NY_E_FORMAT, "results: %s.baseline: missing", p);
        TRY(want(b, json_is_boolean(b), "a boolean", p, "baseline", err));
        k->baseline = json_is_true(b);
        if (k->baseline) {
            nbase++;
            d->base = i;
        }
        for (size_t j = 0; j < i; j++)
            if (strcmp(d->ck[j].label, k->label) == 0)
                return NY_ERR(err, NY_E_FORMAT, "results: %s.label: \"%s\" appears twice", p,
                              k->label);
    }
    if (nbase != 1)
        return NY_ERR(err, NY_E_FORMAT,
                      "results: results.checkpoints: %zu baselines (exactly one required)", nbase);
    return 0;
}

static int load_breakdown(const json_t *obj, const char *path, struct ny_err *err)
{
    const char *key;
    const json_t *v;
    json_object_foreach((json_t *)obj, key, v) {
        char p[256];
        snprintf(p, sizeof p, "%s.%.120s", path, key);
        if (!json_is_object(v))
            return NY_ERR(err, NY_E_FORMAT, "results: %s: expected an object, found %s", p,
                          jtype(v));
        int64_t n;
        double x;
        TRY(get_int(v, p, "n", &n, err));
        TRY(get_num(v, p, "cpt_exact", &x, err));
        TRY(get_num(v, p, "icd_exact", &x, err));
    }
    return 0;
}

static int load_model(struct rp_ckpt *k, const json_t *m, const char *p, struct ny_err *err)
{
    char q[256];
    const json_t *mets = NULL, *val = NULL, *tax = NULL, *bd = NULL;
    TRY(get_typed(m, p, "metrics", 1, JSON_OBJECT, &mets, err));
    snprintf(q, sizeof q, "%s.metrics", p);
    for (int i = 0; i < RP_NMETRICS; i++) {
        char r[300];
        const json_t *e = NULL;
        TRY(get_typed(mets, q, rp_metrics[i].key, 1, JSON_OBJECT, &e, err));
        snprintf(r, sizeof r, "%s.%s", q, rp_metrics[i].key);
        struct rp_value *v = &k->m[i];
        TRY(get_num(e, r, "value", &v->v, err));
        TRY(get_ci(e, r, "ci95", rp_metrics[i].ci_required, &v->lo, &v->hi, &v->has_ci, err));
    }
    TRY(get_int(m, p, "format_errors", &k->format_errors, err));
    /* metrics writes validity null without a code set, and a rate null when a checkpoint predicted
     * no code of that system (0/0): both are shown as "n/a", never refused. */
    for (int i = 0; i < RP_NVALIDITY; i++)
        k->validity[i] = NAN;
    k->validity_counts = NULL;
    if (!json_is_null(json_object_get(m, "validity"))) {
        TRY(get_typed(m, p, "validity", 1, JSON_OBJECT, &val, err));
        snprintf(q, sizeof q, "%s.validity", p);
        for (int i = 0; i < RP_NVALIDITY; i++)
            if (!json_is_null(json_object_get(val, rp_validity_keys[i])))
                TRY(get_num(val, q, rp_validity_keys[i], &k->validity[i], err));
        TRY(get_typed(val, q, "counts", 0, JSON_OBJECT, &k->validity_counts, err));
    }
    TRY(get_typed(m, p, "taxonomy", 1, JSON_OBJECT, &tax, err));
    snprintf(q, sizeof q, "%s.taxonomy", p);
    for (int i = 0; i < RP_NTAXONOMY; i++)
        TRY(get_int(tax, q, rp_taxonomy_keys[i], &k->taxonomy[i], err));
    TRY(get_typed(m, p, "confusions", 1, JSON_ARRAY, &k->confusions, err));
    for (size_t i = 0; i < json_array_size(k->confusions); i++) {
        const json_t *c = json_array_get(k->confusions, i);
        snprintf(q, sizeof q, "%s.confusions[%zu]", p, i);
        if (!json_is_object(c))
            return NY_ERR(err, NY_E_FORMAT, "results: %s: expected an object", q);
        const char *s;
        int64_t n;
        TRY(get_str(c, q, "gold", 1, &s, err));
        TRY(get_str(c, q, "pred", 1, &s, err));
        TRY(get_int(c, q, "count", &n, err));
    }
    TRY(get_typed(m, p, "breakdowns", 0, JSON_OBJECT, &bd, err));
    if (bd) {
        snprintf(q, sizeof q, "%s.breakdowns", p);
        TRY(get_typed(bd, q, "modality", 0, JSON_OBJECT, &k->by_modality, err));
        TRY(get_typed(bd, q, "primary_cpt", 0, JSON_OBJECT, &k->by_cpt, err));
        char r[300];
        snprintf(r, sizeof r, "%s.modality", q);
        if (k->by_modality)
            TRY(load_breakdown(k->by_modality, r, err));
        snprintf(r, sizeof r, "%s.primary_cpt", q);
        if (k->by_cpt)
            TRY(load_breakdown(k->by_cpt, r, err));
    }
    return 0;
}

static int load_comparisons(struct rp_doc *d, const json_t *metrics, struct ny_err *err)
{
    const json_t *arr = NULL, *holm = NULL;
    TRY(get_typed(metrics, "results.metrics", "comparisons", 1, JSON_ARRAY, &arr, err));
    TRY(get_typed(metrics, "results.metrics", "cochran_q", 0, JSON_OBJECT, &d->cochran, err));
    TRY(get_typed(metrics, "results.metrics", "holm", 0, JSON_ARRAY, &holm, err));
    d->ncmp = json_array_size(arr);
    d->cmp = ny_calloc(d->ncmp ? d->ncmp : 1, sizeof *d->cmp);
    if (!d->cmp)
        return NY_ERR(err, NY_E_NOMEM, "results: out of memory");
    for (size_t i = 0; i < d->ncmp; i++) {
        char p[64];
        snprintf(p, sizeof p, "results.metrics.comparisons[%zu]", i);
        const json_t *c = json_array_get(arr, i);
        if (!json_is_object(c))
            return NY_ERR(err, NY_E_FORMAT, "results: %s: expected an object", p);
        struct rp_cmp *m = &d->cmp[i];
        int has;
        TRY(get_str(c, p, "a", 1, &m->a, err));
        TRY(get_str(c, p, "b", 1, &m->b, err));
        TRY(get_str(c, p, "metric", 1, &m->metric, err));
        TRY(get_num(c, p, "delta", &m->delta, err));
        TRY(get_ci(c, p, "ci95", 1, &m->lo, &m->hi, &has, err));
        TRY(get_num(c, p, "mcnemar_p", &m->p, err));
        if (rp_doc_ckpt(d, m->a) < 0 || rp_doc_ckpt(d, m->b) < 0)
            return NY_ERR(err, NY_E_FORMAT, "results: %s: \"%s\" vs \"%s\": unknown checkpoint",
                          p, m->a, m->b);
        if (rp_metric_index(m->metric) < 0)
            return NY_ERR(err, NY_E_FORMAT, "results: %s.metric: unknown metric \"%s\"", p,
                          m->metric);
    }
    for (size_t i = 0; holm && i < json_array_size(holm); i++) {
        char p[64];
        snprintf(p, sizeof p, "results.metrics.holm[%zu]", i);
        const json_t *h = json_array_get(holm, i);
        if (!json_is_object(h))
            return NY_ERR(err, NY_E_FORMAT, "results: %s: expected an object", p);
        const char *a, *b, *metric;
        double padj;
        TRY(get_str(h, p, "a", 1, &a, err));
        TRY(get_str(h, p, "b", 1, &b, err));
        TRY(get_str(h, p, "metric", 1, &metric, err));
        TRY(get_num(h, p, "p_adj", &padj, err));
        for (size_t j = 0; j < d->ncmp; j++) {
            struct rp_cmp *m = &d->cmp[j];
            if (!strcmp(m->a, a) && !strcmp(m->b, b) && !strcmp(m->metric, metric)) {
                m->p_adj = padj;
                m->has_adj = 1;
            }
        }
    }
    return 0;
}

static int load_metrics(struct rp_doc *d, struct ny_err *err)
{
    const json_t *metrics = NULL, *models = NULL;
    TRY(get_typed(d->root, "results", "metrics", 1, JSON_OBJECT, &metrics, err));
    TRY(get_typed(metrics, "results.metrics", "models", 1, JSON_OBJECT, &models, err));
    for (size_t i = 0; i < d->nck; i++) {
        char p[200];
        const json_t *m = NULL;
        TRY(get_typed(models, "results.metrics.models", d->ck[i].label, 1, JSON_OBJECT, &m, err));
        snprintf(p, sizeof p, "results.metrics.models.%.100s", d->ck[i].label);
        TRY(load_model(&d->ck[i], m, p, err));
    }
    return load_comparisons(d, metrics, err);
}

static int load_gates(struct rp_doc *d, struct ny_err *err)
{
    const json_t *arr = NULL;
    TRY(get_typed(d->root, "results", "gates", 1, JSON_ARRAY, &arr, err));
    d->ngates = json_array_size(arr);
    d->gates = ny_calloc(d->ngates ? d->ngates : 1, sizeof *d->gates);
    if (!d->gates)
        return NY_ERR(err, NY_E_NOMEM, "results: out of memory");
    for (size_t i = 0; i < d->ngates; i++) {
        char p[64];
        snprintf(p, sizeof p, "results.gates[%zu]", i);
        const json_t *g = json_array_get(arr, i);
        if (!json_is_object(g))
            return NY_ERR(err, NY_E_FORMAT, "results: %s: expected an object", p);
        struct rp_gate *t = &d->gates[i];
        TRY(get_str(g, p, "name", 1, &t->name, err));
        TRY(get_str(g, p, "kind", 1, &t->kind, err));
        TRY(get_str(g, p, "checkpoint", 0, &t->checkpoint, err));
        TRY(get_str(g, p, "metric", 1, &t->metric, err));
        TRY(get_str(g, p, "rule", 1, &t->rule, err));
        TRY(get_typed(g, p, "evidence", 1, JSON_OBJECT, &t->evidence, err));
        TRY(get_str(g, p, "verdict", 1, &t->verdict, err));
        if (strcmp(t->verdict, "pass") && strcmp(t->verdict, "fail"))
            return NY_ERR(err, NY_E_FORMAT, "results: %s.verdict: \"%s\" (pass or fail)", p,
                          t->verdict);
        t->pass = !strcmp(t->verdict, "pass");
        d->nfail += !t->pass;
    }
    const char *v;
    TRY(get_str(d->root, "results", "verdict", 1, &v, err));
    if (strcmp(v, "pass") && strcmp(v, "fail"))
        return NY_ERR(err, NY_E_FORMAT, "results: results.verdict: \"%s\" (pass or fail)", v);
    d->pass = !strcmp(v, "pass");
    if (d->pass && d->nfail)
        return NY_ERR(err, NY_E_FORMAT,
                      "results: results.verdict: \"pass\" but %zu gate(s) failed", d->nfail);
    return 0;
}

/* Normalised codes of each prediction and the gold line give the disagreement flags. */
static int record_flags(struct rp_doc *d, struct rp_record *r)
{
    char *gold = rp_codes_norm(r->gold);
    char *first = NULL;
    int rc = gold ? 0 : NY_E_NOMEM;
    for (size_t j = 0; !rc && j < d->nck; j++) {
        char *p = rp_codes_norm(r->pred[j] ? r->pred[j] : "");
        if (!p) {
            rc = NY_E_NOMEM;
            break;
        }
        r->wrong[j] = strcmp(p, gold) != 0;
        if (!first)
            first = p;
        else {
            r->disagree |= strcmp(p, first) != 0;
            ny_free(p);
        }
    }
    ny_free(first);
    ny_free(gold);
    return rc;
}

static int load_record(struct rp_doc *d, struct rp_record *r, const json_t *o, const char *p,
                       struct ny_err *err)
{
    const json_t *preds = NULL;
    TRY(get_str(o, p, "id", 1, &r->id, err));
    TRY(get_str(o, p, "modality", 0, &r->modality, err));
    TRY(get_str(o, p, "primary_cpt", 0, &r->primary_cpt, err));
    TRY(get_str(o, p, "gold", 1, &r->gold, err));
    TRY(get_str(o, p, "report_excerpt", 0, &r->excerpt, err));
    TRY(get_typed(o, p, "predictions", 1, JSON_OBJECT, &preds, err));
    r->pred = ny_calloc(d->nck, sizeof *r->pred);
    r->wrong = ny_calloc(d->nck, sizeof *r->wrong);
    if (!r->pred || !r->wrong)
        return NY_ERR(err, NY_E_NOMEM, "results: out of memory");
    char q[128];
    snprintf(q, sizeof q, "%s.predictions", p);
    for (size_t j = 0; j < d->nck; j++)
        TRY(get_str(preds, q, d->ck[j].label, 0, &r->pred[j], err));
    if (record_flags(d, r))
        return NY_ERR(err, NY_E_NOMEM, "results: out of memory");
    d->ndisagree += r->disagree != 0;
    return 0;
}

static int load_records(struct rp_doc *d, struct ny_err *err)
{
    const json_t *arr = NULL;
    TRY(get_typed(d->root, "results", "records", 1, JSON_ARRAY, &arr, err));
    d->nrec = json_array_size(arr);
    d->rec = ny_calloc(d->nrec ? d->nrec : 1, sizeof *d->rec);
    if (!d->rec)
        return NY_ERR(err, NY_E_NOMEM, "results: out of memory");
    for (size_t i = 0; i < d->nrec; i++) {
        char p[64];
        snprintf(p, sizeof p, "results.records[%zu]", i);
        const json_t *o = json_array_get(arr, i);
        if (!json_is_object(o))
            return NY_ERR(err, NY_E_FORMAT, "results: %s: expected an object, found %s", p,
                          jtype(o));
        TRY(load_record(d, &d->rec[i], o, p, err));
    }
    return 0;
}

static int load_all(struct rp_doc *d, struct ny_err *err)
{
    if (!json_is_object(d->root))
        return NY_ERR(err, NY_E_FORMAT, "results: expected a JSON object");
    const char *schema;
    TRY(get_str(d->root, "results", "schema", 1, &schema, err));
    if (strcmp(schema, REPORT_RESULTS_SCHEMA))
        return NY_ERR(err, NY_E_FORMAT, "results: results.schema: \"%s\", expected \"%s\"",
                      schema, REPORT_RESULTS_SCHEMA);
    TRY(load_run(d, err));
    TRY(load_checkpoints(d, err));
    TRY(get_typed(d->root, "results", "manifest", 1, JSON_OBJECT, &d->manifest, err));
    TRY(load_metrics(d, err));
    TRY(load_gates(d, err));
    TRY(load_records(d, err));
    return report_results_sha256(d->root, d->sha, err);
}

int rp_doc_load(struct rp_doc *d, const json_t *results, struct ny_err *err)
{
    memset(d, 0, sizeof *d);
    if (!results)
        return NY_ERR(err, NY_E_INVALID, "results: NULL");
    d->root = results;
    int rc = load_all(d, err);
    if (rc)
        rp_doc_fini(d);
    return rc;
}

void rp_doc_fini(struct rp_doc *d)
{
    if (!d)
        return;
    for (size_t i = 0; d->rec && i < d->nrec; i++) {
        ny_free(d->rec[i].pred);
        ny_free(d->rec[i].wrong);
    }
    ny_free(d->rec);
    ny_free(d->gates);
    ny_free(d->cmp);
    ny_free(d->ck);
    memset(d, 0, sizeof *d);
}

int rp_doc_ckpt(const struct rp_doc *d, const char *label)
{
    for (size_t i = 0; i < d->nck; i++)
        if (d->ck[i].label && !strcmp(d->ck[i].label, label))
            return (int)i;
    return -1;
}

const struct rp_cmp *rp_doc_cmp(const struct rp_doc *d, const char *a, const char *b,
                                const char *metric)
{
    for (size_t i = 0; i < d->ncmp; i++)
        if (!strcmp(d->cmp[i].a, a) && !strcmp(d->cmp[i].b, b) &&
            !strcmp(d->cmp[i].metric, metric))
            return &d->cmp[i];
    return NULL;
}

int report_results_check(const json_t *results, struct ny_err *err)
{
    struct rp_doc d;
    int rc = rp_doc_load(&d, results, err);
    if (!rc)
        rp_doc_fini(&d);
    return rc;
}

int report_results_sha256(const json_t *results, char hex[65], struct ny_err *err)
{
    char *s = ny_json_dumps(results, 0);
    if (!s)
        return NY_ERR(err, NY_E_FORMAT, "results: cannot serialise to canonical JSON (a string "
                                        "that is not valid UTF-8, or out of memory)");
    ny_sha256_hex(s, strlen(s), hex);
    ny_free(s);
    return 0;
}
