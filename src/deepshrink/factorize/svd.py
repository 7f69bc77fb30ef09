"""SVD of Linear layers: ``W ≈ (U_r √S_r)(√S_r V_rᵀ)`` as two Linear layers.

>>> import torch
>>> from torch import nn
>>> torch.manual_seed(0) is not None
True
>>> layer = nn.Linear(6, 4)
>>> low = SVDLinear.from_linear(layer, rank=4)
>>> x = torch.randn(3, 6)
>>> torch.allclose(low(x), layer(x), atol=1e-5)
True
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from deepshrink.factorize._method import (
    Candidate,
    Method,
    check_rank,
    check_shape,
    fresh_layer,
    like,
    register_method,
)
from deepshrink.factorize.config import SVDFactorization
from deepshrink.functional.lowrank import (
    low_rank_factors,
    rank_for_compression,
    rank_from_energy,
)
from deepshrink.graph import register_rebuilder
from deepshrink.graph.layers import as_linear, is_transposed_linear

__all__ = ["SVDLinear", "svd_rank"]

KIND = "factorize.svd"


class SVDLinear(nn.Sequential):
    """``Linear(in, rank, bias=False)`` then ``Linear(rank, out, bias)``: a rank-``rank`` layer.

    >>> SVDLinear(784, 300, rank=20)
    SVDLinear(
      (0): Linear(in_features=784, out_features=20, bias=False)
      (1): Linear(in_features=20, out_features=300, bias=True)
    )
    """

    def __init__(self, in_features: int, out_features: int, rank: int, bias: bool = True) -> None:
        super().__init__(
            nn.Linear(in_features, rank, bias=False), nn.Linear(rank, out_features, bias=bias)
        )
        self.in_features, self.out_features, self.rank = in_features, out_features, rank

    @classmethod
    def from_linear(cls, layer: nn.Linear, rank: int) -> SVDLinear:
        """The truncated SVD of ``layer`` at ``rank``; the bias is kept."""
        bias = layer.bias is not None
        result = like(cls(layer.in_features, layer.out_features, rank, bias), layer)
        left, right = low_rank_factors(layer.weight.detach(), rank)
        with torch.no_grad():
            result[0].weight.copy_(right)
            result[1].weight.copy_(left)
            if layer.bias is not None:
                result[1].bias.copy_(layer.bias)
        return result

    def dense_weight(self) -> Tensor:
        """The ``out × in`` matrix this layer applies (without the bias)."""
        return self[1].weight @ self[0].weight

    @property
    def weight(self) -> Tensor:
        """The dense ``out × in`` matrix, for code that reads a ``Linear``'s weight directly
        (``nn.TransformerEncoderLayer``'s fused path); the layer's own forward never builds it."""
        return self.dense_weight()

    @property
    def bias(self) -> Tensor | None:
        """The bias of the layer (held by the second factor)."""
        return self[1].bias


def svd_rank(name: str, layer: nn.Linear, config: SVDFactorization) -> int:
    """The rank ``config`` asks for on ``layer``; a rank above min(in, out) is a ConfigError."""
    largest = min(layer.in_features, layer.out_features)
    if config.rank is not None:
        return check_rank(name, "rank", config.rank, largest, "min(in_features, out_features)")
    if config.energy is not None:
        values = torch.linalg.svdvals(layer.weight.detach().double())
        return rank_from_energy(values, config.energy)
    assert config.compression is not None
    per_rank = layer.in_features + layer.out_features
    rank = rank_for_compression(layer.weight.numel(), per_rank, config.compression)
    return min(rank, largest)


def _build(name: str, module: nn.Module, config: SVDFactorization) -> Candidate:
    layer = as_linear(module)  # a Linear, or a Hugging Face Conv1D seen as one
    rank = svd_rank(name, layer, config)
    details = {
        "module": name,
        "in_features": layer.in_features,
        "out_features": layer.out_features,
        "rank": rank,
        "bias": layer.bias is not None,
    }
    return Candidate(SVDLinear.from_linear(layer, rank), KIND, details)


register_method(SVDFactorization, Method(nn.Linear, _build))


@register_rebuilder(KIND)
def _rebuild(model: nn.Module, entry: dict[str, Any]) -> None:
    module = model.get_submodule(str(entry.get("module"))) if entry.get("module") else None
    if module is not None and is_transposed_linear(module):
        layer = as_linear(module)
    else:
        layer = fresh_layer(model, entry, nn.Linear)
    check_shape(entry, layer, ("in_features", "out_features"))
    module = SVDLinear(layer.in_features, layer.out_features, int(entry["rank"]), entry["bias"])
    model.set_submodule(entry["module"], like(module, layer))
