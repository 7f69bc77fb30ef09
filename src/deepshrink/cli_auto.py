"""``deepshrink auto``: compress a checkpoint to a byte or accuracy-drop budget."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import click

from deepshrink._cli_common import PATH as _PATH
from deepshrink._cli_common import check_fits as _check_fits
from deepshrink._cli_common import data_options
from deepshrink._cli_common import load_data as _load_data
from deepshrink.errors import ConfigError

__all__ = ["auto_command", "parse_bytes"]

_UNITS = {"": 1, "b": 1, "kb": 1000, "mb": 1000**2, "kib": 1024, "mib": 1024**2}


def parse_bytes(text: str) -> int:
    """``"30kB"`` → ``30000``, ``"1.5MiB"`` → ``1572864``, ``"12000"`` → ``12000``.

    >>> parse_bytes("30kB"), parse_bytes("2KiB"), parse_bytes("512")
    (30000, 2048, 512)
    """
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", text)
    unit = match.group(2).lower() if match else None
    if match is None or unit not in _UNITS:
        raise ConfigError(
            f"--max-bytes: expected a size like 30kB, 1.5MB, 64KiB or 12000, got {text!r}"
        )
    value = int(float(match.group(1)) * _UNITS[unit])
    if value <= 0:
        raise ConfigError(f"--max-bytes must be more than 0 bytes, got {text!r}")
    return value


def _settings(epochs: str, threads: int | None, seed: int) -> Any:
    from deepshrink.auto import FineTune

    try:
        prune_epochs, share_epochs = (int(v) for v in epochs.split(","))
    except ValueError:
        raise ConfigError(
            f"--epochs: expected two counts PRUNE,SHARE like 1,1, got {epochs!r}"
        ) from None
    if prune_epochs < 0 or share_epochs < 0:
        raise ConfigError(f"--epochs: counts must be ≥ 0, got {epochs!r}")
    return FineTune(prune_epochs=prune_epochs, share_epochs=share_epochs, threads=threads,
                    seed=seed)  # fmt: skip


def _numbers(option: str, text: str, kind: type) -> tuple[Any, ...]:
    try:
        values = tuple(kind(v) for v in text.split(","))
    except ValueError:
        raise ConfigError(f"{option}: expected comma-separated numbers, got {text!r}") from None
    if kind is float and not all(0 <= v < 1 for v in values):
        raise ConfigError(f"{option}: sparsities are fractions in [0, 1), got {text!r}")
    if kind is int and not all(1 <= v <= 8 for v in values):
        raise ConfigError(f"{option}: k-means widths are 1 to 8 bits, got {text!r}")
    return values


@click.command("auto")
@click.argument("checkpoint", type=_PATH)
@data_options
@click.option("--max-bytes", help="Budget: size of the delivered .dsz file (30kB, 12000, 1MB).")
@click.option(
    "--max-accuracy-drop",
    type=float,
    help="Budget: percentage points of held-out accuracy the model may lose.",
)
@click.option(
    "--policy",
    type=click.Choice(["auto", "uniform"]),
    default="auto",
    show_default=True,
    help="Per-layer allocation, or one setting for every layer.",
)
@click.option(
    "--epochs",
    default="1,1",
    show_default=True,
    help="Fine-tune epochs after pruning and after weight sharing.",
)
@click.option(
    "--sparsities",
    default="0,0.5,0.7,0.8,0.9,0.95,0.97,0.98,0.99",
    show_default=True,
    help="Magnitude sparsities tried per layer.",
)
@click.option(
    "--bits",
    "widths",
    default="2,3,4,5,6,8",
    show_default=True,
    help="k-means widths tried per layer.",
)
@click.option(
    "--held-out",
    default=5000,
    show_default=True,
    help="Training samples held out for the sensitivity scan.",
)
@click.option(
    "--scan-samples",
    default=2000,
    show_default=True,
    help="Held-out samples each candidate is measured on.",
)
@click.option("--threads", type=int, help="torch CPU threads.")
@click.option("--seed", default=0, show_default=True)
@click.option("--resume", is_flag=True, help="Continue an interrupted run in --out.")
@click.option("--out", type=_PATH, default=Path("runs/auto"), show_default=True)
def auto_command(checkpoint: Path, data_name: str, data_root: Path | None,
                 max_bytes: str | None, max_accuracy_drop: float | None, policy: str,
                 epochs: str, sparsities: str, widths: str, held_out: int,
                 scan_samples: int, threads: int | None, seed: int, resume: bool,
                 out: Path) -> None:  # fmt: skip
    """Compress CHECKPOINT to the smallest-loss model within a budget, checked on the file.

    Per layer, every sparsity × k-means width is measured (encoded bytes; loss on held-out
    training samples), one option per layer is chosen jointly under the budget, the model is
    compressed and fine-tuned with distillation, and the delivered .dsz file is checked.
    """
    from deepshrink import train
    from deepshrink.auto import auto_compress

    if (max_bytes is None) == (max_accuracy_drop is None):
        raise ConfigError("give exactly one budget: --max-bytes 30kB or --max-accuracy-drop 0.5")
    size = parse_bytes(max_bytes) if max_bytes is not None else None
    settings = _settings(epochs, threads, seed)
    grid = {"sparsities": _numbers("--sparsities", sparsities, float),
            "bits": _numbers("--bits", widths, int)}  # fmt: skip
    net, _ = train.load_checkpoint(checkpoint)
    bundle = _load_data(data_name, data_root)
    _check_fits(net, checkpoint.name, bundle)
    report = auto_compress(
        net, bundle, max_bytes=size, max_accuracy_drop=max_accuracy_drop, out=out,
        policy=policy, fine_tune=settings, held_out=held_out, scan_samples=scan_samples,  # type: ignore[arg-type]
        resume=resume, **grid,
    )  # fmt: skip
    test = "n/a" if report.test_accuracy is None else f"{100 * report.test_accuracy:.2f}%"
    original = report.original_test_accuracy
    click.echo(
        f"delivered {report.path}: {report.delivered_bytes:,} bytes; test accuracy "
        f"{test} (original {'n/a' if original is None else f'{100 * original:.2f}%'})"
    )
    for name, option in report.layers.items():
        click.echo(f"  {name}: sparsity {option['sparsity']:g}, {option['bits']} bits, "
                   f"{option['bytes']:,} B")  # fmt: skip
    click.echo(f"report: {Path(out) / 'auto.json'}")
