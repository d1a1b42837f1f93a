/* dataset_synth.c — the synthetic radiology corpus: composes one report with its gold codes from
 * the tables, as a pure function of (seed, index), and writes JSONL files or store splits. The
 * coding rules it follows are documented in datasets/SYNTH.md. */
#include <jansson.h>
#include <string.h>

#include "datasets_int.h"
#include "synth_int.h"

/* ---- random numbers: xoshiro256** keyed by SHA-256(seed, index) ------------------------------ */
struct rng {
    uint64_t s[4];
};

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static uint64_t rng_next(struct rng *r)
{
    uint64_t *s = r->s, out = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return out;
}

static void rng_init(struct rng *r, uint64_t seed, uint64_t index)
{
    uint8_t in[16], d[32];
    for (int i = 0; i < 8; i++) {
        in[i] = (uint8_t)(seed >> (8 * i));
        in[8 + i] = (uint8_t)(index >> (8 * i));
    }
    ny_sha256(in, 16, d);
    for (int w = 0; w < 4; w++) {
        r->s[w] = 0;
        for (int i = 0; i < 8; i++)
            r->s[w] = (r->s[w] << 8) | d[8 * w + i];
    }
    if (!(r->s[0] | r->s[1] | r->s[2] | r->s[3]))
        r->s[0] = 1;
}

/* uniform in [0, n) (n > 0); the tiny modulo bias is irrelevant here */
static size_t rng_below(struct rng *r, size_t n)
{
    return (size_t)(rng_next(r) % n);
}

/* 1 with probability pct/100 */
static int rng_pct(struct rng *r, unsigned pct)
{
    return rng_below(r, 100) < pct;
}

static size_t list_len(const char *const *l)
{
    size_t n = 0;
    while (l && l[n])
        n++;
    return n;
}

/* ---- composition ----------------------------------------------------------------------------- */
enum side { SIDE_NONE, SIDE_R, SIDE_L, SIDE_B };

struct draft {
    struct rng rng;
    const struct synth_exam *exam;
    enum side side;
    json_t *cpt, *mods, *icd;
    struct ny_buf findings, impression, desc, reason;
    size_t nimp;
    int noisy;
};

static const char *side_word(enum side s)
{
    return s == SIDE_R ? "right" : s == SIDE_L ? "left" : s == SIDE_B ? "bilateral" : "";
}

static void add_code(json_t *arr, const char *code)
{
    size_t i;
    json_t *v;
    json_array_foreach(arr, i, v) if (!strcmp(json_string_value(v), code)) return;
    json_array_append_new(arr, json_string(code));
}

/* Add the code for the side: both sides without a bilateral code give the right then the left. */
static void add_sided(struct draft *d, const struct synth_code *c)
{
    if (!c->l || d->side == SIDE_NONE || d->side == SIDE_R) {
        add_code(d->icd, c->r);
    } else if (d->side == SIDE_L) {
        add_code(d->icd, c->l);
    } else if (c->b) {
        add_code(d->icd, c->b);
    } else {
        add_code(d->icd, c->r);
        add_code(d->icd, c->l);
    }
}

/* Append a sentence whose "%s" (if any) takes the side word. */
static void put_sided(struct ny_buf *b, const char *fmt, enum side s)
{
    const char *p = strstr(fmt, "%s");
    if (!p) {
        ny_buf_puts(b, fmt);
        return;
    }
    ny_buf_append(b, fmt, (size_t)(p - fmt));
    const char *w = side_word(s);
    if (p == fmt && *w) { /* sentence-initial side word: capitalise */
        char c = (char)(w[0] - 32);
        ny_buf_append(b, &c, 1);
        w++;
    }
    ny_buf_puts(b, w);
    ny_buf_puts(b, p + 2);
}

static void impression_item(struct draft *d, const char *text)
{
    if (d->nimp++)
        ny_buf_puts(&d->impression, "\n");
    ny_buf_printf(&d->impression, "%zu. ", d->nimp);
    put_sided(&d->impression, text, d->side);
}

static const struct synth_exam *pick_exam(struct rng *r)
{
    static const char *mods[] = {"CT", "XR", "US", "MRI", "MG", "NM"};
    static const unsigned weight[] = {30, 25, 20, 12, 7, 6};
    size_t x = rng_below(r, 100), m = 0;
    for (unsigned acc = weight[0]; x >= acc && m + 1 < 6; acc += weight[++m])
        ;
    size_t n = 0;
    for (size_t i = 0; i < synth_nexams; i++)
        n += !strcmp(synth_exams[i].modality, mods[m]);
    size_t k = rng_below(r, n);
    for (size_t i = 0; i < synth_nexams; i++)
        if (!strcmp(synth_exams[i].modality, mods[m]) && k-- == 0)
            return &synth_exams[i];
    return &synth_exams[0];
}

