"""Quantization-aware training: layers that compute with fake-quantized weights and inputs.

``quantize_(model, QuantAwareTraining(), calibration=data)`` prepares a float model:

1. BatchNorm layers are folded into the convolutions before them (``fold_bn``), as the int8
   runtime will execute them;
2. each ``Linear``/``Conv1d/2d/3d`` becomes a ``QAT*`` subclass of itself with two
   :class:`~deepshrink.quantize.fake_quant.FakeQuantize` modules, ``weight_quantizer`` (signed,
   symmetric, per output channel by default) and ``input_quantizer`` (unsigned, asymmetric, per
   tensor by default), whose ranges are calibrated on ``calibration`` data;
3. with ``preserve_sparsity`` a layer with exact zeros gets a pruning mask, so pruned weights
   stay zero while training (and are exactly zero on the int8 grid).

Train it with :func:`deepshrink.train.fit` as usual (straight-through gradients; with
``learnable_scale`` the scales train too, LSQ). Then either export it —
``ds.export(model, path, int8=True)`` writes QDQ int8 with the model's own scales — or call
:func:`convert_qat_` to get plain layers holding the rounded weights.

>>> from torch import nn
>>> model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
>>> _ = prepare_qat_(model, QuantAwareTraining(), calibration=torch.rand(32, 4))
>>> type(model[0]).__name__, model[0].input_quantizer.scheme.bits
('QATLinear', 8)
>>> type(convert_qat_(model)[0]).__name__
'Linear'
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from pydantic import model_validator
from torch import Tensor, nn

from deepshrink.errors import ConfigError, FormatError
from deepshrink.graph import forget, record, register_rebuilder
from deepshrink.graph.coverage import measure_coverage, report_coverage
from deepshrink.prune.masking import apply_mask_, mask_of
from deepshrink.prune.targets import Patterns, select
from deepshrink.quantize.config import METHODS, QuantizeConfig
from deepshrink.quantize.fake_quant import FakeQuantize
from deepshrink.quantize.fold import fold_batchnorm_
from deepshrink.quantize.observers import QuantScheme
from deepshrink.quantize.ptq import ACTIVATIONS, WEIGHTS, calibrate_activations

__all__ = [
    "QAT_KIND",
    "QAT_TYPES",
    "QuantAwareTraining",
    "convert_qat_",
    "is_qat",
    "prepare_qat_",
    "qat_layers",
]

logger = logging.getLogger(__name__)

QAT_KIND = "quantize.qat"


class QuantAwareTraining(QuantizeConfig):
    """Quantization-aware training: fake-quantized weights and layer inputs, trained through.

    ``weights``/``activations`` are the grids (``activations=None``: weights only);
    ``learnable_scale`` trains the scales (LSQ); ``fold_bn`` folds BatchNorm into convolutions
    first; ``preserve_sparsity`` keeps exact zeros at zero; ``calibration_samples`` inputs set
    the starting activation ranges.

    >>> QuantAwareTraining(weights={"bits": 4, "granularity": "tensor"}).weights.bits
    4
    >>> QuantAwareTraining(weights={"granularity": "group", "group_size": 8})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    deepshrink.errors.ConfigError: QuantAwareTraining: weights: granularity 'group' is not ...
    """

    method: ClassVar[str] = "qat"

    weights: QuantScheme = WEIGHTS
    activations: QuantScheme | None = ACTIVATIONS
    learnable_scale: bool = False
    fold_bn: bool = True
    preserve_sparsity: bool = True
    calibration_samples: int = 256

    @model_validator(mode="after")
    def _check(self) -> QuantAwareTraining:
        for name in ("weights", "activations"):
            scheme = getattr(self, name)
            if scheme is not None and scheme.granularity == "group":
                raise ValueError(
                    f"{name}: granularity 'group' is not supported in training; "
                    "use 'tensor' or 'channel'"
                )
        if self.activations is not None and self.activations.granularity == "channel":
            raise ValueError("activations: use granularity 'tensor' (runtimes quantize "
                             "layer inputs per tensor)")  # fmt: skip
        if self.calibration_samples < 1:
            raise ValueError(f"calibration_samples must be at least 1, got "
                             f"{self.calibration_samples}")  # fmt: skip
        return self


METHODS.add("qat", QuantAwareTraining)


class QATMixin:
    """Forward with ``weight_quantizer(weight)`` and ``input_quantizer(input)``."""

    weight: Tensor
    bias: Tensor | None
    weight_quantizer: FakeQuantize
    input_quantizer: FakeQuantize | None

    def forward(self, x: Tensor) -> Tensor:
        if self.input_quantizer is not None:
            x = self.input_quantizer(x)
        return self._apply_weight(x, self.weight_quantizer(self.weight))

    def _apply_weight(self, x: Tensor, weight: Tensor) -> Tensor:
        return self._conv_forward(x, weight, self.bias)  # type: ignore[attr-defined]


class QATLinear(QATMixin, nn.Linear):
    """``nn.Linear`` computing with fake-quantized weights and inputs."""

    def _apply_weight(self, x: Tensor, weight: Tensor) -> Tensor:
        return F.linear(x, weight, self.bias)


class QATConv1d(QATMixin, nn.Conv1d):
    """``nn.Conv1d`` computing with fake-quantized weights and inputs."""


class QATConv2d(QATMixin, nn.Conv2d):
    """``nn.Conv2d`` computing with fake-quantized weights and inputs."""


class QATConv3d(QATMixin, nn.Conv3d):
    """``nn.Conv3d`` computing with fake-quantized weights and inputs."""


#: Plain layer type → its quantization-aware subclass.
QAT_TYPES: dict[type[nn.Module], type[nn.Module]] = {
    nn.Linear: QATLinear, nn.Conv1d: QATConv1d, nn.Conv2d: QATConv2d, nn.Conv3d: QATConv3d,
}  # fmt: skip
_PLAIN = {qat: plain for plain, qat in QAT_TYPES.items()}


class QATTransposedLinear(QATMixin):
    """Mixed into a Hugging Face ``Conv1D`` (a linear map with an in × out weight): computes
    ``x @ fake_quant(weight) + bias`` with per-output-channel grids along the weight's axis 1."""

    def _apply_weight(self, x: Tensor, weight: Tensor) -> Tensor:
        return F.linear(x, weight.t(), self.bias)


