/* ny_version.c — the program version and the git commit it was built from. */
#include "common.h"
#include "ny_vcs.h"

const char *ny_version(void) { return NY_VERSION; }
const char *ny_git_commit(void) { return NY_GIT_COMMIT; }
