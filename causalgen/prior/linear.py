"""Linear fast path: tasks whose every simulated node is linear with additive,
homoscedastic noise (and a linear treatment score and effect modifier).

Then every node is an affine function of the task's noise and of T. In world w,
    x_j = a_j . eps + b_j + g_j w,
and its factual value is the same with w = t. Standardising such a node needs
only the mean and variance of an affine form over the factual sample, and those
follow from the moment matrix of z = [eps_0 .. eps_{J-1}, 1, t]. So instead of
simulating N units node by node, `simulate_linear` propagates coefficient
vectors (tiny (B, J + 2) algebra in float64) and touches the units only three
times per task:
  - the Gram matrix of [eps; 1]: one (J+1) x N x (J+1) product;
  - the treatment: its score row, calibrated propensity and the draw of t;
  - the outputs: every node in world 0, plus y1, in one (J+1) x (J+1) x N product.

Results agree with the generic simulator (scm.py) to float32 rounding (tests),
and the standardisation constants are returned in the same `Calibration`
format, so the closed-form ATE and any Monte-Carlo check use them unchanged.
"""

from __future__ import annotations

import numpy as np

from .config import MECHANISMS
from .scm import (INNER, ROOT, SKIP, TREATMENT, BatchSCM, Calibration, Workspace, buffer_or_empty, calibrate_offset,
                  propensity)

F32 = np.float32
LINEAR = MECHANISMS.index("linear")


def is_linear(scm: BatchSCM) -> np.ndarray:
    """(B,) bool: every computed node (the treatment score included) is linear,
    with additive homoscedastic noise and a linear effect modifier, and nothing of the wider
    prior (typed or weak nodes, a binary outcome; `BatchSCM.plain`)."""
    computed = scm.kind >= INNER
    ok = ~np.any(computed & (scm.family != LINEAR), axis=1)
    ok &= ~np.any(computed & (scm.hetero | scm.pnl), axis=1)
    return ok & ~scm.mod_tanh & scm.plain()


class _Moments:
    """Factual-sample moments E[z z^T] of z = [eps (J), 1, t], (B, D, D) float64."""

    def __init__(self, gram: np.ndarray, n: np.ndarray):
        b, j1, _ = gram.shape
        self.const = j1 - 1  # index of the constant 1
        self.t = j1  # index of t
        self.m = np.zeros((b, j1 + 1, j1 + 1))
        self.m[:, :j1, :j1] = gram / n[:, None, None]

    def add_treatment(self, sel: np.ndarray, et: np.ndarray, n: np.ndarray):
        """et: (b, J + 1) sums of [eps; 1] * t over the sample, for tasks sel."""
        c, t = self.const, self.t
        self.m[sel, : c + 1, t] = et / n[:, None]
        self.m[sel, t, : c + 1] = et / n[:, None]
        self.m[sel, t, t] = et[:, c] / n  # t^2 = t

    def standardise(self, coef: np.ndarray, sel: np.ndarray):
        """Standardise affine forms coef (b, D) of tasks sel over the factual
        sample; returns (standardised coef, mean, std), mean/std as float32 so
        they describe the transform exactly as the generic simulator stores it."""
        m = self.m[sel]
        mean = np.sum(coef * m[:, self.const], axis=1)
        second = np.sum(np.sum(coef[:, :, None] * m, axis=1) * coef, axis=1)
        std = np.sqrt(np.maximum(second - mean * mean, 0.0)).astype(F32)
        # A (numerically) constant signal carries no information: map it to 0.
        std = np.where(std > F32(1e-6), std, F32(1.0)).astype(F32)
        mean = mean.astype(F32)
        out = coef.copy()
        out[:, self.const] -= mean
        out /= std.astype(np.float64)[:, None]
        return out, mean, std


