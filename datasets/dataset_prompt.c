/* dataset_prompt.c — prompt assembly: the system message, few-shot examples from retrieval,
 * candidate code lists by retrieval-weighted votes, coding rules, the report in explicit or
 * embedded form, and the token budget (drop examples first, then trim the report tail). */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "datasets_int.h"

#define EXCERPT_WORDS 25   /* impression excerpt shown in a few-shot example */
#define MSG_OVERHEAD 8     /* tokens the chat template adds per message (estimate) */
#define MIN_REPORT_TOKENS 16

/* The one system message (no model card text is available: our own wording). */
static const char system_message[] =
    "You are a radiology coding assistant. Code the report: the CPT code of each exam performed,"
    " the modifiers and the ICD-10-CM diagnoses. Reply with one line and nothing else:\n"
    "CPT[ CPT2], MOD, ICD1, ICD2, ...\n"
    "(leave out MOD when no modifier applies; write ICD-10-CM codes with their dot)";

/* Compact on purpose: every prompt carries it. */
static const char default_rules[] =
    "- One CPT per exam performed. Modifiers: 26 for a hospital read, TC for technical only; RT/LT"
    " for one side, 50 for both; 59/XU for distinct services.\n"
    "- Code confirmed findings from the impression, not the symptoms they explain; when the study"
    " is negative, code the symptoms of the reason for exam.\n"
    "- Never code ruled-out, suspected or negated conditions; code an incidental finding only when"
    " the impression lists it.\n"
    "- Use the most specific billable code (laterality; 7th character A for an initial"
    " encounter).";

const char *dataset_system_message(void)
{
    return system_message;
}

const char *dataset_default_rules(void)
{
    return default_rules;
}

size_t dataset_estimate_tokens(const char *text, size_t len)
{
    (void)text;
    return (len + 2) / 3;
}

void dataset_prompt_opts_init(struct dataset_prompt_opts *o)
{
    memset(o, 0, sizeof *o);
    o->train_split = "train";
    o->k = 3;
    o->K = 10;
    o->vote_neighbours = 10;
    o->cosine_threshold = 0.9;
    o->max_report_tokens = 2560;
    o->threads = 2;
}

void dataset_prompt_destroy(struct dataset_prompt *p)
{
    if (!p)
        return;
    ny_free(p->id);
    ny_free(p->messages_json);
    ny_free(p->format);
    for (size_t i = 0; i < p->nretrieved; i++)
        ny_free(p->retrieved_ids[i]);
    ny_free(p->retrieved_ids);
    ny_free(p->cpt_candidates);
    ny_free(p->icd_candidates);
    ny_free(p);
}

static int count_tokens(const struct dataset_prompt_opts *o, const char *t, size_t len,
                        size_t *n, struct ny_err *err)
{
    if (!o->count) {
        *n = dataset_estimate_tokens(t, len);
        return NY_OK;
    }
    int rc = o->count(o->count_ctx, t, len, n);
    return rc ? NY_ERR(err, rc, "token counting failed (%s)", ny_status_name(rc)) : NY_OK;
}

/* ---- candidate lists: retrieval-weighted votes ----------------------------------------------- */
struct vote {
    const char *code;
    double w;
};

static int vote_cmp(const void *a, const void *b)
{
    const struct vote *x = a, *y = b;
    if (x->w != y->w)
        return x->w > y->w ? -1 : 1;
    return strcmp(x->code, y->code);
}

/* Each neighbour i votes score_i / score_0 for each of its codes of `field`; top K, ties by
 * code. Returns "c1, c2, ..." (heap) or NULL on OOM. */
static char *candidates(const struct dataset_hits *h, size_t voters, const char *field, size_t K)
{
    struct vote *v = NULL;
    size_t n = 0, cap = 0;
    double top = h->n && h->v[0].score > 0 ? h->v[0].score : 1.0;
    for (size_t i = 0; i < h->n && i < voters; i++) {
        json_t *arr = h->v[i].gold ? json_object_get(h->v[i].gold, field) : NULL;
        double w = h->v[i].score > 0 ? h->v[i].score / top : 0.0;
        size_t j;
        json_t *c;
        json_array_foreach(arr, j, c)
        {
            const char *code = json_string_value(c);
            size_t k;
            for (k = 0; k < n && strcmp(v[k].code, code); k++)
                ;
            if (k == n) {
                if (n == cap) {
                    cap = cap ? 2 * cap : 16;
                    struct vote *g = ny_reallocarray(v, cap, sizeof *g);
                    if (!g) {
                        ny_free(v);
                        return NULL;
                    }
                    v = g;
                }
                v[n].code = code;
                v[n++].w = 0;
            }
            v[k].w += w;
        }
    }
    if (n)
        qsort(v, n, sizeof *v, vote_cmp);
    struct ny_buf b;
    ny_buf_init(&b);
    ny_buf_puts(&b, "");
    for (size_t i = 0; i < n && i < K; i++)
        ny_buf_printf(&b, "%s%s", i ? ", " : "", v[i].code);
    ny_free(v);
    return b.failed ? (ny_buf_fini(&b), NULL) : ny_buf_take(&b);
}

