"""functional.sparse: relative indices with fillers against a dense oracle, bounds on decode."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deepshrink.functional.sparse import entry_count, from_relative, gap_counts, to_relative


@settings(max_examples=80, deadline=None)
@given(st.integers(0, 3000), st.floats(0, 1), st.integers(1, 16), st.integers(0, 2**32 - 1))
def test_relative_indices_round_trip(size: int, density: float, bits: int, seed: int) -> None:
    dense = np.random.default_rng(seed).random(size) < density
    positions = np.flatnonzero(dense)
    gaps, slots = to_relative(positions, size, bits)
    assert gaps.size == entry_count(positions, size, bits)
    assert np.array_equal(np.bincount(gaps, minlength=1 << bits), gap_counts(positions, size, bits))
    assert gaps.size == 0 or (gaps.min() >= 0 and gaps.max() < 1 << bits)
    decoded = from_relative(gaps, size, bits)
    assert np.array_equal(decoded[slots], positions)  # the real entries land where they were
    fillers = np.setdiff1d(decoded, positions)
    assert not dense[fillers].any()  # fillers sit on zeros
    assert size <= (gaps.size + 1) << bits  # the reader's bound holds


def test_paper_example_with_three_bit_indices() -> None:
    # Han et al. 2016, figure 2: a gap beyond 2**3 - 1 zeros gets a filler zero
    gaps, slots = to_relative(np.array([1, 4, 15]), size=16, bits=3)
    assert gaps.tolist() == [1, 2, 7, 2] and slots.tolist() == [0, 1, 3]


@pytest.mark.parametrize(
    ("gaps", "size", "problem"), [([5, 5], 10, "reach position 11"), ([0], 20, "zeros follow")]
)
def test_decode_rejects_positions_outside_or_unbridged_tails(gaps, size, problem) -> None:
    with pytest.raises(ValueError, match=problem):
        from_relative(np.array(gaps), size, bits=3)
