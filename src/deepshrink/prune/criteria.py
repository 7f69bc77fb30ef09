"""Importance criteria: how much each weight (or each group of weights) matters, by name.

A criterion maps a weight tensor to scores; higher means more important, pruning removes the
lowest. ``dims`` are the dimensions reduced into one score per group: ``()`` scores every
element (unstructured pruning), ``(1,)`` scores every row of a ``Linear`` weight (one neuron).

=============  ==============================================  ===============================
name           element score                                   group score
=============  ==============================================  ===============================
magnitude, l1  ``|w|``                                         ``Σ |w|`` over ``dims``
l2             ``|w|``                                         ``√(Σ w²)`` over ``dims``
random         uniform in [0, 1) (a baseline; seeded)          uniform in [0, 1) per group
=============  ==============================================  ===============================

Register more with :func:`register_criterion` (structured pruning adds its own beside these).

>>> w = torch.tensor([[1.0, -2.0], [0.5, 0.5]])
>>> score("l1", w, dims=(1,))
tensor([3., 1.])
>>> score("magnitud", w)  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
deepshrink.errors.UnknownNameError: unknown pruning criterion 'magnitud'; did you mean ...
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from deepshrink._registry import Registry

__all__ = ["CRITERIA", "Criterion", "register_criterion", "score"]

#: ``(weight, dims, generator) -> scores`` with the ``dims`` of ``weight`` reduced away.
Criterion = Callable[[Tensor, tuple[int, ...], torch.Generator | None], Tensor]

CRITERIA: Registry[Criterion] = Registry("pruning criterion")


def register_criterion(*names: str) -> Callable[[Criterion], Criterion]:
    """Decorator registering a criterion under one or more names (aliases)."""

    def add(criterion: Criterion) -> Criterion:
        for name in names:
            CRITERIA.add(name, criterion)
        return criterion

    return add


@register_criterion("magnitude", "l1")
def _l1(weight: Tensor, dims: tuple[int, ...], generator: torch.Generator | None) -> Tensor:
    return weight.abs().sum(dim=dims) if dims else weight.abs()


@register_criterion("l2")
def _l2(weight: Tensor, dims: tuple[int, ...], generator: torch.Generator | None) -> Tensor:
    return weight.pow(2).sum(dim=dims).sqrt() if dims else weight.abs()


@register_criterion("random")
def _random(weight: Tensor, dims: tuple[int, ...], generator: torch.Generator | None) -> Tensor:
    shape = [
        size for index, size in enumerate(weight.shape) if index not in _positive(dims, weight)
    ]
    return torch.rand(shape, generator=generator).to(weight.device)


def _positive(dims: Sequence[int], weight: Tensor) -> set[int]:
    return {d % weight.ndim for d in dims}


def score(
    name: str,
    weight: Tensor,
    dims: Sequence[int] = (),
    generator: torch.Generator | None = None,
) -> Tensor:
    """Scores of ``weight`` under the criterion called ``name`` (no gradients are recorded).

    >>> score("l2", torch.tensor([[3.0, 4.0]]), dims=(1,))
    tensor([5.])
    """
    criterion = CRITERIA.get(name)
    with torch.no_grad():
        return criterion(weight.detach().float(), tuple(dims), generator)
