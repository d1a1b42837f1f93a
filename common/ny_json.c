/* ny_json.c — jansson wrappers that report failures as ny_err with file and position, typed
 * member access, byte-stable serialisation, and a JSONL line iterator. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"

int ny_json_load_buf(const char *buf, size_t len, const char *what, struct json_t **out,
                     struct ny_err *err)
{
    size_t bad;
    if (!ny_utf8_valid(buf, len, &bad))
        return NY_ERR(err, NY_E_FORMAT, "%s: invalid UTF-8 at byte %zu", what, bad);
    json_error_t je;
    json_t *v = json_loadb(buf, len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &je);
    if (!v)
        return NY_ERR(err, NY_E_FORMAT, "%s: malformed JSON at line %d column %d: %s", what,
                      je.line, je.column, je.text);
    *out = v;
    return NY_OK;
}

int ny_json_load_file(const char *path, size_t max_size, struct json_t **out, struct ny_err *err)
{
    char *buf;
    size_t len;
    int rc = ny_file_read(path, max_size, &buf, &len, err);
    if (rc)
        return rc;
    rc = ny_json_load_buf(buf, len, path, out, err);
    ny_free(buf);
    return rc;
}

static json_t *member(json_t *obj, const char *key)
{
    if (!json_is_object(obj))
        return NULL;
    json_t *v = json_object_get(obj, key);
    return json_is_null(v) ? NULL : v;
}

static int missing(int required, const char *key, const char *what, struct ny_err *err)
{
    if (required)
        return NY_ERR(err, NY_E_FORMAT, "%s: missing required field \"%s\"", what, key);
    return NY_E_NOTFOUND;
}

int ny_json_get_string(struct json_t *obj, const char *key, int required, const char **out,
                       const char *what, struct ny_err *err)
{
    json_t *v = member(obj, key);
    if (!v)
        return missing(required, key, what, err);
    if (!json_is_string(v))
        return NY_ERR(err, NY_E_FORMAT, "%s: field \"%s\" must be a string", what, key);
    *out = json_string_value(v);
    return NY_OK;
}

int ny_json_get_int(struct json_t *obj, const char *key, int required, int64_t *out,
                    const char *what, struct ny_err *err)
{
    json_t *v = member(obj, key);
    if (!v)
        return missing(required, key, what, err);
    if (!json_is_integer(v))
        return NY_ERR(err, NY_E_FORMAT, "%s: field \"%s\" must be an integer", what, key);
    *out = (int64_t)json_integer_value(v);
    return NY_OK;
}

int ny_json_get_real(struct json_t *obj, const char *key, int required, double *out,
                     const char *what, struct ny_err *err)
{
    json_t *v = member(obj, key);
    if (!v)
        return missing(required, key, what, err);
    if (!json_is_number(v))
        return NY_ERR(err, NY_E_FORMAT, "%s: field \"%s\" must be a number", what, key);
    *out = json_number_value(v);
    return NY_OK;
}

int ny_json_get_bool(struct json_t *obj, const char *key, int required, int *out,
                     const char *what, struct ny_err *err)
{
    json_t *v = member(obj, key);
    if (!v)
        return missing(required, key, what, err);
    if (!json_is_boolean(v))
        return NY_ERR(err, NY_E_FORMAT, "%s: field \"%s\" must be true or false", what, key);
    *out = json_is_true(v);
    return NY_OK;
}

char *ny_json_dumps(const struct json_t *v, int indent)
{
    size_t flags = JSON_SORT_KEYS | JSON_REAL_PRECISION(17) | JSON_ENSURE_ASCII;
    flags |= indent > 0 ? JSON_INDENT(indent) : JSON_COMPACT;
    char *s = json_dumps(v, flags);
    if (!s)
        return NULL;
    /* json_dumps allocates with jansson's allocator (malloc by default); copy so callers can
     * uniformly use ny_free. */
    char *d = ny_strdup(s);
    free(s);
    return d;
}

void ny_lines_init(struct ny_lines *it, const char *buf, size_t len)
{
    it->p = buf;
    it->end = buf + len;
    it->lineno = 0;
}

int ny_lines_next(struct ny_lines *it, const char **line, size_t *len)
{
    if (it->p >= it->end)
        return 0;
    const char *nl = memchr(it->p, '\n', (size_t)(it->end - it->p));
    const char *stop = nl ? nl : it->end;
    size_t n = (size_t)(stop - it->p);
    if (n > 0 && it->p[n - 1] == '\r')
        n--;
    *line = it->p;
    *len = n;
    it->p = nl ? nl + 1 : it->end;
    it->lineno++;
    return 1;
}
