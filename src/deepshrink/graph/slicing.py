"""Cut kept channels out of one layer: the surgery that channel plans record and replay.

A channel plan lists, per layer, which of its output (``"out"``) or input (``"in"``) channels
stay. :func:`slice_layer` keeps exactly those, with Torch-Pruning's pruning functions for the
layer types it knows (Conv, Linear, BatchNorm, LayerNorm, PReLU, …) and :func:`conv1d_pruner`
for Hugging Face's ``Conv1D`` (GPT-2's layers: a Linear whose weight is stored in×out). Replaying
a plan is slicing only: no tracing, so no example inputs are needed to rebuild a pruned model.

>>> from torch import nn
>>> layer = nn.Linear(4, 3)
>>> slice_layer(layer, "out", [0, 2]).weight.shape
torch.Size([2, 4])
>>> slice_layer(layer, "in", [1, 2, 3]).in_features
3
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

from torch import nn

from deepshrink.errors import FormatError

__all__ = [
    "channel_map_pruner", "channels_of", "conv1d_pruner", "is_channel_map", "is_conv1d",
    "pruner_of", "slice_layer",
]  # fmt: skip


def is_conv1d(module: nn.Module) -> bool:
    """Whether ``module`` is a Hugging Face ``Conv1D`` (weight ``(in, out)``, attribute ``nf``)."""
    return type(module).__name__ == "Conv1D" and hasattr(module, "nf")


@functools.cache
def conv1d_pruner() -> Any:
    """Torch-Pruning pruning functions for ``Conv1D``: outputs are weight columns and bias."""
    from torch_pruning.pruner.function import BasePruningFunc

    class Conv1DPruner(BasePruningFunc):  # type: ignore[misc]
        def prune_out_channels(self, layer: nn.Module, idxs: Sequence[int]) -> nn.Module:
            keep = sorted(set(range(layer.weight.shape[1])) - set(idxs))
            layer.weight = self._prune_parameter_and_grad(layer.weight, keep, 1)
            if layer.bias is not None:
                layer.bias = self._prune_parameter_and_grad(layer.bias, keep, 0)
            layer.nf = len(keep)
            return layer

        def prune_in_channels(self, layer: nn.Module, idxs: Sequence[int]) -> nn.Module:
            keep = sorted(set(range(layer.weight.shape[0])) - set(idxs))
            layer.weight = self._prune_parameter_and_grad(layer.weight, keep, 0)
            if hasattr(layer, "nx"):
                layer.nx = len(keep)
            return layer

        def get_out_channels(self, layer: nn.Module) -> int:
            return int(layer.weight.shape[1])

        def get_in_channels(self, layer: nn.Module) -> int:
            return int(layer.weight.shape[0])

    return Conv1DPruner()


def is_channel_map(module: nn.Module) -> bool:
    """Whether ``module`` maps input to output channels without weights and can keep a subset
    of either side (``keep_in_channels``/``keep_out_channels``, ``in_channels``/``out_channels``),
    like the zoo's option-A ``PadShortcut``."""
    return all(hasattr(module, a) for a in ("keep_in_channels", "keep_out_channels",
                                            "in_channels", "out_channels"))  # fmt: skip


@functools.cache
def channel_map_pruner() -> Any:
    """Torch-Pruning pruning functions for a channel-map module (see :func:`is_channel_map`)."""
    from torch_pruning.pruner.function import BasePruningFunc

    def kept(size: int, idxs: Sequence[int]) -> list[int]:
        return sorted(set(range(size)) - {int(i) for i in idxs})

    class ChannelMapPruner(BasePruningFunc):  # type: ignore[misc]
        def prune_out_channels(self, layer: nn.Module, idxs: Sequence[int]) -> nn.Module:
            layer.keep_out_channels(kept(layer.out_channels, idxs))
            return layer

        def prune_in_channels(self, layer: nn.Module, idxs: Sequence[int]) -> nn.Module:
            layer.keep_in_channels(kept(layer.in_channels, idxs))
            return layer

        def get_out_channels(self, layer: nn.Module) -> int:
            return int(layer.out_channels)

        def get_in_channels(self, layer: nn.Module) -> int:
            return int(layer.in_channels)

    return ChannelMapPruner()


def pruner_of(module: nn.Module) -> Any:
    """Torch-Pruning's pruning functions for ``module``'s type, or ``None``."""
    if is_conv1d(module):
        return conv1d_pruner()
    if is_channel_map(module):
        return channel_map_pruner()
    from torch_pruning import ops
    from torch_pruning.pruner.function import PrunerBox

    return PrunerBox.get(ops.module2type(module))


def channels_of(module: nn.Module, dim: str) -> int | None:
    """How many output (``"out"``) or input (``"in"``) channels ``module`` has now."""
    pruner = pruner_of(module)
    if pruner is None:
        return None
    count = pruner.get_out_channels(module) if dim == "out" else pruner.get_in_channels(module)
    return None if count is None else int(count)


def slice_layer(module: nn.Module, dim: str, kept: Sequence[int]) -> nn.Module:
    """Keep only channels ``kept`` (sorted, distinct) along ``dim`` of ``module``, in place."""
    size, pruner = channels_of(module, dim), pruner_of(module)
    if size is None or pruner is None:
        raise FormatError(f"cannot slice the {dim} channels of a {type(module).__name__}")
    if sorted(set(kept)) != list(kept) or not kept or kept[-1] >= size or kept[0] < 0:
        raise FormatError(
            f"kept {dim} channels of a {type(module).__name__} must be sorted, distinct and in "
            f"[0, {size}), got {len(kept)} from {kept[0] if kept else '-'}"
        )
    removed = sorted(set(range(size)) - set(kept))
    if removed:
        fn = pruner.prune_out_channels if dim == "out" else pruner.prune_in_channels
        fn(module, removed)
    return module
