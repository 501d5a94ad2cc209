"""Random DAGs.

Every sampler returns a boolean adjacency matrix `adj` of shape (J, J) with
``adj[i, j]`` meaning an edge i -> j, and edges only from lower to higher node ids
(node ids are a topological order). Each takes an explicit numpy Generator and
never touches global random state.
"""

from __future__ import annotations

import numpy as np


def erdos_renyi(rng: np.random.Generator, n_nodes: int, expected_parents: float) -> np.ndarray:
    """Erdős–Rényi DAG: each of the J(J-1)/2 forward edges present with
    probability p = 2 k / (J - 1), so a node has k parents on average."""
    p = min(1.0, 2.0 * expected_parents / max(n_nodes - 1, 1))
    u = rng.random((n_nodes, n_nodes))
    return np.triu(u < p, k=1)


def scale_free(rng: np.random.Generator, n_nodes: int, expected_parents: float) -> np.ndarray:
    """Scale-free DAG by preferential attachment (Barabási–Albert style).

    Node j (in order) attaches to m = round(k) earlier nodes (fewer if j < m),
    chosen without replacement with probability proportional to degree + 1, so
    early nodes become hubs with many children (common causes).
    """
    m = max(1, int(round(expected_parents)))
    adj = np.zeros((n_nodes, n_nodes), dtype=bool)
    degree = np.zeros(n_nodes)
    gumbel = -np.log(-np.log(rng.random((n_nodes, n_nodes)) + 1e-300) + 1e-300)
    for j in range(1, n_nodes):
        k = min(m, j)
        # Gumbel-top-k: sampling without replacement proportional to weights.
        keys = np.log(degree[:j] + 1.0) + gumbel[j, :j]
        parents = np.argpartition(-keys, k - 1)[:k]
        adj[parents, j] = True
        degree[parents] += 1
        degree[j] += k
    return adj


def from_edges(nodes: list[str], edges: list[tuple[str, str]]) -> tuple[np.ndarray, list[str]]:
    """A fixed user DAG relabelled in a topological order.

    Returns (adj, ordered_names): ``ordered_names[i]`` is the user's name of node i.
    Ties are broken by the user's node order, so the result is deterministic.
    """
    import networkx as nx

    dag = nx.DiGraph()
    dag.add_nodes_from(nodes)
    dag.add_edges_from(edges)
    position = {n: i for i, n in enumerate(nodes)}
    order = list(nx.lexicographical_topological_sort(dag, key=lambda n: position[n]))
    index = {n: i for i, n in enumerate(order)}
    adj = np.zeros((len(order), len(order)), dtype=bool)
    for u, v in edges:
        adj[index[u], index[v]] = True
    return adj, order


def reachability(adj: np.ndarray) -> np.ndarray:
    """(J, J) bool: ``reach[i, j]`` iff there is a directed path i -> ... -> j
    of length >= 1. Repeated squaring: O(J^3 log J)."""
    reach = adj.copy()
    while True:
        step = reach | ((reach.astype(np.float32) @ reach.astype(np.float32)) > 0)
        if np.array_equal(step, reach):
            return reach
        reach = step


def to_networkx(adj: np.ndarray, names: list[str] | None = None):
    """The adjacency as a networkx DiGraph (node ids, or names when given)."""
    import networkx as nx

    g = nx.DiGraph()
    labels = names if names is not None else list(range(adj.shape[0]))
    g.add_nodes_from(labels)
    src, dst = np.nonzero(adj)
    g.add_edges_from((labels[i], labels[j]) for i, j in zip(src, dst))
    return g


GRAPH_SAMPLERS = {"erdos_renyi": erdos_renyi, "scale_free": scale_free}
