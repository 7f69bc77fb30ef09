"""Checkpoints: tensors in safetensors, everything else in a JSON sidecar. Nothing is pickled.

A checkpoint ``model.safetensors`` has a sidecar ``model.json``::

    {"format": "deepshrink-checkpoint", "version": 1,
     "arch": {"name": "lenet5", "kwargs": {}},      # how to rebuild the module (zoo models)
     "structure": [...],                             # module changes to replay (pruning, ...)
     "metadata": {...},                              # free-form, e.g. accuracy, data set
     "training": {...}}                              # only in resumable training checkpoints

A training checkpoint adds ``<stem>.optim.safetensors`` with the optimizer's tensors and the
random-number-generator states, so training resumes bit for bit.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as load_tensor_bytes
from safetensors.torch import save as save_tensor_bytes
from torch import nn

from deepshrink._io import atomic_write_bytes, atomic_write_json
from deepshrink.errors import ConfigError, DeepshrinkError, FormatError
from deepshrink.zoo.limits import shown

FORMAT_NAME = "deepshrink-checkpoint"
FORMAT_VERSION = 1


def sidecar_path(path: str | Path) -> Path:
    return Path(path).with_suffix(".json")


def _tensor_path(path: str | Path) -> Path:
    path = Path(path)
    return path if path.suffix == ".safetensors" else path.with_suffix(".safetensors")


def _unshared(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Detached contiguous CPU tensors; a storage seen twice is cloned (safetensors needs that)."""
    seen: set[int] = set()
    out = {}
    for key, value in tensors.items():
        t = value.detach().cpu().contiguous()
        ptr = t.untyped_storage().data_ptr()
        out[key] = t.clone() if ptr in seen and t.numel() else t
        seen.add(ptr)
    return out


def write_tensors(path: str | Path, tensors: dict[str, torch.Tensor]) -> None:
    atomic_write_bytes(path, save_tensor_bytes(_unshared(tensors)))


def read_tensors(path: str | Path) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise DeepshrinkError(f"checkpoint file {path} does not exist")
    try:
        return load_tensor_bytes(path.read_bytes())
    except Exception as exc:  # safetensors raises several of its own and Rust panics
        raise FormatError(f"{path} is not a readable safetensors file: {shown(str(exc))}") from None


def save_checkpoint(
    model: nn.Module,
    path: str | Path,
    *,
    metadata: dict[str, Any] | None = None,
    training: dict[str, Any] | None = None,
) -> Path:
    """Write ``model``'s state to ``path`` (``.safetensors``) and its JSON sidecar; return path.

    >>> import tempfile, pathlib
    >>> p = save_checkpoint(nn.Linear(2, 2), pathlib.Path(tempfile.mkdtemp()) / "m")
    >>> p.name, sidecar_path(p).exists()
    ('m.safetensors', True)
    """
    from deepshrink.graph import structure_of
    from deepshrink.zoo import arch_of

    target = _tensor_path(path)
    write_tensors(target, model.state_dict())
    sidecar: dict[str, Any] = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "arch": arch_of(model),
        "structure": structure_of(model),
        "metadata": metadata or {},
    }
    if training is not None:
        sidecar["training"] = training
    atomic_write_json(sidecar_path(target), sidecar)
    return target


#: Largest sidecar a reader parses, and the deepest nesting it accepts.
MAX_SIDECAR_BYTES = 16 << 20
MAX_SIDECAR_DEPTH = 32
_SIDECAR_TYPES: dict[str, tuple[type, ...]] = {
    "format": (str,),
    "version": (int,),
    "arch": (dict, type(None)),
    "structure": (list,),
    "metadata": (dict,),
    "training": (dict,),
}


