/* datasets_int.h — private to datasets/: the store's struct, gold-code normalisation, text
 * helpers shared by the store, the retriever and the prompt builder. */
#ifndef NY_DATASETS_INT_H
#define NY_DATASETS_INT_H

#include <jansson.h>
#include <sqlite3.h>

#include "datasets.h"

struct dataset_store {
    sqlite3 *db;
    char *path;
    /* retrieval cache: document frequencies of the FTS vocabulary, rebuilt when stale */
    struct dataset_vocab *vocab;
    uint64_t generation; /* bumped by every write; the vocab cache keys on it */
};

/* Gold codes normalised by the metrics rules (uppercase, dotted ICD). */
struct dataset_gold {
    json_t *cpt, *modifiers, *icd; /* json arrays of strings (owned) */
};
/* Read the gold fields of a record object (`cpt`/`modifiers`/`icd` arrays or a `codes` line).
 * *present is 0 when none is given. what names the line for messages. */
int dataset_gold_from_json(json_t *rec, const char *what, struct dataset_gold *g, int *present,
                           struct ny_err *err);
void dataset_gold_fini(struct dataset_gold *g);
/* "CPT CPT2, MOD MOD2, ICD1, ICD2" (modifier field left out when there are none). Heap. */
char *dataset_gold_line(json_t *cpt, json_t *modifiers, json_t *icd);
/* Normalise one token by the parsing rules; returns 'C' (CPT), 'M' (modifier), 'I' (ICD, dotted
 * into out) or 0 (unparseable / empty). out needs 16 bytes. */
int dataset_code_normalize(const char *tok, size_t len, char out[16]);

/* Execute SQL with no results; maps failures to NY_E_DB naming `what`. */
int dataset_db_exec(struct dataset_store *st, const char *sql, const char *what,
                    struct ny_err *err);

void dataset_vocab_free(struct dataset_vocab *v);

/* Import in-memory JSONL lines into split (one transaction, no replace). */
int dataset_store_import_lines(struct dataset_store *st, char **lines, size_t n,
                               const char *what, const char *split, struct ny_err *err);
/* Fill a record from the current row of a statement selecting RECORD_COLUMNS. */
#define DATASET_RECORD_COLUMNS                                                                   \
    "id, split, exam_description, reason, report, modality, patient, accession, study_date,"   \
    " format, messages, gold, content_hash, record_hash"
int dataset_record_from_row(sqlite3_stmt *s, int col0, struct dataset_record **out);

/* Lowercase ASCII-alphanumeric word iterator over text (other bytes separate words). */
struct dataset_words {
    const char *p, *end;
};
void dataset_words_init(struct dataset_words *w, const char *text, size_t len);
/* Next word (lowercased into buf, truncated to 47 bytes); returns its length or 0 at the end. */
size_t dataset_words_next(struct dataset_words *w, char buf[48]);

/* ---- retrieval (dataset_retrieve.c) ---- */
/* A retrieved neighbour that passed the leakage defense. */
struct dataset_hit {
    char *id, *exam_description, *reason, *report;
    json_t *gold; /* {"cpt","modifiers","icd"} or NULL */
    double score; /* -bm25: larger is better */
};
struct dataset_hits {
    struct dataset_hit *v;
    size_t n;
    size_t blocked[3]; /* hash, cosine, fingerprint */
};
/* BM25 neighbours of record q in split `pool`, in rank order (ties by id), dropping those the
 * three leakage layers block, until `want` are kept or the pool is exhausted. */
int dataset_retrieve(struct dataset_store *st, const struct dataset_record *q, const char *pool,
                     size_t want, double cosine_threshold, struct dataset_hits *out,
                     struct ny_err *err);
void dataset_hits_fini(struct dataset_hits *h);

#endif
