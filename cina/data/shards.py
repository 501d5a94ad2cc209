"""Reading shards inside a stream worker.

A worker reads each shard it needs once, whole, in order of first use (a background thread
prefetches the next ``prefetch_shards``, which hides latency for remote corpora), keeps it
until its last batch is built, and turns any read or decode failure into `ShardReadError`
naming the shard, which the DataLoader re-raises in the training process.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, Mapping

import numpy as np

from causalgen.store import Corpus, ShardError

__all__ = ["ShardCache", "ShardReadError"]


class ShardReadError(ShardError):
    """A shard needed by the stream could not be read or decoded; the message names it."""


class ShardCache:
    """Decoded shards one worker needs: read in order of first use, kept until released.

    With ``prefetch > 0`` a background thread reads the next shards of the schedule while the
    current batches are collated (zarr decoding and file or network I/O release the GIL).
    """

    def __init__(self, corpus: Corpus, expected: Callable[[int], dict[str, np.ndarray]], schedule: list[int], prefetch: int, verify: bool, where: str):
        self.corpus, self.expected, self.schedule = corpus, expected, schedule
        self.prefetch, self.verify, self.where = prefetch, verify, where
        self.next_pos = {pos: k for k, pos in enumerate(schedule)}
        self.loaded: dict[int, Mapping[str, np.ndarray]] = {}
        self.pending: dict[int, Future] = {}
        self.pool = ThreadPoolExecutor(max_workers=prefetch, thread_name_prefix="cina-prefetch") if prefetch > 0 else None

    def _read(self, pos: int) -> Mapping[str, np.ndarray]:
        record = self.corpus.manifest.shards[pos]
        name = f"shard {record.path} (position {pos}) of corpus {self.corpus.root}"
        try:
            data = self.corpus.read_shard(pos, verify=self.verify)
        except Exception as exc:  # zarr, fsspec and OS errors come in many types
            raise ShardReadError(f"cannot read {name} ({self.where}): {type(exc).__name__}: {exc}") from exc
        # The plan sized the padding from the manifest; a shard that disagrees would be misread.
        for col, want in self.expected(pos).items():
            if not np.array_equal(data.arrays[col], want):
                raise ShardReadError(f"{name}: its {col} disagree with the manifest (shard replaced or corrupt?) ({self.where})")
        return data.arrays

    def get(self, pos: int) -> Mapping[str, np.ndarray]:
        if pos not in self.loaded:
            fut = self.pending.pop(pos, None)
            self.loaded[pos] = fut.result() if fut is not None else self._read(pos)
        if self.pool is not None:
            k = self.next_pos[pos]
            for nxt in self.schedule[k + 1 : k + 1 + self.prefetch]:
                if nxt not in self.loaded and nxt not in self.pending:
                    self.pending[nxt] = self.pool.submit(self._read, nxt)
        return self.loaded[pos]

    def release(self, pos: int) -> None:
        self.loaded.pop(pos, None)

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=False, cancel_futures=True)
        self.loaded.clear()
        self.pending.clear()
