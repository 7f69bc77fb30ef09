"""Malformed recipes and careless command lines: each must exit 2 with one ``error:`` line.

Each :class:`Case` is a command (``run``, ``plan`` or ``sweep``), the recipe text (or bytes), the
extra arguments, what must appear in the error line (the key path, or the option), and an
optional ``setup`` the harness prepares (a ``--out`` that is a file, a folder a live run holds,
...). Used by ``tests/recipe/test_hostile_recipes.py`` (in-process, a slice) and
``benchmarks/fuzz_recipes.py`` (each case a subprocess, with time and memory measured).
"""

from __future__ import annotations

import contextlib
import copy
import fcntl
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

BASE: dict[str, Any] = {
    "version": 1,
    "name": "hostile",
    "latency": False,
    "model": {"zoo": "digits_mlp"},
    "data": {"name": "digits", "train_limit": 64, "test_limit": 32},
    "stages": [
        {"train": {"epochs": 1, "batch_size": 32}},
        {"prune": {"method": "magnitude", "sparsity": 0.5}},
    ],
}


@dataclass(frozen=True)
class Case:
    name: str
    recipe: str | bytes
    expect: tuple[str, ...]
    command: str = "run"
    args: tuple[str, ...] = ()
    #: what the harness prepares: "" (nothing), "out_file", "out_under_file", "out_nonempty",
    #: "out_unwritable" (needs a non-root user), "locked", "recipe_dir", "recipe_missing"
    setup: str = ""
    files: dict[str, str] = field(default_factory=dict)


def text(**changes: Any) -> str:
    """The base recipe with top-level ``changes`` (a value None removes the key)."""
    document = copy.deepcopy(BASE)
    for key, value in changes.items():
        if value is None:
            document.pop(key, None)
        else:
            document[key] = value
    return yaml.safe_dump(document, sort_keys=False)


def stage(index: int, **settings: Any) -> str:
    """The base recipe with ``settings`` merged into stage ``index``."""
    document = copy.deepcopy(BASE)
    ((kind, values),) = document["stages"][index].items()
    values.update(settings)
    return yaml.safe_dump(document, sort_keys=False)


def with_line(line: str, after: str = "latency: false") -> str:
    """The base recipe with a raw YAML ``line`` after the line ``after``."""
    return text().replace(after, f"{after}\n{line}", 1)


def train(**settings: Any) -> str:
    return stage(0, **settings)


def prune(**settings: Any) -> str:
    return stage(1, **settings)


LAUGHS = (
    "version: 1\nname: lol\nmodel: {zoo: digits_mlp}\nstages: [evaluate]\n"
    'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    + "".join(
        f"{n}: &{n} [{', '.join(['*' + p] * 9)}]\n"
        for p, n in zip("abcdefgh", "bcdefghi", strict=True)
    )
    + "description: *i\n"
)
DISTILL_FIRST = yaml.safe_dump({**BASE, "stages": [
    {"fine_tune": {"epochs": 1, "distill": {"temperature": 4}}},
    {"prune": {"method": "magnitude", "sparsity": 0.5}},
]}, sort_keys=False)  # fmt: skip
FACTORY = text(model={"factory": "os:system", "args": {"command": "touch PWNED"}})


