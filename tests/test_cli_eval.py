"""``deepshrink eval`` and ``inspect`` on every kind of model file (.safetensors, .dsz, .onnx).

The oracle: the byte size printed is ``stat().st_size`` of the file given, the accuracy is what
the Python API measures on the same test set, and each file kind's contents are listed.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from torch import nn

import deepshrink as ds
from deepshrink.cli import main

pytest.importorskip("onnxruntime")

KINDS = ".safetensors, .dsz, .onnx"


@pytest.fixture(autouse=True)
def _root_handlers() -> Iterator[None]:
    """The CLI installs a log handler on the captured stderr of its test; take it off after."""
    root = logging.getLogger()
    handlers = list(root.handlers)
    yield
    root.handlers[:] = handlers


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def one_error_line(code: int, err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2, err
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def row(out: str, metric: str) -> str:
    match = re.search(rf"^\| {re.escape(metric)} \| (.+?) \|$", out, re.MULTILINE)
    assert match, f"no {metric!r} row in:\n{out}"
    return match.group(1)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """A digits_mlp trained two epochs, saved as .dsz, .safetensors (+ .json) and .onnx."""
    folder = tmp_path_factory.mktemp("files")
    torch.manual_seed(0)
    model = ds.zoo.create("digits_mlp")
    data = ds.data.load("digits")
    ds.fit(model, data, epochs=2, progress=False)
    accuracy = ds.evaluate(model, data.test, latency=False).accuracy
    return {
        "accuracy": accuracy,
        "samples": len(data.test),
        ".dsz": ds.save(model, folder / "model.dsz"),
        ".safetensors": ds.save_checkpoint(model, folder / "model"),
        ".onnx": ds.export(model, folder / "model.onnx"),
    }


def assert_true_size(out: str, path: Path) -> None:
    assert f"{path} ({path.stat().st_size:,} B on disk)" in out, out


@pytest.mark.parametrize("kind", [".dsz", ".safetensors"])
def test_eval_of_a_pytorch_file(capsys, files, kind: str) -> None:
    path = files[kind]
    code, out, err = run(capsys, "eval", str(path), "--data", "digits", "--no-latency")
    assert code == 0, err
    assert_true_size(out, path)
    assert row(out, "top-1 accuracy") == f"{100 * files['accuracy']:.2f}%"
    assert row(out, "test samples") == f"{files['samples']:,}"
    assert row(out, "parameters") == "17,226"
    assert row(out, "model") == "digits_mlp"


def test_eval_of_a_dsz_measures_latency(capsys, files) -> None:
    code, out, err = run(capsys, "eval", str(files[".dsz"]), "--data", "digits", "--threads", "1")
    assert code == 0, err
    assert row(out, "latency, batch 1").endswith("ms")
    assert row(out, "threads") == "1"


def test_eval_of_an_onnx_file(capsys, files) -> None:
    path = files[".onnx"]
    code, out, err = run(capsys, "eval", str(path), "--data", "digits")
    assert code == 0, err
    assert_true_size(out, path)
    assert "ONNX Runtime" in row(out, "runtime")
    assert row(out, "test samples") == f"{files['samples']:,}"
    onnx_accuracy = float(row(out, "top-1 accuracy").rstrip("%")) / 100
    # ONNX Runtime agrees with PyTorch up to float rounding: at most one prediction may flip
    assert abs(onnx_accuracy - files["accuracy"]) <= 1 / files["samples"] + 1e-9


@pytest.mark.parametrize("name", ["model.json", "notes.txt", "missing.dsz", "folder"])
def test_eval_refuses_other_files(capsys, tmp_path: Path, name: str) -> None:
    if name.endswith((".json", ".txt")):
        (tmp_path / name).write_text("{}")
    if name == "folder":
        (tmp_path / name).mkdir()
    code, _, err = run(capsys, "eval", str(tmp_path / name), "--data", "digits")
    line = one_error_line(code, err)
    assert name in line and KINDS in line


@pytest.mark.parametrize("kind", [".dsz", ".safetensors", ".onnx"])
@pytest.mark.parametrize("keep", [0.1, 0.9])
def test_truncated_files_are_one_line(capsys, files, tmp_path: Path, kind: str, keep) -> None:
    data = files[kind].read_bytes()
    path = tmp_path / f"cut{kind}"
    path.write_bytes(data[: int(len(data) * keep)])
    if kind == ".safetensors":
        (tmp_path / "cut.json").write_bytes(files[kind].with_suffix(".json").read_bytes())
    for command in (["eval", str(path), "--data", "digits"], ["inspect", str(path)]):
        code, _, err = run(capsys, *command)
        line = one_error_line(code, err)
        assert str(path) in line


def test_truncated_dsz_says_so(capsys, files, tmp_path: Path) -> None:
    path = tmp_path / "cut.dsz"
    path.write_bytes(files[".dsz"].read_bytes()[:100])
    code, _, err = run(capsys, "eval", str(path), "--data", "digits")
    assert "truncated" in one_error_line(code, err)


@pytest.mark.parametrize("kind", [".dsz", ".safetensors"])
def test_a_model_outside_the_zoo_points_to_python(capsys, tmp_path: Path, kind: str) -> None:
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    saver = ds.save if kind == ".dsz" else ds.save_checkpoint
    path = Path(saver(net, tmp_path / f"own{kind}"))
    code, _, err = run(capsys, "eval", str(path), "--data", "digits")
    line = one_error_line(code, err)
    assert "outside the zoo" in line and "model=..." in line
    assert ("ds.load(" if kind == ".dsz" else "ds.load_checkpoint(") in line
    code, out, err = run(capsys, "inspect", str(path))  # inspecting needs no rebuild
    assert code == 0, err
    assert "arch: none" in out
    assert_true_size(out, path)


def test_onnx_of_another_input_shape_is_refused(capsys, tmp_path: Path) -> None:
    path = ds.export(ds.zoo.create("lenet5"), tmp_path / "lenet5.onnx")
    code, _, err = run(capsys, "eval", str(path), "--data", "digits")
    assert "1×28×28" in one_error_line(code, err)


def test_inspect_dsz(capsys, files) -> None:
    code, out, err = run(capsys, "inspect", str(files[".dsz"]))
    assert code == 0, err
    assert "arch: digits_mlp(hidden_sizes=[128, 64], num_classes=10)" in out
    table = ds.size_table(files[".dsz"]).to_markdown()
    assert table in out
    assert "| total | 17,226 |" in out
    assert_true_size(out, files[".dsz"])


def test_inspect_safetensors(capsys, files) -> None:
    code, out, err = run(capsys, "inspect", str(files[".safetensors"]))
    assert code == 0, err
    assert "arch: digits_mlp(" in out and "structure: unchanged" in out
    state = ds.zoo.create("digits_mlp").state_dict()
    for name, tensor in state.items():
        shape = "×".join(map(str, tensor.shape))
        assert f"| {name} | {shape} | F32 | {4 * tensor.numel():,} |" in out
    assert_true_size(out, files[".safetensors"])


def test_inspect_safetensors_lists_structure_changes(capsys, tmp_path: Path) -> None:
    model = ds.zoo.create("digits_mlp")
    ds.prune_(model, ds.NeuronPruning(ratio=0.5))
    path = ds.save_checkpoint(model, tmp_path / "pruned")
    code, out, err = run(capsys, "inspect", str(path))
    assert code == 0, err
    structure = next(line for line in out.splitlines() if line.startswith("structure:"))
    assert structure != "structure: unchanged"
    for name, tensor in model.state_dict().items():
        assert f"| {name} | {'×'.join(map(str, tensor.shape))} |" in out


def test_inspect_onnx(capsys, files) -> None:
    code, out, err = run(capsys, "inspect", str(files[".onnx"]))
    assert code == 0, err
    assert "| input | float | batch×1×8×8 |" in out
    assert "| output | float | batch×10 |" in out
    assert "| Gemm | 3 |" in out and "| Relu | 2 |" in out  # digits_mlp: 3 Linear, 2 ReLU
    assert_true_size(out, files[".onnx"])


@pytest.mark.parametrize("name", ["model.json", "notes.txt", "missing.onnx"])
def test_inspect_refuses_other_files(capsys, tmp_path: Path, name: str) -> None:
    if not name.startswith("missing"):
        (tmp_path / name).write_text("{}")
    code, _, err = run(capsys, "inspect", str(tmp_path / name))
    line = one_error_line(code, err)
    assert name in line and KINDS in line


def test_export_writes_onnx_that_agrees_with_pytorch(capsys, files, tmp_path: Path) -> None:
    out_file = tmp_path / "m.onnx"
    code, out, err = run(capsys, "export", str(files[".safetensors"]), "--data", "digits",
                         "-o", str(out_file))  # fmt: skip
    assert code == 0, err
    assert f"wrote {out_file} ({out_file.stat().st_size:,} B, fp32 onnx)" in out
    assert row(out, "PyTorch") == f"{100 * files['accuracy']:.2f}%"
    assert row(out, "ONNX Runtime") == f"{100 * files['accuracy']:.2f}%"
    assert row(out, "predictions changed") == f"0 of {files['samples']}"


def test_export_int8_dynamic_from_a_dsz_is_smaller(capsys, files, tmp_path: Path) -> None:
    code, out, err = run(capsys, "export", str(files[".dsz"]), "--int8", "dynamic",
                         "--no-verify", "-o", str(tmp_path / "q.onnx"))  # fmt: skip
    assert code == 0, err
    assert (tmp_path / "q.onnx").stat().st_size < 0.5 * files[".onnx"].stat().st_size


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--int8", "static", "--fp16"], "choose one of --int8 and --fp16"),
        (["--calibration-samples", "0", "--int8", "static"], "--calibration-samples"),
        (["-o", "/proc/no/such/dir/m.onnx", "--no-verify"], "m.onnx"),
    ],
)
def test_export_refuses_bad_options_in_one_line(capsys, files, args, says: str) -> None:
    code, _, err = run(capsys, "export", str(files[".safetensors"]), "--data", "digits", *args)
    assert says in one_error_line(code, err)


def test_export_refuses_a_file_that_is_already_exported(capsys, files) -> None:
    code, _, err = run(capsys, "export", str(files[".onnx"]))
    assert "already a .onnx file" in one_error_line(code, err)


def test_inspect_refuses_what_eval_refuses(capsys, files, tmp_path: Path) -> None:
    import json
    import shutil

    path = tmp_path / "m.safetensors"
    shutil.copy(files[".safetensors"], path)
    sidecar = json.loads(files[".safetensors"].with_suffix(".json").read_text())
    sidecar["arch"]["kwargs"] = {**sidecar["arch"].get("kwargs", {}), "num_classes": 10**9}
    path.with_suffix(".json").write_text(json.dumps(sidecar))
    for argv in (["inspect", str(path)], ["eval", str(path), "--data", "digits"]):
        code, _, err = run(capsys, *argv)
        assert "num_classes" in one_error_line(code, err)
