"""Load, check and run a recipe; resume an interrupted run from its last finished stage.

Everything is validated before anything is written: the YAML, every stage's settings, the model,
the dataset, that the model fits the data, and that every include/exclude glob names a layer.
A run folder then holds ``recipe.yaml`` (the exact text run), ``state.json`` (finished stages),
``stages/NN-kind/`` (a checkpoint and a Report after each stage), and at the end
``metrics.json``, ``report.md``, ``report.html``, ``plots/*.png`` and the artifacts.

>>> import tempfile, pathlib
>>> folder = pathlib.Path(tempfile.mkdtemp())
>>> _ = (folder / "r.yaml").write_text('''
... version: 1
... name: doc
... latency: false
... model: {zoo: digits_mlp}
... data: {name: digits, train_limit: 256, test_limit: 64}
... stages:
...   - train: {epochs: 1}
...   - prune: {method: magnitude, sparsity: 0.5}
... ''')
>>> result = run_recipe(folder / "r.yaml", folder / "run", progress=False)
>>> names = sorted(p.name for p in (folder / "run").iterdir())
>>> round(result.final.sparsity, 1), names[:4]  # .lock: held while the run writes
(0.5, ['.lock', 'metrics.json', 'model.json', 'model.safetensors'])
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from deepshrink import _io
from deepshrink.errors import ConfigError, DeepshrinkError, FormatError, quoted
from deepshrink.eval import Report
from deepshrink.graph.coverage import coverage_of
from deepshrink.recipe.schema import Recipe, Stage, parse_recipe
from deepshrink.recipe.stages import Context, run_stage
from deepshrink.train import distributed

__all__ = [
    "Prepared",
    "RunResult",
    "check_out",
    "execute",
    "load_recipe",
    "prepare",
    "run_prepared",
    "run_recipe",
]

logger = logging.getLogger(__name__)

STATE = "state.json"


def load_recipe(path: str | Path) -> tuple[Recipe, str]:
    """Read and validate the recipe at ``path``; returns it with its exact text.

    Relative paths in the recipe (``model.checkpoint``, ``data.root``) are taken from the
    recipe's folder, so a recipe runs the same from any working directory.
    """
    from deepshrink.recipe._yaml import MAX_BYTES, load_yaml

    path = Path(path)
    try:
        with path.open("rb") as file:
            data = file.read(MAX_BYTES + 1)
        if len(data) > MAX_BYTES:
            raise ConfigError(f"recipe {path}: larger than {MAX_BYTES:,} bytes; not a recipe")
        text = data.decode("utf-8")
    except FileNotFoundError:
        raise ConfigError(f"recipe {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"recipe {path} cannot be read: {str(error)[:200]}") from None
    return resolve_paths(parse_recipe(load_yaml(text, str(path))), path.parent), text


def resolve_paths(recipe: Recipe, base: Path) -> Recipe:
    """Relative ``model.checkpoint`` and ``data.root`` are relative to the recipe's folder."""
    model, data = recipe.model, recipe.data
    if model.checkpoint is not None and not Path(model.checkpoint).is_absolute():
        model = model.model_copy(update={"checkpoint": str(base / model.checkpoint)})
    if model.factory is not None:  # a factory's module is looked for beside the recipe first
        root = base / model.root if model.root is not None else base
        model = model.model_copy(update={"root": str(root)})
    if data.root is not None and not Path(data.root).is_absolute():
        data = data.model_copy(update={"root": str(base / data.root)})
    return recipe.model_copy(update={"model": model, "data": data})


@dataclass
class Prepared:
    """A recipe with its model and data built and checked, ready to run."""

    recipe: Recipe
    text: str
    model: nn.Module
    data: Any

    def fresh_model(self) -> nn.Module:
        return build_model(self.recipe)


