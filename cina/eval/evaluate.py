"""`cina evaluate`: every estimator on every dataset of a suite -> results.csv, summary.md, plots.

Protocol
--------
* Datasets come from `cina.eval.benchmarks` (IHDP, LaLonde, RealCause, Twins, synthetic in- and
  out-of-distribution suites); truths as documented there and in each SOURCE.md.
* Estimators: ``dim``, ``ipw``, ``snipw``, ``or``, ``aipw`` (cross-fitted DML with boosted
  nuisances), ``doubleml`` (the same DML by DoubleML's ``DoubleMLIRM``, the field's reference
  implementation, with the same learners and folds; skipped with a warning when the optional
  ``doubleml`` package is missing), ``svm`` (Tarr & Imai balancing), ``cina-single`` (Algorithm
  1, per dataset), ``cina-zs`` (the pretrained model, zero-shot, one forward pass) and
  ``cina-zs-w`` (the same model's weights-only estimate), ``cina-zs-s`` (a supervised ZS-S model, when
  ``--model-supervised`` is given).
* Intervals: ``se`` is the estimator's standard error where it has one (Welch for ``dim``, the
  influence function for ``ipw``, ``snipw``, ``aipw``, DoubleML's for ``doubleml``,
  `Estimate.se_sample` for CInA models with an outcome head: every truth here is an effect on the
  dataset's own units, so CInA's interval is the one for that estimand; the baselines' standard
  errors are their usual ones, for the population effect, and so a little wider where unit
  effects vary); ``ci_low``, ``ci_high`` the 95%
  normal-approximation interval and ``covered`` 1 / 0 whether it holds the truth. Empty where the
  estimator gives no interval (``or``, ``svm``, ``cina-single``, models without an outcome head).
* CATE: ``pehe_in`` = sqrt PEHE, the root mean squared error of the estimator's unit effects on
  the dataset's units against the known unit effects (IHDP: mu1 - mu0; synthetic, RealCause,
  Twins: y1 - y0), for the estimators with outcome models (``or``, ``aipw``, ``doubleml``: mu1 -
  mu0 of their fitted, for the cross-fitted ones out-of-fold, models; CInA with an outcome head:
  `Estimate.cate`). ``pehe_out``: the same on a suite's new units (``ihdp-100``: the 75 CFRNet
  test units of each replication), predicted without their outcomes (`Estimate.cate_new` via
  ``x_new``; the baselines' arm models, averaged over the fold models when cross-fitted).
  Predicting the new units is inside ``seconds``.
* Large datasets: CInA zero-shot runs at full size up to ``--max-units-zs`` units (its balancing
  layer is O(N) in memory, so 20,000 units fit), the per-dataset quadratic methods (``svm``,
  ``cina-single``) on a stratified subsample of at most ``--max-units-quadratic`` units; every
  subsampled row says so (``subsampled_from``) and its truth is recomputed on the subsample when
  unit effects are known. Everything else runs at full size.
* Seconds are wall-clock per dataset, model loading excluded, nuisance fitting included.
* Resumable: rows already in ``results.csv`` (same suite, dataset and estimator) are skipped. A
  results.csv written by an older version (fewer columns) is rewritten under the current header
  before rows are appended (its rows keep their values; the new columns stay empty), and every
  reader here tolerates the old columns.
"""

from __future__ import annotations

import csv
import math
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

BASELINE_ESTIMATORS = ("dim", "ipw", "snipw", "or", "aipw", "doubleml", "svm")
#: cina-zs: the zero-shot model as shipped (doubly robust when it has an outcome head);
#: cina-zs-w: the same model's weights-only estimate (the paper's protocol)
CINA_ESTIMATORS = ("cina-single", "cina-zs", "cina-zs-w", "cina-zs-s")
ALL_ESTIMATORS = BASELINE_ESTIMATORS + CINA_ESTIMATORS
QUADRATIC = ("svm", "cina-single")
FIELDS = ["suite", "dataset", "estimator", "estimand", "estimate", "truth", "abs_error", "se", "ci_low", "ci_high",
          "covered", "pehe_in", "pehe_out", "seconds", "n_units", "n_covariates", "subsampled_from", "error"]
