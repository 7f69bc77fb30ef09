"""Which layers a pruning call touches: ``include``/``exclude`` globs and per-layer overrides.

Globs match qualified module names (``"fc1"``, ``"features.*"``) with :mod:`fnmatch`. A glob that
matches no candidate layer is an error that lists the candidates (and says why a layer of that
name cannot be pruned by the method, when it exists but does not qualify).

>>> from torch import nn
>>> model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.Linear(36, 2))
>>> list(select(weight_layers(model), include="*", exclude="0", method="magnitude pruning"))
['2']
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Mapping, Sequence
from typing import TypeVar

from torch import nn

from deepshrink.errors import ConfigError

__all__ = ["PRUNABLE_TYPES", "Patterns", "layer_values", "patterns", "select", "weight_layers"]

T = TypeVar("T")
Patterns = str | Sequence[str] | None

#: Layers whose ``weight`` unstructured pruning masks.
PRUNABLE_TYPES: tuple[type[nn.Module], ...] = (
    nn.Linear,
    nn.Conv1d,
    nn.Conv2d,
    nn.Conv3d,
    nn.ConvTranspose1d,
    nn.ConvTranspose2d,
    nn.ConvTranspose3d,
)


def patterns(value: Patterns) -> list[str]:
    """``value`` as a list of globs (a lone string is one glob)."""
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if not all(isinstance(item, str) for item in value):
        raise ConfigError(f"layer globs must be strings, got {value!r}")
    return list(value)


def weight_layers(model: nn.Module) -> dict[str, nn.Module]:
    """Named ``Linear`` and convolution layers with a weight parameter, in model order.

    Layers pruned by ``torch.nn.utils.prune`` (``weight_orig``) are listed too, so that pruning
    them again gives a clear error rather than "no such layer".
    """
    return {
        name: module
        for name, module in model.named_modules()
        if isinstance(module, PRUNABLE_TYPES)
        and (module._parameters.get("weight") is not None or "weight_orig" in module._parameters)
    }


def _unmatched(
    field: str,
    pattern: str,
    names: Sequence[str],
    method: str,
    unavailable: Mapping[str, str],
) -> ConfigError:
    blocked = [
        f"{n!r} ({why})" for n, why in unavailable.items() if fnmatch.fnmatchcase(n, pattern)
    ]
    if blocked:
        why = f"; {', '.join(blocked)} cannot be pruned by {method}"
    else:
        close = difflib.get_close_matches(pattern, list(names), n=3, cutoff=0.5)
        why = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    known = ", ".join(names) if names else "none"
    return ConfigError(
        f"{field} {pattern!r} matches no layer that {method} can prune{why} (layers: {known})"
    )


def select(
    candidates: Mapping[str, T],
    include: Patterns = None,
    exclude: Patterns = None,
    *,
    method: str,
    unavailable: Mapping[str, str] | None = None,
) -> dict[str, T]:
    """The candidates matched by an ``include`` glob (all when none) and by no ``exclude`` glob.

    ``unavailable`` maps names of layers the method cannot prune to the reason, for the errors.
    """
    names = list(candidates)
    blocked = unavailable or {}
    if not names:
        why = ", ".join(f"{n} ({w})" for n, w in list(blocked.items())[:12]) or "none"
        raise ConfigError(
            f"{method} found no layer it can change in this model; layers it cannot change: {why}"
        )
    for field, globs in (("include", patterns(include)), ("exclude", patterns(exclude))):
        for pattern in globs:
            if not any(fnmatch.fnmatchcase(name, pattern) for name in names):
                raise _unmatched(field, pattern, names, method, blocked)
    wanted = patterns(include) or ["*"]
    unwanted = patterns(exclude)
    chosen = {
        name: value
        for name, value in candidates.items()
        if any(fnmatch.fnmatchcase(name, p) for p in wanted)
        and not any(fnmatch.fnmatchcase(name, p) for p in unwanted)
    }
    if not chosen:
        raise ConfigError(
            f"include={include!r} and exclude={exclude!r} leave no layer for {method}; "
            f"layers: {', '.join(names) or 'none'}"
        )
    return chosen


def layer_values(
    names: Sequence[str], default: float, overrides: Mapping[str, float], method: str
) -> dict[str, float]:
    """Each layer's target: ``default`` unless an ``overrides`` glob matches (the last one wins).

    >>> layer_values(["fc1", "fc2"], 0.9, {"fc*": 0.5, "fc2": 0.7}, "pruning")
    {'fc1': 0.5, 'fc2': 0.7}
    """
    values = dict.fromkeys(names, default)
    for pattern, value in overrides.items():
        matched = [name for name in names if fnmatch.fnmatchcase(name, pattern)]
        if not matched:
            raise _unmatched("overrides glob", pattern, names, method, {})
        for name in matched:
            values[name] = value
    return values
