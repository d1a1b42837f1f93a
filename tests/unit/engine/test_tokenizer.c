/* test_tokenizer.c — the tokenizer on small hand-made tokenizer.json files: merges by rank,
 * ignore_merges, added tokens (longest first), the pre-tokenizer, the post-processor, decoding
 * (lossy UTF-8), the regex rewrite, and every refused or malformed file. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "tokenizer_int.h"

static char tmpdir[] = "/tmp/ny_tok_XXXXXX";
static char path[256];

/* GPT-2's byte-level alphabet, written independently of the engine's table. */
static void byte_char(int b, char out[3])
{
    int n = 0, cp = -1;
    for (int x = 0; x < 256; x++) {
        int keep = (x >= 33 && x <= 126) || (x >= 161 && x <= 172) || (x >= 174 && x <= 255);
        int c = keep ? x : 256 + n++;
        if (x == b)
            cp = c;
    }
    memset(out, 0, 3);
    if (cp < 0x80) {
        out[0] = (char)cp;
    } else {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
    }
}

enum { ID_HE = 256, ID_LL, ID_HELL, ID_HELLO, ID_AB, ID_BC, ID_ABC, ID_BOS, ID_X, ID_XY, ID_N };

/* Vocabulary: the 256 byte characters (id = byte), then a few merged tokens; added tokens
 * <|begin_of_text|> (special), <x> (special) and <x>y (not special, normalized). */
static json_t *base(void)
{
    json_t *vocab = json_object();
    for (int b = 0; b < 256; b++) {
        char c[3];
        byte_char(b, c);
        json_object_set_new(vocab, c, json_integer(b));
    }
    const char *extra[] = {"he", "ll", "hell", "hello", "ab", "bc", "abc"};
    for (int i = 0; i < 7; i++)
        json_object_set_new(vocab, extra[i], json_integer(ID_HE + i));
    json_t *merges =
        json_pack("[s,s,s,s,s,s,[s,s]]", "h e", "l l", "he ll", "hell o", "b c", "a b", "a", "bc");
    json_t *added = json_pack("[{s:i,s:s,s:b,s:b},{s:i,s:s,s:b,s:b},{s:i,s:s,s:b,s:b}]", "id",
                              ID_BOS, "content", "<|begin_of_text|>", "special", 1, "normalized", 0,
                              "id", ID_X, "content", "<x>", "special", 1, "normalized", 0, "id",
                              ID_XY, "content", "<x>y", "special", 0, "normalized", 1);
    return json_pack("{s:s,s:n,s:n,s:o,s:n,s:{s:s,s:b,s:b},s:o,s:{s:s,s:b,s:b},s:{s:s,s:o,s:o}}",
                     "version", "1.0", "truncation", "padding", "added_tokens", added, "normalizer",
                     "pre_tokenizer", "type", "ByteLevel", "add_prefix_space", 0, "use_regex", 1,
                     "post_processor",
                     json_pack("{s:s,s:[{s:{s:s,s:i}},{s:{s:s,s:i}}],s:{s:{s:s,s:[i],s:[s]}}}",
                               "type", "TemplateProcessing", "single", "SpecialToken", "id",
                               "<|begin_of_text|>", "type_id", 0, "Sequence", "id", "A", "type_id",
                               0, "special_tokens", "<|begin_of_text|>", "id", "<|begin_of_text|>",
                               "ids", ID_BOS, "tokens", "<|begin_of_text|>"),
                     "decoder", "type", "ByteLevel", "add_prefix_space", 1, "trim_offsets", 1,
                     "model", "type", "BPE", "vocab", vocab, "merges", merges);
}

static void write_json(json_t *j)
{
    assert_int_equal(json_dump_file(j, path, JSON_COMPACT), 0);
    json_decref(j);
}

static void write_text(const char *name, const char *s)
{
    char p[300];
    snprintf(p, sizeof p, "%s/%s", tmpdir, name);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fputs(s, f);
    fclose(f);
}

