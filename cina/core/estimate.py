"""Zero-shot estimation (Algorithm 3): many datasets through a trained model in batched forward
passes, each returned as an `Estimate` with its weights and balance diagnostics."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .checks import dataset_warnings, informative_columns, weighting_warnings
from .inputs import check_dataset, collate_datasets
from .weights import balance_diagnostics

__all__ = ["Estimate", "estimate_datasets"]


@dataclass
class Estimate:
    """A treatment-effect estimate from balancing weights.

    Attributes:
        ate: the estimate (of the ATE, or of the ATT when ``estimand == "att"``); NaN without y.
        weights: (N,) per-arm normalised weights (each arm sums to one).
        diagnostics: effective sample sizes, SMDs before/after weighting, top-1% weight share,
            ``warnings`` (list of one-line strings, `cina.core.checks`), ...
        estimand: "ate" or "att".
    """

    ate: float
    weights: np.ndarray
    diagnostics: dict[str, Any] = field(default_factory=dict)
    estimand: str = "ate"


@torch.no_grad()
def estimate_datasets(
    model,
    x,
    t,
    y=None,
    *,
    estimand: str = "ate",
    lam: float | None = None,
    batch_size: int | None = None,
    compute_loss: bool = True,
    feature_names=None,
) -> Estimate | list[Estimate]:
    """Zero-shot effect estimates of ``model`` (a `CInA`) in one forward pass per ``batch_size`` datasets.

    Args:
        x: (N, d) array for one dataset, or a list of (N_m, d_m) arrays.
        t: (N,) 0/1 array, or a list. y: (N,) outcomes, a list, or None (weights only).
        estimand: "ate" or "att" (must be one the model was trained for).
        lam: per-unit penalty (default: the config's; must lie in ``lam_range`` if set).
        batch_size: datasets per forward pass (default: all at once for the SVM layer; for
            target balancing as many as keep the kernel dense, max_block_elements / N^2).
        compute_loss: also report the balancing loss and its duality gap (costs two O(N^2)
            time, O(N) memory passes; the gap bounds how far the weights are from optimal).
        feature_names: d names of the columns of x (a list of such lists for many datasets),
            used by the warnings; default ``column j``.

    Returns:
        `Estimate` (or a list of them): ``ate`` (NaN without y), per-arm normalised
        ``weights`` and ``diagnostics``: ess_treated, ess_control, smd_before, smd_after
        (d,), max_abs_smd_before/after, top1_share, n_treated, n_control, lam, (with
        compute_loss) balancing_loss and duality_gap, and ``warnings``: constant covariates,
        covariates without overlap between the arms, arms with fewer than 10 units or an
        effective sample size below 5 (`cina.core.checks`; [] when there is nothing to say).

    Covariates are standardised in float64 from the values given (`standardize_covariates`),
    so their unit of measurement does not matter. Constant columns (``sd <= 1e-7 max|x|``) are
    left out of the model's input, reported in ``warnings``, and get SMD 0; a dataset whose
    every covariate is constant is refused (ValueError), as are NaN/inf values.
    """
    c = model.config
    if estimand not in c.estimands:
        raise ValueError(f"this model was trained for estimands {c.estimands}, not {estimand!r}")
    if lam is not None and c.lam_range is None and lam != c.lam:
        raise ValueError(f"this model was trained with lam={c.lam} only; pass lam=None or train with lam_range")
    if lam is not None and c.lam_range is not None and not (c.lam_range[0] <= lam <= c.lam_range[1]):
        raise ValueError(f"lam={lam} is outside the trained lam_range={c.lam_range}")
    single = not isinstance(x, (list, tuple))
    xs, ts = ([x], [t]) if single else (list(x), list(t))
    ys = [y] if single else (list(y) if y is not None else [None] * len(xs))
    if not (len(xs) == len(ts) == len(ys)):
        raise ValueError(f"x, t and y must list the same number of datasets, got {len(xs)}, {len(ts)}, {len(ys)}")
    if feature_names is None:
        names = [None] * len(xs)
    else:
        names = [list(feature_names)] if single else [None if n is None else list(n) for n in feature_names]
        if len(names) != len(xs):
            raise ValueError(f"feature_names must list the names of {len(xs)} datasets, got {len(names)}")
    checked, keep, warns = [], [], []
    for i, (xi, ti, yi) in enumerate(zip(xs, ts, ys)):
        try:
            checked.append(check_dataset(xi, ti, yi))
            keep.append(informative_columns(checked[-1][0], names[i]))
            warns.append(dataset_warnings(checked[-1][0], checked[-1][1], names[i]))
        except ValueError as e:
            raise ValueError(f"dataset {i}: {e}" if not single else str(e)) from None
        if int(keep[-1].sum()) > c.max_features:
            raise ValueError(f"dataset {i} has {int(keep[-1].sum())} features; the model accepts at most {c.max_features}")
    was_training = model.training
    model.eval()
    results: list[Estimate] = []
    try:
        if batch_size is None:
            # as many datasets per pass as keep the (B, N, N) kernel dense: larger batches
            # would fall back to row blocks, which recompute the kernel at every step
            n_max = max(len(ti) for _, ti, _ in checked)
            batch_size = max(1, c.max_block_elements // (n_max * n_max)) if c.balancing == "target" else len(checked)
        step = batch_size
        for s in range(0, len(checked), step):
            chunk = checked[s : s + step]
            has_y = [yi is not None for _, _, yi in chunk]
            # collated in float64: the diagnostics use every column, the network the informative
            # ones, standardised in float64 (covariates in units of 1e-7 or 1e19 must neither
            # vanish nor overflow) and then read in float32; t and y in float32
            ys64 = [yi if yi is not None else np.zeros(len(b)) for _, b, yi in chunk]
            x64 = collate_datasets([a for a, _, _ in chunk], [b for _, b, _ in chunk], ys64, dtype=torch.float64)
            xin = collate_datasets([a[:, k] for (a, _, _), k in zip(chunk, keep[s : s + step])],
                                   [b for _, b, _ in chunk], ys64, dtype=torch.float64)
            batch = {k: (v.float() if v.is_floating_point() and k != "x" else v).to(model.device) for k, v in xin.items()}
            # check_dataset has validated every dataset of the batch
            out = model(batch, estimand=estimand, lam=lam, compute_loss=compute_loss, validate=False)
            diag = balance_diagnostics(x64["x"], x64["t"], out["weights"].double().cpu(), x64["unit_mask"], x64["feature_mask"])
            for i, (xi, ti, _) in enumerate(chunk):
                n, d = xi.shape
                w = out["weights"][i, :n].double().cpu().numpy()
                dg: dict[str, Any] = {
                    "ess_treated": float(diag["ess_treated"][i]),
                    "ess_control": float(diag["ess_control"][i]),
                    "smd_before": diag["smd_before"][i, :d].numpy(),
                    "smd_after": diag["smd_after"][i, :d].numpy(),
                    "top1_share": float(diag["top1_share"][i]),
                    "n_treated": int(ti.sum()),
                    "n_control": int(n - ti.sum()),
                    "lam": float(out["lam"][i]),
                }
                dg["max_abs_smd_before"] = float(np.abs(dg["smd_before"]).max())
                dg["max_abs_smd_after"] = float(np.abs(dg["smd_after"]).max())
                dg["warnings"] = warns[s + i] + weighting_warnings(dg["ess_treated"], dg["ess_control"],
                                                                   dg["n_treated"], dg["n_control"])
                if "objective" in out:  # target balancing: its objective and convergence
                    dg["balancing_loss"] = float(out["objective"][i])
                    dg["last_step_change"] = float(out["step_change"][i])
                elif compute_loss:
                    dg["balancing_loss"] = float(out["primal"][i])
                    dg["duality_gap"] = float(out["gap"][i])
                if has_y[i]:
                    # In float64 from the returned weights: the float32 sum loses digits at large N.
                    yi = chunk[i][2]
                    ate = float(w[ti == 1] @ yi[ti == 1] - w[ti == 0] @ yi[ti == 0])
                else:
                    ate = float("nan")
                results.append(Estimate(ate=ate, weights=w, diagnostics=dg, estimand=estimand))
    finally:
        model.train(was_training)
    return results[0] if single else results

