/* report_fmt.c — the metric glossary (plain words, issue #3), number formatting shared by the PDF
 * and HTML writers, the one HTML escape, and code-line normalisation for disagreement flags. */
#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "report_int.h"

const struct rp_metric_info rp_metrics[RP_NMETRICS] = {
    {"cpt_exact", "CPT exact",
     "Share of records whose set of predicted CPT procedure codes is exactly the gold set "
     "(order does not matter).", 1, 1},
    {"cpt_primary", "Primary CPT",
     "Share of records whose first predicted CPT code is the first gold CPT code (a record with "
     "no CPT code on either side counts as a match).", 1, 1},
    {"modifier_exact", "Modifiers exact",
     "Share of records whose set of predicted modifiers (such as 26 or TC) is exactly the gold "
     "set; no modifier on either side counts as a match.", 1, 1},
    {"icd_exact", "ICD exact",
     "Share of records whose set of predicted ICD-10-CM diagnosis codes is exactly the gold set.",
     1, 1},
    {"icd_any_overlap", "ICD any overlap",
     "Share of records where at least one predicted ICD-10-CM code is also a gold code (or both "
     "sides have none).", 1, 1},
    {"icd_root_overlap", "ICD category overlap",
     "Share of records where a predicted and a gold ICD-10-CM code share their 3-character "
     "category, as M25.5 and M25.511 do (or both sides have none).", 1, 1},
    {"icd_recall", "ICD recall",
     "For each record, the share of its gold ICD codes that were predicted (1 when neither side "
     "has a code, 0 when codes were predicted for a record that has none), averaged over "
     "records.", 0, 1},
    {"icd_precision", "ICD precision",
     "For each record, the share of its predicted ICD codes that are gold codes (1 when neither "
     "side has a code, 0 when none was predicted but gold has some), averaged over records.", 0,
     1},
    {"all_three_exact", "All three exact",
     "Share of records where CPT codes, modifiers and ICD codes are all exactly right: the "
     "record would be billed exactly as the gold coder billed it.", 1, 1},
    {"icd_micro_precision", "ICD micro precision",
     "All predicted ICD codes of all records pooled together: the share that are gold codes of "
     "their record.", 0, 0},
    {"icd_micro_recall", "ICD micro recall",
     "All gold ICD codes of all records pooled together: the share that were predicted.", 0, 0},
    {"icd_micro_f1", "ICD micro F1",
     "The harmonic mean of ICD micro precision and ICD micro recall: high only when both are "
     "high.", 0, 0},
};

const char *const rp_method_notes[] = {
    "95% interval: a range computed from the records scored so that, over repeated samples of "
    "the same size, 95% of such ranges contain the true value; the narrower, the more precise "
    "the figure. Yes/no metrics use the Wilson score interval; ICD recall and precision use a "
    "percentile bootstrap over records with a fixed seed, so the interval is reproducible. The "
    "ICD micro metrics pool all codes and are shown without an interval.",
    "Delta: the candidate's value minus the baseline's on the same records, in percentage points "
    "(pp). Its interval is Newcombe's interval for paired proportions; an interval that does not "
    "include 0 marks a real difference.",
    "McNemar p: the exact two-sided test on the records where exactly one of the two checkpoints "
    "is right. Below 0.05 the difference is unlikely to be chance.",
    "Holm p: the McNemar p adjusted for the number of comparisons made (Holm's step-down method) "
    "so that many tests do not raise false alarms. Cochran's Q asks whether three or more "
    "checkpoints differ at all on a yes/no metric.",
    "Validity: the share of all predicted codes that are not in the code-set release "
    "(invalid) and of ICD codes that are category headers, which cannot be billed "
    "(non-billable). Format errors count records whose output line had an unreadable token.",
    NULL,
};

const char *const rp_validity_keys[RP_NVALIDITY] = {"icd_invalid", "icd_nonbillable",
                                                    "cpt_invalid", "modifier_invalid"};
const char *const rp_validity_names[RP_NVALIDITY] = {"ICD invalid", "ICD non-billable",
                                                     "CPT invalid", "Modifier invalid"};
const char *const rp_taxonomy_keys[RP_NTAXONOMY] = {"specificity", "wrong_category",
                                                    "hallucinated", "missed"};
const char *const rp_taxonomy_names[RP_NTAXONOMY] = {
    "Specificity (right category, wrong detail)", "Wrong category",
    "Hallucinated (code not in release)", "Missed (gold code not predicted)"};

int rp_metric_index(const char *key)
{
    for (int i = 0; i < RP_NMETRICS; i++)
        if (!strcmp(rp_metrics[i].key, key))
            return i;
    return -1;
}

