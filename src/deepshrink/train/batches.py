"""Batches for training and evaluation, from any data a user has.

Data may be a map-style dataset of ``(x, y)`` samples (batched here; :class:`ArrayDataset` on a
fast path), a ``DataLoader``, or any iterable of batches: ``(inputs, labels)`` pairs whose inputs
are a tensor, a tuple (positional inputs) or a dict (keyword inputs), or dicts whose ``labels``
key holds the labels and whose other keys are the model's keyword inputs (Hugging Face style).
A map-style dataset is shuffled by ``fit`` with its own generator (so resume is bit-exact); a
``DataLoader`` or iterable keeps its own batching and shuffling.

>>> split_batch({"input_ids": torch.zeros(2, 3, dtype=torch.long), "labels": torch.ones(2)})[1]
tensor([1., 1.])
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import torch
from torch import Tensor

from deepshrink.data.dataset import ArrayDataset
from deepshrink.errors import ConfigError
from deepshrink.graph.io import inputs_and_labels, map_tensors
from deepshrink.train.config import FitConfig
from deepshrink.train.distributed import World, rank_batches

__all__ = [
    "batches",
    "batches_per_epoch",
    "describe",
    "is_map_dataset",
    "split_batch",
    "steps_per_epoch",
    "to_device",
    "train_batches",
    "training_splits",
]


def is_map_dataset(data: Any) -> bool:
    """Whether ``data`` is a map-style dataset (indexed samples that deepshrink batches itself)."""
    return isinstance(data, torch.utils.data.Dataset) and not isinstance(
        data, torch.utils.data.IterableDataset
    )


def batches(data: Any, batch_size: int) -> Iterator[Any]:
    """Un-augmented batches of ``data``: a dataset is batched (fast path for
    :class:`ArrayDataset`), a ``DataLoader`` or other iterable of batches is used as it is."""
    if isinstance(data, ArrayDataset):
        yield from data.without_transform().iter_batches(batch_size)
    elif isinstance(data, torch.utils.data.Dataset):
        yield from torch.utils.data.DataLoader(data, batch_size=batch_size, shuffle=False)
    elif isinstance(data, (Mapping, Tensor, str)) or not hasattr(data, "__iter__"):
        raise ConfigError(
            f"expected a dataset, a DataLoader or an iterable of batches, got {describe(data)}"
        )
    else:
        yield from data


def describe(value: Any, depth: int = 0) -> str:
    """A short description of a batch or value, for error messages."""
    if isinstance(value, Tensor):
        return f"tensor {tuple(value.shape)} {str(value.dtype).removeprefix('torch.')}"
    if isinstance(value, Mapping) and depth < 2:
        items = ", ".join(f"{k!r}: {describe(v, depth + 1)}" for k, v in list(value.items())[:6])
        return f"dict {{{items}}}"
    if isinstance(value, (tuple, list)) and depth < 2:
        items = ", ".join(describe(v, depth + 1) for v in value[:6])
        return f"{type(value).__name__} of {len(value)} ({items})"
    return type(value).__name__


def split_batch(batch: Any) -> tuple[Any, Tensor]:
    """``(inputs, labels)`` of one batch, or a ConfigError naming what the batch was."""
    inputs, labels = inputs_and_labels(batch)
    if not isinstance(labels, Tensor):
        raise ConfigError(
            f"a batch must be an (inputs, labels) pair or a dict with a 'labels' tensor; got "
            f"{describe(batch)}. Inputs may be a tensor, a tuple or a dict of keyword inputs"
        )
    return inputs, labels


def to_device(value: Any, device: torch.device | str) -> Any:
    """Every tensor in ``value`` moved to ``device``, structure and dtype kept."""
    return map_tensors(value, lambda tensor: tensor.to(device, non_blocking=True))


def training_splits(data: Any, eval_data: Any = None) -> tuple[Any, Any, str]:
    """(training data, held-out data or None, its name)."""
    if eval_data is not None:
        return (data.train if hasattr(data, "train") else data), eval_data, "eval"
    if isinstance(data, torch.utils.data.Dataset) or not hasattr(data, "train"):
        if not isinstance(data, torch.utils.data.Dataset) and not hasattr(data, "__iter__"):
            raise ConfigError(
                "fit needs a deepshrink Data, a dataset, a DataLoader or an iterable of batches, "
                f"got {describe(data)}"
            )
        return data, None, ""
    if getattr(data, "val", None) is not None:
        return data.train, data.val, "val"
    return data.train, getattr(data, "test", None), "test"


def train_batches(
    data: Any, batch_size: int, generator: torch.Generator, joined: World | None = None
) -> Iterator[Any]:
    """One epoch of shuffled training batches; under torchrun (``joined``) this rank's share
    of each global batch (:func:`deepshrink.train.distributed.rank_batches`)."""
    if not is_map_dataset(data):  # a DataLoader or iterable batches (and shuffles) itself
        yield from batches(data, batch_size)
        return
    dataset = data
    if joined is not None:
        yield from _rank_batches(dataset, batch_size, generator, joined)
        return
    drop_last = len(dataset) > batch_size  # never a 1-sample batch for BatchNorm
    if isinstance(dataset, ArrayDataset):
        yield from dataset.iter_batches(
            batch_size, shuffle=True, generator=generator, drop_last=drop_last
        )
        return
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, shuffle=True, generator=generator, drop_last=drop_last
    )
    yield from loader


def _rank_batches(
    dataset: Any, batch_size: int, generator: torch.Generator, joined: World
) -> Iterator[Any]:
    """This rank's part of the global batches. An :class:`ArrayDataset` with augmentation
    augments the whole global batch (the generator draws as one process's would) and keeps the
    rank's part, so augmented runs match one process too."""
    drop_last = len(dataset) > batch_size * joined.size
    parts = rank_batches(len(dataset), batch_size, joined, generator, drop_last)
    if isinstance(dataset, ArrayDataset):
        for chunk, positions in parts:
            if dataset.transform is None:
                yield dataset.batch(chunk[positions])
            else:
                x, y = dataset.batch(chunk, generator)
                yield x[positions], y[positions]
        return
    indices = (chunk[positions].tolist() for chunk, positions in parts)  # drawn as one process
    yield from torch.utils.data.DataLoader(dataset, batch_sampler=indices, generator=generator)


def steps_per_epoch(dataset_size: int, batch_size: int) -> int:
    if dataset_size > batch_size:
        return dataset_size // batch_size
    return 1 if dataset_size else 0


def batches_per_epoch(data: Any, config: FitConfig, processes: int = 1) -> int | None:
    """Optimizer steps per epoch (of ``processes`` data-parallel ones); ``None`` for an
    iterable without ``len()`` (a generator)."""
    if is_map_dataset(data):
        return steps_per_epoch(len(data), config.batch_size * processes)
    try:
        return len(data)
    except TypeError:
        pass
    if config.schedule in ("cosine", "step") or config.warmup_epochs:
        raise ConfigError(
            f"the training data ({type(data).__name__}) has no len(), but the "
            f"{config.schedule!r} learning-rate schedule and warm-up need the number of batches "
            "per epoch; pass a DataLoader over a map-style dataset or a list of batches, or use "
            "schedule='constant' or 'inv' without warmup_epochs"
        )
    return None
