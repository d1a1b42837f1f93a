/* test_stats.c — the interval formulas against published worked examples, McNemar against exact
 * binomial sums, Cochran's Q and Holm against hand computations, the PRNG and percentiles. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "metrics.h"

#define Z METRICS_Z95
/* Published figures are printed to 4 decimals. */
#define PUB 5e-5

static void near(double got, double want, double tol)
{
    if (fabs(got - want) > tol)
        fail_msg("got %.17g, want %.17g (tolerance %g)", got, want, tol);
}

/* Newcombe RG (1998) Two-sided confidence intervals for the single proportion: comparison of
 * seven methods. Stat Med 17:857-872, Table I, method 3 (score): 81/263, 15/148, 0/20, 1/29. */
static void test_wilson_newcombe_table(void **state)
{
    (void)state;
    static const struct { uint64_t k, n; double lo, hi; } ex[] = {
        {81, 263, 0.2553, 0.3662},
        {15, 148, 0.0624, 0.1605},
        {0, 20, 0.0000, 0.1611},
        {1, 29, 0.0061, 0.1718},
    };
    for (size_t i = 0; i < sizeof ex / sizeof *ex; i++) {
        double lo, hi;
        metrics_wilson(ex[i].k, ex[i].n, Z, &lo, &hi);
        near(lo, ex[i].lo, PUB);
        near(hi, ex[i].hi, PUB);
    }
}

static void test_wilson_closed_forms(void **state)
{
    (void)state;
    double lo, hi;
    /* k = n: lo = n / (n + z^2), hi = 1 exactly; k = 0 mirrors it. */
    metrics_wilson(20, 20, Z, &lo, &hi);
    near(lo, 20.0 / (20.0 + Z * Z), 1e-15);
    assert_true(hi == 1.0);
    metrics_wilson(0, 20, Z, &lo, &hi);
    assert_true(lo == 0.0);
    near(hi, Z * Z / (20.0 + Z * Z), 1e-15);
    /* k = n/2: symmetric about 1/2, half-width z sqrt(n/4 + z^2/4) / (n + z^2). */
    metrics_wilson(50, 100, Z, &lo, &hi);
    double half = Z * sqrt(100.0 / 4 + Z * Z / 4) / (100.0 + Z * Z);
    near(lo, 0.5 - half, 1e-15);
    near(hi, 0.5 + half, 1e-15);
    metrics_wilson(0, 0, Z, &lo, &hi);
    assert_true(lo == 0.0 && hi == 1.0);
}

/* Altman DG, Machin D, Bryant TN, Gardner MJ (2000) Statistics with Confidence, 2nd ed., ch. 6,
 * Table 6.2 (paired, 14 / 5 / 0 / 22 of 41; difference 5/41 = 0.122). The limits, to 4 decimals,
 * are recomputed independently by golden/metrics/gen_golden.py's pure-Python formula. */
static void test_newcombe_altman_table_6_2(void **state)
{
    (void)state;
    double d, lo, hi;
    /* The first classification is b here: 5 pairs positive on b only (n01), none on a only. */
    metrics_newcombe_paired(14, 0, 5, 22, Z, &d, &lo, &hi);
    near(d, 5.0 / 41.0, 1e-15);
    near(lo, 0.0115, PUB);
    near(hi, 0.2265, PUB);
}

/* Newcombe RG (1998) Improved confidence intervals for the difference between binomial
 * proportions based on paired data. Stat Med 17:2635-2650, example (a): 36 / 12 / 2 / 0,
 * difference 0.2; method-10 limits 0.0569 to 0.3404 (recomputed as above). Swapping a and b
 * negates the interval. */
