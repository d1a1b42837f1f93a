/* cpu_matmul.c — y = W·x (+ unmerged LoRA) on the CPU, deterministic by construction:
 * every task covers a FIXED block of CPU_COL_BLOCK output features; a request's prefill rows are
 * one single-threaded OpenBLAS sgemm of their own, a request's single row an sgemv of its own
 * (from an aligned copy), so neither the thread count nor the other requests change a result. */
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

#include "cpu_int.h"

struct mm_ctx {
    struct engine_backend *be;
    const float *x, *w;
    float *y;
    int in, out, n_blocks;
    const struct engine_lora_term *lora;
    int n_lora, max_rank;
    /* multi-row requests: seq index; their input rows = output rows = the seq's rows */
    const int *multi;
    int n_multi;
    /* single rows: input row, output row, seq; staged aligned copy at stage + i * in_pad */
    const int *s_in, *s_out, *s_seq;
    int n_single;
    size_t in_pad;
};

static const struct engine_lora_term *mm_term(const struct mm_ctx *c, int seq)
{
    int a = c->be->batch->seq_adapter[seq];
    if (!c->lora || a < 0 || a >= c->n_lora || !c->lora[a].a)
        return NULL;
    return &c->lora[a];
}

/* Phase A: T[out row, 0..rank) = A · x for every row whose request has a LoRA term. */
static void lora_a_task(void *vctx, int task, int thread)
{
    (void)thread;
    struct mm_ctx *c = vctx;
    const struct engine_batch *b = c->be->batch;
    size_t ts = (size_t)c->max_rank;
    if (task < c->n_multi) {
        int s = c->multi[task];
        const struct engine_lora_term *t = mm_term(c, s);
        if (!t)
            return;
        int r0 = b->seq_start[s], L = b->seq_start[s + 1] - r0;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, L, t->rank, c->in, 1.0f,
                    c->x + (size_t)r0 * c->in, c->in, t->a->data, c->in, 0.0f,
                    c->be->lora_t + (size_t)r0 * ts, (int)ts);
        return;
    }
    int i = task - c->n_multi;
    const struct engine_lora_term *t = mm_term(c, c->s_seq[i]);
    if (!t)
        return;
    cblas_sgemv(CblasRowMajor, CblasNoTrans, t->rank, c->in, 1.0f, t->a->data, c->in,
                c->be->stage + (size_t)i * c->in_pad, 1, 0.0f,
                c->be->lora_t + (size_t)c->s_out[i] * ts, 1);
}

/* y[row, c0..c0+cb) += scale · B[c0..c0+cb) · T[row] — sequential dots over the rank. */
static void lora_b_add(const struct mm_ctx *c, const struct engine_lora_term *t, int orow, int c0,
                       int cb)
{
    const float *tr = c->be->lora_t + (size_t)orow * c->max_rank;
    float *yr = c->y + (size_t)orow * c->out;
    for (int j = c0; j < c0 + cb; j++) {
        const float *bj = t->b->data + (size_t)j * t->rank;
        float u = 0.0f;
        for (int k = 0; k < t->rank; k++)
            u += bj[k] * tr[k];
        yr[j] += u * t->scale;
    }
}

static void mm_task(void *vctx, int task, int thread)
{
    (void)thread;
    struct mm_ctx *c = vctx;
    const struct engine_batch *b = c->be->batch;
    int blk = task % c->n_blocks, c0 = blk * CPU_COL_BLOCK;
    int cb = c->out - c0 < CPU_COL_BLOCK ? c->out - c0 : CPU_COL_BLOCK;
    const float *wb = c->w + (size_t)c0 * c->in;
    if (task < c->n_multi * c->n_blocks) {
        int s = c->multi[task / c->n_blocks];
        int r0 = b->seq_start[s], L = b->seq_start[s + 1] - r0;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, L, cb, c->in, 1.0f,
                    c->x + (size_t)r0 * c->in, c->in, wb, c->in, 0.0f,
                    c->y + (size_t)r0 * c->out + c0, c->out);
        const struct engine_lora_term *t = mm_term(c, s);
        if (t)
            for (int r = r0; r < r0 + L; r++)
                lora_b_add(c, t, r, c0, cb);
        return;
    }
    for (int i = 0; i < c->n_single; i++) {
        cblas_sgemv(CblasRowMajor, CblasNoTrans, cb, c->in, 1.0f, wb, c->in,
                    c->be->stage + (size_t)i * c->in_pad, 1, 0.0f,
                    c->y + (size_t)c->s_out[i] * c->out + c0, 1);
        const struct engine_lora_term *t = mm_term(c, c->s_seq[i]);
        if (t)
            lora_b_add(c, t, c->s_out[i], c0, cb);
    }
}

