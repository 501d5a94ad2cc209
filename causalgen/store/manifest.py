"""`manifest.json`: the index of a corpus (what it is, where its shards are, per-task summaries).

The manifest is a pure function of the corpus spec and of the shards' bytes:
it holds no timestamps, host names or paths outside the corpus, so two runs of
the same command produce byte-identical manifests whatever the number of
workers, the executor or the order in which shards completed.

Per-task summary columns live inside each shard's record (``tasks``), so a
loader can plan and filter without opening a single shard, and the manifest can
be rewritten after each shard without recomputing anything.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

MANIFEST_NAME = "manifest.json"
FORMAT_NAME = "causalgen.corpus"
#: Bump on any change a reader of the previous version would misread.
FORMAT_VERSION = 1
SHARDS_DIR = "shards"
SHARD_FORMATS = ("dir", "zip")
SEED_SCHEME = "numpy.random.SeedSequence(entropy=corpus_seed, spawn_key=(task_index,)).generate_state(1, uint64)[0] >> 1"

#: per-task summary columns, in the order they appear in each shard record
SUMMARY_COLUMNS = (
    "seed",
    "n_units",
    "n_covariates",
    "n_nodes",
    "ate",
    "treated_share",
    "propensity_min",
    "propensity_max",
    "identifiable",
    "graph_family",
    "mechanism",
)
#: summary columns of the wider prior's tasks (`causalgen.prior.sampler`), present in a shard
#: record only when its tasks carry them (corpora of the other presets keep their manifests):
#: the outcome's type, and for real-table tasks the table's name and the sha256 of the rows used
#: (the rows themselves are in each task's meta.table, in the shard)
OPTIONAL_COLUMNS = ("outcome_type", "table", "table_rows_sha256")

_COLUMN_TYPES = {
    "outcome_type": str,
    "table": str,
    "table_rows_sha256": str,
    "seed": int,
    "n_units": int,
    "n_covariates": int,
    "n_nodes": int,
    "ate": float,
    "treated_share": float,
    "propensity_min": float,
    "propensity_max": float,
    "identifiable": bool,
    "graph_family": str,
    "mechanism": str,
}


class CorpusError(ValueError):
    """A corpus, its manifest or an output directory is unusable; the message names the file."""


class FormatVersionError(CorpusError):
    """The corpus was written by a newer causalgen than this one."""


def task_seed(corpus_seed: int, task_index: int) -> int:
    """Seed of task `task_index` in a corpus: a 63-bit int from (corpus_seed, index) only.

    Independent of shard size, worker count and executor, so any task can be
    regenerated on its own: ``sample_task(config, task_seed(seed, i))``.
    """
    ss = np.random.SeedSequence(entropy=int(corpus_seed), spawn_key=(int(task_index),))
    return int(ss.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))


def shard_name(index: int, shard_format: str) -> str:
    """Relative path of shard `index`, e.g. ``shards/shard-00007.zarr``."""
    suffix = ".zarr" if shard_format == "dir" else ".zarr.zip"
    return f"{SHARDS_DIR}/shard-{index:05d}{suffix}"


def config_digest(config: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


# ------------------------------------------------------------------ summaries


def rows_digest(rows: Sequence[int]) -> str:
    """sha256 (hex) of a real-table task's row positions, as the manifest records them."""
    return hashlib.sha256(np.asarray(rows, dtype=np.int64).tobytes()).hexdigest()


