"""The ``deepshrink`` command line: a thin layer over the Python API.

User mistakes (unknown model, missing data, bad values) print one ``error:`` line on stderr and
exit with code 2; they never show a traceback.
"""

from __future__ import annotations

import errno
import logging
import sys
from functools import partial
from pathlib import Path
from typing import Any

import click

from deepshrink._cli_common import PATH as _PATH
from deepshrink._cli_common import check_fits as _check_fits
from deepshrink._cli_common import data_options
from deepshrink._cli_common import load_data as _load_data
from deepshrink.cli_auto import auto_command
from deepshrink.cli_files import eval_command, export_command, inspect_command
from deepshrink.cli_sweep import backend_options, check_serial_options, run_sweep
from deepshrink.errors import ConfigError, DeepshrinkError, one_line

#: A recipe that names code (model.factory) runs only with this flag.
_ALLOW_CODE = click.option(
    "--allow-code",
    is_flag=True,
    help="Allow a recipe that names Python code (model.factory) to import and run it "
    "(or set DEEPSHRINK_ALLOW_CODE=1). Only for recipes you trust.",
)


def _writable(folder: Path, option: str = "--out") -> None:
    from deepshrink._io import check_writable_folder

    check_writable_folder(folder, option)


def _console(stderr: bool = False) -> Any:
    from rich.console import Console

    return Console(stderr=stderr)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="deepshrink")
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
@click.option("-q", "--quiet", is_flag=True, help="Warnings and errors only.")
def app(verbose: bool, quiet: bool) -> None:
    """Make trained PyTorch networks small and fast, and measure it."""
    from deepshrink._progress import log_handler

    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    handler = log_handler()  # rich on a terminal, plain timestamped lines when redirected
    logging.basicConfig(level=logging.WARNING, handlers=[handler], format="%(message)s", force=True)
    logging.getLogger("deepshrink").setLevel(level)


@app.command("models")
def models_command() -> None:
    """List the model zoo."""
    from rich.table import Table

    from deepshrink import zoo
    from deepshrink.eval import count_parameters

    table = Table("model", "params", "input", "description")
    for name in zoo.list():
        model = zoo.create(name)
        shape = "×".join(str(d) for d in model.input_shape)
        table.add_row(name, f"{count_parameters(model):,}", shape, zoo.describe(name))
    _console().print(table)


@app.command("info")
@click.argument("model")
def info_command(model: str) -> None:
    """Show MODEL's layers: type, weight shape, parameters and MACs (batch 1)."""
    from rich.table import Table

    from deepshrink import zoo
    from deepshrink.eval import count_macs, count_parameters, per_layer_macs

    net = zoo.create(model)
    inputs = net.example_inputs()
    macs = per_layer_macs(net, inputs)
    table = Table("layer", "type", "weight shape", "params", "MACs", title=model)
    for name, module in net.named_modules():
        if not name or any(True for _ in module.children()):
            continue
        params = sum(p.numel() for p in module.parameters(recurse=False))
        weight = getattr(module, "weight", None)
        shape = "×".join(str(d) for d in weight.shape) if weight is not None else ""
        table.add_row(name, type(module).__name__, shape, f"{params:,}", f"{macs.get(name, 0):,}")
    console = _console()
    console.print(table)
    console.print(f"total: {count_parameters(net):,} params, {count_macs(net, inputs):,} MACs")


