/* report_html.c — the HTML machinery: page skeleton and stylesheet, escaped elements, the SVG
 * chart canvas, the records table script, and report_html_write. */
#include <math.h>
#include <string.h>

#include "report_html_int.h"

static const char css[] =
    "*{box-sizing:border-box}"
    "body{margin:0;font:14px/1.45 'DejaVu Sans',Verdana,Arial,sans-serif;color:#222;"
    "background:#f4f5f7}"
    "main{max-width:1180px;margin:0 auto;padding:24px 32px 48px;background:#fff}"
    "h1{font-size:26px;margin:8px 0 2px;color:#2f3b4c}"
    "h2{font-size:19px;color:#2f3b4c;border-bottom:2px solid #2f3b4c;padding-bottom:3px;"
    "margin:34px 0 10px}"
    "h3{font-size:15px;margin:20px 0 6px}"
    ".sub{color:#666;margin:0 0 14px}.note{color:#666;font-size:12.5px;margin:4px 0 8px}"
    ".verdict{padding:14px 20px;color:#fff;border-radius:4px;margin:12px 0}"
    ".verdict b{font-size:26px;display:block}.pass{background:#1b7f3b}.fail{background:#b3261e}"
    "dl.kv{display:grid;grid-template-columns:190px 1fr;gap:3px 12px;margin:10px 0}"
    "dl.kv dt{font-weight:bold}dl.kv dd{margin:0}"
    "table{border-collapse:collapse;margin:6px 0 10px;font-size:12.5px}"
    "th{background:#2f3b4c;color:#fff;text-align:left;padding:5px 8px;font-weight:bold}"
    "td{padding:4px 8px;border-bottom:1px solid #e3e6ea;vertical-align:top}"
    "tbody tr:nth-child(even){background:#f6f7f9}"
    "td.num,th.num{text-align:right;white-space:nowrap}"
    ".good{color:#1b7f3b;font-weight:bold}.bad{color:#b3261e;font-weight:bold}.muted{color:#777}"
    "td.wrong{color:#b3261e}code,.mono{font-family:'DejaVu Sans Mono',monospace;font-size:12px}"
    "td.mono{overflow-wrap:anywhere}td.id{white-space:nowrap}"
    "svg{display:block;max-width:100%;height:auto;margin:4px 0 12px}"
    "svg text{font-family:'DejaVu Sans',Verdana,Arial,sans-serif}"
    ".defs dt{font-weight:bold;margin-top:6px}.defs dd{margin:0 0 0 18px}"
    ".filters{display:flex;gap:18px;align-items:center;flex-wrap:wrap;padding:8px 10px;"
    "background:#eef1f5;border-radius:4px}"
    "#records th{cursor:pointer;user-select:none}"
    "#records th[data-dir=asc]::after{content:' \\25B2'}"
    "#records th[data-dir=desc]::after{content:' \\25BC'}"
    "nav{display:flex;flex-wrap:wrap;gap:4px 16px;margin:0 0 8px;font-size:13px}"
    "nav a{color:#2f3b4c}.scroll{overflow-x:auto}"
    "footer{margin-top:40px;color:#666;font-size:12px;border-top:1px solid #ccc;"
    "padding-top:8px}";

const char html_records_script[] =
    "(function(){\n"
    "var t=document.getElementById('records');if(!t)return;var body=t.tBodies[0];\n"
    "var dis=document.getElementById('f-dis'),mod=document.getElementById('f-mod'),\n"
    "cpt=document.getElementById('f-cpt'),cnt=document.getElementById('f-count'),\n"
    "wr=document.getElementById('f-wrong');\n"
    "function apply(){var n=0,q=cpt.value.trim().toUpperCase();\n"
    "for(var i=0;i<body.rows.length;i++){var r=body.rows[i];\n"
    "var ok=(!dis.checked||r.getAttribute('data-dis')==='1')&&\n"
    "(!mod.value||r.getAttribute('data-mod')===mod.value)&&\n"
    "(!wr.value||r.getAttribute('data-wrong').indexOf(','+wr.value+',')>=0)&&\n"
    "(!q||r.getAttribute('data-cpt').toUpperCase().indexOf(q)>=0);\n"
    "r.hidden=!ok;if(ok)n++;}\n"
    "cnt.textContent=n+' of '+body.rows.length+' records shown';}\n"
    "[dis,mod,cpt,wr].forEach(function(e){e.addEventListener('input',apply);"
    "e.addEventListener('change',apply);});\n"
    "var heads=t.tHead.rows[0].cells;\n"
    "Array.prototype.forEach.call(heads,function(th,col){th.addEventListener('click',function(){\n"
    "var asc=th.getAttribute('data-dir')!=='asc';\n"
    "Array.prototype.forEach.call(heads,function(h){h.removeAttribute('data-dir');});\n"
    "th.setAttribute('data-dir',asc?'asc':'desc');\n"
    "var rows=Array.prototype.slice.call(body.rows);\n"
    "rows.sort(function(a,b){return (asc?1:-1)*a.cells[col].textContent.localeCompare(\n"
    "b.cells[col].textContent,undefined,{numeric:true});});\n"
    "rows.forEach(function(r){body.appendChild(r);});});});\n"
    "apply();})();\n";

void html_text(struct ny_buf *b, const char *s)
{
    rp_html_escape(b, s ? s : "");
}

