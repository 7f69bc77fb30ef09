"""When to prune: gradual polynomial decay during training, and iterative prune → fine-tune.

:class:`PolynomialDecay` reproduces TF Model Optimization's ``PolynomialDecay`` (Zhu & Gupta's
automated gradual pruning for ``power=3``). It is a config *and* a
:class:`deepshrink.train.Callback`: after every optimizer step it looks at the number of steps
done ``s`` (TF-MOT's ``optimizer.iterations``, the step the next batch runs) and, when
``begin_step ≤ s ≤ end_step`` and ``(s − begin_step) % frequency == 0``, re-masks the model to
``sparsity(s)``, before the next forward pass, as TF-MOT does. ``prune_(model, schedule)`` applies
the step-0 masks, so a run with ``begin_step=0`` matches TF-MOT from its first batch (without it
the first update comes one step late). The callback also re-zeroes pruned weights after every
step, since the optimizer's momentum was built while they were alive.

>>> schedule = PolynomialDecay(initial_sparsity=0.5, final_sparsity=0.9, begin_step=0,
...                            end_step=100, frequency=10)
>>> round(schedule.sparsity(50), 4), schedule.due(50), schedule.due(55)
(0.85, True, False)
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from pydantic import field_validator, model_validator
from torch import nn

from deepshrink.errors import ConfigError
from deepshrink.functional.masks import iterative_sparsities, polynomial_decay, pruning_step_due
from deepshrink.prune.api import prune_, register_method
from deepshrink.prune.config import (
    METHODS,
    MagnitudePruning,
    NeuronPruning,
    PruneConfig,
    check_fraction,
    check_known_criterion,
)
from deepshrink.prune.masking import enforce_masks_, iter_masks
from deepshrink.prune.targets import Patterns
from deepshrink.prune.unstructured import sparsity as measured_sparsity
from deepshrink.train import Callback, FitConfig, LossHook, StepContext, evaluate, fit

__all__ = ["IterativeStep", "PolynomialDecay", "PruningStepper", "iterative_prune"]

logger = logging.getLogger(__name__)


class PolynomialDecay(PruneConfig, Callback):
    """Gradual magnitude pruning from ``initial_sparsity`` to ``final_sparsity`` during training.

    ``sparsity(s) = final + (initial − final)(1 − p)^power``, ``p = clip((s − begin)/(end −
    begin), 0, 1)``; masks are updated every ``frequency`` steps in ``[begin_step, end_step]``.
    ``scope``, ``criterion``, ``include`` and ``exclude`` choose what is pruned, as in
    :class:`MagnitudePruning`. Pass it to ``fit(..., callbacks=[schedule])``.
    """

    method: ClassVar[str] = "polynomial_decay"

    initial_sparsity: float = 0.0
    final_sparsity: float
    begin_step: int = 0
    end_step: int
    frequency: int = 100
    power: float = 3.0
    scope: Literal["layer", "global"] = "layer"
    criterion: str = "magnitude"
    include: tuple[str, ...] | None = None
    exclude: tuple[str, ...] | None = None

    _check_criterion = field_validator("criterion")(check_known_criterion)

    @field_validator("include", "exclude", mode="before")
    @classmethod
    def _one_glob(cls, value: Any) -> Any:
        return (value,) if isinstance(value, str) else value

    @model_validator(mode="after")
    def _check(self) -> PolynomialDecay:
        check_fraction("initial_sparsity", self.initial_sparsity, "0.5 starts at half pruned")
        check_fraction("final_sparsity", self.final_sparsity, "0.9 ends with 90% pruned")
        if self.final_sparsity < self.initial_sparsity:
            raise ValueError(
                f"final_sparsity {self.final_sparsity} is below initial_sparsity "
                f"{self.initial_sparsity}; pruned weights are never revived"
            )
        if self.begin_step < 0:
            raise ValueError(f"begin_step must be ≥ 0, got {self.begin_step}")
        if self.end_step <= self.begin_step:
            raise ValueError(
                f"end_step must be > begin_step ({self.begin_step}), got {self.end_step}"
            )
        if self.frequency < 1:
            raise ValueError(f"frequency must be ≥ 1 step, got {self.frequency}")
        if self.power <= 0:
            raise ValueError(f"power must be > 0 (3 is AGP), got {self.power}")
        return self

    def sparsity(self, step: int) -> float:
        """The target sparsity at ``step`` (steps done so far)."""
        return polynomial_decay(
            step, self.initial_sparsity, self.final_sparsity, self.begin_step, self.end_step,
            self.power,
        )  # fmt: skip

    def due(self, step: int) -> bool:
        """Whether the masks are updated at ``step``."""
        return pruning_step_due(step, self.begin_step, self.end_step, self.frequency)

    def apply_(self, model: nn.Module, step: int) -> None:
        """Mask ``model`` to ``sparsity(step)`` with this schedule's scope and criterion."""
        config = MagnitudePruning(
            sparsity=self.sparsity(step), scope=self.scope, criterion=self.criterion
        )
        prune_(model, config, include=self.include, exclude=self.exclude)

    def update_(self, model: nn.Module, done: int) -> None:
        """After optimizer step number ``done`` (1-based): re-mask when due, else re-zero the
        pruned weights (an optimizer with momentum may have moved them)."""
        if self.due(done) or (done > self.begin_step and not any(iter_masks(model))):
            self.apply_(model, done)
        else:
            enforce_masks_(model)

    def on_step_end(self, context: StepContext) -> None:
        self.update_(context.model, context.step + 1)


