"""``causalgen publish``: turn a verified corpus into a Hugging Face dataset repository.

The repository (layout in `causalgen.hub.layout`) offers every task twice, from
one pass over the corpus:

- Parquet, one row per task with explicit `datasets.Features`, so
  ``load_dataset("ORG/NAME")`` (also ``streaming=True``) and the Hub viewer work
  without causalgen;
- packed zarr shards grouped by split, plus ``manifest.json`` with the checksum
  of every file, for causalgen's own fast loaders (`causalgen.hub.reader`).

Safety rules, checked in this order so that bad input costs nothing: the repo id
is validated before anything else; ``--push`` needs a token and huggingface_hub
not in offline mode; OUT (and the folder it is in) must be writable; OUT must be
empty, or with ``--overwrite`` hold only a previous publish output: README.md,
manifest.json and, under data/, zarr/ and figures/, exactly the files that
publish's manifest.json lists (anything else is refused by name, never
deleted); the corpus must pass `verify_corpus` (complete, every checksum and
value check). A failed upload (no network, the Hub refusing) is a `PushError`
and leaves the built folder in place.
The repository is built in a hidden sibling directory, verified, and only then
renamed onto OUT, so an interrupted or failed publish never leaves a partial OUT
and never destroys the previous one.

The token for ``--push`` is resolved by `huggingface_hub` itself (``HF_TOKEN`` or
the login cache); this module only asks whether one exists and never holds,
prints or writes it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..store import shard as shardfmt
from ..store.manifest import SEED_SCHEME, CorpusError, config_digest, summarise
from .layout import (
    CARD_NAME,
    DATA_DIR,
    FIGURE_NAME,
    FIGURES_DIR,
    MANIFEST_NAME,
    TOP_LEVEL,
    ZARR_DIR,
    PublishedFile,
    PublishedManifest,
    PublishedShard,
    parquet_path,
    zarr_shard_path,
)
from ..store.splits import SPLITS, split_of

DEFAULT_LICENSE = "cc-by-4.0"
#: Parquet file size target, as `datasets.push_to_hub` (estimated from manifest counts).
DEFAULT_MAX_PARQUET_BYTES = 500 * 1000**2
#: Arrow bytes per Parquet row group: small enough that `IterableDataset` can
#: spread a file over several workers, large enough to keep per-group overhead low.
ROW_GROUP_BYTES = 32 * 1024**2
#: Hub limit: fewer than 10k entries per folder.
MAX_FILES_PER_FOLDER = 10_000
_REPO_ID = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?/[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?$")
_LICENSE = re.compile(r"^[a-z0-9][a-z0-9.+-]*$")
#: What a push uploads (the publish output, nothing a user may have added) and
#: which remote files it replaces: stale shards of an earlier, larger publish
#: would otherwise still match the card's ``data/<split>-*.parquet`` globs.
UPLOAD_PATTERNS = [CARD_NAME, MANIFEST_NAME, f"{DATA_DIR}/*.parquet", f"{ZARR_DIR}/*/shard-*.zarr.zip", f"{FIGURES_DIR}/*.png"]
DELETE_PATTERNS = [f"{DATA_DIR}/*", f"{ZARR_DIR}/*", f"{FIGURES_DIR}/*"]


class PublishError(CorpusError):
    """Publishing was refused or failed; the message (one line) names the problem."""


class PushError(RuntimeError):
    """The upload failed for a reason outside the program (network, the Hub); the built folder is kept."""


# ------------------------------------------------------------------ input checks


def check_repo_id(repo_id: str) -> str:
    """``ORG/NAME`` as the Hub accepts it; `PublishError` otherwise."""
    if not isinstance(repo_id, str) or not _REPO_ID.match(repo_id) or "--" in repo_id or ".." in repo_id or repo_id.endswith(".git"):
        raise PublishError(
            f"--repo-id {repo_id!r}: expected ORG/NAME (letters, digits, '-', '_', '.'; at most 96 characters each; "
            "no '--' or '..'; not starting or ending with '-' or '.')"
        )
    return repo_id


def check_license(license: str) -> str:
    if not isinstance(license, str) or not _LICENSE.match(license):
        raise PublishError(f"--license {license!r}: expected a Hub license identifier such as cc-by-4.0, apache-2.0 or other")
    return license


def has_token() -> bool:
    """Whether `huggingface_hub` will find a token (HF_TOKEN or the login cache); the token is not kept."""
    from huggingface_hub import get_token

    return get_token() is not None


def hub_offline() -> bool:
    """Whether huggingface_hub is in offline mode (HF_HUB_OFFLINE), where every upload is refused."""
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def check_figure_backend() -> None:
    """The card's figure needs matplotlib (an optional dependency of causalgen)."""
    import importlib.util

    if importlib.util.find_spec("matplotlib") is None:
        raise PublishError("causalgen publish needs matplotlib for the card's figure: pip install matplotlib")


