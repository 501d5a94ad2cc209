"""Real covariate tables for the semi-synthetic prior: read, clean, type and pin them.

In the semi-synthetic mode a random subset of the rows and columns of a real table becomes the
observed root covariates of a task's DAG; T, Y and the rest are simulated. This module only
turns sources into `CovariateTable` records; sampling from them belongs to the sampler.

Sources (`load_table`): a CSV path (``.csv``, ``.csv.gz``, ``.tsv``, ``.tsv.gz``), a Parquet
path (``.parquet``, ``.pq``), a pandas DataFrame, or a pool name ``"sklearn:NAME"`` /
``"statsmodels:NAME"`` (`DEFAULT_POOL`). `load_tables` takes a list and expands a folder into
its table files, sorted by name (hidden files skipped, not recursive).

Rules, applied in this order:

* Text. CSV bytes are decoded as UTF-8 (a BOM is dropped), and as Latin-1 only if that fails.
  The delimiter of ``.csv`` files is sniffed among ``,`` ``;`` tab ``|``: the one that splits
  the first 20 lines into the same number (> 1) of fields, most fields first, ties in that
  order; ``.tsv`` is tab. pandas' default missing markers apply (empty, ``NA``, ``NaN``,
  ``null``, ``n/a`` ...). With a delimiter other than ``,``, decimal commas (``1,5``) are read.
* Columns. Numeric columns become float64, boolean ones 0/1. A text (or date) column is a
  `ConfigError` naming the file and the column, unless ``drop_text=True``, which drops it and
  records it in ``dropped``. +-inf counts as missing.
* Missing values. ``missing="drop_rows"`` (default): columns with more than 20% missing are
  dropped (recorded in ``dropped``), then rows with any missing value left (the kept rows'
  source positions are ``rows``). ``missing="error"``: the first missing value is a
  `ConfigError` naming the file, the column and the 0-based data row (header not counted).
* Constant columns (on the complete rows) are dropped and recorded.
* A table needs at least 2 usable columns and 50 complete rows, else a `ConfigError`.
* Types: `infer_type` per column; ``types={column: type}`` declares them instead (a pool table
  declares its categorical codes). A declaration the values contradict is an error.

Every error is one line that names the file (or pool name / DataFrame) and the column.

The default pool: tables bundled inside scikit-learn and statsmodels (their ``load_*`` readers
open files shipped in the wheel; nothing is downloaded), chosen for a mix of types and sizes.
None is, or derives from, a causal-inference benchmark (IHDP, LaLonde/NSW/PSID/CPS, Twins,
RealCause, ACIC, Jobs). Derived columns (logs, products of other columns) and row identifiers are
left out; targets are kept as ordinary real columns. Types are `infer_type`'s except the
declared categorical codes and anes96's income brackets (declared ordinal). ``pool_summary()``
returns this list with the column names and digests; a test keeps the two in step:

name                   rows x cols types
sklearn:breast_cancer  569 x 31    continuous 11, binary 1, bounded 16, skewed 3
    load_breast_cancer(): Wisconsin breast cancer: 30 cell-nucleus features (FNA images), diagnosis
sklearn:diabetes       442 x 11    continuous 6, binary 1, count 4
    load_diabetes(scaled=False): Diabetes patients: age, sex, BMI, blood pressure, 6 serum values, progression
sklearn:digits         1797 x 62   binary 3, ordinal 8, categorical 1, count 50
    load_digits(): Handwritten digits: 8x8 pixel intensities (0-16) and the digit
sklearn:wine           178 x 14    continuous 10, categorical 1, count 2, bounded 1
    load_wine(): Italian wines: 13 chemical measurements and the cultivar
statsmodels:anes96     944 x 10    binary 1, ordinal 7, count 2
    anes96.load_pandas(): US election survey 1996: TV news, left-right placements, party, age, education, income, vote
statsmodels:engel      235 x 2     continuous 1, skewed 1
    engel.load_pandas(): Engel's Belgian working-class households (1857): income, food expenditure
statsmodels:fair       6366 x 9    continuous 3, ordinal 3, categorical 2, semicontinuous 1
    fair.load_pandas(): Fair's survey of married women (1978): marriage, children, religion, education, jobs, affairs
statsmodels:randhie    20190 x 10  continuous 2, binary 4, count 1, semicontinuous 3
    randhie.load_pandas(): RAND Health Insurance Experiment person-years: doctor visits, cost sharing, health
statsmodels:star98     303 x 14    continuous 7, count 2, semicontinuous 2, skewed 3
    star98.load_pandas(): California STAR 1998 districts: pupils above/below maths median, shares, spending

Second lines: the loader (``sklearn.datasets.X(as_frame=True, ...).frame``,
``statsmodels.datasets.X.load_pandas().data``) and a description.
"""

