#!/usr/bin/env python3
"""make_fixture.py — writes golden/reports/results_demo.json: a realistic results.json
(harness/RESULTS.md, schema nyxaudit.results/1) for three checkpoints V16 (baseline), V17 and
Epoch-1 over 60 synthetic radiology records, for the reports module's tests and visual checks.

The records and model outputs are synthetic (seeded); the metrics are computed from them by the
rules of issue #3 (Wilson intervals, seeded percentile bootstrap for ICD recall/precision,
Newcombe paired intervals, exact McNemar, Cochran's Q, Holm). Only CPT code numbers appear, no
descriptor text. Usage: python3 golden/reports/make_fixture.py [--n N] [OUT.json]
"""
import hashlib
import itertools
import json
import math
import random
import sys

import numpy as np
from scipy import stats

Z = 1.959963984540054
SEED = 20261126
N = 60  # records; `--n N` makes a bigger file for timing (not committed)

# (modality, primary CPT, modifiers, gold ICD candidates)
CASES = [
    ("CT", "74177", ["26"], [["R10.84"], ["R10.31"], ["K80.20", "R10.11"], ["N20.0"]]),
    ("CT", "70450", ["26"], [["R51.9"], ["S06.0X0A"], ["G43.909"]]),
    ("CT", "71250", ["26"], [["R91.1"], ["J18.9"], ["R05.9", "R91.8"]]),
    ("MR", "70553", ["26"], [["G43.909"], ["R51.9"], ["I63.9"]]),
    ("MR", "72148", ["26"], [["M54.50"], ["M54.16"], ["M51.26", "M54.16"]]),
    ("XR", "71046", ["26"], [["J18.9"], ["R05.9"], ["R06.02"]]),
    ("XR", "73562", ["26", "RT"], [["M25.561"], ["S83.511A"], ["M17.11"]]),
    ("US", "76700", ["26"], [["K80.20"], ["R10.11"], ["K76.0"]]),
]
# A specific code and the category header a model says instead (a non-billable "specificity" error)
HEADERS = {"M25.561": "M25.56", "S83.511A": "S83.5", "M54.50": "M54.5", "M54.16": "M54.1",
           "K80.20": "K80.2", "R10.84": "R10.8", "G43.909": "G43.9", "M17.11": "M17.1",
           "M51.26": "M51.2", "S06.0X0A": "S06.0"}
WRONG_CAT = {"R10.84": "K59.00", "J18.9": "J20.9", "R51.9": "G44.209", "M54.50": "M47.816",
             "I63.9": "G45.9", "R91.1": "C34.90", "N20.0": "N13.2", "K76.0": "K74.60"}
HALLUCINATED = ["R10.99", "M25.599X", "J18.99"]
# (checkpoint, error rates for: cpt wrong, modifier dropped, ICD specificity, wrong category,
#  hallucinated, missed second code, extra code)
PROFILES = {"V16": (0.12, 0.12, 0.22, 0.12, 0.05, 0.35, 0.06),
            "V17": (0.05, 0.05, 0.10, 0.06, 0.02, 0.20, 0.04),
            "Epoch-1": (0.09, 0.08, 0.16, 0.10, 0.04, 0.30, 0.05)}
LABELS = ["V16", "V17", "Epoch-1"]


def make_records(rng):
    recs = []
    for i in range(N):
        mod, cpt, mods, icds = CASES[rng.randrange(len(CASES))]
        icd = list(icds[rng.randrange(len(icds))])
        recs.append({"id": f"hx-{1000 + i * 7:06d}", "modality": mod, "cpt": [cpt],
                     "modifiers": mods, "icd": icd})
    return recs


def predict(u, rec, prof, salt):
    """Prediction for rec from the shared per-record uniforms u (the same for every checkpoint,
    so that errors are correlated across checkpoints as they are for fine-tunes of one base)."""
    p_cpt, p_mod, p_spec, p_wrong, p_hall, p_miss, p_extra = prof
    pick = random.Random(rec["id"] + salt)
    cpt = list(rec["cpt"])
    if u[0] < p_cpt:
        cpt = [pick.choice([c[1] for c in CASES if c[1] != cpt[0]])]
    mods = list(rec["modifiers"])
    if u[1] < p_mod:
        mods = mods[:-1] if len(mods) > 1 else []
    icd = []
    for k, code in enumerate(rec["icd"]):
        if k > 0 and u[2] < p_miss:
            continue
        if u[3 + k] < p_spec and code in HEADERS:
            icd.append(HEADERS[code])
        elif u[5 + k] < p_wrong and code in WRONG_CAT:
            icd.append(WRONG_CAT[code])
        elif u[7 + k] < p_hall:
            icd.append(pick.choice(HALLUCINATED))
        else:
            icd.append(code)
    if u[9] < p_extra:
        icd.append("R69")
    return cpt, mods, icd


