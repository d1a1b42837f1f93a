/* store.c — the run store (prefix store_): one SQLite database in WAL mode holding runs and their
 * manifests, prompts, cached predictions (each committed as it completes), metrics, and a cache
 * of file hashes. Killing the process at any moment loses at most the prediction in flight. */
#include <jansson.h>
#include <sqlite3.h>
#include <string.h>
#include <sys/stat.h>

#include "harness.h"

struct store {
    sqlite3 *db;
    char *path;
    sqlite3_stmt *pred_get, *pred_put;
};

#define STORE_SCHEMA "nyxaudit.store/2"

static const char schema[] =
    "CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);"
    "INSERT OR IGNORE INTO meta VALUES('schema', '" STORE_SCHEMA "');"
    "CREATE TABLE IF NOT EXISTS runs(run_key TEXT PRIMARY KEY, manifest TEXT NOT NULL,"
    " started TEXT NOT NULL, finished TEXT, results TEXT, results_sha256 TEXT);"
    "CREATE TABLE IF NOT EXISTS prompts(prompt_hash TEXT PRIMARY KEY, record_id TEXT NOT NULL,"
    " messages TEXT NOT NULL, n_tokens INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS predictions(cache_key TEXT PRIMARY KEY, checkpoint TEXT NOT NULL,"
    " prompt_hash TEXT NOT NULL, output TEXT NOT NULL, output_ids TEXT NOT NULL,"
    " codes TEXT NOT NULL,"
    " prompt_tokens INTEGER NOT NULL, gen_tokens INTEGER NOT NULL, ms REAL NOT NULL);"
    "CREATE TABLE IF NOT EXISTS metrics(run_key TEXT PRIMARY KEY, metrics TEXT NOT NULL);"
    "CREATE TABLE IF NOT EXISTS filehashes(path TEXT PRIMARY KEY, bytes INTEGER NOT NULL,"
    " mtime_ns INTEGER NOT NULL, inode INTEGER NOT NULL, sha256 TEXT NOT NULL);";

static int db_fail(struct store *st, struct ny_err *err, const char *what)
{
    return NY_ERR(err, NY_E_DB, "run store %s: %s: %s", st->path, what, sqlite3_errmsg(st->db));
}

int store_open(const char *path, struct store **out, struct ny_err *err)
{
    struct store *st = ny_calloc(1, sizeof *st);
    if (!st || !(st->path = ny_strdup(path))) {
        ny_free(st);
        return NY_ERR(err, NY_E_NOMEM, "run store: out of memory");
    }
    int rc = NY_OK;
    if (sqlite3_open_v2(path, &st->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) !=
        SQLITE_OK) {
        rc = NY_ERR(err, NY_E_DB, "run store %s: cannot open: %s", path,
                    st->db ? sqlite3_errmsg(st->db) : "out of memory");
        goto fail;
    }
    sqlite3_busy_timeout(st->db, 10000);
    /* WAL + synchronous=NORMAL: a committed transaction survives a killed process. */
    if (sqlite3_exec(st->db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;", NULL, NULL,
                     NULL) != SQLITE_OK ||
        sqlite3_exec(st->db, schema, NULL, NULL, NULL) != SQLITE_OK) {
        rc = db_fail(st, err, "cannot create the schema (is it a run store?)");
        goto fail;
    }
    sqlite3_stmt *s = NULL;
    if (sqlite3_prepare_v2(st->db, "SELECT value FROM meta WHERE key='schema'", -1, &s, NULL) ||
        sqlite3_step(s) != SQLITE_ROW ||
        strcmp((const char *)sqlite3_column_text(s, 0), STORE_SCHEMA)) {
        const unsigned char *have = s ? sqlite3_column_text(s, 0) : NULL;
        rc = NY_ERR(err, NY_E_FORMAT, "run store %s: schema \"%s\", this nyxaudit needs \"%s\" "
                    "(use another output directory or run_store)", path,
                    have ? (const char *)have : "?", STORE_SCHEMA);
        sqlite3_finalize(s);
        goto fail;
    }
    sqlite3_finalize(s);
    if (sqlite3_prepare_v2(st->db, "SELECT output, output_ids, prompt_tokens, gen_tokens, ms "
                           "FROM predictions WHERE cache_key=?", -1, &st->pred_get, NULL) ||
        sqlite3_prepare_v2(st->db, "INSERT OR IGNORE INTO predictions(cache_key, checkpoint, "
                           "prompt_hash, output, output_ids, prompt_tokens, gen_tokens, ms, codes) "
                           "VALUES(?,?,?,?,?,?,?,?,?)",
                           -1, &st->pred_put, NULL)) {
        rc = db_fail(st, err, "prepare");
        goto fail;
    }
    *out = st;
    return NY_OK;
fail:
    store_close(st);
    return rc;
}

