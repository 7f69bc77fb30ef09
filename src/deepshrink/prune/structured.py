"""Structured (filter/channel) pruning: plan which channels go, then cut them out physically.

Decide, then apply. :func:`plan_channel_pruning` traces the coupled channel groups
(:mod:`deepshrink.graph.coupling`), scores every group's channels with a criterion
(:mod:`deepshrink.prune.channel_criteria`), picks the kept channels and returns a JSON-ready
*plan*: per group the kept channel indices, per layer the old → new channels and MACs, and the
groups left whole with the reason (e.g. channels that pass an operation not known to preserve
channels; an option-A ResNet's zero-padding shortcut is a channel map and is pruned). On
transformers, ``ratio`` prunes the feed-forward widths and ``heads`` removes whole attention
heads (:mod:`deepshrink.graph.attention`). Each group's cut is checked against masking its
dropped channels on the example inputs (:mod:`deepshrink.prune.channel_check`). Nothing is
changed. :func:`apply_plan_` slices the model to the plan's recorded cuts, without tracing
(:mod:`deepshrink.prune.channel_plan`), and records it (``"prune.channels"``) so checkpoints
and ``.dsz`` files rebuild the pruned shapes on a fresh model, token models included.
:func:`prune_channels_` raises when a non-zero request removes nothing and records the coverage.

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

import fnmatch
import logging
import math
from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor, nn

from deepshrink.errors import ConfigError, FormatError
from deepshrink.graph import io, record, register_rebuilder
from deepshrink.graph.coupling import ChannelGroup, Coupling
from deepshrink.graph.coverage import Coverage, report_coverage
from deepshrink.prune.channel_check import Group, failing
from deepshrink.prune.channel_criteria import channel_scores, collect_calibration
from deepshrink.prune.channel_plan import (
    PLAN_FORMAT,
    PLAN_VERSION,
    check_runs,
    cut_,
    input_specs,
    measure,
    merge_cuts,
)
from deepshrink.prune.config import ALIGN, ChannelPruning
from deepshrink.prune.masking import MASK_SUFFIX
from deepshrink.prune.multihead import plan_multihead
from deepshrink.prune.targets import Patterns, patterns

__all__ = ["CHANNEL_KIND", "apply_plan_", "plan_channel_pruning", "prune_channels_"]

logger = logging.getLogger(__name__)

#: Kind of the structure record written by :func:`apply_plan_`.
CHANNEL_KIND = "prune.channels"


def _matches(names: Iterable[str], globs: list[str]) -> bool:
    return any(fnmatch.fnmatchcase(n, g) for n in names for g in globs)


def _check_globs(names: list[str], field: str, globs: list[str]) -> None:
    for glob in globs:
        if not _matches(names, [glob]):
            raise ConfigError(
                f"{field} {glob!r} matches no layer that channel pruning sees "
                f"(layers: {', '.join(names) or 'none'})"
            )


def _choose(
    groups: list[ChannelGroup],
    config: ChannelPruning,
    include: Patterns,
    exclude: Patterns,
    heads: float,
    modules: Iterable[str] = (),
) -> tuple[list[ChannelGroup], dict[str, str]]:
    """The groups to prune and, for each group left whole, why (``modules``: more names that
    globs may match, such as attention modules outside every group)."""
    wanted, ignored = patterns(include), [*config.ignore, *patterns(exclude)]
    names = list(dict.fromkeys([*(n for g in groups for n in g.names), *modules]))
    _check_globs(names, "include", wanted)
    _check_globs(names, "ignore/exclude", ignored)
    _check_globs(names, "overrides glob", list(config.overrides))
    chosen, skipped = [], {}
    for group in groups:
        producers = [m.name for m in group.producers()]
        if group.reaches_output:
            skipped[group.root] = "its channels are the model's output"
        elif _matches(producers, ignored):
            skipped[group.root] = "ignored"
        elif wanted and not _matches(group.names, wanted):
            skipped[group.root] = "not included"
        elif group.blocked and _matches(producers, wanted):
            raise ConfigError(f"cannot prune the channels of {group.root!r}: {group.blocked}")
        elif group.blocked:
            skipped[group.root] = group.blocked
        elif group.attention and not heads:
            skipped[group.root] = (
                f"the heads of {group.attention}: pass heads= (a ratio) to remove whole heads"
            )
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


def _keep_count(units: int, removed: float, round_to: int | str) -> int:
    if round_to == "auto":  # aligned, unless alignment would keep the whole group
        aligned = _keep_count(units, removed, ALIGN)
        return aligned if aligned < units else _keep_count(units, removed, 1)
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
    _say_rounded(groups, scores, counts, config)
    return counts


def _say_rounded(
    groups: list[ChannelGroup], scores: dict[str, Tensor], counts: dict[str, int],
    config: ChannelPruning,
) -> None:  # fmt: skip
    """Log the groups whose kept count ``round_to`` raised above the exact count."""
    if config.round_to == 1 or config.scope == "global":
        return
    raised = []
    for group in groups:
        units = len(scores[group.root])
        share = _ratio(group, config)
        exact = _keep_count(units, units * (config.ratio if share is None else share), 1)
        if counts[group.root] != exact:
            raised.append(f"{group.root} {exact}→{counts[group.root]}")
    if raised:
        logger.info("channel pruning: kept widths rounded up to multiples of %s (round_to=%r; "
                    "round_to=1 for exact ratios), %d of %d groups: %s",
                    ALIGN if config.round_to == "auto" else config.round_to, config.round_to,
                    len(raised), len(groups), ", ".join(raised))  # fmt: skip


def _kept(group: ChannelGroup, scores: Tensor, count: int) -> list[int]:
    best = torch.sort(-scores, stable=True).indices[:count]
    return [int(i) for i in group.expand(best.sort().values)]


def _kept_heads(coupling: Coupling, group: ChannelGroup, scores: Tensor, share: float) -> list[int]:
    """The heads ``group`` keeps: the best scored, by the sum of their channels' scores."""
    spec = coupling.attention[group.attention]
    per_head = scores.view(spec.sections, spec.heads, spec.head_dim).sum(dim=(0, 2))
    count = _keep_count(spec.heads, spec.heads * share, 1)
    return sorted(int(i) for i in torch.sort(-per_head, stable=True).indices[:count])


