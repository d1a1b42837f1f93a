/* audit_data.c — the data side of an audit: the record store (the demo corpus made on first use),
 * the deterministic sample and its hashes, the code set, and the assembled prompts. */
#include <jansson.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "audit_int.h"
#include "datasets.h"
#include "engine.h"
#include "metrics.h"

/* ---- data: records, sample, code set --------------------------------------------------------- */
int harness_audit_open_dataset(struct audit *a, struct ny_err *err)
{
    const struct harness_config *cfg = a->cfg;
    int rc;
    if (!strcmp(cfg->dataset, "demo")) {
        char *p = ny_path_join(cfg->out_dir, "demo-records.sqlite");
        if (!p)
            return NY_ERR(err, NY_E_NOMEM, "out of memory");
        rc = dataset_store_open(p, &a->ds, err);
        ny_free(p);
        if (!rc)
            rc = dataset_store_create_demo(a->ds, err);
        return rc;
    }
    if (!ny_file_exists(cfg->dataset_path))
        return NY_ERR(err, NY_E_NOTFOUND, "dataset store %s not found", cfg->dataset_path);
    return dataset_store_open(cfg->dataset_path, &a->ds, err);
}

/* dataset_sha256: over (id, record hash) of every record of the split, in sampling order. */
int harness_dataset_sha256(struct dataset_store *ds, const char *split, char hex[65],
                           struct ny_err *err)
{
    char **all = NULL;
    size_t n = 0, count = 0;
    int rc = dataset_store_count(ds, split, &count, err);
    if (!rc)
        rc = dataset_store_sample(ds, split, count, 0, &all, &n, err);
    if (rc)
        return rc;
    struct ny_sha256 h;
    ny_sha256_init(&h);
    for (size_t i = 0; i < n && !rc; i++) {
        struct dataset_record *r = NULL;
        rc = dataset_record_get(ds, all[i], &r, err);
        if (!rc) {
            ny_sha256_update(&h, r->id, strlen(r->id) + 1);
            ny_sha256_update(&h, r->record_hash, 64);
        }
        dataset_record_destroy(r);
    }
    dataset_ids_free(all, n);
    uint8_t d[32];
    ny_sha256_final(&h, d);
    ny_hex_encode(d, 32, hex);
    return rc;
}

int harness_audit_load_sample(struct audit *a, json_t *dsinfo, struct ny_err *err)
{
    const struct harness_config *cfg = a->cfg;
    size_t count = 0;
    int rc = dataset_store_count(a->ds, cfg->split, &count, err);
    if (rc)
        return rc;
    if (count == 0)
        return NY_ERR(err, NY_E_NOTFOUND, "dataset %s has no records in split \"%s\"",
                      cfg->dataset, cfg->split);
    if ((rc = dataset_store_sample(a->ds, cfg->split, (size_t)cfg->n, cfg->seed, &a->ids, &a->n,
                                   err)))
        return rc;
    if ((size_t)cfg->n > count)
        ny_log_warn("split \"%s\" of dataset %s has %zu records: n = %lld takes all of them",
                    cfg->split, cfg->dataset, count, (long long)cfg->n);
    a->recs = ny_calloc(a->n, sizeof *a->recs);
    if (!a->recs)
        return NY_ERR(err, NY_E_NOMEM, "out of memory");
    struct ny_sha256 h;
    ny_sha256_init(&h);
    for (size_t i = 0; i < a->n && !rc; i++) {
        ny_sha256_update(&h, a->ids[i], strlen(a->ids[i]) + 1);
        rc = dataset_record_get(a->ds, a->ids[i], &a->recs[i], err);
        if (!rc && !a->recs[i]->has_gold)
            rc = NY_ERR(err, NY_E_INVALID, "dataset %s: record %s has no gold codes",
                        cfg->dataset, a->ids[i]);
    }
    if (rc)
        return rc;
    uint8_t d[32];
    char ids_hex[65], ds_hex[65];
    ny_sha256_final(&h, d);
    ny_hex_encode(d, 32, ids_hex);
    if ((rc = harness_dataset_sha256(a->ds, cfg->split, ds_hex, err)))
        return rc;
    json_object_set_new(dsinfo, "split_records", json_integer((json_int_t)count));
    json_object_set_new(a->manifest, "dataset_sha256", json_string(ds_hex));
    json_object_set_new(a->manifest, "sample_ids_sha256", json_string(ids_hex));
    return NY_OK;
}

