/* report_walk.c — flattens the free-form parts of results (the manifest) into "path: value" rows
 * with sorted keys, for both the PDF and the HTML writers. */
#include <stdlib.h>
#include <string.h>

#include "report_int.h"

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

const char **rp_sorted_keys(const json_t *o, size_t *n)
{
    *n = json_object_size(o);
    const char **k = ny_calloc(*n ? *n : 1, sizeof *k);
    if (!k)
        return NULL;
    size_t i = 0;
    const char *key;
    const json_t *v;
    json_object_foreach((json_t *)o, key, v) k[i++] = key;
    qsort(k, *n, sizeof *k, cmp_str);
    return k;
}

static int walk(const char *path, const json_t *v, int depth, rp_row_fn fn, void *ctx)
{
    char sub[512], val[2048];
    if (depth > 8) {
        fn(ctx, path, "(nested too deep)");
        return 0;
    }
    if (json_is_object(v) && json_object_size(v) > 0) {
        size_t n;
        const char **k = rp_sorted_keys(v, &n);
        if (!k)
            return NY_E_NOMEM;
        int rc = 0;
        for (size_t i = 0; !rc && i < n; i++) {
            snprintf(sub, sizeof sub, "%s%s%.200s", path, *path ? "." : "", k[i]);
            rc = walk(sub, json_object_get(v, k[i]), depth + 1, fn, ctx);
        }
        ny_free(k);
        return rc;
    }
    if (json_is_array(v)) {
        int scalars = 1;
        for (size_t i = 0; i < json_array_size(v); i++)
            scalars &= !json_is_object(json_array_get(v, i)) && !json_is_array(json_array_get(v, i));
        if (!scalars) {
            for (size_t i = 0; i < json_array_size(v); i++) {
                snprintf(sub, sizeof sub, "%s[%zu]", path, i);
                int rc = walk(sub, json_array_get(v, i), depth + 1, fn, ctx);
                if (rc)
                    return rc;
            }
            return 0;
        }
    }
    rp_fmt_json_scalar(val, sizeof val, v, path);
    fn(ctx, path, val);
    return 0;
}

int rp_walk(const json_t *obj, const char *skip_key, rp_row_fn fn, void *ctx)
{
    size_t n;
    const char **k = rp_sorted_keys(obj, &n);
    if (!k)
        return NY_E_NOMEM;
    int rc = 0;
    for (size_t i = 0; !rc && i < n; i++)
        if (!skip_key || strcmp(k[i], skip_key))
            rc = walk(k[i], json_object_get(obj, k[i]), 0, fn, ctx);
    ny_free(k);
    return rc;
}

int rp_manifest_files_ok(const json_t *manifest)
{
    const json_t *files = json_object_get(manifest, "files");
    if (!json_is_array(files) || json_array_size(files) == 0)
        return 0;
    for (size_t i = 0; i < json_array_size(files); i++)
        if (!json_is_object(json_array_get(files, i)))
            return 0;
    return 1;
}

void rp_file_fields(const json_t *f, char *path, size_t pcap, char *bytes, size_t bcap,
                    char *sha, size_t scap)
{
    const json_t *p = json_object_get(f, "path"), *b = json_object_get(f, "bytes");
    const json_t *s = json_object_get(f, "sha256");
    rp_fmt_json_scalar(path, pcap, p ? p : json_null(), "path");
    rp_fmt_json_scalar(bytes, bcap, b ? b : json_null(), "bytes");
    rp_fmt_json_scalar(sha, scap, s ? s : json_null(), "sha256");
}

const char **rp_validity_count_keys(const struct rp_doc *d, size_t *n)
{
    size_t cap = 0;
    *n = 0;
    for (size_t i = 0; i < d->nck; i++)
        cap += d->ck[i].validity_counts ? json_object_size(d->ck[i].validity_counts) : 0;
    const char **k = ny_calloc(cap ? cap : 1, sizeof *k);
    if (!k)
        return NULL;
    for (size_t i = 0; i < d->nck; i++) {
        const char *key;
        const json_t *v;
        if (d->ck[i].validity_counts)
            json_object_foreach((json_t *)d->ck[i].validity_counts, key, v) k[(*n)++] = key;
    }
    qsort(k, *n, sizeof *k, cmp_str);
    size_t u = 0;
    for (size_t i = 0; i < *n; i++)
        if (u == 0 || strcmp(k[u - 1], k[i]))
            k[u++] = k[i];
    *n = u;
    return k;
}

void rp_validity_count(const struct rp_ckpt *c, const char *key, char *out, size_t cap)
{
    const json_t *x = c->validity_counts ? json_object_get(c->validity_counts, key) : NULL;
    if (x)
        rp_fmt_json_scalar(out, cap, x, key);
    else
        snprintf(out, cap, "\xe2\x80\x94");
}

static int conf_cmp(const void *a, const void *b)
{
    const json_t *x = *(const json_t *const *)a, *y = *(const json_t *const *)b;
    json_int_t cx = json_integer_value(json_object_get(x, "count"));
    json_int_t cy = json_integer_value(json_object_get(y, "count"));
    if (cx != cy)
        return cx > cy ? -1 : 1;
    int r = strcmp(json_string_value(json_object_get(x, "gold")),
                   json_string_value(json_object_get(y, "gold")));
    return r ? r : strcmp(json_string_value(json_object_get(x, "pred")),
                          json_string_value(json_object_get(y, "pred")));
}

const json_t **rp_confusions_sorted(const struct rp_ckpt *c, size_t *n)
{
    *n = json_array_size(c->confusions);
    const json_t **v = ny_calloc(*n ? *n : 1, sizeof *v);
    if (!v)
        return NULL;
    for (size_t j = 0; j < *n; j++)
        v[j] = json_array_get(c->confusions, j);
    qsort(v, *n, sizeof *v, conf_cmp);
    return v;
}