void store_close(struct store *st)
{
    if (!st)
        return;
    sqlite3_finalize(st->pred_get);
    sqlite3_finalize(st->pred_put);
    sqlite3_close(st->db);
    ny_free(st->path);
    ny_free(st);
}

void store_prediction_fini(struct store_prediction *p)
{
    if (!p)
        return;
    ny_free(p->output);
    ny_free(p->output_ids);
    ny_free(p->codes);
    memset(p, 0, sizeof *p);
}

/* Prepare sql, bind the given text parameters (NULL binds NULL) and return the statement. */
static int prep(struct store *st, const char *sql, sqlite3_stmt **s, int n, const char **texts,
                struct ny_err *err)
{
    if (sqlite3_prepare_v2(st->db, sql, -1, s, NULL) != SQLITE_OK)
        return db_fail(st, err, "prepare");
    for (int i = 0; i < n; i++)
        if (sqlite3_bind_text(*s, i + 1, texts[i], -1, SQLITE_TRANSIENT) != SQLITE_OK) {
            sqlite3_finalize(*s);
            return db_fail(st, err, "bind");
        }
    return NY_OK;
}

/* Run a statement that returns no rows. */
static int exec_text(struct store *st, const char *sql, int n, const char **texts,
                     struct ny_err *err)
{
    sqlite3_stmt *s;
    int rc = prep(st, sql, &s, n, texts, err);
    if (rc)
        return rc;
    rc = sqlite3_step(s) == SQLITE_DONE ? NY_OK : db_fail(st, err, sql);
    sqlite3_finalize(s);
    return rc;
}

/* Column text duplicated (NULL stays NULL); *oom set on allocation failure. */
static char *col_dup(sqlite3_stmt *s, int i, int *oom)
{
    const unsigned char *t = sqlite3_column_text(s, i);
    if (!t)
        return NULL;
    char *d = ny_strdup((const char *)t);
    if (!d)
        *oom = 1;
    return d;
}

static int get_one_text(struct store *st, const char *sql, const char *key, char **out,
                        struct ny_err *err)
{
    sqlite3_stmt *s;
    int rc = prep(st, sql, &s, 1, &key, err);
    if (rc)
        return rc;
    int step = sqlite3_step(s);
    if (step == SQLITE_ROW) {
        int oom = 0;
        char *d = col_dup(s, 0, &oom);
        rc = oom ? NY_ERR(err, NY_E_NOMEM, "run store: out of memory") : NY_OK;
        if (!rc)
            *out = d;
    } else {
        rc = step == SQLITE_DONE ? NY_ERR(err, NY_E_NOTFOUND, "run store %s: no run %s",
                                          st->path, key)
                                 : db_fail(st, err, "read");
    }
    sqlite3_finalize(s);
    return rc;
}

int store_run_begin(struct store *st, const char *run_key, const char *manifest_json,
                    const char *now, char **started, struct ny_err *err)
{
    const char *args[3] = {run_key, manifest_json, now};
    int rc = exec_text(st, "INSERT OR IGNORE INTO runs(run_key, manifest, started) "
                       "VALUES(?,?,?)", 3, args, err);
    if (rc)
        return rc;
    return get_one_text(st, "SELECT started FROM runs WHERE run_key=?", run_key, started, err);
}

int store_run_finish(struct store *st, const char *run_key, const char *now,
                     const char *results_json, char **finished, struct ny_err *err)
{
    char hex[65];
    ny_sha256_hex(results_json, strlen(results_json), hex);
    const char *args[4] = {now, results_json, hex, run_key};
    int rc = exec_text(st, "UPDATE runs SET finished=coalesce(finished, ?), results=?, "
                       "results_sha256=? WHERE run_key=?", 4, args, err);
    if (rc)
        return rc;
    return get_one_text(st, "SELECT finished FROM runs WHERE run_key=?", run_key, finished, err);
}

