"""``factorize_``: choose layers, factorize them, keep what the policy accepts, record it.

Decide, then apply: :func:`plan_factorization` builds every candidate and decides on it without
touching the model; :func:`apply_plan_` swaps the accepted ones in and appends a structure
record for each (so :func:`deepshrink.train.load_checkpoint` can rebuild the model);
:func:`factorize_` does both.

>>> import torch
>>> from torch import nn
>>> from deepshrink.factorize.config import SVDFactorization
>>> model = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 8))
>>> plan = plan_factorization(model, SVDFactorization(rank=8))
>>> [(d.name, d.accepted) for d in plan]
[('0', True), ('2', False)]
>>> model = apply_plan_(model, plan)
>>> type(model[0]).__name__, type(model[2]).__name__
('SVDLinear', 'Linear')
"""

from __future__ import annotations

import fnmatch
import logging
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from deepshrink.errors import ConfigError
from deepshrink.eval._inputs import layer_inputs
from deepshrink.factorize._method import Method, method_for
from deepshrink.factorize.config import FactorizationConfig
from deepshrink.factorize.conv import CPConv2d, SeparableConv2d, TuckerConv2d
from deepshrink.factorize.policy import Decision, decide, skipped
from deepshrink.factorize.svd import SVDLinear
from deepshrink.factorize.tt import TTLinear
from deepshrink.graph import record
from deepshrink.graph.coverage import measure_coverage, report_coverage
from deepshrink.graph.layers import is_transposed_linear, replace_blocker, weight_slots

__all__ = ["apply_plan_", "factorize_", "plan_factorization", "select_layers"]

logger = logging.getLogger(__name__)

FACTORIZED = (SVDLinear, SeparableConv2d, TuckerConv2d, CPConv2d, TTLinear)
Patterns = str | Sequence[str] | None


def _patterns(value: Patterns) -> list[str]:
    return [value] if isinstance(value, str) else list(value or [])


def _targets(model: nn.Module, layer_type: type[nn.Module]) -> dict[str, nn.Module]:
    """Named layers of ``layer_type``, excluding the root and parts of factorized layers."""
    found: dict[str, nn.Module] = {}
    factorized: list[str] = []
    for name, module in model.named_modules():
        if any(name.startswith(f"{outer}.") for outer in factorized):
            continue
        if isinstance(module, FACTORIZED):
            factorized.append(name)
        elif name and (
            isinstance(module, layer_type)
            or (layer_type is nn.Linear and is_transposed_linear(module))
        ):
            found[name] = module
    return found


def select_layers(
    model: nn.Module,
    layer_type: type[nn.Module],
    include: Patterns = None,
    exclude: Patterns = None,
) -> dict[str, nn.Module]:
    """Layers of ``layer_type`` matched by ``include`` (default all) and by no ``exclude`` glob.

    A glob that matches none of those layers is a :class:`ConfigError` (most likely a typo).

    >>> model = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))
    >>> list(select_layers(model, nn.Linear, exclude="2"))
    ['0']
    """
    targets = _targets(model, layer_type)
    kind = layer_type.__name__
    if not targets:
        raise ConfigError(f"the model has no {kind} layer to factorize")
    for option, patterns in (("include", include), ("exclude", exclude)):
        for pattern in _patterns(patterns):
            if not fnmatch.filter(targets, pattern):
                raise ConfigError(
                    f"{option} {pattern!r} matches no {kind} layer; the {kind} layers are "
                    f"{', '.join(targets)}"
                )
    wanted = _patterns(include) or ["*"]
    unwanted = _patterns(exclude)
    return {
        name: layer
        for name, layer in targets.items()
        if any(fnmatch.fnmatchcase(name, p) for p in wanted)
        and not any(fnmatch.fnmatchcase(name, p) for p in unwanted)
    }


def _input_for(name: str, layer: nn.Module, captured: dict[str, Tensor]) -> Tensor | None:
    if name in captured:
        return captured[name]
    if isinstance(layer, nn.Linear):  # a Linear layer's input shape is known without running
        weight = layer.weight
        generator = torch.Generator().manual_seed(0)
        return torch.randn(1, layer.in_features, generator=generator).to(weight)
    return None


