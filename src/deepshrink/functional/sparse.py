"""Relative-index sparse storage (Han et al. 2016, Deep Compression, section 2 and figure 2).

The positions of a flat tensor's non-zeros are stored as *gaps*: the number of zeros skipped
since the previous stored entry, in ``bits``-bit fields. A gap larger than ``2**bits - 1`` is
bridged by *filler* entries: each filler skips ``2**bits - 1`` zeros and stores an explicit zero
at the next position. Fillers are also appended until fewer than ``2**bits`` zeros follow the last
entry, so a reader can bound a tensor's size by its number of entries:
``size <= (entries + 1) * 2**bits``.

>>> gaps, slots = to_relative(np.array([1, 4, 15]), size=20, bits=3)
>>> gaps.tolist(), slots.tolist()
([1, 2, 7, 2], [0, 1, 3])
>>> from_relative(gaps, size=20, bits=3).tolist()
[1, 4, 12, 15]
"""

from __future__ import annotations

import numpy as np

__all__ = ["entry_count", "from_relative", "gap_counts", "to_relative"]


def _split(positions: np.ndarray, size: int, bits: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Fillers before each position, the gap left for it, and the fillers after the last one."""
    span = 1 << bits
    positions = np.asarray(positions, dtype=np.int64)
    gaps = np.diff(positions, prepend=-1) - 1
    fillers = gaps >> bits
    last = int(positions[-1]) if positions.size else -1
    return fillers, gaps & (span - 1), (size - 1 - last) >> bits


def to_relative(positions: np.ndarray, size: int, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Gaps for sorted flat ``positions`` in a tensor of ``size`` elements, with fillers.

    Returns the gap of every entry and, for each position, the index of its entry (the other
    entries are fillers, whose value is zero).
    """
    fillers, rest, tail = _split(positions, size, bits)
    slots = np.cumsum(fillers + 1) - 1
    entries = (int(slots[-1]) + 1 if slots.size else 0) + tail
    gaps = np.full(entries, (1 << bits) - 1, dtype=np.int64)
    gaps[slots] = rest
    return gaps, slots


def entry_count(positions: np.ndarray, size: int, bits: int) -> int:
    """Number of entries (positions plus fillers) :func:`to_relative` produces."""
    fillers, _, tail = _split(positions, size, bits)
    return int(fillers.sum()) + len(fillers) + tail


def gap_counts(positions: np.ndarray, size: int, bits: int) -> np.ndarray:
    """Histogram (``2**bits`` bins) of the gaps :func:`to_relative` would produce."""
    fillers, rest, tail = _split(positions, size, bits)
    counts = np.bincount(rest, minlength=1 << bits)
    counts[-1] += int(fillers.sum()) + tail
    return counts


def from_relative(gaps: np.ndarray, size: int, bits: int) -> np.ndarray:
    """Flat positions of the entries; ``ValueError`` if they leave the tensor or leave a tail of
    ``2**bits`` or more zeros (which a writer bridges with fillers)."""
    positions = np.cumsum(np.asarray(gaps, dtype=np.int64) + 1) - 1
    last = int(positions[-1]) if positions.size else -1
    if last >= size:
        raise ValueError(f"the gaps reach position {last} of a tensor of {size} elements")
    if size - 1 - last >= 1 << bits:
        raise ValueError(
            f"{size - 1 - last} zeros follow the last entry; at most {(1 << bits) - 1}"
        )
    return positions
