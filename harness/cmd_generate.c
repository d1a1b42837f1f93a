/* cmd_generate.c — `nyxaudit generate`: greedy decoding of JSONL requests (input_ids, chat
 * messages or a raw prompt) with the engine, one result row per request in input order. Nothing is
 * written to stdout unless every request succeeded. */
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "engine.h"
#include "harness_int.h"

#define GEN_STDIN_MAX ((size_t)1 << 30)
#define GEN_MAX_ADAPTERS 16

static int usage(void)
{
    fprintf(stderr,
            "usage: nyxaudit generate --model DIR [--adapter [NAME=]DIR ...] [--merge-adapter]\n"
            "         [--max-new-tokens N] [--ignore-eos] [--first-logits] [--device cpu|cuda]\n"
            "         [--tp N] [--threads N] [--max-batch N] [--tokenizer FILE]\n"
            "         < requests.jsonl > results.jsonl\n"
            "  request rows: {\"id\": ..., \"input_ids\": [...]} | {\"id\": ..., \"messages\": "
            "[{\"role\", \"content\"}]}\n"
            "                | {\"id\": ..., \"prompt\": \"raw text\"}; optional \"adapter\": "
            "NAME | null\n"
            "  --adapter DIR       an unnamed adapter: used by requests without an \"adapter\" "
            "field\n"
            "  --adapter NAME=DIR  a named adapter: used by requests with \"adapter\": \"NAME\"\n"
            "                      (\"adapter\": null selects the base model)\n"
            "  --merge-adapter     fold the single adapter into the base weights (default: "
            "unmerged)\n"
            "  --max-new-tokens N  default 64; --ignore-eos generates exactly N\n"
            "  --first-logits      add \"first_logits\": the vocabulary's logits at the first "
            "new position\n"
            "  --threads N         CPU threads (default: all cores; results do not depend on it)\n"
            "  --max-batch N       requests decoded together (default 16)\n"
            "  --tokenizer FILE    default: DIR/tokenizer.json (needed for messages and prompt; "
            "\"text\" is null without one)\n");
    return HARNESS_EXIT_INVALID;
}

struct gen_args {
    const char *model, *device, *tokenizer;
    const char *ad_name[GEN_MAX_ADAPTERS], *ad_dir[GEN_MAX_ADAPTERS];
    int n_ad, merge, max_new, ignore_eos, first_logits, tp, threads, max_batch;
};

static int parse_int(const char *s, int lo, int hi, int *out)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (!*s || *end || v < lo || v > hi)
        return -1;
    *out = (int)v;
    return 0;
}

/* "NAME=DIR" when the part before '=' is a plain name; else an unnamed DIR. */
static void split_adapter(const char *arg, struct gen_args *a)
{
    const char *eq = strchr(arg, '=');
    size_t n = eq ? (size_t)(eq - arg) : 0;
    int plain = n > 0 && n < 64;
    for (size_t i = 0; plain && i < n; i++)
        plain = (arg[i] >= 'a' && arg[i] <= 'z') || (arg[i] >= 'A' && arg[i] <= 'Z') ||
                (arg[i] >= '0' && arg[i] <= '9') || strchr("_.-", arg[i]);
    a->ad_name[a->n_ad] = plain ? ny_strndup(arg, n) : NULL;
    a->ad_dir[a->n_ad] = plain ? eq + 1 : arg;
}

static int parse_args(int argc, char **argv, struct gen_args *a)
{
    memset(a, 0, sizeof *a);
    a->max_new = 64;
    a->device = "cpu";
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int bad = 0;
        if (!strcmp(o, "--ignore-eos"))
            a->ignore_eos = 1;
        else if (!strcmp(o, "--first-logits"))
            a->first_logits = 1;
        else if (!strcmp(o, "--merge-adapter"))
            a->merge = 1;
        else if (!v)
            return -1;
        else if (++i && !strcmp(o, "--model"))
            a->model = v;
        else if (!strcmp(o, "--device"))
            a->device = v;
        else if (!strcmp(o, "--tokenizer"))
            a->tokenizer = v;
        else if (!strcmp(o, "--adapter") && a->n_ad < GEN_MAX_ADAPTERS)
            split_adapter(v, a), a->n_ad++;
        else if (!strcmp(o, "--max-new-tokens"))
            bad = parse_int(v, 1, 1 << 20, &a->max_new);
        else if (!strcmp(o, "--tp"))
            bad = parse_int(v, 1, 64, &a->tp);
        else if (!strcmp(o, "--threads"))
            bad = parse_int(v, 1, 1024, &a->threads);
        else if (!strcmp(o, "--max-batch"))
            bad = parse_int(v, 1, 4096, &a->max_batch);
        else
            return -1;
        if (bad) {
            fprintf(stderr, "nyxaudit generate: %s: '%s' is not a valid number\n", o, v);
            return -1;
        }
    }
    return a->model ? 0 : -1;
}

