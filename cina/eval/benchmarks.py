"""Benchmark datasets with known effects: IHDP, LaLonde, RealCause, Twins, and synthetic suites.

Every loader yields `BenchmarkDataset` records ``(name, suite, x, t, y, truth, estimand, ...)``.
The real-data loaders read the files a user has downloaded into a benchmark folder (the layout of
``../shared/benchmarks``, each family documented in its ``SOURCE.md``); nothing is ever fetched.
The folder is ``data_dir`` if given, else ``$CINA_BENCHMARKS``, else ``<repo>/../shared/benchmarks``
when that exists. A missing file or column raises an error naming it.

Protocols (truths as in each SOURCE.md):

* ``ihdp`` -- IHDP, NPCI setting A, the 1000 replications of Chernozhukov et al. (2022) that CInA
  uses (``ihdp/npz_1000/ihdp_npci_1-1000_riesznet.npz``). Each replication is one dataset of the
  same 747 units (139 treated) and 25 covariates (x14 is coded 1/2, kept as stored); outcome
  ``yf``; truth ``mean(mu1 - mu0)`` over all units (ATE; mean over the 1000 reps 4.40) or over
  the treated (ATT, exactly 4 in setting A). Metric: MAE over replications.
* ``ihdp-100`` -- the CFRNet IHDP-100 protocol (Shalit et al. 2017) on replications 1-100: the
  75 test units of each replication are ``ihdp/npz_100/ihdp_npci_1-100.test.npz``; the 672
  train units (whose file is not public) are the rest of the same replication of ``npz_1000``,
  every test row being found there exactly once (covariates, t, mu0, mu1; ihdp/SOURCE.md). The
  record is the 672 train units (ATE or ATT over them; in-sample CATE error), the test units
  ride along as new units (``x_new``, ``ite_new``: out-of-sample CATE error, sqrt PEHE).
* ``lalonde`` -- real data. The randomised Dehejia-Wahba NSW sample (``nsw``, 445 units) and the
  observational combinations of its 185 treated with a survey comparison group (``psid1``:
  2490 PSID-1 controls, ``cps1``: 15992 CPS-1 controls; also psid2/3, cps2/3). 8 covariates
  (`LALONDE_COVARIATES`), outcome ``re78`` (1978 earnings, US$). Truth: the experimental
  difference in means of ``nsw_dw`` = $1794.34, which is an effect **on the treated**, so these
  records have estimand ``"att"`` only. Metric: absolute error per dataset.
* ``realcause`` -- RealCause semi-synthetic LaLonde-PSID (2675 units), LaLonde-CPS (16177) and
  Twins (11984): real covariates, simulated t and both potential outcomes. Truth per sample:
  ``mean(ite)`` (ATE) or ``mean(ite | t=1)`` (ATT). Metric: MAE over samples (state which).
* ``twins`` -- Louizos et al. (2017) twins (11984 pairs, 75 covariates, binary 1-year
  mortality, simulated one-twin-per-pair observation). Truth ``mean(y1 - y0)`` = -0.0252 for the
  whole file; with ``subsample_size`` the records are random subsamples, each with its own
  ``mean(y1 - y0)``.
* synthetic -- `synthetic_tasks` / `heldout_corpus_tasks` (in-distribution: test-split seeds of
  the training prior, or the test split of a generated corpus) and `ood_suite` (mechanism shift,
  graph-family shift, more covariates than in training), built from `causalgen` configs. Truth:
  the task's sample ATE ``sate = mean(y1 - y0)`` (or sample ATT ``att``).

Large datasets: `subsample` draws at most ``max_units`` units (ATT: every treated unit kept when
possible) and recomputes the truth from the unit effects when they are known; the record's
``meta["subsampled_from"]`` says so.
"""

from __future__ import annotations

import csv
import gzip
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np

__all__ = [
    "BenchmarkDataset",
    "SUITES",
    "ENV_VAR",
    "LALONDE_COVARIATES",
    "LALONDE_SAMPLES",
    "LALONDE_EXPERIMENTAL_ATT",
    "REALCAUSE_DATASETS",
    "TWINS_ATE",
    "default_data_dir",
    "resolve_data_dir",
    "load_ihdp",
    "load_ihdp_100",
    "load_lalonde",
    "load_realcause",
    "load_twins",
    "synthetic_tasks",
    "heldout_corpus_tasks",
    "ood_configs",
    "ood_suite",
    "load_suite",
    "subsample",
    "from_task",
]

