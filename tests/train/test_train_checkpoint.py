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


def test_structure_record_is_replayed_on_load(tmp_path) -> None:
    """A changed module tree is rebuilt from the sidecar before the weights are loaded."""
    from deepshrink.graph import record, register_rebuilder, structure_of

    def shrink(model: nn.Module, entry: dict) -> None:  # 100 hidden units → entry["units"]
        model.fc2, model.fc3 = nn.Linear(300, entry["units"]), nn.Linear(entry["units"], 10)

    register_rebuilder("test.shrink_fc2")(shrink)
    model = zoo.create("lenet300").eval()
    shrink(model, {"units": 40})
    record(model, "test.shrink_fc2", units=40)
    path = save_checkpoint(model, tmp_path / "changed")
    with pytest.raises(FormatError, match="does not fit"):
        load_checkpoint(path, zoo.create("lenet5"))
    loaded, _ = load_checkpoint(path)
    assert structure_of(loaded) == [{"kind": "test.shrink_fc2", "units": 40}]
    (x,) = model.example_inputs(batch_size=3)
    assert torch.equal(loaded.eval()(x), model(x))


def test_unknown_structure_kind_is_a_format_error(tmp_path) -> None:
    from deepshrink.graph import record

    model = zoo.create("lenet300")
    record(model, "no.such.change")
    path = save_checkpoint(model, tmp_path / "m")
    with pytest.raises(FormatError, match="unknown structure change 'no.such.change'"):
        load_checkpoint(path)
