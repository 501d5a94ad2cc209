"""The `Task` record: one observational dataset with its exact causal ground truth.

A task is what every later stage of the pipeline consumes (shards, corpus, loader,
model). It is a plain dataclass of numpy arrays and scalars; nothing in it refers
back to the sampler that produced it.

Shapes use N = number of units, d = number of observed covariates, J = number of
nodes in the causal graph (observed, hidden and post-treatment nodes together).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

import numpy as np


class Role(enum.IntEnum):
    """Role of a graph node relative to the (treatment, outcome) pair.

    Stored as small integers (`Task.roles`, dtype int8) so they survive any
    array format; `Role(code).name.lower()` gives the label.
    """

    COVARIATE = 0  #: observed pre-treatment node (a column of x)
    HIDDEN_CONFOUNDER = 1  #: unobserved common cause of treatment and outcome
    TREATMENT = 2
    OUTCOME = 3
    INSTRUMENT = 4  #: observed cause of T that reaches Y only through T (a column of x)
    MEDIATOR = 5  #: descendant of T and ancestor of Y (never in x)
    POST_TREATMENT = 6  #: other descendant of T (never in x)


ROLE_NAMES: tuple[str, ...] = tuple(r.name.lower() for r in Role)


@dataclass(eq=False)
class Task:
    """One causal-inference task.

    Data (what an estimator sees):
        x: (N, d) float32 observed pre-treatment covariates, standardised per node.
        t: (N,) int8 binary treatment.
        y: (N,) float32 observed outcome, ``y == where(t == 1, y1, y0)`` exactly.

    Ground truth:
        y0, y1: (N,) float32 potential outcomes under do(T=0) / do(T=1), computed
            with the same exogenous noise as the factual world.
        propensity: (N,) float32 true P(T=1 | parents of T) for each unit.
        ate: population average treatment effect E[Y(1) - Y(0)] (float).
        ate_se: standard error of `ate`; 0.0 when `ate` is exact (closed form).
        sate: sample ATE, mean(y1 - y0) over the N units.
        att: sample ATT, mean(y1 - y0) over the treated units.

    Structure:
        adjacency: (J, J) bool, ``adjacency[i, j]`` means an edge i -> j. Node ids
            are a topological order (edges only go from lower to higher ids).
        roles: (J,) int8 `Role` codes.
        covariate_nodes: (d,) int32 node id of each column of x.
        identifiable: True iff the observed covariates contain a valid back-door
            adjustment set for (T, Y); `meta["adjustment_set"]` names one.

    Provenance:
        meta: JSON-serialisable dict (graph family, mechanism and noise family per
            node, drawn hyperparameters, seed, QC rejections, overlap diagnostics).
    """

    x: np.ndarray
    t: np.ndarray
    y: np.ndarray
    y0: np.ndarray
    y1: np.ndarray
    propensity: np.ndarray
    ate: float
    ate_se: float
    sate: float
    att: float
    adjacency: np.ndarray
    roles: np.ndarray
    covariate_nodes: np.ndarray
    identifiable: bool
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def n_units(self) -> int:
        return int(self.x.shape[0])

    @property
    def n_covariates(self) -> int:
        return int(self.x.shape[1])

    @property
    def n_nodes(self) -> int:
        return int(self.adjacency.shape[0])

    @property
    def treatment_node(self) -> int:
        return int(np.flatnonzero(self.roles == Role.TREATMENT)[0])

    @property
    def outcome_node(self) -> int:
        return int(np.flatnonzero(self.roles == Role.OUTCOME)[0])

    @property
    def ite(self) -> np.ndarray:
        """(N,) unit-level effects y1 - y0 (shared exogenous noise)."""
        return self.y1 - self.y0

    def role_names(self) -> list[str]:
        return [ROLE_NAMES[int(r)] for r in self.roles]

    def equals(self, other: "Task") -> bool:
        """Bit-exact equality of every array and scalar (meta compared as dicts)."""
        arrays = ("x", "t", "y", "y0", "y1", "propensity", "adjacency", "roles", "covariate_nodes")
        for name in arrays:
            a, b = getattr(self, name), getattr(other, name)
            if a.shape != b.shape or a.dtype != b.dtype or not np.array_equal(a, b):
                return False
        scalars = ("ate", "ate_se", "sate", "att", "identifiable")
        return all(getattr(self, s) == getattr(other, s) for s in scalars) and self.meta == other.meta

    def summary(self) -> str:
        """One line for humans (used by `causalgen sample`)."""
        m = self.meta
        return (
            f"seed={m.get('seed')} graph={m.get('graph_family')} J={self.n_nodes} N={self.n_units} "
            f"d={self.n_covariates} treated={float(self.t.mean()):.2f} ate={self.ate:+.3f}"
            f"(se {self.ate_se:.3f}) sate={self.sate:+.3f} att={self.att:+.3f} "
            f"identifiable={self.identifiable} e in [{m.get('propensity_min', float('nan')):.3f}, "
            f"{m.get('propensity_max', float('nan')):.3f}]"
        )
