"""Measurement: the observation type of a node, and the distortion its column in x may carry.

A node's *latent* value s is what the SCM computes for it (a root: its noise; an inner node:
its standardised mechanism output plus noise, as before). A typed node turns s into its
observed value v = type(s), and everything downstream sees v: its children read v
standardised on the task's own units, and x holds v itself. The DAG semantics stay exact: v is
the node. The types (COVARIATE_TYPES) and their maps, with parameters drawn per node:

    continuous      v = s
    binary          v = 1[s > c]                       c: s's (1 - p) quantile, p ~ binary_share
    ordinal         v = #{i : s > c_i}, 0 .. k-1       c_i: quantiles at random cumulative shares
    categorical     v = perm(ordinal code)             a random permutation of the k codes: the
                                                       integer codes carry no order
    count           v = floor(mu exp(sigma s))         mu in [0.5, 8], sigma in [0.3, 1]
    semicontinuous  v = 0 if s <= c else scale (exp(sigma (s - c)) - 1)
                                                       c: s's zero_share quantile; scale in
                                                       [1, 1e4] (earnings-like), sigma in [0.5, 1.5]
    bounded         v = sigmoid(a s + b)               in (0, 1); a in [0.5, 3], b in [-2, 2]
    skewed          v = scale exp(sigma s)             log-normal-like; sigma in [0.7, 1.5]

Quantiles are taken on the task's own (factual) units, like every standardisation constant,
and then fixed, so fresh Monte-Carlo units see the same measurement.

A *distorted* continuous column is x = g(z), with z the node's value as its children read it
and g a random increasing map (DISTORTIONS): exp(a z), z^3, sign(z)|z|^p, z / (c + |z|). The
information is all there, on a scale the estimator does not see.

Uniforms: every node draws `UNIFORMS_PER_NODE` float64 uniforms for all of this (whether it
uses them or not), so one setting never shifts another's draws.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .config import COVARIATE_TYPES, DISTORTIONS, MAX_LEVELS, CovariateConfig
from .mixture import Mixture

F32 = np.float32
CONTINUOUS, BINARY, ORDINAL, CATEGORICAL, COUNT, SEMICONTINUOUS, BOUNDED, SKEWED = range(len(COVARIATE_TYPES))
#: types whose values are integers (x holds them exactly)
INTEGER_TYPES = (BINARY, ORDINAL, CATEGORICAL, COUNT)
_CUTS = MAX_LEVELS - 1
#: per node: type, share, levels, two shape parameters, distortion (decision, choice,
#: parameter), weak signal (decision, scale), then cut shares and permutation keys
UNIFORMS_PER_NODE = 10 + _CUTS + MAX_LEVELS
#: smallest share of units at any ordinal / categorical level
_MIN_LEVEL_SHARE = 0.05


@dataclass
class Measurement:
    """Per-node measurement of B tasks with J (padded) nodes.

    obs_type: (B, J) int8 COVARIATE_TYPES code (CONTINUOUS where not typed).
    levels: (B, J) int64 number of levels (ordinal, categorical).
    cut_q: (B, J, MAX_LEVELS - 1) float32 quantile levels of the cut points in (0, 1), in
        increasing order, 2.0 where unused (binary: one cut; semicontinuous: the zero cut).
    perm: (B, J, MAX_LEVELS) int64 the categorical code of each ordinal level.
    shape_a, shape_b: (B, J) float32 the two shape parameters of count (mu, sigma),
        semicontinuous (sigma, scale), bounded (a, b) and skewed (sigma, scale) nodes.
    distortion: (B, J) int8, -1 for none, else a DISTORTIONS code; distortion_par: (B, J).
    read_scale: (B, J + 1) float32 factor by which children read each node (1, or the weak
        scale of a weak-signal covariate; entry J is the dummy parent).
    """

    obs_type: np.ndarray
    levels: np.ndarray
    cut_q: np.ndarray
    perm: np.ndarray
    shape_a: np.ndarray
    shape_b: np.ndarray
    distortion: np.ndarray
    distortion_par: np.ndarray
    read_scale: np.ndarray

    def take(self, idx) -> "Measurement":
        return Measurement(**{k: v[idx] for k, v in self.__dict__.items()})


def _range(lo_hi, u):
    lo, hi = lo_hi
    return lo + (hi - lo) * u


def _log_range(lo, hi, u):
    return np.exp(np.log(lo) + (np.log(hi) - np.log(lo)) * u)


def draw_measurement(cfg: CovariateConfig, u: np.ndarray, measured: np.ndarray, pre_treatment: np.ndarray) -> Measurement:
    """The measurement of every node from its uniforms.

    u: (B, J, UNIFORMS_PER_NODE) float64; measured: (B, J) bool nodes that may be typed (every
    simulated node but T and Y); pre_treatment: (B, J) bool nodes that may be weak covariates.
    """
    B, J, _ = u.shape
    obs_type = np.where(measured, Mixture(cfg.types, COVARIATE_TYPES).codes_for(u[..., 0]), CONTINUOUS).astype(np.int8)
    binary_share = _range(cfg.binary_share, u[..., 1])
    zero_share = _range(cfg.zero_share, u[..., 1])
    lo, hi = cfg.levels
    levels = np.minimum(hi, lo + (u[..., 2] * (hi - lo + 1)).astype(np.int64))
    # ordinal / categorical cut points: cumulative shares of k levels, each at least 5%
    idx = np.arange(_CUTS)
    valid = idx[None, None, :] < (levels - 1)[..., None]
    free = np.sort(np.where(valid, u[..., 10 : 10 + _CUTS], 1.0), axis=-1)  # k - 1 sorted uniforms
    ordinal_q = _MIN_LEVEL_SHARE * (idx + 1)[None, None, :] + (1.0 - _MIN_LEVEL_SHARE * levels[..., None]) * free
    cut_q = np.full((B, J, _CUTS), 2.0)
    is_level = (obs_type == ORDINAL) | (obs_type == CATEGORICAL)
    cut_q = np.where(is_level[..., None] & valid, ordinal_q, cut_q)
    cut_q[..., 0] = np.where(obs_type == BINARY, 1.0 - binary_share, cut_q[..., 0])
    cut_q[..., 0] = np.where(obs_type == SEMICONTINUOUS, zero_share, cut_q[..., 0])
    keys = np.where(np.arange(MAX_LEVELS)[None, None, :] < levels[..., None], u[..., 10 + _CUTS :], 2.0)
    perm = np.argsort(keys, axis=-1, kind="stable")
    a, b = u[..., 3], u[..., 4]
    shape_a = np.select([obs_type == COUNT, obs_type == SEMICONTINUOUS, obs_type == BOUNDED, obs_type == SKEWED],
                        [_log_range(0.5, 8.0, a), 0.5 + a, 0.5 + 2.5 * a, 0.7 + 0.8 * a], 0.0)
    shape_b = np.select([obs_type == COUNT, obs_type == SEMICONTINUOUS, obs_type == BOUNDED, obs_type == SKEWED],
                        [0.3 + 0.7 * b, _log_range(1.0, 1e4, b), -2.0 + 4.0 * b, _log_range(0.1, 100.0, b)], 0.0)
    distorted = measured & (obs_type == CONTINUOUS) & (u[..., 5] < cfg.distortion_prob)
    distortion = np.where(distorted, Mixture(cfg.distortions, DISTORTIONS).codes_for(u[..., 6]), -1).astype(np.int8)
    weak = pre_treatment & (u[..., 8] < cfg.weak_prob)
    read_scale = np.ones((B, J + 1), F32)
    read_scale[:, :J] = np.where(weak, _range(cfg.weak_scale, u[..., 9]), 1.0)
    return Measurement(obs_type=obs_type, levels=levels, cut_q=cut_q.astype(F32), perm=perm,
                       shape_a=shape_a.astype(F32), shape_b=shape_b.astype(F32), distortion=distortion,
                       distortion_par=u[..., 7].astype(F32), read_scale=read_scale)


# ------------------------------------------------------------------ types


def row_quantiles(s: np.ndarray, n_units: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Quantiles of each row over its first n units: s (R, N), n_units (R,), q (R, K) levels in
    (0, 1] (levels > 1 give +inf). Lower empirical quantile: the value at rank floor(q (n - 1))."""
    out = np.full(q.shape, np.inf, dtype=F32)
    for r in range(len(s)):
        n = int(n_units[r])
        used = q[r] <= 1.0
        if not used.any():
            continue
        ranks = np.floor(q[r, used] * (n - 1)).astype(np.int64)
        out[r, used] = np.partition(s[r, :n], np.unique(ranks))[ranks]
    return out


