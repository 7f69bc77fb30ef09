"""The one place that knows layer types: where each module keeps its weight matrices.

An *adapter* per layer type says which parameters of a module are weight matrices (a
:class:`Slot` each), which axis is fan-out and which fan-in, what kind of weight it is (the kind
that per-kind settings such as ``bits={"linear": 5}`` refer to) and whether the module can be
replaced by another (a factorized layer). Methods, the encoder and reports reach layers only
through :func:`weight_slots`; adding a layer type is one :func:`register_adapter` call.

Built in: ``Linear``, ``Conv1d/2d/3d``, ``ConvTranspose1d/2d/3d``, Hugging Face's ``Conv1D``
(weight stored in × out, matched by class name so transformers is never imported),
``Embedding``/``EmbeddingBag``, the per-gate matrices of ``LSTM``/``GRU``/``RNN`` and the packed
projections of ``MultiheadAttention`` (its ``out_proj`` is a ``Linear`` of its own).

Parameters, not modules, are the unit: a parameter that several modules hold (GPT-2's ``lm_head``
and ``wte``) is one slot, owned by the first module that holds it, with the others as
``aliases``.

A slot is named by its module (``"fc1"``) when the parameter is ``weight``, else by module and
parameter (``"lstm.weight_ih_l0"``, ``"attn.in_proj_weight"``); layer globs match these names.

>>> from torch import nn
>>> model = nn.Sequential(nn.Embedding(10, 4), nn.LSTM(4, 3), nn.Linear(3, 2))
>>> [(s.name, s.kind) for s in weight_slots(model).values()]  # doctest: +NORMALIZE_WHITESPACE
[('0', 'embedding'), ('1.weight_ih_l0', 'recurrent'), ('1.weight_hh_l0', 'recurrent'),
 ('2', 'linear')]
>>> tied = nn.Sequential(nn.Embedding(10, 4), nn.Linear(4, 10, bias=False))
>>> tied[1].weight = tied[0].weight
>>> weight_slots(tied)["0"].aliases
(('1', 'weight'),)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

__all__ = [
    "Adapter",
    "Slot",
    "adapter_of",
    "as_linear",
    "is_transposed_linear",
    "register_adapter",
    "replace_blocker",
    "slot_counts",
    "tied_parameters",
    "unknown_reasons",
    "unknown_weights",
    "weight_slots",
]


@dataclass(frozen=True)
class Adapter:
    """How one layer type exposes its weights.

    ``parameters(module)`` lists ``(parameter name, fan-out axis, fan-in axis)``; ``kind`` is the
    name per-kind settings use; ``replaceable`` says whether the module may be swapped for a
    factorized one (its forward reads nothing a replacement would not have).
    """

    kind: str
    parameters: Callable[[nn.Module], list[tuple[str, int, int]]]
    replaceable: bool = True


@dataclass(frozen=True)
class Slot:
    """One weight matrix of a model: ``module.parameter`` with its axes and aliases."""

    module_name: str
    parameter: str
    kind: str
    out_axis: int
    in_axis: int
    module: nn.Module
    aliases: tuple[tuple[str, str], ...] = ()

    @property
    def name(self) -> str:
        """The slot's name for globs and reports: the module's, plus the parameter if not
        ``weight``."""
        if self.parameter == "weight":
            return self.module_name
        return f"{self.module_name}.{self.parameter}" if self.module_name else self.parameter

    @property
    def qualified(self) -> str:
        """``module.parameter``, as in the state dict."""
        return f"{self.module_name}.{self.parameter}" if self.module_name else self.parameter

    @property
    def tensor(self) -> Tensor:
        """The current value of the weight (computed for shared or fake-quantized layers)."""
        return getattr(self.module, self.parameter)

    @property
    def numel(self) -> int:
        return self.tensor.numel()

    @property
    def tied(self) -> bool:
        return bool(self.aliases)


_ADAPTERS: dict[type[nn.Module] | str, Adapter] = {}


def register_adapter(layer_type: type[nn.Module] | str, adapter: Adapter) -> None:
    """Teach deepshrink a layer type (a class, or ``"module.path.ClassName"`` to match by name
    without importing it). Subclasses of a registered class use its adapter."""
    _ADAPTERS[layer_type] = adapter


def _class_key(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def adapter_of(module: nn.Module) -> Adapter | None:
    """The adapter of ``module``'s type (or of its nearest registered base class), if any."""
    for cls in type(module).__mro__:
        found = _ADAPTERS.get(cls) or _ADAPTERS.get(_class_key(cls))
        if found is not None:
            return found
    return None


