/* test_audit.c — the audit pipeline end to end with a fake decoder (real datasets, metrics, run
 * store, gates and outputs): a stopped run and a SIGKILLed run both resume to results.json
 * byte-identical to an uninterrupted run's, recomputing nothing already committed; a rerun
 * decodes nothing; a larger sample decodes only the new records. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "datasets.h"
#include "harness.h"
#include "harness_test.h"
#include "ny_test.h"

static char dir[64];

/* ---- the fake decoder: ids are the bytes of the messages; the output a function of them ---- */
static int fake_encode(void *ctx, size_t ckpt, json_t *messages, int32_t **ids, size_t *n,
                       struct ny_err *err)
{
    (void)ctx;
    (void)ckpt;
    char *s = ny_json_dumps(messages, 0);
    if (!s)
        return NY_ERR(err, NY_E_NOMEM, "oom");
    size_t len = strlen(s);
    int32_t *v = ny_calloc(len, sizeof *v);
    for (size_t i = 0; v && i < len; i++)
        v[i] = (unsigned char)s[i];
    ny_free(s);
    if (!v)
        return NY_ERR(err, NY_E_NOMEM, "oom");
    *ids = v;
    *n = len;
    return NY_OK;
}

static const char *const lines[] = {"74177, 26, R10.9", "71046, 26, R05.9", "70450, 26, R51.9",
                                    "73721, 26, RT, M25.561", "garbage!"};

static int generate_calls, stop_at_call; /* simulate SIGINT during call stop_at_call */

static int fake_generate(void *ctx, size_t ckpt, const int32_t *const *ids, const size_t *n,
                         size_t count, int64_t max_new, struct store_prediction *out,
                         struct ny_err *err)
{
    (void)ctx;
    if (++generate_calls == stop_at_call)
        harness_audit_request_stop(); /* what the SIGINT handler does */
    (void)max_new;
    (void)err;
    for (size_t k = 0; k < count; k++) {
        uint64_t h = ny_hash64(ids[k], n[k] * sizeof(int32_t)) + ckpt;
        out[k].output = ny_strdup(lines[h % 5]);
        out[k].output_ids = ny_strdup("[1,2,3]");
        out[k].prompt_tokens = (int64_t)n[k];
        out[k].gen_tokens = 3;
    }
    return NY_OK;
}

static struct harness_decoder fake = {.backend = "fake", .device = "test",
                                      .encode = fake_encode, .generate = fake_generate};

static int setup(void **state)
{
    (void)state;
    if (ny_test_tmpdir_make(dir, sizeof dir, "audit"))
        return -1;
    setenv("SOURCE_DATE_EPOCH", "1790000000", 1);
    return ht_records_store(dir, 11, 30, 12, 120);
}

static int teardown(void **state)
{
    (void)state;
    return ny_test_tmpdir_remove(dir);
}

/* A configuration over the tiny fixture checkpoints, the test's record store, output in out. */
static void make_cfg(struct harness_config *cfg, const char *out, int n)
{
    char text[2048];
    snprintf(text, sizeof text,
             "{\"checkpoints\": [{\"label\": \"V16\", \"model\": \"tiny/base\", "
             "\"baseline\": true},"
             " {\"label\": \"V17\", \"model\": \"tiny/base\", \"adapter\": \"tiny/adapter_a\"},"
             " {\"label\": \"Epoch-1\", \"model\": \"tiny/base\", "
             "\"adapter\": \"tiny/adapter_b\"}],"
             " \"dataset\": {\"store\": \"%s/records.sqlite\", \"split\": \"heldout\", \"n\": %d},"
             " \"prompt\": {\"few_shot\": 1},"
             " \"gates\": [{\"name\": \"floor\", \"kind\": \"floor\", \"metric\": \"cpt_exact\","
             "  \"min\": 0.0}, {\"name\": \"nr\", \"kind\": \"no_regression\", "
             "  \"metric\": \"cpt_exact\", \"margin\": 0.5}],"
             " \"output\": {\"dir\": \"%s/%s\"}}", dir, n, dir, out);
    json_t *o;
    struct ny_err err;
    ny_err_init(&err);
    assert_int_equal(ny_json_load_buf(text, strlen(text), "cfg", &o, &err), NY_OK);
    int rc = harness_config_parse(o, NY_SOURCE_DIR "/golden/harness", "cfg", cfg, &err);
    if (rc)
        print_error("%s\n", err.msg);
    assert_int_equal(rc, NY_OK);
    json_decref(o);
    cfg->quiet = 1;
}

