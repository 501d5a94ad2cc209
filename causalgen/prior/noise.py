"""Exogenous noise: uniforms in, unit-variance noise out.

Every family maps float32 uniforms in (0, 1) to float32 noise with mean 0 and
variance 1, elementwise, so a unit's noise depends only on its own uniforms and
the result is the same however many tasks are processed together.

Uniforms are built from raw 64-bit generator output (`uniform_bits`,
`uniforms_from_bits`): about twice as fast as ``Generator.random(dtype=float32)``.
Gaussian noise uses the Box-Muller transform on two halves of each row: about 3x
faster than `Generator.standard_normal` here, and it keeps one uniform per value
for every family. Uniforms never reach 0 or 1, so every family is bounded
(`NOISE_BOUND`), which lets QC bound linear outputs without looking at them.
"""

from __future__ import annotations

import numpy as np

from .config import NOISE_FAMILIES

F32 = np.float32
_TWO_PI = F32(2.0 * np.pi)
#: rows transformed at a time: keeps Box-Muller's temporaries in cache
_CHUNK = 1 << 16


def uniform_bits(rng: np.random.Generator, count: int) -> np.ndarray:
    """`count` random uint32 words, straight from the bit generator.

    ``Generator.random(dtype=float32)`` builds each float32 from one uint32 in
    a per-element loop; taking the raw 64-bit output and converting it with
    numpy is about twice as fast, so the sampler draws bits and converts them
    in bulk (`uniforms_from_bits`). Odd counts draw one word extra.
    """
    return rng.bit_generator.random_raw((count + 1) // 2).view(np.uint32)[:count]


def uniforms_from_bits(bits: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """float32 uniforms (k + 1/2) 2**-23 from the top 23 bits k of each word.

    Every value is exact in float32 and lies in [2**-24, 1 - 2**-24]: never 0
    or 1, so log(u) and log(1 - u) stay finite. Built with integer ops: k as the
    mantissa of a float in [1, 2), minus (1 - 2**-24), which is exact.
    out may be ``bits.view(np.float32)`` (in place).
    """
    if out is None:
        out = np.empty(bits.shape, dtype=F32)
    m = out.view(np.uint32)
    np.right_shift(bits, np.uint32(9), out=m)
    np.bitwise_or(m, np.uint32(0x3F800000), out=m)
    out -= F32(1.0 - 2.0**-24)
    return out


def uniforms(rng: np.random.Generator, shape) -> np.ndarray:
    """float32 uniforms in (0, 1) (never exactly 0 or 1), shape `shape`."""
    count = int(np.prod(shape))
    return uniforms_from_bits(uniform_bits(rng, count)).reshape(shape)


def gaussian_from_uniforms(u: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Standard normals from uniforms in (0, 1) via Box-Muller.

    u: (..., M) with M even. Returns (..., M): the first half of the last axis is
    r cos(theta), the second half r sin(theta), using u[..., :M/2] for the radius
    and u[..., M/2:] for the angle. `out` may be `u` itself (in place).
    """
    m = u.shape[-1]
    if m % 2:
        raise ValueError(f"gaussian_from_uniforms needs an even last axis, got {m}")
    h = m // 2
    if out is None:
        out = np.empty(u.shape, dtype=F32)
    if u.ndim == 1:
        return gaussian_from_uniforms(u[None], out[None])[0]
    # chunks along the first axis (views, so strided inputs work in place)
    step = max(1, _CHUNK // (u[0].size or 1))
    r = np.empty((min(step, len(u)),) + u.shape[1:-1] + (h,), dtype=F32)
    for start in range(0, len(u), step):
        ui, oi = u[start : start + step], out[start : start + step]
        ri = r[: len(ui)]
        np.log(ui[..., :h], out=ri)
        ri *= F32(-2.0)
        np.sqrt(ri, out=ri)
        np.multiply(ui[..., h:], _TWO_PI, out=oi[..., h:])  # theta (the radius half is consumed)
        np.cos(oi[..., h:], out=oi[..., :h])
        np.sin(oi[..., h:], out=oi[..., h:])
        oi[..., :h] *= ri
        oi[..., h:] *= ri
    return out


def laplace_from_uniforms(u: np.ndarray) -> np.ndarray:
    """Laplace noise with variance 1 (scale 1/sqrt(2)) by inverse CDF."""
    c = u - F32(0.5)
    return (-np.sign(c) * np.log1p(F32(-2.0) * np.abs(c)) * F32(1.0 / np.sqrt(2.0))).astype(F32)


def student_t4_from_uniforms(u: np.ndarray) -> np.ndarray:
    """Student-t with 4 degrees of freedom (heavy tails, finite variance),
    rescaled to variance 1, by its closed-form inverse CDF.

    For nu = 4: with a = 4 u (1 - u), q = cos(arccos(sqrt(a)) / 3) / sqrt(a),
    F^-1(u) = sign(u - 1/2) * 2 sqrt(q - 1). Var = nu / (nu - 2) = 2.
    """
    u64 = u.astype(np.float64)  # the formula cancels badly in float32 near u = 1/2
    a = 4.0 * u64 * (1.0 - u64)
    sa = np.sqrt(a)
    q = np.cos(np.arccos(sa) / 3.0) / sa
    t = np.sign(u64 - 0.5) * 2.0 * np.sqrt(np.maximum(q - 1.0, 0.0))
    return (t / np.sqrt(2.0)).astype(F32)


def uniform_from_uniforms(u: np.ndarray) -> np.ndarray:
    """Centred uniform noise with variance 1: U(-sqrt(3), sqrt(3))."""
    return ((u - F32(0.5)) * F32(np.sqrt(12.0))).astype(F32)


TRANSFORMS = {
    "gaussian": gaussian_from_uniforms,
    "laplace": laplace_from_uniforms,
    "student_t": student_t4_from_uniforms,
    "uniform": uniform_from_uniforms,
}
assert tuple(TRANSFORMS) == NOISE_FAMILIES


def noise_from_uniforms(u: np.ndarray, codes: np.ndarray, keep: np.ndarray, active: np.ndarray) -> np.ndarray:
    """Uniforms (R, ..., N) -> unit-variance noise, in place, with a family per row.

    codes, keep, active have shape u.shape[:-1]: the family of each row
    (indices into NOISE_FAMILIES), rows to leave as uniforms (a treatment's
    Bernoulli draw), and rows that matter (others may or may not be
    transformed). Rows of one family are transformed together.
    """
    kept = u[keep]
    unique = np.unique(codes[active & ~keep])
    if len(unique) == 1 and unique[0] == NOISE_FAMILIES.index("gaussian"):
        gaussian_from_uniforms(u, out=u)
    elif len(unique) == 1:
        u[...] = TRANSFORMS[NOISE_FAMILIES[int(unique[0])]](u)
    else:
        for code in unique:
            sel = (codes == code) & active & ~keep
            u[sel] = TRANSFORMS[NOISE_FAMILIES[int(code)]](u[sel])
    u[keep] = kept
    return u


def _bounds() -> np.ndarray:
    """Largest |noise| each family can produce: uniforms lie in
    [2**-24, 1 - 2**-24] and every transform is monotone in them (Box-Muller's
    radius in its first uniform, |cos|, |sin| <= 1). A small margin covers
    float32 rounding."""
    ends = np.array([2.0**-24, 1.0 - 2.0**-24], dtype=F32)
    out = []
    for name in NOISE_FAMILIES:
        if name == "gaussian":
            b = float(np.sqrt(-2.0 * np.log(2.0**-24)))
        else:
            b = float(np.abs(TRANSFORMS[name](ends).astype(np.float64)).max())
        out.append(b * 1.001)
    return np.array(out)


#: (families,) max |noise| per family (see `_bounds`); bounds linear outputs in QC
NOISE_BOUND = _bounds()
