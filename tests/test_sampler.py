"""Statistical and structural tests of the task sampler (fixed seeds, tolerances from the maths)."""

import json
import subprocess
import sys

import networkx as nx
import numpy as np
import pytest

from causalgen import Role, load_config, sample_task, sample_tasks
from causalgen.prior.config import GraphConfig, RoleConfig, TaskConfig
from causalgen.prior.graph import reachability
from causalgen.prior.sampler import SamplingError


def fixed_config(edges, treatment="T", outcome="Y", **overrides) -> TaskConfig:
    g = nx.DiGraph(edges)
    cfg = TaskConfig(
        name="fixed-test",
        graph=GraphConfig.from_networkx(g),
        roles=RoleConfig(treatment=treatment, outcome=outcome, min_covariates=0),
    )
    cfg.mechanism.families = {"linear": 1.0}
    cfg.treatment.score_mechanism = {"linear": 1.0}
    cfg.noise.families = {"gaussian": 1.0}
    cfg.noise.heteroscedastic_prob = 0.0
    cfg.noise.nonadditive_prob = 0.0
    d = cfg.to_dict()
    for key, value in overrides.items():
        node = d
        parts = key.split(".")
        for p in parts[:-1]:
            node = node[p]
        node[parts[-1]] = value
    return TaskConfig.from_dict(d)


# ------------------------------------------------------------------ invariants


@pytest.mark.parametrize("preset", ["default", "er5000-linear", "er5000-nonlinear", "setoguchi-G-shift"])
def test_batched_equals_single_and_order_free(preset):
    seeds = list(range(12))
    batch = sample_tasks(preset, seeds)
    reversed_batch = sample_tasks(preset, seeds[::-1])[::-1]
    for s, a, b in zip(seeds, batch, reversed_batch):
        single = sample_task(preset, s)
        assert a.equals(single), f"seed {s}: batched != single"
        assert a.equals(b), f"seed {s}: depends on batch order"


def test_task_invariants_default_prior():
    tasks = sample_tasks("default", range(60))
    for task in tasks:
        n, d = task.x.shape
        assert task.x.dtype == np.float32 and task.y.dtype == np.float32
        assert task.t.shape == task.y.shape == task.y0.shape == task.propensity.shape == (n,)
        assert set(np.unique(task.t)) <= {0, 1}
        np.testing.assert_array_equal(task.y, np.where(task.t == 1, task.y1, task.y0))
        assert np.isclose(task.sate, np.mean(task.y1.astype(np.float64) - task.y0), rtol=0, atol=1e-9)
        treated = task.t == 1
        assert np.isclose(task.att, np.mean(task.y1[treated].astype(np.float64) - task.y0[treated]), atol=1e-9)
        # DAG in topological order
        assert not np.tril(task.adjacency).any()
        reach = reachability(task.adjacency)
        tn, yn = task.treatment_node, task.outcome_node
        post = reach[tn]
        # post-treatment nodes are never columns of x, and labelled as such
        assert not post[task.covariate_nodes].any()
        assert tn not in task.covariate_nodes and yn not in task.covariate_nodes
        roles = task.roles
        assert np.all(np.isin(roles[post & ~(np.arange(task.n_nodes) == yn)], [Role.MEDIATOR, Role.POST_TREATMENT]))
        mediators = np.flatnonzero(roles == Role.MEDIATOR)
        assert all(post[m] and reach[m, yn] for m in mediators)
        hidden = roles == Role.HIDDEN_CONFOUNDER
        assert not np.isin(np.flatnonzero(hidden), task.covariate_nodes).any()
        observed = np.isin(roles, [Role.COVARIATE, Role.INSTRUMENT])
        np.testing.assert_array_equal(np.flatnonzero(observed), task.covariate_nodes)
        assert 0.0 < task.propensity.min() and task.propensity.max() < 1.0
        json.dumps(task.meta)  # provenance is JSON-serialisable
        assert len(task.meta["node_mechanisms"]) == task.n_nodes == len(task.meta["node_noise"])
        if not hidden.any():
            assert task.identifiable
    families = {t.meta["graph_family"] for t in tasks}
    assert families == {"erdos_renyi", "scale_free"}
    assert any(not t.identifiable for t in tasks), "the default prior should contain unidentifiable tasks"


