"""Thin wrappers over ``onnxruntime.quantization`` and ``onnx`` used by :mod:`.onnx`.

Imported only when an fp16 or int8 export is asked for, so ``import deepshrink`` never loads
onnx or onnxruntime.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from deepshrink.export.onnx import OnnxExport

logger = logging.getLogger(__name__)

#: Float initializers with fewer values stay float32 in an fp16 export (biases of tiny layers).
FP16_MIN_SIZE = 16


def preprocess(source: Path, target: Path) -> None:
    """ONNX Runtime's recommended pre-quantization pass: graph optimisation + shape inference.

    Its symbolic shape inference fails on some graphs (``nn.MultiheadAttention``'s reshapes to a
    computed shape); those are pre-processed with ONNX's own shape inference instead.
    """
    from onnxruntime.quantization.shape_inference import quant_pre_process

    try:
        quant_pre_process(str(source), str(target))
    except Exception:  # ONNX Runtime's symbolic shape inference asserts on some graphs
        logger.info("symbolic shape inference failed; pre-processing with ONNX shape inference",
                    exc_info=logger.isEnabledFor(logging.DEBUG))  # fmt: skip
        quant_pre_process(str(source), str(target), skip_symbolic_shape=True)


def graph_inputs(path: Path) -> list[tuple[str, str]]:
    """``(name, type)`` of the graph inputs of the ONNX file, as ONNX Runtime names types."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    stored = {init.name for init in graph.initializer}
    kinds = {1: "float", 10: "float16", 11: "double", 7: "int64", 6: "int32", 5: "int16",
             3: "int8", 2: "uint8", 9: "bool"}  # fmt: skip
    return [(value.name, f"tensor({kinds.get(value.type.tensor_type.elem_type, '?')})")
            for value in graph.input if value.name not in stored]  # fmt: skip


def _reader(batches: list[Any], inputs: list[tuple[str, str]]):  # noqa: ANN202 (made lazily)
    from onnxruntime.quantization import CalibrationDataReader

    from deepshrink.export.runtime import feed

    feeds = [feed(batch, inputs) for batch in batches]

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._items: Iterator[dict[str, np.ndarray]] = iter(feeds)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._items, None)

        def rewind(self) -> None:
            self._items = iter(feeds)

    return Reader()


def quantize_static(source: Path, target: Path, config: OnnxExport, batches: list[Any]) -> None:
    """QDQ static quantization: int8 weights (per channel), uint8 or int8 activations."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType
    from onnxruntime.quantization import quantize_static as ort_quantize_static

    methods = {
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
    }
    activation = QuantType.QUInt8 if config.activations == "uint8" else QuantType.QInt8
    with _quiet_axis_warnings():
        ort_quantize_static(
            str(source),
            str(target),
            _reader(batches, graph_inputs(source)),
            quant_format=QuantFormat.QDQ,
            per_channel=config.per_channel,
            activation_type=activation,
            weight_type=QuantType.QInt8,
            calibrate_method=methods[config.calibration_method],
        )


@contextlib.contextmanager
def _quiet_axis_warnings() -> Iterator[None]:
    """Drop the quantizer's root-logger warning, repeated per call, that a per-channel axis does
    not apply to a 1-D weight such as LayerNorm's (that weight is then quantized per tensor)."""

    def keep(record: logging.LogRecord) -> bool:
        return "is out-of-range for weight" not in record.getMessage()

    root = logging.getLogger()
    root.addFilter(keep)
    try:
        yield
    finally:
        root.removeFilter(keep)


def quantize_dynamic(source: Path, target: Path, config: OnnxExport) -> None:
    """Dynamic quantization: int8 weights, activations quantized per batch at run time."""
    from onnxruntime.quantization import QuantType
    from onnxruntime.quantization import quantize_dynamic as ort_quantize_dynamic

    ort_quantize_dynamic(
        str(source), str(target), per_channel=config.per_channel, weight_type=QuantType.QInt8
    )


def weights_to_fp16(source: Path, target: Path) -> None:
    """Store float32 initializers as float16, each followed by a ``Cast`` back to float32.

    Values beyond float16's range saturate at ±65504. Inputs, outputs and arithmetic stay fp32,
    so every ONNX Runtime CPU kernel still applies.
    """
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(source))
    graph = model.graph
    kept, casts = [], []
    for init in graph.initializer:
        values = numpy_helper.to_array(init)
        if values.dtype != np.float32 or values.size < FP16_MIN_SIZE:
            kept.append(init)
            continue
        limit = np.finfo(np.float16).max
        half = np.clip(values, -limit, limit).astype(np.float16)
        kept.append(numpy_helper.from_array(half, f"{init.name}__fp16"))
        cast = helper.make_node(
            "Cast", [f"{init.name}__fp16"], [init.name], to=onnx.TensorProto.FLOAT
        )
        casts.append(cast)
    del graph.initializer[:]
    graph.initializer.extend(kept)
    nodes = casts + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)
    onnx.checker.check_model(model)
    onnx.save(model, str(target))