ENV_VAR = "CINA_BENCHMARKS"
SUITES = ("ihdp", "ihdp-100", "lalonde", "realcause", "twins", "synthetic")
ESTIMANDS = ("ate", "att")

LALONDE_COVARIATES = ("age", "education", "black", "hispanic", "married", "nodegree", "re74", "re75")
#: comparison-group files under lalonde/csv/ ("nsw" = the experimental DW controls)
LALONDE_SAMPLES = {
    "nsw": "nsw_dw.csv",
    "psid1": "psid_controls.csv",
    "psid2": "psid_controls2.csv",
    "psid3": "psid_controls3.csv",
    "cps1": "cps_controls.csv",
    "cps2": "cps_controls2.csv",
    "cps3": "cps_controls3.csv",
}
#: the documented experimental ATT (lalonde/SOURCE.md); the loader recomputes it from nsw_dw.csv
LALONDE_EXPERIMENTAL_ATT = 1794.34
REALCAUSE_DATASETS = ("lalonde_psid", "lalonde_cps", "twins")
REALCAUSE_TAIL = ("t", "y", "y0", "y1", "ite")
TWINS_TAIL = ("T", "y0", "y1", "yf", "y_cf", "Propensity")
TWINS_ATE = -0.025200267  # mean(y1 - y0) over all 11984 pairs (twins/SOURCE.md)
IHDP_NPZ = Path("ihdp", "npz_1000", "ihdp_npci_1-1000_riesznet.npz")
IHDP_REPS = 1000
IHDP_TEST_NPZ = Path("ihdp", "npz_100", "ihdp_npci_1-100.test.npz")


# --------------------------------------------------------------------------------------------
# the record


@dataclass(eq=False)
class BenchmarkDataset:
    """One benchmark dataset with its ground truth.

    Attributes:
        name: unique within a suite, e.g. ``"ihdp-0001"``, ``"lalonde-psid1"``.
        suite: ``"ihdp"``, ``"lalonde"``, ``"realcause"``, ``"twins"``, ``"synthetic-id"``,
            ``"synthetic-ood"`` (or the corpus name for corpus tasks).
        x: (N, d) float64 covariates, as stored (not standardised).
        t: (N,) int8 binary treatment.
        y: (N,) float64 observed outcome.
        truth: the true effect for ``estimand``, in the units of y.
        estimand: ``"ate"`` or ``"att"``.
        ite: (N,) float64 unit-level effects (mu1 - mu0 or y1 - y0) where known, else None; lets
            a subsample recompute its own truth, and is what in-sample CATE is scored against.
        covariates: names of the columns of x (may be empty).
        meta: provenance (source file, replication / sample / seed, notes).
        x_new: (M, d) new units of the same population, not part of the dataset (IHDP-100's
            test units), whose effects ``ite_new`` (M,) out-of-sample CATE is scored against;
            None for most suites.
    """

    name: str
    suite: str
    x: np.ndarray
    t: np.ndarray
    y: np.ndarray
    truth: float
    estimand: str
    ite: np.ndarray | None = None
    covariates: tuple[str, ...] = ()
    meta: dict[str, Any] = field(default_factory=dict)
    x_new: np.ndarray | None = None
    ite_new: np.ndarray | None = None

    @property
    def n_units(self) -> int:
        return int(self.x.shape[0])

    @property
    def n_covariates(self) -> int:
        return int(self.x.shape[1])

    @property
    def n_treated(self) -> int:
        return int(self.t.sum())

    def __repr__(self) -> str:
        return (f"BenchmarkDataset({self.name!r}, suite={self.suite!r}, N={self.n_units}, d={self.n_covariates}, "
                f"treated={self.n_treated}, {self.estimand}={self.truth:.6g})")


def _truth(ite: np.ndarray, t: np.ndarray, estimand: str) -> float:
    return float(ite.mean() if estimand == "ate" else ite[t == 1].mean())


def _check_estimand(estimand: str) -> str:
    if estimand not in ESTIMANDS:
        raise ValueError(f"estimand must be one of {ESTIMANDS}, got {estimand!r}")
    return estimand


# --------------------------------------------------------------------------------------------
# the data folder


