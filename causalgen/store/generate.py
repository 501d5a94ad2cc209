"""Deterministic, resumable, parallel corpus generation.

One job = one shard: sample its tasks (seeds from (corpus seed, task index)
only), encode them in memory, write the store under a temporary name and rename
it into place. The driver collects small `ShardRecord`s and rewrites
`manifest.json` atomically. Because each shard's bytes depend only on its job,
the corpus is byte-identical whatever the worker count, the executor or the
completion order.

Crash safety: a final shard name exists only for a complete shard (rename is
the commit). On restart, shards with a final name that the manifest does not
list yet (killed between rename and manifest update) are re-read, checked and
recorded; temporary leftovers are deleted; only missing shards are generated.

Executors: in-process (``workers=1``), a local process pool (``workers>1``),
or a Dask distributed cluster (``executor="dask"``; shards are written by the
workers to any fsspec URL they share).
"""

from __future__ import annotations

import contextlib
import importlib
import os
import posixpath
import re
import sys
import time
import uuid
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from . import shard as shardfmt
from .manifest import (
    MANIFEST_NAME,
    SHARD_FORMATS,
    SHARDS_DIR,
    CorpusError,
    Manifest,
    ShardRecord,
    config_digest,
    planned_shard,
    shard_name,
    summarise,
    task_seed,
)

DEFAULT_SAMPLER = "causalgen:sample_tasks"
EXECUTORS = ("process", "dask")
#: Rewrite the manifest at most this often while shards stream in (it holds
#: every task summary, so rewriting it per shard is quadratic on big corpora).
#: Progress is never lost: completed shards are found by name on resume.
MANIFEST_INTERVAL_S = 2.0
#: Library thread pools inside workers: the parallelism is across shards.
_THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS", "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")


class ForeignShardError(CorpusError):
    """A finished shard on disk belongs to another corpus (seed or config); it is never adopted."""


class GenerationFailed(RuntimeError):
    """Generation stopped for a reason outside the program (a worker process died); the corpus resumes."""


@dataclass(frozen=True)
class CorpusSpec:
    """Everything that determines a corpus's bytes."""

    config: dict[str, Any]  #: `TaskConfig.to_dict()`
    seed: int
    num_tasks: int
    shard_size: int = 1000
    shard_format: str = "dir"
    compression: str = shardfmt.DEFAULT_COMPRESSION
    sampler: str = DEFAULT_SAMPLER  #: "module:function" with the signature of `causalgen.sample_tasks`

    def validate(self) -> "CorpusSpec":
        for name in ("seed", "num_tasks", "shard_size"):
            v = getattr(self, name)
            low = 0 if name == "seed" else 1
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise CorpusError(f"{name}: expected an integer >= {low}, got {v!r}")
        if self.seed >= 2**63:
            raise CorpusError(f"seed: expected an integer < 2**63, got {self.seed}")
        if self.shard_format not in SHARD_FORMATS:
            raise CorpusError(f"shard_format: expected one of {', '.join(SHARD_FORMATS)}, got {self.shard_format!r}")
        if self.compression not in shardfmt.COMPRESSIONS:
            raise CorpusError(f"compression: expected one of {', '.join(shardfmt.COMPRESSIONS)}, got {self.compression!r}")
        if ":" not in self.sampler:
            raise CorpusError(f"sampler: expected 'module:function', got {self.sampler!r}")
        return self

    def empty_manifest(self) -> Manifest:
        return Manifest(
            config=self.config, corpus_seed=self.seed, num_tasks=self.num_tasks, shard_size=self.shard_size,
            shard_format=self.shard_format, compression=self.compression, sampler=self.sampler,
            causalgen_version=package_version(),
        )


@dataclass(frozen=True)
class ShardJob:
    """One unit of work, small and picklable (sent to processes / Dask workers)."""

    root: str  #: corpus root (local path or fsspec URL)
    index: int
    first_task: int
    num_tasks: int
    corpus_seed: int
    config: dict[str, Any]
    shard_format: str
    compression: str
    sampler: str

    @property
    def path(self) -> str:
        return shard_name(self.index, self.shard_format)


def package_version() -> str:
    from .._version import __version__

    return __version__


