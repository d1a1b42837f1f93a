/* test_prompt.c — prompt assembly: byte-identical output across runs and stores, the section
 * order, explicit and embedded forms, candidate lists by votes, rule overrides, ready messages,
 * the JSONL row, and the budget rule (report cap; drop examples first, then trim the tail). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include <cmocka.h>

#include "datasets.h"
#include "pool.h"

#define EMB REC("q-emb", "XR CHEST 2 VIEWS", "cough", "EXAM: XR CHEST 2 VIEWS. Lungs clear.", \
                "71046, 26, R05.9", ",\"format\":\"embedded\"")
#define EMB2 REC("q-emb2", "XR CHEST 2 VIEWS", "cough", "Lungs clear. No effusion.",          \
                 "71046, 26, R05.9", ",\"format\":\"embedded\"")
#define READY "{\"id\":\"q-ready\",\"exam_description\":\"A\",\"reason\":\"B\",\"report\":\"C\"," \
              "\"messages\":[{\"role\":\"user\",\"content\":\"code this\"}]}\n"

static struct dataset_store *store(void)
{
    struct dataset_store *st = NULL;
    assert_int_equal(dataset_store_open(":memory:", &st, NULL), 0);
    const char *q = QUERY EMB EMB2 READY;
    assert_int_equal(dataset_store_import_buf(st, q, strlen(q), "q", "heldout", 0, NULL, NULL), 0);
    const char *pool = POOL;
    assert_int_equal(dataset_store_import_buf(st, pool, strlen(pool), "p", "train", 0, NULL, NULL),
                     0);
    return st;
}

static struct dataset_prompt *build(struct dataset_store *st, const char *id,
                                    const struct dataset_prompt_opts *o)
{
    struct dataset_prompt *p = NULL;
    struct ny_err err;
    ny_err_init(&err);
    if (dataset_prompt_build(st, id, o, &p, &err))
        fail_msg("%s", err.msg);
    return p;
}

/* The user message's content (heap). */
static char *user_of(const struct dataset_prompt *p)
{
    json_t *m = json_loads(p->messages_json, 0, NULL);
    assert_non_null(m);
    assert_int_equal(json_array_size(m), 2);
    assert_string_equal(json_string_value(json_object_get(json_array_get(m, 0), "role")),
                        "system");
    assert_string_equal(json_string_value(json_object_get(json_array_get(m, 0), "content")),
                        dataset_system_message());
    char *u = ny_strdup(json_string_value(json_object_get(json_array_get(m, 1), "content")));
    json_decref(m);
    return u;
}

static void test_deterministic(void **state)
{
    (void)state;
    struct dataset_store *a = store(), *b = store();
    struct dataset_prompt *p1 = build(a, "q", NULL), *p2 = build(a, "q", NULL),
                          *p3 = build(b, "q", NULL);
    assert_string_equal(p1->messages_json, p2->messages_json);
    assert_string_equal(p1->messages_json, p3->messages_json);
    char *r1 = dataset_prompt_jsonl(p1, NULL), *r3 = dataset_prompt_jsonl(p3, NULL);
    assert_string_equal(r1, r3);
    ny_free(r1);
    ny_free(r3);
    dataset_prompt_destroy(p1);
    dataset_prompt_destroy(p2);
    dataset_prompt_destroy(p3);
    dataset_store_close(a);
    dataset_store_close(b);
}

static void test_sections_and_forms(void **state)
{
    (void)state;
    struct dataset_store *st = store();
    struct dataset_prompt *p = build(st, "q", NULL);
    char *u = user_of(p);
    const char *ex = strstr(u, "Coded examples"), *cpt = strstr(u, "Candidate CPT codes: "),
               *icd = strstr(u, "Candidate ICD-10-CM codes: "), *rules = strstr(u, "Coding rules:"),
               *rep = strstr(u, "Report to code:\nExam Description: " Q_DESC
                                "\nReason for Exam: " Q_REASON "\n\n" Q_REPORT);
    assert_true(ex && cpt && icd && rules && rep);
    assert_true(ex < cpt && cpt < icd && icd < rules && rules < rep);
    /* the first example: exam, reason, impression excerpt and gold line of t-app */
    assert_non_null(strstr(u, "Example 1\nExam: " Q_DESC "\nReason: right lower quadrant pain\n"
                              "Impression: Acute appendicitis without perforation.\n"
                              "Codes: 74177, 26, K35.80\n"));
    assert_non_null(strstr(u, dataset_default_rules()));
    assert_string_equal(p->format, "explicit"); /* no format field: 7 in 10 ids; "q" is one */
    ny_free(u);
    dataset_prompt_destroy(p);
    /* embedded: the report as written when it names the exam, else exam and reason prefixed */
    p = build(st, "q-emb", NULL);
    u = user_of(p);
    assert_null(strstr(u, "Exam Description:"));
    assert_non_null(strstr(u, "Report to code:\nEXAM: XR CHEST 2 VIEWS. Lungs clear."));
    ny_free(u);
    dataset_prompt_destroy(p);
    p = build(st, "q-emb2", NULL);
    u = user_of(p);
    assert_non_null(strstr(u, "Report to code:\nXR CHEST 2 VIEWS. cough.\nLungs clear."));
    ny_free(u);
    dataset_prompt_destroy(p);
    dataset_store_close(st);
}

