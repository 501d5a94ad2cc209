"""Zero-shot CInA vs cross-fitted DML: seconds per dataset on one CPU core, in the same run.

    python scripts/bench_zero_shot.py [--models default,fast] [--tasks 30] [--units 1000] [--device cuda]

Times, on the same `default`-preset tasks (fresh seeds, N units each): each zero-shot model
(the shipped "default" and "fast" ones, or any model directory) one dataset per call and all
datasets in one batched call, Algorithm 1 (per-dataset CInA), and the cross-fitted AIPW / DML
baseline. Threads are pinned to 1 (torch, OpenMP, BLAS) so that the
ratio compares algorithms, not core counts; each figure is a median over datasets. With
``--device cuda`` the zero-shot rows run on the GPU (the estimate includes copying the data there
and the weights and diagnostics back) while Algorithm 1 and the baselines stay on one CPU thread.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="default,fast", help="comma-separated zero-shot models: shipped names "
                    "('default', 'fast') or model directories")
    ap.add_argument("--tasks", type=int, default=30)
    ap.add_argument("--units", type=int, default=1000)
    ap.add_argument("--inference", default=None, metavar="STEPS,LANDMARKS",
                    help="also time the first model with these refine_steps and landmarks (inference-only "
                    "settings, no retraining)")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="where the zero-shot model runs")
    ap.add_argument("--skip", default="", help="comma-separated rows to leave out (e.g. cina_single,aipw_dml)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)

    import causalgen
    from cina import CInA
    from cina.eval.baselines import run_baseline
    from cina.core import resolve_model
    from cina.core.single import SingleDatasetCInA

    cfg = causalgen.load_config("default").replace(**{"n_units": (args.units, args.units)})
    tasks = causalgen.sample_tasks(cfg, range(10_000, 10_000 + args.tasks))
    data = [(t.x.astype(np.float32), t.t.astype(np.float32), t.y.astype(np.float32)) for t in tasks]
    truth = np.array([t.sate for t in tasks])
    scale = np.array([t.y.std() for t in tasks])
    models = {name: CInA.load(resolve_model(name), map_location=args.device) for name in args.models.split(",")}
    skip = set(filter(None, args.skip.split(",")))

    def timed(fn):
        out, est = [], []
        for x, t, y in data:
            start = time.perf_counter()
            est.append(fn(x, t, y))
            out.append(time.perf_counter() - start)
        return statistics.median(out), float(np.mean(np.abs(np.array(est) - truth) / scale))

    rows = {}
    for name, model in models.items():
        label = "cina_zs" if len(models) == 1 else f"cina_zs[{Path(name).name}]"
        model.estimate(*data[0], compute_loss=False)  # warm-up (CUDA context, kernels, allocator)
        rows[label] = timed(lambda x, t, y, m=model: m.estimate(x, t, y, compute_loss=False).ate)
        start = time.perf_counter()
        model.estimate([d[0] for d in data], [d[1] for d in data], [d[2] for d in data], compute_loss=False)
        rows[f"{label}_batched"] = ((time.perf_counter() - start) / len(data), rows[label][1])
    if args.inference:
        name, model = next(iter(models.items()))
        own = (model.config.refine_steps, model.config.landmarks)
        steps, landmarks = (int(v) for v in args.inference.split(","))
        model.config.refine_steps, model.config.landmarks = steps, landmarks
        rows[f"cina_zs[{Path(name).name}]_{steps}steps_{landmarks}landmarks"] = timed(
            lambda x, t, y: model.estimate(x, t, y, compute_loss=False).ate)
        model.config.refine_steps, model.config.landmarks = own
    if "cina_single" not in skip:
        rows["cina_single"] = timed(lambda x, t, y: SingleDatasetCInA().fit(x, t).estimate(y).ate)
    if "aipw_dml" not in skip:
        rows["aipw_dml"] = timed(lambda x, t, y: run_baseline("aipw", x, t, y).estimate)
    rows["dim"] = timed(lambda x, t, y: float(y[t == 1].mean() - y[t == 0].mean()))
    dml = rows["aipw_dml"][0] if "aipw_dml" in rows else float("nan")
    res = {
        "tasks": len(data), "units": args.units, "threads": 1, "zero_shot_device": args.device,
        "seconds_per_dataset": {k: v[0] for k, v in rows.items()},
        "mae_over_sd_y": {k: v[1] for k, v in rows.items()},
        "dml_over": {k: dml / v[0] for k, v in rows.items() if k.startswith("cina_zs")},
    }
    if args.json:
        print(json.dumps(res, indent=1))
        return
    where = torch.cuda.get_device_name() if args.device == "cuda" else "one CPU thread"
    print(f"{len(data)} default-preset tasks of {args.units} units, zero-shot on {where}, the rest on one CPU "
          "thread; median seconds per dataset, MAE/sd(y) of the ATE (truth: SATE), DML's time over this row's")
    for k in rows:
        ratio = res["dml_over"].get(k)
        print(f"  {k:44s} {res['seconds_per_dataset'][k]:9.4f} s  {res['mae_over_sd_y'][k]:.4f}"
              + (f"  {ratio:6.0f}x" if ratio == ratio and ratio else ""))

if __name__ == "__main__":
    main()
