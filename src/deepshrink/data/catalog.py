"""``load(name)``: the dataset registry, the :class:`Data` bundle and the validation split."""

from __future__ import annotations

import logging
import numbers
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from deepshrink._registry import Registry
from deepshrink.data import builtin
from deepshrink.data.dataset import ArrayDataset
from deepshrink.errors import ConfigError

logger = logging.getLogger(__name__)

#: ``(root, download, augment, seed) -> (train, test)``
Loader = Callable[[str | os.PathLike[str] | None, bool, bool, int], tuple[ArrayDataset, ...]]

DATASETS: Registry[Loader] = Registry("dataset")
DATASETS.add("mnist", builtin.load_mnist)
DATASETS.add("fashion-mnist", builtin.load_fashion_mnist)
DATASETS.add("cifar10", builtin.load_cifar10)
DATASETS.add("digits", builtin.load_digits)
DATASETS.add("synthetic", builtin.load_synthetic)
#: Other spellings accepted by :func:`load` (after lower-casing and ``_`` → ``-``).
ALIASES = {"cifar-10": "cifar10", "fashionmnist": "fashion-mnist"}


@dataclass
class Data:
    """A dataset's splits and class names, as returned by :func:`load`.

    >>> data = load("synthetic", val_size=0.25)
    >>> len(data.train), len(data.val), len(data.test), data.num_classes, data.input_shape
    (384, 128, 128, 10, (1, 8, 8))
    """

    name: str
    train: ArrayDataset
    test: ArrayDataset
    val: ArrayDataset | None = None
    classes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.classes:
            known = self.train.classes
            self.classes = list(known) if known else [str(i) for i in range(self.train.num_classes)]

    @property
    def num_classes(self) -> int:
        """Number of classes."""
        return len(self.classes)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """Shape of one image, ``(C, H, W)``."""
        return self.train.input_shape


def load(
    name: str,
    root: str | os.PathLike[str] | None = None,
    *,
    download: bool = False,
    val_size: int | float = 0,
    augment: bool = True,
    seed: int = 0,
) -> Data:
    """Load a registered dataset (``mnist``, ``fashion-mnist``, ``cifar10``, ``digits``, ...).

    Files are read from ``root``, else ``$DEEPSHRINK_DATA``, else the per-user cache; with
    ``download=True`` missing files are fetched from the official sources. ``val_size`` (a
    count, or a fraction in (0, 1)) moves a random, ``seed``-determined part of the training
    set into an un-augmented ``val`` split. ``augment=False`` turns off training augmentation.

    >>> data = load("digits")
    >>> len(data.train), len(data.test), data.input_shape
    (1437, 360, (1, 8, 8))
    """
    if not isinstance(name, str):
        raise ConfigError(f"dataset name must be a string, got {name!r}")
    _check_val_size(val_size)
    canonical = name.strip().lower().replace("_", "-")
    canonical = ALIASES.get(canonical, canonical)
    loader = DATASETS.get(canonical)
    started = time.perf_counter()
    train, test = loader(root, bool(download), bool(augment), int(seed))
    val = None
    if val_size:
        train, val = split_validation(train, val_size, seed=seed)
    logger.info(
        "loaded %s: %d train, %d val, %d test samples in %.2f s",
        canonical,
        len(train),
        len(val) if val is not None else 0,
        len(test),
        time.perf_counter() - started,
    )
    return Data(canonical, train, test, val, list(train.classes or []))


def _check_val_size(val_size: object) -> None:
    if isinstance(val_size, bool) or not isinstance(val_size, numbers.Real):
        raise ConfigError(f"val_size must be an int count or a float fraction, got {val_size!r}")
    if val_size < 0:
        raise ConfigError(f"val_size must be >= 0, got {val_size!r}")
    if not isinstance(val_size, numbers.Integral) and val_size >= 1:
        raise ConfigError(
            f"a float val_size is a fraction and must be in (0, 1), got {val_size!r}; "
            "pass an int for a number of samples"
        )


def validation_count(val_size: int | float, total: int) -> int:
    """How many of ``total`` training samples ``val_size`` (count or fraction) asks for.

    >>> validation_count(0.1, 60000), validation_count(500, 60000)
    (6000, 500)
    """
    _check_val_size(val_size)
    count = int(val_size) if isinstance(val_size, numbers.Integral) else round(val_size * total)
    if val_size and count == 0:
        raise ConfigError(
            f"val_size={val_size!r} of {total} training samples is 0 samples; pass a larger "
            "fraction or an int count"
        )
    if count >= total:
        raise ConfigError(
            f"val_size={val_size!r} asks for {count} of only {total} training samples; "
            "leave at least one for training"
        )
    return count


def split_validation(
    train: ArrayDataset, val_size: int | float, *, seed: int = 0
) -> tuple[ArrayDataset, ArrayDataset]:
    """Split ``train`` into (rest, validation) at random from ``seed``; validation unaugmented.

    Both parts keep the original sample order. The same seed gives the same split.

    >>> train = ArrayDataset(torch.zeros(10, 1, 2, 2), torch.arange(10))
    >>> rest, val = split_validation(train, 0.2, seed=0)
    >>> len(rest), len(val)
    (8, 2)
    """
    count = validation_count(val_size, len(train))
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(train), generator=generator)
    rest = train.subset(order[count:].sort().values)
    val = train.subset(order[:count].sort().values).without_transform()
    base = train.name.rsplit("/", 1)[0] if train.name else ""
    val.name = f"{base}/val" if base else "val"
    return rest, val
