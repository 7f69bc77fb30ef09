"""One tensor of a ``.dsz`` file: the smallest of raw, dense codebook and sparse layouts.

Every tensor is handled as the integer bit patterns of its elements (``float32`` as ``int32``,
``bool`` as ``uint8``), so decoding is bit-exact for any value, ``-0.0`` and NaN payloads
included, and "zero" means all bits zero. Layouts:

* ``raw``: the elements, little-endian (biases, BN parameters, anything incompressible);
* ``dense``: a codebook of the distinct values (≤ 256 non-zero ones, and zero) and one code
  index per element (Q);
* ``sparse``: relative indices of the stored entries (P) with either a codebook and code indices
  (P+Q) or the values themselves; each stream fixed-width or Huffman (H), whichever is smaller;
* ``support``: a bool tensor equal to ``other != 0`` for an earlier tensor ``other`` (a pruning
  mask beside its weight) costs no bytes at all.

>>> import torch
>>> weights = torch.tensor([0.0, 0.5, 0.0, 0.0, -0.5, 0.5] * 100)
>>> encoded = encode_tensor("w", weights, EncodeConfig())
>>> encoded.entry["layout"], encoded.entry["codebook"], encoded.entry["gaps"]["coding"]
('sparse', 2, 'huffman')
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from deepshrink.encode.config import EncodeConfig
from deepshrink.encode.streams import (
    SECTION_OVERHEAD,
    Stream,
    decode_stream,
    encode_stream,
    stream_cost,
)
from deepshrink.errors import ConfigError
from deepshrink.functional.sparse import entry_count, from_relative, gap_counts, to_relative

__all__ = [
    "DTYPES",
    "MAX_CODEBOOK",
    "Encoded",
    "decode_tensor",
    "dtype_name",
    "encode_tensor",
    "narrowed",
]

#: Most distinct *non-zero* values a codebook holds (k-means with 8 bits); zero may come on top
#: (as code 0), for the zeros of a dense tensor or the filler entries of a sparse one.
MAX_CODEBOOK = 256

#: dtype name in the header → (torch dtype, integer dtype of the same width).
DTYPES: dict[str, tuple[torch.dtype, torch.dtype]] = {
    "float32": (torch.float32, torch.int32),
    "float64": (torch.float64, torch.int64),
    "float16": (torch.float16, torch.int16),
    "bfloat16": (torch.bfloat16, torch.int16),
    "int64": (torch.int64, torch.int64),
    "int32": (torch.int32, torch.int32),
    "int16": (torch.int16, torch.int16),
    "int8": (torch.int8, torch.int8),
    "uint8": (torch.uint8, torch.uint8),
    "bool": (torch.bool, torch.uint8),
}
_NAMES = {dtype: name for name, (dtype, _) in DTYPES.items()}


def dtype_name(dtype: torch.dtype) -> str:
    """The header name of ``dtype``; ``ConfigError`` for dtypes the format does not hold."""
    if dtype not in _NAMES:
        raise ConfigError(
            f"cannot store {dtype} tensors in a .dsz file; supported: {sorted(DTYPES)}"
        )
    return _NAMES[dtype]


def _numpy_dtype(name: str) -> np.dtype:
    return np.dtype(str(DTYPES[name][1]).removeprefix("torch.")).newbyteorder("<")


def patterns(tensor: torch.Tensor) -> np.ndarray:
    """The elements of ``tensor`` as flat integer bit patterns (a NumPy array)."""
    _, bits_dtype = DTYPES[dtype_name(tensor.dtype)]
    flat = tensor.detach().cpu().contiguous().reshape(-1)
    return flat.view(bits_dtype).numpy()


@dataclass
class Encoded:
    """A coded tensor: its header entry, its sections in file order, and statistics."""

    entry: dict[str, Any]
    sections: list[tuple[str, bytes]]
    stats: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Parts:
    """Bit patterns of a tensor split into non-zero positions, their distinct values and codes."""

    bits: np.ndarray
    positions: np.ndarray
    values: np.ndarray
    distinct: np.ndarray | None = None  # None: more than MAX_CODEBOOK values
    codes: np.ndarray | None = None
    counts: np.ndarray | None = None

    @classmethod
    def of(cls, bits: np.ndarray) -> _Parts:
        positions = np.flatnonzero(bits)
        values = bits[positions]
        sample = values[:: max(1, values.size // 4096)]
        if np.unique(sample).size > MAX_CODEBOOK:  # too many values already: skip the full sort
            return cls(bits, positions, values)
        distinct, codes, counts = np.unique(values, return_inverse=True, return_counts=True)
        return cls(bits, positions, values, distinct, codes.reshape(-1), counts)


def _codebook_counts(parts: _Parts, zeros: int) -> np.ndarray:
    """Code histogram of a codebook that puts zero first when ``zeros`` entries are zero."""
    assert parts.counts is not None
    return np.concatenate([[zeros], parts.counts]) if zeros else parts.counts


def _values_cost(parts: _Parts, zeros: int, itemsize: int, huffman: bool) -> float:
    if parts.distinct is None or len(parts.distinct) > MAX_CODEBOOK:
        return math.inf
    size = len(parts.distinct) + (zeros > 0)
    counts = _codebook_counts(parts, zeros)
    return size * itemsize + SECTION_OVERHEAD + stream_cost(counts, size, huffman)[0]


def _plan(
    parts: _Parts, shape: tuple[int, ...], itemsize: int, config: EncodeConfig
) -> tuple[str, int | None]:
    """The cheapest layout and, for ``sparse``, its index width."""
    size = parts.bits.size
    best: tuple[float, str, int | None] = (size * itemsize + SECTION_OVERHEAD, "raw", None)
    if size == 0:
        return "raw", None
    dense = _values_cost(parts, size - parts.positions.size, itemsize, config.huffman)
    best = min(best, (dense, "dense", None))
    for bits in config.bits_for(shape):
        entries = entry_count(parts.positions, size, bits)
        fillers = entries - parts.positions.size
        values = _values_cost(parts, fillers, itemsize, config.huffman)
        values = min(values, entries * itemsize + SECTION_OVERHEAD)
        gaps = stream_cost(gap_counts(parts.positions, size, bits), 1 << bits, config.huffman)[0]
        best = min(best, (gaps + values, "sparse", bits))
    return best[1], best[2]


def _codebook_stream(
    parts: _Parts, codes: np.ndarray, zeros: int, itemsize_dtype: np.dtype, huffman: bool
) -> tuple[int, list[tuple[str, bytes]], Stream]:
    """Codebook section and code-index stream; zero (when present) is code 0."""
    book = (
        np.concatenate([np.zeros(1, parts.distinct.dtype), parts.distinct])
        if zeros
        else parts.distinct
    )
    stream = encode_stream(codes, book.size, "values", huffman=huffman)
    return book.size, [("codebook", book.astype(itemsize_dtype).tobytes())], stream


def narrowed(tensor: torch.Tensor, config: EncodeConfig) -> tuple[torch.Tensor, str | None]:
    """``tensor`` rounded to ``config.floats`` and that dtype's name, or ``(tensor, None)``.

    Only float32/float64 tensors whose finite values all fit are narrowed. Zero stays zero and
    non-zero stays non-zero (a value that would round to zero keeps the narrow type's smallest
    subnormal magnitude), so the sparsity pattern, and any mask that follows it, is unchanged.
    """
    if config.floats == "exact" or tensor.dtype not in (torch.float32, torch.float64):
        return tensor, None
    narrow = DTYPES[config.floats][0]
    source = tensor.detach()
    out = source.to(narrow)
    if bool((torch.isinf(out) & torch.isfinite(source)).any()):
        return tensor, None  # out of the narrow type's range: keep the tensor exact
    lost = (out == 0) & (source != 0)
    if bool(lost.any()):  # the smallest subnormal (bit pattern 1), with the value's sign
        tiny = torch.ones(1, dtype=DTYPES[config.floats][1]).view(narrow)
        out = torch.where(lost, torch.where(source < 0, -tiny, tiny), out)
    return out, config.floats


def encode_tensor(
    name: str, tensor: torch.Tensor, config: EncodeConfig, support: torch.Tensor | None = None
) -> Encoded:
    """Code ``tensor`` in its smallest layout (``support`` is the tensor a mask may follow)."""
    dtype = dtype_name(tensor.dtype)
    entry: dict[str, Any] = {"name": name, "dtype": dtype, "shape": list(tensor.shape)}
    tensor, stored = narrowed(tensor, config)
    if stored is not None:
        entry["stored"] = stored
    little = _numpy_dtype(stored or dtype)
    bits = patterns(tensor)
    stats: dict[str, Any] = {"numel": bits.size, "nonzero": int(np.count_nonzero(bits))}
    if support is not None and _follows(bits, support):
        return Encoded({**entry, "layout": "support", "of": support_name(name)}, [], stats)
    parts = _Parts.of(bits)
    layout, index_bits = _plan(parts, tuple(tensor.shape), little.itemsize, config)
    if layout == "raw":
        return Encoded({**entry, "layout": "raw"}, [("raw", bits.astype(little).tobytes())], stats)
    if layout == "dense":
        zeros = bits.size - parts.positions.size
        codes = np.zeros(bits.size, dtype=np.int64)
        codes[parts.positions] = parts.codes + (zeros > 0)
        size, sections, stream = _codebook_stream(parts, codes, zeros, little, config.huffman)
        stats["values"] = stream.stats
        entry.update(layout="dense", codebook=size, values=stream.spec)
        return Encoded(entry, sections + stream.sections, stats)
    assert index_bits is not None
    return _encode_sparse(entry, parts, index_bits, little, config, stats)


def _encode_sparse(
    entry: dict[str, Any],
    parts: _Parts,
    index_bits: int,
    little: np.dtype,
    config: EncodeConfig,
    stats: dict[str, Any],
) -> Encoded:
    gaps, slots = to_relative(parts.positions, parts.bits.size, index_bits)
    gap_stream = encode_stream(gaps, 1 << index_bits, "gaps", huffman=config.huffman)
    zeros = gaps.size - parts.positions.size
    entry.update(
        layout="sparse", entries=int(gaps.size), index_bits=index_bits, gaps=gap_stream.spec
    )
    sections = list(gap_stream.sections)
    stats.update(entries=int(gaps.size), gaps=gap_stream.stats)
    book = _values_cost(parts, zeros, little.itemsize, config.huffman)
    if book <= gaps.size * little.itemsize + SECTION_OVERHEAD:
        codes = np.zeros(gaps.size, dtype=np.int64)
        codes[slots] = parts.codes + (zeros > 0)
        size, book_sections, stream = _codebook_stream(parts, codes, zeros, little, config.huffman)
        entry.update(codebook=size, values=stream.spec)
        stats["values"] = stream.stats
        return Encoded(entry, sections + book_sections + stream.sections, stats)
    values = np.zeros(gaps.size, dtype=parts.bits.dtype)
    values[slots] = parts.values
    entry.update(codebook=0)
    return Encoded(entry, [*sections, ("values", values.astype(little).tobytes())], stats)


def support_name(mask_name: str) -> str:
    """The tensor a mask buffer ``<name>_mask`` belongs to."""
    return mask_name.removesuffix("_mask")


def _follows(bits: np.ndarray, support: torch.Tensor) -> bool:
    """Whether bool patterns ``bits`` equal ``support != 0`` (bitwise)."""
    other = patterns(support)
    return other.shape == bits.shape and bool(np.array_equal(bits != 0, other != 0))


#: Reads the next section: (role, exact length or None) → payload.
Take = Callable[[str, "int | None"], bytes]


def decode_tensor(
    entry: dict[str, Any], take: Take, earlier: dict[str, torch.Tensor]
) -> torch.Tensor:
    """Rebuild a tensor from its header entry and sections; ``ValueError`` when malformed.

    Every size is checked against the bytes actually present before anything is allocated.
    """
    torch_dtype, _ = DTYPES[entry["dtype"]]
    stored = entry.get("stored", entry["dtype"])  # a narrower float type the values were kept in
    little = _numpy_dtype(stored)
    shape = entry["shape"]
    numel = math.prod(shape)
    layout = entry["layout"]
    if layout == "raw":
        bits = np.frombuffer(take("raw", numel * little.itemsize), dtype=little)
    elif layout == "support":
        source = earlier.get(entry.get("of") or "")
        if entry["dtype"] != "bool":
            raise ValueError(f"only bool tensors follow another, not {entry['dtype']}")
        if source is None or list(source.shape) != shape:
            raise ValueError(f"it follows {entry.get('of')!r}, no earlier tensor of shape {shape}")
        bits = (patterns(source) != 0).astype(little)
    elif layout == "dense":
        bits = _read_values(entry, take, numel, little)
    else:
        bits = _decode_sparse(entry, take, numel, little)
    if entry["dtype"] == "bool" and bits.size and int(bits.max()) > 1:
        raise ValueError("a bool tensor holds values other than 0 and 1")
    native = bits.astype(little.newbyteorder("="))
    tensor = torch.from_numpy(native).view(DTYPES[stored][0])
    return tensor.to(torch_dtype).reshape(shape)


def _read_values(entry: dict[str, Any], take: Take, count: int, little: np.dtype) -> np.ndarray:
    """``count`` values: codebook + code indices, or (codebook 0) the values themselves."""
    size = entry.get("codebook") or 0
    if size == 0:
        return np.frombuffer(take("values", count * little.itemsize), dtype=little)
    if not 1 <= size <= MAX_CODEBOOK + 1 or entry.get("values") is None:
        raise ValueError(
            f"a codebook of {size} values; at most {MAX_CODEBOOK + 1}, with code indices"
        )
    book = np.frombuffer(take("codebook", size * little.itemsize), dtype=little)
    return book[decode_stream(entry["values"], take, "values", count, size)]


def _decode_sparse(entry: dict[str, Any], take: Take, numel: int, little: np.dtype) -> np.ndarray:
    entries, index_bits = entry.get("entries"), entry.get("index_bits")
    if entries is None or index_bits is None or entry.get("gaps") is None:
        raise ValueError("a sparse tensor needs 'entries', 'index_bits' and 'gaps'")
    if entries > numel or numel > (entries + 1) << index_bits:
        raise ValueError(
            f"{entries} entries of {index_bits}-bit relative indices cannot describe "
            f"{numel} elements"
        )
    gaps = decode_stream(entry["gaps"], take, "gaps", entries, 1 << index_bits)
    positions = from_relative(gaps, numel, index_bits)
    values = _read_values(entry, take, entries, little)
    bits = np.zeros(numel, dtype=little)
    bits[positions] = values
    return bits
