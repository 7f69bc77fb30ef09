"""Mixed-precision weight quantization: each layer at its own bit width, set or assigned.

Weights of ``Linear``/convolution layers are replaced by ``dequantize(quantize(w))`` on a
symmetric signed grid (per output channel by default, or per tensor), as
:func:`~deepshrink.quantize.ptq.quantize_weights_` does for one width; pruned zeros stay exactly
zero. The widths come from :class:`MixedPrecision`'s ``bits`` globs, or, with a budget
(``average_bits`` or ``size_bytes``), from :func:`assign_bits`:

1. **Sensitivity scan** (:func:`bit_sensitivity`): each layer alone is quantized at each
   candidate width, the others stay float, and the metric is measured on the calibration
   batches: the increase of the cross-entropy (``metric="loss"``) or the mean squared change of
   the outputs (``metric="output"``, no labels needed). Costs are made monotone (a narrower width
   never costs less than a wider one) and clipped at 0, which keeps noise on a few hundred
   samples from rewarding fewer bits.
2. **Allocation** (:func:`deepshrink.functional.allocation.choose`): the widths minimising the
   summed costs subject to ``Σ parameters × bits ≤ budget``, solved exactly by dynamic
   programming over Pareto frontiers (a multiple-choice knapsack). Summing single-layer costs
   assumes the layers' errors add up, the usual first-order assumption (HAWQ, Dong et al. 2019).

The widths are recorded on the model (``"quantize.mixed"``; :func:`layer_bits_of` reads them), so
reports and checkpoints keep them. Per-tensor grids give at most ``2**bits`` distinct values per
layer, which ``ds.save`` stores as a codebook with ``bits``-wide codes; per-channel grids give
that many per output channel (more accurate, but the ``.dsz`` file does not shrink with them).

>>> import torch
>>> from torch import nn
>>> from deepshrink.quantize import MixedPrecision, quantize_
>>> model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))
>>> _ = quantize_(model, MixedPrecision(bits={"0": 3}, default_bits=8))
>>> len(model[0].weight[0].unique()) <= 8, layer_bits_of(model)
(True, {'0': 3, '2': 8})
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Literal

import torch
from pydantic import Field, field_validator, model_validator
from torch import Tensor, nn

from deepshrink.errors import ConfigError, FormatError
from deepshrink.functional import quant as Q
from deepshrink.functional.allocation import choose
from deepshrink.graph import record, register_rebuilder, structure_of
from deepshrink.graph.coverage import measure_coverage, report_coverage
from deepshrink.graph.io import batch_size, call, logits_of, map_tensors
from deepshrink.graph.layers import Slot, unknown_reasons, weight_slots
from deepshrink.prune.masking import enforce_masks_
from deepshrink.prune.targets import Patterns, layer_values, select
from deepshrink.quantize.calibration import _sample, input_batches
from deepshrink.quantize.config import METHODS, QuantizeConfig
from deepshrink.quantize.kmeans import _worded
from deepshrink.quantize.observers import Observer, QuantScheme

__all__ = [
    "MIXED_KIND",
    "MixedPrecision",
    "allocate_bits",
    "assign_bits",
    "bit_sensitivity",
    "layer_bits_of",
    "quantize_mixed_",
    "quantized_weight",
]

logger = logging.getLogger(__name__)

#: Kind of the structure record that keeps each layer's width.
MIXED_KIND = "quantize.mixed"
_METHOD = "mixed-precision quantization"
Granularity = Literal["channel", "tensor"]
Metric = Literal["loss", "output"]


def _check_width(where: str, value: int) -> None:
    if isinstance(value, bool) or not Q.MIN_BITS <= value <= Q.MAX_BITS:
        raise ValueError(
            f"{where} must be an integer from {Q.MIN_BITS} to {Q.MAX_BITS}, got {value!r}"
        )


class MixedPrecision(QuantizeConfig):
    """Per-layer weight widths: ``bits`` globs (the last match wins) over ``default_bits``, or,
    with ``average_bits`` or ``size_bytes``, widths from ``candidates`` chosen by
    :func:`assign_bits` on calibration data (layers named in ``bits`` then keep their width).

    ``size_bytes`` counts the quantized layers' weights at ``parameters × bits / 8`` bytes.

    >>> MixedPrecision(average_bits=4).automatic
    True
    >>> MixedPrecision(average_bits=1.5)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    deepshrink.errors.ConfigError: MixedPrecision: average_bits=1.5 is below the smallest ...
    """

    method: ClassVar[str] = "mixed"

    bits: dict[str, int] = {}
    default_bits: int = 8
    granularity: Granularity = "channel"
    candidates: tuple[int, ...] = (2, 3, 4, 5, 6, 8)
    average_bits: float | None = Field(None, gt=0)
    size_bytes: float | None = Field(None, gt=0)
    metric: Metric = "loss"
    samples: int = Field(256, ge=1)

    @field_validator("candidates")
    @classmethod
    def _sorted(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if not value:
            raise ValueError("candidates is empty; give the widths to choose from, e.g. [2, 4, 8]")
        for width in value:
            _check_width("candidates", width)
        return tuple(sorted(set(value)))

    @model_validator(mode="after")
    def _check(self) -> MixedPrecision:
        _check_width("default_bits", self.default_bits)
        for pattern, value in self.bits.items():
            _check_width(f"bits[{pattern!r}]", value)
        if self.average_bits is not None and self.size_bytes is not None:
            raise ValueError(
                "average_bits and size_bytes are both set; give one budget (or neither for "
                "fixed widths)"
            )
        if self.average_bits is not None and self.average_bits < self.candidates[0]:
            raise ValueError(
                f"average_bits={self.average_bits} is below the smallest candidate width "
                f"{self.candidates[0]}, so no assignment meets it; raise average_bits or add a "
                "smaller candidate"
            )
        return self

    @property
    def automatic(self) -> bool:
        """Whether the widths are assigned from a sensitivity scan (a budget is given)."""
        return self.average_bits is not None or self.size_bytes is not None


def quantized_weight(
    weight: Tensor, bits: int, granularity: Granularity = "channel", axis: int = 0
) -> Tensor:
    """``dequantize(quantize(weight))`` on a symmetric signed min–max grid of ``bits``
    (per output channel along ``axis`` with ``granularity="channel"``).

    >>> quantized_weight(torch.tensor([[0.0, -1.0, 0.3]]), 2).tolist()
    [[0.0, -1.0, 0.0]]
    """
    scheme = QuantScheme(bits=bits, granularity=granularity, axis=axis)
    observer = Observer(scheme)
    observer.update(weight.detach())
    scale, zero_point = observer.qparams()
    return Q.fake_quantize(weight.detach(), scale, zero_point, bits=bits, **scheme.layout)


def _layers(model: nn.Module, include: Patterns, exclude: Patterns) -> dict[str, Slot]:
    with _worded():
        unknown = unknown_reasons(model)
        layers = select(weight_slots(model), include, exclude, method=_METHOD, unavailable=unknown)
    computed = [n for n, s in layers.items() if s.module._parameters.get(s.parameter) is None]
    if computed:
        raise ConfigError(
            f"{_METHOD} cannot quantize {', '.join(computed)}: the weight is computed (k-means "
            "shared or quantization-aware); finalize_ first or leave them out with exclude="
        )
    return layers


def _quantize_slot_(slot: Slot, value: Tensor, bits: int, granularity: Granularity) -> None:
    with torch.no_grad():
        slot.tensor.copy_(quantized_weight(value, bits, granularity, slot.out_axis))


def _fixed_bits(names: Sequence[str], bits: Mapping[str, int], default: int) -> dict[str, int]:
    with _worded():
        return {k: int(v) for k, v in layer_values(names, default, bits, _METHOD).items()}


def quantize_mixed_(
    model: nn.Module,
    config: MixedPrecision,
    *,
    include: Patterns = None,
    exclude: Patterns = None,
    calibration: Any = None,
) -> nn.Module:
    """Quantize the selected layers' weights at their widths (``quantize_`` calls this)."""
    layers = _layers(model, include, exclude)
    if config.automatic:
        bits = assign_bits(
            model, calibration, config.candidates, average_bits=config.average_bits,
            size_bytes=config.size_bytes, include=list(layers), fixed=config.bits,
            metric=config.metric, granularity=config.granularity, samples=config.samples,
        )  # fmt: skip
    else:
        bits = _fixed_bits(list(layers), config.bits, config.default_bits)
    enforce_masks_(model)
    for name, slot in layers.items():
        _quantize_slot_(slot, slot.tensor.detach(), bits[name], config.granularity)
    record(model, MIXED_KIND, granularity=config.granularity, layers=bits)
    narrowed = include is not None or exclude is not None
    report_coverage(model, measure_coverage(_METHOD, model, list(layers), narrowed=narrowed))
    logger.info("mixed precision: %s", ", ".join(f"{n} {b} bits" for n, b in bits.items()))
    return model


