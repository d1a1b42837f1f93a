/* test_shard.c — a multi-host audit on one machine: three shard processes started at once (the
 * shard from Open MPI's environment for one, --shard for the others), `nyxaudit merge` of their
 * run stores, and the final run over the merged store, which decodes nothing and writes the same
 * results.json as an unsharded run, byte for byte. Bad shards, bad shard stores, conflicting
 * predictions and a repeated merge. Tiny fixture checkpoints, as in test_cli.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "datasets.h"
#include "harness.h"
#include "harness_test.h"
#include "ny_test.h"

static char dir[64];
static const char *bin;

/* The launcher's variables of the test's own environment would shard every run here. */
static const char *const launcher_vars[] = {"OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE",
                                            "PMI_RANK", "PMI_SIZE", "SLURM_PROCID",
                                            "SLURM_NTASKS", NULL};

static void put(const char *name, const char *text)
{
    ny_test_put(dir, name, text);
}

static int setup(void **state)
{
    (void)state;
    for (int i = 0; launcher_vars[i]; i++)
        unsetenv(launcher_vars[i]);
    setenv("SOURCE_DATE_EPOCH", "1790000000", 1);
    bin = getenv("NYXAUDIT_BIN");
    if (!bin || ny_test_tmpdir_make(dir, sizeof dir, "shard") ||
        ht_records_store(dir, 5, 12, 6, 40))
        return -1;
    /* 5 records x 2 checkpoints: shard 0 of 3 has positions 0 and 3, shard 1 has 1 and 4,
     * shard 2 has 2; the two checkpoints share the tokenizer, so 5 distinct prompts. */
    char text[2048];
    snprintf(text, sizeof text,
             "{\"checkpoints\": [{\"label\": \"V16\", \"model\": \"%s/tiny/base\", "
             "\"baseline\": true}, {\"label\": \"V17\", \"model\": \"%s/tiny/base\", "
             "\"adapter\": \"%s/tiny/adapter_a\"}],"
             " \"dataset\": {\"store\": \"records.sqlite\", \"n\": 5},"
             " \"prompt\": {\"few_shot\": 0}, \"decoding\": {\"max_new_tokens\": 4},"
             " \"gates\": [{\"name\": \"cpt_floor\", \"kind\": \"floor\", \"metric\": "
             "\"cpt_exact\", \"min\": 0.0}]}",
             NY_SOURCE_DIR "/golden/harness", NY_SOURCE_DIR "/golden/harness",
             NY_SOURCE_DIR "/golden/harness");
    put("audit.json", text);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    return ny_test_tmpdir_remove(dir);
}

