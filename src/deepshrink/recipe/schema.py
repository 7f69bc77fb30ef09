"""The recipe schema: what a YAML recipe may say, validated strictly before anything runs.

A recipe names a model, a dataset and an ordered list of stages. Each stage is a mapping with one
key, the stage kind (``train``, ``fine_tune``, ``prune``, ``factorize``, ``quantize``,
``encode``, ``export``, ``evaluate``), whose value holds its settings. Every error names the path
of the offending key, e.g. ``stages[2].prune.sparsity``.

>>> recipe = parse_recipe({
...     "version": 1, "name": "tiny",
...     "model": {"zoo": "digits_mlp"}, "data": {"name": "digits"},
...     "stages": [{"train": {"epochs": 1}},
...                {"prune": {"method": "magnitude", "sparsity": 0.5}}]})
>>> [stage.kind for stage in recipe.stages]
['train', 'prune']
>>> parse_recipe({"version": 1, "name": "x", "model": {"zoo": "digits_mlp"},  # doctest: +ELLIPSIS
...               "stages": [{"prune": {"method": "magnitude", "sparsity": 1.5}}]})
Traceback (most recent call last):
...
deepshrink.errors.ConfigError: stages[0].prune: sparsity must be in [0, 1), got 1.5; ...
"""

from __future__ import annotations

import contextlib
import difflib
import importlib
import os
import re
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from deepshrink._registry import Registry
from deepshrink.errors import ConfigError, DeepshrinkError, quoted

__all__ = [
    "ALLOW_CODE_ENV",
    "MAX_THREADS",
    "RECIPE_VERSION",
    "STAGES",
    "DataSpec",
    "ModelSpec",
    "Recipe",
    "Stage",
    "StageKind",
    "call_factory",
    "check_code",
    "parse_recipe",
    "validated",
]

#: The recipe format version this deepshrink reads and writes.
RECIPE_VERSION = 1
#: Most torch CPU threads a recipe may ask for.
MAX_THREADS = 1024
#: The environment setting that allows recipes naming code (``model.factory``), as
#: ``--allow-code`` does.
ALLOW_CODE_ENV = "DEEPSHRINK_ALLOW_CODE"

_FACTORY = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*")


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ModelSpec(_Strict):
    """Where the model comes from: exactly one of a zoo name, a checkpoint or a factory."""

    zoo: str | None = Field(None, max_length=200)
    args: dict[str, Any] = {}
    checkpoint: str | None = Field(None, max_length=4096)
    factory: str | None = Field(
        None, max_length=400, description="'package.module:function' returning a model"
    )
    root: str | None = Field(
        None,
        max_length=4096,
        description="folder searched first for the factory's module (relative to the recipe; "
        "default: the recipe's folder), then the working directory",
    )

    @field_validator("factory")
    @classmethod
    def _factory_form(cls, factory: str | None) -> str | None:
        if factory is not None and not _FACTORY.fullmatch(factory):
            raise ValueError(
                f"factory must look like 'package.module:function', got {quoted(factory)}"
            )
        return factory

    @model_validator(mode="after")
    def _one_source(self) -> ModelSpec:
        given = [k for k in ("zoo", "checkpoint", "factory") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                "give exactly one of zoo: (a model name, see `deepshrink models`), checkpoint: "
                f"(a .safetensors file) or factory: ('module:function'), got {given or 'none'}"
            )
        if self.root is not None and self.factory is None:
            raise ValueError("root is the folder of a factory's module; give it with factory:")
        return self


@contextlib.contextmanager
def _importable_from(folders: list[Path]) -> Iterator[None]:
    """``folders`` first on ``sys.path`` for the block; after it ``sys.path`` is as it was and
    modules loaded from those folders are forgotten (a later recipe may have its own)."""
    added = [str(f) for f in dict.fromkeys(folders) if str(f) not in sys.path]
    loaded = set(sys.modules)
    sys.path[:0] = added
    try:
        yield
    finally:
        for entry in added:
            with contextlib.suppress(ValueError):
                sys.path.remove(entry)
        for name in set(sys.modules) - loaded:
            file = getattr(sys.modules[name], "__file__", None) or ""
            if any(file.startswith(entry + os.sep) for entry in added):
                del sys.modules[name]


