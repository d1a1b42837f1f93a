/* model_tp.c — tensor parallelism, the generic side: which block of every weight a rank holds
 * (Megatron: q, k, v, gate, up split by output rows; o, down by input columns; lm_head by
 * vocabulary; LoRA A replicated and B split for the column-parallel projections, A split and B
 * replicated for o and down), block uploads, and running one function on every rank's thread. */
#include <pthread.h>
#include <string.h>

#include "engine_model_int.h"

int engine_tp_shard_sizes(struct engine_model *m, int tp, int rank, struct ny_err *err)
{
    const struct engine_config *c = &m->cfg;
    if (tp < 1 || rank < 0 || rank >= tp)
        return NY_ERR(err, NY_E_INVALID, "tensor parallel: rank %d of %d", rank, tp);
    /* key/value heads are split when there are enough, else each is copied onto the ranks of
     * its query heads (tp a multiple of their number) */
    if (c->n_heads % tp || c->intermediate % tp || (c->n_kv_heads % tp && tp % c->n_kv_heads))
        return NY_ERR(err, NY_E_UNSUPPORTED,
                      "--tp %d does not fit this model (%d attention heads, %d key/value heads, "
                      "intermediate size %d): tp must divide the heads and the intermediate "
                      "size, and divide or be a multiple of the key/value heads",
                      tp, c->n_heads, c->n_kv_heads, c->intermediate);
    int per = (c->vocab + tp - 1) / tp;
    if ((long)per * (tp - 1) >= c->vocab)
        return NY_ERR(err, NY_E_UNSUPPORTED, "--tp %d: a vocabulary of %d ids leaves a rank "
                      "without any", tp, c->vocab);
    m->tp = tp;
    m->rank = rank;
    m->l_heads = c->n_heads / tp;
    if (c->n_kv_heads % tp == 0) {
        m->l_kv_heads = c->n_kv_heads / tp;
        m->kv_head0 = rank * m->l_kv_heads;
    } else {
        m->l_kv_heads = 1;
        m->kv_head0 = rank / (tp / c->n_kv_heads);
    }
    m->l_ff = c->intermediate / tp;
    m->vocab_off = rank * per;
    m->l_vocab = c->vocab - m->vocab_off < per ? c->vocab - m->vocab_off : per;
    return NY_OK;
}

static int column_parallel(enum engine_proj p)
{
    return p != ENGINE_O && p != ENGINE_DOWN;
}

void engine_proj_shape_local(const struct engine_model *m, enum engine_proj p, int *out, int *in)
{
    int hd = m->cfg.head_dim, H = m->cfg.hidden;
    switch (p) {
    case ENGINE_Q: *out = m->l_heads * hd, *in = H; break;
    case ENGINE_K:
    case ENGINE_V: *out = m->l_kv_heads * hd, *in = H; break;
    case ENGINE_O: *out = H, *in = m->l_heads * hd; break;
    case ENGINE_GATE:
    case ENGINE_UP: *out = m->l_ff, *in = H; break;
    default: *out = H, *in = m->l_ff; break;
    }
}

void engine_proj_block(const struct engine_model *m, enum engine_proj p, int lora, int r,
                       int *row0, int *nrows, int *col0, int *ncols)
{
    int out, in, lo, li;
    engine_proj_shape(&m->cfg, p, &out, &in);
    engine_proj_shape_local(m, p, &lo, &li);
    int split_rows = column_parallel(p), rows = out, cols = in;
    if (lora == 'A')
        rows = r; /* A [r, in]: only its input columns can be split */
    else if (lora == 'B')
        cols = r; /* B [out, r]: only its output rows can be split */
    *row0 = 0, *nrows = rows, *col0 = 0, *ncols = cols;
    if (split_rows && lora != 'A') {
        *row0 = p == ENGINE_K || p == ENGINE_V ? m->kv_head0 * m->cfg.head_dim : m->rank * lo;
        *nrows = lo;
    } else if (!split_rows && lora != 'B') {
        *col0 = m->rank * li;
        *ncols = li;
    }
}

