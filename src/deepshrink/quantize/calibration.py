"""Calibration inputs for post-training quantization, taken from whatever data the user has.

``calibration`` may be a :class:`~deepshrink.data.Data` (its training split is used), an
:class:`~deepshrink.data.ArrayDataset` or any map-style dataset of ``(x, y)`` samples (or of
Hugging Face style dicts whose ``labels`` key is dropped), one tensor of inputs, a dict of keyword
inputs, or an iterable of batches (tensors, ``(inputs, labels)`` pairs or dicts, like a
``DataLoader``). Datasets are sampled at random (seeded) without augmentation; iterables are read
in order.

The model's inputs keep their structure and dtype: a tensor stays a tensor, a tuple of positional
inputs a tuple, a dict of keyword inputs a dict, and token ids stay integers (floating-point
inputs become float32, what an exported or calibrated float model computes in).

>>> import torch
>>> batches = calibration_batches(torch.rand(10, 3), samples=6, batch_size=4)
>>> [b.shape for b in batches]
[(4, 3), (2, 3)]
>>> ids = {"input_ids": torch.zeros(5, 7, dtype=torch.long)}
>>> input_batches(ids, batch_size=4)[0]["input_ids"].dtype
torch.int64
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import Tensor

from deepshrink.data.catalog import Data
from deepshrink.data.dataset import ArrayDataset
from deepshrink.errors import ConfigError
from deepshrink.graph.io import batch_size as size_of
from deepshrink.graph.io import first_tensor, map_tensors

__all__ = ["calibration_batches", "calibration_inputs", "cpu_inputs", "input_batches"]


def calibration_batches(
    calibration: Any, *, samples: int = 256, batch_size: int = 32, seed: int = 0
) -> list[Any]:
    """Up to ``samples`` inputs from ``calibration`` as batches of NumPy arrays (same structure
    as the model's inputs: an array, a tuple or a dict of arrays), for ONNX Runtime."""
    batches = input_batches(calibration, samples=samples, batch_size=batch_size, seed=seed)
    return [map_tensors(batch, lambda t: t.numpy()) for batch in batches]


def input_batches(
    calibration: Any, *, samples: int = 256, batch_size: int = 32, seed: int = 0
) -> list[Any]:
    """Up to ``samples`` inputs from ``calibration`` as CPU tensor batches of ``batch_size``."""
    if batch_size < 1:
        raise ConfigError(f"batch_size must be at least 1, got {batch_size}")
    inputs = calibration_inputs(calibration, samples=samples, seed=seed)
    total = size_of(inputs)
    return [_rows(inputs, start, start + batch_size) for start in range(0, total, batch_size)]


def calibration_inputs(calibration: Any, *, samples: int = 256, seed: int = 0) -> Any:
    """Up to ``samples`` inputs from ``calibration`` as one CPU batch (a tensor, tuple or dict;
    float inputs as float32, integer inputs unchanged)."""
    if samples < 1:
        raise ConfigError(f"samples must be at least 1, got {samples}")
    inputs = _inputs(calibration, samples, seed)
    if first_tensor(inputs) is None or size_of(inputs) == 0:
        raise ConfigError("calibration data is empty; give at least one input sample")
    return cpu_inputs(inputs)


def _cpu(tensor: Tensor) -> Tensor:
    tensor = tensor.detach().cpu()
    return tensor.float() if tensor.is_floating_point() else tensor


def cpu_inputs(inputs: Any) -> Any:
    """``inputs`` (a tensor, tuple or dict) detached on the CPU: floats as float32, integers
    (token ids) kept."""
    return map_tensors(inputs, _cpu)


def _rows(inputs: Any, start: int, stop: int) -> Any:
    return map_tensors(inputs, lambda t: t[start:stop] if t.ndim else t)


def _inputs(calibration: Any, samples: int, seed: int) -> Any:
    if isinstance(calibration, Data):
        calibration = calibration.train
    if isinstance(calibration, (Tensor, Mapping)):
        return _rows(_model_inputs(calibration), 0, samples)
    if isinstance(calibration, ArrayDataset):
        pick = _sample(len(calibration), samples, seed)
        return calibration.without_transform().batch(pick)[0]
    if isinstance(calibration, torch.utils.data.Dataset) and hasattr(calibration, "__len__"):
        pick = _sample(len(calibration), samples, seed)  # type: ignore[arg-type]
        return _stack([_model_inputs(calibration[int(i)]) for i in pick])
    if isinstance(calibration, Iterable) and not isinstance(calibration, str):
        return _from_batches(calibration, samples)
    raise ConfigError(
        "calibration must be a Data, a dataset, a tensor, a dict of keyword inputs or an "
        f"iterable of batches, got {type(calibration).__name__}"
    )


def _sample(size: int, samples: int, seed: int) -> Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randperm(size, generator=generator)[:samples]


def _model_inputs(item: Any) -> Any:
    """The model's inputs in a sample or batch: ``item[0]`` of an ``(inputs, labels, ...)``
    tuple, a dict without its ``labels``, or the item itself."""
    if isinstance(item, Mapping):
        value: Any = {key: v for key, v in item.items() if key != "labels"}
    else:
        value = item[0] if isinstance(item, (tuple, list)) else item
    if first_tensor(value) is None:
        raise ConfigError(
            "calibration samples must hold tensors: a tensor, an (inputs, labels) pair or a dict "
            f"of keyword inputs; got {type(value).__name__}"
        )
    return value


def _combine(parts: list[Any], join: Any) -> Any:
    """``parts`` (same structure) joined tensor by tensor with ``join(list_of_tensors)``."""
    first = parts[0]
    if isinstance(first, Tensor):
        return join(parts)
    if isinstance(first, Mapping):
        return {key: _combine([part[key] for part in parts], join) for key in first}
    if isinstance(first, (tuple, list)):
        return type(first)(_combine(list(group), join) for group in zip(*parts, strict=True))
    return first


def _stack(samples: list[Any]) -> Any:
    return _combine(samples, lambda ts: torch.stack([torch.as_tensor(t) for t in ts]))


def _from_batches(batches: Iterable[Any], samples: int) -> Any:
    taken: list[Any] = []
    count = 0
    for batch in batches:
        taken.append(_rows(_model_inputs(batch), 0, samples - count))
        count += size_of(taken[-1])
        if count >= samples:
            break
    if not taken:
        raise ConfigError("calibration data is empty; give at least one input batch")
    return _combine(taken, torch.cat)
