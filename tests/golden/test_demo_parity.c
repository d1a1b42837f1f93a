/* test_demo_parity.c — the CPU engine reproduces transformers' greedy outputs of the three demo
 * checkpoints (golden/demo/v16, and the LoRA adapters v17 and epoch1 over it) on 50 held-out
 * prompts: identical ids. Expected outputs: golden/demo/parity/, made by golden/demo/make_parity.py
 * (transformers + PEFT, float32 on the CPU). Each checkpoint is checked twice: from the chat
 * messages (tokenizer + Llama-3 template + model) and from the prompt ids (the model alone), so a
 * failure says which half differs. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "common.h"
#include "engine.h"

#define MAX_FILE (64u << 20)
#define N_PROMPTS 50
#define MAX_NEW 64

struct demo {
    struct engine_model *model;
    struct engine_tokenizer *tok;
    int adapter[3]; /* v16 (-1), v17, epoch1 */
};

static const char *const ckpt_names[3] = {"v16", "v17", "epoch1"};

static char *src_path(const char *rel)
{
    const char *src = getenv("NY_SOURCE_DIR");
    char *p = ny_path_join(src && *src ? src : ".", rel);
    assert_non_null(p);
    return p;
}

/* Parse a JSONL file into a JSON array of its rows. */
static json_t *jsonl_load(const char *rel)
{
    char *path = src_path(rel), *buf = NULL;
    size_t len = 0;
    struct ny_err err;
    ny_err_init(&err);
    if (ny_file_read(path, MAX_FILE, &buf, &len, &err) != NY_OK)
        fail_msg("%s", err.msg);
    json_t *rows = json_array();
    struct ny_lines it;
    ny_lines_init(&it, buf, len);
    const char *line;
    size_t ll;
    while (ny_lines_next(&it, &line, &ll)) {
        if (ll == 0)
            continue;
        char what[1300];
        snprintf(what, sizeof what, "%s line %zu", path, it.lineno);
        json_t *o = NULL;
        if (ny_json_load_buf(line, ll, what, &o, &err) != NY_OK)
            fail_msg("%s", err.msg);
        json_array_append_new(rows, o);
    }
    ny_free(buf);
    ny_free(path);
    return rows;
}

static int setup(void **state)
{
    struct demo *d = calloc(1, sizeof *d);
    assert_non_null(d);
    struct ny_err err;
    ny_err_init(&err);
    char *dir = src_path("golden/demo/v16");
    char *tj = src_path("golden/demo/v16/tokenizer.json");
    struct engine_model_opts o = {.device = "cpu", .threads = 2};
    if (engine_model_open(dir, &o, &d->model, &err) != NY_OK)
        fail_msg("%s", err.msg);
    if (engine_tokenizer_open(tj, &d->tok, &err) != NY_OK)
        fail_msg("%s", err.msg);
    d->adapter[0] = -1;
    for (int i = 1; i < 3; i++) {
        char rel[64];
        snprintf(rel, sizeof rel, "golden/demo/%s", ckpt_names[i]);
        char *ad = src_path(rel);
        if (engine_model_adapter_add(d->model, ckpt_names[i], ad, 0, &d->adapter[i], &err) !=
            NY_OK)
            fail_msg("%s", err.msg);
        ny_free(ad);
    }
    ny_free(dir);
    ny_free(tj);
    *state = d;
    return 0;
}

static int teardown(void **state)
{
    struct demo *d = *state;
    engine_model_close(d->model);
    engine_tokenizer_close(d->tok);
    free(d);
    return 0;
}

/* The prompt ids of row i: from its messages through the template, or its input_ids. */
static int32_t *prompt_ids(struct demo *d, json_t *row, int from_messages, size_t *n)
{
    struct ny_err err;
    ny_err_init(&err);
    int32_t *ids = NULL;
    if (from_messages) {
        if (engine_chat_encode_json(d->tok, json_object_get(row, "messages"), 1, "requests.jsonl",
                                    &ids, n, &err) != NY_OK)
            fail_msg("%s", err.msg);
        return ids;
    }
    json_t *a = json_object_get(row, "input_ids");
    assert_true(json_is_array(a) && json_array_size(a) > 0);
    *n = json_array_size(a);
    ids = ny_calloc(*n, sizeof *ids);
    assert_non_null(ids);
    for (size_t k = 0; k < *n; k++)
        ids[k] = (int32_t)json_integer_value(json_array_get(a, k));
    return ids;
}

