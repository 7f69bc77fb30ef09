"""Oracles of the contract suite and the classification of a cell's outcome.

A cell runs one capability on one garden model. It ends in one of:

* ``WORKS``: it returned and every oracle held;
* ``CLEAN REFUSAL``: a :class:`deepshrink.errors.DeepshrinkError` whose message names a layer,
  a layer type or an operation of the model;
* failures: ``SILENT NO-OP`` (returned, nothing changed, or weights left untouched without a
  word in the method's coverage record), ``WRONG RESULT`` (an oracle failed, a tie broke),
  ``VAGUE REFUSAL`` (a deepshrink error naming no layer or op), ``FOREIGN EXCEPTION`` (any
  other exception: a bug).
"""

from __future__ import annotations

import re
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from deepshrink.errors import DeepshrinkError
from deepshrink.graph.coverage import coverage_of
from deepshrink.graph.io import call, logits_of, map_tensors, split

WORKS, REFUSED = "WORKS", "CLEAN REFUSAL"
SILENT, WRONG, VAGUE = "SILENT NO-OP", "WRONG RESULT", "VAGUE REFUSAL"
FOREIGN = "FOREIGN EXCEPTION"
PASSING = (WORKS, REFUSED)
#: Operations a refusal may name instead of a layer (autograd / ATen / ONNX spellings).
_OPS = re.compile(r"aten::\w+|\w+Backward\d*|\b(Addmm|Bmm|MatMul|Gather|Permute|Reshape|"
                  r"Transpose|ConstantPadNd|LayerNorm|Softmax|ScatterND)\b")  # fmt: skip


@dataclass(frozen=True)
class Outcome:
    """The class of a cell's outcome and one line saying why."""

    kind: str
    detail: str


class Verdict(Exception):
    """Raised by an oracle: the cell ends as ``kind`` (a failure) with ``detail``."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind, self.detail = kind, detail


def check(condition: bool, kind: str, detail: str) -> None:
    """Raise :class:`Verdict` ``(kind, detail)`` unless ``condition``."""
    if not condition:
        raise Verdict(kind, detail)


def one_line(text: str, limit: int = 240) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _where(error: BaseException) -> str:
    """``file:line`` of the innermost deepshrink frame (and the innermost frame when other)."""
    frames = traceback.extract_tb(error.__traceback__)
    ours = [f for f in frames if "/src/deepshrink/" in f.filename]
    last = frames[-1] if frames else None
    spots = []
    for frame in (ours[-1] if ours else None, last):
        if frame is not None:
            name = frame.filename.split("/src/")[-1].split("site-packages/")[-1]
            spot = f"{name}:{frame.lineno}"
            if spot not in spots:
                spots.append(spot)
    return " via ".join(reversed(spots)) if spots else "?"


def names_layer_or_op(message: str, model: nn.Module | None) -> bool:
    """Whether ``message`` names a layer of ``model`` (by name or type) or an operation.

    The model's own class does not count: "could not trace BertModel" names no layer."""
    if _OPS.search(message):
        return True
    if model is None:
        return False
    for name, module in model.named_modules():
        if not name:  # the model's own class names no layer
            continue
        if re.search(rf"(?<![\w.]){re.escape(name)}\b", message):
            return True
        if re.search(rf"\b{re.escape(type(module).__name__)}\b", message):
            return True
    return False


def classify(run: Callable[[], str], model_of: Callable[[], nn.Module | None]) -> Outcome:
    """Run a cell and classify what happened (see the module docstring)."""
    try:
        return Outcome(WORKS, one_line(run()))
    except Verdict as verdict:
        return Outcome(verdict.kind, one_line(verdict.detail))
    except DeepshrinkError as error:
        text = f"{type(error).__name__}: {one_line(str(error), 400)}"
        kind = REFUSED if names_layer_or_op(str(error), model_of()) else VAGUE
        return Outcome(kind, text if kind == REFUSED else f"{text} ({_where(error)})")
    except Exception as error:  # noqa: BLE001 - a foreign exception is a cell's outcome
        text = one_line(f"{type(error).__name__}: {error}", 160)
        return Outcome(FOREIGN, f"{text} ({_where(error)})")


# ---- running models ----


@torch.no_grad()
def predict(model: nn.Module, example: Any) -> Tensor:
    """The model's logits on ``example`` in eval mode."""
    model.eval()
    return logits_of(call(model, example)).detach().clone()


def params(model: nn.Module) -> int:
    """Parameters, tied ones counted once."""
    return sum(p.numel() for p in model.parameters())


def runs_like(model: nn.Module, example: Any, reference: Tensor) -> Tensor:
    """Logits of ``model``, checked finite and shaped like ``reference``."""
    out = predict(model, example)
    check(out.shape == reference.shape, WRONG, f"output shape {tuple(out.shape)} after the "
          f"method, {tuple(reference.shape)} before")  # fmt: skip
    check(bool(torch.isfinite(out).all()), WRONG, "output not finite after the method")
    return out


def relative_error(value: Tensor | np.ndarray, reference: Tensor) -> float:
    value = torch.as_tensor(np.asarray(value), dtype=torch.float64)
    reference = reference.to(torch.float64)
    return float((value - reference).norm() / reference.norm().clamp_min(1e-12))


# ---- ties and weights ----


def tie_groups(model: nn.Module) -> list[list[str]]:
    """Names of parameters that are one tensor, per group of two or more."""
    groups: dict[int, list[str]] = {}
    for name, param in model.named_parameters(remove_duplicate=False):
        groups.setdefault(id(param), []).append(name)
    return [names for names in groups.values() if len(names) > 1]


