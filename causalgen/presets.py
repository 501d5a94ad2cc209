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
"""

from __future__ import annotations

from .config import (
    EffectConfig,
    GraphConfig,
    MechanismConfig,
    NoiseConfig,
    RoleConfig,
    SetoguchiConfig,
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


PRESETS = {
    "default": default,
    "er5000-linear": er5000_linear,
    "er5000-nonlinear": er5000_nonlinear,
    **{f"setoguchi-{s}": (lambda s=s: _setoguchi(s)) for s in "ABCDEFG"},
    "setoguchi-G-shift": lambda: _setoguchi("G", 0.3),
}
