/* tokenizer_encode.c — text to ids and back, following Hugging Face `tokenizers` step by step:
 * added tokens are cut out of the raw text first (leftmost, longest first; normalized=false tokens
 * before normalized=true ones), each remaining segment goes through the pre-tokenizer (Split
 * pieces, then ByteLevel: optional prefix space, optional GPT-2 split, bytes to the alphabet), and
 * each piece through BPE (the whole piece when it is a token and ignore_merges is set, else the
 * lowest-ranked merge first, leftmost on ties). */
#include <string.h>

#include "tokenizer_int.h"

struct enc {
    const struct engine_tokenizer *t;
    struct tok_ids *out;
    pcre2_match_data *md;
    struct ny_err *err;
    struct ny_buf mapped; /* a piece in the byte-level alphabet */
    int32_t *sym, *prev, *next;
    uint64_t *heap; /* (rank << 32) | position, a binary min-heap */
    int32_t *heap_id;
    size_t cap;
};

static int grow(struct enc *e, size_t n)
{
    if (n <= e->cap)
        return NY_OK;
    size_t cap = n < 256 ? 256 : n;
    ny_free(e->sym);
    ny_free(e->prev);
    ny_free(e->next);
    ny_free(e->heap);
    ny_free(e->heap_id);
    e->sym = ny_reallocarray(NULL, cap, sizeof(int32_t));
    e->prev = ny_reallocarray(NULL, cap, sizeof(int32_t));
    e->next = ny_reallocarray(NULL, cap, sizeof(int32_t));
    e->heap = ny_reallocarray(NULL, cap, 3 * sizeof(uint64_t));
    e->heap_id = ny_reallocarray(NULL, cap, 3 * sizeof(int32_t));
    e->cap = cap;
    if (!e->sym || !e->prev || !e->next || !e->heap || !e->heap_id) {
        e->cap = 0;
        return NY_ERR(e->err, NY_E_NOMEM, "tokenizer: out of memory for a %zu-byte piece", n);
    }
    return NY_OK;
}

static void heap_push(struct enc *e, size_t *n, uint64_t key, int32_t id)
{
    size_t i = (*n)++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (e->heap[p] <= key)
            break;
        e->heap[i] = e->heap[p];
        e->heap_id[i] = e->heap_id[p];
        i = p;
    }
    e->heap[i] = key;
    e->heap_id[i] = id;
}

static void heap_pop(struct enc *e, size_t *n)
{
    uint64_t key = e->heap[--*n];
    int32_t id = e->heap_id[*n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n)
            break;
        if (c + 1 < *n && e->heap[c + 1] < e->heap[c])
            c++;
        if (key <= e->heap[c])
            break;
        e->heap[i] = e->heap[c];
        e->heap_id[i] = e->heap_id[c];
        i = c;
    }
    e->heap[i] = key;
    e->heap_id[i] = id;
}

static void push_pair(struct enc *e, size_t *hn, int32_t pos)
{
    uint32_t rank;
    int32_t id;
    if (e->next[pos] >= 0 && tok_merge_find(e->t, e->sym[pos], e->sym[e->next[pos]], &rank, &id))
        heap_push(e, hn, ((uint64_t)rank << 32) | (uint32_t)pos, id);
}

