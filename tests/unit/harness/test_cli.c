/* test_cli.c — the nyxaudit binary's exit codes (0 pass, 1 gate failed, 2 invalid input, 3
 * incomplete, 4 internal), its outputs (results.json, junit.xml, summary.md and
 * $GITHUB_STEP_SUMMARY, reports) and `nyxaudit verify`, on the tiny fixture checkpoints. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include <cmocka.h>

#include "datasets.h"
#include "harness.h"
#include "harness_test.h"
#include "ny_test.h"

static char dir[64];
static const char *bin;

static int setup(void **state)
{
    (void)state;
    bin = getenv("NYXAUDIT_BIN");
    if (!bin || ny_test_tmpdir_make(dir, sizeof dir, "cli"))
        return -1;
    return ht_records_store(dir, 5, 12, 6, 40);
}

static int teardown(void **state)
{
    (void)state;
    return ny_test_tmpdir_remove(dir);
}

/* Write dir/name with the given text (making its directory). */
static void put(const char *name, const char *text)
{
    ny_test_put(dir, name, text);
}

/* A configuration over the tiny checkpoints with one cpt_exact floor at `min`. */
static void put_config(const char *name, const char *out, const char *min, const char *extra)
{
    char text[2048];
    snprintf(text, sizeof text,
             "{\"checkpoints\": [{\"label\": \"V16\", \"model\": \"%s/tiny/base\", "
             "\"baseline\": true}, {\"label\": \"V17\", \"model\": \"%s/tiny/base\", "
             "\"adapter\": \"%s/tiny/adapter_a\"}],"
             " \"dataset\": {\"store\": \"records.sqlite\", \"n\": 3},"
             " \"prompt\": {\"few_shot\": 0}, \"decoding\": {\"max_new_tokens\": 4},"
             " \"gates\": [{\"name\": \"cpt_floor\", \"kind\": \"floor\", \"metric\": "
             "\"cpt_exact\", \"min\": %s}],"
             " \"output\": {\"dir\": \"%s\"%s}}",
             NY_SOURCE_DIR "/golden/harness", NY_SOURCE_DIR "/golden/harness",
             NY_SOURCE_DIR "/golden/harness", min, out, extra);
    put(name, text);
}

/* Run `env... nyxaudit args` in dir; return the exit status; stderr kept in dir/err.txt. */
static int sh(const char *env, const char *args)
{
    return ny_test_run(dir, env, args);
}

static char *slurp(const char *name)
{
    return ny_test_slurp(dir, name);
}

static void expect_stderr(const char *needle)
{
    char *e = slurp("err.txt");
    if (!e || !strstr(e, needle))
        print_error("stderr lacks \"%s\": %s\n", needle, e ? e : "(none)");
    assert_non_null(e);
    assert_non_null(strstr(e, needle));
    ny_free(e);
}

static void test_exit_0_pass_and_verify(void **state)
{
    (void)state;
    put_config("pass.json", "out0", "0.0", "");
    assert_int_equal(sh("GITHUB_STEP_SUMMARY=gh.md", "--config pass.json --quiet"), 0);
    char *e = slurp("err.txt");
    assert_string_equal(e, ""); /* --quiet */
    ny_free(e);
    char *junit = slurp("out0/junit.xml"), *md = slurp("out0/summary.md"), *gh = slurp("gh.md");
    assert_non_null(strstr(junit, "tests=\"1\" failures=\"0\""));
    assert_non_null(strstr(junit, "name=\"cpt_floor[V17]\""));
    assert_null(strstr(junit, "<failure"));
    assert_non_null(strstr(md, "# NYXAudit release audit: PASS"));
    assert_non_null(strstr(md, "| cpt_floor[V17] | V17 | cpt_exact value >= 0 |"));
    assert_non_null(gh);
    assert_non_null(strstr(gh, md));
    ny_free(junit);
    ny_free(md);
    ny_free(gh);
    char *pdf = slurp("out0/report.pdf"), *html = slurp("out0/report.html");
    char *hist = slurp("out0/history.html");
    assert_non_null(pdf);
    assert_non_null(html);
    assert_non_null(hist);
    assert_memory_equal(pdf, "%PDF-", 5);
    ny_free(pdf);
    ny_free(html);
    ny_free(hist);
    assert_int_equal(sh("", "verify out0"), 0);
    char *o = slurp("out.txt");
    assert_non_null(strstr(o, "ok   metrics recomputed from the recorded predictions"));
    assert_non_null(strstr(o, "ok   report.pdf: rendered from results.json"));
    assert_null(strstr(o, "FAIL"));
    ny_free(o);
}

