/* metrics_eval.c — metrics_evaluate: gold and predictions to the "metrics" object of results.json
 * (scores with intervals, validity, taxonomy, confusions, breakdowns, paired comparisons). */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "metrics_int.h"

/* Builds JSON without checking every call: any failed set marks the builder, checked at the end. */
struct jb {
    int failed;
};

static void jset(struct jb *b, json_t *obj, const char *key, json_t *v)
{
    if (!obj || !v || json_object_set_new(obj, key, v) != 0)
        b->failed = 1;
}

static void jappend(struct jb *b, json_t *arr, json_t *v)
{
    if (!arr || !v || json_array_append_new(arr, v) != 0)
        b->failed = 1;
}

static json_t *val_ci(double v, double lo, double hi)
{
    return json_pack("{s:f,s:[f,f]}", "value", v, "ci95", lo, hi);
}

struct pair {
    char gold[METRICS_CODE_MAX], pred[METRICS_CODE_MAX];
};

struct model_eval {
    struct metrics_record_score *s; /* n */
    unsigned char *fmt;             /* n: prediction had an unparseable token */
    size_t missing, format_errors;
    /* validity: predicted, invalid (and for ICD nonbillable); covered per kind */
    size_t pred[4], invalid[4], nonbillable, covered[4];
    struct metrics_taxo taxo;
    struct pair *pairs;
    size_t n_pairs, cap_pairs;
};

static int add_pair(void *ctx, const char *g, const char *p)
{
    struct model_eval *me = ctx;
    if (me->n_pairs == me->cap_pairs) {
        size_t cap = me->cap_pairs ? 2 * me->cap_pairs : 64;
        struct pair *np = ny_reallocarray(me->pairs, cap, sizeof *np);
        if (!np)
            return NY_E_NOMEM;
        me->pairs = np;
        me->cap_pairs = cap;
    }
    snprintf(me->pairs[me->n_pairs].gold, METRICS_CODE_MAX, "%s", g);
    snprintf(me->pairs[me->n_pairs].pred, METRICS_CODE_MAX, "%s", p);
    me->n_pairs++;
    return 0;
}

/* Look up the predicted codes of one record; flags invalid ICD codes for the taxonomy. */
static int validate_record(const struct metrics_input *in, const struct metrics_codes *pc,
                           struct model_eval *me, unsigned char *icd_invalid, struct ny_err *err)
{
    const struct metrics_code *lists[4] = {NULL, pc->cpt, pc->mod, pc->icd};
    size_t ns[4] = {0, pc->n_cpt, pc->n_mod, pc->n_icd};
    for (int k = METRICS_KIND_CPT; k <= METRICS_KIND_ICD; k++) {
        for (size_t i = 0; i < ns[k]; i++) {
            enum codeset_status st;
            int rc = codeset_lookup(in->db, in->release, (enum metrics_kind)k, lists[k][i].s,
                                    &st, err);
            if (rc)
                return rc;
            if (st == CODESET_UNCOVERED)
                continue;
            me->pred[k]++;
            if (st == CODESET_INVALID) {
                me->invalid[k]++;
                if (k == METRICS_KIND_ICD)
                    icd_invalid[i] = 1;
            } else if (st == CODESET_NONBILLABLE && k == METRICS_KIND_ICD) {
                me->nonbillable++;
            }
        }
    }
    return 0;
}

static int eval_model(const struct metrics_input *in, const struct metrics_codes *gold,
                      const struct metrics_model *mod, struct model_eval *me, struct ny_err *err)
{
    struct metrics_codes pc;
    metrics_codes_init(&pc);
    unsigned char inv[METRICS_MAX_CODES];
    int rc = 0;
    for (int k = METRICS_KIND_CPT; in->db && rc == 0 && k <= METRICS_KIND_ICD; k++) {
        int cov = 0;
        rc = codeset_covers(in->db, in->release, (enum metrics_kind)k, &cov, err);
        me->covered[k] = (size_t)cov;
    }
    for (size_t i = 0; i < in->n && rc == 0; i++) {
        const char *line = mod->outputs ? mod->outputs[i] : NULL;
        if (!line)
            me->missing++;
        rc = metrics_codes_parse(line, line ? strlen(line) : 0, &pc, err);
        if (rc)
            break;
        me->fmt[i] = pc.n_unparseable > 0;
        me->format_errors += me->fmt[i];
        metrics_score_record(&gold[i], &pc, &me->s[i]);
        memset(inv, 0, sizeof inv);
        if (in->db)
            rc = validate_record(in, &pc, me, inv, err);
        if (rc == 0)
            rc = metrics_taxonomy_record(&gold[i], &pc, in->db ? inv : NULL, &me->taxo, add_pair,
                                         me);
        if (rc == NY_E_NOMEM)
            NY_ERR(err, rc, "scoring model %s: out of memory", mod->name);
    }
    metrics_codes_fini(&pc);
    if (rc)
        ny_err_prefix(err, "model %s: ", mod->name);
    return rc;
}

