"""Fine-tuning throughput with 1 and 2 processes (torchrun, gloo, DistributedDataParallel).

The same global batch in three set-ups: one process with one torch thread, one process with two
threads, and two processes (``torchrun --nproc_per_node 2``) with one thread each, each taking
half of every global batch. Each set-up trains LeNet-5 on an MNIST subset for ``--epochs``
epochs after one warm-up epoch, in a fresh interpreter; the set-ups alternate ``--repeats``
times. Recorded per run: samples/s (samples trained / wall seconds of the timed epochs), wall
and CPU seconds (all processes), and the load average before and after. On a shared 2-core
machine the load decides much: read the load beside each figure.

    python benchmarks/ddp_throughput.py --samples 8192 --epochs 2 --batch 128 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_result  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SETUPS = {  # name: (processes, threads per process)
    "1 process, 1 thread": (1, 1),
    "1 process, 2 threads": (1, 2),
    "2 processes, 1 thread each": (2, 1),
}


def worker(args: argparse.Namespace) -> None:
    """Train under whatever launched us; rank 0 appends one JSON line to ``args.worker``."""
    import torch

    import deepshrink as ds
    from deepshrink.train import distributed

    torch.manual_seed(0)
    data = ds.data.load("mnist")
    train = data.train.subset(torch.arange(args.samples))
    model = ds.zoo.create("lenet5")
    joined = distributed.join()
    processes = joined.size if joined else 1
    settings = dict(batch_size=args.batch // processes, threads=args.threads, lr=0.01,
                    schedule="constant", progress=False)  # fmt: skip
    ds.train.fit(model, train, epochs=1, **settings)  # warm-up: allocations, gloo buffers
    began_wall, began_cpu = time.perf_counter(), time.process_time()
    ds.train.fit(model, train, epochs=args.epochs, **settings)
    wall = time.perf_counter() - began_wall
    cpu = distributed.reduce_sums([time.process_time() - began_cpu])[0]
    if distributed.is_main():
        steps = args.samples // args.batch
        record = {"processes": processes, "threads": args.threads, "wall_s": wall, "cpu_s": cpu,
                  "samples": steps * args.batch * args.epochs}  # fmt: skip
        record["samples_per_s"] = record["samples"] / wall
        with open(args.worker, "a", encoding="utf-8") as file:
            file.write(json.dumps(record) + "\n")


def _launch(processes: int, threads: int, args: argparse.Namespace, sink: Path) -> None:
    script = [str(Path(__file__).resolve()), "--worker", str(sink), "--threads", str(threads),
              "--samples", str(args.samples), "--epochs", str(args.epochs),
              "--batch", str(args.batch)]  # fmt: skip
    if processes == 1:
        command = [sys.executable, *script]
    else:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                   "--nproc_per_node", str(processes), *script]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": str(threads)}
    subprocess.run(command, env=env, check=True, timeout=1800, capture_output=True)


def driver(args: argparse.Namespace) -> None:
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as folder:
        sink = Path(folder) / "runs.jsonl"
        for repeat in range(args.repeats):
            for name, (processes, threads) in SETUPS.items():
                load_before = os.getloadavg()
                _launch(processes, threads, args, sink)
                record = json.loads(sink.read_text().splitlines()[-1])
                record.update(setup=name, repeat=repeat, load_before=load_before,
                              load_after=os.getloadavg())  # fmt: skip
                runs.append(record)
                print(f"{name}: {record['samples_per_s']:.0f} samples/s, wall "
                      f"{record['wall_s']:.1f}s, cpu {record['cpu_s']:.1f}s, load "
                      f"{load_before[0]:.1f}")  # fmt: skip
    summary = {}
    for name in SETUPS:
        rates = [r["samples_per_s"] for r in runs if r["setup"] == name]
        summary[name] = {"median_samples_per_s": statistics.median(rates),
                         "min": min(rates), "max": max(rates)}  # fmt: skip
    settings = {k: getattr(args, k) for k in ("samples", "epochs", "batch", "repeats")}
    path = write_result("ddp_throughput", {"model": "lenet5", "data": "mnist", "settings": settings,
                                           "summary": summary, "runs": runs,
                                           "cpu_count": os.cpu_count()})  # fmt: skip
    print(json.dumps(summary, indent=2))
    print(f"wrote {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=8192, help="MNIST training samples")
    parser.add_argument("--epochs", type=int, default=2, help="timed epochs")
    parser.add_argument("--batch", type=int, default=128, help="global batch")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
    else:
        driver(args)


if __name__ == "__main__":
    main()
