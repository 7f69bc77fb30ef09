"""Does a run's headline describe the file it delivers?

`recipes/mnist_cnn_prune_quantize.yaml` prunes mnist_cnn to 50 % and delivers a static int8
ONNX file. Its report's "after" column must be that file in ONNX Runtime: its accuracy on the
10,000 MNIST test images, and its speed against the fp32 ONNX export of the baseline, both
files timed side by side in one process (thread CPU time, alternating calls, one thread) and
stated as "slower" when the int8 file is slower (it is, on CPUs without VNNI).

The masked PyTorch model is timed too, against the baseline in PyTorch, to show how the old
headline (PyTorch speed beside the ONNX file's size) differed.

    python benchmarks/delivered_headline.py
"""

from __future__ import annotations

import copy
import json
import os
import tempfile
from pathlib import Path

from _common import write_result

from deepshrink.eval.timing import compare_speed
from deepshrink.recipe import run_recipe
from deepshrink.recipe.stages import finalized
from deepshrink.train import load_checkpoint

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "mnist_cnn_prune_quantize.yaml"


def main() -> None:
    out = Path(tempfile.mkdtemp()) / "run"
    result = run_recipe(RECIPE, out, progress=False)
    metrics = json.loads((out / "metrics.json").read_text())
    comparison = result.comparison
    baseline = load_checkpoint(out / "stages" / "01-export" / "model.safetensors")[0]
    final = finalized(copy.deepcopy(result.model))
    pytorch = compare_speed(baseline, final, baseline.example_inputs(), batch_sizes=(1, 64))
    payload = {
        "recipe": RECIPE.name,
        "load_average": os.getloadavg(),
        "delivered": Path(metrics["artifacts"]["delivered"]).name,
        "before": {k: metrics["baseline"][k] for k in ("accuracy", "samples", "file_bytes")},
        "after": {k: metrics["final"][k] for k in ("accuracy", "samples", "file_bytes", "extra")},
        "changed_predictions": comparison.changed_predictions,
        "headline_runtime": comparison.speed_runtime,
        "headline_speed": {str(b): s.to_dict() for b, s in (comparison.speed or {}).items()},
        "pytorch_masked_model_speed": {str(b): s.to_dict() for b, s in pytorch.items()},
        "report_rows": comparison.rows(),
    }
    print(write_result("delivered_headline", payload))


if __name__ == "__main__":
    main()
