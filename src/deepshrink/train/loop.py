"""The training loop: :func:`fit` with schedules, hooks, checkpoints and bit-exact resume.

``fit`` trains on a deepshrink ``Data`` (``.train`` plus ``.val``/``.test``), a map-style dataset
(shuffled and batched here, with ``batch_size``), or a ``DataLoader``/iterable of batches used as
it is (batches as :mod:`deepshrink.train.batches` describes: ``(inputs, labels)`` pairs or
dicts with ``labels``). Bit-exact ``resume`` needs a map-style dataset, which ``fit`` shuffles
itself; a loader shuffles on its own, so resuming from one is refused.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from deepshrink import _progress as _progress_lines
from deepshrink.errors import ConfigError
from deepshrink.graph.io import Select, call, logits_of
from deepshrink.train import distributed as parallel
from deepshrink.train.batches import (
    batches_per_epoch,
    is_map_dataset,
    split_batch,
    to_device,
    train_batches,
    training_splits,
)
from deepshrink.train.config import FitConfig, build_config, lr_factor
from deepshrink.train.evaluation import EvalResult, LossFn, Tally, evaluate, model_loss
from deepshrink.train.resume import LAST, EpochRecord, History, restore_state, save_state

logger = logging.getLogger(__name__)


@dataclass
class StepContext:
    """What a loss hook or callback sees at one optimizer step (``inputs`` as the batch held
    them: a tensor, a tuple or a dict of keyword inputs)."""

    model: nn.Module
    inputs: Any
    targets: Tensor
    logits: Tensor
    loss: Tensor
    epoch: int
    step: int


#: A loss hook returns a term added to the loss (e.g. distillation, an L1 penalty on BN scales).
LossHook = Callable[[StepContext], Tensor]


class Callback:
    """Override what you need. ``on_epoch_end`` returning True stops training."""

    def on_step_end(self, context: StepContext) -> None:
        """Called after each optimizer step (e.g. to re-apply pruning masks)."""

    def on_epoch_end(self, record: EpochRecord, model: nn.Module) -> bool | None:
        """Called after each epoch's evaluation and checkpoint."""
        return None


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise ConfigError(f"device {name!r} is not a torch device: {exc}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} asked for, but this torch sees no CUDA GPU")
    return device


@contextlib.contextmanager
def num_threads(threads: int | None) -> Iterator[None]:
    """Run with ``torch.set_num_threads(threads)``, restoring the old value after."""
    old = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def make_optimizer(model: nn.Module, config: FitConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            params,
            lr=config.lr,
            momentum=config.momentum,
            nesterov=config.nesterov,
            weight_decay=config.weight_decay,
        )
    cls = torch.optim.Adam if config.optimizer == "adam" else torch.optim.AdamW
    return cls(params, lr=config.lr, weight_decay=config.weight_decay)


class _Trainer:
    """State of one :func:`fit` run: model, optimizer, RNG and step counter."""

    def __init__(
        self, model: nn.Module, config: FitConfig, data: Any, device: torch.device,
        joined: parallel.World | None = None,
    ):  # fmt: skip
        self.model, self.config, self.device, self.joined = model, config, device, joined
        #: what the forward pass calls: the model, or its DistributedDataParallel wrapper
        self.forward = model if joined is None else parallel.wrap(model, device)
        self.train_set, self.eval_set, self.eval_split = data
        self.hooks: Sequence[LossHook] = ()
        self.callbacks: Sequence[Callback] = ()
        self.directory: Path | None = None
        self.output: Select = None
        self.loss: LossFn | None = None
        self.optimizer = make_optimizer(model, config)
        self.generator = torch.Generator().manual_seed(config.seed)
        self.steps = batches_per_epoch(self.train_set, config, joined.size if joined else 1)
        self.total_steps = (self.steps or 0) * config.epochs
        self.step = 0
        self.heartbeat: _progress_lines.Heartbeat | None = None

    def set_lr(self) -> float:
        factor = lr_factor(self.config, self.step, self.total_steps, self.steps or 0)
        lr = self.config.lr * factor
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        return lr

    def train_step(self, batch: Any, epoch: int) -> tuple[StepContext, int]:
        """One optimizer step on ``batch``; the context and the number of labels averaged."""
        self.set_lr()
        x, y = split_batch(batch)
        x, y = to_device(x, self.device), y.to(self.device, non_blocking=True)
        logits = logits_of(call(self.forward, x), self.output)
        smoothing = self.config.label_smoothing
        loss, weight = model_loss(logits, y, self.loss, smoothing)
        context = StepContext(self.model, x, y, logits, loss, epoch, self.step)
        total = loss + sum(
            (hook(context) for hook in self.hooks), torch.zeros((), device=self.device)
        )
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        if self.config.grad_clip is not None:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
        self.optimizer.step()
        self.step += 1
        return context, weight


