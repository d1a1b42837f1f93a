/* test_tokenizer_golden.c — exact ids against Hugging Face `tokenizers` (golden/tokenizer/ JSON
 * files, made by golden/tokenizer/make_golden.py): the Llama-3 tokenizer of ../shared on
 * hand-picked texts and 3000 random strings, its decoding, the chat template against transformers'
 * apply_chat_template, and the small trained tokenizer committed in golden/tokenizer/small. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "engine.h"

static char *golden_path(const char *name)
{
    const char *src = getenv("NY_SOURCE_DIR");
    char *dir = ny_path_join(src ? src : ".", "golden/tokenizer");
    char *p = ny_path_join(dir, name);
    ny_free(dir);
    return p;
}

static struct engine_tokenizer *open_llama3(void)
{
    const char *shared = getenv("NY_SHARED_DIR");
    char *p = ny_path_join(shared ? shared : "../shared", "tokenizers/llama3/tokenizer.json");
    struct engine_tokenizer *t = NULL;
    struct ny_err err;
    ny_err_init(&err);
    if (engine_tokenizer_open(p, &t, &err))
        fail_msg("%s", err.msg);
    ny_free(p);
    return t;
}

static struct engine_tokenizer *open_small(void)
{
    char *p = golden_path("small/tokenizer.json");
    struct engine_tokenizer *t = NULL;
    struct ny_err err;
    ny_err_init(&err);
    if (engine_tokenizer_open(p, &t, &err))
        fail_msg("%s", err.msg);
    ny_free(p);
    return t;
}

static json_t *load_cases(const char *name)
{
    char *p = golden_path(name);
    json_t *root = NULL;
    struct ny_err err;
    ny_err_init(&err);
    if (ny_json_load_file(p, (size_t)64 << 20, &root, &err))
        fail_msg("%s", err.msg);
    ny_free(p);
    json_t *cases = json_incref(json_object_get(root, "cases"));
    json_decref(root);
    assert_true(json_array_size(cases) > 0);
    return cases;
}

static int ids_equal(const int32_t *ids, size_t n, json_t *want)
{
    if (n != json_array_size(want))
        return 0;
    for (size_t i = 0; i < n; i++)
        if (ids[i] != json_integer_value(json_array_get(want, i)))
            return 0;
    return 1;
}

static int32_t *ids_of(json_t *arr, size_t *n)
{
    *n = json_array_size(arr);
    int32_t *ids = ny_calloc(*n ? *n : 1, sizeof *ids);
    for (size_t i = 0; i < *n; i++)
        ids[i] = (int32_t)json_integer_value(json_array_get(arr, i));
    return ids;
}

static void expect_decode(struct engine_tokenizer *t, const int32_t *ids, size_t n, int skip,
                          json_t *want, size_t k)
{
    char *text = NULL;
    size_t len = 0;
    struct ny_err err;
    ny_err_init(&err);
    if (engine_tokenizer_decode(t, ids, n, skip, &text, &len, &err))
        fail_msg("case %zu: decode: %s", k, err.msg);
    if (len != json_string_length(want) || memcmp(text, json_string_value(want), len) != 0)
        fail_msg("case %zu: decode (skip %d) gives \"%.60s\", want \"%.60s\"", k, skip, text,
                 json_string_value(want));
    ny_free(text);
}

/* Every case: exact ids, and decoding them gives the text back. With `full`, also the ids with
 * special tokens and HF's decode with and without skip_special_tokens. */
