/* tokenizer_json.c — the fast path of loading: model.vocab (128k entries) and model.merges (280k)
 * make up nearly all of a Llama-3 tokenizer.json, and building jansson objects for them costs
 * most of the load time. So these two values are located with a bracket-matching scan, decoded
 * here directly into flat arrays, and cut out of the text that jansson then parses (as {} and []).
 * When the scan does not find them plainly (escaped key names, a duplicate key, odd nesting),
 * loading falls back to jansson for the whole file; both paths fill the same struct tok_raw. */
#include <stdint.h>
#include <string.h>

#include "tokenizer_int.h"

struct scan {
    const char *p, *end;
};

static void ws(struct scan *s)
{
    while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r'))
        s->p++;
}

/* Skips a string starting at '"'; 0 when it does not end. */
static int skip_string(struct scan *s)
{
    for (s->p++; s->p < s->end; s->p++) {
        if (*s->p == '\\')
            s->p++;
        else if (*s->p == '"')
            return s->p++, 1;
    }
    return 0;
}

/* Skips one value of any kind (brackets matched, strings respected); 0 when it is unbalanced or
 * truncated. It does not validate: the decoders below and jansson do. */
static int skip_value(struct scan *s)
{
    size_t depth = 0;
    for (;;) {
        ws(s);
        if (s->p >= s->end)
            return 0;
        char c = *s->p;
        if (c == '"') {
            if (!skip_string(s))
                return 0;
        } else if (c == '{' || c == '[') {
            depth++;
            s->p++;
            continue;
        } else if (c == '}' || c == ']') {
            if (depth == 0)
                return 0;
            depth--;
            s->p++;
        } else if (c == ',' || c == ':') {
            if (depth == 0)
                return 0;
            s->p++;
            continue;
        } else {
            const char *q = s->p;
            while (s->p < s->end && !strchr(",:]} \t\r\n\"{[", *s->p))
                s->p++;
            if (s->p == q)
                return 0;
        }
        if (depth == 0)
            return 1;
    }
}

/* Walks the members of the object at s->p, calling back with each plain key and the span of its
 * value. Returns 0 when the object is not plainly scannable. */
static int members(struct scan *s,
                   int (*cb)(void *, const char *, size_t, const char *, const char *), void *ctx)
{
    ws(s);
    if (s->p >= s->end || *s->p != '{')
        return 0;
    s->p++;
    ws(s);
    if (s->p < s->end && *s->p == '}')
        return s->p++, 1;
    for (;;) {
        ws(s);
        if (s->p >= s->end || *s->p != '"')
            return 0;
        const char *k = s->p + 1;
        if (!skip_string(s))
            return 0;
        size_t klen = (size_t)(s->p - 1 - k);
        ws(s);
        if (s->p >= s->end || *s->p != ':')
            return 0;
        s->p++;
        ws(s);
        const char *v = s->p;
        if (!skip_value(s) || !cb(ctx, k, klen, v, s->p))
            return 0;
        ws(s);
        if (s->p < s->end && *s->p == ',') {
            s->p++;
            continue;
        }
        if (s->p < s->end && *s->p == '}')
            return s->p++, 1;
        return 0;
    }
}

struct spans {
    const char *vocab, *vocab_end, *merges, *merges_end, *model;
    int dup;
};

static int model_member(void *ctx, const char *k, size_t klen, const char *v, const char *end)
{
    struct spans *sp = ctx;
    if (klen == 5 && !memcmp(k, "vocab", 5)) {
        sp->dup |= sp->vocab != NULL;
        sp->vocab = v;
        sp->vocab_end = end;
    } else if (klen == 6 && !memcmp(k, "merges", 6)) {
        sp->dup |= sp->merges != NULL;
        sp->merges = v;
        sp->merges_end = end;
    }
    return 1;
}

static int top_member(void *ctx, const char *k, size_t klen, const char *v, const char *end)
{
    struct spans *sp = ctx;
    if (klen != 5 || memcmp(k, "model", 5) != 0)
        return 1;
    sp->dup |= sp->model != NULL;
    sp->model = v;
    struct scan s = {v, end};
    return members(&s, model_member, sp);
}

