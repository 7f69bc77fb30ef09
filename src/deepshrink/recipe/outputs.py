"""What a run leaves behind: a checkpoint and a Report per stage, metrics, report and plots.

Reports after stages are measured without latency (it is slow and noisy); the initial and final
reports measure it when the recipe says ``latency: true``. The final report's file size is that
of the delivered file — the ``.dsz`` container or ONNX file written by the last ``encode`` or
``export`` stage after the model last changed — else of the final checkpoint.
"""

from __future__ import annotations

import contextlib
import copy
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from torch import nn

from deepshrink import _io
from deepshrink.eval import Report, compare, report
from deepshrink.recipe.stages import Context
from deepshrink.train import load_checkpoint, save_checkpoint

__all__ = [
    "INITIAL", "finish", "layer_rows", "load_stage", "measure", "restore", "save_stage", "start",
    "finish_ranks", "workspace",
]  # fmt: skip

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


def start(context: Context, text: str, digest: str) -> dict[str, Any]:
    """A new run's state; rank 0 (or the only process) writes ``recipe.yaml``, the initial
    checkpoint and Report, and ``state.json``."""
    from deepshrink.recipe.run import STATE
    from deepshrink.train.distributed import barrier, is_main

    if not is_main():
        barrier()  # rank 0 writes the initial stage meanwhile
        return {"recipe_sha256": digest, "done": []}
    _io.atomic_write_bytes(context.out / "recipe.yaml", text.encode("utf-8"))
    initial = save_stage(context, INITIAL, {}, "initial")
    state = {"recipe_sha256": digest, "initial": initial["report"], "done": []}
    _io.atomic_write_json(context.out / STATE, state)
    barrier()
    return state


def restore(context: Context, state: dict[str, Any], folder: Path | None = None) -> None:
    """Continue after the last finished stage: reload its model, the teacher and artifacts
    from the run folder (``folder``, default ``context.out``)."""
    done = state["done"]
    context.model = load_stage(context, done[-1]["label"] if done else INITIAL, folder)
    if "baseline" in state:
        context.reference = load_stage(context, state["baseline"], folder).eval()
    if done:
        context.artifacts.update(done[-1].get("artifacts", {}))


def load_stage(context: Context, label: str, folder: Path | None = None) -> nn.Module:
    """The model saved after stage ``label`` (or the initial model) in the run folder
    (``folder``, default ``context.out``)."""
    path = checkpoint_path(folder or context.out, label)
    return load_checkpoint(path, context.blank())[0]


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


@contextlib.contextmanager
def workspace(out: Path) -> Iterator[Path]:
    """The folder stages write into: ``out`` on rank 0 (or the only process); a private
    temporary folder on the other torchrun ranks, which run the same stages (an ``encode`` stage
    continues from the decoded model everywhere) but whose files are discarded."""
    from deepshrink.train.distributed import is_main

    if is_main():
        yield out
        return
    with tempfile.TemporaryDirectory(prefix="deepshrink-rank") as scratch:
        yield Path(scratch)


def finish_ranks(context: Context, state: dict[str, Any]) -> tuple[Report, Report, Any, list]:
    """:func:`finish` on rank 0, whose reports every rank returns: (baseline, final, comparison,
    finished stages). The other ranks make their masks and sharing permanent, and wait."""
    from deepshrink.recipe.stages import finalized
    from deepshrink.train.distributed import is_main, share

    if is_main():
        baseline, final, comparison = finish(context, state)
        share({"baseline": baseline.to_dict(), "final": final.to_dict(), "done": state["done"]})
        return baseline, final, comparison, state["done"]
    context.model = finalized(context.model)
    shared = share(None)  # waits for rank 0 to write the report
    baseline, final = Report.from_dict(shared["baseline"]), Report.from_dict(shared["final"])
    return baseline, final, compare(baseline, final), shared["done"]
