/* test_eval.c — metrics_evaluate end to end on a hand-worked set of 4 records and 3 models: the
 * JSON keys and values, validity against a code set, taxonomy, confusions, breakdowns, paired
 * tests, determinism of the bootstrap, per-record values and the error paths. */
#include <jansson.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "metrics.h"

static const struct metrics_gold gold[] = {
    {"r1", "74177, 26, R10.84, K57.30", NULL, 0, NULL, 0, NULL, 0, "CT"},
    {"r2", "71046, 26, J18.9", NULL, 0, NULL, 0, NULL, 0, "XR"},
    {"r3", "73721, 26, RT, M25.511", NULL, 0, NULL, 0, NULL, 0, "MR"},
    {"r4", "74177, 26, R10.84", NULL, 0, NULL, 0, NULL, 0, NULL},
};
/* A: all right except r3 (M25.5 for M25.511, a header). */
static const char *const out_a[] = {"74177, 26, R10.84, K57.30", "71046, 26, J18.9",
                                    "73721, 26, RT, M25.5", "74177, 26, R10.84"};
/* B: r1 misses K57.30, r2 missing, r3 right with garbage, r4 wrong CPT and an invalid ICD. */
static const char *const out_b[] = {"74177, 26, R10.84", NULL, "73721 26 RT M25511 xyz",
                                    "74176, 26, R10.84, Q99.ZZZ"};
static const char *const out_c[] = {"74177, 26, R10.84, K57.30", "71046, 26, J18.9",
                                    "73721, 26, RT, M25.511", "74177, 26, R10.84"};
static const struct metrics_model models[] = {{"A", out_a}, {"B", out_b}, {"C", out_c}};

static double num(json_t *root, const char *path)
{
    json_t *v = json_object_get(root, "models");
    char buf[256];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *tok = strtok(buf, "/"); tok; tok = strtok(NULL, "/"))
        v = json_object_get(v, tok);
    if (!json_is_number(v))
        fail_msg("%s is not a number", path);
    return json_number_value(v);
}

static json_t *evaluate(struct codeset_db *db, uint64_t seed, struct metrics_records **rec)
{
    struct metrics_input in = {gold, 4, models, 3, db, db ? "T1" : NULL, seed};
    json_t *out = NULL;
    struct ny_err err;
    ny_err_init(&err);
    int rc = metrics_evaluate_ex(&in, &out, rec, &err);
    if (rc)
        fail_msg("evaluate: %s", err.msg);
    return out;
}

static struct codeset_db *demo_db(void)
{
    static const struct codeset_row rows[] = {
        {"cpt", "74177", 1, "ct abd pel"}, {"cpt", "71046", 1, "xr chest"},
        {"cpt", "73721", 1, "mr knee"},    {"modifier", "RT", 1, "right"},
        {"icd10cm", "R10.84", 1, NULL},    {"icd10cm", "K57.30", 1, NULL},
        {"icd10cm", "J18.9", 1, NULL},     {"icd10cm", "M25.511", 1, NULL},
        {"icd10cm", "M25.5", 0, NULL},
    };
    struct codeset_db *db = NULL;
    assert_int_equal(codeset_open(":memory:", &db, NULL), 0);
    assert_int_equal(codeset_import_rows(db, "T1", "2025-01-01", rows, 9, NULL), 0);
    return db;
}