def line(cpt, mods, icd):
    return ", ".join([" ".join(cpt)] + mods + icd)


def wilson(k, n):
    if n == 0:
        return [0.0, 1.0]
    p = k / n
    den = 1 + Z * Z / n
    mid = (p + Z * Z / (2 * n)) / den
    half = Z * math.sqrt(p * (1 - p) / n + Z * Z / (4 * n * n)) / den
    return [max(0.0, mid - half), min(1.0, mid + half)]


def newcombe_paired(a, b):
    """Newcombe (1998) method 10 interval for the paired difference mean(b) - mean(a)."""
    n = len(a)
    e = sum(1 for x, y in zip(a, b) if x and y)
    f = sum(1 for x, y in zip(a, b) if x and not y)
    g = sum(1 for x, y in zip(a, b) if not x and y)
    h = n - e - f - g
    p1, p2 = (e + g) / n, (e + f) / n  # b, a
    l1, u1 = wilson(e + g, n)
    l2, u2 = wilson(e + f, n)
    d = p1 - p2
    denom = (e + f) * (g + h) * (e + g) * (f + h)
    num = e * h - f * g
    phi = 0.0
    if denom > 0:
        if num > n / 2:
            num -= n / 2
        elif num >= 0:
            num = 0.0
        phi = num / math.sqrt(denom)
    dl = math.sqrt(max(0.0, (p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2))
    du = math.sqrt(max(0.0, (u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2))
    return d, [max(-1.0, d - dl), min(1.0, d + du)]


def mcnemar(a, b):
    n01 = sum(1 for x, y in zip(a, b) if not x and y)
    n10 = sum(1 for x, y in zip(a, b) if x and not y)
    n = n01 + n10
    if n == 0:
        return 1.0
    k = min(n01, n10)
    return min(1.0, 2 * sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n)


def cochran_q(cols):
    x = np.array(cols, dtype=float).T  # records x models
    k = x.shape[1]
    row = x.sum(1)
    colsum = x.sum(0)
    den = k * row.sum() - (row ** 2).sum()
    q = 0.0 if den == 0 else (k - 1) * (k * (colsum ** 2).sum() - row.sum() ** 2) / den
    return {"q": float(q), "df": k - 1, "p": float(stats.chi2.sf(q, k - 1))}


def holm(ps):
    order = sorted(range(len(ps)), key=lambda i: ps[i])
    out, run = [0.0] * len(ps), 0.0
    for rank, i in enumerate(order):
        run = max(run, min(1.0, (len(ps) - rank) * ps[i]))
        out[i] = run
    return out


def score(recs, preds):
    per = {k: [] for k in ["cpt_exact", "cpt_primary", "modifier_exact", "icd_exact",
                           "icd_any_overlap", "icd_root_overlap", "icd_recall", "icd_precision",
                           "all_three_exact"]}
    tp = npred = ngold = 0
    tax = {"specificity": 0, "wrong_category": 0, "hallucinated": 0, "missed": 0}
    conf = {}
    for r, (cpt, mods, icd) in zip(recs, preds):
        G, P = set(r["icd"]), set(icd)
        per["cpt_exact"].append(set(cpt) == set(r["cpt"]))
        per["cpt_primary"].append(cpt[:1] == r["cpt"][:1])
        per["modifier_exact"].append(set(mods) == set(r["modifiers"]))
        per["icd_exact"].append(P == G)
        per["icd_any_overlap"].append(bool(P & G) or (not P and not G))
        per["icd_root_overlap"].append(bool({c[:3] for c in P} & {c[:3] for c in G})
                                       or (not P and not G))
        per["icd_recall"].append(len(P & G) / len(G) if G else float(not P))
        per["icd_precision"].append(len(P & G) / len(P) if P else float(not G))
        per["all_three_exact"].append(per["cpt_exact"][-1] and per["modifier_exact"][-1]
                                      and per["icd_exact"][-1])
        tp, npred, ngold = tp + len(P & G), npred + len(P), ngold + len(G)
        for g in sorted(G - P):
            subs = sorted(p for p in P - G if p[:3] == g[:3])
            other = sorted(p for p in P - G if p[:3] != g[:3] and p not in HALLUCINATED)
            if subs:
                tax["specificity"] += 1
                conf[(g, subs[0])] = conf.get((g, subs[0]), 0) + 1
            elif other:
                tax["wrong_category"] += 1
                conf[(g, other[0])] = conf.get((g, other[0]), 0) + 1
            else:
                tax["missed"] += 1
        tax["hallucinated"] += sum(1 for p in P if p in HALLUCINATED)
    return per, (tp, npred, ngold), tax, conf


def bootstrap(vals, seed):
    rs = np.random.default_rng(seed)
    v = np.array(vals, dtype=float)
    means = v[rs.integers(0, len(v), size=(2000, len(v)))].mean(1)
    return [float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))]


