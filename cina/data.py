"""A deterministic, resumable stream of padded task batches from a causalgen corpus.

`TaskStream` is a `torch.utils.data.IterableDataset` that yields ready-made batches: use it
with ``DataLoader(stream, batch_size=None, num_workers=W, pin_memory=...)``, or with
`TaskLoader`, the same DataLoader that also counts the batches handed to the training loop so
that ``stream.state_dict()`` can be saved next to the model checkpoint at any step::

    stream = TaskStream("corpus/", batch_size=32, seed=0, split="train", bucket_by_size=True)
    loader = TaskLoader(stream, num_workers=4, pin_memory=True, persistent_workers=True)
    stream.load_state_dict(ckpt["data"])          # when resuming (same num_workers)
    for epoch in range(stream.epoch, epochs):
        stream.set_epoch(epoch)                   # the same epoch keeps a loaded position
        for batch in loader:
            ...
            ckpt["data"] = loader.state_dict()    # exact: the remaining batches, in order

With a plain DataLoader and workers the training process cannot see which batches were
consumed: pass ``stream.state_dict(batches_done=k)`` (batches of this epoch consumed so far).

Batch contract (B tasks, N padded units, d padded covariates)::

    x             (B, N, d) float32  covariates; per task, each column standardised over its units
    t             (B, N)    float32  treatment, 0.0 / 1.0
    y             (B, N)    float32  outcome, per task (y - y_loc) / y_scale
    unit_mask     (B, N)    bool     True for real units
    feature_mask  (B, d)    bool     True for real covariates
    ate           (B,)      float32  ground-truth ATE on the standardised scale:
                                     ate_original = ate * y_scale (the location cancels)
    y_loc, y_scale (B,)     float32  mean and std of the task's observed y (0 / 1 if not standardised)
    task_index    (B,)      int64    corpus index of each task

Padding is 0 / False in these fields. Optional fields (``extras=``): see `EXTRA_FIELDS`.
Batches built in DataLoader workers carve their tensors out of two shared-memory blocks (per-task
vectors, and the rest), so keeping one (B, N) tensor keeps that batch's whole block alive:
``.clone()`` what you hold on to.

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

A worker reads each shard it needs once, whole, in order of first use (a background thread
prefetches the next ``prefetch_shards``, which hides latency for remote corpora), keeps it
until its last batch is built, and turns any read or decode failure into `ShardReadError`
naming the shard, which the DataLoader re-raises in the training process.
"""

from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from causalgen.corpus import Corpus, open_corpus
from causalgen.shard import ShardError
from causalgen.splits import SPLITS, split_codes

__all__ = [
    "BATCH_FIELDS",
    "EXTRA_FIELDS",
    "EpochPlan",
    "ShardReadError",
    "TaskLoader",
    "TaskStream",
    "select_tasks",
]

#: Keys of every batch.
BATCH_FIELDS = ("x", "t", "y", "unit_mask", "feature_mask", "ate", "y_loc", "y_scale", "task_index")

#: Optional keys (``extras=``) -> shape and meaning. J = padded number of graph nodes.
EXTRA_FIELDS = {
    "y0": "(B, N) float32 potential outcome under do(T=0), standardised like y",
    "y1": "(B, N) float32 potential outcome under do(T=1), standardised like y",
    "ite": "(B, N) float32 y1 - y0 on the standardised scale",
    "propensity": "(B, N) float32 true P(T=1 | parents of T)",
    "sate": "(B,) float32 mean of ite over the units in the batch (standardised)",
    "att": "(B,) float32 mean of ite over the treated units in the batch (NaN if none)",
    "ate_se": "(B,) float32 standard error of the ground-truth ATE (standardised; 0 = exact)",
    "identifiable": "(B,) bool a valid back-door set is among the observed covariates",
    "x_loc": "(B, d) float32 per-column mean removed from x (0 when not standardised)",
    "x_scale": "(B, d) float32 per-column std x was divided by (1 when not standardised)",
    "adjacency": "(B, J, J) bool causal graph, adjacency[b, i, j] = edge i -> j",
    "roles": "(B, J) int64 causalgen.Role code per node, -1 for padding",
    "node_mask": "(B, J) bool True for real graph nodes",
    "covariate_nodes": "(B, d) int64 graph node of each column of x, -1 for padding",
}

STATE_FORMAT = "cina.data.TaskStream"
STATE_VERSION = 1
#: A column with a smaller std is left unscaled (constant covariates, degenerate outcomes).
_MIN_STD = 1e-6
_GRAPH_EXTRAS = {"adjacency", "roles", "node_mask"}


