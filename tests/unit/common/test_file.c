/* test_file.c — whole-file reads with a size cap, atomic writes, mkdir -p, mmap. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "common.h"
#include "ny_test.h"

static char dir[64];

static int setup(void **state)
{
    (void)state;
    return ny_test_tmpdir_make(dir, sizeof dir, "file");
}

static int teardown(void **state)
{
    (void)state;
    return ny_test_tmpdir_remove(dir);
}

static void test_write_read_roundtrip(void **state)
{
    (void)state;
    char *p = ny_path_join(dir, "a/b/c");
    struct ny_err err;
    ny_err_init(&err);
    assert_int_equal(ny_mkdir_p(p, &err), NY_OK);
    assert_true(ny_dir_exists(p));
    char *f = ny_path_join(p, "out.txt");
    assert_int_equal(ny_file_write_atomic(f, "hello", 5, &err), NY_OK);
    char *buf;
    size_t n;
    assert_int_equal(ny_file_read(f, 100, &buf, &n, &err), NY_OK);
    assert_int_equal(n, 5);
    assert_string_equal(buf, "hello");
    ny_free(buf);
    struct ny_mmap m;
    assert_int_equal(ny_mmap_open(&m, f, &err), NY_OK);
    assert_int_equal(m.size, 5);
    assert_memory_equal(m.data, "hello", 5);
    ny_mmap_close(&m);
    ny_free(f);
    ny_free(p);
}

static void test_size_cap_and_missing(void **state)
{
    (void)state;
    char *f = ny_path_join(dir, "big.txt");
    struct ny_err err;
    ny_err_init(&err);
    assert_int_equal(ny_file_write_atomic(f, "0123456789", 10, &err), NY_OK);
    char *buf = NULL;
    assert_int_equal(ny_file_read(f, 9, &buf, NULL, &err), NY_E_RANGE);
    assert_null(buf);
    assert_non_null(strstr(err.msg, f));
    char *g = ny_path_join(dir, "missing.txt");
    assert_int_equal(ny_file_read(g, 9, &buf, NULL, &err), NY_E_NOTFOUND);
    assert_non_null(strstr(err.msg, "missing.txt"));
    struct ny_mmap m;
    assert_int_equal(ny_mmap_open(&m, g, &err), NY_E_NOTFOUND);
    ny_free(g);
    ny_free(f);
}

static void test_atomic_write_failure_leaves_nothing(void **state)
{
    (void)state;
    struct ny_err err;
    ny_err_init(&err);
    /* A directory that does not exist: the write fails and no file appears. */
    char *f = ny_path_join(dir, "nodir/out.txt");
    assert_int_equal(ny_file_write_atomic(f, "x", 1, &err), NY_E_IO);
    assert_false(ny_file_exists(f));
    ny_free(f);
}

static void test_stream_read_and_cap(void **state)
{
    (void)state;
    char data[] = "line one\nline two\n";
    FILE *f = fmemopen(data, strlen(data), "r");
    assert_non_null(f);
    char *out = NULL;
    size_t n = 0;
    struct ny_err err;
    ny_err_init(&err);
    assert_int_equal(ny_stream_read(f, "stdin", 100, &out, &n, &err), NY_OK);
    assert_int_equal(n, strlen(data));
    assert_string_equal(out, data);
    ny_free(out);
    fclose(f);
    f = fmemopen(data, strlen(data), "r");
    out = NULL;
    assert_int_equal(ny_stream_read(f, "stdin", 5, &out, &n, &err), NY_E_RANGE);
    assert_null(out);
    assert_non_null(strstr(err.msg, "stdin: more than 5 bytes"));
    fclose(f);
    f = fmemopen(data, 0, "r"); /* empty stream gives "" */
    if (f) {
        assert_int_equal(ny_stream_read(f, "stdin", 5, &out, &n, &err), NY_OK);
        assert_string_equal(out, "");
        assert_int_equal(n, 0);
        ny_free(out);
        fclose(f);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_write_read_roundtrip),
        cmocka_unit_test(test_size_cap_and_missing),
        cmocka_unit_test(test_atomic_write_failure_leaves_nothing),
        cmocka_unit_test(test_stream_read_and_cap),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
