/* report_history.c — the history page over the runs in the store: every run with its verdict,
 * then each metric per checkpoint over time (runs ordered by run.started, then run.id), drawn as
 * inline SVG line charts with 95% whiskers, with the values in a table beneath each chart. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "report_html_int.h"

#define MUTED 0x666666u
#define GRID 0xd0d0d0u
#define INK 0x222222u

struct skipped {
    size_t index;
    char id[128];
    char why[NY_ERR_MSG_MAX];
};

struct hist {
    struct rp_doc *docs;  /* valid runs, in run order */
    size_t n;
    const char **labels;  /* union of checkpoint labels, by first appearance */
    size_t nl;
    struct skipped *skip; /* runs that failed the check, in input order */
    size_t nskip;
};

static int run_cmp(const void *a, const void *b, void *base)
{
    const struct rp_doc *docs = base;
    const struct rp_doc *x = &docs[*(const size_t *)a], *y = &docs[*(const size_t *)b];
    int r = strcmp(x->started, y->started);
    if (!r)
        r = strcmp(x->run_id, y->run_id);
    if (!r)
        r = *(const size_t *)a < *(const size_t *)b ? -1 : *(const size_t *)a > *(const size_t *)b;
    return r;
}

/* Value of metric m for label in doc, or NULL. */
static const struct rp_value *value_of(const struct rp_doc *d, const char *label, int m)
{
    int i = rp_doc_ckpt(d, label);
    return i < 0 ? NULL : &d->ck[i].m[m];
}

/* Axis range of metric m over all runs: multiples of a step (5, 10, 20 or 25 points) that gives
 * at most 6 intervals; *nstep receives the interval count. */
static void y_range(const struct hist *h, int m, double *lo, double *hi, int *nstep)
{
    double a = 1, b = 0;
    for (size_t r = 0; r < h->n; r++)
        for (size_t j = 0; j < h->nl; j++) {
            const struct rp_value *v = value_of(&h->docs[r], h->labels[j], m);
            if (!v)
                continue;
            a = fmin(a, v->has_ci ? fmin(v->lo, v->v) : v->v);
            b = fmax(b, v->has_ci ? fmax(v->hi, v->v) : v->v);
        }
    a = fmax(0, fmin(a, 1));
    b = fmin(1, fmax(b, 0));
    if (a >= b)
        a = fmax(0, b - 0.05), b = fmin(1, a + 0.1);
    static const double steps[] = {0.05, 0.1, 0.2, 0.25};
    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
        double st = steps[i], l = floor(a / st + 1e-9) * st, u = ceil(b / st - 1e-9) * st;
        int k = (int)lround((u - l) / st);
        if (k < 1)
            k = 1, u = l + st;
        if (k <= 6 || i + 1 == sizeof steps / sizeof steps[0]) {
            *lo = l;
            *hi = u;
            *nstep = k;
            return;
        }
    }
}

static double legend(const struct hist *h, const struct rp_canvas *c, double w)
{
    double x = 0, y = 0;
    for (size_t j = 0; j < h->nl; j++) {
        double tw = c->text_width(c->ctx, 8, 0, h->labels[j]);
        if (x > 0 && x + 30 + tw > w) {
            x = 0;
            y += 12;
        }
        c->rect(c->ctx, x, y + 1, 9, 9, rp_ckpt_color(j));
        c->text(c->ctx, x + 12, y + 9, 8, RP_LEFT, 0, INK, h->labels[j]);
        x += 30 + tw;
    }
    return y + 16;
}

/* One metric over the runs; returns the height used. */
static double chart(const struct hist *h, const struct rp_canvas *c, double w, int m)
{
    const double left = 34, right = 12, ph = 120;
    double top = legend(h, c, w) + 4, lo, hi;
    int nstep;
    y_range(h, m, &lo, &hi, &nstep);
    double span = w - left - right;
#define YOF(v) (top + ph - ph * ((v) - lo) / (hi - lo))
    for (int t = 0; t <= nstep; t++) {
        double v = lo + (hi - lo) * t / nstep, y = YOF(v);
        char s[32];
        rp_fmt_pct(s, sizeof s, v);
        c->line(c->ctx, left, y, w - right, y, t ? 0.4 : 0.8, t ? GRID : INK, t != 0);
        c->text(c->ctx, left - 4, y + 2.5, 6.5, RP_RIGHT, 0, MUTED, s);
    }
    size_t every = h->n > 10 ? (h->n + 9) / 10 : 1;
    for (size_t r = 0; r < h->n; r++) {
        double x = h->n == 1 ? left + span / 2 : left + 14 + (span - 28) * (double)r / (double)(h->n - 1);
        if (r % every)
            continue;
        char s[64];
        snprintf(s, sizeof s, "%.16s", h->docs[r].started);
        if (strlen(s) > 10 && s[10] == 'T')
            s[10] = ' ';
        c->text(c->ctx, x, top + ph + 10, 6.5, RP_CENTER, 0, INK, s);
        snprintf(s, sizeof s, "%.24s", h->docs[r].release);
        c->text(c->ctx, x, top + ph + 18, 6, RP_CENTER, 0, MUTED, s);
    }
    for (size_t j = 0; j < h->nl; j++) {
        double off = ((double)j - (double)(h->nl - 1) / 2) * 3.5, px = 0, py = 0;
        int have = 0;
        uint32_t col = rp_ckpt_color(j);
        for (size_t r = 0; r < h->n; r++) {
            const struct rp_value *v = value_of(&h->docs[r], h->labels[j], m);
            if (!v) {
                have = 0;
                continue;
            }
            double x = (h->n == 1 ? left + span / 2
                                  : left + 14 + (span - 28) * (double)r / (double)(h->n - 1)) + off;
            double y = YOF(fmin(1, fmax(0, v->v)));
            if (have)
                c->line(c->ctx, px, py, x, y, 1.2, col, 0);
            if (v->has_ci)
                c->line(c->ctx, x, YOF(fmin(1, v->hi)), x, YOF(fmax(0, v->lo)), 0.8, col, 0);
            c->rect(c->ctx, x - 2.2, y - 2.2, 4.4, 4.4, col);
            px = x, py = y, have = 1;
        }
    }
#undef YOF
    return top + ph + 24;
}

