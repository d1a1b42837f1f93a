/* ny_alloc.c — checked allocation, overflow-safe size arithmetic and the growable ny_buf. */
#include <stdlib.h>
#include <string.h>

#include "common.h"

void *ny_malloc(size_t size) { return malloc(size ? size : 1); }

void *ny_calloc(size_t n, size_t size)
{
    size_t total;
    if (ny_mul_overflow(n, size, &total))
        return NULL;
    return calloc(total ? total : 1, 1);
}

void *ny_reallocarray(void *p, size_t n, size_t size)
{
    size_t total;
    if (ny_mul_overflow(n, size, &total))
        return NULL;
    return realloc(p, total ? total : 1);
}

char *ny_strdup(const char *s) { return s ? ny_strndup(s, strlen(s)) : NULL; }

char *ny_strndup(const char *s, size_t n)
{
    if (n == SIZE_MAX)
        return NULL;
    char *d = malloc(n + 1);
    if (!d)
        return NULL;
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

void ny_free(void *p) { free(p); }

int ny_mul_overflow(size_t a, size_t b, size_t *out) { return __builtin_mul_overflow(a, b, out); }
int ny_add_overflow(size_t a, size_t b, size_t *out) { return __builtin_add_overflow(a, b, out); }
int ny_mul_overflow_u64(uint64_t a, uint64_t b, uint64_t *out)
{
    return __builtin_mul_overflow(a, b, out);
}
int ny_add_overflow_u64(uint64_t a, uint64_t b, uint64_t *out)
{
    return __builtin_add_overflow(a, b, out);
}

/* ---- ny_buf ---- */

void ny_buf_init(struct ny_buf *b) { memset(b, 0, sizeof *b); }

void ny_buf_fini(struct ny_buf *b)
{
    free(b->data);
    memset(b, 0, sizeof *b);
}

static int buf_reserve(struct ny_buf *b, size_t extra)
{
    size_t need;
    if (b->failed || ny_add_overflow(b->len, extra, &need) || ny_add_overflow(need, 1, &need)) {
        b->failed = 1;
        return NY_E_NOMEM;
    }
    if (need <= b->cap)
        return NY_OK;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need) {
        if (cap > SIZE_MAX / 2) {
            cap = need;
            break;
        }
        cap *= 2;
    }
    char *d = realloc(b->data, cap);
    if (!d) {
        b->failed = 1;
        return NY_E_NOMEM;
    }
    b->data = d;
    b->cap = cap;
    return NY_OK;
}

int ny_buf_append(struct ny_buf *b, const void *data, size_t len)
{
    int rc = buf_reserve(b, len);
    if (rc)
        return rc;
    if (len)
        memcpy(b->data + b->len, data, len);
    b->len += len;
    b->data[b->len] = '\0';
    return NY_OK;
}

int ny_buf_puts(struct ny_buf *b, const char *s) { return ny_buf_append(b, s, strlen(s)); }

int ny_buf_printf(struct ny_buf *b, const char *fmt, ...)
{
    va_list ap, ap2;
    va_start(ap, fmt);
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) {
        va_end(ap2);
        b->failed = 1;
        return NY_E_INVALID;
    }
    int rc = buf_reserve(b, (size_t)n);
    if (rc) {
        va_end(ap2);
        return rc;
    }
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap2);
    va_end(ap2);
    b->len += (size_t)n;
    return NY_OK;
}

char *ny_buf_take(struct ny_buf *b)
{
    if (b->failed) {
        ny_buf_fini(b);
        return NULL;
    }
    char *d = b->data;
    if (!d)
        d = ny_strdup("");
    memset(b, 0, sizeof *b);
    return d;
}
