"""`cina` command line: train, estimate, evaluate.

    cina train --corpus PATH_OR_URL --out RUN_DIR [--config FILE] [--max-steps N] ...
    torchrun --nproc_per_node=N -m cina.cli train ...      (DDP; gloo on CPU, nccl on GPU)
    cina estimate DATA.csv|DATA.tsv.gz|- --treatment COL --outcome COL [--covariates COL ...]
                  [--model default|fast|RUN_DIR_OR_CKPT] [--estimand ate|att] [--json]
    cina evaluate --model M --suite {synthetic,ihdp,ihdp-100,lalonde,realcause,twins,all} --out DIR

Exit codes: 0 success, 2 bad input (one line on stderr naming the problem: a file, column, row,
model file or output path), 1 other failures (one line for a training run stopped on a
non-finite loss or metric, or an OS error such as a full disk; a traceback only for a bug).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


class InputError(ValueError):
    """Bad user input: printed as one line, exit code 2."""


# ------------------------------------------------------------------ train


def _train(args) -> int:
    from .train import TrainConfig, train

    cfg = TrainConfig.load(args.config) if args.config else TrainConfig()
    overrides = {
        k: v for k, v in {
            "max_steps": args.max_steps, "batch_size": args.batch_size, "lr": args.lr, "seed": args.seed,
            "num_workers": args.num_workers, "device": args.device, "eval_every": args.eval_every,
            "compile": args.compile, "bf16": args.bf16,
            "ckpt_every": args.ckpt_every, "subsample_units": args.subsample_units,
        }.items() if v is not None
    }
    if args.supervised_weight is not None:
        overrides["model"] = {**cfg.model, "supervised_weight": args.supervised_weight}
    cfg = TrainConfig.from_dict({**cfg.to_dict(), **overrides})
    final = train(args.corpus, args.out, cfg, progress=not args.quiet)
    print(f"model written to {final}")
    return 0


# ------------------------------------------------------------------ estimate


def _estimate(args) -> int:
    import numpy as np

    from .core import CInA, resolve_model

    from causalgen import read_csv_columns

    x, t, y, names, notes = read_csv_columns(args.data, args.treatment, args.outcome, args.covariates)
    name = "<stdin>" if args.data == "-" else args.data
    model_path = resolve_model(args.model)
    model = CInA.load(model_path)
    if x.shape[1] > model.config.max_features:
        raise InputError(
            f"{name}: {x.shape[1]} covariates but the model takes at most {model.config.max_features}; "
            "select columns with --covariates"
        )
    if args.cate and model.outcome is None:
        raise InputError(f"--cate: the model {model_path} has no outcome head (outcome_model=False), so no CATE")
    if args.cate:
        _check_output(args.cate, "--cate")
    if not 0 < args.level < 1:
        raise InputError(f"--level: expected a number in (0, 1), got {args.level}")
    try:
        est = model.estimate(x, t, y, estimand=args.estimand, feature_names=names,
                             augment=False if args.no_augment else None)
    except ValueError as exc:  # the data, e.g. every covariate constant: name the file
        raise InputError(f"{name}: {exc}") from None
    diag = {k: (v.tolist() if hasattr(v, "tolist") else v) for k, v in est.diagnostics.items()}
    warnings = notes + diag.pop("warnings", [])
    se = float(est.se)
    ci = list(est.ci(args.level)) if np.isfinite(se) else None
    se_sample = float(est.se_sample)
    ci_sample = list(est.ci(args.level, sample=True)) if np.isfinite(se_sample) else None
    result = {
        "estimand": args.estimand,
        "estimate": float(est.ate),
        "se": se if np.isfinite(se) else None,
        "ci": ci,
        "se_sample": se_sample if np.isfinite(se_sample) else None,
        "ci_sample": ci_sample,
        "level": args.level,
        "augmented": bool(model.outcome is not None and not args.no_augment),
        "estimate_weighting": float(est.ate_weighting),
        "n_units": int(len(t)),
        "n_treated": int(t.sum()),
        "covariates": names,
        "model": str(model_path),
        "warnings": warnings,
        "diagnostics": diag,
    }
    if args.cate:
        _write_cate(args.cate, est)
        result["cate_file"] = args.cate
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    interval = (f", {100 * args.level:g}% CI [{ci[0]:.6g}, {ci[1]:.6g}], se {se:.4g}" if ci is not None
                else " (no interval: this model has no outcome head)")
    print(f"{args.estimand.upper()} estimate: {result['estimate']:.6g}{interval}  "
          f"({result['n_units']} units, {result['n_treated']} treated)")
    if ci_sample is not None:
        print(f"  for the effect on these {result['n_units']} units (their covariates held fixed): "
              f"CI [{ci_sample[0]:.6g}, {ci_sample[1]:.6g}], se {se_sample:.4g}")
    print(f"model: {model_path}" + ("" if not result["augmented"] else " (doubly robust: outcome model + balancing weights)"))
    if args.cate:
        print(f"CATE of every unit written to {args.cate}")
    labels = {"ess_treated": "effective sample size, treated", "ess_control": "effective sample size, control",
              "top1_share": "share of weight on the top 1% of units"}
    for key, label in labels.items():
        if key in diag:
            print(f"{label}: {diag[key]:.4g}")
    smd_before, smd_after = diag.get("smd_before"), diag.get("smd_after")
    if smd_before is not None and smd_after is not None:
        print("standardised mean differences on the pooled SD (before -> after weighting):")
        for cov, b, a in zip(names, np.atleast_1d(smd_before), np.atleast_1d(smd_after)):
            print(f"  {cov:>20s}: {b:+.3f} -> {a:+.3f}")
    for w in warnings:
        print(f"warning: {w}")
    return 0


def _check_output(path: str, flag: str) -> None:
    """An output file we may write: its folder exists and is writable, and it is not a folder."""
    import os

    p = Path(path)
    if p.is_dir():
        raise InputError(f"{flag} {path}: is a directory")
    folder = p.parent if str(p.parent) else Path(".")
    if not folder.is_dir():
        raise InputError(f"{flag} {path}: no such directory {folder}")
    if not os.access(folder, os.W_OK):
        raise InputError(f"{flag} {path}: cannot write in {folder}")


def _write_cate(path: str, est) -> None:
    """unit, mu0, mu1, cate per row (row order of the input), written whole then renamed, so a
    partial file never looks complete."""
    import os

    tmp = f"{path}.partial"
    with open(tmp, "w") as f:
        f.write("unit,mu0,mu1,cate\n")
        for i, (a, b) in enumerate(zip(est.mu0, est.mu1)):
            f.write(f"{i},{a:.9g},{b:.9g},{b - a:.9g}\n")
    os.replace(tmp, path)


# ------------------------------------------------------------------ evaluate


def _evaluate(args) -> int:
    from .core import resolve_model
    from .eval.evaluate import ALL_ESTIMATORS, EvalOptions, evaluate, format_table, summarise, _done_rows

    opts = EvalOptions(
        suite=args.suite, estimand=args.estimand, estimators=args.estimators or ALL_ESTIMATORS,
        data_dir=args.data_dir, limit=args.limit, n_synthetic=args.n_synthetic,
        synthetic_config=args.synthetic_config, corpus=args.corpus, max_units_zs=args.max_units_zs,
        max_units_quadratic=args.max_units_quadratic, ood=not args.no_ood,
    )
    model = None if args.model == "none" else (args.model or str(resolve_model(None)))
    results = evaluate(model, args.out, opts, model_supervised=args.model_supervised, progress=not args.quiet)
    _, rows = _done_rows(results)
    print(format_table(summarise(rows)))
    print(f"results: {results}  summary: {Path(args.out) / 'summary.md'}")
    return 0


# ------------------------------------------------------------------ parser


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="cina", description="CInA: causal inference with attention (train, estimate).")
    sub = ap.add_subparsers(dest="command", metavar="COMMAND", required=True)

    tr = sub.add_parser("train", help="pretrain CInA on a corpus (resumes from RUN_DIR)", description=_train_doc())
    tr.add_argument("--corpus", required=True, nargs="+", metavar="CORPUS",
                    help="corpus directory, published repo folder or URL (hf://, file://, ...); several are mixed in "
                    "proportion to their sizes")
    tr.add_argument("--out", required=True, help="run directory (checkpoints, metrics.csv, model/)")
    tr.add_argument("--config", help="YAML/JSON TrainConfig (see cina.train.TrainConfig)")
    tr.add_argument("--max-steps", type=int)
    tr.add_argument("--batch-size", type=int)
    tr.add_argument("--lr", type=float)
    tr.add_argument("--seed", type=int)
    tr.add_argument("--num-workers", type=int)
    tr.add_argument("--device", choices=["auto", "cpu", "cuda"])
    tr.add_argument("--compile", choices=["auto", "on", "off"], help="torch.compile the model (auto: on a GPU only)")
    tr.add_argument("--bf16", choices=["auto", "on", "off"], help="bf16 autocast (auto: on a GPU only)")
    tr.add_argument("--eval-every", type=int)
    tr.add_argument("--ckpt-every", type=int)
    tr.add_argument("--subsample-units", type=int)
    tr.add_argument("--supervised-weight", type=float, help="> 0 trains the ZS-S variant (ATE loss on the ground truth)")
    tr.add_argument("--quiet", action="store_true", help="no progress bar")
    tr.set_defaults(func=_train)

    es = sub.add_parser("estimate", help="zero-shot ATE/ATT of a CSV file in one forward pass")
    es.add_argument("data", help="CSV/TSV file with a header row (',', tab, ';' or '|'; UTF-8, UTF-16 or Latin-1; "
                    "may be gzip-compressed), or - for stdin")
    es.add_argument("--treatment", required=True, help="binary 0/1 treatment column")
    es.add_argument("--outcome", required=True, help="outcome column")
    es.add_argument("--covariates", nargs="+", help="covariate columns (default: all other columns)")
    es.add_argument("--model", help="'default' or 'fast' (shipped models), a run directory, model directory or "
                    ".safetensors (default: the shipped default model)")
    es.add_argument("--estimand", choices=["ate", "att"], default="ate")
    es.add_argument("--json", action="store_true", help="print the result as JSON")
    es.add_argument("--cate", metavar="OUT.csv", help="write each unit's mu0, mu1 and CATE to this CSV file "
                    "(models with an outcome head)")
    es.add_argument("--level", type=float, default=0.95, help="confidence level of the interval (default 0.95)")
    es.add_argument("--no-augment", action="store_true", help="the weights-only estimate (the paper's), not the "
                    "doubly robust one")
    es.set_defaults(func=_estimate)

    from .eval.evaluate import ALL_ESTIMATORS, SUITE_CHOICES

    ev = sub.add_parser("evaluate", help="every estimator on every dataset of a suite -> results.csv, summary.md, plots",
                        description="Runs the baselines, per-dataset CInA and the zero-shot model(s) on a benchmark "
                        "suite. Resumable: finished rows of OUT/results.csv are skipped.")
    ev.add_argument("--model", help="zero-shot model ('default', 'fast', run dir, model dir or .safetensors; "
                    "default: the shipped default model; 'none' to skip)")
    ev.add_argument("--model-supervised", help="a ZS-S model, evaluated as cina-zs-s")
    ev.add_argument("--suite", choices=SUITE_CHOICES, default="synthetic")
    ev.add_argument("--out", required=True, help="output folder (results.csv, summary.md, mae.png, speed.png)")
    ev.add_argument("--estimand", choices=["ate", "att"], default="ate", help="(LaLonde is always ATT)")
    ev.add_argument("--estimators", nargs="+", choices=ALL_ESTIMATORS, help="subset of estimators (default: all)")
    ev.add_argument("--data-dir", help="benchmark data folder (default: $CINA_BENCHMARKS or ../shared/benchmarks)")
    ev.add_argument("--limit", type=int, help="at most this many datasets per suite")
    ev.add_argument("--n-synthetic", type=int, default=20, help="tasks per synthetic sub-suite")
    ev.add_argument("--synthetic-config", default="default", help="causalgen preset/config of the training prior")
    ev.add_argument("--corpus", help="use this corpus' test split as the in-distribution synthetic suite")
    ev.add_argument("--no-ood", action="store_true", help="synthetic suite: skip the out-of-distribution shifts")
    ev.add_argument("--max-units-zs", type=int, default=20_000)
    ev.add_argument("--max-units-quadratic", type=int, default=2_000)
    ev.add_argument("--quiet", action="store_true")
    ev.set_defaults(func=_evaluate)
    return ap


def _train_doc() -> str:
    return (
        "Pretrain CInA on the train split of a causalgen corpus, validating on its validation split. "
        "Re-running the same command resumes exactly from the latest checkpoint. Under torchrun it runs "
        "DDP (gloo on CPU, nccl on GPU)."
    )


def _one_line(exc: BaseException) -> str:
    """The first line of an exception's message; OSErrors as ``PATH: reason``."""
    if isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        return f"{exc.filename}: {exc.strerror}"
    text = str(exc)
    return text.splitlines()[0] if text.strip() else type(exc).__name__


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from .train import TrainingError  # every command imports torch anyway

    try:
        return args.func(args)
    except InputError as exc:
        print(f"cina {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except (ValueError, FileNotFoundError, NotADirectoryError) as exc:
        print(f"cina {args.command}: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except (PermissionError, IsADirectoryError, FileExistsError) as exc:  # an output path the user gave
        print(f"cina {args.command}: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except (TrainingError, OSError) as exc:  # a diverged run, a full disk, ...: not the input's fault
        print(f"cina {args.command}: error: {_one_line(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"cina {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
