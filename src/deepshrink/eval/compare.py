"""Before/after comparison of two :class:`~deepshrink.eval.report.Report` objects.

Every ratio is ``before / after``, so a number above 1 means the compressed model is smaller or
faster; accuracy changes are ``after - before`` in percentage points. A ratio is ``None`` when
either side is missing or zero.

Speed is claimed only from a side-by-side measurement (:func:`deepshrink.eval.timing.
compare_speed`: both models in one process, alternating, by thread CPU time, with an interval),
passed as ``speed=``; its verdict is what the table says ("1.58× faster (1.55–1.61)" or "no
measurable change"). Latencies of two reports measured at different times are shown, but their
ratio is not a claim: the change column says "timed separately: no claim".
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any

from deepshrink.eval import _units
from deepshrink.eval.agreement import accuracy_interval
from deepshrink.eval.report import LARGE_BATCH, Report
from deepshrink.eval.timing import Speed

__all__ = ["Comparison", "compare"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Comparison:
    """Ratios (before / after) and accuracy changes (percentage points) between two reports."""

    before: Report
    after: Report
    compression: float | None
    dense_compression: float | None
    gzip_compression: float | None
    parameters_ratio: float | None
    nonzero_ratio: float | None
    macs_ratio: float | None
    speedup_batch1: float | None
    speedup_batch64: float | None
    accuracy_delta: float | None
    #: Side-by-side speed of ``after`` against ``before`` per batch size (``None``: not measured).
    speed: dict[int, Speed] | None = None
    #: Where ``speed`` was measured: "PyTorch", "ONNX Runtime", "LiteRT".
    speed_runtime: str = "PyTorch"
    #: Samples whose predicted class differs between ``before`` and ``after``.
    changed_predictions: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """Both reports and every ratio as a plain dict."""
        return dataclasses.asdict(self)

    def rows(self) -> list[tuple[str, str, str, str]]:
        """``(metric, before, after, change)`` rows of :meth:`to_markdown`."""
        b, a = self.before, self.after
        fewer, smaller = ("fewer", "more"), ("smaller", "larger")
        sparsity_delta = 100 * (a.sparsity - b.sparsity)
        table = [
            ("top-1 accuracy (95% interval)", _accuracy, b, a, _units.points(self.accuracy_delta)),
            ("test samples", _units.count, b.samples, a.samples, self._changed_text()),
            ("parameters", _units.count, b.parameters, a.parameters,
             _units.ratio(self.parameters_ratio, *fewer)),
            ("non-zero parameters", _units.count, b.nonzero_parameters, a.nonzero_parameters,
             _units.ratio(self.nonzero_ratio, *fewer)),
            ("sparsity", _units.percent, b.sparsity, a.sparsity, _units.points(sparsity_delta)),
            ("MACs (batch 1)", _units.macs, b.macs, a.macs, _units.ratio(self.macs_ratio, *fewer)),
            ("dense fp32 size", _units.size, b.dense_bytes, a.dense_bytes,
             _units.ratio(self.dense_compression, *smaller)),
            ("file on disk", _units.size, b.file_bytes, a.file_bytes,
             _units.ratio(self.compression, *smaller)),
            ("file gzipped", _units.size, b.gzip_bytes, a.gzip_bytes,
             _units.ratio(self.gzip_compression, *smaller)),
            (*self._latency(1, b.latency_ms_batch1, a.latency_ms_batch1),
             self._speed_text(1, self.speedup_batch1)),
            (*self._latency(LARGE_BATCH, b.latency_ms_batch64, a.latency_ms_batch64),
             self._speed_text(LARGE_BATCH, self.speedup_batch64)),
        ]  # fmt: skip
        return [(label, show(x), show(y), change) for label, show, x, y, change in table]

    def _latency(self, batch: int, before: float | None, after: float | None) -> tuple[Any, ...]:
        """The row's label and values: side-by-side thread CPU medians when measured so."""
        if self.speed and batch in self.speed:
            speed = self.speed[batch]
            label = f"latency, batch {batch} ({self.speed_runtime}, side by side)"
            return label, _units.milliseconds, speed.baseline_cpu_ms, speed.cpu_ms
        return f"latency, batch {batch}", _units.milliseconds, before, after

    def _changed_text(self) -> str:
        """ "7 predictions changed (1.94%)", or "" when not counted."""
        changed, total = self.changed_predictions, self.after.samples
        if changed is None:
            return ""
        share = f" ({_units.percent(changed / total)})" if total else ""
        return f"{changed:,} prediction{'' if changed == 1 else 's'} changed{share}"

    def _speed_text(self, batch: int, ratio: float | None) -> str:
        if self.speed and batch in self.speed:
            return self.speed[batch].text()
        return "n/a" if ratio is None else "timed separately: no claim"

    def to_markdown(self) -> str:
        """A Markdown table: metric | before | after | change."""
        return _units.table(("metric", "before", "after", "change"), self.rows())

    def __str__(self) -> str:
        return self.to_markdown()


