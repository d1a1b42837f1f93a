/* cmd_codeset.c — `nyxaudit codeset`. Not built yet: the metrics work (issue #3) provides it. */
#include "harness_int.h"

int harness_cmd_codeset(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "nyxaudit codeset: not available in this build yet (the metrics work, issue #3)\n");
    return HARNESS_EXIT_INVALID;
}
