"""The ``.dsz`` byte layout: prelude, compressed JSON header, sections with length and CRC32.

See ``docs/dsz-format.md`` for the specification. The reader trusts nothing: every length is
compared with the bytes that remain before anything is sliced or allocated, every element count
the header implies is bounded by the bytes of its sections, every CRC32 is checked, and every
problem raises :class:`~deepshrink.errors.FormatError` naming the section.

>>> import torch
>>> data = pack({"w": torch.tensor([0.0, 1.5, 0.0, 0.0])}, EncodeConfig(), arch=None)
>>> data[:4], unpack(data).tensors["w"].tolist()
(b'\\x89DSZ', [0.0, 1.5, 0.0, 0.0])
"""

from __future__ import annotations

import json
import math
import struct
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from deepshrink.encode.config import EncodeConfig
from deepshrink.encode.header import Header, check_header
from deepshrink.encode.tensors import DTYPES, Encoded, decode_tensor, encode_tensor, support_name
from deepshrink.errors import ConfigError, FormatError

__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "MAGIC", "Container", "pack", "unpack"]

MAGIC = b"\x89DSZ\r\n\x1a\n"
FORMAT_NAME = "deepshrink-dsz"
FORMAT_VERSION = 2
#: Versions this reader accepts: 2 adds tensors whose values are kept in a narrower float type
#: (``"stored"``); a writer uses it only for files that need it, so others stay readable by 1.
READ_VERSIONS = (1, 2)
#: magic, version (u16), reserved (u16), header bytes (u32), header size (u32), header CRC (u32)
PRELUDE = struct.Struct("<8sHHIII")
SECTION = struct.Struct("<QI")
#: Largest JSON header a reader inflates: at most 1 MiB + 2 × the file's size, and 64 MiB.
MAX_HEADER_SIZE = 64 << 20
HEADER_BASE = 1 << 20
HEADER_MULTIPLE = 2


@dataclass
class Container:
    """A ``.dsz`` file's contents: its header, its tensors, and per-tensor coding statistics."""

    header: dict[str, Any]
    tensors: dict[str, torch.Tensor]
    stats: dict[str, dict[str, Any]] = field(default_factory=dict)
    section_bytes: dict[str, dict[str, int]] = field(default_factory=dict)
    header_bytes: int = 0


def encode_all(tensors: Mapping[str, torch.Tensor], config: EncodeConfig) -> list[Encoded]:
    """Code every tensor; a ``<name>_mask`` bool tensor may follow its ``<name>``."""
    out = []
    seen: set[str] = set()
    for name, tensor in tensors.items():
        if not isinstance(tensor, torch.Tensor):
            raise ConfigError(
                f"state-dict entry {name!r} is a {type(tensor).__name__}, not a tensor; "
                ".dsz files hold tensors only (convert quantized modules to float first)"
            )
        source = support_name(name)
        # the reader needs the weight before its mask
        follows = tensor.dtype == torch.bool and source != name and source in seen
        out.append(encode_tensor(name, tensor, config, tensors[source] if follows else None))
        seen.add(name)
    return out


def pack(
    tensors: Mapping[str, torch.Tensor],
    config: EncodeConfig,
    *,
    arch: dict[str, Any] | None,
    structure: list[dict[str, Any]] | None = None,
    metadata: dict[str, Any] | None = None,
    encoded: list[Encoded] | None = None,
    aliases: Mapping[str, str] | None = None,
) -> bytes:
    """The bytes of a ``.dsz`` file holding ``tensors`` (coded now unless ``encoded`` given).

    ``aliases`` maps further state-dict names to a stored tensor they are one with (tied
    weights); they cost a header entry, no section."""
    encoded = encode_all(tensors, config) if encoded is None else encoded
    header = {
        "format": FORMAT_NAME,
        "arch": arch,
        "structure": structure or [],
        "metadata": metadata or {},
        "encoding": encoding_record(config),
        "tensors": [item.entry for item in encoded],
    }
    if aliases:
        header["aliases"] = dict(aliases)
    text = json.dumps(header, separators=(",", ":"), sort_keys=True).encode("utf-8")
    compressed = zlib.compress(text, 9)
    version = FORMAT_VERSION if any("stored" in item.entry for item in encoded) else 1
    parts = [
        PRELUDE.pack(MAGIC, version, 0, len(compressed), len(text), zlib.crc32(compressed)),
        compressed,
    ]
    for item in encoded:
        for _, payload in item.sections:
            parts += [SECTION.pack(len(payload), zlib.crc32(payload)), payload]
    return b"".join(parts)


