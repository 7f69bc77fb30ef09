"""Channel widths as candidates: the coupled channel groups, their widths, their sensitivity.

A model's prunable channels come in coupled groups (:mod:`deepshrink.graph.coupling`: a
residual stream is one group, the inside of a block another). Each group may keep ``k/steps``
of its channels for ``k = 1 … steps``, rounded up to a multiple of ``round_to`` (ONNX Runtime on
CPUs wants widths in multiples of 8; odd widths buy nothing, see ``docs/pruning.md``). A group is
named in :class:`~deepshrink.prune.ChannelPruning`'s ``overrides`` by one of its layers that no
other group contains.

The sensitivity of a group at a width is the increase of the cross-entropy on held-out
*training* samples when only that group is cut to it (channels ranked by ``criterion``), without
fine-tuning — the same first-order, per-unit measurement as the byte scan's.

>>> widths_of(64, steps=8, round_to=8), widths_of(16, steps=4, round_to=8)
([64, 56, 48, 40, 32, 24, 16, 8], [16, 8])
"""

from __future__ import annotations

import copy
import logging
import math
from dataclasses import dataclass
from typing import Any

from torch import nn

from deepshrink.errors import ConfigError

__all__ = ["ChannelGroup", "cut_model", "discover", "layer_roles", "plan_widths", "scan_widths",
           "widths_of"]  # fmt: skip

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ChannelGroup:
    """A coupled channel group: its root layer, the layer that names it alone, its widths."""

    root: str
    target: str
    channels: int
    widths: tuple[int, ...]  # full width first, narrowest last


def widths_of(channels: int, *, steps: int, round_to: int) -> list[int]:
    """The widths a group of ``channels`` may keep, widest first."""
    found = {channels}
    for k in range(1, steps + 1):
        width = math.ceil(channels * k / steps / round_to) * round_to
        found.add(min(channels, max(round_to, width)))
    return sorted(found, reverse=True)


def _config(overrides: dict[str, float], round_to: int, criterion: str) -> Any:
    from deepshrink.prune import ChannelPruning

    return ChannelPruning(ratio=0.0, overrides=overrides, round_to=round_to, criterion=criterion)


def discover(
    model: nn.Module, example: Any, *, steps: int, round_to: int, criterion: str = "l1"
) -> tuple[list[ChannelGroup], dict[str, str]]:
    """The groups channel pruning may cut, with their widths; and the groups left whole, why."""
    from deepshrink.prune.structured import plan_channel_pruning

    plan = plan_channel_pruning(model, _config({}, round_to, criterion), example)
    entries = [g for g in plan["groups"] if "attention" not in g]
    skipped = dict(plan["skipped"])
    groups = []
    for entry in entries:
        others = {n for g in entries if g is not entry for n in g["layers"]}
        alone = [n for n in entry["layers"] if n not in others]
        widths = widths_of(entry["channels"], steps=steps, round_to=round_to)
        if not alone:
            skipped[entry["root"]] = "no layer names this group alone, so it cannot be given "
            skipped[entry["root"]] += "its own width"
        elif len(widths) > 1:
            groups.append(ChannelGroup(entry["root"], alone[-1], entry["channels"], tuple(widths)))
    if not groups:
        raise ConfigError(
            f"no channel group of {type(model).__name__} can be narrowed (round_to={round_to}): "
            f"{'; '.join(f'{k}: {v}' for k, v in skipped.items()) or 'none found'}; "
            "a latency budget needs channel pruning"
        )
    return groups, skipped


def plan_widths(
    model: nn.Module, groups: list[ChannelGroup], widths: dict[str, int], example: Any, *,
    round_to: int, criterion: str = "l1", only: str | None = None,
) -> dict[str, Any] | None:  # fmt: skip
    """The channel plan giving each group its width (None when nothing is cut); ``only``
    restricts the plan to that group's root."""
    from deepshrink.prune.structured import plan_channel_pruning

    overrides = {
        g.target: (g.channels - widths[g.root]) / g.channels
        for g in groups
        if widths.get(g.root, g.channels) < g.channels and only in (None, g.root)
    }
    if not overrides:
        return None
    include = [g.target for g in groups if g.root == only] if only else None
    config = _config(overrides, round_to, criterion)
    return plan_channel_pruning(model, config, example, include=include)


