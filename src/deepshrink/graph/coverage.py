"""What an in-place verb covered: the layers it changed, the ones it skipped and why.

Every method that changes a model (pruning, weight sharing, quantization, factorization) builds a
:class:`Coverage` and hands it to :func:`report_coverage`, which keeps it on the model (read it
back with :func:`coverage_of`), logs it, warns when less than half of the model's weights were
covered, and raises :class:`~deepshrink.errors.ConfigError` listing the reasons when nothing was
changed at all: a call that changes nothing never returns normally.

>>> from torch import nn
>>> model = nn.Linear(4, 2)
>>> cov = Coverage("demo", changed={"": 8}, skipped={}, total=8)
>>> report_coverage(model, cov).fraction
1.0
>>> coverage_of(model)[-1].method
'demo'
>>> report_coverage(model, Coverage("demo", {}, {"emb": "embeddings are not pruned"}, 8))
Traceback (most recent call last):
...
deepshrink.errors.ConfigError: demo changed nothing: emb (embeddings are not pruned)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from deepshrink.errors import ConfigError

__all__ = ["Coverage", "coverage_of", "measure_coverage", "report_coverage"]

logger = logging.getLogger(__name__)
_ATTRIBUTE = "_deepshrink_coverage"
#: Below this share of the model's weights a call is logged as a warning.
WARN_BELOW = 0.5


@dataclass(frozen=True)
class Coverage:
    """``changed``: layer → weights it covers; ``skipped``: layer → why; ``total``: all weights."""

    method: str
    changed: dict[str, int]
    skipped: dict[str, str]
    total: int
    #: The user narrowed the request (``include``/``exclude``): a small share is not a surprise.
    narrowed: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def covered(self) -> int:
        """Weights in the changed layers."""
        return sum(self.changed.values())

    @property
    def fraction(self) -> float:
        """Share of the model's weights in the changed layers (0 when the model has none)."""
        return min(1.0, self.covered / self.total) if self.total else 0.0

    def reasons(self, limit: int = 12) -> str:
        """``"layer (why), ..."`` for the skipped layers, at most ``limit`` of them."""
        items = [f"{name or 'the model'} ({why})" for name, why in self.skipped.items()]
        more = len(items) - limit
        return ", ".join(items[:limit]) + (f" and {more} more" if more > 0 else "")

    def summary(self) -> str:
        """One line: layers changed, share of weights, layers skipped."""
        text = (
            f"{self.method}: {len(self.changed)} layers changed, "
            f"{self.fraction:.1%} of {self.total:,} weights"
        )
        return text + (f"; skipped {self.reasons()}" if self.skipped else "")

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "changed": dict(self.changed),
            "skipped": dict(self.skipped),
            "total": self.total,
            "fraction": self.fraction,
        }


def report_coverage(
    model: nn.Module, coverage: Coverage, *, require_change: bool = True
) -> Coverage:
    """Keep ``coverage`` on ``model``, log it; warn below half; raise when nothing changed."""
    if require_change and not coverage.changed:
        why = coverage.reasons() or "no layer of a type it handles was selected"
        raise ConfigError(f"{coverage.method} changed nothing: {why}")
    model.__dict__.setdefault(_ATTRIBUTE, []).append(coverage)
    if coverage.total and coverage.fraction < WARN_BELOW and not coverage.narrowed:
        logger.warning(
            "%s covers only %.1f%% of the model's weights; skipped %s",
            coverage.method, 100 * coverage.fraction, coverage.reasons() or "nothing",
        )  # fmt: skip
    else:
        logger.info("%s", coverage.summary())
    return coverage


def measure_coverage(
    method: str,
    model: nn.Module,
    changed: list[str],
    skipped: dict[str, str] | None = None,
    *,
    narrowed: bool = False,
) -> Coverage:
    """The coverage of ``method`` having changed the weight slots ``changed`` of ``model``.

    Every other weight slot is skipped (with the reason from ``skipped``, else "not
    selected"); weights of layer types without an adapter are skipped too, and count in the
    total, so the share is of *all* the model's weight matrices.
    """
    from deepshrink.graph.layers import unknown_weights, weight_slots

    slots = weight_slots(model)
    reasons = dict(skipped or {})
    out = {n: reasons.get(n, "not selected") for n in slots if n not in changed}
    out |= {n: why for n, why in reasons.items() if n not in changed and n not in slots}
    unknown = unknown_weights(model)
    out |= {name: why for name, (_, why) in unknown.items()}
    total = sum(s.numel for s in slots.values()) + sum(n for n, _ in unknown.values())
    sizes = {n: slots[n].numel if n in slots else 0 for n in changed}
    return Coverage(method, sizes, out, total, narrowed=narrowed)


def coverage_of(model: nn.Module) -> list[Coverage]:
    """The coverage of every in-place verb applied to ``model``, oldest first."""
    return list(model.__dict__.get(_ATTRIBUTE, []))
