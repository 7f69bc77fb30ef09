"""TFLite files run in the LiteRT interpreter: TF Model Optimization's MNIST flow, and four modes.

``--part mnist`` reproduces TF-MOT's table on ``assets/mnist_cnn`` (conv 3×3×12 → max-pool →
dense): the dense model, then the model pruned with ``ds.PolynomialDecay`` during a fine-tune
(masks finalized), written as fp32 TFLite and as dynamic-range and full-integer TFLite with
int8 and with int4 weights. Each point (``--points``: sparsity and fine-tune epochs) gives raw
and zipped bytes (``zipfile`` deflate, level 9, as TF-MOT measures) and interpreter accuracy on
the 10,000 MNIST test images.

``--part models`` exports ``assets/lenet5`` (MNIST, 10,000 test images) and ``assets/resnet20``
(CIFAR-10 test subset, 1,000 images) in the four modes (fp32, fp16 weights, dynamic int8, full
int8 calibrated on 256 training images) and measures interpreter accuracy against PyTorch and
batch-1 latency: every file and the PyTorch model timed side by side in one process by thread
CPU time (``deepshrink.eval.timing.side_by_side``), one thread, ratio against the fp32 file.

``--part recipe --run DIR`` re-measures the ``.tflite`` files of a finished recipe run (zipped
bytes, interpreter accuracy) beside the run's own stage summaries.

    DEEPSHRINK_DATA=/work/shared/datasets python benchmarks/tflite_mnist.py --part mnist models
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

import torch
from _common import write_result

import deepshrink as ds
from deepshrink.eval.timing import side_by_side
from deepshrink.export.tflite import evaluate_tflite, export_tflite, runner

ASSETS = Path(__file__).resolve().parents[1] / "assets"
MODES: dict[str, dict[str, Any]] = {
    "fp32": {},
    "fp16": {"fp16": True},
    "int8 dynamic": {"int8": "dynamic"},
    "int8 full": {"int8": True},
}

#: the modes each pruned model is written in, besides fp32
PRUNED: dict[str, dict[str, Any]] = {
    "int8 dynamic": {"int8": "dynamic"},
    "int8 full": {"int8": True},
    "int4 weights, dynamic": {"int8": "dynamic", "weight_bits": 4},
    "int4 weights, full int8": {"int8": True, "weight_bits": 4},
}


def zipped(path: Path) -> int:
    """Bytes of ``path`` alone in a zip archive (deflate, level 9)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        archive.write(path, path.name)
    return len(buffer.getvalue())


def measured(path: Path, data: Any) -> dict[str, Any]:
    return {"top1": evaluate_tflite(path, data.test).top1, "bytes": path.stat().st_size,
            "zipped_bytes": zipped(path)}  # fmt: skip


