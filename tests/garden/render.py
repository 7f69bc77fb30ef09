"""Render the contract suite's JSON results as the support matrix (``docs/model-support.md``).

Run the suite with ``DEEPSHRINK_SUPPORT_JSON`` set, then this script::

    DEEPSHRINK_SUPPORT_JSON=/tmp/garden.json .venv/bin/python -m pytest tests/garden -q
    .venv/bin/python tests/garden/render.py /tmp/garden.json -o docs/model-support.md

It reads JSON only (no torch), so it runs anywhere.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path
from typing import Any

KINDS = ("WORKS", "CLEAN REFUSAL", "SILENT NO-OP", "WRONG RESULT", "VAGUE REFUSAL",
         "FOREIGN EXCEPTION")  # fmt: skip
SHORT = {
    "WORKS": "✓",
    "CLEAN REFUSAL": "refused",
    "SILENT NO-OP": "✗ silent",
    "WRONG RESULT": "✗ wrong",
    "VAGUE REFUSAL": "✗ vague",
    "FOREIGN EXCEPTION": "✗ crash",
}
LEGEND = """\
| mark | class | meaning |
|---|---|---|
| ✓ | WORKS | returned, and the oracle held: target sparsity reached on the pruned weights, \
fewer parameters, 4-bit weights with at most 16 values per layer (per channel for mixed \
precision), outputs bit-identical after a `.dsz` round trip, ONNX Runtime close to PyTorch \
(fp32: `allclose(atol=1e-4, rtol=1e-3)`; int8: quantized ops present and relative error \
< 0.35), tied parameters still one tensor, every weight matrix either changed or named with a \
reason in the method's coverage record |
| refused (n) | CLEAN REFUSAL | a `deepshrink.errors.DeepshrinkError` whose message names the \
layer, layer type or operation that blocks the method; note n gives the message |
| ✗ silent (n) | SILENT NO-OP | returned normally but changed nothing, or left weights \
untouched without recording why — **a failure** |
| ✗ wrong (n) | WRONG RESULT | an oracle failed (outputs differ, ties broken, model grew, \
sparsity missed) — **a failure** |
| ✗ vague (n) | VAGUE REFUSAL | a deepshrink error that names no layer or operation — \
**a failure** |
| ✗ crash (n) | FOREIGN EXCEPTION | an exception that is not a deepshrink error (a bug) — \
**a failure** |
| · | not run | the cell was not part of this run |
"""
REGENERATE = """\
## How to regenerate

```bash
DEEPSHRINK_SUPPORT_JSON=/tmp/garden.json .venv/bin/python -m pytest tests/garden -q
.venv/bin/python tests/garden/render.py /tmp/garden.json -o docs/model-support.md
```

(or set `DEEPSHRINK_SUPPORT_MD=docs/model-support.md` beside `DEEPSHRINK_SUPPORT_JSON` and the
suite writes the page itself when it ends). A run of part of the suite (`-k`) leaves the cells it
did not run as `·`.

The suite (`tests/garden/test_contract.py`) runs every garden model (`garden_models.py`) through
every capability (`garden_cells.py`) and classifies each outcome itself (`garden_oracles.py`);
a cell's test passes only for ✓ or a clean refusal. Nothing is marked xfail: the failing cells
are the to-do list. Add a model with one `Specimen`, a capability with one function.
"""


def _models(results: dict[str, Any]) -> str:
    lines = [
        "| model | parameters | output | forward returns | what it is |",
        "|---|---|---|---|---|",
    ]
    for name, info in results["models"].items():
        lines.append(f"| `{name}` | {info['parameters']:,} | {info['output']} | "
                     f"{info['returns']} | {info['description']} |")  # fmt: skip
    return "\n".join(lines)


def _capabilities(results: dict[str, Any]) -> str:
    lines = ["| capability | what the cell does |", "|---|---|"]
    lines += [f"| `{name}` | {text} |" for name, text in results["capabilities"].items()]
    return "\n".join(lines)


def _matrix(results: dict[str, Any]) -> tuple[str, list[str]]:
    """The matrix (models × capabilities) and the numbered notes it refers to."""
    caps = list(results["capabilities"])
    lines = ["| model | " + " | ".join(f"`{c}`" for c in caps) + " |",
             "|---|" + "---|" * len(caps)]  # fmt: skip
    notes: list[str] = []
    for model in results["models"]:
        row = results["cells"].get(model, {})
        marks = []
        for cap in caps:
            cell = row.get(cap)
            if cell is None:
                marks.append("·")
            elif cell["kind"] == "WORKS":
                marks.append("✓")
            else:
                notes.append(f"{len(notes) + 1}. `{model}` × `{cap}` — **{cell['kind']}**: "
                             f"{_escape(cell['detail'])}")  # fmt: skip
                marks.append(f"{SHORT.get(cell['kind'], cell['kind'])} ({len(notes)})")
        lines.append(f"| `{model}` | " + " | ".join(marks) + " |")
    return "\n".join(lines), notes


def _escape(text: str) -> str:
    return text.replace("|", "\\|").replace("<", "&lt;")


def _summary(results: dict[str, Any]) -> str:
    counts = Counter(cell["kind"] for row in results["cells"].values() for cell in row.values())
    total = sum(counts.values())
    parts = [f"{counts[kind]} {kind.lower()}" for kind in KINDS if counts[kind]]
    failing = total - counts["WORKS"] - counts["CLEAN REFUSAL"]
    return f"{total} cells: " + ", ".join(parts) + f" — **{failing} failing**."


def render(results: dict[str, Any]) -> str:
    """The Markdown page for the suite's ``results`` (the JSON the conftest writes)."""
    matrix, notes = _matrix(results)
    versions = ", ".join(f"{k} {v}" for k, v in results.get("versions", {}).items())
    return "\n\n".join([
        "# Model support\n\nWhat deepshrink does with models users bring, measured by the "
        "contract suite in `tests/garden/` over a garden of tiny models (Hugging Face models "
        "built from configs with random weights, and plain PyTorch), one cell per model × "
        "capability. This page is generated; do not edit it by hand.",
        f"Run of {results.get('generated', '?')} ({versions}; suite time "
        f"{results.get('seconds', '?')} s). {_summary(results)}",
        "## Matrix", matrix, "## Legend", LEGEND.rstrip(),
        "## Notes (refusals and failures)", "\n".join(notes) or "None.",
        "## Models", _models(results), "## Capabilities", _capabilities(results),
        REGENERATE.rstrip(),
    ]) + "\n"  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path, help="JSON written by the contract suite")
    parser.add_argument("-o", "--output", type=Path, default=Path("docs/model-support.md"))
    args = parser.parse_args(argv)
    results = json.loads(args.results.read_text())
    args.output.write_text(render(results))


if __name__ == "__main__":
    main()
