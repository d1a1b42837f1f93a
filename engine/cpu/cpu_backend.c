/* cpu_backend.c — the CPU reference backend: fp32 weights, OpenBLAS (one thread) inside tasks of
 * FIXED size run on our own pool, so results never depend on the thread count or the batch. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

#include "cpu_int.h"

int cpu_grow(void **p, size_t *cap, size_t n, size_t sz, struct ny_err *err)
{
    if (n <= *cap)
        return NY_OK;
    size_t bytes;
    if (ny_mul_overflow(n, sz, &bytes))
        return NY_ERR(err, NY_E_RANGE, "cpu: work buffer size overflows");
    void *q = aligned_alloc(64, (bytes + 63) & ~(size_t)63);
    if (!q)
        return NY_ERR(err, NY_E_NOMEM, "cpu: out of memory for %zu bytes of work space", bytes);
    free(*p);
    *p = q;
    *cap = n;
    return NY_OK;
}

float *cpu_scratch(struct engine_backend *be, int thread)
{
    return be->scratch + (size_t)thread * be->scratch_per;
}

/* Make sure every thread has at least n floats of scratch (64-byte aligned). */
int cpu_scratch_reserve(struct engine_backend *be, size_t n, struct ny_err *err)
{
    n = (n + 15) & ~(size_t)15;
    if (n <= be->scratch_per)
        return NY_OK;
    size_t total;
    if (ny_mul_overflow(n, (size_t)be->n_threads, &total) || ny_mul_overflow(total, 4, &total))
        return NY_ERR(err, NY_E_RANGE, "cpu: scratch size overflows");
    float *s = aligned_alloc(64, total);
    if (!s)
        return NY_ERR(err, NY_E_NOMEM, "cpu: out of memory for %zu bytes of scratch", total);
    free(be->scratch);
    be->scratch = s;
    be->scratch_per = n;
    return NY_OK;
}

static int cpu_create(int threads, int device, struct engine_backend **out, struct ny_err *err)
{
    (void)device;
    /* OpenBLAS runs single-threaded inside our tasks: its own threading would make the blocking
     * (and with it the rounding) depend on the machine. */
    openblas_set_num_threads(1);
    struct engine_backend *be = ny_calloc(1, sizeof *be);
    if (!be)
        return NY_ERR(err, NY_E_NOMEM, "cpu: out of memory");
    be->n_threads = threads < 1 ? 1 : threads;
    int rc = cpu_pool_create(be->n_threads, &be->pool, err);
    if (rc == NY_OK)
        rc = cpu_scratch_reserve(be, 1024, err);
    if (rc != NY_OK) {
        cpu_pool_destroy(be->pool);
        ny_free(be);
        return rc;
    }
    *out = be;
    return NY_OK;
}

static void cpu_destroy(struct engine_backend *be)
{
    if (!be)
        return;
    cpu_pool_destroy(be->pool);
    ny_free(be->row_seq);
    free(be->scratch);
    free(be->stage);
    free(be->lora_t);
    free(be->work);
    ny_free(be);
}

/* ---- buffers --------------------------------------------------------------------------------- */
static int buf_new(size_t rows, size_t cols, struct engine_buf **out, struct ny_err *err)
{
    size_t n, bytes;
    if (ny_mul_overflow(rows, cols, &n) || ny_mul_overflow(n ? n : 1, sizeof(float), &bytes))
        return NY_ERR(err, NY_E_RANGE, "cpu: buffer of %zu x %zu floats overflows", rows, cols);
    struct engine_buf *b = ny_calloc(1, sizeof *b);
    float *d = b ? aligned_alloc(64, (bytes + 63) & ~(size_t)63) : NULL;
    if (!d) {
        ny_free(b);
        return NY_ERR(err, NY_E_NOMEM, "cpu: out of memory for %zu bytes", bytes);
    }
    b->data = d;
    b->n = n;
    b->rows = rows;
    b->cols = cols;
    *out = b;
    return NY_OK;
}

static int cpu_buf_alloc(struct engine_backend *be, size_t n_floats, struct engine_buf **out,
                         struct ny_err *err)
{
    (void)be;
    return buf_new(1, n_floats, out, err);
}