#: the columns that older versions did not write (empty in their rows)
INTERVAL_CATE_FIELDS = ("se", "ci_low", "ci_high", "covered", "pehe_in", "pehe_out")
CI_LEVEL = 0.95
SUITE_CHOICES = ("synthetic", "ihdp", "ihdp-100", "lalonde", "realcause", "twins", "all")


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
    elif suite == "ihdp-100":
        kwargs["replications"] = range(1, min(opts.limit or 100, 100) + 1)
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
        if opts.limit is not None and k >= opts.limit and suite not in ("ihdp", "ihdp-100", "realcause"):
            return
        yield rec


def suites_for(name: str, data_dir: str | None) -> list[str]:
    """`all` = synthetic plus every real suite whose data folder is present (``ihdp-100`` when
    ``ihdp/npz_100`` is)."""
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
        if s == "ihdp" and (Path(root) / bm.IHDP_TEST_NPZ).is_file():
            out.append("ihdp-100")
    return out


@dataclass
class Outcome:
    """What one estimator gave on one dataset (`_Estimators.run`)."""

    estimate: float
    seconds: float
    subsampled_from: int | None
    truth: float
    se: float = math.nan
    ci: tuple[float, float] | None = None  #: the CI_LEVEL interval, None without one
    cate: np.ndarray | None = None  #: (N,) unit effects of the units the estimator saw
    cate_new: np.ndarray | None = None  #: (M,) unit effects of the record's new units
    ite: np.ndarray | None = None  #: the truth for cate (the subsample's, if subsampled)
    ite_new: np.ndarray | None = None


def _interval(se: float, ci: tuple[float, float] | None) -> tuple[float, float] | None:
    if ci is None or not (math.isfinite(se) and all(math.isfinite(v) for v in ci)):
        return None
    return (float(ci[0]), float(ci[1]))


def pehe(cate: np.ndarray | None, ite: np.ndarray | None) -> float | None:
    """sqrt PEHE: the root mean squared error of unit effects ``cate`` against the true ``ite``
    (None when either is missing)."""
    if cate is None or ite is None:
        return None
    cate, ite = np.asarray(cate, dtype=np.float64), np.asarray(ite, dtype=np.float64)
    if cate.shape != ite.shape:
        raise ValueError(f"pehe: {cate.shape[0]} unit effects against {ite.shape[0]} true ones")
    return float(np.sqrt(np.mean((cate - ite) ** 2)))


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
        out = []
        for n in names:
            if n in ("cina-zs", "cina-zs-s") and n not in self.models:
                continue
            if n == "cina-zs-w" and "cina-zs" not in self.models:
                continue
            if n == "doubleml":
                from .baselines import DOUBLEML_HINT, doubleml_available

                if not doubleml_available():
                    warnings.warn(f"cina evaluate: the doubleml estimator is skipped: the doubleml package is not "
                                  f"installed; {DOUBLEML_HINT}", stacklevel=3)
                    continue
            out.append(n)
        return out

    def run(self, name: str, rec) -> Outcome:
        from .benchmarks import subsample

        limit = self.opts.max_units_quadratic if name in QUADRATIC else (
            self.opts.max_units_zs if name in self.models or name == "cina-zs-w" else None)
        sub_from = None
        if limit is not None and rec.n_units > limit:
            sub_from = rec.n_units
            rec = subsample(rec, limit, seed=self.opts.seed)
        x, t, y = rec.x, rec.t, rec.y
        x_new = rec.x_new
        extra: dict = {}
        start = time.perf_counter()
        if name in BASELINE_ESTIMATORS:
            from .baselines import CATE_BASELINES, run_baseline

            res = run_baseline(name, x, t, y, estimand=rec.estimand,
                               x_new=x_new if name in CATE_BASELINES else None)
            est = res.estimate
            extra = {"se": res.se, "ci": _interval(res.se, res.ci(CI_LEVEL)), "cate": res.cate, "cate_new": res.cate_new}
        elif name == "cina-single":
            from ..core.single import SingleDatasetCInA

            w = SingleDatasetCInA(estimand=rec.estimand).fit(x, t).weights_
            tb = t.astype(bool)
            est = float(w[tb] @ y[tb] - w[~tb] @ y[~tb])
        else:
            weights_only = name == "cina-zs-w"
            model = self.models["cina-zs" if weights_only else name]
            if x.shape[1] > model.config.max_features:
                raise ValueError(f"{x.shape[1]} covariates > the model's max_features {model.config.max_features}")
            with_head = getattr(model, "outcome", None) is not None and not weights_only
            # float64 in: the model standardises covariates in float64 (any unit of measurement)
            e = model.estimate(np.asarray(x, np.float64), np.asarray(t, np.float64), np.asarray(y, np.float64),
                               estimand=rec.estimand, compute_loss=False, augment=False if weights_only else None,
                               x_new=np.asarray(x_new, np.float64) if with_head and x_new is not None else None)
            est = float(e.ate)
            # every suite's truth is an effect on the dataset's own units (SATE, mean of their
            # unit effects), so the interval is the one for that estimand
            extra = {} if weights_only else {"se": float(e.se_sample),
                                             "ci": _interval(float(e.se_sample), e.ci(CI_LEVEL, sample=True)),
                                             "cate": e.cate, "cate_new": e.cate_new}
        seconds = time.perf_counter() - start
        return Outcome(float(est), seconds, sub_from, float(rec.truth), ite=rec.ite, ite_new=rec.ite_new, **extra)


