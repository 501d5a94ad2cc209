"""Quality control and per-task summaries of a simulated batch.

Everything here works on padded (B, N) arrays of a batch: units beyond a task's
own count are padding (always fewer than 64, at the end), so reductions run over
the common head ``[:, :min(n)]`` unmasked and only the short tail is masked.

QC rejects a task whose covariates, potential outcomes or propensities are
non-finite or larger than ``qc.max_abs_value``, that has fewer than
``qc.min_units_per_arm`` units in an arm, whose observed outcome is (nearly)
constant, whose ATE is not finite or too large, or whose Monte-Carlo ATE has a
standard error above ``qc.max_ate_se``, or whose unit-level effect is too
heavy-tailed for any affordable Monte-Carlo sample to pin its population mean down
(``qc.min_effect_tail_index``, ``qc.max_effect_variance_error``); the first failing check
names the reason.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .config import TaskConfig

F32 = np.float32


def peak(a: np.ndarray, n_units: np.ndarray) -> np.ndarray:
    """max |a| over each task's real units: a (B, ..., N) -> (B, ...); NaN if
    any value there is NaN."""
    lo = int(n_units.min())
    head = a[..., :lo]
    out = np.maximum(np.abs(head.max(axis=-1)), np.abs(head.min(axis=-1)))
    if lo < a.shape[-1]:
        valid = np.arange(lo, a.shape[-1])[None, :] < n_units[:, None]
        valid = valid.reshape(valid.shape[:1] + (1,) * (a.ndim - 2) + valid.shape[1:])
        tail = np.where(valid, a[..., lo:], 0)  # zeros never raise the peak
        out = np.maximum(out, np.maximum(np.abs(tail.max(axis=-1)), np.abs(tail.min(axis=-1))))
    return out


@dataclass
class Summaries:
    """Per-task statistics over the real units, each (B,) unless noted.

    y: (B, N) observed outcome where(t, y1, y0); n_treated; y_std (population
    sd of y); sate, att (float64 means of y1 - y0); e_min, e_max; outside
    (share of units with e outside [0.05, 0.95]).
    """

    y: np.ndarray
    n_treated: np.ndarray
    y_std: np.ndarray
    sate: np.ndarray
    att: np.ndarray
    e_min: np.ndarray
    e_max: np.ndarray
    outside: np.ndarray


def summarise(y0: np.ndarray, y1: np.ndarray, t: np.ndarray, e: np.ndarray, n_units: np.ndarray) -> Summaries:
    """Per-task statistics; sets padded units of y0, y1 to 0 and of t to False
    (in place) so that plain sums over N are sums over the real units."""
    n_pad = t.shape[1]
    lo = int(n_units.min())
    n = n_units.astype(np.float64)
    if lo < n_pad:
        valid = np.arange(lo, n_pad)[None, :] < n_units[:, None]
        t[:, lo:] &= valid
        y0[:, lo:] *= valid
        y1[:, lo:] *= valid
        e_tail = e[:, lo:]
        e_min_tail = np.where(valid, e_tail, np.inf).min(axis=1)
        e_max_tail = np.where(valid, e_tail, -np.inf).max(axis=1)
        out_tail = np.count_nonzero(((e_tail < 0.05) | (e_tail > 0.95)) & valid, axis=1)
    else:
        e_min_tail, e_max_tail, out_tail = np.inf, -np.inf, 0
    e_head = e[:, :lo]
    y = np.where(t, y1, y0)
    n_treated = np.count_nonzero(t, axis=1)
    mean = y.sum(axis=1, dtype=np.float64) / n
    y_std = np.sqrt(np.maximum(np.einsum("bn,bn->b", y, y, dtype=np.float64) / n - mean * mean, 0.0))
    ite = np.subtract(y1, y0, dtype=np.float64)
    sate = ite.sum(axis=1) / n
    ite *= t
    att = ite.sum(axis=1) / np.maximum(n_treated, 1)
    outside = np.count_nonzero((e_head < 0.05) | (e_head > 0.95), axis=1) + out_tail
    return Summaries(
        y=y, n_treated=n_treated, y_std=y_std, sate=sate, att=att,
        e_min=np.minimum(e_head.min(axis=1), e_min_tail), e_max=np.maximum(e_head.max(axis=1), e_max_tail),
        outside=outside / n,
    )


def rejections(cfg: TaskConfig, peaks: np.ndarray, s: Summaries, n_units: np.ndarray, ate: np.ndarray,
               ate_se: np.ndarray | None = None, tail_index: np.ndarray | None = None,
               variance_error: np.ndarray | None = None) -> list:
    """A rejection reason (str) or None per task.

    peaks: (4, B) max |.| of x, y0, y1 and the propensity over the real units
    (NaN or inf where some value is not finite). ate_se: (B,) standard errors of
    the population ATE (0 where exact). tail_index, variance_error: (B,) tail statistics
    of the unit-level effect (`causalgen.prior.ate.MonteCarlo`; inf / 0 where exact)."""
    q = cfg.qc
    bad = ~np.isfinite(peaks) | (peaks > q.max_abs_value)
    first = np.argmax(bad, axis=0)
    finite_first = np.isfinite(peaks[first, np.arange(peaks.shape[1])])
    checks = [  # in order: an earlier failing check names the reason
        (bad.any(axis=0) & ~finite_first, "non_finite"),
        (bad.any(axis=0) & finite_first, "exploding_values"),
        ((s.n_treated < q.min_units_per_arm) | (n_units - s.n_treated < q.min_units_per_arm), "single_treatment_arm"),
        (s.y_std < q.min_outcome_std, "degenerate_outcome"),
        (~np.isfinite(ate), "non_finite"),
        # A heavy-tailed unit effect can leave the Monte-Carlo ATE far off even when
        # the observed sample looks tame: such a target would poison supervised training.
        (np.isfinite(ate) & (np.abs(ate) > q.max_abs_value), "exploding_values"),
    ]
    if tail_index is not None and variance_error is not None:
        # before imprecise_ate: a heavy tail is the reason its standard error cannot be trusted
        heavy = ((np.nan_to_num(tail_index, nan=0.0) < q.min_effect_tail_index)
                 | (np.nan_to_num(variance_error, nan=np.inf) > q.max_effect_variance_error))
        checks.append((heavy, "heavy_tailed_effect"))
    if ate_se is not None:
        checks.append((np.nan_to_num(ate_se, nan=np.inf) > q.max_ate_se, "imprecise_ate"))
    reasons: list = [None] * len(ate)
    for failed, reason in reversed(checks):
        for b in np.flatnonzero(failed).tolist():
            reasons[b] = reason
    return reasons
