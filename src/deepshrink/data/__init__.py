"""Datasets as in-memory tensors: MNIST, Fashion-MNIST, CIFAR-10, digits, image folders.

>>> import deepshrink.data as dsdata
>>> data = dsdata.load("synthetic", val_size=64)
>>> x, y = data.train.batch(torch.arange(4))
>>> tuple(x.shape), data.num_classes, len(data.val)
((4, 1, 8, 8), 10, 64)

Heavy imports (scikit-learn, Pillow) happen inside the functions that need them.
"""

from __future__ import annotations

import torch  # noqa: F401  (used by the module doctest)

from deepshrink.data.catalog import DATASETS, Data, load, split_validation
from deepshrink.data.dataset import ArrayDataset, BatchTransform, channel_stats
from deepshrink.data.folder import image_folder
from deepshrink.data.sources import resolve_root

__all__ = [
    "DATASETS",
    "ArrayDataset",
    "BatchTransform",
    "Data",
    "channel_stats",
    "image_folder",
    "load",
    "resolve_root",
    "split_validation",
]
