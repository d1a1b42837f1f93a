/* verify.c — `nyxaudit verify DIR`: recompute the SHA-256 of every checkpoint file and compare it
 * with the manifest, check results.json against the run store (manifest, results hash, every
 * prediction), and recompute the metrics from the recorded predictions and gold codes. */
#include <jansson.h>
#include <string.h>

#include "audit_int.h"
#include <stdlib.h>
#include <unistd.h>

#include "datasets.h"
#include "metrics.h"
#if HARNESS_HAVE_REPORTS
#include "reports.h"
#endif

struct verify {
    FILE *f;
    int failures;
    json_t *results, *by_id; /* by_id: record id -> record object (borrowed) */
    size_t items;
};

static void report(struct verify *v, int ok, const char *what, const char *detail)
{
    fprintf(v->f, "%s %s%s%s\n", ok ? "ok  " : "FAIL", what, detail ? ": " : "",
            detail ? detail : "");
    v->failures += !ok;
}

/* NULL when the rehashed files equal the manifest's, else a message naming what differs (heap). */
static char *files_diff(const json_t *now, const json_t *want)
{
    if (json_equal(now, want))
        return NULL;
    struct ny_buf b;
    ny_buf_init(&b);
    size_t n = json_array_size(now), m = json_array_size(want), shown = 0;
    for (size_t i = 0; i < n; i++) {
        const json_t *f = json_array_get(now, i);
        const char *path = json_string_value(json_object_get(f, "path"));
        const json_t *match = NULL;
        for (size_t j = 0; j < m && !match; j++) {
            const json_t *g = json_array_get(want, j);
            const char *gp = json_string_value(json_object_get(g, "path"));
            if (path && gp && !strcmp(path, gp))
                match = g;
        }
        if (match && json_equal(f, match))
            continue;
        if (shown++ < 4)
            ny_buf_printf(&b, "%s%s %s", shown > 1 ? "; " : "", path ? path : "?",
                          match ? "changed since the run" : "not in the manifest");
    }
    if (n != m || shown == 0)
        ny_buf_printf(&b, "%s%zu files now, %zu in the manifest", shown ? "; " : "", n, m);
    return ny_buf_take(&b);
}

/* Rebuild the checkpoint list of the run and rehash its files. */
static int check_files(struct verify *v, struct ny_err *err)
{
    json_t *man = json_object_get(v->results, "manifest");
    const char *root = json_string_value(json_object_get(man, "root"));
    /* A deep copy: the null adapters are removed below, and results must stay as read. */
    json_t *obj = json_pack("{s:o}", "checkpoints",
                            json_deep_copy(json_object_get(v->results, "checkpoints")));
    json_t *adapters = json_object_get(obj, "checkpoints");
    for (size_t i = 0; i < json_array_size(adapters); i++) { /* null adapters are omitted */
        json_t *c = json_array_get(adapters, i);
        if (json_is_null(json_object_get(c, "adapter")))
            json_object_del(c, "adapter");
    }
    struct harness_config cfg;
    int rc = harness_config_parse(obj, root ? root : ".", "results.json checkpoints", &cfg, err);
    json_decref(obj);
    if (rc)
        return rc;
    json_t *files = json_array();
    char (*keys)[65] = ny_calloc(cfg.n_checkpoints, sizeof *keys);
    rc = files && keys ? harness_manifest_files(NULL, &cfg, files, keys, err)
                       : NY_ERR(err, NY_E_NOMEM, "out of memory");
    if (rc == NY_E_NOTFOUND || rc == NY_E_IO) {
        report(v, 0, "checkpoint files", err->msg);
        rc = NY_OK;
    } else if (!rc) {
        json_t *want = json_object_get(man, "files");
        char *why = files_diff(files, want);
        report(v, why == NULL, "checkpoint file hashes", why);
        ny_free(why);
        json_t *mk = json_object_get(man, "checkpoint_keys");
        for (size_t i = 0; i < cfg.n_checkpoints; i++) {
            const char *k = json_string_value(json_object_get(mk, cfg.checkpoints[i].label));
            report(v, k && !strcmp(k, keys[i]), "checkpoint key", cfg.checkpoints[i].label);
        }
    }
    ny_free(keys);
    json_decref(files);
    harness_config_fini(&cfg);
    return rc;
}

