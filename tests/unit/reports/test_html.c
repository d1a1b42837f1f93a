/* test_html.c — the HTML dashboard and history page: self-contained (no network), the expected
 * figures and per-record rows, byte-identical output, every results string escaped (a record or
 * label holding <script> renders as text), and clean failures that leave no file. */
#include "rp_test_util.h"

static size_t count(const char *hay, const char *needle)
{
    size_t n = 0;
    for (const char *q = hay; (q = strstr(q, needle)); q += strlen(needle))
        n++;
    return n;
}

static char *html_of(json_t *r, const char *name)
{
    char *path = tpath(name);
    struct ny_err err;
    ny_err_init(&err);
    if (report_html_write(r, path, &err))
        fail_msg("report_html_write: %s", err.msg);
    char *s = slurp(path, NULL);
    ny_free(path);
    return s;
}

/* Only our own inline script and no reference to anything outside the file. */
static void assert_self_contained(const char *h)
{
    assert_int_equal(count(h, "<script"), 1);
    assert_null(strstr(h, "<script src"));
    assert_null(strstr(h, "<link"));
    assert_null(strstr(h, "@import"));
    assert_null(strstr(h, "url("));
    assert_null(strstr(h, "src="));
    for (const char *q = h; (q = strstr(q, "href=")); q++) /* in-page links only */
        assert_int_equal(q[6], '#');
    /* The only "http" are the SVG namespace name (an identifier, never fetched) and the
     * Content-Security-Policy that forbids every fetch. */
    assert_non_null(strstr(h, "content=\"default-src 'none';"));
    assert_int_equal(count(h, "http"),
                     count(h, "xmlns=\"http://www.w3.org/2000/svg\"") + count(h, "http-equiv="));
}

static void test_html_content(void **state)
{
    (void)state;
    json_t *r = fixture();
    char *h = html_of(r, "a.html");
    assert_self_contained(h);
    assert_non_null(strstr(h, "RELEASE VERDICT: PASS"));
    json_t *m = metric_of(r, "Epoch-1", "icd_exact");
    double v = json_real_value(json_object_get(m, "value"));
    json_t *ci = json_object_get(m, "ci95");
    char want[128];
    snprintf(want, sizeof want, "%.1f%% [%.1f, %.1f]", v * 100,
             json_real_value(json_array_get(ci, 0)) * 100,
             json_real_value(json_array_get(ci, 1)) * 100);
    assert_non_null(strstr(h, want));
    char *canon = ny_json_dumps(r, 0), sha[65];
    ny_sha256_hex(canon, strlen(canon), sha);
    assert_non_null(strstr(h, sha));
    /* One row per record; disagreement flags recomputed from the (canonical) lines. */
    json_t *recs = json_object_get(r, "records");
    size_t nd = 0;
    for (size_t i = 0; i < json_array_size(recs); i++) {
        json_t *p = json_object_get(json_array_get(recs, i), "predictions");
        const char *a = json_string_value(json_object_get(p, "V16"));
        nd += strcmp(a, json_string_value(json_object_get(p, "V17"))) ||
              strcmp(a, json_string_value(json_object_get(p, "Epoch-1")));
    }
    assert_int_equal(count(h, "<tr data-dis="), json_array_size(recs));
    assert_int_equal(count(h, "<tr data-dis=\"1\""), nd);
    /* Rows where V17 (index 1) is wrong vs gold: the fixture writes canonical lines, so string
     * inequality is code-set inequality there. */
    size_t nw = 0;
    for (size_t i = 0; i < json_array_size(recs); i++) {
        json_t *x = json_array_get(recs, i);
        nw += strcmp(json_string_value(json_object_get(x, "gold")),
                     json_string_value(json_object_get(json_object_get(x, "predictions"), "V17"))) != 0;
    }
    size_t rows_v17 = 0;
    for (const char *q = h; (q = strstr(q, "data-wrong=\"")); q++) {
        const char *e = strchr(q + 12, '"');
        const char *hit = strstr(q + 12, ",1,");
        rows_v17 += hit && hit < e;
    }
    assert_true(nw > 0);
    assert_int_equal(rows_v17, nw);
    assert_non_null(strstr(h, "id=\"f-wrong\""));
    assert_non_null(strstr(h, "id=\"f-dis\""));
    assert_non_null(strstr(h, "id=\"f-mod\""));
    assert_non_null(strstr(h, "id=\"f-cpt\""));
    assert_non_null(strstr(h, "<option value=\"CT\">CT</option>"));
    static const char *const must[] = {"What each metric means", "Release gates", "<svg",
                                       "Error analysis", "Reproducibility manifest",
                                       "Validity against the code set", "icd_invalid_ceiling",
                                       NULL};
    for (int i = 0; must[i]; i++)
        if (!strstr(h, must[i]))
            fail_msg("missing \"%s\"", must[i]);
    ny_free(canon);
    ny_free(h);
    json_decref(r);
}

