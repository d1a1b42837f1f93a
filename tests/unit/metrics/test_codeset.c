/* test_codeset.c — the code-set database on :memory: and temporary files: embedded rows, releases
 * by name and by date, lookups (built-in CPT modifiers, headers, uncovered systems), the CMS file
 * formats plain and zipped (stored and deflate, made here with zlib), no-op re-imports, conflicts,
 * and bad files named by file and line with the database left as it was. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include <cmocka.h>

#include "metrics.h"
#include "ny_test.h"

static char dir[64];

static int setup(void **state)
{
    (void)state;
    return ny_test_tmpdir_make(dir, sizeof dir, "codeset");
}

static int teardown(void **state)
{
    (void)state;
    return ny_test_tmpdir_remove(dir);
}

static const char *path_of(const char *name)
{
    static char p[4][256];
    static int k;
    k = (k + 1) % 4;
    snprintf(p[k], sizeof p[k], "%s/%s", dir, name);
    return p[k];
}

static const char *write_file(const char *name, const char *text)
{
    const char *p = path_of(name);
    FILE *f = fopen(p, "wb");
    assert_non_null(f);
    fwrite(text, 1, strlen(text), f);
    fclose(f);
    return p;
}

/* One order-file line: order number, code, flag, short and long description. */
static void icd_line(char *out, int order, const char *code, int flag, const char *desc)
{
    sprintf(out, "%05d %-7s %d %-60s %s\r\n", order, code, flag, desc, desc);
}

static char icd_text[4096];

static const char *icd_file(const char *name)
{
    char *o = icd_text;
    o[0] = '\0';
    char l[256];
    icd_line(l, 1, "M25", 0, "Other joint disorder");
    strcat(o, l);
    icd_line(l, 2, "M255", 0, "Pain in joint");
    strcat(o, l);
    icd_line(l, 3, "M25511", 1, "Pain in right shoulder");
    strcat(o, l);
    icd_line(l, 4, "R1084", 1, "Generalized abdominal pain");
    strcat(o, l);
    icd_line(l, 5, "QA00101", 1, "SCN2A-related disorder");
    strcat(o, l);
    return write_file(name, icd_text);
}

static void test_rows_and_lookup(void **state)
{
    (void)state;
    struct codeset_db *db = NULL;
    assert_int_equal(codeset_open(":memory:", &db, NULL), 0);
    const struct codeset_row rows[] = {
        {"cpt", "74177", 1, "ct abd pel"}, {"modifier", "RT", 1, "right"},
        {"icd10cm", "M25.5", 0, NULL},     {"icd10cm", "M25.511", 1, "r shoulder pain"},
    };
    assert_int_equal(codeset_import_rows(db, "demo", "2020-01-01", rows, 4, NULL), 0);
    enum codeset_status st;
    assert_int_equal(codeset_lookup(db, "demo", METRICS_KIND_ICD, "M25.511", &st, NULL), 0);
    assert_int_equal(st, CODESET_VALID);
    assert_int_equal(codeset_lookup(db, "demo", METRICS_KIND_ICD, "M25.5", &st, NULL), 0);
    assert_int_equal(st, CODESET_NONBILLABLE);
    assert_int_equal(codeset_lookup(db, "demo", METRICS_KIND_ICD, "M25.9", &st, NULL), 0);
    assert_int_equal(st, CODESET_INVALID);
    assert_int_equal(codeset_lookup(db, "demo", METRICS_KIND_CPT, "74176", &st, NULL), 0);
    assert_int_equal(st, CODESET_INVALID);
    /* CPT modifiers 26/50/52/59/76/77 are known to the program. */
    assert_int_equal(codeset_lookup(db, "demo", METRICS_KIND_MODIFIER, "26", &st, NULL), 0);
    assert_int_equal(st, CODESET_VALID);
    assert_int_equal(codeset_lookup(db, "demo", METRICS_KIND_MODIFIER, "77", &st, NULL), 0);
    assert_int_equal(st, CODESET_VALID);
    assert_int_equal(codeset_lookup(db, "demo", METRICS_KIND_MODIFIER, "XX", &st, NULL), 0);
    assert_int_equal(st, CODESET_INVALID);
    /* Same rows again: a no-op. Different rows under the same release: refused. */
    assert_int_equal(codeset_import_rows(db, "demo", "2020-01-01", rows, 4, NULL), 0);
    const struct codeset_row other[] = {{"cpt", "74176", 1, NULL}};
    struct ny_err err;
    ny_err_init(&err);
    assert_int_equal(codeset_import_rows(db, "demo", "2020-01-01", other, 1, &err), NY_E_INVALID);
    assert_non_null(strstr(err.msg, "another release"));
    /* Same name, other date: refused. */
    assert_int_equal(codeset_import_rows(db, "demo", "2021-01-01", other, 1, NULL), NY_E_INVALID);
    int64_t n = 0;
    assert_int_equal(codeset_count(db, "demo", "cpt", 0, &n, NULL), 0);
    assert_int_equal(n, 1);
    /* Bad rows: named by index, nothing written. */
    const struct codeset_row bad[] = {{"cpt", "74170", 1, NULL}, {"icd10cm", "M25511", 1, NULL}};
    ny_err_init(&err);
    assert_int_equal(codeset_import_rows(db, "d2", "2020-01-01", bad, 2, &err), NY_E_INVALID);
    assert_non_null(strstr(err.msg, "row 1"));
    const struct codeset_row dup[] = {{"cpt", "74170", 1, NULL}, {"cpt", "74170", 1, NULL}};
    assert_int_equal(codeset_import_rows(db, "d2", "2020-01-01", dup, 2, NULL), NY_E_FORMAT);
    assert_int_equal(codeset_lookup(db, "d2", METRICS_KIND_CPT, "74170", &st, &err),
                     NY_E_NOTFOUND);
    codeset_close(db);
}

