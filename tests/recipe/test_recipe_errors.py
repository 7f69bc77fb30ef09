"""Malformed recipes: each gives its precise message, exit code 2, and writes nothing."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from deepshrink.cli import main

GOOD_MODEL = "model: {zoo: digits_mlp}\ndata: {name: digits, train_limit: 64, test_limit: 32}\n"
HEAD = "version: 1\nname: bad\nlatency: false\n"

#: (test id, recipe text, fragments the one error line must contain)
CASES = [
    (
        "yaml-syntax",
        HEAD + GOOD_MODEL + "stages: [\n  - train: {epochs: 1}\n",
        ["line ", "column "],
    ),
    (
        "python-tag",
        HEAD + GOOD_MODEL + 'stages:\n  - !!python/object/apply:os.system ["echo hi"]\n',
        ["!!python/object are refused"],
    ),
    ("not-a-mapping", "- train\n- prune\n", ["a recipe is a mapping"]),
    (
        "wrong-version",
        "version: 2\nname: bad\n" + GOOD_MODEL + "stages: [evaluate]\n",
        ["version: this deepshrink reads recipe version 1, got 2"],
    ),
    (
        "missing-name",
        "version: 1\n" + GOOD_MODEL + "stages: [evaluate]\n",
        ["name: Field required"],
    ),
    (
        "unknown-top-key",
        HEAD + "modle: {zoo: digits_mlp}\nstages: [evaluate]\n",
        ["modle: unknown key; did you mean 'model'?"],
    ),
    (
        "two-model-sources",
        HEAD + "model: {zoo: digits_mlp, checkpoint: x.safetensors}\nstages: [evaluate]\n",
        ["model: give exactly one of zoo:"],
    ),
    (
        "unknown-zoo-model",
        HEAD + "model: {zoo: digits_mpl}\ndata: {name: digits}\nstages: [evaluate]\n",
        ["model: unknown model 'digits_mpl'", "did you mean 'digits_mlp'"],
    ),
    (
        "train-limit-on-a-stage-without-training-data",
        HEAD + GOOD_MODEL + "stages:\n  - evaluate: {train_limit: 100}\n",
        ["stages[0].evaluate.train_limit: the evaluate stage reads no training data"],
    ),
    (
        "train-limit-not-a-count",
        HEAD + GOOD_MODEL + "stages:\n  - fine_tune: {epochs: 1, train_limit: 0.5}\n",
        ["stages[0].fine_tune.train_limit: expected a whole number", "got float 0.5"],
    ),
    (
        "unknown-stage",
        HEAD + GOOD_MODEL + "stages:\n  - prun: {method: magnitude}\n",
        ["stages[0]: unknown stage 'prun'", "did you mean 'prune'"],
    ),
    (
        "unknown-method",
        HEAD + GOOD_MODEL + "stages:\n  - train: {epochs: 1}\n"
        "  - prune: {method: magnitud, sparsity: 0.5}\n",
        ["stages[1].prune.method: unknown pruning method 'magnitud'", "did you mean 'magnitude'"],
    ),
    (
        "out-of-range",
        HEAD + GOOD_MODEL + "stages:\n  - train: {epochs: 1}\n"
        "  - prune: {method: magnitude, sparsity: 1.5}\n",
        ["stages[1].prune: sparsity must be in [0, 1), got 1.5"],
    ),
    (
        "wrong-type",
        HEAD + GOOD_MODEL + "stages:\n  - train: {epochs: ten}\n",
        ["stages[0].train.epochs: Input should be a valid integer", "got 'ten'"],
    ),
    (
        "negative-lr",
        HEAD + GOOD_MODEL + "stages:\n  - fine_tune: {lr: -0.1}\n",
        ["stages[0].fine_tune.lr: Input should be greater than 0", "got -0.1"],
    ),
    (
        "unknown-stage-key",
        HEAD + GOOD_MODEL + "stages:\n  - train: {epoch: 3}\n",
        ["stages[0].train.epoch: unknown key; did you mean 'epochs'"],
    ),
    (
        "bad-glob",
        HEAD + GOOD_MODEL + "stages:\n"
        "  - prune: {method: magnitude, sparsity: 0.5, include: 'conv*'}\n",
        ["stages[0].prune.include: 'conv*' matches no layer", "fc1"],
    ),
    (
        "glob-not-text",
        HEAD + GOOD_MODEL + "stages:\n"
        "  - prune: {method: magnitude, sparsity: 0.5, exclude: [3]}\n",
        ["stages[0].prune.exclude: expected a glob or a list of globs"],
    ),
    (
        "missing-data",
        HEAD + "model: {zoo: lenet300}\ndata: {name: mnist, root: /nonexistent}\n"
        "stages: [evaluate]\n",
        ["data: mnist: files not found in /nonexistent"],
    ),
    (
        "unknown-dataset",
        HEAD + "model: {zoo: digits_mlp}\ndata: {name: digitz}\nstages: [evaluate]\n",
        ["data: unknown dataset 'digitz'"],
    ),
    (
        "shape-mismatch",
        HEAD + "model: {zoo: lenet5}\ndata: {name: digits}\nstages: [evaluate]\n",
        ["model: expects inputs of shape (1, 28, 28)", "(1, 8, 8)"],
    ),
    (
        "empty-stages",
        HEAD + GOOD_MODEL + "stages: []\n",
        ["stages: expected a non-empty list of stages"],
    ),
    (
        "two-keys-in-stage",
        HEAD + GOOD_MODEL + "stages:\n  - {train: {}, prune: {}}\n",
        ["stages[0]: a stage is a mapping with one key"],
    ),
    (
        "one-shot-in-fine-tune",
        HEAD + GOOD_MODEL + "stages:\n  - fine_tune: {prune: {method: magnitude, sparsity: 0.5}}\n",
        ["stages[0].fine_tune.prune: only a schedule"],
    ),
    (
        "distill-in-train",
        HEAD + GOOD_MODEL + "stages:\n  - train: {distill: {alpha: 0.5}}\n",
        ["stages[0].train.distill: unknown key"],
    ),
    (
        "bad-distill-alpha",
        HEAD + GOOD_MODEL + "stages:\n  - fine_tune: {distill: {alpha: 2}}\n",
        ["stages[0].fine_tune.distill.alpha: Input should be less than or equal to 1", "got 2"],
    ),
    (
        "bad-factorization",
        HEAD + GOOD_MODEL + "stages:\n  - factorize: {method: svd, ranks: 4}\n",
        ["stages[0].factorize.ranks: unknown key", "did you mean 'rank'"],
    ),
    ("empty-file", "", ["a recipe is a mapping", "got nothing"]),
    (
        "bad-slimming",
        HEAD + GOOD_MODEL + "stages:\n  - train: {slimming: -1}\n",
        ["stages[0].train.slimming: the L1 weight λ on BatchNorm scales must be a number > 0"],
    ),
    (
        "bad-channel-ratio",
        HEAD + GOOD_MODEL + "stages:\n  - prune: {method: channel, ratio: 1.0}\n",
        ["stages[0].prune", "ratio"],
    ),
    (
        "bad-export-file",
        HEAD + GOOD_MODEL + "stages:\n  - export: {file: ../x.onnx}\n",
        ["stages[0].export.file: String should match pattern"],
    ),
]


@pytest.mark.parametrize(("text", "fragments"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_malformed_recipe_is_refused_before_anything_is_written(
    text: str, fragments: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(text)
    out = tmp_path / "run"
    code = main(["run", str(recipe), "--out", str(out)])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2, err
    assert len(lines) == 1 and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert not out.exists()


def test_python_tags_are_never_executed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    marker = tmp_path / "ran"
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        textwrap.dedent(f"""\
        version: 1
        name: evil
        model: !!python/object/apply:os.system ["touch {marker}"]
        stages: [evaluate]
    """)
    )
    assert main(["plan", str(recipe)]) == 2
    assert not marker.exists()


def test_there_are_at_least_fifteen_cases() -> None:
    assert len({c[0] for c in CASES}) >= 15


def test_missing_recipe_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", str(tmp_path / "nope.yaml")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_a_used_run_folder_is_not_overwritten(tmp_path: Path, capsys) -> None:
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(HEAD + GOOD_MODEL + "stages: [evaluate]\n")
    out = tmp_path / "run"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert main(["run", str(recipe), "--out", str(out)]) == 2
    assert "is not empty; pass --resume" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]


def test_encode_settings_are_checked_before_the_run(tmp_path: Path, capsys) -> None:
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(HEAD + GOOD_MODEL + "stages:\n  - encode: {index_bits: 17}\n")
    assert main(["plan", str(recipe)]) == 2
    assert "stages[0].encode: index_bits must be in [1, 16], got 17" in capsys.readouterr().err