def typed_values(s: np.ndarray, m: Measurement, tasks: np.ndarray, j: int, cuts: np.ndarray) -> np.ndarray:
    """v = type(s) for rows of node j: s (R, N) latent values, tasks (R,) their task ids, cuts
    (R, MAX_LEVELS - 1) the calibrated cut points (`row_quantiles`). Returns (R, N) float32."""
    code = m.obs_type[tasks, j]
    a, b = m.shape_a[tasks, j][:, None], m.shape_b[tasks, j][:, None]
    v = np.empty_like(s)
    for t in np.unique(code):
        sel = np.flatnonzero(code == t)
        x = s[sel]
        if t == CONTINUOUS:
            out = x
        elif t in (BINARY, ORDINAL, CATEGORICAL):
            out = np.zeros_like(x)
            for i in range(_CUTS):  # unused cuts are +inf
                out += x > cuts[sel, i, None]
            if t == CATEGORICAL:
                perm = m.perm[tasks[sel], j]
                out = np.take_along_axis(perm, out.astype(np.int64), axis=1).astype(F32)
        elif t == COUNT:
            out = np.floor(a[sel] * np.exp(np.minimum(b[sel] * x, F32(30.0))))
        elif t == SEMICONTINUOUS:
            c = cuts[sel, 0, None]
            out = np.where(x <= c, F32(0.0), b[sel] * np.expm1(np.minimum(a[sel] * (x - c), F32(30.0))))
        elif t == BOUNDED:
            out = F32(1.0) / (F32(1.0) + np.exp(-np.clip(a[sel] * x + b[sel], F32(-30.0), F32(30.0))))
        else:  # SKEWED
            out = b[sel] * np.exp(np.minimum(a[sel] * x, F32(30.0)))
        v[sel] = out
    return v