def _import_factory(factory: str, folders: list[Path]) -> Callable[..., Any]:
    module_name, _, function = factory.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        missing = error.name or ""
        if missing and (module_name == missing or module_name.startswith(missing + ".")):
            searched = ", ".join(str(f) for f in folders)
            raise ConfigError(
                f"model.factory: no module {module_name!r} beside the recipe or in the working "
                f"directory ({searched}) nor installed; put {module_name.split('.')[0]}.py there "
                "or install its package"
            ) from None
        raise ConfigError(f"model.factory: importing {module_name!r} failed: {error}") from None
    except (ImportError, SyntaxError) as error:
        raise ConfigError(f"model.factory: importing {module_name!r} failed: {error}") from None
    found = getattr(module, function, None)
    if not callable(found):
        names = sorted(n for n, v in vars(module).items() if callable(v) and not n.startswith("_"))
        raise ConfigError(
            f"model.factory: module {module_name!r} ({getattr(module, '__file__', '?')}) has no "
            f"function {function!r}; it defines {', '.join(names) or 'no public callables'}"
        )
    return found


def call_factory(
    factory: str, args: Mapping[str, Any] | None = None, folder: str | Path | None = None
) -> Any:
    """Build the model of ``factory: 'module:function'``: import ``module`` from ``folder`` (the
    recipe's folder), the working directory or the installed packages, and call ``function``.

    Only the module the recipe names is imported (it runs the user's code, as a factory must);
    ``sys.path`` is extended for the import and the call only. The result must be a
    ``torch.nn.Module``.
    """
    from torch import nn

    folders = ([Path(folder).resolve()] if folder is not None else []) + [Path.cwd()]
    with _importable_from(folders):
        model = _import_factory(factory, folders)(**dict(args or {}))
    if not isinstance(model, nn.Module):
        raise ConfigError(
            f"model.factory: {factory} returned {type(model).__name__}, not a torch.nn.Module"
        )
    return model


class DataSpec(_Strict):
    """The dataset: a name known to :func:`deepshrink.data.load`, and optional limits."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    name: str = Field("digits", max_length=200)
    root: str | None = Field(None, max_length=4096)
    val_size: float = Field(
        0, ge=0, le=1 << 31, description="validation split: a fraction < 1 or a whole count"
    )
    train_limit: int | None = Field(
        None, gt=0, le=1 << 40, description="use the first N training samples"
    )
    test_limit: int | None = Field(
        None, gt=0, le=1 << 40, description="use the first N test samples"
    )
    shift: int = Field(
        0, ge=0, le=64, description="random crop with zero padding of N pixels (train)"
    )

    @model_validator(mode="after")
    def _whole_count(self) -> DataSpec:
        if self.val_size >= 1 and self.val_size != int(self.val_size):
            raise ValueError(
                f"val_size is a fraction below 1 or a whole count of samples, got {self.val_size}"
            )
        return self


@dataclass(frozen=True)
class Stage:
    """One validated stage: its kind, its position and its parsed settings."""

    kind: str
    index: int
    settings: Any
    include: tuple[str, ...] | None = None
    exclude: tuple[str, ...] | None = None
    raw: dict[str, Any] = field(default_factory=dict)
    train_limit: int | None = None

    @property
    def where(self) -> str:
        return f"stages[{self.index}].{self.kind}"

    @property
    def label(self) -> str:
        """A short name for folders and tables, e.g. ``02-prune``."""
        return f"{self.index + 1:02d}-{self.kind}"


@dataclass(frozen=True)
class StageKind:
    """How one stage kind parses its settings (``raw dict, where → settings``)."""

    name: str
    parse: Callable[[dict[str, Any], str], Any]
    targets_layers: bool = False
    doc: str = ""
    reads_training_data: bool = True


#: The stage kinds, by name. :mod:`deepshrink.recipe.stages` registers them.
STAGES: Registry[StageKind] = Registry("stage")


class Recipe(_Strict):
    """A whole recipe after validation (``stages`` are :class:`Stage` objects)."""

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    version: Literal[1]
    name: str = Field(min_length=1, max_length=200)
    description: str = Field("", max_length=10_000)
    seed: int = Field(0, ge=0, lt=1 << 32, description="an integer in [0, 2**32)")
    threads: int | None = Field(
        1, gt=0, le=MAX_THREADS, description="torch CPU threads for every stage"
    )
    latency: bool = Field(True, description="measure CPU latency before and after")
    model: ModelSpec
    data: DataSpec = DataSpec()
    stages: list[Stage] = Field(min_length=1)


def validated(cls: type[BaseModel], data: Any, where: str) -> Any:
    """``cls.model_validate(data)``, with errors as ``where.key: message, got value``."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping of settings, got {_kind(data)}")
    for key in data:
        if key not in cls.model_fields:
            raise ConfigError(_unknown_key(cls, str(key), f"{where}.{key}".removeprefix(".")))
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_message(cls, exc, where)) from None
    except ConfigError as exc:
        raise ConfigError(_retitle(str(exc), cls.__name__, where)) from None