void html_el(struct ny_buf *b, const char *tag, const char *cls, const char *text)
{
    ny_buf_printf(b, "<%s", tag);
    if (cls)
        ny_buf_printf(b, " class=\"%s\"", cls);
    ny_buf_puts(b, ">");
    html_text(b, text);
    ny_buf_printf(b, "</%s>", tag);
}

void html_head(struct ny_buf *b, const char *title)
{
    ny_buf_puts(b, "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
                   "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
                   "style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:\">\n"
                   "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
                   "<title>");
    html_text(b, title);
    ny_buf_printf(b, "</title>\n<style>%s</style>\n</head>\n<body>\n<main>\n", css);
}

void html_tail(struct ny_buf *b, const char *sha, const char *script)
{
    ny_buf_puts(b, "<footer>");
    if (sha) {
        ny_buf_puts(b, "results.json SHA-256 (canonical serialisation): <span class=\"mono\">");
        html_text(b, sha);
        ny_buf_puts(b, "</span><br>");
    }
    ny_buf_puts(b, "Written by NYXAudit " NY_VERSION " from results.json only; self-contained, "
                   "no network access.</footer>\n</main>\n");
    if (script)
        ny_buf_printf(b, "<script>\n%s</script>\n", script);
    ny_buf_puts(b, "</body>\n</html>\n");
}

/* ---- SVG canvas -------------------------------------------------------------------------------- */

static void sv_rect(void *ctx, double x, double y, double w, double h, uint32_t fill)
{
    ny_buf_printf(ctx, "<rect x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" height=\"%.2f\" "
                       "fill=\"#%06x\"/>\n", x, y, w, h, (unsigned)fill);
}

static void sv_line(void *ctx, double x1, double y1, double x2, double y2, double width,
                    uint32_t color, int dashed)
{
    ny_buf_printf(ctx, "<line x1=\"%.2f\" y1=\"%.2f\" x2=\"%.2f\" y2=\"%.2f\" "
                       "stroke=\"#%06x\" stroke-width=\"%.2f\"%s/>\n", x1, y1, x2, y2,
                  (unsigned)color, width, dashed ? " stroke-dasharray=\"2 2\"" : "");
}

static void sv_text(void *ctx, double x, double y, double size, enum rp_anchor anchor, int bold,
                    uint32_t color, const char *s)
{
    static const char *const an[] = {"start", "middle", "end"};
    ny_buf_printf(ctx, "<text x=\"%.2f\" y=\"%.2f\" font-size=\"%.1f\" text-anchor=\"%s\" "
                       "fill=\"#%06x\"%s>", x, y, size, an[anchor], (unsigned)color,
                  bold ? " font-weight=\"bold\"" : "");
    rp_html_escape(ctx, s);
    ny_buf_puts(ctx, "</text>\n");
}

/* DejaVu Sans averages about 0.6 em per character in these labels. */
static double sv_width(void *ctx, double size, int bold, const char *s)
{
    (void)ctx;
    size_t n = 0;
    for (; *s; s++)
        n += ((unsigned char)*s & 0xc0) != 0x80;
    return (double)n * size * (bold ? 0.66 : 0.6);
}

void html_svg_canvas(struct rp_canvas *c, struct ny_buf *b)
{
    c->ctx = b;
    c->rect = sv_rect;
    c->line = sv_line;
    c->text = sv_text;
    c->text_width = sv_width;
}

void html_svg(struct ny_buf *b, const struct rp_doc *d, double w, html_draw_fn draw,
              const void *arg, const char *label, int legend)
{
    struct ny_buf body;
    struct rp_canvas c;
    ny_buf_init(&body);
    html_svg_canvas(&c, &body);
    double lh = legend ? rp_chart_legend(d, &c, w) : 0;
    ny_buf_printf(&body, "<g transform=\"translate(0 %.2f)\">\n", lh + 4);
    double h = draw(d, &c, w, arg) + lh + 4;
    ny_buf_puts(&body, "</g>\n");
    ny_buf_printf(b, "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"-2 -2 %.0f %.0f\" "
                     "width=\"%.0f\" height=\"%.0f\" role=\"img\" aria-label=\"", w + 4,
                  ceil(h) + 4, (w + 4) * HTML_CHART_SCALE, (ceil(h) + 4) * HTML_CHART_SCALE);
    html_text(b, label);
    ny_buf_puts(b, "\">\n");
    if (body.data)
        ny_buf_append(b, body.data, body.len);
    ny_buf_puts(b, "</svg>\n");
    if (body.failed)
        b->failed = 1;
    ny_buf_fini(&body);
}

int report_html_write(const json_t *results, const char *path, struct ny_err *err)
{
    struct rp_doc d;
    int rc = rp_doc_load(&d, results, err);
    if (rc)
        return rc;
    struct ny_buf b;
    ny_buf_init(&b);
    char title[300];
    snprintf(title, sizeof title, "NYXAudit %s: %s", d.pass ? "PASS" : "FAIL", d.run_id);
    html_head(&b, title);
    html_cover(&b, &d);
    html_summary(&b, &d);
    html_charts(&b, &d);
    html_gates(&b, &d);
    html_errors(&b, &d);
    html_validity(&b, &d);
    html_records(&b, &d);
    html_definitions(&b);
    html_manifest(&b, &d);
    html_tail(&b, d.sha, html_records_script);
    if (b.failed)
        rc = NY_ERR(err, NY_E_NOMEM, "html: out of memory writing %s", path);
    else
        rc = ny_file_write_atomic(path, b.data, b.len, err);
    ny_buf_fini(&b);
    rp_doc_fini(&d);
    return rc;
}
