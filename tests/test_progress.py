"""Progress is never silent when output is redirected: log lines per epoch, per stage, and at
least every few seconds of work (checked with a stubbed clock, never with real timing)."""

from __future__ import annotations

import io
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from deepshrink import _progress
from deepshrink._progress import Heartbeat
from deepshrink.data.dataset import ArrayDataset
from deepshrink.train import loop
from deepshrink.train.loop import fit

TINY = """\
version: 1
name: tiny
seed: 3
latency: false
model: {zoo: digits_mlp}
data: {name: digits, train_limit: 256, test_limit: 96}
stages:
  - train: {epochs: 2, batch_size: 32}
  - prune: {method: magnitude, sparsity: 0.7, exclude: fc3}
"""


def test_redirected_run_logs_every_epoch_and_stage(tmp_path: Path) -> None:
    """``deepshrink run`` with stdout and stderr in a file: one line per epoch and per stage."""
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(TINY)
    log = tmp_path / "run.log"
    cmd = [sys.executable, "-m", "deepshrink.cli", "run", str(recipe), "--out", str(tmp_path / "o")]
    forced = ("FORCE_COLOR", "FORCE_TERMINAL", "TTY_COMPATIBLE", "TTY_INTERACTIVE")
    env = {k: v for k, v in os.environ.items() if k not in forced} | {"OMP_NUM_THREADS": "1"}
    with log.open("w") as out:
        done = subprocess.run(cmd, stdout=out, stderr=out, timeout=600, env=env)
    text = log.read_text()
    assert done.returncode == 0, text
    lines = text.splitlines()
    for epoch in (1, 2):
        epoch_lines = [line for line in lines if f"epoch {epoch}/2: lr" in line]
        assert len(epoch_lines) == 1, text
        assert re.search(r"train loss \d\.\d{4} acc \d+\.\d\d%.*\(\d+\.\ds\)$", epoch_lines[0])
    for stage in ("train", "prune"):
        assert any(re.search(rf"stage \S*{stage}\S*: started$", line) for line in lines), text
        ends = [line for line in lines if re.search(rf"stage \S*{stage}: done in \d", line)]
        assert len(ends) == 1 and "parameters" in ends[0] and "accuracy" in ends[0], text
    prune_end = next(line for line in lines if re.search(r"stage \S*prune: done", line))
    assert "(70.0% zero)" in prune_end or re.search(r"\((6\d|7\d)\.\d% zero\)", prune_end), text
    assert "\x1b[" not in text  # plain lines, no terminal escape codes


def test_heartbeat_is_due_every_interval_of_a_stubbed_clock() -> None:
    now = [100.0]
    beat = Heartbeat(10.0, clock=lambda: now[0])
    fired = []
    for tick in range(1, 61):  # one minute in steps of 1 s
        now[0] = 100.0 + tick
        if beat.due():
            fired.append(tick)
    assert fired == [10, 20, 30, 40, 50, 60]
    beat.reset()
    now[0] += 9.5
    assert not beat.due()


class _StepClock:
    """A clock that advances ``step`` seconds each time it is read."""

    def __init__(self, step: float) -> None:
        self.now, self.step = 0.0, step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


def test_fit_logs_samples_at_least_every_interval_when_not_on_a_terminal(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Each clock read is 4 s of work, interval 10 s: a line every third step or sooner, with
    the samples seen of the epoch's total and the running loss."""
    clock = _StepClock(4.0)
    monkeypatch.setattr(_progress, "on_terminal", lambda: False)
    monkeypatch.setattr(loop._progress_lines, "Heartbeat", lambda: Heartbeat(10.0, clock=clock))
    torch.manual_seed(0)
    data = ArrayDataset(torch.rand(160, 1, 2, 2), torch.randint(0, 2, (160,)))
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
    with caplog.at_level(logging.INFO, logger="deepshrink"):
        fit(model, data, epochs=1, batch_size=16, progress=True)
    beats = [r.getMessage() for r in caplog.records if "samples" in r.getMessage()]
    # 10 steps; reads at start and per step every 4 s: due at 12, 24, 36 s (steps 3, 6, 9)
    assert [m.split(":")[1].split(" samples")[0].strip() for m in beats] == [
        "48/160",
        "96/160",
        "144/160",
    ]
    assert all(re.search(r"^epoch 1/1: .* samples, loss \d\.\d{4}, acc", m) for m in beats)


def test_fit_without_progress_logs_no_sample_lines(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(_progress, "on_terminal", lambda: False)
    monkeypatch.setattr(
        loop._progress_lines, "Heartbeat", lambda: Heartbeat(0.0, clock=_StepClock(1.0))
    )
    data = ArrayDataset(torch.rand(64, 1, 2, 2), torch.randint(0, 2, (64,)))
    with caplog.at_level(logging.INFO, logger="deepshrink"):
        fit(nn.Sequential(nn.Flatten(), nn.Linear(4, 2)), data, epochs=1, batch_size=16,
            progress=False)  # fmt: skip
    messages = [r.getMessage() for r in caplog.records]
    assert not any("samples" in m for m in messages)
    assert sum(m.startswith("epoch 1/1: lr") for m in messages) == 1


def test_log_handler_is_plain_when_not_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_progress, "on_terminal", lambda: False)
    handler = _progress.log_handler()
    assert isinstance(handler, logging.StreamHandler)
    assert handler.stream is sys.stderr  # the stderr of now, even after it is replaced
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert handler.stream is sys.stderr
    record = logging.LogRecord("deepshrink.x", logging.INFO, "f", 1, "epoch 1/2: done", (), None)
    assert re.fullmatch(r"\d\d:\d\d:\d\d INFO epoch 1/2: done", handler.format(record))


def test_long_evaluation_logs_while_it_scores(caplog: pytest.LogCaptureFixture) -> None:
    from deepshrink.train.evaluation import evaluate

    data = ArrayDataset(torch.rand(40, 1, 2, 2), torch.zeros(40, dtype=torch.long))
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    with caplog.at_level(logging.INFO, logger="deepshrink"):
        list(_progress.ticking(range(3), "scoring", logging.getLogger("deepshrink.t"), 0.0))
        assert evaluate(model, data, batch_size=8).count == 40
    lines = [r.getMessage() for r in caplog.records]
    assert lines[:3] == [f"scoring: {n} batches done (0s)" for n in range(3)]
    assert lines[3:] == []  # a fast evaluation (under the 10 s interval) stays quiet
