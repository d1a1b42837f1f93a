/* cuda_argmax.cu — greedy argmax per row: ties go to the lowest id, NaN never wins (a row of only
 * NaN gives id 0). One block per row; a fixed tree combines the threads' candidates. */
#include "cuda_int.cuh"

#define AM_THREADS 512

__device__ static bool better(float v, int j, float bv, int bj)
{
    if (v != v)
        return false;
    if (bj < 0)
        return true;
    return v > bv || (v == bv && j < bj);
}

__global__ static void k_argmax(const float *logits, int vocab, int32_t *ids)
{
    __shared__ float sv[AM_THREADS];
    __shared__ int sj[AM_THREADS];
    const float *l = logits + (size_t)blockIdx.x * vocab;
    float bv = 0.0f;
    int bj = -1;
    for (int j = threadIdx.x; j < vocab; j += AM_THREADS)
        if (better(l[j], j, bv, bj)) {
            bv = l[j];
            bj = j;
        }
    sv[threadIdx.x] = bv;
    sj[threadIdx.x] = bj;
    __syncthreads();
    for (int s = AM_THREADS / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) {
            int oj = sj[threadIdx.x + s];
            if (oj >= 0 && better(sv[threadIdx.x + s], oj, sv[threadIdx.x], sj[threadIdx.x])) {
                sv[threadIdx.x] = sv[threadIdx.x + s];
                sj[threadIdx.x] = oj;
            }
        }
        __syncthreads();
    }
    if (threadIdx.x == 0)
        ids[blockIdx.x] = sj[0] < 0 ? 0 : sj[0];
}

int cuda_op_argmax(struct engine_backend *be, const struct engine_buf *logits, int n, int vocab,
                   int32_t *ids, struct ny_err *err)
{
    if (n < 0 || vocab <= 0 || (size_t)n * vocab > logits->n)
        return NY_ERR(err, NY_E_RANGE, "cuda argmax: %d rows x %d outside the buffer", n, vocab);
    if (n == 0)
        return NY_OK;
    if (be->ids_cap < (size_t)n) {
        int rc = cuda_upload_ints(be, (int **)&be->ids_d, &be->ids_cap, NULL, (size_t)n,
                                  err); /* grow only */
        if (rc)
            return rc;
    }
    k_argmax<<<n, AM_THREADS, 0, be->stream>>>((const float *)logits->d, vocab, be->ids_d);
    CU_LAUNCHED(be, "argmax kernel");
    CU_CHECK(be, cudaMemcpyAsync(ids, be->ids_d, (size_t)n * sizeof(int32_t),
                                 cudaMemcpyDeviceToHost, be->stream), "argmax read-back");
    CU_CHECK(be, cudaStreamSynchronize(be->stream), "argmax sync");
    return NY_OK;
}
