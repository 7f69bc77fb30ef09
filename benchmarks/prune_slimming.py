"""Network slimming (Liu et al. 2017) on a narrow VGG-11 for CIFAR-10, as a short CPU run.

1. Train ``vgg11_cifar(width=0.25)`` from scratch with the L1 penalty on BatchNorm scales
   (``slimming_penalty(lam)``) for ``--epochs`` epochs over a fixed ``--train-images`` subset
   (and, with ``--control``, the same model without the penalty, pruned the same way, to see
   what the penalty buys).
2. Prune ``--ratio`` of all channels by |γ| over the whole network
   (``ChannelPruning(criterion="bn_scale", scope="global")``).
3. Fine-tune ``--finetune-epochs`` epochs without the penalty.

Measured against the unpruned model in the same process: parameters, MACs, median CPU latency
(threads=1) at batch 1 and 64, and accuracy on the CIFAR-10 test subset (first 1,000 images).
Liu et al. train 160 epochs; this is minutes, so the numbers show the mechanism, not the paper's
accuracy.

    DEEPSHRINK_DATA=/work/shared/datasets python benchmarks/prune_slimming.py
"""

from __future__ import annotations

import argparse
import copy
import logging
import time
from typing import Any

import torch
from _common import write_result
from factorize_cifar import finetune_data
from prune_structured_cifar import measure, paired_latency

import deepshrink as ds
from deepshrink.prune import ChannelPruning, plan_channel_pruning, slimming_penalty
from deepshrink.prune.slimming import batchnorm_scales


def gamma_summary(model: torch.nn.Module) -> dict[str, float]:
    """How many BatchNorm scales are small, the thing the penalty is for."""
    scales = torch.cat([s.detach().abs().flatten() for s in batchnorm_scales(model).values()])
    return {
        "channels": int(scales.numel()),
        "median_abs_gamma": float(scales.median()),
        "share_below_0.05": float((scales < 0.05).float().mean()),
        "share_below_0.01": float((scales < 0.01).float().mean()),
    }


def train_prune_finetune(penalty: float, args: argparse.Namespace, data: Any) -> dict[str, Any]:
    torch.manual_seed(0)
    model = ds.zoo.create("vgg11_cifar", width=args.width)
    hooks = [slimming_penalty(lam=penalty)] if penalty else []
    fit = dict(lr=args.lr, weight_decay=5e-4, threads=args.threads, progress=False)
    began = time.perf_counter()
    ds.train.fit(model, data, epochs=args.epochs, loss_hooks=hooks, **fit)
    trained = {"accuracy": ds.train.evaluate(model, data.test).top1, **measure(model, ())}
    dense = copy.deepcopy(model)
    gammas = gamma_summary(model)
    config = ChannelPruning(ratio=args.ratio, criterion="bn_scale", scope="global", round_to=1)
    plan = plan_channel_pruning(model, config, model.example_inputs())
    ds.prune.apply_plan_(model, plan)
    pruned_accuracy = ds.train.evaluate(model, data.test).top1
    ds.train.fit(model, data, epochs=args.finetune_epochs, **{**fit, "lr": args.finetune_lr})
    return {
        "lam": penalty,
        "trained": trained,
        "gamma": gammas,
        "channels": {
            row["name"]: row["out"] for row in plan["layers"] if row["out"][0] != row["out"][1]
        },
        "pruned": measure(model, ()),
        "latency": paired_latency(dense.eval(), model.eval()),
        "accuracy_after_pruning": pruned_accuracy,
        "accuracy_after_finetune": ds.train.evaluate(model, data.test).top1,
        "seconds": round(time.perf_counter() - began, 1),
    }


def print_rows(rows: list[dict[str, Any]]) -> None:
    print("| λ | median abs γ | share abs γ < 0.05 | acc trained | params | MACs | ms b=1 dense → "
          "pruned | ms b=64 dense → pruned | acc pruned → fine-tuned |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        t, p, g, lat = r["trained"], r["pruned"], r["gamma"], r["latency"]
        times = []
        for b in (1, 64):
            key = f"latency_ms_batch{b}"
            times.append(f"{lat['dense'][key]:.2f} → {lat['pruned'][key]:.2f}")
        share = {k: p[k] / t[k] for k in ("parameters", "macs")}
        print(
            f"| {r['lam']} | {g['median_abs_gamma']:.3f} | {g['share_below_0.05']:.0%} | "
            f"{t['accuracy']:.1%} | {p['parameters']:,} ({share['parameters']:.0%}) | "
            f"{p['macs']:,} ({share['macs']:.0%}) | {times[0]} | {times[1]} | "
            f"{r['accuracy_after_pruning']:.1%} → {r['accuracy_after_finetune']:.1%} |"
        )
    for r in rows:
        channels = ", ".join(f"{n} {a}→{b}" for n, (a, b) in r["channels"].items())
        print(f"λ = {r['lam']}: {channels}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=float, default=0.25, help="vgg11_cifar channel width")
    parser.add_argument("--lam", type=float, nargs="+", default=[1e-4], help="L1 weights on |γ|")
    parser.add_argument("--control", action="store_true", help="also train without penalty")
    parser.add_argument("--epochs", type=int, default=3, help="training epochs")
    parser.add_argument("--ratio", type=float, default=0.5, help="share of channels removed")
    parser.add_argument("--finetune-epochs", type=int, default=1)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--finetune-lr", type=float, default=0.01)
    parser.add_argument("--threads", type=int, default=2, help="training threads")
    parser.add_argument("--train-images", type=int, default=50000, help="fixed training subset")
    parser.add_argument("--result-name", default="prune_slimming", help="results/<name>.json")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    data = finetune_data(ds.data.load("cifar10"), args.train_images)
    rows = [train_prune_finetune(lam, args, data) for lam in args.lam]
    if args.control:
        rows.append(train_prune_finetune(0.0, args, data))
    payload = {
        "model": f"vgg11_cifar(width={args.width})",
        "test_set": "CIFAR-10 test subset (first 1,000 images)",
        "settings": vars(args),
        "rows": rows,
    }
    path = write_result(args.result_name, payload)
    print_rows(rows)
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
