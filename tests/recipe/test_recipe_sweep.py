"""Sweeps over recipe settings, and the per-layer sensitivity analysis."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from deepshrink.cli import main
from deepshrink.data.dataset import ArrayDataset
from deepshrink.errors import ConfigError
from deepshrink.eval.sensitivity import Sensitivity, sensitivity
from deepshrink.recipe.sweep import parse_setting, sweep_recipe, variants

SMALL = """\
version: 1
name: small
latency: false
model: {zoo: digits_mlp}
data: {name: digits, train_limit: 128, test_limit: 64}
stages:
  - train: {epochs: 1, batch_size: 32}
  - prune: {method: magnitude, sparsity: 0.5}
"""


def test_setting_paths_and_values() -> None:
    assert parse_setting("stages[1].prune.sparsity=0.5,0.9") == (
        ["stages", 1, "prune", "sparsity"], [0.5, 0.9]
    )  # fmt: skip
    assert parse_setting("seed=1,2")[1] == [1, 2]
    for bad in ("stages[1].prune.sparsity", "stages[x].prune=1", "a..b=1"):
        with pytest.raises(ConfigError, match="--set"):
            parse_setting(bad)


def test_grid_is_every_combination() -> None:
    document = {"seed": 0, "stages": [{"prune": {"sparsity": 0.1}}]}
    grid = variants(document, ["seed=1,2", "stages[0].prune.sparsity=0.5,0.9"])
    assert [label for label, _ in grid] == [
        "seed=1_sparsity=0.5", "seed=1_sparsity=0.9", "seed=2_sparsity=0.5", "seed=2_sparsity=0.9"
    ]  # fmt: skip
    assert grid[3][1]["stages"][0]["prune"]["sparsity"] == 0.9
    assert document["stages"][0]["prune"]["sparsity"] == 0.1  # the original is not changed


def test_sweep_runs_each_variant_and_writes_a_table(tmp_path: Path) -> None:
    recipe = tmp_path / "small.yaml"
    recipe.write_text(SMALL)
    rows = sweep_recipe(recipe, ["stages[1].prune.sparsity=0.3,0.9"], tmp_path / "sweep",
                        progress=False)  # fmt: skip
    assert [r["label"] for r in rows] == ["sparsity=0.3", "sparsity=0.9"]
    assert rows[0]["nonzero_parameters"] > rows[1]["nonzero_parameters"]
    assert json.loads((tmp_path / "sweep" / "sweep.json").read_text()) == rows
    assert (tmp_path / "sweep" / "pareto.png").read_bytes()[:4] == b"\x89PNG"
    assert "sparsity=0.9" in (tmp_path / "sweep" / "sweep.md").read_text()


def test_a_bad_variant_stops_the_sweep_before_anything_runs(tmp_path: Path, capsys) -> None:
    recipe = tmp_path / "small.yaml"
    recipe.write_text(SMALL)
    out = tmp_path / "sweep"
    code = main(["sweep", str(recipe), "--set", "stages[1].prune.sparsity=0.5,1.5", "--out",
                 str(out)])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "variant sparsity=1.5: stages[1].prune: sparsity must be in [0, 1)" in err
    assert not out.exists()


def test_sensitivity_prunes_one_layer_at_a_time() -> None:
    torch.manual_seed(0)
    data = ArrayDataset(torch.rand(96, 1, 2, 2), torch.randint(0, 3, (96,)))
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 3))
    before = [p.detach().clone() for p in model.parameters()]
    result = sensitivity(model, data, sparsities=(0.5, 0.99), exclude="3")
    assert list(result.curves) == ["1"]
    assert [s for s, _ in result.curves["1"]] == [0.0, 0.5, 0.99]
    assert result.curves["1"][0][1] == result.dense_accuracy
    assert all(a.equal(b) for a, b in zip(before, model.parameters(), strict=True))


def test_suggestions_take_the_highest_sparsity_within_tolerance() -> None:
    result = Sensitivity(0.95, {"a": [(0.0, 0.95), (0.5, 0.949), (0.9, 0.90)],
                                "b": [(0.0, 0.95), (0.5, 0.80)]})  # fmt: skip
    assert result.suggest(0.002) == {"a": 0.5, "b": 0.0}
    assert result.suggest(0.06) == {"a": 0.9, "b": 0.0}
    with pytest.raises(ConfigError, match="tolerance"):
        result.suggest(1.5)