/* BPE over one piece of raw bytes. */
static int bpe(struct enc *e, const char *s, size_t n)
{
    const struct engine_tokenizer *t = e->t;
    if (t->ignore_merges) {
        e->mapped.len = 0;
        for (size_t i = 0; i < n; i++)
            ny_buf_append(&e->mapped, t->byte_chr[(uint8_t)s[i]], t->byte_chr_len[(uint8_t)s[i]]);
        if (e->mapped.failed)
            return NY_ERR(e->err, NY_E_NOMEM, "tokenizer: out of memory");
        int32_t id = tok_vocab_find(t, t->vocab_slots, t->vocab_cap, e->mapped.data, e->mapped.len);
        if (id >= 0)
            return tok_ids_push(e->out, id);
    }
    int rc = grow(e, n);
    if (rc)
        return rc;
    int32_t m = 0;
    for (size_t i = 0; i < n; i++) {
        int32_t id = t->byte_id[(uint8_t)s[i]];
        if (id < 0) {
            if (t->unk_id < 0 || (t->fuse_unk && m > 0 && e->sym[m - 1] == t->unk_id))
                continue; /* no unk token: the character is dropped, as Hugging Face does */
            id = t->unk_id;
        }
        e->sym[m] = id;
        e->prev[m] = m - 1;
        e->next[m] = m + 1;
        m++;
    }
    if (m == 0)
        return NY_OK;
    e->next[m - 1] = -1;
    size_t hn = 0;
    for (int32_t i = 0; i + 1 < m; i++)
        push_pair(e, &hn, i);
    while (hn > 0) {
        int32_t pos = (int32_t)(e->heap[0] & 0xffffffffu), want = e->heap_id[0];
        heap_pop(e, &hn);
        int32_t r = e->next[pos];
        uint32_t rank;
        int32_t id;
        if (e->sym[pos] < 0 || r < 0 || !tok_merge_find(t, e->sym[pos], e->sym[r], &rank, &id) ||
            id != want)
            continue; /* stale: a neighbour merged since this pair was queued */
        e->sym[pos] = id;
        e->sym[r] = -1;
        e->next[pos] = e->next[r];
        if (e->next[r] >= 0)
            e->prev[e->next[r]] = pos;
        if (e->prev[pos] >= 0)
            push_pair(e, &hn, e->prev[pos]);
        push_pair(e, &hn, pos);
    }
    for (int32_t i = 0; i >= 0; i = e->next[i])
        if ((rc = tok_ids_push(e->out, e->sym[i])) != 0)
            return NY_ERR(e->err, rc, "tokenizer: out of memory");
    return NY_OK;
}

static int pretokenize(struct enc *e, size_t step, const char *s, size_t n);

/* Calls pretokenize(step + 1) on every gap and every match of re in s (Isolated). */
static int split(struct enc *e, const pcre2_code *re, size_t step, const char *s, size_t n)
{
    size_t prev = 0, off = 0;
    uint32_t opts = PCRE2_NO_UTF_CHECK;
    while (off <= n) {
        int rc = pcre2_match(re, (PCRE2_SPTR)s, n, off, opts, e->md, NULL);
        if (rc == PCRE2_ERROR_NOMATCH)
            break;
        if (rc == PCRE2_ERROR_JIT_STACKLIMIT && !(opts & PCRE2_NO_JIT)) {
            opts |= PCRE2_NO_JIT; /* the interpreter keeps its backtracking on the heap */
            continue;
        }
        if (rc < 0) {
            PCRE2_UCHAR msg[160];
            pcre2_get_error_message(rc, msg, sizeof msg);
            return NY_ERR(e->err, NY_E_RANGE,
                          "tokenizer: pre-tokenization regex failed on a "
                          "%zu-byte segment: %s",
                          n, (const char *)msg);
        }
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(e->md);
        size_t a = ov[0], b = ov[1];
        if (a > prev && (rc = pretokenize(e, step + 1, s + prev, a - prev)) != 0)
            return rc;
        if (b > a && (rc = pretokenize(e, step + 1, s + a, b - a)) != 0)
            return rc;
        prev = b;
        if (b > a) {
            off = b;
        } else { /* an empty match: step over one character */
            if (b >= n)
                break;
            off = b + 1;
            while (off < n && ((uint8_t)s[off] & 0xC0) == 0x80)
                off++;
        }
    }
    return n > prev ? pretokenize(e, step + 1, s + prev, n - prev) : NY_OK;
}