def summarise(arrays: Mapping[str, np.ndarray], metas: Sequence[Mapping[str, Any]]) -> tuple[dict[str, list], dict[str, int]]:
    """Per-task summary columns and summed QC rejections of one shard.

    arrays: the shard's flat columns (`causalgen.store.shard.flatten_tasks` or
    `ShardData.arrays`); metas: each task's meta dict. Values are plain Python
    scalars, so they survive JSON exactly (floats round-trip bit-exactly).
    """
    n = int(arrays["task_index"].shape[0])
    starts = arrays["unit_offsets"][:-1]
    counts = arrays["n_units"]
    cols: dict[str, list] = {name: [] for name in SUMMARY_COLUMNS}
    if n:
        t = arrays["t"].astype(np.float64)
        e = arrays["propensity"]
        # reduceat needs non-empty segments; tasks always have >= 10 units, but
        # guard anyway so a degenerate task cannot shift its neighbours' values.
        nonempty = counts > 0
        share = np.full(n, math.nan)
        pmin = np.full(n, math.nan)
        pmax = np.full(n, math.nan)
        if nonempty.any():
            idx = starts[nonempty]
            share[nonempty] = np.add.reduceat(t, idx) / counts[nonempty]
            pmin[nonempty] = np.minimum.reduceat(e, idx)
            pmax[nonempty] = np.maximum.reduceat(e, idx)
        cols["seed"] = [int(v) for v in arrays["seed"]]
        cols["n_units"] = [int(v) for v in counts]
        cols["n_covariates"] = [int(v) for v in arrays["n_covariates"]]
        cols["n_nodes"] = [int(v) for v in arrays["n_nodes"]]
        cols["ate"] = [float(v) for v in arrays["ate"]]
        cols["treated_share"] = [float(v) for v in share]
        cols["propensity_min"] = [float(v) for v in pmin.astype(np.float32)]
        cols["propensity_max"] = [float(v) for v in pmax.astype(np.float32)]
        cols["identifiable"] = [bool(v) for v in arrays["identifiable"]]
        cols["graph_family"] = [str(m.get("graph_family", "unknown")) for m in metas]
        cols["mechanism"] = [str(m.get("mechanism", "unknown")) for m in metas]
        if any("outcome_type" in m for m in metas):
            cols["outcome_type"] = [str(m.get("outcome_type", "continuous")) for m in metas]
        if any("table" in m for m in metas):
            cols["table"] = [str(m["table"]["name"]) if "table" in m else "" for m in metas]
            cols["table_rows_sha256"] = [rows_digest(m["table"]["rows"]) if "table" in m else "" for m in metas]
    rejections: dict[str, int] = {}
    for m in metas:
        for reason, count in (m.get("qc_rejections") or {}).items():
            rejections[str(reason)] = rejections.get(str(reason), 0) + int(count)
    return cols, dict(sorted(rejections.items()))


# -------------------------------------------------------------------- records


