"""Shared helpers for benchmark scripts: machine description and result files."""

from __future__ import annotations

import json
import os
import platform
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import torch

RESULTS = Path(__file__).resolve().parent / "results"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict[str, Any]:
    """CPU model, thread count and library versions, recorded with every result."""
    import numpy

    import deepshrink

    return {
        "cpu": cpu_model(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "deepshrink": deepshrink.__version__,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def command_line() -> str:
    return "python " + " ".join(shlex.quote(a) for a in sys.argv)


def write_result(name: str, payload: dict[str, Any], *, began: float | None = None) -> Path:
    """Write ``benchmarks/results/<name>.json`` with the command and machine attached; with
    ``began`` (a ``time.perf_counter()`` reading) also the load average and the wall seconds."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    body = {"command": command_line(), "machine": machine(), **payload}
    if began is not None:
        body |= {"load_average": os.getloadavg(), "wall_seconds": time.perf_counter() - began}
    path.write_text(json.dumps(body, indent=2, sort_keys=True) + "\n")
    return path
