"""deepshrink: make trained PyTorch networks small and fast, and prove it.

>>> import deepshrink as ds
>>> model = ds.zoo.create("digits_mlp")
>>> data = ds.data.load("digits")
>>> history = ds.train.fit(model, data, epochs=2, progress=False)
>>> report = ds.evaluate(model, data.test, latency=False)
>>> report.parameters
17226

The subpackages: ``zoo`` (reference models), ``data`` (datasets), ``train`` (fit, evaluate,
checkpoints), ``eval`` (measurement and reports), ``prune`` (weight and neuron pruning),
``quantize`` (k-means weight sharing), ``factorize`` (SVD, separable / Tucker-2 / CP
convolutions, Tensor-Train layers; importing it registers the rebuilders that let
``load_checkpoint`` restore factorized models) and ``encode`` (the ``.dsz`` Deep Compression
container: ``save``, ``load``, ``size_table``). ``recipe`` and ``report`` (YAML recipes, reports)
are imported on use.
``import deepshrink`` stays light: no onnx, yaml, matplotlib, click, scikit-learn or tensorly here.
"""

from __future__ import annotations

from deepshrink import data, encode, errors, eval, factorize, prune, quantize, train, zoo
from deepshrink._finalize import finalize_
from deepshrink.auto import auto_compress as auto_compress  # noqa: F401
from deepshrink.encode import EncodeConfig, load, save, size_table
from deepshrink.errors import (
    ConfigError,
    DataError,
    DeepshrinkError,
    FormatError,
    UnknownNameError,
)
from deepshrink.eval import Report, compare
from deepshrink.eval import report as evaluate
from deepshrink.export import export
from deepshrink.factorize import (
    CPFactorization,
    SeparableFactorization,
    SVDFactorization,
    TTFactorization,
    TuckerFactorization,
    factorize_,
)
from deepshrink.prune import (
    ChannelPruning,
    MagnitudePruning,
    NeuronPruning,
    PolynomialDecay,
    prune_,
)
from deepshrink.quantize import KMeansQuantization, quantize_
from deepshrink.train import fit, load_checkpoint, save_checkpoint

__version__ = "0.1.0"

__all__ = [
    "CPFactorization",
    "ConfigError",
    "DataError",
    "DeepshrinkError",
    "EncodeConfig",
    "FormatError",
    "KMeansQuantization",
    "ChannelPruning",
    "MagnitudePruning",
    "NeuronPruning",
    "PolynomialDecay",
    "Report",
    "SVDFactorization",
    "SeparableFactorization",
    "TTFactorization",
    "TuckerFactorization",
    "UnknownNameError",
    "__version__",
    "compare",
    "data",
    "encode",
    "errors",
    "eval",
    "evaluate",
    "factorize",
    "factorize_",
    "export",
    "finalize_",
    "fit",
    "load",
    "load_checkpoint",
    "prune",
    "prune_",
    "quantize",
    "quantize_",
    "save",
    "save_checkpoint",
    "size_table",
    "train",
    "zoo",
]
