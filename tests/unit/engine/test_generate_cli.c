/* test_generate_cli.c — `nyxaudit generate` end to end on the gqa_llama3_f32 fixture: ids equal
 * to transformers' for the base and a named adapter in one run, result rows in input order, the
 * unnamed adapter, --ignore-eos, --first-logits; bad requests exit 2 and write nothing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include <cmocka.h>
#include <jansson.h>

#include "common.h"
#include "engine.h"
#include "engine_testutil.h"

static char dir[256], fixture[1024];

static int setup(void **state)
{
    (void)state;
    const char *src = getenv("NY_SOURCE_DIR");
    snprintf(fixture, sizeof fixture, "%s/golden/parity/gqa_llama3_f32", src ? src : ".");
    const char *d = tu_tmpdir();
    if (!d || !getenv("NYXAUDIT_BIN"))
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

/* Run generate with args on `requests`; returns the exit code; *out gets stdout (ny_free). */
static int gen(const char *args, const char *requests, char **out, size_t *out_len)
{
    char in[512], res[512], cmd[4096];
    snprintf(in, sizeof in, "%s/req.jsonl", dir);
    snprintf(res, sizeof res, "%s/res.jsonl", dir);
    assert_int_equal(tu_write_file(in, requests), 0);
    snprintf(cmd, sizeof cmd, "'%s' generate --model '%s' --threads 2 %s < '%s' > '%s' 2>/dev/null",
             getenv("NYXAUDIT_BIN"), fixture, args, in, res);
    int st = system(cmd);
    assert_int_equal(ny_file_read(res, 1 << 26, out, out_len, NULL), NY_OK);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static json_t *expected_ids(int run, int prompt)
{
    char p[1200];
    snprintf(p, sizeof p, "%s/expected.json", fixture);
    json_t *e = json_load_file(p, 0, NULL);
    assert_non_null(e);
    json_t *r = json_array_get(json_object_get(e, "runs"), (size_t)run);
    json_t *o = json_object_get(json_array_get(json_object_get(r, "outputs"), (size_t)prompt),
                                "output_ids");
    json_incref(o);
    json_decref(e);
    return o;
}

static json_t *row(const char *text, size_t i)
{
    const char *p = text;
    for (size_t k = 0; k < i; k++) {
        p = strchr(p, '\n');
        assert_non_null(p);
        p++;
    }
    json_t *v = json_loadb(p, (size_t)(strchr(p, '\n') - p), 0, NULL);
    assert_non_null(v);
    return v;
}

static void test_base_and_named_adapter(void **state)
{
    (void)state;
    char *out, args[1200];
    size_t len;
    snprintf(args, sizeof args, "--adapter plain='%s/adapter_plain' --max-new-tokens 8", fixture);
    int rc = gen(args,
                 "{\"id\": \"r1\", \"input_ids\": [11], \"adapter\": \"plain\"}\n\n"
                 "{\"id\": 7, \"input_ids\": [5, 17, 42, 9, 100, 3, 77]}\n",
                 &out, &len);
    assert_int_equal(rc, 0);
    json_t *a = row(out, 0), *b = row(out, 1);
    assert_string_equal(json_string_value(json_object_get(a, "id")), "r1");
    assert_int_equal(json_integer_value(json_object_get(b, "id")), 7);
    json_t *ea = expected_ids(1, 1), *eb = expected_ids(0, 0);
    assert_true(json_equal(json_object_get(a, "output_ids"), ea));
    assert_true(json_equal(json_object_get(b, "output_ids"), eb));
    assert_int_equal(json_integer_value(json_object_get(b, "prompt_tokens")), 7);
    assert_true(json_is_null(json_object_get(b, "text"))); /* no tokenizer.json in the fixture */
    json_decref(a), json_decref(b), json_decref(ea), json_decref(eb);
    ny_free(out);
}

static void test_unnamed_adapter_ignore_eos_logits(void **state)
{
    (void)state;
    char *out, args[1200];
    size_t len;
    snprintf(args, sizeof args, "--adapter '%s/adapter_rslora' --max-new-tokens 10 --ignore-eos "
             "--first-logits", fixture);
    assert_int_equal(gen(args, "{\"id\":1,\"input_ids\":[11]}\n{\"id\":2,\"input_ids\":[11],"
                               "\"adapter\":null}\n", &out, &len), 0);
    json_t *a = row(out, 0), *b = row(out, 1);
    assert_int_equal(json_array_size(json_object_get(a, "output_ids")), 10);
    assert_int_equal(json_array_size(json_object_get(a, "first_logits")), 256);
    json_t *ea = expected_ids(2, 1), *eb = expected_ids(0, 1); /* rslora and base, prompt [11] */
    for (size_t k = 0; k < json_array_size(ea); k++)
        assert_int_equal(json_integer_value(json_array_get(json_object_get(a, "output_ids"), k)),
                         json_integer_value(json_array_get(ea, k)));
    for (size_t k = 0; k < json_array_size(eb); k++)
        assert_int_equal(json_integer_value(json_array_get(json_object_get(b, "output_ids"), k)),
                         json_integer_value(json_array_get(eb, k)));
    json_decref(a), json_decref(b), json_decref(ea), json_decref(eb);
    ny_free(out);
}

static void test_bad_requests(void **state)
{
    (void)state;
    const char *bad[] = {
        "{\"id\":1,\"input_ids\":[1]}\n{\"id\":2,\"input_ids\":[1,\n",     /* malformed JSON */
        "{\"input_ids\":[1]}\n",                                           /* no id */
        "{\"id\":1,\"input_ids\":[1],\"prompt\":\"x\"}\n",                 /* two inputs */
        "{\"id\":1,\"input_ids\":[]}\n",                                   /* empty */
        "{\"id\":1,\"input_ids\":[1,\"2\"]}\n",                            /* not an id */
        "{\"id\":1,\"input_ids\":[256]}\n",                                /* beyond the vocab */
        "{\"id\":1,\"input_ids\":[1],\"adapter\":\"nope\"}\n",             /* unknown adapter */
        "{\"id\":1,\"prompt\":\"hello\"}\n",                               /* no tokenizer */
        "[1,2]\n",                                                         /* not an object */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *out;
        size_t len;
        int rc = gen("--max-new-tokens 2", bad[i], &out, &len);
        if (rc != 2 || len != 0)
            fail_msg("request set %zu: exit %d with %zu bytes of output", i, rc, len);
        ny_free(out);
    }
    char *out;
    size_t len;
    assert_int_equal(gen("--max-new-tokens 0", "{\"id\":1,\"input_ids\":[1]}\n", &out, &len), 2);
    ny_free(out);
    assert_int_equal(gen("--device cuda", "{\"id\":1,\"input_ids\":[1]}\n", &out, &len), 2);
    ny_free(out);
    assert_int_equal(gen("--adapter /nonexistent", "{\"id\":1,\"input_ids\":[1]}\n", &out, &len),
                     2);
    ny_free(out);
}

/* messages and prompt rows (golden/harness/tiny/base has a tokenizer.json): the prompt ids are
 * the chat template's and the tokenizer's (with BOS), the ids match the same request given as
 * input_ids, and "text" is the decoded output. */
static void test_messages_and_prompt(void **state)
{
    (void)state;
    const char *src = getenv("NY_SOURCE_DIR");
    char tiny[1024], tokp[1100], args[1200];
    snprintf(tiny, sizeof tiny, "%s/golden/harness/tiny/base", src ? src : ".");
    snprintf(tokp, sizeof tokp, "%s/tokenizer.json", tiny);
    struct engine_tokenizer *tok;
    assert_int_equal(engine_tokenizer_open(tokp, &tok, NULL), NY_OK);
    json_t *msgs = json_loads("[{\"role\":\"user\",\"content\":\"CT head.\"}]", 0, NULL);
    int32_t *chat, *plain;
    size_t n_chat, n_plain;
    assert_int_equal(engine_chat_encode_json(tok, msgs, 1, "t", &chat, &n_chat, NULL), NY_OK);
    assert_int_equal(engine_tokenizer_encode(tok, "CT chest", 8, 1, &plain, &n_plain, NULL), NY_OK);
    struct ny_buf req;
    ny_buf_init(&req);
    ny_buf_printf(&req, "{\"id\":1,\"messages\":[{\"role\":\"user\",\"content\":\"CT head.\"}]}\n"
                        "{\"id\":2,\"prompt\":\"CT chest\"}\n{\"id\":3,\"input_ids\":[");
    for (size_t k = 0; k < n_chat; k++)
        ny_buf_printf(&req, "%s%d", k ? "," : "", chat[k]);
    ny_buf_printf(&req, "]}\n");
    snprintf(fixture, sizeof fixture, "%s", tiny); /* gen() runs --model fixture */
    snprintf(args, sizeof args, "--max-new-tokens 6");
    char *out;
    size_t len;
    assert_int_equal(gen(args, req.data, &out, &len), 0);
    json_t *a = row(out, 0), *b = row(out, 1), *c = row(out, 2);
    assert_int_equal(json_integer_value(json_object_get(a, "prompt_tokens")), n_chat);
    assert_int_equal(json_integer_value(json_object_get(b, "prompt_tokens")), n_plain);
    assert_true(json_equal(json_object_get(a, "output_ids"), json_object_get(c, "output_ids")));
    json_t *ids = json_object_get(a, "output_ids");
    int32_t got[16];
    size_t n = json_array_size(ids);
    for (size_t k = 0; k < n && k < 16; k++)
        got[k] = (int32_t)json_integer_value(json_array_get(ids, k));
    char *text;
    size_t tl;
    assert_int_equal(engine_tokenizer_decode(tok, got, n, 1, &text, &tl, NULL), NY_OK);
    assert_string_equal(json_string_value(json_object_get(a, "text")), text);
    ny_free(text);
    json_decref(a), json_decref(b), json_decref(c), json_decref(msgs);
    ny_free(out);
    ny_free(chat);
    ny_free(plain);
    ny_buf_fini(&req);
    engine_tokenizer_close(tok);
}

/* --tp 2 and --tp 4 on the CPU (the sharding the GPUs use): the same ids as transformers, with
 * a named adapter mixed in; a tp that does not fit the model is a usage error. */
static void test_tensor_parallel(void **state)
{
    (void)state;
    char *out, args[1200];
    size_t len;
    for (int tp = 2; tp <= 4; tp += 2) {
        snprintf(args, sizeof args, "--tp %d --adapter plain='%s/adapter_plain' "
                 "--max-new-tokens 8", tp, fixture);
        assert_int_equal(gen(args, "{\"id\": 1, \"input_ids\": [11], \"adapter\": \"plain\"}\n"
                                   "{\"id\": 2, \"input_ids\": [5, 17, 42, 9, 100, 3, 77]}\n",
                             &out, &len), 0);
        json_t *a = row(out, 0), *b = row(out, 1);
        json_t *ea = expected_ids(1, 1), *eb = expected_ids(0, 0);
        assert_true(json_equal(json_object_get(a, "output_ids"), ea));
        assert_true(json_equal(json_object_get(b, "output_ids"), eb));
        json_decref(a), json_decref(b), json_decref(ea), json_decref(eb);
        ny_free(out);
    }
    assert_int_equal(gen("--tp 3", "{\"id\": 1, \"input_ids\": [11]}\n", &out, &len), 2);
    ny_free(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_base_and_named_adapter, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unnamed_adapter_ignore_eos_logits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_requests, setup, teardown),
        cmocka_unit_test_setup_teardown(test_messages_and_prompt, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tensor_parallel, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
