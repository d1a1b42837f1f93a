/* metrics_stats.c — Wilson and Newcombe intervals, exact McNemar, Cochran's Q with the chi-square
 * tail, Holm's adjustment, the bootstrap PRNG and percentiles (contracts: metrics.h, section 3). */
#include <float.h>
#include <math.h>
#include <stdlib.h>

#include "metrics.h"

void metrics_wilson(uint64_t k, uint64_t n, double z, double *lo, double *hi)
{
    if (n == 0 || k > n) {
        *lo = 0.0;
        *hi = 1.0;
        return;
    }
    double nn = (double)n, p = (double)k / nn, z2 = z * z;
    double denom = 1.0 + z2 / nn;
    double center = (p + z2 / (2.0 * nn)) / denom;
    double half = z / denom * sqrt(p * (1.0 - p) / nn + z2 / (4.0 * nn * nn));
    double l = center - half, h = center + half;
    /* Exact at the edges (k = 0 or k = n) whatever the rounding. */
    *lo = (k == 0 || l < 0.0) ? 0.0 : l;
    *hi = (k == n || h > 1.0) ? 1.0 : h;
}

void metrics_newcombe_paired(uint64_t n11, uint64_t n10, uint64_t n01, uint64_t n00, double z,
                             double *delta, double *lo, double *hi)
{
    uint64_t n = n11 + n10 + n01 + n00;
    if (n == 0) {
        *delta = 0.0;
        *lo = -1.0;
        *hi = 1.0;
        return;
    }
    /* p1 = proportion for b (the later model), p2 = for a; theta = p1 - p2. */
    uint64_t k1 = n11 + n01, k2 = n11 + n10;
    double nn = (double)n;
    double p1 = (double)k1 / nn, p2 = (double)k2 / nn;
    double l1, u1, l2, u2;
    metrics_wilson(k1, n, z, &l1, &u1);
    metrics_wilson(k2, n, z, &l2, &u2);
    /* Margins of the 2x2 table rows (a) and columns (b). */
    double r1 = (double)(n11 + n10), r0 = (double)(n01 + n00);
    double c1 = (double)(n11 + n01), c0 = (double)(n10 + n00);
    double prod = r1 * r0 * c1 * c0;
    /* Newcombe's phi: A = n11 n00 - n10 n01; A > n/2 gives (A - n/2)/sqrt(prod), 0 <= A <= n/2
     * gives 0, A < 0 gives A/sqrt(prod); 0 when a margin is empty. */
    double phi = 0.0, a = (double)n11 * (double)n00 - (double)n10 * (double)n01;
    if (prod > 0.0 && a > nn / 2.0)
        phi = (a - nn / 2.0) / sqrt(prod);
    else if (prod > 0.0 && a < 0.0)
        phi = a / sqrt(prod);
    double theta = p1 - p2;
    double dl = (p1 - l1) * (p1 - l1) - 2.0 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) * (u2 - p2);
    double du = (u1 - p1) * (u1 - p1) - 2.0 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) * (p2 - l2);
    double l = theta - sqrt(dl > 0.0 ? dl : 0.0);
    double h = theta + sqrt(du > 0.0 ? du : 0.0);
    *delta = theta;
    *lo = l < -1.0 ? -1.0 : l;
    *hi = h > 1.0 ? 1.0 : h;
}

double metrics_mcnemar_exact(uint64_t n01, uint64_t n10)
{
    uint64_t n = n01 + n10;
    if (n == 0)
        return 1.0;
    uint64_t k = n01 < n10 ? n01 : n10;
    if (2 * k >= n)
        return 1.0;
    /* Binomial(n, 1/2) pmf at k from lgamma, then down the recursion pmf(i-1) = pmf(i) i/(n-i+1)
     * (terms shrink as i falls; stop once they no longer change the sum). */
    double nn = (double)n;
    double logpk = lgamma(nn + 1.0) - lgamma((double)k + 1.0) - lgamma(nn - (double)k + 1.0) -
                   nn * log(2.0);
    double term = exp(logpk), sum = 0.0;
    for (uint64_t i = k + 1; i-- > 0;) {
        sum += term;
        if (i == 0)
            break;
        term *= (double)i / (nn - (double)i + 1.0);
        if (term < sum * DBL_EPSILON * 1e-3)
            break;
    }
    double p = 2.0 * sum;
    return p > 1.0 ? 1.0 : p;
}

/* Regularised lower incomplete gamma P(a, x) by its series (x < a + 1). */
static double gamma_p_series(double a, double x)
{
    double term = 1.0 / a, sum = term;
    for (int i = 1; i < 10000; i++) {
        term *= x / (a + i);
        sum += term;
        if (fabs(term) < fabs(sum) * 1e-17)
            break;
    }
    return sum * exp(-x + a * log(x) - lgamma(a));
}

/* Regularised upper incomplete gamma Q(a, x) by its continued fraction (x >= a + 1), evaluated
 * with the modified Lentz method. */