def _retitle(text: str, title: str, where: str) -> str:
    """A MethodConfig names itself ("Title.key: ..."); say where in the recipe instead."""
    if text.startswith((title + ".", title + ":")):
        return (where + text[len(title) :]).removeprefix(".")
    return f"{where}: {text}" if where else text


def _message(cls: type[BaseModel], exc: ValidationError, where: str) -> str:
    first = exc.errors()[0]
    path = where + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in first["loc"])
    path = path.removeprefix(".") or "recipe"
    text = str(first["msg"]).removeprefix("Value error, ")
    if first["type"] == "value_error" or not first["loc"]:
        if text.startswith(cls.__name__):
            return _retitle(text, cls.__name__, path)
        return f"{path}: {text}"
    return f"{path}: {text}, got {quoted(first['input'])}"


def _unknown_key(cls: type[BaseModel], key: str, path: str) -> str:
    known = sorted(cls.model_fields)
    key, path = key[:100], path[:300]
    close = difflib.get_close_matches(key, known, n=2, cutoff=0.6)
    hint = f"; did you mean {' or '.join(map(repr, close))}?" if close else ""
    return f"{path}: unknown key{hint} (known: {', '.join(known)})"


def _kind(value: Any) -> str:
    return "nothing" if value is None else f"{type(value).__name__} {quoted(value)}"


def parse_stage(entry: Any, index: int) -> Stage:
    """Validate ``{kind: settings}`` at position ``index`` of the stage list."""
    where = f"stages[{index}]"
    if isinstance(entry, str):  # "- evaluate" with no settings
        entry = {entry: {}}
    if not isinstance(entry, dict) or len(entry) != 1:
        raise ConfigError(
            f"{where}: a stage is a mapping with one key, the stage kind "
            f"({', '.join(STAGES.names())}), got {_kind(entry)}"
        )
    ((kind, settings),) = entry.items()
    if kind not in STAGES:
        raise ConfigError(f"{where}: {STAGES.unknown_message(str(kind)[:100])}")
    settings = {} if settings is None else settings
    if not isinstance(settings, dict):
        raise ConfigError(f"{where}.{kind}: expected a mapping of settings, got {_kind(settings)}")
    stage_kind = STAGES.get(kind)
    settings = dict(settings)
    globs: dict[str, tuple[str, ...] | None] = {"include": None, "exclude": None}
    if stage_kind.targets_layers:
        for option in globs:
            globs[option] = _globs(settings.pop(option, None), f"{where}.{kind}.{option}")
    limit = _train_limit(stage_kind, settings.pop("train_limit", None), f"{where}.{kind}")
    parsed = stage_kind.parse(settings, f"{where}.{kind}")
    return Stage(
        kind, index, parsed, globs["include"], globs["exclude"], raw=dict(entry[kind] or {}),
        train_limit=limit,
    )  # fmt: skip


