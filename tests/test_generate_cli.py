"""Generation: determinism across workers and executors, kill -9 + resume, refusals, and the CLI."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import causalgen
from causalgen.cli import main
from causalgen import open_corpus, verify_corpus
from causalgen.store.generate import CorpusSpec, generate_corpus
from causalgen.store.manifest import MANIFEST_NAME, task_seed

REPO = Path(__file__).resolve().parents[1]
CONFIG_YAML = "preset: default\nn_units: [40, 70]\n"


def tree(root: Path) -> dict[str, bytes]:
    """Every file under root (relative path -> bytes): what byte-identical means here."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def spec(num_tasks=12, shard_size=3, seed=11, **kw) -> CorpusSpec:
    cfg = causalgen.load_config("default").replace(n_units=[40, 70])
    return CorpusSpec(config=cfg.to_dict(), seed=seed, num_tasks=num_tasks, shard_size=shard_size, **kw)


def cli_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


@pytest.fixture(scope="module")
def config_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cfg") / "small.yaml"
    path.write_text(CONFIG_YAML)
    return path


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """12 tasks in 4 shards, one process."""
    out = tmp_path_factory.mktemp("ref") / "c"
    generate_corpus(spec(), str(out), workers=1, progress=False)
    return out


# ------------------------------------------------------------------ determinism


def test_two_worker_processes_give_the_same_bytes(reference, tmp_path):
    generate_corpus(spec(), str(tmp_path / "c"), workers=2, progress=False)
    assert tree(tmp_path / "c") == tree(reference)


def test_dask_local_cluster_gives_the_same_bytes(reference, tmp_path, config_file, capsys):
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None) as cluster:
        # through the CLI, writing to an fsspec URL that the workers share
        rc = main(["generate", "--config", str(config_file), "--num-tasks", "12", "--shard-size", "3", "--seed", "11",
                   "--executor", "dask", "--scheduler", cluster.scheduler_address, "--out", f"file://{tmp_path / 'c'}", "--quiet"])
        assert rc == 0, capsys.readouterr().err
        assert len(cluster.workers) == 2
    assert tree(tmp_path / "c") == tree(reference)


def test_completion_order_does_not_matter(reference, tmp_path, monkeypatch):
    # Shards arriving back to front, with the manifest rewritten after each one,
    # still end in a byte-identical corpus.
    from causalgen.store import generate

    def back_to_front(jobs, workers):
        for job in reversed(jobs):
            yield generate.run_job(job)

    monkeypatch.setattr(generate, "_run_local", back_to_front)
    monkeypatch.setattr(generate, "MANIFEST_INTERVAL_S", 0.0)
    snapshots = []
    generate_corpus(spec(), str(tmp_path / "c"), progress=False,
                    on_record=lambda r: snapshots.append((tmp_path / "c" / MANIFEST_NAME).read_text()))
    assert [json.loads(t)["tasks_written"] for t in snapshots] == [0, 3, 6, 9]  # manifest written as shards land
    assert tree(tmp_path / "c") == tree(reference)


# ------------------------------------------------------------------------ resume


def _run_cli(args, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "causalgen.cli", *args], env=cli_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


def _final_shards(out: Path) -> int:
    d = out / "shards"
    return sum(1 for p in d.iterdir() if not p.name.startswith(".")) if d.is_dir() else 0


def test_kill_9_at_any_moment_then_resume_is_byte_identical(tmp_path, config_file):
    args = ["generate", "--config", str(config_file), "--num-tasks", "48", "--shard-size", "3", "--seed", "4", "--quiet"]
    ref = tmp_path / "ref"
    done = _run_cli([*args, "--out", str(ref)])
    assert done.wait(timeout=120) == 0, done.stderr.read()

    out = tmp_path / "killed"
    seen_partial = False
    # kill during start-up, then after a couple of shards, then late in the run
    for workers, min_shards, extra_delay in (("2", 0, 0.3), ("2", 2, 0.0), ("1", 9, 0.05)):
        proc = _run_cli([*args, "--out", str(out), "--workers", workers])
        deadline = time.monotonic() + 60
        while _final_shards(out) < min_shards and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        time.sleep(extra_delay)
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            assert proc.returncode == -signal.SIGKILL
            if 0 < _final_shards(out) < 16:
                seen_partial = True
                with pytest.raises(causalgen.store.corpus.CorpusError, match="incomplete"):
                    open_corpus(out)
    assert seen_partial, "no kill landed in the middle of the run; the test did not test resume"
    proc = _run_cli([*args, "--out", str(out)])
    assert proc.wait(timeout=120) == 0, proc.stderr.read()
    assert tree(out) == tree(ref)  # shards and manifest, byte for byte; no temp or lock leftovers
    assert verify_corpus(out).ok