/* ---- few-shot example text ------------------------------------------------------------------- */
static const char *find_ci(const char *hay, const char *needle)
{
    size_t n = strlen(needle);
    const char *last = NULL;
    for (const char *p = hay; *p; p++)
        if (!strncasecmp(p, needle, n))
            last = p + n;
    return last;
}

/* The first EXCERPT_WORDS words after the last impression header, or the report's last words. */
static void put_excerpt(struct ny_buf *b, const char *report)
{
    static const char *hdr[] = {"IMPRESSION:", "CONCLUSION:", "IMP:"};
    const char *p = NULL;
    for (int i = 0; i < 3 && !p; i++)
        p = find_ci(report, hdr[i]);
    if (!p) {
        size_t words = 0;
        p = report + strlen(report);
        while (p > report && words <= EXCERPT_WORDS)
            if (isspace((unsigned char)*--p) && p[1] && !isspace((unsigned char)p[1]))
                words++;
    }
    size_t words = 0;
    while (*p && words < EXCERPT_WORDS) {
        while (*p && isspace((unsigned char)*p))
            p++;
        const char *w = p;
        while (*p && !isspace((unsigned char)*p))
            p++;
        if (p > w) {
            ny_buf_printf(b, "%s%.*s", words ? " " : "", (int)(p - w), w);
            words++;
        }
    }
    while (*p && isspace((unsigned char)*p))
        p++;
    if (*p)
        ny_buf_puts(b, " ...");
}

static void put_example(struct ny_buf *b, size_t i, const struct dataset_hit *h)
{
    ny_buf_printf(b, "Example %zu\nExam: %s\nReason: %s\nImpression: ", i + 1,
                  h->exam_description, h->reason);
    put_excerpt(b, h->report);
    char *line = h->gold ? dataset_gold_line(json_object_get(h->gold, "cpt"),
                                             json_object_get(h->gold, "modifiers"),
                                             json_object_get(h->gold, "icd"))
                         : NULL;
    ny_buf_printf(b, "\nCodes: %s\n\n", line ? line : "");
    ny_free(line);
}

/* ---- token budget ---------------------------------------------------------------------------- */
/* The longest prefix of text, cut after a word, that counts at most max tokens: *cut its length. */
static int trim_tail(const struct dataset_prompt_opts *o, const char *text, size_t len,
                     size_t max, size_t *cut, struct ny_err *err)
{
    size_t n;
    int rc = count_tokens(o, text, len, &n, err);
    if (rc || n <= max) {
        *cut = len;
        return rc;
    }
    size_t *ends = ny_malloc((len + 1) * sizeof *ends), ne = 0;
    if (!ends)
        return NY_ERR(err, NY_E_NOMEM, "trimming a report: out of memory");
    for (size_t i = 0; i < len; i++)
        if (!isspace((unsigned char)text[i]) &&
            (i + 1 == len || isspace((unsigned char)text[i + 1])))
            ends[ne++] = i + 1;
    /* largest index j with count(text[0..ends[j]]) <= max; -1 (empty) when none */
    size_t lo = 0, hi = ne; /* answer in [lo, hi): number of words kept */
    while (lo < hi) {
        size_t mid = lo + (hi - lo + 1) / 2; /* try keeping `mid` words */
        if ((rc = count_tokens(o, text, ends[mid - 1], &n, err)))
            break;
        if (n <= max)
            lo = mid;
        else
            hi = mid - 1;
    }
    *cut = lo ? ends[lo - 1] : 0;
    ny_free(ends);
    return rc;
}

struct build {
    const struct dataset_prompt_opts *o;
    const struct dataset_record *r;
    const struct dataset_hits *hits;
    const char *format;
    const char *cpt, *icd, *rules;
    size_t nex;       /* examples shown */
    size_t body_len;  /* bytes of the report body kept */
};

