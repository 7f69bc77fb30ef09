"""A quantization-aware model exports as QDQ int8 with its own scales and runs in ONNX Runtime."""

from __future__ import annotations

import copy

import numpy as np
import onnx
import pytest
import torch
from torch import nn

import deepshrink as ds
from deepshrink.errors import ConfigError
from deepshrink.export import optimized_ops, predict
from deepshrink.quantize import QuantAwareTraining, prepare_qat_


class TinyConvBN(nn.Module):
    """conv → BN → ReLU → conv → BN → ReLU → linear on 8×8 digits."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(1, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8)
        self.conv2, self.bn2 = nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8)
        self.fc = nn.Linear(8 * 8 * 8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(self.bn2(self.conv2(x)))
        return self.fc(x.flatten(1))


@pytest.fixture(scope="module")
def digits() -> ds.data.Data:
    return ds.data.load("digits")


@pytest.fixture(scope="module")
def qat_model(digits) -> nn.Module:
    torch.manual_seed(0)
    model = TinyConvBN()
    ds.fit(model, digits, epochs=2, lr=0.05, batch_size=32, threads=1, progress=False)
    prepare_qat_(model.eval(), QuantAwareTraining(), calibration=digits)
    ds.fit(model, digits, epochs=1, lr=0.01, batch_size=32, threads=1, progress=False)
    return model.eval()


@pytest.fixture(scope="module")
def exported(qat_model, tmp_path_factory):
    folder = tmp_path_factory.mktemp("qat")
    example = torch.rand(1, 1, 8, 8)
    return {
        "int8": ds.export(qat_model, folder / "qat.onnx", int8=True, example_inputs=example),
        "fp32": ds.export(
            ds.quantize.convert_qat_(copy.deepcopy(qat_model)),
            folder / "fp32.onnx",
            example_inputs=example,
        ),
    }


def _one_step_at_the_output(model: nn.Module) -> float:
    """How far one step of the last layer's input grid moves its output (the worst case)."""
    step = float(model.fc.input_quantizer.scale)
    weight = model.fc.weight_quantizer(model.fc.weight).detach()
    return step * float(weight.abs().sum(1).max())


def test_qat_forward_equals_the_onnx_runtime_int8_output_within_one_quantization_step(
    qat_model, exported, digits
):
    x = digits.test.without_transform().batch(torch.arange(256))[0]
    with torch.no_grad():
        expected = qat_model(x).numpy()
    got = predict(exported["int8"], x)
    difference = np.abs(got - expected).max()
    assert difference <= _one_step_at_the_output(qat_model)
    assert (got.argmax(1) == expected.argmax(1)).mean() >= 0.99


def test_the_last_layer_input_codes_of_onnx_runtime_and_qat_differ_by_at_most_one_step(
    qat_model, exported, digits, tmp_path
):
    graph_path = tmp_path / "tapped.onnx"
    model = onnx.load(str(exported["int8"]))
    gemm = next(node for node in model.graph.node if node.op_type == "Gemm")
    model.graph.output.append(
        onnx.helper.make_tensor_value_info(gemm.input[0], onnx.TensorProto.FLOAT, None)
    )
    onnx.save(model, str(graph_path))
    import onnxruntime as ort

    x = digits.test.without_transform().batch(torch.arange(256))[0]
    session = ort.InferenceSession(str(graph_path), providers=["CPUExecutionProvider"])
    runtime = session.run([gemm.input[0]], {"input": x.numpy()})[0]
    seen = []
    hook = qat_model.fc.register_forward_hook(
        lambda m, args, out: seen.append(m.input_quantizer(args[0]).detach())
    )
    with torch.no_grad():
        qat_model(x)
    hook.remove()
    step = float(qat_model.fc.input_quantizer.scale)
    codes = np.abs(runtime - seen[0].numpy()) / step
    assert codes.max() <= 1.0 + 1e-3
    assert (codes < 1e-3).mean() >= 0.99