def observed_values(z: np.ndarray, codes: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """What x holds for typed columns, from z (N, d), the values the children read
    (standardise(v) with the calibrated mean, std (d,)): v = z std + mean, with integer types
    rounded (exact) and the zero mass of semicontinuous columns restored bit for bit."""
    v = (z * std + mean).astype(F32)
    ints = np.isin(codes, INTEGER_TYPES)
    v[:, ints] = np.rint(v[:, ints])
    semi = codes == SEMICONTINUOUS
    if semi.any():
        zero = (F32(0.0) - mean[semi]) / std[semi]  # the same float32 steps as standardisation
        v[:, semi] = np.where(z[:, semi] == zero, F32(0.0), np.maximum(v[:, semi], F32(0.0)))
    bounded = codes == BOUNDED
    v[:, bounded] = np.clip(v[:, bounded], F32(0.0), F32(1.0))
    skewed = codes == SKEWED
    v[:, skewed] = np.maximum(v[:, skewed], F32(0.0))
    return v


def distort(z: np.ndarray, codes: np.ndarray, par: np.ndarray) -> np.ndarray:
    """x = g(z) for distorted columns: z (N, d) node values, codes (d,) DISTORTIONS codes (-1 =
    none), par (d,) uniforms setting each map's parameter. Every map is increasing."""
    x = z.astype(F32, copy=True)
    for k, name in enumerate(DISTORTIONS):
        sel = codes == k
        if not sel.any():
            continue
        c, p = z[:, sel], par[sel]
        if name == "exp":
            x[:, sel] = np.exp(np.minimum((F32(0.5) + p) * c, F32(30.0)))
        elif name == "cube":
            x[:, sel] = c * c * c
        elif name == "power":  # p < 1/2: a concave root, else a convex power
            expo = np.where(p < 0.5, F32(1.0) / (F32(1.65) + F32(2.7) * p), F32(0.3) + F32(2.7) * p).astype(F32)
            x[:, sel] = np.sign(c) * np.abs(c) ** expo
        else:  # ratio
            x[:, sel] = c / (F32(0.2) + F32(1.8) * p + np.abs(c))
    return x


__all__ = ["COVARIATE_TYPES", "DISTORTIONS", "INTEGER_TYPES", "Measurement", "UNIFORMS_PER_NODE", "distort",
           "draw_measurement", "observed_values", "row_quantiles", "typed_values"]
