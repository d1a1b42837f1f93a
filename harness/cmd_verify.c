/* cmd_verify.c — `nyxaudit verify DIR [--store FILE]`: recheck a run directory (harness/verify.c).
 * Exit 0 when every check passes, 1 when one fails, 2 when DIR is not a run directory. */
#include <string.h>

#include "harness.h"
#include "harness_int.h"

int harness_cmd_verify(int argc, char **argv)
{
    const char *dir = NULL, *store = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--store") && i + 1 < argc) {
            store = argv[++i];
        } else if (argv[i][0] != '-' && !dir) {
            dir = argv[i];
        } else {
            fprintf(stderr, "usage: nyxaudit verify DIR [--store FILE]\n");
            return HARNESS_EXIT_INVALID;
        }
    }
    if (!dir) {
        fprintf(stderr, "usage: nyxaudit verify DIR [--store FILE]\n");
        return HARNESS_EXIT_INVALID;
    }
    struct ny_err err;
    ny_err_init(&err);
    int failures = 0;
    int rc = harness_verify_dir(dir, store, stdout, &failures, &err);
    if (rc)
        return harness_fail("verify", rc, &err);
    if (failures) {
        fprintf(stderr, "nyxaudit verify: %s: %d check%s failed\n", dir, failures,
                failures == 1 ? "" : "s");
        return HARNESS_EXIT_GATE;
    }
    printf("verified: %s\n", dir);
    return HARNESS_EXIT_OK;
}
