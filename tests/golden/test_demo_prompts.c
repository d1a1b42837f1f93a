/* test_demo_prompts.c — the prompt builder still makes the prompts the demo checkpoints were
 * trained and checked on: the 50 held-out requests in golden/demo/parity/requests.jsonl (exported
 * by `nyxaudit dataset prompts` from the demo corpus) are rebuilt from the demo store with the
 * builder's defaults, as the default audit builds them, and must be identical. When this fails,
 * the builder or the synthetic corpus changed: retrain the demo checkpoints and remake the parity
 * files (golden/demo/README.md), or the demo audit scores prompts its models never saw. */
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
#include "datasets.h"

#define N_PROMPTS 50

static void test_builder_matches_training_prompts(void **state)
{
    (void)state;
    const char *src = getenv("NY_SOURCE_DIR");
    char *path = ny_path_join(src && *src ? src : ".", "golden/demo/parity/requests.jsonl");
    assert_non_null(path);
    char *buf = NULL;
    size_t len = 0;
    struct ny_err err;
    ny_err_init(&err);
    if (ny_file_read(path, 16u << 20, &buf, &len, &err) != NY_OK)
        fail_msg("%s", err.msg);

    struct dataset_store *st = NULL;
    if (dataset_store_open(":memory:", &st, &err) != NY_OK ||
        dataset_store_create_demo(st, &err) != NY_OK)
        fail_msg("demo store: %s", err.msg);
    struct dataset_prompt_opts o;
    dataset_prompt_opts_init(&o);

    struct ny_lines it;
    ny_lines_init(&it, buf, len);
    const char *line;
    size_t ll, n = 0, bad = 0;
    while (ny_lines_next(&it, &line, &ll)) {
        if (ll == 0)
            continue;
        char what[1200];
        snprintf(what, sizeof what, "%s line %zu", path, it.lineno);
        json_t *row = NULL, *built = NULL;
        if (ny_json_load_buf(line, ll, what, &row, &err) != NY_OK)
            fail_msg("%s", err.msg);
        const char *id = NULL;
        if (ny_json_get_string(row, "id", 1, &id, what, &err) != NY_OK)
            fail_msg("%s", err.msg);
        struct dataset_prompt *p = NULL;
        if (dataset_prompt_build(st, id, &o, &p, &err) != NY_OK)
            fail_msg("building the prompt of %s: %s", id, err.msg);
        if (ny_json_load_buf(p->messages_json, strlen(p->messages_json), id, &built, &err) !=
            NY_OK)
            fail_msg("%s", err.msg);
        if (!json_equal(built, json_object_get(row, "messages"))) {
            print_error("%s: the builder's prompt differs from the one the demo checkpoints were "
                        "checked on\n", id);
            bad++;
        }
        json_decref(built);
        json_decref(row);
        dataset_prompt_destroy(p);
        n++;
    }
    dataset_store_close(st);
    ny_free(buf);
    ny_free(path);
    assert_int_equal(n, N_PROMPTS);
    if (bad)
        fail_msg("%zu of %zu demo prompts changed: retrain the demo checkpoints and remake "
                 "golden/demo/parity (golden/demo/README.md), or undo the builder change",
                 bad, n);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_builder_matches_training_prompts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