def cases() -> list[Case]:
    """The corpus (at least 60 cases)."""
    big = 2**70
    return [
        # numbers: out of range, non-finite, huge literals
        Case("seed-2^70", text(seed=big), ("seed",)),
        Case("seed-5000-digits", with_line("seed: " + "9" * 5000), ("seed",)),
        Case("seed-negative", text(seed=-1), ("seed",)),
        Case("seed-hex-100-digits", with_line("seed: 0x" + "f" * 100), ("seed",)),
        Case("seed-sexagesimal", with_line("seed: " + ":".join(["59"] * 14)), ("seed",)),
        Case("threads-1e8", text(threads=10**8), ("threads",)),
        Case("threads-1e9", text(threads=10**9), ("threads",)),
        Case("threads-0", text(threads=0), ("threads",)),
        Case("stage-threads-1e8", train(threads=10**8), ("stages[0].train.threads",)),
        Case(
            "val_size-inf",
            text(data={**BASE["data"], "val_size": float("inf")}),
            ("data.val_size",),
        ),  # fmt: skip
        Case(
            "val_size-not-whole", text(data={**BASE["data"], "val_size": 1.5}), ("data", "val_size")
        ),  # fmt: skip
        Case("shift-1e5", text(data={**BASE["data"], "shift": 10**5}), ("data.shift",)),
        Case(
            "train_limit-0", text(data={**BASE["data"], "train_limit": 0}), ("data.train_limit",)
        ),  # fmt: skip
        Case(
            "test_limit-2^62",
            text(data={**BASE["data"], "test_limit": 2**62}),
            ("data.test_limit",),
        ),  # fmt: skip
        Case(
            "num_classes-1e9",
            text(model={"zoo": "digits_mlp", "args": {"num_classes": 10**9}}),
            ("num_classes",),
        ),  # fmt: skip
        Case("lr-inf", train(lr=float("inf")), ("stages[0].train.lr",)),
        Case("lr-nan", train(lr=float("nan")), ("stages[0].train.lr",)),
        Case("lr-1e9", train(lr=1e9), ("stages[0].train.lr",)),
        Case(
            "weight_decay-inf", train(weight_decay=float("inf")), ("stages[0].train.weight_decay",)
        ),  # fmt: skip
        Case(
            "warmup_epochs-inf",
            train(warmup_epochs=float("inf")),
            ("stages[0].train.warmup_epochs",),
        ),  # fmt: skip
        Case("epochs-1e9", train(epochs=10**9), ("stages[0].train.epochs",)),
        Case("epochs-negative", train(epochs=-1), ("stages[0].train.epochs",)),
        Case("batch_size-2^40", train(batch_size=2**40), ("stages[0].train.batch_size",)),
        Case("grad_clip-inf", train(grad_clip=float("inf")), ("stages[0].train.grad_clip",)),
        Case("slimming-inf", train(slimming=float("inf")), ("stages[0].train.slimming",)),
        Case("sparsity-inf", prune(sparsity=float("inf")), ("stages[1].prune",)),
        Case("sparsity-1.5", prune(sparsity=1.5), ("stages[1].prune",)),
        Case(
            "iterative-rounds-1e9",
            prune(iterative={"rounds": 10**9}),
            ("stages[1].prune.iterative.rounds",),
        ),  # fmt: skip
        # YAML structure: aliases, duplicates, nesting, size, tags, encoding
        Case("billion-laughs", LAUGHS, ("anchors and aliases",)),
        Case(
            "one-alias",
            text().replace("digits_mlp", "&m digits_mlp") + "description: *m\n",
            ("anchors and aliases",),
        ),  # fmt: skip
        Case("duplicate-top-key", with_line("name: other"), ("name: duplicate key",)),
        Case(
            "duplicate-stage-key",
            text().replace("epochs: 1", "epochs: 1\n    epochs: 2"),
            ("stages[0].train.epochs: duplicate key",),
        ),  # fmt: skip
        Case(
            "nesting-20000",
            with_line("description: " + "[" * 20000 + "]" * 20000),
            ("nest",),
        ),  # fmt: skip
        Case(
            "nesting-20000-maps",
            with_line("description: " + "{a: " * 20000 + "1" + "}" * 20000),
            ("nest",),
        ),  # fmt: skip
        Case(
            "nodes-300000", with_line("description: [" + "1," * 300_000 + "1]"), ("more than",)
        ),  # fmt: skip
        Case("file-2MB", with_line("description: " + "x" * 2_000_000), ("larger than",)),
        Case(
            "python-tag",
            with_line("description: !!python/object/apply:os.system ['touch P']"),
            ("constructor", "plain YAML"),
        ),  # fmt: skip
        Case("tab-indent", "version: 1\nname: x\nstages:\n\t- evaluate\n", ("line 4",)),
        Case("not-utf8", b"version: 1\nname: \xff\xfe\n", ("cannot be read",)),
        Case("empty-file", "", ("a recipe is a mapping",)),
        Case("a-list", "- 1\n- 2\n", ("a recipe is a mapping",)),
        Case("version-2", text(version=2), ("version",)),
        Case("no-stages", text(stages=None), ("stages",)),
        Case("stages-empty", text(stages=[]), ("stages",)),
        Case("stages-a-mapping", text(stages={"train": {}}), ("stages",)),
        Case("stage-two-keys", text(stages=[{"train": {}, "prune": {}}]), ("stages[0]",)),
        Case("stage-int-kind", text(stages=[{7: {}}]), ("stages[0]",)),
        Case("unknown-stage", text(stages=[{"prun": {}}]), ("stages[0]", "prune")),
        Case("unknown-top-key", with_line("sed: 1"), ("sed: unknown key", "seed")),
        Case("unknown-key-1000", with_line("k" * 1000 + ": 1"), ("unknown key",)),
        Case("unknown-method", prune(method="magnitud"), ("stages[1].prune.method",)),
        Case("name-empty", text(name=""), ("name",)),
        Case("name-10000", text(name="n" * 10_000), ("name",)),
        Case("description-100k", text(description="d" * 100_000), ("description",)),
        Case(
            "args-huge-string",
            text(model={"zoo": "digits_mlp", "args": {"hidden": "x" * 50_000}}),
            ("args",),
        ),  # fmt: skip
        Case("unknown-zoo", text(model={"zoo": "lenet6"}), ("model",)),
        Case("unknown-data", text(data={"name": "mnistt"}), ("data",)),
        Case("nul-in-description", with_line('description: "a\\0b"'), ("description", "NUL")),
        Case("missing-checkpoint", text(model={"checkpoint": "nowhere.safetensors"}), ("model",)),
        # layer names, order, devices
        Case("include-empty", prune(include=[]), ("stages[1].prune.include",)),
        Case("include-no-layer", prune(include="conv*"), ("stages[1].prune.include",)),
        Case(
            "overrides-unknown-layer",
            prune(overrides={"nolayer*": 0.1}),
            ("stages[1].prune.overrides",),
        ),  # fmt: skip
        Case("distill-first", DISTILL_FIRST, ("stages[0].fine_tune.distill",)),
        Case("device-tpu", train(device="tpu"), ("stages[0].train.device",)),
        Case("device-cuda7", train(device="cuda:7"), ("stages[0].train.device",)),
        Case(
            "iterative-device",
            prune(iterative={"rounds": 2, "fit": {"device": "cuda:3"}}),
            ("iterative",),
        ),  # fmt: skip
        Case(
            "encode-file-escape",
            text(stages=[{"encode": {"file": "../../x.dsz"}}]),
            ("stages[0].encode.file",),
        ),  # fmt: skip
        Case(
            "export-file-absolute",
            text(stages=[{"export": {"file": "/tmp/x.onnx"}}]),
            ("stages[0].export.file",),
        ),  # fmt: skip
        # code in recipes
        Case("factory-os-system-plan", FACTORY, ("model.factory", "--allow-code"), "plan"),
        Case("factory-os-system-run", FACTORY, ("model.factory", "--allow-code")),
        Case(
            "factory-colon-build",
            text(model={"factory": ":build"}),
            ("model.factory",),
            args=("--allow-code",),
        ),  # fmt: skip
        Case(
            "factory-no-colon",
            text(model={"factory": "os.system"}),
            ("model.factory",),
            args=("--allow-code",),
        ),  # fmt: skip
        # the output folder and the run lock
        Case("out-is-a-file", text(), ("--out",), setup="out_file"),
        Case("out-under-a-file", text(), ("--out",), setup="out_under_file"),
        Case("out-not-empty", text(), ("not empty",), setup="out_nonempty"),
        Case("out-unwritable", text(), ("--out", "not writable"), setup="out_unwritable"),
        Case(
            "out-held-by-a-live-run", text(), ("in use", "pid"), args=("--resume",), setup="locked"
        ),  # fmt: skip
        Case("recipe-is-a-folder", "", ("cannot be read",), setup="recipe_dir"),
        Case("recipe-missing", "", ("does not exist",), setup="recipe_missing"),
        # sweeps
        Case("sweep-alias-value", text(), ("--set",), "sweep", ("--set", "seed=*a")),
        Case(
            "sweep-no-such-stage",
            text(),
            ("--set",),
            "sweep",
            ("--set", "stages[99].prune.sparsity=0.5"),
        ),  # fmt: skip
        Case("sweep-index-past-end", text(), ("--set",), "sweep", ("--set", "stages[5]=1")),
        Case(
            "sweep-too-many",
            text(),
            ("--set", "variants"),
            "sweep",
            (
                "--set",
                "seed=" + ",".join(map(str, range(30))),
                "--set",
                "threads=" + ",".join(map(str, range(1, 30))),
            ),
        ),  # fmt: skip
        Case("sweep-inf", text(), ("seed",), "sweep", ("--set", "seed=.inf")),
        Case(
            "sweep-factory",
            text(),
            ("model.factory", "--allow-code"),
            "sweep",
            ("--set", "model={factory: 'os:system'}"),
        ),  # fmt: skip
        Case(
            "sweep-out-is-a-file",
            text(),
            ("--out",),
            "sweep",
            ("--set", "seed=1,2"),
            setup="out_file",
        ),  # fmt: skip
        Case(
            "plan-json-folder",
            "",
            ("--json",),
            "plan",
            ("digits_mlp", "--ratio", "0.5", "--json", "{folder}"),
            setup="no_recipe",
        ),  # fmt: skip
    ]


