"""Capabilities of the contract suite that compress: pruning, quantization, factorization.

A capability is ``run(spec, cell, tmp) -> detail``: it builds the model (kept on ``cell`` so that
a refusal can be checked against the model's layer names), calls the API as a user would, and
raises :class:`~garden_oracles.Verdict` when an oracle fails. The helpers here (``Cell``,
``finalize``, ``loss_of``, ...) are shared with ``garden_io``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from garden_models import Specimen
from garden_oracles import (
    SILENT,
    WRONG,
    changed_weights,
    check,
    check_accounted,
    check_ties,
    module_types,
    params,
    predict,
    relative_error,
    resolve,
    runs_like,
    tie_groups,
    weight_names,
)
from torch import Tensor, nn

import deepshrink as ds
import deepshrink.quantize as dq
from deepshrink.graph.coverage import coverage_of
from deepshrink.graph.io import call, inputs_and_labels, logits_of


class Cell:
    """What a capability is working on: its model (for checking refusals)."""

    model: nn.Module | None = None

    def build(self, spec: Specimen) -> tuple[nn.Module, Any, Tensor, list[list[str]]]:
        """A fresh model, its example inputs, its logits on them and its tie groups."""
        self.model = spec.build(0)
        example = spec.example()
        return self.model, example, predict(self.model, example), tie_groups(self.model)


Capability = Callable[[Specimen, Cell, Path], str]


def finalize(model: nn.Module) -> nn.Module:
    """Make every pending method permanent, as the README does (``ds.finalize_``, then the
    quantization finalizer while it is still a separate verb)."""
    ds.finalize_(model)
    quantized = getattr(dq, "finalize_", None)
    return quantized(model) if quantized not in (None, ds.finalize_) else model


def loss_of(model: nn.Module, batch: Any) -> Tensor:
    """Cross-entropy of a batch, per sample or per token."""
    inputs, labels = inputs_and_labels(batch)
    logits = logits_of(call(model, inputs))
    return F.cross_entropy(logits.flatten(0, -2), labels.flatten())


def mean_loss(model: nn.Module, batches: list[Any]) -> float:
    """Mean :func:`loss_of` over ``batches`` in eval mode."""
    model.eval()
    with torch.no_grad():
        return sum(float(loss_of(model, batch)) for batch in batches) / len(batches)


def plain_steps(model: nn.Module, batches: list[Any]) -> list[str]:
    """One SGD step per batch, as a user's own loop does; the names of the parameters moved."""
    start = {name: p.detach().clone() for name, p in model.named_parameters()}
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    model.train()
    for batch in batches:
        optimizer.zero_grad()
        loss_of(model, batch).backward()
        optimizer.step()
    return [n for n, p in model.named_parameters() if n in start and not torch.equal(p, start[n])]


# ---- pruning ----


def magnitude(scope: str) -> Capability:
    def run(spec: Specimen, cell: Cell, tmp: Path) -> str:
        model, example, ref, ties = cell.build(spec)
        before, types = weight_names(model), module_types(model)
        ds.prune_(model, ds.MagnitudePruning(sparsity=0.5, scope=scope))
        check_ties(model, ties, "after prune_")
        finalize(model)
        check_ties(model, ties, "after finalize_")
        runs_like(model, example, ref)
        changed = changed_weights(model, before, types)
        note = check_accounted(model, before, changed, "MagnitudePruning")
        zeros = {name: int((resolve(model, name) == 0).sum()) for name in changed}
        sizes = {name: before[name].numel() for name in changed}
        if scope == "layer":
            for name in changed:
                share = zeros[name] / sizes[name]
                check(abs(share - 0.5) <= 0.01 + 2 / sizes[name], WRONG,
                      f"{name}: sparsity {share:.3f}, asked 0.5 per layer")  # fmt: skip
        total = sum(zeros.values()) / sum(sizes.values())
        check(abs(total - 0.5) <= 0.01, WRONG, f"sparsity {total:.3f} on the pruned weights")
        return f"sparsity {total:.3f} on the pruned weights; {note}"

    return run


def _shrunk(model: nn.Module, before: int, method: str) -> str:
    after = params(model)
    check(after <= before, WRONG, f"{method}: the model grew, {before:,} → {after:,} parameters")
    check(after < before, SILENT, f"{method} returned normally and removed nothing")
    cut = 1 - after / before
    if cut < 0.1:
        skipped = [r for record in coverage_of(model) for r in record.skipped]
        check(bool(skipped), SILENT, f"{method} removed only {cut:.1%} of the parameters and "
              "recorded no reason for the rest")  # fmt: skip
    return f"params {before:,} → {after:,} (−{cut:.0%})"


