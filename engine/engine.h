/* engine.h — the native Llama-3 decoder (prefix engine_): build information and devices.
 * This header is the engine's table of contents; the engine knows nothing of coding or SQLite. */
#ifndef NY_ENGINE_H
#define NY_ENGINE_H

#include "common.h"

/* ---- build and device information ----------------------------------------------------------- */
struct engine_build_info {
    int have_cuda;         /* CUDA backend compiled in (NY_HAVE_CUDA) */
    int have_nccl;         /* NCCL tensor parallel compiled in (NY_HAVE_NCCL) */
    char cuda_runtime[32]; /* "13.0" or "" when not built in */
    char cublas[32];       /* cuBLAS library version, "" when not built in */
    char nccl[32];         /* NCCL library version, "" when not built in */
    char blas[160];        /* CPU BLAS (OpenBLAS config string) */
};

/* Fill *out with what this build was compiled and linked against. Never touches a GPU. */
void engine_build_info_get(struct engine_build_info *out);

/* Number of CUDA devices visible. Returns NY_E_UNSUPPORTED when the CUDA backend is not built in
 * ("CUDA backend not built in"), NY_E_DEVICE when the driver cannot be queried; 0 devices is
 * success with *count = 0. */
int engine_device_count(int *count, struct ny_err *err);

/* Runs a small kernel and a cuBLAS GEMM on device `dev` and checks the results against the CPU.
 * For the gpu test suite and `nyxaudit --version --probe`. */
int engine_device_selftest(int dev, char *name_out, size_t name_len, struct ny_err *err);

/* ---- tokenizer and chat template (engine/tokenizer*.c) --------------------------------------- */

/* ---- model files, adapters, forward pass and greedy generation (engine/model*.c, cpu/) -------- */

#endif /* NY_ENGINE_H */