static void test_html_byte_identical(void **state)
{
    (void)state;
    json_t *r = fixture(), *copy = json_deep_copy(r);
    char *a = tpath("s1.html"), *b = tpath("s2.html");
    assert_int_equal(report_html_write(r, a, NULL), 0);
    assert_int_equal(report_html_write(copy, b, NULL), 0);
    assert_true(files_equal(a, b));
    ny_free(a);
    ny_free(b);
    json_decref(copy);
    json_decref(r);
}

/* Rename a checkpoint label everywhere by rewriting the JSON text. */
static json_t *rename_label(json_t *r, const char *from, const char *to_json)
{
    char *s = ny_json_dumps(r, 0);
    struct ny_buf b;
    ny_buf_init(&b);
    for (const char *q = s;;) {
        const char *hit = strstr(q, from);
        if (!hit) {
            ny_buf_puts(&b, q);
            break;
        }
        ny_buf_append(&b, q, (size_t)(hit - q));
        ny_buf_puts(&b, to_json);
        q = hit + strlen(from);
    }
    json_t *out = json_loads(b.data, 0, NULL);
    assert_non_null(out);
    ny_buf_fini(&b);
    ny_free(s);
    return out;
}

static void test_html_escaping(void **state)
{
    (void)state;
    json_t *r0 = fixture();
    json_t *r = rename_label(r0, "\"Epoch-1\"", "\"E<i>1</i>\"");
    json_t *rec = json_array_get(json_object_get(r, "records"), 0);
    json_object_set_new(rec, "id", json_string("<script>alert(\"x\")</script>"));
    json_object_set_new(rec, "gold", json_string("74177 & <blink>\"q\"</blink> 'x'"));
    json_object_set_new(rec, "modality", json_string("C\"T><img>"));
    json_object_set_new(rec, "report_excerpt", json_string("pain <script>steal()</script>"));
    json_object_set_new(json_object_get(r, "run"), "allow_report_text", json_true());
    json_object_set_new(json_object_get(r, "manifest"), "host", json_string("<svg onload=x>"));
    json_object_set_new(json_array_get(json_object_get(r, "gates"), 0), "rule",
                        json_string("recall >= 0.6 && <u>ok</u>"));
    char *h = html_of(r, "esc.html");
    assert_self_contained(h);
    assert_null(strstr(h, "<i>"));
    assert_null(strstr(h, "<blink"));
    assert_null(strstr(h, "<u>"));
    assert_null(strstr(h, "<img"));
    assert_null(strstr(h, "<svg onload"));
    assert_non_null(strstr(h, "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;"));
    assert_non_null(strstr(h, "74177 &amp; &lt;blink&gt;&quot;q&quot;&lt;/blink&gt; &#39;x&#39;"));
    assert_non_null(strstr(h, "pain &lt;script&gt;steal()&lt;/script&gt;"));
    assert_non_null(strstr(h, "data-mod=\"C&quot;T&gt;&lt;img&gt;\""));
    assert_non_null(strstr(h, "E&lt;i&gt;1&lt;/i&gt;"));
    assert_non_null(strstr(h, "recall &gt;= 0.6 &amp;&amp; &lt;u&gt;ok&lt;/u&gt;"));
    ny_free(h);
    /* The same hostile results still make a PDF. */
    char *pdf = tpath("esc.pdf");
    assert_int_equal(report_pdf_write(r, pdf, NULL), 0);
    ny_free(pdf);
    json_decref(r);
    json_decref(r0);
}

static void test_html_malformed_leaves_no_file(void **state)
{
    (void)state;
    for (int i = 0; i < 3; i++) {
        json_t *r = fixture();
        if (i == 0)
            json_object_del(r, "records");
        else if (i == 1)
            json_object_set_new(metric_of(r, "V17", "icd_recall"), "value", json_string("0.8"));
        else
            json_object_set_new(json_object_get(r, "run"), "allow_report_text", json_integer(1));
        char *path = tpath("bad.html");
        struct ny_err err;
        ny_err_init(&err);
        assert_int_equal(report_html_write(r, path, &err), NY_E_FORMAT);
        assert_non_null(strstr(err.msg, i == 0 ? "results.records" : i == 1 ? "icd_recall.value"
                                                                           : "allow_report_text"));
        assert_false(ny_file_exists(path));
        ny_free(path);
        json_decref(r);
    }
}

