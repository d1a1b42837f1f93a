/* report_html_sections.c — the dashboard's sections: the PDF's content (verdict, summary, deltas,
 * charts, gates, error analysis, validity, definitions, manifest) plus the per-record table. Every
 * string taken from results goes through html_text / rp_html_escape. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "report_html_int.h"

/* <td class="cls">escaped</td> */
static void td(struct ny_buf *b, const char *cls, const char *text)
{
    html_el(b, "td", cls, text);
}

static void th(struct ny_buf *b, const char *cls, const char *text)
{
    html_el(b, "th", cls, text);
}

static void kv(struct ny_buf *b, const char *k, const char *v)
{
    html_el(b, "dt", NULL, k);
    html_el(b, "dd", NULL, v);
}

static const char *delta_class(const struct rp_cmp *k)
{
    return k->lo > 0 ? "num good" : k->hi < 0 ? "num bad" : "num";
}

static void glance(struct ny_buf *b, const struct rp_doc *d)
{
    static const char *const keys[] = {"cpt_exact", "icd_exact", "all_three_exact"};
    ny_buf_puts(b, "<h3>At a glance</h3>\n<table><thead><tr>");
    th(b, NULL, "Candidate vs baseline");
    for (int m = 0; m < 3; m++)
        th(b, "num", rp_metrics[rp_metric_index(keys[m])].name);
    th(b, NULL, "Gates");
    ny_buf_puts(b, "</tr></thead><tbody>\n");
    for (size_t i = 0; i < d->nck; i++) {
        if (i == d->base)
            continue;
        char s[300];
        ny_buf_puts(b, "<tr>");
        snprintf(s, sizeof s, "%s vs %s", d->ck[i].label, d->ck[d->base].label);
        td(b, NULL, s);
        for (int m = 0; m < 3; m++) {
            const struct rp_cmp *k = rp_doc_cmp(d, d->ck[d->base].label, d->ck[i].label, keys[m]);
            if (!k) {
                td(b, "num muted", "not compared");
                continue;
            }
            char dl[32], pv[32];
            rp_fmt_pp(dl, sizeof dl, k->delta);
            rp_fmt_p(pv, sizeof pv, k->p);
            snprintf(s, sizeof s, "%s (p %s)", dl, pv);
            td(b, delta_class(k), s);
        }
        size_t ng = 0, nf = 0;
        for (size_t j = 0; j < d->ngates; j++)
            if (d->gates[j].checkpoint && !strcmp(d->gates[j].checkpoint, d->ck[i].label)) {
                ng++;
                nf += !d->gates[j].pass;
            }
        if (ng == 0)
            td(b, "muted", "none");
        else {
            snprintf(s, sizeof s, nf ? "%zu/%zu FAIL" : "%zu/%zu pass", nf ? nf : ng, ng);
            td(b, nf ? "bad" : "good", s);
        }
        ny_buf_puts(b, "</tr>\n");
    }
    ny_buf_puts(b, "</tbody></table>\n<p class=\"note\">Differences in percentage points (pp) "
                   "with the exact McNemar p. Green: better than the baseline with 95% "
                   "confidence (the paired interval lies above 0); red: worse; black: no clear "
                   "difference on these records.</p>\n");
}

void html_cover(struct ny_buf *b, const struct rp_doc *d)
{
    char s[800];
    ny_buf_puts(b, "<h1>NYXAudit release audit</h1>\n<p class=\"sub\">Radiology medical-coding "
                   "model checkpoints: accuracy, safety and evidence</p>\n<nav>"
                   "<a href=\"#summary\">Summary</a><a href=\"#deltas\">Differences</a>"
                   "<a href=\"#charts\">Charts</a><a href=\"#gates\">Gates</a>"
                   "<a href=\"#errors\">Errors</a><a href=\"#validity\">Validity</a>"
                   "<a href=\"#records-h\">Records</a><a href=\"#definitions\">Definitions</a>"
                   "<a href=\"#manifest\">Manifest</a></nav>\n");
    ny_buf_printf(b, "<div class=\"verdict %s\"><b>RELEASE VERDICT: %s</b>",
                  d->pass ? "pass" : "fail", d->pass ? "PASS" : "FAIL");
    if (d->ngates == 0)
        ny_buf_puts(b, "No release gates were configured.");
    else if (d->nfail == 0)
        ny_buf_printf(b, "All %zu release gates pass.", d->ngates);
    else {
        ny_buf_printf(b, "%zu of %zu release gates fail:", d->nfail, d->ngates);
        for (size_t i = 0, k = 0; i < d->ngates; i++)
            if (!d->gates[i].pass) {
                ny_buf_puts(b, k++ ? ", " : " ");
                html_text(b, d->gates[i].name);
            }
    }
    ny_buf_puts(b, "</div>\n<dl class=\"kv\">");
    struct ny_buf c;
    ny_buf_init(&c);
    for (size_t i = 0; i < d->nck; i++)
        ny_buf_printf(&c, "%s%s%s", i ? ", " : "", d->ck[i].label,
                      d->ck[i].baseline ? " (baseline)" : "");
    kv(b, "Checkpoints compared", c.data);
    ny_buf_fini(&c);
    snprintf(s, sizeof s, "%s, split %s", d->dataset, d->split);
    kv(b, "Dataset", s);
    snprintf(s, sizeof s, "%lld records (sampling seed %lld)", (long long)d->n, (long long)d->seed);
    kv(b, "Records scored (n)", s);
    kv(b, "Code-set release", d->release);
    snprintf(s, sizeof s, "%s%s%s", d->started, d->finished ? " to " : "",
             d->finished ? d->finished : "");
    kv(b, "Run date (UTC)", s);
    kv(b, "Run id", d->run_id);
    ny_buf_puts(b, "</dl>\n");
    glance(b, d);
}