def _read_rows(path: Path) -> tuple[list[str], list[dict]]:
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
        return list(reader.fieldnames or []), rows


def _done_rows(path: Path) -> tuple[set, list[dict]]:
    """(finished (suite, dataset, estimator) keys, every row) of a results.csv of any version:
    columns an older file lacks read as empty."""
    if not path.is_file():
        return set(), []
    _, rows = _read_rows(path)
    for r in rows:
        for k in FIELDS:
            if r.get(k) is None:
                r[k] = ""
    return {(r["suite"], r["dataset"], r["estimator"]) for r in rows}, rows


def _prepare_results(path: Path) -> list[str]:
    """The header to append under: FIELDS for a new file; a file with other columns (an older
    version's) is first rewritten under FIELDS (plus any extra columns it has, at the end), its
    rows matched by column name, so appended rows never land under the wrong column."""
    if not path.exists():
        with path.open("w", newline="") as f:
            csv.writer(f).writerow(FIELDS)
        return list(FIELDS)
    header, rows = _read_rows(path)
    if header == FIELDS:
        return list(FIELDS)
    missing_key = [k for k in ("suite", "dataset", "estimator") if k not in header]
    if missing_key:
        raise ValueError(f"{path} is not a results.csv of cina evaluate: no column(s) {missing_key}")
    fields = list(FIELDS) + [h for h in header if h not in FIELDS and h]
    tmp = path.with_suffix(".csv.partial")
    with tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields, restval="", extrasaction="ignore")
        writer.writeheader()
        writer.writerows([{k: (v if v is not None else "") for k, v in r.items() if k is not None} for r in rows])
    os.replace(tmp, path)
    return fields


def _fmt(v: float | None) -> str:
    return "" if v is None or not math.isfinite(v) else repr(float(v))


