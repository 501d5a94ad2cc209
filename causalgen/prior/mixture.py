"""`Mixture`: a {name: weight} mixture sampled by inverse CDF from given uniforms (graph
families, mechanisms, noise families, observation types: every per-task and per-node choice)."""

from __future__ import annotations

import bisect

import numpy as np


class Mixture:
    """A {name: weight} mixture over `universe`, sampled by inverse CDF."""

    def __init__(self, mixture: dict[str, float], universe: tuple[str, ...]):
        self.names = [k for k, w in mixture.items() if w > 0]
        weights = np.array([mixture[k] for k in self.names], dtype=np.float64)
        self.cdf = np.cumsum(weights) / weights.sum()
        self._cdf_list = self.cdf.tolist()
        self.codes = np.array([universe.index(k) for k in self.names], dtype=np.int8)

    def pick(self, u: float) -> str:
        """One choice from a scalar uniform."""
        return self.names[min(bisect.bisect_right(self._cdf_list, u), len(self.names) - 1)]

    def codes_for(self, u: np.ndarray) -> np.ndarray:
        """Codes (indices into `universe`) for an array of uniforms."""
        idx = np.minimum(np.searchsorted(self.cdf, u, side="right"), len(self.names) - 1)
        return self.codes[idx]
