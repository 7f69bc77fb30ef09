"""Lottery tickets: iterative magnitude pruning with weight rewinding, or learning-rate rewinding.

Frankle & Carbin (2019): train, prune a share of the surviving weights, *rewind* the survivors to
their initial values, retrain; repeat. Frankle et al. (2020) rewind to the weights of an early
epoch ``k`` instead, which finds tickets in larger networks. Renda et al. (2020) keep the trained
weights and rewind only the learning-rate schedule ("learning-rate rewinding").

Here ``rewind="init"`` rewinds to the weights before training and retrains with the full ``fit``
schedule, exactly the original procedure. ``rewind="epoch"`` snapshots the weights after epoch
``rewind_epoch`` of the first training and ``rewind="lr"`` keeps the trained weights; both then
retrain for ``epochs − rewind_epoch`` epochs. ``fit`` has no option to start a schedule part-way,
so those retrainings run the configured schedule (e.g. cosine) over the shorter length instead of
continuing it from epoch ``k``.

>>> import torch
>>> from torch import nn
>>> from deepshrink.data.dataset import ArrayDataset
>>> from deepshrink.prune import MagnitudePruning
>>> torch.manual_seed(0) and None
>>> model = nn.Sequential(nn.Flatten(), nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
>>> data = ArrayDataset(torch.rand(32, 1, 2, 2), torch.randint(0, 2, (32,)))
>>> ticket = lottery_ticket(model, data, MagnitudePruning(sparsity=0.75), rounds=2,
...                         train={"epochs": 1, "batch_size": 16})
>>> [round(r.sparsity, 2) for r in ticket.rounds]
[0.0, 0.5, 0.75]
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import Tensor, nn

from deepshrink.errors import ConfigError
from deepshrink.prune.api import prune_
from deepshrink.prune.config import MagnitudePruning
from deepshrink.prune.masking import MASK_SUFFIX, enforce_masks_
from deepshrink.prune.schedules import IterativeStep, fit_settings, held_out_accuracy, round_config
from deepshrink.prune.targets import Patterns
from deepshrink.prune.unstructured import sparsity
from deepshrink.train import Callback, EpochRecord, FitConfig, LossHook, fit

__all__ = ["LotteryTicket", "lottery_ticket", "rewind_", "snapshot"]

logger = logging.getLogger(__name__)

Rewind = Literal["init", "epoch", "lr"]


@dataclass
class LotteryTicket:
    """The pruned, retrained model, the weights it was rewound to, and each round's numbers.

    ``rounds[0]`` is the dense training; ``rewind_state`` is ``None`` for ``rewind="lr"``.
    """

    model: nn.Module
    rewind_state: dict[str, Tensor] | None
    rounds: list[IterativeStep] = field(default_factory=list)


def snapshot(model: nn.Module) -> dict[str, Tensor]:
    """Copies of the model's parameters and buffers (masks left out), to rewind to later."""
    return {
        name: value.detach().clone()
        for name, value in model.state_dict().items()
        if not name.endswith(MASK_SUFFIX)
    }


def rewind_(model: nn.Module, state: Mapping[str, Tensor]) -> nn.Module:
    """Set the parameters and buffers named in ``state`` back to its values, keeping the masks.

    Pruned weights stay zero: the masks are re-applied after copying.

    >>> layer = nn.Linear(2, 2)
    >>> start = snapshot(layer)
    >>> with torch.no_grad():
    ...     _ = layer.weight.add_(1.0)
    >>> torch.equal(rewind_(layer, start).weight, start["weight"])
    True
    """
    current = model.state_dict(keep_vars=True)
    unknown = sorted(set(state) - set(current))
    if unknown:
        raise ConfigError(f"cannot rewind: the model has no tensors {unknown[:5]}")
    with torch.no_grad():
        for name, value in state.items():
            current[name].copy_(value)
    enforce_masks_(model)
    return model


class _Snapshot(Callback):
    def __init__(self, epoch: int) -> None:
        self.epoch = epoch
        self.state: dict[str, Tensor] | None = None

    def on_epoch_end(self, record: EpochRecord, model: nn.Module) -> bool | None:
        if record.epoch == self.epoch:
            self.state = snapshot(model)
        return None


def _check(rewind: str, rewind_epoch: int, epochs: int, rounds: int) -> None:
    if rewind not in ("init", "epoch", "lr"):
        raise ConfigError(f"rewind must be 'init', 'epoch' or 'lr', got {rewind!r}")
    if not isinstance(rounds, int) or rounds < 1:
        raise ConfigError(
            f"rounds must be a positive number of prune-retrain rounds, got {rounds!r}"
        )
    if rewind == "init" and rewind_epoch != 0:
        raise ConfigError(f"rewind='init' rewinds to epoch 0; for epoch {rewind_epoch} use 'epoch'")
    if not 0 <= rewind_epoch < max(epochs, 1):
        raise ConfigError(
            f"rewind_epoch must be in [0, epochs={epochs}), got {rewind_epoch}: the retraining "
            "runs the remaining epochs"
        )


def lottery_ticket(
    model: nn.Module,
    data: Any,
    target: MagnitudePruning,
    rounds: int,
    train: FitConfig | Mapping[str, Any] | None = None,
    *,
    rewind: Rewind = "init",
    rewind_epoch: int = 0,
    include: Patterns = None,
    exclude: Patterns = None,
    loss_hooks: Sequence[LossHook] = (),
    callbacks: Sequence[Callback] = (),
) -> LotteryTicket:
    """Find a sparse trainable subnetwork of ``model`` (untrained) by iterative magnitude pruning.

    ``target`` gives the final sparsity (and scope, criterion, overrides); each of ``rounds``
    rounds prunes the same share of the surviving weights. ``train`` holds the ``fit`` settings
    (default: ``FitConfig``'s); every round trains with them, from the rewind point.
    """
    if not isinstance(target, MagnitudePruning) or target.sparsity is None:
        raise ConfigError("lottery_ticket needs a MagnitudePruning(sparsity=...) target")
    settings = fit_settings(train)
    epochs = int(settings.get("epochs", FitConfig().epochs))
    _check(rewind, rewind_epoch, epochs, rounds)
    capture = _Snapshot(rewind_epoch)
    state = snapshot(model) if rewind_epoch == 0 else None
    common = {"loss_hooks": loss_hooks, "progress": False}
    fit(model, data, callbacks=[*callbacks, capture], **common, **settings)
    state = state if state is not None else capture.state
    results = [IterativeStep(0, sparsity(model), None, held_out_accuracy(model, data))]
    retrain = {**settings, "epochs": epochs - rewind_epoch}
    for index in range(1, rounds + 1):
        prune_(model, round_config(target, index, rounds), include=include, exclude=exclude)
        before = held_out_accuracy(model, data)
        if rewind != "lr" and state is not None:
            rewind_(model, state)
        fit(model, data, callbacks=list(callbacks), **common, **retrain)
        results.append(
            IterativeStep(index, sparsity(model), before, held_out_accuracy(model, data))
        )
        logger.info("lottery ticket round %d/%d: %s", index, rounds, results[-1])
    return LotteryTicket(model, None if rewind == "lr" else state, results)
