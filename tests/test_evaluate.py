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
