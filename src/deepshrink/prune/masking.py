"""Masks held on modules: a ``<name>_mask`` buffer beside each pruned parameter, kept enforced.

Why not ``torch.nn.utils.prune`` or a parametrization: both rename the parameter
(``weight_orig``, ``parametrizations.weight.original``), so state dicts, optimizers and every
other method see a different model. Here the parameter stays ``weight`` and holds the real,
zeroed values; a ``bool`` buffer ``weight_mask`` is added (so it is in the state dict and the
checkpoint). Two hooks keep pruned values exactly zero:

* a gradient hook zeroes the parameter's gradient where the mask prunes, so an optimizer never
  moves a pruned value (weight decay of a zero is zero, and momentum built from zero gradients
  is zero);
* a forward pre-hook re-applies the mask whenever the parameter or the mask changed since it last
  did (``Tensor._version``): after ``load_state_dict``, or an optimizer with stale momentum. It
  does nothing otherwise, so it never modifies a tensor autograd still needs.

Pruned values are written as +0.0 (``masked_fill``), not multiplied by zero, which would leave
−0.0 for negative weights: all-zero bytes compress better. Each masking is recorded
(``"prune.mask"``) so a checkpoint's model can be rebuilt with the same buffers;
:func:`finalize_` writes the zeros for good and removes all of it.

>>> from torch import nn
>>> layer = nn.Linear(3, 2)
>>> apply_mask_(layer, "weight", torch.tensor([[True, False, True], [False, True, True]]))
>>> layer.weight.grad is None, int((layer.weight == 0).sum())
(True, 2)
>>> _ = layer(torch.ones(1, 3)).sum().backward()
>>> layer.weight.grad[0, 1].item(), masked_parameters(layer)
(0.0, ['weight'])
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.weak import WeakIdKeyDictionary

from deepshrink.errors import ConfigError, FormatError
from deepshrink.graph import record, register_rebuilder, structure_of
from deepshrink.graph.structure import STRUCTURE_ATTRIBUTE

__all__ = [
    "MASK_KIND",
    "MASK_SUFFIX",
    "apply_mask_",
    "enforce_masks_",
    "finalize_",
    "iter_masks",
    "mask_of",
    "mask_parameters_",
    "masked_parameters",
    "remove_mask_",
]

MASK_SUFFIX = "_mask"
#: Kind of the structure record written when parameters are masked.
MASK_KIND = "prune.mask"
_VERSIONS = "_deepshrink_mask_versions"
#: parameter → handle of its gradient-mask hook (weak: a copied parameter is not in it).
_GRAD_HOOKS = WeakIdKeyDictionary()


def masked_parameters(module: nn.Module) -> list[str]:
    """Names of ``module``'s own parameters that carry a mask buffer."""
    buffers = module._buffers
    return [name for name in module._parameters if f"{name}{MASK_SUFFIX}" in buffers]


def mask_of(module: nn.Module, name: str) -> Tensor | None:
    """The mask buffer of parameter ``name`` of ``module``, or ``None`` when it has none."""
    if name not in module._parameters:
        return None
    return module._buffers.get(f"{name}{MASK_SUFFIX}")


def iter_masks(model: nn.Module) -> Iterator[tuple[str, nn.Module, str, Tensor]]:
    """``(module name, module, parameter name, mask)`` for every masked parameter in ``model``."""
    for module_name, module in model.named_modules():
        for name in masked_parameters(module):
            mask = module._buffers[f"{name}{MASK_SUFFIX}"]
            assert mask is not None
            yield module_name, module, name, mask


def _check_maskable(module: nn.Module, name: str, shape: torch.Size) -> nn.Parameter:
    if f"{name}_orig" in module._parameters:
        raise ConfigError(
            f"{type(module).__name__}.{name} is already pruned by torch.nn.utils.prune "
            f"({name}_orig); call torch.nn.utils.prune.remove(module, {name!r}) first"
        )
    parameter = module._parameters.get(name)
    if parameter is None:
        raise ConfigError(f"{type(module).__name__} has no parameter {name!r} to mask")
    if parameter.shape != shape:
        raise ConfigError(
            f"mask of shape {tuple(shape)} does not fit {name} of shape {tuple(parameter.shape)}"
        )
    return parameter


def apply_mask_(module: nn.Module, name: str, mask: Tensor) -> None:
    """Mask parameter ``name`` of ``module`` with ``mask`` (``True`` = keep), zeroing the rest.

    A parameter masked before keeps what both masks prune (masks only ever shrink).
    """
    parameter = _check_maskable(module, name, mask.shape)
    mask = mask.to(device=parameter.device, dtype=torch.bool)
    existing = mask_of(module, name)
    if existing is None:
        module.register_buffer(
            f"{name}{MASK_SUFFIX}", mask.clone(memory_format=torch.contiguous_format)
        )
    else:
        existing.logical_and_(mask)
    _install_hooks(module)
    enforce_masks_(module, recurse=False)


