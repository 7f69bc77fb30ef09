"""functional.huffman and bitstream: round trips, optimality against entropy, malformed streams."""

from __future__ import annotations

import heapq

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deepshrink.functional import huffman
from deepshrink.functional.bitstream import pack_bits, pack_fixed, read_at, unpack_fixed, windows

histograms = st.lists(st.integers(0, 5000), min_size=1, max_size=300).filter(lambda c: sum(c) > 0)


def _oracle_cost(counts: list[int]) -> int:
    """Total bits of an optimal prefix code: the sum of all merged weights (textbook Huffman)."""
    heap = [c for c in counts if c > 0]
    if len(heap) == 1:
        return heap[0]  # one symbol still gets a 1-bit code
    heapq.heapify(heap)
    total = 0
    while len(heap) > 1:
        merged = heapq.heappop(heap) + heapq.heappop(heap)
        total += merged
        heapq.heappush(heap, merged)
    return total


@settings(max_examples=60, deadline=None)
@given(histograms)
def test_code_lengths_are_optimal_and_within_one_bit_of_entropy(counts: list[int]) -> None:
    counts_array = np.array(counts)
    lengths = huffman.code_lengths(counts_array)
    assert int((counts_array * lengths).sum()) == _oracle_cost(counts)
    assert ((lengths > 0) == (counts_array > 0)).all()
    assert huffman.kraft_sum(lengths) <= 1
    h, mean = huffman.entropy(counts_array), huffman.average_length(counts_array, lengths)
    assert h - 1e-9 <= mean <= h + 1  # = h + 1 only for a single symbol (h = 0, 1-bit code)
    if (counts_array > 0).sum() > 1:
        assert mean < h + 1


@settings(max_examples=60, deadline=None)
@given(histograms, st.integers(0, 2**32 - 1))
def test_encode_decode_round_trip(counts: list[int], seed: int) -> None:
    rng = np.random.default_rng(seed)
    p = np.array(counts, dtype=float) / sum(counts)
    symbols = rng.choice(len(counts), size=int(rng.integers(1, 3000)), p=p)
    lengths = huffman.code_lengths(np.bincount(symbols, minlength=len(counts)))
    data, nbits = huffman.encode(symbols, lengths)
    assert len(data) == (nbits + 7) // 8
    assert np.array_equal(huffman.decode(data, lengths, symbols.size), symbols)


def test_long_codes_are_limited_and_still_decode() -> None:
    counts = np.array([2**i for i in range(40)], dtype=np.int64)  # Fibonacci-like skew
    lengths = huffman.code_lengths(counts)
    assert lengths.max() <= huffman.MAX_CODE_LENGTH
    assert huffman.kraft_sum(lengths) == 1
    symbols = np.arange(40).repeat(3)
    data, _ = huffman.encode(symbols, lengths)
    assert np.array_equal(huffman.decode(data, lengths, symbols.size), symbols)


def test_canonical_codes_follow_length_then_symbol_order() -> None:
    lengths = np.array([2, 1, 3, 3, 0])
    assert huffman.canonical_codes(lengths).tolist() == [0b10, 0b0, 0b110, 0b111, 0]


@pytest.mark.parametrize(
    ("data", "lengths", "count", "problem"),
    [
        (b"\xff", [1, 1, 1], 3, "Kraft"),
        (b"\x00", [1, 1], 9, "run out"),
        (b"\x00\x00", [1, 1], 3, "stream has 16 bits"),
        (b"\x80", [1, 0], 2, "invalid code"),  # "1" starts no code of an incomplete code
        (b"\x00", [0, 0], 1, "no symbol"),
        (b"\x00", [21, 1], 1, "lengths"),
        (b"\x00", [1, 1], 0, "left after"),
    ],
)
def test_malformed_streams_raise_value_error(data, lengths, count, problem) -> None:
    with pytest.raises(ValueError, match=problem):
        huffman.decode(data, np.array(lengths), count)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 16), st.integers(0, 500), st.integers(0, 2**32 - 1))
def test_fixed_fields_round_trip(bits: int, count: int, seed: int) -> None:
    values = np.random.default_rng(seed).integers(0, 2**bits, size=count)
    data = pack_fixed(values, bits)
    assert len(data) == (count * bits + 7) // 8
    assert np.array_equal(unpack_fixed(data, bits, count), values)


def test_pack_bits_and_windows_agree_with_a_bit_string_oracle() -> None:
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 33, size=200)
    codes = rng.integers(0, 2**32, size=200) & ((1 << lengths) - 1)
    data, nbits = pack_bits(codes, lengths)
    text = "".join(format(int(c), f"0{int(n)}b") for c, n in zip(codes, lengths, strict=True))
    assert nbits == len(text)
    assert "".join(format(b, "08b") for b in data)[:nbits] == text
    padded = text + "0" * (8 * len(data) - nbits + 32)
    assert windows(data, 20).tolist() == [int(padded[p : p + 20], 2) for p in range(8 * len(data))]
    positions = rng.integers(0, nbits, size=50)
    assert read_at(data, positions, 25).tolist() == [int(padded[p : p + 25], 2) for p in positions]
