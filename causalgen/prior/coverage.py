"""Where does a dataset sit within a prior? Descriptors of one dataset, and their place among a prior's tasks.

A model pretrained on a prior is only as good on a user's data as the prior comes close to that
data. `describe` reduces one dataset ``(x, t, y)`` to a handful of numbers (size, column types,
treated share, estimated overlap, how much of the outcome the covariates explain); the same
function runs on the user's data and on every task of the prior (`prior_descriptors`), so
whatever bias an estimated descriptor has, both sides share it. `coverage_report` places the
user's value of each descriptor within the prior's distribution and flags the ones outside its
1st-99th percentile band; `format_report` prints it and `coverage_figure` draws it.

    >>> user = describe(x, t, y)
    >>> prior = prior_descriptors("default", n_tasks=500)
    >>> print(format_report(coverage_report(user, prior)))

The estimators are written in numpy (no scikit-learn in this room): an L2-penalised logistic
regression fitted by Newton's method for the propensity, ridge regression with a leave-one-out-chosen
penalty for the outcome, both cross-fitted over 5 folds stratified by treatment with a fixed seed.
"""

from __future__ import annotations

import os
from typing import Any, Mapping, Sequence

import numpy as np

#: the descriptors `describe` returns, in report order
DESCRIPTORS = (
    "n_units",
    "n_covariates",
    "binary_share",
    "categorical_share",
    "skewed_share",
    "semicontinuous_share",
    "treated_share",
    "propensity_p01",
    "propensity_p99",
    "overlap_share",
    "overlap_area",
    "outcome_r2",
    "outcome_r2_nonlinear",
)

N_FOLDS = 5
#: datasets above this many units are described from a stratified subsample of this size for the
#: model-based descriptors (propensity, overlap, R^2); counts and column types use every unit
MAX_FIT_UNITS = 5000
#: random Fourier features added to the nonlinear outcome model
N_FOURIER = 50
#: equal-width bins on [0, 1] for the overlap area of the two arms' propensity histograms
OVERLAP_BINS = 20
#: a report flags values whose mid-rank percentile within the prior is outside [LOW, HIGH]
OUTSIDE_LOW, OUTSIDE_HIGH = 1.0, 99.0


# --------------------------------------------------------------------------------------------
# one dataset


