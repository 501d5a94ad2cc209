"""The epoch plan: which tasks form which batch, for every rank and DataLoader worker.

The epoch plan is a pure function of (seed, epoch, world size, rank, number of DataLoader
workers, manifest, selection, batching options); no shard is opened to make it:

1. Shards holding selected tasks are permuted with ``default_rng([seed, epoch])``.
2. The tasks, in that shard order, are cut into ``world_size`` contiguous, equal (+-1) ranges,
   one per rank, and each rank's range into one per DataLoader worker ("slot"). Cutting at task
   granularity balances ranks even when filters leave shards unevenly full; a shard on a
   boundary is read by both neighbours.
3. Each slot reads its shards in blocks of ``block_shards``. The tasks of a block (plus the
   incomplete batch carried over from the previous block) are shuffled, optionally sorted by size
   (bucketing, then the batch order is shuffled), and cut into batches of ``batch_size`` tasks,
   or fewer when ``max_units_per_batch`` caps B * N.
4. ``drop_last=True`` (training): every slot of every rank is truncated to the same number of
   batches, so every rank gets the same count (DDP never hangs at epoch end) and every worker
   the same, which makes a resume position one integer per rank. ``drop_last=False``
   (evaluation): every selected task exactly once; ranks may get different counts.

The DataLoader takes batches round-robin from its workers, so the delivery order of a rank is
known, and ``batches_done`` locates the resume point: the worker that owns the next batch is
mapped onto physical worker 0, and every worker skips its consumed batches without reading the
shards only they needed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

__all__ = ["Batching", "EpochPlan", "Layout", "plan_epoch"]


@dataclass(frozen=True)
class Layout:
    """What the planner knows about the T selected tasks, from the manifest only.

    Local task ids 0..T-1 index these arrays; they are sorted by (shard, row), so each shard's
    selected tasks are one contiguous range.
    """

    shard: np.ndarray  #: (T,) int64 position of the task's shard in manifest.shards
    row: np.ndarray  #: (T,) int64 row of the task inside its shard
    task_index: np.ndarray  #: (T,) int64 corpus index
    n_units: np.ndarray  #: (T,) int64 units after subsampling (min(N, subsample_units))
    n_cov: np.ndarray  #: (T,) int64 covariates d
    n_nodes: np.ndarray  #: (T,) int64 graph nodes J


@dataclass(frozen=True)
class Batching:
    batch_size: int
    block_shards: int
    shuffle: bool
    bucket: bool
    max_units: int | None
    drop_last: bool


@dataclass(frozen=True)
class EpochPlan:
    """Batches of one epoch for every (rank, worker) slot: ``slots[rank][worker]`` is a list of
    (B_i,) int64 arrays of local task ids, in the order that worker yields them."""

    epoch: int
    world_size: int
    num_slots: int  #: workers per rank in the plan (max(1, num_workers))
    slots: tuple[tuple[tuple[np.ndarray, ...], ...], ...]
    tasks_selected: int

    def counts(self, rank: int) -> list[int]:
        return [len(s) for s in self.slots[rank]]

    def batches_per_rank(self, rank: int) -> int:
        return sum(self.counts(rank))

    def rank_order(self, rank: int) -> list[np.ndarray]:
        """Batches of `rank` in delivery order: DataLoader workers answer round-robin."""
        slots = self.slots[rank]
        out = []
        for j in range(max((len(s) for s in slots), default=0)):
            out.extend(s[j] for s in slots if j < len(s))
        return out

    @property
    def tasks_planned(self) -> int:
        return sum(len(b) for rank in self.slots for s in rank for b in s)


def _even_bounds(total: int, parts: int) -> np.ndarray:
    """(parts+1,) boundaries cutting `total` items into `parts` contiguous sizes that differ by <= 1."""
    sizes = np.full(parts, total // parts, dtype=np.int64)
    sizes[: total % parts] += 1
    return np.concatenate([[0], np.cumsum(sizes)])


def _cut(units: np.ndarray, batch_size: int, max_units: int | None) -> tuple[list[int], int]:
    """Greedy batches over a pool in its order: (ends of the closed batches, start of the open one).

    A batch closes at `batch_size` tasks, or before the task that would push
    B * max(N) over `max_units` (a task larger than the budget forms a batch alone).
    """
    n = len(units)
    if max_units is None:
        full = n // batch_size
        return [batch_size * (k + 1) for k in range(full)], full * batch_size
    ends: list[int] = []
    start, widest = 0, 0
    for i, u in enumerate(units.tolist()):
        count = i - start
        w = max(widest, u)
        if count and (count == batch_size or (count + 1) * w > max_units):
            ends.append(i)
            start, w = i, u
        widest = w
    if n - start == batch_size:
        ends.append(n)
        start = n
    return ends, start


def _slot_batches(ids: np.ndarray, layout: Layout, b: Batching, key: tuple[int, ...]) -> list[np.ndarray]:
    """Batches of one slot from its tasks `ids` (grouped by shard, in plan order)."""
    if len(ids) == 0:
        return []
    shards = layout.shard[ids]
    change = np.flatnonzero(np.diff(shards)) + 1
    seg_start = np.concatenate([[0], change])
    seg_end = np.concatenate([change, [len(ids)]])
    batches: list[np.ndarray] = []
    carry = ids[:0]
    for block, first in enumerate(range(0, len(seg_start), b.block_shards)):
        last = min(first + b.block_shards, len(seg_start)) - 1
        pool = np.concatenate([carry, ids[seg_start[first] : seg_end[last]]])
        rng = np.random.default_rng([*key, block]) if b.shuffle else None
        if rng is not None:
            pool = pool[rng.permutation(len(pool))]
        if b.bucket:
            # Stable sort after the shuffle: equal sizes stay in random order.
            size_key = layout.n_units[pool] * (int(layout.n_cov.max()) + 1) + layout.n_cov[pool]
            pool = pool[np.argsort(size_key, kind="stable")]
        ends, open_start = _cut(layout.n_units[pool], b.batch_size, b.max_units)
        full = [pool[s:e] for s, e in zip([0] + ends[:-1], ends)]
        if rng is not None and b.bucket:
            # Sorted batches would run small -> large in every block; training wants them mixed.
            full = [full[k] for k in rng.permutation(len(full))]
        batches.extend(full)
        carry = pool[open_start:]
    if len(carry) and not b.drop_last:
        batches.append(carry)  # the open batch fits the budget by construction
    return batches


def plan_epoch(layout: Layout, batching: Batching, seed: int, epoch: int, world_size: int, num_workers: int) -> EpochPlan:
    """The batches of every (rank, worker) slot for one epoch; see the module docstring."""
    slots_per_rank = max(1, int(num_workers))
    shards = np.unique(layout.shard)
    if batching.shuffle:
        shards = np.random.default_rng([seed, epoch]).permutation(shards)
    lo = np.searchsorted(layout.shard, shards, side="left")
    hi = np.searchsorted(layout.shard, shards, side="right")
    seq = np.concatenate([np.arange(a, z) for a, z in zip(lo, hi)]) if len(shards) else np.zeros(0, np.int64)
    per_rank = []
    rank_cuts = _even_bounds(len(seq), world_size)
    for rank in range(world_size):
        part = seq[rank_cuts[rank] : rank_cuts[rank + 1]]
        worker_cuts = _even_bounds(len(part), slots_per_rank)
        per_rank.append(
            [
                _slot_batches(part[worker_cuts[v] : worker_cuts[v + 1]], layout, batching, (seed, epoch, rank, v))
                for v in range(slots_per_rank)
            ]
        )
    if batching.drop_last:
        keep = min(len(s) for rank in per_rank for s in rank)
        if keep == 0:
            raise ValueError(
                f"TaskStream: {len(seq)} selected tasks give no full batch of {batching.batch_size} to some "
                f"(rank, worker) of {world_size} x {slots_per_rank}; use fewer workers, a smaller batch_size "
                "or drop_last=False"
            )
        per_rank = [[s[:keep] for s in rank] for rank in per_rank]
    return EpochPlan(
        epoch=epoch,
        world_size=world_size,
        num_slots=slots_per_rank,
        slots=tuple(tuple(tuple(s) for s in rank) for rank in per_rank),
        tasks_selected=len(seq),
    )


def _resume_point(counts: Sequence[int], done: int) -> tuple[list[int], int]:
    """Batches each worker slot has delivered after `done` round-robin deliveries, and the slot
    that delivers next (exhausted slots drop out of the round-robin, as in the DataLoader)."""
    consumed = [0] * len(counts)
    j, remaining = 0, done
    for level in sorted(set(counts)):
        if level <= j:
            continue
        active = [v for v, c in enumerate(counts) if c > j]
        span = (level - j) * len(active)
        if remaining < span:
            rounds, part = divmod(remaining, len(active))
            for k, v in enumerate(active):
                consumed[v] = j + rounds + (1 if k < part else 0)
            for v, c in enumerate(counts):
                if c <= j:
                    consumed[v] = c
            return consumed, active[part]
        remaining -= span
        j = level
    return list(counts), 0
