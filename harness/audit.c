/* audit.c — the audit pipeline: sample → prompts → tokens → greedy decoding per checkpoint (each
 * prediction committed to the run store as it completes, cached by checkpoint files, prompt,
 * decoding settings and engine build) → metrics → gates → results.json and the other outputs. */
#include <jansson.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "audit_int.h"
#include "harness_engine_id.h"
#include "datasets.h"
#include "engine.h"
#include "metrics.h"
#if HARNESS_HAVE_REPORTS
#include "reports.h"
#endif

static volatile sig_atomic_t stop_requested;

void harness_audit_request_stop(void)
{
    stop_requested = 1;
}

static void audit_fini(struct audit *a)
{
    size_t m = a->cfg->n_checkpoints;
    for (size_t i = 0; i < a->n; i++) {
        if (a->recs)
            dataset_record_destroy(a->recs[i]);
        if (a->prompts)
            dataset_prompt_destroy(a->prompts[i]);
    }
    for (size_t i = 0; a->outputs && i < m * a->n; i++) {
        ny_free(a->outputs[i]);
        ny_free(a->cache_keys[i]);
    }
    ny_free(a->outputs);
    ny_free(a->cache_keys);
    ny_free(a->recs);
    ny_free(a->prompts);
    if (a->ids)
        dataset_ids_free(a->ids, a->n);
    ny_free(a->ckeys);
    json_decref(a->files);
    json_decref(a->manifest);
    ny_free(a->started);
    codeset_close(a->cs);
    dataset_store_close(a->ds);
    store_close(a->st);
}

/* ---- manifest -------------------------------------------------------------------------------- */
static json_t *gates_json(const struct harness_config *cfg)
{
    static const char *const kinds[] = {"floor", "no_regression", "ceiling"};
    json_t *arr = json_array();
    for (size_t i = 0; i < cfg->n_gates; i++) {
        const struct harness_gate_spec *g = &cfg->gates[i];
        json_array_append_new(arr, json_pack("{s:s,s:s,s:s?,s:s,s:f,s:b,s:f,s:f,s:b}", "name",
                                             g->name, "kind", kinds[g->kind], "checkpoint",
                                             g->checkpoint, "metric", g->metric, "threshold",
                                             g->threshold, "on_ci_low", g->on_ci_low, "margin",
                                             g->margin, "alpha", g->alpha, "use_ci", g->use_ci));
    }
    return arr;
}

static json_t *checkpoints_json(const struct harness_config *cfg)
{
    json_t *arr = json_array();
    for (size_t i = 0; i < cfg->n_checkpoints; i++) {
        const struct harness_checkpoint *c = &cfg->checkpoints[i];
        json_array_append_new(arr, json_pack("{s:s,s:b,s:s,s:s?}", "label", c->label, "baseline",
                                             c->baseline, "model", c->model, "adapter",
                                             c->adapter));
    }
    return arr;
}

static json_t *engine_json(const struct audit *a)
{
    struct engine_build_info bi;
    engine_build_info_get(&bi);
    return json_pack("{s:s,s:s,s:I,s:s,s:s,s:s,s:s,s:s}", "backend", a->dec->backend, "device",
                     a->dec->device, "tp", (json_int_t)a->cfg->tp, "cuda", bi.cuda_runtime,
                     "cublas", bi.cublas, "nccl", bi.nccl, "blas", bi.blas, "sources_sha256",
                     HARNESS_ENGINE_SOURCES_SHA256);
}

