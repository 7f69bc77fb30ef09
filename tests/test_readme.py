"""The README's Python example runs unchanged on a model that is not in the zoo."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import torch
from torch import nn

import deepshrink as ds

README = Path(__file__).resolve().parents[1] / "README.md"


class UserNet(nn.Module):
    """A user's own CNN: names, layer types and shapes of its own (BatchNorm, GELU, Dropout)."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 8, 5), nn.BatchNorm2d(8), nn.GELU(), nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 5), nn.GELU(), nn.MaxPool2d(2),
        )  # fmt: skip
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(0.1), nn.Linear(256, 10))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(images))


def _example() -> str:
    match = re.search(r"## Python\n\n```python\n(.*?)```", README.read_text(), re.S)
    assert match, "README has no Python example under '## Python'"
    return match.group(1)


def test_the_readme_example_runs_unchanged_on_a_model_outside_the_zoo(
    mnist, tmp_path, monkeypatch
) -> None:
    code = _example()
    zoo_line = '    return ds.zoo.create("lenet5")'
    assert zoo_line in code
    code = code.replace(zoo_line, "    return UserNet()")  # the one line a user changes
    code = re.sub(r"epochs=\d+", "epochs=1", code)  # test time, not the example's logic
    small = copy.copy(mnist)
    small.train = mnist.train.subset(torch.arange(512))
    small.test = mnist.test.subset(torch.arange(256))
    monkeypatch.setattr(ds.data, "load", lambda *args, **kwargs: small)
    monkeypatch.chdir(tmp_path)
    namespace = {"UserNet": UserNet, "__name__": "readme"}
    exec(compile(code, str(README), "exec"), namespace)
    model, small_model = namespace["model"], namespace["small"]
    assert isinstance(small_model, UserNet)
    assert ds.prune.sparsity(small_model) == pytest.approx(0.9, abs=0.01)
    x = small.test.without_transform().batch(torch.arange(8))[0]
    with torch.no_grad():
        assert torch.equal(model.eval()(x), small_model.eval()(x))
    assert (tmp_path / "runs" / "lenet5.int8.onnx").is_file()
