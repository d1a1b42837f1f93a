/* dataset_record.c — reading records back (by id, by split), deterministic sampling by keyed
 * hash, and the word iterator shared by retrieval and the leakage defense. */
#include <stdlib.h>
#include <string.h>

#include "datasets_int.h"

static char *col_dup(sqlite3_stmt *s, int i, int *oom)
{
    const unsigned char *t = sqlite3_column_text(s, i);
    if (!t)
        return NULL;
    char *d = ny_strdup((const char *)t);
    *oom |= d == NULL;
    return d;
}

static char **strings_of(json_t *arr, size_t *n, int *oom)
{
    *n = json_array_size(arr);
    char **v = ny_calloc(*n ? *n : 1, sizeof *v);
    if (!v) {
        *oom = 1;
        *n = 0;
        return NULL;
    }
    for (size_t i = 0; i < *n; i++)
        *oom |= !(v[i] = ny_strdup(json_string_value(json_array_get(arr, i))));
    return v;
}

int dataset_record_from_row(sqlite3_stmt *s, int c, struct dataset_record **out)
{
    struct dataset_record *r = ny_calloc(1, sizeof *r);
    if (!r)
        return NY_E_NOMEM;
    int oom = 0;
    r->id = col_dup(s, c + 0, &oom);
    r->split = col_dup(s, c + 1, &oom);
    r->exam_description = col_dup(s, c + 2, &oom);
    r->reason = col_dup(s, c + 3, &oom);
    r->report = col_dup(s, c + 4, &oom);
    r->modality = col_dup(s, c + 5, &oom);
    r->patient = col_dup(s, c + 6, &oom);
    r->accession = col_dup(s, c + 7, &oom);
    r->study_date = col_dup(s, c + 8, &oom);
    r->format = col_dup(s, c + 9, &oom);
    r->messages_json = col_dup(s, c + 10, &oom);
    const char *gold = (const char *)sqlite3_column_text(s, c + 11);
    json_t *g = gold ? json_loads(gold, 0, NULL) : NULL;
    r->has_gold = g != NULL;
    json_t *empty = json_array();
    r->cpt = strings_of(g ? json_object_get(g, "cpt") : empty, &r->ncpt, &oom);
    r->modifiers = strings_of(g ? json_object_get(g, "modifiers") : empty, &r->nmodifiers, &oom);
    r->icd = strings_of(g ? json_object_get(g, "icd") : empty, &r->nicd, &oom);
    r->gold_line = g ? dataset_gold_line(json_object_get(g, "cpt"),
                                         json_object_get(g, "modifiers"),
                                         json_object_get(g, "icd"))
                     : ny_strdup("");
    oom |= r->gold_line == NULL || empty == NULL;
    json_decref(g);
    json_decref(empty);
    const char *h = (const char *)sqlite3_column_text(s, c + 12);
    snprintf(r->content_hash, sizeof r->content_hash, "%s", h ? h : "");
    h = (const char *)sqlite3_column_text(s, c + 13);
    snprintf(r->record_hash, sizeof r->record_hash, "%s", h ? h : "");
    if (oom || !r->id || !r->report) {
        dataset_record_destroy(r);
        return NY_E_NOMEM;
    }
    *out = r;
    return NY_OK;
}

int dataset_record_get(struct dataset_store *st, const char *id, struct dataset_record **out,
                       struct ny_err *err)
{
    if (!st || !id || !out)
        return NY_ERR(err, NY_E_INVALID, "dataset_record_get: NULL argument");
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(st->db, "SELECT " DATASET_RECORD_COLUMNS " FROM records WHERE id = ?1",
                           -1, &s, NULL) != SQLITE_OK)
        return NY_ERR(err, NY_E_DB, "%s: %s", st->path, sqlite3_errmsg(st->db));
    sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        rc = dataset_record_from_row(s, 0, out);
        if (rc)
            NY_ERR(err, rc, "%s: record \"%.80s\": out of memory", st->path, id);
    } else if (rc == SQLITE_DONE) {
        rc = NY_ERR(err, NY_E_NOTFOUND, "%s: no record with id \"%.80s\"", st->path, id);
    } else {
        rc = NY_ERR(err, NY_E_DB, "%s: %s", st->path, sqlite3_errmsg(st->db));
    }
    sqlite3_finalize(s);
    return rc;
}

static void free_strings(char **v, size_t n)
{
    for (size_t i = 0; v && i < n; i++)
        ny_free(v[i]);
    ny_free(v);
}

void dataset_record_destroy(struct dataset_record *r)
{
    if (!r)
        return;
    char *f[] = {r->id, r->split, r->exam_description, r->reason, r->report, r->modality,
                 r->patient, r->accession, r->study_date, r->format, r->messages_json,
                 r->gold_line};
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++)
        ny_free(f[i]);
    free_strings(r->cpt, r->ncpt);
    free_strings(r->modifiers, r->nmodifiers);
    free_strings(r->icd, r->nicd);
    ny_free(r);
}