static const struct synth_indication *pick_indication(struct rng *r, int region)
{
    size_t n = 0;
    for (size_t i = 0; i < synth_nindications; i++)
        n += synth_indications[i].region == region;
    size_t k = n ? rng_below(r, n) : 0;
    for (size_t i = 0; i < synth_nindications; i++)
        if (synth_indications[i].region == region && k-- == 0)
            return &synth_indications[i];
    return NULL;
}

static const struct synth_finding *pick_finding(struct rng *r, int group)
{
    size_t n = 0;
    for (size_t i = 0; i < synth_nfindings; i++)
        n += synth_findings[i].group == group;
    if (!n)
        return NULL;
    size_t k = rng_below(r, n);
    for (size_t i = 0; i < synth_nfindings; i++)
        if (synth_findings[i].group == group && k-- == 0)
            return &synth_findings[i];
    return NULL;
}

/* Normal statements of a region, `count` of them in table order (a random subset). */
static void put_normals(struct draft *d, int region, size_t count)
{
    const char *const *l = synth_normals[region];
    size_t n = list_len(l);
    for (size_t i = 0; i < n; i++) {
        /* keep item i with probability count_left / items_left: a uniform subset in order */
        size_t left = n - i;
        if (count && rng_below(&d->rng, left) < count) {
            ny_buf_puts(&d->findings, " ");
            ny_buf_puts(&d->findings, l[i]);
            count--;
        }
    }
}

static void put_negation(struct draft *d, int region)
{
    const char *const *l = synth_negations[region];
    size_t n = list_len(l);
    if (n) {
        ny_buf_puts(&d->findings, " ");
        ny_buf_puts(&d->findings, l[rng_below(&d->rng, n)]);
    }
}

static size_t normals_for(const char *modality, struct rng *r)
{
    if (!strcmp(modality, "CT") || !strcmp(modality, "MRI"))
        return 6 + rng_below(r, 10);
    if (!strcmp(modality, "US"))
        return 4 + rng_below(r, 4);
    return 2 + rng_below(r, 4);
}

static void add_incidental(struct draft *d)
{
    unsigned mask = 1u << d->exam->region;
    if (d->exam->region2 >= 0)
        mask |= 1u << d->exam->region2;
    size_t n = 0;
    for (size_t i = 0; i < synth_nincidentals; i++)
        n += (synth_incidentals[i].region_mask & mask) != 0;
    if (!n)
        return;
    size_t k = rng_below(&d->rng, n);
    for (size_t i = 0; i < synth_nincidentals; i++) {
        const struct synth_incidental *x = &synth_incidentals[i];
        if (!(x->region_mask & mask) || k-- != 0)
            continue;
        ny_buf_puts(&d->findings, " ");
        ny_buf_puts(&d->findings, x->finding);
        if (rng_pct(&d->rng, 60)) { /* listed in the impression: coded */
            impression_item(d, x->impression);
            add_code(d->icd, x->icd);
        }
        return;
    }
}

/* Decide indication, findings and ICD codes. */
static void compose_clinical(struct draft *d)
{
    const struct synth_exam *e = d->exam;
    const struct synth_indication *ind = pick_indication(&d->rng, e->region);
    if (!ind)
        return;
    put_sided(&d->reason, ind->text, d->side);
    int rule_out = ind->rule_out && rng_pct(&d->rng, 50);
    if (rule_out)
        ny_buf_printf(&d->reason, ", %s", ind->rule_out);
    int family = e->region == R_SCREEN && rng_pct(&d->rng, 30);
    if (family)
        ny_buf_puts(&d->reason, "; family history of breast cancer");
    const struct synth_finding *f = NULL;
    if (ind->group && rng_pct(&d->rng, 55))
        f = pick_finding(&d->rng, ind->group);
    /* a diagnosis or status in the indication (C.., Z..) is kept; a symptom is replaced */
    char first = ind->icd.r[0];
    int keep = first == 'C' || first == 'Z';
    size_t normals = normals_for(e->modality, &d->rng);
    put_normals(d, e->region, normals);
    if (e->region2 >= 0)
        put_normals(d, e->region2, normals / 2 + 1);
    if (f) {
        ny_buf_puts(&d->findings, " ");
        put_sided(&d->findings, f->finding, d->side);
        impression_item(d, f->impression);
        add_sided(d, &f->icd);
        if (keep)
            add_sided(d, &ind->icd);
    } else {
        put_negation(d, e->region);
        const char *const *neg = synth_negations[e->region];
        impression_item(d, rng_pct(&d->rng, 50) || !neg ? "No acute abnormality." : neg[0]);
        add_sided(d, &ind->icd);
    }
    if (family)
        add_code(d->icd, "Z80.3");
    if (rng_pct(&d->rng, 30))
        add_incidental(d);
}

