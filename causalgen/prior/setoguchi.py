"""Setoguchi et al. (2008) / Lee, Lessler & Stuart (2010) scenarios A-G.

The simulation design used by Tarr & Imai (2021) and recommended for CInA's
"single graph with mechanism shift" experiments (shared/cina_method.md, 5.1).
Ten covariates w1..w10 ~ N(0, 1); w5, w6, w8, w9 correlated with w1, w2, w3, w4
(rho = 0.2, 0.9, 0.2, 0.9); w1, w3, w5, w6, w8, w9 dichotomised at 0. The
treatment is logistic in w1..w7 with quadratic and/or interaction terms by
scenario; the outcome is linear with a constant effect gamma = -0.4, so the
true ATE is exactly gamma.

`mechanism_shift` s > 0 multiplies every coefficient (including gamma) by
(1 + s z), z ~ N(0, 1) drawn per task: a family of related SCMs for
pretraining and out-of-distribution tests.
"""

from __future__ import annotations

import numpy as np

from .config import TaskConfig
from .roles import assign_roles
from .task import Task

B = np.array([0.0, 0.8, -0.25, 0.6, -0.4, -0.8, -0.5, 0.7])  # b0..b7
A = np.array([-3.85, 0.3, -0.36, -0.73, -0.2, 0.71, -0.19, 0.26])  # a0..a7 on w1..w4, w8, w9, w10
GAMMA = -0.4

NODES = [f"w{i}" for i in range(1, 11)] + ["T", "Y"]
CORRELATED = {5: (1, 0.2), 6: (2, 0.9), 8: (3, 0.2), 9: (4, 0.9)}  # w_k ~ rho * w_i + ...
BINARY = (1, 3, 5, 6, 8, 9)
OUTCOME_COVARIATES = (1, 2, 3, 4, 8, 9, 10)

# Interaction terms (i, j, multiplier of b_k) per scenario, and quadratic terms.
_D = [(1, 3, 1, 0.5), (2, 4, 2, 0.7), (4, 5, 4, 0.5), (5, 6, 5, 0.5)]
_F = [(1, 3, 1, 0.5), (2, 4, 2, 0.7), (3, 5, 3, 0.5), (4, 6, 4, 0.7), (5, 7, 5, 0.5),
      (1, 6, 1, 0.5), (2, 3, 2, 0.7), (3, 4, 3, 0.5), (4, 5, 4, 0.5), (5, 6, 5, 0.5)]
SCENARIOS = {
    "A": ([], []),
    "B": ([2], []),
    "C": ([2, 4, 7], []),
    "D": ([], _D),
    "E": ([2], _D),
    "F": ([], _F),
    "G": ([2, 4, 7], _F),
}


def adjacency() -> np.ndarray:
    idx = {n: i for i, n in enumerate(NODES)}
    adj = np.zeros((12, 12), dtype=bool)
    for k, (i, _) in CORRELATED.items():
        adj[idx[f"w{i}"], idx[f"w{k}"]] = True
    for i in range(1, 8):
        adj[idx[f"w{i}"], idx["T"]] = True
    for i in OUTCOME_COVARIATES:
        adj[idx[f"w{i}"], idx["Y"]] = True
    adj[idx["T"], idx["Y"]] = True
    return adj


def sample_setoguchi(cfg: TaskConfig, seed: int) -> Task:
    """One dataset from scenario `cfg.setoguchi.scenario`; pure in (cfg, seed)."""
    s = cfg.setoguchi
    rng = np.random.default_rng([seed, 0])
    lo, hi = cfg.n_units
    n = int(min(hi, lo + int(rng.random() * (hi - lo + 1))))
    b, a, gamma = B.copy(), A.copy(), GAMMA
    if s.mechanism_shift > 0:
        z = rng.standard_normal(len(B) + len(A) + 1)
        b *= 1.0 + s.mechanism_shift * z[: len(B)]
        a *= 1.0 + s.mechanism_shift * z[len(B) : len(B) + len(A)]
        gamma *= 1.0 + s.mechanism_shift * z[-1]

    w = rng.standard_normal((n, 11))  # column 0 unused: w[:, i] is w_i
    for k, (i, rho) in CORRELATED.items():
        w[:, k] = rho * w[:, i] + np.sqrt(1.0 - rho**2) * w[:, k]
    for i in BINARY:
        w[:, i] = (w[:, i] > 0).astype(np.float64)

    quad, inter = SCENARIOS[s.scenario]
    logit = b[0] + w[:, 1:8] @ b[1:8]
    for i in quad:
        logit += b[i] * w[:, i] ** 2
    for i, j, k, mult in inter:
        logit += mult * b[k] * w[:, i] * w[:, j]
    e = 1.0 / (1.0 + np.exp(-logit))
    t = (rng.random(n) < e).astype(np.int8)
    noise = s.outcome_noise_std * rng.standard_normal(n)
    y0 = a[0] + w[:, list(OUTCOME_COVARIATES)] @ a[1:] + noise
    y1 = y0 + gamma

    adj = adjacency()
    roles = assign_roles(adj, 0.0, 0.0, False, np.ones(12), 0.0, treatment=10, outcome=11)
    x = w[:, 1:11].astype(np.float32)
    y0f, y1f = y0.astype(np.float32), y1.astype(np.float32)
    ite = y1f.astype(np.float64) - y0f
    tb = t.astype(bool)
    meta = {
        "seed": int(seed),
        "attempt": 0,
        "config_name": cfg.name,
        "graph_family": "setoguchi",
        "scenario": s.scenario,
        "mechanism_shift": float(s.mechanism_shift),
        "n_nodes": 12,
        "treatment_node": 10,
        "outcome_node": 11,
        "mechanism": "setoguchi-" + s.scenario,
        "node_mechanisms": ["root"] * 4 + ["linear"] + ["linear"] + ["root"] + ["linear"] * 2 + ["root"]
        + ["logistic(scenario)", "linear"],
        "node_noise": ["gaussian"] * 11 + ["gaussian"],
        "node_names": NODES,
        "ate_method": "closed_form",
        "ate_mc_units": 0,
        "adjustment_set": roles.adjustment_set,
        "propensity_min": float(e.min()),
        "propensity_max": float(e.max()),
        "propensity_outside_0.05_0.95": float(np.mean((e < 0.05) | (e > 0.95))),
        "treated_share": float(tb.mean()),
        "effect_size": float(gamma),
        "qc_rejections": {},
    }
    return Task(
        x=x, t=t, y=np.where(tb, y1f, y0f), y0=y0f, y1=y1f, propensity=e.astype(np.float32),
        ate=float(gamma), ate_se=0.0, sate=float(ite.mean()), att=float(ite[tb].mean()) if tb.any() else float(gamma),
        adjacency=roles.adjacency, roles=roles.roles, covariate_nodes=roles.covariate_nodes,
        identifiable=True, meta=meta,
    )