@app.command("train")
@click.argument("model")
@data_options
@click.option("--epochs", default=10, show_default=True, help="Passes over the training set.")
@click.option("--out", type=_PATH, default=Path("runs/train"), show_default=True)
@click.option("--lr", default=0.05, show_default=True, help="Peak learning rate.")
@click.option("--batch-size", default=128, show_default=True)
@click.option("--optimizer", default="sgd", show_default=True, help="sgd, adam or adamw.")
@click.option(
    "--schedule", default="cosine", show_default=True, help="cosine, step, inv, constant."
)
@click.option("--weight-decay", default=5e-4, show_default=True)
@click.option("--val-size", default=0.0, help="Validation split: a count or a fraction.")
@click.option("--seed", default=0, show_default=True)
@click.option("--threads", type=int, help="torch CPU threads.")
@click.option("--resume", is_flag=True, help="Continue an interrupted run in --out.")
def train_command(model: str, data_name: str, data_root: Path | None, out: Path,
                  val_size: float, resume: bool, **settings: Any) -> None:  # fmt: skip
    """Train zoo MODEL on a dataset; checkpoints go to OUT, then its Report is printed."""
    import torch

    from deepshrink import eval as ds_eval
    from deepshrink import train, zoo
    from deepshrink._io import check_unlocked, folder_lock
    from deepshrink.train.distributed import is_main

    _writable(out)
    config = train.build_config(None, settings)
    bundle = _load_data(data_name, data_root, val_size, config.seed)
    torch.manual_seed(config.seed)
    net = zoo.create(model, num_classes=bundle.num_classes)
    _check_fits(net, model, bundle)
    check_unlocked(out)
    with folder_lock(out):  # one training run per folder
        train.fit(net, bundle, config, checkpoint_dir=out / "state", resume=resume)
    if not is_main():  # under torchrun, rank 0 alone reports and writes
        return
    result = ds_eval.report(net, bundle.test, name=model, threads=config.threads)
    metadata = {"data": data_name, "report": result.to_dict(), "fit": config.model_dump()}
    path = train.save_checkpoint(net, out / "model", metadata=metadata)
    _console().print(result.to_markdown())
    _console().print(f"saved {path}")


@app.command("demo")
@click.option("--out", type=_PATH, default=Path("runs/demo"), show_default=True)
@click.option("--epochs", default=30, show_default=True, help="Training epochs.")
def demo_command(out: Path, epochs: int) -> None:
    """Train the demo model on scikit-learn's bundled 8×8 digits (no files needed) and report."""
    from deepshrink.demo import run_demo

    _writable(out)
    outcome = run_demo(out, epochs=epochs)
    console = _console()
    console.print(outcome.markdown)
    console.print(f"run folder: {out} (checkpoint, metrics.json, report.md)")


@app.command("run")
@click.argument("recipe", type=_PATH)
@click.option("--out", type=_PATH, help="Run folder (default: runs/<recipe name>).")
@click.option("--resume", is_flag=True, help="Continue an interrupted run in --out.")
@_ALLOW_CODE
def run_command(recipe: Path, out: Path | None, resume: bool, allow_code: bool) -> None:
    """Run RECIPE (YAML): every stage, a checkpoint and Report after each, report and plots."""
    from deepshrink._io import check_unlocked, safe_name
    from deepshrink.recipe import load_recipe, prepare
    from deepshrink.recipe.run import check_out, recipe_digest, run_prepared
    from deepshrink.train.distributed import is_main

    if out is not None:
        _writable(out)
    parsed, text = load_recipe(recipe)
    folder = out if out is not None else Path("runs") / safe_name(parsed.name, "recipe")
    _writable(folder)
    check_unlocked(folder)  # the cheap refusals first, before the model and data are built
    check_out(folder, recipe_digest(text), resume)
    prepared = prepare(parsed, text, allow_code=allow_code)
    result = run_prepared(prepared, folder, resume=resume)
    if not is_main():  # under torchrun, rank 0 alone prints
        return
    console = _console()
    console.print(result.comparison.to_markdown())
    console.print(f"run folder: {folder} (report.md, report.html, metrics.json, plots/)")


def _print_recipe_plan(recipe: Path, allow_code: bool) -> None:
    from rich.table import Table

    from deepshrink.recipe import load_recipe, prepare
    from deepshrink.recipe.plan import plan_recipe

    parsed, text = load_recipe(recipe)
    console = _console()
    for step in plan_recipe(prepare(parsed, text, allow_code=allow_code)):
        console.print(
            f"[bold]{step.label}[/bold] {step.action}: {step.parameters:,} params, "
            f"{step.nonzero:,} non-zero, {step.macs:,} MACs"
            + (f"; covers {step.coverage}" if step.coverage else "")
        )
        skipped = {k: v for k, v in step.skipped.items() if v != "not selected"}
        for name, why in list(skipped.items())[:12]:
            console.print(f"  skipped {name}: {why}")
        if len(skipped) > 12:
            console.print(f"  ... and {len(skipped) - 12} more skipped layers")
        if step.layers:
            table = Table("layer", "weights", "MACs")
            for row in step.layers:
                table.add_row(*row)
            console.print(table)


