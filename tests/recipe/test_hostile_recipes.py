"""Hostile recipes and careless command lines: exit 2, one short ``error:`` line naming the key,
nothing written, no code imported without ``--allow-code``.

The corpus is ``tests/recipe/hostile/corpus.py``; ``benchmarks/fuzz_recipes.py`` runs all of it
as real processes with time and memory measured. Here a slice runs in-process.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from deepshrink import _io
from deepshrink.cli import main
from deepshrink.errors import ConfigError, one_line, quoted
from deepshrink.recipe._yaml import load_yaml


def _load_corpus() -> Any:
    path = Path(__file__).parent / "hostile" / "corpus.py"
    spec = importlib.util.spec_from_file_location("hostile_corpus", path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules["hostile_corpus"] = module
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


corpus = _load_corpus()
#: Cases left to the benchmark: slow to parse in pure Python, or needing another user.
SLOW = {"file-2MB", "nodes-300000", "out-unwritable"}
SLICE = [case for case in corpus.cases() if case.name not in SLOW]


def test_the_corpus_is_large_and_named() -> None:
    names = [case.name for case in corpus.cases()]
    assert len(names) >= 60 and len(set(names)) == len(names)


@pytest.mark.parametrize("case", SLICE, ids=[case.name for case in SLICE])
def test_hostile_case_exits_2_with_one_short_line_and_writes_nothing(
    case: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DEEPSHRINK_ALLOW_CODE", raising=False)
    with corpus.prepared(case, tmp_path) as argv:
        before = corpus.snapshot(tmp_path)
        code = main(argv)
        after = corpus.snapshot(tmp_path)
    err = capsys.readouterr().err
    lines = corpus.error_lines(err)
    assert code == 2, err
    assert len(lines) == 1 and "Traceback" not in err, err
    assert len(lines[0]) <= 300, lines[0]
    for fragment in case.expect:
        assert fragment in lines[0], lines[0]
    assert after == before  # nothing written, not even a lock file
    assert not (tmp_path / "PWNED").exists()


def test_deep_nesting_and_aliases_are_refused_from_the_events() -> None:
    with pytest.raises(ConfigError, match="nested deeper than 64"):
        load_yaml("a: " + "[" * 100 + "]" * 100, "r.yaml")
    with pytest.raises(ConfigError, match="nest"):  # libyaml's own limit comes first here
        load_yaml("a: " + "[" * 20000 + "]" * 20000, "r.yaml")
    with pytest.raises(ConfigError, match="anchors and aliases"):
        load_yaml(corpus.LAUGHS, "r.yaml")


def test_yaml_numbers_and_duplicates_name_their_key_path() -> None:
    with pytest.raises(ConfigError, match=r"^stages\[0\]\.train\.lr: must be a finite number"):
        load_yaml("stages:\n  - train: {lr: .inf}\n", "r.yaml")
    with pytest.raises(ConfigError, match=r"^data\.shift: duplicate key"):
        load_yaml("data: {shift: 1, shift: 2}\n", "r.yaml")
    with pytest.raises(ConfigError, match=r"^seed: an integer of 5000 characters"):
        load_yaml("seed: " + "1" * 5000, "r.yaml")
    assert load_yaml("seed: 9223372036854775807\nlr: 1.0e-3\n", "r.yaml") == {
        "seed": 2**63 - 1, "lr": 0.001
    }  # fmt: skip
    with pytest.raises(ConfigError, match="out of range"):
        load_yaml("seed: 9223372036854775808\n", "r.yaml")


def test_quoted_values_and_error_lines_are_bounded() -> None:
    assert len(quoted("x" * 10**6)) == 200
    assert quoted(10**5000).startswith("<an integer of")
    long = "stages[0].train.lr: " + "y" * 1000 + "; fix: use a number"
    line = one_line(long)
    assert len(line) == 300 and line.startswith("stages[0].train.lr") and line.endswith("number")


def test_paths_from_user_strings_stay_inside_the_folder() -> None:
    from deepshrink.recipe.sweep import variants

    for name in ("../../x", "/etc/passwd", "..", "a/../../b", "\x00x", "description=/../../x"):
        safe = _io.safe_name(name)
        assert safe and "/" not in safe and not safe.startswith(".") and "\x00" not in safe
    grid = variants({"description": ""}, ["description=/../../x,/../../x"])
    labels = [label for label, _ in grid]
    assert len(set(labels)) == 2  # made unique after cleaning
    for label in labels:
        out = Path("/sweep")
        assert (out / label).resolve().parent == out


def test_a_recipe_name_cannot_lead_the_default_folder_out_of_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import deepshrink.recipe.run as run_module

    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        "version: 1\nname: ../../escaped\nlatency: false\nmodel: {zoo: digits_mlp}\n"
        "data: {name: digits, train_limit: 32, test_limit: 32}\nstages: [evaluate]\n"
    )
    chosen: list[Path] = []

    def record(prepared: Any, out: Path, **options: Any) -> None:
        chosen.append(Path(out))
        raise ConfigError("stop here")

    monkeypatch.setattr(run_module, "run_prepared", record)
    monkeypatch.chdir(tmp_path)
    assert main(["run", str(recipe)]) == 2
    assert chosen == [Path("runs") / "escaped"]
    assert chosen[0].resolve().parent == (tmp_path / "runs").resolve()


def test_out_on_a_read_only_file_system_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = os.statvfs

    class ReadOnly:
        def __init__(self, path: Any) -> None:
            self.f_flag = real(path).f_flag | os.ST_RDONLY

    monkeypatch.setattr(os, "statvfs", ReadOnly)
    with pytest.raises(ConfigError, match="read-only file system"):
        _io.check_writable_folder(tmp_path / "new" / "run")


FACTORY_MODULE = """\
from pathlib import Path
Path(__file__).with_name("IMPORTED").write_text("the module ran")
from torch import nn
def build():
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
"""


def test_plan_without_allow_code_imports_nothing_of_the_factory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "audited_factory_net.py").write_text(FACTORY_MODULE)
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        "version: 1\nname: f\nmodel: {factory: 'audited_factory_net:build'}\n"
        "data: {name: digits}\nstages: [{prune: {method: magnitude, sparsity: 0.5}}]\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DEEPSHRINK_ALLOW_CODE", raising=False)
    seen: list[str] = []
    watching = [True]

    def audit(event: str, args: tuple[Any, ...]) -> None:
        if watching[0] and event in ("import", "open", "exec", "compile"):
            seen.append(f"{event} {args[0]}")

    sys.addaudithook(audit)  # cannot be removed: it stops recording at the end of the test
    try:
        code = main(["plan", str(recipe)])
        refused = [entry for entry in seen if "audited_factory_net" in entry]
        assert code == 2 and "--allow-code" in capsys.readouterr().err
        assert refused == [] and not (tmp_path / "IMPORTED").exists()
        seen.clear()
        assert main(["plan", str(recipe), "--allow-code"]) == 0  # the hook does see an import
        assert any("audited_factory_net" in entry for entry in seen)
        assert (tmp_path / "IMPORTED").exists()
    finally:
        watching[0] = False
        sys.modules.pop("audited_factory_net", None)