static const char *setting_text(struct draft *d, const char **mod)
{
    static const char *hosp[] = {"Emergency Department", "Inpatient", "Hospital outpatient"};
    size_t x = rng_below(&d->rng, 100);
    if (x < 70) {
        *mod = "26";
        return hosp[rng_below(&d->rng, 3)];
    }
    if (x < 90) {
        *mod = NULL;
        return "Freestanding imaging center (global service)";
    }
    *mod = "TC";
    return "Imaging center, technical component only (interpretation billed by the reading group)";
}

static void compose_modifiers(struct draft *d, const char *setting_mod)
{
    if (setting_mod)
        add_code(d->mods, setting_mod);
    if (d->exam->lateral == 1 || d->exam->lateral == 2)
        add_code(d->mods, d->side == SIDE_R ? "RT" : d->side == SIDE_L ? "LT" : "50");
    if (d->exam->distinct)
        add_code(d->mods, d->exam->distinct);
}

static const char *technique(const char *modality)
{
    if (!strcmp(modality, "CT"))
        return "Axial images were acquired with multiplanar reformats. Dose reduction techniques"
               " were used (automated exposure control, iterative reconstruction).";
    if (!strcmp(modality, "MRI"))
        return "Multiplanar multisequence MR images were obtained per protocol.";
    if (!strcmp(modality, "US"))
        return "Grayscale and color Doppler images were obtained.";
    if (!strcmp(modality, "MG"))
        return "Standard CC and MLO views with tomosynthesis. Computer-aided detection was used.";
    if (!strcmp(modality, "NM"))
        return "The radiopharmaceutical was administered intravenously and images were acquired"
               " per protocol.";
    return "Standard views were obtained.";
}

/* Dictation noise: abbreviations and artefacts applied to a finished text, word by word. */
static void add_noise(struct draft *d, struct ny_buf *b)
{
    static const char *from[] = {"without", "with", "history", "patient", "evidence", "fracture"};
    static const char *to[] = {"w/o", "w/", "hx", "pt", "evid", "fx"};
    struct ny_buf o;
    ny_buf_init(&o);
    ny_buf_puts(&o, "");
    const char *p = b->data ? b->data : "";
    while (*p) {
        size_t n = 0;
        while (p[n] && ((p[n] >= 'a' && p[n] <= 'z') || (p[n] >= 'A' && p[n] <= 'Z')))
            n++;
        if (n == 0) {
            ny_buf_append(&o, p, 1);
            p++;
            continue;
        }
        int done = 0;
        for (size_t i = 0; i < 6 && !done; i++)
            if (strlen(from[i]) == n && !memcmp(p, from[i], n) && rng_pct(&d->rng, 25)) {
                ny_buf_puts(&o, to[i]);
                done = 1;
            }
        if (!done)
            ny_buf_append(&o, p, n);
        if (rng_pct(&d->rng, 1)) /* a doubled word, as dictation software leaves them */
            ny_buf_printf(&o, " %.*s", (int)n, p);
        p += n;
    }
    if (rng_pct(&d->rng, 20))
        ny_buf_puts(&o, " [dictated but not read]");
    ny_buf_fini(b);
    *b = o;
}

/* Extra paragraphs for long reports (CT/MRI mostly): the tail of the length distribution. */
static void add_long_tail(struct draft *d, struct ny_buf *r)
{
    int big = !strcmp(d->exam->modality, "CT") || !strcmp(d->exam->modality, "MRI");
    if (!rng_pct(&d->rng, big ? 35 : 20))
        return;
    ny_buf_puts(r, "\n\nADDITIONAL DETAIL:");
    size_t rounds = 1 + rng_below(&d->rng, 3);
    for (size_t k = 0; k < rounds; k++) {
        for (int reg = 0; reg < 2; reg++) {
            int region = reg ? d->exam->region2 : d->exam->region;
            if (region < 0)
                continue;
            const char *const *l = synth_normals[region];
            size_t n = list_len(l);
            for (size_t i = 0; i < n; i++)
                if (rng_pct(&d->rng, 70))
                    ny_buf_printf(r, " On %s images, %c%s", k ? "delayed" : "additional",
                                  l[i][0] + 32 * (l[i][0] >= 'A' && l[i][0] <= 'Z'), l[i] + 1);
        }
    }
    ny_buf_puts(r, " These findings were reviewed with the clinical team, and correlation with"
                   " prior outside imaging and laboratory results is recommended.");
}