class ShardReadError(ShardError):
    """A shard needed by the stream could not be read or decoded; the message names it."""


# ============================================================================= selection

_OPS: dict[str, Callable[[np.ndarray, Any], np.ndarray]] = {
    "<": np.less,
    "<=": np.less_equal,
    ">": np.greater,
    ">=": np.greater_equal,
    "==": np.equal,
    "!=": np.not_equal,
}


def _column(columns: Mapping[str, np.ndarray], name: str, cache: dict[str, np.ndarray]) -> np.ndarray:
    if name in columns:
        return np.asarray(columns[name])
    if name == "split":
        # Not a manifest column: a pure function of each task's seed (causalgen.splits).
        if "split" not in cache:
            cache["split"] = np.asarray(SPLITS, dtype=object)[split_codes(columns["seed"])]
        return cache["split"]
    raise ValueError(f"where: unknown column {name!r}; manifest columns are {', '.join(sorted(columns))} (and 'split')")


def _condition(col: np.ndarray, cond: Any, name: str) -> np.ndarray:
    if callable(cond):
        mask = np.asarray(cond(col))
    elif isinstance(cond, tuple) and len(cond) == 2 and isinstance(cond[0], str) and cond[0] in _OPS:
        mask = _OPS[cond[0]](col, cond[1])
    elif isinstance(cond, (list, tuple, set, frozenset)):
        mask = np.isin(col, list(cond))
    else:
        mask = col == cond
    mask = np.asarray(mask)
    if mask.dtype != bool or mask.shape != col.shape:
        raise ValueError(f"where[{name!r}]: the condition must give one bool per task, got {mask.dtype} {mask.shape}")
    return mask


def select_tasks(
    columns: Mapping[str, np.ndarray],
    *,
    split: str | Sequence[str] | None = None,
    where: Mapping[str, Any] | Callable[[Mapping[str, np.ndarray]], np.ndarray] | None = None,
) -> np.ndarray:
    """(T,) bool: which tasks of the manifest columns (`Corpus.columns`) pass the filters.

    split: "train", "validation", "test" or several (`causalgen.splits.split_of` on the seed).
    where: column -> condition, all of which must hold. A condition is a callable
        ``f(column) -> bool array``, a comparison ``("<=", 50)``, a collection of allowed values
        (``{"erdos_renyi", "scale_free"}``) or a single value. Or one callable
        ``f(columns) -> bool array`` for conditions across columns.
    """
    n = len(columns["seed"])
    mask = np.ones(n, dtype=bool)
    cache: dict[str, np.ndarray] = {}
    if split is not None:
        wanted = [split] if isinstance(split, str) else list(split)
        bad = [s for s in wanted if s not in SPLITS]
        if bad:
            raise ValueError(f"split: expected some of {', '.join(SPLITS)}, got {bad}")
        mask &= np.isin(_column(columns, "split", cache), wanted)
    if callable(where):
        got = np.asarray(where(columns))
        if got.dtype != bool or got.shape != (n,):
            raise ValueError(f"where: the callable must return ({n},) bool, got {got.dtype} {got.shape}")
        mask &= got
    elif where is not None:
        for name, cond in where.items():
            mask &= _condition(_column(columns, name, cache), cond, name)
    return mask


# ============================================================================= the plan


@dataclass(frozen=True)
class _Layout:
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
class _Batching:
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


def _slot_batches(ids: np.ndarray, layout: _Layout, b: _Batching, key: tuple[int, ...]) -> list[np.ndarray]:
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


def plan_epoch(layout: _Layout, batching: _Batching, seed: int, epoch: int, world_size: int, num_workers: int) -> EpochPlan:
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


# ============================================================================= reading shards


class _ShardCache:
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


# ============================================================================= collation


