"""The Parquet view of a corpus: one row per task, with explicit `datasets.Features`.

This is what `datasets.load_dataset` and the Hugging Face dataset viewer read
without any causalgen code. Each row carries the whole task (data, ground truth,
graph, roles, meta) plus the task's corpus index, seed and split, so a row is a
complete, self-describing `Task` (`row_to_task` turns it back into one).

Arrays are built straight from numpy into Arrow list arrays (offsets + values),
never through Python lists: a 1000 x 20 covariate matrix is 20,000 floats, and
boxing them one by one would dominate publishing time.
"""

from __future__ import annotations

import json
from typing import Any, Mapping, Sequence

import numpy as np

from ..prior.task import ROLE_NAMES, Role, Task

#: Column -> (datasets feature spec, description). The order is the column order
#: of the Parquet files; the descriptions feed the dataset card's field table,
#: so the schema and its documentation cannot drift apart.
COLUMNS: dict[str, tuple[Any, str]] = {}


def _define_columns() -> None:
    from datasets import ClassLabel, List, Value

    f32, f64, i64 = Value("float32"), Value("float64"), Value("int64")
    spec = [
        ("task_index", i64, "Position of the task in the source corpus (`open_corpus(corpus)[task_index]`); unique."),
        ("seed", i64, "Seed the task was sampled with: `causalgen.sample_task(config, seed)` regenerates it bit for bit."),
        ("split", Value("string"), "`train`, `validation` or `test`, a pure function of `seed` (see *Splits*)."),
        ("n_units", i64, "N, number of units (rows of `x`)."),
        ("n_covariates", i64, "d, number of observed covariates (columns of `x`)."),
        ("n_nodes", i64, "J, number of nodes of the causal graph (observed, hidden, treatment, outcome, post-treatment)."),
        ("x", List(List(f32)), "(N, d) observed pre-treatment covariates; column k is graph node `covariate_nodes[k]`. Continuous nodes are standardised per node; typed ones hold their observed values (`covariate_types`), real-table columns the table's values."),
        ("covariate_types", List(Value("string")), "(d,) observation type of each column of `x`: continuous, binary (0/1), ordinal (integer codes 0..k-1, ordered), categorical (integer codes 0..k-1, unordered), count, semicontinuous (zeros plus a positive part), bounded (in [0, 1]) or skewed."),
        ("covariate_relevance", List(Value("string")), "(d,) `relevant`, `weak` (its children read it scaled down) or `irrelevant` (no path to T or Y: d-separated from both)."),
        ("outcome_type", Value("string"), "`continuous`, or `binary` (Bernoulli through a latent logit; y, y0, y1 in {0, 1}, effects on the probability scale)."),
        ("t", List(Value("int8")), "(N,) binary treatment, 0 or 1."),
        ("y", List(f32), "(N,) observed outcome; exactly `where(t == 1, y1, y0)`."),
        ("y0", List(f32), "(N,) potential outcome under do(T=0), drawn with the same exogenous noise as the factual world."),
        ("y1", List(f32), "(N,) potential outcome under do(T=1), same noise; `y1 - y0` is the unit-level effect."),
        ("propensity", List(f32), "(N,) true propensity P(T=1 | parents of T) of each unit."),
        ("ate", f64, "Population average treatment effect E[Y(1) - Y(0)] of the task's SCM (closed form where one exists, else Monte Carlo)."),
        ("ate_se", f64, "Standard error of `ate`: 0.0 when `ate` is exact, the Monte-Carlo standard error otherwise."),
        ("sate", f64, "Sample ATE: mean of `y1 - y0` over the N units."),
        ("att", f64, "Sample ATT: mean of `y1 - y0` over the treated units."),
        ("identifiable", Value("bool"), "True iff the observed covariates contain a valid back-door adjustment set for (T, Y); `meta.adjustment_set` names one."),
        ("adjacency", List(List(Value("bool"))), "(J, J) adjacency of the causal DAG: `adjacency[i][j]` is an edge i -> j; node ids are a topological order."),
        ("roles", List(ClassLabel(names=list(ROLE_NAMES))), "(J,) role of each node: " + ", ".join(f"{int(r)} {r.name.lower()}" for r in Role) + "."),
        ("covariate_nodes", List(Value("int32")), "(d,) graph node id of each column of `x`."),
        ("treatment_node", Value("int32"), "Node id of the treatment T."),
        ("outcome_node", Value("int32"), "Node id of the outcome Y."),
        ("graph_family", Value("string"), "Random graph family the DAG was drawn from (e.g. `erdos_renyi`, `scale_free`)."),
        ("mechanism", Value("string"), "Mechanism family of the task (`mixed` when drawn per node)."),
        ("treated_share", f64, "Share of treated units, mean of `t`."),
        ("propensity_min", Value("float32"), "Smallest true propensity in the task (overlap diagnostic)."),
        ("propensity_max", Value("float32"), "Largest true propensity in the task (overlap diagnostic)."),
        ("meta", Value("string"), "Provenance as a JSON object: drawn hyperparameters, mechanism and noise family per node, QC rejections, overlap diagnostics."),
    ]
    COLUMNS.update({name: (feature, doc) for name, feature, doc in spec})


