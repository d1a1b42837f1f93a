/* test_gates.c — gate verdicts on hand-made metrics objects: floors on the point value and on the
 * ci95 lower bound, ceilings, no-regression by McNemar and by the paired interval (including a
 * comparison stored in the opposite orientation), expansion over candidates, missing evidence. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "harness.h"

/* V16 baseline, V17 and E1 candidates. V17: icd_recall 0.85 [0.82, 0.88]; cpt_exact 0.90 vs
 * V16's 0.93, delta -0.03, p 0.01 (a significant regression beyond 0.02); E1: cpt_exact 0.92,
 * comparison stored as (E1, V16): delta +0.01 = V16 - E1, so E1 - V16 = -0.01 within 0.02. */
static const char metrics_text[] =
    "{\"n\": 200, \"models\": {"
    " \"V16\": {\"metrics\": {\"cpt_exact\": {\"value\": 0.93, \"ci95\": [0.9, 0.96]},"
    "   \"icd_recall\": {\"value\": 0.7, \"ci95\": [0.65, 0.75]}}, \"format_errors\": 0,"
    "   \"validity\": {\"icd_invalid\": 0.0}},"
    " \"V17\": {\"metrics\": {\"cpt_exact\": {\"value\": 0.90, \"ci95\": [0.85, 0.94]},"
    "   \"icd_recall\": {\"value\": 0.85, \"ci95\": [0.82, 0.88]}}, \"format_errors\": 3,"
    "   \"validity\": {\"icd_invalid\": 0.02}},"
    " \"E1\": {\"metrics\": {\"cpt_exact\": {\"value\": 0.92, \"ci95\": [0.88, 0.95]},"
    "   \"icd_recall\": {\"value\": 0.79, \"ci95\": [0.75, 0.83]}}, \"format_errors\": 0,"
    "   \"validity\": {\"icd_invalid\": 0.005}}},"
    " \"comparisons\": ["
    "  {\"a\": \"V16\", \"b\": \"V17\", \"metric\": \"cpt_exact\", \"delta\": -0.03,"
    "   \"ci95\": [-0.06, -0.005], \"mcnemar_p\": 0.01},"
    "  {\"a\": \"E1\", \"b\": \"V16\", \"metric\": \"cpt_exact\", \"delta\": 0.01,"
    "   \"ci95\": [-0.015, 0.04], \"mcnemar_p\": 0.4}]}";

static const char cfg_prefix[] =
    "{\"checkpoints\": [{\"label\": \"V16\", \"model\": \"m\", \"baseline\": true},"
    " {\"label\": \"V17\", \"model\": \"m\", \"adapter\": \"a\"},"
    " {\"label\": \"E1\", \"model\": \"m\", \"adapter\": \"b\"}], \"gates\": ";

/* Evaluate `gates_json` and return the array; *failed gets the count. */
static json_t *run_gates(const char *gates_json, int *failed)
{
    char text[4096];
    snprintf(text, sizeof text, "%s%s}", cfg_prefix, gates_json);
    struct ny_err err;
    ny_err_init(&err);
    json_t *o, *m, *out = NULL;
    assert_int_equal(ny_json_load_buf(text, strlen(text), "cfg", &o, &err), NY_OK);
    struct harness_config cfg;
    int rc = harness_config_parse(o, "/", "cfg", &cfg, &err);
    if (rc)
        print_error("%s\n", err.msg);
    assert_int_equal(rc, NY_OK);
    assert_int_equal(ny_json_load_buf(metrics_text, strlen(metrics_text), "m", &m, &err), NY_OK);
    assert_int_equal(harness_gates_evaluate(&cfg, m, &out, failed, &err), NY_OK);
    harness_config_fini(&cfg);
    json_decref(o);
    json_decref(m);
    return out;
}

static const char *verdict(json_t *gates, size_t i)
{
    return json_string_value(json_object_get(json_array_get(gates, i), "verdict"));
}

