"""Drafting: the structure, parameters and noise of a batch of tasks, before simulation.

Every task (seed, attempt) draws from its own Generator (streams.py), in this order:

  1. `draft_structure`: 16 scalars, then float64 uniforms for the graph, the
     hidden-confounder choice and six per-node choices. Graphs, roles, node
     kinds, mechanism and noise families are then computed for the whole batch
     at once from these uniforms, with padded (B, J, J) arrays.
  2. `draw_parameters`: once the roles say which nodes are simulated, one block
     of float32 uniforms for the parameters of the mechanism families the task
     uses, then the noise uniforms of its simulated nodes, written straight into
     the batch's noise array.
  3. (ate.py) fresh units for a Monte-Carlo ATE, where one is needed.

A task's draws depend only on its own uniforms, so batching changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from functools import lru_cache

import numpy as np

from .config import MECHANISMS, NOISE_FAMILIES, OUTCOME_TYPES, TaskConfig
from .graph import GRAPH_SAMPLERS, erdos_renyi_batch, from_edges
from .measure import UNIFORMS_PER_NODE, draw_measurement
from .mixture import Mixture
from .mechanisms import block_size, params_from_uniforms
from .noise import noise_from_uniforms, uniform_bits, uniforms_from_bits
from .roles import BatchRoles, assign_roles_batch
from .task import Role
from .scm import INNER, OUTCOME, ROOT, SKIP, TREATMENT, BatchSCM, Workspace, buffer_or_empty

F32 = np.float32
#: units are padded to a multiple of this (SIMD-friendly, and it fixes the
#: length of every reduction over units, which keeps results batch-invariant)
UNIT_BLOCK = 64


def _uniform_in(rng_range, u):
    lo, hi = rng_range
    return lo + (hi - lo) * u


def _int_in(rng_range, u):
    lo, hi = rng_range
    return np.minimum(hi, lo + (np.asarray(u) * (hi - lo + 1)).astype(np.int64))


@lru_cache(maxsize=32)
def _fixed_graph(nodes: tuple, edges: tuple) -> tuple[np.ndarray, list[str]]:
    adj, names = from_edges(list(nodes), list(edges))
    adj.setflags(write=False)
    return adj, names


def max_nodes(cfg: TaskConfig) -> int:
    """J: the most nodes a task of `cfg` can have (table columns and irrelevant covariates
    included); node arrays are padded to it."""
    if cfg.graph.nodes is not None:
        return len(cfg.graph.nodes)
    extra = cfg.tables.columns[1] if cfg.tables is not None else 0
    extra += cfg.covariates.irrelevant[1] if cfg.covariates is not None else 0
    return cfg.graph.n_nodes[1] + extra


def max_slots(cfg: TaskConfig) -> int:
    """S: parent slots per node, the largest possible in-degree (parameters are drawn per slot)."""
    size = max_nodes(cfg)
    cap = size - 1 if cfg.graph.max_parents is None else min(size - 1, cfg.graph.max_parents)
    return max(cap, 1)


def padded_units(n_units) -> np.ndarray:
    return -(-np.asarray(n_units) // UNIT_BLOCK) * UNIT_BLOCK


@dataclass
class Draft:
    """B tasks drafted together; node arrays padded to J = the config's max nodes.

    scm: the simulator's view (kinds, parent slots, families, dials; params are
        filled by `draw_parameters`).
    roles: `BatchRoles`; gens: the tasks' Generators (their streams continue);
    n_nodes, n_units: (B,) real sizes; noise_family: (B, J) codes;
    graph_family: (B,) codes into the config's graph mixture names.
    """

    seeds: np.ndarray
    attempts: np.ndarray
    gens: list
    n_nodes: np.ndarray
    n_units: np.ndarray
    graph_family: list
    roles: BatchRoles
    scm: BatchSCM
    noise_family: np.ndarray
    expected_parents: np.ndarray
    hidden_fraction: np.ndarray
    node_names: list | None
    #: the wider prior, None when the config has no such section: per-node measurement
    #: (`causalgen.prior.measure.Measurement`), the outcome's type and the real-table draws
    measure: object | None = None
    outcome: "OutcomeDraft | None" = None
    table: "TableDraft | None" = None
    #: (B,) nodes of the main graph (0 .. n_main - 1; the rest are irrelevant covariates)
    n_main: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.seeds)

    def take(self, idx: np.ndarray) -> "Draft":
        """The sub-batch of tasks `idx` (an index array)."""
        out = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, np.ndarray):
                out[f.name] = v[idx]
            elif f.name in ("gens", "graph_family"):
                out[f.name] = [v[i] for i in idx]
            elif f.name in ("scm", "roles"):
                out[f.name] = _take_fields(v, idx)
            elif hasattr(v, "take"):
                out[f.name] = v.take(idx)
            else:
                out[f.name] = v
        return Draft(**out)


@dataclass
class OutcomeDraft:
    """binary: (B,) bool tasks with a binary outcome; prevalence, logit_a: (B,) float32 target
    P(Y = 1) and slope of the latent logit (`causalgen.prior.config.OutcomeConfig`)."""

    binary: np.ndarray
    prevalence: np.ndarray
    logit_a: np.ndarray

    def take(self, idx) -> "OutcomeDraft":
        return OutcomeDraft(self.binary[idx], self.prevalence[idx], self.logit_a[idx])


@dataclass
class TableDraft:
    """Real-table covariates of B tasks (lists indexed by task; None for tasks without).

    table: the `CovariateTable`; columns: (d_tab,) int64 its columns used, in node order (node
    k < d_tab is column columns[k]); sample: (N,) int64 the task's units, positions in the
    table's complete rows (its population, simulated whole).
    """

    table: list
    columns: list
    sample: list

    def take(self, idx) -> "TableDraft":
        return TableDraft([self.table[i] for i in idx], [self.columns[i] for i in idx], [self.sample[i] for i in idx])

    def n_columns(self) -> np.ndarray:
        return np.array([0 if c is None else len(c) for c in self.columns], dtype=np.int64)


def _take_fields(obj, idx):
    out = {}
    for f in fields(obj):
        v = getattr(obj, f.name)
        if isinstance(v, np.ndarray):
            out[f.name] = v[idx]
        elif isinstance(v, list):
            out[f.name] = [v[i] for i in idx]
        elif isinstance(v, dict):
            out[f.name] = {k: ({kk: a[idx] for kk, a in p.items()} if isinstance(p, dict) else p[idx]) for k, p in v.items()}
        elif hasattr(v, "take"):
            out[f.name] = v.take(idx)
        else:
            out[f.name] = v
    return type(obj)(**out)


# ------------------------------------------------------------------ 1. structure


def draft_structure(cfg: TaskConfig, seeds: np.ndarray, attempts: np.ndarray, gens: list) -> tuple[Draft, list]:
    """Structure of every task; returns (draft, reasons) where reasons[b] is a
    rejection reason (str) or None.

    Node layout of a task (ids are a topological order): with real-table covariates its d_tab
    table columns first (roots), then the graph's n_nodes simulated nodes (the main graph is
    nodes 0 .. d_tab + n_nodes - 1), then its irrelevant covariates (a DAG of their own).
    """
    g = cfg.graph
    size = max_nodes(cfg)
    n_tasks = len(gens)
    graph_mix = Mixture(g.families, ("erdos_renyi", "scale_free", "fixed"))
    fixed = g.nodes is not None and graph_mix.names == ["fixed"]
    tables = load_config_tables(cfg) if cfg.tables is not None else None
    cov = cfg.covariates

    # -- per task: the scalar block, then the node-level uniforms (graph, hidden
    # confounders, six per-node choices) for all J of its nodes; J is known up front when
    # fixed. The wider prior's draws (tables, measurement, outcome) come after, and only when
    # the config has the section, so the other configs' streams are untouched.
    lo, hi = (size, size) if fixed else g.n_nodes
    per_node = (lambda n: 7 * n) if fixed else (lambda n: n * n + 7 * n)
    blocks, n_list, main_list, extra = [], [], [], []
    simple = lo == hi and tables is None and cov is None and cfg.outcome is None
    for gen in gens:
        if simple:
            blocks.append(gen.random(16 + per_node(lo)))
            n_list.append(lo)
            main_list.append(lo)
            continue
        u = gen.random(16)
        n_sim = min(hi, lo + int(u[1] * (hi - lo + 1)))  # as _int_in
        mine = {}
        d_tab = 0
        if tables is not None:
            tu = gen.random(2)
            table = tables[min(int(tu[0] * len(tables)), len(tables) - 1)]
            c_lo, c_hi = cfg.tables.columns
            c_hi = min(c_hi, table.values.shape[1])
            d_tab = min(c_hi, max(1, c_lo) + int(tu[1] * (c_hi - max(1, c_lo) + 1)))
            mine["table"] = table
        n_irr = 0
        if cov is not None:
            i_lo, i_hi = cov.irrelevant
            n_irr = min(i_hi, i_lo + int(u[14] * (i_hi - i_lo + 1)))
        n = d_tab + n_sim + n_irr
        blocks.append(np.concatenate([u, gen.random(per_node(n))]))
        n_list.append(n)
        main_list.append(d_tab + n_sim)
        if cov is not None:
            mine["measure"] = gen.random(n * UNIFORMS_PER_NODE).reshape(n, UNIFORMS_PER_NODE)
        if cfg.outcome is not None:
            mine["outcome"] = gen.random(2)
        if tables is not None:
            table = mine["table"]
            m_rows, c_all = table.values.shape
            mine["columns"] = np.sort(np.argsort(gen.random(c_all), kind="stable")[:d_tab])
            mine["row_keys"] = gen.random(m_rows)
        extra.append(mine)
    n_nodes = np.array(n_list, dtype=np.int64)
    n_main = np.array(main_list, dtype=np.int64)
    u16 = np.empty((n_tasks, 16))
    graph_u = np.zeros((n_tasks, size, size))
    hidden_u = np.ones((n_tasks, size))
    node_u = np.zeros((n_tasks, 6, size))
    for n in np.unique(n_nodes):
        idx = np.flatnonzero(n_nodes == n)
        block = np.stack([blocks[i] for i in idx])
        u16[idx] = block[:, :16]
        e = 16 if fixed else 16 + n * n
        if not fixed:
            graph_u[idx, :n, :n] = block[:, 16:e].reshape(-1, n, n)
        hidden_u[idx, :n] = block[:, e : e + n]
        node_u[idx, :, :n] = block[:, e + n :].reshape(-1, 6, n)

    # -- graphs
    if fixed:
        fixed_adj, names = _fixed_graph(tuple(g.nodes), tuple(tuple(e) for e in g.edges))
        adj = np.broadcast_to(fixed_adj, (n_tasks, size, size)).copy()
        expected_parents = np.full(n_tasks, float(fixed_adj.sum() / size))
        graph_family = ["fixed"] * n_tasks
        fixed_t = names.index(cfg.roles.treatment) if cfg.roles.treatment else None
        fixed_y = names.index(cfg.roles.outcome) if cfg.roles.outcome else None
    else:
        names, fixed_t, fixed_y = None, None, None
        expected_parents = _uniform_in(g.expected_parents, u16[:, 2])
        graph_family = [graph_mix.pick(u) for u in u16[:, 0]]
        adj = np.zeros((n_tasks, size, size), dtype=bool)
        fam_arr = np.array(graph_family)
        for fam in set(graph_family):
            idx = np.flatnonzero(fam_arr == fam)
            adj[idx] = GRAPH_SAMPLERS[fam](graph_u[idx], n_main[idx], expected_parents[idx])
        if (n_nodes > n_main).any():
            adj |= _irrelevant_block(graph_u, n_main, n_nodes, expected_parents)
    table_cols = np.zeros(n_tasks, dtype=np.int64)
    if tables is not None:
        table_cols = np.array([len(m["columns"]) for m in extra], dtype=np.int64)
        is_table = np.arange(size)[None, :] < table_cols[:, None]
        adj &= ~is_table[:, None, :]  # table columns are roots: nothing points into them
        hidden_u = np.where(is_table, 1.0, hidden_u)  # and they are observed
    if g.max_parents is not None:
        adj = _cap_parents(adj, g.max_parents)

    # -- roles
    r = cfg.roles
    zero_effect = u16[:, 6] < r.zero_effect_prob
    hidden_fraction = _uniform_in(r.hidden_confounder_fraction, u16[:, 7])
    candidates = None
    if tables is not None or (n_nodes > n_main).any():
        ids = np.arange(size)[None, :]
        candidates = (ids >= table_cols[:, None]) & (ids < n_main[:, None])
    roles = assign_roles_batch(adj, n_nodes, u16[:, 4], u16[:, 5], zero_effect, hidden_u, hidden_fraction,
                               fixed_t, fixed_y, candidates=candidates)
    reasons: list = [None] * n_tasks
    n_cov = roles.observed.sum(axis=1)
    for b in range(n_tasks):
        if not roles.valid[b]:
            reasons[b] = "no_treatment_outcome_pair"
        elif n_cov[b] < r.min_covariates:
            reasons[b] = "too_few_covariates"

    scm, noise_family = _node_model(cfg, roles, u16, node_u, size)
    n_units = _draw_units(cfg, u16[:, 3])
    draft = Draft(
        seeds=np.asarray(seeds), attempts=np.asarray(attempts), gens=list(gens), n_nodes=n_nodes,
        n_units=n_units, graph_family=graph_family, roles=roles, scm=scm,
        noise_family=noise_family, expected_parents=np.asarray(expected_parents, dtype=np.float64),
        hidden_fraction=np.asarray(hidden_fraction, dtype=np.float64), node_names=names,
    )
    if not simple:
        draft.n_main = n_main
    if cov is not None:
        mu = np.full((n_tasks, size, UNIFORMS_PER_NODE), 0.5)
        for b, m in enumerate(extra):
            mu[b, : len(m["measure"])] = m["measure"]
        measured = (scm.kind != SKIP) & (scm.kind != TREATMENT) & (scm.kind != OUTCOME)
        measured &= np.arange(size)[None, :] >= table_cols[:, None]
        pre = roles.observed | (roles.roles == Role.HIDDEN_CONFOUNDER) | (roles.roles == Role.INSTRUMENT)
        draft.measure = scm.measure = draw_measurement(cov, mu, measured, pre)
    if cfg.outcome is not None:
        ou = np.array([m["outcome"] for m in extra])
        binary = Mixture(cfg.outcome.types, OUTCOME_TYPES).codes_for(u16[:, 15]) == OUTCOME_TYPES.index("binary")
        draft.outcome = scm.outcome_type = OutcomeDraft(
            binary=binary, prevalence=_uniform_in(cfg.outcome.prevalence, ou[:, 0]).astype(F32),
            logit_a=_uniform_in(cfg.outcome.logit_scale, ou[:, 1]).astype(F32))
    if tables is not None:
        samples = []
        for b, m in enumerate(extra):
            m_rows = len(m["row_keys"])
            want = int(min(n_units[b], m_rows))
            samples.append(np.sort(np.argsort(m["row_keys"], kind="stable")[:want]))
            draft.n_units[b] = m_rows  # the whole table is simulated: it is the population
        draft.table = TableDraft(table=[m["table"] for m in extra], columns=[m["columns"] for m in extra],
                                 sample=samples)
    return draft, reasons


def _draw_units(cfg: TaskConfig, u: np.ndarray) -> np.ndarray:
    """(B,) units per task from uniforms: uniform over the n_units range, or log-uniform."""
    if cfg.n_units_scale == "log":
        lo, hi = cfg.n_units
        n = np.floor(np.exp(np.log(lo) + u * (np.log(hi + 1) - np.log(lo)))).astype(np.int64)
        return np.clip(n, lo, hi)
    return _int_in(cfg.n_units, u)


def _irrelevant_block(graph_u: np.ndarray, n_main: np.ndarray, n_nodes: np.ndarray, k: np.ndarray) -> np.ndarray:
    """(B, J, J) edges among each task's irrelevant covariates, nodes n_main .. n_nodes - 1: an
    Erdős–Rényi DAG of their own (from the block's own uniforms), with no edge to or from the
    main graph, so they are d-separated from T and Y."""
    n_tasks, size, _ = graph_u.shape
    out = np.zeros((n_tasks, size, size), dtype=bool)
    for b in np.flatnonzero(n_nodes > n_main):
        lo, hi = int(n_main[b]), int(n_nodes[b])
        out[b, lo:hi, lo:hi] = erdos_renyi_batch(graph_u[b, None, lo:hi, lo:hi], np.array([hi - lo]), k[b : b + 1])[0]
    return out


def _cap_parents(adj: np.ndarray, cap: int) -> np.ndarray:
    """Keep at most `cap` parents per node, its highest-id (nearest) ones; the dropped edges
    leave the graph, so the adjacency stays the SCM's."""
    rank = np.cumsum(adj[:, ::-1, :], axis=1)[:, ::-1, :]  # parents at or above each id
    return adj & (rank <= cap)


def load_config_tables(cfg: TaskConfig) -> list:
    """The `CovariateTable`s of ``cfg.tables`` (cached per source list)."""
    from . import tables as tab

    key = tuple(s if isinstance(s, str) else ("id", id(s)) for s in cfg.tables.sources) + (
        cfg.tables.missing, cfg.tables.drop_text)
    if key not in _TABLE_CACHE:
        out = []
        for src in cfg.tables.sources:
            if isinstance(src, str) and src == "default":
                out.extend(tab.default_pool())
            else:
                out.extend(tab.load_tables([src], missing=cfg.tables.missing, drop_text=cfg.tables.drop_text))
        if len(_TABLE_CACHE) > 16:
            _TABLE_CACHE.clear()
        _TABLE_CACHE[key] = out
    return _TABLE_CACHE[key]


_TABLE_CACHE: dict = {}


def _node_model(cfg: TaskConfig, roles: BatchRoles, u16: np.ndarray, node_u: np.ndarray, size: int):
    """Node kinds, parent slots, families and dials of every task (vectorised)."""
    n_tasks = len(u16)
    rows = np.arange(n_tasks)
    t, y = roles.treatment, roles.outcome

    # parent slots: parents in increasing id, T excluded for the outcome
    is_parent = np.swapaxes(roles.adjacency, 1, 2).copy()  # [b, child, parent]
    is_parent[rows, y, t] = False
    n_parents = is_parent.sum(axis=2)
    n_slot_cfg = max_slots(cfg)
    order = np.argsort(~is_parent, axis=2, kind="stable")[:, :, :n_slot_cfg]
    slots = np.where(np.arange(n_slot_cfg) < n_parents[:, :, None], order, size)
    n_slots = np.maximum(1, n_parents.max(axis=1))

    kind = np.where(n_parents > 0, INNER, ROOT).astype(np.int8)
    kind[rows, t] = TREATMENT
    kind[rows, y] = OUTCOME
    kind[~roles.needed] = SKIP

    # mechanism and noise families
    m, nz = cfg.mechanism, cfg.noise
    mech = Mixture(m.families, MECHANISMS)
    if m.mixing == "task":
        family = np.repeat(mech.codes_for(u16[:, 13])[:, None], size, axis=1)
    else:
        family = mech.codes_for(node_u[:, 0])
    family[rows, t] = Mixture(cfg.treatment.score_mechanism, MECHANISMS).codes_for(node_u[rows, 0, t])
    noise_family = Mixture(nz.families, NOISE_FAMILIES).codes_for(node_u[:, 1])
    noise_scale = _uniform_in(nz.scale, node_u[:, 2]).astype(F32)
    inner = (kind == INNER) | (kind == OUTCOME)
    hetero = inner & (node_u[:, 3] < nz.heteroscedastic_prob)
    pnl = (kind == INNER) & (node_u[:, 4] < nz.nonadditive_prob)
    pnl_c = (F32(0.1) + F32(0.4) * node_u[:, 5]).astype(F32)

    e = cfg.effect
    zero = roles.zero_effect
    tau = _uniform_in(e.size, u16[:, 10])
    negative = np.full(n_tasks, e.sign == "negative") | ((e.sign == "random") & (u16[:, 11] < 0.5))
    tau = np.where(zero, 0.0, np.where(negative, -tau, tau))
    eta = np.where(zero, 0.0, _uniform_in(e.heterogeneity, u16[:, 12]))
    tr = cfg.treatment
    scm = BatchSCM(
        kind=kind, slots=slots, n_parents=n_parents, n_slots=n_slots, family=family, params={},
        noise_scale=noise_scale, hetero=hetero, hetero_w=None, pnl=pnl, pnl_c=pnl_c,
        strength=_uniform_in(tr.confounding_strength, u16[:, 8]), share=_uniform_in(tr.treated_share, u16[:, 9]),
        clip=tr.propensity_clip, tau=tau, eta=eta, mod_w=None,
        mod_tanh=family[rows, y] != MECHANISMS.index("linear"), treatment=t, outcome=y,
        two_worlds=roles.descendants_of_treatment & inner,
    )
    return scm, noise_family


# ------------------------------------------------------------------ 2. parameters and noise


@dataclass
class Noise:
    """Exogenous noise of a batch with one padded unit count.

    eps: (R, N) float32 rows of unit-variance noise; node j of task b is row
    row[b, j] (-1 where not simulated); the treatment's row holds the uniforms
    of its Bernoulli draw.
    z: for the factual sample only, a (B, J + 2, N) array per task (node j in
    row j, then a row of ones on the real units and a zero row), which the
    linear fast path multiplies directly; eps is then z viewed as rows.
    """

    eps: np.ndarray
    row: np.ndarray
    z: np.ndarray | None = None
    #: (B, N) float32 uniforms of binary outcomes (the exogenous u of Y = 1[u < p]), or None
    outcome_u: np.ndarray | None = None


def noise_rows(kind: np.ndarray) -> np.ndarray:
    """(B, J) row index of each simulated node, in (task, node) order; -1 elsewhere."""
    has = kind != SKIP
    return np.where(has, np.cumsum(has.ravel()).reshape(has.shape) - 1, -1)


def draw_parameters(cfg: TaskConfig, draft: Draft, n_pad: int, workspace: Workspace | None = None) -> Noise:
    """Draw every task's parameter block and noise (all tasks share n_pad);
    fills draft.scm's params, hetero_w and mod_w, returns the noise (in the
    "noise" buffer of `workspace` if one is given: valid until its next use).

    Each task takes one run of raw bits from its stream: its parameter block
    (the common block, then one per mechanism family it uses), then the noise
    of nodes 0 .. (last simulated node), n_pad units each.
    """
    scm = draft.scm
    n_tasks, size = scm.kind.shape
    s_cfg = max_slots(cfg)
    computed = scm.kind >= INNER
    used = np.stack([(computed & (scm.family == c)).any(axis=1) for c in range(len(MECHANISMS))], axis=1)
    sizes = {name: sum(block_size(name, size, s_cfg, cfg)) for name in ("common",) + MECHANISMS}
    simulated = scm.kind != SKIP
    n_rows = size - np.argmax(simulated[:, ::-1], axis=1)  # up to the last simulated node

    bits = buffer_or_empty(workspace, "noise", (n_tasks, size + 2, n_pad), np.uint32)
    bits[np.arange(size + 2)[None, :] >= n_rows[:, None]] = 0  # rows not drawn: any finite noise
    blocks = {name: [] for name in sizes}
    # the blocks each task draws: "common", then its families in MECHANISMS order
    layouts = {}
    for b, (gen, fams, rows) in enumerate(zip(draft.gens, map(tuple, used.tolist()), n_rows.tolist())):
        if fams not in layouts:
            names = ["common"] + [m for m, u in zip(MECHANISMS, fams) if u]
            bounds = np.cumsum([0] + [sizes[n] for n in names]).tolist()
            layouts[fams] = (names, bounds, bounds[-1] + bounds[-1] % 2)  # noise on whole 64-bit words
        names, bounds, n_param = layouts[fams]
        raw = uniform_bits(gen, n_param + rows * n_pad)
        for k, name in enumerate(names):
            blocks[name].append(raw[bounds[k] : bounds[k + 1]])
        bits[b, :rows] = raw[n_param:].reshape(rows, n_pad)

    for name, stack in blocks.items():
        if not stack:
            continue
        idx = np.arange(n_tasks) if name == "common" else np.flatnonzero(used[:, MECHANISMS.index(name)])
        # stacked and converted in place in a reused buffer: an RFF block is tens
        # of MB per batch, and fresh arrays that size cost a page fault per page
        # (no parameter keeps a view of it)
        raw = np.stack(stack, out=buffer_or_empty(workspace, "params", (len(stack), len(stack[0])), np.uint32))
        params = params_from_uniforms(name, uniforms_from_bits(raw, out=raw.view(F32)), scm.n_slots[idx], size, cfg)
        if name == "common":
            scm.hetero_w, scm.mod_w = params["hetero_w"], params["mod_w"]
            continue
        if len(idx) == n_tasks:  # every task uses the family: no scatter (or copy) needed
            scm.params[name] = params
            continue
        full = {}
        for key, arr in params.items():
            full[key] = np.zeros((n_tasks,) + arr.shape[1:], dtype=arr.dtype)
            full[key][idx] = arr
        scm.params[name] = full

    outcome_u = None
    if draft.outcome is not None and draft.outcome.binary.any():
        # drawn after the nodes' noise, by binary tasks only: the other tasks' streams are untouched
        outcome_u = np.full((n_tasks, n_pad), 0.5, F32)
        for b in np.flatnonzero(draft.outcome.binary):
            outcome_u[b] = uniforms_from_bits(uniform_bits(draft.gens[b], n_pad))
    z = uniforms_from_bits(bits, out=bits.view(F32))
    noise_from_uniforms(z[:, :size], draft.noise_family, scm.kind == TREATMENT, simulated)
    if draft.table is not None:
        _table_roots(z, draft)
    z[:, size] = np.arange(n_pad)[None, :] < draft.n_units[:, None]
    z[:, size + 1] = 0.0
    row = np.where(simulated, np.arange(n_tasks)[:, None] * (size + 2) + np.arange(size)[None, :], -1)
    return Noise(eps=z.reshape(-1, n_pad), row=row, z=z, outcome_u=outcome_u)


def _table_roots(z: np.ndarray, draft: Draft) -> None:
    """Write each task's table columns, standardised over the table (its population), into the
    noise rows of its table-root nodes: a root's value is its noise row, so the SCM reads them.
    z: (B, J + 2, N) noise rows, in place."""
    for b, (table, cols) in enumerate(zip(draft.table.table, draft.table.columns)):
        if table is None:
            continue
        v = table.values[:, cols]  # (M, d_tab) float64
        sd = v.std(axis=0)
        std = (v - v.mean(axis=0)) / np.where(sd > 0, sd, 1.0)
        m = len(v)
        z[b, : len(cols), :m] = std.T
        z[b, : len(cols), m:] = 0.0


def fresh_noise(cfg: TaskConfig, draft: Draft, compute: np.ndarray, n_units: int,
                workspace: Workspace | None = None) -> Noise:
    """Noise for a fresh interventional sample of n_units per task (every unit
    real): rows for the nodes in `compute` (B, J), drawn from each task's
    stream in (task, node) order. With a `workspace`, eps lives in its
    "mc_noise" buffer (valid until the next call)."""
    kind = np.where(compute, draft.scm.kind, SKIP)
    row = noise_rows(kind)
    counts = (row >= 0).sum(axis=1)
    bits = buffer_or_empty(workspace, "mc_noise", (int(counts.sum()), n_units), np.uint32)
    start = 0
    for b, gen in enumerate(draft.gens):
        bits[start : start + counts[b]] = uniform_bits(gen, int(counts[b]) * n_units).reshape(-1, n_units)
        start += counts[b]
    u = uniforms_from_bits(bits, out=bits.view(F32))
    has = row >= 0
    noise_from_uniforms(u, draft.noise_family[has], kind[has] == TREATMENT, np.ones(len(u), bool))
    return Noise(eps=u, row=row)