int store_run_get(struct store *st, const char *run_key, char **manifest_json,
                  char **results_json, char **results_sha256, struct ny_err *err)
{
    sqlite3_stmt *s;
    int rc = prep(st, "SELECT manifest, results, results_sha256 FROM runs WHERE run_key=?", &s,
                  1, &run_key, err);
    if (rc)
        return rc;
    int step = sqlite3_step(s);
    if (step != SQLITE_ROW) {
        rc = step == SQLITE_DONE
                 ? NY_ERR(err, NY_E_NOTFOUND, "run store %s: no run %s", st->path, run_key)
                 : db_fail(st, err, "read run");
        sqlite3_finalize(s);
        return rc;
    }
    int oom = 0;
    char *m = col_dup(s, 0, &oom), *r = col_dup(s, 1, &oom), *h = col_dup(s, 2, &oom);
    sqlite3_finalize(s);
    if (oom) {
        ny_free(m);
        ny_free(r);
        ny_free(h);
        return NY_ERR(err, NY_E_NOMEM, "run store: out of memory");
    }
    if (manifest_json)
        *manifest_json = m;
    else
        ny_free(m);
    if (results_json)
        *results_json = r;
    else
        ny_free(r);
    if (results_sha256)
        *results_sha256 = h;
    else
        ny_free(h);
    return NY_OK;
}

int store_prompt_put(struct store *st, const char *prompt_hash, const char *record_id,
                     const char *messages_json, int64_t n_tokens, struct ny_err *err)
{
    sqlite3_stmt *s;
    const char *args[3] = {prompt_hash, record_id, messages_json};
    int rc = prep(st, "INSERT OR IGNORE INTO prompts VALUES(?,?,?,?)", &s, 3, args, err);
    if (rc)
        return rc;
    sqlite3_bind_int64(s, 4, n_tokens);
    rc = sqlite3_step(s) == SQLITE_DONE ? NY_OK : db_fail(st, err, "write prompt");
    sqlite3_finalize(s);
    return rc;
}

int store_prediction_get(struct store *st, const char *cache_key, struct store_prediction *p,
                         int *found, struct ny_err *err)
{
    sqlite3_stmt *s = st->pred_get;
    sqlite3_reset(s);
    if (sqlite3_bind_text(s, 1, cache_key, -1, SQLITE_TRANSIENT) != SQLITE_OK)
        return db_fail(st, err, "bind");
    int step = sqlite3_step(s);
    if (step == SQLITE_DONE) {
        sqlite3_reset(s);
        *found = 0;
        return NY_OK;
    }
    if (step != SQLITE_ROW) {
        int rc = db_fail(st, err, "read prediction");
        sqlite3_reset(s);
        return rc;
    }
    int oom = 0;
    struct store_prediction r = {0};
    r.output = col_dup(s, 0, &oom);
    r.output_ids = col_dup(s, 1, &oom);
    r.prompt_tokens = sqlite3_column_int64(s, 2);
    r.gen_tokens = sqlite3_column_int64(s, 3);
    r.ms = sqlite3_column_double(s, 4);
    sqlite3_reset(s);
    if (oom || !r.output || !r.output_ids) {
        store_prediction_fini(&r);
        return NY_ERR(err, oom ? NY_E_NOMEM : NY_E_FORMAT, "run store %s: prediction %s: %s",
                      st->path, cache_key, oom ? "out of memory" : "damaged row");
    }
    *p = r;
    *found = 1;
    return NY_OK;
}

int store_prediction_put(struct store *st, const char *cache_key, const char *checkpoint,
                         const char *prompt_hash, const struct store_prediction *p,
                         struct ny_err *err)
{
    sqlite3_stmt *s = st->pred_put;
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    const char *t[5] = {cache_key, checkpoint, prompt_hash, p->output,
                        p->output_ids ? p->output_ids : "[]"};
    for (int i = 0; i < 5; i++)
        if (sqlite3_bind_text(s, i + 1, t[i], -1, SQLITE_TRANSIENT) != SQLITE_OK)
            return db_fail(st, err, "bind");
    sqlite3_bind_int64(s, 6, p->prompt_tokens);
    sqlite3_bind_int64(s, 7, p->gen_tokens);
    sqlite3_bind_double(s, 8, p->ms);
    sqlite3_bind_text(s, 9, p->codes ? p->codes : "null", -1, SQLITE_TRANSIENT);
    /* Autocommit: the statement is its own transaction, durable when it returns. */
    int rc = sqlite3_step(s) == SQLITE_DONE ? NY_OK : db_fail(st, err, "write prediction");
    sqlite3_reset(s);
    return rc;
}

