/* engine_info.c — build information and the CUDA device registry seen from the CPU side. */
#include <string.h>

#include <cblas.h>

#include "engine.h"
#if NY_HAVE_CUDA
#include "cuda/engine_cuda.h"
#endif

void engine_build_info_get(struct engine_build_info *out)
{
    memset(out, 0, sizeof *out);
    out->have_cuda = NY_HAVE_CUDA;
    out->have_nccl = NY_HAVE_NCCL;
    snprintf(out->blas, sizeof out->blas, "%s", openblas_get_config());
#if NY_HAVE_CUDA
    engine_cuda_versions(out->cuda_runtime, sizeof out->cuda_runtime, out->cublas,
                         sizeof out->cublas, out->nccl, sizeof out->nccl);
#endif
}

int engine_device_count(int *count, struct ny_err *err)
{
#if NY_HAVE_CUDA
    return engine_cuda_device_count(count, err);
#else
    (void)count;
    return NY_ERR(err, NY_E_UNSUPPORTED, "CUDA backend not built in");
#endif
}

int engine_device_selftest(int dev, char *name_out, size_t name_len, struct ny_err *err)
{
#if NY_HAVE_CUDA
    return engine_cuda_selftest(dev, name_out, name_len, err);
#else
    (void)dev;
    (void)name_out;
    (void)name_len;
    return NY_ERR(err, NY_E_UNSUPPORTED, "CUDA backend not built in");
#endif
}
