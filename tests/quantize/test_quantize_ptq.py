"""Observers, schemes and simulated post-training quantization in PyTorch."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import deepshrink as ds
from deepshrink.errors import ConfigError
from deepshrink.functional import quant as Q
from deepshrink.quantize import (
    Observer,
    QuantScheme,
    calibrate_activations,
    fake_quantize_,
    quantize_weights_,
    remove_fake_quantization_,
)


def _batches(count: int = 3) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return [torch.randn(8, 4, generator=generator) * (i + 1) for i in range(count)]


def test_minmax_observer_keeps_the_extremes_of_all_batches() -> None:
    observer = Observer(QuantScheme(observer="minmax"))
    for batch in _batches():
        observer.update(batch)
    everything = torch.cat(_batches())
    low, high = observer.range()
    assert low.item() == everything.min().item() and high.item() == everything.max().item()


def test_moving_average_observer_follows_the_ema() -> None:
    first, second = _batches(2)
    observer = Observer(QuantScheme(observer="moving_average", averaging_constant=0.25))
    observer.update(first)
    observer.update(second)
    expected = first.max() + 0.25 * (second.max() - first.max())
    assert observer.range()[1].item() == pytest.approx(expected.item())


@pytest.mark.parametrize("name", ["percentile", "mse", "kl"])
def test_averaging_observers_average_the_batch_ranges(name: str) -> None:
    scheme = QuantScheme(observer=name, percentile=90.0, granularity="channel", axis=1)
    observer = Observer(scheme)
    ranges = []
    for batch in _batches():
        observer.update(batch)
        single = Observer(scheme)
        single.update(batch)
        ranges.append(single.range()[1])
    assert torch.allclose(observer.range()[1], torch.stack(ranges).mean(0), atol=1e-6)
    assert observer.range()[1].shape == (4,)


def test_scheme_errors_name_the_field() -> None:
    for bits in (0, 17):
        with pytest.raises(ConfigError, match="QuantScheme.bits"):
            QuantScheme(bits=bits)
    with pytest.raises(ConfigError, match="unknown observer 'percentil'; did you mean"):
        QuantScheme(observer="percentil")
    with pytest.raises(ConfigError, match="group_size is needed exactly when"):
        QuantScheme(granularity="group")
    with pytest.raises(ValueError, match="has not seen any tensor"):
        Observer().qparams()


@pytest.mark.parametrize(
    "scheme",
    [
        QuantScheme(bits=4, granularity="channel", axis=0),
        QuantScheme(bits=3, signed=False, symmetric=False),
        QuantScheme(bits=4, granularity="group", axis=1, group_size=4),
    ],
)
def test_quantized_weights_sit_on_the_grid(scheme: QuantScheme) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(4, 3, 2), nn.Flatten(), nn.Linear(12, 5))
    before = model[2].weight.detach().clone()
    quantize_weights_(model, scheme)
    after = model[2].weight.detach().clone()
    observer = Observer(scheme)
    observer.update(before)
    scale, _ = observer.qparams()
    step = Q._shaped(scale, before, **scheme.layout)
    assert torch.all((after - before).abs() <= step / 2 + 1e-6)
    rows = Q.channel_rows(after, **scheme.layout)
    assert max(len(row.unique()) for row in rows) <= 2**scheme.bits
    quantize_weights_(model, scheme)  # a second pass changes nothing
    assert torch.allclose(model[2].weight, after, atol=1e-6)


def test_calibrated_input_range_is_the_data_range() -> None:
    x = torch.rand(32, 3) * 4 - 1  # in [-1, 3)
    ranges = calibrate_activations(nn.Sequential(nn.Linear(3, 2)), x)
    scale, zero_point = ranges["0"]
    expected_scale, expected_zero = Q.qparams(x.min(), x.max(), signed=False, symmetric=False)
    assert scale.item() == pytest.approx(expected_scale.item())
    assert zero_point.item() == expected_zero.item()


@pytest.fixture(scope="module")
def digits_model() -> tuple[nn.Module, ds.data.Data]:
    torch.manual_seed(0)
    data = ds.data.load("digits")
    model = ds.zoo.create("digits_mlp")
    ds.fit(model, data, epochs=3, batch_size=64, threads=1, progress=False)
    return model.eval(), data


def test_int8_simulation_keeps_accuracy_and_hooks_can_go(digits_model) -> None:
    import copy

    model, data = digits_model
    dense = ds.train.evaluate(model, data.test).top1
    simulated = fake_quantize_(copy.deepcopy(model), data)
    assert dense > 0.8
    assert ds.train.evaluate(simulated, data.test).top1 >= dense - 0.02
    x = data.test.batch(torch.arange(4))[0]
    hooked = simulated(x)
    remove_fake_quantization_(simulated)
    assert not torch.equal(simulated(x), hooked)  # inputs are no longer rounded


def test_low_bit_simulation_costs_accuracy(digits_model) -> None:
    import copy

    model, data = digits_model
    two_bits = QuantScheme(bits=2, granularity="channel", axis=0)
    simulated = fake_quantize_(copy.deepcopy(model), activations=None, weights=two_bits)
    assert ds.train.evaluate(simulated, data.test).top1 < ds.train.evaluate(model, data.test).top1
    with pytest.raises(ConfigError, match="needs calibration= data"):
        fake_quantize_(copy.deepcopy(model))


class TokenModel(nn.Module):
    """Keyword token inputs (int64) → embedding → linear, as a tokenizer's output is fed."""

    def __init__(self) -> None:
        super().__init__()
        self.embedding, self.linear = nn.Embedding(50, 6), nn.Linear(6, 3)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.linear(self.embedding(input_ids) * attention_mask.unsqueeze(-1))


def _token_batches() -> list[dict[str, torch.Tensor]]:
    generator = torch.Generator().manual_seed(0)
    return [
        {"input_ids": torch.randint(0, 50, (4, 7), generator=generator),
         "attention_mask": torch.ones(4, 7, dtype=torch.long),
         "labels": torch.zeros(4, dtype=torch.long)}
        for _ in range(3)
    ]  # fmt: skip


def test_calibration_keeps_keyword_inputs_and_their_integer_dtype() -> None:
    from deepshrink.quantize import calibration_inputs

    inputs = calibration_inputs(_token_batches(), samples=10)
    assert sorted(inputs) == ["attention_mask", "input_ids"]  # labels dropped
    assert inputs["input_ids"].dtype == torch.int64 and inputs["input_ids"].shape == (10, 7)
    expected = torch.cat([b["input_ids"] for b in _token_batches()])[:10]
    assert torch.equal(inputs["input_ids"], expected)
    pairs = [((torch.rand(4, 2), torch.rand(4, 5).double()), torch.zeros(4)) for _ in range(2)]
    positional = calibration_inputs(pairs)
    assert isinstance(positional, tuple) and [t.shape for t in positional] == [(8, 2), (8, 5)]
    assert positional[1].dtype == torch.float32  # float inputs become float32


def test_activations_of_a_token_model_are_calibrated_on_its_token_ids() -> None:
    model = TokenModel()
    batches = _token_batches()
    ranges = calibrate_activations(model, batches, batch_size=4)
    with torch.no_grad():
        seen = torch.cat([model.embedding(b["input_ids"]) for b in batches])
    scale, zero_point = ranges["linear"]
    expected_scale, expected_zero = Q.qparams(seen.min(), seen.max(), signed=False,
                                              symmetric=False)  # fmt: skip
    assert scale.item() == pytest.approx(expected_scale.item())
    assert zero_point.item() == expected_zero.item()