def default_data_dir() -> Path | None:
    """``$CINA_BENCHMARKS`` if set, else ``<repo root>/../shared/benchmarks`` if it exists, else None."""
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env)
    candidate = Path(__file__).resolve().parents[2].parent / "shared" / "benchmarks"
    return candidate if candidate.is_dir() else None


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """The benchmark folder to read; FileNotFoundError (naming what was tried) if there is none."""
    if data_dir is None:
        found = default_data_dir()
        if found is None:
            guess = Path(__file__).resolve().parents[2].parent / "shared" / "benchmarks"
            raise FileNotFoundError(
                f"no benchmark folder: pass data_dir=..., or set ${ENV_VAR}, or put the files at {guess} "
                "(download them yourself; see the SOURCE.md of each family)"
            )
        data_dir = found
    path = Path(data_dir)
    if not path.is_dir():
        raise FileNotFoundError(f"benchmark folder {path} does not exist")
    return path


def _require(path: Path, what: str) -> Path:
    if not path.is_file():
        raise FileNotFoundError(f"{what}: {path} not found (see {path.parent}/SOURCE.md or its parent's for the expected layout)")
    return path


def _read_header_csv(path: Path) -> tuple[list[str], list[list[str]]]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", newline="") as f:
        rows = list(csv.reader(f))
    if not rows:
        raise ValueError(f"{path}: empty file")
    return rows[0], rows[1:]


def _columns(path: Path, header: list[str], rows: list[list[str]], names: Sequence[str]) -> np.ndarray:
    """(n_rows, len(names)) float64 of the named columns (first occurrence of each name)."""
    index = {}
    for i, h in enumerate(header):
        index.setdefault(h.strip(), i)
    missing = [n for n in names if n not in index]
    if missing:
        raise KeyError(f"{path}: missing column(s) {missing}; header has {header}")
    cols = [index[n] for n in names]
    try:
        return np.array([[float(r[c]) for c in cols] for r in rows], dtype=np.float64)
    except (ValueError, IndexError) as err:
        raise ValueError(f"{path}: non-numeric or short row in columns {list(names)} ({err})") from None


def _binary(path: Path, column: str, values: np.ndarray) -> np.ndarray:
    if not np.all((values == 0) | (values == 1)):
        raise ValueError(f"{path}: column {column!r} must be 0/1, got values {np.unique(values)[:10]}")
    return values.astype(np.int8)


# --------------------------------------------------------------------------------------------
# IHDP


def load_ihdp(data_dir=None, replications: Iterable[int] | None = None, estimand: str = "ate") -> Iterator[BenchmarkDataset]:
    """IHDP replications (1-based, default all 1000) from ``ihdp/npz_1000``.

    Each record: x (747, 25), t (747,), y = ``yf[:, r-1]``, ite = ``mu1 - mu0`` (noiseless),
    truth = mean of ite over all units (ATE) or the treated (ATT). Every replication has the same
    units, so all records share one read-only ``x`` and ``t`` (copy before modifying).
    """
    _check_estimand(estimand)
    path = _require(resolve_data_dir(data_dir) / IHDP_NPZ, "IHDP 1000-replication npz")
    with np.load(path) as z:
        missing = [k for k in ("x", "t", "yf", "mu0", "mu1") if k not in z.files]
        if missing:
            raise KeyError(f"{path}: missing array(s) {missing}; has {z.files}")
        x = np.asarray(z["x"], dtype=np.float64)
        t = _binary(path, "t", np.asarray(z["t"], dtype=np.float64))
        yf, mu0, mu1 = (np.asarray(z[k], dtype=np.float64) for k in ("yf", "mu0", "mu1"))
    n_reps = yf.shape[1]
    reps = range(1, n_reps + 1) if replications is None else replications
    x.setflags(write=False)
    t.setflags(write=False)
    for r in reps:
        r = int(r)
        if not 1 <= r <= n_reps:
            raise ValueError(f"{path}: replication {r} out of range 1..{n_reps}")
        ite = mu1[:, r - 1] - mu0[:, r - 1]
        yield BenchmarkDataset(
            name=f"ihdp-{r:04d}", suite="ihdp", x=x, t=t, y=yf[:, r - 1].copy(), truth=_truth(ite, t, estimand),
            estimand=estimand, ite=ite, covariates=tuple(f"x{i}" for i in range(1, x.shape[1] + 1)),
            meta={"replication": r, "source": str(path)},
        )


