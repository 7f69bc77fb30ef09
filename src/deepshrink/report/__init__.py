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

__all__ = ["html_table", "markdown_table_html", "render_run", "stage_rows"]

STAGE_HEADER = ("stage", "what", "top-1", "params", "non-zero", "MACs", "dense fp32",
                "file written", "gzipped")  # fmt: skip
STAGE_NOTE = (
    "dense fp32: parameters × 4 B. file written: the file an encode or export stage delivered "
    "(final: the run's delivered file). Stage checkpoints, which also hold masks and codebooks "
    "to resume from, are not a size result."
)
LAYER_HEADER = ("layer", "weights", "weights after", "non-zero after", "kept", "bits/weight")


def stage_rows(metrics: dict[str, Any]) -> list[tuple[str, ...]]:
    """One row per stage (and the initial and final models) of a run's metrics."""
    final = metrics["final"]
    entries = [("initial", "", metrics["initial"], None, None)]
    for entry in metrics["stages"]:
        summary = entry["summary"]
        written = summary.get("bytes") if isinstance(summary.get("bytes"), int) else None
        zipped = summary.get("gzip_bytes") if written is not None else None
        entries.append((entry["label"], _what(summary), entry["report"], written, zipped))
    entries.append(("final", "", final, final["file_bytes"], final["gzip_bytes"]))
    return [
        (label, what, _units.percent(r["accuracy"]), _units.count(r["parameters"]),
         _units.count(r["nonzero_parameters"]), _units.macs(r["macs"]),
         _units.size(r["dense_bytes"]), _units.size(written) if written else "",
         _units.size(zipped) if zipped else "")
        for label, what, r, written, zipped in entries
    ]  # fmt: skip


def _what(summary: dict[str, Any]) -> str:
    parts = []
    for key, value in summary.items():
        if isinstance(value, float):
            parts.append(f"{key} {value:.4g}")
        elif isinstance(value, (int, str)):
            parts.append(f"{key} {value}")
    return ", ".join(parts)


def layer_table(layers: list[dict[str, Any]], bits: dict[str, str]) -> list[tuple[str, ...]]:
    """Rows of the layer table; ``bits`` are bits per weight in the delivered file."""
    return [
        (row["layer"], _units.count(row["weights"]), _units.count(row["weights_after"]),
         _units.count(row["nonzero_after"]),
         _units.percent(row["nonzero_after"] / row["weights"] if row["weights"] else None),
         bits.get(row["layer"], ""))
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
    "img{max-width:100%;border:1px solid #eee;margin:0.5em 0}.note{color:#555;font-size:0.9em}"
)


def render_run(out: Path, name: str, description: str, metrics: dict[str, Any],
               comparison: Comparison) -> None:  # fmt: skip
    """Write ``plots/*.png``, ``report.md`` and a self-contained ``report.html`` into ``out``."""
    from deepshrink.report.delivered import describe, layer_bits_rows
    from deepshrink.report.plots import plot_latency, plot_layers, plot_stages

    plots = out / "plots"
    images = [
        plot_stages(metrics, plots / "stages.png"),
        plot_layers(metrics["layers"], plots / "layers.png"),
        plot_latency(comparison, plots / "latency.png"),
    ]
    images = [image for image in images if image is not None]
    delivered = describe(Path(metrics["artifacts"].get("delivered", out / "model.safetensors")))
    bits = layer_bits_rows(delivered["layers"], [row["layer"] for row in metrics["layers"]])
    sections: list[tuple[str, str, str]] = [
        ("Before and after", _units.table(("metric", "before", "after", "change"),
                                          comparison.rows()), _headline_note(comparison)),
        ("Stages", _units.table(STAGE_HEADER, stage_rows(metrics)), STAGE_NOTE),
        ("Layers", _units.table(LAYER_HEADER, layer_table(metrics["layers"], bits)),
         f"bits/weight: 8 × the layer's bytes in {delivered['file']} ÷ its weights (codebooks, "
         "indices and scales included); blank where the file does not say."),
    ]  # fmt: skip
    if delivered["markdown"]:
        sections.append((f"Delivered file: {delivered['file']}", delivered["markdown"], ""))
    _write_markdown(out, name, description, sections, images)
    _write_html(out, name, description, sections, images)


def _headline_note(comparison: Comparison) -> str:
    after = comparison.after
    runtime = comparison.speed_runtime
    where = f"measured in {runtime}" if comparison.speed else f"accuracy measured in {runtime}"
    file = "after: the delivered file, " + where
    return (f"{file}. Intervals are 95 %: Wilson for accuracy on {after.samples or 0:,} test "
            "samples; bootstrap for speed ratios, which are claimed only when the whole interval "
            "lies beyond ±5 %.")  # fmt: skip


def _write_markdown(out: Path, name: str, description: str,
                    sections: list[tuple[str, str, str]], images: list[Path]) -> None:  # fmt: skip
    markdown = [f"# {name}", "", description, ""] if description else [f"# {name}", ""]
    for title, table, note in sections:
        markdown += [f"## {title}", "", table, ""] + ([note, ""] if note else [])
    markdown += [f"![{p.stem}](plots/{p.name})" for p in images]
    _io.atomic_write_bytes(out / "report.md", ("\n".join(markdown) + "\n").encode("utf-8"))


def _write_html(out: Path, name: str, description: str,
                sections: list[tuple[str, str, str]], images: list[Path]) -> None:  # fmt: skip
    body = [f"<h1>{html.escape(name)}</h1>", f"<p>{html.escape(description)}</p>"]
    for title, table, note in sections:
        body += [f"<h2>{html.escape(title)}</h2>", markdown_table_html(table)]
        body += [f"<p class='note'>{html.escape(note)}</p>"] if note else []
    for image in images:
        encoded = base64.b64encode(image.read_bytes()).decode("ascii")
        body.append(f'<img alt="{image.stem}" src="data:image/png;base64,{encoded}">')
    page = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(name)}</title>"
        f"<style>{_STYLE}</style></head><body>{''.join(body)}</body></html>\n"
    )
    _io.atomic_write_bytes(out / "report.html", page.encode("utf-8"))


def markdown_table_html(text: str) -> str:
    """The Markdown tables in ``text`` as HTML tables, other lines as paragraphs (escaped).

    >>> markdown_table_html("| a | b |\\n|---|--:|\\n| 1 | 2 |\\n\\nsaid")
    '<table><tr><th>a</th><th>b</th></tr><tr><td>1</td><td>2</td></tr></table><p>said</p>'
    """
    parts, rows = [], []
    for line in [*text.splitlines(), ""]:
        if line.startswith("|"):
            cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
            if not all(set(cell) <= set("-: ") for cell in cells):
                rows.append(tuple(cells))
            continue
        if rows:
            parts.append(html_table(rows[0], rows[1:]))
            rows = []
        if line.strip():
            parts.append(f"<p>{html.escape(line)}</p>")
    return "".join(parts)
