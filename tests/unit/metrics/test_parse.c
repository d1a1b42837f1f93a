/* test_parse.c — every rule of the model output line and the gold record normalisation
 * (metrics.h, section 1), with hand-worked expectations. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "metrics.h"

/* Parse and render as "CPT|MOD|ICD|unparseable", e.g. "74177 0042T|26|R10.84|1". */
static const char *render(const char *line)
{
    static char out[512];
    struct metrics_codes c;
    metrics_codes_init(&c);
    assert_int_equal(metrics_codes_parse(line, line ? strlen(line) : 0, &c, NULL), 0);
    out[0] = '\0';
    const struct metrics_code *lists[3] = {c.cpt, c.mod, c.icd};
    size_t ns[3] = {c.n_cpt, c.n_mod, c.n_icd};
    for (int k = 0; k < 3; k++) {
        for (size_t i = 0; i < ns[k]; i++) {
            if (i)
                strcat(out, " ");
            strcat(out, lists[k][i].s);
        }
        strcat(out, "|");
    }
    char u[16];
    snprintf(u, sizeof u, "%zu", c.n_unparseable);
    strcat(out, u);
    metrics_codes_fini(&c);
    return out;
}

static void test_basic_line(void **state)
{
    (void)state;
    assert_string_equal(render("74177, 26, R10.84, K57.30"), "74177|26|R10.84 K57.30|0");
}

static void test_empty_and_null(void **state)
{
    (void)state;
    assert_string_equal(render(""), "|||0");
    assert_string_equal(render(NULL), "|||0");
    assert_string_equal(render(" , ,, \t\n"), "|||0");
    /* Tokens that strip to nothing are skipped, not unparseable. */
    assert_string_equal(render("--, ..., ()"), "|||0");
}

static void test_multi_cpt_and_whitespace_split(void **state)
{
    (void)state;
    /* "CPT CPT2" in one comma field splits on whitespace; order kept. */
    assert_string_equal(render("74177 72193, 26, R10.84"), "74177 72193|26|R10.84|0");
    assert_string_equal(render("71046\t26\nJ18.9"), "71046|26|J18.9|0");
}

static void test_cpt_shapes(void **state)
{
    (void)state;
    assert_string_equal(render("0042T"), "0042T|||0");
    assert_string_equal(render("0042t"), "0042T|||0");   /* uppercased */
    assert_string_equal(render("7417"), "|||1");           /* 4 digits: nothing */
    assert_string_equal(render("741770"), "|||1");         /* 6 digits: nothing */
    assert_string_equal(render("74I77"), "|||1");          /* 3 digits then a letter */
    assert_string_equal(render("A4177"), "||A41.77|0");    /* an undotted ICD shape */
}

static void test_modifier_shapes(void **state)
{
    (void)state;
    assert_string_equal(render("26, TC, rt, 50"), "|26 TC RT 50||0");
    assert_string_equal(render("X"), "|||1");
}

static void test_icd_undotted_normalised(void **state)
{
    (void)state;
    assert_string_equal(render("M25511"), "||M25.511|0");
    assert_string_equal(render("m25.511"), "||M25.511|0");
    assert_string_equal(render("R1084, J189, S72001A"), "||R10.84 J18.9 S72.001A|0");
    assert_string_equal(render("M25"), "||M25|0");
    /* Letter, digit, letter: the third character may be a letter (C7A, D3A). */
    assert_string_equal(render("C7A.1"), "||C7A.1|0");
}

static void test_icd_rejects(void **state)
{
    (void)state;
    assert_string_equal(render("M2.5511"), "|||1");   /* dot in the wrong place */
    assert_string_equal(render("M25.51111"), "|||1"); /* 5 after the dot */
    assert_string_equal(render("MM5.1"), "|||1");     /* second character a letter */
    assert_string_equal(render("M25..5"), "|||1");
    assert_string_equal(render("M25-511"), "|||1");
}

static void test_strip_rules(void **state)
{
    (void)state;
    /* Leading non-alphanumerics stripped; trailing non-[A-Z0-9.] stripped, then trailing dots. */
    assert_string_equal(render("(R10.84)"), "||R10.84|0");
    assert_string_equal(render("\"74177\";"), "74177|||0");
    assert_string_equal(render("R10.84."), "||R10.84|0");
    assert_string_equal(render("R10.84.)"), "||R10.84|0");
    assert_string_equal(render("M25."), "||M25|0");
    /* One pass each, in order: the ')' before the dot is not reached, so "R10.84)." stays
     * unparseable. */
    assert_string_equal(render("R10.84)."), "|||1");
    /* Leading dots are stripped (not A-Z/0-9). */
    assert_string_equal(render(".R10.84"), "||R10.84|0");
}

static void test_duplicates_dropped_after_first(void **state)
{
    (void)state;
    assert_string_equal(render("74177, 26, R10.84, r1084, 26, 74177, K57.30, R10.84"),
                        "74177|26|R10.84 K57.30|0");
}

