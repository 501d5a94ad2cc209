"""Coverage: descriptors with known answers, the report's percentiles and flags, and `causalgen coverage`."""

from __future__ import annotations

import gzip
import json
import warnings

import numpy as np
import pytest

from causalgen.cli import main
from causalgen.prior.datafile import read_csv_columns
from causalgen.prior import sample_task
from causalgen.prior.coverage import (
    DESCRIPTORS,
    coverage_report,
    describe,
    format_report,
    outside_descriptors,
    percentile_of,
    prior_descriptors,
    prior_task_seed,
)
from causalgen.store.manifest import task_seed

PRIOR_TASKS = 60


def quiet_describe(x, t, y, **kw):
    """describe() with every warning turned into an error: the estimators must not emit any."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return describe(x, t, y, **kw)


@pytest.fixture(scope="module")
def default_prior():
    return prior_descriptors("default", n_tasks=PRIOR_TASKS, seed=0)


# ------------------------------------------------------------------ descriptors with known answers


def test_column_kinds_are_counted_as_documented():
    rng = np.random.default_rng(0)
    n = 600
    lognormal = rng.lognormal(0.0, 1.5, n)
    lognormal[: n // 3] = 0.0  # a third exact zeros, the rest positive: semicontinuous, and skewed
    signed = rng.standard_normal(n)
    signed[: n // 3] = 0.0  # zeros but negative values too: not semicontinuous
    x = np.column_stack([
        rng.integers(0, 2, n),  # binary 0/1
        rng.integers(1, 3, n),  # binary coded 1/2 (like IHDP's x14)
        rng.integers(0, 5, n),  # categorical: integers, 5 levels
        rng.integers(0, 3, n) + 0.5,  # 3 levels but not integers: continuous
        rng.standard_normal(n),  # continuous, symmetric
        lognormal,
        np.full(n, 3.0),  # constant: no kind, but counted in d
        signed,
    ]).astype(np.float64)
    t = rng.integers(0, 2, n)
    r = quiet_describe(x, t, rng.standard_normal(n))
    assert r["n_units"] == n and r["n_covariates"] == 8
    assert r["binary_share"] == 2 / 8
    assert r["categorical_share"] == 1 / 8
    assert r["semicontinuous_share"] == 1 / 8
    assert r["skewed_share"] == 1 / 8
    assert r["treated_share"] == pytest.approx(t.mean())
    assert list(r) == list(DESCRIPTORS)


def test_randomised_treatment_has_full_overlap_and_a_narrow_propensity_range():
    rng = np.random.default_rng(1)
    n, d = 2000, 5
    x = rng.standard_normal((n, d))
    t = (rng.random(n) < 0.3).astype(np.int8)  # constant propensity 0.3, whatever x
    r = quiet_describe(x, t, rng.standard_normal(n))
    assert r["overlap_share"] == 1.0
    assert r["overlap_area"] > 0.85
    share = t.mean()
    assert abs(r["propensity_p01"] - share) < 0.1 and abs(r["propensity_p99"] - share) < 0.1
    assert r["propensity_p01"] < share < r["propensity_p99"]


def test_separable_treatment_is_low_overlap_and_stays_finite():
    rng = np.random.default_rng(2)
    n = 1000
    x = rng.standard_normal((n, 5))
    t = (x[:, 0] > 0).astype(np.int8)  # perfectly separated by one column
    r = quiet_describe(x, t, rng.standard_normal(n))
    assert all(np.isfinite(v) for v in r.values())
    assert r["propensity_p01"] < 0.01 and r["propensity_p99"] > 0.99
    assert r["overlap_share"] < 0.5
    assert r["overlap_area"] < 0.2


def test_outcome_r2_near_one_for_a_linear_outcome_and_near_zero_for_noise():
    rng = np.random.default_rng(3)
    n, d = 800, 6
    x = rng.standard_normal((n, d))
    t = rng.integers(0, 2, n)
    linear = quiet_describe(x, t, x @ rng.standard_normal(d) + 0.05 * rng.standard_normal(n))
    assert linear["outcome_r2"] > 0.98 and linear["outcome_r2_nonlinear"] > 0.98
    noise = quiet_describe(x, t, rng.standard_normal(n))
    assert -0.1 < noise["outcome_r2"] < 0.03 and -0.1 < noise["outcome_r2_nonlinear"] < 0.03
    # a quadratic outcome: invisible to the linear fit, caught by the nonlinear features
    quad = quiet_describe(x, t, x[:, 0] ** 2 + 0.1 * rng.standard_normal(n))
    assert quad["outcome_r2"] < 0.05 < 0.8 < quad["outcome_r2_nonlinear"]


def test_more_covariates_than_units_and_constant_columns_give_finite_values_without_warnings():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((40, 120))
    x[:, :10] = 1.0
    t = np.r_[np.ones(20), np.zeros(20)]
    r = quiet_describe(x, t, rng.standard_normal(40))
    assert all(np.isfinite(v) for v in r.values())
    assert r["outcome_r2"] < 0.1  # pure noise: the ridge penalty must not chase 110 useless columns


def test_describe_is_deterministic_and_rejects_bad_input():
    rng = np.random.default_rng(5)
    x, t, y = rng.standard_normal((300, 4)), rng.integers(0, 2, 300), rng.standard_normal(300)
    assert describe(x, t, y) == describe(x.copy(), t.copy(), y.copy())
    assert describe(x, t, y, seed=1) != describe(x, t, y)  # the seed does reach the folds
    with pytest.raises(ValueError, match="binary"):
        describe(x, t + 1, y)
    with pytest.raises(ValueError, match="at least 2 units"):
        describe(x, np.r_[1, np.zeros(299)], y)
    with pytest.raises(ValueError, match="finite"):
        describe(np.where(x > 2, np.nan, x), t, y)
    with pytest.raises(ValueError, match="shape"):
        describe(x, t[:-1], y)


# ------------------------------------------------------------------ the prior and the report


def test_prior_seeds_are_a_corpus_seeds_and_prior_is_deterministic():
    assert [prior_task_seed(7, i) for i in range(5)] == [task_seed(7, i) for i in range(5)]
    a = prior_descriptors("setoguchi-G", n_tasks=8, seed=3, batch=3)
    b = prior_descriptors("setoguchi-G", n_tasks=8, seed=3)
    assert list(a) == list(DESCRIPTORS)
    for k in DESCRIPTORS:
        assert a[k].shape == (8,)
        np.testing.assert_array_equal(a[k], b[k])
    assert np.all(a["n_units"] == 500) and np.all(a["n_covariates"] == 10)


def test_mid_rank_percentile_handles_ties():
    prior = np.array([0.0, 0.0, 0.0, 1.0, 2.0, np.nan])
    assert percentile_of(0.0, prior) == pytest.approx(100 * 1.5 / 5)
    assert percentile_of(1.0, prior) == pytest.approx(100 * 3.5 / 5)
    assert percentile_of(-1.0, prior) == 0.0 and percentile_of(3.0, prior) == 100.0
    assert percentile_of(5.0, np.full(10, 5.0)) == 50.0  # a fixed N equal to the user's: the middle


def test_report_flags_only_values_outside_the_band():
    prior = {"a": np.arange(1000.0), "b": np.full(50, 0.0), "c": np.arange(1000.0)}
    report = coverage_report({"a": 500.0, "b": 0.0, "c": 995.0, "unknown": 1.0}, prior)
    rows = {r["descriptor"]: r for r in report}
    assert set(rows) == {"a", "b", "c"}
    assert not rows["a"]["outside"] and rows["a"]["percentile"] == pytest.approx(50.05)
    assert not rows["b"]["outside"]  # equal to a constant prior
    assert rows["c"]["outside"]  # 99.55th percentile, inside the range but above 99
    assert rows["a"]["prior_p50"] == pytest.approx(499.5) and rows["a"]["n_prior"] == 1000
    assert outside_descriptors(report) == ["c"]
    text = format_report(report)
    assert "c " in text and text.count("<-- outside") == 1 and "outside the prior's 1-99% band" in text


def test_a_task_of_the_preset_sits_inside_its_prior(default_prior):
    for seed in (prior_task_seed(1, i) for i in range(3)):  # tasks of another corpus of the same preset
        task = sample_task("default", seed)
        flagged = outside_descriptors(coverage_report(describe(task.x, task.t, task.y), default_prior))
        assert len(flagged) <= 2, flagged


def test_an_odd_dataset_is_flagged_on_its_odd_descriptors(default_prior):
    rng = np.random.default_rng(7)
    n, d = 50_000, 200
    x = (rng.random((n, d)) < 0.3).astype(np.float64)  # all binary, many columns, many units
    t = rng.integers(0, 2, n)
    y = x[:, :5].sum(axis=1) + rng.standard_normal(n)
    user = describe(x, t, y)
    assert user["n_units"] == n and user["binary_share"] == 1.0
    flagged = set(outside_descriptors(coverage_report(user, default_prior)))
    assert {"n_units", "n_covariates", "binary_share"} <= flagged


# ------------------------------------------------------------------ the CLI


def _write_csv(path, n=300, seed=0, bom=False, gz=False):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 3))
    t = (rng.random(n) < 1 / (1 + np.exp(-x[:, 0]))).astype(int)
    y = x[:, 1] + t + 0.5 * rng.standard_normal(n)
    lines = ["age,score,group,treated,outcome"] + [f"{a:.5f},{b:.5f},{c:.5f},{ti},{yi:.5f}" for (a, b, c), ti, yi in zip(x, t, y)]
    text = ("\ufeff" if bom else "") + "\n".join(lines) + "\n\n"  # a trailing blank line, as editors leave
    data = text.encode("utf-8")
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def test_reader_handles_gzip_and_a_byte_order_mark(tmp_path):
    plain = read_csv_columns(str(_write_csv(tmp_path / "a.csv")), "treated", "outcome", None)
    packed = read_csv_columns(str(_write_csv(tmp_path / "a.csv.gz", bom=True, gz=True)), "treated", "outcome", None)
    x, t, y, names, _ = plain
    assert names == ["age", "score", "group"]  # the BOM is not part of the first name
    assert x.dtype == np.float64 and x.shape == (300, 3) and set(np.unique(t)) == {0.0, 1.0} and y.shape == (300,)
    for a, b in zip(plain[:3], packed[:3]):
        np.testing.assert_array_equal(a, b)
    assert packed[3] == names
    x2, _, _, names2, _ = read_csv_columns(str(tmp_path / "a.csv"), "treated", "outcome", ["group", "age"])
    assert names2 == ["group", "age"]
    np.testing.assert_array_equal(x2, x[:, [2, 0]])


def test_cli_text_json_and_figure(tmp_path, capsys):
    data = _write_csv(tmp_path / "d.csv")
    fig = tmp_path / "cov.png"
    rc = main(["coverage", str(data), "--treatment", "treated", "--outcome", "outcome", "--tasks", str(PRIOR_TASKS),
               "--figure", str(fig)])
    out = capsys.readouterr().out
    assert rc == 0
    assert f"300 units, 3 covariates, against {PRIOR_TASKS} tasks of 'default'" in out
    for name in DESCRIPTORS:
        assert name in out
    assert fig.is_file() and fig.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and fig.stat().st_size > 10_000

    rc = main(["coverage", str(data), "--treatment", "treated", "--outcome", "outcome", "--covariates", "age", "score",
               "--preset", "setoguchi-G", "--tasks", "20", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert rc == 0
    assert report["prior"] == "setoguchi-G" and report["tasks"] == 20 and report["covariates"] == ["age", "score"]
    rows = {r["descriptor"]: r for r in report["report"]}
    assert set(rows) == set(DESCRIPTORS)
    # setoguchi-G always has 500 units and 10 covariates: 300 units and 2 covariates are outside
    assert rows["n_units"]["outside"] and rows["n_covariates"]["outside"]
    assert set(report["outside"]) == {k for k, r in rows.items() if r["outside"]}


@pytest.mark.parametrize("edit, args, message", [
    (None, ["--treatment", "nope"], "treatment column 'nope' not found"),
    (None, ["--covariates", "age", "ghost"], "covariate column 'ghost' not found"),
    (lambda s: _break_cell(s, 5, 1, "n/a"), [], "column 'score', row 6: 'n/a' is not a number"),
    (lambda s: _break_cell(s, 7, 3, "2"), [], "treatment column 'treated' must be binary 0/1, found [2.0]"),
    (lambda s: _break_cell(s, 3, 4, ""), [], "column 'outcome', row 4: missing value"),
    (lambda s: s.replace("\n", "\n1,2\n", 1), [], "row 2 has 2 fields, the header has 5"),
])
def test_cli_errors_are_one_line_naming_file_and_column(tmp_path, capsys, edit, args, message):
    path = _write_csv(tmp_path / "bad.csv")
    if edit is not None:
        path.write_text(edit(path.read_text()))
    argv = ["coverage", str(path), "--treatment", "treated", "--outcome", "outcome", "--tasks", "5"]
    # later options win in argparse, so a test's --treatment replaces the default one
    rc = main(argv + args)
    err = capsys.readouterr().err
    assert rc == 2
    assert err.count("\n") == 1 and err.startswith("causalgen coverage: error: ")
    assert str(path) in err and message in err, err


def _break_cell(text: str, row: int, col: int, value: str) -> str:
    lines = text.split("\n")
    cells = lines[row].split(",")
    cells[col] = value
    lines[row] = ",".join(cells)
    return "\n".join(lines)


def test_cli_refuses_a_missing_file_and_a_missing_figure_folder(tmp_path, capsys):
    rc = main(["coverage", str(tmp_path / "none.csv"), "--treatment", "t", "--outcome", "y"])
    assert rc == 2 and "none.csv: no such file" in capsys.readouterr().err
    data = _write_csv(tmp_path / "d.csv")
    rc = main(["coverage", str(data), "--treatment", "treated", "--outcome", "outcome",
               "--figure", str(tmp_path / "no" / "where.png")])
    assert rc == 2 and "does not exist" in capsys.readouterr().err
    tiny = _write_csv(tmp_path / "tiny.csv", n=8)
    rc = main(["coverage", str(tiny), "--treatment", "treated", "--outcome", "outcome", "--tasks", "5"])
    assert rc == 2 and "at least 10" in capsys.readouterr().err
