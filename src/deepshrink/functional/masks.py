"""Pruning maths on plain tensors: scores → keep-masks, Han et al. thresholds, schedules.

Nothing here knows about modules. A *mask* is a ``bool`` tensor, ``True`` where a value is kept.
Counts follow TF Model Optimization: pruning ``sparsity`` of ``n`` values keeps
``round(n × (1 − sparsity))`` of them (ties broken by position, so the count is exact), and
values already pruned stay pruned. Global pruning ranks the scores of all tensors together in one
sort. The polynomial-decay schedule reproduces ``tfmot.sparsity.keras.PolynomialDecay``.

>>> scores = torch.tensor([0.3, 0.1, 0.4, 0.2])
>>> keep_mask(scores, 0.5)
tensor([ True, False,  True, False])
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = [
    "global_keep_masks",
    "iterative_sparsities",
    "keep_count",
    "keep_mask",
    "polynomial_decay",
    "pruning_step_due",
    "quality_threshold",
    "threshold_mask",
]


def keep_count(total: int, sparsity: float) -> int:
    """How many of ``total`` values survive pruning to ``sparsity`` (TF-MOT's rounding).

    >>> keep_count(10, 0.25), keep_count(784 * 300, 0.92)
    (8, 18816)
    """
    return int(round(total * (1.0 - sparsity)))


def _ranked_mask(scores: Tensor, prune: int) -> Tensor:
    """``True`` everywhere except at the ``prune`` lowest scores (first position wins ties)."""
    flat = scores.detach().flatten()
    mask = torch.ones(flat.numel(), dtype=torch.bool, device=flat.device)
    if prune > 0:
        order = torch.argsort(flat, stable=True)
        mask[order[:prune]] = False
    return mask.view(scores.shape)


def _fixed(scores: Tensor, current: Tensor | None) -> Tensor:
    """Scores with already-pruned positions at −∞, so they are the first to go (and stay gone)."""
    scores = scores.detach().float()
    if current is None:
        return scores
    return scores.masked_fill(~current.to(torch.bool), -math.inf)


def keep_mask(scores: Tensor, sparsity: float, current: Tensor | None = None) -> Tensor:
    """Mask keeping the highest scores so that a ``sparsity`` fraction is pruned.

    ``current`` is an existing mask: what it prunes stays pruned, so the result never holds more
    than it; when it already prunes more than ``sparsity`` asks, it is returned unchanged.

    >>> keep_mask(torch.tensor([3.0, 1.0, 2.0]), 0.0)
    tensor([True, True, True])
    >>> keep_mask(torch.tensor([3.0, 1.0, 2.0]), 0.5, current=torch.tensor([False, True, True]))
    tensor([False,  True,  True])
    """
    fixed = _fixed(scores, current)
    already = 0 if current is None else int((~current.to(torch.bool)).sum())
    prune = max(fixed.numel() - keep_count(fixed.numel(), sparsity), already)
    return _ranked_mask(fixed, prune)


def global_keep_masks(
    scores: Sequence[Tensor], sparsity: float, current: Sequence[Tensor | None] | None = None
) -> list[Tensor]:
    """One mask per score tensor, ranking all scores together: ``sparsity`` of them all pruned.

    >>> a, b = torch.tensor([1.0, 2.0]), torch.tensor([0.5, 3.0, 4.0, 0.1])
    >>> [m.tolist() for m in global_keep_masks([a, b], 0.5)]
    [[False, True], [False, True, True, False]]
    """
    current = list(current) if current is not None else [None] * len(scores)
    fixed = [_fixed(s, c).flatten() for s, c in zip(scores, current, strict=True)]
    joined = torch.cat(fixed) if fixed else torch.zeros(0)
    already = int(torch.isinf(joined).sum())
    prune = max(joined.numel() - keep_count(joined.numel(), sparsity), already)
    mask = _ranked_mask(joined, prune)
    return [
        m.view(s.shape) for m, s in zip(mask.split([f.numel() for f in fixed]), scores, strict=True)
    ]


def quality_threshold(weights: Tensor | Sequence[Tensor], quality: float) -> float:
    """Han et al. (2015): ``quality`` × the standard deviation of the weights (Bessel-corrected).

    All values count, zeros included; several tensors are pooled (for a global threshold).

    >>> w = torch.tensor([1.0, -1.0, 3.0, -3.0])  # std = √(20/3) ≈ 2.582
    >>> round(quality_threshold(w, 0.5), 4)
    1.291
    """
    if isinstance(weights, Tensor):
        weights = [weights]
    pooled = torch.cat([w.detach().flatten().double() for w in weights])
    if pooled.numel() < 2:
        return 0.0
    return quality * float(pooled.std())


def threshold_mask(scores: Tensor, threshold: float, current: Tensor | None = None) -> Tensor:
    """Keep the values whose score is at least ``threshold`` (and that ``current`` keeps).

    >>> threshold_mask(torch.tensor([0.1, -2.0, 0.5]).abs(), 0.5)
    tensor([False,  True,  True])
    """
    mask = scores.detach() >= threshold
    return mask if current is None else mask & current.to(torch.bool)


def polynomial_decay(
    step: int,
    initial_sparsity: float,
    final_sparsity: float,
    begin_step: int,
    end_step: int,
    power: float = 3.0,
) -> float:
    """Sparsity at ``step`` of TF-MOT's ``PolynomialDecay`` (Zhu & Gupta's AGP for power 3).

    ``s(t) = s_f + (s_i − s_f)(1 − p)^power`` with ``p = clip((t − begin)/(end − begin), 0, 1)``:
    the initial sparsity before ``begin_step``, the final one from ``end_step`` on.

    >>> round(polynomial_decay(50, 0.0, 0.8, 0, 100), 6)
    0.7
    """
    progress = min(1.0, max(0.0, (step - begin_step) / (end_step - begin_step)))
    return final_sparsity + (initial_sparsity - final_sparsity) * (1.0 - progress) ** power


def pruning_step_due(step: int, begin_step: int, end_step: int, frequency: int) -> bool:
    """Whether masks are updated at ``step``: in ``[begin_step, end_step]``, every ``frequency``.

    An ``end_step`` of −1 prunes forever, as in TF-MOT's ``ConstantSparsity``.

    >>> [s for s in range(0, 12) if pruning_step_due(s, 2, 8, 3)]
    [2, 5, 8]
    """
    in_range = step >= begin_step and (end_step < 0 or step <= end_step)
    return in_range and (step - begin_step) % frequency == 0


def iterative_sparsities(target: float, steps: int) -> list[float]:
    """Cumulative sparsity after each of ``steps`` rounds that prune the same share of survivors.

    Round ``i`` keeps ``(1 − target)^(i/steps)`` of the weights, as in iterative magnitude
    pruning and the lottery-ticket procedure (a fixed fraction of what remains, each round).

    >>> [round(s, 4) for s in iterative_sparsities(0.75, 2)]
    [0.5, 0.75]
    """
    return [1.0 - (1.0 - target) ** (index / steps) for index in range(1, steps + 1)]
