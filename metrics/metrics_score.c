/* metrics_score.c — per-record scores (metrics.h, section 4) and the ICD error taxonomy of one
 * record (metrics_int.h). */
#include <string.h>

#include "metrics_int.h"

static const char *const binary_names[METRICS_N_BINARY] = {
    "cpt_exact",       "cpt_primary",      "modifier_exact",  "icd_exact",
    "icd_any_overlap", "icd_root_overlap", "all_three_exact",
};

const char *metrics_binary_name(enum metrics_binary m)
{
    return (unsigned)m < METRICS_N_BINARY ? binary_names[m] : "?";
}

static int contains(const struct metrics_code *a, size_t n, const char *s)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(a[i].s, s) == 0)
            return 1;
    return 0;
}

/* Both lists are duplicate-free, so equal sizes and inclusion mean equal sets. */
static int set_equal(const struct metrics_code *a, size_t na, const struct metrics_code *b,
                     size_t nb)
{
    if (na != nb)
        return 0;
    for (size_t i = 0; i < na; i++)
        if (!contains(b, nb, a[i].s))
            return 0;
    return 1;
}

static size_t intersect(const struct metrics_code *a, size_t na, const struct metrics_code *b,
                        size_t nb)
{
    size_t k = 0;
    for (size_t i = 0; i < na; i++)
        k += (size_t)contains(b, nb, a[i].s);
    return k;
}

static int same_root(const char *a, const char *b)
{
    return strncmp(a, b, 3) == 0;
}

void metrics_score_record(const struct metrics_codes *gold, const struct metrics_codes *pred,
                          struct metrics_record_score *out)
{
    memset(out, 0, sizeof *out);
    unsigned char *v = out->bin;
    v[METRICS_CPT_EXACT] = (unsigned char)set_equal(pred->cpt, pred->n_cpt, gold->cpt, gold->n_cpt);
    if (pred->n_cpt == 0 || gold->n_cpt == 0)
        v[METRICS_CPT_PRIMARY] = pred->n_cpt == 0 && gold->n_cpt == 0;
    else
        v[METRICS_CPT_PRIMARY] = strcmp(pred->cpt[0].s, gold->cpt[0].s) == 0;
    v[METRICS_MODIFIER_EXACT] =
        (unsigned char)set_equal(pred->mod, pred->n_mod, gold->mod, gold->n_mod);
    v[METRICS_ICD_EXACT] = (unsigned char)set_equal(pred->icd, pred->n_icd, gold->icd, gold->n_icd);
    size_t tp = intersect(pred->icd, pred->n_icd, gold->icd, gold->n_icd);
    int both_empty = pred->n_icd == 0 && gold->n_icd == 0;
    v[METRICS_ICD_ANY_OVERLAP] = (unsigned char)(both_empty || tp > 0);
    int root = both_empty;
    for (size_t i = 0; i < pred->n_icd && !root; i++)
        for (size_t j = 0; j < gold->n_icd && !root; j++)
            root = same_root(pred->icd[i].s, gold->icd[j].s);
    v[METRICS_ICD_ROOT_OVERLAP] = (unsigned char)root;
    v[METRICS_ALL_THREE_EXACT] = v[METRICS_CPT_EXACT] && v[METRICS_MODIFIER_EXACT] &&
                                 v[METRICS_ICD_EXACT];
    out->icd_tp = tp;
    out->icd_pred = pred->n_icd;
    out->icd_gold = gold->n_icd;
    if (gold->n_icd == 0)
        out->icd_recall = pred->n_icd == 0 ? 1.0 : 0.0;
    else
        out->icd_recall = (double)tp / (double)gold->n_icd;
    if (pred->n_icd == 0)
        out->icd_precision = gold->n_icd == 0 ? 1.0 : 0.0;
    else
        out->icd_precision = (double)tp / (double)pred->n_icd;
}

/* One pairing pass: each unpaired missed gold code takes the first unpaired, valid, extra
 * prediction that satisfies want_same_root. */
static int pair_pass(const struct metrics_codes *gold, const struct metrics_codes *pred,
                     unsigned char *g_used, unsigned char *p_used, int want_same_root,
                     size_t *count, metrics_pair_fn on_pair, void *ctx)
{
    for (size_t g = 0; g < gold->n_icd; g++) {
        if (g_used[g])
            continue;
        for (size_t p = 0; p < pred->n_icd; p++) {
            if (p_used[p])
                continue;
            if (same_root(gold->icd[g].s, pred->icd[p].s) != want_same_root)
                continue;
            g_used[g] = p_used[p] = 1;
            (*count)++;
            if (on_pair) {
                int rc = on_pair(ctx, gold->icd[g].s, pred->icd[p].s);
                if (rc)
                    return rc;
            }
            break;
        }
    }
    return 0;
}

int metrics_taxonomy_record(const struct metrics_codes *gold, const struct metrics_codes *pred,
                            const unsigned char *pred_invalid, struct metrics_taxo *t,
                            metrics_pair_fn on_pair, void *ctx)
{
    /* Code lists are short (one line): marks live on the stack unless a hostile line is long. */
    unsigned char stack[512], *marks = stack;
    size_t ng = gold->n_icd, np = pred->n_icd;
    if (ng + np > sizeof stack && !(marks = ny_malloc(ng + np)))
        return NY_E_NOMEM;
    unsigned char *g_used = marks, *p_used = marks + ng;
    const struct metrics_codes *g = gold, *p = pred;
    /* Codes found in both lists are not errors: mark them used on both sides. */
    for (size_t i = 0; i < ng; i++)
        g_used[i] = (unsigned char)contains(p->icd, np, g->icd[i].s);
    for (size_t i = 0; i < np; i++) {
        p_used[i] = (unsigned char)contains(g->icd, ng, p->icd[i].s);
        if (!p_used[i] && pred_invalid && pred_invalid[i]) {
            p_used[i] = 1;
            t->hallucinated++;
        }
    }
    int rc = pair_pass(g, p, g_used, p_used, 1, &t->specificity, on_pair, ctx);
    if (rc == 0)
        rc = pair_pass(g, p, g_used, p_used, 0, &t->wrong_category, on_pair, ctx);
    for (size_t i = 0; i < ng; i++)
        t->missed += !g_used[i];
    for (size_t i = 0; i < np; i++)
        t->extra += !p_used[i];
    if (marks != stack)
        ny_free(marks);
    return rc;
}