# ------------------------------------------------------------------ ground truth


def test_direct_effect_only_ate_is_tau_in_closed_form():
    # T -> Y with no other parent of Y and no heterogeneity: ATE = tau exactly.
    cfg = fixed_config([("C", "T"), ("T", "Y")], **{"effect.heterogeneity": [0.0, 0.0], "effect.size": [0.5, 2.0]})
    for seed in range(5):
        task = sample_task(cfg, seed)
        assert task.meta["ate_method"] == "closed_form" and task.ate_se == 0.0
        assert task.ate == pytest.approx(task.meta["effect_size"], abs=1e-6)
        np.testing.assert_allclose(task.y1 - task.y0, task.meta["effect_size"], atol=1e-5)


def test_linear_closed_form_matches_monte_carlo():
    # Mediated paths and heterogeneity: the closed form must equal a large MC estimate.
    cfg = load_config("er5000-linear").replace(ate_mc_units=100_000)
    mc_cfg = cfg.replace(ate_method="monte_carlo")
    z = []
    for seed in range(25):
        exact, mc = sample_task(cfg, seed), sample_task(mc_cfg, seed)
        assert exact.meta["ate_method"] == "closed_form"
        assert mc.meta["ate_method"] == "monte_carlo"
        # float32 rounding of the simulated values bounds the agreement from below
        tol = 4.0 * mc.ate_se + 1e-5 * (1 + abs(exact.ate))
        assert abs(exact.ate - mc.ate) <= tol, (seed, exact.ate, mc.ate, mc.ate_se)
        if mc.ate_se > 1e-6:
            z.append((exact.ate - mc.ate) / mc.ate_se)
    z = np.array(z)
    # z-scores of an unbiased estimator: mean ~ 0 (sd 1/sqrt(n)), sd ~ 1
    assert abs(z.mean()) < 4 / np.sqrt(len(z))
    assert 0.5 < z.std() < 1.6


def test_monte_carlo_ate_agrees_with_large_sample_sate():
    # For nonlinear SCMs the MC population ATE and the SATE of a big sample are
    # two independent unbiased estimates of the same number.
    cfg = load_config("er5000-nonlinear").replace(n_units=[20_000, 20_000])
    for seed in range(6):
        task = sample_task(cfg, seed)
        assert task.meta["ate_method"] == "monte_carlo" and task.ate_se > 0
        ite = task.y1.astype(np.float64) - task.y0
        se = np.sqrt(task.ate_se**2 + ite.var() / len(ite))
        assert abs(task.ate - task.sate) <= 4.5 * se + 1e-6, (seed, task.ate, task.sate, se)


def test_zero_effect_tasks_have_no_path_and_exactly_zero_effect():
    cfg = load_config("default").replace(**{"roles.zero_effect_prob": 1.0})
    for task in sample_tasks(cfg, range(20)):
        reach = reachability(task.adjacency)
        assert not reach[task.treatment_node, task.outcome_node]
        assert task.ate == 0.0 and task.sate == 0.0 and task.att == 0.0
        np.testing.assert_array_equal(task.y1, task.y0)
        assert not (task.roles == Role.MEDIATOR).any()


def _difference_in_means(task):
    t = task.t == 1
    return float(task.y[t].mean() - task.y[~t].mean())