def cut_model(model: nn.Module, plan: dict[str, Any] | None) -> nn.Module:
    """A copy of ``model`` cut to ``plan`` (the plan recorded on it)."""
    from deepshrink.prune.structured import apply_plan_

    trial = copy.deepcopy(model)
    return trial if plan is None else apply_plan_(trial, plan)


def layer_roles(plans: dict[str, dict[str, Any]]) -> dict[str, tuple[str | None, str | None]]:
    """Per convolution/``Linear`` layer, the group setting its input and its output width,
    read from each group's own plan (``plans``: group root → plan cutting only that group)."""
    roles: dict[str, list[str | None]] = {}
    for root, plan in plans.items():
        for cut in plan["cuts"]:
            if cut["type"] in ("BatchNorm2d", "BatchNorm1d", "LayerNorm", "GroupNorm"):
                continue
            role = roles.setdefault(cut["layer"], [None, None])
            role[0 if cut["dim"] == "in" else 1] = root
    return {layer: (role[0], role[1]) for layer, role in roles.items()}


def scan_widths(
    model: nn.Module,
    groups: list[ChannelGroup],
    held: Any,
    example: Any,
    *,
    samples: int,
    round_to: int,
    criterion: str = "l1",
) -> tuple[dict[str, dict[int, float]], dict[str, dict[str, Any]], tuple[float, float]]:
    """Per group and narrower width, the held-out loss increase of that cut alone; each group's
    plan at its narrowest width (for :func:`layer_roles`); the uncut ``(loss, accuracy)``."""
    from deepshrink.auto.candidates import _batches, measure

    batches = _batches(held, samples)
    reference = measure(model, batches)
    logger.info("auto width scan: %d groups, %d narrower widths, on %d held-out training "
                "samples (reference loss %.4f, accuracy %.2f%%)", len(groups),
                sum(len(g.widths) - 1 for g in groups), sum(len(y) for _, y in batches),
                reference[0], 100 * reference[1])  # fmt: skip
    losses: dict[str, dict[int, float]] = {}
    plans: dict[str, dict[str, Any]] = {}
    quiet = logging.getLogger("deepshrink.prune.structured")
    level = quiet.level
    quiet.setLevel(max(level, logging.WARNING))  # one line per group here, not per cut
    try:
        for index, group in enumerate(groups, 1):
            _scan_group(model, groups, group, batches, reference, example, round_to, criterion,
                        losses, plans)  # fmt: skip
            found = ", ".join(f"{w} +{v:.3f}" for w, v in losses[group.root].items())
            logger.info("auto width scan %d/%d %s (%d channels): %s", index, len(groups),
                        group.root, group.channels, found)  # fmt: skip
    finally:
        quiet.setLevel(level)
    return losses, plans, reference


def _scan_group(
    model: nn.Module, groups: list[ChannelGroup], group: ChannelGroup, batches: Any,
    reference: tuple[float, float], example: Any, round_to: int, criterion: str,
    losses: dict[str, dict[int, float]], plans: dict[str, dict[str, Any]],
) -> None:  # fmt: skip
    from deepshrink.auto.candidates import measure

    losses[group.root] = {group.channels: 0.0}
    for width in group.widths[1:]:
        plan = plan_widths(model, groups, {group.root: width}, example, round_to=round_to,
                           criterion=criterion, only=group.root)  # fmt: skip
        assert plan is not None
        plans[group.root] = plan
        loss, _ = measure(cut_model(model, plan), batches)
        losses[group.root][width] = max(0.0, loss - reference[0])
