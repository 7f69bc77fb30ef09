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
that crosses any operation not on :data:`CHANNEL_PRESERVING` (slicing, reshapes other than
flatten, GroupNorm) is marked *blocked* with the operation named; modules that map channels
without weights (the option-A ``PadShortcut``, :func:`~deepshrink.graph.slicing.is_channel_map`)
are pruned on each side like a layer — and grouped convolutions, which it prunes correctly only
when every group of the convolution loses the same local channels: such groups get
``blocks > 1`` and the caller must keep a pattern that repeats in every block
(:meth:`ChannelGroup.expand`).

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

import inspect
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from deepshrink.errors import ConfigError
from deepshrink.graph import io
from deepshrink.graph.attention import REFUSED, AttentionSpec, find_attention
from deepshrink.graph.slicing import (
    channel_map_pruner,
    channels_of,
    conv1d_pruner,
    is_channel_map,
    is_conv1d,
)

__all__ = ["CHANNEL_PRESERVING", "ChannelGroup", "Coupling", "Member"]

#: Autograd operations (``grad_fn`` class names without the version digit) that map each
#: channel to the same channel: a group may pass through these and stay prunable.
CHANNEL_PRESERVING = frozenset({
    "Add", "Sub", "Mul", "Div", "Neg", "Relu", "Relu6", "Hardtanh", "Sigmoid", "Tanh", "Silu",
    "Gelu", "LeakyRelu", "Elu", "Hardswish", "Hardsigmoid", "Clamp", "ClampMin", "ClampMax",
    "Threshold", "Softplus", "Mish", "Mean", "MaxPool2DWithIndices", "MaxPool1DWithIndices",
    "AvgPool2D", "AvgPool1D", "AdaptiveAvgPool2D", "AdaptiveMaxPool2D", "Clone", "T",
    "NativeDropout", "Cat", "Split", "SplitWithSizes", "View", "Reshape", "UnsafeView", "Flatten",
    "Squeeze", "Unsqueeze", "Cudnn", "Mkldnn", "NativeBatchNorm", "Pow", "Sqrt", "Rsqrt", "Exp",
    "Log", "Erf", "Abs", "Reciprocal",
})  # fmt: skip
_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_RECURRENT = (nn.LSTM, nn.GRU, nn.RNN)
_BLOCKED_MODULES = (nn.GroupNorm, nn.MultiheadAttention, *_RECURRENT, nn.Embedding)


def _module_reason(module: nn.Module) -> str:
    """Why channel pruning does not change ``module`` (a type it refuses)."""
    kind = type(module).__name__
    if isinstance(module, _RECURRENT):
        return (
            f"nn.{kind}: its hidden and input sizes are not pruned (its gate rows, recurrent "
            "columns and the next layer's inputs would have to move together)"
        )
    return REFUSED.get(type(module), f"{kind} is not supported")


def _blocked_module_reason(name: str, module: nn.Module) -> str:
    return f"they reach {name}, {_module_reason(module)}"


def refused_modules(model: nn.Module) -> dict[str, str]:
    """Recurrent and packed-attention modules of ``model``, each with why it is not pruned."""
    return {
        name: _module_reason(module)
        for name, module in model.named_modules()
        if isinstance(module, (*_RECURRENT, nn.MultiheadAttention))
    }


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
    """Coupled channels rooted at layer ``root``; ``blocked`` says why they cannot be pruned.

    ``attention`` names the attention module whose heads the channels are (then only whole
    heads may go, see :mod:`deepshrink.graph.attention`); empty for other groups. ``ops`` are
    the operations outside any layer that the channels pass through.
    """

    root: str
    channels: int
    members: list[Member]
    blocks: int = 1
    blocked: str = ""
    reaches_output: bool = False
    names: list[str] = field(default_factory=list)
    attention: str = ""
    ops: list[str] = field(default_factory=list)

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


def _tensors(value: Any) -> list[Tensor]:
    """Every tensor in a nested output (tuples, lists, dicts, ``ModelOutput``)."""
    if isinstance(value, Tensor):
        return [value]
    if isinstance(value, Mapping):
        value = list(value.values())
    if isinstance(value, (tuple, list)):
        return [t for item in value for t in _tensors(item)]
    return []


def _forward(model: nn.Module, example: Any) -> list[Tensor]:
    """Run ``model`` for tracing: every output tensor, with caches off (``use_cache=False``)."""
    args, kwargs = io.split(example)
    if "use_cache" in inspect.signature(model.forward).parameters:
        kwargs = {"use_cache": False, **kwargs}  # a key/value cache concatenates across steps
    return _tensors(model(*args, **kwargs))


