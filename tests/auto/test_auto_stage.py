"""The ``auto:`` recipe stage: parsed strictly, run to a delivered file within the budget."""

from __future__ import annotations

from pathlib import Path

import pytest

from deepshrink.errors import ConfigError
from deepshrink.recipe import run_recipe

RECIPE = """\
version: 1
name: auto_digits
seed: 0
threads: 1
latency: false
model: {{zoo: digits_mlp}}
data: {{name: digits}}
stages:
  - train: {{epochs: 1, batch_size: 64}}
  - auto: {auto}
  - evaluate: {{latency: false}}
"""
FAST = "sparsities: [0.0, 0.9], bits: [2, 4], held_out: 300, scan_samples: 300, share_epochs: 0"


def _write(tmp_path: Path, auto: str) -> Path:
    path = tmp_path / "recipe.yaml"
    path.write_text(RECIPE.format(auto=auto))
    return path


def test_auto_stage_delivers_within_the_budget(tmp_path: Path) -> None:
    recipe = _write(tmp_path, "{max_bytes: 7000, " + FAST + "}")
    run_recipe(recipe, tmp_path / "run", progress=False)
    delivered = tmp_path / "run" / "auto" / "model.dsz"
    assert delivered.is_file() and delivered.stat().st_size <= 7000
    assert (tmp_path / "run" / "auto" / "auto.json").is_file()


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ("{" + FAST + "}", "exactly one budget"),
        ("{max_bytes: 7000, max_accuracy_drop: 1.0}", "exactly one budget"),
        ("{max_bytes: 7000, bits: [12]}", "bits"),
        ("{max_bytes: 7000, colour: red}", "colour"),
    ],
)
def test_auto_stage_settings_are_checked(tmp_path: Path, settings: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        run_recipe(_write(tmp_path, settings), tmp_path / "run", progress=False)