int store_prediction_count(struct store *st, int64_t *n, struct ny_err *err)
{
    sqlite3_stmt *s;
    int rc = prep(st, "SELECT count(*) FROM predictions", &s, 0, NULL, err);
    if (rc)
        return rc;
    if (sqlite3_step(s) == SQLITE_ROW)
        *n = sqlite3_column_int64(s, 0);
    else
        rc = db_fail(st, err, "count");
    sqlite3_finalize(s);
    return rc;
}

int store_metrics_put(struct store *st, const char *run_key, const char *metrics_json,
                      struct ny_err *err)
{
    const char *args[2] = {run_key, metrics_json};
    return exec_text(st, "INSERT OR REPLACE INTO metrics VALUES(?,?)", 2, args, err);
}

int store_filehash_get(struct store *st, const char *path, char hex[65], int64_t *bytes,
                       struct ny_err *err)
{
    struct stat sb;
    if (stat(path, &sb) != 0 || !S_ISREG(sb.st_mode))
        return NY_ERR(err, NY_E_NOTFOUND, "%s: not found or not a regular file", path);
    int64_t mt = (int64_t)sb.st_mtim.tv_sec * 1000000000 + sb.st_mtim.tv_nsec;
    sqlite3_stmt *s;
    int rc = prep(st, "SELECT sha256 FROM filehashes WHERE path=? AND bytes=? AND mtime_ns=? "
                  "AND inode=?", &s, 1, &path, err);
    if (rc)
        return rc;
    sqlite3_bind_int64(s, 2, (int64_t)sb.st_size);
    sqlite3_bind_int64(s, 3, mt);
    sqlite3_bind_int64(s, 4, (int64_t)sb.st_ino);
    int found = sqlite3_step(s) == SQLITE_ROW && sqlite3_column_bytes(s, 0) == 64;
    if (found)
        memcpy(hex, sqlite3_column_text(s, 0), 65);
    sqlite3_finalize(s);
    if (!found) {
        if ((rc = ny_sha256_file(path, hex, err)))
            return rc;
        if ((rc = prep(st, "INSERT OR REPLACE INTO filehashes VALUES(?,?,?,?,?)", &s, 1, &path,
                       err)))
            return rc;
        sqlite3_bind_int64(s, 2, (int64_t)sb.st_size);
        sqlite3_bind_int64(s, 3, mt);
        sqlite3_bind_int64(s, 4, (int64_t)sb.st_ino);
        sqlite3_bind_text(s, 5, hex, 64, SQLITE_TRANSIENT);
        rc = sqlite3_step(s) == SQLITE_DONE ? NY_OK : db_fail(st, err, "write file hash");
        sqlite3_finalize(s);
        if (rc)
            return rc;
    }
    *bytes = (int64_t)sb.st_size;
    return NY_OK;
}

int store_history_get(struct store *st, struct json_t **out, struct ny_err *err)
{
    sqlite3_stmt *s;
    int rc = prep(st, "SELECT run_key, results FROM runs WHERE results IS NOT NULL "
                  "ORDER BY started, run_key", &s, 0, NULL, err);
    if (rc)
        return rc;
    json_t *arr = json_array();
    int step = SQLITE_DONE;
    while (arr && (step = sqlite3_step(s)) == SQLITE_ROW) {
        const char *txt = (const char *)sqlite3_column_text(s, 1);
        json_t *r = NULL;
        if (ny_json_load_buf(txt, strlen(txt), "run store results", &r, err)) {
            rc = NY_ERR(err, NY_E_FORMAT, "run store %s: run %s: damaged results", st->path,
                        (const char *)sqlite3_column_text(s, 0));
            break;
        }
        json_array_append_new(arr, r);
    }
    if (!rc && arr && step != SQLITE_DONE && step != SQLITE_ROW)
        rc = db_fail(st, err, "read runs");
    sqlite3_finalize(s);
    if (!arr)
        return NY_ERR(err, NY_E_NOMEM, "run store: out of memory");
    if (rc) {
        json_decref(arr);
        return rc;
    }
    *out = arr;
    return NY_OK;
}

static const char items_schema[] =
    "CREATE TABLE IF NOT EXISTS run_items(run_key TEXT NOT NULL, pos INTEGER NOT NULL,"
    " label TEXT NOT NULL, record_id TEXT NOT NULL, cache_key TEXT NOT NULL,"
    " PRIMARY KEY(run_key, pos));";

