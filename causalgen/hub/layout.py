"""The published dataset repository: its layout and its ``manifest.json``.

A published repository (what ``causalgen publish`` writes and uploads) is::

    README.md                                   dataset card (YAML metadata + documentation)
    manifest.json                               this module's `PublishedManifest`
    data/<split>-NNNNN-of-NNNNN.parquet         one row per task (`causalgen.hub.parquet_view`)
    zarr/<split>/shard-NNNNN.zarr.zip           packed zarr v3 shards (`causalgen.store.shard` layout)
    figures/summary.png                         histograms shown in the card

Shards are grouped by split, so a training loader downloads only its split.
Inside a split shard the tasks keep corpus order and the shard's own
``task_index`` / ``first_task`` count positions *within the split* (the shard
layout requires them contiguous); the corpus index of every task is recorded
here, in ``shards[k].tasks.task_index``.

The manifest is a different format (``causalgen.published``) from a corpus
manifest (``causalgen.corpus``) on purpose: its shard paths, split grouping and
non-contiguous task indices would be misread by a corpus reader, which now
refuses it by name instead. Like the corpus manifest it is a pure function of
the content (no timestamps, hosts or absolute paths), written one line per shard.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from ..store.manifest import OPTIONAL_COLUMNS, SUMMARY_COLUMNS, CorpusError, FormatVersionError
from ..store.splits import SPLITS

PUBLISHED_FORMAT = "causalgen.published"
#: Bump on any change a reader of the previous version would misread.
PUBLISHED_FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
CARD_NAME = "README.md"
DATA_DIR = "data"
ZARR_DIR = "zarr"
FIGURES_DIR = "figures"
FIGURE_NAME = f"{FIGURES_DIR}/summary.png"
#: Top-level entries a publish writes; anything else in an output folder is not ours.
TOP_LEVEL = (CARD_NAME, MANIFEST_NAME, DATA_DIR, ZARR_DIR, FIGURES_DIR)
SPLIT_SCHEME = (
    "u = int.from_bytes(sha256(b'causalgen-split:' + str(seed).encode()).digest()[:8], 'little') / 2**64; "
    "train if u < 0.8, validation if u < 0.9, else test"
)
#: per-task columns of each shard record: the corpus index, then the corpus summaries
TASK_COLUMNS = ("task_index",) + SUMMARY_COLUMNS
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_COLUMN_DTYPES = {"seed": np.int64, "n_units": np.int64, "n_covariates": np.int64, "n_nodes": np.int64,
                  "identifiable": bool, "graph_family": object, "mechanism": object}


def zarr_shard_path(split: str, index: int) -> str:
    """``zarr/<split>/shard-NNNNN.zarr.zip``."""
    return f"{ZARR_DIR}/{split}/shard-{index:05d}.zarr.zip"


def parquet_path(split: str, index: int, count: int) -> str:
    """``data/<split>-NNNNN-of-NNNNN.parquet`` (the name `push_to_hub` would use)."""
    return f"{DATA_DIR}/{split}-{index:05d}-of-{count:05d}.parquet"


@dataclass(frozen=True)
class PublishedShard:
    """One packed zarr shard of one split."""

    split: str
    index: int  #: position among the split's shards
    path: str
    first: int  #: split-local position of its first task (= the shard's ``first_task`` attribute)
    num_tasks: int
    bytes: int
    sha256: str  #: sha256 of the zip file
    qc_rejections: dict[str, int] = field(default_factory=dict)
    tasks: dict[str, list] = field(default_factory=dict)  #: TASK_COLUMNS -> num_tasks values

    def to_dict(self) -> dict[str, Any]:
        return {
            "split": self.split, "index": self.index, "path": self.path, "first": self.first,
            "num_tasks": self.num_tasks, "bytes": self.bytes, "sha256": self.sha256,
            "qc_rejections": dict(self.qc_rejections),
            "tasks": {name: list(self.tasks[name]) for name in TASK_COLUMNS + OPTIONAL_COLUMNS if name in self.tasks},
        }

    @classmethod
    def from_dict(cls, d: Any, where: str) -> "PublishedShard":
        _expect_object(d, where)
        _expect_fields(d, where, split=str, index=int, path=str, first=int, num_tasks=int, bytes=int, sha256=str)
        _expect_sha(d["sha256"], f"{where}.sha256")
        rej = d.get("qc_rejections", {})
        if not isinstance(rej, dict) or not all(isinstance(v, int) and not isinstance(v, bool) for v in rej.values()):
            raise CorpusError(f"{where}.qc_rejections: expected an object reason -> count, got {rej!r}")
        tasks = d.get("tasks")
        if not isinstance(tasks, dict):
            raise CorpusError(f"{where}.tasks: expected an object of per-task columns, got {type(tasks).__name__}")
        present = TASK_COLUMNS + tuple(k for k in OPTIONAL_COLUMNS if k in tasks)
        for name in present:
            col = tasks.get(name)
            if not isinstance(col, list) or len(col) != d["num_tasks"]:
                raise CorpusError(f"{where}.tasks.{name}: expected a list of {d['num_tasks']} values")
        return cls(
            split=d["split"], index=d["index"], path=d["path"], first=d["first"], num_tasks=d["num_tasks"],
            bytes=d["bytes"], sha256=d["sha256"], qc_rejections=dict(rej), tasks={k: tasks[k] for k in present},
        )


@dataclass(frozen=True)
class PublishedFile:
    """A non-shard file of the repository (Parquet or figure) with its checksum."""

    path: str
    bytes: int
    sha256: str
    split: str | None = None  #: Parquet only
    first: int | None = None  #: Parquet only: split-local position of its first row
    rows: int | None = None  #: Parquet only

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"path": self.path, "bytes": self.bytes, "sha256": self.sha256}
        if self.rows is not None:
            d.update(split=self.split, first=self.first, rows=self.rows)
        return d

    @classmethod
    def from_dict(cls, d: Any, where: str, *, parquet: bool) -> "PublishedFile":
        _expect_object(d, where)
        _expect_fields(d, where, path=str, bytes=int, sha256=str)
        _expect_sha(d["sha256"], f"{where}.sha256")
        if parquet:
            _expect_fields(d, where, split=str, first=int, rows=int)
            return cls(path=d["path"], bytes=d["bytes"], sha256=d["sha256"], split=d["split"], first=d["first"], rows=d["rows"])
        return cls(path=d["path"], bytes=d["bytes"], sha256=d["sha256"])


@dataclass(frozen=True)
class PublishedManifest:
    """Index of a published repository: source corpus, splits, shards, Parquet files."""

    config: dict[str, Any]  #: the source corpus's full TaskConfig
    source: dict[str, Any]  #: identity of the source corpus (seed, sizes, sampler, checksums)
    num_tasks: int
    shard_size: int
    compression: str
    causalgen_version: str
    shards: tuple[PublishedShard, ...] = ()
    parquet: tuple[PublishedFile, ...] = ()
    figures: tuple[PublishedFile, ...] = ()
    format_version: int = PUBLISHED_FORMAT_VERSION

    # -- derived
    @property
    def split_counts(self) -> dict[str, int]:
        """Tasks per split, in SPLITS order (splits without tasks included, as 0)."""
        out = {s: 0 for s in SPLITS}
        for r in self.shards:
            out[r.split] += r.num_tasks
        return out

    @property
    def corpus_seed(self) -> int:
        return int(self.source["corpus_seed"])

    def split_shards(self, split: str) -> list[PublishedShard]:
        return [r for r in self.shards if r.split == split]

    def split_parquet(self, split: str) -> list[PublishedFile]:
        return [f for f in self.parquet if f.split == split]

    def files(self) -> list[tuple[str, int, str]]:
        """(path, bytes, sha256) of every checksummed file (shards, Parquet, figures)."""
        return [(r.path, r.bytes, r.sha256) for r in self.shards] + [(f.path, f.bytes, f.sha256) for f in self.parquet + self.figures]

    def columns(self) -> dict[str, np.ndarray]:
        """Per-task columns in shard order (split by split, corpus order within a split):
        task_index (corpus index), split and the corpus summary columns.

        Shard order, like `Corpus.columns`, so row k of every column is task
        ``k`` of a reader that walks ``shards`` in order.
        """
        out: dict[str, np.ndarray] = {
            "task_index": np.asarray([v for r in self.shards for v in r.tasks["task_index"]], dtype=np.int64),
            "split": np.asarray([r.split for r in self.shards for _ in range(r.num_tasks)], dtype=object),
        }
        optional = tuple(k for k in OPTIONAL_COLUMNS if self.shards and all(k in r.tasks for r in self.shards))
        for name in SUMMARY_COLUMNS + optional:
            values = [v for r in self.shards for v in r.tasks[name]]
            dtype = _COLUMN_DTYPES.get(name, object if name in OPTIONAL_COLUMNS else np.float64)
            out[name] = np.asarray(values, dtype=dtype) if values else np.zeros(0, dtype=dtype)
        return out

    # -- JSON
    def to_json(self) -> str:
        """Deterministic text: header indented, one line per shard / file record."""
        head = {
            "format": PUBLISHED_FORMAT,
            "format_version": self.format_version,
            "causalgen_version": self.causalgen_version,
            "num_tasks": self.num_tasks,
            "splits": self.split_counts,
            "split_scheme": SPLIT_SCHEME,
            "shard_size": self.shard_size,
            "compression": self.compression,
            "task_columns": list(TASK_COLUMNS),
            "source": self.source,
            "config": self.config,
        }
        text = json.dumps(head, indent=2, allow_nan=True)

        def block(name: str, records: Sequence[dict]) -> str:
            lines = [json.dumps(r, separators=(",", ":"), allow_nan=True) for r in records]
            return f'  "{name}": [\n    ' + ",\n    ".join(lines) + "\n  ]" if lines else f'  "{name}": []'

        blocks = [
            block("figures", [f.to_dict() for f in self.figures]),
            block("parquet", [f.to_dict() for f in self.parquet]),
            block("shards", [r.to_dict() for r in self.shards]),
        ]
        return text[:-2] + ",\n" + ",\n".join(blocks) + "\n}\n"

    @classmethod
    def from_json(cls, text: str, where: str = MANIFEST_NAME) -> "PublishedManifest":
        try:
            d = json.loads(text)
        except json.JSONDecodeError as exc:
            raise CorpusError(f"{where}: not valid JSON ({exc.msg} at line {exc.lineno}); truncated?") from None
        return cls.from_dict(d, where)

    @classmethod
    def from_dict(cls, d: Any, where: str = MANIFEST_NAME) -> "PublishedManifest":
        _expect_object(d, where)
        if d.get("format") != PUBLISHED_FORMAT:
            raise CorpusError(f"{where}: not a causalgen published repository manifest (format={d.get('format')!r})")
        version = d.get("format_version")
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise CorpusError(f"{where}.format_version: expected a positive integer, got {version!r}")
        if version > PUBLISHED_FORMAT_VERSION:
            raise FormatVersionError(
                f"{where}: published format version {version} is newer than this causalgen supports ({PUBLISHED_FORMAT_VERSION}); upgrade causalgen"
            )
        _expect_fields(d, where, num_tasks=int, shard_size=int, compression=str, causalgen_version=str)
        for key in ("config", "source"):
            _expect_object(d.get(key), f"{where}.{key}")
        if not isinstance(d["source"].get("corpus_seed"), int):
            raise CorpusError(f"{where}.source.corpus_seed: expected an integer, got {d['source'].get('corpus_seed')!r}")
        lists = {}
        for key in ("shards", "parquet", "figures"):
            if not isinstance(d.get(key), list):
                raise CorpusError(f"{where}.{key}: expected a list, got {type(d.get(key)).__name__}")
            lists[key] = d[key]
        m = cls(
            config=d["config"], source=d["source"], num_tasks=d["num_tasks"], shard_size=d["shard_size"],
            compression=d["compression"], causalgen_version=d["causalgen_version"], format_version=version,
            shards=tuple(PublishedShard.from_dict(r, f"{where}: shards[{k}]") for k, r in enumerate(lists["shards"])),
            parquet=tuple(PublishedFile.from_dict(r, f"{where}: parquet[{k}]", parquet=True) for k, r in enumerate(lists["parquet"])),
            figures=tuple(PublishedFile.from_dict(r, f"{where}: figures[{k}]", parquet=False) for k, r in enumerate(lists["figures"])),
        )
        m.check(where)
        return m

    def check(self, where: str = MANIFEST_NAME) -> None:
        """Structural consistency: paths, split-local positions, every task exactly once."""
        if self.shard_size < 1:
            raise CorpusError(f"{where}.shard_size: expected a positive integer, got {self.shard_size}")
        for split in SPLITS:
            shards = self.split_shards(split)
            pos = 0
            for k, r in enumerate(shards):
                tag = f"{where}: {split} shard {k}"
                if (r.index, r.first) != (k, pos):
                    raise CorpusError(f"{tag}: expected index {k} first {pos}, got index {r.index} first {r.first} (shards out of order?)")
                if r.path != zarr_shard_path(split, k):
                    raise CorpusError(f"{tag}.path: expected {zarr_shard_path(split, k)!r}, got {r.path!r}")
                if not 1 <= r.num_tasks <= self.shard_size:
                    raise CorpusError(f"{tag}: holds {r.num_tasks} tasks, expected 1..{self.shard_size}")
                idx = r.tasks["task_index"]
                if any(not isinstance(v, int) for v in idx) or any(b <= a for a, b in zip(idx, idx[1:])):
                    raise CorpusError(f"{tag}.tasks.task_index: expected increasing integers (corpus order)")
                pos += r.num_tasks
            files = self.split_parquet(split)
            row = 0
            for k, f in enumerate(files):
                if f.path != parquet_path(split, k, len(files)) or f.first != row or f.rows < 1:
                    raise CorpusError(f"{where}: {split} Parquet file {k}: expected {parquet_path(split, k, len(files))} from row {row}, got {f.path} from row {f.first} ({f.rows} rows)")
                row += f.rows
            if row != pos:
                raise CorpusError(f"{where}: split {split} has {pos} tasks in zarr shards but {row} Parquet rows")
        unknown = {r.split for r in self.shards} - set(SPLITS)
        if unknown:
            raise CorpusError(f"{where}: unknown split {sorted(unknown)[0]!r} (expected {', '.join(SPLITS)})")
        if [r.split for r in self.shards] != sorted((r.split for r in self.shards), key=SPLITS.index):
            raise CorpusError(f"{where}: shards are not grouped by split in the order {', '.join(SPLITS)}")
        every = sorted(v for r in self.shards for v in r.tasks["task_index"])
        if every != list(range(self.num_tasks)):
            raise CorpusError(f"{where}: shards do not hold corpus tasks 0..{self.num_tasks - 1} exactly once")

    def locate(self) -> tuple[np.ndarray, np.ndarray]:
        """(shard position, row in shard) of every task, indexed by corpus index (-1: not listed)."""
        pos = np.full(self.num_tasks, -1, dtype=np.int64)
        row = np.full(self.num_tasks, -1, dtype=np.int64)
        for k, r in enumerate(self.shards):
            idx = np.asarray(r.tasks["task_index"], dtype=np.int64)
            pos[idx] = k
            row[idx] = np.arange(r.num_tasks)
        return pos, row

    def only(self, splits: Sequence[str]) -> "PublishedManifest":
        """The same manifest listing only the shards and Parquet files of `splits`.

        What a one-split reader sees: its shard positions, columns and
        ``split_counts`` cover that split alone (num_tasks stays the repository's).
        """
        from dataclasses import replace

        return replace(
            self,
            shards=tuple(r for r in self.shards if r.split in splits),
            parquet=tuple(f for f in self.parquet if f.split in splits),
        )


def _expect_object(d: Any, where: str) -> None:
    if not isinstance(d, dict):
        raise CorpusError(f"{where}: expected a JSON object, got {type(d).__name__}")


def _expect_fields(d: dict, where: str, **types) -> None:
    for key, tp in types.items():
        v = d.get(key)
        if not isinstance(v, tp) or isinstance(v, bool) or (tp is int and v < 0):
            raise CorpusError(f"{where}.{key}: expected a {'non-negative integer' if tp is int else 'string'}, got {v!r}")
        if tp is str and key == "path" and (v.startswith("/") or ".." in v.split("/")):
            raise CorpusError(f"{where}.path: must be a relative path inside the repository, got {v!r}")


def _expect_sha(value: str, where: str) -> None:
    if not _HEX64.match(value):
        raise CorpusError(f"{where}: expected 64 lowercase hex digits, got {value!r}")