static void check_cases(struct engine_tokenizer *t, const char *name, int full)
{
    json_t *cases = load_cases(name);
    size_t k, bad = 0;
    json_t *c;
    json_array_foreach(cases, k, c)
    {
        json_t *text = json_object_get(c, "text");
        int32_t *ids = NULL;
        size_t n = 0;
        struct ny_err err;
        ny_err_init(&err);
        if (engine_tokenizer_encode(t, json_string_value(text), json_string_length(text), 0, &ids,
                                    &n, &err))
            fail_msg("%s case %zu: %s", name, k, err.msg);
        if (!ids_equal(ids, n, json_object_get(c, "ids"))) {
            print_error("%s case %zu: ids differ for \"%.60s\"\n", name, k,
                        json_string_value(text));
            bad++;
        }
        expect_decode(t, ids, n, 0, text, k);
        if (full) {
            expect_decode(t, ids, n, 0, json_object_get(c, "decoded"), k);
            expect_decode(t, ids, n, 1, json_object_get(c, "decoded_skip"), k);
            ny_free(ids);
            ny_err_init(&err);
            if (engine_tokenizer_encode(t, json_string_value(text), json_string_length(text), 1,
                                        &ids, &n, &err))
                fail_msg("%s case %zu: %s", name, k, err.msg);
            if (!ids_equal(ids, n, json_object_get(c, "ids_special"))) {
                print_error("%s case %zu: ids with special tokens differ\n", name, k);
                bad++;
            }
        }
        ny_free(ids);
    }
    json_decref(cases);
    assert_int_equal(bad, 0);
}

static void test_llama3_cases(void **state)
{
    (void)state;
    struct engine_tokenizer *t = open_llama3();
    assert_int_equal(engine_tokenizer_vocab_size(t), 128256);
    assert_int_equal(engine_tokenizer_token_id(t, "<|eot_id|>"), 128009);
    assert_int_equal(engine_tokenizer_bos_id(t), 128000);
    assert_int_equal(engine_tokenizer_eos_id(t), 128001);
    check_cases(t, "llama3_cases.json", 1);
    engine_tokenizer_close(t);
}

static void test_llama3_fuzz(void **state)
{
    (void)state;
    struct engine_tokenizer *t = open_llama3();
    check_cases(t, "llama3_fuzz.json", 0);
    engine_tokenizer_close(t);
}

static void test_llama3_decode(void **state)
{
    (void)state;
    struct engine_tokenizer *t = open_llama3();
    json_t *cases = load_cases("llama3_decode.json");
    size_t k;
    json_t *c;
    json_array_foreach(cases, k, c)
    {
        size_t n;
        int32_t *ids = ids_of(json_object_get(c, "ids"), &n);
        expect_decode(t, ids, n, 0, json_object_get(c, "decoded"), k);
        expect_decode(t, ids, n, 1, json_object_get(c, "decoded_skip"), k);
        ny_free(ids);
    }
    json_decref(cases);
    engine_tokenizer_close(t);
}

static void check_chat(struct engine_tokenizer *t, const char *name)
{
    json_t *cases = load_cases(name);
    size_t k;
    json_t *c;
    json_array_foreach(cases, k, c)
    {
        int gen = json_is_true(json_object_get(c, "add_generation_prompt"));
        int32_t *ids = NULL;
        size_t n = 0;
        struct ny_err err;
        ny_err_init(&err);
        if (engine_chat_encode_json(t, json_object_get(c, "messages"), gen, name, &ids, &n, &err))
            fail_msg("%s case %zu: %s", name, k, err.msg);
        if (!ids_equal(ids, n, json_object_get(c, "ids")))
            fail_msg("%s case %zu: chat ids differ", name, k);
        ny_free(ids);
    }
    json_decref(cases);
}

static void test_llama3_chat(void **state)
{
    (void)state;
    struct engine_tokenizer *t = open_llama3();
    check_chat(t, "llama3_chat.json");
    engine_tokenizer_close(t);
}

static void test_small(void **state)
{
    (void)state;
    struct engine_tokenizer *t = open_small();
    assert_int_equal(engine_tokenizer_bos_id(t), engine_tokenizer_token_id(t, "<|begin_of_text|>"));
    check_cases(t, "small_cases.json", 1);
    check_chat(t, "small_chat.json");
    engine_tokenizer_close(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_llama3_cases),  cmocka_unit_test(test_llama3_fuzz),
        cmocka_unit_test(test_llama3_decode), cmocka_unit_test(test_llama3_chat),
        cmocka_unit_test(test_small),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
