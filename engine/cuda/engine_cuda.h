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
 * with engine_cuda_ops.buf_free. The special case row0 = col0 = 0, full_cols = cols of
 * engine_cuda_ops.weight_random. */
int engine_cuda_weight_random(struct engine_backend *be, size_t rows, size_t cols, uint64_t seed,
                              float scale, struct engine_buf **out, struct ny_err *err);
/* For tests only: the rows * cols values of an uploaded or random weight w, in fp32 (bf16 widened
 * exactly), into dst (host). NY_E_INVALID for an activation buffer. */
int engine_cuda_weight_read(struct engine_backend *be, const struct engine_buf *w, float *dst,
                            struct ny_err *err);

/* For tests: the floats up to which the tensor-parallel group g sums peer to peer (0: every
 * sum over NCCL). Built with NCCL only. */
struct engine_tp;
size_t engine_cuda_tp_p2p_floats(const struct engine_tp *g);
/* For tests: the tp sums of be that overlapped its products so far (tp_sum_announce). */
unsigned engine_cuda_tp_overlapped(const struct engine_backend *be);
/* For tests: the most rows of a decode step whose fused sums go by LL words in group g (0:
 * none), and the tp sums of be that went by LL words so far (cuda_tp_p2p.cu). */
int engine_cuda_tp_ll_rows(const struct engine_tp *g);
unsigned engine_cuda_tp_ll_sums(const struct engine_backend *be);
/* For tests: whether group g's decode-step fused sums end in a cluster's norm (NY_TP_CLUSTER),
 * and the tp sums of be that did so far (cuda_tp_p2p.cu). */
int engine_cuda_tp_cluster(const struct engine_tp *g);
unsigned engine_cuda_tp_cluster_sums(const struct engine_backend *be);

/* Wait for the backend's queued work. */
int engine_cuda_sync(struct engine_backend *be, struct ny_err *err);
/* Bytes of device memory in use on the backend's device now (total - free, all processes). */
int engine_cuda_mem_used(struct engine_backend *be, size_t *used, struct ny_err *err);
/* The card's ceilings, measured: device-to-device copy bandwidth (bytes read + written per
 * second, a 1 GiB copy, median of 10) and the bf16 GEMM rate of the prefill path (cuBLASLt,
 * 8192 x 8192 x 8192, median of 10), on random data. */
int engine_cuda_peaks(struct engine_backend *be, double *copy_bytes_s, double *gemm_flop_s,
                      struct ny_err *err);

#ifdef __cplusplus
}
#endif
#endif
