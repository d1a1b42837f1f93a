/* outputs.c — the CI outputs of a run, all rendered from results.json: junit.xml (one test case
 * per gate), summary.md (also appended to $GITHUB_STEP_SUMMARY) and, through reports/, report.pdf
 * and report.html. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#if HARNESS_HAVE_REPORTS
#include "reports.h"
#endif

void harness_xml_escape(struct ny_buf *b, const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; p && *p; p++) {
        switch (*p) {
        case '&': ny_buf_puts(b, "&amp;"); break;
        case '<': ny_buf_puts(b, "&lt;"); break;
        case '>': ny_buf_puts(b, "&gt;"); break;
        case '"': ny_buf_puts(b, "&quot;"); break;
        case '\'': ny_buf_puts(b, "&apos;"); break;
        default:
            /* XML 1.0 forbids most control characters even as references: drop them, keep
             * tab and newline. */
            if (*p < 0x20 && *p != '\t' && *p != '\n')
                ny_buf_puts(b, "?");
            else
                ny_buf_append(b, p, 1);
        }
    }
}

/* A JSON value for people: numbers with 4 significant digits, arrays in brackets. */
static void human_value(struct ny_buf *b, json_t *v)
{
    if (json_is_number(v)) {
        ny_buf_printf(b, "%.4g", json_number_value(v));
    } else if (json_is_string(v)) {
        ny_buf_puts(b, json_string_value(v));
    } else if (json_is_array(v)) {
        ny_buf_puts(b, "[");
        for (size_t i = 0; i < json_array_size(v); i++) {
            if (i)
                ny_buf_puts(b, ", ");
            human_value(b, json_array_get(v, i));
        }
        ny_buf_puts(b, "]");
    } else if (json_is_boolean(v)) {
        ny_buf_puts(b, json_is_true(v) ? "true" : "false");
    } else {
        ny_buf_puts(b, "null");
    }
}

/* Evidence object as "key=value; ..." in sorted key order (heap string, ny_free). */
static char *evidence_text(json_t *ev)
{
    struct ny_buf b;
    ny_buf_init(&b);
    ny_buf_puts(&b, "");
    const char **keys = ny_calloc(json_object_size(ev) + 1, sizeof *keys);
    size_t n = 0;
    const char *k;
    json_t *v;
    json_object_foreach(ev, k, v) {
        (void)v;
        if (keys)
            keys[n++] = k;
    }
    for (size_t i = 1; i < n; i++) /* insertion sort: a handful of keys */
        for (size_t j = i; j > 0 && strcmp(keys[j - 1], keys[j]) > 0; j--) {
            const char *t = keys[j];
            keys[j] = keys[j - 1];
            keys[j - 1] = t;
        }
    for (size_t i = 0; i < n; i++) {
        ny_buf_printf(&b, "%s%s=", i ? "; " : "", keys[i]);
        human_value(&b, json_object_get(ev, keys[i]));
    }
    ny_free(keys);
    return ny_buf_take(&b);
}

static const char *str_at(json_t *o, const char *key, const char *dflt)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s ? s : dflt;
}

int harness_junit_render(struct json_t *results, char **out, struct ny_err *err)
{
    json_t *gates = json_object_get(results, "gates");
    json_t *run = json_object_get(results, "run");
    if (!json_is_array(gates) || !json_is_object(run))
        return NY_ERR(err, NY_E_FORMAT, "results: \"gates\" or \"run\" missing");
    size_t n = json_array_size(gates), fails = 0;
    for (size_t i = 0; i < n; i++)
        fails += strcmp(str_at(json_array_get(gates, i), "verdict", ""), "pass") != 0;
    struct ny_buf b;
    ny_buf_init(&b);
    ny_buf_printf(&b, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                      "<testsuites name=\"nyxaudit\" tests=\"%zu\" failures=\"%zu\">\n"
                      "  <testsuite name=\"nyxaudit.gates\" tests=\"%zu\" failures=\"%zu\" "
                      "errors=\"0\" skipped=\"0\" timestamp=\"",
                  n, fails, n, fails);
    harness_xml_escape(&b, str_at(run, "started", ""));
    ny_buf_puts(&b, "\">\n    <properties>\n");
    static const char *const props[] = {"id", "dataset", "split", "release"};
    for (size_t i = 0; i < 4; i++) {
        ny_buf_printf(&b, "      <property name=\"%s\" value=\"", props[i]);
        harness_xml_escape(&b, str_at(run, props[i], ""));
        ny_buf_puts(&b, "\"/>\n");
    }
    ny_buf_printf(&b, "      <property name=\"n\" value=\"%lld\"/>\n",
                  (long long)json_integer_value(json_object_get(run, "n")));
    ny_buf_puts(&b, "    </properties>\n");
    for (size_t i = 0; i < n; i++) {
        json_t *g = json_array_get(gates, i);
        ny_buf_puts(&b, "    <testcase classname=\"nyxaudit.gates.");
        harness_xml_escape(&b, str_at(g, "checkpoint", ""));
        ny_buf_puts(&b, "\" name=\"");
        harness_xml_escape(&b, str_at(g, "name", ""));
        ny_buf_puts(&b, "\" time=\"0\">\n      <system-out>");
        char *ev = evidence_text(json_object_get(g, "evidence"));
        harness_xml_escape(&b, str_at(g, "rule", ""));
        ny_buf_puts(&b, "\nevidence: ");
        harness_xml_escape(&b, ev ? ev : "null");
        ny_buf_puts(&b, "</system-out>\n");
        if (strcmp(str_at(g, "verdict", ""), "pass")) {
            ny_buf_puts(&b, "      <failure type=\"gate\" message=\"");
            harness_xml_escape(&b, str_at(g, "rule", ""));
            ny_buf_puts(&b, "\">");
            harness_xml_escape(&b, ev ? ev : "null");
            ny_buf_puts(&b, "</failure>\n");
        }
        ny_free(ev);
        ny_buf_puts(&b, "    </testcase>\n");
    }
    ny_buf_puts(&b, "  </testsuite>\n</testsuites>\n");
    if (b.failed) {
        ny_buf_fini(&b);
        return NY_ERR(err, NY_E_NOMEM, "junit.xml: out of memory");
    }
    *out = ny_buf_take(&b);
    return NY_OK;
}

