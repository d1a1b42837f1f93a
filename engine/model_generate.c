/* model_generate.c — greedy decoding of a batch of requests with a deterministic schedule: the
 * order of admission depends only on the requests and options, never on timing; each step runs the
 * prompts of newly admitted requests and one token of every active one (under tensor parallelism,
 * a step with prompts runs them alone). */
#include <stdlib.h>
#include <string.h>

#include "engine_model_int.h"

#define GEN_DEFAULT_BATCH 16
/* Prompt rows admitted per step (one longer prompt still goes alone): on the CPU, and on a GPU,
 * whose prefill products run request by request whatever the step (so a larger step costs nothing
 * a row) and where a step of many prompts lets tensor-parallel sums overlap the products. */
#define GEN_STEP_ROWS 2048
#define GEN_STEP_ROWS_GPU 65536

/* A/B timing of the schedule (every schedule gives the same bits): NY_GEN_STEP_ROWS=N prompt rows
 * a step on any backend; NY_GEN_TP_MIXED=1 lets a tensor-parallel step mix prompts and decode
 * rows. Read once (the ranks' threads may race here: they store the same values). */
static long gen_env(const char *name, long *cache) /* 1..2^24, or 0: unset or not a count */
{
    long v = __atomic_load_n(cache, __ATOMIC_RELAXED);
    if (v < 0) {
        const char *e = getenv(name);
        char *end = NULL;
        long x = e && *e ? strtol(e, &end, 10) : 0;
        v = x >= 1 && x <= (1L << 24) && end && !*end ? x : 0;
        __atomic_store_n(cache, v, __ATOMIC_RELAXED);
    }
    return v;
}

struct gen_req {
    int state;             /* 0 pending, 1 active, 2 done */
    int slot;
    int pos;               /* tokens of this request in its KV slot */
    int32_t *out;          /* [max_new] */
    size_t n_out;
    float *logits;         /* first-step logits or NULL */
    int eos;
};

struct gen {
    struct engine_model *m;        /* this rank's model */
    struct gen *lead;              /* rank 0's: owns the first-logits arrays */
    const struct engine_request *reqs;
    size_t n;
    const struct engine_gen_opts *o;
    struct gen_req *r;
    int *free_slots, n_free;
    /* the current step */
    int *seq_start, *seq_slot, *seq_pos0, *seq_adapter, *seq_req;
    int32_t *ids, *next;
    size_t cap_ids;
};

static int check_requests(const struct engine_model *m, const struct engine_request *reqs,
                          size_t n, const struct engine_gen_opts *o, struct ny_err *err)
{
    if (m->poisoned)
        return NY_ERR(err, NY_E_STATE, "the model is unusable after an earlier failure");
    if (o->max_new_tokens < 1 || o->max_new_tokens > (1 << 20))
        return NY_ERR(err, NY_E_INVALID, "max_new_tokens %d is outside 1..%d", o->max_new_tokens,
                      1 << 20);
    for (size_t i = 0; i < n; i++) {
        const struct engine_request *q = &reqs[i];
        if (q->n_input < 1 || q->n_input > (1 << 24))
            return NY_ERR(err, NY_E_INVALID, "request %zu: needs 1..%d input ids, has %zu", i,
                          1 << 24, q->n_input);
        if (q->adapter < -1 || q->adapter >= m->n_adapters)
            return NY_ERR(err, NY_E_INVALID, "request %zu: adapter index %d does not exist", i,
                          q->adapter);
        for (size_t k = 0; k < q->n_input; k++)
            if (q->input_ids[k] < 0 || q->input_ids[k] >= m->cfg.vocab)
                return NY_ERR(err, NY_E_RANGE, "request %zu: input id %d at %zu is outside the "
                              "vocabulary (0..%d)", i, (int)q->input_ids[k], k, m->cfg.vocab - 1);
    }
    return NY_OK;
}

static int is_eos(const struct engine_model *m, int32_t id)
{
    for (int k = 0; k < m->cfg.n_eos; k++)
        if (m->cfg.eos_ids[k] == id)
            return 1;
    return 0;
}

/* Build the next step: every active request's last token, then pending ones in order while slots
 * and the row budget last. Under tensor parallelism a step that admits prompts takes no decode
 * rows (the active requests wait one step): the ranks' sums of a step of prompts alone overlap
 * its products (engine/cuda/cuda_tp_overlap.cu), and no row's result depends on its step.
 * Returns the number of requests in the step. */
