/* test_parity.c — the CPU engine against transformers + PEFT (golden/parity/, made by
 * make_fixtures.py): identical greedy ids and first-step logits within 1e-4 relative error
 * (max |ours - ref| / max |ref|), for the base and for each adapter, all requests of a fixture
 * in one call with their adapters mixed; and the merged mode of the first adapter. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "engine.h"

#define REL_TOL 1e-4

static char *fixture_dir(const char *name)
{
    const char *src = getenv("NY_SOURCE_DIR");
    char buf[1024];
    snprintf(buf, sizeof buf, "%s/golden/parity/%s", src ? src : ".", name);
    return strdup(buf);
}

static double rel_err(const float *got, json_t *ref, int vocab)
{
    double maxref = 0, maxdiff = 0;
    assert_int_equal(json_array_size(ref), vocab);
    for (int j = 0; j < vocab; j++) {
        double r = json_number_value(json_array_get(ref, (size_t)j));
        maxref = fmax(maxref, fabs(r));
        maxdiff = fmax(maxdiff, fabs((double)got[j] - r));
    }
    return maxdiff / maxref;
}

static void check_ids(const struct engine_result *res, json_t *want, const char *what)
{
    json_t *ids = json_object_get(want, "output_ids");
    if (res->n_output != json_array_size(ids))
        fail_msg("%s: %zu ids, expected %zu", what, res->n_output, json_array_size(ids));
    for (size_t k = 0; k < res->n_output; k++)
        if (res->output_ids[k] != json_integer_value(json_array_get(ids, k)))
            fail_msg("%s: id %zu is %d, expected %lld", what, k, res->output_ids[k],
                     (long long)json_integer_value(json_array_get(ids, k)));
}

/* Run every (run, prompt) pair of expected.json in one engine_generate call. merge_first: open
 * a model with the first adapter merged and check only that adapter's run. */
static void run_fixture(const char *name, int merge_first)
{
    char *dir = fixture_dir(name), path[1200];
    snprintf(path, sizeof path, "%s/expected.json", dir);
    json_t *exp;
    struct ny_err err;
    ny_err_init(&err);
    assert_int_equal(ny_json_load_file(path, 64 << 20, &exp, &err), NY_OK);
    json_t *prompts = json_object_get(exp, "prompts"), *runs = json_object_get(exp, "runs");
    int max_new = (int)json_integer_value(json_object_get(exp, "max_new_tokens"));
    struct engine_model *m;
    struct engine_model_opts o = {.device = "cpu", .threads = 2};
    int rc = engine_model_open(dir, &o, &m, &err);
    if (rc != NY_OK)
        fail_msg("%s: %s", name, err.msg);
    struct engine_model_info info;
    engine_model_info_get(m, &info);
    size_t np = json_array_size(prompts), nr = json_array_size(runs), n = 0;
    struct engine_request *reqs = calloc(np * nr, sizeof *reqs);
    json_t **want = calloc(np * nr, sizeof *want);
    int32_t *ids = calloc(np * nr * 64, sizeof *ids);
    for (size_t r = 0; r < nr; r++) {
        json_t *run = json_array_get(runs, r), *an = json_object_get(run, "adapter");
        int idx = -1;
        if (merge_first && (!json_is_string(an) || r != 1))
            continue;
        if (json_is_string(an)) {
            snprintf(path, sizeof path, "%s/adapter_%s", dir, json_string_value(an));
            rc = engine_model_adapter_add(m, json_string_value(an), path, merge_first, &idx, &err);
            if (rc != NY_OK)
                fail_msg("%s: %s", name, err.msg);
        }
        for (size_t p = 0; p < np; p++) {
            json_t *pr = json_array_get(prompts, p);
            int32_t *dst = ids + n * 64;
            for (size_t k = 0; k < json_array_size(pr); k++)
                dst[k] = (int32_t)json_integer_value(json_array_get(pr, k));
            reqs[n] = (struct engine_request){dst, json_array_size(pr), idx};
            want[n++] = json_array_get(json_object_get(run, "outputs"), p);
        }
    }
    assert_true(n > 0);
    struct engine_result *res = calloc(n, sizeof *res);
    struct engine_gen_opts go = {.max_new_tokens = max_new, .first_logits = 1, .max_batch = 5};
    rc = engine_generate(m, reqs, n, &go, res, &err);
    if (rc != NY_OK)
        fail_msg("%s: %s", name, err.msg);
    for (size_t i = 0; i < n; i++) {
        char what[128];
        snprintf(what, sizeof what, "%s%s request %zu", name, merge_first ? " (merged)" : "", i);
        check_ids(&res[i], want[i], what);
        double e = rel_err(res[i].first_logits, json_object_get(want[i], "first_logits"),
                           info.vocab_size);
        if (getenv("NY_PARITY_VERBOSE"))
            fprintf(stderr, "%s: rel err %.3g\n", what, e);
        if (!(e <= REL_TOL))
            fail_msg("%s: first logits relative error %.3g > %g", what, e, REL_TOL);
        engine_result_fini(&res[i]);
    }
    engine_model_close(m);
    json_decref(exp);
    free(res);
    free(reqs);
    free(want);
    free(ids);
    free(dir);
}

static void test_gqa_llama3_f32(void **s)
{
    (void)s;
    run_fixture("gqa_llama3_f32", 0);
}

static void test_gqa_llama3_f32_merged(void **s)
{
    (void)s;
    run_fixture("gqa_llama3_f32", 1);
}

static void test_tied_mha_bf16(void **s)
{
    (void)s;
    run_fixture("tied_mha_bf16", 0);
}

static void test_sharded_f16(void **s)
{
    (void)s;
    run_fixture("sharded_f16", 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gqa_llama3_f32),
        cmocka_unit_test(test_gqa_llama3_f32_merged),
        cmocka_unit_test(test_tied_mha_bf16),
        cmocka_unit_test(test_sharded_f16),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
