"""Read a TFLite flatbuffer's operators and constant tensors (LiteRT's own schema bindings)."""

from __future__ import annotations

from collections import Counter
from typing import Any

from deepshrink.errors import FormatError

__all__ = ["constants_and_ops"]


def _names(enum_class: Any) -> dict[int, str]:
    return {v: k for k, v in vars(enum_class).items() if not k.startswith("_") and
            isinstance(v, int)}  # fmt: skip


def constants_and_ops(data: bytes) -> tuple[dict[str, int], dict[str, int]]:
    """Operator counts (``{"CONV_2D": 2, ...}``) and bytes of constant tensors by dtype
    (``{"int8": 20280, "int32": 40, ...}``) over all subgraphs of the flatbuffer ``data``."""
    from deepshrink.export._tflite_convert import quiet

    try:
        with quiet():
            from ai_edge_litert import schema_py_generated as schema
    except ImportError:
        from deepshrink.errors import ConfigError
        from deepshrink.export._tflite_convert import INSTALL_HINT

        raise ConfigError(f"reading TFLite files needs ai-edge-litert: {INSTALL_HINT}") from None
    try:
        model = schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
    except Exception as exc:
        raise FormatError(f"not a readable TFLite flatbuffer: {exc}") from None
    builtin, dtypes = _names(schema.BuiltinOperator), _names(schema.TensorType)
    ops: Counter[str] = Counter()
    sizes: Counter[str] = Counter()
    for graph in model.subgraphs or []:
        for op in graph.operators or []:
            code = model.operatorCodes[op.opcodeIndex]
            number = max(code.builtinCode, code.deprecatedBuiltinCode)
            name = builtin.get(number, str(number))
            if name == "CUSTOM" and code.customCode:
                name = f"CUSTOM:{code.customCode.decode(errors='replace')}"
            ops[name] += 1
        for tensor in graph.tensors or []:
            buffer = model.buffers[tensor.buffer] if model.buffers else None
            size = _buffer_bytes(buffer)
            if size:
                sizes[dtypes.get(tensor.type, str(tensor.type)).lower()] += size
    return dict(sorted(ops.items())), dict(sorted(sizes.items()))


def _buffer_bytes(buffer: Any) -> int:
    if buffer is None:
        return 0
    if buffer.data is not None and len(buffer.data):
        return len(buffer.data)
    return int(buffer.size or 0) if (buffer.offset or 0) > 1 else 0
