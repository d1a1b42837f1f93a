/* cmd_merge.c — `nyxaudit merge --into STORE SHARD_STORE...`: the predictions of a multi-host run
 * (each host ran the audit with --shard I/N into its own run store) copied into one run store in
 * one transaction; the audit then run over that store finds every prediction and decodes none. */
#include <string.h>

#include "harness.h"
#include "harness_int.h"

int harness_cmd_merge(int argc, char **argv)
{
    struct ny_err err;
    ny_err_init(&err);
    const char *into = NULL;
    int quiet = 0, n = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--into")) {
            if (i + 1 >= argc || !argv[i + 1][0])
                return harness_fail("merge", NY_ERR(&err, NY_E_INVALID, "--into needs a value"),
                                    &err);
            into = argv[++i];
        } else if (!strcmp(argv[i], "--quiet") || !strcmp(argv[i], "-q")) {
            quiet = 1;
        } else if (argv[i][0] == '-') {
            return harness_fail("merge", NY_ERR(&err, NY_E_INVALID, "unexpected argument '%s' "
                                                "(usage: nyxaudit merge --into STORE "
                                                "SHARD_STORE...)", argv[i]), &err);
        } else {
            /* Shard paths are moved to the front of argv in order. */
            argv[n++] = argv[i];
        }
    }
    if (!into || n == 0)
        return harness_fail("merge", NY_ERR(&err, NY_E_INVALID, "usage: nyxaudit merge --into "
                                            "STORE SHARD_STORE..."), &err);
    /* The target's directory is made when missing (like --out's). */
    const char *slash = strrchr(into, '/');
    int rc = NY_OK;
    if (slash && slash != into) {
        char *d = ny_strdup(into);
        if (!d)
            return harness_fail("merge", NY_E_NOMEM, NULL);
        d[slash - into] = '\0';
        rc = ny_mkdir_p(d, &err);
        ny_free(d);
        if (rc)
            return harness_fail("merge", rc == NY_E_NOMEM ? rc : NY_E_INVALID, &err);
    }
    struct store *st = NULL;
    rc = store_open(into, &st, &err);
    if (rc)
        return harness_fail("merge", rc == NY_E_NOMEM ? rc : NY_E_INVALID, &err);
    struct store_merge_stats ms;
    rc = store_merge(st, (const char *const *)argv, (size_t)n, &ms, &err);
    store_close(st);
    if (rc)
        return harness_fail("merge", rc, &err);
    if (!quiet)
        fprintf(stderr, "nyxaudit merge: %d shard store%s into %s: %lld predictions added, %lld "
                "already there, %lld prompts added, %lld runs added\n", n, n == 1 ? "" : "s",
                into, (long long)ms.predictions_added, (long long)ms.predictions_same,
                (long long)ms.prompts_added, (long long)ms.runs_added);
    return HARNESS_EXIT_OK;
}
