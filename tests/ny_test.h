/* ny_test.h — helpers shared by the CMocka tests (prefix ny_test_): a temporary directory made and
 * removed, whole-file reads and small writes inside it, and running $NYXAUDIT_BIN there.
 * Header-only: every function is `static inline`, so a test that uses none of them still builds
 * under -Wall -Wextra -Werror. Include it after the test's own headers; it needs common.h. */
#ifndef NY_TEST_H
#define NY_TEST_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <ftw.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <cmocka.h>

#include "common.h"

/* Make a fresh directory /tmp/ny_<tag>_XXXXXX and write its path into buf (cap bytes).
 * Returns 0 on success, -1 if the name does not fit or mkdtemp fails (buf then unspecified). */
static inline int ny_test_tmpdir_make(char *buf, size_t cap, const char *tag)
{
    int n = snprintf(buf, cap, "/tmp/ny_%s_XXXXXX", tag);
    if (n < 0 || (size_t)n >= cap)
        return -1;
    return mkdtemp(buf) ? 0 : -1;
}

/* nftw callback of ny_test_tmpdir_remove: called children first (FTW_DEPTH). */
static inline int ny_test_rm_entry(const char *path, const struct stat *sb, int type,
                                   struct FTW *ftw)
{
    (void)sb;
    (void)ftw;
    return (type == FTW_DP || type == FTW_D) ? rmdir(path) : unlink(path);
}

/* Remove dir and everything under it (like `rm -rf`, without a shell; symlinks are removed, not
 * followed). Returns 0 on success or if dir does not exist, -1 otherwise. */
static inline int ny_test_tmpdir_remove(const char *dir)
{
    struct stat sb;
    if (lstat(dir, &sb) != 0)
        return 0;
    return nftw(dir, ny_test_rm_entry, 16, FTW_DEPTH | FTW_PHYS) == 0 ? 0 : -1;
}

/* Whole file dir/name (up to 16 MiB) as a NUL-terminated heap string the caller frees with
 * ny_free; NULL if it cannot be read. */
static inline char *ny_test_slurp(const char *dir, const char *name)
{
    char *p = ny_path_join(dir, name), *buf = NULL;
    size_t len;
    struct ny_err err;
    int rc = p ? ny_file_read(p, 1 << 24, &buf, &len, &err) : NY_E_NOMEM;
    ny_free(p);
    return rc ? NULL : buf;
}

/* Write dir/name with text (atomically, making its directory); a failure fails the test. */
static inline void ny_test_put(const char *dir, const char *name, const char *text)
{
    char *p = ny_path_join(dir, name);
    assert_non_null(p);
    struct ny_err err;
    char *slash = strrchr(p, '/');
    *slash = '\0';
    assert_int_equal(ny_mkdir_p(p, &err), NY_OK);
    *slash = '/';
    assert_int_equal(ny_file_write_atomic(p, text, strlen(text), &err), NY_OK);
    ny_free(p);
}

/* Run `cd dir && env ENV '$NYXAUDIT_BIN' ARGS >out.txt 2>err.txt` through the shell (env may be
 * ""; args are shell words as written). Returns the exit status; a command killed by a signal
 * fails the test. */
static inline int ny_test_run(const char *dir, const char *env, const char *args)
{
    const char *bin = getenv("NYXAUDIT_BIN");
    assert_non_null(bin);
    char cmd[4096];
    int n = snprintf(cmd, sizeof cmd, "cd '%s' && env %s '%s' %s >out.txt 2>err.txt", dir, env,
                     bin, args);
    assert_true(n > 0 && (size_t)n < sizeof cmd);
    int st = system(cmd);
    assert_true(WIFEXITED(st));
    return WEXITSTATUS(st);
}

#endif /* NY_TEST_H */
