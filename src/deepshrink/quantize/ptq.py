"""Post-training quantization simulated in PyTorch: fake-quantized weights and layer inputs.

This answers "how accurate would the model be at these bit widths?" for any grid of
:class:`~deepshrink.quantize.observers.QuantScheme` (2–16 bits, per tensor, channel or group),
including grids no runtime executes (4-bit weights, 6-bit activations). Weights of ``Linear``,
convolution and Hugging Face ``Conv1D`` layers are replaced by their quantize→dequantize values;
with ``activations`` each such layer's input is fake-quantized by a forward pre-hook, with ranges
calibrated on data. For real int8 execution export the float model with
``ds.export(model, path, int8=True, ...)`` (ONNX Runtime), which quantizes with its own grid.

The hooks are not part of the state dict: a checkpoint of a simulated model keeps the rounded
weights but not the activation quantization. :func:`remove_fake_quantization_` drops the hooks.

>>> from torch import nn
>>> model = nn.Sequential(nn.Linear(4, 3))
>>> _ = fake_quantize_(model, torch.rand(16, 4), weights=QuantScheme(bits=4))
>>> len(model[0].weight.unique()) <= 16
True
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from deepshrink.errors import ConfigError
from deepshrink.functional import quant as Q
from deepshrink.graph.io import call, map_tensors
from deepshrink.graph.layers import is_transposed_linear
from deepshrink.quantize.calibration import input_batches
from deepshrink.quantize.observers import Observer, QuantScheme

__all__ = [
    "ACTIVATIONS",
    "LAYERS",
    "WEIGHTS",
    "calibrate_activations",
    "fake_quantize_",
    "quantize_weights_",
    "remove_fake_quantization_",
]

#: Layers whose weights and inputs are quantized.
LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
#: The usual int8 grids: weights signed, symmetric, per output channel; activations unsigned,
#: asymmetric, per tensor (what ONNX Runtime's U8S8 static quantization uses).
WEIGHTS = QuantScheme(bits=8, granularity="channel", axis=0)
ACTIVATIONS = QuantScheme(bits=8, signed=False, symmetric=False)

_HOOKS = "_deepshrink_fake_quant_hooks"


def _layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``Linear``, convolutions, and Hugging Face ``Conv1D`` (a linear layer stored in × out)."""
    return [(name, module) for name, module in model.named_modules()
            if isinstance(module, LAYERS) or is_transposed_linear(module)]  # fmt: skip


def _scheme_for(module: nn.Module, scheme: QuantScheme) -> QuantScheme:
    """``scheme`` with the output-channel axis of ``module`` (1 for an in × out ``Conv1D``)."""
    if scheme.granularity == "channel" and is_transposed_linear(module) and scheme.axis == 0:
        return scheme.model_copy(update={"axis": 1})
    return scheme


@torch.no_grad()
def quantize_weights_(model: nn.Module, scheme: QuantScheme = WEIGHTS) -> nn.Module:
    """Replace every layer weight by ``dequantize(quantize(weight))`` under ``scheme``."""
    base = scheme
    for _, layer in _layers(model):
        scheme = _scheme_for(layer, base)
        observer = Observer(scheme)
        observer.update(layer.weight)
        scale, zero_point = observer.qparams()
        layer.weight.copy_(
            Q.fake_quantize(
                layer.weight,
                scale,
                zero_point,
                bits=scheme.bits,
                signed=scheme.signed,
                **scheme.layout,
            )  # fmt: skip
        )
    return model


@torch.no_grad()
def calibrate_activations(
    model: nn.Module,
    calibration: Any,
    scheme: QuantScheme = ACTIVATIONS,
    *,
    samples: int = 256,
    batch_size: int = 64,
) -> dict[str, tuple[Tensor, Tensor]]:
    """``(scale, zero_point)`` of each layer's input, observed on ``calibration`` data.

    The batches may be tensors, tuples or dicts of keyword inputs of any dtype (token ids stay
    integers; see :mod:`deepshrink.quantize.calibration`).

    >>> from torch import nn
    >>> ranges = calibrate_activations(nn.Sequential(nn.Linear(2, 2)), torch.ones(8, 2))
    >>> sorted(ranges), ranges["0"][1].item()
    (['0'], 0)
    """
    from deepshrink.graph.layers import is_transposed_linear

    layers = [(n, m) for n, m in model.named_modules()
              if isinstance(m, LAYERS) or is_transposed_linear(m)]  # fmt: skip
    observers = {name: Observer(scheme) for name, _ in layers}
    handles = [
        layer.register_forward_pre_hook(lambda _m, args, n=name: observers[n].update(args[0]))
        for name, layer in layers
    ]
    was_training = model.training
    model.eval()
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    try:
        for batch in input_batches(calibration, samples=samples, batch_size=batch_size):
            call(model, map_tensors(batch, lambda t: t.to(device)))
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return {name: obs.qparams() for name, obs in observers.items() if obs.batches}


def fake_quantize_(
    model: nn.Module,
    calibration: Any = None,
    *,
    weights: QuantScheme | None = WEIGHTS,
    activations: QuantScheme | None = ACTIVATIONS,
    samples: int = 256,
) -> nn.Module:
    """Simulate post-training quantization in place: rounded weights, fake-quantized inputs.

    ``calibration`` (any data :func:`~deepshrink.quantize.calibration.input_batches`
    accepts) is needed when ``activations`` is given. Set ``weights=None`` or
    ``activations=None`` to leave that part in floating point.
    """
    remove_fake_quantization_(model)
    if activations is not None:
        if calibration is None:
            raise ConfigError(
                "activations= quantization needs calibration= data to measure input ranges; "
                "or pass activations=None to quantize weights only"
            )
        ranges = calibrate_activations(model, calibration, activations, samples=samples)
        handles = [
            layer.register_forward_pre_hook(_input_quantizer(*ranges[name], activations))
            for name, layer in _layers(model)
            if name in ranges
        ]
        setattr(model, _HOOKS, handles)
    if weights is not None:
        quantize_weights_(model, weights)
    return model


def _input_quantizer(scale: Tensor, zero_point: Tensor, scheme: QuantScheme) -> Any:
    def hook(_module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
        x = Q.fake_quantize(args[0], scale.to(args[0].device), zero_point.to(args[0].device),
                            bits=scheme.bits, signed=scheme.signed, **scheme.layout)  # fmt: skip
        return (x, *args[1:])

    return hook


def remove_fake_quantization_(model: nn.Module) -> nn.Module:
    """Drop the input-quantizing hooks of :func:`fake_quantize_` (weights stay rounded)."""
    for handle in getattr(model, _HOOKS, []):
        handle.remove()
    if hasattr(model, _HOOKS):
        delattr(model, _HOOKS)
    return model
