"""Training loop, checkpoints, exact resume after kill -9, DDP with 2 gloo processes, and
every `cina estimate` error path."""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import causalgen
from causalgen.store.generate import CorpusSpec, generate_corpus
from cina.cli import main as cina_main
from cina.core import CInA
from cina.core.checkpoint import latest_checkpoint
from cina.train import TrainConfig, TrainingError, lr_factor, train

TINY_MODEL = {"d_model": 32, "n_heads": 2, "n_layers": 1, "n_value_layers": 1, "key_dim": 8, "max_features": 16}
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    cfg = causalgen.load_config("er5000-linear").replace(n_units=[40, 100], **{"graph.n_nodes": [5, 8]})
    out = tmp_path_factory.mktemp("corpus") / "c"
    generate_corpus(CorpusSpec(config=cfg.to_dict(), seed=3, num_tasks=160, shard_size=40), str(out), progress=False)
    return out


def tiny_config(**kw) -> TrainConfig:
    base = dict(model=TINY_MODEL, batch_size=8, max_steps=6, warmup_steps=2, subsample_units=48,
                eval_every=3, eval_tasks=16, ckpt_every=2, lr=3e-3)
    base.update(kw)
    return TrainConfig.from_dict(base)


def read_metrics(run: Path) -> list[dict]:
    with (run / "metrics.csv").open() as f:
        return list(csv.DictReader(f))


def sample_tasks_with_huge_ates(config, seeds):
    """`causalgen.sample_tasks` with every 10th task's ATE set to 1e30: finite (a store that
    rejects NaN keeps it), but its squared error overflows float32 in the supervised loss."""
    tasks = causalgen.sample_tasks(config, seeds)
    for task in tasks[::10]:
        task.ate = 1e30
    return tasks


def sample_tasks_with_overflowing_ates(config, seeds):
    """`causalgen.sample_tasks` with every ATE set to 1e300: finite in the store (float64), inf
    once a batch holds it in float32, so the validation error is inf."""
    tasks = causalgen.sample_tasks(config, seeds)
    for task in tasks:
        task.ate = 1e300
    return tasks


def _corpus_with(sampler, out):
    cfg = causalgen.load_config("er5000-linear").replace(n_units=[40, 100], **{"graph.n_nodes": [5, 8]})
    spec = CorpusSpec(config=cfg.to_dict(), seed=3, num_tasks=160, shard_size=40, sampler=f"{__name__}:{sampler.__name__}")
    generate_corpus(spec, str(out), progress=False)
    return out


def test_training_stops_on_a_non_finite_loss_keeping_the_checkpoints(tmp_path, capsys):
    from cina.data import TaskStream

    corpus = _corpus_with(sample_tasks_with_huge_ates, tmp_path / "huge")
    # the step whose batch first holds a huge ATE, from the stream train() builds; a seed where
    # it is not the first step, so a checkpoint is written before it
    for seed in range(10):
        cfg = tiny_config(model={**TINY_MODEL, "supervised_weight": 1.0}, max_steps=16, ckpt_every=1, eval_every=100,
                          seed=seed)
        stream = TaskStream(str(corpus), cfg.batch_size, cfg.seed, split="train", bucket_by_size=cfg.bucket_by_size,
                            subsample_units=cfg.subsample_units, max_units_per_batch=cfg.max_units_per_batch,
                            block_shards=cfg.block_shards, extras=(), drop_last=True)
        bad = next((i + 1 for i, b in enumerate(stream) if float(b["ate"].abs().max()) > 1e20), None)
        if bad is not None and 1 < bad <= cfg.max_steps:
            break
    else:
        pytest.fail("no seed puts a huge ATE after the first step")
    run = tmp_path / "run"
    cfg_file = tmp_path / "cfg.json"
    cfg_file.write_text(json.dumps(cfg.to_dict()))
    code = cina_main(["train", "--corpus", str(corpus), "--out", str(run), "--config", str(cfg_file), "--quiet"])
    err = capsys.readouterr().err
    assert code == 1 and len(err.strip().splitlines()) == 1, err
    assert f"training stopped at step {bad}: the loss is inf" in err, err
    assert not (run / "model").exists()
    # the checkpoints written before are there, complete and loadable (finite weights)
    ck = latest_checkpoint(run)
    assert ck is not None and ck.name == f"step-{bad - 1:07d}"
    model = CInA.load(ck)
    assert all(torch.isfinite(p).all() for p in model.state_dict().values())
    # in Python: a TrainingError
    with pytest.raises(TrainingError, match=f"step {bad}: the loss is inf"):
        train(str(corpus), tmp_path / "run2", cfg, progress=False)


