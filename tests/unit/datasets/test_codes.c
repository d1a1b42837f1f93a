/* test_codes.c — the embedded demo code set against the official lists in $NY_SHARED_DIR: every
 * CPT number in the codesets/cpt lists, every ICD code and billable flag in the FY2026 order
 * file. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "datasets.h"
#include "ny_test.h"

static char tmpdir[64];
static char *cpt_text; /* both CPT files, concatenated */
static char *order_text; /* icd10cm_order_2026.txt */

static int setup(void **state)
{
    (void)state;
    const char *shared = getenv("NY_SHARED_DIR");
    if (ny_test_tmpdir_make(tmpdir, sizeof tmpdir, "dscodes"))
        return -1;
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "cat '%s'/codesets/cpt/*.txt > '%s/cpt.txt' && unzip -p "
             "'%s/codesets/icd10cm/cms_2026_dx.zip' icd10cm_order_2026.txt > '%s/order.txt'",
             shared, tmpdir, shared, tmpdir);
    if (system(cmd) != 0)
        return -1;
    size_t n;
    char *p = ny_path_join(tmpdir, "cpt.txt");
    int rc = ny_file_read(p, 1 << 20, &cpt_text, &n, NULL);
    ny_free(p);
    if (rc)
        return -1;
    p = ny_path_join(tmpdir, "order.txt");
    rc = ny_file_read(p, 64 << 20, &order_text, &n, NULL);
    ny_free(p);
    return rc ? -1 : 0;
}

static int teardown(void **state)
{
    (void)state;
    ny_free(cpt_text);
    ny_free(order_text);
    return ny_test_tmpdir_remove(tmpdir);
}

/* 1 when `code` is a whole line of the CPT lists. */
static int cpt_listed(const char *code)
{
    struct ny_lines it;
    const char *line;
    size_t len;
    ny_lines_init(&it, cpt_text, strlen(cpt_text));
    while (ny_lines_next(&it, &line, &len))
        if (len == strlen(code) && !memcmp(line, code, len))
            return 1;
    return 0;
}

/* The billable flag of an ICD code (dots removed) in the order file, or -1 when absent. The
 * layout: order number (5), space, code (7, left-justified), space, flag (1). */
static int order_flag(const char *dotted)
{
    char code[8] = {0};
    size_t j = 0;
    for (const char *s = dotted; *s && j < 7; s++)
        if (*s != '.')
            code[j++] = *s;
    struct ny_lines it;
    const char *line;
    size_t len;
    ny_lines_init(&it, order_text, strlen(order_text));
    while (ny_lines_next(&it, &line, &len)) {
        if (len < 15)
            continue;
        if (memcmp(line + 6, code, j) != 0)
            continue;
        int blank = 1;
        for (size_t k = j; k < 7; k++)
            blank &= line[6 + k] == ' ';
        if (blank)
            return line[14] - '0';
    }
    return -1;
}

static void test_cpt_numbers_official(void **state)
{
    (void)state;
    const struct dataset_code *c;
    size_t n = dataset_synth_codes(&c), ncpt = 0;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(c[i].system, "cpt"))
            continue;
        ncpt++;
        if (!cpt_listed(c[i].code))
            fail_msg("CPT %s is not in codesets/cpt", c[i].code);
        assert_int_equal(c[i].billable, 1);
    }
    assert_true(ncpt >= 40);
}

static void test_icd_codes_and_flags(void **state)
{
    (void)state;
    const struct dataset_code *c;
    size_t n = dataset_synth_codes(&c), nicd = 0, nhdr = 0;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(c[i].system, "icd10cm"))
            continue;
        nicd++;
        nhdr += c[i].billable == 0;
        int flag = order_flag(c[i].code);
        if (flag != c[i].billable)
            fail_msg("ICD %s: order-file flag %d, table says %d", c[i].code, flag, c[i].billable);
        /* dotted form: a dot after the third character when longer than 3 */
        size_t len = strlen(c[i].code);
        assert_true(len == 3 || (len > 4 && c[i].code[3] == '.'));
    }
    assert_true(nicd >= 80);
    assert_true(nhdr >= 10);
}

static void test_modifiers_and_lookup(void **state)
{
    (void)state;
    const char *mods[] = {"26", "TC", "LT", "RT", "50", "59", "XU"};
    for (size_t i = 0; i < sizeof mods / sizeof mods[0]; i++)
        assert_non_null(dataset_code_find("modifier", mods[i]));
    const struct dataset_code *h = dataset_code_find("icd10cm", "M25.5");
    assert_non_null(h);
    assert_int_equal(h->billable, 0);
    assert_null(dataset_code_find("icd10cm", "Z99.99"));
    assert_null(dataset_code_find("cpt", NULL));
    /* no duplicates, no CPT descriptor-length labels */
    const struct dataset_code *c;
    size_t n = dataset_synth_codes(&c);
    for (size_t i = 0; i < n; i++) {
        assert_true(strlen(c[i].label) < 60);
        for (size_t j = i + 1; j < n; j++)
            assert_false(!strcmp(c[i].system, c[j].system) && !strcmp(c[i].code, c[j].code));
    }
}

int main(void)
{
    if (!getenv("NY_SHARED_DIR") || !ny_dir_exists(getenv("NY_SHARED_DIR"))) {
        fprintf(stderr, "NY_SHARED_DIR not set or missing: skipping\n");
        return 77;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cpt_numbers_official),
        cmocka_unit_test(test_icd_codes_and_flags),
        cmocka_unit_test(test_modifiers_and_lookup),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
