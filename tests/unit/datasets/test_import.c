/* test_import.c — JSONL import into the record store: fields and gold normalisation, hashes,
 * the no-op re-import, the --replace rule, line-numbered errors that leave the store unchanged,
 * and the CLI's exit codes. */
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

#define R1 "{\"id\":\"r1\",\"exam_description\":\"CT HEAD\",\"reason\":\"headache\"," \
           "\"report\":\"No acute hemorrhage.\",\"cpt\":[\"70450\"],\"modifiers\":[\"26\"]," \
           "\"icd\":[\"r519\"],\"modality\":\"CT\",\"patient\":\"P1\",\"format\":\"embedded\"}"
#define R2 "{\"id\":\"r2\",\"exam_description\":\"XR KNEE RIGHT\",\"reason\":\"knee pain\"," \
           "\"report\":\"Osteoarthritis.\",\"codes\":\"73562, 26 RT, M17.11, m17.11, ,\"}"

static struct dataset_store *open_mem(void)
{
    struct dataset_store *st = NULL;
    assert_int_equal(dataset_store_open(":memory:", &st, NULL), NY_OK);
    return st;
}

static size_t count(struct dataset_store *st, const char *split)
{
    size_t n = 99;
    assert_int_equal(dataset_store_count(st, split, &n, NULL), NY_OK);
    return n;
}

static int import(struct dataset_store *st, const char *text, int replace,
                  struct dataset_import_stats *s, struct ny_err *err)
{
    return dataset_store_import_buf(st, text, strlen(text), "t.jsonl", "heldout", replace, s,
                                    err);
}

static void test_good_file(void **state)
{
    (void)state;
    struct dataset_store *st = open_mem();
    struct dataset_import_stats s;
    assert_int_equal(import(st, R1 "\n\n  \n" R2 "\r\n", 0, &s, NULL), NY_OK);
    assert_int_equal(s.added, 2);
    assert_int_equal(s.unchanged, 0);
    assert_int_equal(count(st, "heldout"), 2);
    assert_int_equal(count(st, "train"), 0);
    struct dataset_record *r;
    assert_int_equal(dataset_record_get(st, "r1", &r, NULL), NY_OK);
    assert_string_equal(r->split, "heldout");
    assert_string_equal(r->modality, "CT");
    assert_string_equal(r->patient, "P1");
    assert_null(r->accession);
    assert_string_equal(r->format, "embedded");
    assert_int_equal(r->nicd, 1);
    assert_string_equal(r->icd[0], "R51.9"); /* undotted, lowercase → dotted */
    assert_string_equal(r->gold_line, "70450, 26, R51.9");
    /* content hash: SHA-256 of "CT HEAD\0headache\0No acute hemorrhage." */
    const char content[] = "CT HEAD\0headache\0No acute hemorrhage.";
    char hex[65];
    ny_sha256_hex(content, sizeof content - 1, hex);
    assert_string_equal(r->content_hash, hex);
    dataset_record_destroy(r);
    assert_int_equal(dataset_record_get(st, "r2", &r, NULL), NY_OK);
    assert_int_equal(r->ncpt, 1);
    assert_int_equal(r->nmodifiers, 2);
    assert_int_equal(r->nicd, 1); /* duplicate dropped after its first occurrence */
    assert_string_equal(r->gold_line, "73562, 26 RT, M17.11");
    assert_null(r->format);
    dataset_record_destroy(r);
    struct ny_err err;
    ny_err_init(&err);
    assert_int_equal(dataset_record_get(st, "nope", &r, &err), NY_E_NOTFOUND);
    dataset_store_close(st);
}

