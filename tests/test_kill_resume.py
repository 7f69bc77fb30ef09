"""A run interrupted between (or during) writes resumes to the same metrics and leaves no
temporary file. ``benchmarks/kill_resume.py`` does this with real ``kill -9`` at 20 moments;
here an interruption is laid out by hand: the state of an earlier stage, a half-written
temporary file from ``atomic_open``."""

from __future__ import annotations

import json
from pathlib import Path

from deepshrink.recipe import load_recipe, prepare
from deepshrink.recipe.run import run_prepared

RECIPE = """\
version: 1
name: resume
latency: false
model: {zoo: digits_mlp}
data: {name: digits, train_limit: 128, test_limit: 64}
stages:
  - train: {epochs: 1, batch_size: 32}
  - prune: {method: magnitude, sparsity: 0.5}
"""


def _metrics(out: Path) -> dict[str, object]:
    return json.loads((out / "metrics.json").read_text().replace(str(out), "<out>"))


def test_resume_after_an_interruption_gives_the_same_metrics_and_no_tmp(tmp_path: Path) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_text(RECIPE)
    prepared = prepare(*load_recipe(recipe))
    first, second = tmp_path / "first", tmp_path / "second"
    run_prepared(prepared, first, progress=False)
    expected = _metrics(first)
    run_prepared(prepare(*load_recipe(recipe)), second, progress=False)
    # the state a kill after the first stage leaves, with a write cut short in the middle
    state = json.loads((second / "state.json").read_text())
    state["done"] = state["done"][:1]
    (second / "state.json").write_text(json.dumps(state))
    for name in ("metrics.json", "model.safetensors", "report.md"):
        (second / name).unlink()
    stale = [second / ".state.json.k2j3h4.tmp", second / "stages" / "02-prune" / ".m.x.tmp"]
    for path in stale:
        path.write_bytes(b"half a file")
    run_prepared(prepare(*load_recipe(recipe)), second, resume=True, progress=False)
    assert _metrics(second) == expected
    assert not [p for p in second.rglob("*.tmp")]


def test_an_interrupted_atomic_write_leaves_nothing(tmp_path: Path) -> None:
    from deepshrink._io import atomic_open

    target = tmp_path / "x.json"
    try:
        with atomic_open(target, "w") as file:
            file.write("partial")
            raise KeyboardInterrupt
    except KeyboardInterrupt:
        pass
    assert list(tmp_path.iterdir()) == []
