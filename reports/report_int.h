/* report_int.h — private to reports/: the validated view of a results object (struct rp_doc),
 * number formatting, the metric glossary, the HTML escape and the chart canvas. */
#ifndef NY_REPORT_INT_H
#define NY_REPORT_INT_H

#include <stddef.h>
#include <stdint.h>

#include "reports.h"

/* ---- metric glossary (issue #3) --------------------------------------------------------------- */
#define RP_NMETRICS 12
struct rp_metric_info {
    const char *key;      /* results key, e.g. "cpt_exact" */
    const char *name;     /* short readable name, e.g. "CPT exact" */
    const char *define;   /* the exact definition in plain words */
    int binary;           /* 1 for per-record yes/no metrics (Wilson CI, McNemar test) */
    int ci_required;      /* 1 when results must carry ci95 */
};
extern const struct rp_metric_info rp_metrics[RP_NMETRICS];
/* Index of a metric key in rp_metrics, or -1. */
int rp_metric_index(const char *key);
/* Plain-words notes on the intervals and tests, for the definitions section (NULL-terminated). */
extern const char *const rp_method_notes[];

#define RP_NVALIDITY 4
extern const char *const rp_validity_keys[RP_NVALIDITY];
extern const char *const rp_validity_names[RP_NVALIDITY];
#define RP_NTAXONOMY 4
extern const char *const rp_taxonomy_keys[RP_NTAXONOMY];
extern const char *const rp_taxonomy_names[RP_NTAXONOMY];

/* ---- the validated document ------------------------------------------------------------------- */
/* Every pointer below is borrowed from the results object, which must outlive the rp_doc. */
struct rp_value {
    double v, lo, hi;
    int has_ci;
};

struct rp_ckpt {
    const char *label, *model, *adapter; /* adapter may be NULL */
    int baseline;
    struct rp_value m[RP_NMETRICS];
    int64_t format_errors;
    double validity[RP_NVALIDITY];
    const json_t *validity_counts; /* object or NULL */
    int64_t taxonomy[RP_NTAXONOMY];
    const json_t *confusions;      /* array of {gold, pred, count}, checked */
    const json_t *by_modality;     /* object name -> {n, cpt_exact, icd_exact} or NULL */
    const json_t *by_cpt;          /* same, by primary CPT, or NULL */
};

struct rp_cmp {
    const char *a, *b, *metric;
    double delta, lo, hi, p;
    double p_adj; /* Holm-adjusted p, when has_adj */
    int has_adj;
};

struct rp_gate {
    const char *name, *kind, *checkpoint, *metric, *rule, *verdict; /* checkpoint may be NULL */
    const json_t *evidence; /* object */
    int pass;
};

struct rp_record {
    const char *id, *modality, *primary_cpt, *gold, *excerpt; /* modality/cpt/excerpt may be NULL */
    const char **pred;  /* one per checkpoint (doc order); NULL when missing */
    int disagree;       /* the checkpoints' predictions differ (normalised code sets) */
    int *wrong;         /* per checkpoint: prediction differs from gold (normalised) */
};

struct rp_doc {
    const json_t *root;
    const char *run_id, *started, *finished, *dataset, *split, *release; /* finished may be NULL */
    int64_t n, seed;
    int allow_text;
    struct rp_ckpt *ck;
    size_t nck, base;
    struct rp_cmp *cmp;
    size_t ncmp;
    const json_t *cochran; /* object or NULL */
    struct rp_gate *gates;
    size_t ngates, nfail;
    int pass; /* verdict == "pass" */
    struct rp_record *rec;
    size_t nrec, ndisagree;
    const json_t *manifest;
    char sha[65];
};

/* Validate results and fill d (0 or NY_E_FORMAT / NY_E_NOMEM). d is zeroed first; on failure it
 * holds nothing to free. rp_doc_fini frees what rp_doc_load allocated. */
int rp_doc_load(struct rp_doc *d, const json_t *results, struct ny_err *err);
void rp_doc_fini(struct rp_doc *d);
/* Index of a checkpoint label, or -1. */
int rp_doc_ckpt(const struct rp_doc *d, const char *label);
/* Comparison of baseline a and b on metric, or NULL. */
const struct rp_cmp *rp_doc_cmp(const struct rp_doc *d, const char *a, const char *b,
                                const char *metric);

