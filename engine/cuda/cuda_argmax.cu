/* cuda_argmax.cu — greedy argmax per row: ties go to the lowest id, NaN never wins (a row of only
 * NaN gives id 0). One block per row; a fixed tree combines the threads' candidates. The same
 * kernel gives the (value, global id) candidates of a vocabulary shard for tp_argmax. */
#include "cuda_int.cuh"

#define AM_THREADS 512

/* Row blockIdx.x of logits [*, vocab]: the best (value, id_off + j). ids (may be NULL) gets the
 * id (0 when the row has no candidate), pairs (may be NULL) the candidate itself. */
__global__ static void k_argmax(const float *logits, int vocab, int id_off, int32_t *ids,
                                struct cuda_am_pair *pairs)
{
    __shared__ float sv[AM_THREADS];
    __shared__ int sj[AM_THREADS];
    const float *l = logits + (size_t)blockIdx.x * vocab;
    float bv = 0.0f;
    int bj = -1;
    for (int j = threadIdx.x; j < vocab; j += AM_THREADS)
        if (cuda_am_better(l[j], id_off + j, bv, bj)) {
            bv = l[j];
            bj = id_off + j;
        }
    sv[threadIdx.x] = bv;
    sj[threadIdx.x] = bj;
    __syncthreads();
    for (int s = AM_THREADS / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) {
            int oj = sj[threadIdx.x + s];
            if (cuda_am_better(sv[threadIdx.x + s], oj, sv[threadIdx.x], sj[threadIdx.x])) {
                sv[threadIdx.x] = sv[threadIdx.x + s];
                sj[threadIdx.x] = oj;
            }
        }
        __syncthreads();
    }
    if (threadIdx.x == 0) {
        if (ids)
            ids[blockIdx.x] = sj[0] < 0 ? 0 : sj[0];
        if (pairs) {
            pairs[blockIdx.x].v = sv[0];
            pairs[blockIdx.x].j = sj[0];
        }
    }
}

int cuda_argmax_pairs(struct engine_backend *be, const float *logits, int n, int vocab,
                      int id_off, struct cuda_am_pair *pairs_d, struct ny_err *err)
{
    if (n <= 0)
        return NY_OK;
    k_argmax<<<n, AM_THREADS, 0, be->stream>>>(logits, vocab, id_off, NULL, pairs_d);
    CU_LAUNCHED(be, "argmax kernel");
    return NY_OK;
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
    k_argmax<<<n, AM_THREADS, 0, be->stream>>>((const float *)logits->d, vocab, 0, be->ids_d,
                                               NULL);
    CU_LAUNCHED(be, "argmax kernel");
    return cuda_read_host(be, ids, be->ids_d, (size_t)n * sizeof(int32_t), "argmax read-back",
                          err);
}
