"""Run sparse dense layers as sparse matrix products, where this machine measures it faster.

An unstructured-pruned ``nn.Linear`` still multiplies every zero. Stored as a CSR matrix, its
product skips them: on an AVX2 CPU a 90 %-sparse LeNet-300-100 runs faster at batch 64 and
*slower* at batch 1 (the sparse kernel's fixed cost). So nothing is converted on faith:
:func:`sparse_linear_` times each candidate layer both ways on its own input, side by side in one
process (:func:`deepshrink.eval.timing.compare_speed`: alternating, thread CPU time, a 95 %
bootstrap interval), and swaps in :class:`SparseLinear` only where the interval says faster by
more than the noise margin. Every layer considered is reported, converted or not, with its
measured ratio.

The result is for inference (``torch.no_grad``) on this CPU and this batch size. It changes
the module tree, so save checkpoints before converting; ``SparseLinear.dense()`` gives the
``nn.Linear`` back.

>>> import torch
>>> from torch import nn
>>> layer = nn.Linear(64, 32)
>>> with torch.no_grad():
...     layer.weight[torch.rand(32, 64) < 0.9] = 0
>>> sparse = SparseLinear.from_linear(layer)
>>> x = torch.rand(8, 64)
>>> torch.allclose(sparse(x), layer(x), atol=1e-6)
True
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor, nn

from deepshrink.errors import ConfigError
from deepshrink.eval._inputs import layer_inputs

__all__ = ["SparseDecision", "SparseLinear", "sparse_linear_"]

logger = logging.getLogger(__name__)


class SparseLinear(nn.Module):
    """``y = x Wᵀ + b`` with ``W`` held as a CSR matrix (inference only; no gradients)."""

    def __init__(self, weight: Tensor, bias: Tensor | None) -> None:
        super().__init__()
        self.out_features, self.in_features = weight.shape
        with warnings.catch_warnings():  # torch calls its CSR support beta, once per process
            warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
            self.weight_csr = weight.detach().to_sparse_csr()
        self.bias = None if bias is None else nn.Parameter(bias.detach().clone(), False)

    @classmethod
    def from_linear(cls, layer: nn.Linear) -> SparseLinear:
        return cls(layer.weight, layer.bias)

    def forward(self, x: Tensor) -> Tensor:
        shape = x.shape
        flat = x.reshape(-1, self.in_features)
        out = torch.sparse.mm(self.weight_csr, flat.t().contiguous()).t()
        if self.bias is not None:
            out = out + self.bias
        return out.reshape(*shape[:-1], self.out_features)

    def dense(self) -> nn.Linear:
        """The equivalent ``nn.Linear``."""
        layer = nn.Linear(self.in_features, self.out_features, bias=self.bias is not None)
        with torch.no_grad():
            layer.weight.copy_(self.weight_csr.to_dense())
            if self.bias is not None:
                layer.bias.copy_(self.bias)
        return layer

    def extra_repr(self) -> str:
        nnz = self.weight_csr.values().numel()
        total = self.in_features * self.out_features
        return f"in_features={self.in_features}, out_features={self.out_features}, " \
               f"nonzero={nnz} of {total}"  # fmt: skip


@dataclass(frozen=True)
class SparseDecision:
    """One layer considered: its sparsity, the measured CSR-vs-dense speed and the outcome."""

    layer: str
    sparsity: float
    speed: str  # the measurement's text, e.g. "1.8× faster (1.7–1.9)", or why it was not timed
    converted: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _timed(dense: nn.Linear, sparse: SparseLinear, x: Tensor, rounds: int) -> Any:
    """The sparse layer against the dense one on ``x``, one thread, alternating, thread CPU
    time (:func:`~deepshrink.eval.timing.compare_speed`)."""
    from deepshrink.eval.timing import compare_speed

    size = x.shape[0]
    return compare_speed(dense, sparse, x, batch_sizes=(size,), rounds=rounds)[size]


def sparse_linear_(
    model: nn.Module,
    example_inputs: Any,
    *,
    min_sparsity: float = 0.5,
    rounds: int = 15,
    timer: Callable[[nn.Linear, SparseLinear, Tensor, int], Any] | None = None,
) -> list[SparseDecision]:
    """Replace each ``nn.Linear`` of ``model`` with at least ``min_sparsity`` zeros by a
    :class:`SparseLinear` where this machine runs it measurably faster on the input it sees for
    ``example_inputs`` (one batch at the batch size you serve). Returns every decision; logs the
    converted and the kept layers with their measured speed. Raises :class:`ConfigError`, with
    each layer's measurement, when no layer qualifies (the model is then unchanged).

    ``timer(dense, sparse, x, rounds)`` returns a :class:`~deepshrink.eval.timing.Speed`
    (default: side by side, thread CPU time).
    """
    if not 0 <= min_sparsity < 1:
        raise ConfigError(f"min_sparsity must be in [0, 1), got {min_sparsity}")
    if rounds < 3:
        raise ConfigError(f"rounds must be at least 3, got {rounds}")
    linears = {n: m for n, m in model.named_modules() if type(m) is nn.Linear}
    if not linears:
        raise ConfigError(
            f"{type(model).__name__} has no nn.Linear layer; sparse execution covers dense "
            "(fully connected) layers only"
        )
    decisions: list[SparseDecision] = []
    sparsities = {n: float((m.weight == 0).float().mean()) for n, m in linears.items()}
    candidates = [n for n, s in sparsities.items() if s >= min_sparsity]
    chosen = {name: linears[name] for name in candidates}
    inputs = layer_inputs(model, chosen, example_inputs) if candidates else {}
    measure = timer or _timed
    swaps: dict[str, SparseLinear] = {}  # applied once every decision stands
    for name, layer in linears.items():
        if name not in candidates:
            text = f"not timed: {sparsities[name]:.1%} zeros, below min_sparsity {min_sparsity:.0%}"
            decisions.append(SparseDecision(name, sparsities[name], text, False))
            continue
        if name not in inputs:
            text = "not timed: the example does not reach it"
            decisions.append(SparseDecision(name, sparsities[name], text, False))
            continue
        sparse = SparseLinear.from_linear(layer)
        speed = measure(layer, sparse, inputs[name], rounds)
        faster = speed.verdict == "faster"
        decisions.append(SparseDecision(name, sparsities[name], speed.text(), faster))
        if faster:
            swaps[name] = sparse
    _say(decisions)
    for name, sparse in swaps.items():
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, child, sparse)
    return decisions


def _say(decisions: list[SparseDecision]) -> None:
    for decision in decisions:
        logger.info("%s (%.1f%% zeros): CSR vs dense %s -> %s", decision.layer,
                    100 * decision.sparsity, decision.speed,
                    "sparse" if decision.converted else "kept dense")  # fmt: skip
    if not any(d.converted for d in decisions):
        raise ConfigError(
            "no layer runs measurably faster as a sparse product at this batch size on this "
            "machine, so the model is left as it was ("
            + "; ".join(f"{d.layer}: {d.speed}" for d in decisions)
            + "); serve the dense model, or try the batch size you serve, more zeros, or "
            "channel pruning, which removes whole rows"
        )
