"""Calibrate a model's confidence intervals on validation tasks (never on the test splits).

    python scripts/calibrate_intervals.py --model runs/x/run/model --corpus C1 C2 C3 \
        [--tasks 300] [--level 0.95] [--write OUT_MODEL_DIR]

For each corpus, the first `--tasks` validation-split tasks are estimated; with
z = (ate - truth) / se, the scale kappa is the factor that makes the interval cover `--level` of
them: kappa = quantile(|z|, level) / z_level, pooled over the corpora (each weighted equally).
Twice: the population interval (``se`` against the task's population ATE) and the interval for
the effect on the dataset's units (``se_sample`` against its SATE). The script prints the
coverage before and after per corpus; ``--write`` saves the model with ``se_scale`` and
``se_sample_scale`` multiplied by their kappas (weights unchanged).
Test splits stay untouched, so coverage measured on them afterwards is honest.
"""

from __future__ import annotations

import argparse
import json
from statistics import NormalDist

import numpy as np

import causalgen
from causalgen.store import split_of
from cina import CInA


def validation_z(model: CInA, corpus: str, n_tasks: int) -> dict[str, np.ndarray]:
    """z = (estimate - truth) / se on the first `n_tasks` validation-split tasks of `corpus`:
    ``population`` against the task's population ATE with ``se``, ``sample`` against its SATE
    with ``se_sample``."""
    c = causalgen.open_corpus(corpus)
    idx = [i for i in range(len(c)) if split_of(c.task_seed(i)) == "validation"][:n_tasks]
    tasks = [c[i] for i in idx]
    tasks = [t for t in tasks if t.n_covariates <= model.config.max_features]
    ests = model.estimate([t.x for t in tasks], [t.t for t in tasks], [t.y for t in tasks])
    return {
        "population": np.array([(e.ate - t.ate) / e.se for t, e in zip(tasks, ests) if e.se > 0]),
        "sample": np.array([(e.ate - t.sate) / e.se_sample for t, e in zip(tasks, ests) if e.se_sample > 0]),
    }


def pooled_kappa(zs: list[np.ndarray], level: float) -> float:
    """The factor kappa with weighted share `level` of |z| <= z_level * kappa, each corpus
    weighted equally."""
    zq = NormalDist().inv_cdf(0.5 + level / 2)
    values = np.concatenate([np.abs(z) for z in zs])
    weights = np.concatenate([np.full(len(z), 1.0 / len(z)) for z in zs])
    order = np.argsort(values)
    cum = np.cumsum(weights[order]) / weights.sum()
    return float(values[order][np.searchsorted(cum, level)] / zq)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--corpus", nargs="+", required=True)
    ap.add_argument("--tasks", type=int, default=300)
    ap.add_argument("--level", type=float, default=0.95)
    ap.add_argument("--write", help="save the calibrated model here")
    args = ap.parse_args()
    model = CInA.load(args.model)
    if model.outcome is None:
        raise SystemExit(f"{args.model}: no outcome head, so no intervals to calibrate")
    zq = NormalDist().inv_cdf(0.5 + args.level / 2)
    zs = {c: validation_z(model, c, args.tasks) for c in args.corpus}
    report: dict = {"level": args.level}
    for kind, field in (("population", "se_scale"), ("sample", "se_sample_scale")):
        kappa = pooled_kappa([z[kind] for z in zs.values()], args.level)
        report[kind] = {f"{field}_before": getattr(model.config, field), "kappa": kappa, "corpora": {
            c: {"tasks": len(z[kind]), "coverage_before": float(np.mean(np.abs(z[kind]) <= zq)),
                "coverage_after": float(np.mean(np.abs(z[kind]) <= zq * kappa))} for c, z in zs.items()}}
        setattr(model.config, field, float(getattr(model.config, field) * kappa))
    print(json.dumps(report, indent=2))
    if args.write:
        model.save(args.write)
        print(f"wrote {args.write} with se_scale {model.config.se_scale:.4f}, "
              f"se_sample_scale {model.config.se_sample_scale:.4f}")


if __name__ == "__main__":
    main()