static void test_newcombe_1998_example(void **state)
{
    (void)state;
    double d, lo, hi;
    metrics_newcombe_paired(36, 2, 12, 0, Z, &d, &lo, &hi);
    near(d, 0.2, 1e-15);
    near(lo, 0.0569, PUB);
    near(hi, 0.3404, PUB);
    double d2, lo2, hi2;
    metrics_newcombe_paired(36, 12, 2, 0, Z, &d2, &lo2, &hi2);
    near(d2, -0.2, 1e-15);
    near(lo2, -hi, 1e-15);
    near(hi2, -lo, 1e-15);
}

/* Fagerland, Lydersen, Laake (2017) Statistical Analysis of Contingency Tables, ch. 8: Bentur
 * et al. 2009 (1, 1 / 7, 12); Newcombe square-and-add limits -0.5069 to -0.0256 (recomputed as
 * above). The phi correction matters here: A = 12 - 7 = 5 <= n/2 gives phi = 0 (the plain phi
 * would give -0.5017 to -0.0361). */
static void test_newcombe_phi_correction(void **state)
{
    (void)state;
    double d, lo, hi;
    /* p1 = row margin 2/21 is b, p2 = column margin 8/21 is a: n01 = 1 (b only), n10 = 7. */
    metrics_newcombe_paired(1, 7, 1, 12, Z, &d, &lo, &hi);
    near(d, (2.0 - 8.0) / 21.0, 1e-15);
    near(lo, -0.5069, PUB);
    near(hi, -0.0256, PUB);
    /* Empty margin: phi = 0, and n = 0 gives the whole range. */
    metrics_newcombe_paired(0, 0, 0, 0, Z, &d, &lo, &hi);
    assert_true(d == 0.0 && lo == -1.0 && hi == 1.0);
}

static void test_mcnemar_exact_binomial(void **state)
{
    (void)state;
    /* n = 10, min = 1: 2 (C(10,0) + C(10,1)) / 2^10 = 22/1024. */
    near(metrics_mcnemar_exact(1, 9), 22.0 / 1024.0, 1e-16);
    near(metrics_mcnemar_exact(9, 1), 22.0 / 1024.0, 1e-16);
    /* n = 5, min = 0: 2/32. */
    near(metrics_mcnemar_exact(0, 5), 0.0625, 1e-16);
    /* n = 2, min = 0: 2/4. */
    near(metrics_mcnemar_exact(2, 0), 0.5, 1e-16);
    /* n = 20, min = 5: 2 (1 + 20 + 190 + 1140 + 4845 + 15504) / 2^20 = 43400/1048576. */
    near(metrics_mcnemar_exact(5, 15), 43400.0 / 1048576.0, 1e-16);
    /* Balanced or n = 0: 1. */
    assert_true(metrics_mcnemar_exact(3, 3) == 1.0);
    assert_true(metrics_mcnemar_exact(0, 0) == 1.0);
    assert_true(metrics_mcnemar_exact(4, 5) == 1.0);
    /* Huge n stays finite and tiny. */
    double p = metrics_mcnemar_exact(0, 5000);
    assert_true(p >= 0.0 && p < 1e-300);
}

static void test_chi2_sf(void **state)
{
    (void)state;
    /* df = 2: exp(-x/2). df = 1: erfc(sqrt(x/2)). */
    near(metrics_chi2_sf(2.0, 2), exp(-1.0), 1e-15);
    near(metrics_chi2_sf(30.0, 2), exp(-15.0), 1e-20);
    near(metrics_chi2_sf(3.841458820694124, 1), 0.05, 1e-14);
    near(metrics_chi2_sf(0.5, 1), erfc(sqrt(0.25)), 1e-14);
    /* df = 4: exp(-x/2) (1 + x/2). */
    near(metrics_chi2_sf(5.0, 4), exp(-2.5) * 3.5, 1e-14);
    assert_true(metrics_chi2_sf(0.0, 3) == 1.0);
}

