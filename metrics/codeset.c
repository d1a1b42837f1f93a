/* codeset.c — the code-set database: schema, releases, indexed lookups, the import transaction
 * shared by the file importers (codeset_import.c), and the import of embedded rows. */
#include <sqlite3.h>
#include <string.h>

#include "metrics_int.h"

struct codeset_db {
    sqlite3 *db;
    sqlite3_stmt *lookup;   /* billable of (release_id, system, code) */
    sqlite3_stmt *cover;    /* does a release hold any code of a system */
    char cached_name[64];   /* release of the cached id and coverage */
    int64_t cached_id;
    int covered[4];         /* by CODESET_SYS_*: 1 covered, 0 not */
};

static const char *const schema =
    "PRAGMA foreign_keys = ON;"
    "CREATE TABLE IF NOT EXISTS codeset_meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);"
    "INSERT OR IGNORE INTO codeset_meta VALUES ('schema', 'nyxaudit.codeset/1');"
    "CREATE TABLE IF NOT EXISTS codeset_releases(id INTEGER PRIMARY KEY, name TEXT NOT NULL "
    " UNIQUE, effective TEXT NOT NULL);"
    "CREATE TABLE IF NOT EXISTS codeset_sources(release_id INTEGER NOT NULL REFERENCES "
    " codeset_releases(id), system INTEGER NOT NULL, sha256 TEXT NOT NULL, origin TEXT NOT NULL,"
    " PRIMARY KEY (release_id, system));"
    "CREATE TABLE IF NOT EXISTS codeset_codes(release_id INTEGER NOT NULL, system INTEGER NOT "
    " NULL, code TEXT NOT NULL, billable INTEGER NOT NULL, short TEXT, long TEXT,"
    " PRIMARY KEY (release_id, system, code)) WITHOUT ROWID;";

static const char *const builtin_cpt_modifiers[] = {"26", "50", "52", "59", "76", "77"};

static int db_fail(struct codeset_db *db, struct ny_err *err, const char *doing)
{
    return NY_ERR(err, NY_E_DB, "code-set database: %s: %s", doing, sqlite3_errmsg(db->db));
}

int codeset_open(const char *path, struct codeset_db **out, struct ny_err *err)
{
    if (!path || !out)
        return NY_ERR(err, NY_E_INVALID, "codeset_open: NULL argument");
    struct codeset_db *db = ny_calloc(1, sizeof *db);
    if (!db)
        return NY_ERR(err, NY_E_NOMEM, "opening code-set database %s: out of memory", path);
    if (sqlite3_open_v2(path, &db->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) !=
        SQLITE_OK) {
        int rc = NY_ERR(err, NY_E_DB, "opening code-set database %s: %s", path,
                        db->db ? sqlite3_errmsg(db->db) : "out of memory");
        codeset_close(db);
        return rc;
    }
    sqlite3_busy_timeout(db->db, 5000);
    char *msg = NULL;
    if (sqlite3_exec(db->db, schema, NULL, NULL, &msg) != SQLITE_OK) {
        int rc = NY_ERR(err, NY_E_DB, "code-set database %s: creating the schema: %s", path,
                        msg ? msg : "?");
        sqlite3_free(msg);
        codeset_close(db);
        return rc;
    }
    if (sqlite3_prepare_v2(db->db,
                           "SELECT billable FROM codeset_codes WHERE release_id = ?1 AND "
                           "system = ?2 AND code = ?3",
                           -1, &db->lookup, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db->db,
                           "SELECT EXISTS (SELECT 1 FROM codeset_codes WHERE release_id = ?1 "
                           "AND system = ?2)",
                           -1, &db->cover, NULL) != SQLITE_OK) {
        int rc = NY_ERR(err, NY_E_DB, "code-set database %s: %s", path, sqlite3_errmsg(db->db));
        codeset_close(db);
        return rc;
    }
    db->cached_id = -1;
    *out = db;
    return 0;
}

void codeset_close(struct codeset_db *db)
{
    if (!db)
        return;
    sqlite3_finalize(db->lookup);
    sqlite3_finalize(db->cover);
    sqlite3_close(db->db);
    ny_free(db);
}