@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")  # the point of the corpus
def test_training_stops_on_a_non_finite_validation_metric(tmp_path, capsys):
    corpus = _corpus_with(sample_tasks_with_overflowing_ates, tmp_path / "overflow")
    run = tmp_path / "run"
    with pytest.raises(TrainingError, match=r"step 1: the validation metric val_ate_mae_std is inf \(validation tasks \["):
        train(str(corpus), run, tiny_config(max_steps=4, ckpt_every=2), progress=False)
    assert not (run / "model").exists() and latest_checkpoint(run) is None
    # metrics.csv still shows the row that stopped it
    assert read_metrics(run)[-1]["val_ate_mae"] == "inf"


def test_resuming_checks_the_checkpoint_like_any_model_file(corpus, tmp_path, capsys):
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    run = tmp_path / "run"
    cfg = tiny_config(max_steps=2, ckpt_every=1)
    train(corpus, run, cfg, progress=False)
    weights = latest_checkpoint(run) / "model.safetensors"
    with safe_open(str(weights), framework="pt") as f:
        meta = f.metadata()
    state = load_file(str(weights))
    state["input_proj.weight"][0, 0] = float("nan")
    save_file(state, str(weights), metadata=meta)
    cfg_file = tmp_path / "cfg.json"
    cfg_file.write_text(json.dumps(cfg.to_dict()))
    assert cina_main(["train", "--corpus", str(corpus), "--out", str(run), "--config", str(cfg_file), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "step-0000002/model.safetensors: tensor 'input_proj.weight' has 1 non-finite" in err, err
    (weights.parent / "optimizer.pt").write_bytes(b"not a torch file")
    save_file(load_file(str(run / "model" / "model.safetensors")), str(weights), metadata=meta)
    with pytest.raises(ValueError, match="step-0000002: damaged checkpoint"):
        train(corpus, run, cfg, progress=False)


def test_lr_schedule_warmup_then_cosine():
    cfg = tiny_config(max_steps=100, warmup_steps=10, min_lr_ratio=0.1)
    assert lr_factor(0, cfg) == pytest.approx(0.1)
    assert lr_factor(9, cfg) == pytest.approx(1.0)
    assert lr_factor(10, cfg) == pytest.approx(1.0)
    assert lr_factor(55, cfg) == pytest.approx(0.1 + 0.9 * 0.5)
    assert lr_factor(100, cfg) == pytest.approx(0.1)


def test_train_config_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown field 'epochs'"):
        TrainConfig.from_dict({"epochs": 3})
    with pytest.raises(ValueError, match="lr must be finite"):
        TrainConfig.from_dict({"lr": float("inf")})
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1, got 0"):
        TrainConfig.from_dict({"batch_size": 0})
    with pytest.raises(ValueError, match="d_model"):
        TrainConfig.from_dict({"model": {"d_model": 30, "n_heads": 4}})
    bad = tmp_path / "t.yaml"
    bad.write_text("max_steps: [1,\n")
    with pytest.raises(ValueError, match="t.yaml: malformed YAML"):
        TrainConfig.load(bad)
    bad.write_text("max_steps: 10\nlr: 0.001\nmax_steps: 20\n")
    with pytest.raises(ValueError, match="t.yaml: key 'max_steps' is given twice"):
        TrainConfig.load(bad)


def test_short_run_lowers_validation_loss_and_writes_a_loadable_model(corpus, tmp_path):
    run = tmp_path / "run"
    final = train(corpus, run, tiny_config(max_steps=40, eval_every=13, ckpt_every=20), progress=False)
    rows = read_metrics(run)
    first, last = float(rows[0]["val_loss"]), float(rows[-1]["val_loss"])
    assert int(rows[-1]["step"]) == 40
    # the validation tasks and the evaluation are fixed, so any decrease is learning, not noise
    assert last < 0.99 * first, (first, last)
    model = CInA.load(final)
    task = causalgen.sample_task(causalgen.load_config("er5000-linear").replace(n_units=[80, 80]), 999)
    est = model.estimate(task.x, task.t, task.y)
    w = est.weights
    assert np.isclose(w[task.t == 1].sum(), 1, atol=1e-5) and np.isclose(w[task.t == 0].sum(), 1, atol=1e-5)
    assert np.isfinite(est.ate)
    # a changed config on an existing run directory is refused
    with pytest.raises(ValueError, match="different train config"):
        train(corpus, run, tiny_config(max_steps=41), progress=False)


def test_cli_bf16_flag_trains_under_autocast_and_logs_step_time(corpus, tmp_path):
    """`--bf16 on` reaches the config and the loop (bf16 autocast also runs on CPU); the metrics
    log a positive step time and leave the GPU-memory column empty without a GPU."""
    run = tmp_path / "run"
    cfg_file = tmp_path / "cfg.json"
    cfg_file.write_text(json.dumps(tiny_config(max_steps=4, eval_every=2).to_dict()))
    assert cina_main(["train", "--corpus", str(corpus), "--out", str(run), "--config", str(cfg_file),
                      "--bf16", "on", "--compile", "off", "--quiet"]) == 0
    saved = json.loads((run / "train_config.json").read_text())
    assert saved["bf16"] == "on" and saved["compile"] == "off"
    rows = read_metrics(run)
    assert [int(r["step"]) for r in rows] == [1, 2, 4]
    assert all(float(r["step_ms"]) > 0 and r["gpu_mem_gb"] == "" for r in rows)
    assert all(np.isfinite(float(r["loss"])) and np.isfinite(float(r["val_ate_mae"])) for r in rows)


def test_metrics_of_an_older_run_are_rewritten_under_the_current_header(tmp_path):
    from cina.train import METRIC_FIELDS, _prepare_metrics_file

    path = tmp_path / "metrics.csv"
    path.write_text("step,loss,tasks_per_s,val_ate_mae\n1,0.5,10.0,0.2\n100,0.4,12.0,0.1\n")
    _prepare_metrics_file(path)
    with path.open() as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0].keys()) == METRIC_FIELDS
    assert [(r["step"], r["loss"], r["val_ate_mae"], r["step_ms"]) for r in rows] == [("1", "0.5", "0.2", ""), ("100", "0.4", "0.1", "")]
    before = path.read_text()
    _prepare_metrics_file(path)  # current header: left alone
    assert path.read_text() == before


