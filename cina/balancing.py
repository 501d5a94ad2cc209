"""Balancing attention: the self-attention layer whose values are covariate-balancing weights.

This module holds the maths of CInA's final layer (see ``../shared/cina_method.md`` §2-4) as
plain batched tensor functions plus one small ``nn.Module``. Everything works on a padded batch
of datasets and respects a unit mask in every softmax normaliser and every sum.

Notation (one dataset; the batch dimension B is implicit in the maths):

* ``t_i in {0,1}``, ``w_i = 2 t_i - 1 in {-1,+1}``.
* Tied keys/queries ``k_i in R^D``; scores ``s_ij = k_i . k_j / sqrt(D)``.
* Softmax normaliser ``h_i = sum_j exp(s_ij)``; attention ``A_ij = exp(s_ij) / h_i``.
* Induced kernel ``K_ij = exp(s_ij) / (h_i h_j)`` (PSD: ``D^-1 exp(S) D^-1``).
* Attention values ``V_j = w_j alpha_j / (lam h_j)``. Then the attention output
  ``o = A V = (1/lam) K (w * alpha)`` is the SVM decision function and the paper's read-out
  ``alpha = lam * w * V * h`` recovers the weights.
* Penalised hinge loss (the SVM primal in attention form)::

      L = (lam/2) V^T exp(S) V + sum_i [1 - w_i (o_i + b)]_+
        = alpha^T K_w alpha / (2 lam) + sum_i [1 - w_i (o_i + b)]_+ ,   (K_w)_ij = w_i w_j K_ij

  Its minimiser over (V, b) gives the SVM dual solution ``alpha* in [0,1]^N`` with
  ``sum_i w_i alpha*_i = 0`` (Tarr & Imai 2021); normalised per arm these are the optimal
  balancing weights.

We never form V: with ``u = w * alpha / lam = V * h`` every quantity is a product with the
normalised kernel ``K_ij = exp(s_ij - log h_i - log h_j)``, whose entries are <= 1 because
``log h_i >= s_ij`` and ``log h_j >= s_jj >= 0``; so the log-space evaluation never overflows.

Memory: ``K u`` and ``log h`` are computed in row blocks of ``block_size`` queries, so peak memory
is O(B * block_size * N), never N x N. Under autograd each block is checkpointed, so training
memory is O(N) too.

Estimands:

* ``"ate"``: the SVM above (both arms weighted, intercept b solved in closed form).
* ``"att"``: treated units share one weight (uniform, as the ATT requires) and only the controls
  are balanced towards them. In the dual this is the ATE dual with the constraint
  ``alpha_T = a * 1`` (a in [0, 1] free); in the primal the treated arm enters the hinge only
  through its mean decision value::

      L_att = alpha^T K_w alpha / (2 lam) + N_T [1 - (mean_T o + b)]_+ + sum_{C} [1 + o_i + b]_+ .

  lambda keeps its role (control mass / effective sample size against balance) and the arms keep
  equal mass. (Pinning alpha_T = 1 and dropping the intercept instead fails whenever N_C is not
  much larger than N_T: the controls' capped mass cannot reach the treated mass, so all controls
  hit the cap and the weighting degenerates to the difference in means; measured max |SMD| 0.79
  after weighting vs 0.003 for the ATE on a simulation with N_T = 172, N_C = 128.)

Functions accept ``estimand`` as ``"ate"``, ``"att"`` or a (B,) bool tensor of per-dataset ATT
flags, so one batch can mix both.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Union

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

__all__ = [
    "ESTIMANDS",
    "Estimate",
    "BalancingAttention",
    "att_flags",
    "normalize_keys",
    "standardize_covariates",
    "covariate_keys",
    "log_normalizer",
    "kernel_matvec",
    "dense_kernel",
    "feasible_alpha",
    "read_out_alpha",
    "values_from_alpha",
    "optimal_intercept",
    "balancing_loss",
    "OBJECTIVES",
    "project_weights",
    "weighted_effect",
    "balance_diagnostics",
    "check_dataset",
    "auto_block_size",
]

ESTIMANDS = ("ate", "att")
EstimandLike = Union[str, torch.Tensor]

# Elements of one (B, block, N) score block; 2**24 float32 = 64 MiB per temporary.
DEFAULT_BLOCK_ELEMENTS = 2**24


# --------------------------------------------------------------------------------------------
# helpers


def att_flags(estimand: EstimandLike, batch_size: int, device: torch.device) -> torch.Tensor:
    """(B,) bool tensor, True where the dataset's estimand is the ATT."""
    if isinstance(estimand, torch.Tensor):
        if estimand.shape != (batch_size,):
            raise ValueError(f"estimand flags must have shape ({batch_size},), got {tuple(estimand.shape)}")
        return estimand.to(device=device, dtype=torch.bool)
    if estimand not in ESTIMANDS:
        raise ValueError(f"estimand must be one of {ESTIMANDS}, got {estimand!r}")
    return torch.full((batch_size,), estimand == "att", dtype=torch.bool, device=device)