def plan_jobs(spec: CorpusSpec, root: str) -> list[ShardJob]:
    """All shards of the corpus, in index order."""
    n_shards = -(-spec.num_tasks // spec.shard_size)
    jobs = []
    for k in range(n_shards):
        first, n = planned_shard(k, spec.num_tasks, spec.shard_size)
        jobs.append(ShardJob(root, k, first, n, spec.seed, spec.config, spec.shard_format, spec.compression, spec.sampler))
    return jobs


# ------------------------------------------------------------------ the worker


_LIMITED = False


def limit_threads() -> None:
    """Keep each worker on one core: BLAS/OpenMP, blosc, torch and zarr's I/O pools."""
    global _LIMITED
    if _LIMITED:
        return
    for var in _THREAD_ENV:
        os.environ[var] = "1"
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)
    except ImportError:
        pass
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)
    try:
        import numcodecs.blosc

        numcodecs.blosc.set_nthreads(1)
    except Exception:
        pass
    import zarr

    zarr.config.set({"async.concurrency": 4, "threading.max_workers": 1})
    _LIMITED = True


def resolve_sampler(name: str) -> Callable:
    module, _, attr = name.partition(":")
    try:
        fn = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise CorpusError(f"sampler: cannot import {name!r}: {exc}") from None
    return fn


def run_job_in_worker(job: ShardJob) -> dict[str, Any]:
    """`run_job` in a pool process or Dask worker: one core per worker."""
    limit_threads()
    return run_job(job)


def _init_pool_worker() -> None:
    """Pool initializer: die with the driver, one core per worker."""
    # A `kill -9` of the driver would otherwise leave workers running their
    # current shard while the next run starts; harmless (shards are
    # deterministic and renamed atomically) but wasteful and confusing.
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        try:
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except OSError:
            pass
        if os.getppid() == 1:  # the driver died before prctl took effect
            os._exit(1)
    limit_threads()


def run_job(job: ShardJob) -> dict[str, Any]:
    """Sample, encode and write one shard; return its manifest record as a dict."""
    from ..prior.config import TaskConfig

    sampler = resolve_sampler(job.sampler)
    config = TaskConfig.from_dict(job.config)
    indices = range(job.first_task, job.first_task + job.num_tasks)
    seeds = [task_seed(job.corpus_seed, i) for i in indices]
    tasks = sampler(config, seeds)
    cols = shardfmt.flatten_tasks(tasks, indices, seeds)
    files = shardfmt.encode_columns(
        cols, shard_index=job.index, first_task=job.first_task, compression=job.compression,
        corpus_seed=job.corpus_seed, config_sha256=config_digest(job.config),
    )
    summary, rejections = summarise(cols, [t.meta for t in tasks])
    written = shardfmt.write_shard(files, join(job.root, job.path))
    record = ShardRecord(
        index=job.index, path=job.path, first_task=job.first_task, num_tasks=job.num_tasks, files=written.files,
        bytes=written.bytes, sha256=written.sha256, qc_rejections=rejections, tasks=summary,
        metadata_sha256=shardfmt.metadata_checksum(files),
    )
    return record.to_dict()


def record_from_disk(job: ShardJob) -> ShardRecord:
    """Rebuild the record of a shard already on disk (after a crash), checking it decodes and is ours.

    Raises `ShardError` for a shard that is damaged or cannot be proven to be
    this corpus's (written before shards carried their corpus identity): it is
    regenerated. Raises `ForeignShardError` for a shard whose attributes or
    seeds say it belongs to another corpus: it is never adopted, nor deleted.
    """
    location = join(job.root, job.path)
    if job.shard_format == "zip":
        raw = shardfmt.read_bytes(location)
        files = shardfmt.unzip(raw, location)
        n_files, n_bytes, digest = 1, len(raw), shardfmt.file_checksum(raw)
    else:
        files = shardfmt.read_shard_files(location)
        n_files, n_bytes, digest = len(files), sum(len(b) for b in files.values()), shardfmt.checksum(files)
    data = shardfmt.decode_shard(files, location)
    a = data.attrs
    if (a["shard_index"], a["first_task"], a["n_tasks"]) != (job.index, job.first_task, job.num_tasks):
        raise shardfmt.ShardError(f"{location}: holds shard {a['shard_index']} tasks {a['first_task']}..+{a['n_tasks']}, expected shard {job.index}")
    reason = foreign_reason(a, data.arrays["seed"], job.corpus_seed, config_digest(job.config))
    if reason:
        raise ForeignShardError(
            f"{location}: belongs to another corpus ({reason}); not adopting it: move it out of "
            f"{join(job.root, SHARDS_DIR)} (or pass --overwrite) and re-run"
        )
    if "corpus_seed" not in a or "config_sha256" not in a:
        raise shardfmt.ShardError(f"{location}: written before shards recorded their corpus; regenerating it")
    summary, rejections = summarise(data.arrays, [data.meta(j) for j in range(len(data))])
    return ShardRecord(
        index=job.index, path=job.path, first_task=job.first_task, num_tasks=job.num_tasks, files=n_files,
        bytes=n_bytes, sha256=digest, qc_rejections=rejections, tasks=summary,
        metadata_sha256=shardfmt.metadata_checksum(files),
    )