def _train_cmd(corpus, run, max_steps, extra=()):
    cfg = tiny_config(max_steps=max_steps).to_dict()
    cfg_file = Path(run).parent / f"{Path(run).name}.json"
    cfg_file.write_text(json.dumps(cfg))
    return [sys.executable, "-m", "cina.cli", "train", "--corpus", str(corpus), "--out", str(run),
            "--config", str(cfg_file), "--quiet", *extra]


def test_kill_9_then_resume_gives_identical_weights(corpus, tmp_path):
    straight = tmp_path / "straight"
    subprocess.run(_train_cmd(corpus, straight, 10), check=True, env=ENV, capture_output=True)

    resumed = tmp_path / "resumed"
    proc = subprocess.Popen(_train_cmd(corpus, resumed, 10), env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline:
        ck = latest_checkpoint(resumed)
        if ck is not None and ck.name >= "step-0000004":
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    ck = latest_checkpoint(resumed)
    assert ck is not None and not (resumed / "model").exists(), "the run finished before it could be killed"
    subprocess.run(_train_cmd(corpus, resumed, 10), check=True, env=ENV, capture_output=True)
    a = (straight / "model" / "model.safetensors").read_bytes()
    b = (resumed / "model" / "model.safetensors").read_bytes()
    assert a == b
    steps = [int(r["step"]) for r in read_metrics(resumed)]
    assert steps[-1] == 10


def test_ddp_two_gloo_processes(corpus, tmp_path):
    run = tmp_path / "ddp"
    cmd = _train_cmd(corpus, run, 4)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "cina.cli"] + cmd[3:]
    res = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    model = CInA.load(run / "model")
    assert model.num_parameters() > 0
    trainer = json.loads((latest_checkpoint(run) / "trainer.json").read_text())
    assert trainer["step"] == 4 and trainer["stream"]["world_size"] == 2


# ------------------------------------------------------------------ cina estimate


@pytest.fixture(scope="module")
def small_model(corpus, tmp_path_factory):
    run = tmp_path_factory.mktemp("est") / "run"
    train(corpus, run, tiny_config(max_steps=2), progress=False)
    return run


def write_csv(path: Path, header, rows):
    path.write_text(",".join(header) + "\n" + "\n".join(",".join(str(v) for v in r) for r in rows) + "\n")
    return path


def good_rows(n=40, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 2))
    t = (rng.random(n) < 0.5).astype(int)
    t[:2] = [0, 1]
    y = x[:, 0] + 2 * t + rng.standard_normal(n) * 0.1
    return [[f"{a:.4f}", f"{b:.4f}", int(tt), f"{yy:.4f}"] for (a, b), tt, yy in zip(x, t, y)]


def test_estimate_prints_json(small_model, tmp_path, capsys):
    f = write_csv(tmp_path / "d.csv", ["age", "dose", "treated", "outcome"], good_rows())
    code = cina_main([ "estimate", str(f), "--treatment", "treated", "--outcome", "outcome", "--model", str(small_model), "--json"])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert out["covariates"] == ["age", "dose"] and out["n_units"] == 40
    assert np.isfinite(out["estimate"])
    assert {"ess_treated", "ess_control"} <= set(out["diagnostics"])


