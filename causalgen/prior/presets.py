"""Named configs: `causalgen.PRESETS[name]()` returns a fresh `TaskConfig`.

- ``default``: a diverse mixture (ER and scale-free graphs, every mechanism and
  noise family mixed per node, hidden confounders, zero-effect tasks, a wide range
  of overlap, effect sizes and heterogeneity). The corpus we pretrain on.
- ``er5000-linear`` / ``er5000-nonlinear``: an Erdős–Rényi multi-graph prior in
  the spirit of CInA's ER-5000 (whose exact generator was never published):
  ER DAGs, one mechanism family per task, Gaussian noise, no hidden confounders.
- ``setoguchi-A`` ... ``setoguchi-G``: the Setoguchi / Lee et al. simulation
  scenarios used by Tarr & Imai (true ATE -0.4); ``setoguchi-G-shift`` perturbs
  the coefficients per task (mechanism shift) so the effect varies.
- ``realistic``: the wider prior, closer to the data users bring: typed covariates
  (binary, ordinal, categorical, counts, semicontinuous, bounded, skewed), distorted
  measurements, weak-signal and irrelevant covariates (up to ~120 observed), graphs of up
  to 130 nodes, N log-uniform over 50-20,000, continuous and binary outcomes.
- ``semi-synthetic``: real-table roots (`causalgen.prior.tables.DEFAULT_POOL`), with
  hidden confounders and typed simulated nodes on top; the population ATE is exact.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Union

from .config import (
    ConfigError,
    CovariateConfig,
    EffectConfig,
    GraphConfig,
    MechanismConfig,
    NoiseConfig,
    OutcomeConfig,
    RoleConfig,
    SetoguchiConfig,
    TableConfig,
    TaskConfig,
    TreatmentConfig,
    validate,
)


def default() -> TaskConfig:
    return validate(
        TaskConfig(
            name="default",
            n_units=(200, 1000),
            graph=GraphConfig(families={"erdos_renyi": 1.0, "scale_free": 1.0}, n_nodes=(5, 15), expected_parents=(1.0, 3.0)),
            roles=RoleConfig(hidden_confounder_fraction=(0.0, 0.3), zero_effect_prob=0.1),
            mechanism=MechanismConfig(mixing="node"),
            noise=NoiseConfig(),
            treatment=TreatmentConfig(confounding_strength=(0.3, 2.5), treated_share=(0.2, 0.8)),
            effect=EffectConfig(size=(0.0, 1.5), heterogeneity=(0.0, 0.5)),
        )
    )


def _er5000(name: str, families: dict[str, float]) -> TaskConfig:
    return validate(
        TaskConfig(
            name=name,
            n_units=(200, 1024),
            graph=GraphConfig(families={"erdos_renyi": 1.0}, n_nodes=(6, 12), expected_parents=(1.0, 2.5)),
            roles=RoleConfig(hidden_confounder_fraction=(0.0, 0.0), zero_effect_prob=0.0),
            mechanism=MechanismConfig(families=families, mixing="task"),
            noise=NoiseConfig(families={"gaussian": 1.0}, heteroscedastic_prob=0.0, nonadditive_prob=0.0),
            treatment=TreatmentConfig(confounding_strength=(0.5, 2.0), treated_share=(0.3, 0.7),
                                      score_mechanism=families if "linear" in families else {"mlp": 1.0}),
            effect=EffectConfig(size=(0.0, 1.0), heterogeneity=(0.0, 0.3)),
        )
    )


def er5000_linear() -> TaskConfig:
    return _er5000("er5000-linear", {"linear": 1.0})


def er5000_nonlinear() -> TaskConfig:
    return _er5000("er5000-nonlinear", {"mlp": 1.0, "rff": 1.0, "poly": 1.0})


def _setoguchi(scenario: str, shift: float = 0.0) -> TaskConfig:
    suffix = "-shift" if shift else ""
    return validate(
        TaskConfig(
            kind="setoguchi",
            name=f"setoguchi-{scenario}{suffix}",
            n_units=(500, 500),
            setoguchi=SetoguchiConfig(scenario=scenario, mechanism_shift=shift),
        )
    )


#: observation types of the wider prior's simulated nodes: about IHDP's mix (19 of 25 binary)
#: at one end and all-continuous designs at the other, averaged over tasks
_WIDE_TYPES = {"continuous": 0.32, "binary": 0.22, "ordinal": 0.1, "categorical": 0.06, "count": 0.08,
               "semicontinuous": 0.08, "bounded": 0.06, "skewed": 0.08}


def _wide(name: str, n_nodes: tuple[int, int], covariates: CovariateConfig, **fields) -> TaskConfig:
    """What the wider prior's presets share: graphs, roles, mechanisms, noise, treatment and
    effect dials as `default` (wider treated shares and heterogeneity), continuous and binary
    outcomes, in-degree capped at 8."""
    return validate(
        TaskConfig(
            name=name,
            graph=GraphConfig(families={"erdos_renyi": 1.0, "scale_free": 1.0}, n_nodes=n_nodes,
                              expected_parents=(1.0, 3.0), max_parents=8),
            roles=RoleConfig(hidden_confounder_fraction=(0.0, 0.3), zero_effect_prob=0.1),
            mechanism=MechanismConfig(mixing="node"),
            noise=NoiseConfig(),
            treatment=TreatmentConfig(confounding_strength=(0.3, 2.5), treated_share=(0.1, 0.9)),
            effect=EffectConfig(size=(0.0, 1.5), heterogeneity=(0.0, 0.8)),
            covariates=covariates,
            outcome=OutcomeConfig(types={"continuous": 0.75, "binary": 0.25}),
            **fields,
        )
    )


def realistic() -> TaskConfig:
    return _wide("realistic", (5, 80), CovariateConfig(types=dict(_WIDE_TYPES), distortion_prob=0.15,
                                                       irrelevant=(0, 50), weak_prob=0.15),
                 n_units=(50, 20_000), n_units_scale="log")


def semi_synthetic() -> TaskConfig:
    # graph.n_nodes counts the simulated nodes besides the table's columns
    return _wide("semi-synthetic", (3, 20), CovariateConfig(types=dict(_WIDE_TYPES), distortion_prob=0.1, weak_prob=0.1),
                 n_units=(200, 2000), tables=TableConfig(sources=["default"], columns=(2, 30)))


PRESETS = {
    "default": default,
    "er5000-linear": er5000_linear,
    "er5000-nonlinear": er5000_nonlinear,
    **{f"setoguchi-{s}": (lambda s=s: _setoguchi(s)) for s in "ABCDEFG"},
    "setoguchi-G-shift": lambda: _setoguchi("G", 0.3),
    "realistic": realistic,
    "semi-synthetic": semi_synthetic,
}


# -------------------------------------------------------------------------- loading


def load_config(preset_or_path: Union[str, Path, dict, TaskConfig]) -> TaskConfig:
    """A validated `TaskConfig` from a preset name, a YAML/JSON file, or a dict.

    Files may hold a full config or ``{preset: NAME, ...overrides}``.
    """
    if isinstance(preset_or_path, TaskConfig):
        return validate(preset_or_path)
    if isinstance(preset_or_path, dict):
        return _from_mapping(preset_or_path, source="dict")
    key = str(preset_or_path)
    if key in PRESETS:
        return PRESETS[key]()
    path = Path(key)
    if not path.exists():
        raise ConfigError(f"unknown preset or missing file {key!r} (presets: {', '.join(PRESETS)})")
    if path.is_dir():
        raise ConfigError(f"{key}: is a directory, expected a YAML or JSON config file")
    data = read_config_file(path)
    if data is None:
        data = {}
    return _from_mapping(data, source=key)


def read_config_file(path: str | Path):
    """The parsed contents of a YAML or JSON config file (JSON by its ``.json`` suffix).

    Raises ConfigError naming the file for bytes that are not UTF-8 text, malformed syntax, and
    a mapping key given twice (plain parsers keep the last one without a word)."""
    path = Path(path)
    kind = "JSON" if path.suffix.lower() == ".json" else "YAML"
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not a text config file (byte {exc.start} is not UTF-8)") from None
    try:
        return json.loads(text, object_pairs_hook=_unique_json_keys) if kind == "JSON" else _load_yaml_unique(text)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    except Exception as exc:  # yaml.YAMLError / json.JSONDecodeError
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"{path}: malformed {kind}: {first}") from None


def _unique_json_keys(pairs: list) -> dict:
    """json object hook: a key given twice is refused (the last one would win without a word)."""
    out = {}
    for k, v in pairs:
        if k in out:
            raise ConfigError(f"key {k!r} is given twice")
        out[k] = v
    return out


def _load_yaml_unique(text: str):
    """yaml.safe_load that refuses a mapping key given twice (plain safe_load keeps the last)."""
    import yaml

    class UniqueKeyLoader(yaml.SafeLoader):
        pass

    def construct_mapping(loader, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            k = loader.construct_object(key_node, deep=deep)
            if k in seen:
                raise ConfigError(f"key {k!r} is given twice (line {key_node.start_mark.line + 1})")
            seen.add(k)
        return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)

    UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, construct_mapping)
    return yaml.load(text, Loader=UniqueKeyLoader)


def _from_mapping(data: dict, source: str) -> TaskConfig:
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level, got {type(data).__name__}")
    data = dict(data)
    preset = data.pop("preset", None)
    if preset is not None:
        if preset not in PRESETS:
            raise ConfigError(f"preset: unknown preset {preset!r} (presets: {', '.join(PRESETS)})")
        base = PRESETS[preset]().to_dict()
        data = _deep_merge(base, data)
    return TaskConfig.from_dict(data)


def _deep_merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict) and k not in ("families", "score_mechanism", "types",
                                                                                "distortions"):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = v
    return out
