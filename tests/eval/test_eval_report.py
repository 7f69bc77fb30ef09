"""Report, compare() and report() against hand-built values and models with known outputs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from deepshrink.data.dataset import ArrayDataset
from deepshrink.errors import ConfigError
from deepshrink.eval import Report, compare, report, saved_size
from deepshrink.eval.timing import Speed


def dense() -> Report:
    return Report(
        name="dense", accuracy=0.5, top5=0.75, loss=1.0, samples=100, parameters=266_610,
        nonzero_parameters=266_610, macs=266_200, dense_bytes=1_066_440, file_bytes=1_066_800,
        gzip_bytes=990_000, latency_ms_batch1=0.2, latency_ms_batch64=8.0, threads=2,
    )  # fmt: skip


def pruned() -> Report:
    return Report(
        name="pruned", accuracy=0.75, top5=0.75, loss=0.5, samples=100, parameters=266_610,
        nonzero_parameters=26_661, macs=133_100, dense_bytes=1_066_440, file_bytes=106_680,
        gzip_bytes=99_000, latency_ms_batch1=0.1, latency_ms_batch64=2.0, threads=2,
        extra={"method": "magnitude"},
    )  # fmt: skip


def test_sparsity() -> None:
    assert pruned().sparsity == 1 - 26_661 / 266_610
    assert dense().sparsity == 0.0
    empty = Report(
        parameters=0, nonzero_parameters=0, macs=0, dense_bytes=0, file_bytes=0, gzip_bytes=0
    )
    assert empty.sparsity == 0.0


def test_compare_ratios() -> None:
    result = compare(dense(), pruned())
    assert result.compression == 10.0
    assert result.dense_compression == 1.0
    assert result.gzip_compression == 10.0
    assert result.parameters_ratio == 1.0
    assert result.nonzero_ratio == 10.0
    assert result.macs_ratio == 2.0
    assert result.speedup_batch1 == 2.0
    assert result.speedup_batch64 == 4.0
    assert result.accuracy_delta == 25.0
    assert result.to_dict()["before"] == dense().to_dict()


def test_compare_without_latency_or_accuracy() -> None:
    after = Report(
        parameters=10, nonzero_parameters=10, macs=5, dense_bytes=40, file_bytes=50, gzip_bytes=45
    )
    result = compare(dense(), after)
    assert result.speedup_batch1 is None and result.speedup_batch64 is None
    assert result.accuracy_delta is None
    assert "| latency, batch 1 | 0.200 ms | n/a | n/a |" in result.to_markdown()


def test_comparison_markdown() -> None:
    text = compare(dense(), pruned()).to_markdown()
    assert text.splitlines()[0] == "| metric | before | after | change |"
    # Wilson 95 % interval of 50 of 100: 40.38–59.62 %
    assert "| top-1 accuracy (95% interval) | 50.00% (40.38–59.62) | 75.00% (" in text
    assert "| test samples | 100 | 100 |  |" in text
    assert "| parameters | 266,610 | 266,610 | 1.00× |" in text
    assert "| non-zero parameters | 266,610 | 26,661 | 10.00× fewer |" in text
    assert "| sparsity | 0.00% | 90.00% | +90.00 pp |" in text
    assert "| MACs (batch 1) | 266.20 k MACs | 133.10 k MACs | 2.00× fewer |" in text
    assert "| file on disk | 1.07 MB | 106.68 kB | 10.00× smaller |" in text
    # latencies measured at different times are shown, never claimed
    assert "| latency, batch 64 | 8.000 ms | 2.000 ms | timed separately: no claim |" in text
    speed = {64: Speed(ratio=3.9, low=3.7, high=4.1, verdict="faster", cpu_ms=2.0, wall_ms=2.1,
                       baseline_cpu_ms=7.8, rounds=30)}  # fmt: skip
    timed = compare(dense(), pruned(), speed=speed, speed_runtime="ONNX Runtime",
                    changed_predictions=7).to_markdown()  # fmt: skip
    assert (
        "| latency, batch 64 (ONNX Runtime, side by side) | 7.800 ms | 2.000 ms | 3.90× faster "
        "(3.70–4.10) |" in timed
    )
    assert "| test samples | 100 | 100 | 7 predictions changed (7.00%) |" in timed


def test_report_markdown() -> None:
    text = Report(
        name="lenet", accuracy=0.98234, top5=0.99991, loss=0.0812, samples=10_000,
        parameters=266_610, nonzero_parameters=21_329, macs=266_200, dense_bytes=1_066_440,
        file_bytes=532, gzip_bytes=4_200_000_000, latency_ms_batch1=0.0523, threads=2,
    ).to_markdown()  # fmt: skip
    for row in [
        "| metric | value |",
        "| model | lenet |",
        "| top-1 accuracy | 98.23% |",
        "| top-5 accuracy | 99.99% |",
        "| loss | 0.0812 |",
        "| parameters | 266,610 |",
        "| non-zero parameters | 21,329 |",
        "| sparsity | 92.00% |",
        "| MACs (batch 1) | 266.20 k MACs |",
        "| dense fp32 size | 1.07 MB |",
        "| file size | 532 B |",
        "| gzip size | 4.20 GB |",
        "| latency, batch 1 | 0.052 ms |",
        "| latency, batch 64 | n/a |",
        "| threads | 2 |",
    ]:
        assert row in text


def test_json_round_trip(tmp_path: Path) -> None:
    original = pruned()
    assert Report.from_dict(json.loads(original.to_json())) == original
    assert Report.from_json(original.to_json()) == original
    original.save(tmp_path / "report.json")
    assert Report.load(tmp_path / "report.json") == original


def test_from_dict_rejects_bad_fields() -> None:
    with pytest.raises(ConfigError, match="unknown Report fields"):
        Report.from_dict({**dense().to_dict(), "speed": 1})
    with pytest.raises(ConfigError, match="incomplete Report"):
        Report.from_dict({"parameters": 1})


def constant_classifier() -> nn.Sequential:
    """Always predicts class 0: zero weights, bias (1, 0, 0)."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    with torch.no_grad():
        model[1].weight.zero_()
        model[1].bias.copy_(torch.tensor([1.0, 0.0, 0.0]))
    return model


