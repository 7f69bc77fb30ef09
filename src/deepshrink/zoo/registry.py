"""The model registry behind ``deepshrink.zoo``: register, create, list, describe, arch_of.

:func:`create` records how each model was built (``{"name": ..., "kwargs": {...}}``, plain JSON)
on the model itself, so a checkpoint can store it and a fresh model can be rebuilt from it.
"""

from __future__ import annotations

import copy
import difflib
import inspect
import json
import logging
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from torch import nn

from deepshrink._registry import Registry
from deepshrink.errors import ConfigError
from deepshrink.zoo.limits import Bound, check_arguments, declare, undeclare

__all__ = ["ARCH_ATTRIBUTE", "arch_of", "create", "describe", "list_models", "register"]

logger = logging.getLogger(__name__)

ARCH_ATTRIBUTE = "_deepshrink_arch"
"""Name of the plain attribute where :func:`create` stores the model's architecture record."""

ModelFactory = Callable[..., nn.Module]
FactoryT = TypeVar("FactoryT", bound=ModelFactory)

_MODELS: Registry[ModelFactory] = Registry("model")


def register(
    name: str, *, limits: Mapping[str, Bound] | None = None
) -> Callable[[FactoryT], FactoryT]:
    """Decorator adding a model factory (a function or an ``nn.Module`` class) under ``name``.

    The first line of the factory's docstring is what :func:`describe` shows. ``limits`` maps
    arguments to their bounds (:mod:`deepshrink.zoo.limits`), checked before the factory runs
    and when a file names the model.

    >>> from torch import nn
    >>> @register("doctest_linear")
    ... def doctest_linear(num_classes: int = 10) -> nn.Module:
    ...     '''A single linear layer on 8 features.'''
    ...     return nn.Linear(8, num_classes)
    >>> create("doctest_linear", num_classes=3)
    Linear(in_features=8, out_features=3, bias=True)
    >>> unregister("doctest_linear")
    """

    def add(factory: FactoryT) -> FactoryT:
        if not callable(factory):
            raise TypeError(f"model {name!r} must be registered with a callable, got {factory!r}")
        if name in _MODELS:
            raise ConfigError(f"model {name!r} is already registered; choose another name")
        _MODELS.add(name, factory)
        if limits is not None:
            declare(name, limits)
        return factory

    return add


def unregister(name: str) -> None:
    """Remove a model from the registry (unknown names raise UnknownNameError)."""
    _MODELS.remove(name)
    undeclare(name)


def list_models() -> list[str]:
    """Sorted names of all registered models.

    >>> "lenet5" in list_models()
    True
    """
    return _MODELS.names()


def describe(name: str) -> str:
    """One-line description of a registered model (the first line of its docstring).

    >>> describe("lenet300")
    'LeNet-300-100: a 784-300-100-10 ReLU MLP for 28x28 digits (Han et al. 2015).'
    """
    doc = inspect.getdoc(_MODELS.get(name))
    return doc.strip().splitlines()[0] if doc else "(no description)"


def create(name: str, /, **kwargs: Any) -> nn.Module:
    """Build the registered model ``name`` with keyword arguments, and record how it was made.

    Raises :class:`~deepshrink.errors.UnknownNameError` (with a suggestion) for an unknown name
    and :class:`~deepshrink.errors.ConfigError` for an unknown argument or an invalid value.

    >>> model = create("resnet20", num_classes=100)
    >>> arch_of(model)
    {'name': 'resnet20', 'kwargs': {'num_classes': 100, 'shortcut': 'A'}}
    """
    factory = _MODELS.get(name)
    arguments = _bind_arguments(name, factory, kwargs)
    check_arguments(name, kwargs)
    try:
        model = factory(**kwargs)
    except ConfigError as error:
        raise ConfigError(f"model {name!r}: {error}") from error
    if not isinstance(model, nn.Module):
        raise TypeError(f"factory of model {name!r} returned {type(model).__name__}, not nn.Module")
    record = _json_record(name, arguments)
    if record is not None:
        object.__setattr__(model, ARCH_ATTRIBUTE, record)
    return model


def arch_of(model: nn.Module) -> dict[str, Any] | None:
    """How ``model`` was built, ``{"name": ..., "kwargs": {...}}``, or None if not by the zoo.

    ``create(record["name"], **record["kwargs"])`` rebuilds the same architecture.

    >>> record = arch_of(create("lenet5"))
    >>> rebuilt = create(record["name"], **record["kwargs"])
    >>> arch_of(nn.Linear(2, 2)) is None
    True
    """
    record = getattr(model, ARCH_ATTRIBUTE, None)
    return copy.deepcopy(record) if isinstance(record, dict) else None


def _bind_arguments(name: str, factory: ModelFactory, kwargs: dict[str, Any]) -> dict[str, Any]:
    """Check ``kwargs`` against the factory's signature; return all arguments, defaults included."""
    signature = inspect.signature(factory)
    parameters = signature.parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    accepted = [
        key
        for key, p in parameters.items()
        if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    ]
    if not takes_any:
        for key in kwargs:
            if key not in accepted:
                raise ConfigError(_unknown_argument_message(name, key, accepted))
    try:
        bound = signature.bind(**kwargs)
    except TypeError as error:
        raise ConfigError(f"model {name!r}: {error}") from None
    bound.apply_defaults()
    arguments: dict[str, Any] = {}
    for key, value in bound.arguments.items():
        if parameters[key].kind is inspect.Parameter.VAR_KEYWORD:
            arguments.update(value)
        elif parameters[key].kind is not inspect.Parameter.VAR_POSITIONAL:
            arguments[key] = value
    return arguments


def _unknown_argument_message(name: str, key: str, accepted: list[str]) -> str:
    close = difflib.get_close_matches(key, accepted, n=1, cutoff=0.5)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    known = ", ".join(accepted) if accepted else "none"
    return f"model {name!r} has no argument {key!r}{hint} (accepted: {known})"


def _json_record(name: str, arguments: dict[str, Any]) -> dict[str, Any] | None:
    """The architecture record as plain JSON types (tuples become lists), or None if impossible."""
    try:
        kwargs = json.loads(json.dumps(arguments, allow_nan=False))
    except (TypeError, ValueError):
        logger.warning(
            "model %r was built with arguments that are not JSON-serialisable; "
            "its architecture is not recorded, so arch_of() will return None",
            name,
        )
        return None
    return {"name": name, "kwargs": kwargs}
