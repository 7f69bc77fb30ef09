"""PolynomialDecay (TF-MOT parity) during fit, and iterative prune → fine-tune."""

from __future__ import annotations

import pytest
import torch

from deepshrink.errors import ConfigError
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
from deepshrink.prune.schedules import PruningStepper
from deepshrink.train import Callback, StepContext, fit

from .conftest import tiny_mlp


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


# --- your own training loop -------------------------------------------------------------------


def _batches(data, size: int = 16) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(data.images[i : i + size], data.labels[i : i + size]) for i in range(0, 96, size)]


def _own_loop(model, optimizer, batches, stepper, epochs: int, check=None) -> None:
    for _ in range(epochs):
        for x, y in batches:
            loss = torch.nn.functional.cross_entropy(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            stepper.step()
            if check is not None:
                check()


def test_own_loop_with_the_stepper_equals_fit_with_the_callback(tiny_data) -> None:
    schedule = PolynomialDecay(final_sparsity=0.75, begin_step=0, end_step=12, frequency=3)
    settings = {"lr": 0.05, "momentum": 0.9, "weight_decay": 1e-3}
    batches = _batches(tiny_data)

    reference = tiny_mlp()
    prune_(reference, schedule)
    fit(reference, batches, epochs=3, schedule="constant", callbacks=[schedule], progress=False,
        **settings)  # fmt: skip

    model = tiny_mlp()
    stepper = PruningStepper(model, schedule)
    optimizer = torch.optim.SGD(model.parameters(), **settings)
    _own_loop(model, optimizer, batches, stepper, epochs=3)
    assert stepper.steps == 18 and stepper.sparsity == pytest.approx(0.75)
    for (name, a), (_, b) in zip(
        model.state_dict().items(), reference.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name
    assert sparsity(model) == pytest.approx(0.75, abs=0.01)


def test_stepper_keeps_masks_against_stale_momentum(mlp, tiny_data) -> None:
    optimizer = torch.optim.AdamW(mlp.parameters(), lr=0.01, weight_decay=0.1)
    batches = _batches(tiny_data)
    _own_loop(mlp, optimizer, batches, PruningStepper(mlp), epochs=1)  # dense: moments build up
    prune_(mlp, MagnitudePruning(sparsity=0.6))
    masks = {name: mask.clone() for name, _, _, mask in iter_masks(mlp)}

    def pruned_values() -> list[float]:
        return [
            float(module.weight.detach()[~mask].abs().max())
            for _, module, _, mask in iter_masks(mlp)
        ]

    x, y = batches[0]
    torch.nn.functional.cross_entropy(mlp(x), y).backward()
    optimizer.step()  # Adam's stale moments move pruned weights, until the next forward pass
    assert max(pruned_values()) > 0
    stepper = PruningStepper(mlp)
    stepper.step()
    assert max(pruned_values()) == 0.0

    def check() -> None:
        assert max(pruned_values()) == 0.0

    _own_loop(mlp, optimizer, batches, stepper, epochs=2, check=check)
    assert {name: mask for name, _, _, mask in iter_masks(mlp)}.keys() == masks.keys()
    assert all(torch.equal(masks[n], m) for n, _, _, m in iter_masks(mlp))


def test_own_loop_trains_kmeans_centroids_and_keeps_the_codebook(mlp, tiny_data) -> None:
    from deepshrink.quantize import KMeansQuantization, quantize_

    prune_(mlp, MagnitudePruning(sparsity=0.5))
    quantize_(mlp, KMeansQuantization(bits=2))
    before = mlp[1].weight_centroids.detach().clone()
    optimizer = torch.optim.SGD(mlp.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-3)
    _own_loop(mlp, optimizer, _batches(tiny_data), PruningStepper(mlp), epochs=2)
    assert not torch.equal(mlp[1].weight_centroids, before)
    for index in (1, 3, 5):
        weight = mlp[index].weight.detach()
        assert len(weight[weight != 0].unique()) <= 4
        assert float((weight == 0).float().mean()) >= 0.5


def test_own_loop_with_qat_equals_fit_and_keeps_sparsity(tiny_data) -> None:
    from deepshrink.quantize import QuantAwareTraining, quantize_

    batches = _batches(tiny_data)
    models = []
    for _ in range(2):
        model = tiny_mlp()
        prune_(model, MagnitudePruning(sparsity=0.5))
        quantize_(model, QuantAwareTraining(), calibration=tiny_data.images[:32])
        models.append(model.train())
    reference, model = models
    fit(reference, batches, epochs=2, optimizer="adam", lr=0.01, weight_decay=0,
        schedule="constant", progress=False)  # fmt: skip
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    _own_loop(model, optimizer, batches, PruningStepper(model), epochs=2)
    assert type(model[1]).__name__ == "QATLinear"
    for (name, a), (_, b) in zip(
        model.state_dict().items(), reference.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name  # fake-quant ranges, weights and masks alike
    assert sparsity(model) == pytest.approx(0.5, abs=0.01)


def test_stepper_as_a_hugging_face_callback(mlp) -> None:
    transformers = pytest.importorskip("transformers")
    schedule = PolynomialDecay(final_sparsity=0.5, begin_step=0, end_step=4, frequency=2)
    stepper = PruningStepper(mlp, schedule)
    callback = stepper.hf_callback()
    assert isinstance(callback, transformers.TrainerCallback)
    state, control = transformers.TrainerState(), transformers.TrainerControl()
    for step in range(1, 5):
        state.global_step = step
        callback.on_step_end(None, state, control)
    assert stepper.steps == 4 and sparsity(mlp) == pytest.approx(0.5, abs=0.01)


def test_stepper_refuses_one_shot_configs(mlp) -> None:
    with pytest.raises(ConfigError, match="PolynomialDecay schedule, got MagnitudePruning"):
        PruningStepper(mlp, MagnitudePruning(sparsity=0.5))  # type: ignore[arg-type]
