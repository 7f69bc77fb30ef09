"""The built-in datasets: MNIST, Fashion-MNIST, CIFAR-10, scikit-learn digits, synthetic.

Each loader takes ``(root, download, augment, seed)`` and returns ``(train, test)``
:class:`ArrayDataset` objects with uint8 (or [0, 1] float) images ``(N, C, H, W)``, the
dataset's normalisation and class names. Files are looked up under the root folder (see
:mod:`deepshrink.data.sources`), verified against ``SHA256SUMS`` when present, and fetched from
the official mirrors with ``download=True``.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from deepshrink.data import cifar, sources
from deepshrink.data.dataset import ArrayDataset, channel_stats
from deepshrink.data.idx import read_idx
from deepshrink.data.transforms import Compose, HorizontalFlip, RandomCropPad
from deepshrink.errors import DataError

logger = logging.getLogger(__name__)

Root = str | os.PathLike[str] | None

#: Download locations, tried in order; tests point these elsewhere.
MIRRORS: dict[str, tuple[str, ...]] = {
    "mnist": (
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
        "http://yann.lecun.com/exdb/mnist/",
    ),
    "fashion-mnist": ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
    "cifar10": ("https://www.cs.toronto.edu/~kriz/",),
}
CIFAR10_ARCHIVE = "cifar-10-python.tar.gz"
CIFAR10_ARCHIVE_MD5 = "c58f30108f718f92721af3b95e74349a"
#: Fixed seed of the digits train/test split, so test accuracy is comparable across runs.
DIGITS_SPLIT_SEED = 0
DIGITS_TEST_SIZE = 360


@dataclass(frozen=True)
class IdxSpec:
    """Where an IDX dataset lives, its official MD5s, normalisation and class names."""

    folder: str
    md5: dict[str, str]
    mean: float
    std: float
    classes: tuple[str, ...]


MNIST = IdxSpec(
    folder="mnist",
    md5={
        "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    },
    mean=0.1307,
    std=0.3081,
    classes=tuple(str(d) for d in range(10)),
)
FASHION_MNIST = IdxSpec(
    folder="fashion-mnist",
    md5={
        "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
    },
    mean=0.2860,
    std=0.3530,
    classes=(
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ),
)
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)


# --------------------------------------------------------------------------- IDX datasets


def load_mnist(root: Root, download: bool, augment: bool, seed: int) -> tuple[ArrayDataset, ...]:
    """MNIST from ``<root>/mnist/`` (no augmentation)."""
    return _load_idx(MNIST, root, download)


def load_fashion_mnist(
    root: Root, download: bool, augment: bool, seed: int
) -> tuple[ArrayDataset, ...]:
    """Fashion-MNIST from ``<root>/fashion-mnist/`` (no augmentation)."""
    return _load_idx(FASHION_MNIST, root, download)


def _load_idx(spec: IdxSpec, root_arg: Root, download: bool) -> tuple[ArrayDataset, ...]:
    root = sources.resolve_root(root_arg)
    paths = _idx_paths(spec, root, root_arg, download)
    splits = []
    for split, prefix in (("train", "train"), ("test", "t10k")):
        images = _read_idx_verified(paths[f"{prefix}-images-idx3-ubyte.gz"], root)
        labels = _read_idx_verified(paths[f"{prefix}-labels-idx1-ubyte.gz"], root)
        _check_idx_pair(images, labels, paths[f"{prefix}-images-idx3-ubyte.gz"])
        splits.append(
            ArrayDataset(
                torch.from_numpy(images).unsqueeze(1),
                torch.from_numpy(labels.astype(np.int64)),
                mean=[spec.mean],
                std=[spec.std],
                classes=spec.classes,
                name=f"{spec.folder}/{split}",
            )
        )
    return tuple(splits)


def _idx_paths(spec: IdxSpec, root: Path, root_arg: Root, download: bool) -> dict[str, Path]:
    folder = root / spec.folder
    found = {name: sources.find_file([folder], [name, name[: -len(".gz")]]) for name in spec.md5}
    missing = [name for name, path in found.items() if path is None]
    if missing and not download:
        raise sources.missing_files_error(spec.folder, folder, missing, root_arg)
    for name in missing:
        urls = [base + name for base in MIRRORS[spec.folder]]
        found[name] = sources.download(urls, folder / name, spec.md5[name])
    return found  # type: ignore[return-value]


def _read_idx_verified(path: Path, root: Path) -> np.ndarray:
    sources.verify_file(path, root)
    return read_idx(path)


def _check_idx_pair(images: np.ndarray, labels: np.ndarray, image_path: Path) -> None:
    if images.ndim != 3 or images.dtype != np.uint8:
        raise DataError(f"{image_path}: expected uint8 images (N, H, W), got {images.shape}")
    if labels.ndim != 1 or len(labels) != len(images):
        raise DataError(
            f"{image_path}: {len(images)} images but the label file holds "
            f"{labels.shape[0] if labels.ndim else 0} labels"
        )
    if len(labels) and int(labels.max()) > 9:
        raise DataError(f"label file for {image_path} has label {int(labels.max())}, expected 0–9")


# --------------------------------------------------------------------------- CIFAR-10

_CIFAR_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
_CIFAR_TEST_FULL = "test_batch"
_CIFAR_TEST_SUBSET = "test_batch_first1000"


def load_cifar10(root: Root, download: bool, augment: bool, seed: int) -> tuple[ArrayDataset, ...]:
    """CIFAR-10 from ``<root>/cifar10/``; train augmented by crop+flip when ``augment``."""
    root_path = sources.resolve_root(root)
    paths = _cifar_paths(root_path, root, download)
    train_x, train_y = _read_cifar(paths[: len(_CIFAR_TRAIN)], root_path)
    test_x, test_y = _read_cifar(paths[len(_CIFAR_TRAIN) :], root_path)
    classes = _cifar_classes(root_path)
    subset = _CIFAR_TEST_SUBSET in paths[-1].name
    if subset:
        logger.warning(
            "CIFAR-10 test set is %s: only the first %d of 10,000 test images; report results "
            "as 'CIFAR-10 test subset', or hold out training images with val_size=",
            paths[-1],
            len(test_y),
        )
    transform = Compose([RandomCropPad(32, padding=4), HorizontalFlip()]) if augment else None
    common = dict(mean=CIFAR10_MEAN, std=CIFAR10_STD, classes=classes)
    train = ArrayDataset(train_x, train_y, transform=transform, name="cifar10/train", **common)
    test_name = f"cifar10/test (first {len(test_y)} images)" if subset else "cifar10/test"
    return train, ArrayDataset(test_x, test_y, name=test_name, **common)


def _cifar_folders(root: Path) -> list[Path]:
    return [
        root / "cifar10",
        root / "cifar10" / "cifar-10-batches-py",
        root / "cifar-10-batches-py",
    ]


def _cifar_paths(root: Path, root_arg: Root, download: bool) -> list[Path]:
    folders = _cifar_folders(root)
    wanted = [*_CIFAR_TRAIN, _CIFAR_TEST_FULL]
    found = _find_cifar(folders)
    if any(path is None for path in found) and download:
        _download_cifar(root / "cifar10", wanted)
        found = _find_cifar(folders)
    expected = [f"{name}.gz" for name in _CIFAR_TRAIN] + [f"{_CIFAR_TEST_SUBSET}.gz"]
    missing = [name for name, path in zip(expected, found, strict=True) if path is None]
    if missing:
        hint = (
            "(also accepted: the official names data_batch_1 … data_batch_5 and test_batch, "
            f"plain or .gz, in {folders[0]} or in a cifar-10-batches-py/ folder). "
        )
        raise sources.missing_files_error("cifar10", folders[0], missing, root_arg, hint)
    return found  # type: ignore[return-value]


def _find_cifar(folders: list[Path]) -> list[Path | None]:
    found = [sources.find_file(folders, [f"{name}.gz", name]) for name in _CIFAR_TRAIN]
    test_names = [_CIFAR_TEST_FULL, f"{_CIFAR_TEST_FULL}.gz"]
    test_names += [f"{_CIFAR_TEST_SUBSET}.gz", _CIFAR_TEST_SUBSET]
    return [*found, sources.find_file(folders, test_names)]


def _download_cifar(folder: Path, wanted: list[str]) -> None:
    archive = folder / CIFAR10_ARCHIVE
    if not sources.check_md5(archive, CIFAR10_ARCHIVE_MD5):
        urls = [base + CIFAR10_ARCHIVE for base in MIRRORS["cifar10"]]
        sources.download(urls, archive, CIFAR10_ARCHIVE_MD5)
    members = {f"cifar-10-batches-py/{name}": folder / name for name in [*wanted, "batches.meta"]}
    logger.info("extracting %s", archive)
    sources.extract_members(archive, members)


def _read_cifar(paths: list[Path], root: Path) -> tuple[Tensor, Tensor]:
    parts = [_read_cifar_batch(path, root) for path in paths]
    images = np.concatenate([part[0] for part in parts])
    labels = np.concatenate([part[1] for part in parts])
    return torch.from_numpy(images), torch.from_numpy(labels)


def _read_cifar_batch(path: Path, root: Path) -> tuple[np.ndarray, np.ndarray]:
    sources.verify_file(path, root)
    return cifar.read_batch(path)


def _cifar_classes(root: Path) -> list[str]:
    meta = sources.find_file(_cifar_folders(root), ["batches.meta", "batches.meta.gz"])
    if meta is None:
        logger.debug("no batches.meta under %s; using the known CIFAR-10 class names", root)
        return list(cifar.CIFAR10_CLASSES)
    sources.verify_file(meta, root)
    return cifar.read_class_names(meta)


# --------------------------------------------------------------------------- in-memory sets


def load_digits(root: Root, download: bool, augment: bool, seed: int) -> tuple[ArrayDataset, ...]:
    """scikit-learn's bundled 8x8 digits (1,797 images), split 1,437/360, stratified."""
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    images = torch.from_numpy(bunch.images).float().div_(16.0).unsqueeze(1)
    labels = torch.from_numpy(bunch.target).long()
    test_index = stratified_index(labels, DIGITS_TEST_SIZE, seed=DIGITS_SPLIT_SEED)
    is_test = torch.zeros(len(labels), dtype=torch.bool)
    is_test[test_index] = True
    train_index = (~is_test).nonzero().flatten()
    mean, std = channel_stats(images[train_index])
    classes = [str(d) for d in range(10)]
    full = ArrayDataset(images, labels, mean=mean, std=std, classes=classes, name="digits")
    train, test = full.subset(train_index), full.subset(test_index.sort().values)
    train.name, test.name = "digits/train", "digits/test"
    return train, test