def auto_block_size(batch_size: int, n_units: int, max_elements: int = DEFAULT_BLOCK_ELEMENTS) -> int:
    """Query-block size so one (B, block, N) temporary holds at most ``max_elements`` entries."""
    return int(max(16, min(n_units, max_elements // max(1, batch_size * n_units))))


def _signs(t: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """w = 2t - 1 on valid units, 0 on padding. (B, N)."""
    return torch.where(mask, 2.0 * t - 1.0, torch.zeros_like(t))


def _row_blocks(fn, n: int, bs: int, q: torch.Tensor, *args: torch.Tensor) -> torch.Tensor:
    """``cat([fn(q[:, i:i+bs], *args) for each row block], dim=1)``.

    With several blocks under autograd each block is checkpointed (recomputed in the backward
    pass), so the (B, bs, N) temporaries are never all alive at once: O(N) training memory.
    """
    if n <= bs:
        return fn(q, *args)
    grad = torch.is_grad_enabled() and any(a.requires_grad for a in (q, *args))
    outs = []
    for i in range(0, n, bs):
        qb = q[:, i : i + bs]
        outs.append(checkpoint(fn, qb, *args, use_reentrant=False) if grad else fn(qb, *args))
    return torch.cat(outs, dim=1)


# --------------------------------------------------------------------------------------------
# keys, normaliser and kernel products


def normalize_keys(keys: torch.Tensor, mask: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Centre and rescale keys per dataset ("set norm").

    Args:
        keys: (B, N, D) raw keys.
        mask: (B, N) bool, True for real units.

    Returns:
        (B, N, D) keys with masked mean 0 and mean squared norm D over the real units (padded rows
        are 0). Why: minimising the hinge loss over the keys prefers ever more peaked kernels (the
        arms become easier to separate, cf. cina_method.md §2.4 caveat 2). Fixing the scale bounds
        the scores at about ``|s_ij| <= sqrt(D)`` on average, so the kernel's dynamic range is set
        by ``D`` and cannot degenerate. Centring makes the kernel invariant to a shift of all keys.
    """
    m = mask.unsqueeze(-1).to(keys.dtype)
    n = m.sum(1, keepdim=True).clamp_min(1.0)
    centred = (keys - (keys * m).sum(1, keepdim=True) / n) * m
    mean_sq = (centred.square().sum((1, 2), keepdim=True) / (n * keys.shape[-1]))
    return centred * torch.rsqrt(mean_sq + eps)


def standardize_covariates(x: torch.Tensor, unit_mask: torch.Tensor, feature_mask: torch.Tensor) -> torch.Tensor:
    """Per-dataset standardised covariates, the input of the network and of the covariate kernel.

    Args:
        x: (B, N, D) raw covariates; unit_mask: (B, N) real units; feature_mask: (B, D) real columns.

    Returns:
        (B, N, D): each real column centred and scaled to unit variance over the real units,
        clipped at +-10 SD (heavy-tailed real covariates such as earnings must not dominate the
        input scale the network was trained on); constant columns, padded units and padded
        features are 0.
    """
    valid = unit_mask.unsqueeze(-1) & feature_mask.unsqueeze(1)
    x = torch.where(valid, x, torch.zeros_like(x))
    m = unit_mask.unsqueeze(-1).to(x.dtype)
    n = m.sum(1, keepdim=True).clamp_min(1.0)
    mean = (x * m).sum(1, keepdim=True) / n
    var = ((x - mean).square() * m).sum(1, keepdim=True) / n
    ok = var > 1e-12  # constant columns carry no information
    xs = ((x - mean) * torch.rsqrt(torch.where(ok, var, torch.ones_like(var)))).clamp(-10.0, 10.0)
    return torch.where(valid & ok, xs, torch.zeros_like(xs))


def covariate_keys(x: torch.Tensor, unit_mask: torch.Tensor, feature_mask: torch.Tensor) -> torch.Tensor:
    """Keys of the fixed attention kernel on the covariates: ``s_ij = x_i . x_j / sqrt(d)``.

    Args:
        x: (B, N, D) standardised covariates, zero on padded units and features.
        unit_mask: (B, N); feature_mask: (B, D) valid features (d = its row sum).

    Returns:
        (B, N, D) float32 keys: `normalize_keys` of x rescaled so the scores are those of
        ``normalize_keys`` on the d valid columns alone. Padded columns contribute nothing, so
        the kernel is exactly Algorithm 1's (`cina.single`, ``learn_keys=False``) for any D.
    """
    d = feature_mask.sum(-1).clamp_min(1).to(torch.float32).view(-1, 1, 1)
    return normalize_keys(x.float(), unit_mask) * (d / x.shape[-1]) ** 0.25


def _scores(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    return q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])


# A finite "minus infinity" for padded columns: exp() gives exactly 0, and unlike -inf it never
# meets a 0 in a matmul (0 * inf = NaN) nor makes an empty row's logsumexp NaN.
_NEG = -1e30


def _scaled(keys: torch.Tensor) -> torch.Tensor:
    # s_ij = (k_i D^-1/4) . (k_j D^-1/4): the 1/sqrt(D) goes into the keys, saving a pass.
    return keys * keys.shape[-1] ** -0.25


def log_normalizer(keys: torch.Tensor, mask: torch.Tensor, block_size: int | None = None) -> torch.Tensor:
    """``log h_i = logsumexp_{j valid} s_ij`` with tied keys, block-wise over query rows.

    Args:
        keys: (B, N, D) float keys.
        mask: (B, N) bool.
        block_size: query rows per block (default: `auto_block_size`).

    Returns:
        (B, N) log normalisers; 0 on padded rows.
    """
    B, N, _ = keys.shape
    bs = block_size or auto_block_size(B, N)
    ks = _scaled(keys)
    # Augmented keys fold the padding mask into the matmul: [k_i, 1] . [k_j, bias_j] = s_ij + bias_j.
    q = torch.cat([ks, torch.ones_like(ks[..., :1])], -1)
    k = torch.cat([ks, torch.where(mask, 0.0, _NEG).to(ks.dtype).unsqueeze(-1)], -1)

    def rows(qb: torch.Tensor, kk: torch.Tensor) -> torch.Tensor:
        return torch.logsumexp(qb @ kk.transpose(-1, -2), dim=-1)

    return _row_blocks(rows, N, bs, q, k).masked_fill(~mask, 0.0)


def kernel_matvec(
    keys: torch.Tensor,
    u: torch.Tensor,
    mask: torch.Tensor,
    log_h: torch.Tensor | None = None,
    block_size: int | None = None,
) -> torch.Tensor:
    """``(K u)_i = sum_j exp(s_ij - log h_i - log h_j) u_j``, block-wise, never N x N.

    This equals the attention output ``softmax(S) V`` for ``V = u / h``.

    One matmul per block gives the exponent ``s_ij - log h_j - s_ii / 2``, which is <= 0 for tied
    keys (Cauchy-Schwarz: s_ij <= (s_ii + s_jj) / 2, and log h_j >= s_jj >= 0), so exp() cannot
    overflow; the row factor ``exp(s_ii / 2 - log h_i) <= 1`` is applied after the sum. Each
    block costs a matmul, an in-place exp and a matrix-vector product: the minimum memory traffic.

    Args:
        keys: (B, N, D); u: (B, N) or (B, N, C) (C vectors at the cost of one; padded entries
            ignored); mask: (B, N) bool.
        log_h: (B, N) from `log_normalizer` (computed if None).

    Returns:
        the shape of u; 0 on padded rows.
    """
    B, N, _ = keys.shape
    bs = block_size or auto_block_size(B, N)
    if log_h is None:
        log_h = log_normalizer(keys, mask, bs)
    ks = _scaled(keys)
    half_self = 0.5 * ks.square().sum(-1, keepdim=True)  # s_ii / 2, (B, N, 1)
    one = torch.ones_like(half_self)
    q = torch.cat([ks, one, -half_self], -1)
    k = torch.cat([ks, torch.where(mask, -log_h, _NEG).unsqueeze(-1), one], -1)
    vector = u.ndim == 2
    u = u.unsqueeze(-1) if vector else u  # (B, N, C)
    u = torch.where(mask.unsqueeze(-1), u, torch.zeros_like(u))

    def rows(qb: torch.Tensor, kk: torch.Tensor, uu: torch.Tensor) -> torch.Tensor:
        return (qb @ kk.transpose(-1, -2)).exp_() @ uu

    out = _row_blocks(rows, N, bs, q, k, u) * torch.exp(half_self - log_h.unsqueeze(-1))
    out = out.masked_fill(~mask.unsqueeze(-1), 0.0)
    return out.squeeze(-1) if vector else out


def dense_kernel(keys: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The full (B, N, N) kernel ``K_ij = exp(s_ij) / (h_i h_j)`` (0 on padded rows/cols).

    O(N^2) memory: for tests, Algorithm 1 and small datasets only.
    """
    s = _scores(keys, keys)
    pair = mask.unsqueeze(1) & mask.unsqueeze(2)
    log_h = torch.logsumexp(s.masked_fill(~mask.unsqueeze(1), float("-inf")), dim=-1).masked_fill(~mask, 0.0)
    logk = s - log_h.unsqueeze(-1) - log_h.unsqueeze(1)
    return logk.masked_fill(~pair, float("-inf")).exp()


# --------------------------------------------------------------------------------------------
# weights <-> attention values


def feasible_alpha(alpha: torch.Tensor, t: torch.Tensor, mask: torch.Tensor, estimand: EstimandLike = "ate") -> torch.Tensor:
    """alpha with padding zeroed and, for ATT datasets, treated units pinned at 1 (equal). (B, N)."""
    att = att_flags(estimand, alpha.shape[0], alpha.device)
    alpha = torch.where(att.unsqueeze(1) & (t > 0.5), torch.ones_like(alpha), alpha)
    return torch.where(mask, alpha, torch.zeros_like(alpha))


def values_from_alpha(alpha, t, mask, lam, log_h) -> torch.Tensor:
    """Attention values ``V = w * alpha / (lam * h)``. lam: (B,) or float. (B, N)."""
    lam = torch.as_tensor(lam, dtype=alpha.dtype, device=alpha.device).reshape(-1, 1)
    return _signs(t, mask) * alpha * torch.exp(-log_h) / lam


def read_out_alpha(values, t, mask, lam, log_h) -> torch.Tensor:
    """The paper's read-out ``alpha = lam * w * V * h`` (0 on padding). (B, N)."""
    lam = torch.as_tensor(lam, dtype=values.dtype, device=values.device).reshape(-1, 1)
    return lam * _signs(t, mask) * values * torch.exp(log_h)


# --------------------------------------------------------------------------------------------
# the penalised hinge loss


def optimal_intercept(scores: torch.Tensor, t: torch.Tensor, mask: torch.Tensor, estimand: EstimandLike = "ate") -> torch.Tensor:
    """Exact minimiser b of ``sum_i [1 - w_i (o_i + b)]_+`` per dataset.

    For ATT datasets the treated o_i are replaced by their mean first (the ATT hinge).

    The objective is convex piecewise linear in b with breakpoints ``c_i = w_i - o_i``; its slope
    is ``-N_T + #{i : c_i <= b}``, so every b between the N_T-th and (N_T+1)-th smallest
    breakpoint is optimal; we return their midpoint. O(N log N), no learned parameter, and since it
    is an exact argmin its gradient contribution vanishes (envelope theorem): the result is
    detached.

    Args:
        scores: (B, N) attention output o = A V; t: (B, N); mask: (B, N).

    Returns:
        (B,) intercepts.
    """
    with torch.no_grad():
        att = att_flags(estimand, scores.shape[0], scores.device)
        w = _signs(t, mask)
        scores = _effective_scores(scores, t, mask, att)
        c = torch.where(mask, w - scores, torch.full_like(scores, float("inf")))
        c_sorted = c.sort(dim=-1).values
        n_t = ((t > 0.5) & mask).sum(-1, keepdim=True)
        last = scores.shape[1] - 1
        lo = c_sorted.gather(1, (n_t - 1).clamp(0, last))
        hi = c_sorted.gather(1, n_t.clamp(0, last))
        b = (0.5 * (lo + hi)).squeeze(1)
        b = torch.where(torch.isfinite(b), b, torch.zeros_like(b))  # an empty arm -> 0
    return b.detach()


def _equalize_arms(alpha: torch.Tensor, t: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    # The dual needs sum_T alpha = sum_C alpha (the intercept's constraint). Scaling the heavier
    # arm down to the lighter arm's mass keeps 0 <= alpha <= 1 and does not change the per-arm
    # normalised weights, so every alpha is a dual-feasible point with a valid dual value. (For
    # the ATT the pinned treated weights stay equal to each other: alpha_T = a * 1.)
    treated = (t > 0.5) & mask
    s_t = torch.where(treated, alpha, torch.zeros_like(alpha)).sum(-1, keepdim=True)
    s_c = torch.where(mask & ~treated, alpha, torch.zeros_like(alpha)).sum(-1, keepdim=True)
    m = torch.minimum(s_t, s_c)
    scale = torch.where(treated, m / s_t.clamp_min(1e-30), m / s_c.clamp_min(1e-30))
    return alpha * scale


def _effective_scores(scores: torch.Tensor, t: torch.Tensor, mask: torch.Tensor, att: torch.Tensor) -> torch.Tensor:
    # ATT: every treated unit's decision value is replaced by the treated mean (see module doc),
    # so N_T identical treated hinge terms sum to N_T [1 - (mean_T o + b)]_+.
    treated = (t > 0.5) & mask
    n_t = treated.sum(-1, keepdim=True).clamp_min(1).to(scores.dtype)
    mean_t = torch.where(treated, scores, torch.zeros_like(scores)).sum(-1, keepdim=True) / n_t
    return torch.where(att.unsqueeze(1) & treated, mean_t.expand_as(scores), scores)


OBJECTIVES = ("gap", "primal")


def balancing_loss(
    keys: torch.Tensor,
    alpha: torch.Tensor,
    t: torch.Tensor,
    mask: torch.Tensor,
    lam: torch.Tensor | float,
    estimand: EstimandLike = "ate",
    block_size: int | None = None,
    objective: str = "gap",
    relative: bool = False,
) -> dict[str, torch.Tensor]:
    """Penalised hinge loss of the balancing attention and its duality gap, per dataset, / N.

    Args:
        keys: (B, N, D) tied keys (already normalised). Computed in float32/64 even under autocast.
        alpha: (B, N) weights in [0, 1] (before per-arm normalisation). ATT treated units are
            pinned (`feasible_alpha`), then the heavier arm is scaled down to the lighter arm's
            mass (`_equalize_arms`), which leaves the normalised weights unchanged and makes alpha
            dual-feasible.
        t: (B, N) float 0/1 treatment; mask: (B, N) bool.
        lam: (B,) or scalar, the *absolute* penalty lambda of each dataset.
        estimand: "ate", "att" or (B,) bool ATT flags.
        relative: if True, ``alpha`` (in [0, 1]) only gives the *direction*: after equalising
            the arms (rho) it is rescaled to the mass m* that maximises the dual along rho,
            ``m* = min(lam 1^T rho / rho^T K_w rho, 1 / max rho)`` (closed form, differentiable).
            Why: with a free scale an amortised network collapses alpha -> 0 (gap -> P(0), a wide
            basin in which the sigmoid saturates): measured on 4 default-preset tasks (N = 128,
            lam = 1e-3, overfitting one batch) the gap stalled at 0.60 with alpha ~ 0.002.
        objective: what ``loss`` is.
            ``"primal"``: the paper's penalised hinge loss P(keys, alpha).
            ``"gap"`` (default): the duality gap P - D, which is >= 0 and 0 exactly at the SVM
            solution. Its alpha-gradient is that of P - D; the keys get the gradient of P only
            (the paper's kernel learning; the gap itself is 0 at the optimum for *any* kernel, so
            it says nothing about the keys). Why: P is flat along directions of alpha the kernel
            barely sees, so minimising P alone pins the decision function but not the weights;
            measured on N=200 with frozen keys, 3000 Adam steps on P leave the normalised weights
            at L1 distance 0.19 from the SVM solution (ATE off by 0.15), while 300 steps on the
            gap reach 0.02 (1000 steps: 0.005).

    Returns:
        dict of (B,) tensors divided by N (so datasets of any size count equally in a batch mean)
          ``loss`` the objective above, ``primal`` P = quad + hinge, ``dual``
          D = sum alpha - quad, ``gap`` P - D, ``quad`` alpha^T K_w alpha / (2 lam)
          = (lam/2) V^T exp(S) V, ``hinge`` sum of hinge terms, ``intercept`` the exact optimal b
          (not divided); and (B, N) tensors ``scores`` (attention output o = A V, the SVM
          decision function without b), ``alpha`` (the dual-feasible weights used), ``log_h``.
    """
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
    dtype = torch.promote_types(keys.dtype, torch.float32)
    with torch.autocast(device_type=keys.device.type, enabled=False):
        keys, alpha, t = keys.to(dtype), alpha.to(dtype), t.to(dtype)
        B, N, _ = keys.shape
        att = att_flags(estimand, B, keys.device)
        lam = torch.as_tensor(lam, dtype=dtype, device=keys.device).expand(B).reshape(B, 1)
        w = _signs(t, mask)
        bs = block_size or auto_block_size(B, N)
        log_h = log_normalizer(keys, mask, bs)
        if relative:
            # alpha = m * rho; along that ray the dual is m 1^T rho - m^2 rho^T K_w rho / (2 lam),
            # maximised at m* = lam 1^T rho / (rho^T K_w rho), capped so that m * max(rho) <= 1.
            rho = _equalize_arms(feasible_alpha(alpha, t, mask, att), t, mask)
            g = kernel_matvec(keys, w * rho, mask, log_h, bs)  # K (w rho)
            q = (w * rho * g).sum(-1, keepdim=True).clamp_min(torch.finfo(dtype).tiny)
            m = torch.minimum(lam * rho.sum(-1, keepdim=True) / q, 1.0 / rho.amax(-1, keepdim=True))
            a = m * rho
            scores = m * g / lam  # o = A V, linear in alpha
        else:
            a = _equalize_arms(feasible_alpha(alpha, t, mask, att), t, mask)
            scores = kernel_matvec(keys, w * a / lam, mask, log_h, bs)  # o = A V
        quad = 0.5 * (w * a * scores).sum(-1)  # (lam/2) u^T K u with u = w a / lam
        b = optimal_intercept(scores, t, mask, att)
        margin = 1.0 - w * (_effective_scores(scores, t, mask, att) + b.unsqueeze(1))
        hinge = torch.where(mask, F.relu(margin), torch.zeros_like(margin)).sum(-1)
        n = mask.sum(-1).clamp_min(1).to(dtype)
        primal = quad + hinge
        dual = a.sum(-1) - quad
        if objective == "primal":
            loss = primal
        else:
            # -D with the keys' gradient stopped: d quad / d a_i = w_i o_i, so the surrogate
            # sum(a * (w o).detach()) - quad.detach() has D's value and alpha-gradient, no key-gradient.
            neg_dual = -a.sum(-1) + (a * (w * scores).detach()).sum(-1) - quad.detach()
            loss = primal + neg_dual
        return {
            "loss": loss / n,
            "primal": primal / n,
            "dual": dual / n,
            "gap": (primal - dual) / n,
            "quad": quad / n,
            "hinge": hinge / n,
            "intercept": b,
            "scores": scores,
            "alpha": a,
            "log_h": log_h,
        }


# --------------------------------------------------------------------------------------------
# projection, estimate, diagnostics


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
        ``(mean_T - mean_C) / sqrt((var_T + var_C) / 2)`` unweighted and weighted; the
        denominator is always the unweighted pooled SD so before/after are comparable; 0 on
        padded or constant features;
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

    def moments(p):  # p: (B, N) weights summing to 1 over an arm
        mean = torch.einsum("bn,bnd->bd", p, x)
        var = torch.einsum("bn,bnd->bd", p, (x - mean.unsqueeze(1)).square())
        return mean, var

    u_t = treated / treated.sum(-1, keepdim=True).clamp_min(1)
    u_c = control / control.sum(-1, keepdim=True).clamp_min(1)
    (m_t, v_t), (m_c, v_c) = moments(u_t), moments(u_c)
    sd = torch.sqrt(0.5 * (v_t + v_c))
    valid_f = feature_mask & (sd > 1e-12)
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


@dataclass
class Estimate:
    """A treatment-effect estimate from balancing weights.

    Attributes:
        ate: the estimate (of the ATE, or of the ATT when ``estimand == "att"``); NaN without y.
        weights: (N,) per-arm normalised weights (each arm sums to one).
        diagnostics: effective sample sizes, SMDs before/after weighting, top-1% weight share, ...
        estimand: "ate" or "att".
    """

    ate: float
    weights: np.ndarray
    diagnostics: dict[str, Any] = field(default_factory=dict)
    estimand: str = "ate"


# --------------------------------------------------------------------------------------------
# input validation (numpy, one dataset)


def check_dataset(x, t, y=None, *, min_units: int = 2, min_per_arm: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Validate one dataset and return float64 ``x (N, d)``, ``t (N,)`` in {0,1}, ``y (N,)``.

    Raises ValueError naming the problem (shape, NaN/inf, non-binary treatment, an arm with
    fewer than ``min_per_arm`` units).
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2:
        raise ValueError(f"x must be 2-D (n_units, n_features), got shape {x.shape}")
    n = x.shape[0]
    if n < min_units:
        raise ValueError(f"need at least {min_units} units, got {n}")
    if not np.all(np.isfinite(x)):
        bad = sorted(set(np.argwhere(~np.isfinite(x))[:, 1].tolist()))
        raise ValueError(f"x contains NaN or inf (feature columns {bad[:10]})")
    t = np.asarray(t)
    if t.shape != (n,):
        raise ValueError(f"t must have shape ({n},) to match x, got {t.shape}")
    t = t.astype(np.float64)
    if not np.all((t == 0) | (t == 1)):
        raise ValueError(f"t must be binary 0/1, got values {np.unique(t)[:10]}")
    n_t = int(t.sum())
    if min(n_t, n - n_t) < min_per_arm:
        raise ValueError(f"both arms need at least {min_per_arm} unit(s): {n_t} treated, {n - n_t} control")
    if y is not None:
        y = np.asarray(y, dtype=np.float64)
        if y.shape != (n,):
            raise ValueError(f"y must have shape ({n},) to match x, got {y.shape}")
        if not np.all(np.isfinite(y)):
            raise ValueError("y contains NaN or inf")
    return x, t, y


# --------------------------------------------------------------------------------------------
# the layer


class BalancingAttention(nn.Module):
    """CInA's final layer: self-attention with tied queries/keys whose values are balancing weights.

    Values are parametrised through the weights: the network gives the direction
    ``sigmoid(value_proj(z))``, `balancing_loss` (``relative=True``) scales it to the dual-optimal
    mass (so 0 <= alpha <= 1), and ``V = w alpha / (lam h)``; the paper's read-out
    ``alpha = lam w V h`` is exact.

    Keys are either learned from a treatment-blind representation (``key_dim`` given: if keys saw
    t_i the kernel could separate the arms perfectly and "balance" would be degenerate) or fixed,
    the standardised covariates (`covariate_keys`, ``key_dim=None``); the caller passes them in.

    Args:
        d_model: width of the incoming unit representations.
        key_dim: D of learned keys (sets the kernel's dynamic range, see `normalize_keys`), or None
            for a fixed kernel (no key parameters).
    """

    def __init__(self, d_model: int, key_dim: int | None = None):
        super().__init__()
        # bias-free: centring in normalize_keys removes a bias anyway
        self.key_proj = nn.Linear(d_model, key_dim, bias=False) if key_dim else None
        self.value_proj = nn.Linear(d_model, 1)

    def keys(self, z: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, N, d_model) treatment-blind units -> (B, N, D) normalised float32 keys."""
        if self.key_proj is None:
            raise RuntimeError("this layer has a fixed kernel (key_dim=None): pass covariate_keys(...)")
        return normalize_keys(self.key_proj(z).float(), mask)

    def weights(self, z: torch.Tensor, t: torch.Tensor, mask: torch.Tensor, estimand: EstimandLike = "ate") -> torch.Tensor:
        """(B, N, d_model) treatment-aware units -> (B, N) weights normalised per arm."""
        return project_weights(self.direction(z, t, mask, estimand), t, mask, estimand)

    def direction(self, z: torch.Tensor, t: torch.Tensor, mask: torch.Tensor, estimand: EstimandLike = "ate") -> torch.Tensor:
        """(B, N) ``sigmoid(value_proj(z))`` (ATT treated pinned at 1): alpha up to its scale."""
        return feasible_alpha(torch.sigmoid(self.value_proj(z).squeeze(-1).float()), t, mask, estimand)

    def forward(
        self,
        keys: torch.Tensor,
        z_values: torch.Tensor,
        t: torch.Tensor,
        mask: torch.Tensor,
        lam: torch.Tensor | float,
        estimand: EstimandLike = "ate",
        block_size: int | None = None,
        objective: str = "gap",
        relative: bool = True,
    ) -> dict[str, torch.Tensor]:
        """SVM weights ``alpha`` (direction x dual-optimal scale, or the sigmoid itself if not
        ``relative``), per-arm ``weights`` and the loss terms (`balancing_loss`)."""
        out = balancing_loss(keys, self.direction(z_values, t, mask, estimand), t, mask, lam, estimand, block_size,
                             objective, relative=relative)
        out["weights"] = project_weights(out["alpha"], t, mask, estimand)
        return out