static void test_floor(void **state)
{
    (void)state;
    int failed;
    /* V17 icd_recall: lower bound 0.82 >= 0.80 passes, point 0.85 < 0.86 fails, lower 0.82 <
     * 0.83 fails; exactly at the threshold passes. */
    json_t *g = run_gates("[{\"name\": \"a\", \"kind\": \"floor\", \"checkpoint\": \"V17\","
                          " \"metric\": \"icd_recall\", \"min\": 0.80, \"on\": \"ci_low\"},"
                          "{\"name\": \"b\", \"kind\": \"floor\", \"checkpoint\": \"V17\","
                          " \"metric\": \"icd_recall\", \"min\": 0.86},"
                          "{\"name\": \"c\", \"kind\": \"floor\", \"checkpoint\": \"V17\","
                          " \"metric\": \"icd_recall\", \"min\": 0.83, \"on\": \"ci_low\"},"
                          "{\"name\": \"d\", \"kind\": \"floor\", \"checkpoint\": \"V17\","
                          " \"metric\": \"icd_recall\", \"min\": 0.85}]", &failed);
    assert_int_equal(json_array_size(g), 4);
    assert_string_equal(verdict(g, 0), "pass");
    assert_string_equal(verdict(g, 1), "fail");
    assert_string_equal(verdict(g, 2), "fail");
    assert_string_equal(verdict(g, 3), "pass");
    assert_int_equal(failed, 2);
    json_t *g0 = json_array_get(g, 0);
    assert_string_equal(json_string_value(json_object_get(g0, "rule")),
                        "icd_recall ci95 lower bound >= 0.8");
    assert_string_equal(json_string_value(json_object_get(g0, "kind")), "floor");
    json_t *ev = json_object_get(g0, "evidence");
    assert_true(json_real_value(json_object_get(ev, "value")) == 0.85);
    assert_true(json_real_value(json_array_get(json_object_get(ev, "ci95"), 0)) == 0.82);
    json_decref(g);
}

static void test_ceiling_expanded(void **state)
{
    (void)state;
    int failed;
    /* No checkpoint: every candidate (V17 0.02 > 0.01 fails, E1 0.005 passes); the baseline is
     * not judged. format_error_rate of V17 = 3/200 = 0.015. */
    json_t *g = run_gates("[{\"name\": \"inv\", \"kind\": \"ceiling\", \"metric\": \"icd_invalid\","
                          " \"max\": 0.01}, {\"name\": \"fmt\", \"kind\": \"ceiling\", "
                          "\"checkpoint\": \"V17\", \"metric\": \"format_error_rate\", "
                          "\"max\": 0.015}]", &failed);
    assert_int_equal(json_array_size(g), 3);
    assert_string_equal(json_string_value(json_object_get(json_array_get(g, 0), "name")),
                        "inv[V17]");
    assert_string_equal(verdict(g, 0), "fail");
    assert_string_equal(json_string_value(json_object_get(json_array_get(g, 1), "name")),
                        "inv[E1]");
    assert_string_equal(verdict(g, 1), "pass");
    assert_string_equal(verdict(g, 2), "pass");
    json_t *ev = json_object_get(json_array_get(g, 2), "evidence");
    assert_true(json_real_value(json_object_get(ev, "value")) == 3.0 / 200.0);
    assert_int_equal(failed, 1);
    json_decref(g);
}