def _apply_schedule(
    model: nn.Module,
    config: PolynomialDecay,
    *,
    include: Patterns = None,
    exclude: Patterns = None,
    example_inputs: Any = None,
) -> nn.Module:
    if include is not None or exclude is not None:
        raise ConfigError("PolynomialDecay takes include=/exclude= in the config itself")
    if config.due(0):
        config.apply_(model, 0)
    return model


METHODS.add(PolynomialDecay.method, PolynomialDecay)
register_method(PolynomialDecay, _apply_schedule)


class PruningStepper:
    """Keeps pruning going in your own training loop: call :meth:`step` after each
    ``optimizer.step()``.

    With a :class:`PolynomialDecay` ``schedule`` it applies the step-0 masks when built (as
    ``prune_(model, schedule)`` does) and re-masks to ``schedule.sparsity(steps)`` when due, as
    ``fit(..., callbacks=[schedule])`` would; with or without one, it re-zeroes every pruned weight
    after the step, which an optimizer with stale momentum (Adam's moments, SGD's velocity built
    before pruning) would otherwise move until the next forward pass. k-means centroids and
    fake-quantization scales need nothing: they are ordinary parameters any optimizer trains.
    ``state_dict``/``load_state_dict`` save and restore the step count with your checkpoint.

    >>> from deepshrink.prune import sparsity
    >>> model = nn.Sequential(nn.Linear(8, 8))
    >>> schedule = PolynomialDecay(final_sparsity=0.5, begin_step=0, end_step=4, frequency=2)
    >>> stepper = PruningStepper(model, schedule)
    >>> for _ in range(4):
    ...     stepper.step()  # after optimizer.step()
    >>> stepper.steps, round(sparsity(model), 2)
    (4, 0.5)
    """

    def __init__(
        self, model: nn.Module, schedule: PolynomialDecay | None = None, *, steps: int = 0
    ) -> None:
        if schedule is not None and not isinstance(schedule, PolynomialDecay):
            raise ConfigError(
                f"PruningStepper steps a PolynomialDecay schedule, got {type(schedule).__name__}; "
                "apply one-shot methods with prune_(model, config) and step without a schedule"
            )
        if steps < 0:
            raise ConfigError(f"steps (optimizer steps already done) must be ≥ 0, got {steps}")
        self.model, self.schedule, self.steps = model, schedule, steps
        if schedule is not None and steps == 0 and schedule.due(0):
            schedule.apply_(model, 0)

    @property
    def sparsity(self) -> float | None:
        """The schedule's target sparsity now (``None`` without a schedule)."""
        return None if self.schedule is None else self.schedule.sparsity(self.steps)

    def step(self) -> None:
        """Count one optimizer step; re-mask when the schedule is due, re-zero pruned weights."""
        self.steps += 1
        if self.schedule is not None:
            self.schedule.update_(self.model, self.steps)
        else:
            enforce_masks_(self.model)

    def state_dict(self) -> dict[str, int]:
        return {"steps": self.steps}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.steps = int(state["steps"])

    def hf_callback(self) -> Any:
        """A Hugging Face ``TrainerCallback`` that steps this stepper after each optimizer step
        (``transformers`` is imported here, not when deepshrink is)."""
        from transformers import TrainerCallback

        stepper = self

        class _PruningCallback(TrainerCallback):  # type: ignore[misc]
            def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
                while stepper.steps < state.global_step:  # one call per optimizer step
                    stepper.step()

        return _PruningCallback()


