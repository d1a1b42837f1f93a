/* cuda_backend.cu — the CUDA backend's ops table: lifecycle, buffers, weight upload (bf16 on the
 * device for BF16 files; fp32 kept for F32/F16 files, so fixtures compare exactly), the per-step
 * metadata, and the paged KV cache. The arithmetic lives in one .cu per op family. */
#include <math.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cuda_int.cuh"
#include "engine_cuda.h"

int cuda_fail(struct engine_backend *be, struct ny_err *err, const char *file, int line,
              const char *what, const char *detail)
{
    if (be)
        be->failed = 1;
    return ny_err_set(err, NY_E_DEVICE, file, line, "cuda: %s: %s", what, detail);
}

/* The most rows a step may have for its kernels to launch with programmatic dependent launch
 * (cuda_int.cuh: cuda_launch): CUDA_PDL_MAX_ROWS, NY_PDL_ROWS=N (A/B timing), -1 (never) with
 * NY_PDL=0. Ranks' threads may race on the first call: they all store the same value. */
int cuda_pdl_max_rows(void)
{
    static int v = -2;
    int r = __atomic_load_n(&v, __ATOMIC_RELAXED);
    if (r == -2) {
        const char *e = getenv("NY_PDL"), *n = getenv("NY_PDL_ROWS");
        char *end = NULL;
        long l = n && *n ? strtol(n, &end, 10) : -1;
        r = e && e[0] == '0' && !e[1] ? -1
            : end && !*end && l >= 0 && l <= 1000000 ? (int)l : CUDA_PDL_MAX_ROWS;
        __atomic_store_n(&v, r, __ATOMIC_RELAXED);
    }
    return r;
}

#define POISON_CHECK(be)                                                                          \
    do {                                                                                          \
        if ((be)->failed)                                                                         \
            return NY_ERR(err, NY_E_STATE, "cuda: the backend failed earlier and is poisoned");   \
    } while (0)

#define SET_DEVICE(be) CU_CHECK(be, cudaSetDevice((be)->device), "cudaSetDevice")

/* Polling schedule of a grouped instance's waits: spin on cudaStreamQuery first (a decode step's
 * all-reduce takes tens of microseconds), then yield, then sleep 20 us between polls. */
#define WAIT_SPIN 4096
#define WAIT_YIELD 65536

int cuda_stream_wait(struct engine_backend *be, const char *what, struct ny_err *err)
{
    if (!be->tp) {
        CU_CHECK(be, cudaStreamSynchronize(be->stream), what);
        return NY_OK;
    }
    for (unsigned long it = 0;; it++) {
        if (__atomic_load_n(&be->tp->aborted, __ATOMIC_ACQUIRE)) {
#if NY_HAVE_NCCL
            cuda_tp_abort_own(be); /* ends this rank's NCCL kernels, so the stream drains */
#endif
            be->failed = 1;
            return NY_ERR(err, NY_E_STATE, "cuda: %s: tensor-parallel group aborted", what);
        }
        cudaError_t e = cudaStreamQuery(be->stream);
        if (e == cudaSuccess)
            return NY_OK;
        if (e != cudaErrorNotReady)
            return cuda_fail(be, err, __FILE__, __LINE__, what, cudaGetErrorString(e));
        (void)cudaGetLastError(); /* "not ready" may linger as the thread's last error */
        if (it < WAIT_SPIN)
            continue;
        if (it < WAIT_YIELD) {
            sched_yield();
        } else {
            struct timespec ts = {0, 20000};
            nanosleep(&ts, NULL);
        }
    }
}

int cuda_read_host(struct engine_backend *be, void *dst, const void *src, size_t bytes,
                   const char *what, struct ny_err *err)
{
    /* A copy to pageable memory returns only when done: drain first, watching for an abort. */
    if (be->tp) {
        int rc = cuda_stream_wait(be, what, err);
        if (rc)
            return rc;
    }
    CU_CHECK(be, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, be->stream), what);
    return cuda_stream_wait(be, what, err);
}

int cuda_env_on(const char *name, int *cache)
{
    int r = __atomic_load_n(cache, __ATOMIC_RELAXED);
    if (r < 0) {
        const char *e = getenv(name);
        r = !(e && e[0] == '0' && !e[1]);
        __atomic_store_n(cache, r, __ATOMIC_RELAXED);
    }
    return r;
}

long cuda_env_long(const char *name, long *cache, long dflt)
{
    long r = __atomic_load_n(cache, __ATOMIC_RELAXED);
    if (r < 0) {
        const char *e = getenv(name);
        char *end = NULL;
        r = e ? strtol(e, &end, 10) : -1;
        if (!e || end == e || *end || r < 0)
            r = dflt;
        __atomic_store_n(cache, r, __ATOMIC_RELAXED);
    }
    return r;
}

