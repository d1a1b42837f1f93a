/* dataset_retrieve.c — few-shot retrieval: an FTS5 BM25 query built from the record's rarest
 * terms, run over the pool split, and the three-layer leakage defense (content hash, term-vector
 * cosine, metadata fingerprint) applied to every candidate in rank order. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "datasets_int.h"

#define QUERY_TERMS 24     /* at most this many terms in a BM25 query */
#define FETCH_MIN 24       /* first batch of candidates */
#define FETCH_MAX 4096     /* give up widening past this many candidates */
#define NARROW_DF_FRACTION 10 /* the narrow query's specific terms occur in <= 1/10 of documents */

/* ---- document frequencies of the FTS vocabulary (hash table keyed by FNV-1a of the term) ---- */
struct dataset_vocab {
    uint64_t *key; /* 0 = empty */
    uint32_t *df;
    size_t cap;
    size_t ndocs;
    uint64_t generation;
};

void dataset_vocab_free(struct dataset_vocab *v)
{
    if (!v)
        return;
    ny_free(v->key);
    ny_free(v->df);
    ny_free(v);
}

static uint64_t term_key(const char *t, size_t n)
{
    uint64_t h = ny_hash64(t, n);
    return h ? h : 1;
}

static void vocab_put(struct dataset_vocab *v, uint64_t k, uint32_t df)
{
    size_t i = (size_t)k & (v->cap - 1);
    while (v->key[i] && v->key[i] != k)
        i = (i + 1) & (v->cap - 1);
    v->key[i] = k;
    v->df[i] = df;
}

static uint32_t vocab_df(const struct dataset_vocab *v, uint64_t k)
{
    size_t i = (size_t)k & (v->cap - 1);
    while (v->key[i]) {
        if (v->key[i] == k)
            return v->df[i];
        i = (i + 1) & (v->cap - 1);
    }
    return 0;
}

static int vocab_load(struct dataset_store *st, struct ny_err *err)
{
    if (st->vocab && st->vocab->generation == st->generation)
        return NY_OK;
    dataset_vocab_free(st->vocab);
    st->vocab = NULL;
    int rc = dataset_db_exec(st, "CREATE VIRTUAL TABLE IF NOT EXISTS temp.records_vocab USING"
                             " fts5vocab(main, 'records_fts', 'row')", "vocabulary", err);
    if (rc)
        return rc;
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(st->db, "SELECT (SELECT count(*) FROM records),"
                           " (SELECT count(*) FROM temp.records_vocab)", -1, &s, NULL) != SQLITE_OK)
        return NY_ERR(err, NY_E_DB, "%s: vocabulary: %s", st->path, sqlite3_errmsg(st->db));
    size_t ndocs = 0, nterms = 0;
    if (sqlite3_step(s) == SQLITE_ROW) {
        ndocs = (size_t)sqlite3_column_int64(s, 0);
        nterms = (size_t)sqlite3_column_int64(s, 1);
    }
    sqlite3_finalize(s);
    struct dataset_vocab *v = ny_calloc(1, sizeof *v);
    size_t cap = 64;
    while (cap < 2 * nterms + 2)
        cap <<= 1;
    if (!v || !(v->key = ny_calloc(cap, sizeof *v->key)) || !(v->df = ny_calloc(cap, 4))) {
        dataset_vocab_free(v);
        return NY_ERR(err, NY_E_NOMEM, "vocabulary of %zu terms: out of memory", nterms);
    }
    v->cap = cap;
    v->ndocs = ndocs;
    v->generation = st->generation;
    if (sqlite3_prepare_v2(st->db, "SELECT term, doc FROM temp.records_vocab", -1, &s, NULL) !=
        SQLITE_OK) {
        dataset_vocab_free(v);
        return NY_ERR(err, NY_E_DB, "%s: vocabulary: %s", st->path, sqlite3_errmsg(st->db));
    }
    size_t loaded = 0;
    while (sqlite3_step(s) == SQLITE_ROW && loaded < nterms) {
        const char *t = (const char *)sqlite3_column_text(s, 0);
        vocab_put(v, term_key(t, (size_t)sqlite3_column_bytes(s, 0)),
                  (uint32_t)sqlite3_column_int64(s, 1));
        loaded++;
    }
    sqlite3_finalize(s);
    st->vocab = v;
    return NY_OK;
}

