"""Low-rank factorization: SVD of Linear layers, separable / Tucker-2 / CP convolutions, TT layers.

>>> import torch
>>> from deepshrink import zoo
>>> from deepshrink.factorize import SVDFactorization, factorize_
>>> model = zoo.create("lenet300")
>>> model = factorize_(model, SVDFactorization(compression=8), include="fc1")
>>> model.fc1[0].out_features  # largest rank with 784·300 / (rank·(784 + 300)) ≥ 8
27
>>> from deepshrink.graph import structure_of
>>> structure_of(model)[0]["kind"], structure_of(model)[0]["rank"]
('factorize.svd', 27)

Importing this package registers the configs by name (``svd``, ``separable``, ``tucker``,
``cp``, ``tt``) and the rebuilders that let :func:`deepshrink.train.load_checkpoint` recreate
factorized layers on a fresh model.
"""

from __future__ import annotations

# Importing the method modules registers their methods and structure rebuilders.
from deepshrink.factorize import decompose, svd, tt  # noqa: F401
from deepshrink.factorize.api import apply_plan_, factorize_, plan_factorization, select_layers
from deepshrink.factorize.config import (
    FACTORIZATIONS,
    CPFactorization,
    FactorizationConfig,
    Policy,
    SeparableFactorization,
    SVDFactorization,
    TTFactorization,
    TuckerFactorization,
    factorization,
)
from deepshrink.factorize.conv import CPConv2d, SeparableConv2d, TuckerConv2d
from deepshrink.factorize.decompose import cp_conv, separable_conv, tucker_conv
from deepshrink.factorize.policy import Decision
from deepshrink.factorize.svd import SVDLinear
from deepshrink.factorize.sweep import SweepPoint, sweep
from deepshrink.factorize.tt import TTLinear

__all__ = [
    "FACTORIZATIONS",
    "CPConv2d",
    "CPFactorization",
    "Decision",
    "FactorizationConfig",
    "Policy",
    "SVDFactorization",
    "SVDLinear",
    "SeparableConv2d",
    "SeparableFactorization",
    "SweepPoint",
    "TTFactorization",
    "TTLinear",
    "TuckerConv2d",
    "TuckerFactorization",
    "apply_plan_",
    "cp_conv",
    "factorization",
    "factorize_",
    "plan_factorization",
    "select_layers",
    "separable_conv",
    "sweep",
    "tucker_conv",
]
