"""Per-dataset baseline estimators of the ATE / ATT, for comparison with CInA.

Each estimator is a small class with its hyper-parameters in ``__init__`` and one method,
``estimate(x, t, y, estimand=None) -> BaselineResult``:

    >>> from cina.eval.baselines import AIPW
    >>> res = AIPW(n_folds=5).estimate(x, t, y, estimand="att")
    >>> res.estimate, res.se, res.seconds

Inputs (every estimator): ``x`` (N, d) covariates, ``t`` (N,) binary 0/1 treatment, ``y`` (N,)
outcome, all array-likes converted to float64. Estimates are in the units of ``y``.

Estimands:

* ``"ate"``: E[Y(1) - Y(0)] over all N units.
* ``"att"``: E[Y(1) - Y(0) | T = 1], the effect on the treated (e.g. LaLonde's experimental $1794).

Estimators (registry names in `BASELINES`):

========== ==================================================================================
``dim``    difference in means (same number for both estimands; analytic Welch SE).
``ipw``    inverse propensity weighting, Horvitz-Thompson form, logistic propensity.
``snipw``  self-normalised (Hajek) IPW: the IPW weights renormalised to sum to one per arm.
``or``     outcome regression, T-learner (one model per arm) with linear least squares.
``or-boost`` T-learner with `HistGradientBoostingRegressor` per arm.
``aipw``   cross-fitted AIPW = DML for the ATE/ATT in the interactive model (Chernozhukov et al.
           2018, §5.1), early-stopped gradient-boosting nuisances, K = 5 stratified folds.
``svm``    SVM optimal balancing (Tarr & Imai 2021): normalised SVM dual weights, RBF kernel.
``doubleml`` the same cross-fitted DML through DoubleML's `DoubleMLIRM` (the field's reference
           implementation; optional package ``doubleml``) with our AIPW's learners and folds.
========== ==================================================================================

Intervals and CATE: every estimator with an analytic ``se`` gives the normal-approximation
interval `BaselineResult.ci`. Estimators with outcome models (``or``, ``or-boost``, ``aipw``,
``doubleml``; `CATE_BASELINES`) give unit effects ``BaselineResult.cate = mu1 - mu0`` (out of
fold for the cross-fitted ones) and, for new units passed as ``estimate(..., x_new=X)``,
``BaselineResult.cate_new``: the arm models' predictions (averaged over the K fold models for
the cross-fitted ones). Asking another estimator for ``x_new`` raises a ValueError.

Propensity clipping: every estimator that divides by a fitted propensity clips it into
``[clip, 1 - clip]`` (default ``clip = 0.01``) before use; the clipped values are what
``BaselineResult.propensity`` holds.

scikit-learn is an optional dependency (the ``baselines`` extra): it is imported inside the
functions that need it, so ``import cina.eval.baselines`` and the difference in means work without
it; the others raise an ImportError naming the extra. So is DoubleML (also in the extra): only
``doubleml`` imports it, when it runs; `doubleml_available` says whether it can.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

__all__ = [
    "ESTIMANDS",
    "BaselineResult",
    "DifferenceInMeans",
    "IPW",
    "OutcomeRegression",
    "AIPW",
    "SVMBalancing",
    "DoubleMLIRM",
    "BASELINES",
    "CATE_BASELINES",
    "doubleml_available",
    "make_baseline",
    "run_baseline",
    "bootstrap_se",
    "logistic_propensity",
    "svm_balancing_weights",
    "att_balancing_weights",
]

ESTIMANDS = ("ate", "att")
EXTRA_HINT = "install the optional extra: pip install 'causalgen[baselines]' (or: pip install scikit-learn)"


DOUBLEML_HINT = "install it: pip install doubleml (or the optional extra: pip install 'causalgen[baselines]')"


def doubleml_available() -> bool:
    """Whether the optional DoubleML package can be imported (the ``doubleml`` baseline needs it)."""
    import importlib.util

    return importlib.util.find_spec("doubleml") is not None


def _sklearn(what: str):
    """Import scikit-learn lazily, with an error that names the extra."""
    try:
        import sklearn  # noqa: F401
    except ImportError as err:  # pragma: no cover - exercised by monkeypatching in the tests
        raise ImportError(f"{what} needs scikit-learn, which is not installed; {EXTRA_HINT}") from err
    return sklearn


# --------------------------------------------------------------------------------------------
# result record and input checks


@dataclass
class BaselineResult:
    """One estimate.

    Attributes:
        method: registry-style name of the estimator (e.g. ``"aipw"``).
        estimand: ``"ate"`` or ``"att"``.
        estimate: the point estimate, in the units of y (``ate`` is an alias, as in
            `cina.core.balancing.Estimate`, even when the estimand is the ATT).
        se: standard error where the estimator has an analytic one (influence-function /
            Welch), else NaN (use `bootstrap_se`).
        seconds: wall-clock seconds of the whole estimate, nuisance fitting included.
        weights: (N,) unit weights with ``estimate == sum_T w y - sum_C w y`` for weighting
            estimators (dim, ipw, snipw, svm), else None. Per-arm normalised (each arm sums
            to one) except Horvitz-Thompson IPW.
        propensity: (N,) fitted (clipped) P(T=1 | x) where one was fitted, else None.
        mu0, mu1: (N,) fitted E[Y | x, T=0/1] (out-of-fold for AIPW), else None.
        cate_new: (M,) predicted mu1 - mu0 of the new units given as ``x_new``, else None.
        info: small dict of diagnostics (parameters, effective sample sizes, subsampling...).
    """

    method: str
    estimand: str
    estimate: float
    se: float = math.nan
    seconds: float = 0.0
    weights: np.ndarray | None = None
    propensity: np.ndarray | None = None
    mu0: np.ndarray | None = None
    mu1: np.ndarray | None = None
    cate_new: np.ndarray | None = None
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def ate(self) -> float:
        return self.estimate

    @property
    def cate(self) -> np.ndarray | None:
        """(N,) unit effects ``mu1 - mu0`` of the dataset's units, where both were fitted, else None."""
        if self.mu0 is None or self.mu1 is None:
            return None
        return self.mu1 - self.mu0

    def ci(self, level: float = 0.95) -> tuple[float, float]:
        """Normal-approximation interval ``estimate +- z se`` at ``level`` ((NaN, NaN) without se)."""
        if not 0 < level < 1:
            raise ValueError(f"level must be in (0, 1), got {level!r}")
        from statistics import NormalDist

        z = NormalDist().inv_cdf(0.5 + level / 2)
        return (self.estimate - z * self.se, self.estimate + z * self.se)


