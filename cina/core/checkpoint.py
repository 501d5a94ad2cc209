"""Model files: weights as safetensors with the config in their metadata (never pickle), the
models shipped with the package, and finding the model inside a training run's directory.

A model folder holds ``model.safetensors`` and ``config.json``; a bare ``.safetensors`` file is
enough on its own, because its metadata repeats the config, with the sha256 of every tensor.
Loading checks the file before anything uses it (`read_model`): a NaN or a huge weight, an edited
tensor or an edited config.json would otherwise silently change the estimator. This module reads and writes state
dicts and config dicts only: building the network from them is `cina.core.model.CInA.load`.
"""

from __future__ import annotations

import hashlib
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

#: `read_model` refuses weights with |w| >= this: trained CInA weights stay below ~10 (the
#: shipped models' largest is 1.1), so a larger value is a corrupt file or a diverged run.
MAX_ABS_WEIGHT = 1e6
ASSETS = Path(__file__).resolve().parent.parent / "assets"


class ModelNotFoundError(FileNotFoundError):
    """No model where one was asked for; the message names the path."""


class ModelFileError(ValueError):
    """A model file that must not be used (unreadable, edited, corrupt): one line naming the
    file and the field or tensor."""


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


def weights_file(path: str | Path) -> Path:
    """The weights file `read_model` reads for ``path`` (shipped names resolved)."""
    return model_files(named_shipped_model(path) or Path(path))[0]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def tensor_checksums(state: Mapping[str, torch.Tensor]) -> dict[str, str]:
    """name -> sha256 hex digest of the tensor's dtype, shape and bytes (row-major), for every
    tensor of a state dict. `save_model` stores them in the weights' metadata; `read_model`
    refuses a file whose tensors no longer match."""
    out = {}
    for name, t in state.items():
        t = t.detach().cpu().contiguous()
        h = hashlib.sha256(f"{str(t.dtype).removeprefix('torch.')}|{list(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy())
        out[name] = h.hexdigest()
    return out


def check_weights(state: Mapping[str, torch.Tensor], where: str | Path) -> None:
    """Raise `ModelFileError` naming ``where`` and the tensor when a floating-point tensor holds
    NaN/inf or a value with ``|w| >= MAX_ABS_WEIGHT``."""
    for name, t in state.items():
        if not t.is_floating_point() or t.numel() == 0:
            continue
        finite = torch.isfinite(t)
        if not finite.all():
            k = int((~finite).sum())
            raise ModelFileError(f"{where}: tensor {name!r} has {k} non-finite value{'s' if k > 1 else ''} "
                                 "(a corrupt file or a diverged training run)")
        top = float(t.abs().max())
        if top >= MAX_ABS_WEIGHT:
            raise ModelFileError(f"{where}: tensor {name!r} has |w| up to {top:.3g} (>= {MAX_ABS_WEIGHT:g}; "
                                 "a corrupt file or a diverged training run)")


def check_state_keys(state: Mapping[str, torch.Tensor], expected: Mapping[str, torch.Tensor], where: str | Path) -> None:
    """Raise `ModelFileError` naming ``where`` and the tensor when ``state`` lacks a tensor of
    ``expected`` (the network built from the config), has one it does not know, or one of
    another shape."""
    for name in expected:
        if name not in state:
            raise ModelFileError(f"{where}: tensor {name!r} is missing")
    for name, t in state.items():
        if name not in expected:
            raise ModelFileError(f"{where}: unexpected tensor {name!r} (not part of the network its config describes)")
        if tuple(t.shape) != tuple(expected[name].shape):
            raise ModelFileError(f"{where}: tensor {name!r} has shape {tuple(t.shape)}, the config's network needs "
                                 f"{tuple(expected[name].shape)}")


def save_model(state: Mapping[str, torch.Tensor], config: dict[str, Any], path: str | Path) -> Path:
    """Write weights and config to a folder (``model.safetensors`` + ``config.json``) or to a
    ``.safetensors`` file (config beside it as ``<stem>.json``). The weights' metadata holds
    the config and the sha256 of every tensor (`tensor_checksums`). Refuses (`ModelFileError`)
    weights that `read_model` would refuse (`check_weights`). Returns the weights file."""
    from safetensors.torch import save

    path = Path(path)
    weights_file, config_file = model_files(path)
    tensors = {k: v.detach().cpu().contiguous() for k, v in state.items()}
    check_weights(tensors, f"{weights_file}: refusing to save")
    weights_file.parent.mkdir(parents=True, exist_ok=True)
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "config": config}
    inner = {**meta, "tensors_sha256": tensor_checksums(tensors)}
    write_atomic(weights_file, save(tensors, metadata={"cina": json.dumps(inner)}))
    write_atomic(config_file, (json.dumps(meta, indent=2) + "\n").encode())
    return weights_file