int cuda_scratch(struct engine_backend *be, int i, size_t bytes, void **out, struct ny_err *err)
{
    if (bytes == 0)
        bytes = 16;
    if (be->scratch_size[i] < bytes) {
        int rc = cuda_stream_wait(be, "sync before scratch growth", err);
        if (rc)
            return rc;
        cudaFree(be->scratch[i]);
        be->scratch[i] = NULL;
        be->scratch_size[i] = 0;
        size_t want = bytes + bytes / 4;
        CU_CHECK(be, cudaMalloc(&be->scratch[i], want), "cudaMalloc scratch");
        be->scratch_size[i] = want;
    }
    *out = be->scratch[i];
    return NY_OK;
}

int cuda_upload_ints(struct engine_backend *be, int **slot, size_t *cap, const int *a, size_t n,
                     struct ny_err *err)
{
    if (n == 0)
        return NY_OK;
    if (*cap < n) {
        int rc = cuda_stream_wait(be, "sync before index growth", err);
        if (rc)
            return rc;
        cudaFree(*slot);
        *slot = NULL;
        *cap = 0;
        size_t want = n < 1024 ? 1024 : n * 2;
        CU_CHECK(be, cudaMalloc((void **)slot, want * sizeof(int)), "cudaMalloc indices");
        *cap = want;
    }
    if (!a) /* grow only */
        return NY_OK;
    /* Pageable source: the copy is staged before the call returns, so a is free to change. */
    CU_CHECK(be, cudaMemcpyAsync(*slot, a, n * sizeof(int), cudaMemcpyHostToDevice, be->stream),
             "upload indices");
    return NY_OK;
}

/* ---- lifecycle ------------------------------------------------------------------------------ */
static void cuda_destroy(struct engine_backend *be)
{
    if (!be)
        return;
    cudaSetDevice(be->device);
    if (be->stream) {
        cuda_tp_ovl_drop(be, NULL);
        cuda_stream_wait(be, "destroy", NULL);
    }
    cuda_gemm_plans_free(be);
    cuda_astack_drop(be, NULL);
    if (be->lt)
        cublasLtDestroy(be->lt);
    cudaFree(be->lt_ws);
    for (int i = 0; i < CUDA_N_SCRATCH; i++)
        cudaFree(be->scratch[i]);
    cudaFreeHost(be->tp_pairs_h);
    cudaFree(be->ids_d);
    cudaFree(be->idx_d);
    cudaFree(be->inv_freq_d);
    cudaFree(be->row_slot_d);
    cudaFree(be->row_pos_d);
    cudaFree(be->sets_d);
    ny_free(be->seq_start_h);
    ny_free(be->seq_adapter_h);
    ny_free(be->seq_slot_h);
    ny_free(be->seq_pos0_h);
    if (be->stream)
        cudaStreamDestroy(be->stream);
    ny_free(be);
}

static int cuda_create(int threads, int device, struct engine_backend **out, struct ny_err *err)
{
    (void)threads;
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    /* No device (or no driver) is a setting the user can change (--device cpu): exit 2, not 4. */
    if (e == cudaErrorNoDevice || e == cudaErrorInsufficientDriver || (e == cudaSuccess && n == 0))
        return NY_ERR(err, NY_E_UNSUPPORTED, "cuda: no CUDA device present (%s); use --device cpu",
                      e != cudaSuccess ? cudaGetErrorString(e) : "0 devices");
    if (e != cudaSuccess)
        return NY_ERR(err, NY_E_DEVICE, "cuda: cannot query devices: %s", cudaGetErrorString(e));
    if (device < 0 || device >= n)
        return NY_ERR(err, NY_E_INVALID, "cuda: device %d does not exist (%d visible)", device, n);
    struct engine_backend *be = (struct engine_backend *)ny_calloc(1, sizeof *be);
    if (!be)
        return NY_ERR(err, NY_E_NOMEM, "cuda: out of memory");
    be->device = device;
    int rc = NY_OK;
    if (cudaSetDevice(device) != cudaSuccess ||
        cudaStreamCreateWithFlags(&be->stream, cudaStreamNonBlocking) != cudaSuccess) {
        rc = NY_ERR(err, NY_E_DEVICE, "cuda: cannot open device %d", device);
        goto fail;
    }
    if (cublasLtCreate(&be->lt) != CUBLAS_STATUS_SUCCESS) {
        rc = NY_ERR(err, NY_E_DEVICE, "cuda: cublasLtCreate failed");
        goto fail;
    }
    be->lt_ws_size = (size_t)32 << 20;
    if (cudaMalloc(&be->lt_ws, be->lt_ws_size) != cudaSuccess) {
        rc = NY_ERR(err, NY_E_DEVICE, "cuda: cannot allocate the cuBLASLt workspace");
        goto fail;
    }
    *out = be;
    return NY_OK;
fail:
    cuda_destroy(be);
    return rc;
}

