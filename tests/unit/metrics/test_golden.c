/* test_golden.c — the statistics against golden/metrics/stats_cases.json (statsmodels and scipy
 * on seeded random data; made by golden/metrics/gen_golden.py): Wilson, exact McNemar, Newcombe's
 * paired interval, Cochran's Q, Holm, the chi-square tail, the PRNG and the bootstrap. */
#include <jansson.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "metrics.h"

static json_t *cases;

static int setup(void **state)
{
    (void)state;
    const char *src = getenv("NY_SOURCE_DIR");
    char path[1024];
    snprintf(path, sizeof path, "%s/golden/metrics/stats_cases.json", src ? src : ".");
    struct ny_err err;
    ny_err_init(&err);
    if (ny_json_load_file(path, 16u << 20, &cases, &err) != 0) {
        fprintf(stderr, "%s\n", err.msg);
        return -1;
    }
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    json_decref(cases);
    return 0;
}

static double get(json_t *o, const char *k)
{
    json_t *v = json_object_get(o, k);
    if (!json_is_number(v))
        fail_msg("golden case lacks number \"%s\"", k);
    return json_number_value(v);
}

/* |got - want| <= abs_tol + rel_tol |want| */
static void close_to(double got, double want, double abs_tol, double rel_tol, const char *what,
                     size_t i)
{
    if (!(fabs(got - want) <= abs_tol + rel_tol * fabs(want)))
        fail_msg("%s case %zu: got %.17g, want %.17g", what, i, got, want);
}

static json_t *list(const char *k)
{
    json_t *a = json_object_get(cases, k);
    assert_true(json_array_size(a) > 0);
    return a;
}

static void test_wilson(void **state)
{
    (void)state;
    size_t i;
    json_t *c;
    json_array_foreach(list("wilson"), i, c) {
        double lo, hi;
        metrics_wilson((uint64_t)get(c, "k"), (uint64_t)get(c, "n"), METRICS_Z95, &lo, &hi);
        close_to(lo, get(c, "lo"), 1e-12, 0, "wilson lo", i);
        close_to(hi, get(c, "hi"), 1e-12, 0, "wilson hi", i);
    }
}

static void test_mcnemar(void **state)
{
    (void)state;
    size_t i;
    json_t *c;
    json_array_foreach(list("mcnemar"), i, c) {
        double p = metrics_mcnemar_exact((uint64_t)get(c, "n01"), (uint64_t)get(c, "n10"));
        /* Exact binomial sums: relative 1e-12 (p reaches 1e-18 here). */
        close_to(p, get(c, "p"), 1e-300, 1e-12, "mcnemar", i);
        close_to(p, get(c, "p_binomtest"), 1e-300, 1e-12, "mcnemar/binomtest", i);
    }
}

static void test_newcombe(void **state)
{
    (void)state;
    size_t i;
    json_t *c;
    json_array_foreach(list("newcombe"), i, c) {
        double d, lo, hi;
        metrics_newcombe_paired((uint64_t)get(c, "n11"), (uint64_t)get(c, "n10"),
                                (uint64_t)get(c, "n01"), (uint64_t)get(c, "n00"), METRICS_Z95, &d,
                                &lo, &hi);
        close_to(d, get(c, "delta"), 1e-12, 0, "newcombe delta", i);
        close_to(lo, get(c, "lo"), 1e-12, 0, "newcombe lo", i);
        close_to(hi, get(c, "hi"), 1e-12, 0, "newcombe hi", i);
    }
}

static void test_cochran(void **state)
{
    (void)state;
    size_t i;
    json_t *c;
    json_array_foreach(list("cochran"), i, c) {
        size_t n = (size_t)get(c, "n"), k = (size_t)get(c, "k");
        json_t *x = json_object_get(c, "x");
        assert_int_equal(json_array_size(x), n * k);
        unsigned char *m = malloc(n * k);
        assert_non_null(m);
        for (size_t j = 0; j < n * k; j++)
            m[j] = (unsigned char)json_integer_value(json_array_get(x, j));
        double q, p;
        int df;
        metrics_cochran_q(m, n, k, &q, &df, &p);
        free(m);
        close_to(q, get(c, "q"), 1e-12, 1e-12, "cochran q", i);
        assert_int_equal(df, (int)get(c, "df"));
        /* The chi-square tail (series / continued fraction) holds relative 1e-12. */
        close_to(p, get(c, "p"), 1e-300, 1e-12, "cochran p", i);
    }
}

static void test_holm(void **state)
{
    (void)state;
    size_t i;
    json_t *c;
    json_array_foreach(list("holm"), i, c) {
        json_t *pj = json_object_get(c, "p"), *aj = json_object_get(c, "adj");
        size_t m = json_array_size(pj);
        double p[16], adj[16];
        assert_true(m <= 16);
        for (size_t j = 0; j < m; j++)
            p[j] = json_real_value(json_array_get(pj, j));
        metrics_holm(p, m, adj);
        for (size_t j = 0; j < m; j++)
            close_to(adj[j], json_number_value(json_array_get(aj, j)), 1e-12, 0, "holm", i);
    }
}

static void test_chi2(void **state)
{
    (void)state;
    size_t i;
    json_t *c;
    json_array_foreach(list("chi2"), i, c) {
        double sf = metrics_chi2_sf(get(c, "x"), (int)get(c, "df"));
        close_to(sf, get(c, "sf"), 1e-300, 1e-12, "chi2 sf", i);
    }
}

static void test_rng_and_bootstrap(void **state)
{
    (void)state;
    json_t *r = json_object_get(cases, "rng");
    struct metrics_rng rng;
    metrics_rng_seed(&rng, (uint64_t)json_integer_value(json_object_get(r, "seed")));
    size_t i;
    json_t *v;
    json_array_foreach(json_object_get(r, "next"), i, v) {
        uint64_t want = strtoull(json_string_value(v), NULL, 10);
        assert_true(metrics_rng_next(&rng) == want);
    }
    uint64_t n = (uint64_t)json_integer_value(json_object_get(r, "below_n"));
    json_array_foreach(json_object_get(r, "below"), i, v)
        assert_true(metrics_rng_below(&rng, n) == (uint64_t)json_integer_value(v));
    json_t *c;
    json_array_foreach(list("bootstrap"), i, c) {
        json_t *vals = json_object_get(c, "values");
        size_t nv = json_array_size(vals);
        double *x = malloc(nv * sizeof *x);
        assert_non_null(x);
        for (size_t j = 0; j < nv; j++)
            x[j] = json_number_value(json_array_get(vals, j));
        double lo, hi;
        uint64_t seed = (uint64_t)json_integer_value(json_object_get(c, "seed"));
        assert_int_equal(metrics_bootstrap_mean_ci(x, nv, seed, (size_t)get(c, "resamples"), &lo,
                                                   &hi),
                         0);
        free(x);
        close_to(lo, get(c, "lo"), 1e-12, 0, "bootstrap lo", i);
        close_to(hi, get(c, "hi"), 1e-12, 0, "bootstrap hi", i);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_wilson),   cmocka_unit_test(test_mcnemar),
        cmocka_unit_test(test_newcombe), cmocka_unit_test(test_cochran),
        cmocka_unit_test(test_holm),     cmocka_unit_test(test_chi2),
        cmocka_unit_test(test_rng_and_bootstrap),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