def _check_estimand(estimand: str) -> str:
    if estimand not in ESTIMANDS:
        raise ValueError(f"estimand must be one of {ESTIMANDS}, got {estimand!r}")
    return estimand


def _check_data(x, t, y=None, *, square: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """float64 x (N, d), t (N,) in {0, 1}, y (N,); ValueError naming the problem. Every
    estimator here needs two units per arm (variances, cross-fitting folds)."""
    from ..core.inputs import check_dataset

    x = np.asarray(x, dtype=np.float64)
    if square and (x.ndim != 2 or x.shape[0] != x.shape[1]):
        raise ValueError(f"kernel='precomputed' needs x to be the (N, N) Gram matrix, got shape {x.shape}")
    return check_dataset(x, t, y, min_units=1, min_per_arm=2)


def _ratio_se(numerator: np.ndarray, denominator: np.ndarray, estimate: float) -> float:
    """SE of ``estimate = mean(numerator) / mean(denominator)`` by linearisation (delta method)."""
    phi = (numerator - estimate * denominator) / denominator.mean()
    return float(phi.std(ddof=1) / math.sqrt(len(phi)))


def _mean_se(psi: np.ndarray) -> float:
    return float(psi.std(ddof=1) / math.sqrt(len(psi)))


def _normalise_per_arm(alpha: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Non-negative weights rescaled to sum to one within each arm (uniform if an arm is all 0)."""
    w = np.clip(alpha, 0.0, None).astype(np.float64)
    for arm in (t == 1, t == 0):
        mass = w[arm].sum()
        w[arm] = w[arm] / mass if mass > 0 else 1.0 / arm.sum()
    return w


def _ess(w: np.ndarray) -> float:
    """Kish effective sample size of one arm's weights."""
    s = w.sum()
    return float(s * s / np.square(w).sum()) if s > 0 else 0.0


def _weighted_effect(w: np.ndarray, t: np.ndarray, y: np.ndarray) -> float:
    return float(w[t == 1] @ y[t == 1] - w[t == 0] @ y[t == 0])


def _check_new_units(x_new, d: int) -> np.ndarray:
    xn = np.asarray(x_new, dtype=np.float64)
    xn = xn[:, None] if xn.ndim == 1 and d == 1 else xn
    if xn.ndim != 2 or xn.shape[1] != d:
        raise ValueError(f"x_new: expected (M, {d}) like x, got shape {xn.shape}")
    if not np.isfinite(xn).all():
        raise ValueError("x_new: contains NaN or inf")
    return xn


class _Baseline:
    """Shared plumbing: estimand handling and timing."""

    name = "baseline"
    #: True where the estimator fits outcome models, so it gives ``cate`` and accepts ``x_new``
    gives_cate = False

    def __init__(self, estimand: str = "ate"):
        self.estimand = _check_estimand(estimand)

    def estimate(self, x, t, y, estimand: str | None = None, *, x_new=None) -> BaselineResult:
        """Estimate the ATE (or ATT) from covariates x (N, d), treatment t (N,), outcome y (N,).

        ``estimand`` overrides the one given at construction for this call. ``x_new`` (M, d):
        new units whose CATE to predict (``BaselineResult.cate_new``; estimators with outcome
        models only, `gives_cate`).
        """
        est = _check_estimand(estimand or self.estimand)
        kwargs = {}
        if x_new is not None:
            if not self.gives_cate:
                raise ValueError(f"x_new: {self.name} fits no outcome models, so it predicts no unit effects; "
                                 f"the estimators that do: {', '.join(CATE_BASELINES)}")
            kwargs["x_new"] = _check_new_units(x_new, np.asarray(x).shape[1] if np.ndim(x) == 2 else 1)
        start = time.perf_counter()
        res = self._estimate(x, t, y, est, **kwargs)
        res.seconds = time.perf_counter() - start
        return res

    def _estimate(self, x, t, y, estimand: str) -> BaselineResult:  # pragma: no cover - abstract
        raise NotImplementedError

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({params})"


# --------------------------------------------------------------------------------------------
# difference in means


class DifferenceInMeans(_Baseline):
    """``mean(y | T=1) - mean(y | T=0)``; the same number for the ATE and the ATT.

    SE: Welch, ``sqrt(s1^2 / n1 + s0^2 / n0)``. Needs no scikit-learn.
    """

    name = "dim"

    def _estimate(self, x, t, y, estimand):
        x, t, y = _check_data(x, t, y)
        y1, y0 = y[t == 1], y[t == 0]
        tau = float(y1.mean() - y0.mean())
        se = math.sqrt(y1.var(ddof=1) / len(y1) + y0.var(ddof=1) / len(y0))
        w = _normalise_per_arm(np.ones_like(t), t)
        return BaselineResult(self.name, estimand, tau, se=se, weights=w)


# --------------------------------------------------------------------------------------------
# propensity-score weighting


def logistic_propensity(x, t, *, C: float = 1.0, max_iter: int = 2000) -> np.ndarray:
    """Fitted P(T=1 | x) (N,) from an L2-penalised logistic regression on standardised x.

    ``C`` is scikit-learn's inverse penalty (default 1.0, sklearn's default): mild enough to
    leave well-overlapping data essentially unpenalised, strong enough to stay finite when the
    arms are (nearly) separable, as in LaLonde-CPS. Unclipped.
    """
    _sklearn("logistic_propensity")
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=max_iter))
    model.fit(np.asarray(x, dtype=np.float64), np.asarray(t).astype(int))
    return model.predict_proba(x)[:, 1]


