/* cmd_verify.c — `nyxaudit verify`. Not built yet: the harness work (issue #9) provides it. */
#include "harness_int.h"

int harness_cmd_verify(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "nyxaudit verify: not available in this build yet (the harness work, issue #9)\n");
    return HARNESS_EXIT_INVALID;
}
