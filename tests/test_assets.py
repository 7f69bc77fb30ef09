"""The committed baseline weights load into fresh zoo models and reach their recorded accuracy."""

from __future__ import annotations

from pathlib import Path

import pytest

from deepshrink.train import evaluate, load_checkpoint

ASSETS = Path(__file__).resolve().parents[1] / "assets"

#: model → (dataset fixture, largest test error allowed). LeNet targets: Han et al. 2015's
#: dense baselines (1.64% and 0.80%); the others guard against a broken or stale asset.
TARGETS = {
    "lenet300": ("mnist", 0.0164),
    "lenet5": ("mnist", 0.0080),
    "mnist_cnn": ("mnist", 0.03),
}


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_baseline_asset_reaches_its_accuracy(name: str, request: pytest.FixtureRequest) -> None:
    dataset, max_error = TARGETS[name]
    data = request.getfixturevalue(dataset)
    model, sidecar = load_checkpoint(ASSETS / f"{name}.safetensors")
    result = evaluate(model, data.test)
    assert result.count == len(data.test)
    assert 1 - result.top1 <= max_error
    # the sidecar records what the benchmark measured when it saved the weights
    assert result.top1 == pytest.approx(sidecar["metadata"]["accuracy"], abs=1e-9)
