"""TFLite export of quantization-aware models, and what it refuses (one line, no partial file)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import deepshrink as ds
from deepshrink.errors import ConfigError, FormatError
from deepshrink.export.onnx import ExportError
from deepshrink.quantize import QuantAwareTraining, prepare_qat_

pytest.importorskip("litert_torch", reason="the tflite extra is not installed "
                    "(pip install 'deepshrink[tflite]')")  # fmt: skip
pytest.importorskip("ai_edge_litert", reason="the tflite extra is not installed")

from deepshrink.export.tflite import export_tflite, interpreter, predict_tflite  # noqa: E402

EXAMPLE = torch.rand(1, 1, 8, 8)


def tiny() -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(),
                         nn.Linear(4 * 64, 10))  # fmt: skip


class Spectral(nn.Module):
    """A layer whose op (singular values) the TFLite converter has no lowering for."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.linalg.svdvals(x.reshape(x.shape[0], 2, 5))


class WithSpectral(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(64, 10)
        self.spectrum = Spectral()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.spectrum(self.fc(x.flatten(1)))


def test_full_int8_without_calibration_is_refused_before_converting(tmp_path):
    with pytest.raises(ConfigError, match="needs calibration= data"):
        export_tflite(tiny(), tmp_path / "m.tflite", int8=True, example_inputs=EXAMPLE)
    assert not list(tmp_path.iterdir())


def test_int8_and_fp16_together_and_onnx_options_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="choose one of int8= and fp16="):
        export_tflite(tiny(), tmp_path / "m.tflite", int8="dynamic", fp16=True)
    with pytest.raises(ConfigError, match=r"does not take \['opset'\]"):
        ds.export(tiny(), tmp_path / "m.tflite", opset=17, example_inputs=EXAMPLE)
    with pytest.raises(ConfigError, match="weight_bits"):
        export_tflite(tiny(), tmp_path / "m.tflite", weight_bits=4, example_inputs=EXAMPLE)


def test_an_op_without_lowering_is_one_line_naming_the_op_and_the_layer(tmp_path):
    with pytest.raises(ExportError) as caught:
        export_tflite(WithSpectral().eval(), tmp_path / "m.tflite", example_inputs=EXAMPLE)
    message = str(caught.value)
    assert "\n" not in message
    assert "svd" in message and "spectrum (Spectral)" in message
    assert not list(tmp_path.iterdir())


def test_an_unwritable_path_is_an_error_and_leaves_no_file(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(ConfigError, match="cannot write the TFLite file"):
        export_tflite(tiny().eval(), blocker / "m.tflite", example_inputs=EXAMPLE)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_a_file_that_is_not_tflite_is_a_format_error(tmp_path):
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"\x00" * 64)
    with pytest.raises(FormatError, match="not a TFLite file"):
        interpreter(bad)
    with pytest.raises(FormatError, match="does not exist"):
        predict_tflite(tmp_path / "missing.tflite", np.zeros((1, 1, 8, 8), np.float32))


def test_a_qat_model_exports_as_full_int8_on_its_trained_weight_grid(tmp_path):
    digits = ds.data.load("digits")
    torch.manual_seed(0)
    model = tiny()
    ds.fit(model, digits, epochs=1, lr=0.05, batch_size=32, threads=1, progress=False)
    prepare_qat_(model.eval(), QuantAwareTraining(), calibration=digits)
    with pytest.raises(ConfigError, match="quantization-aware"):
        export_tflite(model, tmp_path / "f.tflite", example_inputs=EXAMPLE)
    path = export_tflite(model, tmp_path / "q.tflite", int8=True, calibration=digits,
                         example_inputs=EXAMPLE)  # fmt: skip
    x = digits.test.without_transform().batch(torch.arange(128))[0]
    with torch.no_grad():
        expected = model(x).numpy()
    got = predict_tflite(path, x)
    assert (got.argmax(1) == expected.argmax(1)).mean() >= 0.95
    assert np.abs(got - expected).max() <= 0.1 * (expected.max() - expected.min())
    assert ds.quantize.qat.qat_layers(model)  # the model itself is not changed
    fc = model[3]
    trained_grid = fc.weight_quantizer(fc.weight).detach().numpy()
    np.testing.assert_array_equal(_int8_weight(path, trained_grid.shape), trained_grid)


def _int8_weight(path, shape) -> np.ndarray:
    """The int8 constant of ``shape`` in the TFLite file, times its per-channel scales."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(bytearray(path.read_bytes()), 0)
    for tensor in model.subgraphs[0].tensors:
        data = model.buffers[tensor.buffer].data
        if tensor.type == schema.TensorType.INT8 and list(tensor.shape) == list(shape):
            codes = np.frombuffer(bytes(data), np.int8).reshape(shape).astype(np.float32)
            return codes * np.asarray(tensor.quantization.scale, np.float32).reshape(-1, 1)
    raise AssertionError(f"no int8 tensor of shape {shape}")