/* ---- the query: the record's rarest distinct words ------------------------------------------- */
struct qterm {
    char t[48];
    uint32_t df;
    int head; /* from the exam description or reason */
};

static int qterm_cmp(const void *a, const void *b)
{
    const struct qterm *x = a, *y = b;
    int hx = x->head >= 2, hy = y->head >= 2; /* exam description terms first */
    if (hx != hy)
        return hy - hx;
    if (x->head != y->head)
        return y->head - x->head;
    if (x->df != y->df)
        return x->df < y->df ? -1 : 1;
    return strcmp(x->t, y->t);
}

static int all_digits(const char *t)
{
    for (; *t; t++)
        if (*t < '0' || *t > '9')
            return 0;
    return 1;
}

static size_t collect_terms(const struct dataset_vocab *v, const char *text, int head,
                            struct qterm *q, size_t n, size_t cap)
{
    struct dataset_words w;
    char buf[48];
    size_t len;
    dataset_words_init(&w, text, strlen(text));
    while ((len = dataset_words_next(&w, buf)) && n < cap) {
        if (len < 2 || all_digits(buf))
            continue;
        uint32_t df = vocab_df(v, term_key(buf, len));
        /* terms in no document cannot match; terms in over half of them carry little signal */
        if (df == 0 || (size_t)df * 2 > v->ndocs)
            continue;
        size_t i;
        for (i = 0; i < n; i++)
            if (!strcmp(q[i].t, buf))
                break;
        if (i < n) {
            q[i].head |= head;
            continue;
        }
        memcpy(q[n].t, buf, len + 1);
        q[n].df = df;
        q[n++].head = head;
    }
    return n;
}

/* The BM25 query. Narrow form (narrow = 1): the two rarest exam-description terms, required in
 * the exam description, AND (the other terms; report terms only when specific), so that only
 * the exam's family is scored; wide form: all selected terms OR'ed. NULL when there is no usable
 * term. */
static char *build_query(const struct dataset_vocab *v, const struct dataset_record *r,
                         int narrow)
{
    size_t cap = 1024;
    struct qterm *q = ny_calloc(cap, sizeof *q);
    if (!q)
        return NULL;
    size_t n = collect_terms(v, r->exam_description, 2, q, 0, cap);
    n = collect_terms(v, r->reason, 1, q, n, cap);
    n = collect_terms(v, r->report, 0, q, n, cap);
    qsort(q, n, sizeof *q, qterm_cmp); /* description terms, reason terms, then rarest first */
    struct ny_buf b;
    ny_buf_init(&b);
    size_t nhead = 0, nrest = 0;
    for (size_t i = 0; i < n && i < QUERY_TERMS; i++)
        nhead += q[i].head == 2 || q[i].head == 3;
    if (narrow && nhead) {
        /* the two rarest exam-description terms, both in the exam description, select the
         * exam family (ties by term) */
        size_t a = 0, b2 = nhead;
        for (size_t i = 1; i < nhead; i++)
            if (q[i].df < q[a].df || (q[i].df == q[a].df && strcmp(q[i].t, q[a].t) < 0))
                a = i;
        for (size_t i = 0; i < nhead; i++)
            if (i != a && (b2 == nhead || q[i].df < q[b2].df ||
                           (q[i].df == q[b2].df && strcmp(q[i].t, q[b2].t) < 0)))
                b2 = i;
        if (b2 == nhead)
            b2 = a;
        ny_buf_printf(&b, "(exam_description : (\"%s\"", q[a].t);
        if (b2 != a)
            ny_buf_printf(&b, " AND \"%s\"", q[b2].t);
        ny_buf_puts(&b, ")");
        ny_buf_puts(&b, ") AND (");
        for (size_t i = 0; i < n && i < QUERY_TERMS; i++) {
            if (i == a || i == b2)
                continue;
            if (q[i].head == 0 && (size_t)q[i].df * NARROW_DF_FRACTION > v->ndocs)
                continue;
            ny_buf_printf(&b, "%s\"%s\"", nrest++ ? " OR " : "", q[i].t);
        }
        ny_buf_puts(&b, ")");
    } else if (!narrow) {
        for (size_t i = 0; i < n && i < QUERY_TERMS; i++)
            ny_buf_printf(&b, "%s\"%s\"", i ? " OR " : "", q[i].t);
    }
    ny_free(q);
    if (b.failed || !b.len || (narrow && nrest == 0)) {
        ny_buf_fini(&b);
        return NULL;
    }
    return ny_buf_take(&b);
}

