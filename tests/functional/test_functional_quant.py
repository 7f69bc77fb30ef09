"""Affine quantization maths: error bound, idempotence, exact zero, layouts, range estimators."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from deepshrink.errors import ConfigError
from deepshrink.functional import quant as Q

SETTINGS = settings(max_examples=60, deadline=None)


@st.composite
def cases(draw: st.DrawFn) -> dict:
    """A random tensor, grid and granularity (tensor / channel on any axis / group)."""
    shape = draw(st.lists(st.integers(1, 5), min_size=1, max_size=3))
    layout = draw(st.sampled_from(["tensor", "channel", "group"]))
    axis = draw(st.integers(0, len(shape) - 1))
    group = None
    if layout == "group":
        group = draw(st.integers(1, 3))
        shape[axis] *= group * draw(st.integers(1, 2))
    seed = draw(st.integers(0, 2**16))
    spread = draw(st.sampled_from([1e-3, 1.0, 50.0]))
    x = torch.randn(shape, generator=torch.Generator().manual_seed(seed)) * spread
    x = x + draw(st.sampled_from([0.0, 0.5 * spread, -2.0 * spread]))  # one-sided ranges too
    return {
        "x": x,
        "bits": draw(st.integers(2, 8)),
        "signed": draw(st.booleans()),
        "symmetric": draw(st.booleans()),
        "axis": None if layout == "tensor" else axis,
        "group_size": group,
    }


def _params(case: dict) -> tuple[torch.Tensor, torch.Tensor, dict]:
    where = {"axis": case["axis"], "group_size": case["group_size"]}
    rows = Q.channel_rows(case["x"], **where)
    low, high = (Q.from_rows(v, case["x"].shape, **where) for v in Q.minmax_range(rows))
    grid = {"bits": case["bits"], "signed": case["signed"]}
    scale, zero = Q.qparams(low, high, symmetric=case["symmetric"], **grid)
    return scale, zero, {**grid, **where}


@SETTINGS
@given(cases())
def test_round_trip_error_is_at_most_half_a_step(case: dict) -> None:
    scale, zero, kw = _params(case)
    x = case["x"]
    back = Q.dequantize(Q.quantize(x, scale, zero, **kw), scale, zero, **Q_layout(kw))
    step = Q._shaped(scale, x, kw["axis"], kw["group_size"])
    # min-max ranges put every value inside the grid, so only rounding error remains
    assert torch.all((back - x).abs() <= step / 2 * (1 + 1e-4) + 1e-6)


def Q_layout(kw: dict) -> dict:
    return {"axis": kw["axis"], "group_size": kw["group_size"]}


@SETTINGS
@given(cases())
def test_quantizing_a_dequantized_tensor_changes_nothing(case: dict) -> None:
    scale, zero, kw = _params(case)
    q = Q.quantize(case["x"], scale, zero, **kw)
    again = Q.quantize(Q.dequantize(q, scale, zero, **Q_layout(kw)), scale, zero, **kw)
    assert torch.equal(q, again)
    once = Q.fake_quantize(case["x"], scale, zero, **kw)
    assert torch.equal(Q.fake_quantize(once, scale, zero, **kw), once)


@SETTINGS
@given(cases())
def test_zero_is_exactly_representable(case: dict) -> None:
    scale, zero, kw = _params(case)
    zeros = torch.zeros_like(case["x"])
    assert torch.equal(Q.fake_quantize(zeros, scale, zero, **kw), zeros)


def test_values_outside_the_range_are_clipped() -> None:
    scale, zero = Q.qparams(-1.0, 1.0, bits=4, signed=True)
    q = Q.quantize(torch.tensor([-5.0, 5.0]), scale, zero, bits=4, signed=True)
    assert q.tolist() == [-8, 7]


def test_per_channel_scale_follows_the_axis() -> None:
    x = torch.stack([torch.linspace(-1, 1, 5), torch.linspace(-10, 10, 5)], dim=1)  # (5, 2)
    low, high = Q.minmax_range(Q.channel_rows(x, axis=1))
    scale, zero = Q.qparams(low, high, bits=8)
    assert scale.shape == (2,)
    assert scale[1] == pytest.approx(10 * scale[0].item())
    back = Q.dequantize(Q.quantize(x, scale, zero, axis=1), scale, zero, axis=1)
    assert torch.allclose(back, x, atol=scale[1].item() / 2)
    assert not torch.allclose(back, x, atol=scale[0].item() / 4)  # channel 1 is coarser


def test_per_group_scales_cover_consecutive_runs() -> None:
    x = torch.tensor([[1.0, 1.0, 100.0, 100.0]])
    rows = Q.channel_rows(x, axis=1, group_size=2)
    high = Q.from_rows(Q.minmax_range(rows)[1], x.shape, axis=1, group_size=2)
    assert high.tolist() == [[1.0, 100.0]]
    scale, zero = Q.qparams(-high, high, bits=8)
    assert torch.equal(Q.quantize(x, scale, zero, axis=1, group_size=2), torch.full((1, 4), 127))


def test_unsigned_symmetric_centres_on_the_middle_code() -> None:
    scale, zero = Q.qparams(-1.0, 2.0, bits=8, signed=False, symmetric=True)
    assert zero.item() == 128 and scale.item() == pytest.approx(2 / 127)


@pytest.mark.parametrize("bits", [0, 1, 17, 8.0, True])
def test_bad_bits_raise_config_error(bits: object) -> None:
    with pytest.raises(ConfigError, match="bits must be an integer in \\[2, 16\\]"):
        Q.quant_range(bits)  # type: ignore[arg-type]


def test_bad_axis_and_group_raise_config_error() -> None:
    with pytest.raises(ConfigError, match="axis must be in"):
        Q.channel_rows(torch.zeros(2, 3), axis=2)
    with pytest.raises(ConfigError, match="group_size must divide"):
        Q.channel_rows(torch.zeros(2, 3), axis=1, group_size=2)


def test_storage_types() -> None:
    assert Q.storage_dtype(8, True) == torch.int8 and Q.storage_dtype(4, False) == torch.uint8
    assert Q.storage_dtype(12, True) == torch.int16 and Q.storage_dtype(16, False) == torch.int32
    scale, zero = Q.qparams(0.0, 1.0, bits=16, signed=False, symmetric=False)
    assert Q.quantize(torch.tensor([1.0]), scale, zero, bits=16, signed=False).item() == 65535


def test_percentile_clips_outliers_and_minmax_keeps_them() -> None:
    rows = torch.cat([torch.linspace(-1, 1, 999), torch.tensor([1000.0])]).view(1, -1)
    assert Q.minmax_range(rows)[1].item() == 1000.0
    assert Q.percentile_range(rows, 99.0)[1].item() < 1.01


def test_mse_range_clips_a_lone_outlier_when_that_lowers_the_error() -> None:
    x = torch.randn(1, 4000, generator=torch.Generator().manual_seed(0))
    x[0, 0] = 60.0
    ranges = {"minmax": Q.minmax_range(x), "mse": Q.mse_range(x, bits=4, steps=64)}
    errors = {}
    for name, (low, high) in ranges.items():
        scale, zero = Q.qparams(low, high, bits=4)
        errors[name] = (Q.fake_quantize(x, scale, zero, bits=4, axis=0) - x).pow(2).mean()
    assert ranges["mse"][1].item() < 10.0  # the outlier is clipped
    assert errors["mse"] < errors["minmax"]
    for step in (8, 16, 32, 64):  # no tried factor is better than the chosen one
        scale, zero = Q.qparams(ranges["minmax"][0] * step / 64, ranges["minmax"][1] * step / 64,
                                bits=4)  # fmt: skip
        tried = (Q.fake_quantize(x, scale, zero, bits=4, axis=0) - x).pow(2).mean()
        assert errors["mse"] <= tried + 1e-6


def test_kl_range_clips_a_lone_outlier_and_keeps_the_bulk() -> None:
    x = torch.randn(1, 20000, generator=torch.Generator().manual_seed(0))
    x[0, 0] = 50.0
    low, high = Q.kl_range(x, bits=8)
    assert 3.0 < high.item() < 10.0
    assert low.item() == x.min().item()  # the negative side has no outlier: nothing clipped
    assert Q.kl_range(torch.zeros(1, 5))[1].item() == 0.0


def test_fake_cast_rounds_to_half_types() -> None:
    x = torch.tensor([1 + 2**-12, 3.0e38])
    assert Q.fake_cast(x, "float16").tolist() == [1.0, 65504.0]
    assert Q.fake_cast(x, "bfloat16", saturate=False)[0].item() == 1.0
    assert torch.isinf(Q.fake_cast(x, "float16", saturate=False)[1])
    with pytest.raises(ConfigError, match="dtype must be one of"):
        Q.fake_cast(x, "float8")
