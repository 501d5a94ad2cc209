"""Golden outputs: the graph, roles and treatment vector exactly, floats to 1e-6.

Transcendental functions may differ in the last bits across CPUs, hence allclose
for floats; within one machine `test_sampler.py` checks bit-identity. If the
sampler's numerics change on purpose, regenerate with scripts/make_golden.py.
"""

import json
import sys
from pathlib import Path

import numpy as np
import pytest

import causalgen

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
from make_golden import SEEDS, fingerprint  # noqa: E402

GOLDEN = json.loads((ROOT / "tests" / "golden" / "sampler.json").read_text())
EXACT = ("edges", "n_nodes", "roles", "covariate_nodes", "t", "n_units", "identifiable")


@pytest.mark.parametrize("preset", sorted(causalgen.PRESETS))
def test_preset_matches_golden(preset):
    assert preset in GOLDEN, f"no golden entry for preset {preset}: run scripts/make_golden.py"
    for seed in SEEDS:
        got = fingerprint(causalgen.sample_task(preset, seed))
        want = GOLDEN[preset][str(seed)]
        for key in EXACT:
            assert got[key] == want[key], f"{preset} seed {seed}: {key} differs"
        for key in set(want) - set(EXACT):
            np.testing.assert_allclose(got[key], want[key], rtol=1e-6, atol=1e-6, err_msg=f"{preset} seed {seed}: {key}")
