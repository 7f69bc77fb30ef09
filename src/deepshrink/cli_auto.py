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


def _settings(epochs: str, threads: int | None, seed: int, train_samples: int | None) -> Any:
    from deepshrink.auto import FineTune

    try:
        counts = [int(v) for v in epochs.split(",")]
    except ValueError:
        counts = []
    if len(counts) not in (1, 2):
        raise ConfigError(
            f"--epochs: expected PRUNE,SHARE like 1,1 (or one count for both), got {epochs!r}"
        )
    if min(counts) < 0:
        raise ConfigError(f"--epochs: counts must be ≥ 0, got {epochs!r}")
    if train_samples is not None and train_samples < 1:
        raise ConfigError(f"--train-samples must be at least 1, got {train_samples}")
    return FineTune(prune_epochs=counts[0], share_epochs=counts[-1], threads=threads, seed=seed,
                    train_samples=train_samples)  # fmt: skip


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
    "--max-latency-ms",
    type=float,
    help="Budget: ms per batch-1 call of the delivered ONNX file (one thread, CPU time).",
)
@click.option(
    "--speedup",
    type=float,
    help="Budget: times faster than the model's fp32 ONNX export at batch 1 (e.g. 2).",
)
@click.option(
    "--runtime",
    type=click.Choice(["onnx"]),
    default="onnx",
    show_default=True,
    help="Where a latency budget is measured: ONNX Runtime.",
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
    help="Fine-tune epochs after pruning and after weight sharing (latency: the first).",
)
@click.option(
    "--steps",
    default=8,
    show_default=True,
    help="Latency: each channel group may keep k/STEPS of its channels.",
)
@click.option(
    "--round-to",
    default=8,
    show_default=True,
    help="Latency: kept channels are a multiple of this (8 suits ONNX Runtime on CPUs).",
)
@click.option("--train-samples", type=int, help="Fine-tune on this many training samples only.")
@click.option("--dry-run", is_flag=True, help="State the expected time and stop.")
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
                 max_bytes: str | None, max_accuracy_drop: float | None,
                 max_latency_ms: float | None, speedup: float | None, runtime: str, policy: str,
                 epochs: str, steps: int, round_to: int, train_samples: int | None,
                 dry_run: bool, sparsities: str, widths: str, held_out: int,
                 scan_samples: int, threads: int | None, seed: int, resume: bool,
                 out: Path) -> None:  # fmt: skip
    """Compress CHECKPOINT to the smallest-loss model within a budget, checked on the file.

    Bytes or accuracy drop: per layer, every sparsity × k-means width is measured (encoded
    bytes; loss on held-out training samples), one option per layer is chosen jointly under the
    budget, the model is compressed and fine-tuned with distillation, and the delivered .dsz
    file is checked. Latency (--max-latency-ms or --speedup): channel widths per group are
    chosen on latency tables measured in ONNX Runtime, and the delivered .onnx file is timed
    side by side with the model's fp32 export.
    """
    from deepshrink import train
    from deepshrink.auto import auto_compress

    given = [max_bytes, max_accuracy_drop, max_latency_ms, speedup]
    if sum(v is not None for v in given) != 1:
        raise ConfigError("give exactly one budget: --max-bytes 30kB, --max-accuracy-drop 0.5, "
                          "--max-latency-ms 0.7 or --speedup 2")  # fmt: skip
    size = parse_bytes(max_bytes) if max_bytes is not None else None
    settings = _settings(epochs, threads, seed, train_samples)
    grid = {"sparsities": _numbers("--sparsities", sparsities, float),
            "bits": _numbers("--bits", widths, int)}  # fmt: skip
    latency = max_latency_ms is not None or speedup is not None
    if max_latency_ms is not None and not max_latency_ms > 0:
        raise ConfigError(f"--max-latency-ms must be more than 0 ms, got {max_latency_ms:g}")
    if speedup is not None and not speedup > 1:
        raise ConfigError(f"--speedup must be more than 1 (× faster than the fp32 export), got "
                          f"{speedup:g}")  # fmt: skip
    if latency and (steps < 1 or round_to < 1):
        raise ConfigError(f"--steps and --round-to must be at least 1, got {steps}, {round_to}")
    net, _ = train.load_checkpoint(checkpoint)
    bundle = _load_data(data_name, data_root)
    _check_fits(net, checkpoint.name, bundle)
    if dry_run:
        shape = {"latency": latency, "steps": steps, "round_to": round_to, "speedup": speedup}
        _dry_run(net, bundle, settings, scan_samples, held_out, grid, shape)
        return
    report = auto_compress(
        net, bundle, max_bytes=size, max_accuracy_drop=max_accuracy_drop, out=out,
        policy=policy, fine_tune=settings, held_out=held_out, scan_samples=scan_samples,  # type: ignore[arg-type]
        resume=resume, max_latency_ms=max_latency_ms, speedup=speedup, runtime=runtime,
        latency={"steps": steps, "round_to": round_to} if latency else None, **grid,
    )  # fmt: skip
    if latency:
        _echo_latency(report)
        click.echo(f"report: {Path(out) / 'auto.json'}")
        return
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


def _dry_run(net: Any, bundle: Any, settings: Any, scan_samples: int, held_out: int,
             grid: dict[str, Any], options: dict[str, Any]) -> None:  # fmt: skip
    from deepshrink.auto.estimate import expected_time

    expected = expected_time(net, bundle, settings=settings, scan_samples=scan_samples,
                             held_out=held_out, **grid, **options)  # fmt: skip
    click.echo(f"expected time: {expected.text()}")


def _echo_latency(report: Any) -> None:
    test = "n/a" if report.test_accuracy is None else f"{100 * report.test_accuracy:.2f}%"
    original = report.original_test_accuracy
    click.echo(
        f"delivered {report.path}: {report.speed['text']} than the fp32 export "
        f"({report.speed['baseline_cpu_ms']:.3f} → {report.speed['cpu_ms']:.3f} ms, batch "
        f"{report.budget['batch']}, ONNX Runtime, one thread); test accuracy {test} (fp32 "
        f"export {'n/a' if original is None else f'{100 * original:.2f}%'})"
    )
    click.echo("  widths: " + ", ".join(f"{g} {w}" for g, w in report.widths.items()))
