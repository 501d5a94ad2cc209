"""Publishing a corpus as a Hugging Face dataset repository, fully offline.

`load_dataset` (plain and streaming) must return exactly the tasks of the source
corpus; the card must parse and declare what `datasets` sees; `hf://` reads and
`--push` run the real `huggingface_hub` code with its HTTP client replaced by an
in-memory fake Hub (a request that the fake does not know fails the test, and
no request can leave the process); every refusal is one line and loses nothing.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import zipfile

import numpy as np
import pytest

import httpx2  # huggingface_hub's HTTP client
import huggingface_hub
from huggingface_hub import constants as hf_constants

import causalgen
from causalgen.hub import publish as pub
from causalgen.hub import reader as hub
from causalgen import open_corpus
from causalgen.store.generate import CorpusSpec, generate_corpus
from causalgen.store.manifest import MANIFEST_NAME, Manifest
from causalgen.hub.parquet_view import row_to_task, task_features
from causalgen.hub.layout import PublishedManifest
from causalgen.store.shard import ShardError
from causalgen.store.splits import SPLITS, split_of

N_TASKS, SHARD, SEED = 24, 8, 7  # seed 7: 18 train, 5 validation, 1 test
PARQUET_BYTES = 50_000  # small, so the train split spans several Parquet files
REPO_ID = "org/name"
TOKEN = "hf_test_secret_token_0123456789"
ARRAYS = ("x", "t", "y", "y0", "y1", "propensity", "adjacency", "roles", "covariate_nodes")


# ------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus") / "c"
    cfg = causalgen.load_config("default").replace(n_units=[30, 80])
    spec = CorpusSpec(config=cfg.to_dict(), seed=SEED, num_tasks=N_TASKS, shard_size=SHARD)
    generate_corpus(spec, str(root), progress=False)
    return root


@pytest.fixture(scope="module")
def source(corpus_dir):
    return open_corpus(corpus_dir)


@pytest.fixture(scope="module")
def repo(corpus_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("published") / "repo"
    pub.publish(corpus_dir, out, repo_id=REPO_ID, max_parquet_bytes=PARQUET_BYTES)
    return out


@pytest.fixture(scope="module")
def manifest(repo):
    return PublishedManifest.from_json((repo / MANIFEST_NAME).read_text())


@pytest.fixture(autouse=True)
def no_network(monkeypatch, tmp_path):
    """Every huggingface_hub request goes to a handler that fails the test unless a test installs a fake Hub."""
    def refuse(request):
        raise AssertionError(f"unexpected HTTP request {request.method} {request.url}")

    _install_transport(refuse)
    monkeypatch.setattr(hf_constants, "AGENT_HARNESSES_PATH", str(tmp_path / "agent_harnesses.json"))
    monkeypatch.setattr(hf_constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    yield
    huggingface_hub.set_client_factory(huggingface_hub.utils._http.default_client_factory)


def _install_transport(handler):
    from huggingface_hub.utils._http import hf_request_event_hook

    huggingface_hub.set_client_factory(
        lambda: httpx2.Client(transport=httpx2.MockTransport(handler), event_hooks={"request": [hf_request_event_hook]}, follow_redirects=True)
    )


@pytest.fixture()
def offline(monkeypatch):
    """HF_HUB_OFFLINE=1 / HF_DATASETS_OFFLINE=1 for this test only (both libraries read them at import)."""
    import datasets.config

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", True)


class FakeHub:
    """The few Hub endpoints create_repo, upload_folder and hf_hub_download use, in memory."""

    COMMIT = "c0ffee" * 6 + "abcd"

    def __init__(self, files: dict[str, bytes] | None = None, repo_id: str = REPO_ID):
        self.repo_id = repo_id
        self.files = dict(files or {})
        self.requests: list[tuple[str, str]] = []
        self.bodies: list[tuple[str, bytes, dict]] = []
        self.commit = self.COMMIT

    def __call__(self, request):
        path = request.url.path
        self.requests.append((request.method, path))
        self.bodies.append((path, request.content if request.method != "GET" else b"", dict(request.headers)))
        api = f"/api/datasets/{self.repo_id}"
        if path == "/api/agent-harnesses":
            return httpx2.Response(404, json={"error": "not here"})
        if request.method == "POST" and path == "/api/repos/create":
            return httpx2.Response(200, json={"url": f"https://huggingface.co/datasets/{self.repo_id}", "name": self.repo_id})
        if request.method == "POST" and path == "/api/validate-yaml":
            # The real Hub checks the card's metadata; here: it must parse and name configs.
            body = json.loads(request.content)
            card = huggingface_hub.DatasetCard(body["content"])
            ok = body["repoType"] == "dataset" and "configs" in card.data.to_dict()
            return httpx2.Response(200 if ok else 400, json={"errors": [] if ok else [{"message": "bad card"}], "warnings": []})
        if request.method == "POST" and path == f"{api}/preupload/main":
            files = json.loads(request.content)["files"]
            return httpx2.Response(200, json={"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files]})
        if request.method == "GET" and path.startswith(f"{api}/tree/main"):
            return httpx2.Response(200, json=[{"type": "file", "path": p, "size": len(b), "oid": "0" * 40} for p, b in sorted(self.files.items())])
        if request.method == "POST" and path == f"{api}/commit/main":
            for line in request.content.splitlines():
                item = json.loads(line)
                if item["key"] == "file":
                    self.files[item["value"]["path"]] = base64.b64decode(item["value"]["content"])
                elif item["key"] == "deletedFile":
                    self.files.pop(item["value"]["path"], None)
            return httpx2.Response(200, json={"commitUrl": f"https://huggingface.co/datasets/{self.repo_id}/commit/{self.commit}", "commitOid": self.commit, "pullRequestUrl": None})
        prefix = f"/datasets/{self.repo_id}/resolve/"
        if path.startswith(prefix):
            revision, _, name = path[len(prefix):].partition("/")
            if revision not in ("main", self.commit) or name not in self.files:
                return httpx2.Response(404, headers={"x-error-code": "EntryNotFound"}, json={"error": "not found"})
            data = self.files[name]
            headers = {"x-repo-commit": self.commit, "etag": f'"{hash(data) & 0xFFFFFFFF:08x}-{len(data)}"', "content-length": str(len(data))}
            return httpx2.Response(200, headers=headers, content=b"" if request.method == "HEAD" else data)
        raise AssertionError(f"the fake Hub does not serve {request.method} {request.url}")


def _tree(root) -> dict[str, bytes]:
    out = {}
    for dirpath, _, names in os.walk(root):
        for n in names:
            full = os.path.join(dirpath, n)
            out[os.path.relpath(full, root).replace(os.sep, "/")] = open(full, "rb").read()
    return out


def _cli(argv, capsys):
    from causalgen.cli import main

    code = main(["publish", *map(str, argv)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _assert_same_task(got, want, where=""):
    for name in ARRAYS:
        a, b = getattr(got, name), getattr(want, name)
        assert a.dtype == b.dtype and a.shape == b.shape, f"{where} {name}: {a.dtype}{a.shape} vs {b.dtype}{b.shape}"
        np.testing.assert_array_equal(a, b, err_msg=f"{where} {name}")
    for name in ("ate", "ate_se", "sate", "att", "identifiable"):
        assert getattr(got, name) == getattr(want, name), f"{where} {name}"
    assert got.meta == want.meta, where


# ------------------------------------------------------------------ the repository


def test_layout_manifest_and_splits(repo, manifest, source, offline):
    files = _tree(repo)
    listed = {p for p, _, _ in manifest.files()} | {"README.md", MANIFEST_NAME}
    assert set(files) == listed
    assert any(p.startswith("data/train-00000-of-0000") for p in files) and len(manifest.split_parquet("train")) > 1
    for path, size, sha in manifest.files():
        import hashlib

        assert len(files[path]) == size and hashlib.sha256(files[path]).hexdigest() == sha, path
    # every task exactly once, in its seed's split, corpus order within a split
    cols = manifest.columns()
    assert sorted(cols["task_index"]) == list(range(N_TASKS))
    for k, i in enumerate(cols["task_index"]):
        assert cols["split"][k] == split_of(source.task_seed(int(i))) and cols["seed"][k] == source.task_seed(int(i))
    for s in SPLITS:
        idx = cols["task_index"][cols["split"] == s]
        assert list(idx) == sorted(idx)
    assert manifest.split_counts == {"train": 18, "validation": 5, "test": 1}
    assert PublishedManifest.from_json(manifest.to_json()).to_json() == manifest.to_json()
    assert manifest.source["manifest_sha256"] and manifest.source["corpus_seed"] == SEED
    report = hub.verify_published(repo)
    assert report.ok and report.tasks_checked == N_TASKS, report.problems
    # a published shard is a plain zarr v3 zip: readable without causalgen
    import zarr

    first = manifest.split_shards("train")[1]
    group = zarr.open_group(zarr.storage.ZipStore(str(repo / first.path), mode="r"), mode="r")
    assert group.attrs["first_task"] == first.first == SHARD
    assert list(group["seed"][:]) == first.tasks["seed"]


def test_load_dataset_returns_the_corpus_tasks(repo, manifest, source, offline, tmp_path):
    from datasets import load_dataset

    ds = load_dataset(str(repo), cache_dir=str(tmp_path / "ds"))
    assert set(ds) == {s for s, n in manifest.split_counts.items() if n}
    seen = []
    for split, d in ds.items():
        assert d.num_rows == manifest.split_counts[split]
        assert d.features == task_features()
        for row in d:
            assert row["split"] == split
            _assert_same_task(row_to_task(row), source[row["task_index"]], f"{split} row {row['task_index']}")
            seen.append(row["task_index"])
    assert sorted(seen) == list(range(N_TASKS))
    # numpy formatting: x is an (N, d) float32 array; compare one task array by array
    row = ds["train"].with_format("numpy")[3]
    want = source[int(row["task_index"])]
    assert row["x"].dtype == np.float32 and row["x"].shape == want.x.shape
    np.testing.assert_array_equal(row["x"], want.x)
    for name in ("y", "y0", "y1", "propensity"):
        np.testing.assert_array_equal(row[name], getattr(want, name))
    np.testing.assert_array_equal(row["t"], want.t)  # int64 under numpy formatting, same values
    np.testing.assert_array_equal(np.asarray(row["adjacency"], dtype=bool), want.adjacency)
    np.testing.assert_array_equal(row["roles"], want.roles)
    assert row["ate"] == want.ate and json.loads(row["meta"]) == want.meta


def test_streaming_returns_the_same_tasks(repo, manifest, source, offline):
    from datasets import load_dataset

    streams = load_dataset(str(repo), streaming=True)
    seen = []
    for split, stream in streams.items():
        assert stream.num_shards == len(manifest.split_parquet(split))
        assert stream.features == task_features()
        for row in stream:
            _assert_same_task(row_to_task(row), source[row["task_index"]], f"stream {split} {row['task_index']}")
            seen.append(row["task_index"])
    assert sorted(seen) == list(range(N_TASKS))
    one = next(iter(load_dataset(str(repo), split="test", streaming=True).with_format("numpy")))
    _assert_same_task(row_to_task(one), source[int(one["task_index"])], "numpy stream")


def test_card_parses_and_declares_what_datasets_sees(repo, manifest, offline, tmp_path):
    from datasets import load_dataset_builder
    from datasets.info import DatasetInfosDict
    from datasets.utils.metadata import MetadataConfigs
    from huggingface_hub import DatasetCard

    card = DatasetCard.load(repo / "README.md")
    data = card.data.to_dict()
    assert data["license"] == "cc-by-4.0" and data["pretty_name"] and data["size_categories"] == ["n<1K"]
    assert "causal-inference" in data["tags"] and data["task_categories"]
    configs = MetadataConfigs.from_dataset_card_data(card.data)
    assert configs.get_default_config_name() == "default"
    declared = {f["split"]: f["path"] for f in configs["default"]["data_files"]}
    assert declared == {s: f"data/{s}-*.parquet" for s in SPLITS}
    infos = DatasetInfosDict.from_dataset_card_data(card.data)["default"]
    assert infos.features == task_features()
    assert {s: infos.splits[s].num_examples for s in infos.splits} == manifest.split_counts
    builder = load_dataset_builder(str(repo), cache_dir=str(tmp_path / "b"))
    seen = {s: sorted(os.path.relpath(str(f), str(repo)) for f in files) for s, files in builder.config.data_files.items()}
    assert seen == {s: [f.path for f in manifest.split_parquet(s)] for s in SPLITS}
    assert builder.info.features == task_features()
    body = card.text
    for needle in ("## Generative process", "### Seeds and reproducibility", "### Splits", "## Fields", "## Summary statistics",
                   "load_dataset(\"org/name\")", "streaming=True", "hf://datasets/org/name", "2310.00809", "@inproceedings",
                   "figures/summary.png", "`treatment.confounding_strength`", "`propensity`", "`roles`"):
        assert needle in body, needle
    assert "$" not in body.replace("$$", "")  # no unfilled template placeholder
    assert (repo / "figures" / "summary.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_open_published_reads_like_the_corpus(repo, corpus_dir, source, offline):
    import pickle

    corpus = hub.open_published(repo)
    assert len(corpus) == N_TASKS and hub.is_published(repo) and not hub.is_published(corpus_dir)
    assert isinstance(hub.maybe_open_published(repo), hub.PublishedCorpus) and hub.maybe_open_published(corpus_dir) is None
    # the corpus API hands published folders to causalgen.hub
    from causalgen import verify_corpus

    assert isinstance(open_corpus(repo), hub.PublishedCorpus) and verify_corpus(repo).ok
    cols = corpus.columns
    for k, task in enumerate(corpus):
        i = int(cols["task_index"][k])
        assert corpus.task_index(k) == i and corpus.task_seed(k) == task.meta["seed"] == source.task_seed(i)
        assert task.equals(source[i]) and corpus[k].equals(task)
    for i in range(N_TASKS):
        assert corpus.by_task_index(i).equals(source[i])
    assert corpus[-1].equals(corpus[N_TASKS - 1]) and corpus.config.to_dict() == source.config.to_dict()
    with pytest.raises(IndexError):
        corpus[N_TASKS]
    with pytest.raises(TypeError):
        corpus["0"]
    test = corpus.split("validation")
    assert len(test) == 5 and all(s == "validation" for s in test.columns["split"])
    assert [r.split for r in test.manifest.shards] == ["validation"] and len(test.columns["seed"]) == len(test)
    for k in range(len(test)):
        assert test[k].equals(source[test.task_index(k)])
    clone = pickle.loads(pickle.dumps(corpus))
    assert not clone._cache and clone[5].equals(corpus[5])
    with pytest.raises(ValueError):
        corpus.split("dev")


# ------------------------------------------------------------------ hf:// through the cache


def test_hf_url_reads_whole_shards_through_a_verified_cache(repo, source, manifest, monkeypatch, tmp_path):
    fake = FakeHub(_tree(repo))
    _install_transport(fake)
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    cache = str(tmp_path / "hub-cache")
    corpus = hub.open_published("hf://datasets/org/name", cache_dir=cache)
    for k in range(len(corpus)):
        assert corpus[k].equals(source[corpus.task_index(k)])
    gets = [p for m, p in fake.requests if m == "GET" and "/resolve/" in p]
    # manifest from main, then every shard once, pinned to the manifest's commit; never a Parquet file
    assert gets[0] == f"/datasets/{REPO_ID}/resolve/main/{MANIFEST_NAME}"
    assert sorted(gets[1:]) == sorted(f"/datasets/{REPO_ID}/resolve/{FakeHub.COMMIT}/{r.path}" for r in manifest.shards)

    # a second reader (even offline) gets everything from the cache
    _install_transport(lambda request: (_ for _ in ()).throw(AssertionError(f"network used: {request.url}")))
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    again = hub.open_published(f"hf://datasets/org/name@{FakeHub.COMMIT}", cache_dir=cache, split="train")
    assert len(again) == 18 and again[0].equals(source[again.task_index(0)])

    # a shard whose bytes differ from the manifest is refused, naming it
    damaged = _tree(repo)
    path = manifest.split_shards("test")[0].path
    damaged[path] = damaged[path][:-1] + bytes([damaged[path][-1] ^ 1])
    fake2 = FakeHub(damaged)
    fake2.commit = "d" * 40
    _install_transport(fake2)
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    bad = hub.open_published("hf://datasets/org/name", cache_dir=str(tmp_path / "c2"), split="test")
    with pytest.raises(ShardError, match=r"shard-00000\.zarr\.zip: sha256 mismatch"):
        bad[0]
    assert sum(1 for m, p in fake2.requests if m == "GET" and p.endswith(path)) == 2  # re-fetched once before giving up


@pytest.mark.parametrize("url, repo_id, revision", [
    ("hf://datasets/org/name", "org/name", None),
    ("hf://datasets/org/name/", "org/name", None),
    ("hf://datasets/o-r.g/na_me@v1.0", "o-r.g/na_me", "v1.0"),
    ("hf://datasets/org/name@refs%2Fpr%2F3", "org/name", "refs/pr/3"),
])
def test_parse_hf_url(url, repo_id, revision):
    assert hub.parse_hf_url(url) == (repo_id, revision)


def test_only_repository_roots_are_published_urls():
    assert hub.is_published("hf://datasets/org/name") and hub.is_published("hf://datasets/org/name@main")
    assert not hub.is_published("hf://datasets/org/name/corpus")  # a raw corpus inside a repo: fsspec's job
    assert not hub.is_published("memory://somewhere")


def test_a_published_folder_behind_an_fsspec_url(repo, source):
    import fsspec

    fs = fsspec.filesystem("memory")
    for path, data in _tree(repo).items():
        fs.pipe_file(f"/pubtest/{path}", data)
    try:
        assert hub.is_published("memory://pubtest")
        corpus = open_corpus("memory://pubtest")
        assert isinstance(corpus, hub.PublishedCorpus) and corpus[0].equals(source[corpus.task_index(0)])
    finally:
        fs.rm("/pubtest", recursive=True)


@pytest.mark.parametrize("url", ["hf://datasets/org", "hf://models/org/name", "hf://datasets/org/name/zarr", "hf://datasets/-org/name", "hf://datasets/org/na--me"])
def test_parse_hf_url_rejects(url):
    with pytest.raises(causalgen.store.corpus.CorpusError, match="expected hf://datasets/ORG/NAME"):
        hub.parse_hf_url(url)


# ------------------------------------------------------------------ push


def test_push_call_sequence_and_token_hygiene(corpus_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    stale = {"data/train-00000-of-00009.parquet": b"old", "zarr/train/shard-00099.zarr.zip": b"old", "notes.txt": b"keep"}
    fake = FakeHub(stale)
    _install_transport(fake)
    out = tmp_path / "pushed"
    code, stdout, stderr = _cli([corpus_dir, "--repo-dir", out, "--repo-id", REPO_ID, "--push", "--private", "--quiet",
                                 "--max-parquet-mb", PARQUET_BYTES / 1e6], capsys)
    assert code == 0, stderr
    api_calls = [(m, p) for m, p in fake.requests if p != "/api/agent-harnesses"]
    assert [m for m, _ in api_calls] == ["POST", "GET", "POST", "POST", "POST"]
    assert api_calls[0][1] == "/api/repos/create"
    assert api_calls[1][1].startswith(f"/api/datasets/{REPO_ID}/tree/main")  # to find stale files
    assert api_calls[2][1] == "/api/validate-yaml"  # the card's metadata
    assert api_calls[3][1] == f"/api/datasets/{REPO_ID}/preupload/main"
    assert api_calls[4][1] == f"/api/datasets/{REPO_ID}/commit/main"
    create = json.loads(next(b for p, b, _ in fake.bodies if p == "/api/repos/create"))
    assert create["type"] == "dataset" and create["visibility"] == "private" and create["name"] == "name" and create["organization"] == "org"
    # the Hub now holds exactly the publish output, plus files outside data/ zarr/ figures/
    local = _tree(out)
    assert fake.files == {**local, "notes.txt": b"keep"}
    header = json.loads(next(b for p, b, _ in fake.bodies if p.endswith("/commit/main")).splitlines()[0])
    assert "24 tasks" in header["value"]["summary"]
    # the token authenticates every API call and is written nowhere
    for path, _, headers in fake.bodies:
        if path.startswith("/api/repos") or path.startswith(f"/api/datasets/{REPO_ID}"):
            assert headers.get("authorization") == f"Bearer {TOKEN}", path
    assert TOKEN not in stdout + stderr
    assert all(TOKEN.encode() not in data for data in local.values())
    assert "pushed to https://huggingface.co/datasets/org/name" in stdout


def test_push_refuses_without_token_before_any_work(corpus_dir, tmp_path, capsys):
    code, _, err = _cli([corpus_dir, "--repo-dir", tmp_path / "o", "--repo-id", REPO_ID, "--push"], capsys)
    assert code == 2 and "no Hugging Face token" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_dry_run_lists_and_writes_nothing(corpus_dir, manifest, tmp_path, capsys):
    out = tmp_path / "dry"
    code, stdout, err = _cli([corpus_dir, "--repo-dir", out, "--repo-id", REPO_ID, "--push", "--dry-run", "--quiet",
                              "--max-parquet-mb", PARQUET_BYTES / 1e6], capsys)
    assert code == 0, err
    assert not out.exists() and not list(tmp_path.iterdir())
    for path, _, _ in manifest.files():
        assert path in stdout, path
    assert "README.md" in stdout and "would upload to https://huggingface.co/datasets/org/name" in stdout
    assert "token NOT found" in stdout


# ------------------------------------------------------------------ refusals


def _damaged_copy(corpus_dir, tmp_path, how):
    dst = tmp_path / "bad-corpus"
    shutil.copytree(corpus_dir, dst)
    if how == "incomplete":
        m = Manifest.from_json((dst / MANIFEST_NAME).read_text())
        (dst / MANIFEST_NAME).write_text(m.with_shards(m.shards[:-1]).to_json())
    elif how == "corrupt":
        chunk = next(p for p in sorted((dst / "shards" / "shard-00001.zarr" / "y").rglob("*")) if p.is_file() and p.name != "zarr.json")
        raw = bytearray(chunk.read_bytes())
        raw[len(raw) // 2] ^= 0xFF
        chunk.write_bytes(bytes(raw))
    return dst


@pytest.mark.parametrize("case, message", [
    ("repo_id_space", "--repo-id 'org/bad name': expected ORG/NAME"),
    ("repo_id_no_org", "--repo-id 'name': expected ORG/NAME"),
    ("repo_id_double_dash", "--repo-id 'org/a--b': expected ORG/NAME"),
    ("repo_id_three_parts", "--repo-id 'a/b/c': expected ORG/NAME"),
    ("push_without_repo_id", "--push needs --repo-id"),
    ("private_without_push", "--private only applies with --push"),
    ("bad_license", "--license 'CC BY': expected a Hub license identifier"),
    ("missing_corpus", "no such corpus directory"),
    ("incomplete", "refusing to publish, verify failed: "),
    ("corrupt", "refusing to publish, verify failed: "),
    ("published_repo", "is already a published repository"),
    ("out_not_empty", "not empty (1 entries); pass --overwrite"),
    ("out_is_file", "exists and is not a directory"),
    ("out_foreign", "contains 'notes.txt', which causalgen publish does not write"),
    ("out_holds_corpus", "contains the corpus"),
    ("missing_template", "card template not found"),
])
def test_bad_input_is_refused_in_one_line_and_loses_nothing(case, message, corpus_dir, repo, tmp_path, capsys):
    out = tmp_path / "out"
    corpus = corpus_dir
    extra: list = []
    if case.startswith("repo_id"):
        # the corpus does not even exist: the repo id must be rejected before anything else
        corpus = tmp_path / "nowhere"
        extra = ["--repo-id", {"repo_id_space": "org/bad name", "repo_id_no_org": "name",
                               "repo_id_double_dash": "org/a--b", "repo_id_three_parts": "a/b/c"}[case]]
    elif case == "push_without_repo_id":
        extra = ["--push"]
    elif case == "private_without_push":
        extra = ["--private"]
    elif case == "bad_license":
        extra = ["--license", "CC BY"]
    elif case == "missing_corpus":
        corpus = tmp_path / "nowhere"
    elif case in ("incomplete", "corrupt"):
        corpus = _damaged_copy(corpus_dir, tmp_path, case)
    elif case == "published_repo":
        corpus = repo
    elif case == "out_not_empty":
        out.mkdir()
        (out / "README.md").write_text("mine")
    elif case == "out_is_file":
        out.write_text("mine")
    elif case == "out_foreign":
        out.mkdir()
        (out / "notes.txt").write_text("mine")
        extra = ["--overwrite"]
    elif case == "out_holds_corpus":
        out = tmp_path / "holder"
        shutil.copytree(corpus_dir, out / "c")
        corpus = out / "c"
        extra = ["--overwrite"]
    elif case == "missing_template":
        extra = ["--card-templates", tmp_path / "no-templates"]
    before = _tree(out) if out.is_dir() else (out.read_bytes() if out.exists() else None)
    code, stdout, err = _cli([corpus, "--repo-dir", out, "--quiet", *extra], capsys)
    assert code == 2, (stdout, err)
    assert message in err, err
    assert len(err.strip().splitlines()) == 1 and err.startswith("causalgen publish: error: ")
    after = _tree(out) if out.is_dir() else (out.read_bytes() if out.exists() else None)
    assert after == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp dirs left


def test_overwrite_replaces_a_previous_publish_byte_for_byte(corpus_dir, repo, tmp_path, capsys):
    out = tmp_path / "again"
    shutil.copytree(repo, out)
    args = [corpus_dir, "--repo-dir", out, "--repo-id", REPO_ID, "--overwrite", "--quiet", "--max-parquet-mb", PARQUET_BYTES / 1e6]
    # a file the previous publish's manifest does not list is not ours, whatever its name: kept, and refused
    (out / "zarr" / "train" / "shard-00042.zarr.zip").write_bytes(b"not listed")
    code, stdout, err = _cli(args, capsys)
    assert code == 2 and "'zarr/train/shard-00042.zarr.zip', which the previous publish did not write" in err
    assert (out / "zarr" / "train" / "shard-00042.zarr.zip").read_bytes() == b"not listed"
    (out / "zarr" / "train" / "shard-00042.zarr.zip").unlink()
    code, stdout, err = _cli(args, capsys)
    assert code == 0, err
    assert _tree(out) == _tree(repo)  # deterministic
    assert sorted(p.name for p in tmp_path.iterdir()) == ["again"]  # no temp or old copies left
    assert f"{out}: 24 tasks (train 18, validation 5, test 1)" in stdout


def test_a_failed_build_leaves_the_previous_output_alone(corpus_dir, repo, tmp_path, monkeypatch):
    out = tmp_path / "kept"
    shutil.copytree(repo, out)
    before = _tree(out)

    def explode(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("causalgen.hub.card.render_card", explode)
    with pytest.raises(OSError, match="disk full"):
        pub.publish(corpus_dir, out, overwrite=True, max_parquet_bytes=PARQUET_BYTES)
    assert _tree(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept"]


def test_verify_published_names_damaged_files(repo, manifest, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(repo, bad)
    shard = manifest.split_shards("train")[2].path
    raw = bytearray((bad / shard).read_bytes())
    raw[-100] ^= 1
    (bad / shard).write_bytes(bytes(raw))
    parquet = manifest.split_parquet("validation")[0].path
    (bad / parquet).write_bytes((bad / parquet).read_bytes()[:-10])
    (bad / "README.md").unlink()
    problems = hub.verify_published(bad).problems
    assert any(shard in p and "sha256 mismatch" in p for p in problems), problems
    assert any(parquet in p and "truncated or changed" in p for p in problems), problems
    assert any("README.md" in p for p in problems), problems
    with zipfile.ZipFile(repo / shard) as zf:  # the original stays a valid zip
        assert "zarr.json" in zf.namelist()


def test_setoguchi_corpus_with_an_empty_split(tmp_path, offline):
    from datasets import load_dataset
    from huggingface_hub import DatasetCard

    cfg = causalgen.load_config("setoguchi-G-shift")
    spec = CorpusSpec(config=cfg.to_dict(), seed=5, num_tasks=5, shard_size=2, shard_format="zip")
    generate_corpus(spec, str(tmp_path / "c"), progress=False)  # seed 5: 4 train, 1 validation, no test
    result = pub.publish(tmp_path / "c", tmp_path / "r")
    assert result.manifest.split_counts == {"train": 4, "validation": 1, "test": 0}
    ds = load_dataset(str(tmp_path / "r"), cache_dir=str(tmp_path / "ds"))
    assert {s: d.num_rows for s, d in ds.items()} == {"train": 4, "validation": 1}
    source = open_corpus(tmp_path / "c")
    for row in ds["validation"]:
        _assert_same_task(row_to_task(row), source[row["task_index"]], "setoguchi")
    card = DatasetCard.load(tmp_path / "r" / "README.md")
    assert [f["split"] for f in card.data.to_dict()["configs"][0]["data_files"]] == ["train", "validation"]
    assert "Setoguchi" in card.text and "`setoguchi.mechanism_shift`" in card.text and "`graph.n_nodes`" not in card.text
    assert 'load_dataset("ORG/NAME")' in card.text  # no --repo-id: a placeholder
    assert len(hub.open_published(tmp_path / "r", split="test")) == 0


def test_cli_verify_reads_a_published_repository(repo, capsys):
    from causalgen.cli import main

    assert main(["verify", str(repo), "--quiet"]) == 0
    assert "OK (" in capsys.readouterr().out