/* ---- buffers -------------------------------------------------------------------------------- */
static int cuda_buf_alloc(struct engine_backend *be, size_t n_floats, struct engine_buf **out,
                          struct ny_err *err)
{
    POISON_CHECK(be);
    SET_DEVICE(be);
    struct engine_buf *b = (struct engine_buf *)ny_calloc(1, sizeof *b);
    if (!b)
        return NY_ERR(err, NY_E_NOMEM, "cuda: out of memory");
    cudaError_t e = cudaMalloc(&b->d, (n_floats ? n_floats : 1) * sizeof(float));
    if (e != cudaSuccess) {
        ny_free(b);
        return NY_ERR(err, NY_E_DEVICE, "cuda: cannot allocate %zu floats: %s", n_floats,
                      cudaGetErrorString(e));
    }
    b->n = n_floats;
    b->wtype = CUDA_W_NONE;
    *out = b;
    return NY_OK;
}

static void cuda_buf_free(struct engine_backend *be, struct engine_buf *b)
{
    if (!b)
        return;
    if (be)
        cudaSetDevice(be->device);
    if (be && be->stream) {
        if (cuda_ovl_busy(be))
            cuda_tp_ovl_settle(be, NULL);
        cuda_stream_wait(be, "buf_free", NULL);
    }
    if (be)
        be->shadow_src = NULL;
    if (be && b->wtype == CUDA_W_BF16) {
        be->n_bf16_weights--;
        cuda_astack_drop(be, b->d);
    }
    cudaFree(b->d);
    ny_free(b);
}

static int cuda_buf_write(struct engine_backend *be, struct engine_buf *b, size_t off,
                          const float *src, size_t n_floats, struct ny_err *err)
{
    POISON_CHECK(be);
    be->hint_next = NULL; /* last_read: the hint was for the next op, this one */
    if (b->wtype != CUDA_W_NONE || off > b->n || n_floats > b->n - off)
        return NY_ERR(err, NY_E_RANGE, "cuda: buf_write of %zu floats at %zu outside %zu",
                      n_floats, off, b->n);
    SET_DEVICE(be);
    be->shadow_src = NULL;
    if (be->tp) { /* a pageable upload may wait for the stream: drain it abort-aware first */
        int rc = cuda_ovl_busy(be) ? cuda_tp_ovl_settle(be, err) : NY_OK;
        if (!rc && be->xlag)
            rc = cuda_tp_ovl_xcheck(be, b->d, err);
        if (!rc)
            rc = cuda_stream_wait(be, "buf_write", err);
        if (rc)
            return rc;
    }
    CU_CHECK(be, cudaMemcpyAsync((float *)b->d + off, src, n_floats * sizeof(float),
                                 cudaMemcpyHostToDevice, be->stream), "buf_write");
    return cuda_stream_wait(be, "buf_write sync", err);
}

static int cuda_buf_read(struct engine_backend *be, const struct engine_buf *b, size_t off,
                         float *dst, size_t n_floats, struct ny_err *err)
{
    POISON_CHECK(be);
    be->hint_next = NULL; /* last_read: the hint was for the next op, this one */
    if (b->wtype != CUDA_W_NONE || off > b->n || n_floats > b->n - off)
        return NY_ERR(err, NY_E_RANGE, "cuda: buf_read of %zu floats at %zu outside %zu",
                      n_floats, off, b->n);
    SET_DEVICE(be);
    int rc = cuda_ovl_busy(be) ? cuda_tp_ovl_settle(be, err) : NY_OK;
    if (rc || (be->xlag && (rc = cuda_tp_ovl_xcheck(be, b->d, err))))
        return rc;
    return cuda_read_host(be, dst, (const float *)b->d + off, n_floats * sizeof(float),
                          "buf_read", err);
}