static void test_exit_1_gate_failed_and_tamper(void **state)
{
    (void)state;
    put_config("fail.json", "out1", "1.0", "");
    assert_int_equal(sh("", "--config fail.json"), 1);
    expect_stderr("FAIL (1 gate failed");
    char *junit = slurp("out1/junit.xml");
    assert_non_null(strstr(junit, "failures=\"1\""));
    assert_non_null(strstr(junit, "<failure type=\"gate\" message=\"cpt_exact value &gt;= 1\">"));
    ny_free(junit);
    /* Tamper with one prediction: verify notices (exit 1). */
    char cmd[256];
    snprintf(cmd, sizeof cmd,
             "sed -i '0,/\"V17\": \"74177/s//\"V17\": \"74176/' '%s/out1/results.json'", dir);
    assert_int_equal(system(cmd), 0);
    assert_int_equal(sh("", "verify out1"), 1);
    char *o = slurp("out.txt");
    assert_non_null(strstr(o, "FAIL results.json matches the run store"));
    assert_non_null(strstr(o, "FAIL prediction in the store: V17, record"));
    assert_non_null(strstr(o, "FAIL report.pdf")); /* re-rendered from the tampered results */
    ny_free(o);
}

/* A checkpoint file changed after the run: verify names the file (bug: it only said that "a
 * file" differed). */
static void test_verify_names_changed_checkpoint_file(void **state)
{
    (void)state;
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "cp -r '%s/golden/harness/tiny' '%s/ck'", NY_SOURCE_DIR, dir);
    assert_int_equal(system(cmd), 0);
    put("ck.json",
        "{\"checkpoints\": [{\"label\": \"V16\", \"model\": \"ck/base\", \"baseline\": true},"
        " {\"label\": \"V17\", \"model\": \"ck/base\", \"adapter\": \"ck/adapter_a\"}],"
        " \"dataset\": {\"store\": \"records.sqlite\", \"n\": 3},"
        " \"prompt\": {\"few_shot\": 0}, \"decoding\": {\"max_new_tokens\": 4},"
        " \"gates\": [], \"output\": {\"dir\": \"outck\"}}");
    assert_int_equal(sh("", "--config ck.json --quiet"), 0);
    assert_int_equal(sh("", "verify outck"), 0);
    snprintf(cmd, sizeof cmd, "printf ' ' >> '%s/ck/adapter_a/adapter_config.json'", dir);
    assert_int_equal(system(cmd), 0);
    assert_int_equal(sh("", "verify outck"), 1);
    char *o = slurp("out.txt");
    assert_non_null(o);
    assert_non_null(strstr(o, "FAIL checkpoint file hashes: "));
    assert_non_null(strstr(o, "adapter_a/adapter_config.json changed since the run"));
    assert_null(strstr(o, "base/config.json changed"));
    ny_free(o);
}

static void test_exit_2_invalid(void **state)
{
    (void)state;
    assert_int_equal(sh("", "--bogus"), 2);
    expect_stderr("unexpected argument '--bogus'");
    assert_int_equal(sh("", "--n abc"), 2);
    expect_stderr("--n needs an integer");
    assert_int_equal(sh("", "--n"), 2);
    expect_stderr("--n needs a value");
    assert_int_equal(sh("", "--config nonexistent.json"), 2);
    expect_stderr("nonexistent.json");
    put("bad.json", "{\"dataset\": {\"n\": 5,}}");
    assert_int_equal(sh("", "--config bad.json"), 2);
    expect_stderr("bad.json: malformed JSON at line 1");
    put("typo.json", "{\"decoding\": {\"max_new_token\": 5}}");
    assert_int_equal(sh("", "--config typo.json"), 2);
    expect_stderr("unknown field \"max_new_token\"");
    put_config("pass2.json", "out2", "0.0", "");
    assert_int_equal(sh("", "--config pass2.json --device tpu"), 2);
    expect_stderr("device must be \"cpu\" or \"cuda\"");
    /* cuda without a CUDA build or without a GPU: a usage error naming the checkpoint. */
    if (system("nvidia-smi -L >/dev/null 2>&1") != 0) {
        assert_int_equal(sh("", "--config pass2.json --device cuda"), 2);
        expect_stderr("checkpoint V16: ");
    }
    assert_int_equal(sh("", "--config pass2.json --device cpu --tp 9"), 2);
    expect_stderr("size 9 is outside 1..8");
    assert_int_equal(sh("", "--config pass2.json --split nosuchsplit"), 2);
    expect_stderr("no records in split \"nosuchsplit\"");
    put("missing.json", "{\"checkpoints\": [{\"label\": \"A\", \"model\": \"nowhere/a\", "
                        "\"baseline\": true}, {\"label\": \"B\", \"model\": \"nowhere/a\", "
                        "\"adapter\": \"nowhere/b\"}]}");
    assert_int_equal(sh("", "--config missing.json"), 2);
    expect_stderr("checkpoint B: adapter directory missing");
    /* A report that cannot be written (no font): exit 2 naming it, and no results.json. */
    assert_int_equal(sh("NYXAUDIT_FONT_DIR=/nonexistent", "--config pass2.json"), 2);
    expect_stderr("writing report.pdf");
    char *r = slurp("out2/results.json");
    assert_null(r);
    put("afile", "x");
    assert_int_equal(sh("", "--config pass2.json --out afile/sub"), 2);
    expect_stderr("output directory afile/sub cannot be created");
    /* The built-in configuration with its demo checkpoints absent names what is missing. */
    assert_int_equal(sh("NYXAUDIT_DEMO_DIR=/nonexistent", "--split heldout --n 5"), 2);
    expect_stderr("/nonexistent/v17");
}

