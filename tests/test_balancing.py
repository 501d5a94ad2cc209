"""cina.core.balancing: loss, read-out, projection, masking and block-wise computation.

Hand-computable cases use keys for which the kernel has a closed form; the rest compare against a
literal float64 numpy transcription of the paper's attention formulas.
"""

import math

import numpy as np
import pytest
import torch

from cina.core import (
    Estimate,
    balance_diagnostics,
    balancing_loss,
    check_dataset,
    dense_kernel,
    kernel_matvec,
    log_normalizer,
    normalize_keys,
    optimal_intercept,
    project_weights,
    read_out_alpha,
    values_from_alpha,
    weighted_effect,
)

f64 = torch.float64


def _t(a, dtype=f64):
    return torch.as_tensor(np.asarray(a), dtype=dtype)


def _paper_forward(keys, alpha, t, lam):
    """Literal float64 numpy: S = K Q^T / sqrt(D), A = softmax(S), V = w alpha / (lam h), o = A V,
    reg = (lam/2) V^T exp(S) V."""
    keys = np.asarray(keys, dtype=np.float64)
    S = keys @ keys.T / math.sqrt(keys.shape[1])
    E = np.exp(S)
    h = E.sum(1)
    w = 2 * np.asarray(t) - 1
    V = w * alpha / (lam * h)
    o = (E / h[:, None]) @ V
    return o, 0.5 * lam * V @ E @ V, h


# --------------------------------------------------------------------------------------------
# hand-computable cases


def test_flat_kernel_balanced_arms():
    # Zero keys: s_ij = 0, h_i = N, K = 1/N^2. Equal arm masses give o = 0 and quad = 0; the
    # breakpoints w_i - o_i are {-1, -1, +1, +1}, the optimal b is 0 and every hinge is 1.
    keys = torch.zeros(1, 4, 2, dtype=f64)
    t = _t([[1, 1, 0, 0]])
    mask = torch.ones(1, 4, dtype=torch.bool)
    out = balancing_loss(keys, _t([[0.5, 0.5, 0.5, 0.5]]), t, mask, lam=0.3)
    assert torch.allclose(out["scores"], torch.zeros(1, 4, dtype=f64))
    assert out["intercept"].item() == 0.0
    assert out["quad"].item() == pytest.approx(0.0, abs=1e-15)
    assert out["primal"].item() == pytest.approx(1.0)  # 4 hinges of 1, / N
    assert out["dual"].item() == pytest.approx(0.5)  # sum alpha / N
    assert out["gap"].item() == pytest.approx(0.5)


def test_flat_kernel_unbalanced_arms():
    # One treated, three controls, alpha = (1 | 1/3, 1/3, 1/3): o = 0, breakpoints {1 | -1,-1,-1},
    # N_T = 1 so b = midpoint of the 1st and 2nd smallest = -1; hinges 2 | 0, 0, 0.
    keys = torch.zeros(1, 4, 3, dtype=f64)
    out = balancing_loss(keys, _t([[1, 1 / 3, 1 / 3, 1 / 3]]), _t([[1, 0, 0, 0]]), torch.ones(1, 4, dtype=torch.bool), lam=1.0)
    assert out["intercept"].item() == pytest.approx(-1.0)
    assert out["hinge"].item() == pytest.approx(2 / 4)
    assert out["primal"].item() == pytest.approx(0.5)


def test_two_units_closed_form():
    # D = 1, keys (1, -1): S = [[1,-1],[-1,1]], h = e + 1/e, K = exp(S) / h^2. With t = (1, 0),
    # alpha = (1, 1), lam = 1: o = (c, -c), c = (e - 1/e) / (e + 1/e)^2; quad = c; b = 0;
    # both margins are 1 - c > 0, so P = 2 - c = D: alpha = (1, 1) is the SVM optimum (gap 0).
    e = math.e
    c = (e - 1 / e) / (e + 1 / e) ** 2
    keys = _t([[[1.0], [-1.0]]])
    out = balancing_loss(keys, _t([[1.0, 1.0]]), _t([[1, 0]]), torch.ones(1, 2, dtype=torch.bool), lam=1.0)
    assert torch.allclose(out["scores"], _t([[c, -c]]))
    assert out["intercept"].item() == pytest.approx(0.0, abs=1e-15)
    assert out["quad"].item() == pytest.approx(c / 2)
    assert out["primal"].item() == pytest.approx((2 - c) / 2)
    assert out["gap"].item() == pytest.approx(0.0, abs=1e-15)
    assert torch.allclose(out["log_h"], torch.full((1, 2), math.log(e + 1 / e), dtype=f64))