class IPW(_Baseline):
    """Inverse propensity weighting with a logistic propensity.

    Args:
        normalized: False = Horvitz-Thompson (``ipw``), True = self-normalised / Hajek
            (``snipw``: weights rescaled to sum to one per arm).
        clip: fitted propensities are clipped into ``[clip, 1 - clip]`` (default 0.01).
        C: inverse L2 penalty of the logistic regression (see `logistic_propensity`).
        estimand: default estimand.

    Weights (unnormalised), with e = clipped propensity:

    * ATE: treated ``1 / e``, controls ``1 / (1 - e)``; HT divides each arm's weighted sum by N.
    * ATT: treated 1, controls the odds ``e / (1 - e)``; HT divides both sums by N_T.

    SE: influence function of the (ratio) estimator, treating the propensity as known
    (conservative for the ATE).

    Horvitz-Thompson is not invariant to a shift of y: adding c to every outcome moves the ATE
    estimate by ``c * (mean(t / e) - mean((1 - t) / (1 - e)))``. On IHDP (outcome level ~6,
    in-sample mean(t / e) = 0.94 on rep 1) this gives MAE 1.00 over reps 1-100, against 0.125 for
    the self-normalised version.
    """

    def __init__(self, normalized: bool = False, clip: float = 0.01, C: float = 1.0, estimand: str = "ate"):
        super().__init__(estimand)
        if not 0.0 <= clip < 0.5:
            raise ValueError(f"clip must be in [0, 0.5), got {clip!r}")
        self.normalized = bool(normalized)
        self.clip = float(clip)
        self.C = float(C)

    @property
    def name(self) -> str:  # type: ignore[override]
        return "snipw" if self.normalized else "ipw"

    def _estimate(self, x, t, y, estimand):
        x, t, y = _check_data(x, t, y)
        _sklearn(f"cina.eval.baselines.IPW ({self.name})")
        e = np.clip(logistic_propensity(x, t, C=self.C), self.clip, 1.0 - self.clip)
        n = len(t)
        if estimand == "ate":
            raw = np.where(t == 1, 1.0 / e, 1.0 / (1.0 - e))
        else:
            raw = np.where(t == 1, 1.0, e / (1.0 - e))
        treated, control = t * raw, (1.0 - t) * raw
        if self.normalized:
            w = _normalise_per_arm(raw, t)
            tau = _weighted_effect(w, t, y)
            m1 = w[t == 1] @ y[t == 1]
            m0 = w[t == 0] @ y[t == 0]
            phi = treated * (y - m1) / treated.mean() - control * (y - m0) / control.mean()
            se = _mean_se(phi)
        elif estimand == "ate":
            w = raw / n
            tau = _weighted_effect(w, t, y)
            se = _mean_se(treated * y - control * y)
        else:
            n_t = t.sum()
            w = raw / n_t
            tau = _weighted_effect(w, t, y)
            se = _ratio_se(treated * y - control * y, t, tau)
        ess = {"ess_treated": _ess(w[t == 1]), "ess_control": _ess(w[t == 0])}
        return BaselineResult(self.name, estimand, tau, se=se, weights=w, propensity=e, info={"clip": self.clip, **ess})


# --------------------------------------------------------------------------------------------
# outcome regression


def _regressor(model: str, random_state: int, max_iter: int):
    if model == "linear":
        from sklearn.linear_model import LinearRegression

        return LinearRegression()
    from sklearn.ensemble import HistGradientBoostingRegressor

    return HistGradientBoostingRegressor(max_iter=max_iter, random_state=random_state)


