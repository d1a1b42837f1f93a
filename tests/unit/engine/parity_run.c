/* parity_run.c — see parity_run.h. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "engine.h"
#include "parity_run.h"

#define MAX_PROMPT 64

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

/* "" when res has want's ids, else what differs. */
static void diff_ids(const struct engine_result *res, json_t *want, char *out, size_t cap)
{
    json_t *ids = json_object_get(want, "output_ids");
    out[0] = '\0';
    if (res->n_output != json_array_size(ids)) {
        snprintf(out, cap, "%zu ids, expected %zu", res->n_output, json_array_size(ids));
        return;
    }
    for (size_t k = 0; k < res->n_output; k++)
        if (res->output_ids[k] != json_integer_value(json_array_get(ids, k))) {
            snprintf(out, cap, "id %zu is %d, expected %lld", k, res->output_ids[k],
                     (long long)json_integer_value(json_array_get(ids, k)));
            return;
        }
}

void parity_run(const char *name, const char *device, int threads, int tp, int merge_first,
                struct parity_outcome *out)
{
    const char *src = getenv("NY_SOURCE_DIR");
    char dir[1024], path[1200];
    snprintf(dir, sizeof dir, "%s/golden/parity/%s", src ? src : ".", name);
    snprintf(path, sizeof path, "%s/expected.json", dir);
    json_t *exp;
    struct ny_err err;
    ny_err_init(&err);
    assert_int_equal(ny_json_load_file(path, 64 << 20, &exp, &err), NY_OK);
    memset(out, 0, sizeof *out);
    out->bf16 = !strcmp(json_string_value(json_object_get(exp, "dtype")), "bfloat16");
    json_t *prompts = json_object_get(exp, "prompts"), *runs = json_object_get(exp, "runs");
    int max_new = (int)json_integer_value(json_object_get(exp, "max_new_tokens"));
    struct engine_model *m;
    struct engine_model_opts o = {.device = device, .threads = threads, .tp = tp};
    if (engine_model_open(dir, &o, &m, &err) != NY_OK)
        fail_msg("%s (tp %d): %s", name, tp, err.msg);
    struct engine_model_info info;
    engine_model_info_get(m, &info);
    assert_string_equal(info.device, device);
    assert_int_equal(info.tp, tp > 1 ? tp : 1);
    size_t np = json_array_size(prompts), nr = json_array_size(runs), n = 0;
    struct engine_request *reqs = calloc(np * nr, sizeof *reqs);
    json_t **want = calloc(np * nr, sizeof *want);
    int32_t *ids = calloc(np * nr * MAX_PROMPT, sizeof *ids);
    assert_true(reqs && want && ids);
    for (size_t r = 0; r < nr; r++) {
        json_t *run = json_array_get(runs, r), *an = json_object_get(run, "adapter");
        int idx = -1;
        if (merge_first && (!json_is_string(an) || r != 1))
            continue;
        if (json_is_string(an)) {
            snprintf(path, sizeof path, "%s/adapter_%s", dir, json_string_value(an));
            if (engine_model_adapter_add(m, json_string_value(an), path, merge_first, &idx,
                                         &err) != NY_OK)
                fail_msg("%s: %s", name, err.msg);
        }
        for (size_t p = 0; p < np; p++) {
            json_t *pr = json_array_get(prompts, p);
            assert_true(json_array_size(pr) <= MAX_PROMPT);
            int32_t *dst = ids + n * MAX_PROMPT;
            for (size_t k = 0; k < json_array_size(pr); k++)
                dst[k] = (int32_t)json_integer_value(json_array_get(pr, k));
            reqs[n] = (struct engine_request){dst, json_array_size(pr), idx};
            want[n++] = json_array_get(json_object_get(run, "outputs"), p);
        }
    }
    assert_true(n > 0);
    struct engine_result *res = calloc(n, sizeof *res);
    assert_non_null(res);
    struct engine_gen_opts go = {.max_new_tokens = max_new, .first_logits = 1, .max_batch = 5};
    if (engine_generate(m, reqs, n, &go, res, &err) != NY_OK)
        fail_msg("%s: %s", name, err.msg);
    out->n = n;
    for (size_t i = 0; i < n; i++) {
        char why[160];
        diff_ids(&res[i], want[i], why, sizeof why);
        if (why[0] && out->id_mismatch++ == 0)
            snprintf(out->first_mismatch, sizeof out->first_mismatch,
                     "%s%s (tp %d) request %zu: %s", name, merge_first ? " (merged)" : "", tp, i,
                     why);
        double e = rel_err(res[i].first_logits, json_object_get(want[i], "first_logits"),
                           info.vocab_size);
        if (getenv("NY_PARITY_VERBOSE"))
            fprintf(stderr, "%s (tp %d) request %zu: rel err %.3g\n", name, tp, i, e);
        if (!isnan(out->worst_rel) && !(e <= out->worst_rel)) { /* a NaN error sticks */
            out->worst_rel = e;
            out->worst_index = i;
        }
        engine_result_fini(&res[i]);
    }
    engine_model_close(m);
    json_decref(exp);
    free(res);
    free(reqs);
    free(want);
    free(ids);
}
