/* test_config.c — the built-in demo configuration, the JSON format, path resolution and every
 * class of configuration error. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "harness.h"

static int parse_str(const char *text, struct harness_config *cfg, struct ny_err *err)
{
    json_t *o = NULL;
    int rc = ny_json_load_buf(text, strlen(text), "test.json", &o, err);
    if (rc)
        return rc;
    rc = harness_config_parse(o, "/cfgdir", "test.json", cfg, err);
    json_decref(o);
    return rc;
}

static void test_default(void **state)
{
    (void)state;
    setenv("NYXAUDIT_DEMO_DIR", "/demo", 1);
    struct harness_config cfg;
    struct ny_err err;
    ny_err_init(&err);
    assert_int_equal(harness_config_default(&cfg, &err), NY_OK);
    assert_int_equal(harness_config_validate(&cfg, &err), NY_OK);
    assert_int_equal(cfg.n_checkpoints, 3);
    assert_string_equal(cfg.checkpoints[0].label, "V16");
    assert_true(cfg.checkpoints[0].baseline);
    assert_null(cfg.checkpoints[0].adapter);
    assert_string_equal(cfg.checkpoints[1].model_path, "/demo/v16");
    assert_string_equal(cfg.checkpoints[1].adapter_path, "/demo/v17");
    assert_string_equal(cfg.checkpoints[2].label, "Epoch-1");
    assert_string_equal(cfg.checkpoints[2].adapter_path, "/demo/epoch1");
    assert_string_equal(harness_config_baseline(&cfg)->label, "V16");
    assert_string_equal(cfg.dataset, "demo");
    assert_string_equal(cfg.split, "heldout");
    assert_int_equal(cfg.n, 500);
    assert_string_equal(cfg.codeset_release, "demo");
    assert_null(cfg.codeset_db);
    assert_string_equal(cfg.device, "cpu");
    assert_int_equal(cfg.tp, 1);
    assert_int_equal(cfg.n_gates, 3);
    assert_int_equal(cfg.gates[0].kind, HARNESS_GATE_FLOOR);
    assert_true(cfg.gates[0].on_ci_low);
    assert_int_equal(cfg.gates[1].kind, HARNESS_GATE_NO_REGRESSION);
    assert_string_equal(cfg.gates[1].metric, "cpt_exact");
    assert_int_equal(cfg.gates[2].kind, HARNESS_GATE_CEILING);
    harness_config_fini(&cfg);
    unsetenv("NYXAUDIT_DEMO_DIR");
}

static void test_full_file(void **state)
{
    (void)state;
    const char *text =
        "{\"checkpoints\": [{\"label\": \"A\", \"model\": \"m/a\", \"baseline\": true},"
        " {\"label\": \"B\", \"model\": \"/abs/a\", \"adapter\": \"ad/b\"}],"
        " \"dataset\": {\"store\": \"recs.sqlite\", \"split\": \"test\", \"n\": 20, \"seed\": 7},"
        " \"codeset\": {\"release\": \"FY2026\", \"db\": \"codes.sqlite\"},"
        " \"prompt\": {\"few_shot\": 2, \"max_prompt_tokens\": 4096, "
        "\"token_counter\": \"tokenizer\"},"
        " \"decoding\": {\"max_new_tokens\": 32},"
        " \"engine\": {\"device\": \"cuda\", \"tp\": 4},"
        " \"gates\": [{\"name\": \"g\", \"kind\": \"no_regression\", \"metric\": \"icd_exact\","
        "  \"margin\": 0.01, \"test\": \"ci\"}],"
        " \"output\": {\"dir\": \"out\", \"allow_report_text\": true}}";
    struct harness_config cfg;
    struct ny_err err;
    ny_err_init(&err);
    assert_int_equal(parse_str(text, &cfg, &err), NY_OK);
    assert_int_equal(cfg.n_checkpoints, 2);
    assert_string_equal(cfg.checkpoints[0].model_path, "/cfgdir/m/a");
    assert_string_equal(cfg.checkpoints[1].model_path, "/abs/a");
    assert_string_equal(cfg.checkpoints[1].adapter_path, "/cfgdir/ad/b");
    assert_string_equal(cfg.dataset_path, "/cfgdir/recs.sqlite");
    assert_string_equal(cfg.split, "test");
    assert_int_equal(cfg.n, 20);
    assert_int_equal(cfg.seed, 7);
    assert_string_equal(cfg.codeset_db, "/cfgdir/codes.sqlite");
    assert_int_equal(cfg.few_shot, 2);
    assert_int_equal(cfg.max_prompt_tokens, 4096);
    assert_true(cfg.count_tokenizer);
    assert_int_equal(cfg.max_new_tokens, 32);
    assert_int_equal(cfg.tp, 4);
    assert_int_equal(cfg.n_gates, 1);
    assert_null(cfg.gates[0].checkpoint);
    assert_true(cfg.gates[0].use_ci);
    assert_true(cfg.gates[0].alpha == 0.05);
    assert_string_equal(cfg.out_dir, "/cfgdir/out");
    assert_true(cfg.allow_report_text);
    harness_config_fini(&cfg);
}

/* Own checkpoints without gates drop the demo gates (they name demo labels). */
static void test_own_checkpoints_no_gates(void **state)
{
    (void)state;
    struct harness_config cfg;
    struct ny_err err;
    assert_int_equal(parse_str("{\"checkpoints\": [{\"label\": \"X\", \"model\": \"m\", "
                               "\"baseline\": true}]}", &cfg, &err), NY_OK);
    assert_int_equal(cfg.n_gates, 0);
    harness_config_fini(&cfg);
}