/* The manifest's fixed parts (the data parts are added as they are computed). */
static int manifest_begin(struct audit *a, json_t **dsinfo, struct ny_err *err)
{
    const struct harness_config *cfg = a->cfg;
    char host[256] = "";
    if (gethostname(host, sizeof host - 1))
        strcpy(host, "unknown");
    a->files = json_array();
    a->ckeys = ny_calloc(cfg->n_checkpoints, sizeof *a->ckeys);
    *dsinfo = json_pack("{s:s,s:s,s:I,s:I}", "store", cfg->dataset, "split", cfg->split, "n",
                        (json_int_t)cfg->n, "seed", (json_int_t)cfg->seed);
    a->manifest = json_pack("{s:s,s:s,s:o,s:{s:I},s:{s:s,s:s},s:o,s:s}", "root",
                            cfg->root ? cfg->root : "", "host", host, "dataset", *dsinfo,
                            "decoding", "max_new_tokens", (json_int_t)cfg->max_new_tokens,
                            "harness", "version", ny_version(), "commit", ny_git_commit(),
                            "engine", engine_json(a), "config", cfg->source);
    if (!a->files || !a->ckeys || !a->manifest)
        return NY_ERR(err, NY_E_NOMEM, "out of memory");
    json_object_set_new(json_object_get(a->manifest, "decoding"), "greedy", json_true());
    if (!strcmp(cfg->dataset, "demo"))
        json_object_set_new(a->manifest, "seeds",
                            json_pack("{s:I,s:I,s:I,s:I}", "sample", (json_int_t)cfg->seed,
                                      "bootstrap", (json_int_t)cfg->seed, "demo_heldout",
                                      (json_int_t)DATASET_DEMO_SEED_HELDOUT, "demo_train",
                                      (json_int_t)DATASET_DEMO_SEED_TRAIN));
    else
        json_object_set_new(a->manifest, "seeds",
                            json_pack("{s:I,s:I}", "sample", (json_int_t)cfg->seed, "bootstrap",
                                      (json_int_t)cfg->seed));
    return NY_OK;
}

/* The run key: SHA-256 over everything that determines the results (not host or times). */
static int manifest_finish(struct audit *a, struct ny_err *err)
{
    json_t *keys = json_object();
    for (size_t i = 0; i < a->cfg->n_checkpoints; i++)
        json_object_set_new(keys, a->cfg->checkpoints[i].label, json_string(a->ckeys[i]));
    json_object_set(a->manifest, "files", a->files);
    json_object_set_new(a->manifest, "checkpoint_keys", keys);
    json_object_set_new(a->manifest, "codeset",
                        json_pack("{s:s,s:s,s:s}", "release", a->release, "sha256",
                                  a->codeset_sha, "source",
                                  a->cfg->codeset_db ? a->cfg->codeset_db : "embedded demo"));
    json_t *k = json_deep_copy(a->manifest);
    if (!k)
        return NY_ERR(err, NY_E_NOMEM, "out of memory");
    json_object_del(k, "host");
    json_object_del(k, "root");
    json_object_del(k, "config");
    json_object_set_new(k, "checkpoints", checkpoints_json(a->cfg));
    json_object_set_new(k, "gates", gates_json(a->cfg));
    json_object_set_new(k, "allow_report_text", json_boolean(a->cfg->allow_report_text));
    int rc = harness_json_sha256(k, a->run_key);
    json_decref(k);
    if (rc)
        return NY_ERR(err, rc, "out of memory");
    snprintf(a->out.run_id, sizeof a->out.run_id, "r-%.12s", a->run_key);
    return NY_OK;
}

/* ---- decoding -------------------------------------------------------------------------------- */
struct progress {
    struct timespec t0, last;
    int64_t done, cached, total, tokens, prompt_tokens; /* decoded here, from the store, all */
    int quiet;
};

static double elapsed(const struct timespec *a, const struct timespec *b)
{
    return (double)(b->tv_sec - a->tv_sec) + 1e-9 * (double)(b->tv_nsec - a->tv_nsec);
}

static void progress_tick(struct progress *p, const char *label, int force)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    if (p->quiet || (!force && elapsed(&p->last, &now) < 1.0))
        return;
    p->last = now;
    double t = elapsed(&p->t0, &now);
    double rate = t > 0 ? (double)p->done / t : 0;
    int64_t left = p->total - p->done - p->cached;
    double eta = rate > 0 ? (double)left / rate : 0;
    fprintf(stderr, "nyxaudit: %s: %lld/%lld predictions done (%lld from the store), "
            "%.0f prompt + %.1f generated tokens/s, ETA %dm%02ds\n", label,
            (long long)(p->done + p->cached), (long long)p->total, (long long)p->cached,
            t > 0 ? (double)p->prompt_tokens / t : 0.0, t > 0 ? (double)p->tokens / t : 0.0,
            (int)(eta / 60), (int)eta % 60);
}

static int64_t env_int(const char *name)
{
    const char *s = getenv(name);
    return s && s[0] ? strtoll(s, NULL, 10) : 0;
}