int harness_codeset_open_demo(const char *release, struct codeset_db **out, char sha[65],
                              struct ny_err *err)
{
    const struct dataset_code *codes;
    size_t n = dataset_synth_codes(&codes);
    struct codeset_row *rows = ny_calloc(n ? n : 1, sizeof *rows);
    if (!rows)
        return NY_ERR(err, NY_E_NOMEM, "out of memory");
    struct ny_sha256 h;
    ny_sha256_init(&h);
    for (size_t i = 0; i < n; i++) {
        rows[i] = (struct codeset_row){codes[i].system, codes[i].code, codes[i].billable,
                                       codes[i].label};
        char line[64];
        int len = snprintf(line, sizeof line, "%s\t%s\t%d\n", codes[i].system, codes[i].code,
                           codes[i].billable);
        ny_sha256_update(&h, line, (size_t)len);
    }
    uint8_t d[32];
    ny_sha256_final(&h, d);
    struct codeset_db *db = NULL;
    int rc = codeset_open(":memory:", &db, err);
    if (!rc)
        rc = codeset_import_rows(db, release, "2025-10-01", rows, n, err);
    ny_free(rows);
    if (rc) {
        codeset_close(db);
        return rc;
    }
    ny_hex_encode(d, 32, sha);
    *out = db;
    return NY_OK;
}

int harness_audit_open_codeset(struct audit *a, struct ny_err *err)
{
    const struct harness_config *cfg = a->cfg;
    int rc;
    if (!cfg->codeset_db) {
        rc = harness_codeset_open_demo(cfg->codeset_release, &a->cs, a->codeset_sha, err);
        if (!rc)
            snprintf(a->release, sizeof a->release, "%s", cfg->codeset_release);
        return rc;
    }
    if (!ny_file_exists(cfg->codeset_db))
        return NY_ERR(err, NY_E_NOTFOUND, "code-set database %s not found", cfg->codeset_db);
    int64_t bytes;
    if ((rc = store_filehash_get(a->st, cfg->codeset_db, a->codeset_sha, &bytes, err)) ||
        (rc = codeset_open(cfg->codeset_db, &a->cs, err)))
        return rc;
    return codeset_release_find(a->cs, cfg->codeset_release, NULL, a->release,
                                sizeof a->release, err);
}

/* ---- prompts --------------------------------------------------------------------------------- */
static int count_tokens(void *ctx, const char *text, size_t len, size_t *ntokens)
{
    struct harness_decoder *dec = ctx;
    return dec->count(dec->ctx, text, len, ntokens);
}

int harness_audit_build_prompts(struct audit *a, struct ny_err *err)
{
    const struct harness_config *cfg = a->cfg;
    struct dataset_prompt_opts o;
    dataset_prompt_opts_init(&o);
    if (cfg->few_shot >= 0)
        o.k = (size_t)cfg->few_shot;
    o.max_prompt_tokens = (size_t)cfg->max_prompt_tokens;
    if (a->dec->count && cfg->count_tokenizer) {
        o.count = count_tokens;
        o.count_ctx = a->dec;
    }
    a->prompts = ny_calloc(a->n, sizeof *a->prompts);
    if (!a->prompts)
        return NY_ERR(err, NY_E_NOMEM, "out of memory");
    struct ny_sha256 h;
    ny_sha256_init(&h);
    int rc = NY_OK;
    for (size_t i = 0; i < a->n && !rc; i++) {
        rc = dataset_prompt_build(a->ds, a->ids[i], &o, &a->prompts[i], err);
        if (rc)
            break;
        struct dataset_prompt *p = a->prompts[i];
        ny_sha256_update(&h, p->messages_json, strlen(p->messages_json) + 1);
        a->blocked[0] += p->blocked_hash;
        a->blocked[1] += p->blocked_cosine;
        a->blocked[2] += p->blocked_fingerprint;
    }
    if (rc)
        return rc;
    uint8_t d[32];
    char hex[65], rules[65], sys[65];
    ny_sha256_final(&h, d);
    ny_hex_encode(d, 32, hex);
    const char *r = o.rules_text ? o.rules_text : dataset_default_rules();
    ny_sha256_hex(r, strlen(r), rules);
    ny_sha256_hex(dataset_system_message(), strlen(dataset_system_message()), sys);
    json_t *pb = json_pack("{s:s,s:I,s:I,s:I,s:f,s:I,s:I,s:s,s:s,s:s}", "train_split",
                           o.train_split, "k", (json_int_t)o.k, "K", (json_int_t)o.K,
                           "vote_neighbours", (json_int_t)o.vote_neighbours, "cosine_threshold",
                           o.cosine_threshold, "max_prompt_tokens",
                           (json_int_t)o.max_prompt_tokens, "max_report_tokens",
                           (json_int_t)o.max_report_tokens, "token_counter",
                           o.count ? "tokenizer" : "estimate", "rules_sha256", rules,
                           "system_sha256", sys);
    json_object_set_new(a->manifest, "prompt_builder", pb);
    json_object_set_new(a->manifest, "prompts_sha256", json_string(hex));
    json_object_set_new(a->manifest, "leakage_blocked",
                        json_pack("{s:I,s:I,s:I}", "hash", (json_int_t)a->blocked[0], "cosine",
                                  (json_int_t)a->blocked[1], "fingerprint",
                                  (json_int_t)a->blocked[2]));
    return NY_OK;
}

