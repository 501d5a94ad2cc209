"""Task-generation configs: plain dataclasses, loadable from YAML/JSON, validated.

Every field that is a range ``(low, high)`` is sampled uniformly per task (ints
inclusive). Mixtures are ``{name: weight}`` dicts, sampled per task or per node.
Validation errors name the dotted field path and the offending value, e.g.
``ConfigError: graph.n_nodes: low must be <= high, got [12, 5]``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Union, get_args, get_origin, get_type_hints

GRAPH_FAMILIES = ("erdos_renyi", "scale_free", "fixed")
MECHANISMS = ("linear", "mlp", "rff", "poly")
#: kinds of observed root covariate taken from a real table (semi-synthetic mode; see
#: `causalgen.prior.tables.infer_type` for the rule that assigns them):
#:   binary          {0, 1}-valued, or any two levels
#:   ordinal         integer-coded ordered levels (a few)
#:   categorical     integer-coded unordered levels (declared: values cannot tell it from ordinal)
#:   count           non-negative integers (many distinct values)
#:   semicontinuous  a point mass at zero plus a positive, skewed part (earnings-like)
#:   bounded         values in a bounded interval (e.g. [0, 1] shares)
#:   skewed          continuous with strong skew
#:   continuous      everything else
COVARIATE_TYPES = ("continuous", "binary", "ordinal", "categorical", "count", "semicontinuous", "bounded", "skewed")
NOISE_FAMILIES = ("gaussian", "laplace", "student_t", "uniform")
#: monotone transforms a covariate column may be measured through (`CovariateConfig.distortions`)
DISTORTIONS = ("exp", "cube", "power", "ratio")
OUTCOME_TYPES = ("continuous", "binary")
#: the most levels an ordinal or categorical node may have
MAX_LEVELS = 10
ACTIVATIONS = ("tanh", "relu", "sigmoid", "square", "identity", "sin")


class ConfigError(ValueError):
    """A config field has a bad value; the message names the field."""


@dataclass
class GraphConfig:
    """Random DAG over all nodes (observed, hidden, treatment, outcome, post-treatment)."""

    #: mixture over graph families, sampled per task
    families: dict[str, float] = field(default_factory=lambda: {"erdos_renyi": 1.0, "scale_free": 1.0})
    #: number of nodes, inclusive range
    n_nodes: tuple[int, int] = (5, 15)
    #: expected number of parents per node (ER edge probability = 2 k / (J - 1));
    #: for scale-free graphs, the number of edges each new node attaches with
    expected_parents: tuple[float, float] = (1.0, 3.0)
    #: at most this many parents per node (a node with more keeps its nearest, highest-id
    #: ones); None = no cap. Large graphs want one: mechanism parameters are drawn for
    #: (nodes x largest possible in-degree) slots per task
    max_parents: int | None = None
    #: a fixed user DAG as an edge list over node names (family "fixed");
    #: build it from networkx with `GraphConfig.from_networkx`
    edges: list[tuple[str, str]] | None = None
    nodes: list[str] | None = None

    @classmethod
    def from_networkx(cls, dag, **kwargs) -> "GraphConfig":
        """A config that always uses the given networkx DiGraph (must be acyclic)."""
        import networkx as nx

        if not nx.is_directed_acyclic_graph(dag):
            raise ConfigError("graph.edges: the networkx graph is not a directed acyclic graph")
        nodes = [str(n) for n in dag.nodes]
        edges = [(str(u), str(v)) for u, v in dag.edges]
        return cls(families={"fixed": 1.0}, n_nodes=(len(nodes), len(nodes)), edges=edges, nodes=nodes, **kwargs)


@dataclass
class RoleConfig:
    """How treatment, outcome and hidden nodes are chosen."""

    #: fraction of the confounders that are hidden (not in x), range per task
    hidden_confounder_fraction: tuple[float, float] = (0.0, 0.0)
    #: probability that a task has no causal path T -> Y (true effect exactly 0)
    zero_effect_prob: float = 0.0
    #: fixed treatment / outcome node names (only with a fixed graph)
    treatment: str | None = None
    outcome: str | None = None
    #: tasks with fewer observed covariates are resampled
    min_covariates: int = 1


@dataclass
class MechanismConfig:
    """Mechanism families for every non-treatment node."""

    families: dict[str, float] = field(
        default_factory=lambda: {"linear": 1.0, "mlp": 1.0, "rff": 1.0, "poly": 1.0}
    )
    #: "task": one family for all nodes of a task; "node": a family per node
    mixing: str = "node"
    #: hidden width of the random MLP; 0 = one layer act(w . parents) (Do-PFN style)
    mlp_hidden: int = 8
    mlp_activations: tuple[str, ...] = ("tanh", "relu", "sigmoid", "square", "sin")
    #: number of random Fourier features (GP-like functions)
    rff_features: int = 100
    rff_lengthscale: tuple[float, float] = (0.5, 2.0)
    #: |linear weight| range (sign random)
    linear_weight: tuple[float, float] = (0.5, 2.0)


@dataclass
class NoiseConfig:
    """Exogenous noise: every family has mean 0 and variance 1 before scaling."""

    families: dict[str, float] = field(
        default_factory=lambda: {"gaussian": 1.0, "laplace": 1.0, "student_t": 1.0, "uniform": 1.0}
    )
    #: noise std relative to the (standardised) mechanism output
    scale: tuple[float, float] = (0.3, 1.0)
    #: probability that a node's noise scale depends on its parents
    heteroscedastic_prob: float = 0.2
    #: probability that a node's noise enters inside its mechanism
    nonadditive_prob: float = 0.1


@dataclass
class TreatmentConfig:
    """Binary treatment T ~ Bernoulli(e), logit e = strength * s(parents) + offset."""

    #: logit temperature on the standardised treatment score: larger = more
    #: confounding and weaker overlap
    confounding_strength: tuple[float, float] = (0.5, 2.0)
    #: target share of treated units (the offset is calibrated to hit it)
    treated_share: tuple[float, float] = (0.2, 0.8)
    #: clip the true propensity into [clip, 1 - clip] (0 = no clipping)
    propensity_clip: float = 0.0
    #: mechanism family of the treatment score (must be in mechanism families' names)
    score_mechanism: dict[str, float] = field(default_factory=lambda: {"linear": 1.0, "mlp": 1.0})


@dataclass
class EffectConfig:
    """Outcome: Y = s(non-T parents) + noise, standardised, then + T * (tau + eta * h)."""

    #: |tau|, in standard deviations of Y(0)
    size: tuple[float, float] = (0.0, 1.0)
    #: "random", "positive" or "negative"
    sign: str = "random"
    #: eta: scale of the heterogeneous part h (a standardised function of Y's parents)
    heterogeneity: tuple[float, float] = (0.0, 0.5)


@dataclass
class QCConfig:
    """Reject-and-resample rules; rejections are counted by reason in meta."""

    min_units_per_arm: int = 5
    min_outcome_std: float = 1e-3
    max_abs_value: float = 1e4
    #: reject tasks whose Monte-Carlo population ATE has a larger standard error
    #: (units of Y, whose control-world sd is ~1)
    max_ate_se: float = 0.1
    #: reject tasks whose unit-level effect y1 - y0 has an upper tail index (Hill estimate on
    #: the Monte-Carlo sample) below this: such a tail has (nearly) infinite variance, so no
    #: affordable sample pins the population ATE down (causalgen.prior.ate)
    min_effect_tail_index: float = 2.5
    #: reject tasks whose Monte-Carlo sample variance (on which ate_se rests) has a larger
    #: relative standard error, sqrt((kurtosis - 1) / units): a few units carry the variance
    max_effect_variance_error: float = 0.5
    max_attempts: int = 25


@dataclass
class SetoguchiConfig:
    """Setoguchi / Lee et al. scenarios A-G (as used by Tarr & Imai)."""

    scenario: str = "G"
    #: std of random multiplicative perturbations of the propensity and outcome
    #: coefficients (0 = the published coefficients): a mechanism-shift dial
    mechanism_shift: float = 0.0
    outcome_noise_std: float = 0.1 ** 0.5


@dataclass
class CovariateConfig:
    """How covariates are measured and how many of them matter (`TaskConfig.covariates`).

    Without this section every node is continuous, x holds the nodes themselves and every
    covariate is part of the main graph. The semantics are in `causalgen.prior.measure`.
    """

    #: observation type of every non-treatment, non-outcome node, sampled per node
    #: (COVARIATE_TYPES); children read the typed value, standardised, and x holds it
    types: dict[str, float] = field(default_factory=lambda: {"continuous": 1.0})
    #: levels of ordinal and categorical nodes, inclusive range
    levels: tuple[int, int] = (3, 6)
    #: share of units at level 1 of a binary node
    binary_share: tuple[float, float] = (0.1, 0.9)
    #: share of zeros of a semicontinuous node
    zero_share: tuple[float, float] = (0.2, 0.7)
    #: probability, per continuous node, that its column in x is a random monotone transform of
    #: it (DISTORTIONS) while its children read the node itself
    distortion_prob: float = 0.0
    distortions: dict[str, float] = field(default_factory=lambda: {d: 1.0 for d in DISTORTIONS})
    #: irrelevant covariates: extra nodes forming a DAG of their own, with no path to T or Y
    #: (d-separated from both), inclusive range per task
    irrelevant: tuple[int, int] = (0, 0)
    #: probability that a pre-treatment node is a weak-signal covariate: its children read it
    #: multiplied by a factor drawn from weak_scale
    weak_prob: float = 0.0
    weak_scale: tuple[float, float] = (0.05, 0.2)


@dataclass
class OutcomeConfig:
    """The outcome's type (`TaskConfig.outcome`); without this section it is continuous.

    A binary outcome is Bernoulli through a latent logit: the continuous outcome of the SCM,
    y*, gives p = sigmoid(a y* + b) with b calibrated to the prevalence on the task's own units,
    and Y = 1[u < p] with the unit's exogenous uniform u shared by both worlds.
    """

    #: mixture over OUTCOME_TYPES, sampled per task
    types: dict[str, float] = field(default_factory=lambda: {"continuous": 1.0})
    #: P(Y = 1) of a binary outcome on the task's own units (the offset b hits it)
    prevalence: tuple[float, float] = (0.1, 0.9)
    #: slope a of the latent logit (y* has sd ~1)
    logit_scale: tuple[float, float] = (1.0, 3.0)


@dataclass
class TableConfig:
    """Real-table covariates (`TaskConfig.tables`, the semi-synthetic mode).

    Per task one table is drawn (uniformly among the sources), then a random subset of its
    columns becomes observed root covariates and the table's rows are the task's population:
    the SCM is simulated on every row, the task's units are a random subset of them, and the
    population ATE is the exact mean over the table (`ate_se = 0`). ``graph.n_nodes`` then
    counts the simulated nodes besides the table's columns.
    """

    #: pool names ("sklearn:NAME", "statsmodels:NAME", "default" = causalgen.prior.tables'
    #: DEFAULT_POOL), CSV/Parquet paths or folders of them (in Python also pandas DataFrames)
    sources: list = field(default_factory=lambda: ["default"])
    #: number of the table's columns used per task, inclusive range (capped by the table)
    columns: tuple[int, int] = (2, 20)
    #: missing values: "drop_rows" (columns > 20% missing dropped, then incomplete rows) or "error"
    missing: str = "drop_rows"
    #: drop text columns instead of refusing the table
    drop_text: bool = False


@dataclass
class TaskConfig:
    """Everything `sample_task` needs besides the seed."""

    #: "random_dag" (the general prior) or "setoguchi" (fixed scenario DGPs)
    kind: str = "random_dag"
    name: str = "custom"
    #: number of units N, inclusive range
    n_units: tuple[int, int] = (200, 1000)
    #: how N is drawn from n_units: "linear" (uniform) or "log" (log-uniform)
    n_units_scale: str = "linear"
    graph: GraphConfig = field(default_factory=GraphConfig)
    roles: RoleConfig = field(default_factory=RoleConfig)
    mechanism: MechanismConfig = field(default_factory=MechanismConfig)
    noise: NoiseConfig = field(default_factory=NoiseConfig)
    treatment: TreatmentConfig = field(default_factory=TreatmentConfig)
    effect: EffectConfig = field(default_factory=EffectConfig)
    qc: QCConfig = field(default_factory=QCConfig)
    setoguchi: SetoguchiConfig = field(default_factory=SetoguchiConfig)
    #: units of the fresh interventional sample for the Monte-Carlo population ATE
    #: (used only when no closed form exists): the most it may use, see below
    ate_mc_units: int = 4096
    #: the Monte-Carlo sample size is fixed from the task's own units (the pilot) to
    #: reach this standard error (in units of Y, whose control-world sd is ~1), within
    #: ate_mc_units; 0 = always use all ate_mc_units (causalgen.prior.ate)
    ate_mc_tolerance: float = 0.01
    #: fresh units are simulated in rounds of this many (memory), and the sample is a
    #: whole number of rounds of at least one
    ate_mc_round_units: int = 1024
    #: "auto": closed form where one exists, else Monte Carlo; "monte_carlo": always
    ate_method: str = "auto"
    #: optional sections of the wider prior (None: off, and absent from to_dict, so configs
    #: written before they existed keep their digest)
    covariates: CovariateConfig | None = None
    outcome: OutcomeConfig | None = None
    tables: TableConfig | None = None

    def to_dict(self) -> dict[str, Any]:
        d = _to_jsonable(dataclasses.asdict(self))
        for key, off in _OPTIONAL_DEFAULTS.items():
            if d.get(key) == off:
                del d[key]
        if self.tables is not None:
            d["tables"]["sources"] = [_source_name(v) for v in self.tables.sources]
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any], _validate: bool = True) -> "TaskConfig":
        cfg = _build(cls, data, path="")
        return validate(cfg) if _validate else cfg

    def replace(self, **changes) -> "TaskConfig":
        """A validated copy with top-level fields replaced (dotted keys allowed)."""
        d = self.to_dict()
        for key, value in changes.items():
            parts = key.replace("__", ".").split(".")
            node = d
            for p in parts[:-1]:
                if node.get(p) is None and p in _SECTIONS:  # an optional section switched on
                    node[p] = _to_jsonable(dataclasses.asdict(_SECTIONS[p]()))
                node = node[p]
            node[parts[-1]] = value
        out = TaskConfig.from_dict(d, _validate=False)
        if self.tables is not None and out.tables is not None and "tables.sources" not in {
                k.replace("__", ".") for k in changes}:
            out.tables.sources = list(self.tables.sources)  # keep in-memory tables (DataFrames)
        return validate(out)


#: the optional sections and their value when off (dropped from to_dict then)
_SECTIONS = {"covariates": CovariateConfig, "outcome": OutcomeConfig, "tables": TableConfig}
_OPTIONAL_DEFAULTS = {"covariates": None, "outcome": None, "tables": None, "n_units_scale": "linear"}


def _source_name(source) -> str:
    """A table source as a config can hold it; an in-memory DataFrame cannot be written down."""
    if isinstance(source, (str, bytes)) or hasattr(source, "__fspath__"):
        return str(source)
    return f"<{type(source).__name__}>"


# ---------------------------------------------------------------- (de)serialisation


def _to_jsonable(obj):
    if isinstance(obj, dict):
        return {k: _to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_to_jsonable(v) for v in obj]
    return obj


def _type_name(tp) -> str:
    return getattr(tp, "__name__", str(tp))


def _build(cls, data, path: str):
    if not isinstance(data, dict):
        raise ConfigError(f"{path or 'config'}: expected a mapping, got {type(data).__name__} {data!r}")
    hints = get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"{path + '.' if path else ''}{unknown[0]}: unknown field (known: {', '.join(sorted(names))})")
    kwargs = {}
    for name, value in data.items():
        kwargs[name] = _coerce(hints[name], value, f"{path}.{name}" if path else name)
    return cls(**kwargs)


def _coerce(tp, value, path):
    origin = get_origin(tp)
    args = get_args(tp)
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, path)
    if origin is Union or (origin is not None and str(origin) == "<class 'types.UnionType'>"):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(inner[0], value, path)
    if str(type(tp)) == "<class 'types.UnionType'>":
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(inner[0], value, path)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{path}: expected a list, got {type(value).__name__} {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(args[0], v, f"{path}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise ConfigError(f"{path}: expected {len(args)} values [low, high], got {list(value)!r}")
        return tuple(_coerce(a, v, f"{path}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{path}: expected a list, got {type(value).__name__} {value!r}")
        return [_coerce(args[0], v, f"{path}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: expected a mapping name -> weight, got {type(value).__name__} {value!r}")
        return {str(k): _coerce(args[1], v, f"{path}.{k}") for k, v in value.items()}
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{path}: expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigError(f"{path}: expected an integer, got {type(value).__name__} {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{path}: expected a number, got {type(value).__name__} {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{path}: expected a string, got {type(value).__name__} {value!r}")
        return value
    return value


# ---------------------------------------------------------------------- validation


def _check_range(path, rng, low_bound=None, high_bound=None, integer=False):
    if not isinstance(rng, (tuple, list)) or len(rng) != 2:
        raise ConfigError(f"{path}: expected [low, high], got {rng!r}")
    lo, hi = rng
    for v in (lo, hi):
        if integer and (isinstance(v, bool) or not isinstance(v, int)):
            raise ConfigError(f"{path}: expected integers, got {list(rng)!r}")
        if not integer and (isinstance(v, bool) or not isinstance(v, (int, float)) or v != v):
            raise ConfigError(f"{path}: expected numbers, got {list(rng)!r}")
    if lo > hi:
        raise ConfigError(f"{path}: low must be <= high, got {list(rng)!r}")
    if low_bound is not None and lo < low_bound:
        raise ConfigError(f"{path}: values must be >= {low_bound}, got {list(rng)!r}")
    if high_bound is not None and hi > high_bound:
        raise ConfigError(f"{path}: values must be <= {high_bound}, got {list(rng)!r}")


def _check_mixture(path, mix, allowed):
    if not isinstance(mix, dict) or not mix:
        raise ConfigError(f"{path}: expected a non-empty mapping name -> weight, got {mix!r}")
    for name, w in mix.items():
        if name not in allowed:
            raise ConfigError(f"{path}.{name}: unknown name (choose from {', '.join(allowed)})")
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not w >= 0:
            raise ConfigError(f"{path}.{name}: weight must be a number >= 0, got {w!r}")
    if sum(mix.values()) <= 0:
        raise ConfigError(f"{path}: weights must not all be zero, got {mix!r}")


def _check_prob(path, p):
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
        raise ConfigError(f"{path}: expected a probability in [0, 1], got {p!r}")


def validate(cfg: TaskConfig) -> TaskConfig:
    """Raise `ConfigError` naming the first bad field; return cfg unchanged."""
    if cfg.kind not in ("random_dag", "setoguchi"):
        raise ConfigError(f"kind: expected 'random_dag' or 'setoguchi', got {cfg.kind!r}")
    _check_range("n_units", cfg.n_units, low_bound=10, high_bound=10_000_000, integer=True)
    if isinstance(cfg.ate_mc_units, bool) or not isinstance(cfg.ate_mc_units, int) or cfg.ate_mc_units < 100:
        raise ConfigError(f"ate_mc_units: expected an integer >= 100, got {cfg.ate_mc_units!r}")

    tol = cfg.ate_mc_tolerance
    if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not 0 <= tol < float("inf"):
        raise ConfigError(f"ate_mc_tolerance: expected a number >= 0, got {tol!r}")
    rnd = cfg.ate_mc_round_units
    if isinstance(rnd, bool) or not isinstance(rnd, int) or rnd < 100:
        raise ConfigError(f"ate_mc_round_units: expected an integer >= 100, got {rnd!r}")

    if cfg.ate_method not in ("auto", "monte_carlo"):
        raise ConfigError(f"ate_method: expected 'auto' or 'monte_carlo', got {cfg.ate_method!r}")

    g = cfg.graph
    _check_mixture("graph.families", g.families, GRAPH_FAMILIES)
    _check_range("graph.n_nodes", g.n_nodes, low_bound=3, high_bound=200, integer=True)
    _check_range("graph.expected_parents", g.expected_parents, low_bound=0.0)
    if g.max_parents is not None and (isinstance(g.max_parents, bool) or not isinstance(g.max_parents, int) or g.max_parents < 1):
        raise ConfigError(f"graph.max_parents: expected null or an integer >= 1, got {g.max_parents!r}")
    fixed = g.families.get("fixed", 0) > 0
    if fixed:
        if len([k for k, w in g.families.items() if w > 0]) != 1:
            raise ConfigError("graph.families: 'fixed' cannot be mixed with random families")
        if not g.nodes or g.edges is None:
            raise ConfigError("graph.edges: a fixed graph needs graph.nodes and graph.edges")
        if len(set(g.nodes)) != len(g.nodes):
            raise ConfigError(f"graph.nodes: node names must be unique, got {g.nodes!r}")
        for i, e in enumerate(g.edges):
            if len(e) != 2 or e[0] not in g.nodes or e[1] not in g.nodes:
                raise ConfigError(f"graph.edges[{i}]: edge {list(e)!r} names a node not in graph.nodes")
        if not 3 <= len(g.nodes) <= 200:
            raise ConfigError(f"graph.nodes: a fixed graph needs 3..200 nodes, got {len(g.nodes)}")
        import networkx as nx

        dag = nx.DiGraph()
        dag.add_nodes_from(g.nodes)
        dag.add_edges_from(g.edges)
        if not nx.is_directed_acyclic_graph(dag):
            raise ConfigError("graph.edges: the fixed graph has a directed cycle")
    elif g.edges is not None or g.nodes is not None:
        raise ConfigError("graph.edges: edges/nodes are only used with graph.families = {fixed: 1}")

    r = cfg.roles
    _check_range("roles.hidden_confounder_fraction", r.hidden_confounder_fraction, 0.0, 1.0)
    _check_prob("roles.zero_effect_prob", r.zero_effect_prob)
    if not isinstance(r.min_covariates, int) or r.min_covariates < 0:
        raise ConfigError(f"roles.min_covariates: expected an integer >= 0, got {r.min_covariates!r}")
    for name in ("treatment", "outcome"):
        v = getattr(r, name)
        if v is not None:
            if not fixed:
                raise ConfigError(f"roles.{name}: a fixed {name} node needs a fixed graph")
            if v not in g.nodes:
                raise ConfigError(f"roles.{name}: {v!r} is not a node of graph.nodes")

    m = cfg.mechanism
    _check_mixture("mechanism.families", m.families, MECHANISMS)
    if m.mixing not in ("task", "node"):
        raise ConfigError(f"mechanism.mixing: expected 'task' or 'node', got {m.mixing!r}")
    if not isinstance(m.mlp_hidden, int) or not 0 <= m.mlp_hidden <= 256:
        raise ConfigError(f"mechanism.mlp_hidden: expected an integer in [0, 256], got {m.mlp_hidden!r}")
    if not m.mlp_activations or any(a not in ACTIVATIONS for a in m.mlp_activations):
        raise ConfigError(f"mechanism.mlp_activations: choose from {', '.join(ACTIVATIONS)}, got {list(m.mlp_activations)!r}")
    if not isinstance(m.rff_features, int) or not 1 <= m.rff_features <= 4096:
        raise ConfigError(f"mechanism.rff_features: expected an integer in [1, 4096], got {m.rff_features!r}")
    _check_range("mechanism.rff_lengthscale", m.rff_lengthscale, low_bound=1e-3)
    _check_range("mechanism.linear_weight", m.linear_weight, low_bound=0.0)

    n = cfg.noise
    _check_mixture("noise.families", n.families, NOISE_FAMILIES)
    _check_range("noise.scale", n.scale, low_bound=0.0, high_bound=100.0)
    _check_prob("noise.heteroscedastic_prob", n.heteroscedastic_prob)
    _check_prob("noise.nonadditive_prob", n.nonadditive_prob)

    t = cfg.treatment
    _check_range("treatment.confounding_strength", t.confounding_strength, low_bound=0.0, high_bound=50.0)
    _check_range("treatment.treated_share", t.treated_share, low_bound=0.01, high_bound=0.99)
    if isinstance(t.propensity_clip, bool) or not isinstance(t.propensity_clip, (int, float)) or not 0 <= t.propensity_clip < 0.5:
        raise ConfigError(f"treatment.propensity_clip: expected a number in [0, 0.5), got {t.propensity_clip!r}")
    _check_mixture("treatment.score_mechanism", t.score_mechanism, MECHANISMS)

    e = cfg.effect
    _check_range("effect.size", e.size, low_bound=0.0, high_bound=1000.0)
    _check_range("effect.heterogeneity", e.heterogeneity, low_bound=0.0, high_bound=1000.0)
    if e.sign not in ("random", "positive", "negative"):
        raise ConfigError(f"effect.sign: expected 'random', 'positive' or 'negative', got {e.sign!r}")

    q = cfg.qc
    if not isinstance(q.min_units_per_arm, int) or q.min_units_per_arm < 1:
        raise ConfigError(f"qc.min_units_per_arm: expected an integer >= 1, got {q.min_units_per_arm!r}")
    if not isinstance(q.max_attempts, int) or q.max_attempts < 1:
        raise ConfigError(f"qc.max_attempts: expected an integer >= 1, got {q.max_attempts!r}")
    if not q.min_outcome_std >= 0:
        raise ConfigError(f"qc.min_outcome_std: expected a number >= 0, got {q.min_outcome_std!r}")
    if isinstance(q.max_ate_se, bool) or not isinstance(q.max_ate_se, (int, float)) or not q.max_ate_se > 0:
        raise ConfigError(f"qc.max_ate_se: expected a number > 0, got {q.max_ate_se!r}")
    for name in ("min_effect_tail_index", "max_effect_variance_error"):
        v = getattr(q, name)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not v >= 0:
            raise ConfigError(f"qc.{name}: expected a number >= 0, got {v!r}")
    if not q.max_abs_value > 0:
        raise ConfigError(f"qc.max_abs_value: expected a number > 0, got {q.max_abs_value!r}")

    if cfg.n_units_scale not in ("linear", "log"):
        raise ConfigError(f"n_units_scale: expected 'linear' or 'log', got {cfg.n_units_scale!r}")
    c = cfg.covariates
    if c is not None:
        _check_mixture("covariates.types", c.types, COVARIATE_TYPES)
        _check_range("covariates.levels", c.levels, low_bound=3, high_bound=MAX_LEVELS, integer=True)
        _check_range("covariates.binary_share", c.binary_share, 0.01, 0.99)
        _check_range("covariates.zero_share", c.zero_share, 0.01, 0.99)
        _check_prob("covariates.distortion_prob", c.distortion_prob)
        _check_mixture("covariates.distortions", c.distortions, DISTORTIONS)
        _check_range("covariates.irrelevant", c.irrelevant, low_bound=0, high_bound=200, integer=True)
        _check_prob("covariates.weak_prob", c.weak_prob)
        _check_range("covariates.weak_scale", c.weak_scale, low_bound=0.0, high_bound=1.0)
    o = cfg.outcome
    if o is not None:
        _check_mixture("outcome.types", o.types, OUTCOME_TYPES)
        _check_range("outcome.prevalence", o.prevalence, 0.01, 0.99)
        _check_range("outcome.logit_scale", o.logit_scale, low_bound=0.01, high_bound=50.0)
    tb = cfg.tables
    if tb is not None:
        if cfg.kind != "random_dag":
            raise ConfigError("tables: real-table covariates need kind 'random_dag'")
        if not isinstance(tb.sources, (list, tuple)) or not tb.sources:
            raise ConfigError(f"tables.sources: expected a non-empty list of pool names, paths or DataFrames, got {tb.sources!r}")
        for i, src in enumerate(tb.sources):
            if isinstance(src, str) and (not src or src.startswith("<")):
                raise ConfigError(f"tables.sources[{i}]: {src!r} is not a table: pass the DataFrame itself in Python "
                                  "(a corpus config can only name files and pool tables)")
        _check_range("tables.columns", tb.columns, low_bound=1, high_bound=1000, integer=True)
        if tb.missing not in ("drop_rows", "error"):
            raise ConfigError(f"tables.missing: expected 'drop_rows' or 'error', got {tb.missing!r}")
        if not isinstance(tb.drop_text, bool):
            raise ConfigError(f"tables.drop_text: expected true/false, got {tb.drop_text!r}")
        if g.families.get("fixed", 0) > 0:
            raise ConfigError("tables: real-table covariates cannot be combined with a fixed graph")

    s = cfg.setoguchi
    if s.scenario not in tuple("ABCDEFG"):
        raise ConfigError(f"setoguchi.scenario: expected one of A..G, got {s.scenario!r}")
    if not s.mechanism_shift >= 0:
        raise ConfigError(f"setoguchi.mechanism_shift: expected a number >= 0, got {s.mechanism_shift!r}")
    if not s.outcome_noise_std >= 0:
        raise ConfigError(f"setoguchi.outcome_noise_std: expected a number >= 0, got {s.outcome_noise_std!r}")
    return cfg
