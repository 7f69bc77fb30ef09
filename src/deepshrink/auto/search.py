"""``auto_compress``: give a byte or accuracy-drop budget, get a ``.dsz`` file that meets it.

1. **Scan** (:func:`~deepshrink.auto.candidates.scan`): per layer, every sparsity × k-means width,
   costed in encoded bytes and in loss on held-out *training* samples (a split of the train set).
2. **Allocate** (:func:`~deepshrink.auto.allocate.allocate`, or ``policy="uniform"``): the options
   with the least summed loss under the budget. The allocation's model (no fine-tune) is encoded
   for real; if the file misses the budget the allocation is redone with the overshoot taken off.
3. **Compress and fine-tune** with distillation from the original model (masks, then shared
   centroids held), write the file, and check the **delivered** size: a miss is logged and the
   next, smaller allocation is tried; the run never reports success on an estimate.
4. The test set is used once, at the end, on the model loaded back from the file.

With ``max_accuracy_drop`` a ladder of byte budgets is tried without fine-tuning (which also
gives the size–accuracy front of the report); the smallest rung within the drop on held-out data
is compressed and fine-tuned, and the next larger rung taken if the fine-tuned model misses it.
"""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from torch import nn

from deepshrink.auto import state
from deepshrink.auto.allocate import allocate, smallest_total, uniform
from deepshrink.auto.candidates import Option, measure, weight_layer_names
from deepshrink.auto.compress import (
    FineTune,
    apply_prune_,
    apply_share_,
    delivered_bytes,
    fine_tune_,
)
from deepshrink.auto.estimate import estimate
from deepshrink.errors import ConfigError

if TYPE_CHECKING:
    from deepshrink.auto.latency_search import LatencyResult

__all__ = ["AutoResult", "auto_compress"]

logger = logging.getLogger(__name__)

SPARSITIES = (0.0, 0.5, 0.7, 0.8, 0.9, 0.95, 0.97, 0.98, 0.99)
BITS = (2, 3, 4, 5, 6, 8)
Policy = Literal["auto", "uniform"]


