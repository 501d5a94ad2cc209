"""Reading a published repository: a local folder or ``hf://datasets/ORG/NAME[@REVISION]``.

`open_published` returns a `PublishedCorpus`, which reads like a `Corpus`
(``len``, ``corpus[i]``, iteration, ``columns``, ``config``, ``task_seed``,
``manifest.shards``, ``read_shard``) over the packed zarr shards, in shard order
(split by split); ``by_task_index(i)`` is the source corpus's task i and
``.split(name)`` a view of one split.

Remote shards are fetched whole (one request per shard, no partial zip reads),
through the standard Hugging Face cache (``hf_hub_download``, so
``HF_HUB_OFFLINE=1`` works once a shard is cached) and every file is checked
against the sha256 in ``manifest.json`` before it is decoded. All files come from
the one commit the manifest was read from, so a push in the middle of a read
cannot mix two versions.

`causalgen.open_corpus` / `causalgen.verify_corpus` hand any location for which
`is_published` is true to `open_published` / `verify_published`.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import re
from collections import OrderedDict
from typing import Callable, Iterator
from urllib.parse import unquote

import numpy as np

from ..store import shard as shardfmt
from ..store.manifest import CorpusError, summarise
from .layout import CARD_NAME, MANIFEST_NAME, PUBLISHED_FORMAT, PublishedManifest
from ..store.splits import SPLITS, split_of
from ..prior.task import Task

HF_PREFIX = "hf://datasets/"
_REPO_PART = r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?"
_HF_URL = re.compile(rf"^hf://datasets/(?P<repo>{_REPO_PART}/{_REPO_PART})(?:@(?P<rev>[^/]+))?/?$")


def parse_hf_url(url: str) -> tuple[str, str | None]:
    """``hf://datasets/ORG/NAME[@REVISION]`` -> (repo id, revision or None).

    A revision with slashes (``refs/pr/1``) is written URL-encoded
    (``@refs%2Fpr%2F1``), as `huggingface_hub.HfFileSystem` does.
    """
    m = _HF_URL.match(url)
    if not m or "--" in m.group("repo") or ".." in m.group("repo"):
        raise CorpusError(f"{url}: expected hf://datasets/ORG/NAME or hf://datasets/ORG/NAME@REVISION (the repository root)")
    return m.group("repo"), unquote(m.group("rev")) if m.group("rev") else None


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------- file sources


class _Source:
    """Where a repository's files come from. `fetch` returns verified whole files."""

    root: str

    def location(self, path: str) -> str:
        return posixpath.join(self.root.rstrip("/"), path) if "://" in self.root else os.path.join(self.root, path)

    def read(self, path: str) -> bytes:  # pragma: no cover - abstract
        raise NotImplementedError

    def manifest_text(self) -> str:
        where = self.location(MANIFEST_NAME)
        raw = self.read(MANIFEST_NAME)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise CorpusError(f"{where}: not UTF-8 text (corrupt?)") from None

    def fetch(self, path: str, size: int, sha256: str) -> bytes:
        """The whole file, checked against its manifest size and sha256."""
        data = self.read(path)
        problem = _mismatch(data, size, sha256)
        if problem:
            raise shardfmt.ShardError(f"{self.location(path)}: {problem}")
        return data


def _mismatch(data: bytes, size: int, sha256: str) -> str | None:
    if len(data) != size:
        return f"{len(data)} bytes, {MANIFEST_NAME} says {size} (truncated or changed)"
    if _sha256(data) != sha256:
        return f"sha256 mismatch with {MANIFEST_NAME} (contents changed)"
    return None


class _LocalSource(_Source):
    """A published folder on this machine (or any fsspec URL): files read in place."""

    def __init__(self, root: str):
        self.root = root

    def read(self, path: str) -> bytes:
        location = self.location(path)
        try:
            if "://" not in self.root or self.root.startswith("file://"):
                with open(location[len("file://"):] if location.startswith("file://") else location, "rb") as fh:
                    return fh.read()
            import fsspec

            with fsspec.open(location, "rb") as fh:
                return fh.read()
        except FileNotFoundError:
            raise shardfmt.ShardError(f"{location}: missing") from None
        except OSError as exc:
            raise shardfmt.ShardError(f"{location}: cannot read: {exc}") from None