def _row_values(out: Outcome) -> dict:
    ci = out.ci
    return {
        "estimate": out.estimate, "truth": out.truth, "abs_error": abs(out.estimate - out.truth), "seconds": out.seconds,
        "subsampled_from": out.subsampled_from or "",
        "se": _fmt(out.se) if ci is not None else "",
        "ci_low": _fmt(ci[0]) if ci else "", "ci_high": _fmt(ci[1]) if ci else "",
        "covered": "" if ci is None else int(ci[0] <= out.truth <= ci[1]),
        "pehe_in": _fmt(pehe(out.cate, out.ite)), "pehe_out": _fmt(pehe(out.cate_new, out.ite_new)),
        "error": "",
    }


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
    fields = _prepare_results(results)
    with results.open("a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields, restval="")
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
                        row.update(_row_values(runner.run(name, rec)))
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


def _values(rows: list[dict], key: str) -> np.ndarray:
    return np.array([float(r[key]) for r in rows if r.get(key) not in ("", None)], dtype=np.float64)


def summarise(rows: list[dict]) -> list[dict]:
    """Per (suite, estimator): n, MAE, its standard error, mean rank, median seconds, and where the
    rows have them (rows of older results.csv files do not) the coverage of the 95% intervals
    (mean of ``covered`` over the ``n_ci`` rows with an interval) and the mean ``pehe_in`` /
    ``pehe_out`` (NaN where there are none)."""
    ok = [r for r in rows if r.get("abs_error") not in ("", None)]
    by_dataset: dict[tuple, list[dict]] = {}
    for r in ok:
        by_dataset.setdefault((r["suite"], r["dataset"]), []).append(r)
    ranks: dict[tuple, list[float]] = {}
    for group in by_dataset.values():
        errs = np.array([float(r["abs_error"]) for r in group])
        # tied errors share their mean rank (aipw and doubleml tie when they agree to the last digit)
        rank = np.array([1.0 + (errs < e).sum() + 0.5 * ((errs == e).sum() - 1) for e in errs])
        for r, k in zip(group, rank):
            ranks.setdefault((r["suite"], r["estimator"]), []).append(float(k))
    table = []
    keys = sorted({(r["suite"], r["estimator"]) for r in ok}, key=lambda k: (k[0], ALL_ESTIMATORS.index(k[1]) if k[1] in ALL_ESTIMATORS else 99))
    for suite, est in keys:
        mine = [r for r in ok if r["suite"] == suite and r["estimator"] == est]
        errs = _values(mine, "abs_error")
        secs = _values(mine, "seconds")
        covered, p_in, p_out = _values(mine, "covered"), _values(mine, "pehe_in"), _values(mine, "pehe_out")
        table.append({
            "suite": suite, "estimator": est, "n": len(errs), "mae": float(errs.mean()),
            "mae_se": float(errs.std(ddof=1) / math.sqrt(len(errs))) if len(errs) > 1 else float("nan"),
            "mean_rank": float(np.mean(ranks[(suite, est)])),
            "median_seconds": float(np.median(secs)) if len(secs) else float("nan"),
            "n_ci": len(covered), "coverage": float(covered.mean()) if len(covered) else float("nan"),
            "pehe_in": float(p_in.mean()) if len(p_in) else float("nan"),
            "pehe_out": float(p_out.mean()) if len(p_out) else float("nan"),
        })
    return table


def _cell(v: float, fmt: str = ".3g") -> str:
    return "–" if not math.isfinite(v) else format(v, fmt)


def write_summary(results: Path, out: Path) -> Path:
    _, rows = _done_rows(results)
    table = summarise(rows)
    failures = [r for r in rows if r.get("error")]
    lines = ["# Evaluation summary", "",
             "MAE of the estimate against the truth (± its standard error over datasets), mean rank among the",
             "estimators on the same datasets (1 = best), median wall-clock seconds per dataset, the coverage",
             "of the 95% confidence intervals (share of the datasets with an interval whose interval holds the",
             "truth; their count in brackets), and the mean sqrt PEHE of the unit effects on the dataset's",
             "units (in) and on new units (out). – = the estimator gives no interval / no unit effects.", "",
             "| suite | estimator | datasets | MAE ± SE | mean rank | median s / dataset | 95% coverage | "
             "sqrt PEHE in | sqrt PEHE out |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in table:
        cover = f"{r['coverage']:.2f} ({r['n_ci']})" if r["n_ci"] else "–"
        lines.append(f"| {r['suite']} | {r['estimator']} | {r['n']} | {r['mae']:.4g} ± {r['mae_se']:.2g} | "
                     f"{r['mean_rank']:.2f} | {_cell(r['median_seconds'])} | {cover} | {_cell(r['pehe_in'], '.4g')} | "
                     f"{_cell(r['pehe_out'], '.4g')} |")
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
    lines = [f"{'suite':<16} {'estimator':<12} {'n':>5} {'MAE':>10} {'±SE':>9} {'rank':>6} {'s/dataset':>10} "
             f"{'cover95':>8} {'pehe_in':>9} {'pehe_out':>9}"]
    for r in table:
        lines.append(f"{r['suite']:<16} {r['estimator']:<12} {r['n']:>5} {r['mae']:>10.4g} {r['mae_se']:>9.2g} "
                     f"{r['mean_rank']:>6.2f} {_cell(r['median_seconds']):>10} {_cell(r.get('coverage', math.nan), '.2f'):>8} "
                     f"{_cell(r.get('pehe_in', math.nan), '.4g'):>9} {_cell(r.get('pehe_out', math.nan), '.4g'):>9}")
    return "\n".join(lines)