static void test_reimport_and_replace(void **state)
{
    (void)state;
    struct dataset_store *st = open_mem();
    struct dataset_import_stats s;
    struct ny_err err;
    ny_err_init(&err);
    assert_int_equal(import(st, R1 "\n" R2 "\n", 0, &s, NULL), NY_OK);
    assert_int_equal(import(st, R1 "\n" R2 "\n", 0, &s, NULL), NY_OK);
    assert_int_equal(s.added, 0);
    assert_int_equal(s.unchanged, 2);
    const char *changed = "{\"id\":\"r1\",\"exam_description\":\"CT HEAD\",\"reason\":\"headache\","
                          "\"report\":\"Small hemorrhage.\",\"codes\":\"70450, I61.9\"}";
    const char *newone = "{\"id\":\"r3\",\"exam_description\":\"A\",\"reason\":\"B\","
                         "\"report\":\"C\"}";
    char buf[1024];
    snprintf(buf, sizeof buf, "%s\n%s\n", newone, changed);
    assert_int_equal(import(st, buf, 0, &s, &err), NY_E_INVALID);
    assert_non_null(strstr(err.msg, "line 2"));
    assert_non_null(strstr(err.msg, "--replace"));
    assert_int_equal(count(st, "heldout"), 2); /* r3 rolled back too */
    assert_int_equal(import(st, buf, 1, &s, NULL), NY_OK);
    assert_int_equal(s.added, 1);
    assert_int_equal(s.replaced, 1);
    struct dataset_record *r;
    assert_int_equal(dataset_record_get(st, "r1", &r, NULL), NY_OK);
    assert_string_equal(r->report, "Small hemorrhage.");
    assert_string_equal(r->gold_line, "70450, I61.9");
    dataset_record_destroy(r);
    assert_int_equal(dataset_record_get(st, "r3", &r, NULL), NY_OK);
    assert_int_equal(r->has_gold, 0);
    assert_string_equal(r->gold_line, "");
    dataset_record_destroy(r);
    dataset_store_close(st);
}

