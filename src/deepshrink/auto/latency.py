"""Per-layer latency tables measured in ONNX Runtime, and the whole model's predicted latency.

Every convolution and ``Linear`` layer becomes a one-node ONNX model (``Conv`` + ``Relu``, or
``Gemm``) at each pair of input and output widths its channel groups can take, with random
weights (speed depends on shapes only). All of them are timed **in one alternation** with
:func:`deepshrink.eval.timing.side_by_side` — one thread, thread CPU time, the median of the
rounds — together with two whole models (the full-width export and the narrowest one) and an
empty model whose time (the runtime's per-call cost) is taken off every layer's entry.

The prediction for a choice of widths is ``b + a · Σ layer entries``: ``a`` and ``b`` are fitted
through the two whole models (timed again on their own, alternating, since among many small
models their caches are cold), so what single-node models miss (element-wise adds, padding,
pooling, layout changes, one call instead of many) is carried by the line. The delivered file
is still measured; a prediction is never reported as a result.

>>> table = LatencyTable({"k": 0.5}, full_ms=2.0, narrow_ms=1.0, full_sum=1.5, narrow_sum=0.5)
>>> round(table.predict_sum(1.0), 3)
1.5
"""

from __future__ import annotations

import logging
import math
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

__all__ = ["LatencyTable", "LayerShape", "layer_shapes", "measure_calls", "onnx_layer"]

logger = logging.getLogger(__name__)

Clock = Callable[[], float]


@dataclass(frozen=True)
class LayerShape:
    """What a layer's latency depends on, apart from its widths."""

    kind: str  # "conv" or "linear"
    size: tuple[int, ...]  # spatial input size (conv) or () (linear)
    kernel: tuple[int, ...] = ()
    stride: tuple[int, ...] = ()
    padding: tuple[int, ...] = ()
    dilation: tuple[int, ...] = ()
    depthwise: bool = False
    batch: int = 1

    def key(self, width_in: int, width_out: int) -> str:
        """A table key: the shape with its widths (equal shapes share one entry)."""
        parts = [self.kind, f"{width_in}x{width_out}", "x".join(map(str, self.size))]
        if self.kind == "conv":
            parts += [f"k{self.kernel}", f"s{self.stride}", f"p{self.padding}", f"d{self.dilation}"]
            parts += ["dw"] if self.depthwise else []
        return "/".join(parts + [f"b{self.batch}"]).replace(" ", "")


def layer_shapes(model: nn.Module, example: Any, batch: int = 1) -> dict[str, LayerShape]:
    """The 2-D convolutions and ``Linear`` layers of ``model`` with their input sizes (one
    forward pass on ``example``)."""
    import torch

    from deepshrink.graph.io import call

    shapes: dict[str, LayerShape] = {}
    hooks = []

    def hook(name: str, module: nn.Module) -> Callable[..., None]:
        def record(_: nn.Module, args: tuple[Any, ...]) -> None:
            size = tuple(args[0].shape[2:]) if isinstance(module, nn.Conv2d) else ()
            shapes[name] = _shape(module, size, batch)

        return record

    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d | nn.Linear) and (
            not isinstance(module, nn.Conv2d) or module.groups in (1, module.in_channels)
        ):
            hooks.append(module.register_forward_pre_hook(hook(name, module)))
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            call(model, example)
    finally:
        model.train(was_training)
        for handle in hooks:
            handle.remove()
    return shapes


def _shape(module: nn.Module, size: tuple[int, ...], batch: int) -> LayerShape:
    if isinstance(module, nn.Linear):
        return LayerShape("linear", (), batch=batch)
    return LayerShape(
        "conv", size, tuple(module.kernel_size), tuple(module.stride),
        tuple(module.padding), tuple(module.dilation),
        depthwise=module.groups > 1 and module.groups == module.in_channels, batch=batch,
    )  # fmt: skip


