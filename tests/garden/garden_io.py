"""Capabilities of the contract suite that store, export, evaluate and train.

``.dsz`` and checkpoint round trips (bit-identical outputs, ties stored once), ONNX Runtime
(fp32, int8 static and dynamic, quantization-aware), ``evaluate``, ``fit`` and a user's own loop.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch
from garden_cells import (
    Capability,
    Cell,
    apply_svd,
    channel_prune,
    codebook_ok,
    finalize,
    loss_of,
    mean_loss,
    plain_steps,
)
from garden_models import Specimen
from garden_oracles import (
    QUANT_OPS,
    SILENT,
    WRONG,
    changed_weights,
    check,
    check_accounted,
    check_ties,
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
import deepshrink.prune as dp
import deepshrink.quantize as dq
from deepshrink.graph.io import call, inputs_and_labels, logits_of

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
    model, example, _, _ = channel_prune(spec, cell)
    return _round_trip(spec, model, example, tmp)


def dsz_factorized(spec: Specimen, cell: Cell, tmp: Path) -> str:
    model, example, _, _ = cell.build(spec)
    apply_svd(model, example)
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
    model, example, _, _ = channel_prune(spec, cell)
    return _checkpoint_trip(spec, model, example, tmp)


# ---- ONNX Runtime ----


def onnx_export(int8: Any) -> Capability:
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


def _qat_export(spec: Specimen, cell: Cell, tmp: Path, train: bool) -> str:
    model, example, ref, _ = cell.build(spec)
    ds.quantize_(model, dq.QuantAwareTraining(), calibration=spec.batches())
    if train:
        check(bool(plain_steps(model, spec.batches())), WRONG, "nothing trained in a plain "
              "PyTorch loop after QuantAwareTraining")  # fmt: skip
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


def onnx_qat(spec: Specimen, cell: Cell, tmp: Path) -> str:
    return _qat_export(spec, cell, tmp, train=False)


def own_loop_qat(spec: Specimen, cell: Cell, tmp: Path) -> str:
    return "trained; " + _qat_export(spec, cell, tmp, train=True)


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


def own_loop_agp(spec: Specimen, cell: Cell, tmp: Path) -> str:
    model, example, ref, ties = cell.build(spec)
    before, types = weight_names(model), module_types(model)
    schedule = ds.PolynomialDecay(final_sparsity=0.5, begin_step=0, end_step=4, frequency=2)
    stepper = dp.PruningStepper(model, schedule)  # looked up here: one cell fails if it is gone
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    model.train()
    for batch in spec.batches():
        optimizer.zero_grad()
        loss_of(model, batch).backward()
        optimizer.step()
        stepper.step()
    runs_like(model, example, ref)
    finalize(model)
    check_ties(model, ties, "after a plain loop with the AGP schedule")
    changed = changed_weights(model, before, types)
    note = check_accounted(model, before, changed, "PolynomialDecay")
    zeros = sum(int((resolve(model, n) == 0).sum()) for n in changed if n in before)
    share = zeros / sum(before[n].numel() for n in changed)
    check(abs(share - 0.5) <= 0.01, WRONG, f"sparsity {share:.3f} after the schedule, asked 0.5")
    return f"sparsity {share:.3f} after {stepper.steps} steps; {note}"


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
            check(codebook_ok(model, name, weight), WRONG,
                  f"{name}: weight sharing lost in a plain PyTorch loop")  # fmt: skip
    return f"sharing held after {len(spec.batches())} steps ({len(trained)} tensors trained)"
