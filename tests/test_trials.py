"""Independent trials: one after another, or as Ray tasks with the same results.

The Ray checks need the optional extra (``deepshrink[ray]``, in ``dev``): without it they are
skipped, except under CI where that is an error. One test starts a local Ray (2 CPUs) once.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import math
import operator
import os
import socket
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from deepshrink._trials import map_trials, ray_session
from deepshrink.cli import main
from deepshrink.data.dataset import ArrayDataset
from deepshrink.errors import ConfigError
from deepshrink.eval.sensitivity import sensitivity

DIGITS = """\
version: 1
name: tiny
latency: false
model: {zoo: digits_mlp, args: {hidden_sizes: [32]}}
data: {name: digits, train_limit: 128, test_limit: 64}
stages:
  - train: {epochs: 1, batch_size: 32}
  - prune: {method: magnitude, sparsity: 0.5}
"""

# ``hidden`` other than 32 builds a model whose second layer does not fit the first: it is
# built and checked fine, then fails in its first forward pass, inside the trial.
FACTORY = """\
from torch import nn


def build(hidden=32):
    return nn.Sequential(nn.Flatten(), nn.Linear(64, hidden), nn.ReLU(), nn.Linear(32, 10))
"""

FACTORY_RECIPE = DIGITS.replace(
    "{zoo: digits_mlp, args: {hidden_sizes: [32]}}", "{factory: 'tinynet:build', args: {}}"
)
GRID = ["model.args.hidden=32,12", "stages[1].prune.sparsity=0.3,0.9"]


def _recipe(folder: Path, text: str = DIGITS) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tinynet.py").write_text(FACTORY)
    (folder / "tiny.yaml").write_text(text)
    return folder / "tiny.yaml"


def _outputs(out: Path) -> dict[str, Any]:
    """What a sweep leaves that must not depend on where its trials ran."""
    return {
        "rows": json.loads((out / "sweep.json").read_text()),
        "table": (out / "sweep.md").read_text(),
        "models": {p.parent.name: p.read_bytes() for p in out.glob("*/model.safetensors")},
    }


# --- one after another ---------------------------------------------------------------------


def test_trials_keep_their_order_and_each_failure_stays_with_its_trial() -> None:
    trials = map_trials(operator.truediv, [2, 0, 4], shared=8)
    assert [(t.item, t.value, t.ok) for t in trials] == [(2, 4.0, True), (0, None, False),
                                                        (4, 2.0, True)]  # fmt: skip
    assert trials[1].error == "ZeroDivisionError: division by zero"


def test_backend_settings_are_checked_before_any_trial() -> None:
    calls: list[int] = []
    for kwargs, message in [({"backend": "dask"}, "expected one of serial, ray"),
                            ({"address": "auto"}, "for the ray backend"),
                            ({"backend": "ray", "workers": 0}, "workers must be in")]:  # fmt: skip
        with pytest.raises(ConfigError, match=message):
            map_trials(calls.append, [1], **kwargs)
    assert calls == []


def test_the_ray_backend_without_ray_names_the_install_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    recipe = _recipe(tmp_path / "recipe")
    with pytest.raises(ConfigError, match=r"pip install 'deepshrink\[ray\]'"):
        map_trials(abs, [1], backend="ray")
    out = tmp_path / "sweep"
    code = main(["sweep", str(recipe), "--set", "seed=1,2", "--out", str(out), "--backend", "ray"])
    err = capsys.readouterr().err
    assert code == 2
    assert err == "error: the ray backend needs Ray: pip install 'deepshrink[ray]'\n"
    assert not out.exists()
    code = main(["sweep", str(recipe), "--set", "seed=1", "--out", str(out), "--workers", "2"])
    assert code == 2
    assert "--workers and --gpus-per-trial need --backend ray" in capsys.readouterr().err


# --- on Ray --------------------------------------------------------------------------------


def _need_ray() -> None:
    if importlib.util.find_spec("ray") is None:
        if os.environ.get("CI"):
            pytest.fail("ray is not installed; CI installs it with the dev extra")
        pytest.skip("ray is not installed: pip install 'deepshrink[ray]'")


def test_an_address_where_no_cluster_answers_is_refused_at_once() -> None:
    _need_ray()
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens there
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(ConfigError, match=f"--address '127.0.0.1:{port}': no Ray cluster answers"):
        map_trials(abs, [1], backend="ray", address=f"127.0.0.1:{port}")
    with pytest.raises(ConfigError, match="expected HOST:PORT"):
        map_trials(abs, [1], backend="ray", address="head-node")


def _serial_sweep(folder: Path) -> dict[str, Any]:
    """The serial sweep of ``GRID`` on the command line (2 of its 4 variants fail), run from a
    process with 2 torch threads where the Ray workers have 1."""
    recipe, out = _recipe(folder / "recipe", FACTORY_RECIPE), folder / "serial"
    printed = io.StringIO()
    torch.set_num_threads(2)
    try:
        with contextlib.redirect_stdout(printed):
            code = main(["-q", "sweep", str(recipe), "--set", GRID[0], "--set", GRID[1], "--out",
                         str(out), "--allow-code"])  # fmt: skip
    finally:
        torch.set_num_threads(1)
    return {"recipe": recipe, "code": code, "printed": printed.getvalue(), **_outputs(out)}


def _check_failed_variants(serial: dict[str, Any]) -> None:
    rows = serial["rows"]
    assert serial["code"] == 1
    assert [(r["label"], r["status"]) for r in rows] == [
        ("hidden=32_sparsity=0.3", "ok"), ("hidden=32_sparsity=0.9", "ok"),
        ("hidden=12_sparsity=0.3", "failed"), ("hidden=12_sparsity=0.9", "failed"),
    ]  # fmt: skip
    assert rows[0]["nonzero_parameters"] > rows[1]["nonzero_parameters"]
    assert rows[0]["error"] is None and rows[2]["accuracy"] is None
    assert rows[2]["error"].startswith("RuntimeError: mat1 and mat2 shapes cannot be multiplied")
    assert sorted(serial["models"]) == ["hidden=32_sparsity=0.3", "hidden=32_sparsity=0.9"]
    assert "| hidden=12_sparsity=0.3 | — |" in serial["table"]
    assert "failed: RuntimeError: mat1" in serial["table"]
    failed = "2 of 4 variants failed: hidden=12_sparsity=0.3, hidden=12_sparsity=0.9"
    assert failed in serial["printed"]


def _check_ray_sweep(serial: dict[str, Any], out: Path) -> None:
    options = ["--backend", "ray", "--workers", "2", "--allow-code", "--out", str(out)]
    code = main(["-q", "sweep", str(serial["recipe"]), "--set", GRID[0], "--set", GRID[1],
                 *options])  # fmt: skip
    assert code == 1
    assert _outputs(out) == {k: serial[k] for k in ("rows", "table", "models")}


def _check_sensitivity() -> None:
    torch.manual_seed(0)
    data = ArrayDataset(torch.rand(256, 1, 4, 4), torch.randint(0, 4, (256,)))
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4))
    serial = sensitivity(model, data, sparsities=(0.5, 0.9, 0.99))
    ray = sensitivity(model, data, sparsities=(0.5, 0.9, 0.99), backend="ray", workers=2)
    assert ray == serial and list(ray.curves) == ["1", "3"]
    assert len({a for curve in ray.curves.values() for _, a in curve}) > 1  # the trials differ


def _check_ray_trials(ray: Any, recipe: Path, out: Path) -> None:
    trials = map_trials(math.sqrt, [4.0, -1.0, 9.0], backend="ray")
    assert [(t.value, t.error) for t in trials] == [(2.0, None),
                                                    (None, "ValueError: math domain error"),
                                                    (3.0, None)]  # fmt: skip
    assert [t.value for t in map_trials(operator.truediv, [2, 4], shared=8, backend="ray")] == [
        4.0, 2.0
    ]  # fmt: skip
    died = map_trials(os._exit, [3], backend="ray")[0]  # the worker process exits mid-task
    assert not died.ok and died.error.startswith("WorkerCrashedError")
    gpus = ray.cluster_resources().get("GPU", 0) + 1  # more than the cluster has: Ray would
    with pytest.raises(ConfigError, match=f"gpus per trial: {gpus:g} asked, the Ray cluster has"):
        map_trials(abs, [1], backend="ray", gpus=gpus)  # wait for them forever
    argv = ["sweep", str(recipe), "--set", GRID[0], "--allow-code", "--out", str(out),
            "--backend", "ray", "--gpus-per-trial", f"{gpus:g}"]  # fmt: skip
    assert main(argv) == 2 and not out.exists()  # refused before anything is written


def test_sweeps_and_scans_serially_and_on_ray(tmp_path: Path) -> None:
    """One test, so that Ray starts once and the serial sweep runs once even when pytest-xdist
    spreads this module's tests over processes. Serially: 2 of 4 variants fail, each is a row
    with its error, the others run. On a local Ray with 2 CPUs: the same sweep gives the same
    rows, table and model files byte for byte; a sensitivity scan equals the serial one; trials
    keep their order and errors, a dead worker fails its trial only, too many GPUs are refused."""
    serial = _serial_sweep(tmp_path)
    _check_failed_variants(serial)
    _need_ray()
    with ray_session(workers=2) as ray:
        _check_ray_sweep(serial, tmp_path / "ray")
        _check_sensitivity()
        _check_ray_trials(ray, serial["recipe"], tmp_path / "gpus")
    assert not ray.is_initialized()  # the Ray started for the test is shut down
