/* tokenizer.c — loading a Hugging Face tokenizer.json (byte-level BPE) into hash tables: the
 * vocabulary, the merges by rank, the added tokens and the token table by id; lookups. The
 * pre-tokenizer, post-processor and config parts are in tokenizer_load.c. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer_int.h"

#define TOK_JSON_MAX ((size_t)512 << 20)

int tok_ids_push(struct tok_ids *a, int32_t id)
{
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 64;
        int32_t *v = ny_reallocarray(a->v, cap, sizeof *v);
        if (!v)
            return NY_E_NOMEM;
        a->v = v;
        a->cap = cap;
    }
    a->v[a->n++] = id;
    return NY_OK;
}

static size_t pow2_at_least(size_t n)
{
    size_t c = 16;
    while (c < n)
        c *= 2;
    return c;
}

int32_t tok_vocab_find(const struct engine_tokenizer *t, const uint32_t *slots, size_t cap,
                       const char *s, size_t len)
{
    size_t i = (size_t)ny_hash64(s, len) & (cap - 1);
    for (;;) {
        uint32_t v = slots[i];
        if (!v)
            return -1;
        uint32_t id = v - 1;
        if (t->len[id] == len && memcmp(t->str[id], s, len) == 0)
            return (int32_t)id;
        i = (i + 1) & (cap - 1);
    }
}

/* Insert id under its string; returns the id already there when the string is taken. */
static int32_t vocab_insert(struct engine_tokenizer *t, uint32_t *slots, size_t cap, int32_t id)
{
    size_t i = (size_t)ny_hash64(t->str[id], t->len[id]) & (cap - 1);
    for (;;) {
        uint32_t v = slots[i];
        if (!v) {
            slots[i] = (uint32_t)id + 1;
            return -1;
        }
        if (t->len[v - 1] == t->len[id] && memcmp(t->str[v - 1], t->str[id], t->len[id]) == 0)
            return (int32_t)(v - 1);
        i = (i + 1) & (cap - 1);
    }
}

static uint64_t mix64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
}

int tok_merge_find(const struct engine_tokenizer *t, int32_t a, int32_t b, uint32_t *rank,
                   int32_t *id)
{
    uint64_t key = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
    size_t i = (size_t)mix64(key) & (t->merges_cap - 1);
    for (;;) {
        const struct tok_merge_slot *s = &t->merges[i];
        if (s->key == UINT64_MAX)
            return 0;
        if (s->key == key) {
            *rank = s->rank;
            *id = s->id;
            return 1;
        }
        i = (i + 1) & (t->merges_cap - 1);
    }
}

/* A later duplicate of a merge replaces the earlier one, as in Hugging Face's loader. */
static void merge_insert(struct engine_tokenizer *t, int32_t a, int32_t b, uint32_t rank,
                         int32_t id)
{
    uint64_t key = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
    size_t i = (size_t)mix64(key) & (t->merges_cap - 1);
    while (t->merges[i].key != UINT64_MAX && t->merges[i].key != key)
        i = (i + 1) & (t->merges_cap - 1);
    t->merges[i].key = key;
    t->merges[i].rank = rank;
    t->merges[i].id = id;
}

/* ---- the vocabulary and added tokens --------------------------------------------------------- */

struct tok_load {
    struct engine_tokenizer *t;
    const char *path;
    const struct tok_raw *raw;
    json_t *added;
    size_t max_id1, arena_len;
};

static int check_vocab(struct tok_load *L, struct ny_err *err)
{
    const struct tok_raw *r = L->raw;
    for (size_t i = 0; i < r->n_vocab; i++) {
        if (r->vocab_id[i] < 0 || r->vocab_id[i] >= TOK_MAX_ID)
            return NY_ERR(err, NY_E_FORMAT,
                          "%s: field \"model.vocab\": token \"%.*s\" has id %lld, out of range "
                          "[0, %d)",
                          L->path, (int)(r->vocab_tok[i].len > 80 ? 80 : r->vocab_tok[i].len),
                          r->vocab_tok[i].s, (long long)r->vocab_id[i], TOK_MAX_ID);
        size_t id = (size_t)r->vocab_id[i];
        if (id + 1 > L->max_id1)
            L->max_id1 = id + 1;
        L->arena_len += r->vocab_tok[i].len + 1;
    }
    return NY_OK;
}