@pytest.mark.parametrize(
    "header, rows, args, message",
    [
        (["a", "t", "y"], None, ["--treatment", "T"], r"treatment column 'T' not found"),
        (["a", "t", "y"], None, ["--covariates", "b"], r"covariate column 'b' not found"),
        (["a", "t", "y"], "nonbinary", [], r"treatment column 't' must be binary 0/1, found \[2.0\]"),
        (["a", "t", "y"], "nan", [], r"column 'y', row 3: missing or non-finite value"),
        (["a", "t", "y"], "text", [], r"column 'a', row 4: 'abc' is not a number"),
        (["a", "t", "y"], "onearm", [], r"has an empty arm \(0 treated of 40\)"),
        (["a", "t", "y"], "few", [], r"only 5 units; at least 10 are needed"),
        (["a", "t", "y"], "ragged", [], r"row 2 has 2 fields, the header has 3"),
    ],
)
def test_estimate_error_paths(small_model, tmp_path, capsys, header, rows, args, message):
    base = [[r[0], r[2], r[3]] for r in good_rows()]
    if rows == "nonbinary":
        base[5][1] = 2
    elif rows == "nan":
        base[1][2] = "nan"
    elif rows == "text":
        base[2][0] = "abc"
    elif rows == "onearm":
        base = [[r[0], 0, r[2]] for r in base]
    elif rows == "few":
        base = base[:5]
    elif rows == "ragged":
        base[0] = base[0][:2]
    f = write_csv(tmp_path / "bad.csv", header, base)
    argv = ["estimate", str(f), "--treatment", "t", "--outcome", "y", "--model", str(small_model)]
    for i in range(0, len(args), 2):
        key = args[i]
        if key in argv:
            argv[argv.index(key) + 1] = args[i + 1]
        else:
            argv += args[i : i + 2]
    assert cina_main(argv) == 2
    err = capsys.readouterr().err
    assert "bad.csv" in err and len(err.strip().splitlines()) == 1
    import re

    assert re.search(message, err), err


def test_estimate_missing_file_and_bad_model(tmp_path, capsys):
    assert cina_main(["estimate", str(tmp_path / "none.csv"), "--treatment", "t", "--outcome", "y"]) == 2
    assert "no such file" in capsys.readouterr().err
    f = write_csv(tmp_path / "d.csv", ["a", "t", "y"], [[r[0], r[2], r[3]] for r in good_rows()])
    assert cina_main(["estimate", str(f), "--treatment", "t", "--outcome", "y", "--model", str(tmp_path)]) == 2
    assert "not a run directory" in capsys.readouterr().err


def test_estimate_with_the_shipped_default_model(tmp_path, capsys):
    f = write_csv(tmp_path / "d.csv", ["age", "dose", "treated", "outcome"], good_rows(60, seed=3))
    assert cina_main(["estimate", str(f), "--treatment", "treated", "--outcome", "outcome", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["model"].endswith("default_model") and np.isfinite(out["estimate"])


@pytest.mark.parametrize("name", ["default", "fast"])
def test_shipped_models_load_by_name_and_stay_small(tmp_path, capsys, monkeypatch, name):
    from cina.core import SHIPPED_MODELS, resolve_model

    path = resolve_model(name)
    assert path.name == SHIPPED_MODELS[name] and (path / "TRAINING.md").is_file()
    assert CInA.load(name).config.d_model == {"default": 64, "fast": 16}[name]
    assert sum(f.stat().st_size for f in path.iterdir()) < 10 * 2**20  # the size limit
    f = write_csv(tmp_path / "d.csv", ["age", "dose", "treated", "outcome"], good_rows(300, seed=5))
    monkeypatch.chdir(tmp_path)  # no local folder named like the model
    assert cina_main(["estimate", str(f), "--treatment", "treated", "--outcome", "outcome", "--model", name, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["model"].endswith(SHIPPED_MODELS[name]) and np.isfinite(out["estimate"])
    # a folder that exists wins over a shipped name
    (tmp_path / name).mkdir()
    assert cina_main(["estimate", str(f), "--treatment", "treated", "--outcome", "outcome", "--model", name]) == 2
    assert "not a run directory" in capsys.readouterr().err


def test_estimate_prints_readable_diagnostics(tmp_path, capsys):
    f = write_csv(tmp_path / "d.csv", ["age", "dose", "treated", "outcome"], good_rows(80, seed=4))
    assert cina_main(["estimate", str(f), "--treatment", "treated", "--outcome", "outcome"]) == 0
    text = capsys.readouterr().out
    for expected in ("ATE estimate:", "effective sample size, treated", "effective sample size, control",
                     "share of weight on the top 1% of units", "age:", "dose:"):
        assert expected in text, text
