"""LeNet-300-100 and LeNet-5 on MNIST pruned to ≤ 8 % of their weights (Han et al. 2015 levels).

Starting from the trained baselines in ``assets/``, each model is pruned by weight magnitude with
per-layer targets close to Han et al.'s (fc1 of LeNet-300-100 a little sparser, so the total
stays under 8 %), iteratively: ``--steps`` rounds that each remove the same share of the
surviving weights, each followed by ``--epochs`` of fine-tuning (SGD, momentum 0.9, cosine from
``--lr``, the baselines' ±2 px random shifts), then ``--final-epochs`` more at the target. The
masks are finalized, the model is saved (under ``--save-dir``, default /tmp) and loaded back from
the checkpoint, and the loaded model is evaluated on the 10,000 MNIST test images.

    DEEPSHRINK_DATA=/work/shared/datasets python benchmarks/prune_lenet.py
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path
from typing import Any

import torch
from _common import write_result

import deepshrink as ds
import deepshrink.prune as dp
from deepshrink.data.transforms import RandomCropPad

ASSETS = Path(__file__).resolve().parents[1] / "assets"

#: model → per-layer sparsity we ask for, Han et al.'s kept % per layer, and the error target
PLANS: dict[str, dict[str, Any]] = {
    "lenet300": {
        "sparsity": {"fc1": 0.925, "fc2": 0.91, "fc3": 0.74},
        "han_kept": {"fc1": 8, "fc2": 9, "fc3": 26},
        "error_target": 0.0164,
        "weight_decay": 1e-4,
    },
    "lenet5": {
        "sparsity": {"conv1": 0.34, "conv2": 0.88, "fc1": 0.93, "fc2": 0.81},
        "han_kept": {"conv1": 66, "conv2": 12, "fc1": 8, "fc2": 19},
        "error_target": 0.0080,
        "weight_decay": 5e-4,
    },
}


def prune_one(name: str, data: ds.data.Data, args: argparse.Namespace) -> dict[str, Any]:
    plan = PLANS[name]
    model, _ = ds.train.load_checkpoint(ASSETS / f"{name}.safetensors")
    dense_error = 1 - ds.train.evaluate(model, data.test).top1
    layers = plan["sparsity"]
    config = dp.MagnitudePruning(sparsity=max(layers.values()), overrides=layers)
    tune = {"epochs": args.epochs, "lr": args.lr, "weight_decay": plan["weight_decay"]}
    hooks = []
    if args.distill:
        import copy

        hooks.append(dp.distillation_loss(copy.deepcopy(model), args.temperature, args.alpha))
    began = time.perf_counter()
    steps = dp.iterative_prune(model, data, config, steps=args.steps, fine_tune=tune,
                               loss_hooks=hooks)  # fmt: skip
    if args.final_epochs:
        ds.train.fit(model, data, progress=False, loss_hooks=hooks,
                     **{**tune, "epochs": args.final_epochs})  # fmt: skip
    seconds = time.perf_counter() - began
    counts = dp.weight_counts(dp.finalize_(model))
    path = ds.train.save_checkpoint(model, Path(args.save_dir) / f"prune_lenet_{name}")
    loaded, _ = ds.train.load_checkpoint(path)
    error = 1 - ds.train.evaluate(loaded, data.test).top1
    kept, total = sum(k for k, _ in counts.values()), sum(t for _, t in counts.values())
    row = {
        "model": name,
        "dense_error": dense_error,
        "error": error,
        "error_target": plan["error_target"],
        "kept_weights": kept,
        "weights": total,
        "kept_fraction": kept / total,
        "compression": total / kept,
        "layers": {
            n: {
                "kept": k,
                "weights": t,
                "kept_percent": 100 * k / t,
                "han_kept_percent": plan["han_kept"][n],
            }
            for n, (k, t) in counts.items()
        },  # fmt: skip
        "steps": [vars(s) for s in steps],
        "fine_tune": {
            **tune,
            "steps": args.steps,
            "final_epochs": args.final_epochs,
            "distill": args.distill,
            "random_shift_px": 2,
        },  # fmt: skip
        "seconds": round(seconds, 1),
        "checkpoint": str(path),
        "meets_targets": kept / total <= 0.08 and error <= plan["error_target"],
    }
    print(f"{name}: error {dense_error:.2%} → {error:.2%}, kept {kept / total:.2%} "
          f"({total / kept:.1f}×) in {seconds:.0f}s", flush=True)  # fmt: skip
    return row


def tables(rows: list[dict[str, Any]]) -> str:
    out = [
        "| model | dense error | pruned error | target | weights kept | compression | meets |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        out.append(
            f"| {r['model']} | {r['dense_error']:.2%} | {r['error']:.2%} | "
            f"≤ {r['error_target']:.2%} | {r['kept_weights']:,} / {r['weights']:,} "
            f"({r['kept_fraction']:.2%}) | {r['compression']:.1f}× | "
            f"{'yes' if r['meets_targets'] else 'no'} |"
        )
    for r in rows:
        out += ["", f"{r['model']} per layer:", ""]
        out += [
            "| layer | weights | kept | kept % | Han et al. kept % |",
            "|---|---:|---:|---:|---:|",
        ]
        for name, layer in r["layers"].items():
            out.append(
                f"| {name} | {layer['weights']:,} | {layer['kept']:,} | "
                f"{layer['kept_percent']:.1f} | {layer['han_kept_percent']} |"
            )
        out.append(
            f"| total | {r['weights']:,} | {r['kept_weights']:,} | "
            f"{100 * r['kept_fraction']:.2f} | 8 |"
        )
    return "\n".join(out)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags :func:`prune_one` reads (also used by ``deep_compression.py``)."""
    parser.add_argument("--models", nargs="+", default=list(PLANS), choices=list(PLANS))
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=2, help="fine-tune epochs per step")
    parser.add_argument("--final-epochs", type=int, default=4)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--distill", action="store_true", help="distil from the dense model")
    parser.add_argument("--temperature", type=float, default=4.0)
    parser.add_argument("--alpha", type=float, default=0.7)
    parser.add_argument("--threads", type=int)


def prepare(args: argparse.Namespace) -> ds.data.Data:
    """Logging, threads, seed, and MNIST with the baselines' ±2 px random shifts."""
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    data = ds.data.load("mnist")
    data.train.transform = RandomCropPad(28, 2)
    return data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    parser.add_argument("--save-dir", default="/tmp/deepshrink-prune")
    args = parser.parse_args()
    data = prepare(args)
    rows = [prune_one(name, data, args) for name in args.models]
    text = tables(rows)
    print(text)
    path = write_result("prune_lenet", {"rows": rows, "table": text})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
