/* cmd_score.c — `nyxaudit score`: gold and prediction JSONL files to the "metrics" object (the
 * library is metrics/; this file reads the files, checks ids, and writes JSON and a table). */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "harness_int.h"
#include "metrics.h"

#define MAX_JSONL (1024u << 20) /* 1 GiB */

/* Defined in cmd_codeset.c: imports the embedded demo code set as release "demo". */
int harness_codeset_import_demo(struct codeset_db *db, struct ny_err *err);

static void usage(FILE *f)
{
    fprintf(f, "usage: nyxaudit score --gold GOLD.jsonl --pred NAME=PRED.jsonl [--pred ...]\n"
               "                      [--db FILE] [--release NAME] [--seed S] [--json OUT.json]\n"
               "GOLD rows: {\"id\", \"cpt\": [...], \"modifiers\": [...], \"icd\": [...]} or "
               "{\"id\", \"codes\": \"74177, 26, R10.84\"}\n"
               "           (optional \"modality\"); PRED rows: {\"id\", \"output\": \"<model "
               "line>\"}.\n"
               "Without --db the embedded demo code set validates the codes; --release defaults "
               "to the release in force today.\n");
}

struct gold_set {
    json_t **rows;              /* parsed lines, kept alive: strings below are borrowed */
    struct metrics_gold *gold;
    const char **strs;          /* storage for the array elements */
    size_t n, cap;
    struct id_ix { const char *id; size_t i; } *ix; /* sorted by id */
};

static int cmp_ix(const void *a, const void *b)
{
    return strcmp(((const struct id_ix *)a)->id, ((const struct id_ix *)b)->id);
}

static void gold_free(struct gold_set *g)
{
    for (size_t i = 0; i < g->n; i++)
        json_decref(g->rows[i]);
    ny_free(g->rows);
    ny_free(g->gold);
    ny_free(g->strs);
    ny_free(g->ix);
}

/* Count the string elements the gold arrays need, so one allocation holds them all. */
static int str_array(json_t *row, const char *key, const char *what, const char ***cursor,
                     const char *const **arr, size_t *n, struct ny_err *err)
{
    json_t *a = json_object_get(row, key);
    if (!a || json_is_null(a))
        return 0;
    if (!json_is_array(a))
        return NY_ERR(err, NY_E_FORMAT, "%s: field \"%s\" must be an array of strings", what, key);
    *arr = *cursor;
    size_t i;
    json_t *v;
    json_array_foreach(a, i, v) {
        if (!json_is_string(v))
            return NY_ERR(err, NY_E_FORMAT, "%s: field \"%s\" element %zu is not a string", what,
                          key, i);
        *(*cursor)++ = json_string_value(v);
    }
    *n = json_array_size(a);
    return 0;
}

/* Load a JSONL file into parsed rows (each an object with a string "id"). */
static int load_rows(const char *path, json_t ***rows_out, size_t **lines_out, size_t *n_out,
                     struct ny_err *err)
{
    char *buf = NULL;
    size_t len = 0;
    int rc = ny_file_read(path, MAX_JSONL, &buf, &len, err);
    if (rc)
        return rc;
    struct ny_lines it;
    ny_lines_init(&it, buf, len);
    const char *l;
    size_t ll, n = 0, cap = 0;
    json_t **rows = NULL;
    size_t *lines = NULL;
    while (rc == 0 && ny_lines_next(&it, &l, &ll)) {
        if (strspn(l, " \t") >= ll)
            continue;
        char what[300];
        snprintf(what, sizeof what, "%s line %zu", path, it.lineno);
        json_t *v = NULL;
        if ((rc = ny_json_load_buf(l, ll, what, &v, err)))
            break;
        const char *id = NULL;
        if (!json_is_object(v))
            rc = NY_ERR(err, NY_E_FORMAT, "%s: not a JSON object", what);
        else
            rc = ny_json_get_string(v, "id", 1, &id, what, err);
        if (rc == 0 && n == cap) {
            cap = cap ? 2 * cap : 256;
            json_t **nr = ny_reallocarray(rows, cap, sizeof *rows);
            size_t *nl = nr ? ny_reallocarray(lines, cap, sizeof *lines) : NULL;
            if (nr)
                rows = nr;
            if (nl)
                lines = nl;
            if (!nr || !nl)
                rc = NY_ERR(err, NY_E_NOMEM, "%s: out of memory", path);
        }
        if (rc) {
            json_decref(v);
            break;
        }
        lines[n] = it.lineno;
        rows[n++] = v;
    }
    ny_free(buf);
    if (rc == 0 && n == 0)
        rc = NY_ERR(err, NY_E_FORMAT, "%s: no records", path);
    if (rc) {
        for (size_t i = 0; i < n; i++)
            json_decref(rows[i]);
        ny_free(rows);
        ny_free(lines);
        return rc;
    }
    *rows_out = rows;
    *lines_out = lines;
    *n_out = n;
    return 0;
}

