/* test_buf.c — ny_buf growth, printf, take; overflow-checked arithmetic; error messages. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "common.h"

static void test_append_grow_take(void **state)
{
    (void)state;
    struct ny_buf b;
    ny_buf_init(&b);
    for (int i = 0; i < 1000; i++)
        assert_int_equal(ny_buf_printf(&b, "%d,", i % 10), NY_OK);
    assert_int_equal(b.len, 2000);
    assert_int_equal(strlen(b.data), 2000);
    char *s = ny_buf_take(&b);
    assert_memory_equal(s, "0,1,2,", 6);
    assert_null(b.data);
    ny_free(s);
    ny_buf_init(&b);
    s = ny_buf_take(&b); /* empty buffer gives "" */
    assert_string_equal(s, "");
    ny_free(s);
}

static void test_overflow_checks(void **state)
{
    (void)state;
    size_t r;
    assert_true(ny_mul_overflow(SIZE_MAX / 2 + 1, 2, &r));
    assert_false(ny_mul_overflow(1u << 20, 1u << 10, &r));
    assert_int_equal(r, 1u << 30);
    assert_true(ny_add_overflow(SIZE_MAX, 1, &r));
    uint64_t q;
    assert_true(ny_mul_overflow_u64(UINT64_MAX, 3, &q));
    assert_null(ny_calloc(SIZE_MAX / 4, 8));
    assert_null(ny_reallocarray(NULL, SIZE_MAX / 2, 4));
}

static void test_err_set_and_prefix(void **state)
{
    (void)state;
    struct ny_err err;
    ny_err_init(&err);
    int rc = NY_ERR(&err, NY_E_FORMAT, "%s: bad dtype %s", "model.safetensors", "I8");
    assert_int_equal(rc, NY_E_FORMAT);
    assert_int_equal(err.code, NY_E_FORMAT);
    ny_err_prefix(&err, "loading %s: ", "V17");
    assert_string_equal(err.msg, "loading V17: model.safetensors: bad dtype I8");
    assert_non_null(err.src_file);
    assert_string_equal(ny_status_name(NY_E_FORMAT), "NY_E_FORMAT");
    assert_int_equal(NY_ERR(NULL, NY_E_IO, "ignored"), NY_E_IO); /* NULL err is allowed */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_append_grow_take),
        cmocka_unit_test(test_overflow_checks),
        cmocka_unit_test(test_err_set_and_prefix),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
