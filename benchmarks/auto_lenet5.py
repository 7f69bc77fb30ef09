"""Compression under a budget on LeNet-5 / MNIST: per-layer allocation vs one uniform setting.

The trained LeNet-5 in ``assets/`` is compressed by ``deepshrink.auto.auto_compress`` at each
byte budget, twice: ``policy="auto"`` (per-layer sparsity × k-means bits from a joint knapsack
over measured options) and ``policy="uniform"`` (the same sparsity and bits for every layer, the
best such setting under the same budget). Both share one sensitivity scan (held-out training
samples, 5,000 split off the train set), the same fine-tunes (distillation from the original
model) and the same delivered-file check; the test set is evaluated once per run, at the end.
Then one accuracy-drop budget is run. Every run's report is in the JSON.

    DEEPSHRINK_DATA=/work/shared/datasets python benchmarks/auto_lenet5.py \
        --budgets 100000 30000 12000 --drop 0.5
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import torch
from _common import write_result

import deepshrink as ds
from deepshrink.auto import FineTune, auto_compress

ROOT = Path(__file__).resolve().parent.parent


def _run(args: argparse.Namespace, data: Any, model: Any, name: str, **budget: Any) -> dict:
    out = Path(args.work) / name
    out.mkdir(parents=True, exist_ok=True)
    scan = Path(args.work) / "scan.json"
    if scan.is_file():
        shutil.copy(scan, out / "scan.json")
    settings = FineTune(prune_epochs=args.prune_epochs, share_epochs=args.share_epochs,
                        threads=args.threads)  # fmt: skip
    began = time.perf_counter()
    report = auto_compress(model, data, out=out, fine_tune=settings, resume=True,
                           scan_samples=args.scan_samples, **budget)  # fmt: skip
    if not scan.is_file():
        shutil.copy(out / "scan.json", scan)
    result = report.to_dict()
    result["wall_seconds"] = time.perf_counter() - began
    result["file_size_on_disk"] = Path(report.path).stat().st_size
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budgets", type=int, nargs="*", default=[100_000, 30_000, 12_000])
    parser.add_argument("--drop", type=float, default=0.5, help="accuracy-drop budget (pp)")
    parser.add_argument("--prune-epochs", type=int, default=1)
    parser.add_argument("--share-epochs", type=int, default=1)
    parser.add_argument("--scan-samples", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--work", default="runs/auto_lenet5")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    torch.set_num_threads(args.threads)
    model, _ = ds.load_checkpoint(ROOT / "assets" / "lenet5.safetensors")
    data = ds.data.load("mnist")
    payload: dict[str, Any] = {
        "settings": vars(args), "load_average_start": os.getloadavg(),
        "torch": torch.__version__,
        "commit": subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True,
                                 text=True, cwd=ROOT).stdout.strip(),
        "runs": {},
    }  # fmt: skip
    for budget in args.budgets:
        for policy in ("auto", "uniform"):
            name = f"{policy}_{budget}"
            payload["runs"][name] = _run(args, data, model, name, max_bytes=budget, policy=policy)
            write_result("auto_lenet5", payload)
    if args.drop is not None:
        name = f"auto_drop_{args.drop:g}"
        payload["runs"][name] = _run(args, data, model, name, max_accuracy_drop=args.drop)
    payload["load_average_end"] = os.getloadavg()
    write_result("auto_lenet5", payload)


if __name__ == "__main__":
    main()
