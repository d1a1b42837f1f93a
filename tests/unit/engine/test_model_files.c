/* test_model_files.c — hostile and valid model files: safetensors headers (truncated, header
 * length beyond the file, wrong dtype, shape/offset mismatch, missing tensor, shape against the
 * config, sharded index errors) and config.json / generation_config.json (missing fields, wrong
 * types, eos lists, rope variants with hand-computed inverse frequencies). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "engine.h"
#include "engine_model_int.h"
#include "engine_testutil.h"

static char dir[256];

static int setup(void **state)
{
    (void)state;
    const char *d = tu_tmpdir();
    if (!d)
        return -1;
    snprintf(dir, sizeof dir, "%s", d);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    tu_rmdir(dir);
    return 0;
}

static const struct tu_shape small = {.hidden = 16, .intermediate = 24, .layers = 1, .heads = 2,
                                      .kv_heads = 1, .vocab = 40};

static char *path_in(const char *name)
{
    static char p[512];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    return p;
}

/* Open dir as a model; expect rc and a message containing each of the needles. */
static void expect_open(int want_rc, const char *needle1, const char *needle2)
{
    struct engine_model *m = NULL;
    struct engine_model_opts o = {.threads = 1};
    struct ny_err err;
    ny_err_init(&err);
    int rc = engine_model_open(dir, &o, &m, &err);
    if (rc != want_rc)
        fail_msg("rc %d (%s), expected %d; message: %s", rc, ny_status_name(rc), want_rc, err.msg);
    assert_null(m);
    if (needle1 && !strstr(err.msg, needle1))
        fail_msg("message '%s' lacks '%s'", err.msg, needle1);
    if (needle2 && !strstr(err.msg, needle2))
        fail_msg("message '%s' lacks '%s'", err.msg, needle2);
}

static void test_valid_model_opens(void **state)
{
    (void)state;
    assert_int_equal(tu_write_random_model(dir, &small, 1), 0);
    struct engine_model *m;
    struct engine_model_opts o = {.threads = 1};
    struct ny_err err;
    assert_int_equal(engine_model_open(dir, &o, &m, &err), NY_OK);
    struct engine_model_info info;
    engine_model_info_get(m, &info);
    assert_int_equal(info.vocab_size, 40);
    assert_int_equal(info.n_kv_heads, 1);
    assert_int_equal(info.head_dim, 8);
    assert_int_equal(info.n_eos, 2);
    assert_int_equal(info.eos_ids[0], 2);
    assert_int_equal(info.eos_ids[1], 3);
    engine_model_close(m);
}

static void truncate_file(const char *p, long keep)
{
    assert_int_equal(truncate(p, keep), 0);
}

static void test_truncated_safetensors(void **state)
{
    (void)state;
    assert_int_equal(tu_write_random_model(dir, &small, 1), 0);
    char *p = path_in("model.safetensors");
    struct ny_mmap mm;
    assert_int_equal(ny_mmap_open(&mm, p, NULL), NY_OK);
    long size = (long)mm.size;
    ny_mmap_close(&mm);
    truncate_file(p, size - 100); /* the data of the last tensors is cut */
    expect_open(NY_E_RANGE, "model.safetensors", "outside the");
    truncate_file(p, 5); /* not even the 8-byte length */
    expect_open(NY_E_FORMAT, "model.safetensors", "truncated");
}