static void test_releases_by_date(void **state)
{
    (void)state;
    struct codeset_db *db = NULL;
    assert_int_equal(codeset_open(":memory:", &db, NULL), 0);
    const struct codeset_row r1[] = {{"icd10cm", "R10.84", 1, NULL}};
    const struct codeset_row r2[] = {{"icd10cm", "R10.84", 1, NULL}, {"icd10cm", "R10.9", 1, NULL}};
    assert_int_equal(codeset_import_rows(db, "FY2025", "2024-10-01", r1, 1, NULL), 0);
    assert_int_equal(codeset_import_rows(db, "FY2026", "2025-10-01", r2, 2, NULL), 0);
    char name[64];
    assert_int_equal(codeset_release_find(db, NULL, "2025-09-30", name, sizeof name, NULL), 0);
    assert_string_equal(name, "FY2025");
    assert_int_equal(codeset_release_find(db, NULL, "2025-10-01", name, sizeof name, NULL), 0);
    assert_string_equal(name, "FY2026");
    assert_int_equal(codeset_release_find(db, NULL, "2024-01-01", name, sizeof name, NULL),
                     NY_E_NOTFOUND);
    assert_int_equal(codeset_release_find(db, "FY2025", NULL, name, sizeof name, NULL), 0);
    assert_int_equal(codeset_release_find(db, "FY2099", NULL, name, sizeof name, NULL),
                     NY_E_NOTFOUND);
    assert_int_equal(codeset_release_find(db, NULL, "2025-13-01", name, sizeof name, NULL),
                     NY_E_INVALID);
    enum codeset_status st;
    assert_int_equal(codeset_lookup(db, "FY2025", METRICS_KIND_ICD, "R10.9", &st, NULL), 0);
    assert_int_equal(st, CODESET_INVALID);
    assert_int_equal(codeset_lookup(db, "FY2026", METRICS_KIND_ICD, "R10.9", &st, NULL), 0);
    assert_int_equal(st, CODESET_VALID);
    /* No CPT rows in these releases: uncovered, not invalid. */
    assert_int_equal(codeset_lookup(db, "FY2026", METRICS_KIND_CPT, "74177", &st, NULL), 0);
    assert_int_equal(st, CODESET_UNCOVERED);
    struct codeset_release_info *info = NULL;
    size_t n = 0;
    assert_int_equal(codeset_release_list(db, &info, &n, NULL), 0);
    assert_int_equal(n, 2);
    assert_string_equal(info[0].name, "FY2026");
    assert_int_equal(info[0].icd10cm, 2);
    ny_free(info);
    codeset_close(db);
}

