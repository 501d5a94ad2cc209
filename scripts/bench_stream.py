"""Benchmark `cina.data.TaskStream`: tasks/s delivered as padded batches vs the raw shard read.

In one run, on the same corpus and the same (warm) page cache:

* raw: ``corpus.read_shard(pos)`` for every shard in one process, nothing else. Reading whole
  shards is what the stream does too, so this is the upper bound of a single reader.
* stream: a full epoch of `TaskLoader(TaskStream(...), num_workers=W)` for W = 0, 1, 2,
  timed from creating the iterator (worker start-up included) to the last batch, with every
  batch's tensors touched in the training process.

Each config runs in interleaved rounds and the best round counts; tasks per CPU-second (this
process plus its reaped DataLoader workers) is reported next to the wall-clock rate because it
does not depend on what else runs on the machine. It also reports the padding fill ratio (real
/ padded units and x entries, from the epoch plan) without and with size bucketing, and with a
max-units-per-batch budget. Target: >= 70% of the raw read rate with 2 workers, and more
tasks/s than a CInA training step consumes.

No GPU is used: the step rate of an H200 is an assumption passed as ``--gpu-step-ms``
(see the printed note). Example::

    .venv/bin/python scripts/bench_stream.py                       # generates a default-preset corpus
    .venv/bin/python scripts/bench_stream.py --corpus /data/corpus --batch-size 32
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import sys
import time
import warnings

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import torch  # noqa: E402

from causalgen import open_corpus  # noqa: E402
from cina.data import TaskLoader, TaskStream  # noqa: E402


def ensure_corpus(args) -> str:
    """An existing corpus, or a default-preset one generated (once) under --workdir."""
    if args.corpus:
        return args.corpus
    import causalgen
    from causalgen.store.generate import CorpusSpec, generate_corpus

    out = os.path.join(args.workdir, f"default-{args.num_tasks}-{args.shard_size}")
    try:
        open_corpus(out)  # complete from an earlier run: reuse it whatever causalgen's defaults are now
        return out
    except Exception:
        pass
    spec = CorpusSpec(config=causalgen.load_config("default").to_dict(), seed=0, num_tasks=args.num_tasks, shard_size=args.shard_size)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # overflow in sigmoid tails of the sampler
        generate_corpus(spec, out, workers=args.gen_workers, progress=False, overwrite=True)
    print(f"corpus ready in {time.perf_counter() - t0:.1f}s: {out}", flush=True)
    return out


def cpu_seconds() -> float:
    """CPU time of this process and of its reaped children (DataLoader workers are joined at
    the end of an epoch), so a run's CPU cost counts the workers too."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def raw_read(corpus) -> tuple[float, int]:
    t0 = time.perf_counter()
    tasks = sum(len(corpus.read_shard(pos)) for pos in range(len(corpus.manifest.shards)))
    return time.perf_counter() - t0, tasks


def stream_epoch(corpus, workers: int, args, epoch: int, **kw) -> tuple[float, int]:
    stream = TaskStream(corpus, args.batch_size, seed=0, block_shards=args.block_shards, **kw)
    stream.set_epoch(epoch)
    loader = TaskLoader(stream, num_workers=workers)
    t0 = time.perf_counter()
    tasks = 0
    for batch in loader:
        # Touch the payload in the training process, as a host-to-device copy would.
        tasks += int(batch["unit_mask"].shape[0])
        float(batch["x"].sum())
    return time.perf_counter() - t0, tasks


