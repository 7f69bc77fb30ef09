"""Forward-pass latency measured with :mod:`torch.utils.benchmark`.

``Timer.blocked_autorange`` picks how many calls make one block, times blocks until
``min_run_time`` has passed, and reports per-call statistics; we take the median (robust to the
noise of shared machines) and the inter-quartile range. The model runs in eval mode without
autograd after a few warm-up calls, on a fixed number of intra-op threads, which is restored
afterwards together with every submodule's train/eval flag. ``torch.utils.benchmark`` is
imported on first use so that ``import deepshrink.eval`` stays light.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from deepshrink.errors import ConfigError
from deepshrink.eval._inputs import as_example, inference, on_model_device
from deepshrink.graph.io import batch_size, split

if TYPE_CHECKING:
    from torch.utils.benchmark import Measurement

__all__ = ["Latency", "measure_latency"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Latency:
    """Per-call latency of one forward pass: median and IQR in seconds, and how it was measured.

    ``runs`` is the number of timed blocks and ``calls_per_run`` the forward calls in each.
    """

    median_seconds: float
    iqr_seconds: float
    runs: int
    calls_per_run: int
    batch_size: int
    threads: int
    #: On one thread: the median per-call **thread CPU time** (other programs on the machine do
    #: not inflate it), the figure reports use; ``None`` on several threads.
    cpu_median_seconds: float | None = None

    @property
    def median_ms(self) -> float:
        """Median latency in milliseconds."""
        return self.median_seconds * 1e3

    @property
    def iqr_ms(self) -> float:
        """Inter-quartile range of the latency in milliseconds."""
        return self.iqr_seconds * 1e3

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


def measure_latency(
    model: nn.Module,
    example_inputs: Any,
    *,
    threads: int | None = None,
    min_run_time: float = 0.5,
    warmup: int = 3,
) -> Latency:
    """Time ``model`` on ``example_inputs`` (a tensor, a tuple of positional inputs or a dict
    of keyword inputs) at their batch size on ``threads`` CPU threads.

    ``threads`` defaults to ``torch.get_num_threads()``; the setting is restored afterwards.

    >>> model = nn.Linear(8, 4)
    >>> result = measure_latency(model, torch.zeros(1, 8), threads=1, min_run_time=0.01)
    >>> result.median_ms > 0, result.threads, result.batch_size
    (True, 1, 1)
    """
    if threads is not None and threads < 1:
        raise ConfigError(f"threads must be at least 1, got {threads}")
    if min_run_time <= 0:
        raise ConfigError(f"min_run_time must be positive seconds, got {min_run_time}")
    if warmup < 0:
        raise ConfigError(f"warmup must be at least 0 calls, got {warmup}")
    inputs = on_model_device(as_example(example_inputs), model)
    previous = torch.get_num_threads()
    used = previous if threads is None else threads
    torch.set_num_threads(used)
    try:
        with inference(model):
            measurement = _time(model, inputs, used, min_run_time, warmup)
        cpu = _cpu_median(model, inputs, int(measurement.number_per_run)) if used == 1 else None
    finally:
        torch.set_num_threads(previous)
    result = Latency(
        median_seconds=float(measurement.median),
        iqr_seconds=float(measurement.iqr),
        runs=len(measurement.times),
        calls_per_run=int(measurement.number_per_run),
        batch_size=batch_size(inputs),
        threads=used,
        cpu_median_seconds=cpu,
    )
    logger.debug("latency of %s: %s", type(model).__name__, result)
    return result


def _cpu_median(model: nn.Module, inputs: Any, calls: int, blocks: int = 7) -> float:
    """Median per-call thread CPU time over ``blocks`` blocks of ``calls`` calls (one thread:
    the work runs in this thread, so its CPU time is all of it)."""
    import statistics
    import time

    args, kwargs = split(inputs)
    times = []
    with inference(model):
        for _ in range(blocks):
            started = time.thread_time()
            for _ in range(calls):
                model(*args, **kwargs)
            times.append((time.thread_time() - started) / calls)
    return statistics.median(times)


def _time(model: nn.Module, inputs: Any, threads: int, seconds: float, warmup: int) -> Measurement:
    from torch.utils import benchmark

    args, kwargs = split(inputs)
    for _ in range(warmup):
        model(*args, **kwargs)
    timer = benchmark.Timer(
        stmt="model(*args, **kwargs)",
        globals={"model": model, "args": args, "kwargs": kwargs},
        num_threads=threads,
        label=type(model).__name__,
    )
    return timer.blocked_autorange(min_run_time=seconds)
