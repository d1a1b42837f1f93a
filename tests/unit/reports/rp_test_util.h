/* rp_test_util.h — shared helpers of the reports tests: the fixture, a temporary directory,
 * whole-file reads, running poppler tools, and small JSON mutations. Header-only (static). */
#ifndef RP_TEST_UTIL_H
#define RP_TEST_UTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "reports.h"
#include "ny_test.h"

static char tdir[64];

static __attribute__((unused)) int rp_setup(void **state)
{
    (void)state;
    return ny_test_tmpdir_make(tdir, sizeof tdir, "reports");
}

static __attribute__((unused)) int rp_teardown(void **state)
{
    (void)state;
    return ny_test_tmpdir_remove(tdir);
}

/* A fresh copy of golden/reports/results_demo.json (caller json_decref's it). */
static __attribute__((unused)) json_t *fixture(void)
{
    const char *src = getenv("NY_SOURCE_DIR");
    char path[1024];
    snprintf(path, sizeof path, "%s/golden/reports/results_demo.json", src ? src : ".");
    json_t *r = NULL;
    struct ny_err err;
    ny_err_init(&err);
    int rc = ny_json_load_file(path, 1 << 26, (struct json_t **)&r, &err);
    if (rc)
        fail_msg("fixture %s: %s", path, err.msg);
    return r;
}

static __attribute__((unused)) char *tpath(const char *name)
{
    char *p = ny_path_join(tdir, name);
    assert_non_null(p);
    return p;
}

static __attribute__((unused)) char *slurp(const char *path, size_t *len)
{
    char *buf = NULL;
    struct ny_err err;
    ny_err_init(&err);
    if (ny_file_read(path, 1 << 27, &buf, len, &err))
        fail_msg("read %s: %s", path, err.msg);
    return buf;
}

static __attribute__((unused)) int have_tool(const char *name)
{
    char cmd[256];
    snprintf(cmd, sizeof cmd, "command -v %s >/dev/null 2>&1", name);
    return system(cmd) == 0;
}

/* Run a shell command; returns its exit status. */
static __attribute__((unused)) int sh(const char *fmt, ...)
{
    char cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    return system(cmd);
}

/* Object at results.metrics.models.<label>.metrics.<metric>. */
static __attribute__((unused)) json_t *metric_of(json_t *r, const char *label, const char *metric)
{
    json_t *m = json_object_get(json_object_get(json_object_get(r, "metrics"), "models"), label);
    return json_object_get(json_object_get(m, "metrics"), metric);
}

static __attribute__((unused)) int files_equal(const char *a, const char *b)
{
    size_t la, lb;
    char *x = slurp(a, &la), *y = slurp(b, &lb);
    int eq = la == lb && memcmp(x, y, la) == 0;
    ny_free(x);
    ny_free(y);
    return eq;
}

#endif /* RP_TEST_UTIL_H */
