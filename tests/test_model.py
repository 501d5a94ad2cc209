"""cina.CInA: batch contract, masking invariance, permutation equivariance, checkpoints, memory."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

import cina
from cina import CInA, CInAConfig, collate_datasets

# The SVM layer (the paper's); target balancing has its own tests in test_target_balancing.py
SMALL = dict(max_features=8, d_model=32, n_heads=4, n_layers=2, n_value_layers=1, key_dim=8, balancing="svm")


def _model(seed=0, **kw):
    torch.manual_seed(seed)
    m = CInA(**{**SMALL, **kw})
    # value_proj starts at zero (uniform weights); perturb it so tests see non-trivial weights
    with torch.no_grad():
        m.balance.value_proj.weight.normal_(0, 0.5)
    return m.eval()


def _datasets(sizes, seed=0):
    rng = np.random.default_rng(seed)
    xs, ts, ys = [], [], []
    for n, d in sizes:
        x = rng.standard_normal((n, d))
        t = (rng.random(n) < 1 / (1 + np.exp(-x[:, 0]))).astype(float)
        t[:2] = [1, 0]
        xs.append(x)
        ts.append(t)
        ys.append(x[:, 0] + t + rng.standard_normal(n))
    return xs, ts, ys


@pytest.mark.parametrize("kernel,alpha_scale,trunk", [("covariates", "optimal", "full"), ("learned", "optimal", "full"),
                                                      ("covariates", "free", "full"), ("learned", "free", "induced")])
def test_forward_backward_and_outputs(kernel, alpha_scale, trunk):
    m = _model(kernel=kernel, alpha_scale=alpha_scale, trunk_attention=trunk, n_inducing=4).train()
    xs, ts, ys = _datasets([(40, 3), (55, 5), (30, 8)])
    batch = collate_datasets(xs, ts, ys)
    batch["ate"] = torch.ones(3)
    out = m(batch)
    B, N = 3, 55
    assert out["alpha"].shape == (B, N) and out["weights"].shape == (B, N) and out["keys"].shape == (B, N, 8)
    assert out["ate"].shape == (B,) and out["gap"].shape == (B,) and out["loss"].ndim == 0
    assert torch.all(out["gap"] >= -1e-6)  # weak duality
    w, t, um = out["weights"], batch["t"], batch["unit_mask"]
    for arm in (t > 0.5, t < 0.5):
        np.testing.assert_allclose((w * (arm & um)).sum(1).detach().numpy(), 1.0, rtol=1e-5)
    assert torch.all(w[~um] == 0)
    out["loss"].backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert m.loss(batch).ndim == 0


@pytest.mark.parametrize("kernel,trunk", [("covariates", "full"), ("learned", "full"), ("learned", "induced")])
def test_padding_units_and_features_changes_nothing(kernel, trunk):
    m = _model(1, kernel=kernel, trunk_attention=trunk, n_inducing=4)
    xs, ts, ys = _datasets([(40, 3)], seed=1)
    alone = m(collate_datasets(xs, ts, ys))
    # same dataset next to a larger one (so it gets padded units) with junk in the padding, and
    # with extra masked feature columns in front of and behind the real ones
    xs2, ts2, ys2 = _datasets([(70, 6)], seed=2)
    batch = collate_datasets([xs[0], xs2[0]], [ts[0], ts2[0]], [ys[0], ys2[0]])
    x = torch.cat([torch.randn(2, 70, 1) * 100, batch["x"], torch.randn(2, 70, 1) * 100], -1)
    fm = torch.cat([torch.zeros(2, 1, dtype=torch.bool), batch["feature_mask"], torch.zeros(2, 1, dtype=torch.bool)], -1)
    batch["x"], batch["feature_mask"] = x, fm
    batch["x"][0, 40:] = 1e6  # junk units
    batch["t"][0, 40:] = 1.0
    batch["y"][0, 40:] = -1e6
    padded = m(batch)
    np.testing.assert_allclose(padded["alpha"][0, :40].detach().numpy(), alone["alpha"][0].detach().numpy(), rtol=1e-4, atol=1e-6)
    for k in ("ate", "gap", "primal", "dual"):
        np.testing.assert_allclose(padded[k][0].item(), alone[k][0].item(), rtol=1e-4, atol=1e-6)
    assert torch.all(padded["weights"][0, 40:] == 0)


@pytest.mark.parametrize("kernel,trunk", [("covariates", "full"), ("learned", "full"), ("learned", "induced")])
def test_permutation_equivariance(kernel, trunk):
    m = _model(2, kernel=kernel, trunk_attention=trunk, n_inducing=4)
    xs, ts, ys = _datasets([(60, 4)], seed=3)
    perm = np.random.default_rng(0).permutation(60)
    a = m(collate_datasets(xs, ts, ys))
    b = m(collate_datasets([xs[0][perm]], [ts[0][perm]], [ys[0][perm]]))
    np.testing.assert_allclose(b["weights"][0].detach().numpy(), a["weights"][0, perm].detach().numpy(), rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(b["ate"].item(), a["ate"].item(), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(b["gap"].item(), a["gap"].item(), rtol=1e-4, atol=1e-6)
    assert not torch.allclose(a["weights"][0], a["weights"][0].mean().expand(60))  # non-trivial


def test_fixed_kernel_is_algorithm_1_kernel():
    # kernel="covariates": the balancing attention uses exactly Algorithm 1's frozen-key kernel, so
    # Algorithm 1's exact SVM weights have (near) zero duality gap under the model's loss.
    from cina.core import balancing_loss, dense_kernel
    from cina.core.single import SingleDatasetCInA

    m = _model(11)
    xs, ts, ys = _datasets([(60, 5)], seed=13)
    batch = collate_datasets(xs, ts, ys)
    keys = m(batch)["keys"]
    alg1 = SingleDatasetCInA(balancing="svm").fit(xs[0], ts[0])
    mask = batch["unit_mask"]
    K_model = dense_kernel(keys.double(), mask)[0].numpy()
    K_alg1 = dense_kernel(torch.as_tensor(alg1.keys_)[None], mask)[0].numpy()
    np.testing.assert_allclose(K_model, K_alg1, rtol=1e-4, atol=1e-10)
    out = balancing_loss(keys.double(), torch.as_tensor(alg1.alpha_)[None], batch["t"].double(), mask, alg1.lam_)
    assert abs(out["gap"].item()) < 1e-6


def test_estimate_batched_equals_one_by_one():
    m = _model(3)
    xs, ts, ys = _datasets([(50, 3), (80, 5), (35, 2)], seed=4)
    many = m.estimate(xs, ts, ys)
    for i, e in enumerate(many):
        one = m.estimate(xs[i], ts[i], ys[i])
        assert isinstance(one, cina.Estimate)
        assert e.ate == pytest.approx(one.ate, rel=1e-4, abs=1e-6)
        np.testing.assert_allclose(e.weights, one.weights, rtol=1e-4, atol=1e-7)
        assert e.weights.shape == (len(ts[i]),)
        assert e.weights[ts[i] == 1].sum() == pytest.approx(1) and e.weights[ts[i] == 0].sum() == pytest.approx(1)
        d = e.diagnostics
        assert d["smd_before"].shape == (xs[i].shape[1],) and d["n_treated"] == ts[i].sum()
        assert 1 <= d["ess_treated"] <= d["n_treated"] + 1e-6 and 0 < d["top1_share"] <= 1
        assert d["duality_gap"] >= -1e-6
    chunked = m.estimate(xs, ts, ys, batch_size=2)
    assert [c.ate for c in chunked] == pytest.approx([e.ate for e in many], rel=1e-4)
    no_y = m.estimate(xs[0], ts[0])
    assert np.isnan(no_y.ate) and np.allclose(no_y.weights, many[0].weights, atol=1e-6)
    fast = m.estimate(xs[0], ts[0], ys[0], compute_loss=False)
    assert fast.ate == pytest.approx(many[0].ate, rel=1e-5) and "duality_gap" not in fast.diagnostics


def test_estimate_errors_name_the_problem():
    m = _model(4)
    xs, ts, ys = _datasets([(30, 3)], seed=5)
    with pytest.raises(ValueError, match="binary"):
        m.estimate(xs[0], ts[0] * 2, ys[0])
    with pytest.raises(ValueError, match="dataset 1: .*NaN"):
        m.estimate([xs[0], np.full((30, 3), np.nan)], [ts[0], ts[0]], [ys[0], ys[0]])
    with pytest.raises(ValueError, match="estimands"):
        m.estimate(xs[0], ts[0], ys[0], estimand="att")
    with pytest.raises(ValueError, match="at most 8"):
        m.estimate(np.random.default_rng(0).standard_normal((30, 9)), ts[0], ys[0])
    with pytest.raises(ValueError, match=r"every covariate is constant \(column 0, column 1, column 2\)"):
        m.estimate(np.zeros((30, 3)), ts[0], ys[0])
    with pytest.raises(ValueError, match="lam"):
        m.estimate(xs[0], ts[0], ys[0], lam=0.5)
    batch = collate_datasets(xs, [np.ones(30)], ys)
    with pytest.raises(ValueError, match="empty treatment arm"):
        m(batch)
    with pytest.raises(ValueError, match="n_heads"):
        CInAConfig(d_model=30, n_heads=4)
    with pytest.raises(ValueError, match="lam_range"):
        CInAConfig(lam=1.0, lam_range=(0.01, 0.1))
    with pytest.raises(ValueError, match="trunk_attention"):
        CInAConfig(trunk_attention="linear")
    with pytest.raises(ValueError, match="n_inducing"):
        CInAConfig(trunk_attention="induced", n_inducing=0)
    with pytest.raises(ValueError, match="activation must be one of .*'relu'"):
        CInAConfig(activation="relu")


def test_checkpoint_round_trip(tmp_path):
    m = _model(5, lam_range=(1e-4, 1e-2), estimands=("ate", "att"), supervised_weight=0.5)
    xs, ts, ys = _datasets([(45, 4), (30, 2)], seed=6)
    ref = m.estimate(xs, ts, ys, estimand="att", lam=3e-4)
    m.save(tmp_path / "run")
    cfg = json.loads((tmp_path / "run" / "config.json").read_text())
    assert cfg["format"] == "cina.CInA" and cfg["config"]["lam_range"] == [1e-4, 1e-2]
    loaded = CInA.load(tmp_path / "run")
    assert loaded.config == m.config and not loaded.training
    for a, b in zip(ref, loaded.estimate(xs, ts, ys, estimand="att", lam=3e-4)):
        assert a.ate == b.ate and np.array_equal(a.weights, b.weights)
    # a lone .safetensors file carries its config in the metadata
    f = m.save(tmp_path / "ckpt.safetensors")
    (tmp_path / "ckpt.json").unlink()
    again = CInA.load(f)
    assert all(torch.equal(p, q) for p, q in zip(m.state_dict().values(), again.state_dict().values()))
    with pytest.raises(FileNotFoundError):
        CInA.load(tmp_path / "missing")
    bad = tmp_path / "bad"
    m.save(bad)
    (bad / "config.json").write_text(json.dumps({"format": "other", "format_version": 1, "config": {}}))
    with pytest.raises(ValueError, match="cina.CInA"):
        CInA.load(bad)


def test_lam_conditioning_and_att():
    m = _model(6, lam_range=(1e-4, 1e-2), estimands=("ate", "att"))
    xs, ts, ys = _datasets([(50, 3)], seed=7)
    with torch.no_grad():
        m.lam_embed.weight.normal_(0, 1.0)
    lo = m.estimate(xs[0], ts[0], ys[0], lam=1e-4)
    hi = m.estimate(xs[0], ts[0], ys[0], lam=1e-2)
    assert not np.allclose(lo.weights, hi.weights)
    with pytest.raises(ValueError, match="outside"):
        m.estimate(xs[0], ts[0], ys[0], lam=1.0)
    att = m.estimate(xs[0], ts[0], ys[0], estimand="att")
    np.testing.assert_allclose(att.weights[ts[0] == 1], 1 / ts[0].sum(), rtol=1e-6)
    assert att.estimand == "att"
    # training mode: lam and estimand are drawn per dataset
    m.train()
    batch = collate_datasets(*_datasets([(30, 3)] * 6, seed=8))
    out = m(batch)
    assert out["lam"].unique().numel() == 6 and torch.all((out["lam"] >= 1e-4) & (out["lam"] <= 1e-2))


def test_supervised_loss():
    m = _model(7, supervised_weight=2.0)
    xs, ts, ys = _datasets([(40, 3), (40, 3)], seed=9)
    batch = collate_datasets(xs, ts, ys)
    out = m(batch)
    assert out["loss_supervised"].item() == 0.0  # no ground truth in the batch
    batch["ate"] = out["ate"].detach().clone()
    batch["ate"][1] += 2 * float(np.std(ys[1]))  # two SDs off on one of two datasets
    out = m(batch)
    assert out["loss_supervised"].item() == pytest.approx(4.0 / 2, rel=1e-4)
    assert out["loss"].item() == pytest.approx(out["loss_balance"].item() + 2.0 * 2.0, rel=1e-4)
    batch["y_scale"] = torch.tensor([2.0, 3.0])
    out = m(batch)
    np.testing.assert_allclose(out["ate_original"].detach().numpy(), out["ate"].detach().numpy() * [2, 3], rtol=1e-6)


def test_balance_weight_scales_the_balancing_term():
    """balance_weight=0 trains on the supervised loss alone (the shipped model's recipe); the
    balancing objective is still reported, and the weights do not depend on the loss weights."""
    xs, ts, ys = _datasets([(40, 3), (35, 3)], seed=21)
    batch = collate_datasets(xs, ts, ys)
    batch["ate"] = torch.tensor([0.3, -0.2])
    full = _model(7, supervised_weight=2.0)(batch)
    half = _model(7, supervised_weight=2.0, balance_weight=0.5)(batch)
    none = _model(7, supervised_weight=2.0, balance_weight=0.0)(batch)
    torch.testing.assert_close(none["weights"], full["weights"])
    assert none["loss_balance"].item() == pytest.approx(full["loss_balance"].item())
    sup = 2.0 * full["loss_supervised"].item()
    assert sup > 0
    assert half["loss"].item() == pytest.approx(0.5 * full["loss_balance"].item() + sup, rel=1e-5)
    assert none["loss"].item() == pytest.approx(sup, rel=1e-5)
    with pytest.raises(ValueError, match="balance_weight must be >= 0"):
        CInAConfig(balance_weight=-1.0)
    with pytest.raises(ValueError, match="nothing to train"):
        CInAConfig(balance_weight=0.0)


def test_distillation_loss():
    m = _model(12, distill_weight=3.0)
    xs, ts, ys = _datasets([(40, 3), (30, 3)], seed=14)
    batch = collate_datasets(xs, ts, ys)
    own = m(batch)
    assert own["loss_distill"].item() == 0.0  # no target in the batch
    batch["alpha_star"] = own["alpha"].detach() * 7.0  # any scale: normalised per arm
    batch["alpha_star"][1] = float("nan")  # no target for dataset 1
    out = m(batch)
    assert out["loss_distill"].item() == pytest.approx(0.0, abs=1e-6)
    target = torch.zeros_like(own["alpha"])
    target[0, 0], target[0, 1] = 1.0, 1.0  # one treated and one control unit carry all weight
    batch["alpha_star"][0] = target[0]
    out = m(batch)
    w = own["weights"][0].detach()
    expect = 0.5 * (w - target[0]).abs().sum().item()  # the target is already normalised per arm
    assert out["loss_distill"].item() == pytest.approx(expect, rel=1e-5)
    assert out["loss"].item() == pytest.approx(out["loss_balance"].item() + 3.0 * expect, rel=1e-5)
    out["loss"].backward()
    assert m.balance.value_proj.weight.grad.abs().sum() > 0


def test_a_few_steps_lower_the_duality_gap():
    # The self-supervised loss trains the weights towards the SVM solution (gap -> 0).
    torch.manual_seed(0)
    m = CInA(**SMALL)
    batch = collate_datasets(*_datasets([(48, 3), (64, 4), (40, 2), (56, 5)], seed=10))
    opt = torch.optim.AdamW(m.parameters(), lr=3e-3)
    m.train()
    first = m(batch)["gap"].mean().item()
    for _ in range(30):
        opt.zero_grad()
        m.loss(batch).backward()
        opt.step()
    m.eval()
    assert m(batch)["gap"].mean().item() < first - 0.01


def test_feature_shuffle_only_in_training():
    m = _model(8)
    xs, ts, ys = _datasets([(40, 5)], seed=11)
    batch = collate_datasets(xs, ts, ys)
    a, b = m(batch)["weights"], m(batch)["weights"]
    assert torch.equal(a, b)  # eval: deterministic
    m.train()
    torch.manual_seed(0)
    c = m(batch, compute_loss=False)["weights"]
    assert not torch.allclose(a, c)


def test_bf16_autocast_matches_fp32():
    m = _model(9)
    batch = collate_datasets(*_datasets([(64, 4), (50, 3)], seed=12))
    ref = m(batch)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = m(batch)
    assert out["loss"].dtype == torch.float32 and out["gap"].dtype == torch.float32
    np.testing.assert_allclose(out["ate"].detach().numpy(), ref["ate"].detach().numpy(), atol=0.05)
    np.testing.assert_allclose(out["loss"].item(), ref["loss"].item(), rtol=0.05)


_BIG = textwrap.dedent(
    """
    import resource, sys, numpy as np, torch
    sys.path.insert(0, sys.argv[1])
    from cina import CInA
    torch.set_num_threads(2)
    torch.manual_seed(0)
    # tiny widths: this test is about memory; time is dominated by the N^2 exp() calls
    # sys.argv[2]: the balancing layer; target balancing with 2 unrolled steps (each step is
    # one more N^2 pass; the memory is the same for any number)
    m = CInA(max_features=8, d_model=8, n_heads=1, n_layers=1, n_value_layers=0, key_dim=4,
             balancing=sys.argv[2], refine_steps=2).eval()
    n = 20_000
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, 5)); t = (rng.random(n) < 0.3).astype(float); y = x[:, 0] + t
    m.estimate(x[:200], t[:200], y[:200])  # warm up allocators and kernels
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    e = m.estimate(x, t, y)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert np.isfinite(e.ate) and np.isfinite(e.diagnostics["balancing_loss"]), e
    print((after - before) / 1024)
    """
)


@pytest.mark.parametrize("balancing", ["svm", "target"])
def test_20k_units_in_bounded_memory(balancing):
    # One N x N float32 matrix at N = 20,000 is 1.6 GB; the whole forward pass (trunk, balancing
    # loss, diagnostics) must stay far below one.
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    res = subprocess.run([sys.executable, "-c", _BIG, root, balancing], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    peak_growth_mb = float(res.stdout.strip().splitlines()[-1])
    assert peak_growth_mb < 500, peak_growth_mb