def _is_local(path: str) -> bool:
    return "://" not in path or path.startswith("file://")


def _local(path: str) -> str:
    return path[len("file://"):] if path.startswith("file://") else path


def check_out_dir(out: str, *, overwrite: bool, corpus: str | None = None) -> None:
    """Refuse an OUT that is a file, under a file, not writable, non-empty without overwrite,
    holds anything a previous publish did not write, or holds the corpus."""
    if not _is_local(out):
        raise PublishError(f"--repo-dir {out}: must be a local directory (upload with --push)")
    out = _local(out)
    if corpus is not None and _is_local(corpus):
        real_out, real_corpus = os.path.realpath(out), os.path.realpath(_local(corpus))
        if real_corpus == real_out or real_corpus.startswith(real_out.rstrip(os.sep) + os.sep):
            raise PublishError(f"--repo-dir {out}: contains the corpus {corpus}; choose a separate output directory")
    if os.path.lexists(out) and not os.path.isdir(out):
        raise PublishError(f"--repo-dir {out}: exists and is not a directory")
    _check_writable(out)
    if not os.path.isdir(out):
        return
    entries = sorted(os.listdir(out))
    if not entries:
        return
    if not overwrite:
        raise PublishError(f"--repo-dir {out}: not empty ({len(entries)} entries); pass --overwrite to replace a previous publish")
    foreign = [e for e in entries if e not in TOP_LEVEL]
    if foreign:
        raise PublishError(
            f"--repo-dir {out}: contains {foreign[0]!r}, which causalgen publish does not write; "
            "refusing to replace it even with --overwrite (use an empty directory)"
        )
    _check_only_previous_output(out)


def _check_writable(out: str) -> None:
    """OUT (when it exists) and the folder that will receive the build must be writable.

    The build goes to a hidden sibling of OUT and is renamed onto it, so both
    matter; checked up front so that a read-only location costs no build.
    """
    parent = os.path.dirname(os.path.abspath(out))
    ancestor = parent
    while not os.path.lexists(ancestor):
        ancestor = os.path.dirname(ancestor)
    if not os.path.isdir(ancestor):
        raise PublishError(f"--repo-dir {out}: {ancestor} is a file, not a directory")
    if os.path.isdir(out) and not os.access(out, os.W_OK):
        raise PublishError(f"--repo-dir {out}: not writable (read-only file system or no permission); nothing was changed")
    if not os.access(ancestor, os.W_OK):
        raise PublishError(f"--repo-dir {out}: its folder {ancestor} is not writable (read-only file system or no permission); nothing was changed")