def describe(x, t, y, *, seed: int = 0, max_fit_units: int = MAX_FIT_UNITS) -> dict[str, float]:
    """Descriptors of one dataset, the same function for user data and for prior tasks.

    x: (N, d) covariates, d >= 1; t: (N,) binary 0/1 treatment with at least 2 units per arm;
    y: (N,) outcome; all finite, N >= 10. seed: the cross-fitting folds' (and Fourier features')
    seed, fixed so the result is a pure function of the data. max_fit_units: see below.

    Returns ``{name: float}`` in the order of `DESCRIPTORS`. Column j is *binary* when it takes
    exactly 2 distinct values, *categorical* when it is integer-valued with 3-10 distinct values,
    *constant* with 1, and *continuous* otherwise. Shares are over all d columns.

    - ``n_units`` = N, ``n_covariates`` = d.
    - ``binary_share``, ``categorical_share``: share of binary / categorical columns.
    - ``skewed_share``: share of continuous columns with ``|g1| > 2``, ``g1 = m3 / m2^1.5`` and
      ``m_k = mean((x_j - mean(x_j))^k)``. Binary and categorical columns are not counted: a rare
      0/1 indicator is skewed by construction, and ``binary_share`` already describes it.
    - ``semicontinuous_share``: share of continuous columns with at least 10% exact zeros and
      every other value > 0 (earnings, counts of events, doses).
    - ``treated_share`` = mean(t).
    - ``propensity_p01``, ``propensity_p99``: 1st and 99th percentile of the cross-fitted
      propensities ``e_i = sigmoid(a_k + z_i' b_k)``, where ``(a_k, b_k)`` minimise
      ``sum_{i not in fold k} [log(1 + exp(eta_i)) - t_i eta_i] + lam/2 |b|^2`` on the
      standardised non-constant columns z (p of them), and i lies in fold k. ``lam = p/4``: a
      N(0, 4/p) prior on each coefficient keeps the linear predictor's prior sd at 2 logits
      whatever p, and keeps the fit finite under perfect separation and for p > N.
    - ``overlap_share``: share of units with ``0.1 <= e_i <= 0.9``.
    - ``overlap_area``: ``sum_b min(h1_b, h0_b)`` where ``h_a_b`` is the share of arm a's units
      whose e_i falls in bin b of 20 equal bins on [0, 1]; 1 when the arms' estimated propensity
      distributions coincide, 0 when they do not meet.
    - ``outcome_r2``: out-of-fold ``1 - sum (y_i - yhat_i)^2 / sum (y_i - mean(y))^2`` of a
      ridge regression of y on z (intercept unpenalised), its penalty chosen per training fold
      by exact leave-one-out error, ``sum_i (r_i / (1 - h_ii))^2``. Near 0 (or below)
      when x says nothing about y, near 1 when y is a function of x.
    - ``outcome_r2_nonlinear``: the same on z, the squares of its non-binary columns, and 50
      random Fourier features ``cos(z W + c)``, ``W ~ N(0, 1/p)``, ``c ~ U(0, 2 pi)``.

    Above `max_fit_units` units, the propensity, overlap and R^2 descriptors are computed on a
    random subsample of that many units, drawn per arm in proportion (seeded); the counts, the
    column kinds and the treated share always use every unit.

    The estimated descriptors share the estimators' biases between user data and prior tasks;
    read them as coordinates for comparison, not as truths about the data.
    Cost O(N d^2 + d^3) per Newton step; 10-20 ms for N = 1000, d = 25 on one core.
    """
    x, t, y = _check(x, t, y)
    n, d = x.shape
    kinds = _column_kinds(x)
    out: dict[str, float] = {
        "n_units": float(n),
        "n_covariates": float(d),
        "binary_share": float(np.mean(kinds["binary"])),
        "categorical_share": float(np.mean(kinds["categorical"])),
        "skewed_share": float(np.mean(kinds["continuous"] & kinds["skewed"])),
        "semicontinuous_share": float(np.mean(kinds["continuous"] & kinds["semicontinuous"])),
        "treated_share": float(np.mean(t)),
    }
    rng = np.random.default_rng(seed)
    if n > max_fit_units:
        keep = _stratified_subsample(t, max_fit_units, rng)
        x, t, y = x[keep], t[keep], y[keep]
    folds = _folds(t, N_FOLDS, rng)
    z, nonbinary = _standardise(x, kinds["binary"])
    e = _propensity_oof(z, t, folds, lam=z.shape[1] / 4.0)
    p01, p99 = np.percentile(e, [1.0, 99.0])
    out["propensity_p01"] = float(p01)
    out["propensity_p99"] = float(p99)
    out["overlap_share"] = float(np.mean((e >= 0.1) & (e <= 0.9)))
    out["overlap_area"] = _overlap_area(e, t)
    out["outcome_r2"] = _r2(y, _ridge_oof(z, y, folds))
    out["outcome_r2_nonlinear"] = _r2(y, _ridge_oof(_nonlinear_features(z, nonbinary, rng), y, folds))
    return out


def _check(x, t, y) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x = np.asarray(x, dtype=np.float64)
    t = np.asarray(t)
    y = np.asarray(y, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"x must be 2-D (N, d), got shape {x.shape}")
    n, d = x.shape
    if d < 1:
        raise ValueError("x has no columns; at least one covariate is needed")
    if t.shape != (n,) or y.shape != (n,):
        raise ValueError(f"t and y must have shape ({n},) like x's rows, got {t.shape} and {y.shape}")
    if n < 10:
        raise ValueError(f"only {n} units; at least 10 are needed")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise ValueError("x and y must be finite (no NaN or inf)")
    tf = t.astype(np.float64)
    if not np.all((tf == 0.0) | (tf == 1.0)):
        raise ValueError("t must be binary 0/1")
    n1 = int(tf.sum())
    if min(n1, n - n1) < 2:
        raise ValueError(f"each arm needs at least 2 units, got {n1} treated and {n - n1} control")
    return x, tf, y


