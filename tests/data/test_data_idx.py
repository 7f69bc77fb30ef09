"""IDX reader: valid files, truncation, corruption, and the MNIST loader on small files."""

from __future__ import annotations

import gzip
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

import deepshrink.data as dsdata
from deepshrink.data.idx import read_idx
from deepshrink.errors import DataError


def test_reads_gzip_and_plain_files(tmp_path: Path, make_idx: Callable) -> None:
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    (tmp_path / "a.gz").write_bytes(gzip.compress(make_idx(array)))
    (tmp_path / "a").write_bytes(make_idx(array))
    for name in ("a.gz", "a"):
        out = read_idx(tmp_path / name)
        assert out.dtype == np.uint8 and np.array_equal(out, array)


def test_reads_big_endian_int32(tmp_path: Path) -> None:
    values = np.array([1, -2, 70000], dtype=">i4")
    header = bytes([0, 0, 0x0C, 1]) + (3).to_bytes(4, "big")
    (tmp_path / "ints").write_bytes(header + values.tobytes())
    assert read_idx(tmp_path / "ints").tolist() == [1, -2, 70000]


def test_truncated_gzip_names_the_file(tmp_path: Path, make_idx: Callable) -> None:
    data = gzip.compress(make_idx(np.random.default_rng(0).integers(0, 255, (50, 28, 28))))
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="train-images-idx3-ubyte.gz"):
        read_idx(path)


def test_corrupted_gzip_names_the_file(tmp_path: Path, make_idx: Callable) -> None:
    data = bytearray(gzip.compress(make_idx(np.zeros((5, 28, 28)))))
    data[20:30] = b"\xff" * 10
    path = tmp_path / "bad.gz"
    path.write_bytes(bytes(data))
    with pytest.raises(DataError, match="bad.gz"):
        read_idx(path)


def test_truncated_payload_reports_expected_and_actual_bytes(
    tmp_path: Path, make_idx: Callable
) -> None:
    full = make_idx(np.zeros((10, 28, 28), dtype=np.uint8))
    path = tmp_path / "short.gz"
    path.write_bytes(gzip.compress(full[: 16 + 5 * 784]))  # header says 10, payload holds 5
    with pytest.raises(DataError) as info:
        read_idx(path)
    message = str(info.value)
    assert "short.gz" in message and str(10 * 784) in message and str(5 * 784) in message


def test_trailing_data_and_bad_magic_are_rejected(tmp_path: Path, make_idx: Callable) -> None:
    (tmp_path / "long").write_bytes(make_idx(np.zeros(3)) + b"\x00")
    with pytest.raises(DataError, match="after the 3 bytes"):
        read_idx(tmp_path / "long")
    (tmp_path / "magic").write_bytes(b"\x12\x34\x08\x01" + bytes(8))
    with pytest.raises(DataError, match="not an IDX file"):
        read_idx(tmp_path / "magic")
    (tmp_path / "header").write_bytes(bytes([0, 0, 8, 3, 0, 0]))
    with pytest.raises(DataError, match="header is truncated"):
        read_idx(tmp_path / "header")


def test_load_mnist_layout_from_root_argument(tiny_idx_root: Path) -> None:
    data = dsdata.load("mnist", tiny_idx_root)
    assert data.train.images.shape == (20, 1, 28, 28)
    assert data.test.images.shape == (10, 1, 28, 28)
    assert data.train.labels.tolist() == [i % 10 for i in range(20)]
    assert data.classes == [str(d) for d in range(10)]


def test_load_accepts_uncompressed_files(tiny_idx_root: Path) -> None:
    folder = tiny_idx_root / "fashion-mnist"
    for path in folder.glob("*.gz"):
        path.with_suffix("").write_bytes(gzip.decompress(path.read_bytes()))
        path.unlink()
    data = dsdata.load("fashion-mnist", tiny_idx_root)
    assert len(data.train) == 20 and data.train.images.dtype == torch.uint8


def test_root_from_environment(tiny_idx_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEEPSHRINK_DATA", str(tiny_idx_root))
    assert len(dsdata.load("mnist").test) == 10


def test_label_count_mismatch_is_a_data_error(tiny_idx_root: Path, make_idx: Callable) -> None:
    labels = tiny_idx_root / "mnist" / "t10k-labels-idx1-ubyte.gz"
    labels.write_bytes(gzip.compress(make_idx(np.zeros(7, dtype=np.uint8))))
    with pytest.raises(DataError, match="10 images"):
        dsdata.load("mnist", tiny_idx_root)
