"""Neuron pruning: remove whole units of dense layers, physically shrinking the model.

A unit of a ``Linear`` layer is one row of its weight (and one bias entry) and one column of the
next ``Linear``'s weight. Units are scored by a criterion over their row (L2 norm by default),
the lowest ``ratio`` of each layer go, and both layers are replaced by smaller ``Linear``
modules. Which layer comes next is read from a :func:`torch.fx.symbolic_trace` graph: a layer
qualifies when its output reaches exactly one other ``Linear`` through element-wise operations
only (activations, dropout), so removing a unit cannot change anything else. Each call is
recorded (``"prune.neurons"``) so a checkpoint rebuilds the smaller shapes.

With ``physical=False`` the same units are masked instead (their rows, bias entries and the next
layer's columns), which computes exactly what the physically pruned model computes.

>>> import torch
>>> from torch import nn
>>> from deepshrink.prune import NeuronPruning, prune_
>>> model = nn.Sequential(nn.Linear(8, 6), nn.ReLU(), nn.Linear(6, 3))
>>> _ = prune_(model, NeuronPruning(ratio=0.5))
>>> model
Sequential(
  (0): Linear(in_features=8, out_features=3, bias=True)
  (1): ReLU()
  (2): Linear(in_features=3, out_features=3, bias=True)
)
"""

from __future__ import annotations

import logging
import operator
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, fx, nn

from deepshrink.errors import ConfigError, FormatError
from deepshrink.functional.masks import keep_mask
from deepshrink.graph import record, register_rebuilder
from deepshrink.graph.coverage import measure_coverage, report_coverage
from deepshrink.graph.layers import unknown_reasons, weight_slots
from deepshrink.prune.config import NeuronPruning
from deepshrink.prune.criteria import score
from deepshrink.prune.masking import MASK_SUFFIX, apply_mask_, enforce_masks_, mask_parameters_
from deepshrink.prune.targets import Patterns, layer_values, select

__all__ = ["NEURON_KIND", "linear_successors", "prune_neurons_"]

logger = logging.getLogger(__name__)

#: Kind of the structure record written by physical neuron pruning.
NEURON_KIND = "prune.neurons"

_ELEMENTWISE_MODULES = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU, nn.Mish,
    nn.Tanh, nn.Sigmoid, nn.Hardtanh, nn.Hardswish, nn.Hardsigmoid, nn.Softplus, nn.PReLU,
    nn.Dropout, nn.AlphaDropout, nn.Identity,
)  # fmt: skip
_ELEMENTWISE_FUNCTIONS = {
    F.relu, F.relu6, F.leaky_relu, F.elu, F.selu, F.celu, F.gelu, F.silu, F.mish, F.hardtanh,
    F.hardswish, F.hardsigmoid, F.softplus, F.dropout, F.alpha_dropout,
    torch.relu, torch.tanh, torch.sigmoid, torch.dropout, operator.neg,
}  # fmt: skip
_ELEMENTWISE_METHODS = {"relu", "tanh", "sigmoid", "contiguous"}


def _elementwise(node: fx.Node, modules: dict[str, nn.Module], source: fx.Node) -> bool:
    """Whether ``node`` maps each feature of ``source`` to one feature, independently."""
    if not node.args or node.args[0] is not source or node.kwargs.get("inplace"):
        return False
    if any(isinstance(a, fx.Node) for a in (*node.args[1:], *node.kwargs.values())):
        return False
    if node.op == "call_module":
        module = modules.get(str(node.target))
        if isinstance(module, nn.PReLU):
            return module.num_parameters == 1
        return isinstance(module, _ELEMENTWISE_MODULES)
    if node.op == "call_function":
        return node.target in _ELEMENTWISE_FUNCTIONS
    return node.op == "call_method" and node.target in _ELEMENTWISE_METHODS


def _follow(node: fx.Node, modules: dict[str, nn.Module]) -> tuple[str | None, str]:
    """The ``Linear`` that ``node``'s output reaches, or ``None`` and the reason it does not."""
    while True:
        users = list(node.users)
        if len(users) != 1:
            return None, f"its output is used by {len(users)} operations"
        user = users[0]
        if user.op == "output":
            return None, "its output is the model's output"
        target = modules.get(str(user.target)) if user.op == "call_module" else None
        if isinstance(target, nn.Linear) and user.args and user.args[0] is node:
            return str(user.target), ""
        if not _elementwise(user, modules, node):
            return None, f"its output goes to {user.format_node() or user.name}, not to a Linear"
        node = user