static int check_added(struct tok_load *L, struct ny_err *err)
{
    if (!L->added)
        return NY_OK;
    if (!json_is_array(L->added))
        return NY_ERR(err, NY_E_FORMAT, "%s: field \"added_tokens\" must be an array", L->path);
    size_t i;
    json_t *a;
    json_array_foreach(L->added, i, a)
    {
        char what[64], where[600];
        snprintf(what, sizeof what, "added_tokens[%zu]", i);
        snprintf(where, sizeof where, "%s: %s", L->path, what);
        int64_t id;
        const char *content;
        if (!json_is_object(a))
            return NY_ERR(err, NY_E_FORMAT, "%s must be an object", where);
        int rc = ny_json_get_int(a, "id", 1, &id, where, err);
        if (!rc)
            rc = ny_json_get_string(a, "content", 1, &content, where, err);
        if (rc)
            return rc;
        if (id < 0 || id >= TOK_MAX_ID)
            return NY_ERR(err, NY_E_FORMAT, "%s: field \"%s.id\": %lld out of range [0, %d)",
                          L->path, what, (long long)id, TOK_MAX_ID);
        size_t len = json_string_length(json_object_get(a, "content"));
        if (len == 0)
            return NY_ERR(err, NY_E_FORMAT, "%s: field \"%s.content\" is empty", L->path, what);
        static const char *const unsupported[] = {"lstrip", "rstrip", "single_word"};
        for (size_t k = 0; k < 3; k++) {
            json_t *f = json_object_get(a, unsupported[k]);
            if (f && !json_is_boolean(f))
                return NY_ERR(err, NY_E_FORMAT, "%s: field \"%s.%s\" must be true or false",
                              L->path, what, unsupported[k]);
            if (json_is_true(f))
                return NY_ERR(err, NY_E_UNSUPPORTED, "%s: field \"%s.%s\": true is not supported",
                              L->path, what, unsupported[k]);
        }
        if ((size_t)id + 1 > L->max_id1)
            L->max_id1 = (size_t)id + 1;
        L->arena_len += len + 1;
    }
    return NY_OK;
}

static int fill_vocab(struct tok_load *L, char **ap, struct ny_err *err)
{
    struct engine_tokenizer *t = L->t;
    const struct tok_raw *r = L->raw;
    for (size_t i = 0; i < r->n_vocab; i++) {
        size_t id = (size_t)r->vocab_id[i], len = r->vocab_tok[i].len;
        int show = (int)(len > 80 ? 80 : len);
        if (t->kind[id])
            return NY_ERR(err, NY_E_FORMAT,
                          "%s: field \"model.vocab\": id %zu is given to both \"%.80s\" and "
                          "\"%.*s\"",
                          L->path, id, t->str[id], show, r->vocab_tok[i].s);
        memcpy(*ap, r->vocab_tok[i].s, len);
        (*ap)[len] = 0;
        t->str[id] = *ap;
        t->len[id] = (uint32_t)len;
        t->kind[id] = TOK_KIND_MODEL;
        *ap += len + 1;
        int32_t dup = vocab_insert(t, t->vocab_slots, t->vocab_cap, (int32_t)id);
        if (dup >= 0)
            return NY_ERR(err, NY_E_FORMAT,
                          "%s: field \"model.vocab\": token \"%.*s\" appears twice (ids %d and "
                          "%zu)",
                          L->path, show, r->vocab_tok[i].s, dup, id);
    }
    return NY_OK;
}

static int fill_added(struct tok_load *L, char **ap, struct ny_err *err)
{
    struct engine_tokenizer *t = L->t;
    size_t i;
    json_t *a;
    json_array_foreach(L->added, i, a)
    {
        json_t *c = json_object_get(a, "content");
        const char *s = json_string_value(c);
        size_t len = json_string_length(c),
               id = (size_t)json_integer_value(json_object_get(a, "id"));
        json_t *sp = json_object_get(a, "special"), *no = json_object_get(a, "normalized");
        if ((sp && !json_is_boolean(sp)) || (no && !json_is_boolean(no)))
            return NY_ERR(err, NY_E_FORMAT,
                          "%s: field \"added_tokens[%zu]\": \"special\" and "
                          "\"normalized\" must be true or false",
                          L->path, i);
        int special = json_is_true(sp);
        int normalized = no ? json_is_true(no) : !special;
        if (t->kind[id] & TOK_KIND_ADDED)
            return NY_ERR(err, NY_E_FORMAT,
                          "%s: field \"added_tokens[%zu].id\": id %zu is used "
                          "twice",
                          L->path, i, id);
        if (t->kind[id] & TOK_KIND_MODEL) {
            if (t->len[id] != len || memcmp(t->str[id], s, len) != 0)
                return NY_ERR(err, NY_E_FORMAT,
                              "%s: field \"added_tokens[%zu]\": \"%.80s\" has id "
                              "%zu, which the vocabulary gives to \"%.80s\"",
                              L->path, i, s, id, t->str[id]);
        } else {
            memcpy(*ap, s, len);
            (*ap)[len] = 0;
            t->str[id] = *ap;
            t->len[id] = (uint32_t)len;
            *ap += len + 1;
        }
        t->kind[id] |= TOK_KIND_ADDED | (special ? TOK_KIND_SPECIAL : 0);
        struct tok_matcher *m = normalized ? &t->added_norm : &t->added_raw;
        m->tok[m->n++] = (struct tok_added){(int32_t)id, t->str[id], len, special, normalized};
    }
    return NY_OK;
}

