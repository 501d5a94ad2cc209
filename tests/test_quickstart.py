"""The README's main job, end to end through the real command-line tools, at the CI size."""

import csv
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_quickstart_tiny_runs_every_stage(tmp_path):
    out = tmp_path / "qs"
    res = subprocess.run([sys.executable, str(ROOT / "scripts" / "quickstart.py"), "--out", str(out), "--size", "tiny"],
                         capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    for stage in ("1. generate", "2. verify", "3. publish", "4. load the published dataset", "5. pretrain", "6. zero-shot"):
        assert stage in res.stdout
    assert (out / "hf_dataset" / "README.md").is_file()
    assert (out / "run" / "model" / "model.safetensors").is_file()
    with (out / "eval" / "results.csv").open() as f:
        rows = list(csv.DictReader(f))
    zs = [r for r in rows if r["estimator"] == "cina-zs"]
    assert zs and all(r["error"] == "" for r in zs)
    assert {"synthetic-id", "synthetic-ood"} <= {r["suite"] for r in rows}
    assert (out / "eval" / "summary.md").read_text().count("cina-zs") >= 2
    # re-running resumes: nothing is recomputed and it still succeeds
    again = subprocess.run([sys.executable, str(ROOT / "scripts" / "quickstart.py"), "--out", str(out), "--size", "tiny"],
                           capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stderr[-3000:]
    with (out / "eval" / "results.csv").open() as f:
        assert len(list(csv.DictReader(f))) == len(rows)