def _progress(enabled: bool) -> Any:
    """A rich bar on a terminal; ``None`` (log lines instead, see :mod:`deepshrink._progress`)
    when disabled or when stderr is not a terminal."""
    if not enabled or not _progress_lines.on_terminal():
        return contextlib.nullcontext(None)
    return _progress_lines.progress_bar()


def _epoch_samples(trainer: _Trainer) -> int | None:
    """Samples one epoch trains on, when known (a map-style dataset drops the last batch)."""
    if not is_map_dataset(trainer.train_set) or not trainer.steps:
        return None
    processes = trainer.joined.size if trainer.joined else 1
    return min(len(trainer.train_set), trainer.steps * trainer.config.batch_size * processes)


def _report_step(
    trainer: _Trainer, epoch: int, tally: Tally, seen: int, bar: Any, task: Any
) -> None:
    """Advance the bar, or log a line when the heartbeat says one is due (no bar)."""
    loss = tally.loss_sum / max(tally.weight, 1)
    if task is not None:
        accuracy = "" if tally.top1 is None else f" acc {tally.top1:.2%}"
        bar.update(task, advance=1, status=f"loss {loss:.4f}{accuracy}")
    elif trainer.heartbeat is not None and trainer.heartbeat.due():
        prefix = f"epoch {epoch}/{trainer.config.epochs}"
        total = _epoch_samples(trainer)
        logger.info(_progress_lines.samples_line(prefix, seen, total, loss, tally.top1))


def _run_epoch(trainer: _Trainer, epoch: int, bar: Any) -> tuple[float, float | None]:
    task = None
    if bar is not None:
        task = bar.add_task(
            f"epoch {epoch}/{trainer.config.epochs}", total=trainer.steps, status=""
        )
    tally, seen = Tally(), 0
    trainer.model.train()
    batches = train_batches(
        trainer.train_set, trainer.config.batch_size, trainer.generator, trainer.joined
    )
    for batch in batches:
        context, weight = trainer.train_step(batch, epoch)
        for callback in trainer.callbacks:
            callback.on_step_end(context)
        tally.add(context.logits, context.targets, context.loss, weight)
        seen += int(context.targets.shape[0]) if context.targets.dim() else 1
        _report_step(trainer, epoch, tally, seen, bar, task)
    if task is not None:
        bar.remove_task(task)
    if trainer.joined is not None:  # the epoch's loss and accuracy over every rank's samples
        sums = [tally.loss_sum, tally.weight, tally.correct1, tally.correct5, tally.scored]
        tally.loss_sum, *counts = parallel.reduce_sums(sums)
        tally.weight, tally.correct1, tally.correct5, tally.scored = (int(c) for c in counts)
    if tally.weight == 0:
        raise ConfigError(
            f"the training data gave no batch (or no non-ignored label) in epoch {epoch}; a "
            "generator can be iterated only once: pass a DataLoader or a list of batches"
        )
    result = tally.result()
    return result.loss, result.top1


def _checked_splits(
    config: FitConfig, data: Any, eval_data: Any, *, loss: LossFn | None, resume: bool,
    checkpoint_dir: str | Path | None,
) -> tuple[Any, Any, str]:  # fmt: skip
    """The training and held-out data of a :func:`fit` call, after checking what needs which."""
    if resume and checkpoint_dir is None:
        raise ConfigError("resume=True needs checkpoint_dir, where the interrupted run saved it")
    if loss is not None and config.label_smoothing:
        raise ConfigError(
            "label_smoothing smooths the built-in cross-entropy; with loss= it would be ignored, "
            "so smooth the labels in your loss function instead"
        )
    splits = training_splits(data, eval_data)
    if config.patience is not None and splits[2] not in ("val", "eval"):
        raise ConfigError(
            "patience (early stopping) needs a validation split: set val_size or eval_data"
        )
    if not is_map_dataset(splits[0]):
        if resume:
            raise ConfigError(
                "resume=True needs a map-style dataset, which fit shuffles itself so that a run "
                f"continues bit for bit; got {type(splits[0]).__name__}, which batches and "
                "shuffles on its own: pass its dataset, or train again without resume"
            )
        logger.info("training on %s batches as they come (their own size and order)",
                    type(splits[0]).__name__)  # fmt: skip
    return splits


