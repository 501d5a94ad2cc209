"""`cina evaluate`: every estimator on every dataset of a suite -> results.csv, summary.md, plots.

Protocol
--------
* Datasets come from `cina.eval.benchmarks` (IHDP, LaLonde, RealCause, Twins, synthetic in- and
  out-of-distribution suites); truths as documented there and in each SOURCE.md.
* Estimators: ``dim``, ``ipw``, ``snipw``, ``or``, ``aipw`` (cross-fitted DML with boosted
  nuisances), ``svm`` (Tarr & Imai balancing), ``cina-single`` (Algorithm 1, per dataset),
  ``cina-zs`` (the pretrained model, zero-shot, one forward pass) and ``cina-zs-s`` (a supervised
  ZS-S model, when ``--model-supervised`` is given).
* Large datasets: CInA zero-shot runs at full size up to ``--max-units-zs`` units (its balancing
  layer is O(N) in memory, so 20,000 units fit), the per-dataset quadratic methods (``svm``,
  ``cina-single``) on a stratified subsample of at most ``--max-units-quadratic`` units; every
  subsampled row says so (``subsampled_from``) and its truth is recomputed on the subsample when
  unit effects are known. Everything else runs at full size.
* Seconds are wall-clock per dataset, model loading excluded, nuisance fitting included.
* Resumable: rows already in ``results.csv`` (same suite, dataset and estimator) are skipped.
"""

from __future__ import annotations

import csv
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

BASELINE_ESTIMATORS = ("dim", "ipw", "snipw", "or", "aipw", "svm")
CINA_ESTIMATORS = ("cina-single", "cina-zs", "cina-zs-s")
ALL_ESTIMATORS = BASELINE_ESTIMATORS + CINA_ESTIMATORS
QUADRATIC = ("svm", "cina-single")
FIELDS = ["suite", "dataset", "estimator", "estimand", "estimate", "truth", "abs_error", "seconds", "n_units",
          "n_covariates", "subsampled_from", "error"]
SUITE_CHOICES = ("synthetic", "ihdp", "lalonde", "realcause", "twins", "all")


@dataclass
class EvalOptions:
    suite: str = "synthetic"
    estimand: str = "ate"
    estimators: Sequence[str] = ALL_ESTIMATORS
    data_dir: str | None = None
    limit: int | None = None  #: at most this many datasets per suite
    n_synthetic: int = 20  #: tasks per synthetic sub-suite (in-distribution and each shift)
    synthetic_config: str = "default"
    corpus: str | None = None  #: held-out test-split tasks of this corpus as the in-distribution suite
    max_units_zs: int = 20_000
    max_units_quadratic: int = 2_000
    seed: int = 0
    ood: bool = True  #: the synthetic suite includes the out-of-distribution shifts


def _records(suite: str, opts: EvalOptions):
    from . import benchmarks as bm

    if suite == "synthetic":
        n = opts.limit or opts.n_synthetic
        if opts.corpus:
            yield from bm.heldout_corpus_tasks(opts.corpus, split="test", limit=n, estimand=opts.estimand)
        else:
            yield from bm.synthetic_tasks(opts.synthetic_config, n, estimand=opts.estimand)
        if opts.ood:
            yield from bm.ood_suite(n, opts.synthetic_config, estimand=opts.estimand)
        return
    kwargs = {}
    if suite == "ihdp":
        kwargs["replications"] = range(1, (opts.limit or 1000) + 1)
        kwargs["estimand"] = opts.estimand
    elif suite == "lalonde":
        kwargs["estimand"] = "att"  # the experimental truth is an effect on the treated
    elif suite == "realcause":
        if opts.limit:
            kwargs["samples"] = range(opts.limit)
        kwargs["estimand"] = opts.estimand
    elif suite == "twins":
        kwargs["estimand"] = opts.estimand
    it = bm.load_suite(suite, opts.data_dir, **kwargs)
    for k, rec in enumerate(it):
        if opts.limit is not None and k >= opts.limit and suite not in ("ihdp", "realcause"):
            return
        yield rec


def suites_for(name: str, data_dir: str | None) -> list[str]:
    """`all` = synthetic plus every real suite whose data folder is present."""
    if name != "all":
        return [name]
    from . import benchmarks as bm

    out = ["synthetic"]
    try:
        root = bm.resolve_data_dir(data_dir)
    except Exception:
        return out
    for s in ("ihdp", "lalonde", "realcause", "twins"):
        if (Path(root) / s).exists():
            out.append(s)
    return out


