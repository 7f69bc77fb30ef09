"""The time of an ``auto`` run stated up front: by ``deepshrink plan``, ``auto --dry-run`` and
the run's first log lines."""

from __future__ import annotations

from pathlib import Path

import pytest

import deepshrink as ds
from deepshrink.auto.compress import FineTune
from deepshrink.auto.estimate import Estimate, expected_time
from deepshrink.cli import main
from deepshrink.recipe import load_recipe, prepare
from deepshrink.recipe.plan import plan_recipe


def test_the_estimate_adds_the_measured_unit_costs() -> None:
    e = Estimate(options=10, per_sample=0.001, per_option=0.5, per_step=0.05, steps_per_epoch=100,
                 scan_samples=200, epochs=2, held_out=300)  # fmt: skip
    assert e.scan_seconds == pytest.approx(10 * (200 * 0.001 + 0.5))
    assert e.fine_tune_seconds == pytest.approx(2 * (100 * 0.05 + 300 * 0.001))
    assert e.total_seconds == pytest.approx(e.scan_seconds + e.fine_tune_seconds)
    assert e.text().startswith("about 18 s (scan 7 s: 10 candidates; fine-tunes 11 s")


@pytest.mark.parametrize("latency", [False, True])
def test_expected_time_counts_the_candidates_and_is_positive(latency: bool) -> None:
    model, data = ds.zoo.create("digits_mlp"), ds.data.load("digits")
    tune = FineTune(prune_epochs=1, share_epochs=2, batch_size=64, train_samples=640)
    e = expected_time(model, data, latency=latency, settings=tune, scan_samples=100,
                      held_out=300, sparsities=(0.0, 0.5, 0.9), bits=(2, 4), steps=4)  # fmt: skip
    # digits_mlp: 3 layers × 3 × 2 options; or widths 128 → 96, 64, 32 and 64 → 48, 32, 16
    assert e.options == (6 if latency else 18) and e.epochs == (1 if latency else 3)
    assert e.steps_per_epoch == 10 and e.held_out == min(300, len(data.train) // 5)
    assert e.per_sample > 0 and e.per_step > 0 and e.total_seconds > 0
    assert (e.per_option > 0) == latency


RECIPE = """\
version: 1
name: auto_plan
seed: 0
model: {zoo: digits_mlp}
data: {name: digits}
stages:
  - auto: {speedup: 1.5, steps: 4, held_out: 300, scan_samples: 100}
"""


def test_plan_states_the_time_of_an_auto_stage(tmp_path: Path, capsys) -> None:
    path = tmp_path / "recipe.yaml"
    path.write_text(RECIPE)
    parsed, text = load_recipe(path)
    steps = plan_recipe(prepare(parsed, text))
    auto = steps[-1]
    assert auto.seconds is not None and auto.seconds > 0
    assert "expected time about" in auto.action and "6 candidates" in auto.action
    assert main(["plan", str(path)]) == 0
    assert "expected time about" in " ".join(capsys.readouterr().out.split())


def test_cli_dry_run_states_the_time_and_trains_nothing(tmp_path: Path, capsys) -> None:
    checkpoint = ds.save_checkpoint(ds.zoo.create("digits_mlp"), tmp_path / "m")
    code = main(["auto", str(checkpoint), "--data", "digits", "--speedup", "2", "--steps", "4",
                 "--held-out", "300", "--dry-run", "--out", str(tmp_path / "run")])  # fmt: skip
    assert code == 0
    assert capsys.readouterr().out.startswith("expected time: about ")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--speedup", "2", "--max-bytes", "30kB"], "exactly one budget"),
        (["--speedup", "0.5"], "--speedup must be more than 1"),
        (["--max-latency-ms", "0"], "--max-latency-ms must be more than 0 ms"),
        (["--speedup", "2", "--epochs", "a"], "--epochs"),
        (["--speedup", "2", "--steps", "0"], "--steps and --round-to must be at least 1"),
        (["--max-latency-ms", "2", "--train-samples", "0"], "--train-samples"),
    ],
)
def test_cli_latency_refusals(tmp_path: Path, capsys, args: list[str], message: str) -> None:
    checkpoint = ds.save_checkpoint(ds.zoo.create("digits_mlp"), tmp_path / "m")
    code = main(["auto", str(checkpoint), "--data", "digits", "--out", str(tmp_path / "r"), *args])
    assert code == 2
    assert message in capsys.readouterr().err
