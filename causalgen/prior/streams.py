"""Per-task random streams: ``np.random.default_rng([seed, attempt])``, seeded in bulk.

Every task draws all of its randomness from its own PCG64 stream, seeded by
numpy's `SeedSequence` from the entropy ``[seed, attempt]``. Creating that
Generator the usual way costs ~9 us, mostly the SeedSequence hash run in a
Python-level loop. `task_generators` runs the same hash for a whole batch with
numpy uint32 arithmetic and hands each PCG64 its precomputed seed words, so the
streams are bit-identical to ``default_rng([seed, attempt])`` (tests check this)
at ~1.5 us per task.

Only the common case (seed and attempt below 2**32, i.e. two entropy words) is
vectorised; anything else falls back to numpy's own SeedSequence.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from numpy.random.bit_generator import ISeedSequence

# SeedSequence constants (numpy/random/bit_generator.pyx, after M. E. O'Neill's seed_seq_fe)
_POOL_SIZE = 4
_INIT_A = 0x43B0D7E5
_MULT_A = 0x931E8875
_INIT_B = 0x8B51F9DD
_MULT_B = 0x58F38DED
_MIX_MULT_L = 0xCA01F9DD
_MIX_MULT_R = 0x4973F715
_XSHIFT = 16
_MASK32 = 0xFFFFFFFF
U32 = np.uint32


class _SeedWords(ISeedSequence):
    """A seed sequence whose state words were computed in bulk (see module doc)."""

    __slots__ = ("words",)

    def __init__(self, words: np.ndarray):
        self.words = words

    def generate_state(self, n_words, dtype=np.uint32):
        # PCG64 asks for exactly 4 uint64 words.
        if n_words != 4 or np.dtype(dtype) != np.uint64:
            raise ValueError("_SeedWords only serves PCG64 seeding")
        return self.words


def _hash_constants(init: int, mult: int, count: int) -> list[int]:
    """The data-independent sequence of hash multipliers used by SeedSequence."""
    out, h = [], init
    for _ in range(count):
        out.append(h)
        h = (h * mult) & _MASK32
    return out


# mix_entropy calls hashmix 4 times (pool fill) + 12 times (all-pairs mix);
# generate_state(4, uint64) hashes 8 words. Each call first multiplies the constant.
_XOR_A = _hash_constants(_INIT_A, _MULT_A, 16)
_MUL_A = [(h * _MULT_A) & _MASK32 for h in _XOR_A]
_XOR_B = _hash_constants(_INIT_B, _MULT_B, 8)
_MUL_B = [(h * _MULT_B) & _MASK32 for h in _XOR_B]


def _hashmix(value: np.ndarray, step: int) -> np.ndarray:
    value = value ^ U32(_XOR_A[step])
    value = value * U32(_MUL_A[step])
    return value ^ (value >> U32(_XSHIFT))


def _mix(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    result = U32(_MIX_MULT_L) * x - U32(_MIX_MULT_R) * y
    return result ^ (result >> U32(_XSHIFT))


def seed_words(seeds: np.ndarray, attempts: np.ndarray) -> np.ndarray:
    """(B, 4) uint64: ``SeedSequence([seed, attempt]).generate_state(4, np.uint64)``
    for seeds and attempts in [0, 2**32)."""
    entropy = [np.asarray(seeds, dtype=U32), np.asarray(attempts, dtype=U32)]
    zero = np.zeros_like(entropy[0])
    with np.errstate(over="ignore"):
        pool = [_hashmix(entropy[i] if i < 2 else zero, i) for i in range(_POOL_SIZE)]
        step = _POOL_SIZE
        for src in range(_POOL_SIZE):
            for dst in range(_POOL_SIZE):
                if src != dst:
                    pool[dst] = _mix(pool[dst], _hashmix(pool[src], step))
                    step += 1
        words = []
        for i in range(8):
            v = pool[i % _POOL_SIZE] ^ U32(_XOR_B[i])
            v = v * U32(_MUL_B[i])
            words.append(v ^ (v >> U32(_XSHIFT)))
    # little-endian pairs of uint32 -> uint64, as SeedSequence does
    lo = np.stack(words[0::2], axis=-1).astype(np.uint64)
    hi = np.stack(words[1::2], axis=-1).astype(np.uint64)
    return lo | (hi << np.uint64(32))


def task_generators(seeds: Sequence[int], attempts: Sequence[int]) -> list[np.random.Generator]:
    """One Generator per (seed, attempt), identical to ``np.random.default_rng([seed, attempt])``."""
    seeds = [int(s) for s in seeds]
    attempts = [int(a) for a in attempts]
    small = [s < 2**32 and a < 2**32 for s, a in zip(seeds, attempts)]
    words = seed_words(np.array([s if ok else 0 for s, ok in zip(seeds, small)], dtype=np.uint64),
                       np.array([a if ok else 0 for a, ok in zip(attempts, small)], dtype=np.uint64))
    gens = []
    for i, ok in enumerate(small):
        if ok:
            gens.append(np.random.Generator(np.random.PCG64(_SeedWords(words[i]))))
        else:
            gens.append(np.random.default_rng([seeds[i], attempts[i]]))
    return gens
