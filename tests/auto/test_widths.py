"""Channel widths under a latency budget: the exact search against brute force, refusal, uniform."""

from __future__ import annotations

import itertools
import random

import pytest

from deepshrink.auto.channels import widths_of
from deepshrink.auto.widths import (
    LayerCost,
    allocate_widths,
    fastest,
    predict,
    uniform_widths,
)
from deepshrink.errors import ConfigError

LINE = (0.1, 1.3)


def _problem(seed: int) -> tuple[dict, dict, dict]:
    """Random groups, losses and layers; a layer joins two groups, a group and a fixed width,
    or one group to itself (depthwise)."""
    rng = random.Random(seed)
    names = [f"g{i}" for i in range(rng.randint(2, 4))]
    groups = {g: tuple(sorted(rng.sample([4, 8, 12, 16], rng.randint(1, 3)), reverse=True))
              for g in names}  # fmt: skip
    losses = {g: {w: 0.0 if w == ws[0] else rng.random() for w in ws} for g, ws in groups.items()}
    costs = {}
    for index in range(rng.randint(2, 6)):
        a, b = rng.choice([*names, 3]), rng.choice([*names, 10])
        ins = groups[a] if isinstance(a, str) else (a,)
        outs = groups[b] if isinstance(b, str) else (b,)
        costs[f"l{index}"] = LayerCost(
            a, b, {(i, o): rng.random() * i * o / 50 for i in ins for o in outs}
        )
    return groups, losses, costs


def _brute(groups: dict, losses: dict, costs: dict, budget: float) -> tuple[float, float]:
    """Least summed loss within the budget over every combination, and the fastest time."""
    names = list(groups)
    best, least = float("inf"), float("inf")
    for combo in itertools.product(*(groups[g] for g in names)):
        widths = dict(zip(names, combo, strict=True))
        ms = predict(costs, widths, LINE)
        least = min(least, ms)
        if ms <= budget + 1e-12:
            best = min(best, sum(losses[g][w] for g, w in widths.items()))
    return best, least


@pytest.mark.parametrize("seed", range(40))
def test_search_matches_brute_force(seed: int) -> None:
    groups, losses, costs = _problem(seed)
    every = [predict(costs, dict(zip(groups, c, strict=True)), LINE)
             for c in itertools.product(*groups.values())]  # fmt: skip
    budget = random.Random(seed).uniform(min(every), max(every))
    choice = allocate_widths(groups, losses, costs, budget, line=LINE)
    best, least = _brute(groups, losses, costs, budget)
    assert choice.loss == pytest.approx(best, abs=1e-9)
    assert choice.predicted_ms == pytest.approx(predict(costs, choice.widths, LINE))
    assert choice.predicted_ms <= budget + 1e-9
    assert fastest(groups, costs, LINE) == pytest.approx(least)


def test_an_impossible_latency_is_refused_with_the_fastest_prediction() -> None:
    groups, losses, costs = _problem(3)
    _, least = _brute(groups, losses, costs, 0.0)
    with pytest.raises(ConfigError, match="cannot be reached") as caught:
        allocate_widths(groups, losses, costs, least * 0.9, line=LINE)
    assert f"predicted at {least:.3f} ms" in str(caught.value)


def test_uniform_takes_the_widest_single_fraction_that_fits() -> None:
    groups = {
        "a": tuple(widths_of(16, steps=4, round_to=4)),
        "b": tuple(widths_of(8, steps=4, round_to=2)),
    }
    costs = {"l": LayerCost("a", "b", {(i, o): i * o / 100 for i in groups["a"]
                                       for o in groups["b"]})}  # fmt: skip
    losses = {g: {w: 1.0 / w for w in ws} for g, ws in groups.items()}
    budget = predict(costs, {"a": 12, "b": 6}, (0.0, 1.0))
    choice, fraction = uniform_widths(groups, losses, costs, budget, line=(0.0, 1.0), steps=4)
    assert (choice.widths, fraction) == ({"a": 12, "b": 6}, 0.75)
    with pytest.raises(ConfigError, match="one channel fraction"):
        uniform_widths(groups, losses, costs, 0.01, line=(0.0, 1.0), steps=4)
