/* chat.c — the Llama-3 chat template as C: messages to the template's text, then to ids with the
 * tokenizer (no post-processor tokens: the template writes the one BOS itself), as transformers'
 * apply_chat_template(tokenize=True) does. */
#include <jansson.h>
#include <string.h>

#include "tokenizer_int.h"

struct chat_msg {
    const char *role, *content;
    size_t role_len, content_len;
};

/* Python's str.isspace(), which Jinja's trim filter uses (str.strip()). */
static int py_space(uint32_t c)
{
    return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 ||
           c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 ||
           c == 0x202F || c == 0x205F || c == 0x3000;
}

/* Trim s[0..*n) (valid UTF-8) in place: returns the new start, updates *n. */
static const char *trim(const char *s, size_t *n)
{
    size_t a = 0, b = *n;
    while (a < b) {
        uint32_t cp;
        int k = ny_utf8_decode(s + a, b - a, &cp);
        if (k <= 0 || !py_space(cp))
            break;
        a += (size_t)k;
    }
    while (b > a) {
        size_t k = b - 1;
        while (k > a && ((uint8_t)s[k] & 0xC0) == 0x80)
            k--;
        uint32_t cp;
        if (ny_utf8_decode(s + k, b - k, &cp) <= 0 || !py_space(cp))
            break;
        b = k;
    }
    *n = b - a;
    return s + a;
}

static int render(const struct engine_tokenizer *t, const struct chat_msg *m, size_t n, int gen,
                  struct ny_buf *out, struct ny_err *err)
{
    if (!t)
        return NY_ERR(err, NY_E_INVALID, "chat template: no tokenizer");
    if (t->chat_template == TOK_CHAT_UNKNOWN)
        return NY_ERR(err, NY_E_UNSUPPORTED,
                      "%s: tokenizer_config.json field \"chat_template\" is "
                      "not the Llama-3 template (the only one supported)",
                      t->path);
    static const char *const need[] = {"<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"};
    for (size_t i = 0; i < 3; i++)
        if (engine_tokenizer_token_id(t, need[i]) < 0)
            return NY_ERR(err, NY_E_UNSUPPORTED, "%s: the chat template needs the token %s",
                          t->path, need[i]);
    int32_t bos = t->bos_id >= 0 ? t->bos_id : engine_tokenizer_token_id(t, "<|begin_of_text|>");
    if (bos < 0)
        return NY_ERR(err, NY_E_UNSUPPORTED,
                      "%s: no BOS token (no bos_token in "
                      "tokenizer_config.json and no <|begin_of_text|>)",
                      t->path);
    if (n == 0)
        return NY_ERR(err, NY_E_INVALID, "chat template: no messages");
    for (size_t i = 0; i < n; i++) {
        size_t bad;
        if (!ny_utf8_valid(m[i].role, m[i].role_len, &bad) ||
            !ny_utf8_valid(m[i].content, m[i].content_len, &bad))
            return NY_ERR(err, NY_E_INVALID, "chat template: message %zu is not valid UTF-8", i);
        size_t cl = m[i].content_len;
        const char *c = trim(m[i].content, &cl);
        if (i == 0)
            ny_buf_append(out, t->str[bos], t->len[bos]);
        ny_buf_puts(out, "<|start_header_id|>");
        ny_buf_append(out, m[i].role, m[i].role_len);
        ny_buf_puts(out, "<|end_header_id|>\n\n");
        ny_buf_append(out, c, cl);
        ny_buf_puts(out, "<|eot_id|>");
    }
    if (gen || t->chat_template == TOK_CHAT_LLAMA3_ALWAYS_GEN)
        ny_buf_puts(out, "<|start_header_id|>assistant<|end_header_id|>\n\n");
    if (out->failed)
        return NY_ERR(err, NY_E_NOMEM, "chat template: out of memory");
    return NY_OK;
}

