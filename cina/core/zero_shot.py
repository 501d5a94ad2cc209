"""`ZeroShotEstimator`: the scikit-learn style front door to a pretrained CInA model.

    >>> from cina import ZeroShotEstimator
    >>> est = ZeroShotEstimator(model="default", estimand="ate").fit(X, t, y)
    >>> est.ate_, est.se_, est.ci_, est.cate_[:5]
    >>> est.predict_cate(X_new)

Parameters go in ``__init__``, `fit` learns nothing (the model is pretrained: fitting is one
forward pass) and sets the attributes with a trailing underscore. X may be a numpy array or a
pandas DataFrame (its column names reach the diagnostics and warnings), t and y arrays or
Series; every problem is a ValueError that names the argument, column or row.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["ZeroShotEstimator"]


def _frame_to_array(X, name: str) -> tuple[np.ndarray, list[str] | None]:
    """(values as float64 (N, d), column names or None) from an array-like or a DataFrame."""
    columns = None
    if hasattr(X, "columns") and hasattr(X, "to_numpy"):  # a pandas DataFrame
        columns = [str(c) for c in X.columns]
        # numpy kinds b(ool), i(nt), u(int), f(loat); pandas' text, object and category dtypes are not numbers
        bad = [c for c, dt in zip(columns, X.dtypes) if getattr(dt, "kind", "O") not in "biuf"]
        if bad:
            raise ValueError(f"{name}: column {bad[0]!r} is not numeric (dtype {X[bad[0]].dtype}); encode it first")
        X = X.to_numpy(dtype=np.float64)
    try:
        values = np.asarray(X, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name}: cannot be read as numbers ({exc})") from None
    if values.ndim == 1:
        values = values[:, None]
    if values.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D array (n_units, n_covariates), got shape {values.shape}")
    if not np.isfinite(values).all():
        r, c = np.argwhere(~np.isfinite(values))[0]
        col = columns[c] if columns else f"column {c}"
        raise ValueError(f"{name}: {col!r}, row {r}: NaN or inf")
    return values, columns


def _vector(v, name: str, n: int) -> np.ndarray:
    if hasattr(v, "to_numpy"):
        v = v.to_numpy()
    try:
        out = np.asarray(v, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name}: cannot be read as numbers ({exc})") from None
    if out.shape != (n,):
        raise ValueError(f"{name}: expected {n} values (one per row of X), got {out.size}")
    if not np.isfinite(out).all():
        raise ValueError(f"{name}: row {int(np.flatnonzero(~np.isfinite(out))[0])}: NaN or inf")
    return out


class ZeroShotEstimator:
    """Treatment effects of one dataset from a pretrained CInA model, in one forward pass.

    Args:
        model: a shipped model's name ("default", "fast"), a run or model directory, a
            ``.safetensors`` file, or a loaded `cina.CInA`.
        estimand: "ate" or "att".
        level: confidence level of ``ci_``.
        augment: the doubly robust estimate (needs a model with an outcome head; None: the
            model's default); False gives the weights-only estimate of the paper.

    Attributes (after `fit`): ``ate_`` (the ATE, or the ATT), ``se_``, ``ci_`` (low, high) for
    the population effect, ``se_sample_``, ``ci_sample_`` for the effect on these units,
    ``cate_`` (N,) conditional effects of the units (None without an outcome head),
    ``weights_`` (N,), ``diagnostics_`` (dict; SMDs are keyed by column name as
    ``smd_before_by_column``), ``warnings_`` (list of str), ``feature_names_in_``,
    ``n_features_in_``, ``model_`` (the `CInA`).
    """

    def __init__(self, model: Any = "default", estimand: str = "ate", level: float = 0.95, augment: bool | None = None):
        self.model = model
        self.estimand = estimand
        self.level = level
        self.augment = augment

    def _load(self):
        from .checkpoint import resolve_model
        from .model import CInA

        if isinstance(self.model, CInA):
            return self.model
        return CInA.load(resolve_model(self.model))

    def fit(self, X, t, y) -> "ZeroShotEstimator":
        if self.estimand not in ("ate", "att"):
            raise ValueError(f"estimand: expected 'ate' or 'att', got {self.estimand!r}")
        if not (isinstance(self.level, float) and 0 < self.level < 1):
            raise ValueError(f"level: expected a number in (0, 1), got {self.level!r}")
        x, names = _frame_to_array(X, "X")
        n = len(x)
        tv = _vector(t, "t", n)
        if not np.isin(tv, (0.0, 1.0)).all():
            raise ValueError(f"t: must be binary 0/1, found {sorted(set(np.unique(tv).tolist()) - {0.0, 1.0})[:3]}")
        yv = _vector(y, "y", n)
        model = self._load()
        est = model.estimate(x, tv, yv, estimand=self.estimand, feature_names=names, augment=self.augment)
        self.model_ = model
        self.feature_names_in_ = np.array(names if names is not None else [f"x{j}" for j in range(x.shape[1])], dtype=object)
        self.n_features_in_ = x.shape[1]
        self.ate_ = est.ate
        self.se_ = est.se
        self.ci_ = est.ci(self.level)
        self.se_sample_ = est.se_sample
        self.ci_sample_ = est.ci(self.level, sample=True)
        self.cate_ = est.cate
        self.weights_ = est.weights
        diag = dict(est.diagnostics)
        for key in ("smd_before", "smd_after"):
            diag[f"{key}_by_column"] = dict(zip(self.feature_names_in_.tolist(), np.asarray(diag[key]).tolist()))
        self.diagnostics_ = diag
        self.warnings_ = list(diag.get("warnings", []))
        self._data = (x, tv, yv)
        return self

    def predict_cate(self, X_new) -> np.ndarray:
        """(M,) conditional effects of new units, with the fitted dataset as context."""
        if not hasattr(self, "ate_"):
            raise ValueError("predict_cate: call fit(X, t, y) first")
        if self.model_.outcome is None:
            raise ValueError("predict_cate: this model has no outcome head (outcome_model=False): no CATE")
        xn, names = _frame_to_array(X_new, "X_new")
        if xn.shape[1] != self.n_features_in_:
            raise ValueError(f"X_new: expected {self.n_features_in_} columns like X, got {xn.shape[1]}")
        if names is not None and list(names) != self.feature_names_in_.tolist():
            raise ValueError(f"X_new: columns {names} differ from the fitted X's {self.feature_names_in_.tolist()}")
        x, tv, yv = self._data
        est = self.model_.estimate(x, tv, yv, estimand=self.estimand, augment=self.augment, x_new=xn)
        return est.cate_new

    def __repr__(self) -> str:
        return f"ZeroShotEstimator(model={self.model!r}, estimand={self.estimand!r}, level={self.level!r})"