int codeset_date_valid(const char *s)
{
    if (!s || strlen(s) != 10 || s[4] != '-' || s[7] != '-')
        return 0;
    for (int i = 0; i < 10; i++)
        if (i != 4 && i != 7 && (s[i] < '0' || s[i] > '9'))
            return 0;
    int mo = (s[5] - '0') * 10 + (s[6] - '0'), d = (s[8] - '0') * 10 + (s[9] - '0');
    return mo >= 1 && mo <= 12 && d >= 1 && d <= 31;
}

static int name_valid(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > 63)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return 0;
    }
    return 1;
}

/* Release id by name: 0 and *id, NY_E_NOTFOUND, or NY_E_DB. */
static int release_id(struct codeset_db *db, const char *name, int64_t *id, char *eff,
                      struct ny_err *err)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db->db, "SELECT id, effective FROM codeset_releases WHERE name = ?1",
                           -1, &st, NULL) != SQLITE_OK)
        return db_fail(db, err, "finding a release");
    sqlite3_bind_text(st, 1, name, -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *id = sqlite3_column_int64(st, 0);
        if (eff) {
            const char *e = (const char *)sqlite3_column_text(st, 1);
            snprintf(eff, 11, "%s", e ? e : "");
        }
        rc = 0;
    } else if (rc == SQLITE_DONE) {
        rc = NY_ERR(err, NY_E_NOTFOUND, "code-set release \"%s\" is not in the database", name);
    } else {
        rc = db_fail(db, err, "finding a release");
    }
    sqlite3_finalize(st);
    return rc;
}

int codeset_release_effective(struct codeset_db *db, const char *name, char eff[11],
                              struct ny_err *err)
{
    int64_t id;
    return release_id(db, name, &id, eff, err);
}

int codeset_release_find(struct codeset_db *db, const char *name, const char *date, char *out,
                         size_t cap, struct ny_err *err)
{
    if (!db || !out || cap == 0 || (!name && !date))
        return NY_ERR(err, NY_E_INVALID, "codeset_release_find: missing argument");
    if (name) {
        int64_t id;
        int rc = release_id(db, name, &id, NULL, err);
        if (rc)
            return rc;
        if (strlen(name) >= cap)
            return NY_ERR(err, NY_E_RANGE, "release name \"%s\" too long", name);
        snprintf(out, cap, "%s", name);
        return 0;
    }
    if (!codeset_date_valid(date))
        return NY_ERR(err, NY_E_INVALID, "\"%s\" is not a date (YYYY-MM-DD)", date);
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db->db,
                           "SELECT name FROM codeset_releases WHERE effective <= ?1 "
                           "ORDER BY effective DESC, name DESC LIMIT 1",
                           -1, &st, NULL) != SQLITE_OK)
        return db_fail(db, err, "finding the release in force");
    sqlite3_bind_text(st, 1, date, -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        const char *n = (const char *)sqlite3_column_text(st, 0);
        if (!n || strlen(n) >= cap)
            rc = NY_ERR(err, NY_E_RANGE, "release name too long");
        else {
            snprintf(out, cap, "%s", n);
            rc = 0;
        }
    } else if (rc == SQLITE_DONE) {
        rc = NY_ERR(err, NY_E_NOTFOUND, "no code-set release in the database is in force on %s",
                    date);
    } else {
        rc = db_fail(db, err, "finding the release in force");
    }
    sqlite3_finalize(st);
    return rc;
}

static int sys_of_name(const char *s)
{
    if (!s)
        return 0;
    if (strcmp(s, "icd10cm") == 0)
        return CODESET_SYS_ICD;
    if (strcmp(s, "cpt") == 0)
        return CODESET_SYS_CPT;
    if (strcmp(s, "modifier") == 0)
        return CODESET_SYS_MOD;
    return 0;
}

