"""The budgeted per-layer choice against brute force, and its refusals."""

from __future__ import annotations

import itertools
import random
import re

import pytest

from deepshrink.auto.allocate import allocate, front, smallest_total, uniform
from deepshrink.auto.candidates import Option
from deepshrink.errors import ConfigError

SETTINGS = [(s, b) for s in (0.0, 0.5, 0.9) for b in (2, 4)]


def _table(rng: random.Random, layers: int) -> dict[str, list[Option]]:
    """Random options; sizes shrink and losses grow with sparsity and fewer bits, plus noise."""
    table = {}
    for index in range(layers):
        scale = rng.randint(50, 500)
        table[f"l{index}"] = [
            Option(s, b, max(1, int(scale * (1 - s) * b * rng.uniform(0.7, 1.3))),
                   rng.uniform(0, 1) * s + rng.uniform(0, 0.3) / b, 0.0)
            for s, b in SETTINGS
        ]  # fmt: skip
    return table


def _brute(table: dict[str, list[Option]], budget: float, fixed: int) -> float:
    best = float("inf")
    for combo in itertools.product(*table.values()):
        if fixed + sum(o.bytes for o in combo) <= budget:
            best = min(best, sum(o.loss for o in combo))
    return best


@pytest.mark.parametrize("seed", range(30))
def test_allocate_matches_brute_force(seed: int) -> None:
    rng = random.Random(seed)
    table = _table(rng, rng.randint(1, 4))
    fixed = rng.randint(0, 100)
    least = smallest_total(table, fixed)
    most = fixed + sum(max(o.bytes for o in opts) for opts in table.values())
    budget = rng.uniform(least, most)
    chosen = allocate(table, budget, fixed=fixed)
    assert set(chosen) == set(table)
    assert all(chosen[name] in table[name] for name in table)
    assert fixed + sum(o.bytes for o in chosen.values()) <= budget
    assert sum(o.loss for o in chosen.values()) == pytest.approx(_brute(table, budget, fixed))


@pytest.mark.parametrize("seed", range(10))
def test_uniform_is_the_best_single_setting(seed: int) -> None:
    rng = random.Random(100 + seed)
    table = _table(rng, 3)
    budget = rng.uniform(
        smallest_total(table, 0), sum(max(o.bytes for o in v) for v in table.values())
    )
    try:
        chosen = uniform(table, budget, fixed=0)
    except ConfigError:
        chosen = None
    feasible = []
    for setting in SETTINGS:
        combo = [
            next(o for o in opts if (o.sparsity, o.bits) == setting) for opts in table.values()
        ]
        if sum(o.bytes for o in combo) <= budget:
            feasible.append(sum(o.loss for o in combo))
    if not feasible:
        assert chosen is None
        return
    assert chosen is not None
    assert len({(o.sparsity, o.bits) for o in chosen.values()}) == 1
    assert sum(o.loss for o in chosen.values()) == pytest.approx(min(feasible))
    # never better than the joint allocation under the same budget
    joint = allocate(table, budget, fixed=0)
    assert sum(o.loss for o in joint.values()) <= min(feasible) + 1e-12


def test_impossible_budget_names_the_smallest_reachable_size() -> None:
    table = _table(random.Random(7), 3)
    least = smallest_total(table, 40)
    with pytest.raises(ConfigError) as caught:
        allocate(table, least - 1, fixed=40)
    figures = [int(x.replace(",", "")) for x in re.findall(r"[\d,]{2,}", str(caught.value))]
    assert least in figures
    assert "raise the budget" in str(caught.value)
    assert allocate(table, least, fixed=40)  # exactly the smallest reachable size fits


def test_front_drops_dominated_options() -> None:
    options = [Option(0, 8, 100, 0.0, 1), Option(0.5, 8, 60, 0.2, 1), Option(0.5, 4, 70, 0.3, 1),
               Option(0.9, 2, 10, 0.5, 1)]  # fmt: skip
    kept = front(options)
    assert [o.bytes for o in kept] == [10, 60, 100]
    for option in options:
        assert any(k.bytes <= option.bytes and k.loss <= option.loss for k in kept)