def _std_cols(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-column mean and std (float64 accumulation), std 1 where a column is ~constant."""
    loc = v.mean(axis=0, dtype=np.float64)
    scale = v.std(axis=0, dtype=np.float64)
    scale[~(scale > _MIN_STD)] = 1.0
    return loc.astype(np.float32), scale.astype(np.float32)


def _allocate(spec: Mapping[str, tuple[tuple[int, ...], Any, Any]], shared: bool) -> tuple[dict[str, torch.Tensor], dict[str, np.ndarray]]:
    """Tensors for one batch, filled with their padding values, and numpy views to write them.

    In a DataLoader worker the fields are carved out of two shared-memory blocks, per-task
    vectors (B,) and everything else: sending a batch to the training process then passes two
    handles instead of copying every tensor into a segment of its own (measured: ~12 ms -> ~5 ms
    for a 1.6 MB batch). Two blocks, so that keeping ``batch["ate"]`` or ``batch["task_index"]``
    for logging does not keep the whole padded batch alive.
    """
    dtypes = {name: np.dtype(dt) for name, (_, dt, _) in spec.items()}
    sizes = {name: int(np.prod(shape)) * dtypes[name].itemsize for name, (shape, _, _) in spec.items()}
    tensors: dict[str, torch.Tensor] = {}
    zeroed = shared and hasattr(torch.UntypedStorage, "_new_shared")  # private API: fall back if it goes
    if zeroed:
        for group in ([n for n, (sh, _, _) in spec.items() if len(sh) == 1], [n for n, (sh, _, _) in spec.items() if len(sh) > 1]):
            offsets, total = {}, 0
            for name in group:
                offsets[name] = total
                total += -(-sizes[name] // 8) * 8  # keep every field 8-byte aligned
            storage = torch.UntypedStorage._new_shared(max(total, 8))
            for name in group:
                tdt = torch.from_numpy(np.empty(0, dtypes[name])).dtype
                tensors[name] = torch.empty(0, dtype=tdt).set_(storage, offsets[name] // dtypes[name].itemsize, spec[name][0])
    else:
        for name, (shape, _, _) in spec.items():
            tensors[name] = torch.from_numpy(np.empty(shape, dtypes[name]))
    arrays = {name: t.numpy() for name, t in tensors.items()}
    for name, (_, _, fill) in spec.items():
        # A new shared-memory segment is zero-filled by the kernel (POSIX ftruncate), and not
        # writing the padding spares the page faults on it, which dominate in a VM.
        if fill != 0 or not zeroed:
            arrays[name].fill(fill)
    return tensors, arrays


# ============================================================================= the stream


def _resolve_topology() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


class TaskStream(IterableDataset):
    """Padded batches of tasks from a causalgen corpus, planned per epoch; see the module docstring.

    corpus: a `causalgen.corpus.Corpus` (or a published repository's `PublishedCorpus`) or a
        path / URL for `open_corpus` (local, fsspec URLs, ``hf://datasets/...``).
    batch_size: tasks per batch (the most, when `max_units_per_batch` is set).
    seed: the plan's seed (an integer >= 0).
    shuffle: permute shards and tasks per epoch (False: manifest order, for evaluation).
    block_shards: shards shuffled together (the memory a worker holds is about this many shards).
    bucket_by_size: sort each block by (units, covariates) before batching, then shuffle the
        batches; raises the fill ratio of the padded tensors (`plan_stats`).
    max_units_per_batch: cap on B * N (padded units); batches then have <= batch_size tasks.
    drop_last: True (training) drops incomplete batches and truncates every rank and worker to
        the same batch count; False yields every selected task once (counts may differ by rank).
    split, where: filters on manifest columns, see `select_tasks`; no shard is opened.
    subsample_units: draw this many units per task (without replacement, fresh each epoch) and
        pad N to exactly this value; tasks with fewer units are kept whole.
    standardize: standardise x (per column) and y per task over the units delivered.
    extras: names from `EXTRA_FIELDS` to add to each batch.
    rank, world_size: override `torch.distributed` (default: read from it when initialised).
    prefetch_shards: shards a worker reads ahead in a background thread (0 = none).
    verify: check every shard's sha256 against the manifest as it is read.
    """

    def __init__(
        self,
        corpus: Corpus | str | os.PathLike,
        batch_size: int,
        seed: int,
        *,
        shuffle: bool = True,
        block_shards: int = 4,
        bucket_by_size: bool = False,
        max_units_per_batch: int | None = None,
        drop_last: bool = True,
        split: str | Sequence[str] | None = None,
        where: Mapping[str, Any] | Callable | None = None,
        subsample_units: int | None = None,
        standardize: bool = True,
        extras: Sequence[str] = (),
        rank: int | None = None,
        world_size: int | None = None,
        prefetch_shards: int = 1,
        verify: bool = False,
    ):
        super().__init__()
        for name, v, low in (("batch_size", batch_size, 1), ("seed", seed, 0), ("block_shards", block_shards, 1), ("prefetch_shards", prefetch_shards, 0)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < low:
                raise ValueError(f"{name}: expected an integer >= {low}, got {v!r}")
        for name, v in (("max_units_per_batch", max_units_per_batch), ("subsample_units", subsample_units)):
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1):
                raise ValueError(f"{name}: expected None or an integer >= 1, got {v!r}")
        unknown = [e for e in extras if e not in EXTRA_FIELDS]
        if unknown:
            raise ValueError(f"extras: unknown {unknown}; available: {', '.join(EXTRA_FIELDS)}")
        if (rank is None) != (world_size is None):
            raise ValueError("rank and world_size: give both or neither")
        if world_size is not None and not (isinstance(world_size, int) and world_size >= 1 and isinstance(rank, int) and 0 <= rank < world_size):
            raise ValueError(f"rank/world_size: expected 0 <= rank < world_size, got {rank}/{world_size}")

        # A Corpus, or anything that reads like one (causalgen.hub.PublishedCorpus): manifest.shards,
        # columns in shard order, read_shard(pos).
        self.corpus = corpus if hasattr(corpus, "read_shard") and hasattr(corpus, "manifest") else open_corpus(corpus)
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.subsample_units = None if subsample_units is None else int(subsample_units)
        self.standardize = bool(standardize)
        self.extras = tuple(dict.fromkeys(extras))
        self.prefetch_shards = int(prefetch_shards)
        self.verify = bool(verify)
        self._batching = _Batching(
            batch_size=self.batch_size,
            block_shards=int(block_shards),
            shuffle=bool(shuffle),
            bucket=bool(bucket_by_size),
            max_units=None if max_units_per_batch is None else int(max_units_per_batch),
            drop_last=bool(drop_last),
        )
        self._layout = self._make_layout(split, where)
        self._fingerprint = self._make_fingerprint()
        self._explicit_topology = world_size is not None
        self.rank, self.world_size = (rank, world_size) if world_size is not None else _resolve_topology()
        # In shared memory, so that set_epoch / load_state_dict reach persistent DataLoader workers
        # and a worker can report its worker count back: [epoch, batches done (live count, moved
        # by the training process as batches arrive), num_workers seen by a worker (-1: none yet),
        # batches done when this iteration started]. Workers read only the start position: a
        # worker that starts late must not see the live count, already moved by its siblings'
        # batches.
        self._shared = torch.tensor([0, 0, -1, 0], dtype=torch.int64).share_memory_()
        self._expect_workers: int | None = None  # from a loaded state
        self._loaded = False  # a loaded position not yet iterated from (training process only)
        self._plans: dict[tuple, EpochPlan] = {}

    # ------------------------------------------------------------------ setup

    def _make_layout(self, split, where) -> _Layout:
        m = self.corpus.manifest
        columns = self.corpus.columns
        # An empty selection is allowed (an empty validation split): with drop_last=False it
        # yields nothing, with drop_last=True planning says there is no full batch.
        keep = select_tasks(columns, split=split, where=where)
        counts = np.asarray([r.num_tasks for r in m.shards], dtype=np.int64)
        if counts.sum() != len(keep):
            raise ValueError(f"TaskStream: {self.corpus!r} lists {counts.sum()} tasks in its shards but {len(keep)} in its columns")
        self._shard_starts = np.concatenate([[0], np.cumsum(counts)])
        self._sizes = {col: columns[col].astype(np.int64) for col in ("n_units", "n_covariates", "n_nodes")}
        shard = np.repeat(np.arange(len(counts), dtype=np.int64), counts)
        row = np.arange(len(shard), dtype=np.int64) - np.repeat(np.cumsum(counts) - counts, counts)
        n_units = columns["n_units"].astype(np.int64)
        if self.subsample_units is not None:
            n_units = np.minimum(n_units, self.subsample_units)
        return _Layout(
            shard=shard[keep],
            row=row[keep],
            task_index=columns["task_index"].astype(np.int64)[keep],
            n_units=n_units[keep],
            n_cov=columns["n_covariates"].astype(np.int64)[keep],
            n_nodes=columns["n_nodes"].astype(np.int64)[keep],
        )

    def _make_fingerprint(self) -> str:
        """Digest of everything the plan and the batch contents depend on, except epoch and topology."""
        h = hashlib.sha256()
        m = self.corpus.manifest
        h.update(json.dumps([m.corpus_seed, m.num_tasks, m.shard_size, [r.sha256 for r in m.shards]]).encode())
        # extras and standardize change values, not which tasks go where: free to change on resume.
        h.update(json.dumps([self.seed, self._batching.__dict__, self.subsample_units], sort_keys=True).encode())
        for a in (self._layout.task_index, self._layout.n_units):
            h.update(np.ascontiguousarray(a).tobytes())
        return h.hexdigest()[:16]

    def _expected_sizes(self, pos: int) -> dict[str, np.ndarray]:
        """Per-task sizes of shard `pos` according to the manifest columns."""
        lo, hi = self._shard_starts[pos], self._shard_starts[pos + 1]
        return {col: v[lo:hi] for col, v in self._sizes.items()}

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_plans"] = {}  # cheap to recompute; keeps worker start-up pickles small
        return state

    def __repr__(self) -> str:
        b = self._batching
        return (
            f"TaskStream({len(self._layout.task_index)} tasks of {self.corpus.root!r}, batch_size={b.batch_size}, "
            f"seed={self.seed}, epoch={self.epoch}, rank={self.rank}/{self.world_size}, bucket={b.bucket}, "
            f"max_units={b.max_units}, drop_last={b.drop_last})"
        )

    def _refresh_topology(self) -> None:
        """Re-read torch.distributed (main process only: a spawned worker has no process group)."""
        if get_worker_info() is None and not self._explicit_topology:
            self.rank, self.world_size = _resolve_topology()
        env_world = os.environ.get("WORLD_SIZE")
        if not self._explicit_topology and env_world is not None and int(env_world) != self.world_size:
            raise RuntimeError(
                f"TaskStream: WORLD_SIZE={env_world} but the stream is planned for world_size={self.world_size}: "
                "call torch.distributed.init_process_group before iterating (or pass rank= and world_size=)"
            )

    # ------------------------------------------------------------------ epochs and state

    @property
    def epoch(self) -> int:
        return int(self._shared[0])

    @property
    def batches_done(self) -> int:
        """Batches of this epoch already handed to the training loop on this rank."""
        return int(self._shared[1])

    @property
    def num_tasks(self) -> int:
        """Tasks that pass the filters (over all ranks)."""
        return len(self._layout.task_index)

    def set_epoch(self, epoch: int) -> None:
        """Start epoch `epoch` from its beginning; calling it again with the current epoch keeps a
        resume position loaded with `load_state_dict`."""
        if isinstance(epoch, bool) or not isinstance(epoch, (int, np.integer)) or epoch < 0:
            raise ValueError(f"epoch: expected an integer >= 0, got {epoch!r}")
        self._refresh_topology()
        if int(epoch) != self.epoch:
            self._set_position(int(epoch), 0)
            self._loaded = False
            self._expect_workers = None  # a new epoch may use any worker count

    def plan(self, epoch: int | None = None, num_workers: int = 0) -> EpochPlan:
        """The epoch plan of every rank for `num_workers` DataLoader workers (cached)."""
        epoch = self.epoch if epoch is None else int(epoch)
        key = (epoch, self.world_size, max(1, int(num_workers)))
        if key not in self._plans:
            if len(self._plans) > 4:
                self._plans.clear()
            self._plans[key] = plan_epoch(self._layout, self._batching, self.seed, epoch, self.world_size, num_workers)
        return self._plans[key]

    def batches_per_epoch(self, num_workers: int = 0) -> int:
        """Batches this rank yields per epoch with `num_workers` DataLoader workers."""
        self._refresh_topology()
        return self.plan(num_workers=num_workers).batches_per_rank(self.rank)

    def plan_stats(self, epoch: int | None = None, num_workers: int = 0) -> dict[str, float]:
        """Padding and coverage of an epoch over all ranks, from the manifest alone.

        unit_fill: real units / padded unit slots (sum of B * N); element_fill: real x entries /
        padded x entries (sum of B * N * d); tasks_dropped: selected tasks in no batch.
        """
        p = self.plan(epoch, num_workers)
        lay = self._layout
        real_u = real_x = pad_u = pad_x = 0
        batches = 0
        for rank in p.slots:
            for slot in rank:
                for b in slot:
                    n, d = lay.n_units[b], lay.n_cov[b]
                    n_max = self.subsample_units if self.subsample_units is not None else int(n.max())
                    real_u += int(n.sum())
                    real_x += int((n * d).sum())
                    pad_u += len(b) * n_max
                    pad_x += len(b) * n_max * int(d.max())
                    batches += 1
        return {
            "batches": batches,
            "tasks_selected": p.tasks_selected,
            "tasks_dropped": p.tasks_selected - p.tasks_planned,
            "mean_batch_size": p.tasks_planned / max(batches, 1),
            "unit_fill": real_u / max(pad_u, 1),
            "element_fill": real_x / max(pad_x, 1),
        }

    def state_dict(self, batches_done: int | None = None) -> dict[str, Any]:
        """The resume position of this rank (plain ints and strings; save it with the model).

        Exact for the same code and numpy version (the plan's shuffles use numpy's Generator).

        batches_done: batches of the current epoch the training loop has consumed; by default the
        count kept by `TaskLoader` (or by iterating the stream in this process). Pass it when
        using a plain DataLoader with workers, which does not report consumption.
        """
        self._refresh_topology()
        done = self.batches_done if batches_done is None else int(batches_done)
        seen = int(self._shared[2])
        return {
            "format": STATE_FORMAT,
            "version": STATE_VERSION,
            "seed": self.seed,
            "epoch": self.epoch,
            "batches_done": done,
            "num_workers": seen if seen >= 0 else self._expect_workers,
            "rank": self.rank,
            "world_size": self.world_size,
            "fingerprint": self._fingerprint,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Resume exactly where `state` was taken: same epoch, the remaining batches in order.

        Needs the same corpus, selection, batching options, seed, world size and number of
        DataLoader workers (checked here, and the worker count when iteration starts). The rank is
        not checked: with ``drop_last=True`` every rank of a DDP job is at the same position, so
        rank 0's state may be loaded by all ranks. A state taken at the end of an epoch resumes
        with nothing left in it (the training loop then moves to the next epoch).
        """
        if state.get("format") != STATE_FORMAT or state.get("version") != STATE_VERSION:
            raise ValueError(f"load_state_dict: not a {STATE_FORMAT} v{STATE_VERSION} state: {dict(state)!r}")
        self._refresh_topology()
        problems = []
        for key, mine in (("seed", self.seed), ("fingerprint", self._fingerprint), ("world_size", self.world_size)):
            if state[key] != mine:
                problems.append(f"{key} {state[key]!r} != {mine!r}")
        if problems:
            raise ValueError(
                "load_state_dict: cannot resume exactly, the stream differs from the checkpoint ("
                + "; ".join(problems)
                + "); the fingerprint covers the corpus, filters and batching options"
            )
        self._set_position(int(state["epoch"]), int(state["batches_done"]))
        self._expect_workers = state.get("num_workers")
        self._loaded = True

    def _begin(self, num_workers: int) -> None:
        """Called in the training process before an iteration starts.

        An epoch finished by iterating in this process replays from its start (as a
        DistributedSampler without set_epoch would); one loaded finished stays finished, so a
        checkpoint taken after an epoch's last batch does not replay that epoch.
        """
        self._refresh_topology()
        if self._expect_workers is not None and max(1, num_workers) != max(1, self._expect_workers) and self.batches_done:
            raise ValueError(
                f"TaskStream: the checkpoint was taken with num_workers={self._expect_workers}, this DataLoader has "
                f"{num_workers}; the resume position is only exact with the same worker count"
            )
        if self.batches_done >= self.batches_per_epoch(num_workers) and not self._loaded:
            self._set_position(self.epoch, 0)
        self._shared[3] = self.batches_done  # the position this iteration starts from
        self._loaded = False
        self._expect_workers = num_workers

    def _set_position(self, epoch: int, done: int) -> None:
        self._shared[0] = epoch
        self._shared[1] = done
        self._shared[3] = done

    def _count(self, n: int = 1) -> None:
        self._shared[1] += n

    # ------------------------------------------------------------------ iteration

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        info = get_worker_info()
        if info is None:
            self._begin(0)
            num_workers, worker = 0, 0
            self._shared[2] = 0
        else:
            num_workers, worker = info.num_workers, info.id
            self._shared[2] = num_workers
            if self._expect_workers is not None and max(1, num_workers) != max(1, self._expect_workers) and self.batches_done:
                raise ValueError(
                    f"TaskStream: the checkpoint was taken with num_workers={self._expect_workers}, this DataLoader "
                    f"has {num_workers}; the resume position is only exact with the same worker count"
                )
        epoch, done = self.epoch, int(self._shared[3])
        plan = self.plan(epoch, num_workers)
        counts = plan.counts(self.rank)
        if done >= sum(counts):
            return  # the training process decided (see _begin): nothing left of this epoch
        consumed, first = _resume_point(counts, done)
        # Physical worker 0 is asked first by a fresh DataLoader iterator, so it plays the slot
        # that owns the next batch; the round-robin then continues in the original order.
        slot = (worker + first) % plan.num_slots
        batches = plan.slots[self.rank][slot][consumed[slot] :]
        where = f"epoch {epoch}, rank {self.rank}, worker {worker}"
        for batch in self._produce(batches, epoch, where):
            if info is None:
                self._count()  # in-process iteration: handing the batch over is consuming it
            yield batch

    def _produce(self, batches: Sequence[np.ndarray], epoch: int, where: str) -> Iterator[dict[str, torch.Tensor]]:
        lay = self._layout
        # Shards in order of first use, each released after the last batch that needs it.
        schedule: list[int] = []
        last_use: dict[int, int] = {}
        for k, ids in enumerate(batches):
            for pos in dict.fromkeys(lay.shard[ids].tolist()):
                if pos not in last_use:
                    schedule.append(pos)
                last_use[pos] = k
        release_at: dict[int, list[int]] = {}
        for pos, k in last_use.items():
            release_at.setdefault(k, []).append(pos)
        cache = _ShardCache(self.corpus, self._expected_sizes, schedule, self.prefetch_shards, self.verify, where)
        try:
            for k, ids in enumerate(batches):
                shard_arrays = {pos: cache.get(pos) for pos in dict.fromkeys(lay.shard[ids].tolist())}
                yield self._collate(ids, shard_arrays, epoch)
                for pos in release_at.get(k, ()):
                    cache.release(pos)
        finally:
            cache.close()

    def _collate(self, ids: np.ndarray, shards: Mapping[int, Mapping[str, np.ndarray]], epoch: int) -> dict[str, torch.Tensor]:
        """Pad the tasks `ids` (local ids) into one batch dict; shapes in the module docstring."""
        lay = self._layout
        B = len(ids)
        n_all = lay.n_units[ids]
        d_all = lay.n_cov[ids]
        N = self.subsample_units if self.subsample_units is not None else int(n_all.max())
        D = int(d_all.max())
        want = set(self.extras)
        f32 = np.float32
        # name -> (shape, dtype, padding value)
        spec: dict[str, tuple[tuple[int, ...], Any, Any]] = {
            "x": ((B, N, D), f32, 0),
            "t": ((B, N), f32, 0),
            "y": ((B, N), f32, 0),
            "unit_mask": ((B, N), bool, 0),
            "feature_mask": ((B, D), bool, 0),
            "ate": ((B,), f32, 0),
            "y_loc": ((B,), f32, 0),
            "y_scale": ((B,), f32, 1),
            "task_index": ((B,), np.int64, 0),
        }
        for name in ("y0", "y1", "ite", "propensity"):
            spec[name] = ((B, N), f32, 0)
        for name in ("sate", "att", "ate_se"):
            spec[name] = ((B,), f32, 0)
        spec["identifiable"] = ((B,), bool, 0)
        spec["x_loc"] = ((B, D), f32, 0)
        spec["x_scale"] = ((B, D), f32, 1)
        spec["covariate_nodes"] = ((B, D), np.int64, -1)
        if want & _GRAPH_EXTRAS:
            J = int(lay.n_nodes[ids].max())
            spec["adjacency"] = ((B, J, J), bool, 0)
            spec["roles"] = ((B, J), np.int64, -1)
            spec["node_mask"] = ((B, J), bool, 0)
        spec = {k: v for k, v in spec.items() if k in BATCH_FIELDS or k in want}
        tensors, out = _allocate(spec, shared=get_worker_info() is not None)
        out["task_index"][:] = lay.task_index[ids]

        for i, tid in enumerate(ids.tolist()):
            a = shards[int(lay.shard[tid])]
            j = int(lay.row[tid])
            u0, u1 = int(a["unit_offsets"][j]), int(a["unit_offsets"][j + 1])
            d = int(d_all[i])
            n_full = u1 - u0
            x0 = int(a["x_offsets"][j])
            x = a["x_values"][x0 : x0 + n_full * d].reshape(n_full, d)
            t = a["t"][u0:u1]
            y = a["y"][u0:u1]
            idx = None
            if self.subsample_units is not None and n_full > self.subsample_units:
                # Per (seed, epoch, task): the same units whatever the rank, worker or resume point.
                rng = np.random.default_rng([self.seed, epoch, int(lay.task_index[tid])])
                idx = np.sort(rng.choice(n_full, self.subsample_units, replace=False))
                x, t, y = x[idx], t[idx], y[idx]
            n = len(t)
            if self.standardize:
                x_loc, x_scale = _std_cols(x)
                y_loc, y_scale = _std_cols(y[:, None])
                y_loc, y_scale = float(y_loc[0]), float(y_scale[0])
                xo = out["x"][i, :n, :d]
                np.subtract(x, x_loc, out=xo)
                np.divide(xo, x_scale, out=xo)
                np.subtract(y, y_loc, out=out["y"][i, :n])
                out["y"][i, :n] /= y_scale
            else:
                x_loc = x_scale = None
                y_loc, y_scale = 0.0, 1.0
                out["x"][i, :n, :d] = x
                out["y"][i, :n] = y
            out["t"][i, :n] = t
            out["unit_mask"][i, :n] = True
            out["feature_mask"][i, :d] = True
            out["ate"][i] = float(a["ate"][j]) / y_scale
            out["y_loc"][i] = y_loc
            out["y_scale"][i] = y_scale
            if not want:
                continue
            # ---- optional fields
            if want & {"y0", "y1", "ite", "sate", "att"}:
                y0 = a["y0"][u0:u1]
                y1 = a["y1"][u0:u1]
                if idx is not None:
                    y0, y1 = y0[idx], y1[idx]
                ite = (y1.astype(np.float64) - y0) / y_scale
                if "y0" in want:
                    out["y0"][i, :n] = (y0 - y_loc) / y_scale
                if "y1" in want:
                    out["y1"][i, :n] = (y1 - y_loc) / y_scale
                if "ite" in want:
                    out["ite"][i, :n] = ite
                if "sate" in want:
                    out["sate"][i] = ite.mean()
                if "att" in want:
                    treated = t == 1
                    out["att"][i] = ite[treated].mean() if treated.any() else np.nan
            if "propensity" in want:
                p = a["propensity"][u0:u1]
                out["propensity"][i, :n] = p if idx is None else p[idx]
            if "ate_se" in want:
                out["ate_se"][i] = float(a["ate_se"][j]) / y_scale
            if "identifiable" in want:
                out["identifiable"][i] = bool(a["identifiable"][j])
            if "x_loc" in want and x_loc is not None:
                out["x_loc"][i, :d] = x_loc
            if "x_scale" in want and x_scale is not None:
                out["x_scale"][i, :d] = x_scale
            if "covariate_nodes" in want:
                c0 = int(a["covariate_offsets"][j])
                out["covariate_nodes"][i, :d] = a["covariate_nodes"][c0 : c0 + d]
            if want & _GRAPH_EXTRAS:
                v0, v1 = int(a["node_offsets"][j]), int(a["node_offsets"][j + 1])
                J_i = v1 - v0
                if "roles" in want:
                    out["roles"][i, :J_i] = a["roles"][v0:v1]
                if "node_mask" in want:
                    out["node_mask"][i, :J_i] = True
                if "adjacency" in want:
                    a0 = int(a["adjacency_offsets"][j])
                    out["adjacency"][i, :J_i, :J_i] = a["adjacency_values"][a0 : a0 + J_i * J_i].reshape(J_i, J_i)
        return tensors


# ============================================================================= the loader


class TaskLoader(DataLoader):
    """``DataLoader(stream, batch_size=None, ...)`` that counts the batches it hands out, so
    ``loader.state_dict()`` (= ``stream.state_dict()``) is exact at any step, with or without
    workers. ``len(loader)`` is the batch count of this rank per epoch. Other keyword arguments
    (prefetch_factor, persistent_workers, timeout, multiprocessing_context, ...) pass through;
    ``in_order`` stays True because the resume position relies on round-robin delivery.
    """

    def __init__(self, stream: TaskStream, *, num_workers: int = 0, pin_memory: bool = False, **kwargs: Any):
        if not isinstance(stream, TaskStream):
            raise TypeError(f"TaskLoader: expected a TaskStream, got {type(stream).__name__}")
        if kwargs.pop("in_order", True) is not True:
            raise ValueError("TaskLoader: in_order=False would make the batch order (and resume) nondeterministic")
        for bad in ("batch_size", "shuffle", "sampler", "batch_sampler", "collate_fn", "drop_last"):
            if bad in kwargs:
                raise ValueError(f"TaskLoader: {bad} is set on the TaskStream, not the loader")
        super().__init__(stream, batch_size=None, num_workers=num_workers, pin_memory=pin_memory, **kwargs)
        self.stream = stream

    def __len__(self) -> int:
        return self.stream.batches_per_epoch(self.num_workers)

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        stream = self.stream
        if self.num_workers == 0:
            yield from super().__iter__()  # the stream counts in-process iteration itself
            return
        stream._begin(self.num_workers)  # before the workers read the shared resume position
        for batch in super().__iter__():
            stream._count()
            yield batch

    def state_dict(self) -> dict[str, Any]:
        state = self.stream.state_dict()
        state["num_workers"] = self.num_workers
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.stream.load_state_dict(state)
