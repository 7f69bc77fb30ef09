"""Reader for IDX files (MNIST, Fashion-MNIST), plain or gzip-compressed.

An IDX file is a 4-byte magic (two zero bytes, a type code, the number of dimensions), one
big-endian uint32 per dimension, then the values, big-endian, row-major. The reader checks every
part of the header and that the payload holds exactly the bytes the header promises, so a
truncated download fails loudly instead of giving a short dataset. Written by hand: the format
is a few lines and no maintained library reads it without pulling in a framework.
"""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path
from typing import IO

import numpy as np

from deepshrink.errors import DataError

#: IDX type code → big-endian NumPy dtype.
IDX_TYPES: dict[int, str] = {
    0x08: "u1",
    0x09: "i1",
    0x0B: ">i2",
    0x0C: ">i4",
    0x0D: ">f4",
    0x0E: ">f8",
}
#: Largest payload accepted before allocating (a corrupt header must not exhaust memory).
MAX_PAYLOAD_BYTES = 1 << 34
_GZIP_MAGIC = b"\x1f\x8b"


def is_gzip(path: Path) -> bool:
    """Whether the file starts with the gzip magic bytes (independent of its name)."""
    with open(path, "rb") as f:
        return f.read(2) == _GZIP_MAGIC


def open_maybe_gzip(path: Path) -> IO[bytes]:
    """Open ``path`` for binary reading, decompressing on the fly when it is gzip data."""
    return gzip.open(path, "rb") if is_gzip(path) else open(path, "rb")  # noqa: SIM115


def read_maybe_gzip(path: Path) -> bytes:
    """The whole content of ``path``, decompressed when it is gzip data.

    One ``gzip.decompress`` call is much faster than many small reads through ``GzipFile``.
    """
    data = path.read_bytes()
    return gzip.decompress(data) if data[:2] == _GZIP_MAGIC else data


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read one IDX file (``.gz`` or plain) into a NumPy array of its declared type and shape.

    >>> import gzip, tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "labels.gz"
    >>> _ = p.write_bytes(gzip.compress(bytes([0, 0, 8, 1, 0, 0, 0, 3, 7, 1, 2])))
    >>> read_idx(p).tolist()
    [7, 1, 2]
    """
    path = Path(path)
    try:
        with open_maybe_gzip(path) as f:
            dtype, shape = _read_header(f, path)
            payload = _read_payload(f, path, dtype.itemsize * int(np.prod(shape)))
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise DataError(
            f"{path} is not a valid gzip file ({exc}); it is truncated or corrupted. "
            "Delete it and fetch it again"
        ) from exc
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc}") from exc
    array = np.frombuffer(payload, dtype=dtype).reshape(shape)
    return array.astype(dtype.newbyteorder("="), copy=False)


def _read_header(f: IO[bytes], path: Path) -> tuple[np.dtype, tuple[int, ...]]:
    magic = f.read(4)
    if len(magic) < 4 or magic[:2] != b"\x00\x00" or magic[2] not in IDX_TYPES or not magic[3]:
        raise DataError(
            f"{path} is not an IDX file: magic bytes {magic.hex() or '(empty)'}, expected "
            "00 00 <type code> <number of dimensions>"
        )
    ndim = magic[3]
    raw = f.read(4 * ndim)
    if len(raw) < 4 * ndim:
        raise DataError(f"{path}: IDX header is truncated ({4 + len(raw)} of {4 + 4 * ndim} bytes)")
    shape = tuple(int.from_bytes(raw[i : i + 4], "big") for i in range(0, 4 * ndim, 4))
    return np.dtype(IDX_TYPES[magic[2]]), shape


def _read_payload(f: IO[bytes], path: Path, expected: int) -> bytearray:
    if expected > MAX_PAYLOAD_BYTES:
        raise DataError(f"{path}: IDX header declares {expected} bytes of data, not plausible")
    payload = bytearray(expected)
    view = memoryview(payload)
    filled = 0
    while filled < expected:
        count = f.readinto(view[filled:])
        if not count:
            raise DataError(
                f"{path} is truncated: the IDX header declares {expected} bytes of data, the "
                f"file holds {filled}. Delete it and fetch it again"
            )
        filled += count
    if f.read(1):
        raise DataError(
            f"{path} has data after the {expected} bytes its IDX header declares; "
            "the file is corrupted"
        )
    return payload
