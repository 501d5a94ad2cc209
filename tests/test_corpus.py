"""Reading a corpus: open_corpus, corpus[i] == sample_task(config, seed_i), manifest, verify, bad input."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

import causalgen
from causalgen import CorpusError, open_corpus, verify_corpus
from causalgen.store.corpus import FormatVersionError
from causalgen.store.generate import CorpusSpec, generate_corpus
from causalgen.store.manifest import MANIFEST_NAME, SUMMARY_COLUMNS, Manifest, task_seed

N_TASKS, SHARD = 14, 4


def small_config():
    return causalgen.load_config("default").replace(n_units=[40, 70])


def make(out, *, seed=5, num_tasks=N_TASKS, shard_size=SHARD, **kw):
    spec = CorpusSpec(config=small_config().to_dict(), seed=seed, num_tasks=num_tasks, shard_size=shard_size,
                      **{k: v for k, v in kw.items() if k in ("shard_format", "compression")})
    return generate_corpus(spec, str(out), progress=False)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus") / "c"
    make(root)
    return root


@pytest.fixture()
def copy(built, tmp_path):
    dst = tmp_path / "c"
    shutil.copytree(built, dst)
    return dst


def test_tasks_equal_the_sampler_bit_for_bit(built):
    corpus = open_corpus(built)
    assert len(corpus) == N_TASKS and corpus.manifest.complete
    cfg = small_config()
    seeds = [task_seed(5, i) for i in range(N_TASKS)]
    assert len(set(seeds)) == N_TASKS and all(0 <= s < 2**63 for s in seeds)
    expected = causalgen.sample_tasks(cfg, seeds)
    for i, want in enumerate(expected):
        got = corpus[i]
        assert got.equals(want), f"task {i}"
        assert corpus.task_seed(i) == seeds[i] == got.meta["seed"]
    assert corpus[-1].equals(expected[-1]) and corpus[np.int64(3)].equals(expected[3])
    with pytest.raises(IndexError):
        corpus[N_TASKS]
    with pytest.raises(TypeError):
        corpus["0"]
    assert corpus.config.to_dict() == cfg.to_dict()


def test_iter_shards_reads_whole_shards_in_order(built):
    corpus = open_corpus(built)
    shards = list(corpus.iter_shards(verify=True))
    assert [len(s) for s in shards] == [4, 4, 4, 2]
    flat = [t for s in shards for t in s]
    assert [t.meta["seed"] for t in flat] == [task_seed(5, i) for i in range(N_TASKS)]
    assert all(a.equals(b) for a, b in zip(flat, corpus))


def test_seeds_do_not_depend_on_the_shard_size(built, tmp_path):
    make(tmp_path / "other", shard_size=5)
    a, b = open_corpus(built), open_corpus(tmp_path / "other")
    assert len(b.manifest.shards) == 3
    assert all(a[i].equals(b[i]) for i in range(N_TASKS))


def test_manifest_summaries_match_the_tasks(built):
    corpus = open_corpus(built)
    m = corpus.manifest
    cols = corpus.columns
    assert list(cols) == ["task_index", *SUMMARY_COLUMNS]
    for i, task in enumerate(corpus):
        assert cols["task_index"][i] == i
        assert cols["seed"][i] == task.meta["seed"]
        assert cols["n_units"][i] == task.n_units and cols["n_covariates"][i] == task.n_covariates
        assert cols["ate"][i] == task.ate  # exact: floats survive JSON bit for bit
        assert cols["treated_share"][i] == pytest.approx(float(task.t.mean()))
        assert cols["propensity_min"][i] == float(task.propensity.min())
        assert cols["identifiable"][i] == task.identifiable
        assert cols["graph_family"][i] == task.meta["graph_family"]
        assert cols["mechanism"][i] == task.meta["mechanism"]
    total = {}
    for task in corpus:
        for k, v in task.meta["qc_rejections"].items():
            total[k] = total.get(k, 0) + v
    assert m.qc_rejections == dict(sorted(total.items()))
    raw = json.loads((built / MANIFEST_NAME).read_text())
    assert raw["format_version"] == 1 and raw["causalgen_version"] == causalgen.__version__
    assert raw["config"] == small_config().to_dict() and raw["corpus_seed"] == 5 and raw["shard_size"] == SHARD
    assert [s["num_tasks"] for s in raw["shards"]] == [4, 4, 4, 2]
    assert all(len(s["sha256"]) == 64 and s["bytes"] > 0 for s in raw["shards"])
    text = (built / MANIFEST_NAME).read_text().lower()
    assert "time" not in text.replace("timeout", "") and "host" not in text  # nothing run-specific
    # a manifest round-trips through its own serialiser byte for byte
    assert Manifest.from_json((built / MANIFEST_NAME).read_text()).to_json() == (built / MANIFEST_NAME).read_text()


def test_verify_passes_on_a_good_corpus(built):
    report = verify_corpus(built)
    assert report.ok, report.problems
    assert report.shards_checked == 4 and report.tasks_checked == N_TASKS


def test_verify_names_the_shard_and_array_with_a_flipped_byte(copy):
    chunk = copy / "shards" / "shard-00002.zarr" / "propensity" / "c" / "0"
    raw = bytearray(chunk.read_bytes())
    raw[3] ^= 0x10
    chunk.write_bytes(bytes(raw))
    report = verify_corpus(copy)
    assert len(report.problems) == 1
    assert "shard-00002.zarr: array 'propensity' is corrupt" in report.problems[0]


def test_verify_catches_a_truncated_file(copy):
    chunk = copy / "shards" / "shard-00001.zarr" / "x_values" / "c" / "0"
    chunk.write_bytes(chunk.read_bytes()[:10])
    report = verify_corpus(copy)
    assert not report.ok and "shard-00001.zarr: array 'x_values' is corrupt" in report.problems[0]


def test_verify_catches_a_flip_that_still_decodes(copy):
    # Same-size edits that still decode: only the checksum (or the size) can notice them.
    meta = copy / "shards" / "shard-00000.zarr" / "ate" / "zarr.json"
    text = meta.read_text()
    meta.write_text(text.replace('"attributes": {}', '"attributes" :{}'))
    assert len(meta.read_text()) == len(text)
    report = verify_corpus(copy)
    shard0 = copy / "shards" / "shard-00000.zarr"
    assert report.problems == [f"{shard0}: metadata (zarr.json) differs from metadata_sha256 in manifest.json: "
                               "array 'ate': ate/zarr.json was changed; the shard is damaged, regenerate it"]
    with pytest.raises(causalgen.store.ShardError, match="array 'ate': ate/zarr.json was changed"):
        open_corpus(copy)[0]  # every read checks the metadata, not only verify
    # a manifest written before metadata_sha256 existed: the whole-shard sha256 still notices
    m = json.loads((copy / MANIFEST_NAME).read_text())
    for rec in m["shards"]:
        del rec["metadata_sha256"]
    (copy / MANIFEST_NAME).write_text(json.dumps(m))
    assert verify_corpus(copy).problems == [f"{shard0}: sha256 mismatch with manifest.json (contents changed)"]
    meta.write_text(text.replace('"attributes": {}', '"attributes": {"x": 1}'))
    assert "bytes on disk, manifest.json says" in verify_corpus(copy).problems[0]


def test_verify_catches_manifest_summaries_that_lie(copy):
    m = json.loads((copy / MANIFEST_NAME).read_text())
    m["shards"][3]["tasks"]["ate"][0] += 1.0
    (copy / MANIFEST_NAME).write_text(json.dumps(m))
    report = verify_corpus(copy)
    assert report.problems == [f"{copy / 'shards' / 'shard-00003.zarr'}: summary column 'ate' in manifest.json disagrees with the shard"]


def test_verify_reports_a_missing_shard(copy):
    shutil.rmtree(copy / "shards" / "shard-00001.zarr")
    report = verify_corpus(copy)
    assert "shard-00001.zarr: shard directory is missing" in report.problems[0]


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda root: (root / MANIFEST_NAME).write_text('{"format": "causalgen.corpus", '), "not valid JSON"),
        (lambda root: (root / MANIFEST_NAME).unlink(), "manifest.json: missing"),
        (lambda root: _edit(root, format_version=2), "format version 2 is newer than this causalgen supports (1)"),
        (lambda root: _edit(root, num_tasks=-3), "manifest.json.num_tasks: expected a positive integer, got -3"),
        (lambda root: _edit(root, shard_format="tar"), "manifest.json.shard_format: expected one of dir, zip"),
        (lambda root: _edit_shard(root, 1, sha256="abc"), "shards[1].sha256: expected 64 hex digits"),
        (lambda root: _edit_shard(root, 1, first_task=5), "shards[1]: holds tasks 5..+4, the plan says 4..+4"),
        (lambda root: _edit_shard(root, 1, path="../../etc/passwd"), "shards[1].path: must be a relative path inside the corpus"),
    ],
)
def test_bad_manifests_get_one_line_errors(copy, damage, message):
    damage(copy)
    with pytest.raises(CorpusError) as err:
        open_corpus(copy)
    assert message in str(err.value) and "\n" not in str(err.value)
    assert str(copy) in str(err.value)


def _edit(root, **changes):
    m = json.loads((root / MANIFEST_NAME).read_text())
    m.update(changes)
    (root / MANIFEST_NAME).write_text(json.dumps(m))


def _edit_shard(root, k, **changes):
    m = json.loads((root / MANIFEST_NAME).read_text())
    m["shards"][k].update(changes)
    (root / MANIFEST_NAME).write_text(json.dumps(m))


def test_newer_format_is_its_own_error_type(copy):
    _edit(copy, format_version=7)
    with pytest.raises(FormatVersionError):
        open_corpus(copy)
    with pytest.raises(FormatVersionError):
        verify_corpus(copy)


def test_missing_or_file_paths(tmp_path):
    with pytest.raises(CorpusError, match="no such corpus directory"):
        open_corpus(tmp_path / "nope")
    (tmp_path / "f").write_text("x")
    with pytest.raises(CorpusError, match="is a file, expected a corpus directory"):
        open_corpus(tmp_path / "f")


def test_incomplete_corpus_is_refused_unless_asked(copy):
    m = json.loads((copy / MANIFEST_NAME).read_text())
    m["shards"] = m["shards"][:2]
    (copy / MANIFEST_NAME).write_text(json.dumps(m))
    with pytest.raises(CorpusError, match=r"corpus is incomplete \(2/4 shards\)"):
        open_corpus(copy)
    part = open_corpus(copy, allow_incomplete=True)
    assert len(part) == 8 and part[7].equals(open_corpus(copy, allow_incomplete=True)[7])
    assert "corpus is incomplete (2/4 shards written)" in verify_corpus(copy).problems[0]


def test_zip_corpus_and_fsspec_urls(built, tmp_path):
    make(tmp_path / "z", shard_format="zip", compression="zstd")
    z = open_corpus(tmp_path / "z")
    assert sorted(p.name for p in (tmp_path / "z" / "shards").iterdir()) == [f"shard-0000{k}.zarr.zip" for k in range(4)]
    assert z.manifest.files == 4
    ref = open_corpus(built)
    assert all(z[i].equals(ref[i]) for i in range(N_TASKS))
    assert verify_corpus(tmp_path / "z").ok
    via_url = open_corpus(f"file://{built}")
    assert via_url[5].equals(ref[5]) and verify_corpus(f"file://{built}").ok


def test_memory_filesystem_corpus(built):
    make("memory://corpus-test/c")
    mem = open_corpus("memory://corpus-test/c")
    ref = open_corpus(built)
    assert len(mem) == N_TASKS and all(mem[i].equals(ref[i]) for i in range(N_TASKS))
    assert mem.manifest.to_json() == ref.manifest.to_json()
    assert verify_corpus("memory://corpus-test/c").ok


def test_corpus_pickles_without_its_shard_cache(built):
    import pickle

    corpus = open_corpus(built)
    first = corpus[0]
    assert corpus._cache  # the shard is cached after a read
    clone = pickle.loads(pickle.dumps(corpus))
    assert not clone._cache and len(pickle.dumps(corpus)) < 200_000
    assert clone[0].equals(first) and len(clone) == len(corpus)


FIXED_DAG = {"preset": "default", "graph": {"families": {"fixed": 1.0}, "n_nodes": [4, 4], "nodes": ["a", "b", "t", "y"],
                                            "edges": [["a", "t"], ["a", "y"], ["t", "y"], ["b", "y"]]},
             "roles": {"treatment": "t", "outcome": "y"}}


@pytest.mark.parametrize("preset", [*causalgen.PRESETS, "fixed-dag"])
def test_every_preset_round_trips_and_verifies(tmp_path, preset):
    cfg = causalgen.load_config(FIXED_DAG if preset == "fixed-dag" else preset).replace(n_units=[30, 45])
    spec = CorpusSpec(config=cfg.to_dict(), seed=2, num_tasks=3, shard_size=2)
    generate_corpus(spec, str(tmp_path / "c"), progress=False)
    corpus = open_corpus(tmp_path / "c")
    want = causalgen.sample_tasks(cfg, [task_seed(2, i) for i in range(3)])
    assert all(corpus[i].equals(want[i]) for i in range(3))
    report = verify_corpus(tmp_path / "c")
    assert report.ok, report.problems


def test_documented_manifest_format_name(copy):
    assert json.loads((copy / MANIFEST_NAME).read_text())["format"] == "causalgen.corpus"  # docs/format.md
    _edit(copy, format="causalgen.store.corpus")
    with pytest.raises(CorpusError, match="not a causalgen corpus manifest"):
        open_corpus(copy)