int engine_upload_block(struct engine_model *m, enum engine_dtype dt, const void *src,
                        size_t rows, size_t cols, int row0, int nrows, int col0, int ncols,
                        struct engine_buf **out, struct ny_err *err)
{
    size_t esz = engine_dtype_size(dt);
    if (row0 < 0 || nrows < 1 || col0 < 0 || ncols < 1 || (size_t)row0 + nrows > rows ||
        (size_t)col0 + ncols > cols)
        return NY_ERR(err, NY_E_INTERNAL, "weight block [%d +%d, %d +%d] outside [%zu, %zu]",
                      row0, nrows, col0, ncols, rows, cols);
    const unsigned char *s = src;
    if (col0 == 0 && (size_t)ncols == cols) /* whole rows: a contiguous run of the source */
        return m->ops->weight_upload(m->be, dt, s + (size_t)row0 * cols * esz, (size_t)nrows,
                                     cols, out, err);
    unsigned char *stage = ny_malloc((size_t)nrows * ncols * esz);
    if (!stage)
        return NY_ERR(err, NY_E_NOMEM, "out of memory staging a %d x %d weight block", nrows,
                      ncols);
    for (int i = 0; i < nrows; i++) /* memcpy: the source may be unaligned */
        memcpy(stage + (size_t)i * ncols * esz, s + (((size_t)row0 + i) * cols + col0) * esz,
               (size_t)ncols * esz);
    int rc = m->ops->weight_upload(m->be, dt, stage, (size_t)nrows, (size_t)ncols, out, err);
    ny_free(stage);
    return rc;
}

/* ---- one function on every rank ------------------------------------------------------------ */
struct tp_job {
    struct engine_model *lead, *m;
    engine_rank_fn fn;
    void *ctx;
    struct ny_err err;
    int rc;
};

static void tp_job_run(struct tp_job *j)
{
    j->rc = j->fn(j->m, j->ctx, &j->err);
    if (j->rc != NY_OK && j->lead->group && j->lead->ops->tp_abort)
        j->lead->ops->tp_abort(j->lead->group); /* nobody waits for this rank any more */
}

static void *tp_thread(void *arg)
{
    tp_job_run(arg);
    return NULL;
}

int engine_tp_run(struct engine_model *lead, engine_rank_fn fn, void *ctx, struct ny_err *err)
{
    if (lead->tp <= 1)
        return fn(lead, ctx, err);
    int n = lead->tp, started = 1, rc = NY_OK;
    struct tp_job *jobs = ny_calloc((size_t)n, sizeof *jobs);
    pthread_t *th = ny_calloc((size_t)n, sizeof *th);
    if (!jobs || !th) {
        ny_free(jobs);
        ny_free(th);
        return NY_ERR(err, NY_E_NOMEM, "out of memory starting %d rank threads", n);
    }
    for (int k = 0; k < n; k++) {
        jobs[k] = (struct tp_job){.lead = lead, .m = lead->ranks[k], .fn = fn, .ctx = ctx};
        ny_err_init(&jobs[k].err);
    }
    for (; started < n; started++)
        if (pthread_create(&th[started], NULL, tp_thread, &jobs[started]) != 0)
            break;
    if (started < n) { /* the started ranks would wait for the missing ones: abort them */
        if (lead->group && lead->ops->tp_abort)
            lead->ops->tp_abort(lead->group);
        rc = NY_ERR(err, NY_E_NOMEM, "cannot start the thread of rank %d", started);
    } else {
        tp_job_run(&jobs[0]);
    }
    for (int k = 1; k < started; k++)
        pthread_join(th[k], NULL);
    if (rc == NY_OK) {
        /* report the cause, not the ranks that stopped because of the abort */
        int pick = -1;
        for (int k = 0; k < n && pick < 0; k++)
            if (jobs[k].rc != NY_OK && jobs[k].rc != NY_E_STATE)
                pick = k;
        for (int k = 0; k < n && pick < 0; k++)
            if (jobs[k].rc != NY_OK)
                pick = k;
        if (pick >= 0) {
            rc = jobs[pick].rc;
            if (err) {
                *err = jobs[pick].err;
                ny_err_prefix(err, "rank %d: ", pick);
            }
        }
    }
    ny_free(jobs);
    ny_free(th);
    return rc;
}
