/* test_sample.c — deterministic sampling: the keyed hash (pinned against Python's hashlib),
 * order and stability under additions, different seeds, n beyond the split. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "datasets.h"

static void add_records(struct dataset_store *st, const char *split, size_t first, size_t n)
{
    struct ny_buf b;
    ny_buf_init(&b);
    for (size_t i = first; i < first + n; i++)
        ny_buf_printf(&b, "{\"id\":\"rec-%04zu\",\"exam_description\":\"E%zu\",\"reason\":\"R\","
                      "\"report\":\"text %zu\"}\n", i, i, i);
    assert_int_equal(dataset_store_import_buf(st, b.data, b.len, "gen", split, 0, NULL, NULL), 0);
    ny_buf_fini(&b);
}

static void test_key_pinned(void **state)
{
    (void)state;
    /* int.from_bytes(sha256(seed.to_bytes(8, 'little') + id)[:8], 'big') */
    assert_true(dataset_sample_key(0, "a") == 0xd7fe8b5c4a504869ull);
    assert_true(dataset_sample_key(42, "heldout-00001") == 0x22242bd1f9c4c0f3ull);
    assert_true(dataset_sample_key(UINT64_MAX, "x") == 0x61bf5962ebce8d24ull);
}

static void test_order_and_stability(void **state)
{
    (void)state;
    struct dataset_store *st = NULL;
    assert_int_equal(dataset_store_open(":memory:", &st, NULL), 0);
    add_records(st, "heldout", 0, 300);
    add_records(st, "train", 1000, 50);
    char **a, **b, **c;
    size_t na, nb, nc;
    assert_int_equal(dataset_store_sample(st, "heldout", 50, 7, &a, &na, NULL), 0);
    assert_int_equal(na, 50);
    /* ascending keys, every id from the split */
    for (size_t i = 0; i < na; i++) {
        assert_true(strncmp(a[i], "rec-0", 5) == 0 && atoi(a[i] + 4) < 300);
        if (i)
            assert_true(dataset_sample_key(7, a[i - 1]) < dataset_sample_key(7, a[i]));
    }
    /* the 50 smallest keys: no unsampled id has a smaller key than the last sampled */
    uint64_t last = dataset_sample_key(7, a[na - 1]);
    size_t below = 0;
    for (int i = 0; i < 300; i++) {
        char id[16];
        snprintf(id, sizeof id, "rec-%04d", i);
        below += dataset_sample_key(7, id) <= last;
    }
    assert_int_equal(below, 50);
    /* same call, same ids; another seed, another sample */
    assert_int_equal(dataset_store_sample(st, "heldout", 50, 7, &b, &nb, NULL), 0);
    for (size_t i = 0; i < na; i++)
        assert_string_equal(a[i], b[i]);
    dataset_ids_free(b, nb);
    assert_int_equal(dataset_store_sample(st, "heldout", 50, 8, &b, &nb, NULL), 0);
    size_t same = 0;
    for (size_t i = 0; i < na; i++)
        for (size_t j = 0; j < nb; j++)
            same += !strcmp(a[i], b[j]);
    assert_true(same < 25); /* expected 50*50/300 ≈ 8 */
    dataset_ids_free(b, nb);
    /* adding 30 records: the new sample keeps every old id except those pushed out by new ones */
    add_records(st, "heldout", 300, 30);
    assert_int_equal(dataset_store_sample(st, "heldout", 50, 7, &c, &nc, NULL), 0);
    size_t fresh = 0, kept = 0;
    for (size_t i = 0; i < nc; i++) {
        if (atoi(c[i] + 4) >= 300)
            fresh++;
        else
            for (size_t j = 0; j < na; j++)
                kept += !strcmp(c[i], a[j]);
    }
    assert_int_equal(kept + fresh, 50);
    /* the old ids kept are exactly the old sample's first `kept`, in the same order */
    for (size_t i = 0, j = 0; i < nc; i++)
        if (atoi(c[i] + 4) < 300)
            assert_string_equal(c[i], a[j++]);
    dataset_ids_free(c, nc);
    dataset_ids_free(a, na);
    /* n beyond the split; an unknown split is empty */
    assert_int_equal(dataset_store_sample(st, "train", 500, 1, &a, &na, NULL), 0);
    assert_int_equal(na, 50);
    dataset_ids_free(a, na);
    assert_int_equal(dataset_store_sample(st, "nosuch", 5, 1, &a, &na, NULL), 0);
    assert_int_equal(na, 0);
    dataset_ids_free(a, na);
    dataset_store_close(st);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_key_pinned),
        cmocka_unit_test(test_order_and_stability),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