def qat_type(module: nn.Module) -> type[nn.Module] | None:
    """The quantization-aware class for ``module``, or ``None`` when it has none."""
    from deepshrink.graph.layers import is_transposed_linear

    kind = type(module)
    if kind in QAT_TYPES:
        return QAT_TYPES[kind]
    if kind in _PLAIN or not is_transposed_linear(module):
        return None
    made = next((q for q, plain in _PLAIN.items() if plain is kind), None)
    if made is None:  # one subclass per Conv1D class, made when first needed
        made = type(f"QAT{kind.__name__}", (QATTransposedLinear, kind), {})
        _PLAIN[made] = kind
    return made


def is_qat(module: nn.Module) -> bool:
    """Whether ``module`` is a quantization-aware layer."""
    return type(module) in _PLAIN


def qat_layers(model: nn.Module) -> dict[str, nn.Module]:
    """The quantization-aware layers of ``model`` by name."""
    return {name: module for name, module in model.named_modules() if is_qat(module)}


def _make_qat(layer: nn.Module, config: QuantAwareTraining) -> None:
    kind = qat_type(layer)
    if kind is None:
        raise ConfigError(f"{type(layer).__name__} has no quantization-aware layer")
    scheme = config.weights
    if issubclass(kind, QATTransposedLinear) and scheme.granularity == "channel":
        scheme = scheme.model_copy(update={"axis": 1})  # output channels of an in × out weight
    weights = FakeQuantize(scheme, mode="weight", learnable=config.learnable_scale,
                           channels=layer.weight.shape[scheme.axis])  # fmt: skip
    weights.observe(layer.weight)
    inputs = None
    if config.activations is not None:
        inputs = FakeQuantize(config.activations, learnable=config.learnable_scale)
    layer.__class__ = kind
    layer.add_module("weight_quantizer", weights.to(layer.weight.device))
    layer.add_module("input_quantizer", inputs.to(layer.weight.device) if inputs else None)