def _inputs_of(model: nn.Module, example_inputs: Any) -> Any:
    """The example inputs as given (tensor, tuple or keyword dict), else the model's own."""
    if example_inputs is None:
        make = getattr(model, "example_inputs", None)
        if not callable(make):
            raise ConfigError(
                "channel pruning traces the model: pass example_inputs= (a batch of 1 is enough)"
            )
        example_inputs = make()
    io.split(example_inputs)  # a ConfigError for anything but a tensor, tuple or dict
    return example_inputs


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
    heads: float | None = None,
) -> dict[str, Any]:
    """The structure plan of pruning ``model`` as ``config`` says (``model`` is not changed).

    ``config.ratio`` of the channels of every prunable group go (MLP widths, convolution
    filters); ``heads`` (default ``config.heads`` where the config has it, else 0) is the share
    of attention heads removed, whole heads, from each attention module channel pruning
    recognises (:mod:`deepshrink.graph.attention`).
    """
    _check_unmasked(model)
    heads = _heads_share(config, heads)
    inputs = _inputs_of(model, example_inputs)
    coupling = Coupling(model, inputs)
    chosen, skipped = _choose(coupling.groups, config, include, exclude, heads, coupling.refused)
    data = collect_calibration(model, config.criterion, calibration)
    generator = torch.Generator().manual_seed(config.seed)
    raw = {g.root: channel_scores(config.criterion, g, data, generator) for g in chosen}
    widths = [g for g in chosen if not g.attention]
    scores = {g.root: _unit_scores(g, raw[g.root]) for g in widths}
    counts = _counts(widths, scores, config)
    kept = {g.root: _kept(g, scores[g.root], counts[g.root]) for g in widths}
    kept_heads = {
        g.root: _kept_heads(coupling, g, raw[g.root], heads) for g in chosen if g.attention
    }
    for group in (g for g in chosen if g.attention):
        kept[group.root] = coupling.attention[group.attention].channels(kept_heads[group.root])
    checked = _checked(model, coupling, chosen, kept, kept_heads, inputs, skipped)
    for name, why in coupling.refused.items():
        skipped.setdefault(name, why)
    globs = (patterns(include), [*config.ignore, *patterns(exclude)])
    multihead = plan_multihead(model, heads, *globs, inputs, skipped) if heads else []
    if heads and not any(checked[root].attention for root in checked) and not multihead:
        raise ConfigError(
            f"heads={heads} removes no attention head: channel pruning cuts the heads of "
            "attention modules with separate q/k/v Linear projections, GPT-2's fused c_attn "
            "and nn.MultiheadAttention, "
            f"and found none it could cut ({_attention_reasons(coupling, skipped)}); "
            "drop heads= to prune the other layers"
        )
    for root, why in skipped.items():
        logger.info("channel pruning leaves %s whole: %s", root, why)
    plan = {
        "format": PLAN_FORMAT,
        "version": PLAN_VERSION,
        "config": {**config.to_dict(), "heads": heads},
        "inputs": input_specs(inputs),
        "groups": [
            _entry(g, kept[g.root], kept_heads.get(g.root)) for g in chosen if g.root in checked
        ],
        "cuts": merge_cuts([checked[root].cuts for root in checked]),
        "attention": [a for root in checked for a in checked[root].attention],
        "multihead": multihead,
        "skipped": skipped,
    }
    plan.update(measure(model, plan, inputs))
    return plan


