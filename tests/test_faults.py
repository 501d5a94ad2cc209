"""User files in a publish folder and faults outside the program: real files, real processes.

A note left in a publish folder, a read-only or full disk, no network, an unknown URL scheme, a
killed worker, a damaged zip shard: nothing already written is lost, and the command line
answers in one line naming the file and the cause (exit 2 for bad input, 1 for failures outside
the program); interrupted runs resume byte-identical.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import causalgen
from causalgen import open_corpus, verify_corpus
from causalgen.cli import main
from causalgen.store import ShardError
from causalgen.store.manifest import MANIFEST_NAME
from corpus_helpers import N_TASKS, SHARD, copy_of, make, one_line_error, small_config, tree

REPO = Path(__file__).resolve().parents[1]


def cli_env(**extra) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.update(extra)
    return env


def run_cli(args, env=None, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "causalgen.cli", *map(str, args)], env=env or cli_env(),
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def corpora(tmp_path_factory):
    """One small corpus (seed 0) as dir and as zip shards."""
    base = tmp_path_factory.mktemp("corpora")
    return {"dir": make(base / "a-dir"), "zip": make(base / "a-zip", shard_format="zip")}


# ------------------------------------------------------- C. publish --overwrite keeps user files


@pytest.fixture(scope="module")
def published(corpora, tmp_path_factory):
    from causalgen.hub.publish import publish

    out = tmp_path_factory.mktemp("pub") / "repo"
    publish(corpora["dir"], out)
    return out


@pytest.mark.parametrize("extra", ["data/notes.txt", "zarr/train/mine.zarr.zip", "figures/mine.png", "zarr/mine/x.bin"])
def test_publish_overwrite_refuses_files_it_did_not_write(corpora, published, tmp_path, capsys, extra):
    out = copy_of(published, tmp_path / "repo")
    (out / extra).parent.mkdir(parents=True, exist_ok=True)
    (out / extra).write_bytes(b"mine")
    before = tree(out)
    assert main(["publish", str(corpora["dir"]), "--repo-dir", str(out), "--overwrite", "--quiet"]) == 2
    line = one_line_error(capsys.readouterr().err, "publish")
    assert repr(extra) in line and "--overwrite" in line
    assert tree(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["repo"]  # refused before any build
    if extra == "data/notes.txt":  # once: without the user's file, the same command replaces the old output
        (out / extra).unlink()
        assert main(["publish", str(corpora["dir"]), "--repo-dir", str(out), "--overwrite", "--quiet"]) == 0
        assert tree(out) == tree(published)


def test_publish_overwrite_refuses_a_folder_without_a_previous_publish_manifest(corpora, tmp_path, capsys):
    out = tmp_path / "repo"
    (out / "data").mkdir(parents=True)
    (out / "data" / "train-00000-of-00001.parquet").write_bytes(b"someone else's")
    assert main(["publish", str(corpora["dir"]), "--repo-dir", str(out), "--overwrite", "--quiet"]) == 2
    line = one_line_error(capsys.readouterr().err, "publish")
    assert "manifest.json" in line
    assert (out / "data" / "train-00000-of-00001.parquet").read_bytes() == b"someone else's"


# ------------------------------------------------------- D. errors that name the problem


@pytest.mark.parametrize("offline", [True, False])
def test_publish_push_without_network_is_one_line(corpora, tmp_path, offline):
    env = cli_env(HF_TOKEN="hf_fake_token_for_the_test_0123456789", MPLBACKEND="Agg", HF_HOME=str(tmp_path / "hf-home"))
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        env.pop(var, None)
        if offline:
            env[var] = "1"
    out = tmp_path / "repo"
    proc = run_cli(["publish", corpora["dir"], "--repo-dir", out, "--repo-id", "causalgen-tests/no-such-dataset", "--push", "--quiet"], env=env)
    line = one_line_error(proc.stderr, "publish")
    assert "hf_fake_token" not in proc.stdout + proc.stderr
    if offline:
        assert proc.returncode == 2 and "HF_HUB_OFFLINE" in line
        assert not out.exists()  # refused before building anything
    else:
        # there is no network here: the real connection failure (elsewhere: the Hub refusing the fake token)
        assert proc.returncode == 1 and "causalgen-tests/no-such-dataset" in line and "upload" in line
        assert str(out) in line and verify_corpus(out).ok  # the built folder is kept, ready to retry


@contextlib.contextmanager
def read_only(path: Path):
    """Make `path` read-only for this process: chmod for a normal user; root ignores modes, so a
    read-only bind mount, else `chattr +i`; skip only if none of them works."""
    path = Path(path)
    undo = None
    if os.geteuid() != 0:
        modes = {p: p.stat().st_mode for p in [path, *path.rglob("*")]}
        for p in modes:
            p.chmod(modes[p] & ~0o222)
        undo = lambda: [p.chmod(m) for p, m in modes.items()]  # noqa: E731
    else:
        bind = subprocess.run(["mount", "--bind", str(path), str(path)], capture_output=True)
        if bind.returncode == 0:
            if subprocess.run(["mount", "-o", "remount,ro,bind", str(path)], capture_output=True).returncode == 0:
                undo = lambda: subprocess.run(["umount", str(path)], check=True)  # noqa: E731
            else:
                subprocess.run(["umount", str(path)], check=True)
        if undo is None and subprocess.run(["chattr", "-R", "+i", str(path)], capture_output=True).returncode == 0:
            undo = lambda: subprocess.run(["chattr", "-R", "-i", str(path)], check=True)  # noqa: E731
        if undo is None:
            pytest.skip("running as root, and neither a read-only bind mount nor chattr +i is available")
    try:
        probe = path / ".probe"
        try:
            probe.write_text("x")
        except OSError:
            pass
        else:
            probe.unlink()
            pytest.skip(f"could not make {path} read-only here")
        yield path
    finally:
        undo()


GEN = ["generate", "--preset", "default", "--num-tasks", str(N_TASKS), "--shard-size", str(SHARD), "--seed", "0", "--quiet"]


def test_generate_into_a_read_only_directory(corpora, tmp_path):
    config = tmp_path / "cfg.json"
    config.write_text(json.dumps(small_config().to_dict()))
    args = ["generate", "--config", config, "--num-tasks", N_TASKS, "--shard-size", SHARD, "--seed", 0, "--quiet"]
    done = copy_of(corpora["dir"], tmp_path / "done")
    empty = tmp_path / "empty"
    empty.mkdir()
    with read_only(done), read_only(empty):
        proc = run_cli([*args, "--out", done])
        assert proc.returncode == 0, proc.stderr
        assert "complete" in proc.stdout and "Traceback" not in proc.stderr
        proc = run_cli([*args, "--out", empty])
        assert proc.returncode == 2, proc.stdout + proc.stderr
        line = one_line_error(proc.stderr, "generate")
        assert str(empty) in line and ("read-only" in line.lower() or "permission denied" in line.lower())
    assert tree(done) == tree(corpora["dir"]) and not list(empty.iterdir())


def test_publish_into_a_read_only_directory(corpora, published, tmp_path):
    old = copy_of(published, tmp_path / "parent" / "repo")
    env = cli_env(HF_HUB_OFFLINE="1", MPLBACKEND="Agg")
    with read_only(old):
        proc = run_cli(["publish", corpora["dir"], "--repo-dir", old, "--overwrite", "--quiet"], env=env)
        assert proc.returncode == 2, proc.stdout + proc.stderr
        line = one_line_error(proc.stderr, "publish")
        assert str(old) in line
    assert tree(old) == tree(published)
    assert sorted(p.name for p in old.parent.iterdir()) == ["repo"]  # no temp or old copies left
    with read_only(old.parent):
        proc = run_cli(["publish", corpora["dir"], "--repo-dir", old.parent / "new", "--quiet"], env=env)
        assert proc.returncode == 2, proc.stdout + proc.stderr
        line = one_line_error(proc.stderr, "publish")
        assert str(old.parent) in line


def test_a_real_enospc_maps_to_one_line_naming_the_file():
    from causalgen.cli import describe_os_error

    from causalgen.store.shard import write_file  # what every shard and manifest write goes through

    with pytest.raises(OSError) as info:
        write_file("/dev/full", b"x" * 65536, fsync=True)
    assert info.value.errno == errno.ENOSPC
    line, code = describe_os_error(info.value)
    assert code == 1 and "\n" not in line
    assert "/dev/full" in line and "no space left" in line.lower()
    line, code = describe_os_error(PermissionError(errno.EACCES, "Permission denied", "/x/y"))
    assert code == 2 and "/x/y" in line


@pytest.fixture()
def tiny_disk(tmp_path):
    mnt = tmp_path / "disk"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (the ENOSPC mapping is tested with /dev/full)")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


def test_generate_on_a_full_disk_fails_in_one_line_and_resumes(corpora, tiny_disk, tmp_path):
    config = tmp_path / "cfg.json"
    config.write_text(json.dumps(small_config().to_dict()))
    out = tiny_disk / "c"
    args = ["generate", "--config", config, "--num-tasks", N_TASKS, "--shard-size", SHARD, "--seed", 0, "--quiet",
            "--format", "zip", "--out", out]
    proc = run_cli(args)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    line = one_line_error(proc.stderr, "generate")
    assert "no space left" in line.lower() and str(out) in line and "re-run" in line
    for p in (out / "shards").iterdir():
        assert p.name.startswith("shard-"), p  # no temporary leftovers; every final name is complete
        causalgen.store.shard.read_shard(str(p))
    subprocess.run(["mount", "-o", "remount,size=20m", str(tiny_disk)], check=True)
    proc = run_cli(args)
    assert proc.returncode == 0, proc.stderr
    assert tree(out) == tree(corpora["zip"])


@pytest.mark.parametrize("out, message", [("{tmp}/afile/sub", "afile"), ("foo://x", "foo://x")])
def test_generate_out_under_a_file_or_with_an_unknown_scheme(tmp_path, out, message):
    (tmp_path / "afile").write_text("precious")
    proc = run_cli([*GEN, "--out", out.replace("{tmp}", str(tmp_path))])
    assert proc.returncode == 2, proc.stdout + proc.stderr
    line = one_line_error(proc.stderr, "generate")
    assert message in line
    assert (tmp_path / "afile").read_text() == "precious"


def test_publish_repo_dir_under_a_file_and_corpus_with_an_unknown_scheme(corpora, tmp_path, capsys):
    (tmp_path / "afile").write_text("precious")
    assert main(["publish", str(corpora["dir"]), "--repo-dir", str(tmp_path / "afile" / "repo"), "--quiet"]) == 2
    assert "afile" in one_line_error(capsys.readouterr().err, "publish")
    for cmd in (["verify", "foo://x"], ["inspect", "foo://x"], ["publish", "foo://x", "--repo-dir", str(tmp_path / "r")]):
        assert main(cmd) == 2, cmd
        assert "foo://x" in one_line_error(capsys.readouterr().err, cmd[0])
    assert (tmp_path / "afile").read_text() == "precious" and not (tmp_path / "r").exists()


def _workers(pid: int) -> list:
    import psutil

    try:
        kids = psutil.Process(pid).children()
    except psutil.NoSuchProcess:
        return []
    out = []
    for k in kids:
        try:
            if "spawn_main" in " ".join(k.cmdline()):
                out.append(k)
        except psutil.NoSuchProcess:
            pass
    return out


def test_a_killed_worker_ends_in_one_line_and_the_rerun_is_byte_identical(tmp_path):
    config = tmp_path / "cfg.json"
    config.write_text(json.dumps(small_config().to_dict()))
    args = ["generate", "--config", config, "--num-tasks", 48, "--shard-size", 3, "--seed", 4, "--quiet"]
    ref = tmp_path / "ref"
    assert run_cli([*args, "--out", ref]).returncode == 0
    out = tmp_path / "c"
    proc = subprocess.Popen([sys.executable, "-m", "causalgen.cli", *map(str, [*args, "--out", out, "--workers", 2])],
                            env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    killed = False
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        shards = out / "shards"
        done = sum(1 for p in shards.iterdir() if not p.name.startswith(".")) if shards.is_dir() else 0
        workers = _workers(proc.pid)
        if done >= 1 and len(workers) == 2:
            os.kill(workers[0].pid, signal.SIGKILL)
            killed = True
            break
        time.sleep(0.01)
    stdout, stderr = proc.communicate(timeout=120)
    assert killed, "the run ended before a worker could be killed"
    assert proc.returncode == 1, stdout + stderr
    line = one_line_error(stderr, "generate")
    assert "worker" in line and "died" in line and "re-run" in line
    m = json.loads((out / MANIFEST_NAME).read_text())
    assert not m["complete"]
    assert run_cli([*args, "--out", out]).returncode == 0
    assert tree(out) == tree(ref)


def test_verify_reports_damaged_zip_shards_and_checks_the_rest(corpora, tmp_path, capsys):
    root = copy_of(corpora["zip"], tmp_path / "c")
    z0 = root / "shards" / "shard-00000.zarr.zip"
    raw = bytearray(z0.read_bytes())
    k = raw.rindex(b"PK\x01\x02")  # the last central-directory entry: its compression method
    raw[k + 10] ^= 0x04
    z0.write_bytes(bytes(raw))
    z1 = root / "shards" / "shard-00001.zarr.zip"
    z1.write_bytes(z1.read_bytes()[:-100])  # truncated
    report = verify_corpus(root)
    assert report.shards_checked == 2 and len(report.problems) == 2, report.problems
    assert "shard-00000.zarr.zip" in report.problems[0] and "shard-00001.zarr.zip" in report.problems[1]
    assert main(["verify", str(root), "--quiet"]) == 1
    out = capsys.readouterr().out
    assert "shard-00000.zarr.zip" in out and "shard-00001.zarr.zip" in out
    with pytest.raises(ShardError, match=r"shard-00000\.zarr\.zip"):
        open_corpus(root)[0]
