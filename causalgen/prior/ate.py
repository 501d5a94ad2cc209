"""Population ATE: closed form where one exists, else adaptive Monte Carlo.

Closed form (`analytic`, `scm.linear_ate`): when every ancestor of Y that is
simulated is linear with zero-mean noise (heteroscedastic noise is fine, the
scale multiplies independent zero-mean noise), E[Y | do(T=t)] follows by
propagating means through the calibrated standardisations.

Monte Carlo (`monte_carlo_ate`): fresh units from the same SCM (the calibration
of the factual sample is reused, T is set rather than drawn), in rounds of
``cfg.ate_mc_round_units`` until the standard error of mean(y1 - y0) is at most
``cfg.ate_mc_tolerance`` or ``cfg.ate_mc_units`` units are used. Only Y and its
ancestors are simulated, and nodes that do not descend from T only once. Each
task stops on its own standard error, so batching changes nothing.
"""

from __future__ import annotations

import numpy as np

from .config import MECHANISMS, TaskConfig
from .draft import Draft, fresh_noise
from .scm import INNER, OUTCOME, Calibration, Workspace, simulate

LINEAR = MECHANISMS.index("linear")


def analytic(draft: Draft) -> np.ndarray:
    """(B,) bool: E[Y | do(T)] has a closed form (linear ancestors of Y,
    zero-mean additive noise, linear effect modifier)."""
    scm, roles = draft.scm, draft.roles
    rows = np.arange(len(draft))
    anc = roles.ancestors_of_outcome.copy()
    anc[rows, scm.outcome] = True
    anc[rows, scm.treatment] = False
    inner = anc & ((scm.kind == INNER) | (scm.kind == OUTCOME))
    ok = ~np.any(inner & ((scm.family != LINEAR) | scm.pnl), axis=1)
    return ok & ~scm.mod_tanh


def _reach_outcome_avoiding_treatment(draft: Draft) -> np.ndarray:
    """(B, J) bool: Y and the nodes with a directed path to Y that does not
    pass through T (T itself included when it is a parent of such a node).

    Node ids are a topological order, so one backward sweep suffices: when
    node j is reached its own flag is final, and it passes the flag on to its
    parents unless j is T (whose value is set, not computed from its parents).
    """
    scm, adj = draft.scm, draft.roles.adjacency  # adj[b, parent, child]
    n_tasks, n_nodes = scm.kind.shape
    reach = np.zeros((n_tasks, n_nodes), dtype=bool)
    reach[np.arange(n_tasks), scm.outcome] = True
    for j in range(n_nodes - 1, 0, -1):
        pass_on = reach[:, j] & (scm.treatment != j)
        if pass_on.any():
            reach[:, :j] |= adj[:, :j, j] & pass_on[:, None]
    return reach


def monte_carlo_ate(cfg: TaskConfig, draft: Draft, cal: Calibration, workspace: Workspace | None = None):
    """Adaptive Monte-Carlo population ATE of every task in `draft`.
    Every round's noise and node values are consumed within the round, so they
    live in reusable `workspace` buffers (one is made here if none is given).

    Returns (ate, se, units): (B,) float64 mean of y1 - y0 over fresh units, its
    standard error, and the number of units used.
    """
    scm = draft.scm
    n_tasks = len(draft)
    rows = np.arange(n_tasks)
    compute = draft.roles.ancestors_of_outcome.copy()
    compute[rows, scm.outcome] = True
    compute[rows, scm.treatment] = False  # set, not drawn
    # Noise is drawn for every node in `compute` (that fixes each task's
    # stream), but only the nodes that reach Y other than through T are
    # simulated: with T set, ancestors of Y only through T (instruments and
    # the like) cannot change y, and no simulated node reads them.
    simulated = compute & _reach_outcome_avoiding_treatment(draft)
    mean = np.zeros(n_tasks)
    m2 = np.zeros(n_tasks)  # sum of squared deviations (Chan et al. merge)
    count = np.zeros(n_tasks, dtype=np.int64)
    active = rows
    sub, sub_cal = draft, cal
    ws = Workspace() if workspace is None else workspace
    while len(active):
        m = int(min(cfg.ate_mc_round_units, cfg.ate_mc_units - count[active[0]]))
        noise = fresh_noise(cfg, sub, compute[active], m, ws)
        sim = simulate(sub.scm, noise.eps, noise.row, np.full(len(active), m), sub_cal,
                       calibrate=False, compute=simulated[active], workspace=ws, key="mc_values")
        y = sim.values[:, np.arange(len(active)), sub.scm.outcome].astype(np.float64)
        ite = y[1] - y[0]
        r_mean = ite.mean(axis=1)
        np.subtract(ite, r_mean[:, None], out=ite)  # in place: the same bits, no temporaries
        r_m2 = np.square(ite, out=ite).sum(axis=1)
        n_old = count[active].astype(np.float64)
        total = n_old + m
        delta = r_mean - mean[active]
        mean[active] += delta * (m / total)
        m2[active] += r_m2 + delta * delta * (n_old * m / total)
        count[active] += m
        se = np.sqrt(m2[active] / (count[active] - 1) / count[active])
        done = (se <= cfg.ate_mc_tolerance) | (count[active] >= cfg.ate_mc_units)
        keep = np.flatnonzero(~done)
        if len(keep) < len(active):
            sub, sub_cal = sub.take(keep), sub_cal.take(keep)
            active = active[keep]
    se = np.sqrt(m2 / (count - 1) / count)
    return mean, se, count
