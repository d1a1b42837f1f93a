/* dataset_store.c — the SQLite record store: schema, JSONL import (content and record hashes,
 * no-op re-import, --replace, one transaction), record lookup and split counts. */
#include <string.h>

#include "datasets_int.h"

#define MAX_ID_LEN 256
#define MAX_FIELD_LEN (1u << 20)   /* 1 MiB per text field */
#define MAX_IMPORT_FILE (2ull << 30) /* 2 GiB */

static const char *schema =
    "PRAGMA foreign_keys = ON;"
    "CREATE TABLE IF NOT EXISTS records ("
    "  rowid INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, split TEXT NOT NULL,"
    "  exam_description TEXT NOT NULL, reason TEXT NOT NULL, report TEXT NOT NULL,"
    "  modality TEXT, patient TEXT, accession TEXT, study_date TEXT, format TEXT,"
    "  messages TEXT, gold TEXT, content_hash TEXT NOT NULL, record_hash TEXT NOT NULL);"
    "CREATE INDEX IF NOT EXISTS records_split ON records(split, id);"
    "CREATE VIRTUAL TABLE IF NOT EXISTS records_fts USING fts5("
    "  exam_description, reason, report, content='records', content_rowid='rowid',"
    "  tokenize='unicode61');";

int dataset_db_exec(struct dataset_store *st, const char *sql, const char *what,
                    struct ny_err *err)
{
    char *msg = NULL;
    if (sqlite3_exec(st->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        int rc = NY_ERR(err, NY_E_DB, "%s: %s: %s", st->path, what,
                        msg ? msg : sqlite3_errmsg(st->db));
        sqlite3_free(msg);
        return rc;
    }
    return NY_OK;
}

int dataset_store_open(const char *path, struct dataset_store **out, struct ny_err *err)
{
    if (!path || !out)
        return NY_ERR(err, NY_E_INVALID, "dataset_store_open: NULL argument");
    struct dataset_store *st = ny_calloc(1, sizeof *st);
    if (!st || !(st->path = ny_strdup(path))) {
        ny_free(st);
        return NY_ERR(err, NY_E_NOMEM, "%s: out of memory", path);
    }
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX;
    if (sqlite3_open_v2(path, &st->db, flags, NULL) != SQLITE_OK) {
        int rc = NY_ERR(err, NY_E_DB, "%s: cannot open the record store: %s", path,
                        st->db ? sqlite3_errmsg(st->db) : "out of memory");
        dataset_store_close(st);
        return rc;
    }
    sqlite3_busy_timeout(st->db, 5000);
    /* a large page cache and memory map: retrieval reads the index and rows at random */
    sqlite3_exec(st->db, "PRAGMA cache_size = -131072; PRAGMA mmap_size = 1073741824;", NULL, NULL,
                 NULL);
    int rc = dataset_db_exec(st, schema, "creating tables", err);
    if (rc) {
        dataset_store_close(st);
        return rc;
    }
    *out = st;
    return NY_OK;
}

void dataset_store_close(struct dataset_store *st)
{
    if (!st)
        return;
    dataset_vocab_free(st->vocab);
    sqlite3_close(st->db);
    ny_free(st->path);
    ny_free(st);
}

/* ---- import ---------------------------------------------------------------------------------- */

/* One parsed line, ready to insert. Strings borrowed from `obj`, hashes computed. */
struct parsed {
    json_t *obj;
    size_t lineno;
    const char *id, *desc, *reason, *report, *modality, *patient, *accession, *date, *format;
    char *messages; /* serialised, owned */
    char *gold;     /* serialised {"cpt","modifiers","icd"} or NULL, owned */
    char content_hash[65], record_hash[65];
};

static void parsed_fini(struct parsed *p)
{
    json_decref(p->obj);
    ny_free(p->messages);
    ny_free(p->gold);
}

static int get_text(json_t *o, const char *key, int required, const char **out, const char *what,
                    struct ny_err *err)
{
    int rc = ny_json_get_string(o, key, required, out, what, err);
    if (rc == NY_E_NOTFOUND) {
        *out = NULL;
        return NY_OK;
    }
    if (rc)
        return rc;
    size_t n = strlen(*out);
    if (n != json_string_length(json_object_get(o, key)))
        return NY_ERR(err, NY_E_FORMAT, "%s: field \"%s\" contains a NUL character", what, key);
    if (n > MAX_FIELD_LEN)
        return NY_ERR(err, NY_E_RANGE, "%s: field \"%s\" is longer than %u bytes", what, key,
                      MAX_FIELD_LEN);
    if (required && n == 0)
        return NY_ERR(err, NY_E_FORMAT, "%s: field \"%s\" is empty", what, key);
    return NY_OK;
}

static int check_messages(json_t *m, const char *what, struct ny_err *err)
{
    if (!json_is_array(m) || json_array_size(m) == 0)
        return NY_ERR(err, NY_E_FORMAT, "%s: field \"messages\" must be a non-empty array", what);
    size_t i;
    json_t *v;
    json_array_foreach(m, i, v)
    {
        json_t *role = json_object_get(v, "role"), *content = json_object_get(v, "content");
        if (!json_is_object(v) || !json_is_string(role) || !json_is_string(content))
            return NY_ERR(err, NY_E_FORMAT,
                          "%s: messages[%zu] must be {\"role\": string, \"content\": string}",
                          what, i);
        const char *r = json_string_value(role);
        if (strcmp(r, "system") && strcmp(r, "user") && strcmp(r, "assistant"))
            return NY_ERR(err, NY_E_FORMAT, "%s: messages[%zu]: unknown role \"%.20s\"", what, i,
                          r);
    }
    return NY_OK;
}

static void content_hash(const char *desc, const char *reason, const char *report, char hex[65])
{
    struct ny_sha256 s;
    uint8_t d[32];
    ny_sha256_init(&s);
    ny_sha256_update(&s, desc, strlen(desc) + 1); /* the NULs separate the fields */
    ny_sha256_update(&s, reason, strlen(reason) + 1);
    ny_sha256_update(&s, report, strlen(report));
    ny_sha256_final(&s, d);
    ny_hex_encode(d, 32, hex);
}

/* Parse and validate one line into p (p->obj owned afterwards). */
static int parse_line(const char *line, size_t len, const char *what, const char *split,
                      struct parsed *p, struct ny_err *err)
{
    json_t *o;
    int rc = ny_json_load_buf(line, len, what, &o, err);
    if (rc)
        return rc;
    p->obj = o;
    if (!json_is_object(o))
        return NY_ERR(err, NY_E_FORMAT, "%s: a record must be a JSON object", what);
    if ((rc = get_text(o, "id", 1, &p->id, what, err)) ||
        (rc = get_text(o, "exam_description", 1, &p->desc, what, err)) ||
        (rc = get_text(o, "reason", 1, &p->reason, what, err)) ||
        (rc = get_text(o, "report", 1, &p->report, what, err)) ||
        (rc = get_text(o, "modality", 0, &p->modality, what, err)) ||
        (rc = get_text(o, "patient", 0, &p->patient, what, err)) ||
        (rc = get_text(o, "accession", 0, &p->accession, what, err)) ||
        (rc = get_text(o, "study_date", 0, &p->date, what, err)) ||
        (rc = get_text(o, "format", 0, &p->format, what, err)))
        return rc;
    if (strlen(p->id) > MAX_ID_LEN)
        return NY_ERR(err, NY_E_RANGE, "%s: field \"id\" is longer than %d bytes", what,
                      MAX_ID_LEN);
    if (p->format && strcmp(p->format, "explicit") && strcmp(p->format, "embedded"))
        return NY_ERR(err, NY_E_FORMAT,
                      "%s: field \"format\" must be \"explicit\" or \"embedded\", not \"%.20s\"",
                      what, p->format);
    json_t *m = json_object_get(o, "messages");
    if (m && !json_is_null(m)) {
        if ((rc = check_messages(m, what, err)))
            return rc;
        if (!(p->messages = ny_json_dumps(m, 0)))
            return NY_ERR(err, NY_E_NOMEM, "%s: out of memory", what);
    }
    struct dataset_gold g;
    int present;
    if ((rc = dataset_gold_from_json(o, what, &g, &present, err)))
        return rc;
    if (present) {
        json_t *gj = json_pack("{sOsOsO}", "cpt", g.cpt, "modifiers", g.modifiers, "icd", g.icd);
        p->gold = gj ? ny_json_dumps(gj, 0) : NULL;
        json_decref(gj);
    }
    dataset_gold_fini(&g);
    if (present && !p->gold)
        return NY_ERR(err, NY_E_NOMEM, "%s: out of memory", what);
    content_hash(p->desc, p->reason, p->report, p->content_hash);
    /* the record hash covers everything stored: the canonical JSON of the stored fields */
    json_t *c = json_pack("{ssssssssss}", "split", split, "exam_description", p->desc, "reason",
                          p->reason, "report", p->report, "gold", p->gold ? p->gold : "");
    const char *opt_keys[] = {"modality", "patient", "accession", "study_date", "format"};
    const char *opt_vals[] = {p->modality, p->patient, p->accession, p->date, p->format};
    for (int i = 0; c && i < 5; i++)
        if (opt_vals[i])
            json_object_set_new(c, opt_keys[i], json_string(opt_vals[i]));
    if (c && p->messages)
        json_object_set_new(c, "messages", json_string(p->messages));
    char *canon = c ? ny_json_dumps(c, 0) : NULL;
    json_decref(c);
    if (!canon)
        return NY_ERR(err, NY_E_NOMEM, "%s: out of memory", what);
    ny_sha256_hex(canon, strlen(canon), p->record_hash);
    ny_free(canon);
    return NY_OK;
}

static void bind_opt(sqlite3_stmt *s, int i, const char *v)
{
    if (v)
        sqlite3_bind_text(s, i, v, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(s, i);
}

enum { ST_FIND, ST_INSERT, ST_FTS_ADD, ST_FTS_DEL, ST_DELETE, ST_COUNT };

static const char *import_sql[ST_COUNT] = {
    "SELECT rowid, record_hash, exam_description, reason, report FROM records WHERE id = ?1",
    "INSERT INTO records(id, split, exam_description, reason, report, modality, patient,"
    " accession, study_date, format, messages, gold, content_hash, record_hash)"
    " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
    "INSERT INTO records_fts(rowid, exam_description, reason, report) VALUES(?1, ?2, ?3, ?4)",
    "INSERT INTO records_fts(records_fts, rowid, exam_description, reason, report)"
    " VALUES('delete', ?1, ?2, ?3, ?4)",
    "DELETE FROM records WHERE rowid = ?1",
};

struct importer {
    struct dataset_store *st;
    sqlite3_stmt *s[ST_COUNT];
    const char *split;
    int replace;
    struct dataset_import_stats stats;
};

static int db_fail(struct importer *im, const char *what, struct ny_err *err)
{
    return NY_ERR(err, NY_E_DB, "%s: %s: %s", im->st->path, what, sqlite3_errmsg(im->st->db));
}

static int insert_parsed(struct importer *im, const struct parsed *p, const char *what,
                         struct ny_err *err)
{
    sqlite3_stmt *s = im->s[ST_FIND];
    sqlite3_reset(s);
    sqlite3_bind_text(s, 1, p->id, -1, SQLITE_STATIC);
    int step = sqlite3_step(s);
    if (step == SQLITE_ROW) {
        if (!strcmp((const char *)sqlite3_column_text(s, 1), p->record_hash)) {
            im->stats.unchanged++;
            return NY_OK;
        }
        if (!im->replace)
            return NY_ERR(err, NY_E_INVALID,
                          "%s: record \"%.80s\" already exists with other contents (use "
                          "--replace to overwrite it)", what, p->id);
        sqlite3_int64 rowid = sqlite3_column_int64(s, 0);
        sqlite3_stmt *d = im->s[ST_FTS_DEL];
        sqlite3_reset(d);
        sqlite3_bind_int64(d, 1, rowid);
        for (int i = 0; i < 3; i++)
            sqlite3_bind_text(d, 2 + i, (const char *)sqlite3_column_text(s, 2 + i), -1,
                              SQLITE_TRANSIENT);
        if (sqlite3_step(d) != SQLITE_DONE)
            return db_fail(im, "removing the old text from the index", err);
        d = im->s[ST_DELETE];
        sqlite3_reset(d);
        sqlite3_bind_int64(d, 1, rowid);
        if (sqlite3_step(d) != SQLITE_DONE)
            return db_fail(im, "removing the old record", err);
        im->stats.replaced++;
    } else if (step != SQLITE_DONE) {
        return db_fail(im, "looking up an id", err);
    } else {
        im->stats.added++;
    }
    sqlite3_reset(s);
    s = im->s[ST_INSERT];
    sqlite3_reset(s);
    const char *vals[14] = {p->id, im->split, p->desc, p->reason, p->report, p->modality,
                            p->patient, p->accession, p->date, p->format, p->messages, p->gold,
                            p->content_hash, p->record_hash};
    for (int i = 0; i < 14; i++)
        bind_opt(s, i + 1, vals[i]);
    if (sqlite3_step(s) != SQLITE_DONE)
        return db_fail(im, "inserting a record", err);
    sqlite3_stmt *f = im->s[ST_FTS_ADD];
    sqlite3_reset(f);
    sqlite3_bind_int64(f, 1, sqlite3_last_insert_rowid(im->st->db));
    bind_opt(f, 2, p->desc);
    bind_opt(f, 3, p->reason);
    bind_opt(f, 4, p->report);
    if (sqlite3_step(f) != SQLITE_DONE)
        return db_fail(im, "indexing a record", err);
    return NY_OK;
}

static int importer_begin(struct importer *im, struct dataset_store *st, const char *split,
                          int replace, struct ny_err *err)
{
    memset(im, 0, sizeof *im);
    im->st = st;
    im->split = split;
    im->replace = replace;
    for (int i = 0; i < ST_COUNT; i++)
        if (sqlite3_prepare_v2(st->db, import_sql[i], -1, &im->s[i], NULL) != SQLITE_OK)
            return db_fail(im, "preparing the import", err);
    return dataset_db_exec(st, "BEGIN IMMEDIATE", "starting the import", err);
}

/* Commit (rc == 0) or roll back, and finalise the statements. */
static int importer_end(struct importer *im, int rc, struct ny_err *err)
{
    for (int i = 0; i < ST_COUNT; i++)
        sqlite3_finalize(im->s[i]);
    if (!sqlite3_get_autocommit(im->st->db)) {
        /* merge the index into one segment: queries read one b-tree instead of many */
        if (rc == 0 && (im->stats.added || im->stats.replaced))
            rc = dataset_db_exec(im->st, "INSERT INTO records_fts(records_fts) VALUES('optimize')",
                                 "optimizing the text index", err);
        if (rc == 0)
            rc = dataset_db_exec(im->st, "COMMIT", "committing the import", err);
        if (rc)
            sqlite3_exec(im->st->db, "ROLLBACK", NULL, NULL, NULL);
    }
    im->st->generation++;
    return rc;
}

static int check_split(const char *split, struct ny_err *err)
{
    if (!split || !*split || strlen(split) > 64)
        return NY_ERR(err, NY_E_INVALID, "a split name must have 1 to 64 characters");
    return NY_OK;
}

int dataset_store_import_buf(struct dataset_store *st, const char *buf, size_t len,
                             const char *what, const char *split, int replace,
                             struct dataset_import_stats *stats, struct ny_err *err)
{
    int rc = check_split(split, err);
    if (rc)
        return rc;
    struct importer im;
    rc = importer_begin(&im, st, split, replace, err);
    struct ny_lines it;
    const char *line;
    size_t n;
    ny_lines_init(&it, buf, len);
    while (!rc && ny_lines_next(&it, &line, &n)) {
        size_t k = 0;
        while (k < n && (line[k] == ' ' || line[k] == '\t'))
            k++;
        if (k == n)
            continue; /* blank lines are allowed */
        char where[600];
        snprintf(where, sizeof where, "%s line %zu", what, it.lineno);
        struct parsed p;
        memset(&p, 0, sizeof p);
        rc = parse_line(line, n, where, split, &p, err);
        if (!rc)
            rc = insert_parsed(&im, &p, where, err);
        parsed_fini(&p);
    }
    rc = importer_end(&im, rc, err);
    if (!rc && stats)
        *stats = im.stats;
    return rc;
}

int dataset_store_import_file(struct dataset_store *st, const char *path, const char *split,
                              int replace, struct dataset_import_stats *stats,
                              struct ny_err *err)
{
    char *buf;
    size_t len;
    int rc = ny_file_read(path, (size_t)MAX_IMPORT_FILE, &buf, &len, err);
    if (rc)
        return rc;
    rc = dataset_store_import_buf(st, buf, len, path, split, replace, stats, err);
    ny_free(buf);
    return rc;
}

/* Used by the synthesiser: import records given as JSONL lines produced in memory. */
int dataset_store_import_lines(struct dataset_store *st, char **lines, size_t n,
                               const char *what, const char *split, struct ny_err *err)
{
    int rc = check_split(split, err);
    if (rc)
        return rc;
    struct importer im;
    rc = importer_begin(&im, st, split, 0, err);
    for (size_t i = 0; !rc && i < n; i++) {
        char where[300];
        snprintf(where, sizeof where, "%s record %zu", what, i);
        struct parsed p;
        memset(&p, 0, sizeof p);
        rc = parse_line(lines[i], strlen(lines[i]), where, split, &p, err);
        if (!rc)
            rc = insert_parsed(&im, &p, where, err);
        parsed_fini(&p);
    }
    return importer_end(&im, rc, err);
}
