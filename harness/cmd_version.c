/* cmd_version.c — `nyxaudit --version [--probe]`: version, commit, build options and the library
 * versions the binary was built against; --probe also lists the CUDA devices and self-tests
 * them. */
#include <hpdf.h>
#include <jansson.h>
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <sqlite3.h>
#include <string.h>

#include "engine.h"
#include "harness_int.h"

int harness_cmd_version(int argc, char **argv)
{
    int probe = argc >= 2 && !strcmp(argv[1], "--probe");
    struct engine_build_info bi;
    engine_build_info_get(&bi);
    printf("nyxaudit %s (commit %s, %s build)\n", ny_version(), ny_git_commit(), NY_BUILD_TYPE);
    printf("  backends: cpu%s%s\n", bi.have_cuda ? ", cuda" : "",
           bi.have_nccl ? ", cuda tensor-parallel (nccl)" : "");
    printf("  CUDA: %s\n", bi.have_cuda ? "on" : "off (not built in)");
    printf("  NCCL: %s\n", bi.have_nccl ? "on" : "off (not built in)");
    printf("  sqlite %s (built against %s)\n", sqlite3_libversion(), SQLITE_VERSION);
    printf("  libharu %s\n", HPDF_VERSION_TEXT);
    printf("  jansson %s\n", JANSSON_VERSION);
    printf("  pcre2 %d.%d\n", PCRE2_MAJOR, PCRE2_MINOR);
    printf("  %s\n", bi.blas);
    if (bi.have_cuda) {
        printf("  CUDA runtime %s (built against %s)\n",
               bi.cuda_runtime[0] ? bi.cuda_runtime : "unavailable", NY_CUDA_BUILD_VERSION);
        printf("  cuBLAS %s\n", bi.cublas[0] ? bi.cublas : "unavailable");
    }
    if (bi.have_nccl)
        printf("  NCCL %s\n", bi.nccl[0] ? bi.nccl : "unavailable");
    if (!probe)
        return HARNESS_EXIT_OK;
    struct ny_err err;
    ny_err_init(&err);
    int n = 0;
    int rc = engine_device_count(&n, &err);
    if (rc)
        return harness_fail("--version --probe", rc, &err);
    printf("  CUDA devices: %d\n", n);
    for (int d = 0; d < n; d++) {
        char name[160];
        rc = engine_device_selftest(d, name, sizeof name, &err);
        if (rc)
            return harness_fail("--version --probe", rc, &err);
        printf("    %d: %s: self-test passed\n", d, name);
    }
    return HARNESS_EXIT_OK;
}
