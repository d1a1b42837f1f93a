/* engine_testutil.c — safetensors writer and random Llama checkpoints (tests, benchmarks). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine_testutil.h"
#include "ny_test.h"

int tu_write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    size_t n = strlen(text);
    int ok = fwrite(text, 1, n, f) == n;
    return fclose(f) == 0 && ok ? 0 : -1;
}

int tu_write_safetensors(const char *path, const struct tu_tensor *t, size_t n)
{
    size_t cap = 256 + n * 256, len = 0, off = 0;
    char *h = malloc(cap);
    if (!h)
        return -1;
    len += (size_t)snprintf(h + len, cap - len, "{");
    for (size_t i = 0; i < n; i++) {
        len += (size_t)snprintf(h + len, cap - len, "%s\"%s\":{\"dtype\":\"%s\",\"shape\":[",
                                i ? "," : "", t[i].name, t[i].dtype);
        for (int d = 0; d < t[i].ndim; d++)
            len += (size_t)snprintf(h + len, cap - len, "%s%lld", d ? "," : "",
                                    (long long)t[i].shape[d]);
        len += (size_t)snprintf(h + len, cap - len, "],\"data_offsets\":[%zu,%zu]}", off,
                                off + t[i].nbytes);
        off += t[i].nbytes;
    }
    len += (size_t)snprintf(h + len, cap - len, "}");
    while (len % 8)
        h[len++] = ' ';
    FILE *f = fopen(path, "wb");
    int ok = f != NULL;
    uint8_t le[8];
    for (int i = 0; i < 8; i++)
        le[i] = (uint8_t)((uint64_t)len >> (8 * i));
    ok = ok && fwrite(le, 1, 8, f) == 8 && fwrite(h, 1, len, f) == len;
    for (size_t i = 0; ok && i < n; i++)
        ok = t[i].nbytes == 0 || fwrite(t[i].data, 1, t[i].nbytes, f) == t[i].nbytes;
    if (f && fclose(f) != 0)
        ok = 0;
    free(h);
    return ok ? 0 : -1;
}

static uint64_t rng_next(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* Sum of 4 uniforms, scaled: roughly normal with std `std`. */
static float rng_normal(uint64_t *s, float std)
{
    float a = 0;
    for (int i = 0; i < 4; i++)
        a += (float)(rng_next(s) >> 40) / (float)(1 << 24) - 0.5f;
    return a * std * 1.7320508f;
}

static void *rand_tensor(uint64_t *s, size_t n, int bf16, float center, float std, size_t *nb)
{
    *nb = n * (bf16 ? 2 : 4);
    uint8_t *p = malloc(*nb ? *nb : 1);
    for (size_t i = 0; p && i < n; i++) {
        float v = center + rng_normal(s, std);
        uint32_t u;
        memcpy(&u, &v, 4);
        if (bf16) {
            uint16_t h = (uint16_t)(u >> 16);
            memcpy(p + 2 * i, &h, 2);
        } else {
            memcpy(p + 4 * i, &v, 4);
        }
    }
    return p;
}

int tu_write_random_model(const char *dir, const struct tu_shape *s, uint64_t seed)
{
    char path[1024], cfg[1024];
    snprintf(path, sizeof path, "%s/config.json", dir);
    snprintf(cfg, sizeof cfg,
             "{\"model_type\":\"llama\",\"hidden_size\":%d,\"intermediate_size\":%d,"
             "\"num_hidden_layers\":%d,\"num_attention_heads\":%d,\"num_key_value_heads\":%d,"
             "\"vocab_size\":%d,\"rms_norm_eps\":1e-5,\"rope_theta\":500000.0,"
             "\"rope_scaling\":{\"rope_type\":\"llama3\",\"factor\":8.0,\"low_freq_factor\":1.0,"
             "\"high_freq_factor\":4.0,\"original_max_position_embeddings\":64},"
             "\"tie_word_embeddings\":%s,\"bos_token_id\":1,\"eos_token_id\":[2,3]}",
             s->hidden, s->intermediate, s->layers, s->heads, s->kv_heads, s->vocab,
             s->tied ? "true" : "false");
    if (tu_write_file(path, cfg) != 0)
        return -1;
    int hd = s->hidden / s->heads, nt = 0;
    size_t cap = 4 + 9 * (size_t)s->layers;
    struct tu_tensor *t = calloc(cap, sizeof *t);
    char(*names)[96] = calloc(cap, sizeof *names);
    uint64_t st = seed * 2654435761u + 88172645463325252ull;
    if (!t || !names)
        return -1;
#define ADD(nm, r, c, center, std)                                                                \
    do {                                                                                          \
        snprintf(names[nt], sizeof names[nt], "%s", nm);                                          \
        t[nt].name = names[nt];                                                                   \
        t[nt].dtype = s->bf16 ? "BF16" : "F32";                                                   \
        t[nt].ndim = (c) ? 2 : 1;                                                                 \
        t[nt].shape[0] = (r);                                                                     \
        t[nt].shape[1] = (c);                                                                     \
        t[nt].data = rand_tensor(&st, (size_t)(r) * ((c) ? (size_t)(c) : 1), s->bf16, center,    \
                                 std, &t[nt].nbytes);                                             \
        nt++;                                                                                     \
    } while (0)
    ADD("model.embed_tokens.weight", s->vocab, s->hidden, 0.0f, 0.5f);
    ADD("model.norm.weight", s->hidden, 0, 1.0f, 0.1f);
    if (!s->tied)
        ADD("lm_head.weight", s->vocab, s->hidden, 0.0f, 0.15f);
    const char *proj[7] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                           "self_attn.o_proj", "mlp.gate_proj",    "mlp.up_proj",
                           "mlp.down_proj"};
    int qd = s->heads * hd, kvd = s->kv_heads * hd;
    int outs[7] = {qd, kvd, kvd, s->hidden, s->intermediate, s->intermediate, s->hidden};
    int ins[7] = {s->hidden, s->hidden, s->hidden, qd, s->hidden, s->hidden, s->intermediate};
    for (int l = 0; l < s->layers; l++) {
        char nm[96];
        snprintf(nm, sizeof nm, "model.layers.%d.input_layernorm.weight", l);
        ADD(nm, s->hidden, 0, 1.0f, 0.1f);
        snprintf(nm, sizeof nm, "model.layers.%d.post_attention_layernorm.weight", l);
        ADD(nm, s->hidden, 0, 1.0f, 0.1f);
        for (int p = 0; p < 7; p++) {
            snprintf(nm, sizeof nm, "model.layers.%d.%s.weight", l, proj[p]);
            ADD(nm, outs[p], ins[p], 0.0f, 1.0f / (float)__builtin_sqrt((double)ins[p]));
        }
    }
#undef ADD
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    int rc = tu_write_safetensors(path, t, (size_t)nt);
    for (int i = 0; i < nt; i++)
        free((void *)t[i].data);
    free(t);
    free(names);
    return rc;
}

static char tmp[256];

const char *tu_tmpdir(void)
{
    return ny_test_tmpdir_make(tmp, sizeof tmp, "engine") ? NULL : tmp;
}

void tu_rmdir(const char *dir)
{
    if (ny_test_tmpdir_remove(dir) != 0)
        fprintf(stderr, "could not remove %s\n", dir);
}
