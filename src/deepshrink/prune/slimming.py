"""Network slimming (Liu et al. 2017): an L1 penalty on BatchNorm scales, then prune by |γ|.

1. Train with :func:`slimming_penalty` as a loss hook of :func:`deepshrink.train.fit`: it adds
   ``λ · Σ |γ|`` over the BatchNorm layers, driving unimportant channels' scales towards 0
   (Liu et al. use λ = 1e-4 for VGG on CIFAR).
2. Prune the channels with the smallest ``|γ|`` over the whole network:
   ``ChannelPruning(ratio=0.7, criterion="bn_scale", scope="global")``.
3. Fine-tune the smaller model (``fit`` again, without the penalty).

>>> import torch
>>> from torch import nn
>>> from deepshrink.train import StepContext
>>> model = nn.Sequential(nn.Conv2d(1, 2, 1), nn.BatchNorm2d(2))
>>> with torch.no_grad():
...     _ = model[1].weight.copy_(torch.tensor([0.5, -1.5]))
>>> hook = slimming_penalty(lam=0.1)
>>> context = StepContext(model, None, None, None, torch.zeros(()), 0, 0)
>>> round(float(hook(context).detach()), 4)
0.2
"""

from __future__ import annotations

import fnmatch

import torch
from torch import Tensor, nn

from deepshrink.errors import ConfigError
from deepshrink.prune.targets import Patterns, patterns
from deepshrink.train import LossHook, StepContext

__all__ = ["batchnorm_scales", "slimming_penalty"]

_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def batchnorm_scales(model: nn.Module, exclude: Patterns = None) -> dict[str, Tensor]:
    """The scale parameter ``γ`` of every affine BatchNorm layer not matched by ``exclude``.

    >>> list(batchnorm_scales(nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))))
    ['1']
    """
    globs = patterns(exclude)
    return {
        name: module.weight
        for name, module in model.named_modules()
        if isinstance(module, _NORMS)
        and module.affine
        and not any(fnmatch.fnmatchcase(name, g) for g in globs)
    }


def slimming_penalty(lam: float = 1e-4, exclude: Patterns = None) -> LossHook:
    """A loss hook adding ``lam · Σ |γ|`` over the model's BatchNorm scales (sparsity on γ).

    ``exclude`` lists BatchNorm layer globs left without the penalty. The model must have at
    least one affine BatchNorm layer; that is checked at the first step.
    """
    if not lam >= 0:
        raise ConfigError(f"lam must be ≥ 0 (weight of Σ|γ| in the loss), got {lam}; 1e-4 is usual")

    def hook(context: StepContext) -> Tensor:
        scales = batchnorm_scales(context.model, exclude)
        if not scales:
            raise ConfigError(
                f"slimming_penalty needs affine BatchNorm layers, and "
                f"{type(context.model).__name__} has none (left after exclude={exclude!r})"
            )
        return lam * torch.stack([s.abs().sum() for s in scales.values()]).sum()

    return hook