@dataclass
class AutoResult:
    """What ``auto_compress`` delivered, how it chose, and what it measured."""

    policy: str
    budget: dict[str, float]
    path: str
    delivered_bytes: int
    predicted_bytes: int
    layers: dict[str, dict[str, Any]]
    reference: dict[str, float]
    held_out_accuracy: float
    test_accuracy: float | None
    original_test_accuracy: float | None
    attempts: list[dict[str, Any]] = field(default_factory=list)
    front: list[dict[str, Any]] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def auto_compress(
    model: nn.Module,
    data: Any,
    *,
    max_bytes: float | None = None,
    max_accuracy_drop: float | None = None,
    out: str | Path = "runs/auto",
    policy: Policy = "auto",
    sparsities: tuple[float, ...] = SPARSITIES,
    bits: tuple[int, ...] = BITS,
    fine_tune: FineTune | None = None,
    held_out: int = 5000,
    scan_samples: int = 2000,
    include: Any = None,
    exclude: Any = None,
    resume: bool = False,
    evaluate_test: bool = True,
    max_latency_ms: float | None = None,
    speedup: float | None = None,
    runtime: str = "onnx",
    latency: dict[str, Any] | None = None,
) -> AutoResult | LatencyResult:
    """Compress ``model`` (not changed) to meet ``max_bytes`` (bytes of the delivered ``.dsz``)
    or ``max_accuracy_drop`` (percentage points on held-out training data); writes
    ``out/model.dsz`` and ``out/auto.json``. ``data`` is a :class:`deepshrink.data.Data`.

    ``max_latency_ms`` or ``speedup`` (× faster than the model's fp32 ONNX export, batch 1)
    instead cut channel widths and deliver ``out/model.onnx``, checked in ONNX Runtime
    (:mod:`deepshrink.auto.latency_search`; ``latency``: its other keyword arguments, e.g.
    ``steps``, ``round_to``, ``batch``, ``rounds``)."""
    budgets = [max_bytes, max_accuracy_drop, max_latency_ms, speedup]
    if sum(b is not None for b in budgets) != 1:
        raise ConfigError("give exactly one budget: max_bytes= (file size), max_accuracy_drop=, "
                          "max_latency_ms= or speedup= (ONNX Runtime latency)")  # fmt: skip
    if max_latency_ms is not None or speedup is not None:
        return _latency(model, data, max_latency_ms, speedup, runtime, out, policy, fine_tune,
                        held_out, scan_samples, resume, evaluate_test, latency or {})  # fmt: skip
    if max_bytes is not None and not max_bytes > 0:
        raise ConfigError(f"max_bytes must be > 0, got {max_bytes}")
    if max_accuracy_drop is not None and not 0 <= max_accuracy_drop < 100:
        raise ConfigError(f"max_accuracy_drop is in percentage points [0, 100), got "
                          f"{max_accuracy_drop}")  # fmt: skip
    settings = fine_tune or FineTune()
    began = time.perf_counter()
    folder = state.prepare(out, resume)
    teacher = copy.deepcopy(model).eval()
    train, held = state.split(data, held_out, settings.seed, settings.train_samples)
    layers = weight_layer_names(model, include, exclude)
    expected = estimate(teacher, train, options=len(layers) * len(sparsities) * len(bits),
                        scan_samples=min(scan_samples, len(held)), held_out=len(held),
                        epochs=settings.prune_epochs + settings.share_epochs,
                        batch_size=settings.batch_size)  # fmt: skip
    logger.info("auto: expected time %s", expected.text())
    table, reference = state.cached_scan(
        folder, teacher, held, layers, sparsities, bits, scan_samples, settings.seed, resume
    )
    seconds = {"scan": time.perf_counter() - began}
    fixed = state.fixed_bytes(teacher, layers)
    pick = allocate if policy == "auto" else uniform
    front = _front(teacher, table, fixed, held, scan_samples, pick, settings.seed)
    seconds["front"] = time.perf_counter() - began - seconds["scan"]
    budgets = _budgets(max_bytes, max_accuracy_drop, front, reference)
    run = _Run(teacher, train, held, table, fixed, pick, settings, folder, resume)
    result = run.first_that_fits(budgets, max_accuracy_drop)
    seconds["compress"] = time.perf_counter() - began - seconds["scan"] - seconds["front"]
    test, original = _test(result["model"], teacher, data, folder, evaluate_test)
    report = AutoResult(
        policy=policy,
        budget={"max_bytes": max_bytes} if max_bytes is not None
        else {"max_accuracy_drop": max_accuracy_drop},
        path=str(folder / "model.dsz"), delivered_bytes=result["bytes"],
        predicted_bytes=result["predicted"],
        layers={name: o.to_dict() for name, o in result["allocation"].items()},
        reference={"loss": reference[0], "accuracy": reference[1]},
        held_out_accuracy=result["held_out_accuracy"], test_accuracy=test,
        original_test_accuracy=original, attempts=run.attempts, front=front,
        seconds={**seconds, "total": time.perf_counter() - began,
                 "expected": expected.total_seconds},
    )  # fmt: skip
    state.write_report(folder, report.to_dict())
    logger.info("auto: %s delivered %s bytes (%s); held-out accuracy %.2f%%, test %s",
                policy, f"{report.delivered_bytes:,}", report.path,
                100 * report.held_out_accuracy,
                "n/a" if test is None else f"{100 * test:.2f}%")  # fmt: skip
    return report


def _latency(
    model: nn.Module, data: Any, max_ms: float | None, speedup: float | None, runtime: str,
    out: str | Path, policy: str, fine_tune: FineTune | None, held_out: int, scan_samples: int,
    resume: bool, evaluate_test: bool, options: dict[str, Any],
) -> LatencyResult:  # fmt: skip
    from deepshrink.auto.latency_search import LatencyBudget, compress_to_latency

    if runtime != "onnx":
        raise ConfigError(f"runtime {runtime!r}: latency budgets are measured in ONNX Runtime "
                          "only; use runtime='onnx'")  # fmt: skip
    if speedup is not None and not speedup > 1:
        raise ConfigError(f"speedup must be more than 1 (× faster than the fp32 export), got "
                          f"{speedup}")  # fmt: skip
    if max_ms is not None and not max_ms > 0:
        raise ConfigError(f"max_latency_ms must be > 0, got {max_ms}")
    timing = {k: options.pop(k) for k in ("batch", "rounds") if k in options}
    budget = LatencyBudget(speedup=speedup, max_latency_ms=max_ms, **timing)
    return compress_to_latency(
        model, data, budget, out=out, policy=policy, fine_tune=fine_tune, held_out=held_out,
        scan_samples=scan_samples, resume=resume, evaluate_test=evaluate_test, **options,
    )  # fmt: skip


