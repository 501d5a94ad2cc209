"""Regenerate tests/golden/sampler.json: pinned outputs of every preset.

Run this only when a change to the sampler's numerics is intended, and say so in
the commit message; tests/test_golden.py compares against the file.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

import causalgen

SEEDS = (0, 1, 7)
OUT = Path(__file__).resolve().parents[1] / "tests" / "golden" / "sampler.json"


def fingerprint(task: causalgen.Task) -> dict:
    """Exact structure and treatment, plus enough floats to pin the numerics."""
    return {
        "edges": np.argwhere(task.adjacency).tolist(),
        "n_nodes": task.n_nodes,
        "roles": task.roles.tolist(),
        "covariate_nodes": task.covariate_nodes.tolist(),
        "t": np.packbits(task.t.astype(np.uint8)).tolist(),
        "n_units": task.n_units,
        "identifiable": task.identifiable,
        "x_head": task.x[:3].tolist(),
        "x_mean": task.x.astype(np.float64).mean(0).tolist(),
        "y_head": task.y[:5].tolist(),
        "y1_head": task.y1[:5].tolist(),
        "propensity_head": task.propensity[:5].tolist(),
        "ate": task.ate,
        "sate": task.sate,
        "att": task.att,
    }


def main(argv=None) -> None:
    """All presets, or only those named on the command line (the others keep their entries:
    a machine's last-bit differences in transcendental functions then stay out of the diff)."""
    import sys

    names = (sys.argv[1:] if argv is None else argv) or list(causalgen.PRESETS)
    golden = json.loads(OUT.read_text()) if OUT.exists() and names != list(causalgen.PRESETS) else {}
    for preset in names:
        golden[preset] = {str(s): fingerprint(causalgen.sample_task(preset, s)) for s in SEEDS}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(golden, indent=1) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
