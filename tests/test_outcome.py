"""The in-context outcome head, the doubly robust estimate, CATE, intervals and the front door."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

import causalgen
from cina import CInA, ZeroShotEstimator
from cina.core import augmented_effect, collate_datasets
from cina.core import CInAConfig
from cina.core.outcome import OutcomeHead, loo_mse, ridge_fit, ridge_predict

TINY = dict(d_model=16, n_heads=2, n_layers=1, n_value_layers=1, max_features=16, mlp_ratio=2, refine_steps=10,
            landmarks=None, outcome_model=True, outcome_features=8, supervised_weight=1.0, outcome_weight=1.0,
            balance_weight=0.0, trunk_attention="induced", n_inducing=8, estimands=("ate", "att"))


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return CInA(**TINY).eval()


@pytest.fixture(scope="module")
def task():
    return causalgen.sample_task("default", 6)  # 499 units, 5 covariates


def test_a_units_predictions_do_not_see_its_own_outcome(model, task):
    base = model.estimate(task.x, task.t, task.y)
    rng = np.random.default_rng(0)
    for i in rng.choice(task.n_units, 5, replace=False):
        y = task.y.copy()
        y[i] += 10.0
        moved = model.estimate(task.x, task.t, y)
        assert moved.mu0[i] == pytest.approx(base.mu0[i], abs=1e-6) and moved.mu1[i] == pytest.approx(base.mu1[i], abs=1e-6)
        # other units do see it (it is part of their context)
        others = np.delete(np.arange(task.n_units), i)
        assert np.abs(moved.mu0[others] - base.mu0[others]).max() + np.abs(moved.mu1[others] - base.mu1[others]).max() > 1e-6


def test_leave_one_out_ridge_equals_refitting_without_the_unit():
    rng = np.random.default_rng(1)
    phi = torch.tensor(np.c_[np.ones(40), rng.normal(size=(40, 3))], dtype=torch.float64)[None]
    y = torch.tensor(rng.normal(size=40))[None]
    arm = torch.ones(1, 40, dtype=torch.bool)
    beta, inv = ridge_fit(phi, y, arm, torch.tensor(math.log(0.05)))
    loo = ridge_predict(phi, beta, inv, y, arm)[0]
    for i in (0, 7, 39):
        keep = arm.clone()
        keep[0, i] = False
        # the same penalty (lam is fixed by the full arm's size in the smoother)
        b_i, _ = ridge_fit(phi, y, keep, torch.tensor(math.log(0.05 * 40 / 39)))
        assert float(loo[i]) == pytest.approx(float(phi[0, i] @ b_i[0]), abs=1e-7)


def test_the_penalty_grid_keeps_each_arms_smallest_leave_one_out_error():
    torch.manual_seed(3)
    rng = np.random.default_rng(3)
    B, N, d = 3, 60, 4
    xs = torch.tensor(rng.normal(size=(B, N, d)), dtype=torch.float32)
    t = torch.tensor(rng.random((B, N)) < 0.4, dtype=torch.float32)
    # strongly heterogeneous arms: the best penalty differs between datasets and arms
    y = xs[..., 0] * (1 + 3 * t) + torch.tensor([[0.1], [1.0], [3.0]]) * torch.randn(B, N)
    z = torch.randn(B, N, 8)
    mask = torch.ones(B, N, dtype=torch.bool)
    grid = (-6.0, -3.0, 0.0, 3.0)
    head = OutcomeHead(8, n_features=4, penalty_grid=grid)
    fixed = OutcomeHead(8, n_features=4)
    fixed.load_state_dict(head.state_dict())
    out = head(z, xs, t, y, mask)
    phi = head.phi(z, xs, mask)
    n_features = torch.full((B,), 1 + d + 4)
    used = set()
    for a, arm in ((0, (t <= 0.5) & mask), (1, (t > 0.5) & mask)):
        base = head.log_lam(arm, n_features, a).double()
        errors = torch.stack([loo_mse(phi, *ridge_fit(phi, y, arm, base + g), y, arm) for g in grid], 1)
        best = errors.argmin(1)
        chosen = base + torch.tensor(grid, dtype=torch.float64)[best]
        assert torch.allclose(out["log_lam"][:, a], chosen)
        used.update(best.tolist())
        # the predictions are the ridge fit's at the chosen penalty
        for b in range(B):
            beta, inv = ridge_fit(phi[b : b + 1], y[b : b + 1], arm[b : b + 1], chosen[b])
            pred = ridge_predict(phi[b : b + 1], beta, inv, y[b : b + 1], arm[b : b + 1]).float()
            assert torch.allclose(out[f"mu{a}"][b], pred[0], atol=1e-5)
    assert len(used) > 1  # the choice depends on the dataset and arm
    # without a grid the head uses the learned penalty
    assert torch.allclose(fixed(z, xs, t, y, mask)["log_lam"][:, 1],
                          fixed.log_lam((t > 0.5) & mask, n_features, 1).double())


def test_penalty_grid_config_is_validated_and_round_trips():
    cfg = CInAConfig(**{**TINY, "outcome_penalty_grid": [-2, 0, 2]})
    assert cfg.outcome_penalty_grid == (-2.0, 0.0, 2.0)
    assert CInAConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    for bad in ([float("nan")], [0, 50], "0", [True]):
        with pytest.raises(ValueError, match="outcome_penalty_grid"):
            CInAConfig(**{**TINY, "outcome_penalty_grid": bad})
    with pytest.raises(ValueError, match="outcome_penalty_grid needs outcome_model"):
        CInAConfig(**{**TINY, "outcome_model": False, "outcome_weight": 0.0, "outcome_penalty_grid": [0]})
    torch.manual_seed(0)
    m = CInA(**{**TINY, "outcome_penalty_grid": [-4, 0, 4]})
    assert m.outcome.penalty_grid == (-4.0, 0.0, 4.0)


def test_the_augmented_estimate_is_the_formula():
    rng = np.random.default_rng(2)
    n = 12
    t = np.r_[np.ones(5), np.zeros(7)]
    y, mu0, mu1 = rng.normal(size=n), rng.normal(size=n), rng.normal(size=n)
    w = np.r_[rng.dirichlet(np.ones(5)), rng.dirichlet(np.ones(7))]
    args = [torch.tensor(a)[None] for a in (w, t, y, mu0, mu1)]
    mask = torch.ones(1, n, dtype=torch.bool)
    out = augmented_effect(*args, mask, torch.tensor([False]))
    tr, co = t == 1, t == 0
    hand = np.mean(mu1 - mu0) + w[tr] @ (y[tr] - mu1[tr]) - w[co] @ (y[co] - mu0[co])
    assert float(out["tau"]) == pytest.approx(hand, abs=1e-12)
    psi = (mu1 - mu0 - hand) + n * w * np.where(tr, y - mu1, -(y - mu0))
    assert float(out["se"]) == pytest.approx(np.sqrt((psi ** 2).sum()) / n, abs=1e-12)
    # for the effect on these units the spread of the unit effects is not random: residuals only
    psi_s = n * w * np.where(tr, y - mu1, -(y - mu0))
    assert float(out["se_sample"]) == pytest.approx(np.sqrt((psi_s ** 2).sum()) / n, abs=1e-12)
    att = augmented_effect(*args, mask, torch.tensor([True]))
    hand_att = np.mean(y[tr] - mu0[tr]) - w[co] @ (y[co] - mu0[co])
    assert float(att["tau"]) == pytest.approx(hand_att, abs=1e-12)
    psi_s_att = np.where(tr, n / tr.sum() * (y - mu1), -n * w * (y - mu0))
    assert float(att["se_sample"]) == pytest.approx(np.sqrt((psi_s_att ** 2).sum()) / n, abs=1e-12)
    # no outcome model: the weights-only estimate
    zero = augmented_effect(args[0], args[1], args[2], torch.zeros(1, n), torch.zeros(1, n), mask, torch.tensor([False]))
    assert float(zero["tau"]) == pytest.approx(w[tr] @ y[tr] - w[co] @ y[co], abs=1e-12)


def test_double_robustness_on_a_linear_gaussian_design():
    # y = x b + tau t + noise, confounded t. A correct outcome model rescues bad weights (the
    # difference in means' uniform ones), and good weights rescue a wrong outcome model (0).
    rng = np.random.default_rng(3)
    errors = {"dim": [], "dr_uniform": [], "bal_zero_mu": []}
    for _ in range(30):
        n = 2000
        x = rng.normal(size=(n, 3))
        t = (rng.random(n) < 1 / (1 + np.exp(-(x[:, 0] + x[:, 1])))).astype(float)
        y = x @ np.array([1.0, 2.0, -1.0]) + 0.5 * t + rng.normal(size=n)
        uniform = np.where(t == 1, 1 / t.sum(), 1 / (n - t.sum()))
        mu0 = x @ np.array([1.0, 2.0, -1.0])
        mu1 = mu0 + 0.5
        m = torch.ones(1, n, dtype=torch.bool)
        T = lambda a: torch.tensor(a)[None]  # noqa: E731
        dr = float(augmented_effect(T(uniform), T(t), T(y), T(mu0), T(mu1), m, torch.tensor([False]))["tau"])
        errors["dim"].append(abs(uniform[t == 1] @ y[t == 1] - uniform[t == 0] @ y[t == 0] - 0.5))
        errors["dr_uniform"].append(abs(dr - 0.5))
        # inverse-propensity weights (exact propensity), normalised per arm: good weights
        e = 1 / (1 + np.exp(-(x[:, 0] + x[:, 1])))
        ipw = np.where(t == 1, 1 / e, 1 / (1 - e))
        ipw = np.where(t == 1, ipw / ipw[t == 1].sum(), ipw / ipw[t == 0].sum())
        bal = float(augmented_effect(T(ipw), T(t), T(y), torch.zeros(1, n), torch.zeros(1, n), m,
                                     torch.tensor([False]))["tau"])
        errors["bal_zero_mu"].append(abs(bal - 0.5))
    assert np.mean(errors["dim"]) > 1.0  # strongly confounded
    assert np.mean(errors["dr_uniform"]) < 0.05  # noise / sqrt(n) scale
    assert np.mean(errors["bal_zero_mu"]) < 0.25


def test_intervals_cover_on_quick_synthetic_tasks(model):
    # linear-Gaussian tasks: the untrained head is a linear regression per arm, so the augmented
    # estimate is (nearly) unbiased and its influence-function se should cover the population ATE
    # 95% of the time. 200 tasks: binomial sd sqrt(.95 .05 / 200) = 0.015; 3 sd either way.
    tasks = causalgen.sample_tasks("er5000-linear", range(200))
    ests = model.estimate([t.x for t in tasks], [t.t for t in tasks], [t.y for t in tasks])
    inside = [lo <= t.ate <= hi for t, e in zip(tasks, ests) for lo, hi in [e.ci(0.95)]]
    coverage = float(np.mean(inside))
    assert 0.95 - 3 * 0.0154 <= coverage <= min(1.0, 0.95 + 3 * 0.0154), coverage
    # the interval for the effect on the tasks' own units covers their SATE (same tolerance)
    inside = [lo <= t.sate <= hi for t, e in zip(tasks, ests) for lo, hi in [e.ci(0.95, sample=True)]]
    coverage = float(np.mean(inside))
    assert 0.95 - 3 * 0.0154 <= coverage <= min(1.0, 0.95 + 3 * 0.0154), coverage


def test_cate_for_new_units_and_invariances(model, task):
    base = model.estimate(task.x, task.t, task.y, x_new=task.x[:7])
    assert base.cate.shape == (task.n_units,) and base.cate_new.shape == (7,)
    # new units are predicted from the whole dataset: close to the in-sample (leave-one-out) values
    assert np.abs(base.cate_new - base.cate[:7]).max() < 0.2 * (np.abs(base.cate).max() + 1e-9) + 0.05
    # permuting the units permutes everything and changes no estimate
    perm = np.random.default_rng(4).permutation(task.n_units)
    p = model.estimate(task.x[perm], task.t[perm], task.y[perm])
    assert p.ate == pytest.approx(base.ate, abs=1e-5) and p.se == pytest.approx(base.se, abs=1e-6)
    np.testing.assert_allclose(p.cate, base.cate[perm], atol=1e-5)
    # padding: estimated together with a larger dataset, the same answer
    other = causalgen.sample_task("default", 5)
    both = model.estimate([task.x, other.x], [task.t, other.t], [task.y, other.y])
    assert both[0].ate == pytest.approx(base.ate, abs=1e-5)
    np.testing.assert_allclose(both[0].cate, base.cate, atol=1e-5)
    # the new units change nothing of the dataset's own estimate
    assert model.estimate(task.x, task.t, task.y).ate == pytest.approx(base.ate, abs=1e-6)
    weights_only = model.estimate(task.x, task.t, task.y, augment=False)
    assert weights_only.ate == pytest.approx(base.ate_weighting, abs=1e-5)


def test_checkpoint_round_trip_with_the_head(model, task, tmp_path):
    model.save(tmp_path / "m")
    again = CInA.load(tmp_path / "m")
    a, b = model.estimate(task.x, task.t, task.y), again.estimate(task.x, task.t, task.y)
    assert a.ate == b.ate and a.se == b.se and np.array_equal(a.cate, b.cate)


def test_zero_shot_estimator_on_dataframes(model, task):
    cols = [f"c{j}" for j in range(task.n_covariates)]
    X = pd.DataFrame(task.x, columns=cols)
    est = ZeroShotEstimator(model=model).fit(X, pd.Series(task.t), pd.Series(task.y))
    ref = model.estimate(task.x, task.t, task.y)
    assert est.ate_ == pytest.approx(ref.ate) and est.se_ == pytest.approx(ref.se)
    lo, hi = est.ci_
    assert lo < est.ate_ < hi and est.cate_.shape == (task.n_units,)
    assert list(est.diagnostics_["smd_before_by_column"]) == cols and est.n_features_in_ == task.n_covariates
    np.testing.assert_allclose(est.predict_cate(X.iloc[:4]), ref.cate[:4], atol=0.2 * np.abs(ref.cate).max() + 0.05)
    att = ZeroShotEstimator(model=model, estimand="att").fit(X, task.t, task.y)
    assert np.isfinite(att.ate_) and att.ate_ != est.ate_


@pytest.mark.parametrize("change, message", [
    (lambda X, t, y: (X.assign(c0="a"), t, y), r"X: column 'c0' is not numeric"),
    (lambda X, t, y: (X.assign(c1=np.where(np.arange(len(X)) == 3, np.nan, X["c1"])), t, y), r"X: 'c1', row 3: NaN"),
    (lambda X, t, y: (X, t[:-1], y), r"t: expected \d+ values"),
    (lambda X, t, y: (X, t + 1, y), r"t: must be binary 0/1"),
    (lambda X, t, y: (X, t, np.where(np.arange(len(y)) == 2, np.inf, y)), r"y: row 2: NaN or inf"),
])
def test_zero_shot_estimator_names_bad_input(model, task, change, message):
    X = pd.DataFrame(task.x, columns=[f"c{j}" for j in range(task.n_covariates)])
    with pytest.raises(ValueError, match=message):
        ZeroShotEstimator(model=model).fit(*change(X, task.t.astype(float), task.y))
    est = ZeroShotEstimator(model=model).fit(X, task.t, task.y)
    with pytest.raises(ValueError, match="X_new: expected"):
        est.predict_cate(task.x[:3, :1])
    with pytest.raises(ValueError, match="estimand"):
        ZeroShotEstimator(model=model, estimand="cate").fit(X, task.t, task.y)


def test_cli_writes_cate_and_reports_the_interval(model, task, tmp_path):
    model.save(tmp_path / "m")
    data = tmp_path / "d.csv"
    pd.DataFrame(np.c_[task.t, task.y, task.x], columns=["t", "y"] + [f"c{j}" for j in range(task.n_covariates)]
                 ).to_csv(data, index=False)
    out = subprocess.run([sys.executable, "-m", "cina.cli", "estimate", str(data), "--treatment", "t", "--outcome", "y",
                          "--model", str(tmp_path / "m"), "--json", "--cate", str(tmp_path / "cate.csv")],
                         capture_output=True, text=True, check=True)
    result = json.loads(out.stdout)
    lo, hi = result["ci"]
    assert lo < result["estimate"] < hi and result["se"] > 0 and result["augmented"]
    lo_s, hi_s = result["ci_sample"]
    z = (hi - lo) / (2 * result["se"])  # the same normal quantile for both intervals
    assert (hi_s - lo_s) == pytest.approx(2 * z * result["se_sample"], rel=1e-9) and result["se_sample"] > 0
    cate = pd.read_csv(tmp_path / "cate.csv")
    assert list(cate.columns) == ["unit", "mu0", "mu1", "cate"] and len(cate) == task.n_units
    text = subprocess.run([sys.executable, "-m", "cina.cli", "estimate", str(data), "--treatment", "t", "--outcome",
                           "y", "--model", str(tmp_path / "m")], capture_output=True, text=True, check=True).stdout
    assert "95% CI [" in text and "for the effect on these" in text
    no_head = dict(TINY, outcome_model=False, outcome_weight=0.0)
    CInA(**no_head).save(tmp_path / "weights-only")
    bad = subprocess.run([sys.executable, "-m", "cina.cli", "estimate", str(data), "--treatment", "t", "--outcome", "y",
                          "--model", str(tmp_path / "weights-only"), "--cate", str(tmp_path / "x.csv")],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "no outcome head" in bad.stderr
