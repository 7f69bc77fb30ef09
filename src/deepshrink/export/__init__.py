"""Export to deployment formats and run the result in its runtime.

``export`` writes ONNX (fp32, fp16 weights, dynamic or static int8); ``evaluate_onnx``,
``predict`` and ``compare_latency`` run the file in ONNX Runtime. onnx and onnxruntime are
imported only inside these functions.
"""

from __future__ import annotations

from deepshrink.export.onnx import ExportError, OnnxExport, export
from deepshrink.export.runtime import (
    compare_latency,
    evaluate_onnx,
    optimized_ops,
    predict,
    session,
)

__all__ = [
    "ExportError",
    "OnnxExport",
    "compare_latency",
    "evaluate_onnx",
    "export",
    "optimized_ops",
    "predict",
    "session",
]