static void cpu_buf_free(struct engine_backend *be, struct engine_buf *b)
{
    (void)be;
    if (!b)
        return;
    free(b->data);
    ny_free(b);
}

static int cpu_buf_write(struct engine_backend *be, struct engine_buf *b, size_t off,
                         const float *src, size_t n, struct ny_err *err)
{
    (void)be;
    if (off > b->n || n > b->n - off)
        return NY_ERR(err, NY_E_RANGE, "cpu: write of %zu floats at %zu beyond buffer of %zu", n,
                      off, b->n);
    memcpy(b->data + off, src, n * sizeof(float));
    return NY_OK;
}

static int cpu_buf_read(struct engine_backend *be, const struct engine_buf *b, size_t off,
                        float *dst, size_t n, struct ny_err *err)
{
    (void)be;
    if (off > b->n || n > b->n - off)
        return NY_ERR(err, NY_E_RANGE, "cpu: read of %zu floats at %zu beyond buffer of %zu", n,
                      off, b->n);
    memcpy(dst, b->data + off, n * sizeof(float));
    return NY_OK;
}

static int cpu_weight_upload(struct engine_backend *be, enum engine_dtype dt, const void *src,
                             size_t rows, size_t cols, struct engine_buf **out,
                             struct ny_err *err)
{
    (void)be;
    struct engine_buf *b;
    int rc = buf_new(rows, cols, &b, err);
    if (rc != NY_OK)
        return rc;
    engine_dtype_to_f32(dt, src, b->data, b->n);
    *out = b;
    return NY_OK;
}

