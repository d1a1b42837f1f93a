/* cmd_dataset.c — `nyxaudit dataset`. Not built yet: the datasets work (issue #4) provides it. */
#include "harness_int.h"

int harness_cmd_dataset(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "nyxaudit dataset: not available in this build yet (the datasets work, issue #4)\n");
    return HARNESS_EXIT_INVALID;
}