def _match_rows(full: np.ndarray, part: np.ndarray, what: str) -> np.ndarray:
    """Index into ``full`` of each row of ``part`` (exact equality of every column); ValueError
    naming the row when a row of ``part`` is found zero or several times."""
    index: dict[bytes, list[int]] = {}
    for i, row in enumerate(np.ascontiguousarray(full)):
        index.setdefault(row.tobytes(), []).append(i)
    out = np.empty(len(part), dtype=np.int64)
    for i, row in enumerate(np.ascontiguousarray(part)):
        hits = index.get(row.tobytes(), [])
        if len(hits) != 1:
            raise ValueError(f"{what}: test row {i} is found {len(hits)} times in the full replication (expected once)")
        out[i] = hits[0]
    if len(np.unique(out)) != len(out):
        raise ValueError(f"{what}: two test rows match the same unit of the full replication")
    return out


def load_ihdp_100(data_dir=None, replications: Iterable[int] | None = None, estimand: str = "ate") -> Iterator[BenchmarkDataset]:
    """The CFRNet IHDP-100 train/test protocol on replications 1-100 (default all), ``ihdp-100``.

    Per replication r: the 75 test units are column r-1 of ``ihdp/npz_100/ihdp_npci_1-100.test.npz``
    (keys x (75, 25, 100), t, yf, mu0, mu1 (75, 100)); each is located in replication r of
    ``npz_1000`` by exact equality of its covariates, treatment, mu0 and mu1 (ihdp/SOURCE.md:
    every test row is there; a row found zero or several times, or whose yf disagrees, raises a
    ValueError naming it), and the other 672 units are the train split. Record ``ihdp100-000r``:
    x, t, y = yf of the 672 train units (in the order of ``npz_1000``), ite = their mu1 - mu0,
    truth = mean(ite) (ATE) or its mean over the treated (ATT); x_new, ite_new = the 75 test units'
    covariates and mu1 - mu0. ``meta["test_rows"]``: the test units' rows in ``npz_1000``.
    """
    _check_estimand(estimand)
    root = resolve_data_dir(data_dir)
    path = _require(root / IHDP_TEST_NPZ, "IHDP-100 (CFRNet) test npz")
    full_path = _require(root / IHDP_NPZ, "IHDP 1000-replication npz (the train units of IHDP-100)")
    with np.load(path) as z:
        missing = [k for k in ("x", "t", "yf", "mu0", "mu1") if k not in z.files]
        if missing:
            raise KeyError(f"{path}: missing array(s) {missing}; has {z.files}")
        tx, tt, tyf, tmu0, tmu1 = (np.asarray(z[k], dtype=np.float64) for k in ("x", "t", "yf", "mu0", "mu1"))
    if tx.ndim != 3 or tt.shape != tx.shape[::2] or tx.shape[1] != 25:
        raise ValueError(f"{path}: expected x (M, 25, R) and t (M, R), got {tx.shape} and {tt.shape}")
    with np.load(full_path) as z:
        x = np.asarray(z["x"], dtype=np.float64)
        t = np.asarray(z["t"], dtype=np.float64)
        yf, mu0, mu1 = (np.asarray(z[k], dtype=np.float64) for k in ("yf", "mu0", "mu1"))
    n_reps = tx.shape[2]
    reps = range(1, n_reps + 1) if replications is None else replications
    for r in reps:
        r = int(r)
        if not 1 <= r <= n_reps:
            raise ValueError(f"{path}: replication {r} out of range 1..{n_reps}")
        c = r - 1
        what = f"{path} replication {r}"
        test_rows = _match_rows(np.column_stack([x, t, mu0[:, c], mu1[:, c]]),
                                np.column_stack([tx[:, :, c], tt[:, c], tmu0[:, c], tmu1[:, c]]), what)
        if not np.array_equal(yf[test_rows, c], tyf[:, c]):
            raise ValueError(f"{what}: the test units' yf differ from the full replication's")
        train = np.setdiff1d(np.arange(len(t)), test_rows)
        ti = _binary(full_path, "t", t[train])
        ite = mu1[train, c] - mu0[train, c]
        yield BenchmarkDataset(
            name=f"ihdp100-{r:04d}", suite="ihdp-100", x=x[train], t=ti, y=yf[train, c].copy(),
            truth=_truth(ite, ti, estimand), estimand=estimand, ite=ite,
            covariates=tuple(f"x{i}" for i in range(1, x.shape[1] + 1)),
            meta={"replication": r, "source": f"{full_path} minus the test units of {path}", "test_rows": test_rows},
            x_new=tx[:, :, c].copy(), ite_new=tmu1[:, c] - tmu0[:, c],
        )


