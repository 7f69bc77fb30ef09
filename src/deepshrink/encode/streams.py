"""Symbol streams of a ``.dsz`` tensor: fixed-width fields or canonical Huffman codes.

A stream codes ``count`` symbols from an alphabet of ``alphabet`` symbols (code indices: the
codebook size; relative indices: ``2**b``). Fixed coding packs each symbol in
``max(1, bit_length(alphabet - 1))`` bits, one section. Huffman coding stores the code length of
every symbol up to the last used one (``length_bits`` bits each, section ``<role>.lengths``), then
the codes (section ``<role>``). The writer prices both from the histogram and keeps the smaller.

>>> symbols = np.array([0, 0, 0, 0, 0, 0, 1, 2])
>>> stream = encode_stream(symbols, 4, "gaps", huffman=True)
>>> stream.spec, [(role, len(data)) for role, data in stream.sections]
({'coding': 'fixed', 'bits': 2}, [('gaps', 2)])
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from deepshrink.functional import huffman as hf
from deepshrink.functional.bitstream import fixed_bytes, pack_fixed, unpack_fixed

__all__ = [
    "SECTION_OVERHEAD",
    "Stream",
    "decode_stream",
    "encode_stream",
    "fixed_width",
    "stream_cost",
]

#: Bytes in front of every section: its length (u64) and CRC32 (u32).
SECTION_OVERHEAD = 12
#: Code lengths are at most 20, so 5 bits hold one.
MAX_LENGTH_BITS = 5

#: Reads the next section: (role, exact length or None) → payload.
Take = Callable[[str, "int | None"], bytes]


@dataclass
class Stream:
    """A coded stream: its header entry, its sections and statistics for the size table."""

    spec: dict[str, Any]
    sections: list[tuple[str, bytes]]
    stats: dict[str, float] = field(default_factory=dict)


def fixed_width(alphabet: int) -> int:
    """Bits of a fixed-width field for ``alphabet`` symbols (at least 1)."""
    return max(1, (alphabet - 1).bit_length())


def _huffman_plan(counts: np.ndarray) -> tuple[np.ndarray, int, int]:
    """Code lengths (trimmed after the last used symbol), length_bits and coded bits."""
    lengths = hf.code_lengths(counts)
    used = np.flatnonzero(lengths)
    lengths = lengths[: int(used[-1]) + 1] if used.size else lengths[:0]
    bits = int((counts[: lengths.size] * lengths).sum())
    return lengths, max(1, int(lengths.max(initial=1)).bit_length()), bits


def stream_cost(counts: np.ndarray, alphabet: int, huffman_allowed: bool) -> tuple[int, str]:
    """Bytes (sections and their overhead included) of the cheaper coding, and its name."""
    counts = np.asarray(counts, dtype=np.int64)
    total = int(counts.sum())
    fixed = fixed_bytes(total, fixed_width(alphabet)) + SECTION_OVERHEAD
    if not huffman_allowed or total == 0:
        return fixed, "fixed"
    lengths, length_bits, bits = _huffman_plan(counts)
    coded = fixed_bytes(lengths.size, length_bits) + (bits + 7) // 8 + 2 * SECTION_OVERHEAD
    return (coded, "huffman") if coded < fixed else (fixed, "fixed")


def stream_stats(counts: np.ndarray, coded_bits: int) -> dict[str, float]:
    """Symbols, Shannon entropy, Huffman mean code length and actual bits per symbol."""
    total = int(counts.sum())
    lengths = hf.code_lengths(counts)
    return {
        "symbols": total,
        "entropy": hf.entropy(counts),
        "huffman_bits": hf.average_length(counts, lengths),
        "coded_bits": coded_bits / total if total else 0.0,
    }


def encode_stream(symbols: np.ndarray, alphabet: int, role: str, *, huffman: bool) -> Stream:
    """Code ``symbols`` (ints in ``[0, alphabet)``) the cheaper way."""
    counts = np.bincount(symbols, minlength=alphabet)
    _, coding = stream_cost(counts, alphabet, huffman)
    if coding == "fixed":
        width = fixed_width(alphabet)
        data = pack_fixed(symbols, width)
        spec: dict[str, Any] = {"coding": "fixed", "bits": width}
        return Stream(spec, [(role, data)], stream_stats(counts, 8 * len(data)))
    lengths, length_bits, _ = _huffman_plan(counts)
    data, _ = hf.encode(symbols, lengths)
    table = pack_fixed(lengths, length_bits)
    spec = {"coding": "huffman", "alphabet": int(lengths.size), "length_bits": length_bits}
    sections = [(f"{role}.lengths", table), (role, data)]
    return Stream(spec, sections, stream_stats(counts, 8 * (len(data) + len(table))))


def decode_stream(spec: dict[str, Any], take: Take, role: str, count: int, alphabet: int) -> Any:
    """Read and decode the stream ``spec`` describes: ``count`` symbols below ``alphabet``.

    Raises ``ValueError`` (the caller names the section) when the stream is malformed.
    """
    if spec["coding"] == "fixed":
        width = spec["bits"]
        if width != fixed_width(alphabet):
            raise ValueError(
                f"{width}-bit fields for {alphabet} symbols; expected {fixed_width(alphabet)}"
            )
        symbols = unpack_fixed(take(role, fixed_bytes(count, width)), width, count)
        if symbols.size and int(symbols.max()) >= alphabet:
            raise ValueError(f"symbol {int(symbols.max())} is outside the alphabet of {alphabet}")
        return symbols
    size, length_bits = spec["alphabet"], spec["length_bits"]
    if not 1 <= size <= alphabet or not 1 <= length_bits <= MAX_LENGTH_BITS:
        raise ValueError(f"a code table of {size} lengths of {length_bits} bits does not fit")
    lengths = unpack_fixed(
        take(f"{role}.lengths", fixed_bytes(size, length_bits)), length_bits, size
    )
    data = take(role, None)
    if count > 8 * len(data):
        raise ValueError(f"{count} symbols cannot fit in {len(data)} bytes")
    return hf.decode(data, lengths, count)
