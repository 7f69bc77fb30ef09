"""Export to TFLite and run the file in the LiteRT interpreter.

``export_tflite`` (also reached as ``ds.export(model, "m.tflite", ...)``) converts the model with
Google's ``litert-torch`` and quantizes the flatbuffer with the AI Edge Quantizer
(:mod:`deepshrink.export._tflite_convert`): fp32, fp16 weights, dynamic-range int8
(``int8="dynamic"``) and full-integer int8 (``int8=True``/``"static"``, calibrated on
``calibration`` data). The file has the fixed input shapes of ``example_inputs`` (a batch of
one by default, what a phone or microcontroller runs); the layout stays the model's (NCHW, the
converter adds the transposes). ``interpreter``, ``predict_tflite``, ``evaluate_tflite``,
``runner`` and ``describe_tflite`` run and inspect the file. Everything needs the optional extra
(``pip install 'deepshrink[tflite]'``), imported only inside these functions.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn

from deepshrink._io import atomic_write_bytes
from deepshrink.errors import ConfigError, FormatError
from deepshrink.export import _model
from deepshrink.export import _tflite_convert as _convert
from deepshrink.graph.io import split
from deepshrink.quantize.calibration import input_batches
from deepshrink.train.evaluation import EvalResult

__all__ = [
    "describe_tflite",
    "evaluate_tflite",
    "export_tflite",
    "interpreter",
    "predict_tflite",
    "runner",
]

Source = str | os.PathLike[str] | Any  # a path or a LiteRT Interpreter
#: Calibration samples for full-integer int8 (as for ONNX).
CALIBRATION_SAMPLES = 256


def _precision(int8: bool | str, fp16: bool) -> str:
    if int8 not in (False, True, "static", "dynamic"):
        raise ConfigError(f"int8 must be False, True, 'static' or 'dynamic'; got {int8!r}")
    if int8 is not False and fp16:
        raise ConfigError("choose one of int8= and fp16=, not both (an int8 model keeps no "
                          "float weights)")  # fmt: skip
    if int8 == "dynamic":
        return "int8_dynamic"
    return "int8" if int8 else ("fp16" if fp16 else "fp32")


def export_tflite(
    model: nn.Module,
    path: str | Path,
    *,
    int8: bool | Literal["static", "dynamic"] = False,
    fp16: bool = False,
    calibration: Any = None,
    example_inputs: Any = None,
    select: str | int | None = None,
    weight_bits: Literal[8, 4] = 8,
) -> Path:
    """Write ``model`` as a TFLite file at ``path`` (atomically) and return the path.

    ``int8``/``fp16``/``calibration``/``example_inputs``/``select`` mean what they mean for
    the ONNX :func:`~deepshrink.export.onnx.export`; full-integer int8 needs ``calibration``
    (256 samples are used). ``weight_bits=4`` stores int4 weights (int8 modes only). A model
    prepared for quantization-aware training is written with its trained weight grid and
    calibrated activation ranges: full int8 only, calibration data required (the converter
    does not carry the trained activation scales). The model is not changed.
    """
    precision = _precision(int8, fp16)
    if not isinstance(model, nn.Module):
        raise ConfigError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if weight_bits not in (8, 4) or (weight_bits == 4 and not precision.startswith("int8")):
        raise ConfigError(f"weight_bits must be 8, or 4 with int8=True or 'dynamic'; got "
                          f"{weight_bits} with {precision}")  # fmt: skip
    model = _float_copy(model, precision)
    if precision == "int8" and calibration is None:
        raise ConfigError(
            "int8=True (full-integer TFLite) needs calibration= data to measure activation "
            "ranges, e.g. calibration=data.train; or use int8='dynamic', which needs none"
        )
    _check_writable(Path(path))
    example = _model.example(model, example_inputs, calibration)
    wrapped, args = _model.wrapped(model, example, select)
    for parameter in wrapped.parameters():
        parameter.requires_grad_(False)
    data = _convert.float_model(wrapped, args)
    if precision != "fp32":
        calib = _calibration(calibration, args) if precision == "int8" else None
        data = _convert.quantized(data, precision, calib, weight_bits)
    try:
        atomic_write_bytes(path, data)
    except OSError as exc:
        raise ConfigError(f"cannot write the TFLite file {path}: {exc.strerror or exc}; choose "
                          "a writable path") from None  # fmt: skip
    return Path(path)


def _check_writable(path: Path) -> None:
    """Refuse before converting a path whose nearest existing parent is no writable folder."""
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if path.is_dir() or not parent.is_dir() or not os.access(parent, os.W_OK):
        raise ConfigError(f"cannot write the TFLite file {path}: {parent} is not a writable "
                          "folder; choose a writable path")  # fmt: skip


def _float_copy(model: nn.Module, precision: str) -> nn.Module:
    """``model``, or a copy the converter takes: k-means layers unshared (their weights are the
    codebook values), a quantization-aware model as a float model on its trained weight grid."""
    import copy

    from deepshrink.quantize import convert_qat_
    from deepshrink.quantize.qat import qat_layers
    from deepshrink.quantize.shared import is_shared, unshare_model_

    qat = bool(qat_layers(model))
    if qat and precision != "int8":
        raise ConfigError(
            "this model is prepared for quantization-aware training; export it with int8=True "
            "(full-integer TFLite), or call deepshrink.quantize.convert_qat_(model) first for "
            f"a float model (got precision {precision!r})"
        )
    shared = any(is_shared(layer) for layer in model.modules())
    if not (qat or shared):
        return model
    model = copy.deepcopy(model)
    if qat:
        convert_qat_(model)
    return unshare_model_(model) if shared else model


def _calibration(calibration: Any, args: tuple) -> list[tuple[np.ndarray, ...]]:
    """Calibration batches of the file's fixed batch size, as tuples of NumPy arrays."""
    size = int(args[0].shape[0]) if args[0].ndim else 1
    found = input_batches(calibration, samples=CALIBRATION_SAMPLES, batch_size=max(size, 1))
    out = []
    for batch in found:
        values = _positional(batch)
        values = [_padded(v.numpy(), size) for v in values]
        out.append(tuple(values))
    return out