void html_summary(struct ny_buf *b, const struct rp_doc *d)
{
    char s[300];
    ny_buf_puts(b, "<h2 id=\"summary\">Summary: every metric with its 95% interval</h2>\n");
    snprintf(s, sizeof s, "Values are the share of the %lld records scored, as percentages, with "
             "the 95%% interval in brackets. Definitions are below.", (long long)d->n);
    html_el(b, "p", "note", s);
    ny_buf_puts(b, "<table><thead><tr>");
    th(b, NULL, "Metric");
    for (size_t i = 0; i < d->nck; i++) {
        snprintf(s, sizeof s, "%s%s", d->ck[i].label, d->ck[i].baseline ? " (baseline)" : "");
        th(b, "num", s);
    }
    ny_buf_puts(b, "</tr></thead><tbody>\n");
    for (int m = 0; m < RP_NMETRICS; m++) {
        ny_buf_puts(b, "<tr>");
        td(b, NULL, rp_metrics[m].name);
        for (size_t i = 0; i < d->nck; i++) {
            rp_fmt_value(s, sizeof s, &d->ck[i].m[m]);
            td(b, "num", s);
        }
        ny_buf_puts(b, "</tr>\n");
    }
    ny_buf_puts(b, "</tbody></table>\n<h2 id=\"deltas\">Differences between checkpoints (paired, same "
                   "records)</h2>\n<p class=\"note\">Delta is the second checkpoint minus the "
                   "first, in percentage points. Green: the paired 95% interval lies above 0 "
                   "(better); red: below 0 (worse).</p>\n");
    if (d->ncmp == 0)
        html_el(b, "p", "muted", "No paired comparisons in results.");
    else {
        ny_buf_puts(b, "<table><thead><tr>");
        static const char *const head[] = {"Comparison", "Metric", "Delta", "95% CI (paired)",
                                           "McNemar p", "Holm p"};
        for (int i = 0; i < 6; i++)
            th(b, i >= 2 ? "num" : NULL, head[i]);
        ny_buf_puts(b, "</tr></thead><tbody>\n");
        for (size_t i = 0; i < d->ncmp; i++) {
            const struct rp_cmp *k = &d->cmp[i];
            char dl[32], ci[64], pv[32];
            ny_buf_puts(b, "<tr>");
            snprintf(s, sizeof s, "%s \xe2\x88\x92 %s", k->b, k->a);
            td(b, NULL, s);
            td(b, NULL, rp_metrics[rp_metric_index(k->metric)].name);
            rp_fmt_pp(dl, sizeof dl, k->delta);
            rp_fmt_pp_ci(ci, sizeof ci, k->lo, k->hi);
            td(b, delta_class(k), dl);
            td(b, delta_class(k), ci);
            rp_fmt_p(pv, sizeof pv, k->p);
            td(b, "num", pv);
            if (k->has_adj)
                rp_fmt_p(pv, sizeof pv, k->p_adj);
            else
                snprintf(pv, sizeof pv, "\xe2\x80\x94");
            td(b, "num", pv);
            ny_buf_puts(b, "</tr>\n");
        }
        ny_buf_puts(b, "</tbody></table>\n");
    }
    if (d->cochran && json_object_size(d->cochran)) {
        ny_buf_puts(b, "<h3>Do the checkpoints differ at all? (Cochran's Q)</h3>\n<table><thead>"
                       "<tr><th>Metric</th><th class=\"num\">Cochran's Q</th><th class=\"num\">"
                       "df</th><th class=\"num\">p</th></tr></thead><tbody>\n");
        for (int m = 0; m < RP_NMETRICS; m++) {
            const json_t *e = json_object_get(d->cochran, rp_metrics[m].key);
            if (!json_is_object(e))
                continue;
            const json_t *q = json_object_get(e, "q"), *df = json_object_get(e, "df");
            const json_t *p = json_object_get(e, "p");
            char pv[32];
            ny_buf_puts(b, "<tr>");
            td(b, NULL, rp_metrics[m].name);
            snprintf(s, sizeof s, "%.3f", json_is_number(q) ? json_number_value(q) : NAN);
            td(b, "num", s);
            snprintf(s, sizeof s, "%.0f", json_is_number(df) ? json_number_value(df) : NAN);
            td(b, "num", s);
            rp_fmt_p(pv, sizeof pv, json_is_number(p) ? json_number_value(p) : NAN);
            td(b, "num", pv);
            ny_buf_puts(b, "</tr>\n");
        }
        ny_buf_puts(b, "</tbody></table>\n");
    }
}

