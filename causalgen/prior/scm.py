"""Batched structural causal models: ancestral sampling in two worlds at once.

`BatchSCM` holds the padded parameters of B tasks' SCMs. `simulate` runs
ancestral sampling over the nodes in topological order for every task and both
potential-outcome worlds, do(T=0) and do(T=1), sharing the exogenous noise; the
factual world is ``where(t, world1, world0)`` node by node, so it is never
simulated separately and ``y == where(t, y1, y0)`` holds exactly. A node that
does not descend from T has the same value in both worlds: it is computed once
and copied.

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

Work is organised in rows: at node j, one row per (task, world) that needs
computing, gathered into (R, S, N) parent arrays so one numpy call serves every
task of the batch (mechanisms.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .config import MAX_LEVELS, MECHANISMS
from .measure import row_quantiles, typed_values
from .mechanisms import EVAL, Parents

F32 = np.float32

# node kinds
SKIP, ROOT, INNER, TREATMENT, OUTCOME = 0, 1, 2, 3, 4


@dataclass
class BatchSCM:
    """Padded SCM parameters of B tasks with at most J nodes and S parent slots.

    kind: (B, J) int8 node kind (SKIP for padding and for nodes never needed).
    slots: (B, J, S) int64 parent ids; padding points at the dummy node J (value 0).
    n_parents: (B, J) number of real parent slots; n_slots: (B,) the task's
        largest in-degree (it sets weight scales).
    family: (B, J) int8 index into MECHANISMS (score family for the treatment).
    params: family name -> parameter name -> array (B, J, ...).
    noise_scale: (B, J) sigma; hetero: (B, J) bool; hetero_w: (B, J, S);
    pnl: (B, J) bool post-nonlinear node; pnl_c: (B, J) cubic coefficient.
    strength, share: (B,) treatment logit temperature and target treated share.
    clip: propensity clipping level.
    tau, eta: (B,) effect size and heterogeneity; mod_w: (B, S) modifier weights on
    the outcome's slots; mod_tanh: (B,) bool nonlinear modifier.
    treatment, outcome: (B,) node ids.
    two_worlds: (B, J) bool computed nodes that descend from T (differ between worlds).
    measure: per-node observation types, distortions and read scales
        (`causalgen.prior.measure.Measurement`), or None: every node continuous.
    outcome_type: the outcome's type (`causalgen.prior.draft.OutcomeDraft`), or None: continuous.
    """

    kind: np.ndarray
    slots: np.ndarray
    n_parents: np.ndarray
    n_slots: np.ndarray
    family: np.ndarray
    params: dict
    noise_scale: np.ndarray
    hetero: np.ndarray
    hetero_w: np.ndarray | None
    pnl: np.ndarray
    pnl_c: np.ndarray
    strength: np.ndarray
    share: np.ndarray
    clip: float
    tau: np.ndarray
    eta: np.ndarray
    mod_w: np.ndarray | None
    mod_tanh: np.ndarray
    treatment: np.ndarray
    outcome: np.ndarray
    two_worlds: np.ndarray
    measure: object | None = None
    outcome_type: object | None = None

    @property
    def n_tasks(self) -> int:
        return self.kind.shape[0]

    def plain(self) -> np.ndarray:
        """(B,) bool: no typed or weak-signal node and a continuous outcome, i.e. the SCM of
        the original prior (the linear fast path and the closed-form ATE assume it)."""
        ok = np.ones(self.n_tasks, dtype=bool)
        if self.measure is not None:
            simulated = self.kind != SKIP
            ok &= ~np.any(simulated & (self.measure.obs_type != 0), axis=1)
            ok &= ~np.any(self.measure.read_scale[:, :-1] != 1, axis=1)
        if self.outcome_type is not None:
            ok &= ~self.outcome_type.binary
        return ok

    @property
    def n_nodes(self) -> int:
        return self.kind.shape[1]


@dataclass
class Calibration:
    """Standardisation constants, (B, J) per point, plus treatment offsets (B,).

    Points: "sig" (the mechanism output), "raw" (signal plus noise), "h" (the effect
    modifier), "obs" (a typed node's observed value). cuts: (B, J, MAX_LEVELS - 1) the cut
    points of typed nodes (`causalgen.prior.measure`), None until one is calibrated;
    outcome_offset: (B,) the latent logit's offset of binary outcomes.
    """

    mean: dict = field(default_factory=dict)
    std: dict = field(default_factory=dict)
    offset: np.ndarray | None = None
    cuts: np.ndarray | None = None
    outcome_offset: np.ndarray | None = None

    @classmethod
    def empty(cls, n_tasks: int, n_nodes: int) -> "Calibration":
        cal = cls(offset=np.zeros(n_tasks, F32))
        for key in ("sig", "raw", "h", "obs"):
            cal.mean[key] = np.zeros((n_tasks, n_nodes), F32)
            cal.std[key] = np.ones((n_tasks, n_nodes), F32)
        return cal

    def take(self, idx) -> "Calibration":
        return Calibration(
            mean={k: v[idx] for k, v in self.mean.items()}, std={k: v[idx] for k, v in self.std.items()},
            offset=self.offset[idx], cuts=None if self.cuts is None else self.cuts[idx],
            outcome_offset=None if self.outcome_offset is None else self.outcome_offset[idx],
        )


class Workspace:
    """Reusable float32 buffers, one per purpose, for the big per-batch arrays.

    Why: `simulate`'s node values are tens of MB per batch (2 worlds x B x
    (J + 1) x N). A fresh array that size is a fresh mmap, which the kernel
    faults in and zeroes page by page on first touch (~5 ms per 23 MB here,
    10-20 % of a nonlinear batch); reusing one buffer across batches and
    Monte-Carlo rounds skips that. The caller owns the lifetime: an array
    taken under `key` is valid until the next `get` with the same key.
    Contents are arbitrary (like np.empty): only what is written is read.
    """

    def __init__(self):
        self._buffers: dict = {}

    def get(self, key: str, shape: tuple, dtype=F32) -> np.ndarray:
        size = int(np.prod(shape))
        buf = self._buffers.get(key)
        if buf is None or buf.size < size or buf.dtype != dtype:
            buf = self._buffers[key] = np.empty(size, dtype)
        return buf[:size].reshape(shape)


def buffer_or_empty(workspace: "Workspace | None", key: str, shape: tuple, dtype=F32) -> np.ndarray:
    """`workspace.get(key, ...)`, or a fresh ``np.empty`` without a workspace."""
    return np.empty(shape, dtype) if workspace is None else workspace.get(key, shape, dtype)


@dataclass
class Simulation:
    """values: (2, B, J + 1, N) node values in worlds do(T=0), do(T=1) (row J is
    the zero dummy); t: (B, N) bool factual treatment; propensity: (B, N).
    observed: typed pre-treatment nodes' observed values (what x holds; the children read
    them standardised), node j -> a list of (tasks (R,), values (R, N)); calibrate mode only."""

    values: np.ndarray
    t: np.ndarray
    propensity: np.ndarray
    observed: dict = field(default_factory=dict)


def masked_stats(f: np.ndarray, mask: np.ndarray, n: np.ndarray):
    """Mean and std over the real units. f, mask: (b, N); n: (b,) float32."""
    mean = np.einsum("bn,bn->b", f, mask) / n
    c = f - mean[:, None]
    c *= mask
    std = np.sqrt(np.einsum("bn,bn->b", c, c) / n)
    # A (numerically) constant signal carries no information: map it to 0.
    std = np.where(std > F32(1e-6), std, F32(1.0)).astype(F32)
    return mean.astype(F32), std


def sigmoid(a):
    """1 / (1 + exp(-a)), float32; exp overflows harmlessly to inf (-> 0)."""
    out = np.negative(a)
    with np.errstate(over="ignore"):
        np.exp(out, out=out)
    out += F32(1.0)
    return np.reciprocal(out, out=out)


#: float32 propensities stay strictly inside (0, 1): sigmoid rounds to exactly
#: 1.0 (or underflows to 0.0) for |logit| beyond ~17 (~88); the clamp moves such
#: values by less than float32 resolution.
_E_LOW, _E_HIGH = np.finfo(F32).tiny, F32(1.0) - F32(2.0**-24)


def calibrate_offset(score, strength, share, mask, n, tol=1e-5, max_iter=10):
    """Offset o with mean_i sigmoid(strength * score_i + o) = share over the
    real units, by Newton's method per task until |mean - share| < tol.

    score, mask: (b, N); strength, share, n: (b,) float32. With q_i = exp(-a_i)
    computed once, each step is exp-free: sigmoid(a + o) = 1 / (1 + q e^-o).
    Padded units get q = inf (sigmoid 0), so no mask is needed inside the loop.
    Each task stops on its own residual, so batching changes nothing.
    """
    a = strength[:, None] * score
    np.clip(a, F32(-80.0), F32(80.0), out=a)  # beyond this sigmoid is saturated anyway
    q = np.exp(np.negative(a, out=a), out=a)
    q[mask == 0] = np.inf
    # Start from the probit approximation for a standardised score:
    # mean sigmoid(k s + o) ~ sigmoid(o / sqrt(1 + pi k^2 / 8)); a few steps then suffice.
    o = (np.log(share / (F32(1.0) - share)) * np.sqrt(F32(1.0) + F32(np.pi / 8) * strength * strength)).astype(F32)
    active = np.arange(len(o))
    for _ in range(max_iter):
        qa = q if len(active) == len(o) else q[active]
        p = qa * np.exp(-o[active])[:, None]
        p += F32(1.0)
        np.reciprocal(p, out=p)
        s1 = p.sum(axis=1)
        s2 = np.einsum("bn,bn->b", p, p)
        g = s1 / n[active] - share[active]
        dg = (s1 - s2) / n[active]
        o[active] = np.clip(o[active] - g / np.maximum(dg, F32(1e-6)), F32(-80.0), F32(80.0))
        active = active[np.abs(g) >= tol]
        if len(active) == 0:
            break
    return o


def propensity(score, strength, offset, clip):
    """e = clip(sigmoid(strength * score + offset)); score (b, N)."""
    a = strength[:, None] * score
    a += offset[:, None]
    e = sigmoid(a)
    np.clip(e, max(F32(clip), _E_LOW), min(F32(1.0 - clip), _E_HIGH), out=e)
    return e


class _Rows:
    """The rows computed at one node: the selected tasks in world 0 and, for
    descendants of T, in world 1 as well. ``task``, ``world`` and ``pos`` (the
    row's task position in `tasks`) are (R,) arrays."""

    def __init__(self, tasks: np.ndarray, two_worlds: bool):
        self.tasks = tasks
        self.n = len(tasks)
        self.two_worlds = two_worlds
        reps = 2 if two_worlds else 1
        self.task = np.tile(tasks, reps)
        self.world = np.repeat(np.arange(reps), self.n)
        self.pos = np.tile(np.arange(self.n), reps)

    def subset(self, rows: np.ndarray) -> "_Rows":
        """These rows only (apply mode: constants are looked up per row)."""
        out = _Rows(self.task[rows], False)
        out.pos = np.arange(len(rows))
        return out

    def factual(self, v: np.ndarray, t: np.ndarray) -> np.ndarray:
        """The factual world of each task, (n, N), from row values v (R, N)."""
        if not self.two_worlds:
            return v
        return np.where(t[self.tasks], v[self.n :], v[: self.n])


class _Context:
    def __init__(self, scm, n_units, n_pad, calibration, calibrate):
        self.calibrate = calibrate
        self.cal = calibration
        self.n = n_units.astype(F32)
        self.mask = (np.arange(n_pad)[None, :] < n_units[:, None]).astype(F32)
        self.t = np.zeros((scm.n_tasks, n_pad), dtype=bool)
        self.e = np.zeros((scm.n_tasks, n_pad), dtype=F32)
        self.observed: dict = {}  # node -> [(tasks, (R, N) observed values)] of typed nodes

    def standardise(self, v: np.ndarray, key: str, j: int, rows: _Rows) -> np.ndarray:
        """v: (R, N) row values, in place; factual statistics per task."""
        tasks = rows.tasks
        if self.calibrate:
            mean, std = masked_stats(rows.factual(v, self.t), self.mask[tasks], self.n[tasks])
            self.cal.mean[key][tasks, j] = mean
            self.cal.std[key][tasks, j] = std
        else:
            mean, std = self.cal.mean[key][tasks, j], self.cal.std[key][tasks, j]
        v -= mean[rows.pos, None]
        v /= std[rows.pos, None]
        return v


def _signal(scm: BatchSCM, j: int, parents: Parents, rows: _Rows) -> np.ndarray:
    """Mechanism output f(parents) for every row, (R, N)."""
    fam = scm.family[rows.task, j]
    if len(fam) and (fam == fam[0]).all():  # the common case, without np.unique's sort
        name = MECHANISMS[int(fam[0])]
        p = {k: v[rows.task, j] for k, v in scm.params[name].items()}
        return EVAL[name](parents, p)
    sig = np.empty((len(rows.task), parents.n_units), dtype=F32)
    for code in np.unique(fam):
        name = MECHANISMS[int(code)]
        part = np.flatnonzero(fam == code)
        p = {k: v[rows.task[part], j] for k, v in scm.params[name].items()}
        sig[part] = EVAL[name](parents.take(part), p)
    return sig


_RFF, _MLP = MECHANISMS.index("rff"), MECHANISMS.index("mlp")


def _outcome_signal_once(scm: BatchSCM, j: int, parents: Parents, rows: _Rows) -> np.ndarray:
    """`_signal` for two-world rows, computing the signal of an outcome whose
    parents all have one value in both worlds only once: Y's slots leave T
    out, so without a mediator among them both worlds feed f the same values
    and get the same bits (world 1 copies world 0). Only for mechanisms
    evaluated row by row (RFF, hidden-layer MLP), where a row is worth the
    extra copies; the others are computed in both worlds as before."""
    tasks = rows.tasks
    fam = scm.family[tasks, j]
    costly = fam == _RFF
    if "w1" in scm.params.get("mlp", {}):
        costly |= fam == _MLP
    once = costly & (scm.outcome[tasks] == j)
    if once.any():
        # parents of the candidates that differ between worlds (the dummy slot J never does)
        slots = scm.slots[tasks[once], j]
        padded = np.concatenate([scm.two_worlds, np.zeros((scm.n_tasks, 1), bool)], axis=1)
        once[once] = ~padded[tasks[once][:, None], slots].any(axis=1)
    if not once.any():
        return _signal(scm, j, parents, rows)
    dup = np.flatnonzero(once)  # world-0 positions; their world-1 rows are rows.n + dup
    keep = np.flatnonzero(~np.isin(np.arange(2 * rows.n), rows.n + dup))
    sig = np.empty((2 * rows.n, parents.n_units), dtype=F32)
    sig[keep] = _signal(scm, j, parents.take(keep), rows.subset(keep))
    sig[rows.n + dup] = sig[dup]
    return sig


def _parents(scm: BatchSCM, values: np.ndarray, j: int, rows: _Rows) -> Parents:
    """Parent values of node j for every row (no padding); weak-signal parents are read
    scaled down (`causalgen.prior.measure.Measurement.read_scale`)."""
    slots = scm.slots[rows.task, j]
    parents = Parents.gather(values, rows.world, rows.task, slots, scm.n_parents[rows.task, j])
    m = scm.measure
    if m is not None and parents.blocks:
        scale = m.read_scale[rows.task[:, None], slots][parents.order]  # (R, S) in the blocks' row order
        if (scale[:, : len(parents.blocks)] != 1).any():
            for k, blk in enumerate(parents.blocks):
                blk *= scale[: len(blk), k, None]
    return parents


def simulate(
    scm: BatchSCM,
    eps: np.ndarray,
    noise_row: np.ndarray,
    n_units: np.ndarray,
    calibration: Calibration,
    calibrate: bool,
    compute: np.ndarray | None = None,
    workspace: Workspace | None = None,
    key: str = "values",
) -> Simulation:
    """Ancestral sampling of all tasks in both worlds.

    eps: (R, N) noise rows (draft.Noise), node j of task b in row noise_row[b, j];
    the treatment's row holds the uniforms of its Bernoulli draw. n_units: (B,)
    real units per task (the rest is padding).
    calibrate=True computes and stores standardisation constants from the
    factual sample; False reuses `calibration` (fresh interventional samples,
    where T is set rather than drawn).
    compute: optional (B, J) bool restricting which nodes are simulated.
    workspace, key: where to take the value array from (see `Workspace`; the
    returned `values` is then valid until the next use of `key`).

    Three phases: the nodes that do not descend from T, in one world (T's score
    among them); then the treatment of every task at once; then T's descendants
    in both worlds.
    """
    n_tasks, n_nodes = scm.kind.shape
    n_pad = eps.shape[-1]
    ctx = _Context(scm, n_units, n_pad, calibration, calibrate)
    # Only what may be read needs initialising (np.zeros of tens of MB costs
    # more than some nodes): the dummy parent J and T's rows; a computed node's
    # parents are always computed nodes or T.
    values = buffer_or_empty(workspace, key, (2, n_tasks, n_nodes + 1, n_pad))
    values[:, :, n_nodes] = 0.0
    kind = scm.kind if compute is None else np.where(compute, scm.kind, SKIP)
    computed = (kind == INNER) | (kind == OUTCOME)
    rows_b = np.arange(n_tasks)
    values[0, rows_b, scm.treatment] = 0.0
    values[1, rows_b, scm.treatment] = 1.0
    score = np.zeros((n_tasks, n_pad), dtype=F32)

    for j in range(n_nodes):
        roots = np.flatnonzero(kind[:, j] == ROOT)
        if len(roots):
            values[:, roots, j] = eps[noise_row[roots, j]]
            if scm.measure is not None:
                typed = roots[scm.measure.obs_type[roots, j] != 0]
                if len(typed):
                    rows = _Rows(typed, False)
                    v = _observe(scm, j, rows, values[0, typed, j], ctx)
                    values[0, typed, j] = v
                    values[1, typed, j] = v
        if calibrate:
            tsel = np.flatnonzero(kind[:, j] == TREATMENT)
            if len(tsel):
                rows = _Rows(tsel, False)  # T's parents precede T: one world
                score[tsel] = ctx.standardise(_signal(scm, j, _parents(scm, values, j, rows), rows), "sig", j, rows)
        sel = np.flatnonzero(computed[:, j] & ~scm.two_worlds[:, j])
        if len(sel):
            _node(scm, j, _Rows(sel, False), values, eps, noise_row, ctx)

    if calibrate:
        strength = scm.strength.astype(F32)
        ctx.cal.offset[:] = calibrate_offset(score, strength, scm.share.astype(F32), ctx.mask, ctx.n)
        ctx.e[:] = propensity(score, strength, ctx.cal.offset, scm.clip)
        ctx.t[:] = eps[noise_row[rows_b, scm.treatment]] < ctx.e

    for j in range(n_nodes):
        sel = np.flatnonzero(computed[:, j] & scm.two_worlds[:, j])
        if len(sel):
            _node(scm, j, _Rows(sel, True), values, eps, noise_row, ctx)
    return Simulation(values=values, t=ctx.t, propensity=ctx.e, observed=ctx.observed)


def _node(scm, j, rows: _Rows, values, eps, noise_row, ctx):
    """Inner and outcome node j for `rows`: signal, noise, standardisation,
    and the treatment effect for outcomes; writes values (both worlds)."""
    parents = _parents(scm, values, j, rows)
    task = rows.task
    f = _outcome_signal_once(scm, j, parents, rows) if rows.two_worlds else _signal(scm, j, parents, rows)
    noise = eps[noise_row[task, j]]
    het = np.flatnonzero(scm.hetero[task, j])
    if len(het):
        het_par = parents if len(het) == parents.n_rows else parents.take(het)
        a = het_par.weighted_sum(scm.hetero_w[task[het], j])
        a *= F32(2.0)
        noise[het] *= F32(0.5) + sigmoid(a)
    pnl = np.flatnonzero(scm.pnl[task, j])
    if ctx.calibrate:
        val = _explicit(scm, j, rows, f, noise, pnl, ctx)
    else:
        # Fresh units with known constants: both standardisations and the noise
        # fold into val = a f + b eps + c per row (two passes fewer). Post-
        # nonlinear rows are redone explicitly (per row, so batching changes nothing).
        redo = _Rows(rows.tasks, rows.two_worlds).subset(pnl) if len(pnl) else None
        if redo is not None:
            f_pnl, noise_pnl = f[pnl], noise[pnl]
        cal, tasks = ctx.cal, rows.tasks
        s_sig, s_raw = cal.std["sig"][tasks, j], cal.std["raw"][tasks, j]
        a = (F32(1.0) / (s_sig * s_raw))[rows.pos, None]
        b = (scm.noise_scale[tasks, j] / s_raw)[rows.pos, None]
        c = ((-cal.mean["sig"][tasks, j] / s_sig - cal.mean["raw"][tasks, j]) / s_raw)[rows.pos, None]
        val = f
        val *= a
        noise *= b
        val += noise
        val += c
        if redo is not None:
            val[pnl] = _explicit(scm, j, redo, f_pnl, noise_pnl, np.arange(len(pnl)), ctx)

    is_y = np.flatnonzero(scm.outcome[rows.tasks] == j)
    if len(is_y):
        _add_effect(scm, j, rows, is_y, parents, val, ctx)
    if scm.measure is not None:  # (never the outcome: its type is always continuous)
        typed = np.flatnonzero(scm.measure.obs_type[rows.tasks, j] != 0)
        if len(typed):
            sub = _Rows(rows.tasks[typed], rows.two_worlds)
            pos = np.concatenate([typed + w * rows.n for w in range(2 if rows.two_worlds else 1)])
            val[pos] = _observe(scm, j, sub, val[pos], ctx)
    values[rows.world, task, j] = val
    if not rows.two_worlds:
        values[1, task, j] = val


def _observe(scm, j, rows: _Rows, latent: np.ndarray, ctx) -> np.ndarray:
    """Typed node j (`causalgen.prior.measure`): its latent values (R, N) for `rows` ->
    the standardised observed values its children read. Cut points are quantiles of the
    factual latent values (calibrate mode) or the stored ones (apply mode)."""
    m, tasks = scm.measure, rows.tasks
    if ctx.calibrate:
        if ctx.cal.cuts is None:
            ctx.cal.cuts = np.full((scm.n_tasks, scm.n_nodes, MAX_LEVELS - 1), np.inf, F32)
        factual = rows.factual(latent, ctx.t)
        ctx.cal.cuts[tasks, j] = row_quantiles(factual, ctx.n[tasks].astype(np.int64), m.cut_q[tasks, j])
    cuts = ctx.cal.cuts[rows.task, j]
    v = typed_values(np.ascontiguousarray(latent), m, rows.task, j, cuts)
    if ctx.calibrate and not rows.two_worlds:
        # what x will hold (pre-treatment nodes have one world): kept before standardising,
        # since a float32 round trip through the standardisation would not give it back exactly
        ctx.observed.setdefault(j, []).append((rows.tasks.copy(), v.copy()))
    return ctx.standardise(v, "obs", j, rows)


def _explicit(scm, j, rows: _Rows, f, noise, pnl, ctx):
    """standardise(standardise(f) + sigma * noise, with r + c r^3 on the
    post-nonlinear rows `pnl`): node j's value for `rows`, (R, N)."""
    task = rows.task
    raw = ctx.standardise(f, "sig", j, rows)
    noise *= scm.noise_scale[task, j][:, None]
    raw += noise
    if len(pnl):
        r = raw[pnl]
        raw[pnl] = r + scm.pnl_c[task[pnl], j][:, None] * r * r * r
    return ctx.standardise(raw, "raw", j, rows)


def _add_effect(scm, j, rows: _Rows, is_y, parents, val, ctx):
    """Outcome rows (tasks rows.tasks[is_y]): world 1 gets + tau + eta * h,
    h = standardise(modifier(parents))."""
    if not ctx.calibrate and not rows.two_worlds:
        return  # zero-effect tasks: nothing to add, and no constants to find
    # h is needed in world 1 only, but calibration takes its factual statistics
    worlds = 2 if rows.two_worlds and ctx.calibrate else 1
    offset = rows.n if rows.two_worlds and not ctx.calibrate else 0
    sub = _Rows(rows.tasks[is_y], worlds == 2)
    y_rows = np.concatenate([is_y + offset + w * rows.n for w in range(worlds)])
    y_par = parents if len(y_rows) == parents.n_rows else parents.take(y_rows)
    h = y_par.weighted_sum(scm.mod_w[sub.task])
    nonlin = np.flatnonzero(scm.mod_tanh[sub.task])
    if len(nonlin) == len(h):
        np.tanh(h, out=h)
    elif len(nonlin):
        h[nonlin] = np.tanh(h[nonlin])
    h = ctx.standardise(h, "h", j, sub)
    if rows.two_worlds:  # else: zero-effect task (tau = eta = 0), both worlds equal
        tasks = sub.tasks
        w1 = y_rows[len(y_rows) - len(tasks) :]
        h1 = h[len(h) - len(tasks) :]
        val[w1] += scm.tau[tasks].astype(F32)[:, None] + scm.eta[tasks].astype(F32)[:, None] * h1


def linear_ate(scm: BatchSCM, cal: Calibration, analytic: np.ndarray) -> np.ndarray:
    """Exact population ATE for tasks whose outcome depends on T only through
    linear mechanisms with zero-mean noise (`analytic`, (B,) bool); NaN elsewhere.

    Means propagate exactly through such nodes: E[x_j] = ((w . E[parents] - m_sig)
    / s_sig - m_raw) / s_raw, roots have mean 0 and T is fixed to 0 or 1.
    """
    n_tasks, n_nodes = scm.kind.shape
    means = np.zeros((2, n_tasks, n_nodes + 1), dtype=np.float64)
    rows = np.arange(n_tasks)[:, None]
    n_slot = scm.slots.shape[-1]
    for j in range(n_nodes):
        kj = scm.kind[:, j]
        inner = analytic & ((kj == INNER) | (kj == OUTCOME))
        par = means[:, rows, scm.slots[:, j]]  # (2, B, S)
        w = scm.params["linear"]["w"][:, j, :n_slot].astype(np.float64) if "linear" in scm.params else None
        if w is not None:
            sig = (par * w[None]).sum(-1)
            sig = (sig - cal.mean["sig"][:, j]) / cal.std["sig"][:, j]
            val = (sig - cal.mean["raw"][:, j]) / cal.std["raw"][:, j]
            means[:, inner, j] = val[:, inner]
        is_y = analytic & (kj == OUTCOME)
        if is_y.any():
            h = (par * scm.mod_w[None, :, :n_slot].astype(np.float64)).sum(-1)
            h = (h - cal.mean["h"][:, j]) / cal.std["h"][:, j]
            means[1, is_y, j] += (scm.tau + scm.eta * h[1])[is_y]
        is_t = analytic & (kj == TREATMENT)
        means[0, is_t, j] = 0.0
        means[1, is_t, j] = 1.0
    y = scm.outcome
    ate = means[1, np.arange(n_tasks), y] - means[0, np.arange(n_tasks), y]
    return np.where(analytic, ate, np.nan)