def model_block(recs, preds, seed):
    per, (tp, npred, ngold), tax, conf = score(recs, preds)
    metrics = {}
    for k, v in per.items():
        mean = sum(v) / len(v)
        if k in ("icd_recall", "icd_precision"):
            ci = bootstrap(v, seed)
        else:
            ci = wilson(sum(v), len(v))
        metrics[k] = {"value": float(mean), "ci95": ci}
    mp = tp / npred if npred else 0.0
    mr = tp / ngold if ngold else 0.0
    metrics["icd_micro_precision"] = {"value": mp, "ci95": None}
    metrics["icd_micro_recall"] = {"value": mr, "ci95": None}
    metrics["icd_micro_f1"] = {"value": 2 * mp * mr / (mp + mr) if mp + mr else 0.0,
                               "ci95": None}
    icds = [c for _, _, icd in preds for c in icd]
    halluc = sum(1 for c in icds if c in HALLUCINATED)
    headers = sum(1 for c in icds if c in HEADERS.values())
    ncpt = sum(len(c) for c, _, _ in preds)
    nmod = sum(len(m) for _, m, _ in preds)
    validity = {"icd_invalid": halluc / len(icds), "icd_nonbillable": headers / len(icds),
                "cpt_invalid": 0.0, "modifier_invalid": 0.0,
                "counts": {"icd_predicted": len(icds), "icd_invalid": halluc,
                           "icd_nonbillable": headers, "cpt_predicted": ncpt, "cpt_invalid": 0,
                           "modifier_predicted": nmod, "modifier_invalid": 0}}
    bd = {"modality": {}, "primary_cpt": {}}
    for key, field in (("modality", lambda r: r["modality"]),
                       ("primary_cpt", lambda r: r["cpt"][0])):
        groups = {}
        for i, r in enumerate(recs):
            groups.setdefault(field(r), []).append(i)
        for g, idx in sorted(groups.items()):
            bd[key][g] = {"n": len(idx),
                          "cpt_exact": sum(per["cpt_exact"][i] for i in idx) / len(idx),
                          "icd_exact": sum(per["icd_exact"][i] for i in idx) / len(idx)}
    confusions = [{"gold": g, "pred": p, "count": c}
                  for (g, p), c in sorted(conf.items(), key=lambda kv: (-kv[1], kv[0]))]
    return {"metrics": metrics, "format_errors": 0, "validity": validity, "taxonomy": tax,
            "confusions": confusions, "breakdowns": bd}, per


def sha(s):
    return hashlib.sha256(s.encode()).hexdigest()