static int pretokenize(struct enc *e, size_t step, const char *s, size_t n)
{
    const struct engine_tokenizer *t = e->t;
    if (n == 0)
        return NY_OK;
    if (step >= t->n_steps)
        return bpe(e, s, n);
    const struct tok_step *st = &t->steps[step];
    if (st->type == TOK_STEP_SPLIT)
        return split(e, st->re, step, s, n);
    /* ByteLevel, always the last step: the pieces after it go to BPE. */
    char *copy = NULL;
    if (st->add_prefix_space && s[0] != ' ') {
        if (!(copy = ny_malloc(n + 1)))
            return NY_ERR(e->err, NY_E_NOMEM, "tokenizer: out of memory");
        copy[0] = ' ';
        memcpy(copy + 1, s, n);
        s = copy;
        n++;
    }
    int rc = st->re ? split(e, st->re, step, s, n) : bpe(e, s, n);
    ny_free(copy);
    return rc;
}

/* Cuts the added tokens of matcher m out of text; the rest goes to the next stage. */
static int cut_added(struct enc *e, const struct tok_matcher *m, int stage, const char *s, size_t n)
{
    size_t start = 0, i = 0;
    while (i < n) {
        uint8_t b = (uint8_t)s[i];
        const struct tok_added *hit = NULL;
        for (uint32_t k = m->first[b]; k < m->first[b + 1]; k++) {
            const struct tok_added *a = &m->tok[k];
            if (a->len <= n - i && memcmp(s + i, a->s, a->len) == 0) {
                hit = a; /* longest first within the bucket */
                break;
            }
        }
        if (!hit) {
            i++;
            continue;
        }
        int rc = stage == 0 ? cut_added(e, &e->t->added_norm, 1, s + start, i - start)
                            : pretokenize(e, 0, s + start, i - start);
        if (rc || (rc = tok_ids_push(e->out, hit->id)) != 0)
            return rc < 0 ? rc : NY_E_NOMEM;
        i += hit->len;
        start = i;
    }
    return stage == 0 ? cut_added(e, &e->t->added_norm, 1, s + start, n - start)
                      : pretokenize(e, 0, s + start, n - start);
}

int tok_encode_into(const struct engine_tokenizer *t, const char *text, size_t len,
                    struct tok_ids *out, struct ny_err *err)
{
    struct enc e = {.t = t, .out = out, .err = err};
    ny_buf_init(&e.mapped);
    e.md = pcre2_match_data_create(2, NULL);
    int rc = e.md ? cut_added(&e, &t->added_raw, 0, text, len)
                  : NY_ERR(err, NY_E_NOMEM, "tokenizer: out of memory");
    if (rc == NY_E_NOMEM && err && !err->code)
        NY_ERR(err, NY_E_NOMEM, "tokenizer: out of memory");
    pcre2_match_data_free(e.md);
    ny_buf_fini(&e.mapped);
    ny_free(e.sym);
    ny_free(e.prev);
    ny_free(e.next);
    ny_free(e.heap);
    ny_free(e.heap_id);
    return rc;
}

int engine_tokenizer_encode(const struct engine_tokenizer *t, const char *text, size_t len,
                            int add_special, int32_t **ids, size_t *n_ids, struct ny_err *err)
{
    size_t bad;
    if (!t || (!text && len))
        return NY_ERR(err, NY_E_INVALID, "tokenizer: no tokenizer or no text");
    if (!ny_utf8_valid(text, len, &bad))
        return NY_ERR(err, NY_E_INVALID,
                      "tokenizer: input text is not valid UTF-8 (byte offset "
                      "%zu)",
                      bad);
    struct tok_ids out = {0};
    int rc = NY_OK;
    int post = add_special && t->post_ids;
    for (size_t i = 0; post && i < t->post_before && !rc; i++)
        rc = tok_ids_push(&out, t->post_ids[i]);
    if (!rc)
        rc = tok_encode_into(t, text, len, &out, err);
    for (size_t i = 0; post && i < t->post_after && !rc; i++)
        rc = tok_ids_push(&out, t->post_ids[t->post_before + i]);
    if (rc) {
        ny_free(out.v);
        if (err && !err->code)
            NY_ERR(err, rc, "tokenizer: out of memory");
        return rc;
    }
    *ids = out.v;
    *n_ids = out.n;
    return NY_OK;
}

