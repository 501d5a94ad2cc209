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
* tiny arm: fewer than ``MIN_ARM_UNITS`` (10) units in an arm, or an effective sample size
  ``1 / sum w^2`` below ``MIN_ARM_ESS`` (5) after weighting: the estimate then rests on a
  handful of units and its error is not small whatever the method.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .kernel import CONSTANT_RTOL

__all__ = ["CONSTANT_RTOL", "MIN_ARM_ESS", "MIN_ARM_UNITS", "column_labels", "constant_columns", "dataset_warnings",
           "informative_columns", "scaled_columns", "separated_columns", "weighting_warnings"]

#: an arm with fewer units than this gets a warning
MIN_ARM_UNITS = 10
#: an arm whose effective sample size after weighting is below this gets a warning
MIN_ARM_ESS = 5.0


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


def dataset_warnings(x: np.ndarray, t: np.ndarray, names: Sequence[str] | None = None) -> list[str]:
    """Warnings about one dataset before any weighting: constant covariates (ignored),
    covariates without overlap between the arms, arms with fewer than `MIN_ARM_UNITS` units.

    Args:
        x: (N, d) covariates; t: (N,) 0/1; names: d column names (default ``column j``).
    """
    x = np.asarray(x, dtype=np.float64)
    t = np.asarray(t, dtype=np.float64)
    labels = column_labels(x.shape[1], names)
    out = []
    for j in np.flatnonzero(constant_columns(x)):
        out.append(f"covariate {labels[j]} is constant; it carries no information and was ignored")
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