class _HubSource(_Source):
    """A Hub dataset repository, pinned to one commit, read through the HF cache."""

    def __init__(self, url: str, *, cache_dir: str | None = None, token: str | bool | None = None):
        self.root = url.rstrip("/")
        self.repo_id, self.revision = parse_hf_url(url)
        self.cache_dir = cache_dir
        self.token = token
        self.commit: str | None = None  # set by the first download (the manifest's)

    def location(self, path: str) -> str:
        return f"{HF_PREFIX}{self.repo_id}@{self.commit or self.revision or 'main'}/{path}"

    def _download(self, path: str, *, force: bool = False) -> str:
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, OfflineModeIsEnabled

        try:
            return hf_hub_download(
                self.repo_id, path, repo_type="dataset", revision=self.commit or self.revision,
                cache_dir=self.cache_dir, token=self.token, force_download=force,
            )
        except (LocalEntryNotFoundError, OfflineModeIsEnabled):
            raise CorpusError(f"{self.location(path)}: not in the local Hugging Face cache and downloads are off (HF_HUB_OFFLINE)") from None
        except HfHubHTTPError as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise CorpusError(f"{self.location(path)}: download failed: {first}") from None

    def read(self, path: str) -> bytes:
        local = self._download(path)
        if self.commit is None:
            # hf_hub_download returns <cache>/snapshots/<commit>/<path>: pin every
            # later download to the commit this first file (the manifest) came from.
            snapshot = os.path.dirname(local) if "/" not in path else local[: -len(path) - 1]
            name = os.path.basename(snapshot)
            if re.fullmatch(r"[0-9a-f]{40}", name):
                self.commit = name
        with open(local, "rb") as fh:
            return fh.read()

    def fetch(self, path: str, size: int, sha256: str) -> bytes:
        data = self.read(path)
        if _mismatch(data, size, sha256) is None:
            return data
        # A damaged cache entry (interrupted copy, disk error): fetch it again once.
        from huggingface_hub import constants

        if not constants.HF_HUB_OFFLINE:
            with open(self._download(path, force=True), "rb") as fh:
                data = fh.read()
        problem = _mismatch(data, size, sha256)
        if problem:
            raise shardfmt.ShardError(f"{self.location(path)}: {problem}")
        return data


def _source_for(path_or_url: str, *, cache_dir: str | None = None, token: str | bool | None = None) -> _Source:
    if path_or_url.startswith("hf://"):
        return _HubSource(path_or_url, cache_dir=cache_dir, token=token)
    return _LocalSource(path_or_url)


def is_published(path_or_url: str | os.PathLike) -> bool:
    """True for a Hub repository root (``hf://datasets/ORG/NAME[@REVISION]``) and for
    folders (local or fsspec URLs) whose manifest.json is a published-repository manifest.

    A deeper ``hf://`` path (a raw corpus stored inside a repository) is not a
    published repository: the corpus reader opens it through fsspec. Cheap: reads
    at most the first 4 KB of the manifest, and nothing at all for ``hf://``.
    """
    root = os.fspath(path_or_url)
    if root.startswith("hf://"):
        return bool(_HF_URL.match(root))
    try:
        if "://" not in root or root.startswith("file://"):
            local = root[len("file://"):] if root.startswith("file://") else root
            with open(os.path.join(local, MANIFEST_NAME), "rb") as fh:
                head = fh.read(4096)
        else:
            import fsspec

            with fsspec.open(posixpath.join(root.rstrip("/"), MANIFEST_NAME), "rb") as fh:
                head = fh.read(4096)
    except Exception:  # missing or unreadable: not ours to judge, the corpus reader reports it
        return False
    return f'"format": "{PUBLISHED_FORMAT}"'.encode() in head


# ---------------------------------------------------------------- the reader