/* The cache key of one prediction: the checkpoint's files, the prompt's token ids, the decoding
 * settings and the engine build (its sources, backend, tensor-parallel size and the libraries the
 * numbers depend on). Nothing else, so an unchanged checkpoint is never decoded twice. */
static void cache_key(const struct audit *a, size_t c, const char *prompt_hash, char key[65])
{
    struct engine_build_info bi;
    engine_build_info_get(&bi);
    struct ny_buf b;
    ny_buf_init(&b);
    ny_buf_printf(&b, "nyxaudit.prediction/2\nckpt %s\nprompt %s\nmax_new_tokens %lld greedy\n"
                      "engine %s %s tp %lld cuda %s cublas %s nccl %s blas %s\n",
                  a->ckeys[c], prompt_hash, (long long)a->cfg->max_new_tokens,
                  HARNESS_ENGINE_SOURCES_SHA256, a->dec->backend, (long long)a->cfg->tp,
                  bi.cuda_runtime, bi.cublas, bi.nccl, bi.blas);
    ny_sha256_hex(b.data ? b.data : "", b.len, key);
    ny_buf_fini(&b);
}

/* Test hooks, checked after each committed prediction: NYXAUDIT_TEST_KILL_AFTER=k sends SIGKILL
 * to the process after the k-th prediction decoded by this process is committed (a kill -9 at
 * that moment); NYXAUDIT_TEST_STOP_AFTER=k stops there (exit 3). */
static int after_commit(struct audit *a, struct ny_err *err)
{
    int64_t kill_after = env_int("NYXAUDIT_TEST_KILL_AFTER");
    int64_t stop_after = env_int("NYXAUDIT_TEST_STOP_AFTER");
    if (kill_after > 0 && a->out.decoded >= kill_after)
        raise(SIGKILL);
    if (stop_after > 0 && a->out.decoded >= stop_after)
        return NY_ERR(err, NY_E_INCOMPLETE, "stopped after %lld new predictions; run the same "
                      "command again to resume", (long long)a->out.decoded);
    return NY_OK;
}

/* SIGINT/SIGTERM: checked once the batch in flight is committed. */
static int after_batch(struct audit *a, struct ny_err *err)
{
    if (!stop_requested)
        return NY_OK;
    return NY_ERR(err, NY_E_INCOMPLETE, "interrupted after %lld new predictions (all committed); "
                  "run the same command again to resume", (long long)a->out.decoded);
}

/* Prompts of one checkpoint waiting to be decoded together. */
struct pending {
    size_t idx[HARNESS_DECODE_BATCH];
    int32_t *ids[HARNESS_DECODE_BATCH];
    size_t n[HARNESS_DECODE_BATCH];
    char ph[HARNESS_DECODE_BATCH][65];
    size_t count;
};

static void pending_clear(struct pending *q)
{
    for (size_t k = 0; k < q->count; k++)
        ny_free(q->ids[k]);
    q->count = 0;
}

/* The parsed codes of an output line, as stored with the prediction. */
static char *codes_json(const char *line)
{
    struct metrics_codes c;
    metrics_codes_init(&c);
    if (metrics_codes_parse(line, strlen(line), &c, NULL)) {
        metrics_codes_fini(&c);
        return NULL;
    }
    json_t *o = json_pack("{s:[],s:[],s:[],s:I}", "cpt", "modifiers", "icd", "unparseable",
                          (json_int_t)c.n_unparseable);
    for (size_t i = 0; o && i < c.n_cpt; i++)
        json_array_append_new(json_object_get(o, "cpt"), json_string(c.cpt[i].s));
    for (size_t i = 0; o && i < c.n_mod; i++)
        json_array_append_new(json_object_get(o, "modifiers"), json_string(c.mod[i].s));
    for (size_t i = 0; o && i < c.n_icd; i++)
        json_array_append_new(json_object_get(o, "icd"), json_string(c.icd[i].s));
    metrics_codes_fini(&c);
    char *s = o ? ny_json_dumps(o, 0) : NULL;
    json_decref(o);
    return s;
}