def test_resume_records_shards_renamed_before_the_manifest_caught_up(reference, tmp_path):
    out = tmp_path / "c"
    shutil.copytree(reference, out)
    m = json.loads((out / MANIFEST_NAME).read_text())
    m["shards"] = m["shards"][:1]
    m["complete"] = False
    (out / MANIFEST_NAME).write_text(json.dumps(m))
    (out / "shards" / ".tmp-0123456789ab-shard-00002.zarr").mkdir()  # a write cut short
    damaged = out / "shards" / "shard-00003.zarr" / "y" / "c" / "0"
    damaged.write_bytes(damaged.read_bytes()[:5])  # cannot happen by rename; must be regenerated
    (out / ".manifest.json.tmp-999").write_text('{"format": "causalg')  # a manifest rewrite cut short
    kept = (out / "shards" / "shard-00001.zarr" / "zarr.json").stat().st_ino
    regenerated = []
    generate_corpus(spec(), str(out), progress=False, on_record=lambda r: regenerated.append(r.index))
    assert regenerated == [3]
    assert (out / "shards" / "shard-00001.zarr" / "zarr.json").stat().st_ino == kept  # read back, not rewritten
    assert tree(out) == tree(reference)


def test_killed_before_the_first_manifest_landed(reference, tmp_path):
    out = tmp_path / "c"
    out.mkdir()
    (out / ".lock").write_text("")
    (out / ".manifest.json.tmp-4242").write_text("{")
    generate_corpus(spec(), str(out), progress=False)
    assert tree(out) == tree(reference)


# ---------------------------------------------------------------------- refusals


def test_changed_seed_or_config_is_refused_then_overwritten(reference, tmp_path, config_file, capsys):
    out = tmp_path / "c"
    shutil.copytree(reference, out)
    before = tree(out)
    base = ["generate", "--config", str(config_file), "--num-tasks", "12", "--shard-size", "3", "--out", str(out), "--quiet"]
    assert main([*base, "--seed", "12"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "corpus_seed (11 on disk, 12 requested)" in err and "--overwrite" in err
    assert main(["generate", "--preset", "default", *base[3:], "--seed", "11"]) == 2
    assert "existing corpus differs in config" in capsys.readouterr().err
    assert main([*base, "--seed", "11", "--shard-size", "4"]) == 2
    assert "shard_size (3 on disk, 4 requested)" in capsys.readouterr().err
    assert tree(out) == before  # nothing written or removed

    (out / "NOTES.txt").write_text("mine")
    assert main([*base, "--seed", "12", "--overwrite"]) == 0
    capsys.readouterr()
    assert (out / "NOTES.txt").read_text() == "mine"  # --overwrite only replaces our own files
    (out / "NOTES.txt").unlink()
    fresh = tmp_path / "fresh"
    generate_corpus(spec(seed=12), str(fresh), progress=False)
    assert tree(out) == tree(fresh)


def test_same_command_on_a_complete_corpus_is_a_no_op(reference, tmp_path, config_file, capsys):
    out = tmp_path / "c"
    shutil.copytree(reference, out)
    mtimes = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file() and p.name != MANIFEST_NAME}
    args = ["generate", "--config", str(config_file), "--num-tasks", "12", "--shard-size", "3", "--seed", "11", "--out", str(out), "--quiet"]
    assert main(args) == 0
    assert "12 tasks in 4 shards" in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in mtimes} == mtimes
    assert tree(out) == tree(reference)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--preset", "nope"], "unknown preset or missing file 'nope'"),
        (["--config", "{cfg}/missing.yaml"], "--config {cfg}/missing.yaml: no such file"),
        (["--config", "{cfg}/bad.yaml"], "malformed YAML"),
        (["--config", "{cfg}/types.yaml"], "n_units: expected a list"),
        (["--config", "{cfg}/range.yaml"], "n_units: low must be <= high"),
        (["--preset", "default", "--num-tasks", "-5"], "argument --num-tasks: must be >= 1, got -5"),
        (["--preset", "default", "--shard-size", "0"], "argument --shard-size: must be >= 1, got 0"),
        (["--preset", "default", "--workers", "two"], "argument --workers: expected an integer, got 'two'"),
        (["--preset", "default", "--seed", "-1"], "argument --seed: must be in [0, 2**63)"),
        (["--preset", "default", "--executor", "dask"], "--executor dask needs --scheduler ADDRESS"),
        (["--preset", "default", "--compression", "lzma"], "argument --compression: invalid choice: 'lzma'"),
        (["--preset", "default", "--out", "{cfg}/afile"], "{cfg}/afile: is a file, expected a corpus directory"),
        (["--preset", "default", "--out", "{cfg}/foreign"], "is not empty and has no manifest.json"),
    ],
)
def test_generate_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, capsys, args, message):
    (tmp_path / "bad.yaml").write_text("preset: default\nn_units: [40, 70\n")
    (tmp_path / "types.yaml").write_text("preset: default\nn_units: many\n")
    (tmp_path / "range.yaml").write_text("preset: default\nn_units: [90, 40]\n")
    (tmp_path / "afile").write_text("precious")
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "thesis.tex").write_text("precious")
    before = tree(tmp_path)
    full = ["generate", "--num-tasks", "4", "--out", str(tmp_path / "out"), "--quiet"]
    full += [a.replace("{cfg}", str(tmp_path)) for a in args]
    rc = run_main(full)
    err = capsys.readouterr().err
    assert rc == 2
    assert message.replace("{cfg}", str(tmp_path)) in err
    assert err.count("\n") == 1, err
    assert tree(tmp_path) == before
    assert not (tmp_path / "out" / MANIFEST_NAME).exists()


