/* codeset_import.c — importers for the CMS files: the ICD-10-CM order file, the HCPCS Level II
 * alpha-numeric file (its modifiers), and CPT number lists; plain or inside a CMS zip. */
#include <string.h>

#include "metrics_int.h"

#define MAX_FILE (512u << 20) /* 512 MiB: the real order file is ~15 MB */

static int ascii_ci_prefix(const char *s, const char *pre)
{
    for (; *pre; s++, pre++) {
        char c = *s >= 'A' && *s <= 'Z' ? (char)(*s + 32) : *s;
        if (c != *pre)
            return 0;
    }
    return 1;
}

static int ends_txt(const char *s)
{
    size_t n = strlen(s);
    return n >= 4 && ascii_ci_prefix(s + n - 4, ".txt");
}

static int match_icd_order(const char *base)
{
    return ascii_ci_prefix(base, "icd10cm_order_") && ends_txt(base) && !strstr(base, "addenda");
}

static int match_hcpcs(const char *base)
{
    return ascii_ci_prefix(base, "hcpc") && ends_txt(base) && strstr(base, "ANWEB");
}

static int match_txt(const char *base)
{
    return ends_txt(base);
}

static const char *base_name(const char *path)
{
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

/* Read a plain file, or the matching member of a zip. *name receives the name used in messages
 * ("zip:member" or the path; ny_free). */
static int load_source(const char *path, int (*match)(const char *), char **data, size_t *len,
                       char **name, struct ny_err *err)
{
    int rc;
    if (codeset_zip_is_zip(path)) {
        char *member = NULL;
        rc = codeset_zip_extract(path, match, MAX_FILE, data, len, &member, err);
        if (rc)
            return rc;
        struct ny_buf b;
        ny_buf_init(&b);
        ny_buf_printf(&b, "%s:%s", path, member);
        ny_free(member);
        *name = ny_buf_take(&b);
    } else {
        rc = ny_file_read(path, MAX_FILE, data, len, err);
        if (rc)
            return rc;
        *name = ny_strdup(path);
    }
    if (!*name) {
        ny_free(*data);
        return NY_ERR(err, NY_E_NOMEM, "%s: out of memory", path);
    }
    return 0;
}

/* Copy s[0..n) without trailing blanks, converting Latin-1 to UTF-8 unless already UTF-8. */
static char *field_dup(const char *s, size_t n)
{
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
        n--;
    if (ny_utf8_valid(s, n, NULL))
        return ny_strndup(s, n);
    char *o = ny_malloc(2 * n + 1);
    if (!o)
        return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x80) {
            o[k++] = (char)c;
        } else {
            o[k++] = (char)(0xC0 | (c >> 6));
            o[k++] = (char)(0x80 | (c & 0x3F));
        }
    }
    o[k] = '\0';
    return o;
}

static void sha_hex(const char *data, size_t len, char hex[65])
{
    ny_sha256_hex(data, len, hex);
}

/* "icd10cm_order_2026.txt" -> 2026; 0 when the name has no such year. */
static int year_after(const char *name, const char *key)
{
    const char *p = NULL;
    for (const char *s = name; *s; s++)
        if (ascii_ci_prefix(s, key)) {
            p = s + strlen(key);
            break;
        }
    if (!p)
        return 0;
    int y = 0;
    for (int i = 0; i < 4; i++) {
        if (p[i] < '0' || p[i] > '9')
            return 0;
        y = y * 10 + (p[i] - '0');
    }
    return y >= 1990 && y <= 2199 ? y : 0;
}

/* ---- ICD-10-CM order file ----------------------------------------------------------------------
 * Columns (1-based): 1-5 order number, 7-13 code (undotted, left-justified), 15 billable flag
 * (0 header, 1 valid), 17-76 short description, 78- long description. */
