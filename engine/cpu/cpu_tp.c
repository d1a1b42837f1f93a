/* cpu_tp.c — the CPU backend's tensor-parallel collectives: ranks are instances in one process,
 * each driven by its own thread, meeting at a barrier that an abort breaks. The CPU backend has
 * them to check the Megatron sharding (the same forward pass as on GPUs) without a GPU; they are
 * not meant to be fast. Sums go in rank order, element by element, as the ops table requires. */
#include <math.h>
#include <pthread.h>
#include <string.h>

#include "cpu_int.h"

struct cpu_tp_best {
    float v;
    int32_t id;  /* global id; -1: no candidate (the shard's row is all NaN) */
};

struct engine_tp {
    int n;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int arrived;
    unsigned long generation;
    int aborted;
    /* what each rank publishes for the collective in progress */
    const float **part;          /* [n] the partial buffers of tp_allreduce */
    size_t count;                /* floats each rank sums */
    float *sum;                  /* [count] the rank-order sum, grown by rank 0 */
    size_t sum_cap;
    struct cpu_tp_best **best;   /* [n] per rank, [rows] candidates of tp_argmax */
    size_t *best_cap;
};

/* Wait for every rank. NY_E_STATE once the group is aborted (now or while waiting). */
static int tp_barrier(struct engine_tp *g, struct ny_err *err)
{
    pthread_mutex_lock(&g->mu);
    if (g->aborted) {
        pthread_mutex_unlock(&g->mu);
        return NY_ERR(err, NY_E_STATE, "cpu: tensor-parallel group aborted (another rank failed)");
    }
    unsigned long gen = g->generation;
    if (++g->arrived == g->n) {
        g->arrived = 0;
        g->generation++;
        pthread_cond_broadcast(&g->cv);
    } else {
        while (gen == g->generation && !g->aborted)
            pthread_cond_wait(&g->cv, &g->mu);
    }
    int ab = gen == g->generation && g->aborted;
    pthread_mutex_unlock(&g->mu);
    if (ab)
        return NY_ERR(err, NY_E_STATE, "cpu: tensor-parallel group aborted (another rank failed)");
    return NY_OK;
}

void cpu_tp_destroy(struct engine_tp *g)
{
    if (!g)
        return;
    pthread_mutex_destroy(&g->mu);
    pthread_cond_destroy(&g->cv);
    for (int k = 0; g->best && k < g->n; k++)
        ny_free(g->best[k]);
    ny_free(g->best);
    ny_free(g->best_cap);
    ny_free(g->part);
    ny_free(g->sum);
    ny_free(g);
}

int cpu_tp_create(struct engine_backend *const *bes, int n, struct engine_tp **out,
                  struct ny_err *err)
{
    if (n < 2)
        return NY_ERR(err, NY_E_INVALID, "cpu: a tensor-parallel group needs 2 or more ranks");
    for (int k = 0; k < n; k++)
        if (bes[k]->tp)
            return NY_ERR(err, NY_E_INVALID, "cpu: rank %d is in a group already", k);
    struct engine_tp *g = ny_calloc(1, sizeof *g);
    if (!g)
        return NY_ERR(err, NY_E_NOMEM, "cpu: out of memory");
    g->n = n;
    pthread_mutex_init(&g->mu, NULL);
    pthread_cond_init(&g->cv, NULL);
    g->part = ny_calloc((size_t)n, sizeof *g->part);
    g->best = ny_calloc((size_t)n, sizeof *g->best);
    g->best_cap = ny_calloc((size_t)n, sizeof *g->best_cap);
    if (!g->part || !g->best || !g->best_cap) {
        cpu_tp_destroy(g);
        return NY_ERR(err, NY_E_NOMEM, "cpu: out of memory");
    }
    for (int k = 0; k < n; k++) {
        bes[k]->tp = g;
        bes[k]->tp_rank = k;
    }
    *out = g;
    return NY_OK;
}

void cpu_tp_abort(struct engine_tp *g)
{
    pthread_mutex_lock(&g->mu);
    g->aborted = 1;
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
}

