"""Separable, Tucker-2 and CP convolutions against the dense convolution they replace.

Tolerance: fp32 convolutions, outputs compared with atol 1e-4 (decompositions run in fp64).
Full rank is exact for separable and Tucker-2. CP has no "full rank" that ALS is sure to reach,
so its oracle is a kernel built with a known CP rank, recovered at that rank (outputs equal to
atol 1e-4 × max |output|, as ALS converges to a tolerance relative to the kernel's scale), plus
the check that the four layers apply exactly the kernel their factors represent (atol 1e-4).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from deepshrink.errors import ConfigError
from deepshrink.factorize import (
    CPConv2d,
    CPFactorization,
    SeparableConv2d,
    SeparableFactorization,
    TuckerConv2d,
    TuckerFactorization,
    cp_conv,
    factorize_,
    plan_factorization,
    sweep,
)

ATOL = 1e-4


def odd_conv(bias: bool = True) -> nn.Conv2d:
    """A convolution with every hyper-parameter away from its default."""
    torch.manual_seed(0)
    return nn.Conv2d(5, 7, (3, 5), stride=(2, 1), padding=(1, 2), dilation=(1, 2), bias=bias)


def inputs() -> torch.Tensor:
    return torch.randn(2, 5, 11, 13, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize(
    ("config", "module_type"),
    [
        (SeparableFactorization(rank=15, policy="none"), SeparableConv2d),  # min(5·3, 7·5)
        (TuckerFactorization(ranks=(7, 5), policy="none"), TuckerConv2d),
    ],
)
@pytest.mark.parametrize("bias", [True, False])
def test_full_rank_reproduces_the_convolution_to_atol_1e_4(config, module_type, bias: bool) -> None:
    model = nn.Sequential(odd_conv(bias), nn.ReLU())
    x = inputs()
    expected = model(x)
    factorize_(model, config)
    assert isinstance(model[0], module_type)
    assert torch.allclose(model(x), expected, atol=ATOL)


def test_cp_at_the_kernel_rank_reproduces_the_convolution_to_1e_4_of_its_range() -> None:
    conv = odd_conv()
    generator = torch.Generator().manual_seed(2)
    factors = [torch.randn(size, 4, generator=generator) for size in (7, 5, 3, 5)]
    with torch.no_grad():
        conv.weight.copy_(torch.einsum("fr,cr,yr,xr->fcyx", *factors))
    model = nn.Sequential(conv)
    x = inputs()
    expected = model(x).detach()
    factorize_(model, CPFactorization(rank=4, policy="none"))
    assert isinstance(model[0], CPConv2d)
    assert torch.allclose(model(x), expected, atol=ATOL * float(expected.abs().max()))


def test_cp_layers_apply_the_kernel_of_their_factors() -> None:
    conv = odd_conv()
    low = cp_conv(conv, rank=6, iterations=20)
    rebuilt = odd_conv()
    with torch.no_grad():
        rebuilt.weight.copy_(low.dense_weight())
    x = inputs()
    assert torch.allclose(low(x), rebuilt(x), atol=ATOL)


@pytest.mark.parametrize(
    "configs",
    [
        [SeparableFactorization(rank=r) for r in (1, 3, 6, 15)],
        [TuckerFactorization(ranks=r) for r in ((1, 1), (3, 2), (5, 4), (7, 5))],
        [CPFactorization(rank=r, iterations=50) for r in (1, 4, 16)],
    ],
)
def test_reconstruction_error_decreases_with_rank(configs) -> None:
    points = sweep(odd_conv(), configs, inputs(), latency=False)[1:]
    errors = [point.error for point in points]
    assert errors == sorted(errors, reverse=True)
    assert errors[0] > 0.1


def test_rank_choices_for_convolutions() -> None:
    conv = nn.Conv2d(16, 32, 3)  # 4608 weights
    model = nn.Sequential(conv)
    # separable: rank r costs 16·3 + 32·3 = 144 → compression 4 → 1152 → rank 8
    assert plan_factorization(model, SeparableFactorization(compression=4))[0].details["rank"] == 8
    # tucker: ranks ∝ (32, 16) → (2k, k) costs 16k + 18k² + 64k; budget 4608/4 = 1152 → k = 6
    assert plan_factorization(model, TuckerFactorization(compression=4))[0].details["ranks"] == [
        12,
        6,
    ]
    # cp: rank r costs 16 + 32 + 3 + 3 = 54 → compression 4 → 1152 → rank 21
    cp = CPFactorization(compression=4, iterations=1)
    assert plan_factorization(model, cp)[0].details["rank"] == 21
    full = plan_factorization(model, TuckerFactorization(energy=1.0))[0]
    assert full.details["ranks"] == [32, 16]


def test_ranks_beyond_the_channels_are_errors() -> None:
    model = nn.Sequential(nn.Conv2d(4, 6, 3))
    with pytest.raises(ConfigError, match=r"0: input rank 5 is larger than in_channels = 4"):
        factorize_(model, TuckerFactorization(ranks=(6, 5)))
    with pytest.raises(ConfigError, match=r"rank 13 is larger than min\(in_channels·k_h"):
        factorize_(model, SeparableFactorization(rank=13))


def test_grouped_and_pointwise_convolutions_are_skipped() -> None:
    model = nn.Sequential(nn.Conv2d(4, 4, 3, groups=4), nn.Conv2d(4, 8, 1), nn.Conv2d(8, 8, 3))
    plan = plan_factorization(model, TuckerFactorization(ranks=2))
    assert [d.accepted for d in plan] == [False, False, True]
    assert plan[0].reason == "skipped: grouped convolution (groups=4)"
    assert plan[1].reason.startswith("skipped: 1x1 kernel")


def test_smaller_policy_refuses_a_bigger_tucker() -> None:
    model = nn.Sequential(nn.Conv2d(8, 8, 3))
    plan = plan_factorization(model, TuckerFactorization(ranks=8))
    assert not plan[0].accepted and plan[0].reason.startswith("not smaller")
    with pytest.raises(ConfigError, match=r"changed nothing: 0 \(not smaller"):
        factorize_(model, TuckerFactorization(ranks=8))
    assert isinstance(model[0], nn.Conv2d)
