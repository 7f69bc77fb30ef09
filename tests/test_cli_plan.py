"""``deepshrink plan``: the channel-pruning plan table, from a zoo name or a checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import deepshrink as ds
from deepshrink.cli import main


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_plan_of_a_zoo_model(capsys, tmp_path: Path) -> None:
    out_file = tmp_path / "plan.json"
    code, out, err = run(capsys, "plan", "resnet20", "--ratio", "0.5", "--ignore", "fc",
                         "--json", str(out_file))  # fmt: skip
    assert code == 0, err
    assert "layer1.0.conv1" in out and "16 → 8" in out
    plan = json.loads(out_file.read_text())
    before, after = plan["totals"]["macs"]
    assert f"MACs {before:,} → {after:,}" in out
    # 9 groups inside the blocks and the 3 residual streams (option-A shortcuts follow them)
    assert len(plan["groups"]) == 12 and 3.5 < before / after < 4.5


def test_plan_of_a_checkpoint(capsys, tmp_path: Path) -> None:
    path = ds.save_checkpoint(ds.zoo.create("resnet20", shortcut="B"), tmp_path / "m")
    code, out, err = run(capsys, "plan", str(path), "--ratio", "0.25", "--criterion", "l2")
    assert code == 0, err
    assert "layer3.0.shortcut.0" in out and "64 → 48" in out


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--ratio", "1.5"], "ratio must be in [0, 1)"),
        (["--ratio", "0.5", "--criterion", "l3"], "did you mean"),
        (["--ratio", "0.5", "--criterion", "taylor"], "calibration"),
        (["--ratio", "0.5", "--ignore", "nope"], "matches no layer"),
    ],
)
def test_plan_errors_are_one_line(capsys, args: list[str], fragment: str) -> None:
    code, _, err = run(capsys, "plan", "resnet20", *args)
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2 and len(lines) == 1 and fragment in lines[0], err
