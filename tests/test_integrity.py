"""Corpus integrity on every read path, and corpus identity on resume and verify: real files.

A flipped bit in a shard's metadata, a shard copied in from another corpus (another seed or
config, same layout), a hand-edited manifest config: every read path (`open_corpus(...)[i]`,
`cina.TaskStream`, `causalgen verify`) names the shard and the array or field, and resume never
adopts a shard of another corpus.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from causalgen import open_corpus, verify_corpus
from causalgen.cli import main
from causalgen.store import CorpusError, ShardError
from causalgen.store.manifest import MANIFEST_NAME, config_digest
from corpus_helpers import N_TASKS, SHARD, copy_of, make, one_line_error, small_config, tree


@pytest.fixture(scope="module")
def corpora(tmp_path_factory):
    """Corpus A (seed 0) as dir and zip shards, corpus B (seed 1) and C (seed 0, another config), same layout."""
    base = tmp_path_factory.mktemp("corpora")
    return {
        "dir": make(base / "a-dir"),
        "zip": make(base / "a-zip", shard_format="zip"),
        "seed1": make(base / "b-seed1", seed=1),
        "config": make(base / "c-config", config=small_config(n_units=[40, 71])),
    }


# ------------------------------------------------------- A. metadata integrity


def _flip_separator(root: Path, shard_format: str, where: str) -> Path:
    """Flip one bit ('/' -> '.') of array y's chunk-key separator in shard 1."""
    if shard_format == "zip":
        path = root / "shards" / "shard-00001.zarr.zip"
    else:
        path = root / "shards" / "shard-00001.zarr" / ("zarr.json" if where == "root" else "y/zarr.json")
    raw = bytearray(path.read_bytes())
    start = raw.index(b'"y": {') if where == "root" else 0  # the consolidated copy in the root zarr.json
    k = raw.index(b'"separator": "/"', start) + len(b'"separator": "')
    raw[k] ^= 0x01
    path.write_bytes(bytes(raw))
    return path


@pytest.mark.parametrize("shard_format, where", [("dir", "root"), ("dir", "array"), ("zip", "root")])
def test_a_flipped_metadata_bit_is_reported_by_every_read_path(corpora, tmp_path, capsys, shard_format, where):
    from cina import ShardReadError, TaskStream

    root = copy_of(corpora[shard_format], tmp_path / "c")
    _flip_separator(root, shard_format, where)
    shard = f"shard-00001.zarr{'.zip' if shard_format == 'zip' else ''}"

    corpus = open_corpus(root)
    assert corpus[0].y.size  # shard 0 is intact
    with pytest.raises(ShardError) as err:
        corpus[3]
    assert shard in str(err.value) and "'y'" in str(err.value) and "\n" not in str(err.value)

    with pytest.raises(ShardReadError) as err:
        for _ in TaskStream(str(root), batch_size=1, seed=0, shuffle=False, drop_last=False, prefetch_shards=0):
            pass
    assert shard in str(err.value) and "'y'" in str(err.value)

    assert main(["verify", str(root), "--quiet"]) == 1
    out, err = capsys.readouterr()
    assert f"{shard}: " in out and "'y'" in out and not err.strip()


def test_the_manifest_records_a_metadata_checksum_per_shard(corpora):
    m = json.loads((corpora["dir"] / MANIFEST_NAME).read_text())
    mz = json.loads((corpora["zip"] / MANIFEST_NAME).read_text())
    for rec, recz in zip(m["shards"], mz["shards"]):
        assert len(rec["metadata_sha256"]) == 64
        assert rec["metadata_sha256"] == recz["metadata_sha256"]  # the same metadata files, packed or not


def test_an_old_manifest_without_the_checksum_opens_and_the_finite_check_still_applies(corpora, tmp_path):
    root = copy_of(corpora["dir"], tmp_path / "c")
    m = json.loads((root / MANIFEST_NAME).read_text())
    for rec in m["shards"]:
        del rec["metadata_sha256"]  # as written before the field existed
    (root / MANIFEST_NAME).write_text(json.dumps(m))
    corpus = open_corpus(root)
    assert corpus[4].equals(open_corpus(corpora["dir"])[4])
    assert verify_corpus(root).ok
    _flip_separator(root, "dir", "root")
    with pytest.raises(ShardError, match=r"shard-00001\.zarr: array 'y'"):
        open_corpus(root)[3]


