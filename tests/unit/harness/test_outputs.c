/* test_outputs.c — junit.xml and summary.md rendered from a hand-made results object: one test
 * case per gate, failures with rule and evidence, XML and Markdown escaping of hostile strings. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "harness.h"

static const char results_text[] =
    "{\"schema\": \"nyxaudit.results/1\","
    " \"run\": {\"id\": \"r-0123456789ab\", \"started\": \"2026-11-26T21:00:00Z\","
    "  \"finished\": \"2026-11-26T21:05:00Z\", \"dataset\": \"demo-synthetic\","
    "  \"split\": \"heldout\", \"n\": 500, \"seed\": 0, \"release\": \"demo\","
    "  \"allow_report_text\": false},"
    " \"checkpoints\": [{\"label\": \"V16\", \"baseline\": true, \"model\": \"m\", "
    "  \"adapter\": null}, {\"label\": \"V<17>&|x\", \"baseline\": false, \"model\": \"m\","
    "  \"adapter\": \"a\"}],"
    " \"manifest\": {\"harness\": {\"version\": \"0.1.0\", \"commit\": \"abc\"},"
    "  \"engine\": {\"backend\": \"cpu\"}, \"sample_ids_sha256\": \"ff\"},"
    " \"metrics\": {\"n\": 500, \"models\": {"
    "  \"V16\": {\"metrics\": {\"cpt_exact\": {\"value\": 0.9, \"ci95\": [0.87, 0.925]}},"
    "   \"validity\": {\"icd_invalid\": 0.004}},"
    "  \"V<17>&|x\": {\"metrics\": {\"cpt_exact\": {\"value\": 0.875}}}},"
    "  \"comparisons\": [{\"a\": \"V<17>&|x\", \"b\": \"V16\", \"metric\": \"cpt_exact\","
    "   \"delta\": 0.025, \"ci95\": [-0.01, 0.06], \"mcnemar_p\": 0.1234}]},"
    " \"gates\": ["
    "  {\"name\": \"floor\", \"kind\": \"floor\", \"checkpoint\": \"V<17>&|x\","
    "   \"metric\": \"cpt_exact\", \"rule\": \"cpt_exact value >= 0.9\","
    "   \"evidence\": {\"value\": 0.875, \"ci95\": [0.85, 0.9]}, \"verdict\": \"fail\"},"
    "  {\"name\": \"ceil\", \"kind\": \"ceiling\", \"checkpoint\": \"V16\","
    "   \"metric\": \"icd_invalid\", \"rule\": \"icd_invalid <= 0.01\","
    "   \"evidence\": {\"value\": 0.004}, \"verdict\": \"pass\"}],"
    " \"verdict\": \"fail\", \"records\": []}";

static json_t *load(void)
{
    json_t *r = json_loads(results_text, 0, NULL);
    assert_non_null(r);
    return r;
}

static void test_junit(void **state)
{
    (void)state;
    json_t *r = load();
    char *x = NULL;
    struct ny_err err;
    ny_err_init(&err);
    assert_int_equal(harness_junit_render(r, &x, &err), NY_OK);
    assert_non_null(strstr(x, "<testsuites name=\"nyxaudit\" tests=\"2\" failures=\"1\">"));
    assert_non_null(strstr(x, "<property name=\"id\" value=\"r-0123456789ab\"/>"));
    assert_non_null(strstr(x, "<testcase classname=\"nyxaudit.gates.V&lt;17&gt;&amp;|x\" "
                              "name=\"floor\""));
    assert_non_null(strstr(x, "<failure type=\"gate\" message=\"cpt_exact value &gt;= 0.9\">"
                              "ci95=[0.85, 0.9]; value=0.875</failure>"));
    assert_non_null(strstr(x, "name=\"ceil\""));
    /* exactly one failure element */
    const char *f = strstr(x, "<failure");
    assert_null(strstr(f + 1, "<failure"));
    assert_null(strstr(x, "V<17>"));
    ny_free(x);
    json_object_del(r, "gates");
    assert_int_equal(harness_junit_render(r, &x, &err), NY_E_FORMAT);
    json_decref(r);
}

static void test_summary(void **state)
{
    (void)state;
    json_t *r = load();
    char *md = NULL;
    struct ny_err err;
    ny_err_init(&err);
    assert_int_equal(harness_summary_render(r, &md, &err), NY_OK);
    assert_non_null(strstr(md, "# NYXAudit release audit: FAIL\n"));
    assert_non_null(strstr(md, "Run `r-0123456789ab` · dataset demo-synthetic, split heldout, "
                               "n = 500, seed 0 · code set demo"));
    assert_non_null(strstr(md, "| metric | V16 | V<17>&\\|x |\n"));
    assert_non_null(strstr(md, "| cpt_exact | 0.900 [0.870, 0.925] | 0.875 |\n"));
    assert_non_null(strstr(md, "| icd_invalid (rate) | 0.0040 | – |\n"));
    /* stored as (candidate, baseline): shown as candidate − baseline */
    assert_non_null(strstr(md, "| V<17>&\\|x | cpt_exact | -0.025 | [-0.060, +0.010] | 0.123 |"));
    assert_non_null(strstr(md, "| floor | V<17>&\\|x | cpt_exact value >= 0.9 | "
                               "ci95=[0.85, 0.9]; value=0.875 | ❌ **fail** |\n"));
    assert_non_null(strstr(md, "| ceil | V16 | icd_invalid <= 0.01 | value=0.004 | "
                               "✅ pass |\n"));
    ny_free(md);
    json_decref(r);
}

static void test_xml_escape(void **state)
{
    (void)state;
    struct ny_buf b;
    ny_buf_init(&b);
    harness_xml_escape(&b, "a<b>&\"c'\x01\td");
    assert_string_equal(b.data, "a&lt;b&gt;&amp;&quot;c&apos;?\td");
    ny_buf_fini(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_junit),
        cmocka_unit_test(test_summary),
        cmocka_unit_test(test_xml_escape),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
