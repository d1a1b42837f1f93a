/* test_pdf.c — the compliance PDF: it parses (pdfinfo), holds the expected figures (pdftotext),
 * is byte-identical for identical results, quotes report text only when allowed, and fails
 * cleanly (no file) on malformed results or a missing font. */
#include <math.h>

#include "rp_test_util.h"

/* Write the PDF for r and return its text (pdftotext -layout); *pages from pdfinfo. */
static char *pdf_text_of(json_t *r, const char *name, int *pages)
{
    char *pdf = tpath(name), *txt = NULL, *info = NULL;
    struct ny_err err;
    ny_err_init(&err);
    int rc = report_pdf_write(r, pdf, &err);
    if (rc)
        fail_msg("report_pdf_write: %s", err.msg);
    assert_int_equal(sh("pdfinfo '%s' >'%s.info' 2>'%s.infoerr'", pdf, pdf, pdf), 0);
    assert_int_equal(sh("pdftotext -layout '%s' '%s.txt' 2>'%s.err'", pdf, pdf, pdf), 0);
    char path[1100];
    snprintf(path, sizeof path, "%s.infoerr", pdf);
    char *ierr = slurp(path, NULL);
    assert_string_equal(ierr, ""); /* pdfinfo: no errors, no warnings */
    ny_free(ierr);
    snprintf(path, sizeof path, "%s.err", pdf);
    char *terr = slurp(path, NULL);
    assert_string_equal(terr, ""); /* no warnings: the ToUnicode map is repaired */
    ny_free(terr);
    snprintf(path, sizeof path, "%s.info", pdf);
    info = slurp(path, NULL);
    const char *pg = strstr(info, "Pages:");
    assert_non_null(pg);
    *pages = atoi(pg + 6);
    assert_non_null(strstr(info, "CreationDate:    Thu Nov 26 21:00:00 2026 UTC"));
    snprintf(path, sizeof path, "%s.txt", pdf);
    txt = slurp(path, NULL);
    ny_free(info);
    ny_free(pdf);
    return txt;
}

static void test_pdf_parses_and_holds_figures(void **state)
{
    (void)state;
    if (!have_tool("pdfinfo") || !have_tool("pdftotext"))
        skip();
    json_t *r = fixture();
    int pages = 0;
    char *txt = pdf_text_of(r, "a.pdf", &pages);
    assert_true(pages >= 6);
    assert_non_null(strstr(txt, "RELEASE VERDICT: PASS"));
    /* Every checkpoint label, the dataset and run id. */
    json_t *cks = json_object_get(r, "checkpoints");
    assert_int_equal(json_array_size(cks), 3);
    for (size_t i = 0; i < json_array_size(cks); i++)
        assert_non_null(
            strstr(txt, json_string_value(json_object_get(json_array_get(cks, i), "label"))));
    assert_non_null(strstr(txt, json_string_value(
                                    json_object_get(json_object_get(r, "run"), "id"))));
    /* V17's CPT exact as printed: percent with one decimal and the interval in brackets. */
    json_t *m = metric_of(r, "V17", "cpt_exact");
    double v = json_real_value(json_object_get(m, "value"));
    json_t *ci = json_object_get(m, "ci95");
    char want[128];
    snprintf(want, sizeof want, "%.1f%% [%.1f, %.1f]", v * 100,
             json_real_value(json_array_get(ci, 0)) * 100,
             json_real_value(json_array_get(ci, 1)) * 100);
    assert_non_null(strstr(txt, want));
    /* The canonical results SHA-256 in the footer of every page, and the page numbers. */
    char *canon = ny_json_dumps(r, 0), sha[65];
    ny_sha256_hex(canon, strlen(canon), sha);
    size_t nsha = 0;
    for (const char *q = txt; (q = strstr(q, sha)); q++)
        nsha++;
    assert_true(nsha >= (size_t)pages);
    for (int i = 1; i <= pages; i++) {
        snprintf(want, sizeof want, "page %d of %d", i, pages);
        assert_non_null(strstr(txt, want));
    }
    /* Sections the issue lists. */
    static const char *const must[] = {"What each metric means", "Release gates",
                                       "Error analysis", "Validity against the code set",
                                       "Reproducibility manifest", "Paired differences",
                                       "by modality", "icd_recall_floor", "McNemar p", NULL};
    for (int i = 0; must[i]; i++)
        if (!strstr(txt, must[i]))
            fail_msg("missing \"%s\"", must[i]);
    ny_free(canon);
    ny_free(txt);
    json_decref(r);
}

