"""The demo job run by ``make demo`` / ``deepshrink demo``: needs no files and no network.

It trains the ``digits_mlp`` zoo model on scikit-learn's bundled 8×8 digits, measures it, and
writes a checkpoint, ``metrics.json`` and ``report.md`` into the run folder.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from deepshrink import data as ds_data
from deepshrink import eval as ds_eval
from deepshrink import train, zoo
from deepshrink._io import atomic_open, atomic_write_json


@dataclass(frozen=True)
class DemoOutcome:
    report: ds_eval.Report
    history: train.History
    checkpoint: Path
    markdown: str


def run_demo(out: str | Path, *, epochs: int = 30, seed: int = 0) -> DemoOutcome:
    """Train and measure the demo model; return what was measured.

    >>> import tempfile
    >>> outcome = run_demo(tempfile.mkdtemp(), epochs=1)
    >>> 0.0 <= outcome.report.accuracy <= 1.0
    True
    """
    out = Path(out)
    bundle = ds_data.load("digits", seed=seed)
    torch.manual_seed(seed)
    model = zoo.create("digits_mlp")
    # One thread: a model this small gains nothing from more, and on a busy machine extra
    # threads only wait for each other.
    config = train.FitConfig(epochs=epochs, batch_size=64, lr=0.05, seed=seed, threads=1)
    history = train.fit(model, bundle, config, progress=True)
    checkpoint = train.save_checkpoint(model, out / "digits_mlp", metadata={"data": "digits"})
    result = ds_eval.report(model, bundle.test, name="digits_mlp", file=checkpoint, threads=1)
    markdown = result.to_markdown()
    atomic_write_json(
        out / "metrics.json", {"report": result.to_dict(), "history": history.to_dict()}
    )
    with atomic_open(out / "report.md", "w") as f:
        f.write(f"# deepshrink demo: digits_mlp on 8×8 digits\n\n{markdown}\n")
    return DemoOutcome(result, history, checkpoint, markdown)
