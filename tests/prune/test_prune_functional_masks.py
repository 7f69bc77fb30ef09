"""functional.masks: exact counts, thresholds, global ranking and the TF-MOT schedule formula."""

from __future__ import annotations

import pytest
import torch

from deepshrink.functional.masks import (
    global_keep_masks,
    iterative_sparsities,
    keep_count,
    keep_mask,
    polynomial_decay,
    pruning_step_due,
    quality_threshold,
    threshold_mask,
)


@pytest.mark.parametrize("sparsity", [0.0, 0.1, 0.5, 0.9, 0.99])
@pytest.mark.parametrize("shape", [(7,), (30, 11), (4, 3, 5, 5)])
def test_keep_mask_prunes_the_exact_count_of_lowest_scores(shape, sparsity) -> None:
    scores = torch.rand(shape, generator=torch.Generator().manual_seed(3))
    mask = keep_mask(scores, sparsity)
    n = scores.numel()
    assert mask.dtype == torch.bool and mask.shape == scores.shape
    assert int(mask.sum()) == keep_count(n, sparsity) == round(n * (1 - sparsity))
    if 0 < int(mask.sum()) < n:
        assert scores[mask].min() >= scores[~mask].max()


def test_ties_still_give_the_exact_count() -> None:
    mask = keep_mask(torch.zeros(10), 0.3)
    assert int(mask.sum()) == 7


def test_existing_mask_is_kept_and_never_grows() -> None:
    scores = torch.tensor([5.0, 4.0, 3.0, 2.0, 1.0])
    current = torch.tensor([False, True, True, True, True])  # the best score was pruned
    assert keep_mask(scores, 0.4, current).tolist() == [False, True, True, True, False]
    # asking for less than already pruned keeps what is pruned
    assert keep_mask(scores, 0.0, current).tolist() == current.tolist()


def test_global_masks_rank_all_tensors_together() -> None:
    a = torch.tensor([[0.1, 0.9], [0.8, 0.2]])
    b = torch.tensor([0.5, 0.05, 0.7])
    masks = global_keep_masks([a, b], 3 / 7)
    assert masks[0].tolist() == [[False, True], [True, False]]
    assert masks[1].tolist() == [True, False, True]
    joined = torch.cat([m.flatten() for m in global_keep_masks([a, b], 0.5)])
    assert int(joined.sum()) == keep_count(7, 0.5)


def test_quality_threshold_is_quality_times_std_by_hand() -> None:
    w = torch.tensor([0.5, -1.5, 2.0, 0.0, -0.25])
    mean = sum(w.tolist()) / 5
    std = (sum((v - mean) ** 2 for v in w.tolist()) / 4) ** 0.5  # Bessel-corrected
    assert quality_threshold(w, 0.7) == pytest.approx(0.7 * std)
    mask = threshold_mask(w.abs(), 0.7 * std)
    assert mask.tolist() == [abs(v) >= 0.7 * std for v in w.tolist()]
    pooled = quality_threshold([w, w], 1.0)
    assert pooled == pytest.approx(float(torch.cat([w, w]).std()))


def test_polynomial_decay_formula_and_boundaries() -> None:
    args = dict(initial_sparsity=0.2, final_sparsity=0.8, begin_step=100, end_step=300, power=3)
    for step in (0, 50, 100):
        assert polynomial_decay(step, **args) == pytest.approx(0.2)
    for step in (300, 301, 10_000):
        assert polynomial_decay(step, **args) == pytest.approx(0.8)
    for step in (150, 200, 250):
        p = (step - 100) / 200
        assert polynomial_decay(step, **args) == pytest.approx(0.8 + (0.2 - 0.8) * (1 - p) ** 3)


def test_pruning_step_due_follows_tfmot() -> None:
    due = [s for s in range(0, 40) if pruning_step_due(s, begin_step=5, end_step=25, frequency=10)]
    assert due == [5, 15, 25]
    forever = [s for s in range(0, 40) if pruning_step_due(s, 5, -1, 10)]
    assert forever == [5, 15, 25, 35]


def test_iterative_sparsities_prune_the_same_share_each_round() -> None:
    values = iterative_sparsities(0.9, 3)
    assert values[-1] == pytest.approx(0.9)
    kept = [1 - v for v in [0.0, *values]]
    ratios = [kept[i + 1] / kept[i] for i in range(3)]
    assert ratios == pytest.approx([0.1 ** (1 / 3)] * 3)