int store_run_find(struct store *st, const char *key_prefix, char **run_key, struct ny_err *err)
{
    size_t n = strlen(key_prefix);
    if (n < 8 || n > 64 || strspn(key_prefix, "0123456789abcdef") != n)
        return NY_ERR(err, NY_E_INVALID, "run id \"%s\" is not hexadecimal", key_prefix);
    char pat[70];
    snprintf(pat, sizeof pat, "%s%%", key_prefix);
    const char *arg = pat;
    sqlite3_stmt *s;
    int rc = prep(st, "SELECT run_key FROM runs WHERE run_key LIKE ? ORDER BY run_key", &s, 1,
                  &arg, err);
    if (rc)
        return rc;
    int step = sqlite3_step(s);
    if (step == SQLITE_ROW) {
        int oom = 0;
        char *k = col_dup(s, 0, &oom);
        rc = oom ? NY_ERR(err, NY_E_NOMEM, "out of memory") : NY_OK;
        if (!rc)
            *run_key = k;
    } else {
        rc = NY_ERR(err, NY_E_NOTFOUND, "run store %s: no run r-%s", st->path, key_prefix);
    }
    sqlite3_finalize(s);
    return rc;
}

int store_run_items_put(struct store *st, const char *run_key, const char *const *labels,
                        const char *const *record_ids, const char *const *cache_keys, size_t n,
                        struct ny_err *err)
{
    if (sqlite3_exec(st->db, items_schema, NULL, NULL, NULL) != SQLITE_OK ||
        sqlite3_exec(st->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
        return db_fail(st, err, "begin");
    int rc = exec_text(st, "DELETE FROM run_items WHERE run_key=?", 1, &run_key, err);
    sqlite3_stmt *s = NULL;
    if (!rc && sqlite3_prepare_v2(st->db, "INSERT INTO run_items VALUES(?,?,?,?,?)", -1, &s,
                                  NULL) != SQLITE_OK)
        rc = db_fail(st, err, "prepare");
    for (size_t i = 0; i < n && !rc; i++) {
        sqlite3_reset(s);
        sqlite3_bind_text(s, 1, run_key, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(s, 2, (int64_t)i);
        sqlite3_bind_text(s, 3, labels[i], -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(s, 4, record_ids[i], -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(s, 5, cache_keys[i], -1, SQLITE_TRANSIENT);
        if (sqlite3_step(s) != SQLITE_DONE)
            rc = db_fail(st, err, "write run item");
    }
    sqlite3_finalize(s);
    if (!rc && sqlite3_exec(st->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
        rc = db_fail(st, err, "commit");
    if (rc)
        sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
    return rc;
}

int store_run_items_visit(struct store *st, const char *run_key,
                          int (*fn)(void *ctx, const char *label, const char *record_id,
                                    const char *output),
                          void *ctx, struct ny_err *err)
{
    if (sqlite3_exec(st->db, items_schema, NULL, NULL, NULL) != SQLITE_OK)
        return db_fail(st, err, "schema");
    sqlite3_stmt *s;
    int rc = prep(st, "SELECT i.label, i.record_id, p.output FROM run_items i LEFT JOIN "
                  "predictions p ON p.cache_key = i.cache_key WHERE i.run_key=? ORDER BY i.pos",
                  &s, 1, &run_key, err);
    if (rc)
        return rc;
    int step;
    while (!rc && (step = sqlite3_step(s)) == SQLITE_ROW)
        rc = fn(ctx, (const char *)sqlite3_column_text(s, 0),
                (const char *)sqlite3_column_text(s, 1), (const char *)sqlite3_column_text(s, 2));
    sqlite3_finalize(s);
    return rc;
}

/* ---- merging shard stores ---------------------------------------------------------------------- */
/* Open a shard read-only and check that it is a run store of this schema. */
static int merge_open_shard(const char *path, sqlite3 **out, struct ny_err *err)
{
    struct stat sb;
    if (stat(path, &sb) != 0)
        return NY_ERR(err, NY_E_NOTFOUND, "shard store %s: not found", path);
    if (!S_ISREG(sb.st_mode))
        return NY_ERR(err, NY_E_FORMAT, "shard store %s: not a regular file", path);
    sqlite3 *db = NULL;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
        int rc = NY_ERR(err, NY_E_FORMAT, "shard store %s: cannot open: %s", path,
                        db ? sqlite3_errmsg(db) : "out of memory");
        sqlite3_close(db);
        return rc;
    }
    sqlite3_busy_timeout(db, 10000);
    sqlite3_stmt *s = NULL;
    int ok = sqlite3_prepare_v2(db, "SELECT value FROM meta WHERE key='schema'", -1, &s, NULL) ==
                 SQLITE_OK && sqlite3_step(s) == SQLITE_ROW;
    const unsigned char *have = ok ? sqlite3_column_text(s, 0) : NULL;
    int rc = NY_OK;
    if (!have)
        rc = NY_ERR(err, NY_E_FORMAT, "shard store %s: not a nyxaudit run store (%s)", path,
                    sqlite3_errmsg(db));
    else if (strcmp((const char *)have, STORE_SCHEMA))
        rc = NY_ERR(err, NY_E_FORMAT, "shard store %s: schema \"%s\", this nyxaudit needs \"%s\"",
                    path, (const char *)have, STORE_SCHEMA);
    sqlite3_finalize(s);
    if (rc) {
        sqlite3_close(db);
        return rc;
    }
    *out = db;
    return NY_OK;
}

static int store_run_count(struct store *st, int64_t *n, struct ny_err *err)
{
    sqlite3_stmt *s;
    int rc = prep(st, "SELECT count(*) FROM runs", &s, 0, NULL, err);
    if (rc)
        return rc;
    if (sqlite3_step(s) == SQLITE_ROW)
        *n = sqlite3_column_int64(s, 0);
    else
        rc = db_fail(st, err, "count runs");
    sqlite3_finalize(s);
    return rc;
}

/* Copy one shard's predictions: new keys inserted, equal ones counted, different ones refused. */
static int merge_predictions(struct store *st, sqlite3 *db, const char *path,
                             struct store_merge_stats *ms, struct ny_err *err)
{
    static const char cols[] = "cache_key, checkpoint, prompt_hash, output, output_ids, codes, "
                               "prompt_tokens, gen_tokens, ms";
    char sql[256];
    snprintf(sql, sizeof sql, "SELECT %s FROM predictions ORDER BY cache_key", cols);
    sqlite3_stmt *rd = NULL, *have = NULL, *put = NULL;
    int rc = NY_OK;
    if (sqlite3_prepare_v2(db, sql, -1, &rd, NULL) != SQLITE_OK)
        rc = NY_ERR(err, NY_E_FORMAT, "shard store %s: predictions: %s", path,
                    sqlite3_errmsg(db));
    else if (sqlite3_prepare_v2(st->db, "SELECT output, output_ids FROM predictions WHERE "
                                "cache_key=?", -1, &have, NULL) != SQLITE_OK ||
             sqlite3_prepare_v2(st->db, "INSERT INTO predictions(cache_key, checkpoint, "
                                "prompt_hash, output, output_ids, codes, prompt_tokens, "
                                "gen_tokens, ms) VALUES(?,?,?,?,?,?,?,?,?)", -1, &put,
                                NULL) != SQLITE_OK)
        rc = db_fail(st, err, "prepare merge");
    int step = SQLITE_DONE;
    while (!rc && (step = sqlite3_step(rd)) == SQLITE_ROW) {
        const char *key = (const char *)sqlite3_column_text(rd, 0);
        const char *o = (const char *)sqlite3_column_text(rd, 3);
        const char *ids = (const char *)sqlite3_column_text(rd, 4);
        if (!key || !o || !ids) {
            rc = NY_ERR(err, NY_E_FORMAT, "shard store %s: damaged prediction row", path);
            break;
        }
        sqlite3_reset(have);
        sqlite3_bind_text(have, 1, key, -1, SQLITE_TRANSIENT);
        int h = sqlite3_step(have);
        if (h == SQLITE_ROW) {
            const char *o2 = (const char *)sqlite3_column_text(have, 0);
            const char *ids2 = (const char *)sqlite3_column_text(have, 1);
            if (!o2 || !ids2 || strcmp(o, o2) || strcmp(ids, ids2))
                rc = NY_ERR(err, NY_E_INVALID, "shard store %s: prediction %s (%s) conflicts "
                            "with %s: same cache key, different output (\"%.80s\" vs "
                            "\"%.80s\"): the decoding was not deterministic; nothing merged",
                            path, key,
                            (const char *)sqlite3_column_text(rd, 1), st->path, o,
                            o2 ? o2 : "");
            else
                ms->predictions_same++;
            continue;
        }
        if (h != SQLITE_DONE) {
            rc = db_fail(st, err, "read prediction");
            break;
        }
        sqlite3_reset(put);
        for (int c = 0; c < 9; c++)
            sqlite3_bind_value(put, c + 1, sqlite3_column_value(rd, c));
        if (sqlite3_step(put) != SQLITE_DONE)
            rc = db_fail(st, err, "write prediction");
        else
            ms->predictions_added++;
    }
    if (!rc && step != SQLITE_DONE)
        rc = NY_ERR(err, NY_E_FORMAT, "shard store %s: reading predictions: %s", path,
                    sqlite3_errmsg(db));
    sqlite3_finalize(rd);
    sqlite3_finalize(have);
    sqlite3_finalize(put);
    return rc;
}

/* Run `copy` (an INSERT reading rows bound from `rd`, n columns) for every row of `select`. */
static int merge_rows(struct store *st, sqlite3 *db, const char *path, const char *select,
                      const char *copy, int n, int64_t *added, struct ny_err *err)
{
    sqlite3_stmt *rd = NULL, *put = NULL;
    int rc = NY_OK;
    if (sqlite3_prepare_v2(db, select, -1, &rd, NULL) != SQLITE_OK)
        rc = NY_ERR(err, NY_E_FORMAT, "shard store %s: %s", path, sqlite3_errmsg(db));
    else if (sqlite3_prepare_v2(st->db, copy, -1, &put, NULL) != SQLITE_OK)
        rc = db_fail(st, err, "prepare merge");
    int step = SQLITE_DONE;
    while (!rc && (step = sqlite3_step(rd)) == SQLITE_ROW) {
        sqlite3_reset(put);
        for (int c = 0; c < n; c++)
            sqlite3_bind_value(put, c + 1, sqlite3_column_value(rd, c));
        if (sqlite3_step(put) != SQLITE_DONE)
            rc = db_fail(st, err, "merge write");
        else
            *added += sqlite3_changes(st->db);
    }
    if (!rc && step != SQLITE_DONE)
        rc = NY_ERR(err, NY_E_FORMAT, "shard store %s: %s", path, sqlite3_errmsg(db));
    sqlite3_finalize(rd);
    sqlite3_finalize(put);
    return rc;
}

static int merge_one(struct store *st, const char *path, struct store_merge_stats *ms,
                     struct ny_err *err)
{
    sqlite3 *db = NULL;
    int rc = merge_open_shard(path, &db, err);
    if (!rc)
        rc = merge_predictions(st, db, path, ms, err);
    if (!rc)
        rc = merge_rows(st, db, path, "SELECT prompt_hash, record_id, messages, n_tokens "
                        "FROM prompts ORDER BY prompt_hash", "INSERT OR IGNORE INTO prompts "
                        "VALUES(?,?,?,?)", 4, &ms->prompts_added, err);
    int64_t before = 0;
    if (!rc)
        rc = store_run_count(st, &before, err);
    /* A run's start is the earliest of its shards' starts; a finished run keeps its times. */
    int64_t touched = 0;
    if (!rc)
        rc = merge_rows(st, db, path, "SELECT run_key, manifest, started FROM runs "
                        "ORDER BY run_key", "INSERT INTO runs(run_key, manifest, started) "
                        "VALUES(?,?,?) ON CONFLICT(run_key) DO UPDATE SET started="
                        "min(started, excluded.started) WHERE finished IS NULL AND "
                        "excluded.started < started", 3, &touched, err);
    int64_t after = 0;
    if (!rc)
        rc = store_run_count(st, &after, err);
    if (!rc)
        ms->runs_added += after - before;
    sqlite3_close(db);
    return rc;
}

int store_merge(struct store *st, const char *const *shard_paths, size_t n_shards,
                struct store_merge_stats *stats, struct ny_err *err)
{
    struct store_merge_stats ms = {0};
    if (sqlite3_exec(st->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
        return db_fail(st, err, "begin");
    int rc = NY_OK;
    for (size_t i = 0; i < n_shards && !rc; i++)
        rc = merge_one(st, shard_paths[i], &ms, err);
    if (!rc && sqlite3_exec(st->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
        rc = db_fail(st, err, "commit");
    if (rc) {
        sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
        return rc;
    }
    if (stats)
        *stats = ms;
    return NY_OK;
}