/* ---- aggregates ------------------------------------------------------------------------------ */
enum { BS_RECALL, BS_PRECISION, BS_MICRO_P, BS_MICRO_R, BS_MICRO_F1, BS_N };

static double ratio_or(double num, double den, int both_zero)
{
    if (den > 0.0)
        return num / den;
    return both_zero ? 1.0 : 0.0;
}

/* The five bootstrapped statistics of a model over the records idx[0..n) (idx NULL = all). */
static void stats5(const struct metrics_record_score *s, const size_t *idx, size_t n,
                   double out[BS_N])
{
    double rec = 0, prec = 0, tp = 0, np = 0, ng = 0;
    for (size_t r = 0; r < n; r++) {
        const struct metrics_record_score *x = &s[idx ? idx[r] : r];
        rec += x->icd_recall;
        prec += x->icd_precision;
        tp += (double)x->icd_tp;
        np += (double)x->icd_pred;
        ng += (double)x->icd_gold;
    }
    out[BS_RECALL] = rec / (double)n;
    out[BS_PRECISION] = prec / (double)n;
    out[BS_MICRO_P] = ratio_or(tp, np, ng == 0.0);
    out[BS_MICRO_R] = ratio_or(tp, ng, np == 0.0);
    out[BS_MICRO_F1] = ratio_or(2.0 * tp, np + ng, 1);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Percentile bootstrap for every model at once: ci[(j * BS_N + k) * 2 + {0,1}]. */
static int bootstrap(const struct metrics_input *in, struct model_eval *me, double *ci)
{
    size_t n = in->n, m = in->m, B = METRICS_BOOTSTRAP_B;
    size_t *idx = ny_calloc(n, sizeof *idx);
    double *draws = ny_calloc(m * BS_N * B, sizeof *draws);
    if (!idx || !draws) {
        ny_free(idx);
        ny_free(draws);
        return NY_E_NOMEM;
    }
    struct metrics_rng rng;
    metrics_rng_seed(&rng, in->seed);
    for (size_t b = 0; b < B; b++) {
        for (size_t r = 0; r < n; r++)
            idx[r] = (size_t)metrics_rng_below(&rng, n);
        for (size_t j = 0; j < m; j++) {
            double st[BS_N];
            stats5(me[j].s, idx, n, st);
            for (int k = 0; k < BS_N; k++)
                draws[(j * BS_N + (size_t)k) * B + b] = st[k];
        }
    }
    for (size_t t = 0; t < m * BS_N; t++) {
        qsort(draws + t * B, B, sizeof *draws, cmp_double);
        ci[2 * t] = metrics_quantile_sorted(draws + t * B, B, 0.025);
        ci[2 * t + 1] = metrics_quantile_sorted(draws + t * B, B, 0.975);
    }
    ny_free(idx);
    ny_free(draws);
    return 0;
}

static json_t *metrics_obj(struct jb *jb, const struct model_eval *me, size_t n, const double *ci)
{
    json_t *o = json_object();
    for (int k = 0; k < METRICS_N_BINARY; k++) {
        uint64_t c = 0;
        for (size_t i = 0; i < n; i++)
            c += me->s[i].bin[k];
        double lo, hi;
        metrics_wilson(c, n, METRICS_Z95, &lo, &hi);
        jset(jb, o, metrics_binary_name((enum metrics_binary)k), val_ci((double)c / n, lo, hi));
    }
    static const char *const names[BS_N] = {"icd_recall", "icd_precision", "icd_micro_precision",
                                            "icd_micro_recall", "icd_micro_f1"};
    double v[BS_N];
    stats5(me->s, NULL, n, v);
    for (int k = 0; k < BS_N; k++)
        jset(jb, o, names[k], val_ci(v[k], ci[2 * k], ci[2 * k + 1]));
    return o;
}

static json_t *rate_or_null(size_t num, size_t den, int covered)
{
    if (!covered)
        return json_null();
    return json_real(den ? (double)num / (double)den : 0.0);
}

static json_t *validity_obj(struct jb *jb, const struct metrics_input *in,
                            const struct model_eval *me)
{
    if (!in->db)
        return json_null();
    json_t *o = json_object();
    const size_t I = METRICS_KIND_ICD, C = METRICS_KIND_CPT, M = METRICS_KIND_MODIFIER;
    jset(jb, o, "icd_invalid", rate_or_null(me->invalid[I], me->pred[I], me->covered[I]));
    jset(jb, o, "icd_nonbillable", rate_or_null(me->nonbillable, me->pred[I], me->covered[I]));
    jset(jb, o, "cpt_invalid", rate_or_null(me->invalid[C], me->pred[C], me->covered[C]));
    jset(jb, o, "modifier_invalid", rate_or_null(me->invalid[M], me->pred[M], me->covered[M]));
    jset(jb, o, "counts",
         json_pack("{s:I,s:I,s:I,s:I,s:I,s:I,s:I}", "icd_predicted", (json_int_t)me->pred[I],
                   "icd_invalid", (json_int_t)me->invalid[I], "icd_nonbillable",
                   (json_int_t)me->nonbillable, "cpt_predicted", (json_int_t)me->pred[C],
                   "cpt_invalid", (json_int_t)me->invalid[C], "modifier_predicted",
                   (json_int_t)me->pred[M], "modifier_invalid", (json_int_t)me->invalid[M]));
    return o;
}

static int cmp_pair(const void *a, const void *b)
{
    const struct pair *x = a, *y = b;
    int c = strcmp(x->gold, y->gold);
    return c ? c : strcmp(x->pred, y->pred);
}

struct counted {
    const struct pair *p;
    size_t count;
};

static int cmp_counted(const void *a, const void *b)
{
    const struct counted *x = a, *y = b;
    if (x->count != y->count)
        return x->count > y->count ? -1 : 1;
    return cmp_pair(x->p, y->p);
}

static json_t *confusions_arr(struct jb *jb, struct model_eval *me)
{
    json_t *arr = json_array();
    if (me->n_pairs > 1)
        qsort(me->pairs, me->n_pairs, sizeof *me->pairs, cmp_pair);
    struct counted *c = ny_calloc(me->n_pairs + 1, sizeof *c);
    if (!c) {
        jb->failed = 1;
        return arr;
    }
    size_t nc = 0;
    for (size_t i = 0; i < me->n_pairs; i++) {
        if (nc && cmp_pair(c[nc - 1].p, &me->pairs[i]) == 0)
            c[nc - 1].count++;
        else
            c[nc++] = (struct counted){&me->pairs[i], 1};
    }
    qsort(c, nc, sizeof *c, cmp_counted);
    for (size_t i = 0; i < nc && i < METRICS_CONFUSIONS_MAX; i++)
        jappend(jb, arr, json_pack("{s:s,s:s,s:I}", "gold", c[i].p->gold, "pred", c[i].p->pred,
                                   "count", (json_int_t)c[i].count));
    ny_free(c);
    return arr;
}

/* Breakdown of one model by a per-record key (keys[i]; NULL = "(none)"). */
static json_t *breakdown(struct jb *jb, const struct model_eval *me, const char *const *keys,
                         size_t n)
{
    json_t *o = json_object();
    for (size_t i = 0; i < n; i++) {
        const char *k = keys[i] ? keys[i] : "(none)";
        json_t *g = json_object_get(o, k);
        if (!g) {
            g = json_object();
            jset(jb, o, k, g);
            if (!g)
                return o;
            jset(jb, g, "n", json_integer(0));
            for (int b = 0; b < METRICS_N_BINARY; b++)
                jset(jb, g, metrics_binary_name((enum metrics_binary)b), json_real(0));
            jset(jb, g, "icd_recall", json_real(0));
            jset(jb, g, "icd_precision", json_real(0));
        }
        /* Accumulate sums here; divided by n below. */
        json_t *cnt = json_object_get(g, "n");
        json_integer_set(cnt, json_integer_value(cnt) + 1);
        for (int b = 0; b < METRICS_N_BINARY; b++) {
            json_t *v = json_object_get(g, metrics_binary_name((enum metrics_binary)b));
            json_real_set(v, json_real_value(v) + me->s[i].bin[b]);
        }
        json_t *r = json_object_get(g, "icd_recall"), *p = json_object_get(g, "icd_precision");
        json_real_set(r, json_real_value(r) + me->s[i].icd_recall);
        json_real_set(p, json_real_value(p) + me->s[i].icd_precision);
    }
    const char *k;
    json_t *g;
    json_object_foreach(o, k, g) {
        double cnt = (double)json_integer_value(json_object_get(g, "n"));
        const char *mk;
        json_t *v;
        json_object_foreach(g, mk, v) {
            if (json_is_real(v))
                json_real_set(v, json_real_value(v) / cnt);
        }
    }
    return o;
}

static json_t *model_obj(struct jb *jb, const struct metrics_input *in, struct model_eval *me,
                         const double *ci, const char *const *modality, const char *const *primary)
{
    json_t *o = json_object();
    jset(jb, o, "metrics", metrics_obj(jb, me, in->n, ci));
    jset(jb, o, "format_errors", json_integer((json_int_t)me->format_errors));
    jset(jb, o, "missing", json_integer((json_int_t)me->missing));
    jset(jb, o, "validity", validity_obj(jb, in, me));
    jset(jb, o, "taxonomy",
         json_pack("{s:I,s:I,s:I,s:I,s:I}", "specificity", (json_int_t)me->taxo.specificity,
                   "wrong_category", (json_int_t)me->taxo.wrong_category, "hallucinated",
                   (json_int_t)me->taxo.hallucinated, "missed", (json_int_t)me->taxo.missed,
                   "extra", (json_int_t)me->taxo.extra));
    jset(jb, o, "confusions", confusions_arr(jb, me));
    json_t *bd = json_object();
    jset(jb, o, "breakdowns", bd);
    if (modality)
        jset(jb, bd, "modality", breakdown(jb, me, modality, in->n));
    jset(jb, bd, "primary_cpt", breakdown(jb, me, primary, in->n));
    return o;
}

/* ---- paired comparisons ---------------------------------------------------------------------- */
static void comparisons(struct jb *jb, const struct metrics_input *in, const struct model_eval *me,
                        json_t *root)
{
    size_t m = in->m, n = in->n, np = m * (m - 1) / 2;
    json_t *cmp = json_array();
    jset(jb, root, "comparisons", cmp);
    double *pv = ny_calloc(np * METRICS_N_BINARY + 1, sizeof *pv);
    double *adj = ny_calloc(np + 1, sizeof *adj);
    if (!pv || !adj) {
        jb->failed = 1;
        ny_free(pv);
        ny_free(adj);
        return;
    }
    size_t q = 0;
    for (size_t a = 0; a < m; a++)
        for (size_t b = a + 1; b < m; b++, q++)
            for (int k = 0; k < METRICS_N_BINARY; k++) {
                uint64_t c[4] = {0, 0, 0, 0}; /* index = 2 * value(a) + value(b) */
                for (size_t i = 0; i < n; i++)
                    c[2 * me[a].s[i].bin[k] + me[b].s[i].bin[k]]++;
                double d, lo, hi;
                metrics_newcombe_paired(c[3], c[2], c[1], c[0], METRICS_Z95, &d, &lo, &hi);
                double p = metrics_mcnemar_exact(c[1], c[2]);
                pv[(size_t)k * np + q] = p;
                jappend(jb, cmp, json_pack("{s:s,s:s,s:s,s:f,s:[f,f],s:f}", "a",
                                           in->models[a].name, "b", in->models[b].name, "metric",
                                           metrics_binary_name((enum metrics_binary)k), "delta", d,
                                           "ci95", lo, hi, "mcnemar_p", p));
            }
    if (m >= 3) {
        json_t *cq = json_object(), *holm = json_array();
        jset(jb, root, "cochran_q", cq);
        jset(jb, root, "holm", holm);
        unsigned char *x = ny_calloc(n * m, 1);
        for (int k = 0; x && k < METRICS_N_BINARY; k++) {
            for (size_t i = 0; i < n; i++)
                for (size_t j = 0; j < m; j++)
                    x[i * m + j] = me[j].s[i].bin[k];
            double qs, p;
            int df;
            metrics_cochran_q(x, n, m, &qs, &df, &p);
            const char *mk = metrics_binary_name((enum metrics_binary)k);
            jset(jb, cq, mk, json_pack("{s:f,s:i,s:f}", "q", qs, "df", df, "p", p));
            metrics_holm(pv + (size_t)k * np, np, adj);
            q = 0;
            for (size_t a = 0; a < m; a++)
                for (size_t b = a + 1; b < m; b++, q++)
                    jappend(jb, holm, json_pack("{s:s,s:s,s:s,s:f}", "a", in->models[a].name,
                                                "b", in->models[b].name, "metric", mk, "p_adj",
                                                adj[q]));
        }
        if (!x)
            jb->failed = 1;
        ny_free(x);
    }
    ny_free(pv);
    ny_free(adj);
}

/* ---- the entry point ------------------------------------------------------------------------- */
static int check_input(const struct metrics_input *in, struct ny_err *err)
{
    if (!in || !in->gold || in->n == 0)
        return NY_ERR(err, NY_E_INVALID, "metrics: no gold records to score");
    if (!in->models || in->m == 0)
        return NY_ERR(err, NY_E_INVALID, "metrics: no predictions to score");
    if (in->db && !in->release)
        return NY_ERR(err, NY_E_INVALID, "metrics: a code-set database needs a release");
    for (size_t j = 0; j < in->m; j++) {
        if (!in->models[j].name || !in->models[j].name[0])
            return NY_ERR(err, NY_E_INVALID, "metrics: prediction set %zu has no name", j + 1);
        for (size_t k = 0; k < j; k++)
            if (strcmp(in->models[j].name, in->models[k].name) == 0)
                return NY_ERR(err, NY_E_INVALID, "metrics: two prediction sets named \"%s\"",
                              in->models[j].name);
    }
    return 0;
}

static int parse_gold(const struct metrics_input *in, struct metrics_codes *gold,
                      struct ny_err *err)
{
    for (size_t i = 0; i < in->n; i++) {
        const struct metrics_gold *g = &in->gold[i];
        char what[160];
        snprintf(what, sizeof what, "gold record %zu (id %.100s)", i + 1, g->id ? g->id : "?");
        int rc = metrics_gold_parse(g->codes, g->cpt, g->n_cpt, g->modifiers, g->n_modifiers,
                                    g->icd, g->n_icd, what, &gold[i], err);
        if (rc)
            return rc;
    }
    return 0;
}

static void free_evals(struct model_eval *me, size_t m)
{
    for (size_t j = 0; me && j < m; j++) {
        ny_free(me[j].s);
        ny_free(me[j].fmt);
        ny_free(me[j].pairs);
    }
    ny_free(me);
}

static json_t *build_json(const struct metrics_input *in, const struct metrics_codes *gold,
                          struct model_eval *me, const double *ci, struct ny_err *err)
{
    struct jb jb = {0};
    const char **modality = NULL, **primary = ny_calloc(in->n, sizeof *primary);
    int any_modality = 0;
    for (size_t i = 0; i < in->n; i++)
        any_modality |= in->gold[i].modality != NULL;
    if (any_modality)
        modality = ny_calloc(in->n, sizeof *modality);
    json_t *root = json_object(), *models = json_object();
    if (!primary || (any_modality && !modality))
        jb.failed = 1;
    for (size_t i = 0; !jb.failed && i < in->n; i++) {
        primary[i] = gold[i].n_cpt ? gold[i].cpt[0].s : NULL;
        if (modality)
            modality[i] = in->gold[i].modality;
    }
    jset(&jb, root, "n", json_integer((json_int_t)in->n));
    jset(&jb, root, "models", models);
    jset(&jb, root, "codeset_release", in->db ? json_string(in->release) : json_null());
    jset(&jb, root, "bootstrap", json_pack("{s:I,s:I}", "seed", (json_int_t)in->seed,
                                           "resamples", (json_int_t)METRICS_BOOTSTRAP_B));
    for (size_t j = 0; !jb.failed && j < in->m; j++)
        jset(&jb, models, in->models[j].name,
             model_obj(&jb, in, &me[j], ci + 2 * BS_N * j, modality, primary));
    if (!jb.failed)
        comparisons(&jb, in, me, root);
    ny_free(modality);
    ny_free(primary);
    if (jb.failed) {
        json_decref(root);
        NY_ERR(err, NY_E_NOMEM, "metrics: out of memory building the results");
        return NULL;
    }
    return root;
}

void metrics_records_destroy(struct metrics_records *r)
{
    if (!r)
        return;
    ny_free(r->scores);
    ny_free(r->format_error);
    ny_free(r);
}

static int take_records(const struct metrics_input *in, const struct model_eval *me,
                        struct metrics_records **out)
{
    struct metrics_records *r = ny_calloc(1, sizeof *r);
    if (!r)
        return NY_E_NOMEM;
    r->n = in->n;
    r->m = in->m;
    r->scores = ny_calloc(in->n * in->m, sizeof *r->scores);
    r->format_error = ny_calloc(in->n * in->m, 1);
    if (!r->scores || !r->format_error) {
        metrics_records_destroy(r);
        return NY_E_NOMEM;
    }
    for (size_t j = 0; j < in->m; j++) {
        memcpy(r->scores + j * in->n, me[j].s, in->n * sizeof *r->scores);
        memcpy(r->format_error + j * in->n, me[j].fmt, in->n);
    }
    *out = r;
    return 0;
}

int metrics_evaluate_ex(const struct metrics_input *in, json_t **out,
                        struct metrics_records **records, struct ny_err *err)
{
    int rc = check_input(in, err);
    if (rc)
        return rc;
    if (in->db) {
        char name[64];
        if ((rc = codeset_release_find(in->db, in->release, NULL, name, sizeof name, err)))
            return rc;
    }
    struct metrics_codes *gold = ny_calloc(in->n, sizeof *gold);
    struct model_eval *me = ny_calloc(in->m, sizeof *me);
    double *ci = ny_calloc(2 * BS_N * in->m, sizeof *ci);
    if (!gold || !me || !ci)
        rc = NY_ERR(err, NY_E_NOMEM, "metrics: out of memory");
    if (rc == 0)
        rc = parse_gold(in, gold, err);
    for (size_t j = 0; rc == 0 && j < in->m; j++) {
        me[j].s = ny_calloc(in->n, sizeof *me[j].s);
        me[j].fmt = ny_calloc(in->n, 1);
        if (!me[j].s || !me[j].fmt)
            rc = NY_ERR(err, NY_E_NOMEM, "metrics: out of memory");
        else
            rc = eval_model(in, gold, &in->models[j], &me[j], err);
    }
    if (rc == 0 && bootstrap(in, me, ci) != 0)
        rc = NY_ERR(err, NY_E_NOMEM, "metrics: out of memory for the bootstrap");
    json_t *root = NULL;
    if (rc == 0 && !(root = build_json(in, gold, me, ci, err)))
        rc = NY_E_NOMEM;
    struct metrics_records *rec = NULL;
    if (rc == 0 && records && take_records(in, me, &rec) != 0) {
        json_decref(root);
        rc = NY_ERR(err, NY_E_NOMEM, "metrics: out of memory");
    }
    for (size_t i = 0; gold && i < in->n; i++)
        metrics_codes_fini(&gold[i]);
    ny_free(gold);
    free_evals(me, in->m);
    ny_free(ci);
    if (rc)
        return rc;
    *out = root;
    if (records)
        *records = rec;
    return 0;
}

int metrics_evaluate(const struct metrics_input *in, json_t **out, struct ny_err *err)
{
    return metrics_evaluate_ex(in, out, NULL, err);
}
