"""SVD of Linear layers: full rank reproduces the layer; ranks chosen exactly; policy; errors.

Tolerance: fp32 layers, outputs compared with atol 1e-4 (the SVD runs in fp64, so the observed
difference is about 1e-6).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from deepshrink.errors import ConfigError
from deepshrink.factorize import SVDFactorization, SVDLinear, factorize_, plan_factorization, sweep

ATOL = 1e-4


def layer_with_spectrum(values: list[float], out_features: int, in_features: int) -> nn.Linear:
    generator = torch.Generator().manual_seed(0)
    u, _ = torch.linalg.qr(torch.randn(out_features, len(values), generator=generator))
    v, _ = torch.linalg.qr(torch.randn(in_features, len(values), generator=generator))
    layer = nn.Linear(in_features, out_features)
    with torch.no_grad():
        layer.weight.copy_(u @ torch.diag(torch.tensor(values)) @ v.T)
    return layer


@pytest.mark.parametrize("bias", [True, False])
def test_full_rank_reproduces_the_layer_to_atol_1e_4(bias: bool) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(20, 12, bias=bias), nn.ReLU(), nn.Linear(12, 3))
    x = torch.randn(16, 20)
    expected = model(x)
    factorize_(model, SVDFactorization(rank=12, policy="none"), include="0")
    assert isinstance(model[0], SVDLinear)
    assert (model[0][1].bias is not None) == bias
    assert torch.allclose(model(x), expected, atol=ATOL)


def test_reconstruction_error_decreases_with_rank() -> None:
    torch.manual_seed(0)
    layer = nn.Linear(24, 16)
    configs = [SVDFactorization(rank=rank) for rank in (1, 2, 4, 8, 16)]
    points = sweep(layer, configs, latency=False)[1:]
    errors = [point.error for point in points]
    assert errors == sorted(errors, reverse=True)
    assert errors[-1] < 1e-5
    assert [point.parameters for point in points] == [r * 40 + 16 for r in (1, 2, 4, 8, 16)]


def test_energy_and_compression_pick_the_exact_rank() -> None:
    layer = layer_with_spectrum([4.0, 3.0, 2.0, 1.0], 10, 40)  # energies 16, 9, 4, 1 of 30
    model = nn.Sequential(layer)
    plan = plan_factorization(model, SVDFactorization(energy=25 / 30))
    assert plan[0].details["rank"] == 2
    plan = plan_factorization(model, SVDFactorization(energy=25 / 30 + 1e-4))
    assert plan[0].details["rank"] == 3
    # 400 weights; rank r costs 50 r: compression 2.5 → budget 160 → rank 3
    plan = plan_factorization(model, SVDFactorization(compression=2.5))
    assert plan[0].details["rank"] == 3
    assert plan[0].parameters_after == 3 * 50 + 10


def test_rank_above_min_features_is_a_clear_error() -> None:
    model = nn.Sequential(nn.Linear(20, 12))
    with pytest.raises(ConfigError, match=r"0: rank 13 is larger than min\(in_features, "):
        factorize_(model, SVDFactorization(rank=13))
    assert isinstance(model[0], nn.Linear)


def test_smaller_policy_refuses_a_factorization_that_grows_the_layer() -> None:
    model = nn.Sequential(nn.Linear(20, 12), nn.ReLU(), nn.Linear(12, 12))
    # rank 8: layer 0 needs 8·32 + 12 = 268 > 252 dense, layer 2 8·24 + 12 = 204 > 156 dense
    plan = plan_factorization(model, SVDFactorization(rank=8))
    assert [decision.accepted for decision in plan] == [False, False]
    assert plan[0].reason == "not smaller: 268 parameters vs 252 dense"
    factorize_(model, SVDFactorization(rank=4))  # 4·32 + 12 = 140 < 252; 4·24 + 12 = 108 < 156
    assert isinstance(model[0], SVDLinear) and isinstance(model[2], SVDLinear)
    model = nn.Sequential(nn.Linear(20, 12))
    factorize_(model, SVDFactorization(rank=8, policy="none"))
    assert isinstance(model[0], SVDLinear)


def test_min_params_leaves_small_layers_alone() -> None:
    model = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 4))
    plan = plan_factorization(model, SVDFactorization(rank=2, min_params=1000))
    assert [d.accepted for d in plan] == [True, False]
    assert plan[1].reason == "skipped: 256 weights < min_params=1000"


def test_plan_leaves_the_model_unchanged_and_layers_are_not_refactorized() -> None:
    model = nn.Sequential(nn.Linear(64, 64))
    plan_factorization(model, SVDFactorization(rank=2))
    assert isinstance(model[0], nn.Linear)
    factorize_(model, SVDFactorization(rank=2))
    with pytest.raises(ConfigError, match="no Linear layer to factorize"):
        factorize_(model, SVDFactorization(rank=1))
