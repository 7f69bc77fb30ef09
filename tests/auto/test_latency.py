"""Latency tables: every entry timed in one alternation (a stubbed clock: no real time), the
runtime's per-call cost taken off, the line through the two whole models; real ONNX layers."""

from __future__ import annotations

import numpy as np
import pytest
from torch import nn

from deepshrink.auto.latency import LayerShape, build_table, layer_shapes, onnx_layer


def test_table_recovers_the_stubbed_costs_and_the_line(ticks) -> None:
    conv = LayerShape("conv", (8, 8), (3, 3), (1, 1), (1, 1), (1, 1))
    fc = LayerShape("linear", ())
    layers = {"conv": (conv, (16, 8), (32, 16)), "fc": (fc, (32, 16), (10,))}
    call_cost = 2e-5

    def layer_seconds(shape: LayerShape, w_in: int, w_out: int) -> float:
        return (3e-7 if shape.kind == "conv" else 1e-8) * w_in * w_out

    def make_call(shape: LayerShape, w_in: int, w_out: int):  # noqa: ANN202
        return ticks.cost(layer_seconds(shape, w_in, w_out) + call_cost)

    full_sum = layer_seconds(conv, 16, 32) + layer_seconds(fc, 32, 10)
    narrow_sum = layer_seconds(conv, 8, 16) + layer_seconds(fc, 16, 10)
    a, b = 1.25, 1e-4  # the whole models: b + a · Σ
    table = build_table(
        layers, ticks.cost(b + a * full_sum), ticks.cost(b + a * narrow_sum), rounds=5,
        make_call=make_call, overhead=ticks.cost(call_cost), clock=ticks, wall=ticks,
    )  # fmt: skip
    expected = {
        shape.key(i, o): 1e3 * layer_seconds(shape, i, o)
        for shape, ins, outs in layers.values()
        for i in ins
        for o in outs
    }
    assert table.entries == pytest.approx(expected)
    assert table.slope == pytest.approx(a) and table.intercept == pytest.approx(1e3 * b)
    middle = layer_seconds(conv, 16, 16) + layer_seconds(fc, 16, 10)
    assert table.predict_sum(1e3 * middle) == pytest.approx(1e3 * (b + a * middle))


def test_equal_shapes_share_one_entry() -> None:
    one = LayerShape("conv", (8, 8), (3, 3), (1, 1), (1, 1), (1, 1))
    strided = LayerShape("conv", (8, 8), (3, 3), (2, 2), (1, 1), (1, 1))
    assert one.key(8, 16) == LayerShape(*one.__dict__.values()).key(8, 16)
    assert one.key(8, 16) != strided.key(8, 16) and one.key(8, 16) != one.key(16, 8)


def test_layer_shapes_and_onnx_layers_run(tmp_path) -> None:
    import torch

    from deepshrink.export.runtime import session

    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1, stride=2), nn.ReLU(), nn.Conv2d(8, 8, 3, groups=8),
        nn.Flatten(), nn.Linear(8 * 3 * 3, 4),
    )  # fmt: skip
    shapes = layer_shapes(model, torch.zeros(1, 3, 10, 10))
    assert shapes["0"].size == (10, 10) and shapes["0"].stride == (2, 2)
    assert shapes["2"].depthwise and shapes["2"].size == (5, 5) and shapes["4"].kind == "linear"
    for name, (w_in, w_out) in {"0": (3, 4), "2": (4, 4), "4": (72, 4)}.items():
        path = onnx_layer(shapes[name], w_in, w_out, tmp_path / f"{name}.onnx")
        sess = session(path)
        spec = sess.get_inputs()[0]
        out = sess.run(None, {spec.name: np.zeros(spec.shape, np.float32)})[0]
        assert out.shape[:2] == (1, w_out)
