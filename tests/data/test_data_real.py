"""The real shared datasets: counts, shapes, dtypes, label histograms, checksums."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch

import deepshrink.data as dsdata
from deepshrink.data import sources
from deepshrink.errors import DataError

MNIST_TRAIN = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
CIFAR_TEST_SUBSET = [103, 89, 100, 103, 90, 86, 112, 102, 106, 109]


def histogram(dataset: dsdata.ArrayDataset) -> list[int]:
    return torch.bincount(dataset.labels, minlength=10).tolist()


def test_mnist_counts_shapes_and_labels(mnist: dsdata.Data) -> None:
    assert mnist.train.images.shape == (60000, 1, 28, 28)
    assert mnist.test.images.shape == (10000, 1, 28, 28)
    assert mnist.train.images.dtype == torch.uint8
    assert mnist.train.labels.dtype == torch.int64
    assert histogram(mnist.train) == MNIST_TRAIN
    assert histogram(mnist.test) == MNIST_TEST
    assert mnist.num_classes == 10 and mnist.input_shape == (1, 28, 28)
    assert mnist.val is None and mnist.train.transform is None


def test_mnist_normalisation_constants_fit_the_data(mnist: dsdata.Data) -> None:
    x, _ = mnist.train.batch(torch.arange(0, 60000, 7))
    assert abs(x.mean().item()) < 0.02
    assert abs(x.std().item() - 1.0) < 0.02


def test_mnist_val_split_from_real_files(mnist: dsdata.Data) -> None:
    train, val = dsdata.split_validation(mnist.train, 5000, seed=3)
    assert len(train) == 55000 and len(val) == 5000
    assert histogram(train)[0] + histogram(val)[0] == MNIST_TRAIN[0]


def test_fashion_mnist_is_balanced(shared_root: Path) -> None:
    data = dsdata.load("fashion_mnist", shared_root)
    assert data.name == "fashion-mnist"
    assert data.train.images.shape == (60000, 1, 28, 28)
    assert histogram(data.train) == [6000] * 10
    assert histogram(data.test) == [1000] * 10
    assert data.classes[0] == "T-shirt/top" and data.classes[9] == "Ankle boot"
    assert data.train.mean.flatten().tolist() == pytest.approx([0.2860])


def test_cifar10_counts_labels_and_classes(cifar10: dsdata.Data) -> None:
    assert cifar10.train.images.shape == (50000, 3, 32, 32)
    assert cifar10.test.images.shape == (1000, 3, 32, 32)
    assert cifar10.train.images.dtype == torch.uint8
    assert histogram(cifar10.train) == [5000] * 10
    assert histogram(cifar10.test) == CIFAR_TEST_SUBSET
    assert cifar10.train.labels[:10].tolist() == [6, 9, 9, 4, 1, 1, 2, 7, 8, 3]
    assert cifar10.test.labels[:10].tolist() == [3, 8, 8, 0, 6, 6, 1, 6, 3, 1]
    assert cifar10.classes[0] == "airplane" and cifar10.classes[9] == "truck"
    assert "first 1000" in cifar10.test.name


def test_cifar10_augments_train_only(cifar10: dsdata.Data) -> None:
    assert cifar10.train.transform is not None
    assert cifar10.test.transform is None
    index = torch.arange(64)
    a, _ = cifar10.train.batch(index, torch.Generator().manual_seed(0))
    b, _ = cifar10.train.batch(index, torch.Generator().manual_seed(0))
    plain, _ = cifar10.train.without_transform().batch(index)
    assert torch.equal(a, b)
    assert not torch.equal(a, plain)


def test_cifar10_first_image_pixels(cifar10: dsdata.Data) -> None:
    # Red plane of training image 0 starts 59, 43, 50 (published dumps of data_batch_1).
    assert cifar10.train.images[0, 0, 0, :3].tolist() == [59, 43, 50]


def test_real_files_pass_their_checksums(shared_root: Path) -> None:
    sums = sources.read_checksums(shared_root)
    assert "mnist/t10k-labels-idx1-ubyte.gz" in sums
    sources.verify_file(shared_root / "mnist" / "t10k-labels-idx1-ubyte.gz", shared_root)


def test_tampered_copy_fails_naming_the_file(shared_root: Path, tmp_path: Path) -> None:
    relative = "mnist/t10k-labels-idx1-ubyte.gz"
    digest = sources.read_checksums(shared_root)[relative]
    copy = tmp_path / relative
    copy.parent.mkdir()
    shutil.copyfile(shared_root / relative, copy)
    (tmp_path / "SHA256SUMS").write_text(f"{digest}  {relative}\n")
    sources.verify_file(copy, tmp_path)  # the intact copy passes
    content = bytearray(copy.read_bytes())
    content[100] ^= 0xFF
    copy.write_bytes(bytes(content))
    stat = copy.stat()  # make sure the mtime differs even on a coarse-clock filesystem
    os.utime(copy, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    with pytest.raises(DataError) as info:
        sources.verify_file(copy, tmp_path)
    message = str(info.value)
    assert str(copy) in message and digest in message and "download=True" in message