class PublishedCorpus:
    """Tasks of a published repository, read from its zarr shards; reads like a `Corpus`.

    Order is shard order, as for a `Corpus`: split by split (train, validation,
    test), corpus order within a split. Row k of ``columns`` describes
    ``corpus[k]``; ``columns["task_index"][k]`` (or ``task_index(k)``) is its index
    in the source corpus, and ``by_task_index(i)`` returns the source corpus's
    task i. ``manifest.shards`` lists this view's shards only, so
    ``read_shard(pos)`` / ``manifest.shards[pos]`` line up with the columns (what
    `cina.data.TaskStream` relies on). Returned tasks hold read-only views into a
    cached shard (copy arrays before mutating them).
    """

    def __init__(self, source: _Source, manifest: PublishedManifest, *, splits: tuple[str, ...] = SPLITS, cache_shards: int = 2):
        self._source = source
        self.root = source.root
        self.repository_manifest = manifest
        self.splits = tuple(s for s in SPLITS if s in splits)
        self.manifest = manifest if self.splits == SPLITS else manifest.only(self.splits)
        self.cache_shards = max(0, int(cache_shards))
        self._cache: OrderedDict[int, shardfmt.ShardData] = OrderedDict()
        self._config = None
        self._columns = self.manifest.columns()
        counts = np.asarray([r.num_tasks for r in self.manifest.shards], dtype=np.int64)
        self._pos = np.repeat(np.arange(len(counts), dtype=np.int64), counts)
        self._row = np.arange(self._pos.shape[0], dtype=np.int64) - np.repeat(np.cumsum(counts) - counts, counts)
        self._by_index: np.ndarray | None = None

    def __repr__(self) -> str:
        part = "" if self.splits == SPLITS else f", split={'+'.join(self.splits)}"
        return f"PublishedCorpus({self.root!r}, {len(self)} tasks, {len(self.manifest.shards)} shards{part})"

    def __len__(self) -> int:
        return int(self._pos.shape[0])

    def __getstate__(self) -> dict:
        # Sent to DataLoader workers: ship the index, not the cached shards.
        state = dict(self.__dict__)
        state["_cache"] = OrderedDict()
        return state

    def split(self, name: str) -> "PublishedCorpus":
        """A view of one split (``train``, ``validation`` or ``test``)."""
        if name not in SPLITS:
            raise ValueError(f"split: expected one of {', '.join(SPLITS)}, got {name!r}")
        return PublishedCorpus(self._source, self.repository_manifest, splits=(name,), cache_shards=self.cache_shards)

    @property
    def config(self):
        """The `TaskConfig` every task was sampled from."""
        if self._config is None:
            from ..prior.config import TaskConfig

            self._config = TaskConfig.from_dict(self.manifest.config)
        return self._config

    @property
    def columns(self) -> dict[str, np.ndarray]:
        """Per-task columns in shard order: task_index, split and the corpus summaries (no shard is read)."""
        return self._columns

    def _check_index(self, i) -> int:
        if isinstance(i, (bool, np.bool_)) or not isinstance(i, (int, np.integer)):
            raise TypeError(f"corpus indices must be integers, got {type(i).__name__}")
        n = len(self)
        if not -n <= int(i) < n:
            raise IndexError(f"task {int(i)} out of range for a corpus of {n} tasks")
        return int(i) % n

    def task_index(self, i: int) -> int:
        """Index in the source corpus of task i of this view."""
        return int(self._columns["task_index"][self._check_index(i)])

    def task_seed(self, i: int) -> int:
        """Seed of task i: ``sample_task(corpus.config, corpus.task_seed(i))`` regenerates it."""
        return int(self._columns["seed"][self._check_index(i)])

    def by_task_index(self, index: int) -> Task:
        """The task at `index` of the source corpus (equals ``open_corpus(source)[index]``)."""
        if self._by_index is None:
            lookup = np.full(self.manifest.num_tasks, -1, dtype=np.int64)
            lookup[self._columns["task_index"]] = np.arange(len(self))
            self._by_index = lookup
        if isinstance(index, (bool, np.bool_)) or not isinstance(index, (int, np.integer)):
            raise TypeError(f"task indices must be integers, got {type(index).__name__}")
        if not 0 <= int(index) < self._by_index.shape[0] or self._by_index[int(index)] < 0:
            raise IndexError(f"task index {int(index)} is not in {self!r}")
        return self[int(self._by_index[int(index)])]

    def read_shard(self, pos: int, *, verify: bool = True) -> shardfmt.ShardData:
        """Fetch (whole, checksum-verified) and decode shard `pos` of ``manifest.shards``.

        `verify` is accepted for `Corpus` compatibility; published shards are
        always checked against the manifest, since they may come over a network.
        """
        record = self.manifest.shards[pos]
        location = self._source.location(record.path)
        raw = self._source.fetch(record.path, record.bytes, record.sha256)
        data = shardfmt.decode_shard(shardfmt.unzip(raw, location), location)
        if len(data) != record.num_tasks or data.attrs["first_task"] != record.first:
            raise shardfmt.ShardError(
                f"{location}: holds tasks {data.attrs['first_task']}..+{len(data)}, {MANIFEST_NAME} says {record.first}..+{record.num_tasks}"
            )
        return data

    def shard(self, pos: int) -> shardfmt.ShardData:
        """Shard `pos`, from the LRU cache when possible."""
        return shardfmt.lru_get(self._cache, pos, self.cache_shards, self.read_shard)

    def __getitem__(self, i: int) -> Task:
        k = self._check_index(i)
        return self.shard(int(self._pos[k])).task(int(self._row[k]))

    def __iter__(self) -> Iterator[Task]:
        for data in self.iter_shards():
            yield from data

    def iter_shards(self, *, verify: bool = True) -> Iterator[shardfmt.ShardData]:
        """Every shard of this view in order, each fetched and decoded whole."""
        for pos in range(len(self.manifest.shards)):
            yield self.read_shard(pos)

    def download(self) -> int:
        """Fetch and verify every shard of this view now (e.g. before going offline); returns bytes."""
        for r in self.manifest.shards:
            self._source.fetch(r.path, r.bytes, r.sha256)
        return sum(r.bytes for r in self.manifest.shards)


