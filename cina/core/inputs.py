"""Datasets in: validation of one (x, t, y) in numpy, and padding many into the batch contract
(`collate_datasets`) that `cina.core.model.CInA` consumes."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

__all__ = ["check_dataset", "collate_datasets"]


def check_dataset(x, t, y=None, *, min_units: int = 2, min_per_arm: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Validate one dataset and return float64 ``x (N, d)``, ``t (N,)`` in {0,1}, ``y (N,)``.

    Raises ValueError naming the problem (shape, NaN/inf, non-binary treatment, an arm with
    fewer than ``min_per_arm`` units).
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2:
        raise ValueError(f"x must be 2-D (n_units, n_features), got shape {x.shape}")
    n = x.shape[0]
    if n < min_units:
        raise ValueError(f"need at least {min_units} units, got {n}")
    if not np.all(np.isfinite(x)):
        bad = sorted(set(np.argwhere(~np.isfinite(x))[:, 1].tolist()))
        raise ValueError(f"x contains NaN or inf (feature columns {bad[:10]})")
    t = np.asarray(t)
    if t.shape != (n,):
        raise ValueError(f"t must have shape ({n},) to match x, got {t.shape}")
    t = t.astype(np.float64)
    if not np.all((t == 0) | (t == 1)):
        raise ValueError(f"t must be binary 0/1, got values {np.unique(t)[:10]}")
    n_t = int(t.sum())
    if min(n_t, n - n_t) < min_per_arm:
        raise ValueError(f"both arms need at least {min_per_arm} unit(s): {n_t} treated, {n - n_t} control")
    if y is not None:
        y = np.asarray(y, dtype=np.float64)
        if y.shape != (n,):
            raise ValueError(f"y must have shape ({n},) to match x, got {y.shape}")
        if not np.all(np.isfinite(y)):
            raise ValueError("y contains NaN or inf")
    return x, t, y


def collate_datasets(
    xs: Sequence[np.ndarray],
    ts: Sequence[np.ndarray],
    ys: Sequence[np.ndarray] | None = None,
    *,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
) -> dict[str, torch.Tensor]:
    """Pad a list of datasets into the batch contract (x, t, unit_mask, feature_mask[, y]).

    Args:
        xs: B arrays (N_m, d_m); ts: B arrays (N_m,) 0/1; ys: B arrays (N_m,) or None.
    """
    B = len(xs)
    n_max = max(len(t) for t in ts)
    d_max = max(np.asarray(x).reshape(len(t), -1).shape[1] for x, t in zip(xs, ts))
    x = torch.zeros(B, n_max, d_max, dtype=dtype)
    t = torch.zeros(B, n_max, dtype=dtype)
    unit_mask = torch.zeros(B, n_max, dtype=torch.bool)
    feature_mask = torch.zeros(B, d_max, dtype=torch.bool)
    y = torch.zeros(B, n_max, dtype=dtype) if ys is not None else None
    for i in range(B):
        # np.array copies: read-only inputs (zarr, memory maps) would make torch warn
        xi = torch.as_tensor(np.array(xs[i], dtype=np.float64).reshape(len(ts[i]), -1), dtype=dtype)
        n, d = xi.shape
        x[i, :n, :d] = xi
        t[i, :n] = torch.as_tensor(np.array(ts[i], dtype=np.float64), dtype=dtype)
        unit_mask[i, :n] = True
        feature_mask[i, :d] = True
        if y is not None:
            y[i, :n] = torch.as_tensor(np.array(ys[i], dtype=np.float64), dtype=dtype)
    batch = {"x": x, "t": t, "unit_mask": unit_mask, "feature_mask": feature_mask}
    if y is not None:
        batch["y"] = y
    return {k: v.to(device) for k, v in batch.items()}