static int item_cb(void *ctx, const char *label, const char *record_id, const char *output)
{
    struct verify *v = ctx;
    json_t *rec = json_object_get(v->by_id, record_id);
    const char *want = json_string_value(json_object_get(json_object_get(rec, "predictions"),
                                                         label));
    v->items++;
    if (!output || !want || strcmp(output, want)) {
        char what[256];
        snprintf(what, sizeof what, "%s, record %s", label, record_id);
        report(v, 0, "prediction in the store", what);
    }
    return 0;
}

static int check_store(struct verify *v, const char *store_path, const char *text,
                       size_t len, struct ny_err *err)
{
    const char *id = json_string_value(json_object_get(json_object_get(v->results, "run"), "id"));
    if (!id || strncmp(id, "r-", 2))
        return NY_ERR(err, NY_E_FORMAT, "results.json: run.id missing");
    struct store *st = NULL;
    char *key = NULL, *man = NULL, *res = NULL, *sha = NULL;
    int rc = store_open(store_path, &st, err);
    if (!rc)
        rc = store_run_find(st, id + 2, &key, err);
    if (!rc)
        rc = store_run_get(st, key, &man, &res, &sha, err);
    if (!rc) {
        char hex[65];
        ny_sha256_hex(text, len, hex);
        report(v, sha && !strcmp(sha, hex), "results.json matches the run store", NULL);
        json_t *mj = json_loads(man, 0, NULL);
        report(v, mj && json_equal(mj, json_object_get(v->results, "manifest")),
               "manifest matches the run store", NULL);
        json_decref(mj);
        rc = store_run_items_visit(st, key, item_cb, v, err);
    }
    if (!rc) {
        size_t want = json_array_size(json_object_get(v->results, "records")) *
                      json_array_size(json_object_get(v->results, "checkpoints"));
        char d[64];
        snprintf(d, sizeof d, "%zu of %zu", v->items, want);
        report(v, v->items == want, "predictions recorded for every record and checkpoint", d);
    }
    ny_free(key);
    ny_free(man);
    ny_free(res);
    ny_free(sha);
    store_close(st);
    return rc;
}

static int same_hex(json_t *obj, const char *key, const char *hex)
{
    const char *s = json_string_value(json_object_get(obj, key));
    return s && !strcmp(s, hex);
}

/* The records store: the split's hash, the sample drawn again, and the code set's hash. */
static int check_data(struct verify *v, const char *dir, struct ny_err *err)
{
    json_t *man = json_object_get(v->results, "manifest"), *run = json_object_get(v->results, "run");
    json_t *dsinfo = json_object_get(man, "dataset");
    const char *store = json_string_value(json_object_get(dsinfo, "store"));
    const char *split = json_string_value(json_object_get(run, "split"));
    const char *root = json_string_value(json_object_get(man, "root"));
    json_t *n = json_object_get(dsinfo, "n"), *seed = json_object_get(run, "seed");
    if (!store || !split || !json_is_integer(n) || !json_is_integer(seed))
        return NY_ERR(err, NY_E_FORMAT, "results.json: manifest.dataset incomplete");
    char *path = !strcmp(store, "demo") ? ny_path_join(dir, "demo-records.sqlite")
                 : store[0] == '/' || !root ? ny_strdup(store) : ny_path_join(root, store);
    if (!path)
        return NY_ERR(err, NY_E_NOMEM, "out of memory");
    struct dataset_store *ds = NULL;
    char **ids = NULL, hex[65];
    size_t nids = 0;
    int rc = NY_OK;
    if (!ny_file_exists(path)) {
        report(v, 0, "records store", path);
    } else if (!(rc = dataset_store_open(path, &ds, err)) &&
               !(rc = harness_dataset_sha256(ds, split, hex, err)) &&
               !(rc = dataset_store_sample(ds, split, (size_t)json_integer_value(n),
                                           (uint64_t)json_integer_value(seed), &ids, &nids,
                                           err))) {
        report(v, same_hex(man, "dataset_sha256", hex), "dataset hash", split);
        struct ny_sha256 h;
        ny_sha256_init(&h);
        json_t *recs = json_object_get(v->results, "records");
        int order = json_array_size(recs) == nids;
        for (size_t i = 0; i < nids; i++) {
            ny_sha256_update(&h, ids[i], strlen(ids[i]) + 1);
            const char *rid = json_string_value(json_object_get(json_array_get(recs, i), "id"));
            order = order && rid && !strcmp(rid, ids[i]);
        }
        uint8_t d[32];
        ny_sha256_final(&h, d);
        ny_hex_encode(d, 32, hex);
        report(v, same_hex(man, "sample_ids_sha256", hex) && order,
               "sample drawn again: same ids, same order", NULL);
    }
    dataset_ids_free(ids, nids);
    dataset_store_close(ds);
    ny_free(path);
    json_t *cs = json_object_get(man, "codeset");
    const char *src = json_string_value(json_object_get(cs, "source"));
    const char *rel = json_string_value(json_object_get(cs, "release"));
    if (!rc && src && rel) {
        struct codeset_db *db = NULL;
        rc = !strcmp(src, "embedded demo") ? harness_codeset_open_demo(rel, &db, hex, err)
                                           : ny_sha256_file(src, hex, err);
        codeset_close(db);
        if (rc == NY_E_IO || rc == NY_E_NOTFOUND) {
            report(v, 0, "code set", src);
            rc = NY_OK;
        } else if (!rc) {
            report(v, same_hex(cs, "sha256", hex), "code-set hash", rel);
        }
    }
    return rc;
}

