"""Random DAGs.

Every sampler returns a boolean adjacency matrix `adj` of shape (J, J) with
``adj[i, j]`` meaning an edge i -> j, and edges only from lower to higher node ids
(node ids are a topological order). Each takes an explicit numpy Generator and
never touches global random state.

The sampler draws graphs for a whole batch of tasks at once: the ``*_batch``
functions take each task's uniforms, padded to (B, J, J) for the batch's largest
graph (task b uses ``u[b, :n_b, :n_b]``), and return (B, J, J) adjacencies with
no edge outside a task's own nodes. The per-task functions wrap them.
"""

from __future__ import annotations

import numpy as np


def _own_nodes(n_nodes: np.ndarray, size: int) -> np.ndarray:
    """(B, J) bool: node j exists in task b."""
    return np.arange(size)[None, :] < np.asarray(n_nodes)[:, None]


def erdos_renyi_batch(u: np.ndarray, n_nodes: np.ndarray, expected_parents: np.ndarray) -> np.ndarray:
    """Erdős–Rényi DAGs: each of the J(J-1)/2 forward edges present with
    probability p = 2 k / (J - 1), so a node has k parents on average.

    u: (B, J, J) float64 uniforms; n_nodes, expected_parents: (B,).
    """
    n_nodes = np.asarray(n_nodes)
    p = np.minimum(1.0, 2.0 * np.asarray(expected_parents, dtype=np.float64) / np.maximum(n_nodes - 1, 1))
    own = _own_nodes(n_nodes, u.shape[-1])
    return np.triu(u < p[:, None, None], k=1) & own[:, :, None] & own[:, None, :]


def scale_free_batch(u: np.ndarray, n_nodes: np.ndarray, expected_parents: np.ndarray) -> np.ndarray:
    """Scale-free DAGs by preferential attachment (Barabási–Albert style).

    Node j (in order) attaches to m = round(k) earlier nodes (fewer if j < m),
    chosen without replacement with probability proportional to degree + 1, so
    early nodes become hubs with many children (common causes).
    u: (B, J, J) float64 uniforms (row j drives node j's choice); n_nodes,
    expected_parents: (B,).
    """
    n_tasks, size, _ = u.shape
    n_nodes = np.asarray(n_nodes)
    m = np.maximum(1, np.round(np.asarray(expected_parents, dtype=np.float64)).astype(np.int64))
    adj = np.zeros((n_tasks, size, size), dtype=bool)
    degree = np.zeros((n_tasks, size))
    gumbel = -np.log(-np.log(u + 1e-300) + 1e-300)
    for j in range(1, size):
        active = j < n_nodes
        k = np.minimum(m, j)
        # Gumbel-top-k: sampling without replacement proportional to weights.
        keys = np.log(degree[:, :j] + 1.0) + gumbel[:, j, :j]
        order = np.argsort(-keys, axis=1, kind="stable")
        chosen = np.zeros((n_tasks, j), dtype=bool)
        np.put_along_axis(chosen, order, np.arange(j)[None, :] < k[:, None], axis=1)
        chosen &= active[:, None]
        adj[:, :j, j] = chosen
        degree[:, :j] += chosen
        degree[:, j] += np.where(active, k, 0)
    return adj


def erdos_renyi(rng: np.random.Generator, n_nodes: int, expected_parents: float) -> np.ndarray:
    """One Erdős–Rényi DAG (see `erdos_renyi_batch`)."""
    u = rng.random((n_nodes, n_nodes))
    return erdos_renyi_batch(u[None], np.array([n_nodes]), np.array([expected_parents]))[0]


def scale_free(rng: np.random.Generator, n_nodes: int, expected_parents: float) -> np.ndarray:
    """One scale-free DAG (see `scale_free_batch`)."""
    u = rng.random((n_nodes, n_nodes))
    return scale_free_batch(u[None], np.array([n_nodes]), np.array([expected_parents]))[0]


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
    """(..., J, J) bool: ``reach[..., i, j]`` iff there is a directed path
    i -> ... -> j of length >= 1, for one graph or a batch of graphs.

    Node ids are a topological order, so one backward sweep suffices: the
    descendants of i are its children plus their descendants, which are final
    by the time i is reached. J steps of O(J^2) work per graph.
    """
    reach = adj.copy()
    for i in range(adj.shape[-1] - 2, -1, -1):
        reach[..., i, :] |= np.any(adj[..., i, :, None] & reach, axis=-2)
    return reach


def to_networkx(adj: np.ndarray, names: list[str] | None = None):
    """The adjacency as a networkx DiGraph (node ids, or names when given)."""
    import networkx as nx

    g = nx.DiGraph()
    labels = names if names is not None else list(range(adj.shape[0]))
    g.add_nodes_from(labels)
    src, dst = np.nonzero(adj)
    g.add_edges_from((labels[i], labels[j]) for i, j in zip(src, dst))
    return g


GRAPH_SAMPLERS = {"erdos_renyi": erdos_renyi_batch, "scale_free": scale_free_batch}
