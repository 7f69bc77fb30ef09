"""Latency measurement: what it records and what it restores (never how long it takes)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from deepshrink.errors import ConfigError
from deepshrink.eval import measure_latency


def test_latency_records_how_it_was_measured() -> None:
    model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2))
    result = measure_latency(model, torch.rand(4, 8), threads=1, min_run_time=0.05)
    assert result.median_seconds > 0 and result.median_ms == result.median_seconds * 1e3
    assert result.iqr_seconds >= 0
    assert result.runs >= 1 and result.calls_per_run >= 1
    assert result.batch_size == 4 and result.threads == 1


def test_latency_restores_threads_and_modes() -> None:
    threads = torch.get_num_threads()
    model = nn.Sequential(nn.Linear(8, 8), nn.Dropout())
    model[1].eval()
    result = measure_latency(model, (torch.rand(1, 8),), threads=1, min_run_time=0.05)
    assert result.threads == 1
    assert torch.get_num_threads() == threads
    assert model.training and model[0].training and not model[1].training


def test_latency_defaults_to_current_threads() -> None:
    result = measure_latency(nn.Linear(2, 2), torch.rand(1, 2), min_run_time=0.02, warmup=0)
    assert result.threads == torch.get_num_threads()


def test_latency_runs_without_autograd() -> None:
    seen: list[bool] = []

    class Probe(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            seen.append(torch.is_grad_enabled() or self.training)
            return x

    measure_latency(Probe(), torch.rand(1, 2), threads=1, min_run_time=0.02)
    assert seen and not any(seen)


def test_threads_restored_when_model_fails() -> None:
    class Broken(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            raise RuntimeError("broken")

    threads = torch.get_num_threads()
    with pytest.raises(RuntimeError, match="broken"):
        measure_latency(Broken(), torch.rand(1, 2), threads=1, min_run_time=0.02)
    assert torch.get_num_threads() == threads


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"threads": 0}, "threads"),
        ({"min_run_time": 0}, "min_run_time"),
        ({"warmup": -1}, "warmup"),
    ],
)
def test_bad_options(options: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        measure_latency(nn.Linear(2, 2), torch.rand(1, 2), **options)
