"""BatchNorm stored as one per-channel scale and shift (``EncodeConfig(batchnorm="fold")``).

In evaluation, ``BatchNorm`` computes ``(x - mean) / sqrt(var + eps) * weight + bias`` — an
affine map per channel carried by four vectors. Folded, the file holds the same map with
``weight' = weight * sqrt(1 + eps) / sqrt(var + eps)``, ``bias' = bias - mean * weight /
sqrt(var + eps)``, ``running_mean = 0`` and ``running_var = 1``: two vectors and two constants,
which the encoder stores in a few bytes each (an empty sparse tensor, a one-entry codebook).
The decoded model is an ordinary ``BatchNorm`` whose evaluation output equals the original's up
to float rounding; its running statistics are no longer the data's, so training it further in
train mode starts from these. The model passed in is not changed.

>>> import torch
>>> from torch import nn
>>> net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2)).eval()
>>> _ = net[1].running_mean.fill_(0.5), net[1].running_var.fill_(4.0)
>>> state, folded = fold_batchnorm(net, net.state_dict())
>>> folded, state["1.running_mean"].tolist(), state["1.running_var"].tolist()
(['1'], [0.0, 0.0], [1.0, 1.0])
>>> copy = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2)).eval()
>>> _ = copy.load_state_dict(state)
>>> x = torch.randn(1, 1, 5, 5)
>>> torch.allclose(net(x), copy(x), atol=1e-6)
True
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import torch
from torch import nn

__all__ = ["fold_batchnorm"]

logger = logging.getLogger(__name__)


def fold_batchnorm(
    model: nn.Module, state: Mapping[str, torch.Tensor]
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """``(state with every foldable BatchNorm folded, names of the folded modules)``.

    A BatchNorm is foldable when it has an affine weight and bias and running statistics (the
    usual case) of a float type, not tied to another entry; others are left as they are and
    named in a log message, as are modules whose tensors are not all in ``state``."""
    out = dict(state)
    folded, skipped = [], []
    owners: dict[int, int] = {}  # storage -> entries on it: a tied tensor is not folded alone
    for tensor in state.values():
        if isinstance(tensor, torch.Tensor) and tensor.numel():
            key = tensor.untyped_storage().data_ptr()
            owners[key] = owners.get(key, 0) + 1
    for name, module in model.named_modules():
        if not isinstance(module, nn.modules.batchnorm._BatchNorm):
            continue
        prefix = f"{name}." if name else ""
        keys = [prefix + k for k in ("weight", "bias", "running_mean", "running_var")]
        if not (module.affine and module.track_running_stats) or not all(k in out for k in keys):
            skipped.append(name or "(the model)")
            continue
        weight, bias, mean, var = (out[k] for k in keys)
        tied = any(owners.get(t.untyped_storage().data_ptr(), 0) > 1 for t in (weight, bias))
        if tied or not all(t.is_floating_point() for t in (weight, bias, mean, var)):
            skipped.append(name)
            continue
        with torch.no_grad():
            wide = torch.float64
            scale = weight.to(wide) / torch.sqrt(var.to(wide) + module.eps)
            shift = bias.to(wide) - mean.to(wide) * scale
            out[keys[0]] = (scale * (1.0 + module.eps) ** 0.5).to(weight.dtype)
            out[keys[1]] = shift.to(bias.dtype)
            out[keys[2]] = torch.zeros_like(mean)
            out[keys[3]] = torch.ones_like(var)
        folded.append(name)
    if skipped:
        logger.info("batchnorm fold: %d BatchNorm layer(s) stored as they are (no affine "
                    "weight and bias, no running statistics, or tied weights): %s", len(skipped),
                    ", ".join(skipped))  # fmt: skip
    return out, folded