def test_matches_literal_attention_formulas_and_read_out():
    rng = np.random.default_rng(0)
    n, D, lam = 30, 4, 0.07
    keys = rng.standard_normal((n, D))
    t = (rng.random(n) < 0.4).astype(float)
    alpha = rng.random(n)
    o, reg, h = _paper_forward(keys, alpha, t, lam)
    mask = torch.ones(1, n, dtype=torch.bool)
    out = balancing_loss(_t(keys[None]), _t(alpha[None]), _t(t[None]), mask, lam, objective="primal")
    a = out["alpha"][0].numpy()  # arms rescaled to equal mass before the loss
    o_a, reg_a, _ = _paper_forward(keys, a, t, lam)
    np.testing.assert_allclose(out["scores"][0].numpy(), o_a, rtol=1e-12)
    assert out["quad"].item() * n == pytest.approx(reg_a, rel=1e-12)
    np.testing.assert_allclose(np.exp(out["log_h"][0].numpy()), h, rtol=1e-12)
    # V -> alpha round trip through the paper's read-out alpha = lam w V h
    V = values_from_alpha(_t(alpha[None]), _t(t[None]), mask, lam, out["log_h"])
    np.testing.assert_allclose(V[0].numpy(), (2 * t - 1) * alpha / (lam * h), rtol=1e-12)
    np.testing.assert_allclose(read_out_alpha(V, _t(t[None]), mask, lam, out["log_h"])[0].numpy(), alpha, rtol=1e-12)
    # the equal-mass rescaling keeps each arm's normalised weights
    for arm in (t == 1, t == 0):
        np.testing.assert_allclose(a[arm] / a[arm].sum(), alpha[arm] / alpha[arm].sum(), rtol=1e-12)
    assert a[t == 1].sum() == pytest.approx(a[t == 0].sum())


def test_optimal_intercept_is_argmin():
    rng = np.random.default_rng(1)
    B, n = 5, 23
    scores = _t(rng.standard_normal((B, n)))
    t = _t((rng.random((B, n)) < 0.3).astype(float))
    t[:, 0], t[:, 1] = 1, 0
    mask = torch.ones(B, n, dtype=torch.bool)
    mask[:, -4:] = False  # padding must not move b
    b = optimal_intercept(scores, t, mask)
    w = 2 * t - 1
    grid = torch.linspace(-6, 6, 24001, dtype=f64)

    def obj(bb):
        m = torch.relu(1 - w.unsqueeze(-1) * (scores.unsqueeze(-1) + bb))
        return (m * mask.unsqueeze(-1)).sum(1)

    best = obj(grid).min(-1).values
    assert torch.all(obj(b.view(B, 1, 1)).squeeze(-1) <= best + 1e-12)
    # ATT: the treated decision values are replaced by their mean (N_T equal hinge terms)
    b_att = optimal_intercept(scores, t, mask, "att")
    treated = (t > 0.5) & mask
    mean_t = (scores * treated).sum(1, keepdim=True) / treated.sum(1, keepdim=True)
    scores = torch.where(treated, mean_t, scores)
    best = obj(grid).min(-1).values
    assert torch.all(obj(b_att.view(B, 1, 1)).squeeze(-1) <= best + 1e-12)


