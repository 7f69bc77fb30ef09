"""Quantization configs and ``quantize_`` refuse bad input with one clear ConfigError."""

from __future__ import annotations

import pytest
from torch import nn

import deepshrink as ds
from deepshrink.errors import ConfigError, UnknownNameError
from deepshrink.prune import MagnitudePruning
from deepshrink.quantize import KMeansQuantization, quantization, quantize_


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"bits": 0}, r"bits must be an integer from 1 to 8 .*got 0"),
        ({"bits": 17}, r"bits must be an integer from 1 to 8 .*got 17"),
        ({"bits": 9}, r"got 9"),
        ({"bits": {"conv": 0, "linear": 5}}, r"bits\['conv'\] must be .*got 0"),
        ({"bits": {"lin": 5}}, r"unknown layer kind 'lin'; did you mean 'linear'"),
        ({"bits": {}}, r"bits mapping is empty"),
        ({"overrides": {"fc1": 12}}, r"overrides\['fc1'\] must be .*got 12"),
        ({"init": "linaer"}, r"unknown k-means initialisation 'linaer'; did you mean 'linear'"),
        ({"max_iterations": 0}, r"max_iterations: Input should be greater than or equal to 1"),
        ({"bits": 4, "clusters": 16}, r"clusters: Extra inputs are not permitted"),
    ],
)
def test_bad_settings(settings: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        KMeansQuantization(**settings)


def test_registry_and_recipe_form() -> None:
    config = quantization("kmeans", bits={"conv": 8, "linear": 5}, init="density")
    assert config == KMeansQuantization(**{k: v for k, v in config.to_dict().items()
                                           if k != "method"})  # fmt: skip
    assert config.to_dict()["method"] == "kmeans"
    with pytest.raises(UnknownNameError, match="did you mean 'kmeans'"):
        quantization("kmean")


def test_bad_calls(cnn: nn.Sequential) -> None:
    with pytest.raises(ConfigError, match="is not a quantization config"):
        quantize_(cnn, MagnitudePruning(sparsity=0.5))  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="needs a torch.nn.Module"):
        quantize_("model", KMeansQuantization())  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"'9' matches no layer that k-means .* can quantize"):
        quantize_(cnn, KMeansQuantization(), include="9")
    with pytest.raises(ConfigError, match=r"overrides glob 'fc\*' matches no layer"):
        quantize_(cnn, KMeansQuantization(overrides={"fc*": 4}))
    with pytest.raises(ConfigError, match=r"no width for linear layers \(3, 5\); add 'linear'"):
        quantize_(cnn, KMeansQuantization(bits={"conv": 4}))
    assert type(cnn[0]) is nn.Conv2d  # nothing changed by the failed calls


def test_top_level_exports() -> None:
    assert ds.quantize_ is quantize_ and ds.KMeansQuantization is KMeansQuantization
    assert ds.quantize.finalize_ is not ds.finalize_  # the top-level one finalizes everything
