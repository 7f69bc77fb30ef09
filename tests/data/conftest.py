"""Fixtures for the data tests: small IDX and CIFAR files made on the fly."""

from __future__ import annotations

import gzip
import pickle
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest


def idx_bytes(array: np.ndarray) -> bytes:
    """An IDX file (uint8 payload) holding ``array``."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape
    )
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


@pytest.fixture
def tiny_idx_root(tmp_path: Path) -> Path:
    """A root with small gzipped MNIST and Fashion-MNIST files (20 train, 10 test images)."""
    rng = np.random.default_rng(0)
    for folder in ("mnist", "fashion-mnist"):
        for prefix, count in (("train", 20), ("t10k", 10)):
            images = rng.integers(0, 256, (count, 28, 28), dtype=np.uint8)
            labels = np.arange(count, dtype=np.uint8) % 10
            target = tmp_path / folder
            target.mkdir(exist_ok=True)
            (target / f"{prefix}-images-idx3-ubyte.gz").write_bytes(
                gzip.compress(idx_bytes(images))
            )
            (target / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(
                gzip.compress(idx_bytes(labels))
            )
    return tmp_path


def cifar_batch_bytes(count: int, *, first_label: int = 0) -> bytes:
    """A CIFAR-10 style batch pickle with ``count`` images and byte-string keys.

    Protocol 4, because Python 3 pickles bytes at protocol 2 through ``_codecs.encode``, a
    global the official (Python 2) files never use and the reader refuses.
    """
    data = (np.arange(count * 3072) % 251).astype(np.uint8).reshape(count, 3072)
    labels = [(first_label + i) % 10 for i in range(count)]
    content = {b"batch_label": b"tiny batch", b"labels": labels, b"data": data}
    return pickle.dumps(content, protocol=4)


@pytest.fixture
def tiny_cifar_root(tmp_path: Path) -> Path:
    """A root with official-style uncompressed CIFAR names in cifar10/cifar-10-batches-py/."""
    folder = tmp_path / "cifar10" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for i in range(1, 6):
        (folder / f"data_batch_{i}").write_bytes(cifar_batch_bytes(4, first_label=i))
    (folder / "test_batch").write_bytes(cifar_batch_bytes(3))
    return tmp_path


@pytest.fixture
def make_idx() -> Callable[[np.ndarray], bytes]:
    return idx_bytes


@pytest.fixture
def make_cifar_batch() -> Callable[..., bytes]:
    return cifar_batch_bytes