/* Host conversion in chunks so a 2 GB weight never needs a 2 GB host copy at once. */
static int cuda_weight_upload(struct engine_backend *be, enum engine_dtype dt, const void *src,
                              size_t rows, size_t cols, struct engine_buf **out,
                              struct ny_err *err)
{
    POISON_CHECK(be);
    SET_DEVICE(be);
    size_t n;
    if (ny_mul_overflow(rows, cols, &n) || n == 0)
        return NY_ERR(err, NY_E_RANGE, "cuda: weight of %zu x %zu", rows, cols);
    int wt = dt == ENGINE_DTYPE_BF16 ? CUDA_W_BF16 : CUDA_W_F32;
    size_t esz = wt == CUDA_W_BF16 ? 2 : 4;
    struct engine_buf *b = (struct engine_buf *)ny_calloc(1, sizeof *b);
    if (!b)
        return NY_ERR(err, NY_E_NOMEM, "cuda: out of memory");
    cudaError_t e = cudaMalloc(&b->d, n * esz);
    if (e != cudaSuccess) {
        ny_free(b);
        return NY_ERR(err, NY_E_DEVICE, "cuda: cannot allocate a %zu x %zu weight: %s", rows,
                      cols, cudaGetErrorString(e));
    }
    b->n = n;
    b->wtype = wt;
    b->rows = rows;
    b->cols = cols;
    /* The copies go on the stream and are waited for before the weight is handed out: a plain
     * cudaMemcpy from pageable memory may return before its DMA has landed, and kernels on the
     * (non-blocking) stream do not wait for it (an o product's shadow check in test_ops read a
     * weight half uploaded, twice in nine sessions, with other test processes on the GPU). */
    int rc = be->tp ? cuda_stream_wait(be, "weight upload", err) : NY_OK;
    if (rc == NY_OK && wt == CUDA_W_BF16) {
        /* bf16 in the file: bytes as they are (memcpy handles any alignment). */
        e = cudaMemcpyAsync(b->d, src, n * 2, cudaMemcpyHostToDevice, be->stream);
        if (e != cudaSuccess)
            rc = NY_ERR(err, NY_E_DEVICE, "cuda: weight upload: %s", cudaGetErrorString(e));
        if (rc == NY_OK)
            rc = cuda_stream_wait(be, "weight upload", err);
        be->n_bf16_weights++;
    } else if (rc == NY_OK) {
        const size_t chunk = (size_t)1 << 22;
        float *tmp = (float *)ny_malloc((n < chunk ? n : chunk) * sizeof(float));
        if (!tmp)
            rc = NY_ERR(err, NY_E_NOMEM, "cuda: out of memory converting a weight");
        for (size_t i = 0; rc == NY_OK && i < n; i += chunk) { /* tmp reused: each waited for */
            size_t m = n - i < chunk ? n - i : chunk;
            engine_dtype_to_f32(dt, (const char *)src + i * engine_dtype_size(dt), tmp, m);
            e = cudaMemcpyAsync((float *)b->d + i, tmp, m * sizeof(float),
                                cudaMemcpyHostToDevice, be->stream);
            if (e != cudaSuccess)
                rc = NY_ERR(err, NY_E_DEVICE, "cuda: weight upload: %s", cudaGetErrorString(e));
            if (rc == NY_OK)
                rc = cuda_stream_wait(be, "weight upload", err);
        }
        ny_free(tmp);
    }
    if (rc) {
        cudaFree(b->d);
        ny_free(b);
        return rc;
    }
    *out = b;
    return NY_OK;
}

/* ---- per step ------------------------------------------------------------------------------- */
static int grow_host_ints(int **p, int n)
{
    int *q = (int *)ny_reallocarray(*p, (size_t)(n > 0 ? n : 1), sizeof(int));
    if (!q)
        return NY_E_NOMEM;
    *p = q;
    return NY_OK;
}