static void test_no_regression(void **state)
{
    (void)state;
    int failed;
    json_t *g = run_gates(
        "[{\"name\": \"nr\", \"kind\": \"no_regression\", \"metric\": \"cpt_exact\","
        " \"margin\": 0.02},"
        "{\"name\": \"nr_wide\", \"kind\": \"no_regression\", \"checkpoint\": \"V17\","
        " \"metric\": \"cpt_exact\", \"margin\": 0.05},"
        "{\"name\": \"nr_strict_alpha\", \"kind\": \"no_regression\", \"checkpoint\": \"V17\","
        " \"metric\": \"cpt_exact\", \"margin\": 0.0, \"alpha\": 0.005},"
        "{\"name\": \"nr_ci\", \"kind\": \"no_regression\", \"checkpoint\": \"E1\","
        " \"metric\": \"cpt_exact\", \"margin\": 0.01, \"test\": \"ci\"},"
        "{\"name\": \"nr_missing\", \"kind\": \"no_regression\", \"checkpoint\": \"V17\","
        " \"metric\": \"icd_exact\"}]", &failed);
    assert_int_equal(json_array_size(g), 6);
    /* V17: -0.03 < -0.02 and p 0.01 < 0.05: fail. */
    assert_string_equal(verdict(g, 0), "fail");
    /* E1 (reversed storage): -0.01 within 0.02: pass; evidence oriented E1 - V16. */
    assert_string_equal(verdict(g, 1), "pass");
    json_t *ev = json_object_get(json_array_get(g, 1), "evidence");
    assert_true(json_real_value(json_object_get(ev, "delta")) == -0.01);
    assert_true(json_real_value(json_array_get(json_object_get(ev, "ci95"), 0)) == -0.04);
    assert_true(json_real_value(json_array_get(json_object_get(ev, "ci95"), 1)) == 0.015);
    assert_string_equal(json_string_value(json_object_get(ev, "baseline")), "V16");
    assert_true(json_real_value(json_object_get(ev, "baseline_value")) == 0.93);
    /* Margin 0.05 tolerates -0.03. */
    assert_string_equal(verdict(g, 2), "pass");
    /* p 0.01 is not below alpha 0.005. */
    assert_string_equal(verdict(g, 3), "pass");
    /* ci: lower bound -0.04 < -0.01: fail. */
    assert_string_equal(verdict(g, 4), "fail");
    /* No icd_exact comparison: fails, naming what is missing. */
    assert_string_equal(verdict(g, 5), "fail");
    const char *miss = json_string_value(
        json_object_get(json_object_get(json_array_get(g, 5), "evidence"), "missing"));
    assert_non_null(miss);
    assert_non_null(strstr(miss, "icd_exact paired comparison for V17"));
    assert_int_equal(failed, 3);
    json_decref(g);
}

static void test_no_gates(void **state)
{
    (void)state;
    int failed = -1;
    json_t *g = run_gates("[]", &failed);
    assert_int_equal(json_array_size(g), 0);
    assert_int_equal(failed, 0);
    json_decref(g);
}

/* A configuration of the baseline alone: floors and ceilings without a checkpoint judge it;
 * no-regression gates have nothing to compare and expand to nothing. */
static void test_baseline_only(void **state)
{
    (void)state;
    const char *text = "{\"checkpoints\": [{\"label\": \"V16\", \"model\": \"m\", "
                       "\"baseline\": true}], \"gates\": [{\"name\": \"f\", \"kind\": "
                       "\"floor\", \"metric\": \"icd_recall\", \"min\": 0.7}, {\"name\": "
                       "\"nr\", \"kind\": \"no_regression\", \"metric\": \"cpt_exact\"}]}";
    struct ny_err err;
    ny_err_init(&err);
    json_t *o, *m, *out = NULL;
    assert_int_equal(ny_json_load_buf(text, strlen(text), "cfg", &o, &err), NY_OK);
    struct harness_config cfg;
    assert_int_equal(harness_config_parse(o, "/", "cfg", &cfg, &err), NY_OK);
    assert_int_equal(ny_json_load_buf(metrics_text, strlen(metrics_text), "m", &m, &err), NY_OK);
    int failed = -1;
    assert_int_equal(harness_gates_evaluate(&cfg, m, &out, &failed, &err), NY_OK);
    assert_int_equal(json_array_size(out), 1);
    assert_string_equal(json_string_value(json_object_get(json_array_get(out, 0), "name")),
                        "f[V16]");
    assert_string_equal(verdict(out, 0), "pass"); /* V16 icd_recall 0.7 >= 0.7 */
    assert_int_equal(failed, 0);
    json_decref(out);
    json_decref(m);
    json_decref(o);
    harness_config_fini(&cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_floor), cmocka_unit_test(test_ceiling_expanded),
        cmocka_unit_test(test_no_regression), cmocka_unit_test(test_no_gates),
        cmocka_unit_test(test_baseline_only),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
