"""deepshrink: make trained PyTorch networks small and fast, and prove it.

>>> import deepshrink as ds
>>> model = ds.zoo.create("digits_mlp")
>>> data = ds.data.load("digits")
>>> history = ds.train.fit(model, data, epochs=2, progress=False)
>>> report = ds.evaluate(model, data.test, latency=False)
>>> report.parameters
17226

The subpackages: ``zoo`` (reference models), ``data`` (datasets), ``train`` (fit, evaluate,
checkpoints), ``eval`` (measurement and reports) and ``prune`` (weight and neuron pruning).
``import deepshrink`` stays light: no onnx, yaml, matplotlib, click or scikit-learn here.
"""

from __future__ import annotations

from deepshrink import data, errors, eval, prune, train, zoo
from deepshrink.errors import (
    ConfigError,
    DataError,
    DeepshrinkError,
    FormatError,
    UnknownNameError,
)
from deepshrink.eval import Report, compare
from deepshrink.eval import report as evaluate
from deepshrink.prune import (
    ChannelPruning,
    MagnitudePruning,
    NeuronPruning,
    PolynomialDecay,
    finalize_,
    prune_,
)
from deepshrink.train import fit, load_checkpoint, save_checkpoint

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "DataError",
    "DeepshrinkError",
    "FormatError",
    "ChannelPruning",
    "MagnitudePruning",
    "NeuronPruning",
    "PolynomialDecay",
    "Report",
    "UnknownNameError",
    "__version__",
    "compare",
    "data",
    "errors",
    "eval",
    "evaluate",
    "finalize_",
    "fit",
    "load_checkpoint",
    "prune",
    "prune_",
    "save_checkpoint",
    "train",
    "zoo",
]
