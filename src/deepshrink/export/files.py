"""An exported file run in its own runtime, whatever its format: ONNX Runtime for ``.onnx``,
the LiteRT interpreter for ``.tflite``.

Reports, recipe stages and the command line use these to score a delivered file, compare its
predictions with PyTorch's and time it side by side against a reference file of the same format
(:func:`deepshrink.eval.timing.compare_calls`). Each runtime is imported on first use.

>>> runtime_name("m.onnx"), runtime_name("m.tflite")
('ONNX Runtime', 'LiteRT')
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from deepshrink.errors import ConfigError

__all__ = ["SUFFIXES", "evaluate_file", "file_calls", "file_forward", "runtime_name",
           "timed_batch_sizes"]  # fmt: skip

#: The exported formats and their runtimes.
SUFFIXES = {".onnx": "ONNX Runtime", ".tflite": "LiteRT"}

PathLike = str | os.PathLike[str]


def _suffix(path: PathLike) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in SUFFIXES:
        raise ConfigError(f"{path} is not an exported model; give one of {', '.join(SUFFIXES)}")
    return suffix


def runtime_name(path: PathLike) -> str:
    """The runtime that serves ``path``: "ONNX Runtime" or "LiteRT"."""
    return SUFFIXES[_suffix(path)]


def evaluate_file(path: PathLike, dataset: Any, *, threads: int = 1) -> Any:
    """Top-1/top-5 accuracy, loss and sample count of the file in its runtime."""
    if _suffix(path) == ".tflite":
        from deepshrink.export.tflite import evaluate_tflite

        return evaluate_tflite(path, dataset, threads=threads)
    from deepshrink.export.runtime import evaluate_onnx

    return evaluate_onnx(path, dataset, threads=threads)


def file_forward(path: PathLike, *, threads: int = 1) -> Callable[[Any], Tensor]:
    """The file as a ``forward(inputs) -> logits`` function (float tensor)."""
    if _suffix(path) == ".tflite":
        from deepshrink.export.tflite import interpreter, predict_tflite

        runner = interpreter(path, threads=threads)
        return lambda x: torch.from_numpy(predict_tflite(runner, x)).float()
    from deepshrink.export.runtime import forward

    return forward(path, threads=threads)


def timed_batch_sizes(path: PathLike, wanted: Sequence[int]) -> tuple[int, ...]:
    """The batch sizes of ``wanted`` the file can be timed at: all for ONNX (dynamic batch
    axis); for TFLite only the file's fixed batch size."""
    if _suffix(path) == ".tflite":
        from deepshrink.export.tflite import interpreter

        shape = interpreter(path).get_input_details()[0]["shape"]
        fixed = int(shape[0]) if len(shape) else 1
        return tuple(size for size in wanted if size == fixed)
    return tuple(wanted)


def file_calls(path: PathLike, example: Any) -> Callable[[int], Callable[[], Any]]:
    """``calls(size)`` → one inference of a batch of ``size`` in the file's runtime on one
    thread: ``example`` (one batch the model takes) cut or tiled for ONNX; a fixed random input
    for TFLite (its batch size is fixed)."""
    if _suffix(path) == ".tflite":
        from deepshrink.export.tflite import interpreter, runner

        session = interpreter(path, threads=1)
        return lambda size: runner(session, size, threads=1)
    from deepshrink.eval._inputs import with_batch_size
    from deepshrink.export.runtime import runner as onnx_runner
    from deepshrink.export.runtime import session as onnx_session

    sess = onnx_session(path, threads=1)
    return lambda size: onnx_runner(sess, with_batch_size(example, size))
