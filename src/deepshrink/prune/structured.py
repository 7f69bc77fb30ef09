"""Structured (filter/channel) pruning: plan which channels go, then cut them out physically.

Decide, then apply. :func:`plan_channel_pruning` traces the coupled channel groups
(:mod:`deepshrink.graph.coupling`), scores every group's channels with a criterion
(:mod:`deepshrink.prune.channel_criteria`), picks the kept channels and returns a JSON-ready
*plan*: per group the kept channel indices, per layer the old → new channels and MACs, and the
groups left whole with the reason (e.g. channels that pass the zero padding of an option-A
ResNet shortcut: in such ResNets only the channels inside each block are pruned). Nothing is
changed. :func:`apply_plan_` cuts the model to the plan and records it (``"prune.channels"``)
so :func:`deepshrink.train.load_checkpoint` rebuilds the pruned shapes on a fresh zoo model.

>>> import torch
>>> from torch import nn
>>> from deepshrink.prune import ChannelPruning, prune_
>>> model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(),
...                       nn.Flatten(), nn.Linear(8 * 4 * 4, 2))
>>> x = torch.zeros(1, 3, 6, 6)
>>> plan = plan_channel_pruning(model, ChannelPruning(ratio=0.5), x)
>>> [(row["name"], row["out"]) for row in plan["layers"]]
[('0', [8, 4]), ('4', [2, 2])]
>>> prune_(model, ChannelPruning(ratio=0.5), example_inputs=x)[0]
Conv2d(3, 4, kernel_size=(3, 3), stride=(1, 1))
"""

from __future__ import annotations

import copy
import fnmatch
import logging
import math
from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor, nn

from deepshrink.errors import ConfigError, FormatError
from deepshrink.eval._inputs import as_inputs
from deepshrink.graph import record, register_rebuilder
from deepshrink.graph.coupling import ChannelGroup, Coupling
from deepshrink.prune.channel_criteria import channel_scores, collect_calibration
from deepshrink.prune.config import ChannelPruning
from deepshrink.prune.masking import MASK_SUFFIX
from deepshrink.prune.targets import Patterns, patterns

__all__ = ["CHANNEL_KIND", "apply_plan_", "plan_channel_pruning", "prune_channels_"]

logger = logging.getLogger(__name__)

#: Kind of the structure record written by :func:`apply_plan_`.
CHANNEL_KIND = "prune.channels"
PLAN_FORMAT = "deepshrink.channel-plan"
_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


def _matches(names: Iterable[str], globs: list[str]) -> bool:
    return any(fnmatch.fnmatchcase(n, g) for n in names for g in globs)


def _check_globs(groups: list[ChannelGroup], field: str, globs: list[str]) -> None:
    names = list(dict.fromkeys(n for g in groups for n in g.names))
    for glob in globs:
        if not _matches(names, [glob]):
            raise ConfigError(
                f"{field} {glob!r} matches no layer that channel pruning sees "
                f"(layers: {', '.join(names) or 'none'})"
            )


def _choose(
    groups: list[ChannelGroup], config: ChannelPruning, include: Patterns, exclude: Patterns
) -> tuple[list[ChannelGroup], dict[str, str]]:
    """The groups to prune and, for each group left whole, why."""
    wanted, ignored = patterns(include), [*config.ignore, *patterns(exclude)]
    _check_globs(groups, "include", wanted)
    _check_globs(groups, "ignore/exclude", ignored)
    _check_globs(groups, "overrides glob", list(config.overrides))
    chosen, skipped = [], {}
    for group in groups:
        producers = [m.name for m in group.producers()]
        if group.reaches_output:
            skipped[group.root] = "its channels are the model's output"
        elif _matches(producers, ignored):
            skipped[group.root] = "ignored"
        elif wanted and not _matches(group.names, wanted):
            skipped[group.root] = "not included"
        elif group.blocked and wanted:
            raise ConfigError(f"cannot prune the channels of {group.root!r}: {group.blocked}")
        elif group.blocked:
            skipped[group.root] = group.blocked
        else:
            chosen.append(group)
    return chosen, skipped


def _ratio(group: ChannelGroup, config: ChannelPruning) -> float | None:
    """The group's override ratio (the last matching glob wins), else ``None``."""
    found = None
    for glob, value in config.overrides.items():
        if _matches(group.names, [glob]):
            found = value
    return found


def _keep_count(units: int, removed: float, round_to: int) -> int:
    keep = max(units - int(math.floor(removed + 1e-9)), round_to)
    return min(units, math.ceil(keep / round_to) * round_to)