/* Up to `count` sentences of a NULL-terminated list, in order, prefixed by a space. */
static void put_some(struct draft *d, struct ny_buf *b, const char *const *l, size_t count)
{
    size_t n = list_len(l);
    for (size_t i = 0; i < n; i++)
        if (count && rng_below(&d->rng, n - i) < count) {
            ny_buf_printf(b, " %s", l[i]);
            count--;
        }
}

static int modality_index(const char *m)
{
    static const char *mods[] = {"CT", "MRI", "US", "XR", "MG", "NM"};
    for (int i = 0; i < 6; i++)
        if (!strcmp(m, mods[i]))
            return i;
    return 3;
}

static void build_report(struct draft *d, const char *setting, int embedded, int age, int female,
                         struct ny_buf *r)
{
    static const char *imp_hdr[] = {"IMPRESSION:", "Impression:", "IMP:", "CONCLUSION:"};
    if (embedded)
        ny_buf_printf(r, "EXAM: %s\nCLINICAL HISTORY: %d-year-old %s, %s.", d->desc.data, age,
                      female ? "female" : "male", d->reason.data);
    else
        ny_buf_printf(r, "HISTORY: %d-year-old %s.", age, female ? "female" : "male");
    put_some(d, r, synth_history_extras, 2 + rng_below(&d->rng, 5));
    ny_buf_printf(r, "\nLOCATION: %s.\n", setting);
    int m = modality_index(d->exam->modality);
    if (rng_pct(&d->rng, 85)) {
        ny_buf_printf(r, "TECHNIQUE: %s", technique(d->exam->modality));
        put_some(d, r, synth_modality_extras[m], 2 + rng_below(&d->rng, 4));
        ny_buf_puts(r, "\n");
    }
    ny_buf_printf(r, "COMPARISON: %s\n\nFINDINGS:%s", rng_pct(&d->rng, 50) ? "None." :
                  "Prior study from last year.", d->findings.data);
    if (m >= 2)
        put_some(d, r, synth_modality_extras[m], rng_below(&d->rng, 3));
    add_long_tail(d, r);
    ny_buf_printf(r, "\n\n%s\n%s", imp_hdr[rng_below(&d->rng, 4)], d->impression.data);
    put_some(d, r, synth_closing_extras, 1 + rng_below(&d->rng, 3));
    if (rng_pct(&d->rng, 40))
        ny_buf_puts(r, "\n\nElectronically signed by the attending radiologist.");
}

static void draft_init(struct draft *d, uint64_t seed, size_t index)
{
    memset(d, 0, sizeof *d);
    rng_init(&d->rng, seed, index);
    d->cpt = json_array();
    d->mods = json_array();
    d->icd = json_array();
    ny_buf_init(&d->findings);
    ny_buf_init(&d->impression);
    ny_buf_init(&d->desc);
    ny_buf_init(&d->reason);
    ny_buf_puts(&d->findings, "");
    ny_buf_puts(&d->impression, "");
    ny_buf_puts(&d->reason, "");
}

static void draft_fini(struct draft *d)
{
    json_decref(d->cpt);
    json_decref(d->mods);
    json_decref(d->icd);
    ny_buf_fini(&d->findings);
    ny_buf_fini(&d->impression);
    ny_buf_fini(&d->desc);
    ny_buf_fini(&d->reason);
}