static double draw(const struct rp_doc *d, const struct rp_canvas *c, double w, const void *arg)
{
    (void)d;
    const struct hist *h = ((const void *const *)arg)[0];
    int m = *(const int *)((const void *const *)arg)[1];
    return chart(h, c, w, m);
}

static void runs_table(struct ny_buf *b, const struct hist *h)
{
    ny_buf_puts(b, "<table><thead><tr><th>#</th><th>Started (UTC)</th><th>Run id</th>"
                   "<th>Dataset, split</th><th class=\"num\">n</th><th>Code-set release</th>"
                   "<th>Checkpoints</th><th>Verdict</th></tr></thead><tbody>\n");
    for (size_t r = 0; r < h->n; r++) {
        const struct rp_doc *d = &h->docs[r];
        char s[600];
        ny_buf_printf(b, "<tr><td class=\"num\">%zu</td>", r + 1);
        html_el(b, "td", NULL, d->started);
        html_el(b, "td", "mono", d->run_id);
        snprintf(s, sizeof s, "%s, %s", d->dataset, d->split);
        html_el(b, "td", NULL, s);
        snprintf(s, sizeof s, "%lld", (long long)d->n);
        html_el(b, "td", "num", s);
        html_el(b, "td", NULL, d->release);
        struct ny_buf c;
        ny_buf_init(&c);
        for (size_t i = 0; i < d->nck; i++)
            ny_buf_printf(&c, "%s%s%s", i ? ", " : "", d->ck[i].label,
                          d->ck[i].baseline ? " (baseline)" : "");
        html_el(b, "td", NULL, c.data ? c.data : "");
        ny_buf_fini(&c);
        html_el(b, "td", d->pass ? "good" : "bad", d->pass ? "PASS" : "FAIL");
        ny_buf_puts(b, "</tr>\n");
    }
    ny_buf_puts(b, "</tbody></table>\n");
}

static void values_table(struct ny_buf *b, const struct hist *h, int m)
{
    ny_buf_puts(b, "<details><summary>Values</summary><table><thead><tr><th>Started</th>"
                   "<th>Release</th>");
    for (size_t j = 0; j < h->nl; j++)
        html_el(b, "th", "num", h->labels[j]);
    ny_buf_puts(b, "</tr></thead><tbody>\n");
    for (size_t r = 0; r < h->n; r++) {
        ny_buf_puts(b, "<tr>");
        html_el(b, "td", NULL, h->docs[r].started);
        html_el(b, "td", NULL, h->docs[r].release);
        for (size_t j = 0; j < h->nl; j++) {
            const struct rp_value *v = value_of(&h->docs[r], h->labels[j], m);
            char s[80];
            if (v)
                rp_fmt_value(s, sizeof s, v);
            else
                snprintf(s, sizeof s, "\xe2\x80\x94");
            html_el(b, "td", "num", s);
        }
        ny_buf_puts(b, "</tr>\n");
    }
    ny_buf_puts(b, "</tbody></table></details>\n");
}

