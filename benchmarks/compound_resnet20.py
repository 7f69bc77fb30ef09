"""Channel pruning + int8 on the trained ResNet-20, measured as delivered: the files of one
``recipes/cifar_resnet20_prune4x_int8.yaml`` run in ONNX Runtime against the dense model's fp32
ONNX export.

For each file: top-1 on the CIFAR-10 test subset (with its 95 % Wilson interval and the
predictions that changed against the dense file), bytes on disk, and speed against the dense
fp32 file at batch 1 and 32 — the two files alternating call by call in one process, one
intra-op thread, thread CPU time, 30 rounds, the median ratio with a 95 % bootstrap interval,
a claim only when the interval lies beyond ±5 % (:func:`deepshrink.eval.timing.compare_calls`).
The int8 file is also timed against the pruned fp32 file, to show what int8 adds on top.

    DEEPSHRINK_DATA=/path/to/datasets python benchmarks/compound_resnet20.py --run runs/prune4x
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch
from _common import write_result
from channel_speed_ort import speed

import deepshrink as ds
from deepshrink.eval.agreement import predicted_classes, wilson
from deepshrink.export.files import evaluate_file, file_forward

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, required=True, help="the recipe's run folder")
    parser.add_argument("--baseline", type=Path, default=ROOT / "assets/resnet20.safetensors")
    args = parser.parse_args()
    began = time.perf_counter()
    model, _ = ds.load_checkpoint(args.baseline)
    model.eval()
    example = torch.rand(1, 3, 32, 32)
    dense = ds.export(model, Path(tempfile.mkdtemp()) / "dense.fp32.onnx")
    files = {
        "dense fp32": dense,
        "pruned fp32": args.run / "resnet20_pruned.fp32.onnx",
        "pruned int8": args.run / "resnet20_pruned.int8.onnx",
    }
    data = ds.data.load("cifar10", root=os.environ.get("DEEPSHRINK_DATA"))
    reference = predicted_classes(file_forward(dense), data.test)
    rows = {}
    for name, path in files.items():
        result = evaluate_file(path, data.test)
        correct = round(result.top1 * result.count)
        changed = int((predicted_classes(file_forward(path), data.test) != reference).sum())
        rows[name] = {
            "file": str(path), "bytes": path.stat().st_size, "accuracy": result.top1,
            "interval": wilson(correct, result.count), "samples": result.count,
            "changed_vs_dense": changed,
        }  # fmt: skip
        if name != "dense fp32":
            rows[name]["vs_dense"] = speed(dense, path, example)
        print(name, f"{result.top1:.2%}", rows[name].get("vs_dense", {}))
    rows["pruned int8"]["vs_pruned_fp32"] = speed(files["pruned fp32"], files["pruned int8"],
                                                   example)  # fmt: skip
    print("int8 vs pruned fp32", rows["pruned int8"]["vs_pruned_fp32"])
    pruned, _ = ds.load_checkpoint(args.run / "model.safetensors")
    macs = ds.eval.count_macs(model, example) / ds.eval.count_macs(pruned, example)
    payload = {"run": str(args.run), "baseline": str(args.baseline), "macs_ratio": macs,
               "files": rows, "dataset": "CIFAR-10 test subset"}  # fmt: skip
    print(write_result("compound_resnet20", payload, began=began))


if __name__ == "__main__":
    main()
