/* metrics_parse.c — the model output line and gold records to normalised CPT, modifier and
 * ICD-10-CM code lists (rules in metrics.h, section 1). */
#include <string.h>

#include "metrics.h"

static int is_az09(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}
static int is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}
static int is_alpha(unsigned char c)
{
    return c >= 'A' && c <= 'Z';
}
static int is_space(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}

static enum metrics_kind classify_norm(const unsigned char *t, size_t n, char *out)
{
    if (n == 5 && is_digit(t[0]) && is_digit(t[1]) && is_digit(t[2]) && is_digit(t[3]) &&
        is_az09(t[4])) {
        memcpy(out, t, 5);
        out[5] = '\0';
        return METRICS_KIND_CPT;
    }
    if (n == 2 && is_az09(t[0]) && is_az09(t[1])) {
        memcpy(out, t, 2);
        out[2] = '\0';
        return METRICS_KIND_MODIFIER;
    }
    if (n < 3 || !is_alpha(t[0]) || !is_digit(t[1]) || !is_az09(t[2]))
        return METRICS_KIND_NONE;
    const unsigned char *rest = t + 3;
    size_t nr = n - 3;
    if (nr > 0 && rest[0] == '.') {
        rest++;
        nr--;
        if (nr == 0) /* cannot happen after trailing-dot stripping; kept for direct callers */
            return METRICS_KIND_NONE;
    }
    if (nr > 4)
        return METRICS_KIND_NONE;
    for (size_t i = 0; i < nr; i++)
        if (!is_az09(rest[i]))
            return METRICS_KIND_NONE;
    memcpy(out, t, 3);
    size_t o = 3;
    if (nr > 0) {
        out[o++] = '.';
        memcpy(out + o, rest, nr);
        o += nr;
    }
    out[o] = '\0';
    return METRICS_KIND_ICD;
}

enum metrics_kind metrics_token_classify(const char *tok, size_t len, char out[METRICS_CODE_MAX])
{
    out[0] = '\0';
    const unsigned char *s = (const unsigned char *)tok;
    size_t b = 0, e = len;
    unsigned char up[16];
    /* Uppercase first so the strip sets (A-Z/0-9) see lowercase letters as letters. */
    while (b < e) {
        unsigned char c = s[b];
        if (c >= 'a' && c <= 'z')
            c = (unsigned char)(c - 32);
        if (is_az09(c))
            break;
        b++;
    }
    while (e > b) {
        unsigned char c = s[e - 1];
        if (c >= 'a' && c <= 'z')
            c = (unsigned char)(c - 32);
        if (is_az09(c) || c == '.')
            break;
        e--;
    }
    while (e > b && s[e - 1] == '.')
        e--;
    size_t n = e - b;
    if (n == 0 || n > 8) /* nothing classifiable is longer than "A00.0000" */
        return METRICS_KIND_NONE;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = s[b + i];
        up[i] = (c >= 'a' && c <= 'z') ? (unsigned char)(c - 32) : c;
    }
    return classify_norm(up, n, out);
}

void metrics_codes_init(struct metrics_codes *c)
{
    memset(c, 0, sizeof *c);
}

void metrics_codes_fini(struct metrics_codes *c)
{
    if (!c)
        return;
    ny_free(c->block_);
    memset(c, 0, sizeof *c);
}

static int has_code(const struct metrics_code *a, size_t n, const char *s)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(a[i].s, s) == 0)
            return 1;
    return 0;
}

static void acc_add(struct metrics_codes *c, enum metrics_kind k, const char *code)
{
    struct metrics_code *arr;
    size_t *n;
    switch (k) {
    case METRICS_KIND_CPT: arr = c->cpt; n = &c->n_cpt; break;
    case METRICS_KIND_MODIFIER: arr = c->mod; n = &c->n_mod; break;
    case METRICS_KIND_ICD: arr = c->icd; n = &c->n_icd; break;
    default: c->n_unparseable++; return;
    }
    if (has_code(arr, *n, code))
        return;
    if (*n >= METRICS_MAX_CODES) { /* a hostile line: keep the first codes, bound the work */
        c->n_unparseable++;
        return;
    }
    memcpy(arr[*n].s, code, METRICS_CODE_MAX);
    (*n)++;
}

/* Upper bound on the tokens of a piece of text: one per two bytes, plus one. */
static size_t token_bound(size_t len)
{
    return len / 2 + 1;
}

static int acc_alloc(struct metrics_codes *c, size_t cap)
{
    size_t total;
    if (cap > METRICS_MAX_CODES)
        cap = METRICS_MAX_CODES;
    if (ny_mul_overflow(cap, 3 * sizeof(struct metrics_code), &total))
        return NY_E_NOMEM;
    struct metrics_code *blk = ny_calloc(cap * 3, sizeof(struct metrics_code));
    if (!blk)
        return NY_E_NOMEM;
    c->block_ = blk;
    c->cpt = blk;
    c->mod = blk + cap;
    c->icd = blk + 2 * cap;
    return 0;
}

