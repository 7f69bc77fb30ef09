"""``FakeQuantize``: a module that rounds its input to a quantization grid and reads it back.

Quantization-aware training puts one in front of each quantized layer (its input) and one on
each weight. The grid is a :class:`~deepshrink.quantize.observers.QuantScheme`; the module keeps
``scale`` and ``zero_point`` (in the state dict) and sets them three ways:

* ``mode="weight"``: from the tensor itself, every call (min-max per channel or per tensor), so
  the grid follows the weights while they train (an ONNX export uses the last grid);
* ``mode="activation"``: from calibration (:meth:`observe`), then, in training mode, a moving
  average of each batch's range (``scheme.averaging_constant``); in eval mode the grid is fixed;
* ``learnable=True``: ``scale`` is a parameter trained by gradient descent (LSQ, Esser et al.
  2020) from its calibrated start; ``zero_point`` stays fixed.

The rounding is PyTorch's ``torch.fake_quantize_per_tensor_affine`` /
``torch.fake_quantize_per_channel_affine`` (straight-through gradients, clipped outside the
range), which the ONNX exporter writes as ``QuantizeLinear``/``DequantizeLinear`` pairs, so an
exported model carries exactly these scales. Learnable scales use
:func:`deepshrink.functional.quant.fake_quantize_learnable` while training.

>>> from deepshrink.quantize.observers import QuantScheme
>>> quant = FakeQuantize(QuantScheme(bits=4), mode="weight")
>>> y = quant(torch.tensor([-1.0, 0.3, 0.5]))
>>> len(y.unique()) <= 16, round(quant.scale.item() * 7, 6)
(True, 1.0)
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from deepshrink.functional import quant as Q
from deepshrink.quantize.observers import Observer, QuantScheme
from deepshrink.train.distributed import synced_range

__all__ = ["FakeQuantize"]


def _exporting() -> bool:
    """Whether an exporter traces the model (TorchScript, or torch.export for dynamo): the grids
    are then fixed, and observing (which reads tensor values) must not be traced."""
    return bool(torch.onnx.is_in_onnx_export() or torch.compiler.is_exporting())


class FakeQuantize(nn.Module):
    """Fake-quantizes tensors on the grid of ``scheme``; see the module docstring."""

    def __init__(
        self,
        scheme: QuantScheme,
        *,
        mode: Literal["weight", "activation"] = "activation",
        learnable: bool = False,
        channels: int = 1,
    ) -> None:
        super().__init__()
        if scheme.granularity == "group":
            raise ValueError("fake quantization supports per-tensor and per-channel grids")
        self.scheme = scheme
        self.mode = mode
        self.learnable = learnable
        self.qmin, self.qmax = Q.quant_range(scheme.bits, scheme.signed)
        shape = (channels,) if scheme.granularity == "channel" else ()
        scale = torch.ones(shape)
        if learnable:
            self.scale = nn.Parameter(scale)
        else:
            self.register_buffer("scale", scale)
        self.register_buffer("zero_point", torch.zeros(shape, dtype=torch.int32))
        self.register_buffer("calibrated", torch.tensor(False))

    @property
    def per_channel(self) -> bool:
        return self.scheme.granularity == "channel"

    @torch.no_grad()
    def observe(self, x: Tensor, momentum: float | None = None) -> None:
        """Set the grid from the range of ``x`` (blended with the current one by ``momentum``)."""
        observer = Observer(self.scheme)
        observer.update(x.detach())
        low, high = observer.range()
        if self.mode == "activation":  # data-parallel training: the range of the global batch
            low, high = synced_range(low, high)
        self.set_range(low, high, momentum=momentum)

    @torch.no_grad()
    def set_range(self, low: Tensor, high: Tensor, *, momentum: float | None = None) -> None:
        """Set the grid that covers ``[low, high]`` (blended with the current by ``momentum``)."""
        if momentum is not None and bool(self.calibrated):
            old_low, old_high = self._range()
            low, high = (
                old_low + momentum * (low - old_low),
                old_high + momentum * (high - old_high),
            )
        scheme = self.scheme
        self.set_qparams(*Q.qparams(low, high, bits=scheme.bits, signed=scheme.signed,
                                    symmetric=scheme.symmetric))  # fmt: skip

    @torch.no_grad()
    def set_qparams(self, scale: Tensor, zero_point: Tensor) -> None:
        """Use the grid ``(scale, zero_point)``."""
        self.scale.data.copy_(scale.reshape(self.scale.shape))
        self.zero_point.copy_(zero_point.reshape(self.zero_point.shape))
        self.calibrated.fill_(True)

    def _range(self) -> tuple[Tensor, Tensor]:
        scale, zero = self.scale.detach(), self.zero_point.float()
        return (self.qmin - zero) * scale, (self.qmax - zero) * scale

    def forward(self, x: Tensor) -> Tensor:
        exporting = _exporting()
        if self.mode == "weight" and not self.learnable and not exporting:
            self.observe(x)
        elif self.mode == "activation" and self.training and not self.learnable and not exporting:
            self.observe(x, momentum=self.scheme.averaging_constant)
        axis = self.scheme.axis if self.per_channel else None
        if self.learnable and self.training:
            return Q.fake_quantize_learnable(x, self.scale, self.zero_point, bits=self.scheme.bits,
                                             signed=self.scheme.signed, axis=axis)  # fmt: skip
        scale = self.scale.detach().float()
        if self.per_channel:
            return torch.fake_quantize_per_channel_affine(
                x, scale, self.zero_point, axis % x.ndim, self.qmin, self.qmax
            )
        return torch.fake_quantize_per_tensor_affine(
            x, scale, self.zero_point, self.qmin, self.qmax
        )

    def extra_repr(self) -> str:
        s = self.scheme
        kind = "per channel" if self.per_channel else "per tensor"
        extra = ", learnable scale" if self.learnable else ""
        return f"{self.mode}, {s.bits} bits {'signed' if s.signed else 'unsigned'}, {kind}{extra}"
