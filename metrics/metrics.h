/* metrics.h — the metrics module (prefixes metrics_, codeset_): parsing of model output lines,
 * per-record scores, Wilson and bootstrap intervals, paired tests, and the CMS code sets in SQLite.
 * Table of contents: 1. parsing  2. code sets  3. statistics  4. scoring  5. evaluation (JSON). */
#ifndef NY_METRICS_H
#define NY_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* =============================================================================================
 * 1. Parsing a model output line `CPT[ CPT2], MOD, ICD1, ICD2, ...`
 *
 * Exact rules (issue #3; tests/unit/metrics/test_parse.c pins each):
 *  - Split on commas, then on ASCII whitespace (space, \t, \n, \v, \f, \r).
 *  - Each token: ASCII-uppercase; strip leading bytes that are not A-Z/0-9; strip trailing bytes
 *    that are not A-Z/0-9/'.'; then strip trailing dots (one pass of each, in that order, so
 *    "R10.84)." stays "R10.84)" and is unparseable). Empty tokens are skipped.
 *  - CPT: 4 digits then a digit or letter (74177, 0042T). Modifier: exactly 2 of A-Z/0-9 (26, TC).
 *    ICD-10-CM: letter, digit, letter-or-digit, then optionally '.' and 1..4 letters/digits; the
 *    undotted form is accepted and normalised to the dotted one (M25511 -> M25.511).
 *    Anything else is unparseable (counted in n_unparseable, text not kept).
 *  - Order is kept; a repeated code is dropped after its first occurrence.
 *  - At most METRICS_MAX_CODES distinct codes of each kind are kept; further distinct codes count
 *    as unparseable (bounds the work on hostile lines; real lines hold a handful).
 * Bytes >= 0x80 are never letters, so invalid UTF-8 is simply unparseable, never an error.
 * Note: FY2026 added ICD-10-CM codes with a letter in second place (QA0-QA9, e.g. QA00101); the
 * rule above (issue #3) does not recognise them in model lines. The order-file importer accepts
 * them (a letter, then 2-6 letters or digits).
 * ============================================================================================= */
#define METRICS_CODE_MAX 12 /* longest normalised code "A00.0000" plus NUL, rounded up */
#define METRICS_MAX_CODES 256

struct metrics_code {
    char s[METRICS_CODE_MAX];
};

/* Caller-owned storage (_init/_fini). The three arrays share one heap block owned by the struct. */
struct metrics_codes {
    struct metrics_code *cpt;
    size_t n_cpt;
    struct metrics_code *mod;
    size_t n_mod;
    struct metrics_code *icd;
    size_t n_icd;
    size_t n_unparseable; /* tokens that are none of the three */
    void *block_;         /* private: the allocation behind the arrays */
};

enum metrics_kind {
    METRICS_KIND_NONE = 0, /* unparseable */
    METRICS_KIND_CPT = 1,
    METRICS_KIND_MODIFIER = 2,
    METRICS_KIND_ICD = 3,
};

void metrics_codes_init(struct metrics_codes *c);
void metrics_codes_fini(struct metrics_codes *c);

/* Normalise one token (the stripping and uppercasing above) and classify it. On success writes the
 * normalised code (ICD dotted) to out and returns its kind; returns METRICS_KIND_NONE for an empty
 * or unparseable token (out then holds ""). */
enum metrics_kind metrics_token_classify(const char *tok, size_t len, char out[METRICS_CODE_MAX]);

/* Parse a model line (len bytes, need not be NUL-terminated; NULL line = empty line). Fills *out
 * (init'ed by the caller; previous contents are freed first) only on success. Fails only with
 * NY_E_NOMEM. */
int metrics_codes_parse(const char *line, size_t len, struct metrics_codes *out,
                        struct ny_err *err);

/* Parse a gold record: either `line` (the model's own format; the `codes` field) or the three
 * arrays (each element tokenised by the same rules; an element may hold several codes). Gold must
 * be clean: an unparseable token, or a code in the wrong array (an ICD code in `cpt`), is
 * NY_E_FORMAT with a message naming `what` (e.g. "gold.jsonl line 7 (id hx-1)") and the field. */
int metrics_gold_parse(const char *line, const char *const *cpt, size_t n_cpt,
                       const char *const *mods, size_t n_mods, const char *const *icd,
                       size_t n_icd, const char *what, struct metrics_codes *out,
                       struct ny_err *err);

/* =============================================================================================
 * 2. Code sets in SQLite (codeset_)
 *
 * A database holds several releases; each release has a name ("FY2026"), an effective date
 * (YYYY-MM-DD) and codes of up to three systems: "icd10cm", "cpt", "modifier" (HCPCS modifiers,
 * record types 7 and 8). Stored: code (ICD dotted), billable flag (0 = ICD category header),
 * short and long description (CMS text for ICD and HCPCS; none for CPT numbers).
 * The CPT modifiers 26, 50, 52, 59, 76, 77 (AMA, absent from HCPCS files) are known to the program
 * and are valid in every release that has modifier rows.
 * Every import runs in one transaction (a failure leaves the database as it was). Each release
 * records, per system, the SHA-256 of what was imported: importing the same content again is a
 * no-op; adding a system the release does not have yet is allowed; a different content for a
 * system the release already holds is NY_E_INVALID (name a new release instead).
 * ============================================================================================= */
struct codeset_db;

/* Open (creating the schema) the database at path, or ":memory:"; close *out with codeset_close. */
int codeset_open(const char *path, struct codeset_db **out, struct ny_err *err);
void codeset_close(struct codeset_db *db); /* NULL is a no-op */

/* One row of an embedded code set (the demo set comes from datasets' dataset_synth_codes()). */
struct codeset_row {
    const char *system; /* "cpt" | "modifier" | "icd10cm" */
    const char *code;   /* normalised by the parsing rules (M25511 is stored as M25.511) */
    int billable;       /* 1, or 0 for a category header */
    const char *label;  /* our own short label (never CPT descriptor text); may be NULL */
};

/* Import rows into release `release` effective `effective_date` (YYYY-MM-DD), one transaction. A
 * malformed row (unknown system, code not of that system, duplicate) fails naming the row index. */
int codeset_import_rows(struct codeset_db *db, const char *release, const char *effective_date,
                        const struct codeset_row *rows, size_t n, struct ny_err *err);

/* What an import did (optional output of codeset_import_files). */
struct codeset_import_stats {
    char release[64];
    char effective[16];
    size_t icd10cm, icd10cm_billable, cpt, modifiers; /* rows imported by this call */
    int noop;                                         /* 1 when everything was already there */
};

/* Import CMS files into one release, in one transaction. Any path may be NULL (not all NULL):
 *  icd10cm: the order file icd10cm_order_YYYY.txt (fixed width) or a CMS zip holding it;
 *  hcpcs:   the HCPCS Level II alpha-numeric file (320-byte records) or a zip holding it
 *           (only its modifiers, record types 7/8, are stored; leading non-record lines such as
 *           the 2019 file's disclaimer are skipped);
 *  cpt:     CPT code numbers, one per line ('#' comments and blank lines skipped).
 * release/effective may be NULL: then "FY<YYYY>" effective <YYYY-1>-10-01 from the ICD file name,
 * else "HCPCS<YYYY>" effective <YYYY>-01-01 from the HCPCS file name; a CPT-only import needs
 * both, except that naming an existing release takes its date (adding CPT numbers or HCPCS
 * modifiers to FY2026: release "FY2026", effective NULL). A bad file fails naming the file and line. stats may be NULL. */
int codeset_import_files(struct codeset_db *db, const char *icd10cm, const char *hcpcs,
                         const char *cpt, const char *release, const char *effective,
                         struct codeset_import_stats *stats, struct ny_err *err);

/* Resolve a release: by name (name != NULL) or the latest release effective on or before `date`
 * (YYYY-MM-DD; name NULL). Writes the name (NUL-terminated, cap bytes) on success; NY_E_NOTFOUND
 * when there is none. */
int codeset_release_find(struct codeset_db *db, const char *name, const char *date, char *out,
                         size_t cap, struct ny_err *err);

/* Every release, newest effective date first, with its code counts. *out (ny_free) and *n on
 * success; an empty database gives *out NULL and *n 0. */
struct codeset_release_info {
    char name[64];
    char effective[16];
    int64_t icd10cm, icd10cm_billable, cpt, modifiers;
};
int codeset_release_list(struct codeset_db *db, struct codeset_release_info **out, size_t *n,
                         struct ny_err *err);

/* Number of codes of `system` in `release` (billable_only: count only billable ones). */
int codeset_count(struct codeset_db *db, const char *release, const char *system,
                  int billable_only, int64_t *out, struct ny_err *err);

enum codeset_status {
    CODESET_UNCOVERED = -1, /* the release holds no codes of this system */
    CODESET_INVALID = 0,    /* not in the release */
    CODESET_VALID = 1,      /* in the release, billable */
    CODESET_NONBILLABLE = 2 /* in the release, a category header (ICD only) */
};

/* *out = 1 when `release` holds codes of the kind's system (validity can be judged), else 0. */
int codeset_covers(struct codeset_db *db, const char *release, enum metrics_kind kind, int *out,
                   struct ny_err *err);

/* Look a normalised code up (indexed; prepared statement reused). kind is a METRICS_KIND_*. */
int codeset_lookup(struct codeset_db *db, const char *release, enum metrics_kind kind,
                   const char *code, enum codeset_status *out, struct ny_err *err);

/* =============================================================================================
 * 3. Statistics
 * ============================================================================================= */
#define METRICS_Z95 1.959963984540054
#define METRICS_BOOTSTRAP_B 2000 /* resamples for every bootstrap interval */

/* Wilson score interval for k successes of n at z. n == 0 gives [0, 1]. */
void metrics_wilson(uint64_t k, uint64_t n, double z, double *lo, double *hi);

/* Newcombe (1998, Stat Med 17:2635) method 10: interval for p_b - p_a from paired binary outcomes
 * by squaring and adding the Wilson limits of p_b and p_a, with their correlation phi.
 * n11 = both 1, n10 = a 1 and b 0, n01 = a 0 and b 1, n00 = both 0; A = n11 n00 - n10 n01 and
 * M = the product of the four margins: phi = (A - n/2)/sqrt(M) when A > n/2, 0 when
 * 0 <= A <= n/2, A/sqrt(M) when A < 0, and 0 when M = 0 (Newcombe's corrected phi, as in
 * Altman et al. 2000 ch. 6 and Fagerland et al. 2017 ch. 8). delta = (n01 - n10) / n; limits are
 * clipped to [-1, 1]. n == 0 gives delta 0 and [-1, 1]. */
void metrics_newcombe_paired(uint64_t n11, uint64_t n10, uint64_t n01, uint64_t n00, double z,
                             double *delta, double *lo, double *hi);

/* Exact two-sided McNemar p: n = n01 + n10, p = min(1, 2 sum_{i<=min} C(n,i) / 2^n); 1 at n = 0. */
double metrics_mcnemar_exact(uint64_t n01, uint64_t n10);

/* Cochran's Q for an n x k binary matrix (x[i*k + j] in {0,1}, k >= 2): Q, df = k - 1 and the
 * chi-square upper tail p. When every row is all-0 or all-1 (denominator 0) Q = 0 and p = 1. */
void metrics_cochran_q(const unsigned char *x, size_t n, size_t k, double *q, int *df, double *p);

/* Upper tail of the chi-square distribution, P(X > x) with df degrees of freedom (x >= 0). */
double metrics_chi2_sf(double x, int df);

/* Holm step-down adjustment of m p-values (in place order kept): adj[i] for p[i]. */
void metrics_holm(const double *p, size_t m, double *adj);

/* Seeded PRNG for the bootstrap: xoshiro256** whose 256-bit state is four successive outputs of
 * splitmix64 started at the seed; metrics_rng_below(n) is unbiased (rejection of the low
 * 2^64 mod n values, then modulo). */
struct metrics_rng {
    uint64_t s[4];
};
void metrics_rng_seed(struct metrics_rng *r, uint64_t seed);
uint64_t metrics_rng_next(struct metrics_rng *r);
uint64_t metrics_rng_below(struct metrics_rng *r, uint64_t n);

/* Percentile-bootstrap interval of the mean of v[0..n) (n >= 1): B resamples, each n indices drawn
 * in order with metrics_rng_below(n) from one generator seeded with seed; the resample mean sums
 * v[idx[0]] + v[idx[1]] + ... left to right and divides by n; the limits are the 0.025 and 0.975
 * quantiles (metrics_quantile_sorted) of the sorted means. metrics_evaluate draws its indices the
 * same way (one sequence shared by every model and statistic), so its icd_recall and
 * icd_precision intervals equal this function on the per-record values. NY_E_NOMEM on failure. */
int metrics_bootstrap_mean_ci(const double *v, size_t n, uint64_t seed, size_t B, double *lo,
                              double *hi);

/* Percentile of sorted values (NumPy's default "linear" rule: h = (m-1) q, interpolate between
 * x[floor h] and x[floor h + 1]). m >= 1. */
double metrics_quantile_sorted(const double *x, size_t m, double q);

/* =============================================================================================
 * 4. Per-record scores
 * ============================================================================================= */
enum metrics_binary {
    METRICS_CPT_EXACT = 0,
    METRICS_CPT_PRIMARY,
    METRICS_MODIFIER_EXACT,
    METRICS_ICD_EXACT,
    METRICS_ICD_ANY_OVERLAP,
    METRICS_ICD_ROOT_OVERLAP,
    METRICS_ALL_THREE_EXACT,
    METRICS_N_BINARY
};
/* "cpt_exact", ... in the enum's order. */
const char *metrics_binary_name(enum metrics_binary m);

struct metrics_record_score {
    unsigned char bin[METRICS_N_BINARY]; /* 0 or 1 */
    double icd_recall;                   /* |P & G|/|G|; G empty: 1 if P empty else 0 */
    double icd_precision;                /* |P & G|/|P|; P empty: 1 if G empty else 0 */
    size_t icd_tp, icd_pred, icd_gold;   /* |P & G|, |P|, |G| (for the micro scores) */
};

/* Score one prediction against one gold record (both already parsed). Never fails. */
void metrics_score_record(const struct metrics_codes *gold, const struct metrics_codes *pred,
                          struct metrics_record_score *out);

/* =============================================================================================
 * 5. Evaluation: the "metrics" object of results.json (harness/RESULTS.md), exactly what
 *    `nyxaudit score --json` writes.
 *
 * Definitions the issue leaves open:
 *  - Micro scores pool over records: precision = sum TP / sum P, recall = sum TP / sum G, F1 = 2 sum TP / (sum P + sum G);
 *    a zero denominator gives 1 when both totals are 0, else 0. They, icd_recall and
 *    icd_precision carry a seeded percentile bootstrap interval: METRICS_BOOTSTRAP_B resamples of
 *    the n records drawn with metrics_rng seeded by `seed` (the same index draws for every model,
 *    so a model's interval does not depend on the other models), percentiles 2.5 and 97.5 by
 *    metrics_quantile_sorted. The seven binary metrics carry Wilson intervals.
 *  - Validity is pooled over the distinct predicted codes of every record: rate = count / number
 *    predicted of that kind (0 when none predicted); "counts" holds the raw numbers. A system the
 *    release does not cover gives null for its rate. Without a code set "validity" is null.
 *  - Taxonomy, per record, on M = gold ICD codes not predicted and X = predicted ICD codes not in
 *    gold: (1) an x in X that is not in the release (invalid; only with a code set) is
 *    "hallucinated"; (2) each m in M, in gold order, pairs with the first unpaired valid x of the
 *    same 3-character category, in prediction order: "specificity"; (3) each still unpaired m
 *    pairs with the first unpaired valid x of another category: "wrong_category"; (4) unpaired m
 *    are "missed"; unpaired valid x are counted as "extra" (over-coding).
 *  - "confusions": the (gold, pred) pairs formed in steps 2 and 3, counted over all records,
 *    sorted by count descending, then gold, then pred; the first METRICS_CONFUSIONS_MAX.
 *  - Breakdowns: "modality" (only when some gold record carries one; others go to "(none)") and
 *    "primary_cpt" (the first gold CPT, "(none)" when gold has no CPT): per group n and the mean
 *    of the seven binary metrics, icd_recall and icd_precision.
 *  - "format_errors": records whose prediction has an unparseable token; "missing": records with
 *    no prediction (scored as the empty line).
 *  - Top-level keys besides n/models/comparisons (and cochran_q/holm with 3+ models):
 *    "codeset_release" (name or null) and "bootstrap" {"seed", "resamples"}.
 *  - Comparisons: every pair (a = models[i], b = models[j], i < j) and each binary metric: delta =
 *    mean(b) - mean(a), Newcombe method-10 interval, exact McNemar p. With 3+ models
 *    "cochran_q" per binary metric and "holm": the McNemar p adjusted by Holm within each metric
 *    (family = the m(m-1)/2 pairs of that metric).
 * ============================================================================================= */
#define METRICS_CONFUSIONS_MAX 20

struct metrics_gold {
    const char *id;
    const char *codes; /* a line in the model's format, or NULL to use the arrays */
    const char *const *cpt;
    size_t n_cpt;
    const char *const *modifiers;
    size_t n_modifiers;
    const char *const *icd;
    size_t n_icd;
    const char *modality; /* optional (NULL) */
};

struct metrics_model {
    const char *name;
    const char *const *outputs; /* n raw lines, in gold order; NULL entry = missing prediction */
};

struct metrics_input {
    const struct metrics_gold *gold;
    size_t n; /* >= 1 */
    const struct metrics_model *models;
    size_t m; /* >= 1, names distinct */
    struct codeset_db *db; /* optional: validity and hallucination need it */
    const char *release;   /* required with db: a release name (see codeset_release_find) */
    uint64_t seed;         /* bootstrap seed */
};

/* Per-record values, optional output of metrics_evaluate_ex: scores[j * n + i] for model j and
 * record i, plus format flags. Freed with metrics_records_destroy. */
struct metrics_records {
    size_t n, m;
    struct metrics_record_score *scores;
    unsigned char *format_error; /* [j * n + i] */
};
void metrics_records_destroy(struct metrics_records *r);

/* Evaluate: writes the "metrics" object (owned by the caller, json_decref) to *out on success.
 * Bad gold records are NY_E_FORMAT naming the id; a release missing from db NY_E_NOTFOUND. */
int metrics_evaluate(const struct metrics_input *in, struct json_t **out, struct ny_err *err);
/* The same, also returning per-record values (records may be NULL). */
int metrics_evaluate_ex(const struct metrics_input *in, struct json_t **out,
                        struct metrics_records **records, struct ny_err *err);

/* Print a readable table of a "metrics" object (as made above) to f. */
void metrics_print_table(const struct json_t *metrics, FILE *f);

#ifdef __cplusplus
}
#endif
#endif /* NY_METRICS_H */
