"""Channel pruning at ~4x fewer MACs, in ONNX Runtime: deepshrink (several channel alignments),
Torch-Pruning and int8 on top, each against the dense fp32 model in the same process.

Speed depends on shapes, not on weight values, so the networks keep their random initial weights
(seeded); accuracy is not measured here. Every ratio is the reports' measurement
(:func:`deepshrink.eval.timing.compare_calls`): the dense and the pruned ONNX file alternate call
by call in one process, one intra-op thread, thread CPU time, 30 rounds, the median ratio with a
95 % bootstrap interval; a claim only when the interval lies beyond ±5 %.

    python benchmarks/channel_speed_ort.py [--model resnet56] [--ratio 0.5] [--align 1 8 16]
"""

from __future__ import annotations

import argparse
import copy
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from _common import write_result
from torch import nn

import deepshrink as ds
from deepshrink.eval.timing import compare_calls
from deepshrink.export.files import file_calls


def torch_pruning(model: nn.Module, example: torch.Tensor, ratio: float) -> nn.Module:
    """The same L1 channel pruning done by Torch-Pruning's MetaPruner (its own API)."""
    import torch_pruning as tp

    pruned = copy.deepcopy(model)
    pruner = tp.pruner.MetaPruner(
        pruned, example, importance=tp.importance.MagnitudeImportance(p=1),
        pruning_ratio=ratio, ignored_layers=[pruned.fc],
    )  # fmt: skip
    pruner.step()
    return pruned


def variants(model: nn.Module, example: torch.Tensor, ratio: float, aligns: list[int]) -> dict:
    out: dict[str, nn.Module] = {}
    for align in aligns:
        pruned = copy.deepcopy(model)
        ds.prune_(pruned, ds.ChannelPruning(ratio=ratio, criterion="l1", round_to=align),
                  example_inputs=example)  # fmt: skip
        out[f"deepshrink, multiples of {align}"] = pruned
    try:
        pruned = torch_pruning(model, example, ratio)
        with torch.no_grad():
            pruned(example)  # option-A shortcuts: its pruned model does not run
        out["Torch-Pruning MetaPruner"] = pruned
    except Exception as exc:  # report, do not hide, a failure of the other tool
        FAILURES.append(f"Torch-Pruning: {type(exc).__name__}: {str(exc)[:300]}")
        print(FAILURES[-1])
    return out


FAILURES: list[str] = []


def speed(dense: Path, candidate: Path, example: torch.Tensor) -> dict[str, Any]:
    speeds = compare_calls(file_calls(dense, example), file_calls(candidate, example),
                           batch_sizes=(1, 32), threads=1)  # fmt: skip
    return {str(size): s.to_dict() for size, s in speeds.items()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="resnet56")
    parser.add_argument("--shortcut", default="B")
    parser.add_argument("--ratio", type=float, default=0.5)
    parser.add_argument("--align", type=int, nargs="+", default=[1, 8, 16])
    args = parser.parse_args()
    torch.manual_seed(0)
    model = ds.zoo.create(args.model, shortcut=args.shortcut).eval()
    example = model.example_inputs()
    example = example[0] if isinstance(example, tuple) else example
    folder = Path(tempfile.mkdtemp())
    dense = ds.export(model, folder / "dense.onnx")
    calibration = torch.rand(64, *example.shape[1:])
    rows = []
    for name, pruned in variants(model, example, args.ratio, args.align).items():
        index = len(rows)
        fp32 = ds.export(pruned, folder / f"p{index}.onnx")
        int8 = ds.export(pruned, folder / f"p{index}.int8.onnx", int8=True,
                         calibration=calibration)  # fmt: skip
        row = {
            "variant": name,
            "macs_ratio": ds.eval.count_macs(model, example) / ds.eval.count_macs(pruned, example),
            "widths": sorted(
                {m.out_channels for m in pruned.modules() if isinstance(m, nn.Conv2d)}
            ),  # fmt: skip
            "fp32": speed(dense, fp32, example),
            "int8": speed(dense, int8, example),
            "load_average": os.getloadavg(),
        }
        print(
            name,
            f"{row['macs_ratio']:.2f}x fewer MACs",
            {k: {b: v["text"] for b, v in row[k].items()} for k in ("fp32", "int8")},
        )
        rows.append(row)
    payload = {"model": args.model, "shortcut": args.shortcut, "ratio": args.ratio,
               "weights": "random (seeded); speed only", "rows": rows,
               "failures": FAILURES}  # fmt: skip
    name = f"channel_speed_ort_{args.model}_{args.shortcut}_r{round(100 * args.ratio)}"
    print(write_result(name, payload))


if __name__ == "__main__":
    main()