def test_unconfounded_difference_in_means_is_unbiased_confounded_is_not():
    edges = [("C", "T"), ("C", "Y"), ("T", "Y")]
    base = {"n_units": [2000, 2000], "effect.heterogeneity": [0.0, 0.0], "noise.scale": [0.3, 0.3]}
    rct = fixed_config(edges, **base, **{"treatment.confounding_strength": [0.0, 0.0]})
    confounded = fixed_config(edges, **base, **{"treatment.confounding_strength": [3.0, 3.0]})
    err_rct = np.array([_difference_in_means(t) - t.sate for t in sample_tasks(rct, range(40))])
    err_conf = np.array([_difference_in_means(t) - t.sate for t in sample_tasks(confounded, range(40))])
    se_rct = err_rct.std(ddof=1) / np.sqrt(len(err_rct))
    assert abs(err_rct.mean()) < 4 * se_rct
    # |bias| with a strong confounder: many standard errors away from zero in every task
    assert np.all(np.abs(err_conf) > 10 * err_rct.std())
    # with constant propensity the design is a randomised trial
    task = sample_task(rct, 0)
    assert np.ptp(task.propensity) < 1e-6


def test_hidden_confounder_breaks_identifiability():
    edges = [("U", "T"), ("U", "Y"), ("X", "Y"), ("T", "Y")]
    cfg = fixed_config(edges, **{"roles.hidden_confounder_fraction": [1.0, 1.0]})
    task = sample_task(cfg, 0)
    names = task.meta["node_names"]
    u = names.index("U")
    assert task.roles[u] == Role.HIDDEN_CONFOUNDER
    assert u not in task.covariate_nodes and names.index("X") in task.covariate_nodes
    assert task.identifiable is False and task.meta["adjustment_set"] is None
    visible = sample_task(fixed_config(edges), 0)
    assert visible.identifiable and u in visible.covariate_nodes


def test_hidden_confounder_blocked_by_observed_node_stays_identifiable():
    # U -> C -> T and U -> Y: U is hidden, but C blocks the back-door path.
    edges = [("U", "C"), ("C", "T"), ("U", "Y"), ("T", "Y")]
    task = sample_task(fixed_config(edges, **{"roles.hidden_confounder_fraction": [1.0, 1.0]}), 0)
    names = task.meta["node_names"]
    assert task.roles[names.index("U")] == Role.HIDDEN_CONFOUNDER
    assert task.identifiable
    assert task.meta["adjustment_set"] == [names.index("C")]


def test_instruments_mediators_and_post_treatment_roles():
    edges = [("Z", "T"), ("C", "T"), ("C", "Y"), ("T", "M"), ("M", "Y"), ("T", "P"), ("Y", "P")]
    task = sample_task(fixed_config(edges), 0)
    names = task.meta["node_names"]
    role = {n: Role(int(task.roles[i])) for i, n in enumerate(names)}
    assert role == {"Z": Role.INSTRUMENT, "C": Role.COVARIATE, "T": Role.TREATMENT, "M": Role.MEDIATOR,
                    "Y": Role.OUTCOME, "P": Role.POST_TREATMENT}
    assert sorted(names[i] for i in task.covariate_nodes) == ["C", "Z"]


def test_overlap_and_treated_share_dials():
    def spread(strength, clip=0.0):
        cfg = load_config("er5000-linear").replace(
            **{"treatment.confounding_strength": [strength, strength], "treatment.propensity_clip": clip}
        )
        tasks = sample_tasks(cfg, range(30))
        return tasks, np.mean([t.meta["propensity_outside_0.05_0.95"] for t in tasks])

    weak_tasks, weak = spread(0.25)
    strong_tasks, strong = spread(4.0)
    assert weak == 0.0 and strong > 0.2
    assert max(t.propensity.max() for t in weak_tasks) < 0.95
    clipped, _ = spread(4.0, clip=0.1)
    for t in clipped:
        assert t.propensity.min() >= 0.1 - 1e-7 and t.propensity.max() <= 0.9 + 1e-7
    # the offset is calibrated so that mean(e) = target share on the sample;
    # the realised share then deviates by binomial noise only
    for t in weak_tasks:
        n = t.n_units
        target = t.meta["treated_share_target"]
        assert abs(t.propensity.mean() - target) < 1e-3
        assert abs(t.t.mean() - target) < 4.5 * np.sqrt(target * (1 - target) / n)


