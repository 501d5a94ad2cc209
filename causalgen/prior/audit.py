"""Auditing the ground truth: a task's population ATE re-estimated on many fresh units drawn from
a stream independent of the one that labelled it.

`audit_ates(config, seeds, n_units)` rebuilds every task exactly as `sample_tasks` made it (same
attempt, same graph, parameters and standardisation constants), then simulates ``n_units`` fresh
interventional units per task from ``default_rng([seed, attempt, AUDIT_STREAM, audit_seed])``,
a stream the sampler never uses. Comparing the label with the audit, ``z = (ate - audit) /
sqrt(ate_se^2 + audit_se^2)`` should look standard normal if the stated standard errors are
honest; ``tests/test_ate_audit.py`` and ``scripts/audit_ate.py`` check that.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from .ate import monte_carlo_ate, pilot_statistics
from .draft import draft_structure, draw_parameters, padded_units
from .presets import load_config
from .sampler import LINEAR_FAST_PATH, _binary_outcomes, _simulate, sample_tasks
from .scm import Workspace
from .streams import task_generators

#: third entropy word of the audit streams (the sampler's streams have two words)
AUDIT_STREAM = 0xA0D17


@dataclass
class Audit:
    """Per task: the label (`ate`, `ate_se`, Monte Carlo or closed form) and the audit's estimate
    of the same population ATE (`audit`, `audit_se`) from `audit_units` fresh units, with the
    relative standard error of the audit sample's variance (`audit_variance_error`: near 1 means
    even the audit is dominated by a few units). (T,) arrays."""

    seed: np.ndarray
    ate: np.ndarray
    ate_se: np.ndarray
    monte_carlo: np.ndarray
    audit: np.ndarray
    audit_se: np.ndarray
    audit_variance_error: np.ndarray
    audit_units: int

    @property
    def z(self) -> np.ndarray:
        """(label - audit) over their combined standard error, for Monte-Carlo labels (NaN for
        closed forms). The error also counts float32 arithmetic: both estimates average
        float32 outcomes, good to about 1e-6 relative (without it a constant effect, whose
        Monte-Carlo standard error is 0, would give 0 / 0)."""
        rounding = 1e-6 * (1.0 + np.abs(self.audit))
        se = np.sqrt(self.ate_se ** 2 + self.audit_se ** 2 + rounding ** 2)
        return np.where(self.monte_carlo, (self.ate - self.audit) / se, np.nan)


def audit_ates(config, seeds, n_units: int = 1 << 16, *, audit_seed: int = 0, round_units: int = 1 << 15) -> Audit:
    """Re-estimate the population ATE of each task on `n_units` independent fresh units.

    Closed-form tasks are audited too (their ``ate_se`` is 0): the audit then checks the
    closed form against simulation.
    """
    cfg = load_config(config)
    seeds = [int(s) for s in seeds]
    tasks = sample_tasks(cfg, seeds)
    attempts = [int(t.meta["attempt"]) for t in tasks]
    audit_cfg = cfg.replace(ate_mc_units=int(n_units), ate_mc_tolerance=0.0, ate_mc_round_units=int(min(round_units, n_units)))
    audit = np.empty(len(seeds))
    audit_se = np.empty(len(seeds))
    variance_error = np.empty(len(seeds))
    workspace = Workspace()
    for i, (seed, attempt) in enumerate(zip(seeds, attempts)):
        gens = task_generators([seed], [attempt])
        draft, reasons = draft_structure(cfg, np.array([seed]), np.array([attempt]), gens)
        assert reasons[0] is None, f"seed {seed}: the accepted attempt {attempt} no longer drafts"
        n_pad = int(padded_units(draft.n_units).max())
        noise = draw_parameters(cfg, draft, n_pad, workspace)
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            out = _binary_outcomes(draft, _simulate(draft, n_pad, noise, LINEAR_FAST_PATH, workspace), noise)
            centre, _, _ = pilot_statistics(out.effects(), draft.n_units)
            fresh = dataclasses.replace(draft, gens=[np.random.default_rng([seed, attempt, AUDIT_STREAM, audit_seed])])
            res = monte_carlo_ate(audit_cfg, fresh, out.cal, np.array([int(n_units)]), centre, workspace)
        audit[i], audit_se[i], variance_error[i] = res.ate[0], res.se[0], res.variance_error[0]
    monte_carlo = np.array([t.meta["ate_method"] == "monte_carlo" for t in tasks])
    return Audit(seed=np.array(seeds), ate=np.array([t.ate for t in tasks]), ate_se=np.array([t.ate_se for t in tasks]),
                 monte_carlo=monte_carlo, audit=audit, audit_se=audit_se, audit_variance_error=variance_error,
                 audit_units=int(n_units))


__all__ = ["AUDIT_STREAM", "Audit", "audit_ates"]