def task_features():
    """The `datasets.Features` of the Parquet view (a fresh object on each call)."""
    from datasets import Features

    if not COLUMNS:
        _define_columns()
    return Features({name: feature for name, (feature, _) in COLUMNS.items()})


def column_docs() -> dict[str, str]:
    """Column name -> one-sentence definition, in column order."""
    if not COLUMNS:
        _define_columns()
    return {name: doc for name, (_, doc) in COLUMNS.items()}


def estimate_row_bytes(n_units, n_covariates, n_nodes) -> np.ndarray:
    """Approximate Arrow bytes of each row, from manifest counts alone.

    Used to plan Parquet file boundaries before any shard is decoded: x is 4 bytes
    per value plus one 4-byte offset per row; t, y, y0, y1 and propensity are
    17 bytes per unit; the graph is J*J bools plus 8-byte role codes; meta and
    scalars are covered by a flat 2 KB.
    """
    n = np.asarray(n_units, dtype=np.int64)
    d = np.asarray(n_covariates, dtype=np.int64)
    j = np.asarray(n_nodes, dtype=np.int64)
    return 4 * n * d + 4 * n + 17 * n + j * j + 4 * j + 8 * j + 4 * d + 2048


# ------------------------------------------------------------------ tasks -> Arrow


def _offsets(counts) -> "Any":
    import pyarrow as pa

    counts = np.asarray(counts, dtype=np.int64)
    out = np.zeros(counts.shape[0] + 1, dtype=np.int64)
    np.cumsum(counts, out=out[1:])
    if out[-1] > np.iinfo(np.int32).max:
        # Arrow `list` offsets are int32: one table must hold < 2**31 values per
        # column. The publisher builds tables of at most a few tens of MB.
        raise ValueError(f"a Parquet batch would hold {int(out[-1])} values in one column (max 2**31 - 1); use smaller batches")
    return pa.array(out.astype(np.int32), type=pa.int32())


def _list(parts: Sequence[np.ndarray], dtype: str, pa_type) -> "Any":
    import pyarrow as pa

    values = np.concatenate([np.asarray(p, dtype=dtype).reshape(-1) for p in parts]) if parts else np.zeros(0, dtype)
    return pa.ListArray.from_arrays(_offsets([np.size(p) for p in parts]), pa.array(values, type=pa_type))


def _list_of_lists(mats: Sequence[np.ndarray], dtype: str, pa_type) -> "Any":
    """(n_i, m_i) matrices -> list<list<value>>, one outer list per matrix, one inner list per row."""
    import pyarrow as pa

    row_lengths = [np.full(m.shape[0], m.shape[1], dtype=np.int64) for m in mats]
    inner_counts = np.concatenate(row_lengths) if row_lengths else np.zeros(0, np.int64)
    values = np.concatenate([np.asarray(m, dtype=dtype).reshape(-1) for m in mats]) if mats else np.zeros(0, dtype)
    inner = pa.ListArray.from_arrays(_offsets(inner_counts), pa.array(values, type=pa_type))
    return pa.ListArray.from_arrays(_offsets([m.shape[0] for m in mats]), inner)


