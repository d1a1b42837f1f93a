/* report_pdf_int.h — private to the PDF writer: the page/cursor state over libharu, text and
 * table primitives (report_pdf.c) used by the section writers (report_pdf_sections.c). */
#ifndef NY_REPORT_PDF_INT_H
#define NY_REPORT_PDF_INT_H

#include <hpdf.h>

#include "report_int.h"

#define PDF_W 595.276
#define PDF_H 841.89
#define PDF_ML 48.0
#define PDF_MR 48.0
#define PDF_MT 56.0
#define PDF_MB 62.0
#define PDF_CW (PDF_W - PDF_ML - PDF_MR)

enum pdf_face { PDF_REGULAR, PDF_BOLD, PDF_MONO };

struct pdf {
    HPDF_Doc doc;
    HPDF_Font font[3];
    HPDF_Page *pages;
    size_t npages, cap;
    HPDF_Page page;
    double y;              /* cursor from the top of the page, points */
    const struct rp_doc *d;
    int failed;            /* first libharu error seen (0 = none) */
    unsigned long hpdf_err, hpdf_detail;
    double ox, oy;         /* canvas origin for charts */
    size_t row;            /* rows drawn since the last table header (zebra stripes) */
    const struct pdf_table *table; /* the table being drawn, for repeated headers */
    char font_sha[3][65];  /* SHA-256 of the embedded font files, for the manifest */
};

/* One table: column titles and widths (points; summing to at most PDF_CW) and alignments. */
struct pdf_table {
    size_t ncol;
    const char *const *head;
    const double *w;
    const enum rp_anchor *align;
    double size; /* font size */
};

void pdf_new_page(struct pdf *p);
/* Start a new page unless h points remain above the bottom margin. */
void pdf_need(struct pdf *p, double h);
double pdf_width(struct pdf *p, enum pdf_face f, double size, const char *s);
/* Draw one line of text (baseline at y from the top); control characters become spaces. */
void pdf_text(struct pdf *p, double x, double y, double size, enum pdf_face f, uint32_t color,
              const char *s);
/* Wrap s to width; returns the number of lines, each a heap string in *lines (free with
 * pdf_lines_free). Returns 0 and *lines NULL on OOM. */
size_t pdf_wrap(struct pdf *p, enum pdf_face f, double size, const char *s, double width,
                char ***lines);
void pdf_lines_free(char **lines, size_t n);
/* A wrapped paragraph at the cursor; advances the cursor. */
void pdf_para(struct pdf *p, double x, double width, double size, enum pdf_face f,
              uint32_t color, const char *s);
void pdf_heading(struct pdf *p, const char *s);
void pdf_subheading(struct pdf *p, const char *s);
void pdf_fill_rect(struct pdf *p, double x, double y, double w, double h, uint32_t color);
/* Table header at the cursor, and one row (cells wrap; the header is repeated on a new page).
 * colors may be NULL (all ink); bold marks the whole row. */
void pdf_table_head(struct pdf *p, const struct pdf_table *t);
void pdf_table_row(struct pdf *p, const struct pdf_table *t, const char *const *cells,
                   const uint32_t *colors, int bold);
/* A canvas drawing at (x, cursor) — charts use it. */
void pdf_canvas_init(struct pdf *p, struct rp_canvas *c, double x);

/* Sections (report_pdf_sections.c). */
void pdf_cover(struct pdf *p);
void pdf_summary(struct pdf *p);
void pdf_definitions(struct pdf *p);
void pdf_charts(struct pdf *p);
void pdf_gates(struct pdf *p);
void pdf_errors(struct pdf *p);
void pdf_validity(struct pdf *p);
void pdf_manifest(struct pdf *p);

#endif /* NY_REPORT_PDF_INT_H */