static void test_pdf_byte_identical(void **state)
{
    (void)state;
    json_t *r = fixture(), *copy = json_deep_copy(r);
    char *a = tpath("same1.pdf"), *b = tpath("same2.pdf"), *c = tpath("other.pdf");
    struct ny_err err;
    ny_err_init(&err);
    assert_int_equal(report_pdf_write(r, a, &err), 0);
    sleep(1); /* a wall-clock date or time-seeded id would now differ */
    assert_int_equal(report_pdf_write(copy, b, &err), 0);
    assert_true(files_equal(a, b));
    /* A different run date must change the bytes (the date comes from the results). */
    json_object_set_new(json_object_get(copy, "run"), "started",
                        json_string("2026-11-27T08:30:00Z"));
    assert_int_equal(report_pdf_write(copy, c, &err), 0);
    assert_false(files_equal(a, c));
    ny_free(a);
    ny_free(b);
    ny_free(c);
    json_decref(copy);
    json_decref(r);
}

static void test_pdf_fail_verdict_and_excerpts(void **state)
{
    (void)state;
    if (!have_tool("pdftotext") || !have_tool("pdfinfo"))
        skip();
    json_t *r = fixture();
    json_t *g = json_array_get(json_object_get(r, "gates"), 3);
    json_object_set_new(g, "verdict", json_string("fail"));
    json_object_set_new(r, "verdict", json_string("fail"));
    json_t *recs = json_object_get(r, "records");
    for (size_t i = 0; i < json_array_size(recs); i++)
        json_object_set_new(json_array_get(recs, i), "report_excerpt",
                            json_string("EXCERPTMARK patient with pain"));
    int pages;
    char *txt = pdf_text_of(r, "fail.pdf", &pages);
    assert_non_null(strstr(txt, "RELEASE VERDICT: FAIL"));
    assert_non_null(strstr(txt, "1 of 4 release gates fail"));
    assert_non_null(strstr(txt, "FAIL"));
    assert_null(strstr(txt, "EXCERPTMARK")); /* PHI: allow_report_text is false */
    ny_free(txt);
    json_object_set_new(json_object_get(r, "run"), "allow_report_text", json_true());
    txt = pdf_text_of(r, "allowed.pdf", &pages);
    assert_non_null(strstr(txt, "EXCERPTMARK"));
    ny_free(txt);
    json_decref(r);
}

/* metrics writes a null validity rate when a checkpoint predicted no code of a system (0/0), and
 * a null validity object without a code set: both render as "n/a" (bug: they were refused and the
 * audit exited 4 with no results.json). */
static void test_pdf_html_null_validity(void **state)
{
    (void)state;
    if (!have_tool("pdftotext") || !have_tool("pdfinfo"))
        skip();
    json_t *r = fixture();
    json_t *models = json_object_get(json_object_get(r, "metrics"), "models");
    json_t *v17 = json_object_get(models, "V17");
    json_object_set_new(json_object_get(v17, "validity"), "modifier_invalid", json_null());
    json_object_set_new(json_object_get(models, "Epoch-1"), "validity", json_null());
    int pages;
    char *txt = pdf_text_of(r, "nullvalid.pdf", &pages);
    assert_non_null(strstr(txt, "n/a"));
    ny_free(txt);
    char *html = tpath("nullvalid.html");
    struct ny_err err;
    ny_err_init(&err);
    assert_int_equal(report_html_write(r, html, &err), NY_OK);
    assert_true(ny_file_exists(html));
    ny_free(html);
    /* A missing validity member is still malformed. */
    json_object_del(json_object_get(models, "Epoch-1"), "validity");
    char *bad = tpath("novalid.pdf");
    assert_int_equal(report_pdf_write(r, bad, &err), NY_E_FORMAT);
    assert_false(ny_file_exists(bad));
    ny_free(bad);
    json_decref(r);
}

