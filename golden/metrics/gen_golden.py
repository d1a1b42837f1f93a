#!/usr/bin/env python3
"""gen_golden.py — cross-check cases for the metrics statistics, computed with statsmodels and scipy
(PyPI) on seeded random data, written to golden/metrics/stats_cases.json for
tests/unit/metrics/test_golden.c (suite 'golden').

    python3 golden/metrics/gen_golden.py            # rewrites stats_cases.json

References used per case:
  wilson    statsmodels.stats.proportion.proportion_confint(method='wilson', alpha=0.05)
  mcnemar   statsmodels.stats.contingency_tables.mcnemar(exact=True) and scipy.stats.binomtest
  cochran   statsmodels.stats.contingency_tables.cochrans_q
  holm      statsmodels.stats.multitest.multipletests(method='holm')
  chi2      scipy.stats.chi2.sf
  newcombe  Newcombe (1998) method 10 written out below from the paper's formula, with the
            component Wilson limits from statsmodels (no library implements the paired form)
  bootstrap the documented generator (splitmix64-seeded xoshiro256**, rejection-bounded
            integers) re-implemented below, means summed left to right, percentiles checked
            against numpy.percentile (linear)
Only the standard library, numpy, scipy and statsmodels are needed.
"""
import json
import math
import os

import numpy as np
from scipy import stats
from statsmodels.stats.contingency_tables import cochrans_q, mcnemar
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import proportion_confint

SEED = 20261126
M64 = (1 << 64) - 1
Z = 1.959963984540054


def wilson(k, n):
    lo, hi = proportion_confint(k, n, alpha=0.05, method="wilson")
    return float(lo), float(hi)