static int added_cmp(const void *pa, const void *pb)
{
    const struct tok_added *a = pa, *b = pb;
    uint8_t fa = (uint8_t)a->s[0], fb = (uint8_t)b->s[0];
    if (fa != fb)
        return fa < fb ? -1 : 1;
    if (a->len != b->len)
        return a->len > b->len ? -1 : 1; /* longest first */
    return a->id < b->id ? -1 : a->id > b->id;
}

static void matcher_index(struct tok_matcher *m)
{
    qsort(m->tok, m->n, sizeof *m->tok, added_cmp);
    size_t k = 0;
    for (int b = 0; b <= 256; b++) {
        while (k < m->n && (uint8_t)m->tok[k].s[0] < b)
            k++;
        m->first[b] = (uint32_t)k;
    }
}

/* Builds the token table by id, both vocabulary hash tables and the added-token matchers. */
static int load_tokens(struct tok_load *L, struct ny_err *err)
{
    struct engine_tokenizer *t = L->t;
    int rc = check_vocab(L, err);
    if (!rc)
        rc = check_added(L, err);
    if (rc)
        return rc;
    if (L->max_id1 == 0)
        return NY_ERR(err, NY_E_FORMAT, "%s: field \"model.vocab\" is empty", L->path);
    t->n_ids = L->max_id1;
    size_t n_added = L->added ? json_array_size(L->added) : 0;
    t->vocab_cap = pow2_at_least(2 * L->raw->n_vocab);
    t->all_cap = pow2_at_least(2 * t->n_ids);
    t->arena = ny_malloc(L->arena_len + 1);
    t->str = ny_calloc(t->n_ids, sizeof *t->str);
    t->len = ny_calloc(t->n_ids, sizeof *t->len);
    t->kind = ny_calloc(t->n_ids, 1);
    t->vocab_slots = ny_calloc(t->vocab_cap, sizeof *t->vocab_slots);
    t->all_slots = ny_calloc(t->all_cap, sizeof *t->all_slots);
    t->added_raw.tok = ny_calloc(n_added + 1, sizeof(struct tok_added));
    t->added_norm.tok = ny_calloc(n_added + 1, sizeof(struct tok_added));
    if (!t->arena || !t->str || !t->len || !t->kind || !t->vocab_slots || !t->all_slots ||
        !t->added_raw.tok || !t->added_norm.tok)
        return NY_ERR(err, NY_E_NOMEM, "%s: out of memory for %zu tokens", L->path, t->n_ids);
    char *ap = t->arena;
    rc = fill_vocab(L, &ap, err);
    if (!rc && L->added)
        rc = fill_added(L, &ap, err);
    if (rc)
        return rc;
    for (size_t id = 0; id < t->n_ids; id++)
        if (!t->kind[id])
            return NY_ERR(err, NY_E_FORMAT,
                          "%s: no token has id %zu (ids must run from 0 to "
                          "%zu without gaps)",
                          L->path, id, t->n_ids - 1);
    /* token_id: added tokens take precedence over a model token with the same string. */
    for (size_t pass = 0; pass < 2; pass++)
        for (size_t id = 0; id < t->n_ids; id++)
            if (((t->kind[id] & TOK_KIND_ADDED) != 0) == (pass == 0))
                vocab_insert(t, t->all_slots, t->all_cap, (int32_t)id);
    matcher_index(&t->added_raw);
    matcher_index(&t->added_norm);
    return NY_OK;
}

/* ---- merges ---------------------------------------------------------------------------------- */

