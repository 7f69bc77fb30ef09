"""Structure records: how a model's module tree was changed, so a fresh model can be rebuilt.

Physical pruning and factorization replace modules with smaller or different ones. Each such
change appends one JSON entry (``{"kind": ..., ...}``) to the model's structure record. Checkpoints
save the record; loading replays it on a freshly built model — each kind has a registered
*rebuilder* that changes only shapes and module types — and then loads the weights.

>>> from torch import nn
>>> model = nn.Sequential(nn.Linear(4, 4))
>>> record(model, "example", module="0")
>>> structure_of(model)
[{'kind': 'example', 'module': '0'}]
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from torch import nn

from deepshrink._registry import Registry
from deepshrink.errors import FormatError

STRUCTURE_ATTRIBUTE = "_deepshrink_structure"

Rebuilder = Callable[[nn.Module, dict[str, Any]], None]
_REBUILDERS: Registry[Rebuilder] = Registry("structure change")


def register_rebuilder(kind: str) -> Callable[[Rebuilder], Rebuilder]:
    """Register the function that replays a structure entry of ``kind`` on a fresh model."""
    return _REBUILDERS.register(kind)


def record(model: nn.Module, kind: str, **details: Any) -> None:
    """Append a structure entry to ``model``'s record (details must be JSON-serialisable)."""
    entries = list(getattr(model, STRUCTURE_ATTRIBUTE, []))
    entries.append({"kind": kind, **copy.deepcopy(details)})
    setattr(model, STRUCTURE_ATTRIBUTE, entries)


def forget(model: nn.Module, kind: str) -> None:
    """Drop every structure entry of ``kind`` from ``model``'s record (the change was undone).

    >>> from torch import nn
    >>> model = nn.Linear(2, 2)
    >>> record(model, "example")
    >>> forget(model, "example"); structure_of(model)
    []
    """
    entries = [entry for entry in structure_of(model) if entry["kind"] != kind]
    setattr(model, STRUCTURE_ATTRIBUTE, entries)


def structure_of(model: nn.Module) -> list[dict[str, Any]]:
    """The structure entries recorded on ``model`` (a copy; empty for an unchanged model)."""
    return copy.deepcopy(list(getattr(model, STRUCTURE_ATTRIBUTE, [])))


def rebuild(model: nn.Module, entries: list[dict[str, Any]]) -> nn.Module:
    """Replay ``entries`` on ``model`` (in place) so that a saved state dict fits it."""
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict) or not isinstance(entry.get("kind"), str):
            raise FormatError(f"structure entry {index} has no 'kind': {entry!r}")
        if entry["kind"] not in _REBUILDERS:
            raise FormatError(
                f"structure entry {index}: {_REBUILDERS.unknown_message(entry['kind'])}; "
                "the checkpoint was written by a deepshrink with more methods"
            )
        _REBUILDERS.get(entry["kind"])(model, entry)
        record(model, entry["kind"], **{k: v for k, v in entry.items() if k != "kind"})
    return model
