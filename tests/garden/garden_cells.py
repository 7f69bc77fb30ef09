"""Capabilities of the contract suite: each runs one public verb as a user would, then an oracle.

A capability is ``run(spec, cell, tmp) -> detail``: it builds the model (kept on ``cell`` so that
a refusal can be checked against the model's layer names), calls the API, and raises
:class:`~garden_oracles.Verdict` when an oracle fails. :func:`run_cell` classifies the outcome.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from garden_models import Specimen
from garden_oracles import (
    PASSING,
    QUANT_OPS,
    SILENT,
    WRONG,
    Outcome,
    changed_weights,
    check,
    check_accounted,
    check_ties,
    classify,
    matching_output,
    module_types,
    ort_outputs,
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

__all__ = ["CAPABILITIES", "PASSING", "run_cell"]


class Cell:
    """What a capability is working on: its model (for checking refusals)."""

    model: nn.Module | None = None

    def build(self, spec: Specimen) -> tuple[nn.Module, Any, Tensor, list[list[str]]]:
        """A fresh model, its example inputs, its logits on them and its tie groups."""
        self.model = spec.build(0)
        example = spec.example()
        return self.model, example, predict(self.model, example), tie_groups(self.model)


Capability = Callable[[Specimen, Cell, Path], str]


def run_cell(spec: Specimen, capability: str, tmp: Path) -> Outcome:
    """Run ``capability`` on ``spec`` and classify what happened."""
    cell = Cell()
    return classify(lambda: CAPABILITIES[capability][0](spec, cell, tmp), lambda: cell.model)


def finalize(model: nn.Module) -> nn.Module:
    """Make every pending method permanent, as the README does."""
    return dq.finalize_(ds.finalize_(model))


def loss_of(model: nn.Module, batch: Any) -> Tensor:
    inputs, labels = inputs_and_labels(batch)
    logits = logits_of(call(model, inputs))
    return F.cross_entropy(logits.flatten(0, -2), labels.flatten())


def mean_loss(model: nn.Module, batches: list[Any]) -> float:
    model.eval()
    with torch.no_grad():
        return sum(float(loss_of(model, batch)) for batch in batches) / len(batches)


# ---- pruning ----


def _magnitude(scope: str) -> Capability:
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


def _channel_prune(spec: Specimen, cell: Cell) -> tuple[nn.Module, Any, Tensor, str]:
    model, example, ref, ties = cell.build(spec)
    before = params(model)
    ds.prune_(model, ds.ChannelPruning(ratio=0.5), example_inputs=example)
    check_ties(model, ties, "after ChannelPruning")
    return model, example, runs_like(model, example, ref), _shrunk(model, before, "ChannelPruning")


def channel(spec: Specimen, cell: Cell, tmp: Path) -> str:
    return _channel_prune(spec, cell)[3]


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


def _codebook_ok(model: nn.Module, name: str, weight: Tensor) -> bool:
    """At most 16 distinct non-zero values per layer, or per gate of a recurrent or attention
    weight (``weight_ih``/``weight_hh`` of LSTM/GRU, ``in_proj_weight`` of attention)."""
    module = resolve(model, name.rsplit(".", 1)[0]) if "." in name else model
    gates = {nn.LSTM: 4, nn.GRU: 3, nn.MultiheadAttention: 3}.get(type(module), 1)
    if weight[weight != 0].unique().numel() <= 16:
        return True
    if gates == 1 or weight.shape[0] % gates:
        return False
    return all(c[c != 0].unique().numel() <= 16 for c in weight.chunk(gates))


def _quantized(config: Any, per_slice: bool, calibration: bool = False) -> Capability:
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
                ok = _values_per_slice(weight, 16) if per_slice else _codebook_ok(
                    model, name, weight)  # fmt: skip
                check(ok, WRONG, f"{name}: more than 16 distinct values at 4 bits")
        return f"4-bit weights; {note}"

    return run


def _svd(model: nn.Module, example: Any) -> None:
    ds.factorize_(model, ds.SVDFactorization(compression=2), example_inputs=example)


def svd(spec: Specimen, cell: Cell, tmp: Path) -> str:
    model, example, ref, ties = cell.build(spec)
    before, types, count = weight_names(model), module_types(model), params(model)
    _svd(model, example)
    check_ties(model, ties, "after SVDFactorization")
    runs_like(model, example, ref)
    note = check_accounted(model, before, changed_weights(model, before, types), "SVD")
    return f"{_shrunk(model, count, 'SVDFactorization')}; {note}"


# ---- the .dsz container ----


def _round_trip(spec: Specimen, model: nn.Module, example: Any, tmp: Path) -> str:
    ref, ties = predict(model, example), tie_groups(model)
    path = ds.save(model, tmp / f"{spec.name}.dsz")
    loaded = ds.load(path, model=spec.build(1))
    out = predict(loaded, example)
    check(out.shape == ref.shape and torch.equal(out, ref), WRONG,
          "outputs differ after the .dsz round trip")  # fmt: skip
    check(params(loaded) == params(model), WRONG, f"{params(loaded):,} parameters after loading, "
          f"{params(model):,} saved")  # fmt: skip
    check_ties(loaded, ties, "after ds.load")
    return f"bit-identical, {Path(path).stat().st_size:,} bytes, {params(model):,} params"


def _stored_once(model: nn.Module, ties: list[list[str]], size: int, tmp: Path) -> str:
    """Tied tensors take their bytes once: the file of an untied copy is larger by about them."""
    twin = copy.deepcopy(model)
    extra = 0
    for names in ties:
        for name in names[1:]:
            owner, _, attr = name.rpartition(".")
            tensor = resolve(twin, name)
            setattr(resolve(twin, owner) if owner else twin, attr, nn.Parameter(tensor.clone()))
            extra += tensor.numel() * tensor.element_size()
    untied = Path(ds.save(twin, tmp / "untied.dsz")).stat().st_size
    check(untied - size > extra / 2, WRONG, f"tied tensors stored twice: {size:,} bytes tied, "
          f"{untied:,} untied ({extra:,} bytes in the tied copies)")  # fmt: skip
    return f"; ties stored once ({size:,} bytes vs {untied:,} untied)"


def dsz_dense(spec: Specimen, cell: Cell, tmp: Path) -> str:
    model, example, _, ties = cell.build(spec)
    detail = _round_trip(spec, model, example, tmp)
    if not ties:
        return detail
    return detail + _stored_once(model, ties, (tmp / f"{spec.name}.dsz").stat().st_size, tmp)


def dsz_pruned(spec: Specimen, cell: Cell, tmp: Path) -> str:
    model, example, _, _ = cell.build(spec)
    ds.prune_(model, ds.MagnitudePruning(sparsity=0.5))
    return _round_trip(spec, finalize(model), example, tmp)


def dsz_channel(spec: Specimen, cell: Cell, tmp: Path) -> str:
    model, example, _, _ = _channel_prune(spec, cell)
    return _round_trip(spec, model, example, tmp)


def dsz_factorized(spec: Specimen, cell: Cell, tmp: Path) -> str:
    model, example, _, _ = cell.build(spec)
    _svd(model, example)
    return _round_trip(spec, model, example, tmp)


def _checkpoint_trip(spec: Specimen, model: nn.Module, example: Any, tmp: Path) -> str:
    ref, ties = predict(model, example), tie_groups(model)
    path = ds.save_checkpoint(model, tmp / spec.name)
    loaded, _ = ds.load_checkpoint(path, model=spec.build(1))
    out = predict(loaded, example)
    check(out.shape == ref.shape and torch.equal(out, ref), WRONG,
          "outputs differ after save_checkpoint / load_checkpoint")  # fmt: skip
    check_ties(loaded, ties, "after load_checkpoint")
    return f"bit-identical after a checkpoint round trip, {params(loaded):,} params"


def checkpoint_dense(spec: Specimen, cell: Cell, tmp: Path) -> str:
    model, example, _, _ = cell.build(spec)
    return _checkpoint_trip(spec, model, example, tmp)


def checkpoint_channel(spec: Specimen, cell: Cell, tmp: Path) -> str:
    model, example, _, _ = _channel_prune(spec, cell)
    return _checkpoint_trip(spec, model, example, tmp)


# ---- ONNX Runtime ----


def _onnx(int8: Any) -> Capability:
    def run(spec: Specimen, cell: Cell, tmp: Path) -> str:
        model, example, ref, _ = cell.build(spec)
        data = {"calibration": spec.batches()} if int8 is True else {}
        path = ds.export(model, tmp / f"{spec.name}.onnx", int8=int8, example_inputs=example,
                         **data)  # fmt: skip
        check(torch.equal(predict(model, example), ref), WRONG, "ds.export changed the model")
        outputs, ops = ort_outputs(Path(path), example)
        value = matching_output(outputs, ref)
        error = relative_error(value, ref)
        if int8 is False:
            close = bool(torch.allclose(torch.from_numpy(value), ref, atol=1e-4, rtol=1e-3))
            check(close, WRONG, f"ONNX Runtime differs from PyTorch (relative error {error:.2e})")
            return f"ONNX Runtime matches PyTorch (relative error {error:.1e})"
        quant = sorted(ops & QUANT_OPS)
        check(bool(quant), SILENT, f"the int8={int8!r} file has no quantized op")
        check(error < 0.35, WRONG, f"int8 ONNX Runtime output off by {error:.2f} (relative)")
        return f"relative error {error:.3f} vs PyTorch; ops {', '.join(quant[:3])}"

    return run


def onnx_qat(spec: Specimen, cell: Cell, tmp: Path) -> str:
    model, example, ref, _ = cell.build(spec)
    ds.quantize_(model, dq.QuantAwareTraining(), calibration=spec.batches())
    fake = predict(model, example)
    path = ds.export(model, tmp / f"{spec.name}.qat.onnx", int8=True, example_inputs=example)
    outputs, ops = ort_outputs(Path(path), example)
    value = matching_output(outputs, ref)
    quant = sorted(ops & QUANT_OPS)
    check(bool(quant), SILENT, "the quantization-aware model was exported with no quantized op")
    error = relative_error(value, fake)
    check(error < 0.2, WRONG, f"ONNX Runtime int8 off the fake-quantized PyTorch model by "
          f"{error:.2f} (relative)")  # fmt: skip
    return f"relative error {error:.3f} vs the fake-quantized model; ops {', '.join(quant[:3])}"


# ---- training and evaluation ----


def evaluate(spec: Specimen, cell: Cell, tmp: Path) -> str:
    model, example, _, _ = cell.build(spec)
    batches = spec.batches()
    report = ds.evaluate(model, batches, example_inputs=example, latency=False)
    correct = count = 0
    with torch.no_grad():
        for batch in batches:
            inputs, labels = inputs_and_labels(batch)
            hits = logits_of(call(model, inputs)).argmax(dim=-1) == labels
            correct, count = correct + int(hits.sum()), count + hits.numel()
    expected = correct / count
    check(report.accuracy is not None and abs(report.accuracy - expected) < 1e-9, WRONG,
          f"accuracy {report.accuracy} reported, {expected:.4f} measured")  # fmt: skip
    check(report.parameters == params(model), WRONG, f"{report.parameters:,} parameters "
          f"reported, {params(model):,} in the model (tied ones once)")  # fmt: skip
    return f"accuracy {expected:.3f} over {count} predictions, {report.parameters:,} params"


def fit(spec: Specimen, cell: Cell, tmp: Path) -> str:
    model, example, ref, ties = cell.build(spec)
    batches = spec.batches()
    start = mean_loss(model, batches)
    ds.fit(model, batches, epochs=3, lr=0.01, optimizer="adam", progress=False)
    check_ties(model, ties, "after fit")
    end = mean_loss(model, batches)
    runs_like(model, example, ref)
    check(end < start, WRONG, f"training loss {start:.3f} → {end:.3f}: fit did not train")
    return f"training loss {start:.3f} → {end:.3f}"


def own_loop(spec: Specimen, cell: Cell, tmp: Path) -> str:
    model, example, ref, ties = cell.build(spec)
    before = weight_names(model)
    ds.prune_(model, ds.MagnitudePruning(sparsity=0.5))
    zeros = {name: resolve(model, name) == 0 for name in before}
    zeros = {name: mask for name, mask in zeros.items() if mask.any()}
    check(bool(zeros), SILENT, "MagnitudePruning returned normally and pruned nothing")
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-3)
    model.train()
    for batch in spec.batches() * 2:
        optimizer.zero_grad()
        loss_of(model, batch).backward()
        optimizer.step()
    runs_like(model, example, ref)
    finalize(model)
    check_ties(model, ties, "after a plain training loop")
    for name, mask in zeros.items():
        weight = resolve(model, name)
        check(isinstance(weight, Tensor) and bool((weight[mask] == 0).all()), WRONG,
              f"{name}: pruned weights moved in a plain PyTorch loop")  # fmt: skip
    moved = sum(int((resolve(model, n) != before[n])[~m].sum()) for n, m in zeros.items())
    check(moved > 0, WRONG, "the kept weights did not train")
    return f"masks held on {len(zeros)} weight tensors over {2 * len(spec.batches())} steps"


def own_loop_kmeans(spec: Specimen, cell: Cell, tmp: Path) -> str:
    model, example, ref, ties = cell.build(spec)
    before, types = weight_names(model), module_types(model)
    ds.quantize_(model, ds.KMeansQuantization(bits=4))
    start = {name: p.detach().clone() for name, p in model.named_parameters()}
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    model.train()
    for batch in spec.batches():
        optimizer.zero_grad()
        loss_of(model, batch).backward()
        optimizer.step()
    trained = [
        n for n, p in model.named_parameters() if n in start and not torch.equal(p, start[n])
    ]
    check(bool(trained), WRONG, "nothing trained in a plain PyTorch loop after k-means")
    runs_like(model, example, ref)
    check_ties(model, ties, "after a plain training loop")
    finalize(model)
    changed = changed_weights(model, before, types)
    check(bool(changed), SILENT, "KMeansQuantization returned normally and changed no weight")
    for name in changed:
        weight = resolve(model, name)
        if isinstance(weight, Tensor):
            check(_codebook_ok(model, name, weight), WRONG,
                  f"{name}: weight sharing lost in a plain PyTorch loop")  # fmt: skip
    return f"sharing held after {len(spec.batches())} steps ({len(trained)} tensors trained)"


CAPABILITIES: dict[str, tuple[Capability, str]] = {
    "magnitude_layer": (_magnitude("layer"), "MagnitudePruning(sparsity=0.5), layer scope"),
    "magnitude_global": (_magnitude("global"), "MagnitudePruning(sparsity=0.5, scope='global')"),
    "neuron": (neuron, "NeuronPruning(ratio=0.5): fewer parameters"),
    "channel": (channel, "ChannelPruning(ratio=0.5) with example inputs: fewer parameters"),
    "kmeans": (_quantized(ds.KMeansQuantization(bits=4), False), "KMeansQuantization(bits=4)"),
    "qat": (_quantized(dq.QuantAwareTraining(), False, calibration=True),
            "QuantAwareTraining() with calibration batches"),
    "mixed": (_quantized(dq.MixedPrecision(default_bits=4), True), "MixedPrecision(4 bits)"),
    "svd": (svd, "SVDFactorization(compression=2): fewer parameters"),
    "dsz_dense": (dsz_dense, ".dsz round trip of the dense model, bit-identical"),
    "dsz_pruned": (dsz_pruned, ".dsz round trip after magnitude pruning"),
    "dsz_channel": (dsz_channel, ".dsz round trip after channel pruning"),
    "dsz_factorized": (dsz_factorized, ".dsz round trip after SVD"),
    "checkpoint_dense": (checkpoint_dense, "save_checkpoint / load_checkpoint of the dense model"),
    "checkpoint_channel": (checkpoint_channel, "checkpoint round trip after channel pruning"),
    "onnx_fp32": (_onnx(False), "ds.export fp32, run in ONNX Runtime, close to PyTorch"),
    "onnx_int8_static": (_onnx(True), "ds.export int8=True (QDQ), calibrated, in ONNX Runtime"),
    "onnx_int8_dynamic": (_onnx("dynamic"), "ds.export int8='dynamic', in ONNX Runtime"),
    "onnx_qat": (onnx_qat, "QuantAwareTraining, then ds.export int8=True with its own scales"),
    "evaluate": (evaluate, "ds.evaluate on labelled batches: accuracy and parameter count"),
    "fit": (fit, "ds.fit 3 epochs on the batches: training loss decreases"),
    "own_loop": (own_loop, "plain PyTorch SGD loop after MagnitudePruning keeps the masks"),
    "own_loop_kmeans": (own_loop_kmeans, "plain PyTorch SGD loop trains k-means centroids, "
                        "sharing kept"),
}  # fmt: skip