def _autograd_clock() -> int:
    """The sequence number the next autograd node gets (they grow by creation, per thread)."""
    with torch.enable_grad():
        return int((torch.zeros((), requires_grad=True) * 1).grad_fn._sequence_nr()) + 1


class _Owners:
    """The autograd nodes each watched module's forward created: its internal operations.

    A Linear applied to a 3-D tensor runs ``view → addmm → view``; attention runs reshapes,
    transposes and the attention product between its projections. Those operations belong to
    the module and do not decide whether its channels can be pruned. A node belongs to the
    module when it was created during the module's forward (by autograd sequence number) and
    its output depends on it.
    """

    def __init__(self, modules: dict[nn.Module, tuple[str, str]]) -> None:
        self.owner: dict[Any, tuple[str, str]] = {}
        self._starts: dict[nn.Module, list[int]] = {}
        self._handles = [
            handle
            for module in modules
            for handle in (
                module.register_forward_pre_hook(self._enter),
                module.register_forward_hook(self._leave(modules[module])),
            )
        ]

    def _enter(self, module: nn.Module, args: Any) -> None:
        self._starts.setdefault(module, []).append(_autograd_clock())

    def _leave(self, owner: tuple[str, str]) -> Any:
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            start, seen = self._starts[module].pop(), set()
            stack = [t.grad_fn for t in _tensors(output) if t.grad_fn is not None]
            while stack:
                fn = stack.pop()
                if fn in seen or type(fn).__name__ == "AccumulateGrad":
                    continue
                seen.add(fn)
                if fn._sequence_nr() < start:
                    continue  # made before the module ran: its input
                self.owner.setdefault(fn, owner)
                stack.extend(f for f, _ in fn.next_functions if f is not None)

        return hook

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()


