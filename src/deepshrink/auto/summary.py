"""What ``auto`` chose, for a reader: ``auto.md`` and a plot beside ``auto.json``.

Byte budgets draw the size–accuracy front the allocation was chosen from (``front.png``);
latency budgets draw each candidate's measured speed-up with its interval against the budget
(``candidates.png``). Both are written atomically and never fail the run: a plot that cannot be
drawn is logged and left out.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from deepshrink import _io

__all__ = ["write_summary"]

logger = logging.getLogger(__name__)


def write_summary(folder: Path, report: dict[str, Any]) -> list[Path]:
    """Write ``auto.md`` and the plot for ``report`` (``auto.json``'s content); their paths."""
    latency = "widths" in report
    lines = _latency_lines(report) if latency else _bytes_lines(report)
    written = [folder / "auto.md"]
    _io.atomic_write_bytes(written[0], ("\n".join(lines) + "\n").encode())
    try:
        plot = _plot_candidates(report, folder) if latency else _plot_front(report, folder)
    except Exception as error:  # a plot is a convenience; the run's result stands without it
        logger.warning("auto: plot not written (%s)", error)
        return written
    return [*written, plot] if plot is not None else written


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.2f} %"


def _head(report: dict[str, Any], delivered: str) -> list[str]:
    return [
        f"# auto ({report['policy']} policy)",
        "",
        f"Delivered: `{Path(report['path']).name}`, {delivered}.",
        "",
        "| | original | delivered |",
        "|---|---:|---:|",
        f"| test accuracy | {_percent(report['original_test_accuracy'])} "
        f"| {_percent(report['test_accuracy'])} |",
    ]


def _bytes_lines(report: dict[str, Any]) -> list[str]:
    budget = report["budget"]
    what = (f"budget {budget['max_bytes']:,.0f} B" if budget.get("max_bytes") is not None
            else f"accuracy drop ≤ {budget['max_accuracy_drop']} pp")  # fmt: skip
    lines = _head(report, f"{report['delivered_bytes']:,} B on disk ({what})")
    lines += [
        f"| held-out accuracy (training split) | {_percent(report['reference']['accuracy'])} "
        f"| {_percent(report['held_out_accuracy'])} |",
        "",
        "## Per layer",
        "",
        "| layer | sparsity | k-means bits | bytes (scan) | held-out loss (scan) |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, option in report["layers"].items():
        lines.append(f"| {name} | {option['sparsity']:g} | {option['bits']} | "
                     f"{option['bytes']:,} | {option['loss']:.4f} |")  # fmt: skip
    lines += ["", "## Allocations compressed", "",
              "| budget aimed at | predicted | encoded before fine-tuning | layers |",
              "|---:|---:|---:|---|"]  # fmt: skip
    for attempt in report["attempts"]:
        layers = ", ".join(f"{k} {v}" for k, v in attempt.get("layers", {}).items())
        lines.append(f"| {attempt.get('target', attempt.get('budget', 0)):,} B | "
                     f"{attempt.get('predicted', 0):,} B | "
                     f"{attempt.get('encoded_untuned', 0):,} B | {layers} |")  # fmt: skip
    return [*lines, "", _seconds(report)]


def _latency_lines(report: dict[str, Any]) -> list[str]:
    lines = _head(report, f"{report['budget']['text']}: measured {report['speed']['text']}")
    lines += [
        f"| held-out accuracy (training split) | | {_percent(report['held_out_accuracy'])} |",
        "",
        "## Channel widths per group",
        "",
        "| group | channels | kept |",
        "|---|---:|---:|",
    ]
    for group, kept in report["widths"].items():
        full = max((int(k) for k in report["losses"].get(group, {})), default=kept)
        lines.append(f"| {group} | {full} | {kept} |")
    lines += ["", "## Candidates timed", "",
              "| step | predicted | measured | met |", "|---|---:|---|---|"]  # fmt: skip
    for attempt in report["attempts"]:
        speed = attempt.get("speed") or {}
        met = "yes" if attempt.get("met") else "no"
        lines.append(f"| {attempt.get('what', '')} | {attempt.get('predicted_ms', 0):.3f} ms | "
                     f"{speed.get('text', 'n/a')} | {met} |")  # fmt: skip
    return [*lines, "", _seconds(report)]


def _seconds(report: dict[str, Any]) -> str:
    seconds = report.get("seconds", {})
    expected = seconds.get("expected")
    stated = f", {expected:.0f} s expected" if expected else ""
    return f"Time: {seconds.get('total', 0):.0f} s{stated}."


def _plot_front(report: dict[str, Any], folder: Path) -> Path | None:
    from deepshrink.report.plots import pyplot, save_figure

    front = sorted(report["front"], key=lambda p: p["bytes"])
    if not front:
        return None
    figure, axis = pyplot().subplots(figsize=(6, 4))
    axis.plot([p["bytes"] / 1000 for p in front], [100 * p["accuracy"] for p in front], "o-",
              label="allocation per budget (held-out, before fine-tuning)")  # fmt: skip
    axis.plot([report["delivered_bytes"] / 1000], [100 * report["held_out_accuracy"]], "*",
              markersize=14, color="tab:red", label="delivered (after fine-tuning)")  # fmt: skip
    budget = report["budget"].get("max_bytes")
    if budget is not None:
        axis.axvline(budget / 1000, linestyle="--", color="gray", label="budget")
    axis.set_xscale("log")
    axis.set_xlabel(".dsz file (kB, log)")
    axis.set_ylabel("held-out top-1 (%)")
    axis.legend(fontsize=8)
    axis.grid(alpha=0.3)
    return save_figure(figure, folder / "front.png")


def _plot_candidates(report: dict[str, Any], folder: Path) -> Path | None:
    from deepshrink.report.plots import pyplot, save_figure

    timed = [a for a in report["attempts"] if a.get("speed")]
    if not timed:
        return None
    figure, axis = pyplot().subplots(figsize=(6, 4))
    for index, attempt in enumerate(timed):
        speed = attempt["speed"]
        color = "tab:green" if attempt.get("met") else "tab:red"
        spread = [[speed["ratio"] - speed["low"]], [speed["high"] - speed["ratio"]]]
        axis.errorbar([index], [speed["ratio"]], yerr=spread, color=color, fmt="o", capsize=4)
    goal = report["budget"].get("speedup")
    if goal:
        axis.axhline(goal, linestyle="--", color="gray", label=f"budget: {goal:g}× faster")
        axis.legend(fontsize=8)
    names = [
        "delivered file" if "delivered" in a.get("what", "") else f"candidate {i + 1}"
        for i, a in enumerate(timed)
    ]
    axis.set_xticks(range(len(timed)), names, fontsize=8)
    axis.set_ylabel("× faster than fp32 export (95 % interval)")
    axis.grid(alpha=0.3)
    return save_figure(figure, folder / "candidates.png")