def test_project_weights_hand_case():
    alpha = _t([[0.5, -0.2, 0.3, 0.2, 0.0, 0.6, 9.0]])
    t = _t([[1, 1, 1, 0, 0, 0, 1]])
    mask = torch.tensor([[True] * 6 + [False]])
    w = project_weights(alpha, t, mask)
    np.testing.assert_allclose(w[0].numpy(), [0.625, 0, 0.375, 0.25, 0, 0.75, 0])
    # ATT: treated uniform, controls normalised
    w = project_weights(alpha, t, mask, "att")
    np.testing.assert_allclose(w[0].numpy(), [1 / 3, 1 / 3, 1 / 3, 0.25, 0, 0.75, 0])
    # an all-zero arm falls back to uniform weights
    w = project_weights(_t([[0.0, 0.0, 0.4, 0.1]]), _t([[1, 1, 0, 0]]), torch.ones(1, 4, dtype=torch.bool))
    np.testing.assert_allclose(w[0].numpy(), [0.5, 0.5, 0.8, 0.2])
    y = _t([[1.0, 3.0, 2.0, 10.0]])
    assert weighted_effect(w, _t([[1, 1, 0, 0]]), y, torch.ones(1, 4, dtype=torch.bool)).item() == pytest.approx(2.0 - 3.6)


def test_balance_diagnostics_hand_case():
    # x = (0, 2 | 0, 0, 3): treated mean 1, control mean 1 -> SMD before 0; the SMD's
    # denominator is the SD of the pooled sample: mean 1, var (1 + 1 + 1 + 1 + 4) / 5 = 1.6.
    x = _t([[[0.0], [2.0], [0.0], [0.0], [3.0]]])
    t = _t([[1, 1, 0, 0, 0]])
    mask = torch.ones(1, 5, dtype=torch.bool)
    w = _t([[0.5, 0.5, 0.5, 0.5, 0.0]])  # controls: mean 0 after weighting
    d = balance_diagnostics(x, t, w, mask)
    assert d["smd_before"].item() == pytest.approx(0.0)
    assert d["smd_after"].item() == pytest.approx(1.0 / math.sqrt(1.6))
    # the same in units of 1e-30 and 1e30 (SMDs are scale-free and nothing under/overflows)
    for factor in (1e-30, 1e30):
        assert balance_diagnostics(x.double() * factor, t, w, mask)["smd_after"].item() == pytest.approx(1.0 / math.sqrt(1.6))
    assert d["ess_treated"].item() == pytest.approx(2.0)
    assert d["ess_control"].item() == pytest.approx(2.0)
    assert d["top1_share"].item() == pytest.approx(0.25)  # ceil(0.05) = 1 unit holds 0.5 of 2
    # padded features are reported as 0
    d = balance_diagnostics(torch.cat([x, x], -1), t, w, mask, torch.tensor([[True, False]]))
    assert d["smd_after"][0, 1].item() == 0.0


# --------------------------------------------------------------------------------------------
# block-wise == dense, masking, stability


def _random_batch(seed, B=3, n=37, D=5, pad=6):
    g = torch.Generator().manual_seed(seed)
    keys = torch.randn(B, n, D, generator=g, dtype=f64)
    alpha = torch.rand(B, n, generator=g, dtype=f64)
    t = (torch.rand(B, n, generator=g) < 0.45).to(f64)
    t[:, 0], t[:, 1] = 1, 0
    mask = torch.ones(B, n, dtype=torch.bool)
    if B == 3 and pad:
        mask[1, n - pad :] = False
        mask[2, n - 2 * pad :] = False
    return keys, alpha, t, mask


def test_blockwise_equals_dense_values_and_gradients():
    keys, alpha, t, mask = _random_batch(0)
    keys = normalize_keys(keys, mask)
    K = dense_kernel(keys, mask)
    u = torch.randn(alpha.shape, dtype=f64)
    ref = torch.einsum("bij,bj->bi", K, torch.where(mask, u, 0))
    for bs in (1, 4, 16, 37, 1000):
        np.testing.assert_allclose(kernel_matvec(keys, u, mask, block_size=bs).numpy(), ref.numpy(), rtol=1e-12, atol=1e-15)
        lh = log_normalizer(keys, mask, bs)
        assert torch.all(lh[~mask] == 0)
    # gradients through the checkpointed blocks equal the single-block ones
    grads = []
    for bs in (5, 1000):
        k = keys.clone().requires_grad_(True)
        a = alpha.clone().requires_grad_(True)
        out = balancing_loss(k, a, t, mask, lam=0.05, block_size=bs)
        out["loss"].sum().backward()
        grads.append((out["loss"].detach(), k.grad, a.grad))
    for x1, x2 in zip(*grads):
        np.testing.assert_allclose(x1.numpy(), x2.numpy(), rtol=1e-10, atol=1e-14)