def newcombe_paired(n11, n10, n01, n00):
    """delta = p_b - p_a with p_b = (n11 + n01)/n, p_a = (n11 + n10)/n; Newcombe's corrected phi."""
    n = n11 + n10 + n01 + n00
    p1, p2 = (n11 + n01) / n, (n11 + n10) / n
    l1, u1 = wilson(n11 + n01, n)
    l2, u2 = wilson(n11 + n10, n)
    prod = (n11 + n10) * (n01 + n00) * (n11 + n01) * (n10 + n00)
    a = n11 * n00 - n10 * n01
    if prod == 0 or 0 <= a <= n / 2:
        phi = 0.0
    elif a > n / 2:
        phi = (a - n / 2) / math.sqrt(prod)
    else:
        phi = a / math.sqrt(prod)
    d = p1 - p2
    dl = (p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2
    du = (u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2
    return d, max(-1.0, d - math.sqrt(max(dl, 0))), min(1.0, d + math.sqrt(max(du, 0)))


class Rng:
    """xoshiro256** with its state from splitmix64(seed), as metrics.h documents."""

    def __init__(self, seed):
        x = seed & M64
        self.s = []
        for _ in range(4):
            x = (x + 0x9E3779B97F4A7C15) & M64
            z = x
            z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
            z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
            self.s.append(z ^ (z >> 31))

    @staticmethod
    def rotl(v, k):
        return ((v << k) | (v >> (64 - k))) & M64

    def next(self):
        s = self.s
        out = (self.rotl((s[1] * 5) & M64, 7) * 9) & M64
        t = (s[1] << 17) & M64
        s[2] ^= s[0]
        s[3] ^= s[1]
        s[1] ^= s[2]
        s[0] ^= s[3]
        s[2] ^= t
        s[3] = self.rotl(s[3], 45)
        return out

    def below(self, n):
        threshold = (1 << 64) % n
        while True:
            v = self.next()
            if v >= threshold:
                return v % n


def quantile(x, q):
    h = (len(x) - 1) * q
    i = int(math.floor(h))
    if i >= len(x) - 1:
        return x[-1]
    return x[i] + (h - i) * (x[i + 1] - x[i])


def bootstrap(values, seed, b):
    rng = Rng(seed)
    n = len(values)
    means = []
    for _ in range(b):
        s = 0.0
        for _ in range(n):
            s += values[rng.below(n)]
        means.append(s / n)
    means.sort()
    lo, hi = quantile(means, 0.025), quantile(means, 0.975)
    assert abs(lo - np.percentile(means, 2.5)) < 1e-12
    assert abs(hi - np.percentile(means, 97.5)) < 1e-12
    return lo, hi


def main():
    g = np.random.default_rng(SEED)
    out = {"source": "golden/metrics/gen_golden.py", "seed": SEED, "z": Z}

    cases = [(81, 263), (15, 148), (0, 20), (1, 29), (500, 500), (0, 1), (1, 1)]
    for _ in range(40):
        n = int(g.integers(1, 2000))
        cases.append((int(g.integers(0, n + 1)), n))
    out["wilson"] = [{"k": k, "n": n, "lo": wilson(k, n)[0], "hi": wilson(k, n)[1]}
                     for k, n in cases]

    mc = [(0, 0), (3, 3), (1, 9), (0, 5), (100, 150), (0, 60), (7, 0)]
    for _ in range(40):
        mc.append((int(g.integers(0, 300)), int(g.integers(0, 300))))
    out["mcnemar"] = []
    for n01, n10 in mc:
        # Table [[n11, n10], [n01, n00]]: the exact test uses only the discordant cells.
        p_sm = float(mcnemar([[5, n10], [n01, 5]], exact=True).pvalue)
        p_bt = 1.0 if n01 + n10 == 0 else float(stats.binomtest(n01, n01 + n10, 0.5).pvalue)
        assert abs(p_sm - p_bt) < 1e-12
        out["mcnemar"].append({"n01": n01, "n10": n10, "p": p_sm, "p_binomtest": p_bt})

    nc = [(36, 2, 12, 0), (14, 0, 5, 22), (1, 7, 1, 12), (59, 16, 6, 80), (0, 0, 0, 10)]
    for _ in range(40):
        c = [int(v) for v in g.integers(0, 120, size=4)]
        if sum(c) == 0:
            c[0] = 1
        nc.append(tuple(c))
    out["newcombe"] = []
    for n11, n10, n01, n00 in nc:
        d, lo, hi = newcombe_paired(n11, n10, n01, n00)
        out["newcombe"].append({"n11": n11, "n10": n10, "n01": n01, "n00": n00, "delta": d,
                                "lo": lo, "hi": hi})

    out["cochran"] = []
    for _ in range(20):
        n, k = int(g.integers(5, 400)), int(g.integers(3, 6))
        base = g.random(k) * 0.6 + 0.2
        x = (g.random((n, k)) < base).astype(int)
        r = cochrans_q(x)
        out["cochran"].append({"n": n, "k": k, "x": x.flatten().tolist(),
                               "q": float(r.statistic), "df": int(r.df), "p": float(r.pvalue)})

    out["holm"] = []
    for _ in range(20):
        m = int(g.integers(1, 12))
        p = g.random(m) ** 3
        adj = multipletests(p, method="holm")[1]
        out["holm"].append({"p": p.tolist(), "adj": [float(a) for a in adj]})

    out["chi2"] = []
    for _ in range(40):
        df = int(g.integers(1, 10))
        x = float(g.random() * 40)
        out["chi2"].append({"x": x, "df": df, "sf": float(stats.chi2.sf(x, df))})

    rng = Rng(12345)
    out["rng"] = {"seed": 12345, "next": [str(rng.next()) for _ in range(8)],
                  "below_n": 500, "below": [rng.below(500) for _ in range(20)]}

    out["bootstrap"] = []
    for case in range(4):
        n = [10, 57, 200, 500][case]
        vals = [float(v) for v in np.round(g.random(n) * 4) / 4]  # recall-like values
        seed = int(g.integers(0, 1 << 62))
        lo, hi = bootstrap(vals, seed, 2000)
        out["bootstrap"].append({"seed": seed, "resamples": 2000, "values": vals, "lo": lo,
                                 "hi": hi})

    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "stats_cases.json")
    with open(path, "w") as f:
        json.dump(out, f, indent=1, sort_keys=True)
        f.write("\n")
    print("wrote", path)


if __name__ == "__main__":
    main()
