"""Tied weights through every method: GPT-2's ``lm_head`` and ``wte`` stay one tensor.

A GPT-2 built from a config (no download: vocabulary 5,000, hidden 128, 2 layers; random
weights) goes through magnitude pruning, k-means weight sharing and SVD, and is saved as a
``.dsz`` file after each step. For each file: its bytes, the bytes the same state would take
with the tied tensor stored under both of its names (what a state-dict writer without alias
detection produces), whether the reloaded model is bit-identical, and whether its ``lm_head``
is still its ``wte``.

    python benchmarks/tied_weights.py
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import torch
from _common import write_result

import deepshrink as ds
from deepshrink.encode.container import pack
from deepshrink.graph.layers import tied_parameters


def build(seed: int = 0) -> torch.nn.Module:
    import transformers

    transformers.logging.set_verbosity_error()
    config = transformers.GPT2Config(
        vocab_size=5000, n_embd=128, n_layer=2, n_head=4, n_positions=64,
        bos_token_id=0, eos_token_id=0,
    )  # fmt: skip
    torch.manual_seed(seed)
    return transformers.GPT2LMHeadModel(config).eval()


def row(step: str, model: torch.nn.Module, folder: Path, ids: torch.Tensor) -> dict[str, Any]:
    path = ds.save(model, folder / f"{step}.dsz")
    twice = pack(model.state_dict(), ds.EncodeConfig(), arch=None)
    loaded = ds.load(path, model=build(seed=1))
    with torch.no_grad():
        same = torch.equal(model(ids).logits, loaded(ids).logits)
    ds.finalize_(loaded)
    return {
        "step": step,
        "dsz_bytes": path.stat().st_size,
        "bytes_with_the_tie_stored_twice": len(twice),
        "aliases": ds.encode.read(path).header.get("aliases", {}),
        "reloaded_bit_identical": same,
        "tied_after_load": loaded.lm_head.weight is loaded.transformer.wte.weight,
        "ties_in_model": tied_parameters(model),
    }


def main() -> None:
    folder = Path(tempfile.mkdtemp())
    ids = torch.randint(0, 5000, (2, 16), generator=torch.Generator().manual_seed(0))
    model = build()
    rows = [row("dense", model, folder, ids)]
    ds.prune_(model, ds.MagnitudePruning(sparsity=0.8))
    rows.append(row("pruned 80 %", ds.finalize_(model), folder, ids))
    ds.quantize_(model, ds.KMeansQuantization(bits=5))
    rows.append(row("k-means 5 bits", model, folder, ids))
    ds.factorize_(model := ds.finalize_(model), ds.SVDFactorization(energy=0.9))
    rows.append(row("SVD (energy 0.9)", model, folder, ids))
    coverage = ds.graph.coverage.coverage_of(model)[-1]
    print(write_result("tied_weights", {
        "model": "GPT2LMHeadModel(vocab 5000, n_embd 128, 2 layers), random weights",
        "rows": rows, "svd_skipped_lm_head": coverage.skipped.get("lm_head"),
    }))  # fmt: skip


if __name__ == "__main__":
    main()