def resolve(model: nn.Module, name: str) -> Any:
    """``model.a.b.weight`` for ``"a.b.weight"``, or ``None`` when the path is gone."""
    value: Any = model
    for part in name.split("."):
        value = getattr(value, part, None)
        if value is None:
            return None
    return value


def _holders(model: nn.Module, name: str) -> frozenset[int]:
    """Ids of the parameters that now carry parameter ``name`` in its module (``weight``, or
    what replaced it, e.g. k-means' ``weight_centroids``)."""
    owner, _, attr = name.rpartition(".")
    module = resolve(model, owner) if owner else model
    if not isinstance(module, nn.Module):
        return frozenset()
    return frozenset(id(p) for key, p in module.named_parameters(recurse=False)
                     if key.startswith(attr))  # fmt: skip


def check_ties(model: nn.Module, groups: list[list[str]], when: str) -> None:
    """Every group of ``groups`` still one tensor in ``model``: the same storage, or (while a
    method is pending, e.g. k-means) the very same parameters in place of it."""
    for names in groups:
        tensors = [resolve(model, name) for name in names]
        ok = all(isinstance(t, Tensor) for t in tensors) and len(
            {t.untyped_storage().data_ptr() for t in tensors}) == 1  # fmt: skip
        holders = {_holders(model, name) for name in names}
        ok = ok or (len(holders) == 1 and bool(next(iter(holders))))
        check(ok, WRONG, f"tie broken {when}: {' and '.join(names)} are no longer one tensor")


def weight_names(model: nn.Module) -> dict[str, Tensor]:
    """Weight matrices (``*weight*`` parameters with 2+ dims), tied ones once, cloned."""
    return {name: p.detach().clone() for name, p in model.named_parameters()
            if "weight" in name.rsplit(".", 1)[-1] and p.ndim >= 2}  # fmt: skip


def changed_weights(model: nn.Module, before: dict[str, Tensor], types: dict[str, type]) -> set:
    """Names in ``before`` whose tensor changed value or shape, is gone, or whose module was
    replaced (``types``: module name → type before)."""
    changed = set()
    for name, old in before.items():
        module_name = name.rsplit(".", 1)[0] if "." in name else ""
        now = resolve(model, name)
        replaced = type(resolve(model, module_name) if module_name else model) is not types.get(
            module_name)  # fmt: skip
        same = isinstance(now, Tensor) and now.shape == old.shape and torch.equal(now.detach(), old)
        if replaced or not same:
            changed.add(name)
    return changed


def module_types(model: nn.Module) -> dict[str, type]:
    return {name: type(module) for name, module in model.named_modules()}


def _reported(name: str, keys: set[str]) -> bool:
    parts = name.split(".")
    prefixes = {
        ".".join(parts[:i]) for i in range(1, len(parts) + 1)
    }  # "" (the model) is no reason
    return name in keys or bool(prefixes & keys)


def check_accounted(model: nn.Module, before: dict[str, Tensor], changed: set, method: str) -> str:
    """Every weight matrix changed, or named with a reason in the model's coverage record.

    Returns a short coverage note; raises :class:`Verdict` (SILENT NO-OP) otherwise."""
    total = sum(t.numel() for t in before.values())
    check(bool(changed), SILENT, f"{method} returned normally and changed no weight")
    keys: set[str] = set()
    for record in coverage_of(model):
        keys |= set(record.changed) | set(record.skipped)
    silent = [name for name in before if name not in changed and not _reported(name, keys)]
    share = sum(before[name].numel() for name in silent) / total
    check(not silent, SILENT, f"{method} left {len(silent)} weight tensors ({share:.0%} of "
          f"weights) untouched with no reason recorded: {', '.join(silent[:4])}")  # fmt: skip
    covered = sum(before[name].numel() for name in changed) / total
    return f"{covered:.0%} of weights changed"


# ---- ONNX Runtime ----

QUANT_OPS = {"QuantizeLinear", "DequantizeLinear", "QLinearConv", "QLinearMatMul",
             "MatMulInteger", "ConvInteger", "DynamicQuantizeLinear", "DynamicQuantizeLSTM",
             "QAttention", "QGemm", "DynamicQuantizeMatMul"}  # fmt: skip


def ort_outputs(path: Path, example: Any) -> tuple[list[np.ndarray], set[str]]:
    """Run the ONNX file on ``example`` in ONNX Runtime; its outputs and its op types."""
    import onnx
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    args, kwargs = split(map_tensors(example, lambda t: t))
    if kwargs and set(names) <= set(kwargs):
        feed = {name: kwargs[name].numpy() for name in names}
    else:
        values = list(args) + list(kwargs.values())
        check(len(values) >= len(names), WRONG, f"ONNX graph wants {len(names)} inputs "
              f"{names}, the model takes {len(values)}")  # fmt: skip
        feed = {name: value.numpy() for name, value in zip(names, values, strict=False)}
    ops = {node.op_type for node in onnx.load(str(path)).graph.node}
    try:
        return session.run(None, feed), ops
    except Exception as error:  # noqa: BLE001 - ONNX Runtime's errors are the graph's fault
        raise Verdict(WRONG, f"ONNX Runtime cannot run the exported file: "
                      f"{one_line(str(error), 160)}") from error  # fmt: skip


def matching_output(outputs: list[np.ndarray], reference: Tensor) -> np.ndarray:
    """The first ONNX output shaped like the PyTorch logits."""
    for value in outputs:
        if tuple(value.shape) == tuple(reference.shape):
            return value
    shapes = [tuple(v.shape) for v in outputs]
    raise Verdict(WRONG, f"no ONNX output shaped like the logits {tuple(reference.shape)}: "
                  f"{shapes}")  # fmt: skip
