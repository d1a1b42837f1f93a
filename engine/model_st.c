/* model_st.c — safetensors files, single or sharded (model.safetensors.index.json), mapped
 * read-only; every header field is checked against the file size with overflow-safe arithmetic. */
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "engine_model_int.h"

/* A header larger than this is refused (the 70B index's largest shard header is ~100 KB). */
#define ST_MAX_HEADER ((uint64_t)100 << 20)
#define ST_MAX_INDEX ((size_t)64 << 20)

struct st_file {
    char *path;
    struct ny_mmap map;
};

struct engine_st {
    struct st_file *files;
    size_t n_files;
    struct engine_tensor *tensors;
    size_t n_tensors, cap_tensors;
    int sorted;
};

static int st_parse_dtype(const char *s, enum engine_dtype *dt)
{
    if (!strcmp(s, "F32"))
        *dt = ENGINE_DTYPE_F32;
    else if (!strcmp(s, "F16"))
        *dt = ENGINE_DTYPE_F16;
    else if (!strcmp(s, "BF16"))
        *dt = ENGINE_DTYPE_BF16;
    else
        return -1;
    return 0;
}

/* Parse one header entry `name: {dtype, shape, data_offsets}` into t. */
static int st_parse_entry(const char *path, const char *name, json_t *v, const uint8_t *data,
                          uint64_t data_size, struct engine_tensor *t, struct ny_err *err)
{
    if (!json_is_object(v))
        return NY_ERR(err, NY_E_FORMAT, "%s: tensor '%s': header entry is not an object", path,
                      name);
    json_t *dt = json_object_get(v, "dtype"), *shape = json_object_get(v, "shape");
    json_t *offs = json_object_get(v, "data_offsets");
    if (!json_is_string(dt) || !json_is_array(shape) || !json_is_array(offs) ||
        json_array_size(offs) != 2)
        return NY_ERR(err, NY_E_FORMAT,
                      "%s: tensor '%s': needs string dtype, array shape and two data_offsets",
                      path, name);
    if (st_parse_dtype(json_string_value(dt), &t->dtype) != 0)
        return NY_ERR(err, NY_E_UNSUPPORTED,
                      "%s: tensor '%s': dtype '%s' is not supported (BF16, F16 or F32)", path, name,
                      json_string_value(dt));
    size_t nd = json_array_size(shape);
    if (nd > ENGINE_MAX_DIMS)
        return NY_ERR(err, NY_E_FORMAT, "%s: tensor '%s': %zu dimensions (at most %d)", path, name,
                      nd, ENGINE_MAX_DIMS);
    uint64_t n = 1;
    t->ndim = (int)nd;
    for (size_t i = 0; i < nd; i++) {
        json_t *d = json_array_get(shape, i);
        if (!json_is_integer(d) || json_integer_value(d) < 0)
            return NY_ERR(err, NY_E_FORMAT, "%s: tensor '%s': shape[%zu] is not a size", path,
                          name, i);
        t->shape[i] = (uint64_t)json_integer_value(d);
        if (ny_mul_overflow_u64(n, t->shape[i], &n))
            return NY_ERR(err, NY_E_RANGE, "%s: tensor '%s': element count overflows", path,
                          name);
    }
    uint64_t nbytes, o[2];
    if (ny_mul_overflow_u64(n, engine_dtype_size(t->dtype), &nbytes))
        return NY_ERR(err, NY_E_RANGE, "%s: tensor '%s': byte size overflows", path, name);
    for (int i = 0; i < 2; i++) {
        json_t *d = json_array_get(offs, (size_t)i);
        if (!json_is_integer(d) || json_integer_value(d) < 0)
            return NY_ERR(err, NY_E_FORMAT, "%s: tensor '%s': data_offsets[%d] is not an offset",
                          path, name, i);
        o[i] = (uint64_t)json_integer_value(d);
    }
    if (o[1] < o[0] || o[1] > data_size)
        return NY_ERR(err, NY_E_RANGE,
                      "%s: tensor '%s': data_offsets [%llu, %llu] outside the %llu data bytes "
                      "(truncated file?)",
                      path, name, (unsigned long long)o[0], (unsigned long long)o[1],
                      (unsigned long long)data_size);
    if (o[1] - o[0] != nbytes)
        return NY_ERR(err, NY_E_FORMAT,
                      "%s: tensor '%s': shape and dtype need %llu bytes but data_offsets give %llu",
                      path, name, (unsigned long long)nbytes, (unsigned long long)(o[1] - o[0]));
    t->n_elems = n;
    t->nbytes = (size_t)nbytes;
    t->data = data + o[0];
    return NY_OK;
}