def foreign_reason(attrs, seeds, corpus_seed: int, config_sha256: str) -> str | None:
    """Why a decoded shard is not one of the corpus (corpus_seed, config_sha256), or None.

    Compares the shard's corpus attributes (when present) and its seed column
    with the corpus's seed scheme (a shard of another seed fails this even
    without attributes).
    """
    if "corpus_seed" in attrs and attrs["corpus_seed"] != corpus_seed:
        return f"corpus_seed {attrs['corpus_seed']} in its attributes, this corpus has {corpus_seed}"
    if "config_sha256" in attrs and attrs["config_sha256"] != config_sha256:
        return (f"config_sha256 {attrs['config_sha256'][:12]}... in its attributes, this corpus's config hashes to "
                f"{config_sha256[:12]}...")
    first = int(attrs["first_task"])
    expected = [task_seed(corpus_seed, first + j) for j in range(len(seeds))]
    if [int(v) for v in seeds] != expected:
        return f"its seeds do not follow the seed scheme of corpus_seed {corpus_seed}"
    return None


# ----------------------------------------------------------------- file system


def join(root: str, rel: str) -> str:
    return posixpath.join(root.rstrip("/"), rel) if "://" in root else os.path.join(root, rel)


class _Output:
    """The corpus root: local (os calls, flock) or any fsspec URL."""

    def __init__(self, root: str):
        self.root = root
        self.local = "://" not in root or root.startswith("file://")
        if self.local:
            self.path = root[len("file://"):] if root.startswith("file://") else root
            self.fs = None
        else:
            self.fs, self.path = shardfmt.url_to_fs(root, "--out")

    def is_file(self) -> bool:
        return os.path.isfile(self.path) if self.local else self.fs.isfile(self.path)

    def exists(self) -> bool:
        return os.path.exists(self.path) if self.local else self.fs.exists(self.path)

    def listdir(self, rel: str = "") -> list[str]:
        """Base names directly under root/rel ([] if it does not exist)."""
        if self.local:
            p = os.path.join(self.path, rel) if rel else self.path
            return sorted(os.listdir(p)) if os.path.isdir(p) else []
        p = posixpath.join(self.path, rel) if rel else self.path
        if not self.fs.isdir(p):
            return []
        return sorted(posixpath.basename(e.rstrip("/")) for e in self.fs.ls(p, detail=False))

    def makedirs(self, rel: str = "") -> None:
        if self.local:
            os.makedirs(os.path.join(self.path, rel) if rel else self.path, exist_ok=True)
        else:
            self.fs.makedirs(posixpath.join(self.path, rel) if rel else self.path, exist_ok=True)

    def remove(self, rel: str) -> None:
        if self.local:
            import shutil

            p = os.path.join(self.path, rel)
            if os.path.isdir(p) and not os.path.islink(p):
                shutil.rmtree(p)
            elif os.path.lexists(p):
                os.unlink(p)
        else:
            p = posixpath.join(self.path, rel)
            if self.fs.exists(p):
                self.fs.rm(p, recursive=True)

    def read_text(self, rel: str) -> str | None:
        try:
            if self.local:
                with open(os.path.join(self.path, rel), "rb") as fh:
                    data = fh.read()
            else:
                data = self.fs.cat_file(posixpath.join(self.path, rel))
        except FileNotFoundError:
            return None
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            raise CorpusError(f"{join(self.root, rel)}: not UTF-8 text") from None

    def write_text_atomic(self, rel: str, text: str) -> None:
        """Temp file + fsync + rename: readers see the old or the new file, never half."""
        data = text.encode("utf-8")
        if self.local:
            final = os.path.join(self.path, rel)
            tmp = os.path.join(self.path, f".{rel}.tmp-{os.getpid()}")
            try:
                shardfmt.write_file(tmp, data, fsync=True)
                os.replace(tmp, final)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)  # a disk-full write must not leave a half manifest behind
                raise
        else:
            final = posixpath.join(self.path, rel)
            tmp = posixpath.join(self.path, f".{rel}.tmp-{os.getpid()}")
            self.fs.pipe_file(tmp, data)
            self.fs.mv(tmp, final)

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """An exclusive advisory lock (local only): two writers on one corpus would collide.

        flock is released by the kernel when the process dies, so a kill -9 never
        leaves a stale lock behind.
        """
        if not self.local:
            yield
            return
        import fcntl

        path = os.path.join(self.path, ".lock")
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise CorpusError(f"{self.root}: another causalgen generate is writing this corpus (locked)") from None
        try:
            yield
        finally:
            with contextlib.suppress(OSError):
                os.unlink(path)  # only the holder removes it
            os.close(fd)