/* Markdown table cells must not break the table: '|' and newlines are escaped. */
static void md_cell(struct ny_buf *b, const char *s)
{
    for (; s && *s; s++) {
        if (*s == '|')
            ny_buf_puts(b, "\\|");
        else if (*s == '\n' || *s == '\r')
            ny_buf_puts(b, " ");
        else
            ny_buf_append(b, s, 1);
    }
}

static void md_value(struct ny_buf *b, json_t *m)
{
    json_t *v = json_object_get(m, "value"), *ci = json_object_get(m, "ci95");
    if (!json_is_number(v)) {
        ny_buf_puts(b, "–");
        return;
    }
    ny_buf_printf(b, "%.3f", json_number_value(v));
    if (json_array_size(ci) == 2)
        ny_buf_printf(b, " [%.3f, %.3f]", json_number_value(json_array_get(ci, 0)),
                      json_number_value(json_array_get(ci, 1)));
}

static const char *const summary_metrics[] = {
    "cpt_exact", "cpt_primary", "modifier_exact", "icd_exact", "icd_any_overlap",
    "icd_root_overlap", "icd_recall", "icd_precision", "all_three_exact", "icd_micro_precision",
    "icd_micro_recall", "icd_micro_f1", NULL};
static const char *const summary_rates[] = {"icd_invalid", "icd_nonbillable", "cpt_invalid",
                                            "modifier_invalid", NULL};

static void summary_metrics_table(struct ny_buf *b, json_t *ckpts, json_t *models)
{
    ny_buf_puts(b, "\n## Metrics (95% intervals)\n\n| metric |");
    for (size_t j = 0; j < json_array_size(ckpts); j++) {
        ny_buf_puts(b, " ");
        md_cell(b, str_at(json_array_get(ckpts, j), "label", "?"));
        ny_buf_puts(b, " |");
    }
    ny_buf_puts(b, "\n|---|");
    for (size_t j = 0; j < json_array_size(ckpts); j++)
        ny_buf_puts(b, "---|");
    ny_buf_puts(b, "\n");
    for (size_t i = 0; summary_metrics[i]; i++) {
        ny_buf_printf(b, "| %s |", summary_metrics[i]);
        for (size_t j = 0; j < json_array_size(ckpts); j++) {
            json_t *mo = json_object_get(models, str_at(json_array_get(ckpts, j), "label", ""));
            ny_buf_puts(b, " ");
            md_value(b, json_object_get(json_object_get(mo, "metrics"), summary_metrics[i]));
            ny_buf_puts(b, " |");
        }
        ny_buf_puts(b, "\n");
    }
    for (size_t i = 0; summary_rates[i]; i++) {
        ny_buf_printf(b, "| %s (rate) |", summary_rates[i]);
        for (size_t j = 0; j < json_array_size(ckpts); j++) {
            json_t *mo = json_object_get(models, str_at(json_array_get(ckpts, j), "label", ""));
            json_t *v = json_object_get(json_object_get(mo, "validity"), summary_rates[i]);
            if (json_is_number(v))
                ny_buf_printf(b, " %.4f |", json_number_value(v));
            else
                ny_buf_puts(b, " – |");
        }
        ny_buf_puts(b, "\n");
    }
}