def test_the_int8_file_stores_its_weights_in_a_quarter_of_the_bytes(exported):
    """Stored as uint8 with zero point 128 (U8U8 kernels, which do not saturate on AVX2)."""
    graph = onnx.load(str(exported["int8"])).graph
    types = {init.name: init.data_type for init in graph.initializer}
    weights = [init for init in graph.initializer if len(init.dims) >= 2]
    assert weights and all(init.data_type == onnx.TensorProto.UINT8 for init in weights), types
    assert not any(
        node.op_type == "QuantizeLinear" and node.input[0] in types for node in graph.node
    )
    float_graph = onnx.load(str(exported["fp32"])).graph
    ratio = _tensor_bytes(float_graph) / _tensor_bytes(graph)
    assert ratio > 3.5
    assert exported["fp32"].stat().st_size > 2 * exported["int8"].stat().st_size


def _tensor_bytes(graph) -> int:
    """Bytes of the stored tensors: initializers and Constant nodes."""
    sizes = [len(init.raw_data) for init in graph.initializer]
    sizes += [len(n.attribute[0].t.raw_data) for n in graph.node if n.op_type == "Constant"]
    return sum(sizes)


def test_onnx_runtime_runs_the_convolutions_as_integer_kernels(exported):
    ops = optimized_ops(exported["int8"])
    assert ops.get("QLinearConv", 0) >= 1, ops


def test_a_qat_model_exports_only_as_int8(qat_model, tmp_path):
    with pytest.raises(ConfigError, match="int8=True"):
        ds.export(qat_model, tmp_path / "m.onnx", example_inputs=torch.rand(1, 1, 8, 8))
    assert not (tmp_path / "m.onnx").exists()


def test_a_4_bit_qat_model_is_refused_by_the_8_bit_format(digits, tmp_path):
    model = prepare_qat_(
        TinyConvBN().eval(), QuantAwareTraining(weights={"bits": 4}), calibration=digits
    )
    with pytest.raises(ConfigError, match="trained at 4 bits"):
        ds.export(model, tmp_path / "m.onnx", int8=True, example_inputs=torch.rand(1, 1, 8, 8))


def _int8_weights(path) -> list[np.ndarray]:
    """The signed weight codes of a file (uint8 codes with zero point 128 shifted back)."""
    from onnx import numpy_helper

    graph = onnx.load(str(path)).graph
    arrays = [numpy_helper.to_array(init) for init in graph.initializer]
    codes = [a.astype(np.int16) - 128 if a.dtype == np.uint8 else a for a in arrays]
    kept = [c for a, c in zip(arrays, codes, strict=True) if a.dtype in (np.int8, np.uint8)]
    return sorted((c for c in kept if c.ndim >= 2), key=lambda a: a.shape)


def test_onnx_runtime_quantizer_keeps_the_trained_per_tensor_weights_exactly(digits, tmp_path):
    """The fast path for residual networks: convert_qat_ then ONNX Runtime's own quantizer."""
    torch.manual_seed(0)
    model = prepare_qat_(TinyConvBN().eval(), QuantAwareTraining(weights={"granularity": "tensor"}),
                         calibration=digits).eval()  # fmt: skip
    example = torch.rand(1, 1, 8, 8)
    ours = ds.export(model, tmp_path / "qat.onnx", int8=True, example_inputs=example)
    float_twin = ds.quantize.convert_qat_(copy.deepcopy(model))
    theirs = ds.export(float_twin, tmp_path / "ort.onnx", int8=True, per_channel=False,
                       calibration=digits, example_inputs=example)  # fmt: skip
    mine, runtime = _int8_weights(ours), _int8_weights(theirs)
    assert [a.shape for a in mine] == [a.shape for a in runtime] and len(mine) == 3
    for a, b in zip(mine, runtime, strict=True):
        np.testing.assert_array_equal(a.reshape(a.shape[0], -1), b.reshape(b.shape[0], -1))
