"""`TaskStream`: a deterministic, resumable `IterableDataset` of padded task batches.

The stream owns the epoch and the resume position; what goes into each batch is planned by
`cina.data.plan`, read by `cina.data.shards` and padded by `cina.data.collate`.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

import causalgen
from causalgen.store import Corpus

from .collate import EXTRA_FIELDS, collate_batch
from .plan import Batching, EpochPlan, Layout, _resume_point, plan_epoch
from .select import select_tasks
from .shards import ShardCache

__all__ = ["TaskStream"]

STATE_FORMAT = "cina.data.TaskStream"


STATE_VERSION = 1


def _resolve_topology() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


class TaskStream(IterableDataset):
    """Padded batches of tasks from a causalgen corpus, planned per epoch; see `cina.data`.

    corpus: a `causalgen.store.Corpus` (or a published repository's `PublishedCorpus`) or a
        path / URL for `causalgen.open_corpus` (local, fsspec URLs, ``hf://datasets/...``).
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
        self.corpus = corpus if hasattr(corpus, "read_shard") and hasattr(corpus, "manifest") else causalgen.open_corpus(corpus)
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.subsample_units = None if subsample_units is None else int(subsample_units)
        self.standardize = bool(standardize)
        self.extras = tuple(dict.fromkeys(extras))
        self.prefetch_shards = int(prefetch_shards)
        self.verify = bool(verify)
        self._batching = Batching(
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

    def _make_layout(self, split, where) -> Layout:
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
        return Layout(
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

    def _collate(self, ids: np.ndarray, shards: Mapping[int, Mapping[str, np.ndarray]], epoch: int) -> dict[str, torch.Tensor]:
        return collate_batch(ids, shards, self._layout, epoch, seed=self.seed, subsample_units=self.subsample_units,
                             standardize=self.standardize, extras=self.extras)

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
        cache = ShardCache(self.corpus, self._expected_sizes, schedule, self.prefetch_shards, self.verify, where)
        try:
            for k, ids in enumerate(batches):
                shard_arrays = {pos: cache.get(pos) for pos in dict.fromkeys(lay.shard[ids].tolist())}
                yield self._collate(ids, shard_arrays, epoch)
                for pos in release_at.get(k, ()):
                    cache.release(pos)
        finally:
            cache.close()