def compare(
    before: Report,
    after: Report,
    *,
    speed: dict[int, Speed] | None = None,
    speed_runtime: str = "PyTorch",
    changed_predictions: int | None = None,
) -> Comparison:
    """Ratios ``before / after`` of sizes, counts and latency, and the accuracy change.

    ``speed`` is a side-by-side measurement (``compare_speed`` or ``compare_calls``) made in
    ``speed_runtime``; ``changed_predictions`` counts samples whose class changed
    (:func:`deepshrink.eval.agreement.changed_predictions`).

    >>> base = Report(parameters=1000, nonzero_parameters=1000, macs=500, dense_bytes=4000,
    ...               file_bytes=4100, gzip_bytes=3900, accuracy=0.98)
    >>> small = Report(parameters=1000, nonzero_parameters=100, macs=500, dense_bytes=4000,
    ...                file_bytes=410, gzip_bytes=390, accuracy=0.975)
    >>> result = compare(base, small)
    >>> result.compression, result.nonzero_ratio, round(result.accuracy_delta, 2)
    (10.0, 10.0, -0.5)
    """
    if before.threads != after.threads and None not in (before.threads, after.threads):
        logger.warning(
            "latency measured on %s threads before and %s after; speedups are not like for like",
            before.threads,
            after.threads,
        )
    return Comparison(
        before=before,
        after=after,
        compression=_ratio(before.file_bytes, after.file_bytes),
        dense_compression=_ratio(before.dense_bytes, after.dense_bytes),
        gzip_compression=_ratio(before.gzip_bytes, after.gzip_bytes),
        parameters_ratio=_ratio(before.parameters, after.parameters),
        nonzero_ratio=_ratio(before.nonzero_parameters, after.nonzero_parameters),
        macs_ratio=_ratio(before.macs, after.macs),
        speedup_batch1=_ratio(before.latency_ms_batch1, after.latency_ms_batch1),
        speedup_batch64=_ratio(before.latency_ms_batch64, after.latency_ms_batch64),
        accuracy_delta=_points(before.accuracy, after.accuracy),
        speed=speed,
        speed_runtime=speed_runtime,
        changed_predictions=changed_predictions,
    )


def _accuracy(report: Report) -> str:
    """Top-1 with its Wilson 95 % interval when the samples are known: "98.06% (96.04–99.06)"."""
    if report.accuracy is None or not report.samples:
        return _units.percent(report.accuracy)
    span = accuracy_interval(report.accuracy, report.samples).rstrip("%")
    return f"{_units.percent(report.accuracy)} ({span})"


def _ratio(before: float | None, after: float | None) -> float | None:
    if before is None or after is None or before == 0 or after == 0:
        return None
    return before / after


def _points(before: float | None, after: float | None) -> float | None:
    return None if before is None or after is None else 100 * (after - before)
