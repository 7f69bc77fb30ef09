"""The ``encode`` and ``export`` stages: the files a recipe delivers, measured.

``encode`` writes the Deep Compression container and continues from the decoded model;
``export`` writes an ONNX or TFLite file and measures it in its runtime (accuracy, gzip size,
speed against the fp32 export of the same model, side by side).
"""

from __future__ import annotations

import copy
import json
import logging
from typing import Any, Literal

import torch
from pydantic import Field, model_validator
from torch import nn

from deepshrink.recipe.headline import EXPORT_OPTIONS
from deepshrink.recipe.schema import Stage, _Strict, validated
from deepshrink.recipe.stages import Context, finalized, runs, stage_kind

logger = logging.getLogger(__name__)

__all__ = ["Encode", "Export"]


class Encode(_Strict):
    """Write the Deep Compression container and continue with the model decoded from it."""

    file: str = Field("model.dsz", pattern=r"^[^/\\]+\.dsz$")
    reload: bool = True
    index_bits: int | Literal["auto"] | dict[str, int] | None = None
    huffman: bool = True
    #: float tensors (codebooks, biases, raw values) at full or half width (lossy, version 2)
    floats: Literal["exact", "float16", "bfloat16"] = "exact"
    #: BatchNorm as one per-channel scale and shift (same evaluation output, about half the bytes)
    batchnorm: Literal["exact", "fold"] = "exact"


@stage_kind(
    "encode",
    doc="write the .dsz container (the run continues from the decoded model)",
    training_data=False,
)
def _parse_encode(settings: dict[str, Any], where: str) -> Encode:
    from deepshrink.encode import EncodeConfig

    encode = validated(Encode, settings, where)
    keys = ("index_bits", "huffman", "floats", "batchnorm")
    validated(EncodeConfig, {k: v for k, v in settings.items() if k in keys}, where)
    return encode


@runs("encode")
def _encode(context: Context, stage: Stage) -> dict[str, Any]:
    from deepshrink.encode import EncodeConfig, load, save

    settings: Encode = stage.settings
    path = context.out / settings.file
    options = {"index_bits": settings.index_bits} if settings.index_bits is not None else {}
    config = EncodeConfig(huffman=settings.huffman, floats=settings.floats,
                          batchnorm=settings.batchnorm, **options)  # fmt: skip
    save(finalized(context.model), path, config)
    context.artifacts["dsz"] = str(path)
    context.artifacts["delivered"] = str(path)
    if settings.reload:
        context.model = load(path, model=context.blank())
    result = {"file": settings.file, "bytes": path.stat().st_size}
    if settings.floats != "exact":
        result["floats"] = settings.floats
    if settings.batchnorm != "exact":
        result["batchnorm"] = settings.batchnorm
    return result


class Export(_Strict):
    """Export for a runtime: an ONNX file (fp32, fp16 weights, or int8 static / dynamic) checked
    in ONNX Runtime, or a TFLite file (the same modes; int4 weights with ``weight_bits: 4``)
    checked in the LiteRT interpreter: its accuracy on the test set and, against the fp32 export
    of the same model in the same runtime, its speed (side by side, thread CPU time, with an
    interval; ONNX at batch 1 and 32, TFLite at its fixed batch of 1)."""

    format: Literal["onnx", "tflite"] = "onnx"
    file: str | None = Field(None, pattern=r"^[^/\\]+\.(onnx|tflite)$")
    int8: bool | Literal["static", "dynamic"] = False
    fp16: bool = False
    per_channel: bool = True
    calibration_samples: int = Field(256, gt=0)
    latency_rounds: int = Field(5, ge=0, description="0: no latency comparison")
    exporter: Literal["auto", "torchscript", "dynamo"] = "auto"
    select: str | int | None = Field(None, description="output key or index holding the logits")
    weight_bits: Literal[8, 4] = 8

    @model_validator(mode="after")
    def _fits_the_format(self) -> Export:
        suffix = f".{self.format}"
        if self.file and not self.file.endswith(suffix):
            raise ValueError(f"file {self.file!r} does not end in {suffix} (format {self.format})")
        only = {"onnx": ("weight_bits",), "tflite": ("per_channel", "exporter")}[self.format]
        given = sorted(set(only) & self.model_fields_set)
        if given:
            raise ValueError(f"{', '.join(given)} do not apply to format {self.format}")
        if self.int8 and self.fp16:
            raise ValueError("choose one of int8 and fp16")
        return self


