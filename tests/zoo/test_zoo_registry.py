"""The zoo's registry API: create, list, describe, register and arch_of."""

from __future__ import annotations

import json
import logging
import subprocess
import sys

import pytest
import torch
from torch import nn

from deepshrink import zoo
from deepshrink._registry import Registry
from deepshrink.errors import ConfigError, UnknownNameError
from deepshrink.zoo import registry


@pytest.fixture
def scratch_registry(monkeypatch: pytest.MonkeyPatch) -> Registry:
    """A copy of the model registry, so models registered by a test vanish after it."""
    scratch: Registry = Registry("model")
    for name in registry._MODELS.names():
        scratch.add(name, registry._MODELS.get(name))
    monkeypatch.setattr(registry, "_MODELS", scratch)
    return scratch


def test_list_is_sorted_and_aliased() -> None:
    names = zoo.list()
    assert names == sorted(names)
    assert zoo.list_models() == names
    assert isinstance(names, list)


def test_describe_is_one_line_for_every_model() -> None:
    for name in zoo.list():
        text = zoo.describe(name)
        assert text and "\n" not in text
    assert "Caffe" in zoo.describe("lenet5")


@pytest.mark.parametrize(("wrong", "suggestion"), [("lenet", "lenet5"), ("resnet2", "resnet20")])
def test_unknown_name_suggests(wrong: str, suggestion: str) -> None:
    with pytest.raises(UnknownNameError, match="did you mean") as caught:
        zoo.create(wrong)
    assert repr(suggestion) in str(caught.value)
    with pytest.raises(UnknownNameError):
        zoo.describe(wrong)


def test_unknown_argument_names_model_and_argument() -> None:
    with pytest.raises(ConfigError, match="'lenet5'.*'num_clases'.*did you mean 'num_classes'"):
        zoo.create("lenet5", num_clases=10)
    with pytest.raises(ConfigError, match="'resnet20' has no argument 'depth'"):
        zoo.create("resnet20", depth=20)


@pytest.mark.parametrize(
    ("name", "kwargs", "argument"),
    [
        ("lenet5", {"num_classes": 0}, "num_classes"),
        ("lenet300", {"num_classes": -3}, "num_classes"),
        ("vgg16_cifar", {"num_classes": 2.5}, "num_classes"),
        ("mnist_cnn", {"num_classes": "10"}, "num_classes"),
        ("mobilenetv2_cifar", {"num_classes": True}, "num_classes"),
        ("resnet20", {"shortcut": "C"}, "shortcut"),
        ("resnet18_cifar", {"shortcut": "a"}, "shortcut"),
        ("digits_mlp", {"hidden_sizes": [128, 0]}, "hidden_sizes"),
        ("digits_mlp", {"hidden_sizes": 128}, "hidden_sizes"),
    ],
)
def test_invalid_values_raise_config_error(name: str, kwargs: dict, argument: str) -> None:
    with pytest.raises(ConfigError, match=f"model '{name}': {argument}"):
        zoo.create(name, **kwargs)


def test_arch_of_records_all_arguments_as_json() -> None:
    model = zoo.create("digits_mlp", hidden_sizes=(32, 16))
    record = zoo.arch_of(model)
    assert record == {"name": "digits_mlp", "kwargs": {"num_classes": 10, "hidden_sizes": [32, 16]}}
    assert json.loads(json.dumps(record)) == record
    record["kwargs"]["num_classes"] = 99  # arch_of returns a copy
    assert zoo.arch_of(model)["kwargs"]["num_classes"] == 10
    assert "_deepshrink_arch" not in dict(model.named_modules())
    assert zoo.arch_of(nn.Linear(2, 2)) is None


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [(name, {}) for name in zoo.list()]
    + [("resnet20", {"shortcut": "B", "num_classes": 100}), ("digits_mlp", {"hidden_sizes": [8]})],
)
def test_arch_round_trip(name: str, kwargs: dict) -> None:
    model = zoo.create(name, **kwargs)
    record = zoo.arch_of(model)
    assert record is not None and record["name"] == name
    rebuilt = zoo.create(record["name"], **record["kwargs"])
    shapes = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    assert {key: tuple(value.shape) for key, value in rebuilt.state_dict().items()} == shapes
    assert zoo.arch_of(rebuilt) == record


def test_register_function_and_class(scratch_registry: Registry) -> None:
    @zoo.register("tiny_linear")
    def tiny_linear(num_classes: int = 10, width: int = 4) -> nn.Module:
        """A linear layer on a few features.

        More text that describe() leaves out.
        """
        return nn.Linear(width, num_classes)

    @zoo.register("tiny_class")
    class TinyModel(zoo.ZooModel):
        """A zoo model made by a user."""

        def __init__(self, num_classes: int = 10) -> None:
            super().__init__(input_shape=(1, 2, 2), num_classes=num_classes)
            self.fc1 = nn.Linear(4, num_classes)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc1(x.flatten(1))

    assert {"tiny_linear", "tiny_class"} <= set(zoo.list())
    assert zoo.describe("tiny_linear") == "A linear layer on a few features."
    assert zoo.create("tiny_linear", width=3).in_features == 3
    assert zoo.arch_of(zoo.create("tiny_linear")) == {
        "name": "tiny_linear",
        "kwargs": {"num_classes": 10, "width": 4},
    }
    model = zoo.create("tiny_class", num_classes=2)
    assert model(*model.example_inputs(batch_size=5)).shape == (5, 2)
    with pytest.raises(ConfigError, match="already registered"):
        zoo.register("tiny_linear")(tiny_linear)


def test_register_reports_bad_factories(
    scratch_registry: Registry, caplog: pytest.LogCaptureFixture
) -> None:
    zoo.register("not_a_module")(lambda: 42)
    with pytest.raises(TypeError, match="not nn.Module"):
        zoo.create("not_a_module")

    zoo.register("takes_anything")(lambda **kwargs: nn.Linear(2, kwargs.get("classes", 2)))
    assert zoo.arch_of(zoo.create("takes_anything", classes=3))["kwargs"] == {"classes": 3}
    with caplog.at_level(logging.WARNING, logger="deepshrink.zoo.registry"):
        model = zoo.create("takes_anything", device=torch.device("cpu"))
    assert zoo.arch_of(model) is None
    assert "not JSON-serialisable" in caplog.text


def test_import_is_light() -> None:
    code = (
        "import sys, deepshrink.zoo; "
        "heavy = {'sklearn', 'onnx', 'yaml', 'matplotlib', 'typer', 'torchvision'}; "
        "print(sorted(heavy & {name.split('.')[0] for name in sys.modules}))"
    )
    command = [sys.executable, "-c", code]
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