def _unit_scores(group: ChannelGroup, scores: Tensor) -> Tensor:
    return scores.view(group.blocks, -1).sum(dim=0)


def _counts(
    groups: list[ChannelGroup], scores: dict[str, Tensor], config: ChannelPruning
) -> dict[str, int]:
    """How many units (channels, or per-block offsets) each group keeps."""
    counts, pool = {}, []
    for group in groups:
        units = len(scores[group.root])
        ratio = _ratio(group, config)
        if ratio is None and config.scope == "global":
            pool.append(group)
        else:
            share = config.ratio if ratio is None else ratio
            counts[group.root] = _keep_count(units, units * share, config.round_to)
    if pool:
        everything = torch.cat([scores[g.root] for g in pool])
        order = torch.sort(everything, stable=True).indices[: int(len(everything) * config.ratio)]
        owner = torch.cat([torch.full((len(scores[g.root]),), i) for i, g in enumerate(pool)])
        removed = torch.bincount(owner[order], minlength=len(pool))
        for index, group in enumerate(pool):
            units = len(scores[group.root])
            counts[group.root] = _keep_count(units, float(removed[index]), config.round_to)
    return counts


def _kept(group: ChannelGroup, scores: Tensor, count: int) -> list[int]:
    best = torch.sort(-scores, stable=True).indices[:count]
    return [int(i) for i in group.expand(best.sort().values)]


def _inputs_of(model: nn.Module, example_inputs: Any) -> tuple[Any, ...]:
    if example_inputs is None:
        make = getattr(model, "example_inputs", None)
        if not callable(make):
            raise ConfigError(
                "channel pruning traces the model: pass example_inputs= (a batch of 1 is enough)"
            )
        example_inputs = make()
    return as_inputs(example_inputs)


def _check_unmasked(model: nn.Module) -> None:
    masked = [n for n, _ in model.named_buffers() if n.endswith(MASK_SUFFIX)]
    if masked:
        raise ConfigError(
            f"channel pruning cuts parameters that carry masks ({masked[0]}); "
            "call deepshrink.prune.finalize_(model) first"
        )


def plan_channel_pruning(
    model: nn.Module,
    config: ChannelPruning,
    example_inputs: Any = None,
    *,
    include: Patterns = None,
    exclude: Patterns = None,
    calibration: Iterable[Any] | None = None,
) -> dict[str, Any]:
    """The structure plan of pruning ``model`` as ``config`` says (``model`` is not changed)."""
    _check_unmasked(model)
    inputs = _inputs_of(model, example_inputs)
    coupling = Coupling(model, inputs)
    chosen, skipped = _choose(coupling.groups, config, include, exclude)
    data = collect_calibration(model, config.criterion, calibration)
    generator = torch.Generator().manual_seed(config.seed)
    scores = {
        g.root: _unit_scores(g, channel_scores(config.criterion, g, data, generator))
        for g in chosen
    }
    counts = _counts(chosen, scores, config)
    groups = [
        {
            "root": g.root,
            "channels": g.channels,
            "kept": _kept(g, scores[g.root], counts[g.root]),
            "layers": g.names,
        }
        for g in chosen
    ]
    for root, why in skipped.items():
        logger.info("channel pruning leaves %s whole: %s", root, why)
    plan = {
        "format": PLAN_FORMAT,
        "version": 1,
        "config": config.to_dict(),
        "inputs": [list(t.shape) for t in inputs if isinstance(t, Tensor)],
        "groups": groups,
        "skipped": skipped,
    }
    plan.update(_measure(model, plan, inputs))
    return plan


def _shapes(model: nn.Module) -> dict[str, tuple[int, int, str]]:
    shapes = {}
    for name, module in model.named_modules():
        if isinstance(module, _LAYERS):
            weight = module.weight
            inputs = weight.shape[1] * getattr(module, "groups", 1)
            shapes[name] = (int(inputs), int(weight.shape[0]), type(module).__name__)
    return shapes


def _measure(model: nn.Module, plan: dict[str, Any], inputs: tuple[Any, ...]) -> dict[str, Any]:
    """Per-layer channels and MACs, and totals, before and after the plan (on a copy)."""
    from deepshrink.eval import count_parameters, per_layer_macs

    pruned = copy.deepcopy(model)
    _cut(pruned, plan, inputs)
    before, after = _shapes(model), _shapes(pruned)
    macs_before, macs_after = per_layer_macs(model, inputs), per_layer_macs(pruned, inputs)
    layers = [
        {
            "name": name,
            "type": kind,
            "in": [fan_in, after[name][0]],
            "out": [fan_out, after[name][1]],
            "macs": [macs_before.get(name, 0), macs_after.get(name, 0)],
        }
        for name, (fan_in, fan_out, kind) in before.items()
    ]
    totals = {
        "params": [count_parameters(model), count_parameters(pruned)],
        "macs": [sum(macs_before.values()), sum(macs_after.values())],
    }
    return {"layers": layers, "totals": totals}