def main():
    global N
    args = sys.argv[1:]
    if len(args) >= 2 and args[0] == "--n":
        N = int(args[1])
        args = args[2:]
    out = args[0] if args else "golden/reports/results_demo.json"
    rng = random.Random(SEED)
    recs = make_records(rng)
    us = [[rng.random() for _ in range(10)] for _ in recs]
    preds = {}
    for lab in LABELS:
        # a little independent noise per checkpoint on top of the shared difficulty
        noise = random.Random(SEED + len(lab))
        preds[lab] = [predict([min(1.0, max(0.0, x + noise.uniform(-0.08, 0.08))) for x in u], r,
                              PROFILES[lab], "" if lab == "V16" else lab[:2])
                      for u, r in zip(us, recs)]
    models, per = {}, {}
    for i, lab in enumerate(LABELS):
        models[lab], per[lab] = model_block(recs, preds[lab], SEED + i)
    binary = ["cpt_exact", "cpt_primary", "modifier_exact", "icd_exact", "icd_any_overlap",
              "icd_root_overlap", "all_three_exact"]
    comparisons = []
    for a, b in itertools.combinations(LABELS, 2):
        for m in binary:
            d, ci = newcombe_paired(per[a][m], per[b][m])
            comparisons.append({"a": a, "b": b, "metric": m, "delta": d, "ci95": ci,
                                "mcnemar_p": mcnemar(per[a][m], per[b][m])})
    adj = holm([c["mcnemar_p"] for c in comparisons])
    holm_rows = [{"a": c["a"], "b": c["b"], "metric": c["metric"], "p_adj": p}
                 for c, p in zip(comparisons, adj)]
    cq = {m: cochran_q([per[lab][m] for lab in LABELS]) for m in binary}

    def gate_floor(name, ck, metric, floor):
        v = models[ck]["metrics"][metric]
        ok = v["ci95"][0] >= floor
        return {"name": name, "kind": "floor", "checkpoint": ck, "metric": metric,
                "rule": f"{metric} ci95 lower bound >= {floor:.2f}",
                "evidence": {"value": v["value"], "ci95": v["ci95"], "threshold": floor},
                "verdict": "pass" if ok else "fail"}

    def gate_noreg(name, ck, metric, margin):
        c = next(c for c in comparisons if c["a"] == "V16" and c["b"] == ck and c["metric"] == metric)
        ok = c["ci95"][0] >= -margin
        return {"name": name, "kind": "no_regression", "checkpoint": ck, "metric": metric,
                "rule": f"{metric} paired delta vs V16: ci95 lower bound >= -{margin:.2f}",
                "evidence": {"delta": c["delta"], "ci95": c["ci95"], "mcnemar_p": c["mcnemar_p"],
                             "margin": margin},
                "verdict": "pass" if ok else "fail"}

    def gate_ceiling(name, ck, key, ceil):
        v = models[ck]["validity"][key]
        return {"name": name, "kind": "ceiling", "checkpoint": ck, "metric": key,
                "rule": f"{key} <= {ceil:.2f}", "evidence": {"value": v, "threshold": ceil},
                "verdict": "pass" if v <= ceil else "fail"}

    gates = [gate_floor("icd_recall_floor", "V17", "icd_recall", 0.60),
             gate_noreg("cpt_no_regression", "V17", "cpt_exact", 0.05),
             gate_noreg("all_three_no_regression", "V17", "all_three_exact", 0.05),
             gate_ceiling("icd_invalid_ceiling", "V17", "icd_invalid", 0.05)]
    ids = [r["id"] for r in recs]
    records = []
    for r in recs:
        records.append({"id": r["id"], "modality": r["modality"], "primary_cpt": r["cpt"][0],
                        "gold": line(r["cpt"], r["modifiers"], r["icd"]),
                        "predictions": {lab: line(*preds[lab][i]) for lab in LABELS
                                        for i in [recs.index(r)]},
                        "report_excerpt": None})
    files = []
    for path, size in [("golden/demo/v16/model.safetensors", 5242880),
                       ("golden/demo/v16/tokenizer.json", 9085657),
                       ("golden/demo/v16/config.json", 654),
                       ("golden/demo/v17/adapter_model.safetensors", 327680),
                       ("golden/demo/v17/adapter_config.json", 512),
                       ("golden/demo/epoch-1/adapter_model.safetensors", 327680),
                       ("golden/demo/epoch-1/adapter_config.json", 512)]:
        files.append({"path": path, "sha256": sha(path), "bytes": size})
    run_key = sha(json.dumps([f["sha256"] for f in files]) + ",".join(ids))
    results = {
        "schema": "nyxaudit.results/1",
        "run": {"id": "r-" + run_key[:12], "started": "2026-11-26T21:00:00Z",
                "finished": "2026-11-26T21:04:31Z", "dataset": "demo-synthetic",
                "split": "heldout", "n": N, "seed": 0, "release": "demo",
                "allow_report_text": False},
        "checkpoints": [
            {"label": "V16", "baseline": True, "model": "golden/demo/v16", "adapter": None},
            {"label": "V17", "baseline": False, "model": "golden/demo/v16",
             "adapter": "golden/demo/v17"},
            {"label": "Epoch-1", "baseline": False, "model": "golden/demo/v16",
             "adapter": "golden/demo/epoch-1"}],
        "manifest": {
            "files": files, "dataset_sha256": sha("demo-synthetic"),
            "sample_ids_sha256": sha("\n".join(ids)),
            "codeset": {"release": "demo", "sha256": sha("codeset-demo")},
            "prompt_builder": {"template": "llama3-chat", "few_shot": 0, "max_report_chars": 6000,
                               "system_prompt_sha256": sha("system")},
            "decoding": {"strategy": "greedy", "max_new_tokens": 48, "stop": ["<|eot_id|>"]},
            "engine": {"backend": "cpu", "device": "x86_64 AVX2, 2 threads", "cuda": "",
                       "cublas": "", "nccl": ""},
            "harness": {"version": "0.1.0", "commit": "f51b8ab0c0de"},
            "host": "ci-runner-1", "seeds": {"sample": 0, "bootstrap": SEED}},
        "metrics": {"n": N, "models": models, "comparisons": comparisons, "cochran_q": cq,
                    "holm": holm_rows},
        "gates": gates,
        "verdict": "pass" if all(g["verdict"] == "pass" for g in gates) else "fail",
        "records": records,
    }
    with open(out, "w") as f:
        json.dump(results, f, sort_keys=True, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
