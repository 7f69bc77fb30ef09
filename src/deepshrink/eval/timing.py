"""Speed compared honestly on a busy machine: two models timed side by side, a claim only when
the measurement supports it.

One timing discipline for reports and benchmarks:

* baseline and candidate run in the same process, **alternating call by call**, so a burst of
  load from another program hits both;
* each call is timed by the calling thread's **CPU time** (``time.thread_time``), which other
  processes on the machine do not inflate; wall time is recorded beside it, with the thread
  count and the load average;
* each round gives one ratio ``baseline time ÷ candidate time``; the result is the median ratio
  with a 95 % bootstrap interval of that median (seeded, so reruns agree);
* a speed-up or slow-down is **claimed only when the whole interval lies beyond ±5 %**
  (:data:`MIN_EFFECT`); otherwise the verdict is "no measurable change".

>>> ticks = iter(range(1000))
>>> def clock(): return next(ticks) * 1e-3
>>> result = side_by_side({"a": lambda: None, "b": lambda: None}, rounds=5, warmup=0,
...                       clock=clock, wall=clock)
>>> result["b"].verdict
'no measurable change'
"""

from __future__ import annotations

import os
import random
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from deepshrink.errors import ConfigError

__all__ = [
    "MIN_EFFECT", "Speed", "compare_calls", "compare_speed", "decide", "interval", "side_by_side",
]  # fmt: skip

#: Smallest change claimed: the whole 95 % interval must lie above ``1 + MIN_EFFECT`` (faster)
#: or below ``1 / (1 + MIN_EFFECT)`` (slower).
MIN_EFFECT = 0.05
Clock = Callable[[], float]


@dataclass(frozen=True)
class Speed:
    """One candidate against the baseline: ``ratio`` = baseline time ÷ candidate time (above 1:
    faster), its 95 % interval, the verdict, and what the times were."""

    ratio: float
    low: float
    high: float
    verdict: str
    cpu_ms: float
    wall_ms: float
    baseline_cpu_ms: float
    rounds: int
    threads: int | None = None
    load_average: tuple[float, float, float] | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def claimed(self) -> bool:
        """Whether the measurement supports a speed claim."""
        return self.verdict != "no measurable change"

    def text(self) -> str:
        """``"1.58× faster (1.55–1.61)"``, ``"2.00× slower (1.90–2.10)"`` or ``"no measurable
        change (0.97–1.04)"``; the interval is of the stated factor."""
        span = f"({self.low:.2f}–{self.high:.2f})"
        if self.verdict == "faster":
            return f"{self.ratio:.2f}× faster {span}"
        if self.verdict == "slower":  # the interval turned round too: slower by 1/high to 1/low
            return f"{1 / self.ratio:.2f}× slower ({1 / self.high:.2f}–{1 / self.low:.2f})"
        return f"no measurable change {span}"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "text": self.text()}


def interval(
    ratios: list[float], *, level: float = 0.95, resamples: int = 2000, seed: int = 0
) -> tuple[float, float]:
    """A bootstrap ``level`` interval of the median of ``ratios`` (seeded, percentile method).

    >>> interval([1.0, 1.0, 1.0])
    (1.0, 1.0)
    """
    if not ratios:
        raise ConfigError("no timed rounds to build an interval from")
    generator = random.Random(seed)
    size = len(ratios)
    medians = sorted(statistics.median(generator.choices(ratios, k=size)) for _ in range(resamples))
    tail = (1 - level) / 2
    return medians[int(tail * (resamples - 1))], medians[int((1 - tail) * (resamples - 1))]


def decide(low: float, high: float, min_effect: float = MIN_EFFECT) -> str:
    """``"faster"``, ``"slower"`` or ``"no measurable change"`` for an interval of ratios.

    >>> decide(1.2, 1.4), decide(0.5, 0.6), decide(0.98, 1.3), decide(1.01, 1.04)
    ('faster', 'slower', 'no measurable change', 'no measurable change')
    """
    if low > 1 + min_effect:
        return "faster"
    if high < 1 / (1 + min_effect):
        return "slower"
    return "no measurable change"


