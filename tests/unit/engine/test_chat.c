/* test_chat.c — the Llama-3 chat template on the small committed tokenizer: the rendered text
 * (one BOS, headers, trimmed content, <|eot_id|>, the generation prompt), its ids, and the errors
 * (no messages, bad JSON shapes, an unknown template). */
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

static struct engine_tokenizer *tok;

static int setup(void **state)
{
    (void)state;
    const char *src = getenv("NY_SOURCE_DIR");
    char *p = ny_path_join(src ? src : ".", "golden/tokenizer/small/tokenizer.json");
    struct ny_err err;
    ny_err_init(&err);
    int rc = engine_tokenizer_open(p, &tok, &err);
    ny_free(p);
    if (rc)
        print_error("%s\n", err.msg);
    return rc;
}

static int teardown(void **state)
{
    (void)state;
    engine_tokenizer_close(tok);
    return 0;
}

static void render_eq(const struct engine_chat_msg *m, size_t n, int gen, const char *want)
{
    char *text = NULL;
    size_t len = 0;
    struct ny_err err;
    ny_err_init(&err);
    if (engine_chat_render(tok, m, n, gen, &text, &len, &err))
        fail_msg("%s", err.msg);
    assert_int_equal(len, strlen(want));
    assert_string_equal(text, want);
    ny_free(text);
}

static void test_render(void **state)
{
    (void)state;
    const struct engine_chat_msg m[] = {
        {"system", " \t Code it.\n"},
        {"user", "\xe3\x80\x80 CT head \xc2\xa0\xc2\x85"}, /* U+3000, U+00A0, U+0085 trimmed */
        {"assistant", "\xe2\x80\x8b"
                      "70450"}, /* U+200B is not white space */
    };
    render_eq(m, 3, 0,
              "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCode it.<|eot_id|>"
              "<|start_header_id|>user<|end_header_id|>\n\nCT head<|eot_id|>"
              "<|start_header_id|>assistant<|end_header_id|>\n\n\xe2\x80\x8b"
              "70450<|eot_id|>");
    render_eq(m, 1, 1,
              "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCode it.<|eot_id|>"
              "<|start_header_id|>assistant<|end_header_id|>\n\n");
    const struct engine_chat_msg blank[] = {{"user", "   "}};
    render_eq(blank, 1, 0,
              "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n<|eot_id|>");
}

static void test_ids(void **state)
{
    (void)state;
    const struct engine_chat_msg m[] = {{"user", "CT head"}, {"assistant", "70450"}};
    int32_t *ids = NULL;
    size_t n = 0;
    assert_int_equal(engine_chat_encode(tok, m, 2, 1, &ids, &n, NULL), 0);
    int32_t bos = engine_tokenizer_bos_id(tok), eot = engine_tokenizer_token_id(tok, "<|eot_id|>");
    int32_t sh = engine_tokenizer_token_id(tok, "<|start_header_id|>");
    int32_t eh = engine_tokenizer_token_id(tok, "<|end_header_id|>");
    assert_true(bos >= 0 && eot >= 0 && sh >= 0 && eh >= 0);
    size_t n_bos = 0, n_eot = 0, n_sh = 0;
    for (size_t i = 0; i < n; i++) {
        n_bos += ids[i] == bos;
        n_eot += ids[i] == eot;
        n_sh += ids[i] == sh;
    }
    assert_int_equal(ids[0], bos);
    assert_int_equal(ids[1], sh);
    assert_int_equal(n_bos, 1); /* exactly one BOS: the template's, no post-processor BOS */
    assert_int_equal(n_eot, 2);
    assert_int_equal(n_sh, 3);
    /* ... and the generation prompt after the last header start. */
    size_t last = n;
    while (last > 0 && ids[last - 1] != sh)
        last--;
    assert_true(last > 0 && ids[n - 1] != eh);
    char *tail = NULL;
    size_t len = 0;
    assert_int_equal(
        engine_tokenizer_decode(tok, ids + last - 1, n - last + 1, 0, &tail, &len, NULL), 0);
    assert_string_equal(tail, "<|start_header_id|>assistant<|end_header_id|>\n\n");
    ny_free(tail);
    /* The JSON form gives the same ids. */
    json_t *arr = json_pack("[{s:s,s:s},{s:s,s:s}]", "role", "user", "content", "CT head", "role",
                            "assistant", "content", "70450");
    int32_t *ids2 = NULL;
    size_t n2 = 0;
    assert_int_equal(engine_chat_encode_json(tok, arr, 1, "req 1", &ids2, &n2, NULL), 0);
    assert_int_equal(n2, n);
    assert_memory_equal(ids2, ids, n * sizeof *ids);
    json_decref(arr);
    ny_free(ids);
    ny_free(ids2);
}

static void test_errors(void **state)
{
    (void)state;
    int32_t *ids = NULL;
    size_t n = 0;
    struct ny_err err;
    ny_err_init(&err);
    assert_int_equal(engine_chat_encode(tok, NULL, 0, 1, &ids, &n, &err), NY_E_INVALID);
    const struct engine_chat_msg nul[] = {{"user", NULL}};
    assert_int_equal(engine_chat_encode(tok, nul, 1, 1, &ids, &n, &err), NY_E_INVALID);
    const char *bad[] = {"{}", "[1]", "[{\"role\": \"user\"}]",
                         "[{\"role\": 3, \"content\": \"x\"}]"};
    for (size_t i = 0; i < 4; i++) {
        json_t *j = json_loads(bad[i], 0, NULL);
        ny_err_init(&err);
        assert_int_equal(engine_chat_encode_json(tok, j, 1, "req 9", &ids, &n, &err), NY_E_INVALID);
        assert_non_null(strstr(err.msg, "req 9"));
        json_decref(j);
    }
    assert_null(ids);
}

static void test_unknown_template(void **state)
{
    (void)state;
    char dir[] = "/tmp/ny_chat_XXXXXX";
    assert_non_null(mkdtemp(dir));
    const char *src = getenv("NY_SOURCE_DIR");
    char *from = ny_path_join(src ? src : ".", "golden/tokenizer/small/tokenizer.json");
    char *to = ny_path_join(dir, "tokenizer.json"),
         *cfg = ny_path_join(dir, "tokenizer_config.json");
    char *data = NULL;
    size_t len = 0;
    assert_int_equal(ny_file_read(from, (size_t)1 << 26, &data, &len, NULL), 0);
    assert_int_equal(ny_file_write_atomic(to, data, len, NULL), 0);
    const char *c = "{\"chat_template\": \"{{ messages }}\"}";
    assert_int_equal(ny_file_write_atomic(cfg, c, strlen(c), NULL), 0);
    struct engine_tokenizer *t = NULL;
    assert_int_equal(engine_tokenizer_open(to, &t, NULL), 0);
    const struct engine_chat_msg m[] = {{"user", "x"}};
    int32_t *ids = NULL;
    size_t n = 0;
    struct ny_err err;
    ny_err_init(&err);
    assert_int_equal(engine_chat_encode(t, m, 1, 1, &ids, &n, &err), NY_E_UNSUPPORTED);
    assert_non_null(strstr(err.msg, "chat_template"));
    engine_tokenizer_close(t);
    unlink(cfg);
    unlink(to);
    rmdir(dir);
    ny_free(data);
    ny_free(from);
    ny_free(to);
    ny_free(cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_render),
        cmocka_unit_test(test_ids),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_unknown_template),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
