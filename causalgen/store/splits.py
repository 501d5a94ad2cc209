"""Train / validation / test assignment of tasks, a pure function of the task seed.

A task's split never changes when a corpus is regenerated, extended or
re-published, and needs nothing but its seed: u = first 64 bits of
sha256(b"causalgen-split:" + seed) / 2**64; train if u < 0.8, validation if
u < 0.9, else test (the 80/10/10 dataset-level protocol of the CInA paper).
"""

from __future__ import annotations

import hashlib

import numpy as np

SPLITS = ("train", "validation", "test")
FRACTIONS = {"train": 0.8, "validation": 0.1, "test": 0.1}


def split_uniform(seed: int) -> float:
    digest = hashlib.sha256(b"causalgen-split:" + str(int(seed)).encode()).digest()
    return int.from_bytes(digest[:8], "little") / 2.0**64


def split_of(seed: int) -> str:
    """'train', 'validation' or 'test' for the task with this seed."""
    u = split_uniform(seed)
    if u < FRACTIONS["train"]:
        return "train"
    if u < FRACTIONS["train"] + FRACTIONS["validation"]:
        return "validation"
    return "test"


def split_codes(seeds) -> np.ndarray:
    """(n,) int8 index into SPLITS for each seed."""
    return np.array([SPLITS.index(split_of(int(s))) for s in seeds], dtype=np.int8)
