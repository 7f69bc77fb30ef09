"""Apply a per-layer allocation, fine-tune with distillation, and measure the delivered file.

The order is Deep Compression's: magnitude pruning per layer (masks held while fine-tuning),
k-means weight sharing of the survivors (only the centroids train afterwards), both fine-tunes
distilling from the uncompressed model (Hinton et al.'s soft targets), then ``finalize_`` and
``ds.save``. The size that counts is the ``.dsz`` file's on disk.
"""

from __future__ import annotations

import copy
import logging
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from deepshrink.auto.candidates import Option

__all__ = ["FineTune", "apply_prune_", "apply_share_", "delivered_bytes", "fine_tune_"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class FineTune:
    """Epochs and learning rates of the two fine-tunes (after pruning, after sharing)."""

    prune_epochs: int = 1
    share_epochs: int = 1
    prune_lr: float = 0.01
    share_lr: float = 0.001
    batch_size: int = 128
    temperature: float = 4.0
    alpha: float = 0.9
    threads: int | None = None
    seed: int = 0
    #: gradient-norm clip of the centroid fine-tune: a centroid's gradient sums those of every
    #: weight sharing it, so with few centroids SGD steps are large (distilled LeNet-5 at 2 bits
    #: went to NaN at lr 0.001 without it)
    share_clip: float | None = 1.0
    #: train on the first this many samples of the training part only (None: all of it)
    train_samples: int | None = None


def apply_prune_(model: nn.Module, allocation: Mapping[str, Option]) -> nn.Module:
    """Prune each layer by magnitude to its allocated sparsity (masks kept on the model)."""
    from deepshrink.prune import MagnitudePruning, prune_

    for name, option in allocation.items():
        if option.sparsity > 0:
            prune_(model, MagnitudePruning(sparsity=option.sparsity), include=[name])
    return model


def apply_share_(model: nn.Module, allocation: Mapping[str, Option], seed: int = 0) -> nn.Module:
    """Share each layer's weights by k-means at its allocated width (pruning masks taken over)."""
    from deepshrink.quantize import KMeansQuantization, quantize_

    overrides = {name: option.bits for name, option in allocation.items()}
    config = KMeansQuantization(
        bits=max(overrides.values()), overrides=overrides, init="linear", seed=seed
    )
    return quantize_(model, config, include=list(allocation))


def fine_tune_(
    model: nn.Module,
    teacher: nn.Module,
    train: Any,
    held_out: Any,
    *,
    epochs: int,
    lr: float,
    settings: FineTune,
    phase: str,
    checkpoint_dir: Path | None = None,
    resume: bool = False,
) -> None:
    """Fine-tune ``model`` in place, distilling ``teacher``; per-epoch lines in the log."""
    from deepshrink.prune.distill import distillation_loss
    from deepshrink.train import fit

    if epochs <= 0:
        return
    logger.info("auto fine-tune after %s: %d epoch(s), lr %g, distilling the original model",
                phase, epochs, lr)  # fmt: skip
    fit(
        model, train, epochs=epochs, lr=lr, batch_size=settings.batch_size,
        weight_decay=5e-4 if phase == "pruning" else 0.0, eval_data=held_out,
        loss_hooks=[distillation_loss(teacher, settings.temperature, settings.alpha)],
        checkpoint_dir=checkpoint_dir, resume=resume, progress=True, seed=settings.seed,
        threads=settings.threads, grad_clip=settings.share_clip if phase == "sharing" else None,
    )  # fmt: skip


def delivered_bytes(model: nn.Module, path: str | os.PathLike[str] | None = None) -> int:
    """Size on disk of ``model`` finalized and written by ``ds.save`` (a copy; ``model`` kept).

    Without ``path`` the file goes to a temporary folder and is deleted.
    """
    from deepshrink import finalize_, save

    plain = finalize_(copy.deepcopy(model))
    if path is not None:
        return save(plain, path).stat().st_size
    with tempfile.TemporaryDirectory() as folder:
        return save(plain, Path(folder) / "trial.dsz").stat().st_size
