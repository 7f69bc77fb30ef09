"""Tensor-Train layers (Novikov et al. 2015): a Linear layer whose weight is a TT-matrix.

The weight ``W`` (``Π m_k × Π n_k``) is never formed. Its entries are products of core slices,
``W[(i_1..i_d), (j_1..j_d)] = G_1[:, i_1, j_1, :] ⋯ G_d[:, i_d, j_d, :]``, and the forward pass
contracts the input with one core at a time. The contraction is hand-written because no library
we depend on has it as a layer: tensorly holds TT-matrices but multiplies them by a vector
through the full matrix (``tt_matrix_to_tensor``), which is exactly what a TT layer must avoid.
Each step is one matrix product and one transpose, so autograd gives the backward pass.

The state is a matrix whose rows are the indices contracted next, ``(n_k, r_{k-1})``, and whose
columns are everything else (input modes still to come, the batch, output modes done). Step
``k`` multiplies it by core ``k`` seen as an ``(m_k r_k) × (n_k r_{k-1})`` matrix, then moves
``(n_{k+1}, r_k)`` to the rows and ``m_k`` to the end of the columns: one GEMM and one copy per
core (a per-step ``einsum`` costs two copies and measured 1.8x slower). The cost is
``Σ_k m_1⋯m_k · r_{k-1} r_k · n_k⋯n_d`` multiply-accumulates per sample, far below
``Π m_k · Π n_k`` only when the ranks are small.

>>> import torch
>>> layer = TTLinear([4, 7, 4, 7], [3, 4, 5, 5], ranks=8)
>>> layer.in_features, layer.out_features, layer.ranks
(784, 300, (8, 8, 8))
>>> sum(core.numel() for core in layer.cores)  # instead of 235,200 weights
3448
>>> layer(torch.randn(2, 784)).shape
torch.Size([2, 300])
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from deepshrink.errors import ConfigError, FormatError
from deepshrink.factorize._method import Candidate, Method, fresh_layer, like, register_method
from deepshrink.factorize.config import TTFactorization
from deepshrink.functional.lowrank import factor_modes, tt_max_ranks, tt_svd, tt_to_matrix
from deepshrink.graph import register_rebuilder

__all__ = ["TTLinear", "tt_ranks"]

KIND = "factorize.tt"


def tt_ranks(
    input_modes: Sequence[int], output_modes: Sequence[int], ranks: int | Sequence[int] | None
) -> tuple[int, ...]:
    """The ``d - 1`` inner TT-ranks: an int caps every boundary, ``None`` means full ranks.

    A listed rank above the boundary's largest useful rank is a :class:`ConfigError`.

    >>> tt_ranks([4, 7], [5, 6], 100), tt_ranks([4, 7], [5, 6], None)
    ((20,), (20,))
    """
    caps = tt_max_ranks(input_modes, output_modes)
    if ranks is None:
        return tuple(caps)
    if isinstance(ranks, int):
        if ranks < 1:
            raise ConfigError(f"TT rank must be ≥ 1, got {ranks}")
        return tuple(min(ranks, cap) for cap in caps)
    if len(ranks) != len(caps):
        raise ConfigError(
            f"ranks must list {len(caps)} inner TT-ranks for {len(caps) + 1} cores, got "
            f"{list(ranks)}"
        )
    for index, (rank, cap) in enumerate(zip(ranks, caps, strict=True)):
        if not 1 <= rank <= cap:
            raise ConfigError(
                f"TT rank {rank} at boundary {index + 1} must be in [1, {cap}] (the smaller side "
                f"of the unfolding there); the largest useful ranks are {caps}"
            )
    return tuple(int(rank) for rank in ranks)


def _check_modes(input_modes: Sequence[int], output_modes: Sequence[int]) -> None:
    if len(input_modes) != len(output_modes) or not input_modes:
        raise ConfigError(
            f"input_modes {list(input_modes)} and output_modes {list(output_modes)} must have the "
            "same, non-zero length (one pair per TT core)"
        )
    if min(*input_modes, *output_modes) < 1:
        raise ConfigError(f"TT modes must be ≥ 1, got {list(input_modes)}, {list(output_modes)}")


class TTLinear(nn.Module):
    """``y = x Wᵀ + b`` with ``W`` a TT-matrix of cores ``(r_{k-1}, m_k, n_k, r_k)``.

    ``in_features = Π input_modes`` and ``out_features = Π output_modes``; ``ranks`` as in
    :func:`tt_ranks`. Built this way the layer is randomly initialised (for training from
    scratch) with the variance of ``nn.Linear``'s default; :meth:`from_linear` starts from a
    dense layer by TT-SVD instead.
    """

    def __init__(
        self,
        input_modes: Sequence[int],
        output_modes: Sequence[int],
        ranks: int | Sequence[int] | None = 8,
        bias: bool = True,
    ) -> None:
        super().__init__()
        _check_modes(input_modes, output_modes)
        self.input_modes = tuple(int(n) for n in input_modes)
        self.output_modes = tuple(int(m) for m in output_modes)
        self.ranks = tt_ranks(self.input_modes, self.output_modes, ranks)
        self.in_features = math.prod(self.input_modes)
        self.out_features = math.prod(self.output_modes)
        bounds = (1, *self.ranks, 1)
        self.cores = nn.ParameterList(
            nn.Parameter(torch.empty(bounds[k], m, n, bounds[k + 1]))
            for k, (m, n) in enumerate(zip(self.output_modes, self.input_modes, strict=True))
        )
        self.bias = nn.Parameter(torch.empty(self.out_features)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Gaussian cores giving ``W`` the entry variance ``1 / (3 · in_features)``."""
        target = 1.0 / (3 * self.in_features)
        std = (target / math.prod(self.ranks)) ** (1 / (2 * len(self.cores)))
        bound = 1 / math.sqrt(self.in_features)
        with torch.no_grad():
            for core in self.cores:
                core.normal_(0.0, std)
            if self.bias is not None:
                self.bias.uniform_(-bound, bound)

    @classmethod
    def from_linear(
        cls,
        layer: nn.Linear,
        input_modes: Sequence[int],
        output_modes: Sequence[int],
        ranks: int | Sequence[int] | None = 8,
    ) -> TTLinear:
        """The TT-SVD of ``layer``'s weight at ``ranks`` (``None``: exact); the bias is kept."""
        result = like(cls(input_modes, output_modes, ranks, layer.bias is not None), layer)
        if (result.in_features, result.out_features) != (layer.in_features, layer.out_features):
            raise ConfigError(
                f"TT modes give a {result.in_features} → {result.out_features} layer, but the "
                f"layer is {layer.in_features} → {layer.out_features}"
            )
        cores = tt_svd(layer.weight.detach(), result.input_modes, result.output_modes, result.ranks)
        with torch.no_grad():
            for parameter, core in zip(result.cores, cores, strict=True):
                parameter.copy_(core)
            if layer.bias is not None and result.bias is not None:
                result.bias.copy_(layer.bias)
        return result

    def forward(self, x: Tensor) -> Tensor:
        leading = x.shape[:-1]
        rows = x.reshape(-1, self.in_features)
        batch, last = rows.shape[0], len(self.cores) - 1
        state = rows.T  # (n_1 … n_d, B): the indices to contract next lead
        for k, core in enumerate(self.cores):
            rank_in, mode_out, mode_in, rank_out = core.shape
            matrix = core.permute(1, 3, 2, 0).reshape(mode_out * rank_out, mode_in * rank_in)
            state = matrix @ state.reshape(mode_in * rank_in, -1)  # (m_k r_k, rest)
            if k < last:  # bring (n_{k+1}, r_k) to the front, m_k to the back
                following = self.input_modes[k + 1]
                state = state.reshape(mode_out, rank_out, following, -1).permute(2, 1, 3, 0)
        out = state.reshape(self.output_modes[-1], batch, -1).permute(1, 2, 0)
        out = out.reshape(*leading, self.out_features)
        return out + self.bias if self.bias is not None else out

    def dense_weight(self) -> Tensor:
        """The ``out_features × in_features`` matrix the cores represent (for checks only)."""
        return tt_to_matrix(list(self.cores))

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"input_modes={self.input_modes}, output_modes={self.output_modes}, "
            f"ranks={self.ranks}, bias={self.bias is not None}"
        )


