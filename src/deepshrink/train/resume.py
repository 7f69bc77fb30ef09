"""What :func:`~deepshrink.train.fit` records per epoch, and the state it saves and restores
for a bit-exact resume (``checkpoint_dir/last.safetensors``: model, optimizer and RNG tensors,
with the epoch, step, settings and history in its sidecar)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from deepshrink.errors import ConfigError, FormatError
from deepshrink.train.checkpoint import load_checkpoint, read_sidecar, save_checkpoint
from deepshrink.train.state import checked_training, load_training_tensors, save_training_tensors

__all__ = ["LAST", "EpochRecord", "History", "restore_state", "save_state"]

#: The file a run with ``checkpoint_dir`` keeps its latest state in.
LAST = "last.safetensors"


@dataclass(frozen=True)
class EpochRecord:
    """One epoch of a :func:`~deepshrink.train.fit` run: its learning rate, losses, accuracies
    and seconds (``eval_*`` on ``eval_split``: ``val``, ``eval``, ``test`` or none)."""

    epoch: int
    lr: float
    train_loss: float
    train_accuracy: float | None
    eval_accuracy: float | None
    eval_loss: float | None
    eval_split: str | None
    seconds: float


@dataclass
class History:
    """Per-epoch records of a :func:`fit` run."""

    records: list[EpochRecord] = field(default_factory=list)
    stopped_early: bool = False

    @property
    def last(self) -> EpochRecord | None:
        return self.records[-1] if self.records else None

    def to_dict(self) -> dict[str, Any]:
        return {"records": [asdict(r) for r in self.records], "stopped_early": self.stopped_early}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> History:
        return cls([EpochRecord(**r) for r in data["records"]], data.get("stopped_early", False))


def save_state(
    directory: Path, trainer: Any, epoch: int, history: History, best: float | None
) -> None:
    """Save the model, optimizer, RNG and progress of ``trainer`` to ``directory/last.*``."""
    structure = save_training_tensors(directory / LAST, trainer.optimizer, trainer.generator)
    training = {
        "epoch": epoch,
        "step": trainer.step,
        "config": trainer.config.model_dump(),
        "history": history.to_dict(),
        "best_accuracy": best,
        "optimizer": structure,
    }
    save_checkpoint(trainer.model, directory / LAST, training=training)


_RESUMABLE_CHANGES = {"epochs", "threads", "device", "patience"}


def restore_state(directory: Path, trainer: Any) -> tuple[int, History, float | None]:
    """Load ``directory/last.*``; return (epochs done, history, best accuracy)."""
    training = read_sidecar(directory / LAST).get("training")
    if training is None:
        raise ConfigError(f"{directory / LAST} is not a training checkpoint; cannot resume")
    saved = checked_training(training, directory / LAST)
    changed = sorted(
        k
        for k, v in trainer.config.model_dump().items()
        if k not in _RESUMABLE_CHANGES and saved.get(k) != v
    )
    if changed:
        diffs = ", ".join(
            f"{k}: {saved.get(k)!r} → {getattr(trainer.config, k)!r}" for k in changed
        )
        raise ConfigError(
            f"cannot resume from {directory}: settings differ from the interrupted run ({diffs})"
        )
    load_checkpoint(directory / LAST, trainer.model)
    load_training_tensors(
        directory / LAST, trainer.optimizer, trainer.generator, training["optimizer"]
    )
    trainer.step = training["step"]
    return (
        training["epoch"],
        _history(training["history"], directory / LAST),
        training["best_accuracy"],
    )


def _history(record: dict[str, Any], path: Path) -> History:
    try:
        return History.from_dict(record)
    except (KeyError, TypeError, ValueError) as exc:
        raise FormatError(
            f"{path}: training.history is damaged ({type(exc).__name__}: {str(exc)[:200]})"
        ) from None
