/* test_sha256.c — SHA-256 against the FIPS 180-4 / NIST example vectors, streaming in odd chunk
 * sizes, and the file helper. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "common.h"

static void test_nist_vectors(void **state)
{
    (void)state;
    char hex[65];
    ny_sha256_hex("", 0, hex);
    assert_string_equal(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    ny_sha256_hex("abc", 3, hex);
    assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    const char *m = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    ny_sha256_hex(m, strlen(m), hex);
    assert_string_equal(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}

static void test_million_a_streamed(void **state)
{
    (void)state;
    /* 1,000,000 x 'a' fed in chunks of 1..97 bytes must equal the NIST digest. */
    char chunk[97];
    memset(chunk, 'a', sizeof chunk);
    struct ny_sha256 s;
    ny_sha256_init(&s);
    size_t left = 1000000, step = 1;
    while (left) {
        size_t n = step < left ? step : left;
        ny_sha256_update(&s, chunk, n);
        left -= n;
        step = step % 97 + 1;
    }
    uint8_t d[32];
    char hex[65];
    ny_sha256_final(&s, d);
    ny_hex_encode(d, 32, hex);
    assert_string_equal(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

static void test_file_digest_and_missing(void **state)
{
    (void)state;
    char path[] = "/tmp/ny_sha_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "abc", 3), 3);
    close(fd);
    char hex[65];
    struct ny_err err;
    ny_err_init(&err);
    assert_int_equal(ny_sha256_file(path, hex, &err), NY_OK);
    assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    unlink(path);
    assert_int_equal(ny_sha256_file(path, hex, &err), NY_E_NOTFOUND);
    assert_non_null(strstr(err.msg, path));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_nist_vectors),
        cmocka_unit_test(test_million_a_streamed),
        cmocka_unit_test(test_file_digest_and_missing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