/* ---- leakage layer 2: cosine of word-count vectors ------------------------------------------- */
struct tv {
    uint64_t *k;
    size_t n;
};

static int u64_cmp(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static int tv_build(struct tv *t, const char *text)
{
    size_t cap = 256, len;
    char buf[48];
    struct dataset_words w;
    t->n = 0;
    t->k = ny_malloc(cap * sizeof *t->k);
    if (!t->k)
        return NY_E_NOMEM;
    dataset_words_init(&w, text, strlen(text));
    while ((len = dataset_words_next(&w, buf))) {
        if (t->n == cap) {
            uint64_t *g = ny_reallocarray(t->k, cap * 2, sizeof *g);
            if (!g)
                return NY_E_NOMEM;
            t->k = g;
            cap *= 2;
        }
        t->k[t->n++] = term_key(buf, len);
    }
    qsort(t->k, t->n, sizeof *t->k, u64_cmp);
    return NY_OK;
}

/* dot product and squared norms from two sorted key lists (runs = counts) */
static double tv_cosine(const struct tv *a, const struct tv *b)
{
    double dot = 0, na = 0, nb = 0;
    size_t i = 0, j = 0;
    while (i < a->n || j < b->n) {
        uint64_t ka = i < a->n ? a->k[i] : UINT64_MAX, kb = j < b->n ? b->k[j] : UINT64_MAX;
        uint64_t k = ka < kb ? ka : kb;
        double ca = 0, cb = 0;
        while (i < a->n && a->k[i] == k)
            ca++, i++;
        while (j < b->n && b->k[j] == k)
            cb++, j++;
        dot += ca * cb;
        na += ca * ca;
        nb += cb * cb;
    }
    return na > 0 && nb > 0 ? dot / (sqrt(na) * sqrt(nb)) : 0.0;
}

static char *record_text(const char *d, const char *r, const char *rep)
{
    struct ny_buf b;
    ny_buf_init(&b);
    ny_buf_printf(&b, "%s\n%s\n%s", d, r, rep);
    return b.failed ? (ny_buf_fini(&b), NULL) : ny_buf_take(&b);
}

double dataset_text_cosine(const char *a, const char *b)
{
    struct tv x = {0}, y = {0};
    double c = 0;
    if (!tv_build(&x, a) && !tv_build(&y, b))
        c = tv_cosine(&x, &y);
    ny_free(x.k);
    ny_free(y.k);
    return c;
}

/* ---- layer 3: fingerprint -------------------------------------------------------------------- */
static int same(const char *a, const unsigned char *b)
{
    return a && b && *a && !strcmp(a, (const char *)b);
}

static int fingerprint_match(const struct dataset_record *q, sqlite3_stmt *s)
{
    if (same(q->accession, sqlite3_column_text(s, 7)))
        return 1;
    return same(q->patient, sqlite3_column_text(s, 6)) &&
           same(q->study_date, sqlite3_column_text(s, 8));
}

/* BM25 over the whole index, best first (bm25() is negative: smaller is better). */
static const char *rank_sql =
    "SELECT rowid, bm25(records_fts) FROM records_fts WHERE records_fts MATCH ?1"
    " ORDER BY bm25(records_fts) LIMIT ?2";
/* One candidate: column 1 is a placeholder for the score (set from the rank query). */
static const char *row_sql =
    "SELECT id, NULL, exam_description, reason, report, content_hash, patient, accession,"
    " study_date, gold, split FROM records WHERE rowid = ?1";

void dataset_hits_fini(struct dataset_hits *h)
{
    for (size_t i = 0; h->v && i < h->n; i++) {
        ny_free(h->v[i].id);
        ny_free(h->v[i].exam_description);
        ny_free(h->v[i].reason);
        ny_free(h->v[i].report);
        json_decref(h->v[i].gold);
    }
    ny_free(h->v);
    memset(h, 0, sizeof *h);
}

static int keep_hit(struct dataset_hits *h, sqlite3_stmt *s)
{
    struct dataset_hit *x = &h->v[h->n];
    memset(x, 0, sizeof *x);
    x->id = ny_strdup((const char *)sqlite3_column_text(s, 0));
    x->score = -sqlite3_column_double(s, 1);
    x->exam_description = ny_strdup((const char *)sqlite3_column_text(s, 2));
    x->reason = ny_strdup((const char *)sqlite3_column_text(s, 3));
    x->report = ny_strdup((const char *)sqlite3_column_text(s, 4));
    const char *g = (const char *)sqlite3_column_text(s, 9);
    x->gold = g ? json_loads(g, 0, NULL) : NULL;
    h->n++;
    return x->id && x->exam_description && x->reason && x->report ? NY_OK : NY_E_NOMEM;
}

struct ranked {
    sqlite3_int64 rowid;
    double bm25;
    char *id; /* loaded only to order ties */
};

static int ranked_cmp(const void *a, const void *b)
{
    const struct ranked *x = a, *y = b;
    if (x->bm25 != y->bm25)
        return x->bm25 < y->bm25 ? -1 : 1;
    if (x->id && y->id)
        return strcmp(x->id, y->id);
    return x->rowid < y->rowid ? -1 : x->rowid > y->rowid;
}

struct pass {
    sqlite3_stmt *rank, *row;
    const struct dataset_record *q;
    const struct tv *qv;
    const char *pool;
    size_t want;
    double thr;
};

/* Judge one candidate row (the row statement stepped on it): skip other splits, count the
 * leakage layers, keep the rest. */
static int judge(struct pass *ps, struct dataset_hits *h, double bm25, struct ny_err *err)
{
    sqlite3_stmt *s = ps->row;
    const struct dataset_record *q = ps->q;
    if (strcmp((const char *)sqlite3_column_text(s, 10), ps->pool))
        return NY_OK;
    if (!strcmp((const char *)sqlite3_column_text(s, 5), q->content_hash)) {
        h->blocked[0]++;
        return NY_OK;
    }
    char *text = record_text((const char *)sqlite3_column_text(s, 2),
                             (const char *)sqlite3_column_text(s, 3),
                             (const char *)sqlite3_column_text(s, 4));
    struct tv cv = {0};
    if (!text || tv_build(&cv, text)) {
        ny_free(text);
        ny_free(cv.k);
        return NY_ERR(err, NY_E_NOMEM, "retrieval for %s: out of memory", q->id);
    }
    double c = tv_cosine(ps->qv, &cv);
    ny_free(text);
    ny_free(cv.k);
    if (c > ps->thr) {
        h->blocked[1]++;
        return NY_OK;
    }
    if (fingerprint_match(q, s)) {
        h->blocked[2]++;
        return NY_OK;
    }
    if (keep_hit(h, s))
        return NY_ERR(err, NY_E_NOMEM, "retrieval for %s: out of memory", q->id);
    h->v[h->n - 1].score = -bm25;
    return NY_OK;
}

static int load_row(struct pass *ps, sqlite3_int64 rowid)
{
    sqlite3_reset(ps->row);
    sqlite3_bind_int64(ps->row, 1, rowid);
    return sqlite3_step(ps->row) == SQLITE_ROW;
}

/* Order the rows by (bm25, id): ids are loaded for runs of equal scores only. */
static int order_ties(struct pass *ps, struct ranked *r, size_t n)
{
    for (size_t i = 0; i < n;) {
        size_t j = i + 1;
        while (j < n && r[j].bm25 == r[i].bm25)
            j++;
        for (size_t k = i; j - i > 1 && k < j; k++) {
            if (!load_row(ps, r[k].rowid))
                return NY_E_DB;
            if (!(r[k].id = ny_strdup((const char *)sqlite3_column_text(ps->row, 0))))
                return NY_E_NOMEM;
        }
        if (j - i > 1)
            qsort(r + i, j - i, sizeof *r, ranked_cmp);
        i = j;
    }
    return NY_OK;
}

/* One pass over the best `limit` matches. Only rows scoring strictly better than the last row
 * fetched are certain to precede every row not fetched, so a full window trusts those alone
 * (ties across the window's edge are then ordered by id correctly). *exhausted: no more rows. */
static int retrieve_pass(struct dataset_store *st, struct pass *ps, size_t limit,
                         struct dataset_hits *h, int *exhausted, struct ny_err *err)
{
    struct ranked *r = ny_calloc(limit, sizeof *r);
    if (!r)
        return NY_ERR(err, NY_E_NOMEM, "retrieval for %s: out of memory", ps->q->id);
    sqlite3_reset(ps->rank);
    sqlite3_bind_int64(ps->rank, 2, (sqlite3_int64)limit);
    size_t n = 0;
    int step, rc = NY_OK;
    while (n < limit && (step = sqlite3_step(ps->rank)) == SQLITE_ROW) {
        r[n].rowid = sqlite3_column_int64(ps->rank, 0);
        r[n++].bm25 = sqlite3_column_double(ps->rank, 1);
    }
    if (n < limit && step != SQLITE_DONE)
        rc = NY_ERR(err, NY_E_DB, "%s: retrieval for %s: %s", st->path, ps->q->id,
                    sqlite3_errmsg(st->db));
    size_t trusted = n;
    if (n == limit)
        while (trusted > 0 && r[trusted - 1].bm25 == r[n - 1].bm25)
            trusted--;
    if (!rc && (rc = order_ties(ps, r, trusted)))
        rc = NY_ERR(err, rc, "%s: retrieval for %s: reading candidates failed", st->path,
                    ps->q->id);
    for (size_t i = 0; !rc && i < trusted && h->n < ps->want; i++) {
        if (!load_row(ps, r[i].rowid))
            rc = NY_ERR(err, NY_E_DB, "%s: retrieval: candidate row %lld vanished", st->path,
                        (long long)r[i].rowid);
        else
            rc = judge(ps, h, r[i].bm25, err);
    }
    for (size_t i = 0; i < n; i++)
        ny_free(r[i].id);
    ny_free(r);
    *exhausted = n < limit;
    return rc;
}

/* Run one query, widening the candidate window until `want` neighbours pass the defense. */
static int retrieve_query(struct dataset_store *st, struct pass *ps, const char *query,
                          struct dataset_hits *out, struct ny_err *err)
{
    struct dataset_hits h = {0};
    int rc = NY_OK;
    if (sqlite3_prepare_v2(st->db, rank_sql, -1, &ps->rank, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(st->db, row_sql, -1, &ps->row, NULL) != SQLITE_OK)
        rc = NY_ERR(err, NY_E_DB, "%s: retrieval: %s", st->path, sqlite3_errmsg(st->db));
    else
        sqlite3_bind_text(ps->rank, 1, query, -1, SQLITE_STATIC);
    for (size_t limit = ps->want + FETCH_MIN; !rc; limit *= 4) {
        int exhausted = 0;
        if (!(h.v = ny_calloc(ps->want, sizeof *h.v))) {
            rc = NY_ERR(err, NY_E_NOMEM, "retrieval for %s: out of memory", ps->q->id);
            break;
        }
        rc = retrieve_pass(st, ps, limit, &h, &exhausted, err);
        if (rc || h.n >= ps->want || exhausted || limit >= FETCH_MAX)
            break;
        /* start over with a wider window so counts and order stay those of one pass */
        dataset_hits_fini(&h);
    }
    sqlite3_finalize(ps->rank);
    sqlite3_finalize(ps->row);
    ps->rank = ps->row = NULL;
    if (rc) {
        dataset_hits_fini(&h);
        return rc;
    }
    *out = h;
    return NY_OK;
}

int dataset_retrieve(struct dataset_store *st, const struct dataset_record *q, const char *pool,
                     size_t want, double thr, struct dataset_hits *out, struct ny_err *err)
{
    struct dataset_hits h = {0};
    if (want == 0) {
        *out = h;
        return NY_OK;
    }
    int rc = vocab_load(st, err);
    if (rc)
        return rc;
    char *qtext = record_text(q->exam_description, q->reason, q->report);
    struct tv qv = {0};
    if (!qtext || tv_build(&qv, qtext))
        rc = NY_ERR(err, NY_E_NOMEM, "retrieval for %s: out of memory", q->id);
    /* the narrow query first; the wide one when it finds too few neighbours */
    for (int narrow = 1; !rc && narrow >= 0; narrow--) {
        char *query = build_query(st->vocab, q, narrow);
        if (!query)
            continue;
        dataset_hits_fini(&h);
        ny_log_debug("retrieval for %s (%s): %s", q->id, narrow ? "narrow" : "wide", query);
        struct pass ps = {NULL, NULL, q, &qv, pool, want, thr};
        rc = retrieve_query(st, &ps, query, &h, err);
        ny_free(query);
        if (!rc && h.n >= want)
            break;
    }
    ny_free(qtext);
    ny_free(qv.k);
    if (rc) {
        dataset_hits_fini(&h);
        return rc;
    }
    *out = h;
    return NY_OK;
}
