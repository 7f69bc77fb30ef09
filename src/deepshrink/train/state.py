"""Resumable training state without pickle: optimizer tensors and RNG states as tensors,
the rest as JSON."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from deepshrink.errors import FormatError
from deepshrink.train.checkpoint import read_tensors, write_tensors


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