# --------------------------------------------------------------------------------------------
# LaLonde


def _lalonde_table(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    header, rows = _read_header_csv(_require(path, "LaLonde csv"))
    data = _columns(path, header, rows, ("treat", *LALONDE_COVARIATES, "re78"))
    return data[:, 1:-1], _binary(path, "treat", data[:, 0]), data[:, -1]


def lalonde_experimental_att(data_dir=None) -> float:
    """mean(re78 | treat=1) - mean(re78 | treat=0) in the randomised ``nsw_dw`` sample ($1794.34)."""
    _, t, y = _lalonde_table(resolve_data_dir(data_dir) / "lalonde" / "csv" / LALONDE_SAMPLES["nsw"])
    return float(y[t == 1].mean() - y[t == 0].mean())


def load_lalonde(data_dir=None, samples: Sequence[str] = ("nsw", "psid1", "cps1"), estimand: str = "att") -> Iterator[BenchmarkDataset]:
    """LaLonde datasets: ``"nsw"`` (the randomised DW sample) and DW treated + a comparison group.

    Built from ``lalonde/csv/nsw_dw.csv`` (185 treated, 260 experimental controls) and the
    comparison-group files (`LALONDE_SAMPLES`), so ``psid1`` has 185 + 2490 = 2675 units and
    ``cps1`` 185 + 15992 = 16177 (the rows of ``lalonde/combined/``). Truth = the experimental
    ATT recomputed from ``nsw_dw.csv`` (1794.34). The estimand is the ATT; asking for the ATE
    raises, because the experiment says nothing about the ATE of a sample dominated by survey
    controls.
    """
    if estimand != "att":
        raise ValueError(
            "LaLonde's experimental truth ($1794.34) is an effect on the treated: use estimand='att' "
            f"(got {estimand!r}); an ATE estimate on the observational samples is not comparable to it"
        )
    folder = resolve_data_dir(data_dir) / "lalonde" / "csv"
    x_dw, t_dw, y_dw = _lalonde_table(folder / LALONDE_SAMPLES["nsw"])
    truth = float(y_dw[t_dw == 1].mean() - y_dw[t_dw == 0].mean())
    for sample in samples:
        if sample not in LALONDE_SAMPLES:
            raise KeyError(f"unknown LaLonde sample {sample!r}; known: {sorted(LALONDE_SAMPLES)}")
        if sample == "nsw":
            x, t, y = x_dw, t_dw, y_dw
            source = str(folder / LALONDE_SAMPLES["nsw"])
        else:
            path = folder / LALONDE_SAMPLES[sample]
            xc, tc, yc = _lalonde_table(path)
            if tc.any():
                raise ValueError(f"{path}: comparison group has {int(tc.sum())} rows with treat=1")
            keep = t_dw == 1
            x = np.concatenate([x_dw[keep], xc])
            t = np.concatenate([t_dw[keep], tc])
            y = np.concatenate([y_dw[keep], yc])
            source = f"{folder / LALONDE_SAMPLES['nsw']} (treated) + {path}"
        yield BenchmarkDataset(
            name=f"lalonde-{sample}", suite="lalonde", x=x, t=t, y=y, truth=truth, estimand="att",
            covariates=LALONDE_COVARIATES, meta={"sample": sample, "source": source, "outcome": "re78 (US$)"},
        )


# --------------------------------------------------------------------------------------------
# RealCause


def _sample_number(path: Path) -> int:
    m = re.search(r"_sample(\d+)\.csv(\.gz)?$", path.name)
    return int(m.group(1)) if m else -1


def load_realcause(data_dir=None, datasets: Sequence[str] = REALCAUSE_DATASETS, samples: Iterable[int] | None = None,
                   estimand: str = "ate") -> Iterator[BenchmarkDataset]:
    """RealCause samples ``realcause/<dataset>/<dataset>_sample<i>.csv.gz``.

    ``samples``: sample numbers to load (default: every file present, in numeric order; the
    shared folder keeps psid 0-99, cps 0-19, twins 0-19). Covariates = every column before the
    last five ``t, y, y0, y1, ite``; truth = mean(ite) (ATE) or mean(ite | t=1) (ATT).
    """
    _check_estimand(estimand)
    root = resolve_data_dir(data_dir) / "realcause"
    for ds in datasets:
        if ds not in REALCAUSE_DATASETS:
            raise KeyError(f"unknown RealCause dataset {ds!r}; known: {REALCAUSE_DATASETS}")
        folder = root / ds
        if samples is None:
            paths = sorted(folder.glob(f"{ds}_sample*.csv*"), key=_sample_number)
            if not paths:
                raise FileNotFoundError(f"RealCause {ds}: no {ds}_sample*.csv.gz files in {folder}")
        else:
            paths = [_require(folder / f"{ds}_sample{int(i)}.csv.gz", f"RealCause {ds} sample {i}") for i in samples]
        for path in paths:
            with gzip.open(path, "rt") if path.suffix == ".gz" else open(path) as f:
                header = [h.strip() for h in f.readline().strip().split(",")]
            if tuple(header[-5:]) != REALCAUSE_TAIL:
                raise KeyError(f"{path}: last five columns must be {list(REALCAUSE_TAIL)}, got {header[-5:]}")
            data = np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2)
            if data.shape[1] != len(header):
                raise ValueError(f"{path}: {data.shape[1]} values per row but {len(header)} header names")
            t = _binary(path, "t", data[:, -5])
            ite = data[:, -1].copy()
            yield BenchmarkDataset(
                name=f"realcause-{ds}-{_sample_number(path)}", suite="realcause", x=data[:, :-5].copy(), t=t,
                y=data[:, -4].copy(), truth=_truth(ite, t, estimand), estimand=estimand, ite=ite,
                covariates=tuple(header[:-5]), meta={"dataset": ds, "sample": _sample_number(path), "source": str(path)},
            )


