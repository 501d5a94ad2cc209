"""Balancing weights as estimates: feasibility, per-arm projection, the weighted effect and
the diagnostics of a weighting (effective sample sizes, standardised mean differences).

Functions accept ``estimand`` as ``"ate"``, ``"att"`` or a (B,) bool tensor of per-dataset ATT
flags, so one batch can mix both. Shapes: B datasets, N units (padded; ``mask`` marks the real
ones), d covariates.
"""

from __future__ import annotations

from typing import Union

import torch

from .kernel import CONSTANT_RTOL

__all__ = ["ESTIMANDS", "att_flags", "balance_diagnostics", "feasible_alpha", "project_weights", "weighted_effect"]

ESTIMANDS = ("ate", "att")


EstimandLike = Union[str, torch.Tensor]


def att_flags(estimand: EstimandLike, batch_size: int, device: torch.device) -> torch.Tensor:
    """(B,) bool tensor, True where the dataset's estimand is the ATT."""
    if isinstance(estimand, torch.Tensor):
        if estimand.shape != (batch_size,):
            raise ValueError(f"estimand flags must have shape ({batch_size},), got {tuple(estimand.shape)}")
        return estimand.to(device=device, dtype=torch.bool)
    if estimand not in ESTIMANDS:
        raise ValueError(f"estimand must be one of {ESTIMANDS}, got {estimand!r}")
    return torch.full((batch_size,), estimand == "att", dtype=torch.bool, device=device)


def _signs(t: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """w = 2t - 1 on valid units, 0 on padding. (B, N)."""
    return torch.where(mask, 2.0 * t - 1.0, torch.zeros_like(t))


def feasible_alpha(alpha: torch.Tensor, t: torch.Tensor, mask: torch.Tensor, estimand: EstimandLike = "ate") -> torch.Tensor:
    """alpha with padding zeroed and, for ATT datasets, treated units pinned at 1 (equal). (B, N)."""
    att = att_flags(estimand, alpha.shape[0], alpha.device)
    alpha = torch.where(att.unsqueeze(1) & (t > 0.5), torch.ones_like(alpha), alpha)
    return torch.where(mask, alpha, torch.zeros_like(alpha))


def project_weights(alpha: torch.Tensor, t: torch.Tensor, mask: torch.Tensor, estimand: EstimandLike = "ate") -> torch.Tensor:
    """Project raw weights onto the feasible set: non-negative, each arm sums to one.

    Negative entries are clipped to 0, padding is 0, ATT treated units get 1/N_T. An arm whose
    weights are all zero falls back to uniform weights (the only choice without information).

    Args:
        alpha: (B, N) raw weights (e.g. the read-out lam * w * V * h).

    Returns:
        (B, N) weights w >= 0 with sum_{T} w = sum_{C} w = 1 per dataset.
    """
    a = feasible_alpha(alpha.clamp_min(0.0), t, mask, estimand)
    treated = (t > 0.5) & mask
    control = (t <= 0.5) & mask
    out = torch.zeros_like(a)
    for arm in (treated, control):
        mass = torch.where(arm, a, torch.zeros_like(a)).sum(-1, keepdim=True)
        count = arm.sum(-1, keepdim=True).clamp_min(1).to(a.dtype)
        ok = mass > torch.finfo(a.dtype).tiny * count
        arm_w = torch.where(ok, a / torch.where(ok, mass, torch.ones_like(mass)), 1.0 / count)
        out = torch.where(arm, arm_w, out)
    return out


def weighted_effect(weights: torch.Tensor, t: torch.Tensor, y: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``tau = sum_T w_i y_i - sum_C w_i y_i`` per dataset. (B,)."""
    contrib = _signs(t.to(weights.dtype), mask) * weights * y.to(weights.dtype)
    return torch.where(mask, contrib, torch.zeros_like(contrib)).sum(-1)


def balance_diagnostics(
    x: torch.Tensor,
    t: torch.Tensor,
    weights: torch.Tensor,
    unit_mask: torch.Tensor,
    feature_mask: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """Quality of a weighting, per dataset.

    Args:
        x: (B, N, d) covariates; t: (B, N); weights: (B, N) projected weights; unit_mask: (B, N);
        feature_mask: (B, d) bool (all True if None).

    Returns:
        ``ess_treated``, ``ess_control`` (B,): Kish effective sample size ``1 / sum w^2`` per arm;
        ``smd_before``, ``smd_after`` (B, d): standardised mean differences
        ``(mean_T - mean_C) / sd`` unweighted and weighted, where sd is the unweighted SD of the
        pooled sample (all real units), the same before and after so the two are comparable. The
        pooled SD is non-zero whenever the column varies, also when each arm is constant (a
        covariate that separates the arms, e.g. a copy of t, gets SMD 1/sqrt(p(1-p)), not 0);
        0 on padded and constant features (``sd <= CONSTANT_RTOL * max|x|``). Computed on each
        column divided by its largest magnitude (SMDs are scale-free), so no unit overflows;
        ``top1_share`` (B,): share of the total weight held by the top ceil(1%) of units.
    """
    B, N, d = x.shape
    dtype = torch.promote_types(x.dtype, torch.float32)
    x, t, weights = x.to(dtype), t.to(dtype), weights.to(dtype)
    if feature_mask is None:
        feature_mask = torch.ones(B, d, dtype=torch.bool, device=x.device)
    treated = ((t > 0.5) & unit_mask).to(dtype)
    control = ((t <= 0.5) & unit_mask).to(dtype)
    w = torch.where(unit_mask, weights, torch.zeros_like(weights))
    x = torch.where(unit_mask.unsqueeze(-1), x, torch.zeros_like(x))
    mag = x.abs().amax(1, keepdim=True)
    x = x / torch.where(mag > 0, mag, torch.ones_like(mag))

    def moments(p):  # p: (B, N) weights summing to 1 over the units they cover
        mean = torch.einsum("bn,bnd->bd", p, x)
        var = torch.einsum("bn,bnd->bd", p, (x - mean.unsqueeze(1)).square())
        return mean, var

    u_t = treated / treated.sum(-1, keepdim=True).clamp_min(1)
    u_c = control / control.sum(-1, keepdim=True).clamp_min(1)
    u_all = unit_mask.to(dtype) / unit_mask.sum(-1, keepdim=True).clamp_min(1).to(dtype)
    m_t, m_c = moments(u_t)[0], moments(u_c)[0]
    var = moments(u_all)[1]
    sd = torch.sqrt(var)
    valid_f = feature_mask & (var > CONSTANT_RTOL**2)
    safe_sd = torch.where(valid_f, sd, torch.ones_like(sd))
    smd_before = torch.where(valid_f, (m_t - m_c) / safe_sd, torch.zeros_like(sd))
    wm_t = torch.einsum("bn,bnd->bd", w * treated, x)
    wm_c = torch.einsum("bn,bnd->bd", w * control, x)
    smd_after = torch.where(valid_f, (wm_t - wm_c) / safe_sd, torch.zeros_like(sd))

    def ess(arm):
        return 1.0 / (w * arm).square().sum(-1).clamp_min(torch.finfo(dtype).tiny)

    n = unit_mask.sum(-1)
    k = torch.ceil(0.01 * n.to(dtype)).clamp_min(1).long()
    top = w.sort(dim=-1, descending=True).values.cumsum(-1).gather(1, (k - 1).unsqueeze(1)).squeeze(1)
    return {
        "ess_treated": ess(treated),
        "ess_control": ess(control),
        "smd_before": smd_before,
        "smd_after": smd_after,
        "top1_share": top / w.sum(-1).clamp_min(torch.finfo(dtype).tiny),
    }
