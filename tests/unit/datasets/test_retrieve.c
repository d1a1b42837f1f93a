/* test_retrieve.c — BM25 retrieval over a small pool (rank order, ties by id, split filter) and
 * each leakage layer blocking its own case, with exact per-layer counts. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "datasets.h"
#include "pool.h"

static struct dataset_store *store(const char *extra_train)
{
    struct dataset_store *st = NULL;
    assert_int_equal(dataset_store_open(":memory:", &st, NULL), 0);
    const char *q = QUERY;
    assert_int_equal(dataset_store_import_buf(st, q, strlen(q), "q", "heldout", 0, NULL, NULL), 0);
    struct ny_buf b;
    ny_buf_init(&b);
    ny_buf_puts(&b, POOL);
    ny_buf_puts(&b, extra_train);
    assert_int_equal(dataset_store_import_buf(st, b.data, b.len, "pool", "train", 0, NULL, NULL),
                     0);
    ny_buf_fini(&b);
    return st;
}

static struct dataset_prompt *build(struct dataset_store *st, const char *id, size_t k)
{
    struct dataset_prompt_opts o;
    dataset_prompt_opts_init(&o);
    o.k = k;
    struct dataset_prompt *p = NULL;
    struct ny_err err;
    ny_err_init(&err);
    int rc = dataset_prompt_build(st, id, &o, &p, &err);
    if (rc)
        fail_msg("%s", err.msg);
    return p;
}

static int retrieved(const struct dataset_prompt *p, const char *id)
{
    for (size_t i = 0; i < p->nretrieved; i++)
        if (!strcmp(p->retrieved_ids[i], id))
            return (int)i;
    return -1;
}

static void test_bm25_order(void **state)
{
    (void)state;
    struct dataset_store *st = store("");
    struct dataset_prompt *p = build(st, "q", 3);
    assert_int_equal(p->nretrieved, 3);
    assert_string_equal(p->retrieved_ids[0], "t-app"); /* shares the most specific terms */
    assert_string_equal(p->retrieved_ids[1], "t-div"); /* the same exam, another finding */
    assert_int_equal(retrieved(p, "q"), -1);           /* the query's own split is not the pool */
    assert_int_equal(p->blocked_hash + p->blocked_cosine + p->blocked_fingerprint, 0);
    dataset_prompt_destroy(p);
    dataset_store_close(st);
}

static void test_ties_by_id(void **state)
{
    (void)state;
    struct dataset_store *st = store("");
    /* t-knee-a and t-knee-b have the same text: equal BM25, so a precedes b. The train record
     * t-knee-a as a query meets itself first (layer 1) and its twin (layer 1 too). */
    struct dataset_prompt *p = build(st, "t-knee-b", 3);
    assert_int_equal(retrieved(p, "t-knee-a"), -1);
    assert_int_equal(p->blocked_hash, 2);
    dataset_prompt_destroy(p);
    const char *q2 = REC("q2", "XR KNEE RIGHT", "knee pain", "Joint space narrowing medially with"
                         " osteophytes and effusion. IMPRESSION: Osteoarthritis.", "73562", "");
    assert_int_equal(dataset_store_import_buf(st, q2, strlen(q2), "q2", "heldout", 0, NULL, NULL),
                     0);
    p = build(st, "q2", 3);
    assert_string_equal(p->retrieved_ids[0], "t-knee-a");
    assert_string_equal(p->retrieved_ids[1], "t-knee-b");
    dataset_prompt_destroy(p);
    dataset_store_close(st);
}

static void check_layer(const char *leak, const char *leak_id, size_t h, size_t c, size_t f)
{
    struct dataset_store *st = store(leak);
    struct dataset_prompt *p = build(st, "q", 3);
    assert_int_equal(retrieved(p, leak_id), -1);
    assert_int_equal(p->blocked_hash, h);
    assert_int_equal(p->blocked_cosine, c);
    assert_int_equal(p->blocked_fingerprint, f);
    assert_string_equal(p->retrieved_ids[0], "t-app");
    dataset_prompt_destroy(p);
    dataset_store_close(st);
}

static void test_layer_hash(void **state)
{
    (void)state;
    check_layer(LEAK_COPY, "t-copy", 1, 0, 0);
}

static void test_layer_cosine(void **state)
{
    (void)state;
    check_layer(LEAK_NEAR, "t-near", 0, 1, 0);
}

static void test_layer_fingerprint(void **state)
{
    (void)state;
    check_layer(LEAK_FP, "t-fp", 0, 0, 1);
    /* same patient on another date is a different study: retrieved, nothing blocked */
    struct dataset_store *st = store(SAME_PATIENT);
    struct dataset_prompt *p = build(st, "q", 10);
    assert_true(retrieved(p, "t-pat") >= 0);
    assert_int_equal(p->blocked_fingerprint, 0);
    dataset_prompt_destroy(p);
    dataset_store_close(st);
}

static void test_cosine_and_threshold(void **state)
{
    (void)state;
    /* "a a b" vs "a b b": (2*1 + 1*2) / (sqrt(5) * sqrt(5)) = 0.8 */
    assert_float_equal(dataset_text_cosine("a a b", "A, b b"), 0.8, 1e-12);
    assert_float_equal(dataset_text_cosine("x y", "z"), 0.0, 0);
    assert_float_equal(dataset_text_cosine("", "z"), 0.0, 0);
    /* a threshold of 1.0 lets the near-duplicate through */
    struct dataset_store *st = store(LEAK_NEAR);
    struct dataset_prompt_opts o;
    dataset_prompt_opts_init(&o);
    o.cosine_threshold = 1.0;
    struct dataset_prompt *p = NULL;
    assert_int_equal(dataset_prompt_build(st, "q", &o, &p, NULL), 0);
    assert_int_equal(p->blocked_cosine, 0);
    assert_string_equal(p->retrieved_ids[0], "t-near");
    dataset_prompt_destroy(p);
    dataset_store_close(st);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bm25_order),          cmocka_unit_test(test_ties_by_id),
        cmocka_unit_test(test_layer_hash),          cmocka_unit_test(test_layer_cosine),
        cmocka_unit_test(test_layer_fingerprint),   cmocka_unit_test(test_cosine_and_threshold),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
