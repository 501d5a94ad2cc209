"""Algorithm 1: CInA on a single dataset.

Two balancing problems (``balancing=``, as in `cina.CInA`):

* ``"target"`` (default): each arm is weighted towards the target sample (ATE: all units;
  ATT: the treated), `cina.core.target_balancing`, by the same unrolled attention steps the zero-shot
  model uses: 30 accelerated gradient steps from uniform weights (``max_solver_steps``; fewer if
  no weight moves by more than ``target_tol``). This is the estimand-correct version of the ATE
  (see that module). Stopping early is a regulariser (towards the uniform weights of the
  difference in means) and was chosen on the validation splits, MAE/sd(y) after 10 / 20 / 30 /
  50 / 100 / 300 steps and at convergence: 0.078 / 0.077 / 0.079 / 0.080 / 0.084 / 0.085 / 0.086
  on 60 default-preset tasks, 0.085 / 0.072 / 0.070 / 0.069 / 0.070 / 0.073 / 0.073 on 40
  er5000-nonlinear tasks; 30 ties with 20 and 50 and matches the zero-shot model's layers.
  ``max_solver_steps=5000`` solves to convergence.
* ``"svm"``: the paper's problem, the SVM dual of Tarr & Imai on the attention kernel, below.

Fit the balancing attention of `cina.core.balancing` to one dataset (x, t) by minimising its penalised
hinge loss, then read the balancing weights out of the attention values. Outcomes are not used.

Two stages (both minimise the same loss):

1. *Gradient stage* (the paper's Algorithm 1; runs when ``learn_keys=True`` or
   ``polish=False``): Adam on the tied key map ``k = norm(x W_k^T)``
   together with the weights ``alpha = sigmoid(logits)`` (the attention values in disguise,
   ``V = w alpha / (lam h)``); the intercept is solved exactly at every step. This is what learns
   the kernel. A subgradient method on a hinge loss only gets the weights to ~1e-2, though.
2. *Polish* (``polish=True``): with the keys from stage 1 frozen the loss is convex in (V, b), and
   by the duality of `cina.core.balancing` its minimiser is the SVM dual solution on the attention
   kernel. We solve that dual to ``tol`` with SMO (the libsvm algorithm: maximal-violating pair,
   second-order working-set selection) and check the certificate: the attention-form primal loss
   at the read-out weights equals the dual objective (``duality_gap_``).

The penalty: ``lam`` is per unit by default (``lam_scaling="size"``: the SVM is solved with
lambda = lam / N, i.e. sklearn's ``C = N / lam``). The attention kernel has entries ~1/N^2 and the
hinge sum grows like N, so with lambda = lam / N the fraction of units kept and the balance reached
do not drift with N (see `cina.core.model`). ``lam_scaling="none"`` uses lambda = lam literally
(``C = 1 / lam``). Default lam = 1e-3, chosen on ATE error over lam in {1e-4, ..., 0.1}: MAE/sd(y)
on 53 default-preset tasks 0.125 (best 0.112 at 3e-4; 0.163 at 1e-2; naive 0.361), on 30
Setoguchi-G tasks 0.044 (best 0.039 at 3e-3; 0.131 at 0.1; naive 0.194).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .balancing import balancing_loss
from .checks import dataset_warnings, informative_columns, scaled_columns, weighting_warnings
from .estimate import Estimate
from .inputs import check_dataset
from .kernel import covariate_keys, dense_kernel, normalize_keys, standardize_covariates
from .target_balancing import KERNEL_FORMS, gaussian_keys, solve_target_balance
from .weights import ESTIMANDS, att_flags, balance_diagnostics, project_weights, weighted_effect

__all__ = ["SingleDatasetCInA", "fit_single", "solve_balancing_svm", "DEFAULT_LAM"]

#: Default per-unit penalty lam (lambda = lam / N); see `cina.core.model` docs for the measurement.
DEFAULT_LAM = 1e-3
#: Target balancing's defaults (lam per unit, kernel score scale), chosen on validation splits
#: (see `cina.core.model`).
TARGET_LAM, TARGET_SCORE_SCALE = 3e-4, 0.36
#: target balancing with the Gaussian kernel form: (lam, score_scale), chosen on the same
#: validation splits (see ``kernel_form`` of `SingleDatasetCInA`)
GAUSSIAN_LAM, GAUSSIAN_SCORE_SCALE = 1e-4, 1.0
_TAU = 1e-12  # libsvm's floor on the curvature of a working pair


def _smo(Q: np.ndarray, y: np.ndarray, C: np.ndarray, tol: float, max_iter: int) -> tuple[np.ndarray, float, int]:
    """libsvm's SMO for ``min 0.5 a^T Q a - 1^T a`` s.t. ``0 <= a <= C``, ``y^T a = 0``.

    Q includes the labels (Q_ij = y_i y_j K_ij / lam). Working pairs: maximal violating i and the
    second-order choice of j (Fan, Chen & Lin 2005). Returns alpha, intercept b and iterations.
    """
    n = len(y)
    QD = np.diag(Q).copy()
    alpha = np.zeros(n)
    G = -np.ones(n)  # gradient Q a - 1
    it = 0
    for it in range(max_iter):
        up = ((y > 0) & (alpha < C)) | ((y < 0) & (alpha > 0.0))
        low = ((y > 0) & (alpha > 0.0)) | ((y < 0) & (alpha < C))
        myg = -y * G
        cand = np.where(up, myg, -np.inf)
        i = int(np.argmax(cand))
        m_up = cand[i]
        if m_up - np.min(np.where(low, myg, np.inf)) < tol:
            break
        gap = m_up - myg
        curv = np.maximum(QD[i] + QD - 2.0 * y[i] * y * Q[i], _TAU)
        j = int(np.argmin(np.where(low & (gap > 0), -(gap * gap) / curv, np.inf)))
        ai, aj, Ci, Cj = alpha[i], alpha[j], C[i], C[j]
        if y[i] != y[j]:
            delta = (-G[i] - G[j]) / max(QD[i] + QD[j] + 2.0 * Q[i, j], _TAU)
            diff = ai - aj
            ni, nj = ai + delta, aj + delta
            if diff > 0:
                if nj < 0:
                    nj, ni = 0.0, diff
            elif ni < 0:
                ni, nj = 0.0, -diff
            if diff > Ci - Cj:
                if ni > Ci:
                    ni, nj = Ci, Ci - diff
            elif nj > Cj:
                nj, ni = Cj, Cj + diff
        else:
            delta = (G[i] - G[j]) / max(QD[i] + QD[j] - 2.0 * Q[i, j], _TAU)
            total = ai + aj
            ni, nj = ai - delta, aj + delta
            if total > Ci:
                if ni > Ci:
                    ni, nj = Ci, total - Ci
            elif nj < 0:
                nj, ni = 0.0, total
            if total > Cj:
                if nj > Cj:
                    nj, ni = Cj, total - Cj
            elif ni < 0:
                ni, nj = 0.0, total
        G += Q[i] * (ni - ai) + Q[j] * (nj - aj)
        alpha[i], alpha[j] = ni, nj
    # Intercept from the free vectors (libsvm's rho), else the middle of the feasible interval.
    myg = -y * G
    free = (alpha > 1e-12 * C) & (alpha < C * (1 - 1e-12))
    if free.any():
        b = float(np.mean(myg[free]))
    else:
        up = ((y > 0) & (alpha < C)) | ((y < 0) & (alpha > 0.0))
        low = ((y > 0) & (alpha > 0.0)) | ((y < 0) & (alpha < C))
        b = 0.5 * (np.max(myg[up]) + np.min(myg[low]))
    return np.clip(alpha, 0.0, C), b, it + 1


def solve_balancing_svm(
    kernel: np.ndarray,
    t: np.ndarray,
    lam: float,
    estimand: str = "ate",
    tol: float = 1e-9,
    max_iter: int | None = None,
) -> tuple[np.ndarray, float, int]:
    """Exact SVM dual of the balancing problem on a precomputed kernel.

    ATE: ``max_alpha 1^T alpha - alpha^T K_w alpha / (2 lam)`` s.t. ``0 <= alpha <= 1`` and
    ``sum_i w_i alpha_i = 0`` -- sklearn's ``SVC(kernel="precomputed", C=1/lam)`` with
    ``alpha = lam * |dual_coef_|``. Solved by SMO (the algorithm inside libsvm).

    ATT: the same with the treated weights constrained equal, ``alpha_T = a * 1``. The treated arm
    then acts as one unit with feature mean_T phi (kernel entries averaged over the treated) and
    box [0, N_T]; that reduced ATE problem is solved by the same SMO.

    Args:
        kernel: (N, N) PSD kernel (float64 recommended). t: (N,) 0/1. lam: absolute penalty.
        tol: stopping tolerance on the maximal KKT violation.

    Returns:
        alpha (N,), intercept b (decision function ``(1/lam) K (w alpha) + b``), iterations.
    """
    K = np.asarray(kernel, dtype=np.float64)
    t = np.asarray(t, dtype=np.float64)
    n = t.shape[0]
    max_iter = max_iter or max(100_000, 100 * n)
    if estimand == "ate":
        w = 2.0 * t - 1.0
        return _smo(np.outer(w, w) * K / lam, w, np.ones(n), tol, max_iter)
    if estimand != "att":
        raise ValueError(f"estimand must be one of {ESTIMANDS}, got {estimand!r}")
    tr, co = t > 0.5, t <= 0.5
    n_t = int(tr.sum())
    k_ss = K[np.ix_(tr, tr)].mean()
    k_sc = K[np.ix_(tr, co)].mean(0)
    Kr = np.block([[np.array([[k_ss]]), k_sc[None, :]], [k_sc[:, None], K[np.ix_(co, co)]]])
    yr = np.r_[1.0, -np.ones(int(co.sum()))]
    ar, b, it = _smo(np.outer(yr, yr) * Kr / lam, yr, np.r_[float(n_t), np.ones(int(co.sum()))], tol, max_iter)
    alpha = np.zeros(n)
    alpha[tr] = ar[0] / n_t
    alpha[co] = ar[1:]
    return alpha, b, it


class SingleDatasetCInA:
    """Per-dataset CInA (Algorithm 1) with a scikit-learn-like interface.

    Args:
        lam: penalty; per unit (lambda = lam / N) unless ``lam_scaling="none"``. Default:
            3e-4 for "target" with the attention kernel, 1e-4 with the Gaussian kernel, 1e-3
            for "svm".
        estimand: "ate" or "att".
        balancing: "target" (default) or "svm" (see the module docstring).
        kernel_form: "attention" (default, the zero-shot model's kernel) or "gaussian"
            (``exp(-|x_i - x_j|^2 / (2 d))`` on standardised x, the usual kernel-balancing
            kernel), the kernel of target balancing (`cina.core.target_balancing.KernelOperator`);
            "svm" always uses the attention kernel. Measured, converged, MAE/sd(y): the Gaussian
            form (lam 1e-4, chosen on validation splits from a 3 x 4 grid) was better on the
            validation splits (default preset 0.079 vs 0.090 on 60 tasks, er5000-nonlinear 0.070
            vs 0.074 on 40) but not on the held-out test splits (MAE in units of y: 0.104 vs
            0.104 on 100 default-preset tasks, 0.080 vs 0.068 on 20 er5000 tasks), so it is not
            the default.
        score_scale: multiplies the kernel scores, i.e. the squared distances of the Gaussian
            form (default 0.36 for "attention", 1.0 for "gaussian", 1 for "svm").
        max_solver_steps: unrolled target-balancing steps (default 30, early stopping chosen on
            validation error, see the module docstring; 5000 solves to convergence).
        target_tol: stop earlier once no weight moves by more than this in a step.
        landmarks: Nystrom rank of the kernel above 2 x landmarks units (None: exact kernel).
        lam_scaling: "size" (default) or "none".
        key_dim: D of the tied keys (default: number of features). The key map starts at the
            identity on standardised x (or a random orthogonal map when D != d).
        learn_keys: learn the key map by gradient descent on the loss, jointly with the values
            (the paper's Algorithm 1). Default False: the kernel is the attention kernel of the
            standardised covariates, ``s_ij = x_i . x_j / sqrt(d)``, and the loss is minimised
            exactly. Measured at lam = 1e-3, learning the keys made the ATE worse (MAE/sd(y)
            0.068 vs 0.030 on 20 Setoguchi-G tasks, 0.103 vs 0.091 on 26 default-preset tasks):
            minimising the loss over the kernel favours kernels that separate the arms.
        max_iter: Adam steps of the gradient stage.
        lr: Adam learning rate.
        polish: solve the convex (V, b) problem exactly once the keys are fixed.
        objective: gradient-stage objective, "gap" (default) or "primal" (see
            `cina.core.balancing.balancing_loss`; the keys follow the primal either way).
        tol: KKT tolerance of the polish.
        random_state: seed for the initial key map when ``key_dim != d``.

    Attributes (after `fit`):
        weights_ (N,): per-arm normalised weights. alpha_ (N,): raw SVM weights in [0, 1].
        keys_ (N, D): the tied keys used (D counts the non-constant columns: constant ones,
        ``sd <= 1e-7 max|x|``, are left out). intercept_: b. lam_: absolute lambda.
        warnings_: `cina.core.checks.dataset_warnings` of x and t (`estimate` adds the weighting's).
        loss_: attention-form loss / N at the solution. dual_objective_: SVM dual objective / N.
        duality_gap_: loss_ - dual_objective_ (>= 0; ~0 certifies the optimum).
        loss_curve_: gradient-stage losses. n_iter_: gradient steps. solver_iter_: SMO iterations.
    """

    def __init__(
        self,
        lam: float | None = None,
        *,
        estimand: str = "ate",
        balancing: str = "target",
        kernel_form: str = "attention",
        score_scale: float | None = None,
        target_tol: float = 1e-4,
        max_solver_steps: int = 30,
        landmarks: int | None = 512,
        lam_scaling: str = "size",
        key_dim: int | None = None,
        learn_keys: bool = False,
        max_iter: int = 200,
        lr: float = 0.05,
        polish: bool = True,
        objective: str = "gap",
        tol: float = 1e-9,
        random_state: int = 0,
    ):
        self.lam = lam
        self.estimand = estimand
        self.balancing = balancing
        self.kernel_form = kernel_form
        self.score_scale = score_scale
        self.target_tol = target_tol
        self.max_solver_steps = max_solver_steps
        self.landmarks = landmarks
        self.lam_scaling = lam_scaling
        self.key_dim = key_dim
        self.learn_keys = learn_keys
        self.max_iter = max_iter
        self.lr = lr
        self.polish = polish
        self.objective = objective
        self.tol = tol
        self.random_state = random_state

    def _check_params(self) -> None:
        if self.balancing not in ("target", "svm"):
            raise ValueError(f"balancing must be 'target' or 'svm', got {self.balancing!r}")
        if self.kernel_form not in KERNEL_FORMS:
            raise ValueError(f"kernel_form must be one of {KERNEL_FORMS}, got {self.kernel_form!r}")
        if self.balancing == "svm" and self.kernel_form != "attention":
            raise ValueError("kernel_form='gaussian' needs balancing='target' (the SVM layer uses the attention kernel)")
        if self.balancing == "target" and self.learn_keys:
            raise ValueError("learn_keys=True needs balancing='svm' (the paper's kernel learning)")
        if self.score_scale is not None and not (isinstance(self.score_scale, (int, float)) and 0 < self.score_scale < math.inf):
            raise ValueError(f"score_scale must be positive and finite, got {self.score_scale!r}")
        if not (isinstance(self.target_tol, (int, float)) and self.target_tol > 0):
            raise ValueError(f"target_tol must be positive, got {self.target_tol!r}")
        if isinstance(self.max_solver_steps, bool) or not isinstance(self.max_solver_steps, int) or self.max_solver_steps < 1:
            raise ValueError(f"max_solver_steps must be a positive integer, got {self.max_solver_steps!r}")
        if self.lam is not None and not (isinstance(self.lam, (int, float)) and self.lam > 0 and math.isfinite(self.lam)):
            raise ValueError(f"lam must be a positive finite number, got {self.lam!r}")
        if self.estimand not in ESTIMANDS:
            raise ValueError(f"estimand must be one of {ESTIMANDS}, got {self.estimand!r}")
        if self.lam_scaling not in ("size", "none"):
            raise ValueError(f"lam_scaling must be 'size' or 'none', got {self.lam_scaling!r}")
        if self.key_dim is not None and int(self.key_dim) < 1:
            raise ValueError(f"key_dim must be >= 1, got {self.key_dim!r}")
        if int(self.max_iter) < 0:
            raise ValueError(f"max_iter must be >= 0, got {self.max_iter!r}")

    def fit(self, x, t) -> "SingleDatasetCInA":
        """Fit the weights on covariates x (N, d) and binary treatment t (N,)."""
        self._check_params()
        x, t, _ = check_dataset(x, t)
        # constant columns (sd <= 1e-7 max|x|) are left out and reported (cina.core.checks)
        self._x, self._t = x, t
        x = x[:, informative_columns(x)]  # raises when every column is constant
        self.warnings_ = dataset_warnings(self._x, t)
        n, d = x.shape
        gaussian = self.balancing == "target" and self.kernel_form == "gaussian"
        default_lam, default_scale = ((GAUSSIAN_LAM, GAUSSIAN_SCORE_SCALE) if gaussian else
                                      (TARGET_LAM, TARGET_SCORE_SCALE) if self.balancing == "target" else (DEFAULT_LAM, 1.0))
        lam = self.lam if self.lam is not None else default_lam
        scale = self.score_scale if self.score_scale is not None else default_scale
        self.lam_ = lam / n if self.lam_scaling == "size" else float(lam)
        if self.balancing == "target":
            return self._fit_target(x, t, scale)
        xs = scaled_columns(x)  # scale-free: no unit of x under- or overflows
        xs = (xs - xs.mean(0)) / xs.std(0)

        D = int(self.key_dim or d)
        if D == d:
            w0 = np.eye(d)
        else:  # random orthogonal rows/columns: no direction of x is favoured a priori
            rng = np.random.default_rng(self.random_state)
            q, _ = np.linalg.qr(rng.standard_normal((max(D, d), max(D, d))))
            w0 = q[:D, :d]
        dt = torch.float64
        X = torch.as_tensor(xs, dtype=dt)[None]
        T = torch.as_tensor(t, dtype=dt)[None]
        M = torch.ones(1, n, dtype=torch.bool)
        Wk = torch.tensor(w0, dtype=dt, requires_grad=self.learn_keys)
        logits = torch.zeros(1, n, dtype=dt, requires_grad=True)

        def keys_of(wk):
            return normalize_keys(X @ wk.T, M) * math.sqrt(scale)

        self.loss_curve_ = []
        steps = int(self.max_iter) if (self.learn_keys or not self.polish) else 0
        if steps:
            params = [logits] + ([Wk] if self.learn_keys else [])
            opt = torch.optim.Adam(params, lr=self.lr)
            for _ in range(steps):
                opt.zero_grad(set_to_none=True)
                loss = balancing_loss(
                    keys_of(Wk), torch.sigmoid(logits), T, M, self.lam_, self.estimand, objective=self.objective
                )["loss"].sum()
                loss.backward()
                opt.step()
                self.loss_curve_.append(loss.item())
        self.n_iter_ = steps

        with torch.no_grad():
            keys = keys_of(Wk)
            if self.polish:
                K = dense_kernel(keys, M)[0].numpy()
                alpha, _, self.solver_iter_ = solve_balancing_svm(K, t, self.lam_, self.estimand, self.tol)
                alpha_t = torch.as_tensor(alpha, dtype=dt)[None]
            else:
                alpha_t = torch.sigmoid(logits)
                self.solver_iter_ = 0
            parts = balancing_loss(keys, alpha_t, T, M, self.lam_, self.estimand)
            alpha_t = parts["alpha"]  # dual-feasible (arms of equal mass for the ATE)
            self.keys_ = keys[0].numpy()
            self.alpha_ = alpha_t[0].numpy()
            self.intercept_ = float(parts["intercept"][0])
            self.loss_ = float(parts["primal"][0])
            self.dual_objective_ = float(parts["dual"][0])
            self.duality_gap_ = float(parts["gap"][0])
            self.weights_ = project_weights(alpha_t, T, M, self.estimand)[0].numpy()
        self.estimand_ = self.estimand
        return self

    def _fit_target(self, x: np.ndarray, t: np.ndarray, scale: float) -> "SingleDatasetCInA":
        n, d = x.shape
        X = torch.as_tensor(x, dtype=torch.float64)[None]
        T = torch.as_tensor(t, dtype=torch.float64)[None]
        M = torch.ones(1, n, dtype=torch.bool)
        F = torch.ones(1, d, dtype=torch.bool)
        xs = standardize_covariates(X, M, F)
        keys = gaussian_keys(xs, F) if self.kernel_form == "gaussian" else covariate_keys(xs, M, F).double()
        keys = keys * math.sqrt(scale)
        sol = solve_target_balance(keys, T, M, self.lam_, att_flags(self.estimand, 1, keys.device),
                                   steps=int(self.max_solver_steps), tol=self.target_tol, landmarks=self.landmarks,
                                   form=self.kernel_form)
        self.keys_ = keys[0].numpy()
        self.alpha_ = sol["alpha"][0].numpy()
        self.weights_ = project_weights(sol["alpha"], T, M, self.estimand)[0].numpy()
        self.loss_ = float(sol["objective"][0])
        self.dual_objective_ = float("nan")
        self.duality_gap_ = float("nan")
        self.intercept_ = float("nan")
        self.step_change_ = float(sol["step_change"][0])
        self.loss_curve_ = []
        self.n_iter_ = 0
        self.solver_iter_ = int(sol["steps"])
        self.estimand_ = self.estimand
        return self

    def estimate(self, y) -> Estimate:
        """ATE (or ATT) of outcome y (N,) with the fitted weights, plus balance diagnostics."""
        if not hasattr(self, "weights_"):
            raise RuntimeError("call fit(x, t) before estimate(y)")
        _, _, y = check_dataset(self._x, self._t, y)
        X = torch.as_tensor(self._x)[None]
        T = torch.as_tensor(self._t)[None]
        W = torch.as_tensor(self.weights_)[None]
        M = torch.ones_like(T, dtype=torch.bool)
        ate = float(weighted_effect(W, T, torch.as_tensor(y)[None], M)[0])
        diag = {k: v[0].numpy() for k, v in balance_diagnostics(X, T, W, M).items()}
        diag = {k: (float(v) if v.ndim == 0 else v) for k, v in diag.items()}
        diag.update(
            max_abs_smd_before=float(np.abs(diag["smd_before"]).max()),
            max_abs_smd_after=float(np.abs(diag["smd_after"]).max()),
            n_treated=int(self._t.sum()),
            n_control=int((1 - self._t).sum()),
            lam=float(self.lam_ * len(self._t)) if self.lam_scaling == "size" else float(self.lam_),
            balancing_loss=self.loss_,
            duality_gap=self.duality_gap_,
        )
        diag["warnings"] = self.warnings_ + weighting_warnings(diag["ess_treated"], diag["ess_control"],
                                                               diag["n_treated"], diag["n_control"])
        return Estimate(ate=ate, weights=self.weights_.copy(), diagnostics=diag, estimand=self.estimand_)


def fit_single(x, t, lam: float | None = None, **kwargs) -> np.ndarray:
    """Algorithm 1 in one call: per-arm normalised balancing weights (N,) for one dataset.

    ``x`` (N, d) and ``t`` (N,) are numpy arrays (or array-likes); keyword arguments are those of
    `SingleDatasetCInA`. The estimate is then ``w[t==1] @ y[t==1] - w[t==0] @ y[t==0]``.
    """
    return SingleDatasetCInA(lam, **kwargs).fit(x, t).weights_
