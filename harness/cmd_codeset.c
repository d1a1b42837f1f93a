/* cmd_codeset.c — `nyxaudit codeset import|list`: CMS code sets into the SQLite code-set database
 * (library: metrics/codeset*.c). */
#include <string.h>

#include "datasets.h"
#include "harness_int.h"
#include "metrics.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: nyxaudit codeset import --db FILE [--icd10cm PATH] [--hcpcs PATH] "
            "[--cpt PATH]\n"
            "                               [--release NAME] [--effective YYYY-MM-DD]\n"
            "       nyxaudit codeset import --db FILE --demo   (the embedded demo code set)\n"
            "       nyxaudit codeset list --db FILE\n"
            "PATH: the CMS file or the CMS zip holding it. All files of one command go into one\n"
            "release (default: FY<year> from the ICD-10-CM file, else HCPCS<year>), in one\n"
            "transaction; importing the same files again changes nothing.\n");
}

/* The embedded demo code set (datasets' synthetic corpus) as release "demo". */
int harness_codeset_import_demo(struct codeset_db *db, struct ny_err *err);
int harness_codeset_import_demo(struct codeset_db *db, struct ny_err *err)
{
    const struct dataset_code *codes = NULL;
    size_t n = dataset_synth_codes(&codes);
    struct codeset_row *rows = ny_calloc(n + 1, sizeof *rows);
    if (!rows)
        return NY_ERR(err, NY_E_NOMEM, "demo code set: out of memory");
    for (size_t i = 0; i < n; i++)
        rows[i] = (struct codeset_row){codes[i].system, codes[i].code, codes[i].billable,
                                       codes[i].label};
    int rc = codeset_import_rows(db, "demo", "1970-01-01", rows, n, err);
    ny_free(rows);
    return rc;
}

static int cmd_list(struct codeset_db *db)
{
    struct ny_err err;
    ny_err_init(&err);
    struct codeset_release_info *r = NULL;
    size_t n = 0;
    int rc = codeset_release_list(db, &r, &n, &err);
    if (rc)
        return harness_fail("codeset", rc, &err);
    printf("%-16s %-10s %9s %9s %6s %9s\n", "release", "effective", "icd10cm", "billable", "cpt",
           "modifiers");
    for (size_t i = 0; i < n; i++)
        printf("%-16s %-10s %9lld %9lld %6lld %9lld\n", r[i].name, r[i].effective,
               (long long)r[i].icd10cm, (long long)r[i].icd10cm_billable, (long long)r[i].cpt,
               (long long)r[i].modifiers);
    if (n == 0)
        printf("(no releases)\n");
    ny_free(r);
    return HARNESS_EXIT_OK;
}

int harness_cmd_codeset(int argc, char **argv)
{
    if (argc < 2 || (strcmp(argv[1], "import") != 0 && strcmp(argv[1], "list") != 0)) {
        usage(stderr);
        return HARNESS_EXIT_INVALID;
    }
    const char *dbp = NULL, *icd = NULL, *hcpcs = NULL, *cpt = NULL, *rel = NULL, *eff = NULL;
    int demo = 0;
    for (int i = 2; i < argc; i++) {
        const char **slot = NULL;
        if (!strcmp(argv[i], "--db")) slot = &dbp;
        else if (!strcmp(argv[i], "--icd10cm")) slot = &icd;
        else if (!strcmp(argv[i], "--hcpcs")) slot = &hcpcs;
        else if (!strcmp(argv[i], "--cpt")) slot = &cpt;
        else if (!strcmp(argv[i], "--release")) slot = &rel;
        else if (!strcmp(argv[i], "--effective")) slot = &eff;
        else if (!strcmp(argv[i], "--demo")) { demo = 1; continue; }
        if (!slot || i + 1 >= argc) {
            fprintf(stderr, "nyxaudit codeset: %s '%s'\n",
                    slot ? "missing value after" : "unknown option", argv[i]);
            usage(stderr);
            return HARNESS_EXIT_INVALID;
        }
        *slot = argv[++i];
    }
    int importing = !strcmp(argv[1], "import");
    if (!dbp || (importing && !demo && !icd && !hcpcs && !cpt) ||
        (demo && (icd || hcpcs || cpt))) {
        fprintf(stderr, "nyxaudit codeset: %s\n",
                !dbp ? "--db FILE is required"
                     : demo ? "--demo imports the embedded set alone"
                            : "name at least one of --icd10cm, --hcpcs, --cpt");
        return HARNESS_EXIT_INVALID;
    }
    struct ny_err err;
    ny_err_init(&err);
    struct codeset_db *db = NULL;
    int rc = codeset_open(dbp, &db, &err);
    if (rc)
        return harness_fail("codeset", rc, &err);
    int code = HARNESS_EXIT_OK;
    if (!importing) {
        code = cmd_list(db);
    } else if (demo) {
        rc = harness_codeset_import_demo(db, &err);
        if (rc)
            code = harness_fail("codeset", rc, &err);
        else
            printf("release demo (embedded demo code set): imported or already present\n");
    } else {
        struct codeset_import_stats st;
        rc = codeset_import_files(db, icd, hcpcs, cpt, rel, eff, &st, &err);
        if (rc) {
            code = harness_fail("codeset", rc, &err);
        } else if (st.noop) {
            printf("release %s (effective %s): already imported, nothing changed\n", st.release,
                   st.effective);
        } else {
            printf("release %s (effective %s): %zu ICD-10-CM codes (%zu billable), %zu CPT "
                   "codes, %zu modifiers imported\n",
                   st.release, st.effective, st.icd10cm, st.icd10cm_billable, st.cpt,
                   st.modifiers);
        }
    }
    codeset_close(db);
    return code;
}
