/* gates.c — release gates: floors on a metric's point value or ci95 lower bound, no-regression of
 * a candidate against the baseline judged with the paired test, and validity ceilings. Each gate
 * becomes {name, kind, checkpoint, metric, rule, evidence, verdict} in results.json. */
#include <jansson.h>
#include <math.h>
#include <string.h>

#include "harness.h"

static const char *const kind_names[] = {"floor", "no_regression", "ceiling"};

/* models.<label> of the metrics object, or NULL. */
static json_t *model_obj(json_t *metrics, const char *label)
{
    return json_object_get(json_object_get(metrics, "models"), label);
}

/* value and ci95 of models.<label>.metrics.<metric>; 0 when present and numeric. */
static int metric_get(json_t *metrics, const char *label, const char *metric, double *value,
                      double ci[2], int *has_ci)
{
    json_t *m = json_object_get(json_object_get(model_obj(metrics, label), "metrics"), metric);
    json_t *v = json_object_get(m, "value");
    if (!json_is_number(v))
        return -1;
    *value = json_number_value(v);
    json_t *c = json_object_get(m, "ci95");
    *has_ci = json_is_array(c) && json_array_size(c) == 2 &&
              json_is_number(json_array_get(c, 0)) && json_is_number(json_array_get(c, 1));
    if (*has_ci) {
        ci[0] = json_number_value(json_array_get(c, 0));
        ci[1] = json_number_value(json_array_get(c, 1));
    }
    return 0;
}

/* A validity rate, format_error_rate (format_errors / n) or a metric's point value. */
static int rate_get(json_t *metrics, const char *label, const char *name, double *value)
{
    json_t *mo = model_obj(metrics, label);
    if (!strcmp(name, "format_error_rate")) {
        json_t *fe = json_object_get(mo, "format_errors");
        json_t *n = json_object_get(metrics, "n");
        if (!json_is_integer(fe) || !json_is_integer(n) || json_integer_value(n) <= 0)
            return -1;
        *value = (double)json_integer_value(fe) / (double)json_integer_value(n);
        return 0;
    }
    json_t *v = json_object_get(json_object_get(mo, "validity"), name);
    if (json_is_number(v)) {
        *value = json_number_value(v);
        return 0;
    }
    double ci[2];
    int has_ci;
    return metric_get(metrics, label, name, value, ci, &has_ci);
}

/* The paired comparison of cand against base on metric, oriented as cand − base. */
static int comparison_get(json_t *metrics, const char *base, const char *cand, const char *metric,
                          double *delta, double ci[2], double *p)
{
    json_t *arr = json_object_get(metrics, "comparisons");
    for (size_t i = 0; i < json_array_size(arr); i++) {
        json_t *c = json_array_get(arr, i);
        const char *a = json_string_value(json_object_get(c, "a"));
        const char *b = json_string_value(json_object_get(c, "b"));
        const char *m = json_string_value(json_object_get(c, "metric"));
        if (!a || !b || !m || strcmp(m, metric))
            continue;
        int fwd = !strcmp(a, base) && !strcmp(b, cand);
        int rev = !strcmp(a, cand) && !strcmp(b, base);
        if (!fwd && !rev)
            continue;
        json_t *d = json_object_get(c, "delta"), *pv = json_object_get(c, "mcnemar_p");
        json_t *ci95 = json_object_get(c, "ci95");
        if (!json_is_number(d) || !json_is_number(pv) || json_array_size(ci95) != 2 ||
            !json_is_number(json_array_get(ci95, 0)) || !json_is_number(json_array_get(ci95, 1)))
            return -1;
        double lo = json_number_value(json_array_get(ci95, 0));
        double hi = json_number_value(json_array_get(ci95, 1));
        *delta = fwd ? json_number_value(d) : -json_number_value(d);
        ci[0] = fwd ? lo : -hi;
        ci[1] = fwd ? hi : -lo;
        *p = json_number_value(pv);
        return 0;
    }
    return -1;
}

static json_t *ci_json(const double ci[2])
{
    return json_pack("[ff]", ci[0], ci[1]);
}