def fit(
    model: nn.Module,
    data: Any,
    config: FitConfig | None = None,
    *,
    loss_hooks: Sequence[LossHook] = (),
    callbacks: Sequence[Callback] = (),
    checkpoint_dir: str | Path | None = None,
    resume: bool = False,
    progress: bool = True,
    eval_data: Any = None,
    output: Select = None,
    loss: LossFn | None = None,
    distributed: bool | None = None,
    **overrides: Any,
) -> History:
    """Train ``model`` in place on ``data``: a :class:`deepshrink.data.Data`, a dataset, or a
    ``DataLoader``/iterable of ``(inputs, labels)`` or dict batches (used with its own batching).

    Settings come from ``config`` and keyword ``overrides`` (see :class:`FitConfig`). After each
    epoch the model is evaluated on ``eval_data``, else ``data.val`` (or ``data.test`` when there
    is no val split). ``output`` selects the logits in the model's output (default: ``logits``
    when present, else the first tensor); ``loss(logits, labels)`` replaces cross-entropy, which
    handles per-token logits ``(N, T, C)`` with labels ``(N, T)`` and ignores label -100.
    With ``checkpoint_dir`` the full training state is saved every epoch, and ``resume=True``
    continues an interrupted run from there, bit for bit (map-style datasets only).
    Under ``torchrun`` (or ``distributed=True``) training is data-parallel: the model in
    ``DistributedDataParallel``, each process on its part of every global batch of
    ``batch_size × processes`` samples, rank 0 alone logging and saving
    (:mod:`deepshrink.train.distributed`); ``distributed=False`` trains each process alone.

    >>> from deepshrink.data.dataset import ArrayDataset
    >>> data = ArrayDataset(torch.rand(64, 1, 2, 2), torch.randint(0, 2, (64,)))
    >>> model = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
    >>> len(fit(model, data, epochs=2, batch_size=16, progress=False).records)
    2
    """
    config = build_config(config, overrides)
    splits = _checked_splits(config, data, eval_data, loss=loss, resume=resume,
                             checkpoint_dir=checkpoint_dir)  # fmt: skip
    joined = parallel.join(distributed)
    device = resolve_device(config.device)
    if joined is not None:
        device = parallel.local_device(device, config.device, joined)
        progress = progress and joined.main
    model.to(device)
    together = joined is not None
    with num_threads(config.threads), parallel.quiet(), parallel.syncing_ranges(together):
        trainer = _Trainer(model, config, splits, device, joined)
        trainer.output, trainer.loss = output, loss
        trainer.hooks, trainer.callbacks = tuple(loss_hooks), tuple(callbacks)
        trainer.directory = Path(checkpoint_dir) if checkpoint_dir is not None else None
        history, best, start = History(), None, 0
        if resume and trainer.directory is not None and (trainer.directory / LAST).is_file():
            start, history, best = restore_state(trainer.directory, trainer)
            logger.info("resuming from %s after epoch %d", trainer.directory, start)
        else:
            torch.manual_seed(config.seed)
        with _progress(progress) as bar:
            if progress and bar is None:
                trainer.heartbeat = _progress_lines.Heartbeat()
            _epochs(trainer, start, history, best, bar)
        if together:  # every rank ends with rank 0's BatchNorm statistics
            parallel.sync_buffers(model)
    model.eval()
    return history


def _epochs(trainer: _Trainer, start: int, history: History, best: float | None, bar: Any) -> None:
    config = trainer.config
    stale = 0
    for epoch in range(start + 1, config.epochs + 1):
        began = time.perf_counter()
        lr = trainer.set_lr()
        loss, accuracy = _run_epoch(trainer, epoch, bar)
        result = None
        if trainer.eval_set is not None:
            if trainer.joined is not None:  # every rank evaluates rank 0's model
                parallel.sync_buffers(trainer.model)
            result = evaluate(
                trainer.model, trainer.eval_set, output=trainer.output, loss=trainer.loss
            )
        record = EpochRecord(
            epoch, lr, loss, accuracy,
            result.top1 if result else None, result.loss if result else None,
            trainer.eval_split or None, time.perf_counter() - began,
        )  # fmt: skip
        history.records.append(record)
        logger.info(_describe(record, config.epochs))
        if trainer.heartbeat is not None:
            trainer.heartbeat.reset()
        score = None if result is None else _score(result)
        improved = score is not None and (best is None or score > best)
        best = score if improved else best
        stale = 0 if improved else stale + 1
        if trainer.directory is not None and (trainer.joined is None or trainer.joined.main):
            save_state(trainer.directory, trainer, epoch, history, best)
        stop = any(cb.on_epoch_end(record, trainer.model) for cb in trainer.callbacks)
        stop = stop or (config.patience is not None and stale >= config.patience)
        if trainer.joined is not None:
            stop = parallel.decided(stop)  # rank 0's decision
        if stop:
            history.stopped_early = epoch < config.epochs
            break


def _score(result: EvalResult) -> float:
    """Higher is better: held-out accuracy, or minus the loss when there is no accuracy."""
    return result.top1 if result.top1 is not None else -result.loss


def _describe(record: EpochRecord, epochs: int) -> str:
    text = f"epoch {record.epoch}/{epochs}: lr {record.lr:.4g} train loss {record.train_loss:.4f}"
    if record.train_accuracy is not None:
        text += f" acc {record.train_accuracy:.2%}"
    if record.eval_loss is not None:
        text += f", {record.eval_split} loss {record.eval_loss:.4f}"
    if record.eval_accuracy is not None:
        text += f" acc {record.eval_accuracy:.2%}"
    return text + f" ({record.seconds:.1f}s)"
