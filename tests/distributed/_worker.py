"""Run recipes under torchrun for the tests in this folder (not collected by pytest).

``python -m torch.distributed.run --nproc_per_node 2 _worker.py OUT RECIPE...`` runs each
recipe into ``OUT/<recipe stem>`` with :func:`deepshrink.recipe.run.run_recipe`, as the CLI does.
Test-only instruments, set by environment variables:

- ``DS_TEST_DUMP=folder``: after every stage each rank saves the model it holds there
  (``<stem>-<stage>-rank<r>.safetensors``), by wrapping the agreement check;
- ``DS_TEST_DIE=rank:recipe/stage:epoch``: that rank exits at once (``os._exit(1)``) when that
  epoch of that stage of that recipe starts (``...:hang``: it sleeps for an hour instead);
- ``DS_TEST_DIVERGE=1``: before the recipes, rank 1 perturbs a layer and the agreement check's
  message is written to ``DS_TEST_DUMP/diverge-rank<r>.txt``.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

import deepshrink.recipe.run as run_module
import deepshrink.train.loop as loop_module
from deepshrink.errors import DeepshrinkError
from deepshrink.train import distributed

RANK = int(os.environ.get("RANK", "0"))
DUMP = os.environ.get("DS_TEST_DUMP")
CURRENT = {"recipe": "", "stage": ""}
CHECK = distributed.check_agreement


def _dumping_check(original):
    def check(model: nn.Module, where: str) -> None:
        original(model, where)
        if DUMP:
            tensors = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
            name = f"{CURRENT['recipe']}-{CURRENT['stage']}-rank{RANK}.safetensors"
            save_file(tensors, str(Path(DUMP) / name))

    return check


def _tracking_stage(original):
    def run_stage(context, stage):
        CURRENT["stage"] = stage.label
        return original(context, stage)

    return run_stage


def _dying_epoch(original, rank: int, where: str, epoch: int, hang: bool):
    def run_epoch(trainer, number, bar):
        if rank == RANK and f"{CURRENT['recipe']}/{CURRENT['stage']}" == where and number == epoch:
            if hang:  # stops answering, as a stuck machine would
                time.sleep(3600)
            os._exit(1)
        return original(trainer, number, bar)

    return run_epoch


def _diverge() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 2), nn.Linear(2, 2))
    if RANK == 1:
        with torch.no_grad():
            model[1].weight[0, 0] += 1e-3
    try:
        CHECK(model, "the test")
        message = "no error"
    except DeepshrinkError as error:
        message = str(error)
    (Path(DUMP) / f"diverge-rank{RANK}.txt").write_text(message)


def main(out: str, recipes: list[str]) -> None:
    distributed.check_agreement = _dumping_check(distributed.check_agreement)
    run_module.run_stage = _tracking_stage(run_module.run_stage)
    if os.environ.get("DS_TEST_DIE"):
        rank, where, epoch, *hang = os.environ["DS_TEST_DIE"].split(":")
        loop_module._run_epoch = _dying_epoch(
            loop_module._run_epoch, int(rank), where, int(epoch), hang == ["hang"]
        )
    if os.environ.get("DS_TEST_DIVERGE"):
        distributed.join(True)
        _diverge()
    for recipe in recipes:
        CURRENT["recipe"] = Path(recipe).stem
        run_module.run_recipe(recipe, Path(out) / Path(recipe).stem, progress=False)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