static int icd_line(struct codeset_tx *tx, const char *l, size_t n, size_t lineno,
                    size_t *billable, struct ny_err *err)
{
    if (n < 17)
        return NY_ERR(err, NY_E_FORMAT, "%s line %zu: too short for an order-file record (%zu "
                      "bytes)", tx->what, lineno, n);
    for (int i = 0; i < 5; i++)
        if (l[i] < '0' || l[i] > '9')
            return NY_ERR(err, NY_E_FORMAT, "%s line %zu: order number is not 5 digits", tx->what,
                          lineno);
    if (l[5] != ' ' || l[13] != ' ' || l[15] != ' ' || (l[14] != '0' && l[14] != '1'))
        return NY_ERR(err, NY_E_FORMAT, "%s line %zu: not an order-file record (columns 6, 14, "
                      "16 blank; column 15 the billable flag 0 or 1)", tx->what, lineno);
    size_t cl = 7;
    while (cl > 0 && l[6 + cl - 1] == ' ')
        cl--;
    /* The order file's own rule, wider than the output-line rule: a letter then 2 to 6 letters or
     * digits (FY2026 added QA0-QA9 codes whose second character is a letter). */
    char code[METRICS_CODE_MAX];
    int ok = cl >= 3 && l[6] >= 'A' && l[6] <= 'Z';
    for (size_t i = 1; ok && i < cl; i++)
        ok = (l[6 + i] >= 'A' && l[6 + i] <= 'Z') || (l[6 + i] >= '0' && l[6 + i] <= '9');
    if (!ok)
        return NY_ERR(err, NY_E_FORMAT, "%s line %zu: \"%.7s\" is not an ICD-10-CM code",
                      tx->what, lineno, l + 6);
    memcpy(code, l + 6, 3);
    code[3] = '\0';
    if (cl > 3) {
        code[3] = '.';
        memcpy(code + 4, l + 9, cl - 3);
        code[cl + 1] = '\0';
    }
    size_t sl = n - 16 < 60 ? n - 16 : 60;
    char *sd = field_dup(l + 16, sl);
    char *ld = n > 77 ? field_dup(l + 77, n - 77) : ny_strdup("");
    int rc;
    if (!sd || !ld)
        rc = NY_ERR(err, NY_E_NOMEM, "%s: out of memory", tx->what);
    else
        rc = codeset_tx_insert(tx, CODESET_SYS_ICD, code, l[14] == '1', sd, ld, lineno, 0, err);
    ny_free(sd);
    ny_free(ld);
    if (rc == 0 && l[14] == '1')
        (*billable)++;
    return rc;
}

static int import_icd(struct codeset_tx *tx, const char *data, size_t len, const char *name,
                      struct codeset_import_stats *st, struct ny_err *err)
{
    char hex[65];
    sha_hex(data, len, hex);
    int rc = codeset_tx_source(tx, CODESET_SYS_ICD, hex, name, err);
    if (rc)
        return rc < 0 ? rc : 0;
    tx->what = name;
    struct ny_lines it;
    ny_lines_init(&it, data, len);
    const char *l;
    size_t n, rows = 0, billable = 0;
    while (ny_lines_next(&it, &l, &n)) {
        if (n == 0 || (n > 0 && strspn(l, " \t") >= n))
            continue;
        rc = icd_line(tx, l, n, it.lineno, &billable, err);
        if (rc)
            return rc;
        rows++;
    }
    if (rows == 0)
        return NY_ERR(err, NY_E_FORMAT, "%s: no order-file records", name);
    st->icd10cm += rows;
    st->icd10cm_billable += billable;
    return 0;
}

/* ---- HCPCS Level II alpha-numeric file ------------------------------------------------------
 * Columns: 1-5 code (modifiers right-aligned in 4-5), 6-10 sequence number, 11 record type
 * (3 procedure, 4 its continuation, 7 modifier, 8 its continuation), 12-91 long description,
 * 92-119 short description. Only modifiers are stored. */
static int hcpcs_is_record(const char *l, size_t n)
{
    if (n < 11)
        return 0;
    for (int i = 0; i < 5; i++) {
        char c = l[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == ' '))
            return 0;
    }
    for (int i = 5; i < 10; i++)
        if (l[i] < '0' || l[i] > '9')
            return 0;
    return l[10] == '3' || l[10] == '4' || l[10] == '7' || l[10] == '8';
}

struct hcpcs_mod {
    char code[3];
    struct ny_buf longd;
    char *shortd;
    size_t line;
};

static int hcpcs_flush(struct codeset_tx *tx, struct hcpcs_mod *m, size_t *count,
                       struct ny_err *err)
{
    if (!m->code[0])
        return 0;
    int rc = m->longd.failed ? NY_ERR(err, NY_E_NOMEM, "%s: out of memory", tx->what)
                             : codeset_tx_insert(tx, CODESET_SYS_MOD, m->code, 1, m->shortd,
                                                 m->longd.data ? m->longd.data : "", m->line, 0,
                                                 err);
    ny_buf_fini(&m->longd);
    ny_free(m->shortd);
    memset(m, 0, sizeof *m);
    *count += rc == 0;
    return rc;
}

