"""Tucker-2 and CP on a CIFAR-10 ResNet-20: MACs, parameters, measured latency, accuracy.

Each configuration factorizes the 3x3 convolutions of the residual blocks (the 3-channel stem
is left alone) under a keep policy, fine-tunes briefly (by default one epoch on a fixed
10,000-image subset of the training set), and measures the whole network against the dense one
in the same process (threads=1, batch 1 and 32; the two are timed in alternation, ``--rounds``
times, and the medians are kept). The ``"faster"`` policy times each layer, dense vs
factorized, on the input it really receives at batch 1 or 32 (as the configuration says); its
per-layer decisions are kept in the JSON. Accuracy is on the CIFAR-10 test subset (first 1,000
images). Results go to ``benchmarks/results/factorize_cifar.json``.

    DEEPSHRINK_DATA=/work/shared/datasets python benchmarks/factorize_cifar.py
"""

from __future__ import annotations

import argparse
import copy
import logging
import statistics
import time
from pathlib import Path
from typing import Any

import torch
from _common import write_result

import deepshrink as ds
from deepshrink.eval import count_macs, count_parameters, measure_latency
from deepshrink.factorize import (
    CPFactorization,
    FactorizationConfig,
    TuckerFactorization,
    apply_plan_,
    plan_factorization,
)

ASSETS = Path(__file__).resolve().parents[1] / "assets"
BLOCK_CONVS = "layer*.conv*"
logger = logging.getLogger("factorize_cifar")

#: label → (config, batch size of the inputs the "faster" policy times each layer on)
CONFIGS: dict[str, tuple[FactorizationConfig, int]] = {
    "tucker ×3, policy none": (TuckerFactorization(compression=3, policy="none"), 1),
    "tucker ×3, policy faster at b=1": (TuckerFactorization(compression=3, policy="faster"), 1),
    "tucker ×3, policy faster at b=32": (TuckerFactorization(compression=3, policy="faster"), 32),
    "cp ×3, policy none": (CPFactorization(compression=3, policy="none"), 1),
    "cp ×3, policy faster at b=32": (CPFactorization(compression=3, policy="faster"), 32),
}


def baseline(args: argparse.Namespace, data: ds.data.Data) -> tuple[torch.nn.Module, str]:
    """``--baseline``, else the committed asset, else a short run trained here (cached)."""
    if args.baseline:
        return ds.train.load_checkpoint(args.baseline)[0], args.baseline
    path = ASSETS / f"{args.model}.safetensors"
    if path.is_file():
        return ds.train.load_checkpoint(path)[0], str(path.relative_to(ASSETS.parent))
    cache = Path(args.cache)
    if cache.is_file():
        return ds.train.load_checkpoint(cache)[0], f"trained here ({cache})"
    torch.manual_seed(0)
    model = ds.zoo.create(args.model)
    settings = dict(epochs=args.train_epochs, lr=0.1, weight_decay=5e-4, threads=args.threads)
    ds.train.fit(model, data, progress=False, **settings)
    ds.train.save_checkpoint(model, cache, metadata={"settings": settings})
    return model, f"trained here: {settings}"


def finetune_data(data: ds.data.Data, images: int) -> ds.data.Data:
    """The first ``images`` of a fixed shuffle of the training set (augmented), same test set."""
    if images >= len(data.train):
        return data
    order = torch.randperm(len(data.train), generator=torch.Generator().manual_seed(0))
    return ds.data.Data(data.name, data.train.subset(order[:images]), data.test)


def measure(dense: torch.nn.Module, model: torch.nn.Module, rounds: int) -> dict[str, Any]:
    """Parameters, MACs per image and latency (threads=1) of both models at batch 1 and 32.

    The two models are timed in alternation, ``rounds`` times each (median of each timing, then
    the median over rounds), so that load from other processes falls on both alike; the speed-up
    is the median of the per-round ratios.
    """
    (one,) = model.example_inputs(batch_size=1)
    result: dict[str, Any] = {}
    for key, network in (("dense", dense), ("factorized", model)):
        result[key] = {"parameters": count_parameters(network), "macs": count_macs(network, one)}
    for batch in (1, 32):
        (x,) = model.example_inputs(batch_size=batch)
        times: dict[str, list[float]] = {"dense": [], "factorized": []}
        for _ in range(rounds):
            for key, network in (("dense", dense), ("factorized", model)):
                timing = measure_latency(network, x, threads=1, min_run_time=1.0)
                times[key].append(timing.median_ms)
        for key, values in times.items():
            result[key][f"latency_ms_batch{batch}"] = statistics.median(values)
        ratios = [d / f for d, f in zip(times["dense"], times["factorized"], strict=True)]
        result[f"speedup_batch{batch}"] = statistics.median(ratios)
        result[f"latency_rounds_batch{batch}"] = times
    return result


