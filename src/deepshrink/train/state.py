"""Resumable training state without pickle: optimizer tensors and RNG states as tensors,
the rest as JSON."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from deepshrink.errors import FormatError
from deepshrink.train.checkpoint import read_tensors, write_tensors
from deepshrink.train.config import FitConfig


def optim_path(checkpoint: Path) -> Path:
    return checkpoint.with_suffix(".optim.safetensors")


def split_optimizer_state(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """Optimizer state as (tensors keyed ``state.<param>.<name>``, JSON-able structure)."""
    state_dict = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for index, entry in state_dict["state"].items():
        for name, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"state.{index}.{name}"] = value
            else:
                scalars.setdefault(str(index), {})[name] = value
    structure = {"param_groups": state_dict["param_groups"], "scalars": scalars}
    return tensors, structure


def join_optimizer_state(tensors: dict[str, torch.Tensor], structure: dict) -> dict[str, Any]:
    """Inverse of :func:`split_optimizer_state`: a dict for ``optimizer.load_state_dict``."""
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if not key.startswith("state."):
            continue
        _, index, name = key.split(".", 2)
        state.setdefault(int(index), {})[name] = value
    for index, entries in structure.get("scalars", {}).items():
        state.setdefault(int(index), {}).update(entries)
    return {"state": state, "param_groups": structure["param_groups"]}


def save_training_tensors(
    checkpoint: Path, optimizer: torch.optim.Optimizer, generator: torch.Generator
) -> dict:
    """Write optimizer tensors and RNG states beside ``checkpoint``; return the JSON part."""
    tensors, structure = split_optimizer_state(optimizer)
    tensors["rng.generator"] = generator.get_state()
    tensors["rng.torch"] = torch.get_rng_state()
    write_tensors(optim_path(checkpoint), tensors)
    return structure


def load_training_tensors(
    checkpoint: Path,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
    structure: dict,
) -> None:
    """Restore what :func:`save_training_tensors` wrote."""
    tensors = read_tensors(optim_path(checkpoint))
    for key in ("rng.generator", "rng.torch"):
        if key not in tensors:
            raise FormatError(f"{optim_path(checkpoint)} lacks the tensor {key!r}")
    optimizer.load_state_dict(join_optimizer_state(tensors, structure))
    generator.set_state(tensors["rng.generator"])
    torch.set_rng_state(tensors["rng.torch"])


def checked_training(training: Any, path: Path) -> dict[str, Any]:
    """The saved fit settings of a training checkpoint's ``training`` record, after checking
    every field resume reads; a damaged record is a FormatError naming the field."""
    from pydantic import ValidationError

    def bad(field: str, what: str) -> FormatError:
        return FormatError(f"{path}: training.{field} must be {what}; the checkpoint is damaged")

    if not isinstance(training, dict):
        raise bad("", "a mapping")
    for name in ("step", "epoch"):
        value = training.get(name)
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**53:
            raise bad(name, "a non-negative integer")
    best = training.get("best_accuracy")
    if best is not None and (not isinstance(best, (int, float)) or not 0 <= best <= 1):
        raise bad("best_accuracy", "null or a fraction in [0, 1]")
    for name, kind in (("config", dict), ("history", dict), ("optimizer", (dict, list))):
        if not isinstance(training.get(name), kind):
            raise bad(name, "a mapping" if kind is dict else "a mapping or a list")
    try:
        return FitConfig(**training["config"]).model_dump()
    except (ValidationError, TypeError) as exc:
        first = str(exc).splitlines()[0][:200]
        raise bad("config", f"valid fit settings ({first})") from None
