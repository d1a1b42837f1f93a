/* harness.h — the audit harness (prefixes harness_ and store_): configuration, the resumable run
 * store, the manifest, release gates and the CI outputs (results.json, junit.xml, summary.md).
 * The audit pipeline that drives datasets → engine → metrics → reports is in audit.c. */
#ifndef NY_HARNESS_H
#define NY_HARNESS_H

#include <stdint.h>

#include "common.h"

/* ---- configuration (config.c; format documented in README.md, "Configuration") --------------- */
struct harness_checkpoint {
    char *label;        /* "V16"; unique within a configuration */
    char *model;        /* base model directory as written in the configuration */
    char *adapter;      /* PEFT adapter directory as written, or NULL */
    char *model_path;   /* model resolved against the configuration's root */
    char *adapter_path; /* adapter resolved, or NULL */
    int baseline;       /* exactly one checkpoint is the baseline */
};

enum harness_gate_kind {
    HARNESS_GATE_FLOOR = 0,         /* metric (point or ci95 lower bound) >= threshold */
    HARNESS_GATE_NO_REGRESSION = 1, /* candidate vs baseline, paired: no drop beyond margin */
    HARNESS_GATE_CEILING = 2,       /* validity rate (or metric point value) <= threshold */
};

struct harness_gate_spec {
    char *name;       /* unique; per-checkpoint expansions become "name[LABEL]" */
    int kind;         /* enum harness_gate_kind */
    char *checkpoint; /* a label, or NULL for every non-baseline checkpoint */
    char *metric;     /* metric key (issue #3 names), validity key or "format_error_rate" */
    double threshold; /* floor: min; ceiling: max */
    int on_ci_low;    /* floor only: judge the ci95 lower bound instead of the point value */
    double margin;    /* no_regression: tolerated drop (absolute, >= 0) */
    double alpha;     /* no_regression: significance level of the McNemar test */
    int use_ci;       /* no_regression: judge with the paired ci95 instead of McNemar */
};

struct harness_config {
    char *source; /* "built-in demo configuration" or the file's path */
    char *root;   /* directory relative paths are resolved against */
    struct harness_checkpoint *checkpoints;
    size_t n_checkpoints;
    char *dataset;     /* "demo" (the built-in synthetic corpus) or a record store path */
    char *dataset_path; /* resolved store path; NULL for "demo" until the run places it */
    char *split;
    int64_t n;
    uint64_t seed;
    char *codeset_release; /* "demo" = the embedded demo code set */
    char *codeset_db;      /* resolved path, NULL for the embedded demo code set */
    int64_t max_new_tokens;
    int64_t max_prompt_tokens; /* 0: the prompt builder's default budget */
    int64_t few_shot;          /* retrieved examples per prompt (-1: builder default) */
    int count_tokenizer;       /* 1: prompt budgets counted by the checkpoint's tokenizer; 0: by
                                * the builder's estimate, as `nyxaudit dataset prompts` does */
    char *device;              /* "cpu" | "cuda" */
    int64_t tp;                /* tensor-parallel size (cuda) */
    int64_t threads;           /* CPU threads, 0 = all cores */
    int64_t batch;             /* prompts per generate call, 1..HARNESS_DECODE_BATCH */
    struct harness_gate_spec *gates;
    size_t n_gates;
    char *out_dir;   /* resolved output directory */
    char *run_store; /* resolved run store path; NULL = <out_dir>/runs.sqlite */
    int allow_report_text;
    int quiet;
    int64_t shard_index;       /* data-parallel shard: decode only the sampled records whose */
    int64_t shard_count;       /* position p has p % shard_count == shard_index (count <= 1: all) */
};

void harness_config_init(struct harness_config *cfg);
void harness_config_fini(struct harness_config *cfg);

/* The built-in demo configuration: the demo checkpoints in golden/demo (or $NYXAUDIT_DEMO_DIR),
 * the synthetic held-out split, the embedded demo code set and the demo gates. */
int harness_config_default(struct harness_config *cfg, struct ny_err *err);

/* Parse a configuration object (`what` names it in messages; relative paths resolve against
 * root). Members missing from the object keep the built-in defaults, except "checkpoints"
 * which, when given, replaces the demo list. *cfg is written only on success. */
int harness_config_parse(struct json_t *obj, const char *root, const char *what,
                         struct harness_config *cfg, struct ny_err *err);

/* Load and parse a configuration file (JSON); relative paths resolve against its directory. */
int harness_config_load(const char *path, struct harness_config *cfg, struct ny_err *err);

/* Check the invariants: >= 1 checkpoint, unique labels, exactly one baseline, gates naming
 * known checkpoints and metrics, n >= 1, tp >= 1, device known. */
int harness_config_validate(const struct harness_config *cfg, struct ny_err *err);

/* The checkpoint marked baseline, or NULL. */
const struct harness_checkpoint *harness_config_baseline(const struct harness_config *cfg);

