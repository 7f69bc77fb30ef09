"""save / load: zoo and other models come back bit-identical; masks, structure records, errors."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import deepshrink as ds
import deepshrink.prune as dp
from deepshrink.encode import read
from deepshrink.errors import ConfigError, DeepshrinkError, FormatError


def _randomise_buffers(model: nn.Module) -> None:
    with torch.no_grad():
        for buffer in model.buffers():
            if buffer.is_floating_point():
                buffer.uniform_(0.5, 1.5)


@pytest.mark.parametrize("name", ["lenet5", "resnet20"])
def test_zoo_models_load_back_with_identical_outputs(tmp_path, name) -> None:
    torch.manual_seed(0)
    model = ds.zoo.create(name).eval()
    _randomise_buffers(model)
    before = copy.deepcopy(model.state_dict())
    path = ds.save(model, tmp_path / f"{name}.dsz", metadata={"note": "x"})
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # not mutated
    loaded = ds.load(path).eval()
    (x,) = model.example_inputs(batch_size=3)
    assert torch.equal(model(x), loaded(x))
    assert read(path).header["metadata"] == {"note": "x"}
    assert [p.name for p in tmp_path.iterdir()] == [f"{name}.dsz"]  # no temporary file left


def test_pruned_and_shared_weights_are_small_and_exact(tmp_path) -> None:
    torch.manual_seed(0)
    model = ds.zoo.create("lenet300").eval()
    ds.prune_(model, ds.MagnitudePruning(sparsity=0.9))
    masked = ds.save(model, tmp_path / "masked.dsz")
    loaded = ds.load(masked)
    assert [n for n, *_ in dp.iter_masks(loaded)] == [n for n, *_ in dp.iter_masks(model)]
    x = torch.randn(4, 1, 28, 28)
    assert torch.equal(model(x), loaded(x))
    plain = ds.save(ds.finalize_(model), tmp_path / "plain.dsz")
    assert torch.equal(model(x), ds.load(plain)(x))
    dense = 4 * sum(p.numel() for p in model.parameters())
    # masks that equal weight != 0 cost nothing beyond their header entries
    assert masked.stat().st_size - plain.stat().st_size < 200
    assert plain.stat().st_size < dense / 6


def test_neuron_pruned_model_is_rebuilt_from_its_structure_record(tmp_path) -> None:
    torch.manual_seed(0)
    model = ds.zoo.create("lenet300").eval()
    ds.prune_(model, ds.NeuronPruning(ratio=0.5))
    loaded = ds.load(ds.save(model, tmp_path / "n.dsz"))
    assert loaded.fc1.out_features == model.fc1.out_features < 300
    x = torch.randn(2, 1, 28, 28)
    assert torch.equal(model(x), loaded(x))


def test_models_outside_the_zoo_load_into_a_given_module(tmp_path) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(64, 2))
    _randomise_buffers(model)
    path = ds.save(model.eval(), tmp_path / "custom.dsz")
    with pytest.raises(ConfigError, match="outside the zoo"):
        ds.load(path)
    target = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(64, 2))
    assert ds.load(path, model=target) is target
    x = torch.randn(2, 3, 6, 6)
    assert torch.equal(model(x), target.eval()(x))
    with pytest.raises(FormatError, match="does not fit"):
        ds.load(path, model=nn.Linear(2, 2))


def test_missing_file_unsupported_dtype_and_bad_arch(tmp_path, dsz) -> None:
    with pytest.raises(DeepshrinkError, match="does not exist"):
        ds.load(tmp_path / "nothing.dsz")
    holder = nn.Module()
    holder.register_buffer("c", torch.zeros(2, dtype=torch.complex64))
    with pytest.raises(ConfigError, match="complex64"):
        ds.save(holder, tmp_path / "c.dsz")
    path = ds.save(ds.zoo.create("lenet300"), tmp_path / "m.dsz")
    for arch in ({"name": "lenet300", "kwargs": {"wrong": 1}}, {"name": 3}):
        edited = dsz.with_header(path.read_bytes(), lambda h, arch=arch: h.update(arch=arch))
        path.write_bytes(edited)
        with pytest.raises(FormatError, match="arch|rebuilt"):
            ds.load(path)


def test_state_entries_that_are_not_tensors_are_refused(tmp_path) -> None:
    class Odd(nn.Linear):
        def state_dict(self, *args, **kwargs):  # type: ignore[override]
            return {**super().state_dict(*args, **kwargs), "packed": (1, 2)}

    with pytest.raises(ConfigError, match="'packed' is a tuple"):
        ds.save(Odd(2, 2), tmp_path / "odd.dsz")
