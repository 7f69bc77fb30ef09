"""Low-rank tensor maths: truncated SVD, rank selection and the Tensor-Train SVD.

Pure functions on tensors; nothing here knows about modules. :mod:`deepshrink.factorize` turns
the factors into layers.

The SVD itself is :func:`torch.linalg.svd`. What is written here is the bookkeeping around it:
choosing a rank from retained energy or a parameter budget (Eckart–Young gives the error of every
rank from the singular values alone), and the TT-SVD of Oseledets (2011) for a *TT-matrix*
(Novikov et al. 2015). TT-SVD is a loop of truncated SVDs over reshapes; it is hand-written so
that it runs on torch tensors of any dtype, enforces the largest useful rank at each boundary and
returns cores in the ``(rank_in, output_mode, input_mode, rank_out)`` layout that
:class:`deepshrink.factorize.TTLinear` contracts. The tests check it against tensorly's
``tensor_train_matrix``.

>>> import torch
>>> matrix = torch.diag(torch.tensor([3.0, 2.0, 1.0]))
>>> rank_from_energy(torch.linalg.svdvals(matrix), 13 / 14)
2
>>> left, right = low_rank_factors(matrix, 2)
>>> torch.allclose(left @ right, torch.diag(torch.tensor([3.0, 2.0, 0.0])))
True
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = [
    "factor_modes",
    "low_rank_factors",
    "rank_for_compression",
    "rank_from_energy",
    "truncated_svd",
    "truncation_error",
    "tt_max_ranks",
    "tt_svd",
    "tt_to_matrix",
]


def truncated_svd(matrix: Tensor, rank: int) -> tuple[Tensor, Tensor, Tensor]:
    """The ``rank`` leading singular triplets ``(U_k, S_k, Vh_k)`` of a 2-D ``matrix``.

    Computed in float64 and returned in the matrix's dtype, so full rank reconstructs the matrix
    to rounding error. ``rank`` must be in ``[1, min(rows, cols)]``.

    >>> u, s, vh = truncated_svd(torch.eye(3), 2)
    >>> tuple(u.shape), tuple(s.shape), tuple(vh.shape)
    ((3, 2), (2,), (2, 3))
    """
    if matrix.dim() != 2:
        raise ValueError(f"truncated_svd needs a 2-D matrix, got shape {tuple(matrix.shape)}")
    largest = min(matrix.shape)
    if not 1 <= rank <= largest:
        raise ValueError(f"rank must be in [1, {largest}] for a {tuple(matrix.shape)} matrix")
    u, s, vh = torch.linalg.svd(matrix.detach().double(), full_matrices=False)
    dtype = matrix.dtype
    return u[:, :rank].to(dtype), s[:rank].to(dtype), vh[:rank].to(dtype)


def low_rank_factors(matrix: Tensor, rank: int) -> tuple[Tensor, Tensor]:
    """``(left, right)`` with ``left @ right`` the best rank-``rank`` approximation of ``matrix``.

    The singular values are split evenly (``left = U√S``, ``right = √S Vᵀ``), which keeps both
    factors on the same scale for fine-tuning.

    >>> left, right = low_rank_factors(torch.ones(4, 6), 1)
    >>> tuple(left.shape), tuple(right.shape), torch.allclose(left @ right, torch.ones(4, 6))
    ((4, 1), (1, 6), True)
    """
    u, s, vh = truncated_svd(matrix, rank)
    root = s.sqrt()
    return u * root, root[:, None] * vh


def rank_from_energy(singular_values: Tensor, energy: float) -> int:
    """Smallest rank keeping at least ``energy`` of ``Σ s²`` (``0 < energy ≤ 1``).

    >>> rank_from_energy(torch.tensor([3.0, 2.0, 1.0]), 9 / 14)
    1
    >>> rank_from_energy(torch.tensor([3.0, 2.0, 1.0]), 0.95)
    3
    """
    if not 0 < energy <= 1:
        raise ValueError(f"energy must be in (0, 1], got {energy}")
    squares = singular_values.detach().double().square()
    total = float(squares.sum())
    if total == 0:
        return 1
    kept = squares.cumsum(0) / total
    # A slack of 1e-6: an energy equal to a cumulative ratio is met even though the singular
    # values of fp32 weights are only accurate to about that.
    return min(int((kept < energy - 1e-6).sum()) + 1, len(singular_values))


def rank_for_compression(dense_size: int, size_per_rank: int, compression: float) -> int:
    """Largest rank ``r ≥ 1`` with ``r · size_per_rank ≤ dense_size / compression``.

    For an ``m × n`` matrix factorized into ``m × r`` and ``r × n``: ``dense_size = m·n`` and
    ``size_per_rank = m + n``.

    >>> rank_for_compression(1000 * 1000, 1000 + 1000, 10.0)
    50
    """
    if compression <= 0:
        raise ValueError(f"compression must be positive, got {compression}")
    return max(1, math.floor(dense_size / (compression * size_per_rank) + 1e-9))


def truncation_error(singular_values: Tensor, rank: int) -> float:
    """Relative Frobenius error ``‖A − A_r‖ / ‖A‖`` of the best rank-``rank`` approximation.

    By Eckart–Young this is ``sqrt(Σ_{i ≥ r} s_i² / Σ s_i²)``.

    >>> round(truncation_error(torch.tensor([3.0, 2.0, 1.0]), 2), 4)
    0.2673
    """
    squares = singular_values.detach().double().square()
    total = float(squares.sum())
    return math.sqrt(float(squares[rank:].sum()) / total) if total > 0 else 0.0


def factor_modes(size: int, order: int) -> list[int]:
    """Split ``size`` into ``order`` integer factors as equal as possible (sorted ascending).

    Prime factors, largest first, go to the currently smallest mode; a prime ``size`` gives
    ones, which a Tensor-Train layer accepts but does not compress.

    >>> factor_modes(784, 4), factor_modes(1000, 3), factor_modes(1000, 4)
    ([4, 4, 7, 7], [10, 10, 10], [5, 5, 5, 8])
    """
    if size < 1 or order < 1:
        raise ValueError(f"size and order must be positive, got {size} and {order}")
    primes, rest, divisor = [], size, 2
    while divisor * divisor <= rest:
        while rest % divisor == 0:
            primes.append(divisor)
            rest //= divisor
        divisor += 1
    if rest > 1:
        primes.append(rest)
    modes = [1] * order
    for prime in sorted(primes, reverse=True):
        modes[modes.index(min(modes))] *= prime
    return sorted(modes)


def tt_max_ranks(input_modes: Sequence[int], output_modes: Sequence[int]) -> list[int]:
    """Largest useful TT-rank at each of the ``d - 1`` inner boundaries of a TT-matrix.

    At boundary ``k`` the unfolding has ``Π_{i≤k} m_i n_i`` rows and ``Π_{i>k} m_i n_i``
    columns; a rank beyond the smaller of the two adds parameters but no accuracy.

    >>> tt_max_ranks([4, 7, 4, 7], [5, 5, 3, 4])
    [20, 336, 28]
    """
    sizes = [m * n for m, n in zip(output_modes, input_modes, strict=True)]
    return [
        min(math.prod(sizes[: k + 1]), math.prod(sizes[k + 1 :])) for k in range(len(sizes) - 1)
    ]


def tt_svd(
    matrix: Tensor,
    input_modes: Sequence[int],
    output_modes: Sequence[int],
    ranks: Sequence[int] | None = None,
) -> list[Tensor]:
    """TT-matrix cores of ``matrix`` (``Π output_modes × Π input_modes``) by TT-SVD.

    Core ``k`` has shape ``(r_{k-1}, output_modes[k], input_modes[k], r_k)`` with
    ``r_0 = r_d = 1``. ``ranks`` (``d - 1`` values) are capped at :func:`tt_max_ranks`;
    ``None`` keeps the full ranks, which reproduce ``matrix`` to rounding error.

    >>> cores = tt_svd(torch.eye(6), [2, 3], [2, 3])
    >>> [tuple(c.shape) for c in cores], torch.allclose(tt_to_matrix(cores), torch.eye(6))
    ([(1, 2, 2, 4), (4, 3, 3, 1)], True)
    """
    order = len(input_modes)
    if len(output_modes) != order or order < 1:
        raise ValueError(f"input and output modes differ in length: {input_modes}, {output_modes}")
    if tuple(matrix.shape) != (math.prod(output_modes), math.prod(input_modes)):
        raise ValueError(
            f"matrix of shape {tuple(matrix.shape)} is not {math.prod(output_modes)} x "
            f"{math.prod(input_modes)} (the products of output_modes and input_modes)"
        )
    caps = tt_max_ranks(input_modes, output_modes)
    wanted = caps if ranks is None else [min(r, c) for r, c in zip(ranks, caps, strict=True)]
    # (m1..md, n1..nd) → (m1, n1, m2, n2, ...): mode pairs next to each other
    interleaved = [axis for k in range(order) for axis in (k, order + k)]
    rest = matrix.detach().reshape(*output_modes, *input_modes).permute(interleaved)
    cores, previous = [], 1
    for k in range(order - 1):
        unfolding = rest.reshape(previous * output_modes[k] * input_modes[k], -1)
        rank = min(wanted[k], *unfolding.shape)
        u, s, vh = truncated_svd(unfolding, rank)
        cores.append(u.reshape(previous, output_modes[k], input_modes[k], rank))
        rest, previous = s[:, None] * vh, rank
    cores.append(rest.reshape(previous, output_modes[-1], input_modes[-1], 1))
    return cores


def tt_to_matrix(cores: Sequence[Tensor]) -> Tensor:
    """The dense ``Π m_k × Π n_k`` matrix a list of TT-matrix cores represents.

    >>> core = torch.ones(1, 2, 3, 1)
    >>> tt_to_matrix([core, core]).shape
    torch.Size([4, 9])
    """
    result = cores[0].reshape(cores[0].shape[1], cores[0].shape[2], cores[0].shape[3])
    for core in cores[1:]:
        rows, cols = result.shape[0], result.shape[1]
        result = torch.einsum("ijr,rmns->imjns", result, core)
        result = result.reshape(rows * core.shape[1], cols * core.shape[2], core.shape[3])
    return result.reshape(result.shape[0], result.shape[1])
