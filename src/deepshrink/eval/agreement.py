"""How sure an accuracy is, and how many answers compression changed.

An accuracy measured on ``n`` samples is an estimate: :func:`wilson` gives its 95 % interval
(Wilson's score interval, which stays inside [0, 1] and behaves at accuracies near 100 %).
:func:`predicted_classes` and :func:`changed_predictions` count the samples whose predicted class
differs between two models (or a model and its exported file): a -0.5 pp change on 360 samples
is two images, and the count says so.

>>> low, high = wilson(353, 360)
>>> round(low, 4), round(high, 4)
(0.9604, 0.9906)
>>> changed_predictions(torch.tensor([1, 2, 3]), torch.tensor([1, 0, 3]))
1
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from deepshrink.errors import ConfigError

logger = logging.getLogger(__name__)

__all__ = [
    "accuracy_interval", "changed_predictions", "model_forward", "predicted_classes",
    "scored_labels", "wilson",
]  # fmt: skip


def wilson(correct: int, total: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of the proportion ``correct / total`` (``z=1.96``: 95 %)."""
    if total <= 0 or not 0 <= correct <= total:
        raise ConfigError(f"need 0 ≤ correct ≤ total and total > 0; got {correct} of {total}")
    p = correct / total
    denominator = 1 + z * z / total
    centre = (p + z * z / (2 * total)) / denominator
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def accuracy_interval(accuracy: float | None, samples: int | None) -> str:
    """``"96.04–99.06%"``: the Wilson 95 % interval of an accuracy measured on ``samples``;
    ``"n/a"`` when either is unknown.

    >>> accuracy_interval(353 / 360, 360), accuracy_interval(0.5, None)
    ('96.04–99.06%', 'n/a')
    """
    if accuracy is None or not samples:
        return "n/a"
    low, high = wilson(round(accuracy * samples), samples)
    return f"{100 * low:.2f}–{100 * high:.2f}%"


def model_forward(model: nn.Module, output: Any = None) -> Callable[[Any], Tensor]:
    """``model`` as a function of a batch's inputs returning its logits, in eval mode, no grad."""
    from deepshrink.graph.io import call, logits_of
    from deepshrink.train.batches import to_device

    device = next((p.device for p in model.parameters()), torch.device("cpu"))

    def run(inputs: Any) -> Tensor:
        was_training = model.training
        model.eval()
        try:
            with torch.inference_mode():
                return logits_of(call(model, to_device(inputs, device)), output).float().cpu()
        finally:
            model.train(was_training)

    return run


def predicted_classes(
    forward: Callable[[Any], Tensor], dataset: Any, *, batch_size: int = 256
) -> Tensor:
    """The predicted class of every scored sample of ``dataset`` (labels of -100 are not scored;
    per-token outputs are flattened), in order, for a ``forward(inputs) -> logits`` function."""
    from deepshrink._progress import ticking
    from deepshrink.graph.io import inputs_and_labels
    from deepshrink.train.batches import batches
    from deepshrink.train.evaluation import class_view

    parts = []
    for batch in ticking(batches(dataset, batch_size), "predicting", logger):
        inputs, labels = inputs_and_labels(batch)
        logits, _ = class_view(forward(inputs), labels)
        parts.append(logits.argmax(dim=1))
    if not parts:
        raise ConfigError("cannot predict on an empty dataset")
    return torch.cat(parts)


def scored_labels(dataset: Any, *, batch_size: int = 256) -> Tensor:
    """The labels of every scored sample of ``dataset``, in the order of
    :func:`predicted_classes` (labels of -100 left out)."""
    from deepshrink.graph.io import inputs_and_labels
    from deepshrink.train.batches import batches
    from deepshrink.train.evaluation import IGNORE_INDEX

    parts = []
    for batch in batches(dataset, batch_size):
        labels = inputs_and_labels(batch)[1].reshape(-1).long()
        parts.append(labels[labels != IGNORE_INDEX])
    if not parts:
        raise ConfigError("cannot read labels of an empty dataset")
    return torch.cat(parts)


def changed_predictions(before: Tensor, after: Tensor) -> int:
    """How many samples got a different predicted class."""
    if before.shape != after.shape:
        raise ConfigError(f"predictions of {tuple(before.shape)} and {tuple(after.shape)} "
                          "samples cannot be compared; use the same dataset for both")  # fmt: skip
    return int((before != after).sum())
