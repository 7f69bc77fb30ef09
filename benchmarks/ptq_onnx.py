"""Post-training quantization through ONNX Runtime: size, accuracy and CPU time.

``--part resnet20`` exports a CIFAR-10 ResNet-20 checkpoint as fp32, fp16 weights, dynamic int8
and static int8 (the exporter's default: pre-processed graph, uint8 activations, int8
per-channel weights), plus two static int8 variants the exporter avoids (no pre-processing;
int8 activations, "S8S8"). For each file: bytes on disk, accuracy in ONNX Runtime on the
CIFAR-10 test subset (first 1,000 images) and the median latency at batch 1 and 32 on one
intra-op thread, all files timed interleaved in the same process, as % of fp32.

``--part mnist`` follows TF Model Optimization's MNIST flow: the trained ``mnist_cnn`` is pruned
to 50 % sparsity with ``PolynomialDecay`` during a short fine-tune, the masks are finalized, and
the model is exported as static int8, with per-tensor weight scales (what TFLite uses for dense
layers) and per-channel ones. Bytes and gzip'd bytes (level 9) of the dense fp32 ONNX file and of
each pruned int8 file, and accuracy in ONNX Runtime on the 10,000 MNIST test images.

    DEEPSHRINK_DATA=/work/shared/datasets python benchmarks/ptq_onnx.py --part resnet20 mnist
"""

from __future__ import annotations

import argparse
import gzip
import logging
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from _common import write_result

import deepshrink as ds
from deepshrink.export import compare_latency, evaluate_onnx, optimized_ops

ASSETS = Path(__file__).resolve().parents[1] / "assets"
RESNET20 = Path("/work/main/assets/resnet20.safetensors")

#: name → export options; "int8 static" is what ``ds.export(int8=True)`` does by default
VARIANTS: dict[str, dict[str, Any]] = {
    "fp32": {},
    "fp16 weights": {"fp16": True},
    "int8 dynamic": {"int8": "dynamic"},
    "int8 static": {"int8": True},
    "int8 static, no pre-processing": {"int8": True, "preprocess": False},
    "int8 static, int8 activations (S8S8)": {"int8": True, "activations": "int8"},
}


def gzip_size(path: Path) -> int:
    return len(gzip.compress(path.read_bytes(), compresslevel=9))


