"""Unstructured (weight) pruning: mask the individual weights with the lowest scores.

Layer-wise or global, to a target sparsity or to Han et al.'s threshold ``quality × std``, by any
registered criterion (``"random"`` is the baseline). The masks are held on the modules (see
:mod:`deepshrink.prune.masking`): fine-tuning with :func:`deepshrink.train.fit` keeps the pruned
weights at exactly zero, checkpoints save and restore the masks, and
:func:`~deepshrink.prune.finalize_` makes them permanent.

>>> import torch
>>> from torch import nn
>>> from deepshrink.prune import MagnitudePruning, prune_
>>> model = nn.Sequential(nn.Linear(10, 10), nn.ReLU(), nn.Linear(10, 2))
>>> _ = prune_(model, MagnitudePruning(sparsity=0.8, overrides={"2": 0.5}))
>>> {name: round(1 - kept / total, 2) for name, (kept, total) in weight_counts(model).items()}
{'0': 0.8, '2': 0.5}
"""

from __future__ import annotations

import fnmatch
import logging
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from deepshrink.errors import ConfigError
from deepshrink.functional.masks import (
    global_keep_masks,
    keep_mask,
    quality_threshold,
    threshold_mask,
)
from deepshrink.graph.coverage import measure_coverage, report_coverage
from deepshrink.graph.layers import Slot, slot_counts, unknown_reasons, weight_slots
from deepshrink.prune.config import MagnitudePruning
from deepshrink.prune.criteria import score
from deepshrink.prune.masking import enforce_masks_, mask_of, mask_parameters_
from deepshrink.prune.targets import Patterns, layer_values, select

__all__ = ["prune_magnitude_", "sparsity", "weight_counts"]

logger = logging.getLogger(__name__)


def weight_counts(model: nn.Module) -> dict[str, tuple[int, int]]:
    """``{layer: (non-zero weights, weights)}`` for every weight matrix (tied ones once), named
    as :func:`deepshrink.graph.layers.weight_slots` names them.

    >>> weight_counts(nn.Sequential(nn.Linear(3, 2)))
    {'0': (6, 6)}
    """
    return slot_counts(model)


def sparsity(model: nn.Module) -> float:
    """Fraction of the weight matrices' entries that are zero (biases not counted).

    >>> sparsity(nn.Linear(4, 4))
    0.0
    """
    counts = weight_counts(model).values()
    total = sum(t for _, t in counts)
    return 1.0 - sum(k for k, _ in counts) / total if total else 0.0


def _layer_mask(
    config: MagnitudePruning, weight: Tensor, scores: Tensor, target: float, current: Tensor | None
) -> Tensor:
    if config.quality is not None:
        return threshold_mask(scores, quality_threshold(weight, target), current)
    return keep_mask(scores, target, current)


def _global_masks(
    config: MagnitudePruning,
    weights: Sequence[Tensor],
    scores: Sequence[Tensor],
    current: Sequence[Tensor | None],
) -> list[Tensor]:
    if config.quality is not None:
        threshold = quality_threshold(weights, config.quality)
        return [threshold_mask(s, threshold, c) for s, c in zip(scores, current, strict=True)]
    return global_keep_masks(scores, float(config.sparsity or 0.0), current)


def prune_magnitude_(
    model: nn.Module,
    config: MagnitudePruning,
    *,
    include: Patterns = None,
    exclude: Patterns = None,
    example_inputs: Any = None,
) -> nn.Module:
    """Mask the weights of the selected layers as ``config`` says (``prune_`` calls this)."""
    slots = weight_slots(model)
    unknown = unknown_reasons(model)
    layers = select(slots, include, exclude, method="magnitude pruning", unavailable=unknown)
    targets = layer_values(list(layers), config.target, config.overrides, "magnitude pruning")
    enforce_masks_(model)
    _check_plain(layers)
    generator = torch.Generator().manual_seed(config.seed)
    weights = {name: slot.tensor.detach() for name, slot in layers.items()}
    scores = {name: score(config.criterion, w, (), generator) for name, w in weights.items()}
    current = {name: mask_of(slot.module, slot.parameter) for name, slot in layers.items()}
    pooled = []
    if config.scope == "global":
        pooled = [n for n in layers if not any(fnmatch.fnmatchcase(n, g) for g in config.overrides)]
    masks = {}
    if pooled:
        joint = _global_masks(
            config, [weights[n] for n in pooled], [scores[n] for n in pooled],
            [current[n] for n in pooled],
        )  # fmt: skip
        masks.update(zip(pooled, joint, strict=True))
    for name in layers:
        if name not in masks:
            masks[name] = _layer_mask(
                config, weights[name], scores[name], targets[name], current[name]
            )
    mask_parameters_(model, {layers[name].qualified: mask for name, mask in masks.items()})
    narrowed = include is not None or exclude is not None
    coverage = measure_coverage("magnitude pruning", model, list(layers), narrowed=narrowed)
    report_coverage(model, coverage)
    _log(model, config, list(layers))
    return model


def _check_plain(layers: dict[str, Slot]) -> None:
    """Masks hold real parameters: a weight computed from a codebook or fake quantizer cannot
    be pruned in place."""
    computed = [
        name for name, slot in layers.items()
        if slot.module._parameters.get(slot.parameter) is None
        and f"{slot.parameter}_orig" not in slot.module._parameters
    ]  # fmt: skip
    if computed:
        raise ConfigError(
            f"magnitude pruning cannot mask {', '.join(computed)}: the weight is computed "
            "(k-means shared or quantized); prune before quantizing, or finalize_ first"
        )


def _log(model: nn.Module, config: MagnitudePruning, names: list[str]) -> None:
    if not logger.isEnabledFor(logging.INFO):
        return
    counts = weight_counts(model)
    kept = sum(counts[n][0] for n in names)
    total = sum(counts[n][1] for n in names)
    logger.info(
        "%s pruning (%s, %s): %d layers, %d of %d weights kept (sparsity %.4f)",
        config.criterion, config.scope, "sparsity" if config.sparsity is not None else "quality",
        len(names), kept, total, 1 - kept / max(total, 1),
    )  # fmt: skip
