"""The main job end to end on a small default, through the real command-line tools:

    generate a corpus -> verify -> publish a local Hugging Face dataset folder and load it back
    -> pretrain CInA from the published shards -> zero-shot estimates on held-out tasks
    (and IHDP when the benchmark folder is present) -> summary table

    python scripts/quickstart.py [--out quickstart] [--size small|tiny] [--benchmarks DIR]

`--size small` (the README default) took 80 s on 2 CPU cores (after set-up); `--size tiny`
is the CI smoke run. Every stage is resumable: re-running skips finished work.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SIZES = {
    #        tasks  shard  steps  eval tasks  ihdp reps  units (train)
    "small": dict(num_tasks=600, shard_size=100, max_steps=300, n_eval=30, ihdp=100, subsample_units=128),
    "tiny": dict(num_tasks=48, shard_size=16, max_steps=4, n_eval=3, ihdp=3, subsample_units=32),
}


def run(cmd: list[str], title: str) -> None:
    print(f"\n=== {title}\n$ {' '.join(cmd)}", flush=True)
    start = time.perf_counter()
    subprocess.run(cmd, check=True)
    print(f"({time.perf_counter() - start:.1f} s)", flush=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="quickstart", help="working folder (default: ./quickstart)")
    ap.add_argument("--size", choices=sorted(SIZES), default="small")
    ap.add_argument("--benchmarks", help="benchmark data folder (default: $CINA_BENCHMARKS or ../shared/benchmarks)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    size = SIZES[args.size]
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    py = sys.executable
    t0 = time.perf_counter()
    corpus, repo, run_dir, eval_dir = out / "corpus", out / "hf_dataset", out / "run", out / "eval"

    config = out / "corpus_config.yaml"
    config.write_text("preset: default\nn_units: [100, 400]\n")
    run([py, "-m", "causalgen.cli", "generate", "--config", str(config), "--num-tasks", str(size["num_tasks"]),
         "--shard-size", str(size["shard_size"]), "--seed", str(args.seed), "--workers", "2", "--out", str(corpus)],
        "1. generate a corpus (resumes if interrupted)")
    run([py, "-m", "causalgen.cli", "verify", str(corpus)], "2. verify checksums, structure and values")
    run([py, "-m", "causalgen.cli", "inspect", str(corpus)], "   corpus summary")
    if not (repo / "README.md").exists():
        run([py, "-m", "causalgen.cli", "publish", str(corpus), "--repo-dir", str(repo), "--repo-id", "causalgen/quickstart"],
            "3. publish as a Hugging Face dataset folder (the upload itself needs --push and a token)")

    print("\n=== 4. load the published dataset back with `datasets` (offline)", flush=True)
    import datasets

    import causalgen

    ds = datasets.load_dataset(str(repo))
    published = causalgen.open_corpus(repo)
    print({split: d.num_rows for split, d in ds.items()}, f"= {len(published)} tasks in the published zarr shards")
    assert sum(d.num_rows for d in ds.values()) == len(published) == size["num_tasks"]

    train_cfg = out / "train_config.json"
    train_cfg.write_text(json.dumps({
        "max_steps": size["max_steps"], "batch_size": 16, "warmup_steps": max(1, size["max_steps"] // 10),
        "eval_every": max(1, size["max_steps"] // 5), "ckpt_every": max(1, size["max_steps"] // 5),
        "subsample_units": size["subsample_units"], "eval_tasks": 64, "lr": 1e-3,
    }))
    run([py, "-m", "cina.cli", "train", "--corpus", str(repo), "--out", str(run_dir), "--config", str(train_cfg)],
        "5. pretrain CInA from the published shards (self-supervised; resumes from checkpoints)")

    estimators = ["dim", "ipw", "snipw", "or", "svm", "cina-zs"]
    run([py, "-m", "cina.cli", "evaluate", "--model", str(run_dir), "--suite", "synthetic", "--corpus", str(corpus),
         "--n-synthetic", str(size["n_eval"]), "--out", str(eval_dir), "--estimators", *estimators, "--quiet"],
        "6. zero-shot estimates on held-out (test-split) tasks and shifted tasks")
    from cina.eval.benchmarks import resolve_data_dir

    try:
        bench = resolve_data_dir(args.benchmarks)
    except Exception:
        bench = None
    if bench is not None and (Path(bench) / "ihdp").exists():
        run([py, "-m", "cina.cli", "evaluate", "--model", str(run_dir), "--suite", "ihdp", "--data-dir", str(bench),
             "--limit", str(size["ihdp"]), "--out", str(eval_dir), "--estimators", *estimators, "--quiet"],
            f"   IHDP, first {size['ihdp']} replications")
    else:
        print("\n(no benchmark folder found: skipping IHDP; pass --benchmarks DIR)")

    print(f"\n=== summary ({time.perf_counter() - t0:.0f} s in all)\n")
    print((eval_dir / "summary.md").read_text())
    print(f"corpus: {corpus}\npublished dataset: {repo}\nmodel: {run_dir / 'model'}\nevaluation: {eval_dir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
