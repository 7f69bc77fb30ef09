"""The run folder of ``auto_compress``: the scan cache, phase checkpoints, resume, the report.

``out/scan.json`` keeps the measured candidates with a fingerprint of the model's weights and the
scan settings; ``out/.auto/`` keeps the model after the pruning fine-tune and the fine-tunes'
per-epoch training state. With ``resume=True`` an interrupted run reuses all of them (a changed
model or setting changes the fingerprint, and the stale state is not used).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from torch import nn

from deepshrink._io import atomic_write_bytes
from deepshrink.auto.candidates import Option, scan
from deepshrink.errors import ConfigError

__all__ = [
    "allocation_key",
    "cached_scan",
    "fit_dir",
    "fixed_bytes",
    "load_phase",
    "prepare",
    "save_phase",
    "split",
    "write_report",
]

logger = logging.getLogger(__name__)


def prepare(out: str | Path, resume: bool) -> Path:
    """The run folder, made if needed; without ``resume`` earlier phase state is not reused."""
    folder = Path(out)
    try:
        (folder / ".auto").mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"--out {folder}: cannot make the folder ({exc.strerror}); choose "
                          "a writable one") from None  # fmt: skip
    if not resume:
        for stale in (folder / ".auto").glob("**/*"):
            if stale.is_file():
                stale.unlink()
    return folder


def split(data: Any, held_out: int, seed: int, train_samples: int | None = None) -> tuple[Any, Any]:
    """(training part, held-out part) of the training set: ``data.val`` if there is one. With
    ``train_samples`` the training part is cut to its first that many samples."""
    train, held = _split(data, held_out, seed)
    if train_samples is not None:
        import torch

        train = train.subset(torch.arange(min(train_samples, len(train))))
    return train, held


def _split(data: Any, held_out: int, seed: int) -> tuple[Any, Any]:
    from deepshrink.data.catalog import split_validation

    train = getattr(data, "train", None)
    if train is None:
        raise ConfigError(f"auto compression needs a deepshrink Data (train/test splits), got "
                          f"{type(data).__name__}; load it with deepshrink.data.load")  # fmt: skip
    val = getattr(data, "val", None)
    if val is not None and len(val) > 0:
        return train, val
    return split_validation(train, min(held_out, len(train) // 5), seed=seed)


def fingerprint(model: nn.Module, settings: Mapping[str, Any]) -> str:
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def cached_scan(
    folder: Path, model: nn.Module, held: Any, layers: Sequence[str],
    sparsities: Sequence[float], bits: Sequence[int], samples: int, seed: int, resume: bool,
) -> tuple[dict[str, list[Option]], tuple[float, float]]:  # fmt: skip
    """The scan's table: read from ``scan.json`` when resuming with the same fingerprint."""
    settings = {"layers": list(layers), "sparsities": sorted(sparsities), "bits": sorted(bits),
                "samples": samples, "held": len(held), "seed": seed}  # fmt: skip
    key = fingerprint(model, settings)
    path = folder / "scan.json"
    if resume and path.is_file():
        saved = json.loads(path.read_text())
        if saved.get("fingerprint") == key:
            logger.info("auto scan: reusing %s", path)
            table = {n: [Option(**o) for o in opts] for n, opts in saved["table"].items()}
            return table, (saved["reference"][0], saved["reference"][1])
        logger.info("auto scan: %s is for another model or settings; scanning again", path)
    table, reference = scan(model, held, layers, sparsities, bits, samples=samples, seed=seed)
    document = {
        "fingerprint": key,
        "settings": settings,
        "reference": list(reference),
        "table": {n: [o.to_dict() for o in opts] for n, opts in table.items()},
    }
    atomic_write_bytes(path, json.dumps(document, indent=1).encode())
    return table, reference


def fixed_bytes(model: nn.Module, layers: Sequence[str]) -> int:
    """Bytes of the file apart from the layers' weight sections: header and other tensors."""
    from deepshrink.encode.config import EncodeConfig
    from deepshrink.encode.container import pack, split_aliases
    from deepshrink.zoo import arch_of

    weights = {f"{name}.weight" for name in layers}
    state, aliases = split_aliases(model.state_dict())
    rest = {k: v for k, v in state.items() if k not in weights}
    return len(pack(rest, EncodeConfig(), arch=arch_of(model), aliases=aliases))


def allocation_key(allocation: Mapping[str, Option], attempt: int) -> str:
    text = json.dumps({n: o.label for n, o in allocation.items()} | {"#": attempt})
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def fit_dir(folder: Path, phase: str, key: str) -> Path:
    return folder / ".auto" / f"{phase}-{key}"


def save_phase(folder: Path, phase: str, key: str, model: nn.Module) -> None:
    from deepshrink.train import save_checkpoint

    save_checkpoint(model, folder / ".auto" / f"{phase}-{key}.safetensors")


def load_phase(folder: Path, phase: str, key: str, template: nn.Module) -> nn.Module | None:
    """The model saved after ``phase`` for this allocation, or None (rebuilt on ``template``)."""
    import copy

    from deepshrink.train import load_checkpoint

    path = folder / ".auto" / f"{phase}-{key}.safetensors"
    if not path.is_file():
        return None
    logger.info("auto: resuming from %s", path)
    model, _ = load_checkpoint(path, copy.deepcopy(template))
    return model


def write_report(folder: Path, report: Mapping[str, Any]) -> None:
    from deepshrink.auto.summary import write_summary

    atomic_write_bytes(folder / "auto.json", json.dumps(report, indent=1).encode())
    write_summary(folder, dict(report))