from __future__ import annotations

import csv
import functools
import gzip
import hashlib
import importlib
import importlib.util
import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .config import COVARIATE_TYPES, ConfigError

MIN_ROWS = 50
MIN_COLUMNS = 2
#: columns with a larger share of missing values are dropped under missing="drop_rows"
MAX_MISSING_SHARE = 0.2
DELIMITERS = (",", ";", "\t", "|")
TEXT_SUFFIXES = (".csv", ".csv.gz", ".tsv", ".tsv.gz")
PARQUET_SUFFIXES = (".parquet", ".pq")
MISSING_RULES = ("drop_rows", "error")


def infer_type(values: np.ndarray) -> str:
    """The `COVARIATE_TYPES` name of a numeric column ((M,) float64, finite), by the first rule that holds.

    1. exactly 2 distinct values -> ``binary``
    2. integer-valued with at most 10 distinct values -> ``ordinal``
    3. integer-valued, >= 0, more than 10 distinct -> ``count``
    4. >= 10% exact zeros, the rest > 0, more than 10 distinct -> ``semicontinuous`` (a point
       mass plus a continuous part; a few non-integer levels with zeros are not earnings-like)
    5. all within [0, 1] -> ``bounded``
    6. |sample skewness| > 2 (moment estimator m3 / m2^1.5) -> ``skewed``
    7. otherwise (a constant too: the loader drops those first) -> ``continuous``

    ``categorical`` is never inferred: integer codes of unordered levels look exactly like
    ordered ones, so a table source declares them (``load_table(..., types={col: ...})``).
    """
    x = np.asarray(values, dtype=np.float64).ravel()
    if x.size == 0 or not np.all(np.isfinite(x)):
        raise ValueError("infer_type: needs a non-empty column of finite values")
    distinct = np.unique(x).size
    if distinct == 1:
        return "continuous"
    if distinct == 2:
        return "binary"
    integer = bool(np.all(x == np.round(x)))
    if integer and distinct <= 10:
        return "ordinal"
    if integer and x.min() >= 0:
        return "count"
    if x.min() >= 0 and np.mean(x == 0) >= 0.1 and distinct > 10:
        return "semicontinuous"
    if x.min() >= 0 and x.max() <= 1:
        return "bounded"
    centred = x - x.mean()
    m2, m3 = np.mean(centred**2), np.mean(centred**3)
    if m2 > 0 and abs(m3 / m2**1.5) > 2:
        return "skewed"
    return "continuous"


def table_digest(columns: tuple[str, ...], values: np.ndarray, rows: np.ndarray) -> str:
    """SHA-256 hex of the JSON list of column names, a NUL, the values as C-order little-endian
    float64 bytes, then the rows as little-endian int64 bytes (the shape follows from the two)."""
    h = hashlib.sha256(json.dumps(list(columns)).encode() + b"\0")
    h.update(np.ascontiguousarray(values, dtype="<f8").tobytes())
    h.update(np.ascontiguousarray(rows, dtype="<i8").tobytes())
    return h.hexdigest()


