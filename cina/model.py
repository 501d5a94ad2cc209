"""CInA: a transformer over the units of a dataset whose last attention layer balances covariates.

One forward pass maps a padded batch of datasets {(x_i, t_i)} to balancing weights, and with
outcomes y to ATE (or ATT) estimates (Zhang et al., ICML 2024, Algorithms 2 and 3). Training is
self-supervised (x and t only); ``supervised_weight > 0`` adds the ZS-S ATE loss.

Architecture (per dataset; no positional encoding, so every layer is permutation-equivariant over
units and the estimate is permutation-invariant)::

    x (N, d) --standardise per dataset--> zero-pad to max_features --Linear--> (N, d_model)
      --n_layers pre-LN transformer blocks (attention across units)--> z          [treatment-blind]
      (full attention, or ISAB through n_inducing learned points: trunk_attention="induced")
    keys  = standardised x (kernel="covariates", default) or set-normalised Linear(LN(z)) ("learned"),
            times sqrt(score_scale)
    z_v   = z + E_t[t] + E_estimand (+ Linear(log lam) if lam-conditioned)
      --n_value_layers transformer blocks--> alpha0 = sigmoid(Linear(LN(.)))     (N,) in (0, 1)
    balancing="target" (default): refine_steps balancing-attention layers with the tied keys, each
      one accelerated projected-gradient step of target balancing (`cina.target_balancing`),
      alpha0 -> alpha; weights = alpha normalised per arm; loss = the target-balancing objective.
    balancing="svm" (the paper's layer): one balancing attention (`cina.balancing`), values
      V = w alpha0 / (lam h), loss = duality gap of the penalised hinge loss.

Why target balancing is the default (measured; MAE of the ATE over sd(y), lam per unit):

* **Estimand.** The paper's SVM layer balances the two arms against each other with equal mass,
  so its weights describe the largest balanced subset: on IHDP (139 of 747 treated) its "ATE" is
  the ATT (Algorithm 1, 30 replications: MAE 0.62 against 0.30 for the difference in means).
  Weighting each arm towards the whole sample gives 0.149 on the same replications.
* **Zero-shot quality.** Self-supervised pretraining of the SVM layer (CPU, up to 1,250 steps)
  never moved the validation error off the difference in means (0.262): the duality gap is badly
  conditioned (the decision values amplify errors by 1/lam) and the network shrank every weight
  instead of balancing. With target balancing, 30 unrolled layers reach the converged error from
  any start: on 256 validation tasks of the default preset (256 units each) 0.117 / 0.103 / 0.101
  after 5 / 10 / 30 layers from uniform weights, against 0.251 for the difference in means.
* **What training adds.** With the balancing objective in the loss, nothing measurable:
  - `scripts/probe_training.py`, 300 CPU steps: 0.104 after 30 layers self-supervised (untrained
    0.101) and the same with ZS-S;
  - 2,000 self-supervised steps on an H200: +0.0001 (paired, validation);
  - ZS-S with that objective kept, 4,000 steps on 64,000 tasks: -0.001.
  The objective pulls the weights towards the converged balancing solution, which is worse than
  30 layers, and with lam 3e-4 the layers contract towards it from any start. Trained by the
  supervised loss alone (``balance_weight=0``) with a lighter penalty (lam 4e-5), the network
  learns starting weights that the 30 layers turn into better estimates: -0.0073 ± 0.0014 on
  400 default-preset validation tasks (0.0726 vs 0.0799) and -0.0048 ± 0.0022 on 200 er5000
  ones. That is the shipped model (`cina/assets/default_model/TRAINING.md`). The smaller lam
  alone, without the trained start, is worse (0.082-0.085 vs 0.078 on 60 tasks).
* **Speed.** The default model spends most of a 1,000-unit forward pass in its 30 dense-kernel
  layers (8-9x faster than cross-fitted DML on one CPU thread). The shipped fast model
  (`cina/assets/fast_model/TRAINING.md`) is the same recipe with d_model 16, one trunk and one
  value block (SiLU, MLP ratio 2, 8 inducing points), 10 layers and a 32-landmark Nystrom
  kernel: over 100x DML's time with 30 datasets per call, for 0.0776 against 0.0726 on the 400
  validation tasks. Its encoder barely matters: a width-16 one is within 0.001 of width 32, while
  3 layers instead of 10 cost 0.03 and no layers 0.09 (training-run validation).
* **Kernel scale and lam.** score_scale 0.36 (keys times 0.6) and lam 3e-4 minimise the
  validation error of converged target balancing on a default-preset and an er5000-nonlinear
  corpus (grid 0.25-1.0 x 1e-4-1e-3; 0.084 / 0.072 there, vs 0.112 / 0.084 at scale 1.0).
  They remain the config defaults (and Algorithm 1's); the shipped model overrides lam.

Design choices of the SVM layer (balancing="svm"), where the paper is silent (cina_method.md §4.2 marks
them unknown):

* **Kernel.** ``kernel="covariates"`` (default): the balancing attention's keys are the
  standardised covariates themselves (`cina.balancing.covariate_keys`,
  s_ij = x_i . x_j / sqrt(d)), i.e. exactly Algorithm 1's kernel with frozen keys; the network
  amortises the SVM dual on that kernel and the reported duality gap measures how far the
  zero-shot weights are from Algorithm 1's. Why not learn the kernel as the paper does: the loss,
  minimised over the keys, prefers kernels that separate the arms (cina_method.md §2.4 caveat 2),
  and measured per dataset (Algorithm 1, lam = 1e-3) learning the keys made the ATE worse:
  MAE/sd(y) 0.068 vs 0.030 frozen on 20 Setoguchi-G tasks (paired SE 0.006), 0.103 vs 0.091 on
  26 default-preset tasks (SE 0.015). ``kernel="learned"`` keeps the paper's version: keys from
  the treatment-blind encoder (if keys saw t_i the kernel could separate the arms perfectly and
  "balance" would be meaningless), centred and scaled per dataset to bound the bandwidth.
* **Values through the weights.** alpha = sigmoid(.) enforces the SVM box 0 <= alpha <= 1, the
  attention values are V = w alpha / (lam h) and the paper's read-out lam w V h returns alpha
  exactly. Treated units of ATT datasets share one weight. Known issue (measured, CPU, d_model
  64, overfitting 4 default-preset datasets with N = 128, lam = 1e-3): the gap first drops from
  ~5.8 to ~0.6 by shrinking every alpha to ~0.002, where the sigmoid saturates, and the weights
  stay near uniform. ``alpha_scale="optimal"`` removes that direction (the network gives the
  direction, the scale is the dual-optimal mass in closed form): no collapse, but in 800 steps
  the gap only fell 0.85 -> 0.56 and the weights did not approach Algorithm 1's. The gap of the
  SVM is badly conditioned at small lam (o = K(w alpha)/lam amplifies errors by 1/lam). With the
  distillation term (``distill_weight=10``, target Algorithm 1's alpha, "optimal" scale) it fits
  them (correlation 0.95, TV distance 0.07 per arm) in 800 steps: the architecture can represent
  the weights; the training signal is what is weak.
* **Intercept.** Solved exactly per dataset (a breakpoint of a piecewise-linear function,
  `cina.balancing.optimal_intercept`): no parameter to learn and no bias from amortising it.
* **Objective.** The duality gap P - D of the penalised hinge loss (with ``kernel="learned"`` the
  keys get the gradient of P only: the paper's kernel learning). P alone pins the decision function but leaves the weights loose along
  directions the kernel barely sees; see `cina.balancing.balancing_loss` for the measurement.
  ``objective="primal"`` gives the paper's loss.
* **lambda.** ``lam_scaling="size"`` (default): dataset m is solved with lambda_m = lam / N_m.
  The attention kernel K_ij = exp(s_ij)/(h_i h_j) has entries ~1/N^2 (h ~ N), the hinge sum grows
  like N, so the dual per unit reads 2 mu - mu^2 MMD^2 / (2 lam) with mu the fraction of mass kept:
  the mass/balance trade-off is the same for every N only if lambda ~ 1/N. Measured (Algorithm 1,
  12 simulated datasets per N, lam = 1e-3): with lambda = lam/N the share of units with
  alpha > 0 stays 0.69-0.70 and the max |SMD| after weighting 0.009-0.013 for N = 200, 800,
  3200, while a global lambda tuned at N = 800 drifts (max |SMD| 0.035 at N = 3200, ESS/N 0.49
  at N = 200). Whether the MSE-optimal lambda follows exactly 1/N is not established. Default
  lam = 1e-3, the best compromise of a scan on default-preset and Setoguchi-G tasks (see
  `cina.single`).
  ``lam_range=(lo, hi)`` additionally conditions the value branch on log lam, sampled
  log-uniformly per dataset during training, so one model serves a whole regularisation path.
* **Features.** Datasets have different d: x is zero-padded to ``max_features`` (valid features
  first) and embedded linearly without a per-column bias, so padded columns contribute exactly
  nothing. Feature order carries no meaning across datasets, so during training the valid
  columns are shuffled per dataset (``shuffle_features``).

Batch contract (what `forward` / `loss` consume; a loader delivers it, `collate_datasets` builds
it from numpy): dict of torch tensors

    x (B, N_max, d_max) float, t (B, N_max) float 0/1, unit_mask (B, N_max) bool,
    feature_mask (B, d_max) bool, optional y (B, N_max), ate (B,), att (B,), y_scale (B,),
    y_loc (B,), alpha_star (B, N_max) (distillation target, see ``distill_weight``).

``ate``/``att`` must be in the units of ``y``; the supervised loss divides both by the per-dataset
SD of y, so it is scale-free. If ``y_scale`` is given, ``ate_original = ate * y_scale`` is returned
too (``y_loc`` cancels in a difference).

Training-loop use (nanoGPT style)::

    out = model(batch)          # dict: loss, gap, primal, dual, alpha, weights, ate, ...
    out["loss"].backward()      # or: loss = model.loss(batch)

bf16 autocast is safe (the balancing layer runs in float32) and ``torch.compile(model)`` works
(input checks are skipped while compiling). Memory is O(N) per dataset: the trunk uses
``scaled_dot_product_attention`` (flash/memory-efficient kernels) and the balancing layer works in
row blocks, so a 20,000-unit dataset needs no N x N matrix. Time is O(N^2) with the full-attention
trunk and O(N * (n_inducing + landmarks)) with ``trunk_attention="induced"`` and the Nystrom
kernel: one thread, 16,000 units, untrained d_model 64: 4.9 s vs 0.49 s.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .balancing import (
    ESTIMANDS,
    OBJECTIVES,
    BalancingAttention,
    Estimate,
    att_flags,
    auto_block_size,
    balance_diagnostics,
    check_dataset,
    covariate_keys,
    project_weights,
    standardize_covariates,
    weighted_effect,
)
from .single import DEFAULT_LAM
from .target_balancing import solve_target_balance

__all__ = ["CInA", "CInAConfig", "collate_datasets"]

KERNELS = ("covariates", "learned")
TRUNK_ATTENTIONS = ("full", "induced")
BALANCINGS = ("target", "svm")
#: the blocks' MLP activation: GELU (the default) or SiLU, which is about 4x cheaper on a CPU
#: (exact GELU evaluates erf; its tanh form costs nearly as much)
ACTIVATIONS = {"gelu": nn.GELU, "silu": nn.SiLU}
#: defaults per balancing mode (chosen on the validation splits of a default-preset and an
#: er5000-nonlinear corpus, see the module docstring): (lam, score_scale)
MODE_DEFAULTS = {"target": (3e-4, 0.36), "svm": (DEFAULT_LAM, 1.0)}
FORMAT = "cina.CInA"
FORMAT_VERSION = 1


@dataclass
class CInAConfig:
    """Hyper-parameters of `CInA` (all JSON-serialisable).

    max_features: largest number of covariates a dataset may have.
    balancing: "target" (default): each arm is balanced towards the target sample (ATE: all
        units; ATT: the treated) by ``refine_steps`` unrolled balancing-attention layers started
        from the network's weights (`cina.target_balancing`); "svm": the paper's layer, the SVM
        dual of Tarr & Imai read out of one attention layer (arms balanced against each other).
    refine_steps: unrolled target-balancing steps (balancing="target" only).
    landmarks: Nystrom rank of the kernel for datasets too large for a dense kernel
        (`cina.target_balancing.KernelOperator`); None = exact row blocks (O(N^2) per step).
    score_scale: multiplies the kernel's scores s_ij (a temperature; smaller = smoother kernel).
        Default 0.36 for "target" and 1.0 for "svm".
    d_model, n_heads, mlp_ratio, dropout: transformer width, heads, MLP expansion, dropout.
    activation: the MLP activation of every block, "gelu" (default) or "silu" (cheaper on a CPU).
    trunk_attention: attention of the transformer blocks across units: "full" (default; N^2 time,
        O(N) memory with the fused kernels) or "induced" (Set Transformer ISAB, Lee et al. 2019:
        ``n_inducing`` learned points attend to the units, then the units attend to those
        summaries; N * n_inducing time, still permutation-equivariant).
    n_inducing: inducing points per induced block.
    n_layers: treatment-blind encoder blocks (feed the keys and the values).
    n_value_layers: treatment-aware blocks on the value branch.
    kernel: "covariates" (fixed kernel on standardised x, default) or "learned" (keys from z).
    key_dim: D of the learned keys (kernel="learned" only).
    lam: per-unit penalty (lambda_m = lam / N_m with ``lam_scaling="size"``); default 3e-4 for
        "target", 1e-3 for "svm".
    lam_scaling: "size" or "none" (lambda_m = lam).
    lam_range: (lo, hi) to condition on log lam, sampled log-uniformly in training; None = fixed.
    estimands: estimands the model is trained for; with both, each training dataset draws one.
    objective: "gap" (default) or "primal", see `cina.balancing.balancing_loss`.
    alpha_scale: "free" (default): alpha = sigmoid(.) directly; "optimal": the network gives
        the direction of alpha and its scale is the dual-optimal mass (see the module docstring).
    supervised_weight: weight of the ZS-S loss ((tau_hat - tau) / sd(y))^2; 0 = self-supervised.
    distill_weight: weight of the distance (total variation, in [0, 1]) between the weights and
        target SVM weights ``batch["alpha_star"]`` (e.g. Algorithm 1's, precomputed per task;
        needs no outcomes); datasets without a target (NaN in row 0) are skipped.
    shuffle_features: permute the valid feature columns per dataset in training mode.
    max_block_elements: size of one (B, block, N) temporary of the balancing layer.
    balance_weight: weight of the balancing objective in the training loss (default 1; the
        shipped model is trained with 0, i.e. by the supervised ZS-S loss alone).
    """

    max_features: int = 64
    balancing: str = "target"
    refine_steps: int = 30
    landmarks: int | None = 512
    score_scale: float | None = None
    d_model: int = 128
    n_heads: int = 4
    trunk_attention: str = "full"
    n_inducing: int = 32
    n_layers: int = 4
    n_value_layers: int = 2
    mlp_ratio: int = 4
    activation: str = "gelu"
    kernel: str = "covariates"
    key_dim: int = 16
    dropout: float = 0.0
    lam: float | None = None
    lam_scaling: str = "size"
    lam_range: tuple[float, float] | None = None
    estimands: tuple[str, ...] = ("ate",)
    objective: str = "gap"
    alpha_scale: str = "free"
    supervised_weight: float = 0.0
    distill_weight: float = 0.0
    shuffle_features: bool = True
    max_block_elements: int = 2**24
    balance_weight: float = 1.0

    def __post_init__(self) -> None:
        if self.balancing not in BALANCINGS:
            raise ValueError(f"balancing must be one of {BALANCINGS}, got {self.balancing!r}")
        lam_default, scale_default = MODE_DEFAULTS[self.balancing]
        if self.lam is None:
            self.lam = lam_default
        if self.score_scale is None:
            self.score_scale = scale_default
        if not (isinstance(self.score_scale, (int, float)) and self.score_scale > 0 and math.isfinite(self.score_scale)):
            raise ValueError(f"score_scale must be positive and finite, got {self.score_scale!r}")
        if isinstance(self.refine_steps, bool) or not isinstance(self.refine_steps, int) or self.refine_steps < 0:
            raise ValueError(f"refine_steps must be a non-negative integer, got {self.refine_steps!r}")
        if self.landmarks is not None and (isinstance(self.landmarks, bool) or not isinstance(self.landmarks, int) or self.landmarks < 2):
            raise ValueError(f"landmarks must be None or an integer >= 2, got {self.landmarks!r}")
        self.estimands = tuple(self.estimands)
        if self.lam_range is not None:
            self.lam_range = tuple(float(v) for v in self.lam_range)
        if self.trunk_attention not in TRUNK_ATTENTIONS:
            raise ValueError(f"trunk_attention must be one of {TRUNK_ATTENTIONS}, got {self.trunk_attention!r}")
        for name in ("max_features", "d_model", "n_heads", "n_layers", "mlp_ratio", "key_dim", "max_block_elements",
                     "n_inducing"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < (0 if name == "n_layers" else 1):
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if not isinstance(self.n_value_layers, int) or self.n_value_layers < 0:
            raise ValueError(f"n_value_layers must be a non-negative integer, got {self.n_value_layers!r}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {tuple(ACTIVATIONS)}, got {self.activation!r}")
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads})")
        if not (0.0 <= self.dropout < 1.0):
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")
        if not (self.lam > 0 and math.isfinite(self.lam)):
            raise ValueError(f"lam must be positive and finite, got {self.lam!r}")
        if self.lam_scaling not in ("size", "none"):
            raise ValueError(f"lam_scaling must be 'size' or 'none', got {self.lam_scaling!r}")
        if self.lam_range is not None:
            lo, hi = self.lam_range
            if not (0 < lo < hi and math.isfinite(hi)):
                raise ValueError(f"lam_range must be (lo, hi) with 0 < lo < hi, got {self.lam_range!r}")
            if not (lo <= self.lam <= hi):
                raise ValueError(f"lam={self.lam} must lie inside lam_range={self.lam_range}")
        if not self.estimands or any(e not in ESTIMANDS for e in self.estimands) or len(set(self.estimands)) != len(self.estimands):
            raise ValueError(f"estimands must be a non-empty subset of {ESTIMANDS}, got {self.estimands!r}")
        if self.kernel not in KERNELS:
            raise ValueError(f"kernel must be one of {KERNELS}, got {self.kernel!r}")
        if self.alpha_scale not in ("optimal", "free"):
            raise ValueError(f"alpha_scale must be 'optimal' or 'free', got {self.alpha_scale!r}")
        if self.objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {OBJECTIVES}, got {self.objective!r}")
        if not (self.supervised_weight >= 0):
            raise ValueError(f"supervised_weight must be >= 0, got {self.supervised_weight!r}")
        if not (self.distill_weight >= 0):
            raise ValueError(f"distill_weight must be >= 0, got {self.distill_weight!r}")
        if not (self.balance_weight >= 0):
            raise ValueError(f"balance_weight must be >= 0, got {self.balance_weight!r}")
        if self.balance_weight == 0 and self.supervised_weight == 0 and self.distill_weight == 0:
            raise ValueError("balance_weight, supervised_weight and distill_weight are all 0: nothing to train")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["estimands"] = list(self.estimands)
        d["lam_range"] = list(self.lam_range) if self.lam_range is not None else None
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "CInAConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown CInAConfig fields {unknown}")
        return cls(**d)


class _UnitBlock(nn.Module):
    """What the trunk's blocks share: pre-LN, an attention output projection with a residual,
    then a residual MLP. Subclasses build ``ln1`` and their attention modules, then call
    `_add_output_and_mlp` (construction order fixes which random draws each module gets for a
    given seed, so it is kept as it was), and define ``_attend(u, attn_mask, dropout_p)``: the
    attention across units of the normalised input u (B, N, C), returning (B, N, C)."""

    def __init__(self, c: "CInAConfig"):
        super().__init__()
        self.n_heads = c.n_heads
        self.dropout = c.dropout

    def _add_output_and_mlp(self, c: "CInAConfig") -> None:
        self.proj = nn.Linear(c.d_model, c.d_model)
        self.ln2 = nn.LayerNorm(c.d_model)
        self.mlp = nn.Sequential(
            nn.Linear(c.d_model, c.mlp_ratio * c.d_model),
            ACTIVATIONS[c.activation](),
            nn.Linear(c.mlp_ratio * c.d_model, c.d_model),
        )
        self.drop = nn.Dropout(c.dropout)

    def forward(self, z: torch.Tensor, attn_mask: torch.Tensor) -> torch.Tensor:
        """z: (B, N, C); attn_mask: (B, 1, 1, N) bool, True for real units (padded keys are ignored)."""
        o = self._attend(self.ln1(z), attn_mask, self.dropout if self.training else 0.0)
        z = z + self.drop(self.proj(o))
        return z + self.drop(self.mlp(self.ln2(z)))


def _heads(a: torch.Tensor, n_heads: int) -> torch.Tensor:
    """(B, N, C) -> (B, heads, N, C / heads)."""
    B, N, C = a.shape
    return a.view(B, N, n_heads, C // n_heads).transpose(1, 2)


def _merge(o: torch.Tensor) -> torch.Tensor:
    """(B, heads, N, c) -> (B, N, heads * c)."""
    B, H, N, c = o.shape
    return o.transpose(1, 2).reshape(B, N, H * c)


class Block(_UnitBlock):
    """Pre-LN transformer block with full attention across the units of each dataset."""

    def __init__(self, c: "CInAConfig"):
        super().__init__(c)
        self.ln1 = nn.LayerNorm(c.d_model)
        self.qkv = nn.Linear(c.d_model, 3 * c.d_model)
        self._add_output_and_mlp(c)

    def _attend(self, u, attn_mask, p):
        q, k, v = (_heads(a, self.n_heads) for a in self.qkv(u).split(u.shape[-1], dim=2))
        return _merge(F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=p))


class InducedBlock(_UnitBlock):
    """Pre-LN block whose attention across units goes through m learned inducing points (ISAB).

    ``h = attend(inducing -> units)`` summarises the dataset in m vectors (padded units are
    masked out as keys), then every unit attends to h: N * m time instead of N^2, and the output
    is still permutation-equivariant over units. Then the usual MLP.
    """

    def __init__(self, c: "CInAConfig"):
        super().__init__(c)
        self.inducing = nn.Parameter(torch.randn(c.n_inducing, c.d_model) * 0.02)
        self.ln1 = nn.LayerNorm(c.d_model)
        self.q_ind = nn.Linear(c.d_model, c.d_model)
        self.kv_units = nn.Linear(c.d_model, 2 * c.d_model)
        self.ln_h = nn.LayerNorm(c.d_model)
        self.q_units = nn.Linear(c.d_model, c.d_model)
        self.kv_ind = nn.Linear(c.d_model, 2 * c.d_model)
        self._add_output_and_mlp(c)

    def _attend(self, u, attn_mask, p):
        B, _, C = u.shape
        k, v = (_heads(a, self.n_heads) for a in self.kv_units(u).split(C, dim=2))
        q = _heads(self.q_ind(self.inducing).expand(B, -1, -1), self.n_heads)
        h = _merge(F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=p))
        h = self.ln_h(self.inducing + h)  # (B, m, C) summaries of the dataset
        k2, v2 = (_heads(a, self.n_heads) for a in self.kv_ind(h).split(C, dim=2))
        return _merge(F.scaled_dot_product_attention(_heads(self.q_units(u), self.n_heads), k2, v2, dropout_p=p))


#: models shipped inside the package, by name: "default" (the most accurate) and "fast" (a
#: width-16 network, 10 balancing layers on a 32-landmark kernel: 7-15x less CPU time per
#: 1,000-unit dataset for a slightly larger error). Each folder's TRAINING.md says how it was made.
SHIPPED_MODELS = {"default": "default_model", "fast": "fast_model"}


def shipped_model_path(name: str = "default") -> Path:
    """The folder of a shipped model (`SHIPPED_MODELS`)."""
    if name not in SHIPPED_MODELS:
        raise ValueError(f"no shipped model {name!r}; the shipped ones are {sorted(SHIPPED_MODELS)}")
    return Path(__file__).resolve().parent / "assets" / SHIPPED_MODELS[name]


def named_shipped_model(path: str | Path) -> Path | None:
    """The shipped model's folder when ``path`` is one of `SHIPPED_MODELS`' names and no file or
    folder of that name exists (a real path always wins); else None."""
    if str(path) in SHIPPED_MODELS and not Path(path).exists():
        return shipped_model_path(str(path))
    return None


class CInA(nn.Module):
    """Causal Inference with Attention: zero-shot balancing weights for a batch of datasets.

    Construct with a `CInAConfig` or its fields as keyword arguments: ``CInA(d_model=64)``.
    See the module docstring for the architecture, the design choices and the batch contract.
    """

    def __init__(self, config: CInAConfig | None = None, **kwargs: Any):
        super().__init__()
        if config is None:
            config = CInAConfig(**kwargs)
        elif kwargs:
            config = replace(config, **kwargs)
        self.config = c = config
        self.check_inputs = True  # validate batches (skipped under torch.compile)
        self.input_proj = nn.Linear(c.max_features, c.d_model)
        block = InducedBlock if c.trunk_attention == "induced" else Block
        self.x_blocks = nn.ModuleList(block(c) for _ in range(c.n_layers))
        self.key_norm = nn.LayerNorm(c.d_model) if c.kernel == "learned" else None
        self.t_embed = nn.Embedding(2, c.d_model)
        self.estimand_embed = nn.Embedding(len(ESTIMANDS), c.d_model)
        self.lam_embed = nn.Linear(1, c.d_model) if c.lam_range is not None else None
        self.v_blocks = nn.ModuleList(block(c) for _ in range(c.n_value_layers))
        self.value_norm = nn.LayerNorm(c.d_model)
        self.balance = BalancingAttention(c.d_model, c.key_dim if c.kernel == "learned" else None)
        self.apply(self._init_weights)
        # Start at uniform weights within each arm, i.e. the difference in means.
        nn.init.zeros_(self.balance.value_proj.weight)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=0.02)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    # ----------------------------------------------------------------------------------------
    # inputs

    def _validate(self, x, t, unit_mask, feature_mask, y) -> None:
        if x.ndim != 3:
            raise ValueError(f"batch['x'] must be (B, N, d), got shape {tuple(x.shape)}")
        B, N, d = x.shape
        if t.shape != (B, N):
            raise ValueError(f"batch['t'] must be (B, N) = {(B, N)}, got {tuple(t.shape)}")
        if unit_mask.shape != (B, N) or unit_mask.dtype != torch.bool:
            raise ValueError(f"batch['unit_mask'] must be bool (B, N) = {(B, N)}, got {unit_mask.dtype} {tuple(unit_mask.shape)}")
        if feature_mask.shape != (B, d) or feature_mask.dtype != torch.bool:
            raise ValueError(f"batch['feature_mask'] must be bool (B, d) = {(B, d)}, got {feature_mask.dtype} {tuple(feature_mask.shape)}")
        valid = unit_mask.unsqueeze(-1) & feature_mask.unsqueeze(1)
        if not torch.isfinite(torch.where(valid, x, torch.zeros_like(x))).all():
            bad = torch.nonzero(~torch.isfinite(x) & valid)[0, 0].item()
            raise ValueError(f"batch['x'] has NaN/inf on real units/features (dataset {bad})")
        tv = torch.where(unit_mask, t, torch.zeros_like(t))
        if not ((tv == 0) | (tv == 1)).all():
            raise ValueError("batch['t'] must be 0/1 on real units")
        n_t = (tv > 0.5).sum(-1)
        n = unit_mask.sum(-1)
        empty = torch.nonzero((n_t == 0) | (n_t == n)).flatten().tolist()
        if empty:
            raise ValueError(f"datasets {empty[:10]} have an empty treatment arm")
        n_feat = feature_mask.sum(-1)
        if (n_feat > self.config.max_features).any():
            raise ValueError(
                f"a dataset has {int(n_feat.max())} features but the model accepts at most "
                f"max_features={self.config.max_features}"
            )
        if y is not None:
            if y.shape != (B, N):
                raise ValueError(f"batch['y'] must be (B, N) = {(B, N)}, got {tuple(y.shape)}")
            if not torch.isfinite(torch.where(unit_mask, y, torch.zeros_like(y))).all():
                raise ValueError("batch['y'] has NaN/inf on real units")

    def _prepare_x(self, x: torch.Tensor, unit_mask: torch.Tensor, feature_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, N, d) raw covariates -> (B, N, w) standardised, valid columns first, and the
        matching (B, w) feature mask.

        w is max_features under torch.compile (static shapes); in eager mode it is the widest
        dataset's number of valid columns: the columns beyond it would be zero everywhere, and
        neither the network (`_project_input`) nor the covariate kernel depends on them, so
        dropping them only saves time (a 5-covariate dataset no longer pays for 128 columns).
        """
        B, N, d = x.shape
        F_max = self.config.max_features
        if not torch.compiler.is_compiling():
            F_max = max(1, min(F_max, int(feature_mask.sum(-1).max())))
        if self.training and self.config.shuffle_features:
            sort_key = torch.where(feature_mask, torch.rand(B, d, device=x.device), torch.full((B, d), 2.0, device=x.device))
        else:
            sort_key = (~feature_mask).float()
        order = torch.sort(sort_key, dim=-1, stable=True).indices
        x = x.gather(2, order.unsqueeze(1).expand(B, N, d))
        fmask = feature_mask.gather(1, order)
        if d >= F_max:
            x, fmask = x[..., :F_max], fmask[:, :F_max]  # dropped columns are padding (validated)
        else:
            x = F.pad(x, (0, F_max - d))
            fmask = F.pad(fmask, (0, F_max - d), value=False)
        return standardize_covariates(x, unit_mask, fmask), fmask

    def _project_input(self, xs: torch.Tensor) -> torch.Tensor:
        """(B, N, w) -> (B, N, d_model): the input projection on the first w <= max_features
        columns (the rest of its weight would multiply zeros)."""
        w = self.input_proj.weight
        return F.linear(xs, w[:, : xs.shape[-1]], self.input_proj.bias)

    def _estimand_flags(self, estimand, B: int, device) -> torch.Tensor:
        if estimand is None:
            if self.training and len(self.config.estimands) > 1:
                return torch.rand(B, device=device) < 0.5
            estimand = self.config.estimands[0]
        return att_flags(estimand, B, device)

    def _lam(self, lam, B: int, device) -> torch.Tensor:
        """(B,) per-unit penalties lam."""
        c = self.config
        if lam is None:
            if self.training and c.lam_range is not None:
                lo, hi = math.log(c.lam_range[0]), math.log(c.lam_range[1])
                return torch.exp(lo + (hi - lo) * torch.rand(B, device=device))
            lam = c.lam
        return torch.as_tensor(lam, dtype=torch.float32, device=device).expand(B)

    # ----------------------------------------------------------------------------------------
    # forward

    def forward(
        self,
        batch: dict[str, torch.Tensor],
        *,
        estimand: str | torch.Tensor | None = None,
        lam: float | torch.Tensor | None = None,
        compute_loss: bool = True,
        validate: bool = True,
    ) -> dict[str, torch.Tensor]:
        """Weights, estimates and losses for a padded batch of datasets.

        Args:
            batch: the batch contract of the module docstring.
            estimand: "ate", "att", (B,) bool ATT flags, or None (config default; in training
                with two configured estimands, one is drawn per dataset).
            lam: per-unit penalty, scalar or (B,); None = config (sampled in training if
                ``lam_range`` is set).
            compute_loss: False skips the O(N^2)-time kernel passes (weights only).
            validate: False skips the batch checks, for callers that built the batch from datasets
                they checked already (`estimate`).

        Returns:
            dict with ``weights`` (B, N) normalised per arm, ``keys`` (B, N, D) of the balancing
            attention, ``lam`` (B,); with ``compute_loss`` also ``alpha`` (B, N), the SVM
            weights in [0, 1]; with y: ``ate`` (B,) (the ATT for ATT
            datasets) and ``ate_original`` if ``y_scale`` is given; with ``compute_loss``:
            ``loss`` (scalar), ``loss_balance``, ``loss_supervised`` (scalars) and per-dataset
            ``gap``, ``primal``, ``dual`` (B,).
        """
        x, t = batch["x"], batch["t"]
        B, N, d = x.shape
        unit_mask = batch.get("unit_mask")
        if unit_mask is None:
            unit_mask = torch.ones(B, N, dtype=torch.bool, device=x.device)
        feature_mask = batch.get("feature_mask")
        if feature_mask is None:
            feature_mask = torch.ones(B, d, dtype=torch.bool, device=x.device)
        y = batch.get("y")
        if validate and self.check_inputs and not torch.compiler.is_compiling():
            self._validate(x, t, unit_mask, feature_mask, y)
        x, t = x.float(), t.float()
        t = torch.where(unit_mask, t, torch.zeros_like(t))
        c = self.config
        att = self._estimand_flags(estimand, B, x.device)
        lam0 = self._lam(lam, B, x.device)
        n_units = unit_mask.sum(-1).clamp_min(1).float()
        lam_abs = lam0 / n_units if c.lam_scaling == "size" else lam0

        attn_mask = unit_mask[:, None, None, :]
        xs, fmask = self._prepare_x(x, unit_mask, feature_mask)
        z = self._project_input(xs)
        for block in self.x_blocks:
            z = block(z, attn_mask)
        if c.kernel == "learned":
            keys = self.balance.keys(self.key_norm(z), unit_mask)
        else:
            keys = covariate_keys(xs, unit_mask, fmask)
        if c.score_scale != 1.0:
            keys = keys * math.sqrt(c.score_scale)
        zv = z + self.t_embed(t.long()) + self.estimand_embed(att.long()).unsqueeze(1)
        if self.lam_embed is not None:
            lo, hi = math.log(c.lam_range[0]), math.log(c.lam_range[1])
            loglam = (2.0 * (torch.log(lam0) - lo) / (hi - lo) - 1.0).to(zv.dtype)
            zv = zv + self.lam_embed(loglam.view(B, 1, 1))
        for block in self.v_blocks:
            zv = block(zv, attn_mask)
        zv = self.value_norm(zv)

        out: dict[str, torch.Tensor] = {"lam": lam0, "keys": keys}
        if c.balancing == "target":
            # float32 whatever the autocast: the solver's kernel products need the precision
            with torch.autocast(device_type=x.device.type, enabled=False):
                alpha0 = self.balance.direction(zv.float(), t, unit_mask, att)
                sol = solve_target_balance(keys.float(), t, unit_mask, lam_abs, att, alpha0, c.refine_steps,
                                           c.max_block_elements, landmarks=c.landmarks)
            weights = project_weights(sol["alpha"], t, unit_mask, att)
            out.update(alpha=sol["alpha"], objective=sol["objective"], step_change=sol["step_change"])
            bal = {"loss": sol["objective"]}
        elif compute_loss:
            block_size = auto_block_size(B, N, c.max_block_elements)
            bal = self.balance(keys, zv, t, unit_mask, lam_abs, att, block_size, c.objective, c.alpha_scale == "optimal")
            weights = bal["weights"]
            out.update(alpha=bal["alpha"], gap=bal["gap"], primal=bal["primal"], dual=bal["dual"])
        else:
            weights = self.balance.weights(zv, t, unit_mask, att)
        out["weights"] = weights
        if y is not None:
            tau = weighted_effect(weights, t, y.float(), unit_mask)
            out["ate"] = tau
            if "y_scale" in batch:
                out["ate_original"] = tau * batch["y_scale"].float()
        if compute_loss:
            loss_balance = bal["loss"].mean()
            loss_sup = torch.zeros((), device=x.device)
            if c.supervised_weight > 0 and y is not None:
                loss_sup = self._supervised_loss(batch, tau, y.float(), unit_mask, att)
            loss_distill = torch.zeros((), device=x.device)
            if c.distill_weight > 0 and "alpha_star" in batch:
                target = batch["alpha_star"].float()
                has = torch.isfinite(target[:, 0])
                target = project_weights(torch.where(has.unsqueeze(1), target, torch.ones_like(target)), t, unit_mask, att)
                tv = 0.5 * torch.where(unit_mask, (weights - target).abs(), torch.zeros_like(target)).sum(-1)
                loss_distill = torch.where(has, tv, torch.zeros_like(tv)).sum() / has.sum().clamp_min(1)
            out.update(
                loss=c.balance_weight * loss_balance + c.supervised_weight * loss_sup + c.distill_weight * loss_distill,
                loss_balance=loss_balance,
                loss_supervised=loss_sup,
                loss_distill=loss_distill,
            )
        return out

    def _supervised_loss(self, batch, tau, y, unit_mask, att) -> torch.Tensor:
        """ZS-S: mean over datasets with a ground truth of ((tau_hat - tau) / sd(y))^2."""
        B = tau.shape[0]
        nan = torch.full((B,), float("nan"), device=tau.device)
        ate = batch["ate"].float() if "ate" in batch else nan
        att_truth = batch["att"].float() if "att" in batch else nan
        target = torch.where(att, att_truth, ate)
        has = torch.isfinite(target)
        m = unit_mask.float()
        n = m.sum(-1).clamp_min(1.0)
        mean = (y * m).sum(-1) / n
        sd = torch.sqrt(((y - mean.unsqueeze(1)).square() * m).sum(-1) / n).clamp_min(1e-6)
        err = torch.where(has, (tau - torch.where(has, target, tau)) / sd, torch.zeros_like(tau))
        return err.square().sum() / has.sum().clamp_min(1)

    def loss(self, batch: dict[str, torch.Tensor], **kwargs: Any) -> torch.Tensor:
        """Scalar training loss (self-supervised duality gap, plus the ZS-S term if configured)."""
        return self(batch, **kwargs)["loss"]

    # ----------------------------------------------------------------------------------------
    # zero-shot estimation (Algorithm 3)

    @torch.no_grad()
    def estimate(
        self,
        x,
        t,
        y=None,
        *,
        estimand: str = "ate",
        lam: float | None = None,
        batch_size: int | None = None,
        compute_loss: bool = True,
    ) -> Estimate | list[Estimate]:
        """Zero-shot effect estimates in one forward pass per ``batch_size`` datasets.

        Args:
            x: (N, d) array for one dataset, or a list of (N_m, d_m) arrays.
            t: (N,) 0/1 array, or a list. y: (N,) outcomes, a list, or None (weights only).
            estimand: "ate" or "att" (must be one the model was trained for).
            lam: per-unit penalty (default: the config's; must lie in ``lam_range`` if set).
            batch_size: datasets per forward pass (default: all at once for the SVM layer; for
                target balancing as many as keep the kernel dense, max_block_elements / N^2).
            compute_loss: also report the balancing loss and its duality gap (costs two O(N^2)
                time, O(N) memory passes; the gap bounds how far the weights are from optimal).

        Returns:
            `Estimate` (or a list of them): ``ate`` (NaN without y), per-arm normalised
            ``weights`` and ``diagnostics``: ess_treated, ess_control, smd_before, smd_after,
            max_abs_smd_before/after, top1_share, n_treated, n_control, lam and (with
            compute_loss) balancing_loss and duality_gap.
        """
        c = self.config
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
        checked = []
        for i, (xi, ti, yi) in enumerate(zip(xs, ts, ys)):
            try:
                checked.append(check_dataset(xi, ti, yi))
            except ValueError as e:
                raise ValueError(f"dataset {i}: {e}" if not single else str(e)) from None
            if checked[-1][0].shape[1] > c.max_features:
                raise ValueError(f"dataset {i} has {checked[-1][0].shape[1]} features; the model accepts at most {c.max_features}")
        was_training = self.training
        self.eval()
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
                # collated once in float64: the diagnostics use it (float32 would round large
                # covariates), the network its float32 copy (the same values as collating in float32)
                x64 = collate_datasets(
                    [a for a, _, _ in chunk], [b for _, b, _ in chunk],
                    [yi if yi is not None else np.zeros(len(b)) for _, b, yi in chunk], dtype=torch.float64,
                )
                batch = {k: (v.float() if v.is_floating_point() else v).to(self.device) for k, v in x64.items()}
                # check_dataset has validated every dataset of the batch
                out = self(batch, estimand=estimand, lam=lam, compute_loss=compute_loss, validate=False)
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
            self.train(was_training)
        return results[0] if single else results

    # ----------------------------------------------------------------------------------------
    # checkpoints: safetensors + JSON config (never pickle)

    def save(self, path: str | Path) -> Path:
        """Write weights and config.

        ``path`` is a directory (-> ``model.safetensors`` + ``config.json``) or a ``.safetensors``
        file (config next to it as ``<stem>.json``). The config is also stored in the safetensors
        metadata, so the weights file alone is enough for `load`. Returns the weights file.
        """
        from safetensors.torch import save_file

        path = Path(path)
        if path.suffix == ".safetensors":
            path.parent.mkdir(parents=True, exist_ok=True)
            weights_file, config_file = path, path.with_suffix(".json")
        else:
            path.mkdir(parents=True, exist_ok=True)
            weights_file, config_file = path / "model.safetensors", path / "config.json"
        meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "config": self.config.to_dict()}
        state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        save_file(state, str(weights_file), metadata={"cina": json.dumps(meta)})
        config_file.write_text(json.dumps(meta, indent=2) + "\n")
        return weights_file

    @classmethod
    def load(cls, path: str | Path, map_location: str | torch.device = "cpu") -> "CInA":
        """Load a model written by `save` (a directory or a ``.safetensors`` file), in eval mode.

        ``path`` may also name a model shipped with the package, ``"default"`` or ``"fast"``
        (`SHIPPED_MODELS`), unless a file or folder of that name exists.
        """
        from safetensors import safe_open
        from safetensors.torch import load_file

        path = named_shipped_model(path) or Path(path)
        if path.is_dir():
            weights_file, config_file = path / "model.safetensors", path / "config.json"
        else:
            weights_file, config_file = path, path.with_suffix(".json")
        if not weights_file.is_file():
            raise FileNotFoundError(f"no CInA weights at {weights_file}")
        if config_file.is_file():
            meta = json.loads(config_file.read_text())
        else:
            with safe_open(str(weights_file), framework="pt") as f:
                raw = (f.metadata() or {}).get("cina")
            if raw is None:
                raise ValueError(f"{weights_file} has no CInA config (no {config_file.name}, no metadata)")
            meta = json.loads(raw)
        if meta.get("format") != FORMAT or meta.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"{config_file} is not a {FORMAT} v{FORMAT_VERSION} config: {meta.get('format')!r} v{meta.get('format_version')!r}")
        model = cls(CInAConfig.from_dict(meta["config"]))
        state = load_file(str(weights_file), device=str(map_location))
        # Tolerate checkpoints of wrapped models (torch.compile / DDP prefixes).
        state = {k.removeprefix("_orig_mod.").removeprefix("module."): v for k, v in state.items()}
        model.load_state_dict(state)
        return model.to(map_location).eval()