class Coupling:
    """The channel groups of ``model`` traced on ``example_inputs``, and their surgery.

    ``example_inputs`` is a tensor, a tuple of positional inputs or a dict of keyword inputs
    (:func:`deepshrink.graph.io.split`); token ids stay integers.
    """

    def __init__(self, model: nn.Module, example_inputs: Any) -> None:
        self.model = model
        self.names = {module: name for name, module in model.named_modules()}
        self.attention: dict[str, AttentionSpec] = find_attention(model)
        self.graph, self._owners = self._trace(model, example_inputs)
        self.refused = refused_modules(model)
        self.groups = [self._group(g) for g in self._all_groups()]

    def _watched(self) -> dict[nn.Module, tuple[str, str]]:
        watched = {
            m: ("attention", n) for n, m in self.model.named_modules() if n in self.attention
        }
        for name, module in self.model.named_modules():
            if isinstance(module, nn.Linear) or is_conv1d(module) or is_channel_map(module):
                watched[module] = ("layer", name)
        return watched

    def _trace(self, model: nn.Module, example_inputs: Any) -> tuple[Any, _Owners]:
        import torch_pruning as tp

        conv1d = {type(m) for m in model.modules() if is_conv1d(m)}
        maps = {type(m) for m in model.modules() if is_channel_map(m)}
        owners = _Owners(self._watched())
        was_training = model.training
        model.eval()  # tracing must not update BatchNorm statistics
        try:
            with torch.enable_grad():
                graph = tp.DependencyGraph().build_dependency(
                    model,
                    example_inputs=example_inputs,
                    forward_fn=_forward,
                    customized_pruners={
                        **{kind: conv1d_pruner() for kind in conv1d},
                        **{kind: channel_map_pruner() for kind in maps},
                    },
                    verbose=False,
                )
        except Exception as exc:  # tracing failures come in many types
            raise ConfigError(
                f"channel pruning could not trace {type(model).__name__} on the example inputs: "
                f"{type(exc).__name__}: {exc}; check example_inputs fit the model's forward"
            ) from None
        finally:
            model.train(was_training)
            owners.remove()
        self._roots = (*_CONV, nn.Linear, *conv1d)
        return graph, owners

    def _all_groups(self) -> list[Any]:
        return list(self.graph.get_all_groups(root_module_types=self._roots))

    def _group(self, group: Any) -> ChannelGroup:
        members, blocked, output, inside, ops = [], [], False, set(), []
        root_module, handlers = group[0].dep.target.module, set()
        for dep, idxs in group:
            node, module = dep.target, dep.target.module
            if module not in self.names:
                kind, owner = self._owners.owner.get(node.grad_fn, ("", ""))
                inside.update([owner] if kind == "attention" else [])
                op = _op_name(node)
                ops += [] if kind else [op]
                if not kind and op not in CHANNEL_PRESERVING:
                    blocked.append(f"they pass through {op} (not channel-preserving)")
                continue
            name = self.names[module]
            if (module, dep.handler) in handlers:
                continue  # a depthwise convolution: its input and output channels are one
            handlers.add((module, dep.handler))
            dim = "out" if self.graph.is_out_channel_pruning_fn(dep.handler) else "in"
            if isinstance(module, _BLOCKED_MODULES):
                blocked.append(_blocked_module_reason(name, module))
            if dim == "out" and not node.outputs:
                output = True
            index = torch.tensor([int(getattr(i, "idx", i)) for i in idxs], dtype=torch.long)
            root = torch.tensor([int(getattr(i, "root_idx", i)) for i in idxs], dtype=torch.long)
            members.append(Member(name, module, dim, index, root))
        channels = int(self.graph.get_pruner_of_module(root_module).get_out_channels(root_module))
        members = [_rooted(m, channels) for m in members]
        result = ChannelGroup(self.names[root_module], channels, members, reaches_output=output)
        result.blocks, why = _blocks(members, channels)
        blocked += [why] if why else []
        if inside:
            result.attention, why = self._heads_of(result, sorted(inside))
            blocked += [why] if why else []
        result.blocked = "; ".join(dict.fromkeys(blocked))
        result.names = list(dict.fromkeys(m.name for m in members))
        result.ops = list(dict.fromkeys(ops))
        return result

    def _heads_of(self, group: ChannelGroup, inside: list[str]) -> tuple[str, str]:
        """The attention module whose heads ``group`` is, or why its heads cannot be cut."""
        if len(inside) > 1:
            return "", f"they cross the attention of {' and '.join(inside)}"
        spec = self.attention[inside[0]]
        projections = {m.name for m in group.producers()}
        if projections != set(spec.projections) or group.root not in spec.projections:
            return "", (
                f"they pass through the attention of {spec.name} but are produced by "
                f"{sorted(projections)}, not only its projections {list(spec.projections)}"
            )
        if group.channels != spec.sections * spec.heads * spec.head_dim:
            return "", f"{group.channels} channels are not the {spec.heads} heads of {spec.name}"
        return spec.name, ""

    def cuts(self, root: str, kept: Sequence[int]) -> list[dict[str, Any]]:
        """Per layer of the group rooted at ``root``, its channels left when ``kept`` stay.

        Each cut is ``{"layer", "type", "dim", "size", "kept"}`` (``dim`` "out" or "in", ``size``
        the layer's channels now); Torch-Pruning maps the group's channels to each layer's own
        (through concatenations, splits and flatten).
        """
        module = self.model.get_submodule(root)
        pruner = self.graph.get_pruner_of_module(module)
        size = int(pruner.get_out_channels(module))
        removed = sorted(set(range(size)) - {int(i) for i in kept})
        if not removed:
            return []
        group = self.graph.get_pruning_group(module, pruner.prune_out_channels, removed)
        result, handlers = [], set()
        for dep, idxs in group:
            layer = dep.target.module
            if layer not in self.names or (layer, dep.handler) in handlers:
                continue
            handlers.add((layer, dep.handler))
            dim = "out" if self.graph.is_out_channel_pruning_fn(dep.handler) else "in"
            count = int(channels_of(layer, dim) or 0)
            gone = {int(getattr(i, "idx", i)) for i in idxs}
            left = [i for i in range(count) if i not in gone]
            name, kind = self.names[layer], type(layer).__name__
            result.append({"layer": name, "type": kind, "dim": dim, "size": count, "kept": left})
        return result

    def prune(self, root: str, pruned: Sequence[int]) -> None:
        """Remove channels ``pruned`` (group indices) from the group rooted at layer ``root``."""
        module = self.model.get_submodule(root)
        if not pruned:
            return
        pruner = self.graph.get_pruner_of_module(module)
        group = self.graph.get_pruning_group(module, pruner.prune_out_channels, list(pruned))
        group.prune()


def _rooted(member: Member, channels: int) -> Member:
    """``member`` with root indices in range: Torch-Pruning offsets a concatenation's
    consumer's root indices like its own; the consumer of all channels reads them in order."""
    if not len(member.root) or int(member.root.max()) < channels:
        return member
    if len(member.index) == channels:
        return Member(member.name, member.module, member.dim, member.index, torch.arange(channels))
    return member  # scores skip the indices out of range (channel_criteria._scatter)


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