static int gold_row(struct gold_set *g, size_t i, const char *path, size_t lineno,
                    const char ***cursor, struct ny_err *err)
{
    json_t *row = g->rows[i];
    struct metrics_gold *gd = &g->gold[i];
    char what[300];
    snprintf(what, sizeof what, "%s line %zu", path, lineno);
    ny_json_get_string(row, "id", 1, &gd->id, what, err);
    int rc = ny_json_get_string(row, "codes", 0, &gd->codes, what, err);
    if (rc && rc != NY_E_NOTFOUND)
        return rc;
    rc = ny_json_get_string(row, "modality", 0, &gd->modality, what, err);
    if (rc && rc != NY_E_NOTFOUND)
        return rc;
    int has_arrays = json_object_get(row, "cpt") || json_object_get(row, "modifiers") ||
                     json_object_get(row, "icd");
    if (gd->codes && has_arrays)
        return NY_ERR(err, NY_E_FORMAT, "%s: give either \"codes\" or the cpt/modifiers/icd "
                      "arrays, not both", what);
    if (!gd->codes && !has_arrays)
        return NY_ERR(err, NY_E_FORMAT, "%s: no gold codes (\"codes\" or cpt/modifiers/icd)",
                      what);
    if ((rc = str_array(row, "cpt", what, cursor, &gd->cpt, &gd->n_cpt, err)) ||
        (rc = str_array(row, "modifiers", what, cursor, &gd->modifiers, &gd->n_modifiers, err)) ||
        (rc = str_array(row, "icd", what, cursor, &gd->icd, &gd->n_icd, err)))
        return rc;
    return 0;
}

static int load_gold(const char *path, struct gold_set *g, struct ny_err *err)
{
    memset(g, 0, sizeof *g);
    size_t *lines = NULL;
    int rc = load_rows(path, &g->rows, &lines, &g->n, err);
    if (rc)
        return rc;
    size_t total = 1;
    for (size_t i = 0; i < g->n; i++) {
        static const char *const keys[] = {"cpt", "modifiers", "icd"};
        for (int k = 0; k < 3; k++)
            total += json_array_size(json_object_get(g->rows[i], keys[k]));
    }
    g->gold = ny_calloc(g->n, sizeof *g->gold);
    g->strs = ny_calloc(total, sizeof *g->strs);
    g->ix = ny_calloc(g->n, sizeof *g->ix);
    if (!g->gold || !g->strs || !g->ix)
        rc = NY_ERR(err, NY_E_NOMEM, "%s: out of memory", path);
    const char **cursor = g->strs;
    for (size_t i = 0; rc == 0 && i < g->n; i++) {
        rc = gold_row(g, i, path, lines[i], &cursor, err);
        g->ix[i] = (struct id_ix){g->gold[i].id, i};
    }
    if (rc == 0) {
        qsort(g->ix, g->n, sizeof *g->ix, cmp_ix);
        for (size_t i = 1; i < g->n; i++)
            if (strcmp(g->ix[i - 1].id, g->ix[i].id) == 0) {
                size_t a = g->ix[i - 1].i, b = g->ix[i].i;
                rc = NY_ERR(err, NY_E_FORMAT, "%s line %zu: duplicate id \"%.100s\" (also line "
                            "%zu)", path, lines[a > b ? a : b], g->ix[i].id, lines[a < b ? a : b]);
                break;
            }
    }
    ny_free(lines);
    return rc;
}