static void test_cochran_q_hand(void **state)
{
    (void)state;
    /* Rows (1,1,0) (1,0,0) (1,1,1) (0,0,0) (1,0,1): columns 4,2,2, T = 8, sum R^2 = 18,
     * Q = 2 (3*24 - 64) / (24 - 18) = 8/3, df 2, p = exp(-4/3). */
    const unsigned char x[] = {1, 1, 0, 1, 0, 0, 1, 1, 1, 0, 0, 0, 1, 0, 1};
    double q, p;
    int df;
    metrics_cochran_q(x, 5, 3, &q, &df, &p);
    near(q, 8.0 / 3.0, 1e-15);
    assert_int_equal(df, 2);
    near(p, exp(-4.0 / 3.0), 1e-15);
    /* All rows uniform: Q = 0, p = 1. */
    const unsigned char u[] = {1, 1, 1, 0, 0, 0};
    metrics_cochran_q(u, 2, 3, &q, &df, &p);
    assert_true(q == 0.0 && p == 1.0);
}

static void test_holm_hand(void **state)
{
    (void)state;
    const double p[] = {0.01, 0.04, 0.03, 0.5};
    double adj[4];
    /* Sorted 0.01, 0.03, 0.04, 0.5 times 4, 3, 2, 1 = 0.04, 0.09, 0.08, 0.5; running max. */
    metrics_holm(p, 4, adj);
    near(adj[0], 0.04, 1e-15);
    near(adj[2], 0.09, 1e-15);
    near(adj[1], 0.09, 1e-15);
    near(adj[3], 0.5, 1e-15);
    const double big[] = {0.6, 0.7};
    metrics_holm(big, 2, adj);
    assert_true(adj[0] == 1.0 && adj[1] == 1.0);
}

static void test_rng(void **state)
{
    (void)state;
    struct metrics_rng a, b;
    metrics_rng_seed(&a, 42);
    metrics_rng_seed(&b, 42);
    for (int i = 0; i < 100; i++)
        assert_true(metrics_rng_next(&a) == metrics_rng_next(&b));
    metrics_rng_seed(&b, 43);
    assert_true(metrics_rng_next(&a) != metrics_rng_next(&b));
    /* The state is splitmix64 of the seed: for seed 0 its first word is 0xE220A8397B1DCDAF. */
    metrics_rng_seed(&a, 0);
    assert_true(a.s[0] == 0xE220A8397B1DCDAFull);
    /* below(n): in range and roughly uniform (6 bins of 60000 draws, each within 3%). */
    unsigned cnt[6] = {0};
    for (int i = 0; i < 60000; i++) {
        uint64_t v = metrics_rng_below(&a, 6);
        assert_true(v < 6);
        cnt[v]++;
    }
    for (int i = 0; i < 6; i++)
        assert_true(cnt[i] > 9700 && cnt[i] < 10300);
    assert_true(metrics_rng_below(&a, 1) == 0);
}

static void test_quantile(void **state)
{
    (void)state;
    const double x[] = {1, 2, 3, 4};
    near(metrics_quantile_sorted(x, 4, 0.5), 2.5, 1e-15);
    near(metrics_quantile_sorted(x, 4, 0.025), 1.075, 1e-15);
    near(metrics_quantile_sorted(x, 4, 0.975), 3.925, 1e-15);
    near(metrics_quantile_sorted(x, 4, 1.0), 4.0, 0);
    near(metrics_quantile_sorted(x, 1, 0.3), 1.0, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_wilson_newcombe_table),
        cmocka_unit_test(test_wilson_closed_forms),
        cmocka_unit_test(test_newcombe_altman_table_6_2),
        cmocka_unit_test(test_newcombe_1998_example),
        cmocka_unit_test(test_newcombe_phi_correction),
        cmocka_unit_test(test_mcnemar_exact_binomial),
        cmocka_unit_test(test_chi2_sf),
        cmocka_unit_test(test_cochran_q_hand),
        cmocka_unit_test(test_holm_hand),
        cmocka_unit_test(test_rng),
        cmocka_unit_test(test_quantile),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
