"""Checkpoints: save → load gives identical outputs; malformed files give clear errors."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from deepshrink import zoo
from deepshrink.errors import ConfigError, DeepshrinkError, FormatError
from deepshrink.train import load_checkpoint, read_sidecar, save_checkpoint


@pytest.mark.parametrize("name", ["lenet5", "resnet20"])
def test_save_load_gives_identical_outputs(tmp_path, name: str) -> None:
    torch.manual_seed(0)
    model = zoo.create(name).eval()
    with torch.no_grad():  # move BN running stats away from their defaults
        for buffer in model.buffers():
            if buffer.is_floating_point():
                buffer.uniform_(0.5, 1.5)
    path = save_checkpoint(model, tmp_path / name, metadata={"note": "x"})
    loaded, sidecar = load_checkpoint(path)
    loaded.eval()
    (x,) = model.example_inputs(batch_size=4)
    assert torch.equal(model(x), loaded(x))
    assert sidecar["arch"] == {"name": name, "kwargs": zoo.arch_of(model)["kwargs"]}
    assert sidecar["metadata"] == {"note": "x"}
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{name}.json", f"{name}.safetensors"]


def test_model_outside_the_zoo_needs_a_target(tmp_path) -> None:
    model = nn.Linear(3, 2)
    path = save_checkpoint(model, tmp_path / "linear.safetensors")
    with pytest.raises(ConfigError, match="outside the zoo"):
        load_checkpoint(path)
    target = nn.Linear(3, 2)
    load_checkpoint(path, target)
    assert torch.equal(target.weight, model.weight)


def test_shared_tensors_are_saved(tmp_path) -> None:
    a = nn.Linear(2, 2, bias=False)
    model = nn.Sequential(a, a)
    path = save_checkpoint(model, tmp_path / "tied")
    target = nn.Sequential(nn.Linear(2, 2, bias=False), nn.Linear(2, 2, bias=False))
    load_checkpoint(path, target)
    assert torch.equal(target[1].weight, a.weight)


def test_missing_and_malformed_sidecars(tmp_path) -> None:
    path = save_checkpoint(nn.Linear(2, 2), tmp_path / "m")
    side = tmp_path / "m.json"
    side.write_text("{not json")
    with pytest.raises(FormatError, match="m.json is not valid JSON"):
        read_sidecar(path)
    side.write_text(json.dumps({"format": "deepshrink-checkpoint", "version": 99}))
    with pytest.raises(FormatError, match="version 99"):
        read_sidecar(path)
    side.write_text(json.dumps({"hello": 1}))
    with pytest.raises(FormatError, match="not a deepshrink checkpoint"):
        read_sidecar(path)
    side.unlink()
    with pytest.raises(DeepshrinkError, match="m.json does not exist"):
        read_sidecar(path)


def test_truncated_or_mismatched_tensors(tmp_path) -> None:
    path = save_checkpoint(zoo.create("lenet300"), tmp_path / "m")
    with pytest.raises(FormatError, match="does not fit the model"):
        load_checkpoint(path, zoo.create("lenet5"))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(FormatError, match="not a readable safetensors file"):
        load_checkpoint(path)