def test_padding_changes_nothing():
    # The same dataset alone and padded with garbage units (random keys, alpha, t, NaN-free) must
    # give identical loss terms, scores on real units and intercept.
    keys, alpha, t, mask = _random_batch(1, B=1, pad=0)
    n = keys.shape[1]
    g = torch.Generator().manual_seed(9)
    keys_p = torch.cat([keys, 50 * torch.randn(1, 11, keys.shape[2], generator=g, dtype=f64)], 1)
    alpha_p = torch.cat([alpha, torch.rand(1, 11, generator=g, dtype=f64)], 1)
    t_p = torch.cat([t, torch.ones(1, 11, dtype=f64)], 1)
    mask_p = torch.cat([mask, torch.zeros(1, 11, dtype=torch.bool)], 1)
    a = balancing_loss(normalize_keys(keys, mask), alpha, t, mask, 0.1)
    b = balancing_loss(normalize_keys(keys_p, mask_p), alpha_p, t_p, mask_p, 0.1, block_size=7)
    for k in ("loss", "primal", "dual", "gap", "intercept"):
        np.testing.assert_allclose(a[k].numpy(), b[k].numpy(), rtol=1e-12)
    np.testing.assert_allclose(a["scores"].numpy(), b["scores"][:, :n].numpy(), rtol=1e-12, atol=1e-15)
    assert torch.all(b["scores"][:, n:] == 0) and torch.all(b["alpha"][:, n:] == 0)
    pa = project_weights(alpha, t, mask)
    pb = project_weights(alpha_p, t_p, mask_p)
    np.testing.assert_allclose(pa.numpy(), pb[:, :n].numpy(), rtol=1e-12)


def test_log_space_is_stable_for_large_scores():
    # Scores up to ~400: exp(S) overflows float32 (and float64 at 710), the log-space form does not.
    keys, alpha, t, mask = _random_batch(2)
    big = 20 * normalize_keys(keys, mask)
    out64 = balancing_loss(big, alpha, t, mask, 0.01)
    out32 = balancing_loss(big.float(), alpha.float(), t.float(), mask, 0.01)
    for k in ("loss", "gap"):
        assert torch.all(torch.isfinite(out32[k]))
        np.testing.assert_allclose(out32[k].numpy(), out64[k].numpy(), rtol=2e-3, atol=1e-4)


def test_att_loss_treated_share_one_weight():
    keys, alpha, t, mask = _random_batch(3)
    out = balancing_loss(keys, alpha, t, mask, 0.1, estimand="att")
    a, treated, control = out["alpha"], (t > 0.5) & mask, (t < 0.5) & mask
    for i in range(3):
        at = a[i][treated[i]]
        assert torch.allclose(at, at[0].expand_as(at))  # alpha_T = a * 1
        assert a[i][treated[i]].sum().item() == pytest.approx(a[i][control[i]].sum().item())
    # the treated arm enters the hinge through its mean decision value: N_T [1 - (mean o + b)]_+
    o, b = out["scores"], out["intercept"].unsqueeze(1)
    mean_t = (o * treated).sum(1, keepdim=True) / treated.sum(1, keepdim=True)
    hinge = treated.sum(1) * torch.relu(1 - (mean_t + b))[:, 0] + (torch.relu(1 + o + b) * control).sum(1)
    np.testing.assert_allclose(out["hinge"].numpy(), (hinge / mask.sum(-1)).numpy(), rtol=1e-12)
    # a mixed batch equals the two single-estimand batches
    flags = torch.tensor([True, False, True])
    mixed = balancing_loss(keys, alpha, t, mask, 0.1, estimand=flags)
    ate = balancing_loss(keys, alpha, t, mask, 0.1, estimand="ate")
    np.testing.assert_allclose(mixed["loss"].numpy(), torch.where(flags, out["loss"], ate["loss"]).numpy())


