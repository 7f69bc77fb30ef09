"""Per-tensor vs per-channel int8 on MobileNetV2 (depthwise convolutions), and QAT closing the gap.

Depthwise convolutions give each channel its own 3×3 filter; after BatchNorm folding the
channels' weight ranges differ by orders of magnitude, so one scale per tensor rounds the small
channels to a few levels (or to zero) while one scale per channel keeps them. The script:

1. measures, per folded depthwise layer, how much of the int8 grid a per-tensor scale leaves to
   the median channel (the spread of channel ranges);
2. post-training int8 in ONNX Runtime (``ds.export(int8=True)``, static, calibrated on training
   images) with per-tensor and with per-channel weight scales, accuracy measured in the runtime;
3. the same in PyTorch simulation (BN folded, 8-bit weights per tensor / per channel, uint8
   inputs per tensor), plus lower weight widths where the gap grows;
4. quantization-aware training with per-tensor weights (the weaker grid) fine-tuned on a subset
   of the training set, exported as QDQ int8 with its own scales, evaluated in ONNX Runtime;
5. the QAT weights through ONNX Runtime's own static quantizer (its fastest configuration);
6. fp32 vs int8 latency of the exported files in ONNX Runtime (batch 1 and 32, interleaved).

    DEEPSHRINK_DATA=/work/shared/datasets python benchmarks/qat_mobilenet.py \
        --checkpoint assets/mobilenetv2_cifar.safetensors
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import tempfile
from pathlib import Path
from typing import Any

import torch
from _common import RESULTS, write_result

import deepshrink as ds
from deepshrink.export import compare_latency, evaluate_onnx, optimized_ops
from deepshrink.quantize import (
    QuantAwareTraining,
    QuantScheme,
    convert_qat_,
    fake_quantize_,
    fold_batchnorm_,
    prepare_qat_,
)

ASSETS = Path(__file__).resolve().parents[1] / "assets"


def depthwise_spread(model: torch.nn.Module) -> list[dict[str, Any]]:
    """Per folded depthwise conv: channel ranges relative to the tensor range."""
    folded = copy.deepcopy(model).eval()
    fold_batchnorm_(folded)
    rows = []
    for name, layer in folded.named_modules():
        if isinstance(layer, torch.nn.Conv2d) and layer.groups == layer.out_channels > 1:
            ranges = layer.weight.detach().abs().flatten(1).amax(1)
            rows.append({
                "layer": name, "channels": len(ranges),
                "median_channel_levels": float(127 * ranges.median() / ranges.max()),
                "channels_under_8_levels": int((127 * ranges / ranges.max() < 8).sum()),
            })  # fmt: skip
    return rows


def simulated(model: torch.nn.Module, data: ds.data.Data, bits: int, granularity: str) -> float:
    folded = copy.deepcopy(model).eval()
    fold_batchnorm_(folded)
    weights = QuantScheme(bits=bits, granularity=granularity, axis=0)
    fake_quantize_(folded, data.train, weights=weights)
    return ds.train.evaluate(folded, data.test).top1


def qat(model: torch.nn.Module, data: ds.data.Data, args: argparse.Namespace) -> torch.nn.Module:
    config = QuantAwareTraining(weights={"granularity": "tensor"})
    qat_model = prepare_qat_(copy.deepcopy(model).eval(), config, calibration=data.train)
    subset = data.train.subset(torch.randperm(len(data.train))[: args.qat_images])
    split = ds.data.Data(name=data.name, train=subset, test=data.test, classes=data.classes)
    ds.fit(qat_model, split, epochs=args.qat_epochs, lr=args.qat_lr, batch_size=128,
           weight_decay=0.0, threads=args.threads)  # fmt: skip
    return qat_model.eval()


def plot(results: dict[str, dict[str, Any]], path: Path) -> None:
    """Accuracy in ONNX Runtime of each variant (one bar group per QAT budget) and the levels
    the median channel of each depthwise layer keeps under a per-tensor scale."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    first = next(iter(results.values()))
    variants = [row["variant"] for row in first["rows"]]
    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 4.2))
    width = 0.8 / len(results)
    for index, (label, result) in enumerate(results.items()):
        top1 = [100 * row["onnx_top1"] for row in result["rows"]]
        positions = [i + (index - (len(results) - 1) / 2) * width for i in range(len(variants))]
        bars = left.bar(positions, top1, width, label=label)
        left.bar_label(bars, fmt="%.1f", fontsize=7)
    left.set_xticks(range(len(variants)), [v.replace(" ", "\n", 2) for v in variants], fontsize=7)
    left.set_ylabel("top-1 in ONNX Runtime (%)")
    left.set_title("MobileNetV2, CIFAR-10 test subset (1,000 images)")
    left.legend(fontsize=7, loc="lower right")
    layers = first["depthwise"]
    right.bar(range(len(layers)), [row["median_channel_levels"] for row in layers])
    right.set_xticks(range(len(layers)), [row["layer"].split(".depthwise")[0] for row in layers],
                     rotation=60, fontsize=7)  # fmt: skip
    right.set_ylabel("int8 levels of the median channel (of 127)")
    right.set_title("Depthwise weights (BN folded) under one scale per tensor")
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def _label(path: Path) -> str:
    settings = json.loads(path.read_text())["settings"]
    return f"QAT on {settings['qat_images']:,} images, lr {settings['qat_lr']}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=ASSETS / "mobilenetv2_cifar.safetensors")
    parser.add_argument("--qat-images", type=int, default=10_000)
    parser.add_argument("--qat-epochs", type=int, default=1)
    parser.add_argument("--qat-lr", type=float, default=1e-3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--name", default="qat_mobilenet", help="result file name")
    parser.add_argument("--plot", nargs="+", type=Path, metavar="RESULT_JSON",
                        help="only draw results/qat_mobilenet.png from these results")  # fmt: skip
    args = parser.parse_args()
    if args.plot:
        results = {_label(path): json.loads(path.read_text()) for path in args.plot}
        plot(results, RESULTS / "qat_mobilenet.png")
        return
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    data = ds.data.load("cifar10")
    model, _ = ds.load_checkpoint(args.checkpoint)
    model.eval()
    result: dict[str, Any] = {"checkpoint": str(args.checkpoint), "test_set": data.test.name,
                              "test_images": len(data.test), "settings": vars(args) | {
                                  "checkpoint": str(args.checkpoint)}}  # fmt: skip
    result["float_top1"] = ds.train.evaluate(model, data.test).top1
    result["depthwise"] = depthwise_spread(model)
    result["simulated"] = [
        {"weight_bits": bits, "granularity": g, "top1": simulated(model, data, bits, g)}
        for bits in (8, 6) for g in ("tensor", "channel")
    ]  # fmt: skip
    print({k: result[k] for k in ("float_top1", "simulated")})
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        paths = {
            "fp32": ds.export(model, out / "fp32.onnx"),
            "int8 PTQ per-tensor": ds.export(model, out / "t.onnx", int8=True, per_channel=False,
                                             calibration=data.train),
            "int8 PTQ per-channel": ds.export(model, out / "c.onnx", int8=True,
                                              calibration=data.train),
        }  # fmt: skip
        qat_model = qat(model, data, args)
        result["qat_torch_top1"] = ds.train.evaluate(qat_model, data.test).top1
        paths["int8 QAT per-tensor"] = ds.export(qat_model, out / "qat.onnx", int8=True)
        # the trained weights (already on the per-tensor grid) through ONNX Runtime's quantizer,
        # which also quantizes the residual adds: its activation ranges, not the trained ones
        paths["int8 QAT weights, ORT quantizer"] = ds.export(
            convert_qat_(copy.deepcopy(qat_model)), out / "qat_ort.onnx", int8=True,
            per_channel=False, calibration=data.train,
        )  # fmt: skip
        rows = []
        for name, path in paths.items():
            rows.append({"variant": name, "bytes": path.stat().st_size,
                         "onnx_top1": evaluate_onnx(path, data.test).top1,
                         "ops": optimized_ops(path)})  # fmt: skip
            print(rows[-1])
        times = compare_latency(paths, (3, 32, 32), batch_sizes=(1, 32), threads=1,
                                rounds=args.rounds, block_seconds=0.3)  # fmt: skip
        for row in rows:
            for size, latency in times[row["variant"]].items():
                base = times["fp32"][size].median_seconds
                row[f"batch{size}"] = {
                    **latency.to_dict(),
                    "percent_of_fp32": 100 * latency.median_seconds / base,
                }
    result["rows"] = rows
    print(f"wrote {write_result(args.name, result)}")


if __name__ == "__main__":
    main()