/* Decode the pending prompts of checkpoint c and commit each prediction. */
static int flush(struct audit *a, size_t c, struct pending *q, struct progress *pg,
                 struct ny_err *err)
{
    if (q->count == 0)
        return NY_OK;
    struct store_prediction out[HARNESS_DECODE_BATCH];
    memset(out, 0, sizeof out);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int rc = a->dec->generate(a->dec->ctx, c, (const int32_t *const *)q->ids, q->n, q->count,
                              a->cfg->max_new_tokens, out, err);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    for (size_t k = 0; k < q->count && !rc; k++) {
        size_t slot = c * a->n + q->idx[k];
        out[k].ms = 1e3 * elapsed(&t0, &t1) / (double)q->count;
        if (!out[k].output)
            rc = NY_ERR(err, NY_E_INTERNAL, "decoder returned no output");
        else if (!(out[k].codes = codes_json(out[k].output)))
            rc = NY_ERR(err, NY_E_NOMEM, "out of memory");
        if (!rc)
            rc = store_prediction_put(a->st, a->cache_keys[slot], a->cfg->checkpoints[c].label,
                                      q->ph[k], &out[k], err);
        if (rc) {
            ny_err_prefix(err, "%s, record %s: ", a->cfg->checkpoints[c].label,
                          a->ids[q->idx[k]]);
            break;
        }
        a->outputs[slot] = out[k].output;
        out[k].output = NULL;
        a->out.decoded++;
        pg->done++;
        pg->tokens += out[k].gen_tokens;
        pg->prompt_tokens += out[k].prompt_tokens;
        rc = after_commit(a, err);
    }
    for (size_t k = 0; k < q->count; k++)
        store_prediction_fini(&out[k]);
    pending_clear(q);
    if (!rc)
        progress_tick(pg, a->cfg->checkpoints[c].label, 0);
    return rc ? rc : after_batch(a, err);
}

/* Tokenize record i for checkpoint c; take its prediction from the store or queue it. */
static int prepare_one(struct audit *a, size_t c, size_t i, struct pending *q,
                       struct progress *pg, struct ny_err *err)
{
    json_t *msgs = NULL;
    const char *mj = a->prompts[i]->messages_json;
    int32_t *ids = NULL;
    size_t n = 0;
    int rc = ny_json_load_buf(mj, strlen(mj), a->ids[i], &msgs, err);
    if (!rc)
        rc = a->dec->encode(a->dec->ctx, c, msgs, &ids, &n, err);
    json_decref(msgs);
    char ph[65], key[65];
    if (!rc) {
        ny_sha256_hex(ids, n * sizeof *ids, ph);
        cache_key(a, c, ph, key);
        rc = store_prompt_put(a->st, ph, a->ids[i], mj, (int64_t)n, err);
    }
    size_t slot = c * a->n + i;
    if (!rc && !(a->cache_keys[slot] = ny_strdup(key)))
        rc = NY_ERR(err, NY_E_NOMEM, "out of memory");
    struct store_prediction p = {0};
    int found = 0;
    if (!rc)
        rc = store_prediction_get(a->st, key, &p, &found, err);
    if (rc) {
        ny_free(ids);
        ny_err_prefix(err, "%s, record %s: ", a->cfg->checkpoints[c].label, a->ids[i]);
        return rc;
    }
    if (found) {
        a->outputs[slot] = p.output;
        p.output = NULL;
        store_prediction_fini(&p);
        ny_free(ids);
        a->out.cached++;
        pg->cached++;
        return NY_OK;
    }
    q->idx[q->count] = i;
    q->ids[q->count] = ids;
    q->n[q->count] = n;
    memcpy(q->ph[q->count], ph, 65);
    q->count++;
    return q->count >= (size_t)a->cfg->batch ? flush(a, c, q, pg, err) : NY_OK;
}