static int allow_text; /* sets allow_report_text */

static int run(const char *out, int n, struct harness_audit_outcome *res)
{
    struct harness_config cfg;
    make_cfg(&cfg, out, n);
    cfg.allow_report_text = allow_text;
    struct ny_err err;
    ny_err_init(&err);
    int rc = harness_audit_run(&cfg, &fake, res, &err);
    if (rc && rc != NY_E_INCOMPLETE)
        print_error("audit: %s\n", err.msg);
    harness_config_fini(&cfg);
    return rc;
}

static char *read_out(const char *out, const char *name)
{
    char path[256];
    snprintf(path, sizeof path, "%s/%s/%s", dir, out, name);
    char *buf = NULL;
    size_t len;
    struct ny_err err;
    if (ny_file_read(path, 1 << 24, &buf, &len, &err))
        return NULL;
    return buf;
}

static void test_uninterrupted_and_rerun(void **state)
{
    (void)state;
    struct harness_audit_outcome r;
    assert_int_equal(run("a", 16, &r), NY_OK);
    assert_int_equal(r.decoded, 48);
    assert_int_equal(r.cached, 0);
    assert_int_equal(r.gates_failed, 0);
    char *first = read_out("a", "results.json");
    assert_non_null(first);
    json_t *res = json_loads(first, 0, NULL);
    assert_non_null(res);
    assert_string_equal(json_string_value(json_object_get(res, "schema")), "nyxaudit.results/1");
    assert_int_equal(json_array_size(json_object_get(res, "records")), 16);
    assert_int_equal(json_array_size(json_object_get(res, "gates")), 4); /* 2 gates x 2 cand. */
    assert_string_equal(json_string_value(json_object_get(res, "verdict")), "pass");
    json_t *run_o = json_object_get(res, "run");
    assert_string_equal(json_string_value(json_object_get(run_o, "id")), r.run_id);
    assert_string_equal(json_string_value(json_object_get(run_o, "started")),
                        "2026-09-21T14:13:20Z");
    json_t *man = json_object_get(res, "manifest");
    /* base: config, generation_config, model, tokenizer, tokenizer_config; 2 files per adapter */
    assert_int_equal(json_array_size(json_object_get(man, "files")), 9);
    assert_string_equal(json_string_value(json_object_get(json_object_get(man, "codeset"),
                                                          "release")), "demo");
    json_decref(res);
    /* The same command again: everything from the store, identical bytes. */
    assert_int_equal(run("a", 16, &r), NY_OK);
    assert_int_equal(r.decoded, 0);
    assert_int_equal(r.cached, 48);
    char *second = read_out("a", "results.json");
    assert_string_equal(first, second);
    ny_free(first);
    ny_free(second);
    char *junit = read_out("a", "junit.xml"), *md = read_out("a", "summary.md");
    assert_non_null(
        strstr(junit, "<testcase classname=\"nyxaudit.gates.V17\" name=\"floor[V17]\""));
    assert_non_null(strstr(md, "# NYXAudit release audit: PASS"));
    ny_free(junit);
    ny_free(md);
}