/* junit.xml and summary.md are exactly what results.json renders to. */
static int check_outputs(struct verify *v, const char *dir, struct ny_err *err)
{
    static const char *const names[] = {"junit.xml", "summary.md"};
    for (int k = 0; k < 2; k++) {
        char *want = NULL, *have = NULL, *p = ny_path_join(dir, names[k]);
        size_t len;
        int rc = k == 0 ? harness_junit_render(v->results, &want, err)
                        : harness_summary_render(v->results, &want, err);
        if (!rc && !p)
            rc = NY_ERR(err, NY_E_NOMEM, "out of memory");
        if (rc) {
            ny_free(p);
            return rc;
        }
        struct ny_err e2;
        ny_err_init(&e2);
        int ok = !ny_file_read(p, (size_t)1 << 28, &have, &len, &e2) && !strcmp(have, want);
        report(v, ok, names[k], ok ? "rendered from results.json" : "differs from results.json");
        ny_free(want);
        ny_free(have);
        ny_free(p);
    }
    return NY_OK;
}

/* 1 when files a and b have the same bytes. */
static int same_bytes(const char *a, const char *b)
{
    char *x = NULL, *y = NULL;
    size_t nx = 0, ny = 0;
    struct ny_err e;
    ny_err_init(&e);
    int same = !ny_file_read(a, (size_t)1 << 30, &x, &nx, &e) &&
               !ny_file_read(b, (size_t)1 << 30, &y, &ny, &e) && nx == ny &&
               !memcmp(x, y, nx);
    ny_free(x);
    ny_free(y);
    return same;
}

/* report.pdf and report.html are byte-identical to what results.json renders to now. */
static int check_reports(struct verify *v, const char *dir, struct ny_err *err)
{
#if HARNESS_HAVE_REPORTS
    char tmp[] = "/tmp/nyxaudit-verify-XXXXXX";
    if (!mkdtemp(tmp))
        return NY_ERR(err, NY_E_IO, "cannot make a temporary directory");
    static const char *const names[] = {"report.pdf", "report.html"};
    int rc = NY_OK;
    for (int k = 0; k < 2 && !rc; k++) {
        char *mine = ny_path_join(tmp, names[k]), *theirs = ny_path_join(dir, names[k]);
        struct ny_err e2;
        ny_err_init(&e2);
        if (!mine || !theirs)
            rc = NY_ERR(err, NY_E_NOMEM, "out of memory");
        else if ((k == 0 ? report_pdf_write(v->results, mine, &e2)
                         : report_html_write(v->results, mine, &e2)))
            report(v, 0, names[k], e2.msg);
        else
            report(v, same_bytes(mine, theirs), names[k],
                   same_bytes(mine, theirs) ? "rendered from results.json"
                                            : "missing or differs from results.json");
        if (mine)
            unlink(mine);
        ny_free(mine);
        ny_free(theirs);
    }
    rmdir(tmp);
    return rc;
#else
    (void)v;
    (void)dir;
    (void)err;
    return NY_OK;
#endif
}