int dataset_store_count(struct dataset_store *st, const char *split, size_t *out,
                        struct ny_err *err)
{
    sqlite3_stmt *s;
    if (!st || !split || !out)
        return NY_ERR(err, NY_E_INVALID, "dataset_store_count: NULL argument");
    if (sqlite3_prepare_v2(st->db, "SELECT count(*) FROM records WHERE split = ?1", -1, &s,
                           NULL) != SQLITE_OK)
        return NY_ERR(err, NY_E_DB, "%s: %s", st->path, sqlite3_errmsg(st->db));
    sqlite3_bind_text(s, 1, split, -1, SQLITE_STATIC);
    int rc = NY_OK;
    if (sqlite3_step(s) == SQLITE_ROW)
        *out = (size_t)sqlite3_column_int64(s, 0);
    else
        rc = NY_ERR(err, NY_E_DB, "%s: %s", st->path, sqlite3_errmsg(st->db));
    sqlite3_finalize(s);
    return rc;
}

/* ---- sampling -------------------------------------------------------------------------------- */

uint64_t dataset_sample_key(uint64_t seed, const char *id)
{
    struct ny_sha256 s;
    uint8_t d[32], le[8];
    for (int i = 0; i < 8; i++)
        le[i] = (uint8_t)(seed >> (8 * i));
    ny_sha256_init(&s);
    ny_sha256_update(&s, le, 8);
    ny_sha256_update(&s, id, strlen(id));
    ny_sha256_final(&s, d);
    uint64_t k = 0;
    for (int i = 0; i < 8; i++)
        k = (k << 8) | d[i];
    return k;
}

struct keyed {
    uint64_t key;
    char *id;
};

static int keyed_cmp(const void *a, const void *b)
{
    const struct keyed *x = a, *y = b;
    if (x->key != y->key)
        return x->key < y->key ? -1 : 1;
    return strcmp(x->id, y->id);
}

void dataset_ids_free(char **ids, size_t n)
{
    free_strings(ids, n);
}

int dataset_store_sample(struct dataset_store *st, const char *split, size_t n, uint64_t seed,
                         char ***ids_out, size_t *n_out, struct ny_err *err)
{
    if (!st || !split || !ids_out || !n_out)
        return NY_ERR(err, NY_E_INVALID, "dataset_store_sample: NULL argument");
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(st->db, "SELECT id FROM records WHERE split = ?1", -1, &s, NULL) !=
        SQLITE_OK)
        return NY_ERR(err, NY_E_DB, "%s: %s", st->path, sqlite3_errmsg(st->db));
    sqlite3_bind_text(s, 1, split, -1, SQLITE_STATIC);
    struct keyed *all = NULL;
    size_t nall = 0, cap = 0;
    int rc = NY_OK, step;
    while ((step = sqlite3_step(s)) == SQLITE_ROW) {
        if (nall == cap) {
            cap = cap ? cap * 2 : 1024;
            struct keyed *g = ny_reallocarray(all, cap, sizeof *g);
            if (!g) {
                rc = NY_ERR(err, NY_E_NOMEM, "sampling %s: out of memory", split);
                break;
            }
            all = g;
        }
        char *id = ny_strdup((const char *)sqlite3_column_text(s, 0));
        if (!id) {
            rc = NY_ERR(err, NY_E_NOMEM, "sampling %s: out of memory", split);
            break;
        }
        all[nall].id = id;
        all[nall++].key = dataset_sample_key(seed, id);
    }
    if (!rc && step != SQLITE_DONE)
        rc = NY_ERR(err, NY_E_DB, "%s: %s", st->path, sqlite3_errmsg(st->db));
    sqlite3_finalize(s);
    char **ids = NULL;
    size_t take = n < nall ? n : nall;
    if (!rc) {
        if (nall)
            qsort(all, nall, sizeof *all, keyed_cmp);
        ids = ny_calloc(take ? take : 1, sizeof *ids);
        if (!ids)
            rc = NY_ERR(err, NY_E_NOMEM, "sampling %s: out of memory", split);
    }
    for (size_t i = 0; i < nall; i++) {
        if (!rc && i < take)
            ids[i] = all[i].id;
        else
            ny_free(all[i].id);
    }
    ny_free(all);
    if (rc)
        return rc;
    *ids_out = ids;
    *n_out = take;
    return NY_OK;
}

/* ---- words ----------------------------------------------------------------------------------- */

void dataset_words_init(struct dataset_words *w, const char *text, size_t len)
{
    w->p = text;
    w->end = text + len;
}

static int wordch(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

size_t dataset_words_next(struct dataset_words *w, char buf[48])
{
    while (w->p < w->end && !wordch((unsigned char)*w->p))
        w->p++;
    size_t n = 0;
    while (w->p < w->end && wordch((unsigned char)*w->p)) {
        char c = *w->p++;
        if (n < 47)
            buf[n++] = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
    }
    buf[n] = 0;
    return n;
}