static int gen_plan(struct gen *g, int *n_rows_out, struct ny_err *err)
{
    static long env_rows = -1, env_mixed = -1;
    int s = 0, rows = 0, prompt_rows = 0, admit_only = 0;
    const int cpu = !strcmp(g->m->ops->name, "cpu");
    const int mixed = gen_env("NY_GEN_TP_MIXED", &env_mixed) != 0;
    const long want = gen_env("NY_GEN_STEP_ROWS", &env_rows);
    const int budget = want ? (int)want : cpu ? GEN_STEP_ROWS : GEN_STEP_ROWS_GPU;
    for (size_t i = 0; i < g->n && g->m->tp > 1 && !mixed && g->n_free > 0 && !admit_only; i++)
        admit_only = g->r[i].state == 0;
    for (size_t i = 0; i < g->n; i++) {
        struct gen_req *r = &g->r[i];
        int L;
        if (r->state == 1 && !admit_only) {
            L = 1;
        } else if (r->state == 0 && g->n_free > 0) {
            L = (int)g->reqs[i].n_input;
            if (prompt_rows > 0 && prompt_rows + L > budget)
                continue;
            prompt_rows += L;
            r->slot = g->free_slots[--g->n_free];
            r->state = 1;
            r->pos = 0;
        } else {
            continue;
        }
        if ((size_t)rows + (size_t)L > g->cap_ids) {
            size_t cap = ((size_t)rows + L) * 2;
            int32_t *ids = ny_reallocarray(g->ids, cap, sizeof *ids);
            if (!ids)
                return NY_ERR(err, NY_E_NOMEM, "out of memory");
            g->ids = ids;
            g->cap_ids = cap;
        }
        if (r->pos == 0)
            memcpy(g->ids + rows, g->reqs[i].input_ids, (size_t)L * sizeof(int32_t));
        else
            g->ids[rows] = r->out[r->n_out - 1];
        g->seq_start[s] = rows;
        g->seq_slot[s] = r->slot;
        g->seq_pos0[s] = r->pos;
        g->seq_adapter[s] = g->reqs[i].adapter;
        g->seq_req[s] = (int)i;
        rows += L;
        s++;
    }
    g->seq_start[s] = rows;
    *n_rows_out = rows;
    return s;
}

/* Take the step's argmax ids (and first logits: each rank its vocabulary shard, into the
 * lead's arrays); retire finished requests. */
static int gen_advance(struct gen *g, struct engine_fwd *f, const struct engine_batch *b,
                       struct ny_err *err)
{
    struct engine_model *m = g->m;
    int lv = m->l_vocab;
    for (int s = 0; s < b->n_seqs; s++) {
        struct gen_req *r = &g->r[g->seq_req[s]];
        float *dst = g->lead->r[g->seq_req[s]].logits;
        int rc;
        if (r->n_out == 0 && g->o->first_logits &&
            (rc = m->ops->buf_read(m->be, f->logits, (size_t)s * lv, dst + m->vocab_off,
                                   (size_t)lv, err)) != NY_OK)
            return rc;
        r->pos += b->seq_start[s + 1] - b->seq_start[s];
        r->out[r->n_out++] = g->next[s];
        r->eos = !g->o->ignore_eos && is_eos(m, g->next[s]);
        if (r->eos || r->n_out == (size_t)g->o->max_new_tokens) {
            r->state = 2;
            g->free_slots[g->n_free++] = r->slot;
            if ((rc = m->ops->kv_slot_reset(m->be, f->kv, r->slot, err)) != NY_OK)
                return rc;
        }
    }
    return NY_OK;
}

static int gen_run(struct gen *g, struct engine_fwd *f, struct ny_err *err)
{
    for (;;) {
        int n_rows = 0, rc;
        int n_seqs = gen_plan(g, &n_rows, err);
        if (n_seqs < 0)
            return n_seqs;
        if (n_seqs == 0)
            return NY_OK;
        struct engine_batch b = {n_rows,       n_seqs,        g->seq_start,
                                 g->seq_slot,  g->seq_pos0,   g->seq_adapter};
        if ((rc = engine_fwd_next(f, &b, g->ids, g->next, err)) ||
            (rc = gen_advance(g, f, &b, err)))
            return rc;
    }
}

