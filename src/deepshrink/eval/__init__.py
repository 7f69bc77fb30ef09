"""Measure models: accuracy, parameters, non-zeros, MACs, bytes on disk and CPU latency.

>>> import torch
>>> from torch import nn
>>> from deepshrink.eval import report
>>> model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
>>> report(model, example_inputs=torch.zeros(1, 1, 2, 2), latency=False).macs
12
"""

from __future__ import annotations

from deepshrink.eval.compare import Comparison, compare
from deepshrink.eval.counts import count_macs, count_nonzero, count_parameters, per_layer_macs
from deepshrink.eval.latency import Latency, measure_latency
from deepshrink.eval.report import Report, report
from deepshrink.eval.size import dense_bytes, file_bytes, gzip_bytes, saved_size

__all__ = [
    "Comparison",
    "Latency",
    "Report",
    "compare",
    "count_macs",
    "count_nonzero",
    "count_parameters",
    "dense_bytes",
    "file_bytes",
    "gzip_bytes",
    "measure_latency",
    "per_layer_macs",
    "report",
    "saved_size",
]
