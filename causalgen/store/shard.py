"""One shard = one zarr v3 store holding many tasks in a flat ("CSR") layout.

Why flat: one group per task costs ~14 ms of metadata handling per task and
tens of thousands of files; concatenated arrays plus offsets write 30-60x
faster and a whole shard is a few dozen files (see docs/format.md and
shared/research/storage_streaming.md, section 1).

A shard is built in memory (`encode_shard` -> ``{key: bytes}``), so its bytes,
file count and sha256 are known before anything touches the disk, and the same
bytes can land either as a directory store or as a packed ``.zarr.zip``. Both
are written under a temporary name and renamed into place only when complete,
so a partial shard never carries a final name.

Reading also goes through ``{key: bytes}``: the whole shard is fetched in one
pass (local files, zip members or any fsspec URL), then decoded with zarr from
memory. Zarr slicing costs ~1 ms per call, so tasks are cut out in numpy.

Shapes: n = tasks in the shard, U = total units (sum of N_i), X = sum of
N_i * d_i, V = total graph nodes (sum of J_i), A = sum of J_i**2, D = sum of d_i.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import json
import os
import posixpath
import uuid
import warnings
import zipfile
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from ..prior.task import Task

FORMAT_NAME = "causalgen.shard"
#: Bump on any change a reader of the previous version would misread.
FORMAT_VERSION = 1
DIR_SUFFIX = ".zarr"
ZIP_SUFFIX = ".zarr.zip"
#: Largest chunk. Big enough that whole-shard reads make few zarr calls (each
#: costs ~1 ms), small enough to bound memory per decode and let a partial
#: reader skip most of a column.
CHUNK_BYTES = 4 << 20
#: Chunk codecs. "none" (crc32c only) is the default: synthetic continuous floats
#: compress by ~8% (measured), while decompression halves whole-shard read speed;
#: "zstd" suits published copies where download size matters.
COMPRESSIONS = ("none", "blosc", "zstd")
DEFAULT_COMPRESSION = "none"
#: Fixed zip timestamp: the zip bytes must not depend on when they were written.
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


class ShardError(ValueError):
    """A shard is missing, truncated, corrupt or of an unsupported format."""


# ------------------------------------------------------------------- the layout

#: ragged per-unit columns: name -> dtype; task j is ``col[unit_offsets[j]:unit_offsets[j+1]]``
UNIT_COLUMNS = {"t": "int8", "y": "float32", "y0": "float32", "y1": "float32", "propensity": "float32"}
#: per-task scalar columns: name -> dtype
SCALAR_COLUMNS = {
    "task_index": "int64",
    "seed": "int64",
    "n_units": "int64",
    "n_covariates": "int64",
    "n_nodes": "int64",
    "ate": "float64",
    "ate_se": "float64",
    "sate": "float64",
    "att": "float64",
    "identifiable": "bool",
}
#: ragged value arrays -> (dtype, name of their (n+1,) int64 offsets array)
RAGGED = {
    "x_values": ("float32", "x_offsets"),  # x (N, d) row-major, flattened
    "adjacency_values": ("bool", "adjacency_offsets"),  # adjacency (J, J) row-major, flattened
    "roles": ("int8", "node_offsets"),  # (J,) Role codes
    "covariate_nodes": ("int32", "covariate_offsets"),  # (d,) node id per column of x
    "meta_json": ("uint8", "meta_offsets"),  # UTF-8 JSON of Task.meta
}
OFFSETS = ("unit_offsets",) + tuple(off for _, off in RAGGED.values())
ARRAY_DTYPES: dict[str, str] = {
    **UNIT_COLUMNS,
    **SCALAR_COLUMNS,
    **{name: dt for name, (dt, _) in RAGGED.items()},
    **{name: "int64" for name in OFFSETS},
}
# Fill values that no valid shard contains, so a chunk that goes missing reads
# as an obviously bad value instead of plausible zeros (write_empty_chunks is
# on as well, so every chunk exists as a key).
_FILL = {"float32": float("nan"), "float64": float("nan"), "int8": -1, "int32": -1, "int64": -1, "uint8": 0, "bool": False}


def _codecs(compression: str) -> list:
    from zarr.codecs import BloscCodec, BloscShuffle, Crc32cCodec, ZstdCodec

    # crc32c last: every chunk carries a checksum of its stored bytes, so a
    # flipped bit is reported by the array it hits, not just by the sha256.
    if compression == "zstd":
        return [ZstdCodec(level=1, checksum=False), Crc32cCodec()]
    if compression == "blosc":
        return [BloscCodec(cname="lz4", clevel=5, shuffle=BloscShuffle.shuffle, blocksize=0), Crc32cCodec()]
    if compression == "none":
        return [Crc32cCodec()]
    raise ValueError(f"compression: expected one of {', '.join(COMPRESSIONS)}, got {compression!r}")


def _meta_bytes(meta: dict[str, Any], where: str) -> bytes:
    try:
        text = json.dumps(meta, sort_keys=True, separators=(",", ":"), allow_nan=True)
    except (TypeError, ValueError) as exc:
        raise ShardError(f"{where}: meta is not JSON-serialisable: {exc}") from None
    return text.encode("utf-8")


def _offsets(counts: Sequence[int]) -> np.ndarray:
    out = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(np.asarray(counts, dtype=np.int64), out=out[1:])
    return out


def flatten_tasks(tasks: Sequence[Task], task_indices: Sequence[int], seeds: Sequence[int]) -> dict[str, np.ndarray]:
    """The flat column arrays of a shard (name -> 1-D array), see `ARRAY_DTYPES`."""
    n = len(tasks)
    if not (len(task_indices) == len(seeds) == n):
        raise ValueError("flatten_tasks: tasks, task_indices and seeds must have the same length")
    cols: dict[str, np.ndarray] = {}
    n_units = [t.n_units for t in tasks]
    n_cov = [t.n_covariates for t in tasks]
    n_nodes = [t.n_nodes for t in tasks]
    metas = [_meta_bytes(t.meta, f"task {task_indices[j]}") for j, t in enumerate(tasks)]
    for j, t in enumerate(tasks):
        _check_task_shapes(t, f"task {task_indices[j]}")

    def cat(parts, dtype):
        return np.concatenate([np.asarray(p, dtype=dtype).reshape(-1) for p in parts]) if parts else np.zeros(0, dtype)

    for name, dt in UNIT_COLUMNS.items():
        cols[name] = cat([getattr(t, name) for t in tasks], dt)
    cols["x_values"] = cat([t.x for t in tasks], "float32")
    cols["adjacency_values"] = cat([t.adjacency for t in tasks], "bool")
    cols["roles"] = cat([t.roles for t in tasks], "int8")
    cols["covariate_nodes"] = cat([t.covariate_nodes for t in tasks], "int32")
    cols["meta_json"] = np.frombuffer(b"".join(metas), dtype=np.uint8).copy()

    cols["unit_offsets"] = _offsets(n_units)
    cols["x_offsets"] = _offsets([u * c for u, c in zip(n_units, n_cov)])
    cols["adjacency_offsets"] = _offsets([j * j for j in n_nodes])
    cols["node_offsets"] = _offsets(n_nodes)
    cols["covariate_offsets"] = _offsets(n_cov)
    cols["meta_offsets"] = _offsets([len(m) for m in metas])

    cols["task_index"] = np.asarray(task_indices, dtype=np.int64)
    cols["seed"] = np.asarray(seeds, dtype=np.int64)
    cols["n_units"] = np.asarray(n_units, dtype=np.int64)
    cols["n_covariates"] = np.asarray(n_cov, dtype=np.int64)
    cols["n_nodes"] = np.asarray(n_nodes, dtype=np.int64)
    for name in ("ate", "ate_se", "sate", "att"):
        cols[name] = np.asarray([float(getattr(t, name)) for t in tasks], dtype=np.float64)
    cols["identifiable"] = np.asarray([bool(t.identifiable) for t in tasks], dtype=bool)
    return cols


def _check_task_shapes(t: Task, where: str) -> None:
    n, d, j = t.n_units, t.n_covariates, t.n_nodes
    expect = {"t": (n,), "y": (n,), "y0": (n,), "y1": (n,), "propensity": (n,), "adjacency": (j, j), "roles": (j,), "covariate_nodes": (d,)}
    for name, shape in expect.items():
        got = tuple(np.shape(getattr(t, name)))
        if got != shape:
            raise ShardError(f"{where}: {name} has shape {got}, expected {shape} (x is {t.x.shape})")


# --------------------------------------------------------------------- encoding


@contextlib.contextmanager
def _zarr_quiet() -> Iterator[None]:
    """Silence zarr's 'consolidated metadata is not in the v3 spec' warning (we know)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*[Cc]onsolidated metadata.*")
        yield


