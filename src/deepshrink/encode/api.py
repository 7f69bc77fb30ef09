"""``save`` and ``load``: a model to a ``.dsz`` file and back, bit for bit.

>>> import tempfile, pathlib, torch
>>> from deepshrink import zoo
>>> model = zoo.create("lenet300")
>>> path = save(model, pathlib.Path(tempfile.mkdtemp()) / "lenet300.dsz")
>>> loaded = load(path)
>>> x = torch.randn(2, 1, 28, 28)
>>> torch.equal(model(x), loaded(x))
True

A model with pruning masks is stored as it is: each ``<name>_mask`` buffer that equals
``<name> != 0`` (what masking leaves) costs no bytes, and loading gives back the masked model
with its masks. Call :func:`deepshrink.finalize_` first to store a plain model.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from torch import nn

from deepshrink._io import atomic_write_bytes
from deepshrink.encode.config import EncodeConfig
from deepshrink.encode.container import Container, pack, split_aliases, unpack
from deepshrink.errors import DeepshrinkError, FormatError

__all__ = ["load", "read", "save"]


def save(
    model: nn.Module,
    path: str | os.PathLike[str],
    config: EncodeConfig | None = None,
    *,
    metadata: dict[str, Any] | None = None,
) -> Path:
    """Write ``model`` (state, zoo architecture, structure record) as a ``.dsz`` file.

    Each tensor is stored in its smallest layout (see ``docs/dsz-format.md``); the file is
    written atomically. Returns the path.
    """
    from deepshrink.graph import structure_of
    from deepshrink.zoo import arch_of

    config = config or EncodeConfig()
    state, aliases = split_aliases(model.state_dict())  # tied weights are stored once
    data = pack(
        state, config, arch=arch_of(model), structure=structure_of(model), metadata=metadata,
        aliases=aliases,
    )  # fmt: skip
    atomic_write_bytes(path, data)
    return Path(path)


def read(path: str | os.PathLike[str]) -> Container:
    """The verified header and tensors of the ``.dsz`` file at ``path``."""
    path = Path(path)
    if not path.is_file():
        raise DeepshrinkError(f"{path} does not exist; write one with deepshrink.save(model, path)")
    return unpack(path.read_bytes(), str(path))


def load(path: str | os.PathLike[str], model: nn.Module | None = None) -> nn.Module:
    """A runnable model from a ``.dsz`` file: a rebuilt zoo model, or ``model`` filled in.

    Raises :class:`~deepshrink.errors.FormatError` for a malformed file and
    :class:`~deepshrink.errors.ConfigError` for a non-zoo model loaded without ``model``.
    """
    from deepshrink.train.checkpoint import restore

    container = read(path)
    header = container.header
    if model is None and header["arch"] is not None:
        model = _create(header["arch"], path)
    try:
        return restore(model, header["arch"], header["structure"], container.tensors, path)
    except DeepshrinkError:
        raise
    except (TypeError, ValueError, KeyError, AttributeError, IndexError, RuntimeError) as exc:
        raise FormatError(f"{path}: the model cannot be rebuilt from the header: {exc}") from exc


def _create(arch: dict[str, Any], path: str | os.PathLike[str]) -> nn.Module:
    """The zoo model the header's ``arch`` names; :class:`FormatError` if it names none."""
    from deepshrink.zoo import create

    try:
        return create(arch["name"], **arch.get("kwargs", {}))
    except (DeepshrinkError, TypeError, ValueError, KeyError) as exc:
        raise FormatError(f"{path}: header: 'arch' {arch} names no zoo model: {exc}") from None
