"""Containers with every layout, and tools to take a ``.dsz`` byte string apart."""

from __future__ import annotations

import importlib.util
import json
import sys
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from deepshrink.encode import EncodeConfig, pack
from deepshrink.encode.container import PRELUDE, SECTION


def sample_tensors() -> dict[str, torch.Tensor]:
    """One tensor for each layout: sparse with a codebook, sparse raw values, dense codebook,
    raw, a mask that follows its weight, an empty tensor and an all-zero one."""
    g = torch.Generator().manual_seed(0)
    book = torch.linspace(-1, 1, 16)
    keep = torch.rand(40, 30, generator=g) < 0.1
    shared = torch.where(keep, book[torch.randint(0, 16, (40, 30), generator=g)], 0.0)
    pruned = torch.where(torch.rand(8, 4, 3, 3, generator=g) < 0.2, torch.randn(8, 4, 3, 3), 0.0)
    return {
        "fc.weight": shared,
        "fc.weight_mask": shared != 0,
        "conv.weight": pruned,
        "dense.weight": book[torch.randint(0, 4, (50, 20), generator=g)],
        "fc.bias": torch.randn(40, generator=g),
        "bn.num_batches_tracked": torch.tensor(7),
        "empty": torch.zeros(0, 3),
        "zeros": torch.zeros(300),
    }


@pytest.fixture(scope="session")
def container() -> bytes:
    return pack(sample_tensors(), EncodeConfig(), arch=None)


def split(data: bytes) -> tuple[dict[str, Any], list[tuple[int, int]]]:
    """The header and ``(start, end)`` of every section (prefix included) of a valid file."""
    *_, size, _, _ = PRELUDE.unpack_from(data)
    start = PRELUDE.size + size
    header = json.loads(zlib.decompress(data[PRELUDE.size : start]))
    spans = []
    while start < len(data):
        length, _ = SECTION.unpack_from(data, start)
        spans.append((start, start + SECTION.size + length))
        start += SECTION.size + length
    return header, spans


def with_header(data: bytes, edit: Callable[[dict[str, Any]], Any]) -> bytes:
    """``data`` with its header changed by ``edit`` (in place), prelude and CRC made consistent."""
    header, spans = split(data)
    edit(header)
    text = json.dumps(header).encode()
    compressed = zlib.compress(text)
    prelude = PRELUDE.pack(*PRELUDE.unpack_from(data)[:3], len(compressed), len(text),
                           zlib.crc32(compressed))  # fmt: skip
    return prelude + compressed + data[spans[0][0] if spans else len(data) :]


def with_section(data: bytes, index: int, payload: bytes) -> bytes:
    """``data`` with section ``index`` replaced by ``payload`` (with a valid length and CRC)."""
    _, spans = split(data)
    start, end = spans[index]
    return data[:start] + SECTION.pack(len(payload), zlib.crc32(payload)) + payload + data[end:]


@pytest.fixture(scope="session")
def dsz() -> Any:
    class Tools:
        split = staticmethod(split)
        with_header = staticmethod(with_header)
        with_section = staticmethod(with_section)
        sample_tensors = staticmethod(sample_tensors)

    return Tools


_FUZZER = Path(__file__).resolve().parents[2] / "benchmarks" / "fuzz_dsz.py"


@pytest.fixture(scope="module")
def fuzz() -> Any:
    """``benchmarks/fuzz_dsz.py`` as a module (seeds, mutations, the fuzzing loop)."""
    spec = importlib.util.spec_from_file_location("fuzz_dsz", _FUZZER)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["fuzz_dsz"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module
