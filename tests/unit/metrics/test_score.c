/* test_score.c — per-record scores (every metric, empty sets, duplicates, multi-CPT) and the ICD
 * error taxonomy of one record, against hand-worked values. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "metrics_int.h"

static struct metrics_record_score score(const char *gold, const char *pred)
{
    struct metrics_codes g, p;
    metrics_codes_init(&g);
    metrics_codes_init(&p);
    assert_int_equal(metrics_codes_parse(gold, strlen(gold), &g, NULL), 0);
    assert_int_equal(metrics_codes_parse(pred, strlen(pred), &p, NULL), 0);
    struct metrics_record_score s;
    metrics_score_record(&g, &p, &s);
    metrics_codes_fini(&g);
    metrics_codes_fini(&p);
    return s;
}

/* The seven binary values as a string "1010110" in enum order. */
static const char *bits(const struct metrics_record_score *s)
{
    static char b[METRICS_N_BINARY + 1];
    for (int i = 0; i < METRICS_N_BINARY; i++)
        b[i] = (char)('0' + s->bin[i]);
    b[METRICS_N_BINARY] = '\0';
    return b;
}

static void test_exact_match(void **state)
{
    (void)state;
    struct metrics_record_score s = score("74177, 26, R10.84, K57.30", "74177, 26, K57.30, R10.84");
    /* ICD order does not matter for sets. */
    assert_string_equal(bits(&s), "1111111");
    assert_true(s.icd_recall == 1.0 && s.icd_precision == 1.0);
    assert_int_equal(s.icd_tp, 2);
}

static void test_partial_icd(void **state)
{
    (void)state;
    /* Gold {R10.84, K57.30}; pred {R10.84, M25.5}: tp 1, recall 1/2, precision 1/2. */
    struct metrics_record_score s = score("74177, 26, R10.84, K57.30", "74177, 26, R10.84, M25.5");
    /* cpt_exact cpt_primary modifier_exact icd_exact any root all_three */
    assert_string_equal(bits(&s), "1110110");
    assert_true(s.icd_recall == 0.5 && s.icd_precision == 0.5);
}

static void test_root_overlap_only(void **state)
{
    (void)state;
    /* M25.5 vs M25.511: same category, no shared code. */
    struct metrics_record_score s = score("73721, M25.511", "73721, M25.5");
    assert_string_equal(bits(&s), "1110010");
    assert_true(s.icd_recall == 0.0 && s.icd_precision == 0.0);
}

static void test_empty_sets(void **state)
{
    (void)state;
    /* Both empty: every binary metric matches, recall = precision = 1. */
    struct metrics_record_score s = score("", "");
    assert_string_equal(bits(&s), "1111111");
    assert_true(s.icd_recall == 1.0 && s.icd_precision == 1.0);
    /* Gold without modifiers and ICD, prediction adds some. */
    s = score("74177", "74177, 26, R10.84");
    assert_string_equal(bits(&s), "1100000");
    assert_true(s.icd_recall == 0.0); /* G empty, P not: 0 */
    assert_true(s.icd_precision == 0.0);
    /* Prediction empty (a missing prediction). */
    s = score("74177, 26, R10.84", "");
    assert_string_equal(bits(&s), "0000000");
    assert_true(s.icd_recall == 0.0 && s.icd_precision == 0.0); /* P empty, G not: 0 */
    /* Gold has ICD only, both without CPT: cpt_primary matches on both empty. */
    s = score("R10.84", "R10.84");
    assert_string_equal(bits(&s), "1111111");
}

static void test_multi_cpt(void **state)
{
    (void)state;
    /* Same set, other order: cpt_exact yes, cpt_primary no. */
    struct metrics_record_score s = score("74177 72193, 26, R10.84", "72193 74177, 26, R10.84");
    assert_int_equal(s.bin[METRICS_CPT_EXACT], 1);
    assert_int_equal(s.bin[METRICS_CPT_PRIMARY], 0);
    assert_int_equal(s.bin[METRICS_ALL_THREE_EXACT], 1);
    /* Subset: primary right, set wrong. */
    s = score("74177 72193, 26, R10.84", "74177, 26, R10.84");
    assert_int_equal(s.bin[METRICS_CPT_EXACT], 0);
    assert_int_equal(s.bin[METRICS_CPT_PRIMARY], 1);
    assert_int_equal(s.bin[METRICS_ALL_THREE_EXACT], 0);
}

static void test_duplicates_and_undotted(void **state)
{
    (void)state;
    /* Duplicates and undotted forms normalise before scoring. */
    struct metrics_record_score s = score("74177, 26, R10.84", "74177, 74177, 26, R1084, r10.84");
    assert_string_equal(bits(&s), "1111111");
    assert_int_equal(s.icd_pred, 1);
}