def layer_bits_of(model: nn.Module) -> dict[str, int]:
    """The weight width of each layer quantized by :func:`quantize_mixed_` (latest wins)."""
    widths: dict[str, int] = {}
    for entry in structure_of(model):
        if entry["kind"] == MIXED_KIND:
            widths.update(entry["layers"])
    return widths


@register_rebuilder(MIXED_KIND)
def _rebuild(model: nn.Module, entry: dict[str, Any]) -> None:
    """Nothing to change (weights are plain); check the record names real layers."""
    layers = entry.get("layers")
    if not isinstance(layers, dict):
        raise FormatError(f"{MIXED_KIND}: entry has no 'layers' mapping: {entry!r}")
    slots = weight_slots(model)
    for name, bits in layers.items():
        if name not in slots or not isinstance(bits, int):
            raise FormatError(f"{MIXED_KIND}: no weight layer {name!r} for {bits!r} bits")


# --- sensitivity scan and allocation -----------------------------------------------------------


def bit_sensitivity(
    model: nn.Module,
    calibration: Any,
    candidates: Sequence[int] = (2, 3, 4, 5, 6, 8),
    *,
    include: Patterns = None,
    exclude: Patterns = None,
    metric: Metric = "loss",
    granularity: Granularity = "channel",
    samples: int = 256,
) -> dict[str, dict[int, float]]:
    """Per layer and width, the metric's increase when that layer alone is quantized.

    ``model`` is left as it was (each weight is restored after its trials).
    """
    widths = MixedPrecision(candidates=tuple(candidates)).candidates
    batches = _batches(calibration, samples, needs_labels=metric == "loss")
    layers = _layers(model, include, exclude)
    was_training = model.training
    model.eval()
    try:
        measure = _metric(model, batches, metric)
        reference = measure()
        result: dict[str, dict[int, float]] = {}
        for index, (name, slot) in enumerate(layers.items(), 1):
            original = slot.tensor.detach().clone()
            try:
                result[name] = {}
                for bits in widths:
                    _quantize_slot_(slot, original, bits, granularity)
                    result[name][bits] = measure() - reference
            finally:
                with torch.no_grad():
                    slot.tensor.copy_(original)
            logger.info("bit sensitivity %d/%d %s: %s", index, len(layers), name, result[name])
    finally:
        model.train(was_training)
    return result