def neuron(spec: Specimen, cell: Cell, tmp: Path) -> str:
    model, example, ref, ties = cell.build(spec)
    before = params(model)
    ds.prune_(model, ds.NeuronPruning(ratio=0.5), example_inputs=example)
    check_ties(model, ties, "after NeuronPruning")
    runs_like(model, example, ref)
    return _shrunk(model, before, "NeuronPruning")


def channel_prune(spec: Specimen, cell: Cell) -> tuple[nn.Module, Any, Tensor, str]:
    model, example, ref, ties = cell.build(spec)
    before = params(model)
    ds.prune_(model, ds.ChannelPruning(ratio=0.5), example_inputs=example)
    check_ties(model, ties, "after ChannelPruning")
    return model, example, runs_like(model, example, ref), _shrunk(model, before, "ChannelPruning")


def channel(spec: Specimen, cell: Cell, tmp: Path) -> str:
    return channel_prune(spec, cell)[3]


# ---- quantization and factorization ----


def _values_per_slice(weight: Tensor, levels: int) -> bool:
    """At most ``levels`` distinct values in the whole tensor, or in every slice of one axis."""
    flat = weight.detach()
    if flat.unique().numel() <= levels:
        return True
    for axis in range(flat.ndim):
        slices = flat.movedim(axis, 0).flatten(1)
        if all(row.unique().numel() <= levels for row in slices):
            return True
    return False


def codebook_ok(model: nn.Module, name: str, weight: Tensor) -> bool:
    """At most 16 distinct non-zero values per layer, or per gate of a recurrent or attention
    weight (``weight_ih``/``weight_hh`` of LSTM/GRU, ``in_proj_weight`` of attention)."""
    module = resolve(model, name.rsplit(".", 1)[0]) if "." in name else model
    gates = {nn.LSTM: 4, nn.GRU: 3, nn.MultiheadAttention: 3}.get(type(module), 1)
    if weight[weight != 0].unique().numel() <= 16:
        return True
    if gates == 1 or weight.shape[0] % gates:
        return False
    return all(c[c != 0].unique().numel() <= 16 for c in weight.chunk(gates))


def quantized(config: Any, per_slice: bool, calibration: bool = False) -> Capability:
    def run(spec: Specimen, cell: Cell, tmp: Path) -> str:
        model, example, ref, ties = cell.build(spec)
        before, types = weight_names(model), module_types(model)
        data = {"calibration": spec.batches()} if calibration else {}
        ds.quantize_(model, config, **data)
        check_ties(model, ties, f"after {type(config).__name__}")
        if calibration:  # QAT: fake-quantized forward, trained through
            out = runs_like(model, example, ref)
            check(not torch.equal(out, ref), SILENT, "outputs unchanged by fake quantization")
            error = relative_error(out, ref)
            check(error < 0.5, WRONG, f"fake-quantized outputs off by {error:.2f} (relative)")
            note = check_accounted(model, before, changed_weights(model, before, types), "QAT")
            return f"relative output error {error:.3f}; {note}"
        finalize(model)
        check_ties(model, ties, "after finalize_")
        runs_like(model, example, ref)
        changed = changed_weights(model, before, types)
        note = check_accounted(model, before, changed, type(config).__name__)
        for name in changed:
            weight = resolve(model, name)
            if isinstance(weight, Tensor):
                ok = _values_per_slice(weight, 16) if per_slice else codebook_ok(
                    model, name, weight)  # fmt: skip
                check(ok, WRONG, f"{name}: more than 16 distinct values at 4 bits")
        return f"4-bit weights; {note}"

    return run


def apply_svd(model: nn.Module, example: Any) -> None:
    ds.factorize_(model, ds.SVDFactorization(compression=2), example_inputs=example)


def svd(spec: Specimen, cell: Cell, tmp: Path) -> str:
    model, example, ref, ties = cell.build(spec)
    before, types, count = weight_names(model), module_types(model), params(model)
    apply_svd(model, example)
    check_ties(model, ties, "after SVDFactorization")
    runs_like(model, example, ref)
    note = check_accounted(model, before, changed_weights(model, before, types), "SVD")
    return f"{_shrunk(model, count, 'SVDFactorization')}; {note}"
