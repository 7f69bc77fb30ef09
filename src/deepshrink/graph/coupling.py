"""Coupled channel groups: which layers must lose the same channels, and the surgery that does it.

Removing output channel ``c`` of a convolution also removes input channel ``c`` of every layer
that reads it, channel ``c`` of the BatchNorm after it, and — across a residual addition — the
same channel of every other branch of the sum. One :class:`ChannelGroup` is one such set of
coupled channels: its members are the layers (and the dimension of each) that index it.

The dependency graph comes from Torch-Pruning (``torch_pruning.DependencyGraph``, MIT, Fang et
al. 2023): it traces autograd, follows residual additions, concatenations (with index offsets),
splits, depthwise convolutions (input and output coupled) and flatten → Linear (one channel is
``H·W`` input features), and its pruning functions slice Conv/Linear/BN parameters. We checked it
on resnet20 (option A and B shortcuts), mobilenetv2_cifar and vgg16_cifar before choosing it over
a torch.fx engine of our own, which would re-implement exactly this. What is ours: the checks that
keep it honest — Torch-Pruning passes unknown operations through as if element-wise, so a group
that crosses any operation not on :data:`CHANNEL_PRESERVING` (zero padding of an option-A
shortcut, slicing, reshapes other than flatten, GroupNorm) is marked *blocked* with the operation
named — and grouped convolutions, which it prunes correctly only when every group of the
convolution loses the same local channels: such groups get ``blocks > 1`` and the caller must
keep a pattern that repeats in every block (:meth:`ChannelGroup.expand`).

>>> from torch import nn
>>> model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 4, 1))
>>> coupling = Coupling(model, torch.zeros(1, 3, 6, 6))
>>> [(g.root, g.channels, [m.name for m in g.members]) for g in coupling.groups if g.prunable]
[('0', 8, ['0', '1', '3'])]
>>> coupling.prune("0", [0, 1, 2, 3])
>>> model[3]
Conv2d(4, 4, kernel_size=(1, 1), stride=(1, 1))
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from deepshrink.errors import ConfigError

__all__ = ["CHANNEL_PRESERVING", "ChannelGroup", "Coupling", "Member"]

#: Autograd operations (``grad_fn`` class names without the version digit) that map each
#: channel to the same channel: a group may pass through these and stay prunable.
CHANNEL_PRESERVING = frozenset({
    "Add", "Sub", "Mul", "Div", "Neg", "Relu", "Relu6", "Hardtanh", "Sigmoid", "Tanh", "Silu",
    "Gelu", "LeakyRelu", "Elu", "Hardswish", "Hardsigmoid", "Clamp", "ClampMin", "ClampMax",
    "Threshold", "Softplus", "Mish", "Mean", "MaxPool2DWithIndices", "MaxPool1DWithIndices",
    "AvgPool2D", "AvgPool1D", "AdaptiveAvgPool2D", "AdaptiveMaxPool2D", "Clone", "T",
    "NativeDropout", "Cat", "Split", "SplitWithSizes", "View", "Reshape", "UnsafeView", "Flatten",
    "Squeeze", "Unsqueeze", "Cudnn", "Mkldnn", "NativeBatchNorm",
})  # fmt: skip
_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_BLOCKED_MODULES = (nn.GroupNorm, nn.MultiheadAttention, nn.LSTM, nn.GRU, nn.RNN, nn.Embedding)


@dataclass(frozen=True)
class Member:
    """A layer of a group: ``index[i]`` along its ``dim`` ("out"/"in") is channel ``root[i]``."""

    name: str
    module: nn.Module
    dim: str
    index: Tensor
    root: Tensor


@dataclass
class ChannelGroup:
    """Coupled channels rooted at layer ``root``; ``blocked`` says why they cannot be pruned."""

    root: str
    channels: int
    members: list[Member]
    blocks: int = 1
    blocked: str = ""
    reaches_output: bool = False
    names: list[str] = field(default_factory=list)

    @property
    def prunable(self) -> bool:
        return not self.blocked and not self.reaches_output

    def producers(self) -> list[Member]:
        """Members whose *output* channels are the group (convolutions, Linear, norms)."""
        return [m for m in self.members if m.dim == "out"]

    def expand(self, offsets: Tensor) -> Tensor:
        """Kept channels from kept offsets within one block (identity when ``blocks == 1``)."""
        size = self.channels // self.blocks
        return (torch.arange(self.blocks)[:, None] * size + offsets[None, :]).flatten()


def _op_name(node: Any) -> str:
    grad_fn = getattr(node, "grad_fn", None)
    name = type(grad_fn).__name__ if grad_fn is not None else type(node.module).__name__
    return re.sub(r"Backward\d*$", "", name)


class Coupling:
    """The channel groups of ``model`` traced on ``example_inputs``, and their surgery."""

    def __init__(self, model: nn.Module, example_inputs: Any) -> None:
        import torch_pruning as tp

        self.model = model
        self.names = {module: name for name, module in model.named_modules()}
        inputs = tuple(example_inputs) if isinstance(example_inputs, list | tuple) else (
            example_inputs,
        )  # fmt: skip
        was_training = model.training
        model.eval()  # tracing must not update BatchNorm statistics
        try:
            with torch.enable_grad():
                self.graph = tp.DependencyGraph().build_dependency(
                    model, example_inputs=inputs, verbose=False
                )
        except Exception as exc:  # tracing failures come in many types
            raise ConfigError(
                f"channel pruning could not trace {type(model).__name__} on the example inputs: "
                f"{type(exc).__name__}: {exc}; check example_inputs fit the model's forward"
            ) from None
        finally:
            model.train(was_training)
        self._tp = tp
        self.groups = [self._group(g) for g in self._all_groups()]

    def _all_groups(self) -> list[Any]:
        roots = (*_CONV, nn.Linear)
        return list(self.graph.get_all_groups(root_module_types=roots))

    def _group(self, group: Any) -> ChannelGroup:
        members, blocked, output = [], [], False
        root_module = group[0].dep.target.module
        for dep, idxs in group:
            node, module = dep.target, dep.target.module
            if module not in self.names:
                op = _op_name(node)
                if op not in CHANNEL_PRESERVING:
                    blocked.append(f"they pass through {op} (not channel-preserving)")
                continue
            name = self.names[module]
            dim = "out" if self.graph.is_out_channel_pruning_fn(dep.handler) else "in"
            if isinstance(module, _BLOCKED_MODULES):
                blocked.append(f"they reach {name} ({type(module).__name__}), not supported")
            if dim == "out" and not node.outputs:
                output = True
            index = torch.tensor([int(getattr(i, "idx", i)) for i in idxs], dtype=torch.long)
            root = torch.tensor([int(getattr(i, "root_idx", i)) for i in idxs], dtype=torch.long)
            members.append(Member(name, module, dim, index, root))
        channels = int(self.graph.get_pruner_of_module(root_module).get_out_channels(root_module))
        result = ChannelGroup(self.names[root_module], channels, members, reaches_output=output)
        result.blocks, why = _blocks(members, channels)
        blocked += [why] if why else []
        result.blocked = "; ".join(dict.fromkeys(blocked))
        result.names = list(dict.fromkeys(m.name for m in members))
        return result

    def prune(self, root: str, pruned: Sequence[int]) -> None:
        """Remove channels ``pruned`` (group indices) from the group rooted at layer ``root``."""
        module = self.model.get_submodule(root)
        if not pruned:
            return
        pruner = self.graph.get_pruner_of_module(module)
        group = self.graph.get_pruning_group(module, pruner.prune_out_channels, list(pruned))
        group.prune()


def _blocks(members: list[Member], channels: int) -> tuple[int, str]:
    """How many equal blocks grouped convolutions split the group into, or why it is blocked."""
    blocks = 1
    for member in members:
        module = member.module
        if not isinstance(module, _CONV) or module.groups == 1:
            continue
        if module.groups == module.out_channels == module.in_channels:
            continue  # depthwise: input and output channels move together
        size = module.out_channels if member.dim == "out" else module.in_channels
        if len(member.index) != size or size != channels:
            return 1, (
                f"grouped convolution {member.name} (groups={module.groups}) mixes them with "
                "other channels (a concatenation or a split)"
            )
        blocks = math.lcm(blocks, module.groups)
    if blocks > 1 and channels // blocks < 2:
        return blocks, f"every group of the grouped convolution holds {channels // blocks} channel"
    return blocks, ""