/* ---- gates (gates.c) ------------------------------------------------------------------------- */
/* Evaluate every gate against `metrics` (the object `nyxaudit score --json` writes). *out is a
 * new JSON array of {name, kind, checkpoint, metric, rule, evidence, verdict} in configuration
 * order (gates for every candidate expanded in checkpoint order); *failed counts "fail"
 * verdicts. A gate whose evidence is missing from `metrics` fails, naming what is missing. */
int harness_gates_evaluate(const struct harness_config *cfg, struct json_t *metrics,
                           struct json_t **out, int *failed, struct ny_err *err);

/* ---- outputs (outputs.c): everything is rendered from results.json --------------------------- */
/* JUnit XML: one <testcase> per gate; a failed gate has a <failure> with the rule and evidence. */
int harness_junit_render(struct json_t *results, char **out, struct ny_err *err);
/* Markdown summary: verdict, checkpoints, metric table, gates, manifest essentials. */
int harness_summary_render(struct json_t *results, char **out, struct ny_err *err);
/* Write report.pdf and report.html (when built in), junit.xml, summary.md and last results.json
 * into dir, each atomically (results.json last: a failure leaves none claiming completion);
 * append summary.md to $GITHUB_STEP_SUMMARY when that is set. */
int harness_outputs_write(struct json_t *results, const char *dir, struct ny_err *err);
/* XML-escape s into b (&, <, >, ", ' and control characters). */
void harness_xml_escape(struct ny_buf *b, const char *s);

/* ---- run store (store.c): SQLite, WAL, one transaction per committed prediction -------------- */
struct store;

struct store_prediction {
    char *output;          /* raw decoded text (owned) */
    char *output_ids;      /* JSON array of generated ids (owned) */
    int64_t prompt_tokens; /* tokens in the prompt */
    int64_t gen_tokens;    /* tokens generated */
    double ms;             /* wall time of the generation in milliseconds */
    char *codes;           /* parsed codes as JSON {cpt, modifiers, icd, unparseable} (owned;
                            * written by the harness, not read back by store_prediction_get) */
};
void store_prediction_fini(struct store_prediction *p);

/* Open (creating when absent) the run store at path; ":memory:" for tests. */
int store_open(const char *path, struct store **out, struct ny_err *err);
void store_close(struct store *st);

/* Start or resume run `run_key`: the first call records the manifest and `now` as the start
 * time; later calls keep them. *started (owned, ny_free) receives the recorded start time. */
int store_run_begin(struct store *st, const char *run_key, const char *manifest_json,
                    const char *now, char **started, struct ny_err *err);
/* Mark the run finished (the first finish time is kept) with the SHA-256 of its results.json
 * and the results themselves; *finished receives the recorded finish time. */
int store_run_finish(struct store *st, const char *run_key, const char *now,
                     const char *results_json, char **finished, struct ny_err *err);
/* The stored manifest, results and results SHA-256 of a run (each optional, owned). */
int store_run_get(struct store *st, const char *run_key, char **manifest_json,
                  char **results_json, char **results_sha256, struct ny_err *err);

/* Prompts by hash (the SHA-256 of the token ids the model reads). */
int store_prompt_put(struct store *st, const char *prompt_hash, const char *record_id,
                     const char *messages_json, int64_t n_tokens, struct ny_err *err);

/* Cached predictions by cache key. *found is 0 or 1; *p is filled only when found. */
int store_prediction_get(struct store *st, const char *cache_key, struct store_prediction *p,
                         int *found, struct ny_err *err);
/* Insert one prediction and commit it (its own transaction). A key already present is kept. */
int store_prediction_put(struct store *st, const char *cache_key, const char *checkpoint,
                         const char *prompt_hash, const struct store_prediction *p,
                         struct ny_err *err);
/* Number of predictions stored (all runs). */
int store_prediction_count(struct store *st, int64_t *n, struct ny_err *err);

/* What store_merge copied. */
struct store_merge_stats {
    int64_t predictions_added; /* new rows */
    int64_t predictions_same;  /* already present with the same output */
    int64_t prompts_added;
    int64_t runs_added;        /* runs (manifest and start time) new to the target */
};
/* Copy the predictions, prompts and run starts of every shard store into st, all in one
 * transaction (nothing is copied when any shard fails). A shard that is not a run store of this
 * schema is NY_E_FORMAT (NY_E_NOTFOUND when missing); a prediction whose cache key is present with
 * another output or other ids is NY_E_INVALID naming the shard and the key. Rows already present
 * are kept, so merging a shard twice changes nothing; a run present in several stores keeps the
 * earliest start time. File hashes, metrics, results and run items are not copied. */
int store_merge(struct store *st, const char *const *shard_paths, size_t n_shards,
                struct store_merge_stats *stats, struct ny_err *err);

/* Metrics object of a run (the "metrics" member of results.json). */
int store_metrics_put(struct store *st, const char *run_key, const char *metrics_json,
                      struct ny_err *err);