int codeset_count(struct codeset_db *db, const char *release, const char *system,
                  int billable_only, int64_t *out, struct ny_err *err)
{
    int sys = sys_of_name(system);
    if (!db || !release || !out || !sys)
        return NY_ERR(err, NY_E_INVALID, "codeset_count: bad argument (system \"%s\")",
                      system ? system : "(null)");
    int64_t id;
    int rc = release_id(db, release, &id, NULL, err);
    if (rc)
        return rc;
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db->db,
                           "SELECT count(*) FROM codeset_codes WHERE release_id = ?1 AND "
                           "system = ?2 AND (?3 = 0 OR billable = 1)",
                           -1, &st, NULL) != SQLITE_OK)
        return db_fail(db, err, "counting codes");
    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_int(st, 2, sys);
    sqlite3_bind_int(st, 3, billable_only ? 1 : 0);
    if (sqlite3_step(st) == SQLITE_ROW) {
        *out = sqlite3_column_int64(st, 0);
        rc = 0;
    } else {
        rc = db_fail(db, err, "counting codes");
    }
    sqlite3_finalize(st);
    return rc;
}

int codeset_release_list(struct codeset_db *db, struct codeset_release_info **out, size_t *n,
                         struct ny_err *err)
{
    if (!db || !out || !n)
        return NY_ERR(err, NY_E_INVALID, "codeset_release_list: NULL argument");
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db->db,
                           "SELECT r.name, r.effective,"
                           " (SELECT count(*) FROM codeset_codes c WHERE c.release_id = r.id AND"
                           "  c.system = 1),"
                           " (SELECT count(*) FROM codeset_codes c WHERE c.release_id = r.id AND"
                           "  c.system = 1 AND c.billable = 1),"
                           " (SELECT count(*) FROM codeset_codes c WHERE c.release_id = r.id AND"
                           "  c.system = 2),"
                           " (SELECT count(*) FROM codeset_codes c WHERE c.release_id = r.id AND"
                           "  c.system = 3)"
                           " FROM codeset_releases r ORDER BY r.effective DESC, r.name DESC",
                           -1, &st, NULL) != SQLITE_OK)
        return db_fail(db, err, "listing releases");
    struct codeset_release_info *arr = NULL;
    size_t cnt = 0;
    int rc = 0, s;
    while ((s = sqlite3_step(st)) == SQLITE_ROW) {
        struct codeset_release_info *na = ny_reallocarray(arr, cnt + 1, sizeof *arr);
        if (!na) {
            rc = NY_ERR(err, NY_E_NOMEM, "listing releases: out of memory");
            break;
        }
        arr = na;
        struct codeset_release_info *r = &arr[cnt++];
        memset(r, 0, sizeof *r);
        snprintf(r->name, sizeof r->name, "%s", (const char *)sqlite3_column_text(st, 0));
        snprintf(r->effective, sizeof r->effective, "%s",
                 (const char *)sqlite3_column_text(st, 1));
        r->icd10cm = sqlite3_column_int64(st, 2);
        r->icd10cm_billable = sqlite3_column_int64(st, 3);
        r->cpt = sqlite3_column_int64(st, 4);
        r->modifiers = sqlite3_column_int64(st, 5);
    }
    if (rc == 0 && s != SQLITE_DONE)
        rc = db_fail(db, err, "listing releases");
    sqlite3_finalize(st);
    if (rc) {
        ny_free(arr);
        return rc;
    }
    *out = arr;
    *n = cnt;
    return 0;
}

/* Make `release` the cached one: its id and which systems it covers. */
static int cache_release(struct codeset_db *db, const char *release, struct ny_err *err)
{
    if (db->cached_id >= 0 && strcmp(db->cached_name, release) == 0)
        return 0;
    int64_t id;
    int rc = release_id(db, release, &id, NULL, err);
    if (rc)
        return rc;
    for (int s = CODESET_SYS_ICD; s <= CODESET_SYS_MOD; s++) {
        sqlite3_reset(db->cover);
        sqlite3_bind_int64(db->cover, 1, id);
        sqlite3_bind_int(db->cover, 2, s);
        if (sqlite3_step(db->cover) != SQLITE_ROW)
            return db_fail(db, err, "checking a release's systems");
        db->covered[s] = sqlite3_column_int(db->cover, 0);
    }
    sqlite3_reset(db->cover);
    snprintf(db->cached_name, sizeof db->cached_name, "%s", release);
    db->cached_id = id;
    return 0;
}