def linear_successors(model: nn.Module) -> tuple[dict[str, str], dict[str, str]]:
    """``({layer: next Linear}, {layer: why it cannot be neuron-pruned})`` for every Linear.

    >>> model = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))
    >>> linear_successors(model)
    ({'0': '2'}, {'2': "its output is the model's output"})
    """
    try:
        graph = fx.symbolic_trace(model).graph
    except Exception as exc:  # tracing failures come in many types
        linears = [name for name, m in model.named_modules() if isinstance(m, nn.Linear)]
        shown = ", ".join(linears[:6]) + (
            f" and {len(linears) - 6} more" if len(linears) > 6 else ""
        )
        why = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise ConfigError(
            f"neuron pruning finds the layer that reads each nn.Linear's units ({shown or 'none'})"
            f" with a torch.fx trace, which fails on {type(model).__name__}: {why}; nothing was "
            "changed. Use ChannelPruning (it follows autograd and prunes transformer MLPs and "
            "heads) or MagnitudePruning"
        ) from None
    modules = dict(model.named_modules())
    calls: dict[str, list[fx.Node]] = {}
    for node in graph.nodes:
        if node.op == "call_module" and isinstance(modules.get(str(node.target)), nn.Linear):
            calls.setdefault(str(node.target), []).append(node)
    successors, unavailable = {}, _untraced(modules, calls)
    for name, nodes in calls.items():
        after, why = _follow(nodes[0], modules) if len(nodes) == 1 else (None, "it runs twice")
        if after is not None and len(calls[after]) > 1:
            after, why = None, f"the next layer {after!r} runs more than once"
        if after is None:
            unavailable[name] = why
        else:
            successors[name] = after
    return successors, unavailable


def _untraced(modules: dict[str, nn.Module], calls: dict[str, list[fx.Node]]) -> dict[str, str]:
    """Linear layers the trace never calls: inside a module torch.fx keeps whole (a
    ``torch.nn`` module such as ``TransformerEncoderLayer``), or unused."""
    reasons = {}
    for name, module in modules.items():
        if not isinstance(module, nn.Linear) or name in calls:
            continue
        parent = next((p for p in calls if p and name.startswith(f"{p}.")), None)
        owner = parent or next(
            (n for n in modules if n and name.startswith(f"{n}.") and n not in calls
             and type(modules[n]).__module__.startswith("torch.nn")), None,
        )  # fmt: skip
        reasons[name] = (
            f"inside {owner} ({type(modules[owner]).__name__}), which torch.fx traces as one call"
            if owner
            else "not called in the traced forward"
        )
    return reasons


def _unit_scores(layer: nn.Linear, config: NeuronPruning, generator: torch.Generator) -> Tensor:
    return score(config.criterion, layer.weight, (1,), generator)


def _alive(layer: nn.Linear) -> Tensor | None:
    """Units not already masked away (a row of the weight mask with any ``True``)."""
    mask = layer._buffers.get(f"weight{MASK_SUFFIX}")
    return None if mask is None else mask.any(dim=1)


def prune_neurons_(
    model: nn.Module,
    config: NeuronPruning,
    *,
    include: Patterns = None,
    exclude: Patterns = None,
    example_inputs: Any = None,
) -> nn.Module:
    """Remove (or mask) the lowest-scoring units of the selected layers (``prune_`` calls this)."""
    successors, unavailable = linear_successors(model)
    unavailable |= unknown_reasons(model)
    layers = select(successors, include, exclude, method="neuron pruning", unavailable=unavailable)
    ratios = layer_values(list(layers), config.ratio, config.overrides, "neuron pruning")
    enforce_masks_(model)
    generator = torch.Generator().manual_seed(config.seed)
    keeps = {}
    for name in layers:
        layer = model.get_submodule(name)
        keep = keep_mask(_unit_scores(layer, config, generator), ratios[name], _alive(layer))
        if not keep.any():  # never remove a layer's last unit
            keep[int(_unit_scores(layer, config, generator).argmax())] = True
        keeps[name] = keep
    if config.physical:
        for name, keep in keeps.items():
            _shrink(model, name, layers[name], keep.nonzero().flatten())
        entries = [{"layer": n, "next": layers[n], "kept": int(k.sum())} for n, k in keeps.items()]
        record(model, NEURON_KIND, layers=entries)
    else:
        mask_parameters_(model, _unit_masks(model, keeps, layers))
    logger.info(
        "neuron pruning: %s",
        ", ".join(f"{n} {int(k.sum())}/{k.numel()} units" for n, k in keeps.items()),
    )
    _report(model, list(keeps), unavailable, narrowed=include is not None or exclude is not None)
    return model


