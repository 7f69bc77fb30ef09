"""Neuron pruning: masked == physically pruned, save/load rebuilds the shapes, layer selection."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from deepshrink import zoo
from deepshrink.errors import ConfigError
from deepshrink.eval import count_parameters
from deepshrink.graph import structure_of
from deepshrink.prune import MagnitudePruning, NeuronPruning, finalize_, iter_masks, prune_
from deepshrink.prune.neuron import linear_successors
from deepshrink.train import fit, load_checkpoint, save_checkpoint

from .conftest import tiny_mlp


@pytest.mark.parametrize("activation", [nn.ReLU, nn.Tanh, nn.Sigmoid, nn.GELU])
@pytest.mark.parametrize("criterion", ["l2", "l1", "random"])
def test_masked_equals_physically_pruned(activation, criterion, inputs) -> None:
    physical, masked = tiny_mlp(activation), tiny_mlp(activation)
    config = NeuronPruning(ratio=0.5, criterion=criterion, overrides={"3": 0.25})
    prune_(physical, config)
    prune_(masked, config.model_copy(update={"physical": False}))
    assert (physical[1].out_features, physical[3].in_features, physical[3].out_features) == (
        12,
        12,
        9,
    )
    assert physical[5].in_features == 9
    torch.testing.assert_close(physical(inputs), masked(inputs), rtol=1e-5, atol=1e-6)


def test_lenet300_masked_equals_physical_and_shrinks() -> None:
    physical = zoo.create("lenet300")
    masked = copy.deepcopy(physical)
    prune_(physical, NeuronPruning(ratio=0.9))
    prune_(masked, NeuronPruning(ratio=0.9, physical=False))
    (x,) = physical.example_inputs(batch_size=5)
    torch.testing.assert_close(physical(x), masked(x), rtol=1e-5, atol=1e-6)
    assert (physical.fc1.out_features, physical.fc2.out_features) == (30, 10)
    assert count_parameters(physical) == 784 * 30 + 30 + 30 * 10 + 10 + 10 * 10 + 10


def test_the_units_with_the_largest_norm_survive() -> None:
    model = tiny_mlp()
    norms = model[1].weight.detach().norm(dim=1)
    kept_rows = norms.argsort(descending=True)[:12].sort().values
    expected = model[1].weight.detach()[kept_rows].clone()
    prune_(model, NeuronPruning(ratio=0.5), include="1")
    assert torch.equal(model[1].weight, expected)


def test_ratio_zero_gives_identical_outputs(mlp, inputs) -> None:
    reference = mlp(inputs)
    prune_(mlp, NeuronPruning(ratio=0.0))
    assert torch.equal(mlp(inputs), reference)


def test_save_load_rebuilds_the_pruned_shapes(tmp_path) -> None:
    model = zoo.create("mlp_fc4")
    prune_(model, NeuronPruning(ratio=0.75, overrides={"fc4": 0.5}))
    path = save_checkpoint(model, tmp_path / "neurons")
    loaded, _ = load_checkpoint(path)
    assert structure_of(loaded) == structure_of(model)
    assert [loaded.get_submodule(f"fc{i}").out_features for i in range(1, 5)] == [
        250,
        250,
        125,
        100,
    ]
    (x,) = model.example_inputs(batch_size=3)
    assert torch.equal(loaded.eval()(x), model.eval()(x))


def test_weight_masks_survive_neuron_pruning_and_checkpoints(tmp_path, tiny_data) -> None:
    model = zoo.create("lenet300")
    prune_(model, MagnitudePruning(sparsity=0.8))
    prune_(model, NeuronPruning(ratio=0.5))
    assert model.fc1.weight_mask.shape == (150, 784)
    assert model.fc2.weight_mask.shape == (50, 150)
    (x,) = model.example_inputs(batch_size=3)
    path = save_checkpoint(model, tmp_path / "both")
    loaded, _ = load_checkpoint(path)
    assert torch.equal(loaded.eval()(x), model.eval()(x))
    data = type(tiny_data)(torch.rand(32, 1, 28, 28), torch.randint(0, 10, (32,)))
    fit(loaded, data, epochs=1, batch_size=16, progress=False)
    for _, module, name, mask in iter_masks(loaded):
        assert (getattr(module, name)[~mask] == 0).all()
    reference = loaded(x)
    assert torch.equal(finalize_(loaded)(x), reference)
    assert [e["kind"] for e in structure_of(loaded)] == ["prune.neurons"]


def test_successors_follow_elementwise_ops_only() -> None:
    class Branchy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b, self.c = nn.Linear(4, 4), nn.Linear(4, 4), nn.Linear(4, 2)
            self.norm = nn.LayerNorm(4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = torch.relu(self.a(x))
            return self.c(self.norm(self.b(h)))

    successors, unavailable = linear_successors(Branchy())
    assert successors == {"a": "b"}
    assert set(unavailable) == {"b", "c"}
    assert "output" in unavailable["c"]


def test_the_classifier_cannot_be_neuron_pruned(mlp) -> None:
    with pytest.raises(ConfigError, match=r"'5' \(its output is the model's output\)"):
        prune_(mlp, NeuronPruning(ratio=0.5), include="5")


def test_an_untraceable_model_gives_a_clear_error() -> None:
    class Dynamic(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Linear(2, 2), nn.Linear(2, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.b(self.a(x)) if x.sum() > 0 else x

    with pytest.raises(ConfigError, match="torch.fx trace"):
        prune_(Dynamic(), NeuronPruning(ratio=0.5))
