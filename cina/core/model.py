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
      one accelerated projected-gradient step of target balancing (`cina.core.target_balancing`),
      alpha0 -> alpha; weights = alpha normalised per arm; loss = the target-balancing objective.
    balancing="svm" (the paper's layer): one balancing attention (`cina.core.balancing`), values
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
  standardised covariates themselves (`cina.core.balancing.covariate_keys`,
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
  `cina.core.balancing.optimal_intercept`): no parameter to learn and no bias from amortising it.
* **Objective.** The duality gap P - D of the penalised hinge loss (with ``kernel="learned"`` the
  keys get the gradient of P only: the paper's kernel learning). P alone pins the decision function but leaves the weights loose along
  directions the kernel barely sees; see `cina.core.balancing.balancing_loss` for the measurement.
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
  `cina.core.single`).
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

import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from .augment import augmented_effect
from .balancing import BalancingAttention
from .blocks import Block, InducedBlock
from .checkpoint import SHIPPED_MODELS, ModelFileError, check_state_keys, read_model, save_model, weights_file
from .config import CInAConfig
from .estimate import Estimate, estimate_datasets
from .kernel import auto_block_size, covariate_keys, standardize_covariates
from .outcome import OutcomeHead
from .target_balancing import solve_target_balance
from .weights import ESTIMANDS, att_flags, project_weights, weighted_effect

__all__ = ["CInA", "CInAConfig", "SHIPPED_MODELS"]


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
        self.outcome = OutcomeHead(c.d_model, c.outcome_features, penalty_grid=c.outcome_penalty_grid) if c.outcome_model else None
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

    def _prepare_x(self, x: torch.Tensor, unit_mask: torch.Tensor, feature_mask: torch.Tensor,
                   stats_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, N, d) raw covariates (any float dtype: float64 keeps covariates in extreme units
        exact) -> (B, N, w) float32 standardised, valid columns first, and the matching (B, w)
        feature mask. Standardisation runs in float64 (`standardize_covariates`); the network
        and the kernel get its float32 result.

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
        return standardize_covariates(x, unit_mask, fmask, stats_mask).float(), fmask

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
        augment: bool | None = None,
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
            augment: with an outcome head, report the augmented estimate as ``ate`` (None: the
                config's ``augment``); the weights-only one is ``ate_weighting`` either way.

        ``batch["query_mask"]`` (B, N) bool, optional, marks new units: they are standardised
        like the dataset, get outcome predictions (CATE) from the whole dataset, and influence
        nothing (no attention reads them, no weight goes to them).

        Returns:
            dict with ``weights`` (B, N) normalised per arm, ``keys`` (B, N, D) of the balancing
            attention, ``lam`` (B,); with ``compute_loss`` also ``alpha`` (B, N), the SVM
            weights in [0, 1]; with y: ``ate`` (B,) (the ATT for ATT
            datasets) and ``ate_original`` if ``y_scale`` is given; with ``compute_loss``:
            ``loss`` (scalar), ``loss_balance``, ``loss_supervised`` (scalars) and per-dataset
            ``gap``, ``primal``, ``dual`` (B,). With an outcome head and y: ``mu0``, ``mu1``
            (B, N) cross-fitted potential-outcome means (new units: from the whole dataset),
            ``se`` (B,) the influence-function standard error of ``ate``, ``ate_weighting``,
            ``plug_in`` (B,), and ``loss_outcome``.
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
        query_mask = batch.get("query_mask")
        context = unit_mask if query_mask is None else unit_mask & ~query_mask
        if validate and self.check_inputs and not torch.compiler.is_compiling():
            self._validate(x, t, context, feature_mask, y)
        x_raw = x  # standardised from its own dtype (float64 from `estimate`): see _prepare_x
        x, t = x.float(), t.float()
        t = torch.where(context, t, torch.zeros_like(t))
        c = self.config
        att = self._estimand_flags(estimand, B, x.device)
        lam0 = self._lam(lam, B, x.device)
        n_units = context.sum(-1).clamp_min(1).float()
        lam_abs = lam0 / n_units if c.lam_scaling == "size" else lam0

        attn_mask = context[:, None, None, :]  # keys: the dataset's own units, never new ones
        xs, fmask = self._prepare_x(x_raw, unit_mask, feature_mask, None if query_mask is None else context)
        z = self._project_input(xs)
        for block in self.x_blocks:
            z = block(z, attn_mask)
        fit = None
        if self.outcome is not None and y is not None:
            fit = self.outcome(z, xs, t, y.float(), context, unit_mask)
        kernel_x = xs
        if c.relevance_keys and fit is not None:
            # weight each covariate by its coefficient in the outcome regression (both arms),
            # normalised to a root mean square of 1 over the dataset's columns
            g = fit["beta_x"].abs().sum(1) * fmask
            rms = (g.square().sum(-1, keepdim=True) / fmask.sum(-1, keepdim=True).clamp_min(1)).sqrt()
            kernel_x = xs * (g / rms.clamp_min(1e-12)).unsqueeze(1)
        if c.kernel == "learned":
            keys = self.balance.keys(self.key_norm(z), context)
        else:
            keys = covariate_keys(kernel_x, context, fmask)
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
                alpha0 = self.balance.direction(zv.float(), t, context, att)
                sol = solve_target_balance(keys.float(), t, context, lam_abs, att, alpha0, c.refine_steps,
                                           c.max_block_elements, landmarks=c.landmarks)
            weights = project_weights(sol["alpha"], t, context, att)
            out.update(alpha=sol["alpha"], objective=sol["objective"], step_change=sol["step_change"])
            bal = {"loss": sol["objective"]}
        elif compute_loss:
            block_size = auto_block_size(B, N, c.max_block_elements)
            bal = self.balance(keys, zv, t, context, lam_abs, att, block_size, c.objective, c.alpha_scale == "optimal")
            weights = bal["weights"]
            out.update(alpha=bal["alpha"], gap=bal["gap"], primal=bal["primal"], dual=bal["dual"])
        else:
            weights = self.balance.weights(zv, t, context, att)
        out["weights"] = weights
        if y is not None:
            tau = weighted_effect(weights, t, y.float(), context)
            out["ate_weighting"] = tau
            if fit is not None:
                aug = augmented_effect(weights, t, y.float(), fit["mu0"], fit["mu1"], context, att)
                out.update(mu0=fit["mu0"], mu1=fit["mu1"], se=aug["se"].float() * c.se_scale,
                           se_sample=aug["se_sample"].float() * c.se_sample_scale,
                           plug_in=aug["plug_in"].float())
                if c.augment if augment is None else augment:
                    tau = aug["tau"].float()
            out["ate"] = tau
            if "y_scale" in batch:
                out["ate_original"] = tau * batch["y_scale"].float()
        if compute_loss:
            loss_balance = bal["loss"].mean()
            loss_sup = torch.zeros((), device=x.device)
            if c.supervised_weight > 0 and y is not None:
                loss_sup = self._supervised_loss(batch, tau, y.float(), context, att)
            loss_outcome = torch.zeros((), device=x.device)
            if c.outcome_weight > 0 and fit is not None and "y0" in batch and "y1" in batch:
                loss_outcome = self._outcome_loss(batch, fit, y.float(), context)
            loss_distill = torch.zeros((), device=x.device)
            if c.distill_weight > 0 and "alpha_star" in batch:
                target = batch["alpha_star"].float()
                has = torch.isfinite(target[:, 0])
                target = project_weights(torch.where(has.unsqueeze(1), target, torch.ones_like(target)), t, unit_mask, att)
                tv = 0.5 * torch.where(unit_mask, (weights - target).abs(), torch.zeros_like(target)).sum(-1)
                loss_distill = torch.where(has, tv, torch.zeros_like(tv)).sum() / has.sum().clamp_min(1)
            out.update(
                loss=c.balance_weight * loss_balance + c.supervised_weight * loss_sup + c.distill_weight * loss_distill
                + c.outcome_weight * loss_outcome,
                loss_balance=loss_balance,
                loss_supervised=loss_sup,
                loss_distill=loss_distill,
                loss_outcome=loss_outcome,
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

    def _outcome_loss(self, batch, fit, y, unit_mask) -> torch.Tensor:
        """Mean over datasets of the mean squared error of mu0, mu1 against the potential
        outcomes y0, y1 of every unit, over sd(y)^2 (both worlds are known for synthetic data)."""
        m = unit_mask.float()
        n = m.sum(-1).clamp_min(1.0)
        mean = (y * m).sum(-1) / n
        var = (((y - mean.unsqueeze(1)).square() * m).sum(-1) / n).clamp_min(1e-12)
        err = (fit["mu0"] - batch["y0"].float()).square() + (fit["mu1"] - batch["y1"].float()).square()
        return ((0.5 * err * m).sum(-1) / n / var).mean()

    def loss(self, batch: dict[str, torch.Tensor], **kwargs: Any) -> torch.Tensor:
        """Scalar training loss (self-supervised duality gap, plus the ZS-S term if configured)."""
        return self(batch, **kwargs)["loss"]

    # ----------------------------------------------------------------------------------------
    # zero-shot estimation (Algorithm 3) and model files: see cina.core.estimate / .checkpoint

    @torch.no_grad()
    def estimate(self, x, t, y=None, *, estimand: str = "ate", lam: float | None = None,
                 batch_size: int | None = None, compute_loss: bool = True,
                 feature_names=None, augment: bool | None = None, x_new=None) -> Estimate | list[Estimate]:
        """Zero-shot estimates for one dataset ((N, d) x, (N,) t and y) or lists of datasets, in
        batched forward passes: `cina.core.estimate.estimate_datasets`, which documents the
        arguments and the returned `Estimate` (``ate``, ``weights``, ``diagnostics`` with its
        ``warnings``; with an outcome head also ``se``, ``ci()``, ``cate``, and ``cate_new`` for
        the units of ``x_new``). ``augment=False`` gives the weights-only estimate."""
        return estimate_datasets(self, x, t, y, estimand=estimand, lam=lam, batch_size=batch_size,
                                 compute_loss=compute_loss, feature_names=feature_names, augment=augment,
                                 x_new=x_new)

    def save(self, path: str | Path) -> Path:
        """Write weights and config to a folder or a ``.safetensors`` file (`cina.core.checkpoint`;
        the weights file alone is enough for `load`). Returns the weights file."""
        return save_model(self.state_dict(), self.config.to_dict(), path)

    @classmethod
    def load(cls, path: str | Path, map_location: str | torch.device = "cpu") -> "CInA":
        """Load a model written by `save` (a directory or a ``.safetensors`` file), in eval mode.

        ``path`` may also name a model shipped with the package, ``"default"`` or ``"fast"``
        (`SHIPPED_MODELS`), unless a file or folder of that name exists.
        """
        config, state = read_model(path, map_location)  # checks the file (cina.core.checkpoint)
        where = weights_file(path)
        try:
            cfg = CInAConfig.from_dict(config)
        except (TypeError, ValueError) as exc:
            raise ModelFileError(f"{where}: bad config: {str(exc).splitlines()[0] if str(exc) else exc!r}") from None
        model = cls(cfg)
        check_state_keys(state, model.state_dict(), where)
        model.load_state_dict(state)
        return model.to(map_location).eval()