@stage_kind("export", doc="an ONNX or TFLite file (fp32, fp16 or int8), measured in its runtime")
def _parse_export(settings: dict[str, Any], where: str) -> Export:
    return validated(Export, settings, where)


def _export_name(settings: Export) -> str:
    if settings.file:
        return settings.file
    kind = "int8" if settings.int8 is True else settings.int8 or ("fp16" if settings.fp16 else "")
    return f"model.{kind}.{settings.format}" if kind else f"model.{settings.format}"


def _options(settings: Export) -> dict[str, Any]:
    """The format's own export options (besides int8, fp16 and calibration)."""
    if settings.format == "tflite":
        return {"select": settings.select, "weight_bits": settings.weight_bits}
    return {"exporter": settings.exporter, "select": settings.select}


@runs("export")
def _export(context: Context, stage: Stage) -> dict[str, Any]:
    import gzip

    from deepshrink.export import export
    from deepshrink.export.files import evaluate_file

    settings: Export = stage.settings
    name = _export_name(settings)
    path = context.out / name
    train = context.data.train.without_transform()
    calibration = train.subset(torch.arange(min(settings.calibration_samples, len(train))))
    model = finalized(context.model)
    options = _options(settings)
    if settings.int8 and settings.format == "onnx":
        options["per_channel"] = settings.per_channel
    export(model, path, int8=settings.int8, fp16=settings.fp16,
           calibration=calibration if settings.int8 else None, **options)  # fmt: skip
    context.artifacts[name] = str(path)
    context.artifacts["delivered"] = str(path)
    result = evaluate_file(path, context.data.test, threads=context.recipe.threads or 1)
    summary: dict[str, Any] = {
        "file": name, "bytes": path.stat().st_size,
        "gzip_bytes": len(gzip.compress(path.read_bytes(), 9)),
        f"{settings.format}_accuracy": result.top1,
    }  # fmt: skip
    context.artifacts[EXPORT_OPTIONS] = json.dumps(_reference_options(_options(settings)))
    if settings.latency_rounds and (settings.int8 or settings.fp16):
        folder = context.out / "stages" / stage.label
        reference = export(_float_twin(model), folder / f"fp32{path.suffix}",
                           **_reference_options(_options(settings)))  # fmt: skip
        summary |= _file_speed(context, model, reference, path, settings.latency_rounds)
    return summary


def _reference_options(options: dict[str, Any]) -> dict[str, Any]:
    """Options for the fp32 reference export: everything but the weight width."""
    return {k: v for k, v in options.items() if k != "weight_bits"}


def _file_speed(
    context: Context, model: nn.Module, reference: Any, path: Any, rounds: int
) -> dict[str, Any]:
    """The exported file against the fp32 export of the same model in its runtime, side by side
    (thread CPU time, alternating; a claim only when the interval allows)."""
    from deepshrink.eval._inputs import derive_inputs
    from deepshrink.eval.timing import compare_calls
    from deepshrink.export.files import file_calls, timed_batch_sizes

    example = derive_inputs(model, context.data.test, None)
    speeds = compare_calls(file_calls(reference, example), file_calls(path, example),
                           batch_sizes=timed_batch_sizes(path, (1, 32)), threads=1,
                           rounds=max(3, 6 * rounds))  # fmt: skip
    summary: dict[str, Any] = {}
    for size, speed in speeds.items():
        summary[f"ms_batch{size}"] = speed.cpu_ms
        summary[f"vs_fp32_batch{size}"] = speed.text()
    if all(speed.verdict == "slower" for speed in speeds.values()):
        measured = ", ".join(f"{s.text()} at batch {n}" for n, s in speeds.items())
        logger.warning(
            "%s runs slower than the fp32 export of the same model on this machine (%s): it "
            "is smaller, not faster; where speed matters, deliver the fp32 file (export "
            "without int8/fp16)", path.name, measured,
        )  # fmt: skip
    return summary


def _float_twin(model: nn.Module) -> nn.Module:
    """The model itself, or for a quantization-aware one a float copy with its rounded weights
    (the fp32 baseline of the latency comparison)."""
    from deepshrink.quantize import convert_qat_, qat_layers

    return convert_qat_(copy.deepcopy(model)) if qat_layers(model) else model