def run_main(argv) -> int:
    """main()'s exit code, also for argparse errors (which raise SystemExit)."""
    try:
        return main(argv)
    except SystemExit as exc:
        return exc.code


# --------------------------------------------------------------------- other CLI


def test_verify_exit_codes_name_the_bad_shard(reference, tmp_path, capsys):
    out = tmp_path / "c"
    shutil.copytree(reference, out)
    assert main(["verify", str(out), "--quiet"]) == 0
    assert "OK (12 tasks in 4 shards" in capsys.readouterr().out
    chunk = out / "shards" / "shard-00002.zarr" / "x_values" / "c" / "0"
    raw = bytearray(chunk.read_bytes())
    raw[-3] ^= 0x01
    chunk.write_bytes(bytes(raw))
    assert main(["verify", str(out), "--quiet"]) == 1
    assert "FAILED: " in (o := capsys.readouterr().out) and "shard-00002.zarr: array 'x_values' is corrupt" in o
    chunk.write_bytes(bytes(raw[:20]))
    assert main(["verify", str(out), "--quiet"]) == 1
    assert "shard-00002.zarr" in capsys.readouterr().out
    m = json.loads((out / MANIFEST_NAME).read_text())
    m["format_version"] = 2
    (out / MANIFEST_NAME).write_text(json.dumps(m))
    assert main(["verify", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "format version 2 is newer than this causalgen supports (1)" in err
    assert main(["verify", str(tmp_path / "nothing")]) == 2
    assert "no such corpus directory" in capsys.readouterr().err


def test_inspect(reference, capsys):
    assert main(["inspect", str(reference)]) == 0
    out = capsys.readouterr().out
    assert "12 tasks, 4 shards" in out and "families" in out and "overlap" in out and "qc rejected" in out
    assert main(["inspect", str(reference), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    cols = open_corpus(reference).columns
    assert stats["tasks"] == 12 and stats["complete"] is True
    assert stats["ate"]["median"] == pytest.approx(float(sorted(cols["ate"])[5] + sorted(cols["ate"])[6]) / 2)
    assert sum(stats["graph_families"].values()) == 12


def test_sample_prints_the_corpus_tasks(config_file, capsys, reference):
    assert main(["sample", "--config", str(config_file), "--num-tasks", "3", "--seed", "11"]) == 0
    lines = capsys.readouterr().out.splitlines()
    corpus = open_corpus(reference)
    assert lines == [corpus[i].summary() for i in range(3)]
    assert lines[0].startswith(f"seed={task_seed(11, 0)} ")


@pytest.mark.parametrize("command", [[], ["generate"], ["inspect"], ["verify"], ["sample"]])
def test_help_everywhere(command, capsys):
    with pytest.raises(SystemExit) as exc:
        main([*command, "--help"])
    assert exc.value.code == 0
    assert "usage: causalgen" in capsys.readouterr().out


def test_console_script_subprocess_smoke(tmp_path, config_file):
    proc = _run_cli(["generate", "--config", str(config_file), "--num-tasks", "2", "--shard-size", "2", "--out", str(tmp_path / "c")])
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "2 tasks in 1 shards" in out and "generate" in err  # tqdm bar on stderr
    proc = _run_cli(["generate", "--preset", "nope", "--num-tasks", "2", "--out", str(tmp_path / "d")])
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 2 and err.count("\n") == 1 and "unknown preset" in err


def test_overwrite_replaces_only_what_the_generator_wrote(tmp_path):
    from causalgen.store.generate import CorpusSpec, generate_corpus

    cfg = causalgen.load_config("default").to_dict()
    out = tmp_path / "c"
    generate_corpus(CorpusSpec(config=cfg, seed=0, num_tasks=6, shard_size=3), str(out), progress=False)
    mine = out / "shards" / "notes.txt"
    mine.write_text("keep me")
    with pytest.raises(causalgen.CorpusError, match=r"shards/notes\.txt: not a shard causalgen writes"):
        generate_corpus(CorpusSpec(config=cfg, seed=1, num_tasks=6, shard_size=3), str(out), overwrite=True, progress=False)
    assert mine.read_text() == "keep me" and (out / "manifest.json").exists()  # nothing was deleted
    mine.unlink()
    generate_corpus(CorpusSpec(config=cfg, seed=1, num_tasks=6, shard_size=3), str(out), overwrite=True, progress=False)
    assert causalgen.open_corpus(out).manifest.corpus_seed == 1