static int st_cmp_data(const void *a, const void *b)
{
    const struct engine_tensor *x = *(const struct engine_tensor *const *)a;
    const struct engine_tensor *y = *(const struct engine_tensor *const *)b;
    return x->data < y->data ? -1 : x->data > y->data;
}

/* Tensors [first, st->n_tensors) of one file may not share bytes. */
static int st_check_overlap(const struct engine_st *st, size_t first, const char *path,
                            struct ny_err *err)
{
    size_t n = st->n_tensors - first;
    if (n < 2)
        return NY_OK;
    const struct engine_tensor **v = ny_calloc(n, sizeof *v);
    if (!v)
        return NY_ERR(err, NY_E_NOMEM, "%s: out of memory", path);
    for (size_t i = 0; i < n; i++)
        v[i] = &st->tensors[first + i];
    qsort(v, n, sizeof *v, st_cmp_data);
    int rc = NY_OK;
    for (size_t i = 1; i < n && rc == NY_OK; i++)
        if (v[i - 1]->data + v[i - 1]->nbytes > v[i]->data)
            rc = NY_ERR(err, NY_E_FORMAT, "%s: tensors '%s' and '%s' overlap in the file", path,
                        v[i - 1]->name, v[i]->name);
    ny_free(v);
    return rc;
}

static int st_add_file(struct engine_st *st, const char *path, struct ny_err *err)
{
    struct st_file *f = ny_reallocarray(st->files, st->n_files + 1, sizeof *f);
    if (!f)
        return NY_ERR(err, NY_E_NOMEM, "%s: out of memory", path);
    st->files = f;
    f = &st->files[st->n_files];
    memset(f, 0, sizeof *f);
    f->path = ny_strdup(path);
    if (!f->path)
        return NY_ERR(err, NY_E_NOMEM, "%s: out of memory", path);
    st->n_files++;
    int rc = ny_mmap_open(&f->map, path, err);
    if (rc != NY_OK)
        return rc;
    const uint8_t *p = f->map.data;
    uint64_t size = f->map.size, hlen = 0;
    if (size < 8)
        return NY_ERR(err, NY_E_FORMAT, "%s: truncated safetensors file (%llu bytes, no header)",
                      path, (unsigned long long)size);
    for (int i = 7; i >= 0; i--)
        hlen = (hlen << 8) | p[i];
    if (hlen > size - 8 || hlen > ST_MAX_HEADER)
        return NY_ERR(err, NY_E_FORMAT,
                      "%s: header length %llu is beyond the file (%llu bytes) or too large", path,
                      (unsigned long long)hlen, (unsigned long long)size);
    json_t *hdr;
    rc = ny_json_load_buf((const char *)p + 8, (size_t)hlen, path, &hdr, err);
    if (rc != NY_OK)
        return rc;
    if (!json_is_object(hdr)) {
        json_decref(hdr);
        return NY_ERR(err, NY_E_FORMAT, "%s: safetensors header is not a JSON object", path);
    }
    const char *name;
    json_t *v;
    size_t first = st->n_tensors;
    json_object_foreach(hdr, name, v)
    {
        if (!strcmp(name, "__metadata__"))
            continue;
        if (st->n_tensors == st->cap_tensors) {
            size_t cap = st->cap_tensors ? 2 * st->cap_tensors : 64;
            struct engine_tensor *t = ny_reallocarray(st->tensors, cap, sizeof *t);
            if (!t) {
                rc = NY_ERR(err, NY_E_NOMEM, "%s: out of memory", path);
                break;
            }
            st->tensors = t;
            st->cap_tensors = cap;
        }
        struct engine_tensor *t = &st->tensors[st->n_tensors];
        memset(t, 0, sizeof *t);
        rc = st_parse_entry(path, name, v, p + 8 + hlen, size - 8 - hlen, t, err);
        if (rc == NY_OK && !(t->name = ny_strdup(name)))
            rc = NY_ERR(err, NY_E_NOMEM, "%s: out of memory", path);
        if (rc != NY_OK)
            break;
        t->file = f->path;
        st->n_tensors++;
    }
    json_decref(hdr);
    if (rc == NY_OK)
        rc = st_check_overlap(st, first, path, err);
    return rc;
}