char *dataset_synth_record_json(const char *id_prefix, uint64_t seed, size_t index)
{
    struct draft d;
    draft_init(&d, seed, index);
    d.exam = pick_exam(&d.rng);
    const struct synth_exam *e = d.exam;
    size_t x = rng_below(&d.rng, 100);
    if (e->lateral == 1)
        d.side = x < 50 ? SIDE_R : SIDE_L;
    else if (e->lateral == 2 || e->lateral == 3)
        d.side = x < 40 ? SIDE_R : x < 80 ? SIDE_L : SIDE_B;
    ny_buf_puts(&d.desc, e->desc);
    if (e->lateral == 1 || e->lateral == 2)
        ny_buf_printf(&d.desc, " %s", d.side == SIDE_R ? "RIGHT" : d.side == SIDE_L ? "LEFT" :
                      "BILATERAL");
    add_code(d.cpt, e->cpt);
    if (e->cpt2)
        add_code(d.cpt, e->cpt2);
    const char *setting_mod;
    const char *setting = setting_text(&d, &setting_mod);
    compose_clinical(&d);
    compose_modifiers(&d, setting_mod);
    int embedded = rng_pct(&d.rng, 30);
    int age = 18 + (int)rng_below(&d.rng, 72);
    int female = e->region == R_SCREEN || e->region == R_PELVIS_F || e->region == R_BREAST ||
                 rng_pct(&d.rng, 50);
    d.noisy = rng_pct(&d.rng, 35);
    struct ny_buf report;
    ny_buf_init(&report);
    build_report(&d, setting, embedded, age, female, &report);
    if (d.noisy)
        add_noise(&d, &report);
    char id[128], patient[16], accession[16], date[16];
    snprintf(id, sizeof id, "%s-%05zu", id_prefix, index);
    snprintf(patient, sizeof patient, "P%07u", (unsigned)rng_below(&d.rng, 10000000));
    snprintf(accession, sizeof accession, "A%09u", (unsigned)rng_below(&d.rng, 1000000000));
    snprintf(date, sizeof date, "2025-%02u-%02u", 1 + (unsigned)rng_below(&d.rng, 12),
             1 + (unsigned)rng_below(&d.rng, 28));
    json_t *o = json_pack("{ss ss ss ss ss ss ss ss ss sO sO sO}", "id", id, "exam_description",
                          d.desc.data, "reason", d.reason.data, "report",
                          report.data ? report.data : "", "modality", e->modality, "patient",
                          patient, "accession", accession, "study_date", date, "format",
                          embedded ? "embedded" : "explicit", "cpt", d.cpt, "modifiers", d.mods,
                          "icd", d.icd);
    char *s = o && !report.failed && !d.findings.failed ? ny_json_dumps(o, 0) : NULL;
    json_decref(o);
    ny_buf_fini(&report);
    draft_fini(&d);
    return s;
}

int dataset_synth_write(const char *path, const char *id_prefix, uint64_t seed, size_t first,
                        size_t n, struct ny_err *err)
{
    struct ny_buf b;
    ny_buf_init(&b);
    for (size_t i = 0; i < n; i++) {
        char *line = dataset_synth_record_json(id_prefix, seed, first + i);
        if (!line) {
            ny_buf_fini(&b);
            return NY_ERR(err, NY_E_NOMEM, "%s: out of memory at record %zu", path, first + i);
        }
        ny_buf_puts(&b, line);
        ny_buf_puts(&b, "\n");
        ny_free(line);
    }
    if (b.failed) {
        ny_buf_fini(&b);
        return NY_ERR(err, NY_E_NOMEM, "%s: out of memory", path);
    }
    int rc = ny_file_write_atomic(path, b.data ? b.data : "", b.len, err);
    ny_buf_fini(&b);
    return rc;
}

int dataset_synth_to_store(struct dataset_store *st, const char *split, const char *id_prefix,
                           uint64_t seed, size_t n, struct ny_err *err)
{
    char **lines = ny_calloc(n ? n : 1, sizeof *lines);
    if (!lines)
        return NY_ERR(err, NY_E_NOMEM, "synthesising %zu records: out of memory", n);
    int rc = NY_OK;
    for (size_t i = 0; i < n && !rc; i++)
        if (!(lines[i] = dataset_synth_record_json(id_prefix, seed, i)))
            rc = NY_ERR(err, NY_E_NOMEM, "synthesising record %zu: out of memory", i);
    if (!rc)
        rc = dataset_store_import_lines(st, lines, n, "synthetic corpus", split, err);
    for (size_t i = 0; i < n; i++)
        ny_free(lines[i]);
    ny_free(lines);
    return rc;
}

int dataset_store_create_demo(struct dataset_store *st, struct ny_err *err)
{
    size_t nh = 0, nt = 0;
    int rc = dataset_store_count(st, "heldout", &nh, err);
    if (!rc)
        rc = dataset_store_count(st, "train", &nt, err);
    if (rc)
        return rc;
    if (nh != DATASET_DEMO_HELDOUT)
        rc = dataset_synth_to_store(st, "heldout", "heldout", DATASET_DEMO_SEED_HELDOUT,
                                    DATASET_DEMO_HELDOUT, err);
    if (!rc && nt != DATASET_DEMO_TRAIN)
        rc = dataset_synth_to_store(st, "train", "train", DATASET_DEMO_SEED_TRAIN,
                                    DATASET_DEMO_TRAIN, err);
    return rc;
}