def test_propensity_is_the_true_treatment_probability():
    cfg = load_config("default").replace(n_units=[1000, 1000])
    e = np.concatenate([t.propensity for t in sample_tasks(cfg, range(30))]).astype(np.float64)
    t = np.concatenate([t.t for t in sample_tasks(cfg, range(30))]).astype(np.float64)
    bins = np.clip((e * 10).astype(int), 0, 9)
    for b in range(10):
        sel = bins == b
        if sel.sum() > 500:
            se = np.sqrt(e[sel].mean() * (1 - e[sel].mean()) / sel.sum())
            assert abs(t[sel].mean() - e[sel].mean()) < 4.5 * se


def test_effect_size_and_heterogeneity_dials():
    base = load_config("er5000-linear")
    small = sample_tasks(base.replace(**{"effect.size": [0.0, 0.1], "effect.heterogeneity": [0.0, 0.0]}), range(20))
    large = sample_tasks(base.replace(**{"effect.size": [2.0, 3.0], "effect.heterogeneity": [1.0, 1.0]}), range(20))
    direct = [abs(t.meta["effect_size"]) for t in small]
    assert max(direct) <= 0.1
    assert np.mean([abs(t.ate) for t in large]) > np.mean([abs(t.ate) for t in small]) + 1.0
    assert np.mean([t.ite.std() for t in large]) > 5 * np.mean([t.ite.std() for t in small]) + 0.1


def test_every_mechanism_and_noise_family_is_reachable():
    tasks = sample_tasks("default", range(80))
    mechs = {m for t in tasks for m in t.meta["node_mechanisms"]}
    noises = {n.split("+")[0] for t in tasks for n in t.meta["node_noise"]}
    flags = {n.split("+")[1] for t in tasks for n in t.meta["node_noise"] if "+" in n}
    assert {"linear", "mlp", "rff", "poly", "root"} <= mechs
    assert {"gaussian", "laplace", "student_t", "uniform", "bernoulli"} <= noises
    assert flags == {"heteroscedastic", "post_nonlinear"}


# ------------------------------------------------------------------ QC


def test_quality_control_counts_rejections_and_gives_up_clearly():
    cfg = load_config("er5000-linear").replace(
        n_units=[20, 20], **{"treatment.treated_share": [0.05, 0.05], "qc.min_units_per_arm": 2}
    )
    tasks = sample_tasks(cfg, range(15))
    rejected = sum(t.meta["qc_rejections"].get("single_treatment_arm", 0) for t in tasks)
    assert rejected > 0
    for t in tasks:
        assert t.t.sum() >= 2 and (1 - t.t).sum() >= 2
        assert t.meta["attempt"] == sum(t.meta["qc_rejections"].values())
    impossible = cfg.replace(**{"qc.min_units_per_arm": 15, "qc.max_attempts": 3})
    with pytest.raises(SamplingError, match="rejected all 3 attempts.*single_treatment_arm"):
        sample_task(impossible, 0)


# ------------------------------------------------------------------ user DAGs


def test_user_supplied_networkx_dag():
    g = nx.DiGraph([("age", "drug"), ("age", "recovery"), ("drug", "recovery"), ("sex", "recovery")])
    cfg = TaskConfig(graph=GraphConfig.from_networkx(g), roles=RoleConfig(treatment="drug", outcome="recovery"))
    task = sample_task(cfg, 3)
    names = task.meta["node_names"]
    assert sorted(names) == sorted(g.nodes)
    edges = {(names[i], names[j]) for i, j in zip(*np.nonzero(task.adjacency))}
    assert edges == set(g.edges)
    assert names[task.treatment_node] == "drug" and names[task.outcome_node] == "recovery"
    assert sorted(names[i] for i in task.covariate_nodes) == ["age", "sex"]