def stratified_index(labels: Tensor, count: int, *, seed: int) -> Tensor:
    """``count`` indices drawn at random with class shares as close as possible to the whole.

    >>> stratified_index(torch.tensor([0, 0, 0, 0, 1, 1]), 3, seed=0).sort().values.shape
    torch.Size([3])
    """
    generator = torch.Generator().manual_seed(seed)
    shuffled = torch.randperm(len(labels), generator=generator)
    grouped = shuffled[torch.argsort(labels[shuffled], stable=True)]
    counts = torch.bincount(labels)
    starts = (torch.cumsum(counts, 0) - counts).repeat_interleave(counts)
    rank = torch.arange(len(labels)) - starts  # position of each sample within its class
    share = (rank + 0.5) / counts.repeat_interleave(counts)
    return grouped[torch.argsort(share, stable=True)[:count]]


def load_synthetic(
    root: Root, download: bool, augment: bool, seed: int
) -> tuple[ArrayDataset, ...]:
    """Separable random data from ``seed``: 1x8x8 uint8 images, 10 classes, 512/128 samples."""
    return make_synthetic(seed=seed)


def make_synthetic(
    num_train: int = 512,
    num_test: int = 128,
    shape: tuple[int, int, int] = (1, 8, 8),
    num_classes: int = 10,
    *,
    seed: int = 0,
    noise: float = 0.1,
) -> tuple[ArrayDataset, ArrayDataset]:
    """Class prototypes (uniform pixels) plus Gaussian noise, balanced labels, uint8 images.

    >>> train, test = make_synthetic(seed=1)
    >>> len(train), len(test), train.input_shape
    (512, 128, (1, 8, 8))
    """
    generator = torch.Generator().manual_seed(seed)
    total = num_train + num_test
    prototypes = torch.rand((num_classes, *shape), generator=generator)
    labels = (torch.arange(total) % num_classes)[torch.randperm(total, generator=generator)]
    pixels = prototypes[labels] + noise * torch.randn((total, *shape), generator=generator)
    images = pixels.clamp(0, 1).mul(255).round().to(torch.uint8)
    mean, std = channel_stats(images[:num_train])
    classes = [f"class_{i}" for i in range(num_classes)]
    full = ArrayDataset(images, labels, mean=mean, std=std, classes=classes, name="synthetic")
    train, test = full.subset(torch.arange(num_train)), full.subset(torch.arange(num_train, total))
    train.name, test.name = "synthetic/train", "synthetic/test"
    return train, test
