/* test_json.c — JSON helpers: malformed input and invalid UTF-8 named in errors, typed access,
 * byte-stable dumps, JSONL line iteration with CRLF. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "common.h"

static void test_malformed_names_source_and_position(void **state)
{
    (void)state;
    struct ny_err err;
    ny_err_init(&err);
    json_t *v = NULL;
    const char *bad = "{\"id\": 1,\n \"x\": }";
    assert_int_equal(ny_json_load_buf(bad, strlen(bad), "gold.jsonl line 3", &v, &err),
                     NY_E_FORMAT);
    assert_null(v);
    assert_non_null(strstr(err.msg, "gold.jsonl line 3"));
    assert_non_null(strstr(err.msg, "line 2"));
}

static void test_invalid_utf8_rejected(void **state)
{
    (void)state;
    struct ny_err err;
    ny_err_init(&err);
    json_t *v = NULL;
    const char *bad = "{\"a\": \"\xc3\x28\"}";
    assert_int_equal(ny_json_load_buf(bad, strlen(bad), "x.json", &v, &err), NY_E_FORMAT);
    assert_non_null(strstr(err.msg, "invalid UTF-8"));
}

static void test_duplicate_keys_rejected(void **state)
{
    (void)state;
    json_t *v = NULL;
    const char *dup = "{\"a\": 1, \"a\": 2}";
    assert_int_equal(ny_json_load_buf(dup, strlen(dup), "d.json", &v, NULL), NY_E_FORMAT);
}

static void test_typed_access(void **state)
{
    (void)state;
    json_t *v = NULL;
    const char *s = "{\"id\": \"r1\", \"n\": 5, \"x\": 0.5, \"b\": true, \"z\": null}";
    assert_int_equal(ny_json_load_buf(s, strlen(s), "t", &v, NULL), NY_OK);
    const char *id = NULL;
    int64_t n = 0;
    double x = 0;
    int b = 0;
    struct ny_err err;
    ny_err_init(&err);
    assert_int_equal(ny_json_get_string(v, "id", 1, &id, "t", &err), NY_OK);
    assert_string_equal(id, "r1");
    assert_int_equal(ny_json_get_int(v, "n", 1, &n, "t", &err), NY_OK);
    assert_int_equal(n, 5);
    assert_int_equal(ny_json_get_real(v, "x", 1, &x, "t", &err), NY_OK);
    assert_true(x == 0.5);
    assert_int_equal(ny_json_get_bool(v, "b", 1, &b, "t", &err), NY_OK);
    assert_int_equal(b, 1);
    /* wrong type */
    assert_int_equal(ny_json_get_int(v, "id", 1, &n, "rec r1", &err), NY_E_FORMAT);
    assert_non_null(strstr(err.msg, "\"id\""));
    /* missing optional vs required; null counts as missing */
    ny_err_init(&err);
    assert_int_equal(ny_json_get_string(v, "z", 0, &id, "t", &err), NY_E_NOTFOUND);
    assert_int_equal(err.code, 0);
    assert_int_equal(ny_json_get_string(v, "nope", 1, &id, "t", &err), NY_E_FORMAT);
    assert_non_null(strstr(err.msg, "missing required field \"nope\""));
    json_decref(v);
}

static void test_dumps_sorted_and_stable(void **state)
{
    (void)state;
    json_t *o = json_object();
    json_object_set_new(o, "b", json_real(0.1));
    json_object_set_new(o, "a", json_integer(3));
    char *s = ny_json_dumps(o, 0);
    assert_string_equal(s, "{\"a\":3,\"b\":0.10000000000000001}");
    ny_free(s);
    json_decref(o);
}

static void test_lines_crlf_and_last_line(void **state)
{
    (void)state;
    const char *buf = "one\r\ntwo\n\nthree";
    struct ny_lines it;
    ny_lines_init(&it, buf, strlen(buf));
    const char *l;
    size_t n;
    const char *want[] = {"one", "two", "", "three"};
    for (int i = 0; i < 4; i++) {
        assert_int_equal(ny_lines_next(&it, &l, &n), 1);
        assert_int_equal(n, strlen(want[i]));
        assert_memory_equal(l, want[i], n);
        assert_int_equal(it.lineno, (size_t)i + 1);
    }
    assert_int_equal(ny_lines_next(&it, &l, &n), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_malformed_names_source_and_position),
        cmocka_unit_test(test_invalid_utf8_rejected),
        cmocka_unit_test(test_duplicate_keys_rejected),
        cmocka_unit_test(test_typed_access),
        cmocka_unit_test(test_dumps_sorted_and_stable),
        cmocka_unit_test(test_lines_crlf_and_last_line),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
