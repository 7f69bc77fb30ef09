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
    "pyplot",
    "save_figure",
]


def pyplot() -> Any:
    """matplotlib's pyplot on the Agg backend (imported on first use)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(figure: Any, path: Path) -> Path:
    """Write ``figure`` as a PNG atomically and close it."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    pyplot().close(figure)
    _io.atomic_write_bytes(path, buffer.getvalue())
    return path


def plot_stages(metrics: dict[str, Any], path: Path) -> Path:
    """Top-1 accuracy with its 95 % interval, and bytes (dense fp32, non-zeros × 4 B, files
    written) after each stage.

    The accuracy axis spans at least 2 percentage points around the points, so a change smaller
    than the intervals cannot fill the panel and look like a cliff.
    """
    plt = pyplot()
    rows = [("initial", metrics["initial"], None)]
    rows += [(e["label"], e["report"], _written(e["summary"])) for e in metrics["stages"]]
    rows.append(("final", metrics["final"], metrics["final"]["file_bytes"]))
    labels = [label for label, _, _ in rows]
    accuracy, low, high = zip(*(_interval(r) for _, r, _ in rows), strict=True)
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 3.8))
    errors = [[max(0.0, a - lo) for a, lo in zip(accuracy, low, strict=True)],
              [max(0.0, hi - a) for a, hi in zip(accuracy, high, strict=True)]]  # fmt: skip
    left.errorbar(labels, accuracy, yerr=errors, marker="o", color="tab:blue", capsize=3)
    bottom, top = min(low), max(high)
    if top - bottom < 2:
        middle = (top + bottom) / 2
        bottom, top = middle - 1, middle + 1
    left.set_ylim(max(0.0, bottom - 0.1 * (top - bottom)), min(100.0, top + 0.1 * (top - bottom)))
    left.set_ylabel("top-1 accuracy (%)")
    left.set_title("accuracy after each stage (bars: 95% interval)", fontsize=9)
    positions = list(range(len(labels)))
    width = 0.27
    right.bar([p - width for p in positions], [r["dense_bytes"] / 1000 for _, r, _ in rows],
              width=width, label="dense fp32")  # fmt: skip
    right.bar(positions, [4 * r["nonzero_parameters"] / 1000 for _, r, _ in rows], width=width,
              label="non-zeros × 4 B")  # fmt: skip
    right.bar([p + width for p in positions], [(w or 0) / 1000 for _, _, w in rows], width=width,
              label="file written")  # fmt: skip
    right.set_xticks(positions, labels)
    right.set_ylabel("kB")
    right.set_title("size (file written: encode/export stages and the delivered file)", fontsize=9)
    right.legend(fontsize=8)
    for axis in (left, right):
        plt.setp(axis.get_xticklabels(), rotation=30, ha="right", rotation_mode="anchor")
        axis.grid(alpha=0.3)
    return save_figure(figure, path)


def _written(summary: dict[str, Any]) -> int | None:
    value = summary.get("bytes")
    return value if isinstance(value, int) else None


def _interval(report: dict[str, Any]) -> tuple[float, float, float]:
    """Accuracy and its Wilson 95 % interval, in percent (a zero-width one without samples)."""
    from deepshrink.eval.agreement import wilson

    accuracy, samples = report.get("accuracy") or 0.0, report.get("samples")
    if not samples:
        return 100 * accuracy, 100 * accuracy, 100 * accuracy
    low, high = wilson(round(accuracy * samples), samples)
    return 100 * accuracy, 100 * low, 100 * high


def plot_layers(layers: list[dict[str, Any]], path: Path) -> Path | None:
    """Per layer: share of the original weights still non-zero at the end (%)."""
    if not layers:
        return None
    plt = pyplot()
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


def plot_latency(comparison: Any, path: Path) -> Path | None:
    """Baseline against the delivered model, timed side by side: median thread CPU time per
    call at each batch size, titled with the verdict and its interval. None when speed was not
    measured side by side (nothing honest to draw)."""
    speed = getattr(comparison, "speed", None)
    if not speed:
        return None
    plt = pyplot()
    figure, axes = plt.subplots(1, len(speed), figsize=(4 * len(speed), 3.2), squeeze=False)
    for axis, (batch, result) in zip(axes[0], sorted(speed.items()), strict=True):
        values = [result.baseline_cpu_ms, result.cpu_ms]
        bars = axis.bar(["baseline", "after"], values, color=["tab:gray", "tab:orange"])
        axis.bar_label(bars, fmt="%.3f ms", fontsize=8)
        axis.set_ylim(0, 1.25 * max(values))
        axis.set_title(f"batch {batch}: {result.text()}", fontsize=9)
    axes[0][0].set_ylabel(f"ms per call ({comparison.speed_runtime}, CPU time)", fontsize=8)
    return save_figure(figure, path)


def plot_pareto(
    points: list[dict[str, Any]], path: Path, xlabel: str = "bytes on disk (kB, log)"
) -> Path | None:
    """Accuracy against ``bytes`` for every run of a sweep, the Pareto front joined."""
    if not points:
        return None
    plt = pyplot()
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
    plt = pyplot()
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
