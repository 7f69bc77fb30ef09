"""The headline of a run: the delivered file, measured in the runtime that serves it.

A run's final report describes what it delivers. For a ``.dsz`` container (the model decoded
from it) or a checkpoint that is PyTorch; for an ``.onnx`` file it is ONNX Runtime and for a
``.tflite`` file the LiteRT interpreter: the file's own accuracy, and its speed against the fp32
export of the baseline model in the same format, the two files timed side by side in one process
(:func:`deepshrink.eval.timing.compare_calls`). A masked PyTorch model that runs faster says
nothing about an int8 file that runs slower, so the report states what the file does, "slower"
included.

Every headline also counts the test samples whose predicted class changed from the baseline.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from deepshrink.eval import Report
from deepshrink.eval.agreement import changed_predictions, model_forward, predicted_classes
from deepshrink.eval.timing import Speed
from deepshrink.export.files import (
    SUFFIXES,
    evaluate_file,
    file_calls,
    file_forward,
    runtime_name,
    timed_batch_sizes,
)
from deepshrink.recipe.stages import Context, finalized

__all__ = ["Headline", "measure_headline"]

logger = logging.getLogger(__name__)

#: Artifact key under which the export stage records how it exported (JSON: exporter, select).
EXPORT_OPTIONS = "delivered_export"


@dataclass(frozen=True)
class Headline:
    """The final report of the delivered file, its speed against the baseline and where both
    were measured."""

    final: Report
    runtime: str
    speed: dict[int, Speed] | None
    changed: int


def measure_headline(
    context: Context, baseline: nn.Module, final: Report, label: str, *, latency: bool
) -> Headline:
    """Measure the delivered file (``context.artifacts["delivered"]``) in its runtime.

    ``final`` is the PyTorch report of the final model; for an exported file its accuracy
    figures are replaced by the file's own in its runtime (PyTorch's kept in ``extra``).
    """
    from deepshrink.eval.report import LARGE_BATCH

    test = context.data.test
    before = predicted_classes(model_forward(finalized(copy.deepcopy(baseline))), test)
    delivered = Path(context.artifacts.get("delivered", ""))
    batch_sizes = (1, LARGE_BATCH)
    if delivered.suffix in SUFFIXES:
        runtime = runtime_name(delivered)
        final, after = _file_final(context, delivered, final, runtime)
        speed = _file_speed(context, baseline, delivered, label, batch_sizes) if latency else None
    else:
        after = predicted_classes(model_forward(context.model), test)
        speed = _pytorch_speed(context, baseline, batch_sizes) if latency else None
        runtime = "PyTorch"
    return Headline(final, runtime, speed, changed_predictions(before, after))


def _file_final(context: Context, path: Path, final: Report, runtime: str) -> tuple[Report, Any]:
    """The final report with the exported file's accuracy, and the file's predictions."""
    threads = context.recipe.threads or 1
    result = evaluate_file(path, context.data.test, threads=threads)
    extra = {**final.extra, "runtime": runtime, "pytorch_accuracy": final.accuracy}
    final = dataclasses.replace(final, accuracy=result.top1, top5=result.top5, loss=result.loss,
                                samples=result.count, extra=extra)  # fmt: skip
    forward = file_forward(path, threads=threads)
    return final, predicted_classes(forward, context.data.test)


def _example(context: Context, model: nn.Module) -> Any:
    from deepshrink.eval._inputs import derive_inputs

    return derive_inputs(model, context.data.test, None)


def _file_speed(
    context: Context, baseline: nn.Module, path: Path, label: str, batch_sizes: tuple[int, ...]
) -> dict[int, Speed] | None:
    """The delivered file against the fp32 export of the baseline in the same format and
    runtime, side by side (a TFLite file only at its fixed batch size)."""
    from deepshrink.eval.timing import compare_calls
    from deepshrink.export import export

    model = finalized(copy.deepcopy(baseline)).eval()
    options = json.loads(context.artifacts.get(EXPORT_OPTIONS, "{}"))
    folder = context.out / "stages" / label
    reference = export(model, folder / f"baseline.fp32{path.suffix}", **options)
    sizes = timed_batch_sizes(path, batch_sizes)
    if not sizes:
        logger.warning("%s has a fixed batch size outside %s: not timed", path.name, batch_sizes)
        return None
    example = _example(context, model)
    logger.info("timing %s against the baseline's fp32 %s, side by side", path.name,
                path.suffix)  # fmt: skip
    return compare_calls(file_calls(reference, example), file_calls(path, example),
                         batch_sizes=sizes, threads=1)  # fmt: skip


def _pytorch_speed(
    context: Context, baseline: nn.Module, batch_sizes: tuple[int, ...]
) -> dict[int, Speed]:
    """The final model against the baseline in PyTorch, side by side on one thread."""
    from deepshrink.eval.timing import compare_speed

    candidate = finalized(copy.deepcopy(context.model))
    return compare_speed(finalized(copy.deepcopy(baseline)), candidate,
                         _example(context, candidate), batch_sizes=batch_sizes,
                         threads=1)  # fmt: skip