static struct engine_tokenizer *open_ok(json_t *j)
{
    write_json(j);
    struct engine_tokenizer *t = NULL;
    struct ny_err err;
    ny_err_init(&err);
    int rc = engine_tokenizer_open(path, &t, &err);
    if (rc)
        fail_msg("open: %s", err.msg);
    return t;
}

/* Opening must fail with `code` and a message containing `needle`. */
static void open_fails(json_t *j, int code, const char *needle)
{
    write_json(j);
    struct engine_tokenizer *t = NULL;
    struct ny_err err;
    ny_err_init(&err);
    int rc = engine_tokenizer_open(path, &t, &err);
    if (rc != code || !strstr(err.msg, needle))
        fail_msg("want %d with \"%s\", got %d: %s", code, needle, rc, err.msg);
    assert_null(t);
}

static void encode_eq(struct engine_tokenizer *t, const char *text, int special,
                      const int32_t *want, size_t n_want)
{
    int32_t *ids = NULL;
    size_t n = 99;
    struct ny_err err;
    ny_err_init(&err);
    if (engine_tokenizer_encode(t, text, strlen(text), special, &ids, &n, &err))
        fail_msg("encode \"%s\": %s", text, err.msg);
    if (n != n_want)
        fail_msg("encode \"%s\": %zu ids, want %zu", text, n, n_want);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(ids[i], want[i]);
    ny_free(ids);
}
#define ENC(t, text, special, ...)                                                                 \
    do {                                                                                           \
        const int32_t w_[] = {__VA_ARGS__};                                                        \
        encode_eq(t, text, special, w_, sizeof w_ / sizeof w_[0]);                                 \
    } while (0)

static int setup(void **state)
{
    (void)state;
    if (!mkdtemp(tmpdir))
        return -1;
    snprintf(path, sizeof path, "%s/tokenizer.json", tmpdir);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char p[300];
    snprintf(p, sizeof p, "%s/tokenizer_config.json", tmpdir);
    unlink(p);
    unlink(path);
    rmdir(tmpdir);
    return 0;
}

static void test_merges_by_rank(void **state)
{
    (void)state;
    struct engine_tokenizer *t = open_ok(base());
    assert_int_equal(engine_tokenizer_vocab_size(t), ID_N);
    ENC(t, "hello", 0, ID_HELLO);
    ENC(t, "hell", 0, ID_HELL);
    ENC(t, "helo", 0, ID_HE, 'l', 'o');
    /* "b c" (rank 4) comes before "a b" (rank 5): a|bc, then the pair-form merge "a bc". */
    ENC(t, "abc", 0, ID_ABC);
    ENC(t, "ab", 0, ID_AB);
    /* The GPT-2 split keeps the space with the word: " hello" is Ġ + hello, no merge across. */
    ENC(t, "hello hello", 0, ID_HELLO, ' ', ID_HELLO);
    engine_tokenizer_close(t);
}

static void test_merge_order_changes_result(void **state)
{
    (void)state;
    json_t *j = base();
    /* Put "a b" first: abc becomes ab|c, and there is no merge "ab c". */
    json_t *m = json_object_get(json_object_get(j, "model"), "merges");
    json_array_set_new(m, 4, json_string("a b"));
    json_array_set_new(m, 5, json_string("b c"));
    struct engine_tokenizer *t = open_ok(j);
    ENC(t, "abc", 0, ID_AB, 'c');
    engine_tokenizer_close(t);
}

static void test_ignore_merges(void **state)
{
    (void)state;
    json_t *j = base();
    /* Without merges, a piece that is a whole token is taken as is only with ignore_merges. */
    json_object_set_new(json_object_get(j, "model"), "merges", json_array());
    json_object_set_new(json_object_get(j, "model"), "ignore_merges", json_true());
    struct engine_tokenizer *t = open_ok(j);
    ENC(t, "hello", 0, ID_HELLO);
    ENC(t, "helo", 0, 'h', 'e', 'l', 'o');
    engine_tokenizer_close(t);
    j = base();
    json_object_set_new(json_object_get(j, "model"), "merges", json_array());
    t = open_ok(j);
    ENC(t, "hello", 0, 'h', 'e', 'l', 'l', 'o');
    engine_tokenizer_close(t);
}