def interleaved(configs: dict, repeats: int) -> tuple[dict, dict]:
    """Best wall-clock tasks/s and best tasks per CPU-second of each config over `repeats`
    rounds, configs interleaved within a round so that load from other processes on these
    shared cores hits them all alike. CPU cost is the contention-proof measure of overhead."""
    rates: dict = {name: [] for name in configs}
    per_cpu: dict = {name: [] for name in configs}
    for r in range(repeats):
        for name, fn in configs.items():
            c0 = cpu_seconds()
            seconds, tasks = fn(r)
            rates[name].append(tasks / seconds)
            per_cpu[name].append(tasks / max(cpu_seconds() - c0, 1e-9))
    return {n: max(v) for n, v in rates.items()}, {n: max(v) for n, v in per_cpu.items()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", help="existing corpus path/URL (default: generate one under --workdir)")
    ap.add_argument("--workdir", default=os.path.join(os.environ.get("TMPDIR", "/tmp"), "cina_bench_stream"))
    ap.add_argument("--num-tasks", type=int, default=3072)
    ap.add_argument("--shard-size", type=int, default=64)
    ap.add_argument("--gen-workers", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--block-shards", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--max-units", type=int, default=16384, help="budget (B * N) for the fill-ratio line")
    ap.add_argument("--gpu-step-ms", type=float, default=20.0, help="assumed H200 step time for one batch")
    ap.add_argument("--json", help="also write the numbers here")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)

    corpus = open_corpus(ensure_corpus(args))
    m = corpus.manifest
    cols = corpus.columns
    print(
        f"{len(corpus)} tasks in {len(m.shards)} shards ({m.bytes / 2**20:.1f} MiB, {m.shard_format}/{m.compression}); "
        f"units {cols['n_units'].min()}-{cols['n_units'].max()}, covariates {cols['n_covariates'].min()}-{cols['n_covariates'].max()}; "
        f"batch_size {args.batch_size}, {os.cpu_count()} CPUs",
        flush=True,
    )
    raw_read(corpus)  # warm the page cache and imports for everyone
    results: dict = {"tasks": len(corpus), "shards": len(m.shards), "batch_size": args.batch_size, "cpus": os.cpu_count()}

    w_b = max(args.workers)
    configs = {"raw": lambda r: raw_read(corpus)}
    for w in args.workers:
        configs[w] = lambda r, w=w: stream_epoch(corpus, w, args, epoch=r)
    configs["bucketed"] = lambda r: stream_epoch(corpus, w_b, args, epoch=r, bucket_by_size=True)
    rates, per_cpu = interleaved(configs, args.repeats)
    raw = rates["raw"]
    results["raw_tasks_per_s"] = raw
    results["stream_tasks_per_s"] = {w: rates[w] for w in args.workers}
    results["stream_bucketed_tasks_per_s"] = rates["bucketed"]
    results["tasks_per_cpu_s"] = per_cpu
    load = os.getloadavg()[0]
    print(f"load average {load:.1f} on {os.cpu_count()} CPUs; best of {args.repeats} interleaved rounds")
    print(f"{'':34s} {'tasks/s':>8s} {'of raw':>7s} {'tasks/CPU-s':>12s} {'of raw':>7s}")
    rows = [("raw whole-shard read, 1 process", "raw")] + [(f"stream, {w} workers", w) for w in args.workers]
    rows.append((f"stream, {w_b} workers, bucketed", "bucketed"))
    for label, key in rows:
        print(f"{label:34s} {rates[key]:8.0f} {100 * rates[key] / raw:6.0f}% {per_cpu[key]:12.0f} {100 * per_cpu[key] / per_cpu['raw']:6.0f}%")

    fills = {}
    for name, kw in (
        ("random", {}),
        ("bucketed", {"bucket_by_size": True}),
        (f"bucketed, max_units {args.max_units}", {"bucket_by_size": True, "max_units_per_batch": args.max_units}),
    ):
        stats = TaskStream(corpus, args.batch_size, seed=0, block_shards=args.block_shards, **kw).plan_stats(num_workers=w_b)
        fills[name] = stats
        print(
            f"fill ratio, {name:28s}: units {stats['unit_fill']:.2f}, x entries {stats['element_fill']:.2f} "
            f"(mean batch {stats['mean_batch_size']:.1f} tasks, {stats['tasks_dropped']} of {stats['tasks_selected']} tasks not in a full batch)"
        )
    results["fill"] = fills

    need = args.batch_size / (args.gpu_step_ms / 1000)
    best_rate = max(results["stream_tasks_per_s"].values())
    # A worker keeps about one core busy, so its rate on an idle host is about the stream's
    # tasks per CPU-second (contention-proof, unlike the wall-clock rates above).
    per_worker = per_cpu[w_b]
    workers_needed = max(1, math.ceil(need / per_worker))
    results["gpu_assumption"] = {"step_ms": args.gpu_step_ms, "tasks_per_s_needed": need, "workers_needed": workers_needed}
    print(
        f"\nGPU: none measured. Assumed H200 step {args.gpu_step_ms:.0f} ms per batch of {args.batch_size} "
        f"(CInA default d_model 128, 4+2 layers, N <= 1000 units) -> {need:.0f} tasks/s needed. "
        f"Best here {best_rate:.0f} tasks/s on {os.cpu_count()} shared cores; ~{per_worker:.0f} tasks/s per busy worker "
        f"-> about {workers_needed} worker(s) (of the GPU host's 16 cores) keep up."
    )
    if 2 in results["stream_tasks_per_s"]:
        ratio = results["stream_tasks_per_s"][2] / raw
        print(f"target >= 70% of raw with 2 workers: {100 * ratio:.0f}% -> {'met' if ratio >= 0.7 else 'NOT met'}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=2, default=str)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