@dataclass(frozen=True)
class ShardRecord:
    """One completed shard: where it is, how big, its checksum and task summaries."""

    index: int
    path: str  #: relative to the corpus root, POSIX separators
    first_task: int  #: corpus index of the shard's first task
    num_tasks: int
    files: int  #: files on disk (1 for a packed zip)
    bytes: int  #: total bytes of those files
    sha256: str  #: `causalgen.store.shard.checksum` (directory) or sha256 of the zip file
    qc_rejections: dict[str, int] = field(default_factory=dict)
    tasks: dict[str, list] = field(default_factory=dict)  #: SUMMARY_COLUMNS -> num_tasks values
    #: `causalgen.store.shard.metadata_checksum`: the shard's zarr.json files, checked on every
    #: read. None in manifests written before the field existed (then reads check values only).
    metadata_sha256: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d = {
            "index": self.index,
            "path": self.path,
            "first_task": self.first_task,
            "num_tasks": self.num_tasks,
            "files": self.files,
            "bytes": self.bytes,
            "sha256": self.sha256,
        }
        if self.metadata_sha256 is not None:
            d["metadata_sha256"] = self.metadata_sha256
        d["qc_rejections"] = dict(self.qc_rejections)
        d["tasks"] = {name: list(self.tasks.get(name, [])) for name in SUMMARY_COLUMNS}
        d["tasks"].update({name: list(self.tasks[name]) for name in OPTIONAL_COLUMNS if name in self.tasks})
        return d

    @classmethod
    def from_dict(cls, d: Any, where: str) -> "ShardRecord":
        if not isinstance(d, dict):
            raise CorpusError(f"{where}: expected an object, got {type(d).__name__}")
        for key, tp in (("index", int), ("path", str), ("first_task", int), ("num_tasks", int), ("files", int), ("bytes", int), ("sha256", str)):
            v = d.get(key)
            if not isinstance(v, tp) or isinstance(v, bool) or (tp is int and v < 0):
                raise CorpusError(f"{where}.{key}: expected a {'non-negative integer' if tp is int else 'string'}, got {v!r}")
        if len(d["sha256"]) != 64:
            raise CorpusError(f"{where}.sha256: expected 64 hex digits, got {d['sha256']!r}")
        meta_sha = d.get("metadata_sha256")
        if meta_sha is not None and not (isinstance(meta_sha, str) and len(meta_sha) == 64):
            raise CorpusError(f"{where}.metadata_sha256: expected 64 hex digits, got {meta_sha!r}")
        if ".." in d["path"].split("/") or d["path"].startswith("/"):
            raise CorpusError(f"{where}.path: must be a relative path inside the corpus, got {d['path']!r}")
        rej = d.get("qc_rejections", {})
        if not isinstance(rej, dict) or not all(isinstance(v, int) for v in rej.values()):
            raise CorpusError(f"{where}.qc_rejections: expected an object reason -> count, got {rej!r}")
        tasks = d.get("tasks")
        if not isinstance(tasks, dict):
            raise CorpusError(f"{where}.tasks: expected an object of summary columns, got {type(tasks).__name__}")
        present = SUMMARY_COLUMNS + tuple(k for k in OPTIONAL_COLUMNS if k in tasks)
        for name in present:
            col = tasks.get(name)
            if not isinstance(col, list) or len(col) != d["num_tasks"]:
                raise CorpusError(f"{where}.tasks.{name}: expected a list of {d['num_tasks']} values")
        return cls(
            index=d["index"], path=d["path"], first_task=d["first_task"], num_tasks=d["num_tasks"], files=d["files"],
            bytes=d["bytes"], sha256=d["sha256"], qc_rejections=dict(rej), tasks={k: tasks[k] for k in present},
            metadata_sha256=meta_sha,
        )