/* ---- decoding ----------------------------------------------------------------------------------
 */

/* Length of the valid UTF-8 sequence at s, or (negated) the length of the maximal invalid prefix
 * that one U+FFFD replaces, as Rust's String::from_utf8_lossy does. */
static int utf8_step(const uint8_t *s, size_t n)
{
    uint8_t c = s[0];
    if (c < 0x80)
        return 1;
    int need;
    uint8_t lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF)
        need = 1;
    else if (c >= 0xE0 && c <= 0xEF) {
        need = 2;
        lo = c == 0xE0 ? 0xA0 : 0x80;
        hi = c == 0xED ? 0x9F : 0xBF;
    } else if (c >= 0xF0 && c <= 0xF4) {
        need = 3;
        lo = c == 0xF0 ? 0x90 : 0x80;
        hi = c == 0xF4 ? 0x8F : 0xBF;
    } else
        return -1;
    for (int k = 1; k <= need; k++) {
        if ((size_t)k >= n)
            return -k;
        uint8_t lim_lo = k == 1 ? lo : 0x80, lim_hi = k == 1 ? hi : 0xBF;
        if (s[k] < lim_lo || s[k] > lim_hi)
            return -k;
    }
    return need + 1;
}

static int token_bytes(const struct engine_tokenizer *t, int32_t id, struct ny_buf *b)
{
    const char *s = t->str[id];
    size_t n = t->len[id], start = b->len;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        int k = ny_utf8_decode(s + i, n - i, &cp);
        if (k <= 0 || cp >= 324 || t->chr_byte[cp] < 0) {
            b->len = start; /* not all in the alphabet: the token's own bytes */
            return ny_buf_append(b, s, n);
        }
        char c = (char)t->chr_byte[cp];
        ny_buf_append(b, &c, 1);
        i += (size_t)k;
    }
    return NY_OK;
}

int engine_tokenizer_decode(const struct engine_tokenizer *t, const int32_t *ids, size_t n_ids,
                            int skip_special, char **text, size_t *len, struct ny_err *err)
{
    if (!t || (!ids && n_ids))
        return NY_ERR(err, NY_E_INVALID, "tokenizer: no tokenizer or no ids");
    struct ny_buf raw, out;
    ny_buf_init(&raw);
    ny_buf_init(&out);
    for (size_t i = 0; i < n_ids; i++) {
        if (ids[i] < 0 || (size_t)ids[i] >= t->n_ids) {
            ny_buf_fini(&raw);
            return NY_ERR(err, NY_E_RANGE,
                          "tokenizer: id %d at position %zu is outside the "
                          "vocabulary [0, %zu)",
                          ids[i], i, t->n_ids);
        }
        if (skip_special && (t->kind[ids[i]] & TOK_KIND_SPECIAL))
            continue;
        token_bytes(t, ids[i], &raw);
    }
    const uint8_t *s = (const uint8_t *)raw.data;
    for (size_t i = 0; i < raw.len;) {
        int k = utf8_step(s + i, raw.len - i);
        if (k > 0)
            ny_buf_append(&out, s + i, (size_t)k);
        else
            ny_buf_append(&out, "\xEF\xBF\xBD", 3);
        i += (size_t)(k > 0 ? k : -k);
    }
    int failed = raw.failed || out.failed;
    ny_buf_fini(&raw);
    if (failed || (!out.data && !(out.data = ny_calloc(1, 1)))) {
        ny_buf_fini(&out);
        return NY_ERR(err, NY_E_NOMEM, "tokenizer: out of memory decoding %zu ids", n_ids);
    }
    *len = out.len;
    *text = out.data;
    return NY_OK;
}
