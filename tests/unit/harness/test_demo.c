/* test_demo.c (suite slow) — the README's command on the demo checkpoints: `nyxaudit --split
 * heldout --n 500` completes with every gate passing (the demo V17 beats V16, as the real release
 * did), `nyxaudit verify` passes, and running the command again decodes nothing and rewrites a
 * byte-identical results.json. Skips (77) until golden/demo holds the checkpoints. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include <cmocka.h>

#include "harness.h"
#include "ny_test.h"

static char dir[64];

static int sh(const char *args)
{
    return ny_test_run(dir, "", args);
}

static char *slurp(const char *name)
{
    char path[256];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    char *buf = NULL;
    size_t len;
    struct ny_err err;
    return ny_file_read(path, (size_t)1 << 26, &buf, &len, &err) ? NULL : buf;
}

static void test_demo_audit(void **state)
{
    (void)state;
    int rc = sh("--split heldout --n 500 --quiet");
    if (rc != 0) {
        char *e = slurp("err.txt");
        print_error("exit %d: %s\n", rc, e ? e : "");
        ny_free(e);
    }
    assert_int_equal(rc, 0);
    char *first = slurp("nyxaudit-out/results.json");
    assert_non_null(first);
    assert_non_null(strstr(first, "\"verdict\": \"pass\""));
    assert_int_equal(sh("verify nyxaudit-out"), 0);
    assert_int_equal(sh("--split heldout --n 500"), 0);
    char *e = slurp("err.txt");
    assert_non_null(strstr(e, "0 predictions decoded, 1500 from the store"));
    char *second = slurp("nyxaudit-out/results.json");
    assert_string_equal(first, second);
    ny_free(e);
    ny_free(first);
    ny_free(second);
}

int main(void)
{
    if (!ny_dir_exists(NY_SOURCE_DIR "/golden/demo/v16") ||
        !ny_dir_exists(NY_SOURCE_DIR "/golden/demo/v17") ||
        !ny_dir_exists(NY_SOURCE_DIR "/golden/demo/epoch1")) {
        fprintf(stderr, "SKIP: the demo checkpoints are not in golden/demo yet\n");
        return 77;
    }
    if (ny_test_tmpdir_make(dir, sizeof dir, "demo"))
        return 1;
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_demo_audit)};
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    if (ny_test_tmpdir_remove(dir) != 0)
        return 1;
    return rc;
}