# ------------------------------------------------------------------ the driver


def _ours(name: str) -> bool:
    """Root entries a killed generator may leave behind before the manifest exists."""
    return name == ".lock" or name.startswith(f".{MANIFEST_NAME}.tmp-")


def _diff(old: dict[str, Any], new: dict[str, Any]) -> str:
    for key in new:
        if old.get(key) != new.get(key):
            if key == "config":
                return "config (a different task config)"
            return f"{key} ({old.get(key)!r} on disk, {new.get(key)!r} requested)"
    return "nothing"


def prepare_output(spec: CorpusSpec, out: _Output, overwrite: bool) -> Manifest:
    """Check the output location and return the manifest to continue from.

    Refuses (without touching anything): a file in place of the directory, a
    non-empty directory that is not a corpus, a corpus with a different spec
    or a newer format (unless `overwrite`; even then only our own files go).
    """
    if out.is_file():
        raise CorpusError(f"{out.root}: is a file, expected a corpus directory")
    fresh = spec.empty_manifest()
    text = out.read_text(MANIFEST_NAME) if out.exists() else None
    if text is None:
        entries = [e for e in out.listdir() if not _ours(e)]
        if entries:
            raise CorpusError(
                f"{out.root}: directory is not empty and has no {MANIFEST_NAME}; refusing to write a corpus into it"
            )
        return fresh
    where = join(out.root, MANIFEST_NAME)
    try:
        old = Manifest.from_json(text, where)
    except CorpusError:
        if not overwrite:
            raise
        old = None
    if old is not None and not overwrite and old.config_problem(where):
        raise CorpusError(f"{old.config_problem(where)}; refusing to resume it; use --overwrite to replace it")
    if old is not None and old.identity() == fresh.identity() and not overwrite:
        return old
    if not overwrite:
        raise CorpusError(
            f"{where}: existing corpus differs in {_diff(old.identity(), fresh.identity())}; "
            "use --overwrite to replace it"
        )
    # Replace only what a generator writes: a file of the user's among the shards is refused,
    # named, before anything is deleted.
    names = out.listdir(SHARDS_DIR)  # [] without a shards folder
    foreign = sorted(n for n in names if not _OUR_SHARD.match(n))
    if foreign:
        raise CorpusError(f"{join(out.root, SHARDS_DIR)}/{foreign[0]}: not a shard causalgen writes; refusing to "
                          "--overwrite a folder holding it (move it away first)")
    for name in names:
        out.remove(f"{SHARDS_DIR}/{name}")
    out.remove(SHARDS_DIR)
    out.remove(MANIFEST_NAME)
    return fresh


#: what a generator writes into shards/: finished shards and interrupted writes
_OUR_SHARD = re.compile(r"^(shard-\d{5}\.zarr(\.zip)?|\.tmp-.*)$")


