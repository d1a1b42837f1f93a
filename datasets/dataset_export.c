/* dataset_export.c — prompt export: one JSONL row per sampled record, the requests that
 * `nyxaudit generate` reads ({"id","messages"}; the other fields are for audits and training). */
#include <string.h>

#include "datasets_int.h"

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

int dataset_prompts_export(struct dataset_store *st, const char *split, size_t n, uint64_t seed,
                           const struct dataset_prompt_opts *o, const char *path,
                           size_t blocked[3], struct ny_err *err)
{
    char **ids;
    size_t nids;
    int rc = dataset_store_sample(st, split, n, seed, &ids, &nids, err);
    if (rc)
        return rc;
    if (nids == 0) {
        dataset_ids_free(ids, nids);
        return NY_ERR(err, NY_E_NOTFOUND, "%s: split \"%s\" has no records", path, split);
    }
    struct ny_buf b;
    ny_buf_init(&b);
    size_t tot[3] = {0, 0, 0};
    for (size_t i = 0; i < nids && !rc; i++) {
        struct dataset_prompt *p = NULL;
        struct dataset_record *r = NULL;
        rc = dataset_prompt_build(st, ids[i], o, &p, err);
        if (!rc)
            rc = dataset_record_get(st, ids[i], &r, err);
        char *line = rc ? NULL : dataset_prompt_jsonl(p, r);
        if (!rc && !line)
            rc = NY_ERR(err, NY_E_NOMEM, "%s: out of memory", path);
        if (!rc) {
            ny_buf_puts(&b, line);
            ny_buf_puts(&b, "\n");
            tot[0] += p->blocked_hash;
            tot[1] += p->blocked_cosine;
            tot[2] += p->blocked_fingerprint;
        }
        ny_free(line);
        dataset_prompt_destroy(p);
        dataset_record_destroy(r);
    }
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
