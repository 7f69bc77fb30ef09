"""Factorized convolutions: the module structures and how they are rebuilt from a checkpoint.

Each class is an ``nn.Sequential`` of ordinary ``nn.Conv2d`` layers, so export, quantization and
MAC counting see standard layers. ``like(conv, rank)`` builds the structure for a given dense
convolution (stride, padding and dilation are carried to the spatial layers, the bias to the
last layer); ``dense_weight()`` gives back the ``F × C × k_h × k_w`` kernel the layers apply
together, which the tests compare with the original. The decompositions that fill the weights
live in :mod:`deepshrink.factorize.decompose`.

>>> import torch
>>> from torch import nn
>>> conv = nn.Conv2d(4, 6, 3, padding=1)
>>> TuckerConv2d.like(conv, (5, 3))
TuckerConv2d(
  (0): Conv2d(4, 3, kernel_size=(1, 1), stride=(1, 1), bias=False)
  (1): Conv2d(3, 5, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1), bias=False)
  (2): Conv2d(5, 6, kernel_size=(1, 1), stride=(1, 1))
)
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from deepshrink.factorize._method import check_shape, fresh_layer, like
from deepshrink.graph import register_rebuilder

__all__ = ["CPConv2d", "SeparableConv2d", "TuckerConv2d"]

SEPARABLE, TUCKER, CP = "factorize.separable", "factorize.tucker", "factorize.cp"
SHAPE_FIELDS = ("in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation")


def _pointwise(in_channels: int, out_channels: int, bias: bool = False) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 1, bias=bias)


def _vertical(conv: nn.Conv2d, in_channels: int, out_channels: int, groups: int) -> nn.Conv2d:
    """The ``k_h × 1`` half of ``conv``: its vertical stride, padding and dilation."""
    return nn.Conv2d(
        in_channels, out_channels, (conv.kernel_size[0], 1), stride=(conv.stride[0], 1),
        padding=(conv.padding[0], 0), dilation=(conv.dilation[0], 1), groups=groups, bias=False,
    )  # fmt: skip


def _horizontal(
    conv: nn.Conv2d, in_channels: int, out_channels: int, groups: int, bias: bool
) -> nn.Conv2d:
    """The ``1 × k_w`` half of ``conv``: its horizontal stride, padding and dilation."""
    return nn.Conv2d(
        in_channels, out_channels, (1, conv.kernel_size[1]), stride=(1, conv.stride[1]),
        padding=(0, conv.padding[1]), dilation=(1, conv.dilation[1]), groups=groups, bias=bias,
    )  # fmt: skip


class SeparableConv2d(nn.Sequential):
    """``k_h × 1`` (C → rank) then ``1 × k_w`` (rank → F): a flattened convolution.

    >>> SeparableConv2d.like(nn.Conv2d(3, 8, 5), 4)[1]
    Conv2d(4, 8, kernel_size=(1, 5), stride=(1, 1))
    """

    @classmethod
    def like(cls, conv: nn.Conv2d, rank: int) -> SeparableConv2d:
        bias = conv.bias is not None
        vertical = _vertical(conv, conv.in_channels, rank, groups=1)
        horizontal = _horizontal(conv, rank, conv.out_channels, groups=1, bias=bias)
        result = cls(vertical, horizontal)
        result.rank = rank
        return result

    def dense_weight(self) -> Tensor:
        vertical, horizontal = self[0].weight[..., 0], self[1].weight[:, :, 0]  # (R,C,kh), (F,R,kw)
        return torch.einsum("rcy,frx->fcyx", vertical, horizontal)


class TuckerConv2d(nn.Sequential):
    """``1×1`` (C → r_in), core ``k_h × k_w`` (r_in → r_out), ``1×1`` (r_out → F).

    >>> TuckerConv2d.like(nn.Conv2d(8, 8, 3), (2, 2)).ranks
    (2, 2)
    """

    @classmethod
    def like(cls, conv: nn.Conv2d, ranks: tuple[int, int]) -> TuckerConv2d:
        out_rank, in_rank = ranks
        core = nn.Conv2d(
            in_rank, out_rank, conv.kernel_size, stride=conv.stride, padding=conv.padding,
            dilation=conv.dilation, bias=False,
        )  # fmt: skip
        last = _pointwise(out_rank, conv.out_channels, bias=conv.bias is not None)
        result = cls(_pointwise(conv.in_channels, in_rank), core, last)
        result.ranks = (out_rank, in_rank)
        return result

    def dense_weight(self) -> Tensor:
        first, core, last = self[0].weight[:, :, 0, 0], self[1].weight, self[2].weight[:, :, 0, 0]
        return torch.einsum("fs,sryx,rc->fcyx", last, core, first)


class CPConv2d(nn.Sequential):
    """``1×1`` (C → r), depthwise ``k_h × 1``, depthwise ``1 × k_w``, ``1×1`` (r → F).

    >>> [type(m).__name__ for m in CPConv2d.like(nn.Conv2d(8, 8, 3), 4)]
    ['Conv2d', 'Conv2d', 'Conv2d', 'Conv2d']
    """

    @classmethod
    def like(cls, conv: nn.Conv2d, rank: int) -> CPConv2d:
        result = cls(
            _pointwise(conv.in_channels, rank),
            _vertical(conv, rank, rank, groups=rank),
            _horizontal(conv, rank, rank, groups=rank, bias=False),
            _pointwise(rank, conv.out_channels, bias=conv.bias is not None),
        )
        result.rank = rank
        return result

    def dense_weight(self) -> Tensor:
        first, last = self[0].weight[:, :, 0, 0], self[3].weight[:, :, 0, 0]
        vertical, horizontal = self[1].weight[:, 0, :, 0], self[2].weight[:, 0, 0, :]
        return torch.einsum("fr,ry,rx,rc->fcyx", last, vertical, horizontal, first)


def conv_details(name: str, conv: nn.Conv2d, **ranks: Any) -> dict[str, Any]:
    """The structure-record details of a factorized ``conv``: its shape and the ranks."""
    shape = {field: _json(getattr(conv, field)) for field in SHAPE_FIELDS}
    return {"module": name, **shape, "bias": conv.bias is not None, **ranks}


def _json(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _replace(model: nn.Module, entry: dict[str, Any], build: Any) -> None:
    conv = fresh_layer(model, entry, nn.Conv2d)
    check_shape(entry, conv, SHAPE_FIELDS)
    model.set_submodule(entry["module"], like(build(conv), conv))


@register_rebuilder(SEPARABLE)
def _rebuild_separable(model: nn.Module, entry: dict[str, Any]) -> None:
    _replace(model, entry, lambda conv: SeparableConv2d.like(conv, int(entry["rank"])))


@register_rebuilder(TUCKER)
def _rebuild_tucker(model: nn.Module, entry: dict[str, Any]) -> None:
    ranks = (int(entry["ranks"][0]), int(entry["ranks"][1]))
    _replace(model, entry, lambda conv: TuckerConv2d.like(conv, ranks))


@register_rebuilder(CP)
def _rebuild_cp(model: nn.Module, entry: dict[str, Any]) -> None:
    _replace(model, entry, lambda conv: CPConv2d.like(conv, int(entry["rank"])))
