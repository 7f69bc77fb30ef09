"""Mixed-precision vs uniform weight quantization at the same average bits (no fine-tuning).

For each model (the float checkpoints in ``assets/``) and weight granularity:

1. Uniform: every ``Linear``/convolution weight at ``b`` bits (symmetric signed min–max grid),
   ``MixedPrecision(default_bits=b)``, for each ``--uniform`` width.
2. Mixed: one sensitivity scan (:func:`deepshrink.quantize.bit_sensitivity`, each layer alone at
   each of ``--candidates``, cross-entropy increase on 256 random training images, un-augmented),
   then for each ``--budgets`` average-bits target the exact allocation
   (:func:`deepshrink.quantize.allocate_bits`) and the model quantized at those widths.

Accuracy is top-1 on the MNIST test set (10,000 images) or the CIFAR-10 test subset (first 1,000
images). Each model is also written with ``ds.save`` (``.dsz``); its bytes show whether the
container turns fewer bits into a smaller file (it does with per-tensor grids, whose weights take
at most ``2**bits`` values per layer; per-channel grids have one grid per output channel).

    DEEPSHRINK_DATA=/work/shared/datasets python benchmarks/mixed_precision.py
"""

from __future__ import annotations

import argparse
import copy
import logging
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from _common import write_result

import deepshrink as ds
from deepshrink.prune.targets import weight_layers
from deepshrink.quantize import (
    MixedPrecision,
    allocate_bits,
    bit_sensitivity,
    layer_bits_of,
    quantize_,
)

ASSETS = Path(__file__).resolve().parents[1] / "assets"
DATA = {"lenet5": "mnist", "resnet20": "cifar10"}


def evaluate(model: torch.nn.Module, data: ds.data.Data, folder: Path, label: str) -> dict:
    path = ds.save(model, folder / f"{label}.dsz")
    return {"accuracy": ds.train.evaluate(model, data.test).top1, "dsz_bytes": path.stat().st_size}


def average(bits: dict[str, int], counts: dict[str, int]) -> float:
    return sum(counts[n] * b for n, b in bits.items()) / sum(counts[n] for n in bits)


def run_model(name: str, granularity: str, args: argparse.Namespace, folder: Path) -> dict:
    base, _ = ds.train.load_checkpoint(ASSETS / f"{name}.safetensors")
    data = ds.data.load(DATA[name])
    counts = {n: m.weight.numel() for n, m in weight_layers(base).items()}
    result: dict[str, Any] = {"model": name, "granularity": granularity, "weights": counts}
    result["float"] = evaluate(base, data, folder, f"{name}-float")
    uniform = {}
    for bits in args.uniform:
        model = quantize_(copy.deepcopy(base), MixedPrecision(default_bits=bits,
                                                              granularity=granularity))  # fmt: skip
        uniform[bits] = evaluate(model, data, folder, f"{name}-{granularity}-u{bits}")
        print(f"{name} {granularity} uniform {bits} bits: {uniform[bits]}", flush=True)
    began = time.perf_counter()
    scan = bit_sensitivity(base, data.train, args.candidates, granularity=granularity)
    result["scan_seconds"] = round(time.perf_counter() - began, 1)
    mixed = {}
    for budget in args.budgets:
        bits = allocate_bits(scan, counts, budget * sum(counts.values()))
        config = MixedPrecision(bits=bits, granularity=granularity)
        model = quantize_(copy.deepcopy(base), config)
        assert layer_bits_of(model) == bits
        mixed[budget] = {**evaluate(model, data, folder, f"{name}-{granularity}-m{budget}"),
                         "bits": bits, "average_bits": average(bits, counts)}  # fmt: skip
        print(f"{name} {granularity} mixed {budget} bits: {mixed[budget]}", flush=True)
    result.update(uniform=uniform, mixed=mixed, sensitivity=scan)
    return result


def table(results: list[dict]) -> str:
    out = ["| model | grid | weights | avg. bits | top-1 | .dsz bytes | widths (layer order) |",
           "|---|---|---|---:|---:|---:|---|"]  # fmt: skip
    for r in results:
        head = f"| {r['model']} | {r['granularity']} "
        out.append(head + f"| float | 32 | {r['float']['accuracy']:.2%} | "
                   f"{r['float']['dsz_bytes']:,} | |")  # fmt: skip
        rows = [(b, "uniform", u, str(b)) for b, u in r["uniform"].items()]
        rows += [(b, "mixed", m, " ".join(str(v) for v in m["bits"].values()))
                 for b, m in r["mixed"].items()]  # fmt: skip
        for bits, kind, row, widths in sorted(rows, key=lambda t: (t[0], t[1] != "uniform")):
            shown = row.get("average_bits", bits)
            out.append(head + f"| {kind} | {shown:.2f} | {row['accuracy']:.2%} | "
                       f"{row['dsz_bytes']:,} | {widths} |")  # fmt: skip
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["lenet5", "resnet20"], choices=list(DATA))
    parser.add_argument("--granularities", nargs="+", default=["channel", "tensor"])
    parser.add_argument("--uniform", type=int, nargs="+", default=[2, 3, 4, 8])
    parser.add_argument("--budgets", type=float, nargs="+", default=[2.5, 3.0, 4.0])
    parser.add_argument("--candidates", type=int, nargs="+", default=[2, 3, 4, 5, 6, 8])
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    torch.set_num_threads(1)
    torch.manual_seed(0)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            for granularity in args.granularities:
                results.append(run_model(name, granularity, args, Path(tmp)))
    text = table(results)
    print(text)
    path = write_result("mixed_precision", {"results": results, "table": text,
                                            "candidates": args.candidates})  # fmt: skip
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
