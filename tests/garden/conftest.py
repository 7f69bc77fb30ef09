"""The contract suite's recorder: every cell's outcome, written as JSON after the run.

Set ``DEEPSHRINK_SUPPORT_JSON=path.json`` to keep the outcomes; ``tests/garden/render.py`` turns
that file into ``docs/model-support.md`` (``DEEPSHRINK_SUPPORT_MD=page.md`` renders it right after
the run). The garden runs with one torch thread.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))


@pytest.fixture(autouse=True, scope="session")
def _one_thread() -> Any:
    """Tiny models gain nothing from intra-op threads, and on a busy machine two threads make
    a small GRU call about 50x slower (measured), so the garden runs single-threaded."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


_CELLS: dict[str, dict[str, dict[str, str]]] = {}
_START = time.monotonic()


@pytest.fixture
def record() -> Any:
    """``record(model, capability, outcome)`` keeps a cell's outcome for the JSON file."""

    def keep(model: str, capability: str, outcome: Any) -> None:
        _CELLS.setdefault(model, {})[capability] = {"kind": outcome.kind, "detail": outcome.detail}

    return keep


def _metadata() -> dict[str, Any]:
    import torch
    from garden_capabilities import CAPABILITIES
    from garden_models import GARDEN

    import deepshrink

    models = {}
    for name, spec in GARDEN.items():
        model = spec.build(0)
        models[name] = {
            "description": spec.description,
            "parameters": sum(p.numel() for p in model.parameters()),
            "output": spec.output,
            "returns": spec.returns,
        }
    versions = {"deepshrink": deepshrink.__version__, "torch": torch.__version__}
    for package in ("transformers", "onnxruntime"):
        try:
            versions[package] = __import__(package).__version__
        except ImportError:
            versions[package] = "missing"
    return {
        "models": models,
        "capabilities": {name: text for name, (_, text) in CAPABILITIES.items()},
        "versions": versions,
        "python": platform.python_version(),
    }


def pytest_sessionfinish(session: pytest.Session) -> None:
    path = os.environ.get("DEEPSHRINK_SUPPORT_JSON")
    if not path or not _CELLS:  # nothing asked for, or no cell ran
        return
    result = {
        "generated": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "seconds": round(time.monotonic() - _START, 1),
        **_metadata(),
        "cells": _CELLS,
    }
    Path(path).write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n")
    page = os.environ.get("DEEPSHRINK_SUPPORT_MD")
    if page:
        from render import render

        Path(page).write_text(render(result))
