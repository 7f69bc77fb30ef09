"""Export to ONNX: fp32, fp16 weights, dynamic int8 and static (QDQ) int8 run by ONNX Runtime.

The float graph comes from :func:`torch.onnx.export`. The default ``exporter="auto"`` tries
PyTorch's TorchScript-based exporter (milliseconds on small models; PyTorch marks it deprecated,
the warning is silenced here), then, if it fails, the ``torch.export``-based one (``"dynamo"``,
needs ``onnxscript``); either can be chosen alone. Both give a dynamic batch axis on every input
(``dynamic_batch=True``). Inputs keep their dtype (token ids stay int64) and structure: a tuple
becomes inputs ``input``, ``input_1``, …, a dict of keyword inputs one input per key. The one
output is the prediction, picked by :func:`deepshrink.graph.io.logits_of` (``select``).

Quantization is ONNX Runtime's own quantizer (``onnxruntime.quantization``), not ours:

- ``int8=True`` / ``"static"``: QDQ static quantization calibrated on ``calibration`` data.
  The exporter first runs ``quant_pre_process`` (ONNX Runtime's graph optimisation and shape
  inference), then quantizes weights to int8 per output channel and activations to **uint8**
  (U8S8). Measured on ResNet-20 on an x86 CPU with AVX-512 VNNI (``benchmarks/ptq_onnx.py``,
  ``docs/export.md``): pre-processed U8S8 runs all 19 convolutions as ``QLinearConv`` in about
  45 % of the fp32 time; int8 activations (S8S8) fuse 9 of 19 and take about 120 %; skipping the
  pre-processing leaves convolutions whose bias the exporter routed through an ``Identity``
  node in float (3 of 19 fused, about 175 %, on an untrained network). So the fast
  configuration is the default; ``preprocess`` and ``activations`` stay settable to reproduce
  the measurement.
- ``int8="dynamic"``: weights int8, activations quantized on the fly (no calibration needed).
- int8 weights are then stored as uint8 with zero point 128 (``weights="uint8"``, the same
  values): ONNX Runtime runs U8U8 kernels, exact on every x86 CPU, where its U8S8 kernels
  saturate on CPUs without AVX-512 VNNI (see :mod:`deepshrink.export._qdq`).
- ``fp16=True``: weights stored as float16 with a ``Cast`` to float32 in front of each (half the
  file; the arithmetic stays fp32, as TFLite's float16 quantization on CPUs).

>>> import tempfile, pathlib, torch
>>> from torch import nn
>>> model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
>>> path = export(model, pathlib.Path(tempfile.mkdtemp()) / "m.onnx",
...               example_inputs=torch.rand(1, 4))
>>> path.stat().st_size > 0
True
"""

from __future__ import annotations

import logging
import re
import tempfile
import warnings
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field, model_validator
from torch import nn

from deepshrink._config import MethodConfig
from deepshrink._io import atomic_write_bytes
from deepshrink.errors import ConfigError, DeepshrinkError
from deepshrink.export import _model
from deepshrink.graph.io import map_tensors
from deepshrink.quantize.calibration import calibration_batches

__all__ = ["ExportError", "OnnxExport", "export"]

logger = logging.getLogger(__name__)


class ExportError(DeepshrinkError):
    """The model could not be turned into an ONNX graph (or quantized)."""


class OnnxExport(MethodConfig):
    """Settings of :func:`export`; see the module docstring for what each precision means.

    >>> OnnxExport(int8=True).precision, OnnxExport(int8="dynamic").precision
    ('int8', 'int8_dynamic')
    >>> OnnxExport(int8=True, fp16=True)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    deepshrink.errors.ConfigError: OnnxExport: choose one of int8= and fp16=, ...
    """

    int8: bool | Literal["static", "dynamic"] = False
    fp16: bool = False
    exporter: Literal["auto", "torchscript", "dynamo"] = "auto"
    select: str | int | None = None
    opset: int = Field(17, ge=13, le=21)
    dynamic_batch: bool = True
    dynamic_sequence: bool = False
    input_name: str = "input"
    output_name: str = "output"
    calibration_samples: int = Field(256, ge=1)
    calibration_batch_size: int = Field(32, ge=1)
    calibration_method: Literal["minmax", "entropy", "percentile"] = "minmax"
    per_channel: bool = True
    activations: Literal["uint8", "int8"] = "uint8"
    weights: Literal["uint8", "int8"] = "uint8"
    preprocess: bool = True
    seed: int = 0

    @model_validator(mode="after")
    def _one_precision(self) -> OnnxExport:
        if self.int8 is not False and self.fp16:
            raise ValueError(
                "choose one of int8= and fp16=, not both (an int8 model keeps no float weights)"
            )
        return self

    @property
    def precision(self) -> str:
        """``"fp32"``, ``"fp16"``, ``"int8"`` (static) or ``"int8_dynamic"``."""
        if self.int8 == "dynamic":
            return "int8_dynamic"
        if self.int8:
            return "int8"
        return "fp16" if self.fp16 else "fp32"


