"""``auto_compress`` end to end on digits_mlp: budget met on the file, refusal, resume."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest
import torch

import deepshrink as ds
from deepshrink.auto import FineTune, auto_compress
from deepshrink.auto import search as auto_search
from deepshrink.auto.allocate import smallest_total
from deepshrink.auto.candidates import Option
from deepshrink.errors import ConfigError

GRID = {"sparsities": (0.0, 0.7, 0.9), "bits": (2, 4), "held_out": 300, "scan_samples": 300}
TUNE = FineTune(prune_epochs=1, share_epochs=1, batch_size=64)


def test_delivered_file_meets_the_byte_budget(trained, tmp_path: Path) -> None:
    model, data = trained
    before = copy.deepcopy(model.state_dict())
    report = auto_compress(model, data, max_bytes=6000, out=tmp_path, fine_tune=TUNE, **GRID)
    path = Path(report.path)
    assert path.stat().st_size == report.delivered_bytes <= 6000
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # untouched
    loaded = ds.load(path)
    for name, option in report.layers.items():
        weight = loaded.get_submodule(name).weight
        kept = int((weight != 0).sum())
        assert kept <= round((1 - option["sparsity"]) * weight.numel()) + 1
        assert weight[weight != 0].unique().numel() <= 2 ** option["bits"]
    x, y = data.test.without_transform().batch(torch.arange(len(data.test)))
    accuracy = float((loaded(x).argmax(1) == y).float().mean())
    assert accuracy == pytest.approx(report.test_accuracy)
    saved = json.loads((tmp_path / "auto.json").read_text())
    assert saved["delivered_bytes"] == report.delivered_bytes
    assert saved["front"], "the size-accuracy front is reported"
    summary = (tmp_path / "auto.md").read_text()
    assert f"{report.delivered_bytes:,} B on disk (budget 6,000 B)" in summary
    assert all(f"| {name} | {o['sparsity']:g} | {o['bits']} |" in summary
               for name, o in report.layers.items())  # fmt: skip
    assert (tmp_path / "front.png").read_bytes().startswith(b"\x89PNG")


def test_impossible_budget_is_refused_with_the_best_reachable_size(trained, tmp_path) -> None:
    model, data = trained
    with pytest.raises(ConfigError, match="cannot be met") as caught:
        auto_compress(model, data, max_bytes=300, out=tmp_path, fine_tune=TUNE, **GRID)
    scan = json.loads((tmp_path / "scan.json").read_text())
    table = {n: [Option(**o) for o in opts] for n, opts in scan["table"].items()}
    from deepshrink.auto.state import fixed_bytes

    least = smallest_total(table, fixed_bytes(model, list(table)))
    figures = [int(x.replace(",", "")) for x in re.findall(r"\d[\d,]+", str(caught.value))]
    assert least in figures and least > 300


def test_resume_after_interruption_gives_the_same_file(trained, tmp_path, monkeypatch) -> None:
    model, data = trained
    whole = auto_compress(model, data, max_bytes=6000, out=tmp_path / "a", fine_tune=TUNE, **GRID)
    real = auto_search.fine_tune_
    phases: list[str] = []

    def interrupted(*args, **kwargs):
        phases.append(kwargs["phase"])
        if kwargs["phase"] == "sharing":
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(auto_search, "fine_tune_", interrupted)
    with pytest.raises(KeyboardInterrupt):
        auto_compress(model, data, max_bytes=6000, out=tmp_path / "b", fine_tune=TUNE, **GRID)

    def counted(*args, **kwargs):
        phases.append(kwargs["phase"])
        return real(*args, **kwargs)

    def no_scan(*args, **kwargs):
        raise AssertionError("the scan ran again on resume")

    monkeypatch.setattr(auto_search, "fine_tune_", counted)
    monkeypatch.setattr("deepshrink.auto.state.scan", no_scan)
    resumed = auto_compress(model, data, max_bytes=6000, out=tmp_path / "b", fine_tune=TUNE,
                            resume=True, **GRID)  # fmt: skip
    assert phases == ["pruning", "sharing", "sharing"]  # pruning's fine-tune was not redone
    assert Path(resumed.path).read_bytes() == Path(whole.path).read_bytes()


def test_budget_arguments_are_checked(trained, tmp_path) -> None:
    model, data = trained
    with pytest.raises(ConfigError, match="exactly one budget"):
        auto_compress(model, data, out=tmp_path)
    with pytest.raises(ConfigError, match="exactly one budget"):
        auto_compress(model, data, max_bytes=1000, max_accuracy_drop=1.0, out=tmp_path)


def test_scan_measures_each_option_from_the_uncompressed_weight() -> None:
    from deepshrink.auto.candidates import layer_bytes, option_weight, scan
    from deepshrink.data.dataset import ArrayDataset

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 32), torch.nn.ReLU(),
                                torch.nn.Linear(32, 3))  # fmt: skip
    held = ArrayDataset(torch.rand(64, 1, 4, 4), torch.randint(0, 3, (64,)))
    before = copy.deepcopy(model)
    table, _ = scan(model, held, ["1", "3"], (0.0, 0.5, 0.9), (1, 3))
    for name, options in table.items():
        assert len(options) == 6
        for option in options:
            fresh = option_weight(before, name, option.sparsity, option.bits)
            assert option.bytes == layer_bytes(f"{name}.weight", fresh)
            assert int((fresh != 0).sum()) == round((1 - option.sparsity) * fresh.numel())
            assert fresh[fresh != 0].unique().numel() <= 2**option.bits
    assert all(
        torch.equal(a, b) for a, b in zip(model.parameters(), before.parameters(), strict=True)
    )


def test_accuracy_drop_budget_takes_the_smallest_rung_within_it(trained, tmp_path) -> None:
    model, data = trained
    report = auto_compress(model, data, max_accuracy_drop=5.0, out=tmp_path, fine_tune=TUNE, **GRID)
    original = report.reference["accuracy"]  # the whole held-out split (300 of 300 samples)
    assert 100 * (original - report.held_out_accuracy) <= 5.0
    within = [p for p in report.front if 100 * (original - p["accuracy"]) <= 5.0]
    smallest = min(p["bytes"] for p in within)
    assert report.attempts[0]["budget"] == smallest  # the smallest rung is tried first
    assert report.delivered_bytes <= report.attempts[-1]["budget"]
    assert Path(report.path).stat().st_size == report.delivered_bytes


def test_a_missed_delivered_file_takes_the_next_smaller_allocation(trained, tmp_path, monkeypatch):
    model, data = trained
    real = auto_search.delivered_bytes
    calls: list[int] = []

    def first_file_too_big(net, path=None):
        size = real(net, path)
        if path is not None and not calls:
            calls.append(size)
            return 6001  # as if fine-tuning had changed the coded size past the budget
        return size

    monkeypatch.setattr(auto_search, "delivered_bytes", first_file_too_big)
    report = auto_compress(model, data, max_bytes=6000, out=tmp_path, fine_tune=TUNE, **GRID)
    tuned = [a for a in report.attempts if "delivered" in a]
    assert tuned[0]["delivered"] == 6001 and tuned[-1]["delivered"] == report.delivered_bytes
    assert len(tuned) == 2 and tuned[1]["encoded_untuned"] <= 6000 - 2
    assert Path(report.path).stat().st_size == report.delivered_bytes <= 6000
