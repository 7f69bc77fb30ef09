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
from deepshrink.encode.container import (
    Container,
    check_cap,
    declared_shapes,
    pack,
    read_header,
    split_aliases,
    unpack,
)
from deepshrink.errors import ConfigError, DeepshrinkError, FormatError

__all__ = ["load", "model_state", "read", "save"]


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
    state, aliases = split_aliases(model_state(model, config))  # tied weights stored once
    data = pack(
        state, config, arch=arch_of(model), structure=structure_of(model), metadata=metadata,
        aliases=aliases,
    )  # fmt: skip
    atomic_write_bytes(path, data)
    return Path(path)


def model_state(model: nn.Module, config: EncodeConfig) -> dict[str, Any]:
    """The state dict ``save`` stores: BatchNorm folded if ``config.batchnorm == "fold"``."""
    state = model.state_dict()
    if config.batchnorm != "fold":
        return state
    from deepshrink.encode.batchnorm import fold_batchnorm

    folded, names = fold_batchnorm(model, state)
    if not names:
        raise ConfigError(
            "batchnorm='fold': the model has no BatchNorm layer with an affine weight, bias and "
            "running statistics to fold; use batchnorm='exact'"
        )
    return folded


def _bytes(path: str | os.PathLike[str]) -> bytes:
    path = Path(path)
    if not path.is_file():
        raise DeepshrinkError(f"{path} does not exist; write one with deepshrink.save(model, path)")
    try:
        return path.read_bytes()
    except OSError as exc:
        raise FormatError(f"{path}: cannot be read: {exc.strerror or exc}") from None


def read(path: str | os.PathLike[str], *, max_bytes: int | None = None) -> Container:
    """The verified header and tensors of the ``.dsz`` file at ``path``.

    The tensors may decode to at most ``max_bytes`` (default: 64 MiB + 64 × the file size)."""
    return unpack(_bytes(path), str(path), max_bytes=max_bytes)


def load(
    path: str | os.PathLike[str], model: nn.Module | None = None, *, max_bytes: int | None = None
) -> nn.Module:
    """A runnable model from a ``.dsz`` file: a rebuilt zoo model, or ``model`` filled in.

    The whole header is checked first — the architecture against its declared bounds, the
    structure records replayed on a ``meta`` model whose tensors must be the ones the file
    declares, and their total size against ``max_bytes`` (default: 64 MiB + 64 × the file
    size) — before a tensor is decoded or a layer built.

    Raises :class:`~deepshrink.errors.FormatError` for a malformed file (naming the section) and
    :class:`~deepshrink.errors.ConfigError` for a non-zoo model loaded without ``model``.
    """
    from deepshrink.encode.skeleton import check_fit, check_indices, default_cap, wrap
    from deepshrink.train.checkpoint import restore

    data = _bytes(path)
    cap = default_cap(len(data)) if max_bytes is None else max_bytes
    header = read_header(data, str(path))
    check_cap(header, cap, len(data), str(path))
    check_fit(model, header["arch"], header["structure"], declared_shapes(header), path, cap)
    container = unpack(data, str(path), max_bytes=cap)
    try:
        loaded = restore(model, header["arch"], header["structure"], container.tensors, path)
        check_indices(loaded, path)
    except Exception as exc:  # a file that passed every check and still does not build
        raise wrap(exc, path, "model") from exc
    return loaded
