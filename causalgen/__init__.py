"""causalgen: random structural causal models -> causal-inference datasets with exact ground truth.

    >>> import causalgen
    >>> task = causalgen.sample_task("default", seed=0)
    >>> task.x.shape, task.ate

Three rooms, in the order data flows through them (each imports only the ones before it):

- `causalgen.prior`: from a config and a seed to a `Task` (graph, roles, mechanisms, noise,
  the SCM in both worlds, ground truth, quality control, presets);
- `causalgen.store`: tasks to and from sharded zarr corpora (shards, manifest, generation,
  reading, verification, splits);
- `causalgen.hub`: a corpus as a Hugging Face dataset repository (Parquet view, card,
  published layout, publishing, the ``hf://`` reader).

This top level only re-exports the public names and opens either kind of corpus.
"""

from __future__ import annotations

import os
from typing import Callable

from ._version import __version__
from .hub import PublishedCorpus, is_published, open_published, verify_published
from .prior import (
    PRESETS,
    ROLE_NAMES,
    ConfigError,
    Role,
    SamplingError,
    Task,
    TaskConfig,
    load_config,
    sample_task,
    sample_tasks,
)
from .prior.datafile import DataFileError, read_csv_columns
from .prior.presets import read_config_file
from .store import Corpus, CorpusError, VerifyReport
from .store import open_corpus as _open_generated
from .store import verify_corpus as _verify_generated


def open_corpus(path_or_url: str | os.PathLike, *, allow_incomplete: bool = False,
                cache_shards: int = 2) -> Corpus | PublishedCorpus:
    """Open a generated corpus or a published repository; both read alike.

    ``corpus[i] -> Task``, ``len(corpus)``, ``corpus.columns``, ``corpus.iter_shards()``.
    path_or_url: a local path or fsspec URL of a corpus written by ``causalgen generate``, or a
    published repository (its local folder, or ``hf://datasets/ORG/NAME[@REVISION]``).
    allow_incomplete: open a corpus whose generation has not finished (generated corpora only).
    Raises `CorpusError` naming the file for a missing or malformed manifest.
    """
    root = os.fspath(path_or_url)
    if is_published(root):
        return open_published(root, cache_shards=cache_shards)
    return _open_generated(root, allow_incomplete=allow_incomplete, cache_shards=cache_shards)


def verify_corpus(path_or_url: str | os.PathLike, *,
                  progress: Callable[[int], None] | None = None) -> VerifyReport:
    """Check a generated corpus or a published repository end to end (checksums, structure,
    values); the report's ``problems`` name each bad shard or file, empty when all is well."""
    root = os.fspath(path_or_url)
    if is_published(root):
        return verify_published(root, progress=progress)
    return _verify_generated(root, progress=progress)


__all__ = [
    "ConfigError",
    "Corpus",
    "DataFileError",
    "CorpusError",
    "PRESETS",
    "PublishedCorpus",
    "ROLE_NAMES",
    "Role",
    "SamplingError",
    "Task",
    "TaskConfig",
    "VerifyReport",
    "__version__",
    "load_config",
    "open_corpus",
    "read_config_file",
    "read_csv_columns",
    "sample_task",
    "sample_tasks",
    "verify_corpus",
]
