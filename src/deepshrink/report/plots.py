"""PNG plots of a run: accuracy and size per stage, per-layer weights kept, latency before/after.

matplotlib is imported inside the functions (Agg backend, no screen needed). Each function
writes one PNG atomically and returns its path, or None when there is nothing to draw.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from deepshrink import _io

__all__ = [
    "plot_latency",
    "plot_layers",
    "plot_pareto",
    "plot_sensitivity",
    "plot_stages",
    "save_figure",
]


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(figure: Any, path: Path) -> Path:
    """Write ``figure`` as a PNG atomically and close it."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    _pyplot().close(figure)
    _io.atomic_write_bytes(path, buffer.getvalue())
    return path


def plot_stages(metrics: dict[str, Any], path: Path) -> Path:
    """Top-1 accuracy and bytes (file, non-zero fp32) after each stage."""
    plt = _pyplot()
    rows = [("initial", metrics["initial"])]
    rows += [(entry["label"], entry["report"]) for entry in metrics["stages"]]
    rows.append(("final", metrics["final"]))
    labels = [label for label, _ in rows]
    accuracy = [100 * (r["accuracy"] or 0) for _, r in rows]
    file_kb = [r["file_bytes"] / 1000 for _, r in rows]
    nonzero_kb = [4 * r["nonzero_parameters"] / 1000 for _, r in rows]
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 3.8))
    left.plot(labels, accuracy, marker="o", color="tab:blue")
    left.set_ylabel("top-1 accuracy (%)")
    left.set_title("accuracy after each stage")
    positions = range(len(labels))
    right.bar([p - 0.2 for p in positions], file_kb, width=0.4, label="file on disk")
    right.bar([p + 0.2 for p in positions], nonzero_kb, width=0.4, label="non-zeros × 4 B")
    right.set_xticks(list(positions), labels)
    right.set_ylabel("kB")
    right.set_title("size (stage checkpoints; final: the delivered file)", fontsize=9)
    right.legend()
    for axis in (left, right):
        plt.setp(axis.get_xticklabels(), rotation=30, ha="right", rotation_mode="anchor")
        axis.grid(alpha=0.3)
    return save_figure(figure, path)


def plot_layers(layers: list[dict[str, Any]], path: Path) -> Path | None:
    """Per layer: share of the original weights still non-zero at the end (%)."""
    if not layers:
        return None
    plt = _pyplot()
    names = [row["layer"] for row in layers]
    kept = [100 * row["nonzero_after"] / row["weights"] if row["weights"] else 0 for row in layers]
    figure, axis = plt.subplots(figsize=(max(5, 0.45 * len(names) + 2), 3.8))
    bars = axis.bar(names, kept, color="tab:green")
    axis.bar_label(bars, fmt="%.1f", fontsize=7)
    axis.set_ylabel("non-zero weights kept (%)")
    axis.set_title("per-layer weights kept (vs the baseline model)")
    plt.setp(axis.get_xticklabels(), rotation=60, ha="right", rotation_mode="anchor")
    axis.grid(axis="y", alpha=0.3)
    return save_figure(figure, path)


def plot_latency(initial: dict[str, Any], final: dict[str, Any], path: Path) -> Path | None:
    """Median CPU latency before and after, at batch 1 and the large batch."""
    keys = ("latency_ms_batch1", "latency_ms_batch64")
    if any(initial.get(k) is None or final.get(k) is None for k in keys):
        return None
    plt = _pyplot()
    figure, axes = plt.subplots(1, 2, figsize=(8, 3.2))
    for axis, key, title in zip(axes, keys, ("batch 1", "batch 64"), strict=True):
        values = [initial[key], final[key]]
        bars = axis.bar(["initial", "final"], values, color=["tab:gray", "tab:orange"])
        axis.bar_label(bars, fmt="%.3f ms", fontsize=8)
        axis.set_title(f"latency, {title} ({initial.get('threads')} thread(s))")
        axis.set_ylabel("ms (median)")
    return save_figure(figure, path)


def plot_pareto(
    points: list[dict[str, Any]], path: Path, xlabel: str = "bytes on disk (kB, log)"
) -> Path | None:
    """Accuracy against ``bytes`` for every run of a sweep, the Pareto front joined."""
    if not points:
        return None
    plt = _pyplot()
    ordered = sorted(points, key=lambda p: p["bytes"])
    front, best = [], -1.0
    for point in ordered:
        if point["accuracy"] > best:
            front.append(point)
            best = point["accuracy"]
    figure, axis = plt.subplots(figsize=(6, 4))
    axis.scatter([p["bytes"] / 1000 for p in points], [100 * p["accuracy"] for p in points])
    axis.plot([p["bytes"] / 1000 for p in front], [100 * p["accuracy"] for p in front],
              color="tab:red", label="Pareto front")  # fmt: skip
    for p in points:
        axis.annotate(p["label"], (p["bytes"] / 1000, 100 * p["accuracy"]), fontsize=7)
    axis.set_xscale("log")
    axis.set_xlabel(xlabel)
    axis.set_ylabel("top-1 accuracy (%)")
    axis.legend()
    axis.grid(alpha=0.3)
    return save_figure(figure, path)


def plot_sensitivity(result: Any, path: Path, suggested: dict[str, float] | None = None) -> Path:
    """Accuracy against sparsity, one line per layer pruned alone; suggested targets marked."""
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(7, 4.2))
    for layer, curve in result.curves.items():
        xs = [100 * s for s, _ in curve]
        (line,) = axis.plot(xs, [100 * a for _, a in curve], marker="o", markersize=3, label=layer)
        if suggested and layer in suggested:
            chosen = dict(curve).get(suggested[layer])
            if chosen is not None:
                axis.scatter([100 * suggested[layer]], [100 * chosen], s=90, facecolors="none",
                             edgecolors=line.get_color())  # fmt: skip
    axis.axhline(100 * result.dense_accuracy, color="gray", linestyle=":", label="dense")
    axis.set_xlabel("sparsity of the one layer pruned (%)")
    axis.set_ylabel("top-1 accuracy (%)")
    axis.set_title(f"per-layer sensitivity ({result.criterion}, no fine-tuning)")
    axis.legend(fontsize=8)
    axis.grid(alpha=0.3)
    return save_figure(figure, path)
