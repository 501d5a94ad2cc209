"""The in-context outcome model: mu0(x) and mu1(x) for every unit of a dataset, cross-fitted.

A head of the CInA transformer reads a dataset's (x, t, y) and predicts both potential-outcome
means of every unit. It is a ridge regression, solved in closed form inside the forward pass,
on features the network learns:

    phi_i = [1, xs_i, MLP(LN(z_i))]          (B, N, F)   xs: standardised covariates (d_max
                                                          columns, zero-padded), z: the
                                                          treatment-blind encoder's units
    beta_a = (Phi_a^T Phi_a + lam_a P)^-1 Phi_a^T y_a     per dataset and arm a, on that arm's units
    mu_a(x_i) = phi_i . beta_a

so an untrained head is already a linear regression of y on x per arm, and training shapes the
learned features (and the penalty) on the corpus' potential outcomes y0, y1, which every
synthetic unit has. P is diagonal: 0 on the intercept, 1 elsewhere; lam_a = exp(log_lam_a) times
the arm's size n_a, with log_lam_a = c0_a + c1_a log n_a + c2_a log F_d (F_d the dataset's own
number of features) learned: a dataset with many covariates for its size needs more shrinkage
(measured: with one learned penalty for all datasets, the augmented estimate lost to the
weights-only one on realistic-preset tasks with d / N > 0.2, MAE/sd(y) 0.283 vs 0.197). The
penalty reads only the sizes, never y, so the leave-one-out property below holds exactly.

Cross-fitting. A unit's own outcome must not inform its own prediction, or the residuals
y_i - mu_{t_i}(x_i) of the doubly robust estimate are biased towards zero. For the other arm
this holds by construction (unit i is not among that arm's units). For its own arm the
prediction is the exact leave-one-out ridge prediction, from the same solve:

    mu_{-i} = (phi_i . beta - h_ii y_i) / (1 - h_ii),    h_ii = phi_i^T (Phi^T Phi + lam P)^-1 phi_i

(the standard identity for linear smoothers). This is K-fold cross-fitting with K = N, needs no
fold assignment (so the estimate stays invariant to the order of the units) and costs one
(F x F) solve per dataset and arm. Tested: perturbing y_i leaves every prediction at unit i
unchanged.

New units (CATE for units outside the dataset) use the full-data fit, beta_a on all of the
arm's units: their outcomes were never seen.

Penalty selection in context (`penalty_grid`, optional). The learned penalty formula is one
compromise over the whole prior; a dataset whose effects vary much more than the prior's (IHDP:
sd of the unit effects 6.8 against 3.4 predicted with the learned penalty) is over-shrunk. With a
grid of log multipliers g_1..g_G, each arm's regression is solved at every log_lam + g_k and
the one with the smallest leave-one-out mean squared error over the arm's units is kept (per
dataset and arm; the LOO errors come from the same hat-value identity, so this costs G solves
instead of one, on one Gram matrix). The choice reads the arm's outcomes, so a unit's own y can
now move its own prediction through the choice of one scalar among G, as tuning a learner's
penalty by cross-validation on the whole sample does in cross-fitted AIPW; between two choices
the prediction is exactly leave-one-out as above. Measured on the default model (grid -6, -4,
..., 4; retrained with it against the same recipe without): IHDP-100 replications 1-30
out-of-sample sqrt PEHE 4.43 -> 3.01, LaLonde ATT errors (PSID-1 / CPS-1) -$1,934 / -$1,875 ->
-$109 / -$649, validation MAE/sd(y) default prior 0.0704 -> 0.0705, realistic 0.117 -> 0.108,
semi-synthetic 0.093 -> 0.092 (`cina/assets/default_model/TRAINING.md`).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

__all__ = ["OutcomeHead", "ridge_fit", "ridge_moments", "ridge_solve", "ridge_predict", "loo_mse"]


def ridge_fit(phi: torch.Tensor, y: torch.Tensor, arm: torch.Tensor, log_lam: torch.Tensor
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per dataset: ridge regression of y on phi over the units of `arm`.

    phi: (B, N, F) features (column 0 the intercept, unpenalised); y: (B, N); arm: (B, N) bool
    units in the regression (padding excluded); log_lam: scalar or (B,) log penalty per unit.
    Returns (beta (B, F), inverse (B, F, F) of Phi^T Phi + lam P), in float64 (the solve is
    small and ill-conditioned when features nearly repeat).
    """
    return ridge_solve(*ridge_moments(phi, y, arm), log_lam)


