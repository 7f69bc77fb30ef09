"""Fold each BatchNorm into the convolution before it, as int8 runtimes execute it.

In eval mode ``bn(conv(x))`` equals a convolution with weights ``w × γ/σ`` and bias
``(b − μ) × γ/σ + β`` (σ = sqrt(running variance + eps)). Quantizing the *folded* weights is
what a deployed model does, so quantization-aware training folds first: the scales it learns are
the ones the exported model uses. The fold itself is ``torch.nn.utils.fusion.fuse_conv_bn_weights``;
the conv → BN pairs are found by tracing the model with ``torch.fx`` (a BN counts only when its
single input is a convolution's output that nothing else reads). Each folded BN becomes an
``nn.Identity``, recorded (``"quantize.fold_bn"``) so a checkpoint rebuilds the same tree.

>>> model = nn.Sequential(nn.Conv2d(3, 4, 3, bias=False), nn.BatchNorm2d(4), nn.ReLU()).eval()
>>> x = torch.rand(2, 3, 8, 8)
>>> before = model(x)
>>> fold_batchnorm_(model)
['0']
>>> type(model[1]).__name__, torch.allclose(model(x), before, atol=1e-5)
('Identity', True)
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn

from deepshrink.errors import ConfigError, FormatError
from deepshrink.graph import record, register_rebuilder

__all__ = ["FOLD_KIND", "conv_batchnorm_pairs", "fold_batchnorm_"]

logger = logging.getLogger(__name__)

FOLD_KIND = "quantize.fold_bn"
_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def conv_batchnorm_pairs(model: nn.Module) -> list[tuple[str, str]]:
    """``(conv, batchnorm)`` module names where the BN reads only that convolution's output."""
    import torch.fx

    try:
        graph = torch.fx.symbolic_trace(model).graph
    except Exception as exc:  # fx raises many types for data-dependent control flow
        raise ConfigError(
            f"could not trace {type(model).__name__} with torch.fx to find conv -> BatchNorm "
            f"pairs ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); "
            "pass fold_bn=False to train without folding"
        ) from exc
    modules = dict(model.named_modules())
    pairs = []
    for node in graph.nodes:
        if node.op != "call_module" or not isinstance(modules.get(node.target), _NORMS):
            continue
        source = node.args[0] if node.args else None
        if (
            isinstance(source, torch.fx.Node)
            and source.op == "call_module"
            and isinstance(modules.get(source.target), _CONVS)
            and len(source.users) == 1
        ):
            pairs.append((str(source.target), str(node.target)))
    return pairs


@torch.no_grad()
def fold_batchnorm_(model: nn.Module) -> list[str]:
    """Fold every conv → BatchNorm pair of ``model`` in place; return the folded convs' names."""
    from torch.nn.utils.fusion import fuse_conv_bn_weights

    norms = [name for name, module in model.named_modules() if isinstance(module, _NORMS)]
    if not norms:
        return []  # nothing to fold: no need to trace (transformers often do not fx-trace)
    try:
        pairs = conv_batchnorm_pairs(model)
    except ConfigError as exc:  # untraceable: train with the BatchNorm layers as they are
        why = str(exc).split("; pass")[0]
        names = ", ".join(norms[:8]) + (", ..." if len(norms) > 8 else "")
        logger.warning("BatchNorm not folded (%s): %s stay float layers", why, names)
        return []
    for conv_name, norm_name in pairs:
        conv, norm = model.get_submodule(conv_name), model.get_submodule(norm_name)
        if norm.running_mean is None or norm.running_var is None:
            raise ConfigError(f"{norm_name} keeps no running statistics; it cannot be folded")
        weight, bias = fuse_conv_bn_weights(
            conv.weight, conv.bias, norm.running_mean, norm.running_var, norm.eps, norm.weight,
            norm.bias,
        )  # fmt: skip
        conv.weight, conv.bias = weight, bias
        model.set_submodule(norm_name, nn.Identity())
    if pairs:
        record(model, FOLD_KIND, pairs=[list(pair) for pair in pairs])
        logger.info("folded %d BatchNorm layers into their convolutions", len(pairs))
    return [conv for conv, _ in pairs]


@register_rebuilder(FOLD_KIND)
def _rebuild_folded(model: nn.Module, entry: dict[str, Any]) -> None:
    """Give each folded convolution a bias and turn its BatchNorm into an ``Identity``."""
    pairs = entry.get("pairs")
    if not isinstance(pairs, list):
        raise FormatError(f"{FOLD_KIND}: entry has no 'pairs' list: {entry!r}")
    for pair in pairs:
        if not (isinstance(pair, list) and len(pair) == 2):
            raise FormatError(f"{FOLD_KIND}: bad pair {pair!r}")
        try:
            conv = model.get_submodule(pair[0])
            model.get_submodule(pair[1])
        except AttributeError as exc:
            raise FormatError(f"{FOLD_KIND}: {exc}") from None
        if conv.bias is None:
            conv.bias = nn.Parameter(torch.zeros(conv.weight.shape[0]))
        model.set_submodule(pair[1], nn.Identity())
