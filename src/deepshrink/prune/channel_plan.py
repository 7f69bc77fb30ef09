"""Channel plans as data: the per-layer cuts a plan records, and their replay without tracing.

A channel plan (:func:`deepshrink.prune.plan_channel_pruning`) keeps, next to its groups, the
*cuts*: for every layer it touches, which output or input channels stay (``{"layer", "type",
"dim", "size", "kept"}``), and for every attention module that loses heads, how many heads are
left. Applying or replaying a plan is slicing those layers (:mod:`deepshrink.graph.slicing`) and
setting the head counts: no tracing, so a checkpoint or ``.dsz`` file of a pruned token model
(BERT, GPT-2) loads on a fresh model without guessing its inputs. The example inputs the plan
was made with are kept as specs (position or keyword, shape, dtype) for the record.

Plans of version 1 (without cuts) are still replayed by tracing zeros of the recorded shapes.

>>> import torch
>>> input_specs({"input_ids": torch.zeros(1, 5, dtype=torch.long)})
[{'key': 'input_ids', 'shape': [1, 5], 'dtype': 'torch.int64'}]
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from deepshrink.errors import ConfigError, FormatError
from deepshrink.graph import io
from deepshrink.graph.attention import set_heads
from deepshrink.graph.coupling import Coupling
from deepshrink.graph.mha import cut_heads_
from deepshrink.graph.slicing import channels_of, is_conv1d, slice_layer

__all__ = [
    "PLAN_FORMAT",
    "PLAN_VERSION",
    "check_runs",
    "cut_",
    "input_specs",
    "measure",
    "merge_cuts",
    "plan_cuts",
]

PLAN_FORMAT = "deepshrink.channel-plan"
PLAN_VERSION = 2
_KIND = "prune.channels"
_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


def input_specs(example: Any) -> list[dict[str, Any]]:
    """Position or keyword, shape and dtype of every tensor of the example inputs."""
    if isinstance(example, Tensor):
        example = (example,)
    items = example.items() if isinstance(example, Mapping) else enumerate(example)
    specs = []
    for key, value in items:
        if isinstance(value, Tensor):
            place = {"key": key} if isinstance(key, str) else {"index": key}
            specs.append({**place, "shape": list(value.shape), "dtype": str(value.dtype)})
    return specs


def plan_cuts(coupling: Coupling, groups: list[tuple[str, list[int]]]) -> list[dict[str, Any]]:
    """The cuts of every ``(group root, kept channels)``, one per layer and dim."""
    return merge_cuts([coupling.cuts(root, kept) for root, kept in groups])


def merge_cuts(per_group: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """One cut per layer and dim from the cuts of several groups.

    A layer that reads a concatenation is cut by several groups: it keeps the channels that
    every one of them keeps.
    """
    cuts: dict[tuple[str, str], dict[str, Any]] = {}
    for group in per_group:
        for cut in group:
            key = (cut["layer"], cut["dim"])
            if key in cuts:
                both = set(cuts[key]["kept"]) & set(cut["kept"])
                cut = {**cut, "kept": sorted(both)}
            cuts[key] = cut
    return list(cuts.values())


def _fits(model: nn.Module, cut: Any) -> nn.Module:
    try:
        name, dim, size = str(cut["layer"]), str(cut["dim"]), int(cut["size"])
        kind, kept = str(cut["type"]), [int(i) for i in cut["kept"]]
    except (KeyError, TypeError, ValueError) as exc:
        raise FormatError(f"{_KIND}: malformed cut entry ({exc})") from None
    try:
        module = model.get_submodule(name)
    except AttributeError:
        module = None
    found = None if module is None else (type(module).__name__, channels_of(module, dim))
    if found != (kind, size) or dim not in ("out", "in"):
        have = "absent" if found is None else f"{found[0]} with {found[1]} {dim} channels"
        raise FormatError(
            f"{_KIND}: the plan cuts {name!r} ({kind} with {size} {dim} channels), which does "
            f"not fit the model ({have}); plans apply to the architecture they were made for"
        )
    if not kept or kept != sorted(set(kept)) or kept[0] < 0 or kept[-1] >= size:
        raise FormatError(f"{_KIND}: kept channels of {name!r} must be sorted, distinct, in range")
    return module


def cut_(model: nn.Module, plan: dict[str, Any]) -> None:
    """Slice ``model`` to the plan's cuts and head counts; FormatError when it does not fit."""
    cuts = plan.get("cuts")
    if cuts is None:
        cuts = _traced_cuts(model, plan)
    if not isinstance(cuts, list):
        raise FormatError(f"{_KIND}: 'cuts' must be a list")
    modules = [_fits(model, cut) for cut in cuts]  # check every cut before changing anything
    for module, cut in zip(modules, cuts, strict=True):
        slice_layer(module, cut["dim"], [int(i) for i in cut["kept"]])
    for entry in plan.get("attention", []):
        try:
            module, heads = model.get_submodule(str(entry["module"])), int(entry["heads"])
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise FormatError(f"{_KIND}: attention entry {entry!r} does not fit ({exc})") from None
        set_heads(module, heads)
    for entry in plan.get("multihead", []):
        try:
            name, heads, kept = str(entry["module"]), int(entry["heads"][0]), entry["kept"]
            kept = [int(i) for i in kept]
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise FormatError(f"{_KIND}: multihead entry {entry!r} is malformed ({exc})") from None
        cut_heads_(model, name, heads, kept)