/* The step's row lists (see struct cuda_step_sets), uploaded once. */
static int build_sets(struct engine_backend *be, const struct engine_batch *b, struct ny_err *err)
{
    struct cuda_step_sets *ss = &be->sets;
    memset(ss, 0, sizeof *ss);
    int nr = b->n_rows, used = 0;
    for (int s = 0; s < b->n_seqs; s++) {
        if (b->seq_adapter[s] >= CUDA_MAX_ADAPTERS)
            return NY_ERR(err, NY_E_UNSUPPORTED, "cuda: adapter index %d (at most %d adapters)",
                          b->seq_adapter[s], CUDA_MAX_ADAPTERS);
        if (b->seq_adapter[s] + 1 > ss->n_adapters)
            ss->n_adapters = b->seq_adapter[s] + 1;
    }
    int *h = (int *)ny_malloc((size_t)(3 * nr + 4 * b->n_seqs + 1) * sizeof(int));
    if (!h)
        return NY_ERR(err, NY_E_NOMEM, "cuda: out of memory");
    for (int s = 0; s < b->n_seqs; s++)
        if (b->seq_start[s + 1] - b->seq_start[s] == 1)
            h[used++] = b->seq_start[s];
    ss->single_all_n = used;
    for (int a = 0; a < ss->n_adapters; a++) {
        ss->single_off[a] = used;
        for (int s = 0; s < b->n_seqs; s++)
            if (b->seq_adapter[s] == a && b->seq_start[s + 1] - b->seq_start[s] == 1)
                h[used++] = b->seq_start[s];
        ss->single_n[a] = used - ss->single_off[a];
        ss->all_off[a] = used;
        for (int s = 0; s < b->n_seqs; s++)
            if (b->seq_adapter[s] == a)
                for (int r = b->seq_start[s]; r < b->seq_start[s + 1]; r++)
                    h[used++] = r;
        ss->all_n[a] = used - ss->all_off[a];
    }
    ss->units_off = used;
    for (int s = 0; s < b->n_seqs; s++) {
        int len = b->seq_start[s + 1] - b->seq_start[s];
        if (len < 2)
            continue;
        h[used++] = b->seq_start[s];
        h[used++] = len;
        h[used++] = b->seq_slot[s];
        h[used++] = b->seq_pos0[s];
        ss->units_n++;
        if (len > ss->units_max_len)
            ss->units_max_len = len;
    }
    int rc = cuda_upload_ints(be, &be->sets_d, &be->sets_cap, h, (size_t)used, err);
    if (!rc)
        rc = cuda_stream_wait(be, "step lists sync", err);
    ny_free(h);
    return rc;
}

static int cuda_step_begin(struct engine_backend *be, const struct engine_batch *batch,
                           struct ny_err *err)
{
    POISON_CHECK(be);
    be->hint_next = NULL; /* last_read: the hint was for the next op, this one */
    SET_DEVICE(be);
    be->shadow_src = NULL;
    if (be->tp) { /* the uploads below are pageable: drain the stream abort-aware first */
        int rc = cuda_tp_ovl_drop(be, err); /* sums of a step that failed midway: wait */
        if (!rc)
            rc = cuda_stream_wait(be, "step_begin", err);
        if (rc)
            return rc;
    }
    int nr = batch->n_rows, ns = batch->n_seqs;
    if (nr < 0 || ns < 0 || batch->seq_start[0] != 0 || batch->seq_start[ns] != nr)
        return NY_ERR(err, NY_E_INVALID, "cuda: inconsistent batch (%d rows, %d requests)", nr,
                      ns);
    for (int s = 0; s < ns; s++)
        if (batch->seq_start[s + 1] < batch->seq_start[s])
            return NY_ERR(err, NY_E_INVALID, "cuda: batch request %d has a negative row count", s);
    if (grow_host_ints(&be->seq_start_h, ns + 1) || grow_host_ints(&be->seq_adapter_h, ns) ||
        grow_host_ints(&be->seq_slot_h, ns) || grow_host_ints(&be->seq_pos0_h, ns))
        return NY_ERR(err, NY_E_NOMEM, "cuda: out of memory");
    memcpy(be->seq_start_h, batch->seq_start, (size_t)(ns + 1) * sizeof(int));
    memcpy(be->seq_adapter_h, batch->seq_adapter, (size_t)ns * sizeof(int));
    memcpy(be->seq_slot_h, batch->seq_slot, (size_t)ns * sizeof(int));
    memcpy(be->seq_pos0_h, batch->seq_pos0, (size_t)ns * sizeof(int));
    be->n_rows = nr;
    be->n_seqs = ns;
    int *tmp = (int *)ny_malloc((size_t)(2 * (nr > 0 ? nr : 1)) * sizeof(int));
    if (!tmp)
        return NY_ERR(err, NY_E_NOMEM, "cuda: out of memory");
    for (int s = 0; s < ns; s++)
        for (int r = batch->seq_start[s]; r < batch->seq_start[s + 1]; r++) {
            tmp[r] = batch->seq_slot[s];
            tmp[nr + r] = batch->seq_pos0[s] + (r - batch->seq_start[s]);
        }
    int rc = cuda_upload_ints(be, &be->row_slot_d, &be->row_slot_cap, tmp, (size_t)nr, err);
    if (!rc)
        rc = cuda_upload_ints(be, &be->row_pos_d, &be->row_pos_cap, tmp + nr, (size_t)nr, err);
    if (!rc)
        rc = build_sets(be, batch, err);
    if (!rc) /* tmp is pageable: wait for the staged copies before freeing it */
        rc = cuda_stream_wait(be, "step_begin sync", err);
    ny_free(tmp);
    return rc;
}

