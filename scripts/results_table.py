"""One markdown table (suite x estimator: MAE +- SE and dataset count) from `cina evaluate` folders.

    python scripts/results_table.py results/default_model          # every */results.csv below it

Also prints the median seconds per dataset of each estimator, the zero-shot speed-up over
cross-fitted DML (``aipw``) on the datasets both ran on, and, where the rows have them (results
written before these columns existed do not), a second table of 95% interval coverage and mean
sqrt PEHE in / out of sample. This is how the README's tables are made.
"""

from __future__ import annotations

import argparse
import csv
import math
import statistics
from collections import defaultdict
from pathlib import Path

from cina.eval.evaluate import summarise

ORDER = ["dim", "ipw", "snipw", "or", "aipw", "doubleml", "svm", "cina-single", "cina-zs-w", "cina-zs", "cina-zs-s"]


def load(root: Path) -> list[dict]:
    rows = []
    for path in sorted(root.glob("**/results.csv")):
        folder = path.parent.name
        with path.open(newline="") as f:
            for r in csv.DictReader(f):
                if r.get("abs_error") in ("", None):
                    continue
                # two folders may both hold "synthetic-id" (different priors): name the folder
                r["suite"] = r["suite"] if r["suite"].startswith(folder) else f"{folder}: {r['suite']}"
                if r["suite"] == "realcause":  # dollars and mortality rates do not average
                    r["suite"] = "realcause " + r["dataset"].split("-")[1]
                rows.append(r)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("root", type=Path)
    args = ap.parse_args()
    rows = load(args.root)
    stats = {(r["suite"], r["estimator"]): r for r in summarise(rows)}
    secs: dict[str, list[float]] = defaultdict(list)
    by_key: dict[tuple[str, str, str], float] = {}
    for r in rows:
        secs[r["estimator"]].append(float(r["seconds"]))
        by_key[(r["suite"], r["dataset"], r["estimator"])] = float(r["seconds"])
    suites = sorted({s for s, _ in stats})
    names = [e for e in ORDER if any((s, e) in stats for s in suites)]
    print("| suite | " + " | ".join(names) + " |")
    print("|---|" + "---:|" * len(names))
    for s in suites:
        cells = [f"{stats[s, e]['mae']:.3g} ± {stats[s, e]['mae_se']:.2g} ({stats[s, e]['n']})" if (s, e) in stats else ""
                 for e in names]
        print(f"| {s} | " + " | ".join(cells) + " |")
    extra = {k: v for k, v in stats.items() if v.get("n_ci") or math.isfinite(v.get("pehe_in", math.nan))
             or math.isfinite(v.get("pehe_out", math.nan))}
    if extra:
        print()
        print("95% interval coverage (datasets with an interval) / mean sqrt PEHE in / out of sample:")
        print()
        print("| suite | " + " | ".join(names) + " |")
        print("|---|" + "---:|" * len(names))
        for s in suites:
            cells = []
            for e in names:
                v = extra.get((s, e))
                if v is None:
                    cells.append("")
                    continue
                parts = [f"{v['coverage']:.2f} ({v['n_ci']})" if v["n_ci"] else "–"]
                parts += [f"{v[k]:.3g}" if math.isfinite(v[k]) else "–" for k in ("pehe_in", "pehe_out")]
                cells.append(" / ".join(parts))
            print(f"| {s} | " + " | ".join(cells) + " |")
    print()
    print("median seconds per dataset: " + ", ".join(f"{e} {statistics.median(secs[e]):.3g}" for e in names))
    for zs in ("cina-zs", "cina-zs-s"):
        ratios = [by_key[(s, d, "aipw")] / by_key[(s, d, zs)] for (s, d, e) in by_key
                  if e == zs and (s, d, "aipw") in by_key and by_key[(s, d, zs)] > 0]
        if ratios:
            print(f"{zs}: median speed-up over aipw on the same datasets {statistics.median(ratios):.0f}x "
                  f"({len(ratios)} datasets)")


if __name__ == "__main__":
    main()
