"""Batched structural causal models: ancestral sampling in two worlds at once.

`BatchSCM` holds the padded parameters of B tasks' SCMs. `simulate` runs
ancestral sampling over the nodes in topological order for every task and both
potential-outcome worlds, do(T=0) and do(T=1), sharing the exogenous noise; the
factual world is ``where(t, world1, world0)`` node by node, so it is never
simulated separately and ``y == where(t, y1, y0)`` holds exactly.

Node model (every value float32, parents standardised):
    root:       x = eps                                   (unit-variance noise)
    inner node: s = standardise(f(parents))
                r = s + sigma * g(parents) * eps          (g = 1, or a heteroscedastic scale)
                r = r + c r^3                             (post-nonlinear, non-additive nodes)
                x = standardise(r)
    treatment:  e = clip(sigmoid(kappa * standardise(f(parents)) + offset)),
                t = 1[u < e], offset calibrated to the target treated share
    outcome:    y = standardise(f(parents \\ T) + noise) + T * (tau + eta * h),
                h = standardise(modifier(parents \\ T))

`standardise` uses the mean and std of the task's own factual sample
("calibrate" mode); the constants are kept and reused unchanged for fresh
interventional samples ("apply" mode), so both describe one fixed SCM.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .config import MECHANISMS
from .mechanisms import EVAL, weighted_sum

F32 = np.float32

# node kinds
SKIP, ROOT, INNER, TREATMENT, OUTCOME = 0, 1, 2, 3, 4


@dataclass
class BatchSCM:
    """Padded SCM parameters of B tasks with at most J nodes and S parent slots.

    kind: (B, J) int8 node kind (SKIP for padding and for nodes never needed).
    slots: (B, J, S) int64 parent ids; padding points at the dummy node J (value 0).
    n_parents: (B, J) int number of real parent slots.
    family: (B, J) int8 index into MECHANISMS (score family for the treatment).
    params: family name -> parameter name -> array (B, J, ...).
    noise_scale: (B, J) sigma; hetero: (B, J) bool; hetero_w: (B, J, S);
    pnl: (B, J) bool post-nonlinear node; pnl_c: (B, J) cubic coefficient.
    strength, share: (B,) treatment logit temperature and target treated share.
    clip: propensity clipping level.
    tau, eta: (B,) effect size and heterogeneity; mod_w: (B, S) modifier weights on
    the outcome's slots; mod_tanh: (B,) bool nonlinear modifier.
    treatment, outcome: (B,) node ids.
    """

    kind: np.ndarray
    slots: np.ndarray
    n_parents: np.ndarray
    family: np.ndarray
    params: dict
    noise_scale: np.ndarray
    hetero: np.ndarray
    hetero_w: np.ndarray
    pnl: np.ndarray
    pnl_c: np.ndarray
    strength: np.ndarray
    share: np.ndarray
    clip: float
    tau: np.ndarray
    eta: np.ndarray
    mod_w: np.ndarray
    mod_tanh: np.ndarray
    treatment: np.ndarray
    outcome: np.ndarray

    @property
    def n_tasks(self) -> int:
        return self.kind.shape[0]

    @property
    def n_nodes(self) -> int:
        return self.kind.shape[1]


@dataclass
class Calibration:
    """Standardisation constants, (B, J) per point, plus treatment offsets (B,)."""

    mean: dict = field(default_factory=dict)
    std: dict = field(default_factory=dict)
    offset: np.ndarray | None = None


@dataclass
class Simulation:
    """values: (2, B, J + 1, N) node values in worlds do(T=0), do(T=1) (row J is
    the zero dummy); t: (B, N) bool factual treatment; propensity: (B, N)."""

    values: np.ndarray
    t: np.ndarray
    propensity: np.ndarray


def _masked_stats(f: np.ndarray, mask: np.ndarray, n: np.ndarray):
    """Mean and std over the real units. f, mask: (b, N); n: (b,)."""
    mean = (f * mask).sum(-1) / n
    c = (f - mean[:, None]) * mask
    std = np.sqrt((c * c).sum(-1) / n)
    # A (numerically) constant signal carries no information: map it to 0.
    std = np.where(std > F32(1e-6), std, F32(1.0)).astype(F32)
    return mean.astype(F32), std


class _Context:
    def __init__(self, scm, n_units, n_pad, calibration, calibrate):
        b = scm.n_tasks
        self.calibrate = calibrate
        self.cal = calibration
        self.n = n_units.astype(F32)
        self.mask = (np.arange(n_pad)[None, :] < n_units[:, None]).astype(F32)
        self.t = np.zeros((b, n_pad), dtype=bool)
        self.e = np.zeros((b, n_pad), dtype=F32)
        if calibrate:
            for key in ("sig", "raw", "h"):
                self.cal.mean[key] = np.zeros(scm.kind.shape, F32)
                self.cal.std[key] = np.ones(scm.kind.shape, F32)
            self.cal.offset = np.zeros(b, F32)

    def standardise(self, v: np.ndarray, key: str, j: int, sel: np.ndarray) -> np.ndarray:
        """v: (2, b, N) for tasks `sel` (index array); factual statistics."""
        if self.calibrate:
            f = np.where(self.t[sel], v[1], v[0])
            mean, std = _masked_stats(f, self.mask[sel], self.n[sel])
            self.cal.mean[key][sel, j] = mean
            self.cal.std[key][sel, j] = std
        else:
            mean, std = self.cal.mean[key][sel, j], self.cal.std[key][sel, j]
        return (v - mean[None, :, None]) / std[None, :, None]


def _sigmoid(a):
    return F32(1.0) / (F32(1.0) + np.exp(-a))


def _calibrate_offset(score, strength, share, mask, n, iters=6):
    """Offset o with mean_i sigmoid(strength * score_i + o) = share (Newton)."""
    o = np.log(share / (1.0 - share)).astype(F32)
    for _ in range(iters):
        p = _sigmoid(strength[:, None] * score + o[:, None])
        g = (p * mask).sum(-1) / n - share
        dg = (p * (F32(1.0) - p) * mask).sum(-1) / n
        o = (o - g / np.maximum(dg, F32(1e-6))).astype(F32)
    return o


def simulate(
    scm: BatchSCM,
    eps: np.ndarray,
    u_treat: np.ndarray,
    n_units: np.ndarray,
    calibration: Calibration,
    calibrate: bool,
    compute: np.ndarray | None = None,
) -> Simulation:
    """Ancestral sampling of all tasks in both worlds.

    eps: (B, J, N) unit-variance noise per node; u_treat: (B, N) uniforms for the
    treatment draw; n_units: (B,) real units per task (the rest is padding).
    calibrate=True computes and stores standardisation constants from the
    factual sample; False reuses `calibration` (fresh interventional samples).
    compute: optional (B, J) bool restricting which nodes are simulated.
    """
    n_tasks, n_nodes = scm.kind.shape
    n_pad = eps.shape[-1]
    ctx = _Context(scm, n_units, n_pad, calibration, calibrate)
    values = np.zeros((2, n_tasks, n_nodes + 1, n_pad), dtype=F32)
    kind = scm.kind if compute is None else np.where(compute, scm.kind, SKIP)
    task_ids = np.arange(n_tasks)

    for j in range(n_nodes):
        kj = kind[:, j]
        roots = kj == ROOT
        if roots.any():
            values[:, roots, j] = eps[roots, j]
        sel = np.flatnonzero(kj >= INNER)
        if len(sel) == 0:
            continue
        parents = values[:, sel[:, None], scm.slots[sel, j]]  # (2, b, S, N)
        sig = np.empty((2, len(sel), n_pad), dtype=F32)
        fam = scm.family[sel, j]
        for code in np.unique(fam):
            name = MECHANISMS[int(code)]
            part = fam == code
            sub = sel[part]
            p = {k: v[sub, j] for k, v in scm.params[name].items()}
            if part.all():
                sig[...] = EVAL[name](parents, p, scm.n_parents[sub, j])
            else:
                sig[:, part] = EVAL[name](parents[:, part], p, scm.n_parents[sub, j])
        sig = ctx.standardise(sig, "sig", j, sel)

        is_t = kj[sel] == TREATMENT
        if is_t.any():
            tsel = sel[is_t]
            score = sig[0, is_t]  # T's parents precede T: equal in both worlds
            strength = scm.strength[tsel]
            if calibrate:
                ctx.cal.offset[tsel] = _calibrate_offset(
                    score, strength, scm.share[tsel], ctx.mask[tsel], ctx.n[tsel]
                )
            e = _sigmoid(strength[:, None] * score + ctx.cal.offset[tsel][:, None])
            if scm.clip > 0:
                e = np.clip(e, F32(scm.clip), F32(1.0 - scm.clip))
            ctx.e[tsel] = e
            ctx.t[tsel] = u_treat[tsel] < e
            values[0, tsel, j] = 0.0
            values[1, tsel, j] = 1.0

        rest = ~is_t
        if not rest.any():
            continue
        rsel = sel[rest]
        noise = eps[rsel, j] * scm.noise_scale[rsel, j][:, None]  # (b, N)
        raw = sig[:, rest] + noise[None]
        het = scm.hetero[rsel, j]
        if het.any():
            hs = rsel[het]
            scale = F32(0.5) + _sigmoid(F32(2.0) * weighted_sum(parents[:, rest][:, het], scm.hetero_w[hs, j]))
            raw[:, het] = sig[:, rest][:, het] + noise[het][None] * scale
        pnl = scm.pnl[rsel, j]
        if pnl.any():
            c = scm.pnl_c[rsel[pnl], j][None, :, None]
            r = raw[:, pnl]
            raw[:, pnl] = r + c * r * r * r
        val = ctx.standardise(raw, "raw", j, rsel)

        is_y = kj[rsel] == OUTCOME
        if is_y.any():
            ysel = rsel[is_y]
            par_y = parents[:, rest][:, is_y]
            h = weighted_sum(par_y, scm.mod_w[ysel])
            nonlin = scm.mod_tanh[ysel]
            if nonlin.any():
                h[:, nonlin] = np.tanh(h[:, nonlin])
            h = ctx.standardise(h, "h", j, ysel)
            val[1, is_y] += scm.tau[ysel][:, None] + scm.eta[ysel][:, None] * h[1]
        values[:, rsel, j] = val

    del task_ids
    return Simulation(values=values, t=ctx.t, propensity=ctx.e)


def linear_ate(scm: BatchSCM, cal: Calibration, analytic: np.ndarray) -> np.ndarray:
    """Exact population ATE for tasks whose outcome depends on T only through
    linear mechanisms with zero-mean noise (`analytic`, (B,) bool); NaN elsewhere.

    Means propagate exactly through such nodes: E[x_j] = ((w . E[parents] - m_sig)
    / s_sig - m_raw) / s_raw, roots have mean 0 and T is fixed to 0 or 1.
    """
    n_tasks, n_nodes = scm.kind.shape
    means = np.zeros((2, n_tasks, n_nodes + 1), dtype=np.float64)
    rows = np.arange(n_tasks)[:, None]
    for j in range(n_nodes):
        kj = scm.kind[:, j]
        inner = analytic & ((kj == INNER) | (kj == OUTCOME))
        par = means[:, rows, scm.slots[:, j]]  # (2, B, S)
        w = scm.params["linear"]["w"][:, j].astype(np.float64) if "linear" in scm.params else None
        if w is not None:
            sig = (par * w[None]).sum(-1)
            sig = (sig - cal.mean["sig"][:, j]) / cal.std["sig"][:, j]
            val = (sig - cal.mean["raw"][:, j]) / cal.std["raw"][:, j]
            means[:, inner, j] = val[:, inner]
        is_y = analytic & (kj == OUTCOME)
        if is_y.any():
            h = (par * scm.mod_w[None].astype(np.float64)).sum(-1)
            h = (h - cal.mean["h"][:, j]) / cal.std["h"][:, j]
            means[1, is_y, j] += (scm.tau + scm.eta * h[1])[is_y]
        is_t = analytic & (kj == TREATMENT)
        means[0, is_t, j] = 0.0
        means[1, is_t, j] = 1.0
    y = scm.outcome
    ate = means[1, np.arange(n_tasks), y] - means[0, np.arange(n_tasks), y]
    return np.where(analytic, ate, np.nan)