class OutcomeRegression(_Baseline):
    """Regression adjustment: fit E[Y | x, T] and average the predicted contrast.

    Args:
        learner: ``"t"`` (default): one model per arm, mu1 fitted on the treated and mu0 on the
            controls; ``"s"``: one model on ``[x, t]``, mu_t(x) = f(x, t). A linear S-learner is
            the OLS coefficient of t.
        model: ``"linear"`` (least squares, default) or ``"boosting"``
            (`HistGradientBoostingRegressor`, ``max_iter`` trees, otherwise sklearn defaults).

    ATE = mean over all units of mu1(x) - mu0(x). ATT = mean over the treated of y - mu0(x)
    (the observed treated outcomes stand in for mu1). No analytic SE (NaN; use `bootstrap_se`).
    CATE: ``mu1 - mu0`` in-sample; new units (``x_new``) are predicted by the same models.
    """

    gives_cate = True

    def __init__(self, learner: str = "t", model: str = "linear", max_iter: int = 100, random_state: int = 0,
                 estimand: str = "ate"):
        super().__init__(estimand)
        if learner not in ("t", "s"):
            raise ValueError(f"learner must be 't' or 's', got {learner!r}")
        if model not in ("linear", "boosting"):
            raise ValueError(f"model must be 'linear' or 'boosting', got {model!r}")
        self.learner = learner
        self.model = model
        self.max_iter = int(max_iter)
        self.random_state = random_state

    @property
    def name(self) -> str:  # type: ignore[override]
        return "or" + ("-boost" if self.model == "boosting" else "") + ("-s" if self.learner == "s" else "")

    def _estimate(self, x, t, y, estimand, x_new=None):
        x, t, y = _check_data(x, t, y)
        _sklearn(f"cina.eval.baselines.OutcomeRegression ({self.name})")
        if self.learner == "t":
            models = [_regressor(self.model, self.random_state, self.max_iter).fit(x[t == arm], y[t == arm])
                      for arm in (0.0, 1.0)]

            def predict(z):
                return models[0].predict(z), models[1].predict(z)
        else:
            m = _regressor(self.model, self.random_state, self.max_iter).fit(np.column_stack([x, t]), y)

            def predict(z):
                return (m.predict(np.column_stack([z, np.zeros(len(z))])),
                        m.predict(np.column_stack([z, np.ones(len(z))])))
        mu0, mu1 = predict(x)
        if estimand == "ate":
            tau = float(np.mean(mu1 - mu0))
        else:
            tau = float(np.mean(y[t == 1] - mu0[t == 1]))
        cate_new = None
        if x_new is not None:
            new0, new1 = predict(x_new)
            cate_new = new1 - new0
        return BaselineResult(self.name, estimand, tau, mu0=mu0, mu1=mu1, cate_new=cate_new,
                              info={"learner": self.learner, "model": self.model})


# --------------------------------------------------------------------------------------------
# cross-fitted AIPW / DML


class AIPW(_Baseline):
    """Cross-fitted augmented IPW, i.e. DML for the ATE / ATT with a binary treatment.

    Nuisances, fitted on K-1 folds and predicted on the held-out fold (stratified by t):
    propensity e(x) = `HistGradientBoostingClassifier`, outcome means mu0(x), mu1(x) = one
    `HistGradientBoostingRegressor` per arm; both with at most ``max_iter`` trees and early
    stopping on a 10% validation split (``early_stopping=True``; sklearn only turns it on above
    10,000 rows). Without it the boosted propensity overfits small treated arms (IHDP: 139
    treated; fitted e up to 0.9 where the treated share is 0.19) and the clipped inverse weights
    explode: IHDP reps 1-100 MAE 0.52 without early stopping vs 0.13 with it. Pass
    ``propensity_model`` / ``outcome_model`` (unfitted sklearn estimators; cloned per fold) to
    replace them. Fitted propensities are clipped into ``[clip, 1 - clip]``.

    Scores (Chernozhukov et al. 2018, §5.1), estimate = mean(score), SE = sd / sqrt(N):

    * ATE: ``mu1 - mu0 + t (y - mu1) / e - (1 - t) (y - mu0) / (1 - e)``.
    * ATT: ``[t (y - mu0) - (1 - t) e / (1 - e) (y - mu0)] / P(T=1)``.

    CATE: the out-of-fold ``mu1 - mu0`` of the dataset's units; new units (``x_new``) get the
    mean of the K fold models' predicted ``mu1 - mu0``.

    Args:
        n_folds: K (default 5). clip: propensity clipping (default 0.01).
        max_iter: maximum boosting iterations of the default nuisance models.
        early_stopping: early stopping of the default nuisance models (default True).
        random_state: seeds the fold split and the default models.
    """

    name = "aipw"
    gives_cate = True

    def __init__(self, n_folds: int = 5, clip: float = 0.01, max_iter: int = 100, early_stopping: bool = True,
                 random_state: int = 0, propensity_model=None, outcome_model=None, estimand: str = "ate"):
        super().__init__(estimand)
        if int(n_folds) < 2:
            raise ValueError(f"n_folds must be >= 2, got {n_folds!r}")
        if not 0.0 <= clip < 0.5:
            raise ValueError(f"clip must be in [0, 0.5), got {clip!r}")
        self.n_folds = int(n_folds)
        self.clip = float(clip)
        self.max_iter = int(max_iter)
        self.early_stopping = bool(early_stopping)
        self.random_state = random_state
        self.propensity_model = propensity_model
        self.outcome_model = outcome_model

    def _models(self):
        """Unfitted (propensity, outcome) learners: the defaults of the class docstring, or
        clones of the ones given. `DoubleMLIRM` uses the same."""
        from sklearn.base import clone
        from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

        hgb = {"max_iter": self.max_iter, "early_stopping": self.early_stopping, "random_state": self.random_state}
        prop = (clone(self.propensity_model) if self.propensity_model is not None
                else HistGradientBoostingClassifier(**hgb))
        out = (clone(self.outcome_model) if self.outcome_model is not None
               else HistGradientBoostingRegressor(**hgb))
        return prop, out

    def folds(self, t, seed=None) -> list[tuple[np.ndarray, np.ndarray]]:
        """The K (train, test) row-index pairs of the cross-fitting: stratified by t, shuffled
        with ``random_state`` (or ``seed``, if given)."""
        from sklearn.model_selection import StratifiedKFold

        ti = np.asarray(t).astype(int)
        n_min = int(min(ti.sum(), len(ti) - ti.sum()))
        if n_min < self.n_folds:
            raise ValueError(f"{type(self).__name__} with {self.n_folds} folds needs >= {self.n_folds} units per arm, "
                             f"got {n_min}")
        split = StratifiedKFold(self.n_folds, shuffle=True, random_state=self.random_state if seed is None else seed)
        return list(split.split(np.zeros((len(ti), 1)), ti))

    def _estimate(self, x, t, y, estimand, x_new=None):
        x, t, y = _check_data(x, t, y)
        _sklearn("cina.eval.baselines.AIPW")
        from sklearn.base import clone

        e, mu0, mu1 = np.empty_like(y), np.empty_like(y), np.empty_like(y)
        ti = t.astype(int)
        cate_new = None if x_new is None else np.zeros(len(x_new))
        for train, test in self.folds(ti):
            prop, out = self._models()
            e[test] = prop.fit(x[train], ti[train]).predict_proba(x[test])[:, 1]
            for arm, target in ((0, mu0), (1, mu1)):
                rows = train[ti[train] == arm]
                model = clone(out).fit(x[rows], y[rows])
                target[test] = model.predict(x[test])
                if x_new is not None:
                    cate_new += (1.0 if arm == 1 else -1.0) * model.predict(x_new) / self.n_folds
        e = np.clip(e, self.clip, 1.0 - self.clip)
        if estimand == "ate":
            psi = mu1 - mu0 + t * (y - mu1) / e - (1.0 - t) * (y - mu0) / (1.0 - e)
            tau, se = float(psi.mean()), _mean_se(psi)
        else:
            num = t * (y - mu0) - (1.0 - t) * e / (1.0 - e) * (y - mu0)
            tau = float(num.mean() / t.mean())
            se = _ratio_se(num, t, tau)
        return BaselineResult(self.name, estimand, tau, se=se, propensity=e, mu0=mu0, mu1=mu1, cate_new=cate_new,
                              info={"n_folds": self.n_folds, "clip": self.clip})


