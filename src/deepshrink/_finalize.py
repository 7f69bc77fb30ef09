"""``ds.finalize_``: make every pending method of a model permanent, in one call.

Pruning masks, k-means codebooks and quantization-aware layers are training-time states: they
keep pruned weights at zero, train shared centroids and simulate int8 while you fine-tune.
:func:`finalize_` ends all of them, in this order: quantization-aware layers become plain layers
holding their rounded weights (:func:`deepshrink.quantize.convert_qat_`), shared weights become
plain parameters (tied weights stay one parameter), and masks are written as zeros
(:func:`deepshrink.prune.finalize_`). The model computes what it computed before (a QAT model:
what its fake-quantized weights computed, without the input quantization), and its state dict has
plain keys. Idempotent.

>>> import torch
>>> from torch import nn
>>> import deepshrink as ds
>>> model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2))
>>> _ = ds.prune_(model, ds.MagnitudePruning(sparsity=0.5))
>>> _ = ds.quantize_(model, ds.KMeansQuantization(bits=2))
>>> sorted(finalize_(model).state_dict())
['0.bias', '0.weight', '2.bias', '2.weight']
"""

from __future__ import annotations

from torch import nn

__all__ = ["finalize_"]


def finalize_(model: nn.Module) -> nn.Module:
    """Make masks, shared weights and quantization-aware layers permanent; return ``model``."""
    from deepshrink import prune, quantize

    quantize.convert_qat_(model)
    quantize.finalize_(model)
    prune.finalize_(model)
    return model
