"""Where does int8 pay on a channel-pruned network? The pruned fp32 ONNX file of one
``recipes/cifar_resnet20_prune4x_int8.yaml`` run against static int8 variants of it in ONNX
Runtime: every layer int8 with unsigned weights (what ``ds.export(int8=True)`` writes), with
signed weights (ONNX Runtime's default, U8S8 kernels), with signed 7-bit weights
(``reduce_range``, the setting meant for CPUs without VNNI), and int8 in one residual stage or
two only (the other layers stay fp32; ONNX Runtime's ``nodes_to_exclude``).

Each variant is timed against the pruned fp32 file alternating call by call in one process, one
intra-op thread, thread CPU time, 30 rounds, median ratio with a 95 % bootstrap interval
(:func:`deepshrink.eval.timing.compare_calls`). Calibration: 256 training images.

    DEEPSHRINK_DATA=/path/to/datasets python benchmarks/int8_where.py --run runs/prune4x
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import torch
from _common import write_result

import deepshrink as ds
from deepshrink.eval.timing import compare_calls
from deepshrink.export._ort import _reader, graph_inputs
from deepshrink.export._qdq import unsigned_weights
from deepshrink.export.files import file_calls

#: variant → (ONNX node-name fragments kept in fp32, signed weights, 7-bit weights)
VARIANTS: dict[str, tuple[tuple[str, ...], bool, bool]] = {
    "all layers, unsigned weights (deepshrink's export)": ((), False, False),
    "all layers, signed weights (U8S8)": ((), True, False),
    "all layers, signed 7-bit weights (reduce_range)": ((), True, True),
    "stage 3 only": (
        ("/model/conv1/", "/model/relu/", "/model/layer1/", "/model/layer2/", "/model/fc/"),
        False,
        False,
    ),
    "stages 2-3 only": (
        ("/model/conv1/", "/model/relu/", "/model/layer1/", "/model/fc/"),
        False,
        False,
    ),
}


def quantized(source: Path, target: Path, images: torch.Tensor, keep: tuple[str, ...],
              signed: bool, reduce_range: bool) -> Path:  # fmt: skip
    import onnx
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    nodes = [n.name for n in onnx.load(str(source)).graph.node]
    excluded = [n for n in nodes if any(fragment in n for fragment in keep)]
    raw = target.with_suffix(".raw.onnx")
    batches = [images[i : i + 32] for i in range(0, len(images), 32)]
    quantize_static(
        str(source), str(raw), _reader(batches, graph_inputs(source)),
        quant_format=QuantFormat.QDQ, per_channel=True, activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8, reduce_range=reduce_range, nodes_to_exclude=excluded,
    )  # fmt: skip
    if signed:
        shutil.copy(raw, target)
    else:
        unsigned_weights(raw, target)
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, required=True, help="the recipe's run folder")
    args = parser.parse_args()
    began = time.perf_counter()
    source = args.run / "resnet20_pruned.fp32.onnx"
    data = ds.data.load("cifar10", root=os.environ.get("DEEPSHRINK_DATA"))
    train = data.train.without_transform()
    images = torch.stack([train[i][0] for i in range(256)])
    example = torch.rand(1, 3, 32, 32)
    folder = Path(tempfile.mkdtemp())
    rows = {}
    for index, (name, (keep, signed, reduce_range)) in enumerate(VARIANTS.items()):
        path = quantized(source, folder / f"v{index}.onnx", images, keep, signed, reduce_range)
        speeds = compare_calls(file_calls(source, example), file_calls(path, example),
                               batch_sizes=(1, 32), threads=1)  # fmt: skip
        rows[name] = {
            "kept_fp32": list(keep), "signed_weights": signed, "reduce_range": reduce_range,
            "vs_pruned_fp32": {str(size): s.to_dict() for size, s in speeds.items()},
        }  # fmt: skip
        print(name, {size: s.text() for size, s in speeds.items()})
    payload = {
        "run": str(args.run),
        "baseline": str(source),
        "variants": rows,
    }
    print(write_result("int8_where", payload, began=began))


if __name__ == "__main__":
    main()
