"""Bad input gives a ConfigError that says what, why and how to fix."""

from __future__ import annotations

import pytest
from torch import nn
from torch.nn.utils import prune as torch_prune

from deepshrink.errors import ConfigError
from deepshrink.prune import (
    MagnitudePruning,
    NeuronPruning,
    PolynomialDecay,
    iterative_prune,
    prune_,
    pruning,
)


@pytest.mark.parametrize("value", [-0.1, 1.0, 1.5])
def test_sparsity_outside_zero_one(value) -> None:
    with pytest.raises(ConfigError, match=rf"sparsity must be in \[0, 1\), got {value}"):
        MagnitudePruning(sparsity=value)


@pytest.mark.parametrize("value", [-0.5, 1.0, 2])
def test_ratio_outside_zero_one(value) -> None:
    with pytest.raises(ConfigError, match=r"ratio must be in \[0, 1\), got"):
        NeuronPruning(ratio=value)


def test_override_outside_zero_one() -> None:
    with pytest.raises(ConfigError, match=r"overrides\['fc1'\] \(sparsity\) must be in \[0, 1\)"):
        MagnitudePruning(sparsity=0.5, overrides={"fc1": 1.2})
    with pytest.raises(ConfigError, match="quality must be ≥ 0"):
        MagnitudePruning(quality=-1.0)


def test_exactly_one_of_sparsity_or_quality() -> None:
    with pytest.raises(ConfigError, match="exactly one of sparsity= .* or quality="):
        MagnitudePruning()
    with pytest.raises(ConfigError, match="exactly one of sparsity="):
        MagnitudePruning(sparsity=0.5, quality=1.0)
    with pytest.raises(ConfigError, match="criterion='random'"):
        MagnitudePruning(quality=1.0, criterion="random")


@pytest.mark.parametrize("config", [MagnitudePruning, NeuronPruning])
def test_unknown_criterion_suggests_the_close_name(config) -> None:
    field = {"sparsity": 0.5} if config is MagnitudePruning else {"ratio": 0.5}
    with pytest.raises(ConfigError, match="unknown pruning criterion 'magnitud'; did you mean"):
        config(**field, criterion="magnitud")


def test_unknown_field_and_method() -> None:
    with pytest.raises(ConfigError, match=r"MagnitudePruning.sparsty: Extra inputs"):
        MagnitudePruning(sparsity=0.5, sparsty=0.5)
    with pytest.raises(Exception, match="unknown pruning method 'neurons'; did you mean 'neuron'"):
        pruning("neurons", ratio=0.5)


def test_layer_globs_that_match_nothing(mlp) -> None:
    with pytest.raises(ConfigError, match=r"include 'fc1' matches no layer .* \(layers: 1, 3, 5\)"):
        prune_(mlp, MagnitudePruning(sparsity=0.5), include="fc1")
    with pytest.raises(ConfigError, match="exclude 'x' matches no layer"):
        prune_(mlp, MagnitudePruning(sparsity=0.5), exclude=["1", "x"])
    with pytest.raises(ConfigError, match="overrides glob 'conv1' matches no layer"):
        prune_(mlp, MagnitudePruning(sparsity=0.5, overrides={"conv1": 0.1}))
    with pytest.raises(ConfigError, match="leave no layer"):
        prune_(mlp, MagnitudePruning(sparsity=0.5), exclude="*")


def test_a_close_layer_name_is_suggested() -> None:
    model = nn.Sequential()
    model.add_module("fc1", nn.Linear(2, 2))
    with pytest.raises(ConfigError, match="did you mean 'fc1'"):
        prune_(model, MagnitudePruning(sparsity=0.5), include="fc_1")


def test_schedule_settings() -> None:
    with pytest.raises(ConfigError, match="end_step must be > begin_step"):
        PolynomialDecay(final_sparsity=0.5, begin_step=10, end_step=10)
    with pytest.raises(ConfigError, match=r"final_sparsity must be in \[0, 1\)"):
        PolynomialDecay(final_sparsity=1.0, end_step=10)
    with pytest.raises(ConfigError, match="below initial_sparsity"):
        PolynomialDecay(initial_sparsity=0.6, final_sparsity=0.5, end_step=10)
    with pytest.raises(ConfigError, match="frequency must be ≥ 1"):
        PolynomialDecay(final_sparsity=0.5, end_step=10, frequency=0)


def test_not_a_config_or_not_a_model(mlp) -> None:
    with pytest.raises(ConfigError, match="not a pruning config"):
        prune_(mlp, {"sparsity": 0.5})  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="needs a torch.nn.Module"):
        prune_("model", MagnitudePruning(sparsity=0.5))  # type: ignore[arg-type]


def test_iterative_prune_needs_positive_steps(mlp, tiny_data) -> None:
    with pytest.raises(ConfigError, match="steps must be a positive number"):
        iterative_prune(mlp, tiny_data, MagnitudePruning(sparsity=0.5), steps=0)
    with pytest.raises(ConfigError, match="MagnitudePruning\\(sparsity=...\\) or NeuronPruning"):
        iterative_prune(mlp, tiny_data, MagnitudePruning(quality=1.0), steps=2)


def test_torch_pruned_layers_are_refused(mlp) -> None:
    torch_prune.l1_unstructured(mlp[1], "weight", amount=0.5)
    with pytest.raises(ConfigError, match="already pruned by torch.nn.utils.prune"):
        prune_(mlp, MagnitudePruning(sparsity=0.5), include="1")
