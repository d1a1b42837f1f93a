/* report_html_records.c — the dashboard's per-record table (sortable; filters for checkpoint
 * disagreements, modality and CPT) and the reproducibility manifest. */
#include <stdlib.h>
#include <string.h>

#include "report_html_int.h"

static int str_cmp(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Sorted distinct modalities of the records (heap array of borrowed strings). */
static const char **modalities(const struct rp_doc *d, size_t *n)
{
    const char **m = ny_calloc(d->nrec ? d->nrec : 1, sizeof *m);
    *n = 0;
    if (!m)
        return NULL;
    for (size_t i = 0; i < d->nrec; i++)
        if (d->rec[i].modality)
            m[(*n)++] = d->rec[i].modality;
    qsort(m, *n, sizeof *m, str_cmp);
    size_t k = 0;
    for (size_t i = 0; i < *n; i++)
        if (k == 0 || strcmp(m[k - 1], m[i]))
            m[k++] = m[i];
    *n = k;
    return m;
}

static void filters(struct ny_buf *b, const struct rp_doc *d)
{
    size_t nm;
    const char **m = modalities(d, &nm);
    if (!m) {
        b->failed = 1;
        return;
    }
    ny_buf_puts(b, "<div class=\"filters\"><label><input type=\"checkbox\" id=\"f-dis\"> "
                   "checkpoint disagreements only</label><label>Modality <select id=\"f-mod\">"
                   "<option value=\"\">all</option>");
    for (size_t i = 0; i < nm; i++) {
        ny_buf_puts(b, "<option value=\"");
        html_text(b, m[i]);
        ny_buf_puts(b, "\">");
        html_text(b, m[i]);
        ny_buf_puts(b, "</option>");
    }
    ny_buf_puts(b, "</select></label><label>Wrong vs gold <select id=\"f-wrong\">"
                   "<option value=\"\">all records</option>");
    for (size_t i = 0; i < d->nck; i++) {
        ny_buf_printf(b, "<option value=\"%zu\">", i);
        html_text(b, d->ck[i].label);
        ny_buf_puts(b, "</option>");
    }
    ny_buf_puts(b, "</select></label><label>Primary CPT <input id=\"f-cpt\" size=\"8\" "
                   "placeholder=\"e.g. 74177\"></label><span id=\"f-count\"></span></div>\n");
    ny_free(m);
}

void html_records(struct ny_buf *b, const struct rp_doc *d)
{
    ny_buf_puts(b, "<h2 id=\"records-h\">Records</h2>\n<p class=\"note\">One row per record scored. Red: the "
                   "prediction's code set differs from gold (spaces, order and case ignored). "
                   "Click a column to sort.");
    if (!d->allow_text)
        ny_buf_puts(b, " Report excerpts are not shown: reports are PHI and this run does not "
                       "allow report text (run.allow_report_text is false).");
    ny_buf_puts(b, "</p>\n");
    filters(b, d);
    ny_buf_puts(b, "<div class=\"scroll\"><table id=\"records\"><thead><tr><th>Record</th><th>Modality</th>"
                   "<th>Primary CPT</th><th>Gold</th>");
    for (size_t i = 0; i < d->nck; i++)
        html_el(b, "th", NULL, d->ck[i].label);
    if (d->allow_text)
        ny_buf_puts(b, "<th>Report excerpt</th>");
    ny_buf_puts(b, "</tr></thead><tbody>\n");
    for (size_t r = 0; r < d->nrec; r++) {
        const struct rp_record *x = &d->rec[r];
        ny_buf_printf(b, "<tr data-dis=\"%d\" data-wrong=\"", x->disagree ? 1 : 0);
        for (size_t i = 0; i < d->nck; i++) /* ",0,2," lists the checkpoints wrong vs gold */
            if (x->wrong[i])
                ny_buf_printf(b, ",%zu", i);
        ny_buf_puts(b, ",\" data-mod=\"");
        html_text(b, x->modality ? x->modality : "");
        ny_buf_puts(b, "\" data-cpt=\"");
        html_text(b, x->primary_cpt ? x->primary_cpt : "");
        ny_buf_puts(b, "\">");
        html_el(b, "td", "mono id", x->id);
        html_el(b, "td", NULL, x->modality ? x->modality : "");
        html_el(b, "td", "mono", x->primary_cpt ? x->primary_cpt : "");
        html_el(b, "td", "mono", x->gold);
        for (size_t i = 0; i < d->nck; i++)
            html_el(b, "td", x->wrong[i] ? "mono wrong" : "mono",
                    x->pred[i] ? x->pred[i] : "(no output)");
        if (d->allow_text)
            html_el(b, "td", NULL, x->excerpt ? x->excerpt : "");
        ny_buf_puts(b, "</tr>\n");
    }
    ny_buf_puts(b, "</tbody></table></div>\n");
}

static void kv_row(void *ctx, const char *path, const char *value)
{
    struct ny_buf *b = ctx;
    ny_buf_puts(b, "<tr>");
    html_el(b, "td", NULL, path);
    html_el(b, "td", "mono", value);
    ny_buf_puts(b, "</tr>\n");
}

void html_manifest(struct ny_buf *b, const struct rp_doc *d)
{
    ny_buf_puts(b, "<h2 id=\"manifest\">Reproducibility manifest</h2>\n<p class=\"note\">Everything needed to "
                   "reproduce this run: the exact weights, records, prompts, code set, decoding "
                   "settings and program; <code>nyxaudit verify</code> rechecks these hashes. "
                   "The SHA-256 in the footer is that of results.json in its canonical form "
                   "(keys sorted, compact).</p>\n");
    int has_files = rp_manifest_files_ok(d->manifest);
    if (has_files) {
        const json_t *files = json_object_get(d->manifest, "files");
        ny_buf_puts(b, "<h3>Hashed input files</h3>\n<table><thead><tr><th>File</th>"
                       "<th class=\"num\">Bytes</th><th>SHA-256</th></tr></thead><tbody>\n");
        for (size_t i = 0; i < json_array_size(files); i++) {
            char path[600], bytes[64], sha[200];
            rp_file_fields(json_array_get(files, i), path, sizeof path, bytes, sizeof bytes, sha,
                           sizeof sha);
            ny_buf_puts(b, "<tr>");
            html_el(b, "td", "mono", path);
            html_el(b, "td", "num", bytes);
            html_el(b, "td", "mono", sha);
            ny_buf_puts(b, "</tr>\n");
        }
        ny_buf_puts(b, "</tbody></table>\n");
    }
    ny_buf_puts(b, "<h3>Run, checkpoints and settings</h3>\n<table><thead><tr><th>Field</th>"
                   "<th>Value</th></tr></thead><tbody>\n");
    char n[64];
    kv_row(b, "run.id", d->run_id);
    for (size_t i = 0; i < d->nck; i++) {
        char k[200], v[1200];
        snprintf(k, sizeof k, "checkpoint %s%s", d->ck[i].label,
                 d->ck[i].baseline ? " (baseline)" : "");
        snprintf(v, sizeof v, "model %s; adapter %s", d->ck[i].model,
                 d->ck[i].adapter ? d->ck[i].adapter : "(none)");
        kv_row(b, k, v);
    }
    snprintf(n, sizeof n, "%lld", (long long)d->seed);
    kv_row(b, "run.seed", n);
    if (rp_walk(d->manifest, has_files ? "files" : NULL, kv_row, b))
        b->failed = 1;
    kv_row(b, "results.json SHA-256 (canonical)", d->sha);
    ny_buf_puts(b, "</tbody></table>\n");
}
