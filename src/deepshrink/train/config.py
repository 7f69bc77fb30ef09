"""The training configuration: one validated, frozen object for :func:`deepshrink.train.fit`."""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from deepshrink.errors import ConfigError, quoted

#: Most epochs (and warm-up, step and patience epochs) a config may ask for.
MAX_EPOCHS = 100_000


class FitConfig(BaseModel):
    """How to train. Every field has a sensible default; invalid values fail when built.

    >>> FitConfig(epochs=3, lr=0.01).schedule
    'cosine'
    """

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    epochs: int = Field(10, ge=0, le=MAX_EPOCHS, description="passes over the training set")
    batch_size: int = Field(128, gt=0, le=1 << 20)
    optimizer: Literal["sgd", "adam", "adamw"] = "sgd"
    lr: float = Field(0.05, gt=0, le=1e3, description="peak learning rate")
    momentum: float = Field(0.9, ge=0, lt=1)
    nesterov: bool = False
    weight_decay: float = Field(5e-4, ge=0, le=1e3)
    schedule: Literal["cosine", "step", "inv", "constant"] = "cosine"
    warmup_epochs: float = Field(
        0.0, ge=0, le=MAX_EPOCHS, description="linear warm-up length, in epochs"
    )
    step_epochs: int = Field(
        30, gt=0, le=MAX_EPOCHS, description="'step' schedule: epochs between decays"
    )
    gamma: float = Field(
        0.1, gt=0, le=1e3, description="'step': decay factor; 'inv': Caffe's gamma"
    )
    power: float = Field(0.75, gt=0, le=1e3, description="'inv' schedule: Caffe's power")
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    grad_clip: float | None = Field(None, gt=0, description="max global gradient norm")
    seed: int = Field(0, ge=-(1 << 63), lt=1 << 63)
    threads: int | None = Field(
        None, gt=0, le=1024, description="torch CPU threads during training"
    )
    device: str = Field(
        "auto",
        pattern=r"^(auto|cpu|mps|(cuda|xpu)(:\d{1,4})?)$",
        description="'auto', 'cpu', 'cuda', 'cuda:1', 'mps'",
    )
    patience: int | None = Field(
        None, gt=0, le=MAX_EPOCHS,
        description="stop after this many epochs without a better val accuracy",
    )  # fmt: skip

    @model_validator(mode="after")
    def _check(self) -> FitConfig:
        if self.schedule == "inv" and self.gamma >= 1:
            raise ValueError(f"'inv' schedule gamma is per step and must be < 1, got {self.gamma}")
        if self.nesterov and (self.optimizer != "sgd" or self.momentum == 0):
            raise ValueError("nesterov=True needs optimizer='sgd' and momentum > 0")
        return self


def lr_factor(config: FitConfig, step: int, total_steps: int, steps_per_epoch: int) -> float:
    """Multiplier of ``config.lr`` at optimizer step ``step`` (0-based).

    >>> cfg = FitConfig(schedule="cosine")
    >>> lr_factor(cfg, 0, 100, 10), round(lr_factor(cfg, 50, 100, 10), 3)
    (1.0, 0.5)
    """
    warmup = int(config.warmup_epochs * steps_per_epoch)
    if step < warmup:
        return (step + 1) / warmup
    if config.schedule == "constant":
        return 1.0
    if config.schedule == "step":
        return config.gamma ** (step // (config.step_epochs * steps_per_epoch))
    if config.schedule == "inv":  # Caffe: base_lr * (1 + gamma * iter) ^ (-power)
        return (1.0 + config.gamma * step) ** (-config.power)
    span = max(1, total_steps - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - warmup) / span)))


def build_config(
    config: FitConfig | None = None, overrides: dict[str, Any] | None = None
) -> FitConfig:
    """``config`` with ``overrides`` applied; invalid values raise a one-line ConfigError.

    >>> build_config(None, {"epochs": 2}).epochs
    2
    """
    try:
        base = config.model_dump() if config is not None else {}
        return FitConfig(**{**base, **(overrides or {})})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "config"
        value = f", got {quoted(first['input'])}" if first["loc"] else ""
        raise ConfigError(f"fit {where}: {first['msg']}{value}") from None