static uint64_t splitmix64(uint64_t z)
{
    z += 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* The same draw as the CUDA backend's (kept in fp32 here, bf16 there). */
static int cpu_weight_random(struct engine_backend *be, size_t rows, size_t cols, size_t row0,
                             size_t col0, size_t full_cols, uint64_t seed, float scale,
                             struct engine_buf **out, struct ny_err *err)
{
    (void)be;
    if (col0 > full_cols || cols > full_cols - col0 || rows == 0 || cols == 0)
        return NY_ERR(err, NY_E_RANGE, "cpu: random block of %zu x %zu at column %zu of %zu",
                      rows, cols, col0, full_cols);
    struct engine_buf *b;
    int rc = buf_new(rows, cols, &b, err);
    if (rc != NY_OK)
        return rc;
    for (size_t i = 0; i < rows; i++)
        for (size_t j = 0; j < cols; j++) {
            uint64_t g = (uint64_t)(row0 + i) * full_cols + col0 + j;
            uint64_t h = splitmix64(seed * 0x100000001b3ull + g);
            float u = (float)(h >> 40) * (1.0f / 16777216.0f); /* [0, 1) */
            b->data[i * cols + j] = (2.0f * u - 1.0f) * scale;
        }
    *out = b;
    return NY_OK;
}

static int cpu_step_begin(struct engine_backend *be, const struct engine_batch *batch,
                          struct ny_err *err)
{
    if (batch->n_rows < 0 || batch->n_seqs < 0 || batch->seq_start[0] != 0 ||
        batch->seq_start[batch->n_seqs] != batch->n_rows)
        return NY_ERR(err, NY_E_INTERNAL, "cpu: inconsistent batch");
    if ((size_t)batch->n_rows > be->row_seq_cap) {
        int *p = ny_reallocarray(be->row_seq, (size_t)batch->n_rows, sizeof *p);
        if (!p)
            return NY_ERR(err, NY_E_NOMEM, "cpu: out of memory for the batch");
        be->row_seq = p;
        be->row_seq_cap = (size_t)batch->n_rows;
    }
    for (int s = 0; s < batch->n_seqs; s++) {
        if (batch->seq_start[s + 1] < batch->seq_start[s])
            return NY_ERR(err, NY_E_INTERNAL, "cpu: inconsistent batch");
        for (int r = batch->seq_start[s]; r < batch->seq_start[s + 1]; r++)
            be->row_seq[r] = s;
    }
    be->batch = batch;
    return NY_OK;
}

/* ---- row-wise primitives ------------------------------------------------------------------- */
struct rows_ctx {
    struct engine_backend *be;
    const float *x, *y, *w;
    float *out;
    const int32_t *ids;
    int32_t *ids_out;
    int dim, n_heads, head_dim, n;
    float eps, attn_factor;
    const float *inv_freq;
};

/* Work of a row-wise op: rows × width (rope: rows × heads × head_dim). */
#define ROWS_WORK(c) ((double)(c).n * ((c).dim ? (c).dim : (c).n_heads * (c).head_dim) * 4.0)

static int row_tasks(int n_rows)
{
    return (n_rows + CPU_ROW_BLOCK - 1) / CPU_ROW_BLOCK;
}

#define FOR_BLOCK_ROWS(r, task, n_rows)                                                           \
    for (int r = (task) * CPU_ROW_BLOCK; r < (n_rows) && r < ((task) + 1) * CPU_ROW_BLOCK; r++)

static void embed_task(void *vctx, int task, int thread)
{
    (void)thread;
    struct rows_ctx *c = vctx;
    FOR_BLOCK_ROWS(r, task, c->n)
    memcpy(c->out + (size_t)r * c->dim, c->w + (size_t)c->ids[r] * c->dim,
           (size_t)c->dim * sizeof(float));
}

static int cpu_embed(struct engine_backend *be, const struct engine_buf *table,
                     const int32_t *ids, int dim, struct engine_buf *out, struct ny_err *err)
{
    int n = be->batch->n_rows;
    for (int r = 0; r < n; r++)
        if (ids[r] < 0 || (size_t)ids[r] >= table->rows)
            return NY_ERR(err, NY_E_RANGE, "token id %d outside the vocabulary (%zu)", ids[r],
                          table->rows);
    struct rows_ctx c = {.be = be, .w = table->data, .out = out->data, .ids = ids, .dim = dim,
                         .n = n};
    cpu_pool_run(be->pool, row_tasks(n), embed_task, &c, (double)n * dim);
    return NY_OK;
}

static void rmsnorm_task(void *vctx, int task, int thread)
{
    (void)thread;
    struct rows_ctx *c = vctx;
    FOR_BLOCK_ROWS(r, task, c->n)
    {
        const float *x = c->x + (size_t)r * c->dim;
        float *o = c->out + (size_t)r * c->dim;
        float ss = 0.0f;
        for (int i = 0; i < c->dim; i++)
            ss += x[i] * x[i];
        float inv = 1.0f / sqrtf(ss / (float)c->dim + c->eps);
        for (int i = 0; i < c->dim; i++)
            o[i] = c->w[i] * (x[i] * inv);
    }
}

static int cpu_rmsnorm(struct engine_backend *be, const struct engine_buf *x,
                       const struct engine_buf *w, int dim, float eps, struct engine_buf *out,
                       struct ny_err *err)
{
    (void)err;
    struct rows_ctx c = {.be = be, .x = x->data, .w = w->data, .out = out->data, .dim = dim,
                         .eps = eps, .n = be->batch->n_rows};
    cpu_pool_run(be->pool, row_tasks(c.n), rmsnorm_task, &c, ROWS_WORK(c));
    return NY_OK;
}

static void rope_task(void *vctx, int task, int thread)
{
    (void)thread;
    struct rows_ctx *c = vctx;
    const struct engine_batch *b = c->be->batch;
    int half = c->head_dim / 2;
    FOR_BLOCK_ROWS(r, task, c->n)
    {
        int s = c->be->row_seq[r];
        int pos = b->seq_pos0[s] + (r - b->seq_start[s]);
        float *row = c->out + (size_t)r * c->n_heads * c->head_dim;
        for (int i = 0; i < half; i++) {
            float ang = (float)pos * c->inv_freq[i];
            float cs = cosf(ang) * c->attn_factor, sn = sinf(ang) * c->attn_factor;
            for (int h = 0; h < c->n_heads; h++) {
                float *x = row + (size_t)h * c->head_dim;
                float x1 = x[i], x2 = x[i + half];
                x[i] = x1 * cs - x2 * sn;
                x[i + half] = x2 * cs + x1 * sn;
            }
        }
    }
}

static int cpu_rope(struct engine_backend *be, struct engine_buf *x, int n_heads, int head_dim,
                    const float *inv_freq, float attn_factor, struct ny_err *err)
{
    (void)err;
    struct rows_ctx c = {.be = be, .out = x->data, .n_heads = n_heads, .head_dim = head_dim,
                         .inv_freq = inv_freq, .attn_factor = attn_factor,
                         .n = be->batch->n_rows};
    cpu_pool_run(be->pool, row_tasks(c.n), rope_task, &c, ROWS_WORK(c));
    return NY_OK;
}

static void swiglu_task(void *vctx, int task, int thread)
{
    (void)thread;
    struct rows_ctx *c = vctx;
    FOR_BLOCK_ROWS(r, task, c->n)
    for (int i = 0; i < c->dim; i++) {
        size_t k = (size_t)r * c->dim + i;
        float g = c->x[k];
        c->out[k] = (g / (1.0f + expf(-g))) * c->y[k];
    }
}

static int cpu_swiglu(struct engine_backend *be, const struct engine_buf *gate,
                      const struct engine_buf *up, int ff, struct engine_buf *out,
                      struct ny_err *err)
{
    (void)err;
    struct rows_ctx c = {.be = be, .x = gate->data, .y = up->data, .out = out->data, .dim = ff,
                         .n = be->batch->n_rows};
    cpu_pool_run(be->pool, row_tasks(c.n), swiglu_task, &c, ROWS_WORK(c));
    return NY_OK;
}

static void add_task(void *vctx, int task, int thread)
{
    (void)thread;
    struct rows_ctx *c = vctx;
    FOR_BLOCK_ROWS(r, task, c->n)
    for (int i = 0; i < c->dim; i++)
        c->out[(size_t)r * c->dim + i] += c->y[(size_t)r * c->dim + i];
}

static int cpu_add(struct engine_backend *be, struct engine_buf *x, const struct engine_buf *y,
                   int dim, struct ny_err *err)
{
    (void)err;
    struct rows_ctx c = {.be = be, .y = y->data, .out = x->data, .dim = dim,
                         .n = be->batch->n_rows};
    cpu_pool_run(be->pool, row_tasks(c.n), add_task, &c, ROWS_WORK(c));
    return NY_OK;
}

static void argmax_task(void *vctx, int task, int thread)
{
    (void)thread;
    struct rows_ctx *c = vctx;
    FOR_BLOCK_ROWS(r, task, c->n)
    {
        int best = cpu_row_argmax(c->x + (size_t)r * c->dim, c->dim);
        c->ids_out[r] = best < 0 ? 0 : best;
    }
}

static int cpu_argmax(struct engine_backend *be, const struct engine_buf *logits, int n,
                      int vocab, int32_t *ids, struct ny_err *err)
{
    (void)err;
    struct rows_ctx c = {.be = be, .x = logits->data, .ids_out = ids, .dim = vocab, .n = n};
    cpu_pool_run(be->pool, row_tasks(n), argmax_task, &c, (double)n * vocab);
    return NY_OK;
}

const struct engine_backend_ops engine_cpu_ops = {
    .name = "cpu",
    .create = cpu_create,
    .destroy = cpu_destroy,
    .buf_alloc = cpu_buf_alloc,
    .buf_free = cpu_buf_free,
    .buf_write = cpu_buf_write,
    .buf_read = cpu_buf_read,
    .weight_upload = cpu_weight_upload,
    .step_begin = cpu_step_begin,
    .embed = cpu_embed,
    .rmsnorm = cpu_rmsnorm,
    .matmul = cpu_matmul,
    .rope = cpu_rope,
    .attention = cpu_attention,
    .swiglu = cpu_swiglu,
    .add = cpu_add,
    .argmax = cpu_argmax,
    .kv_create = cpu_kv_create,
    .kv_destroy = cpu_kv_destroy,
    .kv_slot_reset = cpu_kv_slot_reset,
    .tp_create = cpu_tp_create,
    .tp_abort = cpu_tp_abort,
    .tp_destroy = cpu_tp_destroy,
    .tp_allreduce = cpu_tp_allreduce,
    .tp_argmax = cpu_tp_argmax,
    .weight_random = cpu_weight_random,
};
