"""Mixed-precision weight quantization: per-layer widths, budgets, exact allocation, recipes."""

from __future__ import annotations

import itertools
import random
from pathlib import Path

import pytest
import torch
from torch import nn

import deepshrink as ds
from deepshrink.data.dataset import ArrayDataset
from deepshrink.errors import ConfigError
from deepshrink.functional.allocation import choose
from deepshrink.graph import structure_of
from deepshrink.prune import MagnitudePruning, prune_
from deepshrink.quantize import (
    MixedPrecision,
    allocate_bits,
    assign_bits,
    bit_sensitivity,
    layer_bits_of,
    quantization,
    quantize_,
)

from .conftest import tiny_cnn


def _levels_per_channel(weight: torch.Tensor) -> int:
    """Most distinct values in one output channel."""
    return max(len(row.unique()) for row in weight.detach().flatten(1))


def _params(model: nn.Module) -> dict[str, int]:
    layers = model.named_modules()
    return {n: m.weight.numel() for n, m in layers if isinstance(m, nn.Conv2d | nn.Linear)}


def test_config_widths_give_at_most_2_to_the_bits_levels_per_channel(cnn: nn.Sequential) -> None:
    quantize_(cnn, MixedPrecision(bits={"*": 4, "5": 2, "0": 3}, default_bits=8))
    assert layer_bits_of(cnn) == {"0": 3, "3": 4, "5": 2}  # the last matching glob wins
    for name, bits in layer_bits_of(cnn).items():
        weight = cnn.get_submodule(name).weight
        assert _levels_per_channel(weight) <= 2**bits
    # at 2 bits the symmetric grid is {-1, 0, 1} × scale per channel: the largest |w| survives
    weight = cnn[5].weight
    assert torch.allclose(weight.abs().amax(1), tiny_cnn()[5].weight.abs().amax(1))


def test_tensor_granularity_bounds_the_whole_layer_and_keeps_pruned_zeros() -> None:
    model = tiny_cnn()
    prune_(model, MagnitudePruning(sparsity=0.6))
    zeros = model[3].weight == 0
    quantize_(model, MixedPrecision(default_bits=3, granularity="tensor"), exclude="5")
    assert len(model[3].weight.unique()) <= 8
    assert bool((model[3].weight[zeros] == 0).all()) and "5" not in layer_bits_of(model)


def test_bad_configs_raise_one_line_config_errors() -> None:
    bad = [
        {"default_bits": 1},
        {"bits": {"fc1": 17}},
        {"candidates": []},
        {"candidates": [2, 40]},
        {"average_bits": 4, "size_bytes": 1000},
        {"average_bits": 1.5},
        {"metric": "accuracy"},
    ]
    for settings in bad:
        with pytest.raises(ConfigError) as info:
            MixedPrecision(**settings)
        assert "\n" not in str(info.value) and str(info.value).startswith("MixedPrecision")
    with pytest.raises(ConfigError, match="glob"):
        quantize_(tiny_cnn(), MixedPrecision(bits={"fc9": 4}))


def test_automatic_mode_needs_data_and_a_feasible_budget(images: ArrayDataset) -> None:
    with pytest.raises(ConfigError, match="calibration="):
        quantize_(tiny_cnn(), MixedPrecision(average_bits=4))
    with pytest.raises(ConfigError, match="cannot be met"):
        assign_bits(tiny_cnn(), images, (4, 8), size_bytes=10)
    with pytest.raises(ConfigError, match="labels"):
        assign_bits(tiny_cnn(), images.images.float(), average_bits=4)
    unlabelled = assign_bits(tiny_cnn(), images.images.float(), (2, 8), average_bits=5,
                             metric="output")  # fmt: skip
    assert set(unlabelled) == {"0", "3", "5"} and set(unlabelled.values()) <= {2, 8}


def _brute_force(costs: dict, parameters: dict, budget: float) -> float:
    best = float("inf")
    for widths in itertools.product(*(sorted(c) for c in costs.values())):
        if sum(parameters[n] * b for n, b in zip(costs, widths, strict=True)) <= budget:
            best = min(best, sum(costs[n][b] for n, b in zip(costs, widths, strict=True)))
    return best


def test_allocation_matches_exhaustive_search_on_toy_problems() -> None:
    rng = random.Random(0)
    for _ in range(200):
        layers = [f"l{i}" for i in range(3)]
        widths = sorted(rng.sample([2, 3, 4, 5, 6, 8], rng.randint(1, 4)))
        parameters = {name: rng.randint(1, 100) for name in layers}
        # monotone costs, as the scan produces them: fewer bits never cost less
        costs = {n: dict(zip(widths, sorted(rng.random() for _ in widths)[::-1], strict=True))
                 for n in layers}  # fmt: skip
        total = sum(parameters.values())
        budget = rng.uniform(widths[0], widths[-1]) * total
        chosen = allocate_bits(costs, parameters, budget)
        assert sum(parameters[n] * b for n, b in chosen.items()) <= budget
        assert sum(costs[n][b] for n, b in chosen.items()) == pytest.approx(
            _brute_force(costs, parameters, budget)
        )
    with pytest.raises(ValueError):
        choose([[10, 20]], [[1.0, 0.0]], budget=5)


