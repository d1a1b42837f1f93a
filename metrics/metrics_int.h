/* metrics_int.h — private to metrics/: the ICD error taxonomy of one record and helpers shared by
 * the evaluation and the code-set files. */
#ifndef NY_METRICS_INT_H
#define NY_METRICS_INT_H

#include "metrics.h"

struct metrics_taxo {
    size_t specificity, wrong_category, hallucinated, missed, extra;
};

/* Called for each (gold, pred) pair formed by the taxonomy (steps 2 and 3 in metrics.h). */
typedef int (*metrics_pair_fn)(void *ctx, const char *gold, const char *pred);

/* Classify the ICD misses of one record (rules in metrics.h, section 5) and add them to *t.
 * pred_invalid[i] (may be NULL = none invalid) flags pred->icd[i] as absent from the release.
 * Returns 0, or the first non-zero value returned by on_pair (which may be NULL). */
int metrics_taxonomy_record(const struct metrics_codes *gold, const struct metrics_codes *pred,
                            const unsigned char *pred_invalid, struct metrics_taxo *t,
                            metrics_pair_fn on_pair, void *ctx);

/* Zip archives (codeset_zip.c): extract the first entry whose base name satisfies match() into a
 * NUL-terminated heap buffer (ny_free). Stored and deflate entries; CRC and sizes checked;
 * entries over max_size refused. *name_out (optional) receives the entry's base name (ny_free). */
int codeset_zip_extract(const char *path, int (*match)(const char *base), size_t max_size,
                        char **out, size_t *out_len, char **name_out, struct ny_err *err);
/* 1 when the file at path starts with a zip local-header signature. */
int codeset_zip_is_zip(const char *path);

/* ---- code-set internals shared by codeset.c and codeset_import.c ---- */
enum { CODESET_SYS_ICD = 1, CODESET_SYS_CPT = 2, CODESET_SYS_MOD = 3 };

/* An import in progress: one transaction on one release. */
struct codeset_tx {
    struct codeset_db *db;
    int64_t release_id;
    struct sqlite3_stmt *ins; /* INSERT INTO codes */
    const char *what;         /* file name for messages */
    size_t added;
};

/* BEGIN IMMEDIATE, create or check the release (same name with another date is an error). */
int codeset_tx_begin(struct codeset_db *db, const char *release, const char *effective,
                     struct codeset_tx *tx, struct ny_err *err);
/* For system sys with content hash sha: 1 = already imported (skip), 0 = import it (the source
 * is recorded), or an error (a different content under the same release). */
int codeset_tx_source(struct codeset_tx *tx, int sys, const char *sha, const char *origin,
                      struct ny_err *err);
/* Insert one code; `line` (0 = none) names the position in messages. A duplicate is an error
 * unless ignore_dup. */
int codeset_tx_insert(struct codeset_tx *tx, int sys, const char *code, int billable,
                      const char *shortd, const char *longd, size_t line, int ignore_dup,
                      struct ny_err *err);
int codeset_tx_commit(struct codeset_tx *tx, struct ny_err *err);
void codeset_tx_rollback(struct codeset_tx *tx);
/* The effective date (11 bytes) of an existing release: 0, NY_E_NOTFOUND or NY_E_DB. */
int codeset_release_effective(struct codeset_db *db, const char *name, char eff[11],
                              struct ny_err *err);
/* 1 when s is YYYY-MM-DD with a valid month and day. */
int codeset_date_valid(const char *s);

#endif
