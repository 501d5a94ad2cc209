"""Config loading and every validation error path: errors name the field and value."""

import json

import pytest

import causalgen
from causalgen import ConfigError, TaskConfig, load_config
from causalgen.prior.config import GraphConfig


def test_presets_are_listed_and_valid():
    assert {"default", "er5000-linear", "er5000-nonlinear"} <= set(causalgen.PRESETS)
    assert {f"setoguchi-{s}" for s in "ABCDEFG"} <= set(causalgen.PRESETS)
    for name in causalgen.PRESETS:
        cfg = load_config(name)
        assert isinstance(cfg, TaskConfig)
        assert TaskConfig.from_dict(cfg.to_dict()) == cfg  # round trip


def test_yaml_and_json_round_trip(tmp_path):
    cfg = load_config("default").replace(n_units=[50, 60])
    import yaml

    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg.to_dict()))
    (tmp_path / "c.json").write_text(json.dumps(cfg.to_dict()))
    assert load_config(tmp_path / "c.yaml") == cfg
    assert load_config(tmp_path / "c.json") == cfg


def test_preset_with_overrides_in_yaml(tmp_path):
    (tmp_path / "c.yaml").write_text("preset: er5000-linear\nn_units: [30, 40]\ngraph:\n  n_nodes: [4, 6]\n")
    cfg = load_config(tmp_path / "c.yaml")
    assert cfg.n_units == (30, 40) and cfg.graph.n_nodes == (4, 6)
    assert cfg.mechanism.families == {"linear": 1.0}


@pytest.mark.parametrize(
    "patch, message",
    [
        ({"n_units": [100, 50]}, r"n_units: low must be <= high, got \[100, 50\]"),
        ({"n_units": [-5, 50]}, r"n_units: values must be >= 10"),
        ({"n_units": "many"}, r"n_units: expected a list, got str 'many'"),
        ({"n_units": [1.5, 50]}, r"n_units\[0\]: expected an integer, got float 1.5"),
        ({"graph": {"n_nodes": [2, 5]}}, r"graph.n_nodes: values must be >= 3"),
        ({"graph": {"families": {"small_world": 1}}}, r"graph.families.small_world: unknown name"),
        ({"graph": {"families": {"erdos_renyi": -1}}}, r"graph.families.erdos_renyi: weight must be a number >= 0"),
        ({"graph": {"colour": "red"}}, r"graph.colour: unknown field"),
        ({"mechanism": {"families": {"linear": 0}}}, r"mechanism.families: weights must not all be zero"),
        ({"mechanism": {"mixing": "unit"}}, r"mechanism.mixing: expected 'task' or 'node', got 'unit'"),
        ({"mechanism": {"mlp_activations": ["gelu"]}}, r"mechanism.mlp_activations: choose from"),
        ({"noise": {"heteroscedastic_prob": 1.5}}, r"noise.heteroscedastic_prob: expected a probability in \[0, 1\], got 1.5"),
        ({"noise": {"families": {"cauchy": 1}}}, r"noise.families.cauchy: unknown name"),
        ({"treatment": {"treated_share": [0.0, 0.5]}}, r"treatment.treated_share: values must be >= 0.01"),
        ({"treatment": {"propensity_clip": 0.5}}, r"treatment.propensity_clip: expected a number in \[0, 0.5\)"),
        ({"effect": {"sign": "up"}}, r"effect.sign: expected 'random', 'positive' or 'negative', got 'up'"),
        ({"roles": {"zero_effect_prob": "often"}}, r"roles.zero_effect_prob: expected a number, got str"),
        ({"roles": {"treatment": "T"}}, r"roles.treatment: a fixed treatment node needs a fixed graph"),
        ({"qc": {"max_attempts": 0}}, r"qc.max_attempts: expected an integer >= 1, got 0"),
        ({"qc": {"max_ate_se": 0}}, r"qc.max_ate_se: expected a number > 0, got 0"),
        ({"kind": "tabular"}, r"kind: expected 'random_dag' or 'setoguchi', got 'tabular'"),
        ({"setoguchi": {"scenario": "H"}}, r"setoguchi.scenario: expected one of A..G, got 'H'"),
        ({"ate_mc_units": 10}, r"ate_mc_units: expected an integer >= 100, got 10"),
        ({"ate_method": "exact"}, r"ate_method: expected 'auto' or 'monte_carlo'"),
        ({"bogus": 1}, r"bogus: unknown field"),
    ],
)
def test_validation_errors_name_the_field(patch, message):
    d = load_config("default").to_dict()
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(d.get(key), dict):
            d[key].update(value)
        else:
            d[key] = value
    with pytest.raises(ConfigError, match=message):
        load_config(d)