static void test_values(void **state)
{
    (void)state;
    struct codeset_db *db = demo_db();
    json_t *m = evaluate(db, 7, NULL);
    assert_int_equal(json_integer_value(json_object_get(m, "n")), 4);
    /* A: cpt_exact 4/4, icd_exact 3/4; Wilson interval as the formula gives. */
    assert_true(num(m, "A/metrics/cpt_exact/value") == 1.0);
    assert_true(num(m, "A/metrics/icd_exact/value") == 0.75);
    double lo, hi;
    metrics_wilson(3, 4, METRICS_Z95, &lo, &hi);
    json_t *ica = json_object_get(json_object_get(json_object_get(json_object_get(
                      json_object_get(m, "models"), "A"), "metrics"), "icd_exact"), "ci95");
    assert_true(json_real_value(json_array_get(ica, 0)) == lo);
    assert_true(json_real_value(json_array_get(ica, 1)) == hi);
    /* B: cpt_exact: r1 yes, r2 no (missing), r3 yes, r4 no = 0.5. icd_recall: r1 1/2, r2 0,
     * r3 1, r4 1 = 0.625; precision: 1, 0 (P empty, G not), 1, 1/2 = 0.625.
     * micro: tp 1+0+1+1 = 3, P 1+0+1+2 = 4, G 2+1+1+1 = 5: precision 0.75, recall 0.6,
     * F1 6/9. */
    assert_true(num(m, "B/metrics/cpt_exact/value") == 0.5);
    assert_true(num(m, "B/metrics/icd_recall/value") == 0.625);
    assert_true(num(m, "B/metrics/icd_precision/value") == 0.625);
    assert_true(num(m, "B/metrics/icd_micro_precision/value") == 0.75);
    assert_true(num(m, "B/metrics/icd_micro_recall/value") == 0.6);
    assert_true(fabs(num(m, "B/metrics/icd_micro_f1/value") - 6.0 / 9.0) < 1e-15);
    assert_true(num(m, "B/format_errors") == 1);
    assert_true(num(m, "B/missing") == 1);
    /* Validity of B: ICD predicted R10.84, M25.511, R10.84, Q99.ZZZ = 4, one invalid; CPT 74177,
     * 73721, 74176 = 3, one invalid; modifiers 26, 26, RT, 26 = 4, none invalid (26 built in). */
    assert_true(num(m, "B/validity/icd_invalid") == 0.25);
    assert_true(num(m, "B/validity/counts/icd_predicted") == 4);
    assert_true(fabs(num(m, "B/validity/cpt_invalid") - 1.0 / 3.0) < 1e-15);
    assert_true(num(m, "B/validity/modifier_invalid") == 0.0);
    assert_true(num(m, "B/validity/counts/modifier_predicted") == 4);
    /* A predicts the header M25.5: 1 of 5 ICD codes nonbillable. */
    assert_true(num(m, "A/validity/icd_nonbillable") == 0.2);
    /* Taxonomy: A one specificity error; B one missed (K57.30 in r1, J18.9 in r2) = 2 missed,
     * one hallucinated (Q99.ZZZ). */
    assert_true(num(m, "A/taxonomy/specificity") == 1);
    assert_true(num(m, "B/taxonomy/missed") == 2);
    assert_true(num(m, "B/taxonomy/hallucinated") == 1);
    json_t *conf = json_object_get(json_object_get(json_object_get(m, "models"), "A"),
                                   "confusions");
    assert_int_equal(json_array_size(conf), 1);
    assert_string_equal(json_string_value(json_object_get(json_array_get(conf, 0), "gold")),
                        "M25.511");
    assert_string_equal(json_string_value(json_object_get(json_array_get(conf, 0), "pred")),
                        "M25.5");
    /* Breakdowns: modality (r4 has none) and primary CPT. */
    assert_true(num(m, "B/breakdowns/modality/(none)/n") == 1);
    assert_true(num(m, "B/breakdowns/modality/(none)/cpt_exact") == 0.0);
    assert_true(num(m, "B/breakdowns/primary_cpt/74177/n") == 2);
    assert_true(num(m, "B/breakdowns/primary_cpt/74177/cpt_exact") == 0.5);
    assert_string_equal(json_string_value(json_object_get(m, "codeset_release")), "T1");
    json_decref(m);
    codeset_close(db);
}

static json_t *find_cmp(json_t *m, const char *a, const char *b, const char *metric)
{
    size_t i;
    json_t *c;
    json_array_foreach(json_object_get(m, "comparisons"), i, c) {
        if (!strcmp(json_string_value(json_object_get(c, "a")), a) &&
            !strcmp(json_string_value(json_object_get(c, "b")), b) &&
            !strcmp(json_string_value(json_object_get(c, "metric")), metric))
            return c;
    }
    fail_msg("no comparison %s %s %s", a, b, metric);
    return NULL;
}