/* Three runs of the fixture with different dates and shifted V17 values. */
static void make_runs(json_t *runs[3])
{
    static const char *const dates[3] = {"2026-11-26T21:00:00Z", "2026-11-20T09:00:00Z",
                                         "2026-11-23T12:00:00Z"};
    static const char *const ids[3] = {"r-third", "r-first", "r-second"};
    for (int i = 0; i < 3; i++) {
        runs[i] = fixture();
        json_t *run = json_object_get(runs[i], "run");
        json_object_set_new(run, "started", json_string(dates[i]));
        json_object_set_new(run, "id", json_string(ids[i]));
        json_object_set_new(metric_of(runs[i], "V17", "cpt_exact"), "value",
                            json_real(0.5 + 0.1 * i));
    }
}

static void test_history(void **state)
{
    (void)state;
    json_t *runs[3];
    make_runs(runs);
    char *a = tpath("hist1.html"), *b = tpath("hist2.html");
    struct ny_err err;
    ny_err_init(&err);
    assert_int_equal(report_history_html_write((const json_t *const *)runs, 3, a, &err), 0);
    char *h = slurp(a, NULL);
    assert_int_equal(count(h, "<script"), 0);
    assert_null(strstr(h, "src="));
    /* Runs in time order, whatever the input order. */
    const char *p1 = strstr(h, "r-first"), *p2 = strstr(h, "r-second"), *p3 = strstr(h, "r-third");
    assert_true(p1 && p2 && p3 && p1 < p2 && p2 < p3);
    /* V17's CPT exact of each run as printed in the values table. */
    for (int i = 0; i < 3; i++) {
        char want[64];
        snprintf(want, sizeof want, "%.1f%% [", (0.5 + 0.1 * i) * 100);
        assert_non_null(strstr(h, want));
    }
    assert_int_equal(count(h, "<svg"), 12); /* one chart per metric */
    ny_free(h);
    /* Input order does not change the bytes. */
    const json_t *rev[3] = {runs[2], runs[0], runs[1]};
    assert_int_equal(report_history_html_write(rev, 3, b, &err), 0);
    assert_true(files_equal(a, b));
    ny_free(a);
    ny_free(b);
    /* An invalid run is listed under "Runs not shown" with its reason; the others are drawn. */
    json_object_del(json_object_get(runs[1], "run"), "split");
    char *c = tpath("hist3.html");
    assert_int_equal(report_history_html_write((const json_t *const *)runs, 3, c, &err), 0);
    h = slurp(c, NULL);
    const char *skip = strstr(h, "Runs not shown");
    assert_non_null(skip);
    assert_non_null(strstr(skip, "r-first"));
    assert_non_null(strstr(skip, "results.run.split: missing"));
    assert_null(strstr(h, "2026-11-20T09:00:00Z")); /* its date is not among the runs drawn */
    assert_non_null(strstr(h, "2026-11-23T12:00:00Z"));
    ny_free(h);
    ny_free(c);
    /* No valid run at all: an error naming the first, and no file. */
    json_object_set_new(runs[0], "schema", json_string("other"));
    json_object_set_new(runs[2], "verdict", json_integer(1));
    c = tpath("hist4.html");
    assert_int_equal(report_history_html_write((const json_t *const *)runs, 3, c, &err),
                     NY_E_FORMAT);
    assert_non_null(strstr(err.msg, "run 0 (r-third)"));
    assert_non_null(strstr(err.msg, "results.schema"));
    assert_false(ny_file_exists(c));
    assert_int_equal(report_history_html_write((const json_t *const *)runs, 0, c, &err),
                     NY_E_INVALID);
    assert_false(ny_file_exists(c));
    ny_free(c);
    for (int i = 0; i < 3; i++)
        json_decref(runs[i]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_html_content),
        cmocka_unit_test(test_html_byte_identical),
        cmocka_unit_test(test_html_escaping),
        cmocka_unit_test(test_html_malformed_leaves_no_file),
        cmocka_unit_test(test_history),
    };
    return cmocka_run_group_tests(tests, rp_setup, rp_teardown);
}