static void check_ckpt(struct demo *d, int ck, int from_messages)
{
    json_t *reqs = jsonl_load(from_messages ? "golden/demo/parity/requests.jsonl"
                                            : "golden/demo/parity/requests_ids.jsonl");
    char rel[96];
    snprintf(rel, sizeof rel, "golden/demo/parity/expected_%s.jsonl", ckpt_names[ck]);
    json_t *want = jsonl_load(rel);
    assert_int_equal(json_array_size(reqs), N_PROMPTS);
    assert_int_equal(json_array_size(want), N_PROMPTS);
    struct engine_request r[N_PROMPTS];
    struct engine_result res[N_PROMPTS];
    int32_t *ids[N_PROMPTS];
    for (size_t i = 0; i < N_PROMPTS; i++) {
        json_t *row = json_array_get(reqs, i), *w = json_array_get(want, i);
        assert_string_equal(json_string_value(json_object_get(row, "id")),
                            json_string_value(json_object_get(w, "id")));
        ids[i] = prompt_ids(d, row, from_messages, &r[i].n_input);
        r[i].input_ids = ids[i];
        r[i].adapter = d->adapter[ck];
    }
    struct engine_gen_opts go = {.max_new_tokens = MAX_NEW, .max_batch = 16};
    struct ny_err err;
    ny_err_init(&err);
    if (engine_generate(d->model, r, N_PROMPTS, &go, res, &err) != NY_OK)
        fail_msg("%s", err.msg);
    size_t bad = 0;
    for (size_t i = 0; i < N_PROMPTS; i++) {
        json_t *w = json_array_get(want, i), *wids = json_object_get(w, "output_ids");
        const char *id = json_string_value(json_object_get(w, "id"));
        size_t nw = json_array_size(wids), ng = res[i].n_output;
        if (res[i].stopped_on_eos && ng > 0)
            ng--; /* the engine keeps the stop id; the reference lists the ids before it */
        size_t k = 0;
        while (k < nw && k < ng &&
               res[i].output_ids[k] == json_integer_value(json_array_get(wids, k)))
            k++;
        int64_t wp = json_integer_value(json_object_get(w, "prompt_tokens"));
        if (k != nw || k != ng || (int64_t)r[i].n_input != wp) {
            print_error("%s %s: %s differs at output position %zu (expected %zu ids, got %zu; "
                        "prompt tokens expected %lld, got %zu)\n",
                        ckpt_names[ck], from_messages ? "messages" : "ids", id, k, nw, ng,
                        (long long)wp, r[i].n_input);
            bad++;
        }
        engine_result_fini(&res[i]);
        ny_free(ids[i]);
    }
    json_decref(reqs);
    json_decref(want);
    if (bad)
        fail_msg("%s (%s): %zu of %d records differ from transformers", ckpt_names[ck],
                 from_messages ? "messages" : "ids", bad, N_PROMPTS);
}

static void test_v16_ids(void **s) { check_ckpt(*s, 0, 0); }
static void test_v17_ids(void **s) { check_ckpt(*s, 1, 0); }
static void test_epoch1_ids(void **s) { check_ckpt(*s, 2, 0); }
static void test_v16_messages(void **s) { check_ckpt(*s, 0, 1); }
static void test_v17_messages(void **s) { check_ckpt(*s, 1, 1); }
static void test_epoch1_messages(void **s) { check_ckpt(*s, 2, 1); }

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_v16_ids),      cmocka_unit_test(test_v17_ids),
        cmocka_unit_test(test_epoch1_ids),   cmocka_unit_test(test_v16_messages),
        cmocka_unit_test(test_v17_messages), cmocka_unit_test(test_epoch1_messages),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