def write_atomic(path: Path, data: bytes) -> None:
    """Write a file so that it is either complete or absent: a temporary file beside it, then a
    rename. A failed write (a full disk, a file-size limit) raises OSError naming `path` and
    leaves any previous version of the file as it was."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from None


def config_difference(edited: Any, saved: Any, prefix: str = "") -> str | None:
    """The first field where two config dicts differ, as 'FIELD is A but the weights were saved
    with B', or None."""
    if isinstance(edited, dict) and isinstance(saved, dict):
        for key in sorted(set(edited) | set(saved), key=str):
            field = f"{prefix}{key}"
            if key not in edited:
                return f"{field} is missing but the weights were saved with {saved[key]!r}"
            if key not in saved:
                return f"{field} is {edited[key]!r} but the weights were saved without it"
            diff = config_difference(edited[key], saved[key], f"{field}.")
            if diff:
                return diff
        return None
    numbers = {type(edited), type(saved)} <= {int, float}  # 30 and 30.0 agree; True and 1 do not
    if edited != saved or (type(edited) is not type(saved) and not numbers):
        return f"{prefix.rstrip('.')} is {edited!r} but the weights were saved with {saved!r}"
    return None


def read_model(path: str | Path, map_location: str | torch.device = "cpu") -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """(config dict, state dict) of a model written by `save_model`; ``path`` may also name a
    shipped model ("default", "fast") unless a file or folder of that name exists.

    Checks, each failure a one-line `ModelFileError` naming the file (and the field or tensor):
    the weights file is a readable safetensors file; config.json (when present) is valid JSON
    and agrees field by field with the config stored inside the weights; every tensor recorded
    at save time is there, and no other; every floating tensor is finite with |w| <
    `MAX_ABS_WEIGHT`; every tensor matches its recorded sha256. Files written before checksums
    existed (no ``tensors_sha256`` in their metadata) load with the other checks applied.
    """
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = named_shipped_model(path) or Path(path)
    weights_file, config_file = model_files(path)
    if not weights_file.is_file():
        raise ModelNotFoundError(f"no CInA weights at {weights_file}")
    try:
        with safe_open(str(weights_file), framework="pt") as f:
            raw = (f.metadata() or {}).get("cina")
        state = load_file(str(weights_file), device=str(map_location))
    except Exception as exc:  # safetensors raises its own error types (header, truncation, ...)
        raise ModelFileError(f"{weights_file}: not a readable safetensors file ({_first_line(exc)})") from None
    inner = None
    if raw is not None:
        try:
            inner = json.loads(raw)
            if not isinstance(inner, dict) or not isinstance(inner.get("config"), dict):
                raise ValueError("no config in it")
        except ValueError as exc:
            raise ModelFileError(f"{weights_file}: malformed CInA metadata ({_first_line(exc)})") from None
    if config_file.is_file():
        try:
            meta = json.loads(config_file.read_text())
        except (ValueError, UnicodeDecodeError) as exc:
            raise ModelFileError(f"{config_file}: not valid JSON ({_first_line(exc)})") from None
        if not isinstance(meta, dict):
            raise ModelFileError(f"{config_file}: expected a JSON object")
    elif inner is None:
        raise ModelFileError(f"{weights_file} has no CInA config (no {config_file.name}, no metadata)")
    else:
        meta = inner
    if meta.get("format") != FORMAT or meta.get("format_version") != FORMAT_VERSION:
        raise ModelFileError(f"{config_file} is not a {FORMAT} v{FORMAT_VERSION} config: {meta.get('format')!r} v{meta.get('format_version')!r}")
    if not isinstance(meta.get("config"), dict):
        raise ModelFileError(f"{config_file}: no 'config' object")
    if inner is not None and meta is not inner:
        diff = config_difference(meta["config"], inner["config"])
        if diff:
            raise ModelFileError(f"{config_file}: {diff}")
    sums = inner.get("tensors_sha256") if inner is not None else None
    if sums is not None:
        for name in sums:
            if name not in state:
                raise ModelFileError(f"{weights_file}: tensor {name!r} is missing (the file was saved with it)")
        for name in state:
            if name not in sums:
                raise ModelFileError(f"{weights_file}: unexpected tensor {name!r} (not in the file when it was saved)")
    check_weights(state, weights_file)
    if sums is not None:
        for name, digest in tensor_checksums(state).items():
            if digest != sums[name]:
                raise ModelFileError(f"{weights_file}: tensor {name!r} does not match the sha256 recorded when it was "
                                     "saved (the file was modified or is corrupt)")
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