def _check_only_previous_output(out: str) -> None:
    """Everything under data/, zarr/ and figures/ must be a file the previous publish lists.

    The previous publish's manifest.json names every file it wrote (shards,
    Parquet, figures); anything else there is the user's and is never
    replaced: the overwrite is refused, naming it.
    """
    where = os.path.join(out, MANIFEST_NAME)
    try:
        with open(where, encoding="utf-8") as fh:
            previous = PublishedManifest.from_json(fh.read(), where)
    except (OSError, UnicodeDecodeError, CorpusError) as exc:
        cause = _one_line(exc) if isinstance(exc, CorpusError) else f"{type(exc).__name__}: {exc}"
        raise PublishError(
            f"--repo-dir {out}: has no readable {MANIFEST_NAME} of a previous causalgen publish ({cause}); "
            "refusing to replace its contents even with --overwrite (use an empty directory)"
        ) from None
    ours = {path for path, _, _ in previous.files()}
    for sub in (DATA_DIR, ZARR_DIR, FIGURES_DIR):
        top = os.path.join(out, sub)
        if os.path.islink(top) or (os.path.lexists(top) and not os.path.isdir(top)):
            raise PublishError(f"--repo-dir {out}: {sub} is not a directory the previous publish wrote; refusing to replace it even with --overwrite")
        for dirpath, dirnames, filenames in os.walk(top):
            links = [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]
            for name in sorted(filenames + links):
                rel = os.path.relpath(os.path.join(dirpath, name), out).replace(os.sep, "/")
                if rel not in ours:
                    raise PublishError(
                        f"--repo-dir {out}: contains {rel!r}, which the previous publish did not write (not in its "
                        f"{MANIFEST_NAME}); refusing to replace it even with --overwrite (move it out first)"
                    )


def _one_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def open_verified_corpus(corpus: str, *, progress: bool = False):
    """`open_corpus` after a full `verify_corpus`; refuses published repos, partial or damaged corpora."""
    from ..store.corpus import open_corpus, read_manifest, verify_corpus
    from .reader import is_published

    if is_published(corpus):
        raise PublishError(f"{corpus}: is already a published repository; publish the corpus it was built from")
    total = read_manifest(corpus).tasks_written  # CorpusError (missing / malformed manifest) first
    from tqdm.auto import tqdm

    with tqdm(total=total, unit="task", desc="verify", disable=not progress, dynamic_ncols=True) as bar:
        report = verify_corpus(corpus, progress=bar.update)
    if not report.ok:
        extra = f" (+{len(report.problems) - 1} more)" if len(report.problems) > 1 else ""
        raise PublishError(f"{corpus}: refusing to publish, verify failed: {report.problems[0]}{extra}")
    return open_corpus(corpus)


# ------------------------------------------------------------------ the plan


@dataclass
class SplitPlan:
    """Which corpus tasks go where, for one split (all from the manifest, nothing decoded)."""

    split: str
    tasks: np.ndarray  #: (n,) int64 corpus indices, in corpus order
    shard_sizes: list[int]  #: tasks per zarr shard
    parquet_rows: list[int]  #: rows per Parquet file


@dataclass
class PublishPlan:
    num_tasks: int
    shard_size: int
    splits: dict[str, SplitPlan] = field(default_factory=dict)

    def files(self) -> list[tuple[str, str]]:
        """(path, what) of every file the repository will hold, in upload order."""
        out = [(CARD_NAME, "dataset card"), (MANIFEST_NAME, "index and checksums"), (FIGURE_NAME, "summary histograms")]
        for s, p in self.splits.items():
            out += [(parquet_path(s, k, len(p.parquet_rows)), f"{n} rows") for k, n in enumerate(p.parquet_rows)]
        for s, p in self.splits.items():
            out += [(zarr_shard_path(s, k), f"{n} tasks") for k, n in enumerate(p.shard_sizes)]
        return out


def make_plan(columns: dict[str, np.ndarray], *, shard_size: int, max_parquet_bytes: int) -> PublishPlan:
    """Split assignment, zarr shard sizes and Parquet file boundaries from manifest columns."""
    from .parquet_view import estimate_row_bytes

    idx = columns["task_index"]
    labels = np.asarray([split_of(int(s)) for s in columns["seed"]])
    est = estimate_row_bytes(columns["n_units"], columns["n_covariates"], columns["n_nodes"])
    plan = PublishPlan(num_tasks=int(idx.shape[0]), shard_size=shard_size)
    for s in SPLITS:
        mask = labels == s
        tasks = np.asarray(idx[mask], dtype=np.int64)
        sizes = [min(shard_size, len(tasks) - k) for k in range(0, len(tasks), shard_size)]
        rows: list[int] = []
        current, current_bytes = 0, 0
        for b in est[mask]:
            # Greedy: start a new file when this row would push the current one past the target.
            if current and current_bytes + int(b) > max_parquet_bytes:
                rows.append(current)
                current, current_bytes = 0, 0
            current += 1
            current_bytes += int(b)
        if current:
            rows.append(current)
        for kind, n in (("zarr shards", len(sizes)), ("Parquet files", len(rows))):
            if n > MAX_FILES_PER_FOLDER:
                raise PublishError(
                    f"split {s}: {n} {kind} exceed the Hub's {MAX_FILES_PER_FOLDER} files per folder; raise --shard-size / --max-parquet-mb"
                )
        plan.splits[s] = SplitPlan(split=s, tasks=tasks, shard_sizes=sizes, parquet_rows=rows)
    return plan


