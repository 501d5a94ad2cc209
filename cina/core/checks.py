"""What an estimate cannot vouch for: constant and separating covariates, tiny arms, weights
concentrated on a few units. Plain numpy functions on one dataset (float64), returning the
warnings `cina.core.estimate` and `cina.core.single` put in ``diagnostics["warnings"]`` (a list
of one-line strings, each naming the column or the arm) and that ``cina estimate`` prints.

The thresholds, and why:

* constant: ``sd <= CONSTANT_RTOL * max|x|`` (`cina.core.kernel.CONSTANT_RTOL`, 1e-7), relative
  to the column's own magnitude, so no unit of measurement makes a confounder look constant.
  Such a column is ignored (it carries no information) and reported; a dataset whose every
  covariate is constant is refused (`informative_columns`).
* no overlap: the arms' ranges of a covariate do not overlap (the largest value of one arm is
  below the smallest of the other), so a threshold on it predicts the treatment perfectly and
  an effect can only come from extrapolation. One covariate at a time: separation by a
  combination of covariates is not detected.
* extreme value: one unit lies farther from a column's median than ``EXTREME_RATIO`` (1000)
  times the range of all the other units' values (columns with more than two distinct values,
  datasets of at least 20 units). Standardised, the other units' values of that column then
  barely differ, so the kernel balances little of it (a covariate), or the estimate follows
  that one unit (the outcome). In users' data this is nearly always a typo or a missing-value
  code like 99999 or 1e30. The realistic prior makes such columns on purpose (its exp
  distortions; about a third of its tasks have one), so the shipped models have seen them.
* tiny arm: fewer than ``MIN_ARM_UNITS`` (10) units in an arm, or an effective sample size
  ``1 / sum w^2`` below ``MIN_ARM_ESS`` (5) after weighting: the estimate then rests on a
  handful of units and its error is not small whatever the method.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .kernel import CONSTANT_RTOL

__all__ = ["CONSTANT_RTOL", "EXTREME_RATIO", "MIN_ARM_ESS", "MIN_ARM_UNITS", "column_labels", "constant_columns",
           "dataset_warnings", "extreme_values", "informative_columns", "scaled_columns", "separated_columns", "weighting_warnings"]

#: an arm with fewer units than this gets a warning
MIN_ARM_UNITS = 10
#: an arm whose effective sample size after weighting is below this gets a warning
MIN_ARM_ESS = 5.0
#: a value farther from a column's median than this many times the other units' range gets a warning
EXTREME_RATIO = 1000.0


def column_labels(d: int, names: Sequence[str] | None = None) -> list[str]:
    """How warnings name the d columns: ``'age'`` with names, else ``column 3`` (of x)."""
    if names is not None:
        if len(names) != d:
            raise ValueError(f"feature_names has {len(names)} names for {d} columns")
        return [repr(str(n)) for n in names]
    return [f"column {j}" for j in range(d)]


def scaled_columns(x: np.ndarray) -> np.ndarray:
    """(N, d) -> (N, d) float64: each column divided by its largest magnitude (all-zero columns
    unchanged), so that squares and sums neither over- nor underflow in any unit."""
    x = np.asarray(x, dtype=np.float64)
    mag = np.abs(x).max(axis=0) if len(x) else np.zeros(x.shape[1])
    return x / np.where(mag > 0, mag, 1.0)


def constant_columns(x: np.ndarray) -> np.ndarray:
    """(N, d) -> (d,) bool: True where ``sd <= CONSTANT_RTOL * max|x|`` (the rule of
    `cina.core.kernel.standardize_covariates`)."""
    return scaled_columns(x).var(axis=0) <= CONSTANT_RTOL**2


def separated_columns(x: np.ndarray, t: np.ndarray) -> np.ndarray:
    """(N, d), (N,) 0/1 -> (d,) bool: True where the arms' ranges do not overlap (max of one
    arm < min of the other), for non-constant columns of datasets with both arms."""
    x = np.asarray(x, dtype=np.float64)
    treated = np.asarray(t) > 0.5
    if treated.all() or not treated.any():
        return np.zeros(x.shape[1], dtype=bool)
    xt, xc = x[treated], x[~treated]
    apart = (xt.max(0) < xc.min(0)) | (xc.max(0) < xt.min(0))
    return apart & ~constant_columns(x)


def extreme_values(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, d) -> (unit (d,) int, ratio (d,) float64): per column, the unit farthest from the
    median and its distance from the median over the range of all the other units' values (inf
    when the others are all equal). Ratio 0 for columns with at most two distinct values (a
    rare category is not an outlier) and for datasets of fewer than 20 units. Computed on
    `scaled_columns`, so values up to float64's range neither overflow nor vanish."""
    xs = scaled_columns(np.atleast_2d(np.asarray(x, dtype=np.float64).T).T)
    n, d = xs.shape
    if n < 20:
        return np.zeros(d, dtype=np.int64), np.zeros(d)
    med = np.median(xs, axis=0)
    unit = np.abs(xs - med).argmax(axis=0)
    srt = np.sort(xs, axis=0)
    top = xs[unit, np.arange(d)] >= srt[-1]
    # the others' range: without the largest value if the extreme unit is on top, else the smallest
    rest = np.where(top, srt[-2] - srt[0], srt[-1] - srt[1])
    dist = np.abs(xs[unit, np.arange(d)] - med)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(rest > 0, dist / np.where(rest > 0, rest, 1.0), np.where(dist > 0, np.inf, 0.0))
    n_distinct = 1 + (np.diff(srt, axis=0) != 0).sum(axis=0)
    return unit, np.where(n_distinct > 2, ratio, 0.0)


