/* test_adapter.c — PEFT adapter loading over the gqa_llama3_f32 fixture: a valid adapter, and
 * hostile ones (DoRA, modules_to_save, rank mismatch, target_modules that do not cover the
 * tensors, a missing lora_B, unknown tensors, wrong types), duplicate names, double merging. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "engine.h"
#include "engine_testutil.h"

static char fixture[1024], adir[256];
static struct engine_model *model;

static int setup(void **state)
{
    (void)state;
    const char *src = getenv("NY_SOURCE_DIR");
    snprintf(fixture, sizeof fixture, "%s/golden/parity/gqa_llama3_f32", src ? src : ".");
    struct engine_model_opts o = {.threads = 1};
    if (engine_model_open(fixture, &o, &model, NULL) != NY_OK)
        return -1;
    const char *d = tu_tmpdir();
    if (!d)
        return -1;
    snprintf(adir, sizeof adir, "%s", d);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    engine_model_close(model);
    tu_rmdir(adir);
    return 0;
}

/* adir/adapter_config.json = the plain adapter's config with key set to the JSON `value`
 * (NULL: unchanged); adir/adapter_model.safetensors = a copy of the plain adapter's weights. */
static void make_adapter(const char *key, const char *value)
{
    char p[2400], q[512];
    snprintf(p, sizeof p, "%s/adapter_plain/adapter_config.json", fixture);
    json_t *cfg = json_load_file(p, 0, NULL);
    assert_non_null(cfg);
    if (key)
        json_object_set_new(cfg, key, json_loads(value, JSON_DECODE_ANY, NULL));
    snprintf(q, sizeof q, "%s/adapter_config.json", adir);
    assert_int_equal(json_dump_file(cfg, q, 0), 0);
    json_decref(cfg);
    snprintf(p, sizeof p, "cp '%s/adapter_plain/adapter_model.safetensors' '%s/'", fixture, adir);
    assert_int_equal(system(p), 0);
}

static void expect_add(const char *name, int merge, int want, const char *needle)
{
    struct ny_err err;
    ny_err_init(&err);
    int idx = 99;
    int rc = engine_model_adapter_add(model, name, adir, merge, &idx, &err);
    if (rc != want)
        fail_msg("rc %s, expected %s: %s", ny_status_name(rc), ny_status_name(want), err.msg);
    if (want != NY_OK) {
        assert_int_equal(idx, 99); /* output written only on success */
        if (needle && !strstr(err.msg, needle))
            fail_msg("message '%s' lacks '%s'", err.msg, needle);
    }
}

static void test_valid_and_names(void **state)
{
    (void)state;
    make_adapter(NULL, NULL);
    expect_add("a", 0, NY_OK, NULL);
    assert_int_equal(engine_model_adapter_find(model, "a"), 0);
    assert_int_equal(engine_model_adapter_find(model, "b"), -1);
    expect_add("a", 0, NY_E_INVALID, "used twice");
    expect_add("", 0, NY_E_INVALID, "name");
    /* target_modules as a regular expression matching all seven projections */
    make_adapter("target_modules", "\".*\\\\.(q|k|v|o|gate|up|down)_proj\"");
    expect_add("regex", 0, NY_OK, NULL);
    make_adapter(NULL, NULL);
    expect_add("m1", 1, NY_OK, NULL);
    expect_add("m2", 1, NY_E_INVALID, "only one adapter can be merged");
}

static void test_refused_configs(void **state)
{
    (void)state;
    make_adapter("use_dora", "true");
    expect_add("x", 0, NY_E_UNSUPPORTED, "DoRA");
    make_adapter("modules_to_save", "[\"lm_head\"]");
    expect_add("x", 0, NY_E_UNSUPPORTED, "modules_to_save");
    make_adapter("bias", "\"all\"");
    expect_add("x", 0, NY_E_UNSUPPORTED, "bias");
    make_adapter("peft_type", "\"IA3\"");
    expect_add("x", 0, NY_E_UNSUPPORTED, "IA3");
    make_adapter("r", "\"4\"");
    expect_add("x", 0, NY_E_FORMAT, "\"r\"");
    make_adapter("lora_alpha", "null");
    expect_add("x", 0, NY_E_FORMAT, "lora_alpha");
    make_adapter("target_modules", "7");
    expect_add("x", 0, NY_E_FORMAT, "target_modules");
    make_adapter("rank_pattern", "{\"q_proj\": 0}");
    expect_add("x", 0, NY_E_FORMAT, "rank_pattern");
}

static void test_rank_and_targets(void **state)
{
    (void)state;
    make_adapter("r", "8"); /* the tensors have rank 4 */
    expect_add("x", 0, NY_E_FORMAT, "rank 8");
    make_adapter("rank_pattern", "{\"down_proj\": 2}");
    expect_add("x", 0, NY_E_FORMAT, "mlp.down_proj: lora_A is [4, 128]");
    make_adapter("target_modules", "[\"q_proj\", \"k_proj\", \"v_proj\"]");
    expect_add("x", 0, NY_E_FORMAT, "does not name it");
}

static void test_bad_tensors(void **state)
{
    (void)state;
    make_adapter(NULL, NULL);
    char p[512];
    snprintf(p, sizeof p, "%s/adapter_model.safetensors", adir);
    static float a[4 * 64];
    struct tu_tensor t = {"base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight", "F32",
                          2, {4, 64}, a, sizeof a};
    assert_int_equal(tu_write_safetensors(p, &t, 1), 0);
    expect_add("x", 0, NY_E_NOTFOUND, "lora_B.weight' is missing");
    t.name = "base_model.model.lm_head.lora_A.weight";
    assert_int_equal(tu_write_safetensors(p, &t, 1), 0);
    expect_add("x", 0, NY_E_UNSUPPORTED, "lm_head.lora_A.weight");
    t.name = "base_model.model.model.layers.9.self_attn.q_proj.lora_A.weight";
    assert_int_equal(tu_write_safetensors(p, &t, 1), 0);
    expect_add("x", 0, NY_E_UNSUPPORTED, "2-layer model");
    assert_int_equal(truncate(p, 20), 0);
    expect_add("x", 0, NY_E_FORMAT, "adapter_model.safetensors");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_valid_and_names, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refused_configs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rank_and_targets, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_tensors, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