class _Estimators:
    """Runs one estimator on one record; loads models once."""

    def __init__(self, model: str | None, model_supervised: str | None, opts: EvalOptions):
        self.opts = opts
        self.models = {}
        if model:
            from ..core import CInA, resolve_model

            self.models["cina-zs"] = CInA.load(resolve_model(model))
        if model_supervised:
            from ..core import CInA, resolve_model

            self.models["cina-zs-s"] = CInA.load(resolve_model(model_supervised))

    def available(self, names: Iterable[str]) -> list[str]:
        return [n for n in names if not (n in ("cina-zs", "cina-zs-s") and n not in self.models)]

    def run(self, name: str, rec) -> tuple[float, float, int | None, float]:
        """(estimate, seconds, subsampled_from or None, truth used)."""
        from .benchmarks import subsample

        limit = self.opts.max_units_quadratic if name in QUADRATIC else (
            self.opts.max_units_zs if name in self.models else None)
        sub_from = None
        if limit is not None and rec.n_units > limit:
            sub_from = rec.n_units
            rec = subsample(rec, limit, seed=self.opts.seed)
        x, t, y = rec.x, rec.t, rec.y
        start = time.perf_counter()
        if name in BASELINE_ESTIMATORS:
            from .baselines import run_baseline

            est = run_baseline(name, x, t, y, estimand=rec.estimand).estimate
        elif name == "cina-single":
            from ..core.single import SingleDatasetCInA

            w = SingleDatasetCInA(estimand=rec.estimand).fit(x, t).weights_
            tb = t.astype(bool)
            est = float(w[tb] @ y[tb] - w[~tb] @ y[~tb])
        else:
            model = self.models[name]
            if x.shape[1] > model.config.max_features:
                raise ValueError(f"{x.shape[1]} covariates > the model's max_features {model.config.max_features}")
            est = float(model.estimate(x.astype(np.float32), t.astype(np.float32), y.astype(np.float32),
                                       estimand=rec.estimand, compute_loss=False).ate)
        return float(est), time.perf_counter() - start, sub_from, float(rec.truth)


def _done_rows(path: Path) -> tuple[set, list[dict]]:
    if not path.is_file():
        return set(), []
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    return {(r["suite"], r["dataset"], r["estimator"]) for r in rows}, rows


def evaluate(model: str | None, out_dir: str | os.PathLike, opts: EvalOptions, *, model_supervised: str | None = None,
             progress: bool = True) -> Path:
    """Run the evaluation; return the results.csv path (see module docstring)."""
    from tqdm.auto import tqdm

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    results = out / "results.csv"
    done, _ = _done_rows(results)
    runner = _Estimators(model, model_supervised, opts)
    names = runner.available(opts.estimators)
    unknown = [n for n in opts.estimators if n not in ALL_ESTIMATORS]
    if unknown:
        raise ValueError(f"unknown estimator {unknown[0]!r}; known: {', '.join(ALL_ESTIMATORS)}")
    new_file = not results.exists()
    with results.open("a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS)
        if new_file:
            writer.writeheader()
        for suite in suites_for(opts.suite, opts.data_dir):
            bar = tqdm(desc=f"evaluate {suite}", unit="dataset", disable=not progress)
            for rec in _records(suite, opts):
                for name in names:
                    key = (rec.suite, rec.name, name)
                    if key in done:
                        continue
                    row = {"suite": rec.suite, "dataset": rec.name, "estimator": name, "estimand": rec.estimand,
                           "n_units": rec.n_units, "n_covariates": rec.n_covariates}
                    try:
                        est, secs, sub_from, truth = runner.run(name, rec)
                        row.update(estimate=est, truth=truth, abs_error=abs(est - truth), seconds=secs,
                                   subsampled_from=sub_from or "", error="")
                    except Exception as exc:  # one failing estimator must not stop the run
                        row.update(estimate="", truth=rec.truth, abs_error="", seconds="", subsampled_from="",
                                   error=f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:300])
                    writer.writerow(row)
                    f.flush()
                    done.add(key)
                bar.update(1)
            bar.close()
    write_summary(results, out)
    return results


# ------------------------------------------------------------------ summary and plots