static void test_candidates_rules_ready(void **state)
{
    (void)state;
    struct dataset_store *st = store();
    struct dataset_prompt_opts o;
    dataset_prompt_opts_init(&o);
    o.K = 1;
    o.rules_text = "RULES-X";
    struct dataset_prompt *p = build(st, "q", &o);
    /* t-app (weight 1) and t-div (weight < 1) both vote 74177; K35.80 has the top weight */
    assert_string_equal(p->cpt_candidates, "74177");
    assert_string_equal(p->icd_candidates, "K35.80");
    char *u = user_of(p);
    assert_non_null(strstr(u, "Coding rules:\nRULES-X\n"));
    assert_null(strstr(u, dataset_default_rules()));
    ny_free(u);
    dataset_prompt_destroy(p);
    o.K = 10;
    p = build(st, "q", &o);
    assert_int_equal(strncmp(p->cpt_candidates, "74177, ", 7), 0);
    assert_int_equal(strncmp(p->icd_candidates, "K35.80, K57.32", 14), 0);
    dataset_prompt_destroy(p);
    p = build(st, "q-ready", NULL);
    assert_string_equal(p->format, "ready");
    assert_string_equal(p->messages_json, "[{\"content\":\"code this\",\"role\":\"user\"}]");
    assert_int_equal(p->nretrieved, 0);
    dataset_prompt_destroy(p);
    dataset_store_close(st);
}

/* Counter: one token per whitespace-separated word. */
static int count_words(void *ctx, const char *t, size_t len, size_t *n)
{
    (*(int *)ctx)++;
    size_t w = 0;
    for (size_t i = 0; i < len; i++)
        w += t[i] != ' ' && t[i] != '\n' && (i == 0 || t[i - 1] == ' ' || t[i - 1] == '\n');
    *n = w;
    return 0;
}

static void test_budget(void **state)
{
    (void)state;
    struct dataset_store *st = store();
    struct dataset_prompt_opts o;
    dataset_prompt_opts_init(&o);
    int calls = 0;
    o.count = count_words;
    o.count_ctx = &calls;
    struct dataset_prompt *p = build(st, "q", &o);
    size_t full = p->ntokens;
    assert_int_equal(p->examples_dropped, 0);
    assert_int_equal(p->report_trimmed, 0);
    assert_true(calls > 0);
    dataset_prompt_destroy(p);
    /* the report cap: 5 words kept */
    o.max_report_tokens = 5;
    p = build(st, "q", &o);
    assert_int_equal(p->report_trimmed, 1);
    char *u = user_of(p);
    const char *tail = "\n\nThe appendix is dilated to";
    assert_string_equal(u + strlen(u) - strlen(tail), tail);
    ny_free(u);
    dataset_prompt_destroy(p);
    o.max_report_tokens = 2560;
    /* one token over: the last example goes, the report stays whole */
    o.max_prompt_tokens = full - 1;
    p = build(st, "q", &o);
    assert_int_equal(p->examples_dropped, 1);
    assert_int_equal(p->nretrieved, 2);
    assert_int_equal(p->report_trimmed, 0);
    assert_true(p->ntokens <= full - 1);
    dataset_prompt_destroy(p);
    /* no examples at all, then 3 words of the report cut */
    o.max_prompt_tokens = 100000;
    o.k = 0;
    p = build(st, "q", &o);
    size_t bare = p->ntokens;
    dataset_prompt_destroy(p);
    o.k = 3;
    o.max_prompt_tokens = bare - 3;
    p = build(st, "q", &o);
    assert_int_equal(p->examples_dropped, 3);
    assert_int_equal(p->nretrieved, 0);
    assert_int_equal(p->report_trimmed, 1);
    assert_int_equal(p->ntokens, bare - 3);
    u = user_of(p);
    tail = "spleen and kidneys are normal."; /* "IMPRESSION: Acute appendicitis." cut */
    assert_string_equal(u + strlen(u) - strlen(tail), tail);
    ny_free(u);
    dataset_prompt_destroy(p);
    /* a budget the fixed parts alone exceed */
    o.max_prompt_tokens = 10;
    struct ny_err err;
    ny_err_init(&err);
    assert_int_equal(dataset_prompt_build(st, "q", &o, &p, &err), NY_E_RANGE);
    assert_non_null(strstr(err.msg, "budget"));
    /* the estimate without a counter */
    assert_int_equal(dataset_estimate_tokens("abcdefg", 7), 3);
    assert_int_equal(dataset_estimate_tokens("", 0), 0);
    dataset_store_close(st);
}

