"""cina.data: batch contract and masks, determinism, exact resume (0 and 2 workers), ranks under
torchrun, filters, bucketing and budgets, subsampling, prefetch, remote corpora, corrupt shards.

Every test streams a real zarr corpus written by causalgen (96 ragged tasks in 8 shards), through
real DataLoader worker processes where workers are involved.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

import causalgen
from causalgen import Corpus, open_corpus
from causalgen.store.generate import CorpusSpec, generate_corpus
from causalgen.store.splits import split_of
from cina.data import BATCH_FIELDS, EXTRA_FIELDS, ShardReadError, TaskLoader, TaskStream, plan_epoch
from cina.data.plan import _resume_point  # internal

N_TASKS, SHARD = 96, 12
HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def corpus_path(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data") / "corpus"
    cfg = causalgen.load_config("default").replace(n_units=[30, 120])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        generate_corpus(CorpusSpec(config=cfg.to_dict(), seed=3, num_tasks=N_TASKS, shard_size=SHARD), str(root), progress=False)
    return root


@pytest.fixture(scope="module")
def corpus(corpus_path) -> Corpus:
    return open_corpus(corpus_path)


@pytest.fixture(scope="module")
def tasks(corpus) -> list:
    """Every task, read once through causalgen (the reference the batches are checked against)."""
    return list(corpus)


def signature(batch) -> tuple:
    """Task ids plus a digest of every tensor: equal signatures mean bit-identical batches."""
    h = hashlib.sha256()
    for key in sorted(batch):
        h.update(key.encode())
        h.update(batch[key].numpy().tobytes())
    return tuple(batch["task_index"].tolist()), h.hexdigest()


def run(stream, workers=0, **kw) -> list[tuple]:
    return [signature(b) for b in TaskLoader(stream, num_workers=workers, **kw)]


def ids(sigs) -> list[int]:
    return [i for s in sigs for i in s[0]]


# ----------------------------------------------------------------------------- the batch contract


def test_batches_hold_the_tasks_with_ragged_masks_and_standardisation(corpus, tasks):
    extras = tuple(EXTRA_FIELDS)
    stream = TaskStream(corpus, 5, seed=1, extras=extras, drop_last=False)
    seen, ragged_units, ragged_cov = [], False, False
    for batch in stream:
        assert set(batch) == set(BATCH_FIELDS) | set(extras)
        B, N, D = batch["x"].shape
        dtypes = {"x": torch.float32, "t": torch.float32, "y": torch.float32, "unit_mask": torch.bool, "feature_mask": torch.bool,
                  "ate": torch.float32, "y_loc": torch.float32, "y_scale": torch.float32, "task_index": torch.int64}
        for key, dt in dtypes.items():
            assert batch[key].dtype == dt, key
        assert batch["t"].shape == batch["y"].shape == batch["unit_mask"].shape == (B, N)
        assert batch["feature_mask"].shape == (B, D) and batch["ate"].shape == batch["y_scale"].shape == (B,)
        n_batch = batch["unit_mask"].sum(1)
        ragged_units |= len(set(n_batch.tolist())) > 1
        ragged_cov |= len(set(batch["feature_mask"].sum(1).tolist())) > 1
        assert int(n_batch.max()) == N and int(batch["feature_mask"].sum(1).max()) == D  # padded to the batch max
        for i, tid in enumerate(batch["task_index"].tolist()):
            task = tasks[tid]
            n, d = task.n_units, task.n_covariates
            seen.append(tid)
            # masks: exactly the first n units and d covariates
            assert batch["unit_mask"][i].tolist() == [True] * n + [False] * (N - n)
            assert batch["feature_mask"][i].tolist() == [True] * d + [False] * (D - d)
            x = batch["x"][i].numpy().astype(np.float64)
            mu, sd = task.x.mean(0, dtype=np.float64), task.x.std(0, dtype=np.float64)
            sd[sd <= 1e-6] = 1.0
            np.testing.assert_allclose(x[:n, :d], (task.x - mu) / sd, atol=2e-5)
            assert not x[n:].any() and not x[:, d:].any()  # padding is zero
            np.testing.assert_allclose(x[:n, :d].mean(0), 0, atol=1e-5)
            assert np.array_equal(batch["t"][i, :n].numpy(), task.t.astype(np.float32)) and not batch["t"][i, n:].any()
            loc, scale = float(batch["y_loc"][i]), float(batch["y_scale"][i])
            assert scale == pytest.approx(task.y.std(dtype=np.float64), rel=1e-5) and loc == pytest.approx(task.y.mean(dtype=np.float64), abs=1e-5)
            np.testing.assert_allclose(batch["y"][i, :n].numpy() * scale + loc, task.y, atol=1e-4)
            assert not batch["y"][i, n:].any()
            # the ground truth maps back to the original scale
            assert float(batch["ate"][i]) * scale == pytest.approx(task.ate, rel=1e-5, abs=1e-6)
            assert float(batch["ate_se"][i]) * scale == pytest.approx(task.ate_se, rel=1e-5, abs=1e-7)
            np.testing.assert_allclose(batch["y0"][i, :n].numpy() * scale + loc, task.y0, atol=1e-4)
            np.testing.assert_allclose(batch["y1"][i, :n].numpy() * scale + loc, task.y1, atol=1e-4)
            np.testing.assert_allclose(batch["ite"][i, :n].numpy() * scale, task.y1 - task.y0, atol=1e-4)
            assert float(batch["sate"][i]) * scale == pytest.approx(task.sate, abs=1e-4)
            assert float(batch["att"][i]) * scale == pytest.approx(task.att, abs=1e-4)
            assert np.array_equal(batch["propensity"][i, :n].numpy(), task.propensity)
            np.testing.assert_allclose(batch["x_loc"][i, :d].numpy(), mu, atol=1e-5)
            np.testing.assert_allclose(batch["x_scale"][i, :d].numpy(), sd, rtol=1e-5)
            assert bool(batch["identifiable"][i]) == task.identifiable
            J = task.n_nodes
            assert np.array_equal(batch["adjacency"][i, :J, :J].numpy(), task.adjacency) and not batch["adjacency"][i, J:].any()
            assert batch["roles"][i].tolist() == task.roles.tolist() + [-1] * (batch["roles"].shape[1] - J)
            assert batch["node_mask"][i].sum() == J
            assert batch["covariate_nodes"][i].tolist() == task.covariate_nodes.tolist() + [-1] * (D - d)
    assert sorted(seen) == list(range(N_TASKS))  # drop_last=False: every task exactly once
    assert ragged_units and ragged_cov


def test_worker_batches_equal_in_process_batches_task_by_task(corpus):
    """Batches built in worker processes (shared-memory buffers) hold the same bytes per task."""
    def per_task(workers):
        out = {}
        stream = TaskStream(corpus, 4, seed=2, extras=("roles", "covariate_nodes", "x_scale"), drop_last=False)
        for b in TaskLoader(stream, num_workers=workers):
            for i, tid in enumerate(b["task_index"].tolist()):
                n, d, j = int(b["unit_mask"][i].sum()), int(b["feature_mask"][i].sum()), int((b["roles"][i] >= 0).sum())
                out[tid] = (b["x"][i, :n, :d].numpy().tobytes(), b["y"][i, :n].numpy().tobytes(), float(b["ate"][i]),
                            b["roles"][i, :j].tolist(), b["covariate_nodes"][i, :d].tolist(), b["x_scale"][i, :d].tolist())
        return out

    assert per_task(0) == per_task(2)


# ----------------------------------------------------------------------------- determinism


def test_same_seed_and_epoch_give_the_same_batches_and_epochs_reorder(corpus):
    make = lambda seed=0, **kw: TaskStream(corpus, 4, seed=seed, **kw)  # noqa: E731
    a, b = run(make()), run(make())
    assert a == b and len(a) == N_TASKS // 4
    w2 = run(make(), workers=2)
    assert w2 == run(make(), workers=2)
    assert sorted(ids(w2)) == sorted(ids(a)) == list(range(N_TASKS))
    # a plain DataLoader gives the same stream as TaskLoader
    assert [signature(x) for x in DataLoader(make(), batch_size=None, num_workers=2)] == w2
    later = make()
    later.set_epoch(1)
    e1 = run(later)
    assert sorted(ids(e1)) == sorted(ids(a)) and ids(e1) != ids(a)
    assert ids(run(make(seed=1))) != ids(a)


def test_plan_gives_ranks_and_workers_disjoint_tasks_and_equal_counts(corpus):
    stream = TaskStream(corpus, 3, seed=5, block_shards=2)
    lay = stream._layout
    for world, workers in ((1, 0), (2, 2), (3, 2), (4, 1)):
        plan = plan_epoch(lay, stream._batching, 5, 0, world, workers)
        counts = [plan.counts(r) for r in range(world)]
        assert len({c for per in counts for c in per}) == 1  # every worker of every rank: same count
        everything = [int(t) for r in range(world) for s in plan.slots[r] for b in s for t in b]
        assert len(everything) == len(set(everything))  # no task twice in an epoch
        assert N_TASKS - len(everything) < world * max(1, workers) * 3  # at most a partial batch per slot dropped
        assert all(len(b) == 3 for r in range(world) for b in plan.rank_order(r))
    # drop_last=False: every task exactly once, over any topology
    full = TaskStream(corpus, 5, seed=5, drop_last=False)
    plan = plan_epoch(full._layout, full._batching, 5, 3, 3, 2)
    assert sorted(int(t) for r in range(3) for b in plan.rank_order(r) for t in b) == list(range(N_TASKS))


def test_explicit_rank_streams_its_share_of_the_plan(corpus):
    got = [ids(run(TaskStream(corpus, 4, seed=9, rank=r, world_size=2), workers=2)) for r in range(2)]
    assert len(got[0]) == len(got[1]) and not set(got[0]) & set(got[1])
    plan = TaskStream(corpus, 4, seed=9, rank=0, world_size=2).plan(num_workers=2)
    assert got[1] == [int(t) for b in plan.rank_order(1) for t in b]


# ----------------------------------------------------------------------------- resume


@pytest.mark.parametrize("workers", [0, 2])
def test_resume_is_exact_at_several_points(corpus, workers):
    def make():
        s = TaskStream(corpus, 4, seed=11, bucket_by_size=True, subsample_units=64, block_shards=3)
        s.set_epoch(2)
        return s

    full = run(make(), workers)
    total = len(full)
    for k in (1, 5, total // 2 + 1, total - 1):
        first = make()
        head = []
        for batch in TaskLoader(first, num_workers=workers):
            head.append(signature(batch))
            if len(head) == k:
                break
        state = first.state_dict()
        assert state["batches_done"] == k and state["epoch"] == 2 and state["num_workers"] == workers
        state = json.loads(json.dumps(state))  # what a checkpoint stores
        second = TaskStream(corpus, 4, seed=11, bucket_by_size=True, subsample_units=64, block_shards=3)
        second.load_state_dict(state)
        second.set_epoch(2)  # what a training loop does first: keeps the position
        tail = run(second, workers)
        assert head + tail == full, f"resume after {k} of {total} batches"
        assert second.batches_done == total
        second.set_epoch(3)
        assert second.batches_done == 0


def test_resume_with_unequal_worker_counts_drop_last_false(corpus):
    # 41 tasks, batches of 4, 2 workers: 21 + 20 tasks -> 6 and 5 batches; worker 1 runs out first.
    make = lambda: TaskStream(corpus, 4, seed=4, drop_last=False, where={"task_index": ("<", 41)})  # noqa: E731
    assert make().plan(num_workers=2).counts(0) == [6, 5]
    full = run(make(), 2)
    assert sorted(ids(full)) == list(range(41))
    for k in (3, 9, 10):
        head = full[:k]
        second = make()
        second.load_state_dict(make().state_dict(batches_done=k) | {"num_workers": 2})
        assert head + run(second, 2) == full, k


def test_resume_point_matches_dataloader_round_robin():
    """Pure check of the resume arithmetic against a simulation of the DataLoader."""
    rng = np.random.default_rng(0)
    for _ in range(200):
        counts = rng.integers(0, 6, size=int(rng.integers(1, 5))).tolist()
        order = [(v, j) for j in range(max(counts)) for v in range(len(counts)) if j < counts[v]] if max(counts) else []
        for done in range(len(order) + 1):
            consumed, first = _resume_point(counts, done)
            assert consumed == [sum(1 for v2, _ in order[:done] if v2 == v) for v in range(len(counts))]
            # a fresh DataLoader asks physical worker 0 first; physical p plays slot (p + first) % V
            V = len(counts)
            phys = [[(v, j) for j in range(consumed[v], counts[v])] for v in [(p + first) % V for p in range(V)]]
            replay = [q[j] for j in range(max(map(len, phys))) for q in phys if j < len(q)] if any(phys) else []
            assert replay == order[done:], (counts, done)


def test_persistent_workers_follow_set_epoch_and_load_state_dict(corpus):
    make = lambda: TaskStream(corpus, 4, seed=6)  # noqa: E731
    ref = []
    for e in range(2):
        s = make()
        s.set_epoch(e)
        ref.append(run(s, 2))
    stream = make()
    loader = TaskLoader(stream, num_workers=2, persistent_workers=True)
    got = []
    for e in range(2):
        stream.set_epoch(e)
        got.append([signature(b) for b in loader])
    assert got == ref and ref[0] != ref[1]
    # same live workers, rewound to epoch 0 after 3 batches
    stream.load_state_dict(make().state_dict(batches_done=3) | {"num_workers": 2})
    assert [signature(b) for b in loader] == ref[0][3:]


def _late_second_worker(worker_id: int) -> None:
    if worker_id == 1:
        time.sleep(1.0)


def test_a_late_worker_starts_from_the_iteration_start_not_the_live_count(corpus):
    """Regression: worker 1 starting after worker 0's first batch was counted must not read the
    moved count (it used to skip a batch and duplicate another)."""
    ref = run(TaskStream(corpus, 4, seed=12), 2)
    stream = TaskStream(corpus, 4, seed=12)
    assert run(stream, 2, worker_init_fn=_late_second_worker) == ref
    stream.load_state_dict(stream.state_dict(batches_done=3) | {"num_workers": 2})
    assert run(stream, 2, worker_init_fn=_late_second_worker) == ref[3:]


@pytest.mark.parametrize("workers", [0, 2])
def test_epoch_boundaries_replay_live_but_not_after_a_finished_checkpoint(corpus, workers):
    stream = TaskStream(corpus, 4, seed=12, rank=1, world_size=2)
    first = run(stream, workers)
    assert run(stream, workers) == first  # iterating again without set_epoch replays the epoch
    state = stream.state_dict()
    assert state["batches_done"] == len(first)
    # A checkpoint taken after the last batch: the epoch is over, the loop moves on.
    resumed = TaskStream(corpus, 4, seed=12, rank=0, world_size=2)  # rank 0 may load rank 1's state
    resumed.load_state_dict(state)
    assert run(resumed, workers) == []
    resumed.set_epoch(1)
    nxt = TaskStream(corpus, 4, seed=12, rank=0, world_size=2)
    nxt.set_epoch(1)
    assert run(resumed, workers) == run(nxt, workers) != []


def test_resume_refuses_a_different_stream_or_worker_count(corpus):
    s = TaskStream(corpus, 4, seed=0)
    it = iter(TaskLoader(s, num_workers=2))
    next(it), next(it)
    state = s.state_dict()
    del it
    with pytest.raises(ValueError, match="fingerprint"):
        TaskStream(corpus, 3, seed=0).load_state_dict(state)
    with pytest.raises(ValueError, match="seed"):
        TaskStream(corpus, 4, seed=1).load_state_dict(state)
    with pytest.raises(ValueError, match="world_size"):
        TaskStream(corpus, 4, seed=0, rank=0, world_size=2).load_state_dict(state)
    other = TaskStream(corpus, 4, seed=0)
    other.load_state_dict(state)
    with pytest.raises(ValueError, match="num_workers=2"):
        next(iter(TaskLoader(other, num_workers=0)))


# ----------------------------------------------------------------------------- torchrun


@pytest.mark.timeout(300)
def test_two_ranks_under_torchrun_get_disjoint_tasks_and_equal_counts(corpus_path, tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env.pop("WORLD_SIZE", None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(HERE / "torchrun_stream_check.py"), str(corpus_path), str(tmp_path)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    recs = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert [r["rank"] for r in recs] == [0, 1] and all(r["world_size"] == 2 for r in recs)  # from torch.distributed
    for epoch in range(2):
        a, b = (r["epochs"][epoch] for r in recs)
        assert len(a) == len(b) == recs[0]["len"] > 0
        ta, tb = [i for x in a for i in x], [i for x in b for i in x]
        assert not set(ta) & set(tb) and len(set(ta)) == len(ta)
        assert len(ta) + len(tb) >= N_TASKS - 2 * 2 * 4  # at most a partial batch per (rank, worker)
    assert recs[0]["epochs"][0] != recs[0]["epochs"][1]
    for r in recs:
        assert r["resumed"] == r["epoch2"] and r["state"]["num_workers"] == 2 and r["state"]["world_size"] == 2
    assert recs[0]["weight"] == recs[1]["weight"]  # DDP stayed in step


def test_world_size_from_the_environment_without_a_process_group_is_refused(corpus, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    stream = TaskStream(corpus, 4, seed=0)
    with pytest.raises(RuntimeError, match="init_process_group"):
        next(iter(stream))
    assert TaskStream(corpus, 4, seed=0, rank=1, world_size=2).batches_per_epoch() == N_TASKS // 8


# ----------------------------------------------------------------------------- filters


def test_filters_on_manifest_columns_select_exactly_the_matching_tasks(corpus, tasks):
    cols = corpus.columns
    split = np.array([split_of(int(s)) for s in cols["seed"]])
    where = {"n_covariates": ("<=", 6), "identifiable": True, "graph_family": {"erdos_renyi"}}
    want = (split == "train") & (cols["n_covariates"] <= 6) & cols["identifiable"] & (cols["graph_family"] == "erdos_renyi")
    assert 0 < want.sum() < N_TASKS
    stream = TaskStream(corpus, 3, seed=0, split="train", where=where, drop_last=False)
    got = ids(run(stream, 2))
    assert sorted(got) == cols["task_index"][want].tolist()
    for tid in got:
        task = tasks[tid]
        assert split_of(task.meta["seed"]) == "train" and task.n_covariates <= 6 and task.identifiable
        assert task.meta["graph_family"] == "erdos_renyi"
    held_out = TaskStream(corpus, 3, seed=0, split=["validation", "test"], drop_last=False)
    assert sorted(ids(run(held_out))) == cols["task_index"][split != "train"].tolist()
    big = TaskStream(corpus, 3, seed=0, where=lambda c: c["n_units"] * c["n_covariates"] > 400, drop_last=False)
    assert sorted(ids(run(big))) == cols["task_index"][cols["n_units"] * cols["n_covariates"] > 400].tolist()
    with pytest.raises(ValueError, match="unknown column"):
        TaskStream(corpus, 3, seed=0, where={"colour": "red"})
    empty = TaskStream(corpus, 3, seed=0, where={"n_covariates": ("<", 0)}, drop_last=False)
    assert empty.num_tasks == 0 and run(empty, 2) == [] and empty.batches_per_epoch() == 0


def test_filters_plan_without_opening_shards(corpus_path, tmp_path):
    root = tmp_path / "c"
    shutil.copytree(corpus_path, root)
    for k in range(2, N_TASKS // SHARD):
        shutil.rmtree(root / "shards" / f"shard-{k:05d}.zarr")  # only shards 0 and 1 are left
    stream = TaskStream(open_corpus(root), 4, seed=0, where={"task_index": ("<", 2 * SHARD)})
    assert stream.plan_stats()["tasks_selected"] == 2 * SHARD  # planned from manifest.json alone
    assert sorted(ids(run(stream, 2))) == list(range(2 * SHARD))


# ----------------------------------------------------------------------------- batch shapes


def test_bucketing_raises_the_fill_ratio_and_the_unit_budget_holds(corpus):
    random_fill = TaskStream(corpus, 8, seed=0).plan_stats()["unit_fill"]
    bucketed = TaskStream(corpus, 8, seed=0, bucket_by_size=True)
    stats = bucketed.plan_stats()
    assert stats["unit_fill"] > random_fill + 0.1
    real = padded = 0
    for b in bucketed:
        real += int(b["unit_mask"].sum())
        padded += b["unit_mask"].numel()
    assert real / padded == pytest.approx(stats["unit_fill"])  # the reported ratio is what is delivered
    budget = 300
    capped = TaskStream(corpus, 8, seed=0, bucket_by_size=True, max_units_per_batch=budget, drop_last=False)
    sizes = []
    for b in capped:
        B, N = b["unit_mask"].shape
        assert B * N <= budget or B == 1
        sizes.append(B)
    assert len(set(sizes)) > 1 and max(sizes) <= 8
    assert sum(sizes) == N_TASKS


def test_subsampling_gives_a_fixed_n_of_real_units(corpus, tasks):
    n_sub = 50
    def per_task(workers, epoch):
        s = TaskStream(corpus, 4, seed=3, subsample_units=n_sub, standardize=False, drop_last=False)
        s.set_epoch(epoch)
        out = {}
        for b in TaskLoader(s, num_workers=workers):
            assert b["x"].shape[1] == n_sub
            for i, tid in enumerate(b["task_index"].tolist()):
                n, d = int(b["unit_mask"][i].sum()), int(b["feature_mask"][i].sum())
                out[tid] = (n, b["x"][i, :n, :d].numpy().copy(), b["y"][i, :n].numpy().copy())
        return out

    e0 = per_task(0, 0)
    for tid, (n, x, y) in e0.items():
        task = tasks[tid]
        assert n == min(task.n_units, n_sub)
        d = task.n_covariates
        rows = {r.tobytes(): k for k, r in enumerate(task.x)}
        picked = [rows[r.tobytes()] for r in x[:, :d]]  # every unit is a real unit of the task ...
        assert len(set(picked)) == n  # ... drawn without replacement
        assert np.array_equal(y, task.y[picked])
    e0_workers = per_task(2, 0)
    assert all(np.array_equal(e0[t][1], e0_workers[t][1]) for t in e0)  # independent of the worker count
    e1 = per_task(0, 1)
    changed = sum(not np.array_equal(e0[t][1], e1[t][1]) for t in e0)
    assert changed >= sum(1 for t in e0 if tasks[t].n_units > n_sub) // 2  # fresh units each epoch


# ----------------------------------------------------------------------------- reading


class SpyCorpus(Corpus):
    """Records which shards are read, and when."""

    def __init__(self, base: Corpus):
        super().__init__(base.root, base.manifest, cache_shards=0)
        self.reads: list[int] = []

    def read_shard(self, pos, *, verify=False):
        self.reads.append(pos)
        return super().read_shard(pos, verify=verify)


def test_next_shards_are_prefetched_while_the_consumer_works(corpus):
    def reads_after_first_batch(prefetch):
        spy = SpyCorpus(corpus)
        stream = TaskStream(spy, SHARD, seed=0, shuffle=False, block_shards=1, prefetch_shards=prefetch)
        it = iter(stream)
        next(it)  # one batch = one shard
        deadline = time.monotonic() + 5
        while len(spy.reads) < 1 + prefetch and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.2)
        return list(spy.reads), it

    reads, it = reads_after_first_batch(2)
    assert reads == [0, 1, 2]  # the next two shards, in plan order, before they are asked for
    assert len(list(it)) == N_TASKS // SHARD - 1
    assert reads_after_first_batch(0)[0] == [0]


def test_remote_corpus_through_fsspec(corpus_path, corpus):
    import fsspec

    fs = fsspec.filesystem("memory")
    url = "memory://cina-test-data/corpus"
    fs.put(str(corpus_path), url, recursive=True)
    try:
        remote = open_corpus(url)
        make = lambda c: TaskStream(c, 4, seed=8, prefetch_shards=2)  # noqa: E731
        assert run(make(remote)) == run(make(corpus))
    finally:
        fs.rm("/cina-test-data", recursive=True)


def test_a_published_repository_streams_the_same_tasks(corpus_path, tasks, tmp_path):
    """open_corpus hands a published repository (here its local folder; hf:// reads the same way)
    to causalgen.hub; the stream plans on its columns and reads its packed shards."""
    from causalgen.hub.publish import publish

    publish(str(corpus_path), str(tmp_path / "repo"), shard_size=10)
    stream = TaskStream(str(tmp_path / "repo"), 4, seed=0, split="validation", drop_last=False, extras=("y0",))
    want = [i for i, t in enumerate(tasks) if split_of(t.meta["seed"]) == "validation"]
    got = {}
    for b in TaskLoader(stream, num_workers=2):
        for i, tid in enumerate(b["task_index"].tolist()):
            n = int(b["unit_mask"][i].sum())
            got[tid] = b["y0"][i, :n].numpy() * float(b["y_scale"][i]) + float(b["y_loc"][i])
    assert sorted(got) == want
    for tid, y0 in got.items():
        np.testing.assert_allclose(y0, tasks[tid].y0, atol=1e-4)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("workers", [0, 2])
def test_a_corrupt_shard_raises_an_error_naming_it(corpus_path, tmp_path, workers):
    root = tmp_path / "c"
    shutil.copytree(corpus_path, root)
    chunk = root / "shards" / "shard-00003.zarr" / "x_values" / "c" / "0"
    data = bytearray(chunk.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 16] = bytes(16)  # the chunk's crc32c no longer matches
    chunk.write_bytes(bytes(data))
    with pytest.raises(ShardReadError, match="shard-00003"):
        run(TaskStream(open_corpus(root), 4, seed=0), workers)
    shutil.rmtree(root / "shards" / "shard-00003.zarr")
    shutil.copytree(corpus_path / "shards" / "shard-00003.zarr", root / "shards" / "shard-00003.zarr")
    shutil.rmtree(root / "shards" / "shard-00005.zarr")
    with pytest.raises(ShardReadError, match="shard-00005"):
        run(TaskStream(open_corpus(root), 4, seed=0), workers)


def test_argument_errors(corpus):
    with pytest.raises(ValueError, match="batch_size"):
        TaskStream(corpus, 0, seed=0)
    with pytest.raises(ValueError, match="seed"):
        TaskStream(corpus, 4, seed=-1)
    with pytest.raises(ValueError, match="extras"):
        TaskStream(corpus, 4, seed=0, extras=("colour",))
    with pytest.raises(ValueError, match="no full batch"):
        TaskStream(corpus, 64, seed=0).batches_per_epoch(num_workers=2)
    with pytest.raises(ValueError, match="split"):
        TaskStream(corpus, 4, seed=0, split="training")