def run(label: str, args: argparse.Namespace, data: Any) -> Any:
    config, batch = CONFIGS[label]
    model, _ = baseline(args, data)
    dense = copy.deepcopy(model)
    inputs = model.example_inputs(batch_size=batch)
    plan = plan_factorization(model, config, include=BLOCK_CONVS, example_inputs=inputs)
    apply_plan_(model, plan)
    kept = [d.name for d in plan if d.accepted]
    logger.warning("%s: %d of %d layers kept; fine-tuning", label, len(kept), len(plan))
    before = ds.train.evaluate(model, data.test).top1
    began = time.perf_counter()
    if kept and args.epochs:
        ds.train.fit(
            model, finetune_data(data, args.finetune_images), epochs=args.epochs, lr=args.lr,
            weight_decay=5e-4, threads=args.threads, progress=False,
        )  # fmt: skip
    seconds = round(time.perf_counter() - began, 1)
    logger.warning("%s: fine-tuned in %.0f s; timing", label, seconds)
    return {
        "config": label,
        "settings": config.to_dict(),
        "policy_batch_size": batch,
        "layers_kept": len(kept),
        "layers_refused": len(plan) - len(kept),
        "decisions": [d.to_dict() for d in plan],
        **measure(dense, model, args.rounds),
        "accuracy_after_factorization": before,
        "accuracy_after_finetune": ds.train.evaluate(model, data.test).top1,
        "finetune_seconds": seconds,
    }


def print_table(rows: list[dict[str, Any]], dense_accuracy: float) -> None:
    print(f"dense accuracy {dense_accuracy:.1%} (CIFAR-10 test subset, first 1,000 images)\n")
    print(
        "| configuration | layers kept / refused | params × | MACs × | ms b=1 dense → fact. | "
        "× b=1 | ms b=32 dense → fact. | × b=32 | acc after fact. | acc fine-tuned |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        d, f = r["dense"], r["factorized"]
        print(
            f"| {r['config']} | {r['layers_kept']} / {r['layers_refused']} | "
            f"{d['parameters'] / f['parameters']:.2f} | {d['macs'] / f['macs']:.2f} | "
            f"{d['latency_ms_batch1']:.2f} → {f['latency_ms_batch1']:.2f} | "
            f"{r['speedup_batch1']:.2f} | "
            f"{d['latency_ms_batch32']:.1f} → {f['latency_ms_batch32']:.1f} | "
            f"{r['speedup_batch32']:.2f} | "
            f"{r['accuracy_after_factorization']:.1%} | {r['accuracy_after_finetune']:.1%} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet20")
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--epochs", type=int, default=1, help="fine-tune epochs")
    parser.add_argument("--lr", type=float, default=0.01, help="fine-tune peak lr (SGD, cosine)")
    parser.add_argument("--threads", type=int, default=1, help="training threads")
    parser.add_argument("--finetune-images", type=int, default=10000, help="train subset")
    parser.add_argument("--baseline", help="checkpoint to start from instead of the asset")
    parser.add_argument("--rounds", type=int, default=5, help="alternating latency rounds")
    parser.add_argument("--train-epochs", type=int, default=5, help="baseline without asset")
    parser.add_argument("--cache", default="runs/factorize_cifar_baseline.safetensors")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    torch.set_num_threads(1)  # decompositions and evaluation; fit takes --threads
    data = ds.data.load("cifar10")
    model, source = baseline(args, data)
    dense_accuracy = ds.train.evaluate(model, data.test).top1
    rows = [run(label, args, data) for label in args.configs]
    payload = {
        "baseline": source,
        "test_set": "CIFAR-10 test subset (first 1,000 images)",
        "accuracy_dense": dense_accuracy,
        "settings": {k: v for k, v in vars(args).items() if k != "configs"},
        "rows": rows,
    }
    path = write_result("factorize_cifar", payload)
    print_table(rows, dense_accuracy)
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