/* One decimal of x, with -0.0 shown as 0.0. */
static double tidy(double x)
{
    return fabs(x) < 0.05 ? 0.0 : x;
}

void rp_fmt_pct(char *out, size_t cap, double v)
{
    if (!isfinite(v))
        snprintf(out, cap, "n/a");
    else
        snprintf(out, cap, "%.1f%%", tidy(v * 100.0));
}

void rp_fmt_value(char *out, size_t cap, const struct rp_value *v)
{
    if (!v->has_ci || !isfinite(v->lo) || !isfinite(v->hi)) {
        rp_fmt_pct(out, cap, v->v);
        return;
    }
    snprintf(out, cap, "%.1f%% [%.1f, %.1f]", tidy(v->v * 100.0), tidy(v->lo * 100.0),
             tidy(v->hi * 100.0));
}

/* Signed percentage points with a true minus sign (U+2212). */
static void signed_pp(char *out, size_t cap, double d)
{
    double x = tidy(d * 100.0);
    if (x < 0)
        snprintf(out, cap, "\xe2\x88\x92%.1f", -x);
    else if (x > 0)
        snprintf(out, cap, "+%.1f", x);
    else
        snprintf(out, cap, "0.0");
}

void rp_fmt_pp(char *out, size_t cap, double d)
{
    char s[32];
    signed_pp(s, sizeof s, d);
    snprintf(out, cap, "%s pp", s);
}

void rp_fmt_pp_ci(char *out, size_t cap, double lo, double hi)
{
    char a[32], b[32];
    signed_pp(a, sizeof a, lo);
    signed_pp(b, sizeof b, hi);
    snprintf(out, cap, "[%s, %s]", a, b);
}

void rp_fmt_p(char *out, size_t cap, double p)
{
    if (!isfinite(p))
        snprintf(out, cap, "n/a");
    else if (p < 0.001)
        snprintf(out, cap, "< 0.001");
    else if (p < 0.01)
        snprintf(out, cap, "%.3f", p);
    else
        snprintf(out, cap, "%.2f", p);
}

void rp_fmt_json_scalar(char *out, size_t cap, const json_t *v, const char *key)
{
    (void)key;
    switch (json_typeof(v)) {
    case JSON_STRING: snprintf(out, cap, "%s", json_string_value(v)); break;
    case JSON_INTEGER: snprintf(out, cap, "%lld", (long long)json_integer_value(v)); break;
    case JSON_REAL: snprintf(out, cap, "%.6g", json_real_value(v)); break;
    case JSON_TRUE: snprintf(out, cap, "true"); break;
    case JSON_FALSE: snprintf(out, cap, "false"); break;
    case JSON_NULL: snprintf(out, cap, "(none)"); break;
    case JSON_ARRAY: {
        size_t used = 0;
        out[0] = 0;
        for (size_t i = 0; i < json_array_size(v) && used + 8 < cap; i++) {
            char item[256];
            const json_t *e = json_array_get(v, i);
            if (json_is_object(e) || json_is_array(e))
                snprintf(item, sizeof item, "...");
            else
                rp_fmt_json_scalar(item, sizeof item, e, key);
            int k = snprintf(out + used, cap - used, "%s%s", i ? ", " : "", item);
            used += k > 0 ? (size_t)k : 0;
            if (used >= cap)
                used = cap - 1;
        }
        break;
    }
    default: snprintf(out, cap, "{...}"); break;
    }
}

/* Evidence keys in reading order: the figure first, then its interval, then the rest by name. */
static int key_rank(const char *k)
{
    static const char *const first[] = {"value", "delta", "ci95", NULL};
    for (int i = 0; first[i]; i++)
        if (!strcmp(k, first[i]))
            return i;
    return 10;
}

static int key_cmp(const void *a, const void *b)
{
    const char *x = *(const char *const *)a, *y = *(const char *const *)b;
    int rx = key_rank(x), ry = key_rank(y);
    return rx != ry ? rx - ry : strcmp(x, y);
}

/* Keys whose numbers are proportions (printed as percentages) or p-values. */
static int is_prop_key(const char *k)
{
    static const char *const keys[] = {"value", "delta", "lower", "upper", "lo", "hi",
                                       "threshold", "margin", "floor", "ceiling", "limit",
                                       "baseline", "candidate", "ci95", "bound", NULL};
    for (int i = 0; keys[i]; i++)
        if (!strcmp(k, keys[i]))
            return 1;
    return 0;
}