def assign_bits(
    model: nn.Module,
    calibration: Any,
    candidates: Sequence[int] = (2, 3, 4, 5, 6, 8),
    *,
    average_bits: float | None = None,
    size_bytes: float | None = None,
    include: Patterns = None,
    exclude: Patterns = None,
    fixed: Mapping[str, int] | None = None,
    metric: Metric = "loss",
    granularity: Granularity = "channel",
    samples: int = 256,
) -> dict[str, int]:
    """Widths from ``candidates`` with the least summed sensitivity within the budget.

    The budget is ``average_bits`` (weighted by each layer's weight count) or ``size_bytes``
    (``Σ parameters × bits / 8``), over the selected layers. ``fixed`` globs pin layers to a
    width. ``model`` is not changed.
    """
    if calibration is None:
        raise ConfigError("automatic bit assignment measures the model; pass calibration= data")
    widths = MixedPrecision(
        candidates=tuple(candidates), average_bits=average_bits, size_bytes=size_bytes
    ).candidates
    if average_bits is None and size_bytes is None:
        raise ConfigError("assign_bits needs a budget: average_bits= or size_bytes=")
    layers = _layers(model, include, exclude)
    pinned = _fixed_bits(list(layers), fixed, 0) if fixed else dict.fromkeys(layers, 0)
    counts = {name: slot.numel for name, slot in layers.items()}
    if average_bits is not None:
        budget, asked = average_bits * sum(counts.values()), f"average_bits={average_bits}"
    else:
        budget, asked = 8 * float(size_bytes or 0), f"size_bytes={size_bytes}"
    least = sum(n * (pinned[name] or widths[0]) for name, n in counts.items())
    if least > budget:
        raise ConfigError(
            f"{asked} cannot be met: the narrowest widths already need "
            f"{least / sum(counts.values()):.3g} average bits ({least / 8:.0f} bytes); raise the "
            "budget, add a smaller candidate or pin fewer layers"
        )
    free = [name for name in layers if not pinned[name]]
    costs = {name: {bits: 0.0} for name, bits in pinned.items() if bits}
    if free:
        costs |= bit_sensitivity(
            model, calibration, widths, include=free, metric=metric,
            granularity=granularity, samples=samples,
        )  # fmt: skip
    return allocate_bits({name: costs[name] for name in layers}, counts, budget)