def _weight(out_axis: int, in_axis: int) -> Callable[[nn.Module], list[tuple[str, int, int]]]:
    def parameters(module: nn.Module) -> list[tuple[str, int, int]]:
        return [("weight", out_axis, in_axis)] if _has(module, "weight") else []

    return parameters


def _has(module: nn.Module, name: str) -> bool:
    """Whether ``module`` has weight ``name``: a parameter, or a computed one (shared layers)."""
    if module._parameters.get(name) is not None or f"{name}_orig" in module._parameters:
        return True  # (``_orig``: pruned by torch.nn.utils.prune; listed so it gets refused)
    computed = getattr(module, "computed_parameters", None)
    return callable(computed) and name in computed()


def _recurrent(module: nn.Module) -> list[tuple[str, int, int]]:
    names = getattr(module, "_flat_weights_names", [])
    return [(n, 0, 1) for n in names if n.startswith("weight") and _has(module, n)]


def _attention(module: nn.Module) -> list[tuple[str, int, int]]:
    names = ("in_proj_weight", "q_proj_weight", "k_proj_weight", "v_proj_weight")
    return [(n, 0, 1) for n in names if _has(module, n)]


for _cls in (nn.Linear, nn.Bilinear):
    register_adapter(_cls, Adapter("linear", _weight(0, 1)))
for _cls in (nn.Conv1d, nn.Conv2d, nn.Conv3d):
    register_adapter(_cls, Adapter("conv", _weight(0, 1)))
for _cls in (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d):
    register_adapter(_cls, Adapter("conv", _weight(1, 0)))
_HF_CONV1D = "transformers.pytorch_utils.Conv1D"
register_adapter(_HF_CONV1D, Adapter("linear", _weight(1, 0)))
for _cls in (nn.Embedding, nn.EmbeddingBag):
    register_adapter(_cls, Adapter("embedding", _weight(1, 0), replaceable=False))
register_adapter(nn.RNNBase, Adapter("recurrent", _recurrent, replaceable=False))
register_adapter(nn.MultiheadAttention, Adapter("attention", _attention, replaceable=False))
del _cls


def _owners(model: nn.Module) -> Iterator[tuple[str, nn.Module, str, int, int, Adapter]]:
    for module_name, module in model.named_modules(remove_duplicate=False):
        adapter = adapter_of(module)
        if adapter is None:
            continue
        for parameter, out_axis, in_axis in adapter.parameters(module):
            yield module_name, module, parameter, out_axis, in_axis, adapter


def _identity(module: nn.Module, parameter: str) -> int:
    """What makes two slots one: the parameter object, or the shared codebook of shared layers."""
    value = module._parameters.get(parameter)
    if value is None:
        value = module._parameters.get(f"{parameter}_centroids", None)
    return id(value) if value is not None else id(getattr(module, parameter))


def weight_slots(model: nn.Module) -> dict[str, Slot]:
    """Every weight matrix of ``model`` by slot name, in model order; tied ones once."""
    slots: dict[int, Slot] = {}
    for module_name, module, parameter, out_axis, in_axis, adapter in _owners(model):
        key = _identity(module, parameter)
        if key in slots:
            first = slots[key]
            if (module_name, parameter) == (first.module_name, first.parameter):
                continue  # the same module reached twice (a reused submodule)
            aliases = (*first.aliases, (module_name, parameter))
            slots[key] = Slot(first.module_name, first.parameter, first.kind, first.out_axis,
                              first.in_axis, first.module, aliases)  # fmt: skip
            continue
        slots[key] = Slot(module_name, parameter, adapter.kind, out_axis, in_axis, module)
    return {slot.name: slot for slot in slots.values()}


