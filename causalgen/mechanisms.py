"""Mechanism families: parameter samplers (per task) and batched evaluators.

A mechanism maps the values of a node's parents to its signal. Parameters are
drawn per task with the task's own Generator (`draw_*`), then stacked into padded
batch arrays; evaluators compute one node for many tasks and both potential-outcome
worlds at once.

Shapes in evaluators: W = 2 worlds (do(T=0), do(T=1)), B = tasks in the batch,
S = parent slots (padded with a zero-valued dummy parent), N = units (padded).
``parents`` is (W, B, S, N) float32 and the result (W, B, N) float32.

Batch invariance: results for one task never depend on the other tasks in the
batch, bit for bit. Elementwise work is accumulated over slots in a fixed order
(padded slots add exact zeros); matrix products run per task on the task's own
number of parents (`n_parents`), so BLAS sees identical shapes batched or not.
"""

from __future__ import annotations

import numpy as np

from .config import ACTIVATIONS, MECHANISMS
from .noise import gaussian_from_uniforms, uniforms

F32 = np.float32


def normals(rng: np.random.Generator, shape) -> np.ndarray:
    """float32 standard normals of any shape, drawn as uniforms + Box-Muller."""
    size = int(np.prod(shape))
    even = size + (size % 2)
    z = gaussian_from_uniforms(uniforms(rng, (even,)))
    return z[:size].reshape(shape)


# ------------------------------------------------------------------ activations


def activate(a: np.ndarray, code: int) -> np.ndarray:
    """Apply activation ACTIVATIONS[code] (float32 in, float32 out)."""
    name = ACTIVATIONS[code]
    if name == "tanh":
        return np.tanh(a)
    if name == "relu":
        return np.maximum(a, F32(0.0))
    if name == "sigmoid":
        return F32(1.0) / (F32(1.0) + np.exp(-a))
    if name == "square":
        return a * a
    if name == "sin":
        return np.sin(a)
    return a  # identity


def activate_per_task(a: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """a: (W, B, ...) pre-activations; codes: (B,) activation per task."""
    unique = np.unique(codes)
    if len(unique) == 1:
        return activate(a, int(unique[0]))
    out = np.empty_like(a)
    for code in unique:
        sel = codes == code
        out[:, sel] = activate(a[:, sel], int(code))
    return out


# ------------------------------------------------------------------ samplers
# Each returns a dict of float32 arrays with a leading (J, S) = (nodes, parent
# slots) for ONE task; S is that task's maximum in-degree.


def draw_linear(rng, n_nodes, n_slots, cfg) -> dict:
    lo, hi = cfg.mechanism.linear_weight
    u = uniforms(rng, (2, n_nodes, n_slots))
    sign = np.where(u[0] < 0.5, F32(-1.0), F32(1.0))
    return {"w": (sign * (F32(lo) + F32(hi - lo) * u[1])).astype(F32)}


def draw_mlp(rng, n_nodes, n_slots, cfg) -> dict:
    hidden = cfg.mechanism.mlp_hidden
    acts = [ACTIVATIONS.index(a) for a in cfg.mechanism.mlp_activations]
    act = np.array(acts, dtype=np.int8)[rng.integers(0, len(acts), n_nodes)]
    scale = F32(1.0 / np.sqrt(max(n_slots, 1)))
    if hidden == 0:
        return {"w": normals(rng, (n_nodes, n_slots)) * scale, "bias": normals(rng, (n_nodes,)) * F32(0.5), "act": act}
    return {
        "w1": normals(rng, (n_nodes, n_slots, hidden)) * scale,
        "b1": normals(rng, (n_nodes, hidden)) * F32(0.5),
        "w2": normals(rng, (n_nodes, hidden)) * F32(1.0 / np.sqrt(hidden)),
        "act": act,
    }


def draw_rff(rng, n_nodes, n_slots, cfg) -> dict:
    k = cfg.mechanism.rff_features
    lo, hi = cfg.mechanism.rff_lengthscale
    lengthscale = F32(lo) + F32(hi - lo) * uniforms(rng, (n_nodes,))
    return {
        "omega": normals(rng, (n_nodes, n_slots, k)) / lengthscale[:, None, None],
        "phase": uniforms(rng, (n_nodes, k)) * F32(2.0 * np.pi),
        "amp": normals(rng, (n_nodes, k)) * F32(np.sqrt(2.0 / k)),
        "lengthscale": lengthscale,
    }


def draw_poly(rng, n_nodes, n_slots, cfg) -> dict:
    scale = F32(1.0 / max(n_slots, 1))
    quad = normals(rng, (n_nodes, n_slots, n_slots)) * scale
    quad = np.triu(quad)  # each product x_s x_r (s <= r) once
    return {"w": normals(rng, (n_nodes, n_slots)), "quad": quad.astype(F32)}


DRAW = {"linear": draw_linear, "mlp": draw_mlp, "rff": draw_rff, "poly": draw_poly}
assert tuple(DRAW) == MECHANISMS


# ------------------------------------------------------------------ evaluators


def weighted_sum(parents: np.ndarray, w: np.ndarray) -> np.ndarray:
    """sum_s w[b, s] * parents[:, b, s, :] accumulated in slot order.

    parents: (W, B, S, N); w: (B, S). Returns (W, B, N).
    """
    out = parents[:, :, 0] * w[None, :, 0, None]
    for s in range(1, parents.shape[2]):
        out += parents[:, :, s] * w[None, :, s, None]
    return out


def eval_linear(parents, p, n_parents):
    return weighted_sum(parents, p["w"])


def eval_poly(parents, p, n_parents):
    out = weighted_sum(parents, p["w"])
    quad = p["quad"]
    n_slots = parents.shape[2]
    for s in range(n_slots):
        for r in range(s, n_slots):
            out += (parents[:, :, s] * parents[:, :, r]) * quad[None, :, s, r, None]
    return out


def eval_mlp(parents, p, n_parents):
    if "w" in p:  # one layer: act(w . parents + bias)
        a = weighted_sum(parents, p["w"]) + p["bias"][None, :, None]
        return activate_per_task(a, p["act"])
    n_worlds, n_tasks, _, n_units = parents.shape
    out = np.empty((n_worlds, n_tasks, n_units), dtype=F32)
    for b in range(n_tasks):
        s = int(n_parents[b])
        x = np.ascontiguousarray(parents[:, b, :s].transpose(0, 2, 1))  # (W, N, s)
        h = activate(x @ p["w1"][b, :s] + p["b1"][b], int(p["act"][b]))  # (W, N, H)
        out[:, b] = h @ p["w2"][b]
    return out


def eval_rff(parents, p, n_parents):
    """sqrt(2/K) sum_k a_k cos(omega_k . x / l + phase_k): a draw from a GP with
    an RBF kernel of lengthscale l, approximately."""
    n_worlds, n_tasks, _, n_units = parents.shape
    out = np.empty((n_worlds, n_tasks, n_units), dtype=F32)
    for b in range(n_tasks):
        s = int(n_parents[b])
        x = np.ascontiguousarray(parents[:, b, :s].transpose(0, 2, 1))  # (W, N, s)
        z = x @ p["omega"][b, :s]  # (W, N, K)
        z += p["phase"][b]
        np.cos(z, out=z)
        out[:, b] = z @ p["amp"][b]
    return out


EVAL = {"linear": eval_linear, "mlp": eval_mlp, "rff": eval_rff, "poly": eval_poly}
assert tuple(EVAL) == MECHANISMS
