/* engine_cuda.h — the CUDA backend's C interface, private to engine/ (engine_cuda_ prefix).
 * Only files under engine/cuda/ include CUDA, cuBLAS or NCCL headers; this header includes none. */
#ifndef NY_ENGINE_CUDA_H
#define NY_ENGINE_CUDA_H

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Library versions this binary runs against (no device needed). Empty string when unknown. */
void engine_cuda_versions(char *runtime, size_t rlen, char *cublas, size_t blen, char *nccl,
                          size_t nlen);
int engine_cuda_device_count(int *count, struct ny_err *err);
int engine_cuda_selftest(int dev, char *name_out, size_t name_len, struct ny_err *err);

struct engine_backend;
struct engine_buf;
/* A bf16 weight [rows, cols] of the CUDA backend `be` filled on the device with uniform values in
 * [-scale, scale) drawn from (seed, element index): for the benchmark, no file involved. Freed
 * with engine_cuda_ops.buf_free. */
int engine_cuda_weight_random(struct engine_backend *be, size_t rows, size_t cols, uint64_t seed,
                              float scale, struct engine_buf **out, struct ny_err *err);

#ifdef __cplusplus
}
#endif
#endif
