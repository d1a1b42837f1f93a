/* report_pdf_sections.c — the PDF's sections in reading order: cover with the verdict and an
 * at-a-glance table, summary and delta tables, definitions, charts, gates, error analysis,
 * validity and the reproducibility manifest. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "report_pdf_int.h"

#define INK 0x222222u
#define MUTED 0x666666u
#define GOOD 0x1b7f3bu
#define BAD 0xb3261eu


/* ---- cover ------------------------------------------------------------------------------------- */

static void kv(struct pdf *p, const char *k, const char *v)
{
    double x = PDF_ML + 130;
    pdf_need(p, 14);
    pdf_text(p, PDF_ML, p->y + 10, 9.5, PDF_BOLD, INK, k);
    double y0 = p->y;
    pdf_para(p, x, PDF_CW - 130, 9.5, PDF_REGULAR, INK, v);
    if (p->y < y0 + 14)
        p->y = y0 + 14;
}

static void verdict_box(struct pdf *p)
{
    const struct rp_doc *d = p->d;
    uint32_t col = d->pass ? GOOD : BAD;
    pdf_fill_rect(p, PDF_ML, p->y, PDF_CW, 74, col);
    pdf_text(p, PDF_ML + 16, p->y + 32, 24, PDF_BOLD, 0xffffff,
             d->pass ? "RELEASE VERDICT: PASS" : "RELEASE VERDICT: FAIL");
    char s[600];
    if (d->ngates == 0)
        snprintf(s, sizeof s, "No release gates were configured.");
    else if (d->nfail == 0)
        snprintf(s, sizeof s, "All %zu release gates pass.", d->ngates);
    else {
        size_t k = (size_t)snprintf(s, sizeof s, "%zu of %zu release gates fail:", d->nfail,
                                    d->ngates);
        for (size_t i = 0; i < d->ngates && k < sizeof s - 80; i++)
            if (!d->gates[i].pass)
                k += (size_t)snprintf(s + k, sizeof s - k, "%s %.60s", k && s[k - 1] != ':' ? "," : "",
                                      d->gates[i].name);
    }
    double y = p->y;
    p->y += 38;
    pdf_para(p, PDF_ML + 16, PDF_CW - 32, 10.5, PDF_REGULAR, 0xffffff, s);
    p->y = y + 86;
}

/* Delta cell "+1.0 pp (p 0.62)" coloured by the 95% interval: green above 0, red below. */
static void delta_cell(const struct rp_doc *d, const char *cand, const char *metric, char *out,
                       size_t cap, uint32_t *col)
{
    const struct rp_cmp *k = rp_doc_cmp(d, d->ck[d->base].label, cand, metric);
    *col = INK;
    if (!k) {
        snprintf(out, cap, "not compared");
        *col = MUTED;
        return;
    }
    char dl[32], pp[32];
    rp_fmt_pp(dl, sizeof dl, k->delta);
    rp_fmt_p(pp, sizeof pp, k->p);
    snprintf(out, cap, "%s (p %s)", dl, pp);
    *col = k->lo > 0 ? GOOD : k->hi < 0 ? BAD : INK;
}

