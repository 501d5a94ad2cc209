"""`sample_task` / `sample_tasks`: random SCM -> observational dataset + ground truth.

Pipeline per task:
  1. `draw_task`: structure and parameters from the task's own Generator
     (graph, roles, mechanism/noise families, weights, dials) - a `TaskDraft`;
  2. drafts with the same padded size are stacked into a `BatchSCM` and simulated
     together in both worlds (scm.py), vectorised across tasks and units;
  3. ground truth (exact ATE where a closed form exists, else Monte Carlo on a
     fresh interventional sample), quality control, and the `Task` record.

Determinism: all randomness of task `seed` comes from
``np.random.default_rng([seed, attempt])``; attempt > 0 only after a QC rejection.
A task's arrays never depend on which other tasks share its batch, so
`sample_tasks(cfg, seeds)` equals `[sample_task(cfg, s) for s in seeds]` bit for bit.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np

from .config import MECHANISMS, NOISE_FAMILIES, ConfigError, TaskConfig, load_config
from .graph import GRAPH_SAMPLERS, from_edges
from .mechanisms import DRAW, normals
from .noise import noise_from_uniforms, uniforms
from .roles import RoleAssignment, assign_roles
from .scm import INNER, OUTCOME, ROOT, SKIP, TREATMENT, BatchSCM, Calibration, linear_ate, simulate
from .task import Task

F32 = np.float32
#: units are padded to a multiple of this (SIMD-friendly, and it fixes the
#: length of every reduction over units, which keeps results batch-invariant)
UNIT_BLOCK = 64
#: tasks simulated together (bounds memory: RFF needs B x N x K floats per node)
BATCH_SIZE = 64


#: parameter arrays' axes that run over parent slots (padded to the batch maximum)
SLOT_AXES = {"w": (1,), "w1": (1,), "omega": (1,), "quad": (1, 2)}


class SamplingError(RuntimeError):
    """A task could not be produced (QC rejected every attempt)."""


@dataclass
class TaskDraft:
    """Everything drawn for one task before simulation (one task, unpadded)."""

    seed: int
    attempt: int
    rng: np.random.Generator
    n_units: int
    graph_family: str
    roles: RoleAssignment
    kind: np.ndarray  # (J,) node kinds, see scm.py
    slots: list[np.ndarray]  # parent ids per node (T excluded for the outcome)
    family: np.ndarray  # (J,) mechanism codes
    params: dict  # family -> name -> (J, S, ...) arrays
    noise_family: np.ndarray  # (J,) codes into NOISE_FAMILIES
    noise_scale: np.ndarray
    hetero: np.ndarray
    hetero_w: np.ndarray  # (J, S)
    pnl: np.ndarray
    pnl_c: np.ndarray
    strength: float
    share: float
    tau: float
    eta: float
    mod_w: np.ndarray  # (S,)
    mod_tanh: bool
    hyper: dict = field(default_factory=dict)
    node_names: list[str] | None = None

    @property
    def n_nodes(self) -> int:
        return len(self.kind)

    @property
    def n_pad(self) -> int:
        return -(-self.n_units // UNIT_BLOCK) * UNIT_BLOCK


def _choose(mixture: dict[str, float], u: float) -> str:
    names = [k for k, w in mixture.items() if w > 0]
    weights = np.array([mixture[k] for k in names], dtype=np.float64)
    cdf = np.cumsum(weights) / weights.sum()
    return names[min(int(np.searchsorted(cdf, u, side="right")), len(names) - 1)]


def _choose_many(mixture: dict[str, float], u: np.ndarray) -> list[str]:
    return [_choose(mixture, float(v)) for v in u]


def _uniform_in(rng_range, u: float) -> float:
    lo, hi = rng_range
    return float(lo + (hi - lo) * u)


def _int_in(rng_range, u: float) -> int:
    lo, hi = rng_range
    return int(min(hi, lo + int(u * (hi - lo + 1))))


def _task_rng(seed: int, attempt: int) -> np.random.Generator:
    return np.random.default_rng([seed, attempt])


def draw_task(cfg: TaskConfig, seed: int, attempt: int = 0) -> TaskDraft | str:
    """Draw structure and parameters of one task, or a rejection reason (str)."""
    rng = _task_rng(seed, attempt)
    u = rng.random(16)
    g = cfg.graph
    family = _choose(g.families, u[0])
    if family == "fixed":
        adj, names = from_edges(g.nodes, [tuple(e) for e in g.edges])
        expected_parents = float(adj.sum() / adj.shape[0])
    else:
        names = None
        n_nodes = _int_in(g.n_nodes, u[1])
        expected_parents = _uniform_in(g.expected_parents, u[2])
        adj = GRAPH_SAMPLERS[family](rng, n_nodes, expected_parents)
    n = adj.shape[0]
    n_units = _int_in(cfg.n_units, u[3])

    r = cfg.roles
    zero_effect = bool(u[6] < r.zero_effect_prob)
    hidden_fraction = _uniform_in(r.hidden_confounder_fraction, u[7])
    hidden_u = rng.random(n)
    fixed_t = names.index(r.treatment) if (names and r.treatment) else None
    fixed_y = names.index(r.outcome) if (names and r.outcome) else None
    roles = assign_roles(adj, u[4], u[5], zero_effect, hidden_u, hidden_fraction, fixed_t, fixed_y)
    if roles is None:
        return "no_treatment_outcome_pair"
    if len(roles.covariate_nodes) < r.min_covariates:
        return "too_few_covariates"
    adj = roles.adjacency
    t_node, y_node = roles.treatment, roles.outcome

    # node kinds and parent slots
    kind = np.full(n, SKIP, dtype=np.int8)
    slots = []
    for j in range(n):
        parents = np.flatnonzero(adj[:, j])
        if j == y_node:
            parents = parents[parents != t_node]
        slots.append(parents)
        if not roles.needed[j]:
            continue
        if j == t_node:
            kind[j] = TREATMENT
        elif j == y_node:
            kind[j] = OUTCOME
        elif len(parents) == 0:
            kind[j] = ROOT
        else:
            kind[j] = INNER
    n_slots = max(1, max(len(s) for s in slots))

    # mechanism and noise families
    un = rng.random((6, n))
    m = cfg.mechanism
    if m.mixing == "task":
        fam_names = [_choose(m.families, u[13])] * n
    else:
        fam_names = _choose_many(m.families, un[0])
    fam_names[t_node] = _choose(cfg.treatment.score_mechanism, un[0][t_node])
    family_codes = np.array([MECHANISMS.index(f) for f in fam_names], dtype=np.int8)
    noise_codes = np.array(
        [NOISE_FAMILIES.index(f) for f in _choose_many(cfg.noise.families, un[1])], dtype=np.int8
    )
    noise_scale = np.array([_uniform_in(cfg.noise.scale, v) for v in un[2]], dtype=F32)
    inner = (kind == INNER) | (kind == OUTCOME)
    hetero = inner & (un[3] < cfg.noise.heteroscedastic_prob)
    pnl = (kind == INNER) & (un[4] < cfg.noise.nonadditive_prob)
    pnl_c = (F32(0.1) + F32(0.4) * un[5]).astype(F32)

    computed = kind >= INNER
    params = {}
    for name in MECHANISMS:
        if np.any(computed & (family_codes == MECHANISMS.index(name))):
            params[name] = DRAW[name](rng, n, n_slots, cfg)
    hetero_w = normals(rng, (n, n_slots)) * F32(1.0 / np.sqrt(n_slots))
    mod_w = normals(rng, (n_slots,))

    e = cfg.effect
    if zero_effect:
        tau, eta = 0.0, 0.0
    else:
        tau = _uniform_in(e.size, u[10])
        if e.sign == "negative" or (e.sign == "random" and u[11] < 0.5):
            tau = -tau
        eta = _uniform_in(e.heterogeneity, u[12])
    mod_tanh = fam_names[y_node] != "linear"
    strength = _uniform_in(cfg.treatment.confounding_strength, u[8])
    share = _uniform_in(cfg.treatment.treated_share, u[9])

    hyper = {
        "expected_parents": expected_parents,
        "hidden_confounder_fraction": hidden_fraction,
        "confounding_strength": strength,
        "treated_share_target": share,
        "effect_size": tau,
        "heterogeneity": eta,
        "zero_effect": zero_effect,
    }
    return TaskDraft(
        seed=seed, attempt=attempt, rng=rng, n_units=n_units, graph_family=family, roles=roles,
        kind=kind, slots=slots, family=family_codes, params=params, noise_family=noise_codes,
        noise_scale=noise_scale, hetero=hetero, hetero_w=hetero_w, pnl=pnl, pnl_c=pnl_c,
        strength=strength, share=share, tau=tau, eta=eta, mod_w=mod_w, mod_tanh=mod_tanh,
        hyper=hyper, node_names=names,
    )


# ------------------------------------------------------------------ batching


def _stack_batch(drafts: Sequence[TaskDraft], n_nodes: int, clip: float) -> BatchSCM:
    """Pad drafts to (B, J = n_nodes, S = batch max slots)."""
    b = len(drafts)
    s_max = max(max(1, max(len(s) for s in d.slots)) for d in drafts)
    kind = np.zeros((b, n_nodes), np.int8)
    slots = np.full((b, n_nodes, s_max), n_nodes, np.int64)
    n_parents = np.zeros((b, n_nodes), np.int64)
    family = np.zeros((b, n_nodes), np.int8)
    noise_scale = np.zeros((b, n_nodes), F32)
    hetero = np.zeros((b, n_nodes), bool)
    hetero_w = np.zeros((b, n_nodes, s_max), F32)
    pnl = np.zeros((b, n_nodes), bool)
    pnl_c = np.zeros((b, n_nodes), F32)
    mod_w = np.zeros((b, s_max), F32)
    params: dict = {}
    for i, d in enumerate(drafts):
        j = d.n_nodes
        kind[i, :j] = d.kind
        family[i, :j] = d.family
        noise_scale[i, :j] = d.noise_scale
        hetero[i, :j] = d.hetero
        pnl[i, :j] = d.pnl
        pnl_c[i, :j] = d.pnl_c
        s_task = d.hetero_w.shape[1]
        hetero_w[i, :j, :s_task] = d.hetero_w
        y_slots = d.slots[d.roles.outcome]
        mod_w[i, : len(y_slots)] = d.mod_w[: len(y_slots)]
        for node, par in enumerate(d.slots):
            slots[i, node, : len(par)] = par
            n_parents[i, node] = len(par)
        for name, p in d.params.items():
            dest = params.setdefault(name, {})
            for key, arr in p.items():
                slot_axes = SLOT_AXES.get(key, ())
                if key not in dest:
                    dims = [s_max if ax in slot_axes else dim for ax, dim in enumerate(arr.shape[1:], start=1)]
                    dest[key] = np.zeros((b, n_nodes, *dims), arr.dtype)
                dest[key][(i, slice(0, j)) + tuple(slice(0, dim) for dim in arr.shape[1:])] = arr
    return BatchSCM(
        kind=kind, slots=slots, n_parents=n_parents, family=family, params=params,
        noise_scale=noise_scale, hetero=hetero, hetero_w=hetero_w, pnl=pnl, pnl_c=pnl_c,
        strength=np.array([d.strength for d in drafts], F32),
        share=np.array([d.share for d in drafts], F32), clip=clip,
        tau=np.array([d.tau for d in drafts], F32), eta=np.array([d.eta for d in drafts], F32),
        mod_w=mod_w, mod_tanh=np.array([d.mod_tanh for d in drafts]),
        treatment=np.array([d.roles.treatment for d in drafts]),
        outcome=np.array([d.roles.outcome for d in drafts]),
    )


def _noise_block(drafts: Sequence[TaskDraft], n_nodes: int, n_pad: int):
    """Draw every task's uniforms (J_task, n_pad) from its own stream; return
    (eps (B, J, n_pad), u_treat (B, n_pad))."""
    eps = np.zeros((len(drafts), n_nodes, n_pad), F32)
    u_treat = np.zeros((len(drafts), n_pad), F32)
    for i, d in enumerate(drafts):
        u = uniforms(d.rng, (d.n_nodes, n_pad))
        u_treat[i] = u[d.roles.treatment]
        eps[i, : d.n_nodes] = noise_from_uniforms(u, d.noise_family)
    return eps, u_treat


def _analytic(d: TaskDraft) -> bool:
    """True when E[Y | do(T)] has a closed form (linear, zero-mean noise)."""
    anc = d.roles.ancestors_of_outcome.copy()
    anc[d.roles.outcome] = True
    anc[d.roles.treatment] = False
    inner = anc & ((d.kind == INNER) | (d.kind == OUTCOME))
    linear = MECHANISMS.index("linear")
    return bool(np.all(d.family[inner] == linear) and not np.any(d.pnl[inner]) and not d.mod_tanh)


def _subset(scm: BatchSCM, idx: np.ndarray) -> BatchSCM:
    fields = {}
    for name in BatchSCM.__dataclass_fields__:
        v = getattr(scm, name)
        if name == "params":
            fields[name] = {f: {k: a[idx] for k, a in p.items()} for f, p in v.items()}
        elif isinstance(v, np.ndarray):
            fields[name] = v[idx]
        else:
            fields[name] = v
    return BatchSCM(**fields)


def _qc(cfg: TaskConfig, x, t, y0, y1, propensity) -> str | None:
    q = cfg.qc
    for name, arr in (("x", x), ("y0", y0), ("y1", y1), ("propensity", propensity)):
        if not np.all(np.isfinite(arr)):
            return "non_finite"
        if arr.size and np.max(np.abs(arr)) > q.max_abs_value:
            return "exploding_values"
    n_treated = int(t.sum())
    if n_treated < q.min_units_per_arm or len(t) - n_treated < q.min_units_per_arm:
        return "single_treatment_arm"
    y = np.where(t, y1, y0)
    if float(np.std(y)) < q.min_outcome_std:
        return "degenerate_outcome"
    return None


def _simulate_group(cfg: TaskConfig, drafts: list[TaskDraft], n_nodes: int):
    """Simulate drafts with equal padded size. Returns list of Task | str."""
    n_pad = drafts[0].n_pad
    scm = _stack_batch(drafts, n_nodes, cfg.treatment.propensity_clip)
    eps, u_treat = _noise_block(drafts, n_nodes, n_pad)
    n_units = np.array([d.n_units for d in drafts])
    cal = Calibration()
    sim = simulate(scm, eps, u_treat, n_units, cal, calibrate=True)

    analytic = np.array([cfg.ate_method == "auto" and _analytic(d) for d in drafts])
    ate = linear_ate(scm, cal, analytic) if analytic.any() else np.full(len(drafts), np.nan)
    ate_se = np.zeros(len(drafts))
    mc = np.flatnonzero(~analytic)
    if len(mc):
        m_units = cfg.ate_mc_units
        m_pad = -(-m_units // UNIT_BLOCK) * UNIT_BLOCK
        sub = _subset(scm, mc)
        sub_cal = Calibration(
            mean={k: v[mc] for k, v in cal.mean.items()}, std={k: v[mc] for k, v in cal.std.items()},
            offset=cal.offset[mc],
        )
        sub_drafts = [drafts[i] for i in mc]
        eps_mc, _ = _noise_block(sub_drafts, n_nodes, m_pad)
        compute = np.zeros(sub.kind.shape, bool)
        for i, d in enumerate(sub_drafts):
            need = d.roles.ancestors_of_outcome.copy()
            need[d.roles.outcome] = True
            compute[i, : d.n_nodes] = need
        mc_sim = simulate(sub, eps_mc, np.zeros((len(mc), m_pad), F32), np.full(len(mc), m_units), sub_cal,
                          calibrate=False, compute=compute)
        ys = mc_sim.values[:, np.arange(len(mc)), sub.outcome, :m_units].astype(np.float64)
        ite = ys[1] - ys[0]
        ate[mc] = ite.mean(-1)
        ate_se[mc] = ite.std(-1, ddof=1) / np.sqrt(m_units)

    out = []
    for i, d in enumerate(drafts):
        n = d.n_units
        r = d.roles
        x = np.ascontiguousarray(sim.values[0, i, r.covariate_nodes, :n].T)
        y0 = sim.values[0, i, r.outcome, :n].copy()
        y1 = sim.values[1, i, r.outcome, :n].copy()
        t = sim.t[i, :n]
        e = sim.propensity[i, :n].copy()
        reason = _qc(cfg, x, t, y0, y1, e)
        if reason is None and not np.isfinite(ate[i]):
            reason = "non_finite"
        if reason is not None:
            out.append(reason)
            continue
        out.append(_make_task(d, x, t, y0, y1, e, float(ate[i]), float(ate_se[i]), bool(analytic[i]), cfg))
    return out


def _node_labels(d: TaskDraft) -> tuple[list[str], list[str]]:
    mech, noise = [], []
    for j in range(d.n_nodes):
        k = d.kind[j]
        fam = MECHANISMS[d.family[j]]
        if k == SKIP:
            mech.append("not_simulated")
        elif k == ROOT:
            mech.append("root")
        elif k == TREATMENT:
            mech.append(f"logistic({fam})" if len(d.slots[j]) else "logistic(constant)")
        else:
            mech.append(fam)
        nf = NOISE_FAMILIES[d.noise_family[j]]
        if k == TREATMENT:
            nf = "bernoulli"
        elif d.pnl[j]:
            nf += "+post_nonlinear"
        elif d.hetero[j]:
            nf += "+heteroscedastic"
        noise.append(nf)
    return mech, noise


def _make_task(d: TaskDraft, x, t, y0, y1, e, ate, ate_se, analytic, cfg) -> Task:
    ite = (y1.astype(np.float64) - y0)
    tb = t.astype(bool)
    mech, noise = _node_labels(d)
    used = sorted({m for m, k in zip(mech, d.kind) if k in (INNER, OUTCOME)})
    meta = {
        "seed": int(d.seed),
        "attempt": int(d.attempt),
        "config_name": cfg.name,
        "graph_family": d.graph_family,
        "n_nodes": int(d.n_nodes),
        "treatment_node": int(d.roles.treatment),
        "outcome_node": int(d.roles.outcome),
        "mechanism": used[0] if len(used) == 1 else ("mixed" if used else "none"),
        "node_mechanisms": mech,
        "node_noise": noise,
        "noise_scale": [round(float(s), 6) for s in d.noise_scale],
        "ate_method": "closed_form" if analytic else "monte_carlo",
        "ate_mc_units": 0 if analytic else int(cfg.ate_mc_units),
        "adjustment_set": d.roles.adjustment_set,
        "propensity_min": float(e.min()),
        "propensity_max": float(e.max()),
        "propensity_outside_0.05_0.95": float(np.mean((e < 0.05) | (e > 0.95))),
        "treated_share": float(tb.mean()),
        **{k: (float(v) if isinstance(v, (float, np.floating)) else v) for k, v in d.hyper.items()},
    }
    if d.node_names is not None:
        meta["node_names"] = list(d.node_names)
    return Task(
        x=x.astype(F32), t=t.astype(np.int8), y=np.where(tb, y1, y0).astype(F32), y0=y0, y1=y1,
        propensity=e, ate=ate, ate_se=ate_se, sate=float(ite.mean()),
        att=float(ite[tb].mean()), adjacency=d.roles.adjacency.copy(), roles=d.roles.roles.copy(),
        covariate_nodes=d.roles.covariate_nodes.copy(), identifiable=d.roles.identifiable, meta=meta,
    )


# ------------------------------------------------------------------ public API


def _check_seed(seed) -> int:
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)


def sample_tasks(config, seeds: Iterable[int], batch_size: int = BATCH_SIZE) -> list[Task]:
    """Sample one task per seed (the fast batched path).

    config: a TaskConfig, preset name, path or dict; seeds: non-negative ints.
    Returns tasks in seed order, each bit-identical to `sample_task(config, seed)`.
    Rejected draws are resampled with the next attempt number; the counts by
    reason are in ``task.meta["qc_rejections"]``.
    """
    cfg = load_config(config)
    seeds = [_check_seed(s) for s in seeds]
    if cfg.kind == "setoguchi":
        from .setoguchi import sample_setoguchi

        return [sample_setoguchi(cfg, s) for s in seeds]
    n_nodes = cfg.graph.n_nodes[1] if cfg.graph.nodes is None else len(cfg.graph.nodes)
    results: list[Task | None] = [None] * len(seeds)
    rejections = [Counter() for _ in seeds]
    attempts = [0] * len(seeds)
    pending = list(range(len(seeds)))
    while pending:
        drafts: dict[int, TaskDraft] = {}
        for i in pending:
            while True:
                if attempts[i] >= cfg.qc.max_attempts:
                    raise SamplingError(
                        f"seed {seeds[i]}: quality control rejected all {cfg.qc.max_attempts} attempts "
                        f"({dict(rejections[i])}); relax config '{cfg.name}' (e.g. treatment.treated_share, qc.*)"
                    )
                d = draw_task(cfg, seeds[i], attempts[i])
                if isinstance(d, str):
                    rejections[i][d] += 1
                    attempts[i] += 1
                    continue
                drafts[i] = d
                break
        groups: dict[int, list[int]] = {}
        for i in pending:
            groups.setdefault(drafts[i].n_pad, []).append(i)
        retry = []
        for members in groups.values():
            for start in range(0, len(members), batch_size):
                chunk = members[start : start + batch_size]
                for i, res in zip(chunk, _simulate_group(cfg, [drafts[i] for i in chunk], n_nodes)):
                    if isinstance(res, str):
                        rejections[i][res] += 1
                        attempts[i] += 1
                        retry.append(i)
                    else:
                        res.meta["qc_rejections"] = dict(sorted(rejections[i].items()))
                        results[i] = res
        pending = sorted(retry)
    return results  # type: ignore[return-value]


def sample_task(config, seed: int) -> Task:
    """One task: a pure function of (config, seed). See `sample_tasks`."""
    return sample_tasks(config, [seed])[0]
