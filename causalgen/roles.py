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


def _pick(mask: np.ndarray, u: float) -> int:
    """The floor(u * count)-th True index of mask (u in [0, 1))."""
    idx = np.flatnonzero(mask)
    return int(idx[min(int(u * len(idx)), len(idx) - 1)])


def choose_treatment(adj: np.ndarray, reach: np.ndarray, u: float) -> int | None:
    """A node with at least one descendant, preferring nodes that also have a
    parent (so that confounding is possible). None if the graph has no edge."""
    has_child = reach.any(axis=1)
    has_parent = adj.any(axis=0)
    preferred = has_child & has_parent
    if preferred.any():
        return _pick(preferred, u)
    if has_child.any():
        return _pick(has_child, u)
    return None


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
    """Roles for one graph, or None if no valid (T, Y) pair exists.

    u_treatment, u_outcome: uniforms choosing T and Y; hidden_u: (J,) uniforms,
    a confounder is hidden iff hidden_u < hidden_fraction. treatment/outcome fix
    the nodes instead (fixed graphs).
    """
    adj = adj.copy()
    n = adj.shape[0]
    reach = reachability(adj)
    t = treatment if treatment is not None else choose_treatment(adj, reach, u_treatment)
    if t is None:
        return None
    if outcome is not None:
        y = outcome
        if y <= t:
            return None
    else:
        desc = reach[t].copy()
        if not desc.any():
            return None
        y = _pick(desc, u_outcome)

    if zero_effect:
        # Cut every edge into Y from T or its descendants: no directed path T -> Y.
        desc_or_t = reach[t].copy()
        desc_or_t[t] = True
        adj[desc_or_t, y] = False
    else:
        adj[t, y] = True  # a direct effect, so the effect-size dial always acts
    reach = reachability(adj)

    desc_t = reach[t].copy()
    anc_y = reach[:, y].copy()
    anc_t = reach[:, t].copy()
    # Ancestors of Y through paths that avoid T: drop T's out-edges.
    adj_no_t = adj.copy()
    adj_no_t[t, :] = False
    anc_y_avoiding_t = reachability(adj_no_t)[:, y]

    roles = np.full(n, Role.COVARIATE, dtype=np.int8)
    # Descendants of Y are post-treatment too: in a zero-effect task they need not
    # descend from T, but they would still leak the outcome into x.
    post = desc_t | reach[y]
    pre = ~post
    pre[[t, y]] = False
    confounder = pre & anc_t & anc_y_avoiding_t
    instrument = pre & anc_t & ~anc_y_avoiding_t
    hidden = confounder & (hidden_u[:n] < hidden_fraction)
    roles[instrument] = Role.INSTRUMENT
    roles[hidden] = Role.HIDDEN_CONFOUNDER
    roles[post] = Role.POST_TREATMENT
    roles[desc_t & anc_y] = Role.MEDIATOR
    roles[t] = Role.TREATMENT
    roles[y] = Role.OUTCOME

    observed_pre = pre & ~hidden
    covariate_nodes = np.flatnonzero(observed_pre).astype(np.int32)
    needed = pre.copy()
    needed[[t, y]] = True
    needed |= desc_t & anc_y

    if hidden.any():
        adjustment = backdoor_adjustment_set(adj, t, y, observed_pre, desc_t)
    else:
        # With every pre-treatment node observed, the parents of T block every
        # back-door path.
        adjustment = np.flatnonzero(adj[:, t]).tolist()
    return RoleAssignment(
        treatment=t,
        outcome=y,
        adjacency=adj,
        roles=roles,
        covariate_nodes=covariate_nodes,
        needed=needed,
        ancestors_of_outcome=anc_y,
        identifiable=adjustment is not None,
        adjustment_set=adjustment,
        zero_effect=zero_effect,
    )


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
