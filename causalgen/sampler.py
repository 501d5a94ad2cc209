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

from collections import Counter
from typing import Iterable

import numpy as np

from .ate import analytic, monte_carlo_ate
from .config import MECHANISMS, NOISE_FAMILIES, TaskConfig, load_config
from .draft import Draft, draft_structure, draw_parameters, padded_units
from .linear import is_linear, simulate_linear
from .scm import INNER, OUTCOME, ROOT, SKIP, TREATMENT, Calibration, linear_ate, simulate
from .streams import task_generators
from .task import Task

F32 = np.float32
#: tasks simulated together (bounds memory: RFF needs R x K x N floats per node)
BATCH_SIZE = 64
#: tasks drafted together (structure only: small arrays)
DRAFT_SIZE = 1024
#: set False to send linear tasks through the generic simulator (tests compare both)
LINEAR_FAST_PATH = True


class SamplingError(RuntimeError):
    """A task could not be produced (QC rejected every attempt)."""


# ------------------------------------------------------------------ simulation


def _simulate(draft: Draft, n_pad: int, noise, fast: bool):
    """Factual sample and potential outcomes of a drafted batch.

    Returns (cal, node0 (B, J, N) every node in world do(T=0), y1 (B, N),
    t (B, N) bool, propensity (B, N)).
    """
    scm = draft.scm
    n_tasks, n_nodes = scm.kind.shape
    cal = Calibration.empty(n_tasks, n_nodes)
    lin = is_linear(scm) if fast else np.zeros(n_tasks, bool)
    node0 = np.empty((n_tasks, n_nodes, n_pad), F32)
    y1 = np.empty((n_tasks, n_pad), F32)
    t = np.empty((n_tasks, n_pad), bool)
    e = np.empty((n_tasks, n_pad), F32)
    for idx, linear in ((np.flatnonzero(lin), True), (np.flatnonzero(~lin), False)):
        if len(idx) == 0:
            continue
        sub = draft if len(idx) == n_tasks else draft.take(idx)
        sub_cal = cal if len(idx) == n_tasks else Calibration.empty(len(idx), n_nodes)
        if linear:
            z = noise.z if len(idx) == n_tasks else noise.z[idx]
            x0, x1, tt, ee = simulate_linear(sub.scm, z, sub.n_units, sub_cal)
        else:
            sim = simulate(sub.scm, noise.eps, noise.row[idx], sub.n_units, sub_cal, calibrate=True)
            x0 = sim.values[0, :, :n_nodes]
            x1 = sim.values[1, np.arange(len(idx)), sub.scm.outcome]
            tt, ee = sim.t, sim.propensity
        node0[idx], y1[idx], t[idx], e[idx] = x0, x1, tt, ee
        if sub_cal is not cal:
            for key in cal.mean:
                cal.mean[key][idx] = sub_cal.mean[key]
                cal.std[key][idx] = sub_cal.std[key]
            cal.offset[idx] = sub_cal.offset
    return cal, node0, y1, t, e


def _ground_truth(cfg: TaskConfig, draft: Draft, cal: Calibration):
    """(ate, ate_se, mc_units, closed_form) per task."""
    n_tasks = len(draft)
    closed = analytic(draft) if cfg.ate_method == "auto" else np.zeros(n_tasks, bool)
    ate = linear_ate(draft.scm, cal, closed) if closed.any() else np.full(n_tasks, np.nan)
    se = np.zeros(n_tasks)
    units = np.zeros(n_tasks, dtype=np.int64)
    mc = np.flatnonzero(~closed)
    if len(mc):
        ate[mc], se[mc], units[mc] = monte_carlo_ate(cfg, draft.take(mc), cal.take(mc))
    return ate, se, units, closed


# ------------------------------------------------------------------ quality control