/* Sort the step's rows into multi-row requests and single rows. */
static int mm_plan(struct mm_ctx *c, const int *rows, int n_out_rows, struct ny_err *err)
{
    struct engine_backend *be = c->be;
    const struct engine_batch *b = be->batch;
    size_t n_items = (size_t)b->n_seqs + 3 * (size_t)(rows ? n_out_rows : b->n_rows);
    int rc = cpu_grow((void **)&be->work, &be->work_cap, n_items + 1, sizeof(int), err);
    if (rc != NY_OK)
        return rc;
    int *multi = be->work, *s_in = multi + b->n_seqs;
    int cap = rows ? n_out_rows : b->n_rows;
    int *s_out = s_in + cap, *s_seq = s_out + cap;
    c->n_multi = c->n_single = 0;
    if (rows) {
        for (int i = 0; i < n_out_rows; i++) {
            if (rows[i] < 0 || rows[i] >= b->n_rows)
                return NY_ERR(err, NY_E_INTERNAL, "cpu: matmul row %d outside the batch", rows[i]);
            s_in[c->n_single] = rows[i];
            s_out[c->n_single] = i;
            s_seq[c->n_single++] = be->row_seq[rows[i]];
        }
    } else {
        for (int s = 0; s < b->n_seqs; s++) {
            int L = b->seq_start[s + 1] - b->seq_start[s];
            if (L > 1) {
                multi[c->n_multi++] = s;
            } else if (L == 1) {
                s_in[c->n_single] = s_out[c->n_single] = b->seq_start[s];
                s_seq[c->n_single++] = s;
            }
        }
    }
    c->multi = multi;
    c->s_in = s_in;
    c->s_out = s_out;
    c->s_seq = s_seq;
    c->in_pad = ((size_t)c->in + 15) & ~(size_t)15;
    size_t stage_n;
    if (ny_mul_overflow(c->in_pad, (size_t)c->n_single + 1, &stage_n))
        return NY_ERR(err, NY_E_RANGE, "cpu: matmul staging overflows");
    rc = cpu_grow((void **)&be->stage, &be->stage_cap, stage_n, sizeof(float), err);
    if (rc != NY_OK)
        return rc;
    for (int i = 0; i < c->n_single; i++)
        memcpy(be->stage + (size_t)i * c->in_pad, c->x + (size_t)s_in[i] * c->in,
               (size_t)c->in * sizeof(float));
    return NY_OK;
}

int cpu_matmul(struct engine_backend *be, const struct engine_buf *x, int in,
               const struct engine_buf *w, int out, const struct engine_lora_term *lora,
               int n_lora, const int *rows, int n_out_rows, struct engine_buf *y,
               struct ny_err *err)
{
    if (w->rows != (size_t)out || w->cols != (size_t)in)
        return NY_ERR(err, NY_E_INTERNAL, "cpu: matmul weight is %zux%zu, expected %dx%d",
                      w->rows, w->cols, out, in);
    struct mm_ctx c = {.be = be, .x = x->data, .w = w->data, .y = y->data, .in = in, .out = out,
                       .lora = lora, .n_lora = lora ? n_lora : 0};
    c.n_blocks = (out + CPU_COL_BLOCK - 1) / CPU_COL_BLOCK;
    int rc = mm_plan(&c, rows, n_out_rows, err);
    if (rc != NY_OK)
        return rc;
    int any_lora = 0;
    for (int a = 0; a < c.n_lora; a++) {
        if (lora[a].a && lora[a].rank > c.max_rank)
            c.max_rank = lora[a].rank;
        if (lora[a].a)
            any_lora = 1;
    }
    if (any_lora) {
        size_t n_t, n_rows_t = (size_t)(rows ? n_out_rows : be->batch->n_rows);
        if (ny_mul_overflow(n_rows_t + 1, (size_t)c.max_rank, &n_t))
            return NY_ERR(err, NY_E_RANGE, "cpu: LoRA work space overflows");
        rc = cpu_grow((void **)&be->lora_t, &be->lora_t_cap, n_t, sizeof(float), err);
        if (rc != NY_OK)
            return rc;
        cpu_pool_run(be->pool, c.n_multi + c.n_single, lora_a_task, &c,
                     (double)n_rows_t * in * c.max_rank);
    } else {
        c.lora = NULL;
    }
    double rows_done = rows ? n_out_rows : be->batch->n_rows;
    cpu_pool_run(be->pool, c.n_multi * c.n_blocks + (c.n_single ? c.n_blocks : 0), mm_task, &c,
                 rows_done * in * out);
    return NY_OK;
}
