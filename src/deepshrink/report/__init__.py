"""Reports people read: Markdown and a self-contained HTML page with the plots embedded.

>>> from deepshrink.report import html_table
>>> html_table(("a", "b"), [("1", "<2>")])
'<table><tr><th>a</th><th>b</th></tr><tr><td>1</td><td>&lt;2&gt;</td></tr></table>'
"""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

from deepshrink import _io
from deepshrink.eval import _units
from deepshrink.eval.compare import Comparison

__all__ = ["html_table", "render_run", "stage_rows"]

STAGE_HEADER = ("stage", "what", "top-1", "params", "non-zero", "MACs", "file", "gzip")
LAYER_HEADER = ("layer", "weights", "weights after", "non-zero after", "kept")


def stage_rows(metrics: dict[str, Any]) -> list[tuple[str, ...]]:
    """One row per stage (and the initial and final models) of a run's metrics."""
    entries = [("initial", "", metrics["initial"])]
    entries += [(e["label"], _what(e["summary"]), e["report"]) for e in metrics["stages"]]
    entries.append(("final", "", metrics["final"]))
    return [
        (label, what, _units.percent(r["accuracy"]), _units.count(r["parameters"]),
         _units.count(r["nonzero_parameters"]), _units.macs(r["macs"]),
         _units.size(r["file_bytes"]), _units.size(r["gzip_bytes"]))
        for label, what, r in entries
    ]  # fmt: skip


def _what(summary: dict[str, Any]) -> str:
    parts = []
    for key, value in summary.items():
        if isinstance(value, float):
            parts.append(f"{key} {value:.4g}")
        elif isinstance(value, (int, str)):
            parts.append(f"{key} {value}")
    return ", ".join(parts)


def layer_table(layers: list[dict[str, Any]]) -> list[tuple[str, ...]]:
    return [
        (row["layer"], _units.count(row["weights"]), _units.count(row["weights_after"]),
         _units.count(row["nonzero_after"]),
         _units.percent(row["nonzero_after"] / row["weights"] if row["weights"] else None))
        for row in layers
    ]  # fmt: skip


def html_table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    """An HTML table with every cell escaped."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>" for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}"
    "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;"
    "text-align:right}th{background:#f3f3f3}td:first-child{text-align:left}"
    "img{max-width:100%;border:1px solid #eee;margin:0.5em 0}"
)


def render_run(out: Path, name: str, description: str, metrics: dict[str, Any],
               comparison: Comparison) -> None:  # fmt: skip
    """Write ``plots/*.png``, ``report.md`` and a self-contained ``report.html`` into ``out``."""
    from deepshrink.report.plots import plot_latency, plot_layers, plot_stages

    plots = out / "plots"
    images = [
        plot_stages(metrics, plots / "stages.png"),
        plot_layers(metrics["layers"], plots / "layers.png"),
        plot_latency(metrics["initial"], metrics["final"], plots / "latency.png"),
    ]
    images = [image for image in images if image is not None]
    tables = [
        ("Before and after", ("metric", "before", "after", "change"), comparison.rows()),
        ("Stages", STAGE_HEADER, stage_rows(metrics)),
        ("Layers", LAYER_HEADER, layer_table(metrics["layers"])),
    ]
    markdown = [f"# {name}", "", description, ""] if description else [f"# {name}", ""]
    for title, header, rows in tables:
        markdown += [f"## {title}", "", _units.table(header, rows), ""]
    markdown += [f"![{p.stem}](plots/{p.name})" for p in images]
    _io.atomic_write_bytes(out / "report.md", ("\n".join(markdown) + "\n").encode("utf-8"))
    body = [f"<h1>{html.escape(name)}</h1>", f"<p>{html.escape(description)}</p>"]
    for title, header, rows in tables:
        body += [f"<h2>{html.escape(title)}</h2>", html_table(header, rows)]
    for image in images:
        encoded = base64.b64encode(image.read_bytes()).decode("ascii")
        body.append(f'<img alt="{image.stem}" src="data:image/png;base64,{encoded}">')
    page = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(name)}</title>"
        f"<style>{_STYLE}</style></head><body>{''.join(body)}</body></html>\n"
    )
    _io.atomic_write_bytes(out / "report.html", page.encode("utf-8"))