static void test_added_tokens(void **state)
{
    (void)state;
    struct engine_tokenizer *t = open_ok(base());
    /* Raw (normalized=false) tokens are cut first: "<x>" wins over the normalized "<x>y". */
    ENC(t, "<x>y", 0, ID_X, 'y');
    ENC(t, "a<|begin_of_text|>hello<x>", 0, 'a', ID_BOS, ID_HELLO, ID_X);
    ENC(t, "<|begin_of_text", 0, '<', '|', 'b', 'e', 'g', 'i', 'n', '_', 'o', 'f', '_', 't', 'e',
        'x', 't');
    assert_int_equal(engine_tokenizer_token_id(t, "<x>y"), ID_XY);
    assert_int_equal(engine_tokenizer_token_id(t, "hello"), ID_HELLO);
    assert_int_equal(engine_tokenizer_token_id(t, "nope"), -1);
    assert_string_equal(engine_tokenizer_token_str(t, ID_BOS), "<|begin_of_text|>");
    assert_null(engine_tokenizer_token_str(t, ID_N));
    engine_tokenizer_close(t);
    /* With <x> removed, the longest match "<x>y" is taken. */
    json_t *j = base();
    json_array_remove(json_object_get(j, "added_tokens"), 1);
    json_object_set_new(json_object_get(json_object_get(j, "model"), "vocab"), "xx",
                        json_integer(ID_X));
    t = open_ok(j);
    ENC(t, "<x>y<x>", 0, ID_XY, '<', 'x', '>');
    engine_tokenizer_close(t);
}

static void test_post_processor(void **state)
{
    (void)state;
    struct engine_tokenizer *t = open_ok(base());
    ENC(t, "hello", 1, ID_BOS, ID_HELLO);
    ENC(t, "hello", 0, ID_HELLO);
    int32_t *ids = NULL;
    size_t n = 7;
    assert_int_equal(engine_tokenizer_encode(t, "", 0, 1, &ids, &n, NULL), 0);
    assert_int_equal(n, 1);
    assert_int_equal(ids[0], ID_BOS);
    ny_free(ids);
    engine_tokenizer_close(t);
    /* A ByteLevel post-processor (as the Llama-3 file has) adds nothing. */
    json_t *j = base();
    json_object_set_new(j, "post_processor", json_pack("{s:s}", "type", "ByteLevel"));
    t = open_ok(j);
    ENC(t, "hello", 1, ID_HELLO);
    engine_tokenizer_close(t);
}

static void test_prefix_space(void **state)
{
    (void)state;
    json_t *j = base();
    json_object_set_new(json_object_get(j, "pre_tokenizer"), "add_prefix_space", json_true());
    struct engine_tokenizer *t = open_ok(j);
    /* Each segment between added tokens gets its own space (Ġ is byte 0x20's character). */
    ENC(t, "hello<x>hello", 0, ' ', ID_HELLO, ID_X, ' ', ID_HELLO);
    ENC(t, " hello", 0, ' ', ID_HELLO);
    engine_tokenizer_close(t);
}

static void test_invalid_utf8_input(void **state)
{
    (void)state;
    struct engine_tokenizer *t = open_ok(base());
    int32_t *ids = (int32_t *)1;
    size_t n = 5;
    struct ny_err err;
    ny_err_init(&err);
    assert_int_equal(engine_tokenizer_encode(t, "abc\xc3(", 5, 0, &ids, &n, &err), NY_E_INVALID);
    assert_non_null(strstr(err.msg, "byte offset 3"));
    assert_ptr_equal(ids, (int32_t *)1); /* outputs untouched on failure */
    assert_int_equal(n, 5);
    engine_tokenizer_close(t);
}

