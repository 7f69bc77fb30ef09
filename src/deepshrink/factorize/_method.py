"""How each config type factorizes one layer: the method table and shared helpers.

A *method* says which layer type it handles, why it would skip a given layer, and how it builds
the replacement (a :class:`Candidate`: the new module plus the JSON details of its structure
record). :mod:`deepshrink.factorize.api` selects layers, asks the method, applies the policy.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from deepshrink.errors import ConfigError, FormatError
from deepshrink.factorize.config import FactorizationConfig


@dataclass(frozen=True)
class Candidate:
    """A factorized replacement for one layer and what its structure record says about it."""

    module: nn.Module
    kind: str
    details: dict[str, Any]


@dataclass(frozen=True)
class Method:
    """One factorization: the layer type it rewrites, a skip test and a builder."""

    layer_type: type[nn.Module]
    build: Callable[[str, Any, Any], Candidate]
    skip_reason: Callable[[Any, Any], str | None] = lambda layer, config: None
    #: Whether a layer is a target when no ``include`` names layers (e.g. TT modes fit it).
    fits: Callable[[Any, Any], bool] = lambda layer, config: True


_METHODS: dict[type[FactorizationConfig], Method] = {}


def register_method(config_type: type[FactorizationConfig], method: Method) -> None:
    """Make ``factorize_`` handle configs of ``config_type`` with ``method``."""
    _METHODS[config_type] = method


def method_for(config: FactorizationConfig) -> Method:
    """The method registered for ``config``'s type."""
    try:
        return _METHODS[type(config)]
    except KeyError:
        raise ConfigError(
            f"{type(config).__name__} is not a factorization config; use one of "
            + ", ".join(sorted(t.__name__ for t in _METHODS))
        ) from None


def conv_skip_reason(layer: nn.Conv2d, config: Any) -> str | None:
    """Why a convolution cannot be decomposed by the conv methods (or ``None``)."""
    if layer.groups != 1:
        return f"grouped convolution (groups={layer.groups})"
    if isinstance(layer.padding, str) or layer.padding_mode != "zeros":
        return f"padding {layer.padding!r} / mode {layer.padding_mode!r} (needs numeric zeros)"
    if layer.kernel_size == (1, 1):
        return "1x1 kernel (nothing to decompose spatially)"
    return None


def check_rank(name: str, what: str, rank: int, largest: int, why: str) -> int:
    """``rank`` if it is at most ``largest``, else a :class:`ConfigError` naming the layer."""
    if rank > largest:
        raise ConfigError(
            f"{name}: {what} {rank} is larger than {why} = {largest}; choose {what} ≤ {largest} "
            f"or leave this layer out with exclude={name!r}"
        )
    return rank


def fresh_layer(model: nn.Module, entry: dict[str, Any], layer_type: type[nn.Module]) -> Any:
    """The layer a structure ``entry`` names on a fresh ``model``, checked for its type."""
    name = entry.get("module")
    try:
        layer = model.get_submodule(str(name))
    except AttributeError:
        raise FormatError(
            f"structure entry {entry['kind']}: the model has no layer {name!r}"
        ) from None
    if not isinstance(layer, layer_type):
        raise FormatError(
            f"structure entry {entry['kind']}: {name!r} is a {type(layer).__name__}, "
            f"expected {layer_type.__name__}"
        )
    return layer


def check_shape(entry: dict[str, Any], layer: nn.Module, fields: tuple[str, ...]) -> None:
    """Raise :class:`FormatError` when ``layer`` differs from ``entry`` in any of ``fields``."""
    for field in fields:
        have = getattr(layer, field)
        have = list(have) if isinstance(have, tuple) else have
        if field in entry and entry[field] != have:
            raise FormatError(
                f"structure entry {entry['kind']} for {entry['module']!r}: {field} is "
                f"{entry[field]!r} in the checkpoint but {have!r} in the model"
            )


def like(module: nn.Module, reference: nn.Module) -> nn.Module:
    """``module`` moved to the device and dtype of ``reference``'s first parameter."""
    parameter = next(reference.parameters(), None)
    if parameter is None:
        return module
    return module.to(device=parameter.device, dtype=parameter.dtype)
