"""The dataset card (README.md) of a published repository, and its summary figure.

The prose lives in ``data_cards/`` as `string.Template` files (no template
engine needed); this module computes everything that depends on the corpus —
YAML metadata, tables of parameters, fields and statistics — and fills them in.
The YAML is produced with the same `datasets` helpers that ``push_to_hub`` uses,
so ``configs`` and ``dataset_info`` are exactly what `load_dataset` parses.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from string import Template
from typing import Any, Mapping, Sequence

import numpy as np

from ..store.manifest import SEED_SCHEME
from .layout import DATA_DIR, FIGURE_NAME, SPLIT_SCHEME, PublishedManifest
from ..store.splits import SPLITS

#: ``data_cards/`` next to the package (a source checkout or an editable install).
DEFAULT_TEMPLATE_DIR = Path(__file__).resolve().parents[2] / "data_cards"
CARD_TEMPLATE = "corpus_card.md"
PROCESS_TEMPLATES = {"random_dag": "process_random_dag.md", "setoguchi": "process_setoguchi.md"}
#: Hub size buckets (hub-docs datasetcard.md), by number of rows = tasks
_SIZE_BUCKETS = [(1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
                 (10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M"), (1_000_000_000, "100M<n<1B")]


class CardError(ValueError):
    """The card template is missing or has an unknown placeholder."""


def size_category(n: int) -> str:
    for bound, name in _SIZE_BUCKETS:
        if n < bound:
            return name
    return "n>1B"


def default_pretty_name(manifest: PublishedManifest) -> str:
    return f"causalgen {manifest.config.get('name', 'custom')}: {manifest.num_tasks:,} synthetic causal-inference tasks"


def load_template(name: str, template_dir: str | os.PathLike | None = None) -> Template:
    path = Path(template_dir) if template_dir is not None else DEFAULT_TEMPLATE_DIR
    file = path / name
    try:
        return Template(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CardError(f"{file}: card template not found (pass --card-templates DIR)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CardError(f"{file}: cannot read card template: {exc}") from None


def _fill(template: Template, values: Mapping[str, str], name: str) -> str:
    try:
        return template.substitute(values)
    except KeyError as exc:
        raise CardError(f"{name}: unknown placeholder ${exc.args[0]}") from None
    except ValueError as exc:  # a stray "$" in the prose
        raise CardError(f"{name}: {exc} (write a literal dollar sign as $$)") from None


# ------------------------------------------------------------------ YAML metadata


def card_metadata(
    manifest: PublishedManifest,
    *,
    license: str,
    pretty_name: str,
    split_bytes: Mapping[str, int],
) -> str:
    """The YAML block (without ``---`` fences): Hub metadata, ``configs`` and ``dataset_info``.

    split_bytes: Arrow bytes of each split's rows (what ``dataset_info.splits``
    records as ``num_bytes``).
    """
    from datasets import DatasetInfo, SplitDict, SplitInfo
    from datasets.info import DatasetInfosDict
    from datasets.utils.metadata import MetadataConfigs
    from huggingface_hub import DatasetCardData

    from .parquet_view import task_features

    counts = manifest.split_counts
    present = [s for s in SPLITS if counts[s]]
    data = DatasetCardData(
        license=license,
        pretty_name=pretty_name,
        task_categories=["tabular-regression", "tabular-classification"],
        tags=["causal-inference", "treatment-effect-estimation", "synthetic", "tabular", "structural-causal-model", "zarr"],
        size_categories=[size_category(manifest.num_tasks)],
        annotations_creators=["machine-generated"],
        source_datasets=["original"],
    )
    MetadataConfigs(
        {"default": {"default": True, "data_files": [{"split": s, "path": f"{DATA_DIR}/{s}-*.parquet"} for s in present]}}
    ).to_dataset_card_data(data)
    splits = SplitDict()
    for s in present:
        splits.add(SplitInfo(name=s, num_bytes=int(split_bytes.get(s, 0)), num_examples=counts[s]))
    info = DatasetInfo(
        features=task_features(),
        splits=splits,
        download_size=sum(f.bytes for f in manifest.parquet),
        dataset_size=sum(int(split_bytes.get(s, 0)) for s in present),
    )
    DatasetInfosDict({"default": info}).to_dataset_card_data(data)
    return data.to_yaml()


# ------------------------------------------------------------------ tables


def _table(header: list[str], rows: list[list[Any]]) -> str:
    def cell(v: Any) -> str:
        return str(v).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


#: config mappings that are mixtures {name: weight} (one table row), not sections
_MIXTURES = ("families", "score_mechanism")
#: top-level config sections each task kind actually uses (the others keep defaults)
_UNUSED = {"random_dag": ("setoguchi",), "setoguchi": ("graph", "roles", "mechanism", "noise", "treatment", "effect", "ate_mc_units", "ate_method")}


def _flatten(d: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for key, value in d.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and key not in _MIXTURES:
            out.extend(_flatten(value, name + "."))
        else:
            out.append((name, value))
    return out


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_fmt(v)}" for k, v in value.items()) + "}" if value else "{}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_fmt(v) for v in value) + "]"
    if value is None:
        return "—"
    return f"{value}"


def parameter_table(config: Mapping[str, Any]) -> str:
    """Every config field that affects this kind of task, one row each (sections flattened)."""
    unused = _UNUSED.get(str(config.get("kind")), ())
    rows = [[f"`{k}`", f"`{_fmt(v)}`"] for k, v in _flatten(config) if k.split(".")[0] not in unused]
    return _table(["parameter", "value"], rows)


def fields_table() -> str:
    from .parquet_view import column_docs, task_features

    features = task_features()
    rows = [[f"`{name}`", f"`{_feature_type(features[name])}`", doc] for name, doc in column_docs().items()]
    return _table(["column", "type", "definition"], rows)


def _feature_type(feature) -> str:
    from datasets import ClassLabel, List, Value

    if isinstance(feature, List):
        return f"list<{_feature_type(feature.feature)}>"
    if isinstance(feature, ClassLabel):
        return "class_label"
    if isinstance(feature, Value):
        return feature.dtype
    return type(feature).__name__


def _dist(values: np.ndarray) -> list[str]:
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if not v.size:
        return ["—"] * 6
    q = np.quantile(v, [0.0, 0.05, 0.5, 0.95, 1.0])
    return [f"{v.mean():.4g}", f"{v.std():.4g}"] + [f"{x:.4g}" for x in (q[0], q[2], q[4])] + [f"[{q[1]:.3g}, {q[3]:.3g}]"]


def stats_table(columns: Mapping[str, np.ndarray]) -> str:
    rows = []
    for name in ("n_units", "n_covariates", "n_nodes", "ate", "treated_share", "propensity_min", "propensity_max"):
        rows.append([f"`{name}`", *_dist(columns[name])])
    return _table(["quantity", "mean", "std", "min", "median", "max", "5–95 %"], rows)


def counts_tables(manifest: PublishedManifest, columns: Mapping[str, np.ndarray]) -> str:
    n = max(1, int(columns["task_index"].shape[0]))

    def counted(name: str) -> list[list[Any]]:
        keys, c = np.unique(np.asarray(columns[name], dtype=str), return_counts=True) if columns[name].size else ([], [])
        return [[f"`{k}`", int(x), f"{x / n:.1%}"] for k, x in sorted(zip(keys, c), key=lambda kv: (-kv[1], kv[0]))]

    rejections: dict[str, int] = {}
    for r in manifest.shards:
        for reason, count in r.qc_rejections.items():
            rejections[reason] = rejections.get(reason, 0) + count
    ident = float(np.mean(columns["identifiable"])) if columns["identifiable"].size else 0.0
    overlap = float(np.mean((columns["propensity_min"] < 0.01) | (columns["propensity_max"] > 0.99))) if columns["propensity_min"].size else 0.0
    parts = [
        f"Identifiable tasks: {ident:.1%}. Tasks with some true propensity outside [0.01, 0.99] (weak overlap): {overlap:.1%}.",
        _table(["graph family", "tasks", "share"], counted("graph_family")),
        _table(["mechanism", "tasks", "share"], counted("mechanism")),
    ]
    if rejections:
        parts.append("Quality-control rejections (resampled draws), by reason: "
                     + ", ".join(f"`{k}` {v}" for k, v in sorted(rejections.items())) + ".")
    else:
        parts.append("No draw was rejected by quality control.")
    return "\n\n".join(parts)


def splits_table(manifest: PublishedManifest) -> str:
    counts = manifest.split_counts
    total = max(1, manifest.num_tasks)
    rows = []
    for s in SPLITS:
        files = manifest.split_parquet(s)
        shards = manifest.split_shards(s)
        rows.append([f"`{s}`", counts[s], f"{counts[s] / total:.1%}", len(files), len(shards),
                     f"{sum(f.bytes for f in files) / 1e6:.1f} MB", f"{sum(r.bytes for r in shards) / 1e6:.1f} MB"])
    rows.append(["**all**", manifest.num_tasks, "100%", len(manifest.parquet), len(manifest.shards),
                 f"{sum(f.bytes for f in manifest.parquet) / 1e6:.1f} MB", f"{sum(r.bytes for r in manifest.shards) / 1e6:.1f} MB"])
    return _table(["split", "tasks", "share", "Parquet files", "zarr shards", "Parquet size", "zarr size"], rows)


# ------------------------------------------------------------------ figure


def render_figure(columns: Mapping[str, np.ndarray], path: str | os.PathLike) -> None:
    """Histograms of ATE, number of units and treated share, by split, as a PNG.

    Uses the object-oriented matplotlib API with the Agg canvas (no pyplot, no
    global backend switch) and no timestamp metadata, so the bytes depend only
    on the data and the matplotlib version.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12, 3.6), dpi=100)
    FigureCanvasAgg(fig)
    split = np.asarray(columns["split"], dtype=str)
    panels = [("ate", "average treatment effect (ATE)"), ("n_units", "units per task (N)"), ("treated_share", "treated share")]
    for k, (name, title) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), k + 1)
        values = np.asarray(columns[name], dtype=np.float64)
        finite = values[np.isfinite(values)]
        bins = np.histogram_bin_edges(finite, bins=min(40, max(5, int(math.sqrt(max(finite.size, 1)))))) if finite.size else 10
        data = [values[(split == s) & np.isfinite(values)] for s in SPLITS]
        ax.hist(data, bins=bins, stacked=True, label=list(SPLITS), color=["#4C72B0", "#DD8452", "#55A868"])
        ax.set_title(title, fontsize=10)
        ax.set_ylabel("tasks" if k == 0 else "")
        ax.grid(alpha=0.3)
    fig.axes[0].legend(fontsize=8)
    fig.suptitle(f"{split.size:,} tasks", fontsize=10)
    fig.tight_layout()
    fig.savefig(os.fspath(path), format="png", metadata={"Software": None})