def summarise(rows: list[dict]) -> list[dict]:
    """Per (suite, estimator): n, MAE, its standard error, mean rank, median seconds."""
    ok = [r for r in rows if r.get("abs_error") not in ("", None)]
    by_dataset: dict[tuple, list[dict]] = {}
    for r in ok:
        by_dataset.setdefault((r["suite"], r["dataset"]), []).append(r)
    ranks: dict[tuple, list[float]] = {}
    for group in by_dataset.values():
        errs = np.array([float(r["abs_error"]) for r in group])
        order = errs.argsort(kind="stable")
        rank = np.empty(len(errs))
        rank[order] = np.arange(1, len(errs) + 1)
        for r, k in zip(group, rank):
            ranks.setdefault((r["suite"], r["estimator"]), []).append(float(k))
    table = []
    keys = sorted({(r["suite"], r["estimator"]) for r in ok}, key=lambda k: (k[0], ALL_ESTIMATORS.index(k[1]) if k[1] in ALL_ESTIMATORS else 99))
    for suite, est in keys:
        errs = np.array([float(r["abs_error"]) for r in ok if r["suite"] == suite and r["estimator"] == est])
        secs = np.array([float(r["seconds"]) for r in ok if r["suite"] == suite and r["estimator"] == est])
        table.append({
            "suite": suite, "estimator": est, "n": len(errs), "mae": float(errs.mean()),
            "mae_se": float(errs.std(ddof=1) / math.sqrt(len(errs))) if len(errs) > 1 else float("nan"),
            "mean_rank": float(np.mean(ranks[(suite, est)])), "median_seconds": float(np.median(secs)),
        })
    return table


def write_summary(results: Path, out: Path) -> Path:
    _, rows = _done_rows(results)
    table = summarise(rows)
    failures = [r for r in rows if r.get("error")]
    lines = ["# Evaluation summary", "",
             "MAE of the estimate against the truth (± its standard error over datasets), mean rank among the",
             "estimators on the same datasets (1 = best), and median wall-clock seconds per dataset.", "",
             "| suite | estimator | datasets | MAE ± SE | mean rank | median s / dataset |",
             "|---|---|---:|---:|---:|---:|"]
    for r in table:
        lines.append(f"| {r['suite']} | {r['estimator']} | {r['n']} | {r['mae']:.4g} ± {r['mae_se']:.2g} | "
                     f"{r['mean_rank']:.2f} | {r['median_seconds']:.3g} |")
    subs = sorted({(r["suite"], r["estimator"]) for r in rows if r.get("subsampled_from")})
    if subs:
        lines += ["", "Subsampled (dataset larger than the estimator's limit): " +
                  ", ".join(f"{s}/{e}" for s, e in subs) + "."]
    if failures:
        lines += ["", f"{len(failures)} estimator runs failed; see the `error` column of results.csv."]
    path = out / "summary.md"
    path.write_text("\n".join(lines) + "\n")
    _plots(rows, table, out)
    return path


def _plots(rows: list[dict], table: list[dict], out: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # plots are optional; the tables are always written
        return
    suites = sorted({r["suite"] for r in table})
    ests = [e for e in ALL_ESTIMATORS if any(r["estimator"] == e for r in table)]
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(suites) * max(1, len(ests)) / 4), 4))
    width = 0.8 / max(1, len(ests))
    for k, e in enumerate(ests):
        vals = [next((r["mae"] for r in table if r["suite"] == s and r["estimator"] == e), np.nan) for s in suites]
        errs = [next((r["mae_se"] for r in table if r["suite"] == s and r["estimator"] == e), np.nan) for s in suites]
        ax.bar(np.arange(len(suites)) + k * width, vals, width, yerr=errs, label=e, capsize=2)
    ax.set_xticks(np.arange(len(suites)) + 0.4 - width / 2, suites)
    ax.set_ylabel("MAE")
    ax.set_yscale("log")
    ax.set_title("MAE per suite and estimator (± SE)")
    ax.legend(fontsize=7, ncol=3)
    fig.tight_layout()
    fig.savefig(out / "mae.png", dpi=120)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 4))
    ok = [r for r in rows if r.get("abs_error") not in ("", None)]
    for e in ests:
        pts = [(float(r["seconds"]), float(r["abs_error"])) for r in ok if r["estimator"] == e]
        if pts:
            s, a = np.array(pts).T
            ax.scatter(np.maximum(s, 1e-5), np.maximum(a, 1e-6), s=8, alpha=0.6, label=e)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("seconds per dataset")
    ax.set_ylabel("absolute error")
    ax.set_title("Error vs speed")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(out / "speed.png", dpi=120)
    plt.close(fig)


def format_table(table: list[dict]) -> str:
    """The summary as a plain-text table (for the terminal)."""
    lines = [f"{'suite':<16} {'estimator':<12} {'n':>5} {'MAE':>10} {'±SE':>9} {'rank':>6} {'s/dataset':>10}"]
    for r in table:
        lines.append(f"{r['suite']:<16} {r['estimator']:<12} {r['n']:>5} {r['mae']:>10.4g} {r['mae_se']:>9.2g} "
                     f"{r['mean_rank']:>6.2f} {r['median_seconds']:>10.3g}")
    return "\n".join(lines)