def known_labels() -> ArrayDataset:
    return ArrayDataset(torch.rand(8, 1, 2, 2), torch.tensor([0, 0, 0, 0, 1, 1, 2, 2]))


def test_report_on_dataset() -> None:
    model = constant_classifier()
    result = report(model, known_labels(), latency=False, batch_size=3)
    assert result.name == "Sequential"
    assert result.accuracy == 0.5 and result.top5 == 1.0 and result.samples == 8
    # cross-entropy of logits (1, 0, 0): -log(e / (e + 2)) for label 0, -log(1 / (e + 2)) otherwise
    assert result.loss == pytest.approx(math.log(math.e + 2) - 0.5)
    assert (result.parameters, result.nonzero_parameters, result.macs) == (15, 1, 12)
    assert result.dense_bytes == 60
    assert (result.file_bytes, result.gzip_bytes) == saved_size(model)
    assert result.latency_ms_batch1 is None and result.threads is None


def test_report_measures_latency_and_restores_model() -> None:
    model = constant_classifier()
    threads = torch.get_num_threads()
    result = report(model, known_labels(), threads=1, min_run_time=0.02, name="constant")
    assert result.name == "constant" and result.threads == 1
    assert result.latency_ms_batch1 > 0 and result.latency_ms_batch64 > 0
    assert model.training and torch.get_num_threads() == threads


def test_report_uses_model_example_inputs() -> None:
    class WithInputs(nn.Linear):
        def example_inputs(self, batch_size: int = 1) -> tuple[torch.Tensor, ...]:
            return (torch.zeros(batch_size, 4),)

    assert report(WithInputs(4, 2), latency=False).macs == 8


def test_report_macs_are_per_sample() -> None:
    result = report(nn.Linear(4, 2), example_inputs=torch.zeros(5, 4), latency=False)
    assert result.macs == 8 and result.accuracy is None


def test_report_measures_given_file(tmp_path: Path) -> None:
    path = tmp_path / "model.dsz"
    path.write_bytes(bytes(1234))
    result = report(nn.Linear(4, 2), example_inputs=torch.zeros(1, 4), file=path, latency=False)
    assert result.file_bytes == 1234 and result.gzip_bytes < 100


def test_report_needs_example_inputs() -> None:
    with pytest.raises(ConfigError, match="example_inputs"):
        report(nn.Linear(4, 2), latency=False)
