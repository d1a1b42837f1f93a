/* report_pdf.c — the PDF writer's machinery over libharu: document set-up (embedded DejaVu,
 * UTF-8, compression, fixed dates), page cursor, wrapped text, tables, the chart canvas, page
 * footers, and report_pdf_write, which lays out the sections and writes the file atomically. */
#include <stdlib.h>
#include <string.h>

#include <hpdf_objects.h>
#include <hpdf_streams.h>

#include "report_pdf_int.h"

#define FONT_DIR_DEFAULT "/usr/share/fonts/truetype/dejavu"
#define INK 0x222222u
#define HEAD_BG 0x2f3b4cu

static void on_hpdf_error(HPDF_STATUS e, HPDF_STATUS detail, void *user)
{
    struct pdf *p = user;
    if (!p->failed) {
        p->failed = 1;
        p->hpdf_err = (unsigned long)e;
        p->hpdf_detail = (unsigned long)detail;
    }
}

static void set_fill(HPDF_Page pg, uint32_t c)
{
    HPDF_Page_SetRGBFill(pg, (float)((c >> 16) & 255) / 255.0f, (float)((c >> 8) & 255) / 255.0f,
                         (float)(c & 255) / 255.0f);
}

static void set_stroke(HPDF_Page pg, uint32_t c)
{
    HPDF_Page_SetRGBStroke(pg, (float)((c >> 16) & 255) / 255.0f,
                           (float)((c >> 8) & 255) / 255.0f, (float)(c & 255) / 255.0f);
}

void pdf_new_page(struct pdf *p)
{
    if (p->npages == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 16;
        HPDF_Page *np = ny_reallocarray(p->pages, cap, sizeof *np);
        if (!np) {
            p->failed = 1;
            return;
        }
        p->pages = np;
        p->cap = cap;
    }
    p->page = HPDF_AddPage(p->doc);
    if (!p->page) {
        p->failed = 1;
        return;
    }
    HPDF_Page_SetSize(p->page, HPDF_PAGE_SIZE_A4, HPDF_PAGE_PORTRAIT);
    p->pages[p->npages++] = p->page;
    p->y = PDF_MT;
}

void pdf_need(struct pdf *p, double h)
{
    if (p->y + h > PDF_H - PDF_MB)
        pdf_new_page(p);
}

/* Copy of s with invalid UTF-8 as '?' and control characters as spaces (heap; NULL on OOM). */
static char *clean(const char *s)
{
    size_t len = strlen(s), o = 0;
    char *out = ny_malloc(len + 1);
    if (!out)
        return NULL;
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        int k = ny_utf8_decode(s + i, len - i, &cp);
        if (k <= 0) {
            out[o++] = '?';
            i++;
        } else if (cp < 0x20 || cp == 0x7f) {
            out[o++] = ' ';
            i += (size_t)k;
        } else {
            memcpy(out + o, s + i, (size_t)k);
            o += (size_t)k;
            i += (size_t)k;
        }
    }
    out[o] = 0;
    return out;
}

double pdf_width(struct pdf *p, enum pdf_face f, double size, const char *s)
{
    if (!*s)
        return 0;
    HPDF_TextWidth tw = HPDF_Font_TextWidth(p->font[f], (const HPDF_BYTE *)s, (HPDF_UINT)strlen(s));
    return tw.width * size / 1000.0;
}

void pdf_text(struct pdf *p, double x, double y, double size, enum pdf_face f, uint32_t color,
              const char *s)
{
    char *c = clean(s);
    if (!c) {
        p->failed = 1;
        return;
    }
    if (*c) {
        HPDF_Page_BeginText(p->page);
        HPDF_Page_SetFontAndSize(p->page, p->font[f], (HPDF_REAL)size);
        set_fill(p->page, color);
        HPDF_Page_TextOut(p->page, (HPDF_REAL)x, (HPDF_REAL)(PDF_H - y), c);
        HPDF_Page_EndText(p->page);
    }
    ny_free(c);
}

void pdf_lines_free(char **lines, size_t n)
{
    for (size_t i = 0; lines && i < n; i++)
        ny_free(lines[i]);
    ny_free(lines);
}

