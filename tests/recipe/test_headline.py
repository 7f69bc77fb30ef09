"""The headline of a run is the delivered file measured in its own runtime."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from deepshrink.errors import ConfigError
from deepshrink.eval.agreement import changed_predictions, predicted_classes
from deepshrink.export.files import file_forward
from deepshrink.export.runtime import evaluate_onnx
from deepshrink.recipe import load_recipe, prepare, run_recipe

pytest.importorskip("onnxruntime")

RECIPE = """\
version: 1
name: headline
seed: 1
latency: {latency}
model: {{zoo: digits_mlp}}
data: {{name: digits, train_limit: 256, test_limit: 120}}
stages:
  - train: {{epochs: 2, batch_size: 32}}
  - prune: {{method: magnitude, sparsity: 0.6}}
  - export: {{int8: dynamic, file: m.int8.onnx, latency_rounds: 0}}
"""


def _run(tmp_path: Path, latency: bool) -> tuple[dict, Path]:
    recipe = tmp_path / "r.yaml"
    recipe.write_text(RECIPE.format(latency=str(latency).lower()))
    run_recipe(recipe, tmp_path / "run", progress=False)
    return json.loads((tmp_path / "run" / "metrics.json").read_text()), tmp_path / "run"


def test_onnx_headline_is_the_file_in_onnx_runtime(tmp_path: Path) -> None:
    metrics, out = _run(tmp_path, latency=True)
    file = out / "m.int8.onnx"
    prepared = prepare(load_recipe(tmp_path / "r.yaml")[0])
    result = evaluate_onnx(file, prepared.data.test)
    final = metrics["final"]
    assert final["accuracy"] == result.top1 and final["samples"] == result.count == 120
    assert final["file_bytes"] == file.stat().st_size
    assert final["extra"]["runtime"] == "ONNX Runtime" and "pytorch_accuracy" in final["extra"]
    comparison = metrics["comparison"]
    assert comparison["speed_runtime"] == "ONNX Runtime"
    # both ONNX files were timed side by side, at batch 1 and 64
    assert sorted(comparison["speed"]) == ["1", "64"]
    assert (out / "stages" / "01-train" / "baseline.fp32.onnx").is_file()
    # the changed-prediction count is the file's predictions against the baseline's
    from deepshrink.eval.agreement import model_forward
    from deepshrink.train import load_checkpoint

    baseline = load_checkpoint(out / "stages" / "01-train" / "model.safetensors")[0]
    before = predicted_classes(model_forward(baseline), prepared.data.test)
    after = predicted_classes(file_forward(file), prepared.data.test)
    assert comparison["changed_predictions"] == changed_predictions(before, after)
    report = (out / "report.md").read_text()
    assert "latency, batch 1 (ONNX Runtime, side by side)" in report
    assert "| bits/weight |" in report and "initializer type" in report


def test_without_latency_no_speed_is_claimed(tmp_path: Path) -> None:
    metrics, out = _run(tmp_path, latency=False)
    assert metrics["comparison"]["speed"] is None
    assert not (out / "plots" / "latency.png").exists()
    assert "latency.png" not in (out / "report.md").read_text()


@pytest.mark.parametrize(
    ("settings", "says"),
    [
        ("{format: onnx, weight_bits: 4}", "weight_bits do not apply to format onnx"),
        ("{format: tflite, per_channel: false}", "per_channel do not apply to format tflite"),
        ("{format: tflite, file: m.onnx}", "does not end in .tflite"),
        ("{int8: dynamic, fp16: true}", "choose one of int8 and fp16"),
    ],
)
def test_export_stage_settings_that_do_not_fit_are_refused(
    tmp_path: Path, settings: str, says: str
) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_text(RECIPE.format(latency="false").replace(
        "{int8: dynamic, file: m.int8.onnx, latency_rounds: 0}", settings))  # fmt: skip
    with pytest.raises(ConfigError, match=says):
        load_recipe(recipe)


def test_tflite_export_stage_delivers_a_file_scored_in_litert(tmp_path: Path) -> None:
    pytest.importorskip("ai_edge_litert")
    pytest.importorskip("litert_torch")
    from deepshrink.export.tflite import evaluate_tflite

    recipe = tmp_path / "r.yaml"
    recipe.write_text(RECIPE.format(latency="false").replace(
        "{int8: dynamic, file: m.int8.onnx, latency_rounds: 0}",
        "{format: tflite, int8: dynamic, latency_rounds: 0}"))  # fmt: skip
    run_recipe(recipe, tmp_path / "run", progress=False)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    file = tmp_path / "run" / "model.dynamic.tflite"
    result = evaluate_tflite(file, prepare(load_recipe(recipe)[0]).data.test)
    assert metrics["stages"][-1]["summary"]["tflite_accuracy"] == result.top1
    assert metrics["final"]["accuracy"] == result.top1
    assert metrics["final"]["extra"]["runtime"] == "LiteRT"
    assert metrics["final"]["file_bytes"] == file.stat().st_size


@pytest.mark.parametrize(
    ("verdicts", "warned"),
    [(("slower", "slower"), True), (("slower", "no measurable change"), False),
     (("faster", "faster"), False)],
)  # fmt: skip
def test_an_export_slower_than_its_fp32_twin_says_so(
    verdicts: tuple[str, str], warned: bool, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture, tmp_path: Path,
) -> None:  # fmt: skip
    import importlib

    from deepshrink.eval.timing import Speed
    from deepshrink.recipe import deliver

    def measured(*args: object, **kwargs: object) -> dict[int, Speed]:
        ratio = {"slower": 0.6, "faster": 1.6, "no measurable change": 1.0}
        return {size: Speed(ratio[v], ratio[v] * 0.97, ratio[v] * 1.03, v, 1.0, 1.0, 1.0, 9)
                for size, v in zip((1, 32), verdicts, strict=True)}  # fmt: skip

    names = ("eval.timing", "export.files", "eval._inputs")
    timing, files, inputs = (importlib.import_module(f"deepshrink.{name}") for name in names)
    monkeypatch.setattr(timing, "compare_calls", measured)
    monkeypatch.setattr(files, "file_calls", lambda path, example: None)
    monkeypatch.setattr(files, "timed_batch_sizes", lambda path, sizes: sizes)
    monkeypatch.setattr(inputs, "derive_inputs", lambda *args: None)
    context = type("C", (), {"data": type("D", (), {"test": None})()})()
    with caplog.at_level("WARNING", logger="deepshrink.recipe.deliver"):
        summary = deliver._file_speed(context, None, "fp32.onnx", tmp_path / "m.int8.onnx", 1)
    assert summary["vs_fp32_batch1"].startswith({"slower": "1.67× slower"}.get(verdicts[0], ""))
    said = [r.getMessage() for r in caplog.records if "runs slower than the fp32 export" in
            r.getMessage()]  # fmt: skip
    assert bool(said) == warned, said
    if warned:
        assert "m.int8.onnx" in said[0] and "at batch 32" in said[0]