def _cut(model: nn.Module, plan: dict[str, Any], inputs: tuple[Any, ...]) -> None:
    """Remove the channels the plan drops; raise FormatError when the plan does not fit."""
    coupling = Coupling(model, inputs)
    groups = {g.root: g for g in coupling.groups}
    for entry in plan.get("groups", []):
        try:
            root, kept = str(entry["root"]), [int(i) for i in entry["kept"]]
            channels = int(entry["channels"])
        except (KeyError, TypeError, ValueError) as exc:
            raise FormatError(f"{CHANNEL_KIND}: malformed group entry ({exc})") from None
        group = groups.get(root)
        if group is None or group.channels != channels or set(group.names) != set(entry["layers"]):
            found = "absent" if group is None else f"{group.channels} channels over {group.names}"
            raise FormatError(
                f"{CHANNEL_KIND}: the plan's group {root!r} ({channels} channels over "
                f"{entry['layers']}) does not fit the model ({found}); plans apply to the "
                "architecture they were made for"
            )
        if len(set(kept)) != len(kept) or not all(0 <= i < channels for i in kept) or not kept:
            raise FormatError(
                f"{CHANNEL_KIND}: kept channels of {root!r} must be distinct, in range"
            )
        coupling.prune(root, sorted(set(range(channels)) - set(kept)))
    _check_runs(model, inputs)


def _check_runs(model: nn.Module, inputs: tuple[Any, ...]) -> None:
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(*inputs)
    except Exception as exc:  # surgery bugs surface as shape errors of many types
        raise ConfigError(
            f"the channel-pruned {type(model).__name__} no longer runs: {type(exc).__name__}: "
            f"{exc}; ignore= the layers named there and report the model"
        ) from None
    finally:
        model.train(was_training)


def _plan_inputs(plan: dict[str, Any]) -> tuple[Tensor, ...]:
    shapes = plan.get("inputs")
    if not isinstance(shapes, list) or not shapes:
        raise FormatError(f"{CHANNEL_KIND}: the plan has no input shapes to trace the model with")
    return tuple(torch.zeros([int(d) for d in shape]) for shape in shapes)


def apply_plan_(model: nn.Module, plan: dict[str, Any], example_inputs: Any = None) -> nn.Module:
    """Cut ``model`` to ``plan`` (from :func:`plan_channel_pruning`), record it, return it.

    ``example_inputs`` default to zeros of the shapes the plan was traced with.
    """
    if not isinstance(plan, dict) or plan.get("format") != PLAN_FORMAT:
        raise FormatError(f"not a channel plan (expected format {PLAN_FORMAT!r})")
    _check_unmasked(model)
    inputs = as_inputs(example_inputs) if example_inputs is not None else _plan_inputs(plan)
    _cut(model, plan, inputs)
    record(model, CHANNEL_KIND, plan=plan)
    before, after = plan["totals"]["macs"] if "totals" in plan else (0, 0)
    logger.info("channel pruning: %d groups cut, MACs %s → %s", len(plan["groups"]), before, after)
    return model


def prune_channels_(
    model: nn.Module,
    config: ChannelPruning,
    *,
    include: Patterns = None,
    exclude: Patterns = None,
    example_inputs: Any = None,
    calibration: Iterable[Any] | None = None,
) -> nn.Module:
    """Plan and apply channel pruning in one call (``prune_`` calls this)."""
    inputs = _inputs_of(model, example_inputs)
    plan = plan_channel_pruning(
        model, config, inputs, include=include, exclude=exclude, calibration=calibration
    )
    return apply_plan_(model, plan, inputs)


@register_rebuilder(CHANNEL_KIND)
def _rebuild_channels(model: nn.Module, entry: dict[str, Any]) -> None:
    """Give ``model`` the pruned shapes of the recorded plan (values come from the state dict)."""
    plan = entry.get("plan")
    if not isinstance(plan, dict):
        raise FormatError(f"{CHANNEL_KIND} entry has no plan")
    _cut(model, plan, _plan_inputs(plan))