static int gen_alloc(struct gen *g, int n_slots, struct ny_err *err)
{
    size_t n = g->n, ns = (size_t)n_slots + 1;
    g->r = ny_calloc(n, sizeof *g->r);
    g->free_slots = ny_calloc(ns, sizeof(int));
    int **arrs[] = {&g->seq_start, &g->seq_slot, &g->seq_pos0, &g->seq_adapter, &g->seq_req};
    for (size_t i = 0; i < sizeof arrs / sizeof arrs[0]; i++)
        *arrs[i] = ny_calloc(ns, sizeof(int));
    g->next = ny_calloc(ns, sizeof(int32_t));
    if (!g->r || !g->free_slots || !g->seq_start || !g->seq_slot || !g->seq_pos0 ||
        !g->seq_adapter || !g->seq_req || !g->next)
        return NY_ERR(err, NY_E_NOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        g->r[i].out = ny_calloc((size_t)g->o->max_new_tokens, sizeof(int32_t));
        int want = g->o->first_logits && g == g->lead;
        g->r[i].logits = want ? ny_calloc((size_t)g->m->cfg.vocab, sizeof(float)) : NULL;
        if (!g->r[i].out || (want && !g->r[i].logits))
            return NY_ERR(err, NY_E_NOMEM, "out of memory for the results");
    }
    for (int s = 0; s < n_slots; s++) /* slot 0 handed out first */
        g->free_slots[g->n_free++] = n_slots - 1 - s;
    return NY_OK;
}

static void gen_free(struct gen *g)
{
    for (size_t i = 0; g->r && i < g->n; i++) {
        ny_free(g->r[i].out);
        ny_free(g->r[i].logits);
    }
    ny_free(g->r);
    ny_free(g->free_slots);
    ny_free(g->seq_start);
    ny_free(g->seq_slot);
    ny_free(g->seq_pos0);
    ny_free(g->seq_adapter);
    ny_free(g->seq_req);
    ny_free(g->ids);
    ny_free(g->next);
}

/* One call's state shared by the ranks: each rank decodes the same schedule on its shard. */
struct gen_call {
    struct gen *gens;              /* [tp] */
    struct engine_kv_shape kvs;
};

static int gen_rank(struct engine_model *rm, void *ctx, struct ny_err *err)
{
    struct gen_call *c = ctx;
    struct engine_kv_shape kvs = c->kvs;
    kvs.n_kv_heads = rm->l_kv_heads;
    struct engine_fwd f;
    int rc = engine_fwd_init(&f, rm, &kvs, err);
    if (rc != NY_OK)
        return rc;
    rc = gen_run(&c->gens[rm->rank], &f, err);
    engine_fwd_fini(&f);
    return rc;
}

int engine_generate(struct engine_model *m, const struct engine_request *reqs, size_t n,
                    const struct engine_gen_opts *opts, struct engine_result *results,
                    struct ny_err *err)
{
    int rc = check_requests(m, reqs, n, opts, err);
    if (rc != NY_OK || n == 0)
        return rc;
    int n_slots = opts->max_batch > 0 ? opts->max_batch : GEN_DEFAULT_BATCH;
    if ((size_t)n_slots > n)
        n_slots = (int)n;
    size_t max_in = 0;
    for (size_t i = 0; i < n; i++)
        max_in = reqs[i].n_input > max_in ? reqs[i].n_input : max_in;
    int tp = m->tp > 1 ? m->tp : 1;
    struct gen_call call = {.kvs = {m->cfg.n_layers, m->cfg.n_kv_heads, m->cfg.head_dim, n_slots,
                                    (int)max_in + opts->max_new_tokens}};
    call.gens = ny_calloc((size_t)tp, sizeof *call.gens);
    if (!call.gens)
        return NY_ERR(err, NY_E_NOMEM, "out of memory");
    for (int k = 0; k < tp && rc == NY_OK; k++) {
        struct gen *g = &call.gens[k];
        *g = (struct gen){.m = tp > 1 ? m->ranks[k] : m, .lead = &call.gens[0], .reqs = reqs,
                          .n = n, .o = opts};
        rc = gen_alloc(g, n_slots, err);
    }
    if (rc == NY_OK) {
        rc = engine_tp_run(m, gen_rank, &call, err);
        if (rc == NY_E_DEVICE || rc == NY_E_INTERNAL || (rc != NY_OK && tp > 1))
            m->poisoned = 1; /* a failed group stays aborted */
    }
    struct gen *g = &call.gens[0];
    if (rc == NY_OK) {
        for (size_t i = 0; i < n; i++) {
            results[i].output_ids = g->r[i].out;
            results[i].n_output = g->r[i].n_out;
            results[i].stopped_on_eos = g->r[i].eos;
            results[i].first_logits = g->r[i].logits;
            g->r[i].out = NULL;
            g->r[i].logits = NULL;
        }
    }
    for (int k = 0; k < tp; k++)
        gen_free(&call.gens[k]);
    ny_free(call.gens);
    return rc;
}

void engine_result_fini(struct engine_result *r)
{
    if (!r)
        return;
    ny_free(r->output_ids);
    ny_free(r->first_logits);
    memset(r, 0, sizeof *r);
}
