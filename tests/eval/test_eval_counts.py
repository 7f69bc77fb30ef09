"""Parameter, non-zero and MAC counts against values computed by hand."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize, prune

from deepshrink.eval import count_macs, count_nonzero, count_parameters, per_layer_macs


def tiny_cnn() -> nn.Sequential:
    # (1, 1, 6, 6) → conv 3×3 → (1, 2, 4, 4) → flatten 32 → linear → 3
    return nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 4 * 4, 3))


def test_parameters_of_tiny_cnn() -> None:
    # conv: 2 filters × 1 × 3 × 3 + 2 biases = 20; linear: 32 × 3 + 3 = 99
    assert count_parameters(tiny_cnn()) == 119


def test_macs_of_tiny_cnn() -> None:
    # conv: 2 output channels × 16 positions × 9 taps = 288; linear: 32 × 3 = 96
    assert count_macs(tiny_cnn(), (torch.rand(1, 1, 6, 6),)) == 384


def test_macs_scale_with_the_given_batch() -> None:
    assert count_macs(tiny_cnn(), torch.rand(4, 1, 6, 6)) == 4 * 384


def test_per_layer_macs_of_tiny_cnn() -> None:
    model = tiny_cnn()
    layers = per_layer_macs(model, torch.rand(1, 1, 6, 6))
    assert layers == {"0": 288, "3": 96}
    assert sum(layers.values()) == count_macs(model, torch.rand(1, 1, 6, 6))


class Mixed(nn.Module):
    """Own ops in forward, a nested child, and two Linear layers sharing one weight."""

    def __init__(self) -> None:
        super().__init__()
        self.first = nn.Linear(4, 4)
        self.second = nn.Linear(4, 4)
        self.second.weight = self.first.weight
        self.head = nn.Sequential(nn.Linear(4, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = self.second(self.first(x))
        hidden = hidden @ torch.ones(4, 4)  # 16 MACs in the parent's own forward
        return self.head(hidden)


def test_per_layer_macs_are_exclusive_and_sum_to_total() -> None:
    model = Mixed()
    layers = per_layer_macs(model, torch.zeros(1, 4))
    assert layers == {"": 16, "first": 16, "second": 16, "head.0": 8}
    assert sum(layers.values()) == count_macs(model, torch.zeros(1, 4)) == 56


def test_module_called_twice_accumulates() -> None:
    layer = nn.Linear(4, 4)
    model = nn.Sequential(layer, nn.ReLU(), layer)
    assert per_layer_macs(model, torch.zeros(1, 4)) == {"0": 32}
    assert count_parameters(model) == 20


def test_shared_parameter_counted_once() -> None:
    model = Mixed()
    # first: 16 + 4, second: 4 (weight shared), head: 8 + 2
    assert count_parameters(model) == 34
    assert count_nonzero(model) == 34


def test_nonzero_counts_zeroed_weights() -> None:
    model = tiny_cnn()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.fill_(0.5)
        model[0].weight[0] = 0  # one 3×3 filter: 9 zeros
        model[3].bias.zero_()  # 3 zeros
    assert count_nonzero(model) == 119 - 9 - 3


def test_nonzero_uses_pruning_mask() -> None:
    layer = nn.Linear(4, 3)
    with torch.no_grad():
        layer.weight.fill_(1.0)
        layer.bias.fill_(1.0)
    mask = torch.ones(3, 4)
    mask[0, :] = 0
    mask[1, 0] = 0
    prune.custom_from_mask(layer, "weight", mask)
    assert hasattr(layer, "weight_orig") and hasattr(layer, "weight_mask")
    assert count_parameters(layer) == 15  # weight_orig + bias; the mask is a buffer
    assert count_nonzero(layer) == 12 - 5 + 3


def test_nonzero_uses_parametrized_tensor() -> None:
    class KeepFirstRow(nn.Module):
        def forward(self, weight: torch.Tensor) -> torch.Tensor:
            mask = torch.zeros_like(weight)
            mask[0] = 1
            return weight * mask

    layer = nn.Linear(4, 3)
    with torch.no_grad():
        layer.weight.fill_(1.0)
        layer.bias.fill_(1.0)
    parametrize.register_parametrization(layer, "weight", KeepFirstRow())
    assert count_parameters(layer) == 15
    assert count_nonzero(layer) == 4 + 3


def test_counting_macs_changes_no_state() -> None:
    model = nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3), nn.Dropout())
    model[2].eval()
    before = model[1].running_mean.clone()
    assert count_macs(model, torch.rand(8, 3)) == 8 * 9
    assert model.training and model[1].training and not model[2].training
    assert torch.equal(model[1].running_mean, before)


def test_several_inputs() -> None:
    class Pair(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.left = nn.Linear(2, 5)
            self.right = nn.Linear(3, 5)

        def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            return self.left(a) + self.right(b)

    assert count_macs(Pair(), (torch.zeros(1, 2), torch.zeros(1, 3))) == 10 + 15


def test_bad_example_inputs() -> None:
    with pytest.raises(ValueError, match="example_inputs must be"):
        count_macs(nn.Linear(2, 2), 3)  # type: ignore[arg-type]
