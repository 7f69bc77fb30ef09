"""The tamper set of ``benchmarks/tamper_checkpoints.py``: sidecars and safetensors that lie.

Each case loads a real checkpoint with one thing changed: the outcome is a deepshrink error or a
model that runs, never a raw exception, code run, or a file written; the CLI exits 2 with one
line.
"""

from __future__ import annotations

import importlib.util
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from deepshrink.cli import main

_SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "tamper_checkpoints.py"


@pytest.fixture(scope="module")
def tamper() -> Any:
    spec = importlib.util.spec_from_file_location("tamper_checkpoints", _SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["tamper_checkpoints"] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def results(tamper: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    return tamper.run_all(tmp_path_factory.mktemp("tamper"), measure=False)


def test_the_set_has_at_least_fifty_cases(tamper: Any) -> None:
    assert len(tamper.CASES) >= 50


def test_no_raw_exception_no_code_no_file_written(tamper: Any, results: dict) -> None:
    # the warm-ups pay first-use imports (torch imports sympy for its first meta index)
    cases = {name: r for name, r in results.items() if not name.startswith("warm-up")}
    assert len(cases) == len(tamper.CASES)
    bad = {name: tamper.violations(result) for name, result in cases.items()}
    assert not {name: problems for name, problems in bad.items() if problems}
    refused = [r for r in cases.values() if r["outcome"] == "FormatError"]
    assert len(refused) >= 50


def test_a_consistent_file_still_loads(results: dict) -> None:
    assert results["warm-up 0"]["outcome"] == "ran"
    assert results["tensors: NaN biases (loads)"]["outcome"] == "ran"


@pytest.mark.parametrize(
    ("case", "words"),
    [
        ("kwargs: num_classes 1e9", "num_classes"),
        ("sidecar: nesting 20,000 deep", "JSON"),
        ("sidecar: 5,000-digit int in metadata", "JSON"),
        ("tensors: code indices past the codebook", "codebook"),
        ("structure: another architecture's record", "structure entry 0"),
        ("tensors: dtype changed (F32 -> I32)", "does not fit"),
    ],
)
def test_each_refusal_names_the_problem(results: dict, case: str, words: str) -> None:
    assert results[case]["outcome"] == "FormatError"
    assert words in results[case]["message"]


@pytest.fixture(autouse=True)
def _root_handlers() -> Iterator[None]:
    root = logging.getLogger()
    handlers = list(root.handlers)
    yield
    root.handlers[:] = handlers


@pytest.mark.parametrize(
    "case",
    [
        "kwargs: num_classes 1e9",
        "sidecar: nesting 20,000 deep",
        "tensors: header length 2**63",
        "structure: another architecture's record",
        "tensors: code indices past the codebook",
    ],
)
@pytest.mark.parametrize("command", ["eval", "inspect"])
def test_the_cli_exits_2_with_one_line(tamper, tmp_path, capsys, case, command) -> None:
    sidecar, tensors = tamper.CASES[case](tamper.base_files(tmp_path))
    (tmp_path / "bad.json").write_bytes(sidecar)
    (tmp_path / "bad.safetensors").write_bytes(tensors)
    options = ["--no-latency", "--data", "digits"] if command == "eval" else []
    code = main([command, str(tmp_path / "bad.safetensors"), *options])
    err = capsys.readouterr().err
    if command == "inspect" and code == 0:  # inspect reads the files without building a model
        assert case in ("kwargs: num_classes 1e9", "structure: another architecture's record",
                        "tensors: code indices past the codebook")  # fmt: skip
        return
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
