"""The model as ONNX sees it: example inputs of any structure and dtype, one prediction output.

:func:`example` normalises the example batch (a tensor, a tuple or a dict; float inputs as
float32, integers kept), :func:`input_names` names the graph inputs, and :class:`Prediction`
wraps a model so that it takes its inputs positionally and returns only the prediction tensor.
"""

from __future__ import annotations

import copy
from typing import Any

from torch import Tensor, nn

from deepshrink.errors import ConfigError
from deepshrink.graph.io import Select, logits_of, split
from deepshrink.quantize.calibration import cpu_inputs, input_batches

__all__ = ["Prediction", "example", "input_names", "tokens", "wrapped"]


def example(model: nn.Module, example_inputs: Any, calibration: Any) -> Any:
    """The example batch: a tensor, tuple or dict, on the CPU, float inputs as float32."""
    if example_inputs is None and callable(getattr(model, "example_inputs", None)):
        example_inputs = model.example_inputs()
    if example_inputs is None and calibration is not None:
        example_inputs = input_batches(calibration, samples=1, batch_size=1)[0]
    if example_inputs is None:
        raise ConfigError(
            "export needs example_inputs= (a batch the model accepts: a tensor such as "
            "torch.rand(1, 3, 32, 32), a tuple of positional inputs or a dict of keyword inputs)"
            " for a model without example_inputs(), or calibration= data"
        )
    args, kwargs = split(example_inputs)
    values = list(args) + [v for v in kwargs.values() if isinstance(v, Tensor)]
    if not values or not all(isinstance(v, Tensor) for v in values):
        raise ConfigError(
            "export needs tensor inputs: example_inputs must be a tensor, a tuple of tensors or a "
            f"dict with tensor values; got {type(example_inputs).__name__}"
        )
    return cpu_inputs(example_inputs)


def input_names(example: Any, base: str = "input") -> list[str]:
    """ONNX input names for ``example``: ``base`` for a tensor, ``base``, ``base_1``, … for a
    tuple, the keys of a dict (its tensor values)."""
    args, kwargs = split(example)
    if kwargs:
        return [key for key, value in kwargs.items() if isinstance(value, Tensor)]
    return [base if i == 0 else f"{base}_{i}" for i in range(len(args))]


class Prediction(nn.Module):
    """``model`` taking its inputs positionally (keyword inputs by ``keys``) and returning only
    the prediction tensor (:func:`deepshrink.graph.io.logits_of` with ``select``)."""

    def __init__(
        self, model: nn.Module, keys: list[str] | None, constants: dict, select: Select
    ) -> None:
        super().__init__()
        self.model, self.keys, self.constants, self.select = model, keys, constants, select

    def forward(self, *values: Tensor) -> Tensor:
        if self.keys is None:
            output = self.model(*values)
        else:
            output = self.model(**dict(zip(self.keys, values, strict=True)), **self.constants)
        return logits_of(output, self.select)


def wrapped(model: nn.Module, example: Any, select: Select) -> tuple[Prediction, tuple]:
    """A CPU float eval copy of ``model`` as a :class:`Prediction`, and its positional inputs.

    Parameters require gradients and export runs with autograd on, so PyTorch's inference fast
    paths (``nn.TransformerEncoderLayer``'s ``_transformer_encoder_layer_fwd``, fused
    ``nn.MultiheadAttention``), which the exporters cannot translate, stay off.
    """
    frozen = copy.deepcopy(model).cpu().float().eval()
    for parameter in frozen.parameters():
        parameter.requires_grad_(True)
    args, kwargs = split(example)
    if not kwargs:
        return Prediction(frozen, None, {}, select).eval(), tuple(args)
    tensors = {k: v for k, v in kwargs.items() if isinstance(v, Tensor)}
    constants = {k: v for k, v in kwargs.items() if not isinstance(v, Tensor)}
    return Prediction(frozen, list(tensors), constants, select).eval(), tuple(tensors.values())


def tokens(value: Tensor) -> bool:
    """Whether ``value`` looks like token ids or a mask: integers with a sequence axis."""
    return not value.is_floating_point() and value.ndim >= 2
