"""``quantize_`` and ``finalize_``: apply any quantization config to a model, then make it final.

Each config type has one apply function, registered with :func:`register_method` by the module
that implements it, and optionally a finalizer that :func:`finalize_` runs.

>>> import torch
>>> from torch import nn
>>> from deepshrink.quantize import KMeansQuantization
>>> model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2))
>>> _ = quantize_(model, KMeansQuantization(bits=3))
>>> sorted(finalize_(model).state_dict())
['0.bias', '0.weight', '2.bias', '2.weight']
>>> len(model[0].weight.unique()) <= 2**3
True
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from deepshrink.errors import ConfigError
from deepshrink.prune.targets import Patterns
from deepshrink.quantize.config import METHODS, QuantizeConfig

__all__ = ["Apply", "Finalize", "finalize_", "quantize_", "register_method"]

#: ``apply(model, config, *, include, exclude) -> model``
Apply = Callable[..., nn.Module]
#: ``finalize(model) -> model``: make a method's quantization permanent.
Finalize = Callable[[nn.Module], nn.Module]

_APPLY: dict[type[QuantizeConfig], Apply] = {}
_FINALIZE: list[Finalize] = []
_NEEDS_DATA: dict[type[QuantizeConfig], Callable[[QuantizeConfig], bool]] = {}


def register_method(
    config_type: type[QuantizeConfig],
    apply: Apply,
    finalize: Finalize | None = None,
    *,
    needs_data: bool | Callable[[Any], bool] = False,
) -> None:
    """Make :func:`quantize_` handle configs of ``config_type`` with ``apply``.

    ``finalize``, when given, is run by :func:`finalize_`. A method with ``needs_data`` gets the
    ``calibration=`` data of :func:`quantize_` (``None`` when none was given; the method says
    whether it needs it) as a keyword argument of ``apply``; ``needs_data`` may be a predicate
    on the config when only some settings measure the model.
    """
    _APPLY[config_type] = apply
    if needs_data:
        _NEEDS_DATA[config_type] = needs_data if callable(needs_data) else (lambda _config: True)
    if finalize is not None and finalize not in _FINALIZE:
        _FINALIZE.append(finalize)


def quantize_(
    model: nn.Module,
    config: QuantizeConfig,
    *,
    include: Patterns = None,
    exclude: Patterns = None,
    calibration: Any = None,
) -> nn.Module:
    """Quantize ``model`` in place as ``config`` says and return it.

    ``include``/``exclude`` are globs over layer names (``"fc1"``, ``"features.*"``); by default
    every layer the method can quantize is quantized. ``calibration`` is data for the methods
    that measure the model (activation ranges, sensitivities): a ``Data``, a dataset, a tensor
    or batches, see :mod:`deepshrink.quantize.calibration`. Other methods ignore it.
    """
    if not isinstance(model, nn.Module):
        raise ConfigError(f"quantize_ needs a torch.nn.Module, got {type(model).__name__}")
    apply = _APPLY.get(type(config))
    if apply is None:
        raise ConfigError(
            f"{type(config).__name__} is not a quantization config; use one of "
            + ", ".join(METHODS.get(name).__name__ for name in METHODS.names())
        )
    needs_data = _NEEDS_DATA.get(type(config))
    if needs_data is None or not needs_data(config):
        return apply(model, config, include=include, exclude=exclude)
    return apply(model, config, include=include, exclude=exclude, calibration=calibration)


def finalize_(model: nn.Module) -> nn.Module:
    """Make every quantization of ``model`` permanent, in place (idempotent); return it.

    After k-means sharing the weights are plain parameters whose non-zeros take at most
    ``2**bits`` distinct values per layer; pruned zeros are exactly 0.
    """
    for finalize in _FINALIZE:
        finalize(model)
    return model