def _traced_cuts(model: nn.Module, plan: dict[str, Any]) -> list[dict[str, Any]]:
    """Cuts of a version-1 plan (groups only), found by tracing zeros of its input shapes."""
    shapes = plan.get("inputs")
    if not isinstance(shapes, list) or not shapes or not isinstance(shapes[0], list):
        raise FormatError(f"{_KIND}: the plan has neither cuts nor input shapes to trace with")
    coupling = Coupling(model, tuple(torch.zeros([int(d) for d in s]) for s in shapes))
    groups = {g.root: g for g in coupling.groups}
    chosen = []
    for entry in plan.get("groups", []):
        try:
            root, kept = str(entry["root"]), [int(i) for i in entry["kept"]]
            channels = int(entry["channels"])
        except (KeyError, TypeError, ValueError) as exc:
            raise FormatError(f"{_KIND}: malformed group entry ({exc})") from None
        group = groups.get(root)
        if group is None or group.channels != channels or set(group.names) != set(entry["layers"]):
            found = "absent" if group is None else f"{group.channels} channels over {group.names}"
            raise FormatError(
                f"{_KIND}: the plan's group {root!r} ({channels} channels over "
                f"{entry['layers']}) does not fit the model ({found}); plans apply to the "
                "architecture they were made for"
            )
        if len(set(kept)) != len(kept) or not all(0 <= i < channels for i in kept) or not kept:
            raise FormatError(f"{_KIND}: kept channels of {root!r} must be distinct, in range")
        chosen.append((root, kept))
    return plan_cuts(coupling, chosen)


def _shapes(model: nn.Module) -> dict[str, tuple[int, int, str]]:
    shapes = {}
    for name, module in model.named_modules():
        if isinstance(module, _LAYERS) or is_conv1d(module):
            fan_in, fan_out = channels_of(module, "in"), channels_of(module, "out")
            fan_in *= getattr(module, "groups", 1)
            shapes[name] = (int(fan_in), int(fan_out), type(module).__name__)
    return shapes


def measure(model: nn.Module, plan: dict[str, Any], inputs: Any) -> dict[str, Any]:
    """Per-layer channels and MACs, and totals, before and after the plan (on a copy that must
    run on ``inputs``)."""
    from deepshrink.eval import count_parameters, per_layer_macs

    pruned = copy.deepcopy(model)
    cut_(pruned, plan)
    check_runs(pruned, inputs)
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


def check_runs(model: nn.Module, inputs: Any) -> None:
    """Run the cut ``model`` once on ``inputs``; a ConfigError when it fails."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            io.call(model, inputs)
    except Exception as exc:  # surgery bugs surface as shape errors of many types
        raise ConfigError(
            f"the channel-pruned {type(model).__name__} no longer runs: {type(exc).__name__}: "
            f"{exc}; ignore= the layers named there and report the model"
        ) from None
    finally:
        model.train(was_training)