/* One prediction file, as outputs in gold order (NULL = missing). rows kept for the strings. */
static int load_pred(const char *path, const struct gold_set *g, json_t ***rows_out, size_t *nrows,
                     const char ***outputs, struct ny_err *err)
{
    json_t **rows = NULL;
    size_t *lines = NULL, n = 0;
    int rc = load_rows(path, &rows, &lines, &n, err);
    if (rc)
        return rc;
    const char **out = ny_calloc(g->n, sizeof *out);
    size_t *seen = ny_calloc(g->n, sizeof *seen);
    if (!out || !seen)
        rc = NY_ERR(err, NY_E_NOMEM, "%s: out of memory", path);
    for (size_t r = 0; rc == 0 && r < n; r++) {
        char what[300];
        snprintf(what, sizeof what, "%s line %zu", path, lines[r]);
        struct id_ix key = {json_string_value(json_object_get(rows[r], "id")), 0};
        struct id_ix *hit = bsearch(&key, g->ix, g->n, sizeof *g->ix, cmp_ix);
        if (!hit) {
            rc = NY_ERR(err, NY_E_FORMAT, "%s: id \"%.100s\" is not in the gold file", what,
                        key.id);
            break;
        }
        if (seen[hit->i]) {
            rc = NY_ERR(err, NY_E_FORMAT, "%s: duplicate id \"%.100s\" (also line %zu)", what,
                        key.id, seen[hit->i]);
            break;
        }
        seen[hit->i] = lines[r];
        const char *o = NULL;
        rc = ny_json_get_string(rows[r], "output", 0, &o, what, err);
        if (rc == NY_E_NOTFOUND)
            rc = 0; /* no output: a missing prediction */
        out[hit->i] = o;
    }
    ny_free(seen);
    ny_free(lines);
    if (rc) {
        for (size_t i = 0; i < n; i++)
            json_decref(rows[i]);
        ny_free(rows);
        ny_free(out);
        return rc;
    }
    *rows_out = rows;
    *nrows = n;
    *outputs = out;
    return 0;
}

struct score_args {
    const char *gold, *db, *release, *json;
    const char *pred_names[64], *pred_paths[64];
    size_t m;
    uint64_t seed;
};

static int parse_args(int argc, char **argv, struct score_args *a)
{
    memset(a, 0, sizeof *a);
    for (int i = 1; i < argc; i++) {
        const char *opt = argv[i];
        if (i + 1 >= argc || strncmp(opt, "--", 2) != 0) {
            fprintf(stderr, "nyxaudit score: %s '%s'\n",
                    strncmp(opt, "--", 2) ? "unexpected argument" : "missing value after", opt);
            return -1;
        }
        const char *v = argv[++i];
        if (!strcmp(opt, "--gold")) {
            a->gold = v;
        } else if (!strcmp(opt, "--db")) {
            a->db = v;
        } else if (!strcmp(opt, "--release")) {
            a->release = v;
        } else if (!strcmp(opt, "--json")) {
            a->json = v;
        } else if (!strcmp(opt, "--seed")) {
            char *end = NULL;
            unsigned long long s = strtoull(v, &end, 10);
            if (!*v || *end || v[0] == '-' || s > INT64_MAX) {
                fprintf(stderr, "nyxaudit score: --seed takes an integer 0..2^63-1\n");
                return -1;
            }
            a->seed = s;
        } else if (!strcmp(opt, "--pred")) {
            const char *eq = strchr(v, '=');
            if (!eq || eq == v || !eq[1] || a->m == 64) {
                fprintf(stderr, "nyxaudit score: --pred takes NAME=FILE (at most 64): '%s'\n", v);
                return -1;
            }
            for (size_t k = 0; k < a->m; k++)
                if (strlen(a->pred_names[k]) == (size_t)(eq - v) &&
                    !strncmp(a->pred_names[k], v, (size_t)(eq - v))) {
                    fprintf(stderr, "nyxaudit score: two --pred named '%.*s'\n", (int)(eq - v), v);
                    return -1;
                }
            a->pred_names[a->m] = ny_strndup(v, (size_t)(eq - v));
            a->pred_paths[a->m++] = eq + 1;
        } else {
            fprintf(stderr, "nyxaudit score: unknown option '%s'\n", opt);
            return -1;
        }
    }
    if (!a->gold || a->m == 0) {
        fprintf(stderr, "nyxaudit score: --gold and at least one --pred are required\n");
        return -1;
    }
    return 0;
}