/* Fill rule, evidence and verdict of one gate for one checkpoint. */
static int judge(const struct harness_gate_spec *g, json_t *metrics, const char *label,
                 const char *base, struct ny_buf *rule, json_t *ev, int *pass)
{
    double v, ci[2], d, p;
    int has_ci;
    if (g->kind == HARNESS_GATE_FLOOR) {
        ny_buf_printf(rule, "%s %s >= %g", g->metric, g->on_ci_low ? "ci95 lower bound" : "value",
                      g->threshold);
        if (metric_get(metrics, label, g->metric, &v, ci, &has_ci) || (g->on_ci_low && !has_ci))
            return -1;
        json_object_set_new(ev, "value", json_real(v));
        if (has_ci)
            json_object_set_new(ev, "ci95", ci_json(ci));
        *pass = (g->on_ci_low ? ci[0] : v) >= g->threshold;
    } else if (g->kind == HARNESS_GATE_CEILING) {
        ny_buf_printf(rule, "%s <= %g", g->metric, g->threshold);
        if (rate_get(metrics, label, g->metric, &v))
            return -1;
        json_object_set_new(ev, "value", json_real(v));
        *pass = v <= g->threshold;
    } else {
        if (g->use_ci)
            ny_buf_printf(rule, "%s of %s vs %s: paired ci95 lower bound of the difference >= "
                          "-%g", g->metric, label, base, g->margin);
        else
            ny_buf_printf(rule, "%s of %s vs %s: no drop beyond %g with McNemar p < %g",
                          g->metric, label, base, g->margin, g->alpha);
        double bv, cv, bci[2];
        if (comparison_get(metrics, base, label, g->metric, &d, ci, &p) ||
            metric_get(metrics, base, g->metric, &bv, bci, &has_ci) ||
            metric_get(metrics, label, g->metric, &cv, bci, &has_ci))
            return -1;
        json_object_set_new(ev, "baseline", json_string(base));
        json_object_set_new(ev, "baseline_value", json_real(bv));
        json_object_set_new(ev, "value", json_real(cv));
        json_object_set_new(ev, "delta", json_real(d));
        json_object_set_new(ev, "ci95", ci_json(ci));
        json_object_set_new(ev, "mcnemar_p", json_real(p));
        *pass = g->use_ci ? ci[0] >= -g->margin : !(d < -g->margin && p < g->alpha);
    }
    return 0;
}

static int gate_one(const struct harness_gate_spec *g, int expanded, json_t *metrics,
                    const char *label, const char *base, json_t *out, int *failed)
{
    struct ny_buf name, rule;
    ny_buf_init(&name);
    ny_buf_init(&rule);
    if (expanded)
        ny_buf_printf(&name, "%s[%s]", g->name, label);
    else
        ny_buf_puts(&name, g->name);
    json_t *ev = json_object();
    int pass = 0;
    if (judge(g, metrics, label, base, &rule, ev, &pass)) {
        json_object_clear(ev);
        json_object_set_new(ev, "missing",
                            json_sprintf("no %s%s for %s in the metrics", g->metric,
                                         g->kind == HARNESS_GATE_NO_REGRESSION
                                             ? " paired comparison" : "", label));
        pass = 0;
    }
    int rc = NY_OK;
    json_t *gate = json_pack("{s:s?,s:s,s:s,s:s,s:s?,s:o,s:s}", "name", name.data, "kind",
                             kind_names[g->kind], "checkpoint", label, "metric", g->metric,
                             "rule", rule.data, "evidence", ev, "verdict", pass ? "pass" : "fail");
    if (!gate || name.failed || rule.failed || json_array_append_new(out, gate))
        rc = NY_E_NOMEM;
    *failed += !pass;
    ny_buf_fini(&name);
    ny_buf_fini(&rule);
    return rc;
}

int harness_gates_evaluate(const struct harness_config *cfg, struct json_t *metrics,
                           struct json_t **out, int *failed, struct ny_err *err)
{
    const struct harness_checkpoint *base = harness_config_baseline(cfg);
    if (!base)
        return NY_ERR(err, NY_E_INVALID, "gates: no baseline checkpoint configured");
    json_t *arr = json_array();
    if (!arr)
        return NY_ERR(err, NY_E_NOMEM, "gates: out of memory");
    int nfail = 0, rc = NY_OK;
    for (size_t i = 0; i < cfg->n_gates && !rc; i++) {
        const struct harness_gate_spec *g = &cfg->gates[i];
        if (g->checkpoint) {
            rc = gate_one(g, 0, metrics, g->checkpoint, base->label, arr, &nfail);
            continue;
        }
        /* Every candidate; with only a baseline, floors and ceilings judge the baseline. */
        int only_base = cfg->n_checkpoints == 1;
        for (size_t c = 0; c < cfg->n_checkpoints && !rc; c++) {
            const struct harness_checkpoint *ck = &cfg->checkpoints[c];
            if (ck->baseline && !(only_base && g->kind != HARNESS_GATE_NO_REGRESSION))
                continue;
            rc = gate_one(g, 1, metrics, ck->label, base->label, arr, &nfail);
        }
    }
    if (rc) {
        json_decref(arr);
        return NY_ERR(err, rc, "gates: out of memory");
    }
    *out = arr;
    *failed = nfail;
    return NY_OK;
}