def build_model(recipe: Recipe) -> nn.Module:
    """The model the recipe starts from (zoo, checkpoint or factory), initialised from the seed."""
    torch.manual_seed(recipe.seed)
    spec = recipe.model
    if spec.zoo is not None:
        from deepshrink import zoo

        try:
            return zoo.create(spec.zoo, **spec.args)
        except (TypeError, ValueError, OverflowError) as error:  # arguments the model refuses
            raise ConfigError(f"args: {str(error)[:200]}") from None
    if spec.checkpoint is not None:
        from deepshrink.train import load_checkpoint

        return load_checkpoint(spec.checkpoint)[0]
    from deepshrink.recipe.schema import call_factory

    return call_factory(str(spec.factory), spec.args, spec.root)


def load_data(recipe: Recipe) -> Any:
    """The dataset, with ``train_limit``/``test_limit`` and the ``shift`` augmentation."""
    from deepshrink import data as ds_data

    spec = recipe.data
    val_size: float = int(spec.val_size) if spec.val_size >= 1 else spec.val_size
    bundle = ds_data.load(spec.name, root=spec.root, val_size=val_size, seed=recipe.seed)
    if spec.train_limit is not None:
        bundle.train = bundle.train.subset(torch.arange(min(spec.train_limit, len(bundle.train))))
    if spec.test_limit is not None:
        bundle.test = bundle.test.subset(torch.arange(min(spec.test_limit, len(bundle.test))))
    if spec.shift:
        from deepshrink.data.transforms import RandomCropPad

        bundle.train.transform = RandomCropPad(bundle.input_shape[-1], spec.shift)
    return bundle


def prepare(recipe: Recipe, text: str = "", *, allow_code: bool = False) -> Prepared:
    """Build the model and data and check everything a run will need, before anything runs.

    A recipe naming code (``model.factory``) is refused unless ``allow_code``: importing the
    factory's module runs it.
    """
    from deepshrink.recipe.schema import check_code

    check_code(recipe, allow_code)
    for stage in recipe.stages:
        _check_devices(stage)
    try:
        model = build_model(recipe)
    except DeepshrinkError as error:
        raise ConfigError(f"model: {error}") from None
    try:
        data = load_data(recipe)
    except DeepshrinkError as error:
        raise ConfigError(f"data: {error}") from None
    expected = tuple(getattr(model, "input_shape", ()) or ())
    if expected and expected != tuple(data.input_shape):
        raise ConfigError(
            f"model: expects inputs of shape {expected} but data {recipe.data.name!r} gives "
            f"{tuple(data.input_shape)}"
        )
    names = [name for name, _ in model.named_modules() if name]
    slots = _slot_names(model)
    for stage in recipe.stages:
        _check_globs(stage, names, slots)
    return Prepared(recipe, text, model, data)


def _slot_names(model: nn.Module) -> list[str]:
    from deepshrink.graph.layers import weight_slots

    return list(weight_slots(model))


def _check_globs(stage: Stage, names: list[str], slots: list[str]) -> None:
    shown = f"{', '.join(names[:12])}{' ...' if len(names) > 12 else ''}"
    for option in ("include", "exclude"):
        for glob in getattr(stage, option) or ():
            if not fnmatch.filter(names, glob):
                raise ConfigError(
                    f"{stage.where}.{option}: {quoted(glob, 80)} matches no layer; layer names "
                    f"are {shown}"
                )
    overrides = stage.raw.get("overrides")
    for glob in overrides if isinstance(overrides, dict) else ():
        if not any(fnmatch.fnmatchcase(n, str(glob)) for n in (*names, *slots)):
            raise ConfigError(
                f"{stage.where}.overrides: {quoted(glob, 80)} matches no layer; layer names "
                f"are {shown}"
            )


def _check_devices(stage: Stage) -> None:
    """Refuse a ``device:`` this machine does not have, before the run starts."""
    fits = [(stage.where, getattr(stage.settings, "fit", None))]
    iterative = getattr(stage.settings, "iterative", None)
    if iterative is not None:
        fits.append((f"{stage.where}.iterative.fit", iterative.fit))
    for where, fit in fits:
        device = fit.get("device") if isinstance(fit, dict) else getattr(fit, "device", None)
        if not isinstance(device, str) or device in ("auto", "cpu"):
            continue
        kind, _, index = device.partition(":")
        count = _device_count(kind)
        if count <= (int(index) if index else 0):
            raise ConfigError(
                f"{where}.device: {device!r} is not available on this machine ({count} {kind} "
                "devices); use device: auto or cpu"
            )