/* Byte length of the longest prefix of s[0..len) (whole code points, at least one) that fits. */
static size_t fit_prefix(struct pdf *p, enum pdf_face f, double size, const char *s, size_t len,
                         double width)
{
    size_t best = 0, i = 0;
    char tmp[1024];
    while (i < len) {
        uint32_t cp;
        int k = ny_utf8_decode(s + i, len - i, &cp);
        size_t ni = i + (size_t)(k > 0 ? k : 1);
        if (ni >= sizeof tmp)
            break;
        memcpy(tmp, s, ni);
        tmp[ni] = 0;
        if (pdf_width(p, f, size, tmp) > width && best)
            break;
        best = ni;
        i = ni;
    }
    return best ? best : (len ? 1 : 0);
}

size_t pdf_wrap(struct pdf *p, enum pdf_face f, double size, const char *s, double width,
                char ***lines)
{
    char *c = clean(s);
    size_t n = 0, cap = 8;
    char **out = ny_calloc(cap, sizeof *out);
    *lines = NULL;
    if (!c || !out) {
        ny_free(c);
        ny_free(out);
        return 0;
    }
    struct ny_buf cur;
    ny_buf_init(&cur);
    const char *q = c;
    int ok = 1;
    while (ok) {
        while (*q == ' ')
            q++;
        const char *e = q;
        while (*e && *e != ' ')
            e++;
        if (e == q && !*q)
            break;
        size_t wl = (size_t)(e - q);
        /* Try appending the word to the current line. */
        size_t mark = cur.len;
        if (cur.len)
            ny_buf_puts(&cur, " ");
        ny_buf_append(&cur, q, wl);
        if (cur.failed) {
            ok = 0;
            break;
        }
        if (pdf_width(p, f, size, cur.data) <= width) {
            q = e;
            continue;
        }
        cur.len = mark;
        cur.data[mark] = 0;
        if (mark == 0) { /* a word wider than the line: split it */
            wl = fit_prefix(p, f, size, q, wl, width);
            ny_buf_append(&cur, q, wl);
            q += wl;
        }
        if (n + 1 >= cap) {
            char **nl = ny_reallocarray(out, cap * 2, sizeof *out);
            if (!nl) {
                ok = 0;
                break;
            }
            out = nl;
            cap *= 2;
        }
        out[n++] = ny_buf_take(&cur);
        ny_buf_init(&cur);
    }
    if (ok && (cur.len || n == 0)) {
        if (n + 1 >= cap) {
            char **nl = ny_reallocarray(out, cap * 2, sizeof *out);
            ok = nl != NULL;
            out = nl ? nl : out;
        }
        if (ok)
            out[n++] = ny_buf_take(&cur);
    }
    ny_buf_fini(&cur);
    ny_free(c);
    for (size_t i = 0; i < n; i++)
        ok &= out[i] != NULL;
    if (!ok) {
        pdf_lines_free(out, n);
        p->failed = 1;
        return 0;
    }
    *lines = out;
    return n;
}

void pdf_para(struct pdf *p, double x, double width, double size, enum pdf_face f,
              uint32_t color, const char *s)
{
    char **lines;
    size_t n = pdf_wrap(p, f, size, s, width, &lines);
    double lead = size * 1.35;
    for (size_t i = 0; i < n; i++) {
        pdf_need(p, lead);
        p->y += lead;
        pdf_text(p, x, p->y - size * 0.3, size, f, color, lines[i]);
    }
    pdf_lines_free(lines, n);
}

/* A bookmark (outline entry) for the section starting at the cursor; titles are ASCII. */
static void pdf_bookmark(struct pdf *p, const char *title)
{
    char t[120];
    size_t o = 0;
    for (; *title && o + 1 < sizeof t; title++)
        t[o++] = (*title >= 0x20 && *title < 0x7f) ? *title : ' ';
    t[o] = 0;
    HPDF_Outline ol = HPDF_CreateOutline(p->doc, NULL, t, NULL);
    HPDF_Destination dst = HPDF_Page_CreateDestination(p->page);
    if (!ol || !dst) {
        p->failed = 1;
        return;
    }
    HPDF_Destination_SetFitH(dst, (HPDF_REAL)(PDF_H - p->y + 4));
    HPDF_Outline_SetDestination(ol, dst);
}

void pdf_heading(struct pdf *p, const char *s)
{
    pdf_need(p, 130); /* keep a heading with its note, a table header and a few rows */
    pdf_bookmark(p, s);
    p->y += 22;
    pdf_text(p, PDF_ML, p->y, 15, PDF_BOLD, HEAD_BG, s);
    p->y += 5;
    pdf_fill_rect(p, PDF_ML, p->y, PDF_CW, 1.2, HEAD_BG);
    p->y += 8;
}

