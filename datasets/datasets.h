/* datasets.h — the datasets module (prefix dataset_): the SQLite record store (records, splits,
 * content hashes, JSONL import), deterministic sampling, prompt assembly with BM25 retrieval and a
 * three-layer leakage defense, and the synthetic radiology corpus with its embedded code set.
 * Depends on common/ and SQLite only (never on engine/: token counting is a callback). */
#ifndef NY_DATASETS_H
#define NY_DATASETS_H

#include <stddef.h>
#include <stdint.h>

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- the embedded demo code set -------------------------------------------------------------- */
/* One code the synthetic corpus can emit, or an ICD-10-CM category header its specificity traps
 * name (billable = 0). ICD codes are in dotted form; labels are the project's own short words. */
struct dataset_code {
    const char *system; /* "cpt" | "modifier" | "icd10cm" */
    const char *code;   /* "74177", "26", "M25.511" */
    int billable;       /* 1, or 0 for a category header such as M25.5 */
    const char *label;  /* our own short label, never an AMA CPT descriptor */
};

/* The static table (CPT, then modifiers, then ICD-10-CM); *out (optional) borrows it. Never
 * fails. */
size_t dataset_synth_codes(const struct dataset_code **out);
/* The entry for (system, code), or NULL. */
const struct dataset_code *dataset_code_find(const char *system, const char *code);

/* ---- the record store ------------------------------------------------------------------------ */
/* Opaque: one SQLite connection to a database file (or ":memory:"). Use a store from one thread
 * at a time; dataset_prompts_export opens its own connections for its workers. */
struct dataset_store;

/* Open (creating tables when missing) the store at path (":memory:" allowed). *out owned by the
 * caller, closed with dataset_store_close. */
int dataset_store_open(const char *path, struct dataset_store **out, struct ny_err *err);
void dataset_store_close(struct dataset_store *st); /* NULL is a no-op */

struct dataset_import_stats {
    size_t added;     /* new ids */
    size_t unchanged; /* ids already present with the same record hash (the no-op case) */
    size_t replaced;  /* ids present with other contents, replaced because replace != 0 */
};

/* Import JSONL records into `split` in one transaction: any malformed line (named by its line
 * number and field), or a changed record under an existing id when replace is 0 (an id already
 * in another split counts as changed), fails the whole import and leaves the store as it was. Fields: id, exam_description, reason, report (required
 * strings); gold as `cpt`/`modifiers`/`icd` arrays or a `codes` string (optional); optional
 * modality, patient, accession, study_date, format ("explicit" | "embedded"), messages (an array
 * of {"role","content"} strings: a ready chat prompt used as is). Unknown fields are ignored.
 * `what` names the source in messages (a path). stats (optional) written on success. */
int dataset_store_import_buf(struct dataset_store *st, const char *buf, size_t len,
                             const char *what, const char *split, int replace,
                             struct dataset_import_stats *stats, struct ny_err *err);
int dataset_store_import_file(struct dataset_store *st, const char *path, const char *split,
                              int replace, struct dataset_import_stats *stats,
                              struct ny_err *err);

/* Number of records in a split (0 for an unknown split). */
int dataset_store_count(struct dataset_store *st, const char *split, size_t *out,
                        struct ny_err *err);

/* A record as stored. All strings owned by the record (NULL when absent); freed with
 * dataset_record_destroy. */
struct dataset_record {
    char *id, *split;
    char *exam_description, *reason, *report;
    char *modality;                        /* "CT", "MRI", "US", "XR", "MG", "NM" or NULL */
    char *patient, *accession, *study_date; /* fingerprint fields, or NULL */
    char *format;                          /* "explicit" | "embedded" | NULL (decided at build) */
    char *messages_json;                   /* a ready chat prompt (JSON array text) or NULL */
    int has_gold;
    char **cpt, **modifiers, **icd;        /* gold codes in order (ICD dotted), arrays owned */
    size_t ncpt, nmodifiers, nicd;
    char *gold_line;                       /* "74177 71260, 26, R10.9, K76.0" ("" without gold) */
    char content_hash[65];                 /* SHA-256 of exam_description, reason, report */
    char record_hash[65];                  /* SHA-256 of the whole canonical record */
};
int dataset_record_get(struct dataset_store *st, const char *id, struct dataset_record **out,
                       struct ny_err *err);
void dataset_record_destroy(struct dataset_record *r); /* NULL is a no-op */

/* ---- deterministic sampling ------------------------------------------------------------------ */
/* The n records of `split` with the smallest keys SHA-256(seed as 8 little-endian bytes || id)
 * (first 8 bytes, big-endian), ties by id, returned in that order. The same (split contents, n,
 * seed) gives the same ids on every machine, and adding records changes the sample only where a
 * new record's key ranks inside it. n larger than the split gives the whole split. *ids_out is an
 * array of *n_out heap strings, freed with dataset_ids_free. */
int dataset_store_sample(struct dataset_store *st, const char *split, size_t n, uint64_t seed,
                         char ***ids_out, size_t *n_out, struct ny_err *err);
void dataset_ids_free(char **ids, size_t n);
/* The sampling key of one id (exposed for tests and audits). */
uint64_t dataset_sample_key(uint64_t seed, const char *id);

/* ---- prompt assembly ------------------------------------------------------------------------- */
/* Token counter: set *ntokens to the number of tokens of text[0..len) and return 0 (or NY_E_*). */
typedef int (*dataset_count_fn)(void *ctx, const char *text, size_t len, size_t *ntokens);

