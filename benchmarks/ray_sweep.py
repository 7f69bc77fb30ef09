"""Wall time of one recipe sweep run serially and as Ray tasks, and whether the tables agree.

Each run is the command a user types (``deepshrink sweep``, a fresh process, start-up, Ray's
start and shutdown included), alternating serial / Ray ``--repeats`` times so that both see the
same machine load; the load average is recorded before and after each run. The recipe pins one
torch thread per variant (the recipe default), so the serial run uses one core and each Ray
worker one core. Every run's ``sweep.json`` must equal the first serial one. A last run times
Ray alone: start, an empty task on each worker, shutdown.

    python benchmarks/ray_sweep.py --variants 6 --repeats 3 --workers 2
    python benchmarks/ray_sweep.py --variants 6 --repeats 2 --workers 2 --epochs 40
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
RECIPE = """\
version: 1
name: ray_sweep
latency: false
model: {zoo: digits_mlp}
data: {name: digits}
stages:
  - train: {epochs: EPOCHS, batch_size: 32}
  - prune: {method: magnitude, sparsity: 0.5}
  - fine_tune: {epochs: 2, batch_size: 32, lr: 0.01}
"""
RAY_ALONE = """\
import time
from deepshrink._trials import map_trials
began = time.perf_counter()
map_trials(abs, [-1] * {workers}, backend="ray", workers={workers})
print(time.perf_counter() - began)
"""


def _sweep(recipe: Path, out: Path, variants: int, backend: list[str]) -> dict[str, Any]:
    sparsities = ",".join(f"{0.3 + 0.6 * i / max(variants - 1, 1):.2f}" for i in range(variants))
    command = [sys.executable, "-m", "deepshrink.cli", "-q", "sweep", str(recipe), "--set",
               f"stages[1].prune.sparsity={sparsities}", "--out", str(out), *backend]  # fmt: skip
    load_before = os.getloadavg()
    began = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - began
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
    rows = json.loads((out / "sweep.json").read_text())
    return {"seconds": round(seconds, 2), "load_before": load_before,
            "load_after": os.getloadavg(), "rows": rows}  # fmt: skip


def _summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    seconds = [r["seconds"] for r in runs]
    return {"median_s": statistics.median(seconds), "min_s": min(seconds),
            "max_s": max(seconds), "runs_s": seconds}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variants", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=8, help="training epochs per variant")
    args = parser.parse_args()
    text = RECIPE.replace("EPOCHS", str(args.epochs))
    ray = ["--backend", "ray", "--workers", str(args.workers)]
    runs: dict[str, list[dict[str, Any]]] = {"serial": [], "ray": []}
    with tempfile.TemporaryDirectory() as folder:
        recipe = Path(folder) / "ray_sweep.yaml"
        recipe.write_text(text)
        for repeat in range(args.repeats):
            for name, backend in (("serial", []), ("ray", ray)):
                out = Path(folder) / f"{name}-{repeat}"
                runs[name].append(_sweep(recipe, out, args.variants, backend))
                print(f"{name} #{repeat}: {runs[name][-1]['seconds']} s", flush=True)
        alone = subprocess.run([sys.executable, "-c", RAY_ALONE.format(workers=args.workers)],
                               capture_output=True, text=True, check=True)  # fmt: skip
    reference = runs["serial"][0]["rows"]
    identical = all(r.pop("rows") == reference for group in runs.values() for r in group)
    result = {
        "recipe": text,
        "variants": args.variants,
        "workers": args.workers,
        "cpus": os.cpu_count(),
        "ray": _ray_version(),
        "serial": _summary(runs["serial"]),
        "ray_tasks": _summary(runs["ray"]),
        "speedup_median": round(
            statistics.median(r["seconds"] for r in runs["serial"])
            / statistics.median(r["seconds"] for r in runs["ray"]),
            2,
        ),  # fmt: skip
        "ray_start_empty_tasks_shutdown_s": round(float(alone.stdout.strip().splitlines()[-1]), 2),
        "tables_identical": identical,
        "rows": reference,
        "runs": runs,
    }
    path = write_result("ray_sweep" if args.epochs == 8 else f"ray_sweep_e{args.epochs}", result)
    keys = (
        "serial",
        "ray_tasks",
        "speedup_median",
        "ray_start_empty_tasks_shutdown_s",
        "tables_identical",
    )
    print(json.dumps({k: result[k] for k in keys}))
    print(f"wrote {path}")


def _ray_version() -> str:
    import ray

    return str(ray.__version__)


if __name__ == "__main__":
    main()
