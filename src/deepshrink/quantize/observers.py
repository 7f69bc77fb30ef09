"""Quantization schemes and observers: how many bits, which grid, and how ranges are estimated.

:class:`QuantScheme` is the frozen config of one quantized tensor kind (weights or activations).
An :class:`Observer` follows a scheme: it sees tensors (one weight, or activation batches during
calibration), keeps a running range per scale, and turns it into ``(scale, zero_point)``.
Range estimators are registered by name in :data:`OBSERVERS`:

- ``minmax``: the smallest and largest value ever seen;
- ``moving_average``: an exponential moving average of each batch's min and max
  (``averaging_constant`` is the weight of the newest batch), as PyTorch's observer;
- ``percentile``: each batch's ``percentile`` and ``100 − percentile`` percentiles, averaged
  over batches (outliers are clipped);
- ``mse``: each batch's min–max range shrunk to the factor with the least squared error,
  averaged over batches;
- ``kl``: each batch's entropy-calibrated range (TensorRT's histogram / KL-divergence search),
  averaged over batches.

>>> scheme = QuantScheme(bits=4, granularity="channel", axis=0)
>>> observer = Observer(scheme)
>>> observer.update(torch.tensor([[-1.0, 0.5], [0.0, 2.0]]))
>>> scale, zero_point = observer.qparams()
>>> [round(s, 4) for s in scale.tolist()], zero_point.tolist()
([0.1429, 0.2857], [0, 0])
>>> QuantScheme(observer="minmx")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
deepshrink.errors.ConfigError: QuantScheme: unknown observer 'minmx'; did you mean 'minmax'? ...
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from pydantic import Field, field_validator, model_validator
from torch import Tensor

from deepshrink._config import MethodConfig
from deepshrink._registry import Registry
from deepshrink.functional import quant as Q

__all__ = ["OBSERVERS", "Observer", "QuantScheme", "RangeRule"]


@dataclass(frozen=True)
class RangeRule:
    """How an observer estimates one batch's range and merges it with the running one."""

    estimate: Callable[[Tensor, QuantScheme], tuple[Tensor, Tensor]]
    merge: Literal["extreme", "average", "ema"]


OBSERVERS: Registry[RangeRule] = Registry("observer")
OBSERVERS.add("minmax", RangeRule(lambda rows, s: Q.minmax_range(rows), "extreme"))
OBSERVERS.add("moving_average", RangeRule(lambda rows, s: Q.minmax_range(rows), "ema"))
OBSERVERS.add(
    "percentile", RangeRule(lambda rows, s: Q.percentile_range(rows, s.percentile), "average")
)
OBSERVERS.add(
    "mse",
    RangeRule(
        lambda rows, s: Q.mse_range(rows, bits=s.bits, signed=s.signed, symmetric=s.symmetric),
        "average",
    ),
)
OBSERVERS.add("kl", RangeRule(lambda rows, s: Q.kl_range(rows, bits=s.bits), "average"))


class QuantScheme(MethodConfig):
    """One quantization grid: ``bits`` (2–16), ``signed``, ``symmetric`` and the granularity.

    ``granularity`` is ``"tensor"``, ``"channel"`` (one scale per index of ``axis``; axis 0 is
    the output channel of a ``Conv``/``Linear`` weight) or ``"group"`` (``group_size``
    consecutive values along ``axis`` share a scale). ``observer`` names a range estimator in
    :data:`OBSERVERS`.

    >>> QuantScheme(bits=17)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    deepshrink.errors.ConfigError: QuantScheme.bits: Input should be less than or equal to 16, ...
    """

    bits: int = Field(8, ge=Q.MIN_BITS, le=Q.MAX_BITS)
    signed: bool = True
    symmetric: bool = True
    granularity: Literal["tensor", "channel", "group"] = "tensor"
    axis: int = 0
    group_size: int | None = Field(None, ge=1)
    observer: str = "minmax"
    percentile: float = Field(99.99, gt=50.0, le=100.0)
    averaging_constant: float = Field(0.01, gt=0.0, le=1.0)

    @field_validator("observer")
    @classmethod
    def _known_observer(cls, value: str) -> str:
        if value not in OBSERVERS:
            raise ValueError(OBSERVERS.unknown_message(value))
        return value

    @model_validator(mode="after")
    def _check_group(self) -> QuantScheme:
        if (self.granularity == "group") != (self.group_size is not None):
            raise ValueError(
                "group_size is needed exactly when granularity='group' "
                f"(got granularity={self.granularity!r}, group_size={self.group_size})"
            )
        return self

    @property
    def layout(self) -> dict[str, int | None]:
        """``axis``/``group_size`` keyword arguments for :mod:`deepshrink.functional.quant`."""
        if self.granularity == "tensor":
            return {"axis": None, "group_size": None}
        return {"axis": self.axis, "group_size": self.group_size}


class Observer:
    """Running range of the tensors seen so far, per scale of ``scheme``'s granularity."""

    def __init__(self, scheme: QuantScheme | None = None) -> None:
        self.scheme = scheme or QuantScheme()
        self.rule = OBSERVERS.get(self.scheme.observer)
        self.low: Tensor | None = None
        self.high: Tensor | None = None
        self.shape: torch.Size | None = None
        self.batches = 0

    def update(self, x: Tensor) -> None:
        """Fold the range of ``x`` into the running range."""
        low, high = self.rule.estimate(Q.channel_rows(x, **self.scheme.layout), self.scheme)
        self.batches += 1
        if self.low is None or self.high is None:
            self.low, self.high, self.shape = low, high, x.shape
            return
        if low.shape != self.low.shape:
            raise ValueError(f"observer saw shape {tuple(x.shape)} after {tuple(self.shape)}")
        if self.rule.merge == "extreme":
            self.low, self.high = torch.minimum(self.low, low), torch.maximum(self.high, high)
            return
        weight = self.scheme.averaging_constant if self.rule.merge == "ema" else 1 / self.batches
        self.low = self.low + weight * (low - self.low)
        self.high = self.high + weight * (high - self.high)

    def range(self) -> tuple[Tensor, Tensor]:
        """The running ``(low, high)`` in the scale layout of the last tensor seen."""
        if self.low is None or self.high is None or self.shape is None:
            raise ValueError("the observer has not seen any tensor yet; call update(x) first")
        layout = self.scheme.layout
        return Q.from_rows(self.low, self.shape, **layout), Q.from_rows(
            self.high, self.shape, **layout
        )

    def qparams(self) -> tuple[Tensor, Tensor]:
        """``(scale, zero_point)`` for the running range."""
        s = self.scheme
        low, high = self.range()
        return Q.qparams(low, high, bits=s.bits, signed=s.signed, symmetric=s.symmetric)