# ------------------------------------------------------------------ building


def _sha256_file(path: str) -> tuple[int, str]:
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
            size += len(block)
    return size, h.hexdigest()


class _ParquetSplitWriter:
    """Writes one split's rows into its planned Parquet files, one row group per ~32 MB."""

    def __init__(self, root: str, split: str, rows_per_file: list[int]):
        self.root, self.split, self.rows_per_file = root, split, rows_per_file
        self.file_index = 0
        self.rows_in_file = 0
        self.written_rows = 0
        self.writer = None
        self.pending: list[tuple[Any, int, dict]] = []  # (task, corpus index, summaries)
        self.pending_bytes = 0
        self.records: list[PublishedFile] = []
        self.arrow_bytes = 0

    def add(self, task, index: int, summary: dict, est_bytes: int) -> None:
        self.pending.append((task, index, summary))
        self.pending_bytes += est_bytes
        remaining = self.rows_per_file[self.file_index] - self.rows_in_file
        if len(self.pending) == remaining or self.pending_bytes >= ROW_GROUP_BYTES:
            self._flush()

    def _flush(self) -> None:
        import pyarrow.parquet as pq
        from datasets import config as ds_config

        from .parquet_view import tasks_to_table, task_features

        if not self.pending:
            return
        tasks = [p[0] for p in self.pending]
        summaries = {k: [p[2][k] for p in self.pending] for k in ("graph_family", "mechanism", "treated_share", "propensity_min", "propensity_max")}
        table = tasks_to_table(tasks, task_indices=[p[1] for p in self.pending], splits=[self.split] * len(tasks), summaries=summaries)
        if self.writer is None:
            path = os.path.join(self.root, parquet_path(self.split, self.file_index, len(self.rows_per_file)))
            os.makedirs(os.path.dirname(path), exist_ok=True)
            schema = task_features().arrow_schema
            # Same writer settings as `datasets` (content-defined chunking + page
            # index), so re-uploads deduplicate on the Xet-backed Hub.
            self.writer = pq.ParquetWriter(
                path, schema, write_page_index=True, use_content_defined_chunking=ds_config.DEFAULT_CDC_OPTIONS,
            )
            self.writer.add_key_value_metadata({"content_defined_chunking": json.dumps(ds_config.DEFAULT_CDC_OPTIONS)})
            self.path = path
        self.writer.write_table(table, row_group_size=len(tasks))
        self.arrow_bytes += table.nbytes
        self.rows_in_file += len(tasks)
        self.pending, self.pending_bytes = [], 0
        if self.rows_in_file == self.rows_per_file[self.file_index]:
            self.writer.close()
            self.writer = None
            size, digest = _sha256_file(self.path)
            rel = parquet_path(self.split, self.file_index, len(self.rows_per_file))
            self.records.append(PublishedFile(path=rel, bytes=size, sha256=digest, split=self.split, first=self.written_rows, rows=self.rows_in_file))
            self.written_rows += self.rows_in_file
            self.file_index += 1
            self.rows_in_file = 0

    def close(self) -> None:
        if self.pending or self.writer is not None or self.file_index != len(self.rows_per_file):
            raise RuntimeError(f"split {self.split}: Parquet rows do not match the plan (bug)")