static int decode_all(struct audit *a, struct ny_err *err)
{
    size_t m = a->cfg->n_checkpoints;
    a->outputs = ny_calloc(m * a->n, sizeof *a->outputs);
    a->cache_keys = ny_calloc(m * a->n, sizeof *a->cache_keys);
    if (!a->outputs || !a->cache_keys)
        return NY_ERR(err, NY_E_NOMEM, "out of memory");
    int64_t nshard = a->cfg->shard_count > 1 ? a->cfg->shard_count : 1;
    size_t mine = (size_t)((int64_t)a->n / nshard +
                           (a->cfg->shard_index < (int64_t)a->n % nshard ? 1 : 0));
    struct progress pg = {.total = (int64_t)(m * mine), .quiet = a->cfg->quiet};
    clock_gettime(CLOCK_MONOTONIC, &pg.t0);
    pg.last = pg.t0;
    struct pending q = {.count = 0};
    int rc = NY_OK;
    for (size_t c = 0; c < m && !rc; c++) {
        for (size_t i = 0; i < a->n && !rc; i++)
            if ((int64_t)i % nshard == (nshard > 1 ? a->cfg->shard_index : 0))
                rc = prepare_one(a, c, i, &q, &pg, err);
        if (!rc)
            rc = flush(a, c, &q, &pg, err);
    }
    pending_clear(&q);
    if (!rc && pg.done)
        progress_tick(&pg, "all checkpoints", 1);
    return rc;
}

/* ---- scoring and results --------------------------------------------------------------------- */
static int score(struct audit *a, json_t **metrics, struct ny_err *err)
{
    size_t m = a->cfg->n_checkpoints;
    struct metrics_gold *gold = ny_calloc(a->n, sizeof *gold);
    struct metrics_model *models = ny_calloc(m, sizeof *models);
    if (!gold || !models) {
        ny_free(gold);
        ny_free(models);
        return NY_ERR(err, NY_E_NOMEM, "out of memory");
    }
    for (size_t i = 0; i < a->n; i++) {
        const struct dataset_record *r = a->recs[i];
        gold[i] = (struct metrics_gold){.id = r->id,
                                        .cpt = (const char *const *)r->cpt,
                                        .n_cpt = r->ncpt,
                                        .modifiers = (const char *const *)r->modifiers,
                                        .n_modifiers = r->nmodifiers,
                                        .icd = (const char *const *)r->icd,
                                        .n_icd = r->nicd,
                                        .modality = r->modality};
    }
    for (size_t c = 0; c < m; c++)
        models[c] = (struct metrics_model){a->cfg->checkpoints[c].label,
                                           (const char *const *)a->outputs + c * a->n};
    struct metrics_input in = {.gold = gold, .n = a->n, .models = models, .m = m, .db = a->cs,
                               .release = a->release, .seed = a->cfg->seed};
    int rc = metrics_evaluate(&in, metrics, err);
    ny_free(gold);
    ny_free(models);
    return rc;
}

/* The first `max` bytes of s, cut at a UTF-8 boundary. */
static json_t *excerpt(const char *s, size_t max)
{
    size_t n = strlen(s);
    if (n > max) {
        n = max;
        while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
            n--;
    }
    return json_stringn(s, n);
}

static json_t *records_json(const struct audit *a)
{
    json_t *arr = json_array();
    for (size_t i = 0; i < a->n; i++) {
        const struct dataset_record *r = a->recs[i];
        json_t *preds = json_object();
        for (size_t c = 0; c < a->cfg->n_checkpoints; c++)
            json_object_set_new(preds, a->cfg->checkpoints[c].label,
                                json_string(a->outputs[c * a->n + i]));
        json_array_append_new(
            arr, json_pack("{s:s,s:s?,s:s?,s:s,s:o,s:o}", "id", r->id, "modality", r->modality,
                           "primary_cpt", r->ncpt ? r->cpt[0] : NULL, "gold",
                           r->gold_line ? r->gold_line : "", "predictions", preds,
                           "report_excerpt",
                           a->cfg->allow_report_text ? excerpt(r->report, 400) : json_null()));
    }
    return arr;
}

static json_t *results_json(struct audit *a, json_t *metrics, json_t *gates, int failed)
{
    const struct harness_config *cfg = a->cfg;
    json_t *run = json_pack("{s:s,s:s,s:s,s:s,s:s,s:I,s:I,s:s,s:b}", "id", a->out.run_id,
                            "started", a->started, "finished", a->started, "dataset",
                            strcmp(cfg->dataset, "demo") ? cfg->dataset : "demo-synthetic",
                            "split", cfg->split, "n", (json_int_t)a->n, "seed",
                            (json_int_t)cfg->seed, "release", a->release, "allow_report_text",
                            cfg->allow_report_text);
    return json_pack("{s:s,s:o,s:o,s:O,s:O,s:O,s:s,s:o}", "schema", "nyxaudit.results/1", "run",
                     run, "checkpoints", checkpoints_json(cfg), "manifest", a->manifest,
                     "metrics", metrics, "gates", gates, "verdict", failed ? "fail" : "pass",
                     "records", records_json(a));
}