def prepare_qat_(
    model: nn.Module,
    config: QuantAwareTraining | None = None,
    *,
    calibration: Any = None,
    include: Patterns = None,
    exclude: Patterns = None,
) -> nn.Module:
    """Make ``model`` quantization-aware in place (see the module docstring); return it."""
    config = config or QuantAwareTraining()
    if qat_layers(model):
        raise ConfigError("the model is already prepared for quantization-aware training")
    if config.activations is not None and calibration is None:
        raise ConfigError("quantization-aware training of activations needs calibration= data "
                          "to set their starting ranges; or pass activations=None")  # fmt: skip
    reasons = _skip_reasons(model)
    candidates = {n: m for n, m in model.named_modules() if qat_type(m) is not None}
    layers = select(candidates, include, exclude, method=_METHOD, unavailable=reasons)
    narrowed = include is not None or exclude is not None
    coverage = measure_coverage(_METHOD, model, list(layers), reasons, narrowed=narrowed)
    if not layers:
        report_coverage(model, coverage)  # raises, naming what blocked each layer
    was_training = model.training
    model.eval()
    folded = fold_batchnorm_(model) if config.fold_bn else []
    if config.preserve_sparsity:
        for layer in layers.values():
            if mask_of(layer, "weight") is None and bool((layer.weight == 0).any()):
                apply_mask_(layer, "weight", layer.weight != 0)
    ranges = {}
    if config.activations is not None:  # the float inputs each layer sees
        ranges = calibrate_activations(model, calibration, config.activations,
                                       samples=config.calibration_samples)  # fmt: skip
    for name, layer in layers.items():
        _make_qat(layer, config)
        if name in ranges:
            layer.input_quantizer.set_qparams(*ranges[name])
    record(model, QAT_KIND, layers=sorted(layers), config=config.model_dump(mode="json"))
    report_coverage(model, coverage)
    model.train(was_training)
    logger.info("quantization-aware: %d layers (%d BatchNorm folded)", len(layers), len(folded))
    return model


_METHOD = "quantization-aware training"


def _skip_reasons(model: nn.Module) -> dict[str, str]:
    """Why each weight matrix outside a ``Linear``/``Conv1d-3d`` is not trained quantized."""
    from deepshrink.graph.layers import weight_slots

    reasons = {}
    for name, slot in weight_slots(model).items():
        module = slot.module
        if qat_type(module) is not None:
            continue
        if isinstance(module, nn.Embedding):
            why = ("an embedding is a table lookup, not a matmul; int8 export "
                   "(ds.export int8=...) quantizes the table after training")  # fmt: skip
        elif isinstance(module, nn.RNNBase):
            why = (f"{type(module).__name__} gates run in a fused kernel with no fake-quantized "
                   "variant; ds.export(int8='dynamic') quantizes them")  # fmt: skip
        elif isinstance(module, nn.MultiheadAttention) or name.endswith(".out_proj"):
            why = ("nn.MultiheadAttention uses in_proj_weight and out_proj.weight in its fused "
                   "functional call, not through Linear layers")  # fmt: skip
        else:
            why = (f"{type(module).__name__} has no quantization-aware layer (Linear, "
                   "Conv1d/2d/3d and Hugging Face Conv1D have one)")  # fmt: skip
        reasons[name] = why
    return reasons


def convert_qat_(model: nn.Module) -> nn.Module:
    """Turn quantization-aware layers back into plain ones holding their rounded weights.

    The input quantization is dropped (the result is a float model whose weights lie on the
    int grid); export the prepared model itself for int8 execution.
    """
    with torch.no_grad():
        for layer in qat_layers(model).values():
            rounded = layer.weight_quantizer.eval()(layer.weight.detach())
            layer.weight.data.copy_(rounded)
            del layer.weight_quantizer, layer.input_quantizer
            layer.__class__ = _PLAIN[type(layer)]
    forget(model, QAT_KIND)
    return model


@register_rebuilder(QAT_KIND)
def _rebuild_qat(model: nn.Module, entry: dict[str, Any]) -> None:
    """Make the named layers quantization-aware (the state dict then fills in the scales)."""
    layers, settings = entry.get("layers"), entry.get("config")
    if not isinstance(layers, list) or not isinstance(settings, dict):
        raise FormatError(f"{QAT_KIND}: entry needs 'layers' and 'config': {entry!r}")
    config = QuantAwareTraining(**{k: v for k, v in settings.items() if k != "method"})
    for name in layers:
        try:
            layer = model.get_submodule(name)
        except AttributeError:
            raise FormatError(f"{QAT_KIND}: the model has no module {name!r}") from None
        if qat_type(layer) is None:
            raise FormatError(f"{QAT_KIND}: {name} is a {type(layer).__name__}")
        _make_qat(layer, config)
