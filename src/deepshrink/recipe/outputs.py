"""What a run leaves behind: a checkpoint and a Report per stage, metrics, report and plots.

Reports after stages are measured without latency (it is slow and noisy); the initial and final
reports measure it when the recipe says ``latency: true``. The final report's file size is that
of the delivered file — the ``.dsz`` container or ONNX file written by the last ``encode`` or
``export`` stage after the model last changed — else of the final checkpoint.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from torch import nn

from deepshrink import _io
from deepshrink.eval import Report, compare, report
from deepshrink.recipe.stages import Context
from deepshrink.train import load_checkpoint, save_checkpoint

__all__ = ["INITIAL", "layer_rows", "measure", "restore", "save_stage", "finish", "load_stage"]

INITIAL = "00-initial"


def checkpoint_path(out: Path, label: str) -> Path:
    return out / "stages" / label / "model.safetensors"


def measure(context: Context, model: nn.Module, name: str, file: Path, *, latency: bool) -> Report:
    """Measure ``model`` (sizes of ``file``) on the recipe's test set.

    Counts are of the model with masks and weight sharing made permanent (a shared layer's
    parameters are its weights, not its codebook); ``model`` itself is not changed.
    """
    from deepshrink.recipe.stages import finalized

    return report(
        finalized(copy.deepcopy(model)), context.data.test, name=name, file=file, latency=latency,
        threads=context.recipe.threads,
    )  # fmt: skip


def save_stage(context: Context, label: str, summary: dict[str, Any], kind: str) -> dict[str, Any]:
    """Checkpoint and measure the model after a stage; the entry kept in ``state.json``."""
    path = save_checkpoint(context.model, checkpoint_path(context.out, label).with_suffix(""))
    result = measure(context, context.model, label, path, latency=False)
    result.save(path.parent / "report.json")
    return {
        "label": label,
        "kind": kind,
        "summary": summary,
        "report": result.to_dict(),
        "artifacts": dict(context.artifacts),
    }


def restore(context: Context, state: dict[str, Any]) -> None:
    """Continue after the last finished stage: reload its model, the teacher and artifacts."""
    done = state["done"]
    context.model = load_stage(context, done[-1]["label"] if done else INITIAL)
    if "baseline" in state:
        context.reference = load_stage(context, state["baseline"]).eval()
    if done:
        context.artifacts.update(done[-1].get("artifacts", {}))


def load_stage(context: Context, label: str) -> nn.Module:
    """The model saved after stage ``label`` (or the initial model)."""
    return load_checkpoint(checkpoint_path(context.out, label), context.blank())[0]


def layer_rows(before: nn.Module, after: nn.Module) -> list[dict[str, Any]]:
    """Per weight matrix of ``before`` (:func:`deepshrink.graph.layers.weight_slots`): weights,
    and weights and non-zero weights after. A layer replaced by several (a factorization) counts
    the weights of all its parts.
    """
    from deepshrink.graph.layers import slot_counts

    later = slot_counts(after)
    rows = []
    for name, (_, weights) in slot_counts(before).items():
        parts = [v for k, v in later.items() if k == name or k.startswith(f"{name}.")]
        rows.append({"layer": name, "weights": weights,
                     "weights_after": sum(total for _, total in parts),
                     "nonzero_after": sum(kept for kept, _ in parts)})  # fmt: skip
    return rows


def finish(context: Context, state: dict[str, Any]) -> tuple[Report, Report, Any]:
    """Finalize masks, save ``model.*``, measure baseline and the delivered file (in its
    runtime, speed side by side: :mod:`deepshrink.recipe.headline`) and write
    ``metrics.json``, ``report.md``, ``report.html`` and ``plots/``."""
    from deepshrink.recipe.headline import measure_headline
    from deepshrink.recipe.stages import finalized
    from deepshrink.report import render_run

    context.model = finalized(context.model)
    final_path = save_checkpoint(context.model, context.out / "model")
    label = state.get("baseline") or (state["done"][-1]["label"] if state["done"] else INITIAL)
    baseline_model = load_stage(context, label)
    latency = context.recipe.latency
    baseline = measure(context, baseline_model, f"baseline ({label})",
                       checkpoint_path(context.out, label), latency=latency)  # fmt: skip
    file = Path(context.artifacts.get("delivered", final_path))
    final = measure(context, context.model, "final", file, latency=latency)
    headline = measure_headline(context, baseline_model, final, label, latency=latency)
    final = headline.final
    comparison = compare(baseline, final, speed=headline.speed, speed_runtime=headline.runtime,
                         changed_predictions=headline.changed)  # fmt: skip
    metrics = {
        "recipe": context.recipe.name,
        "initial": state["initial"],
        "baseline": baseline.to_dict(),
        "stages": state["done"],
        "final": final.to_dict(),
        "comparison": {
            k: v for k, v in comparison.to_dict().items() if k not in ("before", "after")
        },
        "layers": layer_rows(baseline_model, context.model),
        "artifacts": dict(context.artifacts),
    }
    _io.atomic_write_json(context.out / "metrics.json", metrics)
    render_run(context.out, context.recipe.name, context.recipe.description, metrics, comparison)
    return baseline, final, comparison