/* Paired comparisons of each candidate against the baseline, oriented candidate − baseline. */
static void summary_comparisons(struct ny_buf *b, json_t *ckpts, json_t *comps)
{
    const char *base = NULL;
    for (size_t j = 0; j < json_array_size(ckpts); j++)
        if (json_is_true(json_object_get(json_array_get(ckpts, j), "baseline")))
            base = str_at(json_array_get(ckpts, j), "label", NULL);
    if (!base || json_array_size(comps) == 0)
        return;
    ny_buf_puts(b, "\n## Paired comparisons with the baseline `");
    md_cell(b, base);
    ny_buf_puts(b, "`\n\n| candidate | metric | delta | 95% CI | McNemar p |\n"
                   "|---|---|---|---|---|\n");
    for (size_t i = 0; i < json_array_size(comps); i++) {
        json_t *c = json_array_get(comps, i), *ci = json_object_get(c, "ci95");
        const char *a = str_at(c, "a", ""), *bb = str_at(c, "b", "");
        int fwd = !strcmp(a, base);
        if (!fwd && strcmp(bb, base))
            continue;
        double s = fwd ? 1.0 : -1.0;
        double lo = json_number_value(json_array_get(ci, fwd ? 0 : 1)) * s;
        double hi = json_number_value(json_array_get(ci, fwd ? 1 : 0)) * s;
        ny_buf_puts(b, "| ");
        md_cell(b, fwd ? bb : a);
        ny_buf_printf(b, " | %s | %+.3f | [%+.3f, %+.3f] | %.3g |\n", str_at(c, "metric", ""),
                      s * json_number_value(json_object_get(c, "delta")), lo, hi,
                      json_number_value(json_object_get(c, "mcnemar_p")));
    }
}

static void summary_gates(struct ny_buf *b, json_t *gates)
{
    ny_buf_puts(b, "\n## Release gates\n\n");
    if (json_array_size(gates) == 0) {
        ny_buf_puts(b, "No gates configured.\n");
        return;
    }
    ny_buf_puts(b, "| gate | checkpoint | rule | evidence | verdict |\n|---|---|---|---|---|\n");
    for (size_t i = 0; i < json_array_size(gates); i++) {
        json_t *g = json_array_get(gates, i);
        char *ev = evidence_text(json_object_get(g, "evidence"));
        int pass = !strcmp(str_at(g, "verdict", ""), "pass");
        ny_buf_puts(b, "| ");
        md_cell(b, str_at(g, "name", ""));
        ny_buf_puts(b, " | ");
        md_cell(b, str_at(g, "checkpoint", ""));
        ny_buf_puts(b, " | ");
        md_cell(b, str_at(g, "rule", ""));
        ny_buf_puts(b, " | ");
        md_cell(b, ev ? ev : "null");
        ny_buf_printf(b, " | %s |\n", pass ? "✅ pass" : "❌ **fail**");
        ny_free(ev);
    }
}

int harness_summary_render(struct json_t *results, char **out, struct ny_err *err)
{
    json_t *run = json_object_get(results, "run");
    json_t *ckpts = json_object_get(results, "checkpoints");
    json_t *metrics = json_object_get(results, "metrics");
    json_t *man = json_object_get(results, "manifest");
    if (!json_is_object(run) || !json_is_array(ckpts) || !json_is_object(metrics))
        return NY_ERR(err, NY_E_FORMAT, "results: \"run\", \"checkpoints\" or \"metrics\" missing");
    int pass = !strcmp(str_at(results, "verdict", ""), "pass");
    struct ny_buf b;
    ny_buf_init(&b);
    ny_buf_printf(&b, "# NYXAudit release audit: %s\n\n", pass ? "PASS" : "FAIL");
    ny_buf_puts(&b, "Run `");
    md_cell(&b, str_at(run, "id", ""));
    ny_buf_puts(&b, "` · dataset ");
    md_cell(&b, str_at(run, "dataset", ""));
    ny_buf_puts(&b, ", split ");
    md_cell(&b, str_at(run, "split", ""));
    ny_buf_printf(&b, ", n = %lld, seed %lld · code set ",
                  (long long)json_integer_value(json_object_get(run, "n")),
                  (long long)json_integer_value(json_object_get(run, "seed")));
    md_cell(&b, str_at(run, "release", ""));
    ny_buf_puts(&b, " · started ");
    md_cell(&b, str_at(run, "started", ""));
    ny_buf_puts(&b, "\n\n## Checkpoints\n\n| checkpoint | role | model | adapter |\n"
                    "|---|---|---|---|\n");
    for (size_t j = 0; j < json_array_size(ckpts); j++) {
        json_t *c = json_array_get(ckpts, j);
        ny_buf_puts(&b, "| ");
        md_cell(&b, str_at(c, "label", ""));
        ny_buf_printf(&b, " | %s | ",
                      json_is_true(json_object_get(c, "baseline")) ? "baseline" : "candidate");
        md_cell(&b, str_at(c, "model", ""));
        ny_buf_puts(&b, " | ");
        md_cell(&b, str_at(c, "adapter", "–"));
        ny_buf_puts(&b, " |\n");
    }
    summary_metrics_table(&b, ckpts, json_object_get(metrics, "models"));
    summary_comparisons(&b, ckpts, json_object_get(metrics, "comparisons"));
    summary_gates(&b, json_object_get(results, "gates"));
    json_t *h = json_object_get(man, "harness"), *e = json_object_get(man, "engine");
    ny_buf_puts(&b, "\n## Provenance\n\nnyxaudit ");
    md_cell(&b, str_at(h, "version", "?"));
    ny_buf_puts(&b, " (commit ");
    md_cell(&b, str_at(h, "commit", "?"));
    ny_buf_puts(&b, ") · engine ");
    md_cell(&b, str_at(e, "backend", "?"));
    ny_buf_puts(&b, " · sampled ids sha256 `");
    md_cell(&b, str_at(man, "sample_ids_sha256", "?"));
    ny_buf_puts(&b, "`\n");
    if (b.failed) {
        ny_buf_fini(&b);
        return NY_ERR(err, NY_E_NOMEM, "summary.md: out of memory");
    }
    *out = ny_buf_take(&b);
    return NY_OK;
}

