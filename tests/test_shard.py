"""One shard = one zarr v3 store: round trips, plain-zarr readability, zip packing, damage detection."""

from __future__ import annotations

import json
import os
import zipfile

import numpy as np
import pytest
import zarr

from causalgen.store import shard
from causalgen.store.shard import ShardError
from causalgen.prior.task import Role, Task


def random_task(seed: int, n: int | None = None, d: int | None = None) -> Task:
    """A structurally valid task with random values (shapes vary with the seed)."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(10, 60)) if n is None else n
    d = int(rng.integers(0, 6)) if d is None else d
    hidden = int(rng.integers(0, 3))
    j = d + hidden + 2
    t = (rng.random(n) < 0.4).astype(np.int8)
    y0 = rng.standard_normal(n).astype(np.float32)
    y1 = (y0 + rng.standard_normal(n)).astype(np.float32)
    roles = np.zeros(j, np.int8)
    roles[d:d + hidden] = Role.HIDDEN_CONFOUNDER
    roles[-2], roles[-1] = Role.TREATMENT, Role.OUTCOME
    return Task(
        x=rng.standard_normal((n, d)).astype(np.float32), t=t, y=np.where(t == 1, y1, y0), y0=y0, y1=y1,
        propensity=rng.random(n).astype(np.float32), ate=float(rng.standard_normal()), ate_se=0.01 * seed,
        sate=float((y1 - y0).mean()), att=float(rng.standard_normal()),
        adjacency=np.triu(rng.random((j, j)) < 0.4, 1), roles=roles,
        covariate_nodes=np.arange(d, dtype=np.int32), identifiable=bool(hidden == 0),
        meta={"seed": seed, "graph_family": "erdos_renyi", "mechanism": "linear", "qc_rejections": {"x": seed % 2},
              "nested": {"list": [1, 2.5, None], "text": "é"}},
    )


@pytest.fixture(scope="module")
def tasks():
    return [random_task(s) for s in range(12)] + [random_task(99, n=10, d=0)]


def test_round_trip_directory_store(tmp_path, tasks):
    files = shard.encode_shard(tasks, shard_index=3, first_task=30)
    written = shard.write_shard(files, str(tmp_path / "s.zarr"))
    assert written.files == len(files) and written.bytes == sum(map(len, files.values()))
    assert written.sha256 == shard.checksum(files)
    data = shard.read_shard(str(tmp_path / "s.zarr"))
    assert len(data) == len(tasks)
    assert data.attrs == {"format": "causalgen.shard", "format_version": shard.FORMAT_VERSION, "n_tasks": len(tasks),
                          "shard_index": 3, "first_task": 30}
    for original, restored in zip(tasks, data):
        assert restored.equals(original)
        assert restored.x.dtype == np.float32 and restored.t.dtype == np.int8 and restored.adjacency.dtype == bool
    assert data.task(-1).x.shape == (10, 0)
    assert list(data.arrays["task_index"]) == list(range(30, 30 + len(tasks)))
    with pytest.raises(IndexError):
        data.task(len(tasks))
    # views into the cached columns must not be writable (a loader mutating them
    # in place would corrupt every later read of the shard)
    with pytest.raises(ValueError):
        data.task(0).x[0, 0] = 1.0


def test_plain_zarr_reads_the_store_without_project_code(tmp_path, tasks):
    shard.write_shard(shard.encode_shard(tasks), str(tmp_path / "s.zarr"))
    g = zarr.open_group(str(tmp_path / "s.zarr"), mode="r")
    assert g.attrs["format_version"] == shard.FORMAT_VERSION
    xo, uo = g["x_offsets"][:], g["unit_offsets"][:]
    n_units, n_cov = g["n_units"][:], g["n_covariates"][:]
    k = 4
    x = g["x_values"][xo[k]:xo[k + 1]].reshape(n_units[k], n_cov[k])
    np.testing.assert_array_equal(x, tasks[k].x)
    np.testing.assert_array_equal(g["y"][uo[k]:uo[k + 1]], tasks[k].y)
    mo = g["meta_offsets"][:]
    assert json.loads(bytes(g["meta_json"][mo[k]:mo[k + 1]]).decode()) == tasks[k].meta
    # only codecs from the zarr v3 spec, so tensorstore / zarr.js can read it
    for name in shard.ARRAY_DTYPES:
        meta = json.loads((tmp_path / "s.zarr" / name / "zarr.json").read_text())
        assert {c["name"] for c in meta["codecs"]} <= {"bytes", "blosc", "zstd", "crc32c"}, name
        assert meta["codecs"][-1]["name"] == "crc32c"


@pytest.mark.parametrize("compression", shard.COMPRESSIONS)
def test_every_compression_round_trips_and_is_deterministic(tmp_path, tasks, compression):
    a = shard.encode_shard(tasks, compression=compression)
    b = shard.encode_shard(tasks, compression=compression)
    assert a == b
    data = shard.decode_shard(a)
    assert all(r.equals(t) for r, t in zip(data, tasks))


def test_chunks_split_evenly_and_bound_size():
    assert shard.chunk_length(0, 4) == 1
    for length, itemsize in [(10, 4), (2_000_000, 4), (10_000_001, 4), (3_000_000, 8)]:
        chunk = shard.chunk_length(length, itemsize)
        assert chunk * itemsize <= shard.CHUNK_BYTES
        n_chunks = -(-length // chunk)
        assert n_chunks * chunk - length < n_chunks  # padding below one element per chunk


def test_zip_is_metadata_first_single_keys_and_reproducible(tmp_path, tasks):
    files = shard.encode_shard(tasks)
    w1 = shard.write_shard(files, str(tmp_path / "a.zarr.zip"))
    w2 = shard.write_shard(files, str(tmp_path / "b.zarr.zip"))
    raw = (tmp_path / "a.zarr.zip").read_bytes()
    assert raw == (tmp_path / "b.zarr.zip").read_bytes() and w1.sha256 == w2.sha256 == shard.file_checksum(raw)
    assert w1.files == 1 and w1.bytes == len(raw)
    with zipfile.ZipFile(tmp_path / "a.zarr.zip") as zf:
        names = zf.namelist()
        assert all(i.compress_type == zipfile.ZIP_STORED for i in zf.infolist())
    assert names[0] == "zarr.json" and len(names) == len(set(names)) == len(files)
    first_chunk = min(i for i, n in enumerate(names) if not n.endswith("zarr.json"))
    assert all(n.endswith("zarr.json") for n in names[:first_chunk])
    assert not any(n.endswith("zarr.json") for n in names[first_chunk:])
    # plain zarr reads the packed store, both through ZipStore and fsspec chaining
    g = zarr.open_group(zarr.storage.ZipStore(str(tmp_path / "a.zarr.zip"), mode="r"), mode="r")
    np.testing.assert_array_equal(g["ate"][:], [t.ate for t in tasks])
    g2 = zarr.open_group(f"zip::file://{tmp_path / 'a.zarr.zip'}", mode="r")
    assert g2.attrs["n_tasks"] == len(tasks)
    data = shard.read_shard(str(tmp_path / "a.zarr.zip"))
    assert all(r.equals(t) for r, t in zip(data, tasks))


def test_pack_directory_shard_to_zip(tmp_path, tasks):
    shard.write_shard(shard.encode_shard(tasks), str(tmp_path / "s.zarr"))
    packed = shard.pack_shard(str(tmp_path / "s.zarr"), str(tmp_path / "s.zarr.zip"))
    assert packed.files == 1
    assert shard.unzip((tmp_path / "s.zarr.zip").read_bytes(), "x") == shard.read_shard_files(str(tmp_path / "s.zarr"))


def test_write_is_atomic_when_interrupted(tmp_path, tasks, monkeypatch):
    files = shard.encode_shard(tasks)
    dest = tmp_path / "s.zarr"
    real_open = open
    calls = {"n": 0}

    def failing_open(path, mode="r", *args, **kwargs):
        if "w" in mode:
            calls["n"] += 1
            if calls["n"] == 10:
                raise OSError("disk full (simulated)")
        return real_open(path, mode, *args, **kwargs)

    monkeypatch.setattr("builtins.open", failing_open)
    with pytest.raises(OSError, match="disk full"):
        shard.write_shard(files, str(dest))
    monkeypatch.undo()
    assert not dest.exists()
    assert os.listdir(tmp_path) == []  # the temporary directory is cleaned up too
    # replacing an existing shard leaves the complete new one
    shard.write_shard(shard.encode_shard(tasks[:2]), str(dest))
    shard.write_shard(files, str(dest))
    assert len(shard.read_shard(str(dest))) == len(tasks)


def test_memory_url_round_trip(tasks):
    files = shard.encode_shard(tasks[:3])
    shard.write_shard(files, "memory://shardtest/s.zarr")
    assert shard.read_shard_files("memory://shardtest/s.zarr") == files
    shard.write_shard(files, "memory://shardtest/s.zarr.zip")
    assert all(r.equals(t) for r, t in zip(shard.read_shard("memory://shardtest/s.zarr.zip"), tasks))


# ----------------------------------------------------------------------- damage


@pytest.fixture()
def stored(tmp_path, tasks):
    path = tmp_path / "s.zarr"
    shard.write_shard(shard.encode_shard(tasks), str(path))
    return path


def test_flipped_byte_in_a_chunk_names_the_array(stored):
    chunk = stored / "y1" / "c" / "0"
    raw = bytearray(chunk.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    chunk.write_bytes(bytes(raw))
    with pytest.raises(ShardError, match=r"s\.zarr: array 'y1' is corrupt"):
        shard.read_shard(str(stored))


def test_truncated_chunk_names_the_array(stored):
    chunk = stored / "x_values" / "c" / "0"
    chunk.write_bytes(chunk.read_bytes()[:-7])
    with pytest.raises(ShardError, match=r"array 'x_values' is corrupt"):
        shard.read_shard(str(stored))


def test_missing_chunk_is_not_read_as_fill_values(stored):
    (stored / "t" / "c" / "0").unlink()
    with pytest.raises(ShardError, match=r"array 't' is missing chunk file t/c/0"):
        shard.read_shard(str(stored))


def test_damaged_metadata(stored, tmp_path):
    (stored / "zarr.json").write_text("{ not json")
    with pytest.raises(ShardError, match=r"unreadable root metadata \(zarr.json\)"):
        shard.read_shard(str(stored))
    with pytest.raises(ShardError, match="shard directory is missing"):
        shard.read_shard(str(tmp_path / "nope.zarr"))


def test_newer_shard_format_is_refused(tmp_path, tasks):
    files = shard.encode_shard(tasks[:2])
    root = json.loads(files["zarr.json"])
    root["attributes"]["format_version"] = shard.FORMAT_VERSION + 1
    files["zarr.json"] = json.dumps(root).encode()
    with pytest.raises(ShardError, match=r"format version 2 is newer than this causalgen reads \(1\)"):
        shard.decode_shard(files, "s.zarr")


def test_inconsistent_offsets_are_refused(tasks):
    cols = shard.flatten_tasks(tasks[:3], range(3), [0, 1, 2])
    cols["n_units"] = cols["n_units"].copy()
    cols["n_units"][1] += 1
    files = shard.encode_columns(cols)
    with pytest.raises(ShardError, match="'unit_offsets' disagrees with the per-task counts"):
        shard.decode_shard(files, "s.zarr")


def test_zip_damage_and_duplicate_members(tmp_path, tasks):
    files = shard.encode_shard(tasks[:2])
    raw = shard.zip_bytes(files)
    with pytest.raises(ShardError, match="not a readable zip"):
        shard.unzip(raw[: len(raw) // 2], "s.zarr.zip")
    buf = tmp_path / "dup.zarr.zip"
    with zipfile.ZipFile(buf, "w") as zf:
        for k, v in files.items():
            zf.writestr(k, v)
        with pytest.warns(UserWarning, match="Duplicate name"):
            zf.writestr("zarr.json", files["zarr.json"])  # what rewriting a key in a zip store does
    with pytest.raises(ShardError, match="duplicate member 'zarr.json'"):
        shard.read_shard(str(buf))


def test_bad_task_shapes_and_meta_are_named():
    good = random_task(1, n=12, d=2)
    bad = random_task(2, n=12, d=2)
    bad.y0 = bad.y0[:5]
    with pytest.raises(ShardError, match=r"task 8: y0 has shape \(5,\), expected \(12,\)"):
        shard.flatten_tasks([good, bad], [7, 8], [1, 2])
    bad = random_task(3, n=12, d=2)
    bad.meta = {"when": object()}
    with pytest.raises(ShardError, match="task 0: meta is not JSON-serialisable"):
        shard.flatten_tasks([bad], [0], [3])


def test_documented_format_name_is_written(tasks):
    files = shard.encode_shard(tasks[:2])
    root = json.loads(files["zarr.json"])
    assert root["attributes"]["format"] == "causalgen.shard"  # docs/format.md: never a module path
    root["attributes"]["format"] = "causalgen.store.shard"
    files["zarr.json"] = json.dumps(root).encode()
    with pytest.raises(ShardError, match="causalgen.store.shard"):
        shard.decode_shard(files, "s.zarr")