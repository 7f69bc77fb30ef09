"""``auto_compress`` under a latency budget: channel widths chosen on measured ONNX Runtime
tables, fine-tuned with distillation, and the **delivered ONNX file** timed against the
baseline's fp32 export.

1. The baseline is exported to fp32 ONNX (``out/baseline.fp32.onnx``).
2. **Widths scan** (:mod:`deepshrink.auto.channels`): per coupled channel group and width, the
   held-out loss increase of that cut alone (training samples split off, never the test set).
3. **Latency tables** (:mod:`deepshrink.auto.latency`): every layer at every width pair, timed
   in one alternation with both whole models, one thread, thread CPU time.
4. **Allocation** (:mod:`deepshrink.auto.widths`): the least summed loss whose predicted latency
   fits, exactly; ``policy="uniform"``: the widest single fraction for every group.
5. **Check before training**: the cut model is exported and timed side by side with the baseline
   file (:func:`~deepshrink.eval.timing.compare_calls`); a speed depends on shapes only, so a
   miss costs no fine-tune. A miss is logged, the target tightened by the measured shortfall, and
   the next candidate taken.
6. Fine-tune with distillation, export ``out/model.onnx`` and check **that file** the same way;
   only a file whose measured interval meets the budget is delivered. Test accuracy of both
   files in ONNX Runtime, once, at the end.

A budget is met when the whole 95 % interval is: ``speedup=S`` needs the interval's low end of
``baseline ms ÷ file ms`` at batch 1 to be ≥ ``S``; ``max_latency_ms=X`` needs the baseline's
median ms divided by that low end (the file's slow end) to be ≤ ``X``.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from deepshrink.auto import state
from deepshrink.auto.channels import cut_model, discover, layer_roles, plan_widths, scan_widths
from deepshrink.auto.compress import FineTune, fine_tune_
from deepshrink.auto.estimate import estimate, plan_seconds
from deepshrink.auto.latency import build_table, layer_shapes
from deepshrink.auto.widths import LayerCost, WidthChoice, allocate_widths, uniform_widths
from deepshrink.errors import ConfigError

__all__ = ["LatencyBudget", "LatencyResult", "compress_to_latency"]

logger = logging.getLogger(__name__)

#: Share of the budget's latency the first allocation aims at.
MARGIN = 0.95

#: A file check: (baseline file, candidate file, example) → Speed at the budget's batch size.
Checker = Callable[[Path, Path, Any], Any]


@dataclass(frozen=True)
class LatencyBudget:
    """``speedup`` (× faster than the fp32 export) or ``max_latency_ms``, at ``batch`` size,
    thread CPU time on one thread in ONNX Runtime."""

    speedup: float | None = None
    max_latency_ms: float | None = None
    batch: int = 1
    rounds: int = 30

    def target_ms(self, baseline_ms: float) -> float:
        return self.max_latency_ms if self.speedup is None else baseline_ms / self.speedup

    def met(self, speed: Any) -> tuple[bool, float]:
        """Whether ``speed`` meets the budget, and the fraction of the budget it reached."""
        if self.speedup is not None:
            return speed.low >= self.speedup, speed.low / self.speedup
        slow = speed.baseline_cpu_ms / speed.low
        return slow <= self.max_latency_ms, self.max_latency_ms / slow

    def text(self) -> str:
        if self.speedup is not None:
            return f"{self.speedup:g}× faster than the fp32 export at batch {self.batch}"
        return f"{self.max_latency_ms:g} ms at batch {self.batch}"


@dataclass
class LatencyResult:
    """What the latency search delivered, how it chose, and what it measured."""

    policy: str
    budget: dict[str, Any]
    path: str
    baseline_path: str
    widths: dict[str, int]
    predicted_ms: float
    speed: dict[str, Any]
    held_out_accuracy: float
    test_accuracy: float | None
    original_test_accuracy: float | None
    attempts: list[dict[str, Any]] = field(default_factory=list)
    table: dict[str, Any] = field(default_factory=dict)
    losses: dict[str, dict[int, float]] = field(default_factory=dict)
    uniform_fraction: float | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    checkpoint: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_file(budget: LatencyBudget) -> Checker:
    """The delivered-file check: both files in ONNX Runtime, side by side."""

    def check(baseline: Path, candidate: Path, example: Any) -> Any:
        from deepshrink.eval.timing import compare_calls
        from deepshrink.export.files import file_calls

        speeds = compare_calls(file_calls(baseline, example), file_calls(candidate, example),
                               batch_sizes=(budget.batch,), rounds=budget.rounds)  # fmt: skip
        return speeds[budget.batch]

    return check


def compress_to_latency(
    model: nn.Module, data: Any, budget: LatencyBudget, *, out: str | Path = "runs/auto",
    policy: str = "auto", steps: int = 8, round_to: int = 8, criterion: str = "l1",
    fine_tune: FineTune | None = None, held_out: int = 5000, scan_samples: int = 1000,
    resume: bool = False, evaluate_test: bool = True, checker: Checker | None = None,
    attempts: int = 4,
) -> LatencyResult:  # fmt: skip
    """Cut ``model``'s channels to meet ``budget`` on the delivered ONNX file (see the module
    doc); ``model`` is not changed."""
    from deepshrink import export
    from deepshrink.eval._inputs import derive_inputs, with_batch_size

    settings = fine_tune or FineTune()
    began = time.perf_counter()
    folder = state.prepare(out, resume)
    teacher = copy.deepcopy(model).eval()
    train, held = state.split(data, held_out, settings.seed, settings.train_samples)
    example = with_batch_size(derive_inputs(teacher, held, None), budget.batch)
    baseline = export(teacher, folder / "baseline.fp32.onnx", example_inputs=example)
    groups, skipped = discover(teacher, example, steps=steps, round_to=round_to,
                               criterion=criterion)  # fmt: skip
    scan = _Scan(folder, teacher, groups, held, example, scan_samples, round_to, criterion)
    saved = scan.saved() if resume else None
    options = 0 if saved else sum(len(g.widths) - 1 for g in groups)
    expected = estimate(teacher, train, options=options,
                        scan_samples=min(scan_samples, len(held)), held_out=len(held),
                        epochs=settings.prune_epochs, batch_size=settings.batch_size,
                        per_option=plan_seconds(teacher, groups, example, round_to),
                        student_share=1 / budget.speedup if budget.speedup else 1.0,
                        threads=settings.threads)  # fmt: skip
    logger.info("auto: expected time %s%s", expected.text(),
                " (the saved width scan is reused)" if saved else "")  # fmt: skip
    losses, roles, reference = saved or scan.run()
    seconds = {"scan": time.perf_counter() - began}
    costs, table = _tables(teacher, groups, roles, example, folder, round_to, criterion)
    seconds["tables"] = time.perf_counter() - began - seconds["scan"]
    check = checker or check_file(budget)
    run = _Attempts(teacher, groups, losses, costs, table, budget, policy, steps, example,
                    folder, baseline, check, round_to, criterion)  # fmt: skip
    choice, cut, speed = run.until_met(attempts)
    model_out, speed, choice = run.tuned(choice, cut, speed, train, held, settings, resume,
                                         attempts)  # fmt: skip
    seconds["compress"] = time.perf_counter() - began - seconds["scan"] - seconds["tables"]
    seconds["expected"] = expected.total_seconds
    result = _result(run, choice, speed, model_out, held, data, evaluate_test, folder, policy,
                     budget, table, losses, seconds, began, skipped, reference)  # fmt: skip
    state.write_report(folder, result.to_dict())
    logger.info("auto: %s delivered %s: %s against the fp32 export at batch %d; held-out "
                "accuracy %.2f%%, test %s", policy, result.path, speed.text(), budget.batch,
                100 * result.held_out_accuracy, "n/a" if result.test_accuracy is None
                else f"{100 * result.test_accuracy:.2f}%")  # fmt: skip
    return result


class _Scan:
    """The width scan's losses and layer roles, kept in ``width_scan.json`` with a fingerprint
    of the model and the settings; reused when resuming with the same."""

    def __init__(self, folder: Path, teacher: nn.Module, groups: list[Any], held: Any,
                 example: Any, samples: int, round_to: int, criterion: str) -> None:  # fmt: skip
        self.folder, self.teacher, self.groups, self.held = folder, teacher, groups, held
        self.example, self.samples, self.round_to, self.criterion = (
            example, samples, round_to, criterion)  # fmt: skip
        self.settings = {"groups": [[g.root, list(g.widths)] for g in groups],
                         "samples": samples, "held": len(held), "round_to": round_to,
                         "criterion": criterion}  # fmt: skip
        self.key = state.fingerprint(teacher, self.settings)
        self.path = folder / "width_scan.json"

    def saved(self) -> tuple[dict[str, dict[int, float]], dict[str, Any], Any] | None:
        import json

        if not self.path.is_file():
            return None
        saved = json.loads(self.path.read_text())
        if saved.get("fingerprint") != self.key:
            logger.info("auto width scan: %s is for another model or settings", self.path)
            return None
        logger.info("auto width scan: reusing %s", self.path)
        losses = {g: {int(w): v for w, v in ws.items()} for g, ws in saved["losses"].items()}
        return losses, saved["roles"], tuple(saved["reference"])

    def run(self) -> tuple[dict[str, dict[int, float]], dict[str, Any], Any]:
        import json

        from deepshrink._io import atomic_write_bytes

        losses, plans, reference = scan_widths(
            self.teacher, self.groups, self.held, self.example, samples=self.samples,
            round_to=self.round_to, criterion=self.criterion,
        )  # fmt: skip
        roles = layer_roles(plans)
        document = {"fingerprint": self.key, "settings": self.settings, "losses": losses,
                    "roles": roles, "reference": list(reference)}  # fmt: skip
        atomic_write_bytes(self.path, json.dumps(document, indent=1).encode())
        return losses, roles, reference


def _tables(
    teacher: nn.Module, groups: list[Any], roles: dict[str, Any], example: Any,
    folder: Path, round_to: int, criterion: str,
) -> tuple[dict[str, LayerCost], Any]:  # fmt: skip
    """Per-layer costs (group or fixed width at each end, measured ms) and the table."""
    from deepshrink import export
    from deepshrink.export.files import file_calls

    widths = {g.root: g.widths for g in groups}
    shapes = layer_shapes(teacher, example, batch=_batch_of(example))
    layers = {}
    for name, shape in shapes.items():
        module = teacher.get_submodule(name)
        fixed_in = module.in_features if isinstance(module, nn.Linear) else module.in_channels
        fixed_out = module.out_features if isinstance(module, nn.Linear) else module.out_channels
        group_in, group_out = roles.get(name, (None, None))
        if shape.depthwise:
            group_in = group_out
        end_in = group_in if group_in in widths else fixed_in
        end_out = group_out if group_out in widths else fixed_out
        ins = widths[end_in] if isinstance(end_in, str) else (end_in,)
        outs = widths[end_out] if isinstance(end_out, str) else (end_out,)
        layers[name] = (shape, ins, outs, end_in, end_out)
    narrowest = {g.root: g.widths[-1] for g in groups}
    narrow = cut_model(teacher, plan_widths(teacher, groups, narrowest, example,
                                            round_to=round_to, criterion=criterion))  # fmt: skip
    narrow_path = export(narrow, folder / ".auto" / "narrowest.onnx", example_inputs=example)
    full = file_calls(folder / "baseline.fp32.onnx", example)(_batch_of(example))
    table = build_table({n: v[:3] for n, v in layers.items()}, full,
                        file_calls(narrow_path, example)(_batch_of(example)))  # fmt: skip
    costs = {
        name: LayerCost(v[3], v[4], {(i, o): table.entries[v[0].key(i, o)]
                                     for i in v[1] for o in v[2]})
        for name, v in layers.items()
    }  # fmt: skip
    return costs, table


def _batch_of(example: Any) -> int:
    from deepshrink.graph.io import split

    tensors = [t for t in split(example)[0] if hasattr(t, "shape")]
    return int(tensors[0].shape[0]) if tensors else 1


class _Attempts:
    """Candidates in turn: allocate, export, time the file; tighten the target on a miss."""

    def __init__(self, teacher: nn.Module, groups: list[Any], losses: dict[str, dict[int, float]],
                 costs: dict[str, LayerCost], table: Any, budget: LatencyBudget, policy: str,
                 steps: int, example: Any, folder: Path, baseline: Path, checker: Checker,
                 round_to: int, criterion: str) -> None:  # fmt: skip
        self.teacher, self.groups, self.losses, self.costs = teacher, groups, losses, costs
        self.table, self.budget, self.policy, self.steps = table, budget, policy, steps
        self.example, self.folder, self.baseline, self.checker = example, folder, baseline, checker
        self.round_to, self.criterion = round_to, criterion
        #: the first target leaves room for the spread of the check: its whole interval counts
        self.target = budget.target_ms(table.full_ms) * MARGIN
        self.fraction: float | None = None
        self.log: list[dict[str, Any]] = []

    def choose(self) -> WidthChoice:
        widths = {g.root: g.widths for g in self.groups}
        line = (self.table.intercept, self.table.slope)
        if self.policy == "uniform":
            choice, self.fraction = uniform_widths(widths, self.losses, self.costs, self.target,
                                                   line=line, steps=self.steps)  # fmt: skip
            return choice
        return allocate_widths(widths, self.losses, self.costs, self.target, line=line)

    def until_met(self, attempts: int) -> tuple[WidthChoice, Any, Any]:
        """The first candidate whose exported (untrained) cut model meets the budget."""
        for _ in range(attempts - len(self.log)):
            choice = self.choose()
            cut = cut_model(self.teacher, plan_widths(self.teacher, self.groups, choice.widths,
                                                      self.example, round_to=self.round_to,
                                                      criterion=self.criterion))  # fmt: skip
            path = self.folder / ".auto" / "candidate.onnx"
            speed = self._timed(cut, path, choice, "candidate (before fine-tuning)")
            if speed is not None:
                return choice, cut, speed
        raise ConfigError(self._missed())

    def _timed(self, model: nn.Module, path: Path, choice: WidthChoice, what: str) -> Any:
        """Export ``model``, time it against the baseline file; the speed if it meets the
        budget, else None (the target tightened)."""
        from deepshrink import export

        export(model, path, example_inputs=self.example)
        speed = self.checker(self.baseline, path, self.example)
        met, reached = self.budget.met(speed)
        self.log.append({"what": what, "target_ms": self.target, "widths": choice.widths,
                         "predicted_ms": choice.predicted_ms, "loss": choice.loss,
                         "speed": speed.to_dict(), "met": met})  # fmt: skip
        logger.info("auto: %s predicted %.3f ms; measured %s against the fp32 export (%.3f → "
                    "%.3f ms)", what, choice.predicted_ms, speed.text(), speed.baseline_cpu_ms,
                    speed.cpu_ms)  # fmt: skip
        if met:
            return speed
        logger.warning("auto: the %s misses the budget (%s): measured %s; taking the next "
                       "candidate", what, self.budget.text(), speed.text())  # fmt: skip
        self.target = min(self.target, choice.predicted_ms) * reached * 0.98
        return None

    def _missed(self) -> str:
        best = max(self.log, key=lambda e: e["speed"]["low"])
        return (f"no candidate met {self.budget.text()} on the measured file after "
                f"{len(self.log)} tries; the best measured {best['speed']['text']} (widths "
                f"{best['widths']}); raise the budget or allow narrower widths")  # fmt: skip

    def tuned(self, choice: WidthChoice, cut: nn.Module, speed: Any, train: Any, held: Any,
              settings: FineTune, resume: bool,
              attempts: int) -> tuple[nn.Module, Any, WidthChoice]:  # fmt: skip
        """Fine-tune the cut model, export ``model.onnx`` and check that file; on a miss,
        the next candidate."""
        while True:
            key = state.allocation_key({}, len(self.log)) + "-" + _widths_key(choice.widths)
            fine_tune_(cut, self.teacher, train, held, epochs=settings.prune_epochs,
                       lr=settings.prune_lr, settings=settings, phase="pruning",
                       checkpoint_dir=state.fit_dir(self.folder, "channels", key),
                       resume=resume)  # fmt: skip
            delivered = self._timed(cut, self.folder / "model.onnx", choice, "delivered file")
            if delivered is not None:
                return cut, delivered, choice
            if len(self.log) >= attempts:
                raise ConfigError(self._missed())
            choice, cut, speed = self.until_met(attempts)


def _widths_key(widths: dict[str, int]) -> str:
    import hashlib

    return hashlib.sha256(repr(sorted(widths.items())).encode()).hexdigest()[:8]


def _result(
    run: _Attempts, choice: WidthChoice, speed: Any, model: nn.Module, held: Any, data: Any,
    evaluate_test: bool, folder: Path, policy: str, budget: LatencyBudget, table: Any,
    losses: dict[str, dict[int, float]], seconds: dict[str, float], began: float,
    skipped: dict[str, str], reference: tuple[float, float],
) -> LatencyResult:  # fmt: skip
    from deepshrink.train import evaluate, save_checkpoint

    path = folder / "model.onnx"
    checkpoint = save_checkpoint(model, folder / "model.safetensors")
    test, original = None, None
    if evaluate_test and getattr(data, "test", None) is not None and len(data.test):
        from deepshrink.export.files import evaluate_file

        test = float(evaluate_file(path, data.test).top1 or 0.0)
        original = float(evaluate_file(run.baseline, data.test).top1 or 0.0)
        logger.info("auto: test accuracy of the delivered file %.2f%% (fp32 export %.2f%%), "
                    "measured once at the end", 100 * test, 100 * original)  # fmt: skip
    summary = {k: v for k, v in table.to_dict().items() if k != "entries"}
    return LatencyResult(
        policy=policy, budget={**asdict(budget), "text": budget.text(),
                               "target_ms": budget.target_ms(table.full_ms)},
        path=str(path), baseline_path=str(run.baseline), widths=choice.widths,
        predicted_ms=choice.predicted_ms, speed=speed.to_dict(),
        held_out_accuracy=float(evaluate(model, held).top1 or 0.0), test_accuracy=test,
        original_test_accuracy=original, attempts=run.log,
        table={**summary, "entries": len(table.entries), "skipped": skipped,
               "reference": list(reference)},
        losses=losses, uniform_fraction=run.fraction,
        seconds={**seconds, "total": time.perf_counter() - began}, checkpoint=str(checkpoint),
    )  # fmt: skip
