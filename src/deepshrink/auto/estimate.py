"""The time an ``auto`` run will take, stated up front from costs measured in a few seconds.

Two costs are measured on this machine, now: one forward pass per held-out sample (the scan
measures every candidate on ``scan_samples`` of them) and one training step of a batch (the
teacher's forward, the student's forward and backward, as the distilling fine-tune runs it;
under a ``speedup`` budget the student's part is divided by the speed-up, as the student is that
much narrower, and under ``max_latency_ms`` it is not: an upper bound). For a latency budget a
channel plan is also timed once (each width candidate plans one cut). The estimate is then
``options × (scan_samples × per-sample + per-option)`` for the scan and ``epochs × batches ×
per-step + epochs × held-out × per-sample`` for the fine-tunes of one candidate; a candidate that
misses its budget after fine-tuning costs another fine-tune.

>>> Estimate(10, 0.001, 0.0, 0.05, 100, 2000, 2, 1000).total_seconds > 0
True
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

__all__ = ["Estimate", "estimate", "expected_time", "measure_costs", "plan_seconds"]


@dataclass(frozen=True)
class Estimate:
    """Measured unit costs and the seconds they add up to."""

    options: int
    per_sample: float
    per_option: float
    per_step: float
    steps_per_epoch: int
    scan_samples: int
    epochs: int
    held_out: int

    @property
    def scan_seconds(self) -> float:
        return self.options * (self.scan_samples * self.per_sample + self.per_option)

    @property
    def fine_tune_seconds(self) -> float:
        tune = self.steps_per_epoch * self.per_step + self.held_out * self.per_sample
        return self.epochs * tune

    @property
    def total_seconds(self) -> float:
        return self.scan_seconds + self.fine_tune_seconds

    def text(self) -> str:
        """``"about 6.5 min (scan 2.1 min: 44 candidates; fine-tunes 4.4 min: …)"``."""
        return (
            f"about {_minutes(self.total_seconds)} (scan {_minutes(self.scan_seconds)}: "
            f"{self.options} candidates; fine-tunes {_minutes(self.fine_tune_seconds)}: "
            f"{self.epochs} epoch(s) of {self.steps_per_epoch} batches at "
            f"{self.per_step:.3f} s, measured now; more if a candidate misses its budget)"
        )

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "scan_seconds": self.scan_seconds,
                "fine_tune_seconds": self.fine_tune_seconds,
                "total_seconds": self.total_seconds}  # fmt: skip


def _minutes(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"


def measure_costs(
    model: nn.Module, train: Any, batch_size: int, student_share: float = 1.0
) -> tuple[float, float]:
    """(seconds per held-out sample forward, seconds per distilling training step). The
    student's part of a step is scaled by ``student_share`` (a channel-pruned student 2× faster
    than the model: 0.5)."""
    x, y = train.without_transform().batch(torch.arange(min(batch_size, len(train))))
    student = copy.deepcopy(model).train()
    teacher = copy.deepcopy(model).eval()
    optimizer = torch.optim.SGD(student.parameters(), lr=0.0)

    def step() -> None:
        loss = nn.functional.cross_entropy(student(x), y)
        optimizer.zero_grad()
        loss.backward()

    def forward() -> None:
        with torch.no_grad():
            teacher(x)

    taught = _quickest(step)
    forward_seconds = _quickest(forward)
    return forward_seconds / len(y), forward_seconds + student_share * taught


def _quickest(fn: Any) -> float:
    """The quicker of two timed calls after one untimed (one-off set-up; a burst of load from
    elsewhere is not the cost)."""
    fn()
    best = math.inf
    for _ in range(2):
        began = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - began)
    return best


def estimate(
    model: nn.Module, train: Any, *, options: int, scan_samples: int, held_out: int,
    epochs: int, batch_size: int, per_option: float = 0.0, student_share: float = 1.0,
    threads: int | None = None,
) -> Estimate:  # fmt: skip
    """The :class:`Estimate` of a run on ``train`` (the training part it fine-tunes on), its
    costs measured on ``threads`` torch threads (the fine-tune's; default: as set now)."""
    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        per_sample, per_step = measure_costs(model, train, batch_size, student_share)
    finally:
        torch.set_num_threads(previous)
    steps = math.ceil(len(train) / batch_size)
    return Estimate(options, per_sample, per_option, per_step, steps, scan_samples, epochs,
                    held_out)  # fmt: skip


def expected_time(
    model: nn.Module, data: Any, *, latency: bool, settings: Any, scan_samples: int,
    held_out: int, sparsities: tuple[float, ...] = (), bits: tuple[int, ...] = (),
    include: Any = None, exclude: Any = None, steps: int = 8, round_to: int = 8,
    speedup: float | None = None,
) -> Estimate:  # fmt: skip
    """The estimate of ``auto_compress`` with these settings (``settings``: a
    :class:`~deepshrink.auto.compress.FineTune`), without running it."""
    from deepshrink.auto import state

    train, held = state.split(data, held_out, settings.seed, settings.train_samples)
    per_option = 0.0
    if latency:
        from deepshrink.auto.channels import discover
        from deepshrink.eval._inputs import derive_inputs, with_batch_size

        example = with_batch_size(derive_inputs(model, held, None), 1)
        groups, _ = discover(model, example, steps=steps, round_to=round_to)
        per_option = plan_seconds(model, groups, example, round_to)
        options = sum(len(g.widths) - 1 for g in groups)
        epochs = settings.prune_epochs
    else:
        from deepshrink.auto.candidates import weight_layer_names

        options = len(weight_layer_names(model, include, exclude)) * len(sparsities) * len(bits)
        epochs = settings.prune_epochs + settings.share_epochs
    share = 1 / speedup if speedup else 1.0
    return estimate(model, train, options=options, scan_samples=min(scan_samples, len(held)),
                    held_out=len(held), epochs=epochs, batch_size=settings.batch_size,
                    per_option=per_option, student_share=share,
                    threads=settings.threads)  # fmt: skip


def plan_seconds(model: nn.Module, groups: list[Any], example: Any, round_to: int) -> float:
    """Seconds to plan and cut one width candidate (the first group at its narrowest), as the
    width scan does for each."""
    from deepshrink.auto.channels import cut_model, plan_widths

    group = groups[0]
    began = time.perf_counter()
    plan = plan_widths(model, groups, {group.root: group.widths[-1]}, example,
                       round_to=round_to, only=group.root)  # fmt: skip
    cut_model(model, plan)
    return time.perf_counter() - began