# ------------------------------------------------------------------ the card


def wider_prior_text(config: Mapping[str, Any]) -> str:
    """Steps of the generative process that only configs of the wider prior have (typed and
    distorted covariates, irrelevant and weak ones, binary outcomes, real-table roots); empty
    for the others."""
    parts = []
    cov, out, tab = config.get("covariates"), config.get("outcome"), config.get("tables")
    if cov:
        types = ", ".join(f"{k} {v:g}" for k, v in cov["types"].items())
        parts.append(
            "8. **Covariate types.** Every simulated node but T and Y has an observation type drawn from the "
            f"mixture ({types}). A typed node turns its latent value s into its observed value: binary "
            "`1[s > c]`; ordinal `#{cuts below s}`, integer codes 0..k-1 in the node's order "
            f"(k from {cov['levels'][0]} to {cov['levels'][1]}, every level holding at least 5% of the units); categorical "
            "the ordinal code passed through a random permutation, so the integer codes carry no order; count "
            "`floor(mu exp(sigma s))`; semicontinuous `0` below a quantile of s and `scale (exp(sigma (s - c)) - 1)` above "
            "(a point mass at zero plus a skewed positive part, like earnings); bounded `sigmoid(a s + b)` in (0, 1); "
            "skewed `scale exp(sigma s)`. Cut points are quantiles on the task's own units. The node's children read the "
            "typed value standardised, and `x` holds the typed value itself (`covariate_types` names each column's type), "
            "so the DAG semantics are exact.")
        if cov.get("distortion_prob", 0) > 0:
            parts.append(
                f"9. **Distorted measurement.** With probability {cov['distortion_prob']:g} a continuous covariate's column is a "
                "random increasing transform of the node (exp(a z), z^3, sign(z)|z|^p or z / (c + |z|); "
                "`meta.covariate_distortions`), while its children read the node itself.")
        if cov["irrelevant"][1] > 0 or cov.get("weak_prob", 0) > 0:
            parts.append(
                f"10. **Covariates that barely matter.** {cov['irrelevant'][0]}-{cov['irrelevant'][1]} irrelevant covariates per "
                "task form a DAG of their own with no edge to the main graph (d-separated from T and Y); with probability "
                f"{cov.get('weak_prob', 0):g} a pre-treatment node is a weak-signal covariate whose children read it multiplied "
                f"by {cov['weak_scale'][0]:g}-{cov['weak_scale'][1]:g} (`covariate_relevance`).")
    if out and out["types"].get("binary", 0) > 0:
        parts.append(
            "11. **Binary outcomes.** A share of tasks (outcome mixture "
            + ", ".join(f"{k} {v:g}" for k, v in out["types"].items())
            + ") has a binary outcome: the continuous outcome y* of the SCM gives p = sigmoid(a y* + b), with b "
            "calibrated to a prevalence of "
            f"{out['prevalence'][0]:g}-{out['prevalence'][1]:g} on the task's units, and Y = 1[u < p] with one exogenous "
            "uniform u per unit shared by both worlds. `ate` is E[p1 - p0] (the probability scale), `sate` and `att` "
            "average y1 - y0.")
    if tab:
        parts.append(
            "12. **Real-table covariates.** The observed root covariates of a task are "
            f"{tab['columns'][0]}-{tab['columns'][1]} columns of one real table (chosen at random from "
            + ", ".join(f"`{s}`" for s in tab["sources"])
            + "); the table's complete rows are the task's population (the SCM is simulated on all of them and "
            "`ate` is their exact mean effect, `ate_se = 0`), the task's units a random subset, and `meta.table` "
            "records the table, its sha256, the columns and the rows used. Missing values: "
            f"`{tab['missing']}` (columns with more than 20% missing are dropped, then incomplete rows). "
            "The default pool holds tables bundled inside scikit-learn and statsmodels only; none of them is or "
            "derives from an evaluation benchmark (IHDP, LaLonde/NSW/PSID/CPS, Twins, RealCause, ACIC, Jobs).")
        if "default" in tab["sources"]:
            parts.append(_pool_table())
    return "\n".join(parts)


