"""deepshrink: make trained PyTorch networks small and fast, and prove it.

>>> import deepshrink as ds
>>> model = ds.zoo.create("digits_mlp")
>>> data = ds.data.load("digits")
>>> history = ds.train.fit(model, data, epochs=2, progress=False)
>>> report = ds.evaluate(model, data.test, latency=False)
>>> report.parameters
17226

The subpackages: ``zoo`` (reference models), ``data`` (datasets), ``train`` (fit, evaluate,
checkpoints) and ``eval`` (measurement and reports). ``import deepshrink`` stays light: no onnx,
yaml, matplotlib or typer is imported here.
"""

from __future__ import annotations

from deepshrink import data, errors, eval, train, zoo
from deepshrink.errors import (
    ConfigError,
    DataError,
    DeepshrinkError,
    FormatError,
    UnknownNameError,
)
from deepshrink.eval import Report, compare
from deepshrink.eval import report as evaluate
from deepshrink.train import fit, load_checkpoint, save_checkpoint

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "DataError",
    "DeepshrinkError",
    "FormatError",
    "Report",
    "UnknownNameError",
    "__version__",
    "compare",
    "data",
    "errors",
    "eval",
    "evaluate",
    "fit",
    "load_checkpoint",
    "save_checkpoint",
    "train",
    "zoo",
]
