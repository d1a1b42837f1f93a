/* cmd_bench.c — `nyxaudit bench`. Not built yet: the engine (CUDA) work (issue #6) provides it. */
#include "harness_int.h"

int harness_cmd_bench(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "nyxaudit bench: not available in this build yet (the engine (CUDA) work, issue #6)\n");
    return HARNESS_EXIT_INVALID;
}
