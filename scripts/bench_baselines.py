"""Baseline scoreboard on IHDP (first replications) and the real LaLonde ATT problems.

    .venv/bin/python scripts/bench_baselines.py [--data DIR] [--reps 100] [--out results.csv]

IHDP: MAE (and its standard error) of each estimator's ATE over replications 1..reps, truth =
mean(mu1 - mu0). LaLonde: ATT estimate and error against the experimental $1794.34 on PSID-1
and CPS-1 (and the randomised NSW sample as a sanity row). Every estimator runs with its
default hyper-parameters (see `cina.eval.baselines`; --extra adds sensitivity rows); seconds are
wall-clock per dataset (set OMP_NUM_THREADS=1 for single-threaded numbers), and the median is
reported. Writes one CSV row per (estimator, dataset) if --out is given.
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cina.eval.baselines import make_baseline  # noqa: E402
from cina.eval.benchmarks import load_ihdp, load_lalonde  # noqa: E402

ESTIMATORS = {
    "dim": ("dim", {}),
    "ipw": ("ipw", {}),
    "snipw": ("snipw", {}),
    "or (T-learner, linear)": ("or", {}),
    "or (T-learner, boosting)": ("or-boost", {}),
    "aipw/dml (boosting, K=5)": ("aipw", {}),
    "svm balancing (rbf, C=1)": ("svm", {}),
}
#: sensitivity rows (--extra): the SVM penalty and AIPW without early-stopped nuisances
EXTRA = {
    "svm balancing (rbf, C=10)": ("svm", {"C": 10.0}),
    "svm balancing (rbf, C=100)": ("svm", {"C": 100.0}),
    "aipw/dml (boosting without early stopping)": ("aipw", {"early_stopping": False}),
}


def run(records, estimators, rows, progress=""):
    for rec in records:
        for label, (name, params) in estimators.items():
            res = make_baseline(name, **params).estimate(rec.x, rec.t, rec.y, rec.estimand)
            rows.append({"estimator": label, "dataset": rec.name, "estimand": rec.estimand, "estimate": res.estimate,
                         "truth": rec.truth, "abs_error": abs(res.estimate - rec.truth), "seconds": res.seconds,
                         "n_used": res.info.get("n_used", rec.n_units)})
        if progress:
            print(f"\r{progress} {rec.name}", end="", file=sys.stderr, flush=True)
    if progress:
        print(file=sys.stderr)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=None, help="benchmark folder (default: ../shared/benchmarks)")
    ap.add_argument("--reps", type=int, default=100, help="IHDP replications 1..reps")
    ap.add_argument("--only", nargs="*", default=None, help="subset of estimator labels (substring match)")
    ap.add_argument("--skip-lalonde", action="store_true")
    ap.add_argument("--extra", action="store_true", help="add the sensitivity rows (SVM C=10/100, AIPW without early stopping)")
    ap.add_argument("--out", default=None, help="CSV of every (estimator, dataset) row")
    args = ap.parse_args(argv)

    table = {**ESTIMATORS, **(EXTRA if args.extra else {})}
    est = {k: v for k, v in table.items() if not args.only or any(s in k for s in args.only)}
    rows: list[dict] = []
    start = time.perf_counter()
    run(load_ihdp(args.data, range(1, args.reps + 1)), est, rows, progress="ihdp")
    if not args.skip_lalonde:
        run(load_lalonde(args.data, samples=("nsw", "psid1", "cps1")), est, rows, progress="lalonde")

    print(f"\nIHDP replications 1-{args.reps}, ATE, truth mean(mu1 - mu0):")
    print(f"| estimator | MAE | SE | median s / dataset |\n| --- | --- | --- | --- |")
    for label in est:
        r = [x for x in rows if x["estimator"] == label and x["dataset"].startswith("ihdp")]
        e = np.array([x["abs_error"] for x in r])
        print(f"| {label} | {e.mean():.3f} | {e.std(ddof=1) / math.sqrt(len(e)):.3f} | "
              f"{np.median([x['seconds'] for x in r]):.3f} |")
    if not args.skip_lalonde:
        print("\nLaLonde ATT (truth = experimental $1794.34), estimate (error):")
        print("| estimator | NSW (randomised) | PSID-1 | CPS-1 | median s / dataset |\n| --- | --- | --- | --- | --- |")
        for label in est:
            r = {x["dataset"]: x for x in rows if x["estimator"] == label and x["dataset"].startswith("lalonde")}
            cells = [f"{r[k]['estimate']:.0f} ({r[k]['estimate'] - r[k]['truth']:+.0f})" for k in
                     ("lalonde-nsw", "lalonde-psid1", "lalonde-cps1")]
            sub = " [CPS-1 subsampled to %d]" % r["lalonde-cps1"]["n_used"] if r["lalonde-cps1"]["n_used"] < 16177 else ""
            print(f"| {label}{sub} | " + " | ".join(cells) + f" | {np.median([x['seconds'] for x in r.values()]):.2f} |")
    print(f"\ntotal {time.perf_counter() - start:.0f} s")
    if args.out:
        with open(args.out, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)


if __name__ == "__main__":
    main()
