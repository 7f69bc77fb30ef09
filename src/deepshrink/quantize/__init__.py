"""Quantization: grids and observers, calibration data, and post-training quantization.

``QuantScheme`` and ``Observer`` describe and measure a grid; ``fake_quantize_`` simulates
post-training quantization in PyTorch at any bit width. Real int8 execution goes through
``deepshrink.export`` (ONNX Runtime).
"""

from __future__ import annotations

from deepshrink.quantize.calibration import calibration_batches, calibration_inputs
from deepshrink.quantize.observers import OBSERVERS, Observer, QuantScheme
from deepshrink.quantize.ptq import (
    calibrate_activations,
    fake_quantize_,
    quantize_weights_,
    remove_fake_quantization_,
)

__all__ = [
    "OBSERVERS",
    "Observer",
    "QuantScheme",
    "calibrate_activations",
    "calibration_batches",
    "calibration_inputs",
    "fake_quantize_",
    "quantize_weights_",
    "remove_fake_quantization_",
]
