"""Affine quantization maths on plain tensors: ranges → scale/zero point → integers and back.

A real value ``x`` is stored as the integer ``q = clamp(round(x / scale) + zero_point, qmin,
qmax)`` and read back as ``(q − zero_point) × scale``. ``bits`` (2–16) and ``signed`` fix
``[qmin, qmax]`` (8 bits: −128..127 signed, 0..255 unsigned). *Symmetric* schemes centre the
grid on zero (``zero_point`` 0 when signed, the middle code when unsigned); *asymmetric* ones map
``[min, max]`` onto the whole grid. Every range is first widened to contain 0, so zero is always
exactly representable (zero padding and ReLU outputs lose nothing).

Granularity is given by the shape of ``scale``/``zero_point`` together with ``axis`` and
``group_size``: a 0-d scale is per tensor; a 1-d scale with ``axis`` is per channel (one scale
per index along ``axis``); with ``group_size`` it is per group (runs of ``group_size``
consecutive values along ``axis`` share a scale, and the scale has ``x``'s shape with that axis
divided by ``group_size``). :func:`channel_rows` lays a tensor out as one row per scale, which is
what the range estimators (``*_range``) work on.

>>> x = torch.tensor([-1.0, 0.0, 0.5, 2.0])
>>> scale, zero_point = qparams(x.min(), x.max(), bits=8, signed=False, symmetric=False)
>>> q = quantize(x, scale, zero_point, bits=8, signed=False)
>>> q.dtype, q.tolist()
(torch.uint8, [0, 85, 127, 255])
>>> dequantize(q, scale, zero_point)[1].item()
0.0
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from deepshrink.errors import ConfigError

__all__ = [
    "MAX_BITS",
    "MIN_BITS",
    "channel_rows",
    "check_bits",
    "dequantize",
    "fake_cast",
    "fake_quantize",
    "fake_quantize_learnable",
    "from_rows",
    "kl_range",
    "minmax_range",
    "mse_range",
    "percentile_range",
    "qparams",
    "quant_range",
    "quantize",
    "storage_dtype",
]

MIN_BITS, MAX_BITS = 2, 16
_HALF_TYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16}


def check_bits(bits: int) -> int:
    """``bits`` if it is an integer in [2, 16], else :class:`ConfigError`."""
    if isinstance(bits, bool) or not isinstance(bits, int) or not MIN_BITS <= bits <= MAX_BITS:
        raise ConfigError(
            f"bits must be an integer in [{MIN_BITS}, {MAX_BITS}] (8 is int8), got {bits!r}"
        )
    return bits


def quant_range(bits: int = 8, signed: bool = True) -> tuple[int, int]:
    """The integer grid ``(qmin, qmax)``.

    >>> quant_range(8, True), quant_range(4, False)
    ((-128, 127), (0, 15))
    """
    check_bits(bits)
    return (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)


def storage_dtype(bits: int = 8, signed: bool = True) -> torch.dtype:
    """The smallest torch integer type that holds the grid (int8, uint8, int16 or int32)."""
    check_bits(bits)
    if bits <= 8:
        return torch.int8 if signed else torch.uint8
    return torch.int16 if signed else torch.int32


def qparams(
    low: Tensor | float,
    high: Tensor | float,
    *,
    bits: int = 8,
    signed: bool = True,
    symmetric: bool = True,
    eps: float = 1e-12,
) -> tuple[Tensor, Tensor]:
    """Scale (float32) and zero point (int32) that map ``[low, high]`` (widened to hold 0).

    >>> s, z = qparams(torch.tensor(-2.0), torch.tensor(1.0), bits=8, signed=True)
    >>> round(s.item() * 127, 6), z.item()
    (2.0, 0)
    """
    qmin, qmax = quant_range(bits, signed)
    low = torch.clamp(torch.as_tensor(low, dtype=torch.float32), max=0.0)
    high = torch.clamp(torch.as_tensor(high, dtype=torch.float32), min=0.0)
    if symmetric:
        middle = 0 if signed else (qmin + qmax + 1) // 2
        scale = torch.maximum(-low, high) / (qmax - middle)
        zero_point = torch.full_like(scale, middle, dtype=torch.int32)
        return scale.clamp(min=eps), zero_point
    scale = ((high - low) / (qmax - qmin)).clamp(min=eps)
    zero_point = (qmin - torch.round(low / scale)).clamp(qmin, qmax).to(torch.int32)
    return scale, zero_point


def _shaped(param: Tensor, x: Tensor, axis: int | None, group_size: int | None) -> Tensor:
    """``param`` broadcastable against ``x`` for per-tensor, per-channel or per-group layouts."""
    param = torch.as_tensor(param, device=x.device)
    if param.ndim == 0:
        return param
    axis = _axis(axis, x.ndim)
    if group_size is not None:
        return param.repeat_interleave(group_size, dim=axis)
    shape = [1] * x.ndim
    shape[axis] = -1
    return param.reshape(shape)


def _axis(axis: int | None, ndim: int) -> int:
    if axis is None:
        raise ConfigError("a per-channel or per-group scale needs axis=, the channel dimension")
    if not -ndim <= axis < ndim:
        raise ConfigError(
            f"axis must be in [{-ndim}, {ndim - 1}] for a {ndim}-d tensor, got {axis}"
        )
    return axis % ndim


def quantize(
    x: Tensor,
    scale: Tensor | float,
    zero_point: Tensor | int,
    *,
    bits: int = 8,
    signed: bool = True,
    axis: int | None = None,
    group_size: int | None = None,
) -> Tensor:
    """Integers ``clamp(round(x / scale) + zero_point, qmin, qmax)`` in :func:`storage_dtype`."""
    qmin, qmax = quant_range(bits, signed)
    scale = _shaped(torch.as_tensor(scale, dtype=torch.float32), x, axis, group_size)
    zero_point = _shaped(torch.as_tensor(zero_point), x, axis, group_size)
    q = torch.round(x.float() / scale) + zero_point
    return q.clamp_(qmin, qmax).to(storage_dtype(bits, signed))


def dequantize(
    q: Tensor,
    scale: Tensor | float,
    zero_point: Tensor | int,
    *,
    axis: int | None = None,
    group_size: int | None = None,
) -> Tensor:
    """Real values ``(q − zero_point) × scale`` as float32."""
    scale = _shaped(torch.as_tensor(scale, dtype=torch.float32), q, axis, group_size)
    zero_point = _shaped(torch.as_tensor(zero_point), q, axis, group_size)
    return (q.to(torch.int32) - zero_point).float() * scale


def fake_quantize(
    x: Tensor,
    scale: Tensor | float,
    zero_point: Tensor | int,
    *,
    bits: int = 8,
    signed: bool = True,
    axis: int | None = None,
    group_size: int | None = None,
) -> Tensor:
    """``dequantize(quantize(x))`` in ``x``'s dtype, with a straight-through gradient.

    The gradient is 1 where ``x`` lies inside the representable range and 0 where it was
    clipped (the usual quantization-aware-training estimator).

    >>> x = torch.tensor([0.26, 9.0], requires_grad=True)
    >>> y = fake_quantize(x, 0.1, 0, bits=4)
    >>> y.detach().tolist(), torch.autograd.grad(y.sum(), x)[0].tolist()
    ([0.30000001192092896, 0.699999988079071], [1.0, 0.0])
    """
    where = {"axis": axis, "group_size": group_size}
    q = quantize(x.detach(), scale, zero_point, bits=bits, signed=signed, **where)
    out = dequantize(q, scale, zero_point, **where).to(x.dtype)
    if not x.requires_grad:
        return out
    qmin, qmax = quant_range(bits, signed)
    s = _shaped(torch.as_tensor(scale, dtype=torch.float32), x, axis, group_size)
    z = _shaped(torch.as_tensor(zero_point), x, axis, group_size)
    inside = (s * (qmin - z) - s / 2 <= x) & (x <= s * (qmax - z) + s / 2)
    return out + (x - x.detach()) * inside


def fake_cast(x: Tensor, dtype: str = "float16", *, saturate: bool = True) -> Tensor:
    """``x`` rounded to ``"float16"`` or ``"bfloat16"`` and back to its own dtype.

    With ``saturate`` values beyond the type's range become its largest finite value, not inf.

    >>> fake_cast(torch.tensor([1.0001, 1e6]), "float16").tolist()
    [1.0, 65504.0]
    """
    if dtype not in _HALF_TYPES:
        raise ConfigError(f"dtype must be one of {sorted(_HALF_TYPES)}, got {dtype!r}")
    half = _HALF_TYPES[dtype]
    if saturate:
        limit = torch.finfo(half).max
        x = x.clamp(-limit, limit)
    return x.to(half).to(x.dtype)


def channel_rows(x: Tensor, *, axis: int | None = None, group_size: int | None = None) -> Tensor:
    """``x`` as a 2-d float tensor with one row per scale (per tensor: one row).

    >>> channel_rows(torch.arange(6.0).view(2, 3), axis=1).tolist()
    [[0.0, 3.0], [1.0, 4.0], [2.0, 5.0]]
    """
    x = x.detach().float()
    if axis is None and group_size is None:
        return x.reshape(1, -1)
    axis = _axis(axis, x.ndim)
    if group_size is None:
        return x.movedim(axis, 0).reshape(x.shape[axis], -1)
    if group_size < 1 or x.shape[axis] % group_size:
        raise ConfigError(
            f"group_size must divide the size {x.shape[axis]} of axis {axis}, got {group_size}"
        )
    return x.movedim(axis, -1).reshape(-1, group_size)


def from_rows(
    values: Tensor, shape: torch.Size, *, axis: int | None = None, group_size: int | None = None
) -> Tensor:
    """Undo :func:`channel_rows` for one value per row: the scale layout for ``shape``."""
    if axis is None and group_size is None:
        return values.reshape(())
    if group_size is None:
        return values.reshape(-1)
    axis = _axis(axis, len(shape))
    moved = [s for i, s in enumerate(shape) if i != axis] + [shape[axis] // group_size]
    return values.reshape(moved).movedim(-1, axis)


def minmax_range(rows: Tensor) -> tuple[Tensor, Tensor]:
    """Smallest and largest value of each row."""
    return rows.amin(dim=1), rows.amax(dim=1)


def percentile_range(rows: Tensor, percentile: float = 99.99) -> tuple[Tensor, Tensor]:
    """The ``100 − percentile`` and ``percentile`` percentiles of each row (outliers clipped).

    >>> low, high = percentile_range(torch.arange(101.0).view(1, -1), 90.0)
    >>> low.item(), high.item()
    (10.0, 90.0)
    """
    if not 50.0 < percentile <= 100.0:
        raise ConfigError(f"percentile must be in (50, 100], got {percentile}")
    n = rows.shape[1]
    k_high = max(1, min(n, math.ceil(percentile / 100.0 * (n - 1)) + 1))
    k_low = max(1, n + 1 - k_high)
    return rows.kthvalue(k_low, dim=1).values, rows.kthvalue(k_high, dim=1).values


def mse_range(
    rows: Tensor,
    *,
    bits: int = 8,
    signed: bool = True,
    symmetric: bool = True,
    steps: int = 64,
) -> tuple[Tensor, Tensor]:
    """Per row, the min–max range shrunk by the factor in (0, 1] with the least squared error.

    ``steps`` factors ``1/steps, 2/steps, …, 1`` are tried; outliers are clipped when that
    lowers the mean squared error of the fake-quantized row.
    """
    low, high = minmax_range(rows)
    best_low, best_high = low.clone(), high.clone()
    best = torch.full_like(low, math.inf)
    for step in range(1, steps + 1):
        lo, hi = low * step / steps, high * step / steps
        scale, zero = qparams(lo, hi, bits=bits, signed=signed, symmetric=symmetric)
        approx = fake_quantize(rows, scale, zero, bits=bits, signed=signed, axis=0)
        error = (approx - rows).pow(2).mean(dim=1)
        better = error < best
        best = torch.where(better, error, best)
        best_low, best_high = torch.where(better, lo, best_low), torch.where(better, hi, best_high)
    return best_low, best_high


def kl_range(
    rows: Tensor, *, bits: int = 8, bins: int = 2048, stride: int = 16
) -> tuple[Tensor, Tensor]:
    """Per row, the clipping threshold whose quantized histogram of ``|x|`` is closest in KL.

    The entropy calibration of NVIDIA's TensorRT (Migacz, GTC 2017): a ``bins``-bin histogram of
    ``|x|`` is cut at candidate bin ``i`` (the tail folded into the last kept bin), merged into
    ``2 ** (bits − 1)`` levels and expanded back; the ``i`` with the least KL divergence from
    the cut histogram gives the threshold ``t``, and the range is ``[max(min, −t), min(max, t)]``.
    Candidates are every ``stride``-th bin.
    """
    check_bits(bits)
    lows, highs = [], []
    for row in rows:
        t = _kl_threshold(row.abs(), 2 ** (bits - 1), bins, stride)
        lows.append(torch.clamp(row.min(), min=-t))
        highs.append(torch.clamp(row.max(), max=t))
    return torch.stack(lows), torch.stack(highs)


def _kl_threshold(magnitudes: Tensor, levels: int, bins: int, stride: int) -> Tensor:
    top = magnitudes.max()
    if top <= 0 or bins <= levels:
        return top
    hist = torch.histc(magnitudes, bins=bins, min=0.0, max=float(top)).double()
    best, best_i = math.inf, bins
    for i in range(levels, bins + 1, stride):
        p = hist[:i].clone()
        p[-1] += hist[i:].sum()
        chunk = torch.div(torch.arange(i) * levels, i, rounding_mode="floor")
        used = (hist[:i] > 0).double()
        totals = torch.zeros(levels, dtype=torch.float64).index_add_(0, chunk, hist[:i])
        counts = torch.zeros(levels, dtype=torch.float64).index_add_(0, chunk, used)
        q = used * totals[chunk] / counts[chunk].clamp(min=1)
        p, q = p / p.sum(), q / q.sum().clamp(min=1e-12)
        keep = p > 0
        divergence = float((p[keep] * torch.log(p[keep] / q[keep].clamp(min=1e-12))).sum())
        if divergence < best:
            best, best_i = divergence, i
    return top * best_i / bins


def fake_quantize_learnable(
    x: Tensor,
    scale: Tensor,
    zero_point: Tensor | int,
    *,
    bits: int = 8,
    signed: bool = True,
    axis: int | None = None,
) -> Tensor:
    """:func:`fake_quantize` whose ``scale`` gets a gradient too (LSQ, Esser et al. 2020).

    The rounding passes gradients straight through, so ``x`` gets 1 inside the range and 0 where
    it is clipped, and ``scale`` gets LSQ's gradient, multiplied by
    ``1 / sqrt(values per scale × qmax)`` as the paper does, to keep its step size comparable to
    the weights'. The value equals :func:`fake_quantize` with the same scale.

    >>> scale = torch.tensor(0.1, requires_grad=True)
    >>> y = fake_quantize_learnable(torch.tensor([0.26, 9.0]), scale, 0, bits=4)
    >>> [round(v, 6) for v in y.tolist()], scale.grad is None
    ([0.3, 0.7], True)
    >>> torch.autograd.grad(y.sum(), scale)[0].item() != 0
    True
    """
    qmin, qmax = quant_range(bits, signed)
    factor = 1.0 / math.sqrt(max(x.numel() // max(scale.numel(), 1), 1) * max(qmax, 1))
    step = scale * factor + (scale - scale * factor).detach()
    step = _shaped(step.clamp(min=1e-12), x, axis, None)
    zero = _shaped(torch.as_tensor(zero_point, dtype=x.dtype), x, axis, None)
    value = torch.clamp(x / step + zero, qmin, qmax)
    rounded = value + (torch.round(value) - value).detach()
    return (rounded - zero) * step