def test_allocation_spends_the_budget_when_more_bits_cost_nothing() -> None:
    parameters = {"a": 7, "b": 5, "c": 3}
    costs = {name: {2: 0.0, 3: 0.0, 5: 0.0, 8: 0.0} for name in parameters}
    for budget in (45, 52, 70, 101):
        sizes = [
            sum(parameters[n] * b for n, b in zip(parameters, widths, strict=True))
            for widths in itertools.product((2, 3, 5, 8), repeat=3)
        ]
        chosen = allocate_bits(costs, parameters, budget)
        used = sum(parameters[n] * b for n, b in chosen.items())
        assert used == max(s for s in sizes if s <= budget)


def _wide_range_model() -> tuple[nn.Sequential, list[tuple[torch.Tensor, torch.Tensor]]]:
    """Two equal layers; layer "2" has one huge weight on a dead input, which stretches its
    per-tensor grid so that coarse widths round all its useful weights to zero."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(12, 12), nn.ReLU(), nn.Linear(12, 12), nn.ReLU(),
                          nn.Linear(12, 3))  # fmt: skip
    with torch.no_grad():
        model[0].weight[0].zero_()
        model[0].bias[0] = -1.0  # hidden unit 0 is always 0 after the ReLU
        model[2].weight[0, 0] = 4.0  # harmless in float, ruinous for a coarse grid
        model[4].weight.mul_(10)  # confident outputs: errors show in the loss
    x = torch.randn(128, 12)
    with torch.no_grad():
        y = model(x).argmax(1)
    return model, [(x[:64], y[:64]), (x[64:], y[64:])]


def test_a_more_sensitive_layer_gets_more_bits() -> None:
    model, batches = _wide_range_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    scan = bit_sensitivity(model, batches, (2, 4, 8), granularity="tensor", include=["0", "2"])
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())  # unchanged
    assert scan["2"][2] > scan["0"][2]
    chosen = assign_bits(model, batches, (2, 4, 8), average_bits=5, granularity="tensor",
                         include=["0", "2"])  # fmt: skip
    assert chosen["2"] > chosen["0"]
    assert sum(144 * b for b in chosen.values()) <= 5 * 288


def test_quantize_meets_the_average_bits_budget(images: ArrayDataset, cnn: nn.Sequential) -> None:
    config = quantization("mixed", average_bits=3.5, candidates=[2, 4, 8], metric="output")
    quantize_(cnn, config, calibration=images)
    chosen, parameters = layer_bits_of(cnn), _params(cnn)
    average = sum(parameters[n] * b for n, b in chosen.items()) / sum(parameters.values())
    assert average <= 3.5 and set(chosen.values()) <= {2, 4, 8}
    for name, bits in chosen.items():
        assert _levels_per_channel(cnn.get_submodule(name).weight) <= 2**bits


def test_pinned_layers_keep_their_width_under_a_budget(images: ArrayDataset) -> None:
    model = tiny_cnn()
    quantize_(model, MixedPrecision(bits={"0": 8}, size_bytes=1400, candidates=(2, 3, 4)),
              calibration=images)  # fmt: skip
    chosen, parameters = layer_bits_of(model), _params(model)
    assert chosen["0"] == 8
    assert sum(parameters[n] * b for n, b in chosen.items()) <= 8 * 1400


def test_checkpoint_and_dsz_round_trips_keep_outputs_and_widths(tmp_path: Path) -> None:
    model = ds.zoo.create("lenet5")
    quantize_(model, MixedPrecision(bits={"conv*": 6, "fc*": 3}, granularity="tensor"))
    loaded, _ = ds.load_checkpoint(ds.save_checkpoint(model, tmp_path / "m"))
    x = torch.rand(2, 1, 28, 28)
    assert torch.equal(model(x), loaded(x)) and layer_bits_of(loaded) == layer_bits_of(model)
    assert [e["kind"] for e in structure_of(loaded)] == ["quantize.mixed"]
    path = ds.save(model, tmp_path / "m.dsz")
    assert torch.equal(ds.load(path)(x), model(x))
    float_size = ds.save(ds.zoo.create("lenet5"), tmp_path / "f.dsz").stat().st_size
    assert path.stat().st_size < float_size / 4  # 3-bit codes for most weights


def test_recipe_with_a_mixed_quantize_stage_runs(tmp_path: Path) -> None:
    from deepshrink.recipe import run_recipe

    recipe = tmp_path / "mixed.yaml"
    recipe.write_text(
        "version: 1\nname: mixed\nseed: 0\nlatency: false\nmodel: {zoo: digits_mlp}\n"
        "data: {name: digits, train_limit: 128, test_limit: 64}\nstages:\n"
        "  - train: {epochs: 1, batch_size: 32}\n"
        "  - quantize: {method: mixed, average_bits: 4, candidates: [2, 4, 8]}\n"
        "  - evaluate: {latency: false}\n"
    )
    run_recipe(recipe, tmp_path / "run", progress=False)
    model, _ = ds.load_checkpoint(tmp_path / "run" / "model.safetensors")
    chosen, parameters = layer_bits_of(model), _params(model)
    assert chosen and sum(parameters[n] * b for n, b in chosen.items()) <= 4 * sum(
        parameters[n] for n in chosen
    )