/* Run a shell command in dir; return its exit status. */
static int shell(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int shell(const char *fmt, ...)
{
    char body[3072], cmd[3200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(body, sizeof body, fmt, ap);
    va_end(ap);
    snprintf(cmd, sizeof cmd, "cd '%s' && { %s; }", dir, body);
    int st = system(cmd);
    assert_true(WIFEXITED(st));
    return WEXITSTATUS(st);
}

/* `env... nyxaudit args`, stdout in out.txt and stderr in err.txt. */
static int sh(const char *env, const char *args)
{
    return ny_test_run(dir, env, args);
}

static char *slurp(const char *name)
{
    return ny_test_slurp(dir, name);
}

static void expect_in(const char *file, const char *needle)
{
    char *e = slurp(file);
    if (!e || !strstr(e, needle))
        print_error("%s lacks \"%s\": %s\n", file, needle, e ? e : "(none)");
    assert_non_null(e);
    assert_non_null(strstr(e, needle));
    ny_free(e);
}

static int64_t predictions_in(const char *name)
{
    char *p = ny_path_join(dir, name);
    struct store *st = NULL;
    struct ny_err err;
    int64_t n = -1;
    assert_int_equal(store_open(p, &st, &err), NY_OK);
    assert_int_equal(store_prediction_count(st, &n, &err), NY_OK);
    store_close(st);
    ny_free(p);
    return n;
}

/* Run SQL on dir/name (a test's own tampering). */
static void sql(const char *name, const char *text)
{
    char *p = ny_path_join(dir, name);
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(p, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, text, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    ny_free(p);
}

static void test_three_shards_merge_equals_unsharded(void **state)
{
    (void)state;
    assert_int_equal(sh("", "--config audit.json --out full --quiet"), 0);
    assert_int_equal(predictions_in("full/runs.sqlite"), 10);
    /* Three shards at once, each into its own store: rank from Open MPI's environment; --shard;
     * --shard overriding a PMI environment that says otherwise. */
    assert_int_equal(
        shell("(env OMPI_COMM_WORLD_RANK=0 OMPI_COMM_WORLD_SIZE=3 '%s' --config audit.json "
              "--out s0 2>e0.txt; echo $? >rc0) & "
              "('%s' --config audit.json --out s1 --shard 1/3 2>e1.txt; echo $? >rc1) & "
              "(env PMI_RANK=0 PMI_SIZE=2 '%s' --config audit.json --out s2 --shard 2/3 "
              "2>e2.txt; echo $? >rc2) & wait", bin, bin, bin), 0);
    static const char *const rcs[] = {"rc0", "rc1", "rc2"};
    static const char *const errs[] = {"e0.txt", "e1.txt", "e2.txt"};
    static const char *const done[] = {"shard 0/3 done (4 predictions decoded",
                                       "shard 1/3 done (4 predictions decoded",
                                       "shard 2/3 done (2 predictions decoded"};
    for (int k = 0; k < 3; k++) {
        expect_in(rcs[k], "3\n"); /* incomplete: a merge is needed */
        expect_in(errs[k], done[k]);
    }
    assert_int_equal(predictions_in("s0/runs.sqlite"), 4);
    assert_int_equal(predictions_in("s1/runs.sqlite"), 4);
    assert_int_equal(predictions_in("s2/runs.sqlite"), 2);
    char *r = slurp("s0/results.json");
    assert_null(r); /* a shard writes no results */
    assert_int_equal(sh("", "merge --into final/runs.sqlite s0/runs.sqlite s1/runs.sqlite "
                        "s2/runs.sqlite"), 0);
    expect_in("err.txt", "3 shard stores into final/runs.sqlite: 10 predictions added, 0 already "
              "there, 5 prompts added, 1 runs added");
    assert_int_equal(sh("", "--config audit.json --out final"), 0);
    expect_in("err.txt", "PASS (0 gates failed; 0 predictions decoded, 10 from the store)");
    char *a = slurp("full/results.json"), *b = slurp("final/results.json");
    assert_non_null(a);
    assert_non_null(b);
    assert_string_equal(a, b);
    ny_free(a);
    ny_free(b);
    assert_int_equal(sh("", "verify final"), 0);
}

static void test_bad_shards_exit_2(void **state)
{
    (void)state;
    static const char *const bad[] = {"3/3", "-1/3", "1/0", "0/4097", "a/b", "1", "1/2/3",
                                      "/3", "1/", "01x/3"};
    char args[128];
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(args, sizeof args, "--config audit.json --out bad --shard '%s'", bad[i]);
        assert_int_equal(sh("", args), 2);
        expect_in("err.txt", "--shard");
    }
    assert_int_equal(sh("", "--config audit.json --out bad --shard"), 2);
    assert_int_equal(sh("OMPI_COMM_WORLD_RANK=3 OMPI_COMM_WORLD_SIZE=3",
                        "--config audit.json --out bad"), 2);
    expect_in("err.txt", "environment OMPI_COMM_WORLD_RANK/OMPI_COMM_WORLD_SIZE: \"3/3\"");
    assert_int_equal(sh("PMI_RANK=1", "--config audit.json --out bad"), 2);
    expect_in("err.txt", "PMI_RANK is set but PMI_SIZE is not");
    assert_int_equal(sh("SLURM_PROCID=x SLURM_NTASKS=2", "--config audit.json --out bad"), 2);
    expect_in("err.txt", "SLURM_PROCID/SLURM_NTASKS");
    assert_int_equal(sh("SLURM_PROCID=0 SLURM_NTASKS=5000", "--config audit.json --out bad"), 2);
    char *r = slurp("bad/runs.sqlite");
    assert_null(r); /* refused before anything was opened */
    /* N = 1 is no sharding: the run completes from the store of the unsharded run. */
    assert_int_equal(sh("SLURM_PROCID=0 SLURM_NTASKS=1",
                        "--config audit.json --out full --quiet"), 0);
}

static void test_bad_shard_stores_exit_2(void **state)
{
    (void)state;
    put("garbage.sqlite", "this is not an SQLite database, just text long enough to be read...");
    assert_int_equal(sh("", "merge --into m.sqlite s0/runs.sqlite garbage.sqlite"), 2);
    expect_in("err.txt", "shard store garbage.sqlite: not a nyxaudit run store");
    assert_int_equal(sh("", "merge --into m.sqlite nosuch.sqlite"), 2);
    expect_in("err.txt", "shard store nosuch.sqlite: not found");
    sql("other.sqlite", "CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT);"
                        "INSERT INTO meta VALUES('schema', 'nyxaudit.store/1');");
    assert_int_equal(sh("", "merge --into m.sqlite other.sqlite"), 2);
    expect_in("err.txt", "shard store other.sqlite: schema \"nyxaudit.store/1\"");
    sql("plain.sqlite", "CREATE TABLE t(x);");
    assert_int_equal(sh("", "merge --into m.sqlite plain.sqlite"), 2);
    expect_in("err.txt", "shard store plain.sqlite: not a nyxaudit run store");
    assert_int_equal(sh("", "merge --into m.sqlite"), 2);
    expect_in("err.txt", "usage: nyxaudit merge --into STORE SHARD_STORE...");
    assert_int_equal(sh("", "merge s0/runs.sqlite"), 2);
    /* The same cache key with another output: loud, and nothing merged (one transaction). */
    assert_int_equal(shell("cp s1/runs.sqlite tampered.sqlite"), 0);
    sql("tampered.sqlite", "UPDATE predictions SET output = output || ' 99999' WHERE rowid = "
                           "(SELECT min(rowid) FROM predictions)");
    assert_int_equal(sh("", "merge --into c.sqlite s0/runs.sqlite s1/runs.sqlite "
                        "tampered.sqlite"), 2);
    expect_in("err.txt", "shard store tampered.sqlite: prediction ");
    expect_in("err.txt", "same cache key, different output");
    assert_int_equal(predictions_in("c.sqlite"), 0);
    /* The merged store refuses the tampered shard too, and keeps its 10 predictions. */
    assert_int_equal(sh("", "merge --into final/runs.sqlite tampered.sqlite"), 2);
    assert_int_equal(predictions_in("final/runs.sqlite"), 10);
}

static void test_merge_twice_is_a_no_op(void **state)
{
    (void)state;
    char *before = slurp("final/results.json");
    assert_non_null(before);
    assert_int_equal(sh("", "merge --into final/runs.sqlite s2/runs.sqlite s0/runs.sqlite "
                        "s1/runs.sqlite s0/runs.sqlite"), 0);
    /* 2 + 4 + 4 + 4 rows read, every one already there. */
    expect_in("err.txt", "4 shard stores into final/runs.sqlite: 0 predictions added, 14 already "
              "there, 0 prompts added, 0 runs added");
    assert_int_equal(predictions_in("final/runs.sqlite"), 10);
    /* A later final run (another clock): the same results, times kept by the store. */
    assert_int_equal(sh("SOURCE_DATE_EPOCH=1790009999", "--config audit.json --out final"), 0);
    expect_in("err.txt", "0 predictions decoded, 10 from the store");
    char *after = slurp("final/results.json");
    assert_non_null(after);
    assert_string_equal(before, after);
    ny_free(before);
    ny_free(after);
    /* A fresh store merged later: the run starts when its shards started (SOURCE_DATE_EPOCH
     * 1790000000 in setup) and finishes when the final run does. */
    assert_int_equal(sh("", "merge --into late/runs.sqlite s0/runs.sqlite s1/runs.sqlite "
                        "s2/runs.sqlite"), 0);
    assert_int_equal(sh("SOURCE_DATE_EPOCH=1790009999", "--config audit.json --out late"), 0);
    expect_in("err.txt", "0 predictions decoded, 10 from the store");
    expect_in("late/results.json", "\"started\": \"2026-09-21T14:13:20Z\"");
    expect_in("late/results.json", "\"finished\": \"2026-09-21T16:59:59Z\"");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_three_shards_merge_equals_unsharded),
        cmocka_unit_test(test_bad_shards_exit_2),
        cmocka_unit_test(test_bad_shard_stores_exit_2),
        cmocka_unit_test(test_merge_twice_is_a_no_op),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