static int st_cmp(const void *a, const void *b)
{
    return strcmp(((const struct engine_tensor *)a)->name, ((const struct engine_tensor *)b)->name);
}

/* Sort by name and refuse duplicates (a tensor in two shards). */
static int st_finish(struct engine_st *st, struct ny_err *err)
{
    if (st->n_tensors)
        qsort(st->tensors, st->n_tensors, sizeof *st->tensors, st_cmp);
    for (size_t i = 1; i < st->n_tensors; i++)
        if (!strcmp(st->tensors[i].name, st->tensors[i - 1].name))
            return NY_ERR(err, NY_E_FORMAT, "tensor '%s' appears in both %s and %s",
                          st->tensors[i].name, st->tensors[i - 1].file, st->tensors[i].file);
    st->sorted = 1;
    return NY_OK;
}

int engine_st_open_file(const char *path, struct engine_st **out, struct ny_err *err)
{
    struct engine_st *st = ny_calloc(1, sizeof *st);
    if (!st)
        return NY_ERR(err, NY_E_NOMEM, "%s: out of memory", path);
    int rc = st_add_file(st, path, err);
    if (rc == NY_OK)
        rc = st_finish(st, err);
    if (rc != NY_OK) {
        engine_st_close(st);
        return rc;
    }
    *out = st;
    return NY_OK;
}

/* Open the shards named by an index's weight_map and check each named tensor is in its shard. */
static int st_open_index(struct engine_st *st, const char *dir, const char *ipath,
                         struct ny_err *err)
{
    json_t *idx;
    int rc = ny_json_load_file(ipath, ST_MAX_INDEX, &idx, err);
    if (rc != NY_OK)
        return rc;
    json_t *wm = json_object_get(idx, "weight_map");
    if (!json_is_object(wm)) {
        json_decref(idx);
        return NY_ERR(err, NY_E_FORMAT, "%s: \"weight_map\" must be an object", ipath);
    }
    const char *name;
    json_t *v;
    json_object_foreach(wm, name, v) /* first pass: open each distinct shard once */
    {
        const char *shard = json_string_value(v);
        if (!shard || !*shard || strchr(shard, '/') || !strcmp(shard, "..")) {
            rc = NY_ERR(err, NY_E_FORMAT, "%s: weight_map[\"%s\"] is not a file name", ipath,
                        name);
            break;
        }
        char *path = ny_path_join(dir, shard);
        if (!path) {
            rc = NY_ERR(err, NY_E_NOMEM, "out of memory");
            break;
        }
        int seen = 0;
        for (size_t i = 0; i < st->n_files && !seen; i++)
            seen = !strcmp(st->files[i].path, path);
        if (!seen)
            rc = st_add_file(st, path, err);
        ny_free(path);
        if (rc != NY_OK)
            break;
    }
    if (rc == NY_OK)
        rc = st_finish(st, err);
    json_object_foreach(wm, name, v) /* second pass: every mapped tensor is where it is said */
    {
        if (rc != NY_OK)
            break;
        const struct engine_tensor *t = engine_st_find(st, name);
        const char *slash = t ? strrchr(t->file, '/') : NULL;
        const char *base = slash ? slash + 1 : t ? t->file : "";
        if (!t || strcmp(base, json_string_value(v)) != 0)
            rc = NY_ERR(err, NY_E_NOTFOUND, "%s: tensor '%s' is not in shard %s", ipath, name,
                        json_string_value(v));
    }
    json_decref(idx);
    return rc;
}