class _ZarrSplitWriter:
    """Packs one split's tasks into ``zarr/<split>/shard-NNNNN.zarr.zip`` as planned."""

    def __init__(self, root: str, split: str, shard_sizes: list[int], compression: str):
        self.root, self.split, self.shard_sizes, self.compression = root, split, shard_sizes, compression
        self.pending: list[tuple[Any, int]] = []
        self.first = 0
        self.records: list[PublishedShard] = []

    def add(self, task, index: int) -> None:
        self.pending.append((task, index))
        if len(self.pending) == self.shard_sizes[len(self.records)]:
            self._write()

    def _write(self) -> None:
        k = len(self.records)
        tasks = [p[0] for p in self.pending]
        seeds = [int(t.meta["seed"]) for t in tasks]
        # Inside the shard, task_index / first_task count positions within the
        # split (the shard layout requires them contiguous); the corpus index
        # goes into the manifest record.
        cols = shardfmt.flatten_tasks(tasks, range(self.first, self.first + len(tasks)), seeds)
        files = shardfmt.encode_columns(cols, shard_index=k, first_task=self.first, compression=self.compression)
        rel = zarr_shard_path(self.split, k)
        dest = os.path.join(self.root, rel)
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        written = shardfmt.write_shard(files, dest)
        summary, rejections = summarise(cols, [t.meta for t in tasks])
        self.records.append(PublishedShard(
            split=self.split, index=k, path=rel, first=self.first, num_tasks=len(tasks), bytes=written.bytes,
            sha256=written.sha256, qc_rejections=rejections, tasks={"task_index": [p[1] for p in self.pending], **summary},
        ))
        self.first += len(tasks)
        self.pending = []

    def close(self) -> None:
        if self.pending or len(self.records) != len(self.shard_sizes):
            raise RuntimeError(f"split {self.split}: zarr shards do not match the plan (bug)")


def _source_identity(corpus) -> dict[str, Any]:
    m = corpus.manifest
    return {
        "corpus_seed": m.corpus_seed,
        "num_tasks": m.num_tasks,
        "num_shards": m.num_shards,
        "shard_size": m.shard_size,
        "shard_format": m.shard_format,
        "compression": m.compression,
        "sampler": m.sampler,
        "causalgen_version": m.causalgen_version,
        "seed_scheme": SEED_SCHEME,
        "config_sha256": config_digest(m.config),
        # of the canonical manifest text: identifies the exact corpus published
        "manifest_sha256": hashlib.sha256(m.to_json().encode("utf-8")).hexdigest(),
    }


def build_repository(
    corpus,
    dest: str,
    plan: PublishPlan,
    *,
    repo_id: str | None,
    license: str,
    pretty_name: str | None,
    template_dir: str | None = None,
    progress: bool = False,
) -> PublishedManifest:
    """Write the whole repository into the empty directory `dest` (one pass over the corpus)."""
    from tqdm.auto import tqdm

    from .._version import __version__
    from .card import render_card, render_figure
    from .parquet_view import estimate_row_bytes

    cols = corpus.columns
    # split code per corpus index (an int8 array: a dict would cost ~100 bytes per task)
    codes = np.full(plan.num_tasks, -1, dtype=np.int8)
    for s, p in plan.splits.items():
        codes[p.tasks] = SPLITS.index(s)
    est = estimate_row_bytes(cols["n_units"], cols["n_covariates"], cols["n_nodes"])
    zarr_w = {s: _ZarrSplitWriter(dest, s, p.shard_sizes, corpus.manifest.compression) for s, p in plan.splits.items()}
    pq_w = {s: _ParquetSplitWriter(dest, s, p.parquet_rows) for s, p in plan.splits.items()}
    summary_names = ("graph_family", "mechanism", "treated_share", "propensity_min", "propensity_max")
    meta_keys: set[str] = set()
    k = 0  # row of the manifest columns (shard order, which for a corpus is corpus order)
    with tqdm(total=plan.num_tasks, unit="task", desc="publish", disable=not progress, dynamic_ncols=True) as bar:
        for data in corpus.iter_shards():
            for task in data:
                i = int(cols["task_index"][k])
                if task.meta.get("seed") != int(cols["seed"][k]):
                    raise PublishError(f"task {i}: shard and manifest disagree on its seed (corpus changed during publish?)")
                s = SPLITS[codes[i]]
                meta_keys.update(task.meta)
                zarr_w[s].add(task, i)
                pq_w[s].add(task, i, {name: cols[name][k] for name in summary_names}, int(est[k]))
                k += 1
            bar.update(len(data))
    for w in (*zarr_w.values(), *pq_w.values()):
        w.close()

    os.makedirs(os.path.join(dest, FIGURES_DIR), exist_ok=True)
    figure_columns = {name: cols[name] for name in ("ate", "n_units", "treated_share")}
    figure_columns["split"] = np.asarray(SPLITS, dtype=object)[codes[cols["task_index"]]]
    render_figure(figure_columns, os.path.join(dest, FIGURE_NAME))
    size, digest = _sha256_file(os.path.join(dest, FIGURE_NAME))

    manifest = PublishedManifest(
        config=corpus.manifest.config,
        source=_source_identity(corpus),
        num_tasks=plan.num_tasks,
        shard_size=plan.shard_size,
        compression=corpus.manifest.compression,
        causalgen_version=__version__,
        shards=tuple(r for s in SPLITS for r in zarr_w[s].records),
        parquet=tuple(f for s in SPLITS for f in pq_w[s].records),
        figures=(PublishedFile(path=FIGURE_NAME, bytes=size, sha256=digest),),
    )
    manifest.check(MANIFEST_NAME)
    with open(os.path.join(dest, MANIFEST_NAME), "w", encoding="utf-8") as fh:
        fh.write(manifest.to_json())
    card = render_card(
        manifest, repo_id=repo_id, license=license, pretty_name=pretty_name, meta_keys=sorted(meta_keys),
        split_bytes={s: w.arrow_bytes for s, w in pq_w.items()}, template_dir=template_dir,
    )
    with open(os.path.join(dest, CARD_NAME), "w", encoding="utf-8") as fh:
        fh.write(card)
    return manifest


