"""Model files: weights as safetensors with the config in their metadata (never pickle), the
models shipped with the package, and finding the model inside a training run's directory.

A model folder holds ``model.safetensors`` and ``config.json``; a bare ``.safetensors`` file is
enough on its own, because its metadata repeats the config. This module reads and writes state
dicts and config dicts only: building the network from them is `cina.core.model.CInA.load`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping

import torch

FORMAT = "cina.CInA"
FORMAT_VERSION = 1
WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"

#: models shipped inside the package, by name: "default" (the most accurate) and "fast" (a
#: width-16 network, 10 balancing layers on a 32-landmark kernel: 7-15x less CPU time per
#: 1,000-unit dataset for a slightly larger error). Each folder's TRAINING.md says how it was made.
SHIPPED_MODELS = {"default": "default_model", "fast": "fast_model"}
ASSETS = Path(__file__).resolve().parent.parent / "assets"


class ModelNotFoundError(FileNotFoundError):
    """No model where one was asked for; the message names the path."""


def shipped_model_path(name: str = "default") -> Path:
    """The folder of a shipped model (`SHIPPED_MODELS`)."""
    if name not in SHIPPED_MODELS:
        raise ValueError(f"no shipped model {name!r}; the shipped ones are {sorted(SHIPPED_MODELS)}")
    return ASSETS / SHIPPED_MODELS[name]


def named_shipped_model(path: str | Path) -> Path | None:
    """The shipped model's folder when ``path`` is one of `SHIPPED_MODELS`' names and no file or
    folder of that name exists (a real path always wins); else None."""
    if str(path) in SHIPPED_MODELS and not Path(path).exists():
        return shipped_model_path(str(path))
    return None


def model_files(path: str | Path) -> tuple[Path, Path]:
    """(weights file, config file) of a model folder or a ``.safetensors`` file (its config is
    ``<stem>.json`` beside it)."""
    path = Path(path)
    if path.suffix == ".safetensors":
        return path, path.with_suffix(".json")
    return path / WEIGHTS_NAME, path / CONFIG_NAME


def save_model(state: Mapping[str, torch.Tensor], config: dict[str, Any], path: str | Path) -> Path:
    """Write weights and config to a folder (``model.safetensors`` + ``config.json``) or to a
    ``.safetensors`` file (config beside it as ``<stem>.json``); the config is also stored in the
    weights' metadata. Returns the weights file."""
    from safetensors.torch import save_file

    path = Path(path)
    weights_file, config_file = model_files(path)
    weights_file.parent.mkdir(parents=True, exist_ok=True)
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "config": config}
    tensors = {k: v.detach().cpu().contiguous() for k, v in state.items()}
    save_file(tensors, str(weights_file), metadata={"cina": json.dumps(meta)})
    config_file.write_text(json.dumps(meta, indent=2) + "\n")
    return weights_file


def read_model(path: str | Path, map_location: str | torch.device = "cpu") -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """(config dict, state dict) of a model written by `save_model`; ``path`` may also name a
    shipped model ("default", "fast") unless a file or folder of that name exists."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = named_shipped_model(path) or Path(path)
    weights_file, config_file = model_files(path)
    if not weights_file.is_file():
        raise ModelNotFoundError(f"no CInA weights at {weights_file}")
    if config_file.is_file():
        meta = json.loads(config_file.read_text())
    else:
        with safe_open(str(weights_file), framework="pt") as f:
            raw = (f.metadata() or {}).get("cina")
        if raw is None:
            raise ValueError(f"{weights_file} has no CInA config (no {config_file.name}, no metadata)")
        meta = json.loads(raw)
    if meta.get("format") != FORMAT or meta.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{config_file} is not a {FORMAT} v{FORMAT_VERSION} config: {meta.get('format')!r} v{meta.get('format_version')!r}")
    state = load_file(str(weights_file), device=str(map_location))
    # Tolerate checkpoints of wrapped models (torch.compile / DDP prefixes).
    state = {k.removeprefix("_orig_mod.").removeprefix("module."): v for k, v in state.items()}
    return meta["config"], state


# ------------------------------------------------------------------ run directories


def latest_checkpoint(run: str | os.PathLike) -> Path | None:
    """The newest complete checkpoint directory of a training run (``RUN/checkpoints/latest``
    names it), or None."""
    marker = Path(run) / "checkpoints" / "latest"
    if not marker.is_file():
        return None
    path = marker.parent / marker.read_text().strip()
    return path if (path / "trainer.json").is_file() else None


def resolve_model(path: str | os.PathLike | None) -> Path:
    """Where the model named by ``path`` lives: a shipped model's name (None = "default"), a run
    directory (-> RUN/model, else its latest checkpoint), a model directory, or a .safetensors
    file. A path that exists wins over a shipped name. Raises `ModelNotFoundError`."""
    shipped = shipped_model_path() if path is None else named_shipped_model(path)
    if shipped is not None:
        if not (shipped / WEIGHTS_NAME).is_file():
            raise ModelNotFoundError(f"the shipped {str(path or 'default')!r} model is missing from the installation "
                                     f"({shipped}); pass --model")
        return shipped
    p = Path(path)
    if p.is_dir() and (p / "model" / WEIGHTS_NAME).is_file():
        return p / "model"
    if p.is_dir() and (p / WEIGHTS_NAME).is_file():
        return p
    if p.is_file() and p.suffix == ".safetensors":
        return p
    if p.is_dir():
        ck = latest_checkpoint(p)
        if ck is not None:
            return ck
    raise ModelNotFoundError(f"--model {path}: not a run directory, model directory or .safetensors file")
