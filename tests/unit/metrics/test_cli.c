/* test_cli.c — `nyxaudit score` and `nyxaudit codeset` as a user runs them ($NYXAUDIT_BIN): the
 * JSON written, exit code 2 with a clear message for unknown and duplicate ids, malformed JSON
 * and bad arguments, and no output file after a failure. */
#include <jansson.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "common.h"
#include "ny_test.h"

static char dir[64];
static const char *bin;

static int setup(void **state)
{
    (void)state;
    bin = getenv("NYXAUDIT_BIN");
    return ny_test_tmpdir_make(dir, sizeof dir, "cli");
}

static int teardown(void **state)
{
    (void)state;
    return ny_test_tmpdir_remove(dir);
}

static void put(const char *name, const char *text)
{
    ny_test_put(dir, name, text);
}

/* Run `nyxaudit ARGS` in dir; returns the exit code, stderr captured into errbuf. */
static int run(const char *args, char *errbuf, size_t cap)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "cd '%s' && '%s' %s >out.txt 2>err.txt", dir, bin, args);
    int st = system(cmd);
    char p[256];
    snprintf(p, sizeof p, "%s/err.txt", dir);
    FILE *f = fopen(p, "rb");
    size_t n = f ? fread(errbuf, 1, cap - 1, f) : 0;
    errbuf[n] = '\0';
    if (f)
        fclose(f);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static const char *gold =
    "{\"id\": \"r1\", \"cpt\": [\"74177\"], \"modifiers\": [\"26\"], \"icd\": [\"R10.84\"],"
    " \"modality\": \"CT\"}\n"
    "{\"id\": \"r2\", \"codes\": \"71046, 26, J18.9\"}\n";

static void test_score_writes_json(void **state)
{
    (void)state;
    if (!bin)
        skip();
    put("gold.jsonl", gold);
    put("a.jsonl", "{\"id\": \"r2\", \"output\": \"71046, 26, J18.9\"}\n"
                   "{\"id\": \"r1\", \"output\": \"74177, 26, R1084\"}\n");
    put("b.jsonl", "{\"id\": \"r1\", \"output\": \"74177, 26, R10.9\"}\n");
    char err[2048];
    assert_int_equal(run("score --gold gold.jsonl --pred A=a.jsonl --pred B=b.jsonl "
                         "--json out.json --seed 3", err, sizeof err), 0);
    char p[256];
    snprintf(p, sizeof p, "%s/out.json", dir);
    json_t *m = NULL;
    assert_int_equal(ny_json_load_file(p, 1 << 22, &m, NULL), 0);
    assert_int_equal(json_integer_value(json_object_get(m, "n")), 2);
    json_t *a = json_object_get(json_object_get(m, "models"), "A");
    json_t *b = json_object_get(json_object_get(m, "models"), "B");
    assert_true(json_real_value(json_object_get(json_object_get(json_object_get(a, "metrics"),
                                                                "all_three_exact"), "value")) ==
                1.0);
    /* B: r2 missing, r1 wrong ICD. */
    assert_int_equal(json_integer_value(json_object_get(b, "missing")), 1);
    assert_true(json_real_value(json_object_get(json_object_get(json_object_get(b, "metrics"),
                                                                "icd_exact"), "value")) == 0.0);
    /* Validated against the embedded demo code set (said on stderr). */
    assert_string_equal(json_string_value(json_object_get(m, "codeset_release")), "demo");
    assert_non_null(strstr(err, "demo code set"));
    assert_int_equal(json_array_size(json_object_get(m, "comparisons")), 7);
    json_decref(m);
}

static void expect_fail(const char *args, int code, const char *want)
{
    char err[2048];
    int rc = run(args, err, sizeof err);
    if (rc != code || !strstr(err, want))
        fail_msg("`%s`: exit %d, stderr \"%s\" (want %d and \"%s\")", args, rc, err, code, want);
}