def resnet20(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    data = ds.data.load("cifar10")
    if args.random_weights:
        model, source = ds.zoo.create("resnet20"), "random weights"
    else:
        model, _ = ds.load_checkpoint(args.checkpoint)
        source = str(args.checkpoint)
    torch_top1 = ds.train.evaluate(model, data.test).top1
    paths, rows = {}, []
    for name, options in VARIANTS.items():
        calibration = data.train if options.get("int8") is True else None
        began = time.perf_counter()
        paths[name] = ds.export(model, out / f"resnet20_{len(paths)}.onnx",
                                calibration=calibration, **options)  # fmt: skip
        seconds = time.perf_counter() - began
        top1 = evaluate_onnx(paths[name], data.test).top1
        rows.append({"variant": name, "options": {k: str(v) for k, v in options.items()},
                     "bytes": paths[name].stat().st_size, "top1": top1,
                     "ops_after_ort_optimisation": optimized_ops(paths[name]),
                     "export_seconds": round(seconds, 2)})  # fmt: skip
    times = compare_latency(paths, (3, 32, 32), batch_sizes=(1, 32), threads=1,
                            rounds=args.rounds, block_seconds=args.block_seconds)  # fmt: skip
    for row in rows:
        for size, latency in times[row["variant"]].items():
            base = times["fp32"][size].median_seconds
            percent = 100 * latency.median_seconds / base
            row[f"batch{size}"] = {**latency.to_dict(), "percent_of_fp32": percent}
    part = {"model": source, "torch_top1": torch_top1, "test_set": data.test.name,
            "test_images": len(data.test), "runtime": runtime(), "rows": rows}  # fmt: skip
    return {**part, "table": resnet20_table(part)}


def resnet20_table(part: dict[str, Any]) -> str:
    """The Markdown table of the ResNet-20 part, as pasted into RESULTS.md."""
    lines = [
        "| variant | file bytes | MB | accuracy | batch 1 ms | % of fp32 "
        "| batch 32 ms | % of fp32 | integer convs |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in part["rows"]:
        one, many = row["batch1"], row["batch32"]
        lines.append(
            f"| {row['variant']} | {row['bytes']:,} | {row['bytes'] / 1e6:.2f} | "
            f"{100 * row['top1']:.1f} % | {1e3 * one['median_seconds']:.2f} | "
            f"{one['percent_of_fp32']:.0f} % | {1e3 * many['median_seconds']:.1f} | "
            f"{many['percent_of_fp32']:.0f} % | {_fused(row)} |"
        )
    return "\n".join(lines)


def _fused(row: dict[str, Any]) -> str:
    ops = row["ops_after_ort_optimisation"]
    integer = ops.get("QLinearConv", 0) + ops.get("ConvInteger", 0)
    return f"{integer} of {integer + ops.get('Conv', 0)}"


def mnist(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    data = ds.data.load("mnist")
    model, _ = ds.load_checkpoint(ASSETS / "mnist_cnn.safetensors")
    dense = ds.export(model, out / "mnist_fp32.onnx")
    dense_top1 = evaluate_onnx(dense, data.test).top1
    steps = args.mnist_epochs * -(-len(data.train) // 128)
    schedule = ds.PolynomialDecay(initial_sparsity=0.0, final_sparsity=0.5, begin_step=0,
                                  end_step=steps // 2, frequency=50)  # fmt: skip
    ds.prune_(model, schedule)
    ds.fit(model, data, epochs=args.mnist_epochs, batch_size=128, optimizer="adam", lr=args.lr,
           weight_decay=0.0, schedule="cosine", callbacks=[schedule], progress=False)  # fmt: skip
    ds.finalize_(model)
    zeros = sum(int((p == 0).sum()) for n, p in model.named_parameters() if n.endswith("weight"))
    weights = sum(p.numel() for n, p in model.named_parameters() if n.endswith("weight"))
    pruned_top1 = ds.train.evaluate(model, data.test).top1
    variants = {}
    for per_channel in (False, True):
        int8 = ds.export(model, out / f"mnist_int8_{per_channel}.onnx", int8=True,
                         calibration=data.train, per_channel=per_channel)  # fmt: skip
        variants["per_channel" if per_channel else "per_tensor"] = {
            "top1": evaluate_onnx(int8, data.test).top1,
            "bytes": int8.stat().st_size,
            "gzip_bytes": gzip_size(int8),
            "gzip_ratio": gzip_size(dense) / gzip_size(int8),
            "raw_ratio": dense.stat().st_size / int8.stat().st_size,
        }
    return {
        "fine_tune": {
            "epochs": args.mnist_epochs,
            "optimizer": "adam",
            "lr": args.lr,
            "lr_schedule": "cosine",
            "batch_size": 128,
            "pruning": schedule.to_dict(),
        },  # fmt: skip
        "weight_sparsity": zeros / weights,
        "fp32_onnx_top1": dense_top1,
        "fp32_bytes": dense.stat().st_size,
        "fp32_gzip_bytes": gzip_size(dense),
        "pruned_torch_top1": pruned_top1,
        "int8": variants,
        "test_images": len(data.test),
        "runtime": runtime(),
        "tfmot_reference": {"gzip_kb": [78.12, 13.64], "ratio": 5.7, "top1": [0.9803, 0.9806]},
    }


def runtime() -> dict[str, str]:
    import onnx
    import onnxruntime

    return {"onnxruntime": onnxruntime.__version__, "onnx": onnx.__version__}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", nargs="+", default=["resnet20", "mnist"],
                        choices=["resnet20", "mnist"])  # fmt: skip
    parser.add_argument("--checkpoint", type=Path, default=RESNET20)
    parser.add_argument("--random-weights", action="store_true", help="untrained ResNet-20")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--block-seconds", type=float, default=0.3)
    parser.add_argument("--mnist-epochs", type=int, default=2)
    parser.add_argument("--lr", type=float, default=1e-3, help="MNIST fine-tune (Keras Adam)")
    parser.add_argument("--name", help="result file name (default ptq_onnx_<parts>)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR, format="%(message)s")
    torch.set_num_threads(1)
    torch.manual_seed(0)
    result: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for part in args.part:
            result[part] = {"resnet20": resnet20, "mnist": mnist}[part](args, Path(tmp))
            print(part, result[part])
    name = args.name or "ptq_onnx_" + "_".join(args.part)
    print(f"wrote {write_result(name, result)}")


if __name__ == "__main__":
    main()