static void glance(struct pdf *p)
{
    const struct rp_doc *d = p->d;
    static const char *const head[] = {"Candidate vs baseline", "CPT exact", "ICD exact",
                                       "All three exact", "Gates"};
    static const double w[] = {119, 100, 100, 100, 80};
    static const enum rp_anchor al[] = {RP_LEFT, RP_RIGHT, RP_RIGHT, RP_RIGHT, RP_CENTER};
    static const char *const keys[] = {"cpt_exact", "icd_exact", "all_three_exact"};
    const struct pdf_table t = {5, head, w, al, 8.5};
    pdf_subheading(p, "At a glance");
    pdf_table_head(p, &t);
    for (size_t i = 0; i < d->nck; i++) {
        if (i == d->base)
            continue;
        char c0[200], c[3][80], g[64];
        uint32_t col[5] = {INK, INK, INK, INK, INK};
        snprintf(c0, sizeof c0, "%s vs %s", d->ck[i].label, d->ck[d->base].label);
        for (int m = 0; m < 3; m++)
            delta_cell(d, d->ck[i].label, keys[m], c[m], sizeof c[m], &col[m + 1]);
        size_t ng = 0, nf = 0;
        for (size_t j = 0; j < d->ngates; j++)
            if (d->gates[j].checkpoint && !strcmp(d->gates[j].checkpoint, d->ck[i].label)) {
                ng++;
                nf += !d->gates[j].pass;
            }
        if (ng == 0)
            snprintf(g, sizeof g, "none");
        else if (nf == 0)
            snprintf(g, sizeof g, "%zu/%zu pass", ng, ng);
        else
            snprintf(g, sizeof g, "%zu/%zu FAIL", nf, ng);
        col[4] = ng == 0 ? MUTED : nf ? BAD : GOOD;
        const char *cells[5] = {c0, c[0], c[1], c[2], g};
        pdf_table_row(p, &t, cells, col, 0);
    }
    p->y += 4;
    pdf_para(p, PDF_ML, PDF_CW, 8, PDF_REGULAR, MUTED,
             "Differences in percentage points (pp) with the exact McNemar p. Green: better "
             "than the baseline with 95% confidence (the paired interval lies above 0); red: "
             "worse; black: no clear difference on these records.");
}

/* Every gate's verdict on the cover (failing ones first when there are many). */
static void cover_gates(struct pdf *p)
{
    const struct rp_doc *d = p->d;
    static const char *const head[] = {"Release gate", "Checkpoint", "Rule", "Verdict"};
    static const double w[] = {140, 70, 229, 60};
    static const enum rp_anchor al[] = {RP_LEFT, RP_LEFT, RP_LEFT, RP_CENTER};
    const struct pdf_table t = {4, head, w, al, 8.5};
    if (d->ngates == 0)
        return;
    pdf_subheading(p, "Release gates (details and evidence in the Release gates section)");
    pdf_table_head(p, &t);
    size_t shown = 0;
    for (int pass = 0; pass <= 1; pass++)
        for (size_t i = 0; i < d->ngates && shown < 14; i++) {
            const struct rp_gate *g = &d->gates[i];
            if (g->pass != pass)
                continue;
            const char *cells[4] = {g->name, g->checkpoint ? g->checkpoint : "all", g->rule,
                                    g->pass ? "PASS" : "FAIL"};
            const uint32_t col[4] = {INK, INK, INK, g->pass ? GOOD : BAD};
            pdf_table_row(p, &t, cells, col, 0);
            shown++;
        }
    if (shown < d->ngates) {
        char s[120];
        snprintf(s, sizeof s, "... and %zu more passing gates.", d->ngates - shown);
        pdf_para(p, PDF_ML, PDF_CW, 8, PDF_REGULAR, MUTED, s);
    }
}

void pdf_cover(struct pdf *p)
{
    const struct rp_doc *d = p->d;
    char s[800];
    p->y += 10;
    pdf_text(p, PDF_ML, p->y + 20, 22, PDF_BOLD, 0x2f3b4c, "NYXAudit release audit");
    pdf_text(p, PDF_ML, p->y + 38, 11, PDF_REGULAR, MUTED,
             "Radiology medical-coding model checkpoints: accuracy, safety and evidence");
    p->y += 56;
    verdict_box(p);
    struct ny_buf b;
    ny_buf_init(&b);
    for (size_t i = 0; i < d->nck; i++)
        ny_buf_printf(&b, "%s%s%s", i ? ", " : "", d->ck[i].label,
                      d->ck[i].baseline ? " (baseline)" : "");
    kv(p, "Checkpoints compared", b.data ? b.data : "");
    ny_buf_fini(&b);
    snprintf(s, sizeof s, "%s, split %s", d->dataset, d->split);
    kv(p, "Dataset", s);
    snprintf(s, sizeof s, "%lld records (sampling seed %lld)", (long long)d->n, (long long)d->seed);
    kv(p, "Records scored (n)", s);
    kv(p, "Code-set release", d->release);
    snprintf(s, sizeof s, "%s%s%s", d->started, d->finished ? " to " : "",
             d->finished ? d->finished : "");
    kv(p, "Run date (UTC)", s);
    kv(p, "Run id", d->run_id);
    p->y += 4;
    glance(p);
    cover_gates(p);
}

