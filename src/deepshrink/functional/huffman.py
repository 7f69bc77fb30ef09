"""Canonical Huffman codes, encoded and decoded without a Python loop over the symbols.

Why by hand: Deep Compression stores code lengths only (the canonical code follows from them)
and decodes millions of symbols; the Huffman packages on PyPI walk a tree symbol by symbol in
Python. Here the code lengths come from the usual merge of the two rarest nodes (a loop over the
*alphabet*, at most 65,536 symbols), limited to :data:`MAX_CODE_LENGTH` bits by flattening the
counts. Encoding packs all codes at once; decoding looks up, for *every* bit position, the code
that would start there (one table lookup on a sliding window), then follows the chain of code
starts from bit 0 by pointer doubling: ``log2(count)`` vectorised gathers instead of ``count``
Python steps (the chain is first narrowed to the positions 64 steps after some position, which
Huffman's self-synchronisation makes few).

A stream with a single distinct symbol gets a 1-bit code, so every symbol costs at least one
bit; a reader can then bound a symbol count by the bytes it reads.

>>> counts = np.bincount([0, 0, 0, 0, 1, 1, 2, 3])
>>> lengths = code_lengths(counts)
>>> lengths.tolist()
[1, 2, 3, 3]
>>> data, nbits = encode(np.array([0, 1, 2, 3, 0]), lengths)
>>> decode(data, lengths, 5).tolist(), nbits
([0, 1, 2, 3, 0], 10)
>>> round(entropy(counts), 3), average_length(counts, lengths)
(1.75, 1.75)
"""

from __future__ import annotations

import heapq

import numpy as np

from deepshrink.functional.bitstream import pack_bits, windows

__all__ = [
    "MAX_CODE_LENGTH",
    "average_length",
    "canonical_codes",
    "code_lengths",
    "decode",
    "decode_table",
    "encode",
    "entropy",
    "kraft_sum",
]

#: Longest code: the decode table has ``2**max_length`` entries.
MAX_CODE_LENGTH = 20


def code_lengths(counts: np.ndarray, max_length: int = MAX_CODE_LENGTH) -> np.ndarray:
    """Huffman code length of every symbol (0 for symbols that never occur)."""
    counts = np.asarray(counts, dtype=np.int64)
    lengths = np.zeros(counts.size, dtype=np.int64)
    present = np.flatnonzero(counts > 0)
    if present.size <= 1:
        lengths[present] = 1
        return lengths
    if present.size > 1 << max_length:
        raise ValueError(f"{present.size} symbols do not fit codes of ≤ {max_length} bits")
    weights = counts[present]
    depths = _depths(weights)
    while depths.max() > max_length:  # rare: flatten the counts until the longest code fits
        weights = (weights + 1) // 2
        depths = _depths(weights)
    lengths[present] = depths
    return lengths


def _depths(weights: np.ndarray) -> np.ndarray:
    """Leaf depths of a Huffman tree over ``weights`` (ties broken by creation order)."""
    size = weights.size
    heap = [(int(w), node) for node, w in enumerate(weights)]
    heapq.heapify(heap)
    parent = np.zeros(2 * size - 1, dtype=np.int64)
    node = size
    while len(heap) > 1:
        first_weight, first = heapq.heappop(heap)
        second_weight, second = heapq.heappop(heap)
        parent[first] = parent[second] = node
        heapq.heappush(heap, (first_weight + second_weight, node))
        node += 1
    depth = np.zeros(2 * size - 1, dtype=np.int64)
    for child in range(2 * size - 3, -1, -1):  # parents are created after their children
        depth[child] = depth[parent[child]] + 1
    return depth[:size]


def kraft_sum(lengths: np.ndarray) -> float:
    """``Σ 2**-length`` over the symbols that have a code: 1 for a complete prefix code."""
    used = np.asarray(lengths, dtype=np.int64)
    used = used[used > 0]
    return float(np.sum(np.ldexp(1.0, -used))) if used.size else 0.0


