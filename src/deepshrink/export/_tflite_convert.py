"""PyTorch → TFLite flatbuffer (``litert-torch``) and its quantization (``ai-edge-quantizer``).

The float file comes from ``litert_torch.convert``; every other precision is a rewrite of that
file by the AI Edge Quantizer, so all modes share one conversion:

- ``fp16``: weights of fully connected and convolution layers stored as float16 with a
  ``DEQUANTIZE`` in front (float arithmetic, half the bytes);
- ``int8_dynamic``: int8 weights per output channel, activations quantized on the fly by the
  kernels (``dynamic_wi8_afp32``); with ``weight_bits=4`` int4 weights (two per byte);
- ``int8``: full-integer int8 (``static_wi8_ai8``): int8 weights per channel, int8 activations
  with ranges measured on calibration batches; inputs and outputs are int8 too.

The converter libraries print progress bars, C++ log lines and warnings when imported and run;
:func:`quiet` sends file descriptors 1 and 2 to a temporary file meanwhile and logs what was
written at debug level, so a user sees only deepshrink's own messages.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import tempfile
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch import nn

from deepshrink.errors import ConfigError

__all__ = ["INSTALL_HINT", "converter", "float_model", "quantized", "quiet", "runtime"]

logger = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'deepshrink[tflite]'"


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silence stdout/stderr (Python and C++), warnings and the converters' progress display,
    and undo a root logging handler that a converter library installs while imported."""
    os.environ.setdefault("LITERT_TORCH_SHOW_PROGRESS", "n")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    saved = []
    root_handlers, root_level = list(logging.root.handlers), logging.root.level
    disabled = logging.root.manager.disable
    logging.disable(logging.WARNING)  # the converters log through the root logger
    with tempfile.TemporaryFile(mode="w+b") as sink:
        try:
            for fd in (1, 2):
                saved.append((fd, os.dup(fd)))
                os.dup2(sink.fileno(), fd)
        except OSError:  # no real descriptors (an embedding host): warnings are still silenced
            pass
        try:
            with warnings.catch_warnings(), contextlib.redirect_stdout(None):
                warnings.simplefilter("ignore")
                yield
        finally:
            for stream in (sys.stdout, sys.stderr):
                with contextlib.suppress(Exception):
                    stream.flush()
            for fd, copy in saved:
                os.dup2(copy, fd)
                os.close(copy)
            for handler in [h for h in logging.root.handlers if h not in root_handlers]:
                logging.root.removeHandler(handler)  # a converter library's logging.basicConfig
            logging.root.setLevel(root_level)
            logging.disable(disabled)
            sink.seek(0)
            text = sink.read().decode(errors="replace").strip()
            if text:
                logger.debug("converter output:\n%s", text[-4000:])


def _missing(package: str) -> ConfigError:
    return ConfigError(f"TFLite export needs the {package} package: {INSTALL_HINT}")


def converter() -> tuple[Any, Any]:
    """The ``litert_torch`` and ``ai_edge_quantizer`` modules (imported quietly, once)."""
    try:
        with quiet():
            import ai_edge_quantizer.quantizer as aeq
            import litert_torch
    except ImportError:
        raise _missing("litert-torch") from None
    return litert_torch, aeq


def runtime() -> Any:
    """The LiteRT ``Interpreter`` class (``ai_edge_litert``)."""
    try:
        with quiet():
            from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        raise _missing("ai-edge-litert") from None
    return Interpreter


def float_model(model: nn.Module, args: tuple) -> bytes:
    """The fp32 flatbuffer of ``model`` called on ``args`` (fixed shapes, those of ``args``).

    A model the converter cannot lower raises :class:`ExportError` naming the op and the layer.
    """
    from deepshrink.export.onnx import ExportError, _first_line

    litert_torch, _ = converter()
    try:
        with quiet(), torch.no_grad():
            return bytes(litert_torch.convert(model, args).model_content())
    except Exception as exc:  # the converter raises many types for what it cannot lower
        logger.debug("litert-torch failed", exc_info=True)
        reason = _first_line(exc)
        op = _failed_op(exc)
        where = _layer_of(model, args, op) if op else None
        what = f"op {op} in layer {where}" if where else (f"op {op}" if op else "the model")
        raise ExportError(
            f"litert-torch cannot convert {what} of {type(model.model).__name__} to TFLite "
            f"({reason}); replace that layer, or export to ONNX instead"
        ) from None


