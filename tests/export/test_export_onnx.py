"""ONNX export: the file runs in ONNX Runtime and predicts what the torch model predicts."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from torch import nn

import deepshrink as ds
from deepshrink.errors import ConfigError
from deepshrink.export import (
    ExportError,
    compare_latency,
    evaluate_onnx,
    optimized_ops,
    predict,
)
from deepshrink.quantize.calibration import calibration_batches
from deepshrink.train import evaluate


class TinyConv(nn.Module):
    """Conv → BN → ReLU → pool → linear on 8x8 digits: every op the quantizer rewrites."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2)
        )
        self.classifier = nn.Linear(8 * 4 * 4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).flatten(1))


@pytest.fixture(scope="module")
def digits() -> ds.data.Data:
    return ds.data.load("digits")


@pytest.fixture(scope="module")
def trained(digits: ds.data.Data) -> nn.Module:
    torch.manual_seed(0)
    model = TinyConv()
    ds.fit(model, digits, epochs=2, lr=0.05, batch_size=32, threads=1, progress=False)
    return model.eval()


@pytest.fixture(scope="module")
def files(trained: nn.Module, digits: ds.data.Data, tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("onnx")
    kinds = {"fp32": {}, "fp16": {"fp16": True}, "dynamic": {"int8": "dynamic"},
             "static": {"int8": True, "calibration": digits}}  # fmt: skip
    example = torch.rand(1, 1, 8, 8)
    return {
        name: ds.export(trained, folder / f"{name}.onnx", example_inputs=example, **kw)
        for name, kw in kinds.items()
    }


def _torch_logits(model: nn.Module, x: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return model(x).numpy()


def test_fp32_outputs_match_torch_at_any_batch_size(trained, files, digits) -> None:
    for size in (1, 7, 64):
        x = digits.test.batch(torch.arange(size))[0]
        out = predict(files["fp32"], x)
        assert out.shape == (size, 10)
        np.testing.assert_allclose(out, _torch_logits(trained, x), rtol=1e-4, atol=1e-4)


def test_fp32_accuracy_in_onnx_runtime_equals_torch(trained, files, digits) -> None:
    onnx_result = evaluate_onnx(files["fp32"], digits.test)
    assert onnx_result.top1 == pytest.approx(evaluate(trained, digits.test).top1)
    assert onnx_result.count == len(digits.test)


@pytest.mark.parametrize(("kind", "agreement"), [("static", 0.95), ("dynamic", 0.95)])
def test_int8_predictions_agree_with_torch(trained, files, digits, kind, agreement) -> None:
    x = digits.test.batch(torch.arange(len(digits.test)))[0]
    expected = _torch_logits(trained, x).argmax(1)
    got = predict(files[kind], x).argmax(1)
    assert (got == expected).mean() >= agreement
    assert evaluate(trained, digits.test).top1 > 0.8  # the oracle itself is a real classifier


def test_int8_graph_is_qdq_with_integer_weights(files) -> None:
    import onnx

    graph = onnx.load(files["static"]).graph
    ops = {node.op_type for node in graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    types = {i.name: i.data_type for i in graph.initializer}
    weights = [i.data_type for i in graph.initializer if len(i.dims) >= 2]
    # 8-bit weights stored as uint8 (zero point 128: U8U8 kernels, exact on AVX2 CPUs)
    assert weights and all(t == onnx.TensorProto.UINT8 for t in weights)
    assert not any(t == onnx.TensorProto.FLOAT and "weight" in n and i.dims
                   for n, t in types.items() for i in graph.initializer if i.name == n
                   if np.prod(i.dims) > 16)  # fmt: skip


def test_static_int8_runs_integer_kernels_in_onnx_runtime(files) -> None:
    ops = optimized_ops(files["static"])
    assert ops.get("QLinearConv") == 1 and "Conv" not in ops  # the convolution is int8
    assert "QLinearConv" not in optimized_ops(files["fp32"])


def test_files_shrink_with_the_weight_precision(tmp_path) -> None:
    model = nn.Sequential(nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 10))
    x = torch.rand(64, 128)
    size = {
        name: os.path.getsize(ds.export(model, tmp_path / f"{name}.onnx", example_inputs=x, **kw))
        for name, kw in {
            "fp32": {},
            "fp16": {"fp16": True},
            "dynamic": {"int8": "dynamic"},
            "static": {"int8": True, "calibration": x},
        }.items()  # fmt: skip
    }
    weights = 128 * 128 + 128 * 10
    assert size["fp32"] > 4 * weights
    assert size["fp32"] - size["fp16"] > 0.95 * 2 * weights
    # int8 saves 3 of every 4 weight bytes, less per-channel scales and (dynamic) float biases
    assert size["fp32"] - size["static"] > 0.9 * 3 * weights
    assert size["fp32"] - size["dynamic"] > 0.9 * 3 * weights


def test_fp16_weights_give_close_outputs(trained, files, digits) -> None:
    x = digits.test.batch(torch.arange(32))[0]
    np.testing.assert_allclose(predict(files["fp16"], x), _torch_logits(trained, x),
                               rtol=1e-2, atol=1e-2)  # fmt: skip


def test_export_leaves_the_model_alone(trained, tmp_path) -> None:
    model = TinyConv().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    ds.export(model, tmp_path / "m.onnx", example_inputs=torch.rand(1, 1, 8, 8))
    assert model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert [p.name for p in tmp_path.iterdir()] == ["m.onnx"]  # no temporary file left


def test_static_int8_without_calibration_is_a_config_error(trained, tmp_path) -> None:
    with pytest.raises(ConfigError, match="needs calibration= data"):
        ds.export(trained, tmp_path / "m.onnx", int8=True, example_inputs=torch.rand(1, 1, 8, 8))
    assert not (tmp_path / "m.onnx").exists()


def test_bad_arguments_are_config_errors(trained, tmp_path) -> None:
    with pytest.raises(ConfigError, match="choose one of int8= and fp16="):
        ds.export(trained, tmp_path / "m.onnx", int8=True, fp16=True)
    with pytest.raises(ConfigError, match="needs example_inputs="):
        ds.export(trained, tmp_path / "m.onnx")
    with pytest.raises(ConfigError, match="OnnxExport.activations"):
        ds.export(trained, tmp_path / "m.onnx", activations="int4")
    with pytest.raises(ConfigError, match="int_8: Extra inputs are not permitted"):
        ds.export(trained, tmp_path / "m.onnx", int_8=True)


class Unexportable(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.histc(x, bins=4)  # no ONNX operator for histc


def test_unsupported_model_raises_export_error(tmp_path) -> None:
    with pytest.raises(ExportError, match="could not export Unexportable.*histc"):
        ds.export(Unexportable(), tmp_path / "m.onnx", example_inputs=torch.rand(2, 3))
    assert not (tmp_path / "m.onnx").exists()


def test_calibration_accepts_data_datasets_tensors_and_batches(digits) -> None:
    from_data = calibration_batches(digits, samples=10, batch_size=4)
    assert [b.shape for b in from_data] == [(4, 1, 8, 8), (4, 1, 8, 8), (2, 1, 8, 8)]
    pairs = [digits.train.batch(torch.arange(i, i + 3)) for i in range(0, 9, 3)]
    from_pairs = calibration_batches(iter(pairs), samples=7, batch_size=8)
    np.testing.assert_array_equal(from_pairs[0], torch.cat([p[0] for p in pairs])[:7].numpy())
    tensor = torch.rand(5, 2)
    np.testing.assert_array_equal(calibration_batches(tensor)[0], tensor.numpy())
    with pytest.raises(ConfigError, match="calibration data is empty"):
        calibration_batches([])
    with pytest.raises(ConfigError, match="calibration must be"):
        calibration_batches(3)


def test_compare_latency_times_every_file_at_every_batch(files) -> None:
    chosen = {k: files[k] for k in ("fp32", "static")}
    times = compare_latency(chosen, (1, 8, 8), batch_sizes=(1, 4), rounds=2, block_seconds=0.01)
    assert set(times) == set(chosen)
    assert all(set(t) == {1, 4} and t[4].batch_size == 4 for t in times.values())
    with pytest.raises(ConfigError, match="rounds must be"):
        compare_latency(chosen, (1, 8, 8), rounds=0)


def test_dynamo_exporter_matches_torch(trained, digits, tmp_path) -> None:
    pytest.importorskip("onnxscript")
    path = ds.export(trained, tmp_path / "d.onnx", exporter="dynamo",
                     example_inputs=torch.rand(1, 1, 8, 8))  # fmt: skip
    x = digits.test.batch(torch.arange(5))[0]
    np.testing.assert_allclose(predict(path, x), _torch_logits(trained, x), rtol=1e-4, atol=1e-4)