static char *user_message(const struct build *b)
{
    struct ny_buf u;
    ny_buf_init(&u);
    ny_buf_puts(&u, "");
    if (b->nex) {
        ny_buf_puts(&u, "Coded examples of similar reports:\n\n");
        for (size_t i = 0; i < b->nex; i++)
            put_example(&u, i, &b->hits->v[i]);
    }
    ny_buf_printf(&u, "Candidate CPT codes: %s\nCandidate ICD-10-CM codes: %s\n\n",
                  *b->cpt ? b->cpt : "(none)", *b->icd ? b->icd : "(none)");
    ny_buf_printf(&u, "Coding rules:\n%s\n\nReport to code:\n", b->rules);
    const struct dataset_record *r = b->r;
    if (!strcmp(b->format, "explicit"))
        ny_buf_printf(&u, "Exam Description: %s\nReason for Exam: %s\n\n", r->exam_description,
                      r->reason);
    else if (!find_ci(r->report, r->exam_description))
        ny_buf_printf(&u, "%s. %s.\n", r->exam_description, r->reason);
    ny_buf_append(&u, r->report, b->body_len);
    return u.failed ? (ny_buf_fini(&u), NULL) : ny_buf_take(&u);
}

static int prompt_tokens(const struct build *b, char **user, size_t *total, struct ny_err *err)
{
    ny_free(*user);
    if (!(*user = user_message(b)))
        return NY_ERR(err, NY_E_NOMEM, "prompt for %s: out of memory", b->r->id);
    size_t ns, nu;
    int rc = count_tokens(b->o, system_message, strlen(system_message), &ns, err);
    if (!rc)
        rc = count_tokens(b->o, *user, strlen(*user), &nu, err);
    if (!rc)
        *total = ns + nu + 2 * MSG_OVERHEAD;
    return rc;
}

/* Apply the report cap and the prompt budget; leaves the final user message in *user. */
static int fit_budget(struct build *b, struct dataset_prompt *p, char **user, struct ny_err *err)
{
    const struct dataset_prompt_opts *o = b->o;
    size_t len = strlen(b->r->report), total;
    int rc = trim_tail(o, b->r->report, len, o->max_report_tokens, &b->body_len, err);
    if (rc)
        return rc;
    p->report_trimmed = b->body_len < len;
    if ((rc = prompt_tokens(b, user, &total, err)))
        return rc;
    while (o->max_prompt_tokens && total > o->max_prompt_tokens && b->nex > 0) {
        b->nex--; /* drop the least similar example first */
        p->examples_dropped++;
        if ((rc = prompt_tokens(b, user, &total, err)))
            return rc;
    }
    for (int round = 0; o->max_prompt_tokens && total > o->max_prompt_tokens; round++) {
        size_t body_tokens;
        if ((rc = count_tokens(o, b->r->report, b->body_len, &body_tokens, err)))
            return rc;
        size_t over = total - o->max_prompt_tokens;
        if (round >= 8 || body_tokens < over + MIN_REPORT_TOKENS)
            return NY_ERR(err, NY_E_RANGE, "prompt for %s: a budget of %zu tokens leaves fewer"
                          " than %d tokens for the report", b->r->id, o->max_prompt_tokens,
                          MIN_REPORT_TOKENS);
        size_t cut;
        if ((rc = trim_tail(o, b->r->report, b->body_len, body_tokens - over, &cut, err)))
            return rc;
        b->body_len = cut;
        p->report_trimmed = 1;
        if ((rc = prompt_tokens(b, user, &total, err)))
            return rc;
    }
    p->ntokens = total;
    return NY_OK;
}

static int ready_prompt(const struct dataset_prompt_opts *o, const struct dataset_record *r,
                        struct dataset_prompt *p, struct ny_err *err)
{
    json_t *m = json_loads(r->messages_json, 0, NULL);
    if (!m)
        return NY_ERR(err, NY_E_FORMAT, "record %s: stored messages are not JSON", r->id);
    size_t i, total = 0;
    json_t *v;
    int rc = NY_OK;
    json_array_foreach(m, i, v)
    {
        const char *c = json_string_value(json_object_get(v, "content"));
        size_t n = 0;
        if (c && (rc = count_tokens(o, c, strlen(c), &n, err)))
            break;
        total += n + MSG_OVERHEAD;
    }
    json_decref(m);
    p->ntokens = total;
    if (!rc && (!(p->messages_json = ny_strdup(r->messages_json)) ||
                !(p->format = ny_strdup("ready")) || !(p->cpt_candidates = ny_strdup("")) ||
                !(p->icd_candidates = ny_strdup(""))))
        rc = NY_ERR(err, NY_E_NOMEM, "prompt for %s: out of memory", r->id);
    return rc;
}

