"""The wider prior: typed and distorted covariates, irrelevant and weak ones, log-uniform N,
binary outcomes, real-table roots, and the two presets built from them."""

from __future__ import annotations

import math

import networkx as nx
import numpy as np
import pandas as pd
import pytest

import causalgen
from causalgen import ConfigError, load_config, sample_task, sample_tasks
from causalgen.prior.config import COVARIATE_TYPES

ALL_TYPES = {t: 1.0 for t in COVARIATE_TYPES}


def _typed(**covariates):
    return load_config({"preset": "default", "covariates": {"types": ALL_TYPES, **covariates}})


@pytest.fixture(scope="module")
def typed_tasks():
    return sample_tasks(_typed(), range(120))


def test_each_type_appears_at_its_configured_rate(typed_tasks):
    types = [t for task in typed_tasks for t in task.meta["covariate_types"]]
    n = len(types)
    assert n > 600
    for name in COVARIATE_TYPES:
        share = types.count(name) / n
        # per node independent draws with p = 1/8: binomial sd sqrt(p (1-p) / n); nodes of one
        # task are not independent of its QC, so allow 4 sd
        assert abs(share - 1 / 8) < 4 * math.sqrt(1 / 8 * 7 / 8 / n), (name, share)
    mixed = load_config({"preset": "default", "covariates": {"types": {"binary": 3.0, "continuous": 1.0}}})
    types = [t for task in sample_tasks(mixed, range(60)) for t in task.meta["covariate_types"]]
    assert abs(types.count("binary") / len(types) - 0.75) < 4 * math.sqrt(0.75 * 0.25 / len(types))


def test_typed_columns_take_only_their_levels(typed_tasks):
    seen = set()
    for task in typed_tasks:
        for k, kind in enumerate(task.meta["covariate_types"]):
            col = task.x[:, k]
            assert np.isfinite(col).all()
            if kind == "binary":
                assert set(np.unique(col)) <= {0.0, 1.0}
            elif kind in ("ordinal", "categorical"):
                levels = np.unique(col)
                assert np.array_equal(levels, np.round(levels)) and levels.min() >= 0 and levels.max() <= 9
            elif kind == "count":
                assert np.array_equal(col, np.round(col)) and col.min() >= 0
            elif kind == "bounded":
                assert col.min() >= 0 and col.max() <= 1
            elif kind == "skewed":
                assert col.min() >= 0
            seen.add(kind)
    assert seen == set(COVARIATE_TYPES)


def test_semicontinuous_columns_have_their_zero_mass(typed_tasks):
    lo, hi = _typed().covariates.zero_share
    shares = []
    for task in typed_tasks:
        for k, kind in enumerate(task.meta["covariate_types"]):
            if kind == "semicontinuous":
                col = task.x[:, k]
                zero = np.mean(col == 0)
                assert (col[col != 0] > 0).all()
                # the zero share is a quantile of the node on the task's own units: exact up to ties
                assert lo - 0.01 <= zero <= hi + 0.01, zero
                shares.append(zero)
    assert len(shares) > 20 and np.std(shares) > 0.05  # drawn per node, not one value


def test_a_distorted_column_is_a_monotone_function_of_its_node():
    mix = {"continuous": 3.0, "binary": 1.0}
    with_d = sample_tasks(_typed(distortion_prob=0.7, types=mix), range(30))
    without = sample_tasks(_typed(distortion_prob=0.0, types=mix), range(30))
    distorted = 0
    for a, b in zip(with_d, without):
        assert np.array_equal(a.t, b.t) and np.array_equal(a.y, b.y)  # the SCM is the same
        for k, name in enumerate(a.meta["covariate_distortions"]):
            if name is None:
                assert np.array_equal(a.x[:, k], b.x[:, k])
                continue
            distorted += 1
            order = np.argsort(b.x[:, k], kind="stable")
            assert (np.diff(a.x[order, k]) >= 0).all(), name  # increasing in the node
            assert not np.allclose(a.x[:, k], b.x[:, k])
    assert distorted > 20