/* File-hash cache keyed by (path, size, mtime, inode) so unchanged 140 GB checkpoints are not
 * re-read on every run; `nyxaudit verify` always rehashes. */
int store_filehash_get(struct store *st, const char *path, char hex[65], int64_t *bytes,
                       struct ny_err *err);

/* All finished runs' results, oldest first, as a new JSON array (for the history page). */
int store_history_get(struct store *st, struct json_t **out, struct ny_err *err);

/* Lookup of a run by its id's hex ("r-<12 hex>" without "r-": a key prefix); *run_key owned. */
int store_run_find(struct store *st, const char *key_prefix, char **run_key, struct ny_err *err);
/* Record which cached prediction each (checkpoint, record) of a finished run used, replacing
 * earlier rows of the run (one transaction). labels/ids/keys are parallel arrays of n. */
int store_run_items_put(struct store *st, const char *run_key, const char *const *labels,
                        const char *const *record_ids, const char *const *cache_keys, size_t n,
                        struct ny_err *err);
/* Visit the items of a run in order: fn(ctx, label, record_id, output or NULL when the cached
 * prediction is missing); a non-zero return stops and is returned. */
int store_run_items_visit(struct store *st, const char *run_key,
                          int (*fn)(void *ctx, const char *label, const char *record_id,
                                    const char *output),
                          void *ctx, struct ny_err *err);

/* ---- the audit pipeline (audit.c) ------------------------------------------------------------ */
/* The decoder the audit drives: the engine (harness_engine_decoder_open) or a fake in tests.
 * Checkpoints are named by their index in the configuration. */
struct harness_decoder {
    void *ctx;
    char backend[16];  /* "cpu", "cuda", or a test's name: part of the prediction cache key */
    char device[128];  /* the device in words, for the manifest */
    /* Prompt ids of a chat (JSON array of {role, content}) for checkpoint ckpt. *ids: ny_free. */
    int (*encode)(void *ctx, size_t ckpt, struct json_t *messages, int32_t **ids, size_t *n,
                  struct ny_err *err);
    /* Greedy decoding of `count` prompts (ids[k], n[k] ids each) for checkpoint ckpt, at most
     * max_new tokens each: fills output, output_ids, prompt_tokens and gen_tokens of out[k]
     * (ms is measured by the harness). Results must not depend on how prompts are batched. */
    int (*generate)(void *ctx, size_t ckpt, const int32_t *const *ids, const size_t *n,
                    size_t count, int64_t max_new, struct store_prediction *out,
                    struct ny_err *err);
    /* Optional token counter for the prompt budget (NULL: the prompt builder's estimate). */
    int (*count)(void *ctx, const char *text, size_t len, size_t *ntokens);
};

/* Outcome of an audit. */
struct harness_audit_outcome {
    int gates_failed;     /* number of failed gates */
    int64_t decoded;      /* predictions decoded by this call */
    int64_t cached;       /* predictions found in the store */
    char run_id[16];      /* "r-" + 12 hex */
    int shard_done;       /* 1: a shard run (cfg->shard_count > 1) decoded its part, no outputs */
};

/* Run the audit of cfg with dec: sample, build prompts, decode every (checkpoint, record) not in
 * the store (each committed as it completes), score, judge the gates and write the outputs into
 * cfg->out_dir. Returns 0 when the run completed (gates may have failed: see out), NY_E_INCOMPLETE
 * when stopped (harness_audit_request_stop, or the test hooks), or an error. Running it again
 * resumes and gives byte-identical outputs. A shard run (cfg->shard_count > 1) decodes only its
 * records, writes no outputs and returns NY_E_INCOMPLETE with out->shard_done set: store_merge
 * of the shard stores, then a run over the merged store, finishes the audit. */
#define HARNESS_DECODE_BATCH 64 /* the most prompts per generate call ("engine": {"batch"}) */
int harness_audit_run(const struct harness_config *cfg, struct harness_decoder *dec,
                      struct harness_audit_outcome *out, struct ny_err *err);
/* Ask a running audit to stop after the prediction in flight (async-signal-safe). */
void harness_audit_request_stop(void);

/* The engine decoder for cfg's checkpoints: each base model loaded once, adapters chosen per
 * request. Close with harness_engine_decoder_close. */
int harness_engine_decoder_open(const struct harness_config *cfg, struct harness_decoder **out,
                                struct ny_err *err);
void harness_engine_decoder_close(struct harness_decoder *dec);

/* `nyxaudit verify DIR`: recompute the checkpoint files' hashes and compare them with the
 * manifest; check results.json against the run store (its SHA-256, the manifest, every
 * prediction) and recompute the metrics from the recorded predictions. Writes one line per check
 * to f and the number of failed checks to *failures. Returns 0 when the checks could be made
 * (whatever their outcome), or an error (not a run directory, malformed results.json, no store). */
int harness_verify_dir(const char *dir, const char *store_path, FILE *f, int *failures,
                       struct ny_err *err);

#endif /* NY_HARNESS_H */
