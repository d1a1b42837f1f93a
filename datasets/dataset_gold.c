/* dataset_gold.c — gold codes of a record: normalisation of code tokens by the metrics parsing
 * rules (issue 3) and the gold line in the model's output format. */
#include <ctype.h>
#include <string.h>

#include "datasets_int.h"

static int is_az09(int c)
{
    return (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

int dataset_code_normalize(const char *tok, size_t len, char out[16])
{
    char t[64];
    size_t n = 0;
    if (len >= sizeof t)
        return 0;
    for (size_t i = 0; i < len; i++)
        t[n++] = (char)toupper((unsigned char)tok[i]);
    size_t a = 0;
    while (a < n && !is_az09((unsigned char)t[a]))
        a++;
    while (n > a && !is_az09((unsigned char)t[n - 1]) && t[n - 1] != '.')
        n--;
    while (n > a && t[n - 1] == '.')
        n--;
    const char *s = t + a;
    n -= a;
    if (n == 0)
        return 0;
    /* CPT: 4 digits then a digit or a letter */
    if (n == 5 && isdigit((unsigned char)s[0]) && isdigit((unsigned char)s[1]) &&
        isdigit((unsigned char)s[2]) && isdigit((unsigned char)s[3]) &&
        is_az09((unsigned char)s[4])) {
        memcpy(out, s, 5);
        out[5] = 0;
        return 'C';
    }
    if (n == 2 && is_az09((unsigned char)s[0]) && is_az09((unsigned char)s[1])) {
        memcpy(out, s, 2);
        out[2] = 0;
        return 'M';
    }
    /* ICD-10-CM: letter, digit, letter-or-digit, then optionally '.' and 1-4 letters/digits */
    if (n < 3 || !isupper((unsigned char)s[0]) || !isdigit((unsigned char)s[1]) ||
        !is_az09((unsigned char)s[2]))
        return 0;
    size_t rest = 3;
    if (n > 3 && s[3] == '.')
        rest = 4;
    size_t tail = n - rest;
    if (rest == 4 && tail == 0)
        return 0;
    if (tail > 4)
        return 0;
    for (size_t i = rest; i < n; i++)
        if (!is_az09((unsigned char)s[i]))
            return 0;
    memcpy(out, s, 3);
    size_t o = 3;
    if (tail > 0) {
        out[o++] = '.';
        memcpy(out + o, s + rest, tail);
        o += tail;
    }
    out[o] = 0;
    return 'I';
}

/* Append a normalised code to arr unless already there (first occurrence wins). */
static int push_unique(json_t *arr, const char *code)
{
    size_t i;
    json_t *v;
    json_array_foreach(arr, i, v) if (!strcmp(json_string_value(v), code)) return 0;
    return json_array_append_new(arr, json_string(code)) ? NY_E_NOMEM : 0;
}

static int gold_from_line(const char *line, const char *what, struct dataset_gold *g,
                          struct ny_err *err)
{
    const char *p = line;
    while (*p) {
        while (*p && (*p == ',' || isspace((unsigned char)*p)))
            p++;
        const char *b = p;
        while (*p && *p != ',' && !isspace((unsigned char)*p))
            p++;
        if (p == b)
            break;
        char code[16];
        int kind = dataset_code_normalize(b, (size_t)(p - b), code);
        if (!kind) {
            /* tokens that normalise to nothing (stray punctuation) are skipped, as the parser
             * does */
            int any = 0;
            for (const char *q = b; q < p; q++)
                any |= isalnum((unsigned char)*q);
            if (!any)
                continue;
            return NY_ERR(err, NY_E_FORMAT, "%s: field \"codes\": unparseable token \"%.*s\"",
                          what, (int)(p - b > 40 ? 40 : p - b), b);
        }
        json_t *arr = kind == 'C' ? g->cpt : kind == 'M' ? g->modifiers : g->icd;
        if (push_unique(arr, code))
            return NY_ERR(err, NY_E_NOMEM, "%s: out of memory", what);
    }
    return NY_OK;
}

static int gold_from_array(json_t *rec, const char *key, int want, json_t *dst, const char *what,
                           struct ny_err *err)
{
    json_t *a = json_object_get(rec, key);
    if (!a || json_is_null(a))
        return NY_OK;
    if (!json_is_array(a))
        return NY_ERR(err, NY_E_FORMAT, "%s: field \"%s\" must be an array of strings", what, key);
    size_t i;
    json_t *v;
    json_array_foreach(a, i, v)
    {
        if (!json_is_string(v))
            return NY_ERR(err, NY_E_FORMAT, "%s: field \"%s\"[%zu] must be a string", what, key,
                          i);
        char code[16];
        const char *s = json_string_value(v);
        int kind = dataset_code_normalize(s, json_string_length(v), code);
        if (kind != want)
            return NY_ERR(err, NY_E_FORMAT, "%s: field \"%s\"[%zu]: \"%.40s\" is not a%s code",
                          what, key, i, s,
                          want == 'C' ? " CPT" : want == 'M' ? " modifier" : "n ICD-10-CM");
        if (push_unique(dst, code))
            return NY_ERR(err, NY_E_NOMEM, "%s: out of memory", what);
    }
    return NY_OK;
}

void dataset_gold_fini(struct dataset_gold *g)
{
    json_decref(g->cpt);
    json_decref(g->modifiers);
    json_decref(g->icd);
    g->cpt = g->modifiers = g->icd = NULL;
}

int dataset_gold_from_json(json_t *rec, const char *what, struct dataset_gold *g, int *present,
                           struct ny_err *err)
{
    g->cpt = json_array();
    g->modifiers = json_array();
    g->icd = json_array();
    if (!g->cpt || !g->modifiers || !g->icd) {
        dataset_gold_fini(g);
        return NY_ERR(err, NY_E_NOMEM, "%s: out of memory", what);
    }
    int has_arrays = 0;
    const char *keys[3] = {"cpt", "modifiers", "icd"};
    for (int i = 0; i < 3; i++) {
        json_t *v = json_object_get(rec, keys[i]);
        has_arrays |= v && !json_is_null(v);
    }
    json_t *codes = json_object_get(rec, "codes");
    int has_codes = codes && !json_is_null(codes);
    int rc = NY_OK;
    if (has_arrays && has_codes)
        rc = NY_ERR(err, NY_E_FORMAT, "%s: give gold either as \"codes\" or as arrays, not both",
                    what);
    else if (has_codes && !json_is_string(codes))
        rc = NY_ERR(err, NY_E_FORMAT, "%s: field \"codes\" must be a string", what);
    else if (has_codes)
        rc = gold_from_line(json_string_value(codes), what, g, err);
    else if (has_arrays) {
        rc = gold_from_array(rec, "cpt", 'C', g->cpt, what, err);
        if (!rc)
            rc = gold_from_array(rec, "modifiers", 'M', g->modifiers, what, err);
        if (!rc)
            rc = gold_from_array(rec, "icd", 'I', g->icd, what, err);
    }
    if (rc) {
        dataset_gold_fini(g);
        return rc;
    }
    *present = has_arrays || has_codes;
    return NY_OK;
}

static void join(struct ny_buf *b, json_t *arr, const char *sep)
{
    size_t i;
    json_t *v;
    json_array_foreach(arr, i, v)
    {
        if (i)
            ny_buf_puts(b, sep);
        ny_buf_puts(b, json_string_value(v));
    }
}

char *dataset_gold_line(json_t *cpt, json_t *modifiers, json_t *icd)
{
    struct ny_buf b;
    ny_buf_init(&b);
    ny_buf_puts(&b, "");
    join(&b, cpt, " ");
    if (json_array_size(modifiers)) {
        ny_buf_puts(&b, ", ");
        join(&b, modifiers, " ");
    }
    if (json_array_size(icd)) {
        ny_buf_puts(&b, ", ");
        join(&b, icd, ", ");
    }
    if (b.failed) {
        ny_buf_fini(&b);
        return NULL;
    }
    return ny_buf_take(&b);
}
