"""Generation throughput of causalgen vs a plain per-task numpy loop, on one core.

Workloads (N = 1000 units per task, a new graph and new parameters every task):
  W1       10-node ER DAG (2 expected parents per node), linear-Gaussian
  W2-RFF   the same graphs with random-Fourier-feature mechanisms (100 features)
  W2-MLP   the same with a one-layer random MLP per node, act(w . parents) (Do-PFN style)
  W3-RFF / W3-MLP  as W2 at 20 nodes

causalgen computes the full ground truth (both potential outcomes with shared
noise, propensities, exact or Monte-Carlo population ATE, roles, QC). The control
is the obvious per-task loop: new ER graph + weights + ancestral sampling with
`Generator.standard_normal`, no ground truth. Both run in this process, in
alternating paired measurements, and the ratio is the median of the per-pair
ratios, so it is robust to a noisy, shared machine.

With ``--baseline REV`` each workload is also run by the causalgen of git revision REV (its
package extracted to a temporary folder and run in a worker process beside a worker running
this checkout, measured alternately), and the table gets a column "vs REV": this checkout's
rate over REV's (median of paired runs), to show a change does not slow the sampler down.
The presets ``realistic`` and ``semi-synthetic`` get rows of their own (tasks/s and unit-nodes/s,
the sum of N x J over the tasks per second), from the same kind of paired workers.

Two more columns put the targets in context: "noise alone" is the rate at which
this machine draws nothing but each task's factual Gaussian noise (N x nodes
values, by the sampler's own fastest route), a ceiling for any design that draws
fresh noise per unit and node this way; "MC ATE units" is the mean number of fresh units
the Monte-Carlo population ATE needed per task (0 where the ATE has a closed form).

    python scripts/bench_generate.py            # all workloads, prints a markdown table
    python scripts/bench_generate.py --quick    # fewer tasks (smoke test)
    python scripts/bench_generate.py --baseline d2b0770 --presets realistic semi-synthetic
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tarfile  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

import causalgen  # noqa: E402

N_UNITS = 1000
WORKLOADS = {
    # name: (nodes, mechanism)
    "W1": (10, "linear"),
    "W2-RFF": (10, "rff"),
    "W2-MLP": (10, "mlp"),
    "W3-RFF": (20, "rff"),
    "W3-MLP": (20, "mlp"),
}
# Published single-core medians of the fastest existing generator and of the
# plain loop on a machine like ours (issue 2), tasks/s.
REFERENCE = {
    "W1": ("CausalPlayground", 1641, 3379),
    "W2-RFF": ("AVICI", 35, 59),
    "W2-MLP": ("Do-PFN prior", 129, 4247),
    "W3-RFF": ("AVICI", 24, 28),
    "W3-MLP": ("Do-PFN prior", 65, 2122),
}


def workload_config(nodes: int, mechanism: str) -> causalgen.TaskConfig:
    return causalgen.load_config(
        {
            "name": f"bench-{mechanism}-{nodes}",
            "n_units": [N_UNITS, N_UNITS],
            "graph": {"families": {"erdos_renyi": 1.0}, "n_nodes": [nodes, nodes], "expected_parents": [2.0, 2.0]},
            "roles": {"hidden_confounder_fraction": [0.0, 0.0], "zero_effect_prob": 0.0},
            "mechanism": {"families": {mechanism: 1.0}, "mixing": "task", "mlp_hidden": 0,
                          "mlp_activations": ["tanh"], "rff_features": 100},
            "noise": {"families": {"gaussian": 1.0}, "heteroscedastic_prob": 0.0, "nonadditive_prob": 0.0},
            "treatment": {"score_mechanism": {mechanism: 1.0}},
        }
    )


def plain_numpy_task(rng: np.random.Generator, nodes: int, mechanism: str) -> np.ndarray:
    """The control: one task by a straightforward per-task numpy loop."""
    p = 2 * 2.0 / (nodes - 1)
    adj = np.triu(rng.random((nodes, nodes)) < p, k=1)
    x = np.zeros((N_UNITS, nodes))
    for j in range(nodes):
        parents = np.flatnonzero(adj[:, j])
        eps = rng.standard_normal(N_UNITS)
        if len(parents) == 0:
            x[:, j] = eps
            continue
        pa = x[:, parents]
        if mechanism == "linear":
            w = rng.uniform(0.5, 2.0, len(parents)) * rng.choice([-1.0, 1.0], len(parents))
            x[:, j] = pa @ w + eps
        elif mechanism == "rff":
            omega = rng.standard_normal((len(parents), 100))
            phase = rng.uniform(0, 2 * np.pi, 100)
            amp = rng.standard_normal(100)
            x[:, j] = np.sqrt(2 / 100) * np.cos(pa @ omega + phase) @ amp + eps
        else:
            w = rng.standard_normal(len(parents)) / np.sqrt(len(parents))
            x[:, j] = np.tanh(pa @ w) + eps
    return x


def noise_only(rep: int, n: int, nodes: int) -> None:
    """The noise of n tasks and nothing else: N x nodes float32 standard normals per task, by
    the sampler's own fastest route (raw generator bits -> uniforms -> Box-Muller, noise.py),
    256 tasks per call. Its rate is a ceiling for the sampler, and for any design that draws
    fresh Gaussian noise for every unit and node this way."""
    from causalgen.prior.noise import gaussian_from_uniforms, uniform_bits, uniforms_from_bits

    rng = np.random.default_rng(rep)
    for start in range(0, n, 256):
        b = min(256, n - start)
        u = uniforms_from_bits(uniform_bits(rng, b * nodes * N_UNITS)).reshape(b * nodes, N_UNITS)
        gaussian_from_uniforms(u, out=u)


def time_rate(fn, n_tasks: int, rep: int = 0) -> float:
    start = time.perf_counter()
    fn(rep, n_tasks)
    return n_tasks / (time.perf_counter() - start)


def paired_rates(ours, plain, n_ours: int, n_plain: int, repeats: int):
    """Alternate ours / plain measurements so that both see the same machine
    load; return the median rates and the median of the per-pair ratios."""
    pairs = []
    for rep in range(repeats):
        pairs.append((time_rate(ours, n_ours, rep + 1), time_rate(plain, n_plain, rep + 1)))
    o, p = np.array(pairs).T
    return float(np.median(o)), float(np.median(p)), float(np.median(o / p))


# ------------------------------------------------------------------ paired workers (this checkout vs a revision)

ROOT = Path(__file__).resolve().parents[1]


def _config_of(spec: str):
    """A workload name or a preset name -> its config (the same in every revision)."""
    if spec in WORKLOADS:
        return workload_config(*WORKLOADS[spec])
    return causalgen.load_config(spec)


def worker_loop() -> None:
    """``--worker``: read "SPEC N REP" lines, answer "RATE UNIT_NODES_PER_S" (tasks/s of
    sample_tasks on N fresh seeds, after one warm-up call per spec)."""
    warmed = set()
    for line in sys.stdin:
        spec, n, rep = line.split()
        cfg = _config_of(spec)
        if spec not in warmed:
            causalgen.sample_tasks(cfg, range(10**9, 10**9 + 16))
            warmed.add(spec)
        seeds = range(int(rep) * 1_000_000, int(rep) * 1_000_000 + int(n))
        start = time.perf_counter()
        tasks = causalgen.sample_tasks(cfg, seeds)
        dt = time.perf_counter() - start
        unit_nodes = sum(t.n_units * t.n_nodes for t in tasks)
        print(f"{len(tasks) / dt} {unit_nodes / dt}", flush=True)


class Worker:
    """A persistent worker process running the causalgen found at `pythonpath` (or this checkout)."""

    def __init__(self, pythonpath: str | None = None):
        env = dict(os.environ)
        if pythonpath:
            env["PYTHONPATH"] = pythonpath + os.pathsep + env.get("PYTHONPATH", "")
        self.proc = subprocess.Popen([sys.executable, __file__, "--worker"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, env=env, cwd=pythonpath or str(ROOT))

    def rate(self, spec: str, n: int, rep: int) -> tuple[float, float]:
        self.proc.stdin.write(f"{spec} {n} {rep}\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"bench worker died while sampling {spec}")
        a, b = line.split()
        return float(a), float(b)

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


def extract_revision(rev: str, dest: str) -> str:
    """causalgen/ of git revision `rev`, extracted under `dest`; returns the folder to put on sys.path."""
    data = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "causalgen"], check=True, capture_output=True).stdout
    import io

    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        tar.extractall(dest, filter="data")
    return dest


def paired_workers(specs, seconds: float, repeats: int, baseline: str | None):
    """{spec: (tasks/s here, unit-nodes/s here, ratio here / baseline or None)} from alternating
    measurements of two workers."""
    here = Worker()
    tmp = tempfile.TemporaryDirectory() if baseline else None
    there = Worker(extract_revision(baseline, tmp.name)) if baseline else None
    out = {}
    try:
        for spec in specs:
            pilot, _ = here.rate(spec, 16, 0)
            n = max(16, int(pilot * seconds))
            rates, unit_rates, ratios = [], [], []
            for rep in range(1, repeats + 1):
                r, u = here.rate(spec, n, rep)
                rates.append(r)
                unit_rates.append(u)
                if there is not None and spec in WORKLOADS:  # presets new in this checkout have no baseline
                    ratios.append(r / there.rate(spec, n, rep)[0])
            out[spec] = (float(np.median(rates)), float(np.median(unit_rates)),
                         float(np.median(ratios)) if ratios else None)
    finally:
        here.close()
        if there is not None:
            there.close()
            tmp.cleanup()
    return out


def main(argv=None) -> int:
    if argv is None and sys.argv[1:2] == ["--worker"]:
        worker_loop()
        return 0
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workloads", nargs="*", default=list(WORKLOADS), choices=list(WORKLOADS))
    ap.add_argument("--seconds", type=float, default=2.0, help="target seconds per measurement")
    ap.add_argument("--repeats", type=int, default=5, help="paired (ours, plain) measurements; medians reported")
    ap.add_argument("--quick", action="store_true", help="a smoke run: 0.3 s per measurement, 1 repeat")
    ap.add_argument("--json", help="also write the results to this JSON file")
    ap.add_argument("--baseline", metavar="REV", help="also run git revision REV and report this checkout's rate over it")
    ap.add_argument("--presets", nargs="*", default=[], help="presets with a row of their own (e.g. realistic semi-synthetic)")
    args = ap.parse_args(argv)
    if args.quick:
        args.seconds, args.repeats = 0.3, 1

    rows = []
    for name in args.workloads:
        nodes, mechanism = WORKLOADS[name]
        cfg = workload_config(nodes, mechanism)

        def ours(rep, n, cfg=cfg):
            causalgen.sample_tasks(cfg, range(rep * 1_000_000, rep * 1_000_000 + n))

        def plain(rep, n, nodes=nodes, mechanism=mechanism):
            rng = np.random.default_rng(rep)
            for _ in range(n):
                plain_numpy_task(rng, nodes, mechanism)

        # size each measurement to about --seconds from a short pilot run
        # (the pilot also warms caches and imports)
        pilot_ours = time_rate(ours, 256)
        pilot_plain = time_rate(plain, 32)
        ours_rate, plain_rate, ratio = paired_rates(
            ours, plain, max(256, int(pilot_ours * args.seconds)), max(32, int(pilot_plain * args.seconds)), args.repeats
        )
        ceiling = float(np.median([time_rate(lambda rep, n: noise_only(rep, n, nodes), 2048, rep) for rep in range(3)]))
        mc_units = float(np.mean([t.meta["ate_mc_units"] for t in causalgen.sample_tasks(cfg, range(200))]))
        best_name, best_rate, plain_ref = REFERENCE[name]
        target = max(10 * best_rate, 2 * plain_ref)
        rows.append(
            {
                "workload": name, "ours_tasks_per_s": round(ours_rate, 1), "plain_numpy_tasks_per_s": round(plain_rate, 1),
                "ratio_vs_plain": round(ratio, 2), "target_tasks_per_s": target,
                "fastest_existing": f"{best_name} {best_rate}/s",
                "noise_only_tasks_per_s": round(ceiling, 1), "mean_mc_ate_units": round(mc_units, 1),
            }
        )
        print(f"{name}: {ours_rate:,.0f} tasks/s vs plain {plain_rate:,.0f} tasks/s "
              f"(x{ratio:.2f}, median of paired runs); target {target:,}/s; drawing the factual noise alone: "
              f"{ceiling:,.0f} tasks/s; Monte-Carlo ATE units per task: {mc_units:,.0f}", flush=True)

    vs = {}
    if args.baseline or args.presets:
        vs = paired_workers(args.workloads + args.presets if args.baseline else args.presets, args.seconds,
                            args.repeats, args.baseline)
    print()
    rev = f" | vs {args.baseline}" if args.baseline else ""
    print("| workload | causalgen tasks/s (full ground truth) | plain numpy loop tasks/s | ratio | target | "
          f"noise alone tasks/s | MC ATE units per task{rev} | fastest existing (reported) |")
    print("|---|---:|---:|---:|---:|---:|---:|" + ("---:|" if args.baseline else "") + "---|")
    for r in rows:
        extra = f" | {vs[r['workload']][2]:.2f}x" if args.baseline else ""
        r["vs_baseline"] = vs[r["workload"]][2] if args.baseline else None
        print(f"| {r['workload']} | {r['ours_tasks_per_s']:,.0f} | {r['plain_numpy_tasks_per_s']:,.0f} | "
              f"{r['ratio_vs_plain']:.2f}x | {r['target_tasks_per_s']:,} | {r['noise_only_tasks_per_s']:,.0f} | "
              f"{r['mean_mc_ate_units']:,.0f}{extra} | {r['fastest_existing']} |")
    if args.presets:
        print()
        print("| preset | tasks/s | unit-nodes/s (sum of N x J per second) | mean N | mean J | mean d |")
        print("|---|---:|---:|---:|---:|---:|")
        for spec in args.presets:
            tasks = causalgen.sample_tasks(spec, range(60))
            rate, units, _ = vs[spec]
            rows.append({"workload": spec, "ours_tasks_per_s": round(rate, 2), "unit_nodes_per_s": round(units)})
            print(f"| {spec} | {rate:,.1f} | {units:,.0f} | {np.mean([t.n_units for t in tasks]):,.0f} | "
                  f"{np.mean([t.n_nodes for t in tasks]):.0f} | {np.mean([t.n_covariates for t in tasks]):.0f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