@dataclass(frozen=True)
class Manifest:
    """The corpus index. `shards` holds completed shards only, sorted by index."""

    config: dict[str, Any]  #: full `TaskConfig.to_dict()`
    corpus_seed: int
    num_tasks: int  #: planned tasks (the corpus is complete when all are written)
    shard_size: int
    shard_format: str = "dir"  #: "dir" (zarr directory stores) or "zip" (packed .zarr.zip)
    compression: str = "none"
    sampler: str = "causalgen:sample_tasks"
    causalgen_version: str = "unknown"
    format_version: int = FORMAT_VERSION
    shards: tuple[ShardRecord, ...] = ()
    #: ``config_sha256`` as read from manifest.json (None for a manifest built in memory);
    #: `config_problem` compares it with the digest of `config`.
    recorded_config_sha256: str | None = field(default=None, compare=False)

    # -- derived
    @property
    def num_shards(self) -> int:
        """Planned shard count."""
        return -(-self.num_tasks // self.shard_size)

    @property
    def complete(self) -> bool:
        return len(self.shards) == self.num_shards and sum(r.num_tasks for r in self.shards) == self.num_tasks

    @property
    def tasks_written(self) -> int:
        return sum(r.num_tasks for r in self.shards)

    @property
    def bytes(self) -> int:
        return sum(r.bytes for r in self.shards)

    @property
    def files(self) -> int:
        return sum(r.files for r in self.shards)

    @property
    def qc_rejections(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.shards:
            for k, v in r.qc_rejections.items():
                out[k] = out.get(k, 0) + v
        return dict(sorted(out.items()))

    @property
    def config_sha256(self) -> str:
        """`config_digest` of `config`: what manifest.json records and every shard's attributes carry."""
        return config_digest(self.config)

    def config_problem(self, where: str = MANIFEST_NAME) -> str | None:
        """A one-line problem if the config no longer matches the ``config_sha256`` recorded with it."""
        recorded = self.recorded_config_sha256
        if recorded is None or recorded == self.config_sha256:
            return None
        return (f"{where}: config does not match its config_sha256 (recorded {recorded[:12]}..., the config hashes to "
                f"{self.config_sha256[:12]}...): the config was edited after generation")

    def identity(self) -> dict[str, Any]:
        """The fields that determine every byte of the shards: resume requires equality."""
        return {
            "config": self.config,
            "corpus_seed": self.corpus_seed,
            "num_tasks": self.num_tasks,
            "shard_size": self.shard_size,
            "shard_format": self.shard_format,
            "compression": self.compression,
            "sampler": self.sampler,
            "causalgen_version": self.causalgen_version,
        }

    def columns(self) -> dict[str, np.ndarray]:
        """Summary columns over the written shards (in shard order) plus ``task_index``."""
        out: dict[str, np.ndarray] = {}
        idx = [np.arange(r.first_task, r.first_task + r.num_tasks, dtype=np.int64) for r in self.shards]
        out["task_index"] = np.concatenate(idx) if idx else np.zeros(0, np.int64)
        optional = tuple(k for k in OPTIONAL_COLUMNS if self.shards and all(k in r.tasks for r in self.shards))
        for name in SUMMARY_COLUMNS + optional:
            values = [v for r in self.shards for v in r.tasks[name]]
            tp = _COLUMN_TYPES[name]
            dtype = {int: np.int64, float: np.float64, bool: bool, str: object}[tp]
            out[name] = np.asarray(values, dtype=dtype) if values else np.zeros(0, dtype=dtype)
        return out

    def with_shards(self, shards: Sequence[ShardRecord]) -> "Manifest":
        from dataclasses import replace

        return replace(self, shards=tuple(sorted(shards, key=lambda r: r.index)))

    # -- JSON
    def to_json(self) -> str:
        """Deterministic text: header and config indented, one line per shard record."""
        head = {
            "format": FORMAT_NAME,
            "format_version": self.format_version,
            "causalgen_version": self.causalgen_version,
            "complete": self.complete,
            "num_tasks": self.num_tasks,
            "num_shards": self.num_shards,
            "shard_size": self.shard_size,
            "shard_format": self.shard_format,
            "compression": self.compression,
            "corpus_seed": self.corpus_seed,
            "seed_scheme": SEED_SCHEME,
            "sampler": self.sampler,
            "tasks_written": self.tasks_written,
            "bytes": self.bytes,
            "files": self.files,
            "qc_rejections": self.qc_rejections,
            "summary_columns": list(SUMMARY_COLUMNS),
            "config_sha256": config_digest(self.config),
            "config": self.config,
        }
        text = json.dumps(head, indent=2, allow_nan=True)
        lines = [json.dumps(r.to_dict(), separators=(",", ":"), allow_nan=True) for r in self.shards]
        body = ",\n    ".join(lines)
        shards = '  "shards": [\n    ' + body + "\n  ]" if lines else '  "shards": []'
        return text[:-2] + ",\n" + shards + "\n}\n"

    @classmethod
    def from_json(cls, text: str, where: str = MANIFEST_NAME) -> "Manifest":
        try:
            d = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise CorpusError(f"{where}: not valid JSON ({exc.msg if hasattr(exc, 'msg') else exc} at line {getattr(exc, 'lineno', '?')}); truncated?") from None
        return cls.from_dict(d, where)

    @classmethod
    def from_dict(cls, d: Any, where: str = MANIFEST_NAME) -> "Manifest":
        if not isinstance(d, dict):
            raise CorpusError(f"{where}: expected a JSON object, got {type(d).__name__}")
        if d.get("format") != FORMAT_NAME:
            raise CorpusError(f"{where}: not a causalgen corpus manifest (format={d.get('format')!r})")
        version = d.get("format_version")
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise CorpusError(f"{where}.format_version: expected a positive integer, got {version!r}")
        if version > FORMAT_VERSION:
            raise FormatVersionError(
                f"{where}: format version {version} is newer than this causalgen supports ({FORMAT_VERSION}); upgrade causalgen"
            )
        for key in ("corpus_seed", "num_tasks", "shard_size"):
            v = d.get(key)
            if not isinstance(v, int) or isinstance(v, bool) or v < 0 or (key != "corpus_seed" and v < 1):
                raise CorpusError(f"{where}.{key}: expected a {'non-negative' if key == 'corpus_seed' else 'positive'} integer, got {v!r}")
        for key in ("compression", "sampler", "causalgen_version"):
            if not isinstance(d.get(key), str):
                raise CorpusError(f"{where}.{key}: expected a string, got {d.get(key)!r}")
        if d.get("shard_format") not in SHARD_FORMATS:
            raise CorpusError(f"{where}.shard_format: expected one of {', '.join(SHARD_FORMATS)}, got {d.get('shard_format')!r}")
        if not isinstance(d.get("config"), dict):
            raise CorpusError(f"{where}.config: expected an object, got {type(d.get('config')).__name__}")
        recorded = d.get("config_sha256")
        if recorded is not None and not (isinstance(recorded, str) and len(recorded) == 64):
            raise CorpusError(f"{where}.config_sha256: expected 64 hex digits, got {recorded!r}")
        raw = d.get("shards")
        if not isinstance(raw, list):
            raise CorpusError(f"{where}.shards: expected a list, got {type(raw).__name__}")
        records = [ShardRecord.from_dict(r, f"{where}: shards[{k}]") for k, r in enumerate(raw)]
        m = cls(
            config=d["config"], corpus_seed=d["corpus_seed"], num_tasks=d["num_tasks"], shard_size=d["shard_size"],
            shard_format=d["shard_format"], compression=d["compression"], sampler=d["sampler"],
            causalgen_version=d["causalgen_version"], format_version=version, shards=tuple(records),
            recorded_config_sha256=recorded,
        )
        m.check_plan(where)
        return m

    def check_plan(self, where: str = MANIFEST_NAME) -> None:
        """Every record sits where the plan puts it (index, first task, size, path)."""
        seen = set()
        for k, r in enumerate(self.shards):
            tag = f"{where}: shards[{k}]"
            if r.index in seen:
                raise CorpusError(f"{tag}: shard {r.index} is listed twice")
            seen.add(r.index)
            if k and r.index < self.shards[k - 1].index:
                raise CorpusError(f"{tag}: shards are not sorted by index")
            if r.index >= self.num_shards:
                raise CorpusError(f"{tag}: shard index {r.index} is beyond the plan ({self.num_shards} shards)")
            first, n = planned_shard(r.index, self.num_tasks, self.shard_size)
            if (r.first_task, r.num_tasks) != (first, n):
                raise CorpusError(f"{tag}: holds tasks {r.first_task}..+{r.num_tasks}, the plan says {first}..+{n}")
            if r.path != shard_name(r.index, self.shard_format):
                raise CorpusError(f"{tag}.path: expected {shard_name(r.index, self.shard_format)!r}, got {r.path!r}")

    def locate(self, i: int) -> tuple[int, int]:
        """(position in `shards`, row within that shard) of the i-th written task."""
        n = self.tasks_written
        if not -n <= i < n:
            raise IndexError(f"task {i} out of range for a corpus of {n} tasks")
        i %= n
        starts = np.cumsum([0] + [r.num_tasks for r in self.shards])
        pos = int(np.searchsorted(starts, i, side="right") - 1)
        return pos, int(i - starts[pos])


def planned_shard(index: int, num_tasks: int, shard_size: int) -> tuple[int, int]:
    """(first task, task count) of shard `index`: fixed-size shards, the last one shorter."""
    first = index * shard_size
    return first, max(0, min(shard_size, num_tasks - first))