/* ---- summary and deltas ------------------------------------------------------------------------ */

static void summary_table(struct pdf *p, size_t from, size_t to)
{
    const struct rp_doc *d = p->d;
    const char *head[8];
    double w[8];
    enum rp_anchor al[8];
    size_t nc = to - from;
    head[0] = "Metric";
    w[0] = 115;
    al[0] = RP_LEFT;
    char labels[8][120];
    for (size_t i = 0; i < nc; i++) {
        snprintf(labels[i], sizeof labels[i], "%s%s", d->ck[from + i].label,
                 d->ck[from + i].baseline ? " (baseline)" : "");
        head[i + 1] = labels[i];
        w[i + 1] = (PDF_CW - 115) / (double)nc;
        al[i + 1] = RP_RIGHT;
    }
    const struct pdf_table t = {nc + 1, head, w, al, 8.5};
    pdf_table_head(p, &t);
    for (int m = 0; m < RP_NMETRICS; m++) {
        char cell[8][80];
        const char *cells[8] = {rp_metrics[m].name};
        for (size_t i = 0; i < nc; i++) {
            rp_fmt_value(cell[i], sizeof cell[i], &d->ck[from + i].m[m]);
            cells[i + 1] = cell[i];
        }
        pdf_table_row(p, &t, cells, NULL, 0);
    }
}

static void deltas_table(struct pdf *p)
{
    const struct rp_doc *d = p->d;
    static const char *const head[] = {"Comparison", "Metric", "Delta", "95% CI (paired)",
                                       "McNemar p", "Holm p"};
    static const double w[] = {105, 110, 60, 100, 62, 62};
    static const enum rp_anchor al[] = {RP_LEFT, RP_LEFT, RP_RIGHT, RP_RIGHT, RP_RIGHT, RP_RIGHT};
    const struct pdf_table t = {6, head, w, al, 8.5};
    if (d->ncmp == 0) {
        pdf_para(p, PDF_ML, PDF_CW, 9, PDF_REGULAR, MUTED, "No paired comparisons in results.");
        return;
    }
    pdf_table_head(p, &t);
    for (size_t i = 0; i < d->ncmp; i++) {
        const struct rp_cmp *k = &d->cmp[i];
        char c0[200], dl[32], ci[64], pv[32], ph[32];
        snprintf(c0, sizeof c0, "%s \xe2\x88\x92 %s", k->b, k->a);
        rp_fmt_pp(dl, sizeof dl, k->delta);
        rp_fmt_pp_ci(ci, sizeof ci, k->lo, k->hi);
        rp_fmt_p(pv, sizeof pv, k->p);
        if (k->has_adj)
            rp_fmt_p(ph, sizeof ph, k->p_adj);
        else
            snprintf(ph, sizeof ph, "\xe2\x80\x94");
        uint32_t dc = k->lo > 0 ? GOOD : k->hi < 0 ? BAD : INK;
        const uint32_t col[6] = {INK, INK, dc, dc, INK, INK};
        const char *cells[6] = {c0, rp_metrics[rp_metric_index(k->metric)].name, dl, ci, pv, ph};
        pdf_table_row(p, &t, cells, col, 0);
    }
}

