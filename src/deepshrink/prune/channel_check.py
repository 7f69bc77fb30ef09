"""Check a channel plan on the example inputs before it is applied: cut == masked.

Removing channels from a coupled group must leave every kept channel computing what it computed
before. So the cut model must give the same outputs as the unpruned model whose layers reading
the group ignore the dropped channels (their inputs zeroed by a forward pre-hook). When the
dependency graph mis-tracks an operation (a reshape that mixes channels, a mean over channels),
the two differ and the group is left whole with the reason. Groups through a LayerNorm or
GroupNorm cannot be emulated by zeroing (the norm's statistics change) and are not checked.

>>> import torch
>>> from torch import nn
>>> model = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 2))
>>> cuts = [{"layer": "0", "type": "Linear", "dim": "out", "size": 6, "kept": [0, 2, 4]},
...         {"layer": "2", "type": "Linear", "dim": "in", "size": 6, "kept": [0, 2, 4]}]
>>> failing(model, [Group("0", ["0", "2"], cuts)], torch.randn(3, 4))
[]
>>> cuts[1]["kept"] = [1, 3, 5]  # the reader keeps other channels than the producer
>>> failing(model, [Group("0", ["0", "2"], cuts)], torch.randn(3, 4))
['0']
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from deepshrink.graph import io
from deepshrink.graph.coupling import _tensors
from deepshrink.graph.slicing import is_conv1d
from deepshrink.prune.channel_plan import cut_, merge_cuts

__all__ = ["Group", "failing", "uncheckable"]

logger = logging.getLogger(__name__)
_STATISTICS = (nn.LayerNorm, nn.GroupNorm)


@dataclass(frozen=True)
class Group:
    """One planned group: its root, layers, cuts and head-count updates."""

    root: str
    layers: list[str]
    cuts: list[dict[str, Any]]
    attention: list[dict[str, Any]] = field(default_factory=list)


def uncheckable(model: nn.Module, layers: list[str]) -> bool:
    """Whether a group passes a norm over its channels (zeroing cannot emulate it)."""
    return any(isinstance(model.get_submodule(n), _STATISTICS) for n in layers)


def _outputs(model: nn.Module, inputs: Any) -> list[Tensor]:
    with torch.no_grad():
        out = io.call(model, inputs)
    return [t.float() for t in _tensors(out) if t.is_floating_point()]


def _zeroing(dropped: list[int], axis: int) -> Callable[..., Any]:
    def hook(module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
        x = args[0].clone()
        x.index_fill_(axis % x.ndim, torch.tensor(dropped, device=x.device), 0)
        return (x, *args[1:])

    return hook


def _masked(model: nn.Module, cuts: list[dict[str, Any]], inputs: Any) -> list[Tensor]:
    """The unpruned model's outputs with the dropped input channels of each cut layer zeroed."""
    handles = []
    for cut in cuts:
        dropped = sorted(set(range(cut["size"])) - set(cut["kept"]))
        if cut["dim"] != "in" or not dropped:
            continue
        layer = model.get_submodule(cut["layer"])
        axis = -1 if isinstance(layer, nn.Linear) or is_conv1d(layer) else 1
        handles.append(layer.register_forward_pre_hook(_zeroing(dropped, axis)))
    try:
        return _outputs(model, inputs)
    finally:
        for handle in handles:
            handle.remove()


def _same(a: list[Tensor], b: list[Tensor]) -> bool:
    if len(a) != len(b) or any(x.shape != y.shape for x, y in zip(a, b, strict=True)):
        return False
    return all(
        torch.allclose(
            x, y, rtol=1e-3, atol=1e-4 * max(1.0, float(y.abs().amax()) if y.numel() else 0.0)
        )
        for x, y in zip(a, b, strict=True)
    )


def _agrees(model: nn.Module, groups: list[Group], inputs: Any) -> bool:
    """Whether cutting ``groups`` equals masking their dropped channels."""
    cuts = merge_cuts([g.cuts for g in groups])
    attention = [a for g in groups for a in g.attention]
    pruned = copy.deepcopy(model)
    cut_(pruned, {"cuts": cuts, "attention": attention})
    try:
        return _same(_outputs(pruned, inputs), _masked(model, cuts, inputs))
    except RuntimeError:  # the cut model does not run: the tracking was wrong
        return False


def failing(model: nn.Module, groups: list[Group], inputs: Any) -> list[str]:
    """Roots of ``groups`` whose cut differs from masking (checked on ``inputs``)."""
    was_training = model.training
    model.eval()
    try:
        if not _same(_outputs(model, inputs), _outputs(model, inputs)):
            logger.info("channel pruning: the model is not deterministic; plan not checked")
            return []
        checked = [g for g in groups if not uncheckable(model, g.layers)]
        if not checked or _agrees(model, checked, inputs):
            return []
        return [g.root for g in checked if not _agrees(model, [g], inputs)]
    finally:
        model.train(was_training)