void pdf_subheading(struct pdf *p, const char *s)
{
    pdf_need(p, 90); /* keep a subheading with at least a table header and a few rows */
    p->y += 16;
    pdf_text(p, PDF_ML, p->y, 10.5, PDF_BOLD, INK, s);
    p->y += 6;
}

void pdf_fill_rect(struct pdf *p, double x, double y, double w, double h, uint32_t color)
{
    set_fill(p->page, color);
    HPDF_Page_Rectangle(p->page, (HPDF_REAL)x, (HPDF_REAL)(PDF_H - y - h), (HPDF_REAL)w,
                        (HPDF_REAL)h);
    HPDF_Page_Fill(p->page);
}

/* ---- tables ------------------------------------------------------------------------------------ */

#define CELL_PAD 3.0
#define MAX_CELL_LINES 40

/* Wrapped lines of each cell and the row height. */
static double row_layout(struct pdf *p, const struct pdf_table *t, const char *const *cells,
                         enum pdf_face f, char ***lines, size_t *nl)
{
    size_t most = 1;
    for (size_t i = 0; i < t->ncol; i++) {
        nl[i] = pdf_wrap(p, f, t->size, cells[i] ? cells[i] : "", t->w[i] - 2 * CELL_PAD,
                         &lines[i]);
        if (nl[i] > MAX_CELL_LINES) {
            for (size_t k = MAX_CELL_LINES; k < nl[i]; k++)
                ny_free(lines[i][k]);
            nl[i] = MAX_CELL_LINES;
        }
        if (nl[i] > most)
            most = nl[i];
    }
    return (double)most * t->size * 1.3 + 2 * CELL_PAD;
}

static void row_draw(struct pdf *p, const struct pdf_table *t, char ***lines, const size_t *nl,
                     double h, const uint32_t *colors, enum pdf_face f, uint32_t bg)
{
    double x = PDF_ML;
    if (bg != 0xffffff)
        pdf_fill_rect(p, PDF_ML, p->y, PDF_CW, h, bg);
    for (size_t i = 0; i < t->ncol; i++) {
        for (size_t k = 0; k < nl[i]; k++) {
            double ty = p->y + CELL_PAD + t->size * (1.3 * (double)k + 1.0);
            double tx = x + CELL_PAD;
            if (t->align && t->align[i] != RP_LEFT) {
                double tw = pdf_width(p, f, t->size, lines[i][k]);
                double room = t->w[i] - 2 * CELL_PAD;
                tx += t->align[i] == RP_RIGHT ? room - tw : (room - tw) / 2;
            }
            pdf_text(p, tx, ty, t->size, f, colors ? colors[i] : INK, lines[i][k]);
        }
        x += t->w[i];
    }
    p->y += h;
}

static void table_row_at(struct pdf *p, const struct pdf_table *t, const char *const *cells,
                         const uint32_t *colors, enum pdf_face f, uint32_t bg, int header)
{
    char **lines[16] = {0};
    size_t nl[16] = {0};
    if (t->ncol > 16) {
        p->failed = 1;
        return;
    }
    double h = row_layout(p, t, cells, f, lines, nl);
    if (!header && p->y + h > PDF_H - PDF_MB) {
        pdf_new_page(p);
        pdf_table_head(p, t);
        bg = 0xffffff;
    }
    row_draw(p, t, lines, nl, h, colors, f, bg);
    for (size_t i = 0; i < t->ncol; i++)
        pdf_lines_free(lines[i], nl[i]);
}

void pdf_table_head(struct pdf *p, const struct pdf_table *t)
{
    uint32_t white[16];
    for (size_t i = 0; i < 16; i++)
        white[i] = 0xffffff;
    pdf_need(p, 60);
    p->table = t;
    p->row = 0;
    table_row_at(p, t, t->head, white, PDF_BOLD, HEAD_BG, 1);
}

void pdf_table_row(struct pdf *p, const struct pdf_table *t, const char *const *cells,
                   const uint32_t *colors, int bold)
{
    uint32_t bg = (p->row++ % 2) ? 0xf1f3f6 : 0xffffff;
    table_row_at(p, t, cells, colors, bold ? PDF_BOLD : PDF_REGULAR, bg, 0);
}

/* ---- chart canvas ------------------------------------------------------------------------------ */

