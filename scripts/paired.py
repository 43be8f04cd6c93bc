#!/usr/bin/env python3
"""Paired comparison of two sets of face runs trained with the same seeds (model A vs model C).

  scripts/paired.py --a runs/x/softmax_seed{1,2,3} --b runs/x/center_seed{1,2,3} [--base DIR]

Reads each run's lfw_report.json (written by `facerec train` or `facerec eval --out`; a run is
its directory or the report file itself, e.g. a copy kept under docs/runs/) and prints, for LFW
accuracy, AUC, TAR at FAR 1e-3 and rank-1, and where every report has the open-set protocol its
TAR at FAR 1e-3, 1e-4 and 1e-5, DIR at FAR 1 % and rank-1: the mean and (sample) std of each set
over its runs, the per-seed differences B - A in the given order, and a paired t-test (two-sided,
n - 1 degrees of freedom; the p-value from the t distribution's CDF by numerical integration, no
SciPy needed). With --base, the single run DIR (e.g. the model before fine-tuning) is printed as
a row of its own.
"""
import argparse
import json
import math
import os


def at(points, far, key):
    return next((100 * t[key] for t in points if abs(t["far"] - far) < 1e-12 * far), float("nan"))


def metrics(run):
    with open(run if os.path.isfile(run) else os.path.join(run, "lfw_report.json")) as f:
        r = json.load(f)
    v = r["verification"]
    ident = r.get("identification") or {}
    m = {
        "acc": 100 * v["accuracy_mean"],
        "fold_std": 100 * v["accuracy_std"],
        "auc": 100 * v["auc"],
        "tar1e-3": at(v["tar_at_far"], 1e-3, "tar"),
        "rank1": 100 * ident.get("rank1", float("nan")),
    }
    if r.get("open_set"):
        ov, oi = r["open_set"]["verification"], r["open_set"]["identification"]
        for far in (1e-3, 1e-4, 1e-5):
            m[f"open_tar{far:.0e}"] = at(ov["tar_at_far"], far, "rate")
        m["open_dir1%"] = at(oi["dir_at_far"], 0.01, "rate")
        m["open_rank1"] = 100 * oi["rank1"]
    return m


def t_pvalue(t, df):
    """Two-sided p of Student's t with df degrees of freedom (Simpson's rule on the density)."""
    if not math.isfinite(t):
        return 0.0
    t = abs(t)
    c = math.gamma((df + 1) / 2) / (math.sqrt(df * math.pi) * math.gamma(df / 2))
    pdf = lambda x: c * (1 + x * x / df) ** (-(df + 1) / 2)
    n = 10000
    h = t / n
    s = pdf(0) + pdf(t) + sum((4 if i % 2 else 2) * pdf(i * h) for i in range(1, n))
    return max(0.0, 1 - 2 * s * h / 3)


def mean_std(xs):
    m = sum(xs) / len(xs)
    s = math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1)) if len(xs) > 1 else float("nan")
    return m, s


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--a", nargs="+", required=True)
    ap.add_argument("--b", nargs="+", required=True)
    ap.add_argument("--base")
    a = ap.parse_args()
    if len(a.a) != len(a.b):
        raise SystemExit(f"--a has {len(a.a)} runs and --b {len(a.b)}: a paired test needs the same seeds in both")
    ma, mb = [metrics(r) for r in a.a], [metrics(r) for r in a.b]
    keys = [k for k in ma[0] if k != "fold_std" and all(k in m for m in ma + mb)]
    print("| run | " + " | ".join(keys) + " |")
    print("| --- | " + " | ".join("---" for _ in keys) + " |")
    if a.base:
        mbase = metrics(a.base)
        print(f"| {a.base} | " + " | ".join(f"{mbase.get(k, math.nan):.2f}" for k in keys) + " |")
    for name, ms in (("A", ma), ("B", mb)):
        for run, m in zip(a.a if name == "A" else a.b, ms):
            print(f"| {run} | " + " | ".join(f"{m[k]:.2f}" + (f" ± {m['fold_std']:.2f}" if k == "acc" else "") for k in keys) + " |")
        print(f"| **{name}, mean ± std** | " + " | ".join("%.2f ± %.2f" % mean_std([m[k] for m in ms]) for k in keys) + " |")
    print()
    for k in keys:
        d = [y[k] - x[k] for x, y in zip(ma, mb)]
        m, s = mean_std(d)
        n = len(d)
        per_seed = f"{k}: B - A per seed {', '.join(f'{x:+.2f}' for x in d)}; mean {m:+.2f}"
        if n > 1 and s <= 1e-9 * max(1.0, abs(m)):
            # Equal differences (to rounding): t is infinite or undefined, no test to report.
            print(f"{per_seed}; the differences are equal, no t-test")
            continue
        t = m / (s / math.sqrt(n)) if n > 1 else float("nan")
        p = t_pvalue(t, n - 1) if n > 1 else float("nan")
        print(f"{per_seed}, paired t = {t:.2f} ({n - 1} df), p = {p:.3f}")


if __name__ == "__main__":
    main()
