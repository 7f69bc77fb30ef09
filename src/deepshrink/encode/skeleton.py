"""A file's model, built first without memory: architecture and structure checked on ``meta``.

Before a reader builds the model a file describes, or decodes its tensors, it builds the same
model on PyTorch's ``meta`` device (shapes, no storage): the architecture arguments within their
declared bounds (:mod:`deepshrink.zoo.limits`), every structure record replayed, the model's
size after each step within the reader's byte cap, and its state-dict names, shapes and dtypes
equal to the ones the file declares. Only then is anything real allocated.

>>> arch = {"name": "lenet5", "kwargs": {"num_classes": 10**5}}
>>> check_fit(None, arch, [], {}, "m.dsz", cap=1 << 26)  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
deepshrink.errors.FormatError: m.dsz: arch: the model holds 202,... bytes of tensors; this ...cap...
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from deepshrink.errors import ConfigError, DeepshrinkError, FormatError

__all__ = ["Shapes", "check_fit", "check_indices", "default_cap", "state_bytes"]

#: name → (shape, dtype) of the tensors a file declares.
Shapes = Mapping[str, tuple[tuple[int, ...], torch.dtype]]

#: Memory a reader may use beyond its multiple of the file size.
BASE_CAP = 64 << 20
#: Bytes of decoded tensors a reader allows per byte of file.
FILE_MULTIPLE = 64


def default_cap(file_bytes: int) -> int:
    """The default cap on decoded bytes for a file of ``file_bytes``: 64 MiB + 64 × its size."""
    return BASE_CAP + FILE_MULTIPLE * file_bytes


def state_bytes(model: nn.Module) -> int:
    """Bytes of ``model``'s distinct parameters and buffers (works on ``meta`` models)."""
    seen: set[int] = set()
    total = 0
    for tensor in [*model.parameters(), *model.buffers()]:
        if id(tensor) not in seen:
            seen.add(id(tensor))
            total += tensor.numel() * tensor.element_size()
    return total


def _fail(source: Any, where: str, problem: str) -> FormatError:
    return FormatError(f"{source}: {where}: {problem}")


def _within(model: nn.Module, cap: int, source: Any, where: str) -> None:
    size = state_bytes(model)
    if size > cap:
        raise _fail(
            source, where, f"the model holds {size:,} bytes of tensors; this reader's cap is "
            f"{cap:,} (raise it with max_bytes=)",
        )  # fmt: skip


def _meta_copy(model: nn.Module) -> nn.Module:
    """A copy of ``model`` whose tensors live on ``meta``; tied tensors stay one object."""
    memo: dict[int, Any] = {}
    for tensor in model.parameters():
        memo[id(tensor)] = nn.Parameter(
            torch.empty_like(tensor, device="meta"), requires_grad=tensor.requires_grad
        )
    for tensor in model.buffers():
        memo[id(tensor)] = torch.empty_like(tensor, device="meta")
    return copy.deepcopy(model, memo)


def _skeleton(model: nn.Module | None, arch: Any, source: Any) -> nn.Module | None:
    """A ``meta`` copy of ``model`` (None if it cannot be copied), or the zoo model ``arch``
    names built on ``meta``."""
    if model is not None:
        try:
            return _meta_copy(model)
        except Exception:  # a module that cannot be copied: the caller's own, trusted as it is
            return None
    if arch is None:
        raise ConfigError(
            f"{source} was saved from a model outside the zoo; pass the model to load into"
        )
    from deepshrink.zoo import create
    from deepshrink.zoo.limits import check_arch

    try:
        name, kwargs = check_arch(arch)
        with torch.device("meta"):
            return create(name, **kwargs)
    except Exception as exc:
        raise _fail(source, "arch", _first_line(exc)) from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    line = text[0] if text else type(exc).__name__
    return line if len(line) <= 300 else line[:297] + "..."


def _replay(skeleton: nn.Module, structure: Any, cap: int, source: Any) -> None:
    from deepshrink.graph import rebuild, structure_of

    if not isinstance(structure, list):
        raise _fail(source, "structure", f"must be a list, not {type(structure).__name__}")
    current = structure_of(skeleton)
    if current:
        if current != structure:
            raise _fail(
                source, "structure", f"the file holds other structure changes than the model "
                f"given ({len(structure)} vs {len(current)}); pass an unchanged model or none",
            )  # fmt: skip
        return
    for index, entry in enumerate(structure):
        kind = entry.get("kind") if isinstance(entry, dict) else None
        where = f"structure entry {index} ({str(kind)[:40]})"
        try:
            with torch.device("meta"):  # modules a rebuilder makes take no memory either
                rebuild(skeleton, [entry])
        except Exception as exc:
            raise _fail(source, where, _first_line(exc)) from None
        _within(skeleton, cap, source, where)


def _compare(skeleton: nn.Module, shapes: Shapes, source: Any) -> None:
    state = skeleton.state_dict()
    missing = sorted(set(state) - set(shapes))
    unexpected = sorted(set(shapes) - set(state))
    if missing or unexpected:
        raise _fail(
            source, "tensors", f"the file does not fit the model: missing {_few(missing)}, "
            f"unexpected {_few(unexpected)}",
        )  # fmt: skip
    for name, tensor in state.items():
        shape, dtype = shapes[name]
        if tuple(tensor.shape) != tuple(shape) or tensor.dtype != dtype:
            raise _fail(
                source, f"tensor {name!r}", f"is {dtype} {list(shape)}: the file does not fit "
                f"the model, which holds {tensor.dtype} {list(tensor.shape)}",
            )  # fmt: skip


def _few(names: list[str]) -> str:
    shown = ", ".join(repr(name[:80]) for name in names[:5])
    more = f" and {len(names) - 5} more" if len(names) > 5 else ""
    return f"[{shown}{more}]"


def check_fit(
    model: nn.Module | None,
    arch: Any,
    structure: Any,
    shapes: Shapes,
    source: str | os.PathLike[str],
    cap: int,
) -> None:
    """Build the model on ``meta`` and check it against the file's tensors and the byte cap.

    Raises :class:`FormatError` naming the section (``arch``, ``structure entry i``, ``tensors``)
    and :class:`ConfigError` when there is neither ``model`` nor ``arch``.
    """
    skeleton = _skeleton(model, arch, source)
    if skeleton is None:
        return
    _within(skeleton, cap, source, "arch" if model is None else "model")
    _replay(skeleton, structure, cap, source)
    _compare(skeleton, shapes, source)


def check_indices(model: nn.Module, source: Any) -> None:
    """Refuse shared weights whose code indices point past their codebook."""
    for name, module in model.named_modules():
        for key, buffer in module._buffers.items():
            if buffer is None or not key.endswith("_indices"):
                continue
            centroids = module._parameters.get(key.removesuffix("_indices") + "_centroids")
            if centroids is None or buffer.numel() == 0:
                continue
            low, high = int(buffer.min()), int(buffer.max())
            if low < 0 or high >= centroids.numel():
                raise _fail(
                    source, f"tensor '{name}.{key}'", f"holds code indices in [{low}, {high}] "
                    f"for a codebook of {centroids.numel()} values",
                )  # fmt: skip


def wrap(exc: Exception, source: Any, where: str) -> DeepshrinkError:
    """``exc`` as a :class:`FormatError` naming ``where`` (deepshrink errors kept as they are)."""
    if isinstance(exc, FormatError):
        return exc
    return _fail(source, where, _first_line(exc))
