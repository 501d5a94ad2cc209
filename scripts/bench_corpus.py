"""Corpus storage benchmark: write and whole-shard read throughput vs raw .npy files.

Measures storage only: the tasks are drawn directly with numpy (shapes and
dtypes of real tasks: x (N, d) float32, t int8, y/y0/y1/propensity float32,
a (J, J) bool adjacency, roles, covariate nodes, a small meta dict), so the
sampler's speed does not enter. One process, library threads pinned to 1.

Compared in the same run, on the same arrays:
  corpus-*   causalgen shards (flatten + zarr v3 encode + sha256 + atomic
             write, plus the manifest), for each compression and for zips;
  npy-task   one .npy file per array per task (what "dump every dataset as
             .npy" produces: 9 files per task);
  npy-shard  one .npy file per concatenated array per shard (no offsets,
             no checksums, no compression: a lower bound on write time).

Reads: ours = `Corpus.iter_shards()` turning every shard into `Task` objects
(meta JSON decoded); npy-task = np.load of each file; npy-shard = np.load of
the concatenated arrays plus the same numpy slicing. Reads come from a warm
page cache (the files were just written; dropping caches needs root).

    python scripts/bench_corpus.py                    # 10,000 tasks of 1000 x 10
    python scripts/bench_corpus.py --tasks 2000 --quick
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from causalgen.store import shard as shardfmt  # noqa: E402
from causalgen import open_corpus  # noqa: E402
from causalgen.store.generate import limit_threads  # noqa: E402
from causalgen.store.manifest import Manifest, ShardRecord, shard_name, summarise, task_seed  # noqa: E402
from causalgen.prior.task import Role, Task  # noqa: E402

ARRAYS = ("x", "t", "y", "y0", "y1", "propensity", "adjacency", "roles", "covariate_nodes")


def make_tasks(n_tasks: int, n_units: int, d: int, seed: int = 0) -> list[Task]:
    """Random tasks with real shapes/dtypes; continuous floats (compress like real data)."""
    rng = np.random.default_rng(seed)
    j = d + 3
    roles = np.zeros(j, np.int8)
    roles[d] = Role.HIDDEN_CONFOUNDER
    roles[-2], roles[-1] = Role.TREATMENT, Role.OUTCOME
    tasks = []
    for i in range(n_tasks):
        e = rng.random(n_units, dtype=np.float32)
        t = (rng.random(n_units, dtype=np.float32) < e).astype(np.int8)
        y0 = rng.standard_normal(n_units, dtype=np.float32)
        y1 = y0 + np.float32(0.5) + np.float32(0.1) * rng.standard_normal(n_units, dtype=np.float32)
        tasks.append(Task(
            x=rng.standard_normal((n_units, d), dtype=np.float32), t=t, y=np.where(t == 1, y1, y0), y0=y0, y1=y1,
            propensity=e, ate=0.5, ate_se=0.0, sate=float((y1 - y0).mean()), att=float((y1 - y0)[t == 1].mean()),
            adjacency=np.triu(rng.random((j, j)) < 0.3, 1), roles=roles.copy(),
            covariate_nodes=np.arange(d, dtype=np.int32), identifiable=True,
            meta={"seed": task_seed(0, i), "graph_family": "erdos_renyi", "mechanism": "linear", "qc_rejections": {}},
        ))
    return tasks


def payload_bytes(tasks) -> int:
    return sum(getattr(t, a).nbytes for t in tasks for a in ARRAYS)


def dir_stats(root: Path) -> tuple[int, int]:
    files = [p for p in root.rglob("*") if p.is_file()]
    return len(files), sum(p.stat().st_size for p in files)


def write_corpus(tasks, root: Path, shard_size: int, compression: str, shard_format: str) -> None:
    """What `generate` does per shard, minus sampling: flatten, encode, summarise, write, manifest."""
    root.mkdir(parents=True)
    (root / "shards").mkdir()
    records = []
    for k in range(0, len(tasks), shard_size):
        chunk = tasks[k:k + shard_size]
        idx = range(k, k + len(chunk))
        seeds = [t.meta["seed"] for t in chunk]
        cols = shardfmt.flatten_tasks(chunk, idx, seeds)
        files = shardfmt.encode_columns(cols, shard_index=k // shard_size, first_task=k, compression=compression)
        summary, rej = summarise(cols, [t.meta for t in chunk])
        rel = shard_name(k // shard_size, shard_format)
        w = shardfmt.write_shard(files, str(root / rel))
        records.append(ShardRecord(k // shard_size, rel, k, len(chunk), w.files, w.bytes, w.sha256, rej, summary))
    m = Manifest(config={"name": "bench"}, corpus_seed=0, num_tasks=len(tasks), shard_size=shard_size,
                 shard_format=shard_format, compression=compression, shards=tuple(records))
    (root / "manifest.json").write_text(m.to_json())


def read_corpus(root: Path) -> int:
    n = 0
    for data in open_corpus(root).iter_shards():
        for task in data:
            n += task.n_units > 0
    return n


def write_npy_task(tasks, root: Path) -> None:
    root.mkdir(parents=True)
    for i, t in enumerate(tasks):
        d = root / f"{i:06d}"
        d.mkdir()
        for a in ARRAYS:
            np.save(d / f"{a}.npy", getattr(t, a))
        (d / "meta.json").write_text(json.dumps(t.meta))


def read_npy_task(root: Path, n_tasks: int) -> int:
    n = 0
    for i in range(n_tasks):
        d = root / f"{i:06d}"
        arrays = {a: np.load(d / f"{a}.npy") for a in ARRAYS}
        json.loads((d / "meta.json").read_text())
        n += arrays["x"].shape[0] > 0
    return n


def write_npy_shard(tasks, root: Path, shard_size: int) -> None:
    root.mkdir(parents=True)
    for k in range(0, len(tasks), shard_size):
        chunk = tasks[k:k + shard_size]
        d = root / f"shard-{k // shard_size:05d}"
        d.mkdir()
        for a in ARRAYS:
            np.save(d / f"{a}.npy", np.concatenate([getattr(t, a).reshape(-1) for t in chunk]))
        np.save(d / "shapes.npy", np.array([(t.n_units, t.n_covariates, t.n_nodes) for t in chunk], dtype=np.int64))


def read_npy_shard(root: Path) -> int:
    n = 0
    for d in sorted(root.iterdir()):
        arrays = {a: np.load(d / f"{a}.npy") for a in ARRAYS}
        shapes = np.load(d / "shapes.npy")
        uo = np.concatenate([[0], np.cumsum(shapes[:, 0])])
        xo = np.concatenate([[0], np.cumsum(shapes[:, 0] * shapes[:, 1])])
        for j, (nu, nc, _) in enumerate(shapes):
            x = arrays["x"][xo[j]:xo[j + 1]].reshape(nu, nc)
            y = arrays["y"][uo[j]:uo[j + 1]]
            n += x.shape[0] == y.shape[0]
    return n


def timed(fn, *args) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process, all threads).

    CPU time is the fairer "one core" figure on a shared machine: it does not
    count the time other jobs hold the core (it does not count I/O waits either).
    """
    t0, c0 = time.perf_counter(), time.process_time()
    fn(*args)
    return time.perf_counter() - t0, time.process_time() - c0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", type=int, default=10_000)
    ap.add_argument("--units", type=int, default=1000)
    ap.add_argument("--covariates", type=int, default=10)
    ap.add_argument("--shard-size", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=2, help="best of this many runs per variant")
    ap.add_argument("--quick", action="store_true", help="only the default corpus variant and the npy baselines")
    ap.add_argument("--dir", default=None, help="scratch directory (default: a temp dir, removed afterwards)")
    args = ap.parse_args()

    limit_threads()
    tasks = make_tasks(args.tasks, args.units, args.covariates)
    raw = payload_bytes(tasks)
    mb = raw / 1e6
    print(f"{args.tasks} tasks of {args.units} x {args.covariates}, shards of {args.shard_size}; payload {mb:.1f} MB "
          f"({raw / args.tasks / 1e3:.1f} KB/task); 1 process, 1 thread per library")
    variants = [("corpus-dir-none (default)", "none", "dir")]
    if not args.quick:
        variants += [("corpus-dir-blosc", "blosc", "dir"), ("corpus-dir-zstd", "zstd", "dir"), ("corpus-zip-none", "none", "zip")]
    scratch = Path(args.dir or tempfile.mkdtemp(prefix="bench_corpus_"))
    rows = []
    try:
        def run(name, write, read):
            w_best, r_best = (float("inf"),) * 2, (float("inf"),) * 2
            for rep in range(args.repeats):
                root = scratch / f"{name.split()[0]}-{rep}"
                shutil.rmtree(root, ignore_errors=True)
                w_best = min(w_best, timed(write, root))
                r_best = min(r_best, timed(read, root))
                files, size = dir_stats(root)
                if rep < args.repeats - 1:
                    shutil.rmtree(root)
            shutil.rmtree(root)
            rows.append((name, w_best, r_best, files, size))
            print(f"  {name:<28} write {w_best[0]:6.2f} s ({w_best[1]:6.2f} CPU s)  read {r_best[0]:6.2f} s ({r_best[1]:6.2f} CPU s)"
                  f"  {files:>6} files  {size / 1e6:7.1f} MB", flush=True)

        run("npy-task (9 files/task)", lambda r: write_npy_task(tasks, r), lambda r: read_npy_task(r, args.tasks))
        run("npy-shard (concatenated)", lambda r: write_npy_shard(tasks, r, args.shard_size), read_npy_shard)
        for name, comp, fmt in variants:
            run(name, lambda r, c=comp, f=fmt: write_corpus(tasks, r, args.shard_size, c, f), read_corpus)
    finally:
        if args.dir is None:
            shutil.rmtree(scratch, ignore_errors=True)

    base_task = next(r for r in rows if r[0].startswith("npy-task"))
    base_shard = next(r for r in rows if r[0].startswith("npy-shard"))
    print()
    print("| storage | write MB/s | write tasks/s | write time vs npy-task | vs npy-shard | read tasks/s | read MB/s "
          "| read tasks per CPU-s | files | MB on disk |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, (w, _), (r, rc), files, size in rows:
        print(f"| {name} | {mb / w:.0f} | {args.tasks / w:,.0f} | {w / base_task[1][0]:.2f}x | {w / base_shard[1][0]:.2f}x | "
              f"{args.tasks / r:,.0f} | {mb / r:.0f} | {args.tasks / rc:,.0f} | {files:,} | {size / 1e6:.1f} |")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"\n{os.cpu_count()} CPUs, load average {load:.1f} at the end (a loaded machine slows every row alike).")
    print("\nMB/s are payload MB (uncompressed arrays) per second; best of", args.repeats, "runs; warm page cache for reads.")


if __name__ == "__main__":
    main()