# --------------------------------------------------------------------------------------------
# the reference implementation: DoubleML's interactive regression model


def _doubleml(what: str):
    """Import DoubleML lazily, with an error that names the package."""
    try:
        import doubleml
    except ImportError as err:
        raise ImportError(f"{what} needs the doubleml package, which is not installed; {DOUBLEML_HINT}") from err
    return doubleml


class DoubleMLIRM(AIPW):
    """The cross-fitted DML estimate of `AIPW`, computed by DoubleML's ``DoubleMLIRM``.

    DoubleML (Bach, Chernozhukov, Kurz & Spindler, JMLR 2022) is the reference implementation of
    Chernozhukov et al. (2018); this row lets the scoreboard check our own DML numbers against it.
    Everything that is a modelling choice is ours, so the two rows differ only in the
    implementation: the learners are `AIPW`'s (the same sklearn estimators and hyper-parameters,
    `AIPW._models`), the K = ``n_folds`` folds are `AIPW.folds` (stratified by t, seeded by
    ``random_state``; DoubleML's own default split is the same stratified K-fold, but drawn from
    NumPy's global random state), and propensities are clipped into ``[clip, 1 - clip]``
    (DoubleML's ``PSProcessorConfig(clipping_threshold=clip)``). Score ``"ATE"``, or ``"ATTE"``
    for the ATT (e.g. LaLonde).

    ``n_rep > 1`` repeats the cross-fitting on ``n_rep`` splits (seeds ``random_state``,
    ``random_state + 1``, ...) and reports DoubleML's median aggregate.

    Result: ``estimate`` = ``coef``, ``se`` = DoubleML's standard error, ``ci(0.95)`` its 95%
    interval (``confint``, the same normal approximation; ``info["confint"]`` holds DoubleML's
    numbers), ``propensity``, ``mu0``, ``mu1`` its out-of-fold predictions (mean over the
    repetitions), so ``cate`` = mu1 - mu0; ``cate_new`` for ``x_new`` = the mean over every fold
    model of the predicted mu1 - mu0 (as `AIPW`). Needs the optional ``doubleml`` package
    (`doubleml_available`); the error names it.
    """

    name = "doubleml"

    def __init__(self, n_folds: int = 5, clip: float = 0.01, max_iter: int = 100, early_stopping: bool = True,
                 random_state: int = 0, propensity_model=None, outcome_model=None, n_rep: int = 1,
                 estimand: str = "ate"):
        super().__init__(n_folds=n_folds, clip=clip, max_iter=max_iter, early_stopping=early_stopping,
                         random_state=random_state, propensity_model=propensity_model, outcome_model=outcome_model,
                         estimand=estimand)
        if not 0.0 < clip < 0.5:  # DoubleML refuses 0
            raise ValueError(f"clip must be in (0, 0.5) for DoubleML, got {clip!r}")
        if int(n_rep) < 1:
            raise ValueError(f"n_rep must be >= 1, got {n_rep!r}")
        self.n_rep = int(n_rep)

    def _estimate(self, x, t, y, estimand, x_new=None):
        x, t, y = _check_data(x, t, y)
        _sklearn("cina.eval.baselines.DoubleMLIRM")
        dml = _doubleml("cina.eval.baselines.DoubleMLIRM (the doubleml baseline)")
        from doubleml.utils import PSProcessorConfig

        base = self.random_state if isinstance(self.random_state, (int, np.integer)) else None
        splits = [self.folds(t, seed=None if base is None else int(base) + r) for r in range(self.n_rep)]
        prop, out = self._models()
        data = dml.DoubleMLData.from_arrays(x, y, t)
        model = dml.DoubleMLIRM(data, ml_g=out, ml_m=prop, n_folds=self.n_folds, n_rep=self.n_rep,
                                score="ATE" if estimand == "ate" else "ATTE",
                                ps_processor_config=PSProcessorConfig(clipping_threshold=self.clip),
                                draw_sample_splitting=False)
        model.set_sample_splitting(splits if self.n_rep > 1 else splits[0])
        with warnings.catch_warnings():
            # DoubleML's own use of soon-deprecated pandas/sklearn API says nothing about this estimate
            warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"doubleml(\.|$)")
            warnings.filterwarnings("ignore", category=FutureWarning, module=r"doubleml(\.|$)")
            # fit() also computes the elements of DoubleML's sensitivity analysis (not used here,
            # and not part of coef or se); it warns when their nu2 comes out negative
            warnings.filterwarnings("ignore", message="The estimated nu2", category=UserWarning)
            model.fit(store_predictions=True, store_models=x_new is not None)
            confint = model.confint(level=0.95).to_numpy()[0]
        preds = model.predictions
        mu0 = np.asarray(preds["ml_g0"])[:, :, 0].mean(1)
        mu1 = np.asarray(preds["ml_g1"])[:, :, 0].mean(1)
        e = np.asarray(preds["ml_m"])[:, :, 0].mean(1)
        cate_new = None
        if x_new is not None:
            fitted = model.models
            d_col = data.d_cols[0]
            g0 = [m for rep in fitted["ml_g0"][d_col] for m in rep]
            g1 = [m for rep in fitted["ml_g1"][d_col] for m in rep]
            cate_new = np.mean([m1.predict(x_new) - m0.predict(x_new) for m0, m1 in zip(g0, g1)], axis=0)
        return BaselineResult(self.name, estimand, float(model.coef[0]), se=float(model.se[0]), propensity=e, mu0=mu0,
                              mu1=mu1, cate_new=cate_new,
                              info={"n_folds": self.n_folds, "n_rep": self.n_rep, "clip": self.clip,
                                    "score": "ATE" if estimand == "ate" else "ATTE",
                                    "confint": (float(confint[0]), float(confint[1])),
                                    "doubleml_version": getattr(dml, "__version__", "?")})