# ------------------------------------------------------------------ Setoguchi


def test_setoguchi_scenario_g():
    tasks = sample_tasks("setoguchi-G", range(30))
    for t in tasks:
        assert t.ate == -0.4 and t.x.shape == (500, 10)
        np.testing.assert_allclose(t.y1 - t.y0, -0.4, atol=1e-6)
    x = np.concatenate([t.x for t in tasks])
    # w9 = 1[0.9 w4 + sqrt(0.19) z > 0]: point-biserial correlation 0.9 * sqrt(2 / pi)
    assert abs(np.corrcoef(x[:, 3], x[:, 8])[0, 1] - 0.9 * np.sqrt(2 / np.pi)) < 0.02
    assert set(np.unique(x[:, 0])) == {0.0, 1.0}
    bias = np.mean([_difference_in_means(t) - t.sate for t in tasks])
    assert abs(bias) > 0.1  # confounded: the naive contrast is biased
    shifted = sample_tasks("setoguchi-G-shift", range(10))
    assert len({round(t.ate, 6) for t in shifted}) == 10


# ------------------------------------------------------------------ determinism


def test_same_task_in_a_fresh_process():
    code = (
        "import causalgen, hashlib, numpy as np\n"
        "t = causalgen.sample_task('default', 123)\n"
        "h = hashlib.sha256()\n"
        "[h.update(np.ascontiguousarray(a).tobytes()) for a in (t.x, t.t, t.y, t.y0, t.y1, t.propensity, t.adjacency, t.roles)]\n"
        "print(h.hexdigest(), repr(t.ate))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    t = sample_task("default", 123)
    import hashlib

    h = hashlib.sha256()
    for a in (t.x, t.t, t.y, t.y0, t.y1, t.propensity, t.adjacency, t.roles):
        h.update(np.ascontiguousarray(a).tobytes())
    assert out == [h.hexdigest(), repr(t.ate)]


def test_global_random_state_is_untouched():
    np.random.seed(7)
    before = np.random.get_state()[1].copy()
    sample_tasks("default", range(3))
    assert np.array_equal(before, np.random.get_state()[1])


def test_bad_seeds_are_rejected():
    for seed in (-1, 1.5, "3", True):
        with pytest.raises(ValueError, match="seed must be a non-negative integer"):
            sample_task("default", seed)


# ------------------------------------------------------------------ fast paths


def test_task_streams_equal_default_rng():
    # Seeds are hashed in bulk (streams.py), but every stream must be exactly
    # np.random.default_rng([seed, attempt]), including seeds beyond 32 bits.
    from causalgen.prior.streams import task_generators

    seeds = [0, 1, 7, 123456, 2**31, 2**32 - 1, 2**32, 2**40 + 5]
    attempts = [0, 3, 1, 24, 0, 2, 0, 1]
    for gen, s, a in zip(task_generators(seeds, attempts), seeds, attempts):
        ref = np.random.default_rng([s, a])
        np.testing.assert_array_equal(gen.random(5), ref.random(5))
        np.testing.assert_array_equal(gen.bit_generator.random_raw(3), ref.bit_generator.random_raw(3))


@pytest.mark.parametrize(
    "overrides",
    [{}, {"n_units": [50, 300], "noise.families": {"laplace": 1.0, "uniform": 1.0}, "effect.heterogeneity": [0.5, 1.0]}],
)
def test_linear_fast_path_agrees_with_generic_simulator(monkeypatch, overrides):
    # linear.py replaces node-by-node simulation by moment algebra; on the same
    # tasks (same noise) it must agree with scm.simulate to float32 rounding.
    import causalgen.prior.sampler as sampler

    cfg = load_config("er5000-linear").replace(**overrides)
    fast = sample_tasks(cfg, range(40))
    monkeypatch.setattr(sampler, "LINEAR_FAST_PATH", False)
    generic = sample_tasks(cfg, range(40))
    same_t = 0
    for a, b in zip(fast, generic):
        np.testing.assert_array_equal(a.adjacency, b.adjacency)
        if not np.array_equal(a.t, b.t):  # a unit whose u sits within rounding of e
            continue
        same_t += 1
        for name in ("x", "y0", "y1", "propensity"):
            np.testing.assert_allclose(getattr(a, name), getattr(b, name), rtol=0, atol=2e-5, err_msg=name)
        for name in ("ate", "sate", "att"):
            assert getattr(a, name) == pytest.approx(getattr(b, name), abs=2e-5), name
    assert same_t >= 38


def test_adaptive_monte_carlo_stops_at_the_tolerance_or_the_cap():
    cfg = load_config("er5000-nonlinear").replace(ate_mc_units=8192, ate_mc_round_units=512, ate_mc_tolerance=0.02)
    tasks = sample_tasks(cfg, range(30))
    units = np.array([t.meta["ate_mc_units"] for t in tasks])
    se = np.array([t.ate_se for t in tasks])
    assert np.all(units % 512 == 0) and np.all(units <= 8192)
    assert np.all((se <= 0.02) | (units == 8192))
    assert len(set(units.tolist())) > 1, "some tasks should need more rounds than others"
    full = sample_tasks(cfg.replace(ate_mc_tolerance=0.0), range(3))
    assert all(t.meta["ate_mc_units"] == 8192 for t in full)


def test_linear_qc_bounds_reject_exactly_like_the_generic_path(monkeypatch):
    # The fast path skips QC's pass over x, y0, y1 when coefficient bounds prove
    # them small; with a tight threshold the bounds fail and real peaks decide.
    import causalgen.prior.sampler as sampler

    cfg = load_config("er5000-linear").replace(**{"qc.max_abs_value": 3.8, "qc.max_attempts": 60})
    fast = sample_tasks(cfg, range(20))
    monkeypatch.setattr(sampler, "LINEAR_FAST_PATH", False)
    generic = sample_tasks(cfg, range(20))
    assert sum(t.meta["qc_rejections"].get("exploding_values", 0) for t in fast) > 5
    for a, b in zip(fast, generic):
        assert a.meta["qc_rejections"] == b.meta["qc_rejections"]
        assert np.abs(a.x).max() <= 3.8 and np.abs(a.y1).max() <= 3.8


def test_batched_equals_single_for_monte_carlo_and_mixed_tasks():
    # Small tasks of the default prior: many Monte-Carlo ATEs, post-nonlinear and
    # heteroscedastic nodes, mixed families; batching must change nothing.
    cfg = load_config("default").replace(n_units=[40, 70])
    seeds = [2**40 + 7919 * i for i in range(16)]  # beyond 32 bits: the non-vectorised seeding path
    batch = sample_tasks(cfg, seeds)
    assert sum(t.meta["ate_method"] == "monte_carlo" for t in batch) >= 8
    for s, task in zip(seeds, batch):
        assert task.equals(sample_task(cfg, s)), f"seed {s}"


def test_qc_rejects_imprecise_or_huge_population_ate():
    from causalgen.prior import qc

    cfg = load_config("default")
    b = 3
    peaks = np.ones((4, b))
    stats = qc.Summaries(y=np.zeros((b, 10)), n_treated=np.full(b, 5), y_std=np.ones(b), sate=np.zeros(b),
                         att=np.zeros(b), e_min=np.full(b, 0.2), e_max=np.full(b, 0.8), outside=np.zeros(b))
    ate = np.array([0.5, -4.8e6, 0.5])
    se = np.array([0.0, 4.8e6, 0.5])
    assert qc.rejections(cfg, peaks, stats, np.full(b, 10), ate, se) == [None, "exploding_values", "imprecise_ate"]