def tasks_to_table(
    tasks: Sequence[Task],
    *,
    task_indices: Sequence[int],
    splits: Sequence[str],
    summaries: Mapping[str, Sequence] | None = None,
):
    """A `pyarrow.Table` with one row per task, typed exactly as `task_features()`.

    task_indices / splits: corpus index and split of each task. summaries: the
    manifest's per-task summary columns for these tasks (graph_family,
    mechanism, treated_share, propensity_min, propensity_max); computed from the
    tasks when omitted. The schema carries the `datasets` feature metadata, so
    `load_dataset` reads the features back without guessing.
    """
    import pyarrow as pa

    features = task_features()
    schema = features.arrow_schema
    n = len(tasks)
    if not (len(task_indices) == len(splits) == n):
        raise ValueError("tasks_to_table: tasks, task_indices and splits must have the same length")
    if summaries is None:
        summaries = {
            "graph_family": [str(t.meta.get("graph_family", "unknown")) for t in tasks],
            "mechanism": [str(t.meta.get("mechanism", "unknown")) for t in tasks],
            "treated_share": [float(np.mean(t.t)) if t.n_units else float("nan") for t in tasks],
            "propensity_min": [float(np.min(t.propensity)) if t.n_units else float("nan") for t in tasks],
            "propensity_max": [float(np.max(t.propensity)) if t.n_units else float("nan") for t in tasks],
        }
    cols: dict[str, Any] = {
        "task_index": pa.array(np.asarray(task_indices, dtype=np.int64)),
        "seed": pa.array(np.asarray([int(t.meta.get("seed", -1)) for t in tasks], dtype=np.int64)),
        "split": pa.array([str(s) for s in splits], type=pa.string()),
        "n_units": pa.array(np.asarray([t.n_units for t in tasks], dtype=np.int64)),
        "n_covariates": pa.array(np.asarray([t.n_covariates for t in tasks], dtype=np.int64)),
        "n_nodes": pa.array(np.asarray([t.n_nodes for t in tasks], dtype=np.int64)),
        "x": _list_of_lists([t.x for t in tasks], "float32", pa.float32()),
        "t": _list([t.t for t in tasks], "int8", pa.int8()),
        "adjacency": _list_of_lists([t.adjacency for t in tasks], "bool", pa.bool_()),
        # ClassLabel is stored as int64 codes; Role codes are the label indices.
        "roles": _list([t.roles for t in tasks], "int64", pa.int64()),
        "covariate_nodes": _list([t.covariate_nodes for t in tasks], "int32", pa.int32()),
        "treatment_node": pa.array(np.asarray([t.treatment_node for t in tasks], dtype=np.int32)),
        "outcome_node": pa.array(np.asarray([t.outcome_node for t in tasks], dtype=np.int32)),
        "identifiable": pa.array(np.asarray([bool(t.identifiable) for t in tasks], dtype=bool)),
        # tasks of the original prior carry no such meta: every column continuous and relevant
        "covariate_types": pa.array([list(t.meta.get("covariate_types", ["continuous"] * t.n_covariates)) for t in tasks],
                                    type=pa.list_(pa.string())),
        "covariate_relevance": pa.array([list(t.meta.get("covariate_relevance", ["relevant"] * t.n_covariates))
                                         for t in tasks], type=pa.list_(pa.string())),
        "outcome_type": pa.array([str(t.meta.get("outcome_type", "continuous")) for t in tasks], type=pa.string()),
        # Same canonical JSON as the zarr shards (sorted keys, compact).
        "meta": pa.array([json.dumps(t.meta, sort_keys=True, separators=(",", ":"), allow_nan=True) for t in tasks], type=pa.string()),
    }
    for name in ("y", "y0", "y1", "propensity"):
        cols[name] = _list([getattr(t, name) for t in tasks], "float32", pa.float32())
    for name in ("ate", "ate_se", "sate", "att"):
        cols[name] = pa.array(np.asarray([float(getattr(t, name)) for t in tasks], dtype=np.float64))
    for name, dtype in (("treated_share", np.float64), ("propensity_min", np.float32), ("propensity_max", np.float32)):
        cols[name] = pa.array(np.asarray(summaries[name], dtype=dtype))
    for name in ("graph_family", "mechanism"):
        cols[name] = pa.array([str(v) for v in summaries[name]], type=pa.string())
    return pa.Table.from_arrays([cols[field.name] for field in schema], schema=schema)


# ------------------------------------------------------------------ row -> Task


def row_to_task(row: Mapping[str, Any]) -> Task:
    """Rebuild the `Task` of one Parquet row (plain Python lists or numpy-formatted).

    Dtypes are restored exactly (`datasets` returns int8 lists as int64 under
    numpy formatting), and x keeps its (N, d) shape even when d == 0.
    """
    n, d, j = int(row["n_units"]), int(row["n_covariates"]), int(row["n_nodes"])

    def arr(name: str, dtype: str, shape: tuple[int, ...]) -> np.ndarray:
        value = row[name]
        if isinstance(value, np.ndarray) and value.dtype == object:
            value = [np.asarray(v) for v in value]
            value = np.concatenate([v.reshape(-1) for v in value]) if value else np.zeros(0)
        out = np.asarray(value, dtype=dtype)
        return out.reshape(shape)

    return Task(
        x=arr("x", "float32", (n, d)),
        t=arr("t", "int8", (n,)),
        y=arr("y", "float32", (n,)),
        y0=arr("y0", "float32", (n,)),
        y1=arr("y1", "float32", (n,)),
        propensity=arr("propensity", "float32", (n,)),
        ate=float(row["ate"]),
        ate_se=float(row["ate_se"]),
        sate=float(row["sate"]),
        att=float(row["att"]),
        adjacency=arr("adjacency", "bool", (j, j)),
        roles=arr("roles", "int8", (j,)),
        covariate_nodes=arr("covariate_nodes", "int32", (d,)),
        identifiable=bool(row["identifiable"]),
        meta=json.loads(row["meta"]),
    )