static void decode_eq(struct engine_tokenizer *t, const int32_t *ids, size_t n, int skip,
                      const char *want)
{
    char *text = NULL;
    size_t len = 0;
    struct ny_err err;
    ny_err_init(&err);
    if (engine_tokenizer_decode(t, ids, n, skip, &text, &len, &err))
        fail_msg("decode: %s", err.msg);
    assert_int_equal(len, strlen(want));
    assert_memory_equal(text, want, len);
    ny_free(text);
}

static void test_decode(void **state)
{
    (void)state;
    struct engine_tokenizer *t = open_ok(base());
    const int32_t a[] = {ID_BOS, ID_HELLO, ' ', ID_HE, ID_X};
    decode_eq(t, a, 5, 0, "<|begin_of_text|>hello he<x>");
    decode_eq(t, a, 5, 1, "hello he");
    /* Lossy UTF-8: a truncated 4-byte sequence is one U+FFFD, a bad lead byte one each. */
    const int32_t b[] = {0xF0, 0x9F, 0x98, 'x', 0xFF, 0xC3, '(', 0xE0, 0x80};
    decode_eq(t, b, 9, 0, "\xEF\xBF\xBDx\xEF\xBF\xBD\xEF\xBF\xBD(\xEF\xBF\xBD\xEF\xBF\xBD");
    const int32_t c[] = {0xF0, 0x9F, 0x98, 0x80};
    decode_eq(t, c, 4, 0, "\xF0\x9F\x98\x80");
    decode_eq(t, c, 0, 0, "");
    const int32_t bad[] = {1, ID_N};
    char *text = (char *)1;
    size_t len = 3;
    struct ny_err err;
    ny_err_init(&err);
    assert_int_equal(engine_tokenizer_decode(t, bad, 2, 0, &text, &len, &err), NY_E_RANGE);
    assert_non_null(strstr(err.msg, "position 1"));
    assert_ptr_equal(text, (char *)1);
    engine_tokenizer_close(t);
}

static void test_config(void **state)
{
    (void)state;
    struct engine_tokenizer *t = open_ok(base());
    assert_int_equal(engine_tokenizer_bos_id(t), -1);
    engine_tokenizer_close(t);
    write_text("tokenizer_config.json", "{\"bos_token\": {\"content\": \"<|begin_of_text|>\"}, "
                                        "\"eos_token\": \"<x>\", \"model_max_length\": "
                                        "1000000000000000019884624838656}");
    t = open_ok(base());
    assert_int_equal(engine_tokenizer_bos_id(t), ID_BOS);
    assert_int_equal(engine_tokenizer_eos_id(t), ID_X);
    engine_tokenizer_close(t);
    write_text("tokenizer_config.json", "{\"bos_token\": \"<nope>\"}");
    open_fails(base(), NY_E_FORMAT, "tokenizer_config.json: field \"bos_token\"");
    write_text("tokenizer_config.json", "{\"bos_token\": ");
    open_fails(base(), NY_E_FORMAT, "tokenizer_config.json: malformed JSON");
    char p[300];
    snprintf(p, sizeof p, "%s/tokenizer_config.json", tmpdir);
    unlink(p);
}

/* ---- refused and malformed files ----------------------------------------------------------- */

static json_t *with(json_t *j, const char *obj, const char *key, json_t *v)
{
    json_t *o = obj ? json_object_get(j, obj) : j;
    json_object_set_new(o, key, v);
    return j;
}