def _column_kinds(x: np.ndarray) -> dict[str, np.ndarray]:
    """(d,) boolean masks: binary, categorical, continuous, skewed, semicontinuous."""
    d = x.shape[1]
    s = np.sort(x, axis=0)
    change = s[1:] != s[:-1]  # (N-1, d): where a sorted column steps to its next level
    levels = 1 + np.count_nonzero(change, axis=0)
    # integer-valued is only asked of columns with 3-10 levels, and only of their level values
    # (a few per column), not of all N cells: rounding every cell was the costliest step here
    cand = np.flatnonzero((levels >= 3) & (levels <= 10))
    rows, cols = np.nonzero(change[:, cand])
    vals = np.concatenate([s[0, cand], s[1:, cand][rows, cols]])
    owner = np.concatenate([np.arange(cand.size), cols])
    fractional = np.bincount(owner[vals != np.round(vals)], minlength=cand.size)
    categorical = np.zeros(d, dtype=bool)
    categorical[cand] = fractional == 0
    binary = levels == 2
    continuous = (levels > 2) & ~categorical
    c = x - x.mean(axis=0)
    m2 = np.mean(c * c, axis=0)
    m3 = np.mean(c * c * c, axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        g1 = np.where(m2 > 0, m3 / np.where(m2 > 0, m2, 1.0) ** 1.5, 0.0)
    zero = x == 0.0
    semicontinuous = (zero.mean(axis=0) >= 0.1) & np.all(zero | (x > 0.0), axis=0)
    return {"binary": binary, "categorical": categorical, "continuous": continuous,
            "skewed": np.abs(g1) > 2.0, "semicontinuous": semicontinuous}


def _stratified_subsample(t: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """Sorted indices of `size` units, each arm in proportion (at least 2 of each)."""
    treated, control = np.flatnonzero(t == 1.0), np.flatnonzero(t == 0.0)
    n1 = int(np.clip(round(size * len(treated) / len(t)), 2, size - 2))
    n1 = min(n1, len(treated))
    n0 = min(size - n1, len(control))
    return np.sort(np.concatenate([rng.choice(treated, n1, replace=False), rng.choice(control, n0, replace=False)]))


def _folds(t: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """(N,) fold labels 0..k-1, each arm dealt round-robin in a random order.

    Stratifying by arm keeps both arms in every training fold (each arm has >= 2 units), so
    every fold's logistic intercept stays finite.
    """
    order = rng.permutation(len(t))
    arm = t[order] == 1.0
    rank = np.empty(len(t), dtype=np.int64)
    rank[arm] = np.arange(int(arm.sum()))
    # the control arm continues where the treated one stopped, so fold sizes differ by at most 1
    rank[~arm] = np.arange(int((~arm).sum())) + int(arm.sum())
    folds = np.empty(len(t), dtype=np.int64)
    folds[order] = rank % k
    return folds


def _standardise(x: np.ndarray, binary: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """z: the non-constant columns of x centred and scaled to unit sd; and which of them are not binary.

    Constant columns carry no information and would make the Gram matrices singular; they are
    dropped. The scaling uses every unit (it reads no t or y, so cross-fitting stays honest).
    """
    mean = x.mean(axis=0)
    sd = x.std(axis=0)
    keep = sd > 1e-12 * (1.0 + np.abs(mean))
    z = (x[:, keep] - mean[keep]) / sd[keep]
    return z, ~binary[keep]


def _sigmoid(eta: np.ndarray) -> np.ndarray:
    # tanh form: no overflow for any eta, unlike 1 / (1 + exp(-eta))
    return 0.5 * (1.0 + np.tanh(0.5 * eta))


def _propensity_oof(z: np.ndarray, t: np.ndarray, folds: np.ndarray, lam: float,
                    max_iter: int = 50, tol: float = 1e-10) -> np.ndarray:
    """(N,) out-of-fold propensities of the L2-penalised logistic regression of t on z.

    The K fold fits run together: training fold k is the mask ``M[k] = folds != k`` over all N
    units, so each Newton step is one batched (K, q, q) solve. Each step is damped by a batched
    Armijo backtracking over step sizes 1, 1/2, ..., 1/64, which keeps the objective decreasing
    when the data are (nearly) separable and the Hessian nearly singular.
    """
    n = len(t)
    k = int(folds.max()) + 1
    zi = np.hstack([np.ones((n, 1)), z])  # (N, q), intercept first
    q = zi.shape[1]
    pen = np.full(q, float(lam))
    pen[0] = 1e-6  # the intercept: a token penalty, only so that H is positive definite
    mask = (folds[None, :] != np.arange(k)[:, None]).astype(np.float64)  # (K, N)
    share = np.clip((mask @ t) / mask.sum(axis=1), 1e-3, 1 - 1e-3)
    beta = np.zeros((k, q))
    beta[:, 0] = np.log(share / (1 - share))
    steps = 0.5 ** np.arange(7)  # (S,)

    def objective(eta: np.ndarray, b: np.ndarray) -> np.ndarray:
        # eta (..., K, N), b (..., K, q) -> (..., K)
        return np.sum(mask * (np.logaddexp(0.0, eta) - t * eta), axis=-1) + 0.5 * np.sum(pen * b * b, axis=-1)

    eta = beta @ zi.T  # (K, N)
    for _ in range(max_iter):
        e = _sigmoid(eta)
        grad = (mask * (e - t)) @ zi + pen * beta  # (K, q)
        w = mask * e * (1.0 - e)
        hess = np.matmul(zi.T[None, :, :] * w[:, None, :], zi) + np.diag(pen)  # (K, q, q)
        delta = np.linalg.solve(hess, grad[:, :, None])[:, :, 0]  # Newton direction (to subtract)
        decrement = np.sum(grad * delta, axis=1)  # (K,) >= 0
        if np.max(decrement) < tol:
            break
        d_eta = delta @ zi.T
        cand_eta = eta[None] - steps[:, None, None] * d_eta[None]  # (S, K, N)
        cand_beta = beta[None] - steps[:, None, None] * delta[None]
        f = objective(cand_eta, cand_beta)  # (S, K)
        f0 = objective(eta, beta)
        ok = f <= f0[None] - 1e-4 * steps[:, None] * decrement[None]
        # the largest step passing Armijo's test, else the best candidate
        pick = np.where(ok.any(axis=0), np.argmax(ok, axis=0), np.argmin(f, axis=0))
        cols = np.arange(k)
        beta = cand_beta[pick, cols]
        eta = cand_eta[pick, cols]
    e = _sigmoid(eta)
    return e[folds, np.arange(n)]


def _ridge_oof(f: np.ndarray, y: np.ndarray, folds: np.ndarray, n_grid: int = 25) -> np.ndarray:
    """(N,) out-of-fold predictions of ridge regressions of y on features f (N, p).

    Per training fold, with the intercept unpenalised (features and y centred on the fold):
    ``beta = (F'F + lam I)^-1 F'y``, lam the minimiser over a log grid of the exact leave-one-out
    error ``PRESS = sum_i (r_i / (1 - h_ii))^2`` (r the residuals, h the hat matrix's diagonal,
    ``1/n + sum_k (F v_k)_i^2 / (s_k + lam)`` with ``F'F = V diag(s) V'``). GCV, its cheaper
    cousin, breaks down when p >= n (it tends to 0 as the fit interpolates); PRESS does not.
    One eigendecomposition serves the whole grid. The training Grams are the total Gram minus
    each fold's own, so all folds together cost O(N p^2 + K p^3 + N p G).
    """
    k = int(folds.max()) + 1
    n, p = f.shape
    pred = np.empty(n)
    parts = [np.flatnonzero(folds == j) for j in range(k)]
    grams = [f[i].T @ f[i] for i in parts]
    gram_all = np.sum(grams, axis=0)
    fs_all = f.sum(axis=0)
    for j, idx in enumerate(parts):
        train = folds != j
        nt = n - len(idx)
        m = (fs_all - f[idx].sum(axis=0)) / nt
        fc = f[train] - m
        yc = y[train] - y[train].mean()
        g = gram_all - grams[j] - nt * np.outer(m, m)
        s, v = np.linalg.eigh(g)
        s = np.maximum(s, 0.0)
        a = fc @ v  # (n_t, p): the training rows in the eigenbasis
        u = a.T @ yc
        scale = max(float(s.mean()), 1e-12)
        inv = 1.0 / (s[:, None] + scale * np.logspace(-5, 3, n_grid)[None, :])  # (p, G)
        resid = yc[:, None] - a @ (u[:, None] * inv)  # (n_t, G)
        lev = 1.0 / nt + (a * a) @ inv
        press = np.sum((resid / np.maximum(1.0 - lev, 1e-12)) ** 2, axis=0)
        best = int(np.argmin(press))
        beta = v @ (u * inv[:, best])
        pred[idx] = y[train].mean() + (f[idx] - m) @ beta
    return pred


def _r2(y: np.ndarray, pred: np.ndarray) -> float:
    ss = float(np.sum((y - y.mean()) ** 2))
    if ss <= 0.0:  # a constant outcome: nothing to explain
        return 0.0
    return 1.0 - float(np.sum((y - pred) ** 2)) / ss


def _nonlinear_features(z: np.ndarray, nonbinary: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """[z, standardised squares of z's non-binary columns, N_FOURIER random Fourier features]."""
    n, p = z.shape
    sq = z[:, nonbinary] ** 2
    if p:
        w = rng.standard_normal((p, N_FOURIER)) / np.sqrt(p)
        rff = np.cos(z @ w + rng.uniform(0.0, 2 * np.pi, N_FOURIER))
    else:
        rff = np.empty((n, 0))
    extra = np.hstack([sq, rff])
    sd = extra.std(axis=0)
    keep = sd > 1e-12
    extra = (extra[:, keep] - extra[:, keep].mean(axis=0)) / sd[keep]
    return np.hstack([z, extra])


def _overlap_area(e: np.ndarray, t: np.ndarray) -> float:
    edges = np.linspace(0.0, 1.0, OVERLAP_BINS + 1)
    h1 = np.histogram(e[t == 1.0], bins=edges)[0] / max(1, int(np.sum(t == 1.0)))
    h0 = np.histogram(e[t == 0.0], bins=edges)[0] / max(1, int(np.sum(t == 0.0)))
    return float(np.minimum(h1, h0).sum())


# --------------------------------------------------------------------------------------------
# a prior


def prior_task_seed(seed: int, index: int) -> int:
    """Seed of the prior's task `index`: the seed `causalgen generate --seed SEED` gives task `index`.

    The same derivation as `causalgen.store.manifest.task_seed` (SeedSequence of (seed, index),
    a 63-bit int), repeated here because this room may not import the store; a test keeps the
    two equal. So the prior described is the first `n_tasks` tasks of that corpus.
    """
    ss = np.random.SeedSequence(entropy=int(seed), spawn_key=(int(index),))
    return int(ss.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))


def prior_descriptors(config, n_tasks: int = 500, seed: int = 0, *, batch: int = 100) -> dict[str, np.ndarray]:
    """Descriptors of `n_tasks` tasks of a prior: ``{name: (n_tasks,) float64}`` in `DESCRIPTORS` order.

    config: a preset name, `TaskConfig`, YAML/JSON path or dict (`load_config`). Task i has seed
    ``prior_task_seed(seed, i)``, so the result is a pure function of (config, n_tasks, seed).
    Tasks are sampled `batch` at a time, so memory stays that of one batch.
    """
    from .presets import load_config
    from .sampler import sample_tasks

    if n_tasks < 1:
        raise ValueError(f"n_tasks must be >= 1, got {n_tasks}")
    cfg = load_config(config)
    out = {name: np.empty(n_tasks) for name in DESCRIPTORS}
    for start in range(0, n_tasks, batch):
        seeds = [prior_task_seed(seed, i) for i in range(start, min(n_tasks, start + batch))]
        for i, task in enumerate(sample_tasks(cfg, seeds), start=start):
            for name, value in describe(task.x, task.t, task.y).items():
                out[name][i] = value
    return out


# --------------------------------------------------------------------------------------------
# the report


def percentile_of(value: float, values: np.ndarray) -> float:
    """Mid-rank percentile of `value` among `values`: ``100 (#{v < value} + #{v == value}/2) / n``.

    Ties count half, so a value equal to every prior task's (a fixed N, say) sits at 50, not at
    0 or 100. Non-finite entries of `values` are ignored; NaN when none is left or value is NaN.
    """
    a = np.asarray(values, dtype=np.float64)
    a = a[np.isfinite(a)]
    if not a.size or not np.isfinite(value):
        return float("nan")
    return float(100.0 * (np.sum(a < value) + 0.5 * np.sum(a == value)) / a.size)


def coverage_report(user: Mapping[str, float], prior: Mapping[str, np.ndarray]) -> list[dict[str, Any]]:
    """One row per descriptor present in both: where the user's value sits within the prior.

    Row keys: ``descriptor``, ``value`` (the user's), ``percentile`` (mid-rank, see
    `percentile_of`), ``prior_p01`` / ``prior_p50`` / ``prior_p99`` (the prior's 1st, 50th and
    99th percentiles), ``prior_min`` / ``prior_max``, ``n_prior`` (finite prior values) and
    ``outside``: True when the percentile is below 1 or above 99, or the value lies outside
    [prior_min, prior_max]. Rows follow `DESCRIPTORS`, then any other shared keys in the prior's order.
    """
    names = [k for k in DESCRIPTORS if k in prior and k in user]
    names += [k for k in prior if k not in DESCRIPTORS and k in user]
    rows = []
    for name in names:
        a = np.asarray(prior[name], dtype=np.float64)
        a = a[np.isfinite(a)]
        v = float(user[name])
        pct = percentile_of(v, a)
        if a.size:
            p01, p50, p99 = (float(q) for q in np.percentile(a, [1.0, 50.0, 99.0]))
            lo, hi = float(a.min()), float(a.max())
        else:
            p01 = p50 = p99 = lo = hi = float("nan")
        outside = bool(np.isfinite(pct) and (pct < OUTSIDE_LOW or pct > OUTSIDE_HIGH or v < lo or v > hi))
        rows.append({"descriptor": name, "value": v, "percentile": pct, "prior_p01": p01, "prior_p50": p50,
                     "prior_p99": p99, "prior_min": lo, "prior_max": hi, "n_prior": int(a.size), "outside": outside})
    return rows


def outside_descriptors(report: Sequence[Mapping[str, Any]]) -> list[str]:
    """Names of the report's rows flagged outside, in report order."""
    return [r["descriptor"] for r in report if r["outside"]]


def format_report(report: Sequence[Mapping[str, Any]], title: str | None = None) -> str:
    """The report as a fixed-width text table, a ``<-- outside`` mark on flagged rows, and a verdict line."""

    def num(v: float) -> str:
        return "nan" if not np.isfinite(v) else f"{v:.4g}"

    head = ("descriptor", "value", "pctile", "prior p1", "p50", "p99")
    body = [(r["descriptor"], num(r["value"]), "nan" if not np.isfinite(r["percentile"]) else f"{r['percentile']:.1f}",
             num(r["prior_p01"]), num(r["prior_p50"]), num(r["prior_p99"])) for r in report]
    widths = [max(len(row[c]) for row in [head, *body]) for c in range(len(head))]

    def line(cells) -> str:
        return "  ".join(cell.ljust(widths[0]) if c == 0 else cell.rjust(widths[c]) for c, cell in enumerate(cells))

    lines = [title] if title else []
    lines.append(line(head))
    for r, row in zip(report, body):
        lines.append(line(row) + ("  <-- outside" if r["outside"] else ""))
    flagged = outside_descriptors(report)
    n_prior = max((r["n_prior"] for r in report), default=0)
    lines.append(f"outside the prior's 1-99% band ({n_prior} tasks): {', '.join(flagged)}" if flagged
                 else f"every descriptor inside the prior's 1-99% band ({n_prior} tasks)")
    return "\n".join(lines)


def coverage_figure(user: Mapping[str, float], prior: Mapping[str, np.ndarray], path: str | os.PathLike,
                    *, title: str | None = None) -> None:
    """Write a PNG (or any format matplotlib knows from the suffix): one panel per descriptor.

    Each panel is the prior's histogram with the user's value as a vertical line; descriptors
    flagged outside (see `coverage_report`) get a red line, a tinted panel and "outside" in the
    title. Uses matplotlib's object API (no pyplot), so it sets no global state.
    """
    from matplotlib.figure import Figure

    report = coverage_report(user, prior)
    n = len(report)
    if not n:
        raise ValueError("no descriptor is in both the user's and the prior's dict: nothing to draw")
    ncols = min(4, max(1, n))
    nrows = (n + ncols - 1) // ncols
    # fixed margins: a constrained layout costs seconds for 16 panels and gains little here
    fig = Figure(figsize=(3.4 * ncols, 2.5 * nrows))
    fig.subplots_adjust(left=0.03, right=0.98, bottom=0.05, top=1 - 0.5 / (2.5 * nrows) - 0.04, wspace=0.12, hspace=0.75)
    axes = [fig.add_subplot(nrows, ncols, i + 1) for i in range(n)]  # no hidden spare panels to build
    for ax, row in zip(axes, report):
        a = np.asarray(prior[row["descriptor"]], dtype=np.float64)
        a = a[np.isfinite(a)]
        v = row["value"]
        levels, counts = np.unique(a, return_counts=True)
        if not levels.size or not np.isfinite(v):
            ax.set_title(f"{row['descriptor']}\n(no finite values)", fontsize=9)
            continue
        if levels.size > 12:
            lo, hi = min(a.min(), v), max(a.max(), v)
            ax.hist(a, bins=np.linspace(lo, hi, 31), color="0.6", edgecolor="white")
        else:
            # few distinct values (N of a fixed-size preset, column shares): one bar per value,
            # centred on it, so the user's line at an equal value runs through the bar
            span = max(float(levels[-1]), v) - min(float(levels[0]), v)
            width = 0.8 * float(np.min(np.diff(levels))) if levels.size > 1 else 0.1 * (span or max(1.0, abs(v)))
            width = max(width, 0.03 * span)
            ax.bar(levels, counts, width=width, color="0.6", edgecolor="white")
            ax.set_xlim(min(float(levels[0]), v) - width, max(float(levels[-1]), v) + width)
        color = "tab:red" if row["outside"] else "tab:blue"
        ax.axvline(v, color=color, linewidth=2)
        if row["outside"]:
            ax.set_facecolor("#fde8e8")
        pct = row["percentile"]
        ax.set_title(f"{row['descriptor']}\n{v:.3g} (pct {pct:.0f}){'  OUTSIDE' if row['outside'] else ''}",
                     fontsize=9, color=color if row["outside"] else "black")
        ax.tick_params(labelsize=7)
        ax.set_yticks([])
    if title:
        fig.suptitle(title, fontsize=10)
    fig.savefig(os.fspath(path), dpi=100)