@app.command("sweep")
@click.argument("recipe", type=_PATH)
@click.option(
    "--set",
    "settings",
    multiple=True,
    required=True,
    help="KEY.PATH=V1,V2,... e.g. stages[1].prune.sparsity=0.5,0.9 (repeat for a grid).",
)
@click.option("--out", type=_PATH, help="Sweep folder (default: runs/<recipe name>-sweep).")
@backend_options
@_ALLOW_CODE
def sweep_command(
    recipe: Path, settings: tuple[str, ...], out: Path | None, allow_code: bool, **backend: Any
) -> int:
    """Run RECIPE over a grid of settings; a table and a size-accuracy Pareto plot.

    A variant that fails is a row of the table with its error; the others run (exit code 1).
    """
    return run_sweep(recipe, settings, out, allow_code, **backend)


@app.command("sensitivity")
@click.argument("checkpoint", type=_PATH)
@data_options
@click.option("--sparsities", default="0.3,0.5,0.7,0.8,0.9,0.95,0.98", show_default=True)
@click.option(
    "--tolerance",
    default=0.005,
    show_default=True,
    help="Accuracy drop allowed for a suggested per-layer sparsity (fraction).",
)
@click.option("--out", type=_PATH, default=Path("runs/sensitivity"), show_default=True)
@partial(backend_options, gpus=False)
def sensitivity_command(checkpoint: Path, data_name: str, data_root: Path | None, sparsities: str,
                        tolerance: float, out: Path, **backend: Any) -> None:  # fmt: skip
    """Prune each layer of CHECKPOINT alone at each sparsity; plot and suggest per-layer targets."""
    from deepshrink import _io, train
    from deepshrink.eval.sensitivity import sensitivity
    from deepshrink.report.plots import plot_sensitivity

    _writable(out)
    try:
        values = tuple(float(v) for v in sparsities.split(","))
    except ValueError:
        raise ConfigError(
            f"--sparsities: expected numbers like 0.5,0.9, got {sparsities!r}"
        ) from None
    check_serial_options(backend)
    net, _ = train.load_checkpoint(checkpoint)
    bundle = _load_data(data_name, data_root)
    result = sensitivity(net, bundle.test, values, **backend)
    suggested = result.suggest(tolerance)
    _io.atomic_write_json(out / "sensitivity.json", {**result.to_dict(), "suggested": suggested,
                                                      "tolerance": tolerance})  # fmt: skip
    plot_sensitivity(result, out / "sensitivity.png", suggested)
    from rich.table import Table

    columns = [f"{100 * s:g}%" for s, _ in next(iter(result.curves.values()))]
    title = f"top-1 with one layer pruned (dense {100 * result.dense_accuracy:.2f}%)"
    table = Table("layer", *columns, "suggested", title=title)
    for layer, curve in result.curves.items():
        table.add_row(layer, *[f"{100 * a:.2f}" for _, a in curve], f"{suggested[layer]:g}")
    _console().print(table)
    _console().print(
        f"recipe overrides: {suggested}\nwritten: {out}/sensitivity.json, sensitivity.png"
    )


def _model_or_checkpoint(source: str) -> Any:
    """A zoo model by name, or the model of a ``.safetensors`` checkpoint (rebuilt)."""
    from deepshrink import train, zoo

    if source.endswith((".safetensors", ".json")) or Path(source).is_file():
        return train.load_checkpoint(Path(source).with_suffix(".safetensors"))[0]
    return zoo.create(source)


@app.command("plan")
@click.argument("source", metavar="RECIPE_OR_MODEL")
@click.option("--ratio", type=float, help="Fraction of channels to remove (model plans).")
@click.option(
    "--criterion",
    default="l1",
    show_default=True,
    help="l1, l2, bn_scale, fpgm, random (taylor/apoz need data: use the API).",
)
@click.option("--scope", default="local", show_default=True, help="local or global.")
@click.option("--ignore", multiple=True, help="Layer glob never pruned (repeatable).")
@click.option("--round-to", default=1, show_default=True, help="Kept channels multiple.")
@click.option("--heads", default=0.0, show_default=True,
              help="Fraction of whole attention heads to remove (transformers).")  # fmt: skip