static void test_export(void **state)
{
    (void)state;
    struct dataset_store *st = store();
    char dir[] = "/tmp/ny_dsprompt_XXXXXX";
    assert_non_null(mkdtemp(dir));
    char *path = ny_path_join(dir, "p.jsonl");
    size_t blocked[3];
    assert_int_equal(dataset_prompts_export(st, "heldout", 10, 3, NULL, path, blocked, NULL), 0);
    char *text;
    size_t len;
    assert_int_equal(ny_file_read(path, 1 << 20, &text, &len, NULL), 0);
    struct ny_lines it;
    const char *line;
    size_t n, rows = 0;
    ny_lines_init(&it, text, len);
    while (ny_lines_next(&it, &line, &n)) {
        json_t *r = json_loadb(line, n, 0, NULL);
        assert_non_null(r);
        assert_true(json_is_string(json_object_get(r, "id")));
        assert_true(json_is_array(json_object_get(r, "messages")));
        assert_true(json_is_array(json_object_get(r, "retrieved_ids")));
        assert_true(json_is_string(json_object_get(r, "gold")));
        if (!strcmp(json_string_value(json_object_get(r, "id")), "q"))
            assert_string_equal(json_string_value(json_object_get(r, "gold")),
                                "74177, 26, K35.80");
        json_decref(r);
        rows++;
    }
    assert_int_equal(rows, 4); /* the whole held-out split */
    ny_free(text);
    struct ny_err err;
    ny_err_init(&err);
    assert_int_equal(dataset_prompts_export(st, "empty", 10, 3, NULL, path, blocked, &err),
                     NY_E_NOTFOUND);
    unlink(path);
    rmdir(dir);
    ny_free(path);
    dataset_store_close(st);
}

/* A file store read by 1 and by 3 workers gives the same bytes; rerunning does too. */
static void test_export_threads(void **state)
{
    (void)state;
    char dir[] = "/tmp/ny_dsthreads_XXXXXX";
    assert_non_null(mkdtemp(dir));
    char *db = ny_path_join(dir, "r.db"), *p1 = ny_path_join(dir, "1.jsonl"),
         *p3 = ny_path_join(dir, "3.jsonl");
    struct dataset_store *st = NULL;
    assert_int_equal(dataset_store_open(db, &st, NULL), 0);
    assert_int_equal(dataset_synth_to_store(st, "train", "tr", 1, 400, NULL), 0);
    assert_int_equal(dataset_synth_to_store(st, "heldout", "ho", 2, 40, NULL), 0);
    struct dataset_prompt_opts o;
    dataset_prompt_opts_init(&o);
    o.threads = 1;
    size_t b1[3], b3[3];
    assert_int_equal(dataset_prompts_export(st, "heldout", 30, 9, &o, p1, b1, NULL), 0);
    o.threads = 3;
    assert_int_equal(dataset_prompts_export(st, "heldout", 30, 9, &o, p3, b3, NULL), 0);
    char *t1, *t3;
    size_t n1, n3;
    assert_int_equal(ny_file_read(p1, 1 << 24, &t1, &n1, NULL), 0);
    assert_int_equal(ny_file_read(p3, 1 << 24, &t3, &n3, NULL), 0);
    assert_int_equal(n1, n3);
    assert_memory_equal(t1, t3, n1);
    assert_memory_equal(b1, b3, sizeof b1);
    /* every row carries k = 3 examples from the train split */
    struct ny_lines it;
    const char *line;
    size_t len, rows = 0;
    ny_lines_init(&it, t1, n1);
    while (ny_lines_next(&it, &line, &len)) {
        json_t *r = json_loadb(line, len, 0, NULL);
        json_t *ids = json_object_get(r, "retrieved_ids");
        assert_int_equal(json_array_size(ids), 3);
        assert_int_equal(strncmp(json_string_value(json_array_get(ids, 0)), "tr-", 3), 0);
        json_decref(r);
        rows++;
    }
    assert_int_equal(rows, 30);
    ny_free(t1);
    ny_free(t3);
    dataset_store_close(st);
    unlink(db);
    unlink(p1);
    unlink(p3);
    rmdir(dir);
    ny_free(db);
    ny_free(p1);
    ny_free(p3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_deterministic),  cmocka_unit_test(test_sections_and_forms),
        cmocka_unit_test(test_candidates_rules_ready), cmocka_unit_test(test_budget),
        cmocka_unit_test(test_export),         cmocka_unit_test(test_export_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