/* The format of a record without one: explicit for 7 of 10 ids, by a fixed keyed hash. */
static const char *default_format(const char *id)
{
    return dataset_sample_key(0x666f726d6174ull, id) % 10 < 7 ? "explicit" : "embedded";
}

static int assemble(const struct dataset_prompt_opts *o, const struct dataset_record *r,
                    const struct dataset_hits *hits, struct dataset_prompt *p, struct ny_err *err)
{
    struct build b = {o, r, hits, r->format ? r->format : default_format(r->id), NULL, NULL,
                      o->rules_text ? o->rules_text : default_rules, 0, 0};
    b.nex = hits->n < o->k ? hits->n : o->k;
    p->cpt_candidates = candidates(hits, o->vote_neighbours, "cpt", o->K);
    p->icd_candidates = candidates(hits, o->vote_neighbours, "icd", o->K);
    p->format = ny_strdup(b.format);
    if (!p->cpt_candidates || !p->icd_candidates || !p->format)
        return NY_ERR(err, NY_E_NOMEM, "prompt for %s: out of memory", r->id);
    b.cpt = p->cpt_candidates;
    b.icd = p->icd_candidates;
    char *user = NULL;
    int rc = fit_budget(&b, p, &user, err);
    if (rc) {
        ny_free(user);
        return rc;
    }
    json_t *m = json_pack("[{ssss}{ssss}]", "role", "system", "content", system_message, "role",
                          "user", "content", user);
    ny_free(user);
    p->messages_json = m ? ny_json_dumps(m, 0) : NULL;
    json_decref(m);
    p->retrieved_ids = ny_calloc(b.nex ? b.nex : 1, sizeof *p->retrieved_ids);
    if (!p->messages_json || !p->retrieved_ids)
        return NY_ERR(err, NY_E_NOMEM, "prompt for %s: out of memory", r->id);
    for (size_t i = 0; i < b.nex; i++)
        if (!(p->retrieved_ids[p->nretrieved++] = ny_strdup(hits->v[i].id)))
            return NY_ERR(err, NY_E_NOMEM, "prompt for %s: out of memory", r->id);
    return NY_OK;
}

int dataset_prompt_build(struct dataset_store *st, const char *id,
                         const struct dataset_prompt_opts *o, struct dataset_prompt **out,
                         struct ny_err *err)
{
    struct dataset_prompt_opts defaults;
    if (!o) {
        dataset_prompt_opts_init(&defaults);
        o = &defaults;
    }
    if (!st || !id || !out)
        return NY_ERR(err, NY_E_INVALID, "dataset_prompt_build: NULL argument");
    if (o->max_report_tokens == 0 || !o->train_split)
        return NY_ERR(err, NY_E_INVALID, "prompt options: max_report_tokens must be > 0 and"
                      " train_split set");
    struct dataset_record *r;
    int rc = dataset_record_get(st, id, &r, err);
    if (rc)
        return rc;
    struct dataset_prompt *p = ny_calloc(1, sizeof *p);
    if (!p || !(p->id = ny_strdup(id))) {
        ny_free(p);
        dataset_record_destroy(r);
        return NY_ERR(err, NY_E_NOMEM, "prompt for %s: out of memory", id);
    }
    if (r->messages_json) {
        rc = ready_prompt(o, r, p, err);
    } else {
        struct dataset_hits hits = {0};
        size_t want = o->k > o->vote_neighbours ? o->k : o->vote_neighbours;
        rc = dataset_retrieve(st, r, o->train_split, want, o->cosine_threshold, &hits, err);
        if (!rc) {
            p->blocked_hash = hits.blocked[0];
            p->blocked_cosine = hits.blocked[1];
            p->blocked_fingerprint = hits.blocked[2];
            rc = assemble(o, r, &hits, p, err);
        }
        dataset_hits_fini(&hits);
    }
    dataset_record_destroy(r);
    if (rc) {
        dataset_prompt_destroy(p);
        return rc;
    }
    *out = p;
    return NY_OK;
}
