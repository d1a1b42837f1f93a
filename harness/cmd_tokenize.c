/* cmd_tokenize.c — `nyxaudit tokenize`. Not built yet: the engine work (issue #5) provides it. */
#include "harness_int.h"

int harness_cmd_tokenize(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "nyxaudit tokenize: not available in this build yet (the engine work, issue #5)\n");
    return HARNESS_EXIT_INVALID;
}
