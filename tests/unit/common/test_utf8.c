/* test_utf8.c — strict UTF-8: overlongs, surrogates, truncation and out-of-range rejected. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "common.h"

static void test_valid(void **state)
{
    (void)state;
    const char *ok[] = {"", "plain ascii", "caf\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80",
                        "\xf4\x8f\xbf\xbf"};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
        assert_true(ny_utf8_valid(ok[i], strlen(ok[i]), NULL));
}

static void test_invalid_with_offset(void **state)
{
    (void)state;
    struct {
        const char *s;
        size_t bad;
    } cases[] = {
        {"ab\xc0\xaf", 2},          /* overlong '/' */
        {"\xed\xa0\x80", 0},        /* surrogate U+D800 */
        {"xyz\xe2\x82", 3},         /* truncated sequence */
        {"\xf4\x90\x80\x80", 0},    /* > U+10FFFF */
        {"ok\x80", 2},              /* stray continuation byte */
        {"\xff", 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t off = 999;
        assert_false(ny_utf8_valid(cases[i].s, strlen(cases[i].s), &off));
        assert_int_equal(off, cases[i].bad);
    }
}

static void test_roundtrip(void **state)
{
    (void)state;
    uint32_t cps[] = {0x24, 0xA2, 0x20AC, 0x10348, 0x10FFFF};
    for (size_t i = 0; i < sizeof cps / sizeof cps[0]; i++) {
        char buf[4];
        int n = ny_utf8_encode(cps[i], buf);
        assert_true(n >= 1 && n <= 4);
        uint32_t back = 0;
        assert_int_equal(ny_utf8_decode(buf, (size_t)n, &back), n);
        assert_int_equal(back, cps[i]);
    }
    char buf[4];
    assert_int_equal(ny_utf8_encode(0xD800, buf), 0);
    assert_int_equal(ny_utf8_encode(0x110000, buf), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid),
        cmocka_unit_test(test_invalid_with_offset),
        cmocka_unit_test(test_roundtrip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
