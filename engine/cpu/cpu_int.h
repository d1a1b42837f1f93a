/* cpu_int.h — private to engine/cpu/: the worker pool the CPU backend parallelises over. */
#ifndef NY_ENGINE_CPU_INT_H
#define NY_ENGINE_CPU_INT_H

#include "common.h"
#include "../engine_backend_int.h"

struct cpu_pool;

/* A task writes only its own outputs; which thread runs it never changes what it computes. */
typedef void (*cpu_task_fn)(void *ctx, int task, int thread);

/* n_threads >= 1 (the caller counts as one; n_threads - 1 workers are started). */
int cpu_pool_create(int n_threads, struct cpu_pool **out, struct ny_err *err);
void cpu_pool_destroy(struct cpu_pool *p); /* NULL is a no-op */
/* Run fn(ctx, t, thread) for t in [0, n_tasks) across the pool (thread in [0, n_threads): for
 * per-thread scratch); returns when all are done. `work` estimates the job's multiply-adds: a
 * job under CPU_POOL_MIN_WORK runs on the calling thread alone (waking workers would cost more).
 * Either way the same tasks compute the same values. */
void cpu_pool_run(struct cpu_pool *p, int n_tasks, cpu_task_fn fn, void *ctx, double work);
#define CPU_POOL_MIN_WORK 65536.0

/* ---- the backend's objects (shared by cpu_backend.c, cpu_matmul.c, cpu_attention.c) ---- */
/* Output features per matmul task. Fixed: the partition must not depend on the thread count. */
#define CPU_COL_BLOCK 64
/* Rows per task of the row-wise ops (norm, rope, swiglu, add, argmax). */
#define CPU_ROW_BLOCK 8

struct engine_buf {
    float *data;
    size_t n;      /* floats */
    size_t rows;   /* weights: [rows, cols]; activations: rows = 1, cols = n */
    size_t cols;
};

struct engine_kv {
    struct engine_kv_shape shape;
    size_t kvdim;  /* n_kv_heads * head_dim */
    float *k, *v;  /* [n_slots][n_layers][max_tokens][kvdim] */
    int *len;      /* [n_slots] tokens stored per slot */
};

struct engine_backend {
    struct cpu_pool *pool;
    int n_threads;
    const struct engine_batch *batch;
    int *row_seq;         /* [n_rows] request index of each row */
    size_t row_seq_cap;
    float *scratch;       /* per thread: scratch_per floats */
    size_t scratch_per;
    float *stage;         /* matmul: single rows copied to aligned rows (stage_cap floats) */
    size_t stage_cap;
    float *lora_t;        /* matmul: A·x of every output row (lora_t_cap floats) */
    size_t lora_t_cap;
    int *work;            /* matmul: work lists (work_cap ints) */
    size_t work_cap;
    struct engine_tp *tp; /* the tensor-parallel group (cpu_tp.c), NULL when alone */
    int tp_rank;
};

/* Grow a backend work array to at least n elements of size sz (contents lost). */
int cpu_grow(void **p, size_t *cap, size_t n, size_t sz, struct ny_err *err);

/* Per-thread scratch of at least n floats (64-byte aligned), valid until the next reserve. */
int cpu_scratch_reserve(struct engine_backend *be, size_t n, struct ny_err *err);
float *cpu_scratch(struct engine_backend *be, int thread);

int cpu_matmul(struct engine_backend *be, const struct engine_buf *x, int in,
               const struct engine_buf *w, int out, const struct engine_lora_term *lora,
               int n_lora, const int *rows, int n_out_rows, struct engine_buf *y,
               struct ny_err *err);
int cpu_attention(struct engine_backend *be, struct engine_kv *kv, int layer,
                  const struct engine_buf *q, const struct engine_buf *k,
                  const struct engine_buf *v, int n_heads, float scale, struct engine_buf *out,
                  struct ny_err *err);
int cpu_kv_create(struct engine_backend *be, const struct engine_kv_shape *shape,
                  struct engine_kv **out, struct ny_err *err);
void cpu_kv_destroy(struct engine_backend *be, struct engine_kv *kv);
int cpu_kv_slot_reset(struct engine_backend *be, struct engine_kv *kv, int slot,
                      struct ny_err *err);

/* Greedy choice over one row of n logits: the index of the largest, ties to the lowest, NaN
 * never winning; -1 when every entry is NaN. */
static inline int cpu_row_argmax(const float *l, int n)
{
    int best = -1;
    for (int j = 0; j < n; j++)
        if (l[j] == l[j] && (best < 0 || l[j] > l[best]))
            best = j;
    return best;
}

/* Tensor-parallel collectives (cpu_tp.c), see engine_backend_int.h. */
int cpu_tp_create(struct engine_backend *const *bes, int n, struct engine_tp **out,
                  struct ny_err *err);
void cpu_tp_abort(struct engine_tp *g);
void cpu_tp_destroy(struct engine_tp *g);
int cpu_tp_allreduce(struct engine_backend *be, struct engine_buf *x, int dim,
                     struct ny_err *err);
int cpu_tp_argmax(struct engine_backend *be, const struct engine_buf *logits, int n,
                  int vocab_local, int vocab_off, int32_t *ids, struct ny_err *err);

#endif
