"""Channel widths under a latency budget: the least summed sensitivity whose predicted latency
fits, found exactly.

A layer's time depends on two widths: the group feeding it and the group it feeds. Latency is
therefore not a sum over groups, and a plain knapsack does not apply. But once the widths of a
*vertex cover* of the groups that meet in a layer are fixed (on a ResNet: the residual streams),
every other group only meets fixed widths, its layers' time is its own, and the rest is a
multiple-choice knapsack: time saved against summed loss, solved exactly by
:func:`deepshrink.functional.allocation.choose`. The cover's widths are enumerated, so the whole
search is exact (tested against brute force). The predicted time is ``b + a · Σ layer entries``
(:class:`~deepshrink.auto.latency.LatencyTable`).

>>> costs = {"l1": LayerCost(3, "g", {(3, 8): 1.0, (3, 4): 0.5})}
>>> allocate_widths({"g": (8, 4)}, {"g": {8: 0.0, 4: 0.2}}, costs, 0.6, line=(0.0, 1.0)).widths
{'g': 4}
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from deepshrink.errors import ConfigError
from deepshrink.functional.allocation import choose

__all__ = ["LayerCost", "WidthChoice", "allocate_widths", "fastest", "predict", "uniform_widths"]

#: Most width combinations of the cover enumerated before the search gives up.
MAX_COMBINATIONS = 50_000


@dataclass(frozen=True)
class LayerCost:
    """One layer: the group (or fixed width) at its input and output, and its measured ms per
    ``(width_in, width_out)``."""

    inputs: str | int
    outputs: str | int
    ms: Mapping[tuple[int, int], float]

    def at(self, widths: Mapping[str, int]) -> float:
        w_in = widths[self.inputs] if isinstance(self.inputs, str) else self.inputs
        w_out = widths[self.outputs] if isinstance(self.outputs, str) else self.outputs
        return self.ms[(w_in, w_out)]


@dataclass(frozen=True)
class WidthChoice:
    """Widths per group, their predicted ms and summed loss."""

    widths: dict[str, int]
    predicted_ms: float
    loss: float


def predict(
    costs: Mapping[str, LayerCost], widths: Mapping[str, int], line: tuple[float, float]
) -> float:
    """Predicted whole-model ms: ``b + a · Σ`` layer entries at ``widths``."""
    return line[0] + line[1] * sum(c.at(widths) for c in costs.values())


def _cover(groups: Sequence[str], costs: Mapping[str, LayerCost]) -> list[str]:
    """Groups covering every layer whose two widths belong to two different groups (greedy)."""
    edges = {
        frozenset((c.inputs, c.outputs))
        for c in costs.values()
        if isinstance(c.inputs, str) and isinstance(c.outputs, str) and c.inputs != c.outputs
    }
    cover: list[str] = []
    while edges:
        degree = {g: sum(g in e for e in edges) for g in groups}
        best = max(groups, key=lambda g: degree[g])
        cover.append(best)
        edges = {e for e in edges if best not in e}
    return cover


def _search(
    groups: Mapping[str, Sequence[int]], losses: Mapping[str, Mapping[int, float]],
    costs: Mapping[str, LayerCost], limit: float | None,
) -> tuple[WidthChoice | None, float]:  # fmt: skip
    """The least-loss choice with ``Σ entries ≤ limit`` (None: the fastest), and the least
    reachable ``Σ``."""
    names = list(groups)
    cover = _cover(names, costs)
    rest = [g for g in names if g not in cover]
    count = math.prod(len(groups[g]) for g in cover)
    if count > MAX_COMBINATIONS:
        raise ConfigError(
            f"{count:,} width combinations of the coupled groups {', '.join(cover)}: too many to "
            "search exactly; use fewer width steps (steps=) or a coarser round_to"
        )
    best: WidthChoice | None = None
    least = math.inf
    for combo in itertools.product(*(groups[g] for g in cover)):
        fixed = dict(zip(cover, combo, strict=True))
        const = sum(c.at(fixed) for c in costs.values() if _within(c, fixed))
        options = {g: [_own(costs, fixed, g, w) for w in groups[g]] for g in rest}
        floor = const + sum(min(v) for v in options.values())
        least = min(least, floor)
        budget = math.inf if limit is None else limit - const
        if floor > const + budget + 1e-12:
            continue
        base = sum(losses[g][w] for g, w in fixed.items())
        picked = _knapsack(rest, groups, losses, options, budget)
        widths = {**fixed, **{g: groups[g][k] for g, k in zip(rest, picked, strict=True)}}
        loss = base + sum(losses[g][widths[g]] for g in rest)
        total = const + sum(options[g][k] for g, k in zip(rest, picked, strict=True))
        if best is None or (loss, total) < (best.loss, best.predicted_ms):
            best = WidthChoice(widths, total, loss)  # predicted_ms holds Σ until the caller
    return best, least


def _within(cost: LayerCost, fixed: Mapping[str, int]) -> bool:
    return all(not isinstance(end, str) or end in fixed for end in (cost.inputs, cost.outputs))


def _own(costs: Mapping[str, LayerCost], fixed: Mapping[str, int], group: str, width: int) -> float:
    widths = {**fixed, group: width}
    return sum(c.at(widths) for c in costs.values() if group in (c.inputs, c.outputs))


def _knapsack(
    rest: list[str], groups: Mapping[str, Sequence[int]],
    losses: Mapping[str, Mapping[int, float]], options: Mapping[str, list[float]], budget: float,
) -> list[int]:  # fmt: skip
    if not rest:
        return []
    costs = [[losses[g][w] for w in groups[g]] for g in rest]
    if math.isinf(budget):
        return [min(range(len(c)), key=lambda k, c=c: c[k]) for c in costs]
    return choose([options[g] for g in rest], costs, budget)


def allocate_widths(
    groups: Mapping[str, Sequence[int]], losses: Mapping[str, Mapping[int, float]],
    costs: Mapping[str, LayerCost], budget_ms: float, *, line: tuple[float, float],
) -> WidthChoice:  # fmt: skip
    """The widths with the least summed loss whose predicted ms is within ``budget_ms``.

    Raises :class:`ConfigError` naming the fastest predicted latency when none is.
    """
    limit = (budget_ms - line[0]) / line[1]
    best, least = _search(groups, losses, costs, limit)
    if best is None:
        raise ConfigError(
            f"a {budget_ms:.3f} ms latency cannot be reached: the fastest widths tried are "
            f"predicted at {line[0] + line[1] * least:.3f} ms (every group at its narrowest "
            "width or the fastest combination); raise the budget, or allow narrower widths "
            "(more steps, a smaller round_to)"
        )
    return WidthChoice(best.widths, line[0] + line[1] * best.predicted_ms, best.loss)


def fastest(
    groups: Mapping[str, Sequence[int]], costs: Mapping[str, LayerCost],
    line: tuple[float, float],
) -> float:  # fmt: skip
    """The least predicted ms any widths reach."""
    zero = {g: dict.fromkeys(ws, 0.0) for g, ws in groups.items()}
    return line[0] + line[1] * _search(groups, zero, costs, None)[1]


def uniform_widths(
    groups: Mapping[str, Sequence[int]], losses: Mapping[str, Mapping[int, float]],
    costs: Mapping[str, LayerCost], budget_ms: float, *, line: tuple[float, float],
    steps: int,
) -> tuple[WidthChoice, float]:  # fmt: skip
    """The widest single fraction ``k/steps`` kept by every group (rounded up to its widths)
    whose predicted ms fits; returns the choice and the fraction."""
    tried = []
    for k in range(steps, 0, -1):
        widths = {g: min(w for w in ws if w >= max(ws) * k / steps - 1e-9)
                  for g, ws in groups.items()}  # fmt: skip
        ms = predict(costs, widths, line)
        tried.append(ms)
        if ms <= budget_ms:
            loss = sum(losses[g][w] for g, w in widths.items())
            return WidthChoice(widths, ms, loss), k / steps
    raise ConfigError(
        f"a {budget_ms:.3f} ms latency cannot be reached by one channel fraction for every "
        f"group: the narrowest (1/{steps} kept) is predicted at {min(tried):.3f} ms; raise the "
        "budget or use more steps"
    )