def test_irrelevant_covariates_are_d_separated_from_t_and_y():
    tasks = sample_tasks(_typed(irrelevant=(3, 8)), range(40))
    checked = 0
    for task in tasks:
        g = nx.DiGraph()
        g.add_nodes_from(range(task.n_nodes))
        g.add_edges_from(map(tuple, np.argwhere(task.adjacency).tolist()))
        t, y = task.treatment_node, task.outcome_node
        for k, rel in enumerate(task.meta["covariate_relevance"]):
            node = int(task.covariate_nodes[k])
            if rel == "irrelevant":
                assert nx.is_d_separator(g, {node}, {t}, set()) and nx.is_d_separator(g, {node}, {y}, set())
                checked += 1
        n_irr = sum(r == "irrelevant" for r in task.meta["covariate_relevance"])
        assert 3 <= n_irr
    assert checked >= 3 * 40


def test_weak_signal_covariates_are_marked_and_drawn_at_their_rate():
    tasks = sample_tasks(_typed(weak_prob=0.5, types={"continuous": 1.0}), range(40))
    rel = [r for task in tasks for r in task.meta["covariate_relevance"]]
    assert 0.3 < rel.count("weak") / len(rel) < 0.7


def test_units_log_uniform():
    cfg = load_config({"preset": "default", "n_units": [50, 20000], "n_units_scale": "log",
                       "graph": {"n_nodes": [4, 6]}})
    n = np.array([task.n_units for task in sample_tasks(cfg, range(200))])
    assert n.min() >= 50 and n.max() <= 20000
    u = (np.log(n) - np.log(50)) / (np.log(20001) - np.log(50))
    # log N uniform: its quartiles at 1/4, 1/2, 3/4 (sd of a sample quartile ~ 0.031 at n = 200)
    assert np.allclose(np.quantile(u, [0.25, 0.5, 0.75]), [0.25, 0.5, 0.75], atol=0.1)


def _binary(**outcome):
    return load_config({"preset": "default", "outcome": {"types": {"binary": 1.0}, **outcome}})


def test_binary_outcomes():
    tasks = sample_tasks(_binary(), range(60))
    lo, hi = _binary().outcome.prevalence
    for task in tasks:
        for arr in (task.y, task.y0, task.y1):
            assert set(np.unique(arr)) <= {0.0, 1.0}
        assert np.array_equal(task.y, np.where(task.t == 1, task.y1, task.y0))
        assert -1 <= task.ate <= 1 and -1 <= task.sate <= 1
        assert task.meta["outcome_type"] == "binary" and task.meta["ate_method"] == "monte_carlo"
        # the offset calibrates the factual prevalence: E y = target, up to the coin flips
        assert abs(task.y.mean() - task.meta["outcome_prevalence_target"]) < 4 * 0.5 / math.sqrt(task.n_units)
    assert "outcome_type" not in sample_task("default", 0).meta  # the old presets' meta is unchanged