def side_by_side(
    calls: Mapping[str, Callable[[], Any]],
    *,
    rounds: int = 30,
    warmup: int = 3,
    repeat: int = 1,
    clock: Clock = time.thread_time,
    wall: Clock = time.perf_counter,
    threads: int | None = None,
) -> dict[str, Speed]:
    """Time each of ``calls`` (the first is the baseline) in alternation, ``rounds`` times.

    Each timing covers ``repeat`` calls. Returns, for every name (the baseline too, at ratio 1),
    its :class:`Speed` against the baseline.
    """
    if len(calls) < 2:
        raise ConfigError("side_by_side needs a baseline and at least one candidate")
    if rounds < 3 or repeat < 1 or warmup < 0:
        raise ConfigError(f"need rounds ≥ 3, repeat ≥ 1 and warmup ≥ 0; got {rounds}, {repeat}, "
                          f"{warmup}")  # fmt: skip
    for _ in range(warmup):
        for call in calls.values():
            call()
    cpu: dict[str, list[float]] = {name: [] for name in calls}
    walls: dict[str, list[float]] = {name: [] for name in calls}
    for index in range(rounds):
        order = list(calls.items())
        if index % 2:  # alternate who goes first, so neither always follows the other
            order.reverse()
        for name, call in order:
            cpu0, wall0 = clock(), wall()
            for _ in range(repeat):
                call()
            cpu[name].append(max(clock() - cpu0, 1e-12) / repeat)
            walls[name].append((wall() - wall0) / repeat)
    return _speeds(cpu, walls, threads)


def _speeds(
    cpu: dict[str, list[float]], walls: dict[str, list[float]], threads: int | None
) -> dict[str, Speed]:
    baseline = next(iter(cpu))
    load = _load_average()
    out = {}
    for name, times in cpu.items():
        ratios = [b / c for b, c in zip(cpu[baseline], times, strict=True)]
        low, high = interval(ratios)
        out[name] = Speed(
            ratio=statistics.median(ratios), low=low, high=high, verdict=decide(low, high),
            cpu_ms=1e3 * statistics.median(times), wall_ms=1e3 * statistics.median(walls[name]),
            baseline_cpu_ms=1e3 * statistics.median(cpu[baseline]), rounds=len(times),
            threads=threads, load_average=load,
        )  # fmt: skip
    return out


def _load_average() -> tuple[float, float, float] | None:
    try:
        return os.getloadavg()
    except OSError:
        return None


def compare_speed(
    baseline: Any,
    candidate: Any,
    example_inputs: Any,
    *,
    batch_sizes: tuple[int, ...] = (1, 64),
    threads: int = 1,
    rounds: int = 30,
    min_call_seconds: float = 0.002,
) -> dict[int, Speed]:
    """The candidate model's speed against the baseline at each batch size, both run in
    inference mode on ``threads`` CPU threads, alternating call by call (see the module doc).

    ``example_inputs`` is one batch either model takes (a tensor, tuple or keyword dict); it is
    cut or tiled to each batch size.

    >>> import torch
    >>> from torch import nn
    >>> big, small = nn.Linear(256, 256), nn.Linear(256, 8)
    >>> speeds = compare_speed(big, small, torch.zeros(1, 256), batch_sizes=(1,), rounds=5)
    >>> sorted(speeds), speeds[1].rounds
    ([1], 5)
    """
    import torch

    from deepshrink.eval._inputs import inference, on_model_device, with_batch_size
    from deepshrink.graph.io import call

    if threads < 1:
        raise ConfigError(f"threads must be at least 1, got {threads}")

    def calls(model: Any) -> Callable[[int], Callable[[], Any]]:
        def make(size: int) -> Callable[[], Any]:
            x = on_model_device(with_batch_size(example_inputs, size), model)
            return lambda: call(model, x)

        return make

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with inference(baseline), inference(candidate):
            return compare_calls(calls(baseline), calls(candidate), batch_sizes=batch_sizes,
                                 threads=threads, rounds=rounds,
                                 min_call_seconds=min_call_seconds)  # fmt: skip
    finally:
        torch.set_num_threads(previous)


def compare_calls(
    baseline: Callable[[int], Callable[[], Any]],
    candidate: Callable[[int], Callable[[], Any]],
    *,
    batch_sizes: tuple[int, ...] = (1, 64),
    threads: int | None = 1,
    rounds: int = 30,
    min_call_seconds: float = 0.002,
) -> dict[int, Speed]:
    """The candidate's speed against the baseline at each batch size, for any runtime.

    ``baseline(size)`` and ``candidate(size)`` return a call that runs one inference of a batch
    of ``size`` (a PyTorch model, an ONNX Runtime or LiteRT session on one intra-op thread, which
    runs in the calling thread, so thread CPU time counts it). Calls too short for the clock are
    repeated to last ``min_call_seconds``.

    >>> work = lambda n: (lambda: sum(range(200 * n)))
    >>> speeds = compare_calls(work, work, batch_sizes=(1,), rounds=5)
    >>> speeds[1].rounds
    5
    """
    results: dict[int, Speed] = {}
    for size in batch_sizes:
        fns = {"baseline": baseline(size), "candidate": candidate(size)}
        single = min(_once(fns["baseline"]), _once(fns["candidate"]))
        repeat = max(1, int(min_call_seconds / max(single, 1e-7)))
        timed = side_by_side(fns, rounds=rounds, repeat=repeat, threads=threads)
        results[size] = timed["candidate"]
    return results


def _once(fn: Callable[[], Any]) -> float:
    fn()
    started = time.thread_time()
    fn()
    return time.thread_time() - started
