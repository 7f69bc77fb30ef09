"""Declared bounds of zoo arguments: refused before the factory runs, in create and in files."""

from __future__ import annotations

import math

import pytest
from torch import nn

from deepshrink import zoo
from deepshrink.errors import ConfigError
from deepshrink.zoo.limits import check_arch, shown


@pytest.mark.parametrize(
    ("name", "kwargs", "words"),
    [
        ("lenet5", {"num_classes": 10**9}, "num_classes"),
        ("lenet5", {"num_classes": 1e3}, "num_classes"),
        ("resnet20", {"shortcut": "C"}, "shortcut"),
        ("vgg11_cifar", {"width": math.inf}, "width"),
        ("vgg11_cifar", {"width": math.nan}, "width"),
        ("digits_mlp", {"hidden_sizes": [4] * 1000}, "hidden_sizes"),
        ("digits_mlp", {"hidden_sizes": [10**6]}, "hidden_sizes"),
    ],
)
def test_create_refuses_out_of_bounds_arguments(name: str, kwargs: dict, words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        zoo.create(name, **kwargs)


def test_records_of_models_without_limits_get_generic_bounds() -> None:
    @zoo.register("limits_linear")
    def limits_linear(width: int = 2) -> nn.Module:
        return nn.Linear(2, width)

    try:
        assert check_arch({"name": "limits_linear", "kwargs": {"width": 3}})[1] == {"width": 3}
        for value in (10**9, math.inf, "x" * 1000, [[1]], {"a": 1}):
            with pytest.raises(ConfigError, match="width"):
                check_arch({"name": "limits_linear", "kwargs": {"width": value}})
    finally:
        zoo.unregister("limits_linear")


def test_records_name_only_declared_arguments() -> None:
    assert check_arch({"name": "lenet5", "kwargs": {"num_classes": 7}}) == (
        "lenet5", {"num_classes": 7},
    )  # fmt: skip
    for arch in ({"name": "lenet5", "kwargs": {"depth": 3}}, {"kwargs": {}}, [], {"name": ""}):
        with pytest.raises(ConfigError):
            check_arch(arch)


def test_shown_values_are_short() -> None:
    assert len(shown("x" * 10_000)) <= 120
    assert "bits" in shown(10**5000)