/* ---- decoding the two values ------------------------------------------------------------------
 */

struct dec {
    struct scan s;
    const char *path, *field, *buf;
    struct ny_buf arena; /* decoded strings, each followed by NUL; offsets until the end */
    size_t index;        /* the merge being decoded, or SIZE_MAX */
    struct ny_err *err;
};

static int bad(struct dec *d, const char *what)
{
    char idx[32] = "";
    if (d->index != SIZE_MAX)
        snprintf(idx, sizeof idx, "[%zu]", d->index);
    return NY_ERR(d->err, NY_E_FORMAT, "%s: field \"%s%s\": malformed JSON at byte %zu: %s",
                  d->path, d->field, idx, (size_t)(d->s.p - d->buf), what);
}

static int hex4(const char *p, uint32_t *out)
{
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        int h = c >= '0' && c <= '9'   ? c - '0'
                : c >= 'a' && c <= 'f' ? c - 'a' + 10
                : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                       : -1;
        if (h < 0)
            return 0;
        v = v * 16 + (uint32_t)h;
    }
    *out = v;
    return 1;
}

/* Decodes the string at d->s.p into the arena; *off and *len locate it there. */
static int string(struct dec *d, size_t *off, size_t *len)
{
    struct scan *s = &d->s;
    if (s->p >= s->end || *s->p != '"')
        return bad(d, "a string was expected");
    s->p++;
    *off = d->arena.len;
    for (;;) {
        const char *q = s->p;
        while (q < s->end && *q != '"' && *q != '\\' && (uint8_t)*q >= 0x20)
            q++;
        ny_buf_append(&d->arena, s->p, (size_t)(q - s->p));
        s->p = q;
        if (q >= s->end)
            return bad(d, "the string does not end");
        if (*q == '"')
            break;
        if ((uint8_t)*q < 0x20)
            return bad(d, "a control character inside a string");
        if (s->end - q < 2)
            return bad(d, "the string does not end");
        char e = q[1], out = 0;
        const char *simple = "\"\\/bfnrt", *val = "\"\\/\b\f\n\r\t";
        const char *hit = strchr(simple, e);
        if (hit && e) {
            out = val[hit - simple];
            ny_buf_append(&d->arena, &out, 1);
            s->p += 2;
            continue;
        }
        uint32_t cp, lo;
        if (e != 'u' || s->end - q < 6 || !hex4(q + 2, &cp))
            return bad(d, "a bad escape");
        s->p += 6;
        if (cp >= 0xD800 && cp <= 0xDBFF) {
            if (s->end - s->p < 6 || s->p[0] != '\\' || s->p[1] != 'u' || !hex4(s->p + 2, &lo) ||
                lo < 0xDC00 || lo > 0xDFFF)
                return bad(d, "a lone surrogate");
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            s->p += 6;
        } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
            return bad(d, "a lone surrogate");
        }
        char u[4];
        ny_buf_append(&d->arena, u, (size_t)ny_utf8_encode(cp, u));
    }
    s->p++;
    *len = d->arena.len - *off;
    ny_buf_append(&d->arena, "", 1);
    return d->arena.failed ? NY_ERR(d->err, NY_E_NOMEM, "%s: out of memory", d->path) : NY_OK;
}

/* Expects c after optional white space. */
static int expect(struct dec *d, char c)
{
    ws(&d->s);
    if (d->s.p >= d->s.end || *d->s.p != c) {
        char what[40];
        snprintf(what, sizeof what, "'%c' was expected", c);
        return bad(d, what);
    }
    d->s.p++;
    return NY_OK;
}

/* After an element: 1 for ',', 0 for the closing bracket, negative on error. */
static int next(struct dec *d, char close)
{
    ws(&d->s);
    if (d->s.p < d->s.end && *d->s.p == ',')
        return d->s.p++, 1;
    if (d->s.p < d->s.end && *d->s.p == close)
        return d->s.p++, 0;
    return bad(d, "',' or the closing bracket was expected");
}