static int sys_of_kind(enum metrics_kind kind)
{
    return kind == METRICS_KIND_ICD        ? CODESET_SYS_ICD
           : kind == METRICS_KIND_CPT      ? CODESET_SYS_CPT
           : kind == METRICS_KIND_MODIFIER ? CODESET_SYS_MOD
                                           : 0;
}

int codeset_covers(struct codeset_db *db, const char *release, enum metrics_kind kind, int *out,
                   struct ny_err *err)
{
    int sys = sys_of_kind(kind);
    if (!db || !release || !out || !sys)
        return NY_ERR(err, NY_E_INVALID, "codeset_covers: bad argument");
    int rc = cache_release(db, release, err);
    if (rc)
        return rc;
    *out = db->covered[sys];
    return 0;
}

int codeset_lookup(struct codeset_db *db, const char *release, enum metrics_kind kind,
                   const char *code, enum codeset_status *out, struct ny_err *err)
{
    if (!db || !release || !code || !out)
        return NY_ERR(err, NY_E_INVALID, "codeset_lookup: NULL argument");
    int sys = sys_of_kind(kind);
    if (!sys)
        return NY_ERR(err, NY_E_INVALID, "codeset_lookup: \"%s\" has no code kind", code);
    int rc = cache_release(db, release, err);
    if (rc)
        return rc;
    if (!db->covered[sys]) {
        *out = CODESET_UNCOVERED;
        return 0;
    }
    if (sys == CODESET_SYS_MOD)
        for (size_t i = 0; i < sizeof builtin_cpt_modifiers / sizeof *builtin_cpt_modifiers; i++)
            if (strcmp(code, builtin_cpt_modifiers[i]) == 0) {
                *out = CODESET_VALID;
                return 0;
            }
    sqlite3_bind_int64(db->lookup, 1, db->cached_id);
    sqlite3_bind_int(db->lookup, 2, sys);
    sqlite3_bind_text(db->lookup, 3, code, -1, SQLITE_STATIC);
    int s = sqlite3_step(db->lookup);
    enum codeset_status st = CODESET_INVALID;
    if (s == SQLITE_ROW)
        st = sqlite3_column_int(db->lookup, 0) ? CODESET_VALID : CODESET_NONBILLABLE;
    else if (s != SQLITE_DONE)
        rc = db_fail(db, err, "looking a code up");
    sqlite3_reset(db->lookup);
    sqlite3_clear_bindings(db->lookup);
    if (rc)
        return rc;
    *out = st;
    return 0;
}