static void test_refused_features(void **state)
{
    (void)state;
    open_fails(with(base(), "model", "type", json_string("WordPiece")), NY_E_UNSUPPORTED,
               "field \"model.type\"");
    open_fails(with(base(), NULL, "normalizer", json_pack("{s:s}", "type", "NFC")),
               NY_E_UNSUPPORTED, "field \"normalizer\"");
    open_fails(with(base(), NULL, "truncation", json_object()), NY_E_UNSUPPORTED,
               "field \"truncation\"");
    open_fails(with(base(), NULL, "decoder", json_pack("{s:s}", "type", "WordPiece")),
               NY_E_UNSUPPORTED, "field \"decoder\"");
    open_fails(with(base(), NULL, "pre_tokenizer", json_pack("{s:s}", "type", "Whitespace")),
               NY_E_UNSUPPORTED, "field \"pre_tokenizer.type\"");
    open_fails(with(base(), NULL, "pre_tokenizer", json_null()), NY_E_UNSUPPORTED,
               "field \"pre_tokenizer\"");
    open_fails(with(base(), "model", "byte_fallback", json_true()), NY_E_UNSUPPORTED,
               "byte_fallback");
    open_fails(with(base(), NULL, "post_processor", json_pack("{s:s}", "type", "BertProcessing")),
               NY_E_UNSUPPORTED, "field \"post_processor.type\"");
    json_t *split = json_pack("{s:s,s:{s:s},s:s}", "type", "Split", "pattern", "Regex", "a",
                              "behavior", "Removed");
    json_t *seq = json_pack("{s:s,s:[o,{s:s,s:b}]}", "type", "Sequence", "pretokenizers", split,
                            "type", "ByteLevel", "use_regex", 0);
    open_fails(with(base(), NULL, "pre_tokenizer", seq), NY_E_UNSUPPORTED,
               "pre_tokenizer.pretokenizers[0].behavior");
    json_t *j = base();
    json_object_set_new(json_array_get(json_object_get(j, "added_tokens"), 0), "lstrip",
                        json_true());
    open_fails(j, NY_E_UNSUPPORTED, "added_tokens[0].lstrip");
}

