"""Parameter, non-zero and multiply-accumulate (MAC) counts.

MACs come from :class:`torch.utils.flop_counter.FlopCounterMode`, which counts the FLOPs of the
matrix-product ops (linear, convolution, matmul/bmm, attention) as 2 per multiply-accumulate;
element-wise ops (bias add, activations, pooling, normalisation) count 0. MACs = FLOPs / 2.

For the per-layer breakdown we do not use ``get_flop_counts()``: it keys modules by a type-based
name (``"Sequential.0"``), counts every op in *all* enclosing modules (inclusive totals), and names
a shared module after only one of its paths. Instead forward hooks on every module keep a call
stack and, at each module boundary, credit the FLOPs counted since the previous boundary to the
innermost running module. That is exact and exclusive: ops in a parent's own ``forward`` go to
the parent, ops in a child to the child, and the values sum to :func:`count_macs`.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize
from torch.utils.flop_counter import FlopCounterMode

from deepshrink.eval._inputs import as_example, inference, on_model_device
from deepshrink.graph.io import call

__all__ = ["count_macs", "count_nonzero", "count_parameters", "per_layer_macs", "tensor_key"]


def tensor_key(tensor: Tensor) -> Hashable:
    """What makes two tensors the same stored values: storage, offset, shape and strides.

    Tied parameters (GPT-2's ``lm_head.weight`` and ``wte.weight``) are one ``Parameter`` or two
    ``Parameter`` objects over one storage; both give one key.
    """
    try:
        pointer = tensor.untyped_storage().data_ptr()
    except (RuntimeError, NotImplementedError):  # tensors without storage (meta, subclasses)
        pointer = 0
    if pointer == 0:
        return ("object", id(tensor))
    return (str(tensor.device), pointer, tensor.storage_offset(), tuple(tensor.shape),
            tensor.stride())  # fmt: skip


def count_parameters(model: nn.Module) -> int:
    """Number of parameter elements; a parameter shared by several modules, or two parameters
    over the same storage (tied weights), count once.

    >>> count_parameters(nn.Linear(4, 3))
    15
    """
    unique = {tensor_key(p): p.numel() for p in model.parameters()}
    return sum(unique.values())


def count_nonzero(model: nn.Module) -> int:
    """Non-zero parameter elements, each shared parameter once, of the *effective* weights.

    A module pruned with ``torch.nn.utils.prune`` holds ``weight_orig`` (the parameter) and
    ``weight_mask`` (a buffer); its ``weight`` attribute (orig × mask) is counted instead. Tensors
    under ``torch.nn.utils.parametrize`` are counted as the module computes them.

    >>> layer = nn.Linear(4, 3)
    >>> with torch.no_grad():
    ...     layer.weight[0] = 0
    >>> count_nonzero(layer)
    11
    """
    with torch.no_grad():
        return sum(int(torch.count_nonzero(t)) for t in _effective_tensors(model))


def _effective_tensors(model: nn.Module) -> Iterator[Tensor]:
    seen: set[Hashable] = set()
    for module in model.modules():
        if parametrize.is_parametrized(module):
            for name, plist in module.parametrizations.items():  # type: ignore[union-attr]
                originals = [tensor_key(p) for p in plist.parameters()]
                if not seen.issuperset(originals):
                    seen.update(originals)
                    yield getattr(module, name)
        masks = {name for name, _ in module.named_buffers(recurse=False)}
        for name, parameter in module.named_parameters(recurse=False):
            if tensor_key(parameter) in seen:
                continue
            seen.add(tensor_key(parameter))
            effective = _masked(module, name, masks)
            yield parameter if effective is None else effective


def _masked(module: nn.Module, name: str, masks: set[str]) -> Tensor | None:
    """``module.<base>`` when ``name`` is ``<base>_orig`` next to a ``<base>_mask`` buffer."""
    if not name.endswith("_orig"):
        return None
    base = name[: -len("_orig")]
    effective = getattr(module, base, None)
    if f"{base}_mask" in masks and isinstance(effective, Tensor):
        return effective
    return None


def count_macs(model: nn.Module, example_inputs: Any) -> int:
    """Multiply-accumulates of one forward pass on ``example_inputs``, *at their batch size*.

    ``example_inputs`` is a tensor, a tuple of positional inputs or a dict of keyword inputs.

    The model runs once in eval mode without autograd; its train/eval flags are restored.
    Divide by the batch size for a per-sample figure (:func:`~deepshrink.eval.report` uses 1).

    >>> model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    >>> count_macs(model, torch.zeros(2, 1, 2, 2))  # 2 samples x 4 x 3
    24
    """
    inputs = on_model_device(as_example(example_inputs), model)
    counter = FlopCounterMode(display=False)
    with inference(model), counter:
        call(model, inputs)
    return counter.get_total_flops() // 2


def per_layer_macs(model: nn.Module, example_inputs: Any) -> dict[str, int]:
    """MACs of one forward pass per module name (``""`` is the root), exclusive of submodules.

    Only modules that ran counted ops appear, in the order they first ran; the values sum to
    :func:`count_macs`. A module shared under several names is listed under its first name.

    >>> model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    >>> per_layer_macs(model, torch.zeros(1, 4))
    {'0': 12, '2': 6}
    """
    names: dict[nn.Module, str] = {}
    for name, module in model.named_modules():
        names.setdefault(module, name)
    counter = FlopCounterMode(display=False)
    tally = _Tally(counter)
    handles = []
    for module, name in names.items():
        handles.append(module.register_forward_pre_hook(tally.enter(name)))
        handles.append(module.register_forward_hook(tally.leave(), always_call=True))
    inputs = on_model_device(as_example(example_inputs), model)
    try:
        with inference(model), counter:
            call(model, inputs)
    finally:
        for handle in handles:
            handle.remove()
    return {name: flops // 2 for name, flops in tally.flops.items() if flops > 0}


class _Tally:
    """A module call stack that credits counted FLOPs to the innermost running module."""

    def __init__(self, counter: FlopCounterMode) -> None:
        self.counter = counter
        self.stack: list[str] = []
        self.flops: dict[str, int] = {}
        self.last = 0

    def credit(self) -> None:
        total = self.counter.get_total_flops()
        if self.stack:
            self.flops[self.stack[-1]] += total - self.last
        self.last = total

    def enter(self, name: str) -> Any:
        def hook(module: nn.Module, args: Any) -> None:
            self.credit()
            self.flops.setdefault(name, 0)
            self.stack.append(name)

        return hook

    def leave(self) -> Any:
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            self.credit()
            self.stack.pop()

        return hook