def collate_datasets(
    xs: Sequence[np.ndarray],
    ts: Sequence[np.ndarray],
    ys: Sequence[np.ndarray] | None = None,
    *,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
) -> dict[str, torch.Tensor]:
    """Pad a list of datasets into the batch contract (x, t, unit_mask, feature_mask[, y]).

    Args:
        xs: B arrays (N_m, d_m); ts: B arrays (N_m,) 0/1; ys: B arrays (N_m,) or None.
    """
    B = len(xs)
    n_max = max(len(t) for t in ts)
    d_max = max(np.asarray(x).reshape(len(t), -1).shape[1] for x, t in zip(xs, ts))
    x = torch.zeros(B, n_max, d_max, dtype=dtype)
    t = torch.zeros(B, n_max, dtype=dtype)
    unit_mask = torch.zeros(B, n_max, dtype=torch.bool)
    feature_mask = torch.zeros(B, d_max, dtype=torch.bool)
    y = torch.zeros(B, n_max, dtype=dtype) if ys is not None else None
    for i in range(B):
        xi = torch.as_tensor(np.asarray(xs[i], dtype=np.float64).reshape(len(ts[i]), -1), dtype=dtype)
        n, d = xi.shape
        x[i, :n, :d] = xi
        t[i, :n] = torch.as_tensor(np.asarray(ts[i], dtype=np.float64), dtype=dtype)
        unit_mask[i, :n] = True
        feature_mask[i, :d] = True
        if y is not None:
            y[i, :n] = torch.as_tensor(np.asarray(ys[i], dtype=np.float64), dtype=dtype)
    batch = {"x": x, "t": t, "unit_mask": unit_mask, "feature_mask": feature_mask}
    if y is not None:
        batch["y"] = y
    return {k: v.to(device) for k, v in batch.items()}
