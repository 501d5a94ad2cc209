"""Pretraining loop for CInA (nanoGPT style): stream tasks, AdamW, warmup + cosine, checkpoints.

    from cina.train import TrainConfig, train
    train("corpus_dir_or_url", "runs/exp1", TrainConfig(max_steps=2000))

or from the shell (single process, or DDP under torchrun)::

    cina train --corpus CORPUS --out RUN_DIR [--config train.yaml]
    torchrun --nproc_per_node=2 -m cina.cli train --corpus CORPUS --out RUN_DIR

Run directory layout::

    RUN_DIR/train_config.json          the TrainConfig (a re-run must use the same one)
    RUN_DIR/metrics.csv                one row per logged step (and tensorboard/ if enabled)
    RUN_DIR/checkpoints/step-NNNNNNN/  model.safetensors + config.json (a loadable model),
                                       optimizer.pt (tensors only, loaded with weights_only=True),
                                       rng.safetensors, trainer.json (step, scheduler, stream state)
    RUN_DIR/checkpoints/latest         name of the newest complete checkpoint
    RUN_DIR/model/                     the final model (CInA.load(RUN_DIR/model))

A checkpoint directory is written under a temporary name and renamed when complete, and
`latest` is replaced atomically, so a crash never leaves a checkpoint that looks complete but
is not. Every step checks the loss, its terms and the gradient norm before the update, and
every evaluation the validation metrics: a NaN/inf stops the run with a `TrainingError` naming
the step and the quantity (no final model; the checkpoints before it stay valid). Checkpoints
are read back through the checks of every model file (`cina.core.checkpoint.read_model`).
Re-running the same command resumes exactly (model, optimiser, scheduler, RNG and the
data stream's position), so an interrupted run and an uninterrupted one give the same weights.
"""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch

from causalgen import read_config_file

from .core import CInA, CInAConfig
from .core.checkpoint import ModelFileError, write_atomic, config_difference, check_state_keys, latest_checkpoint, read_model
from .data import TaskLoader, TaskStream
from .data.mixture import CorpusMixture

class TrainingError(RuntimeError):
    """Training stopped on a non-finite loss, gradient norm, weight or validation metric; the
    message (one line) names the step and the quantity. No final model is written; the
    checkpoints written before stay valid."""


#: a small model that trains on CPU in minutes; the README lists larger settings for GPUs
SMALL_MODEL = {"d_model": 64, "n_heads": 4, "n_layers": 2, "n_value_layers": 1, "key_dim": 16, "max_features": 64}


@dataclass
class TrainConfig:
    """Training hyper-parameters (JSON/YAML-serialisable)."""

    model: dict = field(default_factory=lambda: dict(SMALL_MODEL))
    batch_size: int = 16  #: datasets per step (per process under DDP)
    max_steps: int = 1000
    lr: float = 3e-4
    min_lr_ratio: float = 0.1  #: cosine decays to lr * min_lr_ratio
    warmup_steps: int = 50
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    subsample_units: int | None = 256  #: units per dataset seen in training (None = all)
    max_units_per_batch: int | None = None
    bucket_by_size: bool = True
    block_shards: int = 4
    num_workers: int = 0
    eval_every: int = 100
    eval_tasks: int = 128  #: validation tasks per evaluation (from the validation split)
    ckpt_every: int = 100
    keep_checkpoints: int = 2
    seed: int = 0
    device: str = "auto"  #: "auto" = cuda if available else cpu
    compile: str = "auto"  #: torch.compile: "auto" = on GPU only; "on" / "off"
    bf16: str = "auto"  #: bf16 autocast: "auto" = on GPU only; "on" / "off"
    tensorboard: bool = False

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"train config: unknown field {unknown[0]!r} (known: {', '.join(sorted(known))})")
        cfg = cls(**{**asdict(cls()), **d})
        cfg.validate()
        return cfg

    @classmethod
    def load(cls, path: str | os.PathLike) -> "TrainConfig":
        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(f"train config {p} does not exist")
        data = read_config_file(p) or {}
        if not isinstance(data, dict):
            raise ValueError(f"{p}: expected a mapping at the top level")
        return cls.from_dict(data)

    def validate(self) -> None:
        for name in ("batch_size", "max_steps", "eval_every", "eval_tasks", "ckpt_every", "keep_checkpoints", "block_shards"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"train config: {name} must be an integer >= 1, got {v!r}")
        for name in ("warmup_steps", "num_workers", "seed"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError(f"train config: {name} must be an integer >= 0, got {v!r}")
        for name in ("lr", "min_lr_ratio", "weight_decay", "grad_clip"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ValueError(f"train config: {name} must be finite, got {v!r}")
        if not (self.lr > 0 and 0 <= self.min_lr_ratio <= 1 and self.weight_decay >= 0 and self.grad_clip > 0):
            raise ValueError("train config: need lr > 0, 0 <= min_lr_ratio <= 1, weight_decay >= 0, grad_clip > 0")
        for name in ("compile", "bf16"):
            if getattr(self, name) not in ("auto", "on", "off"):
                raise ValueError(f"train config: {name} must be 'auto', 'on' or 'off', got {getattr(self, name)!r}")
        CInAConfig.from_dict(self.model)  # raises naming the bad model field

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def lr_factor(step: int, cfg: TrainConfig) -> float:
    """Linear warmup to 1, then cosine decay to min_lr_ratio at max_steps."""
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps))
    return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