def _depth(value: Any) -> int:
    """How deeply ``value`` nests lists and dictionaries (iteratively: no recursion limit)."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        item, level = stack.pop()
        deepest = max(deepest, level)
        if level > MAX_SIDECAR_DEPTH:
            break
        children = item.values() if isinstance(item, dict) else item
        if isinstance(item, (dict, list)):
            stack.extend((child, level + 1) for child in children)
    return deepest


def _check_sidecar(data: Any, side: Path) -> dict[str, Any]:
    """``data`` if it follows the sidecar schema; else :class:`FormatError` naming the key."""
    if not isinstance(data, dict) or data.get("format") != FORMAT_NAME:
        raise FormatError(f"{side} is not a deepshrink checkpoint sidecar (no 'format' tag)")
    if data.get("version") != FORMAT_VERSION or isinstance(data.get("version"), bool):
        raise FormatError(
            f"{side} has checkpoint version {shown(data.get('version'))}; this deepshrink reads "
            f"version {FORMAT_VERSION}"
        )
    for key, value in data.items():
        if key not in _SIDECAR_TYPES:
            raise FormatError(f"{side}: unknown key {shown(key)}; known: {sorted(_SIDECAR_TYPES)}")
        if not isinstance(value, _SIDECAR_TYPES[key]):
            kinds = " or ".join(t.__name__ for t in _SIDECAR_TYPES[key])
            raise FormatError(f"{side}: '{key}' must be {kinds}, not {type(value).__name__}")
    if not all(isinstance(entry, dict) for entry in data.get("structure", [])):
        raise FormatError(f"{side}: 'structure' must be a list of objects")
    if _depth(data) > MAX_SIDECAR_DEPTH:
        raise FormatError(f"{side}: nests deeper than {MAX_SIDECAR_DEPTH} levels")
    return data


def read_sidecar(path: str | Path) -> dict[str, Any]:
    """Read and validate a checkpoint's JSON sidecar (types, size, depth)."""
    side = sidecar_path(_tensor_path(path))
    if not side.is_file():
        raise DeepshrinkError(
            f"checkpoint sidecar {side} does not exist; a deepshrink checkpoint is a "
            ".safetensors file with a .json file of the same name beside it"
        )
    try:
        size = side.stat().st_size
        if size > MAX_SIDECAR_BYTES:
            raise FormatError(f"{side} holds {size:,} bytes; a sidecar holds at most "
                              f"{MAX_SIDECAR_BYTES:,}")  # fmt: skip
        data = json.loads(side.read_bytes().decode("utf-8"), parse_constant=_no_constant)
    except (ValueError, UnicodeDecodeError, RecursionError, OSError) as exc:
        raise FormatError(f"{side} is not valid JSON: {shown(str(exc))}") from None
    return _check_sidecar(data, side)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _match_structure(model: nn.Module, structure: list[dict[str, Any]], path: str | Path) -> None:
    """Replay ``structure`` on an unchanged model; refuse a model changed differently."""
    from deepshrink.graph import rebuild, structure_of

    current = structure_of(model)
    if current == structure:
        return
    if current:
        raise FormatError(
            f"{path} holds a model with other structure changes than the model given "
            f"({len(structure)} vs {len(current)} changes); pass an unchanged model or none"
        )
    rebuild(model, structure)


def restore(
    model: nn.Module | None,
    arch: dict[str, Any] | None,
    structure: list[dict[str, Any]],
    state: dict[str, Any],
    path: str | Path,
) -> nn.Module:
    """Load ``state`` into ``model``, or into a zoo model rebuilt from ``arch``.

    The structure record is replayed first (pruned or factorized layers). Shared by checkpoints
    and ``.dsz`` containers, which check the file with
    :func:`deepshrink.encode.skeleton.check_fit` before calling this.
    """
    if model is None:
        if arch is None:
            raise ConfigError(
                f"{path} was saved from a model outside the zoo; pass the model to load into"
            )
        from deepshrink.zoo import create

        model = create(arch["name"], **arch.get("kwargs", {}))
    _match_structure(model, structure, path)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise FormatError(f"{path} does not fit the model: {exc}") from exc
    return model


def load_checkpoint(
    path: str | Path, model: nn.Module | None = None, *, max_bytes: int | None = None
) -> tuple[nn.Module, dict[str, Any]]:
    """Load a checkpoint into ``model`` (or a zoo model rebuilt from the sidecar).

    The sidecar is checked against its schema, the architecture against its declared bounds,
    and the structure record is replayed on a ``meta`` model whose tensors must be the file's,
    within ``max_bytes`` (default 64 MiB + 64 × the file size), before anything is built.
    Returns the model and the sidecar dictionary.
    """
    from deepshrink.encode.skeleton import check_fit, check_indices, default_cap, wrap

    sidecar = read_sidecar(path)
    tensor_path = _tensor_path(path)
    state = read_tensors(tensor_path)
    cap = default_cap(tensor_path.stat().st_size) if max_bytes is None else max_bytes
    shapes = {name: (tuple(t.shape), t.dtype) for name, t in state.items()}
    arch, structure = sidecar.get("arch"), sidecar.get("structure") or []
    check_fit(model, arch, structure, shapes, path, cap)
    try:
        loaded = restore(model, arch, structure, state, path)
        check_indices(loaded, path)
    except Exception as exc:  # a file that passed every check and still does not build
        raise wrap(exc, path, "model") from exc
    return loaded, sidecar