static int grow_arr(void **p, size_t *cap, size_t n, size_t size)
{
    if (n < *cap)
        return NY_OK;
    size_t c = *cap ? *cap * 2 : 1024;
    void *q = ny_reallocarray(*p, c, size);
    if (!q)
        return NY_E_NOMEM;
    *p = q;
    *cap = c;
    return NY_OK;
}

/* Integer ids only; the range is checked by the loader. */
static int integer(struct dec *d, int64_t *out)
{
    struct scan *s = &d->s;
    const char *q = s->p;
    int neg = q < s->end && *q == '-';
    q += neg;
    int64_t v = 0;
    const char *digits = q;
    while (q < s->end && *q >= '0' && *q <= '9') {
        v = v < ((int64_t)1 << 40) ? v * 10 + (*q - '0') : v;
        q++;
    }
    if (q == digits || (q - digits > 1 && *digits == '0'))
        return bad(d, "the id is not an integer");
    if (q < s->end && strchr(".eE", *q))
        return bad(d, "the id is not an integer");
    s->p = q;
    *out = neg ? -v : v;
    return NY_OK;
}

static int decode_vocab(struct dec *d, struct tok_raw *raw, size_t **offs)
{
    size_t cap = 0;
    d->field = "model.vocab";
    int rc = expect(d, '{');
    ws(&d->s);
    if (!rc && d->s.p < d->s.end && *d->s.p == '}')
        return d->s.p++, NY_OK;
    for (int more = 1; !rc && more > 0;) {
        size_t n = raw->n_vocab, off, len;
        if (grow_arr((void **)offs, &cap, n, 2 * sizeof **offs) ||
            grow_arr((void **)&raw->vocab_id, &raw->cap_vocab, n, sizeof *raw->vocab_id))
            return NY_ERR(d->err, NY_E_NOMEM, "%s: out of memory", d->path);
        ws(&d->s);
        if ((rc = string(d, &off, &len)) || (rc = expect(d, ':')))
            break;
        ws(&d->s);
        if ((rc = integer(d, &raw->vocab_id[n])))
            break;
        (*offs)[2 * n] = off;
        (*offs)[2 * n + 1] = len;
        raw->n_vocab++;
        if ((more = next(d, '}')) < 0)
            rc = more;
    }
    return rc;
}

/* One merge: "a b" or ["a", "b"]; offsets of a and b and their lengths. */
static int decode_merge(struct dec *d, size_t idx, size_t m[4])
{
    ws(&d->s);
    if (d->s.p < d->s.end && *d->s.p == '[') {
        d->s.p++;
        ws(&d->s);
        int rc = string(d, &m[0], &m[1]);
        if (!rc)
            rc = expect(d, ',');
        if (!rc) {
            ws(&d->s);
            rc = string(d, &m[2], &m[3]);
        }
        return rc ? rc : expect(d, ']');
    }
    size_t off, len;
    int rc = string(d, &off, &len);
    if (rc)
        return rc;
    const char *s = d->arena.data + off, *sp = memchr(s, ' ', len);
    if (!sp || memchr(sp + 1, ' ', len - (size_t)(sp + 1 - s)))
        return NY_ERR(d->err, NY_E_FORMAT,
                      "%s: field \"model.merges[%zu]\": \"%.80s\" is not two "
                      "tokens separated by one space",
                      d->path, idx, s);
    m[0] = off;
    m[1] = (size_t)(sp - s);
    m[2] = off + m[1] + 1;
    m[3] = len - m[1] - 1;
    return NY_OK;
}

static int decode_merges(struct dec *d, struct tok_raw *raw, size_t **offs)
{
    size_t cap = 0;
    d->field = "model.merges";
    int rc = expect(d, '[');
    ws(&d->s);
    if (!rc && d->s.p < d->s.end && *d->s.p == ']')
        return d->s.p++, NY_OK;
    for (int more = 1; !rc && more > 0;) {
        size_t n = raw->n_merges;
        if (grow_arr((void **)offs, &cap, n, 4 * sizeof **offs))
            return NY_ERR(d->err, NY_E_NOMEM, "%s: out of memory", d->path);
        d->index = n;
        if ((rc = decode_merge(d, n, *offs + 4 * n)))
            break;
        d->index = SIZE_MAX;
        raw->n_merges++;
        if ((more = next(d, ']')) < 0)
            rc = more;
    }
    return rc;
}