def read_published_manifest(source: _Source) -> PublishedManifest:
    where = source.location(MANIFEST_NAME)
    try:
        text = source.manifest_text()
    except shardfmt.ShardError as exc:
        # Missing manifest: say what this is not, in the corpus error family.
        raise CorpusError(f"{where}: missing or unreadable; not a causalgen published repository ({exc})") from None
    return PublishedManifest.from_json(text, where)


def open_published(
    path_or_url: str | os.PathLike,
    *,
    split: str | None = None,
    cache_dir: str | None = None,
    token: str | bool | None = None,
    cache_shards: int = 2,
) -> PublishedCorpus:
    """Open a published repository: a local folder or ``hf://datasets/ORG/NAME[@REVISION]``.

    Only ``manifest.json`` is read here; shards are fetched on first use.
    cache_dir / token: passed to `huggingface_hub.hf_hub_download` (defaults:
    the standard HF cache, and HF_TOKEN or the login cache).
    """
    root = os.fspath(path_or_url)
    source = _source_for(root, cache_dir=cache_dir, token=token)
    manifest = read_published_manifest(source)
    corpus = PublishedCorpus(source, manifest, cache_shards=cache_shards)
    return corpus.split(split) if split is not None else corpus


def maybe_open_published(path_or_url: str | os.PathLike, *, cache_shards: int = 2) -> PublishedCorpus | None:
    """`open_published` if the argument is a published repository (see `is_published`), else None.

    The hook for `causalgen.open_corpus`.
    """
    if not is_published(path_or_url):
        return None
    return open_published(path_or_url, cache_shards=cache_shards)


def download_published(path_or_url: str | os.PathLike, *, split: str | None = None, cache_dir: str | None = None) -> PublishedCorpus:
    """Open a repository and fetch every shard (of one split, or all) into the cache now."""
    corpus = open_published(path_or_url, split=split, cache_dir=cache_dir)
    corpus.download()
    return corpus


# ---------------------------------------------------------------- verification


