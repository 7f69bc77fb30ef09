"""Training and evaluation loops, checkpoints and resume.

>>> import deepshrink as ds
>>> callable(ds.train.fit)
True
"""

from __future__ import annotations

from deepshrink.train.checkpoint import load_checkpoint, read_sidecar, save_checkpoint
from deepshrink.train.config import FitConfig, build_config
from deepshrink.train.evaluation import EvalResult, LossFn, evaluate
from deepshrink.train.loop import (
    Callback,
    EpochRecord,
    History,
    LossHook,
    StepContext,
    fit,
    num_threads,
    resolve_device,
)

__all__ = [
    "Callback",
    "EpochRecord",
    "EvalResult",
    "FitConfig",
    "History",
    "LossFn",
    "LossHook",
    "StepContext",
    "build_config",
    "evaluate",
    "fit",
    "load_checkpoint",
    "num_threads",
    "read_sidecar",
    "resolve_device",
    "save_checkpoint",
]
