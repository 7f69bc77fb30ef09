"""PolynomialDecay (TF-MOT parity) during fit, and iterative prune → fine-tune."""

from __future__ import annotations

import pytest
import torch

from deepshrink.functional.masks import keep_count
from deepshrink.prune import (
    MagnitudePruning,
    NeuronPruning,
    PolynomialDecay,
    iter_masks,
    iterative_prune,
    prune_,
    sparsity,
    weight_counts,
)
from deepshrink.train import Callback, StepContext, fit


def test_sparsity_follows_the_tfmot_formula() -> None:
    schedule = PolynomialDecay(
        initial_sparsity=0.1, final_sparsity=0.7, begin_step=10, end_step=50, frequency=5
    )
    assert schedule.sparsity(0) == pytest.approx(0.1)
    assert schedule.sparsity(10) == pytest.approx(0.1)
    assert schedule.sparsity(30) == pytest.approx(0.7 - 0.6 * 0.5**3)
    assert schedule.sparsity(50) == pytest.approx(0.7)
    assert schedule.sparsity(500) == pytest.approx(0.7)
    assert [s for s in range(60) if schedule.due(s)] == list(range(10, 51, 5))


class _Probe(Callback):
    """Records the sparsity the model has after each step's callbacks."""

    def __init__(self) -> None:
        self.seen: dict[int, float] = {}

    def on_step_end(self, context: StepContext) -> None:
        self.seen[context.step + 1] = sparsity(context.model)


def test_masks_during_fit_match_the_schedule(mlp, tiny_data) -> None:
    schedule = PolynomialDecay(
        initial_sparsity=0.2, final_sparsity=0.8, begin_step=3, end_step=15, frequency=4
    )
    prune_(mlp, schedule)  # begin_step > 0: nothing at step 0
    assert not list(iter_masks(mlp))
    probe = _Probe()
    fit(mlp, tiny_data, epochs=4, batch_size=16, callbacks=[schedule, probe], progress=False)
    total = sum(t for _, t in weight_counts(mlp).values())
    last_update = None
    for done, measured in sorted(probe.seen.items()):
        if schedule.due(done):
            last_update = done
        if last_update is None:
            assert measured == 0.0, done  # before begin_step: dense
        else:  # per layer, so compare with a tolerance of the rounding
            assert measured == pytest.approx(schedule.sparsity(last_update), abs=3 / total), done
    assert sparsity(mlp) == pytest.approx(0.8, abs=3 / total)
    for _, module, name, mask in iter_masks(mlp):
        assert (getattr(module, name)[~mask] == 0).all()


def test_prune_with_a_schedule_applies_step_zero(mlp) -> None:
    schedule = PolynomialDecay(initial_sparsity=0.5, final_sparsity=0.9, end_step=10, frequency=2)
    prune_(mlp, schedule)
    assert weight_counts(mlp)["1"][0] == keep_count(16 * 24, 0.5)


def test_schedule_include_exclude(mlp, tiny_data) -> None:
    schedule = PolynomialDecay(final_sparsity=0.5, end_step=2, frequency=1, include="1")
    fit(mlp, tiny_data, epochs=1, batch_size=16, callbacks=[schedule], progress=False)
    assert [n for n, *_ in iter_masks(mlp)] == ["1"]


def test_iterative_prune_reaches_the_target_in_rounds(mlp, tiny_data) -> None:
    steps = iterative_prune(
        mlp, tiny_data, MagnitudePruning(sparsity=0.875), steps=3,
        fine_tune={"epochs": 1, "batch_size": 16},
    )  # fmt: skip
    assert [round(s.sparsity, 2) for s in steps] == [0.5, 0.75, 0.88]
    for name, (kept, total) in weight_counts(mlp).items():
        assert kept == keep_count(total, 0.875), name


def test_iterative_neuron_pruning_shrinks_geometrically(mlp, tiny_data) -> None:
    iterative_prune(mlp, tiny_data, NeuronPruning(ratio=0.75), steps=2, fine_tune={"epochs": 0})
    assert (mlp[1].out_features, mlp[3].out_features) == (6, 3)


def test_iterative_prune_measures_accuracy_on_data_test(mlp) -> None:
    from deepshrink.data import load

    data = load("synthetic")
    steps = iterative_prune(
        torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10)), data,
        MagnitudePruning(sparsity=0.5), steps=1, fine_tune={"epochs": 1},
    )  # fmt: skip
    assert steps[0].accuracy is not None and steps[0].accuracy_pruned is not None