struct dataset_prompt_opts {
    const char *train_split;   /* retrieval pool; default "train" */
    size_t k;                  /* few-shot examples; default 3 */
    size_t K;                  /* codes in each candidate list; default 10 */
    size_t vote_neighbours;    /* unblocked neighbours that vote for candidates; default 10 */
    double cosine_threshold;   /* leakage layer 2: block when cosine > this; default 0.9 */
    const char *rules_text;    /* coding rules; NULL = dataset_default_rules() */
    size_t max_prompt_tokens;  /* whole prompt budget; 0 = no budget; default 0 */
    size_t max_report_tokens;  /* report cap; default 2560 (the model card's) */
    dataset_count_fn count;    /* NULL = the documented estimate dataset_estimate_tokens */
    void *count_ctx;           /* must be safe to use from `threads` threads at once */
    size_t threads;            /* dataset_prompts_export workers (file stores); default 2 */
};
/* Fill the defaults above. */
void dataset_prompt_opts_init(struct dataset_prompt_opts *o);

/* An assembled prompt. Everything owned by the prompt; freed with dataset_prompt_destroy. */
struct dataset_prompt {
    char *id;                   /* the record's id */
    char *messages_json;        /* [{"role":"system","content":...},{"role":"user",...}] */
    char *format;               /* "explicit" | "embedded" | "ready" (the record's own messages) */
    char **retrieved_ids;       /* the few-shot examples shown, in order */
    size_t nretrieved;
    char *cpt_candidates;       /* "74177, 74176, ..." as shown ("" for ready prompts) */
    char *icd_candidates;
    size_t blocked_hash;        /* leakage layer 1: same content hash (the record itself, copies) */
    size_t blocked_cosine;      /* layer 2: term-vector cosine above the threshold */
    size_t blocked_fingerprint; /* layer 3: same accession, or same patient and study date */
    size_t ntokens;             /* prompt tokens by the counter in use */
    size_t examples_dropped;    /* examples removed by the budget */
    int report_trimmed;         /* 1 when the report tail was cut (cap or budget) */
};

/* Build the prompt for record `id`. A record with ready `messages` is used as is (format "ready",
 * no retrieval). Otherwise: system message, then one user message with the few-shot examples,
 * the candidate lists, the coding rules and the report (see datasets/PROMPTS.md). Deterministic:
 * identical store contents and options give byte-identical messages. */
int dataset_prompt_build(struct dataset_store *st, const char *id,
                         const struct dataset_prompt_opts *o, struct dataset_prompt **out,
                         struct ny_err *err);
void dataset_prompt_destroy(struct dataset_prompt *p); /* NULL is a no-op */

/* One JSONL row {"id","messages","retrieved_ids","format","gold","leakage_blocked":{...}} for a
 * prompt (record gives the gold line; may be NULL). Heap string, no newline; NULL on OOM. */
char *dataset_prompt_jsonl(const struct dataset_prompt *p, const struct dataset_record *r);

/* Sample n records of split with seed, build each prompt, and write the JSONL rows to path
 * atomically (nothing is left at path on failure), in sample order. Totals of the leakage counts
 * go to the optional *blocked (3 entries: hash, cosine, fingerprint). A store opened from a file
 * is read by o->threads workers, each with its own connection; the output does not depend on
 * the number of workers. */
int dataset_prompts_export(struct dataset_store *st, const char *split, size_t n, uint64_t seed,
                           const struct dataset_prompt_opts *o, const char *path,
                           size_t blocked[3], struct ny_err *err);

/* The system message (one place in the code) and the default coding rules. Static strings. */
const char *dataset_system_message(void);
const char *dataset_default_rules(void);
/* Leakage layer 2's measure: cosine similarity of the word-count vectors of two texts (words:
 * runs of ASCII letters and digits, lowercased); 0 when either has no word. */
double dataset_text_cosine(const char *a, const char *b);
/* The documented estimate used without a counter: ceil(bytes / 3). */
size_t dataset_estimate_tokens(const char *text, size_t len);

/* ---- synthetic corpus ------------------------------------------------------------------------ */
/* Write n synthetic records (seed, ids "<prefix>-<index>" with index from first) as JSONL to
 * path atomically. Records are a pure function of (seed, index): the same on every machine. */
int dataset_synth_write(const char *path, const char *id_prefix, uint64_t seed, size_t first,
                        size_t n, struct ny_err *err);
/* One synthetic record as a JSONL line (heap string, no newline), or NULL on OOM. */
char *dataset_synth_record_json(const char *id_prefix, uint64_t seed, size_t index);
/* Synthesise n records straight into `split` of the store (one transaction). */
int dataset_synth_to_store(struct dataset_store *st, const char *split, const char *id_prefix,
                           uint64_t seed, size_t n, struct ny_err *err);

#define DATASET_DEMO_HELDOUT 5950
#define DATASET_DEMO_TRAIN 20000
#define DATASET_DEMO_SEED_HELDOUT 20260101u
#define DATASET_DEMO_SEED_TRAIN 20260102u
/* The default demo corpus: held-out split "heldout" (5,950 records, ids "heldout-NNNNN") and the
 * retrieval pool "train" (20,000 records, ids "train-NNNNN"), fixed seeds. A no-op when the
 * store already holds both splits at those sizes. */
int dataset_store_create_demo(struct dataset_store *st, struct ny_err *err);

#ifdef __cplusplus
}
#endif
#endif /* NY_DATASETS_H */