/* Tokenise text into c; calls back per token with its kind (for the gold checks). expect:
 * METRICS_KIND_NONE = any kind accepted. Returns the first offending kind mismatch via *bad. */
static void tokenize(const char *text, size_t len, struct metrics_codes *c,
                     enum metrics_kind expect, int *bad)
{
    size_t i = 0;
    while (i < len) {
        while (i < len && (text[i] == ',' || is_space((unsigned char)text[i])))
            i++;
        size_t b = i;
        while (i < len && text[i] != ',' && !is_space((unsigned char)text[i]))
            i++;
        if (i == b)
            continue;
        char code[METRICS_CODE_MAX];
        enum metrics_kind k = metrics_token_classify(text + b, i - b, code);
        if (k == METRICS_KIND_NONE) {
            /* A token that strips to nothing ("--") is skipped, not unparseable. */
            size_t j = b;
            int any = 0;
            for (; j < i; j++) {
                unsigned char ch = (unsigned char)text[j];
                if (ch >= 'a' && ch <= 'z')
                    ch = (unsigned char)(ch - 32);
                if (is_az09(ch))
                    any = 1;
            }
            if (!any)
                continue;
            if (bad && !*bad)
                *bad = -1;
        } else if (expect != METRICS_KIND_NONE && k != expect && bad && !*bad) {
            *bad = (int)k;
        }
        acc_add(c, k, code);
    }
}

int metrics_codes_parse(const char *line, size_t len, struct metrics_codes *out,
                        struct ny_err *err)
{
    struct metrics_codes c;
    metrics_codes_init(&c);
    if (!line)
        len = 0;
    if (acc_alloc(&c, token_bound(len)) != 0)
        return NY_ERR(err, NY_E_NOMEM, "parsing a model line of %zu bytes: out of memory", len);
    tokenize(line, len, &c, METRICS_KIND_NONE, NULL);
    metrics_codes_fini(out);
    *out = c;
    return 0;
}

static const char *kind_name(int k)
{
    switch (k) {
    case METRICS_KIND_CPT: return "a CPT code";
    case METRICS_KIND_MODIFIER: return "a modifier";
    case METRICS_KIND_ICD: return "an ICD-10-CM code";
    default: return "an unparseable token";
    }
}

int metrics_gold_parse(const char *line, const char *const *cpt, size_t n_cpt,
                       const char *const *mods, size_t n_mods, const char *const *icd,
                       size_t n_icd, const char *what, struct metrics_codes *out,
                       struct ny_err *err)
{
    const char *const *arrs[3] = {cpt, mods, icd};
    const size_t ns[3] = {n_cpt, n_mods, n_icd};
    const char *fields[3] = {"cpt", "modifiers", "icd"};
    const enum metrics_kind kinds[3] = {METRICS_KIND_CPT, METRICS_KIND_MODIFIER, METRICS_KIND_ICD};
    size_t cap = 1;
    if (line) {
        cap = token_bound(strlen(line));
    } else {
        for (int a = 0; a < 3; a++)
            for (size_t i = 0; i < ns[a]; i++)
                if (!arrs[a][i] || ny_add_overflow(cap, token_bound(strlen(arrs[a][i])), &cap))
                    return NY_ERR(err, NY_E_FORMAT, "%s: field \"%s\" element %zu is not a string",
                                  what, fields[a], i);
    }
    struct metrics_codes c;
    metrics_codes_init(&c);
    if (acc_alloc(&c, cap) != 0)
        return NY_ERR(err, NY_E_NOMEM, "%s: out of memory", what);
    int bad = 0;
    if (line) {
        tokenize(line, strlen(line), &c, METRICS_KIND_NONE, &bad);
        if (bad) {
            metrics_codes_fini(&c);
            return NY_ERR(err, NY_E_FORMAT, "%s: field \"codes\" (\"%.80s\") holds %s", what,
                          line, kind_name(bad));
        }
    } else {
        for (int a = 0; a < 3; a++) {
            for (size_t i = 0; i < ns[a]; i++) {
                tokenize(arrs[a][i], strlen(arrs[a][i]), &c, kinds[a], &bad);
                if (bad) {
                    metrics_codes_fini(&c);
                    return NY_ERR(err, NY_E_FORMAT,
                                  "%s: field \"%s\" element %zu (\"%.40s\") is %s", what,
                                  fields[a], i, arrs[a][i], kind_name(bad));
                }
            }
        }
    }
    metrics_codes_fini(out);
    *out = c;
    return 0;
}