static void test_comparisons(void **state)
{
    (void)state;
    json_t *m = evaluate(NULL, 1, NULL);
    /* 3 pairs x 7 binary metrics, in order A-B, A-C, B-C. */
    assert_int_equal(json_array_size(json_object_get(m, "comparisons")), 21);
    /* A vs B on cpt_exact: A 1111, B 1010: n10 = 2 (A only), n01 = 0, delta -0.5, p = 0.5. */
    json_t *c = find_cmp(m, "A", "B", "cpt_exact");
    assert_true(json_real_value(json_object_get(c, "delta")) == -0.5);
    assert_true(json_real_value(json_object_get(c, "mcnemar_p")) == 0.5);
    double d, lo, hi;
    metrics_newcombe_paired(2, 2, 0, 0, METRICS_Z95, &d, &lo, &hi);
    json_t *ci = json_object_get(c, "ci95");
    assert_true(json_real_value(json_array_get(ci, 0)) == lo);
    assert_true(json_real_value(json_array_get(ci, 1)) == hi);
    /* Cochran's Q and Holm with three models. */
    json_t *cq = json_object_get(json_object_get(m, "cochran_q"), "cpt_exact");
    assert_non_null(cq);
    assert_int_equal(json_integer_value(json_object_get(cq, "df")), 2);
    assert_int_equal(json_array_size(json_object_get(m, "holm")), 21);
    /* validity is null without a code set. */
    assert_true(json_is_null(json_object_get(json_object_get(json_object_get(m, "models"), "A"),
                                             "validity")));
    json_decref(m);
}

static void test_bootstrap_deterministic(void **state)
{
    (void)state;
    json_t *a = evaluate(NULL, 11, NULL), *b = evaluate(NULL, 11, NULL);
    json_t *c = evaluate(NULL, 12, NULL);
    char *sa = ny_json_dumps(a, 0), *sb = ny_json_dumps(b, 0), *sc = ny_json_dumps(c, 0);
    assert_string_equal(sa, sb);
    assert_true(strcmp(sa, sc) != 0);
    /* The interval holds the point value's neighbourhood: lo <= value <= hi here. */
    double v = num(a, "B/metrics/icd_recall/value");
    json_t *ci = json_object_get(json_object_get(json_object_get(json_object_get(
                     json_object_get(a, "models"), "B"), "metrics"), "icd_recall"), "ci95");
    assert_true(json_real_value(json_array_get(ci, 0)) <= v);
    assert_true(json_real_value(json_array_get(ci, 1)) >= v);
    ny_free(sa);
    ny_free(sb);
    ny_free(sc);
    json_decref(a);
    json_decref(b);
    json_decref(c);
}

static void test_records_output(void **state)
{
    (void)state;
    struct metrics_records *r = NULL;
    json_t *m = evaluate(NULL, 0, &r);
    assert_non_null(r);
    assert_int_equal(r->n, 4);
    assert_int_equal(r->m, 3);
    /* Model B (j = 1), record r3 (i = 2): format error, all three exact. */
    assert_int_equal(r->format_error[1 * 4 + 2], 1);
    assert_int_equal(r->scores[1 * 4 + 2].bin[METRICS_ALL_THREE_EXACT], 1);
    assert_int_equal(r->scores[1 * 4 + 1].bin[METRICS_CPT_EXACT], 0);
    /* The icd_recall interval is metrics_bootstrap_mean_ci on the per-record values (seed 0). */
    double v[4], lo, hi;
    for (int i = 0; i < 4; i++)
        v[i] = r->scores[1 * 4 + i].icd_recall;
    assert_int_equal(metrics_bootstrap_mean_ci(v, 4, 0, METRICS_BOOTSTRAP_B, &lo, &hi), 0);
    json_t *ci = json_object_get(json_object_get(json_object_get(json_object_get(
                     json_object_get(m, "models"), "B"), "metrics"), "icd_recall"), "ci95");
    assert_true(json_real_value(json_array_get(ci, 0)) == lo);
    assert_true(json_real_value(json_array_get(ci, 1)) == hi);
    metrics_records_destroy(r);
    json_decref(m);
}

