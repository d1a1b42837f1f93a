/* audit_engine.c — the audit's decoder on the engine: each distinct base model (and its
 * tokenizer) loaded once; each checkpoint is a base plus an optional unmerged LoRA adapter chosen
 * per request, so V16, V17 and Epoch-1 share one copy of the base weights. */
#include <jansson.h>
#include <string.h>

#include "engine.h"
#include "harness.h"

struct base {
    char *dir;
    struct engine_model *model;
    struct engine_tokenizer *tok;
};

struct engine_dec {
    struct harness_decoder pub;
    struct base *bases;
    size_t n_bases;
    size_t *ckpt_base; /* per checkpoint: index into bases */
    int *ckpt_adapter; /* per checkpoint: adapter index or -1 */
    size_t n_ckpt;
};

static int dec_encode(void *ctx, size_t ckpt, json_t *messages, int32_t **ids, size_t *n,
                      struct ny_err *err)
{
    struct engine_dec *d = ctx;
    return engine_chat_encode_json(d->bases[d->ckpt_base[ckpt]].tok, messages, 1, "prompt", ids,
                                   n, err);
}

static int dec_count(void *ctx, const char *text, size_t len, size_t *ntokens)
{
    struct engine_dec *d = ctx;
    int32_t *ids = NULL;
    size_t n = 0;
    int rc = engine_tokenizer_encode(d->bases[0].tok, text, len, 0, &ids, &n, NULL);
    ny_free(ids);
    if (!rc)
        *ntokens = n;
    return rc;
}

/* One result into a prediction: text without the final eos, ids as a JSON array. */
static int to_prediction(const struct engine_tokenizer *tok, const struct engine_result *r,
                         size_t n_prompt, struct store_prediction *p, struct ny_err *err)
{
    size_t n_text = r->n_output - (r->stopped_on_eos && r->n_output ? 1 : 0);
    char *text = NULL;
    size_t len = 0;
    int rc = engine_tokenizer_decode(tok, r->output_ids, n_text, 1, &text, &len, err);
    if (rc)
        return rc;
    json_t *arr = json_array();
    for (size_t k = 0; arr && k < r->n_output; k++)
        json_array_append_new(arr, json_integer(r->output_ids[k]));
    char *ids = arr ? ny_json_dumps(arr, 0) : NULL;
    json_decref(arr);
    if (!ids) {
        ny_free(text);
        return NY_ERR(err, NY_E_NOMEM, "out of memory");
    }
    p->output = text;
    p->output_ids = ids;
    p->prompt_tokens = (int64_t)n_prompt;
    p->gen_tokens = (int64_t)r->n_output;
    return NY_OK;
}

static int dec_generate(void *ctx, size_t ckpt, const int32_t *const *ids, const size_t *n,
                        size_t count, int64_t max_new, struct store_prediction *out,
                        struct ny_err *err)
{
    struct engine_dec *d = ctx;
    struct base *b = &d->bases[d->ckpt_base[ckpt]];
    struct engine_request reqs[HARNESS_DECODE_BATCH] = {{0}};
    struct engine_result res[HARNESS_DECODE_BATCH];
    if (count > HARNESS_DECODE_BATCH)
        return NY_ERR(err, NY_E_INTERNAL, "batch of %zu prompts", count);
    memset(res, 0, sizeof res);
    for (size_t k = 0; k < count; k++)
        reqs[k] = (struct engine_request){ids[k], n[k], d->ckpt_adapter[ckpt]};
    struct engine_gen_opts o = {.max_new_tokens = (int)max_new, .max_batch = (int)count};
    int rc = engine_generate(b->model, reqs, count, &o, res, err);
    for (size_t k = 0; k < count && !rc; k++)
        rc = to_prediction(b->tok, &res[k], n[k], &out[k], err);
    for (size_t k = 0; k < count; k++)
        engine_result_fini(&res[k]);
    if (rc)
        for (size_t k = 0; k < count; k++)
            store_prediction_fini(&out[k]);
    return rc;
}