static void cochran_table(struct pdf *p)
{
    const struct rp_doc *d = p->d;
    if (!d->cochran || json_object_size(d->cochran) == 0)
        return;
    static const char *const head[] = {"Metric", "Cochran's Q", "df", "p"};
    static const double w[] = {160, 110, 80, 110};
    static const enum rp_anchor al[] = {RP_LEFT, RP_RIGHT, RP_RIGHT, RP_RIGHT};
    const struct pdf_table t = {4, head, w, al, 8.5};
    pdf_subheading(p, "Do the checkpoints differ at all? (Cochran's Q)");
    pdf_table_head(p, &t);
    for (int m = 0; m < RP_NMETRICS; m++) {
        const json_t *e = json_object_get(d->cochran, rp_metrics[m].key);
        if (!json_is_object(e))
            continue;
        char q[32], df[32], pv[32];
        const json_t *jq = json_object_get(e, "q"), *jd = json_object_get(e, "df");
        const json_t *jp = json_object_get(e, "p");
        snprintf(q, sizeof q, "%.3f", json_is_number(jq) ? json_number_value(jq) : NAN);
        snprintf(df, sizeof df, "%.0f", json_is_number(jd) ? json_number_value(jd) : NAN);
        rp_fmt_p(pv, sizeof pv, json_is_number(jp) ? json_number_value(jp) : NAN);
        const char *cells[4] = {rp_metrics[m].name, q, df, pv};
        pdf_table_row(p, &t, cells, NULL, 0);
    }
}

void pdf_summary(struct pdf *p)
{
    const struct rp_doc *d = p->d;
    char s[300];
    pdf_heading(p, "Summary: every metric with its 95% interval");
    snprintf(s, sizeof s,
             "Values are the share of the %lld records scored, as percentages, with the 95%% "
             "interval in brackets. Definitions follow the tables.", (long long)d->n);
    pdf_para(p, PDF_ML, PDF_CW, 8.5, PDF_REGULAR, MUTED, s);
    p->y += 4;
    for (size_t from = 0; from < d->nck; from += 3) {
        size_t to = from + 3 < d->nck ? from + 3 : d->nck;
        summary_table(p, from, to);
        p->y += 8;
    }
    pdf_heading(p, "Differences between checkpoints (paired, same records)");
    pdf_para(p, PDF_ML, PDF_CW, 8.5, PDF_REGULAR, MUTED,
             "Delta is the second checkpoint minus the first, in percentage points. Green: the "
             "paired 95% interval lies above 0 (better); red: below 0 (worse).");
    p->y += 4;
    deltas_table(p);
    cochran_table(p);
}

void pdf_definitions(struct pdf *p)
{
    pdf_heading(p, "What each metric means");
    for (int m = 0; m < RP_NMETRICS; m++) {
        pdf_need(p, 30);
        p->y += 4;
        double y0 = p->y;
        pdf_text(p, PDF_ML, p->y + 9, 8.5, PDF_BOLD, INK, rp_metrics[m].name);
        pdf_para(p, PDF_ML + 110, PDF_CW - 110, 8.5, PDF_REGULAR, INK, rp_metrics[m].define);
        if (p->y < y0 + 12)
            p->y = y0 + 12;
    }
    pdf_subheading(p, "Intervals and tests");
    for (int i = 0; rp_method_notes[i]; i++) {
        pdf_para(p, PDF_ML, PDF_CW, 8.5, PDF_REGULAR, INK, rp_method_notes[i]);
        p->y += 3;
    }
}

/* ---- charts ------------------------------------------------------------------------------------ */


static void chart(struct pdf *p, const char *title, const char *note, double h, int legend,
                  void (*draw)(struct pdf *, struct rp_canvas *, const void *), const void *arg)
{
    struct rp_canvas c;
    pdf_need(p, h + 60);
    pdf_subheading(p, title);
    if (note)
        pdf_para(p, PDF_ML, PDF_CW, 8, PDF_REGULAR, MUTED, note);
    p->y += 4;
    pdf_canvas_init(p, &c, PDF_ML);
    if (legend)
        p->y += rp_chart_legend(p->d, &c, PDF_CW) + 2;
    pdf_canvas_init(p, &c, PDF_ML);
    draw(p, &c, arg);
    p->y += h + 6;
}

static void draw_metrics(struct pdf *p, struct rp_canvas *c, const void *a)
{
    (void)a;
    rp_chart_metrics(p->d, c, PDF_CW);
}

static void draw_deltas(struct pdf *p, struct rp_canvas *c, const void *a)
{
    (void)a;
    rp_chart_deltas(p->d, c, PDF_CW);
}

struct bd_arg {
    const char *metric;
    int by;
};