def unknown_weights(model: nn.Module) -> dict[str, tuple[int, str]]:
    """Parameters of two or more dimensions that no adapter exposes: ``{name: (size, why)}``.

    They are what no method can compress until their layer type gets an adapter.

    >>> class Scale(nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.kernel = nn.Parameter(torch.ones(3, 3))
    >>> unknown_weights(nn.Sequential(Scale(), nn.Linear(3, 2)))
    {'0.kernel': (9, 'no layer adapter for Scale')}
    """
    slots = weight_slots(model).values()
    known = {id(getattr(s.module, s.parameter)) for s in slots}
    known |= {id(p) for s in slots for p in _codebooks(s)}
    found: dict[str, tuple[int, str]] = {}
    seen: set[int] = set()
    for module_name, module in model.named_modules():
        if adapter_of(module) is not None:
            continue
        for name, value in module._parameters.items():
            if value is None or value.ndim < 2 or id(value) in known | seen:
                continue
            seen.add(id(value))
            qualified = f"{module_name}.{name}" if module_name else name
            found[qualified] = (value.numel(), f"no layer adapter for {type(module).__name__}")
    return found


def unknown_reasons(model: nn.Module) -> dict[str, str]:
    """``{parameter: why}`` for :func:`unknown_weights`, for error messages."""
    return {name: why for name, (_, why) in unknown_weights(model).items()}


def _codebooks(slot: Slot) -> list[Tensor]:
    value = slot.module._parameters.get(f"{slot.parameter}_centroids")
    return [] if value is None else [value]


def tied_parameters(model: nn.Module) -> list[list[str]]:
    """Groups of state-dict names that are one tensor (``[["transformer.wte.weight",
    "lm_head.weight"]]``), from every parameter of the model, weight or not."""
    groups: dict[int, list[str]] = {}
    for module_name, module in model.named_modules(remove_duplicate=False):
        for name, value in module._parameters.items():
            if value is not None:
                qualified = f"{module_name}.{name}" if module_name else name
                groups.setdefault(id(value), []).append(qualified)
    return [sorted(set(g), key=g.index) for g in groups.values() if len(set(g)) > 1]


def replace_blocker(model: nn.Module, slot: Slot) -> str:
    """Why ``slot``'s module cannot be swapped for another module, or ``""`` when it can."""
    adapter = adapter_of(slot.module)
    if adapter is None or not adapter.replaceable:
        return f"{type(slot.module).__name__} layers cannot be replaced by a factorized layer"
    if slot.tied:
        others = ", ".join(f"{m}.{p}" if m else p for m, p in slot.aliases)
        return f"its weight is tied to {others}; replacing it would untie them and add weights"
    parent_name, _, child = slot.module_name.rpartition(".")
    parent = model.get_submodule(parent_name) if slot.module_name else None
    if isinstance(parent, nn.MultiheadAttention) and child == "out_proj":
        return "nn.MultiheadAttention reads out_proj.weight directly"
    return ""


def is_transposed_linear(module: nn.Module) -> bool:
    """Whether ``module`` is a Hugging Face ``Conv1D``: a linear map whose weight is in × out."""
    return any(_class_key(c) == _HF_CONV1D for c in type(module).__mro__)


def as_linear(module: nn.Module) -> nn.Linear:
    """An ``nn.Linear`` computing what ``module`` (a ``Linear`` or HF ``Conv1D``) computes, sharing
    nothing with it (for building replacements)."""
    if isinstance(module, nn.Linear):
        return module
    if not is_transposed_linear(module):
        raise TypeError(f"{type(module).__name__} is not a linear layer")
    weight, bias = module.weight.detach(), module.bias
    linear = nn.Linear(weight.shape[0], weight.shape[1], bias=bias is not None)
    linear = linear.to(device=weight.device, dtype=weight.dtype)
    with torch.no_grad():
        linear.weight.copy_(weight.t())
        if bias is not None:
            linear.bias.copy_(bias.detach())
    return linear


def slot_counts(model: nn.Module) -> dict[str, tuple[int, int]]:
    """``{slot: (non-zero weights, weights)}`` for every weight matrix of ``model``."""
    with torch.no_grad():
        return {
            name: (int(torch.count_nonzero(slot.tensor)), slot.numel)
            for name, slot in weight_slots(model).items()
        }


def describe(model: nn.Module) -> list[dict[str, Any]]:
    """One row per slot: name, kind, shape, aliases (for ``deepshrink info`` and docs)."""
    return [
        {"name": s.name, "kind": s.kind, "shape": tuple(s.tensor.shape),
         "aliases": [f"{m}.{p}" for m, p in s.aliases]}
        for s in weight_slots(model).values()
    ]  # fmt: skip
