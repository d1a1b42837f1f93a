/* test_golden.c — the synthetic corpus and the prompt builder against golden/datasets/ (made by
 * golden/datasets/regen.sh with the CLI; rebuilt here through the library): byte for byte. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "datasets.h"
#include "ny_test.h"

static char dir[64];

static int setup(void **state)
{
    (void)state;
    return ny_test_tmpdir_make(dir, sizeof dir, "dsgolden");
}

static int teardown(void **state)
{
    (void)state;
    return ny_test_tmpdir_remove(dir);
}

static void same_file(const char *made, const char *golden_name)
{
    char golden[1024];
    snprintf(golden, sizeof golden, "%s/golden/datasets/%s", getenv("NY_SOURCE_DIR"),
             golden_name);
    char *a, *b;
    size_t na, nb;
    assert_int_equal(ny_file_read(made, 1 << 26, &a, &na, NULL), 0);
    assert_int_equal(ny_file_read(golden, 1 << 26, &b, &nb, NULL), 0);
    size_t i = 0;
    while (i < na && i < nb && a[i] == b[i])
        i++;
    if (na != nb || i < na)
        fail_msg("%s differs from %s at byte %zu (sizes %zu, %zu)", made, golden, i, na, nb);
    ny_free(a);
    ny_free(b);
}

static void test_synth(void **state)
{
    (void)state;
    char *p = ny_path_join(dir, "synth.jsonl");
    assert_int_equal(dataset_synth_write(p, "golden", 7, 0, 20, NULL), 0);
    same_file(p, "synth_seed7_n20.jsonl");
    ny_free(p);
}

static void test_prompts(void **state)
{
    (void)state;
    char *db = ny_path_join(dir, "r.db"), *p = ny_path_join(dir, "prompts.jsonl");
    struct dataset_store *st = NULL;
    assert_int_equal(dataset_store_open(db, &st, NULL), 0);
    assert_int_equal(dataset_synth_to_store(st, "train", "tr", 1, 400, NULL), 0);
    assert_int_equal(dataset_synth_to_store(st, "heldout", "ho", 2, 30, NULL), 0);
    assert_int_equal(dataset_prompts_export(st, "heldout", 10, 3, NULL, p, NULL, NULL), 0);
    dataset_store_close(st);
    same_file(p, "prompts_seed3_n10.jsonl");
    ny_free(db);
    ny_free(p);
}

int main(void)
{
    if (!getenv("NY_SOURCE_DIR"))
        return 77;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_synth),
        cmocka_unit_test(test_prompts),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