def informative_columns(x: np.ndarray, names: Sequence[str] | None = None) -> np.ndarray:
    """(N, d) -> (d,) bool, the non-constant columns; raises ValueError naming the columns when
    every covariate is constant (nothing to balance: the estimate would be the difference in
    means while looking adjusted)."""
    const = constant_columns(x)
    if const.all():
        labels = column_labels(x.shape[1], names)
        raise ValueError(f"every covariate is constant ({', '.join(labels[:10])}); there is nothing to adjust for "
                         "(the estimate would be the plain difference in means)")
    return ~const


def dataset_warnings(x: np.ndarray, t: np.ndarray, names: Sequence[str] | None = None,
                     y: np.ndarray | None = None) -> list[str]:
    """Warnings about one dataset before any weighting: constant covariates (ignored),
    covariates or an outcome dominated by one extreme value, covariates without overlap between
    the arms, arms with fewer than `MIN_ARM_UNITS` units.

    Args:
        x: (N, d) covariates; t: (N,) 0/1; names: d column names (default ``column j``);
        y: (N,) outcomes, optional. Units are named by their 0-based index.
    """
    x = np.asarray(x, dtype=np.float64)
    t = np.asarray(t, dtype=np.float64)
    labels = column_labels(x.shape[1], names)
    out = []
    const = constant_columns(x)
    for j in np.flatnonzero(const):
        out.append(f"covariate {labels[j]} is constant; it carries no information and was ignored")
    unit, ratio = extreme_values(x)
    for j in np.flatnonzero((ratio > EXTREME_RATIO) & ~const):
        out.append(f"covariate {labels[j]} has an extreme value at unit {unit[j]} ({x[unit[j], j]:.4g}, over "
                   f"{EXTREME_RATIO:g}x the other units' range from their median): standardised, the other "
                   "units' values barely differ, so little of the column is balanced; check the value")
    if y is not None:
        y = np.asarray(y, dtype=np.float64)
        yunit, yratio = extreme_values(y[:, None])
        if yratio[0] > EXTREME_RATIO:
            out.append(f"the outcome has an extreme value at unit {yunit[0]} ({y[yunit[0]]:.4g}, over "
                       f"{EXTREME_RATIO:g}x the other units' range from their median): the estimate follows "
                       "that one unit; check the value")
    treated = t > 0.5
    for j in np.flatnonzero(separated_columns(x, t)):
        xt, xc = x[treated, j], x[~treated, j]
        out.append(f"covariate {labels[j]} has no overlap between the arms (treated in [{xt.min():.4g}, {xt.max():.4g}], "
                   f"control in [{xc.min():.4g}, {xc.max():.4g}]): it predicts the treatment perfectly, so the "
                   "estimate is an extrapolation")
    for arm, count in (("treated", int(treated.sum())), ("control", int((~treated).sum()))):
        if count < MIN_ARM_UNITS:
            out.append(f"the {arm} arm has only {count} unit{'s' if count != 1 else ''} (fewer than {MIN_ARM_UNITS}); "
                       "the estimate is unreliable")
    return out


def weighting_warnings(ess_treated: float, ess_control: float, n_treated: int | None = None,
                       n_control: int | None = None) -> list[str]:
    """Warnings about a weighting: an arm whose effective sample size is below `MIN_ARM_ESS`
    (arms already flagged by `dataset_warnings` for their size, given n_treated / n_control,
    are not flagged twice)."""
    out = []
    for arm, ess, n in (("treated", ess_treated, n_treated), ("control", ess_control, n_control)):
        if n is not None and n < MIN_ARM_UNITS:
            continue
        if not ess >= MIN_ARM_ESS:
            out.append(f"the {arm} arm's effective sample size after weighting is {ess:.3g} (below {MIN_ARM_ESS:g}): "
                       "the estimate rests on a few units")
    return out