static void test_malformed(void **state)
{
    (void)state;
    write_text("tokenizer.json", "{\"model\": {\"vocab\": {\"a\": 0");
    struct engine_tokenizer *t = NULL;
    struct ny_err err;
    ny_err_init(&err);
    assert_int_equal(engine_tokenizer_open(path, &t, &err), NY_E_FORMAT);
    assert_non_null(strstr(err.msg, "malformed JSON"));
    write_text("tokenizer.json", "[1, 2]");
    assert_int_equal(engine_tokenizer_open(path, &t, &err), NY_E_FORMAT);
    write_text("tokenizer.json", "{\"model\": {\"vocab\": {\"a\": 0}}, \"x\": \"\xff\"}");
    assert_int_equal(engine_tokenizer_open(path, &t, &err), NY_E_FORMAT);
    assert_non_null(strstr(err.msg, "invalid UTF-8"));
    assert_int_equal(engine_tokenizer_open("/nonexistent/tokenizer.json", &t, &err), NY_E_NOTFOUND);
    assert_non_null(strstr(err.msg, "/nonexistent/tokenizer.json"));
    assert_null(t);

    open_fails(with(base(), "model", "vocab", json_array()), NY_E_FORMAT, "\"model.vocab\"");
    open_fails(with(base(), "model", "merges", json_string("a b")), NY_E_FORMAT,
               "\"model.merges\"");
    json_t *j = base();
    json_object_set_new(json_object_get(json_object_get(j, "model"), "vocab"), "zz",
                        json_string("7"));
    open_fails(j, NY_E_FORMAT, "not an integer");
    j = base();
    json_object_set_new(json_object_get(json_object_get(j, "model"), "vocab"), "zz",
                        json_integer(1 << 30));
    open_fails(j, NY_E_FORMAT, "out of range");
    j = base();
    json_object_set_new(json_object_get(json_object_get(j, "model"), "vocab"), "zz",
                        json_integer(-1));
    open_fails(j, NY_E_FORMAT, "out of range");
    j = base();
    json_object_set_new(json_object_get(json_object_get(j, "model"), "vocab"), "zz",
                        json_integer(ID_HE));
    open_fails(j, NY_E_FORMAT, "is given to both");
    j = base();
    json_object_set_new(json_object_get(json_object_get(j, "model"), "vocab"), "zz",
                        json_integer(ID_N + 5));
    open_fails(j, NY_E_FORMAT, "without gaps");
    j = base();
    json_array_append_new(json_object_get(json_object_get(j, "model"), "merges"),
                          json_string("q unknown"));
    open_fails(j, NY_E_FORMAT, "\"unknown\" is not in the vocabulary");
    j = base();
    json_array_append_new(json_object_get(json_object_get(j, "model"), "merges"),
                          json_string("h l"));
    open_fails(j, NY_E_FORMAT, "\"hl\" is not in the vocabulary");
    j = base();
    json_array_append_new(json_object_get(json_object_get(j, "model"), "merges"),
                          json_string("abc"));
    open_fails(j, NY_E_FORMAT, "model.merges[7]");
    j = base();
    json_array_append_new(json_object_get(json_object_get(j, "model"), "merges"),
                          json_pack("[s,i]", "a", 1));
    open_fails(j, NY_E_FORMAT, "model.merges[7]");
    j = base();
    json_object_set_new(json_array_get(json_object_get(j, "added_tokens"), 1), "id",
                        json_integer(ID_BOS));
    open_fails(j, NY_E_FORMAT, "is used twice");
    j = base();
    json_object_set_new(json_array_get(json_object_get(j, "added_tokens"), 1), "id",
                        json_integer(ID_HE));
    open_fails(j, NY_E_FORMAT, "which the vocabulary gives to");
    j = base();
    json_object_set_new(json_array_get(json_object_get(j, "added_tokens"), 1), "content",
                        json_integer(3));
    open_fails(j, NY_E_FORMAT, "added_tokens[1]");
    j = base();
    json_t *single = json_object_get(json_object_get(j, "post_processor"), "single");
    json_array_remove(single, 1);
    open_fails(j, NY_E_FORMAT, "no sequence \"A\"");
    j = base();
    json_t *sp = json_object_get(json_object_get(j, "post_processor"), "special_tokens");
    json_object_set_new(json_object_get(sp, "<|begin_of_text|>"), "ids", json_pack("[i]", 99999));
    open_fails(j, NY_E_FORMAT, "is not a token id");
    json_t *split = json_pack("{s:s,s:{s:s},s:s}", "type", "Split", "pattern", "Regex", "(ab",
                              "behavior", "Isolated");
    json_t *seq = json_pack("{s:s,s:[o,{s:s,s:b}]}", "type", "Sequence", "pretokenizers", split,
                            "type", "ByteLevel", "use_regex", 0);
    open_fails(with(base(), NULL, "pre_tokenizer", seq), NY_E_FORMAT, "does not compile");
}

/* ---- the regex rewrite ------------------------------------------------------------------------
 */

static int full_match(const char *pattern, const char *subject)
{
    pcre2_code *re = NULL;
    struct ny_err err;
    ny_err_init(&err);
    char anchored[256];
    snprintf(anchored, sizeof anchored, "^(?:%s)$", pattern);
    if (tok_regex_compile(anchored, strlen(anchored), "test", &re, &err))
        fail_msg("compile %s: %s", pattern, err.msg);
    pcre2_match_data *md = pcre2_match_data_create(2, NULL);
    int rc = pcre2_match(re, (PCRE2_SPTR)subject, strlen(subject), 0, 0, md, NULL);
    pcre2_match_data_free(md);
    pcre2_code_free(re);
    return rc >= 0;
}

