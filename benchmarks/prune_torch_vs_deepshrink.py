"""What pruning really delivers: ``torch.nn.utils.prune`` vs deepshrink, same model and sparsity.

The trained LeNet-300-100 (``assets/lenet300``) is pruned to 90 % in every Linear layer by
weight magnitude, once with ``torch.nn.utils.prune.l1_unstructured`` and once with
``deepshrink.prune.MagnitudePruning``, and once by removing 90 % of the hidden units with
``NeuronPruning``. Every pruned model gets the same one-epoch fine-tune (SGD, lr 0.01, cosine).
For each state we measure the accuracy on the 10,000 MNIST test images, parameters and non-zero
parameters, the bytes of the state dict written with safetensors (raw and gzip -9) and the median
CPU latency (``torch.utils.benchmark``, threads=1, batch 1 and 64), with speed-ups against the
dense model of the same run. A CSR file (float32 values, int32 column indices and row offsets,
written with safetensors here; deepshrink's own sparse container comes later) shows what a
sparse format makes of the finalized weights.

    DEEPSHRINK_DATA=/work/shared/datasets python benchmarks/prune_torch_vs_deepshrink.py
"""

from __future__ import annotations

import argparse
import copy
import logging
import statistics
import tempfile
from pathlib import Path
from typing import Any

import torch
from _common import write_result
from safetensors.torch import save_file
from torch import nn
from torch.nn.utils import prune as torch_prune

import deepshrink as ds
import deepshrink.prune as dp
from deepshrink.eval import count_nonzero, count_parameters, gzip_bytes, measure_latency, saved_size

ASSETS = Path(__file__).resolve().parents[1] / "assets"


def csr_size(model: nn.Module) -> tuple[int, int]:
    """Bytes (raw, gzip) of the model saved with every 2-D weight in CSR, the rest dense."""
    tensors: dict[str, torch.Tensor] = {}
    for name, value in model.state_dict().items():
        if value.ndim == 2:
            csr = value.to_sparse_csr()
            tensors[f"{name}.values"] = csr.values().contiguous()
            tensors[f"{name}.col_indices"] = csr.col_indices().to(torch.int32)
            tensors[f"{name}.crow_indices"] = csr.crow_indices().to(torch.int32)
        else:
            tensors[name] = value.contiguous()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "csr.safetensors"
        save_file(tensors, str(path))
        return path.stat().st_size, gzip_bytes(path)


def torch_masked(model: nn.Module, sparsity: float) -> nn.Module:
    for module in model.modules():
        if isinstance(module, nn.Linear):
            torch_prune.l1_unstructured(module, "weight", amount=sparsity)
    return model


def torch_removed(model: nn.Module) -> nn.Module:
    for module in model.modules():
        if isinstance(module, nn.Linear) and torch_prune.is_pruned(module):
            torch_prune.remove(module, "weight")
    return model


def measure(label: str, model: nn.Module, data: Any, note: str = "") -> dict[str, Any]:
    """Everything but latency, which :func:`add_latency` measures for all models interleaved."""
    model.eval()
    file, gz = saved_size(model)
    row = {
        "variant": label,
        "accuracy": ds.train.evaluate(model, data.test).top1,
        "parameters": count_parameters(model),
        "nonzero_parameters": count_nonzero(model),
        "file_bytes": file,
        "gzip_bytes": gz,
        "state_dict": sorted({k.rsplit(".", 1)[-1] for k in model.state_dict()}),
        "note": note,
        "_model": copy.deepcopy(model),
    }
    print(f"{label:38s} acc {row['accuracy']:.2%} file {file:>9,} B gzip {gz:>9,} B", flush=True)
    return row


def add_latency(rows: list[dict[str, Any]], data: Any, rounds: int) -> None:
    """Median over ``rounds`` of each model's median latency, the models taking turns.

    Taking turns spreads the load of other processes on a shared CPU over all models alike.
    """
    inputs = {1: data.test.batch(torch.arange(1))[0], 64: data.test.batch(torch.arange(64))[0]}
    samples: dict[tuple[int, int], list[float]] = {}
    for _ in range(rounds):
        for index, row in enumerate(rows):
            for batch, x in inputs.items():
                if "_model" not in row:
                    continue
                latency = measure_latency(row["_model"], x, threads=1, min_run_time=0.2)
                samples.setdefault((index, batch), []).append(latency.median_ms)
    for index, row in enumerate(rows):
        for batch in inputs:
            values = samples.get((index, batch))
            row[f"latency_ms_batch{batch}"] = statistics.median(values) if values else None
        row.pop("_model", None)


