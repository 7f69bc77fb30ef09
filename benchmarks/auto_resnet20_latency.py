"""Compression under a latency budget: ResNet-20 (CIFAR-10) in ONNX Runtime, per-group channel
widths vs one uniform channel fraction.

The trained ``assets/resnet20.safetensors`` is cut by ``deepshrink.auto.auto_compress`` to run
``--speedup`` × faster than its own fp32 ONNX export at batch 1 (one thread, thread CPU time,
side by side), twice: ``policy="auto"`` (per-group widths from the exact search over measured
latency tables and held-out sensitivities) and ``policy="uniform"`` (the widest single channel
fraction for every group whose predicted latency fits); then ``policy="auto"`` again with the
low end of the uniform file's measured speed-up as its budget (at least as fast; ``--reuse``
redoes only this run). All share one width scan
(copied) and the same fine-tune (distillation, ``--epochs`` on the first ``--train-samples``
training images). Each delivered file is checked against the baseline file; at the end the
uniform file is timed against each auto file, side by side. Test accuracy: the CIFAR-10 test
subset (first 1,000 images).

    DEEPSHRINK_DATA=/work/shared/datasets python benchmarks/auto_resnet20_latency.py --speedup 2
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import onnxruntime
import torch
from _common import write_result

import deepshrink as ds
from deepshrink.auto import FineTune, auto_compress

ROOT = Path(__file__).resolve().parent.parent


def _run(
    args: argparse.Namespace, data: Any, model: Any, name: str, policy: str, speedup: float
) -> dict[str, Any]:
    out = Path(args.work) / name
    out.mkdir(parents=True, exist_ok=True)
    scan = Path(args.work) / "width_scan.json"
    if scan.is_file():
        shutil.copy(scan, out / "width_scan.json")
    settings = FineTune(prune_epochs=args.epochs, train_samples=args.train_samples,
                        threads=args.threads, prune_lr=args.lr)  # fmt: skip
    began = time.perf_counter()
    report = auto_compress(model, data, speedup=speedup, out=out, policy=policy,
                           fine_tune=settings, resume=True, held_out=args.held_out,
                           scan_samples=args.scan_samples,
                           latency={"steps": args.steps, "rounds": args.rounds})  # fmt: skip
    if not scan.is_file():
        shutil.copy(out / "width_scan.json", scan)
    result = report.to_dict()
    result["wall_seconds"] = time.perf_counter() - began
    return result


def _head_to_head(path: str, uniform: str, rounds: int) -> dict[str, Any]:
    """The uniform file against an auto file (the baseline), side by side."""
    from deepshrink.eval.timing import compare_calls
    from deepshrink.export.files import file_calls

    example = torch.zeros(1, 3, 32, 32)
    speed = compare_calls(file_calls(path, example), file_calls(uniform, example),
                          batch_sizes=(1,), rounds=rounds)[1]  # fmt: skip
    return speed.to_dict()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--speedup", type=float, default=2.0)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--train-samples", type=int, default=10_000)
    parser.add_argument("--held-out", type=int, default=2000)
    parser.add_argument("--scan-samples", type=int, default=500)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--work", default="runs/auto_resnet20_latency")
    parser.add_argument("--reuse", action="store_true",
                        help="keep the auto and uniform runs of the results JSON")  # fmt: skip
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    torch.set_num_threads(args.threads)
    model, _ = ds.load_checkpoint(ROOT / "assets" / "resnet20.safetensors")
    data = ds.data.load("cifar10")
    payload: dict[str, Any] = {
        "settings": vars(args), "load_average_start": os.getloadavg(),
        "machine": "AMD EPYC, 2 shared cores, AVX2, no GPU", "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__, "test_set": "CIFAR-10 test subset (first 1,000)",
        "commit": subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True,
                                 text=True, cwd=ROOT).stdout.strip(),
        "runs": {},
    }  # fmt: skip
    saved = ROOT / "benchmarks" / "results" / "auto_resnet20_latency.json"
    if args.reuse and saved.is_file():  # keep the auto and uniform runs, redo the matched one
        earlier = json.loads(saved.read_text())
        payload["runs"] = {k: v for k, v in earlier["runs"].items() if k in ("auto", "uniform")}
        payload["earlier"] = {
            k: earlier.get(k)
            for k in ("commit", "load_average_start", "load_average_end", "head_to_head")
        }
    runs = payload["runs"]
    for policy in ("auto", "uniform"):
        if policy not in runs:
            runs[policy] = _run(args, data, model, policy, policy, args.speedup)
            write_result("auto_resnet20_latency", payload)
    # per-group widths at least as fast as the uniform file: its measured interval's low end
    # is the budget (the uniform file itself meets it), then both files side by side
    matched = round(runs["uniform"]["speed"]["low"], 2)
    runs["auto_matched"] = _run(args, data, model, "auto_matched", "auto", matched)
    payload["head_to_head"] = {
        f"uniform_vs_{name}": _head_to_head(runs[name]["path"], runs["uniform"]["path"],
                                            args.rounds)
        for name in ("auto", "auto_matched")
    }  # fmt: skip
    payload["load_average_end"] = os.getloadavg()
    write_result("auto_resnet20_latency", payload)


if __name__ == "__main__":
    main()
