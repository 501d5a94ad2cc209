"""Which tasks of a corpus a stream reads: filters on the manifest's per-task columns (and the
split), evaluated without opening a shard."""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import numpy as np

from causalgen.store import SPLITS, split_codes

__all__ = ["select_tasks"]

_OPS: dict[str, Callable[[np.ndarray, Any], np.ndarray]] = {
    "<": np.less,
    "<=": np.less_equal,
    ">": np.greater,
    ">=": np.greater_equal,
    "==": np.equal,
    "!=": np.not_equal,
}


def _column(columns: Mapping[str, np.ndarray], name: str, cache: dict[str, np.ndarray]) -> np.ndarray:
    if name in columns:
        return np.asarray(columns[name])
    if name == "split":
        # Not a manifest column: a pure function of each task's seed (causalgen.store.splits).
        if "split" not in cache:
            cache["split"] = np.asarray(SPLITS, dtype=object)[split_codes(columns["seed"])]
        return cache["split"]
    raise ValueError(f"where: unknown column {name!r}; manifest columns are {', '.join(sorted(columns))} (and 'split')")


def _condition(col: np.ndarray, cond: Any, name: str) -> np.ndarray:
    if callable(cond):
        mask = np.asarray(cond(col))
    elif isinstance(cond, tuple) and len(cond) == 2 and isinstance(cond[0], str) and cond[0] in _OPS:
        mask = _OPS[cond[0]](col, cond[1])
    elif isinstance(cond, (list, tuple, set, frozenset)):
        mask = np.isin(col, list(cond))
    else:
        mask = col == cond
    mask = np.asarray(mask)
    if mask.dtype != bool or mask.shape != col.shape:
        raise ValueError(f"where[{name!r}]: the condition must give one bool per task, got {mask.dtype} {mask.shape}")
    return mask


def select_tasks(
    columns: Mapping[str, np.ndarray],
    *,
    split: str | Sequence[str] | None = None,
    where: Mapping[str, Any] | Callable[[Mapping[str, np.ndarray]], np.ndarray] | None = None,
) -> np.ndarray:
    """(T,) bool: which tasks of the manifest columns (`Corpus.columns`) pass the filters.

    split: "train", "validation", "test" or several (`causalgen.store.splits.split_of` on the seed).
    where: column -> condition, all of which must hold. A condition is a callable
        ``f(column) -> bool array``, a comparison ``("<=", 50)``, a collection of allowed values
        (``{"erdos_renyi", "scale_free"}``) or a single value. Or one callable
        ``f(columns) -> bool array`` for conditions across columns.
    """
    n = len(columns["seed"])
    mask = np.ones(n, dtype=bool)
    cache: dict[str, np.ndarray] = {}
    if split is not None:
        wanted = [split] if isinstance(split, str) else list(split)
        bad = [s for s in wanted if s not in SPLITS]
        if bad:
            raise ValueError(f"split: expected some of {', '.join(SPLITS)}, got {bad}")
        mask &= np.isin(_column(columns, "split", cache), wanted)
    if callable(where):
        got = np.asarray(where(columns))
        if got.dtype != bool or got.shape != (n,):
            raise ValueError(f"where: the callable must return ({n},) bool, got {got.dtype} {got.shape}")
        mask &= got
    elif where is not None:
        for name, cond in where.items():
            mask &= _condition(_column(columns, name, cache), cond, name)
    return mask