/* ---- KV cache ------------------------------------------------------------------------------- */
static void cuda_kv_destroy(struct engine_backend *be, struct engine_kv *kv)
{
    if (!kv)
        return;
    if (be)
        cudaSetDevice(be->device);
    if (be && be->stream)
        cuda_stream_wait(be, "kv_destroy", NULL);
    cudaFree(kv->k);
    cudaFree(kv->v);
    cudaFree(kv->table_d);
    ny_free(kv->table_h);
    ny_free(kv->free_pages);
    ny_free(kv);
}

static int cuda_kv_create(struct engine_backend *be, const struct engine_kv_shape *sh,
                          struct engine_kv **out, struct ny_err *err)
{
    POISON_CHECK(be);
    SET_DEVICE(be);
    if (sh->n_layers <= 0 || sh->n_kv_heads <= 0 || sh->head_dim <= 0 || sh->head_dim > 256 ||
        sh->n_slots <= 0 || sh->max_tokens <= 0)
        return NY_ERR(err, NY_E_INVALID, "cuda: bad KV-cache shape (head_dim %d)", sh->head_dim);
    struct engine_kv *kv = (struct engine_kv *)ny_calloc(1, sizeof *kv);
    if (!kv)
        return NY_ERR(err, NY_E_NOMEM, "cuda: out of memory");
    kv->shape = *sh;
    kv->bf16 = be->n_bf16_weights > 0;
    kv->pages_per_slot = (sh->max_tokens + CUDA_KV_PAGE - 1) / CUDA_KV_PAGE;
    kv->n_pages = kv->pages_per_slot * sh->n_slots;
    size_t per_tok = (size_t)sh->n_kv_heads * sh->head_dim * (kv->bf16 ? 2 : 4), bytes;
    int rc = NY_OK;
    if (ny_mul_overflow(per_tok, (size_t)kv->n_pages * CUDA_KV_PAGE * sh->n_layers, &bytes)) {
        rc = NY_ERR(err, NY_E_RANGE, "cuda: KV cache size overflows");
        goto fail;
    }
    kv->table_h = (int *)ny_malloc((size_t)kv->n_pages * sizeof(int));
    kv->free_pages = (int *)ny_malloc((size_t)kv->n_pages * sizeof(int));
    if (!kv->table_h || !kv->free_pages) {
        rc = NY_ERR(err, NY_E_NOMEM, "cuda: out of memory");
        goto fail;
    }
    for (int i = 0; i < kv->n_pages; i++) {
        kv->table_h[i] = -1;
        kv->free_pages[i] = kv->n_pages - 1 - i; /* pop gives page 0 first */
    }
    kv->n_free = kv->n_pages;
    kv->table_dirty = 1;
    if (cudaMalloc(&kv->k, bytes) != cudaSuccess || cudaMalloc(&kv->v, bytes) != cudaSuccess ||
        cudaMalloc((void **)&kv->table_d, (size_t)kv->n_pages * sizeof(int)) != cudaSuccess) {
        cudaGetLastError();
        rc = NY_ERR(err, NY_E_DEVICE, "cuda: cannot allocate a KV cache of 2 x %zu MiB",
                    bytes >> 20);
        goto fail;
    }
    *out = kv;
    return NY_OK;
fail:
    cuda_kv_destroy(be, kv);
    return rc;
}

static int cuda_kv_slot_reset(struct engine_backend *be, struct engine_kv *kv, int slot,
                              struct ny_err *err)
{
    POISON_CHECK(be);
    SET_DEVICE(be);
    if (slot < 0 || slot >= kv->shape.n_slots)
        return NY_ERR(err, NY_E_RANGE, "cuda: KV slot %d of %d", slot, kv->shape.n_slots);
    int *t = kv->table_h + (size_t)slot * kv->pages_per_slot;
    for (int p = kv->pages_per_slot - 1; p >= 0; p--)
        if (t[p] >= 0) {
            kv->free_pages[kv->n_free++] = t[p];
            t[p] = -1;
        }
    kv->table_dirty = 1;
    return NY_OK;
}