static void expect_error(const char *text, int code, const char *needle)
{
    struct harness_config cfg;
    memset(&cfg, 0x5a, sizeof cfg);
    struct ny_err err;
    ny_err_init(&err);
    int rc = parse_str(text, &cfg, &err);
    if (rc != code || !strstr(err.msg, needle))
        print_error("for %s: rc %d (want %d), message \"%s\" (want \"%s\")\n", text, rc, code,
                    err.msg, needle);
    assert_int_equal(rc, code);
    assert_non_null(strstr(err.msg, needle));
    assert_int_equal(cfg.n_checkpoints, (size_t)0x5a5a5a5a5a5a5a5aULL); /* untouched */
}

static void test_errors(void **state)
{
    (void)state;
    expect_error("[1]", NY_E_FORMAT, "must be a JSON object");
    expect_error("{\"checkpoint\": []}", NY_E_INVALID, "unknown field \"checkpoint\"");
    expect_error("{\"checkpoints\": []}", NY_E_FORMAT, "array of 1 to 16");
    expect_error("{\"checkpoints\": [{\"label\": \"A\"}]}", NY_E_FORMAT,
                 "checkpoints[0]: missing required field \"model\"");
    expect_error("{\"checkpoints\": [{\"label\": \"A\", \"model\": \"m\"}]}", NY_E_INVALID,
                 "exactly one checkpoint must have \"baseline\"");
    expect_error("{\"checkpoints\": [{\"label\": \"A\", \"model\": \"m\", \"baseline\": true},"
                 "{\"label\": \"A\", \"model\": \"m\"}]}", NY_E_INVALID, "appears twice");
    expect_error("{\"checkpoints\": [{\"label\": \"A\", \"model\": 3, \"baseline\": true}]}",
                 NY_E_FORMAT, "\"model\" must be a string");
    expect_error("{\"dataset\": {\"n\": 0}}", NY_E_RANGE, "\"n\" = 0 is outside");
    expect_error("{\"dataset\": {\"n\": \"500\"}}", NY_E_FORMAT, "must be an integer");
    expect_error("{\"decoding\": {\"max_new_token\": 5}}", NY_E_INVALID,
                 "decoding: unknown field \"max_new_token\"");
    expect_error("{\"engine\": {\"device\": \"tpu\"}}", NY_E_INVALID, "device must be");
    expect_error("{\"prompt\": {\"token_counter\": \"words\"}}", NY_E_INVALID,
                 "\"token_counter\" must be");
    expect_error("{\"engine\": {\"tp\": 9}}", NY_E_INVALID, "size 9 is outside 1..8");
    expect_error("{\"gates\": [{\"name\": \"g\", \"kind\": \"floor\", \"metric\": \"cpt_exact\"}]}",
                 NY_E_FORMAT, "needs a number \"min\"");
    expect_error("{\"gates\": [{\"name\": \"g\", \"kind\": \"best\", \"metric\": \"cpt_exact\"}]}",
                 NY_E_INVALID, "\"kind\" must be");
    expect_error("{\"gates\": [{\"name\": \"g\", \"kind\": \"floor\", \"metric\": \"accuracy\","
                 " \"min\": 0.5}]}", NY_E_INVALID, "unknown metric \"accuracy\"");
    expect_error("{\"gates\": [{\"name\": \"g\", \"kind\": \"floor\", \"metric\": \"cpt_exact\","
                 " \"min\": 1.5}]}", NY_E_RANGE, "\"min\" = 1.5 is outside");
    expect_error("{\"gates\": [{\"name\": \"g\", \"kind\": \"no_regression\", "
                 "\"metric\": \"icd_recall\"}]}", NY_E_INVALID, "needs a binary metric");
    expect_error("{\"gates\": [{\"name\": \"g\", \"kind\": \"ceiling\", "
                 "\"metric\": \"icd_invalid\","
                 " \"max\": 0.1, \"checkpoint\": \"V99\"}]}", NY_E_INVALID,
                 "names checkpoint \"V99\"");
    expect_error("{\"gates\": [{\"name\": \"g\", \"kind\": \"no_regression\", "
                 "\"metric\": \"cpt_exact\", \"checkpoint\": \"V16\"}]}", NY_E_INVALID,
                 "with itself");
    expect_error("{\"gates\": [{\"name\": \"g\", \"kind\": \"ceiling\", "
                 "\"metric\": \"icd_invalid\","
                 " \"max\": 0.1}, {\"name\": \"g\", \"kind\": \"ceiling\", "
                 "\"metric\": \"cpt_invalid\", \"max\": 0.1}]}", NY_E_INVALID,
                 "gate name \"g\" appears twice");
}