static void cv_rect(void *ctx, double x, double y, double w, double h, uint32_t fill)
{
    struct pdf *p = ctx;
    pdf_fill_rect(p, p->ox + x, p->oy + y, w, h, fill);
}

static void cv_line(void *ctx, double x1, double y1, double x2, double y2, double width,
                    uint32_t color, int dashed)
{
    struct pdf *p = ctx;
    static const HPDF_UINT16 dash[] = {2, 2};
    HPDF_Page_SetLineWidth(p->page, (HPDF_REAL)width);
    set_stroke(p->page, color);
    HPDF_Page_SetDash(p->page, dashed ? dash : NULL, dashed ? 2 : 0, 0);
    HPDF_Page_MoveTo(p->page, (HPDF_REAL)(p->ox + x1), (HPDF_REAL)(PDF_H - p->oy - y1));
    HPDF_Page_LineTo(p->page, (HPDF_REAL)(p->ox + x2), (HPDF_REAL)(PDF_H - p->oy - y2));
    HPDF_Page_Stroke(p->page);
    if (dashed)
        HPDF_Page_SetDash(p->page, NULL, 0, 0);
}

static void cv_text(void *ctx, double x, double y, double size, enum rp_anchor anchor, int bold,
                    uint32_t color, const char *s)
{
    struct pdf *p = ctx;
    enum pdf_face f = bold ? PDF_BOLD : PDF_REGULAR;
    double w = anchor == RP_LEFT ? 0 : pdf_width(p, f, size, s);
    double dx = anchor == RP_RIGHT ? -w : anchor == RP_CENTER ? -w / 2 : 0;
    pdf_text(p, p->ox + x + dx, p->oy + y, size, f, color, s);
}

static double cv_width(void *ctx, double size, int bold, const char *s)
{
    return pdf_width(ctx, bold ? PDF_BOLD : PDF_REGULAR, size, s);
}

void pdf_canvas_init(struct pdf *p, struct rp_canvas *c, double x)
{
    p->ox = x;
    p->oy = p->y;
    c->ctx = p;
    c->rect = cv_rect;
    c->line = cv_line;
    c->text = cv_text;
    c->text_width = cv_width;
}

/* ---- document ---------------------------------------------------------------------------------- */

static void footers(struct pdf *p)
{
    char s[160];
    for (size_t i = 0; i < p->npages; i++) {
        p->page = p->pages[i];
        double y = PDF_H - 34;
        pdf_fill_rect(p, PDF_ML, y - 10, PDF_CW, 0.5, 0x999999);
        const char *lab = "results.json SHA-256 ";
        pdf_text(p, PDF_ML, y, 6.5, PDF_REGULAR, 0x555555, lab);
        pdf_text(p, PDF_ML + pdf_width(p, PDF_REGULAR, 6.5, lab), y, 6.5, PDF_MONO, 0x555555,
                 p->d->sha);
        snprintf(s, sizeof s, "page %zu of %zu", i + 1, p->npages);
        pdf_text(p, PDF_W - PDF_MR - pdf_width(p, PDF_REGULAR, 7.5, s), y, 7.5, PDF_REGULAR, INK,
                 s);
        snprintf(s, sizeof s, "NYXAudit \xc2\xb7 run %.60s", p->d->run_id);
        pdf_text(p, PDF_ML, 34, 7, PDF_REGULAR, 0x777777, s);
        pdf_fill_rect(p, PDF_ML, 38, PDF_CW, 0.5, 0x999999);
    }
}

