"""The committed ``.dsz`` files reach their compression and error on their test sets.

The ratio is the fp32 bytes of every parameter of a fresh zoo model (biases included) over the
file's size on disk; the error is the model decoded from the file, on all 10,000 MNIST test
images, or on the CIFAR-10 test subset (the first 1,000 test images) for ResNet-20.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import deepshrink as ds
from deepshrink.cli import main
from deepshrink.train import evaluate

ASSETS = Path(__file__).resolve().parents[1] / "assets"

#: file → (least compression, largest test error, dataset): for the LeNets soft weight-sharing's
#: ratios (Ullrich et al. 2017) at Deep Compression's error levels (Han et al. 2016); for
#: ResNet-20, 30x at no more than 1.5 pp below its own 82.70 % baseline
TARGETS = {
    "lenet300": (64.0, 0.0164, "mnist"),
    "lenet5": (162.0, 0.0080, "mnist"),
    "resnet20": (30.0, 1 - 0.812, "cifar10"),
}


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_delivered_file_reaches_its_ratio_and_error(
    name: str,
    request: pytest.FixtureRequest,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    least_ratio, max_error, dataset = TARGETS[name]
    data = request.getfixturevalue(dataset)
    count = 10_000 if dataset == "mnist" else 1_000
    path = ASSETS / f"{name}.dsz"
    dense = 4 * sum(p.numel() for p in ds.zoo.create(name).parameters())
    assert path.stat().st_size * least_ratio <= dense
    model = ds.load(path).eval()
    assert type(model) is type(ds.zoo.create(name))
    result = evaluate(model, data.test)
    assert result.count == len(data.test) == count
    assert 1 - result.top1 <= max_error
    # ``deepshrink eval`` states the same two numbers
    monkeypatch.setenv("DEEPSHRINK_DATA", str(request.getfixturevalue("shared_root")))
    assert main(["eval", str(path), "--data", dataset, "--no-latency"]) == 0
    out = capsys.readouterr().out
    ratio = dense / path.stat().st_size
    assert f"top-1 error {1 - result.top1:.2%} on {count:,} test images" in out, out
    assert f"{ratio:.1f}x smaller than the dense fp32 parameters ({dense:,} B)" in out, out