def prune_point(base: torch.nn.Module, data: Any, point: str, args: argparse.Namespace,
                out: Path) -> dict[str, Any]:  # fmt: skip
    """One pruned point: ``sparsity:epochs``, written as fp32 and in the :data:`PRUNED` modes."""
    sparsity, epochs = float(point.split(":")[0]), int(point.split(":")[1])
    torch.manual_seed(0)
    model, _ = ds.load_checkpoint(ASSETS / "mnist_cnn.safetensors")
    steps = epochs * -(-len(data.train) // 128)
    schedule = ds.PolynomialDecay(initial_sparsity=0.0, final_sparsity=sparsity, begin_step=0,
                                  end_step=steps // 2, frequency=50)  # fmt: skip
    ds.prune_(model, schedule)
    started = time.perf_counter()
    ds.fit(model, data, epochs=epochs, batch_size=128, optimizer="adam", lr=args.lr,
           weight_decay=0.0, schedule="cosine", callbacks=[schedule], progress=False)  # fmt: skip
    ds.finalize_(model)
    weights = [p for n, p in model.named_parameters() if n.endswith("weight")]
    zeros = sum(int((p == 0).sum()) for p in weights) / sum(p.numel() for p in weights)
    row: dict[str, Any] = {
        "sparsity_target": sparsity, "weight_sparsity": zeros, "epochs": epochs,
        "fine_tune_seconds": time.perf_counter() - started,
        "pruning": schedule.to_dict(), "torch_top1": ds.train.evaluate(model, data.test).top1,
    }  # fmt: skip
    tag = point.replace(":", "_")
    row["fp32"] = measured(export_tflite(model, out / f"pruned_{tag}.tflite"), data)
    for name, mode in PRUNED.items():
        path = out / f"pruned_{tag}_{name.replace(' ', '_')}.tflite"
        try:
            export_tflite(model, path, calibration=data.train, **mode)
            row[name] = measured(path, data)
        except ds.errors.DeepshrinkError as exc:
            row[name] = {"error": str(exc)}
    return row


def mnist(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    data = ds.data.load("mnist")
    model, _ = ds.load_checkpoint(ASSETS / "mnist_cnn.safetensors")
    dense = export_tflite(model, out / "dense.tflite")
    result = {
        "dense_torch_top1": ds.train.evaluate(model, data.test).top1,
        "dense_fp32": measured(dense, data),
        "dense_int8_dynamic": measured(
            export_tflite(model, out / "dense_dyn.tflite", int8="dynamic"), data
        ),  # fmt: skip
        "points": {p: prune_point(model, data, p, args, out) for p in args.points},
        "fine_tune": {
            "optimizer": "adam",
            "lr": args.lr,
            "lr_schedule": "cosine",
            "batch_size": 128,
        },  # fmt: skip
        "test_images": len(data.test),
        "tfmot_reference": {"zipped_kb": [78.12, 47.44, 13.64], "top1": [0.9803, 0.9806]},
    }
    for name, row in result["points"].items():
        print(name, {k: v for k, v in row.items() if k != "pruning"})
    return result


def models(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    result = {}
    for name, dataset in (("lenet5", "mnist"), ("resnet20", "cifar10")):
        data = ds.data.load(dataset)
        model, _ = ds.load_checkpoint(ASSETS / f"{name}.safetensors")
        model.eval()
        row: dict[str, Any] = {"torch_top1": ds.train.evaluate(model, data.test).top1,
                               "test_images": len(data.test)}  # fmt: skip
        paths = {}
        for mode, options in MODES.items():
            started = time.perf_counter()
            file = out / f"{name}_{mode.replace(' ', '_')}.tflite"
            path = export_tflite(model, file, calibration=data.train, **options)
            row[mode] = measured(path, data)
            row[mode]["export_seconds"] = time.perf_counter() - started
            row[mode]["pp_vs_torch"] = 100 * (row[mode]["top1"] - row["torch_top1"])
            paths[mode] = path
        row["latency_batch1"] = latency(model, paths, args.rounds)
        result[name] = row
        print(name, row)
    return result


def latency(model: torch.nn.Module, paths: dict[str, Path], rounds: int) -> dict[str, Any]:
    """Side-by-side thread-CPU time at batch 1: each file and PyTorch against the fp32 file."""
    calls = {mode: runner(path, 1) for mode, path in paths.items()}
    x = model.example_inputs()[0]

    def pytorch() -> None:
        with torch.inference_mode():
            model(x)

    calls["pytorch"] = pytorch
    speeds = side_by_side(calls, rounds=rounds, repeat=20, threads=1)
    return {name: {"cpu_ms": s.cpu_ms, "wall_ms": s.wall_ms, "fp32_over_this": s.ratio,
                   "interval": [s.low, s.high], "verdict": s.verdict,
                   "load_average": s.load_average} for name, s in speeds.items()}  # fmt: skip


def recipe(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    """The ``.tflite`` files of a finished recipe run (``--run``): the run's own stage summaries,
    plus zipped bytes and accuracy measured again here on the 10,000 MNIST test images."""
    data = ds.data.load("mnist")
    metrics = json.loads((args.run / "metrics.json").read_text())
    stages = {s["label"]: s.get("summary", {}) for s in metrics["stages"]}
    files = {p.name: measured(p, data) for p in sorted(args.run.glob("*.tflite"))}
    for name, row in files.items():
        print(name, row)
    return {"recipe": metrics["recipe"], "stages": stages, "files": files}


def versions() -> dict[str, str]:
    from importlib.metadata import version

    return {p: version(p) for p in ("litert-torch", "ai-edge-litert", "ai-edge-quantizer")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", nargs="+", default=["mnist", "models"],
                        choices=["mnist", "models", "recipe"])  # fmt: skip
    parser.add_argument("--run", type=Path, help="a finished recipe run folder (--part recipe)")
    parser.add_argument("--points", nargs="+", default=["0.5:2", "0.6:4", "0.7:6"],
                        help="sparsity:fine-tune epochs of each pruned point")  # fmt: skip
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--name", help="result file name (default tflite_<parts>)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR, format="%(message)s")
    torch.set_num_threads(1)
    torch.manual_seed(0)
    result: dict[str, Any] = {"runtime": versions(), "load_average_start": os.getloadavg()}
    with tempfile.TemporaryDirectory() as tmp:
        for part in args.part:
            result[part] = {"mnist": mnist, "models": models, "recipe": recipe}[part](
                args, Path(tmp)
            )
    result["load_average_end"] = os.getloadavg()
    name = args.name or "tflite_" + "_".join(args.part)
    print(f"wrote {write_result(name, result)}")


if __name__ == "__main__":
    main()
