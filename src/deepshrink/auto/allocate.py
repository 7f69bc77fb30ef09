"""Joint choice of one option per layer under a byte budget, least summed sensitivity.

Each layer has options (sparsity × bits, :class:`~deepshrink.auto.candidates.Option`) with a
measured size in bytes and a measured loss increase. :func:`allocate` picks one per layer so that
``fixed + Σ bytes ≤ budget`` and ``Σ loss`` is least — a multiple-choice knapsack, solved exactly
by :func:`deepshrink.functional.allocation.choose` after each layer's options are cut to its own
Pareto front (an option larger *and* no less lossy than another can never be in an optimum).
Summing per-layer losses is the usual first-order assumption that layers' errors add up.

:func:`uniform` is the baseline: the same ``(sparsity, bits)`` for every layer, the one with the
least summed loss that fits.

>>> from deepshrink.auto.candidates import Option
>>> table = {"a": [Option(0, 8, 100, 0.0, 1), Option(0.9, 2, 10, 0.5, 1)],
...          "b": [Option(0, 8, 100, 0.0, 1), Option(0.9, 2, 10, 0.1, 1)]}
>>> {k: v.label for k, v in allocate(table, 120, fixed=0).items()}
{'a': 's0/b8', 'b': 's0.9/b2'}
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from deepshrink.auto.candidates import Option
from deepshrink.errors import ConfigError
from deepshrink.functional.allocation import choose

__all__ = ["allocate", "front", "smallest_total", "uniform"]


def front(options: Sequence[Option]) -> list[Option]:
    """The options no smaller-or-equal option beats in loss, by increasing bytes."""
    kept: list[Option] = []
    for option in sorted(options, key=lambda o: (o.bytes, o.loss)):
        if not kept or option.loss < kept[-1].loss:
            kept.append(option)
    return kept


def smallest_total(table: Mapping[str, Sequence[Option]], fixed: int) -> int:
    """The fewest bytes any allocation reaches (every layer at its smallest option)."""
    return fixed + sum(min(o.bytes for o in options) for options in table.values())


def _refuse(table: Mapping[str, Sequence[Option]], budget: float, fixed: int) -> ConfigError:
    least = smallest_total(table, fixed)
    sparsest = max(o.sparsity for options in table.values() for o in options)
    narrowest = min(o.bits for options in table.values() for o in options)
    return ConfigError(
        f"a {budget:,.0f}-byte budget cannot be met: the smallest reachable file is {least:,} "
        f"bytes ({fixed:,} fixed: header, biases and other tensors; every layer at sparsity "
        f"{sparsest:g} and {narrowest} bits or its smallest option); raise the budget to at "
        "least that, or add higher sparsities / fewer bits to the candidates"
    )


def allocate(
    table: Mapping[str, Sequence[Option]], budget: float, *, fixed: int
) -> dict[str, Option]:
    """Per layer, the option with the least summed loss and ``fixed + Σ bytes ≤ budget``.

    Raises :class:`ConfigError` naming the smallest reachable size when nothing fits.
    """
    names = list(table)
    fronts = [front(table[name]) for name in names]
    if smallest_total(table, fixed) > budget:
        raise _refuse(table, budget, fixed)
    picked = choose(
        [[o.bytes for o in options] for options in fronts],
        [[o.loss for o in options] for options in fronts],
        budget - fixed,
    )
    return {name: fronts[i][k] for i, (name, k) in enumerate(zip(names, picked, strict=True))}


def uniform(
    table: Mapping[str, Sequence[Option]], budget: float, *, fixed: int
) -> dict[str, Option]:
    """The same ``(sparsity, bits)`` for every layer: least summed loss within the budget."""
    settings = {(o.sparsity, o.bits) for o in next(iter(table.values()))}
    best: tuple[float, int, dict[str, Option]] | None = None
    for setting in sorted(settings):
        chosen = {
            name: next(o for o in options if (o.sparsity, o.bits) == setting)
            for name, options in table.items()
        }
        size = fixed + sum(o.bytes for o in chosen.values())
        loss = sum(o.loss for o in chosen.values())
        if size <= budget and (best is None or (loss, -size) < (best[0], -best[1])):
            best = (loss, size, chosen)
    if best is None:
        least = min(
            fixed + sum(next(o.bytes for o in opts if (o.sparsity, o.bits) == s)
                        for opts in table.values())
            for s in settings
        )  # fmt: skip
        raise ConfigError(
            f"a {budget:,.0f}-byte budget cannot be met by one setting for every layer: the "
            f"smallest uniform file is {least:,} bytes; raise the budget or add higher "
            "sparsities / fewer bits to the candidates"
        )
    return best[2]
