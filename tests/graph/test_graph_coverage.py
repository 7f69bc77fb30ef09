"""Coverage: every verb says what it changed and skipped; nothing changed is an error."""

from __future__ import annotations

import logging

import pytest
import torch
from torch import nn

import deepshrink as ds
from deepshrink.errors import ConfigError
from deepshrink.graph.coverage import coverage_of


class Kernel(nn.Module):
    """A layer type deepshrink has no adapter for."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.kernel = nn.Parameter(torch.randn(size, size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.kernel


NOTHING = nn.Sequential(Kernel(4), nn.LayerNorm(4))
METHODS = {
    "magnitude": lambda m, **k: ds.prune_(m, ds.MagnitudePruning(sparsity=0.5), **k),
    "kmeans": lambda m, **k: ds.quantize_(m, ds.KMeansQuantization(bits=2), **k),
    "mixed": lambda m, **k: ds.quantize_(m, ds.quantize.MixedPrecision(default_bits=4), **k),
    "svd": lambda m, **k: ds.factorize_(m, ds.SVDFactorization(rank=1), **k),
    "neuron": lambda m, **k: ds.prune_(m, ds.NeuronPruning(ratio=0.5), **k),
}


@pytest.mark.parametrize("method", list(METHODS))
def test_a_model_with_nothing_compressible_is_refused_with_the_reasons(method: str) -> None:
    model = nn.Sequential(Kernel(4), nn.LayerNorm(4))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ConfigError) as error:
        METHODS[method](model)
    message = str(error.value)
    assert "0.kernel (no layer adapter for Kernel)" in message or "no Linear layer" in message
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


@pytest.mark.parametrize("method", ["magnitude", "kmeans", "mixed", "svd", "neuron"])
def test_a_partly_compressible_model_warns_with_the_skipped_layers(method, caplog) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(Kernel(64), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 4))
    with caplog.at_level(logging.WARNING, logger="deepshrink"):
        METHODS[method](model)
    coverage = coverage_of(model)[-1]
    assert coverage.changed and coverage.fraction < 0.5
    assert coverage.skipped["0.kernel"] == "no layer adapter for Kernel"
    assert any("0.kernel (no layer adapter for Kernel)" in r.message for r in caplog.records)


def test_a_narrowed_request_is_not_a_warning(caplog) -> None:
    model = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 2))
    with caplog.at_level(logging.WARNING, logger="deepshrink"):
        ds.prune_(model, ds.MagnitudePruning(sparsity=0.5), include="2")
    assert not caplog.records
    coverage = coverage_of(model)[-1]
    assert coverage.changed == {"2": 128} and coverage.skipped == {"0": "not selected"}


def test_factorization_that_keeps_nothing_is_an_error_with_each_reason() -> None:
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))
    with pytest.raises(ConfigError, match=r"changed nothing: 0 \(not smaller.*2 \(not smaller"):
        ds.factorize_(model, ds.SVDFactorization(rank=2))
    assert type(model[0]) is nn.Linear