static void test_regex(void **state)
{
    (void)state;
    assert_true(full_match("(?i:'s|'t)", "'S"));
    assert_true(full_match("(?i:'s|'t)", "'t"));
    assert_false(full_match("(?i:'s|'t)", "'\xc5\xbf"));   /* long s: Oniguruma does not fold it */
    assert_false(full_match("(?i:a)b", "aB"));             /* the group ends the caselessness */
    assert_true(full_match("\\p{L}+", "a\xe1\xb2\x89"));   /* U+1C89, a letter since Unicode 16 */
    assert_true(full_match("\\p{N}", "\xf0\x9f\xaf\xb0")); /* U+1FBF0 (Unicode 13) */
    assert_true(full_match("\\p{N}", "\xf0\x9c\xb3\xb0")); /* U+1CCF0, Unicode 16 */
    assert_false(full_match("\\s", "\xe1\xa0\x8e"));       /* U+180E is not space there */
    assert_true(full_match("\\s", "\xc2\x85"));            /* U+0085 is */
    assert_true(full_match("\\s\\S", "\xe3\x80\x80x"));
    assert_true(full_match("[^\\s\\p{L}]+", "!?"));
    assert_false(full_match("[^\\s\\p{L}]+", "!\xe1\xb2\x89"));
    assert_true(full_match("\\x{41}[\\]a]", "A]"));
    const char *refused[] = {"\\w",   "\\d+",          "\\p{Lu}",     "(?i)a",
                             "[\\S]", "(?i:\xc3\xa9)", "[[:alpha:]]", "(?i:[a-z])"};
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        pcre2_code *re = NULL;
        struct ny_err err;
        ny_err_init(&err);
        assert_int_equal(tok_regex_compile(refused[i], strlen(refused[i]), "p", &re, &err),
                         NY_E_UNSUPPORTED);
        assert_null(re);
    }
}

/* ---- concurrent use ------------------------------------------------------------------------- */

static const char *const thread_texts[] = {"hello hello<x>y", "abc ab <|begin_of_text|>hell",
                                           "h\xc3\xa9llo w\xf0\x9f\x98\x80rld  \r\n 123"};

struct thread_arg {
    struct engine_tokenizer *t;
    int32_t *want[3];
    size_t n_want[3];
    int bad;
};

static void *thread_main(void *p)
{
    struct thread_arg *a = p;
    for (int rep = 0; rep < 300; rep++) {
        size_t k = (size_t)rep % 3, n = 0;
        int32_t *ids = NULL;
        if (engine_tokenizer_encode(a->t, thread_texts[k], strlen(thread_texts[k]), 1, &ids, &n,
                                    NULL) ||
            n != a->n_want[k] || memcmp(ids, a->want[k], n * sizeof *ids) != 0)
            a->bad++;
        ny_free(ids);
    }
    return NULL;
}

static void test_threads(void **state)
{
    (void)state;
    struct engine_tokenizer *t = open_ok(base());
    struct thread_arg args[4];
    for (int i = 0; i < 4; i++) {
        args[i] = (struct thread_arg){.t = t};
        for (size_t k = 0; k < 3; k++)
            assert_int_equal(engine_tokenizer_encode(t, thread_texts[k], strlen(thread_texts[k]), 1,
                                                     &args[i].want[k], &args[i].n_want[k], NULL),
                             0);
    }
    pthread_t th[4];
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&th[i], NULL, thread_main, &args[i]), 0);
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(args[i].bad, 0);
        for (size_t k = 0; k < 3; k++)
            ny_free(args[i].want[k]);
    }
    engine_tokenizer_close(t);
}

/* ---- the fast JSON path, its fallback, and damaged files ---------------------------------------
 */

static char *read_small(size_t *len)
{
    const char *src = getenv("NY_SOURCE_DIR");
    char *p = ny_path_join(src ? src : ".", "golden/tokenizer/small/tokenizer.json"), *data = NULL;
    assert_int_equal(ny_file_read(p, (size_t)1 << 26, &data, len, NULL), 0);
    ny_free(p);
    return data;
}

static void write_bytes(const char *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    fclose(f);
}