static void test_header_length_beyond_file(void **state)
{
    (void)state;
    assert_int_equal(tu_write_random_model(dir, &small, 1), 0);
    uint8_t bytes[16] = {0x00, 0x00, 0x10, 0x00, 0, 0, 0, 0, '{', '}'}; /* 1 MiB header */
    FILE *f = fopen(path_in("model.safetensors"), "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(bytes, 1, 10, f), 10);
    fclose(f);
    expect_open(NY_E_FORMAT, "header length 1048576", "beyond the file");
    bytes[7] = 0xff; /* a length near 2^64 must not overflow the check */
    f = fopen(path_in("model.safetensors"), "wb");
    assert_int_equal(fwrite(bytes, 1, 10, f), 10);
    fclose(f);
    expect_open(NY_E_FORMAT, "header length", NULL);
}

static void write_one(const char *dtype, int ndim, int64_t d0, int64_t d1, size_t nbytes)
{
    static float data[64];
    struct tu_tensor t = {"model.norm.weight", dtype, ndim, {d0, d1}, data, nbytes};
    assert_int_equal(tu_write_safetensors(path_in("model.safetensors"), &t, 1), 0);
}

static void test_wrong_dtype_and_mismatch(void **state)
{
    (void)state;
    assert_int_equal(tu_write_random_model(dir, &small, 1), 0);
    write_one("I64", 1, 16, 0, 128);
    expect_open(NY_E_UNSUPPORTED, "'model.norm.weight'", "dtype 'I64'");
    write_one("F32", 1, 16, 0, 60); /* 16 floats need 64 bytes */
    expect_open(NY_E_FORMAT, "'model.norm.weight'", "need 64 bytes");
    write_one("F32", 2, 4, 4000000000000000000LL, 64); /* element count overflows */
    expect_open(NY_E_RANGE, "'model.norm.weight'", "overflows");
}

static void test_overlapping_tensors(void **state)
{
    (void)state;
    assert_int_equal(tu_write_random_model(dir, &small, 1), 0);
    /* two 16-float tensors whose data_offsets share bytes 32..64 */
    const char *hdr = "{\"model.norm.weight\":{\"dtype\":\"F32\",\"shape\":[16],"
                      "\"data_offsets\":[0,64]},\"x\":{\"dtype\":\"F32\",\"shape\":[16],"
                      "\"data_offsets\":[32,96]}}";
    size_t hl = strlen(hdr);
    FILE *f = fopen(path_in("model.safetensors"), "wb");
    assert_non_null(f);
    uint8_t le[8] = {0};
    for (int i = 0; i < 8; i++)
        le[i] = (uint8_t)(hl >> (8 * i));
    static const uint8_t zeros[96];
    assert_int_equal(fwrite(le, 1, 8, f), 8);
    assert_int_equal(fwrite(hdr, 1, hl, f), hl);
    assert_int_equal(fwrite(zeros, 1, 96, f), 96);
    fclose(f);
    expect_open(NY_E_FORMAT, "'model.norm.weight' and 'x' overlap", NULL);
}

static void test_missing_and_misshapen_tensor(void **state)
{
    (void)state;
    assert_int_equal(tu_write_random_model(dir, &small, 1), 0);
    /* config says 2 layers; the file has 1: layer 1's tensors are missing */
    assert_int_equal(tu_write_file(path_in("config.json"),
                                   "{\"hidden_size\":16,\"intermediate_size\":24,"
                                   "\"num_hidden_layers\":2,\"num_attention_heads\":2,"
                                   "\"num_key_value_heads\":1,\"vocab_size\":40}"),
                     0);
    expect_open(NY_E_NOTFOUND, "'model.layers.1.input_layernorm.weight'", "missing");
    /* config's vocab differs from the embedding's rows */
    assert_int_equal(tu_write_file(path_in("config.json"),
                                   "{\"hidden_size\":16,\"intermediate_size\":24,"
                                   "\"num_hidden_layers\":1,\"num_attention_heads\":2,"
                                   "\"num_key_value_heads\":1,\"vocab_size\":41}"),
                     0);
    expect_open(NY_E_FORMAT, "'model.embed_tokens.weight' has shape [40, 16]", "[41, 16]");
}

static void test_sharded_index_errors(void **state)
{
    (void)state;
    assert_int_equal(tu_write_random_model(dir, &small, 1), 0);
    char from[512];
    snprintf(from, sizeof from, "%s", path_in("model.safetensors"));
    assert_int_equal(rename(from, path_in("part-1.safetensors")), 0);
    assert_int_equal(tu_write_file(path_in("model.safetensors.index.json"),
                                   "{\"weight_map\":{\"model.norm.weight\":\"../etc\"}}"),
                     0);
    expect_open(NY_E_FORMAT, "is not a file name", NULL);
    assert_int_equal(tu_write_file(path_in("model.safetensors.index.json"),
                                   "{\"weight_map\":{\"model.nope\":\"part-1.safetensors\"}}"),
                     0);
    expect_open(NY_E_NOTFOUND, "'model.nope' is not in shard part-1.safetensors", NULL);
    assert_int_equal(tu_write_file(path_in("model.safetensors.index.json"),
                                   "{\"weight_map\":{\"model.norm.weight\":"
                                   "\"part-2.safetensors\"}}"),
                     0);
    expect_open(NY_E_NOTFOUND, "part-2.safetensors", NULL);
}

/* ---- config.json ---- */
static int parse(const char *text, struct engine_config *c, struct ny_err *err)
{
    ny_err_init(err);
    return engine_config_parse(text, strlen(text), "config.json", c, err);
}

#define BASE "\"hidden_size\":64,\"intermediate_size\":128,\"num_hidden_layers\":2," \
             "\"num_attention_heads\":4,\"vocab_size\":100"

static void test_config_errors(void **state)
{
    (void)state;
    struct engine_config c;
    struct ny_err err;
    assert_int_not_equal(parse("{\"intermediate_size\":128,\"num_hidden_layers\":2,"
                               "\"num_attention_heads\":4,\"vocab_size\":100}", &c, &err), NY_OK);
    assert_non_null(strstr(err.msg, "hidden_size"));
    assert_int_equal(parse("{" BASE ",\"num_key_value_heads\":\"2\"}", &c, &err), NY_E_FORMAT);
    assert_non_null(strstr(err.msg, "num_key_value_heads"));
    assert_int_equal(parse("{" BASE ",\"num_key_value_heads\":3}", &c, &err), NY_E_FORMAT);
    assert_int_equal(parse("{" BASE ",\"hidden_size\":-4}", &c, &err), NY_E_FORMAT);
    assert_int_equal(parse("{\"hidden_size\":-4,\"intermediate_size\":128,\"num_hidden_layers\":2,"
                           "\"num_attention_heads\":4,\"vocab_size\":100}", &c, &err), NY_E_RANGE);
    assert_int_equal(parse("{" BASE ",\"eos_token_id\":[1,\"x\"]}", &c, &err), NY_E_FORMAT);
    assert_non_null(strstr(err.msg, "eos_token_id"));
    assert_int_equal(parse("{" BASE ",\"rope_scaling\":{\"rope_type\":\"llama3\",\"factor\":8}}",
                           &c, &err), NY_E_FORMAT);
    assert_non_null(strstr(err.msg, "low_freq_factor"));
    assert_int_equal(parse("{" BASE ",\"rope_scaling\":{\"rope_type\":\"yarn\",\"factor\":8}}", &c,
                           &err), NY_E_UNSUPPORTED);
    assert_int_equal(parse("{" BASE ",\"model_type\":\"mistral\"}", &c, &err), NY_E_UNSUPPORTED);
    assert_int_equal(parse("{" BASE ",\"attention_bias\":true}", &c, &err), NY_E_UNSUPPORTED);
    assert_int_equal(parse("{" BASE ",\"tie_word_embeddings\":1}", &c, &err), NY_E_FORMAT);
    assert_int_equal(parse("[1,2]", &c, &err), NY_E_FORMAT);
    assert_int_equal(parse("{" BASE, &c, &err), NY_E_FORMAT);
}

static void test_config_values(void **state)
{
    (void)state;
    struct engine_config c;
    struct ny_err err;
    assert_int_equal(parse("{" BASE ",\"eos_token_id\":[7,9,7],\"tie_word_embeddings\":true,"
                           "\"rope_theta\":10000.0,\"head_dim\":null}", &c, &err), NY_OK);
    assert_int_equal(c.n_kv_heads, 4); /* defaults to the heads */
    assert_int_equal(c.head_dim, 16);
    assert_int_equal(c.n_eos, 2);      /* deduplicated */
    assert_true(c.tie_embeddings);
    assert_true(fabsf(c.rms_eps - 1e-6f) < 1e-12f);
    const char *gen = "{\"eos_token_id\":[9,11]}";
    assert_int_equal(engine_config_parse_generation(gen, strlen(gen), "g", &c, &err), NY_OK);
    assert_int_equal(c.n_eos, 3);
    assert_int_equal(c.eos_ids[2], 11);
    /* default rope, head_dim 4, theta 10000: inv_freq = [1, 10000^-0.5 = 0.01] */
    assert_int_equal(parse("{" BASE ",\"head_dim\":4}", &c, &err), NY_OK);
    float inv[2];
    engine_config_inv_freq(&c, inv);
    assert_true(fabsf(inv[0] - 1.0f) < 1e-7f && fabsf(inv[1] - 0.01f) < 1e-8f);
    /* llama3 (transformers 5 keys): original 16, factor 8, low 1, high 4. i = 0: wavelength
     * 2π ∈ [4, 16] → smooth = (16/2π − 1)/3 = 0.51551, f = (1 − s)/8 + s = 0.576056;
     * i = 1: wavelength 628 > 16 → 0.01 / 8 = 0.00125. */
    assert_int_equal(parse("{" BASE ",\"head_dim\":4,\"rope_parameters\":{\"rope_type\":\"llama3\","
                           "\"rope_theta\":10000.0,\"factor\":8.0,\"low_freq_factor\":1.0,"
                           "\"high_freq_factor\":4.0,\"original_max_position_embeddings\":16}}",
                           &c, &err), NY_OK);
    engine_config_inv_freq(&c, inv);
    assert_true(fabsf(inv[0] - 0.576056f) < 2e-6f);
    assert_true(fabsf(inv[1] - 0.00125f) < 1e-8f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_valid_model_opens, setup, teardown),
        cmocka_unit_test_setup_teardown(test_truncated_safetensors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_header_length_beyond_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wrong_dtype_and_mismatch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_overlapping_tensors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_missing_and_misshapen_tensor, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sharded_index_errors, setup, teardown),
        cmocka_unit_test(test_config_errors),
        cmocka_unit_test(test_config_values),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
