/* test_tokenizer_cli.c — `nyxaudit tokenize`: ids on one line, --special, and exit code 2 with
 * the byte offset for invalid UTF-8 on stdin or a bad tokenizer file. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include <cmocka.h>

#include "engine.h"

/* Runs nyxaudit tokenize on `input` (len bytes); returns the exit code, stdout+stderr in out. */
static int run(const char *tok, const char *flags, const char *input, size_t len, char *out,
               size_t cap)
{
    char in_path[] = "/tmp/ny_tokcli_XXXXXX";
    int fd = mkstemp(in_path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, input, len), (ssize_t)len);
    close(fd);
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "\"%s\" tokenize --tokenizer \"%s\" %s < %s 2>&1",
             getenv("NYXAUDIT_BIN"), tok, flags, in_path);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t n = fread(out, 1, cap - 1, p);
    out[n] = 0;
    int st = pclose(p);
    unlink(in_path);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static char *small(void)
{
    const char *src = getenv("NY_SOURCE_DIR");
    return ny_path_join(src ? src : ".", "golden/tokenizer/small/tokenizer.json");
}

static void test_ids(void **state)
{
    (void)state;
    char *p = small(), out[4096];
    struct engine_tokenizer *t = NULL;
    assert_int_equal(engine_tokenizer_open(p, &t, NULL), 0);
    int32_t *ids = NULL;
    size_t n = 0;
    const char *text = "CT head 70450\n";
    assert_int_equal(engine_tokenizer_encode(t, text, strlen(text), 0, &ids, &n, NULL), 0);
    char want[1024] = "";
    for (size_t i = 0; i < n; i++)
        snprintf(want + strlen(want), sizeof want - strlen(want), i ? " %d" : "%d", ids[i]);
    strcat(want, "\n");
    assert_int_equal(run(p, "", text, strlen(text), out, sizeof out), 0);
    assert_string_equal(out, want);
    char with_bos[1100];
    snprintf(with_bos, sizeof with_bos, "%d %s", engine_tokenizer_bos_id(t), want);
    assert_int_equal(run(p, "--special", text, strlen(text), out, sizeof out), 0);
    assert_string_equal(out, with_bos);
    assert_int_equal(run(p, "", "", 0, out, sizeof out), 0);
    assert_string_equal(out, "\n");
    ny_free(ids);
    engine_tokenizer_close(t);
    ny_free(p);
}

static void test_errors(void **state)
{
    (void)state;
    char *p = small(), out[4096];
    assert_int_equal(run(p, "", "abcd\xe2\x82", 6, out, sizeof out), 2);
    assert_non_null(strstr(out, "byte offset 4"));
    assert_int_equal(run("/nonexistent.json", "", "x", 1, out, sizeof out), 2);
    assert_int_equal(run(p, "--bogus", "x", 1, out, sizeof out), 2);
    ny_free(p);
}

int main(void)
{
    if (!getenv("NYXAUDIT_BIN"))
        return 77;
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_ids), cmocka_unit_test(test_errors)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
