"""The speed decision rule, checked with a stubbed clock (no real timing is asserted)."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest

from deepshrink.eval.timing import Speed, decide, interval, side_by_side


class StubClock:
    """A clock that advances by the cost of whatever ran: each call adds its stub duration."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def work(self, seconds: Callable[[], float]) -> Callable[[], None]:
        def run() -> None:
            self.now += seconds()

        return run


def _speed(base: Callable[[], float], candidate: Callable[[], float], rounds: int = 40):
    clock = StubClock()
    calls = {"baseline": clock.work(base), "candidate": clock.work(candidate)}
    return side_by_side(calls, rounds=rounds, warmup=0, clock=clock, wall=clock)["candidate"]


def _noisy(mean: float, spread: float, seed: int) -> Callable[[], float]:
    generator = random.Random(seed)
    return lambda: mean * (1 + generator.uniform(-spread, spread))


def test_a_four_times_cheaper_model_is_reported_faster_with_its_interval() -> None:
    speed = _speed(_noisy(4e-3, 0.3, 1), _noisy(1e-3, 0.3, 2))
    assert speed.verdict == "faster" and speed.low > 3 and speed.high < 5.5
    assert speed.text().startswith(f"{speed.ratio:.2f}× faster (")


def test_the_same_model_under_heavy_noise_claims_nothing() -> None:
    for seed in range(5):  # five runs, as in the acceptance
        speed = _speed(_noisy(1e-3, 0.8, seed), _noisy(1e-3, 0.8, seed + 100))
        assert speed.verdict == "no measurable change", speed
        assert speed.text().startswith("no measurable change (")


def test_a_slower_candidate_is_reported_slower() -> None:
    speed = _speed(_noisy(1e-3, 0.1, 3), _noisy(2e-3, 0.1, 4))
    assert speed.verdict == "slower" and speed.text().startswith("2.0")


def test_a_consistent_but_tiny_change_is_below_the_claim_threshold() -> None:
    speed = _speed(lambda: 1.03e-3, lambda: 1e-3)  # 3 % faster, no noise at all
    assert speed.low == pytest.approx(1.03) and speed.verdict == "no measurable change"


def test_decision_rule_and_interval() -> None:
    assert decide(1.06, 1.5) == "faster" and decide(1.04, 1.5) == "no measurable change"
    assert decide(0.2, 0.95) == "slower" and decide(0.2, 0.96) == "no measurable change"
    low, high = interval([1.0, 1.1, 0.9, 1.05, 0.95] * 4)
    assert low <= 1.0 <= high
    assert interval([2.0, 2.1, 1.9] * 10, seed=1) == interval([2.0, 2.1, 1.9] * 10, seed=1)


def test_bad_settings_are_refused() -> None:
    from deepshrink.errors import ConfigError

    with pytest.raises(ConfigError, match="baseline and at least one candidate"):
        side_by_side({"only": lambda: None})
    with pytest.raises(ConfigError, match="rounds ≥ 3"):
        side_by_side({"a": lambda: None, "b": lambda: None}, rounds=2)


def test_slower_states_its_interval_as_a_slow_down_factor() -> None:
    speed = Speed(ratio=0.5, low=0.4, high=0.625, verdict="slower", cpu_ms=2.0, wall_ms=2.0,
                  baseline_cpu_ms=1.0, rounds=30)  # fmt: skip
    assert speed.text() == "2.00× slower (1.60–2.50)"
