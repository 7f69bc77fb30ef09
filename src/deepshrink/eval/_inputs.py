"""Example inputs for measuring a model: normalising, resizing the batch, deriving, inference mode.

Private helpers shared by the counting, latency and report modules.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from deepshrink.errors import ConfigError

#: Positional inputs of one forward pass, ``model(*inputs)``.
Inputs = tuple[Any, ...]


def as_inputs(example_inputs: Tensor | Sequence[Any]) -> Inputs:
    """``example_inputs`` as a tuple of positional arguments (a lone tensor becomes a 1-tuple)."""
    if isinstance(example_inputs, Tensor):
        return (example_inputs,)
    if isinstance(example_inputs, (tuple, list)):
        return tuple(example_inputs)
    raise ConfigError(
        "example_inputs must be a tensor or a tuple of tensors, "
        f"got {type(example_inputs).__name__}"
    )


def batch_size_of(inputs: Inputs) -> int:
    """Size of dim 0 of the first tensor input with at least one dimension (1 if there is none)."""
    for value in inputs:
        if isinstance(value, Tensor) and value.ndim > 0:
            return int(value.shape[0])
    return 1


def with_batch_size(inputs: Inputs, size: int) -> Inputs:
    """Every tensor input cut or tiled along dim 0 to ``size`` samples; other values unchanged."""
    return tuple(_resize(value, size) for value in inputs)


def _resize(value: Any, size: int) -> Any:
    if not isinstance(value, Tensor) or value.ndim == 0 or value.shape[0] == size:
        return value
    if value.shape[0] == 0:
        raise ConfigError("example_inputs has an empty batch; give at least one sample")
    repeats = -(-size // value.shape[0])
    return value.repeat(repeats, *([1] * (value.ndim - 1)))[:size].contiguous()


def on_model_device(inputs: Inputs, model: nn.Module) -> Inputs:
    """Tensor inputs moved to the device of the model's first parameter (if it has one)."""
    device = next((p.device for p in model.parameters()), None)
    if device is None:
        return inputs
    return tuple(v.to(device) if isinstance(v, Tensor) else v for v in inputs)


def derive_inputs(
    model: nn.Module,
    dataset: torch.utils.data.Dataset | None,
    example_inputs: Tensor | Sequence[Any] | None,
) -> Inputs:
    """Example inputs from the argument, else ``model.example_inputs()``, else ``dataset[0]``."""
    if example_inputs is not None:
        return as_inputs(example_inputs)
    make = getattr(model, "example_inputs", None)
    if callable(make):
        return as_inputs(make())
    if dataset is not None and len(dataset) > 0:  # type: ignore[arg-type]
        sample = dataset[0]
        first = sample[0] if isinstance(sample, (tuple, list)) else sample
        return (torch.as_tensor(first).unsqueeze(0),)
    raise ConfigError(
        f"cannot derive example inputs for {type(model).__name__}: it has no example_inputs() "
        "method and no non-empty dataset was given; pass example_inputs=(tensor,) with a "
        "batch of one sample"
    )


@contextlib.contextmanager
def inference(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode and no autograd for the block; each submodule's own train/eval flag is restored."""
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        with torch.no_grad():
            yield model
    finally:
        for module, training in modes:
            module.training = training
