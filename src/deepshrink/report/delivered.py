"""What the delivered file holds, read from the file itself: bytes per layer and bits per weight.

For a ``.dsz`` container this is its size table (Deep Compression's per-layer bits and rates,
from the encoded bytes); for an ``.onnx`` file the bytes of its weight initializers by type and
by layer. ``bits per weight`` is ``8 × stored bytes ÷ the layer's weights`` in the file: codebooks,
indices and scales included, so it is the real cost of a weight on disk.

>>> summary = describe(Path("no/such/file.bin"))
>>> summary["kind"], summary["layers"]
('other', {})
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

__all__ = ["describe", "layer_bits_rows"]


def describe(path: Path) -> dict[str, Any]:
    """``{"kind", "file", "bytes", "layers": {layer: {"weights", "bytes"}}, "markdown"}`` for
    the delivered file at ``path`` (kind ``other`` with no layers for other files)."""
    suffix = path.suffix.lower()
    if suffix == ".dsz" and path.is_file():
        return _dsz(path)
    if suffix == ".onnx" and path.is_file():
        return _onnx(path)
    size = path.stat().st_size if path.is_file() else None
    return {"kind": "other", "file": path.name, "bytes": size, "layers": {}, "markdown": ""}


def _layer(tensor: str) -> str:
    """``fc1.weight`` → ``fc1``; a name without a dot stays as it is."""
    return tensor.rsplit(".", 1)[0] if "." in tensor else tensor


def _dsz(path: Path) -> dict[str, Any]:
    from deepshrink.encode import size_table

    table = size_table(path)
    layers = {
        _layer(row.name): {"weights": row.weights, "bytes": row.bytes_pqh}
        for row in table.rows
        if row.name.endswith("weight")
    }  # fmt: skip
    return {"kind": "dsz", "file": path.name, "bytes": path.stat().st_size, "layers": layers,
            "markdown": table.to_markdown()}  # fmt: skip


def _onnx(path: Path) -> dict[str, Any]:
    """Initializer bytes by ONNX type, and by layer where the name starts with a layer's."""
    import math

    import onnx

    from deepshrink.eval import _units

    graph = onnx.load(str(path), load_external_data=False).graph
    by_type: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    layers: dict[str, dict[str, int]] = defaultdict(lambda: {"weights": 0, "bytes": 0})
    for tensor in graph.initializer:
        count = math.prod(tensor.dims)
        size = count * onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type).itemsize
        kind = onnx.TensorProto.DataType.Name(tensor.data_type).lower()
        by_type[kind][0] += count
        by_type[kind][1] += size
        base = tensor.name.split(".weight")[0] if ".weight" in tensor.name else None
        if base:
            layers[base]["bytes"] += size
            if tensor.name.endswith((".weight", ".weight_quantized")):
                layers[base]["weights"] += count
    rows = [(kind, _units.count(n), _units.size(b)) for kind, (n, b) in sorted(by_type.items())]
    markdown = _units.table(("initializer type", "values", "bytes"), rows)
    return {"kind": "onnx", "file": path.name, "bytes": path.stat().st_size,
            "layers": {k: v for k, v in layers.items() if v["weights"]},
            "markdown": markdown}  # fmt: skip


def layer_bits_rows(layers: dict[str, dict[str, int]], names: list[str]) -> dict[str, str]:
    """Bits per weight in the file for each of ``names`` ("" where the file does not say)."""
    out = {}
    for name in names:
        entry = layers.get(name)
        ok = entry and entry["weights"]
        out[name] = f"{8 * entry['bytes'] / entry['weights']:.2f}" if ok else ""
    return out
