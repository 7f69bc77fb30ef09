"""How fast the ``.dsz`` container encodes and decodes, against safetensors in the same run.

Two workloads: a synthetic 10M-weight layer (10,000 × 1,000, 10 % of the weights kept at random,
the kept ones drawn from a 32-value codebook as k-means weight sharing with 5 bits leaves them)
and the trained LeNet-5 (``assets/lenet5``, loaded with ``ds.load_checkpoint``; dense, so most of
it is stored raw). Each is encoded (``deepshrink.encode.pack``: layout choice, coding, header) and
decoded (``unpack``: verification and decoding) ``--repeats`` times on one thread, with Huffman
codes (P+Q+H) and with fixed-width fields only (P+Q); safetensors ``save``/``load`` of the same
tensors is the baseline. Speeds are medians of wall-clock time, in MB/s of dense float32 data
(4 bytes a weight) and in weights per second; the same from process CPU time is given beside
them, as the machine is shared.

    python benchmarks/encode_speed.py
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from _common import write_result
from safetensors.torch import load as safetensors_load
from safetensors.torch import save as safetensors_save

import deepshrink as ds
from deepshrink.encode import EncodeConfig, pack, unpack

ASSETS = Path(__file__).resolve().parents[1] / "assets"


def synthetic_layer(rows: int, cols: int, density: float, bits: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    book = torch.randn(2**bits, generator=g) * 0.05
    values = book[torch.randint(0, 2**bits, (rows, cols), generator=g)]
    keep = torch.rand(rows, cols, generator=g) < density
    return {"fc.weight": torch.where(keep, values, 0.0), "fc.bias": torch.randn(rows, generator=g)}


def median_seconds(run: Callable[[], Any], repeats: int) -> tuple[float, float, Any]:
    """Median wall-clock and CPU seconds of ``run()`` (CPU time is steadier on a shared machine)."""
    walls, cpus, result = [], [], None
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        result = run()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return statistics.median(walls), statistics.median(cpus), result


def measure(tensors: dict[str, torch.Tensor], repeats: int) -> dict[str, Any]:
    weights = sum(t.numel() for t in tensors.values())
    megabytes = 4 * weights / 1e6
    rows: dict[str, Any] = {}
    variants: dict[str, tuple[Callable[[], bytes], Callable[[bytes], Any]]] = {
        "safetensors": (lambda: safetensors_save(tensors), safetensors_load),
    }
    for name, huffman in (("dsz P+Q+H", True), ("dsz P+Q", False)):
        config = EncodeConfig(huffman=huffman)
        variants[name] = (lambda c=config: pack(tensors, c, arch=None), unpack)
    for name, (encode, decode) in variants.items():
        encode_s, encode_cpu, data = median_seconds(encode, repeats)
        decode_s, decode_cpu, decoded = median_seconds(lambda d=data, f=decode: f(d), repeats)
        decoded = decoded.tensors if hasattr(decoded, "tensors") else decoded
        exact = all(torch.equal(decoded[k], v) for k, v in tensors.items())
        rows[name] = {
            "bytes": len(data),
            "compression": 4 * weights / len(data),
            "encode_s": encode_s,
            "decode_s": decode_s,
            "encode_mb_s": megabytes / encode_s,
            "decode_mb_s": megabytes / decode_s,
            "encode_weights_s": weights / encode_s,
            "decode_weights_s": weights / decode_s,
            "encode_cpu_s": encode_cpu,
            "decode_cpu_s": decode_cpu,
            "encode_cpu_mb_s": megabytes / encode_cpu,
            "decode_cpu_mb_s": megabytes / decode_cpu,
            "bit_exact": exact,
        }
    return {"weights": weights, "dense_mb": megabytes, "variants": rows}


def table(results: dict[str, Any]) -> str:
    out = [
        "| workload | format | file B | × dense | encode MB/s | decode MB/s "
        "| encode Mweights/s | decode Mweights/s | CPU-time MB/s enc / dec | bit-exact |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for workload, result in results.items():
        for name, r in result["variants"].items():
            out.append(
                f"| {workload} | {name} | {r['bytes']:,} | {r['compression']:.1f}× "
                f"| {r['encode_mb_s']:.1f} | {r['decode_mb_s']:.1f} "
                f"| {r['encode_weights_s'] / 1e6:.2f} | {r['decode_weights_s'] / 1e6:.2f} "
                f"| {r['encode_cpu_mb_s']:.0f} / {r['decode_cpu_mb_s']:.0f} "
                f"| {'yes' if r['bit_exact'] else 'NO'} |"
            )
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    lenet5, _ = ds.load_checkpoint(ASSETS / "lenet5.safetensors")
    workloads = {
        "10M-weight layer, 10 % kept, 5-bit codebook": synthetic_layer(10_000, 1_000, 0.1, 5),
        "LeNet-5 (trained, dense)": dict(lenet5.state_dict()),
    }
    results = {name: measure(tensors, args.repeats) for name, tensors in workloads.items()}
    text = table(results)
    print(text)
    path = write_result(
        "encode_speed", {"repeats": args.repeats, "results": results, "table": text}
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