static int hcpcs_line(struct codeset_tx *tx, struct hcpcs_mod *m, const char *l, size_t n,
                      size_t lineno, size_t *count, struct ny_err *err)
{
    char type = l[10];
    size_t cs = 0;
    while (cs < 5 && l[cs] == ' ')
        cs++;
    if (type == '3' || type == '4')
        return hcpcs_flush(tx, m, count, err);
    char code[METRICS_CODE_MAX];
    if (metrics_token_classify(l + cs, 5 - cs, code) != METRICS_KIND_MODIFIER || 5 - cs != 2)
        return NY_ERR(err, NY_E_FORMAT, "%s line %zu: \"%.5s\" is not a modifier code",
                      tx->what, lineno, l);
    size_t ll = n > 11 ? (n - 11 < 80 ? n - 11 : 80) : 0;
    char *piece = field_dup(l + 11, ll);
    if (!piece)
        return NY_ERR(err, NY_E_NOMEM, "%s: out of memory", tx->what);
    int rc = 0;
    if (type == '8') {
        if (strcmp(m->code, code) != 0)
            rc = NY_ERR(err, NY_E_FORMAT, "%s line %zu: continuation of modifier %s without its "
                        "first record", tx->what, lineno, code);
        else if (piece[0])
            ny_buf_printf(&m->longd, " %s", piece);
        ny_free(piece);
        return rc;
    }
    rc = hcpcs_flush(tx, m, count, err);
    if (rc) {
        ny_free(piece);
        return rc;
    }
    memcpy(m->code, code, 3);
    m->line = lineno;
    ny_buf_init(&m->longd);
    ny_buf_puts(&m->longd, piece);
    ny_free(piece);
    m->shortd = n > 91 ? field_dup(l + 91, n - 91 < 28 ? n - 91 : 28) : ny_strdup("");
    if (!m->shortd)
        return NY_ERR(err, NY_E_NOMEM, "%s: out of memory", tx->what);
    return 0;
}

static int import_hcpcs(struct codeset_tx *tx, const char *data, size_t len, const char *name,
                        struct codeset_import_stats *st, struct ny_err *err)
{
    char hex[65];
    sha_hex(data, len, hex);
    int rc = codeset_tx_source(tx, CODESET_SYS_MOD, hex, name, err);
    if (rc)
        return rc < 0 ? rc : 0;
    tx->what = name;
    struct ny_lines it;
    ny_lines_init(&it, data, len);
    const char *l;
    size_t n, count = 0, records = 0;
    struct hcpcs_mod m;
    memset(&m, 0, sizeof m);
    while (rc == 0 && ny_lines_next(&it, &l, &n)) {
        if (n == 0 || strspn(l, " \t") >= n)
            continue;
        if (!hcpcs_is_record(l, n)) {
            /* Leading lines before the first record (a disclaimer) are skipped, a few only. */
            if (records == 0 && it.lineno <= 64)
                continue;
            rc = NY_ERR(err, NY_E_FORMAT, "%s line %zu: not a HCPCS record (columns 6-10 a "
                        "sequence number, column 11 the record type 3, 4, 7 or 8)", name,
                        it.lineno);
            break;
        }
        records++;
        rc = hcpcs_line(tx, &m, l, n, it.lineno, &count, err);
    }
    if (rc == 0)
        rc = hcpcs_flush(tx, &m, &count, err);
    ny_buf_fini(&m.longd);
    ny_free(m.shortd);
    if (rc == 0 && count == 0)
        rc = NY_ERR(err, NY_E_FORMAT, "%s: no modifier records (record types 7 and 8)", name);
    if (rc == 0)
        st->modifiers += count;
    return rc;
}