/* history.html in the output directory: every finished run of the store, over time. */
static int write_history(struct audit *a, struct ny_err *err)
{
#if HARNESS_HAVE_REPORTS
    json_t *runs = NULL;
    int rc = store_history_get(a->st, &runs, err);
    size_t n = rc ? 0 : json_array_size(runs);
    const json_t **v = n ? ny_calloc(n, sizeof *v) : NULL;
    if (!rc && n && !v)
        rc = NY_ERR(err, NY_E_NOMEM, "out of memory");
    for (size_t i = 0; !rc && i < n; i++)
        v[i] = json_array_get(runs, i);
    char *path = rc || !n ? NULL : ny_path_join(a->cfg->out_dir, "history.html");
    if (!rc && n)
        rc = path ? report_history_html_write(v, n, path, err)
                  : NY_ERR(err, NY_E_NOMEM, "out of memory");
    ny_free(path);
    ny_free(v);
    json_decref(runs);
    return rc;
#else
    (void)a;
    (void)err;
    return NY_OK;
#endif
}

/* Record the run's items and its finish, and write the outputs. */
static int finish(struct audit *a, json_t *results, struct ny_err *err)
{
    size_t m = a->cfg->n_checkpoints, total = m * a->n;
    const char **labels = ny_calloc(total ? total : 1, sizeof *labels);
    if (!labels)
        return NY_ERR(err, NY_E_NOMEM, "out of memory");
    for (size_t k = 0; k < total; k++)
        labels[k] = a->cfg->checkpoints[k / a->n].label;
    const char **rids = ny_calloc(total ? total : 1, sizeof *rids);
    int rc = rids ? NY_OK : NY_ERR(err, NY_E_NOMEM, "out of memory");
    for (size_t k = 0; !rc && k < total; k++)
        rids[k] = a->ids[k % a->n];
    if (!rc)
        rc = store_run_items_put(a->st, a->run_key, labels, rids,
                                 (const char *const *)a->cache_keys, total, err);
    ny_free(labels);
    ny_free(rids);
    char now[32], *finished = NULL;
    harness_now(now);
    if (!rc)
        rc = store_run_finish(a->st, a->run_key, now, "", &finished, err);
    if (rc)
        return rc;
    json_object_set_new(json_object_get(results, "run"), "finished", json_string(finished));
    ny_free(finished);
    char *text = ny_json_dumps(results, 2);
    char *mtext = ny_json_dumps(json_object_get(results, "metrics"), 0);
    rc = text && mtext ? NY_OK : NY_ERR(err, NY_E_NOMEM, "out of memory");
    if (!rc)
        rc = store_metrics_put(a->st, a->run_key, mtext, err);
    if (!rc)
        rc = harness_outputs_write(results, a->cfg->out_dir, err);
    if (!rc) { /* the store keeps exactly the bytes of results.json */
        struct ny_buf b;
        ny_buf_init(&b);
        ny_buf_printf(&b, "%s\n", text);
        rc = b.failed ? NY_ERR(err, NY_E_NOMEM, "out of memory")
                      : store_run_finish(a->st, a->run_key, now, b.data, &finished, err);
        ny_free(finished);
        ny_buf_fini(&b);
    }
    if (!rc)
        rc = write_history(a, err);
    ny_free(text);
    ny_free(mtext);
    return rc;
}

