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
    """A treatment-effect estimate from balancing weights (and, with an outcome model, augmented).

    Attributes:
        ate: the estimate (of the ATE, or of the ATT when ``estimand == "att"``); NaN without y.
        weights: (N,) per-arm normalised weights (each arm sums to one).
        diagnostics: effective sample sizes, SMDs before/after weighting, top-1% weight share,
            ``warnings`` (list of one-line strings, `cina.core.checks`), ...
        estimand: "ate" or "att".
        se: standard error of `ate` from the influence function (`cina.core.augment`; NaN for
            models without an outcome head, or without y), for the population effect.
        se_sample: the standard error for the effect on the dataset's own units (their x held
            fixed: the sample ATE / ATT), smaller when effects vary between units.
        cate: (N,) conditional effects mu1(x_i) - mu0(x_i) of the dataset's units (None without
            an outcome head); mu0, mu1: (N,) the cross-fitted outcome means behind them.
        cate_new: (M,) conditional effects of new units given as ``x_new`` (None otherwise).
        ate_weighting: the weights-only estimate (equal to `ate` when not augmented).
    """

    ate: float
    weights: np.ndarray
    diagnostics: dict[str, Any] = field(default_factory=dict)
    estimand: str = "ate"
    se: float = float("nan")
    se_sample: float = float("nan")
    cate: np.ndarray | None = None
    mu0: np.ndarray | None = None
    mu1: np.ndarray | None = None
    cate_new: np.ndarray | None = None
    ate_weighting: float = float("nan")

    def ci(self, level: float = 0.95, sample: bool = False) -> tuple[float, float]:
        """The normal-approximation confidence interval ate +- z se at `level` (NaN without se):
        for the population effect, or with ``sample=True`` for the effect on these units
        (``se_sample``)."""
        if not 0 < level < 1:
            raise ValueError(f"level must be in (0, 1), got {level!r}")
        from statistics import NormalDist

        z = NormalDist().inv_cdf(0.5 + level / 2)
        se = self.se_sample if sample else self.se
        return (self.ate - z * se, self.ate + z * se)


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
    augment: bool | None = None,
    x_new=None,
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
        augment: with an outcome head, the augmented (doubly robust) estimate (None: the
            config's default, True); False gives the weights-only estimate of the paper.
        x_new: (M, d) new units (a list for many datasets) whose CATE to predict from the dataset
            as context (outcome head and y needed): `Estimate.cate_new`.

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
            warns.append(dataset_warnings(*checked[-1][:2], names[i], y=checked[-1][2]))
        except ValueError as e:
            raise ValueError(f"dataset {i}: {e}" if not single else str(e)) from None
        if int(keep[-1].sum()) > c.max_features:
            raise ValueError(f"dataset {i} has {int(keep[-1].sum())} features; the model accepts at most {c.max_features}")
    news: list = [None] * len(xs)
    if x_new is not None:
        news = [x_new] if single else list(x_new)
        if len(news) != len(xs):
            raise ValueError(f"x_new must list the new units of {len(xs)} datasets, got {len(news)}")
        if model.outcome is None:
            raise ValueError("x_new: CATE for new units needs a model with an outcome head (outcome_model=True)")
        for i, xn in enumerate(news):
            if xn is None:
                continue
            xn = np.asarray(xn, dtype=np.float64)
            xn = xn[:, None] if xn.ndim == 1 else xn
            if xn.ndim != 2 or xn.shape[1] != checked[i][0].shape[1]:
                raise ValueError(f"x_new{'' if single else f'[{i}]'}: expected (M, {checked[i][0].shape[1]}) like x, got shape {xn.shape}")
            if not np.isfinite(xn).all():
                raise ValueError(f"x_new{'' if single else f'[{i}]'}: contains NaN or inf")
            if ys[i] is None:
                raise ValueError("x_new: predicting new units needs the dataset's outcomes y")
            news[i] = xn
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
            # the network reads y standardised in float64 (an outcome in units of 1e39 would be
            # inf in float32); its outcome model is affine-equivariant in y (unpenalised
            # intercept), so mu0, mu1 and se are mapped back exactly
            y_mag = [float(np.abs(yv).max(initial=0.0)) or 1.0 for yv in ys64]
            y_loc = [float((yv / m).mean()) * m for yv, m in zip(ys64, y_mag)]
            y_sd = [float((yv / m).std()) * m or 1.0 for yv, m in zip(ys64, y_mag)]
            ys_net = [(yv - m) / s_ for yv, m, s_ in zip(ys64, y_loc, y_sd)]
            x64 = collate_datasets([a for a, _, _ in chunk], [b for _, b, _ in chunk], ys64, dtype=torch.float64)
            new = news[s : s + step]
            # new units ride along as extra rows marked query_mask (t = y = 0, read by nothing)
            xin = collate_datasets(
                [a[:, k] if xn is None else np.concatenate([a, xn])[:, k]
                 for (a, _, _), k, xn in zip(chunk, keep[s : s + step], new)],
                [b if xn is None else np.concatenate([b, np.zeros(len(xn))]) for (_, b, _), xn in zip(chunk, new)],
                [yv if xn is None else np.concatenate([yv, np.zeros(len(xn))]) for yv, xn in zip(ys_net, new)],
                dtype=torch.float64)
            if any(xn is not None for xn in new):
                q = torch.zeros_like(xin["unit_mask"])
                for i, ((a, _, _), xn) in enumerate(zip(chunk, new)):
                    if xn is not None:
                        q[i, len(a) : len(a) + len(xn)] = True
                xin["query_mask"] = q
            batch = {k: (v.float() if v.is_floating_point() and k != "x" else v).to(model.device) for k, v in xin.items()}
            # check_dataset has validated every dataset of the batch
            out = model(batch, estimand=estimand, lam=lam, compute_loss=compute_loss, validate=False, augment=augment)
            n0 = x64["unit_mask"].shape[1]
            diag = balance_diagnostics(x64["x"], x64["t"], out["weights"][:, :n0].double().cpu(), x64["unit_mask"],
                                       x64["feature_mask"])
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
                extra: dict[str, Any] = {}
                if has_y[i]:
                    # In float64 from the returned weights: the float32 sum loses digits at large N.
                    yi = chunk[i][2]
                    ate = float(w[ti == 1] @ yi[ti == 1] - w[ti == 0] @ yi[ti == 0])
                    extra["ate_weighting"] = ate
                    if "mu0" in out:
                        loc, sd = y_loc[i], y_sd[i]
                        mu0 = out["mu0"][i, :n].double().cpu().numpy() * sd + loc
                        mu1 = out["mu1"][i, :n].double().cpu().numpy() * sd + loc
                        extra.update(mu0=mu0, mu1=mu1, cate=mu1 - mu0, se=float(out["se"][i]) * sd,
                                     se_sample=float(out["se_sample"][i]) * sd)
                        if new[i] is not None:
                            m = len(new[i])
                            extra["cate_new"] = (out["mu1"][i, n : n + m] - out["mu0"][i, n : n + m]).double().cpu().numpy() * sd
                        if model.config.augment if augment is None else augment:
                            ate = _augmented(w, ti, yi, mu0, mu1, estimand)
                else:
                    ate = float("nan")
                results.append(Estimate(ate=ate, weights=w, diagnostics=dg, estimand=estimand, **extra))
    finally:
        model.train(was_training)
    return results[0] if single else results


def _augmented(w: np.ndarray, t: np.ndarray, y: np.ndarray, mu0: np.ndarray, mu1: np.ndarray, estimand: str) -> float:
    """The augmented estimate in float64 from the returned weights and predictions (the same
    formula as `cina.core.augment.augmented_effect`, without float32 sums)."""
    tr, co = t == 1, t == 0
    res0 = w[co] @ (y[co] - mu0[co])
    if estimand == "att":
        return float(np.mean(y[tr] - mu0[tr]) - res0)
    return float(np.mean(mu1 - mu0) + w[tr] @ (y[tr] - mu1[tr]) - res0)