def _positional(batch: Any) -> list[Tensor]:
    values, kwargs = split(batch)
    return [*values, *(v for v in kwargs.values() if isinstance(v, Tensor))]


def _padded(array: np.ndarray, size: int) -> np.ndarray:
    """``array`` with its first axis cut or padded (repeating its last row) to ``size``."""
    if array.shape[0] >= size:
        return array[:size]
    extra = np.repeat(array[-1:], size - array.shape[0], axis=0)
    return np.concatenate([array, extra])


def interpreter(path: str | os.PathLike[str], *, threads: int = 1) -> Any:
    """A LiteRT interpreter of the file at ``path`` with ``threads`` threads, tensors allocated.

    A file that is missing or not a TFLite flatbuffer raises :class:`FormatError`.
    """
    if threads < 1:
        raise ConfigError(f"threads must be at least 1, got {threads}")
    if not os.path.isfile(path):
        raise FormatError(f"TFLite file {path} does not exist")
    with open(path, "rb") as f:
        head = f.read(8)
    if len(head) < 8 or head[4:8] != b"TFL3":
        raise FormatError(f"{path} is not a TFLite file (no 'TFL3' identifier at byte 4); "
                          "export one with deepshrink.export.export_tflite")  # fmt: skip
    interpreter_class = _convert.runtime()
    try:
        with _convert.quiet():
            result = interpreter_class(model_path=str(path), num_threads=threads)
            result.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        raise FormatError(f"the LiteRT interpreter cannot load {path}: {exc}") from None
    return result


def _interpreter(source: Source, threads: int) -> Any:
    if isinstance(source, (str, os.PathLike)):
        return interpreter(source, threads=threads)
    return source


def _to_file(array: np.ndarray, detail: dict) -> np.ndarray:
    """``array`` in the input's dtype: quantized with the file's scale and zero point."""
    dtype = np.dtype(detail["dtype"])
    scale, zero = detail["quantization"]
    if np.issubdtype(dtype, np.integer) and scale and np.issubdtype(array.dtype, np.floating):
        info = np.iinfo(dtype)
        return np.clip(np.rint(array / scale) + zero, info.min, info.max).astype(dtype)
    return array.astype(dtype, copy=False)


def _from_file(array: np.ndarray, detail: dict) -> np.ndarray:
    scale, zero = detail["quantization"]
    if np.issubdtype(array.dtype, np.integer) and scale:
        return (array.astype(np.float32) - zero) * np.float32(scale)
    return array