@dataclass(frozen=True)
class IterativeStep:
    """One round of :func:`iterative_prune`: what was pruned and the accuracy around fine-tuning."""

    step: int
    sparsity: float
    accuracy_pruned: float | None
    accuracy: float | None


def round_config(config: PruneConfig, step: int, steps: int) -> PruneConfig:
    """The config for round ``step`` of ``steps``, each removing the same share of survivors."""
    if isinstance(config, MagnitudePruning) and config.sparsity is not None:
        overrides = {
            k: iterative_sparsities(v, steps)[step - 1] for k, v in config.overrides.items()
        }
        value = iterative_sparsities(config.sparsity, steps)[step - 1]
        return config.model_copy(update={"sparsity": value, "overrides": overrides})
    if isinstance(config, NeuronPruning) and config.physical:
        share = {k: iterative_sparsities(v, steps)[0] for k, v in config.overrides.items()}
        ratio = iterative_sparsities(config.ratio, steps)[0]  # of the units still there
        return config.model_copy(update={"ratio": ratio, "overrides": share})
    if isinstance(config, NeuronPruning):
        overrides = {
            k: iterative_sparsities(v, steps)[step - 1] for k, v in config.overrides.items()
        }
        ratio = iterative_sparsities(config.ratio, steps)[step - 1]
        return config.model_copy(update={"ratio": ratio, "overrides": overrides})
    raise ConfigError(
        f"iterative_prune needs MagnitudePruning(sparsity=...) or NeuronPruning, got {config!r}"
    )


def iterative_prune(
    model: nn.Module,
    data: Any,
    target: PruneConfig,
    steps: int,
    fine_tune: FitConfig | Mapping[str, Any] | None = None,
    *,
    include: Patterns = None,
    exclude: Patterns = None,
    loss_hooks: Sequence[LossHook] = (),
    callbacks: Sequence[Callback] = (),
) -> list[IterativeStep]:
    """Prune toward ``target`` in ``steps`` rounds, fine-tuning with ``fit`` after each.

    Every round removes the same share of the weights (or units) still there, so round ``i`` of
    ``n`` reaches ``1 − (1 − target)^(i/n)``. ``fine_tune`` holds the ``fit`` settings of each
    round (default one epoch); ``loss_hooks`` can add :func:`distillation_loss`. Accuracy is
    measured on ``data.test`` (or ``data.val``) before and after each fine-tune.
    """
    if not isinstance(steps, int) or steps < 1:
        raise ConfigError(f"steps must be a positive number of rounds, got {steps!r}")
    settings = fit_settings(fine_tune)
    results = []
    for step in range(1, steps + 1):
        prune_(model, round_config(target, step, steps), include=include, exclude=exclude)
        before = held_out_accuracy(model, data)
        fit(model, data, loss_hooks=loss_hooks, callbacks=callbacks, progress=False, **settings)
        results.append(
            IterativeStep(step, measured_sparsity(model), before, held_out_accuracy(model, data))
        )
        logger.info("iterative pruning %d/%d: %s", step, steps, results[-1])
    return results


def fit_settings(fine_tune: FitConfig | Mapping[str, Any] | None) -> dict[str, Any]:
    if fine_tune is None:
        return {"epochs": 1}
    if isinstance(fine_tune, FitConfig):
        return fine_tune.model_dump()
    return dict(fine_tune)


def held_out_accuracy(model: nn.Module, data: Any) -> float | None:
    split = getattr(data, "val", None)
    split = getattr(data, "test", None) if split is None else split
    return None if split is None else evaluate(model, split).top1