/* Each mutation of the fixture must fail with NY_E_FORMAT naming the field, leaving no file. */
static void test_pdf_malformed_leaves_no_file(void **state)
{
    (void)state;
    static const char *const expect[] = {
        "results.schema", "results.schema", "results.run.n", "results.checkpoints",
        "baselines", "results.metrics.models.V17", "metrics.cpt_exact.ci95",
        "results.gates[0].verdict", "results.records[0].gold", "results.verdict",
        "results.run.started", "results.metrics.comparisons[0]", "results.manifest"};
    size_t n = sizeof expect / sizeof expect[0];
    for (size_t i = 0; i < n; i++) {
        json_t *r = fixture();
        json_t *run = json_object_get(r, "run"), *cks = json_object_get(r, "checkpoints");
        switch (i) {
        case 0: json_object_del(r, "schema"); break;
        case 1: json_object_set_new(r, "schema", json_string("nyxaudit.results/2")); break;
        case 2: json_object_set_new(run, "n", json_string("60")); break;
        case 3: json_array_clear(cks); break;
        case 4:
            json_object_set_new(json_array_get(cks, 1), "baseline", json_true());
            break;
        case 5:
            json_object_del(json_object_get(json_object_get(r, "metrics"), "models"), "V17");
            break;
        case 6:
            json_array_append_new(json_object_get(metric_of(r, "V16", "cpt_exact"), "ci95"),
                                  json_real(0.5));
            break;
        case 7:
            json_object_set_new(json_array_get(json_object_get(r, "gates"), 0), "verdict",
                                json_string("maybe"));
            break;
        case 8:
            json_object_set_new(json_array_get(json_object_get(r, "records"), 0), "gold",
                                json_integer(74177));
            break;
        case 9:
            json_object_set_new(json_array_get(json_object_get(r, "gates"), 0), "verdict",
                                json_string("fail"));
            break;
        case 10: json_object_set_new(run, "started", json_string("yesterday")); break;
        case 11:
            json_object_set_new(
                json_array_get(json_object_get(json_object_get(r, "metrics"), "comparisons"), 0),
                "b", json_string("V99"));
            break;
        case 12: json_object_set_new(r, "manifest", json_array()); break;
        }
        char name[32];
        snprintf(name, sizeof name, "bad%zu.pdf", i);
        char *path = tpath(name);
        struct ny_err err;
        ny_err_init(&err);
        int rc = report_pdf_write(r, path, &err);
        if (rc != NY_E_FORMAT || !strstr(err.msg, expect[i]))
            fail_msg("case %zu: rc %d, message \"%s\" (want \"%s\")", i, rc, err.msg, expect[i]);
        assert_false(ny_file_exists(path));
        ny_free(path);
        json_decref(r);
    }
    /* Not an object at all. */
    json_t *arr = json_array();
    char *path = tpath("arr.pdf");
    assert_int_equal(report_pdf_write(arr, path, NULL), NY_E_FORMAT);
    assert_false(ny_file_exists(path));
    ny_free(path);
    json_decref(arr);
}

static void test_pdf_missing_font_and_bad_dir(void **state)
{
    (void)state;
    json_t *r = fixture();
    char *path = tpath("nofont.pdf");
    struct ny_err err;
    ny_err_init(&err);
    setenv("NYXAUDIT_FONT_DIR", "/nonexistent-font-dir", 1);
    assert_int_equal(report_pdf_write(r, path, &err), NY_E_NOTFOUND);
    assert_non_null(strstr(err.msg, "DejaVuSans.ttf"));
    unsetenv("NYXAUDIT_FONT_DIR");
    assert_false(ny_file_exists(path));
    ny_free(path);
    path = tpath("no/such/dir/x.pdf");
    assert_int_not_equal(report_pdf_write(r, path, &err), 0);
    assert_false(ny_file_exists(path));
    ny_free(path);
    json_decref(r);
}

/* Long, odd and hostile strings must lay out (wrapped, clipped) without failing. */
static void test_pdf_hostile_strings(void **state)
{
    (void)state;
    json_t *r = fixture();
    char *longs = ny_malloc(20001);
    for (int i = 0; i < 20000; i++)
        longs[i] = (char)('A' + i % 26);
    longs[20000] = 0;
    json_t *rec = json_array_get(json_object_get(r, "records"), 0);
    json_object_set_new(rec, "gold", json_string(longs));
    json_object_set_new(rec, "id", json_string("<script>alert(1)</script>\t\x01 & \"q\" \xe2\x88\x92"));
    json_object_set_new(json_object_get(r, "manifest"), "host", json_string(longs));
    char *path = tpath("hostile.pdf");
    struct ny_err err;
    ny_err_init(&err);
    assert_int_equal(report_pdf_write(r, path, &err), 0);
    assert_true(ny_file_exists(path));
    if (have_tool("pdfinfo"))
        assert_int_equal(sh("pdfinfo '%s' >/dev/null 2>&1", path), 0);
    ny_free(path);
    ny_free(longs);
    json_decref(r);
}