/* ---- the import transaction ------------------------------------------------------------------ */
int codeset_tx_begin(struct codeset_db *db, const char *release, const char *effective,
                     struct codeset_tx *tx, struct ny_err *err)
{
    if (!name_valid(release))
        return NY_ERR(err, NY_E_INVALID,
                      "release name \"%s\": use 1 to 63 of A-Z a-z 0-9 . _ -", release);
    if (!codeset_date_valid(effective))
        return NY_ERR(err, NY_E_INVALID, "release %s: effective date \"%s\" is not YYYY-MM-DD",
                      release, effective ? effective : "(none)");
    memset(tx, 0, sizeof *tx);
    tx->db = db;
    db->cached_id = -1; /* coverage may change */
    if (sqlite3_exec(db->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
        return db_fail(db, err, "starting the import transaction");
    char eff[11] = "";
    int64_t id;
    struct ny_err tmp;
    ny_err_init(&tmp);
    int rc = release_id(db, release, &id, eff, &tmp);
    if (rc == NY_E_NOTFOUND) {
        sqlite3_stmt *st = NULL;
        rc = sqlite3_prepare_v2(db->db,
                                "INSERT INTO codeset_releases(name, effective) VALUES (?1, ?2)",
                                -1, &st, NULL);
        if (rc == SQLITE_OK) {
            sqlite3_bind_text(st, 1, release, -1, SQLITE_TRANSIENT);
            sqlite3_bind_text(st, 2, effective, -1, SQLITE_TRANSIENT);
            rc = sqlite3_step(st) == SQLITE_DONE ? 0 : -1;
        }
        sqlite3_finalize(st);
        rc = rc ? db_fail(db, err, "adding a release") : 0;
        id = sqlite3_last_insert_rowid(db->db);
    } else if (rc == 0 && strcmp(eff, effective) != 0) {
        rc = NY_ERR(err, NY_E_INVALID,
                    "release %s is already in the database with effective date %s, not %s",
                    release, eff, effective);
    } else if (rc) {
        if (err)
            *err = tmp;
    }
    if (rc == 0 && sqlite3_prepare_v2(db->db,
                                      "INSERT INTO codeset_codes(release_id, system, code, "
                                      "billable, short, long) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                                      -1, &tx->ins, NULL) != SQLITE_OK)
        rc = db_fail(db, err, "preparing the import");
    if (rc) {
        codeset_tx_rollback(tx);
        return rc;
    }
    tx->release_id = id;
    return 0;
}

static const char *sys_name(int sys)
{
    return sys == CODESET_SYS_ICD ? "icd10cm" : sys == CODESET_SYS_CPT ? "cpt" : "modifier";
}

int codeset_tx_source(struct codeset_tx *tx, int sys, const char *sha, const char *origin,
                      struct ny_err *err)
{
    sqlite3_stmt *st = NULL;
    struct codeset_db *db = tx->db;
    if (sqlite3_prepare_v2(db->db,
                           "SELECT sha256, origin FROM codeset_sources WHERE release_id = ?1 "
                           "AND system = ?2",
                           -1, &st, NULL) != SQLITE_OK)
        return db_fail(db, err, "reading the release's sources");
    sqlite3_bind_int64(st, 1, tx->release_id);
    sqlite3_bind_int(st, 2, sys);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        const char *old = (const char *)sqlite3_column_text(st, 0);
        const char *oldo = (const char *)sqlite3_column_text(st, 1);
        if (old && strcmp(old, sha) == 0)
            rc = 1;
        else
            rc = NY_ERR(err, NY_E_INVALID,
                        "%s: this release already holds other %s codes (from %s); import it "
                        "under another release name",
                        origin, sys_name(sys), oldo ? oldo : "?");
        sqlite3_finalize(st);
        return rc;
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE)
        return db_fail(db, err, "reading the release's sources");
    if (sqlite3_prepare_v2(db->db, "INSERT INTO codeset_sources VALUES (?1, ?2, ?3, ?4)", -1, &st,
                           NULL) != SQLITE_OK)
        return db_fail(db, err, "recording a source");
    sqlite3_bind_int64(st, 1, tx->release_id);
    sqlite3_bind_int(st, 2, sys);
    sqlite3_bind_text(st, 3, sha, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 4, origin, -1, SQLITE_TRANSIENT);
    rc = sqlite3_step(st) == SQLITE_DONE ? 0 : db_fail(db, err, "recording a source");
    sqlite3_finalize(st);
    return rc;
}

int codeset_tx_insert(struct codeset_tx *tx, int sys, const char *code, int billable,
                      const char *shortd, const char *longd, size_t line, int ignore_dup,
                      struct ny_err *err)
{
    sqlite3_stmt *st = tx->ins;
    sqlite3_bind_int64(st, 1, tx->release_id);
    sqlite3_bind_int(st, 2, sys);
    sqlite3_bind_text(st, 3, code, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 4, billable ? 1 : 0);
    if (shortd)
        sqlite3_bind_text(st, 5, shortd, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, 5);
    if (longd)
        sqlite3_bind_text(st, 6, longd, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, 6);
    int s = sqlite3_step(st);
    int ext = sqlite3_extended_errcode(tx->db->db);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    if (s == SQLITE_DONE) {
        tx->added++;
        return 0;
    }
    if (ext == SQLITE_CONSTRAINT_PRIMARYKEY) {
        if (ignore_dup)
            return 0;
        if (line)
            return NY_ERR(err, NY_E_FORMAT, "%s line %zu: duplicate %s code %s", tx->what, line,
                          sys_name(sys), code);
        return NY_ERR(err, NY_E_FORMAT, "%s: duplicate %s code %s", tx->what, sys_name(sys),
                      code);
    }
    return db_fail(tx->db, err, "inserting a code");
}

int codeset_tx_commit(struct codeset_tx *tx, struct ny_err *err)
{
    sqlite3_finalize(tx->ins);
    tx->ins = NULL;
    if (sqlite3_exec(tx->db->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
        int rc = db_fail(tx->db, err, "committing the import");
        codeset_tx_rollback(tx);
        return rc;
    }
    return 0;
}

void codeset_tx_rollback(struct codeset_tx *tx)
{
    sqlite3_finalize(tx->ins);
    tx->ins = NULL;
    if (!sqlite3_get_autocommit(tx->db->db))
        sqlite3_exec(tx->db->db, "ROLLBACK", NULL, NULL, NULL);
    tx->db->cached_id = -1;
}

/* ---- embedded rows --------------------------------------------------------------------------- */
static int row_check(const struct codeset_row *r, size_t i, int *sys, char *norm,
                     struct ny_err *err)
{
    *sys = sys_of_name(r->system);
    if (!*sys)
        return NY_ERR(err, NY_E_INVALID, "code-set row %zu: unknown system \"%s\"", i,
                      r->system ? r->system : "(null)");
    enum metrics_kind want = *sys == CODESET_SYS_ICD   ? METRICS_KIND_ICD
                             : *sys == CODESET_SYS_CPT ? METRICS_KIND_CPT
                                                       : METRICS_KIND_MODIFIER;
    if (!r->code || metrics_token_classify(r->code, strlen(r->code), norm) != want ||
        strcmp(norm, r->code) != 0)
        return NY_ERR(err, NY_E_INVALID, "code-set row %zu: \"%s\" is not a normalised %s code",
                      i, r->code ? r->code : "(null)", r->system);
    if (r->label && !ny_utf8_valid(r->label, strlen(r->label), NULL))
        return NY_ERR(err, NY_E_INVALID, "code-set row %zu: label is not UTF-8", i);
    return 0;
}

int codeset_import_rows(struct codeset_db *db, const char *release, const char *effective_date,
                        const struct codeset_row *rows, size_t n, struct ny_err *err)
{
    if (!db || (!rows && n))
        return NY_ERR(err, NY_E_INVALID, "codeset_import_rows: NULL argument");
    /* Validate and hash each system's rows before touching the database. */
    struct ny_sha256 h[4];
    int present[4] = {0, 0, 0, 0};
    for (int s = 0; s < 4; s++)
        ny_sha256_init(&h[s]);
    for (size_t i = 0; i < n; i++) {
        int sys;
        char norm[METRICS_CODE_MAX];
        int rc = row_check(&rows[i], i, &sys, norm, err);
        if (rc)
            return rc;
        present[sys] = 1;
        char head[32];
        int hl = snprintf(head, sizeof head, "%s\t%d\t", norm, rows[i].billable ? 1 : 0);
        ny_sha256_update(&h[sys], head, (size_t)hl);
        if (rows[i].label)
            ny_sha256_update(&h[sys], rows[i].label, strlen(rows[i].label));
        ny_sha256_update(&h[sys], "\n", 1);
    }
    struct codeset_tx tx;
    int rc = codeset_tx_begin(db, release, effective_date, &tx, err);
    if (rc)
        return rc;
    tx.what = "embedded code set";
    int skip[4] = {1, 1, 1, 1};
    for (int s = CODESET_SYS_ICD; s <= CODESET_SYS_MOD && rc == 0; s++) {
        if (!present[s])
            continue;
        uint8_t dig[32];
        char hex[65];
        ny_sha256_final(&h[s], dig);
        ny_hex_encode(dig, 32, hex);
        rc = codeset_tx_source(&tx, s, hex, "embedded code set", err);
        if (rc >= 0) {
            skip[s] = rc;
            rc = 0;
        }
    }
    for (size_t i = 0; i < n && rc == 0; i++) {
        int sys = sys_of_name(rows[i].system);
        if (!skip[sys])
            rc = codeset_tx_insert(&tx, sys, rows[i].code, rows[i].billable, rows[i].label, NULL,
                                   0, 0, err);
    }
    if (rc) {
        codeset_tx_rollback(&tx);
        return rc;
    }
    return codeset_tx_commit(&tx, err);
}
