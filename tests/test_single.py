"""Algorithm 1 (cina.fit_single) against scikit-learn's SVC on the attention kernel, and on data."""

import numpy as np
import pytest
import torch

import cina
from cina.core.balancing import balancing_loss
from cina.core.single import SingleDatasetCInA, fit_single, solve_balancing_svm


def _confounded(n, seed, d=4):
    """x ~ N(0, I); logistic propensity in x0, x1; y = x0 + x1 + x0 x2 + tau(x) t + N(0, 1)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d))
    t = (rng.random(n) < 1 / (1 + np.exp(-(x[:, 0] - 0.5 * x[:, 1])))).astype(float)
    tau = 2.0 + 0.5 * x[:, 0]
    y0 = x[:, 0] + x[:, 1] + x[:, 0] * x[:, 2] + rng.standard_normal(n)
    y = y0 + tau * t
    return x, t, y, tau


def _attention_kernel(keys):
    """Independent numpy: K_ij = exp(s_ij) / (h_i h_j), s = keys keys^T / sqrt(D), in log space."""
    s = keys @ keys.T / np.sqrt(keys.shape[1])
    m = s.max(1, keepdims=True)
    lh = (m + np.log(np.exp(s - m).sum(1, keepdims=True)))[:, 0]
    return np.exp(s - lh[:, None] - lh[None, :])


def _svc_weights(K, t, C):
    from sklearn.svm import SVC

    svc = SVC(kernel="precomputed", C=C, tol=1e-10, shrinking=False).fit(K, t)
    a = np.zeros(len(t))
    a[svc.support_] = np.abs(svc.dual_coef_[0])
    return a


def _normalise(a, t):
    w = a.astype(float).copy()
    for arm in (t == 1, t == 0):
        w[arm] /= w[arm].sum()
    return w


def _ate(w, t, y):
    return w[t == 1] @ y[t == 1] - w[t == 0] @ y[t == 0]


@pytest.mark.parametrize("lam", [0.3, 3.0, 30.0])
def test_frozen_keys_match_sklearn_svc(lam):
    pytest.importorskip("sklearn")
    x, t, y, _ = _confounded(150, seed=0)
    n = len(t)
    # literal lambda: SVC(C = 1/lam); the attention kernel has entries ~1/N^2, so lambda ~ 1/N
    model = SingleDatasetCInA(lam / n**2, balancing="svm", lam_scaling="none", learn_keys=False).fit(x, t)
    K = _attention_kernel(model.keys_)
    a_svc = _svc_weights(K, t, C=n**2 / lam)
    w_svc = _normalise(a_svc, t)
    np.testing.assert_allclose(model.weights_, w_svc, atol=1e-6)
    assert _ate(model.weights_, t, y) == pytest.approx(_ate(w_svc, t, y), rel=1e-3)
    # alpha = lam |dual_coef_|; alpha itself is only determined to ~cond(K) * tol in directions
    # the kernel barely sees (the normalised weights above are the quantity that matters)
    np.testing.assert_allclose(model.alpha_, a_svc * model.lam_, atol=2e-5)
    assert 0 <= model.duality_gap_ < 1e-8  # certificate: attention-form primal == SVM dual


def test_size_scaled_lambda_is_svc_with_C_n_over_lam():
    pytest.importorskip("sklearn")
    x, t, y, _ = _confounded(120, seed=1)
    w = fit_single(x, t, balancing="svm", lam=0.1, learn_keys=False)
    model = SingleDatasetCInA(0.1, balancing="svm", learn_keys=False).fit(x, t)
    assert model.lam_ == pytest.approx(0.1 / 120)
    w_svc = _normalise(_svc_weights(_attention_kernel(model.keys_), t, C=120 / 0.1), t)
    np.testing.assert_allclose(w, w_svc, atol=1e-6)
    assert _ate(w, t, y) == pytest.approx(_ate(w_svc, t, y), rel=1e-3)


def test_gradient_descent_on_the_loss_approaches_the_svm_solution():
    # Pure Algorithm 1 (Adam on the attention loss, no exact solve). Weak duality gives exact
    # bounds: with P*, D* the optimum, P(alpha) - P* <= gap and D* - D(alpha) <= gap.
    x, t, y, _ = _confounded(150, seed=2)
    exact = SingleDatasetCInA(0.1, balancing="svm", learn_keys=False).fit(x, t)
    l1 = {}
    for objective in ("gap", "primal"):
        m = SingleDatasetCInA(0.1, balancing="svm", learn_keys=False, polish=False, max_iter=400, lr=0.1, objective=objective).fit(x, t)
        assert m.loss_ - exact.loss_ <= m.duality_gap_ + 1e-12
        assert exact.dual_objective_ - m.dual_objective_ <= m.duality_gap_ + 1e-12
        assert m.loss_curve_[-1] < m.loss_curve_[0]
        l1[objective] = 0.5 * np.abs(m.weights_ - exact.weights_).sum()
        if objective == "gap":
            assert m.duality_gap_ < 5e-3
            assert abs(_ate(m.weights_, t, y) - _ate(exact.weights_, t, y)) < 0.05
    # the design choice of cina.core.balancing: the gap pins the weights, the primal alone does not
    assert l1["gap"] < 0.05 and l1["gap"] < 0.5 * l1["primal"]


def test_learning_the_keys_lowers_the_optimal_loss():
    # min over keys of min over (V, b) of P: the learned kernel's optimal loss is below the
    # starting kernel's (both computed exactly by the polish).
    x, t, _, _ = _confounded(150, seed=3)
    frozen = SingleDatasetCInA(0.1, balancing="svm", learn_keys=False).fit(x, t)
    learned = SingleDatasetCInA(0.1, balancing="svm", learn_keys=True, max_iter=100).fit(x, t)
    assert learned.loss_ < frozen.loss_ - 1e-3
    assert learned.duality_gap_ < 1e-8
    assert not np.allclose(learned.keys_, frozen.keys_)


def test_att_matches_sklearn_svc_on_the_reduced_problem():
    # ATT = ATE dual with alpha_T = a * 1: the treated arm is one unit with the mean treated
    # feature (kernel entries averaged) and box [0, N_T], i.e. SVC with class_weight {1: N_T}.
    pytest.importorskip("sklearn")
    from sklearn.svm import SVC

    x, t, y, _ = _confounded(150, seed=4)
    tr, co = t == 1, t == 0
    m = SingleDatasetCInA(0.01, balancing="svm", estimand="att", learn_keys=False).fit(x, t)
    assert 0 <= m.duality_gap_ < 1e-8
    np.testing.assert_allclose(m.weights_[tr], 1 / tr.sum())
    assert np.all(m.weights_ >= 0) and m.weights_[co].sum() == pytest.approx(1.0)
    K = _attention_kernel(m.keys_)
    Kr = np.block([[K[np.ix_(tr, tr)].mean() * np.ones((1, 1)), K[np.ix_(tr, co)].mean(0)[None]],
                   [K[np.ix_(tr, co)].mean(0)[:, None], K[np.ix_(co, co)]]])
    yr = np.r_[1, np.zeros(co.sum())]
    svc = SVC(kernel="precomputed", C=1 / m.lam_, class_weight={1: tr.sum()}, tol=1e-10, shrinking=False).fit(Kr, yr)
    ar = np.zeros(len(yr))
    ar[svc.support_] = np.abs(svc.dual_coef_[0]) * m.lam_
    w_svc = ar[1:] / ar[1:].sum()
    np.testing.assert_allclose(m.weights_[co], w_svc, atol=1e-6)
    att_svc = y[tr].mean() - w_svc @ y[co]
    assert m.estimate(y).ate == pytest.approx(att_svc, rel=1e-3)
    assert m.alpha_[tr][0] == pytest.approx(ar[0] / tr.sum(), abs=1e-6)


def test_estimates_remove_confounding_bias():
    # ATE and ATT (default lam) on a confounded simulation with known effects, 10 replications. The naive
    # difference in means is biased by about E[x0 + x1 + x0 x2 | T=1] - E[.. | T=0] + ~0.5 (0.9
    # here); balancing must remove most of it. Tolerance: the mean error over 10 replications has
    # noise SE ~ sqrt(2/ESS)/sqrt(10) < 0.06 for ESS > 60 per arm, so 0.2 is > 3 SE plus a margin
    # for the residual imbalance of a kernel (not exact) balancing.
    err = {"ate": [], "att": [], "naive": []}
    for seed in range(10):
        x, t, y, tau = _confounded(300, seed=100 + seed)
        naive = y[t == 1].mean() - y[t == 0].mean()
        err["naive"].append(naive - tau.mean())
        for est in ("ate", "att"):
            e = SingleDatasetCInA(balancing="svm", estimand=est, learn_keys=False).fit(x, t).estimate(y)
            truth = tau.mean() if est == "ate" else tau[t == 1].mean()
            err[est].append(e.ate - truth)
            assert e.diagnostics["max_abs_smd_after"] < e.diagnostics["max_abs_smd_before"]
            assert e.diagnostics["ess_control"] > 0.1 * e.diagnostics["n_control"]  # not degenerate
    naive_bias = abs(np.mean(err["naive"]))
    assert naive_bias > 0.5
    for est in ("ate", "att"):
        assert abs(np.mean(err[est])) < 0.2, (est, np.mean(err[est]))
        assert abs(np.mean(err[est])) < 0.3 * naive_bias


def test_solver_handles_separable_and_tiny_cases():
    # Two units: alpha = (1, 1) is optimal iff both margins are violated (cf. test_balancing).
    K = np.array([[1.0, 0.2], [0.2, 1.0]])
    alpha, b, _ = solve_balancing_svm(K, np.array([1.0, 0.0]), lam=10.0)
    np.testing.assert_allclose(alpha, [1.0, 1.0])
    # tiny lambda (hard margin) on a well separated kernel: few support vectors, still balanced
    x, t, _, _ = _confounded(80, seed=5)
    m = SingleDatasetCInA(1e-4, balancing="svm", learn_keys=False).fit(x, t)
    assert m.alpha_[t == 1].sum() == pytest.approx(m.alpha_[t == 0].sum(), rel=1e-8)
    assert m.duality_gap_ < 1e-7


def test_interface_and_errors():
    x, t, y, _ = _confounded(60, seed=6)
    m = SingleDatasetCInA(balancing="svm")
    with pytest.raises(RuntimeError, match="fit"):
        m.estimate(y)
    with pytest.raises(ValueError, match="lam"):
        SingleDatasetCInA(balancing="svm", lam=-1).fit(x, t)
    with pytest.raises(ValueError, match="estimand"):
        SingleDatasetCInA(balancing="svm", estimand="atc").fit(x, t)
    with pytest.raises(ValueError, match="lam_scaling"):
        SingleDatasetCInA(balancing="svm", lam_scaling="log").fit(x, t)
    with pytest.raises(ValueError, match="binary"):
        fit_single(x, t + 1, balancing="svm")
    m = SingleDatasetCInA(balancing="svm", key_dim=3, learn_keys=True, max_iter=5).fit(x, t)
    assert m.keys_.shape == (60, 3) and m.weights_.shape == (60,) and m.n_iter_ == 5
    est = m.estimate(y)
    assert isinstance(est, cina.Estimate) and np.isfinite(est.ate)
    with pytest.raises(ValueError, match="y must have shape"):
        m.estimate(y[:10])
    # the loss reported equals cina.core.balancing's on the same inputs
    keys = torch.as_tensor(m.keys_)[None]
    out = balancing_loss(keys, torch.as_tensor(m.alpha_)[None], torch.as_tensor(t)[None], torch.ones(1, 60, dtype=torch.bool), m.lam_)
    assert out["primal"].item() == pytest.approx(m.loss_, rel=1e-10)


def test_target_balancing_is_the_default_and_converges():
    x, t, y, _ = _confounded(150, seed=8)
    early = SingleDatasetCInA().fit(x, t)  # the default: 30 steps from uniform weights
    m = SingleDatasetCInA(max_solver_steps=5000).fit(x, t)
    assert m.balancing == "target" and m.step_change_ < 1e-4 and m.solver_iter_ < 5000
    assert early.solver_iter_ == 30 and early.loss_ > m.loss_ - 1e-12
    # stopped early, the weights sit between uniform (the difference in means) and the optimum
    uniform = np.where(t == 1, 1 / t.sum(), 1 / (1 - t).sum())
    assert np.abs(early.weights_ - uniform).sum() < np.abs(m.weights_ - uniform).sum()
    w = m.weights_
    assert np.all(w >= 0) and np.isclose(w[t == 1].sum(), 1) and np.isclose(w[t == 0].sum(), 1)
    est = m.estimate(y)
    assert est.diagnostics["max_abs_smd_after"] < est.diagnostics["max_abs_smd_before"]
    att = SingleDatasetCInA(estimand="att").fit(x, t)
    np.testing.assert_allclose(att.weights_[t == 1], 1 / t.sum())
    with pytest.raises(ValueError, match="learn_keys"):
        SingleDatasetCInA(learn_keys=True).fit(x, t)
    with pytest.raises(ValueError, match="balancing"):
        SingleDatasetCInA(balancing="entropy").fit(x, t)
    with pytest.raises(ValueError, match="score_scale"):
        SingleDatasetCInA(score_scale=float("inf")).fit(x, t)
    with pytest.raises(ValueError, match="target_tol"):
        SingleDatasetCInA(target_tol=0).fit(x, t)
    with pytest.raises(ValueError, match="max_solver_steps"):
        SingleDatasetCInA(max_solver_steps=0).fit(x, t)