static int load_merges(struct engine_tokenizer *t, const char *path, const struct tok_raw *raw,
                       struct ny_err *err)
{
    size_t n = raw->n_merges;
    if (n >= UINT32_MAX / 4)
        return NY_ERR(err, NY_E_RANGE, "%s: field \"model.merges\": too many merges", path);
    t->merges_cap = pow2_at_least(n + n / 2 + 1);
    t->merges = ny_malloc(t->merges_cap * sizeof *t->merges);
    if (!t->merges)
        return NY_ERR(err, NY_E_NOMEM, "%s: out of memory for %zu merges", path, n);
    memset(t->merges, 0xff, t->merges_cap * sizeof *t->merges);
    struct ny_buf cat;
    ny_buf_init(&cat);
    int rc = NY_OK;
    for (size_t r = 0; r < n && !rc; r++) {
        struct tok_str a = raw->merge_a[r], b = raw->merge_b[r];
        int32_t ia = tok_vocab_find(t, t->vocab_slots, t->vocab_cap, a.s, a.len);
        int32_t ib = tok_vocab_find(t, t->vocab_slots, t->vocab_cap, b.s, b.len);
        cat.len = 0;
        ny_buf_append(&cat, a.s, a.len);
        ny_buf_append(&cat, b.s, b.len);
        if (cat.failed) {
            rc = NY_ERR(err, NY_E_NOMEM, "%s: out of memory", path);
            break;
        }
        int32_t ic = tok_vocab_find(t, t->vocab_slots, t->vocab_cap, cat.data, cat.len);
        if (ia < 0 || ib < 0 || ic < 0) {
            const char *which = ia < 0 ? a.s : ib < 0 ? b.s : cat.data;
            size_t wl = ia < 0 ? a.len : ib < 0 ? b.len : cat.len;
            rc = NY_ERR(err, NY_E_FORMAT,
                        "%s: field \"model.merges[%zu]\": token \"%.*s\" is not in the "
                        "vocabulary",
                        path, r, (int)(wl > 80 ? 80 : wl), which);
            break;
        }
        merge_insert(t, ia, ib, (uint32_t)r, ic);
    }
    ny_buf_fini(&cat);
    return rc;
}

/* The fallback: model.vocab and model.merges from jansson (pointers into its strings). */
static int raw_from_json(const char *path, json_t *vocab, json_t *merges, struct tok_raw *raw,
                         struct ny_err *err)
{
    if (!json_is_object(vocab))
        return NY_ERR(err, NY_E_FORMAT, "%s: field \"model.vocab\" must be an object", path);
    if (!json_is_array(merges))
        return NY_ERR(err, NY_E_FORMAT, "%s: field \"model.merges\" must be an array", path);
    size_t nv = json_object_size(vocab), nm = json_array_size(merges), i = 0;
    raw->vocab_tok = ny_calloc(nv + 1, sizeof *raw->vocab_tok);
    raw->vocab_id = ny_calloc(nv + 1, sizeof *raw->vocab_id);
    raw->merge_a = ny_calloc(nm + 1, sizeof *raw->merge_a);
    raw->merge_b = ny_calloc(nm + 1, sizeof *raw->merge_b);
    if (!raw->vocab_tok || !raw->vocab_id || !raw->merge_a || !raw->merge_b)
        return NY_ERR(err, NY_E_NOMEM, "%s: out of memory", path);
    const char *key;
    json_t *v;
    json_object_foreach(vocab, key, v)
    {
        if (!json_is_integer(v))
            return NY_ERR(err, NY_E_FORMAT,
                          "%s: field \"model.vocab\": token \"%.80s\" has an id that is not an "
                          "integer",
                          path, key);
        raw->vocab_tok[i] = (struct tok_str){key, strlen(key)};
        raw->vocab_id[i++] = json_integer_value(v);
    }
    raw->n_vocab = i;
    for (i = 0; i < nm; i++) {
        json_t *m = json_array_get(merges, i), *m0 = json_array_get(m, 0),
               *m1 = json_array_get(m, 1);
        if (json_is_string(m)) {
            const char *s = json_string_value(m), *sp = memchr(s, ' ', json_string_length(m));
            size_t len = json_string_length(m);
            if (!sp || memchr(sp + 1, ' ', len - (size_t)(sp + 1 - s)))
                return NY_ERR(err, NY_E_FORMAT,
                              "%s: field \"model.merges[%zu]\": \"%.80s\" is not two tokens "
                              "separated by one space",
                              path, i, s);
            raw->merge_a[i] = (struct tok_str){s, (size_t)(sp - s)};
            raw->merge_b[i] = (struct tok_str){sp + 1, len - (size_t)(sp - s) - 1};
        } else if (json_is_array(m) && json_array_size(m) == 2 && json_is_string(m0) &&
                   json_is_string(m1)) {
            raw->merge_a[i] = (struct tok_str){json_string_value(m0), json_string_length(m0)};
            raw->merge_b[i] = (struct tok_str){json_string_value(m1), json_string_length(m1)};
        } else {
            return NY_ERR(err, NY_E_FORMAT,
                          "%s: field \"model.merges[%zu]\" must be \"a b\" or [\"a\", \"b\"]", path,
                          i);
        }
    }
    raw->n_merges = nm;
    return NY_OK;
}