int cpu_tp_allreduce(struct engine_backend *be, struct engine_buf *x, int dim,
                     struct ny_err *err)
{
    struct engine_tp *g = be->tp;
    if (!g)
        return NY_ERR(err, NY_E_STATE, "cpu: tp_allreduce outside a tensor-parallel group");
    size_t count = (size_t)be->batch->n_rows * (size_t)dim;
    if (count > x->n)
        return NY_ERR(err, NY_E_RANGE, "cpu: tp_allreduce of %zu floats in a buffer of %zu",
                      count, x->n);
    int rc = NY_OK;
    if (be->tp_rank == 0) { /* the lead sizes the shared sum before anyone uses it */
        g->count = count;
        rc = cpu_grow((void **)&g->sum, &g->sum_cap, count ? count : 1, sizeof(float), err);
        if (rc != NY_OK)
            cpu_tp_abort(g);
    }
    g->part[be->tp_rank] = x->data;
    if (rc == NY_OK)
        rc = tp_barrier(g, err); /* every partial published, the sum sized */
    if (rc != NY_OK)
        return rc;
    if (g->count != count) {
        cpu_tp_abort(g);
        return NY_ERR(err, NY_E_INTERNAL, "cpu: ranks disagree on the tp_allreduce size");
    }
    /* each rank sums its own stretch of elements, in rank order */
    size_t per = (count + g->n - 1) / g->n, lo = per * be->tp_rank;
    size_t hi = lo + per < count ? lo + per : count;
    for (size_t e = lo; e < hi; e++) {
        float s = g->part[0][e];
        for (int k = 1; k < g->n; k++)
            s += g->part[k][e];
        g->sum[e] = s;
    }
    if ((rc = tp_barrier(g, err)) != NY_OK) /* the whole sum written, all partials read */
        return rc;
    memcpy(x->data, g->sum, count * sizeof(float));
    return tp_barrier(g, err); /* nobody reuses sum or part before everyone has copied */
}

static int better(float v, int32_t id, const struct cpu_tp_best *b)
{
    if (isnan(v))
        return 0;
    return b->id < 0 || v > b->v || (v == b->v && id < b->id);
}

int cpu_tp_argmax(struct engine_backend *be, const struct engine_buf *logits, int n,
                  int vocab_local, int vocab_off, int32_t *ids, struct ny_err *err)
{
    struct engine_tp *g = be->tp;
    if (!g)
        return NY_ERR(err, NY_E_STATE, "cpu: tp_argmax outside a tensor-parallel group");
    if (n < 0 || vocab_local < 1 || (size_t)n * vocab_local > logits->n)
        return NY_ERR(err, NY_E_RANGE, "cpu: tp_argmax of %d x %d outside the buffer", n,
                      vocab_local);
    int k = be->tp_rank, rc = cpu_grow((void **)&g->best[k], &g->best_cap[k],
                                       (size_t)(n > 0 ? n : 1), sizeof **g->best, err);
    if (rc != NY_OK) {
        cpu_tp_abort(g);
        return rc;
    }
    for (int r = 0; r < n; r++) { /* this shard's candidate, then the ranks' in rank order */
        const float *l = logits->data + (size_t)r * vocab_local;
        int j = cpu_row_argmax(l, vocab_local);
        g->best[k][r] = j < 0 ? (struct cpu_tp_best){0.0f, -1}
                              : (struct cpu_tp_best){l[j], vocab_off + j};
    }
    if ((rc = tp_barrier(g, err)) != NY_OK)
        return rc;
    for (int r = 0; r < n; r++) {
        struct cpu_tp_best b = {0.0f, -1};
        for (int q = 0; q < g->n; q++)
            if (g->best[q][r].id >= 0 && better(g->best[q][r].v, g->best[q][r].id, &b))
                b = g->best[q][r];
        ids[r] = b.id < 0 ? 0 : b.id;
    }
    return tp_barrier(g, err); /* the candidates stay until every rank has read them */
}
