"""The measured facts about one model: accuracy, parameters, non-zeros, MACs, bytes and latency.

:func:`report` (``ds.evaluate`` at the top level) measures everything at once; :class:`Report`
holds the numbers, renders them as Markdown and round-trips through JSON. The accuracy loop of
:mod:`deepshrink.train` is imported on first use, so ``import deepshrink.eval`` does not pull in
the training stack (pydantic configs, data readers).
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from deepshrink import _io
from deepshrink.errors import ConfigError, FormatError
from deepshrink.eval import _units
from deepshrink.eval._inputs import derive_inputs, with_batch_size
from deepshrink.eval.agreement import accuracy_interval
from deepshrink.eval.counts import count_macs, count_nonzero, count_parameters
from deepshrink.eval.latency import measure_latency
from deepshrink.eval.size import dense_bytes, file_bytes, gzip_bytes, saved_size
from deepshrink.eval.timing import _load_average
from deepshrink.graph.io import Select

#: A user loss ``loss(logits, labels) -> Tensor``.
LossFn = Callable[[Tensor, Tensor], Tensor]

__all__ = ["LARGE_BATCH", "Report", "report"]

#: The larger batch size at which :func:`report` measures latency (besides batch 1).
LARGE_BATCH = 64


@dataclass(frozen=True, kw_only=True)
class Report:
    """Accuracy (fractions), sizes (bytes), counts and latency (ms) of one model.

    ``macs`` is for one sample (batch 1). ``dense_bytes`` is parameters × 4 (fp32);
    ``file_bytes``/``gzip_bytes`` are of the actual saved file. Latencies are medians on
    ``threads`` CPU threads (on one thread, of thread CPU time, with wall time and the load
    average in ``extra``), ``None`` when not measured; so are accuracy, top-5, loss and samples
    when no dataset was given. ``extra`` holds further JSON-serialisable facts.

    >>> r = Report(parameters=100, nonzero_parameters=25, macs=1000, dense_bytes=400,
    ...            file_bytes=500, gzip_bytes=200)
    >>> r.sparsity
    0.75
    >>> Report.from_json(r.to_json()) == r
    True
    """

    name: str | None = None
    accuracy: float | None = None
    top5: float | None = None
    loss: float | None = None
    samples: int | None = None
    parameters: int
    nonzero_parameters: int
    macs: int
    dense_bytes: int
    file_bytes: int
    gzip_bytes: int
    latency_ms_batch1: float | None = None
    latency_ms_batch64: float | None = None
    threads: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def sparsity(self) -> float:
        """Fraction of parameters that are zero, ``1 - nonzero_parameters / parameters``."""
        return 1.0 - self.nonzero_parameters / self.parameters if self.parameters else 0.0

    def to_dict(self) -> dict[str, Any]:
        """The fields as a plain dict (a deep copy)."""
        return dataclasses.asdict(self)

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Report:
        """Rebuild a report from :meth:`to_dict`; unknown or missing fields are a ConfigError."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ConfigError(f"unknown Report fields {unknown}; known fields: {sorted(names)}")
        try:
            return cls(**{**data, "extra": dict(data.get("extra") or {})})
        except TypeError as error:
            raise ConfigError(f"incomplete Report: {error}") from None

    @classmethod
    def from_json(cls, text: str) -> Report:
        return cls.from_dict(json.loads(text))

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the report as JSON, atomically."""
        _io.atomic_write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Report:
        """Read a report written by :meth:`save`."""
        try:
            return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
        except json.JSONDecodeError as error:
            raise FormatError(f"{path} is not a JSON report: {error}") from None

    def rows(self) -> list[tuple[str, str]]:
        """``(metric, formatted value)`` pairs, the rows of :meth:`to_markdown`."""
        rows = [
            ("model", self.name or _units.MISSING),
            ("top-1 accuracy", _units.percent(self.accuracy)),
            ("top-1 95% interval", accuracy_interval(self.accuracy, self.samples)),
            ("top-5 accuracy", _units.percent(self.top5)),
            ("loss", _units.MISSING if self.loss is None else f"{self.loss:.4f}"),
            ("test samples", _units.count(self.samples)),
            ("parameters", _units.count(self.parameters)),
            ("non-zero parameters", _units.count(self.nonzero_parameters)),
            ("sparsity", _units.percent(self.sparsity)),
            ("MACs (batch 1)", _units.macs(self.macs)),
            ("dense fp32 size", _units.size(self.dense_bytes)),
            ("file size", _units.size(self.file_bytes)),
            ("gzip size", _units.size(self.gzip_bytes)),
            ("latency, batch 1", _units.milliseconds(self.latency_ms_batch1)),
            (f"latency, batch {LARGE_BATCH}", _units.milliseconds(self.latency_ms_batch64)),
            ("threads", _units.count(self.threads)),
        ]
        return rows + [(str(key), str(value)) for key, value in self.extra.items()]

    def to_markdown(self) -> str:
        """A two-column Markdown table (metric | value) in human units."""
        return _units.table(("metric", "value"), list(self.rows()))

    def __str__(self) -> str:
        return self.to_markdown()


def report(
    model: nn.Module,
    dataset: Any = None,
    *,
    example_inputs: Any = None,
    file: str | os.PathLike[str] | None = None,
    latency: bool = True,
    threads: int | None = None,
    name: str | None = None,
    batch_size: int = 512,
    min_run_time: float = 0.5,
    output: Select = None,
    loss: LossFn | None = None,
) -> Report:
    """Measure ``model``: accuracy on ``dataset``, counts, MACs, bytes and CPU latency.

    ``dataset`` is a dataset, a ``DataLoader`` or any iterable of ``(inputs, labels)`` or dict
    batches; ``output`` picks the logits from the model's output and ``loss`` replaces
    cross-entropy, as in :func:`deepshrink.train.evaluate`. Example inputs (a tensor, a tuple or
    a dict of keyword inputs, dtypes kept) come from ``example_inputs``, else
    ``model.example_inputs()``, else the first sample of ``dataset``; MACs and batch-1 latency
    use one sample, batch-64 latency tiles it. Tied parameters are counted once.
    Sizes are of ``file`` when given, else of the state dict saved with safetensors. The model is
    not changed (its train/eval flags are restored).

    >>> import torch
    >>> model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    >>> r = report(model, example_inputs=torch.zeros(1, 1, 2, 2), latency=False)
    >>> r.parameters, r.macs, r.dense_bytes
    (15, 12, 60)
    """
    single = with_batch_size(derive_inputs(model, dataset, example_inputs), 1)
    file_size, gzip_size = (
        saved_size(model) if file is None else (file_bytes(file), gzip_bytes(file))
    )
    timing: dict[str, Any] = {}
    if latency:  # before accuracy, so that bad timing options fail fast
        timing = _latencies(model, single, threads=threads, min_run_time=min_run_time)
    result = None
    if dataset is not None:
        from deepshrink.train.evaluation import evaluate

        result = evaluate(model, dataset, batch_size=batch_size, output=output, loss=loss)
    return Report(
        name=name if name is not None else type(model).__name__,
        accuracy=None if result is None else result.top1,
        top5=None if result is None else result.top5,
        loss=None if result is None else result.loss,
        samples=None if result is None else result.count,
        parameters=count_parameters(model),
        nonzero_parameters=count_nonzero(model),
        macs=count_macs(model, single),
        dense_bytes=dense_bytes(model),
        file_bytes=file_size,
        gzip_bytes=gzip_size,
        **timing,
    )


def _latencies(
    model: nn.Module, single: Any, *, threads: int | None, min_run_time: float
) -> dict[str, Any]:
    small = measure_latency(model, single, threads=threads, min_run_time=min_run_time)
    large_inputs = with_batch_size(single, LARGE_BATCH)
    large = measure_latency(model, large_inputs, threads=threads, min_run_time=min_run_time)
    if small.cpu_median_seconds is None or large.cpu_median_seconds is None:
        return {"latency_ms_batch1": small.median_ms, "latency_ms_batch64": large.median_ms,
                "threads": small.threads, "extra": {"latency_clock": "wall"}}  # fmt: skip
    # one thread: thread CPU time is the figure (a busy machine does not inflate it), wall beside
    load = _load_average()
    return {
        "latency_ms_batch1": 1e3 * small.cpu_median_seconds,
        "latency_ms_batch64": 1e3 * large.cpu_median_seconds,
        "threads": small.threads,
        "extra": {
            "latency_clock": "thread CPU time",
            "wall_ms_batch1": round(small.median_ms, 4),
            f"wall_ms_batch{LARGE_BATCH}": round(large.median_ms, 4),
            "load_average": None if load is None else [round(x, 2) for x in load],
        },
    }
