"""Tensor-Train layers: mlp_fc4's 1000x1000 layer and lenet300's 784x300 layer as TTLinear.

For each configuration the named layer is replaced by a :class:`~deepshrink.factorize.TTLinear`
(TT-SVD of the trained weights, or random init), the network is fine-tuned briefly, and the
layer's forward time is measured against the dense layer in the same process (threads=1,
median, batch 1 and 100) — the comparison of Novikov et al. 2015, Table 3. Results go to
``benchmarks/results/factorize_tt.json``.

    DEEPSHRINK_DATA=/work/shared/datasets python benchmarks/factorize_tt.py
"""

from __future__ import annotations

import argparse
import logging
from typing import Any

import torch
from _common import write_result
from factorize_svd_sweep import baseline, finetune

import deepshrink as ds
from deepshrink.eval import count_macs, count_parameters, measure_latency
from deepshrink.factorize import TTFactorization, factorize_

DATASETS = {"lenet300": "mnist", "mlp_fc4": "fashion-mnist"}

#: (model, layer, input modes, output modes, ranks, init)
CONFIGS: list[tuple[str, str, list[int], list[int], int, str]] = [
    ("mlp_fc4", "fc2", [10, 10, 10], [10, 10, 10], 4, "tt-svd"),
    ("mlp_fc4", "fc2", [10, 10, 10], [10, 10, 10], 8, "tt-svd"),
    ("mlp_fc4", "fc2", [5, 5, 5, 8], [5, 5, 5, 8], 8, "tt-svd"),
    ("mlp_fc4", "fc2", [10, 10, 10], [10, 10, 10], 16, "tt-svd"),
    ("lenet300", "fc1", [4, 7, 4, 7], [3, 4, 5, 5], 4, "tt-svd"),
    ("lenet300", "fc1", [4, 7, 4, 7], [3, 4, 5, 5], 8, "tt-svd"),
    ("lenet300", "fc1", [4, 7, 4, 7], [3, 4, 5, 5], 8, "random"),
    ("lenet300", "fc1", [4, 7, 4, 7], [3, 4, 5, 5], 16, "tt-svd"),
]


def timings(dense: torch.nn.Module, layer: torch.nn.Module, seconds: float) -> dict[str, Any]:
    """Median forward ms of the dense and TT layer at batch 1 and 100 (threads=1, same run)."""
    result: dict[str, Any] = {}
    for batch in (1, 100):
        x = torch.randn(batch, dense.in_features, generator=torch.Generator().manual_seed(0))
        dense_ms = measure_latency(dense, x, threads=1, min_run_time=seconds).median_ms
        tt_ms = measure_latency(layer, x, threads=1, min_run_time=seconds).median_ms
        result[f"dense_ms_batch{batch}"] = dense_ms
        result[f"tt_ms_batch{batch}"] = tt_ms
        result[f"speedup_batch{batch}"] = dense_ms / tt_ms
    x = torch.zeros(1, dense.in_features)
    result["dense_macs"], result["tt_macs"] = count_macs(dense, x), count_macs(layer, x)
    return result


def run(config: tuple[Any, ...], args: argparse.Namespace, dense_accuracy: float) -> dict[str, Any]:
    name, layer_name, input_modes, output_modes, ranks, init = config
    data = ds.data.load(DATASETS[name])
    model, _ = baseline(name, data, args.threads)
    dense = getattr(model, layer_name)
    settings = dict(input_modes=input_modes, output_modes=output_modes, ranks=ranks, init=init)
    factorize_(model, TTFactorization(**settings, policy="none"), include=layer_name)
    layer = getattr(model, layer_name)
    before = ds.train.evaluate(model, data.test).top1
    seconds = finetune(model, data, args)
    return {
        "model": name,
        "layer": layer_name,
        **settings,
        "tt_ranks": list(layer.ranks),
        "layer_parameters_dense": count_parameters(dense),
        "layer_parameters_tt": count_parameters(layer),
        "layer_compression": count_parameters(dense) / count_parameters(layer),
        "accuracy_dense": dense_accuracy,
        "accuracy_after_init": before,
        "accuracy_after_finetune": ds.train.evaluate(model, data.test).top1,
        "finetune_seconds": seconds,
        **timings(dense, layer, args.min_run_time),
    }


def print_table(rows: list[dict[str, Any]]) -> None:
    print(
        "| layer | modes in → out | TT-ranks | init | params dense → TT | × | acc dense | "
        "acc init | acc fine-tuned | dense/TT ms b=1 | × b=1 | dense/TT ms b=100 | × b=100 |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        modes = f"{'·'.join(map(str, r['input_modes']))} → {'·'.join(map(str, r['output_modes']))}"
        print(
            f"| {r['model']}.{r['layer']} | {modes} | {r['tt_ranks']} | {r['init']} | "
            f"{r['layer_parameters_dense']:,} → {r['layer_parameters_tt']:,} | "
            f"{r['layer_compression']:.0f}× | {r['accuracy_dense']:.2%} | "
            f"{r['accuracy_after_init']:.2%} | {r['accuracy_after_finetune']:.2%} | "
            f"{r['dense_ms_batch1']:.3f} / {r['tt_ms_batch1']:.3f} | {r['speedup_batch1']:.2f} | "
            f"{r['dense_ms_batch100']:.3f} / {r['tt_ms_batch100']:.3f} | "
            f"{r['speedup_batch100']:.2f} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--epochs", type=int, default=3, help="fine-tune epochs")
    parser.add_argument("--lr", type=float, default=0.01, help="fine-tune peak lr (SGD, cosine)")
    parser.add_argument("--threads", type=int, default=2, help="training threads")
    parser.add_argument("--min-run-time", type=float, default=1.0, help="seconds per timing")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    sources, accuracies = {}, {}
    for name in args.models:
        data = ds.data.load(DATASETS[name])
        model, sources[name] = baseline(name, data, args.threads)
        accuracies[name] = ds.train.evaluate(model, data.test).top1
    rows = [run(c, args, accuracies[c[0]]) for c in CONFIGS if c[0] in args.models]
    settings = {k: v for k, v in vars(args).items() if k != "models"}
    path = write_result("factorize_tt", {"baselines": sources, "settings": settings, "rows": rows})
    print_table(rows)
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
