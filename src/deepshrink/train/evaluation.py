"""Accuracy and loss of a classifier over a dataset."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from deepshrink.data.dataset import ArrayDataset


@dataclass(frozen=True)
class EvalResult:
    """Top-1/top-5 accuracy (fractions in [0, 1]), mean cross-entropy loss and sample count."""

    top1: float
    top5: float
    loss: float
    count: int

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


def batches(dataset: torch.utils.data.Dataset, batch_size: int) -> Iterator[tuple[Tensor, Tensor]]:
    """Un-augmented batches of any dataset: fast path for :class:`ArrayDataset`."""
    if isinstance(dataset, ArrayDataset):
        yield from dataset.without_transform().iter_batches(batch_size)
        return
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False)
    yield from loader


@torch.no_grad()
def evaluate(
    model: nn.Module,
    dataset: torch.utils.data.Dataset,
    *,
    batch_size: int = 512,
    device: str | torch.device | None = None,
) -> EvalResult:
    """Classify every sample of ``dataset`` in eval mode; the model's train/eval mode is restored.

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
    correct1 = correct5 = 0
    loss_sum = 0.0
    count = 0
    try:
        for x, y in batches(dataset, batch_size):
            x, y = x.to(device), y.to(device)
            logits = model(x)
            loss_sum += float(F.cross_entropy(logits, y, reduction="sum"))
            top = logits.topk(min(5, logits.shape[1]), dim=1).indices
            hits = top == y.unsqueeze(1)
            correct1 += int(hits[:, 0].sum())
            correct5 += int(hits.any(dim=1).sum())
            count += int(y.numel())
    finally:
        model.train(was_training)
    if count == 0:
        raise ValueError("cannot evaluate on an empty dataset")
    return EvalResult(correct1 / count, correct5 / count, loss_sum / count, count)