/* Each bad line must fail with its line number, and leave the store as it was. */
static void test_malformed(void **state)
{
    (void)state;
    static const struct {
        const char *line, *needle;
    } cases[] = {
        {"{\"id\":\"x\",\"exam_description\":\"A\",\"reason\":\"B\"", "malformed JSON"},
        {"[1,2]", "JSON object"},
        {"{\"exam_description\":\"A\",\"reason\":\"B\",\"report\":\"C\"}", "\"id\""},
        {"{\"id\":7,\"exam_description\":\"A\",\"reason\":\"B\",\"report\":\"C\"}", "string"},
        {"{\"id\":\"x\",\"exam_description\":\"\",\"reason\":\"B\",\"report\":\"C\"}", "empty"},
        {"{\"id\":\"x\",\"exam_description\":\"A\",\"reason\":\"B\",\"report\":\"C\","
         "\"format\":\"prose\"}", "format"},
        {"{\"id\":\"x\",\"exam_description\":\"A\",\"reason\":\"B\",\"report\":\"C\","
         "\"icd\":[\"74177\"]}", "ICD-10-CM"},
        {"{\"id\":\"x\",\"exam_description\":\"A\",\"reason\":\"B\",\"report\":\"C\","
         "\"cpt\":\"74177\"}", "array"},
        {"{\"id\":\"x\",\"exam_description\":\"A\",\"reason\":\"B\",\"report\":\"C\","
         "\"codes\":\"74177, ???x!\"}", "unparseable"},
        {"{\"id\":\"x\",\"exam_description\":\"A\",\"reason\":\"B\",\"report\":\"C\","
         "\"codes\":\"74177\",\"cpt\":[\"74177\"]}", "not both"},
        {"{\"id\":\"x\",\"exam_description\":\"A\",\"reason\":\"B\",\"report\":\"C\","
         "\"messages\":[{\"role\":\"robot\",\"content\":\"hi\"}]}", "role"},
        {"{\"id\":\"x\",\"exam_description\":\"A\",\"reason\":\"B\",\"report\":\"\xff\"}",
         "UTF-8"},
        {"{\"id\":\"x\",\"exam_description\":\"A\\u0000\",\"reason\":\"B\",\"report\":\"C\"}",
         "NUL"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct dataset_store *st = open_mem();
        char buf[2048];
        snprintf(buf, sizeof buf, "%s\n%s\n%s\n", R1, R2, cases[i].line);
        struct ny_err err;
        ny_err_init(&err);
        int rc = import(st, buf, 0, NULL, &err);
        if (rc == NY_OK || !strstr(err.msg, "t.jsonl line 3") || !strstr(err.msg, cases[i].needle))
            fail_msg("case %zu: rc %d, message \"%s\"", i, rc, err.msg);
        assert_int_equal(count(st, "heldout"), 0);
        dataset_store_close(st);
    }
}

static void test_file_and_cli(void **state)
{
    (void)state;
    char dir[64];
    assert_int_equal(ny_test_tmpdir_make(dir, sizeof dir, "dsimport"), 0);
    char good[128], bad[128], db[128], cmd[1024];
    snprintf(good, sizeof good, "%s/good.jsonl", dir);
    snprintf(bad, sizeof bad, "%s/bad.jsonl", dir);
    snprintf(db, sizeof db, "%s/r.db", dir);
    assert_int_equal(ny_file_write_atomic(good, R1 "\n" R2 "\n", strlen(R1 R2) + 2, NULL), 0);
    assert_int_equal(ny_file_write_atomic(bad, R1 "\n{\n", strlen(R1) + 3, NULL), 0);
    struct dataset_store *st = NULL;
    assert_int_equal(dataset_store_open(db, &st, NULL), NY_OK);
    struct ny_err err;
    ny_err_init(&err);
    assert_int_equal(dataset_store_import_file(st, "/nonexistent/x.jsonl", "a", 0, NULL, &err),
                     NY_E_NOTFOUND);
    assert_int_equal(dataset_store_import_file(st, good, "", 0, NULL, &err), NY_E_INVALID);
    dataset_store_close(st);
    const char *bin = getenv("NYXAUDIT_BIN");
    if (bin && ny_file_exists(bin)) {
        snprintf(cmd, sizeof cmd, "'%s' dataset import '%s' --split heldout --db '%s' >/dev/null",
                 bin, good, db);
        assert_int_equal(system(cmd), 0);
        snprintf(cmd, sizeof cmd, "'%s' dataset import '%s' --split heldout --db '%s' 2>/dev/null",
                 bin, bad, db);
        int st2 = system(cmd);
        assert_true(WIFEXITED(st2) && WEXITSTATUS(st2) == 2);
        snprintf(cmd, sizeof cmd, "'%s' dataset import '%s' --db '%s' 2>/dev/null", bin, good, db);
        st2 = system(cmd);
        assert_true(WIFEXITED(st2) && WEXITSTATUS(st2) == 2);
        /* synth -> import as train -> prompts: exit 0 and one row per held-out record */
        snprintf(cmd, sizeof cmd, "cd '%s' && '%s' dataset synth --n 30 --seed 1 --out s.jsonl"
                 " >/dev/null && '%s' dataset import s.jsonl --split train --db r.db >/dev/null"
                 " && '%s' dataset prompts --split heldout --n 5 --db r.db --out p.jsonl"
                 " >/dev/null && test $(wc -l < p.jsonl) -eq 2", dir, bin, bin, bin);
        assert_int_equal(system(cmd), 0);
        snprintf(cmd, sizeof cmd, "'%s' dataset prompts --split heldout --n 0 --db '%s'"
                 " --out /dev/null 2>/dev/null", bin, db);
        st2 = system(cmd);
        assert_true(WIFEXITED(st2) && WEXITSTATUS(st2) == 2);
        snprintf(cmd, sizeof cmd, "'%s' dataset frobnicate 2>/dev/null", bin);
        st2 = system(cmd);
        assert_true(WIFEXITED(st2) && WEXITSTATUS(st2) == 2);
    }
    assert_int_equal(ny_test_tmpdir_remove(dir), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_good_file),
        cmocka_unit_test(test_reimport_and_replace),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_file_and_cli),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
