"""Bit streams: fields packed most significant bit first, vectorised with NumPy.

Why by hand: NumPy's ``packbits``/``unpackbits`` move single bits; fields of ``bits`` width (the
b-bit relative indices and code indices of Deep Compression), variable-length codes and the
sliding windows a table-driven Huffman decoder reads are built here on whole arrays, without a
Python loop per value.

>>> data = pack_fixed(np.array([5, 0, 7, 1]), 3)
>>> data.hex(), unpack_fixed(data, 3, 4).tolist()
('a390', [5, 0, 7, 1])
>>> windows(bytes([0b10110000]), 3).tolist()[:4]
[5, 3, 6, 4]
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "MAX_WIDTH",
    "fixed_bytes",
    "pack_bits",
    "pack_fixed",
    "read_at",
    "unpack_fixed",
    "windows",
]

#: Widest field :func:`read_at` and :func:`windows` read (a 32-bit word less a 7-bit shift).
MAX_WIDTH = 25


def fixed_bytes(count: int, bits: int) -> int:
    """Bytes that ``count`` fields of ``bits`` bits take, padded to a whole byte."""
    return (count * bits + 7) // 8


def pack_bits(codes: np.ndarray, lengths: np.ndarray) -> tuple[bytes, int]:
    """Concatenate codes (``codes[i]`` in its low ``lengths[i] ≤ 32`` bits), MSB first.

    Returns the bytes (the last one zero-padded) and the number of bits. Each code lands in one
    or two 32-bit words; the words are summed with ``bincount`` (the parts never overlap, and
    float64 holds 32-bit sums exactly).
    """
    codes = np.asarray(codes, dtype=np.int64).reshape(-1)
    lengths = np.broadcast_to(np.asarray(lengths, dtype=np.int64), codes.shape)
    ends = np.cumsum(lengths)
    total = int(ends[-1]) if ends.size else 0
    if total == 0:
        return b"", 0
    starts = ends - lengths
    word, offset = starts >> 5, starts & 31
    spill = offset + lengths - 32  # bits that overflow into the next word
    over = np.maximum(spill, 0)
    first = np.where(spill > 0, codes >> over, codes << np.maximum(-spill, 0))
    second = (codes & ((np.int64(1) << over) - 1)) << (32 - over)
    second[spill <= 0] = 0
    size = (total + 31) // 32 + 1
    summed = np.bincount(word, first.astype(np.float64), size)
    summed += np.bincount(word + 1, second.astype(np.float64), size)
    data = summed[:-1].astype(np.uint32).astype(">u4").tobytes()
    return data[: (total + 7) // 8], total


def pack_fixed(values: np.ndarray, bits: int) -> bytes:
    """Pack non-negative integers ``< 2**bits`` into ``bits``-bit fields, MSB first."""
    values = np.asarray(values, dtype=np.int64).reshape(-1)
    return pack_bits(values, np.int64(bits))[0] if bits else b""


def _words(data: bytes, size: int) -> np.ndarray:
    """The big-endian 32-bit word starting at each of the first ``size`` bytes (zeros past end)."""
    padded = np.zeros(size + 4, dtype=np.uint32)
    raw = np.frombuffer(data, dtype=np.uint8, count=min(len(data), size + 3))
    padded[: raw.size] = raw
    return (padded[:-4] << 24) | (padded[1:-3] << 16) | (padded[2:-2] << 8) | padded[3:-1]


def read_at(data: bytes, positions: np.ndarray, width: int) -> np.ndarray:
    """The ``width`` bits (≤ :data:`MAX_WIDTH`) starting at each bit position (int64)."""
    positions = np.asarray(positions, dtype=np.int64)
    if positions.size == 0 or width == 0:
        return np.zeros(positions.shape, dtype=np.int64)
    words = _words(data, int(positions.max() >> 3) + 1)
    shifted = words[positions >> 3] << (positions & 7).astype(np.uint32)
    return (shifted >> np.uint32(32 - width)).astype(np.int64)


def unpack_fixed(data: bytes, bits: int, count: int) -> np.ndarray:
    """The ``count`` fields of ``bits`` bits at the start of ``data`` (int64)."""
    return read_at(data, np.arange(count, dtype=np.int64) * bits, bits)


def windows(data: bytes, width: int) -> np.ndarray:
    """For every bit position of ``data``, the ``width`` bits starting there (bits past the end
    read as zero); int32, one window per bit."""
    words = _words(data, len(data))
    out = np.empty((len(data), 8), dtype=np.int32)
    for shift in range(8):  # eight whole-array shifts, one per bit position within a byte
        out[:, shift] = (words << np.uint32(shift)) >> np.uint32(32 - width)
    return out.reshape(-1)