static void test_validity_coverage(void **state)
{
    (void)state;
    /* A release with every system: a model predicting no CPT gets cpt_invalid 0, not null. */
    struct codeset_db *db = demo_db();
    static const char *const icd_only[] = {"R10.84", "J18.9", "M25.511", "R10.84"};
    const struct metrics_model one[] = {{"I", icd_only}};
    struct metrics_input in = {gold, 4, one, 1, db, "T1", 0};
    json_t *m = NULL;
    assert_int_equal(metrics_evaluate(&in, &m, NULL), 0);
    assert_true(num(m, "I/validity/cpt_invalid") == 0.0);
    assert_true(num(m, "I/validity/counts/cpt_predicted") == 0);
    assert_true(num(m, "I/validity/icd_invalid") == 0.0);
    /* One model only: no comparisons, no Cochran's Q. */
    assert_int_equal(json_array_size(json_object_get(m, "comparisons")), 0);
    assert_null(json_object_get(m, "cochran_q"));
    json_decref(m);
    /* A release with ICD codes only: CPT and modifier validity are null. */
    const struct codeset_row rows[] = {{"icd10cm", "R10.84", 1, NULL}};
    assert_int_equal(codeset_import_rows(db, "T2", "2025-02-01", rows, 1, NULL), 0);
    struct metrics_input in2 = {gold, 4, one, 1, db, "T2", 0};
    assert_int_equal(metrics_evaluate(&in2, &m, NULL), 0);
    json_t *v = json_object_get(json_object_get(json_object_get(m, "models"), "I"), "validity");
    assert_true(json_is_null(json_object_get(v, "cpt_invalid")));
    assert_true(json_is_null(json_object_get(v, "modifier_invalid")));
    assert_true(num(m, "I/validity/icd_invalid") == 0.5); /* J18.9 and M25.511 not in T2 */
    json_decref(m);
    codeset_close(db);
}

static void test_errors(void **state)
{
    (void)state;
    json_t *out = NULL;
    struct ny_err err;
    ny_err_init(&err);
    const struct metrics_model dup[] = {{"A", out_a}, {"A", out_c}};
    struct metrics_input in = {gold, 4, dup, 2, NULL, NULL, 0};
    assert_int_equal(metrics_evaluate(&in, &out, &err), NY_E_INVALID);
    assert_non_null(strstr(err.msg, "\"A\""));
    assert_null(out);
    const struct metrics_gold bad[] = {{"g9", NULL, (const char *const[]){"R10.84"}, 1, NULL, 0,
                                        NULL, 0, NULL}};
    const struct metrics_model one[] = {{"A", out_a}};
    struct metrics_input in2 = {bad, 1, one, 1, NULL, NULL, 0};
    assert_int_equal(metrics_evaluate(&in2, &out, &err), NY_E_FORMAT);
    assert_non_null(strstr(err.msg, "g9"));
    struct codeset_db *db = demo_db();
    struct metrics_input in3 = {gold, 4, one, 1, db, "NOPE", 0};
    assert_int_equal(metrics_evaluate(&in3, &out, &err), NY_E_NOTFOUND);
    struct metrics_input in4 = {gold, 0, one, 1, NULL, NULL, 0};
    assert_int_equal(metrics_evaluate(&in4, &out, &err), NY_E_INVALID);
    assert_null(out);
    codeset_close(db);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_values),
        cmocka_unit_test(test_comparisons),
        cmocka_unit_test(test_bootstrap_deterministic),
        cmocka_unit_test(test_records_output),
        cmocka_unit_test(test_validity_coverage),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