void html_definitions(struct ny_buf *b)
{
    ny_buf_puts(b, "<h2 id=\"definitions\">What each metric means</h2>\n<dl class=\"defs\">\n");
    for (int m = 0; m < RP_NMETRICS; m++) {
        html_el(b, "dt", NULL, rp_metrics[m].name);
        html_el(b, "dd", NULL, rp_metrics[m].define);
    }
    ny_buf_puts(b, "</dl>\n<h3>Intervals and tests</h3>\n");
    for (int i = 0; rp_method_notes[i]; i++)
        html_el(b, "p", NULL, rp_method_notes[i]);
}

/* ---- charts ------------------------------------------------------------------------------------ */

static double draw_metrics(const struct rp_doc *d, const struct rp_canvas *c, double w,
                           const void *a)
{
    (void)a;
    return rp_chart_metrics(d, c, w);
}

static double draw_deltas(const struct rp_doc *d, const struct rp_canvas *c, double w,
                          const void *a)
{
    (void)a;
    return rp_chart_deltas(d, c, w);
}

struct bd_arg {
    const char *metric;
    int by;
};

static double draw_bd(const struct rp_doc *d, const struct rp_canvas *c, double w, const void *a)
{
    const struct bd_arg *x = a;
    return rp_chart_breakdown(d, c, w, x->metric, x->by);
}

void html_charts(struct ny_buf *b, const struct rp_doc *d)
{
    ny_buf_puts(b, "<h2 id=\"charts\">Charts</h2>\n<h3>Every metric per checkpoint (bars) with its 95% "
                   "interval (whiskers)</h3>\n");
    html_svg(b, d, HTML_CHART_W, draw_metrics, NULL, "Metric bars with 95% intervals", 1);
    if (d->ncmp) {
        ny_buf_puts(b, "<h3>Paired differences with 95% intervals</h3>\n<p class=\"note\">"
                       "Square: delta; line: paired 95% interval; green above 0 means better, "
                       "red below 0 worse, grey no clear difference.</p>\n");
        html_svg(b, d, HTML_CHART_W, draw_deltas, NULL, "Paired differences", 0);
    }
    static const struct bd_arg bd[4] = {
        {"cpt_exact", 0}, {"icd_exact", 0}, {"cpt_exact", 1}, {"icd_exact", 1}};
    static const char *const titles[4] = {
        "CPT exact by modality", "ICD exact by modality",
        "CPT exact by primary CPT (largest groups)", "ICD exact by primary CPT (largest groups)"};
    for (int i = 0; i < 4; i++)
        if (rp_chart_breakdown(d, NULL, HTML_CHART_W, bd[i].metric, bd[i].by) > 0) {
            html_el(b, "h3", NULL, titles[i]);
            html_svg(b, d, HTML_CHART_W, draw_bd, &bd[i], titles[i], 1);
        }
}

/* ---- gates, errors, validity ------------------------------------------------------------------- */

void html_gates(struct ny_buf *b, const struct rp_doc *d)
{
    ny_buf_puts(b, "<h2 id=\"gates\">Release gates</h2>\n<p class=\"note\">Each gate is a rule fixed before "
                   "the run; the release passes only if every gate passes. Floors bound a metric "
                   "from below, no-regression gates compare a candidate with the baseline by the "
                   "paired test, ceilings bound invalid-code rates.</p>\n");
    if (d->ngates == 0) {
        html_el(b, "p", NULL, "No gates were configured.");
        return;
    }
    ny_buf_puts(b, "<table><thead><tr><th>Gate</th><th>Kind</th><th>Checkpoint</th><th>Rule</th>"
                   "<th>Evidence</th><th>Verdict</th></tr></thead><tbody>\n");
    for (size_t i = 0; i < d->ngates; i++) {
        const struct rp_gate *g = &d->gates[i];
        struct ny_buf ev;
        ny_buf_init(&ev);
        rp_fmt_evidence(&ev, g->evidence);
        ny_buf_puts(b, "<tr>");
        td(b, NULL, g->name);
        td(b, NULL, g->kind);
        td(b, NULL, g->checkpoint ? g->checkpoint : "all");
        td(b, NULL, g->rule);
        td(b, NULL, ev.data ? ev.data : "");
        td(b, g->pass ? "good" : "bad", g->pass ? "PASS" : "FAIL");
        ny_buf_puts(b, "</tr>\n");
        if (ev.failed)
            b->failed = 1;
        ny_buf_fini(&ev);
    }
    ny_buf_puts(b, "</tbody></table>\n");
}