def encode_shard(
    tasks: Sequence[Task],
    *,
    shard_index: int = 0,
    first_task: int = 0,
    seeds: Sequence[int] | None = None,
    compression: str = DEFAULT_COMPRESSION,
    corpus_seed: int | None = None,
    config_sha256: str | None = None,
) -> dict[str, bytes]:
    """Encode tasks as the files of one zarr v3 store: ``{relative key: bytes}``.

    Task j of the shard is task ``first_task + j`` of the corpus; `seeds`
    defaults to ``task.meta["seed"]``. The result is deterministic: the same
    tasks give the same bytes in any process. `corpus_seed` / `config_sha256`
    (see `encode_columns`) record which corpus the shard belongs to.
    """
    if seeds is None:
        seeds = [int(t.meta.get("seed", -1)) for t in tasks]
    cols = flatten_tasks(tasks, range(first_task, first_task + len(tasks)), seeds)
    return encode_columns(cols, shard_index=shard_index, first_task=first_task, compression=compression,
                          corpus_seed=corpus_seed, config_sha256=config_sha256)


def encode_columns(
    cols: Mapping[str, np.ndarray],
    *,
    shard_index: int = 0,
    first_task: int = 0,
    compression: str = DEFAULT_COMPRESSION,
    corpus_seed: int | None = None,
    config_sha256: str | None = None,
) -> dict[str, bytes]:
    """Encode flat columns (`flatten_tasks`) as a zarr v3 store in memory.

    corpus_seed, config_sha256: the identity of the corpus the shard belongs to
    (its seed and `causalgen.store.manifest.config_digest` of its config),
    written as root attributes when given, so that a shard found on disk can be
    told apart from one of another corpus with the same layout.
    """
    import zarr
    from zarr.storage import MemoryStore

    codecs = _codecs(compression)
    attrs = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "n_tasks": int(cols["task_index"].shape[0]),
        "shard_index": int(shard_index),
        "first_task": int(first_task),
    }
    if corpus_seed is not None:
        attrs["corpus_seed"] = int(corpus_seed)
    if config_sha256 is not None:
        attrs["config_sha256"] = str(config_sha256)
    buffers: dict = {}
    store = MemoryStore(buffers)
    with _zarr_quiet():
        group = zarr.open_group(store, mode="w", zarr_format=3, attributes=attrs)
        for name in sorted(ARRAY_DTYPES):
            data = cols[name]
            dt = ARRAY_DTYPES[name]
            arr = group.create_array(
                name,
                shape=data.shape,
                dtype=dt,
                chunks=(chunk_length(data.shape[0], np.dtype(dt).itemsize),),
                compressors=codecs,
                fill_value=_FILL[dt],
                config={"write_empty_chunks": True},
            )
            if data.shape[0]:
                arr[...] = data
        zarr.consolidate_metadata(store)
    return {key: buf.to_bytes() for key, buf in buffers.items()}