def _reconcile(spec: CorpusSpec, out: _Output, manifest: Manifest, jobs: list[ShardJob]) -> list[ShardRecord]:
    """Records of the shards really on disk; removes temporary leftovers and strays."""
    by_index = {r.index: r for r in manifest.shards}
    present = set(out.listdir(SHARDS_DIR))
    for name in present:
        if name.startswith(".tmp-"):
            out.remove(f"{SHARDS_DIR}/{name}")  # an interrupted write: never complete
    for name in out.listdir():
        if name.startswith(f".{MANIFEST_NAME}.tmp-"):
            out.remove(name)  # a manifest rewrite cut short; the old manifest is intact
    records = []
    for job in jobs:
        name = posixpath.basename(job.path)
        if name not in present:
            continue
        rec = by_index.get(job.index)
        if rec is None:
            # Renamed into place but killed before the manifest caught up.
            try:
                rec = record_from_disk(job)
            except shardfmt.ShardError:
                out.remove(job.path)
                continue
        records.append(rec)
    return records


@contextlib.contextmanager
def _single_threaded_children() -> Iterator[None]:
    # Child processes read these when their libraries load; setting them only
    # around pool start-up leaves the driver's own settings alone afterwards.
    saved = {v: os.environ.get(v) for v in _THREAD_ENV}
    os.environ.update({v: "1" for v in _THREAD_ENV})
    try:
        yield
    finally:
        for v, old in saved.items():
            if old is None:
                os.environ.pop(v, None)
            else:
                os.environ[v] = old


def _run_local(jobs: list[ShardJob], workers: int) -> Iterator[dict[str, Any]]:
    if workers == 1 or len(jobs) <= 1:
        for job in jobs:
            yield run_job(job)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    # spawn, not fork: the driver may already run zarr's event-loop thread,
    # which a forked child would inherit in a broken state.
    ctx = multiprocessing.get_context("spawn")
    with _single_threaded_children():
        pool = ProcessPoolExecutor(max_workers=min(workers, len(jobs)), mp_context=ctx, initializer=_init_pool_worker)
        futures = [pool.submit(run_job_in_worker, job) for job in jobs]
    from concurrent.futures.process import BrokenProcessPool

    try:
        for fut in as_completed(futures):
            try:
                result = fut.result()
            except BrokenProcessPool:
                raise GenerationFailed(
                    "a worker process died (killed, or out of memory?); the shards finished so far are kept: "
                    "re-run the same command to resume"
                ) from None
            yield result
    finally:
        for fut in futures:
            fut.cancel()
        pool.shutdown(wait=True, cancel_futures=True)


def _run_dask(jobs: list[ShardJob], scheduler: str) -> Iterator[dict[str, Any]]:
    try:
        from distributed import Client, as_completed
    except ImportError:
        raise CorpusError("executor dask: the 'distributed' package is not installed (pip install 'causalgen[dask]')") from None
    try:
        client = Client(scheduler, set_as_default=False, timeout="30s")
    except Exception as exc:
        raise CorpusError(f"--scheduler {scheduler}: cannot connect to the Dask scheduler: {exc}") from None
    try:
        run = uuid.uuid4().hex[:8]
        futures = client.map(run_job_in_worker, jobs, pure=False, key=[f"causalgen-shard-{j.index:05d}-{run}" for j in jobs])
        for fut in as_completed(futures, loop=client.loop):
            yield fut.result()
    finally:
        client.close()


