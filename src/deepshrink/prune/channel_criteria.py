"""Channel (filter) importance criteria: one score per channel of a coupled group, by name.

A criterion sees a :class:`~deepshrink.graph.coupling.ChannelGroup` — every layer that indexes
the channels — and returns one score per channel (higher = more important). Scores of coupled
layers (the branches of a residual sum) are added.

=========  ========================================================================  ==========
name       score of channel ``c``                                                     data
=========  ========================================================================  ==========
l1         ``Σ |W_c|`` of every producing layer's filter (Li et al. 2017)             no
l2         ``‖W_c‖₂`` of every producing layer's filter                               no
bn_scale   ``Σ |γ_c|`` of the group's BatchNorm layers (Liu et al. 2017, slimming)    no
fpgm       ``Σ_j ‖W_c − W_j‖₂``: filters near the geometric median are redundant       no
           (He et al. 2019)
taylor     ``(Σ_batches Σ_θ∈c θ·∂L/∂θ)²`` over the channel's weights, biases and BN    labelled
           parameters (first-order Taylor, Molchanov et al. 2019)                     batches
apoz       ``1 − APoZ``: the fraction of positive activations after the group's        batches
           norm (or producer) output, i.e. after a ReLU (Hu et al. 2016)
random     uniform in [0, 1), seeded (a baseline)                                     no
=========  ========================================================================  ==========

Data-aware criteria (``taylor``, ``apoz``) read ``calibration``: an iterable of input batches, or
of ``(inputs, labels)`` pairs (``taylor`` needs the labels). Without it they raise a ConfigError.

>>> from torch import nn
>>> from deepshrink.graph.coupling import Coupling
>>> model = nn.Sequential(nn.Conv2d(1, 3, 1, bias=False), nn.Conv2d(3, 1, 1))
>>> with torch.no_grad():
...     _ = model[0].weight.copy_(torch.tensor([1.0, -3.0, 2.0]).view(3, 1, 1, 1))
>>> groups = {g.root: g for g in Coupling(model, torch.zeros(1, 1, 2, 2)).groups}
>>> channel_scores("l1", groups["0"])
tensor([1., 3., 2.])
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from deepshrink._registry import Registry
from deepshrink.errors import ConfigError
from deepshrink.graph import io
from deepshrink.graph.coupling import ChannelGroup, Member
from deepshrink.graph.slicing import is_conv1d

__all__ = [
    "CHANNEL_CRITERIA",
    "Calibration",
    "ChannelCriterion",
    "channel_scores",
    "collect_calibration",
]

_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


@dataclass
class Calibration:
    """What data-aware criteria need, gathered once per model: Σ θ·∂L/∂θ and positive rates."""

    weight_grad: dict[str, Tensor] = field(default_factory=dict)
    positive: dict[str, Tensor] = field(default_factory=dict)


@dataclass(frozen=True)
class ChannelCriterion:
    """A scoring function and what data it needs (``""``, ``"activations"``, ``"gradients"``)."""

    function: Callable[[ChannelGroup, Calibration, torch.Generator], Tensor]
    data: str = ""


CHANNEL_CRITERIA: Registry[ChannelCriterion] = Registry("channel criterion")


def _register(
    name: str, data: str = ""
) -> Callable[[Callable[..., Tensor]], Callable[..., Tensor]]:
    def add(function: Callable[..., Tensor]) -> Callable[..., Tensor]:
        CHANNEL_CRITERIA.add(name, ChannelCriterion(function, data))
        return function

    return add


def _rows(member: Member, tensor: Tensor) -> Tensor:
    """``tensor``'s slices along the member's channel dim, one row per member index."""
    dim = 0 if member.dim == "out" or tensor.ndim == 1 else 1
    flipped = isinstance(member.module, nn.ConvTranspose2d | nn.ConvTranspose1d) or is_conv1d(
        member.module
    )  # both store their weight in×out
    if flipped and tensor.ndim > 1:
        dim = 1 - dim
    rows = tensor.detach().float().movedim(dim, 0)[member.index]
    return rows.reshape(len(member.index), -1)


def _scatter(group: ChannelGroup, member: Member, values: Tensor) -> Tensor:
    inside = member.root < group.channels  # a member whose root indices could not be mapped
    return torch.zeros(group.channels).index_add_(0, member.root[inside], values.cpu()[inside])


def _filters(group: ChannelGroup) -> list[Member]:
    layers = [m for m in group.producers() if not isinstance(m.module, _NORMS)]
    return [m for m in layers if getattr(m.module, "weight", None) is not None]


def _filter_sum(group: ChannelGroup, per_filter: Callable[[Tensor], Tensor]) -> Tensor:
    total = torch.zeros(group.channels)
    for member in _filters(group):
        total += _scatter(group, member, per_filter(_rows(member, member.module.weight)))
    return total


@_register("l1")
def _l1(group: ChannelGroup, data: Calibration, generator: torch.Generator) -> Tensor:
    return _filter_sum(group, lambda rows: rows.abs().sum(dim=1))


@_register("l2")
def _l2(group: ChannelGroup, data: Calibration, generator: torch.Generator) -> Tensor:
    return _filter_sum(group, lambda rows: rows.norm(dim=1))


@_register("fpgm")
def _fpgm(group: ChannelGroup, data: Calibration, generator: torch.Generator) -> Tensor:
    return _filter_sum(group, lambda rows: torch.cdist(rows[None], rows[None])[0].sum(dim=1))


@_register("bn_scale")
def _bn_scale(group: ChannelGroup, data: Calibration, generator: torch.Generator) -> Tensor:
    norms = [m for m in group.producers() if isinstance(m.module, _NORMS) and m.module.affine]
    if not norms:
        raise ConfigError(
            f"criterion 'bn_scale' scores channels by the |γ| of the BatchNorm after them, and "
            f"the channels of {group.root!r} reach none; ignore that layer or use 'l1'"
        )
    total = torch.zeros(group.channels)
    for member in norms:
        total += _scatter(group, member, member.module.weight.detach().abs().float())
    return total


@_register("random")
def _random(group: ChannelGroup, data: Calibration, generator: torch.Generator) -> Tensor:
    return torch.rand(group.channels, generator=generator)


@_register("taylor", data="gradients")
def _taylor(group: ChannelGroup, data: Calibration, generator: torch.Generator) -> Tensor:
    total = torch.zeros(group.channels)
    for member in group.members:
        for name, _ in member.module.named_parameters(recurse=False):
            product = data.weight_grad.get(f"{member.name}.{name}")
            if product is not None and (member.dim == "out" or product.ndim > 1):
                total += _scatter(group, member, _rows(member, product).sum(dim=1))
    return total.pow(2)


@_register("apoz", data="activations")
def _apoz(group: ChannelGroup, data: Calibration, generator: torch.Generator) -> Tensor:
    members = [m for m in group.producers() if m.name in data.positive]
    norms = [m for m in members if isinstance(m.module, _NORMS)]
    total = torch.zeros(group.channels)
    for member in norms or members:
        total += _scatter(group, member, data.positive[member.name][member.index])
    return total / max(1, len(norms or members))


def _batches(calibration: Iterable[Any] | None, criterion: str) -> list[Any]:
    batches = list(calibration) if calibration is not None else []
    if not batches:
        raise ConfigError(
            f"criterion {criterion!r} is data-aware: pass calibration= a few batches "
            "(tensors, or (inputs, labels) pairs), e.g. calibration=[next(iter(loader))]"
        )
    return batches


def _split(batch: Any) -> tuple[Any, Tensor | None]:
    """Inputs and labels of a batch: a tensor, an ``(inputs, labels)`` pair, or a dict whose
    ``labels`` key holds the labels (:func:`deepshrink.graph.io.inputs_and_labels`)."""
    if not isinstance(batch, Tensor | list | tuple | dict):
        raise ConfigError(
            f"calibration batches must be tensors, (inputs, labels) pairs or dicts, got {batch!r}"
        )
    return io.inputs_and_labels(batch)


def _gradients(model: nn.Module, batches: list[Any]) -> dict[str, Tensor]:
    products: dict[str, Tensor] = {}
    for batch in batches:
        inputs, labels = _split(batch)
        if labels is None:
            raise ConfigError("criterion 'taylor' needs labelled calibration: (inputs, labels)")
        model.zero_grad(set_to_none=True)
        logits = io.logits_of(io.call(model, inputs))
        if logits.ndim > 2 and logits.shape[:-1] == labels.shape:  # per token: (N, T, C)
            logits, labels = logits.flatten(0, -2), labels.flatten()
        F.cross_entropy(logits, labels).backward()
        for name, parameter in model.named_parameters():
            if parameter.grad is not None:
                term = (parameter.detach() * parameter.grad).cpu()
                products[name] = products.get(name, 0) + term
    model.zero_grad(set_to_none=True)
    return products


def _activations(model: nn.Module, batches: list[Any]) -> dict[str, Tensor]:
    counts: dict[str, Tensor] = {}
    seen: dict[str, int] = {}

    def hook(name: str) -> Callable[..., None]:
        def count(module: nn.Module, args: Any, output: Tensor) -> None:
            axis = -1 if isinstance(module, nn.Linear | nn.LayerNorm) or is_conv1d(module) else 1
            positive = (output.detach() > 0).float().movedim(axis, 0).flatten(1)
            counts[name] = counts.get(name, 0) + positive.sum(dim=1).cpu()
            seen[name] = seen.get(name, 0) + positive.shape[1]

        return count

    handles = [
        module.register_forward_hook(hook(name))
        for name, module in model.named_modules()
        if isinstance(module, (*_NORMS, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear))
        or is_conv1d(module)
    ]
    try:
        with torch.no_grad():
            for batch in batches:
                io.call(model, _split(batch)[0])
    finally:
        for handle in handles:
            handle.remove()
    return {name: counts[name] / seen[name] for name in counts}


def collect_calibration(
    model: nn.Module, criterion: str, calibration: Iterable[Any] | None
) -> Calibration:
    """Run ``calibration`` through ``model`` (eval mode) as ``criterion`` needs; else empty."""
    need = CHANNEL_CRITERIA.get(criterion).data
    if not need:
        return Calibration()
    batches = _batches(calibration, criterion)
    was_training = model.training
    model.eval()
    try:
        if need == "gradients":
            return Calibration(weight_grad=_gradients(model, batches))
        return Calibration(positive=_activations(model, batches))
    finally:
        model.train(was_training)


def channel_scores(
    criterion: str,
    group: ChannelGroup,
    data: Calibration | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """One score per channel of ``group`` under ``criterion`` (float32, on the CPU)."""
    entry = CHANNEL_CRITERIA.get(criterion)
    data = data or Calibration()
    if entry.data and not (data.weight_grad or data.positive):
        raise ConfigError(
            f"criterion {criterion!r} is data-aware: pass calibration= a few batches "
            "(collect_calibration) before scoring"
        )
    with torch.no_grad():
        return entry.function(group, data, generator or torch.Generator().manual_seed(0))