# --------------------------------------------------------------------------------------------
# Twins


def load_twins(data_dir=None, estimand: str = "ate", subsample_size: int | None = None, n_subsamples: int = 10,
               seed: int = 0) -> Iterator[BenchmarkDataset]:
    """Twins from ``twins/Final_data_twins.csv``: x = the 75 covariate columns after the index.

    Default: one record, the whole file, truth mean(y1 - y0) = -0.0252 (ATE) or over T=1 (ATT).
    With ``subsample_size``: ``n_subsamples`` random subsamples (without replacement, seeded),
    each with its own truth computed from its units' y1 - y0.
    """
    _check_estimand(estimand)
    path = _require(resolve_data_dir(data_dir) / "twins" / "Final_data_twins.csv", "Twins csv")
    header, rows = _read_header_csv(path)
    if len(header) != 82 or tuple(h.strip() for h in header[-6:]) != TWINS_TAIL:
        raise KeyError(f"{path}: expected 82 columns (index, 75 covariates, {', '.join(TWINS_TAIL)}), "
                       f"got {len(header)} ending {header[-6:]}")
    try:
        data = np.array([[float(v) for v in r[1:]] for r in rows], dtype=np.float64)
    except ValueError as err:
        raise ValueError(f"{path}: non-numeric value ({err})") from None
    x = data[:, :75]
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{path}: covariates contain NaN/inf in columns {sorted(set(np.argwhere(~np.isfinite(x))[:, 1] + 1))}")
    t = _binary(path, "T", data[:, 75])
    y0, y1, yf = data[:, 76], data[:, 77], data[:, 78]
    if not np.array_equal(yf, np.where(t == 1, y1, y0)):
        raise ValueError(f"{path}: column 'yf' disagrees with 'T', 'y0', 'y1'")
    ite = y1 - y0
    names = tuple(h.strip() for h in header[1:76])
    meta = {"source": str(path)}
    if subsample_size is None:
        yield BenchmarkDataset("twins", "twins", x, t, yf, _truth(ite, t, estimand), estimand, ite, names, meta)
        return
    rng = np.random.default_rng(seed)
    for k in range(int(n_subsamples)):
        idx = np.sort(rng.choice(len(t), int(subsample_size), replace=False))
        yield BenchmarkDataset(f"twins-sub{k:03d}", "twins", x[idx], t[idx], yf[idx], _truth(ite[idx], t[idx], estimand),
                               estimand, ite[idx], names, {**meta, "subsample": k, "seed": seed, "subsampled_from": len(t)})


# --------------------------------------------------------------------------------------------
# synthetic suites (causalgen)


