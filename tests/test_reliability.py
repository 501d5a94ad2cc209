"""Bad input must not give a plausible answer without a word: covariates in extreme units,
constant and separating covariates, tiny arms, and the files `cina estimate` reads.

The scale tests compare estimates on rescaled data with the estimate on the original data. Why
the tolerance is what it is: standardisation runs in float64 on each column divided by its
largest magnitude, so rescaling a column changes its standardised values by float64 rounding
(~1e-16 relative); the network then reads them in float32, where such a change flips at most
one unit in the last place (6e-8 relative) of a few entries. Through a 10-layer solver with
contraction (cina.core.target_balancing) that moves the estimate by a few 1e-7 sd(y); we allow
1e-4 sd(y), still 1000x smaller than the confounding bias the test data carry (>= 0.3 sd(y)), so
a dropped confounder cannot pass.
"""

import csv
import gzip
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import cina
from cina.cli import main as cina_main

ROOT = Path(__file__).resolve().parents[1]
TOL = 1e-4  # in units of sd(y), see the module docstring


@pytest.fixture(scope="module")
def fast():
    return cina.CInA.load("fast")


def confounded(n=400, seed=0):
    """x (n, 2): x0 a strong confounder, x1 noise; true ATE 1."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 2))
    t = (rng.random(n) < 1 / (1 + np.exp(-1.5 * x[:, 0]))).astype(float)
    y = 2.0 * x[:, 0] + t + 0.5 * rng.standard_normal(n)
    return x, t, y


def write_csv(path, header, columns, fmt="%.17g", delimiter=","):
    with open(path, "w", newline="") as f:
        w = csv.writer(f, delimiter=delimiter)
        w.writerow(header)
        for row in zip(*columns):
            w.writerow([fmt % v for v in row])
    return path


def cli_json(capsys, *argv):
    code = cina_main(["estimate", *map(str, argv), "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return json.loads(captured.out)


# --------------------------------------------------------------------------- 1. scale


@pytest.mark.parametrize("factor", [1e-7, 1e19, 1e20, 1e-30])
def test_a_confounder_in_extreme_units_gives_the_same_estimate_in_python(fast, factor):
    x, t, y = confounded()
    ref = fast.estimate(x, t, y)
    # the confounder matters: without it the estimate moves by far more than TOL
    without = fast.estimate(x[:, 1:], t, y)
    assert abs(ref.ate - without.ate) > 0.3 * y.std()
    xs = x.copy()
    xs[:, 0] *= factor
    est = fast.estimate(xs, t, y)
    assert abs(est.ate - ref.ate) < TOL * y.std(), (factor, est.ate, ref.ate, without.ate)
    np.testing.assert_allclose(est.diagnostics["smd_before"], ref.diagnostics["smd_before"], rtol=1e-9, atol=1e-12)
    assert est.diagnostics["warnings"] == []


@pytest.mark.parametrize("factor", [1e-7, 1e19])
def test_a_confounder_in_extreme_units_gives_the_same_estimate_from_the_cli(tmp_path, capsys, factor):
    x, t, y = confounded(seed=1)
    ref = cli_json(capsys, write_csv(tmp_path / "a.csv", ["x0", "x1", "t", "y"], [x[:, 0], x[:, 1], t, y]),
                   "--treatment", "t", "--outcome", "y", "--model", "fast")
    scaled = cli_json(capsys, write_csv(tmp_path / "b.csv", ["x0", "x1", "t", "y"], [x[:, 0] * factor, x[:, 1], t, y]),
                      "--treatment", "t", "--outcome", "y", "--model", "fast")
    without = cli_json(capsys, tmp_path / "a.csv", "--treatment", "t", "--outcome", "y", "--covariates", "x1",
                       "--model", "fast")
    assert abs(ref["estimate"] - without["estimate"]) > 0.3 * y.std()
    assert abs(scaled["estimate"] - ref["estimate"]) < TOL * y.std(), (scaled["estimate"], ref["estimate"])
    assert scaled["warnings"] == []


def test_a_constant_covariate_is_reported_and_ignored(fast, tmp_path, capsys):
    x, t, y = confounded(seed=2)
    xc = np.column_stack([x, np.full(len(t), 7.25)])
    ref = fast.estimate(x, t, y)
    est = fast.estimate(xc, t, y)
    # ignored means ignored: the same estimate as without the column
    assert abs(est.ate - ref.ate) < TOL * y.std()
    assert len(est.diagnostics["smd_before"]) == 3 and est.diagnostics["smd_before"][2] == 0
    assert any("column 2" in w and "constant" in w for w in est.diagnostics["warnings"]), est.diagnostics["warnings"]
    f = write_csv(tmp_path / "c.csv", ["x0", "x1", "site", "t", "y"], [x[:, 0], x[:, 1], xc[:, 2], t, y])
    out = cli_json(capsys, f, "--treatment", "t", "--outcome", "y", "--model", "fast")
    assert any("'site'" in w and "constant" in w for w in out["warnings"]), out["warnings"]
    # the text output says it too
    assert cina_main(["estimate", str(f), "--treatment", "t", "--outcome", "y", "--model", "fast"]) == 0
    assert "warning: covariate 'site'" in capsys.readouterr().out


def test_only_constant_covariates_are_refused(fast, tmp_path, capsys):
    x, t, y = confounded(seed=3)
    c = np.full(len(t), 3.0)
    with pytest.raises(ValueError, match=r"every covariate is constant \(column 0\)"):
        fast.estimate(c[:, None], t, y)
    f = write_csv(tmp_path / "only.csv", ["site", "t", "y"], [c, t, y])
    assert cina_main(["estimate", str(f), "--treatment", "t", "--outcome", "y", "--model", "fast"]) == 2
    err = capsys.readouterr().err
    assert "only.csv" in err and "'site'" in err and len(err.strip().splitlines()) == 1, err


def test_standardize_covariates_is_scale_free_and_keeps_the_dtype():
    import torch

    x, t, y = confounded(n=50, seed=4)
    X = torch.as_tensor(x)[None]
    M = torch.ones(1, 50, dtype=torch.bool)
    F = torch.ones(1, 2, dtype=torch.bool)
    ref = cina.standardize_covariates(X, M, F)
    assert ref.dtype == torch.float64
    for factor in (1e-300, 1e-7, 1e19, 1e300):
        Xs = X.clone()
        Xs[..., 0] *= factor
        torch.testing.assert_close(cina.standardize_covariates(Xs, M, F), ref, rtol=1e-12, atol=1e-12)
    # float32 input in units of 1e19 (squares overflow float32) comes back as float32, not dropped
    X32 = (X * torch.tensor([1e19, 1.0], dtype=torch.float64)).float()
    out = cina.standardize_covariates(X32, M, F)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, ref.float(), rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------- 2. separation, tiny arms


def test_a_covariate_that_separates_the_arms_is_flagged(fast, tmp_path, capsys):
    x, t, y = confounded(seed=5)
    xs = np.column_stack([x[:, 0], t])  # a copy of the treatment
    est = fast.estimate(xs, t, y)
    p = t.mean()
    # SMD on the pooled sd: a 0/1 column equal to t has mean difference 1 and pooled sd sqrt(p(1-p))
    assert est.diagnostics["smd_before"][1] == pytest.approx(1 / np.sqrt(p * (1 - p)), rel=1e-9)
    assert any("column 1" in w and "overlap" in w for w in est.diagnostics["warnings"]), est.diagnostics["warnings"]
    # a covariate whose arms' ranges do not overlap (not a copy of t)
    xd = np.column_stack([x[:, 0], np.where(t == 1, 5.0, 0.0) + np.random.default_rng(0).random(len(t))])
    assert any("column 1" in w for w in fast.estimate(xd, t, y).diagnostics["warnings"])
    f = write_csv(tmp_path / "sep.csv", ["age", "treated_copy", "t", "y"], [x[:, 0], t, t, y])
    out = cli_json(capsys, f, "--treatment", "t", "--outcome", "y", "--model", "fast")
    assert any("'treated_copy'" in w and "overlap" in w for w in out["warnings"]), out["warnings"]
    assert out["diagnostics"]["smd_before"][1] == pytest.approx(1 / np.sqrt(p * (1 - p)), rel=1e-9)
    # and Algorithm 1's estimate path reports it too
    single = cina.SingleDatasetCInA().fit(xs, t).estimate(y)
    assert any("column 1" in w and "overlap" in w for w in single.diagnostics["warnings"])
    assert single.diagnostics["smd_before"][1] == pytest.approx(1 / np.sqrt(p * (1 - p)), rel=1e-9)


def test_tiny_arms_are_flagged(fast, tmp_path, capsys):
    from cina.core.checks import MIN_ARM_UNITS

    rng = np.random.default_rng(6)
    x = rng.standard_normal((10, 2))
    t = np.zeros(10)
    t[3] = 1
    y = x[:, 0] + t
    est = fast.estimate(x, t, y)
    warns = est.diagnostics["warnings"]
    assert any("treated arm" in w and "1 unit" in w for w in warns), warns
    f = write_csv(tmp_path / "tiny.csv", ["a", "b", "t", "y"], [x[:, 0], x[:, 1], t, y])
    out = cli_json(capsys, f, "--treatment", "t", "--outcome", "y", "--model", "fast")
    assert any("treated arm" in w for w in out["warnings"])
    assert cina_main(["estimate", str(f), "--treatment", "t", "--outcome", "y", "--model", "fast"]) == 0
    assert "warning: the treated arm" in capsys.readouterr().out
    single = cina.SingleDatasetCInA().fit(x, t).estimate(y)
    assert any("treated arm" in w for w in single.diagnostics["warnings"])
    assert MIN_ARM_UNITS == 10


def test_low_effective_sample_size_is_flagged():
    from cina.core.checks import MIN_ARM_ESS, weighting_warnings

    assert weighting_warnings(ess_treated=MIN_ARM_ESS + 1, ess_control=50.0) == []
    warns = weighting_warnings(ess_treated=2.5, ess_control=50.0)
    assert len(warns) == 1 and "treated arm" in warns[0] and "2.5" in warns[0]


def test_extreme_values_are_flagged_and_the_outcome_scale_cannot_overflow(tmp_path, capsys):
    from cina.core.checks import EXTREME_RATIO, extreme_values

    default = cina.CInA.load("default")  # the outcome head: mu0, mu1, se and cate depend on y's scale
    x, t, y = confounded(seed=9)
    clean = default.estimate(x, t, y)
    # the outcome model is affine-equivariant in y (unpenalised intercept) and y reaches the
    # network standardised in float64, so a change of units maps every output exactly
    moved = default.estimate(x, t, 1e6 * y + 3e7)
    assert moved.ate == pytest.approx(1e6 * clean.ate, rel=1e-6)
    assert moved.se == pytest.approx(1e6 * clean.se, rel=1e-6)
    np.testing.assert_allclose(moved.cate, 1e6 * clean.cate, rtol=1e-5, atol=1e-6 * 1e6 * np.abs(clean.cate).max())
    # an outcome cell of 1e39 is inf in float32: the estimate stays finite and says why it is odd
    y_bad = y.copy()
    y_bad[17] = 1e39
    est = default.estimate(x, t, y_bad)
    assert np.isfinite(est.ate) and np.isfinite(est.se) and np.isfinite(est.cate).all()
    assert any("outcome" in w and "unit 17" in w for w in est.diagnostics["warnings"]), est.diagnostics["warnings"]
    # a covariate cell of 1e30 (a missing-value code): the column collapses once standardised
    x_bad = x.copy()
    x_bad[5, 0] = 1e30
    warns = default.estimate(x_bad, t, y).diagnostics["warnings"]
    assert any("column 0" in w and "unit 5" in w and "extreme" in w for w in warns), warns
    f = write_csv(tmp_path / "extreme.csv", ["age", "dose", "t", "y"], [x_bad[:, 0], x_bad[:, 1], t, y])
    out = cli_json(capsys, f, "--treatment", "t", "--outcome", "y", "--model", "fast")
    assert any("'age'" in w and "extreme" in w for w in out["warnings"]), out["warnings"]
    # what is not an outlier: a rare category, a heavy but continuous tail, a small dataset
    rng = np.random.default_rng(3)
    rare = np.zeros(400)
    rare[7] = 1.0
    heavy = rng.lognormal(0.0, 1.5, 400)
    _, ratio = extreme_values(np.column_stack([rare, heavy]))
    assert ratio[0] == 0 and ratio[1] < EXTREME_RATIO
    _, ratio = extreme_values(np.r_[np.arange(10.0), 1e30][:, None])
    assert ratio[0] == 0


def test_ordinary_data_has_no_warnings(fast, tmp_path, capsys):
    x, t, y = confounded(seed=7)
    assert fast.estimate(x, t, y).diagnostics["warnings"] == []
    assert cina.SingleDatasetCInA().fit(x, t).estimate(y).diagnostics["warnings"] == []
    f = write_csv(tmp_path / "ok.csv", ["a", "b", "t", "y"], [x[:, 0], x[:, 1], t, y])
    assert cli_json(capsys, f, "--treatment", "t", "--outcome", "y", "--model", "fast")["warnings"] == []


# --------------------------------------------------------------------------- 5. the files cina estimate reads


def _table(n=60, seed=8):
    x, t, y = confounded(n, seed)
    header = ["âge", "dose", "t", "y"]  # a non-ASCII name, so the encoding matters
    rows = [[f"{a:.6f}", f"{b:.6f}", f"{int(c)}", f"{d:.6f}"] for a, b, c, d in zip(x[:, 0], x[:, 1], t, y)]
    return header, rows


def _text(header, rows, delimiter=","):
    return "\r\n".join(delimiter.join(r) for r in [header, *rows]) + "\r\n"


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    header, rows = _table()
    f = tmp_path_factory.mktemp("ref") / "ref.csv"
    f.write_text(_text(header, rows), encoding="utf-8")
    code = cina_main(["estimate", str(f), "--treatment", "t", "--outcome", "y", "--model", "fast", "--json"])
    assert code == 0
    return f


def _estimate_of(capsys, path):
    return cli_json(capsys, path, "--treatment", "t", "--outcome", "y", "--model", "fast")


@pytest.mark.parametrize("kind", ["bom", "gzip", "latin1", "tsv", "semicolon", "pipe", "blank_lines", "utf16"])
def test_file_kinds_are_read(tmp_path, capsys, reference, kind):
    header, rows = _table()
    capsys.readouterr()
    ref = _estimate_of(capsys, reference)
    text = _text(header, rows, {"tsv": "\t", "semicolon": ";", "pipe": "|"}.get(kind, ","))
    if kind == "blank_lines":
        text = text.replace("\r\n", "\r\n\r\n", 3) + "\n\n"
    data = {
        "bom": b"\xef\xbb\xbf" + text.encode("utf-8"),
        "gzip": gzip.compress(text.encode("utf-8")),
        "latin1": text.encode("latin-1"),
        "utf16": text.encode("utf-16"),
    }.get(kind, text.encode("utf-8"))
    f = tmp_path / {"gzip": "d.csv.gz", "tsv": "d.tsv"}.get(kind, "d.csv")
    f.write_bytes(data)
    out = _estimate_of(capsys, f)
    assert out["covariates"] == ["âge", "dose"]
    assert out["estimate"] == ref["estimate"] and out["n_units"] == 60


def test_a_row_of_empty_fields_is_skipped_with_a_word(tmp_path, capsys):
    header, rows = _table()
    kept = rows[:30] + rows[31:]
    without = tmp_path / "without.csv"
    without.write_text(_text(header, kept))
    emptied = tmp_path / "emptied.csv"
    emptied.write_text(_text(header, rows[:30] + [[""] * len(header)] + rows[31:]))
    ref, out = _estimate_of(capsys, without), _estimate_of(capsys, emptied)
    # the file's line 32 (header = line 1) is the record of delimiters only: the unit is gone, so
    # the estimate is that of the file without it, and the user is told which row was skipped
    assert out["estimate"] == ref["estimate"] and out["n_units"] == 59
    assert any("row 32" in w and "every field empty" in w for w in out["warnings"]), out["warnings"]


def test_stdin_is_read_with_a_dash(reference):
    cmd = [sys.executable, "-m", "cina.cli", "estimate", "-", "--treatment", "t", "--outcome", "y", "--model", "fast", "--json"]
    env = {"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
    runs = [subprocess.run(cmd, input=data, capture_output=True, cwd=ROOT, env=env, timeout=300)
            for data in (reference.read_bytes(), gzip.compress(reference.read_bytes()))]
    ref = subprocess.run(cmd[:4] + [str(reference)] + cmd[5:], capture_output=True, cwd=ROOT, env=env, timeout=300)
    assert ref.returncode == 0, ref.stderr
    for r in runs:
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["estimate"] == json.loads(ref.stdout)["estimate"]
    bad = subprocess.run(cmd, input=b"a,t,y\n1,0\n", capture_output=True, cwd=ROOT, env=env, timeout=300)
    assert bad.returncode == 2 and bad.stderr.decode().count("\n") == 1
    assert "<stdin>: row 2 has 2 fields" in bad.stderr.decode()


@pytest.mark.parametrize("kind, message", [
    ("header_only", r"h.csv: no data rows"),
    ("empty", r"h.csv: the file is empty"),
    ("binary", r"h.csv: not a text file \(a NUL byte at byte offset 3\)"),
    ("bad_gzip", r"h.csv.gz: not a valid gzip file"),
    ("decimal_comma", r"h.csv: column 'dose', row 2: '0,5' is not a number \(a decimal comma\?"),
    ("missing_cell", r"h.csv: column 'y', row 3: missing value"),
])
def test_bad_files_get_one_line_naming_the_file_column_and_row(tmp_path, capsys, kind, message):
    import re

    data = {
        "header_only": b"a,dose,t,y\n",
        "empty": b"",
        "binary": b"PK\x03\x00\x00\x14garbage",
        "bad_gzip": b"\x1f\x8b\x08\x00garbage",
        "decimal_comma": "a;dose;t;y\n1;0,5;1;2\n2;1;0;3\n".encode(),
        "missing_cell": b"a,dose,t,y\n1,2,1,3\n1,2,0,\n",
    }[kind]
    f = tmp_path / ("h.csv.gz" if kind == "bad_gzip" else "h.csv")
    f.write_bytes(data)
    assert cina_main(["estimate", str(f), "--treatment", "t", "--outcome", "y", "--model", "fast"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and re.search(message, err), err


# --------------------------------------------------------------------------- 6. one line, not a traceback


def test_malformed_model_files_give_one_line(tmp_path, capsys, reference):
    bad = tmp_path / "m.safetensors"
    bad.write_bytes(b"\x00" * 5)
    assert cina_main(["estimate", str(reference), "--treatment", "t", "--outcome", "y", "--model", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "m.safetensors" in err and len(err.strip().splitlines()) == 1, err


def test_unwritable_output_directories_give_one_line(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    for argv in (["train", "--corpus", str(tmp_path / "nocorpus"), "--out", str(blocker / "run")],
                 ["evaluate", "--model", "none", "--suite", "synthetic", "--n-synthetic", "1", "--estimators", "dim",
                  "--no-ood", "--out", str(blocker / "eval"), "--quiet"]):
        code = cina_main(argv)
        err = capsys.readouterr().err
        assert code == 2 and len(err.strip().splitlines()) == 1 and "file" in err, (argv, err)


@pytest.mark.skipif(hasattr(__import__("os"), "geteuid") and __import__("os").geteuid() == 0,
                    reason="root writes into read-only folders")
def test_a_read_only_output_directory_gives_one_line(tmp_path, capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        code = cina_main(["evaluate", "--model", "none", "--suite", "synthetic", "--n-synthetic", "1",
                          "--estimators", "dim", "--no-ood", "--out", str(ro / "eval"), "--quiet"])
    finally:
        ro.chmod(0o700)
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Permission denied" in err, err
