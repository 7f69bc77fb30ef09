"""The stage kinds a recipe can use: how each parses its settings and what it does when run.

Method stages (``prune``, ``factorize``, ``quantize``) name a registered method with ``method:``
and pass the rest of their settings to that method's config; ``include``/``exclude`` are globs
over layer names. ``train`` and ``fine_tune`` take :class:`~deepshrink.train.FitConfig` fields;
``fine_tune`` also takes ``distill:`` (teacher = the model before the first compressing stage)
and ``prune:`` (a ``polynomial_decay`` schedule applied during the fine-tune). ``prune`` takes
``iterative: {rounds, epochs, lr, ...}`` to prune in rounds with fine-tuning in between.

>>> sorted(STAGES.names())
['auto', 'encode', 'evaluate', 'export', 'factorize', 'fine_tune', 'prune', 'quantize', 'train']
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from pydantic import Field
from torch import nn

from deepshrink._registry import Registry
from deepshrink.errors import ConfigError
from deepshrink.recipe.schema import STAGES, Recipe, Stage, StageKind, _Strict, validated
from deepshrink.train import FitConfig

__all__ = ["RUNNERS", "Context", "compresses", "finalized", "run_stage"]

logger = logging.getLogger(__name__)


@dataclass
class Context:
    """What the stages of one run share: the model, the data and the run folder."""

    recipe: Recipe
    model: nn.Module
    data: Any
    out: Path
    progress: bool = True
    reference: nn.Module | None = None
    artifacts: dict[str, str] = field(default_factory=dict)
    fresh: Callable[[], nn.Module] = nn.Identity

    def blank(self) -> nn.Module | None:
        """A model to load weights into: None for zoo-built models (rebuilt from the saved
        architecture), a fresh one from the factory otherwise."""
        spec = self.recipe.model
        return None if spec.zoo is not None or spec.checkpoint is not None else self.fresh()


Runner = Callable[[Context, Stage], dict[str, Any]]
RUNNERS: dict[str, Runner] = {}


def stage_kind(
    name: str, *, targets_layers: bool = False, doc: str = "", training_data: bool = True
) -> Callable[..., Any]:
    """Register the parser (the decorated function) of stage kind ``name``; ``training_data``
    says whether the stage reads training samples (and so may carry its own ``train_limit``)."""

    def add(parse: Callable[[dict[str, Any], str], Any]) -> Callable[[dict[str, Any], str], Any]:
        STAGES.add(name, StageKind(name, parse, targets_layers, doc, training_data))
        return parse

    return add


def runs(name: str) -> Callable[[Runner], Runner]:
    """Register the function that runs stage kind ``name``."""

    def add(runner: Runner) -> Runner:
        RUNNERS[name] = runner
        return runner

    return add


#: Stage kinds that compress the model (besides a fine-tune with a pruning schedule).
COMPRESSING = ("prune", "factorize", "quantize", "auto")


def compresses(stage: Stage) -> bool:
    """Whether ``stage`` compresses the model (a prune, factorize, quantize or auto stage, or a
    fine-tune with a pruning schedule); the model before the first such stage is the baseline."""
    if stage.kind in COMPRESSING:
        return True
    return stage.kind == "fine_tune" and stage.settings.schedule is not None


def run_stage(context: Context, stage: Stage) -> dict[str, Any]:
    """Run ``stage`` on ``context.model`` (seeded by the recipe seed and the stage position;
    a stage's own ``train_limit`` keeps the first N training samples while it runs)."""
    torch.manual_seed(context.recipe.seed + stage.index)
    if stage.kind not in ("encode", "export", "evaluate"):
        context.artifacts.pop("delivered", None)  # the model changes: an earlier file is stale
    if stage.train_limit is None:
        return RUNNERS[stage.kind](context, stage)
    data = context.data
    context.data = copy.copy(data)
    context.data.train = data.train.subset(torch.arange(min(stage.train_limit, len(data.train))))
    try:
        return RUNNERS[stage.kind](context, stage)
    finally:
        context.data = data


# --- method registries -------------------------------------------------------------------------


def _method_registry(kind: str) -> Registry[Any]:
    if kind == "prune":
        from deepshrink.prune.config import METHODS

        return METHODS
    if kind == "factorize":
        from deepshrink.factorize.config import FACTORIZATIONS

        return FACTORIZATIONS
    from deepshrink.quantize import METHODS as QUANTIZATIONS

    return QUANTIZATIONS


def _method(kind: str, settings: dict[str, Any], where: str) -> Any:
    name = settings.pop("method", None)
    registry = _method_registry(kind)
    if not isinstance(name, str):
        raise ConfigError(f"{where}.method: name the method ({', '.join(registry.names())})")
    if name not in registry:
        raise ConfigError(f"{where}.method: {registry.unknown_message(name[:100])}")
    return validated(registry.get(name), settings, where)


# --- train and fine_tune -----------------------------------------------------------------------


class Distill(_Strict):
    """Knowledge distillation from the model as it was before the first compressing stage."""

    temperature: float = Field(4.0, gt=0)
    alpha: float = Field(0.9, ge=0, le=1)


@dataclass(frozen=True)
class Training:
    fit: FitConfig
    distill: Distill | None = None
    schedule: Any = None
    slimming: float | None = None


def _training(settings: dict[str, Any], where: str, *, extras: bool) -> Training:
    distill = settings.pop("distill", None) if extras else None
    schedule = settings.pop("prune", None) if extras else None
    slimming = settings.pop("slimming", None)
    if slimming is not None and (
        isinstance(slimming, bool) or not isinstance(slimming, int | float) or slimming <= 0
    ):
        raise ConfigError(
            f"{where}.slimming: the L1 weight λ on BatchNorm scales must be a number > 0 "
            f"(1.0e-4 is usual), got {slimming!r}"
        )
    fit = validated(FitConfig, settings, where)
    if distill is not None:
        distill = validated(Distill, distill, f"{where}.distill")
    if schedule is not None:
        if not isinstance(schedule, dict):
            raise ConfigError(f"{where}.prune: expected a polynomial_decay schedule mapping")
        schedule = _method("prune", dict(schedule), f"{where}.prune")
        from deepshrink.train import Callback

        if not isinstance(schedule, Callback):
            raise ConfigError(
                f"{where}.prune: only a schedule (method: polynomial_decay) runs during "
                "fine-tuning; use a prune stage for one-shot methods"
            )
    return Training(fit, distill, schedule, slimming)


@stage_kind("train", doc="train the model (FitConfig settings; slimming: λ of the BN L1 term)")
def _parse_train(settings: dict[str, Any], where: str) -> Training:
    return _training(settings, where, extras=False)


@stage_kind("fine_tune", doc="train again after compression; distill:, prune: (AGP schedule)")
def _parse_fine_tune(settings: dict[str, Any], where: str) -> Training:
    return _training(settings, where, extras=True)


def _fit(context: Context, stage: Stage) -> dict[str, Any]:
    from deepshrink.prune.distill import distillation_loss
    from deepshrink.train import fit

    training: Training = stage.settings
    overrides: dict[str, Any] = {}
    if "seed" not in stage.raw:
        overrides["seed"] = context.recipe.seed + stage.index
    if "threads" not in stage.raw:
        overrides["threads"] = context.recipe.threads
    hooks = []
    if training.distill is not None:
        teacher = context.reference
        if teacher is None:
            raise ConfigError(f"{stage.where}.distill: no earlier model to distill from")
        hooks.append(
            distillation_loss(teacher, training.distill.temperature, training.distill.alpha)
        )
    if training.slimming is not None:
        from deepshrink.prune import slimming_penalty

        hooks.append(slimming_penalty(training.slimming))
    callbacks = [training.schedule] if training.schedule is not None else []
    if callbacks:
        _keep_reference(context)
    history = fit(
        context.model, context.data, training.fit, loss_hooks=hooks, callbacks=callbacks,
        progress=context.progress, **overrides,
    )  # fmt: skip
    last = history.last
    return {"epochs": len(history.records), "train_loss": last.train_loss if last else None}


RUNNERS["train"] = RUNNERS["fine_tune"] = _fit


# --- prune, factorize, quantize ----------------------------------------------------------------


class Iterative(_Strict):
    """Prune in ``rounds`` rounds, fine-tuning (FitConfig settings) after each."""

    rounds: int = Field(ge=1, le=1000)
    fit: dict[str, Any] = {}


@dataclass(frozen=True)
class Pruning:
    config: Any
    iterative: Iterative | None = None


@stage_kind("prune", targets_layers=True, doc="a pruning method; iterative: {rounds, fit}")
def _parse_prune(settings: dict[str, Any], where: str) -> Pruning:
    iterative = settings.pop("iterative", None)
    config = _method("prune", settings, where)
    if iterative is None:
        return Pruning(config)
    rounds = validated(Iterative, iterative, f"{where}.iterative")
    validated(FitConfig, dict(rounds.fit), f"{where}.iterative.fit")
    return Pruning(config, rounds)


@runs("prune")
def _prune(context: Context, stage: Stage) -> dict[str, Any]:
    from deepshrink.prune import iterative_prune, prune_, sparsity

    pruning: Pruning = stage.settings
    _keep_reference(context)
    if pruning.iterative is not None:
        fit = {"threads": context.recipe.threads, "seed": context.recipe.seed + stage.index}
        steps = iterative_prune(
            context.model, context.data, pruning.config, pruning.iterative.rounds,
            {**fit, **pruning.iterative.fit}, include=stage.include, exclude=stage.exclude,
        )  # fmt: skip
        rounds = [{"sparsity": s.sparsity, "accuracy": s.accuracy} for s in steps]
        return {"sparsity": sparsity(context.model), "rounds": rounds}
    extra = {}
    if pruning.config.method == "channel":
        extra["calibration"] = _calibration(context, pruning.config)
    prune_(
        context.model, pruning.config, include=stage.include, exclude=stage.exclude,
        example_inputs=_example_inputs(context.model), **extra,
    )  # fmt: skip
    return {"sparsity": sparsity(context.model)} if not extra else _channel_summary(context)


def _calibration(context: Context, config: Any) -> list[Any] | None:
    """Four batches of 64 un-augmented training samples for data-aware channel criteria."""
    from deepshrink.prune.channel_criteria import CHANNEL_CRITERIA

    if not CHANNEL_CRITERIA.get(config.criterion).data:
        return None
    return _samples(context)


def _samples(context: Context) -> list[Any]:
    """Four batches of 64 un-augmented ``(inputs, labels)`` training samples."""
    train = context.data.train.without_transform()
    count = min(256, len(train))
    images, labels = zip(*(train[i] for i in range(count)), strict=True)
    x, y = torch.stack(images), torch.as_tensor(labels)
    return [(x[i : i + 64], y[i : i + 64]) for i in range(0, count, 64)]


def _channel_summary(context: Context) -> dict[str, Any]:
    from deepshrink.eval import count_macs, count_parameters

    inputs = _example_inputs(context.model)
    summary: dict[str, Any] = {"parameters": count_parameters(context.model)}
    if inputs is not None:
        summary["macs"] = count_macs(context.model, inputs)
    return summary


@stage_kind(
    "factorize", targets_layers=True, doc="a low-rank factorization method", training_data=False
)
def _parse_factorize(settings: dict[str, Any], where: str) -> Any:
    return _method("factorize", settings, where)


@runs("factorize")
def _factorize(context: Context, stage: Stage) -> dict[str, Any]:
    from deepshrink.factorize import factorize_
    from deepshrink.graph import structure_of

    _keep_reference(context)
    before = len(structure_of(context.model))
    factorize_(context.model, stage.settings, include=stage.include, exclude=stage.exclude)
    changed = structure_of(context.model)[before:]
    return {"layers": [entry.get("module") for entry in changed]}


@stage_kind("quantize", targets_layers=True, doc="a quantization method")
def _parse_quantize(settings: dict[str, Any], where: str) -> Any:
    return _method("quantize", settings, where)


@runs("quantize")
def _quantize(context: Context, stage: Stage) -> dict[str, Any]:
    from deepshrink.quantize import quantize_

    _keep_reference(context)
    quantize_(context.model, stage.settings, include=stage.include, exclude=stage.exclude,
              calibration=_samples(context))  # fmt: skip
    return {"method": stage.raw.get("method")}


def finalized(model: nn.Module) -> nn.Module:
    """``model`` with pruning masks and weight sharing made permanent (plain weights)."""
    from deepshrink.prune import finalize_
    from deepshrink.quantize import finalize_ as finalize_quantization_

    return finalize_quantization_(finalize_(model))


def _keep_reference(context: Context) -> None:
    """Keep the model as it was before the first compressing stage (the distillation teacher)."""
    if context.reference is None:
        context.reference = copy.deepcopy(context.model).eval()


def _example_inputs(model: nn.Module) -> Any:
    make = getattr(model, "example_inputs", None)
    return make() if callable(make) else None


# --- evaluate ----------------------------------------------------------------------------------


class Evaluate(_Strict):
    """Measure the model now (its Report is written after every stage anyway)."""

    latency: bool = True


@stage_kind(
    "evaluate", doc="a Report of the model at this point, with latency", training_data=False
)
def _parse_evaluate(settings: dict[str, Any], where: str) -> Evaluate:
    return validated(Evaluate, settings, where)


@runs("evaluate")
def _evaluate(context: Context, stage: Stage) -> dict[str, Any]:
    return {"latency": stage.settings.latency}


# The encode and export stages live in their own module; importing it registers them.
from deepshrink.auto import stage as _auto_stage  # noqa: E402, F401
from deepshrink.recipe import deliver as _deliver  # noqa: E402, F401