@dataclass(frozen=True, eq=False)
class CovariateTable:
    """A cleaned real covariate table (M complete rows, C columns); its arrays are read-only.

    name: short name (file stem, pool name or the given name).
    columns: (C,) column names, in source order.
    values: (M, C) float64, no missing values.
    rows: (M,) int64 positions of these rows in the source as read (0-based data rows).
    types: (C,) `COVARIATE_TYPES` names, one per column.
    sha256: `table_digest(columns, values, rows)`: what a corpus manifest records to pin the data.
    source: what to hand `load_table` to read it again (a path or a pool name; ``"<DataFrame>"``
        for an in-memory frame, which cannot be re-read).
    dropped: ((column, reason), ...) for every source column left out (text, missing, constant).
    """

    name: str
    columns: tuple[str, ...]
    values: np.ndarray
    rows: np.ndarray
    types: tuple[str, ...]
    sha256: str
    source: str
    dropped: tuple[tuple[str, str], ...] = field(default=())

    def __post_init__(self):
        m, c = len(self.rows), len(self.columns)
        if self.values.shape != (m, c) or len(self.types) != c:
            raise ValueError(f"CovariateTable {self.name!r}: values {self.values.shape}, rows ({m},), "
                             f"{c} columns and {len(self.types)} types disagree")
        self.values.flags.writeable = False  # the digest must keep describing the values
        self.rows.flags.writeable = False

    @property
    def shape(self) -> tuple[int, int]:
        return self.values.shape

    def type_counts(self) -> dict[str, int]:
        """{type: number of columns}, in `COVARIATE_TYPES` order, absent types left out."""
        return {t: self.types.count(t) for t in COVARIATE_TYPES if t in self.types}


# ----------------------------------------------------------------------------------- reading

def _is_pool_name(source) -> bool:
    return isinstance(source, str) and source.split(":", 1)[0] in ("sklearn", "statsmodels") and ":" in source


def _suffix(path: Path) -> str | None:
    lower = path.name.lower()
    return next((s for s in TEXT_SUFFIXES + PARQUET_SUFFIXES if lower.endswith(s)), None)


def _sniff(lines: list[str]) -> str:
    """The delimiter that splits every sampled line into the same number (> 1) of fields, most first."""
    best, most = ",", 1
    for delimiter in DELIMITERS:
        counts = {len(row) for row in csv.reader(lines, delimiter=delimiter)}
        if len(counts) == 1 and (n := counts.pop()) > most:
            best, most = delimiter, n
    return best


def _read_text(path: Path, label: str) -> tuple[pd.DataFrame, str]:
    raw = path.read_bytes()
    if path.name.lower().endswith(".gz"):
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as e:
            raise ConfigError(f"{label}: not a readable gzip file ({e})") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")  # never fails: every byte is a Latin-1 character
    head = text[: 1 << 16].splitlines()[:41]
    if len(text) > 1 << 16 or len(head) == 41:
        head = head[:-1]  # the last line of the slice may be cut short
    delimiter = "\t" if ".tsv" in path.name.lower() else _sniff([line for line in head if line.strip()][:20])
    try:
        return pd.read_csv(io.StringIO(text), sep=delimiter), delimiter
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        raise ConfigError(f"{label}: not a readable table ({str(e).splitlines()[0]})") from None


def _read(source) -> tuple[pd.DataFrame, str, str, str, dict, bool]:
    """(frame, label for errors, source string, default name, declared types, decimal comma)."""
    if isinstance(source, pd.DataFrame):
        return source, "DataFrame", "<DataFrame>", "dataframe", {}, False
    if _is_pool_name(source):
        frame, spec = _pool_frame(source)
        return frame, source, source, source, dict(spec.types), False
    if not isinstance(source, (str, os.PathLike)):
        raise ConfigError(f"table source: expected a path, a DataFrame or a pool name, got {type(source).__name__}")
    path, label = Path(source), os.fspath(source)
    if path.is_dir():
        raise ConfigError(f"{label}: is a folder; load_tables expands folders")
    if not path.is_file():
        raise ConfigError(f"{label}: no such file")
    suffix = _suffix(path)
    if suffix is None:
        raise ConfigError(f"{label}: unknown kind of table file; expected "
                          f"{', '.join(TEXT_SUFFIXES + PARQUET_SUFFIXES)}")
    stem = path.name[: -len(suffix)]
    if suffix in PARQUET_SUFFIXES:
        try:
            return pd.read_parquet(path), label, label, stem, {}, False
        except Exception as e:  # pyarrow raises several kinds for a damaged file
            first = (str(e).splitlines() or [""])[0]
            raise ConfigError(f"{label}: not a readable Parquet file ({type(e).__name__}: {first})") from None
    frame, delimiter = _read_text(path, label)
    return frame, label, label, stem, {}, delimiter != ","