def from_task(task, name: str, suite: str, estimand: str = "ate", **meta) -> BenchmarkDataset:
    """A `causalgen.Task` as a record: truth = ``task.sate`` (ATE) or ``task.att`` (ATT)."""
    _check_estimand(estimand)
    truth = float(task.sate if estimand == "ate" else task.att)
    info = {"seed": task.meta.get("seed"), "population_ate": float(task.ate), "identifiable": bool(task.identifiable),
            "graph_family": task.meta.get("graph_family"), **meta}
    return BenchmarkDataset(name, suite, np.asarray(task.x, dtype=np.float64), np.asarray(task.t, dtype=np.int8),
                            np.asarray(task.y, dtype=np.float64), truth, estimand,
                            np.asarray(task.y1, dtype=np.float64) - np.asarray(task.y0, dtype=np.float64), (), info)


def _split_seeds(n: int, split: str, first_seed: int) -> list[int]:
    from causalgen.store import SPLITS, split_of

    if split not in SPLITS and split != "any":
        raise ValueError(f"split must be one of {SPLITS} or 'any', got {split!r}")
    seeds, s = [], int(first_seed)
    while len(seeds) < n:
        if split == "any" or split_of(s) == split:
            seeds.append(s)
        s += 1
    return seeds


def synthetic_tasks(config="default", n_tasks: int = 20, *, split: str = "test", first_seed: int = 0,
                    estimand: str = "ate", name: str | None = None, suite: str = "synthetic-id") -> Iterator[BenchmarkDataset]:
    """``n_tasks`` tasks sampled from a causalgen config, on seeds of the given split.

    Seeds are the first ``n_tasks`` integers >= ``first_seed`` whose `causalgen.store.splits.split_of`
    is ``split`` (default ``"test"``), so a model trained only on train-split seeds of the same
    config never saw them: the in-distribution suite. ``config``: preset name, path, dict or
    `causalgen.TaskConfig`. Records are named ``<name>-<seed>``.
    """
    import causalgen

    cfg = causalgen.load_config(config)
    label = name or cfg.name
    seeds = _split_seeds(int(n_tasks), split, first_seed)
    for seed, task in zip(seeds, causalgen.sample_tasks(cfg, seeds)):
        yield from_task(task, f"{label}-{seed}", suite, estimand, config=label, split=split)


def heldout_corpus_tasks(corpus, *, split: str = "test", limit: int | None = None, estimand: str = "ate") -> Iterator[BenchmarkDataset]:
    """Tasks of a generated corpus (path/URL or `causalgen.store.corpus.Corpus`) whose seed is in ``split``.

    The corpus' train/validation/test assignment is the seed hash of `causalgen.store.splits`, the
    same one training uses, so ``split="test"`` gives held-out in-distribution tasks.
    """
    from causalgen import open_corpus
    from causalgen.store import split_of

    c = open_corpus(corpus) if isinstance(corpus, (str, os.PathLike)) else corpus
    seeds = c.columns["seed"]
    label = Path(str(c.root)).name or "corpus"
    count = 0
    for i, seed in enumerate(seeds):
        if limit is not None and count >= limit:
            return
        if split != "any" and split_of(int(seed)) != split:
            continue
        count += 1
        yield from_task(c[i], f"{label}-{i}", "synthetic-id", estimand, corpus=str(c.root), task_index=i, split=split)


def _setoguchi_shift(base):
    import causalgen

    return causalgen.load_config("setoguchi-G-shift")


def _more_covariates(base):
    hi = int(base.graph.n_nodes[1])
    # a training task has at most hi - 2 covariates (treatment and outcome are nodes too)
    return base.replace(**{"graph.n_nodes": (2 * hi, 3 * hi), "roles.min_covariates": hi - 1})


#: name -> function of the training config returning the shifted config
OOD_SHIFTS: dict[str, Callable] = {
    # every node an RFF function with lengthscales far below the prior's (0.5-2): rougher mechanisms
    "mechanism-shift": lambda base: base.replace(**{"mechanism.families": {"rff": 1.0}, "mechanism.mixing": "task",
                                                     "mechanism.rff_lengthscale": (0.15, 0.4)}),
    # the fixed Setoguchi/Lee scenario-G DAG (binary and correlated covariates, quadratic and
    # interaction propensity) with per-task perturbed coefficients: a graph family the random-DAG
    # prior never draws (Tarr & Imai's / CInA's simulation A)
    "graph-shift": _setoguchi_shift,
    # graphs two to three times larger, and every task with more covariates than any training task
    "more-covariates": _more_covariates,
}


