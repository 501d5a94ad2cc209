"""Training-step throughput of CInA: tasks/s, ms per optimiser step and peak GPU memory.

    python scripts/bench_train.py --corpus CORPUS [--device auto] [--batch-sizes 16,64,256]
        [--units 256,1024] [--modes fp32,bf16,bf16+compile] [--steps 20] [--json OUT.json]

Each row times full optimiser steps (forward, backward, gradient clipping, fused AdamW on a GPU)
of the model in ``--config`` on real batches from the corpus' train split, collated by the
`TaskStream` with ``subsample_units`` units per dataset and copied to the device beforehand, so
the loader is not timed (the streaming benchmark, `scripts/bench_stream.py`, times that side).
The first row of each size, ``fp32`` eager, is the baseline the others are compared with in the
same run. ``+compile`` rows exclude compilation (it happens in the warm-up steps) and report it
separately. On CPU, compile modes are skipped unless ``--modes`` names them.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent


def _batches(corpus, batch_size: int, units: int, count: int, device: torch.device) -> list[dict[str, torch.Tensor]]:
    from cina.data import TaskStream

    stream = TaskStream(corpus, batch_size, seed=0, split="train", subsample_units=units, extras=(), drop_last=True)
    out = []
    for batch in stream:
        # clone: the stream may reuse its buffers for the next batch
        out.append({k: v.clone().to(device) for k, v in batch.items()})
        if len(out) == count:
            break
    if not out:
        raise SystemExit(f"the corpus' train split has fewer than {batch_size} tasks")
    # a small corpus is cycled: the step time does not depend on which batch it is
    return [out[i % len(out)] for i in range(count)]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(model_cfg: dict, batches, device, mode: str, warmup: int) -> dict:
    """Median ms per optimiser step over ``batches[warmup:]`` (each used once)."""
    from cina.core.model import CInA, CInAConfig

    torch.manual_seed(0)
    model = CInA(CInAConfig.from_dict(model_cfg)).to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device.type == "cuda")
    bf16 = mode.startswith("bf16")
    step_model = torch.compile(model) if mode.endswith("+compile") else model
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times, losses = [], []
    start_all = time.perf_counter()
    for i, batch in enumerate(batches):
        _sync(device)
        start = time.perf_counter()
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=bf16):
            out = step_model(batch)
        opt.zero_grad(set_to_none=True)
        out["loss"].backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        _sync(device)
        if i == warmup - 1:
            warm_s = time.perf_counter() - start_all
        if i >= warmup:
            times.append(time.perf_counter() - start)
            losses.append(float(out["loss"].detach()))
    ms = 1000 * statistics.median(times)
    tasks = batches[0]["x"].shape[0]
    row = {"mode": mode, "ms_per_step": ms, "tasks_per_s": tasks / ms * 1000, "warmup_s": warm_s,
           "finite_loss": all(map(math.isfinite, losses))}
    if device.type == "cuda":
        row["peak_gpu_mem_gb"] = torch.cuda.max_memory_allocated(device) / 2**30
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", required=True, help="corpus directory (its train split gives the batches)")
    ap.add_argument("--config", default=str(ROOT / "scripts/configs/default_model.json"),
                    help="train config whose 'model' section is timed (default: the shipped model's)")
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--batch-sizes", default="16,64,256")
    ap.add_argument("--units", default="256,1024", help="units per dataset (subsample_units)")
    ap.add_argument("--modes", default=None, help="fp32, bf16, bf16+compile, fp32+compile "
                    "(default: fp32,bf16,bf16+compile on a GPU, fp32 on CPU)")
    ap.add_argument("--steps", type=int, default=20, help="timed steps per row")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--json", help="also write the rows to this JSON file")
    args = ap.parse_args()

    from causalgen import open_corpus

    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    modes = (args.modes or ("fp32,bf16,bf16+compile" if device.type == "cuda" else "fp32")).split(",")
    model_cfg = json.loads(Path(args.config).read_text())["model"]
    corpus = open_corpus(args.corpus)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"device: {name}; torch {torch.__version__}; model {model_cfg}", flush=True)
    rows = []
    for units in map(int, args.units.split(",")):
        for bs in map(int, args.batch_sizes.split(",")):
            batches = _batches(corpus, bs, units, args.warmup + args.steps, device)
            base = None
            for mode in modes:
                try:
                    r = time_steps(model_cfg, batches, device, mode, args.warmup)
                except Exception as exc:  # report and go on: one failing mode should not hide the others
                    r = {"mode": mode, "error": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"}
                r.update(units=units, batch_size=bs)
                if "ms_per_step" in r:
                    base = base or r["ms_per_step"]
                    r["speedup_vs_first"] = base / r["ms_per_step"]
                rows.append(r)
                if "error" in r:
                    print(f"  units {units:5d} batch {bs:4d} {mode:14s} FAILED {r['error']}", flush=True)
                else:
                    mem = f"  {r['peak_gpu_mem_gb']:6.2f} GB" if "peak_gpu_mem_gb" in r else ""
                    print(f"  units {units:5d} batch {bs:4d} {mode:14s} {r['ms_per_step']:8.1f} ms/step "
                          f"{r['tasks_per_s']:9.0f} tasks/s  x{r['speedup_vs_first']:.2f}{mem}"
                          f"  (warm-up {r['warmup_s']:.1f} s)", flush=True)
            del batches
            if device.type == "cuda":
                torch.cuda.empty_cache()
    if args.json:
        Path(args.json).write_text(json.dumps({"device": name, "torch": torch.__version__, "rows": rows}, indent=1))


if __name__ == "__main__":
    sys.exit(main())