def onnx_layer(shape: LayerShape, width_in: int, width_out: int, path: Path) -> Path:
    """Write the one-node ONNX model of ``shape`` at these widths (random weights)."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    if shape.kind == "linear":
        x_shape, out_shape = [shape.batch, width_in], [shape.batch, width_out]
        weight = rng.standard_normal((width_out, width_in)).astype(np.float32)
        nodes = [helper.make_node("Gemm", ["x", "w", "b"], ["y"], transB=1)]
    else:
        groups = width_in if shape.depthwise else 1
        x_shape = [shape.batch, width_in, *shape.size]
        weight = rng.standard_normal((width_out, width_in // groups, *shape.kernel))
        weight = weight.astype(np.float32)
        out_size = [
            (n + 2 * p - d * (k - 1) - 1) // s + 1
            for n, k, s, p, d in zip(shape.size, shape.kernel, shape.stride, shape.padding,
                                     shape.dilation, strict=True)
        ]  # fmt: skip
        out_shape = [shape.batch, width_out, *out_size]
        conv = helper.make_node(
            "Conv", ["x", "w", "b"], ["c"], kernel_shape=list(shape.kernel),
            strides=list(shape.stride), pads=list(shape.padding) * 2,
            dilations=list(shape.dilation), group=groups,
        )  # fmt: skip
        nodes = [conv, helper.make_node("Relu", ["c"], ["y"])]
    bias = rng.standard_normal(width_out).astype(np.float32)
    graph = helper.make_graph(
        nodes, "layer",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)],
        [numpy_helper.from_array(weight, "w"), numpy_helper.from_array(bias, "b")],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def _overhead_model(path: Path) -> Path:
    """An ONNX model of one ``Relu`` on one number: the runtime's cost of a call."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])], "call",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1])],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def _session_call(path: Path) -> Callable[[], Any]:
    import numpy as np

    from deepshrink.export.runtime import session

    sess = session(path, threads=1)
    spec = sess.get_inputs()[0]
    x = np.random.default_rng(0).standard_normal(spec.shape).astype(np.float32)
    return lambda: sess.run(None, {spec.name: x})


@dataclass
class LatencyTable:
    """Measured milliseconds per table key, and the line through the two whole models."""

    entries: dict[str, float]
    full_ms: float
    narrow_ms: float
    full_sum: float
    narrow_sum: float
    overhead_ms: float = 0.0
    rounds: int = 0
    load_average: tuple[float, ...] | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def slope(self) -> float:
        """``a``: whole-model ms per ms of summed layer entries (1 when the fit is degenerate)."""
        spread = self.full_sum - self.narrow_sum
        a = (self.full_ms - self.narrow_ms) / spread if spread > 1e-9 else 1.0
        return a if a > 0 else 1.0

    @property
    def intercept(self) -> float:
        """``b``: the whole model's ms that no layer entry accounts for."""
        return self.full_ms - self.slope * self.full_sum

    def predict_sum(self, total: float) -> float:
        """Predicted whole-model ms for a sum of layer entries."""
        return self.intercept + self.slope * total

    def to_dict(self) -> dict[str, Any]:
        return {
            "entries": self.entries, "full_ms": self.full_ms, "narrow_ms": self.narrow_ms,
            "full_sum": self.full_sum, "narrow_sum": self.narrow_sum, "slope": self.slope,
            "intercept": self.intercept, "overhead_ms": self.overhead_ms, "rounds": self.rounds,
            "load_average": self.load_average, "notes": self.notes,
        }  # fmt: skip


