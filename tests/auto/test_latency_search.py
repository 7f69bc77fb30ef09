"""``auto_compress`` under a latency budget on digits_mlp, with the latency tables on a stubbed
clock and a stubbed file check: a candidate or a delivered file that misses the budget is said
to, and the next candidate is taken; an impossible budget is refused with the fastest figure."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import deepshrink as ds
from deepshrink.auto import FineTune, auto_compress
from deepshrink.auto import latency_search as search
from deepshrink.auto.latency import build_table
from deepshrink.errors import ConfigError
from deepshrink.eval.timing import Speed

TUNE = FineTune(prune_epochs=1, batch_size=64)
FAST = {"held_out": 300, "scan_samples": 200, "fine_tune": TUNE}


@pytest.fixture
def stub_table(monkeypatch, ticks) -> None:
    """Layer time ∝ width_in × width_out; whole models 0.001 ms + 1.0 × Σ (no real clock)."""

    def seconds(w_in: int, w_out: int) -> float:
        return 1e-9 * w_in * w_out

    def table(layers, full, narrow, **_):  # noqa: ANN001, ANN202
        full_sum = sum(seconds(i[0], o[0]) for _, i, o in layers.values())
        narrow_sum = sum(seconds(i[-1], o[-1]) for _, i, o in layers.values())
        return build_table(
            layers, ticks.cost(1e-6 + full_sum), ticks.cost(1e-6 + narrow_sum), rounds=3,
            make_call=lambda s, i, o: ticks.cost(seconds(i, o)), overhead=ticks.cost(0.0),
            clock=ticks, wall=ticks,
        )  # fmt: skip

    monkeypatch.setattr(search, "build_table", table)


def _speed(low: float) -> Speed:
    return Speed(ratio=low * 1.05, low=low, high=low * 1.1, verdict="faster", cpu_ms=1 / low,
                 wall_ms=1 / low, baseline_cpu_ms=1.0, rounds=30)  # fmt: skip


def _checker(lows: list[float]):  # noqa: ANN202
    seen: list[Path] = []

    def check(baseline: Path, candidate: Path, example: object) -> Speed:
        assert baseline.name == "baseline.fp32.onnx" and candidate.is_file()
        seen.append(candidate)
        return _speed(lows[len(seen) - 1])

    return check, seen


def test_a_miss_takes_the_next_candidate_and_the_delivered_file_is_checked(
    trained, stub_table, tmp_path: Path
) -> None:
    model, data = trained
    check, seen = _checker([1.2, 1.6, 1.3, 1.7, 1.8])  # miss, met; delivered misses; met, met
    report = auto_compress(model, data, speedup=1.5, out=tmp_path,
                           latency={"steps": 4, "checker": check}, **FAST)  # fmt: skip
    log = report.attempts
    assert [a["what"].split()[0] for a in log] == ["candidate", "candidate", "delivered",
                                                   "candidate", "delivered"]  # fmt: skip
    assert [a["met"] for a in log] == [False, True, False, True, True]
    assert [p.name for p in seen] == ["candidate.onnx"] * 2 + ["model.onnx"] + [
        "candidate.onnx", "model.onnx"]  # fmt: skip
    assert log[1]["target_ms"] < log[0]["target_ms"] and log[3]["target_ms"] < log[2]["target_ms"]
    assert all(a["predicted_ms"] <= a["target_ms"] + 1e-9 for a in log)
    assert report.speed["low"] == 1.8 and report.widths == log[-1]["widths"]
    delivered, _ = ds.load_checkpoint(report.checkpoint)
    assert delivered.fc1.out_features == report.widths["fc1"] < 128
    assert Path(report.path).is_file() and report.test_accuracy is not None
    saved = json.loads((tmp_path / "auto.json").read_text())
    assert saved["speed"]["low"] == 1.8 and saved["seconds"]["expected"] > 0
    summary = (tmp_path / "auto.md").read_text()
    assert summary.count("| yes |") == 3 and summary.count("| no |") == 2
    assert f"| fc1 | 128 | {report.widths['fc1']} |" in summary
    assert (tmp_path / "candidates.png").read_bytes().startswith(b"\x89PNG")


def test_every_candidate_missing_is_an_error_naming_the_best_measured(
    trained, stub_table, tmp_path: Path
) -> None:
    model, data = trained
    check, _ = _checker([1.1, 1.2])
    with pytest.raises(ConfigError, match=r"no candidate met 1.5× faster .* after 2 tries; the "
                       r"best measured 1.26× faster \(1.20–1.32\)"):  # fmt: skip
        auto_compress(model, data, speedup=1.5, out=tmp_path,
                      latency={"steps": 4, "checker": check, "attempts": 2}, **FAST)  # fmt: skip


def test_an_impossible_latency_is_refused_before_any_fine_tune(
    trained, stub_table, tmp_path: Path
) -> None:
    model, data = trained
    check, seen = _checker([])
    with pytest.raises(ConfigError, match=r"cannot be reached: the fastest widths tried are "
                       r"predicted at \d+\.\d{3} ms"):  # fmt: skip
        auto_compress(model, data, speedup=50, out=tmp_path,
                      latency={"steps": 4, "checker": check}, **FAST)  # fmt: skip
    assert not seen


@pytest.mark.parametrize(
    ("budget", "message"),
    [
        ({"speedup": 0.5}, "speedup must be more than 1"),
        ({"max_latency_ms": -1.0}, "max_latency_ms must be > 0"),
        ({"speedup": 2.0, "max_bytes": 100}, "exactly one budget"),
        ({"speedup": 2.0, "runtime": "tflite"}, "ONNX Runtime only"),
    ],
)
def test_latency_budgets_are_checked(trained, tmp_path, budget, message) -> None:
    model, data = trained
    with pytest.raises(ConfigError, match=message):
        auto_compress(model, data, out=tmp_path, **budget)


STAGE = """\
version: 1
name: auto_latency
seed: 0
threads: 1
latency: false
model: {zoo: digits_mlp}
data: {name: digits}
stages:
  - train: {epochs: 1, batch_size: 64}
  - auto: {speedup: 1.5, steps: 4, held_out: 300, scan_samples: 200, batch_size: 64}
  - evaluate: {latency: false}
