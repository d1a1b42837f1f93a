/* report_pdf_manifest.c — the PDF's reproducibility manifest: the hashed files, then every other
 * manifest field flattened to "path: value" rows (keys sorted), then the results hash. */
#include <string.h>

#include "report_pdf_int.h"

struct row_ctx {
    struct pdf *p;
    const struct pdf_table *t;
};

static void kv_row(void *ctx, const char *path, const char *value)
{
    struct row_ctx *c = ctx;
    const char *cells[2] = {path, value};
    pdf_table_row(c->p, c->t, cells, NULL, 0);
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
        char path[600], bytes[64], sha[200];
        rp_file_fields(json_array_get(files, i), path, sizeof path, bytes, sizeof bytes, sha,
                       sizeof sha);
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
             "code set, decoding settings and program; `nyxaudit verify` rechecks these hashes. "
             "The SHA-256 in every page footer is that of results.json in its canonical form "
             "(keys sorted, compact), which identifies this report's source.");
    int has_files = rp_manifest_files_ok(d->manifest);
    if (has_files)
        files_table(p, json_object_get(d->manifest, "files"));
    pdf_subheading(p, "Run, checkpoints and settings");
    pdf_table_head(p, &t);
    struct row_ctx rc = {p, &t};
    char n[64];
    kv_row(&rc, "run.id", d->run_id);
    for (size_t i = 0; i < d->nck; i++) {
        char k[200], v[1200];
        snprintf(k, sizeof k, "checkpoint %s%s", d->ck[i].label,
                 d->ck[i].baseline ? " (baseline)" : "");
        snprintf(v, sizeof v, "model %s; adapter %s", d->ck[i].model,
                 d->ck[i].adapter ? d->ck[i].adapter : "(none)");
        kv_row(&rc, k, v);
    }
    snprintf(n, sizeof n, "%lld", (long long)d->seed);
    kv_row(&rc, "run.seed", n);
    if (rp_walk(d->manifest, has_files ? "files" : NULL, kv_row, &rc))
        p->failed = 1;
    /* What made this file: the same results, fonts and libharu give the same bytes. */
    static const char *const fonts[3] = {"DejaVuSans.ttf", "DejaVuSans-Bold.ttf",
                                         "DejaVuSansMono.ttf"};
    for (int i = 0; i < 3; i++) {
        char k[80];
        snprintf(k, sizeof k, "report font %s SHA-256", fonts[i]);
        kv_row(&rc, k, p->font_sha[i]);
    }
    char writer[120];
    snprintf(writer, sizeof writer, "NYXAudit %s, libharu %s", ny_version(), HPDF_GetVersion());
    kv_row(&rc, "report writer", writer);
    const char *cells[2] = {"results.json SHA-256 (canonical)", d->sha};
    pdf_table_row(p, &t, cells, NULL, 1);
}