# ------------------------------------------------------------------ distributed helpers


@dataclass
class _Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    initialised_here: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _setup_distributed(device_kind: str) -> _Dist:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return _Dist()
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device_kind == "cuda" else "gloo")
        here = True
    else:
        here = False
    return _Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")), here)


def _resolve_device(cfg: TrainConfig, d: _Dist) -> torch.device:
    kind = cfg.device
    if kind == "auto":
        kind = "cuda" if torch.cuda.is_available() else "cpu"
    if kind == "cuda":
        return torch.device("cuda", d.local_rank)
    return torch.device(kind)


# ------------------------------------------------------------------ checkpoints


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def _save_checkpoint(run: Path, step: int, model: CInA, opt, sched, loader: TaskLoader, epoch: int, keep: int) -> Path:
    from safetensors.torch import save

    ckdir = run / "checkpoints"
    ckdir.mkdir(parents=True, exist_ok=True)
    name = f"step-{step:07d}"
    final = ckdir / name
    tmp = ckdir / f".{name}.partial"
    if tmp.exists():
        shutil.rmtree(tmp)
    model.save(tmp)
    torch.save(opt.state_dict(), tmp / "optimizer.pt")
    rng = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            rng[f"cuda{i}"] = s
    write_atomic(tmp / "rng.safetensors", save(rng))
    trainer = {"step": step, "epoch": epoch, "scheduler": sched.state_dict(), "stream": loader.state_dict()}
    (tmp / "trainer.json").write_text(json.dumps(trainer, indent=1, default=_json_default))
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    _atomic_write(ckdir / "latest", name + "\n")
    old = sorted(p for p in ckdir.glob("step-*") if p.is_dir())
    for p in old[:-keep]:
        shutil.rmtree(p, ignore_errors=True)
    return final


def _json_default(o):
    if hasattr(o, "tolist"):
        return o.tolist()
    raise TypeError(f"not JSON-serialisable: {type(o).__name__}")


def _load_checkpoint(path: Path, model: CInA, opt, sched, loader: TaskLoader, device) -> tuple[int, int]:
    """Restore a checkpoint written by `_save_checkpoint`. Its model goes through the checks of
    every model file (`cina.core.checkpoint.read_model`: finite weights of sane magnitude,
    checksums, config.json against the weights' config) and must be this run's network;
    an unreadable file raises `ModelFileError` naming it."""
    from safetensors.torch import load_file

    config, state = read_model(path, map_location=device)
    weights = path / "model.safetensors"
    diff = config_difference(model.config.to_dict(), config)
    if diff:
        raise ModelFileError(f"{weights}: not this run's model: {diff.replace('the weights were saved', 'the checkpoint has')}")
    check_state_keys(state, model.state_dict(), weights)
    model.load_state_dict(state)
    try:
        opt.load_state_dict(torch.load(path / "optimizer.pt", map_location=device, weights_only=True))
        trainer = json.loads((path / "trainer.json").read_text())
        sched.load_state_dict(trainer["scheduler"])
        loader.load_state_dict(trainer["stream"])
        rng = load_file(str(path / "rng.safetensors"))
    except FileNotFoundError:
        raise
    except Exception as exc:  # torch / safetensors / json errors of a damaged checkpoint
        text = str(exc).strip().splitlines()
        raise ModelFileError(f"{path}: damaged checkpoint ({text[0] if text else type(exc).__name__})") from None
    torch.set_rng_state(rng["torch"])
    if torch.cuda.is_available():
        cuda = [rng[k] for k in sorted(k for k in rng if k.startswith("cuda"))]
        if cuda:
            torch.cuda.set_rng_state_all(cuda)
    return int(trainer["step"]), int(trainer["epoch"])