static void test_icd_order_file(void **state)
{
    (void)state;
    const char *p = icd_file("icd10cm_order_2031.txt");
    struct codeset_db *db = NULL;
    assert_int_equal(codeset_open(path_of("cs.db"), &db, NULL), 0);
    struct codeset_import_stats st;
    assert_int_equal(codeset_import_files(db, p, NULL, NULL, NULL, NULL, &st, NULL), 0);
    /* Release and date from the file name: FY2031 effective 2030-10-01. */
    assert_string_equal(st.release, "FY2031");
    assert_string_equal(st.effective, "2030-10-01");
    assert_int_equal(st.icd10cm, 5);
    assert_int_equal(st.icd10cm_billable, 3);
    assert_int_equal(st.noop, 0);
    enum codeset_status s;
    assert_int_equal(codeset_lookup(db, "FY2031", METRICS_KIND_ICD, "M25.511", &s, NULL), 0);
    assert_int_equal(s, CODESET_VALID);
    assert_int_equal(codeset_lookup(db, "FY2031", METRICS_KIND_ICD, "M25.5", &s, NULL), 0);
    assert_int_equal(s, CODESET_NONBILLABLE);
    /* The order file accepts a letter in second place (FY2026's QA codes). */
    assert_int_equal(codeset_lookup(db, "FY2031", METRICS_KIND_ICD, "QA0.0101", &s, NULL), 0);
    assert_int_equal(s, CODESET_VALID);
    /* Again: a no-op. */
    assert_int_equal(codeset_import_files(db, p, NULL, NULL, NULL, NULL, &st, NULL), 0);
    assert_int_equal(st.noop, 1);
    /* CPT numbers added to the existing release take its date. */
    const char *c = write_file("cpt_more.txt", "74177\n");
    assert_int_equal(codeset_import_files(db, NULL, NULL, c, "FY2031", NULL, &st, NULL), 0);
    assert_string_equal(st.effective, "2030-10-01");
    assert_int_equal(st.cpt, 1);
    assert_int_equal(codeset_lookup(db, "FY2031", METRICS_KIND_CPT, "74177", &s, NULL), 0);
    assert_int_equal(s, CODESET_VALID);
    codeset_close(db);
    /* The file database persists. */
    assert_int_equal(codeset_open(path_of("cs.db"), &db, NULL), 0);
    int64_t n = 0;
    assert_int_equal(codeset_count(db, "FY2031", "icd10cm", 1, &n, NULL), 0);
    assert_int_equal(n, 3);
    codeset_close(db);
}

static void expect_bad(struct codeset_db *db, const char *icd, const char *hcpcs, const char *cpt,
                       const char *rel, const char *want1, const char *want2)
{
    struct ny_err err;
    ny_err_init(&err);
    int rc = codeset_import_files(db, icd, hcpcs, cpt, rel, rel ? "2020-01-01" : NULL, NULL,
                                  &err);
    assert_true(rc < 0);
    if (!strstr(err.msg, want1) || (want2 && !strstr(err.msg, want2)))
        fail_msg("message \"%s\" lacks \"%s\" / \"%s\"", err.msg, want1, want2 ? want2 : "");
}

static void test_bad_files_named_and_atomic(void **state)
{
    (void)state;
    struct codeset_db *db = NULL;
    assert_int_equal(codeset_open(":memory:", &db, NULL), 0);
    /* A good ICD file followed by a bad line 6: the whole import rolls back. */
    icd_file("x.txt");
    strcat(icd_text, "00006 M25X    Y bad flag\r\n");
    char *bad6 = strdup(icd_text);
    const char *p = write_file("icd10cm_order_2030.txt", bad6);
    free(bad6);
    expect_bad(db, p, NULL, NULL, NULL, "icd10cm_order_2030.txt line 6", "billable flag");
    struct codeset_release_info *info = NULL;
    size_t n = 9;
    assert_int_equal(codeset_release_list(db, &info, &n, NULL), 0);
    assert_int_equal(n, 0);
    /* Other breakages. */
    p = write_file("icd10cm_order_2029.txt", "00001 M25     2 flag two\n");
    expect_bad(db, p, NULL, NULL, NULL, "line 1", "billable flag");
    p = write_file("icd10cm_order_2028.txt", "00001 M25\n");
    expect_bad(db, p, NULL, NULL, NULL, "line 1", "too short");
    p = write_file("icd10cm_order_2027.txt", "");
    expect_bad(db, p, NULL, NULL, NULL, "no order-file records", NULL);
    char l[256], two[600];
    icd_line(l, 1, "M25", 0, "x");
    snprintf(two, sizeof two, "%s%s", l, l);
    p = write_file("icd10cm_order_2026.txt", two);
    expect_bad(db, p, NULL, NULL, NULL, "line 2", "duplicate");
    p = write_file("cpt.txt", "74177\n# comment\n\n7417\n");
    expect_bad(db, NULL, NULL, p, "R", "cpt.txt line 4", "not a CPT");
    p = write_file("nameless.txt", "74177\n");
    expect_bad(db, NULL, NULL, p, NULL, "--release", NULL);
    expect_bad(db, path_of("absent.txt"), NULL, NULL, NULL, "absent.txt", NULL);
    assert_int_equal(codeset_release_list(db, &info, &n, NULL), 0);
    assert_int_equal(n, 0);
    codeset_close(db);
}