def generate_corpus(
    spec: CorpusSpec,
    out: str,
    *,
    workers: int = 1,
    executor: str = "process",
    scheduler: str | None = None,
    overwrite: bool = False,
    progress: bool = True,
    on_record: Callable[[ShardRecord], None] | None = None,
) -> Manifest:
    """Generate (or finish) the corpus `spec` at `out`; return its final manifest.

    out: local directory or fsspec URL (for Dask, one every worker can write).
    workers: local processes (1 = in this process); ignored with Dask.
    Raises `CorpusError` for bad arguments or an existing incompatible corpus.
    """
    spec.validate()
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise CorpusError(f"workers: expected an integer >= 1, got {workers!r}")
    if executor not in EXECUTORS:
        raise CorpusError(f"executor: expected one of {', '.join(EXECUTORS)}, got {executor!r}")
    if executor == "dask" and not scheduler:
        raise CorpusError("executor dask: needs --scheduler ADDRESS (e.g. tcp://host:8786)")
    resolve_sampler(spec.sampler)  # fail before touching the disk
    if "://" not in out:
        out = os.path.abspath(out)  # workers may run elsewhere (Dask) or in another cwd
    dest = _Output(out)
    if dest.is_file():
        raise CorpusError(f"{out}: is a file, expected a corpus directory")
    if not overwrite:
        done = _already_complete(spec, dest)
        if done is not None:
            return done  # nothing to write (so a read-only copy of a finished corpus is fine)
    _check_parents(out)
    dest.makedirs()
    with dest.lock():
        manifest = prepare_output(spec, dest, overwrite)
        dest.write_text_atomic(MANIFEST_NAME, manifest.to_json())
        dest.makedirs(SHARDS_DIR)
        jobs = plan_jobs(spec, out)
        records = {r.index: r for r in _reconcile(spec, dest, manifest, jobs)}
        manifest = manifest.with_shards(list(records.values()))
        dest.write_text_atomic(MANIFEST_NAME, manifest.to_json())
        todo = [j for j in jobs if j.index not in records]
        bar = _progress(total=spec.num_tasks, initial=manifest.tasks_written, enabled=progress)
        last_write = time.monotonic()
        try:
            stream = _run_dask(todo, scheduler) if executor == "dask" else _run_local(todo, workers)
            for raw in stream:
                rec = ShardRecord.from_dict(raw, f"shard {raw.get('index')}")
                records[rec.index] = rec
                bar.update(rec.num_tasks)
                if on_record is not None:
                    on_record(rec)
                if time.monotonic() - last_write >= MANIFEST_INTERVAL_S:
                    dest.write_text_atomic(MANIFEST_NAME, manifest.with_shards(list(records.values())).to_json())
                    last_write = time.monotonic()
        except BaseException:
            bar.close()
            # Record what finished; if that fails too (a full disk), the old manifest is intact,
            # the finished shards are found by name on resume, and the first error is the one to report.
            with contextlib.suppress(Exception):
                dest.write_text_atomic(MANIFEST_NAME, manifest.with_shards(list(records.values())).to_json())
            raise
        bar.close()
        manifest = manifest.with_shards(list(records.values()))
        dest.write_text_atomic(MANIFEST_NAME, manifest.to_json())
    return manifest


def _check_parents(out: str) -> None:
    """A local `out` below an existing file: say so (os.makedirs would raise NotADirectoryError)."""
    if "://" in out and not out.startswith("file://"):
        return
    path = os.path.abspath(out[len("file://"):] if out.startswith("file://") else out)
    parent = os.path.dirname(path)
    while parent and not os.path.exists(parent):
        parent, prev = os.path.dirname(parent), parent
        if parent == prev:
            break
    if parent and os.path.exists(parent) and not os.path.isdir(parent):
        raise CorpusError(f"--out {out}: {parent} is a file, not a directory")


def _already_complete(spec: CorpusSpec, dest: _Output) -> Manifest | None:
    """The manifest of a finished corpus of exactly `spec` at `dest`, if that is what is there.

    Finished means: the manifest parses, matches the spec, is complete, is in
    its canonical form, and every shard it lists exists under its final name
    with no temporary leftovers. Then generation has nothing to do and writes
    nothing. Anything else (None) goes through the normal, locked path.
    """
    try:
        if not dest.exists():
            return None
        text = dest.read_text(MANIFEST_NAME)
        if text is None:
            return None
        manifest = Manifest.from_json(text, join(dest.root, MANIFEST_NAME))
    except (CorpusError, OSError, ValueError):
        return None
    if (not manifest.complete or manifest.identity() != spec.empty_manifest().identity()
            or manifest.config_problem() or manifest.to_json() != text):
        return None
    present = set(dest.listdir(SHARDS_DIR))
    if any(name.startswith(".tmp-") for name in present) or any(_ours(e) and e != ".lock" for e in dest.listdir()):
        return None
    if not all(posixpath.basename(r.path) in present for r in manifest.shards):
        return None
    return manifest


def _progress(total: int, initial: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, unit="task", desc="generate", disable=not enabled, dynamic_ncols=True, smoothing=0.1)
