/* test_codeset_cms.c — the official CMS files in $NY_SHARED_DIR/codesets: FY2025 and FY2026
 * ICD-10-CM from their zips (74,260 and 74,719 billable codes), both releases in one database,
 * the HCPCS 2019 modifiers, and the radiology CPT list. Skipped when the directory is absent. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "metrics.h"

static char shared[512];

static const char *cs_path(const char *rel)
{
    static char p[4][1024];
    static int k;
    k = (k + 1) % 4;
    snprintf(p[k], sizeof p[k], "%s/codesets/%s", shared, rel);
    return p[k];
}

static void test_fy2025_fy2026(void **state)
{
    (void)state;
    const char *sd = getenv("NY_SHARED_DIR");
    if (!sd || !ny_dir_exists(sd)) {
        skip();
    }
    snprintf(shared, sizeof shared, "%s", sd);
    if (!ny_file_exists(cs_path("icd10cm/cms_2025_dx.zip")))
        skip();
    struct codeset_db *db = NULL;
    struct ny_err err;
    ny_err_init(&err);
    assert_int_equal(codeset_open(":memory:", &db, &err), 0);
    struct codeset_import_stats st;
    int rc = codeset_import_files(db, cs_path("icd10cm/cms_2025_dx.zip"),
                                  cs_path("hcpcs/2019-Alpha-Numeric-HCPCS-File.zip"),
                                  cs_path("cpt/radiology_cpt_codes_70010-79999_opps2026q2.txt"),
                                  NULL, NULL, &st, &err);
    if (rc)
        fail_msg("rc %d: %s", rc, err.msg);
    assert_string_equal(st.release, "FY2025");
    assert_string_equal(st.effective, "2024-10-01");
    assert_int_equal(st.icd10cm_billable, 74260);
    assert_int_equal(st.icd10cm, 97584);
    assert_int_equal(st.cpt, 662);
    assert_true(st.modifiers > 300);
    rc = codeset_import_files(db, cs_path("icd10cm/cms_2026_dx.zip"), NULL, NULL, NULL, NULL, &st,
                              &err);
    if (rc)
        fail_msg("rc %d: %s", rc, err.msg);
    assert_string_equal(st.release, "FY2026");
    assert_int_equal(st.icd10cm_billable, 74719);
    assert_int_equal(st.icd10cm, 98186);
    int64_t n = 0;
    assert_int_equal(codeset_count(db, "FY2025", "icd10cm", 1, &n, NULL), 0);
    assert_int_equal(n, 74260);
    assert_int_equal(codeset_count(db, "FY2026", "icd10cm", 1, &n, NULL), 0);
    assert_int_equal(n, 74719);
    /* Known codes: M25.511 billable, M25.5 a header, TC/RT/XS modifiers, 26 built in. */
    enum codeset_status s;
    assert_int_equal(codeset_lookup(db, "FY2025", METRICS_KIND_ICD, "M25.511", &s, NULL), 0);
    assert_int_equal(s, CODESET_VALID);
    assert_int_equal(codeset_lookup(db, "FY2025", METRICS_KIND_ICD, "M25.5", &s, NULL), 0);
    assert_int_equal(s, CODESET_NONBILLABLE);
    static const char *const mods[] = {"TC", "RT", "LT", "XS", "XU", "26", "59"};
    for (size_t i = 0; i < sizeof mods / sizeof *mods; i++) {
        assert_int_equal(codeset_lookup(db, "FY2025", METRICS_KIND_MODIFIER, mods[i], &s, NULL),
                         0);
        assert_int_equal(s, CODESET_VALID);
    }
    assert_int_equal(codeset_lookup(db, "FY2025", METRICS_KIND_CPT, "74177", &s, NULL), 0);
    assert_int_equal(s, CODESET_VALID);
    /* Re-importing FY2026 is a no-op. */
    assert_int_equal(codeset_import_files(db, cs_path("icd10cm/cms_2026_dx.zip"), NULL, NULL, NULL,
                                          NULL, &st, NULL),
                     0);
    assert_int_equal(st.noop, 1);
    char name[64];
    assert_int_equal(codeset_release_find(db, NULL, "2026-01-15", name, sizeof name, NULL), 0);
    assert_string_equal(name, "FY2026");
    codeset_close(db);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fy2025_fy2026),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
