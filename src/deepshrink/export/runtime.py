"""Run exported ONNX files in ONNX Runtime: predictions, accuracy on a dataset, latency.

Latency is measured the way this project measures everything: a fixed number of intra-op
threads, warm-up calls, and the median (and inter-quartile range) of repeated timed blocks. When
several files are timed together their blocks are *interleaved* (file A, file B, file A, …) so
that a noisy neighbour on a shared machine slows every file alike and ratios stay fair.

>>> import tempfile, pathlib, torch
>>> from torch import nn
>>> from deepshrink.export.onnx import export
>>> path = export(nn.Linear(4, 2), pathlib.Path(tempfile.mkdtemp()) / "m.onnx",
...               example_inputs=torch.rand(1, 4))
>>> predict(path, torch.ones(3, 4)).shape
(3, 2)
>>> times = compare_latency({"fp32": path}, (4,), batch_sizes=(1,), rounds=3, block_seconds=0.01)
>>> times["fp32"][1].batch_size
1
"""

from __future__ import annotations

import logging
import os
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from deepshrink._progress import ticking
from deepshrink.errors import ConfigError, DeepshrinkError
from deepshrink.eval.latency import Latency
from deepshrink.graph.io import inputs_and_labels
from deepshrink.train.evaluation import EvalResult, batches

__all__ = [
    "compare_latency", "evaluate_onnx", "feed", "forward", "optimized_ops", "predict", "runner",
    "session",
]  # fmt: skip

logger = logging.getLogger(__name__)

Source = str | os.PathLike[str] | Any  # a path or an onnxruntime.InferenceSession


def session(path: str | os.PathLike[str], *, threads: int = 1) -> Any:
    """An ``onnxruntime.InferenceSession`` on the CPU with ``threads`` intra-op threads."""
    import onnxruntime as ort

    if threads < 1:
        raise ConfigError(f"threads must be at least 1, got {threads}")
    if not os.path.isfile(path):
        raise DeepshrinkError(f"ONNX file {path} does not exist")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def optimized_ops(path: str | os.PathLike[str]) -> dict[str, int]:
    """How many nodes of each type the graph has after ONNX Runtime's CPU optimisations.

    Shows whether a QDQ int8 model really runs integer kernels (``QLinearConv``, ``QGemm``)
    or float ones between ``DequantizeLinear``/``QuantizeLinear`` pairs.
    """
    import tempfile
    from collections import Counter

    import onnx
    import onnxruntime as ort

    with tempfile.TemporaryDirectory(prefix="deepshrink-ort-") as tmp:
        options = ort.SessionOptions()
        options.optimized_model_filepath = os.path.join(tmp, "optimized.onnx")
        options.log_severity_level = 3
        ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        graph = onnx.load(options.optimized_model_filepath).graph
    return dict(sorted(Counter(node.op_type for node in graph.node).items()))


def _session(source: Source, threads: int) -> Any:
    return session(source, threads=threads) if isinstance(source, (str, os.PathLike)) else source


#: ONNX tensor type names of graph inputs → the NumPy dtype fed to them.
_NUMPY_TYPES = {
    "tensor(float)": np.float32, "tensor(double)": np.float64, "tensor(float16)": np.float16,
    "tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(int16)": np.int16,
    "tensor(int8)": np.int8, "tensor(uint8)": np.uint8, "tensor(bool)": np.bool_,
}  # fmt: skip


def _array(value: Any) -> np.ndarray:
    return value.detach().cpu().numpy() if isinstance(value, Tensor) else np.asarray(value)