/* ---- the model section ----------------------------------------------------------------------- */

static int bool_field(const char *path, json_t *obj, const char *key, const char *where, int *out,
                      struct ny_err *err)
{
    json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v))
        return NY_OK;
    if (!json_is_boolean(v))
        return NY_ERR(err, NY_E_FORMAT, "%s: field \"%s.%s\" must be true or false", path, where,
                      key);
    *out = json_is_true(v);
    return NY_OK;
}

/* raw holds model.vocab and model.merges already when `fast`; else they come from root. */
static int load_model(struct engine_tokenizer *t, const char *path, json_t *root,
                      struct tok_raw *raw, int fast, struct ny_err *err)
{
    json_t *model = json_object_get(root, "model");
    if (!json_is_object(model))
        return NY_ERR(err, NY_E_FORMAT, "%s: field \"model\" is missing or not an object", path);
    json_t *type = json_object_get(model, "type");
    if (type && (!json_is_string(type) || strcmp(json_string_value(type), "BPE") != 0))
        return NY_ERR(err, NY_E_UNSUPPORTED,
                      "%s: field \"model.type\": only \"BPE\" is "
                      "supported",
                      path);
    json_t *drop = json_object_get(model, "dropout");
    if (drop && !json_is_null(drop) && !(json_is_number(drop) && json_number_value(drop) == 0))
        return NY_ERR(err, NY_E_UNSUPPORTED, "%s: field \"model.dropout\" is not supported", path);
    static const char *const null_only[] = {"continuing_subword_prefix", "end_of_word_suffix"};
    for (size_t i = 0; i < 2; i++) {
        json_t *v = json_object_get(model, null_only[i]);
        if (v && !json_is_null(v) && !(json_is_string(v) && !json_string_length(v)))
            return NY_ERR(err, NY_E_UNSUPPORTED, "%s: field \"model.%s\" is not supported", path,
                          null_only[i]);
    }
    int byte_fallback = 0;
    int rc = bool_field(path, model, "byte_fallback", "model", &byte_fallback, err);
    if (!rc)
        rc = bool_field(path, model, "ignore_merges", "model", &t->ignore_merges, err);
    if (!rc)
        rc = bool_field(path, model, "fuse_unk", "model", &t->fuse_unk, err);
    if (rc)
        return rc;
    if (byte_fallback)
        return NY_ERR(err, NY_E_UNSUPPORTED,
                      "%s: field \"model.byte_fallback\": true is not "
                      "supported",
                      path);
    if (!fast && (rc = raw_from_json(path, json_object_get(model, "vocab"),
                                     json_object_get(model, "merges"), raw, err)) != 0)
        return rc;
    struct tok_load L = {t, path, raw, json_object_get(root, "added_tokens"), 0, 0};
    if (json_is_null(L.added))
        L.added = NULL;
    rc = load_tokens(&L, err);
    if (!rc)
        rc = load_merges(t, path, raw, err);
    if (rc)
        return rc;
    json_t *unk = json_object_get(model, "unk_token");
    if (unk && !json_is_null(unk)) {
        if (!json_is_string(unk))
            return NY_ERR(err, NY_E_FORMAT, "%s: field \"model.unk_token\" must be a string", path);
        t->unk_id = tok_vocab_find(t, t->vocab_slots, t->vocab_cap, json_string_value(unk),
                                   json_string_length(unk));
        if (t->unk_id < 0)
            return NY_ERR(err, NY_E_FORMAT,
                          "%s: field \"model.unk_token\": \"%.80s\" is not in "
                          "the vocabulary",
                          path, json_string_value(unk));
    }
    tok_alphabet_init(t);
    for (int b = 0; b < 256; b++)
        t->byte_id[b] =
            tok_vocab_find(t, t->vocab_slots, t->vocab_cap, t->byte_chr[b], t->byte_chr_len[b]);
    return NY_OK;
}