/* Map pages for every row of the step (called by the attention op before storing k/v). */
int cuda_kv_map_step(struct engine_backend *be, struct engine_kv *kv, struct ny_err *err)
{
    for (int s = 0; s < be->n_seqs; s++) {
        int slot = be->seq_slot_h[s];
        int last = be->seq_pos0_h[s] + (be->seq_start_h[s + 1] - be->seq_start_h[s]) - 1;
        if (slot < 0 || slot >= kv->shape.n_slots || be->seq_pos0_h[s] < 0 ||
            last >= kv->shape.max_tokens)
            return NY_ERR(err, NY_E_RANGE, "cuda: request %d (slot %d) reaches position %d of %d",
                          s, slot, last, kv->shape.max_tokens);
        int *t = kv->table_h + (size_t)slot * kv->pages_per_slot;
        for (int p = 0; p <= last / CUDA_KV_PAGE; p++)
            if (t[p] < 0) {
                if (kv->n_free == 0)
                    return NY_ERR(err, NY_E_INTERNAL, "cuda: KV page pool exhausted");
                t[p] = kv->free_pages[--kv->n_free];
                kv->table_dirty = 1;
            }
    }
    if (kv->table_dirty) {
        CU_CHECK(be, cudaMemcpyAsync(kv->table_d, kv->table_h, (size_t)kv->n_pages * sizeof(int),
                                     cudaMemcpyHostToDevice, be->stream), "upload block table");
        int rc = cuda_stream_wait(be, "block table sync", err);
        if (rc)
            return rc;
        kv->table_dirty = 0;
    }
    return NY_OK;
}

/* ---- wrappers that refuse a poisoned backend ----------------------------------------------- */
/* Every op drops the bf16 shadow but the matmul family, its readers (a writer of the mirrored
 * buffer drops it in cuda_gemm.cu). Every op but the matmul family also finishes overlapped tp
 * sums first (the matmul family does it in cuda_gemm.cu, where it may take them unit by unit).
 * xr: the op's input that may be an x lagged by the overlapped sums (refused), or NULL. */
#define WRAP_OP(name, params, args, keep_shadow, xr)                                              \
    static int cuda_##name params                                                                 \
    {                                                                                             \
        POISON_CHECK(be);                                                                         \
        be->hint_cur = be->hint_next; /* last_read's hint: this op's alone */                    \
        be->hint_next = NULL;                                                                     \
        CU_CHECK(be, cudaSetDevice(be->device), "cudaSetDevice");                                 \
        if (!(keep_shadow) && cuda_ovl_busy(be)) {                                                \
            int rc_ = cuda_tp_ovl_settle(be, err);                                                \
            if (rc_)                                                                              \
                return rc_;                                                                       \
        }                                                                                         \
        if (be->xlag) {                                                                           \
            int rc_ = cuda_tp_ovl_xcheck(be, (xr) ? (const void *)(xr)->d : NULL, err);           \
            if (rc_)                                                                              \
                return rc_;                                                                       \
        }                                                                                         \
        if (!(keep_shadow))                                                                       \
            be->shadow_src = NULL;                                                                \
        int rc_ = cuda_op_##name args;                                                            \
        be->hint_cur = NULL;                                                                      \
        return rc_;                                                                               \
    }
#define WRAP(name, params, args) WRAP_OP(name, params, args, 0, (const struct engine_buf *)NULL)
#define WRAP_X(name, params, args, xr) WRAP_OP(name, params, args, 0, xr)
#define WRAP_KEEP(name, params, args, xr) WRAP_OP(name, params, args, 1, xr)
WRAP(embed, (struct engine_backend * be, const struct engine_buf *t, const int32_t *ids, int dim,
             struct engine_buf *o, struct ny_err *err), (be, t, ids, dim, o, err))
WRAP_X(rmsnorm, (struct engine_backend * be, const struct engine_buf *x,
                 const struct engine_buf *w, int dim, float eps, struct engine_buf *o,
                 struct ny_err *err), (be, x, w, dim, eps, o, err), x)
WRAP_KEEP(matmul, (struct engine_backend * be, const struct engine_buf *x, int in,
              const struct engine_buf *w, int out, const struct engine_lora_term *lora, int nl,
              const int *rows, int nor, struct engine_buf *y, struct ny_err *err),
     (be, x, in, w, out, lora, nl, rows, nor, y, err), x)
WRAP(rope, (struct engine_backend * be, struct engine_buf *x, int nh, int hd, const float *f,
            float af, struct ny_err *err), (be, x, nh, hd, f, af, err))
WRAP(attention, (struct engine_backend * be, struct engine_kv *kv, int layer,
                 const struct engine_buf *q, const struct engine_buf *k,
                 const struct engine_buf *v, int nh, float scale, struct engine_buf *o,
                 struct ny_err *err), (be, kv, layer, q, k, v, nh, scale, o, err))
WRAP(swiglu, (struct engine_backend * be, const struct engine_buf *g, const struct engine_buf *u,
              int ff, struct engine_buf *o, struct ny_err *err), (be, g, u, ff, o, err))