def _train_limit(kind: StageKind, value: Any, where: str) -> int | None:
    """A stage's own ``train_limit``: it trains or calibrates on the first N training samples
    (``data.train_limit`` is the limit for every stage)."""
    if value is None:
        return None
    if not kind.reads_training_data:
        raise ConfigError(
            f"{where}.train_limit: the {kind.name} stage reads no training data, so a limit would "
            "change nothing; remove it"
        )
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= 1 << 40:
        raise ConfigError(
            f"{where}.train_limit: expected a whole number of training samples above 0, got "
            f"{_kind(value)}"
        )
    return value


def _globs(value: Any, where: str) -> tuple[str, ...] | None:
    if value is None:
        return None
    values = [value] if isinstance(value, str) else value
    if (
        not isinstance(values, list)
        or not values
        or len(values) > 1000
        or not all(isinstance(v, str) and 0 < len(v) <= 1000 for v in values)
    ):
        raise ConfigError(
            f"{where}: expected a glob or a list of globs over layer names (not empty: leave "
            f"the key out to select every layer), got {_kind(value)}"
        )
    return tuple(values)


def parse_recipe(document: Any) -> Recipe:
    """Validate a loaded YAML document into a :class:`Recipe` (ConfigError naming the key)."""
    from deepshrink.recipe import stages as _stages  # noqa: F401  (registers the stage kinds)

    if not isinstance(document, dict):
        raise ConfigError(
            f"a recipe is a mapping (version, name, model, data, stages), got {_kind(document)}"
        )
    from deepshrink.recipe._yaml import check_numbers

    check_numbers(document)  # a Python dict may hold what YAML text was refused for
    if "version" in document and document["version"] != RECIPE_VERSION:
        raise ConfigError(
            f"version: this deepshrink reads recipe version {RECIPE_VERSION}, got "
            f"{quoted(document['version'])}"
        )
    raw_stages = document.get("stages")
    if not isinstance(raw_stages, list) or not raw_stages:
        raise ConfigError(f"stages: expected a non-empty list of stages, got {_kind(raw_stages)}")
    try:
        parsed = [parse_stage(entry, index) for index, entry in enumerate(raw_stages)]
    except DeepshrinkError as error:
        raise ConfigError(str(error)) from None
    _check_order(parsed)
    return validated(Recipe, {**document, "stages": parsed}, "")


def _check_order(stages: list[Stage]) -> None:
    """Refuse what a stage needs from an earlier one: a distillation teacher is the model
    before the first compressing stage, so ``distill`` needs such a stage (or a fine-tune
    with a pruning schedule) before it."""
    compressed = False
    for stage in stages:
        settings = stage.settings
        distill = getattr(settings, "distill", None)
        schedule = getattr(settings, "schedule", None) if stage.kind == "fine_tune" else None
        if distill is not None and not compressed:
            raise ConfigError(
                f"{stage.where}.distill: no earlier prune, factorize or quantize stage, so there "
                "is no model to distill from; move this stage after one or drop distill"
            )
        compressed = compressed or stage.kind in ("prune", "factorize", "quantize", "auto")
        compressed = compressed or schedule is not None


def check_code(recipe: Recipe, allow_code: bool) -> None:
    """Refuse a recipe that names code to import (``model.factory``) unless ``allow_code``
    (``--allow-code``, or the environment setting :data:`ALLOW_CODE_ENV` set to ``1``)."""
    factory = recipe.model.factory
    if factory is None or allow_code or os.environ.get(ALLOW_CODE_ENV) == "1":
        return
    raise ConfigError(
        f"model.factory: this recipe names Python code ({quoted(factory, 80)}) that would be "
        f"imported and run; a recipe with a factory is a program, not data. If you trust it, "
        f"pass --allow-code (or set {ALLOW_CODE_ENV}=1)"
    )