def ood_configs(base="default", shifts: Sequence[str] = tuple(OOD_SHIFTS)) -> dict[str, Any]:
    """Shifted `causalgen.TaskConfig` per shift name in `OOD_SHIFTS`, relative to the training config."""
    import causalgen

    cfg = causalgen.load_config(base)
    out = {}
    for s in shifts:
        if s not in OOD_SHIFTS:
            raise KeyError(f"unknown shift {s!r}; known: {sorted(OOD_SHIFTS)}")
        shifted = OOD_SHIFTS[s](cfg)
        out[s] = shifted.replace(name=f"{cfg.name}:{s}") if shifted.name == cfg.name else shifted
    return out


def ood_suite(n_tasks: int = 20, base="default", *, shifts: Sequence[str] = tuple(OOD_SHIFTS), first_seed: int = 0,
              estimand: str = "ate") -> Iterator[BenchmarkDataset]:
    """``n_tasks`` test-split tasks per shift of `ood_configs`; records named ``<shift>-<seed>``."""
    for shift, cfg in ood_configs(base, shifts).items():
        for rec in synthetic_tasks(cfg, n_tasks, first_seed=first_seed, estimand=estimand, name=shift, suite="synthetic-ood"):
            rec.meta["shift"] = shift
            yield rec


# --------------------------------------------------------------------------------------------
# dispatch and subsampling


def load_suite(name: str, data_dir=None, **kwargs) -> Iterator[BenchmarkDataset]:
    """Records of one suite in `SUITES` with its default protocol; kwargs go to its loader.

    ``"synthetic"`` = `synthetic_tasks` (in-distribution, default prior) followed by `ood_suite`;
    its kwargs: ``n_tasks``, ``base``/``config``, ``first_seed``, ``estimand``.
    """
    if name == "ihdp":
        return load_ihdp(data_dir, **kwargs)
    if name == "ihdp-100":
        return load_ihdp_100(data_dir, **kwargs)
    if name == "lalonde":
        return load_lalonde(data_dir, **kwargs)
    if name == "realcause":
        return load_realcause(data_dir, **kwargs)
    if name == "twins":
        return load_twins(data_dir, **kwargs)
    if name == "synthetic":
        n = kwargs.pop("n_tasks", 20)
        base = kwargs.pop("base", kwargs.pop("config", "default"))

        def chain():
            yield from synthetic_tasks(base, n, **kwargs)
            yield from ood_suite(n, base, **kwargs)

        return chain()
    raise KeyError(f"unknown suite {name!r}; known: {SUITES}")


def subsample(record: BenchmarkDataset, max_units: int, seed: int = 0) -> BenchmarkDataset:
    """At most ``max_units`` units of ``record`` (the record itself if it is small enough).

    ATT records keep every treated unit when they fill at most half of ``max_units`` and fill up
    with random controls; otherwise (and for the ATE) the draw is stratified by arm, keeping the
    treated share. The truth is recomputed from the kept units' ``ite`` when it is known;
    otherwise (LaLonde) it stays the full-data truth, and ``meta["truth"]`` says which.
    """
    n = record.n_units
    if n <= max_units:
        return record
    if max_units < 4:
        raise ValueError(f"max_units must be >= 4, got {max_units}")
    rng = np.random.default_rng(seed)
    idx_t, idx_c = np.flatnonzero(record.t == 1), np.flatnonzero(record.t == 0)
    if record.estimand == "att" and len(idx_t) <= max_units // 2:
        keep_t = idx_t
    else:
        k = min(len(idx_t) - 1, max(2, round(max_units * len(idx_t) / n)))
        keep_t = rng.choice(idx_t, k, replace=False)
    keep_c = rng.choice(idx_c, min(len(idx_c), max_units - len(keep_t)), replace=False)
    idx = np.sort(np.concatenate([keep_t, keep_c]))
    t = record.t[idx]
    ite = None if record.ite is None else record.ite[idx]
    truth = record.truth if ite is None else _truth(ite, t, record.estimand)
    meta = {**record.meta, "subsampled_from": n, "subsample_seed": seed,
            "truth": "full-data truth" if ite is None else "recomputed on the subsample"}
    return replace(record, x=record.x[idx], t=t, y=record.y[idx], ite=ite, truth=truth, meta=meta)