# --------------------------------------------------------------------------------------------
# SVM optimal balancing (Tarr & Imai 2021)


def svm_balancing_weights(x, t, *, C: float = 1.0, kernel: str = "rbf", gamma="scale", degree: int = 3,
                          coef0: float = 0.0, tol: float = 1e-6, cache_size: float = 500.0) -> tuple[np.ndarray, np.ndarray]:
    """ATE balancing weights: the SVM dual solution of `sklearn.svm.SVC`, normalised per arm.

    Tarr & Imai's dual ``max_alpha 1^T alpha - alpha^T K_w alpha / (2 lam)`` s.t.
    ``0 <= alpha <= 1``, ``sum_i w_i alpha_i = 0`` (w = 2t - 1) is sklearn's SVC with
    ``C = 1 / lam`` and ``alpha = |dual_coef_| / C``. The equality constraint makes the two arms'
    alpha sums equal; normalising per arm gives weights whose weighted arms have minimal kernel
    MMD for their effective sample size.

    Args:
        x: (N, d) covariates (used as given; standardise first), or the (N, N) Gram matrix when
            ``kernel="precomputed"``.
        t: (N,) 0/1.
        C: 1 / lambda. Small C -> all alpha = 1 (difference in means); large C -> better balance
            on fewer units.
        kernel, gamma, degree, coef0, tol, cache_size: passed to `sklearn.svm.SVC`.

    Returns:
        ``(weights, alpha)``: (N,) per-arm normalised weights and (N,) raw alpha in [0, 1].
    """
    _sklearn("svm_balancing_weights")
    from sklearn.svm import SVC

    svc = SVC(C=C, kernel=kernel, gamma=gamma, degree=degree, coef0=coef0, tol=tol, cache_size=cache_size)
    svc.fit(x, t.astype(int))
    alpha = np.zeros(len(t))
    alpha[svc.support_] = np.abs(svc.dual_coef_[0]) / C
    alpha = np.clip(alpha, 0.0, 1.0)
    return _normalise_per_arm(alpha, t), alpha


