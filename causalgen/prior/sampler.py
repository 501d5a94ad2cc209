"""`sample_task` / `sample_tasks`: random SCM -> observational dataset + ground truth.

Pipeline, for a batch of tasks at a time:
  1. draft (draft.py): structure from each task's own Generator, then graphs,
     roles and families computed for the whole batch; tasks with no valid
     (treatment, outcome) pair are redrawn;
  2. tasks with the same padded unit count are simulated together: their
     parameters and noise are drawn, then either the linear fast path
     (linear.py) or the generic simulator (scm.py) produces the factual sample
     and both potential outcomes;
  3. ground truth (ate.py: closed form where one exists, else adaptive Monte
     Carlo on fresh units), quality control, and the `Task` records.

Determinism: all randomness of task `seed` comes from
``np.random.default_rng([seed, attempt])``; attempt > 0 only after a QC rejection.
A task's arrays never depend on which other tasks share its batch, so
`sample_tasks(cfg, seeds)` equals `[sample_task(cfg, s) for s in seeds]` bit for bit.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from dataclasses import dataclass
from typing import Iterable

import numpy as np

from .ate import analytic, estimation_units, monte_carlo_ate, pilot_statistics
from .config import MECHANISMS, NOISE_FAMILIES, TaskConfig
from .presets import load_config
from .draft import Draft, draft_structure, draw_parameters, padded_units
from . import qc
from .linear import is_linear, simulate_linear
from .noise import NOISE_BOUND
from .scm import (INNER, OUTCOME, ROOT, SKIP, TREATMENT, Calibration, Workspace, calibrate_offset, linear_ate,
                  propensity, simulate)
from .streams import task_generators
from . import measure
from .config import COVARIATE_TYPES, DISTORTIONS
from .task import Task

F32 = np.float32
#: tasks simulated together (bounds memory: RFF needs R x K x N floats per node)
BATCH_SIZE = 256
#: tasks drafted together (structure only: small arrays)
DRAFT_SIZE = 1024
#: set False to send linear tasks through the generic simulator (tests compare both)
LINEAR_FAST_PATH = True


class SamplingError(RuntimeError):
    """A task could not be produced (QC rejected every attempt)."""


# ------------------------------------------------------------------ simulation


@dataclass
class _Outputs:
    """What the simulators produce for a batch (see `_simulate`)."""

    cal: Calibration
    node0: np.ndarray  # (B, J, N) every node in world do(T=0)
    y0: np.ndarray  # (B, N)
    y1: np.ndarray  # (B, N)
    t: np.ndarray  # (B, N) bool
    e: np.ndarray  # (B, N) propensity
    exact: np.ndarray  # (B,) population ATE of fast-path tasks, NaN for the others
    bound: np.ndarray  # (B, J + 1) bound on |node0 rows|, |y1| (inf where unknown)
    # (B, N) P(Y = 1) in each world for binary outcomes (`_binary_outcomes`), else None
    p0: np.ndarray | None = None
    p1: np.ndarray | None = None
    binary: np.ndarray | None = None  # (B,) bool
    # typed pre-treatment nodes' observed values: (task, node) -> (N,) float32 (what x holds)
    observed: dict | None = None

    def effects(self) -> np.ndarray:
        """(B, N) float64 unit-level effects whose mean is the population ATE: y1 - y0, or
        p1 - p0 for binary outcomes (the probability scale, without the outcome's own coin)."""
        ite = np.subtract(self.y1, self.y0, dtype=np.float64)
        if self.binary is not None:
            ite[self.binary] = np.subtract(self.p1[self.binary], self.p0[self.binary], dtype=np.float64)
        return ite


def _simulate(draft: Draft, n_pad: int, noise, fast: bool, workspace: Workspace | None = None) -> _Outputs:
    """Factual sample and potential outcomes of a drafted batch: linear tasks
    through linear.py (if `fast`), the others through scm.simulate (node values
    in `workspace`, so the outputs are views valid until its next batch)."""
    scm = draft.scm
    n_tasks, n_nodes = scm.kind.shape
    lin = is_linear(scm) if fast else np.zeros(n_tasks, bool)
    parts = []
    for idx, linear in ((np.flatnonzero(lin), True), (np.flatnonzero(~lin), False)):
        if len(idx) == 0:
            continue
        whole = len(idx) == n_tasks
        sub = draft if whole else draft.take(idx)
        cal = Calibration.empty(len(idx), n_nodes)
        if linear:
            z = noise.z if whole else noise.z[idx]
            bound = NOISE_BOUND[sub.noise_family]
            node0, y1, t, e, exact, bound = simulate_linear(sub.scm, z, sub.n_units, cal, bound, workspace)
        else:
            sim = simulate(sub.scm, noise.eps, noise.row[idx], sub.n_units, cal, calibrate=True, workspace=workspace)
            node0 = sim.values[0, :, :n_nodes]
            y1 = sim.values[1, np.arange(len(idx)), sub.scm.outcome]
            t, e = sim.t, sim.propensity
            exact = np.full(len(idx), np.nan)
            bound = np.full((len(idx), n_nodes + 1), np.inf)
            observed = {(int(idx[k]), j): v[r] for j, parts_j in sim.observed.items() for tasks, v in parts_j
                        for r, k in enumerate(tasks)}
        y0 = node0[np.arange(len(idx)), sub.scm.outcome]
        out = _Outputs(cal, node0, y0, y1, t, e, exact, bound, observed=observed if not linear else None)
        if whole:
            return out
        parts.append((idx, out))
    merged = {}
    for name in ("node0", "y0", "y1", "t", "e", "exact", "bound"):
        first = getattr(parts[0][1], name)
        merged[name] = np.empty((n_tasks,) + first.shape[1:], first.dtype)
        for idx, out in parts:
            merged[name][idx] = getattr(out, name)
    observed = {}
    for _, out in parts:
        observed.update(out.observed or {})
    cal = Calibration.empty(n_tasks, n_nodes)
    for idx, out in parts:
        for key in cal.mean:
            cal.mean[key][idx] = out.cal.mean[key]
            cal.std[key][idx] = out.cal.std[key]
        cal.offset[idx] = out.cal.offset
        if out.cal.cuts is not None:
            if cal.cuts is None:
                cal.cuts = np.full((n_tasks,) + out.cal.cuts.shape[1:], np.inf, out.cal.cuts.dtype)
            cal.cuts[idx] = out.cal.cuts
    return _Outputs(cal=cal, observed=observed, **merged)


def _binary_outcomes(draft: Draft, out: _Outputs, noise) -> _Outputs:
    """Binary outcomes: the SCM's continuous outcome y* (both worlds) becomes
    p_w = sigmoid(a y*_w + b), b calibrated so that the factual p averages the target
    prevalence, and Y_w = 1[u < p_w] with the unit's own uniform u in both worlds (so
    y == where(t, y1, y0) holds exactly). Tasks with a continuous outcome keep theirs."""
    od = draft.outcome
    if od is None or not od.binary.any():
        return out
    n_tasks, n_pad = out.y0.shape
    mask = (np.arange(n_pad)[None, :] < draft.n_units[:, None]).astype(F32)
    y0, y1 = out.y0.astype(F32, copy=True), out.y1.astype(F32, copy=True)
    p0, p1 = np.zeros_like(y0), np.zeros_like(y1)
    b = np.flatnonzero(od.binary)
    a = od.logit_a[b]
    factual = np.where(out.t[b], out.y1[b], out.y0[b]).astype(F32)
    offset = calibrate_offset(factual, a, od.prevalence[b], mask[b], draft.n_units[b].astype(F32))
    out.cal.outcome_offset = np.zeros(n_tasks, F32)
    out.cal.outcome_offset[b] = offset
    p0[b] = propensity(out.y0[b].astype(F32), a, offset, 0.0)
    p1[b] = propensity(out.y1[b].astype(F32), a, offset, 0.0)
    u = noise.outcome_u[b]
    y0[b] = (u < p0[b]).astype(F32)
    y1[b] = (u < p1[b]).astype(F32)
    bound = out.bound.copy()
    bound[b] = np.inf  # the outcome row of node0 keeps the latent y*: QC looks at it directly
    return dataclasses.replace(out, y0=y0, y1=y1, p0=p0, p1=p1, binary=od.binary.copy(), bound=bound)


@dataclass
class _Truth:
    """Ground truth of a batch, (B,) each: population ATE, its standard error, fresh units used,
    closed form or not, and the Monte-Carlo tail statistics (index inf, error 0 where exact)."""

    ate: np.ndarray
    se: np.ndarray
    units: np.ndarray
    closed: np.ndarray
    tail_index: np.ndarray
    variance_error: np.ndarray
    method: np.ndarray  # (B,) "closed_form", "monte_carlo" or "finite_population"


def _ground_truth(cfg: TaskConfig, draft: Draft, out: _Outputs, workspace: Workspace | None = None) -> _Truth:
    """The population ATE of every task; `out.exact` holds the ATE the linear fast path already
    found (NaN elsewhere), and the factual units are the Monte-Carlo pilot. Real-table tasks
    simulate their whole population (the table), so their ATE is its exact mean."""
    n_tasks = len(draft)
    closed = analytic(draft) if cfg.ate_method == "auto" else np.zeros(n_tasks, bool)
    effects = out.effects()
    finite = np.zeros(n_tasks, bool)
    if draft.table is not None:
        finite = np.array([tb is not None for tb in draft.table.table])
        closed &= ~finite
    ate = np.where(closed, out.exact, np.nan)
    todo = closed & np.isnan(out.exact)
    if todo.any():
        ate[todo] = linear_ate(draft.scm, out.cal, todo)[todo]
    for b in np.flatnonzero(finite):
        ate[b] = effects[b, : draft.n_units[b]].mean()
    se = np.zeros(n_tasks)
    units = np.zeros(n_tasks, dtype=np.int64)
    tail = np.full(n_tasks, np.inf)
    variance_error = np.zeros(n_tasks)
    mc = np.flatnonzero(~closed & ~finite)
    if len(mc):
        centre, pilot_sd, pilot_tail = pilot_statistics(effects[mc], draft.n_units[mc])
        n_est = estimation_units(cfg, pilot_sd, pilot_tail)
        res = monte_carlo_ate(cfg, draft.take(mc), out.cal.take(mc), n_est, centre, workspace)
        ate[mc], se[mc], units[mc] = res.ate, res.se, res.units
        # The pilot's own tail index (a few hundred units, k = 10-20 order statistics) is too
        # noisy to reject on; it sizes the sample (estimation_units), and the larger sample judges.
        tail[mc], variance_error[mc] = res.tail_index, res.variance_error
    method = np.where(closed, "closed_form", np.where(finite, "finite_population", "monte_carlo"))
    return _Truth(ate=ate, se=se, units=units, closed=closed, tail_index=tail, variance_error=variance_error,
                  method=method)


# ------------------------------------------------------------------ quality control


def _peaks(cfg: TaskConfig, draft: Draft, out: _Outputs) -> np.ndarray:
    """(4, B) max |.| of x, y0, y1, propensity over the real units. Where the
    linear fast path's bounds already prove x, y0 and y1 finite and below
    qc.max_abs_value, the bound stands in for the peak (no pass over the data)."""
    n_tasks, n_nodes = draft.scm.kind.shape
    rows = np.arange(n_tasks)
    observed = draft.roles.observed
    bounds = np.stack([
        np.where(observed, out.bound[:, :n_nodes], 0.0).max(axis=1),
        out.bound[rows, draft.scm.outcome], out.bound[:, n_nodes],
    ])
    peaks = np.empty((4, n_tasks))
    peaks[3] = qc.peak(out.e, draft.n_units)
    proven = np.all(bounds <= cfg.qc.max_abs_value, axis=0)
    peaks[:3, proven] = bounds[:, proven]
    todo = np.flatnonzero(~proven)
    if len(todo):
        n_units = draft.n_units[todo]
        peaks[0, todo] = np.where(observed[todo], qc.peak(out.node0[todo], n_units), 0.0).max(axis=1)
        peaks[1, todo] = qc.peak(out.y0[todo], n_units)
        peaks[2, todo] = qc.peak(out.y1[todo], n_units)
    return peaks


# ------------------------------------------------------------------ task records

_MECH_LABELS = ["not_simulated", "root", "logistic(constant)"] + [f"logistic({m})" for m in MECHANISMS] + list(MECHANISMS)
_NOISE_LABELS = [nf + suffix for suffix in ("", "+post_nonlinear", "+heteroscedastic") for nf in NOISE_FAMILIES] + ["bernoulli"]


def _label_codes(draft: Draft):
    """(B, J) indices into _MECH_LABELS and _NOISE_LABELS."""
    scm = draft.scm
    k, fam = scm.kind, scm.family.astype(np.int64)
    mech = np.select(
        [k == SKIP, k == ROOT, (k == TREATMENT) & (scm.n_parents == 0), k == TREATMENT],
        [0, 1, 2, 3 + fam], default=3 + len(MECHANISMS) + fam,
    )
    nf = draft.noise_family.astype(np.int64)
    n_fam = len(NOISE_FAMILIES)
    noise = np.select([k == TREATMENT, scm.pnl, scm.hetero], [3 * n_fam, nf + n_fam, nf + 2 * n_fam], default=nf)
    return mech, noise


def _records(cfg: TaskConfig, draft: Draft, out: _Outputs, stats: qc.Summaries, truth: _Truth, reasons) -> list:
    """A Task per accepted task (its reason string otherwise)."""
    ate, ate_se, units = truth.ate, truth.se, truth.units
    scm, roles = draft.scm, draft.roles
    mech_code, noise_code = _label_codes(draft)
    inner = (scm.kind == INNER) | (scm.kind == OUTCOME)
    used = np.stack([(inner & (scm.family == c)).any(axis=1) for c in range(len(MECHANISMS))], axis=1)
    n_used = used.sum(axis=1)
    mechanism = np.where(n_used == 1, np.array(MECHANISMS, dtype=object)[np.argmax(used, axis=1)],
                         np.where(n_used > 1, "mixed", "none")).tolist()
    mech_labels = np.array(_MECH_LABELS, dtype=object)[mech_code].tolist()
    noise_labels = np.array(_NOISE_LABELS, dtype=object)[noise_code].tolist()
    t_int8 = out.t.view(np.int8)  # bool -> 0/1 bytes without a copy
    cov_task, cov_node = np.nonzero(roles.observed)
    covariates = np.split(cov_node, np.cumsum(np.bincount(cov_task, minlength=len(draft)))[:-1])
    # per-task scalars as Python lists: indexing lists is far cheaper than numpy scalars
    col = {
        "seed": draft.seeds.tolist(), "attempt": draft.attempts.tolist(),
        "graph_family": draft.graph_family, "n_nodes": draft.n_nodes.tolist(),
        "treatment_node": scm.treatment.tolist(), "outcome_node": scm.outcome.tolist(),
        "mechanism": mechanism,
        "ate_method": truth.method.tolist(), "ate_mc_units": units.tolist(),
        "adjustment_set": roles.adjustment_sets,
        "propensity_min": stats.e_min.tolist(), "propensity_max": stats.e_max.tolist(),
        "propensity_outside_0.05_0.95": stats.outside.tolist(),
        "treated_share": (stats.n_treated / draft.n_units).tolist(),
        "expected_parents": draft.expected_parents.tolist(),
        "hidden_confounder_fraction": draft.hidden_fraction.tolist(),
        "confounding_strength": scm.strength.astype(np.float64).tolist(),
        "treated_share_target": scm.share.astype(np.float64).tolist(),
        "effect_size": scm.tau.astype(np.float64).tolist(),
        "heterogeneity": scm.eta.astype(np.float64).tolist(),
        "zero_effect": roles.zero_effect.tolist(),
    }
    noise_scale = np.round(scm.noise_scale.astype(np.float64), 6).tolist()
    n_nodes, n_units = col["n_nodes"], draft.n_units.tolist()
    ate, ate_se, sate, att = ate.tolist(), ate_se.tolist(), stats.sate.tolist(), stats.att.tolist()
    identifiable = roles.identifiable.tolist()
    names = list(draft.node_names) if draft.node_names is not None else None
    wider = draft.measure is not None or draft.table is not None or draft.outcome is not None
    tasks = []
    for b, reason in enumerate(reasons):
        if reason is not None:
            tasks.append(reason)
            continue
        j, nb = n_nodes[b], n_units[b]
        meta = {
            "seed": col["seed"][b], "attempt": col["attempt"][b], "config_name": cfg.name,
            "graph_family": col["graph_family"][b], "n_nodes": j,
            "treatment_node": col["treatment_node"][b], "outcome_node": col["outcome_node"][b],
            "mechanism": col["mechanism"][b], "node_mechanisms": mech_labels[b][:j],
            "node_noise": noise_labels[b][:j], "noise_scale": noise_scale[b][:j],
        }
        for key in _META_AFTER:
            meta[key] = col[key][b]
        if names is not None:
            meta["node_names"] = list(names)
        cov = covariates[b]
        x = np.ascontiguousarray(out.node0[b, cov, :nb].T)
        if wider:
            x = _wider(draft, out, b, cov, x, meta)
        tasks.append(Task(
            x=x, t=t_int8[b, :nb].copy(),
            y=stats.y[b, :nb].copy(), y0=out.y0[b, :nb].copy(), y1=out.y1[b, :nb].copy(),
            propensity=out.e[b, :nb].copy(), ate=ate[b], ate_se=ate_se[b], sate=sate[b], att=att[b],
            adjacency=roles.adjacency[b, :j, :j].copy(), roles=roles.roles[b, :j].copy(),
            covariate_nodes=cov.astype(np.int32), identifiable=identifiable[b], meta=meta,
        ))
    return tasks


def _wider(draft: Draft, out: _Outputs, b: int, cov: np.ndarray, x: np.ndarray, meta: dict) -> np.ndarray:
    """Task b's columns and meta under the wider prior: typed columns hold their observed
    values, distorted ones their transform, table columns the table's values; meta records
    each column's type, distortion and relevance, the outcome's type and the table's rows."""
    d = len(cov)
    types = ["continuous"] * d
    distortions: list = [None] * d
    relevance = ["relevant"] * d
    m = draft.measure
    if m is not None:
        codes = m.obs_type[b, cov]
        for k in np.flatnonzero(codes != measure.CONTINUOUS):
            x[:, k] = out.observed[(b, int(cov[k]))][: len(x)]
        dist = m.distortion[b, cov]
        bent = np.flatnonzero(dist >= 0)
        if len(bent):
            x[:, bent] = measure.distort(x[:, bent], dist[bent], m.distortion_par[b, cov[bent]])
        types = [COVARIATE_TYPES[int(c)] for c in codes]
        distortions = [DISTORTIONS[int(k)] if k >= 0 else None for k in dist]
        relevance = ["weak" if m.read_scale[b, node] != 1 else "relevant" for node in cov]
    n_main = int(draft.n_main[b]) if draft.n_main is not None else int(draft.n_nodes[b])
    relevance = ["irrelevant" if node >= n_main else r for node, r in zip(cov, relevance)]
    if draft.table is not None and draft.table.table[b] is not None:
        table, cols, sample = draft.table.table[b], draft.table.columns[b], draft.table.sample[b]
        for k, node in enumerate(cov):
            if node < len(cols):
                x[:, k] = table.values[sample, cols[node]]
                types[k] = table.types[cols[node]]
        meta["table"] = {"name": table.name, "source": table.source, "sha256": table.sha256,
                         "columns": [table.columns[c] for c in cols], "rows": table.rows[sample].tolist()}
    meta["covariate_types"] = types
    meta["covariate_distortions"] = distortions
    meta["covariate_relevance"] = relevance
    if draft.outcome is not None:
        binary = bool(draft.outcome.binary[b])
        meta["outcome_type"] = "binary" if binary else "continuous"
        if binary:
            meta["outcome_prevalence_target"] = float(draft.outcome.prevalence[b])
            meta["outcome_logit_scale"] = float(draft.outcome.logit_a[b])
            meta["outcome_logit_offset"] = float(out.cal.outcome_offset[b])
    return x


_META_AFTER = (
    "ate_method", "ate_mc_units", "adjustment_set", "propensity_min", "propensity_max",
    "propensity_outside_0.05_0.95", "treated_share", "expected_parents", "hidden_confounder_fraction",
    "confounding_strength", "treated_share_target", "effect_size", "heterogeneity", "zero_effect",
)


def _sample_units(draft: Draft, out: _Outputs) -> tuple[Draft, _Outputs]:
    """Real-table tasks: from the simulated population (every row of the table) to the task's
    own units (`TableDraft.sample`), as new padded arrays; the draft's n_units becomes theirs."""
    samples = draft.table.sample
    n = np.array([len(s) for s in samples], dtype=np.int64)
    idx = np.zeros((len(samples), int(n.max())), dtype=np.int64)
    for b, rows in enumerate(samples):
        idx[b, : len(rows)] = rows
    rows = np.arange(len(samples))[:, None]

    def pick(a):
        return None if a is None else a[rows, idx]

    node0 = np.take_along_axis(out.node0, idx[:, None, :], axis=2)
    observed = {(b, j): v[idx[b]] for (b, j), v in (out.observed or {}).items()}
    sampled = dataclasses.replace(out, node0=node0, y0=pick(out.y0), y1=pick(out.y1), t=pick(out.t), e=pick(out.e),
                                  p0=pick(out.p0), p1=pick(out.p1), observed=observed)
    return dataclasses.replace(draft, n_units=n), sampled


def _simulate_group(cfg: TaskConfig, draft: Draft, workspace: Workspace | None = None) -> list:
    """Simulate drafted tasks with equal padded size. Returns list of Task | str.
    Big intermediates live in `workspace` (reused by the next group: every
    Task array is a copy)."""
    n_pad = int(padded_units(draft.n_units).max())
    noise = draw_parameters(cfg, draft, n_pad, workspace)
    # Overflow and NaN are possible (e.g. deep polynomial chains); QC detects
    # and resamples such tasks, so numpy's warnings would only be noise.
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        out = _binary_outcomes(draft, _simulate(draft, n_pad, noise, LINEAR_FAST_PATH, workspace), noise)
        truth = _ground_truth(cfg, draft, out, workspace)
    if draft.table is not None:
        draft, out = _sample_units(draft, out)
    stats = qc.summarise(out.y0, out.y1, out.t, out.e, draft.n_units)
    reasons = qc.rejections(cfg, _peaks(cfg, draft, out), stats, draft.n_units, truth.ate, truth.se,
                            truth.tail_index, truth.variance_error)
    return _records(cfg, draft, out, stats, truth, reasons)


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
    results: list[Task | None] = [None] * len(seeds)
    rejections = [Counter() for _ in seeds]
    attempts = [0] * len(seeds)

    def reject(i: int, reason: str, retry: list):
        rejections[i][reason] += 1
        attempts[i] += 1
        retry.append(i)

    # one set of big buffers for every batch of this call (see scm.Workspace)
    workspace = Workspace()
    pending = list(range(len(seeds)))
    while pending:
        retry: list[int] = []
        for start in range(0, len(pending), DRAFT_SIZE):
            chunk = pending[start : start + DRAFT_SIZE]
            for i in chunk:
                if attempts[i] >= cfg.qc.max_attempts:
                    raise SamplingError(
                        f"seed {seeds[i]}: quality control rejected all {cfg.qc.max_attempts} attempts "
                        f"({dict(rejections[i])}); relax config '{cfg.name}' (e.g. treatment.treated_share, qc.*)"
                    )
            chunk_seeds = [seeds[i] for i in chunk]
            chunk_attempts = [attempts[i] for i in chunk]
            gens = task_generators(chunk_seeds, chunk_attempts)
            draft, reasons = draft_structure(cfg, np.array(chunk_seeds), np.array(chunk_attempts), gens)
            ok = []
            for k, i in enumerate(chunk):
                if reasons[k] is None:
                    ok.append(k)
                else:
                    reject(i, reasons[k], retry)
            ok = np.array(ok, dtype=np.int64)
            n_pad = padded_units(draft.n_units[ok])
            for pad in np.unique(n_pad):
                members = ok[n_pad == pad]
                for b0 in range(0, len(members), batch_size):
                    part = members[b0 : b0 + batch_size]
                    for k, res in zip(part, _simulate_group(cfg, draft.take(part), workspace)):
                        i = chunk[k]
                        if isinstance(res, str):
                            reject(i, res, retry)
                        else:
                            res.meta["qc_rejections"] = dict(sorted(rejections[i].items()))
                            results[i] = res
        pending = sorted(retry)
    return results  # type: ignore[return-value]


def sample_task(config, seed: int) -> Task:
    """One task: a pure function of (config, seed). See `sample_tasks`."""
    return sample_tasks(config, [seed])[0]
