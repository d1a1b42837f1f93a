/* test_model.c — results validation, the number formats the reports print, code-line
 * normalisation for disagreement flags, and the one HTML escape. */
#include "rp_test_util.h"

#include "report_int.h"

static void test_fixture_is_valid_and_flags(void **state)
{
    (void)state;
    json_t *r = fixture();
    struct ny_err err;
    ny_err_init(&err);
    assert_int_equal(report_results_check(r, &err), 0);
    struct rp_doc d;
    assert_int_equal(rp_doc_load(&d, r, &err), 0);
    assert_int_equal(d.nck, 3);
    assert_int_equal(d.base, 0);
    assert_string_equal(d.ck[1].label, "V17");
    assert_int_equal(d.nrec, json_array_size(json_object_get(r, "records")));
    /* Disagreement flags recomputed by hand from the records' lines. */
    size_t nd = 0;
    for (size_t i = 0; i < d.nrec; i++) {
        json_t *p = json_object_get(json_array_get(json_object_get(r, "records"), i),
                                    "predictions");
        const char *a = json_string_value(json_object_get(p, "V16"));
        int differ = strcmp(a, json_string_value(json_object_get(p, "V17"))) ||
                     strcmp(a, json_string_value(json_object_get(p, "Epoch-1")));
        assert_int_equal(d.rec[i].disagree, differ); /* the fixture writes canonical lines */
        nd += differ;
    }
    assert_int_equal(d.ndisagree, nd);
    char sha[65], *canon = ny_json_dumps(r, 0), want[65];
    ny_sha256_hex(canon, strlen(canon), want);
    assert_int_equal(report_results_sha256(r, sha, &err), 0);
    assert_string_equal(sha, want);
    assert_string_equal(d.sha, want);
    ny_free(canon);
    rp_doc_fini(&d);
    json_decref(r);
}

static void test_formats(void **state)
{
    (void)state;
    char s[64];
    rp_fmt_pct(s, sizeof s, 0.9123);
    assert_string_equal(s, "91.2%");
    rp_fmt_pct(s, sizeof s, -0.0001);
    assert_string_equal(s, "0.0%");
    struct rp_value v = {0.9, 0.8789, 0.93449, 1};
    rp_fmt_value(s, sizeof s, &v);
    assert_string_equal(s, "90.0% [87.9, 93.4]");
    v.has_ci = 0;
    rp_fmt_value(s, sizeof s, &v);
    assert_string_equal(s, "90.0%");
    rp_fmt_pp(s, sizeof s, 0.0333);
    assert_string_equal(s, "+3.3 pp");
    rp_fmt_pp(s, sizeof s, -0.15);
    assert_string_equal(s, "\xe2\x88\x92" "15.0 pp");
    rp_fmt_pp(s, sizeof s, 0.0002);
    assert_string_equal(s, "0.0 pp");
    rp_fmt_pp_ci(s, sizeof s, -0.02, 0.03);
    assert_string_equal(s, "[\xe2\x88\x92" "2.0, +3.0]");
    rp_fmt_p(s, sizeof s, 0.0004);
    assert_string_equal(s, "< 0.001");
    rp_fmt_p(s, sizeof s, 0.0042);
    assert_string_equal(s, "0.004");
    rp_fmt_p(s, sizeof s, 0.625);
    assert_string_equal(s, "0.62");
    rp_fmt_p(s, sizeof s, 1.0);
    assert_string_equal(s, "1.00");
}