/* A progress note on stderr unless --quiet. */
static void note(const struct audit *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void note(const struct audit *a, const char *fmt, ...)
{
    if (a->cfg->quiet)
        return;
    va_list ap;
    va_start(ap, fmt);
    fputs("nyxaudit: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

static int run_pipeline(struct audit *a, struct ny_err *err)
{
    const struct harness_config *cfg = a->cfg;
    json_t *dsinfo = NULL, *metrics = NULL, *gates = NULL, *results = NULL;
    char *store_path = cfg->run_store ? ny_strdup(cfg->run_store)
                                      : ny_path_join(cfg->out_dir, "runs.sqlite");
    int rc = store_path ? ny_mkdir_p(cfg->out_dir, err) : NY_ERR(err, NY_E_NOMEM, "OOM");
    if (rc && rc != NY_E_NOMEM) /* an output directory that cannot be made is a bad --out */
        rc = NY_ERR(err, NY_E_INVALID, "output directory %s cannot be created (%s)",
                    cfg->out_dir, ny_status_name(rc));
    if (!rc)
        rc = store_open(store_path, &a->st, err);
    ny_free(store_path);
    /* Outputs of an earlier run in this directory go: until this run completes, none claims to
     * describe it. */
    static const char *const outputs[] = {"results.json", "junit.xml", "summary.md", "report.pdf",
                                          "report.html"};
    for (size_t i = 0; !rc && i < sizeof outputs / sizeof outputs[0]; i++) {
        char *p = ny_path_join(cfg->out_dir, outputs[i]);
        if (p)
            unlink(p);
        ny_free(p);
    }
    if (!rc)
        rc = manifest_begin(a, &dsinfo, err);
    if (!rc)
        rc = harness_manifest_files(a->st, cfg, a->files, a->ckeys, err);
    if (!rc)
        rc = harness_audit_open_codeset(a, err);
    if (!rc) {
        note(a, "opening the records (%s)%s", cfg->dataset,
             strcmp(cfg->dataset, "demo") ? "" : "; the demo corpus is made on first use");
        rc = harness_audit_open_dataset(a, err);
    }
    if (!rc)
        rc = harness_audit_load_sample(a, dsinfo, err);
    if (!rc) {
        note(a, "building %zu prompts", a->n);
        rc = harness_audit_build_prompts(a, err);
    }
    if (!rc)
        rc = manifest_finish(a, err);
    char now[32], *mtext = NULL;
    harness_now(now);
    if (!rc)
        rc = (mtext = ny_json_dumps(a->manifest, 0)) ? NY_OK : NY_ERR(err, NY_E_NOMEM, "OOM");
    if (!rc)
        rc = store_run_begin(a->st, a->run_key, mtext, now, &a->started, err);
    ny_free(mtext);
    if (!rc && !cfg->quiet)
        fprintf(stderr, "nyxaudit: run %s: %zu records x %zu checkpoints\n", a->out.run_id, a->n,
                cfg->n_checkpoints);
    if (!rc)
        rc = decode_all(a, err);
    if (!rc && cfg->shard_count > 1) { /* a shard: its predictions are in the store; no outputs */
        a->out.shard_done = 1;
        return NY_ERR(err, NY_E_INCOMPLETE, "run %s: shard %lld/%lld done (%lld predictions "
                      "decoded, %lld from the store) in the run store %s%s; merge the shard "
                      "stores (nyxaudit merge --into STORE SHARD...) and run without --shard "
                      "over STORE to finish", a->out.run_id, (long long)cfg->shard_index,
                      (long long)cfg->shard_count, (long long)a->out.decoded,
                      (long long)a->out.cached, cfg->run_store ? cfg->run_store : cfg->out_dir,
                      cfg->run_store ? "" : "/runs.sqlite");
    }
    if (!rc)
        rc = score(a, &metrics, err);
    if (!rc)
        rc = harness_gates_evaluate(cfg, metrics, &gates, &a->out.gates_failed, err);
    if (!rc && !(results = results_json(a, metrics, gates, a->out.gates_failed)))
        rc = NY_ERR(err, NY_E_NOMEM, "out of memory");
    if (!rc)
        rc = finish(a, results, err);
    json_decref(metrics);
    json_decref(gates);
    json_decref(results);
    return rc;
}

int harness_audit_run(const struct harness_config *cfg, struct harness_decoder *dec,
                      struct harness_audit_outcome *out, struct ny_err *err)
{
    struct audit a;
    memset(&a, 0, sizeof a);
    a.cfg = cfg;
    a.dec = dec;
    stop_requested = 0;
    int rc = run_pipeline(&a, err);
    if (!rc || rc == NY_E_INCOMPLETE)
        *out = a.out;
    audit_fini(&a);
    return rc;
}
