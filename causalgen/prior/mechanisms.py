"""Mechanism families: parameter layouts (drawn per task) and batched evaluators.

A mechanism maps the values of a node's parents to its signal.

Parameters. Each task draws one block of float32 uniforms per family it uses
(`layout` says what is in it); `params_from_uniforms` turns the stacked blocks of
many tasks into parameter arrays with a leading (B, J, S) = (tasks, nodes, parent
slots). S is fixed per config (the largest possible in-degree, J_max - 1), so a
task's parameters never depend on the rest of its batch; scales that depend on
the task's own largest in-degree (``n_slots``) are applied per task. Normal
parameters come from Box-Muller on the block's second part (noise.py).

Evaluation. Evaluators work on "rows": one row is one (task, world) pair of the
node being simulated, so nodes whose value is the same in both worlds are
computed once. Parent values come as `Parents` (no padding), per-row
parameters are (R, ...), the result is (R, N) float32.

Batch invariance: results for one row never depend on the other rows, bit for
bit. Weighted sums run over a row's own parents in slot order; matrix products
run per row on the task's own number of parents, so BLAS sees identical shapes
batched or not.
"""

from __future__ import annotations

import numpy as np

from .config import ACTIVATIONS, MECHANISMS
from .noise import gaussian_from_uniforms

F32 = np.float32


# ------------------------------------------------------------------ activations


def activate(a: np.ndarray, code: int, out: np.ndarray | None = None) -> np.ndarray:
    """Apply activation ACTIVATIONS[code] (float32 in, float32 out)."""
    name = ACTIVATIONS[code]
    if out is None:
        out = np.empty_like(a)
    if name == "tanh":
        return np.tanh(a, out=out)
    if name == "relu":
        return np.maximum(a, F32(0.0), out=out)
    if name == "sigmoid":
        np.negative(a, out=out)
        with np.errstate(over="ignore"):  # exp(-a) = inf gives sigmoid 0, as it should
            np.exp(out, out=out)
        out += F32(1.0)
        return np.reciprocal(out, out=out)
    if name == "square":
        return np.multiply(a, a, out=out)
    if name == "sin":
        return np.sin(a, out=out)
    out[...] = a  # identity
    return out