/* Ids of a fixed text through the tokenizer in `path`, or NULL when it does not open. */
static int32_t *ids_via_file(size_t *n, struct ny_err *err)
{
    struct engine_tokenizer *t = NULL;
    if (engine_tokenizer_open(path, &t, err))
        return NULL;
    const char *text = "CT head w/o contrast 70450, R51.9 \xe2\x80\x94 it's <|eot_id|> 123456";
    int32_t *ids = NULL;
    assert_int_equal(engine_tokenizer_encode(t, text, strlen(text), 1, &ids, n, NULL), 0);
    engine_tokenizer_close(t);
    return ids;
}

static void test_fast_path_and_fallback(void **state)
{
    (void)state;
    size_t len, n0, n;
    char *data = read_small(&len);
    write_bytes(data, len);
    int32_t *want = ids_via_file(&n0, NULL), *got;
    assert_non_null(want);
    /* Pretty-printed (new lines and indentation inside the vocabulary and merges). */
    json_t *j = json_loadb(data, len, 0, NULL);
    assert_non_null(j);
    assert_int_equal(json_dump_file(j, path, JSON_INDENT(3)), 0);
    json_decref(j);
    got = ids_via_file(&n, NULL);
    assert_non_null(got);
    assert_int_equal(n, n0);
    assert_memory_equal(got, want, n * sizeof *got);
    ny_free(got);
    /* An escaped key: the scan does not recognise "model", jansson reads it. */
    char *key = strstr(data, "\"model\"");
    assert_non_null(key);
    struct ny_buf b;
    ny_buf_init(&b);
    ny_buf_append(&b, data, (size_t)(key - data));
    ny_buf_puts(&b, "\"mod\\u0065l\"");
    ny_buf_append(&b, key + 7, len - (size_t)(key + 7 - data));
    write_bytes(b.data, b.len);
    got = ids_via_file(&n, NULL);
    assert_non_null(got);
    assert_int_equal(n, n0);
    assert_memory_equal(got, want, n * sizeof *got);
    ny_free(got);
    ny_buf_fini(&b);
    ny_free(want);
    ny_free(data);
}

static void test_damaged_files(void **state)
{
    (void)state;
    size_t len;
    char *data = read_small(&len);
    char *copy = ny_malloc(len);
    uint32_t seed = 12345;
    for (int i = 0; i < 120; i++) {
        seed = seed * 1103515245u + 12345u;
        size_t cut = (size_t)(seed >> 8) % len;
        write_bytes(data, cut); /* truncated: always an error, never a crash */
        struct ny_err err;
        ny_err_init(&err);
        size_t n;
        int32_t *ids = ids_via_file(&n, &err);
        assert_null(ids);
        assert_true(err.code != 0 && err.msg[0]);
    }
    static const char junk[] = "{}[],:\"\\0 a-\x01\xff";
    for (int i = 0; i < 200; i++) {
        memcpy(copy, data, len);
        for (int k = 0; k < 3; k++) {
            seed = seed * 1103515245u + 12345u;
            copy[(seed >> 8) % len] = junk[(seed >> 3) % (sizeof junk - 1)];
        }
        write_bytes(copy, len); /* damaged: an error or a working tokenizer, never a crash */
        struct ny_err err;
        ny_err_init(&err);
        size_t n;
        int32_t *ids = ids_via_file(&n, &err);
        assert_true(ids != NULL || (err.code != 0 && err.msg[0]));
        ny_free(ids);
    }
    ny_free(copy);
    ny_free(data);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_merges_by_rank),
        cmocka_unit_test(test_merge_order_changes_result),
        cmocka_unit_test(test_ignore_merges),
        cmocka_unit_test(test_added_tokens),
        cmocka_unit_test(test_post_processor),
        cmocka_unit_test(test_prefix_space),
        cmocka_unit_test(test_invalid_utf8_input),
        cmocka_unit_test(test_decode),
        cmocka_unit_test(test_config),
        cmocka_unit_test(test_refused_features),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_regex),
        cmocka_unit_test(test_threads),
        cmocka_unit_test(test_fast_path_and_fallback),
        cmocka_unit_test(test_damaged_files),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