static void test_load_file(void **state)
{
    (void)state;
    char dir[] = "/tmp/ny_cfg_XXXXXX";
    assert_non_null(mkdtemp(dir));
    char *p = ny_path_join(dir, "c.json");
    struct ny_err err;
    ny_err_init(&err);
    struct harness_config cfg;
    assert_int_equal(harness_config_load(p, &cfg, &err), NY_E_NOTFOUND);
    const char *bad = "{\"dataset\": {\"n\": 5,}";
    assert_int_equal(ny_file_write_atomic(p, bad, strlen(bad), &err), NY_OK);
    ny_err_init(&err);
    assert_int_equal(harness_config_load(p, &cfg, &err), NY_E_FORMAT);
    assert_non_null(strstr(err.msg, "c.json"));
    const char *good = "{\"checkpoints\": [{\"label\": \"X\", \"model\": \"m\", "
                       "\"baseline\": true}], \"output\": {\"dir\": \"o\"}}";
    assert_int_equal(ny_file_write_atomic(p, good, strlen(good), &err), NY_OK);
    assert_int_equal(harness_config_load(p, &cfg, &err), NY_OK);
    char *want = ny_path_join(dir, "m");
    assert_string_equal(cfg.checkpoints[0].model_path, want);
    ny_free(want);
    harness_config_fini(&cfg);
    unlink(p);
    rmdir(dir);
    ny_free(p);
}

/* The two configurations README.md shows parse and validate; the first is the built-in one. */
static void test_readme_examples(void **state)
{
    (void)state;
    char *readme = NULL;
    size_t len;
    struct ny_err err;
    ny_err_init(&err);
    assert_int_equal(ny_file_read(NY_SOURCE_DIR "/README.md", 1 << 20, &readme, &len, &err),
                     NY_OK);
    const char *p = strstr(readme, "\n## Configuration\n");
    assert_non_null(p);
    struct harness_config cfg[2];
    for (int k = 0; k < 2; k++) {
        const char *b = strstr(p, "```json\n");
        assert_non_null(b);
        b += 8;
        const char *e = strstr(b, "```");
        assert_non_null(e);
        json_t *o = NULL;
        int rc = ny_json_load_buf(b, (size_t)(e - b), "README.md", &o, &err);
        if (!rc)
            rc = harness_config_parse(o, NY_SOURCE_DIR, "README.md", &cfg[k], &err);
        if (rc)
            print_error("README example %d: %s\n", k + 1, err.msg);
        assert_int_equal(rc, NY_OK);
        json_decref(o);
        p = e + 3;
    }
    unsetenv("NYXAUDIT_DEMO_DIR");
    struct harness_config def;
    assert_int_equal(harness_config_default(&def, &err), NY_OK);
    assert_int_equal(cfg[0].n_checkpoints, def.n_checkpoints);
    for (size_t i = 0; i < def.n_checkpoints; i++) {
        assert_string_equal(cfg[0].checkpoints[i].model_path, def.checkpoints[i].model_path);
        assert_string_equal(cfg[0].checkpoints[i].label, def.checkpoints[i].label);
    }
    assert_int_equal(cfg[0].n_gates, def.n_gates);
    for (size_t i = 0; i < def.n_gates; i++) {
        assert_string_equal(cfg[0].gates[i].name, def.gates[i].name);
        assert_true(cfg[0].gates[i].threshold == def.gates[i].threshold);
        assert_true(cfg[0].gates[i].margin == def.gates[i].margin);
    }
    assert_int_equal(cfg[0].max_new_tokens, def.max_new_tokens);
    assert_int_equal(cfg[0].batch, def.batch);
    assert_int_equal(cfg[1].tp, 4);
    assert_string_equal(cfg[1].device, "cuda");
    harness_config_fini(&def);
    harness_config_fini(&cfg[0]);
    harness_config_fini(&cfg[1]);
    ny_free(readme);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_default), cmocka_unit_test(test_full_file),
        cmocka_unit_test(test_own_checkpoints_no_gates), cmocka_unit_test(test_errors),
        cmocka_unit_test(test_load_file), cmocka_unit_test(test_readme_examples),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
