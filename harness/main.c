/* main.c — the nyxaudit entry point: dispatches subcommands; the only place that calls exit. */
#include <stdlib.h>
#include <string.h>

#include "harness_int.h"

struct harness_cmd {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *help;
};

static const struct harness_cmd cmds[] = {
    {"audit", harness_cmd_audit, "run the release audit (the default command)"},
    {"score", harness_cmd_score, "score prediction files against gold codes"},
    {"codeset", harness_cmd_codeset, "import CMS code sets into SQLite"},
    {"dataset", harness_cmd_dataset, "import records, synthesise a corpus, export prompts"},
    {"tokenize", harness_cmd_tokenize, "tokenize UTF-8 text from stdin"},
    {"generate", harness_cmd_generate, "greedy decoding of JSONL requests"},
    {"bench", harness_cmd_bench, "engine speed on random weights"},
    {"verify", harness_cmd_verify, "recheck a run directory against its manifest"},
    {"merge", harness_cmd_merge, "merge the run stores of a sharded (multi-host) audit"},
};

static void usage(FILE *f)
{
    fprintf(f, "usage: nyxaudit [audit] [--config FILE] [--split NAME] [--n N] [--seed S] "
               "[--out DIR] [--device cpu|cuda] [--tp N] [--store FILE] [--shard I/N] [--quiet]\n"
               "       nyxaudit COMMAND [ARGS...]\n"
               "       nyxaudit --version\n\ncommands:\n");
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
        fprintf(f, "  %-10s %s\n", cmds[i].name, cmds[i].help);
    fprintf(f, "\nexit codes: 0 gates passed, 1 a gate failed, 2 invalid input, 3 incomplete run, "
               "4 internal error\n");
}

int harness_exit_code(int rc)
{
    switch (rc) {
    case NY_OK: return HARNESS_EXIT_OK;
    case NY_E_INVALID:
    case NY_E_FORMAT:
    case NY_E_RANGE:
    case NY_E_NOTFOUND:
    case NY_E_UNSUPPORTED: return HARNESS_EXIT_INVALID;
    case NY_E_INCOMPLETE: return HARNESS_EXIT_INCOMPLETE;
    default: return HARNESS_EXIT_INTERNAL;
    }
}

int harness_fail(const char *cmd, int rc, const struct ny_err *err)
{
    const char *msg = err && err->msg[0] ? err->msg : ny_status_name(rc);
    fprintf(stderr, "nyxaudit %s: %s\n", cmd, msg);
    return harness_exit_code(rc);
}

int main(int argc, char **argv)
{
    if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") ||
                      !strcmp(argv[1], "help"))) {
        usage(stdout);
        return HARNESS_EXIT_OK;
    }
    if (argc >= 2 && !strcmp(argv[1], "--version"))
        exit(harness_cmd_version(argc - 1, argv + 1));
    if (argc >= 2 && argv[1][0] != '-') {
        for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
            if (!strcmp(argv[1], cmds[i].name))
                exit(cmds[i].fn(argc - 1, argv + 1));
        fprintf(stderr, "nyxaudit: unknown command '%s'\n\n", argv[1]);
        usage(stderr);
        exit(HARNESS_EXIT_INVALID);
    }
    /* No command: the audit, with argv[0] standing in for its name. */
    exit(harness_cmd_audit(argc, argv));
}
