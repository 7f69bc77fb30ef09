"""Recipes under ``torchrun`` with two CPU processes (gloo) against one process.

Two processes with ``batch_size: 16`` each must train like one process with ``batch_size: 32``
(the same global batches in the same order): weights equal within 1e-6 after pruning and k-means
fine-tuning (float summation order only; measured ~3e-8), masks and k-means assignments bit for
bit. QAT gets 2e-5: a range that differs in the last bit can move one activation across a
rounding step, which moves a weight by ~1e-6 (measured 8.8e-7). Every rank must hold the same
tensors after every stage, and only one set of files is written.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from deepshrink.recipe import load_recipe, prepare
from deepshrink.recipe.run import run_prepared

WORKER = Path(__file__).with_name("_worker.py")
#: Largest difference allowed between a 2-process and a 1-process weight (float summation order).
TOLERANCE = {"kmeans": 1e-6, "qat": 2e-5}

HEAD = """\
version: 1
name: {name}
latency: false
seed: 0
threads: 1
model: {{zoo: digits_mlp}}
data: {{name: digits, train_limit: 256, test_limit: 64}}
stages:
"""
PRUNE_KMEANS = """\
  - prune: {{method: magnitude, sparsity: 0.6}}
  - fine_tune: {{epochs: 2, batch_size: {batch}, lr: 0.01}}
  - quantize: {{method: kmeans, bits: 3}}
  - fine_tune: {{epochs: 2, batch_size: {batch}, lr: 0.005}}
"""
QAT = """\
  - quantize: {{method: qat}}
  - fine_tune: {{epochs: 3, batch_size: {batch}, lr: 0.05}}
"""


KILLED = """\
  - prune: {{method: magnitude, sparsity: 0.6}}
  - fine_tune: {{epochs: 3, batch_size: {batch}, lr: 0.01}}