static void test_score_errors(void **state)
{
    (void)state;
    if (!bin)
        skip();
    put("gold.jsonl", gold);
    put("unknown.jsonl", "{\"id\": \"r9\", \"output\": \"74177\"}\n");
    put("dup.jsonl",
        "{\"id\": \"r1\", \"output\": \"74177\"}\n{\"id\": \"r1\", \"output\": \"x\"}\n");
    put("bad.jsonl", "{\"id\": \"r1\", \"output\": \"74177\"}\n{\"id\": \"r2\", \"output\": }\n");
    put("type.jsonl", "{\"id\": \"r1\", \"output\": 5}\n");
    put("gdup.jsonl",
        "{\"id\": \"r1\", \"codes\": \"74177\"}\n{\"id\": \"r1\", \"codes\": \"x\"}\n");
    put("gbad.jsonl", "{\"id\": \"r1\", \"cpt\": [\"R10.84\"]}\n");
    put("ok.jsonl", "{\"id\": \"r1\", \"output\": \"74177\"}\n");
    put("utf8.jsonl", "{\"id\": \"r1\", \"output\": \"74177 \xc3\x28\"}\n");
    put("arr.jsonl", "[\"r1\", \"74177\"]\n");
    put("noid.jsonl", "{\"output\": \"74177\"}\n");
    put("empty.jsonl", "\n\n");
    put("trunc.jsonl", "{\"id\": \"r1\", \"outp");
    expect_fail("score --gold gold.jsonl --pred A=utf8.jsonl", 2, "UTF-8");
    expect_fail("score --gold gold.jsonl --pred A=arr.jsonl", 2, "not a JSON object");
    expect_fail("score --gold gold.jsonl --pred A=noid.jsonl", 2, "id");
    expect_fail("score --gold gold.jsonl --pred A=empty.jsonl", 2, "no records");
    expect_fail("score --gold gold.jsonl --pred A=trunc.jsonl", 2, "trunc.jsonl line 1");
    expect_fail("score --gold gold.jsonl --pred A=ok.jsonl --seed -1", 2, "--seed");
    expect_fail("score --gold gold.jsonl --pred A=unknown.jsonl --json o1.json", 2,
                "unknown.jsonl line 1: id \"r9\" is not in the gold file");
    expect_fail("score --gold gold.jsonl --pred A=dup.jsonl --json o1.json", 2,
                "dup.jsonl line 2: duplicate id \"r1\"");
    expect_fail("score --gold gold.jsonl --pred A=bad.jsonl --json o1.json", 2, "bad.jsonl line 2");
    expect_fail("score --gold gold.jsonl --pred A=type.jsonl --json o1.json", 2, "output");
    expect_fail("score --gold gdup.jsonl --pred A=ok.jsonl --json o1.json", 2,
                "gdup.jsonl line 2: duplicate id \"r1\"");
    expect_fail("score --gold gbad.jsonl --pred A=ok.jsonl --json o1.json", 2, "\"cpt\"");
    expect_fail("score --gold missing.jsonl --pred A=ok.jsonl", 2, "missing.jsonl");
    expect_fail("score --gold gold.jsonl --pred A=ok.jsonl --pred A=ok.jsonl", 2, "two --pred");
    expect_fail("score --gold gold.jsonl", 2, "--pred");
    expect_fail("score --gold gold.jsonl --pred A=ok.jsonl --release FY2026", 2, "needs --db");
    expect_fail("score --gold gold.jsonl --pred A=ok.jsonl --db cs.db", 2, "in force");
    char p[256];
    snprintf(p, sizeof p, "%s/o1.json", dir);
    assert_false(ny_file_exists(p));
}

static void test_codeset_cli(void **state)
{
    (void)state;
    if (!bin)
        skip();
    put("cpt.txt", "74177\n71046\n");
    expect_fail("codeset import --db cs2.db --cpt cpt.txt", 2, "--release");
    char err[2048];
    assert_int_equal(run("codeset import --db cs2.db --cpt cpt.txt --release R1 --effective "
                         "2020-01-01", err, sizeof err), 0);
    assert_int_equal(run("codeset import --db cs2.db --cpt cpt.txt --release R1 --effective "
                         "2020-01-01", err, sizeof err), 0);
    assert_int_equal(run("codeset list --db cs2.db", err, sizeof err), 0);
    put("cpt2.txt", "74177\nnope\n");
    expect_fail("codeset import --db cs2.db --cpt cpt2.txt --release R2 --effective 2021-01-01", 2,
                "cpt2.txt line 2");
    expect_fail("codeset import --db cs2.db", 2, "at least one");
    expect_fail("codeset frobnicate", 2, "usage");
    /* Scoring against the imported release: CPT validity only (the release has no ICD codes). */
    put("gold.jsonl", gold);
    put("p.jsonl", "{\"id\": \"r1\", \"output\": \"74178, 26, R10.84\"}\n");
    assert_int_equal(run("score --gold gold.jsonl --pred P=p.jsonl --db cs2.db --release R1 "
                         "--json o2.json", err, sizeof err), 0);
    char p[256];
    snprintf(p, sizeof p, "%s/o2.json", dir);
    json_t *m = NULL;
    assert_int_equal(ny_json_load_file(p, 1 << 22, &m, NULL), 0);
    json_t *v = json_object_get(json_object_get(json_object_get(m, "models"), "P"), "validity");
    assert_true(json_real_value(json_object_get(v, "cpt_invalid")) == 1.0);
    assert_true(json_is_null(json_object_get(v, "icd_invalid")));
    json_decref(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_score_writes_json),
        cmocka_unit_test(test_score_errors),
        cmocka_unit_test(test_codeset_cli),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