static void hcpcs_rec(char *out, const char *code, int seq, char type, const char *longd,
                      const char *shortd)
{
    char rec[400];
    snprintf(rec, sizeof rec, "%5s%05d%c%-80.80s%-28.28s", code, seq, type, longd, shortd);
    /* Pad to the 320-byte record. */
    size_t n = strlen(rec);
    memset(rec + n, ' ', 320 - n);
    rec[320] = '\0';
    sprintf(out, "%s\r\n", rec);
}

static void test_hcpcs_and_cpt_files(void **state)
{
    (void)state;
    char text[4096] = "***Disclaimers\t\t\r\n\t\t\r\n*Inclusion or exclusion\r\n\r\n";
    char r[400];
    hcpcs_rec(r, "A0021", 100, '3', "Outside state ambulance", "Outside state amb");
    strcat(text, r);
    hcpcs_rec(r, "   LT", 100, '7', "Left side", "Left side");
    strcat(text, r);
    hcpcs_rec(r, "   TC", 100, '7', "Technical component; under certain", "Technical component");
    strcat(text, r);
    hcpcs_rec(r, "   TC", 200, '8', "circumstances", "");
    strcat(text, r);
    const char *h = write_file("HCPC2031_CONTR_ANWEB.txt", text);
    const char *c = write_file("cpt.txt", "74177\n  71046  \n# note\n\n0042T\n74177\n");
    struct codeset_db *db = NULL;
    assert_int_equal(codeset_open(":memory:", &db, NULL), 0);
    struct codeset_import_stats st;
    assert_int_equal(codeset_import_files(db, NULL, h, c, NULL, NULL, &st, NULL), 0);
    assert_string_equal(st.release, "HCPCS2031");
    assert_string_equal(st.effective, "2031-01-01");
    assert_int_equal(st.modifiers, 2);
    assert_int_equal(st.cpt, 3); /* the repeated 74177 is one code */
    enum codeset_status s;
    assert_int_equal(codeset_lookup(db, "HCPCS2031", METRICS_KIND_MODIFIER, "TC", &s, NULL), 0);
    assert_int_equal(s, CODESET_VALID);
    assert_int_equal(codeset_lookup(db, "HCPCS2031", METRICS_KIND_MODIFIER, "RT", &s, NULL), 0);
    assert_int_equal(s, CODESET_INVALID);
    assert_int_equal(codeset_lookup(db, "HCPCS2031", METRICS_KIND_CPT, "0042T", &s, NULL), 0);
    assert_int_equal(s, CODESET_VALID);
    /* A non-record line after the first record is an error naming the line. */
    strcat(text, "garbage\r\n");
    h = write_file("HCPC2032_CONTR_ANWEB.txt", text);
    expect_bad(db, NULL, h, NULL, NULL, "HCPC2032_CONTR_ANWEB.txt line 9", "not a HCPCS record");
    /* A continuation without its first record. */
    hcpcs_rec(r, "   XS", 200, '8', "orphan", "");
    h = write_file("HCPC2033_CONTR_ANWEB.txt", r);
    expect_bad(db, NULL, h, NULL, NULL, "line 1", "continuation");
    codeset_close(db);
}

/* ---- zip archives made here: one member, stored or deflated ---------------------------------- */
static void put16(FILE *f, unsigned v)
{
    fputc((int)(v & 0xff), f);
    fputc((int)((v >> 8) & 0xff), f);
}
static void put32(FILE *f, unsigned long v)
{
    put16(f, (unsigned)(v & 0xffff));
    put16(f, (unsigned)((v >> 16) & 0xffff));
}