static void draw_bd(struct pdf *p, struct rp_canvas *c, const void *a)
{
    const struct bd_arg *b = a;
    rp_chart_breakdown(p->d, c, PDF_CW, b->metric, b->by);
}

void pdf_charts(struct pdf *p)
{
    const struct rp_doc *d = p->d;
    double h = rp_chart_metrics(d, NULL, PDF_CW);
    pdf_need(p, h + 120); /* the heading stays with its first chart */
    pdf_heading(p, "Charts");
    chart(p, "Every metric per checkpoint (bars) with its 95% interval (whiskers)", NULL, h, 1,
          draw_metrics, NULL);
    h = rp_chart_deltas(d, NULL, PDF_CW);
    if (h > 0)
        chart(p, "Paired differences with 95% intervals",
              "Square: delta; line: paired 95% interval; green above 0 means better, red below "
              "0 worse, grey no clear difference.", h, 0, draw_deltas, NULL);
    static const struct bd_arg bd[4] = {
        {"cpt_exact", 0}, {"icd_exact", 0}, {"cpt_exact", 1}, {"icd_exact", 1}};
    static const char *const titles[4] = {
        "CPT exact by modality", "ICD exact by modality",
        "CPT exact by primary CPT (largest groups)", "ICD exact by primary CPT (largest groups)"};
    for (int i = 0; i < 4; i++) {
        h = rp_chart_breakdown(d, NULL, PDF_CW, bd[i].metric, bd[i].by);
        if (h > 0)
            chart(p, titles[i], NULL, h, 1, draw_bd, &bd[i]);
    }
}

/* ---- gates ------------------------------------------------------------------------------------- */

void pdf_gates(struct pdf *p)
{
    const struct rp_doc *d = p->d;
    static const char *const head[] = {"Gate", "Checkpoint", "Rule", "Evidence", "Verdict"};
    static const double w[] = {112, 58, 130, 152, 47};
    static const enum rp_anchor al[] = {RP_LEFT, RP_LEFT, RP_LEFT, RP_LEFT, RP_CENTER};
    const struct pdf_table t = {5, head, w, al, 8};
    pdf_heading(p, "Release gates");
    pdf_para(p, PDF_ML, PDF_CW, 8.5, PDF_REGULAR, MUTED,
             "Each gate is a rule fixed before the run; the release passes only if every gate "
             "passes. Floors bound a metric from below, no-regression gates compare a candidate "
             "with the baseline by the paired test, ceilings bound invalid-code rates.");
    p->y += 4;
    if (d->ngates == 0) {
        pdf_para(p, PDF_ML, PDF_CW, 9, PDF_REGULAR, INK, "No gates were configured.");
        return;
    }
    pdf_table_head(p, &t);
    for (size_t i = 0; i < d->ngates; i++) {
        const struct rp_gate *g = &d->gates[i];
        struct ny_buf ev;
        ny_buf_init(&ev);
        rp_fmt_evidence(&ev, g->evidence);
        char name[300];
        snprintf(name, sizeof name, "%s (%s)", g->name, g->kind);
        const char *cells[5] = {name, g->checkpoint ? g->checkpoint : "all", g->rule,
                                ev.data ? ev.data : "", g->pass ? "PASS" : "FAIL"};
        const uint32_t col[5] = {INK, INK, INK, INK, g->pass ? GOOD : BAD};
        pdf_table_row(p, &t, cells, col, 0);
        ny_buf_fini(&ev);
    }
}

/* ---- error analysis ---------------------------------------------------------------------------- */

/* One row per measure, one column per checkpoint; with more than 6 checkpoints the table is
 * repeated for each group of 6. cell() formats the value of checkpoint ck in row r. */
typedef void (*ck_cell_fn)(const struct rp_doc *d, const void *ctx, size_t ck, size_t r,
                           char *out, size_t cap);

