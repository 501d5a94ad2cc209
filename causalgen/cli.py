"""The `causalgen` command line: generate, inspect, verify, sample, publish and coverage.

Exit codes: 0 success; 1 verification or generation failure, or a failure
outside the program (a full disk, no network, a worker process killed); 2 usage,
config or input errors (a read-only or unusable path, an unknown URL scheme, a
foreign shard ...); each error is one line on stderr naming the file or field and
the cause; 130 interrupted. Only an internal error prints a traceback, after its
one-line cause.
"""

from __future__ import annotations

import argparse
import errno
import json
import sys
from typing import Any, Sequence

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors as one line (and exit code 2)."""

    def error(self, message: str):  # noqa: D102 - argparse hook
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class UsageError(ValueError):
    """Bad command-line input detected after parsing."""


def _positive(name: str):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < 1:
            raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
        return value

    parse.__name__ = name
    return parse


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if not 0 <= value < 2**63:
        raise argparse.ArgumentTypeError(f"must be in [0, 2**63), got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="causalgen", description="Random structural causal models -> causal-inference task corpora.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    def config_args(sp):
        g = sp.add_mutually_exclusive_group(required=True)
        g.add_argument("--preset", metavar="NAME", help="a built-in config (see `causalgen sample --help` for names)")
        g.add_argument("--config", metavar="FILE", help="a YAML/JSON config file (may say `preset: NAME` plus overrides)")

    g = sub.add_parser(
        "generate",
        help="generate (or resume) a sharded corpus",
        description="Generate a corpus of tasks into OUT as zarr v3 shards plus manifest.json. Re-running the same "
        "command after a crash finishes only the missing shards; the result is byte-identical to an uninterrupted run.",
    )
    config_args(g)
    g.add_argument("--num-tasks", type=_positive("num_tasks"), required=True, metavar="N", help="tasks in the corpus")
    g.add_argument("--shard-size", type=_positive("shard_size"), default=1000, metavar="S", help="tasks per shard (default 1000)")
    g.add_argument("--seed", type=_seed, default=0, help="corpus seed; task i uses a seed derived from (seed, i) (default 0)")
    g.add_argument("--workers", type=_positive("workers"), default=1, metavar="W", help="local worker processes (default 1)")
    g.add_argument("--out", required=True, metavar="DIR", help="output directory or fsspec URL")
    g.add_argument("--executor", choices=("process", "dask"), default="process", help="local processes (default) or a Dask cluster")
    g.add_argument("--scheduler", metavar="ADDRESS", help="Dask scheduler address, e.g. tcp://host:8786 (with --executor dask)")
    g.add_argument("--format", dest="shard_format", choices=("dir", "zip"), default="dir", help="shards as zarr directories (default) or packed .zarr.zip files")
    g.add_argument("--compression", choices=("none", "blosc", "zstd"), default="none",
                   help="chunk codec (every chunk also gets a crc32c): none (default, fastest reads), blosc-lz4, zstd (smallest, for publishing)")
    g.add_argument("--overwrite", action="store_true", help="replace an existing corpus with a different config/seed")
    g.add_argument("--quiet", action="store_true", help="no progress bar")

    i = sub.add_parser("inspect", help="summary statistics of a corpus (from its manifest)", description="Print sizes, ATE distribution, overlap, graph families, mechanisms and QC rejection counts, from manifest.json only.")
    i.add_argument("corpus", metavar="DIR", help="corpus directory or URL")
    i.add_argument("--json", action="store_true", help="print the statistics as JSON")

    v = sub.add_parser("verify", help="check checksums, structure and values of every shard", description="Exit 0 if every shard matches the manifest and passes the checks; exit 1 naming the first bad shard otherwise.")
    v.add_argument("corpus", metavar="DIR", help="corpus directory or URL")
    v.add_argument("--quiet", action="store_true", help="no progress bar")

    s = sub.add_parser("sample", help="sample tasks and print one summary line each", description="Sample tasks with the same seeds a corpus of this seed would use, and print Task.summary() lines.")
    config_args(s)
    s.add_argument("--num-tasks", type=_positive("num_tasks"), default=5, metavar="K", help="number of tasks (default 5)")
    s.add_argument("--seed", type=_seed, default=0, help="corpus seed (default 0)")

    _add_publish_parser(sub)
    _add_coverage_parser(sub)
    return p


def _add_coverage_parser(sub) -> None:
    c = sub.add_parser(
        "coverage",
        help="where a dataset sits within a prior: its descriptors against the prior's tasks",
        description="Describe DATA.csv (size, column types, treated share, estimated propensity range and overlap, "
        "cross-fitted outcome R^2) and place each descriptor within the same descriptors of K tasks of a prior; "
        "descriptors below the prior's 1st or above its 99th percentile are flagged outside. Exit 0 either way.",
    )
    c.add_argument("data", metavar="DATA.csv", help="comma-separated file with a header row, numeric cells (.gz allowed)")
    c.add_argument("--treatment", required=True, metavar="COL", help="the binary 0/1 treatment column")
    c.add_argument("--outcome", required=True, metavar="COL", help="the outcome column")
    c.add_argument("--covariates", nargs="+", metavar="COL", help="covariate columns (default: every other column)")
    g = c.add_mutually_exclusive_group()
    g.add_argument("--preset", metavar="NAME", help="the prior: a built-in config (default: default)")
    g.add_argument("--config", metavar="FILE", help="the prior: a YAML/JSON config file")
    c.add_argument("--tasks", type=_positive("tasks"), default=500, metavar="K", help="prior tasks to describe (default 500)")
    c.add_argument("--seed", type=_seed, default=0, help="prior seed: the tasks of a corpus generated with this seed (default 0)")
    c.add_argument("--figure", metavar="OUT.png", help="also draw one panel per descriptor into this image file")
    c.add_argument("--json", action="store_true", help="print the report as JSON")


def _add_publish_parser(sub) -> None:
    from .hub.publish import DEFAULT_LICENSE, DEFAULT_MAX_PARQUET_BYTES

    p = sub.add_parser(
        "publish",
        help="build (and optionally upload) a Hugging Face dataset repository from a corpus",
        description="Build a dataset repository from a verified corpus: Parquet for datasets.load_dataset, packed zarr "
        "shards by split, manifest.json and a dataset card (README.md). --push uploads it with huggingface_hub "
        "(token from HF_TOKEN or `hf auth login`).",
    )
    p.add_argument("corpus", metavar="CORPUS_DIR", help="corpus directory or URL (must pass `causalgen verify`)")
    p.add_argument("--repo-dir", required=True, metavar="OUT", help="local output folder (must be empty, or --overwrite)")
    p.add_argument("--repo-id", metavar="ORG/NAME", help="Hub dataset id (required with --push; used in the card's examples)")
    p.add_argument("--push", action="store_true", help="upload OUT to the Hub after building it")
    p.add_argument("--private", action="store_true", help="create the Hub repository as private (with --push)")
    p.add_argument("--overwrite", action="store_true", help="replace a previous publish output in OUT")
    p.add_argument("--dry-run", action="store_true", help="run every check, print the files that would be written and uploaded, write nothing")
    p.add_argument("--license", default=DEFAULT_LICENSE, help=f"license identifier for the card (default {DEFAULT_LICENSE})")
    p.add_argument("--pretty-name", metavar="TEXT", help="title of the dataset card")
    p.add_argument("--shard-size", type=int, metavar="S", help="tasks per published zarr shard (default: the corpus's shard size)")
    p.add_argument("--max-parquet-mb", type=float, default=DEFAULT_MAX_PARQUET_BYTES / 1e6, metavar="MB",
                   help="target size of each Parquet file (default 500)")
    p.add_argument("--card-templates", metavar="DIR", help="folder with the card templates (default: data_cards/ of this checkout)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


# --------------------------------------------------------------------- commands


def _load_config(args):
    from .prior.presets import load_config

    return load_config(args.preset if args.preset is not None else _config_file(args.config))


def _config_file(path: str) -> str:
    import os

    if not os.path.exists(path):
        raise UsageError(f"--config {path}: no such file")
    return path


def cmd_generate(args) -> int:
    from .store.generate import CorpusSpec, generate_corpus

    if args.executor == "dask" and not args.scheduler:
        raise UsageError("--executor dask needs --scheduler ADDRESS")
    if args.scheduler and args.executor != "dask":
        raise UsageError("--scheduler is only used with --executor dask")
    config = _load_config(args)
    spec = CorpusSpec(
        config=config.to_dict(), seed=args.seed, num_tasks=args.num_tasks, shard_size=args.shard_size,
        shard_format=args.shard_format, compression=args.compression,
    )
    generated = []
    m = generate_corpus(
        spec, args.out, workers=args.workers, executor=args.executor, scheduler=args.scheduler,
        overwrite=args.overwrite, progress=not args.quiet, on_record=generated.append,
    )
    note = "" if generated else " (complete: every shard was already written, nothing generated)"
    print(f"{args.out}: {m.tasks_written} tasks in {len(m.shards)} shards, {m.files} files, {m.bytes / 1e6:.1f} MB{note}")
    return EXIT_OK


def corpus_stats(manifest) -> dict[str, Any]:
    """Summary statistics of a corpus from its manifest columns."""
    import numpy as np

    cols = manifest.columns()
    n = int(cols["task_index"].shape[0])

    def dist(values) -> dict[str, float]:
        v = np.asarray(values, dtype=np.float64)
        v = v[np.isfinite(v)]
        if not v.size:
            return {}
        q = np.quantile(v, [0.0, 0.05, 0.25, 0.5, 0.75, 0.95, 1.0])
        return {"mean": float(v.mean()), "std": float(v.std()), **{k: float(x) for k, x in zip(("min", "p5", "p25", "median", "p75", "p95", "max"), q)}}

    def counts(values) -> dict[str, int]:
        keys, c = np.unique(np.asarray(values, dtype=str), return_counts=True) if len(values) else ([], [])
        return {str(k): int(x) for k, x in sorted(zip(keys, c), key=lambda kv: (-kv[1], kv[0]))}

    pmin, pmax = cols["propensity_min"], cols["propensity_max"]
    return {
        "complete": manifest.complete,
        "tasks": n,
        "tasks_planned": manifest.num_tasks,
        "shards": len(manifest.shards),
        "shards_planned": manifest.num_shards,
        "files": manifest.files,
        "bytes": manifest.bytes,
        "corpus_seed": manifest.corpus_seed,
        "config_name": manifest.config.get("name"),
        "n_units": dist(cols["n_units"]),
        "n_covariates": dist(cols["n_covariates"]),
        "ate": dist(cols["ate"]),
        "treated_share": dist(cols["treated_share"]),
        "overlap": {
            "propensity_min": dist(pmin),
            "propensity_max": dist(pmax),
            "share_tasks_with_propensity_outside_0.01_0.99": float(np.mean((pmin < 0.01) | (pmax > 0.99))) if n else 0.0,
        },
        "identifiable_share": float(np.mean(cols["identifiable"])) if n else 0.0,
        "graph_families": counts(cols["graph_family"]),
        "mechanisms": counts(cols["mechanism"]),
        "qc_rejections": manifest.qc_rejections,
    }


def _histogram(values, bins: int = 10, width: int = 40) -> list[str]:
    import numpy as np

    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if not v.size:
        return []
    hist, edges = np.histogram(v, bins=bins)
    top = max(1, int(hist.max()))
    return [f"    [{edges[k]:+9.3f}, {edges[k + 1]:+9.3f}) {'#' * int(round(width * h / top)):<{width}} {h}" for k, h in enumerate(hist)]


def cmd_inspect(args) -> int:
    from .store.corpus import read_manifest

    manifest = read_manifest(args.corpus)
    stats = corpus_stats(manifest)
    if args.json:
        print(json.dumps(stats, indent=2))
        return EXIT_OK

    def fmt(d):
        return "  ".join(f"{k}={v:.3g}" for k, v in d.items() if k in ("min", "median", "mean", "max", "p5", "p95")) or "n/a"

    state = "complete" if stats["complete"] else f"INCOMPLETE ({stats['tasks']}/{stats['tasks_planned']} tasks)"
    print(f"corpus      {args.corpus} ({state})")
    print(f"config      {stats['config_name']}  seed={stats['corpus_seed']}")
    print(f"size        {stats['tasks']} tasks, {stats['shards']} shards, {stats['files']} files, {stats['bytes'] / 1e6:.1f} MB")
    print(f"n_units     {fmt(stats['n_units'])}")
    print(f"n_covariates {fmt(stats['n_covariates'])}")
    print(f"treated     {fmt(stats['treated_share'])}")
    print(f"ate         {fmt(stats['ate'])}")
    for line in _histogram(manifest.columns()["ate"]):
        print(line)
    ov = stats["overlap"]
    print(f"overlap     min e: {fmt(ov['propensity_min'])}")
    print(f"            max e: {fmt(ov['propensity_max'])}")
    print(f"            tasks with some e outside [0.01, 0.99]: {ov['share_tasks_with_propensity_outside_0.01_0.99']:.1%}")
    print(f"identifiable {stats['identifiable_share']:.1%}")
    print("families    " + (", ".join(f"{k}: {v}" for k, v in stats["graph_families"].items()) or "n/a"))
    print("mechanisms  " + (", ".join(f"{k}: {v}" for k, v in stats["mechanisms"].items()) or "n/a"))
    print("qc rejected " + (", ".join(f"{k}: {v}" for k, v in stats["qc_rejections"].items()) or "none"))
    return EXIT_OK


def cmd_verify(args) -> int:
    from tqdm.auto import tqdm

    from . import verify_corpus  # a generated corpus or a published repository
    from .hub.reader import is_published, open_published
    from .store.corpus import read_manifest

    total = len(open_published(args.corpus)) if is_published(args.corpus) else read_manifest(args.corpus).tasks_written
    with tqdm(total=total, unit="task", desc="verify", disable=args.quiet, dynamic_ncols=True) as bar:
        report = verify_corpus(args.corpus, progress=bar.update)
    if report.ok:
        print(f"{args.corpus}: OK ({report.tasks_checked} tasks in {report.shards_checked} shards, {report.bytes_checked / 1e6:.1f} MB)")
        return EXIT_OK
    print(f"{args.corpus}: FAILED: {report.problems[0]}")
    for extra in report.problems[1:]:
        print(f"  also: {extra}")
    return EXIT_FAILED


def cmd_sample(args) -> int:
    from .store.manifest import task_seed
    from .prior.sampler import sample_tasks

    config = _load_config(args)
    seeds = [task_seed(args.seed, i) for i in range(args.num_tasks)]
    for task in sample_tasks(config, seeds):
        print(task.summary())
    return EXIT_OK


def cmd_publish(args) -> int:
    """Exit codes: 0 done, 1 upload failed or the build failed verification, 2 refused input."""
    from .hub import publish as pub

    if args.repo_id is not None:
        pub.check_repo_id(args.repo_id)
    if args.push and args.repo_id is None:
        raise UsageError("--push needs --repo-id ORG/NAME")
    if args.private and not args.push:
        raise UsageError("--private only applies with --push")
    pub.check_license(args.license)
    if args.push and not args.dry_run and not pub.has_token():
        raise UsageError("--push: no Hugging Face token found; set HF_TOKEN or run `hf auth login`")
    if args.push and not args.dry_run and pub.hub_offline():
        raise UsageError("--push: HF_HUB_OFFLINE is set, so nothing can be uploaded; unset HF_HUB_OFFLINE to push, "
                         "or build the folder without --push")
    if args.shard_size is not None and args.shard_size < 1:
        raise UsageError(f"--shard-size: must be >= 1, got {args.shard_size}")
    if not args.max_parquet_mb > 0:
        raise UsageError(f"--max-parquet-mb: must be > 0, got {args.max_parquet_mb}")
    max_bytes = max(1, int(args.max_parquet_mb * 1e6))
    if args.dry_run:
        pub.check_out_dir(args.repo_dir, overwrite=args.overwrite, corpus=args.corpus)
        source = pub.open_verified_corpus(args.corpus, progress=not args.quiet)
        plan = pub.make_plan(source.columns, shard_size=args.shard_size or source.manifest.shard_size, max_parquet_bytes=max_bytes)
        _print_dry_run(args, plan)
        return EXIT_OK
    result = pub.publish(
        args.corpus, args.repo_dir, repo_id=args.repo_id, overwrite=args.overwrite, license=args.license,
        pretty_name=args.pretty_name, shard_size=args.shard_size, max_parquet_bytes=max_bytes,
        template_dir=args.card_templates, progress=not args.quiet,
    )
    m = result.manifest
    size = sum(b for _, b, _ in m.files()) / 1e6
    print(f"{result.repo_dir}: {m.num_tasks} tasks ({', '.join(f'{s} {n}' for s, n in m.split_counts.items())}), "
          f"{len(m.parquet)} Parquet files, {len(m.shards)} zarr shards, {size:.1f} MB")
    if args.push:
        try:
            info = pub.push(result.repo_dir, args.repo_id, private=args.private, verify=False)
        except pub.PushError as exc:
            print(f"causalgen publish: error: {_one_line(exc)}", file=sys.stderr)
            return EXIT_FAILED
        print(f"pushed to https://huggingface.co/datasets/{args.repo_id} ({getattr(info, 'commit_url', info)})")
    return EXIT_OK


def _print_dry_run(args, plan) -> None:
    from .hub.publish import DELETE_PATTERNS, has_token, hub_offline

    counts = ", ".join(f"{s} {len(p.tasks)}" for s, p in plan.splits.items())
    print(f"dry run: would write {args.repo_dir} ({plan.num_tasks} tasks: {counts}):")
    for path, what in plan.files():
        print(f"  {path}  ({what})")
    if args.push:
        visibility = "private" if args.private else "visibility: the account default"
        token = "found" if has_token() else "NOT found: set HF_TOKEN or run `hf auth login` first"
        if hub_offline():
            token += "; HF_HUB_OFFLINE is set: the upload would be refused"
        print(f"dry run: would upload to https://huggingface.co/datasets/{args.repo_id} ({visibility}): create_repo + upload_folder "
              f"of {len(plan.files())} files, deleting remote files under {', '.join(DELETE_PATTERNS)} not in this upload; token {token}")


def cmd_coverage(args) -> int:
    import os

    from .prior.coverage import coverage_figure, coverage_report, describe, format_report, outside_descriptors, prior_descriptors
    from .prior.presets import load_config

    if args.figure:
        folder = os.path.dirname(os.path.abspath(args.figure))
        if not os.path.isdir(folder):
            raise UsageError(f"--figure {args.figure}: folder {folder} does not exist")
    from .prior.datafile import read_csv_columns

    x, t, y, names, notes = read_csv_columns(args.data, args.treatment, args.outcome, args.covariates)
    for note in notes:
        print(f"causalgen coverage: note: {note}", file=sys.stderr)
    try:
        user = describe(x, t, y)
    except ValueError as exc:  # too few units, an arm of fewer than 2
        raise UsageError(f"{args.data}: {exc}") from None
    config = _load_config(args) if (args.preset is not None or args.config is not None) else load_config("default")
    prior = prior_descriptors(config, n_tasks=args.tasks, seed=args.seed)
    report = coverage_report(user, prior)
    if args.figure:
        coverage_figure(user, prior, args.figure, title=f"{args.data} within {args.tasks} tasks of '{config.name}'")
    if args.json:
        print(json.dumps({"data": args.data, "covariates": names, "prior": config.name, "tasks": args.tasks,
                          "seed": args.seed, "descriptors": user, "report": report,
                          "outside": outside_descriptors(report), "figure": args.figure}, indent=2))
        return EXIT_OK
    print(format_report(report, title=f"{args.data}: {len(t)} units, {len(names)} covariates, against {args.tasks} "
                                      f"tasks of '{config.name}' (seed {args.seed})"))
    if args.figure:
        print(f"figure written to {args.figure}")
    return EXIT_OK


COMMANDS = {"generate": cmd_generate, "inspect": cmd_inspect, "verify": cmd_verify, "sample": cmd_sample, "publish": cmd_publish,
            "coverage": cmd_coverage}


#: errno values that mean the path given is unusable (bad input, exit 2); any other OSError is a
#: failure outside the program (a full disk, an I/O error: exit 1).
_INPUT_ERRNOS = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOENT, errno.ENOTDIR, errno.EISDIR, errno.EEXIST,
                 errno.ENAMETOOLONG, errno.ELOOP, errno.EXDEV, errno.EBUSY}
_HINTS = {
    errno.EROFS: "the output location is read-only",
    errno.EACCES: "no permission to write there",
    errno.EPERM: "the location does not allow writing (read-only or immutable?)",
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is exhausted",
    errno.ENOTDIR: "a part of the path is a file, not a directory",
    errno.EBUSY: "the path is in use (a mount point?)",
}


def describe_os_error(exc: OSError) -> tuple[str, int]:
    """One line naming the file and the cause of an OSError, and the exit code it deserves.

    Exit 2 when the path itself is unusable (read-only, no permission, not a directory ...),
    1 for failures outside the program (no space left, I/O errors).
    """
    where = exc.filename if exc.filename is not None else "(file not named by the system)"
    if getattr(exc, "filename2", None):
        where = f"{where} -> {exc.filename2}"
    reason = exc.strerror or _one_line(exc)
    hint = _HINTS.get(exc.errno)
    line = f"{where}: {reason}" + (f" ({hint})" if hint else "")
    return line, (EXIT_USAGE if exc.errno in _INPUT_ERRNOS else EXIT_FAILED)


def main(argv: Sequence[str] | None = None) -> int:
    from .hub.card import CardError
    from .prior.config import ConfigError
    from .prior.datafile import DataFileError
    from .store.generate import GenerationFailed
    from .store.manifest import CorpusError
    from .store.shard import ShardError, URLError

    args = build_parser().parse_args(argv)
    prog = f"causalgen {args.command}"
    try:
        return COMMANDS[args.command](args)
    except (UsageError, ConfigError, CorpusError, CardError, URLError, DataFileError) as exc:
        print(f"{prog}: error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except (ShardError, GenerationFailed) as exc:
        print(f"{prog}: error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_FAILED
    except OSError as exc:
        line, code = describe_os_error(exc)
        if args.command == "generate" and code == EXIT_FAILED:
            line += "; the shards finished so far are kept: fix this and re-run the same command to resume"
        elif args.command == "generate":
            line += "; --out must be writable unless the corpus there is already complete"
        elif args.command == "publish":
            line += "; the previous output (if any) is unchanged"
        print(f"{prog}: error: {line}", file=sys.stderr)
        return code
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # a bug or a sampler failure: one line, not a traceback wall
        name = type(exc).__name__
        if name == "SamplingError":
            print(f"{prog}: error: {_one_line(exc)}", file=sys.stderr)
            return EXIT_FAILED
        # A bug: the cause in one line first, then the traceback for the report.
        print(f"{prog}: error: {name}: {_one_line(exc)} (internal error; traceback follows)", file=sys.stderr)
        raise


def _one_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


if __name__ == "__main__":
    sys.exit(main())