def export(
    model: nn.Module,
    path: str | Path,
    *,
    int8: bool | Literal["static", "dynamic"] = False,
    fp16: bool = False,
    calibration: Any = None,
    example_inputs: Any = None,
    format: Literal["onnx", "tflite"] | None = None,
    **options: Any,
) -> Path:
    """Write ``model`` as an ONNX file at ``path`` (atomically) and return the path.

    A path ending in ``.tflite`` (or ``format="tflite"``) writes TFLite instead, through
    :func:`deepshrink.export.tflite.export_tflite` (``options``: ``select``, ``weight_bits``).

    ``example_inputs`` is a batch the model takes: a tensor, a tuple of positional inputs or a
    dict of keyword inputs (a tokenizer's output); dtypes are kept, so token ids stay integer
    inputs of the graph. The graph's inputs are named ``input`` (``input``, ``input_1``, … for a
    tuple; the keys of a dict) with a dynamic batch axis; its one output ``output`` is the
    model's prediction (``select``: default ``logits`` when the output has it, else its first
    tensor; a key or an index picks another).

    ``calibration`` (data, see :mod:`deepshrink.quantize.calibration`) is required for static
    int8, except for a model prepared by :func:`deepshrink.quantize.prepare_qat_`, which is
    written as QDQ int8 with its own trained scales. ``example_inputs`` default to
    ``model.example_inputs()`` (zoo models) or one calibration sample. ``options`` are the
    other fields of :class:`OnnxExport`. The model is not changed (a CPU float copy in eval
    mode is exported).
    """
    if format not in (None, "onnx", "tflite"):
        raise ConfigError(f"format must be 'onnx' or 'tflite', got {format!r}")
    if format == "tflite" or (format is None and Path(path).suffix.lower() == ".tflite"):
        return _tflite(model, path, int8, fp16, calibration, example_inputs, options)
    config = OnnxExport(int8=int8, fp16=fp16, **options)
    if not isinstance(model, nn.Module):
        raise ConfigError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    qat = _check_qat(model, config)
    if config.precision == "int8" and calibration is None and not qat:
        raise ConfigError(
            "int8=True (static quantization) needs calibration= data to measure activation "
            "ranges, e.g. calibration=data.train; or use int8='dynamic', which needs none"
        )
    batches = None
    if calibration is not None and config.precision == "int8" and not qat:
        batches = calibration_batches(
            calibration,
            samples=config.calibration_samples,
            batch_size=config.calibration_batch_size,
            seed=config.seed,
        )
    example = _model.example(model, example_inputs, calibration)
    with tempfile.TemporaryDirectory(prefix="deepshrink-onnx-") as tmp:
        float_path = Path(tmp) / "float.onnx"
        exporter = export_float(model, example, float_path, config)
        if config.dynamic_sequence:
            _check_sequence(model, example, float_path, config)
        final = _convert(float_path, Path(tmp), config, batches, qat=qat)
        atomic_write_bytes(path, final.read_bytes())
    logger.info("exported %s ONNX model to %s (%s exporter)", config.precision, path, exporter)
    return Path(path)


def _tflite(
    model: nn.Module, path: str | Path, int8: Any, fp16: bool, calibration: Any,
    example_inputs: Any, options: dict[str, Any],
) -> Path:  # fmt: skip
    """:func:`export` to TFLite; ONNX-only options are refused by name."""
    from deepshrink.export.tflite import export_tflite

    unknown = sorted(set(options) - {"select", "weight_bits"})
    if unknown:
        raise ConfigError(
            f"TFLite export does not take {unknown} (ONNX options); it takes int8, fp16, "
            "calibration, example_inputs, select and weight_bits"
        )
    return export_tflite(model, path, int8=int8, fp16=fp16, calibration=calibration,
                         example_inputs=example_inputs, **options)  # fmt: skip