def _as_numbers(series: pd.Series, decimal_comma: bool) -> np.ndarray | None:
    """(M,) float64 with NaN for missing, or None when the column holds text."""
    dtype = series.dtype
    if pd.api.types.is_bool_dtype(dtype) or (pd.api.types.is_numeric_dtype(dtype)
                                              and not pd.api.types.is_complex_dtype(dtype)):
        out = series.to_numpy(dtype=np.float64, na_value=np.nan)
    elif pd.api.types.is_datetime64_any_dtype(dtype) or isinstance(dtype, pd.PeriodDtype):
        return None
    else:
        as_object = series.astype(object)
        present = as_object.notna()
        out = pd.to_numeric(as_object, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        if decimal_comma and np.isnan(out[present.to_numpy()]).any():
            # "1,5" with ';' or tab delimiters is a decimal comma, not text
            out = pd.to_numeric(as_object.astype(str).str.replace(",", ".", regex=False).where(present),
                                errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        if np.isnan(out[present.to_numpy()]).any():
            return None
    out = out.copy()
    out[np.isinf(out)] = np.nan
    return out


def _first_text(series: pd.Series) -> tuple[int, object]:
    coerced = pd.to_numeric(series.astype(object), errors="coerce")
    bad = np.flatnonzero(series.notna().to_numpy() & coerced.isna().to_numpy())
    return (int(bad[0]), series.iloc[bad[0]]) if bad.size else (0, series.iloc[0] if len(series) else None)


def _check_declared(label: str, column: str, kind: str, x: np.ndarray) -> None:
    """A declared type must fit the values: the sampler relies on, e.g., binary having 2 levels."""
    integer = bool(np.all(x == np.round(x)))
    fits = {"binary": np.unique(x).size == 2, "ordinal": integer, "categorical": integer,
            "count": integer and x.min() >= 0, "semicontinuous": x.min() >= 0 and bool(np.any(x == 0))}
    if not fits.get(kind, True):
        raise ConfigError(f"{label}: column {column!r}: declared {kind!r} but its values are not "
                          f"({np.unique(x).size} distinct, min {x.min():g}, integer-valued: {integer})")


def load_table(source, *, name: str | None = None, missing: str = "drop_rows",
               types: dict[str, str] | None = None, drop_text: bool = False) -> CovariateTable:
    """Read one source (path, DataFrame or pool name) and clean it by the module's rules."""
    if missing not in MISSING_RULES:
        raise ConfigError(f"missing: must be one of {', '.join(MISSING_RULES)}, got {missing!r}")
    frame, label, source_str, default_name, declared, decimal_comma = _read(source)
    declared.update(types or {})
    name = name or default_name
    if label == "DataFrame":
        label = f"DataFrame {name!r}"
    names = [str(c) for c in frame.columns]
    duplicate = next((c for c in names if names.count(c) > 1), None)
    if duplicate is not None:
        raise ConfigError(f"{label}: column {duplicate!r} appears more than once")
    for column, kind in declared.items():
        if column not in names:
            raise ConfigError(f"{label}: column {column!r}: declared in types but not in the table")
        if kind not in COVARIATE_TYPES:
            raise ConfigError(f"{label}: column {column!r}: unknown type {kind!r}; choose from "
                              f"{', '.join(COVARIATE_TYPES)}")

    dropped: list[tuple[str, str]] = []
    kept, data = [], []
    for j, column in enumerate(names):
        numbers = _as_numbers(frame.iloc[:, j], decimal_comma)
        if numbers is None:
            if drop_text:
                dropped.append((column, "text"))
                continue
            row, example = _first_text(frame.iloc[:, j])
            raise ConfigError(f"{label}: column {column!r} is not numeric (e.g. {example!r} in data row {row}); "
                              "encode it as numbers or drop it (drop_text=True drops text columns)")
        kept.append(column)
        data.append(numbers)
    x = np.column_stack(data) if data else np.empty((len(frame), 0))
    absent = np.isnan(x)

    if missing == "error" and absent.any():
        row = int(np.flatnonzero(absent.any(axis=1))[0])
        column = kept[int(np.flatnonzero(absent[row])[0])]
        raise ConfigError(f"{label}: column {column!r}: missing value in data row {row} (0-based, header "
                          "not counted); missing='drop_rows' drops such rows")
    share = absent.mean(axis=0) if len(x) else np.zeros(x.shape[1])
    for column, s in zip(kept, share):
        if s > MAX_MISSING_SHARE:
            dropped.append((column, f"{s:.0%} missing"))
    keep = share <= MAX_MISSING_SHARE
    kept, x = [c for c, k in zip(kept, keep) if k], x[:, keep]
    rows = np.flatnonzero(~np.isnan(x).any(axis=1)).astype(np.int64)
    x = x[rows]
    constant = np.all(x == x[:1], axis=0) if len(x) else np.zeros(x.shape[1], dtype=bool)
    dropped.extend((c, "constant") for c, k in zip(kept, constant) if k)
    kept, x = [c for c, k in zip(kept, constant) if not k], np.ascontiguousarray(x[:, ~constant])

    why = f" (dropped: {', '.join(f'{c} [{r}]' for c, r in dropped)})" if dropped else ""
    if x.shape[1] < MIN_COLUMNS:
        raise ConfigError(f"{label}: {x.shape[1]} usable column(s), a table needs at least {MIN_COLUMNS}{why}")
    if x.shape[0] < MIN_ROWS:
        raise ConfigError(f"{label}: {x.shape[0]} complete row(s), a table needs at least {MIN_ROWS}{why}")
    kinds = []
    for j, column in enumerate(kept):
        if column in declared:
            _check_declared(label, column, declared[column], x[:, j])
            kinds.append(declared[column])
        else:
            kinds.append(infer_type(x[:, j]))
    columns = tuple(kept)
    return CovariateTable(name=name, columns=columns, values=x, rows=rows, types=tuple(kinds),
                          sha256=table_digest(columns, x, rows), source=source_str, dropped=tuple(dropped))


def load_tables(sources, *, missing: str = "drop_rows", drop_text: bool = False) -> list[CovariateTable]:
    """Load a list of sources in order; a folder becomes its table files, sorted by name."""
    if isinstance(sources, (str, os.PathLike, pd.DataFrame)):
        sources = [sources]
    expanded = []
    for source in sources:
        if isinstance(source, (str, os.PathLike)) and not _is_pool_name(source) and Path(source).is_dir():
            files = sorted(p for p in Path(source).iterdir()
                           if p.is_file() and not p.name.startswith(".") and _suffix(p) is not None)
            if not files:
                raise ConfigError(f"{os.fspath(source)}: folder holds no CSV, TSV or Parquet file")
            expanded.extend(files)
        else:
            expanded.append(source)
    tables = [load_table(s, missing=missing, drop_text=drop_text) for s in expanded]
    seen: dict[str, str] = {}
    for t in tables:
        if t.name in seen:
            raise ConfigError(f"{t.source}: table name {t.name!r} is also the name of {seen[t.name]}")
        seen[t.name] = t.source
    return tables


# ------------------------------------------------------------------------------ default pool

@dataclass(frozen=True)
class _PoolSpec:
    loader: str                            # sklearn.datasets function or statsmodels.datasets module
    description: str
    kwargs: tuple = ()                     # extra keyword arguments of a scikit-learn loader
    drop: tuple[str, ...] = ()             # derived columns / identifiers left out
    types: tuple[tuple[str, str], ...] = ()  # declared types (categorical codes)


_POOL = {
    "sklearn:breast_cancer": _PoolSpec("load_breast_cancer", "Wisconsin breast cancer: 30 cell-nucleus features "
                                       "(FNA images), diagnosis"),
    "sklearn:diabetes": _PoolSpec("load_diabetes", "Diabetes patients: age, sex, BMI, blood pressure, 6 serum "
                                  "values, progression", kwargs=(("scaled", False),)),
    "sklearn:digits": _PoolSpec("load_digits", "Handwritten digits: 8x8 pixel intensities (0-16) and the digit",
                                types=(("target", "categorical"),)),
    "sklearn:wine": _PoolSpec("load_wine", "Italian wines: 13 chemical measurements and the cultivar",
                              types=(("target", "categorical"),)),
    "statsmodels:anes96": _PoolSpec("anes96", "US election survey 1996: TV news, left-right placements, "
                                    "party, age, education, income, vote", drop=("logpopul",),
                                    types=(("income", "ordinal"),)),
    "statsmodels:engel": _PoolSpec("engel", "Engel's Belgian working-class households (1857): income, food "
                                   "expenditure"),
    "statsmodels:fair": _PoolSpec("fair", "Fair's survey of married women (1978): marriage, children, "
                                  "religion, education, jobs, affairs",
                                  types=(("occupation", "categorical"), ("occupation_husb", "categorical"))),
    "statsmodels:randhie": _PoolSpec("randhie", "RAND Health Insurance Experiment person-years: doctor "
                                     "visits, cost sharing, health"),
    "statsmodels:star98": _PoolSpec("star98", "California STAR 1998 districts: pupils above/below maths "
                                    "median, shares, spending",
                                    drop=("PERMINTE_AVYRSEXP", "PERMINTE_AVSAL", "AVYRSEXP_AVSAL", "PERSPEN_PTRATIO",
                                          "PERSPEN_PCTAF", "PTRATIO_PCTAF", "PERMINTE_AVYRSEXP_AVSAL",
                                          "PERSPEN_PTRATIO_PCTAF")),
}
#: the pool names `default_pool` loads, in this order
DEFAULT_POOL = tuple(_POOL)


def _require_extras() -> None:
    absent = [p for p, m in (("scikit-learn", "sklearn"), ("statsmodels", "statsmodels"))
              if importlib.util.find_spec(m) is None]
    if absent:
        raise ImportError(f"the default table pool needs {' and '.join(absent)}: pip install causalgen[tables]")


def _loader_call(pool_name: str) -> str:
    spec = _POOL[pool_name]
    if pool_name.startswith("sklearn:"):
        args = ", ".join(["as_frame=True"] + [f"{k}={v!r}" for k, v in spec.kwargs])
        return f"sklearn.datasets.{spec.loader}({args}).frame"
    return f"statsmodels.datasets.{spec.loader}.load_pandas().data"


def _pool_frame(pool_name: str) -> tuple[pd.DataFrame, _PoolSpec]:
    if pool_name not in _POOL:
        raise ConfigError(f"{pool_name}: unknown pool table; the pool holds {', '.join(DEFAULT_POOL)}")
    _require_extras()
    spec = _POOL[pool_name]
    # imported here: importing this module must not import scikit-learn or statsmodels
    if pool_name.startswith("sklearn:"):
        loader = getattr(importlib.import_module("sklearn.datasets"), spec.loader)
        frame = loader(as_frame=True, **dict(spec.kwargs)).frame
    else:
        frame = importlib.import_module(f"statsmodels.datasets.{spec.loader}").load_pandas().data
    return frame.drop(columns=list(spec.drop)).reset_index(drop=True), spec


@functools.lru_cache(maxsize=1)
def _pool() -> tuple[CovariateTable, ...]:
    _require_extras()
    return tuple(load_table(n) for n in DEFAULT_POOL)


def default_pool() -> list[CovariateTable]:
    """The `DEFAULT_POOL` tables, loaded once per process (needs ``causalgen[tables]``)."""
    return list(_pool())


def pool_summary() -> list[dict]:
    """Per pool table: name, package, loader, rows, columns, column names, type counts, dropped
    columns, sha256 and a one-line description (for the dataset card)."""
    return [{"name": t.name, "package": t.name.split(":")[0], "loader": _loader_call(t.name),
             "rows": t.shape[0], "columns": t.shape[1], "column_names": list(t.columns),
             "types": t.type_counts(), "dropped": [list(d) for d in t.dropped], "sha256": t.sha256,
             "description": _POOL[t.name].description} for t in _pool()]
