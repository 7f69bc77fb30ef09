"""Budgeted choice: one option per item, least total cost, total size within a budget.

This is the multiple-choice knapsack problem behind mixed-precision bit allocation (items are
layers, options their bit widths, size ``parameters × bits``, cost the measured sensitivity).
:func:`choose` solves it exactly by dynamic programming over *Pareto frontiers*: after each item
it keeps only the partial choices that no smaller partial choice beats in cost, and drops those
that cannot fit even if every later item took its smallest option. The frontier holds at most
one point per distinct partial size, so the work stays small for the few dozen layers of a
network; past ``max_points`` points it is thinned to evenly spaced ones (then the answer is
feasible but possibly not optimal, which is logged). Ties in cost go to the larger total size.

>>> choose([[10, 20], [10, 20]], [[5.0, 0.0], [1.0, 0.0]], budget=30)  # item 1 loses less
[1, 0]
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

__all__ = ["choose"]

logger = logging.getLogger(__name__)


def choose(
    sizes: Sequence[Sequence[float]],
    costs: Sequence[Sequence[float]],
    budget: float,
    *,
    max_points: int = 200_000,
) -> list[int]:
    """Index of the option picked per item: least ``Σ cost`` with ``Σ size ≤ budget``.

    ``sizes[i][k]``/``costs[i][k]`` describe option ``k`` of item ``i``. Ties in cost go to the
    larger total size (the budget is used when more of it buys nothing measurable). Raises
    ``ValueError`` when even the smallest options exceed ``budget``.
    """
    if len(sizes) != len(costs) or any(
        len(s) != len(c) or not s for s, c in zip(sizes, costs, strict=True)
    ):
        raise ValueError("sizes and costs need the same, non-empty options for every item")
    limit = budget + 1e-9 * max(1.0, abs(budget))
    rest = np.concatenate([np.cumsum([min(s) for s in sizes][::-1])[::-1], [0.0]])
    if rest[0] > limit:
        raise ValueError(f"the smallest options need {rest[0]:g}, more than the budget {budget:g}")
    size, cost = np.zeros(1), np.zeros(1)
    parents: list[tuple[np.ndarray, np.ndarray]] = []
    for item, (options, prices) in enumerate(zip(sizes, costs, strict=True)):
        s, c = np.asarray(options, dtype=float), np.asarray(prices, dtype=float)
        new_size = (size[:, None] + s[None, :]).ravel()
        new_cost = (cost[:, None] + c[None, :]).ravel()
        previous = np.repeat(np.arange(size.size), s.size)
        option = np.tile(np.arange(s.size), size.size)
        keep = _frontier(new_size, new_cost, new_size + rest[item + 1] <= limit, max_points)
        size, cost = new_size[keep], new_cost[keep]
        parents.append((previous[keep], option[keep]))
    least = cost.min()
    point = int(np.flatnonzero(cost <= least + 1e-12 * max(1.0, abs(least)))[-1])
    picked: list[int] = []
    for previous, option in reversed(parents):
        picked.append(int(option[point]))
        point = int(previous[point])
    return picked[::-1]


def _frontier(size: np.ndarray, cost: np.ndarray, fits: np.ndarray, max_points: int) -> np.ndarray:
    """Indices of the feasible points that no smaller point beats in cost, sorted by size.

    Points tied in cost with a smaller one are kept (for the tie-break to the larger size); of
    equal sizes only the cheapest is.
    """
    candidates = np.flatnonzero(fits)
    order = candidates[np.lexsort((cost[candidates], size[candidates]))]
    sorted_size, sorted_cost = size[order], cost[order]
    first_of_size = np.concatenate([[True], sorted_size[1:] != sorted_size[:-1]])
    order, sorted_cost = order[first_of_size], sorted_cost[first_of_size]
    best_before = np.concatenate([[np.inf], np.minimum.accumulate(sorted_cost)[:-1]])
    kept = order[sorted_cost <= best_before]
    if kept.size > max_points:
        logger.warning("bit allocation: %d Pareto points, thinned to %d", kept.size, max_points)
        kept = kept[np.unique(np.linspace(0, kept.size - 1, max_points).round().astype(int))]
    return kept
