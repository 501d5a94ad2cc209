"""`cina evaluate`: outputs, resumability and the summary arithmetic."""

import csv

import numpy as np
import pytest

from cina.cli import main as cina_main
from cina.eval.evaluate import summarise


def test_evaluate_tiny_suite_writes_every_output_and_resumes(tmp_path, capsys):
    out = tmp_path / "eval"
    argv = ["evaluate", "--model", "none", "--suite", "synthetic", "--n-synthetic", "2", "--out", str(out),
            "--estimators", "dim", "or", "--quiet"]
    assert cina_main(argv) == 0
    with (out / "results.csv").open() as f:
        rows = list(csv.DictReader(f))
    # 2 in-distribution tasks + 2 per out-of-distribution shift (3 shifts), 2 estimators each
    assert len(rows) == (2 + 3 * 2) * 2
    for r in rows:
        assert r["error"] == ""
        assert float(r["abs_error"]) == pytest.approx(abs(float(r["estimate"]) - float(r["truth"])))
        assert float(r["seconds"]) >= 0
    summary = (out / "summary.md").read_text()
    assert "| synthetic-id | dim | 2 |" in summary and "| synthetic-ood | or | 6 |" in summary
    assert (out / "mae.png").stat().st_size > 1000 and (out / "speed.png").stat().st_size > 1000
    printed = capsys.readouterr().out
    assert "synthetic-ood" in printed
    # re-running skips every finished row
    assert cina_main(argv) == 0
    with (out / "results.csv").open() as f:
        assert len(list(csv.DictReader(f))) == len(rows)