/* run.started as a PDF date: "YYYY-MM-DDTHH:MM:SS[.fff](Z|±HH:MM)". */
static int parse_date(const char *s, HPDF_Date *out)
{
    int Y, M, D, h, m, sec, n = 0;
    if (sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%n", &Y, &M, &D, &h, &m, &sec, &n) != 6 || n != 19)
        return -1;
    if (M < 1 || M > 12 || D < 1 || D > 31 || h > 23 || m > 59 || sec > 60 || Y < 1 || Y > 9999)
        return -1;
    HPDF_Date d = {Y, M, D, h, m, sec > 59 ? 59 : sec, 'Z', 0, 0};
    const char *r = s + 19;
    if (*r == '.')
        for (r++; *r >= '0' && *r <= '9'; r++)
            ;
    int oh, om, k = 0;
    if (*r == 'Z' && !r[1])
        ;
    else if ((*r == '+' || *r == '-') && sscanf(r + 1, "%2d:%2d%n", &oh, &om, &k) == 2 &&
             k == 5 && !r[6] && oh <= 23 && om <= 59) {
        d.ind = *r;
        d.off_hour = oh;
        d.off_minutes = om;
    } else
        return -1;
    *out = d;
    return 0;
}

/* Info strings are PDFDocEncoding in libharu: keep them printable ASCII. */
static void ascii_copy(char *out, size_t cap, const char *s)
{
    size_t o = 0;
    for (; *s && o + 1 < cap; s++)
        out[o++] = (*s >= 0x20 && *s < 0x7f) ? *s : '?';
    out[o] = 0;
}

/* libharu 2.3.0 gives UTF-8 TrueType fonts a ToUnicode CMap written as an encoding CMap
 * ("begincidrange", every code to CID 0): poppler warns "Invalid 'begincidrange' operator" and
 * text extraction falls back to guessing. The codes libharu's UTF-8 encoder writes are the
 * characters' BMP code points, so the correct ToUnicode is the identity: rewrite the stream's
 * contents with 248 bfranges (surrogates excluded), at most 100 per block as the CMap format
 * requires. Uses libharu's installed object API (hpdf_objects.h, hpdf_streams.h). A libharu
 * without that stream is left as it is. */
static int fix_to_unicode(HPDF_Font font)
{
    HPDF_Dict cmap = HPDF_Dict_GetItem(font, "ToUnicode", HPDF_OCLASS_DICT);
    if (!cmap || !cmap->stream)
        return 0;
    struct ny_buf b;
    ny_buf_init(&b);
    ny_buf_puts(&b, "/CIDInit /ProcSet findresource begin\n12 dict begin\nbegincmap\n"
                    "/CIDSystemInfo << /Registry (Adobe) /Ordering (UCS) /Supplement 0 >> def\n"
                    "/CMapName /Adobe-Identity-UCS def\n/CMapType 2 def\n"
                    "1 begincodespacerange\n<0000> <FFFF>\nendcodespacerange\n");
    int hi[248], n = 0;
    for (int h = 0; h < 256; h++)
        if (h < 0xd8 || h > 0xdf)
            hi[n++] = h;
    for (int i = 0; i < n; i += 100) {
        int k = n - i < 100 ? n - i : 100;
        ny_buf_printf(&b, "%d beginbfrange\n", k);
        for (int j = i; j < i + k; j++)
            ny_buf_printf(&b, "<%02X00> <%02XFF> <%02X00>\n", hi[j], hi[j], hi[j]);
        ny_buf_puts(&b, "endbfrange\n");
    }
    ny_buf_puts(&b, "endcmap\nCMapName currentdict /CMap defineresource pop\nend\nend\n");
    int rc = b.failed ? NY_E_NOMEM : 0;
    if (!rc) {
        HPDF_MemStream_FreeData(cmap->stream);
        if (HPDF_Stream_Write(cmap->stream, (const HPDF_BYTE *)b.data, (HPDF_UINT)b.len) !=
            HPDF_OK)
            rc = NY_E_INTERNAL;
    }
    ny_buf_fini(&b);
    return rc;
}

static int set_up(struct pdf *p, struct ny_err *err)
{
    const char *dir = getenv("NYXAUDIT_FONT_DIR");
    static const char *const files[3] = {"DejaVuSans.ttf", "DejaVuSans-Bold.ttf",
                                         "DejaVuSansMono.ttf"};
    if (!dir || !*dir)
        dir = FONT_DIR_DEFAULT;
    HPDF_Date date;
    if (parse_date(p->d->started, &date))
        return NY_ERR(err, NY_E_FORMAT,
                      "results: results.run.started: \"%s\" is not an ISO 8601 time "
                      "(YYYY-MM-DDTHH:MM:SSZ)", p->d->started);
    p->doc = HPDF_New(on_hpdf_error, p);
    if (!p->doc)
        return NY_ERR(err, NY_E_NOMEM, "pdf: cannot create the document");
    HPDF_SetCompressionMode(p->doc, HPDF_COMP_ALL);
    HPDF_UseUTFEncodings(p->doc);
    for (int i = 0; i < 3; i++) {
        char *path = ny_path_join(dir, files[i]);
        if (!path)
            return NY_ERR(err, NY_E_NOMEM, "pdf: out of memory");
        if (!ny_file_exists(path)) {
            int rc = NY_ERR(err, NY_E_NOTFOUND,
                            "pdf: font %s not found (install fonts-dejavu-core or set "
                            "NYXAUDIT_FONT_DIR)", path);
            ny_free(path);
            return rc;
        }
        int hrc = ny_sha256_file(path, p->font_sha[i], err);
        const char *name = hrc ? NULL : HPDF_LoadTTFontFromFile(p->doc, path, HPDF_TRUE);
        ny_free(path);
        if (hrc)
            return hrc;
        p->font[i] = name ? HPDF_GetFont(p->doc, name, "UTF-8") : NULL;
        if (!p->font[i])
            return NY_ERR(err, NY_E_INTERNAL, "pdf: libharu cannot load %s/%s (error 0x%04lX)",
                          dir, files[i], p->hpdf_err);
        if (fix_to_unicode(p->font[i]))
            return NY_ERR(err, NY_E_INTERNAL, "pdf: cannot write the ToUnicode map of %s",
                          files[i]);
    }
    char title[200];
    ascii_copy(title, sizeof title, p->d->run_id);
    char full[260];
    snprintf(full, sizeof full, "NYXAudit release audit, run %s", title);
    HPDF_SetInfoAttr(p->doc, HPDF_INFO_TITLE, full);
    HPDF_SetInfoAttr(p->doc, HPDF_INFO_CREATOR, "NYXAudit " NY_VERSION);
    HPDF_SetInfoAttr(p->doc, HPDF_INFO_SUBJECT, "Release audit of radiology coding checkpoints");
    HPDF_SetInfoDateAttr(p->doc, HPDF_INFO_CREATION_DATE, date);
    HPDF_SetInfoDateAttr(p->doc, HPDF_INFO_MOD_DATE, date);
    HPDF_SetPageMode(p->doc, HPDF_PAGE_MODE_USE_OUTLINE);
    if (p->failed)
        return NY_ERR(err, NY_E_INTERNAL, "pdf: libharu error 0x%04lX (detail %lu) in set-up",
                      p->hpdf_err, p->hpdf_detail);
    return 0;
}

static int render(struct pdf *p, struct ny_buf *out, struct ny_err *err)
{
    int rc = set_up(p, err);
    if (rc)
        return rc;
    pdf_new_page(p);
    pdf_bookmark(p, "Release verdict");
    pdf_cover(p);
    pdf_new_page(p);
    pdf_summary(p);
    pdf_definitions(p);
    pdf_charts(p);
    pdf_gates(p);
    pdf_errors(p);
    pdf_validity(p);
    pdf_manifest(p);
    footers(p);
    if (!p->failed)
        HPDF_SaveToStream(p->doc);
    if (p->failed)
        return NY_ERR(err, NY_E_INTERNAL, "pdf: libharu error 0x%04lX (detail %lu)",
                      p->hpdf_err, p->hpdf_detail);
    HPDF_UINT32 size = HPDF_GetStreamSize(p->doc);
    char *buf = ny_malloc(size ? size : 1);
    if (!buf)
        return NY_ERR(err, NY_E_NOMEM, "pdf: out of memory (%lu bytes)", (unsigned long)size);
    HPDF_UINT32 got = size;
    HPDF_STATUS st = HPDF_ReadFromStream(p->doc, (HPDF_BYTE *)buf, &got);
    if ((st != HPDF_OK && st != HPDF_STREAM_EOF) || got != size) {
        ny_free(buf);
        return NY_ERR(err, NY_E_INTERNAL, "pdf: cannot read the document back (0x%04lX)",
                      (unsigned long)st);
    }
    ny_buf_append(out, buf, size);
    ny_free(buf);
    return out->failed ? NY_ERR(err, NY_E_NOMEM, "pdf: out of memory") : 0;
}

int report_pdf_write(const json_t *results, const char *path, struct ny_err *err)
{
    struct rp_doc d;
    int rc = rp_doc_load(&d, results, err);
    if (rc)
        return rc;
    struct pdf p;
    memset(&p, 0, sizeof p);
    p.d = &d;
    struct ny_buf out;
    ny_buf_init(&out);
    rc = render(&p, &out, err);
    if (!rc)
        rc = ny_file_write_atomic(path, out.data, out.len, err);
    ny_buf_fini(&out);
    if (p.doc)
        HPDF_Free(p.doc);
    ny_free(p.pages);
    rp_doc_fini(&d);
    return rc;
}