static void ckpt_table(struct pdf *p, const char *first, const char *const *rows, size_t nrows,
                       ck_cell_fn cell, const void *ctx)
{
    const struct rp_doc *d = p->d;
    for (size_t from = 0; from < d->nck; from += 6) {
        size_t nc = d->nck - from < 6 ? d->nck - from : 6;
        const char *head[7] = {first};
        double w[7] = {200};
        enum rp_anchor al[7] = {RP_LEFT};
        for (size_t i = 0; i < nc; i++) {
            head[i + 1] = d->ck[from + i].label;
            w[i + 1] = (PDF_CW - 200) / (double)nc;
            al[i + 1] = RP_RIGHT;
        }
        const struct pdf_table t = {nc + 1, head, w, al, 8.5};
        pdf_table_head(p, &t);
        for (size_t r = 0; r < nrows; r++) {
            char cell_s[6][64];
            const char *cells[7] = {rows[r]};
            for (size_t i = 0; i < nc; i++) {
                cell(d, ctx, from + i, r, cell_s[i], sizeof cell_s[i]);
                cells[i + 1] = cell_s[i];
            }
            pdf_table_row(p, &t, cells, NULL, 0);
        }
        p->y += 6;
    }
}

static void taxonomy_cell(const struct rp_doc *d, const void *ctx, size_t ck, size_t r,
                          char *out, size_t cap)
{
    (void)ctx;
    snprintf(out, cap, "%lld", (long long)d->ck[ck].taxonomy[r]);
}

static void taxonomy(struct pdf *p)
{
    pdf_subheading(p, "Error taxonomy (ICD misses, counts)");
    ckpt_table(p, "ICD error type", rp_taxonomy_names, RP_NTAXONOMY, taxonomy_cell, NULL);
}

static void confusions(struct pdf *p)
{
    const struct rp_doc *d = p->d;
    static const char *const head[] = {"Checkpoint", "Gold code", "Predicted instead", "Count"};
    static const double w[] = {120, 140, 140, 99};
    static const enum rp_anchor al[] = {RP_LEFT, RP_LEFT, RP_LEFT, RP_RIGHT};
    const struct pdf_table t = {4, head, w, al, 8.5};
    pdf_subheading(p, "Most confused code pairs (top 8 per checkpoint)");
    pdf_table_head(p, &t);
    for (size_t i = 0; i < d->nck; i++) {
        size_t n;
        const json_t **v = rp_confusions_sorted(&d->ck[i], &n);
        if (!v) {
            p->failed = 1;
            return;
        }
        for (size_t j = 0; j < n && j < 8; j++) {
            char cnt[32];
            snprintf(cnt, sizeof cnt, "%lld",
                     (long long)json_integer_value(json_object_get(v[j], "count")));
            const char *cells[4] = {d->ck[i].label,
                                    json_string_value(json_object_get(v[j], "gold")),
                                    json_string_value(json_object_get(v[j], "pred")), cnt};
            pdf_table_row(p, &t, cells, NULL, 0);
        }
        if (n == 0) {
            const char *cells[4] = {d->ck[i].label, "(no confusions)", "", ""};
            pdf_table_row(p, &t, cells, NULL, 0);
        }
        ny_free(v);
    }
}

#define SAMPLE_MAX 20

