"""``prune_``: apply any pruning config to a model, in place.

Each config type has one apply function, registered with :func:`register_method` by the module
that implements it (unstructured, neuron, schedules; structured pruning adds its own).

>>> import torch
>>> from torch import nn
>>> from deepshrink.prune import MagnitudePruning, finalize_, sparsity
>>> model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2))
>>> round(sparsity(prune_(model, MagnitudePruning(sparsity=0.5, scope="global"))), 2)
0.5
>>> "0.weight_mask" in finalize_(model).state_dict()
False
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from deepshrink.errors import ConfigError
from deepshrink.prune.config import METHODS, PruneConfig
from deepshrink.prune.targets import Patterns

__all__ = ["Apply", "prune_", "register_method"]

#: ``apply(model, config, *, include, exclude, example_inputs) -> model``
Apply = Callable[..., nn.Module]

_APPLY: dict[type[PruneConfig], Apply] = {}


def register_method(config_type: type[PruneConfig], apply: Apply) -> None:
    """Make :func:`prune_` handle configs of ``config_type`` with ``apply``."""
    _APPLY[config_type] = apply


def prune_(
    model: nn.Module,
    config: PruneConfig,
    *,
    include: Patterns = None,
    exclude: Patterns = None,
    example_inputs: Any = None,
    calibration: Any = None,
) -> nn.Module:
    """Prune ``model`` in place as ``config`` says and return it.

    ``include``/``exclude`` are globs over layer names (``"fc1"``, ``"features.*"``); by default
    every layer the method can prune is pruned. ``example_inputs`` is for methods that need to run
    the model (structured pruning); the methods here do not. ``calibration`` is a few batches for
    data-aware criteria (channel pruning with ``taylor`` or ``apoz``).
    """
    if not isinstance(model, nn.Module):
        raise ConfigError(f"prune_ needs a torch.nn.Module, got {type(model).__name__}")
    apply = _APPLY.get(type(config))
    if apply is None:
        raise ConfigError(
            f"{type(config).__name__} is not a pruning config; use one of "
            + ", ".join(METHODS.get(name).__name__ for name in METHODS.names())
        )
    extra = {} if calibration is None else {"calibration": calibration}
    if extra and config.method != "channel":
        raise ConfigError(f"{type(config).__name__} does not use calibration data; drop it")
    return apply(
        model, config, include=include, exclude=exclude, example_inputs=example_inputs, **extra
    )