def _front(
    teacher: nn.Module, table: dict[str, list[Option]], fixed: int, held: Any, samples: int,
    pick: Any, seed: int, rungs: int = 10,
) -> list[dict[str, Any]]:  # fmt: skip
    """Allocations along a ladder of budgets, encoded and measured without fine-tuning."""
    from deepshrink.auto.candidates import _batches

    least = smallest_total(table, fixed)
    most = fixed + sum(max(o.bytes for o in options) for options in table.values())
    batches = _batches(held, samples)
    points = []
    for index in range(rungs):
        budget = int(least * (most / least) ** (index / (rungs - 1)))
        try:
            allocation = pick(table, budget, fixed=fixed)
        except ConfigError:
            continue
        trial = apply_share_(apply_prune_(copy.deepcopy(teacher), allocation), allocation, seed)
        size = delivered_bytes(trial)
        loss, accuracy = measure(trial, batches)
        points.append({"budget": budget, "bytes": size, "loss": loss, "accuracy": accuracy,
                       "layers": {n: o.label for n, o in allocation.items()}})  # fmt: skip
        logger.info("auto front %d/%d: budget %s B -> file %s B, held-out accuracy %.2f%% "
                    "(no fine-tune)", index + 1, rungs, f"{budget:,}", f"{size:,}",
                    100 * accuracy)  # fmt: skip
    return points


def _budgets(
    max_bytes: float | None, drop: float | None, front: list[dict[str, Any]],
    reference: tuple[float, float],
) -> list[int]:  # fmt: skip
    """Byte budgets to try in order: the one given, or the front's rungs within the drop."""
    if max_bytes is not None:
        return [int(max_bytes)]
    assert drop is not None
    fine = [p for p in front if 100 * (reference[1] - p["accuracy"]) <= drop]
    larger = sorted({p["bytes"] for p in front})
    start = min((p["bytes"] for p in fine), default=larger[-1])
    return [b for b in larger if b >= start]