def chunk_length(length: int, itemsize: int) -> int:
    """Elements per chunk: the array split evenly into chunks of at most CHUNK_BYTES.

    Zarr stores edge chunks at full size, so an even split keeps the padding of
    uncompressed stores below one element per chunk.
    """
    if length <= 0:
        return 1
    n_chunks = -(-length * itemsize // CHUNK_BYTES)
    return -(-length // n_chunks)


def checksum(files: Mapping[str, bytes]) -> str:
    """sha256 over a store's files, independent of how they are laid out.

    For each file in sorted key order: ``key + "\\n" + str(len) + "\\n" + bytes``.
    A packed zip is checksummed as its single file (see `file_checksum`).
    """
    h = hashlib.sha256()
    for key in sorted(files):
        data = files[key]
        h.update(f"{key}\n{len(data)}\n".encode())
        h.update(data)
    return h.hexdigest()


def file_checksum(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def is_metadata_key(key: str) -> bool:
    """The store's metadata files: the root ``zarr.json`` and every array's ``<name>/zarr.json``."""
    return posixpath.basename(key) == "zarr.json"


def metadata_checksum(files: Mapping[str, bytes]) -> str:
    """`checksum` over the metadata files only: a few KB, cheap enough for every read.

    The same for a directory shard and its packed zip (the members are the
    same keys). Chunks carry their own crc32c; this covers what they cannot: a
    flipped bit in a ``zarr.json`` that changes how the chunks are found or
    decoded (the chunk-key separator, the fill value, the dtype ...), which zarr
    would otherwise answer with fill values.
    """
    return checksum({k: v for k, v in files.items() if is_metadata_key(k)})


def describe_metadata_damage(files: Mapping[str, bytes]) -> str:
    """Which metadata file a failed `metadata_checksum` most likely points at, for the message.

    Compares every array's own ``zarr.json`` with its copy in the root's
    consolidated metadata (zarr reads the latter) and checks that each file is
    in the form zarr wrote it; falls back to naming the root ``zarr.json``.
    """
    def load(key):
        try:
            raw = bytes(files[key])
            obj = json.loads(raw)
        except (KeyError, ValueError, UnicodeDecodeError):
            return None, False
        return obj, json.dumps(obj, indent=2).encode() == raw

    root, root_canonical = load("zarr.json")
    if root is None:
        return "the root zarr.json is missing or not valid JSON"
    consolidated = ((root.get("consolidated_metadata") or {}).get("metadata") or {}) if isinstance(root, dict) else {}
    names = sorted({k.rsplit("/", 1)[0] for k in files if is_metadata_key(k) and "/" in k} | set(consolidated))
    for name in names:
        own, canonical = load(f"{name}/zarr.json")
        if own is None:
            return f"array {name!r}: {name}/zarr.json is missing or not valid JSON"
        if own != consolidated.get(name):
            return f"array {name!r}: {name}/zarr.json and its copy in the root zarr.json differ"
        if not canonical:
            return f"array {name!r}: {name}/zarr.json was changed"
    return "the root zarr.json was changed" if root_canonical else "the root zarr.json was changed (not as zarr writes it)"


def _zip_order(key: str) -> tuple:
    # Metadata first (root zarr.json at the very start), then chunks: a reader
    # of a remote zip gets the whole hierarchy from the first bytes.
    is_meta = posixpath.basename(key) == "zarr.json"
    return (0 if is_meta else 1, key.count("/") if is_meta else 0, key)


def zip_bytes(files: Mapping[str, bytes]) -> bytes:
    """A packed store: every key once, ZIP_STORED, metadata first, fixed timestamps."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        for key in sorted(files, key=_zip_order):
            info = zipfile.ZipInfo(key, date_time=_ZIP_EPOCH)
            info.compress_type = zipfile.ZIP_STORED
            info.create_system = 3
            info.external_attr = 0o644 << 16
            zf.writestr(info, files[key])
    return buf.getvalue()


# ---------------------------------------------------------------------- writing


@dataclass(frozen=True)
class WrittenShard:
    """What landed on disk: the final path, its file count, bytes and sha256."""

    path: str
    files: int
    bytes: int
    sha256: str


class URLError(ShardError):
    """A location whose URL scheme fsspec does not know (bad input: the CLI answers exit 2)."""


def url_to_fs(url: str, what: str):
    """`fsspec.core.url_to_fs`, with an unknown scheme or a missing filesystem package as a one-line `URLError`."""
    import fsspec

    try:
        return fsspec.core.url_to_fs(url)
    except (ValueError, ImportError) as exc:
        scheme = url.split("://", 1)[0]
        raise URLError(
            f"{what} {url}: unknown or unavailable URL scheme {scheme!r} ({_one_line(exc)}); "
            "use a local path or a scheme fsspec knows (file, memory, s3, gs, hf, ...)"
        ) from None


def _is_local(url: str) -> bool:
    return "://" not in url or url.startswith("file://")


def _local_path(url: str) -> str:
    return url[len("file://"):] if url.startswith("file://") else url


def write_shard(files: Mapping[str, bytes], dest: str, *, fsync: bool = False) -> WrittenShard:
    """Write a shard's files to `dest` (ends in ``.zarr`` or ``.zarr.zip``) atomically.

    The files go to a hidden temporary sibling first and are renamed into place
    only when all of them are written, so `dest` either does not exist or is
    complete. An existing `dest` is replaced. `dest` may be a local path or an
    fsspec URL (on object stores "rename" is a copy: prefer zips there).
    """
    is_zip = dest.endswith(ZIP_SUFFIX)
    if not is_zip and not dest.endswith(DIR_SUFFIX):
        raise ValueError(f"{dest}: a shard path must end in {DIR_SUFFIX} or {ZIP_SUFFIX}")
    if is_zip:
        payload = zip_bytes(files)
        n_files, n_bytes, digest = 1, len(payload), file_checksum(payload)
    else:
        n_files, n_bytes, digest = len(files), sum(len(b) for b in files.values()), checksum(files)
    parent, name = posixpath.split(dest.rstrip("/"))
    tmp = posixpath.join(parent, f".tmp-{uuid.uuid4().hex[:12]}-{name}")
    if _is_local(dest):
        _write_local(files if not is_zip else {"": payload}, _local_path(tmp), _local_path(dest), is_zip, fsync)
    else:
        _write_fsspec(files if not is_zip else {"": payload}, tmp, dest, is_zip)
    return WrittenShard(path=dest, files=n_files, bytes=n_bytes, sha256=digest)


def write_file(path: str, data: bytes, *, fsync: bool = False) -> None:
    """Write `data` to the local file `path`; an `OSError` always names `path`.

    (A failed ``write`` or ``close``, e.g. ENOSPC, carries no file name of its own.)
    """
    try:
        with open(path, "wb") as fh:
            fh.write(data)
            if fsync:
                fh.flush()
                os.fsync(fh.fileno())
    except OSError as exc:
        if exc.filename is None and exc.errno is not None:
            raise type(exc)(exc.errno, exc.strerror or str(exc), path) from None
        raise


def _write_local(files: Mapping[str, bytes], tmp: str, dest: str, is_zip: bool, fsync: bool) -> None:
    import shutil

    def put(path: str, data: bytes) -> None:
        write_file(path, data, fsync=fsync)

    try:
        if is_zip:
            put(tmp, files[""])
        else:
            dirs = sorted({posixpath.dirname(k) for k in files})
            for d in dirs:
                os.makedirs(os.path.join(tmp, d), exist_ok=True)
            for key, data in files.items():
                put(os.path.join(tmp, key), data)
        if os.path.isdir(dest) and not os.path.islink(dest):
            shutil.rmtree(dest)
        try:
            os.replace(tmp, dest)  # atomic on POSIX: the shard appears complete or not at all
        except OSError as exc:
            # Another writer (an orphaned worker of a killed run) renamed the same
            # shard into place in between; shards are deterministic, so its
            # complete copy is as good as ours.
            if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST) or not os.path.isdir(dest):
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        if os.path.isdir(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
        elif os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _write_fsspec(files: Mapping[str, bytes], tmp: str, dest: str, is_zip: bool) -> None:
    import fsspec

    fs, tmp_path = fsspec.core.url_to_fs(tmp)
    dest_path = fs._strip_protocol(dest)
    if is_zip:
        fs.pipe_file(tmp_path, files[""])
    else:
        fs.pipe({posixpath.join(tmp_path, k): v for k, v in files.items()})
    if fs.exists(dest_path):
        fs.rm(dest_path, recursive=True)
    fs.mv(tmp_path, dest_path, recursive=not is_zip)


# ---------------------------------------------------------------------- reading


def read_shard_files(location: str) -> dict[str, bytes]:
    """All files of a stored shard as ``{key: bytes}`` (one pass, no zarr involved).

    `location` is a directory store (``*.zarr``) or a packed zip (``*.zarr.zip``),
    as a local path or an fsspec URL. For a zip the result is its members;
    `ShardError` if it is missing, unreadable or has duplicate members.
    """
    if location.endswith(ZIP_SUFFIX):
        return unzip(read_bytes(location), location)
    try:
        if _is_local(location):
            root = _local_path(location)
            if not os.path.isdir(root):
                raise ShardError(f"{location}: shard directory is missing")
            out: dict[str, bytes] = {}
            for dirpath, _, names in os.walk(root):
                for nm in names:
                    full = os.path.join(dirpath, nm)
                    with open(full, "rb") as fh:
                        out[os.path.relpath(full, root).replace(os.sep, "/")] = fh.read()
            return out
        fs, root = url_to_fs(location, "shard")
        if not fs.isdir(root):
            raise ShardError(f"{location}: shard directory is missing")
        paths = fs.find(root)
        blobs = fs.cat(paths) if paths else {}
        prefix = root.rstrip("/") + "/"
        return {fs._strip_protocol(p)[len(prefix):] if fs._strip_protocol(p).startswith(prefix) else p: b for p, b in blobs.items()}
    except OSError as exc:
        raise ShardError(f"{location}: cannot read shard: {exc}") from None


def read_bytes(location: str) -> bytes:
    try:
        if _is_local(location):
            with open(_local_path(location), "rb") as fh:
                return fh.read()
        import fsspec

        with fsspec.open(location, "rb") as fh:
            return fh.read()
    except FileNotFoundError:
        raise ShardError(f"{location}: shard file is missing") from None
    except OSError as exc:
        raise ShardError(f"{location}: cannot read shard: {exc}") from None


def unzip(data: bytes, where: str) -> dict[str, bytes]:
    """Members of a packed shard; refuses truncated zips and duplicate keys.

    Stored (uncompressed) members are returned as zero-copy views of `data`:
    zipfile's own read would copy every chunk and CRC it again, which costs
    more than decoding the shard; the chunks carry their own crc32c instead.
    """
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            infos = [i for i in zf.infolist() if not i.filename.endswith("/")]
            names = [i.filename for i in infos]
            if len(set(names)) != len(names):
                dup = next(n for n in names if names.count(n) > 1)
                raise ShardError(f"{where}: zip has duplicate member {dup!r} (rewritten in place?)")
            view = memoryview(data)
            out = {}
            for info in infos:
                if info.compress_type != zipfile.ZIP_STORED:
                    out[info.filename] = zf.read(info)
                    continue
                header = view[info.header_offset:info.header_offset + 30]
                if len(header) < 30 or bytes(header[:4]) != b"PK\x03\x04":
                    raise ShardError(f"{where}: zip member {info.filename!r} has a bad local header (corrupt?)")
                start = info.header_offset + 30 + int.from_bytes(header[26:28], "little") + int.from_bytes(header[28:30], "little")
                if start + info.compress_size > len(data):
                    raise ShardError(f"{where}: zip member {info.filename!r} runs past the end of the file (truncated?)")
                out[info.filename] = view[start:start + info.compress_size]
            return out
    except ShardError:
        raise
    except Exception as exc:  # zipfile raises BadZipFile, NotImplementedError, zlib.error, struct.error, ...
        raise ShardError(f"{where}: not a readable zip (truncated or corrupt?): {_one_line(exc)}") from None


@dataclass(frozen=True)
class ShardData:
    """A decoded shard: its root attributes and every flat column, read-only.

    ``task(j)`` cuts task j out with numpy slicing; the arrays of the returned
    `Task` are read-only views into these columns (copy before mutating).
    """

    attrs: dict[str, Any]
    arrays: Mapping[str, np.ndarray] = field(repr=False)
    location: str = ""

    def __len__(self) -> int:
        return int(self.arrays["task_index"].shape[0])

    def __iter__(self) -> Iterator[Task]:
        return (self.task(j) for j in range(len(self)))

    def meta(self, j: int) -> dict[str, Any]:
        a = self.arrays
        lo, hi = a["meta_offsets"][j], a["meta_offsets"][j + 1]
        return json.loads(a["meta_json"][lo:hi].tobytes().decode("utf-8"))

    def task(self, j: int) -> Task:
        a = self.arrays
        n = len(self)
        if not -n <= j < n:
            raise IndexError(f"task {j} out of range for a shard of {n} tasks")
        j %= n
        u0, u1 = a["unit_offsets"][j], a["unit_offsets"][j + 1]
        x0, x1 = a["x_offsets"][j], a["x_offsets"][j + 1]
        v0, v1 = a["node_offsets"][j], a["node_offsets"][j + 1]
        a0, a1 = a["adjacency_offsets"][j], a["adjacency_offsets"][j + 1]
        c0, c1 = a["covariate_offsets"][j], a["covariate_offsets"][j + 1]
        n_units, n_cov, n_nodes = int(a["n_units"][j]), int(a["n_covariates"][j]), int(a["n_nodes"][j])
        return Task(
            x=a["x_values"][x0:x1].reshape(n_units, n_cov),
            t=a["t"][u0:u1],
            y=a["y"][u0:u1],
            y0=a["y0"][u0:u1],
            y1=a["y1"][u0:u1],
            propensity=a["propensity"][u0:u1],
            ate=float(a["ate"][j]),
            ate_se=float(a["ate_se"][j]),
            sate=float(a["sate"][j]),
            att=float(a["att"][j]),
            adjacency=a["adjacency_values"][a0:a1].reshape(n_nodes, n_nodes),
            roles=a["roles"][v0:v1],
            covariate_nodes=a["covariate_nodes"][c0:c1],
            identifiable=bool(a["identifiable"][j]),
            meta=self.meta(j),
        )


def decode_shard(files: Mapping[str, bytes], location: str = "<memory>") -> ShardData:
    """Decode a shard's files with zarr (from memory) and check its layout.

    Raises `ShardError` naming `location` and the array at fault for missing
    or corrupt metadata, failed chunk checksums, wrong dtypes or lengths, and
    inconsistent offsets.
    """
    import zarr
    from zarr.core.buffer import cpu
    from zarr.storage import MemoryStore

    if "zarr.json" not in files:
        raise ShardError(f"{location}: not a zarr store (no zarr.json)")
    store = MemoryStore({k: cpu.Buffer.from_bytes(v) for k, v in files.items()}, read_only=True)
    with _zarr_quiet():
        try:
            group = zarr.open_group(store, mode="r", zarr_format=3)
            attrs = dict(group.attrs)
        except Exception as exc:  # zarr raises many types for bad JSON / metadata
            raise ShardError(f"{location}: unreadable root metadata (zarr.json): {_one_line(exc)}") from None
        check_attrs(attrs, location)
        arrays: dict[str, np.ndarray] = {}
        for name, dt in ARRAY_DTYPES.items():
            try:
                arr = group[name]
            except KeyError:
                raise ShardError(f"{location}: array {name!r} is missing") from None
            except Exception as exc:
                raise ShardError(f"{location}: array {name!r} has unreadable metadata: {_one_line(exc)}") from None
            if str(arr.dtype) != dt or arr.ndim != 1:
                raise ShardError(f"{location}: array {name!r} has dtype {arr.dtype} and {arr.ndim} dims, expected 1-D {dt}")
            _check_chunk_keys(arr, name, location)
            _check_chunks_present(files, name, arr, location)
            try:
                data = arr[...] if arr.shape[0] else np.zeros(0, dtype=dt)
            except Exception as exc:
                raise ShardError(f"{location}: array {name!r} is corrupt: {_one_line(exc)}") from None
            data = np.asarray(data)
            if dt in FLOAT_DTYPES:
                _check_finite(data, name, location)
            data.flags.writeable = False
            arrays[name] = data
    check_layout(arrays, int(attrs["n_tasks"]), location)
    return ShardData(attrs=attrs, arrays=arrays, location=location)


#: dtypes whose every value must be finite: x, y, y0, y1, propensity and the ground-truth scalars
#: (the sampler's quality control rejects non-finite values, and a float chunk that zarr cannot
#: find reads as NaN, the fill value).
FLOAT_DTYPES = ("float32", "float64")


def _check_finite(data: np.ndarray, name: str, location: str) -> None:
    # One vectorised pass: ~0.3 ms per million values, under 1% of decoding the shard.
    finite = np.isfinite(data)
    if not finite.all():
        bad = ~finite
        raise ShardError(
            f"{location}: array {name!r} has {int(bad.sum())} non-finite values (first at {int(np.flatnonzero(bad)[0])}); "
            "the shard is damaged (its metadata or chunks)"
        )


def _check_chunk_keys(arr, name: str, location: str) -> None:
    # Every causalgen shard uses zarr's default chunk keys ``<name>/c/<k>``; any other
    # encoding means damaged metadata, under which zarr would read fill values.
    enc = arr.metadata.chunk_key_encoding
    sep = getattr(enc, "separator", None)
    if getattr(enc, "name", None) != "default" or sep != "/":
        raise ShardError(
            f"{location}: array {name!r} has chunk key encoding {getattr(enc, 'name', enc)!r} with separator {sep!r}, "
            "expected 'default' with '/' (damaged metadata)"
        )


def _check_chunks_present(files: Mapping[str, bytes], name: str, arr, location: str) -> None:
    # Zarr silently reads a missing chunk as fill values; a complete shard has
    # every chunk (write_empty_chunks=True), so a missing key is damage.
    n_chunks = -(-arr.shape[0] // arr.chunks[0]) if arr.shape[0] else 0
    for c in range(n_chunks):
        if f"{name}/c/{c}" not in files:
            raise ShardError(f"{location}: array {name!r} is missing chunk file {name}/c/{c}")


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def check_attrs(attrs: Mapping[str, Any], location: str) -> None:
    if attrs.get("format") != FORMAT_NAME:
        raise ShardError(f"{location}: not a causalgen shard (attribute format={attrs.get('format')!r})")
    version = attrs.get("format_version")
    if not isinstance(version, int):
        raise ShardError(f"{location}: attribute format_version is missing or not an integer: {version!r}")
    if version > FORMAT_VERSION:
        raise ShardError(
            f"{location}: shard format version {version} is newer than this causalgen reads ({FORMAT_VERSION}); upgrade causalgen"
        )
    for key in ("n_tasks", "shard_index", "first_task"):
        if not isinstance(attrs.get(key), int) or attrs[key] < 0:
            raise ShardError(f"{location}: attribute {key} is missing or not a non-negative integer: {attrs.get(key)!r}")
    # Optional (absent in shards written before they were introduced): the corpus identity.
    if "corpus_seed" in attrs and (not isinstance(attrs["corpus_seed"], int) or isinstance(attrs["corpus_seed"], bool) or attrs["corpus_seed"] < 0):
        raise ShardError(f"{location}: attribute corpus_seed is not a non-negative integer: {attrs['corpus_seed']!r}")
    if "config_sha256" in attrs and not (isinstance(attrs["config_sha256"], str) and len(attrs["config_sha256"]) == 64):
        raise ShardError(f"{location}: attribute config_sha256 is not 64 hex digits: {attrs['config_sha256']!r}")


def check_layout(a: Mapping[str, np.ndarray], n: int, location: str) -> None:
    """Lengths and offsets consistent with the per-task counts (no value checks)."""
    for name in SCALAR_COLUMNS:
        if a[name].shape[0] != n:
            raise ShardError(f"{location}: array {name!r} has {a[name].shape[0]} entries, expected n_tasks={n}")
    if (a["n_units"] < 0).any() or (a["n_covariates"] < 0).any() or (a["n_nodes"] < 0).any():
        raise ShardError(f"{location}: negative counts in n_units/n_covariates/n_nodes")
    expected = {
        "unit_offsets": a["n_units"],
        "x_offsets": a["n_units"] * a["n_covariates"],
        "adjacency_offsets": a["n_nodes"] ** 2,
        "node_offsets": a["n_nodes"],
        "covariate_offsets": a["n_covariates"],
    }
    for off, counts in expected.items():
        if not np.array_equal(a[off], _offsets(counts)):
            raise ShardError(f"{location}: array {off!r} disagrees with the per-task counts")
    mo = a["meta_offsets"]
    if mo.shape[0] != n + 1 or mo[0] != 0 or (np.diff(mo) < 0).any():
        raise ShardError(f"{location}: array 'meta_offsets' is not a valid offsets array of length {n + 1}")
    lengths = {name: a[off][-1] for name, (_, off) in RAGGED.items()}
    for name in UNIT_COLUMNS:
        lengths[name] = a["unit_offsets"][-1]
    for name, length in lengths.items():
        if a[name].shape[0] != length:
            raise ShardError(f"{location}: array {name!r} has {a[name].shape[0]} values, offsets say {int(length)}")


def read_shard(location: str) -> ShardData:
    """Read and decode one stored shard (directory or zip, local path or URL)."""
    return decode_shard(read_shard_files(location), location)


def pack_shard(src: str, dest: str) -> WrittenShard:
    """Pack a directory shard into a ``.zarr.zip`` (metadata first, each key once)."""
    files = read_shard_files(src)
    decode_shard(files, src)  # never publish a damaged shard
    return write_shard(files, dest)


def lru_get(cache, key, limit: int, load):
    """``cache[key]`` from an OrderedDict used as an LRU of at most `limit` entries; a miss
    calls ``load(key)`` (and stores it unless `limit` is 0). Shared by the corpus readers."""
    if key in cache:
        cache.move_to_end(key)
        return cache[key]
    value = load(key)
    if limit:
        cache[key] = value
        while len(cache) > limit:
            cache.popitem(last=False)
    return value