static void disagreements(struct pdf *p)
{
    const struct rp_doc *d = p->d;
    const char *head[10] = {"Record", "Gold"};
    double w[10] = {80, 0};
    enum rp_anchor al[10] = {RP_LEFT, RP_LEFT};
    size_t nc = d->nck < 6 ? d->nck : 6;
    w[1] = (PDF_CW - 80) / (double)(nc + 1);
    for (size_t i = 0; i < nc; i++) {
        head[i + 2] = d->ck[i].label;
        w[i + 2] = w[1];
        al[i + 2] = RP_LEFT;
    }
    const struct pdf_table t = {nc + 2, head, w, al, 7.5};
    char s[500];
    pdf_subheading(p, "Sample of disagreements");
    snprintf(s, sizeof s,
             "The first %d of %zu records (in run order) where the checkpoints' predicted code "
             "sets differ. Red: differs from gold.%s%s", SAMPLE_MAX, d->ndisagree,
             nc < d->nck ? " Only the first 6 checkpoints fit; the HTML dashboard shows all." : "",
             d->allow_text ? "" : " Report excerpts are not shown: reports are PHI and this run "
                                  "does not allow report text (run.allow_report_text is false).");
    pdf_para(p, PDF_ML, PDF_CW, 8, PDF_REGULAR, MUTED, s);
    p->y += 4;
    pdf_table_head(p, &t);
    size_t shown = 0;
    for (size_t r = 0; r < d->nrec && shown < SAMPLE_MAX; r++) {
        const struct rp_record *x = &d->rec[r];
        if (!x->disagree)
            continue;
        shown++;
        char id[200];
        snprintf(id, sizeof id, "%s%s%s%s%s", x->id, x->modality ? " \xc2\xb7 " : "",
                 x->modality ? x->modality : "", x->primary_cpt ? " \xc2\xb7 " : "",
                 x->primary_cpt ? x->primary_cpt : "");
        const char *cells[10] = {id, x->gold};
        uint32_t col[10] = {INK, INK};
        for (size_t i = 0; i < nc; i++) {
            cells[i + 2] = x->pred[i] ? x->pred[i] : "(no output)";
            col[i + 2] = x->wrong[i] ? BAD : INK;
        }
        pdf_table_row(p, &t, cells, col, 0);
        if (d->allow_text && x->excerpt) {
            static const double we[] = {80, PDF_CW - 80};
            const struct pdf_table te = {2, head, we, al, 7.5};
            const char *ex[2] = {"excerpt", x->excerpt};
            p->row--;
            pdf_table_row(p, &te, ex, NULL, 0);
        }
    }
    if (shown == 0) {
        const char *cells[10] = {"(none)", "The checkpoints agree on every record.", "", "", "",
                                 "", "", "", "", ""};
        pdf_table_row(p, &t, cells, NULL, 0);
    }
}

void pdf_errors(struct pdf *p)
{
    pdf_heading(p, "Error analysis");
    taxonomy(p);
    confusions(p);
    disagreements(p);
}

/* ---- validity ---------------------------------------------------------------------------------- */

/* Validity rows: the 4 rates, format errors, then the raw counts (ctx: their sorted keys). */
static void validity_cell(const struct rp_doc *d, const void *ctx, size_t ck, size_t r,
                          char *out, size_t cap)
{
    const char *const *keys = ctx;
    if (r < RP_NVALIDITY)
        rp_fmt_pct(out, cap, d->ck[ck].validity[r]);
    else if (r == RP_NVALIDITY)
        snprintf(out, cap, "%lld", (long long)d->ck[ck].format_errors);
    else
        rp_validity_count(&d->ck[ck], keys[r - RP_NVALIDITY - 1], out, cap);
}

void pdf_validity(struct pdf *p)
{
    const struct rp_doc *d = p->d;
    char s[200];
    pdf_heading(p, "Validity against the code set");
    snprintf(s, sizeof s,
             "Rates over all predicted codes of each kind, checked against code-set release %s.",
             d->release);
    pdf_para(p, PDF_ML, PDF_CW, 8.5, PDF_REGULAR, MUTED, s);
    p->y += 4;
    size_t nk;
    const char **keys = rp_validity_count_keys(d, &nk);
    const char **rows = ny_calloc(RP_NVALIDITY + 1 + nk, sizeof *rows);
    char(*labels)[160] = ny_calloc(nk ? nk : 1, sizeof *labels);
    if (keys && rows && labels) {
        for (size_t r = 0; r < RP_NVALIDITY; r++)
            rows[r] = rp_validity_names[r];
        rows[RP_NVALIDITY] = "Records with format errors";
        for (size_t a = 0; a < nk; a++) {
            snprintf(labels[a], sizeof labels[a], "count: %s", keys[a]);
            rows[RP_NVALIDITY + 1 + a] = labels[a];
        }
        ckpt_table(p, "Measure", rows, RP_NVALIDITY + 1 + nk, validity_cell, keys);
    } else
        p->failed = 1;
    ny_free(labels);
    ny_free(rows);
    ny_free(keys);
}