def encoding_record(config: EncodeConfig) -> dict[str, Any]:
    """The header's ``encoding``: the settings, with ``batchnorm`` only when it is not the
    default (so files written without it are byte for byte what they were)."""
    record = config.model_dump(mode="json")
    if record.get("batchnorm") == "exact":
        del record["batchnorm"]
    return record


class _Cursor:
    """Reads a ``.dsz`` byte string front to back, checking each length before slicing."""

    def __init__(self, data: bytes, source: str) -> None:
        self.data, self.source, self.offset = memoryview(data), source, 0

    def fail(self, where: str, problem: str) -> FormatError:
        return FormatError(f"{self.source}: {where}: {problem}")

    def take(self, size: int, where: str) -> bytes:
        left = len(self.data) - self.offset
        if size > left:
            raise self.fail(where, f"needs {size} bytes but only {left} remain (file truncated?)")
        chunk = self.data[self.offset : self.offset + size]
        self.offset += size
        return chunk.tobytes()

    def section(self, where: str, expected: int | None) -> bytes:
        length, crc = SECTION.unpack(self.take(SECTION.size, f"{where} (length and CRC)"))
        if expected is not None and length != expected:
            raise self.fail(where, f"holds {length} bytes; the header implies {expected}")
        payload = self.take(length, where)
        if zlib.crc32(payload) != crc:
            raise self.fail(where, "CRC32 mismatch (the file is corrupted)")
        return payload


def header_cap(file_bytes: int) -> int:
    """Most bytes of JSON the header of a file of ``file_bytes`` may inflate to."""
    return min(MAX_HEADER_SIZE, HEADER_BASE + HEADER_MULTIPLE * file_bytes)


def _read_header(cursor: _Cursor) -> dict[str, Any]:
    magic, version, reserved, size, inflated, crc = PRELUDE.unpack(
        cursor.take(PRELUDE.size, "prelude")
    )
    if magic != MAGIC:
        raise cursor.fail("prelude", "not a .dsz file (wrong magic bytes)")
    if version not in READ_VERSIONS:
        raise cursor.fail(
            "prelude", f"format version {version}; this deepshrink reads versions "
            f"{', '.join(map(str, READ_VERSIONS))} (a newer deepshrink wrote it?)",
        )  # fmt: skip
    if reserved != 0:
        raise cursor.fail("prelude", f"reserved field is {reserved}, must be 0")
    cap = header_cap(len(cursor.data))
    if inflated > cap:
        raise cursor.fail(
            "header", f"claims {inflated} bytes of JSON; a file of {len(cursor.data)} bytes "
            f"may hold at most {cap}",
        )  # fmt: skip
    compressed = cursor.take(size, "header")
    if zlib.crc32(compressed) != crc:
        raise cursor.fail("header", "CRC32 mismatch (the file is corrupted)")
    try:
        inflater = zlib.decompressobj()
        text = inflater.decompress(compressed, inflated + 1)  # never more than claimed + 1
        if len(text) != inflated or not inflater.eof or inflater.unused_data:
            raise cursor.fail("header", f"does not inflate to the {inflated} bytes it claims")
        header = json.loads(text)
    except (zlib.error, ValueError, RecursionError) as exc:
        raise cursor.fail("header", f"not compressed JSON: {exc}") from None
    header = check_header(header, cursor.fail)
    narrowed = [entry["name"] for entry in header["tensors"] if "stored" in entry]
    if version < 2 and narrowed:
        raise cursor.fail("header", f"tensor {narrowed[0]!r} has 'stored', which needs version 2")
    return header


def read_header(data: bytes, source: str = "<bytes>") -> dict[str, Any]:
    """The verified header of a ``.dsz`` byte string whose sections all have valid lengths and
    CRCs (no tensor is decoded)."""
    cursor = _Cursor(data, source)
    header = _read_header(cursor)
    count = 0
    while cursor.offset < len(data):
        cursor.section(f"section {count}", None)
        count += 1
    return header


