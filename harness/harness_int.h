/* harness_int.h — private to harness/: the subcommand entry points of the nyxaudit CLI and the
 * mapping from status codes to the documented exit codes. */
#ifndef NY_HARNESS_INT_H
#define NY_HARNESS_INT_H

#include "common.h"

/* Exit codes of nyxaudit: a contract, documented in README.md. */
enum {
    HARNESS_EXIT_OK = 0,         /* success; every gate passed */
    HARNESS_EXIT_GATE = 1,       /* the run completed and a release gate failed */
    HARNESS_EXIT_INVALID = 2,    /* invalid input, arguments or configuration */
    HARNESS_EXIT_INCOMPLETE = 3, /* the run did not complete (resume it by running it again) */
    HARNESS_EXIT_INTERNAL = 4,   /* internal error (a bug, a device failure, out of memory) */
};

/* Map a NY_E_* status to an exit code. */
int harness_exit_code(int rc);
/* Print "nyxaudit CMD: message" for err on stderr and return harness_exit_code(rc). */
int harness_fail(const char *cmd, int rc, const struct ny_err *err);

/* Subcommands: each takes argv with argv[0] = the subcommand's name and returns an exit code. */
int harness_cmd_audit(int argc, char **argv);    /* the default: nyxaudit --split heldout --n 500 */
int harness_cmd_score(int argc, char **argv);    /* metrics: score predictions against gold */
int harness_cmd_codeset(int argc, char **argv);  /* metrics: import CMS code sets */
int harness_cmd_dataset(int argc, char **argv);  /* datasets: import, synth, prompts */
int harness_cmd_tokenize(int argc, char **argv); /* engine: text to token ids */
int harness_cmd_generate(int argc, char **argv); /* engine: greedy decoding of requests */
int harness_cmd_bench(int argc, char **argv);    /* engine: speed on random weights */
int harness_cmd_verify(int argc, char **argv);   /* harness: recheck a run directory */
int harness_cmd_merge(int argc, char **argv);    /* harness: merge shard run stores */
int harness_cmd_version(int argc, char **argv);  /* --version */

#endif