static int render(struct ny_buf *b, struct hist *h)
{
    char s[300];
    html_head(b, "NYXAudit history");
    ny_buf_puts(b, "<h1>NYXAudit history</h1>\n");
    snprintf(s, sizeof s, "%zu runs from the run store, oldest first. Each chart shows one metric "
             "per checkpoint label over the runs (square: value; vertical line: 95%% interval); "
             "beneath each date is the code-set release the run validated against.", h->n);
    html_el(b, "p", "sub", s);
    ny_buf_puts(b, "<h2>Runs</h2>\n");
    runs_table(b, h);
    if (h->nskip) {
        ny_buf_puts(b, "<h3>Runs not shown</h3>\n<p class=\"note\">These results objects do not "
                       "follow the results.json contract and are left out of the charts.</p>\n"
                       "<table><thead><tr><th class=\"num\">Input #</th><th>Run id</th>"
                       "<th>Reason</th></tr></thead><tbody>\n");
        for (size_t i = 0; i < h->nskip; i++) {
            ny_buf_printf(b, "<tr><td class=\"num\">%zu</td>", h->skip[i].index);
            html_el(b, "td", "mono", h->skip[i].id);
            html_el(b, "td", NULL, h->skip[i].why);
            ny_buf_puts(b, "</tr>\n");
        }
        ny_buf_puts(b, "</tbody></table>\n");
    }
    ny_buf_puts(b, "<h2>Metrics over time</h2>\n");
    for (int m = 0; m < RP_NMETRICS; m++) {
        html_el(b, "h3", NULL, rp_metrics[m].name);
        html_el(b, "p", "note", rp_metrics[m].define);
        const void *arg[2] = {h, &m};
        html_svg(b, &h->docs[0], HTML_CHART_W, draw, arg, rp_metrics[m].name, 0);
        values_table(b, h, m);
    }
    html_tail(b, NULL, NULL);
    return b->failed ? NY_E_NOMEM : 0;
}

static int collect_labels(struct hist *h)
{
    size_t cap = 0;
    for (size_t r = 0; r < h->n; r++)
        cap += h->docs[r].nck;
    h->labels = ny_calloc(cap ? cap : 1, sizeof *h->labels);
    if (!h->labels)
        return NY_E_NOMEM;
    for (size_t r = 0; r < h->n; r++)
        for (size_t i = 0; i < h->docs[r].nck; i++) {
            size_t j = 0;
            while (j < h->nl && strcmp(h->labels[j], h->docs[r].ck[i].label))
                j++;
            if (j == h->nl)
                h->labels[h->nl++] = h->docs[r].ck[i].label;
        }
    return 0;
}

/* Check every run: valid ones into h->docs (input order), the others into h->skip. Returns 0,
 * NY_E_NOMEM, or the first run's error when none is valid. */
static int load_runs(struct hist *h, const json_t *const *runs, size_t n, struct ny_err *err)
{
    struct ny_err first;
    ny_err_init(&first);
    for (size_t i = 0; i < n; i++) {
        struct ny_err e;
        ny_err_init(&e);
        int rc = rp_doc_load(&h->docs[h->n], runs[i], &e);
        if (rc == NY_E_NOMEM)
            return NY_ERR(err, NY_E_NOMEM, "history: out of memory");
        if (!rc) {
            h->n++;
            continue;
        }
        const json_t *id = runs[i] ? json_object_get(json_object_get(runs[i], "run"), "id") : NULL;
        struct skipped *k = &h->skip[h->nskip++];
        k->index = i;
        snprintf(k->id, sizeof k->id, "%s", json_is_string(id) ? json_string_value(id) : "(no id)");
        snprintf(k->why, sizeof k->why, "%s", e.msg);
        if (!first.code) {
            first = e;
            ny_err_prefix(&first, "history: run %zu (%s): ", i, k->id);
        }
    }
    if (h->n == 0) {
        if (err)
            *err = first;
        return first.code ? first.code : NY_E_FORMAT;
    }
    return 0;
}

int report_history_html_write(const json_t *const *runs, size_t n, const char *path,
                              struct ny_err *err)
{
    if (!runs || n == 0)
        return NY_ERR(err, NY_E_INVALID, "history: no runs given");
    struct hist h = {ny_calloc(n, sizeof *h.docs), 0, NULL, 0, ny_calloc(n, sizeof *h.skip), 0};
    size_t *order = ny_calloc(n, sizeof *order);
    struct rp_doc *sorted = ny_calloc(n, sizeof *sorted);
    int rc = h.docs && h.skip && order && sorted
                 ? load_runs(&h, runs, n, err)
                 : NY_ERR(err, NY_E_NOMEM, "history: out of memory");
    if (!rc) {
        for (size_t i = 0; i < h.n; i++)
            order[i] = i;
        qsort_r(order, h.n, sizeof *order, run_cmp, h.docs);
        for (size_t i = 0; i < h.n; i++)
            sorted[i] = h.docs[order[i]];
        memcpy(h.docs, sorted, h.n * sizeof *sorted);
        rc = collect_labels(&h) ? NY_ERR(err, NY_E_NOMEM, "history: out of memory") : 0;
    }
    struct ny_buf b;
    ny_buf_init(&b);
    if (!rc && render(&b, &h))
        rc = NY_ERR(err, NY_E_NOMEM, "history: out of memory writing %s", path);
    if (!rc)
        rc = ny_file_write_atomic(path, b.data, b.len, err);
    ny_buf_fini(&b);
    for (size_t i = 0; h.docs && i < h.n; i++)
        rp_doc_fini(&h.docs[i]);
    ny_free(h.docs);
    ny_free(h.skip);
    ny_free(h.labels);
    ny_free(order);
    ny_free(sorted);
    return rc;
}
