/* tokenizer_load.c — the rest of tokenizer.json around the model (normalizer, pre-tokenizer,
 * post-processor, decoder, truncation, padding) and tokenizer_config.json (BOS, EOS, the chat
 * template). Anything outside byte-level BPE is refused, naming the file and field. */
#include <jansson.h>
#include <string.h>

#include "tokenizer_int.h"

/* The Llama-3 chat template as in ../shared/tokenizers/llama3 (generation prompt always added)
 * and as Meta publishes it for Llama-3-Instruct (generation prompt when asked). */
static const char chat_llama3_always[] =
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
    "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim "
    "+ '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}"
    "{{ content }}{% endfor %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}";
static const char chat_llama3[] =
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
    "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim "
    "+ '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}"
    "{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant"
    "<|end_header_id|>\n\n' }}{% endif %}";

static const char *type_of(json_t *obj)
{
    json_t *t = json_object_get(obj, "type");
    return json_is_string(t) ? json_string_value(t) : "";
}

static int bool_or(json_t *obj, const char *key, int dflt, const char *path, const char *where,
                   int *out, struct ny_err *err)
{
    json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v)) {
        *out = dflt;
        return NY_OK;
    }
    if (!json_is_boolean(v))
        return NY_ERR(err, NY_E_FORMAT, "%s: field \"%s.%s\" must be true or false", path, where,
                      key);
    *out = json_is_true(v);
    return NY_OK;
}