# ------------------------------------------------------------------ evaluation


@torch.no_grad()
def evaluate(model: CInA, stream: TaskStream, stream_start: dict, max_tasks: int, device, autocast) -> dict[str, Any]:
    """Mean balancing loss and ATE MAE (standardised-y scale and original scale) on
    up to `max_tasks` tasks of `stream` (a non-shuffled validation stream); with
    ``nonfinite_tasks``, the task indices whose error is NaN/inf, when there are any."""
    stream.load_state_dict(stream_start)  # every evaluation sees the same tasks
    was_training = model.training
    model.eval()
    n = 0
    loss_sum = mae_std = mae_orig = 0.0
    bad_tasks: list[int] = []
    for batch in stream:
        batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
        with autocast():
            out = model(batch)
        b = batch["x"].shape[0]
        loss_sum += float(out["loss_balance"]) * b
        err = (out["ate"].float() - batch["ate"].float()).abs()
        if not torch.isfinite(err).all() and "task_index" in batch:
            bad_tasks += batch["task_index"][~torch.isfinite(err).cpu()].tolist()
        mae_std += float(err.sum())
        mae_orig += float((err * batch["y_scale"].float()).sum())
        n += b
        if n >= max_tasks:
            break
    model.train(was_training)
    if n == 0:
        return {}
    metrics: dict[str, Any] = {"val_loss": loss_sum / n, "val_ate_mae_std": mae_std / n, "val_ate_mae": mae_orig / n,
                               "val_tasks": n}
    if bad_tasks:
        metrics["nonfinite_tasks"] = bad_tasks
    return metrics


#: what the loop checks, in this order, for NaN/inf
CHECKED = ("loss", "loss_balance", "loss_supervised", "loss_outcome", "grad_norm")
CHECKED_VAL = ("val_loss", "val_ate_mae_std", "val_ate_mae")


def _nonfinite_step(step: int, values: dict[str, torch.Tensor]) -> str | None:
    """The message for the first non-finite training quantity of a step, or None."""
    for name in CHECKED:
        v = float(values[name])
        if not math.isfinite(v):
            what = {"loss": "the loss", "grad_norm": "the gradient norm"}.get(name, f"the loss term {name}")
            parts = ", ".join(f"{k} {float(values[k]):.4g}" for k in CHECKED if k != name)
            return f"training stopped at step {step}: {what} is {v} ({parts})"
    return None


def _nonfinite_validation(step: int, row: dict[str, Any], bad_tasks: list[int]) -> str | None:
    """The message for the first non-finite validation metric of a row, or None."""
    for name in CHECKED_VAL:
        v = row.get(name)
        if v is not None and not math.isfinite(v):
            where = f" (validation tasks {bad_tasks[:10]} give a non-finite error: check their ground truth)" if bad_tasks else ""
            return f"training stopped at step {step}: the validation metric {name} is {v}{where}"
    return None


# ------------------------------------------------------------------ the loop


# tasks_per_s and step_ms cover the training steps since the previous row (evaluation and
# checkpoint time excluded); gpu_mem_gb is the peak allocated CUDA memory so far (empty on CPU).
METRIC_FIELDS = ["step", "epoch", "lr", "loss", "loss_balance", "loss_supervised", "loss_outcome", "grad_norm", "tasks_per_s",
                 "step_ms", "gpu_mem_gb", "val_loss", "val_ate_mae_std", "val_ate_mae", "val_tasks"]


def _prepare_metrics_file(path: Path) -> None:
    """Write the header of a new metrics.csv; a resumed run whose file has other columns (an older
    version's) gets its rows rewritten under the current header, matched by name, so appended rows
    never land under the wrong column."""
    if not path.exists():
        with path.open("w", newline="") as f:
            csv.writer(f).writerow(METRIC_FIELDS)
        return
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames == METRIC_FIELDS:
            return
        rows = list(reader)
    tmp = path.with_suffix(".csv.partial")
    with tmp.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(METRIC_FIELDS)
        writer.writerows([[r.get(k) or "" for k in METRIC_FIELDS] for r in rows])
    os.replace(tmp, path)