def _device_count(kind: str) -> int:
    if kind == "cuda":
        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    if kind == "mps":
        return int(torch.backends.mps.is_available())
    xpu = getattr(torch, "xpu", None)
    return xpu.device_count() if xpu is not None and xpu.is_available() else 0


@dataclass
class RunResult:
    """The reports of a finished run: the baseline (the model before the first compressing
    stage), the entries of each stage, and the final model."""

    out: Path
    baseline: Report
    stages: list[dict[str, Any]]
    final: Report
    model: nn.Module
    #: baseline → final, with the speed timed side by side when the recipe measures latency
    comparison: Any = None


def recipe_digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def check_out(out: Path, digest: str, resume: bool) -> dict[str, Any] | None:
    """The saved state to resume from, or None for a new run; refuse to overwrite a run.

    Under torchrun only rank 0 checks (and then tells the others: :func:`run_prepared`).
    """
    if _io.follower():
        return None
    state_file = out / STATE
    if resume:
        if not state_file.is_file():
            return None
        try:
            state = json.loads(state_file.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as error:
            raise FormatError(
                f"{state_file} is damaged: {str(error)[:120]}; start again without --resume"
            ) from None
        if not isinstance(state, dict) or not isinstance(state.get("done"), list):
            raise FormatError(f"{state_file} is damaged; start again without --resume")
        if state.get("recipe_sha256") != digest:
            raise ConfigError(
                f"{out} was run with another recipe; --resume needs the same recipe text"
            )
        return state
    if out.is_dir() and any(p.name != _io.LOCK for p in out.iterdir()):
        raise ConfigError(
            f"{out} is not empty; pass --resume to continue that run or choose another --out"
        )
    return None


def run_recipe(
    path: str | Path,
    out: str | Path,
    *,
    resume: bool = False,
    progress: bool = True,
    allow_code: bool = False,
) -> RunResult:
    """Run the recipe at ``path`` into the folder ``out`` (see the module docstring).

    ``allow_code``: run a recipe that names code (``model.factory``); refused otherwise.
    """
    recipe, text = load_recipe(path)
    return run_prepared(prepare(recipe, text, allow_code=allow_code), out, resume=resume,
                        progress=progress)  # fmt: skip


def run_prepared(
    prepared: Prepared, out: str | Path, *, resume: bool = False, progress: bool = True
) -> RunResult:
    """Run a prepared recipe into ``out`` while holding the folder's lock.

    Everything is checked before the first byte is written: ``out`` can be a writable folder,
    no live run holds it, and it is empty or (``resume``) holds a run of the same recipe. On
    resume, temporary files an interrupted write left behind are removed.
    """
    out = Path(out)
    digest = recipe_digest(prepared.text)
    if distributed.join() is not None:
        return _run_ranks(prepared, out, digest, resume, progress)
    with contextlib.ExitStack() as stack:
        state = _claim(stack, out, digest, resume)
        return execute(prepared, out, state, progress=progress)


def _claim(stack: contextlib.ExitStack, out: Path, digest: str, resume: bool) -> Any:
    """Rank 0's part of :func:`run_prepared`: the checks, the lock (held by ``stack``), the
    saved state."""
    _io.check_writable_folder(out)
    _io.check_unlocked(out)
    check_out(out, digest, resume)
    stack.enter_context(_io.folder_lock(out))
    state = check_out(out, digest, resume)
    if resume:
        for path in _io.remove_stale_tmp(out):
            logger.info("removed %s, left by an interrupted write", path)
    return state


def _run_ranks(
    prepared: Prepared, out: Path, digest: str, resume: bool, progress: bool
) -> RunResult:
    """:func:`run_prepared` under torchrun: rank 0 checks, locks and writes ``out``; every
    rank trains; a lost process fails every rank with one message."""
    main = distributed.is_main()
    with contextlib.ExitStack() as stack:
        claimed, failure = {"error": None, "state": None}, None
        if main:
            try:
                claimed["state"] = _claim(stack, out, digest, resume)
            except DeepshrinkError as error:
                claimed, failure = {"error": str(error)}, error
        claimed = distributed.share(claimed)
        if failure is not None:
            raise failure
        if claimed["error"] is not None:
            raise ConfigError(f"rank 0 refused the run: {claimed['error']}")
        with distributed.quiet(), distributed.lost_peers(out):
            return execute(prepared, out, claimed["state"], progress=progress and main)


def execute(
    prepared: Prepared, out: Path, state: dict[str, Any] | None, *, progress: bool = True
) -> RunResult:
    """Run (or continue) the stages of a prepared recipe."""
    from deepshrink.recipe.outputs import finish_ranks, restore, start, workspace

    recipe = prepared.recipe
    with workspace(out) as folder:
        context = Context(recipe, prepared.model, prepared.data, folder, progress=progress)
        context.fresh = prepared.fresh_model
        if state is None:
            state = start(context, prepared.text, recipe_digest(prepared.text))
        else:
            restore(context, state, out)
        for stage in recipe.stages[len(state["done"]) :]:
            _run_stage(context, stage, state)
        if distributed.is_main():
            logger.info("writing the report, plots and artifacts in %s", out)
        baseline, final, comparison, done = finish_ranks(context, state)
        return RunResult(out, baseline, done, final, context.model, comparison)


def _run_stage(context: Context, stage: Stage, state: dict[str, Any]) -> None:
    """Run one stage; on rank 0 checkpoint and measure it and record it in ``state.json``."""
    from deepshrink.recipe.outputs import INITIAL, save_stage
    from deepshrink.recipe.stages import compresses

    if compresses(stage) and "baseline" not in state:
        state["baseline"] = state["done"][-1]["label"] if state["done"] else INITIAL
    logger.info("stage %s: started", stage.label)
    began, seen = time.perf_counter(), len(coverage_of(context.model))
    try:
        summary = run_stage(context, stage)
    except DeepshrinkError as error:
        raise ConfigError(f"{stage.where}: {error}") from None
    if stage.kind not in ("train", "fine_tune"):  # compression decided once, on rank 0
        distributed.adopt_main(context.model, stage.where)
    distributed.check_agreement(context.model, stage.where)
    if not distributed.is_main():
        state["done"].append({"label": stage.label, "kind": stage.kind})
        distributed.barrier()  # rank 0 saves and measures the stage meanwhile
        return
    summary |= coverage_summary(coverage_of(context.model)[seen:])
    state["done"].append(save_stage(context, stage.label, summary, stage.kind))
    logger.info(stage_line(state["done"][-1], time.perf_counter() - began))
    _io.atomic_write_json(context.out / STATE, state)
    distributed.barrier()


def stage_line(entry: dict[str, Any], seconds: float) -> str:
    """The log line at a stage's end: its label, time, accuracy, weights and summary scalars."""
    report = entry["report"]
    text = f"stage {entry['label']}: done in {seconds:.1f}s"
    if report.get("accuracy") is not None:
        text += f", accuracy {report['accuracy']:.2%}"
    params, nonzero = report.get("parameters"), report.get("nonzero_parameters")
    if params:
        text += f", {params:,} parameters ({1 - nonzero / params:.1%} zero)"
    scalars = {k: v for k, v in entry["summary"].items() if isinstance(v, (str, int, float))}
    if scalars:
        text += "; " + ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                                 for k, v in scalars.items())  # fmt: skip
    return text


def coverage_summary(records: list[Any]) -> dict[str, Any]:
    """A stage summary's coverage fields from the coverage records its verbs left (the last):
    ``coverage`` ("97.3% of weights", shown in reports) and ``coverage_detail`` (the record)."""
    if not records:
        return {}
    last = records[-1]
    text = f"{last.fraction:.1%} of weights"
    if last.skipped:
        text += f", {len(last.skipped)} layers skipped"
    return {"coverage": text, "coverage_detail": last.to_dict()}
