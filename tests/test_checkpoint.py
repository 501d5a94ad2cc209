"""Model files are checked on load: finite weights of sane magnitude, the tensors' checksums,
config.json against the config saved inside the weights, malformed files as one-line errors."""

import json
import re

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from cina import CInA
from cina.cli import main as cina_main
from cina.core.checkpoint import MAX_ABS_WEIGHT, ModelFileError, read_model, shipped_model_path, tensor_checksums

TINY = dict(max_features=4, d_model=16, n_heads=2, n_layers=1, n_value_layers=1, key_dim=4, refine_steps=5)


@pytest.fixture
def saved(tmp_path):
    torch.manual_seed(0)
    model = CInA(**TINY)
    path = tmp_path / "m"
    model.save(path)
    return model, path


def _metadata(path):
    with safe_open(str(path), framework="pt") as f:
        return f.metadata()


def _rewrite(weights_file, edit, metadata=None):
    """Write the file again with `edit(state)` applied, keeping (or replacing) its metadata."""
    state = load_file(str(weights_file))
    meta = _metadata(weights_file) if metadata is None else metadata
    edit(state)
    save_file(state, str(weights_file), metadata=meta)


def _one_line_error(path, match, capsys):
    with pytest.raises(ModelFileError, match=match) as info:
        CInA.load(path)
    assert "\n" not in str(info.value)
    assert isinstance(info.value, ValueError)  # the CLI's exit 2
    # and the CLI says the same in one line
    csv = path.parent / "d.csv"
    rng = np.random.default_rng(0)
    rows = ["a,t,y"] + [f"{rng.standard_normal():.4f},{i % 2},{rng.standard_normal():.4f}" for i in range(20)]
    csv.write_text("\n".join(rows) + "\n")
    assert cina_main(["estimate", str(csv), "--treatment", "t", "--outcome", "y", "--model", str(path)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and re.search(match, err), err


def test_saved_files_carry_checksums_of_every_tensor(saved):
    model, path = saved
    meta = json.loads(_metadata(path / "model.safetensors")["cina"])
    assert meta["config"] == model.config.to_dict()
    assert meta["tensors_sha256"] == tensor_checksums(model.state_dict())
    assert set(meta["tensors_sha256"]) == set(model.state_dict())
    # config.json stays the human-readable config, without the checksums
    assert "tensors_sha256" not in json.loads((path / "config.json").read_text())


@pytest.mark.parametrize("value, what", [(float("nan"), "non-finite"), (float("inf"), "non-finite"),
                                         (1e30, "magnitude")])
def test_a_bad_weight_is_refused(saved, capsys, value, what):
    _, path = saved
    weights = path / "model.safetensors"
    # written without checksums (a file from before they existed): the value check alone must catch it
    meta = json.loads(_metadata(weights)["cina"])
    del meta["tensors_sha256"]

    def poison(state):
        state["input_proj.weight"][0, 0] = value

    _rewrite(weights, poison, {"cina": json.dumps(meta)})
    _one_line_error(path, rf"model.safetensors: tensor 'input_proj.weight' has (1 non-finite value|\|w\| up to 1e\+30)", capsys)
    assert MAX_ABS_WEIGHT == 1e6


def test_an_edited_tensor_fails_its_checksum(saved, capsys):
    _, path = saved

    def nudge(state):
        state["input_proj.weight"][0, 0] += 1e-3

    _rewrite(path / "model.safetensors", nudge)
    _one_line_error(path, r"model.safetensors: tensor 'input_proj.weight' does not match the sha256 recorded", capsys)


def test_a_missing_tensor_is_named(saved, capsys):
    _, path = saved
    _rewrite(path / "model.safetensors", lambda state: state.pop("value_norm.bias"))
    _one_line_error(path, r"model.safetensors: tensor 'value_norm.bias' is missing", capsys)
    # also without checksums: the network's own list of tensors
    meta = json.loads(_metadata(path / "model.safetensors")["cina"])
    del meta["tensors_sha256"]
    _rewrite(path / "model.safetensors", lambda state: None, {"cina": json.dumps(meta)})
    _one_line_error(path, r"model.safetensors: tensor 'value_norm.bias' is missing", capsys)


def test_an_edited_config_json_is_refused_naming_the_field(saved, capsys):
    _, path = saved
    cfg = json.loads((path / "config.json").read_text())
    cfg["config"]["refine_steps"] = 0
    (path / "config.json").write_text(json.dumps(cfg))
    _one_line_error(path, r"config.json: refine_steps is 0 but the weights were saved with 5", capsys)
    (path / "config.json").write_text("{not json")
    _one_line_error(path, r"config.json: not valid JSON", capsys)


@pytest.mark.parametrize("kind", ["truncated", "random", "json", "empty"])
def test_malformed_weight_files_give_one_line(saved, capsys, kind):
    _, path = saved
    weights = path / "model.safetensors"
    raw = weights.read_bytes()
    weights.write_bytes({
        "truncated": raw[: len(raw) // 2],
        "random": np.random.default_rng(0).bytes(4096),
        "json": (path / "config.json").read_bytes(),
        "empty": b"",
    }[kind])
    _one_line_error(path, r"model.safetensors: not a readable safetensors file", capsys)


def test_a_lone_safetensors_file_is_checked_too(saved, capsys, tmp_path):
    model, _ = saved
    f = model.save(tmp_path / "lone.safetensors")
    (tmp_path / "lone.json").unlink()
    assert CInA.load(f).config == model.config
    _rewrite(f, lambda state: state["input_proj.bias"].add_(1.0))
    _one_line_error(f, r"lone.safetensors: tensor 'input_proj.bias' does not match", capsys)


@pytest.mark.parametrize("name", ["default", "fast"])
def test_shipped_models_carry_checksums_and_pass_the_checks(name):
    path = shipped_model_path(name) / "model.safetensors"
    meta = json.loads(_metadata(path)["cina"])
    state = load_file(str(path))
    assert meta["tensors_sha256"] == tensor_checksums(state)
    config, loaded = read_model(name)
    assert config == meta["config"] and set(loaded) == set(state)