static void ckpt_head(struct ny_buf *b, const struct rp_doc *d, const char *first)
{
    ny_buf_puts(b, "<table><thead><tr>");
    th(b, NULL, first);
    for (size_t i = 0; i < d->nck; i++)
        th(b, "num", d->ck[i].label);
    ny_buf_puts(b, "</tr></thead><tbody>\n");
}

void html_errors(struct ny_buf *b, const struct rp_doc *d)
{
    char s[64];
    ny_buf_puts(b, "<h2 id=\"errors\">Error analysis</h2>\n<h3>Error taxonomy (ICD misses, counts)</h3>\n");
    ckpt_head(b, d, "ICD error type");
    for (int k = 0; k < RP_NTAXONOMY; k++) {
        ny_buf_puts(b, "<tr>");
        td(b, NULL, rp_taxonomy_names[k]);
        for (size_t i = 0; i < d->nck; i++) {
            snprintf(s, sizeof s, "%lld", (long long)d->ck[i].taxonomy[k]);
            td(b, "num", s);
        }
        ny_buf_puts(b, "</tr>\n");
    }
    ny_buf_puts(b, "</tbody></table>\n<h3>Most confused code pairs (top 8 per checkpoint)</h3>\n"
                   "<table><thead><tr><th>Checkpoint</th><th>Gold code</th><th>Predicted "
                   "instead</th><th class=\"num\">Count</th></tr></thead><tbody>\n");
    for (size_t i = 0; i < d->nck; i++) {
        size_t n;
        const json_t **v = rp_confusions_sorted(&d->ck[i], &n);
        if (!v) {
            b->failed = 1;
            return;
        }
        for (size_t j = 0; j < n && j < 8; j++) {
            ny_buf_puts(b, "<tr>");
            td(b, NULL, d->ck[i].label);
            td(b, "mono", json_string_value(json_object_get(v[j], "gold")));
            td(b, "mono", json_string_value(json_object_get(v[j], "pred")));
            snprintf(s, sizeof s, "%lld",
                     (long long)json_integer_value(json_object_get(v[j], "count")));
            td(b, "num", s);
            ny_buf_puts(b, "</tr>\n");
        }
        ny_free(v);
    }
    ny_buf_puts(b, "</tbody></table>\n");
    char note[300];
    snprintf(note, sizeof note, "%zu of %zu records have checkpoint disagreements; the "
             "per-record table below lists them all (tick \"checkpoint disagreements only\").",
             d->ndisagree, d->nrec);
    html_el(b, "p", "note", note);
}

void html_validity(struct ny_buf *b, const struct rp_doc *d)
{
    char s[300];
    ny_buf_puts(b, "<h2 id=\"validity\">Validity against the code set</h2>\n");
    snprintf(s, sizeof s, "Rates over all predicted codes of each kind, checked against code-set "
             "release %s.", d->release);
    html_el(b, "p", "note", s);
    ckpt_head(b, d, "Measure");
    for (int k = 0; k < RP_NVALIDITY; k++) {
        ny_buf_puts(b, "<tr>");
        td(b, NULL, rp_validity_names[k]);
        for (size_t i = 0; i < d->nck; i++) {
            rp_fmt_pct(s, sizeof s, d->ck[i].validity[k]);
            td(b, "num", s);
        }
        ny_buf_puts(b, "</tr>\n");
    }
    ny_buf_puts(b, "<tr>");
    td(b, NULL, "Records with format errors");
    for (size_t i = 0; i < d->nck; i++) {
        snprintf(s, sizeof s, "%lld", (long long)d->ck[i].format_errors);
        td(b, "num", s);
    }
    ny_buf_puts(b, "</tr>\n");
    size_t nk;
    const char **names = rp_validity_count_keys(d, &nk);
    if (!names) {
        b->failed = 1;
        return;
    }
    for (size_t a = 0; a < nk; a++) {
        char lab[160];
        snprintf(lab, sizeof lab, "count: %s", names[a]);
        ny_buf_puts(b, "<tr>");
        td(b, "muted", lab);
        for (size_t i = 0; i < d->nck; i++) {
            rp_validity_count(&d->ck[i], names[a], s, sizeof s);
            td(b, "num", s);
        }
        ny_buf_puts(b, "</tr>\n");
    }
    ny_free(names);
    ny_buf_puts(b, "</tbody></table>\n");
}