@click.option("--json", "json_out", type=_PATH, help="Also write the plan to this JSON file.")
@_ALLOW_CODE
def plan_command(source: str, json_out: Path | None, ignore: tuple[str, ...], allow_code: bool,
                 **settings: Any) -> None:  # fmt: skip
    """Dry run; nothing is changed or trained.

    For a recipe (.yaml): per stage and layer, what it does, with params, non-zeros and MACs.
    For a zoo model or checkpoint with --ratio: the channel-pruning plan, per layer old → new
    channels and MACs (what ``prune_`` with ChannelPruning would apply).
    """
    if source.endswith((".yaml", ".yml")):
        _print_recipe_plan(Path(source), allow_code)
        return
    if json_out is not None:
        if json_out.is_dir():
            raise ConfigError(f"--json {json_out}: is a folder; name a file")
        _writable(json_out.parent, "--json")
    if settings["ratio"] is None:
        raise ConfigError(f"plan {source}: give --ratio (fraction of channels to remove) for a "
                          "model plan, or a .yaml recipe")  # fmt: skip
    from rich.table import Table

    from deepshrink._io import atomic_write_json
    from deepshrink.prune import ChannelPruning, plan_channel_pruning

    net = _model_or_checkpoint(source)
    config = ChannelPruning(ignore=list(ignore), **settings)
    plan = plan_channel_pruning(net, config, net.example_inputs())
    table = Table("layer", "type", "in", "out", "MACs", "MACs after", title=f"plan: {source}")
    for row in plan["layers"]:
        arrow = lambda pair: f"{pair[0]}" if pair[0] == pair[1] else f"{pair[0]} → {pair[1]}"  # noqa: E731
        table.add_row(row["name"], row["type"], arrow(row["in"]), arrow(row["out"]),
                      f"{row['macs'][0]:,}", f"{row['macs'][1]:,}")  # fmt: skip
    console = _console()
    console.print(table)
    for root, why in plan["skipped"].items():
        console.print(f"kept whole: {root} ({why})")
    (params, params_after), (macs, macs_after) = plan["totals"]["params"], plan["totals"]["macs"]
    console.print(
        f"params {params:,} → {params_after:,} ({params_after / params:.1%}), "
        f"MACs {macs:,} → {macs_after:,} ({macs_after / macs:.1%})"
    )
    if json_out is not None:
        atomic_write_json(json_out, plan)
        console.print(f"saved {json_out}")


app.add_command(eval_command)
app.add_command(inspect_command)
app.add_command(export_command)
app.add_command(auto_command)


#: Errors of the environment, not of deepshrink: exit 2 with one line, not a traceback.
_USER_ERRNOS = {
    errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.ENOTDIR,
    errno.EISDIR, errno.ENAMETOOLONG, errno.EEXIST, errno.ENOENT,
}  # fmt: skip


#: Characters of an error message, so that the ``error: ...`` line is at most 300.
_LINE = 300 - len("error: ")


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``deepshrink`` console script; returns the exit code."""
    try:
        result = app.main(args=argv, prog_name="deepshrink", standalone_mode=False)
    except DeepshrinkError as exc:
        print(f"error: {one_line(str(exc), _LINE)}", file=sys.stderr)
        return 2
    except OSError as exc:  # the disk or the file system refused a write the checks allowed
        if exc.errno not in _USER_ERRNOS:
            raise
        print(f"error: {one_line(str(exc), _LINE)}", file=sys.stderr)
        return 2
    except click.exceptions.Abort:
        print("aborted", file=sys.stderr)
        return 130
    except click.exceptions.NoArgsIsHelpError as exc:
        print(exc.format_message())
        return 0
    except click.ClickException as exc:
        print(f"error: {one_line(exc.format_message(), _LINE)}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    raise SystemExit(main())