static void test_garbage_counted(void **state)
{
    (void)state;
    /* "IS" has the shape of a modifier; THE, CPT and CODE are unparseable. */
    assert_string_equal(render("The CPT code is 74177, 26, R10.84"), "74177|IS 26|R10.84|3");
    assert_string_equal(render("\xff\xfe R10.84 \xc3\x28"), "||R10.84|0");
    assert_string_equal(render("74177 caf\xc3\xa9"), "74177|||1");
}

static void test_hostile_line_bounded(void **state)
{
    (void)state;
    /* 1000 distinct ICD codes: the first METRICS_MAX_CODES kept, the rest counted. */
    char *line = malloc(1000 * 10 + 1);
    assert_non_null(line);
    size_t o = 0;
    for (int i = 0; i < 1000; i++)
        o += (size_t)sprintf(line + o, "A%02d.%d, ", i / 10, i % 10);
    struct metrics_codes c;
    metrics_codes_init(&c);
    assert_int_equal(metrics_codes_parse(line, o, &c, NULL), 0);
    assert_int_equal(c.n_icd, METRICS_MAX_CODES);
    assert_int_equal(c.n_unparseable, 1000 - METRICS_MAX_CODES);
    metrics_codes_fini(&c);
    free(line);
}

static void test_classify_token(void **state)
{
    (void)state;
    char out[METRICS_CODE_MAX];
    assert_int_equal(metrics_token_classify("m25511", 6, out), METRICS_KIND_ICD);
    assert_string_equal(out, "M25.511");
    assert_int_equal(metrics_token_classify("tc", 2, out), METRICS_KIND_MODIFIER);
    assert_string_equal(out, "TC");
    assert_int_equal(metrics_token_classify("..", 2, out), METRICS_KIND_NONE);
    assert_string_equal(out, "");
}

static void test_gold_arrays_and_line_agree(void **state)
{
    (void)state;
    const char *cpt[] = {"74177"}, *mods[] = {"26"}, *icd[] = {"R1084", "k57.30"};
    struct metrics_codes a, b;
    metrics_codes_init(&a);
    metrics_codes_init(&b);
    assert_int_equal(metrics_gold_parse(NULL, cpt, 1, mods, 1, icd, 2, "g", &a, NULL), 0);
    assert_int_equal(metrics_gold_parse("74177, 26, R10.84, K57.30", NULL, 0, NULL, 0, NULL, 0,
                                        "g", &b, NULL),
                     0);
    assert_int_equal(a.n_icd, 2);
    assert_string_equal(a.icd[0].s, "R10.84");
    assert_string_equal(a.icd[1].s, "K57.30");
    assert_int_equal(b.n_icd, 2);
    assert_string_equal(b.icd[1].s, "K57.30");
    assert_string_equal(a.cpt[0].s, b.cpt[0].s);
    assert_string_equal(a.mod[0].s, b.mod[0].s);
    metrics_codes_fini(&a);
    metrics_codes_fini(&b);
}

static void test_gold_errors_named(void **state)
{
    (void)state;
    struct metrics_codes c;
    metrics_codes_init(&c);
    struct ny_err err;
    ny_err_init(&err);
    const char *cpt[] = {"R10.84"};
    assert_int_equal(metrics_gold_parse(NULL, cpt, 1, NULL, 0, NULL, 0, "gold.jsonl line 4 (id x)",
                                        &c, &err),
                     NY_E_FORMAT);
    assert_non_null(strstr(err.msg, "gold.jsonl line 4"));
    assert_non_null(strstr(err.msg, "\"cpt\""));
    assert_non_null(strstr(err.msg, "ICD-10-CM"));
    ny_err_init(&err);
    assert_int_equal(metrics_gold_parse("74177, foo!", NULL, 0, NULL, 0, NULL, 0, "g1", &c, &err),
                     NY_E_FORMAT);
    assert_non_null(strstr(err.msg, "unparseable"));
    const char *bad[] = {NULL};
    assert_int_equal(metrics_gold_parse(NULL, NULL, 0, NULL, 0, bad, 1, "g2", &c, NULL),
                     NY_E_FORMAT);
    /* Failure leaves the output untouched (still empty). */
    assert_int_equal(c.n_cpt + c.n_mod + c.n_icd, 0);
    metrics_codes_fini(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_basic_line),
        cmocka_unit_test(test_empty_and_null),
        cmocka_unit_test(test_multi_cpt_and_whitespace_split),
        cmocka_unit_test(test_cpt_shapes),
        cmocka_unit_test(test_modifier_shapes),
        cmocka_unit_test(test_icd_undotted_normalised),
        cmocka_unit_test(test_icd_rejects),
        cmocka_unit_test(test_strip_rules),
        cmocka_unit_test(test_duplicates_dropped_after_first),
        cmocka_unit_test(test_garbage_counted),
        cmocka_unit_test(test_hostile_line_bounded),
        cmocka_unit_test(test_classify_token),
        cmocka_unit_test(test_gold_arrays_and_line_agree),
        cmocka_unit_test(test_gold_errors_named),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