def test_no_ood_runs_the_in_distribution_tasks_only(tmp_path):
    out = tmp_path / "eval"
    assert cina_main(["evaluate", "--model", "none", "--suite", "synthetic", "--n-synthetic", "2", "--no-ood",
                      "--out", str(out), "--estimators", "dim", "--quiet"]) == 0
    with (out / "results.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 and {r["suite"] for r in rows} == {"synthetic-id"}


def test_summary_mae_se_and_ranks():
    rows = [
        {"suite": "s", "dataset": "a", "estimator": "dim", "abs_error": "1.0", "seconds": "1"},
        {"suite": "s", "dataset": "a", "estimator": "or", "abs_error": "0.5", "seconds": "3"},
        {"suite": "s", "dataset": "b", "estimator": "dim", "abs_error": "3.0", "seconds": "2"},
        {"suite": "s", "dataset": "b", "estimator": "or", "abs_error": "4.0", "seconds": "5"},
        {"suite": "s", "dataset": "c", "estimator": "or", "abs_error": "", "seconds": "", "error": "boom"},
    ]
    table = {r["estimator"]: r for r in summarise(rows)}
    assert table["dim"]["mae"] == pytest.approx(2.0) and table["or"]["mae"] == pytest.approx(2.25)
    assert table["dim"]["mae_se"] == pytest.approx(np.std([1.0, 3.0], ddof=1) / np.sqrt(2))
    assert table["dim"]["mean_rank"] == pytest.approx(1.5) and table["or"]["mean_rank"] == pytest.approx(1.5)
    assert table["or"]["median_seconds"] == pytest.approx(4.0) and table["or"]["n"] == 2


def test_unknown_model_path_is_a_clear_error(tmp_path, capsys):
    code = cina_main(["evaluate", "--model", str(tmp_path / "nope"), "--suite", "synthetic", "--out", str(tmp_path / "o")])
    assert code == 2
    assert "not a run directory" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------
# intervals, coverage and CATE columns

from cina.eval import benchmarks as bm  # noqa: E402
from cina.eval.baselines import doubleml_available, run_baseline  # noqa: E402
from cina.eval.evaluate import FIELDS, INTERVAL_CATE_FIELDS, EvalOptions, _done_rows, _Estimators, _row_values, pehe  # noqa: E402

DATA = bm.default_data_dir()
NEW_COLUMNS = INTERVAL_CATE_FIELDS


@pytest.fixture(scope="module")
def tiny_head_model(tmp_path_factory):
    """An untrained CInA with an outcome head (se, intervals, CATE): the columns' plumbing does not
    need a good model."""
    import torch

    from cina.core import CInA

    torch.manual_seed(0)
    model = CInA(d_model=16, n_heads=2, n_layers=1, n_value_layers=1, max_features=32, outcome_model=True,
                 outcome_features=8, supervised_weight=1.0, balance_weight=0.0, landmarks=None)
    path = tmp_path_factory.mktemp("tiny") / "model"
    model.save(path)
    return path


def _read(path):
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        return reader.fieldnames, list(reader)


def test_interval_and_cate_columns_on_a_tiny_suite(tmp_path, tiny_head_model):
    from cina.core import CInA

    out = tmp_path / "eval"
    ests = ["dim", "or", "aipw", "svm", "cina-zs"] + (["doubleml"] if doubleml_available() else [])
    assert cina_main(["evaluate", "--model", str(tiny_head_model), "--suite", "synthetic", "--n-synthetic", "2",
                      "--no-ood", "--out", str(out), "--estimators", *ests, "--quiet"]) == 0
    header, rows = _read(out / "results.csv")
    assert header == FIELDS and len(rows) == 2 * len(ests)
    recs = {r.name: r for r in bm.synthetic_tasks("default", 2)}
    model = CInA.load(tiny_head_model)
    for r in rows:
        assert r["error"] == "", r
        est, truth = float(r["estimate"]), float(r["truth"])
        if r["estimator"] in ("dim", "aipw", "doubleml", "cina-zs"):  # an interval
            se, lo, hi = float(r["se"]), float(r["ci_low"]), float(r["ci_high"])
            assert se > 0 and lo < est < hi
            assert hi - lo == pytest.approx(2 * 1.959964 * se, rel=1e-5)
            assert r["covered"] == str(int(lo <= truth <= hi))
        else:  # or, svm: no standard error, no interval
            assert r["se"] == r["ci_low"] == r["ci_high"] == r["covered"] == ""
        assert r["pehe_out"] == ""  # the synthetic suite has no new units
        if r["estimator"] in ("dim", "svm"):
            assert r["pehe_in"] == ""
        else:
            assert float(r["pehe_in"]) > 0
    # the values are the estimators' own: recomputed here from the same parts
    by = {(r["dataset"], r["estimator"]): r for r in rows}
    name, rec = next(iter(recs.items()))
    res = run_baseline("or", rec.x, rec.t, rec.y)
    assert float(by[name, "or"]["pehe_in"]) == pytest.approx(np.sqrt(np.mean((res.mu1 - res.mu0 - rec.ite) ** 2)))
    e = model.estimate(rec.x.astype(np.float32), rec.t.astype(np.float32), rec.y.astype(np.float32), compute_loss=False)
    row = by[name, "cina-zs"]
    # every truth in a suite is an effect on the dataset's own units: the rows carry the sample interval
    assert float(row["estimate"]) == pytest.approx(e.ate, rel=1e-6)
    assert float(row["se"]) == pytest.approx(e.se_sample, rel=1e-6)
    assert float(row["ci_low"]) == pytest.approx(e.ci(0.95, sample=True)[0], rel=1e-6)
    assert float(row["pehe_in"]) == pytest.approx(pehe(e.cate, rec.ite), rel=1e-6)
    table = {(t["estimator"]): t for t in summarise(rows)}
    assert table["dim"]["n_ci"] == 2 and table["dim"]["coverage"] == np.mean([int(by[n, "dim"]["covered"]) for n in recs])
    assert table["or"]["n_ci"] == 0 and np.isnan(table["or"]["coverage"])
    assert table["aipw"]["pehe_in"] == pytest.approx(np.mean([float(by[n, "aipw"]["pehe_in"]) for n in recs]))
    assert np.isnan(table["aipw"]["pehe_out"])
    summary = (out / "summary.md").read_text()
    assert "95% coverage" in summary and "sqrt PEHE in" in summary
    assert f"{table['aipw']['pehe_in']:.4g}" in summary


def test_new_units_give_out_of_sample_pehe(tiny_head_model):
    """A record with new units (as ihdp-100's test units): pehe_out of each CATE estimator is the
    RMSE of its predictions for them, which see neither their t nor their y."""
    from dataclasses import replace

    from cina.core import CInA

    rec = next(bm.synthetic_tasks("default", 1))
    half = rec.n_units // 2
    rec = replace(rec, x=rec.x[:half], t=rec.t[:half], y=rec.y[:half], ite=rec.ite[:half],
                  truth=float(rec.ite[:half].mean()), x_new=rec.x[half:], ite_new=rec.ite[half:])
    runner = _Estimators(str(tiny_head_model), None, EvalOptions())
    for name in ("or", "aipw", "cina-zs", "dim"):
        out = runner.run(name, rec)
        row = _row_values(out)
        if name == "dim":
            assert out.cate_new is None and row["pehe_out"] == "" and row["pehe_in"] == ""
            continue
        assert out.cate_new.shape == (len(rec.x_new),)
        assert float(row["pehe_out"]) == pytest.approx(np.sqrt(np.mean((out.cate_new - rec.ite_new) ** 2)))
    lin = run_baseline("or", rec.x, rec.t, rec.y, x_new=rec.x_new)
    assert float(_row_values(runner.run("or", rec))["pehe_out"]) == pytest.approx(pehe(lin.cate_new, rec.ite_new))
    model = CInA.load(tiny_head_model)
    e = model.estimate(rec.x.astype(np.float32), rec.t.astype(np.float32), rec.y.astype(np.float32),
                       compute_loss=False, x_new=rec.x_new.astype(np.float32))
    assert pehe(runner.run("cina-zs", rec).cate_new, rec.ite_new) == pytest.approx(pehe(e.cate_new, rec.ite_new), rel=1e-6)
    with pytest.raises(ValueError, match="3 unit effects against 2"):
        pehe(np.zeros(3), np.zeros(2))


def test_a_model_without_an_outcome_head_leaves_the_columns_empty(tmp_path):
    import torch

    from cina.core import CInA

    torch.manual_seed(0)
    path = tmp_path / "plain"
    CInA(d_model=16, n_heads=2, n_layers=1, n_value_layers=1, max_features=32, landmarks=None).save(path)
    out = tmp_path / "eval"
    assert cina_main(["evaluate", "--model", str(path), "--suite", "synthetic", "--n-synthetic", "1", "--no-ood",
                      "--out", str(out), "--estimators", "cina-zs", "--quiet"]) == 0
    (row,) = _read(out / "results.csv")[1]
    assert row["error"] == "" and row["estimate"] != ""
    assert all(row[k] == "" for k in NEW_COLUMNS)


def test_an_old_results_csv_is_read_and_resumed(tmp_path):
    """A results.csv written before the interval and CATE columns (the recorded results/ files):
    every reader takes it, and resuming rewrites it under the new header without losing a value."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    old_fields = [f for f in FIELDS if f not in NEW_COLUMNS]
    recs = list(bm.synthetic_tasks("default", 2))
    out = tmp_path / "old"
    out.mkdir()
    old_rows = [{"suite": "synthetic-id", "dataset": recs[0].name, "estimator": "dim", "estimand": "ate",
                 "estimate": "0.5", "truth": "0.25", "abs_error": "0.25", "seconds": "0.001", "n_units": "100",
                 "n_covariates": "3", "subsampled_from": "", "error": ""},
                {"suite": "synthetic-id", "dataset": recs[0].name, "estimator": "or", "estimand": "ate",
                 "estimate": "", "truth": "0.25", "abs_error": "", "seconds": "", "n_units": "100",
                 "n_covariates": "3", "subsampled_from": "", "error": "ValueError: boom"}]
    with (out / "results.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=old_fields)
        w.writeheader()
        w.writerows(old_rows)
    done, rows = _done_rows(out / "results.csv")
    assert (("synthetic-id", recs[0].name, "dim") in done) and all(r["covered"] == "" for r in rows)
    (dim,) = summarise(rows)
    assert dim["mae"] == 0.25 and dim["n_ci"] == 0 and np.isnan(dim["coverage"]) and np.isnan(dim["pehe_in"])
    root = Path(__file__).resolve().parents[1]
    table = subprocess.run([sys.executable, str(root / "scripts" / "results_table.py"), str(tmp_path)],
                           capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(root)})
    assert table.returncode == 0, table.stderr
    assert "0.25" in table.stdout and "coverage" not in table.stdout  # no interval columns to show
    # resume: the old rows are kept (values and all), the file gets the new header, new rows fill it
    assert cina_main(["evaluate", "--model", "none", "--suite", "synthetic", "--n-synthetic", "2", "--no-ood",
                      "--out", str(out), "--estimators", "dim", "or", "--quiet"]) == 0
    header, rows = _read(out / "results.csv")
    assert header == FIELDS and len(rows) == 4
    assert {k: rows[0][k] for k in old_fields} == old_rows[0] and rows[0]["se"] == ""
    assert rows[1]["error"] == "ValueError: boom"  # the failed row is not retried (as before)
    new_dim = next(r for r in rows if r["dataset"] == recs[1].name and r["estimator"] == "dim")
    assert float(new_dim["se"]) > 0 and new_dim["covered"] in ("0", "1")
    table = subprocess.run([sys.executable, str(root / "scripts" / "results_table.py"), str(tmp_path)],
                           capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(root)})
    assert table.returncode == 0 and "coverage" in table.stdout


def test_summary_coverage_pehe_and_tied_ranks():
    rows = [
        {"suite": "s", "dataset": "a", "estimator": "aipw", "abs_error": "0.5", "seconds": "1", "covered": "1",
         "pehe_in": "1.0", "pehe_out": "2.0"},
        {"suite": "s", "dataset": "a", "estimator": "doubleml", "abs_error": "0.5", "seconds": "1", "covered": "1",
         "pehe_in": "1.0", "pehe_out": ""},
        {"suite": "s", "dataset": "a", "estimator": "dim", "abs_error": "1.0", "seconds": "1", "covered": "0"},
        {"suite": "s", "dataset": "b", "estimator": "aipw", "abs_error": "0.1", "seconds": "1", "covered": "0",
         "pehe_in": "3.0", "pehe_out": "4.0"},
        {"suite": "s", "dataset": "b", "estimator": "doubleml", "abs_error": "0.2", "seconds": "1", "covered": "",
         "pehe_in": "", "pehe_out": ""},
        {"suite": "s", "dataset": "b", "estimator": "dim", "abs_error": "0.3", "seconds": "1"},  # an old row
    ]
    t = {r["estimator"]: r for r in summarise(rows)}
    assert t["aipw"]["coverage"] == 0.5 and t["aipw"]["n_ci"] == 2
    assert t["doubleml"]["coverage"] == 1.0 and t["doubleml"]["n_ci"] == 1
    assert t["dim"]["coverage"] == 0.0 and t["dim"]["n_ci"] == 1 and np.isnan(t["dim"]["pehe_in"])
    assert t["aipw"]["pehe_in"] == 2.0 and t["aipw"]["pehe_out"] == 3.0 and np.isnan(t["doubleml"]["pehe_out"])
    # dataset a: aipw and doubleml tie at rank 1.5, dim 3; dataset b: 1, 2, 3
    assert t["aipw"]["mean_rank"] == pytest.approx((1.5 + 1) / 2) and t["doubleml"]["mean_rank"] == pytest.approx(1.75)
    assert t["dim"]["mean_rank"] == 3.0
    from cina.eval.evaluate import format_table

    text = format_table(summarise(rows))
    assert "cover95" in text and "0.50" in text


def test_missing_doubleml_is_skipped_with_a_message(tmp_path, monkeypatch):
    import cina.eval.baselines as baselines

    monkeypatch.setattr(baselines, "doubleml_available", lambda: False)
    out = tmp_path / "eval"
    with pytest.warns(UserWarning, match="doubleml estimator is skipped: the doubleml package is not installed"):
        assert cina_main(["evaluate", "--model", "none", "--suite", "synthetic", "--n-synthetic", "1", "--no-ood",
                          "--out", str(out), "--estimators", "dim", "doubleml", "--quiet"]) == 0
    assert [r["estimator"] for r in _read(out / "results.csv")[1]] == ["dim"]


@pytest.mark.skipif(DATA is None or not DATA.is_dir(), reason="benchmark folder absent (../shared/benchmarks or $CINA_BENCHMARKS)")
def test_ihdp_100_suite_rows(tmp_path, tiny_head_model):
    out = tmp_path / "eval"
    assert cina_main(["evaluate", "--model", str(tiny_head_model), "--suite", "ihdp-100", "--limit", "2",
                      "--data-dir", str(DATA), "--out", str(out), "--estimators", "or", "cina-zs", "--quiet"]) == 0
    rows = _read(out / "results.csv")[1]
    assert [(r["dataset"], r["estimator"]) for r in rows] == [
        ("ihdp100-0001", "or"), ("ihdp100-0001", "cina-zs"), ("ihdp100-0002", "or"), ("ihdp100-0002", "cina-zs")]
    rec = next(bm.load_ihdp_100(DATA, replications=[1]))
    lin = run_baseline("or", rec.x, rec.t, rec.y, x_new=rec.x_new)
    r = rows[0]
    assert r["suite"] == "ihdp-100" and r["n_units"] == "672" and float(r["truth"]) == pytest.approx(rec.truth)
    assert float(r["pehe_in"]) == pytest.approx(pehe(lin.cate, rec.ite))
    assert float(r["pehe_out"]) == pytest.approx(pehe(lin.cate_new, rec.ite_new))
    assert all(float(x["pehe_out"]) > 0 and x["error"] == "" for x in rows)