def test_binary_ate_equals_the_closed_form_of_a_logistic_scm():
    # X -> T, X -> Y, T -> Y, linear, Gaussian, no heterogeneity: the latent outcome is
    # y* = s + tau T with s standardised on the task's own units, so
    # ATE = E[sigmoid(a (s + tau) + b) - sigmoid(a s + b)], s ~ N(0, 1) up to the sample's
    # standardisation (mean and sd of N = 20,000 units: error ~ 1/sqrt(N))
    dag = nx.DiGraph([("X", "T"), ("X", "Y"), ("T", "Y")])
    graph = causalgen.prior.config.GraphConfig.from_networkx(dag)
    base = load_config({"preset": "default", "n_units": [20000, 20000], "ate_mc_units": 65536, "ate_mc_tolerance": 0.0,
                        "graph": graph.__dict__ | {"families": {"fixed": 1.0}},
                        "roles": {"treatment": "T", "outcome": "Y", "hidden_confounder_fraction": [0, 0],
                                  "zero_effect_prob": 0.0},
                        "mechanism": {"families": {"linear": 1.0}},
                        "noise": {"families": {"gaussian": 1.0}, "heteroscedastic_prob": 0.0, "nonadditive_prob": 0.0},
                        "treatment": {"score_mechanism": {"linear": 1.0}},
                        "effect": {"size": [0.5, 1.5], "heterogeneity": [0.0, 0.0]},
                        "outcome": {"types": {"binary": 1.0}}})
    nodes = np.polynomial.hermite_e.hermegauss(80)
    for seed in range(4):
        task = sample_task(base, seed)
        a = task.meta["outcome_logit_scale"]
        tau = task.meta["effect_size"]
        b = task.meta["outcome_logit_offset"]
        s, w = nodes
        sig = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
        closed = float((w * (sig(a * (s + tau) + b) - sig(a * s + b))).sum() / math.sqrt(2 * math.pi))
        # |d ATE / d shift| <= a / 2 for a shift of s's mean or a rescaling by 1 + eps (|s| < 5)
        tol = 4 * task.ate_se + 5 * (a / 2) * 3 / math.sqrt(task.n_units)
        assert abs(task.ate - closed) < tol, (seed, task.ate, closed, tol)
        assert abs(closed) > 0.05


def _table_cfg(**tables):
    return load_config({"preset": "default", "graph": {"n_nodes": [4, 10]}, "tables": {"sources": ["default"], **tables}})


def test_semi_synthetic_rows_are_table_rows():
    from causalgen.prior.tables import default_pool

    pool = {t.name: t for t in default_pool()}
    for task in sample_tasks(_table_cfg(), range(12)):
        info = task.meta["table"]
        table = pool[info["name"]]
        assert info["sha256"] == table.sha256
        cols = [table.columns.index(c) for c in info["columns"]]
        pos = np.searchsorted(table.rows, info["rows"])
        assert np.array_equal(table.rows[pos], info["rows"])  # rows of the complete table
        k = len(cols)
        np.testing.assert_array_equal(task.x[:, :k], table.values[pos][:, cols].astype(np.float32))
        assert task.meta["covariate_types"][:k] == [table.types[c] for c in cols]
        assert task.ate_se == 0.0 and task.meta["ate_method"] == "finite_population"
    again = sample_task(_table_cfg(), 3)
    assert again.meta["table"] == sample_task(_table_cfg(), 3).meta["table"]


def test_user_tables_text_and_missing_values(tmp_path):
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"a": rng.normal(size=300), "b": rng.integers(0, 2, 300), "c": rng.gamma(2, size=300)})
    df.loc[5, "a"] = np.nan  # the stated rule: incomplete rows are dropped
    path = tmp_path / "mine.csv"
    df.to_csv(path, index=False)
    task = sample_task(_table_cfg(sources=[str(path)], columns=[3, 3]), 0)
    assert 5 not in task.meta["table"]["rows"] and task.meta["table"]["columns"] == ["a", "b", "c"]
    # a DataFrame in Python works the same
    from_df = sample_task(_table_cfg(sources=[df], columns=[3, 3]), 0)
    np.testing.assert_array_equal(from_df.x[:, :3], task.x[:, :3])
    df["name"] = ["x"] * 300
    df.to_csv(tmp_path / "text.csv", index=False)
    with pytest.raises(ConfigError, match=r"text\.csv.*name"):
        sample_task(_table_cfg(sources=[str(tmp_path / "text.csv")]), 0)
    with pytest.raises(ConfigError, match=r"mine\.csv.*'a'.*row 5"):
        sample_task(_table_cfg(sources=[str(path)], missing="error"), 0)


