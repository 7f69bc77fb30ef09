"""Export to ONNX: fp32, fp16 weights, dynamic int8 and static (QDQ) int8 run by ONNX Runtime.

The float graph comes from :func:`torch.onnx.export`. The default ``exporter="torchscript"`` is
PyTorch's TorchScript-based exporter: it works offline with nothing beyond torch and onnx and
takes milliseconds on small models (PyTorch marks it deprecated; the warning is silenced here).
``exporter="dynamo"`` uses the ``torch.export``-based exporter, which needs ``onnxscript``.
Both give a dynamic batch dimension (``dynamic_batch=True``).

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
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import Field, model_validator
from torch import Tensor, nn

from deepshrink._config import MethodConfig
from deepshrink._io import atomic_write_bytes
from deepshrink.errors import ConfigError, DeepshrinkError
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
    exporter: Literal["torchscript", "dynamo"] = "torchscript"
    opset: int = Field(17, ge=13, le=21)
    dynamic_batch: bool = True
    input_name: str = "input"
    output_name: str = "output"
    calibration_samples: int = Field(256, ge=1)
    calibration_batch_size: int = Field(32, ge=1)
    calibration_method: Literal["minmax", "entropy", "percentile"] = "minmax"
    per_channel: bool = True
    activations: Literal["uint8", "int8"] = "uint8"
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
    example_inputs: Tensor | Sequence[Tensor] | None = None,
    **options: Any,
) -> Path:
    """Write ``model`` as an ONNX file at ``path`` (atomically) and return the path.

    ``calibration`` (data, see :mod:`deepshrink.quantize.calibration`) is required for static
    int8, except for a model prepared by :func:`deepshrink.quantize.prepare_qat_`, which is
    written as QDQ int8 with its own trained scales. ``example_inputs`` default to
    ``model.example_inputs()`` (zoo models) or one calibration sample. ``options`` are the
    other fields of :class:`OnnxExport`. The model is not changed (a CPU float copy in eval
    mode is exported).
    """
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
    example = _example(model, example_inputs, calibration)
    with tempfile.TemporaryDirectory(prefix="deepshrink-onnx-") as tmp:
        float_path = Path(tmp) / "float.onnx"
        export_float(model, example, float_path, config)
        final = _convert(float_path, Path(tmp), config, batches, qat=qat)
        atomic_write_bytes(path, final.read_bytes())
    logger.info("exported %s ONNX model to %s", config.precision, path)
    return Path(path)


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


def _example(model: nn.Module, example_inputs: Any, calibration: Any) -> tuple[Tensor, ...]:
    if example_inputs is None and callable(getattr(model, "example_inputs", None)):
        example_inputs = model.example_inputs()
    if example_inputs is None and calibration is not None:
        example_inputs = torch.from_numpy(calibration_batches(calibration, samples=1)[0])
    if example_inputs is None:
        raise ConfigError(
            "export needs example_inputs= (a batch the model accepts, e.g. torch.rand(1, 3, 32,"
            " 32)) for a model without example_inputs(), or calibration= data"
        )
    inputs = (example_inputs,) if isinstance(example_inputs, Tensor) else tuple(example_inputs)
    if len(inputs) != 1 or not isinstance(inputs[0], Tensor):
        raise ConfigError("export supports models with one tensor input; got example_inputs "
                          f"of {len(inputs)} values")  # fmt: skip
    return (inputs[0].detach().cpu().float(),)


def export_float(
    model: nn.Module, example: tuple[Tensor, ...], path: Path, config: OnnxExport
) -> None:
    """The fp32 graph of ``model`` (a CPU float eval copy) at ``path``."""
    import copy

    frozen = copy.deepcopy(model).cpu().float().eval()
    names = {"input_names": [config.input_name], "output_names": [config.output_name]}
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            if config.exporter == "dynamo":
                _dynamo(frozen, example, path, config, names)
            else:
                batch = {0: "batch"}
                axes = {config.input_name: batch, config.output_name: batch}
                torch.onnx.export(frozen, example, str(path), dynamo=False,
                                  opset_version=config.opset, **names,
                                  dynamic_axes=axes if config.dynamic_batch else None)  # fmt: skip
    except DeepshrinkError:
        raise
    except Exception as exc:  # torch raises many types for untraceable models
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ExportError(
            f"could not export {type(model).__name__} to ONNX with the {config.exporter} "
            f"exporter: {first}. Export needs a forward pass of tensor operations with a "
            "tensor output; try exporter='dynamo' (needs onnxscript) or simplify the model"
        ) from exc


def _dynamo(
    model: nn.Module, example: tuple[Tensor, ...], path: Path, config: OnnxExport, names: dict
) -> None:
    try:
        import onnxscript  # noqa: F401
    except ImportError:
        raise ConfigError(
            "exporter='dynamo' needs the onnxscript package (pip install onnxscript); "
            "or use the default exporter='torchscript'"
        ) from None
    shapes = ({0: torch.export.Dim("batch")},) if config.dynamic_batch else None
    torch.onnx.export(model, example, str(path), dynamo=True, opset_version=max(config.opset, 18),
                      dynamic_shapes=shapes, external_data=False, verbose=False,
                      **names)  # fmt: skip


def _convert(
    float_path: Path, tmp: Path, config: OnnxExport, batches: list | None, *, qat: bool = False
) -> Path:
    from deepshrink.export import _ort, _qdq

    if config.precision == "fp32":
        return float_path
    out = tmp / f"{config.precision}.onnx"
    if qat:  # the graph already holds the trained QDQ pairs: store the weights as int8
        _qdq.fold_weight_quantizers(float_path, out)
        return out
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
    except DeepshrinkError:
        raise
    except Exception as exc:
        raise ExportError(f"ONNX Runtime could not quantize the model ({config.precision}): "
                          f"{exc}") from exc  # fmt: skip
    return out
