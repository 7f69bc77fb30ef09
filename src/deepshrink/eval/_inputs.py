"""Example inputs for measuring a model: checking, resizing the batch, deriving, inference mode.

Private helpers shared by the counting, latency and report modules. An example is what the
model takes: a tensor, a tuple of positional inputs or a dict of keyword inputs; dtypes are kept
(token ids stay integers).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from deepshrink.errors import ConfigError
from deepshrink.graph.io import call, inputs_and_labels, map_tensors, split


def as_example(example_inputs: Any) -> Any:
    """``example_inputs`` checked: a tensor, a tuple of positional inputs (a list becomes a
    tuple) or a dict of keyword inputs, returned as it is, every tensor with its own dtype."""
    if isinstance(example_inputs, list):
        example_inputs = tuple(example_inputs)
    if not isinstance(example_inputs, (Tensor, tuple, Mapping)):
        raise ConfigError(
            "example_inputs must be a tensor, a tuple of positional inputs or a dict of keyword "
            f"inputs (token ids as integers), got {type(example_inputs).__name__}"
        )
    split(example_inputs)  # keyword inputs need string keys
    return example_inputs


def with_batch_size(example: Any, size: int) -> Any:
    """Every tensor input cut or tiled along dim 0 to ``size`` samples; structure, dtypes and
    other values unchanged."""
    return map_tensors(example, lambda value: _resize(value, size))


def _resize(value: Tensor, size: int) -> Tensor:
    if value.ndim == 0 or value.shape[0] == size:
        return value
    if value.shape[0] == 0:
        raise ConfigError("example_inputs has an empty batch; give at least one sample")
    repeats = -(-size // value.shape[0])
    return value.repeat(repeats, *([1] * (value.ndim - 1)))[:size].contiguous()


def on_model_device(example: Any, model: nn.Module) -> Any:
    """Tensor inputs moved to the device of the model's first parameter (if it has one)."""
    device = next((p.device for p in model.parameters()), None)
    if device is None:
        return example
    return map_tensors(example, lambda value: value.to(device))


def derive_inputs(model: nn.Module, dataset: Any, example_inputs: Any) -> Any:
    """Example inputs from the argument, else ``model.example_inputs()``, else the first sample
    of ``dataset`` (a dataset of ``(inputs, label)`` or dict samples, or the first batch of a
    ``DataLoader``), with their dtypes kept."""
    if example_inputs is not None:
        return as_example(example_inputs)
    make = getattr(model, "example_inputs", None)
    if callable(make):
        return as_example(make())
    found = _first_inputs(dataset)
    if found is not None:
        return found
    raise ConfigError(
        f"cannot derive example inputs for {type(model).__name__}: it has no example_inputs() "
        "method and no non-empty dataset or re-iterable DataLoader was given; pass "
        "example_inputs= (a tensor, tuple or dict) with a batch of one sample"
    )


def _first_inputs(data: Any) -> Any:
    """One sample's inputs as a batch of one: from a map-style or iterable dataset (samples) or
    a re-iterable ``DataLoader``/list (batches); ``None`` when there is none to read."""
    if isinstance(data, torch.utils.data.IterableDataset):
        sample = next(iter(data), None)
        return None if sample is None else _batched(_sample_inputs(sample))
    if isinstance(data, torch.utils.data.Dataset):
        return _batched(_sample_inputs(data[0])) if len(data) > 0 else None  # type: ignore[arg-type]
    if data is None or not hasattr(data, "__iter__") or iter(data) is data:
        return None  # a one-shot iterator: reading it would lose a batch
    batch = next(iter(data), None)
    return None if batch is None else with_batch_size(as_example(inputs_and_labels(batch)[0]), 1)


def _sample_inputs(sample: Any) -> Any:
    """The model inputs of one dataset sample: a dict without its ``labels``, the first item
    of an ``(inputs, label)`` pair (or of a longer tuple), or the sample itself."""
    if isinstance(sample, Mapping):
        return inputs_and_labels(sample)[0]
    if isinstance(sample, (tuple, list)):
        return sample[0]
    return sample


def _batched(inputs: Any) -> Any:
    """A batch of one made from one sample's inputs (numbers and lists become tensors)."""
    if isinstance(inputs, Mapping):
        return {key: _batched(value) for key, value in inputs.items()}
    if isinstance(inputs, (tuple, list)) and not _is_number_list(inputs):
        return tuple(_batched(value) for value in inputs)
    return torch.as_tensor(inputs).unsqueeze(0)


def _is_number_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, (int, float, list)) for v in value)


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


def layer_inputs(
    model: nn.Module, layers: dict[str, nn.Module], example_inputs: Any
) -> dict[str, Tensor]:
    """The first positional input each of ``layers`` (name → submodule of ``model``) receives
    when ``model`` runs once on ``example_inputs`` (``None``: the model's own
    ``example_inputs()``, or nothing captured), in eval mode without autograd."""
    if example_inputs is None:
        maker = getattr(model, "example_inputs", None)
        if not callable(maker):
            return {}
        example_inputs = maker()
    seen: dict[str, Tensor] = {}

    def hook(name: str) -> Any:
        return lambda module, args: seen.setdefault(name, args[0].detach().clone())

    handles = [layer.register_forward_pre_hook(hook(name)) for name, layer in layers.items()]
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    try:
        with inference(model):
            call(model, map_tensors(example_inputs, lambda t: t.to(device)))
    finally:
        for handle in handles:
            handle.remove()
    return seen