"""


def test_auto_stage_continues_from_the_delivered_onnx_model(
    stub_table, monkeypatch, tmp_path: Path
) -> None:
    from deepshrink.recipe import run_recipe

    check, seen = _checker([1.6, 1.7])
    monkeypatch.setattr(search, "check_file", lambda budget: check)
    path = tmp_path / "recipe.yaml"
    path.write_text(STAGE)
    run_recipe(path, tmp_path / "run", progress=False)
    report = json.loads((tmp_path / "run" / "auto" / "auto.json").read_text())
    assert [p.name for p in seen] == ["candidate.onnx", "model.onnx"]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    w1, w2 = report["widths"]["fc1"], report["widths"]["fc2"]
    assert w1 < 128 and metrics["artifacts"]["delivered"].endswith("auto/model.onnx")
    assert metrics["final"]["macs"] == 64 * w1 + w1 * w2 + w2 * 10  # went on at those widths


def test_resume_reuses_the_width_scan_and_says_so(trained, stub_table, tmp_path, caplog) -> None:
    import logging

    model, data = trained
    check, _ = _checker([1.6, 1.7, 1.6, 1.7])
    options = {"steps": 4, "checker": check}
    first = auto_compress(model, data, speedup=1.5, out=tmp_path, latency=options, **FAST)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="deepshrink.auto"):
        again = auto_compress(model, data, speedup=1.5, out=tmp_path, latency=options,
                              resume=True, **FAST)  # fmt: skip
    assert "the saved width scan is reused" in caplog.text
    assert "auto width scan 1/" not in caplog.text  # nothing scanned again
    assert again.losses == first.losses and again.widths == first.widths
