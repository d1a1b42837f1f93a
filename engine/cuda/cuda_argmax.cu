/* cuda_argmax.cu — greedy argmax per row: ties go to the lowest id, NaN never wins (a row of only
 * NaN gives id 0). A first pass takes the best of each chunk of AM_CHUNK logits of a row (a block
 * per chunk, so a row's 128k logits are read by many SMs at once), a second the best of a row's
 * chunks; fixed trees inside each. The same passes give the (value, global id) candidates of a
 * vocabulary shard for tp_argmax. */
#include "cuda_int.cuh"

#define AM_THREADS 256
#define AM_CHUNK 4096 /* logits a block of the first pass scans */

/* The best of the AM_THREADS candidates (sv, sj) in shared memory, by a fixed tree (the rule is
 * an exact selection, so the result is the row's best whatever the order). Returns in [0]. */
__device__ static void am_tree(float *sv, int *sj)
{
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
}

/* First pass: chunk blockIdx.x of row blockIdx.y of logits [*, vocab] -> its best (value,
 * id_off + j) in part[row · gridDim.x + chunk] (j = -1: no candidate, e.g. all NaN). */
__global__ static void k_argmax_chunk(const float *logits, int vocab, int id_off,
                                      struct cuda_am_pair *part)
{
    pdl_trigger();
    pdl_wait();
    __shared__ float sv[AM_THREADS];
    __shared__ int sj[AM_THREADS];
    const float *l = logits + (size_t)blockIdx.y * vocab;
    int j0 = blockIdx.x * AM_CHUNK, j1 = min(vocab, j0 + AM_CHUNK);
    float bv = 0.0f;
    int bj = -1;
    for (int j = j0 + threadIdx.x; j < j1; j += AM_THREADS) {
        float v = l[j];
        if (cuda_am_better(v, id_off + j, bv, bj)) {
            bv = v;
            bj = id_off + j;
        }
    }
    sv[threadIdx.x] = bv;
    sj[threadIdx.x] = bj;
    am_tree(sv, sj);
    if (threadIdx.x == 0) {
        part[(size_t)blockIdx.y * gridDim.x + blockIdx.x].v = sv[0];
        part[(size_t)blockIdx.y * gridDim.x + blockIdx.x].j = sj[0];
    }
}

/* Second pass: row blockIdx.x's best of its n_chunks candidates. ids (may be NULL) gets the id
 * (0 when the row has no candidate), pairs (may be NULL) the candidate itself. */
__global__ static void k_argmax_final(const struct cuda_am_pair *part, int n_chunks, int32_t *ids,
                                      struct cuda_am_pair *pairs)
{
    pdl_trigger();
    pdl_wait();
    __shared__ float sv[AM_THREADS];
    __shared__ int sj[AM_THREADS];
    const struct cuda_am_pair *p = part + (size_t)blockIdx.x * n_chunks;
    float bv = 0.0f;
    int bj = -1;
    for (int c = threadIdx.x; c < n_chunks; c += AM_THREADS)
        if (p[c].j >= 0 && cuda_am_better(p[c].v, p[c].j, bv, bj)) {
            bv = p[c].v;
            bj = p[c].j;
        }
    sv[threadIdx.x] = bv;
    sj[threadIdx.x] = bj;
    am_tree(sv, sj);
    if (threadIdx.x == 0) {
        if (ids)
            ids[blockIdx.x] = sj[0] < 0 ? 0 : sj[0];
        if (pairs) {
            pairs[blockIdx.x].v = sv[0];
            pairs[blockIdx.x].j = sj[0];
        }
    }
}

/* Both passes over n rows; the chunk candidates live in scratch area CUDA_SCRATCH_ARGMAX. */
static int argmax_launch(struct engine_backend *be, const float *logits, int n, int vocab,
                         int id_off, int32_t *ids_d, struct cuda_am_pair *pairs_d,
                         struct ny_err *err)
{
    int chunks = (vocab + AM_CHUNK - 1) / AM_CHUNK;
    void *part;
    int rc = cuda_scratch(be, CUDA_SCRATCH_ARGMAX,
                          (size_t)n * chunks * sizeof(struct cuda_am_pair), &part, err);
    if (rc)
        return rc;
    CU_LAUNCH(be, "argmax kernel", k_argmax_chunk, dim3((unsigned)chunks, (unsigned)n),
              dim3(AM_THREADS), 0, logits, vocab, id_off, (struct cuda_am_pair *)part);
    CU_LAUNCH(be, "argmax combine kernel", k_argmax_final, dim3((unsigned)n), dim3(AM_THREADS), 0,
              (const struct cuda_am_pair *)part, chunks, ids_d, pairs_d);
    return NY_OK;
}

int cuda_argmax_pairs(struct engine_backend *be, const float *logits, int n, int vocab,
                      int id_off, struct cuda_am_pair *pairs_d, struct ny_err *err)
{
    if (n <= 0)
        return NY_OK;
    return argmax_launch(be, logits, n, vocab, id_off, NULL, pairs_d, err);
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
    int rc = argmax_launch(be, (const float *)logits->d, n, vocab, 0, be->ids_d, NULL, err);
    if (rc)
        return rc;
    return cuda_read_host(be, ids, be->ids_d, (size_t)n * sizeof(int32_t), "argmax read-back",
                          err);
}
