/* report_chart.c — the report's charts, drawn once against struct rp_canvas (the PDF writer maps
 * it to libharu, the HTML writer to inline SVG): metric bars with 95% whiskers, the delta forest
 * plot, and per-modality / per-CPT breakdown bars. A NULL canvas only measures the height. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "report_int.h"

#define INK 0x222222u
#define GRID 0xd0d0d0u
#define MUTED 0x666666u
#define GOOD 0x1b7f3bu
#define BAD 0xb3261eu

uint32_t rp_ckpt_color(size_t i)
{
    static const uint32_t pal[] = {0x4c72b0, 0xdd8452, 0x55a868, 0x8172b3,
                                   0x937860, 0xda8bc3, 0x8c8c8c, 0xccb974};
    return pal[i % (sizeof pal / sizeof pal[0])];
}

static void rect(const struct rp_canvas *c, double x, double y, double w, double h, uint32_t f)
{
    if (c && w > 0 && h > 0)
        c->rect(c->ctx, x, y, w, h, f);
}

static void line(const struct rp_canvas *c, double x1, double y1, double x2, double y2, double lw,
                 uint32_t col, int dashed)
{
    if (c)
        c->line(c->ctx, x1, y1, x2, y2, lw, col, dashed);
}

static void text(const struct rp_canvas *c, double x, double y, double size, enum rp_anchor a,
                 int bold, uint32_t col, const char *s)
{
    if (c)
        c->text(c->ctx, x, y, size, a, bold, col, s);
}

/* Vertical whisker-capped interval on a horizontal bar (y is the bar centre). */
static void hwhisker(const struct rp_canvas *c, double xl, double xh, double y, double cap)
{
    line(c, xl, y, xh, y, 0.8, INK, 0);
    line(c, xl, y - cap, xl, y + cap, 0.8, INK, 0);
    line(c, xh, y - cap, xh, y + cap, 0.8, INK, 0);
}

static double clamp01(double v)
{
    return v < 0 ? 0 : v > 1 ? 1 : v;
}

double rp_chart_legend(const struct rp_doc *d, const struct rp_canvas *c, double w)
{
    double x = 0, y = 0, sz = 8;
    for (size_t i = 0; i < d->nck; i++) {
        char s[200];
        snprintf(s, sizeof s, "%s%s", d->ck[i].label, d->ck[i].baseline ? " (baseline)" : "");
        double tw = c ? c->text_width(c->ctx, sz, 0, s) : 60;
        if (x > 0 && x + 14 + tw > w) {
            x = 0;
            y += 12;
        }
        rect(c, x, y + 1, 9, 9, rp_ckpt_color(i));
        text(c, x + 12, y + 9, sz, RP_LEFT, 0, INK, s);
        x += 12 + tw + 16;
    }
    return y + 14;
}

double rp_chart_metrics(const struct rp_doc *d, const struct rp_canvas *c, double w)
{
    const double lab = 118, gap = 7, top = 2;
    /* Bars thin out with many checkpoints so that the chart stays within ~600 points. */
    const double bh = fmax(1.5, fmin(6.5, (600.0 / RP_NMETRICS - gap) / (double)d->nck - 1));
    double x0 = lab + 6, x1 = w - 8, span = x1 - x0;
    double gh = (double)d->nck * (bh + 1) + gap;
    double h = top + RP_NMETRICS * gh;
    for (int t = 0; t <= 10; t += 2) {
        double x = x0 + span * t / 10.0;
        char s[16];
        snprintf(s, sizeof s, "%d%%", t * 10);
        line(c, x, top - 2, x, h, 0.4, GRID, t != 0);
        text(c, x, h + 10, 7, RP_CENTER, 0, MUTED, s);
    }
    for (int m = 0; m < RP_NMETRICS; m++) {
        double gy = top + m * gh;
        text(c, lab, gy + (gh - gap) / 2 + 3, 7.5, RP_RIGHT, 0, INK, rp_metrics[m].name);
        for (size_t i = 0; i < d->nck; i++) {
            const struct rp_value *v = &d->ck[i].m[m];
            double y = gy + (double)i * (bh + 1);
            rect(c, x0, y, span * clamp01(v->v), bh, rp_ckpt_color(i));
            if (v->has_ci)
                hwhisker(c, x0 + span * clamp01(v->lo), x0 + span * clamp01(v->hi), y + bh / 2,
                         2.2);
        }
    }
    return h + 14;
}

/* Smallest "nice" bound (in proportion units) >= m: 1, 2, 5 x 10^k percentage points. */
static double nice_bound(double m)
{
    static const double steps[] = {0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0};
    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++)
        if (m <= steps[i])
            return steps[i];
    return 1.0;
}

