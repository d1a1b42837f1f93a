/* test_store.c — the run store: schema check on open, run start/finish times kept from the first
 * call, predictions committed once and read back, the file-hash cache following file changes,
 * run items and history. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>
#include <sqlite3.h>

#include "harness.h"
#include "ny_test.h"

static char dir[64];

static int setup(void **state)
{
    (void)state;
    return ny_test_tmpdir_make(dir, sizeof dir, "store");
}

static int teardown(void **state)
{
    (void)state;
    return ny_test_tmpdir_remove(dir);
}

static void test_not_a_store(void **state)
{
    (void)state;
    char *p = ny_path_join(dir, "junk.sqlite");
    struct ny_err err;
    ny_err_init(&err);
    const char junk[] = "definitely not an SQLite database file, only some text..........";
    assert_int_equal(ny_file_write_atomic(p, junk, sizeof junk, &err), NY_OK);
    struct store *st = NULL;
    assert_int_equal(store_open(p, &st, &err), NY_E_DB);
    assert_null(st);
    assert_non_null(strstr(err.msg, p));
    ny_free(p);
    store_close(NULL); /* no-op */
}

/* A store of another schema version is refused, naming both versions. */
static void test_old_schema(void **state)
{
    (void)state;
    char *p = ny_path_join(dir, "old.sqlite");
    sqlite3 *db;
    assert_int_equal(sqlite3_open(p, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT);"
                                      "INSERT INTO meta VALUES('schema', 'nyxaudit.store/1');",
                                  NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    struct store *st = NULL;
    struct ny_err err;
    ny_err_init(&err);
    assert_int_equal(store_open(p, &st, &err), NY_E_FORMAT);
    assert_non_null(strstr(err.msg, "schema \"nyxaudit.store/1\", this nyxaudit needs"));
    ny_free(p);
}

static void test_runs_and_predictions(void **state)
{
    (void)state;
    char *p = ny_path_join(dir, "runs.sqlite");
    struct ny_err err;
    ny_err_init(&err);
    struct store *st;
    assert_int_equal(store_open(p, &st, &err), NY_OK);
    char *started = NULL, *again = NULL, *fin = NULL, *fin2 = NULL;
    assert_int_equal(store_run_begin(st, "abcdef0123456789", "{}", "T1", &started, &err), NY_OK);
    assert_int_equal(store_run_begin(st, "abcdef0123456789", "{}", "T2", &again, &err), NY_OK);
    assert_string_equal(started, "T1");
    assert_string_equal(again, "T1"); /* a resumed run keeps its start */
    struct store_prediction pr = {.output = "74177, 26, R10.9", .output_ids = "[5,6]",
                                  .prompt_tokens = 100, .gen_tokens = 2, .ms = 1.5};
    int found = -1;
    struct store_prediction got;
    assert_int_equal(store_prediction_get(st, "k1", &got, &found, &err), NY_OK);
    assert_int_equal(found, 0);
    assert_int_equal(store_prediction_put(st, "k1", "V16", "ph", &pr, &err), NY_OK);
    struct store_prediction other = pr;
    other.output = "changed";
    assert_int_equal(store_prediction_put(st, "k1", "V16", "ph", &other, &err), NY_OK);
    assert_int_equal(store_prediction_get(st, "k1", &got, &found, &err), NY_OK);
    assert_int_equal(found, 1);
    assert_string_equal(got.output, "74177, 26, R10.9"); /* the first commit is kept */
    assert_string_equal(got.output_ids, "[5,6]");
    assert_int_equal(got.prompt_tokens, 100);
    assert_int_equal(got.gen_tokens, 2);
    store_prediction_fini(&got);
    int64_t n = 0;
    assert_int_equal(store_prediction_count(st, &n, &err), NY_OK);
    assert_int_equal(n, 1);
    const char *labels[] = {"V16"}, *ids[] = {"r1"}, *keys[] = {"k1"};
    assert_int_equal(store_run_items_put(st, "abcdef0123456789", labels, ids, keys, 1, &err),
                     NY_OK);
    assert_int_equal(store_run_finish(st, "abcdef0123456789", "T3", "{\"run\": 1}", &fin, &err),
                     NY_OK);
    assert_int_equal(store_run_finish(st, "abcdef0123456789", "T4", "{\"run\": 2}", &fin2, &err),
                     NY_OK);
    assert_string_equal(fin, "T3");
    assert_string_equal(fin2, "T3");
    char *key = NULL, *man = NULL, *res = NULL, *sha = NULL;
    assert_int_equal(store_run_find(st, "abcdef012345", &key, &err), NY_OK);
    assert_string_equal(key, "abcdef0123456789");
    assert_int_equal(store_run_find(st, "0000000000", &key, &err), NY_E_NOTFOUND);
    assert_int_equal(store_run_find(st, "xyz';--", &key, &err), NY_E_INVALID);
    assert_int_equal(store_run_get(st, "abcdef0123456789", &man, &res, &sha, &err), NY_OK);
    assert_string_equal(res, "{\"run\": 2}");
    char hex[65];
    ny_sha256_hex(res, strlen(res), hex);
    assert_string_equal(sha, hex);
    json_t *hist = NULL;
    assert_int_equal(store_history_get(st, &hist, &err), NY_OK);
    assert_int_equal(json_array_size(hist), 1);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(hist, 0), "run")), 2);
    json_decref(hist);
    ny_free(started);
    ny_free(again);
    ny_free(fin);
    ny_free(fin2);
    ny_free(key);
    ny_free(man);
    ny_free(res);
    ny_free(sha);
    store_close(st);
    /* Reopened: everything is still there (committed, not cached in memory). */
    assert_int_equal(store_open(p, &st, &err), NY_OK);
    assert_int_equal(store_prediction_get(st, "k1", &got, &found, &err), NY_OK);
    assert_int_equal(found, 1);
    store_prediction_fini(&got);
    store_close(st);
    ny_free(p);
}

static void test_filehash_cache(void **state)
{
    (void)state;
    struct ny_err err;
    ny_err_init(&err);
    struct store *st;
    assert_int_equal(store_open(":memory:", &st, &err), NY_OK);
    char *f = ny_path_join(dir, "w.safetensors");
    assert_int_equal(ny_file_write_atomic(f, "abc", 3, &err), NY_OK);
    char hex[65];
    int64_t bytes = 0;
    assert_int_equal(store_filehash_get(st, f, hex, &bytes, &err), NY_OK);
    assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    assert_int_equal(bytes, 3);
    assert_int_equal(store_filehash_get(st, f, hex, &bytes, &err), NY_OK); /* cached */
    assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    /* A changed file (new inode by the atomic rename) is hashed again. */
    assert_int_equal(ny_file_write_atomic(f, "abcd", 4, &err), NY_OK);
    assert_int_equal(store_filehash_get(st, f, hex, &bytes, &err), NY_OK);
    assert_string_equal(hex, "88d4266fd4e6338d13b845fcf289579d209c897823b9217da3e161936f031589");
    assert_int_equal(bytes, 4);
    char *missing = ny_path_join(dir, "nope");
    assert_int_equal(store_filehash_get(st, missing, hex, &bytes, &err), NY_E_NOTFOUND);
    ny_free(missing);
    ny_free(f);
    store_close(st);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_not_a_store),
        cmocka_unit_test(test_old_schema),
        cmocka_unit_test(test_runs_and_predictions),
        cmocka_unit_test(test_filehash_cache),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
