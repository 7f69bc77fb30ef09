"""Run one recipe over a grid of settings and collect the results in one table and plot.

A setting is addressed by its key path in the recipe, as errors print it:
``stages[1].prune.sparsity=0.5,0.8,0.9``. Several settings make a grid (every combination).
Every variant is validated before the first one runs.

>>> parse_setting("stages[1].prune.sparsity=0.5,0.9")
(['stages', 1, 'prune', 'sparsity'], [0.5, 0.9])
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deepshrink import _io
from deepshrink._trials import check_backend, map_trials, ray_session
from deepshrink.errors import ConfigError, quoted
from deepshrink.recipe.run import Prepared, RunResult, execute, prepare, resolve_paths
from deepshrink.recipe.schema import parse_recipe

__all__ = ["MAX_VARIANTS", "parse_setting", "sweep_recipe"]

#: Most variants one sweep may run.
MAX_VARIANTS = 256

_PART = re.compile(r"([A-Za-z_][A-Za-z_0-9]*)|\[(\d+)\]")


def parse_setting(text: str) -> tuple[list[str | int], list[Any]]:
    """``path=v1,v2,...`` → (key path, values parsed as YAML scalars)."""
    from deepshrink.recipe._yaml import load_yaml

    path_text, sep, values_text = text.partition("=")
    if not sep or not values_text or len(text) > 10_000:
        raise ConfigError(f"--set {quoted(text)}: expected KEY.PATH=VALUE[,VALUE...]")
    path: list[str | int] = []
    for part in path_text.replace("].", "]").split("."):
        pieces = _PART.findall(part)
        if not pieces or "".join(n or f"[{i}]" for n, i in pieces) != part:
            raise ConfigError(
                f"--set {quoted(text)}: {quoted(part, 60)} is not a key or key[index]"
            )
        path += [name if name else int(index) for name, index in pieces]
    values = [load_yaml(v, f"--set {path_text[:100]}", path) for v in values_text.split(",")]
    return path, values


def _assign(document: Any, path: list[str | int], value: Any, text: str) -> None:
    node = document
    for key in path[:-1]:
        try:
            node = node[key]
        except (KeyError, IndexError, TypeError):
            raise ConfigError(
                f"--set {quoted(text)}: the recipe has no {quoted(key, 60)} there"
            ) from None
    last = path[-1]
    if isinstance(node, dict) or (
        isinstance(node, list) and isinstance(last, int) and last < len(node)
    ):
        node[last] = value  # type: ignore[index]
    else:
        raise ConfigError(
            f"--set {quoted(text)}: cannot set {quoted(last, 60)} in a {type(node).__name__}"
            + (f" of {len(node)} items" if isinstance(node, list) else "")
        )


def variants(document: dict[str, Any], settings: list[str]) -> list[tuple[str, dict[str, Any]]]:
    """Every combination of the settings applied to a copy of ``document``, with a label (a
    harmless folder name, unique in the sweep)."""
    parsed = [(text, *parse_setting(text)) for text in settings]
    count = math.prod(len(values) for _, _, values in parsed)
    if count > MAX_VARIANTS:
        raise ConfigError(f"--set: {count:,} variants; a sweep runs at most {MAX_VARIANTS}")
    result, used = [], set()
    for combination in itertools.product(*(values for _, _, values in parsed)):
        variant = copy.deepcopy(document)
        labels = []
        for (text, path, _), value in zip(parsed, combination, strict=True):
            _assign(variant, path, value, text)
            labels.append(f"{path[-1]}={value}")
        label = _io.safe_name("_".join(labels), "variant")
        if label in used:
            label = f"{label[:90]}-{len(result) + 1}"
        used.add(label)
        result.append((label, variant))
    return result


@dataclass(frozen=True)
class _Variant:
    """One trial of a sweep: the variant's recipe text and where it runs. ``prepared`` (its
    model and data, built while checking) is reused by the serial backend only: a Ray worker
    builds them again from the text, the same way, rather than receive them."""

    label: str
    text: str
    base: str
    folder: str
    allow_code: bool
    progress: bool = False
    prepared: Prepared | None = None


def _prepare(text: str, base: str, allow_code: bool) -> Prepared:
    from deepshrink.recipe._yaml import load_yaml

    recipe = resolve_paths(parse_recipe(load_yaml(text, "variant")), Path(base))
    return prepare(recipe, text, allow_code=allow_code)


def _run_variant(variant: _Variant) -> dict[str, Any]:
    """Run one variant into its folder (in this process or a Ray worker); its table row."""
    prepared = variant.prepared or _prepare(variant.text, variant.base, variant.allow_code)
    result = execute(prepared, Path(variant.folder), None, progress=variant.progress)
    return _row(variant.label, result)


def sweep_recipe(
    path: str | Path,
    settings: list[str],
    out: str | Path,
    *,
    progress: bool = True,
    allow_code: bool = False,
    backend: str = "serial",
    address: str | None = None,
    workers: int | None = None,
    gpus: float = 0,
) -> list[dict[str, Any]]:
    """Run every variant into ``out/<label>/``; write ``sweep.json``, ``sweep.md``, a plot.

    Every variant is validated and ``out`` checked before anything is written; ``allow_code``
    as in :func:`~deepshrink.recipe.run.run_recipe`. A variant that fails while it runs is a
    row with ``status: failed`` and its error; the others still run. ``backend="ray"`` runs
    each variant as a Ray task (``address``, ``workers``, ``gpus`` per variant: see
    :func:`deepshrink._trials.map_trials`).
    """
    import yaml

    from deepshrink.recipe._yaml import load_yaml
    from deepshrink.recipe.run import load_recipe

    check_backend(backend, address, workers, gpus)
    _, text = load_recipe(path)
    document, out = load_yaml(text, str(path)), Path(out)
    # absolute: a worker of a Ray cluster does not share this working directory
    base, folder = str(Path(path).parent.absolute()), out.absolute()
    trials = []
    for label, variant in variants(document, settings):
        variant_text = yaml.safe_dump(variant, sort_keys=False)
        try:
            prepared = _prepare(variant_text, base, allow_code)
        except ConfigError as error:
            raise ConfigError(f"variant {label}: {error}") from None
        serial = backend == "serial"
        trials.append(_Variant(label, variant_text, base, str(folder / label), allow_code,
                               progress and serial, prepared if serial else None))  # fmt: skip
    _io.check_writable_folder(out)
    _io.check_unlocked(out)
    _check_empty(out)
    # Ray starts (and its GPUs are checked) before anything is written
    session = ray_session(address, workers, gpus) if backend == "ray" else contextlib.nullcontext()
    with session, _io.folder_lock(out):
        _check_empty(out)
        done = map_trials(_run_variant, trials, backend=backend, address=address,
                          workers=workers, gpus=gpus, label=lambda v: v.label)  # fmt: skip
        rows = [t.value if t.ok else _failed_row(t.item.label, str(t.error)) for t in done]
        _write_summary(out, rows)
    return rows


def _check_empty(out: Path) -> None:
    if out.is_dir() and any(p.name != _io.LOCK for p in out.iterdir()):
        raise ConfigError(f"{out} is not empty; choose another --out")


def _row(label: str, result: RunResult) -> dict[str, Any]:
    final = result.final
    return {
        "label": label,
        "status": "ok",
        "error": None,
        "accuracy": final.accuracy,
        "bytes": final.file_bytes,
        "gzip_bytes": final.gzip_bytes,
        "parameters": final.parameters,
        "nonzero_parameters": final.nonzero_parameters,
        "macs": final.macs,
        "baseline_accuracy": result.baseline.accuracy,
    }


def _failed_row(label: str, error: str) -> dict[str, Any]:
    metrics = ("accuracy", "bytes", "gzip_bytes", "parameters", "nonzero_parameters", "macs")
    return {"label": label, "status": "failed", "error": error,
            **dict.fromkeys(metrics), "baseline_accuracy": None}  # fmt: skip


def _write_summary(out: Path, rows: list[dict[str, Any]]) -> None:
    from deepshrink.eval import _units
    from deepshrink.report.plots import plot_pareto

    _io.atomic_write_json(out / "sweep.json", rows)
    header = ("variant", "top-1", "baseline top-1", "file", "gzip", "non-zero", "MACs", "status")
    shown = lambda value, unit: "—" if value is None else unit(value)  # noqa: E731
    table = [
        (r["label"], shown(r["accuracy"], _units.percent),
         shown(r["baseline_accuracy"], _units.percent), shown(r["bytes"], _units.size),
         shown(r["gzip_bytes"], _units.size), shown(r["nonzero_parameters"], _units.count),
         shown(r["macs"], _units.macs), _status(r))
        for r in rows
    ]  # fmt: skip
    points = [{**r, "bytes": r["gzip_bytes"]} for r in rows if r["status"] == "ok"]
    plot = plot_pareto(points, out / "pareto.png", xlabel="final model, gzip -9 bytes (kB, log)")
    text = f"# Sweep\n\n{_units.table(header, table)}\n"
    if plot is not None:
        text += "\n![Pareto](pareto.png)\n"
    _io.atomic_write_bytes(out / "sweep.md", text.encode("utf-8"))


def _status(row: dict[str, Any]) -> str:
    """``ok``, or ``failed: <error>`` made safe for one Markdown table cell."""
    if row["status"] == "ok":
        return "ok"
    return "failed: " + str(row["error"]).replace("|", "/").replace("`", "'")