def att_balancing_weights(gram: np.ndarray, t: np.ndarray, *, C: float = 1.0, tol: float = 1e-6,
                          cache_size: float = 500.0) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """ATT balancing weights: treated uniform, controls balanced towards them.

    The ATE dual above with the extra constraint that the treated share one weight,
    ``alpha_T = a * 1`` (a in [0, 1]), as in `cina.core.balancing` / `cina.core.single`: the treated arm then
    acts as a single unit whose feature is the treated mean embedding ``mean_T phi(x)`` and whose
    box is [0, N_T], and the intercept keeps the two arms' masses equal::

        max  N_T a + 1^T a_C - || a sum_T phi(x_i) - sum_C a_j phi(x_j) ||^2 / (2 lam)
        s.t. 0 <= a <= 1,  0 <= a_C <= 1,  N_T a = 1^T a_C.

    This reduced problem is an ordinary SVM on the (1 + N_C)-point precomputed kernel
    ``[[mean K_TT, mean_T K_TC], [., K_CC]]`` with per-unit C (``sample_weight`` = N_T for the
    treated unit), solved by `sklearn.svm.SVC`. Unlike pinning every treated dual at 1, the treated
    mass can shrink, so the controls can still be reweighted when N_C is not much larger than N_T.

    Args:
        gram: (N, N) kernel matrix over all units (only the K_TT mean, K_TC and K_CC are used).
        t: (N,) 0/1. C: 1 / lambda. tol, cache_size: passed to SVC.

    Returns:
        ``(weights, alpha, info)``: (N,) weights (treated 1/N_T, controls summing to one), (N,)
        raw alpha (treated a, controls a_C), and ``info`` with the treated dual ``a``.
    """
    _sklearn("att_balancing_weights")
    from sklearn.svm import SVC

    treated, control = t == 1, t == 0
    n_t, n_c = int(treated.sum()), int(control.sum())
    reduced = np.empty((1 + n_c, 1 + n_c))
    reduced[0, 0] = gram[np.ix_(treated, treated)].mean()
    reduced[0, 1:] = reduced[1:, 0] = gram[np.ix_(treated, control)].mean(0)
    reduced[1:, 1:] = gram[np.ix_(control, control)]
    labels = np.r_[1, np.zeros(n_c, dtype=int)]
    svc = SVC(C=C, kernel="precomputed", tol=tol, cache_size=cache_size)
    svc.fit(reduced, labels, sample_weight=np.r_[float(n_t), np.ones(n_c)])
    a = np.zeros(1 + n_c)
    a[svc.support_] = np.abs(svc.dual_coef_[0]) / C
    alpha = np.zeros(len(t))
    alpha[treated] = min(a[0] / n_t, 1.0)
    alpha[control] = np.clip(a[1:], 0.0, 1.0)
    info = {"treated_dual": float(alpha[treated][0]), "solver_iterations": int(np.sum(getattr(svc, "n_iter_", 0)))}
    return _normalise_per_arm(alpha, t), alpha, info


def _subsample_rows(t: np.ndarray, max_units: int, estimand: str, rng: np.random.Generator) -> np.ndarray:
    """Sorted row indices of a subsample of at most max_units units (see `SVMBalancing`)."""
    idx_t, idx_c = np.flatnonzero(t == 1), np.flatnonzero(t == 0)
    if estimand == "att" and len(idx_t) < max_units // 2:
        keep_t = idx_t
    else:
        keep_t = rng.choice(idx_t, max(2, round(max_units * len(idx_t) / len(t))), replace=False)
    keep_c = rng.choice(idx_c, min(len(idx_c), max_units - len(keep_t)), replace=False)
    return np.sort(np.concatenate([keep_t, keep_c]))