/* ---- CPT numbers ---------------------------------------------------------------------------- */
static int import_cpt(struct codeset_tx *tx, const char *data, size_t len, const char *name,
                      struct codeset_import_stats *st, struct ny_err *err)
{
    char hex[65];
    sha_hex(data, len, hex);
    int rc = codeset_tx_source(tx, CODESET_SYS_CPT, hex, name, err);
    if (rc)
        return rc < 0 ? rc : 0;
    tx->what = name;
    struct ny_lines it;
    ny_lines_init(&it, data, len);
    const char *l;
    size_t n, before = tx->added;
    while (ny_lines_next(&it, &l, &n)) {
        size_t b = strspn(l, " \t");
        if (b > n)
            b = n;
        while (n > b && (l[n - 1] == ' ' || l[n - 1] == '\t'))
            n--;
        if (n == b || l[b] == '#')
            continue;
        char code[METRICS_CODE_MAX];
        if (n - b != 5 || metrics_token_classify(l + b, n - b, code) != METRICS_KIND_CPT)
            return NY_ERR(err, NY_E_FORMAT, "%s line %zu: \"%.*s\" is not a CPT code number",
                          name, it.lineno, (int)(n - b > 20 ? 20 : n - b), l + b);
        rc = codeset_tx_insert(tx, CODESET_SYS_CPT, code, 1, NULL, NULL, it.lineno, 1, err);
        if (rc)
            return rc;
    }
    if (tx->added == before)
        return NY_ERR(err, NY_E_FORMAT, "%s: no CPT code numbers", name);
    st->cpt += tx->added - before;
    return 0;
}

int codeset_import_files(struct codeset_db *db, const char *icd10cm, const char *hcpcs,
                         const char *cpt, const char *release, const char *effective,
                         struct codeset_import_stats *stats, struct ny_err *err)
{
    if (!db || (!icd10cm && !hcpcs && !cpt))
        return NY_ERR(err, NY_E_INVALID, "codeset import: name at least one file");
    const char *paths[3] = {icd10cm, hcpcs, cpt};
    int (*match[3])(const char *) = {match_icd_order, match_hcpcs, match_txt};
    char *data[3] = {NULL, NULL, NULL}, *names[3] = {NULL, NULL, NULL};
    size_t lens[3] = {0, 0, 0};
    int rc = 0;
    for (int i = 0; i < 3 && rc == 0; i++)
        if (paths[i])
            rc = load_source(paths[i], match[i], &data[i], &lens[i], &names[i], err);
    struct codeset_import_stats st;
    memset(&st, 0, sizeof st);
    if (rc == 0) {
        /* Release name and date: given, else from the ICD file name, else the HCPCS one. */
        int fy = icd10cm ? year_after(base_name(names[0]), "icd10cm_order_") : 0;
        int hy = hcpcs ? year_after(base_name(names[1]), "hcpc") : 0;
        if (release)
            snprintf(st.release, sizeof st.release, "%s", release);
        else if (fy)
            snprintf(st.release, sizeof st.release, "FY%d", fy);
        else if (hy)
            snprintf(st.release, sizeof st.release, "HCPCS%d", hy);
        char known[11] = "";
        if (effective)
            snprintf(st.effective, sizeof st.effective, "%s", effective);
        else if (release && codeset_release_effective(db, release, known, NULL) == 0)
            snprintf(st.effective, sizeof st.effective, "%s", known); /* adding to a release */
        else if (fy)
            snprintf(st.effective, sizeof st.effective, "%04d-10-01", (fy - 1) % 10000);
        else if (hy)
            snprintf(st.effective, sizeof st.effective, "%04d-01-01", hy % 10000);
        if (!st.release[0] || !st.effective[0])
            rc = NY_ERR(err, NY_E_INVALID, "codeset import: cannot tell the release name or "
                        "effective date from the file names; give --release and --effective");
    }
    struct codeset_tx tx;
    if (rc == 0 && (rc = codeset_tx_begin(db, st.release, st.effective, &tx, err)) == 0) {
        if (icd10cm)
            rc = import_icd(&tx, data[0], lens[0], names[0], &st, err);
        if (rc == 0 && hcpcs)
            rc = import_hcpcs(&tx, data[1], lens[1], names[1], &st, err);
        if (rc == 0 && cpt)
            rc = import_cpt(&tx, data[2], lens[2], names[2], &st, err);
        rc = rc ? (codeset_tx_rollback(&tx), rc) : codeset_tx_commit(&tx, err);
    }
    for (int i = 0; i < 3; i++) {
        ny_free(data[i]);
        ny_free(names[i]);
    }
    if (rc == 0) {
        st.noop = st.icd10cm + st.cpt + st.modifiers == 0;
        if (stats)
            *stats = st;
    }
    return rc;
}
