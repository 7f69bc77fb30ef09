"""CIFAR-10 reader: restricted unpickling, validation, layouts, class names, augmentation."""

from __future__ import annotations

import builtins
import gzip
import os
import pickle
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

import deepshrink.data as dsdata
from deepshrink.data import cifar
from deepshrink.errors import DataError


class _System:
    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple:
        return (os.system, (self.command,))


class _Eval:
    def __init__(self, code: str) -> None:
        self.code = code

    def __reduce__(self) -> tuple:
        return (builtins.eval, (self.code,))


@pytest.mark.parametrize("compress", [False, True])
def test_malicious_pickle_is_refused_and_never_runs(tmp_path: Path, compress: bool) -> None:
    marker = tmp_path / "pwned"
    payload = pickle.dumps({b"data": _System(f"touch {marker}")}, protocol=4)
    path = tmp_path / ("evil.gz" if compress else "evil")
    path.write_bytes(gzip.compress(payload) if compress else payload)
    with pytest.raises(DataError) as info:
        cifar.read_batch(path)
    assert "refuses to load global" in str(info.value) and str(path) in str(info.value)
    assert "system" in str(info.value)
    assert not marker.exists()


def test_eval_payload_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "data_batch_1"
    code = f"open({str(tmp_path / 'pwned')!r}, 'w')"
    path.write_bytes(pickle.dumps(_Eval(code), protocol=4))
    with pytest.raises(DataError, match="builtins.eval"):
        cifar.read_batch(path)
    assert not (tmp_path / "pwned").exists()


def test_reads_numpy2_pickles(tmp_path: Path, make_cifar_batch: Callable) -> None:
    path = tmp_path / "batch"
    path.write_bytes(make_cifar_batch(5))
    images, labels = cifar.read_batch(path)
    assert images.shape == (5, 3, 32, 32) and images.dtype == np.uint8
    assert labels.tolist() == [0, 1, 2, 3, 4]
    assert images[0, 1, 0, 0] == 1024 % 251  # planes are R, G, B; rows are images


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ([1, 2], "expected a dict"),
        ({b"labels": [1]}, "lacks"),
        ({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, "expected data"),
        ({b"data": np.zeros((2, 3072), np.float32), b"labels": [0, 1]}, "uint8"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]}, "0–9"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}, "labels"),
    ],
)
def test_invalid_batches_are_data_errors(tmp_path: Path, content: object, message: str) -> None:
    path = tmp_path / "batch"
    path.write_bytes(pickle.dumps(content, protocol=4))
    with pytest.raises(DataError, match=message):
        cifar.read_batch(path)


def test_garbage_and_truncated_files(tmp_path: Path, make_cifar_batch: Callable) -> None:
    (tmp_path / "garbage").write_bytes(b"not a pickle at all")
    with pytest.raises(DataError, match="garbage"):
        cifar.read_batch(tmp_path / "garbage")
    blob = gzip.compress(make_cifar_batch(2))
    (tmp_path / "cut.gz").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(DataError, match="cut.gz"):
        cifar.read_batch(tmp_path / "cut.gz")


def test_official_layout_and_augment_flag(tiny_cifar_root: Path) -> None:
    data = dsdata.load("cifar10", tiny_cifar_root)
    assert data.train.images.shape == (20, 3, 32, 32)
    assert data.train.labels[:4].tolist() == [1, 2, 3, 4]
    assert data.test.name == "cifar10/test" and len(data.test) == 3
    assert data.classes == list(cifar.CIFAR10_CLASSES)  # no batches.meta: known names
    assert data.train.transform is not None and data.test.transform is None
    assert dsdata.load("cifar10", tiny_cifar_root, augment=False).train.transform is None
    data = dsdata.load("cifar-10", tiny_cifar_root, val_size=5)
    assert len(data.train) == 15 and data.val.transform is None


def test_class_names_from_meta(tiny_cifar_root: Path) -> None:
    names = [f"thing{i}".encode() for i in range(10)]
    meta = {b"num_cases_per_batch": 4, b"label_names": names, b"num_vis": 3072}
    folder = tiny_cifar_root / "cifar10" / "cifar-10-batches-py"
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=4))
    assert dsdata.load("cifar10", tiny_cifar_root).classes[3] == "thing3"


def test_missing_cifar_lists_expected_files(tmp_path: Path) -> None:
    with pytest.raises(DataError) as info:
        dsdata.load("cifar10", tmp_path)
    message = str(info.value)
    for name in [f"data_batch_{i}.gz" for i in range(1, 6)] + ["test_batch_first1000.gz"]:
        assert name in message
    assert str(tmp_path / "cifar10") in message and "download=True" in message
