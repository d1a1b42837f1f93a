/* audit_int.h — private to the harness library: the manifest builder and helpers the audit
 * pipeline (audit.c), the engine decoder (audit_engine.c) and verify share. */
#ifndef NY_HARNESS_AUDIT_INT_H
#define NY_HARNESS_AUDIT_INT_H

#include <jansson.h>

#include "harness.h"

struct dataset_store;
struct codeset_db;
struct dataset_record;
struct dataset_prompt;

/* Hash the weight, adapter and tokenizer files of every checkpoint (through the store's file-hash
 * cache when st is not NULL). Appends {"path", "sha256", "bytes"} rows to files (each directory
 * once) and writes one key per checkpoint: SHA-256 over its model and adapter files' names and
 * hashes (keys[i] is 65 bytes). Missing directories or files are NY_E_NOTFOUND naming them. */
int harness_manifest_files(struct store *st, const struct harness_config *cfg, json_t *files,
                           char (*keys)[65], struct ny_err *err);

/* Is `name` a file the manifest hashes (weights, configs, tokenizer files)? */
int harness_manifest_file_wanted(const char *name);

/* UTC time as "YYYY-MM-DDTHH:MM:SSZ": $SOURCE_DATE_EPOCH when set (reproducible tests), else
 * now. */
void harness_now(char out[32]);

/* SHA-256 hex of the canonical (sorted, compact) serialisation of v. 0 or NY_E_NOMEM. */
int harness_json_sha256(const json_t *v, char hex[65]);

/* Everything one audit holds; freed by audit_fini. */
struct audit {
    const struct harness_config *cfg;
    struct harness_decoder *dec;
    struct store *st;
    struct dataset_store *ds;
    struct codeset_db *cs;
    char release[64];
    char codeset_sha[65];
    char **ids;                      /* sampled record ids, n */
    size_t n;
    struct dataset_record **recs;    /* n */
    struct dataset_prompt **prompts; /* n */
    size_t blocked[3];
    char (*ckeys)[65];               /* per checkpoint: key over its files */
    json_t *files, *manifest;
    char run_key[65];
    char *started;
    char **outputs;                  /* [ckpt * n + i], owned */
    char **cache_keys;               /* [ckpt * n + i], owned */
    struct harness_audit_outcome out;
};

/* audit_data.c: each fills its part of *a and of a->manifest. */
int harness_audit_open_dataset(struct audit *a, struct ny_err *err);
int harness_audit_load_sample(struct audit *a, json_t *dsinfo, struct ny_err *err);
int harness_audit_open_codeset(struct audit *a, struct ny_err *err);
/* dataset_sha256 of a manifest: SHA-256 over (id, record hash) of every record of the split, in
 * sampling order with seed 0. */
int harness_dataset_sha256(struct dataset_store *ds, const char *split, char hex[65],
                           struct ny_err *err);
/* The embedded demo code set (datasets' dataset_synth_codes()) imported into an in-memory
 * database as `release`; sha receives the SHA-256 of its rows. */
int harness_codeset_open_demo(const char *release, struct codeset_db **out, char sha[65],
                              struct ny_err *err);
int harness_audit_build_prompts(struct audit *a, struct ny_err *err);

#endif
