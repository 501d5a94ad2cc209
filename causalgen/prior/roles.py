"""Treatment/outcome choice, node roles, hidden confounders and identifiability.

All functions work on a (J, J) bool adjacency in topological order (see graph.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .graph import reachability
from .task import Role


@dataclass
class RoleAssignment:
    """Roles of the nodes of one graph.

    adjacency: (J, J) bool, possibly edited (T -> Y added for a direct effect, or
        T's paths into Y cut for a zero-effect task).
    roles: (J,) int8 `Role` codes.
    covariate_nodes: (d,) int32 observed pre-treatment nodes (the columns of x).
    needed: (J,) bool nodes whose values must be simulated: every pre-treatment
        node, T, Y and the mediators (other post-treatment nodes never reach x or Y).
    ancestors_of_outcome: (J,) bool nodes with a directed path to Y.
    adjustment_set: observed node ids forming a valid back-door set, or None.
    """

    treatment: int
    outcome: int
    adjacency: np.ndarray
    roles: np.ndarray
    covariate_nodes: np.ndarray
    needed: np.ndarray
    ancestors_of_outcome: np.ndarray
    identifiable: bool
    adjustment_set: list[int] | None
    zero_effect: bool


@dataclass
class BatchRoles:
    """Roles of B padded graphs (see `RoleAssignment`; padded nodes are never
    selected). ``valid[b]`` is False where no (T, Y) pair exists; the other
    fields of such a task are meaningless.

    treatment, outcome: (B,) int; adjacency: (B, J, J); roles: (B, J) int8;
    observed: (B, J) bool covariate nodes; needed, ancestors_of_outcome,
    descendants_of_treatment: (B, J) bool; identifiable: (B,) bool;
    adjustment_sets: one list (or None) per task.
    """

    valid: np.ndarray
    treatment: np.ndarray
    outcome: np.ndarray
    adjacency: np.ndarray
    roles: np.ndarray
    observed: np.ndarray
    needed: np.ndarray
    ancestors_of_outcome: np.ndarray
    descendants_of_treatment: np.ndarray
    identifiable: np.ndarray
    adjustment_sets: list
    zero_effect: np.ndarray

    def task(self, b: int) -> RoleAssignment:
        return RoleAssignment(
            treatment=int(self.treatment[b]),
            outcome=int(self.outcome[b]),
            adjacency=self.adjacency[b],
            roles=self.roles[b],
            covariate_nodes=np.flatnonzero(self.observed[b]).astype(np.int32),
            needed=self.needed[b],
            ancestors_of_outcome=self.ancestors_of_outcome[b],
            identifiable=bool(self.identifiable[b]),
            adjustment_set=self.adjustment_sets[b],
            zero_effect=bool(self.zero_effect[b]),
        )


def _pick(mask: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Per row b: the floor(u[b] * count)-th True index of mask[b] (u in [0, 1)).
    mask: (B, J) with at least one True per row that matters; u: (B,)."""
    count = mask.sum(axis=1)
    r = np.minimum((u * count).astype(np.int64), count - 1)
    return np.argmax(mask & (np.cumsum(mask, axis=1) == (r + 1)[:, None]), axis=1)


def choose_treatment(adj: np.ndarray, u: np.ndarray, candidates: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per graph (B, J, J): a node with at least one child, preferring nodes
    that also have a parent (so that confounding is possible), among `candidates`
    ((B, J) bool; None = every node).
    Returns (treatment (B,), found (B,) bool); found is False without edges."""
    has_child = adj.any(axis=2)
    if candidates is not None:
        has_child = has_child & candidates
    has_parent = adj.any(axis=1)
    preferred = has_child & has_parent
    pool = np.where(preferred.any(axis=1)[:, None], preferred, has_child)
    return _pick(pool, u), has_child.any(axis=1)


def assign_roles_batch(
    adj: np.ndarray,
    n_nodes: np.ndarray,
    u_treatment: np.ndarray,
    u_outcome: np.ndarray,
    zero_effect: np.ndarray,
    hidden_u: np.ndarray,
    hidden_fraction: np.ndarray,
    treatment: int | None = None,
    outcome: int | None = None,
    candidates: np.ndarray | None = None,
) -> BatchRoles:
    """Roles for B padded graphs at once.

    adj: (B, J, J) bool; n_nodes: (B,) real node count per graph; u_treatment,
    u_outcome: (B,) uniforms choosing T and Y; zero_effect: (B,) bool; hidden_u:
    (B, J) uniforms, a confounder is hidden iff hidden_u < hidden_fraction (B,).
    treatment/outcome fix the nodes instead (fixed graphs). candidates: (B, J) bool nodes T
    may be (None = all): not real-table roots, not irrelevant covariates.
    """
    n_tasks, size, _ = adj.shape
    rows = np.arange(n_tasks)
    own = np.arange(size)[None, :] < np.asarray(n_nodes)[:, None]
    adj = adj.copy()
    if treatment is not None:
        t = np.full(n_tasks, treatment)
        valid = np.ones(n_tasks, dtype=bool)
    else:
        t, valid = choose_treatment(adj, u_treatment, candidates)
    reach = reachability(adj)
    desc = reach[rows, t]
    if outcome is not None:
        y = np.full(n_tasks, outcome)
        valid &= y > t
    else:
        valid &= desc.any(axis=1)
        y = _pick(desc | ~valid[:, None], u_outcome)
    zero_effect = np.asarray(zero_effect, dtype=bool)

    # Zero effect: cut every edge into Y from T or its descendants (no directed
    # path T -> Y). Otherwise add T -> Y, so the effect-size dial always acts.
    desc_or_t = desc.copy()
    desc_or_t[rows, t] = True
    into_y = adj[rows, :, y]
    adj[rows, :, y] = np.where(zero_effect[:, None], into_y & ~desc_or_t, into_y)
    adj[rows, t, y] |= ~zero_effect
    reach = reachability(adj)

    desc_t = reach[rows, t]
    anc_y = reach[rows, :, y]
    anc_t = reach[rows, :, t]
    # Ancestors of Y through paths that avoid T: drop T's out-edges.
    adj_no_t = adj.copy()
    adj_no_t[rows, t, :] = False
    anc_y_avoiding_t = reachability(adj_no_t)[rows, :, y]

    # Descendants of Y are post-treatment too: in a zero-effect task they need not
    # descend from T, but they would still leak the outcome into x.
    post = (desc_t | reach[rows, y]) & own
    pre = ~post & own
    pre[rows, t] = False
    pre[rows, y] = False
    confounder = pre & anc_t & anc_y_avoiding_t
    instrument = pre & anc_t & ~anc_y_avoiding_t
    hidden = confounder & (hidden_u < np.asarray(hidden_fraction)[:, None])
    mediator = desc_t & anc_y
    roles = np.full((n_tasks, size), Role.COVARIATE, dtype=np.int8)
    roles[instrument] = Role.INSTRUMENT
    roles[hidden] = Role.HIDDEN_CONFOUNDER
    roles[post] = Role.POST_TREATMENT
    roles[mediator] = Role.MEDIATOR
    roles[rows, t] = Role.TREATMENT
    roles[rows, y] = Role.OUTCOME

    observed = pre & ~hidden
    needed = pre | mediator
    needed[rows, t] = True
    needed[rows, y] = True

    # With every pre-treatment node observed, the parents of T block every
    # back-door path; with hidden confounders, search for a valid set.
    task_of, parent = np.nonzero(adj[rows, :, t])
    parents_of_t = np.split(parent, np.cumsum(np.bincount(task_of, minlength=n_tasks))[:-1])
    adjustment_sets = [p.tolist() for p in parents_of_t]
    for b in np.flatnonzero(hidden.any(axis=1) & valid):
        adjustment_sets[b] = backdoor_adjustment_set(adj[b], int(t[b]), int(y[b]), observed[b], desc_t[b])
    for b in np.flatnonzero(~valid):
        adjustment_sets[b] = None
    identifiable = np.array([a is not None for a in adjustment_sets], dtype=bool)
    return BatchRoles(
        valid=valid, treatment=t, outcome=y, adjacency=adj, roles=roles, observed=observed,
        needed=needed, ancestors_of_outcome=anc_y, descendants_of_treatment=desc_t,
        identifiable=identifiable, adjustment_sets=adjustment_sets, zero_effect=zero_effect,
    )


def assign_roles(
    adj: np.ndarray,
    u_treatment: float,
    u_outcome: float,
    zero_effect: bool,
    hidden_u: np.ndarray,
    hidden_fraction: float,
    treatment: int | None = None,
    outcome: int | None = None,
) -> RoleAssignment | None:
    """Roles for one graph, or None if no valid (T, Y) pair exists (see
    `assign_roles_batch`)."""
    n = adj.shape[0]
    batch = assign_roles_batch(
        adj[None], np.array([n]), np.array([u_treatment]), np.array([u_outcome]), np.array([zero_effect]),
        np.asarray(hidden_u, dtype=np.float64)[None, :n], np.array([hidden_fraction]), treatment, outcome,
    )
    return batch.task(0) if batch.valid[0] else None


def backdoor_adjustment_set(
    adj: np.ndarray, t: int, y: int, observed_pre: np.ndarray, desc_t: np.ndarray
) -> list[int] | None:
    """A valid back-door adjustment set among the observed pre-treatment nodes, or None.

    If any valid set exists among the allowed nodes, then the allowed ancestors of
    {T, Y} form one (van der Zander, Liśkiewicz & Textor, 2014), so it is enough
    to test Z = An(T, Y) ∩ allowed: Z must d-separate T and Y once T's outgoing
    edges are removed. d-separation is tested on the moralised ancestral graph.
    """
    reach = reachability(adj)
    anc = reach[:, t] | reach[:, y]
    z = anc & observed_pre & ~desc_t
    z[[t, y]] = False

    g = adj.copy()
    g[t, :] = False  # the back-door graph
    # An({T, Y} ∪ Z) in the back-door graph: the set and every node with a path into it.
    base = z.copy()
    base[[t, y]] = True
    keep = base | reachability(g)[:, base].any(axis=1)

    sub = g & keep[:, None] & keep[None, :]
    moral = sub | sub.T
    # marry parents of a common child
    for child in np.flatnonzero(keep):
        parents = np.flatnonzero(sub[:, child])
        if len(parents) > 1:
            moral[np.ix_(parents, parents)] = True
    np.fill_diagonal(moral, False)
    moral[z, :] = False
    moral[:, z] = False
    # breadth-first search from T
    seen = np.zeros(len(keep), dtype=bool)
    frontier = np.zeros(len(keep), dtype=bool)
    frontier[t] = True
    while frontier.any():
        seen |= frontier
        frontier = moral[frontier].any(axis=0) & ~seen
    if seen[y]:
        return None
    return np.flatnonzero(z).tolist()