def declared_shapes(header: dict[str, Any]) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
    """``{name: (shape, dtype)}`` of every tensor a verified header declares, aliases included."""
    shapes = {e["name"]: (tuple(e["shape"]), DTYPES[e["dtype"]][0]) for e in header["tensors"]}
    for alias, stored in header.get("aliases", {}).items():
        shapes[alias] = shapes[stored]
    return shapes


def declared_bytes(header: dict[str, Any]) -> int:
    """Bytes the tensors of a verified header decode to (stored tensors, aliases free)."""
    return sum(math.prod(e["shape"]) * DTYPES[e["dtype"]][0].itemsize for e in header["tensors"])


def check_cap(header: dict[str, Any], cap: int, file_bytes: int, source: str) -> None:
    """:class:`FormatError` if the tensors ``header`` declares decode to more than ``cap``."""
    size = declared_bytes(header)
    if size > cap:
        raise FormatError(
            f"{source}: tensors: declare {size:,} bytes of tensors; this reader's cap for a file "
            f"of {file_bytes:,} bytes is {cap:,} (64 MiB + 64 × the file size; raise it with "
            "max_bytes=)"
        )


def unpack(data: bytes, source: str = "<bytes>", *, max_bytes: int | None = None) -> Container:
    """Parse and verify a ``.dsz`` byte string; :class:`FormatError` on anything malformed.

    The tensors may decode to at most ``max_bytes`` (default 64 MiB + 64 × ``len(data)``),
    checked before any is decoded."""
    from deepshrink.encode.skeleton import default_cap

    cursor = _Cursor(data, source)
    header = _read_header(cursor)
    check_cap(header, default_cap(len(data)) if max_bytes is None else max_bytes, len(data), source)
    tensors: dict[str, torch.Tensor] = {}
    section_bytes: dict[str, dict[str, int]] = {}
    for entry in header["tensors"]:
        name = entry["name"]
        sizes = section_bytes.setdefault(name, {})

        def take(role: str, expected: int | None, name: str = name, sizes: dict = sizes) -> bytes:
            payload = cursor.section(f"tensor {name!r} section {role!r}", expected)
            sizes[role] = len(payload)
            return payload

        try:
            tensors[name] = decode_tensor(entry, take, tensors)
        except (ValueError, IndexError, KeyError, TypeError, OverflowError, RuntimeError,
                MemoryError) as exc:  # fmt: skip
            raise cursor.fail(f"tensor {name!r}", str(exc)) from None
    if cursor.offset != len(data):
        raise cursor.fail("end", f"{len(data) - cursor.offset} bytes after the last section")
    for alias, source in header.get("aliases", {}).items():
        tensors[alias] = tensors[source]  # one tensor, as in the model that was saved
    return Container(header, tensors, section_bytes=section_bytes, header_bytes=header_size(data))


def header_size(data: bytes) -> int:
    """Bytes of the prelude and compressed header at the start of a valid ``.dsz`` string."""
    return PRELUDE.size + PRELUDE.unpack_from(data)[3]


def split_aliases(
    tensors: Mapping[str, torch.Tensor],
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """``(tensors stored once, {alias: stored name})``: entries that are one tensor (same
    storage, offset, shape, strides and dtype — tied weights) are stored under the first name.

    >>> w = torch.ones(2, 2)
    >>> split_aliases({"a": w, "b": w, "c": torch.zeros(1)})[1]
    {'b': 'a'}
    """
    stored: dict[str, torch.Tensor] = {}
    aliases: dict[str, str] = {}
    first: dict[tuple[Any, ...], str] = {}
    for name, tensor in tensors.items():
        if not isinstance(tensor, torch.Tensor) or tensor.numel() == 0:
            stored[name] = tensor
            continue
        key = (tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape),
               tensor.stride(), tensor.dtype, str(tensor.device))  # fmt: skip
        if key in first:
            aliases[name] = first[key]
        else:
            first[key] = name
            stored[name] = tensor
    return stored, aliases


__all__ += [
    "Header",
    "check_cap",
    "declared_bytes",
    "declared_shapes",
    "encode_all",
    "encoding_record",
    "header_size",
    "read_header",
    "split_aliases",
]