"""


def _recipe(folder: Path, name: str, body: str, batch: int) -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(HEAD.format(name=name) + body.format(batch=batch))
    return path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def torchrun(args: list[str], env: dict[str, str], timeout: float = 300) -> tuple[int, str]:
    """Run the worker under torchrun with 2 processes; the exit code and the output. On a
    timeout the whole process group is killed, so no process outlives the test."""
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
        "--master_addr", "127.0.0.1", "--master_port", str(_free_port()), str(WORKER), *args,
    ]  # fmt: skip
    full = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1", **env}
    process = subprocess.Popen(
        command, env=full, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )  # fmt: skip
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        pytest.fail(f"torchrun did not end within {timeout}s:\n{output[-3000:]}")
    return process.returncode, output


def _single(recipe: Path, out: Path) -> Path:
    run_prepared(prepare(*load_recipe(recipe)), out, progress=False)
    return out


def test_two_processes_under_torchrun(tmp_path: Path) -> None:
    """One torchrun launch (one test, so that pytest-xdist never starts it twice), then each
    property in its own check."""
    runs = _launch(tmp_path)
    for name in ("kmeans", "qat"):
        _check_two_processes_train_like_one_with_the_global_batch(runs, name)
    _check_every_rank_holds_the_same_masks_and_centroids(runs)
    _check_one_set_of_files(runs)
    _check_a_diverged_rank_is_named(runs)
    _check_a_dead_rank_fails_the_job_and_resume_continues(runs)


def _launch(root: Path) -> dict[str, Any]:
    """One torchrun launch — a diverged model, two recipes, then a third recipe during which
    rank 1 dies, failing the job — and the 1-process references of the first two."""
    recipes = root / "recipes"
    recipes.mkdir()
    two = [
        _recipe(recipes, "kmeans", PRUNE_KMEANS, 16),
        _recipe(recipes, "qat", QAT, 16),
        _recipe(recipes, "killed", KILLED, 16),
    ]
    dump = root / "ranks"
    dump.mkdir()
    env = {"DS_TEST_DUMP": str(dump), "DS_TEST_DIVERGE": "1",
           "DS_TEST_DIE": "1:killed/02-fine_tune:2", "DEEPSHRINK_DIST_TIMEOUT": "30"}  # fmt: skip
    code, output = torchrun([str(root / "two"), *map(str, two)], env)
    one = root / "one"
    for name, body in (("kmeans", PRUNE_KMEANS), ("qat", QAT)):
        _single(_recipe(recipes, f"{name}-one", body, 32), one / name)
    return {"two": root / "two", "one": one, "ranks": dump, "code": code, "output": output,
            "killed": two[2]}  # fmt: skip


def _largest_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert sorted(a) == sorted(b)
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in a)


def _check_two_processes_train_like_one_with_the_global_batch(
    runs: dict[str, Any], name: str
) -> None:
    for stage in sorted(p.name for p in (runs["one"] / name / "stages").iterdir()):
        two = load_file(runs["two"] / name / "stages" / stage / "model.safetensors")
        one = load_file(runs["one"] / name / "stages" / stage / "model.safetensors")
        assert _largest_difference(two, one) <= TOLERANCE[name], stage
        for key in (k for k in one if one[k].dtype in (torch.bool, torch.int64, torch.uint8)):
            assert torch.equal(two[key], one[key]), (stage, key)  # masks, k-means assignments
    two = load_file(runs["two"] / name / "model.safetensors")
    one = load_file(runs["one"] / name / "model.safetensors")
    assert _largest_difference(two, one) <= TOLERANCE[name]


def _check_every_rank_holds_the_same_masks_and_centroids(runs: dict[str, Any]) -> None:
    dumps = sorted(runs["ranks"].glob("*-rank0.safetensors"))
    stages = {p.name.split("-rank")[0] for p in dumps}
    assert {"kmeans-03-quantize", "kmeans-04-fine_tune", "qat-02-fine_tune"} <= stages
    for first in dumps:
        zero, one = load_file(first), load_file(str(first).replace("-rank0.", "-rank1."))
        assert sorted(zero) == sorted(one)
        for key in zero:
            assert torch.equal(zero[key], one[key]), (first.name, key)
    last = load_file(runs["ranks"] / "kmeans-04-fine_tune-rank1.safetensors")
    assert any(k.endswith("_centroids") for k in last)
    final = load_file(runs["two"] / "kmeans" / "model.safetensors")
    for key in (k for k in last if k.endswith("weight_mask")):
        weight = final[key.removesuffix("_mask")]
        assert (~last[key]).sum() > 0 and bool((weight[~last[key]] == 0).all()), key


def _check_one_set_of_files(runs: dict[str, Any]) -> None:
    def files(folder: Path) -> list[str]:
        return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())

    for name in ("kmeans", "qat"):
        assert files(runs["two"] / name) == files(runs["one"] / name)
    assert sorted(p.name for p in runs["two"].iterdir()) == ["killed", "kmeans", "qat"]
    state = json.loads((runs["two"] / "kmeans" / "state.json").read_text())
    assert [entry["label"] for entry in state["done"]][-1] == "04-fine_tune"


def _check_a_diverged_rank_is_named(runs: dict[str, Any]) -> None:
    for rank in (0, 1):
        message = (runs["ranks"] / f"diverge-rank{rank}.txt").read_text()
        assert "after the test: rank 1 holds another 1.weight than rank 0" in message


def _digests(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("model.safetensors")}


def _check_a_dead_rank_fails_the_job_and_resume_continues(runs: dict[str, Any]) -> None:
    code, output = runs["code"], runs["output"]
    assert code != 0 and "exitcode  : 1" in output, output[-3000:]  # torchrun names rank 1
    out = runs["two"] / "killed"
    state = json.loads((out / "state.json").read_text())
    assert [entry["label"] for entry in state["done"]] == ["01-prune"]
    assert not (out / "metrics.json").exists()
    finished = _digests(out / "stages")
    result = run_prepared(prepare(*load_recipe(runs["killed"])), out, resume=True, progress=False)
    assert [entry["label"] for entry in result.stages][-1] == "02-fine_tune"
    after = _digests(out / "stages")
    assert {k: after[k] for k in finished} == finished  # the finished stages were kept
    assert (out / "metrics.json").is_file() and not list(out.rglob("*.tmp"))
