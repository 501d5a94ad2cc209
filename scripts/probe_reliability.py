#!/usr/bin/env python
"""Hostile-user reliability probes of causalgen and cina: counts for the release note.

    python scripts/probe_reliability.py [--only CLASS[,CLASS]] [--json OUT] [--md OUT] [--keep]
                                        [--timeout S] [--list] [--ids SUBSTRING]

Runs ~200 probes of bad input and faults through the public CLIs (`causalgen ...`, `cina ...`
as subprocesses) and the public Python API (in a child process), and classifies each outcome
automatically:

    ok              correct behaviour (an answer that matches the clean answer, a byte-identical
                    resume, a user file kept, ...)
    warned          an answer with an explicit warning that names the problem
    refused-named   non-zero exit / library exception whose message names the specific file,
                    column, row, field, path or shard involved (checked by substring)
    refused-vague   refused, but the message names nothing specific
    traceback       a Python traceback on stderr, or a foreign (non-library) exception escaping
                    the API; `detail.cause_first` records whether a one-line cause came first
    silent-wrong    success with an answer the probe knows is wrong, or with no warning where
                    one is required
    data-loss       a user file that existed before the probe is gone or changed
    hang            the probe hit its timeout
    harness-error   the probe itself failed (a bug in this script; should be 0)

Classes (--only): csv (bad CSVs and arrays for `cina estimate` / `CInA.estimate`), config (bad
task configs and arguments for `causalgen sample/generate`), corpus (damaged corpora through
`causalgen verify`, `causalgen.open_corpus(...)[i]`, `cina.TaskStream` and `cina train
--max-steps 3`), model (damaged models through `cina estimate --model`), fault (read-only,
bad --out, unknown URL schemes, full disk, kill -9 and resume, publish --overwrite with user
files, --push without network), truth (Monte-Carlo ground-truth labels against their stated
standard errors).

Tolerances for estimate probes (all in units of sd(y) of the probe's dataset):
  * 1e-3 for a pure rescaling of covariates or of y, a BOM, another encoding or delimiter, a
    constant column: the model standardises each covariate per dataset, so in exact arithmetic
    the estimate is unchanged; float32 rounding of the inputs moves it by ~2e-6 (measured), and
    1e-3 is ~1/75 of the shipped fast model's own validation error (0.0776), so anything above
    it is a change a user would report, while staying 500x above rounding noise.
    The same 1e-3 for a shift of a covariate (x1 + 1e3, x1 + 1e8): the CSV holds the exact
    values, so only the implementation's own precision can lose them.
  * 1e-2 for row order (the Nystrom landmarks depend on it: ~1e-3 measured).
  * 1e-2 for one extreme outlier cell (1e30, 1e39: a missing-value sentinel): the expected answer
    is a refusal or a warning naming the column; a silent answer passes only if one cell of 264
    moved the estimate by less than 1e-2 sd(y) (1/8 of the model's error).

Everything is written under one temporary directory (removed unless --keep); the child processes
get HOME-independent caches (HF_HOME, MPLCONFIGDIR, XDG_CACHE_HOME, TMPDIR) inside it and write
no bytecode. Only numpy, torch, safetensors, zarr and the project itself are used. Runtime on two
CPU cores: about 8-10 minutes.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import hashlib
import itertools
import json
import math
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

sys.dont_write_bytecode = True  # leave no __pycache__ behind in the checkout

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
PY = sys.executable

OUTCOMES = ["ok", "warned", "refused-named", "refused-vague", "traceback", "silent-wrong", "data-loss", "hang",
            "harness-error"]
CLASSES = ["csv", "config", "corpus", "model", "fault", "truth"]

BASE_SEED = 4  # causalgen.sample_task("default", 4): 264 units, 5 covariates, 56% treated
TOL_SCALE = 1e-3
TOL_ORDER = 1e-2
TOL_OUTLIER = 1e-2

# ---------------------------------------------------------------------------------------------
# infrastructure


@dataclass
class Run:
    cmd: list[str]
    rc: int | None
    out: str
    err: str
    secs: float
    hang: bool = False


@dataclass
class Probe:
    id: str
    cls: str
    desc: str
    expect: str
    fn: Callable[[], dict]


@dataclass
class Ctx:
    tmp: Path
    timeout: float
    env: dict[str, str]
    cache: dict[str, Any] = field(default_factory=dict)
    immutable: list[Path] = field(default_factory=list)
    live: set = field(default_factory=set)  # running Popen objects, killed on Ctrl-C

    def d(self, *parts: str) -> Path:
        p = self.tmp.joinpath(*parts)
        p.mkdir(parents=True, exist_ok=True)
        return p


CTX: Ctx = None  # type: ignore[assignment]  # set in main()
PROBES: list[Probe] = []
_SEQ = itertools.count()


_LOCKS: dict[str, threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()


def cache_lock(key: str) -> threading.Lock:
    """The lock of one cached fixture: probes run in threads (--jobs) build each fixture once."""
    with _LOCKS_GUARD:
        return _LOCKS.setdefault(key, threading.Lock())


def add(pid: str, cls: str, desc: str, expect: str, fn: Callable[[], dict]) -> None:
    PROBES.append(Probe(pid, cls, desc, expect, fn))


def run(cmd: list[str], *, timeout: float | None = None, stdin: bytes | None = None, env: dict | None = None,
        cwd: Path | None = None, preexec: Callable | None = None) -> Run:
    """Run a command in its own session; on timeout kill its whole process group."""
    e = dict(CTX.env)
    if env:
        for k, v in env.items():
            if v is None:
                e.pop(k, None)
            else:
                e[k] = v
    t0 = time.monotonic()
    p = subprocess.Popen([str(c) for c in cmd], stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=e, cwd=str(cwd or CTX.tmp),
                         start_new_session=True, preexec_fn=preexec)
    CTX.live.add(p)
    hang = False
    try:
        out, err = p.communicate(stdin, timeout=timeout or CTX.timeout)
    except subprocess.TimeoutExpired:
        hang = True
        _killpg(p.pid)
        out, err = p.communicate()
    finally:
        CTX.live.discard(p)
    return Run([str(c) for c in cmd], p.returncode, out.decode("utf-8", "replace"), err.decode("utf-8", "replace"),
               time.monotonic() - t0, hang)


def _killpg(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def causalgen_cmd(*args) -> list[str]:
    return [PY, "-m", "causalgen.cli", *map(str, args)]


def cina_cmd(*args) -> list[str]:
    return [PY, "-m", "cina.cli", *map(str, args)]


def child_cmd(mode: str, *args) -> list[str]:
    return [PY, str(CTX.tmp / "probe_child.py"), mode, *map(str, args)]


def named(text: str, groups, strip=()) -> tuple[bool, list[str]]:
    """Every group (a string or a tuple of alternatives) must occur in `text` (case-insensitive).

    strip: strings (the probe's own paths) removed from the text before matching a group that
    does not itself name them, so that a keyword such as 'bom' is not found in 'bom.csv'."""
    low = text.lower()
    bare = low
    for s in sorted((str(x).lower() for x in strip if x), key=len, reverse=True):
        bare = bare.replace(s, " ")
    missing = []
    for g in groups:
        alts = (g,) if isinstance(g, str) else tuple(g)
        own = any(str(a).lower() in (str(x).lower() for x in strip) for a in alts)
        hay = low if own else bare
        if not any(str(a).lower() in hay for a in alts):
            missing.append("|".join(map(str, alts)))
    return not missing, missing


_NOISE = re.compile(r"^\s*(warnings\.warn|\S+:\d+: \w*Warning:)|it/s\]|\|\s*\d+/\d+ \[")


def message_lines(r: Run) -> list[str]:
    lines = [ln.strip() for ln in r.err.splitlines() if ln.strip() and not _NOISE.search(ln)]
    lines += [ln.strip() for ln in r.out.splitlines()[-5:] if ln.strip()]
    return lines


def tail(text: str, n: int = 600) -> str:
    text = text.strip()
    return text if len(text) <= n else "..." + text[-n:]


def result(outcome: str, detail: Any = None, r: Run | None = None, **extra) -> dict:
    out = {"outcome": outcome, "detail": detail}
    if r is not None:
        out.update(cmd=" ".join(_short(c) for c in r.cmd), rc=r.rc, secs=round(r.secs, 2),
                   stderr=tail(r.err), stdout=tail(r.out, 300))
    out.update(extra)
    return out


def _short(arg: str) -> str:
    s = str(arg).replace(str(CTX.tmp), "$TMP").replace(PY, "python")
    return s if len(s) < 200 else s[:200] + "..."


def classify_failure(r: Run, groups, strip=()) -> dict:
    """A run that did not succeed: hang, traceback, refused-named or refused-vague."""
    if r.hang:
        return result("hang", f"no answer after {r.secs:.0f} s", r)
    if "Traceback (most recent call last)" in r.err:
        lines = [ln for ln in r.err.splitlines() if ln.strip()]
        first = lines[0].strip() if lines else ""
        exc = next((ln.strip() for ln in reversed(lines) if re.match(r"^[\w.]+(Error|Exception|Interrupt|Exit|Warning)\b|^[\w.]+:", ln.strip())), lines[-1] if lines else "")
        return result("traceback", {"cause_first": not first.startswith("Traceback"), "first_line": first[:300],
                                    "exception": exc[:300]}, r)
    if r.rc is not None and r.rc < 0:
        return result("traceback", {"cause_first": False, "signal": -r.rc}, r)
    text = "\n".join(message_lines(r))
    ok, missing = named(text, groups, strip)
    msg = next((ln for ln in message_lines(r) if "error" in ln.lower() or "failed" in ln.lower()), (message_lines(r) or [""])[-1])
    return result("refused-named" if ok else "refused-vague",
                  {"message": msg[:400], **({} if ok else {"names_missing": missing})}, r)


def classify_exception(info: dict, groups, r: Run) -> dict:
    """An exception from the API (reported by the child process as JSON)."""
    etype, module, msg = info.get("exc", "?"), info.get("module", ""), info.get("msg", "")
    lib = module.split(".")[0] in ("causalgen", "cina")
    builtin_ok = etype in ("ValueError", "FileNotFoundError", "NotADirectoryError", "IsADirectoryError",
                           "PermissionError", "OSError", "TypeError")
    ok, missing = named(msg, groups)
    detail = {"exception": f"{module + '.' if module and module != 'builtins' else ''}{etype}: {msg[:300]}",
              "where": info.get("where")}
    if lib or (builtin_ok and ok):
        if not ok:
            detail["names_missing"] = missing
        return result("refused-named" if ok else "refused-vague", detail, r)
    detail["cause_first"] = bool(msg.strip())
    return result("traceback", detail, r)


def child_json(r: Run) -> dict | None:
    for line in reversed(r.out.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                return None
    return None


def run_child(groups, check: Callable[[dict], tuple[str, Any]], mode: str, *args, timeout: float | None = None,
              env: dict | None = None) -> dict:
    """Run an API probe in the child; exceptions -> classify_exception, success -> check(payload)."""
    r = run(child_cmd(mode, *args), timeout=timeout, env=env)
    if r.hang:
        return result("hang", f"no answer after {r.secs:.0f} s", r)
    info = child_json(r)
    if info is None:
        return classify_failure(r, groups)
    if "exc" in info:
        return classify_exception(info, groups, r)
    outcome, detail = check(info)
    return result(outcome, detail, r)


def tree_digest(root: Path, ignore=(".lock",)) -> dict[str, str]:
    out = {}
    for dirpath, _, names in os.walk(root):
        for nm in names:
            if nm in ignore:
                continue
            full = Path(dirpath) / nm
            out[str(full.relative_to(root))] = hashlib.sha256(full.read_bytes()).hexdigest()
    return out


def tree_diff(a: dict, b: dict) -> list[str]:
    diff = sorted(set(a) ^ set(b)) + sorted(k for k in set(a) & set(b) if a[k] != b[k])
    return diff


def flip_bit(path: Path, offset: int, bit: int = 0) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 1 << bit
    path.write_bytes(bytes(data))


def make_readonly(path: Path) -> None:
    """A directory nobody can write into, even root (chattr +i), else chmod 0555."""
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0 and shutil.which("chattr"):
        if subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode == 0:
            CTX.immutable.append(path)
            return
    path.chmod(0o555)
    CTX.immutable.append(path)


def undo_readonly() -> None:
    for p in CTX.immutable:
        if shutil.which("chattr"):
            subprocess.run(["chattr", "-i", str(p)], capture_output=True)
        try:
            p.chmod(0o755)
        except OSError:
            pass
    CTX.immutable.clear()


def fsize_limit(nbytes: int):
    def pre():
        resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, nbytes))
    return pre


# ---------------------------------------------------------------------------------------------
# the child process for API probes (written to $TMP/probe_child.py)

CHILD = r'''
import hashlib, json, os, sys, traceback, warnings
sys.dont_write_bytecode = True
import numpy as np

def emit(obj):
    print(json.dumps(obj, default=float))

def fail(exc):
    tb = traceback.extract_tb(exc.__traceback__)
    where = f"{os.path.basename(tb[-1].filename)}:{tb[-1].lineno} in {tb[-1].name}" if tb else None
    lines = str(exc).strip().splitlines()
    emit({"exc": type(exc).__name__, "module": type(exc).__module__, "msg": lines[0] if lines else "", "where": where})
    sys.exit(3)

ARRAYS = ("x", "t", "y", "y0", "y1", "propensity")

def task_digest(h, t):
    bad = 0
    for name in ARRAYS:
        a = np.ascontiguousarray(getattr(t, name))
        h.update(name.encode()); h.update(a.tobytes())
        if a.dtype.kind == "f":
            bad += int((~np.isfinite(a)).sum())
    for name in ("ate", "ate_se", "sate", "att"):
        v = float(getattr(t, name)); h.update(np.float64(v).tobytes()); bad += 0 if np.isfinite(v) else 1
    return bad

def mode_open(path):
    import causalgen
    c = causalgen.open_corpus(path)
    h = hashlib.sha256(); bad = 0; mismatch = []
    for i in range(len(c)):
        t = c[i]
        bad += task_digest(h, t)
        s = causalgen.sample_task(c.config, c.task_seed(i))
        if not all(np.array_equal(getattr(s, a), getattr(t, a)) for a in ARRAYS) or s.ate != t.ate:
            mismatch.append(i)
    emit({"n": len(c), "digest": h.hexdigest(), "nonfinite": bad, "contract_mismatch": mismatch[:10],
          "n_mismatch": len(mismatch)})

def mode_stream(path):
    import torch
    torch.set_num_threads(1)
    from cina import TaskStream
    s = TaskStream(path, batch_size=4, seed=0, shuffle=False, drop_last=False)
    h = hashlib.sha256(); bad = 0; n = 0
    for b in s:
        for k in sorted(b):
            v = b[k]
            if hasattr(v, "numpy"):
                a = v.detach().cpu().numpy()
                h.update(k.encode()); h.update(np.ascontiguousarray(a).tobytes())
                if a.dtype.kind == "f":
                    bad += int((~np.isfinite(a)).sum())
        n += int(b["x"].shape[0])
    emit({"n": n, "digest": h.hexdigest(), "nonfinite": bad})

def mode_estimate(npz, model):
    import torch
    torch.set_num_threads(1)
    import cina
    d = dict(np.load(npz, allow_pickle=False))
    x, t, y = d["x"], d["t"], d["y"]
    m = cina.CInA.load(model)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        est = m.estimate(x, t, y)
    diag = {k: (v.tolist() if hasattr(v, "tolist") else v) for k, v in est.diagnostics.items()}
    emit({"estimate": float(est.ate), "diagnostics": diag, "py_warnings": [str(i.message) for i in w]})

def mode_truth(kind, preset, n_seeds):
    import causalgen
    seeds = list(range(int(n_seeds)))
    base = causalgen.load_config(preset).to_dict()
    tight = dict(base, ate_mc_tolerance=0.002, ate_mc_units=200000, ate_mc_round_units=4096)
    A = causalgen.sample_tasks(preset, seeds)
    rows = []
    if kind == "consistency":
        for a in A:
            ok = np.array_equal(a.y, np.where(a.t == 1, a.y1, a.y0)) and abs(a.sate - float(np.mean(a.y1.astype(np.float64) - a.y0))) < 1e-5
            rows.append({"seed": int(a.meta.get("seed", -1)), "ok": bool(ok)})
        emit({"rows": rows}); return
    if kind == "mc":
        B = causalgen.sample_tasks(causalgen.load_config(tight), seeds)
        for s, a, b in zip(seeds, A, B):
            if not (np.array_equal(a.x, b.x) and np.array_equal(a.y, b.y)):
                continue  # QC resampled a different task under the finer config: not comparable
            if a.meta.get("ate_method") == "monte_carlo" and a.ate_se > 1e-6:
                z = (a.ate - b.ate) / np.sqrt(a.ate_se ** 2 + b.ate_se ** 2)
                rows.append({"seed": s, "ate": a.ate, "ate_se": a.ate_se, "reference": b.ate, "reference_se": b.ate_se, "z": float(z)})
    else:  # closed form against a forced Monte Carlo
        C = causalgen.sample_tasks(causalgen.load_config(dict(tight, ate_method="monte_carlo")), seeds)
        for s, a, c in zip(seeds, A, C):
            if not (np.array_equal(a.x, c.x) and np.array_equal(a.y, c.y)):
                continue
            if a.meta.get("ate_method") == "closed_form":
                scale = max(c.ate_se, 1e-6 * (1 + abs(c.ate)))
                rows.append({"seed": s, "ate": a.ate, "reference": c.ate, "reference_se": c.ate_se, "z": float((a.ate - c.ate) / scale)})
    emit({"rows": rows})

if __name__ == "__main__":
    try:
        {"open": mode_open, "stream": mode_stream, "estimate": mode_estimate, "truth": mode_truth}[sys.argv[1]](*sys.argv[2:])
    except Exception as exc:
        fail(exc)
'''

# ---------------------------------------------------------------------------------------------
# fixtures


def base_task():
    with cache_lock("task"):
        if "task" not in CTX.cache:
            import causalgen

            t = causalgen.sample_task("default", BASE_SEED)
            CTX.cache["task"] = (t.x.astype(np.float64), t.t.astype(np.int64), t.y.astype(np.float64))
        return CTX.cache["task"]


def sd_y() -> float:
    return float(np.std(base_task()[2]))


def fmt(v: float) -> str:
    return repr(float(v))


def table(x=None, t=None, y=None, extra: dict | None = None, cov_names=None):
    """(header, rows) of the base task (or the given arrays), extra columns appended."""
    bx, bt, by = base_task()
    x = bx if x is None else x
    t = bt if t is None else t
    y = by if y is None else y
    names = cov_names or [f"x{j}" for j in range(x.shape[1])]
    header = ["treated", "y", *names]
    rows = [[str(int(t[i])), fmt(y[i]), *(fmt(v) for v in x[i])] for i in range(len(t))]
    if extra:
        for name, col in extra.items():
            header.append(name)
            for i, row in enumerate(rows):
                row.append(col[i] if isinstance(col[i], str) else fmt(col[i]))
    return header, rows


def write_csv(name: str, header, rows, *, delim=",", encoding="utf-8", bom=False, newline="\n", gz=False,
              trailer: str = "") -> Path:
    path = CTX.d("csv") / name
    text = newline.join(delim.join(r) for r in [header, *rows]) + newline + trailer
    data = text.encode(encoding)
    if bom:
        data = b"\xef\xbb\xbf" + data
    if gz:
        data = gzip.compress(data, mtime=0)
    path.write_bytes(data)
    return path


def estimate_cmd(path, model="fast", extra=()) -> list[str]:
    return cina_cmd("estimate", path, "--treatment", "treated", "--outcome", "y", "--model", model, "--json", *extra)


def reference(model: str = "fast") -> float:
    key = f"ref-{model}"
    with cache_lock(key):
        if key not in CTX.cache:
            h, rows = table()
            p = write_csv(f"clean-{model}.csv", h, rows)
            r = run(estimate_cmd(p, model))
            if r.rc != 0:
                raise RuntimeError(f"the clean estimate failed: {tail(r.err)}")
            CTX.cache[key] = float(json.loads(r.out)["estimate"])
        return CTX.cache[key]


def warnings_of(payload: dict, stderr: str = "") -> list[str]:
    out = []
    for src in (payload, payload.get("diagnostics") or {}):
        for k in ("warnings", "warning"):
            v = src.get(k)
            if v:
                out.extend(v if isinstance(v, list) else [v])
    out.extend(str(w) for w in payload.get("py_warnings", []))
    out.extend(ln.strip() for ln in stderr.splitlines() if re.search(r"warn", ln, re.I))
    return [str(w) for w in out]


def judge_answer(payload: dict, stderr: str, check, warn_keys) -> tuple[str, Any]:
    """Success exit: ok if the check passes, warned if a warning names the problem, else silent-wrong."""
    est = payload.get("estimate")
    detail: dict[str, Any] = {"estimate": est}
    if check is not None:
        good, why = check(payload)
        detail["check"] = why
        if good:
            return "ok", detail
    ws = warnings_of(payload, stderr)
    if ws:
        detail["warnings"] = ws[:5]
        if warn_keys and named("\n".join(ws), [tuple(warn_keys)])[0]:
            return "warned", detail
        detail["warning_names_nothing"] = True
    return "silent-wrong", detail


def near(model="fast", tol=TOL_SCALE, factor=1.0):
    """A check: the estimate equals factor * the clean estimate within tol * sd(y) * factor."""
    def check(payload):
        est = payload.get("estimate")
        ref = reference(model) * factor
        if est is None or not math.isfinite(est):
            return False, f"estimate {est} is not finite (clean {ref:.6g})"
        err = abs(est - ref) / (sd_y() * abs(factor))
        why = f"|estimate - clean| = {err:.3g} sd(y) (tolerance {tol:g}; clean {ref:.6g})"
        x, t, y = base_task()
        dim = float(y[t == 1].mean() - y[t == 0].mean()) * factor
        if err > tol and abs(est - dim) <= 1e-6 * sd_y() * abs(factor):
            why += "; equals the unweighted difference in means of the clean data"
        return err <= tol, why
    return check


def finite_check(payload):
    est = payload.get("estimate")
    return (est is not None and math.isfinite(est)), f"estimate {est}"


def estimate_probe(path_fn, groups, check=None, warn_keys=(), model="fast", extra=(), stdin_fn=None):
    def fn():
        path = path_fn()
        groups_ = [g(path) if callable(g) else g for g in groups]
        stdin = stdin_fn() if stdin_fn else None
        if check is not None:
            reference(model)  # computed first, outside this probe's timing
        r = run(estimate_cmd(path, model, extra), stdin=stdin)
        if r.rc != 0 or r.hang:
            return classify_failure(r, groups_, strip=(str(path), fname(path)))
        try:
            payload = json.loads(r.out)
        except ValueError:
            return result("silent-wrong", "exit 0 but no JSON result", r)
        outcome, detail = judge_answer(payload, r.err, check, warn_keys)
        return result(outcome, detail, r)
    return fn


def fname(path) -> str:
    return os.path.basename(str(path))


def rowref(r: int):
    """Alternatives that name data row r (0-based): as a 1-based data row or as a file line."""
    return tuple(f"{w} {n}" for w in ("row", "line") for n in (r + 1, r + 2))


# ---------------------------------------------------------------------------------------------
# class csv: bad CSVs for `cina estimate` (and arrays for CInA.estimate)


def register_csv() -> None:
    C = "csv"
    F = fname  # a group that names the file: the probe's own file name

    def sv(name, **kw):
        def make():
            h, rows = table()
            return write_csv(name, h, rows, **kw)
        return make

    add("csv-clean", C, "the clean base CSV (264 units, 5 covariates) with the fast model", "ok: the reference",
        estimate_probe(sv("clean.csv"), [F], check=near()))
    add("csv-clean-default", C, "the clean base CSV with the default model", "ok: the reference",
        estimate_probe(sv("clean-d.csv"), [F], check=near("default"), model="default"))
    enc = ("encoding", "utf-8", "decode", "bom", "byte order", "latin", "utf-16")
    add("csv-bom", C, "UTF-8 with a byte-order mark", "ok (same estimate) or refused naming the file and the BOM",
        estimate_probe(sv("excel-a.csv", bom=True), [F, ("bom", "byte order", "utf-8-sig", "encoding")], check=near()))
    add("csv-bom-crlf", C, "UTF-8 BOM and CRLF line ends (Excel's 'CSV UTF-8')", "ok or refused naming the file and BOM",
        estimate_probe(sv("excel-b.csv", bom=True, newline="\r\n"), [F, ("bom", "byte order", "utf-8-sig", "encoding")], check=near()))
    add("csv-crlf", C, "CRLF line ends", "ok",
        estimate_probe(sv("crlf.csv", newline="\r\n"), [F], check=near()))
    add("csv-gzip", C, "gzip-compressed data.csv.gz", "ok or refused naming the file and gzip",
        estimate_probe(sv("data.csv.gz", gz=True), [F, ("gzip", "compressed", ".gz")], check=near()))

    def latin1():
        h, rows = table(cov_names=["âge", "x1", "x2", "x3", "x4"])
        return write_csv("legacy-a.csv", h, rows, encoding="latin-1")
    add("csv-latin1", C, "Latin-1 encoded header with a non-ASCII column name", "ok or refused naming the file and encoding",
        estimate_probe(latin1, [F, enc], check=near()))

    def utf8name():
        h, rows = table(cov_names=["âge", "x1", "x2", "x3", "x4"])
        return write_csv("utf8name.csv", h, rows)
    add("csv-utf8-colname", C, "UTF-8 non-ASCII column name", "ok",
        estimate_probe(utf8name, [F], check=near()))
    add("csv-utf16", C, "UTF-16 (with BOM) encoded file", "ok or refused naming the file and encoding",
        estimate_probe(sv("legacy-b.csv", encoding="utf-16"), [F, enc], check=near()))
    delim = ("tab", "delimiter", "separator", "tsv", "semicolon", "';'", "'\\t'")
    add("csv-tsv", C, "tab-separated file", "ok or refused naming the file and the delimiter",
        estimate_probe(sv("export-a.tsv", delim="\t"), [F, delim], check=near()))
    add("csv-semicolon", C, "semicolon-separated file", "ok or refused naming the file and the delimiter",
        estimate_probe(sv("export-b.csv", delim=";"), [F, delim], check=near()))

    def decimal_comma():
        h, rows = table()
        rows = [[c.replace(".", ",") for c in r] for r in rows]
        return write_csv("export-c.csv", h, rows, delim=";")
    add("csv-decimal-comma", C, "European CSV: ';' separated, decimal commas", "ok or refused naming the file and the format",
        estimate_probe(decimal_comma, [F, delim + ("decimal", "comma")], check=near()))

    def stdin_bytes():
        h, rows = table()
        return ("\n".join(",".join(r) for r in [h, *rows]) + "\n").encode()
    add("csv-stdin", C, "data read from stdin ('-')", "ok or refused naming stdin",
        estimate_probe(lambda: "-", [("stdin", "standard input")], check=near(), stdin_fn=stdin_bytes))
    add("csv-trailing-blank-lines", C, "two blank lines at the end", "ok or refused naming the row",
        estimate_probe(sv("trail.csv", trailer="\n\n"), [F, ("row", "line")], check=near()))

    def blank_mid():
        h, rows = table()
        rows = rows[:50] + [[]] + rows[50:]
        return write_csv("blankmid.csv", h, [r if r else [""] for r in rows])
    add("csv-blank-line-middle", C, "an empty line in the middle", "ok (skipped) or refused naming the row",
        estimate_probe(blank_mid, [F, rowref(50)], check=near()))

    def quoted():
        h, rows = table()
        return write_csv("quoted.csv", [f'"{c}"' for c in h], [[f'"{c}"' for c in r] for r in rows])
    add("csv-quoted", C, "every field quoted", "ok", estimate_probe(quoted, [F], check=near()))

    def spaces():
        h, rows = table()
        return write_csv("spaces.csv", [f" {c} " for c in h], [[f" {c} " for c in r] for r in rows])
    add("csv-spaces", C, "spaces around every header and cell", "ok", estimate_probe(spaces, [F], check=near()))

    def cell(name, col, row, value):
        def make():
            h, rows = table()
            rows[row][h.index(col)] = value
            return write_csv(name, h, rows)
        return make

    for pid, col, row, val in [
        ("csv-empty-cell-cov", "x2", 5, ""), ("csv-nan-cov", "x1", 7, "NaN"), ("csv-nan-outcome", "y", 3, "nan"),
        ("csv-na-token", "x3", 11, "NA"), ("csv-inf-cov", "x0", 13, "inf"), ("csv-neginf-outcome", "y", 17, "-inf"),
        ("csv-text-cov", "x4", 19, "abc"), ("csv-text-treatment", "treated", 23, "yes"),
        ("csv-empty-treatment", "treated", 29, ""), ("csv-overflow-literal", "x0", 31, "1e400"),
        ("csv-question-mark", "x2", 37, "?"),
    ]:
        add(pid, C, f"column {col}, data row {row + 1}: {val!r}", f"refused naming column {col} and the row",
            estimate_probe(cell(f"{pid}.csv", col, row, val), [col, rowref(row)]))

    def tcol(name, fn):
        def make():
            x, t, y = base_task()
            h, rows = table()
            for i, r in enumerate(rows):
                r[0] = fn(i, int(t[i]))
            return write_csv(name, h, rows)
        return make

    add("csv-treatment-float", C, "treatment written 0.0/1.0", "ok",
        estimate_probe(tcol("tfloat.csv", lambda i, v: f"{v}.0"), [F, "treated"], check=near()))
    add("csv-treatment-bool", C, "treatment written True/False", "ok (mapped) or refused naming the column",
        estimate_probe(tcol("tbool.csv", lambda i, v: "True" if v else "False"), [F, "treated"], check=near()))
    add("csv-treatment-2", C, "one treatment value 2", "refused naming the column",
        estimate_probe(tcol("t2.csv", lambda i, v: "2" if i == 40 else str(v)), [F, "treated"]))
    add("csv-treatment-pm1", C, "treatment coded -1/1", "refused naming the column",
        estimate_probe(tcol("tpm1.csv", lambda i, v: "1" if v else "-1"), [F, "treated"]))
    add("csv-treatment-half", C, "one treatment value 0.5", "refused naming the column",
        estimate_probe(tcol("thalf.csv", lambda i, v: "0.5" if i == 41 else str(v)), [F, "treated"]))
    add("csv-treatment-all1", C, "every unit treated", "refused naming the column and the empty arm",
        estimate_probe(tcol("tall1.csv", lambda i, v: "1"), [F, "treated"]))
    add("csv-treatment-all0", C, "no unit treated", "refused naming the column and the empty arm",
        estimate_probe(tcol("tall0.csv", lambda i, v: "0"), [F, "treated"]))

    def dup(name, a, b):
        def make():
            h, rows = table()
            h = [b if c == a else c for c in h]
            return write_csv(name, h, rows)
        return make
    add("csv-duplicate-covariate", C, "two columns named x1", "refused naming x1",
        estimate_probe(dup("dupcov.csv", "x2", "x1"), [F, "x1"]))
    add("csv-duplicate-treatment", C, "a covariate also named 'treated'", "refused naming treated",
        estimate_probe(dup("duptreat.csv", "x0", "treated"), [F, "treated"]))
    add("csv-missing-treatment-col", C, "--treatment names no column", "refused naming the column",
        estimate_probe(sv("mt.csv"), [F, "treat_missing"], extra=("--treatment", "treat_missing")))
    add("csv-missing-outcome-col", C, "--outcome names no column", "refused naming the column",
        estimate_probe(sv("mo.csv"), [F, "outcome_missing"], extra=("--outcome", "outcome_missing")))
    add("csv-missing-covariate", C, "--covariates names a missing column", "refused naming the column",
        estimate_probe(sv("mc.csv"), [F, "xx9"], extra=("--covariates", "x0", "xx9")))
    add("csv-treatment-is-outcome", C, "--treatment y --outcome y", "refused naming the column",
        estimate_probe(sv("tio.csv"), [F, ("'y'", "same")], extra=("--treatment", "y")))
    add("csv-covariate-is-treatment", C, "--covariates includes the treatment", "refused naming the column",
        estimate_probe(sv("cit.csv"), [F, "treated"], extra=("--covariates", "treated", "x0")))

    def ragged(name, extra_field):
        def make():
            h, rows = table()
            rows[60] = rows[60] + ["9.9"] if extra_field else rows[60][:-1]
            return write_csv(name, h, rows)
        return make
    add("csv-ragged-long", C, "one row with an extra field", "refused naming the row",
        estimate_probe(ragged("rlong.csv", True), [F, rowref(60)]))
    add("csv-ragged-short", C, "one row missing a field", "refused naming the row",
        estimate_probe(ragged("rshort.csv", False), [F, rowref(60)]))

    def allempty():
        h, rows = table()
        rows[70] = [""] * len(h)
        return write_csv("allempty.csv", h, rows)
    add("csv-all-empty-row", C, "a row of empty fields (,,,,,,)", "refused naming the row, or skipped with a warning naming it",
        estimate_probe(allempty, [F, rowref(70)], check=near(), warn_keys=rowref(70)))

    def header_only():
        h, _ = table()
        return write_csv("headeronly.csv", h, [])
    add("csv-header-only", C, "a header and no rows", "refused naming the file (no data rows)",
        estimate_probe(header_only, [F, ("no data", "0 units", "no rows", "empty", "0 rows")]))

    def empty():
        p = CTX.d("csv") / "empty.csv"
        p.write_bytes(b"")
        return p
    add("csv-empty-file", C, "a 0-byte file", "refused naming the file", estimate_probe(empty, [F, "empty"]))
    add("csv-no-such-file", C, "a path that does not exist", "refused naming the path",
        estimate_probe(lambda: CTX.tmp / "csv" / "nosuch.csv", [F]))
    add("csv-directory", C, "a directory given as the data file", "refused naming the path",
        estimate_probe(lambda: CTX.d("csv", "adir.csv"), [F]))

    def no_covs():
        _, t, y = base_task()
        return write_csv("nocov.csv", ["treated", "y"], [[str(int(a)), fmt(b)] for a, b in zip(t, y)])
    add("csv-no-covariates", C, "only the treatment and outcome columns", "refused naming the missing covariates",
        estimate_probe(no_covs, [F, "covariate"]))

    def subset(name, n_ctrl, n_trt, keep_all_ctrl=False, keep_all_trt=False):
        def make():
            x, t, y = base_task()
            ci, ti = np.flatnonzero(t == 0), np.flatnonzero(t == 1)
            idx = np.sort(np.concatenate([ci if keep_all_ctrl else ci[:n_ctrl], ti if keep_all_trt else ti[:n_trt]]))
            h, rows = table(x[idx], t[idx], y[idx])
            return write_csv(name, h, rows)
        return make
    arm_words = ("treated", "control", "arm", "effective sample", "ess", "few", "small", "overlap")
    add("csv-9-units", C, "9 units (5 control, 4 treated)", "refused naming the file and the size",
        estimate_probe(subset("n9.csv", 5, 4), [F, ("units", "rows")]))
    add("csv-10-units", C, "10 units, 5 per arm", "an answer (finite)",
        estimate_probe(subset("n10.csv", 5, 5), [F], check=finite_check))
    add("csv-1-treated-of-10", C, "1 treated unit of 10", "warned (or refused) naming the tiny arm",
        estimate_probe(subset("t1of10.csv", 9, 1), [F, ("treated", "arm")], warn_keys=arm_words))
    add("csv-1-treated-of-118", C, "1 treated unit among all 117 controls", "warned (or refused) naming the tiny arm",
        estimate_probe(subset("t1ofall.csv", 0, 1, keep_all_ctrl=True), [F, ("treated", "arm")], warn_keys=arm_words))
    add("csv-2-treated", C, "2 treated units among all controls", "warned (or refused) naming the tiny arm",
        estimate_probe(subset("t2.csv", 0, 2, keep_all_ctrl=True), [F, ("treated", "arm")], warn_keys=arm_words))
    add("csv-att-1-control", C, "--estimand att with 1 control unit", "warned (or refused) naming the tiny arm",
        estimate_probe(subset("c1att.csv", 1, 0, keep_all_trt=True), [F, ("control", "arm")], warn_keys=arm_words,
                       extra=("--estimand", "att")))

    def separation(name):
        def make():
            x, t, y = base_task()
            sep = (2.0 * t - 1.0) + 0.1 * np.random.default_rng(1).standard_normal(len(t))
            h, rows = table(extra={"sep": sep})
            return write_csv(name, h, rows)
        return make
    sep_words = ("sep", "overlap", "separat", "positivity", "balance", "imbalance")
    add("csv-separation", C, "a covariate 'sep' that perfectly separates the arms", "warned (or refused) naming sep / overlap",
        estimate_probe(separation("sep.csv"), [F, "sep"], warn_keys=sep_words))
    add("csv-separation-default", C, "the same with the default model", "warned (or refused) naming sep / overlap",
        estimate_probe(separation("sep-d.csv"), [F, "sep"], warn_keys=sep_words, model="default"))
    add("csv-1-treated-of-10-default", C, "1 treated unit of 10, default model", "warned (or refused)",
        estimate_probe(subset("t1of10d.csv", 9, 1), [F, ("treated", "arm")], warn_keys=arm_words, model="default"))

    def scaled(name, col_scale: dict | None = None, all_scale=None, y_scale=None, shift: dict | None = None,
               perm=False):
        def make():
            x, t, y = base_task()
            x = x.copy()
            y = y.copy()
            if col_scale:
                for j, s in col_scale.items():
                    x[:, j] *= s
            if all_scale:
                x *= all_scale
            if shift:
                for j, s in shift.items():
                    x[:, j] += s
            if y_scale:
                y *= y_scale
            if perm:
                p = np.random.default_rng(0).permutation(len(t))
                x, t, y = x[p], t[p], y[p]
            h, rows = table(x, t, y)
            return write_csv(name, h, rows)
        return make

    for s in (1e-12, 1e-7, 1e-3, 1e3, 1e7, 1e12, 1e19, 1e20):
        tag = f"{s:.0e}".replace("+", "")
        add(f"csv-scale-x1-{tag}", C, f"covariate x1 multiplied by {s:g}", "ok: the clean estimate (tol 1e-3 sd(y))",
            estimate_probe(scaled(f"sx1{tag}.csv", {1: s}), [F, "x1"], check=near()))
    for s in (1e-7, 1e19):
        tag = f"{s:.0e}".replace("+", "")
        add(f"csv-scale-x1-{tag}-default", C, f"covariate x1 multiplied by {s:g}, default model", "ok: the clean estimate",
            estimate_probe(scaled(f"sx1{tag}d.csv", {1: s}), [F, "x1"], check=near("default"), model="default"))
    add("csv-scale-all-1e10", C, "every covariate multiplied by 1e10", "ok: the clean estimate",
        estimate_probe(scaled("sall1e10.csv", all_scale=1e10), [F], check=near()))
    add("csv-scale-all-1e-10", C, "every covariate multiplied by 1e-10", "ok: the clean estimate",
        estimate_probe(scaled("sall1e-10.csv", all_scale=1e-10), [F], check=near()))
    add("csv-scale-mixed", C, "x0 x 1e-9, x2 x 1e9, x4 x 1e15", "ok: the clean estimate",
        estimate_probe(scaled("smixed.csv", {0: 1e-9, 2: 1e9, 4: 1e15}), [F], check=near()))
    add("csv-scale-y-1e6", C, "outcome multiplied by 1e6", "ok: 1e6 x the clean estimate",
        estimate_probe(scaled("sy1e6.csv", y_scale=1e6), [F, "y"], check=near(factor=1e6)))
    add("csv-scale-y-1e-6", C, "outcome multiplied by 1e-6", "ok: 1e-6 x the clean estimate",
        estimate_probe(scaled("sy1e-6.csv", y_scale=1e-6), [F, "y"], check=near(factor=1e-6)))
    add("csv-shift-x1-1e3", C, "x1 + 1000", "ok: the clean estimate",
        estimate_probe(scaled("shift1e3.csv", shift={1: 1e3}), [F, "x1"], check=near()))
    add("csv-shift-x1-1e8", C, "x1 + 1e8 (beyond float32 resolution)", "ok (float64) or refused/warned naming x1",
        estimate_probe(scaled("shift1e8.csv", shift={1: 1e8}), [F, "x1"], check=near(),
                       warn_keys=("x1", "precision")))
    add("csv-row-order", C, "rows shuffled", "ok: the clean estimate (tol 1e-2)",
        estimate_probe(scaled("perm.csv", perm=True), [F], check=near(tol=TOL_ORDER)))

    def const(name, value):
        def make():
            n = len(base_task()[1])
            h, rows = table(extra={"const": [value] * n})
            return write_csv(name, h, rows)
        return make
    add("csv-constant-column", C, "an extra constant column (3.0)", "ok: the clean estimate (a warning is fine)",
        estimate_probe(const("const.csv", 3.0), [F, "const"], check=near()))
    add("csv-zero-column", C, "an extra all-zero column", "ok: the clean estimate",
        estimate_probe(const("zero.csv", 0.0), [F, "const"], check=near()))
    add("csv-constant-outcome", C, "the outcome is constant", "ok: estimate 0 (or a warning)",
        estimate_probe(lambda: write_csv("consty.csv", *table(y=np.full(len(base_task()[1]), 2.5))), [F, "y"],
                       check=lambda p: (p.get("estimate") is not None and abs(p["estimate"]) < 1e-6, f"estimate {p.get('estimate')}"),
                       warn_keys=("y", "constant", "outcome")))

    def outlier(name, col, value):
        def make():
            h, rows = table()
            rows[80][h.index(col)] = value
            return write_csv(name, h, rows)
        return make
    add("csv-huge-cell-cov", C, "one covariate cell 1e39 (finite in float64, inf in float32)",
        "refused or warned naming x0 / the row; else within 1e-2 sd(y) of clean",
        estimate_probe(outlier("hugex.csv", "x0", "1e39"), ["x0", rowref(80)], check=near(tol=TOL_OUTLIER),
                       warn_keys=("x0", "row", "outlier", "large")))
    add("csv-huge-cell-outcome", C, "one outcome cell 1e39", "refused or warned naming y / the row",
        estimate_probe(outlier("hugey.csv", "y", "1e39"), [("'y'", "column y", "outcome"), rowref(80)],
                       warn_keys=("'y'", "outcome", "outlier", "large")))
    add("csv-large-cell-cov", C, "one covariate cell 1e30 (finite in float32)",
        "refused or warned naming x0; else within 1e-2 sd(y) of clean",
        estimate_probe(outlier("largex.csv", "x0", "1e30"), ["x0", rowref(80)], check=near(tol=TOL_OUTLIER),
                       warn_keys=("x0", "row", "outlier", "large")))

    def wide(name, k):
        def make():
            x, t, y = base_task()
            noise = np.random.default_rng(2).standard_normal((len(t), k - x.shape[1]))
            h, rows = table(np.hstack([x, noise]), t, y)
            return write_csv(name, h, rows)
        return make
    def max_features(model: str) -> int:
        return json.loads((REPO / "cina" / "assets" / f"{model}_model" / "config.json").read_text())["config"]["max_features"]

    for model in ("fast", "default"):
        k = max_features(model)
        add(f"csv-too-many-covariates-{model}", C, f"{k + 1} covariates (the {model} model takes {k})",
            "refused naming the count", estimate_probe(wide(f"wide-{model}.csv", k + 1), [F, (str(k), str(k + 1)), "covariates"],
                                                       model=model))

    # ---- the Python API, in a child process
    def api(name, mutate, groups, check=None, warn_keys=(), model="fast"):
        def fn():
            x, t, y = base_task()
            d = {"x": x.astype(np.float32), "t": t.astype(np.float32), "y": y.astype(np.float32)}
            mutate(d)
            p = CTX.d("csv") / f"{name}.npz"
            np.savez(p, **d)
            if check is not None:
                reference(model)

            def judge(payload):
                return judge_answer(payload, "", check, warn_keys)
            return run_child(groups, judge, "estimate", p, model)
        return fn

    def m_nan(d):
        d["x"][3, 1] = np.nan
    add("csv-api-nan-x", C, "CInA.estimate with a NaN in x", "refused naming x and the NaN",
        api("api-nan", m_nan, ["x", ("nan", "non-finite", "inf")]))

    def m_half(d):
        d["t"][5] = 0.5
    add("csv-api-t-half", C, "CInA.estimate with t containing 0.5", "refused naming t",
        api("api-thalf", m_half, [("t must", "'t'", " t ", "treatment")]))

    def m_short(d):
        d["y"] = d["y"][:-1]
    add("csv-api-y-short", C, "CInA.estimate with y one shorter than x", "refused naming y and the shapes",
        api("api-yshort", m_short, [("y must", "'y'", " y ", "outcome")]))

    def m_3d(d):
        d["x"] = d["x"][:, :, None]
    add("csv-api-x-3d", C, "CInA.estimate with a 3-D x", "refused naming x", api("api-x3d", m_3d, [("x must", "'x'", " x ")]))

    def m_bool(d):
        d["t"] = d["t"].astype(bool)
    add("csv-api-t-bool", C, "CInA.estimate with a bool t", "ok: the clean estimate",
        api("api-tbool", m_bool, ["t"], check=near()))

    def m_f64(d):
        d["x"] = base_task()[0].copy()
        d["t"] = d["t"].astype(np.int64)
    add("csv-api-x-float64-t-int", C, "CInA.estimate with float64 x and int64 t", "ok: the clean estimate",
        api("api-f64", m_f64, ["x"], check=near()))

    def m_s19(d):
        d["x"] = d["x"].copy()
        d["x"][:, 1] *= np.float32(1e19)
    add("csv-api-scale-x1-1e19", C, "CInA.estimate with x1 x 1e19", "ok: the clean estimate",
        api("api-s19", m_s19, ["x"], check=near()))

    def m_1of10(d):
        t = d["t"]
        idx = np.sort(np.concatenate([np.flatnonzero(t == 0)[:9], np.flatnonzero(t == 1)[:1]]))
        for k in ("x", "t", "y"):
            d[k] = d[k][idx]
    add("csv-api-1-treated-of-10", C, "CInA.estimate with 1 treated unit of 10", "warned or refused",
        api("api-1of10", m_1of10, [("treated", "arm")], warn_keys=arm_words))


# ---------------------------------------------------------------------------------------------
# class config: bad task configs and arguments for causalgen sample / generate


def register_config() -> None:
    C = "config"

    def cfg_file(name: str, text: str | bytes) -> Path:
        p = CTX.d("cfg") / name
        p.write_bytes(text.encode() if isinstance(text, str) else text)
        return p

    def sample_probe(name, text, groups, accept_ok=False, cmd="sample"):
        def fn():
            p = cfg_file(name, text) if text is not None else CTX.tmp / "cfg" / name
            if cmd == "sample":
                r = run(causalgen_cmd("sample", "--config", p, "--num-tasks", 1))
            else:
                out = CTX.d("cfg", "out") / f"{name}.corpus"
                r = run(causalgen_cmd("generate", "--config", p, "--num-tasks", 2, "--shard-size", 2, "--out", out, "--quiet"))
            gs = [fname(p) if g == "FILE" else g for g in groups]
            if r.rc == 0 and not r.hang:
                if accept_ok:
                    return result("ok", "accepted", r)
                ws = [ln for ln in r.err.splitlines() if re.search("warn", ln, re.I)]
                if ws and named("\n".join(ws), gs)[0]:
                    return result("warned", {"warnings": ws[:3]}, r)
                return result("silent-wrong", "accepted without a word", r)
            return classify_failure(r, gs)
        return fn

    cases = [
        ("unknown-top", "unknown.yaml", "preset: default\nn_unit: [100, 200]\n", ["n_unit"], "refused naming n_unit"),
        ("unknown-nested", "unknown2.yaml", "preset: default\ngraph:\n  n_nodez: [5, 8]\n", ["n_nodez"], "refused naming graph.n_nodez"),
        ("wrong-type-str", "wtype.yaml", "preset: default\nn_units: many\n", ["n_units"], "refused naming n_units"),
        ("wrong-type-bool", "wbool.yaml", "preset: default\nn_units: true\n", ["n_units"], "refused naming n_units"),
        ("wrong-type-float-int", "wfloat.yaml", "preset: default\nqc:\n  max_attempts: 2.5\n", ["max_attempts"], "refused naming qc.max_attempts"),
        ("scalar-for-mapping", "scalar.yaml", "preset: default\ngraph: 5\n", ["graph"], "refused naming graph"),
        ("range-reversed", "rev.yaml", "preset: default\nn_units: [1000, 200]\n", ["n_units"], "refused naming n_units"),
        ("range-zero-units", "zero.yaml", "preset: default\nn_units: [0, 5]\n", ["n_units"], "refused naming n_units"),
        ("range-nodes", "nodes.yaml", "preset: default\ngraph:\n  n_nodes: [12, 5]\n", ["n_nodes"], "refused naming graph.n_nodes"),
        ("range-treated-share", "share.yaml", "preset: default\ntreatment:\n  treated_share: [0.0, 1.5]\n", ["treated_share"], "refused naming treated_share"),
        ("range-noise-negative", "noise.yaml", "preset: default\nnoise:\n  scale: [-1.0, 1.0]\n", ["scale"], "refused naming noise.scale"),
        ("range-nan", "nan.yaml", "preset: default\ntreatment:\n  confounding_strength: [.nan, 1.0]\n", ["confounding_strength"], "refused naming confounding_strength"),
        ("mc-units-small", "mc.yaml", "preset: default\nate_mc_units: 10\n", ["ate_mc_units"], "refused naming ate_mc_units"),
        ("ate-method-bad", "am.yaml", "preset: default\nate_method: exact\n", ["ate_method"], "refused naming ate_method"),
        ("family-unknown", "fam.yaml", "preset: default\nmechanism:\n  families: {linear: 1.0, mlp2: 1.0}\n", ["mlp2"], "refused naming mlp2"),
        ("family-negative", "famneg.yaml", "preset: default\nnoise:\n  families: {gaussian: -1.0}\n", ["families", "gaussian"], "refused naming noise.families"),
        ("family-empty", "famempty.yaml", "preset: default\ngraph:\n  families: {}\n", ["families"], "refused naming graph.families"),
        ("preset-unknown", "preset.yaml", "preset: nosuch\n", ["nosuch"], "refused naming the preset"),
        ("yaml-malformed", "bad.yaml", "preset: default\nn_units: [200, 300\n  graph: {\n", ["FILE"], "refused naming the file"),
        ("yaml-tab-indent", "tab.yaml", "preset: default\ngraph:\n\tn_nodes: [5, 8]\n", ["FILE"], "refused naming the file"),
        ("yaml-top-list", "list.yaml", "- preset: default\n- n_units: [1, 2]\n", ["FILE"], "refused naming the file"),
        ("yaml-python-tag", "tag.yaml", "preset: !!python/object/apply:os.getcwd []\n", ["FILE"], "refused naming the file"),
        ("yaml-duplicate-key", "dupkey.yaml", "preset: default\nn_units: [200, 300]\nn_units: [50, 60]\n", ["n_units"], "refused naming the duplicate n_units"),
        ("json-malformed", "bad.json", '{"preset": "default", "n_units": [200, 300],}', ["FILE"], "refused naming the file"),
        ("json-wrong-type", "wt.json", '{"preset": "default", "effect": {"size": "big"}}', ["size"], "refused naming effect.size"),
        ("binary-garbage", "garbage.yaml", bytes(range(256)) * 4, ["FILE"], "refused naming the file"),
        ("degenerate-arms", "degenerate.yaml", "preset: default\nn_units: [200, 200]\ntreatment:\n  treated_share: [0.01, 0.01]\n  confounding_strength: [0.3, 0.3]\n",
         [("treated_share", "min_units_per_arm", "arm", "qc")], "refused naming the QC reason / field"),
    ]
    for pid, name, text, groups, expect in cases:
        add(f"config-{pid}", C, f"causalgen sample --config {name}", expect, sample_probe(name, text, groups))
    add("config-empty-file", C, "an empty YAML file", "ok (defaults) or refused naming the file",
        sample_probe("empty.yaml", "", ["FILE"], accept_ok=True))
    add("config-yaml-1e4-string", C, "ate_mc_units: 1e4 (YAML 1.1 reads a string)", "ok or refused naming ate_mc_units",
        sample_probe("e4.yaml", "preset: default\nate_mc_units: 1e4\n", ["ate_mc_units"], accept_ok=True))
    add("config-missing-file", C, "--config of a missing file", "refused naming the path",
        sample_probe("missing.yaml", None, ["missing.yaml"]))

    def dir_probe():
        d = CTX.d("cfg", "adir.yaml")
        r = run(causalgen_cmd("sample", "--config", d, "--num-tasks", 1))
        return classify_failure(r, ["adir.yaml"]) if r.rc != 0 else result("silent-wrong", "accepted a directory", r)
    add("config-directory", C, "--config of a directory", "refused naming the path", dir_probe)
    for pid, name, text, groups in [
        ("generate-unknown-field", "g-unknown.yaml", "preset: default\nn_unit: [100, 200]\n", ["n_unit"]),
        ("generate-range", "g-range.yaml", "preset: default\nn_units: [1000, 200]\n", ["n_units"]),
        ("generate-malformed", "g-bad.yaml", "preset: default\nn_units: [200, 300\n", ["FILE"]),
    ]:
        add(f"config-{pid}", C, f"causalgen generate --config {name}", "refused naming the field / file",
            sample_probe(name, text, groups, cmd="generate"))

    def cli_probe(args, groups, expect_desc):
        def fn():
            r = run(causalgen_cmd(*args))
            return classify_failure(r, groups) if r.rc != 0 else result("silent-wrong", "accepted", r)
        return fn
    out = "$OUT"
    for pid, args, groups in [
        ("cli-num-tasks-0", ["generate", "--preset", "default", "--num-tasks", "0", "--out", out], ["--num-tasks"]),
        ("cli-shard-size-text", ["generate", "--preset", "default", "--num-tasks", "4", "--shard-size", "abc", "--out", out], ["--shard-size"]),
        ("cli-seed-negative", ["generate", "--preset", "default", "--num-tasks", "4", "--seed", "-1", "--out", out], ["--seed"]),
        ("cli-preset-unknown", ["sample", "--preset", "nosuch"], ["nosuch"]),
        ("cli-preset-and-config", ["sample", "--preset", "default", "--config", "x.yaml"], ["--config", "--preset"]),
    ]:
        def fix(args=args):
            return [str(CTX.tmp / "cfg" / "cli-out") if a == out else a for a in args]
        add(f"config-{pid}", C, "causalgen " + " ".join(args), "refused naming the argument",
            (lambda fix=fix, groups=groups: (lambda r: classify_failure(r, groups) if r.rc != 0 else result("silent-wrong", "accepted", r))(run(causalgen_cmd(*fix())))))


# ---------------------------------------------------------------------------------------------
# class corpus: damaged corpora through verify / open_corpus / TaskStream / cina train


def corpus_base(kind: str) -> Path:
    """Tiny clean corpora, built once: dir (seed 0), zip (seed 0), seed1 (dir), other (er5000-linear)."""
    key = f"corpus-{kind}"
    with cache_lock(key):
        if key not in CTX.cache:
            spec = {"dir": ("--preset", "default", "--seed", 0, "--format", "dir"),
                    "zip": ("--preset", "default", "--seed", 0, "--format", "zip"),
                    "seed1": ("--preset", "default", "--seed", 1, "--format", "dir"),
                    "other": ("--preset", "er5000-linear", "--seed", 0, "--format", "dir")}[kind]
            out = CTX.d("corpus", "base") / kind
            r = run(causalgen_cmd("generate", *spec, "--num-tasks", 20, "--shard-size", 10, "--out", out, "--quiet"), timeout=300)
            if r.rc != 0:
                raise RuntimeError(f"building the {kind} corpus failed: {tail(r.err)}")
            CTX.cache[key] = out
        return CTX.cache[key]


def clean_ref(consumer: str, kind: str = "dir"):
    key = f"clean-{consumer}-{kind}"
    with cache_lock(key):
        if key not in CTX.cache:
            base = corpus_base(kind)
            if consumer == "train":
                r = run(cina_cmd("train", "--corpus", base, "--out", CTX.d("corpus", "runs") / f"clean-{kind}", "--max-steps", 3, "--quiet"), timeout=300)
                if r.rc != 0:
                    raise RuntimeError(f"clean train failed: {tail(r.err)}")
                CTX.cache[key] = read_metrics(CTX.tmp / "corpus" / "runs" / f"clean-{kind}")
            else:
                r = run(child_cmd(consumer, base), timeout=300)
                info = child_json(r)
                if r.rc != 0 or info is None or "exc" in info:
                    raise RuntimeError(f"clean {consumer} failed: {tail(r.err + r.out)}")
                CTX.cache[key] = info
        return CTX.cache[key]


METRIC_COLS = ("loss", "grad_norm", "val_loss", "val_ate_mae_std", "val_ate_mae")


def read_metrics(run_dir: Path) -> list[dict]:
    p = run_dir / "metrics.csv"
    if not p.is_file():
        return []
    with p.open() as f:
        return [{k: row.get(k, "") for k in ("step", *METRIC_COLS)} for row in csv.DictReader(f)]


def _nonfinite(rows: list[dict]) -> list[str]:
    bad = []
    for row in rows:
        for k in METRIC_COLS:
            v = row.get(k, "")
            if v not in ("", None):
                try:
                    if not math.isfinite(float(v)):
                        bad.append(f"step {row['step']} {k}={v}")
                except ValueError:
                    bad.append(f"step {row['step']} {k}={v!r}")
    return bad


def consume(consumer: str, path: Path, groups, kind: str) -> dict:
    if consumer == "verify":
        r = run(causalgen_cmd("verify", path, "--quiet"))
        if r.rc == 0 and not r.hang:
            return result("silent-wrong", "verify passed a damaged corpus", r)
        return classify_failure(r, groups)
    if consumer == "train":
        ref = clean_ref("train", kind)
        out = path.parent / f"{path.name}.run"
        r = run(cina_cmd("train", "--corpus", path, "--out", out, "--max-steps", 3, "--quiet"), timeout=max(CTX.timeout, 150))
        if r.rc != 0 or r.hang:
            return classify_failure(r, groups)
        rows = read_metrics(out)
        bad = _nonfinite(rows)
        if bad:
            return result("silent-wrong", {"exit": 0, "nonfinite_metrics": bad[:4]}, r)
        if rows != ref:
            return result("silent-wrong", {"exit": 0, "metrics differ from the clean run": rows[-1:], "clean": ref[-1:]}, r)
        return result("ok", "trained exactly as on the clean corpus", r)
    ref = clean_ref(consumer, kind)

    def check(info):
        problems = []
        if info.get("nonfinite"):
            problems.append(f"{info['nonfinite']} non-finite values returned")
        if info.get("n_mismatch"):
            problems.append(f"{info['n_mismatch']} tasks differ from sample_task(config, seed) (first {info['contract_mismatch'][:3]})")
        if info.get("digest") != ref.get("digest") or info.get("n") != ref.get("n"):
            problems.append(f"data differ from the clean corpus ({info.get('n')} vs {ref.get('n')} tasks/units)")
        return ("silent-wrong", problems) if problems else ("ok", "the clean data")
    return run_child(groups, check, consumer, path)


def register_corpus() -> None:
    C = "corpus"

    def damaged(kind: str, name: str, damage: Callable[[Path], None]) -> Callable[[], Path]:
        def make():
            key = f"damaged-{name}"
            with cache_lock(key):
                if key not in CTX.cache:
                    dest = CTX.d("corpus", "damaged") / name
                    shutil.rmtree(dest, ignore_errors=True)
                    shutil.copytree(corpus_base(kind), dest)
                    damage(dest)
                    CTX.cache[key] = dest
                # shared by the consumers: verify/open/stream only read, train writes its run beside it
                return CTX.cache[key]
        return make

    s0 = "shards/shard-00000.zarr"

    def edit_text(rel, old, new, count=1):
        def dmg(root: Path):
            p = root / rel
            text = p.read_bytes()
            assert old.encode() in text, (rel, old)
            p.write_bytes(text.replace(old.encode(), new.encode(), count))
        return dmg

    def root_json_array_flip(array: str, old: str, new: str):
        """One-character (one-bit) change inside the consolidated metadata entry of `array`."""
        def dmg(root: Path):
            p = root / s0 / "zarr.json"
            text = p.read_text()
            start = text.index(f'"{array}": {{')
            at = text.index(old, start)
            assert sum(a != b for a, b in zip(old, new)) == 1 and len(old) == len(new)
            p.write_text(text[:at] + new + text[at + len(old):])
            diff = [(a, b) for a, b in zip(old, new) if a != b][0]
            assert bin(ord(diff[0]) ^ ord(diff[1])).count("1") == 1, "not a one-bit flip"
        return dmg

    def random_flip(rel: str, seed: int, lo_frac=0.0, hi_frac=1.0):
        def dmg(root: Path):
            p = root / rel
            n = p.stat().st_size
            rng = np.random.default_rng(seed)
            data = p.read_bytes()
            for _ in range(100):  # a byte that is not whitespace, so the flip matters
                off = int(rng.integers(int(n * lo_frac), max(int(n * lo_frac) + 1, int(n * hi_frac))))
                if data[off:off + 1] not in (b" ", b"\n"):
                    break
            flip_bit(p, off, int(rng.integers(0, 8)))
        return dmg

    def truncate(rel: str, frac=0.5, minus: int | None = None):
        def dmg(root: Path):
            p = root / rel
            data = p.read_bytes()
            p.write_bytes(data[: (len(data) - minus) if minus else int(len(data) * frac)])
        return dmg

    def delete(rel: str):
        def dmg(root: Path):
            p = root / rel
            shutil.rmtree(p) if p.is_dir() else p.unlink()
        return dmg

    def manifest_edit(fn):
        def dmg(root: Path):
            p = root / "manifest.json"
            m = json.loads(p.read_text())
            fn(m)
            p.write_text(json.dumps(m, indent=2))
        return dmg

    def seed_edit(m):
        m["corpus_seed"] = 7

    def ate_edit(m):
        m["shards"][0]["tasks"]["ate"][0] += 1.0

    def sha_edit(m):
        m["shards"][0]["sha256"] = "0" * 64

    def num_edit(m):
        m["num_tasks"] = 30

    def config_edit(m):
        m["config"]["n_units"] = [50, 60]

    def config_edit_digest(m):
        from causalgen.store.manifest import config_digest

        m["config"]["effect"]["size"] = [5.0, 6.0]
        m["config_sha256"] = config_digest(m["config"])

    shard_names = [("shard-00000", "shard 0")]
    sh1 = [("shard-00001", "shard 1")]
    man = [("manifest.json",)]
    damages = [
        # id, kind, description, damage, names, consumers
        ("zarrjson-separator-bitflip", "dir", "root zarr.json of shard 0: x_values chunk separator '/' -> '.' (one bit)",
         root_json_array_flip("x_values", '"separator": "/"', '"separator": "."'), shard_names, "vost"),
        ("zarrjson-dtype-bitflip", "dir", "root zarr.json of shard 0: y data_type float32 -> float33 (one bit)",
         root_json_array_flip("y", '"float32"', '"float33"'), shard_names, "vost"),
        ("zarrjson-shape-bitflip", "dir", "root zarr.json of shard 0: a digit of t's shape flipped (one bit)",
         lambda root: _shape_flip(root / s0 / "zarr.json", "t"), shard_names, "vos"),
        ("zarrjson-fill-bitflip", "dir", "root zarr.json of shard 0: y fill_value NaN -> NaO (one bit)",
         root_json_array_flip("y", '"NaN"', '"NaO"'), shard_names, "vos"),
        ("zarrjson-endian-bitflip", "dir", "root zarr.json of shard 0: x_values endian little -> lhttle (one bit)",
         root_json_array_flip("x_values", '"little"', '"lhttle"'), shard_names, "vos"),
        ("zarrjson-attr-first-task", "dir", "root zarr.json of shard 1: attribute first_task 10 -> 11 (one bit)",
         edit_text("shards/shard-00001.zarr/zarr.json", '"first_task": 10', '"first_task": 11'), sh1, "vos"),
        ("zarrjson-random-bitflip", "dir", "root zarr.json of shard 0: one random bit (seed 11)",
         random_flip(f"{s0}/zarr.json", 11), shard_names, "vos"),
        ("array-zarrjson-bitflip", "dir", "x_values/zarr.json (per-array copy) separator '/' -> '.'",
         edit_text(f"{s0}/x_values/zarr.json", '"separator": "/"', '"separator": "."'), shard_names, "vos"),
        ("chunk-bitflip", "dir", "one bit flipped in the middle of shard 0's x_values chunk",
         lambda root: flip_bit(root / s0 / "x_values/c/0", (root / s0 / "x_values/c/0").stat().st_size // 2, 3), shard_names, "vost"),
        ("chunk-crc-bitflip", "dir", "one bit flipped in the crc32c trailer of shard 0's y chunk",
         lambda root: flip_bit(root / s0 / "y/c/0", (root / s0 / "y/c/0").stat().st_size - 1, 0), shard_names, "vos"),
        ("chunk-truncated", "dir", "shard 0's x_values chunk truncated to half", truncate(f"{s0}/x_values/c/0"), shard_names, "vos"),
        ("chunk-deleted", "dir", "shard 0's y chunk deleted", delete(f"{s0}/y/c/0"), shard_names, "vost"),
        ("shard-deleted", "dir", "shard 1 deleted", delete("shards/shard-00001.zarr"), sh1, "vost"),
        ("manifest-truncated", "dir", "manifest.json truncated to half", truncate("manifest.json"), man, "vos"),
        ("manifest-deleted", "dir", "manifest.json deleted", delete("manifest.json"), man, "vos"),
        ("manifest-corpus-seed", "dir", "manifest.json: corpus_seed 0 -> 7", manifest_edit(seed_edit), [("corpus_seed", "seed")], "vost"),
        ("manifest-summary-ate", "dir", "manifest.json: shard 0 summary ate[0] += 1", manifest_edit(ate_edit), [("ate",)], "vost"),
        ("manifest-sha256", "dir", "manifest.json: shard 0 sha256 zeroed", manifest_edit(sha_edit), [("sha256", "checksum")], "vo"),
        ("manifest-num-tasks", "dir", "manifest.json: num_tasks 20 -> 30", manifest_edit(num_edit), [("num_tasks", "incomplete", "30")], "vo"),
        ("manifest-config-edit", "dir", "manifest.json: config.n_units edited (config_sha256 left stale)",
         manifest_edit(config_edit), [("config", "n_units")], "vost"),
        ("manifest-config-edit-digest", "dir", "manifest.json: config.effect.size edited and config_sha256 recomputed",
         manifest_edit(config_edit_digest), [("config", "effect")], "vost"),
        ("zip-truncated", "zip", "zip shard 0 truncated by 200 bytes", truncate("shards/shard-00000.zarr.zip", minus=200), shard_names, "vost"),
        ("zip-data-bitflip", "zip", "one bit flipped in the middle of zip shard 0", random_flip("shards/shard-00000.zarr.zip", 5, 0.3, 0.6), shard_names, "vost"),
        ("zip-central-dir-bitflip", "zip", "one bit flipped in zip shard 0's central directory",
         lambda root: flip_bit(root / "shards/shard-00000.zarr.zip", (root / "shards/shard-00000.zarr.zip").stat().st_size - 60, 2), shard_names, "vos"),
        ("zip-deleted", "zip", "zip shard 1 deleted", delete("shards/shard-00001.zarr.zip"), sh1, "vo"),
    ]
    names_of = {"v": "verify", "o": "open", "s": "stream", "t": "train"}
    expect_of = {"verify": "refused naming the shard/manifest (exit != 0)",
                 "open": "CorpusError/ShardError naming the shard, or the clean data",
                 "stream": "an error naming the shard, or the clean batches",
                 "train": "an error naming the shard (no NaN metrics, no exit 0 on damage)"}
    for did, kind, desc, dmg, groups, consumers in damages:
        make = damaged(kind, did, dmg)
        for c in consumers:
            consumer = names_of[c]
            add(f"corpus-{did}/{consumer}", C, desc, expect_of[consumer],
                (lambda make=make, consumer=consumer, groups=groups, kind=kind: consume(consumer, make(), groups, kind)))

    # ---- a foreign shard (another seed / another config) mixed into a partial corpus, then resume
    def foreign(name: str, donor: str):
        def make():
            key = f"foreign-{name}"
            with cache_lock(key):
                if key not in CTX.cache:
                    from causalgen.store.manifest import Manifest

                    dest = CTX.d("corpus", "foreign") / name
                    shutil.rmtree(dest, ignore_errors=True)
                    shutil.copytree(corpus_base("dir"), dest)
                    shutil.rmtree(dest / "shards/shard-00001.zarr")
                    m = Manifest.from_json((dest / "manifest.json").read_text())
                    (dest / "manifest.json").write_text(m.with_shards([m.shards[0]]).to_json())  # as after a kill -9
                    shutil.copytree(corpus_base(donor) / "shards/shard-00001.zarr", dest / "shards/shard-00001.zarr")
                    r = run(causalgen_cmd("generate", "--preset", "default", "--seed", 0, "--num-tasks", 20, "--shard-size", 10,
                                          "--out", dest, "--quiet"), timeout=300)
                    CTX.cache[key] = (dest, r)
                return CTX.cache[key]
        return make

    for name, donor, desc in [("foreign-seed", "seed1", "shard 1 of a seed-1 corpus copied into a partial seed-0 corpus"),
                              ("foreign-config", "other", "shard 1 of an er5000-linear corpus copied into a partial default corpus")]:
        make = foreign(name, donor)

        def resume_probe(make=make):
            dest, r = make()
            groups = [("shard-00001", "shard 1")]
            if r.rc != 0 or r.hang:
                return classify_failure(r, groups)
            same = not tree_diff(tree_digest(dest), tree_digest(corpus_base("dir")))
            if same:
                return result("ok", "resume replaced the foreign shard: byte-identical to the clean corpus", r)
            v = run(causalgen_cmd("verify", dest, "--quiet"))
            if v.rc == 0:
                return result("silent-wrong", "generate adopted the foreign shard and verify passes", v)
            out = classify_failure(v, groups)
            out["detail"] = {"adopted by generate, caught by verify": out["detail"]}
            return out

        def open_after(make=make):
            dest, r = make()
            # the refused resume leaves the corpus unfinished, and its manifest lists no foreign
            # shard: "incomplete (1/2 shards)" names the actual state
            return consume("open", dest, [("shard-00001", "shard 1", "incomplete (1/2 shards)")], "dir")

        add(f"corpus-{name}/resume+verify", C, desc + "; `generate` re-run, then `verify`",
            "generate refuses naming the shard or regenerates it; else verify names it", resume_probe)
        add(f"corpus-{name}/open", C, desc + "; after the resume, open_corpus(...)[i]",
            "an error naming the shard or the unfinished corpus, or the clean data", open_after)


def _shape_flip(path: Path, array: str) -> None:
    text = path.read_text()
    start = text.index(f'"{array}": {{')
    m = re.compile(r'"shape": \[\s*(\d+)').search(text, start)
    digits = m.group(1)
    pos = m.start(1) + len(digits) - 1
    ch = text[pos]
    new = chr(ord(ch) ^ 1)  # '0'<->'1', '2'<->'3', ... stays a digit
    path.write_text(text[:pos] + new + text[pos + 1:])


# ---------------------------------------------------------------------------------------------
# class model: damaged models through cina estimate --model


def register_model() -> None:
    C = "model"

    def model_copy(name: str, base: str = "fast") -> Path:
        from cina.core.checkpoint import shipped_model_path

        dest = CTX.d("models") / name
        shutil.rmtree(dest, ignore_errors=True)
        shutil.copytree(shipped_model_path(base), dest)
        return dest

    def edit_tensors(d: Path, fn):
        from safetensors import safe_open
        from safetensors.torch import load_file, save_file

        p = d / "model.safetensors"
        with safe_open(str(p), framework="pt") as f:
            meta = f.metadata()
        t = load_file(str(p))
        fn(t)
        save_file(t, str(p), metadata=meta)

    def edit_config(d: Path, fn):
        p = d / "config.json"
        m = json.loads(p.read_text())
        fn(m["config"])
        p.write_text(json.dumps(m, indent=2))

    def csv_path():
        h, rows = table()
        return write_csv("model-base.csv", h, rows)

    def mprobe(name, build, groups, base="fast", check_model="fast", expect_ok=True, extra=()):
        """build(dir) damages a copy of the shipped `base` model; returns the --model argument."""
        def fn():
            d = model_copy(name, base)
            arg = build(d) or d
            def sub(a):
                return fname(d) if a == "DIR" else a
            gs = [sub(g) if isinstance(g, str) else tuple(sub(a) for a in g) for g in groups]
            if expect_ok:
                reference(check_model)
            r = run(estimate_cmd(csv_path(), arg, extra))
            if r.rc != 0 or r.hang:
                return classify_failure(r, gs)
            try:
                payload = json.loads(r.out)
            except ValueError:
                return result("silent-wrong", "exit 0 but no JSON", r)
            outcome, detail = judge_answer(payload, r.err, near(check_model), warn_keys=tuple(a for g in gs for a in ((g,) if isinstance(g, str) else g)))
            return result(outcome, detail, r)
        return fn

    def set_elem(name, value, whole=False):
        def fn(t):
            v = t[name].clone()
            if whole:
                v[...] = value
            else:
                v.view(-1)[0] = value
            t[name] = v
        fn.tensor = name
        return fn

    W = "input_proj.weight"
    wfile = ("model.safetensors", "DIR")
    for pid, fn_, desc in [
        ("nan-one-weight", set_elem(W, float("nan")), f"{W}[0, 0] = NaN"),
        ("inf-one-weight", set_elem(W, float("inf")), f"{W}[0, 0] = inf"),
        ("1e30-one-weight", set_elem(W, 1e30), f"{W}[0, 0] = 1e30"),
        ("1e30-whole-tensor", set_elem(W, 1e30, whole=True), f"every entry of {W} = 1e30"),
        ("nan-value-proj", set_elem("balance.value_proj.weight", float("nan")), "balance.value_proj.weight[0, 0] = NaN"),
        ("nan-layernorm", set_elem("value_norm.weight", float("nan"), whole=True), "value_norm.weight all NaN"),
    ]:
        add(f"model-{pid}", C, desc + " (fast model)", "refused naming the model file and tensor (or the clean estimate)",
            mprobe(pid, lambda d, fn_=fn_: edit_tensors(d, fn_), [wfile + (fn_.tensor,)]))
    add("model-nan-one-weight-default", C, f"{W}[0, 0] = NaN (default model)", "refused naming the tensor",
        mprobe("nan-default", lambda d: edit_tensors(d, set_elem(W, float("nan"))), [wfile + (W,)],
               base="default", check_model="default"))

    def cfg_set(key, value):
        def build(d):
            edit_config(d, lambda c: c.__setitem__(key, value))
        return build

    cfile = ("config.json", "DIR")
    for pid, key, value in [
        ("config-refine-steps-0", "refine_steps", 0), ("config-refine-steps-3", "refine_steps", 3),
        ("config-lam-1", "lam", 1.0), ("config-score-scale-100", "score_scale", 100.0),
        ("config-landmarks-1", "landmarks", 1), ("config-activation-gelu", "activation", "gelu"),
        ("config-balancing-svm", "balancing", "svm"), ("config-d-model-32", "d_model", 32),
        ("config-n-heads-3", "n_heads", 3), ("config-kernel-foo", "kernel", "foo"),
        ("config-max-features-3", "max_features", 3), ("config-estimands-ate-only", "estimands", ["ate"]),
        ("config-unknown-field", "refine_stepz", 10), ("config-refine-steps-text", "refine_steps", "ten"),
    ]:
        extra = ("--estimand", "att") if pid == "config-estimands-ate-only" else ()
        add(f"model-{pid}", C, f"config.json: {key} = {value!r} (weights' metadata unchanged)",
            "refused naming config.json and the field (it disagrees with the weights), or the clean estimate",
            mprobe(pid, cfg_set(key, value), [cfile + ((key,) if pid != "config-estimands-ate-only" else ("estimands",))], extra=extra))
    add("model-config-refine-steps-0-default", C, "config.json: refine_steps = 0 (default model)", "refused naming the field",
        mprobe("rs0-default", cfg_set("refine_steps", 0), [cfile + ("refine_steps",)], base="default", check_model="default"))

    def cfg_raw(text):
        def build(d):
            (d / "config.json").write_text(text)
        return build
    add("model-config-malformed", C, "config.json is not JSON", "refused naming config.json",
        mprobe("cfg-malformed", cfg_raw('{"format": "cina.CInA", '), [cfile]))

    def fv(d):
        p = d / "config.json"
        m = json.loads(p.read_text())
        m["format_version"] = 2
        p.write_text(json.dumps(m))
    add("model-config-format-version-2", C, "config.json format_version 2", "refused naming the version",
        mprobe("cfg-v2", fv, [cfile + ("format_version",)]))
    add("model-config-deleted", C, "config.json deleted (the weights' metadata has the config)", "ok: the clean estimate",
        mprobe("cfg-deleted", lambda d: (d / "config.json").unlink(), [wfile]))

    def weights_bytes(fn):
        def build(d):
            p = d / "model.safetensors"
            p.write_bytes(fn(p.read_bytes()))
        return build
    for pid, fn_, desc in [
        ("weights-truncated", lambda b: b[: len(b) // 2], "model.safetensors truncated to half"),
        ("weights-random", lambda b: np.random.default_rng(3).bytes(len(b)), "model.safetensors replaced by random bytes"),
        ("weights-empty", lambda b: b"", "model.safetensors empty"),
        ("weights-header-bitflip", lambda b: b[:20] + bytes([b[20] ^ 0x04]) + b[21:], "one bit flipped in the safetensors JSON header"),
        ("weights-data-bitflip", lambda b: b[:-100] + bytes([b[-100] ^ 0x40]) + b[-99:], "one bit flipped in the tensor data (exponent bit)"),
    ]:
        add(f"model-{pid}", C, desc, "refused naming model.safetensors",
            mprobe(pid, weights_bytes(fn_), [wfile]))

    def renamed(d):
        (d / "model.safetensors").rename(d / "weights.safetensors")
    add("model-weights-renamed", C, "model.safetensors renamed to weights.safetensors", "refused naming the path",
        mprobe("weights-renamed", renamed, [wfile]))

    def drop(t):
        del t["balance.value_proj.bias"]
    add("model-missing-tensor", C, "tensor balance.value_proj.bias removed", "refused naming the tensor",
        mprobe("missing-tensor", lambda d: edit_tensors(d, drop), [wfile + ("balance.value_proj.bias",)]))

    def extra_t(t):
        import torch
        t["extra.weight"] = torch.zeros(3)
    add("model-extra-tensor", C, "an unexpected tensor extra.weight added", "refused naming the tensor (or ok)",
        mprobe("extra-tensor", lambda d: edit_tensors(d, extra_t), [wfile + ("extra.weight",)]))

    def reshape_t(t):
        t[W] = t[W][:, :-1].contiguous()
    add("model-wrong-shape-tensor", C, f"{W} with one column fewer", "refused naming the tensor",
        mprobe("wrong-shape", lambda d: edit_tensors(d, reshape_t), [wfile + (W,)]))

    def bare(d):
        (d / "config.json").unlink()
        p = d / "model.safetensors"
        q = d.parent / "bare-model.safetensors"
        shutil.copy(p, q)
        return q
    add("model-bare-safetensors", C, "--model a bare .safetensors file (config in its metadata)", "ok: the clean estimate",
        mprobe("bare", bare, [("bare-model",)]))

    def nonexist(d):
        return d / "nosuch"
    add("model-path-missing", C, "--model a path that does not exist", "refused naming the path",
        mprobe("missing-path", nonexist, ["nosuch"]))

    def txtfile(d):
        p = d / "model.txt"
        p.write_text("hello")
        return p
    add("model-path-text-file", C, "--model a .txt file", "refused naming the path", mprobe("txt", txtfile, ["model.txt"]))

    def only_cfg(d):
        (d / "model.safetensors").unlink()
    add("model-dir-without-weights", C, "--model a directory with only config.json", "refused naming the path",
        mprobe("noweights", only_cfg, ["DIR"]))

    def stale_latest(d):
        run_dir = d.parent / "run-stale"
        shutil.rmtree(run_dir, ignore_errors=True)
        (run_dir / "checkpoints").mkdir(parents=True)
        (run_dir / "checkpoints" / "latest").write_text("step-000099\n")
        return run_dir
    add("model-run-dir-stale-latest", C, "--model a run dir whose checkpoints/latest names a missing checkpoint",
        "refused naming the run dir / checkpoint", mprobe("stale", stale_latest, [("run-stale", "step-000099")]))
    add("model-url-scheme", C, "--model foo://model", "refused naming the URL",
        mprobe("url", lambda d: "foo://model", ["foo://"]))


# ---------------------------------------------------------------------------------------------
# class fault: file-system and process faults


def register_fault() -> None:
    C = "fault"

    def refuse(cmd_fn, desc_ok="accepted"):
        def fn():
            cmd, gs, kw = cmd_fn()
            r = run(cmd, **kw)
            if r.rc == 0 and not r.hang:
                return result("silent-wrong", desc_ok, r)
            return classify_failure(r, gs)
        return fn

    def ro_dir(name):
        d = CTX.d("faults") / name
        make_readonly(d)
        return d

    add("fault-readonly-generate", C, "causalgen generate --out inside a read-only directory", "refused naming the path",
        refuse(lambda: (causalgen_cmd("generate", "--preset", "default", "--num-tasks", 4, "--shard-size", 2, "--out",
                                      ro_dir("ro-gen") / "corpus", "--quiet"), ["ro-gen", ("permission", "read-only", "not permitted", "denied")], {})))
    add("fault-readonly-publish", C, "causalgen publish --repo-dir inside a read-only directory", "refused naming the path",
        refuse(lambda: (causalgen_cmd("publish", corpus_base("dir"), "--repo-dir", ro_dir("ro-pub") / "repo", "--quiet"),
                        ["ro-pub", ("permission", "read-only", "not permitted", "denied")], {})))
    add("fault-readonly-train", C, "cina train --out inside a read-only directory", "refused naming the path",
        refuse(lambda: (cina_cmd("train", "--corpus", corpus_base("dir"), "--out", ro_dir("ro-train") / "run", "--max-steps", 2, "--quiet"),
                        ["ro-train", ("permission", "read-only", "not permitted", "denied")], {})))

    def a_file(name):
        p = CTX.d("faults") / name
        p.write_text("a user's file\n")
        return p

    add("fault-out-under-file-generate", C, "causalgen generate --out FILE/corpus", "refused naming FILE",
        refuse(lambda: (causalgen_cmd("generate", "--preset", "default", "--num-tasks", 4, "--shard-size", 2, "--out",
                                      a_file("gen-file.txt") / "corpus", "--quiet"), ["gen-file.txt"], {})))
    add("fault-out-under-file-publish", C, "causalgen publish --repo-dir FILE/repo", "refused naming FILE",
        refuse(lambda: (causalgen_cmd("publish", corpus_base("dir"), "--repo-dir", a_file("pub-file.txt") / "repo", "--quiet"),
                        ["pub-file.txt"], {})))
    add("fault-out-under-file-train", C, "cina train --out FILE/run", "refused naming FILE",
        refuse(lambda: (cina_cmd("train", "--corpus", corpus_base("dir"), "--out", a_file("train-file.txt") / "run", "--max-steps", 2, "--quiet"),
                        ["train-file.txt"], {})))
    add("fault-out-is-file-generate", C, "causalgen generate --out an existing file", "refused naming the file",
        refuse(lambda: (causalgen_cmd("generate", "--preset", "default", "--num-tasks", 4, "--shard-size", 2, "--out",
                                      a_file("gen-is-file.txt"), "--quiet"), ["gen-is-file.txt"], {})))

    url = "foo://bucket/corpus"
    for pid, cmd_fn in [
        ("url-generate", lambda: causalgen_cmd("generate", "--preset", "default", "--num-tasks", 4, "--shard-size", 2, "--out", url, "--quiet")),
        ("url-verify", lambda: causalgen_cmd("verify", url, "--quiet")),
        ("url-inspect", lambda: causalgen_cmd("inspect", url)),
        ("url-publish", lambda: causalgen_cmd("publish", url, "--repo-dir", CTX.tmp / "faults" / "url-repo", "--quiet")),
        ("url-train", lambda: cina_cmd("train", "--corpus", url, "--out", CTX.tmp / "faults" / "url-run", "--max-steps", 2, "--quiet")),
    ]:
        add(f"fault-{pid}", C, f"unknown URL scheme: causalgen/cina {pid.split('-')[1]} with {url}", "refused naming the URL / scheme",
            refuse(lambda cmd_fn=cmd_fn: (cmd_fn(), [("foo://", "'foo'", "foo")], {})))

    def url_open():
        return run_child([("foo://", "'foo'", "foo")], lambda info: ("silent-wrong", "opened"), "open", url)
    add("fault-url-open-corpus", C, "causalgen.open_corpus('foo://bucket/corpus')", "CorpusError naming the URL", url_open)

    limit = fsize_limit(48 * 1024)
    eno = ("space", "full", "too large", "efbig", "disk", "quota", "errno 27", "file size")
    add("fault-full-disk-generate", C, "causalgen generate with a 48 KiB file-size limit (EFBIG, as a full disk)",
        "refused naming the path and the cause",
        refuse(lambda: (causalgen_cmd("generate", "--preset", "default", "--num-tasks", 20, "--shard-size", 10, "--out",
                                      CTX.tmp / "faults" / "full-gen", "--quiet"), [("full-gen", "shard"), eno], {"preexec": limit})))
    add("fault-full-disk-publish", C, "causalgen publish with a 48 KiB file-size limit", "refused naming the path and the cause",
        refuse(lambda: (causalgen_cmd("publish", corpus_base("dir"), "--repo-dir", CTX.tmp / "faults" / "full-pub", "--quiet"),
                        [("full-pub", "parquet", "zarr"), eno], {"preexec": limit})))
    add("fault-full-disk-train", C, "cina train with a 48 KiB file-size limit", "refused naming the path and the cause",
        refuse(lambda: (cina_cmd("train", "--corpus", corpus_base("dir"), "--out", CTX.tmp / "faults" / "full-train", "--max-steps", 2, "--quiet"),
                        [("full-train", "checkpoint"), eno], {"preexec": limit})))

    # ---- kill -9 and resume
    GEN = ("--preset", "default", "--num-tasks", 240, "--shard-size", 20, "--seed", 3, "--workers", 2, "--quiet")

    def kill_reference() -> dict:
        with cache_lock("kill-ref"):
            if "kill-ref" not in CTX.cache:
                out = CTX.d("faults") / "kill-ref"
                shutil.rmtree(out, ignore_errors=True)
                r = run(causalgen_cmd("generate", *GEN, "--out", out), timeout=300)
                if r.rc != 0:
                    raise RuntimeError(f"reference generate failed: {tail(r.err)}")
                CTX.cache["kill-ref"] = tree_digest(out)
            return CTX.cache["kill-ref"]

    def finished_shards(out: Path) -> int:
        d = out / "shards"
        return len([n for n in os.listdir(d) if not n.startswith(".")]) if d.is_dir() else 0

    def children(pid: int) -> list[int]:
        kids = []
        for p in os.listdir("/proc"):
            if not p.isdigit():
                continue
            try:
                with open(f"/proc/{p}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                if ppid == pid:
                    with open(f"/proc/{p}/cmdline", "rb") as f:
                        if b"spawn_main" in f.read():
                            kids.append(int(p))
            except (OSError, ValueError, IndexError):
                continue
        return kids

    def interrupted(name: str, mode: str, wait_shards: int, delay: float = 0.0):
        """Start generate, kill a worker (mode 'worker') or the whole process group ('all'); return (out, first run)."""
        def go():
            with cache_lock(f"kill-{name}"):
                return _go()

        def _go():
            key = f"kill-{name}"
            if key in CTX.cache:
                return CTX.cache[key]
            kill_reference()
            out = CTX.d("faults") / name
            shutil.rmtree(out, ignore_errors=True)
            e = dict(CTX.env)
            cmd = causalgen_cmd("generate", *GEN, "--out", out)
            t0 = time.monotonic()
            p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=e, cwd=str(CTX.tmp), start_new_session=True)
            CTX.live.add(p)
            killed = None
            while p.poll() is None and time.monotonic() - t0 < 120:
                if finished_shards(out) >= wait_shards and time.monotonic() - t0 >= delay:
                    if mode == "worker":
                        kids = children(p.pid)
                        if kids:
                            os.kill(kids[0], signal.SIGKILL)
                            killed = f"worker {kids[0]}"
                            break
                    else:
                        _killpg(p.pid)
                        killed = "process group"
                        break
                time.sleep(0.05)
            try:
                o, e_ = p.communicate(timeout=120)
                hang = False
            except subprocess.TimeoutExpired:
                _killpg(p.pid)
                o, e_ = p.communicate()
                hang = True
            if mode == "worker":
                _killpg(p.pid)  # leftovers, if any
            CTX.live.discard(p)
            first = Run(cmd, p.returncode, o.decode("utf-8", "replace"), e_.decode("utf-8", "replace"), time.monotonic() - t0, hang)
            CTX.cache[key] = (out, first, killed)
            return CTX.cache[key]
        return go

    def first_run_probe(go):
        def fn():
            out, first, killed = go()
            if killed is None:
                return result("harness-error", "the run finished before the kill", first)
            if first.rc == 0:
                same = not tree_diff(tree_digest(out), kill_reference())
                return result("ok" if same else "silent-wrong",
                              f"survived the kill of a {killed}; {'byte-identical' if same else 'bytes differ from an uninterrupted run'}", first)
            out_ = classify_failure(first, [("worker", "shard", "killed", "process")])
            out_["detail"] = {"killed": killed, **(out_["detail"] if isinstance(out_["detail"], dict) else {"d": out_["detail"]})}
            return out_
        return fn

    def resume_probe(go):
        def fn():
            out, first, killed = go()
            if killed is None and first.rc == 0:
                return result("harness-error", "the run finished before the kill", first)
            r = run(causalgen_cmd("generate", *GEN, "--out", out), timeout=300)
            if r.rc != 0 or r.hang:
                return classify_failure(r, [fname(out)])
            diff = tree_diff(tree_digest(out), kill_reference())
            if diff:
                return result("silent-wrong", {"files differing from an uninterrupted run": diff[:5], "n": len(diff)}, r)
            return result("ok", f"resumed after the kill of a {killed}: byte-identical to an uninterrupted run", r)
        return fn

    worker = interrupted("kill-worker", "worker", 1)
    add("fault-kill9-worker", C, "kill -9 of one `generate --workers 2` worker mid-run", "refused naming the worker/shard (or survived)",
        first_run_probe(worker))
    add("fault-kill9-worker-resume", C, "re-run after a killed worker", "ok: byte-identical to an uninterrupted run",
        resume_probe(worker))
    for name, wait_s, delay, desc in [("kill-all-mid", 3, 0.0, "after 3 finished shards"),
                                      ("kill-all-early", 0, 0.8, "0.8 s after start (before any shard)"),
                                      ("kill-all-late", 9, 0.0, "after 9 of 12 shards")]:
        go = interrupted(name, "all", wait_s, delay)
        add(f"fault-kill9-{name}-resume", C, f"kill -9 of the whole generate {desc}, then re-run",
            "ok: byte-identical to an uninterrupted run", resume_probe(go))

    def concurrent():
        ref = kill_reference()
        out = CTX.d("faults") / "concurrent"
        shutil.rmtree(out, ignore_errors=True)
        cmd = causalgen_cmd("generate", *GEN, "--out", out)
        pa = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=CTX.env, cwd=str(CTX.tmp), start_new_session=True)
        CTX.live.add(pa)
        t0 = time.monotonic()
        while not (out / ".lock").exists() and time.monotonic() - t0 < 30:
            time.sleep(0.05)
        rb = run(cmd, timeout=120)
        try:
            pa.communicate(timeout=180)
        except subprocess.TimeoutExpired:
            _killpg(pa.pid)
            pa.communicate()
        diff = tree_diff(tree_digest(out), ref)
        if diff:
            return result("silent-wrong", {"two concurrent runs left a corpus differing from the reference": diff[:5]}, rb)
        if rb.rc == 0:
            return result("ok", "the second run succeeded and the corpus is byte-identical", rb)
        return classify_failure(rb, [("lock", "another")])
    add("fault-concurrent-generate", C, "two identical generate commands on one --out at once",
        "the second refuses naming the lock (or both succeed); corpus byte-identical", concurrent)

    # ---- user files and --overwrite
    def publish_base() -> Path:
        with cache_lock("pub-base"):
            if "pub-base" not in CTX.cache:
                out = CTX.d("faults") / "pub-base"
                shutil.rmtree(out, ignore_errors=True)
                r = run(causalgen_cmd("publish", corpus_base("dir"), "--repo-dir", out, "--repo-id", "me/probe", "--quiet"), timeout=300)
                if r.rc != 0:
                    raise RuntimeError(f"publish failed: {tail(r.err)}")
                CTX.cache["pub-base"] = out
            return CTX.cache["pub-base"]

    def user_file_probe(prepare, command, rel_user: str, groups):
        """A user file at rel_user exists before the command; it must still be there (same bytes) after."""
        def fn():
            target, _ = prepare()
            uf = target / rel_user
            uf.parent.mkdir(parents=True, exist_ok=True)
            payload = f"user notes {rel_user}\n".encode()
            uf.write_bytes(payload)
            r = run(command(target), timeout=300)
            kept = uf.is_file() and uf.read_bytes() == payload
            if not kept:
                return result("data-loss", f"{rel_user} is gone or changed (exit {r.rc})", r)
            if r.rc == 0:
                return result("ok", f"{rel_user} kept", r)
            return classify_failure(r, groups)
        return fn

    def pub_prepare():
        dest = CTX.d("faults") / f"pub-{next(_SEQ)}"
        shutil.rmtree(dest, ignore_errors=True)
        shutil.copytree(publish_base(), dest)
        return dest, None

    def pub_cmd(target):
        return causalgen_cmd("publish", corpus_base("dir"), "--repo-dir", target, "--repo-id", "me/probe", "--overwrite", "--quiet")

    for sub, rel in [("data", "data/NOTES.md"), ("zarr", "zarr/my-extra.zarr.zip"), ("figures", "figures/my-plot.png"),
                     ("top", "notes.txt")]:
        add(f"fault-publish-overwrite-user-file-{sub}", C, f"causalgen publish --overwrite with a user file {rel} in the repo dir",
            "the user file is kept (or the command refuses naming it)",
            user_file_probe(pub_prepare, pub_cmd, rel, [fname(rel)]))

    def gen_prepare():
        dest = CTX.d("faults") / f"gen-{next(_SEQ)}"
        shutil.rmtree(dest, ignore_errors=True)
        shutil.copytree(corpus_base("dir"), dest)
        return dest, None

    def gen_over(target):
        return causalgen_cmd("generate", "--preset", "default", "--seed", 5, "--num-tasks", 20, "--shard-size", 10,
                             "--out", target, "--overwrite", "--quiet")
    for sub, rel in [("root", "notes.txt"), ("shards", "shards/README.txt")]:
        add(f"fault-generate-overwrite-user-file-{sub}", C, f"causalgen generate --overwrite (other seed) with a user file {rel}",
            "the user file is kept (or the command refuses naming it)",
            user_file_probe(gen_prepare, gen_over, rel, [fname(rel)]))

    def nonempty_prepare():
        dest = CTX.d("faults") / "nonempty-out"
        return dest, None
    add("fault-generate-into-user-dir", C, "causalgen generate --out a non-empty directory without a manifest",
        "refused naming the directory; the user file kept",
        user_file_probe(nonempty_prepare, lambda t: causalgen_cmd("generate", "--preset", "default", "--num-tasks", 4,
                                                                  "--shard-size", 2, "--out", t, "--quiet"),
                        "thesis.txt", ["nonempty-out"]))
    add("fault-train-out-user-dir", C, "cina train --out a directory holding a user file", "the user file kept",
        user_file_probe(lambda: (CTX.d("faults") / "train-user", None),
                        lambda t: cina_cmd("train", "--corpus", corpus_base("dir"), "--out", t, "--max-steps", 2, "--quiet"),
                        "notes.txt", ["train-user"]))

    # ---- network
    push_words = [("network", "connect", "offline", "reach", "huggingface.co", "upload", "hub")]
    for pid, env, desc in [("push-offline", {"HF_HUB_OFFLINE": "1"}, "HF_HUB_OFFLINE=1"),
                           ("push-no-network", {"HF_HUB_OFFLINE": None}, "no network (DNS fails)")]:
        add(f"fault-{pid}", C, f"causalgen publish --push with a fake HF_TOKEN, {desc}", "refused naming the Hub / network",
            refuse(lambda pid=pid, env=env: (causalgen_cmd("publish", corpus_base("dir"), "--repo-dir", CTX.tmp / "faults" / pid,
                                                           "--repo-id", "probe-org/probe-ds", "--push", "--quiet"),
                                             push_words, {"env": {**env, "HF_TOKEN": "hf_probe_fake_token_000000000000"}, "timeout": 120}),
                   "claimed an upload"))
    add("fault-dask-bad-scheduler", C, "causalgen generate --executor dask --scheduler tcp://127.0.0.1:9", "refused naming the scheduler",
        refuse(lambda: (causalgen_cmd("generate", "--preset", "default", "--num-tasks", 4, "--shard-size", 2, "--executor", "dask",
                                      "--scheduler", "tcp://127.0.0.1:9", "--out", CTX.tmp / "faults" / "dask-out", "--quiet"),
                        [("127.0.0.1:9", "scheduler")], {"timeout": 120})))


# ---------------------------------------------------------------------------------------------
# class truth: ground-truth labels


def register_truth() -> None:
    C = "truth"

    def binom_tail(k: int, n: int, p: float) -> float:
        return float(sum(math.comb(n, i) * p ** i * (1 - p) ** (n - i) for i in range(k, n + 1)))

    def mc_probe(kind, preset, n):
        def fn():
            def check(info):
                rows = info["rows"]
                if not rows:
                    return "ok", "no task of this kind"
                z = np.array([r["z"] for r in rows])
                k2 = int((np.abs(z) > 2).sum())
                p = binom_tail(k2, len(z), 0.0455)
                worst = max(rows, key=lambda r: abs(r["z"]))
                detail = {"tasks": len(z), "share |z|>2": round(k2 / len(z), 3), "expected": 0.0455,
                          "binomial p": float(f"{p:.3g}"), "max |z|": round(float(np.abs(z).max()), 2), "worst": worst}
                bad = np.abs(z).max() > 5 or p < 1e-3
                return ("silent-wrong" if bad else "ok"), detail
            return run_child([preset], check, "truth", kind, preset, n, timeout=300)
        return fn

    add("truth-mc-se-default", C, "Monte-Carlo ATE labels vs a 25x finer MC (the MC tasks among 200 default-preset seeds)",
        "|z| = |ate - ref| / sqrt(se^2 + se_ref^2): share > 2 consistent with 4.6% (binomial p >= 1e-3), none > 5",
        mc_probe("mc", "default", 200))
    add("truth-mc-se-er5000-nonlinear", C, "the same for 120 er5000-nonlinear seeds", "as above", mc_probe("mc", "er5000-nonlinear", 120))
    add("truth-closed-form-vs-mc-er5000-linear", C, "closed-form ATE labels vs a forced fine Monte Carlo (er5000-linear)",
        "within 5 MC standard errors", mc_probe("closed", "er5000-linear", 40))
    add("truth-closed-form-vs-mc-default", C, "closed-form ATE labels vs a forced fine Monte Carlo (default preset)",
        "within 5 MC standard errors", mc_probe("closed", "default", 80))

    def consistency():
        def check(info):
            bad = [r["seed"] for r in info["rows"] if not r["ok"]]
            return ("silent-wrong" if bad else "ok"), {"tasks": len(info["rows"]), "inconsistent": bad[:5]}
        return run_child(["default"], check, "truth", "consistency", "default", 100, timeout=300)
    add("truth-y-sate-consistency", C, "y == where(t, y1, y0) and sate == mean(y1 - y0) on 100 tasks", "ok", consistency)


# ---------------------------------------------------------------------------------------------
# driver


def counts_table(results: list[dict]) -> str:
    classes = [c for c in CLASSES if any(r["class"] == c for r in results)]
    outs = [o for o in OUTCOMES if any(r["outcome"] == o for r in results)]
    lines = ["| class | " + " | ".join(outs) + " | total |", "|---|" + "---:|" * (len(outs) + 1)]
    for c in classes:
        row = [sum(1 for r in results if r["class"] == c and r["outcome"] == o) for o in outs]
        lines.append(f"| {c} | " + " | ".join(str(v) for v in row) + f" | {sum(row)} |")
    tot = [sum(1 for r in results if r["outcome"] == o) for o in outs]
    lines.append("| **total** | " + " | ".join(f"**{v}**" for v in tot) + f" | **{sum(tot)}** |")
    return "\n".join(lines)


def git_state() -> dict:
    def g(*args):
        try:
            return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""
    return {"commit": g("rev-parse", "HEAD"), "branch": g("rev-parse", "--abbrev-ref", "HEAD"),
            "dirty": bool(g("status", "--porcelain", "--untracked-files=no"))}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", help=f"comma-separated classes ({', '.join(CLASSES)})")
    ap.add_argument("--ids", help="run only probes whose id contains this substring")
    ap.add_argument("--json", metavar="OUT", help="write every probe's result as JSON")
    ap.add_argument("--md", metavar="OUT", help="write the counts table and the lists as markdown")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    ap.add_argument("--timeout", type=float, default=90.0, help="per-probe timeout in seconds (default 90)")
    ap.add_argument("--jobs", type=int, default=2, help="probes run at once (default 2; each is a subprocess)")
    ap.add_argument("--list", action="store_true", help="list the probes and exit")
    args = ap.parse_args(argv)

    register_csv()
    register_config()
    register_corpus()
    register_model()
    register_fault()
    register_truth()
    ids = [p.id for p in PROBES]
    assert len(ids) == len(set(ids)), "duplicate probe ids"
    selected = PROBES
    if args.only:
        want = {c.strip() for c in args.only.split(",")}
        unknown = want - set(CLASSES)
        if unknown:
            ap.error(f"--only: unknown class {sorted(unknown)[0]!r} (classes: {', '.join(CLASSES)})")
        selected = [p for p in selected if p.cls in want]
    if args.ids:
        selected = [p for p in selected if args.ids in p.id]
    if args.list:
        for p in selected:
            print(f"{p.id:55s} {p.cls:7s} {p.desc}")
        print(f"{len(selected)} probes")
        return 0

    global CTX
    tmp = Path(tempfile.mkdtemp(prefix="probe-reliability-"))
    home = tmp / "home"
    for sub in ("hf", "mpl", "xdg", "tmp"):
        (home / sub).mkdir(parents=True)
    env = dict(os.environ)
    env.update({"PYTHONPATH": str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else ""),
                "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
                "MPLBACKEND": "Agg", "PYTHONDONTWRITEBYTECODE": "1", "HF_HOME": str(home / "hf"),
                "MPLCONFIGDIR": str(home / "mpl"), "HF_XET_CACHE": str(home / "hf" / "xet"),
                "DASK_TEMPORARY_DIRECTORY": str(home / "tmp"), "XDG_CACHE_HOME": str(home / "xdg"), "TMPDIR": str(home / "tmp"),
                "TQDM_DISABLE": "1", "PYTHONWARNINGS": "ignore::DeprecationWarning"})
    env.pop("HF_TOKEN", None)
    env.pop("HUGGING_FACE_HUB_TOKEN", None)
    CTX = Ctx(tmp=tmp, timeout=args.timeout, env=env)
    (tmp / "probe_child.py").write_text(CHILD)


    def one(p: Probe) -> dict:
        t0 = time.monotonic()
        try:
            res = p.fn()
        except Exception as exc:  # a bug in this script, never the code under test
            res = {"outcome": "harness-error", "detail": f"{type(exc).__name__}: {exc}",
                   "traceback": traceback.format_exc()[-1500:]}
        return {"id": p.id, "class": p.cls, "desc": p.desc, "expect": p.expect, **res,
                "probe_secs": round(time.monotonic() - t0, 2)}

    from concurrent.futures import ThreadPoolExecutor, as_completed

    done: dict[int, dict] = {}
    t_start = time.monotonic()
    pool = ThreadPoolExecutor(max_workers=max(1, args.jobs))
    try:
        futures = {pool.submit(one, p): k for k, p in enumerate(selected)}
        for fut in as_completed(futures):
            res = fut.result()
            done[futures[fut]] = res
            print(f"[{len(done):3d}/{len(selected)}] {res['outcome']:14s} {res['id']}  ({res['probe_secs']:.1f} s)",
                  file=sys.stderr, flush=True)
    except KeyboardInterrupt:
        print("interrupted: reporting the probes finished so far", file=sys.stderr)
        for f in futures:
            f.cancel()
        for p in list(CTX.live):
            _killpg(p.pid)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        undo_readonly()
    total = time.monotonic() - t_start
    results = [done[k] for k in sorted(done)]

    table_md = counts_table(results)
    lists = []
    for o in ("silent-wrong", "data-loss", "traceback", "refused-vague", "hang", "harness-error"):
        hits = [r for r in results if r["outcome"] == o]
        if hits:
            lists.append(f"\n**{o}** ({len(hits)}):")
            for r in hits:
                lists.append(f"- `{r['id']}`: {_one(r.get('detail'))}")
    gs = git_state()
    header = (f"Reliability probes: {len(results)} probes in {total:.0f} s on {os.cpu_count()} CPUs; "
              f"commit {gs['commit'][:12]} ({gs['branch']}{', dirty' if gs['dirty'] else ''})")
    report = header + "\n\n" + table_md + "\n" + "\n".join(lists)
    print(report)
    if args.md:
        Path(args.md).write_text(report + "\n")
    if args.json:
        counts = {c: {o: sum(1 for r in results if r["class"] == c and r["outcome"] == o) for o in OUTCOMES} for c in CLASSES}
        Path(args.json).write_text(json.dumps({"git": gs, "python": sys.version.split()[0], "runtime_s": round(total, 1),
                                               "n_probes": len(results), "counts": counts, "probes": results},
                                              indent=2, default=str) + "\n")
    if args.keep:
        print(f"kept {tmp}", file=sys.stderr)
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


def _one(detail) -> str:
    if detail is None:
        return ""
    s = detail if isinstance(detail, str) else json.dumps(detail, default=str)
    s = s.replace(str(CTX.tmp), "$TMP").replace("\n", " ")
    return s if len(s) <= 220 else s[:220] + "..."


if __name__ == "__main__":
    raise SystemExit(main())
