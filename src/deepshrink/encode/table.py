"""Per-layer size accounting as in Deep Compression's Tables 2–5, from actual encoded bytes.

The tensors are coded twice with the file's settings: with fixed-width fields only (P+Q) and
with Huffman codes where smaller (P+Q+H). For every coded tensor (not stored raw) a row gives its
weights, the share kept, the bits per kept weight of the weight stream (codebook and code indices,
or the values) and of the index stream (relative indices, fillers included), and its compression
rate (dense bytes ÷ its bytes, section framing included); beside them, the Shannon entropy and the
Huffman mean code length of each stream, in bits per symbol. Tensors stored raw (biases, BN)
share one row. The totals divide the dense bytes of all tensors by the whole file (header
included).

>>> import torch
>>> from torch import nn
>>> torch.manual_seed(0) and None
>>> layer = nn.Linear(64, 64)
>>> keep = torch.rand(64, 64) < 0.1
>>> with torch.no_grad():
...     _ = layer.weight.copy_(torch.where(keep, 0.25 * layer.weight.sign(), 0.0))
>>> table = size_table(layer)
>>> row = table.rows[0]
>>> row.name, row.weights, round(row.kept_percent) in (9, 10, 11)
('weight', 4096, True)
>>> row.rate_pqh >= row.rate_pq > 1
True
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from deepshrink.encode.config import EncodeConfig
from deepshrink.encode.container import encode_all, pack, split_aliases
from deepshrink.encode.streams import SECTION_OVERHEAD
from deepshrink.encode.tensors import Encoded
from deepshrink.errors import ConfigError, FormatError

__all__ = ["LayerSize", "SizeTable", "size_table"]

_INDEX_ROLES = ("gaps", "gaps.lengths")


@dataclass
class LayerSize:
    """One row of the size table (bits are per kept weight; rates are dense ÷ coded bytes)."""

    name: str
    weights: int
    kept: int
    weight_bits_pq: float
    weight_bits_pqh: float
    index_bits_pq: float
    index_bits_pqh: float
    bytes_pq: int
    bytes_pqh: int
    dense_bytes: int
    weight_entropy: float | None = None
    weight_huffman_bits: float | None = None
    index_entropy: float | None = None
    index_huffman_bits: float | None = None

    @property
    def kept_percent(self) -> float:
        return 100 * self.kept / self.weights if self.weights else 0.0

    @property
    def rate_pq(self) -> float:
        return self.dense_bytes / self.bytes_pq if self.bytes_pq else float("inf")

    @property
    def rate_pqh(self) -> float:
        return self.dense_bytes / self.bytes_pqh if self.bytes_pqh else float("inf")


@dataclass
class SizeTable:
    """Rows per coded tensor, one row for the raw ones, and totals with the header included."""

    rows: list[LayerSize]
    total: LayerSize
    header_bytes_pq: int
    header_bytes_pqh: int
    file_bytes: int | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        def row(item: LayerSize) -> dict[str, Any]:
            extra = {"kept_percent": item.kept_percent, "rate_pq": item.rate_pq}
            return {**asdict(item), **extra, "rate_pqh": item.rate_pqh}

        return {
            "rows": [row(r) for r in self.rows],
            "total": row(self.total),
            "header_bytes_pq": self.header_bytes_pq,
            "header_bytes_pqh": self.header_bytes_pqh,
            "file_bytes": self.file_bytes,
        }

    def to_markdown(self) -> str:
        """The table in Markdown, columns as in Han et al. 2016 plus entropy vs Huffman."""
        lines = [
            "| tensor | #weights | weights % (P) | weight bits (P+Q) | weight bits (P+Q+H) "
            "| index bits (P+Q) | index bits (P+Q+H) | compress rate (P+Q) "
            "| compress rate (P+Q+H) | weight entropy / Huffman | index entropy / Huffman |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for item in [*self.rows, self.total]:
            lines.append(
                f"| {item.name} | {item.weights:,} | {item.kept_percent:.1f}% "
                f"| {_bits(item.weight_bits_pq)} | {_bits(item.weight_bits_pqh)} "
                f"| {_bits(item.index_bits_pq)} | {_bits(item.index_bits_pqh)} "
                f"| {item.rate_pq:.1f}× | {item.rate_pqh:.1f}× "
                f"| {_pair(item.weight_entropy, item.weight_huffman_bits)} "
                f"| {_pair(item.index_entropy, item.index_huffman_bits)} |"
            )
        lines.append("")
        lines.append(
            f"Header (prelude and compressed JSON): {self.header_bytes_pq:,} B (P+Q), "
            f"{self.header_bytes_pqh:,} B (P+Q+H); totals are {self.total.bytes_pq:,} B and "
            f"{self.total.bytes_pqh:,} B."
        )
        lines += self.notes
        return "\n".join(lines)


def _bits(value: float) -> str:
    return f"{value:.2f}" if value else "–"


def _pair(entropy: float | None, huffman: float | None) -> str:
    return "–" if entropy is None or huffman is None else f"{entropy:.2f} / {huffman:.2f}"


def _role_bytes(item: Encoded, roles: tuple[str, ...] | None) -> int:
    """Payload bytes of the sections in ``roles`` (all sections when ``None``)."""
    return sum(len(data) for role, data in item.sections if roles is None or role in roles)


def _coded_bytes(item: Encoded) -> int:
    return _role_bytes(item, None) + SECTION_OVERHEAD * len(item.sections)


def _row(name: str, tensor: torch.Tensor, pq: Encoded, pqh: Encoded) -> LayerSize:
    kept = max(int(pqh.stats["nonzero"]), 1)
    index_pq, index_pqh = _role_bytes(pq, _INDEX_ROLES), _role_bytes(pqh, _INDEX_ROLES)
    weight_pq = _role_bytes(pq, None) - index_pq
    weight_pqh = _role_bytes(pqh, None) - index_pqh
    values, gaps = pqh.stats.get("values", {}), pqh.stats.get("gaps", {})
    return LayerSize(
        name=name,
        weights=tensor.numel(),
        kept=int(pqh.stats["nonzero"]),
        weight_bits_pq=8 * weight_pq / kept,
        weight_bits_pqh=8 * weight_pqh / kept,
        index_bits_pq=8 * index_pq / kept,
        index_bits_pqh=8 * index_pqh / kept,
        bytes_pq=_coded_bytes(pq),
        bytes_pqh=_coded_bytes(pqh),
        dense_bytes=tensor.numel() * tensor.element_size(),
        weight_entropy=values.get("entropy"),
        weight_huffman_bits=values.get("huffman_bits"),
        index_entropy=gaps.get("entropy"),
        index_huffman_bits=gaps.get("huffman_bits"),
    )


def _sum(name: str, rows: list[LayerSize], bytes_pq: int, bytes_pqh: int) -> LayerSize:
    kept = max(sum(r.kept for r in rows), 1)

    def bits(attribute: str) -> float:
        return sum(getattr(r, attribute) * max(r.kept, 1) for r in rows) / kept

    return LayerSize(
        name=name,
        weights=sum(r.weights for r in rows),
        kept=sum(r.kept for r in rows),
        weight_bits_pq=bits("weight_bits_pq"),
        weight_bits_pqh=bits("weight_bits_pqh"),
        index_bits_pq=bits("index_bits_pq"),
        index_bits_pqh=bits("index_bits_pqh"),
        bytes_pq=bytes_pq,
        bytes_pqh=bytes_pqh,
        dense_bytes=sum(r.dense_bytes for r in rows),
    )


def _source(
    source: str | os.PathLike[str] | nn.Module | Mapping[str, torch.Tensor],
) -> tuple[dict[str, torch.Tensor], dict[str, Any], int | None]:
    """Tensors, the header fields to reproduce (arch, structure, encoding) and the file size."""
    if isinstance(source, (str, os.PathLike)):
        from deepshrink.encode.api import read

        container = read(source)
        return container.tensors, container.header, Path(source).stat().st_size
    if isinstance(source, nn.Module):
        from deepshrink.graph import structure_of
        from deepshrink.zoo import arch_of

        fields = {"arch": arch_of(source), "structure": structure_of(source)}
        return dict(source.state_dict()), fields, None
    return dict(source), {"arch": None}, None


def _stored_config(encoding: dict[str, Any] | None, source: Any) -> EncodeConfig:
    """The settings a file was written with (defaults for a model or state dict)."""
    if encoding is None:
        return EncodeConfig()
    try:
        return EncodeConfig(**encoding)
    except ConfigError as exc:
        raise FormatError(f"{source}: header: 'encoding' is not valid: {exc}") from None


def size_table(
    source: str | os.PathLike[str] | nn.Module | Mapping[str, torch.Tensor],
    config: EncodeConfig | None = None,
) -> SizeTable:
    """Deep Compression's per-layer size table for a ``.dsz`` file, a model or a state dict.

    A file is re-coded with the settings stored in it (unless ``config`` is given); its actual
    size is reported as ``file_bytes``.
    """
    tensors, fields, file_bytes = _source(source)
    if isinstance(source, nn.Module) and config is not None and config.batchnorm == "fold":
        from deepshrink.encode.api import model_state

        tensors = model_state(source, config)  # as save() would store it
    tensors, aliases = split_aliases(tensors)  # a tied tensor is stored (and counted) once
    if config is None:
        config = _stored_config(fields.get("encoding"), source)
    coded = {}
    for huffman in (False, True):
        variant = config.model_copy(update={"huffman": huffman})
        items = encode_all(tensors, variant)
        data = pack(tensors, variant, arch=fields.get("arch"),
                    structure=fields.get("structure"), metadata=fields.get("metadata"),
                    encoded=items, aliases=aliases)  # fmt: skip
        coded[huffman] = (items, len(data) - sum(_coded_bytes(i) for i in items))
    rows, raw = [], []
    for (name, tensor), pq, pqh in zip(
        tensors.items(), coded[False][0], coded[True][0], strict=True
    ):
        row = _row(name, tensor, pq, pqh)
        (raw if pqh.entry["layout"] in ("raw", "support") else rows).append(row)
    if raw:
        rows.append(_sum(f"{len(raw)} raw tensors", raw, sum(r.bytes_pq for r in raw),
                         sum(r.bytes_pqh for r in raw)))  # fmt: skip
    header_pq, header_pqh = coded[False][1], coded[True][1]
    total = _sum("total", rows, sum(r.bytes_pq for r in rows) + header_pq,
                 sum(r.bytes_pqh for r in rows) + header_pqh)  # fmt: skip
    return SizeTable(rows, total, header_pq, header_pqh, file_bytes)