/* Turns arena offsets into pointers once the arena stops moving. */
static int finish(struct dec *d, struct tok_raw *raw, size_t *voffs, size_t *moffs)
{
    raw->arena = d->arena.data;
    d->arena.data = NULL;
    raw->vocab_tok = ny_calloc(raw->n_vocab + 1, sizeof *raw->vocab_tok);
    raw->merge_a = ny_calloc(raw->n_merges + 1, sizeof *raw->merge_a);
    raw->merge_b = ny_calloc(raw->n_merges + 1, sizeof *raw->merge_b);
    if (!raw->vocab_tok || !raw->merge_a || !raw->merge_b)
        return NY_ERR(d->err, NY_E_NOMEM, "%s: out of memory", d->path);
    for (size_t i = 0; i < raw->n_vocab; i++)
        raw->vocab_tok[i] = (struct tok_str){raw->arena + voffs[2 * i], voffs[2 * i + 1]};
    for (size_t i = 0; i < raw->n_merges; i++) {
        size_t *m = moffs + 4 * i;
        raw->merge_a[i] = (struct tok_str){raw->arena + m[0], m[1]};
        raw->merge_b[i] = (struct tok_str){raw->arena + m[2], m[3]};
    }
    return NY_OK;
}

int tok_json_fast(const char *path, const char *buf, size_t len, struct tok_raw *raw, char **rest,
                  size_t *rest_len, struct ny_err *err)
{
    struct spans sp = {0};
    struct scan s = {buf, buf + len};
    if (!members(&s, top_member, &sp) || sp.dup || !sp.vocab || !sp.merges)
        return NY_E_NOTFOUND;
    /* The rest of the file, with the two values replaced by empty ones, goes to jansson. */
    if (*sp.vocab != '{' || *sp.merges != '[')
        return NY_E_NOTFOUND;
    struct scan v = {sp.vocab_end, NULL}, m = {sp.merges_end, NULL};
    int first_vocab = sp.vocab < sp.merges;
    const char *a0 = first_vocab ? sp.vocab : sp.merges, *a1 = first_vocab ? v.p : m.p;
    const char *b0 = first_vocab ? sp.merges : sp.vocab, *b1 = first_vocab ? m.p : v.p;
    struct ny_buf r;
    ny_buf_init(&r);
    ny_buf_append(&r, buf, (size_t)(a0 - buf));
    ny_buf_puts(&r, first_vocab ? "{}" : "[]");
    ny_buf_append(&r, a1, (size_t)(b0 - a1));
    ny_buf_puts(&r, first_vocab ? "[]" : "{}");
    ny_buf_append(&r, b1, (size_t)(buf + len - b1));
    struct dec d = {.s = {sp.vocab, v.p}, .path = path, .buf = buf, .index = SIZE_MAX, .err = err};
    ny_buf_init(&d.arena);
    size_t *voffs = NULL, *moffs = NULL;
    int rc = r.failed ? NY_ERR(err, NY_E_NOMEM, "%s: out of memory", path)
                      : decode_vocab(&d, raw, &voffs);
    if (!rc && d.s.p != v.p)
        rc = bad(&d, "trailing characters");
    if (!rc) {
        d.s = (struct scan){sp.merges, m.p};
        rc = decode_merges(&d, raw, &moffs);
    }
    if (!rc && d.s.p != m.p)
        rc = bad(&d, "trailing characters");
    if (!rc)
        rc = finish(&d, raw, voffs, moffs);
    ny_free(voffs);
    ny_free(moffs);
    ny_buf_fini(&d.arena);
    if (rc) {
        ny_buf_fini(&r);
        return rc;
    }
    *rest_len = r.len;
    *rest = r.data;
    return NY_OK;
}

void tok_raw_fini(struct tok_raw *raw)
{
    ny_free(raw->arena);
    ny_free(raw->vocab_tok);
    ny_free(raw->vocab_id);
    ny_free(raw->merge_a);
    ny_free(raw->merge_b);
    memset(raw, 0, sizeof *raw);
}
