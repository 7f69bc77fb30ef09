"""Magnitude/random weight pruning: exact sparsity, thresholds, masks enforced, save/load."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from deepshrink import zoo
from deepshrink.eval import count_nonzero
from deepshrink.functional.masks import keep_count
from deepshrink.graph import structure_of
from deepshrink.prune import (
    MagnitudePruning,
    finalize_,
    iter_masks,
    prune_,
    sparsity,
    weight_counts,
)
from deepshrink.train import fit, load_checkpoint, save_checkpoint


def _zeros_hold(model: nn.Module) -> None:
    masks = list(iter_masks(model))
    assert masks
    for _, module, name, mask in masks:
        assert torch.equal(getattr(module, name)[~mask], torch.zeros(int((~mask).sum())))


@pytest.mark.parametrize("criterion", ["magnitude", "l2", "random"])
def test_layer_scope_reaches_the_exact_sparsity_in_every_layer(mlp, criterion) -> None:
    prune_(mlp, MagnitudePruning(sparsity=0.7, criterion=criterion))
    for name, (kept, total) in weight_counts(mlp).items():
        assert kept == keep_count(total, 0.7), name
    if criterion != "random":  # the survivors are the largest weights
        layer = mlp[1]
        kept_values = layer.weight[layer.weight_mask].abs()
        assert kept_values.min() > 0


def test_global_scope_reaches_the_exact_sparsity_overall(mlp) -> None:
    before = {
        n: m.weight.detach().abs().clone()
        for n, m in mlp.named_modules()
        if hasattr(m, "out_features")
    }
    prune_(mlp, MagnitudePruning(sparsity=0.6, scope="global"))
    counts = weight_counts(mlp)
    total = sum(t for _, t in counts.values())
    assert sum(k for k, _ in counts.values()) == keep_count(total, 0.6)
    pooled = torch.cat([w.flatten() for w in before.values()])
    threshold = pooled.sort().values[total - keep_count(total, 0.6)]
    for name, module in mlp.named_modules():
        if name in before:
            assert torch.equal(module.weight_mask, before[name] >= threshold)
    assert len({round(1 - k / t, 3) for k, t in counts.values()}) > 1  # layers differ


def test_quality_prunes_below_quality_times_std(mlp) -> None:
    weights = {
        n: m.weight.detach().clone() for n, m in mlp.named_modules() if hasattr(m, "out_features")
    }
    prune_(mlp, MagnitudePruning(quality=0.8))
    for name, w in weights.items():
        mean = w.mean()
        std = float(((w - mean) ** 2).sum() / (w.numel() - 1)) ** 0.5
        expected = w.abs() >= 0.8 * std
        assert torch.equal(mlp.get_submodule(name).weight_mask, expected), name


def test_overrides_and_include_exclude(mlp) -> None:
    prune_(mlp, MagnitudePruning(sparsity=0.8, overrides={"1": 0.25, "5": 0.5}), exclude="3")
    counts = weight_counts(mlp)
    assert counts["1"][0] == keep_count(16 * 24, 0.25)
    assert counts["3"] == (24 * 12, 24 * 12)
    assert counts["5"][0] == keep_count(12 * 3, 0.5)
    assert [n for n, *_ in iter_masks(mlp)] == ["1", "5"]


def test_global_scope_with_an_override_keeps_that_layer_separate(mlp) -> None:
    prune_(mlp, MagnitudePruning(sparsity=0.9, scope="global", overrides={"5": 0.1}))
    counts = weight_counts(mlp)
    assert counts["5"][0] == keep_count(36, 0.1)
    pooled = [counts["1"], counts["3"]]
    assert sum(k for k, _ in pooled) == keep_count(sum(t for _, t in pooled), 0.9)


def test_sparsity_zero_gives_identical_outputs(mlp, inputs) -> None:
    reference = mlp(inputs)
    prune_(mlp, MagnitudePruning(sparsity=0.0))
    assert torch.equal(mlp(inputs), reference)
    prune_(mlp, MagnitudePruning(quality=0.0))
    assert torch.equal(finalize_(mlp)(inputs), reference)


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_pruned_weights_stay_zero_through_fit(mlp, tiny_data, optimizer) -> None:
    prune_(mlp, MagnitudePruning(sparsity=0.75))
    target = sparsity(mlp)
    masks = {n: m.clone() for n, _, _, m in iter_masks(mlp)}
    fit(mlp, tiny_data, epochs=3, batch_size=16, optimizer=optimizer, lr=0.05, momentum=0.9,
        weight_decay=0.01, progress=False)  # fmt: skip
    _zeros_hold(mlp)
    assert sparsity(mlp) == pytest.approx(target)
    assert all(torch.equal(m, masks[n]) for n, _, _, m in iter_masks(mlp))
    assert mlp[1].weight.grad is not None
    assert (mlp[1].weight.grad[~mlp[1].weight_mask] == 0).all()


def test_stale_momentum_cannot_revive_weights_in_the_forward_pass(mlp, inputs) -> None:
    optimizer = torch.optim.SGD(mlp.parameters(), lr=0.5, momentum=0.9)
    for _ in range(2):  # momentum built while every weight is alive
        optimizer.zero_grad()
        mlp(inputs).square().sum().backward()
        optimizer.step()
    prune_(mlp, MagnitudePruning(sparsity=0.5))
    optimizer.zero_grad()
    mlp(inputs).square().sum().backward()
    optimizer.step()  # momentum moves pruned weights off zero in storage ...
    layer = mlp[1]
    assert (layer.weight[~layer.weight_mask] != 0).any()
    masked = mlp(inputs)  # ... and the next forward re-applies the mask first
    _zeros_hold(mlp)
    assert torch.equal(masked, mlp(inputs))


def test_pruning_again_only_adds_zeros(mlp) -> None:
    prune_(mlp, MagnitudePruning(sparsity=0.5, criterion="random"))
    first = mlp[1].weight_mask.clone()
    prune_(mlp, MagnitudePruning(sparsity=0.8, criterion="random", seed=1))
    second = mlp[1].weight_mask
    assert not (second & ~first).any()
    assert int(second.sum()) == keep_count(second.numel(), 0.8)
    assert [e["kind"] for e in structure_of(mlp)] == ["prune.mask"]  # recorded once


def test_save_load_checkpoint_rebuilds_masks_and_keeps_them_enforced(tmp_path, tiny_data) -> None:
    model = zoo.create("lenet5")
    prune_(model, MagnitudePruning(sparsity=0.9, overrides={"conv1": 0.3}))
    path = save_checkpoint(model, tmp_path / "pruned")
    loaded, sidecar = load_checkpoint(path)
    assert sidecar["structure"] == structure_of(model)
    (x,) = model.example_inputs(batch_size=4)
    assert torch.equal(loaded.eval()(x), model.eval()(x))
    assert {n: m for n, _, _, m in iter_masks(loaded)}.keys() == {"conv1", "conv2", "fc1", "fc2"}
    data = type(tiny_data)(torch.rand(32, 1, 28, 28), torch.randint(0, 10, (32,)))
    fit(loaded, data, epochs=1, batch_size=16, progress=False)
    _zeros_hold(loaded)
    assert sparsity(loaded) == pytest.approx(sparsity(model))


def test_finalize_leaves_no_masks_and_identical_outputs(tmp_path, mlp, inputs) -> None:
    prune_(mlp, MagnitudePruning(sparsity=0.6))
    reference = mlp(inputs)
    nonzero = count_nonzero(mlp)
    finalize_(mlp)
    assert not list(iter_masks(mlp))
    assert not any(k.endswith("_mask") for k in mlp.state_dict())
    assert not any(mlp[i]._forward_pre_hooks for i in (1, 3, 5))
    assert structure_of(mlp) == []
    assert torch.equal(mlp(inputs), reference)
    assert count_nonzero(mlp) == nonzero
    zeros = mlp[1].weight[mlp[1].weight == 0]
    assert not torch.signbit(zeros).any()  # +0.0, not -0.0: all-zero bytes compress best
    path = save_checkpoint(mlp, tmp_path / "final")
    fresh = copy.deepcopy(mlp)
    load_checkpoint(path, fresh)
    assert torch.equal(fresh(inputs), reference)


def test_deepcopy_of_a_masked_model_keeps_enforcing(mlp, tiny_data) -> None:
    prune_(mlp, MagnitudePruning(sparsity=0.5))
    twin = copy.deepcopy(mlp)
    fit(twin, tiny_data, epochs=1, batch_size=16, progress=False)
    _zeros_hold(twin)
    assert not torch.equal(twin[1].weight, mlp[1].weight)


def test_convolutions_are_pruned_and_biases_are_not() -> None:
    model = zoo.create("lenet5")
    with torch.no_grad():
        model.conv2.bias.uniform_(-0.01, 0.01)
    bias = model.conv2.bias.detach().clone()
    prune_(model, MagnitudePruning(sparsity=0.5))
    assert keep_count(20 * 25, 0.5) == weight_counts(model)["conv1"][0]
    assert torch.equal(model.conv2.bias, bias)
    assert not hasattr(model.conv1, "bias_mask")