def allocate_bits(
    costs: Mapping[str, Mapping[int, float]], parameters: Mapping[str, int], budget: float
) -> dict[str, int]:
    """Per layer, the width with the least summed (monotone) cost and ``Σ n × bits ≤ budget``.

    >>> allocate_bits({"a": {2: 5.0, 8: 0.0}, "b": {2: 1.0, 8: 0.0}}, {"a": 10, "b": 10}, 100)
    {'a': 8, 'b': 2}
    """
    names = list(costs)
    widths = {name: sorted(costs[name]) for name in names}
    sizes = [[parameters[name] * bits for bits in widths[name]] for name in names]
    picked = choose(sizes, [_monotone(costs[name]) for name in names], budget)
    return {name: widths[name][k] for name, k in zip(names, picked, strict=True)}


def _monotone(costs: Mapping[int, float]) -> list[float]:
    """Costs in increasing width, clipped at 0 and never below those of a wider width."""
    widths = sorted(costs)
    out = [0.0] * len(widths)
    floor = 0.0
    for index in range(len(widths) - 1, -1, -1):
        floor = max(floor, costs[widths[index]])
        out[index] = floor
    return out


def _metric(model: nn.Module, batches: list[tuple[Any, Tensor | None]], metric: Metric) -> Any:
    """A function measuring ``model`` on ``batches``: mean loss, or mean squared output change.

    Inputs may be tensors, tuples or keyword dicts; outputs anything :func:`logits_of` reads;
    per-token logits ``(N, T, C)`` are scored per token (labels ``-100`` ignored)."""
    device = next((p.device for p in model.parameters()), torch.device("cpu"))

    def run(x: Any) -> Tensor:
        return logits_of(call(model, map_tensors(x, lambda t: t.to(device))))

    with torch.no_grad():
        float_outputs = [run(x) for x, _ in batches] if metric == "output" else []

    @torch.no_grad()
    def measure() -> float:
        total, count = 0.0, 0
        for index, (x, y) in enumerate(batches):
            out = run(x)
            if metric == "loss":
                assert y is not None
                target = y.to(device).reshape(-1)
                loss = nn.functional.cross_entropy(
                    out.reshape(target.shape[0], -1), target, reduction="sum", ignore_index=-100
                ) * (out.shape[0] / max(1, target.shape[0]))
            else:
                loss = (out - float_outputs[index]).pow(2).mean(tuple(range(1, out.ndim))).sum()
            total, count = total + float(loss), count + batch_size(x)
        return total / count

    return measure


def _batches(calibration: Any, samples: int, *, needs_labels: bool) -> list[tuple[Tensor, Any]]:
    """Up to ``samples`` ``(inputs, labels)`` pairs from ``calibration`` in batches of 64."""
    from deepshrink.data.catalog import Data
    from deepshrink.data.dataset import ArrayDataset

    if isinstance(calibration, Data):
        calibration = calibration.train
    pairs: list[tuple[Tensor, Any]] = []
    if isinstance(calibration, ArrayDataset):
        x, y = calibration.without_transform().batch(_sample(len(calibration), samples, 0))
        pairs = [(x[i : i + 64], y[i : i + 64]) for i in range(0, x.shape[0], 64)]
    elif (
        isinstance(calibration, (list, tuple))
        and calibration
        and isinstance(calibration[0], (list, tuple))
    ):
        count = 0
        for x, y, *_ in calibration:
            if count < samples:
                left = samples - count
                pairs.append((map_tensors(x, lambda t, n=left: t[:n]), torch.as_tensor(y)[:left]))
                count += batch_size(pairs[-1][0])
    else:  # inputs only (a tensor, tuple or keyword dict per batch)
        pairs = [(x, None) for x in input_batches(calibration, samples=samples, batch_size=64)]
    if needs_labels and any(y is None for _, y in pairs):
        raise ConfigError(
            "metric='loss' needs labelled calibration data ((inputs, labels) batches, a dataset "
            "or a Data); give labels, or use metric='output' to compare outputs instead"
        )
    return pairs


METHODS.add("mixed", MixedPrecision)
