"""Train the baseline models that later compression work starts from.

Each model is trained with a fixed recipe and seed, evaluated on its full test set, and saved as
a deepshrink checkpoint (``assets/<model>.safetensors`` + ``.json``) when ``--save`` is given.
The numbers go to ``benchmarks/results/baselines.json`` and a table on stdout.

    python benchmarks/train_baselines.py --models lenet300 lenet5 --save
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
from deepshrink.data.transforms import RandomCropPad

ASSETS = Path(__file__).resolve().parents[1] / "assets"

#: model → (dataset, fit settings, random-shift augmentation in pixels or 0)
RECIPES: dict[str, tuple[str, dict[str, Any], int]] = {
    "lenet300": ("mnist", dict(epochs=40, lr=0.05, batch_size=128, weight_decay=1e-4), 2),
    "lenet5": ("mnist", dict(epochs=30, lr=0.05, batch_size=128, weight_decay=5e-4), 2),
    "mnist_cnn": ("mnist", dict(epochs=10, optimizer="adam", lr=1e-3, weight_decay=0.0), 0),
    "mlp_fc4": ("fashion-mnist", dict(epochs=30, lr=0.05, batch_size=128, weight_decay=1e-4), 0),
    "resnet20": ("cifar10", dict(epochs=30, lr=0.1, batch_size=128, weight_decay=5e-4), 0),
    "mobilenetv2_cifar": ("cifar10", dict(epochs=5, lr=0.1, batch_size=128, weight_decay=4e-5), 0),
}


def train_one(
    name: str, epochs: int | None, threads: int | None, seed: int, state: Path | None
) -> dict[str, Any]:
    dataset, settings, shift = RECIPES[name]
    if epochs is not None:
        settings = {**settings, "epochs": epochs}
    data = ds.data.load(dataset, seed=seed)
    if shift:
        side = data.train.input_shape[-1]
        data.train.transform = RandomCropPad(side, shift)
    torch.manual_seed(seed)
    model = ds.zoo.create(name)
    began = time.perf_counter()
    history = ds.train.fit(
        model, data, seed=seed, threads=threads, checkpoint_dir=state / name if state else None,
        resume=state is not None, **settings,
    )  # fmt: skip
    seconds = time.perf_counter() - began
    result = ds.train.evaluate(model, data.test)
    return {
        "model": name,
        "data": dataset,
        "test_set": "CIFAR-10 test subset (first 1,000 images)" if dataset == "cifar10" else "full",
        "test_images": result.count,
        "accuracy": result.top1,
        "error": 1 - result.top1,
        "settings": {**settings, "seed": seed, "random_shift_px": shift},
        "train_seconds": round(seconds, 1),
        "epochs_run": len(history.records),
        "_model": model,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    parser.add_argument("--epochs", type=int, help="override every model's epoch count")
    parser.add_argument("--threads", type=int)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--save", action="store_true", help="write checkpoints into assets/")
    parser.add_argument("--state", type=Path, help="keep training state here; rerun to resume")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    rows = []
    for name in args.models:
        row = train_one(name, args.epochs, args.threads, args.seed, args.state)
        model = row.pop("_model")
        if args.save:
            meta = {k: v for k, v in row.items() if k != "model"}
            ds.train.save_checkpoint(model, ASSETS / name, metadata=meta)
        rows.append(row)
        print(
            f"{name:10s} {row['data']:14s} acc {row['accuracy']:.2%} "
            f"err {row['error']:.2%} ({row['epochs_run']} epochs, {row['train_seconds']}s)"
        )
    path = write_result("baselines_" + "_".join(args.models), {"rows": rows})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
