"""The capabilities of the contract suite by name, and :func:`run_cell`."""

from __future__ import annotations

from pathlib import Path

from garden_cells import Capability, Cell, channel, magnitude, neuron, quantized, svd
from garden_io import (
    checkpoint_channel,
    checkpoint_dense,
    dsz_channel,
    dsz_dense,
    dsz_factorized,
    dsz_pruned,
    evaluate,
    fit,
    onnx_export,
    onnx_qat,
    own_loop,
    own_loop_agp,
    own_loop_kmeans,
    own_loop_qat,
)
from garden_models import Specimen
from garden_oracles import PASSING, Outcome, classify

import deepshrink as ds
import deepshrink.quantize as dq

__all__ = ["CAPABILITIES", "PASSING", "run_cell"]


def run_cell(spec: Specimen, capability: str, tmp: Path) -> Outcome:
    """Run ``capability`` on ``spec`` and classify what happened."""
    cell = Cell()
    return classify(lambda: CAPABILITIES[capability][0](spec, cell, tmp), lambda: cell.model)


CAPABILITIES: dict[str, tuple[Capability, str]] = {
    "magnitude_layer": (magnitude("layer"), "MagnitudePruning(sparsity=0.5), layer scope"),
    "magnitude_global": (magnitude("global"), "MagnitudePruning(sparsity=0.5, scope='global')"),
    "neuron": (neuron, "NeuronPruning(ratio=0.5): fewer parameters"),
    "channel": (channel, "ChannelPruning(ratio=0.5) with example inputs: fewer parameters"),
    "kmeans": (quantized(ds.KMeansQuantization(bits=4), False), "KMeansQuantization(bits=4)"),
    "qat": (quantized(dq.QuantAwareTraining(), False, calibration=True),
            "QuantAwareTraining() with calibration batches"),
    "mixed": (quantized(dq.MixedPrecision(default_bits=4), True), "MixedPrecision(4 bits)"),
    "svd": (svd, "SVDFactorization(compression=2): fewer parameters"),
    "dsz_dense": (dsz_dense, ".dsz round trip of the dense model, bit-identical"),
    "dsz_pruned": (dsz_pruned, ".dsz round trip after magnitude pruning"),
    "dsz_channel": (dsz_channel, ".dsz round trip after channel pruning"),
    "dsz_factorized": (dsz_factorized, ".dsz round trip after SVD"),
    "checkpoint_dense": (checkpoint_dense, "save_checkpoint / load_checkpoint of the dense model"),
    "checkpoint_channel": (checkpoint_channel, "checkpoint round trip after channel pruning"),
    "onnx_fp32": (onnx_export(False), "ds.export fp32, run in ONNX Runtime, close to PyTorch"),
    "onnx_int8_static": (onnx_export(True), "ds.export int8=True (QDQ), calibrated, in ORT"),
    "onnx_int8_dynamic": (onnx_export("dynamic"), "ds.export int8='dynamic', in ONNX Runtime"),
    "onnx_qat": (onnx_qat, "QuantAwareTraining, then ds.export int8=True with its own scales"),
    "evaluate": (evaluate, "ds.evaluate on labelled batches: accuracy and parameter count"),
    "fit": (fit, "ds.fit 3 epochs on the batches: training loss decreases"),
    "own_loop": (own_loop, "plain PyTorch SGD loop after MagnitudePruning keeps the masks"),
    "own_loop_agp": (own_loop_agp, "plain PyTorch loop stepping PolynomialDecay (AGP) to 0.5 "
                     "with PruningStepper"),
    "own_loop_qat": (own_loop_qat, "plain PyTorch loop trains a QuantAwareTraining model, then "
                     "int8 ONNX matches it"),
    "own_loop_kmeans": (own_loop_kmeans, "plain PyTorch SGD loop trains k-means centroids, "
                        "sharing kept"),
}  # fmt: skip
