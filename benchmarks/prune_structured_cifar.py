"""Channel pruning of a trained CIFAR-10 ResNet-20 at about half the MACs: size, speed, accuracy.

Each criterion prunes ``--ratio`` of the channels inside every residual block (ResNet-20 has
option-A zero-padding shortcuts, so the channels of the residual stream are left whole; the
block-internal channels carry half of the MACs of each block), fine-tunes briefly (by default
one epoch on a fixed 10,000-image subset of the training set) and is measured against the
dense model in the same process: parameters, MACs, median CPU latency (threads=1) at batch 1
and 64 (dense and pruned timed alternately, three rounds, median), and accuracy on the CIFAR-10
test subset (first 1,000 images).

    DEEPSHRINK_DATA=/work/shared/datasets python benchmarks/prune_structured_cifar.py \\
        --baseline /work/main/assets/resnet20.safetensors
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

import deepshrink as ds
from deepshrink.eval import count_macs, count_parameters, measure_latency
from deepshrink.prune import ChannelPruning, apply_plan_, plan_channel_pruning


def measure(model: torch.nn.Module, batches: tuple[int, ...] = (1, 64)) -> dict[str, Any]:
    """Parameters, MACs per image and median latency (threads=1) at each batch size."""
    (one,) = model.example_inputs(batch_size=1)
    result = {"parameters": count_parameters(model), "macs": count_macs(model, one)}
    for batch in batches:
        (x,) = model.example_inputs(batch_size=batch)
        timing = measure_latency(model, x, threads=1, min_run_time=2.0)
        result[f"latency_ms_batch{batch}"] = timing.median_ms
    return result


def paired_latency(
    dense: torch.nn.Module, pruned: torch.nn.Module, rounds: int = 3
) -> dict[str, dict[str, float]]:
    """Median latency (threads=1) of both models at batch 1 and 64, measured alternately.

    The CPU is shared, so load drifts; alternating ``rounds`` times and taking the median of each
    model's medians keeps the ratio fair.
    """
    times: dict[str, dict[int, list[float]]] = {"dense": {1: [], 64: []}, "pruned": {1: [], 64: []}}
    for _ in range(rounds):
        for batch in (1, 64):
            for label, model in (("dense", dense), ("pruned", pruned)):
                (x,) = model.example_inputs(batch_size=batch)
                timing = measure_latency(model, x, threads=1, min_run_time=1.0)
                times[label][batch].append(timing.median_ms)
    return {
        label: {f"latency_ms_batch{b}": float(torch.tensor(v).median()) for b, v in per.items()}
        for label, per in times.items()
    }


def calibration(data: ds.data.Data, batches: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The first ``batches`` batches of 64 training images (fixed), for data-aware criteria."""
    loader = torch.utils.data.DataLoader(data.train, batch_size=64, shuffle=False)
    return [batch for _, batch in zip(range(batches), loader, strict=False)]


def run(criterion: str, dense: torch.nn.Module, args: argparse.Namespace, data: Any) -> Any:
    model = copy.deepcopy(dense)
    streams = [] if args.prune_streams else ["conv1", "layer*.*.conv2"]  # block-internal only
    config = ChannelPruning(ratio=args.ratio, criterion=criterion, seed=0, ignore=streams)
    batches = (
        calibration(data, args.calibration_batches) if criterion in ("taylor", "apoz") else None
    )
    plan = plan_channel_pruning(model, config, model.example_inputs(), calibration=batches)
    apply_plan_(model, plan)
    pruned_accuracy = ds.train.evaluate(model, data.test).top1
    began = time.perf_counter()
    if args.epochs:
        ds.train.fit(
            model, finetune_data(data, args.finetune_images), epochs=args.epochs, lr=args.lr,
            weight_decay=5e-4, threads=args.threads, progress=False,
        )  # fmt: skip
    return {
        "criterion": criterion,
        "settings": config.to_dict(),
        "groups_pruned": len(plan["groups"]),
        "groups_kept_whole": plan["skipped"],
        "plan_totals": plan["totals"],
        "pruned": measure(model, batches=()),
        "latency": paired_latency(dense, model),
        "accuracy_after_pruning": pruned_accuracy,
        "accuracy_after_finetune": ds.train.evaluate(model, data.test).top1,
        "finetune_seconds": round(time.perf_counter() - began, 1),
    }


def print_table(rows: list[dict[str, Any]], dense: dict[str, Any], accuracy: float) -> None:
    print(f"dense: {dense['parameters']:,} params, {dense['macs']:,} MACs, accuracy "
          f"{accuracy:.1%} (CIFAR-10 test subset, first 1,000 images)\n")  # fmt: skip
    print("| criterion | params | MACs | ms b=1 dense → pruned (speed-up) | ms b=64 dense → pruned "
          "(speed-up) | acc pruned | acc fine-tuned |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        p, t = r["pruned"], r["latency"]
        share = {key: p[key] / dense[key] for key in ("parameters", "macs")}
        cells = []
        for batch in (1, 64):
            a, b = (t[label][f"latency_ms_batch{batch}"] for label in ("dense", "pruned"))
            cells.append(f"{a:.2f} → {b:.2f} ({a / b:.2f}×)")
        print(
            f"| {r['criterion']} | {p['parameters']:,} ({share['parameters']:.0%}) | "
            f"{p['macs']:,} ({share['macs']:.0%}) | {cells[0]} | {cells[1]} | "
            f"{r['accuracy_after_pruning']:.1%} | {r['accuracy_after_finetune']:.1%} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", default="/work/main/assets/resnet20.safetensors")
    parser.add_argument("--criteria", nargs="+", default=["l1", "random"])
    parser.add_argument("--ratio", type=float, default=0.5, help="channels removed per block")
    parser.add_argument("--epochs", type=int, default=1, help="fine-tune epochs")
    parser.add_argument("--lr", type=float, default=0.01, help="fine-tune peak lr (SGD, cosine)")
    parser.add_argument("--threads", type=int, default=2, help="training threads")
    parser.add_argument("--finetune-images", type=int, default=10000, help="train subset")
    parser.add_argument("--calibration-batches", type=int, default=4, help="taylor/apoz data")
    parser.add_argument(
        "--prune-streams",
        action="store_true",
        help="also prune the residual streams (default: inside blocks only)",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    data = ds.data.load("cifar10")
    model = ds.train.load_checkpoint(args.baseline)[0].eval()
    accuracy = ds.train.evaluate(model, data.test).top1
    dense = measure(model, batches=())
    rows = [run(criterion, model, args, data) for criterion in args.criteria]
    payload = {
        "baseline": args.baseline,
        "test_set": "CIFAR-10 test subset (first 1,000 images)",
        "accuracy_dense": accuracy,
        "dense": dense,
        "settings": {k: v for k, v in vars(args).items() if k != "criteria"},
        "rows": rows,
    }
    path = write_result("prune_structured_cifar", payload)
    print_table(rows, dense, accuracy)
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
