"""Where the real benchmarks sit within each prior: markdown tables of the coverage descriptors.

    python scripts/coverage_table.py [--presets default er5000-nonlinear setoguchi-G] [--tasks 500]
                                     [--seed 0] [--data-dir ../shared/benchmarks] [--out coverage.md]

Each benchmark dataset is described once (`causalgen.prior.coverage.describe`); each preset (or
config file: any name `load_config` takes) by the descriptors of its first `--tasks` tasks of a
corpus with `--seed`. Table 1: per benchmark and prior, the descriptors flagged outside the
prior's 1-99% band (an arrow says above or below), or "covered". Table 2: the benchmarks' raw
descriptor values. Table 3: each prior's 1st / 50th / 99th percentiles, to read table 2 against.

Benchmarks (read from the shared benchmark folder; nothing is downloaded): IHDP replication 1,
LaLonde DW-treated + PSID-1 and + CPS-1 controls (the `lalonde/combined/` files, read by the CLI's
own CSV reader), Twins (the whole file), and RealCause lalonde_cps, lalonde_psid and twins sample 0.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from causalgen.prior.datafile import read_csv_columns  # noqa: E402
from causalgen.prior import load_config  # noqa: E402
from causalgen.prior.coverage import DESCRIPTORS, coverage_report, describe, prior_descriptors  # noqa: E402
from cina.eval.benchmarks import load_ihdp, load_realcause, load_twins, resolve_data_dir  # noqa: E402

DEFAULT_PRESETS = ("default", "er5000-nonlinear", "setoguchi-G")
#: short column headers for table 2
SHORT = {
    "n_units": "N", "n_covariates": "d", "binary_share": "binary", "categorical_share": "categ.",
    "skewed_share": "skewed", "semicontinuous_share": "semicont.", "treated_share": "treated",
    "propensity_p01": "e p1", "propensity_p99": "e p99", "overlap_share": "e in [.1,.9]",
    "overlap_area": "overlap area", "outcome_r2": "R2", "outcome_r2_nonlinear": "R2 nonlin.",
}


def benchmarks(data_dir: Path):
    """(name, x, t, y) of every benchmark dataset of the table."""
    ihdp = next(load_ihdp(data_dir, replications=[1]))
    yield "IHDP (rep. 1)", ihdp.x, ihdp.t, ihdp.y
    for sample in ("psid1", "cps1"):
        path = data_dir / "lalonde" / "combined" / f"nsw_dw_treated_{sample}_controls.csv"
        x, t, y, _, _ = read_csv_columns(str(path), "treat", "re78", None)
        yield f"LaLonde {sample.upper()[:-1]}-1", x, t, y
    twins = next(load_twins(data_dir))
    yield "Twins", twins.x, twins.t, twins.y
    for ds in ("lalonde_cps", "lalonde_psid", "twins"):
        rec = next(load_realcause(data_dir, datasets=[ds], samples=[0]))
        yield f"RealCause {ds} (s. 0)", rec.x, rec.t, rec.y


def _seconds(f, *args) -> float:
    t0 = time.perf_counter()
    f(*args)
    return time.perf_counter() - t0


def _fmt(v: float) -> str:
    if not np.isfinite(v):
        return "nan"
    if abs(v) >= 100 or (float(v).is_integer() and abs(v) >= 1):
        return f"{v:.0f}"
    return f"{v:.3g}"


def flagged_cell(report) -> str:
    marks = [f"{r['descriptor']} {'↑' if r['percentile'] > 50 else '↓'}" for r in report if r["outside"]]
    return ", ".join(marks) if marks else "covered"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--presets", nargs="+", default=list(DEFAULT_PRESETS), metavar="P",
                    help="priors to compare with: preset names or config files (default: %(default)s)")
    ap.add_argument("--tasks", type=int, default=500, help="tasks per prior (default 500)")
    ap.add_argument("--seed", type=int, default=0, help="prior seed (default 0)")
    ap.add_argument("--data-dir", help="benchmark folder (default: $CINA_BENCHMARKS or ../shared/benchmarks)")
    ap.add_argument("--out", type=Path, help="also write the markdown here")
    args = ap.parse_args(argv)

    data_dir = resolve_data_dir(args.data_dir)
    users, times = {}, {}
    for name, x, t, y in benchmarks(data_dir):
        users[name] = describe(x, t, y)
        # the best of three: this machine is shared, and the first call also pays BLAS's start-up
        times[name] = min(_seconds(describe, x, t, y) for _ in range(3))
    priors, prior_times = {}, {}
    for preset in args.presets:
        load_config(preset)  # fail early, naming the preset or file, before any sampling
        label = preset
        t0 = time.perf_counter()
        priors[label] = prior_descriptors(preset, n_tasks=args.tasks, seed=args.seed)
        prior_times[label] = time.perf_counter() - t0

    lines = [f"Descriptors outside each prior's 1-99% band ({args.tasks} tasks per prior, seed {args.seed}; "
             "↑ above the 99th percentile, ↓ below the 1st):", ""]
    lines.append("| benchmark | " + " | ".join(priors) + " |")
    lines.append("|---|" + "---|" * len(priors))
    for name, user in users.items():
        lines.append(f"| {name} | " + " | ".join(flagged_cell(coverage_report(user, p)) for p in priors.values()) + " |")

    lines += ["", "Raw descriptor values:", ""]
    lines.append("| benchmark | " + " | ".join(SHORT[k] for k in DESCRIPTORS) + " |")
    lines.append("|---|" + "---:|" * len(DESCRIPTORS))
    for name, user in users.items():
        lines.append(f"| {name} | " + " | ".join(_fmt(user[k]) for k in DESCRIPTORS) + " |")

    lines += ["", "The priors (1st / 50th / 99th percentile over their tasks):", ""]
    lines.append("| descriptor | " + " | ".join(priors) + " |")
    lines.append("|---|" + "---:|" * len(priors))
    for k in DESCRIPTORS:
        cells = [" / ".join(_fmt(q) for q in np.percentile(p[k], [1, 50, 99])) for p in priors.values()]
        lines.append(f"| {k} | " + " | ".join(cells) + " |")

    lines += ["", "Seconds: describe() per benchmark " + ", ".join(f"{n} {s:.3f}" for n, s in times.items())
              + "; prior_descriptors (sampling included) " + ", ".join(f"{n} {s:.1f}" for n, s in prior_times.items()) + "."]
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