def _pool_table() -> str:
    """The default pool of real tables as a markdown table (causalgen.prior.tables.pool_summary)."""
    from ..prior.tables import pool_summary

    lines = ["", "| table | rows x columns | column types | what |", "|---|---|---|---|"]
    for row in pool_summary():
        types = ", ".join(f"{k} {v}" for k, v in row["types"].items())
        lines.append(f"| `{row['name']}` | {row['rows']} x {row['columns']} | {types} | {row['description']} |")
    return "\n".join(lines) + "\n"


def render_card(
    manifest: PublishedManifest,
    *,
    repo_id: str | None,
    license: str,
    pretty_name: str | None,
    split_bytes: Mapping[str, int],
    meta_keys: Sequence[str] = (),
    template_dir: str | os.PathLike | None = None,
) -> str:
    """The full README.md text. meta_keys: every key found in the tasks' meta dicts."""
    columns = manifest.columns()
    pretty = pretty_name or default_pretty_name(manifest)
    kind = str(manifest.config.get("kind", "random_dag"))
    process = load_template(PROCESS_TEMPLATES.get(kind, PROCESS_TEMPLATES["random_dag"]), template_dir)
    counts = manifest.split_counts
    src = manifest.source
    values = {
        "yaml": card_metadata(manifest, license=license, pretty_name=pretty, split_bytes=split_bytes).rstrip("\n"),
        "pretty_name": pretty,
        "overview": (
            f"{manifest.num_tasks:,} synthetic causal-inference tasks sampled by "
            f"[causalgen](#source) {manifest.causalgen_version} from the `{manifest.config.get('name', 'custom')}` "
            f"configuration (corpus seed {src['corpus_seed']}): "
            + ", ".join(f"{counts[s]:,} {s}" for s in SPLITS) + "."
        ),
        "repo_id": repo_id or "ORG/NAME",
        "split_names": ", ".join(s for s in SPLITS if counts[s]),
        "splits_table": splits_table(manifest),
        "shard_size": str(manifest.shard_size),
        "generative_process": _fill(process, {"wider_prior": wider_prior_text(manifest.config)},
                                    PROCESS_TEMPLATES.get(kind, "process")).strip(),
        "config_name": str(manifest.config.get("name", "custom")),
        "parameter_table": parameter_table(manifest.config),
        "corpus_seed": str(src["corpus_seed"]),
        "seed_scheme": src.get("seed_scheme", SEED_SCHEME),
        "split_scheme": SPLIT_SCHEME,
        "causalgen_version": manifest.causalgen_version,
        "fields_table": fields_table(),
        "meta_keys": ", ".join(f"`{k}`" for k in sorted(meta_keys)) or "none",
        "stats_table": stats_table(columns),
        "counts_tables": counts_tables(manifest, columns),
        "figure_path": FIGURE_NAME,
        "source_summary": (
            f"{src['num_tasks']:,} tasks in {src['num_shards']} shards of {src['shard_size']} "
            f"({src['shard_format']}, {src['compression']}), sampler `{src['sampler']}`, "
            f"config sha256 `{src['config_sha256']}`, manifest sha256 `{src['manifest_sha256']}`"
        ),
    }
    return _fill(load_template(CARD_TEMPLATE, template_dir), values, CARD_TEMPLATE)
