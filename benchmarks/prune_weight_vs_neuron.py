"""Weight pruning vs neuron pruning of mlp_fc4 on Fashion-MNIST, at k = 0 … 99 %.

Reproduces the weight-vs-unit pruning study (FC-4: 784-1000-1000-500-200-10): at each k the
trained network is pruned one-shot, either k% of the weights of every hidden layer by magnitude
(``MagnitudePruning``, layer scope) or k% of the units of every hidden layer by the L2 norm of
their weight rows (``NeuronPruning``, physically removed). The classifier layer ``fc5`` is never
pruned (neuron pruning cannot remove output classes; weight pruning leaves it alone for parity).
Accuracy is measured on the 10,000 test images right after pruning, as in the original study,
and after a short fine-tune of each pruned model. Results: a Markdown table on stdout,
``benchmarks/results/prune_weight_vs_neuron.json`` and ``prune_weight_vs_neuron.png``.

    DEEPSHRINK_DATA=/work/shared/datasets python benchmarks/prune_weight_vs_neuron.py
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import time
from pathlib import Path
from typing import Any

import torch
from _common import RESULTS, write_result

import deepshrink as ds
import deepshrink.prune as dp
from deepshrink.eval import count_nonzero, count_parameters

ASSETS = Path(__file__).resolve().parents[1] / "assets"
KS = [0, 25, 50, 60, 70, 80, 90, 95, 97, 99]
CLASSIFIER = "fc5"


def baseline(data: ds.data.Data, epochs: int, threads: int | None) -> tuple[Any, str]:
    """assets/mlp_fc4 when present, else ``epochs`` of SGD (lr 0.05, cosine) trained here."""
    path = ASSETS / "mlp_fc4.safetensors"
    if path.is_file():
        model, _ = ds.train.load_checkpoint(path)
        return model, f"checkpoint {path.relative_to(ASSETS.parent)}"
    torch.manual_seed(0)
    model = ds.zoo.create("mlp_fc4")
    ds.train.fit(model, data, epochs=epochs, lr=0.05, threads=threads, progress=False)
    return model, f"trained here: {epochs} epochs SGD lr 0.05 cosine, seed 0"


def prune(model: Any, method: str, k: float) -> Any:
    pruned = copy.deepcopy(model)
    if method == "weight":
        return dp.prune_(pruned, dp.MagnitudePruning(sparsity=k), exclude=CLASSIFIER)
    return dp.prune_(pruned, dp.NeuronPruning(ratio=k))


def run_one(model: Any, data: ds.data.Data, method: str, k: int, tune: dict[str, Any]) -> dict:
    pruned = prune(model, method, k / 100)
    one_shot = ds.train.evaluate(pruned, data.test).top1
    began = time.perf_counter()
    if tune["epochs"]:
        ds.train.fit(pruned, data, progress=False, **tune)
    seconds = time.perf_counter() - began
    row = {
        "method": method,
        "k": k,
        "accuracy_one_shot": one_shot,
        "accuracy_fine_tuned": ds.train.evaluate(pruned, data.test).top1,
        "parameters": count_parameters(pruned),
        "nonzero_parameters": count_nonzero(pruned),
        "fine_tune_seconds": round(seconds, 1),
    }
    print(
        f"{method:6s} k={k:2d}%  one-shot {one_shot:.2%}  fine-tuned "
        f"{row['accuracy_fine_tuned']:.2%}  nonzero {row['nonzero_parameters']:,}",
        flush=True,
    )
    return row


def table(rows: list[dict], base: float) -> str:
    by = {(r["method"], r["k"]): r for r in rows}
    lines = [
        "| k % | weight, one-shot | neuron, one-shot | weight, fine-tuned | neuron, fine-tuned "
        "| non-zero params weight / neuron |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for k in sorted({r["k"] for r in rows}):
        w, n = by[("weight", k)], by[("neuron", k)]
        lines.append(
            f"| {k} | {w['accuracy_one_shot']:.2%} | {n['accuracy_one_shot']:.2%} "
            f"| {w['accuracy_fine_tuned']:.2%} | {n['accuracy_fine_tuned']:.2%} "
            f"| {w['nonzero_parameters']:,} / {n['nonzero_parameters']:,} |"
        )
    return f"Dense baseline: {base:.2%}\n\n" + "\n".join(lines)


def plot(rows: list[dict], base: float, path: Path, tune_epochs: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    styles = {"weight": ("tab:blue", "o"), "neuron": ("tab:red", "s")}
    ks_all = sorted({r["k"] for r in rows})
    position = {k: index for index, k in enumerate(ks_all)}  # evenly spaced: 95/97/99 readable
    for method, (color, marker) in styles.items():
        part = sorted((r for r in rows if r["method"] == method), key=lambda r: r["k"])
        ks = [position[r["k"]] for r in part]
        ax.plot(ks, [100 * r["accuracy_one_shot"] for r in part], color=color, marker=marker,
                label=f"{method} pruning, one-shot")  # fmt: skip
        if tune_epochs:
            ax.plot(ks, [100 * r["accuracy_fine_tuned"] for r in part], color=color,
                    marker=marker, linestyle="--", markerfacecolor="none",
                    label=f"{method} pruning, + {tune_epochs} epoch fine-tune")  # fmt: skip
    ax.axhline(100 * base, color="gray", linewidth=0.8, linestyle=":", label="dense")
    ax.set_xlabel(
        "k: % of weights (weight pruning) or units (neuron pruning) removed (k evenly spaced)"
    )
    ax.set_xticks(range(len(ks_all)), [str(k) for k in ks_all])
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("mlp_fc4 on Fashion-MNIST: weight vs neuron pruning")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize=8, framealpha=0.9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ks", type=int, nargs="+", default=KS, help="k in percent")
    parser.add_argument("--epochs", type=int, default=10, help="baseline training, if trained")
    parser.add_argument("--fine-tune-epochs", type=int, default=1)
    parser.add_argument("--fine-tune-lr", type=float, default=0.01)
    parser.add_argument("--threads", type=int)
    parser.add_argument("--plot-only", action="store_true", help="redraw the PNG from the JSON")
    args = parser.parse_args()
    png = RESULTS / "prune_weight_vs_neuron.png"
    if args.plot_only:
        saved = json.loads((RESULTS / "prune_weight_vs_neuron.json").read_text())
        epochs = saved["fine_tune"]["epochs"]
        plot(saved["rows"], saved["baseline_accuracy"], png, epochs)
        return
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    data = ds.data.load("fashion-mnist")
    model, source = baseline(data, args.epochs, args.threads)
    base = ds.train.evaluate(model, data.test).top1
    print(f"baseline ({source}): {base:.2%}", flush=True)
    tune = {"epochs": args.fine_tune_epochs, "lr": args.fine_tune_lr, "weight_decay": 1e-4}
    rows = [run_one(model, data, m, k, tune) for k in args.ks for m in ("weight", "neuron")]
    text = table(rows, base)
    print(text)
    RESULTS.mkdir(parents=True, exist_ok=True)
    plot(rows, base, png, args.fine_tune_epochs)
    settings = {**tune, "optimizer": "sgd", "momentum": 0.9, "schedule": "cosine", "seed": 0}
    payload = {"baseline": source, "baseline_accuracy": base, "fine_tune": settings}
    path = write_result("prune_weight_vs_neuron", {**payload, "rows": rows, "table": text})
    print(f"wrote {path} and {png}")


if __name__ == "__main__":
    main()