static void fmt_evidence_value(char *out, size_t cap, const char *k, const json_t *v)
{
    int p = strstr(k, "p_") == k || !strcmp(k, "p") || strstr(k, "_p") != NULL;
    if (json_is_number(v) && p)
        rp_fmt_p(out, cap, json_number_value(v));
    else if (json_is_number(v) && is_prop_key(k)) {
        if (!strcmp(k, "delta") || !strcmp(k, "margin"))
            rp_fmt_pp(out, cap, json_number_value(v));
        else
            rp_fmt_pct(out, cap, json_number_value(v));
    } else if (json_is_array(v) && json_array_size(v) == 2 && is_prop_key(k) &&
               json_is_number(json_array_get(v, 0)) && json_is_number(json_array_get(v, 1))) {
        char a[32], b[32];
        rp_fmt_pct(a, sizeof a, json_number_value(json_array_get(v, 0)));
        rp_fmt_pct(b, sizeof b, json_number_value(json_array_get(v, 1)));
        snprintf(out, cap, "[%s, %s]", a, b);
    } else
        rp_fmt_json_scalar(out, cap, v, k);
}

int rp_fmt_evidence(struct ny_buf *b, const json_t *evidence)
{
    size_t n = json_object_size(evidence), i = 0;
    const char **keys = ny_calloc(n ? n : 1, sizeof *keys);
    if (!keys)
        return NY_E_NOMEM;
    const char *k;
    const json_t *v;
    json_object_foreach((json_t *)evidence, k, v) keys[i++] = k;
    qsort(keys, n, sizeof *keys, key_cmp);
    for (i = 0; i < n; i++) {
        char s[512];
        fmt_evidence_value(s, sizeof s, keys[i], json_object_get(evidence, keys[i]));
        ny_buf_printf(b, "%s%s %s", i ? "; " : "", keys[i], s);
    }
    if (!n)
        ny_buf_puts(b, "(none)");
    ny_free(keys);
    return b->failed ? NY_E_NOMEM : 0;
}

static int str_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

char *rp_codes_norm(const char *line)
{
    size_t len = strlen(line);
    /* Each token is copied as its letters and digits plus a NUL: at most len + 1 bytes in all. */
    char *work = ny_malloc(len + 1), **tok = ny_calloc(len / 2 + 2, sizeof *tok);
    if (!work || !tok) {
        ny_free(work);
        ny_free(tok);
        return NULL;
    }
    size_t nt = 0, w = 0, start = 0;
    for (size_t i = 0; i <= len; i++) {
        unsigned char c = (unsigned char)line[i];
        if (c == 0 || c == ',' || isspace(c)) {
            if (w > start) {
                work[w++] = 0;
                tok[nt++] = work + start;
                start = w;
            }
        } else if (isalnum(c))
            work[w++] = (char)toupper(c);
    }
    qsort(tok, nt, sizeof *tok, str_cmp);
    struct ny_buf out;
    ny_buf_init(&out);
    ny_buf_puts(&out, "");
    for (size_t i = 0; i < nt; i++)
        if (i == 0 || strcmp(tok[i], tok[i - 1]))
            ny_buf_printf(&out, "%s%s", i ? " " : "", tok[i]);
    ny_free(tok);
    ny_free(work);
    if (out.failed) {
        ny_buf_fini(&out);
        return NULL;
    }
    return ny_buf_take(&out);
}

int rp_html_escape(struct ny_buf *b, const char *s)
{
    /* Markup characters become entities; bytes that are not well-formed UTF-8 (a string cut by a
     * fixed-size buffer, say) and control characters other than tab and newline become U+FFFD, so
     * the page stays valid UTF-8 whatever it is given. */
    size_t len = strlen(s), run = 0, i = 0;
    while (i < len) {
        uint32_t cp = 0;
        int k = ny_utf8_decode(s + i, len - i, &cp);
        const char *rep = NULL;
        if (k <= 0) { /* one U+FFFD for a bad byte and the continuation bytes after it */
            rep = "\xef\xbf\xbd";
            k = 1;
            while (i + (size_t)k < len && ((unsigned char)s[i + (size_t)k] & 0xc0) == 0x80)
                k++;
        } else if ((cp < 0x20 && cp != '\t' && cp != '\n') || cp == 0x7f)
            rep = "\xef\xbf\xbd";
        else if (cp == '&')
            rep = "&amp;";
        else if (cp == '<')
            rep = "&lt;";
        else if (cp == '>')
            rep = "&gt;";
        else if (cp == '"')
            rep = "&quot;";
        else if (cp == '\'')
            rep = "&#39;";
        if (rep) {
            ny_buf_append(b, s + run, i - run);
            ny_buf_puts(b, rep);
            run = i + (size_t)k;
        }
        i += (size_t)k;
    }
    ny_buf_append(b, s + run, len - run);
    return b->failed ? NY_E_NOMEM : 0;
}