@pytest.mark.parametrize("preset", ["realistic", "semi-synthetic"])
def test_new_presets_are_deterministic_and_batch_invariant(preset):
    seeds = [3, 0, 11, 7, 5]
    batch = sample_tasks(preset, seeds)
    for seed, task in zip(seeds, batch):
        assert task.equals(sample_task(preset, seed)), seed
    assert all(t.meta["config_name"] == preset for t in batch)


def test_realistic_reaches_wide_designs():
    tasks = sample_tasks("realistic", range(60))
    assert max(t.n_covariates for t in tasks) >= 80 and max(t.n_nodes for t in tasks) >= 100
    assert min(t.n_units for t in tasks) < 200 and max(t.n_units for t in tasks) > 5000
    kinds = {k for t in tasks for k in t.meta["covariate_types"]}
    assert kinds == set(COVARIATE_TYPES)
    assert {t.meta["outcome_type"] for t in tasks} == {"continuous", "binary"}


@pytest.mark.parametrize("patch, message", [
    ({"covariates": {"types": {"nominal": 1.0}}}, r"covariates.types.nominal: unknown name"),
    ({"covariates": {"levels": [2, 4]}}, r"covariates.levels: values must be >= 3"),
    ({"covariates": {"distortion_prob": 1.5}}, r"covariates.distortion_prob: expected a probability"),
    ({"covariates": {"irrelevant": [5, 2]}}, r"covariates.irrelevant: low must be <= high"),
    ({"outcome": {"types": {"poisson": 1.0}}}, r"outcome.types.poisson: unknown name"),
    ({"outcome": {"prevalence": [0.0, 0.5]}}, r"outcome.prevalence: values must be >= 0.01"),
    ({"n_units_scale": "sqrt"}, r"n_units_scale: expected 'linear' or 'log'"),
    ({"tables": {"sources": []}}, r"tables.sources: expected a non-empty list"),
    ({"tables": {"missing": "impute"}}, r"tables.missing: expected 'drop_rows' or 'error'"),
    ({"graph": {"max_parents": 0}}, r"graph.max_parents: expected null or an integer >= 1"),
])
def test_config_errors_name_the_field(patch, message):
    with pytest.raises(ConfigError, match=message):
        load_config({"preset": "default", **patch})


def test_old_presets_keep_their_config_digest():
    # the optional sections are left out of to_dict when off, so existing corpora's configs
    # (and their sha256 in the manifests) are unchanged
    d = load_config("default").to_dict()
    assert not {"covariates", "outcome", "tables", "n_units_scale"} & set(d)


def test_the_manifest_records_tables_rows_and_outcome_types(tmp_path):
    from causalgen.store import generate_corpus, CorpusSpec
    from causalgen.store.manifest import rows_digest
    from cina import TaskStream

    cfg = load_config({"preset": "semi-synthetic", "outcome": {"types": {"continuous": 1.0, "binary": 1.0}}})
    out = tmp_path / "c"
    generate_corpus(CorpusSpec(config=cfg.to_dict(), seed=3, num_tasks=12, shard_size=6), str(out), progress=False)
    corpus = causalgen.open_corpus(out)
    cols = corpus.columns
    for i in range(len(corpus)):
        task = corpus[i]
        assert cols["table"][i] == task.meta["table"]["name"]
        assert cols["table_rows_sha256"][i] == rows_digest(task.meta["table"]["rows"])
        assert cols["outcome_type"][i] == task.meta["outcome_type"]
    assert causalgen.verify_corpus(out).ok
    binary = int((cols["outcome_type"] == "binary").sum())
    assert 0 < binary < 12
    assert TaskStream(corpus, 2, 0, where={"outcome_type": "binary"}, drop_last=False).num_tasks == binary
    # the old presets' manifests carry no such columns
    plain = tmp_path / "p"
    generate_corpus(CorpusSpec(config=load_config("default").to_dict(), seed=3, num_tasks=4, shard_size=4), str(plain),
                    progress=False)
    assert "table" not in causalgen.open_corpus(plain).columns
