"""k-means weight sharing on pruned LeNet-300-100 and LeNet-5 (Deep Compression, step 2).

1. Prune the baselines in ``assets/`` exactly as ``benchmarks/prune_lenet.py`` does (its
   :func:`prune_one`, default settings: 4 steps to ≤ 8 % of the weights, fine-tuned), once; the
   pruned checkpoints are cached under ``--cache``.
2. Han et al.'s widths: LeNet-300-100 at 6 bits everywhere, LeNet-5 at 8 bits for convolutions
   and 5 for fully connected layers. k-means (linear initialisation) over each layer's non-zero
   weights, then ``--epochs`` of centroid fine-tuning through ``ds.fit`` (SGD, momentum 0.9,
   cosine from ``--lr``, no weight decay, ±2 px shifts), then ``finalize_``, save, load back, and
   evaluate the loaded model on the 10,000 MNIST test images.
3. Initialisations: linear, density and random at 2–8 bits on pruned LeNet-300-100, accuracy
   right after sharing and after ``--sweep-epochs`` of centroid fine-tuning.

    DEEPSHRINK_DATA=/work/shared/datasets python benchmarks/kmeans_lenet.py
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

import torch
from _common import RESULTS, write_result
from prune_lenet import prune_one

import deepshrink as ds
from deepshrink.data.transforms import RandomCropPad
from deepshrink.prune import weight_counts
from deepshrink.quantize import KMeansQuantization, finalize_, quantize_

CACHE = Path(__file__).resolve().parents[1] / "runs" / "kmeans_lenet"
#: model → Han et al. 2016's widths (Table 2, 3)
WIDTHS: dict[str, int | dict[str, int]] = {"lenet300": 6, "lenet5": {"conv": 8, "linear": 5}}
INITS = ("linear", "density", "random")


def prune_defaults(save_dir: Path) -> argparse.Namespace:
    """The settings ``prune_lenet.py`` runs with by default."""
    return argparse.Namespace(
        steps=4, epochs=2, final_epochs=4, lr=0.01, distill=False, temperature=4.0, alpha=0.7,
        save_dir=str(save_dir),
    )  # fmt: skip


def pruned(name: str, data: ds.data.Data, cache: Path) -> torch.nn.Module:
    """The pruned model ``name`` from the cache, pruning it first when it is not there."""
    path = cache / f"pruned_{name}.safetensors"
    if not path.is_file():
        torch.manual_seed(0)
        row = prune_one(name, data, prune_defaults(cache / "work"))
        shutil.copy(row["checkpoint"], path)
        shutil.copy(Path(row["checkpoint"]).with_suffix(".json"), path.with_suffix(".json"))
        (cache / f"pruned_{name}.row.json").write_text(json.dumps(row, indent=2))
    return ds.train.load_checkpoint(path)[0]


def accuracy(model: torch.nn.Module, data: ds.data.Data) -> float:
    return ds.train.evaluate(model, data.test).top1


def tune(model: torch.nn.Module, data: ds.data.Data, epochs: int, lr: float) -> None:
    if epochs:
        ds.fit(model, data, epochs=epochs, lr=lr, weight_decay=0.0, progress=False)


def distinct(model: torch.nn.Module) -> dict[str, int]:
    """Distinct non-zero values of each layer's weight."""
    with torch.no_grad():
        return {n: len(m.weight[m.weight != 0].unique())
                for n, m in model.named_modules() if n in weight_counts(model)}  # fmt: skip


def share_one(name: str, base: torch.nn.Module, data: ds.data.Data, args: argparse.Namespace
              ) -> dict[str, Any]:  # fmt: skip
    """Han et al.'s widths on one pruned model: share, fine-tune, finalize, save, reload."""
    reference = accuracy(base, data)
    model = copy.deepcopy(base)
    config = KMeansQuantization(bits=WIDTHS[name], init="linear")
    began = time.perf_counter()
    quantize_(model, config)
    clustered = time.perf_counter() - began
    shared = accuracy(model, data)
    tune(model, data, args.epochs, args.lr)
    seconds = time.perf_counter() - began
    path = ds.save_checkpoint(finalize_(model), args.cache / f"shared_{name}")
    loaded, _ = ds.load_checkpoint(path)
    final = accuracy(loaded, data)
    row = {
        "model": name, "bits": WIDTHS[name], "init": "linear",
        "pruned_accuracy": reference, "shared_accuracy": shared, "tuned_accuracy": final,
        "drop_pp": 100 * (reference - final), "within_0_1_pp": reference - final <= 0.001,
        "kept_weights": {n: k for n, (k, _) in weight_counts(loaded).items()},
        "pruned_kept_weights": {n: k for n, (k, _) in weight_counts(base).items()},
        "distinct_values": distinct(loaded), "epochs": args.epochs, "lr": args.lr,
        "kmeans_seconds": round(clustered, 2), "seconds": round(seconds, 1),
    }  # fmt: skip
    print(
        f"{name} {WIDTHS[name]}: pruned {reference:.2%}, shared {shared:.2%}, "
        f"tuned {final:.2%} ({row['drop_pp']:+.2f} pp drop) in {seconds:.0f}s",
        flush=True,
    )
    return row