/* One parsed request row. */
struct gen_row {
    json_t *id;       /* borrowed from the row */
    json_t *row;      /* owned */
    int32_t *ids;
    size_t n_ids;
    int adapter;
};

struct gen_ctx {
    struct gen_args a;
    struct engine_model *m;
    struct engine_tokenizer *tok;
    int tok_tried;
    int unnamed;      /* adapter index of the unnamed --adapter, or -1 */
    struct gen_row *rows;
    size_t n_rows;
    struct ny_err err;
};

static int need_tokenizer(struct gen_ctx *c, int required, const char *what)
{
    if (c->tok || (c->tok_tried && !required))
        return NY_OK;
    char *def = c->a.tokenizer ? NULL : ny_path_join(c->a.model, "tokenizer.json");
    const char *path = c->a.tokenizer ? c->a.tokenizer : def;
    int rc = NY_OK;
    if (!path)
        rc = NY_ERR(&c->err, NY_E_NOMEM, "out of memory");
    else if (c->a.tokenizer || ny_file_exists(path) || required)
        rc = engine_tokenizer_open(path, &c->tok, &c->err);
    if (rc != NY_OK && required)
        ny_err_prefix(&c->err, "%s needs a tokenizer: ", what);
    c->tok_tried = 1;
    ny_free(def);
    return rc;
}

static int row_input_ids(json_t *arr, const char *what, struct gen_row *r, struct ny_err *err)
{
    size_t n = json_array_size(arr);
    if (!json_is_array(arr) || n == 0)
        return NY_ERR(err, NY_E_INVALID, "%s: \"input_ids\" must be a non-empty array", what);
    r->ids = ny_calloc(n, sizeof *r->ids);
    if (!r->ids)
        return NY_ERR(err, NY_E_NOMEM, "out of memory");
    for (size_t k = 0; k < n; k++) {
        json_t *v = json_array_get(arr, k);
        if (!json_is_integer(v) || json_integer_value(v) < 0 ||
            json_integer_value(v) > INT32_MAX)
            return NY_ERR(err, NY_E_INVALID, "%s: input_ids[%zu] is not a token id", what, k);
        r->ids[k] = (int32_t)json_integer_value(v);
    }
    r->n_ids = n;
    return NY_OK;
}

/* The row's adapter: "adapter": NAME selects it, null the base; absent: the unnamed one. */
static int row_adapter(struct gen_ctx *c, json_t *row, const char *what, struct gen_row *r)
{
    json_t *ad = json_object_get(row, "adapter");
    if (!ad) {
        r->adapter = c->unnamed;
        return NY_OK;
    }
    if (json_is_null(ad)) {
        r->adapter = -1;
        return NY_OK;
    }
    if (!json_is_string(ad))
        return NY_ERR(&c->err, NY_E_INVALID, "%s: \"adapter\" must be a name or null", what);
    r->adapter = engine_model_adapter_find(c->m, json_string_value(ad));
    if (r->adapter < 0)
        return NY_ERR(&c->err, NY_E_INVALID, "%s: adapter \"%s\" was not given with --adapter "
                      "NAME=DIR", what, json_string_value(ad));
    return NY_OK;
}

