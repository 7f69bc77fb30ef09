"""The ``deepshrink sweep`` command's trial backends: one after another, or Ray tasks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from deepshrink._trials import BACKENDS

__all__ = ["backend_options", "check_serial_options", "run_sweep"]


def backend_options(function: Any, gpus: bool = True) -> Any:
    """``--backend``, ``--address``, ``--workers`` and (with ``gpus``) ``--gpus-per-trial``."""
    options = [
        click.option(
            "--backend",
            type=click.Choice(BACKENDS),
            default="serial",
            show_default=True,
            help="Run the trials one after another, or as Ray tasks (pip install "
            "'deepshrink[ray]').",
        ),
        click.option(
            "--address",
            metavar="HOST:PORT",
            help="Ray cluster to use (ray start --head prints it); default: RAY_ADDRESS, else "
            "a local Ray started for the command.",
        ),
        click.option(
            "--workers",
            type=click.IntRange(1, 4096),
            metavar="N",
            help="Trials run at once on Ray (default: the CPUs of the local Ray, or all).",
        ),
        click.option(
            "--gpus-per-trial",
            "gpus",
            type=click.FloatRange(0, 64),
            metavar="GPUS",
            default=0.0,
            help="GPUs Ray reserves for each variant (0.5: two per GPU); Ray hides GPUs from a "
            "task that asks for none.",
        ),
    ]
    if not gpus:
        options.pop()
    for option in reversed(options):
        function = option(function)
    return function


def check_serial_options(backend: dict[str, Any]) -> None:
    """The Ray-only options are refused with the serial backend, not ignored."""
    if backend["backend"] == "serial" and any(
        backend.get(name) for name in ("address", "workers", "gpus")
    ):
        names = "--address, --workers and --gpus-per-trial" if "gpus" in backend else (
            "--address and --workers")  # fmt: skip
        raise click.UsageError(f"{names} need --backend ray")


def run_sweep(
    recipe: Path, settings: tuple[str, ...], out: Path | None, allow_code: bool, **backend: Any
) -> int:
    """Run the sweep, print its table; exit code 1 when a variant failed (the others ran)."""
    from rich.console import Console

    from deepshrink._io import check_writable_folder, safe_name
    from deepshrink.recipe import load_recipe
    from deepshrink.recipe.sweep import sweep_recipe

    if out is not None:
        check_writable_folder(out, "--out")
    name = safe_name(load_recipe(recipe)[0].name, "recipe")
    folder = out if out is not None else Path("runs") / f"{name}-sweep"
    check_writable_folder(folder, "--out")
    check_serial_options(backend)
    rows = sweep_recipe(recipe, list(settings), folder, allow_code=allow_code, **backend)
    console = Console()
    console.print((folder / "sweep.md").read_text(encoding="utf-8"))
    failed = [r["label"] for r in rows if r["status"] != "ok"]
    if failed:
        console.print(f"{len(failed)} of {len(rows)} variants failed: {', '.join(failed)}")
    return 1 if failed else 0
