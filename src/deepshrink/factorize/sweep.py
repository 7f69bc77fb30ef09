"""Rank selection by measurement: one layer, many factorizations, every cost side by side.

For each config the layer is factorized on the side and measured: relative reconstruction error
of the kernel (``‖W − Ŵ‖_F / ‖W‖_F``), parameters, MACs per sample and median CPU latency on the
layer's input — next to the dense layer measured in the same process, so ratios are fair.

>>> import torch
>>> from torch import nn
>>> from deepshrink.factorize.config import SVDFactorization
>>> layer = nn.Linear(32, 32)
>>> points = sweep(layer, [SVDFactorization(rank=r) for r in (4, 32)], latency=False)
>>> [(p.label, p.parameters) for p in points]
[('dense', 1056), ('svd rank=4', 288), ('svd rank=32', 2080)]
>>> points[-1].error < 1e-5
True
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor, nn

from deepshrink.eval import count_macs, count_parameters, measure_latency
from deepshrink.factorize._method import method_for
from deepshrink.factorize.config import FactorizationConfig

__all__ = ["SweepPoint", "sweep"]


@dataclass(frozen=True)
class SweepPoint:
    """One row of a sweep; ``compression`` and ``speedup`` are relative to the dense layer."""

    label: str
    details: dict[str, Any]
    error: float
    parameters: int
    macs: int
    latency_ms: float | None
    compression: float
    speedup: float | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _label(config: FactorizationConfig, details: dict[str, Any]) -> str:
    for key in ("rank", "ranks"):
        if key in details:
            value = details[key]
            shown = "x".join(str(v) for v in value) if isinstance(value, list) else value
            return f"{config.name} {key}={shown}"
    return config.name


def _default_input(layer: nn.Module) -> Tensor:
    if isinstance(layer, nn.Linear):
        generator = torch.Generator().manual_seed(0)
        return torch.randn(1, layer.in_features, generator=generator).to(layer.weight)
    raise ValueError(f"sweep over a {type(layer).__name__} needs example_inputs (its input)")


def sweep(
    layer: nn.Module,
    configs: Sequence[FactorizationConfig],
    example_inputs: Tensor | None = None,
    *,
    latency: bool = True,
    threads: int = 1,
    min_run_time: float = 0.2,
) -> list[SweepPoint]:
    """Measure ``layer`` and its factorization under each of ``configs`` (policies ignored).

    ``example_inputs`` is the layer's input (default: one random row for a Linear layer). The
    first point is the dense layer itself.
    """
    inputs = _default_input(layer) if example_inputs is None else example_inputs
    batch = max(1, inputs.shape[0])
    weight = layer.weight.detach()

    def measure(module: nn.Module) -> tuple[int, int, float | None]:
        timing = None
        if latency:
            timing = measure_latency(module, inputs, threads=threads, min_run_time=min_run_time)
        milliseconds = timing.median_ms if timing is not None else None
        return count_parameters(module), count_macs(module, inputs) // batch, milliseconds

    dense_parameters, dense_macs, dense_ms = measure(layer)
    points = [SweepPoint("dense", {}, 0.0, dense_parameters, dense_macs, dense_ms, 1.0, 1.0)]
    for config in configs:
        candidate = method_for(config).build("layer", layer, config)
        with torch.no_grad():
            approximation = candidate.module.dense_weight().reshape(weight.shape)
            error = float((approximation - weight).norm() / weight.norm())
        parameters, macs, milliseconds = measure(candidate.module)
        speedup = dense_ms / milliseconds if dense_ms is not None and milliseconds else None
        label, compression = _label(config, candidate.details), dense_parameters / parameters
        row = (error, parameters, macs, milliseconds, compression, speedup)
        points.append(SweepPoint(label, candidate.details, *row))
    return points