/* Keep only the baseline V16: no comparisons, no gates. */
static void only_baseline(json_t *r)
{
    json_t *cks = json_object_get(r, "checkpoints"), *m = json_object_get(r, "metrics");
    json_array_remove(cks, 2);
    json_array_remove(cks, 1);
    json_object_del(json_object_get(m, "models"), "V17");
    json_object_del(json_object_get(m, "models"), "Epoch-1");
    json_object_set_new(m, "comparisons", json_array());
    json_object_del(m, "holm");
    json_object_del(m, "cochran_q");
    json_object_set_new(r, "gates", json_array());
    json_t *recs = json_object_get(r, "records");
    for (size_t i = 0; i < json_array_size(recs); i++) {
        json_t *x = json_array_get(recs, i), *p = json_object_get(x, "predictions");
        json_object_del(p, "V17");
        json_object_del(p, "Epoch-1");
        json_object_set_new(x, "modality", json_null()); /* records without modality or CPT */
        json_object_del(x, "primary_cpt");
    }
    json_object_del(json_object_get(json_object_get(m, "models"), "V16"), "breakdowns");
}

/* Add checkpoints V18..V22, copies of V17 (metrics, comparisons with V16, predictions). */
static void many_checkpoints(json_t *r)
{
    json_t *cks = json_object_get(r, "checkpoints"), *m = json_object_get(r, "metrics");
    json_t *models = json_object_get(m, "models"), *cmp = json_object_get(m, "comparisons");
    size_t ncmp = json_array_size(cmp);
    for (int k = 18; k <= 22; k++) {
        char label[16];
        snprintf(label, sizeof label, "V%d", k);
        json_t *c = json_deep_copy(json_array_get(cks, 1));
        json_object_set_new(c, "label", json_string(label));
        json_array_append_new(cks, c);
        json_object_set_new(models, label, json_deep_copy(json_object_get(models, "V17")));
        for (size_t i = 0; i < ncmp; i++) {
            json_t *x = json_array_get(cmp, i);
            if (strcmp(json_string_value(json_object_get(x, "a")), "V16") ||
                strcmp(json_string_value(json_object_get(x, "b")), "V17"))
                continue;
            json_t *y = json_deep_copy(x);
            json_object_set_new(y, "b", json_string(label));
            json_array_append_new(cmp, y);
        }
        json_t *recs = json_object_get(r, "records");
        for (size_t i = 0; i < json_array_size(recs); i++) {
            json_t *p = json_object_get(json_array_get(recs, i), "predictions");
            json_object_set(p, label, json_object_get(p, "V17"));
        }
    }
}

static void test_pdf_html_other_shapes(void **state)
{
    (void)state;
    for (int shape = 0; shape < 2; shape++) {
        json_t *r = fixture();
        if (shape == 0)
            only_baseline(r);
        else
            many_checkpoints(r);
        struct ny_err err;
        ny_err_init(&err);
        char *h = tpath(shape ? "many.html" : "one.html");
        if (report_html_write(r, h, &err))
            fail_msg("shape %d html: %s", shape, err.msg);
        ny_free(h);
        if (!have_tool("pdftotext") || !have_tool("pdfinfo")) {
            json_decref(r);
            continue;
        }
        int pages;
        char *txt = pdf_text_of(r, shape ? "many.pdf" : "one.pdf", &pages);
        if (shape == 0) {
            assert_non_null(strstr(txt, "No release gates were configured"));
            assert_non_null(strstr(txt, "No paired comparisons"));
        } else {
            assert_non_null(strstr(txt, "V22"));
            assert_non_null(strstr(txt, "V22 vs V16"));
        }
        ny_free(txt);
        json_decref(r);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pdf_parses_and_holds_figures),
        cmocka_unit_test(test_pdf_byte_identical),
        cmocka_unit_test(test_pdf_fail_verdict_and_excerpts),
        cmocka_unit_test(test_pdf_malformed_leaves_no_file),
        cmocka_unit_test(test_pdf_html_null_validity),
        cmocka_unit_test(test_pdf_missing_font_and_bad_dir),
        cmocka_unit_test(test_pdf_hostile_strings),
        cmocka_unit_test(test_pdf_html_other_shapes),
    };
    return cmocka_run_group_tests(tests, rp_setup, rp_teardown);
}