def _report(model: nn.Module, changed: list[str], unavailable: dict[str, str], *,
            narrowed: bool) -> None:  # fmt: skip
    skipped = {
        n: "neuron pruning removes units of nn.Linear chains only" for n in weight_slots(model)
    }
    skipped |= unavailable
    report_coverage(model, measure_coverage(
        "neuron pruning", model, changed, skipped, narrowed=narrowed
    ))  # fmt: skip


def _unit_masks(
    model: nn.Module, keeps: dict[str, Tensor], successors: dict[str, str]
) -> dict[str, Tensor]:
    masks: dict[str, Tensor] = {}

    def add(key: str, mask: Tensor) -> None:
        masks[key] = masks[key] & mask if key in masks else mask

    for name, keep in keeps.items():
        layer, after = model.get_submodule(name), model.get_submodule(successors[name])
        add(f"{name}.weight", keep[:, None].expand_as(layer.weight))
        if layer.bias is not None:
            add(f"{name}.bias", keep)
        add(f"{successors[name]}.weight", keep[None, :].expand_as(after.weight))
    return masks


def _linear_like(
    old: nn.Linear, in_features: int, out_features: int, rows: Tensor | None, cols: Tensor | None
) -> nn.Linear:
    """A plain Linear of the new shape, holding ``old``'s sliced values (and sliced masks)."""
    if type(old) is not nn.Linear:
        raise ConfigError(f"neuron pruning replaces plain nn.Linear layers, not {type(old)}")
    new = nn.Linear(in_features, out_features, bias=old.bias is not None)
    new = new.to(device=old.weight.device, dtype=old.weight.dtype)
    new.train(old.training)
    for name in ("weight", "bias"):
        value: Tensor | None = getattr(old, name)
        if value is None:
            continue
        if rows is not None:
            value = value[rows]
        if cols is not None and name == "weight":
            value = value[:, cols]
        mask = old._buffers.get(f"{name}{MASK_SUFFIX}")
        target = getattr(new, name)
        target.requires_grad_(getattr(old, name).requires_grad)
        if value.shape == target.shape:  # a physical cut (a rebuild keeps new values)
            with torch.no_grad():
                target.copy_(value)
        if mask is not None:
            if value.shape == target.shape:
                mask = mask[rows] if rows is not None else mask
                mask = mask[:, cols] if cols is not None and name == "weight" else mask
            else:
                mask = torch.ones_like(target, dtype=torch.bool)
            apply_mask_(new, name, mask)
    return new


def _shrink(model: nn.Module, name: str, after: str, keep: Tensor | int) -> None:
    """Replace ``name`` and ``after`` by Linear layers with only the kept units between them.

    ``keep`` is the index of the kept units, or (when rebuilding) just how many there are.
    """
    layer, successor = model.get_submodule(name), model.get_submodule(after)
    if not isinstance(layer, nn.Linear) or not isinstance(successor, nn.Linear):
        raise FormatError(f"{NEURON_KIND}: {name!r} and {after!r} must both be Linear layers")
    index = keep if isinstance(keep, Tensor) else None
    count = int(keep.numel()) if isinstance(keep, Tensor) else int(keep)
    new_layer = _linear_like(layer, layer.in_features, count, index, None)
    new_next = _linear_like(successor, count, successor.out_features, None, index)
    model.set_submodule(name, new_layer)
    model.set_submodule(after, new_next)


@register_rebuilder(NEURON_KIND)
def _rebuild_neurons(model: nn.Module, entry: dict[str, Any]) -> None:
    """Give the layers named in ``entry`` their pruned shapes (values come from the state dict)."""
    for item in entry.get("layers", []):
        try:
            _shrink(model, str(item["layer"]), str(item["next"]), int(item["kept"]))
        except (KeyError, AttributeError, TypeError, ValueError) as exc:
            raise FormatError(
                f"{NEURON_KIND} entry {item!r} does not fit the model: {exc}"
            ) from None