static void test_codes_norm(void **state)
{
    (void)state;
    static const char *const cases[][2] = {
        {"74177, 26, R10.84", "26 74177 R1084"},
        {"r10.84,26 , 74177", "26 74177 R1084"},
        {"74177, 26, R10.84, R10.84", "26 74177 R1084"},
        {"", ""},
        {" , ,", ""},
        {"M25511", "M25511"},
        {"M25.511.", "M25511"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *n = rp_codes_norm(cases[i][0]);
        assert_non_null(n);
        assert_string_equal(n, cases[i][1]);
        ny_free(n);
    }
}

static void test_html_escape(void **state)
{
    (void)state;
    struct ny_buf b;
    ny_buf_init(&b);
    assert_int_equal(rp_html_escape(&b, "<script>alert('x & \"y\"')</script>"), 0);
    assert_string_equal(b.data, "&lt;script&gt;alert(&#39;x &amp; &quot;y&quot;&#39;)&lt;/script&gt;");
    ny_buf_fini(&b);
    ny_buf_init(&b);
    assert_int_equal(rp_html_escape(&b, "plain \xe2\x88\x92 text"), 0);
    assert_string_equal(b.data, "plain \xe2\x88\x92 text");
    ny_buf_fini(&b);
    /* A cut multi-byte sequence, a stray byte and control characters become U+FFFD. */
    ny_buf_init(&b);
    assert_int_equal(rp_html_escape(&b, "a\xe2\x88 b\xff<\x01\tc\n"), 0);
    assert_string_equal(b.data, "a\xef\xbf\xbd b\xef\xbf\xbd&lt;\xef\xbf\xbd\tc\n");
    assert_true(ny_utf8_valid(b.data, b.len, NULL));
    ny_buf_fini(&b);
}

/* A json_t built in code with a string that is not UTF-8 cannot be serialised canonically. */
static void test_unserialisable_results(void **state)
{
    (void)state;
    json_t *r = fixture();
    json_object_set_new(json_object_get(r, "run"), "id", json_stringn_nocheck("r-\xff", 3));
    struct ny_err err;
    ny_err_init(&err);
    assert_int_equal(report_results_check(r, &err), NY_E_FORMAT);
    assert_non_null(strstr(err.msg, "canonical JSON"));
    char *path = tpath("x.html");
    assert_int_equal(report_html_write(r, path, NULL), NY_E_FORMAT);
    assert_false(ny_file_exists(path));
    ny_free(path);
    json_decref(r);
}

static void test_evidence(void **state)
{
    (void)state;
    json_t *e = json_pack("{s:f, s:[f,f], s:f, s:s}", "threshold", 0.8, "ci95", 0.82, 0.88,
                          "value", 0.85, "note", "lower bound");
    struct ny_buf b;
    ny_buf_init(&b);
    assert_int_equal(rp_fmt_evidence(&b, e), 0);
    assert_string_equal(b.data,
                        "value 85.0%; ci95 [82.0%, 88.0%]; note lower bound; threshold 80.0%");
    ny_buf_fini(&b);
    json_decref(e);
}

/* ---- hostile results: every kind of wrong value at many places, never a crash ---------------- */

struct slot {
    json_t *parent;
    const char *key; /* object member, or NULL for array index */
    size_t index;
};

static void collect(json_t *v, struct slot *out, size_t *n, size_t cap)
{
    const char *k;
    json_t *c;
    if (json_is_object(v)) {
        json_object_foreach(v, k, c) {
            if (*n < cap)
                out[(*n)++] = (struct slot){v, k, 0};
            collect(c, out, n, cap);
        }
    } else if (json_is_array(v)) {
        for (size_t i = 0; i < json_array_size(v); i++) {
            if (*n < cap)
                out[(*n)++] = (struct slot){v, NULL, i};
            collect(json_array_get(v, i), out, n, cap);
        }
    }
}

static json_t *wrong_value(unsigned k)
{
    switch (k % 7) {
    case 0: return json_null();
    case 1: return json_integer(-7);
    case 2: return json_string("<x>");
    case 3: return json_array();
    case 4: return json_object();
    case 5: return json_real(-1e308);
    default: return json_true();
    }
}

static void test_mutations_never_crash(void **state)
{
    (void)state;
    json_t *base = fixture();
    enum { CAP = 20000 };
    struct slot *slots = ny_calloc(CAP, sizeof *slots);
    size_t n = 0;
    collect(base, slots, &n, CAP);
    assert_true(n > 1000);
    char *path = tpath("m.html");
    unsigned seed = 12345;
    size_t ok = 0, bad = 0;
    for (int t = 0; t < 300; t++) {
        seed = seed * 1103515245u + 12345u;
        size_t pick = (seed >> 8) % n;
        /* Mutate a copy: find the same slot in it by walking the same order. */
        json_t *r = json_deep_copy(base);
        struct slot *cs = ny_calloc(CAP, sizeof *cs);
        size_t cn = 0;
        collect(r, cs, &cn, CAP);
        assert_int_equal(cn, n);
        json_t *w = wrong_value((unsigned)t);
        if (cs[pick].key)
            json_object_set_new(cs[pick].parent, cs[pick].key, w);
        else
            json_array_set_new(cs[pick].parent, cs[pick].index, w);
        struct ny_err err;
        ny_err_init(&err);
        int rc = report_html_write(r, path, &err);
        assert_true(rc == 0 || rc == NY_E_FORMAT);
        if (rc) {
            assert_false(ny_file_exists(path));
            assert_non_null(strstr(err.msg, "results"));
            bad++;
        } else {
            assert_int_equal(unlink(path), 0);
            if (ok++ % 4 == 0) { /* the PDF lays out the same odd-but-valid values */
                char *pdf = tpath("m.pdf");
                if (report_pdf_write(r, pdf, &err))
                    fail_msg("mutation %d: pdf: %s", t, err.msg);
                ny_free(pdf);
            }
        }
        ny_free(cs);
        json_decref(r);
    }
    assert_true(bad > 0 && ok > 0); /* both outcomes were exercised */
    ny_free(path);
    ny_free(slots);
    json_decref(base);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fixture_is_valid_and_flags),
        cmocka_unit_test(test_formats),
        cmocka_unit_test(test_codes_norm),
        cmocka_unit_test(test_html_escape),
        cmocka_unit_test(test_evidence),
        cmocka_unit_test(test_unserialisable_results),
        cmocka_unit_test(test_mutations_never_crash),
    };
    return cmocka_run_group_tests(tests, rp_setup, rp_teardown);
}