def _check_qat(model: nn.Module, config: OnnxExport) -> bool:
    """Whether ``model`` is quantization-aware; if so, check it can be written as QDQ int8 with
    its own scales (no calibration, no ONNX Runtime quantizer) and refresh its weight grids."""
    from deepshrink.quantize.qat import qat_layers

    layers = qat_layers(model)
    if layers and config.precision != "int8":
        raise ConfigError(
            "this model is prepared for quantization-aware training; export it with int8=True "
            "(QDQ with its own scales), or call deepshrink.quantize.convert_qat_(model) first "
            f"for a float model (got precision {config.precision!r})"
        )
    for name, layer in layers.items():
        if not layer.weight_quantizer.learnable:
            layer.weight_quantizer.observe(layer.weight)  # the grid of the current weights
        for quantizer in (layer.weight_quantizer, layer.input_quantizer):
            if quantizer is not None and quantizer.scheme.bits != 8:
                raise ConfigError(
                    f"{name}: ONNX QDQ stores 8-bit integers; this layer is trained at "
                    f"{quantizer.scheme.bits} bits (evaluate it in PyTorch instead)"
                )
    return bool(layers)


def export_float(model: nn.Module, example: Any, path: Path, config: OnnxExport) -> str:
    """Write the fp32 graph of ``model``'s prediction at ``path``; return the exporter used.

    ``exporter="auto"`` tries the TorchScript exporter, then the dynamo one. A failure is one
    line (each exporter's reason); the full traces are logged at debug level.
    """
    wrapped, args = _model.wrapped(model, example, config.select)
    names = _model.input_names(example, config.input_name)
    order = ["torchscript", "dynamo"] if config.exporter == "auto" else [config.exporter]
    reasons = []
    for exporter in order:
        try:
            with warnings.catch_warnings(), torch.enable_grad():
                warnings.simplefilter("ignore")
                run = _dynamo if exporter == "dynamo" else _torchscript
                run(wrapped, args, path, config, names)
            return exporter
        except DeepshrinkError:
            raise
        except Exception as exc:  # torch raises many types for untraceable models
            logger.debug("the %s exporter failed on %s", exporter, type(model).__name__,
                         exc_info=True)  # fmt: skip
            reasons.append(f"{exporter} exporter: {_first_line(exc)}")
    advice = ("try exporter='dynamo'" if order == ["torchscript"]
              else "see the debug log for the full trace")  # fmt: skip
    raise ExportError(
        f"could not export {type(model).__name__} to ONNX ({'; '.join(reasons)}). Export needs "
        f"a forward pass of tensor operations returning a tensor, tuple, dict or ModelOutput; "
        f"{advice}, or simplify the model"
    ) from None


def _first_line(exc: BaseException) -> str:
    """The first line of the deepest cause of ``exc`` (what failed, not the exporter's step
    banner), without terminal colour codes, at most 300 characters."""
    seen = {id(exc)}
    while (cause := exc.__cause__ or exc.__context__) is not None and id(cause) not in seen:
        seen.add(id(cause))
        exc = cause
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).strip()
    line = text.splitlines()[0] if text else type(exc).__name__
    return line if len(line) <= 300 else line[:297] + "..."


def _torchscript(
    model: nn.Module, args: tuple, path: Path, config: OnnxExport, names: list[str]
) -> None:
    axes = {name: {0: "batch"} for name in [*names, config.output_name]}
    for name, value in zip(names, args, strict=True):
        if config.dynamic_sequence and _model.tokens(value):
            axes[name] = {0: "batch", 1: "sequence"}
    torch.onnx.export(model, args, str(path), dynamo=False, opset_version=config.opset,
                      input_names=names, output_names=[config.output_name],
                      dynamic_axes=axes if config.dynamic_batch else None,
                      do_constant_folding=not _tied(model))  # fmt: skip