def _modes(name: str, features: int, given: tuple[int, ...] | None, order: int, side: str) -> Any:
    if given is None:
        return factor_modes(features, order)
    if math.prod(given) != features:
        raise ConfigError(
            f"{name}: {side}_modes {list(given)} multiply to {math.prod(given)}, but the layer "
            f"has {features} {side} features; choose modes whose product is {features}, e.g. "
            f"{factor_modes(features, len(given))}"
        )
    return list(given)


def _build(name: str, layer: nn.Linear, config: TTFactorization) -> Candidate:
    input_modes = _modes(name, layer.in_features, config.input_modes, config.order, "input")
    output_modes = _modes(name, layer.out_features, config.output_modes, config.order, "output")
    try:
        ranks = list(tt_ranks(input_modes, output_modes, config.ranks))
    except ConfigError as exc:
        raise ConfigError(f"{name}: {exc}") from None
    if config.init == "tt-svd":
        module = TTLinear.from_linear(layer, input_modes, output_modes, ranks)
    else:
        module = like(TTLinear(input_modes, output_modes, ranks, layer.bias is not None), layer)
    details = {
        "module": name,
        "in_features": layer.in_features,
        "out_features": layer.out_features,
        "input_modes": input_modes,
        "output_modes": output_modes,
        "ranks": ranks,
        "bias": layer.bias is not None,
    }
    return Candidate(module, KIND, details)


def _fits(layer: nn.Linear, config: TTFactorization) -> bool:
    """Whether the modes ``config`` fixes multiply to ``layer``'s feature counts."""
    sides = ((config.input_modes, layer.in_features), (config.output_modes, layer.out_features))
    return all(modes is None or math.prod(modes) == size for modes, size in sides)


register_method(TTFactorization, Method(nn.Linear, _build, fits=_fits))


@register_rebuilder(KIND)
def _rebuild(model: nn.Module, entry: dict[str, Any]) -> None:
    layer = fresh_layer(model, entry, nn.Linear)
    module = TTLinear(entry["input_modes"], entry["output_modes"], entry["ranks"], entry["bias"])
    if (module.in_features, module.out_features) != (layer.in_features, layer.out_features):
        raise FormatError(
            f"structure entry {KIND} for {entry['module']!r}: a {module.in_features} → "
            f"{module.out_features} TT layer cannot replace a {layer.in_features} → "
            f"{layer.out_features} Linear"
        )
    model.set_submodule(entry["module"], like(module, layer))
