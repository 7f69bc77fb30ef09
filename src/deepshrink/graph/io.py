"""A model's own inputs and outputs: positional or keyword inputs of any dtype, any output type.

Users' models take a tensor, a tuple of tensors, or keyword inputs (a dict such as a Hugging Face
tokenizer's ``BatchEncoding``); token ids are integers and stay integers. They return a tensor, a
tuple, a dict or a ``ModelOutput``. Every verb that runs a model goes through these helpers:

* :func:`split` turns example inputs into ``(args, kwargs)`` and :func:`call` runs the model;
* :func:`map_tensors` moves or resizes every tensor of an input, keeping its structure and dtype;
* :func:`logits_of` picks the prediction from an output: ``logits`` when the output has that
  key or attribute, else the first tensor (a ``select`` key or index overrides that);
* :func:`inputs_and_labels` splits a batch into model inputs and labels: ``(x, y)`` pairs, or
  dicts whose ``labels`` key holds the labels.

>>> import torch
>>> split(torch.zeros(2, 3))[0][0].shape
torch.Size([2, 3])
>>> split({"input_ids": torch.zeros(2, 5, dtype=torch.long)})[1]["input_ids"].dtype
torch.int64
>>> logits_of({"loss": torch.tensor(1.0), "logits": torch.ones(2, 4)}).shape
torch.Size([2, 4])
>>> logits_of((torch.ones(2, 3), torch.zeros(1))).shape
torch.Size([2, 3])
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from deepshrink.errors import ConfigError

__all__ = [
    "Select",
    "batch_size",
    "call",
    "first_tensor",
    "inputs_and_labels",
    "logits_of",
    "map_tensors",
    "split",
]

#: Which part of a model's output is the prediction: a key/attribute name or a tuple index.
Select = str | int | None


def split(example: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """``example`` as ``(args, kwargs)``: a tensor → one argument, a tuple/list → arguments,
    a mapping (``dict``, ``BatchEncoding``) → keyword arguments."""
    if isinstance(example, Tensor):
        return (example,), {}
    if isinstance(example, Mapping):
        if not all(isinstance(key, str) for key in example):
            raise ConfigError("keyword inputs must have string keys (parameter names)")
        return (), dict(example)
    if isinstance(example, (tuple, list)):
        return tuple(example), {}
    raise ConfigError(
        "example inputs must be a tensor, a tuple of positional inputs or a dict of keyword "
        f"inputs, got {type(example).__name__}"
    )


def call(model: nn.Module, example: Any) -> Any:
    """``model(*args, **kwargs)`` for ``example`` split as :func:`split` does."""
    args, kwargs = split(example)
    return model(*args, **kwargs)


def map_tensors(example: Any, fn: Callable[[Tensor], Tensor]) -> Any:
    """``example`` with ``fn`` applied to every tensor in it, structure kept (dicts stay dicts)."""
    if isinstance(example, Tensor):
        return fn(example)
    if isinstance(example, Mapping):
        return {key: map_tensors(value, fn) for key, value in example.items()}
    if isinstance(example, (tuple, list)):
        return type(example)(map_tensors(value, fn) for value in example)
    return example


def first_tensor(example: Any) -> Tensor | None:
    """The first tensor in ``example`` (depth first, dicts in key order), or ``None``."""
    if isinstance(example, Tensor):
        return example
    values = example.values() if isinstance(example, Mapping) else example
    if isinstance(values, (tuple, list)) or isinstance(example, Mapping):
        for value in values:
            found = first_tensor(value)
            if found is not None:
                return found
    return None


def batch_size(example: Any) -> int:
    """Size of dim 0 of the first tensor with a dimension in ``example`` (1 if there is none)."""
    tensor = first_tensor(map_tensors(example, lambda t: t if t.ndim else torch.empty(1)))
    return 1 if tensor is None or tensor.ndim == 0 else int(tensor.shape[0])


def _field(output: Any, key: str) -> Any:
    if isinstance(output, Mapping):
        return output.get(key)
    return getattr(output, key, None)


def logits_of(output: Any, select: Select = None) -> Tensor:
    """The prediction tensor in a model's ``output``.

    ``select=None``: the output itself when it is a tensor, its ``logits`` (key or attribute)
    when it has one, else its first tensor. A string selects a key or attribute, an integer an
    index of a tuple output.
    """
    if isinstance(select, str):
        found = _field(output, select)
        if not isinstance(found, Tensor):
            raise ConfigError(
                f"the model's output ({type(output).__name__}) has no tensor {select!r}; "
                f"choose one of {_fields(output)}"
            )
        return found
    if isinstance(select, int):
        values = list(output.values()) if isinstance(output, Mapping) else output
        if not isinstance(values, (tuple, list)) or not -len(values) <= select < len(values):
            raise ConfigError(
                f"output index {select} does not exist in the model's {type(output).__name__}"
            )
        return logits_of(values[select])
    if isinstance(output, Tensor):
        return output
    logits = _field(output, "logits")
    if isinstance(logits, Tensor):
        return logits
    found = first_tensor(output)
    if found is None:
        raise ConfigError(
            f"the model returned {type(output).__name__} with no tensor in it; deepshrink needs "
            "a tensor, a tuple or dict of tensors, or an output with 'logits'"
        )
    return found


def _fields(output: Any) -> str:
    if isinstance(output, Mapping):
        return ", ".join(repr(key) for key in output) or "none"
    return "an integer index" if isinstance(output, (tuple, list)) else "none"


def inputs_and_labels(batch: Any) -> tuple[Any, Tensor | None]:
    """``(inputs, labels)`` of a batch: an ``(x, y)`` pair, or a dict with a ``labels`` key
    (the rest are the model's keyword inputs); any other batch is inputs without labels."""
    if isinstance(batch, Mapping):
        rest = {key: value for key, value in batch.items() if key != "labels"}
        return rest, batch.get("labels")
    if isinstance(batch, (tuple, list)) and len(batch) == 2:
        return batch[0], batch[1]
    return batch, None
