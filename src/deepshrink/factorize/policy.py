"""The keep-or-refuse decision for one factorized layer, with the measurements behind it.

``"smaller"`` compares parameter counts (deterministic). ``"faster"`` times the dense layer and
its replacement with :func:`deepshrink.eval.measure_latency` (median, fixed threads) on the
input the layer really receives, in the same process, and keeps the replacement only when the
dense/factorized ratio reaches ``min_speedup``. The two are timed in alternation, ``ROUNDS``
times each, and the medians compared, so that a burst of load from other processes cannot
decide alone. ``"none"`` keeps every factorization.

>>> import torch
>>> from torch import nn
>>> from deepshrink.factorize.config import SVDFactorization
>>> from deepshrink.factorize.svd import SVDLinear
>>> dense = nn.Linear(8, 8)
>>> big = SVDLinear.from_linear(dense, rank=8)  # 128 weights instead of 64
>>> decision = decide("fc", dense, big, "factorize.svd", {}, SVDFactorization(rank=8), None)
>>> decision.accepted, decision.reason
(False, 'not smaller: 136 parameters vs 72 dense')
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor, nn

from deepshrink.eval import count_macs, count_parameters, measure_latency
from deepshrink.factorize.config import FactorizationConfig

__all__ = ["Decision", "decide", "skipped"]

LATENCY_SECONDS = 0.1
"""``min_run_time`` of each latency measurement the ``"faster"`` policy takes."""
ROUNDS = 5
"""How many times the ``"faster"`` policy times the dense layer and its replacement, alternating."""


@dataclass(frozen=True)
class Decision:
    """What happened to one layer: kept or refused (and why), with its measurements.

    MACs are per sample on the layer's recorded input; latencies (milliseconds, median) are
    measured only under the ``"faster"`` policy.
    """

    name: str
    kind: str
    accepted: bool
    reason: str
    parameters_before: int
    parameters_after: int | None = None
    macs_before: int | None = None
    macs_after: int | None = None
    latency_before_ms: float | None = None
    latency_after_ms: float | None = None
    details: dict[str, Any] = field(default_factory=dict)
    candidate: nn.Module | None = field(default=None, repr=False, compare=False)

    @property
    def compression(self) -> float | None:
        """Dense parameters ÷ factorized parameters (of this layer)."""
        return self.parameters_before / self.parameters_after if self.parameters_after else None

    @property
    def speedup(self) -> float | None:
        """Dense latency ÷ factorized latency, when both were measured."""
        if self.latency_before_ms is None or not self.latency_after_ms:
            return None
        return self.latency_before_ms / self.latency_after_ms

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON: every field but the candidate module, plus compression and speedup."""
        keys = [k for k in self.__dataclass_fields__ if k != "candidate"]
        body = {key: getattr(self, key) for key in keys}
        return {**body, "compression": self.compression, "speedup": self.speedup}


def skipped(name: str, layer: nn.Module, reason: str) -> Decision:
    """A layer left alone before any factorization was built."""
    return Decision(name, "", False, f"skipped: {reason}", count_parameters(layer))


def _macs(module: nn.Module, inputs: Tensor | None) -> int | None:
    if inputs is None:
        return None
    return count_macs(module, inputs) // max(1, inputs.shape[0])


def _latencies_ms(
    layer: nn.Module, candidate: nn.Module, inputs: Tensor, config: FactorizationConfig
) -> tuple[float, float]:
    """Median milliseconds of ``layer`` and ``candidate``, timed in alternation ``ROUNDS`` times."""
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(ROUNDS):
        for module, found in zip((layer, candidate), times, strict=True):
            timing = measure_latency(
                module, inputs, threads=config.threads, min_run_time=LATENCY_SECONDS
            )
            found.append(timing.median_ms)
    return statistics.median(times[0]), statistics.median(times[1])


def decide(
    name: str,
    layer: nn.Module,
    candidate: nn.Module,
    kind: str,
    details: dict[str, Any],
    config: FactorizationConfig,
    inputs: Tensor | None,
) -> Decision:
    """Apply ``config.policy`` to replacing ``layer`` by ``candidate`` (input ``inputs``)."""
    before, after = count_parameters(layer), count_parameters(candidate)
    measured: dict[str, Any] = {
        "parameters_after": after,
        "macs_before": _macs(layer, inputs),
        "macs_after": _macs(candidate, inputs),
    }
    accepted, reason = True, f"kept: {after} parameters vs {before} dense"
    if config.policy == "smaller" and after >= before:
        accepted, reason = False, f"not smaller: {after} parameters vs {before} dense"
    elif config.policy == "faster":
        if inputs is None:
            raise ValueError("the 'faster' policy needs the layer's input")  # api guarantees it
        dense_ms, low_ms = _latencies_ms(layer, candidate, inputs, config)
        measured.update(latency_before_ms=dense_ms, latency_after_ms=low_ms)
        speedup = dense_ms / low_ms
        accepted = speedup >= config.min_speedup
        verdict = "kept" if accepted else "not faster"
        reason = (
            f"{verdict}: {low_ms:.4f} ms vs {dense_ms:.4f} ms dense ({speedup:.2f}x, needs "
            f"{config.min_speedup:.2f}x)"
        )
    return Decision(
        name, kind, accepted, reason, before, **measured, details=details, candidate=candidate
    )
