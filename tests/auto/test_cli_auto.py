"""``deepshrink auto``: budgets parsed, the file delivered within them, bad input refused."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import deepshrink as ds
from deepshrink.cli import main
from deepshrink.cli_auto import parse_bytes
from deepshrink.errors import ConfigError

FAST = ["--data", "digits", "--sparsities", "0,0.9", "--bits", "2,4", "--held-out", "300",
        "--scan-samples", "300", "--epochs", "1,0"]  # fmt: skip


@pytest.mark.parametrize(
    ("text", "value"),
    [("30kB", 30_000), ("30 kb", 30_000), ("1.5MB", 1_500_000), ("2KiB", 2048), ("12000", 12_000)],
)
def test_parse_bytes(text: str, value: int) -> None:
    assert parse_bytes(text) == value


@pytest.mark.parametrize("text", ["", "30 parsecs", "-5kB", "0", "kB"])
def test_parse_bytes_refuses(text: str) -> None:
    with pytest.raises(ConfigError, match="--max-bytes"):
        parse_bytes(text)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    torch.manual_seed(0)  # the same checkpoint whichever tests ran before in the worker
    model = ds.zoo.create("digits_mlp")
    ds.fit(model, ds.data.load("digits"), epochs=1, batch_size=64, progress=False)
    return ds.save_checkpoint(model, tmp_path_factory.mktemp("ckpt") / "digits")


def test_cli_delivers_within_the_budget(checkpoint: Path, tmp_path: Path, capsys) -> None:
    code = main(["auto", str(checkpoint), "--max-bytes", "7kB", "--out", str(tmp_path), *FAST])
    assert code == 0
    size = (tmp_path / "model.dsz").stat().st_size
    assert size <= 7000
    assert f"{size:,} bytes" in capsys.readouterr().out


def test_cli_impossible_budget_exits_2_with_the_reachable_size(checkpoint, tmp_path, capsys):
    code = main(["auto", str(checkpoint), "--max-bytes", "200", "--out", str(tmp_path), *FAST])
    assert code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("error: a 200-byte budget cannot be met: the smallest reachable file")


def test_cli_needs_exactly_one_budget(checkpoint, tmp_path, capsys) -> None:
    assert main(["auto", str(checkpoint), "--out", str(tmp_path), *FAST]) == 2
    assert "exactly one budget" in capsys.readouterr().err
