/* cmd_score.c — `nyxaudit score`. Not built yet: the metrics work (issue #3) provides it. */
#include "harness_int.h"

int harness_cmd_score(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "nyxaudit score: not available in this build yet (the metrics work, issue #3)\n");
    return HARNESS_EXIT_INVALID;
}