def measure_calls(
    calls: Mapping[str, Callable[[], Any]],
    *,
    rounds: int = 15,
    min_seconds: float = 0.0005,
    clock: Clock = time.thread_time,
    wall: Clock = time.perf_counter,
) -> dict[str, float]:
    """Median thread-CPU milliseconds of one call of each of ``calls``, all timed in one
    alternation (:func:`~deepshrink.eval.timing.side_by_side`); a short call is looped so one
    timing lasts about ``min_seconds``."""
    from deepshrink.eval.timing import side_by_side

    loops = {name: _loops(call, min_seconds, clock) for name, call in calls.items()}
    looped = {name: _looped(call, loops[name]) for name, call in calls.items()}
    speeds = side_by_side(looped, rounds=rounds, warmup=1, clock=clock, wall=wall, threads=1)
    return {name: speeds[name].cpu_ms / loops[name] for name in calls}


def _loops(call: Callable[[], Any], min_seconds: float, clock: Clock) -> int:
    call()
    began = clock()
    call()
    single = max(clock() - began, 1e-7)
    return max(1, math.ceil(min_seconds / single))


def _looped(call: Callable[[], Any], count: int) -> Callable[[], None]:
    def run() -> None:
        for _ in range(count):
            call()

    return run


def build_table(
    layers: Mapping[str, tuple[LayerShape, Sequence[int], Sequence[int]]],
    full: Callable[[], Any],
    narrow: Callable[[], Any],
    *,
    rounds: int = 15,
    make_call: Callable[[LayerShape, int, int], Callable[[], Any]] | None = None,
    overhead: Callable[[], Any] | None = None,
    clock: Clock = time.thread_time,
    wall: Clock = time.perf_counter,
) -> LatencyTable:
    """Measure every layer at every ``(width_in, width_out)`` it can take, beside the
    full-width and the narrowest whole model. ``layers`` maps a layer to its shape and its
    possible input and output widths (full width first, narrowest last). ``make_call`` and
    ``overhead`` default to ONNX Runtime sessions of :func:`onnx_layer` models."""
    from deepshrink.eval.timing import _load_average

    with tempfile.TemporaryDirectory(prefix="deepshrink-latency-") as tmp:
        folder = Path(tmp)
        if make_call is None:

            def make_call(shape: LayerShape, w_in: int, w_out: int) -> Callable[[], Any]:
                path = folder / f"layer{len(list(folder.iterdir()))}.onnx"
                return _session_call(onnx_layer(shape, w_in, w_out, path))

        if overhead is None:
            overhead = _session_call(_overhead_model(folder / "call.onnx"))
        calls: dict[str, Callable[[], Any]] = {"model": full, "narrow": narrow, "call": overhead}
        for shape, widths_in, widths_out in layers.values():
            for w_in in widths_in:
                for w_out in widths_out:
                    key = shape.key(w_in, w_out)
                    if key not in calls:
                        calls[key] = make_call(shape, w_in, w_out)
        logger.info("auto latency table: %d layer shapes × widths timed in one alternation, "
                    "%d rounds, thread CPU time", len(calls) - 3, rounds)  # fmt: skip
        ms = measure_calls(calls, rounds=rounds, clock=clock, wall=wall)
        # the whole models again, on their own: among many small models their caches are cold
        whole = measure_calls({"model": full, "narrow": narrow}, rounds=rounds, clock=clock,
                              wall=wall)  # fmt: skip
    cost = ms.pop("call")
    ms.pop("model"), ms.pop("narrow")
    full_ms, narrow_ms = whole["model"], whole["narrow"]
    entries = {key: max(value - cost, 0.0) for key, value in ms.items()}
    full_sum = sum(entries[s.key(i[0], o[0])] for s, i, o in layers.values())
    narrow_sum = sum(entries[s.key(i[-1], o[-1])] for s, i, o in layers.values())
    table = LatencyTable(entries, full_ms, narrow_ms, full_sum, narrow_sum, cost, rounds,
                         _load_average())  # fmt: skip
    logger.info("auto latency table: whole model %.3f ms (narrowest %.3f ms); layers sum to "
                "%.3f / %.3f ms; prediction = %.3f + %.3f × sum", full_ms, narrow_ms, full_sum,
                narrow_sum, table.intercept, table.slope)  # fmt: skip
    return table