def _sorted_starts(lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Used symbols in canonical order, their lengths, left-aligned code starts and max length."""
    lengths = np.asarray(lengths, dtype=np.int64)
    symbols = np.flatnonzero(lengths > 0)
    order = np.lexsort((symbols, lengths[symbols]))
    symbols, used = symbols[order], lengths[symbols[order]]
    longest = int(used.max()) if used.size else 0
    span = np.int64(1) << (longest - used)
    starts = np.cumsum(span) - span
    return symbols, used, starts, longest


def canonical_codes(lengths: np.ndarray) -> np.ndarray:
    """The canonical code of every symbol (its low ``lengths[s]`` bits), 0 for unused ones."""
    symbols, used, starts, longest = _sorted_starts(lengths)
    codes = np.zeros(np.asarray(lengths).size, dtype=np.int64)
    codes[symbols] = starts >> (longest - used)
    return codes


def encode(symbols: np.ndarray, lengths: np.ndarray) -> tuple[bytes, int]:
    """Huffman-code ``symbols``; returns the bytes (zero-padded) and the number of bits."""
    symbols = np.asarray(symbols, dtype=np.int64)
    lengths = np.asarray(lengths, dtype=np.int64)
    return pack_bits(canonical_codes(lengths)[symbols], lengths[symbols])


def decode_table(lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """``(symbol, length)`` for every ``width``-bit window, and ``width`` (the longest code).

    Windows that start no code (an incomplete code) have length 0.
    """
    symbols, used, starts, longest = _sorted_starts(lengths)
    span = np.int64(1) << (longest - used)
    size = 1 << longest
    table_symbols = np.zeros(size, dtype=np.int64)
    table_lengths = np.zeros(size, dtype=np.int64)
    filled = int(span.sum())
    table_symbols[:filled] = np.repeat(symbols, span)
    table_lengths[:filled] = np.repeat(used, span)
    return table_symbols, table_lengths, longest


def decode(data: bytes, lengths: np.ndarray, count: int) -> np.ndarray:
    """Decode ``count`` symbols from ``data``; raises ``ValueError`` on a malformed stream.

    ``lengths`` must satisfy Kraft's inequality (``kraft_sum(lengths) <= 1``) and ``data`` must
    hold exactly the bytes the codes need.
    """
    if count == 0:
        if data:
            raise ValueError(f"{len(data)} bytes left after the last symbol")
        return np.zeros(0, dtype=np.int64)
    lengths = np.asarray(lengths, dtype=np.int64)
    if lengths.size == 0 or lengths.min() < 0 or lengths.max() > MAX_CODE_LENGTH:
        raise ValueError(f"code lengths must lie in [0, {MAX_CODE_LENGTH}]")
    if kraft_sum(lengths) > 1:
        raise ValueError("code lengths do not form a prefix code (Kraft sum above 1)")
    table_symbols, table_lengths, width = decode_table(lengths)
    if width == 0:
        raise ValueError("no symbol has a code")
    nbits = 8 * len(data)
    window = windows(data, width)
    step = table_lengths[window]
    jump = np.arange(nbits + 1, dtype=np.int64)
    jump[:nbits] += step
    jump[:nbits][step == 0] = nbits  # a window that starts no code leads nowhere
    np.minimum(jump, nbits, out=jump)
    starts = _chain(jump.astype(np.int32 if nbits < 2**31 - 1 else np.int64), 0, count)
    if starts[-1] >= nbits:
        raise ValueError("the bits run out or hold an invalid code before the last symbol")
    end = int(starts[-1]) + int(step[starts[-1]])
    if nbits - end >= 8:
        raise ValueError(f"codes end at bit {end} but the stream has {nbits} bits")
    return table_symbols[window[starts]]


def _follow(jump: np.ndarray, start: int, count: int, levels: int) -> tuple[np.ndarray, np.ndarray]:
    """The chain ``start, jump[start], ...`` up to ``count`` long, doubling at most ``levels``
    times; returns it and ``jump`` composed with itself ``len(chain)`` times."""
    chain, power = np.array([start], dtype=jump.dtype), jump
    while chain.size < count and levels > 0:
        chain = np.concatenate([chain, power[chain]])
        power, levels = power[power], levels - 1
    return chain[:count], power


def _chain(jump: np.ndarray, start: int, count: int, rounds: int = 3) -> np.ndarray:
    """The first ``count`` nodes of the chain from ``start`` of the successor array ``jump``.

    Pointer doubling over every bit position costs ``nbits`` gathers a level. Huffman codes
    resynchronise, so after 64 steps most chains have merged: the nodes 64 steps after *some*
    node form a set closed under ``jump`` that holds the rest of the chain, closer to one node
    per symbol than one per bit. Where that set is the chain itself
    (each node's successor is the next node), it is read off directly; otherwise it is narrowed
    again, and the doubling goes on there.
    """
    head, power = _follow(jump, start, count, levels=6)
    if head.size >= count or head.size < 64:
        return head
    reached = np.zeros(jump.size, dtype=bool)
    reached[power] = True
    nodes = np.flatnonzero(reached).astype(jump.dtype)
    rank = (np.cumsum(reached) - 1).astype(jump.dtype)
    compact, first, rest = rank[jump[nodes]], int(rank[power[start]]), count - head.size
    successors, following = compact[first : first + rest - 1], np.arange(first + 1, first + rest)
    if first + rest <= nodes.size and np.array_equal(successors, following):
        tail = np.arange(first, first + rest)
    elif rounds > 1:
        tail = _chain(compact, first, rest, rounds - 1)
    else:
        tail, _ = _follow(compact, first, rest, levels=64)
    return np.concatenate([head, nodes[tail]])


def entropy(counts: np.ndarray) -> float:
    """Shannon entropy in bits per symbol of a histogram (0 for an empty one)."""
    counts = np.asarray(counts, dtype=np.float64)
    total = counts.sum()
    if total == 0:
        return 0.0
    p = counts[counts > 0] / total
    return float(-(p * np.log2(p)).sum()) + 0.0


def average_length(counts: np.ndarray, lengths: np.ndarray) -> float:
    """Mean code length in bits per symbol of a histogram coded with ``lengths``."""
    counts = np.asarray(counts, dtype=np.float64)
    total = counts.sum()
    lengths = np.asarray(lengths, dtype=np.float64)[: counts.size]
    return float((counts[: lengths.size] * lengths).sum() / total) if total else 0.0
