"""Low-rank maths against oracles: Eckart–Young, constructed spectra and tensorly's TT-SVD."""

from __future__ import annotations

import pytest
import torch

from deepshrink.functional.lowrank import (
    factor_modes,
    low_rank_factors,
    rank_for_compression,
    rank_from_energy,
    truncated_svd,
    truncation_error,
    tt_max_ranks,
    tt_svd,
    tt_to_matrix,
)


def matrix_with_spectrum(values: list[float], rows: int, cols: int) -> torch.Tensor:
    """A random ``rows × cols`` matrix whose singular values are exactly ``values``."""
    generator = torch.Generator().manual_seed(0)
    u, _ = torch.linalg.qr(torch.randn(rows, len(values), generator=generator, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(cols, len(values), generator=generator, dtype=torch.float64))
    return u @ torch.diag(torch.tensor(values, dtype=torch.float64)) @ v.T


def test_full_rank_reconstructs_and_error_decreases_with_rank() -> None:
    matrix = torch.randn(30, 20, generator=torch.Generator().manual_seed(1))
    errors = []
    for rank in range(1, 21):
        left, right = low_rank_factors(matrix, rank)
        errors.append(float((left @ right - matrix).norm() / matrix.norm()))
    assert errors == sorted(errors, reverse=True)
    assert errors[-1] < 1e-6  # fp32 factors of an fp64 SVD


def test_truncation_error_is_eckart_young() -> None:
    matrix = matrix_with_spectrum([5.0, 4.0, 3.0, 2.0, 1.0], 12, 9)
    values = torch.linalg.svdvals(matrix)
    for rank in range(1, 6):
        left, right = low_rank_factors(matrix, rank)
        measured = float((left @ right - matrix).norm() / matrix.norm())
        assert truncation_error(values, rank) == pytest.approx(measured, abs=1e-12)


def test_rank_from_energy_is_exact_on_a_constructed_spectrum() -> None:
    values = torch.linalg.svdvals(matrix_with_spectrum([4.0, 3.0, 2.0, 1.0], 10, 8))
    # energies 16, 9, 4, 1 of 30: cumulative 16/30, 25/30, 29/30, 1
    assert rank_from_energy(values, 16 / 30) == 1
    assert rank_from_energy(values, 16 / 30 + 1e-4) == 2
    assert rank_from_energy(values, 25 / 30) == 2
    assert rank_from_energy(values, 29 / 30) == 3
    assert rank_from_energy(values, 1.0) == 4


def test_rank_for_compression_is_the_largest_rank_in_budget() -> None:
    # 100 x 50: 5000 weights; rank r costs 150 r. compression 4 → 1250 → r = 8 (1200).
    assert rank_for_compression(5000, 150, 4.0) == 8
    assert rank_for_compression(5000, 150, 5000 / 1200) == 8  # exactly at the budget
    assert rank_for_compression(5000, 150, 1000.0) == 1  # never below 1


def test_truncated_svd_refuses_a_rank_out_of_range() -> None:
    with pytest.raises(ValueError, match=r"rank must be in \[1, 3\]"):
        truncated_svd(torch.ones(3, 5), 4)


def test_tt_svd_full_rank_is_exact_and_matches_tensorly() -> None:
    import tensorly
    from tensorly.decomposition import tensor_train_matrix

    matrix = torch.randn(60, 24, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    inputs, outputs = [2, 3, 4], [3, 4, 5]
    assert torch.allclose(tt_to_matrix(tt_svd(matrix, inputs, outputs)), matrix, atol=1e-10)
    cores = tt_svd(matrix, inputs, outputs, [4, 6])
    assert [tuple(c.shape) for c in cores] == [(1, 3, 2, 4), (4, 4, 3, 6), (6, 5, 4, 1)]
    with tensorly.backend_context("pytorch"):
        reference = tensor_train_matrix(matrix.reshape(3, 4, 5, 2, 3, 4), rank=[1, 4, 6, 1])
        expected = tensorly.tt_matrix_to_tensor(reference).reshape(60, 24)
    assert torch.allclose(tt_to_matrix(cores), expected, atol=1e-10)


def test_tt_ranks_are_capped_and_shapes_checked() -> None:
    assert tt_max_ranks([2, 3], [2, 3]) == [4]
    cores = tt_svd(torch.eye(6), [2, 3], [2, 3], [100])
    assert cores[0].shape[-1] == 4
    with pytest.raises(ValueError, match="differ in length"):
        tt_svd(torch.eye(6), [7], [6, 1])
    with pytest.raises(ValueError, match="not 6 x 7"):
        tt_svd(torch.eye(6), [7, 1], [6, 1])


def test_factor_modes() -> None:
    assert factor_modes(784, 4) == [4, 4, 7, 7]
    assert factor_modes(300, 4) == [3, 4, 5, 5]
    assert factor_modes(7, 2) == [1, 7]