/* ---- formatting (report_fmt.c) ----------------------------------------------------------------- */
/* A proportion as a percentage with one decimal ("91.2%"); "n/a" when not finite. */
void rp_fmt_pct(char *out, size_t cap, double v);
/* "91.2% [88.4, 93.4]" (interval in percent, one decimal); without CI just the percentage. */
void rp_fmt_value(char *out, size_t cap, const struct rp_value *v);
/* A difference of proportions in percentage points: "+1.0 pp"; "−" is U+2212 for negatives. */
void rp_fmt_pp(char *out, size_t cap, double d);
/* "[−2.0, +3.0]" in percentage points. */
void rp_fmt_pp_ci(char *out, size_t cap, double lo, double hi);
/* A p-value: "0.62", "0.034", "< 0.001". */
void rp_fmt_p(char *out, size_t cap, double p);
/* A JSON scalar or short array for the manifest and gate evidence. */
void rp_fmt_json_scalar(char *out, size_t cap, const json_t *v, const char *key);
/* Gate evidence object as one line: "value 85.0% [82.0, 88.0]; n 500". */
int rp_fmt_evidence(struct ny_buf *b, const json_t *evidence);
/* Normalised code set of a model line (uppercase tokens, dots removed, sorted, unique), for
 * disagreement tests only; the metrics module does the scoring. Heap string, NULL on OOM. */
char *rp_codes_norm(const char *line);

/* ---- flattening free-form objects (report_walk.c) --------------------------------------------- */
typedef void (*rp_row_fn)(void *ctx, const char *path, const char *value);
/* Keys of an object sorted (heap array freed with ny_free; NULL on OOM). */
const char **rp_sorted_keys(const json_t *o, size_t *n);
/* One row per scalar (or array of scalars) under obj, depth first, keys sorted, skipping the
 * top-level key skip_key (may be NULL). 0 or NY_E_NOMEM. */
int rp_walk(const json_t *obj, const char *skip_key, rp_row_fn fn, void *ctx);
/* 1 when manifest.files is a non-empty array of objects (shown as its own table). */
int rp_manifest_files_ok(const json_t *manifest);
/* The path, bytes and sha256 of one manifest.files entry as text. */
void rp_file_fields(const json_t *f, char *path, size_t pcap, char *bytes, size_t bcap,
                    char *sha, size_t scap);

/* Union of the keys of every checkpoint's validity.counts, sorted (heap array of borrowed keys,
 * freed with ny_free; NULL on OOM), and one checkpoint's count as text ("—" when absent). */
const char **rp_validity_count_keys(const struct rp_doc *d, size_t *n);
void rp_validity_count(const struct rp_ckpt *c, const char *key, char *out, size_t cap);

/* One checkpoint's confusion pairs sorted by count (descending), then gold, then predicted code:
 * a heap array of borrowed entries freed with ny_free (NULL on OOM; *n = 0 gives a 1-slot array). */
const json_t **rp_confusions_sorted(const struct rp_ckpt *c, size_t *n);

/* Append s HTML-escaped (& < > " ') to b: the one escape every HTML and SVG string goes through. */
int rp_html_escape(struct ny_buf *b, const char *s);

/* ---- chart canvas (report_chart.c) ------------------------------------------------------------- */
/* Charts are drawn once against this small canvas; the PDF and SVG writers implement it.
 * Coordinates are points, origin top-left of the chart box, y down. Colours are 0xRRGGBB. */
enum rp_anchor { RP_LEFT, RP_CENTER, RP_RIGHT };
struct rp_canvas {
    void *ctx;
    void (*rect)(void *ctx, double x, double y, double w, double h, uint32_t fill);
    void (*line)(void *ctx, double x1, double y1, double x2, double y2, double width,
                 uint32_t color, int dashed);
    void (*text)(void *ctx, double x, double y, double size, enum rp_anchor anchor, int bold,
                 uint32_t color, const char *s); /* y is the baseline */
    double (*text_width)(void *ctx, double size, int bold, const char *s);
};
/* The colour of checkpoint i (stable palette). */
uint32_t rp_ckpt_color(size_t i);
/* Each chart returns the height it used (points) for width w; a NULL canvas only measures. */
double rp_chart_metrics(const struct rp_doc *d, const struct rp_canvas *c, double w);
double rp_chart_deltas(const struct rp_doc *d, const struct rp_canvas *c, double w);
/* metric_key: "cpt_exact" or "icd_exact"; by: 0 modality, 1 primary CPT. */
double rp_chart_breakdown(const struct rp_doc *d, const struct rp_canvas *c, double w,
                          const char *metric_key, int by);
/* Legend of checkpoint colours; returns its height. */
double rp_chart_legend(const struct rp_doc *d, const struct rp_canvas *c, double w);

#endif /* NY_REPORT_INT_H */