def _blockers(model: nn.Module) -> dict[str, str]:
    """Modules that must not be replaced, and why: tied weights, ``MultiheadAttention``'s
    ``out_proj`` (see :func:`deepshrink.graph.layers.replace_blocker`)."""
    blocked = {}
    for slot in weight_slots(model).values():
        reason = replace_blocker(model, slot)
        if reason and slot.parameter == "weight":
            blocked[slot.module_name] = reason
            for module, _ in slot.aliases:
                blocked[module] = f"its weight is tied to {slot.qualified}"
    return blocked


def _plan_layer(
    name: str, layer: nn.Module, method: Method, config: FactorizationConfig, inputs: Any
) -> Decision:
    reason = method.skip_reason(layer, config)
    if reason is None and layer.weight.numel() < config.min_params:
        reason = f"{layer.weight.numel()} weights < min_params={config.min_params}"
    if reason is not None:
        return skipped(name, layer, reason)
    if config.policy == "faster" and inputs is None:
        raise ConfigError(
            f"{name}: policy 'faster' times each layer on its real input; pass example_inputs= "
            "(or use a zoo model, which has them)"
        )
    candidate = method.build(name, layer, config)
    return decide(name, layer, candidate.module, candidate.kind, candidate.details, config, inputs)


def plan_factorization(
    model: nn.Module,
    config: FactorizationConfig,
    *,
    include: Patterns = None,
    exclude: Patterns = None,
    example_inputs: Any = None,
) -> list[Decision]:
    """Factorize each selected layer on the side and decide whether to keep it; no changes.

    ``include`` / ``exclude`` are fnmatch globs over module names. ``example_inputs`` (default:
    a zoo model's own) give every layer's real input, for MACs and the ``"faster"`` policy.
    Without ``include``, layers a method cannot fit (e.g. TT modes of another size) are left
    out; a layer named by ``include`` that does not fit is a :class:`ConfigError`.
    """
    method = method_for(config)
    layers = select_layers(model, method.layer_type, include, exclude)
    if include is None:
        layers = {name: layer for name, layer in layers.items() if method.fits(layer, config)}
        if not layers:
            raise ConfigError(
                f"no {method.layer_type.__name__} layer fits {type(config).__name__} "
                f"({config.to_dict()}); name the layers with include="
            )
    blocked = _blockers(model)
    captured = layer_inputs(model, layers, example_inputs)
    plan = []
    for name, layer in layers.items():
        if name in blocked:
            decision = skipped(name, layer, blocked[name])
        else:
            decision = _plan_layer(name, layer, method, config, _input_for(name, layer, captured))
        logger.info("%s: %s", name, decision.reason)
        plan.append(decision)
    return plan


def apply_plan_(model: nn.Module, plan: Sequence[Decision]) -> nn.Module:
    """Swap in the accepted candidates of ``plan`` (made for this ``model``) and record them."""
    for decision in plan:
        if decision.accepted and decision.candidate is not None:
            model.set_submodule(decision.name, decision.candidate)
            record(model, decision.kind, **decision.details)
    return model


def factorize_(
    model: nn.Module,
    config: FactorizationConfig,
    *,
    include: Patterns = None,
    exclude: Patterns = None,
    example_inputs: Any = None,
) -> nn.Module:
    """Factorize ``model``'s layers in place as ``config`` says; return ``model``.

    Each selected layer is decomposed, judged by ``config.policy`` and, when kept, replaced and
    recorded in the model's structure record. See :func:`plan_factorization` for the options.

    >>> from deepshrink import zoo
    >>> from deepshrink.factorize.config import SVDFactorization
    >>> model = factorize_(zoo.create("lenet300"), SVDFactorization(rank=16), include="fc1")
    >>> model.fc1
    SVDLinear(
      (0): Linear(in_features=784, out_features=16, bias=False)
      (1): Linear(in_features=16, out_features=300, bias=True)
    )
    """
    plan = plan_factorization(
        model, config, include=include, exclude=exclude, example_inputs=example_inputs
    )
    layer_type = method_for(config).layer_type
    candidates = _targets(model, layer_type)
    reasons = {
        name: "not selected" if name in candidates else f"not a {layer_type.__name__} layer"
        for name in weight_slots(model)
    }
    reasons |= {d.name: d.reason for d in plan if not d.accepted}
    coverage = measure_coverage(
        type(config).__name__, model, [d.name for d in plan if d.accepted], reasons,
        narrowed=include is not None or exclude is not None,
    )  # fmt: skip
    apply_plan_(model, plan)
    report_coverage(model, coverage)
    return model
