"""Quantization: k-means weight sharing, quantization-aware training, mixed precision.

>>> import torch
>>> from torch import nn
>>> import deepshrink.quantize as dq
>>> model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4))
>>> _ = dq.quantize_(model, dq.KMeansQuantization(bits=4))    # shared, trainable centroids
>>> type(model[0]).__name__, model[0].weight_centroids.numel()
('SharedLinear', 16)
>>> _ = dq.finalize_(model)                                    # plain weights again
>>> type(model[0]).__name__, len(model[0].weight.unique()) <= 16
('Linear', True)

Methods (each a frozen config, applied by :func:`quantize_`):

- :class:`KMeansQuantization` (``"kmeans"``): per-layer 1-D k-means over the non-zero weights;
  ``bits`` per layer kind and per layer glob; ``linear``, ``density`` or ``random``
  initialisation. Fine-tune the centroids with :func:`deepshrink.train.fit`; :func:`finalize_`
  makes the sharing permanent.
- :class:`QuantAwareTraining` (``"qat"``): BatchNorm folded, fake-quantized weights and layer
  inputs trained through (``docs/qat.md``); export with ``ds.export(model, path, int8=True)``.
- :class:`MixedPrecision` (``"mixed"``): each layer's weights at its own width, from globs or
  assigned from a sensitivity scan under an average-bits or size budget.

Methods that measure the model take ``calibration=`` data. Each records its change in the
model's structure record, so :func:`deepshrink.train.load_checkpoint` rebuilds quantized models.

Affine quantization: ``QuantScheme`` and ``Observer`` describe and measure a grid;
``fake_quantize_`` simulates post-training quantization in PyTorch at any bit width. Real int8
execution goes through ``deepshrink.export`` (ONNX Runtime).
"""

from __future__ import annotations

from deepshrink.quantize.api import finalize_, quantize_, register_method
from deepshrink.quantize.calibration import (
    calibration_batches,
    calibration_inputs,
    input_batches,
)
from deepshrink.quantize.config import (
    METHODS,
    KMeansQuantization,
    QuantizeConfig,
    quantization,
)
from deepshrink.quantize.fake_quant import FakeQuantize
from deepshrink.quantize.fold import fold_batchnorm_
from deepshrink.quantize.kmeans import finalize_kmeans_, quantize_kmeans_, shareable_layers
from deepshrink.quantize.mixed import (
    MixedPrecision,
    allocate_bits,
    assign_bits,
    bit_sensitivity,
    layer_bits_of,
    quantize_mixed_,
)
from deepshrink.quantize.observers import OBSERVERS, Observer, QuantScheme
from deepshrink.quantize.ptq import (
    calibrate_activations,
    fake_quantize_,
    quantize_weights_,
    remove_fake_quantization_,
)
from deepshrink.quantize.qat import (
    QuantAwareTraining,
    convert_qat_,
    is_qat,
    prepare_qat_,
    qat_layers,
)
from deepshrink.quantize.shared import is_shared, share_, unshare_

register_method(KMeansQuantization, quantize_kmeans_, finalize_kmeans_)
register_method(QuantAwareTraining, prepare_qat_, needs_data=True)
register_method(MixedPrecision, quantize_mixed_, needs_data=lambda config: config.automatic)

__all__ = [
    "METHODS",
    "KMeansQuantization",
    "FakeQuantize",
    "QuantAwareTraining",
    "convert_qat_",
    "fold_batchnorm_",
    "is_qat",
    "prepare_qat_",
    "qat_layers",
    "QuantizeConfig",
    "finalize_",
    "is_shared",
    "quantization",
    "quantize_",
    "register_method",
    "shareable_layers",
    "share_",
    "unshare_",
    "OBSERVERS",
    "Observer",
    "QuantScheme",
    "calibrate_activations",
    "calibration_batches",
    "calibration_inputs",
    "input_batches",
    "fake_quantize_",
    "quantize_weights_",
    "remove_fake_quantization_",
    "MixedPrecision",
    "allocate_bits",
    "assign_bits",
    "bit_sensitivity",
    "layer_bits_of",
]