def simulate_linear(scm: BatchSCM, z: np.ndarray, n_units: np.ndarray, cal: Calibration, noise_bound: np.ndarray,
                    workspace: Workspace | None = None):
    """Factual sample and potential outcomes of linear tasks.

    z: (B, J + 2, N) the batch's noise rows per task (draft.Noise.z: node j in
    row j, the treatment's row holding uniforms, then ones on the real units and
    zeros); n_units: (B,) real units; noise_bound: (B, J) the largest |noise|
    node j's family can produce (noise.NOISE_BOUND). Fills `cal` (an empty
    Calibration for these B tasks) and returns (node0 (B, J, N) every node in
    world do(T=0), y1 (B, N), t (B, N) bool, propensity (B, N), ate (B,),
    bound (B, J + 1)).

    The population ATE is exact: the noise has mean zero, so E[Y(1) - Y(0)] is
    the difference of the constant terms of y1 and y0. bound[:, r] bounds
    |output row r| over all units (rows: the nodes, then y1), from
    sum_k |a_rk| max|eps_k| + |constant|: QC needs no pass over the outputs
    unless a bound exceeds its threshold.
    With a `workspace`, node0 and y1 are views of its "linear_values" buffer.
    """
    n_tasks, n_nodes = scm.kind.shape
    rows = np.arange(n_tasks)
    n = n_units.astype(np.float64)
    mask = z[:, n_nodes]
    const = n_nodes  # basis index of the constant; n_nodes + 1 is t

    # The treatment's uniforms, then zero noise on padded units so that sums
    # run over the real units (units are padded by < 64 at the end).
    u_treat = z[rows, scm.treatment].copy()
    tail = int(n_units.min())
    z[:, :n_nodes, tail:] *= mask[:, None, tail:]
    # E[z z^T] over [eps; 1]; multiplying by all J + 2 rows (the last is zero)
    # keeps numpy on gemm rather than its much slower syrk path for A A^T.
    gram = np.matmul(z[:, : const + 1], z.transpose(0, 2, 1))[:, :, : const + 1]
    moments = _Moments(gram.astype(np.float64), n)

    coef = np.zeros((n_tasks, n_nodes + 1, n_nodes + 2))  # over [eps, 1, t]; row J: dummy
    w = scm.params["linear"]["w"].astype(np.float64)
    two = scm.two_worlds
    computed = scm.kind >= INNER
    noisy = (scm.kind != SKIP) & (scm.kind != TREATMENT)
    score = np.zeros((n_tasks, n_nodes + 2))

    # 1. nodes that do not descend from T (they never involve t), T's score
    for j in range(n_nodes):
        coef[scm.kind[:, j] == ROOT, j, j] = 1.0
        sel = np.flatnonzero(computed[:, j] & ~two[:, j])
        if len(sel) == 0:
            continue
        s = _weighted(coef, scm.slots[sel, j], w[sel, j], sel, scm.n_parents[sel, j])
        sig, cal.mean["sig"][sel, j], cal.std["sig"][sel, j] = moments.standardise(s, sel)
        is_t = scm.kind[sel, j] == TREATMENT
        score[sel[is_t]] = sig[is_t]
        _noise_and_outcome(scm, j, sel[~is_t], sig[~is_t], coef, moments, cal)

    # 2. the treatment of every task: score row, calibrated propensity, t
    strength = scm.strength.astype(F32)
    score_row = np.matmul(score[:, None, : const + 1].astype(F32), z[:, : const + 1])[:, 0]
    cal.offset[:] = calibrate_offset(score_row, strength, scm.share.astype(F32), mask, n_units.astype(F32))
    e = propensity(score_row, strength, cal.offset, scm.clip)
    t = u_treat < e
    et = np.matmul(z[:, : const + 1], (t & (mask > 0)).astype(F32)[:, :, None])[:, :, 0]
    moments.add_treatment(rows, et.astype(np.float64), n)
    coef[rows, scm.treatment, const + 1] = 1.0

    # 3. descendants of T: their forms involve t (world w: t := w)
    for j in range(n_nodes):
        sel = np.flatnonzero(computed[:, j] & two[:, j])
        if len(sel) == 0:
            continue
        s = _weighted(coef, scm.slots[sel, j], w[sel, j], sel, scm.n_parents[sel, j])
        sig, cal.mean["sig"][sel, j], cal.std["sig"][sel, j] = moments.standardise(s, sel)
        _noise_and_outcome(scm, j, sel, sig, coef, moments, cal)

    # outputs: world 0 (t := 0) for every node, then y1, in one product with [eps; 1]
    y1_coef = _world1_outcome(scm, coef, moments, cal)
    a = np.concatenate([coef[:, :n_nodes, : const + 1], y1_coef[:, None, : const + 1]], axis=1).astype(F32)
    z[rows, scm.treatment] = 0.0  # T's own row carries no noise (its coefficients are 0 anyway)
    # (the output is ~10 MB per batch: a reused buffer spares the page faults of a fresh one)
    out = buffer_or_empty(workspace, "linear_values", (n_tasks, n_nodes + 1, z.shape[-1]))
    np.matmul(a, z[:, : const + 1], out=out)
    y1 = out[:, n_nodes]
    same = ~two[rows, scm.outcome]  # zero-effect tasks: y1 is y0, exactly
    y1[same] = out[same, scm.outcome[same]]
    ate = y1_coef[:, const] - coef[rows, scm.outcome, const]
    scale = np.concatenate([np.where(noisy, noise_bound, 0.0), np.ones((n_tasks, 1))], axis=1)
    bound = np.einsum("brk,bk->br", np.abs(a.astype(np.float64)), scale) * (1 + 1e-4)
    return out[:, :n_nodes], y1, t, e, ate, bound


def _noise_and_outcome(scm, j, sel, sig, coef, moments, cal):
    """raw = sig + sigma eps_j, standardised: node j's form for tasks sel."""
    if len(sel) == 0:
        return
    sig[np.arange(len(sel)), j] += scm.noise_scale[sel, j]
    coef[sel, j], cal.mean["raw"][sel, j], cal.std["raw"][sel, j] = moments.standardise(sig, sel)


def _world1_outcome(scm, coef, moments, cal):
    """y1 over [eps, 1, t]: Y's own form and h with t := 1, plus tau + eta * h,
    h = standardise(mod_w . parents of Y)."""
    n_tasks = scm.n_tasks
    rows = np.arange(n_tasks)
    const = scm.n_nodes
    y = scm.outcome
    mod = _weighted(coef, scm.slots[rows, y], scm.mod_w.astype(np.float64), rows, scm.n_parents[rows, y])
    h, cal.mean["h"][rows, y], cal.std["h"][rows, y] = moments.standardise(mod, rows)
    out = coef[rows, y].copy()
    out[:, const] += out[:, const + 1] + scm.tau
    out[:, : const + 1] += scm.eta[:, None] * h[:, : const + 1]
    out[:, const] += scm.eta * h[:, const + 1]
    return out


def _weighted(coef, slots, w, tasks, n_parents):
    """sum_s w[:, s] * coef[task, slots[:, s]] in slot order (padded slots point
    at the zero dummy row): (b, D)."""
    n_slot = max(1, int(n_parents.max()))
    out = w[:, 0, None] * coef[tasks, slots[:, 0]]
    for s in range(1, n_slot):
        out += w[:, s, None] * coef[tasks, slots[:, s]]
    return out