def test_relative_mode_uses_the_dual_optimal_scale():
    # relative=True: alpha = m* rho maximises D(m rho) = m 1^T rho - m^2 q / (2 lam) over m subject
    # to m max(rho) <= 1, i.e. m* = min(lam 1^T rho / q, 1 / max rho).
    keys, alpha, t, mask = _random_batch(6)
    for lam in (1e-4, 0.05, 50.0):  # interior optimum, and the box cap binding
        out = balancing_loss(keys, alpha, t, mask, lam, relative=True)
        a = out["alpha"]
        assert torch.all(a <= 1 + 1e-12) and torch.all(a >= 0)
        for c in (0.9, 1.1):
            scaled = balancing_loss(keys, (c * a).clamp(max=1.0), t, mask, lam)
            feasible = torch.all((c * a) <= 1, dim=-1)
            assert torch.all(~feasible | (scaled["dual"] <= out["dual"] + 1e-12))
        w = project_weights(a, t, mask)
        np.testing.assert_allclose(w.numpy(), project_weights(alpha, t, mask).numpy(), rtol=1e-10)
    assert torch.allclose(out["alpha"].amax(-1), torch.ones(3, dtype=f64))  # lam = 50: capped


def test_gap_objective_gradients():
    # "gap": alpha-gradient of P - D, key-gradient of P only; value P - D.
    keys, alpha, t, mask = _random_batch(4)
    grads = {}
    for obj in ("gap", "primal"):
        k = keys.clone().requires_grad_(True)
        a = alpha.clone().requires_grad_(True)
        out = balancing_loss(k, a, t, mask, 0.1, objective=obj)
        out["loss"].sum().backward()
        grads[obj] = (out, k.grad, a.grad)
    np.testing.assert_allclose(grads["gap"][0]["loss"].detach().numpy(), grads["gap"][0]["gap"].detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(grads["gap"][1].numpy(), grads["primal"][1].numpy(), rtol=1e-10, atol=1e-14)
    # explicit P - D in alpha
    k = keys.clone()
    a = alpha.clone().requires_grad_(True)
    out = balancing_loss(k, a, t, mask, 0.1, objective="primal")
    (out["primal"] - out["dual"]).sum().backward()
    np.testing.assert_allclose(grads["gap"][2].numpy(), a.grad.numpy(), rtol=1e-10, atol=1e-14)


def test_normalize_keys():
    keys, _, _, mask = _random_batch(5)
    k = normalize_keys(3 * keys + 7, mask)
    m = mask.unsqueeze(-1).to(f64)
    n = m.sum(1)
    np.testing.assert_allclose(((k * m).sum(1) / n).numpy(), 0, atol=1e-12)
    np.testing.assert_allclose((k.square().sum((1, 2)) / (n[:, 0] * k.shape[-1])).numpy(), 1, rtol=1e-5)
    assert torch.all(k[~mask] == 0)
    np.testing.assert_allclose(k.numpy(), normalize_keys(keys, mask).numpy(), rtol=1e-5, atol=1e-8)  # affine invariant


def test_check_dataset_errors():
    x = np.zeros((5, 2))
    with pytest.raises(ValueError, match="binary"):
        check_dataset(x, [0, 1, 2, 0, 1])
    with pytest.raises(ValueError, match="both arms"):
        check_dataset(x, [1, 1, 1, 1, 1])
    with pytest.raises(ValueError, match="NaN"):
        check_dataset(np.full((5, 2), np.nan), [0, 1, 0, 1, 0])
    with pytest.raises(ValueError, match="shape"):
        check_dataset(x, [0, 1, 0])
    with pytest.raises(ValueError, match="y contains"):
        check_dataset(x, [0, 1, 0, 1, 0], [0, 0, np.inf, 0, 0])
    xx, tt, yy = check_dataset(x[:, 0], [True, False, True, False, True], [1, 2, 3, 4, 5])
    assert xx.shape == (5, 1) and tt.dtype == np.float64 and yy.shape == (5,)
    assert Estimate(1.0, np.ones(2)).estimand == "ate"