def test_fixed_graph_errors():
    with pytest.raises(ConfigError, match="graph.edges: the fixed graph has a directed cycle"):
        TaskConfig.from_dict({"graph": {"families": {"fixed": 1}, "nodes": ["a", "b", "c"],
                                        "edges": [["a", "b"], ["b", "a"]]}})
    with pytest.raises(ConfigError, match=r"graph.edges\[0\]: edge \['a', 'z'\] names a node not in graph.nodes"):
        TaskConfig.from_dict({"graph": {"families": {"fixed": 1}, "nodes": ["a", "b", "c"], "edges": [["a", "z"]]}})
    import networkx as nx

    with pytest.raises(ConfigError, match="not a directed acyclic graph"):
        GraphConfig.from_networkx(nx.DiGraph([("a", "b"), ("b", "a")]))
    cfg = GraphConfig.from_networkx(nx.DiGraph([("a", "b"), ("b", "c")]))
    with pytest.raises(ConfigError, match="roles.treatment: 'q' is not a node"):
        TaskConfig.from_dict({"graph": {"families": {"fixed": 1}, "nodes": cfg.nodes, "edges": cfg.edges},
                              "roles": {"treatment": "q"}})


def test_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="unknown preset or missing file 'nope'"):
        load_config("nope")
    bad = tmp_path / "bad.yaml"
    bad.write_text("n_units: [1, 2\n  graph: {")
    with pytest.raises(ConfigError, match="bad.yaml: malformed YAML"):
        load_config(bad)
    bad_json = tmp_path / "bad.json"
    bad_json.write_text("{'n_units': }")
    with pytest.raises(ConfigError, match="bad.json: malformed JSON"):
        load_config(bad_json)
    # a key given twice would otherwise keep the last value without a word
    dup = tmp_path / "dup.yaml"
    dup.write_text("preset: default\nn_units: [200, 300]\nn_units: [50, 60]\n")
    with pytest.raises(ConfigError, match=r"dup.yaml: key 'n_units' is given twice \(line 3\)"):
        load_config(dup)
    dup_json = tmp_path / "dup.json"
    dup_json.write_text('{"preset": "default", "graph": {"n_nodes": [5, 9], "n_nodes": [3, 4]}}')
    with pytest.raises(ConfigError, match="dup.json: key 'n_nodes' is given twice"):
        load_config(dup_json)
    garbage = tmp_path / "garbage.yaml"
    garbage.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(ConfigError, match="garbage.yaml: not a text config file"):
        load_config(garbage)
    lst = tmp_path / "list.yaml"
    lst.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="expected a mapping at the top level"):
        load_config(lst)
    with pytest.raises(ConfigError, match="is a directory"):
        load_config(tmp_path)
    (tmp_path / "p.yaml").write_text("preset: nope\n")
    with pytest.raises(ConfigError, match="preset: unknown preset 'nope'"):
        load_config(tmp_path / "p.yaml")


@pytest.mark.parametrize(
    "patch, message",
    [
        ({"ate_mc_tolerance": -0.1}, r"ate_mc_tolerance: expected a number >= 0, got -0.1"),
        ({"ate_mc_tolerance": "tight"}, r"ate_mc_tolerance: expected a number, got str"),
        ({"ate_mc_round_units": 10}, r"ate_mc_round_units: expected an integer >= 100, got 10"),
    ],
)
def test_adaptive_monte_carlo_fields_are_validated(patch, message):
    with pytest.raises(ConfigError, match=message):
        load_config({**load_config("default").to_dict(), **patch})
    cfg = load_config({**load_config("default").to_dict(), "ate_mc_tolerance": 0, "ate_mc_round_units": 512})
    assert cfg.ate_mc_tolerance == 0.0 and cfg.ate_mc_round_units == 512
