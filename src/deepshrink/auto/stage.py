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
    """A byte budget (``max_bytes``) or an accuracy-drop budget (``max_accuracy_drop``, pp)."""

    max_bytes: int | None = Field(None, gt=0)
    max_accuracy_drop: float | None = Field(None, ge=0, lt=100)
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
        if (self.max_bytes is None) == (self.max_accuracy_drop is None):
            raise ValueError("give exactly one budget: max_bytes or max_accuracy_drop")
        if not all(0 <= s < 1 for s in self.sparsities) or not self.sparsities:
            raise ValueError(f"sparsities must be fractions in [0, 1), got {self.sparsities}")
        if not all(1 <= b <= 8 for b in self.bits) or not self.bits:
            raise ValueError(f"bits must be k-means widths from 1 to 8, got {self.bits}")
        return self


@stage_kind("auto", doc="compress to a byte or accuracy-drop budget, checked on the .dsz file")
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
        seed=context.recipe.seed + stage.index,
    )  # fmt: skip
    report = auto_compress(
        context.model, context.data, max_bytes=s.max_bytes,
        max_accuracy_drop=s.max_accuracy_drop, out=context.out / "auto", policy=s.policy,
        sparsities=s.sparsities, bits=s.bits, fine_tune=tune, held_out=s.held_out,
        scan_samples=s.scan_samples, evaluate_test=False,
    )  # fmt: skip
    context.model = load(report.path, model=context.blank())
    context.artifacts["dsz"] = report.path
    context.artifacts["delivered"] = report.path
    return {
        "file": "auto/model.dsz", "bytes": report.delivered_bytes,
        "held_out_accuracy": report.held_out_accuracy,
        "layers": {n: f"sparsity {o['sparsity']:g}, {o['bits']} bits"
                   for n, o in report.layers.items()},
    }  # fmt: skip
