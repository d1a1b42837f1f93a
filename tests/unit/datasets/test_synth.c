/* test_synth.c — the synthetic corpus: a pure function of (seed, index); every emitted code is
 * a billable entry of the embedded code set; the variety the corpus promises (formats ~70/30,
 * modalities, modifiers, multi-CPT, 7th characters, lengths); the output imports cleanly. */
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

#define N 2000

static size_t words(const char *s)
{
    size_t n = 0;
    for (size_t i = 0; s[i]; i++)
        n += s[i] != ' ' && s[i] != '\n' && (i == 0 || s[i - 1] == ' ' || s[i - 1] == '\n');
    return n;
}

static int cmp_size(const void *a, const void *b)
{
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    return x < y ? -1 : x > y;
}

static void check_codes(json_t *arr, const char *system)
{
    size_t i;
    json_t *v;
    json_array_foreach(arr, i, v)
    {
        const struct dataset_code *c = dataset_code_find(system, json_string_value(v));
        if (!c || !c->billable)
            fail_msg("%s %s is not a billable code of the demo set", system,
                     json_string_value(v));
    }
}

static void test_pure_function(void **state)
{
    (void)state;
    char *a = dataset_synth_record_json("s", 5, 17), *b = dataset_synth_record_json("s", 5, 17);
    char *c = dataset_synth_record_json("s", 6, 17), *d = dataset_synth_record_json("s", 5, 18);
    assert_string_equal(a, b);
    assert_string_not_equal(a, c);
    assert_string_not_equal(a, d);
    assert_non_null(strstr(a, "\"id\":\"s-00017\""));
    ny_free(a);
    ny_free(b);
    ny_free(c);
    ny_free(d);
}

static void test_variety_and_codes(void **state)
{
    (void)state;
    static size_t len[N];
    size_t explicit_n = 0, multi = 0, seventh = 0, nmod[7] = {0}, nmodality[6] = {0};
    const char *mods[7] = {"26", "TC", "LT", "RT", "50", "59", "XU"};
    const char *modalities[6] = {"CT", "MRI", "US", "XR", "MG", "NM"};
    for (size_t i = 0; i < N; i++) {
        char *s = dataset_synth_record_json("v", 11, i);
        json_t *r = json_loads(s, 0, NULL);
        assert_non_null(r);
        check_codes(json_object_get(r, "cpt"), "cpt");
        check_codes(json_object_get(r, "modifiers"), "modifier");
        check_codes(json_object_get(r, "icd"), "icd10cm");
        assert_true(json_array_size(json_object_get(r, "icd")) >= 1);
        explicit_n += !strcmp(json_string_value(json_object_get(r, "format")), "explicit");
        multi += json_array_size(json_object_get(r, "cpt")) == 2;
        size_t k;
        json_t *v;
        json_array_foreach(json_object_get(r, "icd"), k, v) seventh +=
            strlen(json_string_value(v)) == 8 && json_string_value(v)[7] == 'A';
        json_array_foreach(json_object_get(r, "modifiers"), k, v) for (int m = 0; m < 7; m++)
            nmod[m] += !strcmp(json_string_value(v), mods[m]);
        for (int m = 0; m < 6; m++)
            nmodality[m] += !strcmp(json_string_value(json_object_get(r, "modality")),
                                    modalities[m]);
        len[i] = words(json_string_value(json_object_get(r, "report")));
        json_decref(r);
        ny_free(s);
    }
    /* explicit ~70%: binomial sd at N=2000 is about 1%, so 66-74% is a wide band */
    assert_in_range(explicit_n, N * 66 / 100, N * 74 / 100);
    assert_true(multi > N / 50);
    assert_true(seventh > N / 100);
    for (int m = 0; m < 7; m++)
        if (nmod[m] == 0)
            fail_msg("modifier %s never emitted", mods[m]);
    for (int m = 0; m < 6; m++)
        if (nmodality[m] < N / 50)
            fail_msg("modality %s emitted %zu times", modalities[m], nmodality[m]);
    qsort(len, N, sizeof len[0], cmp_size);
    assert_in_range(len[N / 2], 110, 260); /* median */
    assert_true(len[0] >= 20);
    assert_true(len[N - 1] >= 400 && len[N - 1] <= 700);
}

static void test_write_and_import(void **state)
{
    (void)state;
    char dir[] = "/tmp/ny_dssynth_XXXXXX";
    assert_non_null(mkdtemp(dir));
    char *path = ny_path_join(dir, "s.jsonl");
    assert_int_equal(dataset_synth_write(path, "w", 3, 100, 50, NULL), 0);
    struct dataset_store *st = NULL;
    assert_int_equal(dataset_store_open(":memory:", &st, NULL), 0);
    struct dataset_import_stats s;
    assert_int_equal(dataset_store_import_file(st, path, "train", 0, &s, NULL), 0);
    assert_int_equal(s.added, 50);
    struct dataset_record *r;
    assert_int_equal(dataset_record_get(st, "w-00100", &r, NULL), 0);
    assert_true(r->has_gold && r->ncpt >= 1 && r->patient && r->accession && r->study_date);
    dataset_record_destroy(r);
    /* the same records straight into a store: identical record hashes */
    struct dataset_store *st2 = NULL;
    assert_int_equal(dataset_store_open(":memory:", &st2, NULL), 0);
    assert_int_equal(dataset_synth_to_store(st2, "train", "w", 3, 150, NULL), 0);
    struct dataset_record *r2;
    assert_int_equal(dataset_record_get(st, "w-00149", &r, NULL), 0);
    assert_int_equal(dataset_record_get(st2, "w-00149", &r2, NULL), 0);
    assert_string_equal(r->record_hash, r2->record_hash);
    dataset_record_destroy(r);
    dataset_record_destroy(r2);
    struct ny_err err;
    ny_err_init(&err);
    assert_int_equal(dataset_synth_write("/nonexistent/dir/s.jsonl", "w", 3, 0, 2, &err) < 0, 1);
    dataset_store_close(st);
    dataset_store_close(st2);
    unlink(path);
    rmdir(dir);
    ny_free(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pure_function),
        cmocka_unit_test(test_variety_and_codes),
        cmocka_unit_test(test_write_and_import),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