def feed(inputs: Any, graph_inputs: Sequence[tuple[str, str]]) -> dict[str, np.ndarray]:
    """ONNX Runtime's input dict for ``inputs`` (a tensor/array, a tuple of them in the graph's
    input order, or a dict by input name), each cast to its graph input's type.

    ``graph_inputs`` are ``(name, type)`` pairs such as ``("input_ids", "tensor(int64)")``.
    """
    names = [name for name, _ in graph_inputs]
    if isinstance(inputs, Mapping):
        missing = [name for name in names if name not in inputs]
        if missing:
            raise ConfigError(f"the ONNX model needs inputs {names}; missing {missing} in the "
                              f"given dict of {sorted(inputs)}")  # fmt: skip
        values = [inputs[name] for name in names]
    elif isinstance(inputs, (tuple, list)):
        if len(inputs) != len(names):
            raise ConfigError(f"the ONNX model takes {len(names)} inputs {names}; got a "
                              f"{type(inputs).__name__} of {len(inputs)}")  # fmt: skip
        values = list(inputs)
    else:
        if len(names) != 1:
            raise ConfigError(f"the ONNX model takes {len(names)} inputs {names}; give a tuple "
                              "or a dict of them")  # fmt: skip
        values = [inputs]
    types = [_NUMPY_TYPES.get(kind) for _, kind in graph_inputs]
    arrays = [_array(value) for value in values]
    return {name: a if t is None else a.astype(t, copy=False)
            for name, a, t in zip(names, arrays, types, strict=True)}  # fmt: skip


def _graph_inputs(sess: Any) -> list[tuple[str, str]]:
    return [(value.name, value.type) for value in sess.get_inputs()]


def predict(source: Source, x: Any, *, threads: int = 1) -> np.ndarray:
    """The first output of the ONNX model for the batch ``x`` (a tensor or array; a tuple or
    dict of them for a model with several inputs), as a NumPy array."""
    sess = _session(source, threads)
    return sess.run(None, feed(x, _graph_inputs(sess)))[0]


def forward(source: Source, *, threads: int = 1) -> Callable[[Any], Tensor]:
    """The ONNX model as a function of a batch's inputs returning its first output as a float
    tensor (what :func:`deepshrink.eval.agreement.predicted_classes` takes)."""
    sess = _session(source, threads)
    return lambda inputs: torch.from_numpy(predict(sess, inputs)).float()


def runner(source: Source, inputs: Any, *, threads: int = 1) -> Callable[[], Any]:
    """A call that runs the ONNX model once on ``inputs`` (converted once, up front), for
    side-by-side timing (:func:`deepshrink.eval.timing.compare_calls`). With one intra-op thread
    ONNX Runtime computes in the calling thread, so thread CPU time counts all of it."""
    sess = _session(source, threads)
    fed = feed(inputs, _graph_inputs(sess))
    return lambda: sess.run(None, fed)


def evaluate_onnx(
    source: Source, dataset: Any, *, batch_size: int = 256, threads: int = 1
) -> EvalResult:
    """Top-1/top-5 accuracy and cross-entropy of the ONNX classifier over ``dataset``.

    ``dataset`` is a dataset of ``(x, y)`` samples or an iterable of batches (``(inputs,
    labels)`` pairs or dicts with ``labels``); per-token logits ``(N, T, C)`` go with labels
    ``(N, T)``, and labels equal to -100 are not scored.
    """
    return score(forward(source, threads=threads), dataset, batch_size=batch_size,
                 runtime="ONNX Runtime")  # fmt: skip


def score(
    forward_fn: Callable[[Any], Tensor], dataset: Any, *, batch_size: int = 256,
    runtime: str = "the runtime",
) -> EvalResult:  # fmt: skip
    """Top-1/top-5 accuracy and cross-entropy of ``forward_fn(inputs) -> logits`` over
    ``dataset`` (as :func:`evaluate_onnx`), for any runtime's exported file."""
    correct1 = correct5 = count = 0
    loss_sum = 0.0
    for batch in ticking(batches(dataset, batch_size), f"evaluating in {runtime}", logger):
        inputs, labels = inputs_and_labels(batch)
        if not isinstance(labels, Tensor):
            raise ConfigError(f"evaluating in {runtime} needs labelled batches: (inputs, labels) "
                              "pairs or dicts with a 'labels' tensor")  # fmt: skip
        logits, y = _scored(forward_fn(inputs), labels)
        loss_sum += float(F.cross_entropy(logits, y, reduction="sum"))
        hits = logits.topk(min(5, logits.shape[1]), dim=1).indices == y.unsqueeze(1)
        correct1 += int(hits[:, 0].sum())
        correct5 += int(hits.any(dim=1).sum())
        count += int(y.numel())
    if count == 0:
        raise ConfigError("cannot evaluate on an empty dataset")
    return EvalResult(correct1 / count, correct5 / count, loss_sum / count, count)