void harness_engine_decoder_close(struct harness_decoder *dec)
{
    if (!dec)
        return;
    struct engine_dec *d = (struct engine_dec *)dec;
    for (size_t i = 0; i < d->n_bases; i++) {
        engine_model_close(d->bases[i].model);
        engine_tokenizer_close(d->bases[i].tok);
        ny_free(d->bases[i].dir);
    }
    ny_free(d->bases);
    ny_free(d->ckpt_base);
    ny_free(d->ckpt_adapter);
    ny_free(d);
}

/* Find or load the base model of directory dir. */
static int base_get(struct engine_dec *d, const struct harness_config *cfg, const char *dir,
                    size_t *idx, struct ny_err *err)
{
    for (size_t i = 0; i < d->n_bases; i++)
        if (!strcmp(d->bases[i].dir, dir)) {
            *idx = i;
            return NY_OK;
        }
    struct base *b = &d->bases[d->n_bases];
    struct engine_model_opts o = {.device = cfg->device, .threads = (int)cfg->threads,
                                  .tp = (int)cfg->tp};
    if (!(b->dir = ny_strdup(dir)))
        return NY_ERR(err, NY_E_NOMEM, "out of memory");
    d->n_bases++;
    char *tp = ny_path_join(dir, "tokenizer.json");
    if (!tp)
        return NY_ERR(err, NY_E_NOMEM, "out of memory");
    int rc = engine_tokenizer_open(tp, &b->tok, err);
    ny_free(tp);
    if (!rc)
        rc = engine_model_open(dir, &o, &b->model, err);
    *idx = d->n_bases - 1;
    return rc;
}

int harness_engine_decoder_open(const struct harness_config *cfg, struct harness_decoder **out,
                                struct ny_err *err)
{
    struct engine_dec *d = ny_calloc(1, sizeof *d);
    size_t m = cfg->n_checkpoints;
    if (!d || !(d->bases = ny_calloc(m, sizeof *d->bases)) ||
        !(d->ckpt_base = ny_calloc(m, sizeof *d->ckpt_base)) ||
        !(d->ckpt_adapter = ny_calloc(m, sizeof *d->ckpt_adapter))) {
        harness_engine_decoder_close(d ? &d->pub : NULL);
        return NY_ERR(err, NY_E_NOMEM, "out of memory");
    }
    d->n_ckpt = m;
    int rc = NY_OK;
    for (size_t c = 0; c < m && !rc; c++) {
        const struct harness_checkpoint *ck = &cfg->checkpoints[c];
        d->ckpt_adapter[c] = -1;
        rc = base_get(d, cfg, ck->model_path, &d->ckpt_base[c], err);
        if (!rc && ck->adapter_path)
            rc = engine_model_adapter_add(d->bases[d->ckpt_base[c]].model, ck->label,
                                          ck->adapter_path, 0, &d->ckpt_adapter[c], err);
        if (rc)
            ny_err_prefix(err, "checkpoint %s: ", ck->label);
    }
    if (rc) {
        harness_engine_decoder_close(&d->pub);
        return rc;
    }
    struct engine_model_info mi;
    engine_model_info_get(d->bases[0].model, &mi);
    snprintf(d->pub.backend, sizeof d->pub.backend, "%s", cfg->device);
    if (!strcmp(cfg->device, "cpu"))
        snprintf(d->pub.device, sizeof d->pub.device, "cpu (%d threads)", mi.threads);
    else
        snprintf(d->pub.device, sizeof d->pub.device, "%s (tp %lld)", mi.device,
                 (long long)cfg->tp);
    d->pub.ctx = d;
    d->pub.encode = dec_encode;
    d->pub.generate = dec_generate;
    d->pub.count = dec_count;
    *out = &d->pub;
    return NY_OK;
}
