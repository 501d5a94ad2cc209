"""Balancing attention: the paper's SVM layer, a self-attention layer whose values are covariate-balancing weights.

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

import torch
import torch.nn as nn
import torch.nn.functional as F

from .kernel import auto_block_size, kernel_matvec, log_normalizer, normalize_keys
from .weights import EstimandLike, _signs, att_flags, feasible_alpha, project_weights

__all__ = ["BalancingAttention", "OBJECTIVES", "balancing_loss", "optimal_intercept", "read_out_alpha",
           "values_from_alpha"]

def values_from_alpha(alpha, t, mask, lam, log_h) -> torch.Tensor:
    """Attention values ``V = w * alpha / (lam * h)``. lam: (B,) or float. (B, N)."""
    lam = torch.as_tensor(lam, dtype=alpha.dtype, device=alpha.device).reshape(-1, 1)
    return _signs(t, mask) * alpha * torch.exp(-log_h) / lam


def read_out_alpha(values, t, mask, lam, log_h) -> torch.Tensor:
    """The paper's read-out ``alpha = lam * w * V * h`` (0 on padding). (B, N)."""
    lam = torch.as_tensor(lam, dtype=values.dtype, device=values.device).reshape(-1, 1)
    return lam * _signs(t, mask) * values * torch.exp(log_h)


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
