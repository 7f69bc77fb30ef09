"""TTLinear: forward equals the dense TT-matrix, full rank reproduces the layer, gradients flow.

Tolerance: fp32, atol 1e-4 on outputs.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from deepshrink.errors import ConfigError
from deepshrink.factorize import TTFactorization, TTLinear, factorize_, plan_factorization

ATOL = 1e-4


def test_forward_equals_the_dense_matrix_it_represents_to_atol_1e_4() -> None:
    torch.manual_seed(0)
    layer = TTLinear([2, 3, 4], [5, 1, 3], ranks=[3, 2])
    x = torch.randn(2, 3, 24)  # leading dimensions are kept
    expected = x @ layer.dense_weight().T + layer.bias
    assert layer(x).shape == (2, 3, 15)
    assert torch.allclose(layer(x), expected, atol=ATOL)


def test_full_rank_reproduces_a_dense_layer_to_atol_1e_4() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 300), nn.ReLU(), nn.Linear(300, 10))
    x = torch.randn(8, 1, 28, 28)
    expected = model(x)
    config = TTFactorization(
        input_modes=[4, 7, 4, 7], output_modes=[3, 4, 5, 5], ranks=None, policy="none"
    )
    factorize_(model, config)  # only layer 1 fits the modes
    assert isinstance(model[1], TTLinear) and isinstance(model[3], nn.Linear)
    assert model[1].ranks == (12, 336, 35)
    assert torch.allclose(model(x), expected, atol=ATOL)


def test_gradients_reach_every_core_and_the_bias() -> None:
    torch.manual_seed(0)
    layer = TTLinear([4, 4], [2, 8], ranks=3)
    dense = nn.Linear(16, 16)
    with torch.no_grad():
        dense.weight.copy_(layer.dense_weight())
        dense.bias.copy_(layer.bias)
    x = torch.randn(5, 16)
    layer(x).square().sum().backward()
    dense(x).square().sum().backward()
    assert all(core.grad is not None and core.grad.abs().sum() > 0 for core in layer.cores)
    assert torch.allclose(layer.bias.grad, dense.bias.grad, atol=ATOL)
    # chain rule through the TT-matrix: dL/dW from the cores equals the dense layer's gradient
    weight = layer.dense_weight()
    (grad,) = torch.autograd.grad(weight, list(layer.cores)[0], dense.weight.grad)
    assert torch.allclose(grad, list(layer.cores)[0].grad, atol=ATOL)


def test_random_init_has_the_dense_variance() -> None:
    torch.manual_seed(0)
    layer = TTLinear([10, 10, 10], [10, 10, 10], ranks=8)
    variance = float(layer.dense_weight().detach().var())
    assert variance == pytest.approx(1 / (3 * 1000), rel=0.2)


def test_tt_svd_init_and_random_init_from_config() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 64))
    low = TTFactorization(input_modes=[8, 8], output_modes=[8, 8], ranks=4, init="random")
    plan = plan_factorization(model, low)
    assert plan[0].accepted and plan[0].parameters_after == 2 * 8 * 8 * 4 + 64
    auto = plan_factorization(model, TTFactorization(order=3, ranks=2))[0]
    assert auto.details["input_modes"] == [4, 4, 4] and auto.details["ranks"] == [2, 2]


@pytest.mark.parametrize(
    ("input_modes", "output_modes", "message"),
    [
        ([4, 7, 4, 8], [3, 4, 5, 5], r"0: input_modes \[4, 7, 4, 8\] multiply to 896, but the "
         r"layer has 784 input features; .* e\.g\. \[4, 4, 7, 7\]"),
        ([4, 7, 4, 7], [3, 4, 5, 4], r"0: output_modes \[3, 4, 5, 4\] multiply to 240, but the "
         r"layer has 300 output features; .* e\.g\. \[3, 4, 5, 5\]"),
    ],
)  # fmt: skip
def test_mode_products_must_match_the_layer(input_modes, output_modes, message: str) -> None:
    model = nn.Sequential(nn.Linear(784, 300))
    config = TTFactorization(input_modes=input_modes, output_modes=output_modes)
    with pytest.raises(ConfigError, match=message):
        factorize_(model, config, include="0")
    with pytest.raises(ConfigError, match="no Linear layer fits TTFactorization"):
        factorize_(model, config)
    assert isinstance(model[0], nn.Linear)


def test_tt_modes_of_another_size_are_refused_by_from_linear() -> None:
    with pytest.raises(ConfigError, match="784 → 240 layer, but the layer is 784 → 300"):
        TTLinear.from_linear(nn.Linear(784, 300), [4, 7, 4, 7], [3, 4, 5, 4])


def test_bad_tt_ranks_and_modes() -> None:
    with pytest.raises(ConfigError, match=r"TT rank 30 at boundary 1 must be in \[1, 20\]"):
        TTLinear([4, 7], [5, 6], ranks=[30])
    with pytest.raises(ConfigError, match="must list 1 inner TT-ranks"):
        TTLinear([4, 7], [5, 6], ranks=[3, 3])
    with pytest.raises(ConfigError, match="same, non-zero length"):
        TTLinear([4, 7], [30], ranks=2)
    with pytest.raises(ConfigError, match="output_modes must be 2 positive integers"):
        TTFactorization(input_modes=[4, 7], output_modes=[2, 3, 5])
    model = nn.Sequential(nn.Linear(28, 30))
    config = TTFactorization(input_modes=[4, 7], output_modes=[5, 6], ranks=(30,))
    with pytest.raises(ConfigError, match=r"^0: TT rank 30 at boundary 1 must be in \[1, 20\]"):
        factorize_(model, config)