static void test_modifier_sets(void **state)
{
    (void)state;
    struct metrics_record_score s = score("73721, 26, RT, M25.511", "73721, RT, 26, M25.511");
    assert_int_equal(s.bin[METRICS_MODIFIER_EXACT], 1);
    s = score("73721, 26, RT, M25.511", "73721, 26, M25.511");
    assert_int_equal(s.bin[METRICS_MODIFIER_EXACT], 0);
}

/* ---- taxonomy -------------------------------------------------------------------------------- */
struct pairs {
    char buf[512];
};

static int on_pair(void *ctx, const char *g, const char *p)
{
    struct pairs *pp = ctx;
    char one[32];
    snprintf(one, sizeof one, "%s>%s;", g, p);
    strcat(pp->buf, one);
    return 0;
}

static struct metrics_taxo taxo(const char *gold, const char *pred, const unsigned char *inv,
                                struct pairs *pp)
{
    struct metrics_codes g, p;
    metrics_codes_init(&g);
    metrics_codes_init(&p);
    assert_int_equal(metrics_codes_parse(gold, strlen(gold), &g, NULL), 0);
    assert_int_equal(metrics_codes_parse(pred, strlen(pred), &p, NULL), 0);
    struct metrics_taxo t;
    memset(&t, 0, sizeof t);
    memset(pp, 0, sizeof *pp);
    assert_int_equal(metrics_taxonomy_record(&g, &p, inv, &t, on_pair, pp), 0);
    metrics_codes_fini(&g);
    metrics_codes_fini(&p);
    return t;
}

static void test_taxonomy_specificity_and_wrong_category(void **state)
{
    (void)state;
    struct pairs pp;
    /* Gold M25.511, R10.84, K57.30; pred M25.5 (same category as M25.511), J18.9 (other),
     * R10.84 (hit). M25.511 pairs with M25.5 (specificity); K57.30 with J18.9 (wrong category). */
    struct metrics_taxo t = taxo("M25.511, R10.84, K57.30", "M25.5, J18.9, R10.84", NULL, &pp);
    assert_int_equal(t.specificity, 1);
    assert_int_equal(t.wrong_category, 1);
    assert_int_equal(t.missed, 0);
    assert_int_equal(t.hallucinated, 0);
    assert_int_equal(t.extra, 0);
    assert_string_equal(pp.buf, "M25.511>M25.5;K57.30>J18.9;");
}

static void test_taxonomy_same_category_first(void **state)
{
    (void)state;
    struct pairs pp;
    /* Gold K57.30 first takes the first unpaired prediction of its category, even if another
     * category's prediction comes first in the line. */
    struct metrics_taxo t = taxo("K57.30, M25.511", "M25.5, K57.20", NULL, &pp);
    assert_int_equal(t.specificity, 2);
    assert_string_equal(pp.buf, "K57.30>K57.20;M25.511>M25.5;");
}

static void test_taxonomy_missed_extra_hallucinated(void **state)
{
    (void)state;
    struct pairs pp;
    /* Two gold misses, one extra prediction: one wrong category, one missed. */
    struct metrics_taxo t = taxo("R10.84, K57.30", "J18.9", NULL, &pp);
    assert_int_equal(t.wrong_category, 1);
    assert_int_equal(t.missed, 1);
    /* No gold ICD, two predictions: extra (over-coding). */
    t = taxo("74177", "74177, R10.84, J18.9", NULL, &pp);
    assert_int_equal(t.extra, 2);
    assert_int_equal(t.missed + t.specificity + t.wrong_category, 0);
    /* An invalid prediction is hallucinated and never paired: R10.9ZZ is flagged. */
    const unsigned char inv[] = {1, 0};
    t = taxo("R10.84", "R10.9ZZ, J18.9", inv, &pp);
    assert_int_equal(t.hallucinated, 1);
    assert_int_equal(t.wrong_category, 1);
    assert_string_equal(pp.buf, "R10.84>J18.9;");
    /* A hit flagged invalid is still a hit, not an error. */
    const unsigned char inv2[] = {1};
    t = taxo("R10.84", "R10.84", inv2, &pp);
    assert_int_equal(t.hallucinated + t.missed + t.extra, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exact_match),
        cmocka_unit_test(test_partial_icd),
        cmocka_unit_test(test_root_overlap_only),
        cmocka_unit_test(test_empty_sets),
        cmocka_unit_test(test_multi_cpt),
        cmocka_unit_test(test_duplicates_and_undotted),
        cmocka_unit_test(test_modifier_sets),
        cmocka_unit_test(test_taxonomy_specificity_and_wrong_category),
        cmocka_unit_test(test_taxonomy_same_category_first),
        cmocka_unit_test(test_taxonomy_missed_extra_hallucinated),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
