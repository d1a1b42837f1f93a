/* dataset_export.c — prompt export: one JSONL row per sampled record, the requests that
 * `nyxaudit generate` reads ({"id","messages"}; the other fields are for audits and training).
 * File stores are read by several workers, each with its own SQLite connection. */
#include <pthread.h>
#include <string.h>

#include "datasets_int.h"

#define MAX_THREADS 16

char *dataset_prompt_jsonl(const struct dataset_prompt *p, const struct dataset_record *r)
{
    json_t *m = json_loads(p->messages_json, 0, NULL);
    json_t *ids = json_array();
    for (size_t i = 0; ids && i < p->nretrieved; i++)
        json_array_append_new(ids, json_string(p->retrieved_ids[i]));
    json_t *row = m && ids ? json_pack("{ss sO sO ss ss s{sIsIsI} sI sI sb}", "id", p->id,
                                       "messages", m, "retrieved_ids", ids, "format", p->format,
                                       "gold", r && r->gold_line ? r->gold_line : "",
                                       "leakage_blocked", "hash", (json_int_t)p->blocked_hash,
                                       "cosine", (json_int_t)p->blocked_cosine, "fingerprint",
                                       (json_int_t)p->blocked_fingerprint, "ntokens",
                                       (json_int_t)p->ntokens, "examples_dropped",
                                       (json_int_t)p->examples_dropped, "report_trimmed",
                                       p->report_trimmed)
                           : NULL;
    char *s = row ? ny_json_dumps(row, 0) : NULL;
    json_decref(row);
    json_decref(m);
    json_decref(ids);
    return s;
}

/* One prompt as a JSONL row; blocked counts added to tot. */
static int export_one(struct dataset_store *st, const char *id,
                      const struct dataset_prompt_opts *o, char **line, size_t tot[3],
                      struct ny_err *err)
{
    struct dataset_prompt *p = NULL;
    struct dataset_record *r = NULL;
    int rc = dataset_prompt_build(st, id, o, &p, err);
    if (!rc)
        rc = dataset_record_get(st, id, &r, err);
    if (!rc && !(*line = dataset_prompt_jsonl(p, r)))
        rc = NY_ERR(err, NY_E_NOMEM, "prompt for %s: out of memory", id);
    if (!rc) {
        tot[0] += p->blocked_hash;
        tot[1] += p->blocked_cosine;
        tot[2] += p->blocked_fingerprint;
    }
    dataset_prompt_destroy(p);
    dataset_record_destroy(r);
    return rc;
}

struct worker {
    pthread_t thread;
    const char *path; /* the store's file, opened anew by the worker */
    struct dataset_store *st; /* or the caller's store (worker 0 of a one-worker export) */
    char **ids, **lines;
    size_t nids, first, step;
    const struct dataset_prompt_opts *o;
    size_t tot[3];
    size_t failed_at; /* index of the first failure, or nids */
    int rc;
    struct ny_err err;
};

static void *work(void *arg)
{
    struct worker *w = arg;
    struct dataset_store *st = w->st;
    w->failed_at = w->nids;
    if (!st && (w->rc = dataset_store_open(w->path, &st, &w->err))) {
        w->failed_at = w->first;
        return NULL;
    }
    for (size_t i = w->first; i < w->nids; i += w->step)
        if ((w->rc = export_one(st, w->ids[i], w->o, &w->lines[i], w->tot, &w->err))) {
            w->failed_at = i;
            break;
        }
    if (!w->st)
        dataset_store_close(st);
    return NULL;
}

/* Build every row with nw workers; the error of the earliest failing record wins. */
static int run_workers(struct dataset_store *st, char **ids, size_t nids,
                       const struct dataset_prompt_opts *o, char **lines, size_t tot[3],
                       struct ny_err *err)
{
    size_t nw = o->threads ? o->threads : 1;
    if (nw > MAX_THREADS)
        nw = MAX_THREADS;
    if (nw > nids)
        nw = nids;
    if (!strcmp(st->path, ":memory:") || !*st->path)
        nw = 1; /* a memory store has one connection */
    struct worker w[MAX_THREADS];
    size_t started = 0;
    for (size_t t = 0; t < nw; t++) {
        memset(&w[t], 0, sizeof w[t]);
        ny_err_init(&w[t].err);
        w[t].path = st->path;
        w[t].st = nw == 1 ? st : NULL;
        w[t].ids = ids;
        w[t].lines = lines;
        w[t].nids = nids;
        w[t].first = t;
        w[t].step = nw;
        w[t].o = o;
    }
    if (nw == 1) {
        work(&w[0]);
        started = 1;
    } else {
        for (; started < nw; started++)
            if (pthread_create(&w[started].thread, NULL, work, &w[started]))
                break;
        for (size_t t = 0; t < started; t++)
            pthread_join(w[t].thread, NULL);
    }
    if (started < nw)
        return NY_ERR(err, NY_E_INTERNAL, "prompt export: cannot start worker threads");
    size_t worst = nids;
    int rc = NY_OK;
    for (size_t t = 0; t < nw; t++) {
        for (int k = 0; k < 3; k++)
            tot[k] += w[t].tot[k];
        if (w[t].rc && w[t].failed_at < worst) {
            worst = w[t].failed_at;
            rc = w[t].rc;
            if (err)
                *err = w[t].err;
        }
    }
    return rc;
}

int dataset_prompts_export(struct dataset_store *st, const char *split, size_t n, uint64_t seed,
                           const struct dataset_prompt_opts *o, const char *path,
                           size_t blocked[3], struct ny_err *err)
{
    struct dataset_prompt_opts defaults;
    if (!o) {
        dataset_prompt_opts_init(&defaults);
        o = &defaults;
    }
    char **ids;
    size_t nids;
    int rc = dataset_store_sample(st, split, n, seed, &ids, &nids, err);
    if (rc)
        return rc;
    if (nids == 0) {
        dataset_ids_free(ids, nids);
        return NY_ERR(err, NY_E_NOTFOUND, "%s: split \"%s\" has no records", path, split);
    }
    char **lines = ny_calloc(nids, sizeof *lines);
    size_t tot[3] = {0, 0, 0};
    if (!lines)
        rc = NY_ERR(err, NY_E_NOMEM, "%s: out of memory", path);
    else
        rc = run_workers(st, ids, nids, o, lines, tot, err);
    struct ny_buf b;
    ny_buf_init(&b);
    for (size_t i = 0; lines && i < nids; i++) {
        if (!rc) {
            ny_buf_puts(&b, lines[i]);
            ny_buf_puts(&b, "\n");
        }
        ny_free(lines[i]);
    }
    ny_free(lines);
    dataset_ids_free(ids, nids);
    if (!rc && b.failed)
        rc = NY_ERR(err, NY_E_NOMEM, "%s: out of memory", path);
    if (!rc)
        rc = ny_file_write_atomic(path, b.data, b.len, err);
    ny_buf_fini(&b);
    if (!rc && blocked)
        memcpy(blocked, tot, sizeof tot);
    return rc;
}
