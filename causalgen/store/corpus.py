"""Reading a corpus: `open_corpus(path_or_url) -> Corpus`, and `verify_corpus`.

A corpus is a directory (or any fsspec URL: ``file://``, ``memory://``, object
stores) holding ``manifest.json`` and
``shards/shard-NNNNN.zarr`` (or ``.zarr.zip``). The manifest alone answers
"how many tasks, which shard, what summary values" without opening a shard.

Shards are always read whole (one pass over their files, decoded from memory)
and tasks are cut out with numpy: zarr-python 3 costs ~1 ms per slice call, so
per-task zarr reads would cap a loader at a few hundred tasks/s.
"""

from __future__ import annotations

import math
import os
import posixpath
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import numpy as np

from . import shard as shardfmt
from .manifest import MANIFEST_NAME, CorpusError, FormatVersionError, Manifest, ShardRecord, summarise, task_seed
from ..prior.task import Role, Task

__all__ = ["Corpus", "CorpusError", "FormatVersionError", "VerifyReport", "open_corpus", "verify_corpus"]


def _join(root: str, rel: str) -> str:
    return posixpath.join(root.rstrip("/"), rel) if "://" in root else os.path.join(root, rel)


def read_manifest(root: str) -> Manifest:
    """Parse and validate ``root/manifest.json``; `CorpusError` names the problem."""
    location = _join(root, MANIFEST_NAME)
    try:
        if "://" not in root or root.startswith("file://"):
            local = location[len("file://"):] if location.startswith("file://") else location
            base = os.path.dirname(local)
            if os.path.isfile(base):
                raise CorpusError(f"{root}: is a file, expected a corpus directory")
            if not os.path.isdir(base):
                raise CorpusError(f"{root}: no such corpus directory")
            with open(local, "rb") as fh:
                raw = fh.read()
        else:
            fs, path = shardfmt.url_to_fs(location, "corpus")
            with fs.open(path, "rb") as fh:
                raw = fh.read()
    except FileNotFoundError:
        raise CorpusError(f"{location}: missing; not a causalgen corpus (or generation never started)") from None
    except OSError as exc:
        raise CorpusError(f"{location}: cannot read: {exc}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise CorpusError(f"{location}: not UTF-8 text (corrupt?)") from None
    return Manifest.from_json(text, location)


class Corpus:
    """A generated corpus: ``len(corpus)``, ``corpus[i] -> Task``, ``iter_shards()``.

    ``corpus[i]`` loads task i's whole shard into a small LRU cache (most access
    is sequential, and a whole-shard read costs about as much as a few per-task
    zarr reads), then slices it. Returned tasks hold read-only views into the
    cached shard: copy arrays before mutating them.
    """

    def __init__(self, root: str, manifest: Manifest, *, cache_shards: int = 2):
        self.root = root
        self.manifest = manifest
        self.cache_shards = max(0, int(cache_shards))
        self._cache: OrderedDict[int, shardfmt.ShardData] = OrderedDict()
        self._config = None
        self._columns: dict[str, np.ndarray] | None = None
        self._config_sha256 = manifest.config_sha256  # what every shard's attributes must carry

    def __repr__(self) -> str:
        m = self.manifest
        state = "complete" if m.complete else f"incomplete {len(m.shards)}/{m.num_shards} shards"
        return f"Corpus({self.root!r}, {len(self)} tasks, {len(m.shards)} shards, {state})"

    def __len__(self) -> int:
        return self.manifest.tasks_written

    @property
    def config(self):
        """The `TaskConfig` every task was sampled from."""
        if self._config is None:
            from ..prior.config import TaskConfig

            self._config = TaskConfig.from_dict(self.manifest.config)
        return self._config

    @property
    def columns(self) -> dict[str, np.ndarray]:
        """Per-task summary columns from the manifest (no shard is opened), in corpus order."""
        if self._columns is None:
            self._columns = self.manifest.columns()
        return self._columns

    def __getstate__(self) -> dict[str, Any]:
        # Sent to DataLoader workers / other processes: ship the index, not the cached shards.
        state = dict(self.__dict__)
        state["_cache"] = OrderedDict()
        return state

    def task_seed(self, i: int) -> int:
        """The seed task i was sampled with: ``sample_task(corpus.config, corpus.task_seed(i))``."""
        pos, j = self.manifest.locate(i)
        return task_seed(self.manifest.corpus_seed, self.manifest.shards[pos].first_task + j)

    def shard_location(self, pos: int) -> str:
        return _join(self.root, self.manifest.shards[pos].path)

    def read_shard(self, pos: int, *, verify: bool = False) -> shardfmt.ShardData:
        """Read and decode shard `pos` (position in ``manifest.shards``) in one pass.

        Always (cheap): the metadata files against the manifest's
        ``metadata_sha256`` (when recorded), every float value finite, the layout,
        and the shard's corpus attributes against the manifest.
        verify: also check its sha256 against the manifest (the bytes are in
        memory anyway, so this costs only the hashing).
        """
        record = self.manifest.shards[pos]
        location = self.shard_location(pos)
        if record.path.endswith(shardfmt.ZIP_SUFFIX):
            raw = shardfmt.read_bytes(location)
            if verify and shardfmt.file_checksum(raw) != record.sha256:
                raise shardfmt.ShardError(f"{location}: sha256 mismatch with {MANIFEST_NAME}")
            files = shardfmt.unzip(raw, location)
        else:
            files = shardfmt.read_shard_files(location)
            if verify and shardfmt.checksum(files) != record.sha256:
                raise shardfmt.ShardError(f"{location}: sha256 mismatch with {MANIFEST_NAME}")
        problem = metadata_problem(files, record, location)
        if problem:
            raise shardfmt.ShardError(problem)
        data = shardfmt.decode_shard(files, location)
        if len(data) != record.num_tasks or data.attrs["first_task"] != record.first_task:
            raise shardfmt.ShardError(
                f"{location}: holds tasks {data.attrs['first_task']}..+{len(data)}, {MANIFEST_NAME} says {record.first_task}..+{record.num_tasks}"
            )
        problem = identity_problem(data.attrs, self.manifest.corpus_seed, self._config_sha256)
        if problem:
            raise shardfmt.ShardError(f"{location}: {problem}")
        return data

    def shard(self, pos: int) -> shardfmt.ShardData:
        """Shard `pos`, from the LRU cache when possible."""
        return shardfmt.lru_get(self._cache, pos, self.cache_shards, self.read_shard)

    def __getitem__(self, i: int) -> Task:
        if isinstance(i, (bool, np.bool_)) or not isinstance(i, (int, np.integer)):
            raise TypeError(f"corpus indices must be integers, got {type(i).__name__}")
        pos, j = self.manifest.locate(int(i))
        return self.shard(pos).task(j)

    def __iter__(self) -> Iterator[Task]:
        for data in self.iter_shards():
            yield from data

    def iter_shards(self, *, verify: bool = False) -> Iterator[shardfmt.ShardData]:
        """Every shard in order, each read whole; ``for task in shard`` slices in numpy."""
        for pos in range(len(self.manifest.shards)):
            yield self.read_shard(pos, verify=verify)


def open_corpus(path_or_url: str | os.PathLike, *, allow_incomplete: bool = False, cache_shards: int = 2) -> Corpus:
    """Open a generated corpus directory or URL (local path, ``file://``, ``memory://``, ...).

    (`causalgen.open_corpus` also opens published repositories; this one reads what
    `generate_corpus` wrote.) Raises `CorpusError` (one line, naming the file) for a missing or
    malformed manifest, `FormatVersionError` for a newer format, and refuses a corpus whose
    generation has not finished unless `allow_incomplete` (then only the written shards are
    visible, in shard order).
    """
    root = os.fspath(path_or_url)
    manifest = read_manifest(root)
    if not manifest.complete and not allow_incomplete:
        raise CorpusError(
            f"{_join(root, MANIFEST_NAME)}: corpus is incomplete ({len(manifest.shards)}/{manifest.num_shards} shards); "
            "re-run the same causalgen generate command to finish it"
        )
    problem = manifest.config_problem(_join(root, MANIFEST_NAME))
    if problem:
        raise CorpusError(f"{problem}; `causalgen verify` checks it against the shards")
    return Corpus(root, manifest, cache_shards=cache_shards)


def metadata_problem(files, record: ShardRecord, location: str) -> str | None:
    """A one-line problem if the shard's zarr.json files differ from the manifest's metadata_sha256."""
    if record.metadata_sha256 is None or shardfmt.metadata_checksum(files) == record.metadata_sha256:
        return None
    return (f"{location}: metadata (zarr.json) differs from metadata_sha256 in {MANIFEST_NAME}: "
            f"{shardfmt.describe_metadata_damage(files)}; the shard is damaged, regenerate it")


def identity_problem(attrs, corpus_seed: int, config_sha256: str) -> str | None:
    """The shard's corpus attributes (when it has them) against the manifest's seed and config."""
    if "corpus_seed" in attrs and attrs["corpus_seed"] != corpus_seed:
        return f"belongs to another corpus: corpus_seed {attrs['corpus_seed']} in its attributes, {MANIFEST_NAME} says {corpus_seed}"
    if "config_sha256" in attrs and attrs["config_sha256"] != config_sha256:
        return (f"was generated from another config: config_sha256 {attrs['config_sha256'][:12]}... in its attributes, "
                f"the config in {MANIFEST_NAME} hashes to {config_sha256[:12]}...")
    return None


# -------------------------------------------------------------------- verify


@dataclass
class VerifyReport:
    """Outcome of `verify_corpus`: problems in shard order (empty = OK)."""

    root: str
    shards_checked: int = 0
    tasks_checked: int = 0
    bytes_checked: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def check_values(data: shardfmt.ShardData, corpus_seed: int | None = None) -> str | None:
    """First violated value invariant of a decoded shard, or None.

    Finite data and ground truth, binary t, y == where(t, y1, y0) exactly,
    propensities in [0, 1], valid role codes and covariate node ids, a DAG in
    topological order, seeds matching the corpus seed scheme, parsable meta.
    """
    a = data.arrays
    for name in ("x_values", "y", "y0", "y1", "propensity", "ate", "sate", "att"):
        bad = ~np.isfinite(a[name])
        if bad.any():
            return f"array {name!r} has {int(bad.sum())} non-finite values (first at {int(np.flatnonzero(bad)[0])})"
    if not (np.isfinite(a["ate_se"]) & (a["ate_se"] >= 0)).all():
        return "array 'ate_se' has negative or non-finite values"
    if not np.isin(a["t"], (0, 1)).all():
        return "array 't' has values other than 0 and 1"
    if not np.array_equal(a["y"], np.where(a["t"] == 1, a["y1"], a["y0"])):
        return "array 'y' differs from where(t == 1, y1, y0)"
    p = a["propensity"]
    if ((p < 0) | (p > 1)).any():
        return "array 'propensity' has values outside [0, 1]"
    roles = a["roles"]
    if ((roles < 0) | (roles > max(Role))).any():
        return "array 'roles' has unknown role codes"
    n = len(data)
    first = data.attrs["first_task"]
    if not np.array_equal(a["task_index"], np.arange(first, first + n)):
        return "array 'task_index' is not first_task + 0..n-1"
    if corpus_seed is not None:
        expected = [task_seed(corpus_seed, int(i)) for i in a["task_index"]]
        if not np.array_equal(a["seed"], np.asarray(expected, dtype=np.int64)):
            return "array 'seed' does not follow the corpus seed scheme"
    no, ao, co = a["node_offsets"], a["adjacency_offsets"], a["covariate_offsets"]
    for j in range(n):
        jn = int(a["n_nodes"][j])
        adj = a["adjacency_values"][ao[j]:ao[j + 1]].reshape(jn, jn)
        if np.tril(adj).any():
            return f"task {first + j}: adjacency has an edge from a higher to a lower node id (not topological)"
        cov = a["covariate_nodes"][co[j]:co[j + 1]]
        if cov.size and (cov.min() < 0 or cov.max() >= jn):
            return f"task {first + j}: covariate_nodes out of range for {jn} nodes"
        r = roles[no[j]:no[j + 1]]
        if (r == Role.TREATMENT).sum() != 1 or (r == Role.OUTCOME).sum() != 1:
            return f"task {first + j}: needs exactly one treatment and one outcome node"
        try:
            meta = data.meta(j)
        except (ValueError, UnicodeDecodeError) as exc:
            return f"task {first + j}: meta is not valid JSON ({exc})"
        if "seed" in meta and meta["seed"] != int(a["seed"][j]):
            return f"task {first + j}: meta seed {meta['seed']} differs from the seed column {int(a['seed'][j])}"
    return None


def verify_corpus(path_or_url: str | os.PathLike, *, progress: Callable[[int], None] | None = None) -> VerifyReport:
    """Check a generated corpus end to end: manifest, every shard's bytes, structure and values.

    Problems are collected in shard order, each one line naming the shard (or
    the manifest) and what is wrong. A newer format raises `FormatVersionError`;
    an unreadable manifest raises `CorpusError`.
    """
    root = os.fspath(path_or_url)
    report = VerifyReport(root=root)
    manifest = read_manifest(root)
    problem = manifest.config_problem(_join(root, MANIFEST_NAME))
    if problem:
        report.problems.append(problem)
    if not manifest.complete:
        report.problems.append(
            f"{_join(root, MANIFEST_NAME)}: corpus is incomplete ({len(manifest.shards)}/{manifest.num_shards} shards written)"
        )
    corpus = Corpus(root, manifest, cache_shards=0)
    for pos, record in enumerate(manifest.shards):
        problem = _verify_shard(corpus, pos, record)
        report.shards_checked += 1
        report.tasks_checked += record.num_tasks
        report.bytes_checked += record.bytes
        if problem:
            report.problems.append(problem)
        if progress is not None:
            progress(record.num_tasks)
    return report


def _verify_shard(corpus: Corpus, pos: int, record: ShardRecord) -> str | None:
    location = corpus.shard_location(pos)
    try:
        if record.path.endswith(shardfmt.ZIP_SUFFIX):
            raw = shardfmt.read_bytes(location)
            n_files, n_bytes, digest = 1, len(raw), shardfmt.file_checksum(raw)
            files = shardfmt.unzip(raw, location)
        else:
            files = shardfmt.read_shard_files(location)
            n_files, n_bytes, digest = len(files), sum(len(b) for b in files.values()), shardfmt.checksum(files)
        size_problem = None
        if (n_files, n_bytes) != (record.files, record.bytes):
            size_problem = f"{location}: {n_files} files / {n_bytes} bytes on disk, {MANIFEST_NAME} says {record.files} / {record.bytes} (truncated or changed)"
        # Metadata first, then decode, before judging the checksum: both name the
        # array that was damaged, which is more useful than "sha256 mismatch".
        problem = metadata_problem(files, record, location)
        if problem:
            return problem
        data = shardfmt.decode_shard(files, location)
        if size_problem:
            return size_problem
        if digest != record.sha256:
            return f"{location}: sha256 mismatch with {MANIFEST_NAME} (contents changed)"
        a = data.attrs
        if (a["shard_index"], a["first_task"], a["n_tasks"]) != (record.index, record.first_task, record.num_tasks):
            return f"{location}: attributes say shard {a['shard_index']} tasks {a['first_task']}..+{a['n_tasks']}, {MANIFEST_NAME} says shard {record.index} tasks {record.first_task}..+{record.num_tasks}"
        problem = identity_problem(a, corpus.manifest.corpus_seed, corpus.manifest.config_sha256)
        if problem:
            return f"{location}: {problem}"
        problem = check_values(data, corpus.manifest.corpus_seed)
        if problem:
            return f"{location}: {problem}"
        summary, rejections = summarise(data.arrays, [data.meta(j) for j in range(len(data))])
        for name, values in summary.items():
            if name not in record.tasks or not _same(values, record.tasks[name]):
                return f"{location}: summary column {name!r} in {MANIFEST_NAME} disagrees with the shard"
        if rejections != record.qc_rejections:
            return f"{location}: qc_rejections in {MANIFEST_NAME} disagree with the shard"
    except shardfmt.ShardError as exc:
        return str(exc)
    except Exception as exc:  # anything else a damaged shard provokes: report it and go on to the next shard
        return f"{location}: cannot be read: {shardfmt._one_line(exc)}"
    return None


def _same(a: list, b: list) -> bool:
    if len(a) != len(b):
        return False
    for x, y in zip(a, b):
        if isinstance(x, float) and isinstance(y, float) and math.isnan(x) and math.isnan(y):
            continue
        if x != y or type(x) is not type(y) and not (isinstance(x, (int, float)) and isinstance(y, (int, float))):
            return False
    return True
