"""A dry run: what each stage of a recipe will do, per layer, without training anything.

The structural stages (``prune``, ``factorize``, ``quantize``) are applied to a copy of the
model, so the plan shows the real parameters, non-zeros and MACs they lead to; an iterative prune
is shown at its final target. ``train``, ``fine_tune``, ``encode``, ``export`` and ``evaluate``
are described, not run: they change weights, not shapes.

>>> from deepshrink.recipe import parse_recipe, prepare
>>> recipe = parse_recipe({"version": 1, "name": "p", "model": {"zoo": "digits_mlp"},
...     "data": {"name": "digits"},
...     "stages": [{"prune": {"method": "magnitude", "sparsity": 0.9, "include": "fc1"}}]})
>>> initial, pruned = plan_recipe(prepare(recipe))
>>> pruned.layers
[('fc1', '8,192 → 819 non-zero of 8,192', '8,192 → 8,192')]
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from deepshrink.eval import count_macs, count_nonzero, count_parameters, per_layer_macs
from deepshrink.graph.coverage import coverage_of
from deepshrink.recipe.run import Prepared, coverage_summary
from deepshrink.recipe.stages import Context, finalized, run_stage

__all__ = ["PlannedStage", "plan_recipe"]

STRUCTURAL = ("prune", "factorize", "quantize")


@dataclass
class PlannedStage:
    """One stage of a plan: what it does and the model's counts after it."""

    label: str
    action: str
    parameters: int
    nonzero: int
    macs: int
    layers: list[tuple[str, str, str]] = field(default_factory=list)
    #: What the stage covered ("97.3% of weights, 2 layers skipped") and why it skipped what.
    coverage: str = ""
    skipped: dict[str, str] = field(default_factory=dict)
    #: Expected seconds of the stage, measured up front (``auto`` stages), else None.
    seconds: float | None = None


def _describe(stage: Any) -> str:
    raw = {k: v for k, v in stage.raw.items() if k not in ("include", "exclude")}
    text = ", ".join(f"{k}={v}" for k, v in raw.items()) or "defaults"
    for option in ("include", "exclude"):
        if getattr(stage, option):
            text += f"; {option} {', '.join(getattr(stage, option))}"
    return text


def _layer_counts(model: nn.Module, inputs: Any) -> dict[str, tuple[int, int, int]]:
    """Per weight matrix (:func:`deepshrink.graph.layers.weight_slots`): (weights, non-zero
    weights, MACs of its module when it is the module's ``weight``)."""
    from deepshrink.graph.layers import weight_slots

    macs = per_layer_macs(model, inputs)
    counts: dict[str, tuple[int, int, int]] = {}
    model = finalized(copy.deepcopy(model))
    for name, slot in weight_slots(model).items():
        weight = slot.tensor
        layer_macs = macs.get(slot.module_name, 0) if slot.parameter == "weight" else 0
        counts[name] = (weight.numel(), int(weight.count_nonzero()), layer_macs)
    return counts


def _rows(
    before: dict[str, tuple[int, int, int]], after: dict[str, tuple[int, int, int]]
) -> list[tuple[str, str, str]]:
    rows = []
    for name, (weights, nonzero, macs) in before.items():
        parts = [v for k, v in after.items() if k == name or k.startswith(name + ".")]
        new = tuple(sum(p[i] for p in parts) for i in range(3))
        if (weights, nonzero, macs) == new:
            continue
        rows.append(
            (name, f"{nonzero:,} → {new[1]:,} non-zero of {new[0]:,}", f"{macs:,} → {new[2]:,}")
        )
    return rows


def plan_recipe(prepared: Prepared) -> list[PlannedStage]:
    """Plan every stage of ``prepared`` (its model is not changed)."""
    model = copy.deepcopy(prepared.model)
    inputs = _inputs(model, prepared.data)
    context = Context(prepared.recipe, model, prepared.data, out=None, progress=False)  # type: ignore[arg-type]
    planned = [_snapshot("initial", "the model as loaded", model, inputs)]
    for stage in prepared.recipe.stages:
        action = _describe(stage)
        expected = _expected_time(context, stage) if stage.kind == "auto" else None
        if expected is not None:
            action += f"; expected time {expected.text()}"
        rows: list[tuple[str, str, str]] = []
        coverage: dict[str, Any] = {}
        if stage.kind in STRUCTURAL:
            before = _layer_counts(context.model, inputs)
            seen = len(coverage_of(context.model))
            run_stage(context, _final_target(stage))
            coverage = coverage_summary(coverage_of(context.model)[seen:])
            rows = _rows(before, _layer_counts(context.model, inputs))
        snapshot = _snapshot(stage.label, action, context.model, inputs)
        snapshot.layers = rows
        snapshot.coverage = coverage.get("coverage", "")
        snapshot.skipped = coverage.get("coverage_detail", {}).get("skipped", {})
        snapshot.seconds = None if expected is None else expected.total_seconds
        planned.append(snapshot)
    return planned


def _expected_time(context: Context, stage: Any) -> Any:
    """What an ``auto`` stage will take: its unit costs measured now on the stage's settings
    (:func:`deepshrink.auto.estimate.expected_time`)."""
    from deepshrink.auto.compress import FineTune
    from deepshrink.auto.estimate import expected_time

    s = stage.settings
    latency = s.max_latency_ms is not None or s.speedup is not None
    tune = FineTune(prune_epochs=s.prune_epochs, share_epochs=s.share_epochs,
                    batch_size=s.batch_size, train_samples=s.train_samples,
                    seed=context.recipe.seed + stage.index,
                    threads=context.recipe.threads)  # fmt: skip
    return expected_time(
        context.model, context.data, latency=latency, settings=tune,
        scan_samples=s.scan_samples, held_out=s.held_out, sparsities=s.sparsities, bits=s.bits,
        steps=s.steps, round_to=s.round_to, speedup=s.speedup,
    )  # fmt: skip


def _final_target(stage: Any) -> Any:
    """An iterative prune planned as its one-shot final target."""
    if stage.kind == "prune" and stage.settings.iterative is not None:
        return dataclasses.replace(stage, settings=type(stage.settings)(stage.settings.config))
    return stage


def _inputs(model: nn.Module, data: Any) -> Any:
    make = getattr(model, "example_inputs", None)
    if callable(make):
        return make()
    return data.test[0][0].unsqueeze(0)


def _snapshot(label: str, action: str, model: nn.Module, inputs: Any) -> PlannedStage:
    model = finalized(copy.deepcopy(model))  # count weights, not codebooks
    return PlannedStage(
        label, action, count_parameters(model), count_nonzero(model), count_macs(model, inputs)
    )