static const char *make_zip(const char *zipname, const char *member, const char *data,
                            int use_deflate, int corrupt_crc)
{
    size_t len = strlen(data);
    unsigned char *comp = malloc(len + 1024);
    assert_non_null(comp);
    size_t clen = len;
    if (use_deflate) {
        z_stream zs;
        memset(&zs, 0, sizeof zs);
        assert_int_equal(deflateInit2(&zs, 6, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY), Z_OK);
        zs.next_in = (Bytef *)data;
        zs.avail_in = (uInt)len;
        zs.next_out = comp;
        zs.avail_out = (uInt)(len + 1024);
        assert_int_equal(deflate(&zs, Z_FINISH), Z_STREAM_END);
        clen = zs.total_out;
        deflateEnd(&zs);
    } else {
        memcpy(comp, data, len);
    }
    unsigned long crc = crc32(0L, (const Bytef *)data, (uInt)len) ^ (corrupt_crc ? 1u : 0u);
    const char *p = path_of(zipname);
    FILE *f = fopen(p, "wb");
    assert_non_null(f);
    unsigned nl = (unsigned)strlen(member), method = use_deflate ? 8 : 0;
    put32(f, 0x04034b50); put16(f, 20); put16(f, 0); put16(f, method); put32(f, 0);
    put32(f, crc); put32(f, clen); put32(f, len); put16(f, nl); put16(f, 0);
    fwrite(member, 1, nl, f);
    fwrite(comp, 1, clen, f);
    long cd = ftell(f);
    put32(f, 0x02014b50); put16(f, 20); put16(f, 20); put16(f, 0); put16(f, method); put32(f, 0);
    put32(f, crc); put32(f, clen); put32(f, len); put16(f, nl); put16(f, 0); put16(f, 0);
    put16(f, 0); put16(f, 0); put32(f, 0); put32(f, 0);
    fwrite(member, 1, nl, f);
    long cd_end = ftell(f);
    put32(f, 0x06054b50); put16(f, 0); put16(f, 0); put16(f, 1); put16(f, 1);
    put32(f, (unsigned long)(cd_end - cd)); put32(f, (unsigned long)cd); put16(f, 0);
    fclose(f);
    free(comp);
    return p;
}

static void test_zip_members(void **state)
{
    (void)state;
    icd_file("unused.txt");
    struct codeset_db *db = NULL;
    assert_int_equal(codeset_open(":memory:", &db, NULL), 0);
    const char *z = make_zip("dx_deflate.zip", "dir/icd10cm_order_2040.txt", icd_text, 1, 0);
    struct codeset_import_stats st;
    assert_int_equal(codeset_import_files(db, z, NULL, NULL, NULL, NULL, &st, NULL), 0);
    assert_string_equal(st.release, "FY2040");
    assert_int_equal(st.icd10cm_billable, 3);
    z = make_zip("dx_stored.zip", "icd10cm_order_2041.txt", icd_text, 0, 0);
    assert_int_equal(codeset_import_files(db, z, NULL, NULL, NULL, NULL, &st, NULL), 0);
    assert_string_equal(st.release, "FY2041");
    /* CRC mismatch, wrong member name, truncation: errors naming the archive. */
    z = make_zip("dx_crc.zip", "icd10cm_order_2042.txt", icd_text, 1, 1);
    expect_bad(db, z, NULL, NULL, NULL, "dx_crc.zip", "CRC");
    z = make_zip("dx_name.zip", "icd10cm_codes_2042.txt", icd_text, 1, 0);
    expect_bad(db, z, NULL, NULL, NULL, "dx_name.zip", "no member");
    char *buf = NULL;
    size_t len = 0;
    assert_int_equal(ny_file_read(path_of("dx_deflate.zip"), 1 << 20, &buf, &len, NULL), 0);
    FILE *f = fopen(path_of("dx_trunc.zip"), "wb");
    fwrite(buf, 1, len / 2, f);
    fclose(f);
    ny_free(buf);
    expect_bad(db, path_of("dx_trunc.zip"), NULL, NULL, NULL, "dx_trunc.zip", NULL);
    codeset_close(db);
}

static void test_open_errors(void **state)
{
    (void)state;
    struct codeset_db *db = (struct codeset_db *)1;
    struct ny_err err;
    ny_err_init(&err);
    assert_int_equal(codeset_open(path_of("no/such/dir/x.db"), &db, &err), NY_E_DB);
    assert_non_null(strstr(err.msg, "x.db"));
    assert_true(db == (struct codeset_db *)1); /* untouched on failure */
    const char *junk = write_file("junk.db", "this is not an SQLite database, just text......"
                                             "...............................................");
    ny_err_init(&err);
    assert_int_equal(codeset_open(junk, &db, &err), NY_E_DB);
    assert_non_null(strstr(err.msg, "junk.db"));
    codeset_close(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rows_and_lookup),
        cmocka_unit_test(test_releases_by_date),
        cmocka_unit_test(test_icd_order_file),
        cmocka_unit_test(test_bad_files_named_and_atomic),
        cmocka_unit_test(test_hcpcs_and_cpt_files),
        cmocka_unit_test(test_zip_members),
        cmocka_unit_test(test_open_errors),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