static int open_codeset(const struct score_args *a, struct codeset_db **db, char *rel, size_t cap,
                        struct ny_err *err)
{
    int rc = codeset_open(a->db ? a->db : ":memory:", db, err);
    if (rc)
        return rc;
    if (!a->db) {
        if ((rc = harness_codeset_import_demo(*db, err)))
            return rc;
        if (a->release && strcmp(a->release, "demo") != 0)
            return NY_ERR(err, NY_E_INVALID, "--release %s needs --db (without it the embedded "
                          "demo code set, release demo, is used)", a->release);
        fprintf(stderr, "nyxaudit score: validating against the embedded demo code set (release "
                        "demo); pass --db FILE for the CMS releases\n");
        snprintf(rel, cap, "demo");
        return 0;
    }
    char today[16];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(today, sizeof today, "%Y-%m-%d", &tm);
    rc = codeset_release_find(*db, a->release, a->release ? NULL : today, rel, cap, err);
    if (rc == 0 && !a->release)
        fprintf(stderr, "nyxaudit score: code-set release %s (in force on %s)\n", rel, today);
    return rc;
}

static int write_out(const struct score_args *a, json_t *metrics, struct ny_err *err)
{
    const char *name;
    json_t *mo;
    json_object_foreach(json_object_get(metrics, "models"), name, mo) {
        json_int_t miss = json_integer_value(json_object_get(mo, "missing"));
        if (miss > 0)
            fprintf(stderr, "nyxaudit score: %s has no prediction for %lld of %lld records "
                            "(scored as empty lines)\n", name, (long long)miss,
                    (long long)json_integer_value(json_object_get(metrics, "n")));
    }
    metrics_print_table(metrics, stdout);
    if (!a->json)
        return 0;
    char *s = ny_json_dumps(metrics, 2);
    if (!s)
        return NY_ERR(err, NY_E_NOMEM, "serialising the results: out of memory");
    struct ny_buf b;
    ny_buf_init(&b);
    ny_buf_puts(&b, s);
    ny_buf_puts(&b, "\n");
    ny_free(s);
    int rc = b.failed ? NY_ERR(err, NY_E_NOMEM, "out of memory")
                      : ny_file_write_atomic(a->json, b.data, b.len, err);
    ny_buf_fini(&b);
    return rc;
}

int harness_cmd_score(int argc, char **argv)
{
    struct score_args a;
    if (parse_args(argc, argv, &a) != 0) {
        for (size_t k = 0; k < a.m; k++)
            ny_free((char *)a.pred_names[k]);
        usage(stderr);
        return HARNESS_EXIT_INVALID;
    }
    struct ny_err err;
    ny_err_init(&err);
    struct gold_set g;
    json_t **prow[64] = {NULL};
    size_t pn[64] = {0};
    const char **outs[64] = {NULL};
    struct metrics_model models[64];
    struct codeset_db *db = NULL;
    char rel[64] = "";
    json_t *metrics = NULL;
    int rc = load_gold(a.gold, &g, &err);
    for (size_t k = 0; rc == 0 && k < a.m; k++) {
        rc = load_pred(a.pred_paths[k], &g, &prow[k], &pn[k], &outs[k], &err);
        models[k] = (struct metrics_model){a.pred_names[k], outs[k]};
    }
    if (rc == 0)
        rc = open_codeset(&a, &db, rel, sizeof rel, &err);
    if (rc == 0) {
        struct metrics_input in = {g.gold, g.n, models, a.m, db, rel, a.seed};
        rc = metrics_evaluate(&in, &metrics, &err);
    }
    if (rc == 0)
        rc = write_out(&a, metrics, &err);
    json_decref(metrics);
    codeset_close(db);
    for (size_t k = 0; k < a.m; k++) {
        for (size_t r = 0; r < pn[k]; r++)
            json_decref(prow[k][r]);
        ny_free(prow[k]);
        ny_free(outs[k]);
        ny_free((char *)a.pred_names[k]);
    }
    gold_free(&g);
    return rc ? harness_fail("score", rc, &err) : HARNESS_EXIT_OK;
}
