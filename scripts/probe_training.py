"""Ablation of CInA's zero-shot weights: what do training and the unrolled balancing steps add?

Loads a fixed set of training batches (units subsampled once) into memory, trains one model
variant for a fixed number of steps on CPU, and reports the validation ATE error (MAE/sd(y)) of
the zero-shot weights for several numbers of unrolled target-balancing steps, next to the
difference in means and the untrained network (uniform starting weights) on the same tasks.

    python scripts/probe_training.py CORPUS --variant ss --steps 400 --out probe.json

Variants (model-config overrides, see VARIANTS): ss (self-supervised target balancing, the
default), sup (ZS-S: plus the supervised ATE loss), svm (the paper's SVM layer, duality gap).
"""

from __future__ import annotations

import argparse
import json
import math
import time

import torch

from cina.data import TaskStream
from cina.core.model import CInA, CInAConfig
from cina.train import TrainConfig, lr_factor

VARIANTS = {
    "ss": {},
    "sup": {"supervised_weight": 1.0},
    "svm": {"balancing": "svm", "alpha_scale": "optimal"},
}
BASE = {"d_model": 64, "n_heads": 4, "n_layers": 2, "n_value_layers": 1, "key_dim": 16, "max_features": 128}


def collect(corpus, split, n_batches, seed, shuffle):
    stream = TaskStream(corpus, 16, seed, split=split, subsample_units=256, bucket_by_size=shuffle,
                        shuffle=shuffle, drop_last=shuffle, rank=0, world_size=1)
    out = []
    for b in stream:
        out.append(b)
        if len(out) >= n_batches:
            break
    return out


def val_mae(model, batches, refine_steps=None):
    saved = model.config.refine_steps
    if refine_steps is not None:
        model.config.refine_steps = refine_steps
    model.eval()
    with torch.no_grad():
        err = torch.cat([(model(b)["ate"] - b["ate"]).abs() for b in batches]).double()
    model.train()
    model.config.refine_steps = saved
    return float(err.mean()), float(err.std() / math.sqrt(len(err)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("corpus")
    ap.add_argument("--variant", choices=sorted(VARIANTS), required=True)
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--train-batches", type=int, default=300)
    ap.add_argument("--val-batches", type=int, default=16)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--model", default="{}", help="JSON overrides of the model config")
    ap.add_argument("--eval-refine", default="0,5,10,30", help="unrolled steps to evaluate with")
    ap.add_argument("--out")
    args = ap.parse_args()
    torch.set_num_threads(1)

    train_b = collect(args.corpus, "train", args.train_batches, 0, True)
    val_b = collect(args.corpus, "validation", args.val_batches, 0, False)
    dim = torch.cat([(b["ate"] - _dim(b)).abs() for b in val_b]).double()

    cfg = CInAConfig(**{**BASE, **VARIANTS[args.variant], **json.loads(args.model)})
    torch.manual_seed(0)
    model = CInA(cfg).train()
    refine = [int(r) for r in args.eval_refine.split(",")] if cfg.balancing == "target" else [None]
    before = {str(r): val_mae(model, val_b, r) for r in refine}
    tc = TrainConfig(max_steps=args.steps, warmup_steps=min(50, args.steps), lr=args.lr, min_lr_ratio=0.05)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.95), weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, tc))
    curve = []
    t1 = time.perf_counter()
    for step in range(args.steps):
        b = train_b[step % len(train_b)]
        out = model(b)
        opt.zero_grad(set_to_none=True)
        out["loss"].backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if (step + 1) % max(1, args.steps // 5) == 0:
            curve.append({"step": step + 1, "loss": float(out["loss"]), "val_mae": val_mae(model, val_b)[0]})
            print(json.dumps(curve[-1]), flush=True)
    t_train = time.perf_counter() - t1
    after = {str(r): val_mae(model, val_b, r) for r in refine}
    res = {"variant": args.variant, "model": cfg.to_dict(), "steps": args.steps, "train_tasks": 16 * len(train_b),
           "val_tasks": len(dim), "dim_mae": [float(dim.mean()), float(dim.std() / math.sqrt(len(dim)))],
           "untrained_mae_by_refine": before, "trained_mae_by_refine": after, "curve": curve,
           "seconds_train": t_train, "steps_per_s": args.steps / t_train}
    print(json.dumps({k: res[k] for k in ("variant", "dim_mae", "untrained_mae_by_refine", "trained_mae_by_refine", "steps_per_s")}))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(res, f, indent=1)


def _dim(b):
    t, y, m = b["t"], b["y"], b["unit_mask"].float()
    return (t * y * m).sum(-1) / (t * m).sum(-1) - ((1 - t) * y * m).sum(-1) / ((1 - t) * m).sum(-1)


if __name__ == "__main__":
    main()