def train(corpus, out_dir: str | os.PathLike, cfg: TrainConfig | None = None, *, progress: bool = True) -> Path:
    """Pretrain CInA on the train split of `corpus` (path, URL or Corpus); return the final
    model directory. Resumes from `out_dir`'s latest checkpoint when there is one."""
    from causalgen import open_corpus

    cfg = cfg or TrainConfig()
    cfg.validate()
    run = Path(out_dir)
    if run.exists() and not run.is_dir():
        raise NotADirectoryError(f"--out {run} exists and is not a directory")

    device_kind = "cuda" if (cfg.device == "auto" and torch.cuda.is_available()) or cfg.device == "cuda" else "cpu"
    dist_info = _setup_distributed(device_kind)
    device = _resolve_device(cfg, dist_info)
    if device.type == "cuda":
        torch.cuda.set_device(device)

    run.mkdir(parents=True, exist_ok=True)
    cfg_file = run / "train_config.json"
    if cfg_file.exists():
        previous = json.loads(cfg_file.read_text())
        if previous != json.loads(json.dumps(cfg.to_dict())):
            raise ValueError(f"{run} holds a run with a different train config ({cfg_file}); use a new --out")
    elif dist_info.is_main:
        _atomic_write(cfg_file, json.dumps(cfg.to_dict(), indent=1) + "\n")

    if isinstance(corpus, (list, tuple)):  # several corpora (priors) mixed in proportion to their sizes
        corpus = corpus[0] if len(corpus) == 1 else CorpusMixture(corpus)
    corpus = corpus if hasattr(corpus, "read_shard") else open_corpus(corpus)
    # Same initial weights on every rank (DDP also broadcasts them); per-rank RNG afterwards
    # for the model's training-time sampling (feature shuffles, lambda draws).
    torch.manual_seed(cfg.seed)
    model = CInA(CInAConfig.from_dict(cfg.model)).to(device)
    torch.manual_seed(cfg.seed * 1000 + 1 + dist_info.rank)

    # the outcome head learns from both potential outcomes of every unit, which a corpus has
    extras = ("y0", "y1") if model.config.outcome_weight > 0 else ()
    stream = TaskStream(
        corpus, cfg.batch_size, cfg.seed, split="train", bucket_by_size=cfg.bucket_by_size,
        subsample_units=cfg.subsample_units, max_units_per_batch=cfg.max_units_per_batch,
        block_shards=cfg.block_shards, extras=extras, drop_last=True,
    )
    if stream.num_tasks == 0:
        raise ValueError(f"corpus {corpus.root} has no tasks in its train split")
    # The loader gets its own generator: a DataLoader iterator otherwise draws its base seed
    # from the global RNG when created, which would shift the model's random stream on resume.
    loader = TaskLoader(stream, num_workers=cfg.num_workers, pin_memory=device.type == "cuda",
                        generator=torch.Generator().manual_seed(cfg.seed),
                        persistent_workers=cfg.num_workers > 0)
    # shuffled with a fixed seed (every evaluation sees the same tasks): a mixture's validation
    # tasks come from all of its corpora, not only the first one's
    val_stream = TaskStream(
        corpus, cfg.batch_size, cfg.seed, split="validation", shuffle=True, drop_last=False,
        subsample_units=cfg.subsample_units, rank=0, world_size=1, extras=extras,
    )
    val_start = val_stream.state_dict()

    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.lr, betas=(0.9, 0.95), fused=device.type == "cuda",
    )
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, cfg))

    step, epoch = 0, 0
    ckpt = latest_checkpoint(run)
    if ckpt is not None:
        step, epoch = _load_checkpoint(ckpt, model, opt, sched, loader, device)

    use_bf16 = cfg.bf16 == "on" or (cfg.bf16 == "auto" and device.type == "cuda")
    use_compile = cfg.compile == "on" or (cfg.compile == "auto" and device.type == "cuda")

    def autocast():
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=use_bf16)

    train_model: Any = model
    if use_compile:
        train_model = torch.compile(model)
    if dist_info.world_size > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP

        train_model = DDP(train_model, device_ids=[device.index] if device.type == "cuda" else None)

    writer = None
    if cfg.tensorboard and dist_info.is_main:
        try:
            from torch.utils.tensorboard import SummaryWriter

            writer = SummaryWriter(str(run / "tensorboard"))
        except ImportError:  # tensorboard is optional
            writer = None
    metrics_file = run / "metrics.csv"
    if dist_info.is_main:
        _prepare_metrics_file(metrics_file)

    bar = None
    if progress and dist_info.is_main:
        from tqdm.auto import tqdm

        bar = tqdm(total=cfg.max_steps, initial=step, desc="train", unit="step", dynamic_ncols=True)

    model.train()
    t_last, tasks_since, steps_since = time.perf_counter(), 0, 0

    def stop_if(problem: str | None) -> None:
        """Stop every rank together (a flag all-reduced under DDP): no final model; the
        checkpoints written so far hold the weights before the failing step, all finite."""
        bad = torch.tensor(float(problem is not None), device=device)
        if dist_info.world_size > 1:
            torch.distributed.all_reduce(bad, op=torch.distributed.ReduceOp.MAX)
        if bad.item() > 0:
            ck = latest_checkpoint(run)
            tail = f"; no final model written; the latest checkpoint is {ck}" if ck else "; no model written"
            raise TrainingError((problem or f"training stopped at step {step}: a non-finite value on another rank") + tail)

    try:
        while step < cfg.max_steps:
            if stream.epoch != epoch:
                stream.set_epoch(epoch)
            for batch in loader:
                batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
                with autocast():
                    out = train_model(batch)
                loss = out["loss"]
                opt.zero_grad(set_to_none=True)
                loss.backward()
                grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                # Before the update: a NaN/inf loss or gradient must not reach the weights. One
                # device sync per step (and a 1-element all-reduce under DDP).
                checked = {"loss": loss.detach(), "loss_balance": out["loss_balance"].detach(),
                           "loss_supervised": out["loss_supervised"].detach(),
                           "loss_outcome": out["loss_outcome"].detach(), "grad_norm": grad_norm}
                finite = bool(torch.stack([torch.isfinite(v.float()).all() for v in checked.values()]).all())
                if dist_info.world_size > 1 or not finite:
                    stop_if(None if finite else _nonfinite_step(step + 1, checked))
                opt.step()
                sched.step()
                step += 1
                tasks_since += batch["x"].shape[0]
                steps_since += 1
                row = None
                evaluating = step % cfg.eval_every == 0 or step == cfg.max_steps or step == 1
                problem = None
                if dist_info.is_main and evaluating:
                    loss_value = float(loss.detach())  # waits for the device, so the clock below is honest
                    elapsed = max(time.perf_counter() - t_last, 1e-9)
                    row = {
                        "step": step, "epoch": epoch, "lr": opt.param_groups[0]["lr"], "loss": loss_value,
                        "loss_balance": float(out["loss_balance"].detach()),
                        "loss_supervised": float(out["loss_supervised"].detach()),
                        "loss_outcome": float(out["loss_outcome"].detach()),
                        "grad_norm": float(grad_norm), "tasks_per_s": tasks_since * dist_info.world_size / elapsed,
                        "step_ms": 1000 * elapsed / steps_since,
                        "gpu_mem_gb": torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else "",
                    }
                    row.update(evaluate(model, val_stream, val_start, cfg.eval_tasks, device, autocast))
                    bad_tasks = row.pop("nonfinite_tasks", [])
                    with metrics_file.open("a", newline="") as f:
                        csv.writer(f).writerow([row.get(k, "") for k in METRIC_FIELDS])
                    if writer is not None:
                        for k, v in row.items():
                            if k not in ("step", "epoch") and v != "":
                                writer.add_scalar(k, v, step)
                    if bar is not None:
                        bar.set_postfix(loss=f"{row['loss']:.4f}", val_mae=f"{row.get('val_ate_mae', float('nan')):.3f}")
                    problem = _nonfinite_validation(step, row, bad_tasks)
                if evaluating and (dist_info.world_size > 1 or problem is not None):
                    stop_if(problem)  # before this step's checkpoint
                if step % cfg.ckpt_every == 0 or step == cfg.max_steps:
                    if dist_info.is_main:
                        try:
                            _save_checkpoint(run, step, model, opt, sched, loader, epoch, cfg.keep_checkpoints)
                        except ModelFileError as exc:  # weights the checks refuse (e.g. |w| >= 1e6)
                            raise TrainingError(f"training stopped at step {step}: {exc}") from None
                    if dist_info.world_size > 1:
                        torch.distributed.barrier()
                if row is not None:  # restart the step clock after evaluation and checkpointing
                    t_last, tasks_since, steps_since = time.perf_counter(), 0, 0
                if bar is not None:
                    bar.update(1)
                if step >= cfg.max_steps:
                    break
            else:
                epoch += 1
                stream.set_epoch(epoch)
    finally:
        if bar is not None:
            bar.close()
        if writer is not None:
            writer.close()
    final = run / "model"
    if dist_info.is_main:
        tmp = run / ".model.partial"
        if tmp.exists():
            shutil.rmtree(tmp)
        model.save(tmp)
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    if dist_info.world_size > 1:
        torch.distributed.barrier()
        if dist_info.initialised_here:
            torch.distributed.destroy_process_group()
    return final