/* Defined in tokenizer_load.c. */
int tok_load_pipeline(struct engine_tokenizer *t, const char *path, json_t *root,
                      struct ny_err *err);
int tok_load_config(struct engine_tokenizer *t, const char *path, struct ny_err *err);

/* Parses path: the fast path when model.vocab and model.merges can be cut out, else jansson on
 * the whole file. On a jansson error in the cut text, the whole file is parsed again so that the
 * message's line and column are the file's. */
static int parse(const char *path, json_t **root, struct tok_raw *raw, int *fast,
                 struct ny_err *err)
{
    char *buf = NULL, *rest = NULL;
    size_t len = 0, rest_len = 0, bad;
    int rc = ny_file_read(path, TOK_JSON_MAX, &buf, &len, err);
    if (rc)
        return rc;
    if (!ny_utf8_valid(buf, len, &bad)) {
        ny_free(buf);
        return NY_ERR(err, NY_E_FORMAT, "%s: invalid UTF-8 at byte %zu", path, bad);
    }
    rc = tok_json_fast(path, buf, len, raw, &rest, &rest_len, err);
    *fast = rc == NY_OK;
    if (rc == NY_OK && ny_json_load_buf(rest, rest_len, path, root, NULL) == NY_OK) {
        ny_free(rest);
        ny_free(buf);
        return NY_OK;
    }
    ny_free(rest);
    if (rc == NY_OK || rc == NY_E_NOTFOUND) {
        tok_raw_fini(raw);
        *fast = 0;
        rc = ny_json_load_buf(buf, len, path, root, err);
    }
    ny_free(buf);
    return rc;
}

int engine_tokenizer_open(const char *path, struct engine_tokenizer **out, struct ny_err *err)
{
    json_t *root = NULL;
    struct tok_raw raw = {0};
    int fast = 0;
    int rc = parse(path, &root, &raw, &fast, err);
    if (rc) {
        tok_raw_fini(&raw);
        return rc;
    }
    struct engine_tokenizer *t = ny_calloc(1, sizeof *t);
    if (!t || !(t->path = ny_strdup(path))) {
        json_decref(root);
        tok_raw_fini(&raw);
        ny_free(t);
        return NY_ERR(err, NY_E_NOMEM, "%s: out of memory", path);
    }
    t->unk_id = t->bos_id = t->eos_id = -1;
    if (!json_is_object(root))
        rc = NY_ERR(err, NY_E_FORMAT, "%s: the top level must be an object", path);
    if (!rc)
        rc = load_model(t, path, root, &raw, fast, err);
    tok_raw_fini(&raw);
    if (!rc)
        rc = tok_load_pipeline(t, path, root, err);
    json_decref(root);
    if (!rc)
        rc = tok_load_config(t, path, err);
    if (rc) {
        engine_tokenizer_close(t);
        return rc;
    }
    *out = t;
    return NY_OK;
}

void engine_tokenizer_close(struct engine_tokenizer *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->n_steps; i++)
        pcre2_code_free(t->steps[i].re);
    ny_free(t->path);
    ny_free(t->arena);
    ny_free(t->str);
    ny_free(t->len);
    ny_free(t->kind);
    ny_free(t->vocab_slots);
    ny_free(t->all_slots);
    ny_free(t->merges);
    ny_free(t->added_raw.tok);
    ny_free(t->added_norm.tok);
    ny_free(t->post_ids);
    ny_free(t);
}

int32_t engine_tokenizer_token_id(const struct engine_tokenizer *t, const char *token)
{
    if (!t || !token)
        return -1;
    return tok_vocab_find(t, t->all_slots, t->all_cap, token, strlen(token));
}

const char *engine_tokenizer_token_str(const struct engine_tokenizer *t, int32_t id)
{
    if (!t || id < 0 || (size_t)id >= t->n_ids)
        return NULL;
    return t->str[id];
}

size_t engine_tokenizer_vocab_size(const struct engine_tokenizer *t)
{
    return t ? t->n_ids : 0;
}

int32_t engine_tokenizer_bos_id(const struct engine_tokenizer *t)
{
    return t ? t->bos_id : -1;
}

int32_t engine_tokenizer_eos_id(const struct engine_tokenizer *t)
{
    return t ? t->eos_id : -1;
}