@contextlib.contextmanager
def prepared(case: Case, folder: Path) -> Iterator[list[str]]:
    """Lay out ``case`` in ``folder`` and yield its command line (without the program name).

    ``--out`` is ``folder/out`` for ``run`` and ``sweep``; the working directory should be
    ``folder`` so a default ``runs/`` would land there too.
    """
    recipe = folder / "recipe.yaml"
    out = folder / "out"
    if case.setup == "recipe_dir":
        recipe.mkdir()
    elif case.setup not in ("recipe_missing", "no_recipe"):
        data = case.recipe if isinstance(case.recipe, bytes) else case.recipe.encode("utf-8")
        recipe.write_bytes(data)
    for name, body in case.files.items():
        (folder / name).write_text(body)
    if case.setup == "out_file":
        out.write_text("a file\n")
    elif case.setup == "out_under_file":
        (folder / "file").write_text("a file\n")
        out = folder / "file" / "out"
    elif case.setup == "out_nonempty":
        out.mkdir()
        (out / "notes.txt").write_text("mine\n")
    elif case.setup == "out_unwritable":
        (folder / "ro").mkdir()
        out = folder / "ro" / "out"
        os.chmod(folder / "ro", 0o555)
    args = [arg.replace("{folder}", str(folder)) for arg in case.args]
    argv = [case.command] + ([] if case.setup == "no_recipe" else [str(recipe)]) + args
    if case.command in ("run", "sweep"):
        argv += ["--out", str(out)]
    if case.setup != "locked":
        yield argv
        return
    out.mkdir()
    fd = os.open(out / ".lock", os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield argv
    finally:
        os.close(fd)


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every path under ``folder`` with its size and modification time (to find writes)."""
    found = {}
    for path in sorted(folder.rglob("*")):
        info = path.lstat()
        found[str(path.relative_to(folder))] = (info.st_size, info.st_mtime_ns)
    return found


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]
