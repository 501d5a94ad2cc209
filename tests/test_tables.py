"""Real covariate tables (causalgen.prior.tables): type rule, every file kind, the cleaning rules,
digests, and the bundled default pool loading without the network."""

from __future__ import annotations

import gzip
import socket
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from causalgen.prior import tables
from causalgen.prior.config import COVARIATE_TYPES, ConfigError
from causalgen.prior.tables import CovariateTable, infer_type, load_table, load_tables

BENCHMARK_NAMES = ("ihdp", "lalonde", "nsw", "psid", "cps", "twins", "realcause", "acic", "jobs")


def test_covariate_types_are_the_agreed_tuple():
    assert COVARIATE_TYPES == ("continuous", "binary", "ordinal", "categorical", "count", "semicontinuous",
                               "bounded", "skewed")


def test_infer_type_on_a_column_of_each_kind():
    rng = np.random.default_rng(0)
    n = 2000
    earnings = np.where(rng.random(n) < 0.3, 0.0, rng.lognormal(8.0, 1.0, n))
    columns = {
        "binary": rng.integers(0, 2, n).astype(float),
        "ordinal": rng.integers(1, 6, n).astype(float),
        "count": rng.poisson(20.0, n).astype(float),
        "semicontinuous": earnings,
        "bounded": rng.beta(2.0, 5.0, n),
        "skewed": rng.lognormal(0.0, 1.0, n) - 5.0,  # shifted below 0 so it is not a bounded/zero-mass case
        "continuous": rng.normal(0.0, 1.0, n),
    }
    for expected, values in columns.items():
        assert infer_type(values) == expected, expected
    assert infer_type(np.array([3.0, 7.0, 7.0, 3.0])) == "binary"   # two levels, any values
    assert infer_type(rng.integers(-3, 4, n).astype(float)) == "ordinal"
    # a few non-integer levels with zeros are not semicontinuous (no continuous part)
    assert infer_type(np.tile([0.0, 0.0, 1.5, 2.5, 5.5], 100)) != "semicontinuous"
    assert infer_type(np.full(10, 4.0)) == "continuous"
    with pytest.raises(ValueError):
        infer_type(np.array([1.0, np.nan]))


def _frame(n=80, seed=1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "café": rng.normal(0.0, 1.0, n),   # a non-ASCII name exercises the encodings
        "visits": rng.poisson(3.0, n),
        "insured": rng.random(n) < 0.4,
        "share": rng.beta(2.0, 2.0, n),
    })


def _write_all(df: pd.DataFrame, folder) -> dict:
    """One file of every kind holding df; returns {kind: path}."""
    folder.mkdir()
    csv = df.to_csv(index=False)
    paths = {k: folder / f for k, f in [("csv", "a.csv"), ("gz", "b.csv.gz"), ("tsv", "c.tsv"), ("bom", "d.csv"),
                                         ("latin1", "e.csv"), ("semicolon", "f.csv"), ("pipe", "g.csv"),
                                         ("parquet", "h.parquet")]}
    paths["csv"].write_text(csv, encoding="utf-8")
    paths["gz"].write_bytes(gzip.compress(csv.encode("utf-8")))
    paths["tsv"].write_text(df.to_csv(index=False, sep="\t"), encoding="utf-8")
    paths["bom"].write_bytes(b"\xef\xbb\xbf" + csv.encode("utf-8"))
    paths["latin1"].write_bytes(csv.encode("latin-1"))
    paths["semicolon"].write_text(df.to_csv(index=False, sep=";", decimal=","), encoding="utf-8")
    paths["pipe"].write_text(df.to_csv(index=False, sep="|"), encoding="utf-8")
    df.to_parquet(paths["parquet"])
    return paths


def test_every_file_kind_gives_the_same_table(tmp_path):
    df = _frame()
    paths = _write_all(df, tmp_path / "tables")
    reference = load_table(df, name="frame")
    assert reference.columns == ("café", "visits", "insured", "share")
    assert reference.types == ("continuous", "ordinal", "binary", "bounded")
    assert reference.values.dtype == np.float64 and reference.values.shape == (80, 4)
    np.testing.assert_array_equal(reference.values[:, 2], df["insured"].astype(float))  # booleans -> 0/1
    assert reference.source == "<DataFrame>" and reference.name == "frame"
    for kind, path in paths.items():
        table = load_table(path)
        assert table.columns == reference.columns, kind
        np.testing.assert_array_equal(table.values, reference.values, err_msg=kind)
        assert table.sha256 == reference.sha256, kind
        assert table.source == str(path) and table.name == path.name.split(".")[0]
    folder = load_tables([tmp_path / "tables"])
    assert [t.name for t in folder] == list("abcdefgh")   # sorted by file name
    assert len({t.sha256 for t in folder}) == 1
    assert load_tables(str(tmp_path / "tables"))[0].sha256 == reference.sha256
    with pytest.raises(ConfigError, match="is a folder"):
        load_table(tmp_path / "tables")


def test_latin1_names_are_decoded_not_mangled(tmp_path):
    path = tmp_path / "legacy.csv"
    path.write_bytes(_frame().to_csv(index=False).encode("latin-1"))
    assert load_table(path).columns[0] == "café"


def test_a_text_column_is_an_error_naming_file_and_column_unless_dropped(tmp_path):
    df = _frame()
    df["city"] = ["Ghent", "Lyon"] * 40
    path = tmp_path / "people.csv"
    df.to_csv(path, index=False)
    with pytest.raises(ConfigError, match=r"people\.csv: column 'city' is not numeric.*encode it as numbers or drop it"):
        load_table(path)
    table = load_table(path, drop_text=True)
    assert "city" not in table.columns and ("city", "text") in table.dropped
    with pytest.raises(ConfigError, match="DataFrame 'people': column 'city'"):
        load_table(df, name="people")