double rp_chart_deltas(const struct rp_doc *d, const struct rp_canvas *c, double w)
{
    const double lab = 178, rowh = 12, top = 4;
    if (d->ncmp == 0)
        return 0;
    double m = 0;
    for (size_t i = 0; i < d->ncmp; i++)
        m = fmax(m, fmax(fabs(d->cmp[i].lo), fabs(d->cmp[i].hi)));
    double r = nice_bound(m), x0 = lab + 8, x1 = w - 12, mid = (x0 + x1) / 2;
    double half = (x1 - x0) / 2, h = top + (double)d->ncmp * rowh;
    for (size_t i = 0; i < d->ncmp; i += 2) /* zebra rows under the grid */
        rect(c, 0, top + (double)i * rowh, w, rowh, 0xf3f3f3);
    for (int t = -4; t <= 4; t++) {
        double x = mid + half * t / 4.0;
        line(c, x, top, x, h, t ? 0.4 : 1.0, t ? GRID : INK, t != 0);
        if (t % 2 == 0) {
            char s[32];
            rp_fmt_pp(s, sizeof s, r * t / 4.0);
            text(c, x, h + 10, 7, RP_CENTER, 0, MUTED, t ? s : "0");
        }
    }
    for (size_t i = 0; i < d->ncmp; i++) {
        const struct rp_cmp *k = &d->cmp[i];
        double y = top + (double)i * rowh + rowh / 2;
        char s[256];
        int mi = rp_metric_index(k->metric);
        snprintf(s, sizeof s, "%.40s \xe2\x88\x92 %.40s  %s", k->b, k->a, rp_metrics[mi].name);
        text(c, lab, y + 3, 7.5, RP_RIGHT, 0, INK, s);
        uint32_t col = k->lo > 0 ? GOOD : k->hi < 0 ? BAD : MUTED;
        double xl = mid + half * fmax(-1, k->lo / r), xh = mid + half * fmin(1, k->hi / r);
        line(c, xl, y, xh, y, 1.2, col, 0);
        line(c, xl, y - 2.5, xl, y + 2.5, 1.0, col, 0);
        line(c, xh, y - 2.5, xh, y + 2.5, 1.0, col, 0);
        double xd = mid + half * fmax(-1, fmin(1, k->delta / r));
        rect(c, xd - 2.5, y - 2.5, 5, 5, col);
    }
    return h + 14;
}

static int str_cmp(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* A breakdown category (modality or primary CPT) and its largest n over the checkpoints. */
struct cat {
    const char *name;
    int64_t n;
};
static int cat_cmp_n(const void *a, const void *b)
{
    const struct cat *x = a, *y = b;
    if (x->n != y->n)
        return x->n > y->n ? -1 : 1;
    return strcmp(x->name, y->name);
}
static int cat_cmp_name(const void *a, const void *b)
{
    return str_cmp(&((const struct cat *)a)->name, &((const struct cat *)b)->name);
}

static const json_t *bd_of(const struct rp_ckpt *k, int by)
{
    return by ? k->by_cpt : k->by_modality;
}

/* Union of category names over checkpoints into out, sorted by name; when there are more than
 * max, only the max largest are kept. Returns the count, or -1 on OOM. */
static int categories(const struct rp_doc *d, int by, struct cat *out, size_t max)
{
    size_t n = 0, cap = 0;
    for (size_t i = 0; i < d->nck; i++)
        cap += bd_of(&d->ck[i], by) ? json_object_size(bd_of(&d->ck[i], by)) : 0;
    struct cat *all = ny_calloc(cap ? cap : 1, sizeof *all);
    if (!all)
        return -1;
    for (size_t i = 0; i < d->nck; i++) {
        const char *key;
        const json_t *v;
        const json_t *bd = bd_of(&d->ck[i], by);
        if (!bd)
            continue;
        json_object_foreach((json_t *)bd, key, v) {
            size_t j = 0;
            while (j < n && strcmp(all[j].name, key))
                j++;
            int64_t cn = (int64_t)json_integer_value(json_object_get(v, "n"));
            if (j == n)
                all[n++] = (struct cat){key, cn};
            else if (cn > all[j].n)
                all[j].n = cn;
        }
    }
    qsort(all, n, sizeof *all, n > max ? cat_cmp_n : cat_cmp_name);
    if (n > max)
        n = max;
    qsort(all, n, sizeof *all, cat_cmp_name);
    memcpy(out, all, n * sizeof *all);
    ny_free(all);
    return (int)n;
}

double rp_chart_breakdown(const struct rp_doc *d, const struct rp_canvas *c, double w,
                          const char *metric_key, int by)
{
    struct cat cats[14];
    int nc = categories(d, by, cats, 14);
    if (nc <= 0)
        return 0;
    const double left = 30, top = 4, ph = 110;
    double x0 = left, x1 = w - 4, gw = (x1 - x0) / nc;
    double bw = fmin(14, (gw - 8) / (double)d->nck);
    for (int t = 0; t <= 4; t++) {
        double y = top + ph - ph * t / 4.0;
        char s[16];
        snprintf(s, sizeof s, "%d%%", t * 25);
        line(c, x0, y, x1, y, t ? 0.4 : 0.8, t ? GRID : INK, t != 0);
        text(c, x0 - 4, y + 2.5, 7, RP_RIGHT, 0, MUTED, s);
    }
    for (int g = 0; g < nc; g++) {
        double gx = x0 + g * gw + (gw - bw * (double)d->nck) / 2;
        int64_t n = -1;
        for (size_t i = 0; i < d->nck; i++) {
            const json_t *bd = bd_of(&d->ck[i], by);
            const json_t *e = bd ? json_object_get(bd, cats[g].name) : NULL;
            if (!e)
                continue;
            if (i == d->base || n < 0)
                n = (int64_t)json_integer_value(json_object_get(e, "n"));
            double v = clamp01(json_number_value(json_object_get(e, metric_key)));
            rect(c, gx + (double)i * bw, top + ph - ph * v, bw - 1, ph * v, rp_ckpt_color(i));
        }
        char s[64];
        snprintf(s, sizeof s, "%.24s", cats[g].name);
        text(c, x0 + g * gw + gw / 2, top + ph + 10, 7, RP_CENTER, 1, INK, s);
        snprintf(s, sizeof s, "n=%lld", (long long)n);
        text(c, x0 + g * gw + gw / 2, top + ph + 19, 6.5, RP_CENTER, 0, MUTED, s);
    }
    return top + ph + 24;
}
