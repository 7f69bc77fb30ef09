"""A transformer trained on real data, compressed end to end: a Hugging Face ViT on MNIST.

The model is ``transformers.ViTForImageClassification`` built from a config (no download):
28×28 images cut into 7×7 patches (16 tokens and a class token), hidden size 64, 4 heads,
MLP width 128, 2 layers. It is trained from scratch on MNIST, then

1. channel-pruned with ``ChannelPruning(ratio=0.5, heads=0.5)`` — half of each MLP's hidden
   width and half of the attention heads, physically removed;
2. fine-tuned (the pruned model);
3. exported to ONNX, fp32 and static int8 (QDQ, calibrated on training images),

and each step's accuracy is measured on the 10,000 MNIST test images (PyTorch, and ONNX Runtime
for the files). Latency in ONNX Runtime, one thread, batch 1 and 32: the dense fp32 file and
each compressed file are timed call by call in alternation in this process, by the calling
thread's CPU time (``time.thread_time``; wall time, load average and spread recorded beside).

    python benchmarks/transformer_mnist.py            # about 15 minutes on 2 busy cores
    python benchmarks/transformer_mnist.py --epochs 1 --fine-tune-epochs 1 --name quick
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _common import write_result

import deepshrink as ds
from deepshrink.export.runtime import evaluate_onnx, session


def build() -> torch.nn.Module:
    import transformers

    transformers.logging.set_verbosity_error()
    config = transformers.ViTConfig(
        image_size=28, patch_size=7, num_channels=1, hidden_size=64, num_hidden_layers=2,
        num_attention_heads=4, intermediate_size=128, num_labels=10,
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
    )  # fmt: skip
    torch.manual_seed(0)
    return transformers.ViTForImageClassification(config)


def parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def train(model: torch.nn.Module, data: Any, epochs: int, lr: float) -> list[dict[str, Any]]:
    history = ds.fit(
        model, data, epochs=epochs, lr=lr, optimizer="adamw", weight_decay=0.01,
        batch_size=128, warmup_epochs=min(1.0, epochs / 4), threads=2, progress=False,
    )  # fmt: skip
    return history.to_dict()["records"]


def thread_timing(paths: dict[str, Path], batch: int, rounds: int) -> dict[str, Any]:
    """Per-call thread CPU time of each file at ``batch``, A/B/C alternated call by call."""
    sessions = {name: session(path, threads=1) for name, path in paths.items()}
    name0 = next(iter(sessions))
    feed = {sessions[name0].get_inputs()[0].name: np.random.default_rng(0).random(
        (batch, 1, 28, 28), dtype=np.float32)}  # fmt: skip
    cpu: dict[str, list[float]] = {name: [] for name in sessions}
    wall: dict[str, list[float]] = {name: [] for name in sessions}
    for _ in range(5):  # warm-up
        for sess in sessions.values():
            sess.run(None, feed)
    for _ in range(rounds):
        for name, sess in sessions.items():
            cpu0, wall0 = time.thread_time(), time.perf_counter()
            sess.run(None, feed)
            cpu[name].append(time.thread_time() - cpu0)
            wall[name].append(time.perf_counter() - wall0)
    result: dict[str, Any] = {}
    for name in sessions:
        ratios = [a / b for a, b in zip(cpu[name0], cpu[name], strict=True) if b > 0]
        quartiles = statistics.quantiles(ratios, n=4)
        result[name] = {
            "cpu_ms_median": 1e3 * statistics.median(cpu[name]),
            "wall_ms_median": 1e3 * statistics.median(wall[name]),
            "speedup_vs_dense_median": statistics.median(ratios),
            "speedup_iqr": [quartiles[0], quartiles[2]],
        }
    return {"batch": batch, "rounds": rounds, "load_average": os.getloadavg(), "files": result}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--fine-tune-epochs", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=400)
    parser.add_argument("--name", default="transformer_mnist")
    parser.add_argument("--train-limit", type=int, help="first N training images (smoke runs)")
    args = parser.parse_args()
    data = ds.data.load("mnist")
    if args.train_limit:
        data.train = data.train.subset(torch.arange(args.train_limit))
    model = build()
    steps: dict[str, Any] = {"dense_parameters": parameters(model)}
    steps["train"] = train(model, data, args.epochs, 2e-3)
    steps["dense_top1"] = ds.train.evaluate(model, data.test).top1
    dense = copy.deepcopy(model)
    example = data.test[0][0].unsqueeze(0)
    ds.prune_(model, ds.ChannelPruning(ratio=0.5, heads=0.5), example_inputs=(example,))
    steps["pruned_parameters"] = parameters(model)
    steps["pruned_top1_before_fine_tune"] = ds.train.evaluate(model, data.test).top1
    steps["fine_tune"] = train(model, data, args.fine_tune_epochs, 5e-4)
    steps["pruned_top1"] = ds.train.evaluate(model, data.test).top1
    folder = Path(tempfile.mkdtemp())
    files = {"dense fp32": ds.export(dense, folder / "dense.onnx", example_inputs=example)}
    files["pruned fp32"] = ds.export(model, folder / "pruned.onnx", example_inputs=example)
    files["pruned int8"] = ds.export(model, folder / "pruned.int8.onnx", int8=True,
                                     calibration=data.train)  # fmt: skip
    steps["files"] = {name: {"bytes": path.stat().st_size,
                             "onnx_runtime_top1": evaluate_onnx(path, data.test).top1}
                      for name, path in files.items()}  # fmt: skip
    steps["latency"] = [thread_timing(files, batch, max(20, int(args.rounds / batch**0.5)))
                        for batch in (1, 32)]  # fmt: skip
    steps["test_set"] = f"{data.test.name}, {len(data.test)} images"
    print(write_result(args.name, steps))


if __name__ == "__main__":
    main()
