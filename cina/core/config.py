"""`CInAConfig`: the hyper-parameters of a `CInA` model, validated, JSON-serialisable.

The defaults per balancing mode were chosen on the validation splits of a default-preset and an
er5000-nonlinear corpus (see `cina.core.model`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

from .balancing import OBJECTIVES
from .single import DEFAULT_LAM
from .weights import ESTIMANDS

__all__ = ["CInAConfig", "ACTIVATIONS", "BALANCINGS", "KERNELS", "MODE_DEFAULTS", "TRUNK_ATTENTIONS"]

KERNELS = ("covariates", "learned")


TRUNK_ATTENTIONS = ("full", "induced")


BALANCINGS = ("target", "svm")


#: the blocks' MLP activation: GELU (the default) or SiLU, which is about 4x cheaper on a CPU
#: (exact GELU evaluates erf; its tanh form costs nearly as much)
ACTIVATIONS = ("gelu", "silu")


#: defaults per balancing mode (chosen on the validation splits of a default-preset and an
#: er5000-nonlinear corpus, see the module docstring): (lam, score_scale)
MODE_DEFAULTS = {"target": (3e-4, 0.36), "svm": (DEFAULT_LAM, 1.0)}


@dataclass
class CInAConfig:
    """Hyper-parameters of `CInA` (all JSON-serialisable).

    max_features: largest number of covariates a dataset may have.
    balancing: "target" (default): each arm is balanced towards the target sample (ATE: all
        units; ATT: the treated) by ``refine_steps`` unrolled balancing-attention layers started
        from the network's weights (`cina.core.target_balancing`); "svm": the paper's layer, the SVM
        dual of Tarr & Imai read out of one attention layer (arms balanced against each other).
    refine_steps: unrolled target-balancing steps (balancing="target" only).
    landmarks: Nystrom rank of the kernel for datasets too large for a dense kernel
        (`cina.core.target_balancing.KernelOperator`); None = exact row blocks (O(N^2) per step).
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
    objective: "gap" (default) or "primal", see `cina.core.balancing.balancing_loss`.
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
    outcome_model: add the in-context outcome head (`cina.core.outcome`): cross-fitted mu0(x),
        mu1(x) for every unit, CATE, and the doubly robust estimate (`cina.core.augment`).
    outcome_features: learned features of the outcome head's ridge regression.
    outcome_penalty_grid: log multipliers of the outcome head's learned penalty; each arm's
        ridge penalty is chosen among them per dataset by leave-one-out error (`cina.core.outcome`).
        () = the learned penalty alone (models saved before this field).
    augment: with an outcome model, report the augmented (doubly robust) estimate by default
        (``estimate(..., augment=False)`` gives the weights-only one either way).
    outcome_weight: weight of the outcome head's loss, the mean squared error of mu0, mu1
        against the corpus' potential outcomes y0, y1 (over sd(y)^2).
    se_scale: multiplies the influence-function standard error (a calibration of the intervals,
        chosen on validation tasks by `scripts/calibrate_intervals.py`; 1 = uncalibrated).
    se_sample_scale: the same for ``se_sample``, the standard error of the effect on the
        dataset's own units (calibrated against the tasks' SATE).
    relevance_keys: weight each covariate of the balancing kernel by how much the outcome head's
        regression uses it (per dataset), so that covariates the outcome ignores stop soaking up
        balance (needs outcome_model).
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
    outcome_model: bool = False
    outcome_features: int = 32
    outcome_penalty_grid: tuple[float, ...] = ()
    augment: bool = True
    outcome_weight: float = 0.0
    relevance_keys: bool = False
    se_scale: float = 1.0
    se_sample_scale: float = 1.0

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
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {self.activation!r}")
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
        if self.balance_weight == 0 and self.supervised_weight == 0 and self.distill_weight == 0 and self.outcome_weight == 0:
            raise ValueError("balance_weight, supervised_weight, distill_weight and outcome_weight are all 0: nothing to train")
        if not (self.outcome_weight >= 0):
            raise ValueError(f"outcome_weight must be >= 0, got {self.outcome_weight!r}")
        if self.outcome_weight > 0 and not self.outcome_model:
            raise ValueError("outcome_weight > 0 needs outcome_model=True")
        if self.relevance_keys and not self.outcome_model:
            raise ValueError("relevance_keys=True needs outcome_model=True")
        for name in ("se_scale", "se_sample_scale"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v < 100):
                raise ValueError(f"{name} must be a positive number below 100, got {v!r}")
        if not isinstance(self.outcome_features, int) or self.outcome_features < 1:
            raise ValueError(f"outcome_features must be a positive integer, got {self.outcome_features!r}")
        grid = self.outcome_penalty_grid
        if (not isinstance(grid, (list, tuple)) or len(grid) > 32
                or not all(isinstance(g, (int, float)) and not isinstance(g, bool) and math.isfinite(g) and abs(g) <= 20
                           for g in grid)):
            raise ValueError("outcome_penalty_grid must be a list of at most 32 finite log multipliers in "
                             f"[-20, 20], got {grid!r}")
        self.outcome_penalty_grid = tuple(float(g) for g in grid)
        if grid and not self.outcome_model:
            raise ValueError("outcome_penalty_grid needs outcome_model=True")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["estimands"] = list(self.estimands)
        d["lam_range"] = list(self.lam_range) if self.lam_range is not None else None
        d["outcome_penalty_grid"] = list(self.outcome_penalty_grid)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "CInAConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown CInAConfig fields {unknown}")
        return cls(**d)