static int parse_row(struct gen_ctx *c, const char *line, size_t len, size_t lineno,
                     struct gen_row *r)
{
    char what[64];
    snprintf(what, sizeof what, "requests line %zu", lineno);
    int rc = ny_json_load_buf(line, len, what, &r->row, &c->err);
    if (rc != NY_OK)
        return rc;
    json_t *row = r->row;
    if (!json_is_object(row))
        return NY_ERR(&c->err, NY_E_INVALID, "%s: not a JSON object", what);
    r->id = json_object_get(row, "id");
    if (!r->id)
        return NY_ERR(&c->err, NY_E_INVALID, "%s: missing \"id\"", what);
    json_t *ii = json_object_get(row, "input_ids"), *msgs = json_object_get(row, "messages");
    json_t *prompt = json_object_get(row, "prompt");
    if (!!ii + !!msgs + !!prompt != 1)
        return NY_ERR(&c->err, NY_E_INVALID, "%s: needs exactly one of \"input_ids\", "
                      "\"messages\", \"prompt\"", what);
    if ((rc = row_adapter(c, row, what, r)) != NY_OK)
        return rc;
    if (ii)
        return row_input_ids(ii, what, r, &c->err);
    if ((rc = need_tokenizer(c, 1, what)) != NY_OK)
        return rc;
    if (msgs)
        return engine_chat_encode_json(c->tok, msgs, 1, what, &r->ids, &r->n_ids, &c->err);
    if (!json_is_string(prompt))
        return NY_ERR(&c->err, NY_E_INVALID, "%s: \"prompt\" must be a string", what);
    rc = engine_tokenizer_encode(c->tok, json_string_value(prompt), json_string_length(prompt), 1,
                                 &r->ids, &r->n_ids, &c->err);
    if (rc == NY_OK && r->n_ids == 0)
        rc = NY_ERR(&c->err, NY_E_INVALID, "%s: \"prompt\" gives no tokens", what);
    return rc;
}

static int parse_requests(struct gen_ctx *c, const char *buf, size_t len)
{
    struct ny_lines it;
    const char *line;
    size_t ll, cap = 0;
    ny_lines_init(&it, buf, len);
    while (ny_lines_next(&it, &line, &ll)) {
        size_t k = 0;
        while (k < ll && (line[k] == ' ' || line[k] == '\t'))
            k++;
        if (k == ll)
            continue; /* blank line */
        if (c->n_rows == cap) {
            cap = cap ? 2 * cap : 64;
            struct gen_row *r = ny_reallocarray(c->rows, cap, sizeof *r);
            if (!r)
                return NY_ERR(&c->err, NY_E_NOMEM, "out of memory");
            c->rows = r;
        }
        struct gen_row *r = &c->rows[c->n_rows++];
        memset(r, 0, sizeof *r);
        int rc = parse_row(c, line, ll, it.lineno, r);
        if (rc != NY_OK)
            return rc;
    }
    return NY_OK;
}

static json_t *ids_json(const int32_t *ids, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; a && i < n; i++)
        json_array_append_new(a, json_integer(ids[i]));
    return a;
}

/* Build every result row in memory; print only when all are made. */
static int emit(struct gen_ctx *c, struct engine_result *res, int vocab)
{
    struct ny_buf out;
    ny_buf_init(&out);
    int rc = NY_OK;
    for (size_t i = 0; i < c->n_rows && rc == NY_OK; i++) {
        json_t *o = json_object();
        json_object_set(o, "id", c->rows[i].id);
        json_object_set_new(o, "output_ids", ids_json(res[i].output_ids, res[i].n_output));
        json_object_set_new(o, "prompt_tokens", json_integer((json_int_t)c->rows[i].n_ids));
        char *text = NULL;
        size_t tl;
        if (c->tok && (rc = engine_tokenizer_decode(c->tok, res[i].output_ids, res[i].n_output, 1,
                                                    &text, &tl, &c->err)) != NY_OK)
            ny_err_prefix(&c->err, "result %zu: ", i);
        json_object_set_new(o, "text", text ? json_stringn(text, tl) : json_null());
        ny_free(text);
        if (res[i].first_logits) {
            json_t *l = json_array();
            for (int j = 0; j < vocab; j++)
                json_array_append_new(l, json_real(res[i].first_logits[j]));
            json_object_set_new(o, "first_logits", l);
        }
        char *s = ny_json_dumps(o, 0);
        json_decref(o);
        if (!s)
            rc = NY_ERR(&c->err, NY_E_NOMEM, "out of memory writing results");
        else
            ny_buf_printf(&out, "%s\n", s);
        ny_free(s);
    }
    if (rc == NY_OK && out.failed)
        rc = NY_ERR(&c->err, NY_E_NOMEM, "out of memory writing results");
    if (rc == NY_OK && out.len &&
        (fwrite(out.data, 1, out.len, stdout) != out.len || fflush(stdout) != 0))
        rc = NY_ERR(&c->err, NY_E_IO, "stdout: write failed");
    ny_buf_fini(&out);
    return rc;
}

