"""Declared bounds of zoo models' arguments, checked before a model is built.

A model registered with ``limits={...}`` refuses out-of-range arguments in :func:`create` before
its factory runs. Architecture records read from files (``.dsz`` headers, checkpoint sidecars)
are checked with :func:`check_arch`: the declared bounds where there are some, generic bounds
(small JSON scalars and short lists) otherwise.

>>> IntRange(1, 100).check("num_classes", 10**9)
Traceback (most recent call last):
...
deepshrink.errors.ConfigError: num_classes must be an integer in [1, 100], got 1000000000
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from deepshrink.errors import ConfigError

__all__ = [
    "CLASSES",
    "Bound",
    "Choice",
    "FloatRange",
    "IntList",
    "IntRange",
    "check_arch",
    "check_arguments",
    "shown",
]

#: Characters of a value quoted in an error message.
SHOWN = 120


def shown(value: Any) -> str:
    """``repr(value)``, cut to :data:`SHOWN` characters (a hostile value may be huge)."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 256:
        return f"<an integer of {value.bit_length()} bits>"  # repr() refuses > 4300 digits
    try:
        text = repr(value)
    except (ValueError, RecursionError):
        return f"<a {type(value).__name__}>"
    return text if len(text) <= SHOWN else text[: SHOWN - 3] + "..."


class Bound(Protocol):
    def check(self, argument: str, value: Any) -> None: ...


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class IntRange:
    """An integer (not a bool) in ``[low, high]``."""

    low: int
    high: int

    def check(self, argument: str, value: Any) -> None:
        if not _is_int(value) or not self.low <= value <= self.high:
            raise ConfigError(
                f"{argument} must be an integer in [{self.low}, {self.high}], got {shown(value)}"
            )


@dataclass(frozen=True)
class FloatRange:
    """A finite number in ``(low, high]``."""

    low: float
    high: float

    def check(self, argument: str, value: Any) -> None:
        number = _is_int(value) or isinstance(value, float)
        if not number or not math.isfinite(value) or not self.low < value <= self.high:
            raise ConfigError(
                f"{argument} must be a number in ({self.low}, {self.high}], got {shown(value)}"
            )


@dataclass(frozen=True)
class Choice:
    """One of a few strings."""

    options: tuple[str, ...]

    def check(self, argument: str, value: Any) -> None:
        if not isinstance(value, str) or value not in self.options:
            raise ConfigError(f"{argument} must be one of {self.options}, got {shown(value)}")


@dataclass(frozen=True)
class IntList:
    """A list (or tuple) of at most ``length`` integers in ``[low, high]``."""

    length: int
    low: int
    high: int

    def check(self, argument: str, value: Any) -> None:
        valid = isinstance(value, (list, tuple)) and 1 <= len(value) <= self.length
        if not valid or not all(_is_int(v) and self.low <= v <= self.high for v in value):
            raise ConfigError(
                f"{argument} must be a list of 1 to {self.length} integers in "
                f"[{self.low}, {self.high}], got {shown(value)}"
            )


#: Class counts a zoo model accepts.
CLASSES = IntRange(1, 100_000)
#: Generic bounds for records of models registered without limits.
_ANY_INT = IntRange(-(2**20), 2**20)
_ANY_FLOAT = FloatRange(-(2.0**20), 2.0**20)
_ANY_LIST = 64
_ANY_TEXT = 256

_LIMITS: dict[str, dict[str, Bound]] = {}


def declare(name: str, limits: Mapping[str, Bound]) -> None:
    """Record the bounds of model ``name``'s arguments."""
    _LIMITS[name] = dict(limits)


def undeclare(name: str) -> None:
    """Forget the bounds of model ``name`` (it was unregistered)."""
    _LIMITS.pop(name, None)


def check_arguments(name: str, kwargs: Mapping[str, Any]) -> None:
    """Check ``kwargs`` against the bounds declared for model ``name`` (none: nothing)."""
    for key, bound in _LIMITS.get(name, {}).items():
        if key in kwargs:
            bound.check(f"model {name!r}: {key}", kwargs[key])


def _check_plain(argument: str, value: Any, depth: int = 0) -> None:
    """Generic bounds: JSON scalars of modest size, short flat lists of them."""
    if value is None or isinstance(value, bool):
        return
    if _is_int(value):
        _ANY_INT.check(argument, value)
    elif isinstance(value, float):
        if value != 0:
            _ANY_FLOAT.check(argument, abs(value))
    elif isinstance(value, str):
        if len(value) > _ANY_TEXT:
            raise ConfigError(f"{argument} is a string of {len(value)} characters (> {_ANY_TEXT})")
    elif isinstance(value, list) and depth == 0 and len(value) <= _ANY_LIST:
        for item in value:
            _check_plain(argument, item, depth + 1)
    else:
        raise ConfigError(
            f"{argument} must be a number, a short string or a short flat list, got {shown(value)}"
        )


def check_arch(arch: Any) -> tuple[str, dict[str, Any]]:
    """``(name, kwargs)`` of an architecture record read from a file, within bounds.

    Raises :class:`ConfigError` naming the argument for a malformed or out-of-range record.
    """
    if not isinstance(arch, dict) or set(arch) - {"name", "kwargs"}:
        raise ConfigError(f"'arch' must be {{'name': ..., 'kwargs': {{...}}}}, got {shown(arch)}")
    name, kwargs = arch.get("name"), arch.get("kwargs", {})
    if not isinstance(name, str) or not 0 < len(name) <= _ANY_TEXT:
        raise ConfigError(f"'arch.name' must be a model name, got {shown(name)}")
    if not isinstance(kwargs, dict) or len(kwargs) > _ANY_LIST:
        raise ConfigError(f"'arch.kwargs' must be a small mapping, got {shown(kwargs)}")
    declared = _LIMITS.get(name)
    for key, value in kwargs.items():
        if declared is None:
            _check_plain(f"model {name!r}: {key}", value)
        elif key not in declared:
            raise ConfigError(f"model {name!r} has no argument {shown(key)} with declared bounds")
    check_arguments(name, kwargs)
    return name, kwargs
