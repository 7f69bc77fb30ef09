"""Options and helpers shared by the command-line modules (``cli`` and ``cli_files``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from deepshrink.errors import ConfigError

PATH = click.Path(path_type=Path)


def data_options(function: Any) -> Any:
    """``--data`` and ``--data-root``, shared by the commands that read a dataset."""
    function = click.option(
        "--data-root", type=PATH, help="Dataset folder (default: $DEEPSHRINK_DATA, then cache)."
    )(function)
    return click.option(
        "--data", "data_name", default="mnist", show_default=True,
        help="Dataset: mnist, fashion-mnist, cifar10, digits.",
    )(function)  # fmt: skip


def load_data(name: str, root: Path | None, val_size: float = 0, seed: int = 0) -> Any:
    from deepshrink import data

    size: float = int(val_size) if val_size >= 1 else val_size
    return data.load(name, root=root, val_size=size, seed=seed)


def check_fits(model: Any, model_name: str, dataset: Any) -> None:
    expected = tuple(getattr(model, "input_shape", ()))
    given = tuple(dataset.input_shape)
    if expected and expected != given:
        shape = lambda s: "×".join(map(str, s))  # noqa: E731
        raise ConfigError(
            f"model {model_name!r} expects {shape(expected)} inputs but the data gives "
            f"{shape(given)}; pick a model made for this dataset (deepshrink models)"
        )