def _check_sequence(model: nn.Module, example: Any, path: Path, config: OnnxExport) -> None:
    """Run the fp32 file on the example one token longer; refuse a graph that fixed the length
    (the TorchScript exporter bakes ``nn.MultiheadAttention``'s reshapes)."""
    from deepshrink.export.runtime import predict

    longer = map_tensors(example, lambda t: torch.cat([t, t[:, -1:]], 1) if _model.tokens(t) else t)
    wrapped, args = _model.wrapped(model, longer, config.select)
    with torch.no_grad():
        expected = wrapped(*args).numpy()
    try:
        close = bool(np.allclose(predict(path, longer), expected, rtol=1e-3, atol=1e-4))
    except Exception as exc:  # ONNX Runtime refuses a reshape to the exported length
        logger.debug("the graph failed at another sequence length: %s", _first_line(exc))
        close = False
    if not close:
        raise ExportError(
            f"{type(model).__name__}: the exported graph fixed the sequence length (it fails or "
            "differs from PyTorch one token longer); export with dynamic_sequence=False and pad "
            "inputs to the example's length, or try exporter='dynamo'"
        )


def _tied(model: nn.Module) -> bool:
    """Whether one parameter is reached under two names (GPT-2's ``lm_head`` and ``wte``).

    Constant folding would store such a weight twice (itself and its transposed copy); without
    it the file keeps one tensor and a ``Transpose``, which ONNX Runtime folds in memory.
    """
    return len(list(model.named_parameters(remove_duplicate=False))) > len(list(model.parameters()))


def _dynamo(
    model: nn.Module, args: tuple, path: Path, config: OnnxExport, names: list[str]
) -> None:
    try:
        import onnxscript  # noqa: F401
    except ImportError:
        raise RuntimeError("needs the onnxscript package (pip install onnxscript)") from None
    shapes = None
    if config.dynamic_batch:  # a batch of one would be specialised to the constant 1
        args = tuple(torch.cat([a, a]) if a.ndim and a.shape[0] == 1 else a for a in args)
        batch, sequence = torch.export.Dim("batch"), torch.export.Dim("sequence")
        sequences = config.dynamic_sequence
        shapes = tuple(
            ({0: batch, 1: sequence} if sequences and _model.tokens(a) else {0: batch})
            if a.ndim else None
            for a in args
        )  # fmt: skip
    torch.onnx.export(model, args, str(path), dynamo=True, opset_version=max(config.opset, 18),
                      input_names=names, output_names=[config.output_name],
                      dynamic_shapes=({"values": shapes} if shapes else None),
                      external_data=False, verbose=False)  # fmt: skip


def _unsigned(path: Path, config: OnnxExport) -> Path:
    """Store int8 weights as uint8 (U8U8 kernels, no int16 overflow on AVX2 CPUs), unless asked
    for int8 weights or int8 activations (S8S8); see :mod:`deepshrink.export._qdq`."""
    from deepshrink.export import _qdq

    static_s8 = config.precision == "int8" and config.activations == "int8"
    if config.weights == "uint8" and not static_s8:
        _qdq.unsigned_weights(path, path)
    return path


def _convert(
    float_path: Path, tmp: Path, config: OnnxExport, batches: list | None, *, qat: bool = False
) -> Path:
    from deepshrink.export import _ort, _qdq

    if config.precision == "fp32":
        return float_path
    out = tmp / f"{config.precision}.onnx"
    if qat:  # the graph already holds the trained QDQ pairs: store the weights as integers
        _qdq.fold_weight_quantizers(float_path, out)
        return _unsigned(out, config)
    try:
        if config.precision == "fp16":
            _ort.weights_to_fp16(float_path, out)
            return out
        source = float_path
        if config.preprocess:
            source = tmp / "preprocessed.onnx"
            _ort.preprocess(float_path, source)
        if config.precision == "int8_dynamic":
            _ort.quantize_dynamic(source, out, config)
        else:
            _ort.quantize_static(source, out, config, batches or [])
        out = _unsigned(out, config)
    except DeepshrinkError:
        raise
    except Exception as exc:
        logger.debug("ONNX Runtime's quantizer failed", exc_info=True)
        raise ExportError(
            f"ONNX Runtime could not quantize the model ({config.precision}): "
            f"{type(exc).__name__}: {_first_line(exc)}; export it as fp32 or with the other int8 "
            "mode, or see the debug log for the full trace"
        ) from None
    return out