static int write_text(const char *dir, const char *name, const char *text, struct ny_err *err)
{
    char *p = ny_path_join(dir, name);
    if (!p)
        return NY_ERR(err, NY_E_NOMEM, "out of memory");
    int rc = ny_file_write_atomic(p, text, strlen(text), err);
    ny_free(p);
    return rc;
}

static int append_step_summary(const char *text, struct ny_err *err)
{
    const char *path = getenv("GITHUB_STEP_SUMMARY");
    if (!path || !path[0])
        return NY_OK;
    FILE *f = fopen(path, "a");
    if (!f)
        return NY_ERR(err, NY_E_IO, "$GITHUB_STEP_SUMMARY %s: cannot append", path);
    int ok = fputs(text, f) >= 0 && fputs("\n", f) >= 0;
    ok = (fclose(f) == 0) && ok;
    return ok ? NY_OK : NY_ERR(err, NY_E_IO, "$GITHUB_STEP_SUMMARY %s: write failed", path);
}

static int write_reports(struct json_t *results, const char *dir, struct ny_err *err)
{
#if HARNESS_HAVE_REPORTS
    char *pdf = ny_path_join(dir, "report.pdf"), *html = ny_path_join(dir, "report.html");
    int rc = pdf && html ? NY_OK : NY_ERR(err, NY_E_NOMEM, "out of memory");
    if (!rc && (rc = report_pdf_write(results, pdf, err)))
        ny_err_prefix(err, "writing report.pdf: ");
    if (!rc && (rc = report_html_write(results, html, err)))
        ny_err_prefix(err, "writing report.html: ");
    ny_free(pdf);
    ny_free(html);
    /* results.json is ours: a report refusing it is a bug between modules, not bad input. */
    if (rc == NY_E_FORMAT || rc == NY_E_INVALID) {
        rc = NY_E_INTERNAL;
        if (err)
            err->code = rc;
    }
    return rc;
#else
    (void)results;
    (void)dir;
    (void)err;
    return NY_OK;
#endif
}

int harness_outputs_write(struct json_t *results, const char *dir, struct ny_err *err)
{
    int rc = ny_mkdir_p(dir, err);
    if (rc)
        return rc;
    char *js = ny_json_dumps(results, 2), *junit = NULL, *md = NULL;
    if (!js)
        return NY_ERR(err, NY_E_NOMEM, "results.json: out of memory");
    size_t len = strlen(js);
    char *with_nl = ny_reallocarray(js, len + 2, 1);
    if (!with_nl) {
        ny_free(js);
        return NY_ERR(err, NY_E_NOMEM, "results.json: out of memory");
    }
    js = with_nl;
    memcpy(js + len, "\n", 2);
    /* Everything is rendered before anything is written, and results.json goes last: a run
     * whose outputs fail leaves no results.json claiming it is complete. */
    if (!(rc = harness_junit_render(results, &junit, err)) &&
        !(rc = harness_summary_render(results, &md, err)) &&
        !(rc = write_reports(results, dir, err)) &&
        !(rc = write_text(dir, "junit.xml", junit, err)) &&
        !(rc = write_text(dir, "summary.md", md, err)) &&
        !(rc = write_text(dir, "results.json", js, err)))
        rc = append_step_summary(md, err);
    ny_free(js);
    ny_free(junit);
    ny_free(md);
    return rc;
}