def _peak(a: np.ndarray, n_units: np.ndarray) -> np.ndarray:
    """max |a| over each task's real units: a (B, ..., N) -> (B, ...); NaN if
    any value there is NaN. Units are padded by < 64 at the end, so only that
    tail needs a mask."""
    lo = int(n_units.min())
    head = a[..., :lo]
    peak = np.maximum(np.abs(head.max(axis=-1)), np.abs(head.min(axis=-1)))
    if lo < a.shape[-1]:
        valid = np.arange(lo, a.shape[-1])[None, :] < n_units[:, None]
        valid = valid.reshape(valid.shape[:1] + (1,) * (a.ndim - 2) + valid.shape[1:])
        tail = np.where(valid, a[..., lo:], 0)  # zeros never raise the peak
        peak = np.maximum(peak, np.maximum(np.abs(tail.max(axis=-1)), np.abs(tail.min(axis=-1))))
    return peak


def _qc(cfg: TaskConfig, draft: Draft, node0, y0, y1, t, e, mask, ate) -> list:
    """A rejection reason (str) or None per task, checked in the order x, y0, y1,
    propensity (non-finite / exploding), arms, outcome spread, ATE."""
    q = cfg.qc
    n_units = draft.n_units
    x_peak = np.where(draft.roles.observed, _peak(node0, n_units), F32(0.0)).max(axis=1)
    peaks = [x_peak, _peak(y0, n_units), _peak(y1, n_units), _peak(e, n_units)]
    n = mask.sum(axis=1)
    n_treated = (t & (mask > 0)).sum(axis=1)
    y = np.where(t, y1, y0).astype(np.float64) * mask
    mean = y.sum(axis=1) / n
    std = np.sqrt((np.square(y - mean[:, None]) * mask).sum(axis=1) / n)
    # first failing check per task, in order (vectorised; lists for the loop)
    peaks = np.stack(peaks)  # (4, B)
    bad = ~np.isfinite(peaks) | (peaks > q.max_abs_value)
    first = np.argmax(bad, axis=0)
    peak_reason = np.where(np.isfinite(peaks[first, np.arange(len(first))]), "exploding_values", "non_finite")
    checks = [
        (bad.any(axis=0), peak_reason),
        ((n_treated < q.min_units_per_arm) | (n - n_treated < q.min_units_per_arm), "single_treatment_arm"),
        (std < q.min_outcome_std, "degenerate_outcome"),
        (~np.isfinite(ate), "non_finite"),
    ]
    reasons = [None] * len(draft)
    for failed, reason in reversed(checks):  # earlier checks overwrite later ones
        names = np.broadcast_to(np.asarray(reason, dtype=object), failed.shape)
        for b in np.flatnonzero(failed).tolist():
            reasons[b] = str(names[b])
    return reasons


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


