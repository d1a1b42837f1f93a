/* engine_backend.c — the backend registry: maps a device name to its ops table. */
#include <string.h>

#include "engine_backend_int.h"

int engine_backend_find(const char *device, const struct engine_backend_ops **out,
                        struct ny_err *err)
{
    if (!device || !strcmp(device, "cpu")) {
        *out = &engine_cpu_ops;
        return NY_OK;
    }
    if (!strcmp(device, "cuda")) {
#if NY_HAVE_CUDA
        if (&engine_cuda_ops == NULL) /* weak: engine/cuda/ has not defined it yet */
            return NY_ERR(err, NY_E_UNSUPPORTED,
                          "device cuda: the CUDA backend is not yet available");
        *out = &engine_cuda_ops;
        return NY_OK;
#else
        return NY_ERR(err, NY_E_UNSUPPORTED, "device cuda: CUDA backend not built in");
#endif
    }
    return NY_ERR(err, NY_E_INVALID, "unknown device '%s' (expected cpu or cuda)", device);
}
