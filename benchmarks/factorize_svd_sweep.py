"""SVD of the dense layers of lenet300 (MNIST) and mlp_fc4 (Fashion-MNIST): a rank sweep.

For each target compression every hidden Linear layer (all but the classifier) is replaced by
its truncated SVD at the largest rank within the budget; accuracy is measured right after the
SVD and after a short fine-tune. A per-layer sweep of one large layer (rank vs reconstruction
error, parameters, MACs and measured latency, threads=1, batch 1 and 100) shows the rank
selection data. Results go to ``benchmarks/results/factorize_svd_sweep.json``.

    DEEPSHRINK_DATA=/work/shared/datasets python benchmarks/factorize_svd_sweep.py
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
from deepshrink.eval import count_parameters
from deepshrink.factorize import SVDFactorization, factorize_, sweep

ASSETS = Path(__file__).resolve().parents[1] / "assets"

#: model → (dataset, classifier layer left dense, layer for the per-layer sweep)
MODELS = {"lenet300": ("mnist", "fc3", "fc1"), "mlp_fc4": ("fashion-mnist", "fc5", "fc2")}


def baseline(name: str, data: ds.data.Data, threads: int) -> tuple[torch.nn.Module, str]:
    """The committed checkpoint, or (mlp_fc4 without one) 10 epochs of SGD trained here."""
    path = ASSETS / f"{name}.safetensors"
    if path.is_file():
        model, _ = ds.train.load_checkpoint(path)
        return model, str(path.relative_to(ASSETS.parent))
    torch.manual_seed(0)
    model = ds.zoo.create(name)
    ds.train.fit(model, data, epochs=10, lr=0.05, threads=threads, progress=False)
    return model, "trained here: 10 epochs SGD lr 0.05 cosine"


def finetune(model: torch.nn.Module, data: ds.data.Data, args: argparse.Namespace) -> float:
    """SGD with weight decay 1e-4 for ``args.epochs`` at peak ``args.lr``; returns the seconds."""
    began = time.perf_counter()
    ds.train.fit(
        model, data, epochs=args.epochs, lr=args.lr, weight_decay=1e-4, threads=args.threads,
        progress=False,
    )  # fmt: skip
    return round(time.perf_counter() - began, 1)


def compress(
    name: str, data: ds.data.Data, compression: float, args: argparse.Namespace
) -> dict[str, Any]:
    model, _ = baseline(name, data, args.threads)
    dense_parameters = count_parameters(model)
    classifier = MODELS[name][1]
    dense_layers = sum(
        count_parameters(m)
        for n, m in model.named_children()
        if n.startswith("fc") and n != classifier
    )
    factorize_(model, SVDFactorization(compression=compression), exclude=classifier)
    ranks = {n: m.rank for n, m in model.named_children() if hasattr(m, "rank")}
    low_layers = sum(count_parameters(getattr(model, n)) for n in ranks)
    before = ds.train.evaluate(model, data.test).top1
    seconds = finetune(model, data, args)
    return {
        "model": name,
        "compression_target": compression,
        "ranks": ranks,
        "fc_parameters_dense": dense_layers,
        "fc_parameters_factorized": low_layers,
        "fc_reduction": dense_layers / low_layers,
        "model_reduction": dense_parameters / count_parameters(model),
        "accuracy_after_svd": before,
        "accuracy_after_finetune": ds.train.evaluate(model, data.test).top1,
        "finetune_seconds": seconds,
    }


def layer_sweep(name: str, data: ds.data.Data, ranks: list[int], threads: int) -> dict[str, Any]:
    model, _ = baseline(name, data, threads)
    layer_name = MODELS[name][2]
    layer = getattr(model, layer_name)
    configs = [SVDFactorization(rank=r) for r in ranks if r <= min(layer.weight.shape)]
    rows: dict[int, list[Any]] = {}
    for batch in (1, 100):
        inputs = torch.randn(batch, layer.in_features, generator=torch.Generator().manual_seed(0))
        rows[batch] = sweep(layer, configs, inputs, threads=1, min_run_time=0.5)
    points = []
    for one, hundred in zip(rows[1], rows[100], strict=True):
        point = one.to_dict() | {"latency_ms_batch100": hundred.latency_ms}
        point["speedup_batch100"] = hundred.speedup
        points.append(point)
    return {"model": name, "layer": layer_name, "shape": list(layer.weight.shape), "points": points}


def print_tables(rows: list[dict[str, Any]], sweeps: list[dict[str, Any]]) -> None:
    print("| model | target × | ranks | FC params dense → SVD | FC × | model × | acc dense | "
          "acc after SVD | acc after fine-tune |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        ranks = ", ".join(f"{k}:{v}" for k, v in row["ranks"].items())
        print(
            f"| {row['model']} | {row['compression_target']:g} | {ranks} | "
            f"{row['fc_parameters_dense']:,} → {row['fc_parameters_factorized']:,} | "
            f"{row['fc_reduction']:.1f}× | {row['model_reduction']:.1f}× | "
            f"{row['accuracy_dense']:.2%} | {row['accuracy_after_svd']:.2%} | "
            f"{row['accuracy_after_finetune']:.2%} |"
        )
    for item in sweeps:
        print(f"\n{item['model']}.{item['layer']} {item['shape']} (threads=1, median)\n")
        print("| rank | rel. error | params | MACs | ms b=1 | × b=1 | ms b=100 | × b=100 |")
        print("|---|---|---|---|---|---|---|---|")
        for p in item["points"]:
            print(
                f"| {p['label']} | {p['error']:.3f} | {p['parameters']:,} | {p['macs']:,} | "
                f"{p['latency_ms']:.4f} | {p['speedup']:.2f} | {p['latency_ms_batch100']:.4f} | "
                f"{p['speedup_batch100']:.2f} |"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--compressions", nargs="+", type=float, default=[4, 8, 13, 20])
    parser.add_argument("--epochs", type=int, default=3, help="fine-tune epochs")
    parser.add_argument("--lr", type=float, default=0.01, help="fine-tune peak lr (SGD, cosine)")
    parser.add_argument("--threads", type=int, default=2, help="training threads")
    parser.add_argument("--sweep-ranks", nargs="+", type=int, default=[8, 16, 32, 64, 128, 256])
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    rows, sweeps, sources = [], [], {}
    for name in args.models:
        data = ds.data.load(MODELS[name][0])
        model, sources[name] = baseline(name, data, args.threads)
        dense = ds.train.evaluate(model, data.test).top1
        for compression in args.compressions:
            rows.append(compress(name, data, compression, args) | {"accuracy_dense": dense})
        sweeps.append(layer_sweep(name, data, args.sweep_ranks, args.threads))
    settings = {k: v for k, v in vars(args).items() if k != "models"}
    payload = {"baselines": sources, "settings": settings, "rows": rows, "layer_sweeps": sweeps}
    path = write_result("factorize_svd_sweep", payload)
    print_tables(rows, sweeps)
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