WRAP_X(add, (struct engine_backend * be, struct engine_buf *x, const struct engine_buf *y,
             int dim, struct ny_err *err), (be, x, y, dim, err), x)
WRAP(argmax, (struct engine_backend * be, const struct engine_buf *l, int n, int vocab,
              int32_t *ids, struct ny_err *err), (be, l, n, vocab, ids, err))
WRAP(weight_random, (struct engine_backend * be, size_t rows, size_t cols, size_t row0,
                     size_t col0, size_t full_cols, uint64_t seed, float scale,
                     struct engine_buf **o, struct ny_err *err),
     (be, rows, cols, row0, col0, full_cols, seed, scale, o, err))

WRAP_KEEP(matmul_multi, (struct engine_backend * be, const struct engine_buf *x, int in,
                    const struct engine_matmul_part *parts, int np, int nl, struct ny_err *err),
     (be, x, in, parts, np, nl, err), x)
WRAP_X(add_rmsnorm, (struct engine_backend * be, struct engine_buf *x, const struct engine_buf *y,
                     const struct engine_buf *w, int dim, float eps, struct engine_buf *o,
                     struct ny_err *err), (be, x, y, w, dim, eps, o, err), x)
WRAP(rope_qk, (struct engine_backend * be, struct engine_buf *q, int nq, struct engine_buf *k,
               int nk, int hd, const float *f, float af, struct ny_err *err),
     (be, q, nq, k, nk, hd, f, af, err))
WRAP(swiglu_matmul, (struct engine_backend * be, struct engine_buf *g, const struct engine_buf *u,
                     int ff, const struct engine_buf *w, int out,
                     const struct engine_lora_term *lora, int nl, struct engine_buf *y,
                     struct ny_err *err), (be, g, u, ff, w, out, lora, nl, y, err))
WRAP_KEEP(mlp, (struct engine_backend * be, const struct engine_buf *x, int in,
           const struct engine_matmul_part *gu, int nl, int ff, const struct engine_buf *w,
           int out, const struct engine_lora_term *lora, struct engine_buf *y,
           struct ny_err *err), (be, x, in, gu, nl, ff, w, out, lora, y, err), x)

/* engine_backend_ops.last_read: x's next reader (the next op) is its last; cleared by every op.
 * NY_LAST_READ=0 ignores the hint (A/B timing; the results are bit-identical either way). */
static void cuda_last_read(struct engine_backend *be, const struct engine_buf *x)
{
    static int on = -1;
    be->hint_next = x && cuda_env_on("NY_LAST_READ", &on) ? x->d : NULL;
}

#if NY_HAVE_NCCL /* cuda_tp.cu, declared in cuda_int.cuh */
#define CUDA_TP_OPS cuda_tp_create, cuda_tp_abort, cuda_tp_destroy, cuda_tp_allreduce, cuda_tp_argmax
#define CUDA_TP_FUSED cuda_tp_allreduce_add_rmsnorm
#define CUDA_TP_ANNOUNCE cuda_tp_sum_announce
#define CUDA_TP_ANNOUNCE_NORM cuda_tp_sum_announce_norm
#else
#define CUDA_TP_OPS NULL, NULL, NULL, NULL, NULL /* built without NCCL: no tensor parallelism */
#define CUDA_TP_FUSED NULL
#define CUDA_TP_ANNOUNCE NULL
#define CUDA_TP_ANNOUNCE_NORM NULL
#endif

extern "C" const struct engine_backend_ops engine_cuda_ops = {
    "cuda",
    cuda_create,
    cuda_destroy,
    cuda_buf_alloc,
    cuda_buf_free,
    cuda_buf_write,
    cuda_buf_read,
    cuda_weight_upload,
    cuda_step_begin,
    cuda_embed,
    cuda_rmsnorm,
    cuda_matmul,
    cuda_rope,
    cuda_attention,
    cuda_swiglu,
    cuda_add,
    cuda_argmax,
    cuda_kv_create,
    cuda_kv_destroy,
    cuda_kv_slot_reset,
    CUDA_TP_OPS, /* tp_create, tp_abort, tp_destroy, tp_allreduce, tp_argmax */
    cuda_weight_random,
    cuda_matmul_multi,
    cuda_add_rmsnorm,
    cuda_rope_qk,
    cuda_swiglu_matmul,
    cuda_mlp,
    CUDA_TP_FUSED, /* tp_allreduce_add_rmsnorm */
    CUDA_TP_ANNOUNCE, /* tp_sum_announce */
    cuda_last_read,
    CUDA_TP_ANNOUNCE_NORM, /* tp_sum_announce_norm */
};
