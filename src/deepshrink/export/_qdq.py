"""Store the weights of a QDQ graph as integers: fold ``QuantizeLinear`` of constant tensors.

PyTorch's exporter writes a quantization-aware model's fake-quantized weight as a float
initializer followed by ``QuantizeLinear`` → ``DequantizeLinear``. The float copy makes the file
as large as fp32, and ONNX Runtime repeats the rounding at load time. This pass computes the
``QuantizeLinear`` output once (ONNX's rule: ``saturate(round_half_even(x / scale) +
zero_point)``), stores it as an int8/uint8 initializer feeding the ``DequantizeLinear``, and
removes the float weight: the file shrinks about 4× and the graph is the QDQ form ONNX Runtime
fuses into integer kernels (``QLinearConv``, ``MatMulInteger``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["fold_weight_quantizers"]


def _constants(graph: Any) -> dict[str, np.ndarray]:
    from onnx import numpy_helper

    values = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    for node in graph.node:  # topological order: an Identity follows what it copies
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            values[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
        elif node.op_type == "Identity" and node.input[0] in values:
            values[node.output[0]] = values[node.input[0]]
    return values


def _quantized(x: np.ndarray, scale: np.ndarray, zero: np.ndarray, axis: int) -> np.ndarray:
    if scale.ndim == 1:
        shape = [1] * x.ndim
        shape[axis % x.ndim] = -1
        scale, zero = scale.reshape(shape), zero.reshape(shape)
    info = np.iinfo(zero.dtype)
    q = np.rint(x.astype(np.float32) / scale.astype(np.float32)) + zero.astype(np.int32)
    return np.clip(q, info.min, info.max).astype(zero.dtype)


def fold_weight_quantizers(source: Path, target: Path) -> int:
    """Rewrite ``source`` into ``target`` with constant ``QuantizeLinear`` inputs precomputed.

    Returns the number of folded weights.
    """
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(source))
    graph = model.graph
    constants = _constants(graph)
    initializers = {init.name for init in graph.initializer}
    kept, folded = [], 0
    for node in graph.node:
        source_name = node.input[0] if node.input else ""
        if node.op_type != "QuantizeLinear" or source_name not in initializers:
            kept.append(node)
            continue
        scale, zero = constants[node.input[1]], constants[node.input[2]]
        axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
        values = _quantized(constants[source_name], scale, zero, axis)
        graph.initializer.append(numpy_helper.from_array(values, node.output[0]))
        folded += 1
    del graph.node[:]
    graph.node.extend(kept)
    used = {name for node in graph.node for name in node.input}
    unused = [init for init in graph.initializer if init.name not in used]
    for init in unused:
        graph.initializer.remove(init)
    onnx.save(model, str(target))
    return folded
