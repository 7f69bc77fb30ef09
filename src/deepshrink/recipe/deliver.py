"""The ``encode`` and ``export`` stages: the files a recipe delivers, measured.

``encode`` writes the Deep Compression container and continues from the decoded model;
``export`` writes an ONNX file and measures it in ONNX Runtime (accuracy, gzip size, latency
against the fp32 export of the same model).
"""

from __future__ import annotations

import copy
from typing import Any, Literal

import torch
from pydantic import Field
from torch import nn

from deepshrink.recipe.schema import Stage, _Strict, validated
from deepshrink.recipe.stages import Context, finalized, runs, stage_kind

__all__ = ["Encode", "Export"]


class Encode(_Strict):
    """Write the Deep Compression container and continue with the model decoded from it."""

    file: str = Field("model.dsz", pattern=r"^[^/\\]+\.dsz$")
    reload: bool = True
    index_bits: int | Literal["auto"] | dict[str, int] | None = None
    huffman: bool = True


@stage_kind("encode", doc="write the .dsz container (the run continues from the decoded model)")
def _parse_encode(settings: dict[str, Any], where: str) -> Encode:
    from deepshrink.encode import EncodeConfig

    encode = validated(Encode, settings, where)
    validated(EncodeConfig, {k: v for k, v in settings.items() if k in ("index_bits", "huffman")},
              where)  # fmt: skip
    return encode


@runs("encode")
def _encode(context: Context, stage: Stage) -> dict[str, Any]:
    from deepshrink.encode import EncodeConfig, load, save

    settings: Encode = stage.settings
    path = context.out / settings.file
    options = {"index_bits": settings.index_bits} if settings.index_bits is not None else {}
    save(finalized(context.model), path, EncodeConfig(huffman=settings.huffman, **options))
    context.artifacts["dsz"] = str(path)
    context.artifacts["delivered"] = str(path)
    if settings.reload:
        context.model = load(path, model=context.blank())
    return {"file": settings.file, "bytes": path.stat().st_size}


class Export(_Strict):
    """Export for a runtime: an ONNX file (fp32, fp16 weights, or int8 static / dynamic), checked
    in ONNX Runtime: its accuracy on the test set and, against the fp32 ONNX export of the same
    model, its latency at batch 1 and 32 (interleaved, medians)."""

    format: Literal["onnx"] = "onnx"
    file: str | None = Field(None, pattern=r"^[^/\\]+\.onnx$")
    int8: bool | Literal["static", "dynamic"] = False
    fp16: bool = False
    per_channel: bool = True
    calibration_samples: int = Field(256, gt=0)
    latency_rounds: int = Field(5, ge=0, description="0: no latency comparison")
    exporter: Literal["auto", "torchscript", "dynamo"] = "auto"
    select: str | int | None = Field(None, description="output key or index holding the logits")


@stage_kind("export", doc="an ONNX file (fp32, fp16 or int8), measured in ONNX Runtime")
def _parse_export(settings: dict[str, Any], where: str) -> Export:
    return validated(Export, settings, where)


def _export_name(settings: Export) -> str:
    if settings.file:
        return settings.file
    kind = "int8" if settings.int8 is True else settings.int8 or ("fp16" if settings.fp16 else "")
    return f"model.{kind}.onnx" if kind else "model.onnx"


@runs("export")
def _export(context: Context, stage: Stage) -> dict[str, Any]:
    import gzip

    from deepshrink.export import export
    from deepshrink.export.runtime import compare_latency, evaluate_onnx

    settings: Export = stage.settings
    name = _export_name(settings)
    path = context.out / name
    train = context.data.train.without_transform()
    calibration = train.subset(torch.arange(min(settings.calibration_samples, len(train))))
    model = finalized(context.model)
    options: dict[str, Any] = {"per_channel": settings.per_channel} if settings.int8 else {}
    options |= {"exporter": settings.exporter, "select": settings.select}
    export(model, path, int8=settings.int8, fp16=settings.fp16,
           calibration=calibration if settings.int8 else None, **options)  # fmt: skip
    context.artifacts[name] = str(path)
    context.artifacts["delivered"] = str(path)
    threads = context.recipe.threads or 1
    result = evaluate_onnx(path, context.data.test, threads=threads)
    summary: dict[str, Any] = {
        "file": name, "bytes": path.stat().st_size,
        "gzip_bytes": len(gzip.compress(path.read_bytes(), 9)), "onnx_accuracy": result.top1,
    }  # fmt: skip
    if settings.latency_rounds and (settings.int8 or settings.fp16):
        reference = export(_float_twin(model), context.out / "stages" / stage.label / "fp32.onnx",
                           exporter=settings.exporter, select=settings.select)  # fmt: skip
        shape = tuple(context.data.input_shape)
        timing = compare_latency({"fp32": reference, "this": path}, shape, threads=threads,
                                 rounds=settings.latency_rounds, block_seconds=0.1)  # fmt: skip
        for size in (1, 32):
            fp32, this = timing["fp32"][size].median_ms, timing["this"][size].median_ms
            summary[f"ms_batch{size}"] = this
            summary[f"speedup_batch{size}"] = fp32 / this
    return summary


def _float_twin(model: nn.Module) -> nn.Module:
    """The model itself, or for a quantization-aware one a float copy with its rounded weights
    (the fp32 baseline of the latency comparison)."""
    from deepshrink.quantize import convert_qat_, qat_layers

    return convert_qat_(copy.deepcopy(model)) if qat_layers(model) else model