def ridge_moments(phi: torch.Tensor, y: torch.Tensor, arm: torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The sufficient statistics of `ridge_fit`, shared by every penalty: Phi^T Phi (B, F, F),
    Phi^T y (B, F) over the arm's units, and the arm's size (B,), in float64."""
    p = phi.double() * arm.unsqueeze(-1)
    gram = p.transpose(1, 2) @ p
    xty = (p.transpose(1, 2) @ (y.double() * arm).unsqueeze(-1)).squeeze(-1)
    return gram, xty, arm.sum(-1).clamp_min(1).double()


def ridge_solve(gram: torch.Tensor, xty: torch.Tensor, n_arm: torch.Tensor, log_lam: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """(beta (B, F), inverse (B, F, F)) from `ridge_moments` at log penalty per unit `log_lam`
    (scalar or (B,))."""
    B, F, _ = gram.shape
    lam = torch.exp(torch.as_tensor(log_lam, dtype=torch.float64, device=gram.device)).expand(B) * n_arm
    penalty = torch.ones(F, dtype=torch.float64, device=gram.device)
    penalty[0] = 1e-8  # the intercept: (almost) free, but keeps the system definite for one unit
    inv = torch.linalg.inv(gram + lam.view(B, 1, 1) * torch.diag(penalty))
    return (inv @ xty.unsqueeze(-1)).squeeze(-1), inv


def ridge_predict(phi: torch.Tensor, beta: torch.Tensor, inv: torch.Tensor, y: torch.Tensor,
                  own: torch.Tensor) -> torch.Tensor:
    """(B, N) predictions phi . beta, leave-one-out for the units in `own` (B, N) bool (the
    units the fit used): (phi_i . beta - h_ii y_i) / (1 - h_ii)."""
    phi64 = phi.double()
    fit = (phi64 @ beta.unsqueeze(-1)).squeeze(-1)
    h = torch.einsum("bnf,bfg,bng->bn", phi64, inv, phi64)
    # h_ii < 1 for a positive penalty; the clamp only guards rounding
    loo = (fit - h * y.double()) / (1.0 - h).clamp_min(1e-6)
    return torch.where(own, loo, fit)


def loo_mse(phi: torch.Tensor, beta: torch.Tensor, inv: torch.Tensor, y: torch.Tensor, arm: torch.Tensor
            ) -> torch.Tensor:
    """(B,) mean squared leave-one-out error of the fit over the units of `arm`."""
    err = (ridge_predict(phi, beta, inv, y, arm) - y.double()) * arm
    return (err**2).sum(-1) / arm.sum(-1).clamp_min(1)


class OutcomeHead(nn.Module):
    """Cross-fitted potential-outcome means from the encoder's units (see the module docstring).

    Args:
        d_model: width of the encoder's unit representations z.
        n_features: learned features F' (F = 1 + max_features + F').
        log_lam: initial log penalty per unit (learned).
        penalty_grid: log multipliers of the learned penalty among which each arm's penalty is
            chosen by leave-one-out error (see the module docstring); () = the learned one.
    """

    def __init__(self, d_model: int, n_features: int = 32, log_lam: float = math.log(1e-2),
                 penalty_grid: tuple[float, ...] = ()):
        super().__init__()
        self.penalty_grid = tuple(float(g) for g in penalty_grid)
        self.norm = nn.LayerNorm(d_model)
        self.features = nn.Sequential(nn.Linear(d_model, d_model), nn.SiLU(), nn.Linear(d_model, n_features))
        # per arm (control, treated): log_lam = c0 + c1 log n_arm + c2 log F_d, from a fixed start
        # (a flat vector: no weight decay, which the training loop applies to matrices only)
        self.penalty = nn.Parameter(torch.tensor([log_lam, 0.0, 0.0, log_lam, 0.0, 0.0]))

    def log_lam(self, arm: torch.Tensor, n_features: torch.Tensor, a: int) -> torch.Tensor:
        """(B,) log penalty per unit of arm `a` for each dataset: from the arm's size (B,) and the
        dataset's feature count (B,) only."""
        c = self.penalty[3 * a : 3 * a + 3]
        n = arm.sum(-1).clamp_min(1).to(c.dtype)
        return c[0] + c[1] * torch.log(n) + c[2] * torch.log(n_features.to(c.dtype).clamp_min(1))

    def phi(self, z: torch.Tensor, xs: torch.Tensor, unit_mask: torch.Tensor) -> torch.Tensor:
        """(B, N, F) features: intercept, standardised covariates, learned features (0 on padding)."""
        learned = self.features(self.norm(z)).float()
        ones = torch.ones_like(learned[..., :1])
        phi = torch.cat([ones, xs.float(), learned], dim=-1)
        return torch.where(unit_mask.unsqueeze(-1), phi, torch.zeros_like(phi))

    def forward(self, z: torch.Tensor, xs: torch.Tensor, t: torch.Tensor, y: torch.Tensor, context: torch.Tensor,
                unit_mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """mu0, mu1 (B, N) for every unit, in y's units: the dataset's own units (`context`)
        leave-one-out in their own arm, any other unit of `unit_mask` (new units) from the fit
        on the whole dataset.

        z: (B, N, C) encoder units; xs: (B, N, w) standardised covariates; t: (B, N) 0/1; y:
        (B, N) outcomes (read on context units only); context: (B, N) bool the dataset's units;
        unit_mask: (B, N) bool every unit to predict (default: context). Also returns beta_x
        (B, 2, w), the regressions' coefficients on the covariates (control, treated): which
        covariates the outcome depends on.
        """
        unit_mask = context if unit_mask is None else unit_mask
        phi = self.phi(z, xs, unit_mask)
        # the dataset's own features: intercept, its valid covariate columns, the learned ones
        n_features = 1 + (xs.abs().sum(1) > 0).sum(-1) + (phi.shape[-1] - 1 - xs.shape[-1])
        y = torch.where(context, y, torch.zeros_like(y))
        treated = (t > 0.5) & context
        control = (t <= 0.5) & context
        out: dict[str, torch.Tensor] = {}
        betas = []
        log_lams = []
        for a, arm in ((0, control), (1, treated)):
            beta, inv, log_lam = self._fit_arm(phi, y, arm, self.log_lam(arm, n_features, a))
            pred = ridge_predict(phi, beta, inv, y, arm).float()
            out[f"mu{a}"] = torch.where(unit_mask, pred, torch.zeros_like(pred))
            betas.append(beta[:, 1 : 1 + xs.shape[-1]])
            log_lams.append(log_lam)
        out["beta_x"] = torch.stack(betas, dim=1).float()
        out["log_lam"] = torch.stack(log_lams, dim=1).detach()
        return out

    def _fit_arm(self, phi: torch.Tensor, y: torch.Tensor, arm: torch.Tensor, log_lam: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(beta (B, F), inverse (B, F, F), log penalty (B,)) of one arm's regression: at the
        learned penalty, or at the grid point with the smallest leave-one-out error."""
        moments = ridge_moments(phi, y, arm)
        log_lam = log_lam.double().expand(phi.shape[0])
        if not self.penalty_grid:
            return *ridge_solve(*moments, log_lam), log_lam
        grid = torch.tensor(self.penalty_grid, dtype=torch.float64, device=phi.device)
        fits = [ridge_solve(*moments, log_lam + g) for g in grid]
        errors = torch.stack([loo_mse(phi, beta, inv, y, arm) for beta, inv in fits], 1)  # (B, G)
        best = errors.argmin(1)  # the first of equal errors, like a strict < scan
        rows = torch.arange(phi.shape[0], device=phi.device)
        beta = torch.stack([beta for beta, _ in fits], 1)[rows, best]
        inv = torch.stack([inv for _, inv in fits], 1)[rows, best]
        return beta, inv, log_lam + grid[best]
