"""Model size: the dense fp32 baseline, and the bytes of an actual file, raw and gzipped.

``dense_bytes`` is the Deep Compression baseline: every parameter element stored as a 4-byte
float, buffers (batch-norm statistics, pruning masks) left out. LeNet-300-100 has 266,610
parameters, so 1,066,440 B. File sizes are measured, never computed: ``saved_size`` writes the
state dict with safetensors (buffers and masks included, as a checkpoint would hold them) and
reads the size back. Gzip level 9 shows how much redundancy (zeros, repeated values) a generic
compressor finds; it is computed by streaming the file through :mod:`zlib`, never held whole.
"""

from __future__ import annotations

import os
import tempfile
import zlib
from pathlib import Path

from safetensors.torch import save_model
from torch import nn

from deepshrink.errors import ConfigError
from deepshrink.eval.counts import count_parameters

__all__ = ["dense_bytes", "file_bytes", "gzip_bytes", "saved_size"]

_CHUNK = 1 << 20


def dense_bytes(model: nn.Module) -> int:
    """Bytes of all parameters stored densely as fp32 (4 bytes each); buffers are not counted.

    >>> from torch import nn
    >>> dense_bytes(nn.Linear(300, 100))
    120400
    """
    return 4 * count_parameters(model)


def file_bytes(path: str | os.PathLike[str]) -> int:
    """Size of the file at ``path`` in bytes.

    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "x.bin"
    >>> _ = path.write_bytes(bytes(10))
    >>> file_bytes(path)
    10
    """
    return _existing(path).stat().st_size


def gzip_bytes(path: str | os.PathLike[str]) -> int:
    """Size in bytes of the file at ``path`` compressed as gzip at level 9 (in memory, streamed).

    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "zeros.bin"
    >>> _ = path.write_bytes(bytes(100_000))
    >>> gzip_bytes(path) < 1_000
    True
    """
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)  # gzip container
    total = 0
    with _existing(path).open("rb") as file:
        while chunk := file.read(_CHUNK):
            total += len(compressor.compress(chunk))
    return total + len(compressor.flush())


def saved_size(model: nn.Module) -> tuple[int, int]:
    """``(file_bytes, gzip_bytes)`` of the model's state dict saved with safetensors.

    The file goes to a temporary folder and is deleted afterwards. Tensors shared between
    modules are stored once.

    >>> from torch import nn
    >>> size, gzipped = saved_size(nn.Linear(300, 100))
    >>> size > 120400
    True
    """
    with tempfile.TemporaryDirectory(prefix="deepshrink-size-") as folder:
        path = Path(folder) / "model.safetensors"
        save_model(model, str(path))
        return file_bytes(path), gzip_bytes(path)


def _existing(path: str | os.PathLike[str]) -> Path:
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"cannot measure {file}: no such file; give the path of a saved model")
    return file
