/* report_pdf_manifest.c — the PDF's reproducibility manifest: the hashed files, then every other
 * manifest field flattened to "path: value" rows (keys sorted), then the results hash. */
#include <stdlib.h>
#include <string.h>

#include "report_pdf_int.h"

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Keys of an object, sorted (heap array; NULL on OOM or when empty). */
static const char **sorted_keys(const json_t *o, size_t *n)
{
    *n = json_object_size(o);
    const char **k = ny_calloc(*n ? *n : 1, sizeof *k);
    if (!k)
        return NULL;
    size_t i = 0;
    const char *key;
    const json_t *v;
    json_object_foreach((json_t *)o, key, v) k[i++] = key;
    qsort(k, *n, sizeof *k, cmp_str);
    return k;
}

static void kv_row(struct pdf *p, const struct pdf_table *t, const char *path, const json_t *v)
{
    char val[2048];
    rp_fmt_json_scalar(val, sizeof val, v, path);
    const char *cells[2] = {path, val};
    pdf_table_row(p, t, cells, NULL, 0);
}

/* Depth-first rows for v under path; depth capped against hostile nesting. */
static void flatten(struct pdf *p, const struct pdf_table *t, const char *path, const json_t *v,
                    int depth)
{
    char sub[512];
    if (depth > 8) {
        const char *cells[2] = {path, "(nested too deep)"};
        pdf_table_row(p, t, cells, NULL, 0);
        return;
    }
    if (json_is_object(v)) {
        size_t n;
        const char **k = sorted_keys(v, &n);
        if (!k) {
            p->failed = 1;
            return;
        }
        if (n == 0)
            kv_row(p, t, path, v);
        for (size_t i = 0; i < n; i++) {
            snprintf(sub, sizeof sub, "%s%s%.200s", path, *path ? "." : "", k[i]);
            flatten(p, t, sub, json_object_get(v, k[i]), depth + 1);
        }
        ny_free(k);
        return;
    }
    if (json_is_array(v)) {
        int scalars = 1;
        for (size_t i = 0; i < json_array_size(v); i++)
            scalars &= !json_is_object(json_array_get(v, i)) && !json_is_array(json_array_get(v, i));
        if (scalars) {
            kv_row(p, t, path, v);
            return;
        }
        for (size_t i = 0; i < json_array_size(v); i++) {
            snprintf(sub, sizeof sub, "%s[%zu]", path, i);
            flatten(p, t, sub, json_array_get(v, i), depth + 1);
        }
        return;
    }
    kv_row(p, t, path, v);
}

static void files_table(struct pdf *p, const json_t *files)
{
    static const char *const head[] = {"File", "Bytes", "SHA-256"};
    static const double w[] = {150, 52, 297};
    static const enum rp_anchor al[] = {RP_LEFT, RP_RIGHT, RP_LEFT};
    const struct pdf_table t = {3, head, w, al, 7};
    pdf_subheading(p, "Hashed input files");
    pdf_table_head(p, &t);
    for (size_t i = 0; i < json_array_size(files); i++) {
        const json_t *f = json_array_get(files, i);
        char path[600], bytes[64], sha[200];
        rp_fmt_json_scalar(path, sizeof path, json_object_get(f, "path") ? json_object_get(f, "path") : json_null(), "path");
        rp_fmt_json_scalar(bytes, sizeof bytes, json_object_get(f, "bytes") ? json_object_get(f, "bytes") : json_null(), "bytes");
        rp_fmt_json_scalar(sha, sizeof sha, json_object_get(f, "sha256") ? json_object_get(f, "sha256") : json_null(), "sha256");
        const char *cells[3] = {path, bytes, sha};
        pdf_table_row(p, &t, cells, NULL, 0);
    }
}

void pdf_manifest(struct pdf *p)
{
    const struct rp_doc *d = p->d;
    static const char *const head[] = {"Field", "Value"};
    static const double w[] = {175, 324};
    static const enum rp_anchor al[] = {RP_LEFT, RP_LEFT};
    const struct pdf_table t = {2, head, w, al, 7.5};
    pdf_heading(p, "Reproducibility manifest");
    pdf_para(p, PDF_ML, PDF_CW, 8.5, PDF_REGULAR, 0x666666,
             "Everything needed to reproduce this run: the exact weights, records, prompts, "
             "code set, decoding settings and program. `nyxaudit verify` rechecks these hashes. "
             "The SHA-256 in every page footer is that of results.json in its canonical form "
             "(keys sorted, compact), which identifies this report's source.");
    const json_t *files = json_object_get(d->manifest, "files");
    int has_files = json_is_array(files) && json_array_size(files) > 0;
    for (size_t i = 0; has_files && i < json_array_size(files); i++)
        has_files &= json_is_object(json_array_get(files, i));
    if (has_files)
        files_table(p, files);
    pdf_subheading(p, "Run, checkpoints and settings");
    pdf_table_head(p, &t);
    const char *cells[2];
    char n[64];
    cells[0] = "run.id";
    cells[1] = d->run_id;
    pdf_table_row(p, &t, cells, NULL, 0);
    for (size_t i = 0; i < d->nck; i++) {
        char k[200], v[1200];
        snprintf(k, sizeof k, "checkpoint %s%s", d->ck[i].label,
                 d->ck[i].baseline ? " (baseline)" : "");
        snprintf(v, sizeof v, "model %s; adapter %s", d->ck[i].model,
                 d->ck[i].adapter ? d->ck[i].adapter : "(none)");
        cells[0] = k;
        cells[1] = v;
        pdf_table_row(p, &t, cells, NULL, 0);
    }
    snprintf(n, sizeof n, "%lld", (long long)d->seed);
    cells[0] = "run.seed";
    cells[1] = n;
    pdf_table_row(p, &t, cells, NULL, 0);
    size_t nk;
    const char **k = sorted_keys(d->manifest, &nk);
    if (!k) {
        p->failed = 1;
        return;
    }
    for (size_t i = 0; i < nk; i++)
        if (!(has_files && !strcmp(k[i], "files")))
            flatten(p, &t, k[i], json_object_get(d->manifest, k[i]), 0);
    ny_free(k);
    cells[0] = "results.json SHA-256 (canonical)";
    cells[1] = d->sha;
    pdf_table_row(p, &t, cells, NULL, 1);
}
