"""`CorpusMixture`: several corpora read as one, so a stream (and training) can mix priors.

Pretraining on a mixture of presets (the `default` corpus, a `realistic` one, a
`semi-synthetic` one) needs one epoch plan over all of their shards. A mixture offers what
`TaskStream` reads of a corpus: ``manifest.shards`` (every corpus' shards in order),
``columns`` (concatenated; ``task_index`` shifted so it is unique across the mixture),
``read_shard(pos)`` and ``root``. Each task is drawn as often as the corpora's sizes say: a
mixture of 8,000 and 4,000 tasks is two thirds the first.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

import causalgen

__all__ = ["CorpusMixture"]


@dataclass
class _MixtureManifest:
    """The parts of a manifest a stream reads (`TaskStream` plans and fingerprints with them)."""

    shards: list
    corpus_seed: tuple
    num_tasks: int
    shard_size: tuple
    tasks_written: int


class CorpusMixture:
    """Corpora (opened `Corpus` / `PublishedCorpus` objects or paths) read as one corpus."""

    def __init__(self, corpora: Sequence[Any]):
        if not corpora:
            raise ValueError("CorpusMixture: give at least one corpus")
        self.parts = [c if hasattr(c, "read_shard") else causalgen.open_corpus(c) for c in corpora]
        self.root = " + ".join(str(c.root) for c in self.parts)
        self._where: list[tuple[int, int]] = []  # mixture shard position -> (corpus, position)
        shards = []
        for k, c in enumerate(self.parts):
            for pos, record in enumerate(c.manifest.shards):
                self._where.append((k, pos))
                shards.append(record)
        total = sum(len(c) for c in self.parts)
        self.manifest = _MixtureManifest(
            shards=shards, corpus_seed=tuple(c.manifest.corpus_seed for c in self.parts),
            num_tasks=total, shard_size=tuple(c.manifest.shard_size for c in self.parts), tasks_written=total)
        cols = [c.columns for c in self.parts]
        names = set.intersection(*(set(c) for c in cols))
        offsets = np.cumsum([0] + [int(np.max(c["task_index"], initial=-1)) + 1 for c in cols[:-1]])
        self.columns = {}
        for name in sorted(names):
            if name == "task_index":
                self.columns[name] = np.concatenate([np.asarray(c[name]) + off for c, off in zip(cols, offsets)])
            else:
                self.columns[name] = np.concatenate([np.asarray(c[name]) for c in cols])
        self.columns["corpus"] = np.concatenate([np.full(len(c["task_index"]), k) for k, c in enumerate(cols)])

    def __len__(self) -> int:
        return self.manifest.num_tasks

    def __repr__(self) -> str:
        return f"CorpusMixture({len(self.parts)} corpora, {len(self)} tasks: {self.root})"

    def read_shard(self, pos: int, *, verify: bool = False):
        k, local = self._where[pos]
        return self.parts[k].read_shard(local, verify=verify)