static int open_model(struct gen_ctx *c)
{
    struct engine_model_opts mo = {.device = c->a.device, .threads = c->a.threads, .tp = c->a.tp};
    int rc = engine_model_open(c->a.model, &mo, &c->m, &c->err);
    int n_unnamed = 0;
    c->unnamed = -1;
    if (rc == NY_OK && c->a.merge && c->a.n_ad != 1)
        return NY_ERR(&c->err, NY_E_INVALID, "--merge-adapter needs exactly one --adapter");
    for (int i = 0; i < c->a.n_ad && rc == NY_OK; i++) {
        const char *name = c->a.ad_name[i] ? c->a.ad_name[i] : "default";
        int idx;
        if (!c->a.ad_name[i] && ++n_unnamed > 1)
            return NY_ERR(&c->err, NY_E_INVALID, "only one --adapter may be unnamed (use "
                          "NAME=DIR)");
        rc = engine_model_adapter_add(c->m, name, c->a.ad_dir[i], c->a.merge, &idx, &c->err);
        if (rc == NY_OK && !c->a.ad_name[i])
            c->unnamed = idx;
    }
    return rc;
}

static int run(struct gen_ctx *c)
{
    char *buf = NULL;
    size_t len = 0;
    int rc = open_model(c);
    if (rc == NY_OK)
        rc = ny_stream_read(stdin, "stdin", GEN_STDIN_MAX, &buf, &len, &c->err);
    if (rc == NY_OK)
        rc = parse_requests(c, buf ? buf : "", len);
    ny_free(buf);
    if (rc == NY_OK)
        rc = need_tokenizer(c, 0, "text");
    if (rc != NY_OK || c->n_rows == 0)
        return rc;
    struct engine_request *reqs = ny_calloc(c->n_rows, sizeof *reqs);
    struct engine_result *res = ny_calloc(c->n_rows, sizeof *res);
    if (!reqs || !res)
        rc = NY_ERR(&c->err, NY_E_NOMEM, "out of memory");
    for (size_t i = 0; rc == NY_OK && i < c->n_rows; i++)
        reqs[i] = (struct engine_request){c->rows[i].ids, c->rows[i].n_ids, c->rows[i].adapter};
    struct engine_gen_opts go = {.max_new_tokens = c->a.max_new, .ignore_eos = c->a.ignore_eos,
                                 .first_logits = c->a.first_logits, .max_batch = c->a.max_batch};
    if (rc == NY_OK)
        rc = engine_generate(c->m, reqs, c->n_rows, &go, res, &c->err);
    if (rc == NY_OK) {
        struct engine_model_info info;
        engine_model_info_get(c->m, &info);
        rc = emit(c, res, info.vocab_size);
        for (size_t i = 0; i < c->n_rows; i++)
            engine_result_fini(&res[i]);
    }
    ny_free(reqs);
    ny_free(res);
    return rc;
}

int harness_cmd_generate(int argc, char **argv)
{
    struct gen_ctx c;
    memset(&c, 0, sizeof c);
    ny_err_init(&c.err);
    if (parse_args(argc, argv, &c.a) != 0) {
        for (int i = 0; i < c.a.n_ad; i++)
            ny_free((void *)c.a.ad_name[i]);
        return usage();
    }
    int rc = run(&c);
    for (size_t i = 0; i < c.n_rows; i++) {
        json_decref(c.rows[i].row);
        ny_free(c.rows[i].ids);
    }
    ny_free(c.rows);
    for (int i = 0; i < c.a.n_ad; i++)
        ny_free((void *)c.a.ad_name[i]);
    engine_tokenizer_close(c.tok);
    engine_model_close(c.m);
    return rc == NY_OK ? HARNESS_EXIT_OK : harness_fail("generate", rc, &c.err);
}