def test_missing_values_follow_the_stated_rule(tmp_path):
    df = _frame(n=100)
    df["sparse"] = np.where(np.arange(100) % 4 == 0, np.nan, 1.0 + np.arange(100))   # 25% missing: dropped
    df["café"] = df["café"].astype(float)
    df.loc[[7, 42], "café"] = np.nan                                                  # 2% missing: rows dropped
    path = tmp_path / "holes.csv"
    df.to_csv(path, index=False)   # NaN is written as an empty field
    table = load_table(path)
    assert "sparse" not in table.columns and ("sparse", "25% missing") in table.dropped
    assert table.rows.dtype == np.int64
    np.testing.assert_array_equal(table.rows, np.setdiff1d(np.arange(100), [7, 42]))
    np.testing.assert_array_equal(table.values[:, 0], df["café"].to_numpy()[table.rows])
    with pytest.raises(ConfigError, match=r"holes\.csv: column 'sparse': missing value in data row 0"):
        load_table(path, missing="error")
    df.loc[0, "sparse"] = 5.0
    df.to_csv(path, index=False)
    with pytest.raises(ConfigError, match=r"holes\.csv: column 'sparse': missing value in data row 4"):
        load_table(path, missing="error")
    with pytest.raises(ConfigError, match="missing: must be one of"):
        load_table(path, missing="impute")


def test_constant_columns_are_dropped_and_small_tables_rejected(tmp_path):
    df = _frame()
    df["flat"] = 3.0
    table = load_table(df)
    assert "flat" not in table.columns and ("flat", "constant") in table.dropped
    path = tmp_path / "tiny.csv"
    df.head(49).to_csv(path, index=False)
    with pytest.raises(ConfigError, match=r"tiny\.csv: 49 complete row\(s\), a table needs at least 50"):
        load_table(path)
    df[["café", "flat"]].to_csv(path, index=False)
    with pytest.raises(ConfigError, match=r"tiny\.csv: 1 usable column\(s\).*flat \[constant\]"):
        load_table(path)


def test_declared_types_override_and_are_checked():
    df = _frame()
    assert load_table(df, types={"visits": "categorical"}).types[1] == "categorical"
    with pytest.raises(ConfigError, match="column 'visits': declared 'binary'"):
        load_table(df, types={"visits": "binary"})
    with pytest.raises(ConfigError, match="column 'nope': declared in types but not in the table"):
        load_table(df, types={"nope": "count"})
    with pytest.raises(ConfigError, match="column 'share': unknown type 'fraction'"):
        load_table(df, types={"share": "fraction"})


def test_digest_is_stable_and_sees_one_changed_value(tmp_path):
    df = _frame()
    path = tmp_path / "t.parquet"
    df.to_parquet(path)
    first, second = load_table(path), load_table(path)
    assert first.sha256 == second.sha256 == tables.table_digest(first.columns, first.values, first.rows)
    assert len(first.sha256) == 64
    df.loc[17, "share"] = 0.5
    df.to_parquet(path)
    assert load_table(path).sha256 != first.sha256
    assert isinstance(first, CovariateTable) and not first.values.flags.writeable


def test_importing_the_module_does_not_import_the_table_packages():
    code = ("import sys, causalgen.prior.tables; "
            "assert not {'sklearn', 'statsmodels'} & set(sys.modules), sorted({'sklearn', 'statsmodels'} & set(sys.modules))")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_pool_says_which_extra_is_missing(monkeypatch):
    real = tables.importlib.util.find_spec
    monkeypatch.setattr(tables.importlib.util, "find_spec", lambda n, *a: None if n == "statsmodels" else real(n, *a))
    tables._pool.cache_clear()
    with pytest.raises(ImportError, match=r"needs statsmodels: pip install causalgen\[tables\]"):
        tables.default_pool()


def test_default_pool_loads_offline_with_diverse_types(monkeypatch):
    pytest.importorskip("sklearn")
    pytest.importorskip("statsmodels")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    def no_network(*args, **kwargs):
        raise AssertionError("the default pool tried to open a network socket")

    monkeypatch.setattr(socket, "socket", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    tables._pool.cache_clear()
    pool = tables.default_pool()
    assert [t.name for t in pool] == list(tables.DEFAULT_POOL) and len(pool) >= 8
    covered = {kind for t in pool for kind in t.types}
    assert len(covered) >= 6, covered
    for t in pool:
        assert not any(b in t.name.lower() for b in BENCHMARK_NAMES), t.name
        assert not {"re74", "re75"} <= set(t.columns), t.name   # no LaLonde-like earnings history
        assert t.shape[0] >= tables.MIN_ROWS and t.source == t.name
        assert load_table(t.name).sha256 == t.sha256
    sizes = [t.shape[0] for t in pool]
    assert min(sizes) < 500 and max(sizes) > 10_000

    # the module docstring's table is what pool_summary reports
    for entry in tables.pool_summary():
        counts = ", ".join(f"{k} {v}" for k, v in entry["types"].items())
        line = f"{entry['name']:<23s}{str(entry['rows']) + ' x ' + str(entry['columns']):<12s}{counts}"
        assert line in tables.__doc__, line
        assert f"{entry['description']}\n" in tables.__doc__, entry["name"]
        assert entry["loader"].startswith(("sklearn.datasets.load_", "statsmodels.datasets."))