def _arrays(x: Any) -> list[np.ndarray]:
    values = list(x) if isinstance(x, (tuple, list)) else [x]
    return [v.detach().cpu().numpy() if isinstance(v, Tensor) else np.asarray(v) for v in values]


def predict_tflite(source: Source, x: Any, *, threads: int = 1) -> np.ndarray:
    """The first output of the TFLite model for the batch ``x`` (a tensor or array in the
    model's layout; a tuple for several inputs) as float32, run in the file's batch size."""
    runner_ = _interpreter(source, threads)
    inputs, output = runner_.get_input_details(), runner_.get_output_details()[0]
    arrays = _arrays(x)
    if len(arrays) != len(inputs):
        raise ConfigError(f"the TFLite model takes {len(inputs)} inputs; got {len(arrays)}")
    size = int(inputs[0]["shape"][0]) if len(inputs[0]["shape"]) else 1
    total = arrays[0].shape[0]
    results = []
    for start in range(0, total, size):
        chunk = [_padded(a[start : start + size], size) for a in arrays]
        for detail, value in zip(inputs, chunk, strict=True):
            if tuple(value.shape) != tuple(detail["shape"]):
                raise ConfigError(f"input {detail['name']!r} of the TFLite model has shape "
                                  f"{tuple(detail['shape'])}; got samples of shape "
                                  f"{tuple(value.shape[1:])}")  # fmt: skip
            runner_.set_tensor(detail["index"], _to_file(value, detail))
        runner_.invoke()
        out = _from_file(runner_.get_tensor(output["index"]), output)
        results.append(out[: min(size, total - start)].astype(np.float32, copy=False))
    return np.concatenate(results)


def evaluate_tflite(source: Source, dataset: Any, *, threads: int = 1) -> EvalResult:
    """Top-1/top-5 accuracy and cross-entropy of the TFLite classifier over ``dataset`` (as
    :func:`deepshrink.export.runtime.evaluate_onnx`)."""
    from deepshrink.export.runtime import score

    runner_ = _interpreter(source, threads)

    def logits(inputs: Any) -> Tensor:
        return torch.from_numpy(predict_tflite(runner_, _positional(inputs))).float()

    return score(logits, dataset, runtime="LiteRT")


def runner(source: Source, batch_size: int, *, threads: int = 1) -> Callable[[], None]:
    """A call that runs ONE inference on a fixed random input of ``batch_size`` (seeded).

    With ``threads=1`` the interpreter runs in the calling thread (for thread-CPU timing).
    """
    runner_ = _interpreter(source, threads)
    inputs = runner_.get_input_details()
    size = int(inputs[0]["shape"][0]) if len(inputs[0]["shape"]) else 1
    if batch_size != size:
        raise ConfigError(f"this TFLite file has a fixed batch size of {size}; export it with "
                          f"example inputs of batch {batch_size} to time that batch")  # fmt: skip
    generator = np.random.default_rng(0)
    for detail in inputs:
        value = generator.random(tuple(detail["shape"]), dtype=np.float32)
        runner_.set_tensor(detail["index"], _to_file(value, detail))
    invoke = runner_.invoke

    def run() -> None:
        invoke()

    return run


def describe_tflite(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Inputs and outputs (name, dtype, shape, quantization), op counts and constant tensor
    bytes by dtype of the TFLite file at ``path`` (for ``deepshrink inspect``)."""
    from deepshrink.export._tflite_describe import constants_and_ops

    runner_ = interpreter(path)
    ops, tensor_bytes = constants_and_ops(Path(path).read_bytes())
    return {
        "format": "tflite",
        "bytes": os.path.getsize(path),
        "inputs": [_io_entry(d) for d in runner_.get_input_details()],
        "outputs": [_io_entry(d) for d in runner_.get_output_details()],
        "ops": ops,
        "tensor_bytes": tensor_bytes,
    }


def _io_entry(detail: dict) -> dict[str, Any]:
    scale, zero = detail["quantization"]
    return {
        "name": detail["name"],
        "dtype": np.dtype(detail["dtype"]).name,
        "shape": [int(d) for d in detail["shape"]],
        "quantization": {"scale": float(scale), "zero_point": int(zero)} if scale else None,
    }
