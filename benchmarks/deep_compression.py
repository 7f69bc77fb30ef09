"""Deep Compression end to end on LeNet-300-100 and LeNet-5: prune → share weights → .dsz.

Han et al. (2016) report 40× (LeNet-300-100, 1,070 KB → 27 KB) and 39× (LeNet-5, 1,720 KB →
44 KB) with pruning, k-means weight sharing and Huffman coding at the dense models' error. This
script takes the trained baselines in ``assets/``, prunes them iteratively exactly as
``benchmarks/prune_lenet.py`` does (its ``prune_one`` and per-layer plans; same defaults for the
fine-tuning flags), then — when ``deepshrink.quantize.KMeansQuantization`` exists — shares the
weights with k-means (6 bits for LeNet-300-100; 8 for conv and 5 for fc layers of LeNet-5, as
in the paper), fine-tunes the centroids with ``ds.fit`` and finalizes. The model is written with
``ds.save``, loaded back with ``ds.load``, and the *loaded* model's error on the 10,000 MNIST test
images is measured. Compression is the fp32 size of all parameters (1,066,440 B for
LeNet-300-100, 1,724,320 B for LeNet-5) divided by the file size; the per-layer table is
``ds.size_table``'s (Han et al.'s Tables 2–3 columns). Without k-means, the path is prune →
encode (P+H: relative indices Huffman-coded, kept values stored as float32).

    DEEPSHRINK_DATA=/work/shared/datasets python benchmarks/deep_compression.py
    # start from a pruned checkpoint written by prune_lenet.py instead of pruning again:
    ... --pruned lenet300=/tmp/deepshrink-prune/prune_lenet_lenet300.safetensors
"""

from __future__ import annotations

import argparse
import importlib
import time
from pathlib import Path
from typing import Any

import torch
from _common import write_result
from prune_lenet import add_arguments, prepare, prune_one

import deepshrink as ds
from deepshrink.encode import EncodeConfig

#: fp32 bytes of every parameter: the baseline of Han et al.'s compression rates
DENSE_BYTES = {"lenet300": 1_066_440, "lenet5": 1_724_320}
#: k-means bits as in Han et al. 2016 (Tables 2 and 3)
KMEANS_BITS: dict[str, Any] = {"lenet300": 6, "lenet5": {"conv": 8, "linear": 5}}
PAPER = {
    "lenet300": {"compression": 40, "error": 0.0158},
    "lenet5": {"compression": 39, "error": 0.0074},
}


def kmeans_module() -> Any | None:
    """``deepshrink.quantize`` if it offers k-means weight sharing, else ``None``."""
    module = importlib.import_module("deepshrink.quantize")  # the package exists, maybe empty
    return module if hasattr(module, "KMeansQuantization") else None


def pruned_model(name: str, data: ds.data.Data, args: argparse.Namespace) -> torch.nn.Module:
    given = dict(item.split("=", 1) for item in args.pruned)
    path = given.get(name) or prune_one(name, data, args)["checkpoint"]
    model, _ = ds.load_checkpoint(path)
    return model


def share_weights(model: torch.nn.Module, name: str, data: ds.data.Data, args: Any) -> bool:
    quantize = kmeans_module()
    if quantize is None or args.no_kmeans:
        return False
    quantize.quantize_(model, quantize.KMeansQuantization(bits=KMEANS_BITS[name]))
    if args.kmeans_epochs:
        ds.fit(model, data, epochs=args.kmeans_epochs, lr=args.kmeans_lr, progress=False)
    quantize.finalize_(model)
    return True


def compress_one(name: str, data: ds.data.Data, args: argparse.Namespace) -> dict[str, Any]:
    began = time.perf_counter()
    model = pruned_model(name, data, args)
    shared = share_weights(model, name, data, args)
    config = EncodeConfig(index_bits=index_bits(args.index_bits))
    path = ds.save(model, Path(args.save_dir) / f"{name}.dsz", config)
    loaded = ds.load(path).eval()
    error = 1 - ds.train.evaluate(loaded, data.test).top1
    table = ds.size_table(path, config)
    paper_bits = ds.size_table(path, EncodeConfig())  # 5 bits (fc) / 8 bits (conv) as the paper
    size = path.stat().st_size
    row = {
        "model": name,
        "kmeans": shared,
        "stages": "P+Q+H" if shared else "P+H",
        "error": error,
        "file_bytes": size,
        "dense_bytes": DENSE_BYTES[name],
        "compression": DENSE_BYTES[name] / size,
        "compression_pq": DENSE_BYTES[name] / table.total.bytes_pq,
        "index_bits": args.index_bits,
        "paper_index_bits_bytes": paper_bits.total.bytes_pqh,
        "paper_index_bits_compression": DENSE_BYTES[name] / paper_bits.total.bytes_pqh,
        "paper": PAPER[name],
        "table": table.to_dict(),
        "markdown": table.to_markdown(),
        "seconds": round(time.perf_counter() - began, 1),
        "file": str(path),
    }
    print(f"{name} ({row['stages']}): {size:,} B, {row['compression']:.1f}× "
          f"(paper {PAPER[name]['compression']}×), error {error:.2%}", flush=True)  # fmt: skip
    print(row["markdown"], flush=True)
    return row


def index_bits(text: str) -> Any:
    """``auto`` (per tensor, the smallest), ``paper`` (5 fc / 8 conv) or a number of bits."""
    if text == "auto":
        return "auto"
    return EncodeConfig().index_bits if text == "paper" else int(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)  # prune_lenet.py's flags and defaults, passed to its prune_one
    parser.add_argument("--pruned", nargs="*", default=[], metavar="MODEL=CHECKPOINT")
    parser.add_argument("--no-kmeans", action="store_true", help="prune and encode only (P+H)")
    parser.add_argument("--kmeans-epochs", type=int, default=2)
    parser.add_argument("--kmeans-lr", type=float, default=0.001)
    parser.add_argument("--save-dir", default="/tmp/deepshrink-deep-compression")
    parser.add_argument("--index-bits", default="auto", help="auto, paper (5 fc / 8 conv) or N")
    args = parser.parse_args()
    data = prepare(args)
    rows = [compress_one(name, data, args) for name in args.models]
    path = write_result("deep_compression", {"rows": rows, "settings": vars(args)})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