static int encode_msgs(const struct engine_tokenizer *t, const struct chat_msg *m, size_t n,
                       int gen, int32_t **ids, size_t *n_ids, struct ny_err *err)
{
    struct ny_buf text;
    ny_buf_init(&text);
    int rc = render(t, m, n, gen, &text, err);
    if (!rc)
        rc = engine_tokenizer_encode(t, text.data, text.len, 0, ids, n_ids, err);
    ny_buf_fini(&text);
    return rc;
}

static int from_array(const struct engine_chat_msg *msgs, size_t n, struct chat_msg **out,
                      struct ny_err *err)
{
    struct chat_msg *m = ny_calloc(n ? n : 1, sizeof *m);
    if (!m)
        return NY_ERR(err, NY_E_NOMEM, "chat template: out of memory");
    for (size_t i = 0; i < n; i++) {
        if (!msgs[i].role || !msgs[i].content) {
            ny_free(m);
            return NY_ERR(err, NY_E_INVALID, "chat template: message %zu has no role or content",
                          i);
        }
        m[i] = (struct chat_msg){msgs[i].role, msgs[i].content, strlen(msgs[i].role),
                                 strlen(msgs[i].content)};
    }
    *out = m;
    return NY_OK;
}

int engine_chat_encode(const struct engine_tokenizer *t, const struct engine_chat_msg *msgs,
                       size_t n_msgs, int add_generation_prompt, int32_t **ids, size_t *n_ids,
                       struct ny_err *err)
{
    struct chat_msg *m;
    int rc = from_array(msgs, n_msgs, &m, err);
    if (rc)
        return rc;
    rc = encode_msgs(t, m, n_msgs, add_generation_prompt, ids, n_ids, err);
    ny_free(m);
    return rc;
}

int engine_chat_render(const struct engine_tokenizer *t, const struct engine_chat_msg *msgs,
                       size_t n_msgs, int add_generation_prompt, char **text, size_t *len,
                       struct ny_err *err)
{
    struct chat_msg *m;
    int rc = from_array(msgs, n_msgs, &m, err);
    if (rc)
        return rc;
    struct ny_buf out;
    ny_buf_init(&out);
    rc = render(t, m, n_msgs, add_generation_prompt, &out, err);
    ny_free(m);
    if (!rc && !out.data && !(out.data = ny_calloc(1, 1)))
        rc = NY_ERR(err, NY_E_NOMEM, "chat template: out of memory");
    if (rc) {
        ny_buf_fini(&out);
        return rc;
    }
    *len = out.len;
    *text = out.data;
    return NY_OK;
}

int engine_chat_encode_json(const struct engine_tokenizer *t, const struct json_t *messages,
                            int add_generation_prompt, const char *what, int32_t **ids,
                            size_t *n_ids, struct ny_err *err)
{
    json_t *arr = (json_t *)messages;
    what = what ? what : "messages";
    if (!json_is_array(arr))
        return NY_ERR(err, NY_E_INVALID, "%s: \"messages\" must be an array", what);
    size_t n = json_array_size(arr);
    struct chat_msg *m = ny_calloc(n ? n : 1, sizeof *m);
    if (!m)
        return NY_ERR(err, NY_E_NOMEM, "%s: out of memory", what);
    for (size_t i = 0; i < n; i++) {
        json_t *o = json_array_get(arr, i), *r = json_object_get(o, "role");
        json_t *c = json_object_get(o, "content");
        if (!json_is_string(r) || !json_is_string(c)) {
            ny_free(m);
            return NY_ERR(err, NY_E_INVALID,
                          "%s: messages[%zu] must be an object with string "
                          "\"role\" and \"content\"",
                          what, i);
        }
        m[i] = (struct chat_msg){json_string_value(r), json_string_value(c), json_string_length(r),
                                 json_string_length(c)};
    }
    int rc = encode_msgs(t, m, n, add_generation_prompt, ids, n_ids, err);
    if (rc && err)
        ny_err_prefix(err, "%s: ", what);
    ny_free(m);
    return rc;
}