def fine_tune(model: nn.Module, data: Any, epochs: int) -> nn.Module:
    if epochs:
        ds.train.fit(model, data, epochs=epochs, lr=0.01, weight_decay=1e-4, progress=False)
    return model


def table(rows: list[dict[str, Any]]) -> str:
    dense = rows[0]
    lines = [
        "| variant | accuracy | params | non-zero | file B | gzip B | file ÷ dense | gzip ÷ dense "
        "| batch 1 ms | batch 64 ms | speed-up b1 / b64 |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        if r["latency_ms_batch1"] is None:
            lines.append(
                f"| {r['variant']} | {r['accuracy']:.2%} | {r['parameters']:,} | "
                f"{r['nonzero_parameters']:,} | {r['file_bytes']:,} | {r['gzip_bytes']:,} | "
                f"{r['file_bytes'] / dense['file_bytes']:.2f} | "
                f"{r['gzip_bytes'] / dense['gzip_bytes']:.2f} | (storage only) | | |"
            )
            continue
        lines.append(
            f"| {r['variant']} | {r['accuracy']:.2%} | {r['parameters']:,} | "
            f"{r['nonzero_parameters']:,} | {r['file_bytes']:,} | {r['gzip_bytes']:,} | "
            f"{r['file_bytes'] / dense['file_bytes']:.2f} | "
            f"{r['gzip_bytes'] / dense['gzip_bytes']:.2f} | {r['latency_ms_batch1']:.4f} | "
            f"{r['latency_ms_batch64']:.3f} | "
            f"{dense['latency_ms_batch1'] / r['latency_ms_batch1']:.2f}× / "
            f"{dense['latency_ms_batch64'] / r['latency_ms_batch64']:.2f}× |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sparsity", type=float, default=0.9)
    parser.add_argument("--fine-tune-epochs", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=7, help="latency rounds (median)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(1)
    data = ds.data.load("mnist")
    dense, _ = ds.train.load_checkpoint(ASSETS / "lenet300.safetensors")
    epochs, s = args.fine_tune_epochs, args.sparsity
    rows = [measure("dense", dense, data)]

    masked = fine_tune(torch_masked(copy.deepcopy(dense), s), data, epochs)
    rows.append(measure("torch prune (masked)", masked, data, "weight_orig + float weight_mask"))
    rows.append(measure("torch prune + prune.remove", torch_removed(masked), data))

    ours = fine_tune(dp.prune_(copy.deepcopy(dense), dp.MagnitudePruning(sparsity=s)), data, epochs)
    rows.append(measure("deepshrink masked", ours, data, "weight + bool weight_mask"))
    rows.append(measure("deepshrink finalize_", dp.finalize_(ours), data))
    csr_file, csr_gz = csr_size(ours)
    csr = {
        **rows[-1],
        "variant": "deepshrink finalize_, saved as CSR",
        "file_bytes": csr_file,
        "gzip_bytes": csr_gz,
        "note": "same model; storage only (runs as the row above)",
    }
    csr.pop("_model")
    rows.append(csr)
    print(f"CSR file {csr_file:,} B gzip {csr_gz:,} B")

    neurons = dp.prune_(copy.deepcopy(dense), dp.NeuronPruning(ratio=s))
    rows.append(measure(f"deepshrink NeuronPruning(ratio={s})", fine_tune(neurons, data, epochs),
                        data, "physically smaller Linear layers"))  # fmt: skip
    add_latency(rows, data, args.rounds)
    text = table(rows)
    print(text)
    settings = {"sparsity": s, "fine_tune_epochs": epochs, "fine_tune_lr": 0.01, "threads": 1,
                "latency_rounds": args.rounds}  # fmt: skip
    path = write_result("prune_torch_vs_deepshrink", {"settings": settings, "rows": rows,
                                                      "table": text})  # fmt: skip
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
