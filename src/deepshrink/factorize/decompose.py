"""Decompose convolution kernels: separable (SVD), Tucker-2 and CP (tensorly, PyTorch backend).

Rank selection and the SVD are ours (:mod:`deepshrink.functional.lowrank`); Tucker (HOOI) and CP
(ALS) come from tensorly, run in float64 inside ``tensorly.backend_context("pytorch")`` so that
the global tensorly backend of the caller is left untouched.

>>> import torch
>>> from torch import nn
>>> conv = nn.Conv2d(4, 6, 3, padding=1)
>>> tucker = tucker_conv(conv, (6, 4))
>>> x = torch.randn(1, 4, 5, 5)
>>> torch.allclose(tucker(x), conv(x), atol=1e-5)
True
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor, nn

from deepshrink.factorize._method import (
    Candidate,
    Method,
    check_rank,
    conv_skip_reason,
    like,
    register_method,
)
from deepshrink.factorize.config import (
    CPFactorization,
    SeparableFactorization,
    TuckerFactorization,
)
from deepshrink.factorize.conv import (
    CP,
    SEPARABLE,
    TUCKER,
    CPConv2d,
    SeparableConv2d,
    TuckerConv2d,
    conv_details,
)
from deepshrink.functional.lowrank import (
    low_rank_factors,
    rank_for_compression,
    rank_from_energy,
)

__all__ = ["cp_conv", "separable_conv", "tucker_conv"]


def _separable_matrix(kernel: Tensor) -> Tensor:
    """``F × C × k_h × k_w`` → ``(C·k_h) × (F·k_w)``: rows index (c, y), columns (f, x)."""
    filters, channels, height, width = kernel.shape
    return kernel.permute(1, 2, 0, 3).reshape(channels * height, filters * width)


def separable_conv(conv: nn.Conv2d, rank: int) -> SeparableConv2d:
    """``conv`` as a ``k_h × 1`` then ``1 × k_w`` pair, by truncated SVD of its kernel."""
    filters, channels, height, width = conv.weight.shape
    left, right = low_rank_factors(_separable_matrix(conv.weight.detach()), rank)
    result = like(SeparableConv2d.like(conv, rank), conv)
    with torch.no_grad():
        result[0].weight.copy_(left.reshape(channels, height, rank).permute(2, 0, 1)[..., None])
        result[1].weight.copy_(right.reshape(rank, filters, width).permute(1, 0, 2)[:, :, None])
        if conv.bias is not None:
            result[1].bias.copy_(conv.bias)
    return result


def _separable_rank(name: str, conv: nn.Conv2d, config: SeparableFactorization) -> int:
    matrix = _separable_matrix(conv.weight.detach())
    if config.rank is not None:
        why = "min(in_channels·k_h, out_channels·k_w)"
        return check_rank(name, "rank", config.rank, min(matrix.shape), why)
    if config.energy is not None:
        return rank_from_energy(torch.linalg.svdvals(matrix.double()), config.energy)
    assert config.compression is not None
    rank = rank_for_compression(matrix.numel(), sum(matrix.shape), config.compression)
    return min(rank, min(matrix.shape))


def _build_separable(name: str, conv: nn.Conv2d, config: SeparableFactorization) -> Candidate:
    rank = _separable_rank(name, conv, config)
    return Candidate(separable_conv(conv, rank), SEPARABLE, conv_details(name, conv, rank=rank))


def tucker_conv(conv: nn.Conv2d, ranks: tuple[int, int]) -> TuckerConv2d:
    """``conv`` as Tucker-2 (1×1, core, 1×1) with ``ranks = (r_out, r_in)``, by HOOI."""
    import tensorly
    from tensorly.decomposition import partial_tucker

    with tensorly.backend_context("pytorch"):
        (core, (out_factor, in_factor)), _ = partial_tucker(
            conv.weight.detach().double(), rank=list(ranks), modes=[0, 1], init="svd"
        )
    result = like(TuckerConv2d.like(conv, ranks), conv)
    with torch.no_grad():
        result[0].weight.copy_(in_factor.T[:, :, None, None])
        result[1].weight.copy_(core)
        result[2].weight.copy_(out_factor[:, :, None, None])
        if conv.bias is not None:
            result[2].bias.copy_(conv.bias)
    return result


def _tucker_ranks(name: str, conv: nn.Conv2d, config: TuckerFactorization) -> tuple[int, int]:
    filters, channels = conv.out_channels, conv.in_channels
    if config.ranks is not None:
        out_rank = check_rank(name, "output rank", config.ranks[0], filters, "out_channels")
        return out_rank, check_rank(name, "input rank", config.ranks[1], channels, "in_channels")
    kernel = conv.weight.detach().double()
    if config.energy is not None:
        out_values = torch.linalg.svdvals(kernel.reshape(filters, -1))
        in_values = torch.linalg.svdvals(kernel.transpose(0, 1).reshape(channels, -1))
        return rank_from_energy(out_values, config.energy), rank_from_energy(
            in_values, config.energy
        )
    assert config.compression is not None
    return _tucker_ranks_for_compression(conv, config.compression)


def _tucker_ranks_for_compression(conv: nn.Conv2d, compression: float) -> tuple[int, int]:
    """The largest ranks proportional to (F, C) whose three kernels fit the weight budget."""
    filters, channels = conv.out_channels, conv.in_channels
    area = conv.kernel_size[0] * conv.kernel_size[1]
    budget = conv.weight.numel() / compression
    best = (1, 1)
    for out_rank in range(1, filters + 1):
        in_rank = max(1, round(out_rank * channels / filters))
        if channels * in_rank + in_rank * out_rank * area + out_rank * filters > budget:
            break
        best = (out_rank, min(in_rank, channels))
    return best


def _build_tucker(name: str, conv: nn.Conv2d, config: TuckerFactorization) -> Candidate:
    ranks = _tucker_ranks(name, conv, config)
    details = conv_details(name, conv, ranks=list(ranks))
    return Candidate(tucker_conv(conv, ranks), TUCKER, details)


def cp_conv(conv: nn.Conv2d, rank: int, iterations: int = 200) -> CPConv2d:
    """``conv`` as the rank-``rank`` CP decomposition of its kernel (ALS, SVD start, seed 0).

    Each rank-1 term is rescaled so that its four factor columns have equal norms.
    """
    import tensorly
    from tensorly.decomposition import parafac

    with tensorly.backend_context("pytorch"), warnings.catch_warnings():
        # The SVD start pads with random columns when rank exceeds a mode's size: expected here.
        warnings.filterwarnings("ignore", message=".*n_eigenvecs.*", category=UserWarning)
        weights, factors = parafac(
            conv.weight.detach().double(), rank, n_iter_max=iterations, init="svd",
            tol=1e-10, random_state=0,
        )  # fmt: skip
    norms = torch.stack([factor.norm(dim=0) for factor in factors])  # (4, rank)
    scale = (weights.abs() * norms.prod(0)).pow(1 / 4)
    signs = torch.where(weights < 0, -1.0, 1.0).to(weights)
    safe = norms.clamp_min(torch.finfo(norms.dtype).tiny)
    out_f, in_f, vertical, horizontal = (f * scale / n for f, n in zip(factors, safe, strict=True))
    result = like(CPConv2d.like(conv, rank), conv)
    with torch.no_grad():
        result[0].weight.copy_(in_f.T[:, :, None, None])
        result[1].weight.copy_(vertical.T[:, None, :, None])
        result[2].weight.copy_(horizontal.T[:, None, None, :])
        result[3].weight.copy_((out_f * signs)[:, :, None, None])
        if conv.bias is not None:
            result[3].bias.copy_(conv.bias)
    return result


def _build_cp(name: str, conv: nn.Conv2d, config: CPFactorization) -> Candidate:
    if config.rank is not None:
        rank = config.rank
    else:
        assert config.compression is not None
        per_rank = conv.in_channels + conv.out_channels + sum(conv.kernel_size)
        rank = rank_for_compression(conv.weight.numel(), per_rank, config.compression)
    module = cp_conv(conv, rank, config.iterations)
    return Candidate(module, CP, conv_details(name, conv, rank=rank))


register_method(SeparableFactorization, Method(nn.Conv2d, _build_separable, conv_skip_reason))
register_method(TuckerFactorization, Method(nn.Conv2d, _build_tucker, conv_skip_reason))
register_method(CPFactorization, Method(nn.Conv2d, _build_cp, conv_skip_reason))