def _install(tmp: str, out: str) -> None:
    """Move the finished `tmp` onto `out`; the old OUT is removed only once the new one is in place."""
    if not os.path.isdir(out):
        os.replace(tmp, out)
        return
    if not os.listdir(out):
        os.replace(tmp, out)  # POSIX rename replaces an empty directory atomically
        return
    parent, name = os.path.split(os.path.abspath(out))
    old = tempfile.mkdtemp(prefix=f".{name}.old-", dir=parent)
    os.rmdir(old)
    os.replace(out, old)
    try:
        os.replace(tmp, out)
    except BaseException:
        os.replace(old, out)  # put the previous publish back
        raise
    shutil.rmtree(old, ignore_errors=True)


@dataclass
class PublishResult:
    repo_dir: str
    manifest: PublishedManifest
    plan: PublishPlan


def publish(
    corpus: str | os.PathLike,
    repo_dir: str | os.PathLike,
    *,
    repo_id: str | None = None,
    overwrite: bool = False,
    license: str = DEFAULT_LICENSE,
    pretty_name: str | None = None,
    shard_size: int | None = None,
    max_parquet_bytes: int = DEFAULT_MAX_PARQUET_BYTES,
    template_dir: str | os.PathLike | None = None,
    progress: bool = False,
) -> PublishResult:
    """Build the dataset repository for `corpus` in `repo_dir` (no upload; see `push`).

    shard_size: tasks per published zarr shard (default: the corpus's).
    Raises `PublishError` (one line) for refused input, `CorpusError` for an
    unreadable corpus. `repo_dir` is replaced only by a complete, verified build.
    """
    corpus, out = os.fspath(corpus), os.fspath(repo_dir)
    if repo_id is not None:
        check_repo_id(repo_id)
    check_license(license)
    if shard_size is not None and (isinstance(shard_size, bool) or not isinstance(shard_size, int) or shard_size < 1):
        raise PublishError(f"--shard-size: expected a positive integer, got {shard_size!r}")
    if not isinstance(max_parquet_bytes, int) or max_parquet_bytes < 1:
        raise PublishError(f"--max-parquet-mb: expected a positive size, got {max_parquet_bytes!r}")
    check_out_dir(out, overwrite=overwrite, corpus=corpus)
    check_figure_backend()
    from .card import load_template, CARD_TEMPLATE

    load_template(CARD_TEMPLATE, template_dir)  # a missing template should fail before the long part
    source = open_verified_corpus(corpus, progress=progress)
    plan = make_plan(source.columns, shard_size=shard_size or source.manifest.shard_size, max_parquet_bytes=max_parquet_bytes)

    from .reader import verify_published

    out = _local(out)
    parent, name = os.path.split(os.path.abspath(out))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{name}.tmp-", dir=parent)
    # mkdtemp makes the directory 0700; OUT should get the usual umask-derived mode.
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(tmp, 0o777 & ~mask)
    try:
        manifest = build_repository(
            source, tmp, plan, repo_id=repo_id, license=license, pretty_name=pretty_name,
            template_dir=os.fspath(template_dir) if template_dir is not None else None, progress=progress,
        )
        report = verify_published(tmp)
        if not report.ok:
            raise PublishError(f"the built repository failed verification (not installed): {report.problems[0]}")
        # Re-check OUT: another process may have written into it while we built.
        check_out_dir(out, overwrite=overwrite, corpus=corpus)
        _install(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return PublishResult(repo_dir=out, manifest=manifest, plan=plan)


# ------------------------------------------------------------------ pushing


def push(repo_dir: str | os.PathLike, repo_id: str, *, private: bool = False, commit_message: str | None = None, api=None, verify: bool = True):
    """Upload a built repository folder: ``create_repo`` (exist_ok) then one ``upload_folder``.

    Only the files a publish writes are uploaded (`UPLOAD_PATTERNS`); remote
    files under data/, zarr/ and figures/ that this publish does not contain are
    deleted in the same commit, so the card's globs never pick up stale shards.
    api: an `HfApi` (default: a new one, which finds the token itself).
    Returns the `CommitInfo`.
    """
    from huggingface_hub import HfApi

    from .reader import read_published_manifest, verify_published, _LocalSource

    check_repo_id(repo_id)
    root = os.fspath(repo_dir)
    if verify:
        report = verify_published(root)
        if not report.ok:
            raise PublishError(f"{root}: refusing to push, verification failed: {report.problems[0]}")
    manifest = read_published_manifest(_LocalSource(root))
    message = commit_message or (
        f"causalgen publish: {manifest.num_tasks} tasks of config {manifest.config.get('name', 'custom')!r}, "
        f"corpus seed {manifest.corpus_seed} (causalgen {manifest.causalgen_version})"
    )
    try:
        api = api if api is not None else HfApi()
        # private=None (not False) leaves a new repository to the account's default visibility;
        # an existing repository keeps its visibility either way.
        api.create_repo(repo_id, repo_type="dataset", private=True if private else None, exist_ok=True)
        return api.upload_folder(
            repo_id=repo_id, repo_type="dataset", folder_path=root, commit_message=message,
            allow_patterns=UPLOAD_PATTERNS, delete_patterns=DELETE_PATTERNS,
        )
    except _network_errors() as exc:
        raise PushError(f"upload of {root} to {repo_id} failed: {_push_cause(exc)}; the folder {root} is built and "
                        "verified: re-run with --overwrite --push to retry") from exc


def _network_errors() -> tuple[type[BaseException], ...]:
    """What a failed upload raises: the Hub's HTTP errors, the HTTP client's transport errors
    (no network, DNS, timeouts; the client's HTTPError base, whichever client huggingface_hub
    uses) and OSError (offline mode, connection errors)."""
    from huggingface_hub.errors import HfHubHTTPError

    bases = tuple(c for c in HfHubHTTPError.__mro__ if c.__name__ == "HTTPError" and c is not HfHubHTTPError)
    return (HfHubHTTPError, OSError, *bases)


def _push_cause(exc: BaseException) -> str:
    from huggingface_hub import constants
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    text = _one_line(exc)
    if isinstance(exc, OfflineModeIsEnabled):
        return f"HF_HUB_OFFLINE is set ({text})"
    if isinstance(exc, HfHubHTTPError):
        return f"the Hub answered: {text}"
    return f"cannot reach {constants.ENDPOINT} ({type(exc).__name__}: {text})"


# ------------------------------------------------------------------ CLI