static double gamma_q_cf(double a, double x)
{
    const double tiny = 1e-300;
    double b = x + 1.0 - a, c = 1.0 / tiny, d = 1.0 / b, h = d;
    for (int i = 1; i < 10000; i++) {
        double an = -i * (i - a);
        b += 2.0;
        d = an * d + b;
        if (fabs(d) < tiny)
            d = tiny;
        c = b + an / c;
        if (fabs(c) < tiny)
            c = tiny;
        d = 1.0 / d;
        double del = d * c;
        h *= del;
        if (fabs(del - 1.0) < 1e-17)
            break;
    }
    return exp(-x + a * log(x) - lgamma(a)) * h;
}

double metrics_chi2_sf(double x, int df)
{
    if (df <= 0 || !(x > 0.0))
        return 1.0;
    double a = df / 2.0, y = x / 2.0;
    if (y < a + 1.0)
        return 1.0 - gamma_p_series(a, y);
    return gamma_q_cf(a, y);
}

void metrics_cochran_q(const unsigned char *x, size_t n, size_t k, double *q, int *df, double *p)
{
    *df = (int)k - 1;
    double t = 0.0, sum_c2 = 0.0, sum_r2 = 0.0;
    for (size_t j = 0; j < k; j++) {
        double cj = 0.0;
        for (size_t i = 0; i < n; i++)
            cj += x[i * k + j] ? 1.0 : 0.0;
        sum_c2 += cj * cj;
        t += cj;
    }
    for (size_t i = 0; i < n; i++) {
        double r = 0.0;
        for (size_t j = 0; j < k; j++)
            r += x[i * k + j] ? 1.0 : 0.0;
        sum_r2 += r * r;
    }
    double kk = (double)k;
    double denom = kk * t - sum_r2;
    if (k < 2 || denom <= 0.0) {
        *q = 0.0;
        *p = 1.0;
        return;
    }
    *q = (kk - 1.0) * (kk * sum_c2 - t * t) / denom;
    *p = metrics_chi2_sf(*q, *df);
}

static int cmp_idx_p(const void *a, const void *b, void *ctx)
{
    const double *p = ctx;
    size_t i = *(const size_t *)a, j = *(const size_t *)b;
    if (p[i] < p[j])
        return -1;
    if (p[i] > p[j])
        return 1;
    return i < j ? -1 : (i > j);
}

void metrics_holm(const double *p, size_t m, double *adj)
{
    if (m == 0)
        return;
    size_t *ord = ny_calloc(m, sizeof *ord);
    if (!ord) { /* fall back to Bonferroni, which is never smaller than Holm */
        for (size_t i = 0; i < m; i++)
            adj[i] = p[i] * (double)m > 1.0 ? 1.0 : p[i] * (double)m;
        return;
    }
    for (size_t i = 0; i < m; i++)
        ord[i] = i;
    qsort_r(ord, m, sizeof *ord, cmp_idx_p, (void *)p);
    double run = 0.0;
    for (size_t r = 0; r < m; r++) {
        double v = (double)(m - r) * p[ord[r]];
        if (v > 1.0)
            v = 1.0;
        if (v > run)
            run = v;
        adj[ord[r]] = run;
    }
    ny_free(ord);
}

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

void metrics_rng_seed(struct metrics_rng *r, uint64_t seed)
{
    uint64_t x = seed;
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix64(&x);
}

static uint64_t rotl(uint64_t v, int k)
{
    return (v << k) | (v >> (64 - k));
}

uint64_t metrics_rng_next(struct metrics_rng *r)
{
    uint64_t *s = r->s;
    uint64_t out = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return out;
}

uint64_t metrics_rng_below(struct metrics_rng *r, uint64_t n)
{
    if (n <= 1)
        return 0;
    uint64_t threshold = (0 - n) % n; /* 2^64 mod n */
    for (;;) {
        uint64_t v = metrics_rng_next(r);
        if (v >= threshold)
            return v % n;
    }
}

double metrics_quantile_sorted(const double *x, size_t m, double q)
{
    if (m == 1)
        return x[0];
    double h = (double)(m - 1) * q;
    size_t i = (size_t)floor(h);
    if (i >= m - 1)
        return x[m - 1];
    double f = h - (double)i;
    return x[i] + f * (x[i + 1] - x[i]);
}

static int cmp_dbl(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int metrics_bootstrap_mean_ci(const double *v, size_t n, uint64_t seed, size_t B, double *lo,
                              double *hi)
{
    if (n == 0 || B == 0)
        return NY_E_INVALID;
    double *means = ny_calloc(B, sizeof *means);
    if (!means)
        return NY_E_NOMEM;
    struct metrics_rng rng;
    metrics_rng_seed(&rng, seed);
    for (size_t b = 0; b < B; b++) {
        double s = 0.0;
        for (size_t r = 0; r < n; r++)
            s += v[metrics_rng_below(&rng, n)];
        means[b] = s / (double)n;
    }
    qsort(means, B, sizeof *means, cmp_dbl);
    *lo = metrics_quantile_sorted(means, B, 0.025);
    *hi = metrics_quantile_sorted(means, B, 0.975);
    ny_free(means);
    return 0;
}