/* Score the recorded predictions again and compare with results.metrics. */
static int check_metrics(struct verify *v, struct ny_err *err)
{
    json_t *recs = json_object_get(v->results, "records");
    json_t *ckpts = json_object_get(v->results, "checkpoints");
    json_t *run = json_object_get(v->results, "run");
    json_t *cs = json_object_get(json_object_get(v->results, "manifest"), "codeset");
    size_t n = json_array_size(recs), m = json_array_size(ckpts);
    if (n == 0 || m == 0)
        return NY_ERR(err, NY_E_FORMAT, "results.json: no records or checkpoints");
    struct metrics_gold *gold = ny_calloc(n, sizeof *gold);
    struct metrics_model *models = ny_calloc(m, sizeof *models);
    const char **outs = ny_calloc(n * m, sizeof *outs);
    int rc = gold && models && outs ? NY_OK : NY_ERR(err, NY_E_NOMEM, "out of memory");
    for (size_t i = 0; !rc && i < n; i++) {
        json_t *r = json_array_get(recs, i);
        gold[i].id = json_string_value(json_object_get(r, "id"));
        gold[i].codes = json_string_value(json_object_get(r, "gold"));
        gold[i].modality = json_string_value(json_object_get(r, "modality"));
        if (!gold[i].id || !gold[i].codes)
            rc = NY_ERR(err, NY_E_FORMAT, "results.json: records[%zu]: id or gold missing", i);
        for (size_t c = 0; !rc && c < m; c++) {
            const char *label = json_string_value(json_object_get(json_array_get(ckpts, c),
                                                                  "label"));
            outs[c * n + i] = json_string_value(
                json_object_get(json_object_get(r, "predictions"), label ? label : ""));
            models[c] = (struct metrics_model){label, outs + c * n};
        }
    }
    const char *release = json_string_value(json_object_get(run, "release"));
    const char *source = json_string_value(json_object_get(cs, "source"));
    struct codeset_db *db = NULL;
    char sha[65];
    if (!rc && (!release || !source))
        rc = NY_ERR(err, NY_E_FORMAT, "results.json: run.release or manifest.codeset missing");
    if (!rc)
        rc = !strcmp(source, "embedded demo")
                 ? harness_codeset_open_demo(release, &db, sha, err)
                 : codeset_open(source, &db, err);
    json_t *again = NULL;
    if (!rc) {
        struct metrics_input in = {.gold = gold, .n = n, .models = models, .m = m, .db = db,
                                   .release = release,
                                   .seed = (uint64_t)json_integer_value(
                                       json_object_get(run, "seed"))};
        rc = metrics_evaluate(&in, &again, err);
    }
    if (!rc) {
        int same = json_equal(again, json_object_get(v->results, "metrics"));
        report(v, same, "metrics recomputed from the recorded predictions",
               same ? NULL : "they differ from results.json");
    }
    json_decref(again);
    codeset_close(db);
    ny_free(gold);
    ny_free(models);
    ny_free(outs);
    return rc;
}

int harness_verify_dir(const char *dir, const char *store_path, FILE *f, int *failures,
                       struct ny_err *err)
{
    struct verify v = {.f = f};
    char *path = ny_path_join(dir, "results.json"), *text = NULL;
    char *sp = store_path ? ny_strdup(store_path) : ny_path_join(dir, "runs.sqlite");
    size_t len = 0;
    int rc = path && sp ? NY_OK : NY_ERR(err, NY_E_NOMEM, "out of memory");
    if (!rc && (rc = ny_file_read(path, (size_t)1 << 30, &text, &len, err)) == NY_E_IO)
        rc = NY_ERR(err, NY_E_NOTFOUND, "%s: no results.json (not a run directory?)", dir);
    if (!rc)
        rc = ny_json_load_buf(text, len, path, &v.results, err);
    if (!rc && strcmp(json_string_value(json_object_get(v.results, "schema")) ?: "",
                      "nyxaudit.results/1"))
        rc = NY_ERR(err, NY_E_FORMAT, "%s: schema is not nyxaudit.results/1", path);
    if (!rc && !ny_file_exists(sp))
        rc = NY_ERR(err, NY_E_NOTFOUND, "run store %s not found (use --store FILE)", sp);
    if (!rc) {
        v.by_id = json_object();
        json_t *recs = json_object_get(v.results, "records");
        for (size_t i = 0; i < json_array_size(recs); i++) {
            json_t *r = json_array_get(recs, i);
            const char *id = json_string_value(json_object_get(r, "id"));
            if (id)
                json_object_set(v.by_id, id, r);
        }
        rc = check_files(&v, err);
    }
    if (!rc)
        rc = check_data(&v, dir, err);
    if (!rc)
        rc = check_store(&v, sp, text, len, err);
    if (!rc)
        rc = check_metrics(&v, err);
    if (!rc)
        rc = check_outputs(&v, dir, err);
    if (!rc)
        rc = check_reports(&v, dir, err);
    if (!rc)
        *failures = v.failures;
    json_decref(v.by_id);
    json_decref(v.results);
    ny_free(text);
    ny_free(path);
    ny_free(sp);
    return rc;
}