def test_a_metadata_flip_on_an_integer_array_is_caught_without_the_checksum(corpora, tmp_path):
    # Integer arrays read -1 fill values; the chunk-key encoding itself is checked on decode.
    root = copy_of(corpora["dir"], tmp_path / "c")
    m = json.loads((root / MANIFEST_NAME).read_text())
    for rec in m["shards"]:
        del rec["metadata_sha256"]
    (root / MANIFEST_NAME).write_text(json.dumps(m))
    path = root / "shards" / "shard-00000.zarr" / "zarr.json"
    raw = bytearray(path.read_bytes())
    k = raw.index(b'"separator": "/"', raw.index(b'"seed": {')) + len(b'"separator": "')
    raw[k] ^= 0x01
    path.write_bytes(bytes(raw))
    with pytest.raises(ShardError, match=r"shard-00000\.zarr: array 'seed'.*separator"):
        open_corpus(root)[0]


# ------------------------------------------------------- B. foreign shards


def _drop_record(root: Path, index: int) -> None:
    m = json.loads((root / MANIFEST_NAME).read_text())
    m["shards"] = [r for r in m["shards"] if r["index"] != index]
    m["complete"] = False
    (root / MANIFEST_NAME).write_text(json.dumps(m))


@pytest.mark.parametrize("other, field", [("seed1", "corpus_seed"), ("config", "config_sha256")])
def test_resume_never_adopts_a_shard_of_another_corpus(corpora, tmp_path, capsys, other, field):
    root = copy_of(corpora["dir"], tmp_path / "a")
    _drop_record(root, 1)  # killed between the rename of shard 1 and the manifest update ...
    foreign = root / "shards" / "shard-00001.zarr"
    shutil.rmtree(foreign)
    shutil.copytree(corpora[other] / "shards" / "shard-00001.zarr", foreign)  # ... and B's shard put there
    before = tree(root)
    config = tmp_path / "cfg.json"
    config.write_text(json.dumps(small_config().to_dict()))
    args = ["generate", "--config", str(config), "--num-tasks", str(N_TASKS), "--shard-size", str(SHARD), "--seed", "0",
            "--out", str(root), "--quiet"]
    assert main(args) == 2
    line = one_line_error(capsys.readouterr().err, "generate")
    assert "shard-00001.zarr" in line and field in line and "another corpus" in line
    after = tree(root)
    assert after.pop(MANIFEST_NAME) and before.pop(MANIFEST_NAME)
    assert after == before  # the shard is refused: not adopted, not deleted, nothing else touched
    assert [r["index"] for r in json.loads((root / MANIFEST_NAME).read_text())["shards"]] == [0]
    shutil.rmtree(foreign)
    assert main(args) == 0
    assert tree(root) == tree(corpora["dir"])


def test_verify_reports_a_foreign_shard_listed_in_the_manifest(corpora, tmp_path):
    # Same seed, another config: seeds follow the scheme, only the config tells them apart.
    root = copy_of(corpora["dir"], tmp_path / "a")
    shutil.rmtree(root / "shards" / "shard-00001.zarr")
    shutil.copytree(corpora["config"] / "shards" / "shard-00001.zarr", root / "shards" / "shard-00001.zarr")
    m = json.loads((root / MANIFEST_NAME).read_text())
    m["shards"][1] = json.loads((corpora["config"] / MANIFEST_NAME).read_text())["shards"][1]
    (root / MANIFEST_NAME).write_text(json.dumps(m))
    report = verify_corpus(root)
    assert len(report.problems) == 1, report.problems
    assert "shard-00001.zarr" in report.problems[0] and "config" in report.problems[0]
    with pytest.raises(ShardError, match=r"shard-00001\.zarr.*config"):
        open_corpus(root)[3]


def test_a_hand_edited_manifest_config_fails_verify(corpora, tmp_path, capsys):
    root = copy_of(corpora["dir"], tmp_path / "a")
    m = json.loads((root / MANIFEST_NAME).read_text())
    m["config"]["n_units"] = [40, 71]
    (root / MANIFEST_NAME).write_text(json.dumps(m))
    assert main(["verify", str(root), "--quiet"]) == 1
    out = capsys.readouterr().out
    assert "manifest.json" in out and "config_sha256" in out
    with pytest.raises(CorpusError, match="config_sha256"):
        open_corpus(root)
    # ... and with the digest "fixed" to match, the shards still say which config made them
    m["config_sha256"] = config_digest(m["config"])
    (root / MANIFEST_NAME).write_text(json.dumps(m))
    report = verify_corpus(root)
    assert not report.ok and all("config" in p for p in report.problems) and len(report.problems) == 2
    assert "shard-00000.zarr" in report.problems[0]
