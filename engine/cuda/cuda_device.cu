/* cuda_device.cu — device discovery, library versions and a kernel + cuBLAS self-test. */
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine_cuda.h" /* first: brings ny_config.h (NY_HAVE_NCCL) */
#if NY_HAVE_NCCL
#include <nccl.h>
#endif

/* The backend's ops table (cuda_backend.cu). The registry refers to it weakly, which does not pull
 * an object out of the static library; this strong reference does, since every binary that asks
 * for CUDA versions or devices links this file. */
struct engine_backend_ops;
extern "C" const struct engine_backend_ops engine_cuda_ops;
extern "C" const void *const engine_cuda_ops_anchor = &engine_cuda_ops;

#define CUDA_TRY(call, what)                                                                    \
    do {                                                                                        \
        cudaError_t e_ = (call);                                                                \
        if (e_ != cudaSuccess) {                                                                \
            rc = NY_ERR(err, NY_E_DEVICE, "%s: %s", what, cudaGetErrorString(e_));              \
            goto done;                                                                          \
        }                                                                                       \
    } while (0)

extern "C" void engine_cuda_versions(char *runtime, size_t rlen, char *cublas, size_t blen,
                                     char *nccl, size_t nlen)
{
    int v = 0;
    runtime[0] = cublas[0] = nccl[0] = '\0';
    if (cudaRuntimeGetVersion(&v) == cudaSuccess)
        snprintf(runtime, rlen, "%d.%d", v / 1000, (v % 1000) / 10);
    int ma = 0, mi = 0, pa = 0;
    if (cublasGetProperty(MAJOR_VERSION, &ma) == CUBLAS_STATUS_SUCCESS &&
        cublasGetProperty(MINOR_VERSION, &mi) == CUBLAS_STATUS_SUCCESS &&
        cublasGetProperty(PATCH_LEVEL, &pa) == CUBLAS_STATUS_SUCCESS)
        snprintf(cublas, blen, "%d.%d.%d", ma, mi, pa);
#if NY_HAVE_NCCL
    int nv = 0;
    if (ncclGetVersion(&nv) == ncclSuccess)
        snprintf(nccl, nlen, "%d.%d.%d", nv / 10000, (nv / 100) % 100, nv % 100);
#else
    (void)nlen;
#endif
}

extern "C" int engine_cuda_device_count(int *count, struct ny_err *err)
{
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e == cudaErrorNoDevice || e == cudaErrorInsufficientDriver) {
        *count = 0;
        return NY_OK;
    }
    if (e != cudaSuccess)
        return NY_ERR(err, NY_E_DEVICE, "cudaGetDeviceCount: %s", cudaGetErrorString(e));
    *count = n;
    return NY_OK;
}

/* y[i] = a * x[i] + y[i] */
__global__ static void selftest_axpy(int n, float a, const float *x, float *y)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n)
        y[i] = a * x[i] + y[i];
}

extern "C" int engine_cuda_selftest(int dev, char *name_out, size_t name_len, struct ny_err *err)
{
    enum { N = 1000, M = 8 };
    int rc = NY_OK;
    float hx[N], hy[N], out[N];
    float ha[M * M], hb[M * M], hc[M * M];
    float *dx = NULL, *dy = NULL, *da = NULL, *db = NULL, *dc = NULL;
    cublasHandle_t h = NULL;
    cudaDeviceProp prop;
    const float one = 1.0f, zero = 0.0f;

    CUDA_TRY(cudaSetDevice(dev), "cudaSetDevice");
    CUDA_TRY(cudaGetDeviceProperties(&prop, dev), "cudaGetDeviceProperties");
    if (name_out && name_len)
        snprintf(name_out, name_len, "%s (sm_%d%d, %zu MiB)", prop.name, prop.major, prop.minor,
                 (size_t)(prop.totalGlobalMem >> 20));
    for (int i = 0; i < N; i++) {
        hx[i] = (float)i;
        hy[i] = 1.0f;
    }
    for (int i = 0; i < M * M; i++) {
        ha[i] = (float)(i % 7) - 3.0f;
        hb[i] = (float)(i % 5) - 2.0f;
    }
    CUDA_TRY(cudaMalloc(&dx, sizeof hx), "cudaMalloc");
    CUDA_TRY(cudaMalloc(&dy, sizeof hy), "cudaMalloc");
    CUDA_TRY(cudaMalloc(&da, sizeof ha), "cudaMalloc");
    CUDA_TRY(cudaMalloc(&db, sizeof hb), "cudaMalloc");
    CUDA_TRY(cudaMalloc(&dc, sizeof hc), "cudaMalloc");
    CUDA_TRY(cudaMemcpy(dx, hx, sizeof hx, cudaMemcpyHostToDevice), "cudaMemcpy");
    CUDA_TRY(cudaMemcpy(dy, hy, sizeof hy, cudaMemcpyHostToDevice), "cudaMemcpy");
    CUDA_TRY(cudaMemcpy(da, ha, sizeof ha, cudaMemcpyHostToDevice), "cudaMemcpy");
    CUDA_TRY(cudaMemcpy(db, hb, sizeof hb, cudaMemcpyHostToDevice), "cudaMemcpy");
    selftest_axpy<<<(N + 255) / 256, 256>>>(N, 2.0f, dx, dy);
    CUDA_TRY(cudaGetLastError(), "axpy launch");
    CUDA_TRY(cudaMemcpy(out, dy, sizeof out, cudaMemcpyDeviceToHost), "cudaMemcpy");
    for (int i = 0; i < N; i++)
        if (out[i] != 2.0f * (float)i + 1.0f) {
            rc = NY_ERR(err, NY_E_DEVICE, "self-test kernel: y[%d] = %g, expected %g", i, out[i],
                        2.0f * (float)i + 1.0f);
            goto done;
        }
    if (cublasCreate(&h) != CUBLAS_STATUS_SUCCESS) {
        rc = NY_ERR(err, NY_E_DEVICE, "cublasCreate failed");
        goto done;
    }
    /* Column-major C = A * B; small integers so the product is exact in fp32. */
    if (cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, M, M, M, &one, da, M, db, M, &zero, dc, M) !=
        CUBLAS_STATUS_SUCCESS) {
        rc = NY_ERR(err, NY_E_DEVICE, "cublasSgemm failed");
        goto done;
    }
    CUDA_TRY(cudaMemcpy(hc, dc, sizeof hc, cudaMemcpyDeviceToHost), "cudaMemcpy");
    for (int i = 0; i < M; i++)
        for (int j = 0; j < M; j++) {
            float s = 0.0f;
            for (int k = 0; k < M; k++)
                s += ha[k * M + i] * hb[j * M + k];
            if (hc[j * M + i] != s) {
                rc = NY_ERR(err, NY_E_DEVICE, "self-test GEMM: C[%d,%d] = %g, expected %g", i, j,
                            hc[j * M + i], s);
                goto done;
            }
        }
done:
    if (h)
        cublasDestroy(h);
    cudaFree(dx);
    cudaFree(dy);
    cudaFree(da);
    cudaFree(db);
    cudaFree(dc);
    return rc;
}
