"""Shared helpers of the corpus fault and integrity tests: small real corpora and their bytes."""

from __future__ import annotations

import shutil
from pathlib import Path

import causalgen
from causalgen.store.generate import CorpusSpec, generate_corpus

N_TASKS, SHARD = 6, 3


def small_config(**over):
    """The default preset with 40-70 units per task (fast to generate), fields overridden by `over`."""
    return causalgen.load_config("default").replace(**{"n_units": [40, 70], **over})


def make(out, *, seed=0, shard_format="dir", num_tasks=N_TASKS, config=None):
    """Generate a corpus of `num_tasks` tasks in shards of `SHARD` at `out`; returns `out`."""
    spec = CorpusSpec(config=(config or small_config()).to_dict(), seed=seed, num_tasks=num_tasks, shard_size=SHARD,
                      shard_format=shard_format)
    generate_corpus(spec, str(out), progress=False)
    return out


def tree(root: Path) -> dict[str, bytes]:
    """Every file below `root` (relative path -> bytes): for byte-identical comparisons."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(Path(root).rglob("*")) if p.is_file()}


def copy_of(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def one_line_error(err: str, prog: str) -> str:
    """The single stderr line of a refused `causalgen PROG` run (asserts it is one line, no traceback)."""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"causalgen {prog}: error: "), err
    assert "Traceback" not in err
    return lines[0]
