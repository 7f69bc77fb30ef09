"""Calibration inputs for post-training quantization, taken from whatever data the user has.

``calibration`` may be a :class:`~deepshrink.data.Data` (its training split is used), an
:class:`~deepshrink.data.ArrayDataset` or any map-style dataset of ``(x, y)`` samples, one
tensor of inputs, or an iterable of batches (tensors or ``(x, y)`` pairs). Datasets are
sampled at random (seeded) without augmentation; iterables are read in order.

>>> import torch
>>> batches = calibration_batches(torch.rand(10, 3), samples=6, batch_size=4)
>>> [b.shape for b in batches]
[(4, 3), (2, 3)]
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import torch
from torch import Tensor

from deepshrink.data.catalog import Data
from deepshrink.data.dataset import ArrayDataset
from deepshrink.errors import ConfigError

__all__ = ["calibration_batches", "calibration_inputs"]


def calibration_batches(
    calibration: Any, *, samples: int = 256, batch_size: int = 32, seed: int = 0
) -> list[np.ndarray]:
    """Up to ``samples`` inputs from ``calibration`` as float32 NumPy batches."""
    chunks = calibration_inputs(calibration, samples=samples, seed=seed).split(batch_size)
    return [chunk.numpy().astype(np.float32, copy=False) for chunk in chunks]


def calibration_inputs(calibration: Any, *, samples: int = 256, seed: int = 0) -> Tensor:
    """Up to ``samples`` inputs from ``calibration`` as one float32 CPU tensor."""
    if samples < 1:
        raise ConfigError(f"samples must be at least 1, got {samples}")
    inputs = _inputs(calibration, samples, seed)
    if inputs.shape[0] == 0:
        raise ConfigError("calibration data is empty; give at least one input sample")
    return inputs.detach().cpu().float()


def _inputs(calibration: Any, samples: int, seed: int) -> Tensor:
    if isinstance(calibration, Data):
        calibration = calibration.train
    if isinstance(calibration, Tensor):
        return calibration[:samples]
    if isinstance(calibration, ArrayDataset):
        pick = _sample(len(calibration), samples, seed)
        return calibration.without_transform().batch(pick)[0]
    if isinstance(calibration, torch.utils.data.Dataset) and hasattr(calibration, "__len__"):
        pick = _sample(len(calibration), samples, seed)  # type: ignore[arg-type]
        return torch.stack([_first(calibration[int(i)]) for i in pick])
    if isinstance(calibration, Iterable):
        return _from_batches(calibration, samples)
    raise ConfigError(
        "calibration must be a Data, a dataset, a tensor or an iterable of batches, "
        f"got {type(calibration).__name__}"
    )


def _sample(size: int, samples: int, seed: int) -> Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randperm(size, generator=generator)[:samples]


def _first(item: Any) -> Tensor:
    value = item[0] if isinstance(item, (tuple, list)) else item
    if not isinstance(value, Tensor):
        raise ConfigError(f"calibration samples must be tensors, got {type(value).__name__}")
    return value


def _from_batches(batches: Iterable[Any], samples: int) -> Tensor:
    taken: list[Tensor] = []
    count = 0
    for batch in batches:
        x = _first(batch)
        taken.append(x[: samples - count])
        count += taken[-1].shape[0]
        if count >= samples:
            break
    if not taken:
        raise ConfigError("calibration data is empty; give at least one input batch")
    return torch.cat(taken)
