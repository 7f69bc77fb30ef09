"""The command line: each command works, and user mistakes give one line and exit code 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from deepshrink.cli import main


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code: int, err: str, *fragments: str) -> None:
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0]


def test_models_lists_the_zoo(capsys) -> None:
    code, out, _ = run(capsys, "models")
    assert code == 0
    for name in ("lenet300", "lenet5", "resnet56", "mobilenetv2_cifar"):
        assert name in out
    assert "431,080" in out  # lenet5's parameter count


def test_info_shows_layers_and_totals(capsys) -> None:
    code, out, _ = run(capsys, "info", "lenet5")
    assert code == 0
    assert "conv2" in out and "25,050" in out  # 50·20·25 weights + 50 biases
    # MACs: conv1 20·24·24·25 + conv2 50·8·8·500 + fc1 800·500 + fc2 500·10
    assert "total: 431,080 params, 2,293,000 MACs" in out


def test_unknown_model_suggests_a_name(capsys) -> None:
    code, _, err = run(capsys, "info", "lenet30")
    assert_one_line_error(code, err, "unknown model 'lenet30'", "did you mean 'lenet300'")


def test_missing_dataset_names_the_files(capsys, tmp_path) -> None:
    code, _, err = run(capsys, "train", "lenet300", "--data-root", str(tmp_path), "--epochs", "1")
    assert_one_line_error(code, err, "mnist", "train-images-idx3-ubyte.gz", "DEEPSHRINK_DATA")


def test_negative_epochs_is_rejected(capsys) -> None:
    code, _, err = run(capsys, "train", "digits_mlp", "--data", "digits", "--epochs", "-1")
    assert_one_line_error(code, err, "epochs", "-1")


def test_unknown_flag_and_bad_value(capsys) -> None:
    code, _, err = run(capsys, "train", "lenet300", "--bogus")
    assert_one_line_error(code, err, "--bogus")
    code, _, err = run(capsys, "train", "lenet300", "--epochs", "many")
    assert_one_line_error(code, err, "many")


def test_model_and_data_must_fit(capsys) -> None:
    code, _, err = run(capsys, "train", "lenet5", "--data", "digits", "--epochs", "1")
    assert_one_line_error(code, err, "1×28×28", "1×8×8")


def test_train_then_eval_a_checkpoint(capsys, tmp_path: Path) -> None:
    out = tmp_path / "run"
    code, text, err = run(capsys, "train", "digits_mlp", "--data", "digits", "--epochs", "3",
                          "--out", str(out), "--threads", "1")  # fmt: skip
    assert code == 0, err
    assert (out / "model.safetensors").is_file() and (out / "model.json").is_file()
    assert (out / "state" / "last.safetensors").is_file()
    assert "top-1 accuracy" in text
    code, text, err = run(capsys, "eval", str(out / "model.safetensors"), "--data", "digits",
                          "--no-latency")  # fmt: skip
    assert code == 0, err
    assert "digits_mlp" in text and "17,226" in text


def test_eval_of_a_missing_checkpoint(capsys, tmp_path) -> None:
    code, _, err = run(capsys, "eval", str(tmp_path / "none.safetensors"), "--data", "digits")
    assert_one_line_error(code, err, "none.json", "does not exist")


def test_console_script_exit_code() -> None:
    """The installed entry point returns 2 to the shell, with no traceback."""
    cmd = [sys.executable, "-m", "deepshrink.cli", "info", "no_such_model"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.startswith("error: unknown model") and "Traceback" not in done.stderr