int engine_st_open_dir(const char *dir, const char *single, struct engine_st **out,
                       struct ny_err *err)
{
    char *ipath = ny_path_join(dir, "model.safetensors.index.json");
    char *spath = ny_path_join(dir, single ? single : "model.safetensors");
    struct engine_st *st = ny_calloc(1, sizeof *st);
    int rc = NY_OK;
    if (!ipath || !spath || !st)
        rc = NY_ERR(err, NY_E_NOMEM, "%s: out of memory", dir);
    else if (!single && ny_file_exists(ipath))
        rc = st_open_index(st, dir, ipath, err);
    else if (ny_file_exists(spath)) {
        rc = st_add_file(st, spath, err);
        if (rc == NY_OK)
            rc = st_finish(st, err);
    } else
        rc = NY_ERR(err, NY_E_NOTFOUND, "%s: neither %s nor model.safetensors.index.json found",
                    dir, single ? single : "model.safetensors");
    ny_free(ipath);
    ny_free(spath);
    if (rc != NY_OK) {
        engine_st_close(st);
        return rc;
    }
    *out = st;
    return NY_OK;
}

void engine_st_close(struct engine_st *st)
{
    if (!st)
        return;
    for (size_t i = 0; i < st->n_tensors; i++)
        ny_free(st->tensors[i].name);
    for (size_t i = 0; i < st->n_files; i++) {
        ny_mmap_close(&st->files[i].map);
        ny_free(st->files[i].path);
    }
    ny_free(st->tensors);
    ny_free(st->files);
    ny_free(st);
}

const struct engine_tensor *engine_st_find(const struct engine_st *st, const char *name)
{
    struct engine_tensor key = {.name = (char *)name};
    if (!st->n_tensors)
        return NULL;
    return bsearch(&key, st->tensors, st->n_tensors, sizeof key, st_cmp);
}

size_t engine_st_count(const struct engine_st *st)
{
    return st->n_tensors;
}

const struct engine_tensor *engine_st_at(const struct engine_st *st, size_t i)
{
    return i < st->n_tensors ? &st->tensors[i] : NULL;
}

int engine_st_get(const struct engine_st *st, const char *name, uint64_t rows, uint64_t cols,
                  const struct engine_tensor **out, struct ny_err *err)
{
    const struct engine_tensor *t = engine_st_find(st, name);
    if (!t)
        return NY_ERR(err, NY_E_NOTFOUND, "%s: tensor '%s' is missing",
                      st->n_files ? st->files[0].path : "(no file)", name);
    int ok = cols ? (t->ndim == 2 && t->shape[0] == rows && t->shape[1] == cols)
                  : (t->ndim == 1 && t->shape[0] == rows);
    if (!ok) {
        char got[96] = "";
        size_t len = 0;
        for (int i = 0; i < t->ndim && len < sizeof got - 24; i++)
            len += (size_t)snprintf(got + len, sizeof got - len, "%s%llu", i ? ", " : "",
                                    (unsigned long long)t->shape[i]);
        if (cols)
            return NY_ERR(err, NY_E_FORMAT, "%s: tensor '%s' has shape [%s], expected [%llu, %llu]",
                          t->file, name, got, (unsigned long long)rows, (unsigned long long)cols);
        return NY_ERR(err, NY_E_FORMAT, "%s: tensor '%s' has shape [%s], expected [%llu]", t->file,
                      name, got, (unsigned long long)rows);
    }
    *out = t;
    return NY_OK;
}