def remove_mask_(module: nn.Module, name: str) -> None:
    """Zero the pruned values of parameter ``name`` for good; remove the mask and its hooks."""
    mask = mask_of(module, name)
    if mask is None:
        return
    parameter = module._parameters[name]
    assert parameter is not None
    with torch.no_grad():
        parameter.masked_fill_(~mask, 0.0)
    del module._buffers[f"{name}{MASK_SUFFIX}"]
    handle = _GRAD_HOOKS.pop(parameter, None)
    if handle is not None:
        handle.remove()
    module.__dict__.get(_VERSIONS, {}).pop(name, None)
    if not masked_parameters(module):
        for key, hook in list(module._forward_pre_hooks.items()):
            if hook is _forward_pre_hook:
                del module._forward_pre_hooks[key]


def enforce_masks_(model: nn.Module, *, recurse: bool = True) -> None:
    """Zero every masked value now (e.g. after an optimizer step with stale momentum)."""
    modules = model.modules() if recurse else [model]
    for module in modules:
        for name in masked_parameters(module):
            _refresh(module, name, force=True)


def _install_hooks(module: nn.Module) -> None:
    if not any(hook is _forward_pre_hook for hook in module._forward_pre_hooks.values()):
        module.register_forward_pre_hook(_forward_pre_hook)


def _forward_pre_hook(module: nn.Module, args: Any) -> None:
    for name in masked_parameters(module):
        _refresh(module, name, force=False)


def _refresh(module: nn.Module, name: str, *, force: bool) -> None:
    """Re-apply the mask of ``name`` if it or the parameter changed; make sure of the grad hook."""
    parameter = module._parameters[name]
    mask = module._buffers[f"{name}{MASK_SUFFIX}"]
    assert parameter is not None and mask is not None
    versions: dict[str, tuple[int, ...]] = module.__dict__.setdefault(_VERSIONS, {})
    if force or versions.get(name) != _stamp(parameter, mask):
        with torch.no_grad():
            parameter.masked_fill_(~mask, 0.0)
        versions[name] = _stamp(parameter, mask)
    if parameter.requires_grad:
        _ensure_grad_hook(module, name, parameter)


def _stamp(parameter: Tensor, mask: Tensor) -> tuple[int, ...]:
    return (id(parameter), parameter._version, id(mask), mask._version)


def _ensure_grad_hook(module: nn.Module, name: str, parameter: Tensor) -> None:
    """Register the gradient mask on ``parameter`` once (again on a copy made by deepcopy)."""
    if parameter not in _GRAD_HOOKS:
        _GRAD_HOOKS[parameter] = parameter.register_hook(_GradientMask(module, name))


class _GradientMask:
    """Zeroes a gradient where the module's current mask prunes (looked up at call time)."""

    def __init__(self, module: nn.Module, name: str) -> None:
        self.module = weakref.ref(module)
        self.name = name

    def __call__(self, grad: Tensor) -> Tensor:
        module = self.module()
        mask = None if module is None else mask_of(module, self.name)
        return grad if mask is None else grad.masked_fill(~mask, 0.0)


def mask_parameters_(model: nn.Module, masks: dict[str, Tensor]) -> None:
    """Apply ``{"fc1.weight": mask, ...}`` to ``model`` and record the newly masked parameters.

    The record (``"prune.mask"``) lets :func:`deepshrink.train.load_checkpoint` add the same mask
    buffers to a fresh model before loading the state dict.
    """
    fresh = []
    for qualified, mask in masks.items():
        module_name, _, name = qualified.rpartition(".")
        module = model.get_submodule(module_name)
        if mask_of(module, name) is None:
            fresh.append(qualified)
        apply_mask_(module, name, mask)
    if fresh:
        record(model, MASK_KIND, parameters=fresh)


def finalize_(model: nn.Module) -> nn.Module:
    """Make the masks permanent: pruned values stay zero, no mask buffers or hooks are left.

    The model computes exactly what it computed before; its state dict has the original keys.

    >>> from torch import nn
    >>> model = nn.Sequential(nn.Linear(2, 2))
    >>> mask_parameters_(model, {"0.weight": torch.tensor([[True, False], [True, True]])})
    >>> sorted(model.state_dict())
    ['0.bias', '0.weight', '0.weight_mask']
    >>> sorted(finalize_(model).state_dict()), model[0].weight[0, 1].item()
    (['0.bias', '0.weight'], 0.0)
    """
    finalized = set()
    for module_name, module, name, _ in list(iter_masks(model)):
        remove_mask_(module, name)
        finalized.add(f"{module_name}.{name}" if module_name else name)
    entries = []
    for entry in structure_of(model):
        if entry["kind"] == MASK_KIND:
            left = [p for p in entry["parameters"] if p not in finalized]
            if not left:
                continue
            entry = {**entry, "parameters": left}
        entries.append(entry)
    setattr(model, STRUCTURE_ATTRIBUTE, entries)
    return model


@register_rebuilder(MASK_KIND)
def _rebuild_masks(model: nn.Module, entry: dict[str, Any]) -> None:
    """Add all-ones masks (their values come from the state dict) to the parameters named."""
    for qualified in entry.get("parameters", []):
        module_name, _, name = str(qualified).rpartition(".")
        try:
            module = model.get_submodule(module_name)
        except AttributeError:
            raise FormatError(f"{MASK_KIND}: the model has no module {module_name!r}") from None
        parameter = module._parameters.get(name)
        if parameter is None:
            raise FormatError(
                f"{MASK_KIND}: {module_name or 'the model'} has no parameter {name!r}"
            )
        apply_mask_(module, name, torch.ones_like(parameter, dtype=torch.bool))
