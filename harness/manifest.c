/* manifest.c — the file side of a run's manifest: SHA-256 of every weight, adapter and tokenizer
 * file, the per-checkpoint keys that the prediction cache uses, and small shared helpers. */
#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "audit_int.h"

int harness_manifest_file_wanted(const char *name)
{
    static const char *const exts[] = {".safetensors", ".json", ".model", ".tiktoken", NULL};
    if (name[0] == '.')
        return 0;
    size_t n = strlen(name);
    for (size_t i = 0; exts[i]; i++) {
        size_t e = strlen(exts[i]);
        if (n > e && !strcmp(name + n - e, exts[i]))
            return 1;
    }
    return 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorted names of the wanted regular files in dir. */
static int list_dir(const char *dir, const char *label, char ***names, size_t *n,
                    struct ny_err *err)
{
    DIR *d = opendir(dir);
    if (!d)
        return NY_ERR(err, NY_E_NOTFOUND, "checkpoint %s: directory %s not found", label, dir);
    char **v = NULL;
    size_t cnt = 0, cap = 0;
    int rc = NY_OK;
    struct dirent *e;
    while (!rc && (e = readdir(d))) {
        if (!harness_manifest_file_wanted(e->d_name))
            continue;
        if (cnt == cap) {
            cap = cap ? cap * 2 : 16;
            char **nv = ny_reallocarray(v, cap, sizeof *v);
            if (!nv) {
                rc = NY_ERR(err, NY_E_NOMEM, "out of memory");
                break;
            }
            v = nv;
        }
        if (!(v[cnt] = ny_strdup(e->d_name)))
            rc = NY_ERR(err, NY_E_NOMEM, "out of memory");
        else
            cnt++;
    }
    closedir(d);
    if (!rc && cnt == 0)
        rc = NY_ERR(err, NY_E_NOTFOUND, "checkpoint %s: %s holds no model files (*.safetensors, "
                    "*.json)", label, dir);
    if (rc) {
        for (size_t i = 0; i < cnt; i++)
            ny_free(v[i]);
        ny_free(v);
        return rc;
    }
    qsort(v, cnt, sizeof *v, cmp_str);
    *names = v;
    *n = cnt;
    return NY_OK;
}

/* Hash the files of one directory into the key context and (when not seen) the files array. */
static int hash_dir(struct store *st, const char *dir, const char *shown, const char *label,
                    int add_rows, json_t *files, struct ny_sha256 *key, struct ny_err *err)
{
    char **names = NULL;
    size_t n = 0;
    int rc = list_dir(dir, label, &names, &n, err);
    if (rc)
        return rc;
    for (size_t i = 0; i < n && !rc; i++) {
        char *p = ny_path_join(dir, names[i]), *sp = ny_path_join(shown, names[i]);
        char hex[65];
        int64_t bytes = 0;
        if (!p || !sp) {
            rc = NY_ERR(err, NY_E_NOMEM, "out of memory");
        } else if (st) {
            rc = store_filehash_get(st, p, hex, &bytes, err);
        } else {
            struct stat sb;
            rc = ny_sha256_file(p, hex, err);
            bytes = !rc && !stat(p, &sb) ? (int64_t)sb.st_size : 0;
        }
        if (!rc) {
            ny_sha256_update(key, names[i], strlen(names[i]) + 1);
            ny_sha256_update(key, hex, 64);
            if (add_rows)
                json_array_append_new(files, json_pack("{s:s,s:s,s:I}", "path", sp, "sha256",
                                                       hex, "bytes", (json_int_t)bytes));
        }
        ny_free(p);
        ny_free(sp);
    }
    for (size_t i = 0; i < n; i++)
        ny_free(names[i]);
    ny_free(names);
    return rc;
}

/* 1 when dir was already hashed for an earlier checkpoint (its rows are in files already). */
static int seen_before(const struct harness_config *cfg, size_t upto, const char *dir)
{
    for (size_t i = 0; i < upto; i++) {
        const struct harness_checkpoint *c = &cfg->checkpoints[i];
        if (!strcmp(c->model_path, dir) || (c->adapter_path && !strcmp(c->adapter_path, dir)))
            return 1;
    }
    return 0;
}

int harness_manifest_files(struct store *st, const struct harness_config *cfg, json_t *files,
                           char (*keys)[65], struct ny_err *err)
{
    for (size_t i = 0; i < cfg->n_checkpoints; i++) {
        const struct harness_checkpoint *c = &cfg->checkpoints[i];
        struct ny_sha256 key;
        ny_sha256_init(&key);
        ny_sha256_update(&key, "model", 6);
        int rc = hash_dir(st, c->model_path, c->model, c->label,
                          !seen_before(cfg, i, c->model_path), files, &key, err);
        if (!rc && c->adapter_path) {
            ny_sha256_update(&key, "adapter", 8);
            int again = seen_before(cfg, i, c->adapter_path) ||
                        !strcmp(c->adapter_path, c->model_path);
            rc = hash_dir(st, c->adapter_path, c->adapter, c->label, !again, files, &key, err);
        }
        if (rc)
            return rc;
        uint8_t d[32];
        ny_sha256_final(&key, d);
        ny_hex_encode(d, 32, keys[i]);
    }
    return NY_OK;
}

void harness_now(char out[32])
{
    const char *sde = getenv("SOURCE_DATE_EPOCH");
    time_t t = time(NULL);
    if (sde && sde[0]) {
        char *end;
        long long v = strtoll(sde, &end, 10);
        if (!*end && v >= 0)
            t = (time_t)v;
    }
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

int harness_json_sha256(const json_t *v, char hex[65])
{
    char *s = ny_json_dumps(v, 0);
    if (!s)
        return NY_E_NOMEM;
    ny_sha256_hex(s, strlen(s), hex);
    ny_free(s);
    return NY_OK;
}
