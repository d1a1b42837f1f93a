/* report_html_int.h — private to the HTML writers: page skeleton, escaped cells, SVG charts
 * (report_html.c) and the dashboard sections (report_html_sections.c). */
#ifndef NY_REPORT_HTML_INT_H
#define NY_REPORT_HTML_INT_H

#include "report_int.h"

/* Charts are laid out at the PDF's scale (points) and shown 1.6 times larger. */
#define HTML_CHART_W 550.0
#define HTML_CHART_SCALE 1.6

/* <!DOCTYPE ...><head> with the inline stylesheet and a Content-Security-Policy that forbids any
 * network fetch; opens <body><main>. title is escaped. */
void html_head(struct ny_buf *b, const char *title);
/* Footer with the results SHA-256 (NULL for none), the optional inline script, </body></html>. */
void html_tail(struct ny_buf *b, const char *sha, const char *script);
/* Escaped text. */
void html_text(struct ny_buf *b, const char *s);
/* <tag class="cls">escaped text</tag>; cls may be NULL. */
void html_el(struct ny_buf *b, const char *tag, const char *cls, const char *text);
/* An inline <svg> of width w holding what draw() paints on the canvas; draw returns the height. */
typedef double (*html_draw_fn)(const struct rp_doc *d, const struct rp_canvas *c, double w,
                               const void *arg);
void html_svg(struct ny_buf *b, const struct rp_doc *d, double w, html_draw_fn draw,
              const void *arg, const char *label, int legend);
void html_svg_canvas(struct rp_canvas *c, struct ny_buf *b);

void html_cover(struct ny_buf *b, const struct rp_doc *d);
void html_summary(struct ny_buf *b, const struct rp_doc *d);
void html_definitions(struct ny_buf *b);
void html_charts(struct ny_buf *b, const struct rp_doc *d);
void html_gates(struct ny_buf *b, const struct rp_doc *d);
void html_errors(struct ny_buf *b, const struct rp_doc *d);
void html_validity(struct ny_buf *b, const struct rp_doc *d);
void html_records(struct ny_buf *b, const struct rp_doc *d);
void html_manifest(struct ny_buf *b, const struct rp_doc *d);
extern const char html_records_script[];

#endif /* NY_REPORT_HTML_INT_H */
