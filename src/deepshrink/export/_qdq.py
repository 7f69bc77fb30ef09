"""Store the weights of a QDQ graph as integers: fold ``QuantizeLinear`` of constant tensors.

PyTorch's exporter writes a quantization-aware model's fake-quantized weight as a float
initializer followed by ``QuantizeLinear`` → ``DequantizeLinear``. The float copy makes the file
as large as fp32, and ONNX Runtime repeats the rounding at load time. This pass computes the
``QuantizeLinear`` output once (ONNX's rule: ``saturate(round_half_even(x / scale) +
zero_point)``), stores it as an 8-bit initializer feeding the ``DequantizeLinear``, and removes
the float weight: the file shrinks about 4× and the graph is the QDQ form ONNX Runtime fuses
into integer kernels (``QLinearConv``, ``MatMulInteger``).

:func:`unsigned_weights` then stores int8 weights (of this pass or of ONNX Runtime's quantizer)
as **uint8 with their zero point moved by 128** (``q + 128`` with zero point ``z + 128``: the same
real values, exactly). With uint8 activations ONNX Runtime then runs U8U8 kernels. Its U8S8
kernels on x86 CPUs without AVX-512 VNNI (AVX2, plain
AVX-512) add pairs of u8×s8 products with ``vpmaddubsw``, which saturates at int16: a pair such as
255 × 127 + 255 × 127 = 64,770 is cut to 32,767. A quantization-aware model uses the whole
[-127, 127] weight grid and [0, 255] activation grid, so pairs overflow: measured on the 8×8
digits QAT network on an AVX2 CPU, 0.02 % of the pairs overflow and the int8 file's logits
differed from the QAT model's by 1.68 (bound: one activation step, 0.65); stored as U8U8 they
differ by 0.016. ONNX Runtime's own static and dynamic quantization hit the same overflow (a
random two-input MLP: 25 % of the output range, against 1.3 % when the same QDQ graph is computed
in float). The U8U8 kernels accumulate in int32 on every CPU.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["fold_weight_quantizers", "unsigned_weights"]

#: What a signed 8-bit code is shifted by to store it as unsigned.
_SHIFT = 128


def _constants(graph: Any) -> dict[str, np.ndarray]:
    from onnx import numpy_helper
    from onnx.helper import tensor_dtype_to_np_dtype

    values = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    for node in graph.node:  # topological order: an Identity follows what it copies
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            values[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
        elif node.op_type == "Identity" and node.input[0] in values:
            values[node.output[0]] = values[node.input[0]]
        elif node.op_type == "Cast" and node.input[0] in values:  # unfolded graphs (tied weights)
            to = next(a.i for a in node.attribute if a.name == "to")
            values[node.output[0]] = values[node.input[0]].astype(tensor_dtype_to_np_dtype(to))
    return values


def _quantized(x: np.ndarray, scale: np.ndarray, zero: np.ndarray, axis: int) -> np.ndarray:
    if scale.ndim == 1:
        shape = [1] * x.ndim
        shape[axis % x.ndim] = -1
        scale, zero = scale.reshape(shape), zero.reshape(shape)
    info = np.iinfo(zero.dtype)
    q = np.rint(x.astype(np.float32) / scale.astype(np.float32)) + zero.astype(np.int32)
    return np.clip(q, info.min, info.max).astype(zero.dtype)


def _shifted(values: np.ndarray) -> np.ndarray:
    """int8 codes as uint8 ones for the same real values (+ 128, with the zero point)."""
    return (values.astype(np.int16) + _SHIFT).astype(np.uint8)


def _fold(graph: Any, node: Any, constants: dict[str, np.ndarray]) -> None:
    """Store ``node``'s (a ``QuantizeLinear`` of a constant) output as an 8-bit initializer."""
    from onnx import numpy_helper

    scale, zero = constants[node.input[1]], constants[node.input[2]]
    axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
    values = _quantized(constants[node.input[0]], scale, zero, axis)
    graph.initializer.append(numpy_helper.from_array(values, node.output[0]))


def _drop_unused(graph: Any) -> None:
    """Remove initializers and ``Identity``/``Constant``/``Cast`` nodes nothing reads any more."""
    outputs = {value.name for value in graph.output}
    while True:
        used = {name for node in graph.node for name in node.input} | outputs
        dead = [n for n in graph.node if n.op_type in ("Identity", "Constant", "Cast")
                and not any(out in used for out in n.output)]  # fmt: skip
        for node in dead:
            graph.node.remove(node)
        if not dead:
            break
    for init in [init for init in graph.initializer if init.name not in used]:
        graph.initializer.remove(init)


def fold_weight_quantizers(source: Path, target: Path) -> int:
    """Rewrite ``source`` into ``target`` with constant ``QuantizeLinear`` inputs precomputed.

    Returns the number of folded weights.
    """
    import onnx

    model = onnx.load(str(source))
    graph = model.graph
    constants = _constants(graph)
    initializers = {init.name for init in graph.initializer}
    folds = [n for n in graph.node if n.op_type == "QuantizeLinear" and n.input
             and n.input[0] in initializers]  # fmt: skip
    for node in folds:
        _fold(graph, node, constants)
        graph.node.remove(node)
    _drop_unused(graph)
    onnx.save(model, str(target))
    return len(folds)


#: Integer operators: ``{op: [(weight input, its zero-point input), ...]}``.
_WEIGHT_INPUTS = {
    "DequantizeLinear": [(0, 2)],
    "MatMulInteger": [(1, 3)],
    "ConvInteger": [(1, 3)],
    "DynamicQuantizeMatMul": [(1, 3)],
    "DynamicQuantizeLSTM": [(1, 9), (2, 11)],
}


def _zero_point(node: Any, zero: int, constants: dict[str, np.ndarray]) -> np.ndarray:
    """The node's int8 zero point at input ``zero``, or zeros shaped like its scale."""
    if len(node.input) > zero and node.input[zero]:
        return constants[node.input[zero]]
    scale = node.input[zero - 1] if node.op_type not in ("MatMulInteger", "ConvInteger") else ""
    return np.zeros(constants[scale].shape if scale else (), np.int8)


def unsigned_weights(source: Path, target: Path) -> int:
    """Rewrite ``source`` into ``target`` with int8 weight initializers stored as uint8 (+ 128,
    zero points too), so ONNX Runtime runs U8U8 kernels; return how many were rewritten."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(source))
    graph = model.graph
    initializers = {init.name: init for init in graph.initializer}
    constants = _constants(graph)
    done: set[str] = set()
    for node in graph.node:
        for weight, zero in _WEIGHT_INPUTS.get(node.op_type, []):
            name = node.input[weight] if len(node.input) > weight else ""
            init = initializers.get(name)
            if init is None or (init.data_type != onnx.TensorProto.INT8 and name not in done):
                continue
            if name not in done:  # a weight several nodes share is shifted once
                init.CopyFrom(numpy_helper.from_array(_shifted(numpy_helper.to_array(init)), name))
                done.add(name)
            codes = _zero_point(node, zero, constants)
            zero_name = f"{name}_zero_point_u8"
            if zero_name not in initializers:
                initializers[zero_name] = numpy_helper.from_array(_shifted(codes), zero_name)
                graph.initializer.append(initializers[zero_name])
            while len(node.input) <= zero:
                node.input.append("")
            node.input[zero] = zero_name
    _drop_unused(graph)
    onnx.save(model, str(target))
    return len(done)
