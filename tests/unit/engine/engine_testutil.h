/* engine_testutil.h — helpers for the engine's tests and benchmark: write safetensors files and
 * random Llama model directories (config.json + model.safetensors) without Python. */
#ifndef NY_ENGINE_TESTUTIL_H
#define NY_ENGINE_TESTUTIL_H

#include <stddef.h>
#include <stdint.h>

struct tu_tensor {
    const char *name;
    const char *dtype;     /* written verbatim: "F32", "BF16", "F16", or a hostile string */
    int ndim;
    int64_t shape[4];
    const void *data;
    size_t nbytes;         /* bytes of data written for it */
};

/* Write a safetensors file of the given tensors; 0 on success. */
int tu_write_safetensors(const char *path, const struct tu_tensor *t, size_t n);

struct tu_shape {
    int hidden, intermediate, layers, heads, kv_heads, vocab;
    int tied;
    int bf16;              /* 1: weights as BF16, else F32 */
};

/* Write dir/config.json and dir/model.safetensors of a random model (normal-ish weights of std
 * ~0.15 from a fixed-seed generator; norms near 1). Returns 0 on success. */
int tu_write_random_model(const char *dir, const struct tu_shape *s, uint64_t seed);

/* Write a text file. */
int tu_write_file(const char *path, const char *text);

/* Make a fresh temporary directory (static storage, overwritten by the next call), or NULL. */
const char *tu_tmpdir(void);
/* Remove dir and everything under it (ny_test_tmpdir_remove); reports a failure on stderr. */
void tu_rmdir(const char *dir);

#endif