def activate_rows(a: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """a: (R, ...) pre-activations; codes: (R,) activation per row. In place."""
    if len(codes) and (codes == codes[0]).all():  # the common case, without np.unique's sort
        return activate(a, int(codes[0]), out=a)
    for code in np.unique(codes):
        sel = codes == code
        a[sel] = activate(a[sel], int(code))
    return a


# ------------------------------------------------------------------ layouts
# A family's per-task block: uniform parameters first, then normal ones; each
# entry is (name, shape). Shapes use J = nodes and S = parent slots of the config.


def layout(name: str, n_nodes: int, n_slots: int, cfg) -> tuple[list, list]:
    """(uniform entries, normal entries) of family `name`'s per-task block."""
    m = cfg.mechanism
    j, s = n_nodes, n_slots
    if name == "linear":
        return [("sign", (j, s)), ("magnitude", (j, s))], []
    if name == "mlp":
        if m.mlp_hidden == 0:
            return [("act", (j,))], [("w", (j, s)), ("bias", (j,))]
        h = m.mlp_hidden
        return [("act", (j,))], [("w1", (j, s, h)), ("b1", (j, h)), ("w2", (j, h))]
    if name == "rff":
        k = m.rff_features
        return [("lengthscale", (j,)), ("phase", (j, k))], [("omega", (j, s, k)), ("amp", (j, k))]
    if name == "poly":
        return [], [("w", (j, s)), ("quad", (j, s, s))]
    if name == "common":  # every task: heteroscedastic-noise and effect-modifier weights
        return [], [("hetero_w", (j, s)), ("mod_w", (s,))]
    raise KeyError(name)


def block_size(name: str, n_nodes: int, n_slots: int, cfg) -> tuple[int, int]:
    """(uniforms, normals) in a block; the normal part is even (Box-Muller pairs)."""
    uni, nor = layout(name, n_nodes, n_slots, cfg)
    nu = sum(int(np.prod(shape)) for _, shape in uni)
    nn = sum(int(np.prod(shape)) for _, shape in nor)
    return nu, nn + (nn % 2)


def _split(block: np.ndarray, entries, start: int) -> dict:
    out, pos = {}, start
    for key, shape in entries:
        size = int(np.prod(shape))
        out[key] = block[:, pos : pos + size].reshape((block.shape[0],) + shape)
        pos += size
    return out


def params_from_uniforms(name: str, block: np.ndarray, n_slots: np.ndarray, n_nodes: int, cfg) -> dict:
    """Parameters of family `name` for a stack of tasks.

    block: (B, nu + nn) float32 uniforms in (0, 1) laid out as `block_size`
        (overwritten: its normal part is transformed in place);
    n_slots: (B,) each task's largest in-degree (sets weight scales).
    Returns name -> (B, J, ...) float32 arrays (int8 for activation codes).
    RFF's omega keeps only the slots below max(n_slots) (the others are never
    read); its values, like every other, do not depend on the batch.
    """
    cap = cfg.graph.max_parents
    s_cfg = max(n_nodes - 1 if cap is None else min(n_nodes - 1, cap), 1)  # as draft.max_slots
    uni, nor = layout(name, n_nodes, s_cfg, cfg)
    nu, _ = block_size(name, n_nodes, s_cfg, cfg)
    u = _split(block, uni, 0)
    per_task = np.maximum(np.asarray(n_slots), 1).astype(np.float64)
    m = cfg.mechanism
    # in place: the block is the caller's scratch, and a fresh array the size
    # of an RFF block (tens of MB) would cost a page fault per page
    normal = block[:, nu:]
    z = _split(gaussian_from_uniforms(normal, out=normal), nor, 0) if nor else {}

    def scale(x, factor):  # per-task factor (B,) broadcast over the trailing axes
        return (x * factor.astype(F32).reshape((-1,) + (1,) * (x.ndim - 1))).astype(F32)

    if name == "linear":
        lo, hi = m.linear_weight
        sign = np.where(u["sign"] < 0.5, F32(-1.0), F32(1.0))
        return {"w": (sign * (F32(lo) + F32(hi - lo) * u["magnitude"])).astype(F32)}
    if name == "mlp":
        acts = np.array([ACTIVATIONS.index(a) for a in m.mlp_activations], dtype=np.int8)
        act = acts[np.minimum((u["act"] * len(acts)).astype(np.int64), len(acts) - 1)]
        inv_sqrt = 1.0 / np.sqrt(per_task)
        if m.mlp_hidden == 0:
            return {"w": scale(z["w"], inv_sqrt), "bias": z["bias"] * F32(0.5), "act": act}
        return {
            "w1": scale(z["w1"], inv_sqrt),
            "b1": z["b1"] * F32(0.5),
            "w2": z["w2"] * F32(1.0 / np.sqrt(m.mlp_hidden)),
            "act": act,
        }
    if name == "rff":
        k = m.rff_features
        lo, hi = m.rff_lengthscale
        lengthscale = F32(lo) + F32(hi - lo) * u["lengthscale"]
        # no task of the batch reads omega's slots at or beyond the batch's
        # largest in-degree: they are left out
        s_used = int(per_task.max(initial=1))
        return {
            "omega": z["omega"][:, :, :s_used] / lengthscale[:, :, None, None],
            "phase": u["phase"] * F32(2.0 * np.pi),
            "amp": z["amp"] * F32(np.sqrt(2.0 / k)),
            "lengthscale": lengthscale,
        }
    if name == "poly":
        quad = np.triu(scale(z["quad"], 1.0 / per_task))  # each product x_s x_r (s <= r) once
        return {"w": z["w"].copy(), "quad": quad}  # copies: z is a view of the caller's block
    if name == "common":
        return {"hetero_w": scale(z["hetero_w"], 1.0 / np.sqrt(per_task)), "mod_w": z["mod_w"].copy()}
    raise KeyError(name)


# ------------------------------------------------------------------ evaluators


class Parents:
    """The parent values of one node for R rows, without padding.

    Rows differ in their number of parents, and a batch's largest in-degree is
    often twice the typical one, so padding every row to it would double the
    work of the weighted sums. Instead the rows are ordered by parent count,
    most first (`order`), and slot s is one contiguous block holding the s-th
    parent of the first R_s rows of that order (those with more than s parents).

    count: (R,) parents per row (in the caller's row order); blocks: list of
    (R_s, N) arrays, R_0 >= R_1 >= ...
    """

    def __init__(self, blocks: list, order: np.ndarray, count: np.ndarray, n_units: int):
        self.blocks = blocks
        self.order = order
        self.count = count
        self.n_units = n_units
        self.rank = np.empty_like(order)
        self.rank[order] = np.arange(len(order))

    @classmethod
    def gather(cls, values: np.ndarray, world: np.ndarray, task: np.ndarray, slots: np.ndarray,
               count: np.ndarray) -> "Parents":
        """From node values (W, B, J, N): row r is (world[r], task[r]) and its
        parents are slots[r, :count[r]]."""
        order = np.argsort(-count, kind="stable")
        w, b, sl = world[order], task[order], slots[order]
        # rows with more than s parents, for s < max count (a histogram: no (R, S) temporary)
        hist = np.bincount(count) if len(count) else np.zeros(1, np.int64)
        sizes = len(count) - np.cumsum(hist[:-1])
        blocks = [values[w[:r], b[:r], sl[:r, s]] for s, r in enumerate(sizes.tolist())]
        return cls(blocks, order, count, values.shape[-1])

    @property
    def n_rows(self) -> int:
        return len(self.count)

    def _unsort(self, sorted_rows: np.ndarray) -> np.ndarray:
        if np.array_equal(self.order, np.arange(self.n_rows)):
            return sorted_rows
        out = np.empty_like(sorted_rows)
        out[self.order] = sorted_rows
        return out

    def weighted_sum(self, w: np.ndarray) -> np.ndarray:
        """sum_s w[r, s] * parent_s of row r, summed in slot order: (R, N).
        w: (R, S) weights by slot (slots beyond a row's count are ignored)."""
        ws = w[self.order]
        out = np.zeros((self.n_rows, self.n_units), dtype=F32) if not self.blocks or \
            len(self.blocks[0]) < self.n_rows else np.empty((self.n_rows, self.n_units), dtype=F32)
        if self.blocks:
            n0 = len(self.blocks[0])
            np.multiply(self.blocks[0], ws[:n0, 0, None], out=out[:n0])
            tmp = np.empty_like(self.blocks[0])
            for s in range(1, len(self.blocks)):
                r = len(self.blocks[s])
                np.multiply(self.blocks[s], ws[:r, s, None], out=tmp[:r])
                out[:r] += tmp[:r]
        return self._unsort(out)

    def take(self, rows: np.ndarray) -> "Parents":
        """The parents of `rows` only (an index array, in the new row order)."""
        rank = self.rank[rows]
        sub_order = np.argsort(rank, kind="stable")  # by count, most first
        ranked = rank[sub_order]
        blocks = [blk[ranked[ranked < len(blk)]] for blk in self.blocks]
        blocks = [blk for blk in blocks if len(blk)]
        return Parents(blocks, sub_order, self.count[rows], self.n_units)

    def row_with_ones(self, r: int) -> np.ndarray:
        """(s + 1, N): the s parents of row r, then a row of ones (which folds
        a bias into a matrix product)."""
        k, s = self.rank[r], int(self.count[r])
        out = np.empty((s + 1, self.n_units), dtype=F32)
        for i in range(s):
            out[i] = self.blocks[i][k]
        out[s] = 1.0
        return out

    def groups_with_ones(self):
        """The rows grouped by parent count c, most first: yields (rows, x)
        with rows the group's row ids and x (g, c + 1, N) their parents in slot
        order, then a row of ones (which folds a bias into a matrix product).
        One gather per slot and group instead of one per row."""
        sizes = [len(blk) for blk in self.blocks]  # rows with more than s parents
        for c in range(len(sizes), -1, -1):
            lo = sizes[c] if c < len(sizes) else 0
            hi = sizes[c - 1] if c > 0 else self.n_rows
            if hi == lo:
                continue
            x = np.empty((hi - lo, c + 1, self.n_units), dtype=F32)
            for i in range(c):
                x[:, i] = self.blocks[i][lo:hi]
            x[:, c] = 1.0
            yield self.order[lo:hi], x

    def padded(self) -> np.ndarray:
        """(R, S, N) with zero rows in the unused slots (S = largest count, >= 1)."""
        out = np.zeros((self.n_rows, max(1, len(self.blocks)), self.n_units), dtype=F32)
        for s, blk in enumerate(self.blocks):
            out[self.order[: len(blk)], s] = blk
        return out


def eval_linear(parents: Parents, p):
    return parents.weighted_sum(p["w"])


def eval_poly(parents: Parents, p):
    out = parents.weighted_sum(p["w"])
    padded = parents.padded()
    quad = p["quad"]
    tmp = np.empty_like(out)
    n_slots = padded.shape[1]
    for s in range(n_slots):
        for r in range(s, n_slots):
            np.multiply(padded[:, s], padded[:, r], out=tmp)
            tmp *= quad[:, s, r, None]
            out += tmp
    return out


def eval_mlp(parents: Parents, p):
    if "w" in p:  # one layer: act(w . parents + bias)
        a = parents.weighted_sum(p["w"])
        a += p["bias"][:, None]
        return activate_rows(a, p["act"])
    out = np.empty((parents.n_rows, parents.n_units), dtype=F32)
    for r in range(parents.n_rows):
        s = int(parents.count[r])
        w1 = np.concatenate([p["w1"][r, :s], p["b1"][r, None]]).T  # (H, s + 1)
        h = w1 @ parents.row_with_ones(r)  # (H, N)
        activate(h, int(p["act"][r]), out=h)
        out[r] = p["w2"][r] @ h
    return out


def eval_rff(parents: Parents, p):
    """sqrt(2/K) sum_k a_k cos(omega_k . x / l + phase_k): a draw from a GP with
    an RBF kernel of lengthscale l, approximately."""
    out = np.empty((parents.n_rows, parents.n_units), dtype=F32)
    # one (K, N) buffer for every row: a fresh ~400 kB array per row is an
    # mmap + page faults each time (same product, same bits)
    z = np.empty((p["amp"].shape[-1], parents.n_units), dtype=F32)
    amp = p["amp"]
    for rows, x in parents.groups_with_ones():
        c = x.shape[1] - 1
        # per row, [omega[:c]; phase] as a C-ordered (c + 1, K) block, used
        # transposed: the same BLAS call (shapes and layout) row by row as
        # batched, so the same bits
        w = np.empty((len(rows), c + 1, z.shape[0]), dtype=F32)
        w[:, :c] = p["omega"][rows, :c]
        w[:, c] = p["phase"][rows]
        for k, r in enumerate(rows.tolist()):
            np.matmul(w[k].T, x[k], out=z)  # (K, N)
            np.cos(z, out=z)
            np.matmul(amp[r], z, out=out[r])
    return out


EVAL = {"linear": eval_linear, "mlp": eval_mlp, "rff": eval_rff, "poly": eval_poly}
assert tuple(EVAL) == MECHANISMS