static void test_verify_bad_dirs(void **state)
{
    (void)state;
    assert_int_equal(sh("", "verify"), 2);
    assert_int_equal(sh("", "verify nowhere"), 2);
    expect_stderr("nowhere/results.json");
    put("vbad/results.json", "{\"schema\": \"nyxaudit.results/1\", \"checkpoints\": 5}");
    assert_int_equal(sh("", "verify vbad"), 2);
    expect_stderr("vbad/runs.sqlite not found");
    assert_int_equal(sh("", "verify vbad --store out0/runs.sqlite"), 2);
    expect_stderr("\"checkpoints\" must be an array");
    put("vbad/results.json", "{\"schema\": \"other\"}");
    assert_int_equal(sh("", "verify vbad"), 2);
    expect_stderr("schema is not nyxaudit.results/1");
    put("vbad/results.json", "\xff");
    assert_int_equal(sh("", "verify vbad"), 2);
    expect_stderr("invalid UTF-8");
}

/* `nyxaudit bench`: argument errors are exit 2 before any device is touched. */
static void test_bench_args(void **state)
{
    (void)state;
    assert_int_equal(sh("", "bench --shape llama3-8b --tp 0"), 2);
    expect_stderr("--tp: '0' is not an integer in [1, 8]");
    assert_int_equal(sh("", "bench --shape llama3-8b --tp 9"), 2);
    expect_stderr("--tp: '9' is not an integer in [1, 8]");
    assert_int_equal(sh("", "bench --shape llama3-8b --tp two"), 2);
    expect_stderr("--tp: 'two' is not an integer");
    assert_int_equal(sh("", "bench --shape llama3-8b --ids-out"), 2);
    expect_stderr("--ids-out needs a value");
    assert_int_equal(sh("", "bench --shape llama3-8b --ids-out --tp 2"), 2);
    expect_stderr("--ids-out needs a value");
    assert_int_equal(sh("", "bench --shape llama3-8b --ids-out nowhere/ids.txt"), 2);
    expect_stderr("--ids-out nowhere/ids.txt: its directory does not exist");
    assert_int_equal(sh("", "bench --shape llama3-8b --generate 2"), 2);
    expect_stderr("--generate: '2' is not an integer in [0, 1]");
    assert_int_equal(sh("", "bench --tp 2"), 2);
    expect_stderr("--shape is required");
    assert_int_equal(sh("", "bench --help"), 0);
    char *o = slurp("out.txt");
    assert_non_null(o);
    assert_non_null(strstr(o, "[--tp T]"));
    assert_non_null(strstr(o, "[--ids-out FILE]"));
    assert_non_null(strstr(o, "[--generate 0|1]"));
    ny_free(o);
}

static void test_exit_3_incomplete_then_resume(void **state)
{
    (void)state;
    put_config("resume.json", "out3", "0.0", "");
    assert_int_equal(sh("NYXAUDIT_TEST_STOP_AFTER=3", "--config resume.json"), 3);
    expect_stderr("run the same command again to resume");
    char *r = slurp("out3/results.json");
    assert_null(r);
    assert_int_equal(sh("", "--config resume.json"), 0);
    expect_stderr("3 predictions decoded, 3 from the store");
}

static void test_exit_4_internal(void **state)
{
    (void)state;
    put("garbage.sqlite", "this is not an SQLite database, just text long enough to be read...");
    put_config("store.json", "out4", "0.0", ", \"run_store\": \"garbage.sqlite\"");
    assert_int_equal(sh("", "--config store.json"), 4);
    expect_stderr("garbage.sqlite");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exit_0_pass_and_verify),
        cmocka_unit_test(test_exit_1_gate_failed_and_tamper),
        cmocka_unit_test(test_exit_2_invalid),
        cmocka_unit_test(test_verify_bad_dirs),
        cmocka_unit_test(test_bench_args),
        cmocka_unit_test(test_verify_names_changed_checkpoint_file),
        cmocka_unit_test(test_exit_3_incomplete_then_resume),
        cmocka_unit_test(test_exit_4_internal),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