def sweep(base: torch.nn.Module, data: ds.data.Data, args: argparse.Namespace) -> list[dict]:
    """Accuracy of each initialisation at each width, before and after a short fine-tune."""
    rows = []
    for init in INITS:
        for bits in args.bits:
            model = copy.deepcopy(base)
            quantize_(model, KMeansQuantization(bits=bits, init=init, seed=0))
            shared = accuracy(model, data)
            tune(model, data, args.sweep_epochs, args.lr)
            tuned = accuracy(model, data) if args.sweep_epochs else None
            rows.append({"init": init, "bits": bits, "shared_accuracy": shared,
                         "tuned_accuracy": tuned})  # fmt: skip
            print(
                f"  {init:8s} {bits} bits: shared {shared:.2%}"
                + (f", tuned {tuned:.2%}" if tuned is not None else ""),
                flush=True,
            )
    return rows


def plot(rows: list[dict], reference: float, kept: float, path: Path, epochs: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [("shared_accuracy", "after sharing, no fine-tune")]
    if epochs:
        keys.append(("tuned_accuracy", f"after {epochs} epoch(s) of centroid fine-tuning"))
    fig, axes = plt.subplots(1, len(keys), figsize=(6 * len(keys), 4.2), sharey=True)
    for axis, (key, title) in zip(list(fig.axes) if len(keys) > 1 else [axes], keys, strict=True):
        for init, marker in zip(INITS, "os^", strict=True):
            points = [(r["bits"], 100 * r[key]) for r in rows if r["init"] == init]
            axis.plot(*zip(*points, strict=True), marker=marker, label=init)
        axis.axhline(100 * reference, color="gray", linestyle="--", label="pruned, float")
        axis.set(title=title, xlabel="bits per weight (2**bits shared values per layer)")
        axis.grid(alpha=0.3)
    (fig.axes[0]).set_ylabel("MNIST test accuracy (%)")
    fig.axes[0].legend(loc="lower right")
    fig.suptitle(f"Pruned LeNet-300-100 ({kept:.1%} of weights kept): k-means initialisation")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def table(rows: list[dict]) -> str:
    out = ["| model | bits | pruned acc. | after sharing | after fine-tune (loaded) | drop |"
           " distinct non-zeros per layer |", "|---|---|---:|---:|---:|---:|---|"]  # fmt: skip
    for r in rows:
        bits = r["bits"] if isinstance(r["bits"], int) else ", ".join(
            f"{k} {v}" for k, v in r["bits"].items())  # fmt: skip
        out.append(
            f"| {r['model']} | {bits} | {r['pruned_accuracy']:.2%} | "
            f"{r['shared_accuracy']:.2%} | {r['tuned_accuracy']:.2%} | "
            f"{r['drop_pp']:.2f} pp | "
            + ", ".join(f"{n} {v}" for n, v in r["distinct_values"].items())
            + " |"
        )
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(WIDTHS), choices=list(WIDTHS))
    parser.add_argument("--stage", choices=["prune", "all"], default="all")
    parser.add_argument("--epochs", type=int, default=2, help="centroid fine-tune epochs")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--bits", type=int, nargs="+", default=list(range(2, 9)))
    parser.add_argument("--sweep-epochs", type=int, default=1)
    parser.add_argument("--no-sweep", action="store_true")
    parser.add_argument("--cache", type=Path, default=CACHE)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    torch.set_num_threads(1)
    args.cache.mkdir(parents=True, exist_ok=True)
    data = ds.data.load("mnist")
    data.train.transform = RandomCropPad(28, 2)
    bases = {name: pruned(name, data, args.cache) for name in args.models}
    if args.stage == "prune":
        return
    rows = [share_one(name, bases[name], data, args) for name in args.models]
    text = table(rows)
    print(text)
    payload: dict[str, Any] = {"rows": rows, "table": text}
    if not args.no_sweep and "lenet300" in bases:
        payload["sweep"] = sweep(bases["lenet300"], data, args)
        payload["sweep_epochs"] = args.sweep_epochs
        png = RESULTS / "kmeans_lenet300_inits.png"
        counts = weight_counts(bases["lenet300"]).values()
        kept = sum(k for k, _ in counts) / sum(t for _, t in counts)
        reference = rows[args.models.index("lenet300")]["pruned_accuracy"]
        plot(payload["sweep"], reference, kept, png, args.sweep_epochs)
        print(f"wrote {png}")
    payload["load_average"] = os.getloadavg()
    print(f"wrote {write_result('kmeans_lenet_' + '_'.join(args.models), payload)}")


if __name__ == "__main__":
    main()
