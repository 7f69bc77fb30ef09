"""Sparse execution of a pruned MLP in PyTorch: ``ds.prune.sparse_linear_`` on the committed
LeNet-300-100 (``assets/lenet300.dsz``, decoded), at batch 1 and 64.

For each batch size: the per-layer decisions (each layer's CSR product timed against its dense
one on the input it receives), then the whole converted model against the dense model, side by
side in one process (alternating, one thread, thread CPU time, 30 rounds, median ratio with a
95 % bootstrap interval), and its predictions on the 10,000 MNIST test images against the dense
model's. A batch size at which no layer is faster is recorded with the refusal it gets.

    DEEPSHRINK_DATA=/path/to/datasets python benchmarks/sparse_exec.py
"""

from __future__ import annotations

import copy
import os
import time
from pathlib import Path
from typing import Any

import torch
from _common import write_result

import deepshrink as ds
from deepshrink.errors import ConfigError
from deepshrink.eval.agreement import predicted_classes
from deepshrink.eval.timing import compare_speed

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    began = time.perf_counter()
    torch.set_num_threads(1)
    dense = ds.load(ROOT / "assets/lenet300.dsz").eval()
    data = ds.data.load("mnist", root=os.environ.get("DEEPSHRINK_DATA"))
    reference = predicted_classes(lambda x: dense(x).detach(), data.test)
    rows: dict[str, Any] = {}
    for size in (1, 64):
        model = copy.deepcopy(dense)
        try:
            decisions = ds.prune.sparse_linear_(model, torch.rand(size, 1, 28, 28))
        except ConfigError as refusal:
            rows[str(size)] = {"refused": str(refusal)}
            print(size, "refused:", refusal)
            continue
        speed = compare_speed(dense, model, torch.rand(1, 1, 28, 28), batch_sizes=(size,))[size]
        with torch.no_grad():
            changed = int((predicted_classes(model, data.test) != reference).sum())
        rows[str(size)] = {
            "decisions": [d.to_dict() for d in decisions],
            "model_vs_dense": speed.to_dict(),
            "predictions_changed": changed,
        }
        print(size, [(d.layer, d.speed, d.converted) for d in decisions], speed.text(), changed)
    zeros = {n: float((m.weight == 0).float().mean()) for n, m in dense.named_modules()
             if isinstance(m, torch.nn.Linear)}  # fmt: skip
    payload = {
        "model": "assets/lenet300.dsz (decoded)",
        "zeros": zeros,
        "batch": rows,
    }
    print(write_result("sparse_exec", payload, began=began))


if __name__ == "__main__":
    main()