static void test_stop_and_resume(void **state)
{
    (void)state;
    struct harness_audit_outcome r;
    setenv("NYXAUDIT_TEST_STOP_AFTER", "20", 1);
    assert_int_equal(run("b", 16, &r), NY_E_INCOMPLETE);
    assert_int_equal(r.decoded, 20);
    assert_null(read_out("b", "results.json")); /* nothing half-written */
    unsetenv("NYXAUDIT_TEST_STOP_AFTER");
    assert_int_equal(run("b", 16, &r), NY_OK);
    assert_int_equal(r.decoded, 28);
    assert_int_equal(r.cached, 20);
    char *a = read_out("a", "results.json"), *b = read_out("b", "results.json");
    assert_non_null(b);
    assert_string_equal(a, b);
    ny_free(a);
    ny_free(b);
}

/* Ctrl-C while the second batch decodes: that batch is committed, then the run stops (exit 3). */
static void test_interrupt_commits_batch(void **state)
{
    (void)state;
    struct harness_audit_outcome r;
    generate_calls = 0;
    stop_at_call = 2;
    assert_int_equal(run("d", 16, &r), NY_E_INCOMPLETE);
    assert_int_equal(r.decoded, 2 * 16); /* two batches of the default 16 */
    stop_at_call = 0;
    assert_int_equal(run("d", 16, &r), NY_OK);
    assert_int_equal(r.decoded, 48 - 2 * 16);
    char *a = read_out("a", "results.json"), *d = read_out("d", "results.json");
    assert_non_null(d);
    assert_string_equal(a, d);
    ny_free(a);
    ny_free(d);
}

static void test_kill_and_resume(void **state)
{
    (void)state;
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        setenv("NYXAUDIT_TEST_KILL_AFTER", "7", 1);
        struct harness_audit_outcome r;
        run("c", 16, &r);
        _exit(0); /* not reached: the hook kills the process */
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    struct harness_audit_outcome r;
    assert_int_equal(run("c", 16, &r), NY_OK);
    assert_int_equal(r.cached, 7);
    assert_int_equal(r.decoded, 41);
    char *a = read_out("a", "results.json"), *c = read_out("c", "results.json");
    assert_non_null(c);
    assert_string_equal(a, c);
    ny_free(a);
    ny_free(c);
}

static void test_larger_sample_decodes_only_new(void **state)
{
    (void)state;
    struct harness_audit_outcome r;
    /* Sampling ranks by a keyed hash: n = 20 keeps the 16 records of n = 16. */
    assert_int_equal(run("a", 20, &r), NY_OK);
    assert_int_equal(r.decoded, 12);
    assert_int_equal(r.cached, 48);
}

/* Report excerpts only when allowed (reports are PHI); a different run (its own run id). */
static void test_report_excerpts(void **state)
{
    (void)state;
    struct harness_audit_outcome r;
    char *plain = read_out("a", "results.json");
    json_t *p = json_loads(plain, 0, NULL);
    json_t *rec0 = json_array_get(json_object_get(p, "records"), 0);
    assert_true(json_is_null(json_object_get(rec0, "report_excerpt")));
    allow_text = 1;
    assert_int_equal(run("e", 16, &r), NY_OK);
    allow_text = 0;
    assert_int_equal(r.decoded, 48); /* its own output directory, its own run store */
    char *with = read_out("e", "results.json");
    json_t *w = json_loads(with, 0, NULL);
    json_t *run_w = json_object_get(w, "run");
    assert_true(json_is_true(json_object_get(run_w, "allow_report_text")));
    assert_string_not_equal(json_string_value(json_object_get(run_w, "id")),
                            json_string_value(json_object_get(json_object_get(p, "run"), "id")));
    const char *ex = json_string_value(
        json_object_get(json_array_get(json_object_get(w, "records"), 0), "report_excerpt"));
    assert_non_null(ex);
    assert_true(strlen(ex) > 0 && strlen(ex) <= 400);
    json_decref(p);
    json_decref(w);
    ny_free(plain);
    ny_free(with);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_uninterrupted_and_rerun),
        cmocka_unit_test(test_stop_and_resume),
        cmocka_unit_test(test_interrupt_commits_batch),
        cmocka_unit_test(test_kill_and_resume),
        cmocka_unit_test(test_larger_sample_decodes_only_new),
        cmocka_unit_test(test_report_excerpts),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
