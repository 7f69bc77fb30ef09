"""Accuracy and loss of a classifier or token tagger over a dataset or any iterable of batches.

Data may be a map-style dataset of ``(x, y)`` samples (batched here), a ``DataLoader``, or any
iterable of batches: ``(inputs, labels)`` pairs whose inputs are a tensor, a tuple (positional
inputs) or a dict (keyword inputs), or dicts whose ``labels`` key holds the labels and whose other
keys are the model's keyword inputs (Hugging Face style). The model's output may be a tensor,
tuple, dict or ``ModelOutput``; ``output=`` picks the prediction (default: ``logits`` when present,
else the first tensor, see :func:`deepshrink.graph.io.logits_of`).

Logits ``(N, C)`` go with labels ``(N,)``; per-token logits ``(N, T, C)`` with labels ``(N, T)``
(the class axis may also be axis 1, ``(N, C, T…)``, as ``F.cross_entropy`` takes it). Labels equal
to ``-100`` are ignored, as Hugging Face does: cross-entropy and accuracy are over the other
tokens. A user ``loss(logits, labels) -> Tensor`` replaces cross-entropy; accuracy is then reported
only when the labels are class ids that fit the logits.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from deepshrink._progress import ticking
from deepshrink.errors import ConfigError
from deepshrink.graph.io import Select, call, logits_of
from deepshrink.train.batches import batches, describe, split_batch, to_device

logger = logging.getLogger(__name__)

__all__ = ["IGNORE_INDEX", "EvalResult", "LossFn", "Tally", "batches", "evaluate", "model_loss"]

#: Labels with this value are not scored (Hugging Face's padding / sub-word convention).
IGNORE_INDEX = -100

#: A user loss: ``loss(logits, labels)`` returns a scalar tensor (mean over the batch).
LossFn = Callable[[Tensor, Tensor], Tensor]


@dataclass(frozen=True)
class EvalResult:
    """Top-1/top-5 accuracy (fractions in [0, 1]), mean loss and the number of labels scored.

    ``count`` is the number of samples, or of non-ignored tokens for per-token outputs. The
    accuracies are ``None`` when a user loss was given and the labels are not class ids.
    """

    top1: float | None
    top5: float | None
    loss: float
    count: int

    def to_dict(self) -> dict[str, float | int | None]:
        return asdict(self)


def _class_view(logits: Tensor, labels: Tensor) -> tuple[Tensor, Tensor] | None:
    """Logits ``(M, C)`` and class ids ``(M,)`` of the non-ignored labels, or ``None``."""
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        return None
    if logits.ndim != labels.ndim + 1 or logits.ndim < 2:
        return None
    if logits.shape[:-1] != labels.shape:
        if logits.shape[0] != labels.shape[0] or logits.shape[2:] != labels.shape[1:]:
            return None
        logits = logits.movedim(1, -1)  # (N, C, T...) as F.cross_entropy takes it
    flat_logits, flat = logits.reshape(-1, logits.shape[-1]), labels.reshape(-1).long()
    keep = flat != IGNORE_INDEX
    return flat_logits[keep], flat[keep]


def class_view(logits: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """:func:`_class_view`, or a ConfigError naming both shapes."""
    view = _class_view(logits, labels)
    if view is None:
        raise ConfigError(
            f"the model's output {describe(logits)} does not fit the labels {describe(labels)}: "
            "cross-entropy needs logits (N, C) with integer labels (N,), or per-token logits "
            "(N, T, C) with labels (N, T); choose the output with output=, or pass loss="
        )
    return view


def model_loss(
    logits: Tensor, labels: Tensor, loss: LossFn | None = None, label_smoothing: float = 0.0
) -> tuple[Tensor, int]:
    """The loss of one batch (a scalar to minimise) and the number of labels it averages."""
    if loss is not None:
        value = loss(logits, labels)
        if not isinstance(value, Tensor) or value.numel() != 1:
            raise ConfigError(
                f"loss(logits, labels) must return a scalar tensor, got {describe(value)}"
            )
        return value.reshape(()), int(labels.shape[0]) if labels.ndim else 1
    flat_logits, flat = class_view(logits, labels)
    value = F.cross_entropy(flat_logits, flat, label_smoothing=label_smoothing)
    return value, int(flat.numel())


class Tally:
    """Running loss and top-1/top-5 hits over batches."""

    def __init__(self) -> None:
        self.loss_sum, self.weight = 0.0, 0
        self.correct1 = self.correct5 = self.scored = 0
        self.accuracy = True

    def add(self, logits: Tensor, labels: Tensor, loss: Tensor, weight: int) -> None:
        if weight:  # a batch whose labels are all ignored adds nothing
            self.loss_sum += float(loss.detach()) * weight
            self.weight += weight
        view = _class_view(logits.detach(), labels) if self.accuracy else None
        if view is None:
            self.accuracy = False
            return
        flat_logits, flat = view
        top = flat_logits.topk(min(5, flat_logits.shape[-1]), dim=-1).indices
        hits = top == flat.unsqueeze(-1)
        self.correct1 += int(hits[:, 0].sum())
        self.correct5 += int(hits.any(dim=-1).sum())
        self.scored += int(flat.numel())

    @property
    def top1(self) -> float | None:
        return self.correct1 / max(self.scored, 1) if self.accuracy else None

    def result(self) -> EvalResult:
        top5 = self.correct5 / max(self.scored, 1) if self.accuracy else None
        count = self.scored if self.accuracy else self.weight
        return EvalResult(self.top1, top5, self.loss_sum / max(self.weight, 1), count)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    dataset: Any,
    *,
    batch_size: int = 512,
    device: str | torch.device | None = None,
    output: Select = None,
    loss: LossFn | None = None,
) -> EvalResult:
    """Score every batch of ``dataset`` in eval mode; the model's train/eval mode is restored.

    ``dataset`` is a dataset, a ``DataLoader`` or any iterable of batches (see the module doc);
    ``output`` selects the logits in the model's output; ``loss`` replaces cross-entropy.

    >>> from deepshrink.data.dataset import ArrayDataset
    >>> data = ArrayDataset(torch.rand(8, 1, 2, 2), torch.zeros(8, dtype=torch.long))
    >>> model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    >>> evaluate(model, data).count
    8
    """
    if device is None:
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
    was_training = model.training
    model.eval()
    tally = Tally()
    try:
        for batch in ticking(batches(dataset, batch_size), "evaluating", logger):
            inputs, labels = split_batch(batch)
            labels = labels.to(device)
            logits = logits_of(call(model, to_device(inputs, device)), output)
            value, weight = model_loss(logits, labels, loss)
            tally.add(logits, labels, value, weight)
    finally:
        model.train(was_training)
    if tally.weight == 0:
        raise ConfigError("cannot evaluate on empty data: no batch (or no non-ignored label)")
    return tally.result()
