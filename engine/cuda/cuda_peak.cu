/* cuda_peak.cu — measurement helpers for `nyxaudit bench`: synchronisation, device memory in use,
 * and the card's copy bandwidth and bf16 GEMM rate, measured with device events. */
#include <stdlib.h>

#include "cuda_int.cuh"
#include "engine_cuda.h"

extern "C" int engine_cuda_sync(struct engine_backend *be, struct ny_err *err)
{
    CU_CHECK(be, cudaSetDevice(be->device), "cudaSetDevice");
    return cuda_stream_wait(be, "synchronize", err);
}

extern "C" int engine_cuda_mem_used(struct engine_backend *be, size_t *used, struct ny_err *err)
{
    size_t fr = 0, tot = 0;
    CU_CHECK(be, cudaSetDevice(be->device), "cudaSetDevice");
    CU_CHECK(be, cudaMemGetInfo(&fr, &tot), "cudaMemGetInfo");
    *used = tot - fr;
    return NY_OK;
}

static int cmp_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return x < y ? -1 : x > y;
}

/* Median of 10 timed runs (after 3 warm-ups) of `what` in ms. */
#define TIME_MEDIAN(be, result_ms, body)                                                          \
    do {                                                                                          \
        float t_[10];                                                                             \
        for (int it_ = 0; it_ < 13; it_++) {                                                      \
            CU_CHECK(be, cudaEventRecord(e0, be->stream), "event");                               \
            body;                                                                                 \
            CU_CHECK(be, cudaEventRecord(e1, be->stream), "event");                               \
            CU_CHECK(be, cudaEventSynchronize(e1), "event sync");                                 \
            if (it_ >= 3)                                                                         \
                CU_CHECK(be, cudaEventElapsedTime(&t_[it_ - 3], e0, e1), "elapsed");              \
        }                                                                                         \
        qsort(t_, 10, sizeof(float), cmp_float);                                                  \
        result_ms = 0.5f * (t_[4] + t_[5]);                                                       \
    } while (0)

static int peaks(struct engine_backend *be, cudaEvent_t e0, cudaEvent_t e1, void *a, void *b,
                 double *copy, double *gemm, struct ny_err *err)
{
    const size_t bytes = (size_t)1 << 30;
    float ms = 0;
    TIME_MEDIAN(be, ms,
                CU_CHECK(be, cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice, be->stream),
                         "copy"));
    *copy = 2.0 * (double)bytes / (ms * 1e-3);
    const int n = 8192;
    struct engine_buf *w = NULL;
    int rc = engine_cuda_weight_random(be, n, n, 7, 1.0f, &w, err);
    if (rc)
        return rc;
    struct engine_buf *x = NULL;
    rc = engine_cuda_weight_random(be, n, n, 8, 1.0f, &x, err);
    if (rc) {
        engine_cuda_ops.buf_free(be, w);
        return rc;
    }
    /* output: fp32 n x n in the copy buffers (256 MiB of the 1 GiB) */
    TIME_MEDIAN(be, ms, {
        int r_ = cuda_gemm_bf16(be, (const __nv_bfloat16 *)x->d, n, n, w, n, (float *)b, 1.0f,
                                0.0f, err);
        if (r_)
            return r_;
    });
    *gemm = 2.0 * n * (double)n * n / (ms * 1e-3);
    engine_cuda_ops.buf_free(be, x);
    engine_cuda_ops.buf_free(be, w);
    return NY_OK;
}

extern "C" int engine_cuda_peaks(struct engine_backend *be, double *copy_bytes_s,
                                 double *gemm_flop_s, struct ny_err *err)
{
    const size_t bytes = (size_t)1 << 30;
    void *a = NULL, *b = NULL;
    cudaEvent_t e0 = NULL, e1 = NULL;
    double cp = 0, gm = 0;
    int rc = NY_OK;
    CU_CHECK(be, cudaSetDevice(be->device), "cudaSetDevice");
    if (cudaMalloc(&a, bytes) != cudaSuccess || cudaMalloc(&b, bytes) != cudaSuccess ||
        cudaEventCreate(&e0) != cudaSuccess || cudaEventCreate(&e1) != cudaSuccess)
        rc = cuda_fail(be, err, __FILE__, __LINE__, "peak measurement set-up", "allocation");
    if (!rc) {
        cudaMemsetAsync(a, 0x3c, bytes, be->stream); /* bf16/fp32 ~1.0 patterns, not zeros */
        rc = peaks(be, e0, e1, a, b, &cp, &gm, err);
    }
    cuda_stream_wait(be, "peaks", NULL);
    if (e0)
        cudaEventDestroy(e0);
    if (e1)
        cudaEventDestroy(e1);
    cudaFree(a);
    cudaFree(b);
    if (!rc) {
        *copy_bytes_s = cp;
        *gemm_flop_s = gm;
    }
    return rc;
}
