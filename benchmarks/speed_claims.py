"""Do reports make speed claims the measurement supports, on a machine whose cores are busy?

Two `yes > /dev/null` processes keep both cores busy while

1. the demo recipe (`recipes/demo_digits.yaml`: pruning and k-means, which leave the dense
   architecture unchanged) runs five times; its report must make **no** speed claim;
2. a channel-pruned LeNet-300-100 (``ChannelPruning(ratio=0.75)``: 4.4× fewer MACs; random
   weights, speed does not depend on them) is compared with the dense one five times; it must be
   reported faster each time, with its interval.

Speed is measured as the reports do it (:func:`deepshrink.eval.timing.compare_speed`: baseline
and candidate alternating call by call, one thread, thread CPU time, bootstrap interval of the
median ratio, a claim only outside ±5 %).

    python benchmarks/speed_claims.py
"""

from __future__ import annotations

import copy
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import torch
from _common import write_result

import deepshrink as ds
from deepshrink.eval.timing import compare_speed
from deepshrink.recipe import run_recipe

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "demo_digits.yaml"


def demo_runs(count: int) -> list[dict[str, Any]]:
    rows = []
    for run in range(count):
        folder = Path(tempfile.mkdtemp()) / "demo"
        result = run_recipe(RECIPE, folder, progress=False)
        speed = result.comparison.speed or {}
        rows.append({"run": run + 1, "load_average": os.getloadavg(),
                     **{f"batch{b}": s.to_dict() for b, s in speed.items()}})  # fmt: skip
    return rows


def pruned_runs(count: int) -> dict[str, Any]:
    dense = ds.zoo.create("lenet300")
    pruned = copy.deepcopy(dense)
    example = dense.example_inputs()
    ds.prune_(pruned, ds.ChannelPruning(ratio=0.75, round_to=1), example_inputs=example)
    macs = ds.eval.count_macs(dense, example), ds.eval.count_macs(pruned, example)
    rows = []
    for run in range(count):
        speed = compare_speed(dense, pruned, example, batch_sizes=(1, 64), rounds=30)
        rows.append({"run": run + 1, "load_average": os.getloadavg(),
                     **{f"batch{b}": s.to_dict() for b, s in speed.items()}})  # fmt: skip
    return {"macs_dense": macs[0], "macs_pruned": macs[1], "runs": rows}


def main() -> None:
    torch.manual_seed(0)
    busy = [subprocess.Popen(["yes"], stdout=subprocess.DEVNULL) for _ in range(2)]
    try:
        demo = demo_runs(5)
        pruned = pruned_runs(5)
    finally:
        for process in busy:
            process.kill()
    payload = {"busy": "two `yes > /dev/null` processes", "demo_recipe": demo,
               "channel_pruned": pruned}  # fmt: skip
    print(write_result("speed_claims", payload))


if __name__ == "__main__":
    main()
