"""Past Deep Compression on the CIFAR-10 ResNet-20: error vs compression of delivered files.

Every file given is measured the same way: loaded back with ``ds.load``, its top-1 error on the
CIFAR-10 test subset (the first 1,000 test images, with a Wilson 95 % interval), and the fp32
bytes of all parameters (1,078,888 B) divided by its size on disk; its size table is kept. Points
recorded earlier (``--point LABEL BYTES TOP1``, e.g. Deep Compression's file from
``RESULTS.md``) are taken as given. The plot shows each
point with its interval, the baseline and the goal (30x at most 1.5 pp below the baseline).

    DEEPSHRINK_DATA=/work/shared/datasets python benchmarks/frontier_resnet20.py \\
      --file "final" runs/frontier_resnet20/resnet20.dsz \\
      --run runs/frontier_resnet20 --name frontier_resnet20_points
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path
from typing import Any

from _common import RESULTS, write_result

import deepshrink as ds
from deepshrink.eval.agreement import wilson

DENSE_BYTES = 1_078_888
BASELINE = 0.827  # assets/resnet20 on the CIFAR-10 test subset
GOAL = (30.0, BASELINE - 0.015)
PLOT = Path(__file__).resolve().parents[1] / "docs" / "images" / "frontier_resnet20.png"


def measure(label: str, path: Path, test: Any) -> dict[str, Any]:
    """The decoded model's error on the test subset and the file's compression."""
    result = ds.train.evaluate(ds.load(path).eval(), test)
    low, high = wilson(round(result.top1 * result.count), result.count)
    size = path.stat().st_size
    return {
        "label": label, "file": str(path), "file_bytes": size,
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "compression": DENSE_BYTES / size, "top1": result.top1, "top1_interval": [low, high],
        "test_images": result.count, "size_table": ds.size_table(path).to_markdown(),
    }  # fmt: skip


def recorded(label: str, size: str, top1: str) -> dict[str, Any]:
    """A point recorded earlier (bytes of its file, decoded accuracy), taken as given."""
    low, high = wilson(round(float(top1) * 1000), 1000)  # the test subset
    return {"label": label, "file_bytes": int(size), "compression": DENSE_BYTES / int(size),
            "top1": float(top1), "top1_interval": [low, high], "recorded": True}  # fmt: skip


def run_summary(folder: Path) -> dict[str, Any]:
    """Stage accuracies and times of a recipe run folder (``metrics.json``)."""
    metrics = json.loads((folder / "metrics.json").read_text())
    stages = [{"label": s["label"], "accuracy": s["report"]["accuracy"],
               "summary": s.get("summary", {})} for s in metrics["stages"]]  # fmt: skip
    return {"recipe": metrics.get("recipe"), "stages": stages,
            "recipe_text": (folder / "recipe.yaml").read_text()}  # fmt: skip


def plot(points: list[dict[str, Any]], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5.2))
    for point in points:
        error = 100 * (1 - point["top1"])
        low, high = point["top1_interval"]
        label = (f"{point['label']}: {point['file_bytes']:,} B, {point['compression']:.1f}×, "
                 f"{100 * point['top1']:.1f} %")  # fmt: skip
        ax.errorbar(point["compression"], error, yerr=[[error - 100 * (1 - high)],
                    [100 * (1 - low) - error]], fmt="o", capsize=3, label=label)  # fmt: skip
    ratio, accuracy = GOAL
    ax.axhline(100 * (1 - BASELINE), color="grey", lw=0.8, ls=":")
    ax.text(12, 100 * (1 - BASELINE) - 0.35, "baseline 82.7 %", fontsize=8, color="grey")
    ax.fill_between([ratio, 40], 0, 100 * (1 - accuracy), color="tab:green", alpha=0.12,
                    label="goal: ≥ 30×, ≤ 1.5 pp below baseline")  # fmt: skip
    ax.set_xlim(12, 40)
    ax.set_ylim(15, 27)
    ax.set_xlabel("compression (fp32 parameter bytes / .dsz bytes)")
    ax.set_ylabel("top-1 error, CIFAR-10 test subset (%)")
    ax.set_title("ResNet-20: error vs compression of the decoded .dsz files (95 % intervals)")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--file", nargs=2, action="append", default=[], metavar=("LABEL", "DSZ"))
    parser.add_argument("--point", nargs=3, action="append", default=[],
                        metavar=("LABEL", "BYTES", "TOP1"))  # fmt: skip
    parser.add_argument("--run", type=Path, help="the recipe run folder of the last --file")
    parser.add_argument("--name", default="frontier_resnet20_points")
    args = parser.parse_args()
    test = ds.data.load("cifar10").test
    points = [recorded(*point) for point in args.point]
    points += [measure(label, Path(path), test) for label, path in args.file]
    payload: dict[str, Any] = {"dense_fp32_param_bytes": DENSE_BYTES, "baseline_top1": BASELINE,
                               "points": points}  # fmt: skip
    if args.run:
        payload["run"] = run_summary(args.run)
    plot(points, PLOT)
    print(write_result(args.name, payload), PLOT)
    for p in points:
        print(f"{p['label']}: {p['file_bytes']:,} B, {p['compression']:.1f}x, "
              f"top-1 {100 * p['top1']:.2f} %")  # fmt: skip
    assert RESULTS.is_dir()


if __name__ == "__main__":
    main()