def _records(cfg, draft, node0, y0, y1, t, e, mask, truth, reasons) -> list:
    ate, ate_se, units, closed = truth
    scm, roles = draft.scm, draft.roles
    n_tasks = len(draft)
    valid = mask > 0
    n = mask.sum(axis=1).astype(np.float64)
    ite = (y1.astype(np.float64) - y0) * mask
    n_treated = (t & valid).sum(axis=1)
    sate = ite.sum(axis=1) / n
    att = (ite * t).sum(axis=1) / np.maximum(n_treated, 1)
    e_min = np.where(valid, e, np.inf).min(axis=1)
    e_max = np.where(valid, e, -np.inf).max(axis=1)
    outside = (((e < 0.05) | (e > 0.95)) & valid).sum(axis=1) / n
    mech_code, noise_code = _label_codes(draft)
    noise_scale = np.round(scm.noise_scale.astype(np.float64), 6).tolist()
    y_all = np.where(t, y1, y0)
    t_all = t.astype(np.int8)
    inner = (scm.kind == INNER) | (scm.kind == OUTCOME)
    used = np.stack([(inner & (scm.family == c)).any(axis=1) for c in range(len(MECHANISMS))], axis=1)
    n_used = used.sum(axis=1)
    mechanism = np.where(n_used == 1, np.array(MECHANISMS, dtype=object)[np.argmax(used, axis=1)],
                         np.where(n_used > 1, "mixed", "none")).tolist()
    mech_labels = np.array(_MECH_LABELS, dtype=object)[mech_code].tolist()
    noise_labels = np.array(_NOISE_LABELS, dtype=object)[noise_code].tolist()
    # per-task scalars as Python lists: indexing lists is far cheaper than numpy scalars
    seeds, attempts = draft.seeds.tolist(), draft.attempts.tolist()
    n_nodes, n_units = draft.n_nodes.tolist(), draft.n_units.tolist()
    t_node, y_node = scm.treatment.tolist(), scm.outcome.tolist()
    closed, units, ate, ate_se = closed.tolist(), units.tolist(), ate.tolist(), ate_se.tolist()
    sate, att, n_treated, n = sate.tolist(), att.tolist(), n_treated.tolist(), n.tolist()
    e_min, e_max, outside = e_min.tolist(), e_max.tolist(), outside.tolist()
    hyper = {
        "expected_parents": draft.expected_parents.tolist(),
        "hidden_confounder_fraction": draft.hidden_fraction.tolist(),
        "confounding_strength": scm.strength.astype(np.float64).tolist(),
        "treated_share_target": scm.share.astype(np.float64).tolist(),
        "effect_size": scm.tau.astype(np.float64).tolist(),
        "heterogeneity": scm.eta.astype(np.float64).tolist(),
        "zero_effect": roles.zero_effect.tolist(),
    }
    identifiable = roles.identifiable.tolist()
    out = []
    for b in range(n_tasks):
        if reasons[b] is not None:
            out.append(reasons[b])
            continue
        j, nb = n_nodes[b], n_units[b]
        meta = {
            "seed": seeds[b],
            "attempt": attempts[b],
            "config_name": cfg.name,
            "graph_family": draft.graph_family[b],
            "n_nodes": j,
            "treatment_node": t_node[b],
            "outcome_node": y_node[b],
            "mechanism": mechanism[b],
            "node_mechanisms": mech_labels[b][:j],
            "node_noise": noise_labels[b][:j],
            "noise_scale": noise_scale[b][:j],
            "ate_method": "closed_form" if closed[b] else "monte_carlo",
            "ate_mc_units": units[b],
            "adjustment_set": roles.adjustment_sets[b],
            "propensity_min": e_min[b],
            "propensity_max": e_max[b],
            "propensity_outside_0.05_0.95": outside[b],
            "treated_share": n_treated[b] / n[b],
            **{k: v[b] for k, v in hyper.items()},
        }
        if draft.node_names is not None:
            meta["node_names"] = list(draft.node_names)
        covariates = np.flatnonzero(roles.observed[b])
        out.append(Task(
            x=np.ascontiguousarray(node0[b, covariates, :nb].T), t=t_all[b, :nb].copy(),
            y=y_all[b, :nb].copy(), y0=y0[b, :nb].copy(), y1=y1[b, :nb].copy(), propensity=e[b, :nb].copy(),
            ate=ate[b], ate_se=ate_se[b], sate=sate[b], att=att[b],
            adjacency=roles.adjacency[b, :j, :j].copy(), roles=roles.roles[b, :j].copy(),
            covariate_nodes=covariates.astype(np.int32), identifiable=identifiable[b], meta=meta,
        ))
    return out


def _simulate_group(cfg: TaskConfig, draft: Draft) -> list:
    """Simulate drafted tasks with equal padded size. Returns list of Task | str."""
    n_pad = int(padded_units(draft.n_units).max())
    noise = draw_parameters(cfg, draft, n_pad)
    cal, node0, y1, t, e = _simulate(draft, n_pad, noise, LINEAR_FAST_PATH)
    truth = _ground_truth(cfg, draft, cal)
    rows = np.arange(len(draft))
    y0 = node0[rows, draft.scm.outcome]
    mask = (np.arange(n_pad)[None, :] < draft.n_units[:, None]).astype(F32)
    reasons = _qc(cfg, draft, node0, y0, y1, t, e, mask, truth[0])
    return _records(cfg, draft, node0, y0, y1, t, e, mask, truth, reasons)


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
                    for k, res in zip(part, _simulate_group(cfg, draft.take(part))):
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