def _scored(logits: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """Logits ``(M, C)`` and labels ``(M,)``: per-token outputs flattened, -100 left out."""
    if logits.ndim == labels.ndim + 1 and logits.shape[:-1] == labels.shape:
        flat, y = logits.reshape(-1, logits.shape[-1]), labels.reshape(-1).long()
        keep = y != -100
        return flat[keep], y[keep]
    raise ConfigError(
        f"the ONNX model's output {tuple(logits.shape)} does not fit the labels "
        f"{tuple(labels.shape)}: expected logits (N, C) with labels (N,) or (N, T, C) with (N, T)"
    )


def compare_latency(
    sources: Mapping[str, Source],
    input_shape: Sequence[int] | None = None,
    *,
    batch_sizes: Sequence[int] = (1, 32),
    threads: int = 1,
    rounds: int = 15,
    block_seconds: float = 0.2,
    warmup: int = 3,
) -> dict[str, dict[int, Latency]]:
    """Per-call latency of each model at each batch size, timed in interleaved blocks.

    ``input_shape`` is one sample's shape for a model with one float input; inputs are random
    uniform values (seeded). With ``None`` each graph input gets the graph's own sample shape
    and type (random floats; zeros for integer inputs such as token ids, a valid id).
    """
    if rounds < 1 or block_seconds <= 0:
        raise ConfigError(f"rounds must be ≥ 1 and block_seconds > 0, got {rounds}, "
                          f"{block_seconds}")  # fmt: skip
    sessions = {name: _session(source, threads) for name, source in sources.items()}
    result: dict[str, dict[int, Latency]] = {name: {} for name in sessions}
    generator = np.random.default_rng(0)
    first = next(iter(sessions.values()))
    for size in batch_sizes:
        x = _random_inputs(first, input_shape, size, generator)
        calls = {n: _calls_per_block(s, x, warmup, block_seconds) for n, s in sessions.items()}
        times: dict[str, list[float]] = {name: [] for name in sessions}
        for _ in range(rounds):
            for name, sess in sessions.items():
                times[name].append(_block(sess, x, calls[name]))
        for name, values in times.items():
            result[name][size] = _latency(values, calls[name], size, threads)
    return result


def _random_inputs(
    sess: Any, input_shape: Sequence[int] | None, size: int, generator: np.random.Generator
) -> Any:
    """A batch of ``size`` for ``sess``: floats of ``input_shape``, or per graph input."""
    if input_shape is not None:
        return generator.random((size, *input_shape), dtype=np.float32)
    arrays = {}
    for value in sess.get_inputs():
        sample = list(value.shape[1:])
        if not all(isinstance(d, int) for d in sample):
            raise ConfigError(f"input {value.name!r} has a dynamic axis {value.shape}; give "
                              "compare_latency an input_shape")  # fmt: skip
        kind = _NUMPY_TYPES.get(value.type, np.float32)
        if np.issubdtype(kind, np.floating):
            arrays[value.name] = generator.random((size, *sample)).astype(kind)
        else:
            arrays[value.name] = np.zeros((size, *sample), dtype=kind)
    return arrays


def _block(sess: Any, x: Any, calls: int) -> float:
    inputs = feed(x, _graph_inputs(sess))
    started = time.perf_counter()
    for _ in range(calls):
        sess.run(None, inputs)
    return (time.perf_counter() - started) / calls


def _calls_per_block(sess: Any, x: Any, warmup: int, block_seconds: float) -> int:
    single = min(_block(sess, x, 1) for _ in range(max(1, warmup)))
    return max(1, int(block_seconds / max(single, 1e-6)))


def _latency(values: list[float], calls: int, size: int, threads: int) -> Latency:
    quartiles = statistics.quantiles(values, n=4) if len(values) > 1 else [values[0]] * 3
    return Latency(
        median_seconds=statistics.median(values),
        iqr_seconds=quartiles[2] - quartiles[0],
        runs=len(values),
        calls_per_run=calls,
        batch_size=size,
        threads=threads,
    )