def verify_published(path_or_url: str | os.PathLike, *, check_parquet: bool = True, progress: Callable[[int], None] | None = None):
    """Check a published repository end to end; returns a `causalgen.store.VerifyReport`.

    Every zarr shard: size and sha256 against the manifest, decodes, passes the
    corpus value checks, and its seeds, splits and summaries agree with the
    manifest. Parquet files (local repositories only; ``check_parquet``): size,
    sha256, row count, and the task_index / seed / split columns. The card
    must exist. Problems are one line each, naming the file.
    """
    from ..store.corpus import VerifyReport, check_values

    root = os.fspath(path_or_url)
    source = _source_for(root)
    report = VerifyReport(root=root)
    manifest = read_published_manifest(source)
    for pos, record in enumerate(manifest.shards):
        location = source.location(record.path)
        try:
            raw = source.fetch(record.path, record.bytes, record.sha256)
            data = shardfmt.decode_shard(shardfmt.unzip(raw, location), location)
            problem = _shard_problem(data, record) or check_values(data, None)
        except shardfmt.ShardError as exc:
            problem = str(exc)
        except Exception as exc:  # anything else a damaged shard provokes: report it, check the next one
            problem = f"{location}: cannot be read: {shardfmt._one_line(exc)}"
        else:
            problem = f"{location}: {problem}" if problem else None
        report.shards_checked += 1
        report.tasks_checked += record.num_tasks
        report.bytes_checked += record.bytes
        if problem:
            report.problems.append(problem)
        if progress is not None:
            progress(record.num_tasks)
    for f in manifest.figures:
        try:
            source.fetch(f.path, f.bytes, f.sha256)
        except shardfmt.ShardError as exc:
            report.problems.append(str(exc))
    if isinstance(source, _LocalSource):
        try:
            source.read(CARD_NAME)
        except shardfmt.ShardError as exc:
            report.problems.append(f"{exc} (the dataset card)")
        if check_parquet:
            report.problems.extend(_parquet_problems(source, manifest))
    return report


def _shard_problem(data: shardfmt.ShardData, record) -> str | None:
    a = data.attrs
    if (a["first_task"], a["n_tasks"]) != (record.first, record.num_tasks):
        return f"attributes say tasks {a['first_task']}..+{a['n_tasks']}, {MANIFEST_NAME} says {record.first}..+{record.num_tasks}"
    seeds = [int(s) for s in data.arrays["seed"]]
    if seeds != record.tasks["seed"]:
        return f"seeds differ from {MANIFEST_NAME}"
    wrong = [s for s in seeds if split_of(s) != record.split]
    if wrong:
        return f"task with seed {wrong[0]} belongs to split {split_of(wrong[0])!r}, not {record.split!r}"
    summary, rejections = summarise(data.arrays, [data.meta(j) for j in range(len(data))])
    for name, values in summary.items():
        if name not in record.tasks or not _same(values, record.tasks[name]):
            return f"summary column {name!r} in {MANIFEST_NAME} disagrees with the shard"
    if rejections != record.qc_rejections:
        return f"qc_rejections in {MANIFEST_NAME} disagree with the shard"
    return None


def _same(a: list, b: list) -> bool:
    return len(a) == len(b) and all(x == y or (x != x and y != y) for x, y in zip(a, b))


def _parquet_problems(source: _LocalSource, manifest: PublishedManifest) -> list[str]:
    import io

    import pyarrow.parquet as pq

    problems = []
    for split in SPLITS:
        idx = [v for r in manifest.split_shards(split) for v in r.tasks["task_index"]]
        seeds = [v for r in manifest.split_shards(split) for v in r.tasks["seed"]]
        for f in manifest.split_parquet(split):
            location = source.location(f.path)
            try:
                raw = source.fetch(f.path, f.bytes, f.sha256)
                table = pq.read_table(io.BytesIO(raw), columns=["task_index", "seed", "split"])
            except shardfmt.ShardError as exc:
                problems.append(str(exc))
                continue
            except Exception as exc:  # pyarrow raises several types for a bad file
                problems.append(f"{location}: unreadable Parquet: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
                continue
            want = slice(f.first, f.first + f.rows)
            if table.num_rows != f.rows:
                problems.append(f"{location}: {table.num_rows} rows, {MANIFEST_NAME} says {f.rows}")
            elif table.column("task_index").to_pylist() != idx[want] or table.column("seed").to_pylist() != seeds[want]:
                problems.append(f"{location}: task_index / seed columns disagree with the zarr shards in {MANIFEST_NAME}")
            elif set(table.column("split").to_pylist()) != {split}:
                problems.append(f"{location}: split column is not {split!r} throughout")
    return problems


__all__ = [
    "HF_PREFIX",
    "PublishedCorpus",
    "download_published",
    "is_published",
    "maybe_open_published",
    "open_published",
    "parse_hf_url",
    "verify_published",
]