static int load_split(struct engine_tokenizer *t, const char *path, json_t *s, const char *where,
                      struct ny_err *err)
{
    json_t *pat = json_object_get(s, "pattern"), *re = json_object_get(pat, "Regex");
    json_t *str = json_object_get(pat, "String"), *beh = json_object_get(s, "behavior");
    int invert;
    int rc = bool_or(s, "invert", 0, path, where, &invert, err);
    if (rc)
        return rc;
    if (!json_is_string(beh) || strcmp(json_string_value(beh), "Isolated") != 0)
        return NY_ERR(err, NY_E_UNSUPPORTED,
                      "%s: field \"%s.behavior\": only \"Isolated\" is "
                      "supported",
                      path, where);
    if (invert)
        return NY_ERR(err, NY_E_UNSUPPORTED, "%s: field \"%s.invert\": true is not supported", path,
                      where);
    char what[600];
    snprintf(what, sizeof what, "%s: field \"%s.pattern\"", path, where);
    struct tok_step *st = &t->steps[t->n_steps];
    if (json_is_string(re))
        rc = tok_regex_compile(json_string_value(re), json_string_length(re), what, &st->re, err);
    else if (json_is_string(str)) {
        /* A literal: escape every ASCII punctuation character. */
        struct ny_buf b;
        ny_buf_init(&b);
        const char *s0 = json_string_value(str);
        for (size_t i = 0; i < json_string_length(str); i++) {
            unsigned char c = (unsigned char)s0[i];
            if (c < 0x80 &&
                !((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')))
                ny_buf_append(&b, "\\", 1);
            ny_buf_append(&b, s0 + i, 1);
        }
        rc = b.failed ? NY_ERR(err, NY_E_NOMEM, "%s: out of memory", what)
                      : tok_regex_compile(b.data ? b.data : "", b.len, what, &st->re, err);
        ny_buf_fini(&b);
    } else
        return NY_ERR(err, NY_E_FORMAT,
                      "%s: field \"%s.pattern\" must be {\"Regex\": ...} or "
                      "{\"String\": ...}",
                      path, where);
    if (rc)
        return rc;
    st->type = TOK_STEP_SPLIT;
    t->n_steps++;
    return NY_OK;
}

static int load_pre_one(struct engine_tokenizer *t, const char *path, json_t *p, const char *where,
                        int last, struct ny_err *err)
{
    if (!json_is_object(p))
        return NY_ERR(err, NY_E_FORMAT, "%s: field \"%s\" must be an object", path, where);
    if (t->n_steps >= TOK_MAX_STEPS)
        return NY_ERR(err, NY_E_UNSUPPORTED, "%s: field \"%s\": more than %d pre-tokenizers", path,
                      where, TOK_MAX_STEPS);
    const char *type = type_of(p);
    if (strcmp(type, "Split") == 0) {
        if (last)
            return NY_ERR(err, NY_E_UNSUPPORTED,
                          "%s: field \"%s\": the last pre-tokenizer must "
                          "be ByteLevel",
                          path, where);
        return load_split(t, path, p, where, err);
    }
    if (strcmp(type, "ByteLevel") != 0)
        return NY_ERR(err, NY_E_UNSUPPORTED,
                      "%s: field \"%s.type\": \"%.40s\" is not supported "
                      "(Split and ByteLevel are)",
                      path, where, type);
    if (!last)
        return NY_ERR(err, NY_E_UNSUPPORTED,
                      "%s: field \"%s\": ByteLevel must be the last "
                      "pre-tokenizer",
                      path, where);
    struct tok_step *st = &t->steps[t->n_steps];
    int use_regex;
    int rc = bool_or(p, "add_prefix_space", 1, path, where, &st->add_prefix_space, err);
    if (!rc)
        rc = bool_or(p, "use_regex", 1, path, where, &use_regex, err);
    if (!rc && use_regex) {
        char what[600];
        snprintf(what, sizeof what, "%s: ByteLevel's default pattern", path);
        rc = tok_regex_compile(tok_gpt2_pattern, strlen(tok_gpt2_pattern), what, &st->re, err);
    }
    if (rc)
        return rc;
    st->type = TOK_STEP_BYTELEVEL;
    t->n_steps++;
    return NY_OK;
}

static int load_pre(struct engine_tokenizer *t, const char *path, json_t *pre, struct ny_err *err)
{
    if (!json_is_object(pre))
        return NY_ERR(err, NY_E_UNSUPPORTED,
                      "%s: field \"pre_tokenizer\": a byte-level "
                      "pre-tokenizer is required",
                      path);
    if (strcmp(type_of(pre), "Sequence") != 0)
        return load_pre_one(t, path, pre, "pre_tokenizer", 1, err);
    json_t *list = json_object_get(pre, "pretokenizers");
    if (!json_is_array(list) || json_array_size(list) == 0)
        return NY_ERR(err, NY_E_FORMAT,
                      "%s: field \"pre_tokenizer.pretokenizers\" must be a "
                      "non-empty array",
                      path);
    for (size_t i = 0; i < json_array_size(list); i++) {
        char where[64];
        snprintf(where, sizeof where, "pre_tokenizer.pretokenizers[%zu]", i);
        int rc = load_pre_one(t, path, json_array_get(list, i), where,
                              i + 1 == json_array_size(list), err);
        if (rc)
            return rc;
    }
    return NY_OK;
}

/* TemplateProcessing's "single" template: special tokens around the one sequence "A". */
static int load_template(struct engine_tokenizer *t, const char *path, json_t *tp,
                         const char *where, struct ny_err *err)
{
    json_t *single = json_object_get(tp, "single"),
           *specials = json_object_get(tp, "special_tokens");
    if (!json_is_array(single) || (specials && !json_is_object(specials)))
        return NY_ERR(err, NY_E_FORMAT,
                      "%s: field \"%s\": \"single\" must be an array and "
                      "\"special_tokens\" an object",
                      path, where);
    struct tok_ids ids = {0};
    int seen_a = 0, rc = NY_OK;
    for (size_t i = 0; i < json_array_size(single) && !rc; i++) {
        json_t *item = json_array_get(single, i), *seq = json_object_get(item, "Sequence");
        json_t *sp = json_object_get(item, "SpecialToken");
        if (seq) {
            json_t *id = json_object_get(seq, "id");
            if (seen_a || !json_is_string(id) || strcmp(json_string_value(id), "A") != 0)
                rc = NY_ERR(err, NY_E_UNSUPPORTED,
                            "%s: field \"%s.single[%zu]\": only one "
                            "sequence \"A\" is supported",
                            path, where, i);
            t->post_before = ids.n;
            seen_a = 1;
            continue;
        }
        json_t *name = json_object_get(sp, "id");
        json_t *def =
            json_is_string(name) ? json_object_get(specials, json_string_value(name)) : NULL;
        json_t *list = json_object_get(def, "ids");
        if (!json_is_array(list)) {
            rc = NY_ERR(err, NY_E_FORMAT,
                        "%s: field \"%s.single[%zu]\": not a sequence or a "
                        "special token listed in \"special_tokens\" with \"ids\"",
                        path, where, i);
            break;
        }
        for (size_t k = 0; k < json_array_size(list) && !rc; k++) {
            json_t *v = json_array_get(list, k);
            if (!json_is_integer(v) || json_integer_value(v) < 0 ||
                (size_t)json_integer_value(v) >= t->n_ids)
                rc = NY_ERR(err, NY_E_FORMAT,
                            "%s: field \"%s.special_tokens\": an id of \"%.60s\" "
                            "is not a token id",
                            path, where, json_string_value(name));
            else if (tok_ids_push(&ids, (int32_t)json_integer_value(v)))
                rc = NY_ERR(err, NY_E_NOMEM, "%s: out of memory", path);
        }
    }
    if (!rc && !seen_a)
        rc = NY_ERR(err, NY_E_FORMAT, "%s: field \"%s.single\" has no sequence \"A\"", path, where);
    if (rc || t->post_ids) { /* a second TemplateProcessing in a Sequence */
        ny_free(ids.v);
        return rc ? rc
                  : NY_ERR(err, NY_E_UNSUPPORTED,
                           "%s: field \"%s\": two TemplateProcessing "
                           "post-processors",
                           path, where);
    }
    t->post_ids = ids.v;
    t->post_after = ids.n - t->post_before;
    if (!t->post_ids)
        t->post_ids = ny_calloc(1, sizeof(int32_t));
    return t->post_ids ? NY_OK : NY_ERR(err, NY_E_NOMEM, "%s: out of memory", path);
}

static int load_post_one(struct engine_tokenizer *t, const char *path, json_t *p, const char *where,
                         struct ny_err *err)
{
    const char *type = type_of(p);
    if (strcmp(type, "ByteLevel") == 0)
        return NY_OK; /* trims offsets only: no effect on ids */
    if (strcmp(type, "TemplateProcessing") == 0)
        return load_template(t, path, p, where, err);
    return NY_ERR(err, NY_E_UNSUPPORTED,
                  "%s: field \"%s.type\": \"%.40s\" is not supported "
                  "(ByteLevel, TemplateProcessing and Sequence are)",
                  path, where, type);
}

static int load_post(struct engine_tokenizer *t, const char *path, json_t *post, struct ny_err *err)
{
    if (!post || json_is_null(post))
        return NY_OK;
    if (!json_is_object(post))
        return NY_ERR(err, NY_E_FORMAT, "%s: field \"post_processor\" must be an object", path);
    if (strcmp(type_of(post), "Sequence") != 0)
        return load_post_one(t, path, post, "post_processor", err);
    json_t *list = json_object_get(post, "processors");
    if (!json_is_array(list))
        return NY_ERR(err, NY_E_FORMAT,
                      "%s: field \"post_processor.processors\" must be an "
                      "array",
                      path);
    for (size_t i = 0; i < json_array_size(list); i++) {
        char where[64];
        snprintf(where, sizeof where, "post_processor.processors[%zu]", i);
        int rc = load_post_one(t, path, json_array_get(list, i), where, err);
        if (rc)
            return rc;
    }
    return NY_OK;
}

int tok_load_pipeline(struct engine_tokenizer *t, const char *path, json_t *root,
                      struct ny_err *err)
{
    static const char *const null_only[] = {"truncation", "padding"};
    for (size_t i = 0; i < 2; i++) {
        json_t *v = json_object_get(root, null_only[i]);
        if (v && !json_is_null(v))
            return NY_ERR(err, NY_E_UNSUPPORTED, "%s: field \"%s\" must be null (not supported)",
                          path, null_only[i]);
    }
    json_t *norm = json_object_get(root, "normalizer");
    if (norm && !json_is_null(norm)) {
        json_t *list = json_object_get(norm, "normalizers");
        if (strcmp(type_of(norm), "Sequence") != 0 || !json_is_array(list) ||
            json_array_size(list) != 0)
            return NY_ERR(err, NY_E_UNSUPPORTED,
                          "%s: field \"normalizer\": normalizers are not "
                          "supported (it must be null)",
                          path);
    }
    json_t *dec = json_object_get(root, "decoder");
    if (!json_is_object(dec) || strcmp(type_of(dec), "ByteLevel") != 0)
        return NY_ERR(err, NY_E_UNSUPPORTED,
                      "%s: field \"decoder\": only the ByteLevel decoder is "
                      "supported",
                      path);
    int rc = load_pre(t, path, json_object_get(root, "pre_tokenizer"), err);
    if (!rc)
        rc = load_post(t, path, json_object_get(root, "post_processor"), err);
    return rc;
}

/* bos_token / eos_token: a string or {"content": string}; -1 when absent. */
static int config_token(struct engine_tokenizer *t, const char *cpath, json_t *cfg, const char *key,
                        int32_t *out, struct ny_err *err)
{
    json_t *v = json_object_get(cfg, key);
    if (json_is_object(v))
        v = json_object_get(v, "content");
    if (!v || json_is_null(json_object_get(cfg, key)))
        return NY_OK;
    if (!json_is_string(v))
        return NY_ERR(err, NY_E_FORMAT, "%s: field \"%s\" must be a string", cpath, key);
    int32_t id =
        tok_vocab_find(t, t->all_slots, t->all_cap, json_string_value(v), json_string_length(v));
    if (id < 0)
        return NY_ERR(err, NY_E_FORMAT, "%s: field \"%s\": \"%.80s\" is not a token of %s", cpath,
                      key, json_string_value(v), t->path);
    *out = id;
    return NY_OK;
}

/* Like ny_json_load_file, but integers too big for jansson (model_max_length is 1e30 in
 * Llama-3's file) are read as reals instead of failing. */
static int load_config_json(const char *cpath, json_t **out, struct ny_err *err)
{
    char *buf;
    size_t len, bad;
    int rc = ny_file_read(cpath, (size_t)16 << 20, &buf, &len, err);
    if (rc)
        return rc;
    if (!ny_utf8_valid(buf, len, &bad)) {
        ny_free(buf);
        return NY_ERR(err, NY_E_FORMAT, "%s: invalid UTF-8 at byte %zu", cpath, bad);
    }
    /* Outside strings, write ".0" after integers of more than 18 digits so jansson reads them
     * as reals. */
    struct ny_buf b;
    ny_buf_init(&b);
    int in_str = 0;
    for (size_t i = 0; i < len; i++) {
        char c = buf[i];
        ny_buf_append(&b, &c, 1);
        if (in_str) {
            if (c == '\\' && i + 1 < len)
                ny_buf_append(&b, &buf[++i], 1);
            else if (c == '"')
                in_str = 0;
            continue;
        }
        if (c == '"') {
            in_str = 1;
        } else if (c >= '0' && c <= '9' && (i == 0 || !strchr("0123456789.eE+-", buf[i - 1]))) {
            size_t k = i + 1;
            while (k < len && buf[k] >= '0' && buf[k] <= '9')
                k++;
            ny_buf_append(&b, buf + i + 1, k - i - 1);
            if (k - i > 18 && (k == len || !strchr(".eE", buf[k])))
                ny_buf_puts(&b, ".0");
            i = k - 1;
        }
    }
    ny_free(buf);
    if (b.failed) {
        ny_buf_fini(&b);
        return NY_ERR(err, NY_E_NOMEM, "%s: out of memory", cpath);
    }
    json_error_t je;
    *out = json_loadb(b.data ? b.data : "", b.len, JSON_REJECT_DUPLICATES, &je);
    ny_buf_fini(&b);
    if (!*out)
        return NY_ERR(err, NY_E_FORMAT, "%s: malformed JSON at line %d column %d: %s", cpath,
                      je.line, je.column, je.text);
    return NY_OK;
}

int tok_load_config(struct engine_tokenizer *t, const char *path, struct ny_err *err)
{
    const char *slash = strrchr(path, '/');
    char *dir = slash ? ny_strndup(path, (size_t)(slash - path)) : ny_strdup(".");
    char *cpath = dir ? ny_path_join(dir, "tokenizer_config.json") : NULL;
    ny_free(dir);
    if (!cpath)
        return NY_ERR(err, NY_E_NOMEM, "%s: out of memory", path);
    t->chat_template = TOK_CHAT_LLAMA3;
    int rc = NY_OK;
    if (ny_file_exists(cpath)) {
        json_t *cfg = NULL;
        rc = load_config_json(cpath, &cfg, err);
        if (!rc && !json_is_object(cfg))
            rc = NY_ERR(err, NY_E_FORMAT, "%s: the top level must be an object", cpath);
        if (!rc)
            rc = config_token(t, cpath, cfg, "bos_token", &t->bos_id, err);
        if (!rc)
            rc = config_token(t, cpath, cfg, "eos_token", &t->eos_id, err);
        json_t *tpl = rc ? NULL : json_object_get(cfg, "chat_template");
        if (tpl && !json_is_null(tpl)) {
            const char *s = json_is_string(tpl) ? json_string_value(tpl) : "";
            t->chat_template = strcmp(s, chat_llama3) == 0          ? TOK_CHAT_LLAMA3
                               : strcmp(s, chat_llama3_always) == 0 ? TOK_CHAT_LLAMA3_ALWAYS_GEN
                                                                    : TOK_CHAT_UNKNOWN;
        }
        json_decref(cfg);
    }
    ny_free(cpath);
    return rc;
}
