"""The ``auto:`` recipe stage: compress to a budget, continue from the delivered file.

```yaml
stages:
  - auto: {max_bytes: 30000, prune_epochs: 1, share_epochs: 1}
  - evaluate: {}
```

The stage runs :func:`deepshrink.auto.auto_compress` in ``<run>/auto/`` (its report is
``auto/auto.json``), then the run continues with the model decoded from ``auto/model.dsz``,
which becomes the delivered file. The test set is left to the ``evaluate`` stage.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from deepshrink.auto.search import BITS, SPARSITIES
from deepshrink.recipe.schema import Stage, _Strict, validated
from deepshrink.recipe.stages import Context, runs, stage_kind

__all__ = ["Auto"]


class Auto(_Strict):
    """A byte budget (``max_bytes``), an accuracy-drop budget (``max_accuracy_drop``, pp), or a
    latency budget in ONNX Runtime (``max_latency_ms``, or ``speedup`` × faster than the fp32
    export, batch 1; channel widths per group, ``steps``/``round_to``, delivered as ONNX)."""

    max_bytes: int | None = Field(None, gt=0)
    max_accuracy_drop: float | None = Field(None, ge=0, lt=100)
    max_latency_ms: float | None = Field(None, gt=0)
    speedup: float | None = Field(None, gt=1)
    runtime: Literal["onnx"] = "onnx"
    steps: int = Field(8, ge=1, le=64)
    round_to: int = Field(8, ge=1, le=1024)
    train_samples: int | None = Field(None, gt=0)
    policy: Literal["auto", "uniform"] = "auto"
    sparsities: tuple[float, ...] = SPARSITIES
    bits: tuple[int, ...] = BITS
    prune_epochs: int = Field(1, ge=0, le=1000)
    share_epochs: int = Field(1, ge=0, le=1000)
    prune_lr: float = Field(0.01, gt=0, le=10)
    share_lr: float = Field(0.001, gt=0, le=10)
    batch_size: int = Field(128, gt=0, le=1 << 20)
    held_out: int = Field(5000, gt=0)
    scan_samples: int = Field(2000, gt=0)

    @model_validator(mode="after")
    def _one_budget(self) -> Auto:
        budgets = (self.max_bytes, self.max_accuracy_drop, self.max_latency_ms, self.speedup)
        if sum(b is not None for b in budgets) != 1:
            raise ValueError(
                "give exactly one budget: max_bytes, max_accuracy_drop, max_latency_ms or speedup"
            )
        if not all(0 <= s < 1 for s in self.sparsities) or not self.sparsities:
            raise ValueError(f"sparsities must be fractions in [0, 1), got {self.sparsities}")
        if not all(1 <= b <= 8 for b in self.bits) or not self.bits:
            raise ValueError(f"bits must be k-means widths from 1 to 8, got {self.bits}")
        return self


@stage_kind("auto", doc="compress to a byte, accuracy-drop or latency budget, checked on the file")
def _parse_auto(settings: dict[str, Any], where: str) -> Auto:
    return validated(Auto, settings, where)


@runs("auto")
def _auto(context: Context, stage: Stage) -> dict[str, Any]:
    from deepshrink.auto.compress import FineTune
    from deepshrink.auto.search import auto_compress
    from deepshrink.encode import load

    s: Auto = stage.settings
    tune = FineTune(
        prune_epochs=s.prune_epochs, share_epochs=s.share_epochs, prune_lr=s.prune_lr,
        share_lr=s.share_lr, batch_size=s.batch_size, threads=context.recipe.threads,
        seed=context.recipe.seed + stage.index, train_samples=s.train_samples,
    )  # fmt: skip
    report = auto_compress(
        context.model, context.data, max_bytes=s.max_bytes,
        max_accuracy_drop=s.max_accuracy_drop, out=context.out / "auto", policy=s.policy,
        sparsities=s.sparsities, bits=s.bits, fine_tune=tune, held_out=s.held_out,
        scan_samples=s.scan_samples, evaluate_test=False, max_latency_ms=s.max_latency_ms,
        speedup=s.speedup, runtime=s.runtime,
        latency={"steps": s.steps, "round_to": s.round_to},
    )  # fmt: skip
    if not hasattr(report, "delivered_bytes"):
        return _latency_summary(context, report)
    context.model = load(report.path, model=context.blank())
    context.artifacts["dsz"] = report.path
    context.artifacts["delivered"] = report.path
    return {
        "file": "auto/model.dsz", "bytes": report.delivered_bytes,
        "held_out_accuracy": report.held_out_accuracy,
        "layers": {n: f"sparsity {o['sparsity']:g}, {o['bits']} bits"
                   for n, o in report.layers.items()},
    }  # fmt: skip


def _latency_summary(context: Context, report: Any) -> dict[str, Any]:
    """Continue from the delivered ONNX file's model (the fine-tuned, channel-pruned one)."""
    from deepshrink.train import load_checkpoint

    context.model, _ = load_checkpoint(report.checkpoint, context.blank())
    context.artifacts["auto/model.onnx"] = report.path
    context.artifacts["delivered"] = report.path
    return {
        "file": "auto/model.onnx", "speed": report.speed["text"],
        "cpu_ms": report.speed["cpu_ms"], "baseline_cpu_ms": report.speed["baseline_cpu_ms"],
        "held_out_accuracy": report.held_out_accuracy, "widths": report.widths,
    }  # fmt: skip