def _checked(
    model: nn.Module,
    coupling: Coupling,
    chosen: list[ChannelGroup],
    kept: dict[str, list[int]],
    kept_heads: dict[str, list[int]],
    inputs: Any,
    skipped: dict[str, str],
) -> dict[str, Group]:
    """The chosen groups whose cut equals masking their dropped channels on ``inputs``;
    the others go to ``skipped`` with the operations they pass (:mod:`.channel_check`)."""
    groups = {}
    for group in chosen:
        heads = kept_heads.get(group.root)
        attention = [] if heads is None else [{"module": group.attention, "heads": len(heads)}]
        cuts = coupling.cuts(group.root, kept[group.root])
        groups[group.root] = Group(group.root, group.names, cuts, attention)
    for group in (g for g in chosen if g.root in failing(model, list(groups.values()), inputs)):
        del groups[group.root]
        skipped[group.root] = (
            "cutting them is not exact on the example inputs: an operation between "
            f"{', '.join(group.names)} ({', '.join(group.ops) or 'none seen'}) mixes channels"
        )
    return groups


def _attention_reasons(coupling: Coupling, skipped: dict[str, str]) -> str:
    packed = {name for name, why in coupling.refused.items() if "MultiheadAttention" in why}
    roots = {g.root for g in coupling.groups if g.attention} | packed
    found = [f"{name}: {why}" for name, why in skipped.items() if name in roots]
    return "; ".join(found) or "the model has no such module"


def _heads_share(config: ChannelPruning, heads: float | None) -> float:
    share = getattr(config, "heads", 0.0) if heads is None else heads
    share = float(share or 0.0)
    if not 0.0 <= share < 1.0:
        raise ConfigError(f"heads must be in [0, 1) (the share of heads removed), got {share}")
    return share


def _entry(group: ChannelGroup, kept: list[int], heads: list[int] | None) -> dict[str, Any]:
    entry = {"root": group.root, "channels": group.channels, "kept": kept, "layers": group.names}
    if heads is not None:
        entry.update(attention=group.attention, heads=heads)
    return entry


def apply_plan_(model: nn.Module, plan: dict[str, Any], example_inputs: Any = None) -> nn.Module:
    """Cut ``model`` to ``plan`` (from :func:`plan_channel_pruning`), record it, return it.

    The plan's cuts are replayed by slicing, without running the model; ``example_inputs``, when
    given, are run once to check the cut model.
    """
    if not isinstance(plan, dict) or plan.get("format") != PLAN_FORMAT:
        raise FormatError(f"not a channel plan (expected format {PLAN_FORMAT!r})")
    _check_unmasked(model)
    cut_(model, plan)
    if example_inputs is not None:
        check_runs(model, example_inputs)
    record(model, CHANNEL_KIND, plan=plan)
    before, after = plan["totals"]["macs"] if "totals" in plan else (0, 0)
    logger.info("channel pruning: %d groups cut, MACs %s → %s", len(plan["groups"]), before, after)
    return model


def _weights(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters(recurse=False) if p.ndim >= 2)


def _coverage(model: nn.Module, plan: dict[str, Any]) -> Coverage:
    """What the plan changes: layers that lose channels, groups left whole and why."""
    changed = {}
    for cut in plan["cuts"]:
        if len(cut["kept"]) < cut["size"]:
            changed[cut["layer"]] = _weights(model.get_submodule(cut["layer"]))
    for entry in plan.get("multihead", []):
        if entry["heads"][1] < entry["heads"][0]:
            module = model.get_submodule(entry["module"])
            changed[entry["module"]] = sum(p.numel() for p in module.parameters() if p.ndim >= 2)
    total = sum(p.numel() for p in {id(p): p for p in model.parameters()}.values() if p.ndim >= 2)
    skipped = dict(plan["skipped"])
    for group in plan["groups"]:
        if group["root"] not in changed and len(group["kept"]) == group["channels"]:
            skipped.setdefault(group["root"], "the ratio rounds to no channel removed")
    return Coverage("channel pruning", changed, skipped, total)


def prune_channels_(
    model: nn.Module,
    config: ChannelPruning,
    *,
    include: Patterns = None,
    exclude: Patterns = None,
    example_inputs: Any = None,
    calibration: Iterable[Any] | None = None,
    heads: float | None = None,
) -> nn.Module:
    """Plan and apply channel pruning in one call (``prune_`` calls this).

    Raises a ConfigError listing the groups left whole, and why, when a non-zero ``ratio`` or
    ``heads`` removes nothing; records the coverage (:func:`deepshrink.graph.coverage_of`).
    """
    inputs = _inputs_of(model, example_inputs)
    plan = plan_channel_pruning(
        model, config, inputs, include=include, exclude=exclude, calibration=calibration,
        heads=heads,
    )  # fmt: skip
    coverage = _coverage(model, plan)
    wanted = bool(config.ratio or plan["config"]["heads"])
    report_coverage(model, coverage, require_change=wanted)
    return apply_plan_(model, plan)


@register_rebuilder(CHANNEL_KIND)
def _rebuild_channels(model: nn.Module, entry: dict[str, Any]) -> None:
    """Give ``model`` the pruned shapes of the recorded plan (values come from the state dict)."""
    plan = entry.get("plan")
    if not isinstance(plan, dict):
        raise FormatError(f"{CHANNEL_KIND} entry has no plan")
    cut_(model, plan)