class _Run:
    """Compression attempts: allocate, check the encoded size, fine-tune, check the file."""

    def __init__(self, teacher: nn.Module, train: Any, held: Any, table: dict[str, list[Option]],
                 fixed: int, pick: Any, settings: FineTune, folder: Path,
                 resume: bool) -> None:  # fmt: skip
        self.teacher, self.train, self.held, self.table = teacher, train, held, table
        self.fixed, self.pick, self.settings, self.folder = fixed, pick, settings, folder
        self.resume = resume
        self.attempts: list[dict[str, Any]] = []
        self._missed = 0

    def first_that_fits(self, budgets: list[int], drop: float | None) -> dict[str, Any]:
        original = None if drop is None else _held_accuracy(self.teacher, self.held)
        for budget in budgets:
            result = self.within(budget)
            if original is None:
                return result
            lost = 100 * (original - result["held_out_accuracy"])  # same samples on both sides
            if lost <= drop:
                return result
            logger.warning("auto: %s bytes lose %.2f pp on held-out data after fine-tuning, "
                           "more than %.2f; taking the next larger budget",
                           f"{budget:,}", lost, drop)  # fmt: skip
        raise ConfigError(
            f"no candidate kept the accuracy drop within {drop} pp on held-out training data, "
            "even the largest; allow a larger drop or add wider options (lower sparsity)"
        )

    def _allocation(self, budget: int, limit: float) -> tuple[dict[str, Option], int, int]:
        """The allocation whose untuned model encodes within ``limit`` bytes."""
        target = limit
        for tries in range(8):
            allocation = self.pick(self.table, target, fixed=self.fixed)
            predicted = self.fixed + sum(o.bytes for o in allocation.values())
            trial = apply_share_(apply_prune_(copy.deepcopy(self.teacher), allocation),
                                 allocation, self.settings.seed)  # fmt: skip
            size = delivered_bytes(trial)
            labels = {n: o.label for n, o in allocation.items()}
            self.attempts.append({"budget": budget, "target": target, "predicted": predicted,
                                  "encoded_untuned": size, "layers": labels})  # fmt: skip
            if size <= limit:
                return allocation, predicted, size
            logger.warning("auto: allocation for %s B encodes to %s B (predicted %s B), over "
                           "%s B; taking the next smaller candidate", f"{target:,.0f}",
                           f"{size:,}", f"{predicted:,}", f"{limit:,.0f}")  # fmt: skip
            # take the prediction's error off, and a growing margin so that the choice changes
            target = min(target - 1, limit - (size - predicted)) - 16 * 2**tries
        raise ConfigError(f"no allocation encoded within {limit:,.0f} bytes after 8 tries")

    def within(self, budget: int) -> dict[str, Any]:
        """Compress within ``budget``; retry smaller when the delivered file misses it."""
        target: float = budget
        for attempt in range(4):
            allocation, predicted, untuned = self._allocation(budget, target)
            logger.info(
                "auto allocation (%s B): %s",
                f"{budget:,}",
                ", ".join(f"{n} {o.label}" for n, o in allocation.items()),
            )
            model = self._compressed(allocation, attempt, budget)
            path = self.folder / "model.dsz"
            size = delivered_bytes(model, path) if model is not None else self._missed
            self.attempts[-1]["delivered" if model is not None else "encoded_shared"] = size
            if model is not None and size <= budget:
                accuracy = _held_accuracy(model, self.held)
                self.attempts[-1]["held_out_accuracy"] = accuracy
                return {"model": model, "allocation": allocation, "bytes": size,
                        "predicted": predicted, "held_out_accuracy": accuracy}  # fmt: skip
            logger.warning(
                "auto: the %s file is %s B, over the %s B budget; taking the next smaller "
                "candidate",
                "delivered" if model is not None else "shared (before its fine-tune)",
                f"{size:,}",
                f"{budget:,}",
            )
            # fine-tuning moved the coded size by (size - untuned): leave that room, and more
            target = budget - max(size - untuned, size - budget) - 16 * 2**attempt
        raise ConfigError(f"the delivered file missed {budget:,} bytes after 4 attempts")

    def _compressed(
        self, allocation: dict[str, Option], attempt: int, budget: int
    ) -> nn.Module | None:
        """The compressed, fine-tuned model; None (size in ``_missed``) if, once shared after
        the pruning fine-tune, it already encodes over ``budget``."""
        key = state.allocation_key(allocation, attempt)
        s = self.settings
        model = state.load_phase(self.folder, "pruned", key, self.teacher)
        if model is None:
            model = apply_prune_(copy.deepcopy(self.teacher), allocation)
            fine_tune_(model, self.teacher, self.train, self.held, epochs=s.prune_epochs,
                       lr=s.prune_lr, settings=s, phase="pruning",
                       checkpoint_dir=state.fit_dir(self.folder, "prune", key),
                       resume=self.resume)  # fmt: skip
            state.save_phase(self.folder, "pruned", key, model)
        apply_share_(model, allocation, s.seed)
        self._missed = delivered_bytes(model)
        if self._missed > budget:
            return None
        fine_tune_(model, self.teacher, self.train, self.held, epochs=s.share_epochs,
                   lr=s.share_lr, settings=s, phase="sharing",
                   checkpoint_dir=state.fit_dir(self.folder, "share", key),
                   resume=self.resume)  # fmt: skip
        return model


def _held_accuracy(model: nn.Module, held: Any) -> float:
    from deepshrink.train import evaluate

    return float(evaluate(model, held).top1 or 0.0)


def _test(
    model: nn.Module, teacher: nn.Module, data: Any, folder: Path, enabled: bool
) -> tuple[float | None, float | None]:
    """Test accuracy of the model loaded back from the file, and of the original (once, last)."""
    from deepshrink import load
    from deepshrink.train import evaluate

    test = getattr(data, "test", None)
    if not enabled or test is None or len(test) == 0:
        return None, None
    from deepshrink import finalize_

    loaded = load(folder / "model.dsz", finalize_(copy.deepcopy(model)))
    accuracy = float(evaluate(loaded, test).top1 or 0.0)
    original = float(evaluate(teacher, test).top1 or 0.0)
    logger.info("auto: test accuracy %.2f%% (original %.2f%%), measured once at the end",
                100 * accuracy, 100 * original)  # fmt: skip
    return accuracy, original