def _failed_op(exc: BaseException) -> str | None:
    """The ``aten`` op named in the converter's error (``aten._linalg_svd.default``)."""
    text = ""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        text += str(exc) + "\n"
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    for pattern in (r"Lowering not found: (\S+)", r"target=torch\.ops\.(\S+?)\]?\("):
        found = re.search(pattern, text)
        if found:
            return found.group(1).rstrip("],")
    return None


def _layer_of(model: nn.Module, args: tuple, op: str) -> str | None:
    """The layer (``name (Type)``) whose forward calls ``op``, from ``torch.export``'s graph."""
    try:
        with quiet():
            program = torch.export.export(model, args)
            for graph in (program, program.run_decompositions()):
                for node in graph.graph.nodes:
                    if node.op == "call_function" and str(node.target) == op:
                        stack = list((node.meta.get("nn_module_stack") or {}).values())
                        if stack:
                            path, kind = stack[-1]
                            name = re.sub(r"^(L\['self'\]\.)?(model\.)?", "", str(path))
                            kind = getattr(kind, "__name__", str(kind).rsplit(".", 1)[-1])
                            return f"{name or 'forward'} ({kind.strip(chr(39))})"
    except Exception:  # naming the layer is a courtesy; the op alone still says what failed
        logger.debug("could not trace the model to name the layer", exc_info=True)
    return None


def _configure(q: Any, precision: str, weight_bits: int) -> None:
    """Give the quantizer ``q`` the recipe of ``precision`` for every supported op."""
    from ai_edge_quantizer import qtyping

    ops = qtyping.TFLOperationName.ALL_SUPPORTED
    if precision == "fp16":
        q.add_weight_only_config(".*", ops, 16, algorithm_key="float_casting")
    elif precision == "int8_dynamic":
        q.add_dynamic_config(".*", ops, weight_bits)
    else:
        q.add_static_config(".*", ops, activation_num_bits=8, weight_num_bits=weight_bits)


def quantized(
    fp32: bytes, precision: str, batches: list[tuple[np.ndarray, ...]] | None, weight_bits: int
) -> bytes:
    """``fp32`` rewritten at ``precision`` (``fp16``, ``int8_dynamic``, ``int8``)."""
    from deepshrink.export.onnx import ExportError, _first_line

    _, aeq = converter()
    try:
        with quiet():
            q = aeq.Quantizer(fp32)
            _configure(q, precision, weight_bits)
            calibration = None
            if q.need_calibration:
                calibration = _calibrated(q, fp32, batches or [])
            result = q.quantize(calibration, enable_progress_report=False)
            return bytes(result.quantized_model)
    except Exception as exc:
        logger.debug("ai-edge-quantizer failed", exc_info=True)
        raise ExportError(
            f"the AI Edge Quantizer could not write the model as {precision} TFLite: "
            f"{type(exc).__name__}: {_first_line(exc)}; export it as fp32 or in another mode"
        ) from None


def _calibrated(q: Any, fp32: bytes, batches: list[tuple[np.ndarray, ...]]) -> dict:
    """Activation ranges: the minimum and maximum over all calibration batches.

    The quantizer's own ``calibrate`` keeps a moving average of per-batch ranges (factor 0.95);
    on batches of one sample that is about the range of a typical sample, and outputs beyond it
    saturate (measured on an 8×8 digits CNN: logits cut from 13.4 to 8.6). The global range is
    what deepshrink's ONNX calibration (``minmax``) uses too.
    """
    from ai_edge_quantizer import calibrator
    from ai_edge_quantizer.utils import qsv_utils

    calib = calibrator.Calibrator(fp32, num_threads=1, qsv_update_func=qsv_utils.min_max_update)
    calib.calibrate(_signature_data(fp32, batches), q._recipe_manager)
    return calib.get_model_qsvs()


def _signature_data(fp32: bytes, batches: list[tuple[np.ndarray, ...]]) -> dict[str, list]:
    """Calibration batches keyed by the file's signature and input names."""
    interpreter = runtime()(model_content=fp32, num_threads=1)
    signatures = interpreter.get_signature_list()
    key = next(iter(signatures))
    names = sorted(signatures[key]["inputs"], key=_natural)
    return {key: [dict(zip(names, batch, strict=True)) for batch in batches]}


def _natural(name: str) -> tuple:
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name))