class SVMBalancing(_Baseline):
    """SVM optimal balancing weights (Tarr & Imai 2021) and the weighted difference in means.

    ATE: `svm_balancing_weights` (sklearn SVC dual, C = 1 / lambda). ATT: treated weighted
    uniformly, controls balanced towards them (`att_balancing_weights`, also an SVC dual). The
    estimate is ``sum_T w y - sum_C w y``.

    Estimand caveat: the box ``0 <= alpha <= 1`` with equal arm masses means the ATE weights
    target the effect on the *largest balanced subset* (Tarr & Imai), not the full-sample ATE.
    When one arm is much smaller, all its units sit at the bound and get uniform weight, so the
    "ATE" weights estimate the effect on that arm: on IHDP (139 treated, 608 controls) they
    estimate the ATT (exactly 4 there), not the ATE.

    Args:
        C: 1 / lambda (default 1.0; with the RBF kernel on standardised covariates the kernel
            entries are O(1), and near the balance noise floor the fraction of units kept is
            roughly independent of N at fixed C).
        lam: alternative to C (``C = 1 / lam``); if given it wins.
        kernel: ``"rbf"`` (default), ``"linear"``, ``"poly"`` or ``"precomputed"`` (then x is
            the (N, N) Gram matrix and ``standardize`` is ignored).
        gamma, degree, coef0: kernel parameters, as in sklearn (``gamma="scale"`` =
            1 / (d * var(x))).
        standardize: z-score each covariate first (default True).
        tol: SVC's stopping tolerance.
        max_units: SVM solvers are O(N^2) in memory/time; datasets with more units are
            subsampled to ``max_units`` (ATE: stratified random subsample; ATT: all treated plus
            random controls), seeded by ``random_state``. ``info["n_used"]`` and
            ``info["subsampled"]`` say so; dropped units get weight 0. ``None`` = never.

    ``info`` also holds ``alpha`` (raw duals of the units used, in [0, 1]), ``n_support``
    (units with alpha > 0), Kish effective sample sizes per arm, and for the ATT the shared
    treated dual ``treated_dual``.
    """

    name = "svm"

    def __init__(self, C: float = 1.0, *, lam: float | None = None, kernel: str = "rbf", gamma="scale",
                 degree: int = 3, coef0: float = 0.0, standardize: bool = True, tol: float = 1e-6,
                 max_units: int | None = 5000, random_state: int = 0, estimand: str = "ate"):
        super().__init__(estimand)
        if lam is not None:
            if not lam > 0:
                raise ValueError(f"lam must be > 0, got {lam!r}")
            C = 1.0 / lam
        if not (C > 0 and math.isfinite(C)):
            raise ValueError(f"C must be a positive finite number, got {C!r}")
        if kernel not in ("rbf", "linear", "poly", "precomputed"):
            raise ValueError(f"kernel must be 'rbf', 'linear', 'poly' or 'precomputed', got {kernel!r}")
        self.C = float(C)
        self.kernel = kernel
        self.gamma = gamma
        self.degree = degree
        self.coef0 = coef0
        self.standardize = standardize
        self.tol = tol
        self.max_units = max_units
        self.random_state = random_state

    def _gram(self, x: np.ndarray) -> np.ndarray:
        from sklearn.metrics.pairwise import pairwise_kernels

        if self.kernel == "precomputed":
            return x
        gamma = self.gamma
        if gamma == "scale":
            var = x.var()
            gamma = 1.0 / (x.shape[1] * var) if var > 0 else 1.0
        elif gamma == "auto":
            gamma = 1.0 / x.shape[1]
        params = {"rbf": {"gamma": gamma}, "linear": {}, "poly": {"gamma": gamma, "degree": self.degree, "coef0": self.coef0}}
        return pairwise_kernels(x, metric=self.kernel, **params[self.kernel])

    def _estimate(self, x, t, y, estimand):
        pre = self.kernel == "precomputed"
        x, t, y = _check_data(x, t, y, square=pre)
        _sklearn("cina.eval.baselines.SVMBalancing")
        n = len(t)
        rows = np.arange(n)
        if self.max_units is not None and n > self.max_units:
            rows = _subsample_rows(t, int(self.max_units), estimand, np.random.default_rng(self.random_state))
        xs = x[np.ix_(rows, rows)] if pre else x[rows]
        ts, ys = t[rows], y[rows]
        if self.standardize and not pre:
            sd = xs.std(0)
            xs = np.where(sd > 1e-12, (xs - xs.mean(0)) / np.where(sd > 1e-12, sd, 1.0), 0.0)
        info: dict[str, Any] = {"C": self.C, "kernel": self.kernel, "n_used": int(len(rows)), "subsampled": len(rows) < n}
        if estimand == "ate":
            w_s, alpha = svm_balancing_weights(xs, ts, C=self.C, kernel=self.kernel, gamma=self.gamma, degree=self.degree,
                                               coef0=self.coef0, tol=self.tol)
        else:
            w_s, alpha, solver = att_balancing_weights(self._gram(xs), ts, C=self.C, tol=self.tol)
            info.update(solver)
        w = np.zeros(n)
        w[rows] = w_s
        info.update(ess_treated=_ess(w_s[ts == 1]), ess_control=_ess(w_s[ts == 0]),
                    n_support=int((alpha > 0).sum()), alpha=alpha)
        return BaselineResult(self.name, estimand, _weighted_effect(w_s, ts, ys), weights=w, info=info)


# --------------------------------------------------------------------------------------------
# registry and helpers

BASELINES: dict[str, Callable[..., _Baseline]] = {
    "dim": DifferenceInMeans,
    "ipw": lambda **kw: IPW(normalized=False, **kw),
    "snipw": lambda **kw: IPW(normalized=True, **kw),
    "or": lambda **kw: OutcomeRegression(learner="t", model="linear", **kw),
    "or-boost": lambda **kw: OutcomeRegression(learner="t", model="boosting", **kw),
    "aipw": AIPW,
    "svm": SVMBalancing,
    "doubleml": DoubleMLIRM,
}

#: the registered estimators that give unit effects (``cate``) and accept ``x_new``
CATE_BASELINES = ("or", "or-boost", "aipw", "doubleml")


def make_baseline(name: str, **params) -> _Baseline:
    """The estimator registered as ``name`` (see `BASELINES`) with hyper-parameters ``params``."""
    if name not in BASELINES:
        raise KeyError(f"unknown baseline {name!r}; known: {sorted(BASELINES)}")
    return BASELINES[name](**params)


def run_baseline(name: str, x, t, y, estimand: str = "ate", *, x_new=None, **params) -> BaselineResult:
    """``make_baseline(name, **params).estimate(x, t, y, estimand, x_new=x_new)``."""
    return make_baseline(name, **params).estimate(x, t, y, estimand, x_new=x_new)


def bootstrap_se(estimator: _Baseline, x, t, y, *, n_boot: int = 50, estimand: str | None = None,
                 seed: int = 0) -> float:
    """Bootstrap standard error of ``estimator`` (resampling units within each arm).

    Resampling within arms keeps both arm sizes fixed, so every replicate is estimable. Costs
    ``n_boot`` full fits.
    """
    x, t, y = _check_data(x, t, y)
    rng = np.random.default_rng(seed)
    arms = [np.flatnonzero(t == 1), np.flatnonzero(t == 0)]
    draws = []
    for _ in range(int(n_boot)):
        idx = np.concatenate([rng.choice(a, len(a), replace=True) for a in arms])
        draws.append(estimator.estimate(x[idx], t[idx], y[idx], estimand).estimate)
    return float(np.std(draws, ddof=1))
